//! The node's call threads: the runtime where its handlers run, apart from the thread that
//! reads and writes its connections, and the watch on handlers that hold a thread without
//! yielding.
//!
//! Why (issue #26): a handler is the user's code, and the first one a user writes often loops
//! on the CPU inside its `async fn`. When the connections were served on the same tokio runtime
//! as the handlers, such a handler stalled every other call of its connection for as long as
//! it ran, even with other workers free: the connection's task spawned the call, tokio put the
//! call in the spawning worker's LIFO slot (which no other worker may steal) and ran it there
//! next, and the other workers slept on a condition variable rather than on the I/O driver, so
//! nothing read the next request until the spin ended (2.95 s for a cheap call sent 50 ms into a
//! 3 s spin). So the node splits the two:
//!
//! - **connections** are read, decoded and written on the node's lifecycle thread (see
//!   `crate::lifecycle`), where only the node's own short tasks run;
//! - **handlers** run on this module's runtime, [`THREAD_NAME`] threads of the node's own
//!   ([`NodeConfig::call_threads`](crate::NodeConfig::call_threads), at least 2 by default), so
//!   the runtime the node was started on (its `worker_threads`, its other tasks) neither slows
//!   the calls nor is slowed by them. Each call is spawned there from the lifecycle thread, and
//!   a free call thread picks it up: a held one cannot keep it.
//!
//! `Held` watches every poll of a handler: one that keeps its thread longer than
//! [`NodeConfig::blocking_threshold`](crate::NodeConfig::blocking_threshold) (100 ms) is counted
//! in [`observe::HANDLER_BLOCKED`] and logged (one warning per method and per minute, naming the
//! method and the time held), and while every call thread is held that long, new calls are
//! refused at once with [`ALL_THREADS_HELD`] (the router sends them to another node) rather
//! than queued behind work that does not yield. Calls that arrive in the threshold's first
//! moments, before the hold is seen, wait for a thread.
//!
//! A handler in `tokio::task::block_in_place` holds its thread too, and counts as such: tokio
//! starts a replacement worker, but with every call thread's handler blocking (each one a core's
//! worth of work, at the default of one thread per core) the node is busy, and new calls go to
//! another node. CPU work belongs in [`crate::work::run_blocking`], which neither holds a call
//! thread nor is counted here (its pool is `NodeConfig::cpu_threads`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::Runtime;
use tracing::warn;

use crate::observe;

pub use distribution_shared::wire::ALL_THREADS_HELD;

/// The name of the node's call threads (`/proc/<pid>/task/*/comm` shows `dist-node-call`).
pub const THREAD_NAME: &str = "dist-node-call";

/// How often one method may be warned about: once a minute.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The default number of call threads: one per core, at least 2, so that one handler holding a
/// thread leaves another for the calls beside it.
pub(crate) fn default_threads() -> usize {
    crate::work::default_threads().max(2)
}

/// The most call threads a node starts, whatever its configuration asks.
pub const MAX_THREADS: usize = 1024;

/// The number of call threads a node runs for `configured`: between 1 and [`MAX_THREADS`].
pub(crate) fn threads(configured: usize) -> usize {
    configured.clamp(1, MAX_THREADS)
}

/// Builds the call runtime that `held` watches: its `workers` threads named [`THREAD_NAME`],
/// each carrying the caller's `tracing` dispatcher and a clock in `held`.
pub(crate) fn runtime(held: &Arc<Held>) -> std::io::Result<Runtime> {
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let (starts, stops) = (held.clone(), held.clone());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(held.workers)
        .thread_name(THREAD_NAME)
        .enable_all()
        .on_thread_start(move || {
            LOGS.with(|logs| {
                *logs.borrow_mut() = Some(tracing::dispatcher::set_default(&dispatch))
            });
            starts.register();
        })
        .on_thread_stop(move || {
            stops.unregister();
            LOGS.with(|logs| logs.borrow_mut().take());
        })
        .build()
}

thread_local! {
    /// The clock of this call thread, when it is one.
    static CLOCK: RefCell<Option<Arc<ThreadClock>>> = const { RefCell::new(None) };
    /// The caller's `tracing` dispatcher, set for this call thread's life.
    static LOGS: RefCell<Option<tracing::dispatcher::DefaultGuard>> = const { RefCell::new(None) };
}

/// When the poll running on one call thread began (nanoseconds after [`Held::epoch`], plus 1),
/// or 0 when no handler is being polled there.
#[derive(Debug, Default)]
struct ThreadClock {
    since: AtomicU64,
}

/// Which call threads a handler holds, and the reports about it.
#[derive(Debug)]
pub(crate) struct Held {
    epoch: Instant,
    threshold: Duration,
    /// The call runtime's workers: every one held means no call can start.
    workers: usize,
    /// The service's name, in the reports.
    service: String,
    /// One per live thread of the call runtime (its blocking threads included: they never poll
    /// a handler, so their clocks stay at 0).
    clocks: Mutex<Vec<Arc<ThreadClock>>>,
    /// Set by [`Held::watch`]: every worker has been held longer than the threshold.
    all_held: AtomicBool,
    /// When each method was last warned about.
    warned: Mutex<HashMap<String, Instant>>,
}

impl Held {
    /// A watch over `workers` call threads (as configured: [`threads`] clamps them) serving
    /// `service`; a poll over `threshold` is held.
    pub(crate) fn new(workers: usize, threshold: Duration, service: &str) -> Self {
        Self {
            epoch: Instant::now(),
            threshold: threshold.max(Duration::from_millis(1)),
            workers: threads(workers),
            service: service.to_owned(),
            clocks: Mutex::new(Vec::new()),
            all_held: AtomicBool::new(false),
            warned: Mutex::new(HashMap::new()),
        }
    }

    fn register(&self) {
        let clock = Arc::new(ThreadClock::default());
        self.clocks.lock().push(clock.clone());
        CLOCK.with(|c| *c.borrow_mut() = Some(clock));
    }

    fn unregister(&self) {
        if let Some(clock) = CLOCK.with(|c| c.borrow_mut().take()) {
            self.clocks.lock().retain(|c| !Arc::ptr_eq(c, &clock));
        }
    }

    /// Whether every call thread has been held longer than the threshold (as of the last look
    /// of [`Held::watch`]).
    pub(crate) fn all_held(&self) -> bool {
        self.all_held.load(Ordering::Relaxed)
    }

    /// Whether a new call must be refused: every call thread is held longer than the threshold
    /// now. The flag of [`Held::watch`] makes the common answer one atomic load; when it is set,
    /// the threads are looked at again, so that a thread freed since the last look is seen.
    pub(crate) fn refuses(&self) -> bool {
        self.all_held() && self.held_now() >= self.workers
    }

    /// How many call threads a handler's poll has held longer than the threshold, now.
    pub(crate) fn held_now(&self) -> usize {
        let now = self.stamp(Instant::now());
        let threshold = u64::try_from(self.threshold.as_nanos()).unwrap_or(u64::MAX);
        self.clocks
            .lock()
            .iter()
            .filter(|clock| {
                let since = clock.since.load(Ordering::Relaxed);
                since != 0 && now.saturating_sub(since) >= threshold
            })
            .count()
    }

    /// Looks at the call threads every quarter of the threshold (at least every 5 ms, at most
    /// every second) for as long as it is polled: sets [`Held::all_held`] and the
    /// [`observe::CALL_THREADS_HELD`] gauge. Runs on the lifecycle thread, which a handler
    /// cannot hold.
    pub(crate) async fn watch(self: Arc<Self>) {
        let tick = (self.threshold / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let held = self.held_now();
            self.all_held.store(held >= self.workers, Ordering::Relaxed);
            metrics::gauge!(observe::CALL_THREADS_HELD).set(held as f64);
        }
    }

    /// Nanoseconds from the epoch to `at`, plus 1 (0 means "not polling").
    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// A poll of `method` held its thread for `held`, over the threshold: counted, and warned
    /// about unless this method was warned about within the last minute.
    fn report(&self, method: &str, held: Duration) {
        metrics::counter!(observe::HANDLER_BLOCKED,
            "service" => self.service.clone(), "method" => method.to_owned())
        .increment(1);
        let now = Instant::now();
        {
            let mut warned = self.warned.lock();
            match warned.get_mut(method) {
                Some(last) if now.duration_since(*last) < WARN_EVERY => return,
                Some(last) => *last = now,
                None => {
                    warned.insert(method.to_owned(), now);
                }
            }
        }
        warn!(service = %self.service, method, held_ms = held.as_millis() as u64,
            threshold_ms = self.threshold.as_millis() as u64,
            "a call handler held its thread without yielding; the node's other calls wait for \
             a free call thread meanwhile: run CPU work with distribution_node::work::run_blocking \
             (at most one warning per method and minute)");
    }
}

/// A method's name, copied (tarpc's `RequestName::name` borrows the request, which the handler
/// takes): at most 64 bytes, cut at a character boundary.
#[derive(Clone, Copy)]
pub(crate) struct Method {
    bytes: [u8; 64],
    len: u8,
}

impl Method {
    pub(crate) fn new(name: &str) -> Self {
        let mut end = name.len().min(64);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; 64];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        Self {
            bytes,
            len: end as u8,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

pin_project_lite::pin_project! {
    /// A handler's future whose every poll is timed on its call thread's clock.
    pub(crate) struct Watched<F> {
        #[pin]
        inner: F,
        held: Arc<Held>,
        method: Method,
    }
}

impl<F> Watched<F> {
    pub(crate) fn new(inner: F, held: Arc<Held>, method: Method) -> Self {
        Self {
            inner,
            held,
            method,
        }
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let started = Instant::now();
        let stamp = this.held.stamp(started);
        let output = CLOCK.with(|clock| {
            let clock = clock.borrow();
            // A poll inside another (a handler that blocks on a nested runtime) leaves the outer
            // poll's stamp in place.
            let entered = clock.as_ref().filter(|clock| {
                clock
                    .since
                    .compare_exchange(0, stamp, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            });
            let output = this.inner.poll(cx);
            if let Some(clock) = entered {
                clock.since.store(0, Ordering::Relaxed);
            }
            output
        });
        let held = started.elapsed();
        if held >= this.held.threshold {
            // This thread is free again: not every thread is held.
            this.held.all_held.store(false, Ordering::Relaxed);
            this.held.report(this.method.as_str(), held);
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_cut_at_a_character_boundary() {
        assert_eq!(Method::new("Calc.sum").as_str(), "Calc.sum");
        let long = "é".repeat(40);
        let cut = Method::new(&long);
        assert_eq!(cut.as_str(), "é".repeat(32));
    }

    #[test]
    fn a_poll_held_past_the_threshold_is_seen_on_its_thread_only() {
        let held = Arc::new(Held::new(2, Duration::from_millis(50), "calc"));
        let runtime = runtime(&held).unwrap();
        let (go, gate) = std::sync::mpsc::channel::<()>();
        // One handler holds its thread until told to stop.
        let spin = runtime.spawn(Watched::new(
            async move {
                let _ = gate.recv();
            },
            held.clone(),
            Method::new("Calc.spin"),
        ));
        let started = Instant::now();
        while held.held_now() < 1 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the hold is seen"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(held.held_now(), 1, "the other thread is free");
        go.send(()).unwrap();
        runtime.block_on(spin).unwrap();
        assert_eq!(held.held_now(), 0, "a finished poll holds nothing");
        runtime.shutdown_background();
    }

    #[test]
    fn the_watch_sees_every_thread_held_and_then_free_again() {
        let held = Arc::new(Held::new(1, Duration::from_millis(20), "calc"));
        let calls = runtime(&held).unwrap();
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let spin = calls.spawn(Watched::new(
            async move {
                let _ = gate.recv();
            },
            held.clone(),
            Method::new("Calc.spin"),
        ));
        let watching = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let wait_for = |want: bool| {
            let held = held.clone();
            watching.block_on(async move {
                let watch = tokio::spawn(held.clone().watch());
                let seen = tokio::time::timeout(Duration::from_secs(5), async {
                    while held.all_held() != want {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
                .await;
                watch.abort();
                seen.is_ok()
            })
        };
        assert!(
            wait_for(true),
            "the only call thread held is seen as every thread held"
        );
        go.send(()).unwrap();
        calls.block_on(spin).unwrap();
        assert!(wait_for(false), "a free thread again is seen");
        calls.shutdown_background();
    }
}
