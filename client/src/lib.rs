//! # distribution-client: calling the cluster
//!
//! What application code needs to call a `distribution` cluster, and nothing of the server
//! stack (no axum, no hyper server): the master and the nodes live in their own crates.
//!
//! ```text
//!   your code ──▶ Router ──── tarpc calls, one connection per node ────▶ node A, B, C
//!                   ▲
//!                   │ membership (the node set, with each node's reported load)
//!        ┌──────────┴──────────────┐
//!   in-process master          remote::connect: the follower of a master's
//!   (distribution-master)      node list over HTTP (blocking queries)
//! ```
//!
//! How the pieces fit:
//! - [`membership`]: the node set a router follows, one [`Membership`] snapshot per change.
//! - [`router`]: least-used, failover-safe tarpc calls over a membership feed:
//!   [`Router::call`] (awaits the reply), [`Router::spawn`] (a [`CallHandle`]),
//!   [`Router::scatter`]; backup requests and outlier ejection.
//! - [`remote`]: the follower: a [`Router`] in any process, fed by a master's node list
//!   ([`remote::connect`]), and the master's membership events as a stream ([`remote::events`]).
//! - [`blocking`]: the router for synchronous code: [`blocking::BlockingRouter`].
//! - [`observe`]: the routers' metrics (through the `metrics` facade).

pub mod blocking;
pub mod membership;
pub mod observe;
pub mod remote;
pub mod router;

pub use membership::{LoadReport, Member, Membership};
pub use remote::{ConnectError, RemoteConfig};
pub use router::{
    CallError, CallHandle, CallOptions, HedgeDelay, HedgePolicy, HedgeStats, NodeRef, NodeStats,
    Reply, Router, RouterConfig, ScatterError, ScatterOptions,
};
