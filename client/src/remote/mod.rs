//! Remote callers: a [`CallRouter`] in any process (a web service, a batch job on another machine),
//! fed by a blocking query on a master's node list. The master stays out of the data path: the
//! caller dials the nodes itself, one connection per node, exactly as the in-process router does.
//!
//! ```text
//!                                   blocking query:
//!    another machine                GET /v1/nodes?index=N&wait=1s     master (:3000)
//!   ┌────────────────────────────┐                        ┌──────────────────────────┐
//!   │ your code                  │                        │                          │
//!   │    │                       │ ─────────────────────▶ │ api ──▶ registry         │
//!   │    ▼       membership      │                        │   answers on a change,   │
//!   │  CallRouter ◀───────── watcher │ ◀───────────────────── │   or after the wait      │
//!   │    │                       │   node list + loads    │                          │
//!   └────┼───────────────────────┘                        └────────────▲─────────────┘
//!        │ tarpc calls, one connection per node                        │ register,
//!        ▼                                                             │ heartbeats (load)
//!    ┌────────┐  ┌────────┐  ┌────────┐                                │
//!    │ node A │  │ node B │  │ node C │ ───────────────────────────────┘
//!    └────────┘  └────────┘  └────────┘
//! ```
//!
//! [`connect`] fetches the node list once (so calls right after it find the nodes), then spawns a
//! watcher task that keeps one blocking query open (the master's `watch` module) and publishes each new node
//! set into the `tokio::sync::watch` channel that the [`CallRouter`] follows.
//!
//! # Load figures
//!
//! The router's score combines its own calls in flight with the load each node reports in its
//! heartbeats. Those reports do not bump the registry's index, so a blocking query would not
//! return for them. The watcher therefore bounds each query's `wait` by
//! [`RemoteConfig::load_refresh`] (default: one heartbeat interval, 1 s): a join or a leave still
//! arrives within milliseconds, and without one the answer comes back after at most that period
//! with fresh load figures. These are written in place into the [`LoadReport`](crate::membership::LoadReport)s the router already
//! reads (one `Arc` per node id, kept across answers), without republishing the node set, so the
//! router neither rebuilds its endpoints nor drops a connection for a load update. The cost is one
//! small HTTP request per caller per refresh period.
//!
//! # When the master is down
//!
//! - At [`connect`]: it retries for [`RemoteConfig::first_answer_timeout`] (a master that is
//!   starting up gets a chance), then fails with [`ConnectError::Unreachable`]. With several
//!   masters each request gets an equal share of that time (at least 100 ms), so one that
//!   accepts connections and never answers (a paused process) cannot use it all up before the
//!   next is asked. A router that
//!   knows no node would only fail every call, and a wrong address is better reported at once.
//! - Later: the router keeps its last view and its calls keep going to the known nodes (which
//!   keep serving). The watcher logs the outage once, retries with a backoff from
//!   [`RemoteConfig::retry_base`] to [`RemoteConfig::retry_max`], and logs the recovery. The
//!   stale load figures are zeroed at the start of an outage: the router's own counts then
//!   decide, rather than a report that grows older every second.
//! - When it is back: the first request asks for the list at once (no index), so the view
//!   catches up immediately. The master's index restarts from zero in a new master process; an
//!   index lower than the one known is taken as such a restart. A restarted master lists its
//!   nodes only as they re-register (within a heartbeat), so for
//!   [`RemoteConfig::restart_grace`] after an outage or a restart, nodes missing from its list
//!   are kept; new nodes are added at once. After the grace the view is the master's list.
//!
//! # Several masters
//!
//! Every entry point takes one master's address or a comma-separated list,
//! `"m1:3000,m2:3000"`. Nodes keep a lease with every master; a caller follows **one** and, when
//! it fails (refused, timed out, `5xx`), moves to the next at once, keeping its view and routing
//! on it meanwhile; only after every master failed in a row does it pause (the backoff above).
//! The next master's first answer is its whole list (another `epoch`), and the restart grace
//! keeps the nodes it has not listed yet. See the `failover` module.
//!
//! # Security
//!
//! A master with a cluster secret gets it from [`RemoteConfig::secret`], and the nodes get the
//! same secret proved in the cluster handshake on each connection; a master on HTTPS is
//! reached with [`RemoteConfig::master_tls`], by default the router's TLS settings (the cluster
//! CA, and the caller's certificate under mutual TLS), which also secure the calls to the nodes.
//!
//! The watcher stops when nobody follows the feed any more: when the router (every clone) and
//! every receiver of [`follow`] are dropped.
//!
//! # Layout
//!
//! - `config`: [`RemoteConfig`];
//! - `error`: [`ConnectError`];
//! - `failover`: the masters in order, the one followed, the pauses between rounds;
//! - `follower`: the watcher's state machine (first answer, load updates in place, outage,
//!   restart grace);
//! - `events`: [`events`], the master's membership events as a stream.
//!
//! All of them reach the master through the shared `registry_client` of
//! `distribution-shared`, the one the nodes use: one address parser, one HTTP client setup.

mod config;
mod error;
mod events;
mod failover;
mod follower;
#[cfg(test)]
mod tests;

use distribution_shared::ServiceClient;
use tokio::sync::watch;

use crate::membership::Membership;
use crate::router::{CallRouter, RouterConfig};
pub use config::RemoteConfig;
pub use error::ConnectError;
pub use events::{events, events_after};
use follower::spawn_watcher;

/// A router over the nodes of the master at `master` (`host:port` or `http://host:port`, or a
/// comma-separated list of masters, followed one at a time in that order: see
/// [Several masters](self#several-masters)), with the default [`RemoteConfig`] and the router
/// settings `config`.
///
/// ```no_run
/// # #[tarpc::service] trait Arith { async fn sum(values: Vec<i64>) -> i64; }
/// # distribution_shared::service_client!(ArithClient);
/// # async fn demo() -> anyhow::Result<()> {
/// use distribution_client::{RouterConfig, remote};
/// let router = remote::connect::<ArithClient>("10.0.0.5:3000", RouterConfig::default()).await?;
/// let reply = router
///     .call(|client, ctx| async move { client.sum(ctx, vec![2, 4, 6]).await })
///     .await?;
/// println!("{} from {}", reply.value, reply.node);
/// # Ok(()) }
/// ```
pub async fn connect<C: ServiceClient>(
    master: &str,
    config: RouterConfig,
) -> Result<CallRouter<C>, ConnectError> {
    connect_with(master, RemoteConfig::default().with_router(config)).await
}

/// [`connect`] with every setting.
pub async fn connect_with<C: ServiceClient>(
    master: &str,
    config: RemoteConfig,
) -> Result<CallRouter<C>, ConnectError> {
    let config = config.with_one_secret();
    let (feed, _task) = spawn_watcher(master, &config, Some(C::SERVICE)).await?;
    Ok(CallRouter::new(feed, config.router))
}

/// The membership feed alone, of every service: waits for the first answer of a master of `master` (one address
/// or a comma-separated list), then follows its node list
/// (see the [module docs](self)). The watcher runs until every clone of the receiver is dropped.
///
/// Each [`Membership`] it publishes is a new node set; its `index` is the feed's own version,
/// which grows at every change (the master's index may go back when the master restarts).
pub async fn follow(
    master: &str,
    config: &RemoteConfig,
) -> Result<watch::Receiver<Membership>, ConnectError> {
    let (feed, _task) = spawn_watcher(master, config, None).await?;
    Ok(feed)
}
