//! CPU-bound work in a handler: [`run_blocking`] runs it off the async workers, on a bounded
//! pool, and stops it cooperatively when its call ends.
//!
//! Why: a handler that loops in its `async fn` holds a tokio worker for as long as it runs. Two
//! such calls on a two-core machine stop everything else on the node, heartbeats included, and
//! the master evicts a healthy node. tarpc's deadline does not help: aborting a future only takes
//! effect at its next `.await`, which a CPU loop never reaches, and work moved to
//! `spawn_blocking` is not aborted at all: a caller that gives up (deadline, cancel, disconnect)
//! leaves it running while the node reports itself idle.
//!
//! So the work gets a [`Stop`] to look at between slices of its loop (every few milliseconds of
//! work). It reads `true` once the call's deadline has passed or the call was cancelled (tarpc
//! drops the handler's future when the caller cancels, disconnects, or the deadline passes).
//! At most [`NodeConfig::cpu_threads`](crate::NodeConfig::cpu_threads) pieces of work run at once
//! per node; more wait for a thread (and give up waiting like any call). Work whose call ended
//! but which has not looked at its `Stop` yet still counts in the load the node reports
//! ([`Load::busy`](crate::Load::busy)), so the master and the routers never see a busy node as
//! idle.
//!
//! ```
//! # async fn handler(ctx: tarpc::context::Context) -> Result<u64, distribution_node::work::Stopped> {
//! distribution_node::work::run_blocking(&ctx, |stop| {
//!     let mut total = 0u64;
//!     for slice in 0..1_000u64 {
//!         if stop.requested() {
//!             return None; // nobody waits for the answer any more
//!         }
//!         total += (slice * 1_000..(slice + 1) * 1_000).sum::<u64>();
//!     }
//!     Some(total)
//! })
//! .await
//! .and_then(|done| done.ok_or(distribution_node::work::Stopped))
//! # }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::load::Load;

/// The work was stopped (or never started) because its call ended: its deadline passed or the
/// caller cancelled. A cancelled caller never sees it; a caller whose deadline passed usually
/// gets `DeadlineExceeded` from its own tarpc client, but may get this answer instead when it
/// arrives first, so treat it as a deadline exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("the work was stopped: its call's deadline passed or the call was cancelled")]
pub struct Stopped;

/// What the work reads to know whether to go on.
#[derive(Debug, Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    deadline: Instant,
}

impl Stop {
    /// Whether the work should stop now: the call was cancelled or its deadline has passed.
    /// Cheap (an atomic load and a clock read): call it every few milliseconds of work.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

/// The node a handler runs on, as [`run_blocking`] needs it: its load and its pool of threads.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) load: Arc<Load>,
    pub(crate) threads: Arc<Semaphore>,
}

tokio::task_local! {
    /// Set around each handler by the node (`counted::Counted`).
    pub(crate) static SCOPE: Scope;
}

/// The pool used outside a node's handler (tests, other programs): one thread per core.
fn fallback_threads() -> Arc<Semaphore> {
    static THREADS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    THREADS
        .get_or_init(|| Arc::new(Semaphore::new(default_threads())))
        .clone()
}

/// One thread per core the process may use.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work` on a blocking thread of the node's bounded pool and waits for it, until the
/// call's deadline (`ctx.deadline`). `work` gets a [`Stop`] to check between slices.
///
/// Returns [`Stopped`] when the deadline passes before the work ends (the `Stop` then reads
/// `true` and the work is expected to return soon). If the call is cancelled, this future is
/// dropped, and the `Stop` reads `true` likewise. Until the work returns, it keeps its thread of
/// the pool and counts in the node's reported load.
pub async fn run_blocking<T, F>(ctx: &tarpc::context::Context, work: F) -> Result<T, Stopped>
where
    T: Send + 'static,
    F: FnOnce(&Stop) -> T + Send + 'static,
{
    let scope = SCOPE.try_with(Scope::clone).ok();
    let threads = scope
        .as_ref()
        .map_or_else(fallback_threads, |s| s.threads.clone());
    let deadline = tokio::time::Instant::from_std(ctx.deadline);
    let permit = tokio::select! {
        permit = threads.acquire_owned() => permit.map_err(|_| Stopped)?,
        _ = tokio::time::sleep_until(deadline) => return Err(Stopped),
    };
    let stop = Stop {
        flag: Arc::new(AtomicBool::new(false)),
        deadline: ctx.deadline,
    };
    let job = Arc::new(Job {
        state: AtomicU8::new(RUNNING),
        load: scope.map(|s| s.load),
    });
    // Stops the work and hands its count to the node's load if this future ends (or is
    // dropped) before the work does.
    let mut watch = Watch {
        job: job.clone(),
        flag: stop.flag.clone(),
        armed: true,
    };
    let running = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let value = work(&stop);
        job.finish();
        value
    });
    tokio::select! {
        done = running => {
            watch.armed = false;
            match done {
                Ok(value) => Ok(value),
                Err(err) => std::panic::resume_unwind(err.into_panic()),
            }
        }
        _ = tokio::time::sleep_until(deadline) => Err(Stopped),
    }
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ORPHANED: u8 = 2;

/// One piece of work: whether it still runs, and whether its call has ended before it.
struct Job {
    state: AtomicU8,
    load: Option<Arc<Load>>,
}

impl Job {
    /// Called by the work's thread when the work returns.
    fn finish(&self) {
        if self.state.swap(DONE, Ordering::AcqRel) == ORPHANED {
            if let Some(load) = &self.load {
                load.orphan_done();
            }
        }
    }

    /// Called when the call ends first: the work now counts on its own in the node's load.
    fn orphan(&self) {
        let Some(load) = &self.load else {
            return;
        };
        // Counted before the state says so, so that `finish` never uncounts what was not counted.
        load.orphan_started();
        if self
            .state
            .compare_exchange(RUNNING, ORPHANED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            load.orphan_done();
        }
    }
}

struct Watch {
    job: Arc<Job>,
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::Relaxed);
            self.job.orphan();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx_with(deadline: Duration) -> tarpc::context::Context {
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + deadline;
        ctx
    }

    fn scope(threads: usize) -> Scope {
        Scope {
            load: Arc::new(Load::new(16)),
            threads: Arc::new(Semaphore::new(threads)),
        }
    }

    /// Spins until stopped (checking every millisecond), returning how long it ran.
    fn spin(stop: &Stop) -> Duration {
        let started = Instant::now();
        while !stop.requested() {
            std::thread::sleep(Duration::from_millis(1));
        }
        started.elapsed()
    }

    #[tokio::test]
    async fn the_work_stops_when_the_deadline_passes() {
        let ctx = ctx_with(Duration::from_millis(100));
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        // Either the work saw the deadline first (and returned), or the wait ended first.
        let _ = run_blocking(&ctx, move |stop| ran_tx.send(spin(stop)).unwrap()).await;
        let ran = ran_rx
            .recv_timeout(Duration::from_secs(2))
            .expect("the work stops within 2 s of its deadline");
        assert!(ran < Duration::from_secs(1), "ran {ran:?}");
    }

    #[tokio::test]
    async fn a_cancelled_call_stops_its_work_and_the_load_counts_it_until_it_returns() {
        let s = scope(1);
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        let ctx = ctx_with(Duration::from_secs(60));
        let call = SCOPE.scope(
            s.clone(),
            run_blocking(&ctx, move |stop| {
                // Looks at its `Stop` only every 300 ms: the node must count it meanwhile.
                let started = Instant::now();
                while !stop.requested() {
                    std::thread::sleep(Duration::from_millis(300));
                }
                ran_tx.send(started.elapsed()).unwrap();
            }),
        );
        // Cancel the call after 100 ms: its future is dropped, as tarpc does.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), call)
                .await
                .is_err()
        );
        assert_eq!(s.load.busy(), 1, "the orphaned work still counts");
        let ran = tokio::task::spawn_blocking(move || ran_rx.recv_timeout(Duration::from_secs(5)))
            .await
            .unwrap()
            .expect("the work stops after its call was cancelled");
        assert!(ran < Duration::from_secs(2), "ran {ran:?}");
        // The thread gives its count back when the work returns.
        let started = Instant::now();
        while s.load.busy() != 0 && started.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(s.load.busy(), 0);
        assert_eq!(
            s.threads.available_permits(),
            1,
            "the thread is back in the pool"
        );
    }

    #[tokio::test]
    async fn at_most_the_pool_runs_at_once() {
        let s = scope(2);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                let ctx = ctx_with(Duration::from_secs(30));
                tokio::spawn(SCOPE.scope(s.clone(), async move {
                    run_blocking(&ctx, move |_| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                }))
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), Ok(()));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
