//! Backup requests ("hedging") for idempotent calls, and latency-aware ejection.
//!
//! A node that is alive but does not answer — a GC-like pause, a stalled disk, an overloaded VM,
//! a SIGSTOP — fails no connection: without more, each call on it waits out its attempt timeout
//! (or its whole deadline). With a hedge delay, a call with no answer after that delay is sent
//! again to another healthy node; the first answer wins and the other attempt is dropped (tarpc
//! then tells its node to stop working on it). Only idempotent calls are hedged, since a backup
//! runs the call twice; one deadline still spans every attempt.
//!
//! Decisions:
//!
//! - **Opt-in.** [`RouterConfig::hedge`](super::RouterConfig::hedge) is `None` by default;
//!   [`CallOptions::hedge`](super::CallOptions::hedge) sets or clears a call's delay. A call
//!   that asks for hedging on a router without a policy uses [`HedgePolicy::default`]'s budget
//!   and ejection rule.
//! - **The delay**: fixed, or a percentile (99th by default) of the router's recent call
//!   latencies over a sliding window (10 s), never below a floor (10 ms), so that a cluster that
//!   answers in 1 ms does not hedge at 1.1 ms. Until the window holds 20 latencies a percentile
//!   call is not hedged: the router does not yet know what slow means. The 99th rather than the
//!   95th: a healthy cluster then hedges about 1 % of its calls and keeps four fifths of a 5 %
//!   budget for the moment a node stalls. Only calls hedged by percentile feed the window, so
//!   calls with their own fixed delays (long computations) do not skew it.
//! - **At most one backup per call**, sent to a node that takes calls (not ejected, not on
//!   probation, not full). When no such node is free or the budget refuses, the call asks again
//!   after another delay. A failed attempt is replaced as usual (failover), up to the call's
//!   attempts.
//! - **The budget** (`window.rs`): backups within `budget` (5 %) of the calls over the window
//!   plus `reserve` (10) per window. A denied backup is counted; the call goes on waiting.
//! - **Latency-aware ejection**: when a backup answers first while the call's first attempt is
//!   still running, that node has lost a race to another node: a *slow strike*. After
//!   `eject_after_slow` (3) slow strikes in a row (any answer from the node clears them), or one
//!   while it is on probation after an ejection, the node is ejected through the same path as a
//!   failed one: same growing backoff, same single probe after it, and strikes while ejected
//!   are the same incident. Its connection is kept: a paused node's connection is fine, and
//!   its probe reuses it. Three, not one: a single lost race is what the 1 % of hedged calls of
//!   a healthy node look like; three in a row without one answer in between is not.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use distribution_shared::ServiceClient;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tarpc::client::RpcError;
use tarpc::context::Context;
use tracing::Instrument;

use super::attempt::{Attempt, Failures, Plan};
use super::endpoint::{Conn, Endpoint, InFlight};
use super::window::{HedgeBudget, LatencyWindow};
use super::{CallError, CallOptions, CallRouter, Reply, RouterConfig};

/// When a call sends its backup request.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// Never: no backup request.
    Off,
    /// After this long without an answer.
    Fixed(Duration),
    /// After the router's recent `percentile` (0 to 100) of call latencies, at least `floor`.
    Percentile {
        /// Which percentile of the window, e.g. 99.0.
        percentile: f64,
        /// The shortest delay, whatever the percentile says.
        floor: Duration,
    },
}

impl Default for HedgeDelay {
    /// The 99th percentile, at least 10 ms.
    fn default() -> Self {
        Self::Percentile {
            percentile: 99.0,
            floor: Duration::from_millis(10),
        }
    }
}

/// How a router sends backup requests (see the module docs). `HedgePolicy::default()` gives the
/// documented defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HedgePolicy {
    /// When an idempotent call sends its backup, unless [`CallOptions::hedge`] says otherwise.
    /// The 99th percentile of the window, at least 10 ms.
    pub delay: HedgeDelay,
    /// The share of calls that may be hedged over the window. 0.05 (5 %).
    pub budget: f64,
    /// Backups allowed per window on top of the share, for routers with little traffic. 10.
    pub reserve: u32,
    /// The window of the latency estimate and of the budget. 10 s.
    pub window: Duration,
    /// Slow strikes in a row (backups answering first while the node still had the call)
    /// after which a node is ejected; 0: never. 3.
    pub eject_after_slow: u32,
}

impl Default for HedgePolicy {
    fn default() -> Self {
        Self {
            delay: HedgeDelay::default(),
            budget: 0.05,
            reserve: 10,
            window: Duration::from_secs(10),
            eject_after_slow: 3,
        }
    }
}

/// What a router's backup requests did since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HedgeStats {
    /// Idempotent calls that could have been hedged (a delay applied to them).
    pub eligible: u64,
    /// Backup requests sent.
    pub sent: u64,
    /// Backups that answered first.
    pub won: u64,
    /// Backups the budget refused (the call kept waiting on its first node and asked again
    /// after another delay).
    pub denied: u64,
}

/// A router's hedging state: the policy, the windows and the counters.
#[derive(Debug)]
pub(super) struct Hedging {
    policy: HedgePolicy,
    windows: Mutex<(LatencyWindow, HedgeBudget)>,
    eligible: AtomicU64,
    sent: AtomicU64,
    won: AtomicU64,
    denied: AtomicU64,
}

impl Hedging {
    pub(super) fn new(config: &RouterConfig) -> Self {
        let policy = config.hedge.unwrap_or_default();
        let now = tokio::time::Instant::now();
        Self {
            policy,
            windows: Mutex::new((
                LatencyWindow::new(policy.window, now),
                HedgeBudget::new(policy.budget, policy.reserve, policy.window, now),
            )),
            eligible: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            won: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        }
    }

    pub(super) fn stats(&self) -> HedgeStats {
        HedgeStats {
            eligible: self.eligible.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            won: self.won.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
        }
    }

    fn windows(&self) -> MutexGuard<'_, (LatencyWindow, HedgeBudget)> {
        self.windows.lock()
    }

    /// Counts a hedgeable call into the budget and returns its delay now (`None`: not hedged).
    fn begin(&self, mode: HedgeDelay) -> Option<Duration> {
        if mode == HedgeDelay::Off {
            return None;
        }
        self.eligible.fetch_add(1, Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        let mut windows = self.windows();
        windows.1.deposit(now);
        match mode {
            HedgeDelay::Off => None,
            HedgeDelay::Fixed(delay) => Some(delay),
            HedgeDelay::Percentile { percentile, floor } => windows
                .0
                .percentile(percentile, now)
                .map(|estimate| estimate.max(floor)),
        }
    }

    fn record(&self, latency: Duration) {
        self.windows()
            .0
            .record(latency, tokio::time::Instant::now());
    }

    fn withdraw(&self) -> bool {
        let allowed = self.windows().1.withdraw(tokio::time::Instant::now());
        let counter = if allowed { &self.sent } else { &self.denied };
        counter.fetch_add(1, Ordering::Relaxed);
        allowed
    }
}

/// A finished attempt of a hedged call.
struct Finished<C: ServiceClient, T> {
    in_flight: InFlight<C>,
    started: Instant,
    backup: bool,
    result: Result<T, Attempt>,
}

impl<C: ServiceClient> CallRouter<C> {
    /// Runs a planned call: hedged when it is idempotent and a delay applies, one attempt at a
    /// time otherwise.
    pub(super) async fn routed<T, F, Fut>(
        &self,
        options: &CallOptions,
        plan: &Plan,
        attempts: u32,
        f: &F,
    ) -> Result<Reply<T>, CallError>
    where
        F: Fn(Conn<C>, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let config = &self.shared.config;
        let mode = options
            .hedge
            .or(config.hedge.map(|p| p.delay))
            .unwrap_or(HedgeDelay::Off);
        if !plan.idempotent || mode == HedgeDelay::Off {
            return self.sequential(plan, attempts, f).await;
        }
        let hedging = &self.shared.hedging;
        let started = Instant::now();
        let left = plan.deadline.saturating_duration_since(started);
        let result = match hedging.begin(mode) {
            Some(delay) if delay < left => self.hedged(plan, attempts, delay, f).await,
            _ => self.sequential(plan, attempts, f).await,
        };
        if result.is_ok() && matches!(mode, HedgeDelay::Percentile { .. }) {
            hedging.record(started.elapsed());
        }
        result
    }

    /// Runs a call that sends a backup after `delay` (see the module docs).
    async fn hedged<T, F, Fut>(
        &self,
        plan: &Plan,
        attempts: u32,
        delay: Duration,
        f: &F,
    ) -> Result<Reply<T>, CallError>
    where
        F: Fn(Conn<C>, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let hedging = &self.shared.hedging;
        let mut tried: Vec<Arc<str>> = Vec::new();
        let mut running = FuturesUnordered::new();
        // The attempts running, with when they started (to tell who lost a race).
        let mut pending: Vec<(Arc<Endpoint<C>>, Instant)> = Vec::new();
        let mut failures = Failures::default();
        let mut hedged = false;
        let timer = tokio::time::sleep(delay);
        tokio::pin!(timer);
        loop {
            // Before the backup one attempt runs, after it two; a failed one is replaced while
            // the call has attempts left (failover, as without hedging).
            let want = if hedged { 2 } else { 1 };
            while running.len() < want && failures.counted < attempts {
                let Some(in_flight) = self.shared.pick(&tried) else {
                    break;
                };
                if !hedged {
                    timer.as_mut().reset(tokio::time::Instant::now() + delay);
                }
                running.push(self.launch(in_flight, &mut tried, &mut pending, plan, false, f));
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                Some(done) = running.next() => {
                    let endpoint = done.in_flight.endpoint().clone();
                    pending.retain(|(e, _)| !Arc::ptr_eq(e, &endpoint));
                    match done.result {
                        Ok(value) => {
                            done.in_flight.served();
                            endpoint.mark_ok();
                            if done.backup {
                                hedging.won.fetch_add(1, Ordering::Relaxed);
                            }
                            // Attempts that started before the winner and are still running
                            // lost a race to another node: a slow strike each.
                            let backoff = &self.shared.eject_backoff;
                            for (loser, _) in pending.iter().filter(|(_, s)| *s < done.started) {
                                loser.record_slow(hedging.policy.eject_after_slow, backoff);
                            }
                            return Ok(Reply {
                                value,
                                node: endpoint.node.clone(),
                                attempts: tried.len() as u32,
                                hedged,
                            });
                        }
                        Err(failure) => failures.record(failure)?,
                    }
                }
                () = &mut timer, if !hedged => {
                    let sent = match self.shared.pick_healthy(&tried) {
                        Some(in_flight) if hedging.withdraw() => {
                            in_flight.endpoint().count_backup();
                            tracing::debug!(node = %in_flight.endpoint().node, ?delay, "backup request");
                            running.push(self.launch(in_flight, &mut tried, &mut pending, plan, true, f));
                            true
                        }
                        _ => false,
                    };
                    hedged = sent;
                    if !sent {
                        // No healthy node free, or no budget: ask again after another delay.
                        timer.as_mut().reset(tokio::time::Instant::now() + delay);
                    }
                }
            }
        }
        Err(failures.into_error(tried.len()))
    }

    /// Starts one attempt of a hedged call on `in_flight`'s node.
    fn launch<'a, T, F, Fut>(
        &'a self,
        in_flight: InFlight<C>,
        tried: &mut Vec<Arc<str>>,
        pending: &mut Vec<(Arc<Endpoint<C>>, Instant)>,
        plan: &'a Plan,
        backup: bool,
        f: &'a F,
    ) -> impl Future<Output = Finished<C, T>> + 'a
    where
        F: Fn(Conn<C>, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let endpoint = in_flight.endpoint().clone();
        tried.push(endpoint.node.id.clone());
        crate::observe::attempt(tried.len() as u32);
        let started = Instant::now();
        pending.push((endpoint.clone(), started));
        let span =
            tracing::debug_span!("call", node = %endpoint.node, attempt = tried.len(), backup);
        async move {
            let result = self.attempt(&endpoint, plan, f).await;
            Finished {
                in_flight,
                started,
                backup,
                result,
            }
        }
        .instrument(span)
    }
}

// `HedgePolicy` is `#[non_exhaustive]`: other crates build it from `Default` (or its constructor)
// with these `with_…` methods, or set its public fields.
distribution_shared::with_setters!(HedgePolicy {
    with_delay => delay: HedgeDelay,
    with_budget => budget: f64,
    with_reserve => reserve: u32,
    with_window => window: Duration,
    with_eject_after_slow => eject_after_slow: u32,
});
