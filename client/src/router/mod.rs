//! The router: application code's way to call the cluster (what replaces the Go original's
//! `Call`, `Go` and `Waiter`).
//!
//! A [`CallRouter<C>`] follows a [`Membership`] feed (the in-process registry's, or a remote master's)
//! and routes each call to the least-used healthy node:
//!
//! - **one connection per node**, dialled on first use, multiplexing every call (`endpoint.rs`);
//! - **least used**: the fewest calls in flight, ties broken at random (`pick.rs`);
//! - **aperture**: in a large cluster, only a subset of the nodes sized by the router's own
//!   load (`aperture.rs`), so that a router over 10,000 nodes holds the connections its calls
//!   need, not 10,000;
//! - **failover**: a call whose connection fails is retried on another node, up to
//!   [`RouterConfig::attempts`] nodes, all within one deadline; the failed node is ejected from
//!   routing at once (for a backoff that grows with repeated failures) instead of waiting for
//!   the master to evict it;
//! - **sync and async**: [`CallRouter::call`] awaits the reply; [`CallRouter::submit`] returns a
//!   [`CallHandle`] to await later (dropping it cancels the call);
//! - **backup requests** (opt-in, [`RouterConfig::hedge`]): an idempotent call with no answer
//!   after a delay is sent to a second node too, within a budget; a node that keeps losing
//!   these races is ejected like a failed one (`hedge.rs`);
//! - **scatter/gather**: [`CallRouter::scatter`] runs many items with bounded concurrency and returns
//!   the results in order.
//!
//! Calls are retried only when the connection failed, which may happen after the node received
//! the request: a routed call must therefore be idempotent (at-least-once delivery).

mod aperture;
mod attempt;
mod config;
mod endpoint;
mod error;
mod handle;
mod hedge;
mod members;
mod pick;
mod scatter;
mod stub;
#[cfg(test)]
mod testing;
mod window;

use distribution_shared::backoff::Backoff;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use distribution_shared::ServiceClient;
use distribution_shared::handshake::Key;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tarpc::client::RpcError;
use tarpc::context::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::membership::Membership;
use attempt::Plan;
pub use config::{CallOptions, RouterConfig};
pub use error::{CallError, NodeRef};
pub use handle::CallHandle;
pub use hedge::{HedgeDelay, HedgePolicy, HedgeStats};
pub use scatter::{ScatterError, ScatterOptions};
pub use stub::RoutedStub;

/// The longest deadline a call gets: one year (see [`CallRouter::call_with`]).
pub use distribution_shared::defaults::MAX_DEADLINE;

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
pub struct CallRouter<C: ServiceClient> {
    shared: Arc<Shared<C>>,
}

impl<C: ServiceClient> Clone for CallRouter<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<C: ServiceClient> {
    endpoints: ArcSwap<members::View<C>>,
    /// The window's size and the router's calls in flight (see `aperture.rs`).
    aperture: aperture::Aperture,
    /// The router's own order of the nodes, whose first ones are its window.
    ring: aperture::Ring,
    membership: watch::Receiver<Membership>,
    config: RouterConfig,
    /// The key of [`RouterConfig::secret`], computed once.
    key: Option<Key>,
    /// The seeded RNG when [`RouterConfig::seed`] is set; `None`: each thread's own.
    rng: Option<Mutex<SmallRng>>,
    hedging: hedge::Hedging,
    /// How long a failed node stays out of routing: [`RouterConfig::eject_base`] doubling to
    /// [`RouterConfig::eject_max`] with each strike, jittered.
    eject_backoff: Backoff,
    /// Stops the membership follower when the last router clone is dropped.
    stop: CancellationToken,
}

impl<C: ServiceClient> Drop for Shared<C> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl<C: ServiceClient> CallRouter<C> {
    /// A router following `membership` (see `distribution_master::Master::router` for the in-process one).
    /// Must be called within a tokio runtime: it spawns the task that follows the feed, which
    /// ends when the router is dropped or the feed closes (the router then keeps its last view).
    pub fn new(membership: watch::Receiver<Membership>, config: RouterConfig) -> Self {
        let rng = config
            .seed
            .map(|seed| Mutex::new(SmallRng::seed_from_u64(seed)));
        // The ring's salt: from the seed when one asks for reproducible routing.
        let salt = config
            .seed
            .map_or_else(rand::random, |seed| seed ^ 0x9e37_79b9_7f4a_7c15);
        let shared = Arc::new(Shared {
            endpoints: ArcSwap::from_pointee(members::View::default()),
            aperture: aperture::Aperture::new(
                config.aperture_above,
                config.aperture_min,
                config.aperture_load,
                config.aperture_budget,
            ),
            ring: aperture::Ring::new(salt),
            membership: membership.clone(),
            key: Key::from_secret(config.secret.as_ref()),
            hedging: hedge::Hedging::new(&config),
            eject_backoff: Backoff::new(config.eject_base, config.eject_max).with_jitter(),
            config,
            rng,
            stop: CancellationToken::new(),
        });
        shared.sync(&membership.borrow());
        let stop = shared.stop.clone();
        tokio::spawn(members::follow(Arc::downgrade(&shared), membership, stop));
        Self { shared }
    }

    /// The router's settings.
    pub fn config(&self) -> &RouterConfig {
        &self.shared.config
    }

    /// How many nodes the router knows.
    pub fn len(&self) -> usize {
        self.shared.endpoints().all.len()
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
            .all
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
    /// # async fn demo(router: distribution_client::CallRouter<ArithClient>) -> anyhow::Result<()> {
    /// let reply = router
    ///     .call(|client, ctx| async move { client.sum(ctx, vec![2, 4, 6]).await })
    ///     .await?;
    /// println!("{} from {}", reply.value, reply.node);
    /// # Ok(()) }
    /// ```
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<Reply<T>, CallError>
    where
        F: Fn(C::OnNode, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        self.call_with(CallOptions::default(), f).await
    }

    /// [`CallRouter::call`] with per-call options.
    pub async fn call_with<T, F, Fut>(
        &self,
        options: CallOptions,
        f: F,
    ) -> Result<Reply<T>, CallError>
    where
        F: Fn(C::OnNode, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let trace = crate::observe::trace_id();
        self.call_on_channels(options, trace, |conn, ctx| f(C::on_node(conn), ctx))
            .await
    }

    /// The attempt loop behind every call ([`CallRouter::call_with`], [`RoutedStub`]): `f` gets the
    /// node's channel itself; every attempt carries trace id `trace`; the outcome is recorded in
    /// the router's metrics.
    pub(crate) async fn call_on_channels<T, F, Fut>(
        &self,
        options: CallOptions,
        trace: tarpc::trace::TraceId,
        f: F,
    ) -> Result<Reply<T>, CallError>
    where
        F: Fn(endpoint::Conn<C>, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let started = Instant::now();
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
        let result = self.routed(&options, &plan, attempts, &f).await;
        crate::observe::call_done(&result, started, trace);
        result
    }

    /// Starts a call in the background and returns a handle to await its reply later, like the
    /// Go original's `Go` and `Waiter`. Dropping the handle cancels the call.
    pub fn submit<T, F, Fut>(&self, f: F) -> CallHandle<T>
    where
        T: Send + 'static,
        F: Fn(C::OnNode, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RpcError>> + Send,
    {
        self.submit_with(CallOptions::default(), f)
    }

    /// [`CallRouter::submit`] with per-call options.
    pub fn submit_with<T, F, Fut>(&self, options: CallOptions, f: F) -> CallHandle<T>
    where
        T: Send + 'static,
        F: Fn(C::OnNode, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RpcError>> + Send,
    {
        let router = self.clone();
        CallHandle::new(tokio::spawn(
            async move { router.call_with(options, f).await },
        ))
    }
}

#[cfg(test)]
mod tests;
