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
//! - **scatter/gather**: [`Router::scatter`] runs many items with bounded concurrency and returns
//!   the results in order.
//!
//! Calls are retried only when the connection failed, which may happen after the node received
//! the request: a routed call must therefore be idempotent (at-least-once delivery).

mod endpoint;
mod error;
mod handle;
mod pick;
mod scatter;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use distribution_shared::handshake::Key;
use distribution_shared::tls::ClientTls;
use distribution_shared::wire::{AT_CAPACITY, THROTTLED};
use distribution_shared::{ServiceClient, defaults};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tarpc::client::RpcError;
use tarpc::context::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::membership::Membership;
use endpoint::{Backoff, Endpoint};
pub use error::{CallError, NodeRef};
pub use handle::CallHandle;
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
    /// Seeds the tie-breaking RNG, for reproducible routing in tests. Random when `None`.
    pub seed: Option<u64>,
    /// The cluster secret, proved to each node when the connection opens (the cluster
    /// handshake, [`distribution_shared::handshake`]); required by nodes that have one. `None`:
    /// no handshake. [`crate::Master::router_with`] and [`crate::remote`] fill it in from the
    /// master's or the remote caller's secret when it is `None`. Never logged.
    pub secret: Option<String>,
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
            .field("seed", &self.seed)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
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
            seed: None,
            secret: None,
        }
    }
}

/// Per-call settings that override the router's.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// The call's deadline, counted from now, across every attempt.
    pub deadline: Option<Duration>,
    /// How many nodes the call may try.
    pub attempts: Option<u32>,
    /// Overrides [`RouterConfig::attempt_timeout`].
    pub attempt_timeout: Option<Duration>,
    /// Overrides [`RouterConfig::idempotent`].
    pub idempotent: Option<bool>,
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
    /// How many nodes were tried (1 when the first one answered).
    pub attempts: u32,
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
    rng: Mutex<SmallRng>,
    /// Stops the membership follower when the last router clone is dropped.
    stop: CancellationToken,
}

impl<C> Drop for Shared<C> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

enum Attempt {
    /// The attempt failed in a way another node may not: try one.
    Retry(CallError),
    /// The node left the cluster during the attempt: try another one, without counting it
    /// against the attempts (a node leaving is not a failure; when several leave at once, as
    /// when a service is scaled down, a call could otherwise run out of attempts).
    Gone(CallError),
    /// The call is over.
    Fail(CallError),
}

/// What one call may do, resolved from the router's config and the call's options.
struct Plan {
    deadline: Instant,
    budget: Duration,
    attempt_timeout: Option<Duration>,
    idempotent: bool,
    /// The call's trace id, sent with every attempt: the node logs it too.
    trace: tarpc::trace::TraceId,
}

impl<C: ServiceClient> Router<C> {
    /// A router following `membership` (see [`crate::Master::router`] for the in-process one).
    /// Must be called within a tokio runtime: it spawns the task that follows the feed, which
    /// ends when the router is dropped or the feed closes (the router then keeps its last view).
    pub fn new(membership: watch::Receiver<Membership>, config: RouterConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand::rng()),
        };
        let shared = Arc::new(Shared {
            endpoints: RwLock::new(Arc::from(Vec::new())),
            membership: membership.clone(),
            key: Key::from_secret(config.secret.as_deref()),
            config,
            rng: Mutex::new(rng),
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
    pub async fn wait_for_nodes(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.membership.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|m| m.members.len() >= n)).await;
        matches!(reached, Ok(Ok(_))) || self.len() >= n
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
            })
            .collect()
    }

    /// Calls the least-used node with the router's default deadline and awaits the reply.
    ///
    /// `f` makes the call on the node's client; it may run more than once (on different nodes)
    /// when connections fail:
    ///
    /// ```no_run
    /// # #[tarpc::service] trait Arith { async fn sum(values: Vec<i64>) -> i64; }
    /// # distribution_shared::service_client!(ArithClient);
    /// # async fn demo(router: distribution_master::Router<ArithClient>) -> anyhow::Result<()> {
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
        let mut tried: Vec<Arc<str>> = Vec::new();
        let mut last_failure: Option<CallError> = None;
        // Failed attempts so far; attempts on nodes that left do not count. Bounded anyway: each
        // node is tried once, and the deadline spans every attempt.
        let mut failed = 0;
        while failed < attempts {
            let Some(in_flight) = self.shared.pick(&tried) else {
                break;
            };
            let endpoint = in_flight.endpoint().clone();
            tried.push(endpoint.node.id.clone());
            let attempt = tried.len() as u32;
            crate::observe::attempt(attempt);
            let span = tracing::debug_span!("call", node = %endpoint.node, attempt);
            let result = self.attempt(&endpoint, &plan, &f).instrument(span).await;
            match result {
                Ok(value) => {
                    in_flight.served();
                    endpoint.mark_ok();
                    return Ok(Reply {
                        value,
                        node: endpoint.node.clone(),
                        attempts: attempt,
                    });
                }
                Err(Attempt::Fail(err)) => return Err(err),
                Err(Attempt::Retry(err)) => {
                    tracing::debug!(error = %err, "attempt failed, trying another node");
                    failed += 1;
                    last_failure = Some(err);
                }
                Err(Attempt::Gone(err)) => {
                    tracing::debug!(error = %err, "the node left, trying another one");
                    last_failure = Some(err);
                }
            }
        }
        Err(match last_failure {
            Some(CallError::Transport { node, reason, .. }) => CallError::Transport {
                node,
                attempts: tried.len() as u32,
                reason,
            },
            Some(other) => other,
            None => CallError::NoNodeAvailable,
        })
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

    async fn attempt<T, F, Fut>(
        &self,
        endpoint: &Arc<Endpoint<C>>,
        plan: &Plan,
        f: &F,
    ) -> Result<T, Attempt>
    where
        F: Fn(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let config = &self.shared.config;
        let backoff = Backoff {
            base: config.eject_base,
            max: config.eject_max,
        };
        let node = &endpoint.node;
        let exceeded = || {
            Attempt::Fail(CallError::DeadlineExceeded {
                node: Some(node.clone()),
                deadline: plan.budget,
            })
        };
        let transport = |reason: String| {
            Attempt::Retry(CallError::Transport {
                node: node.clone(),
                attempts: 1,
                reason,
            })
        };
        // An idempotent call with an attempt timeout waits for a connection at most that long
        // too, then moves on (the dial goes on for the calls that still wait on it).
        let left = plan.deadline.saturating_duration_since(Instant::now());
        let (connect_limit, connect_by_attempt) = match plan.attempt_timeout {
            Some(per_attempt) if plan.idempotent && per_attempt < left => (per_attempt, true),
            _ => (left, false),
        };
        let connect = tokio::time::timeout(
            connect_limit,
            endpoint.client(
                config.connect_timeout,
                config.max_frame_len,
                config.tls.as_ref(),
                self.shared.key.as_ref(),
            ),
        );
        let (generation, client) = match connect.await {
            Err(_) if connect_by_attempt => {
                endpoint.mark_failed(None, backoff);
                return Err(transport(format!("no connection within {connect_limit:?}")));
            }
            Err(_) => return Err(exceeded()),
            Ok(Err(err)) => {
                endpoint.mark_failed(None, backoff);
                return Err(transport(format!("connect: {err}")));
            }
            Ok(Ok(found)) => found,
        };
        let mut ctx = tarpc::context::current();
        ctx.deadline = plan.deadline;
        ctx.trace_context.trace_id = plan.trace;
        let left = plan.deadline.saturating_duration_since(Instant::now());
        let (limit, limited_by_attempt) = match plan.attempt_timeout {
            Some(per_attempt) if plan.idempotent && per_attempt < left => (per_attempt, true),
            _ => (left, false),
        };
        let call = tokio::time::timeout(limit, f(client, ctx));
        let outcome = if plan.idempotent {
            tokio::select! {
                outcome = call => outcome,
                _ = endpoint.removed() => {
                    return Err(Attempt::Gone(CallError::Transport {
                        node: node.clone(),
                        attempts: 1,
                        reason: "the node left the cluster during the call".into(),
                    }));
                }
            }
        } else {
            call.await
        };
        match outcome {
            Err(_) if limited_by_attempt => {
                // A node that does not answer in time is as good as gone for this call, and its
                // connection may be stuck: drop it, eject the node, try another one.
                endpoint.mark_failed(Some(generation), backoff);
                Err(transport(format!("no answer within {limit:?}")))
            }
            Err(_) | Ok(Err(RpcError::DeadlineExceeded)) => Err(exceeded()),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(RpcError::Server(err)))
                if err.detail == AT_CAPACITY || err.detail == THROTTLED =>
            {
                // The node refused the call before doing any work (at capacity): another node
                // may take it, and this one is healthy, so it is not ejected.
                Err(transport(format!("refused: {}", err.detail)))
            }
            Ok(Err(RpcError::Server(err))) => {
                endpoint.record_error(config.eject_after_errors, backoff);
                let err = CallError::Remote {
                    node: node.clone(),
                    kind: err.kind,
                    detail: err.detail,
                };
                Err(if plan.idempotent {
                    Attempt::Retry(err)
                } else {
                    Attempt::Fail(err)
                })
            }
            Ok(Err(err)) => {
                endpoint.mark_failed(Some(generation), backoff);
                Err(transport(error::chain(&err)))
            }
        }
    }
}

impl<C: ServiceClient> Shared<C> {
    fn endpoints(&self) -> Arc<[Arc<Endpoint<C>>]> {
        self.endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Picks the least-used node not yet `tried` and counts the call on it, both under the RNG
    /// lock so that concurrent calls see each other's counts. Nodes that are ejected (or probed
    /// by another call after their pause) or full are used only when no other node is left
    /// (better a doubtful node than no answer).
    fn pick(&self, tried: &[Arc<str>]) -> Option<endpoint::InFlight<C>> {
        let endpoints = self.endpoints();
        let now = Instant::now();
        let fresh = |e: &Arc<Endpoint<C>>| !tried.contains(&e.node.id);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let score = |e: &Arc<Endpoint<C>>| e.score();
        let found = pick::least_used(
            &endpoints,
            |e| fresh(e) && e.takes_calls(now) && !e.is_full(),
            score,
            &mut *rng,
        )
        .or_else(|| pick::least_used(&endpoints, |e| fresh(e), score, &mut *rng))?;
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
                _ => Arc::new(Endpoint::new(m)),
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
    while let Some(Ok(())) = stop.run_until_cancelled(membership.changed()).await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let snapshot = membership.borrow_and_update().clone();
        shared.sync(&snapshot);
    }
}

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
