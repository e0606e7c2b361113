//! The router: application code's way to call the cluster (what replaces the Go original's
//! `Call`, `Go` and `Waiter`).
//!
//! A [`Router<C>`] follows a [`Membership`] feed (the in-process registry's, or a remote master's)
//! and routes each call to the least-used healthy node:
//!
//! - **one connection per node**, dialled on first use, multiplexing every call (`endpoint.rs`);
//! - **least used**: the fewest calls in flight, ties broken at random (`pick.rs`);
//! - **failover**: a call whose connection fails is retried on another node, up to
//!   [`RouterConfig::attempts`] nodes, all within one deadline; the failed node is ejected from
//!   routing at once (for a backoff that grows with repeated failures) instead of waiting for
//!   the master to evict it;
//! - **sync and async**: [`Router::call`] awaits the reply; [`Router::spawn`] returns a
//!   [`CallHandle`] to await later (dropping it cancels the call);
//! - **backup requests** (opt-in, [`RouterConfig::hedge`]): an idempotent call with no answer
//!   after a delay is sent to a second node too, within a budget; a node that keeps losing
//!   these races is ejected like a failed one (`hedge.rs`);
//! - **scatter/gather**: [`Router::scatter`] runs many items with bounded concurrency and returns
//!   the results in order.
//!
//! Calls are retried only when the connection failed, which may happen after the node received
//! the request: a routed call must therefore be idempotent (at-least-once delivery).

mod attempt;
mod endpoint;
mod error;
mod handle;
mod hedge;
mod pick;
mod scatter;
mod window;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use distribution_shared::handshake::Key;
use distribution_shared::tls::ClientTls;
use distribution_shared::{ServiceClient, defaults};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tarpc::client::RpcError;
use tarpc::context::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::membership::Membership;
use attempt::Plan;
use endpoint::Endpoint;
pub use error::{CallError, NodeRef};
pub use handle::CallHandle;
pub use hedge::{HedgeDelay, HedgePolicy, HedgeStats};
pub use scatter::{ScatterError, ScatterOptions};

/// The longest deadline a call gets: one year (see [`Router::call_with`]).
pub use distribution_shared::defaults::MAX_DEADLINE;

/// How a router calls nodes. `RouterConfig::default()` gives the documented defaults.
#[derive(Clone)]
pub struct RouterConfig {
    /// The deadline of a call when [`CallOptions`] sets none; it spans every attempt. 10 s.
    pub deadline: Duration,
    /// How many different nodes a call may try when connections fail. 3. Idempotent calls
    /// moved off a node because it left the cluster do not count against it.
    pub attempts: u32,
    /// How long dialling a node may take. 2 s.
    pub connect_timeout: Duration,
    /// The largest frame read or written on a node connection. 16 MiB.
    pub max_frame_len: usize,
    /// The first ejection after a failure; it doubles with each consecutive failure. 1 s.
    pub eject_base: Duration,
    /// The longest ejection. 30 s.
    pub eject_max: Duration,
    /// How long one attempt of an **idempotent** call may go unanswered before the router gives
    /// up on that node and tries another (within the call's deadline). It has no effect on other
    /// calls, which must not run twice. `None` (the default): an attempt may use the whole
    /// deadline, right for long computations. Set it for short calls, so that a hung node (alive
    /// TCP, no answers) costs a retry instead of a failed call.
    pub attempt_timeout: Option<Duration>,
    /// Whether calls are idempotent: then a call the node aborted (`CallError::Remote`) or that
    /// timed out an attempt is retried on another node too. Default `false`: only calls that
    /// failed in transport are retried.
    pub idempotent: bool,
    /// Consecutive aborted calls after which a node is ejected, as Finagle's failure accrual. 5.
    pub eject_after_errors: u32,
    /// TLS to the nodes: the cluster CA (and this caller's certificate, for mutual TLS).
    /// `None`: plain TCP.
    pub tls: Option<ClientTls>,
    /// How long a connection to a node may go without a call before this router drops it and
    /// dials afresh at the next call. 4 min, shorter than the node's idle timeout (5 min), so
    /// that a node never closes a connection a router still means to use.
    pub idle_close: Duration,
    /// Seeds the tie-breaking RNG, for reproducible routing in tests. Random when `None`.
    pub seed: Option<u64>,
    /// The cluster secret, proved to each node when the connection opens (the cluster
    /// handshake, [`distribution_shared::handshake`]); required by nodes that have one. `None`:
    /// no handshake. `distribution_master::Master::router_with` and [`crate::remote`] fill it in from the
    /// master's or the remote caller's secret when it is `None`. Never logged.
    pub secret: Option<String>,
    /// Backup requests for idempotent calls (see [`HedgePolicy`]). `None` (the default): no
    /// call is hedged unless its [`CallOptions::hedge`] asks.
    pub hedge: Option<HedgePolicy>,
}

impl std::fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterConfig")
            .field("deadline", &self.deadline)
            .field("attempts", &self.attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_frame_len", &self.max_frame_len)
            .field("eject_base", &self.eject_base)
            .field("eject_max", &self.eject_max)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("idempotent", &self.idempotent)
            .field("eject_after_errors", &self.eject_after_errors)
            .field("tls", &self.tls)
            .field("idle_close", &self.idle_close)
            .field("seed", &self.seed)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("hedge", &self.hedge)
            .finish()
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            deadline: defaults::CALL_DEADLINE,
            attempts: defaults::CALL_ATTEMPTS,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            max_frame_len: defaults::MAX_FRAME_LEN,
            eject_base: Duration::from_secs(1),
            eject_max: Duration::from_secs(30),
            attempt_timeout: None,
            idempotent: false,
            eject_after_errors: 5,
            tls: None,
            idle_close: defaults::ROUTER_IDLE_CLOSE,
            seed: None,
            secret: None,
            hedge: None,
        }
    }
}

/// Per-call settings that override the router's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallOptions {
    /// The call's deadline, counted from now, across every attempt.
    pub deadline: Option<Duration>,
    /// How many nodes the call may try.
    pub attempts: Option<u32>,
    /// Overrides [`RouterConfig::attempt_timeout`].
    pub attempt_timeout: Option<Duration>,
    /// Overrides [`RouterConfig::idempotent`].
    pub idempotent: Option<bool>,
    /// Overrides the hedge delay of [`RouterConfig::hedge`] (`Some(HedgeDelay::Off)`: this call
    /// is not hedged). Only idempotent calls are hedged.
    pub hedge: Option<HedgeDelay>,
}

impl CallOptions {
    /// Options with `deadline`.
    pub fn deadline(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            ..Self::default()
        }
    }

    /// These options, marked idempotent (retried on aborted and timed-out attempts too).
    pub fn idempotent(self) -> Self {
        Self {
            idempotent: Some(true),
            ..self
        }
    }
}

/// A call's value and the node that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<T> {
    /// What the node returned.
    pub value: T,
    /// The node that served the call.
    pub node: NodeRef,
    /// How many attempts were sent, each to a different node: failovers and the backup request
    /// included (1 when the first node answered).
    pub attempts: u32,
    /// Whether a backup request was sent (see [`HedgePolicy`]).
    pub hedged: bool,
}

/// What this router has sent to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    /// The node.
    pub node: NodeRef,
    /// Calls this router has running on it now.
    pub in_flight: u32,
    /// Calls this router has completed on it.
    pub served: u64,
    /// Whether it is out of routing after a failure.
    pub ejected: bool,
    /// Backup requests this router sent to it.
    pub backups: u64,
    /// Calls it still had when a backup on another node answered first (slow strikes).
    pub outrun: u64,
}

/// Routes calls of service client `C` to the least-used healthy node. Cheap to clone.
pub struct Router<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for Router<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<C> {
    endpoints: RwLock<Arc<[Arc<Endpoint<C>>]>>,
    membership: watch::Receiver<Membership>,
    config: RouterConfig,
    /// The key of [`RouterConfig::secret`], computed once.
    key: Option<Key>,
    /// The seeded RNG when [`RouterConfig::seed`] is set; `None`: each thread's own.
    rng: Option<Mutex<SmallRng>>,
    hedging: hedge::Hedging,
    /// Stops the membership follower when the last router clone is dropped.
    stop: CancellationToken,
}

impl<C> Drop for Shared<C> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl<C: ServiceClient> Router<C> {
    /// A router following `membership` (see `distribution_master::Master::router` for the in-process one).
    /// Must be called within a tokio runtime: it spawns the task that follows the feed, which
    /// ends when the router is dropped or the feed closes (the router then keeps its last view).
    pub fn new(membership: watch::Receiver<Membership>, config: RouterConfig) -> Self {
        let rng = config
            .seed
            .map(|seed| Mutex::new(SmallRng::seed_from_u64(seed)));
        let shared = Arc::new(Shared {
            endpoints: RwLock::new(Arc::from(Vec::new())),
            membership: membership.clone(),
            key: Key::from_secret(config.secret.as_deref()),
            hedging: hedge::Hedging::new(&config),
            config,
            rng,
            stop: CancellationToken::new(),
        });
        shared.sync(&membership.borrow());
        let stop = shared.stop.clone();
        tokio::spawn(follow(Arc::downgrade(&shared), membership, stop));
        Self { shared }
    }

    /// The router's settings.
    pub fn config(&self) -> &RouterConfig {
        &self.shared.config
    }

    /// How many nodes the router knows.
    pub fn len(&self) -> usize {
        self.shared.endpoints().len()
    }

    /// Whether the router knows no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the router knows at least `n` nodes, for at most `timeout`. Returns whether it
    /// does.
    ///
    /// It waits for the router itself to know them (not only for the membership feed to list
    /// them: the router applies a new snapshot just after it), so a call made right after this
    /// returns `true` can be routed to any of the `n`.
    pub async fn wait_for_nodes(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut rx = self.shared.membership.clone();
        loop {
            if self.len() >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Woken by the next snapshot, and every 5 ms while the router applies it.
            let pause = (deadline - now).min(Duration::from_millis(5));
            if let Ok(Err(_)) = tokio::time::timeout(pause, rx.changed()).await {
                // The feed is closed: the router keeps its last view; look again after a pause.
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// What this router has sent to each node it knows.
    pub fn stats(&self) -> Vec<NodeStats> {
        let now = Instant::now();
        self.shared
            .endpoints()
            .iter()
            .map(|e| NodeStats {
                node: e.node.clone(),
                in_flight: e.own_in_flight(),
                served: e.served(),
                ejected: e.is_ejected(now),
                backups: e.backups(),
                outrun: e.outrun(),
            })
            .collect()
    }

    /// What this router's backup requests did.
    pub fn hedge_stats(&self) -> HedgeStats {
        self.shared.hedging.stats()
    }

    /// Calls the least-used node with the router's default deadline and awaits the reply.
    ///
    /// `f` makes the call on the node's client; it may run more than once (on different nodes)
    /// when connections fail:
    ///
    /// ```no_run
    /// # #[tarpc::service] trait Arith { async fn sum(values: Vec<i64>) -> i64; }
    /// # distribution_shared::service_client!(ArithClient);
    /// # async fn demo(router: distribution_client::Router<ArithClient>) -> anyhow::Result<()> {
    /// let reply = router
    ///     .call(|client, ctx| async move { client.sum(ctx, vec![2, 4, 6]).await })
    ///     .await?;
    /// println!("{} from {}", reply.value, reply.node);
    /// # Ok(()) }
    /// ```
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<Reply<T>, CallError>
    where
        F: Fn(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        self.call_with(CallOptions::default(), f).await
    }

    /// [`Router::call`] with per-call options.
    pub async fn call_with<T, F, Fut>(
        &self,
        options: CallOptions,
        f: F,
    ) -> Result<Reply<T>, CallError>
    where
        F: Fn(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let started = Instant::now();
        let trace = crate::observe::trace_id();
        let result = self.route_call(options, trace, f).await;
        crate::observe::call_done(&result, started, trace);
        result
    }

    /// The attempt loop of [`Router::call_with`]; every attempt carries trace id `trace`.
    async fn route_call<T, F, Fut>(
        &self,
        options: CallOptions,
        trace: tarpc::trace::TraceId,
        f: F,
    ) -> Result<Reply<T>, CallError>
    where
        F: Fn(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let config = &self.shared.config;
        // tarpc's timers cannot hold deadlines beyond a couple of years (its tasks panic), and
        // `Instant + Duration::MAX` overflows: a longer deadline means "a year".
        let budget = options
            .deadline
            .unwrap_or(config.deadline)
            .min(MAX_DEADLINE);
        let plan = Plan {
            deadline: Instant::now() + budget,
            budget,
            attempt_timeout: options.attempt_timeout.or(config.attempt_timeout),
            idempotent: options.idempotent.unwrap_or(config.idempotent),
            trace,
        };
        let attempts = options.attempts.unwrap_or(config.attempts).max(1);
        self.routed(&options, &plan, attempts, &f).await
    }

    /// Starts a call in the background and returns a handle to await its reply later, like the
    /// Go original's `Go` and `Waiter`. Dropping the handle cancels the call.
    pub fn spawn<T, F, Fut>(&self, f: F) -> CallHandle<T>
    where
        T: Send + 'static,
        F: Fn(C, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RpcError>> + Send,
    {
        self.spawn_with(CallOptions::default(), f)
    }

    /// [`Router::spawn`] with per-call options.
    pub fn spawn_with<T, F, Fut>(&self, options: CallOptions, f: F) -> CallHandle<T>
    where
        T: Send + 'static,
        F: Fn(C, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RpcError>> + Send,
    {
        let router = self.clone();
        CallHandle::new(tokio::spawn(
            async move { router.call_with(options, f).await },
        ))
    }
}

impl<C: ServiceClient> Shared<C> {
    fn endpoints(&self) -> Arc<[Arc<Endpoint<C>>]> {
        self.endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Picks the least-used node not yet `tried` (exactly in small clusters, the less used of two
    /// random nodes in large ones: `pick::choose`) and counts the call on it. No lock is shared
    /// by the calls: two calls picking at the same instant may both take the node that was least
    /// used, and the next picks even it out. Nodes that are ejected (or probed
    /// by another call after their pause) or full are used only when no other node is left
    /// (better a doubtful node than no answer).
    fn pick(&self, tried: &[Arc<str>]) -> Option<endpoint::InFlight<C>> {
        self.choose(tried, true)
    }

    /// Like [`Shared::pick`], but only a node that takes calls and is not full, or none: a
    /// backup request is worth sending only to a node that is likely to answer.
    fn pick_healthy(&self, tried: &[Arc<str>]) -> Option<endpoint::InFlight<C>> {
        self.choose(tried, false)
    }

    fn choose(&self, tried: &[Arc<str>], fallback: bool) -> Option<endpoint::InFlight<C>> {
        // No lock shared by every call: the thread's own RNG, unless a seed asks for
        // reproducible draws (tests).
        match &self.rng {
            Some(seeded) => {
                let mut rng = seeded.lock().unwrap_or_else(|p| p.into_inner());
                self.choose_with(tried, fallback, &mut *rng)
            }
            None => self.choose_with(tried, fallback, &mut rand::rng()),
        }
    }

    fn choose_with<R: rand::Rng>(
        &self,
        tried: &[Arc<str>],
        fallback: bool,
        rng: &mut R,
    ) -> Option<endpoint::InFlight<C>> {
        let endpoints = self.endpoints();
        let now = Instant::now();
        let fresh = |e: &Arc<Endpoint<C>>| !tried.contains(&e.node.id);
        let score = |e: &Arc<Endpoint<C>>| e.score();
        let found = pick::choose(
            &endpoints,
            |e| fresh(e) && e.takes_calls(now) && !e.is_full(),
            score,
            rng,
        )
        .or_else(|| {
            fallback
                .then(|| pick::choose(&endpoints, |e| fresh(e), score, rng))
                .flatten()
        })?;
        Some(endpoints[found].begin())
    }

    /// Rebuilds the endpoint list for a new membership, keeping the endpoints (and so the
    /// connections and counters) of nodes that stay.
    fn sync(&self, membership: &Membership) {
        let old = self.endpoints();
        let by_id: HashMap<&str, &Arc<Endpoint<C>>> =
            old.iter().map(|e| (&*e.node.id, e)).collect();
        let next: Vec<Arc<Endpoint<C>>> = membership
            .members
            .iter()
            .map(|m| match by_id.get(&*m.id) {
                Some(e) if e.is(m) => {
                    e.follow_load(m);
                    Arc::clone(e)
                }
                _ => Arc::new(Endpoint::new(m, self.config.idle_close)),
            })
            .collect();
        let kept: std::collections::HashSet<*const Endpoint<C>> =
            next.iter().map(Arc::as_ptr).collect();
        *self.endpoints.write().unwrap_or_else(|p| p.into_inner()) = next.into();
        for gone in old.iter().filter(|e| !kept.contains(&Arc::as_ptr(e))) {
            gone.remove();
        }
    }
}

async fn follow<C: ServiceClient>(
    shared: Weak<Shared<C>>,
    mut membership: watch::Receiver<Membership>,
    stop: CancellationToken,
) {
    // Also sets the per-node gauges of the live nodes again every few seconds: an exporter that
    // drops gauges left unchanged (the demo's, after a minute) then forgets only departed nodes.
    let mut refresh = tokio::time::interval(GAUGE_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.run_until_cancelled(membership.changed()) => {
                let Some(Ok(())) = changed else { return };
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let snapshot = membership.borrow_and_update().clone();
                shared.sync(&snapshot);
            }
            _ = refresh.tick() => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                for endpoint in shared.endpoints().iter() {
                    crate::observe::node_in_flight(&endpoint.node.id, endpoint.own_in_flight());
                }
            }
        }
    }
}

/// How often a router sets its per-node gauges again (see `follow`).
const GAUGE_REFRESH: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{LoadReport, Member};

    #[tarpc::service]
    trait Echo {
        async fn echo(value: u32) -> u32;
    }
    distribution_shared::service_client!(EchoClient);

    fn member(id: &str, in_flight: u32) -> Member {
        Member {
            id: id.into(),
            addr: format!("127.0.0.1:{}", 1 + id.len()).into(),
            load: Arc::new(LoadReport::new(in_flight, 1024)),
        }
    }

    fn picked(router: &Router<EchoClient>) -> String {
        let call = router.shared.pick(&[]).expect("a node");
        call.endpoint().node.id.to_string()
    }

    #[tokio::test]
    async fn a_node_registered_again_under_the_same_address_is_scored_on_its_new_report() {
        let (a, b) = (member("a", 0), member("bb", 10));
        let first = Membership {
            index: 1,
            members: Arc::from(vec![a.clone(), b.clone()]),
        };
        let (_tx, rx) = watch::channel(first);
        let router = Router::<EchoClient>::new(rx, RouterConfig::default());
        assert_eq!(picked(&router), "a", "a reports 0 calls, bb 10");
        // `a` is evicted and registers again between two snapshots: same id, same address, a
        // new report (the old one is never updated again). It is now busy.
        let again = member("a", 100);
        a.load.set(0, 1024);
        let second = Membership {
            index: 3,
            members: Arc::from(vec![again, b]),
        };
        router.shared.sync(&second);
        assert_eq!(
            picked(&router),
            "bb",
            "the router reads a's new report (100 calls), not the frozen one (0)"
        );
    }
}
