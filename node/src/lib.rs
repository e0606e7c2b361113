//! # distribution-node: the node runtime
//!
//! A node serves one tarpc service (any `#[tarpc::service]` trait) to the cluster's callers and
//! keeps itself registered with the master:
//!
//! - [`server`]: the tarpc server on an already-bound listener: one task per connection, one
//!   per call, frames bounded by [`NodeConfig::max_frame_len`], and the graceful shutdown
//!   (leave the master, drain the calls in flight, close);
//! - `lifecycle`: the node's own thread, `dist-node-lifecycle`, where the lease, the accept loop,
//!   the handshakes and the connections' reading and writing run, apart from the handlers: a
//!   handler that holds its thread (a CPU loop in an `async fn`) can neither stop the
//!   heartbeats nor stall the calls beside it;
//! - [`calls`]: the node's call threads, where the handlers run (apart from the connections),
//!   and the watch on handlers that hold a thread without yielding;
//! - `connection`: an admitted connection, served on the lifecycle thread;
//! - `heartbeat`: registers, renews the lease every interval with the node's
//!   load, and registers again after a master restart (404) or outage;
//! - `auth`: with a cluster secret, the node's side of the handshake every caller must pass
//!   before its first call (refusals counted in [`Load::refused_connections`]);
//! - [`load`]: counts calls in flight and served, and refuses calls beyond the node's capacity;
//! - [`work`]: CPU-bound work off the async workers, on a bounded pool, stopped cooperatively
//!   when its call ends;
//! - [`observe`]: the node's metrics (through the `metrics` facade);
//! - [`master_client`]: the master's registry API, through the shared `registry_client` (one
//!   address parser and one error type with the remote callers);
//! - [`StartError`]: why a node did not start (the master's address, or its own listener or
//!   thread: never a status the master did not send);
//! - [`shutdown`]: SIGTERM and Ctrl-C.
//!
//! ```no_run
//! # #[tarpc::service] trait Arith { async fn sum(values: Vec<i64>) -> i64; }
//! # #[derive(Clone)] struct ArithServer;
//! # impl Arith for ArithServer { async fn sum(self, _: tarpc::context::Context, v: Vec<i64>) -> i64 { v.iter().sum() } }
//! # async fn demo() -> anyhow::Result<()> {
//! use distribution_node::{NodeConfig, handler};
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
//! let node = distribution_node::start(listener, NodeConfig::new("master:3000"), handler!(ArithServer.serve()))?;
//! distribution_node::shutdown::signal().await;
//! node.shutdown().await; // leaves the master, finishes the calls in flight
//! # Ok(()) }
//! ```

mod auth;
pub mod calls;
mod connection;
mod counted;
mod handle;
mod heartbeat;
mod lifecycle;

pub mod config;
mod error;
pub mod load;
pub mod master_client;
pub mod observe;
pub mod server;
pub mod shutdown;
pub mod work;

pub use config::{NodeConfig, NodeTls};
pub use distribution_shared::tarpc;
pub use error::StartError;
pub use load::{AT_CAPACITY, Load};
pub use master_client::MasterError;
pub use server::{NodeHandle, start};

/// Turns a tarpc server (what `MyService.serve()` returns) into the request handler that
/// [`start`] takes: `handler!(ArithServer.serve())`.
#[macro_export]
macro_rules! handler {
    ($serve:expr) => {{
        let serve = $serve;
        move |ctx: $crate::tarpc::context::Context, req| {
            $crate::tarpc::server::Serve::serve(::core::clone::Clone::clone(&serve), ctx, req)
        }
    }};
}
