//! # distribution-master: the registry and the router
//!
//! The master is where nodes announce themselves and where application code finds them.
//!
//! ```text
//!              register / heartbeat / leave (HTTP, JSON)
//!   node A ──┐                                   ┌──────────── master ────────────┐
//!   node B ──┼──────────────────────────────────▶│ api ─▶ registry ◀─ lease reaper │
//!   node C ──┘                                   │            │ membership         │
//!      ▲                                         │            ▼                    │
//!      └──────── tarpc calls (one conn/node) ────│        router  ◀── your code    │
//!                                                └────────────────────────────────┘
//! ```
//!
//! How the pieces fit (folders and modules a newcomer looks for):
//! - [`registry`] holds the nodes, their leases and load; it publishes a membership snapshot at
//!   every change (`registry/publish.rs` coalesces them for large clusters).
//! - `lease` is the reaper that evicts nodes whose heartbeats stopped for the TTL (unless most
//!   renewals are missing: self-preservation, in the registry).
//! - [`api`] is the HTTP API nodes and callers talk to (`/v1/nodes`, `/v1/events`), with
//!   [`error`] mapping refusals to 4xx/5xx; `watch` (blocking queries,
//!   `GET /v1/nodes?index=N&wait=30s`) and `sse` (the event stream) hold no HTTP types of
//!   their own beyond the handlers.
//! - `changes` answers `GET /v1/changes` (what changed since a follower's view, from
//!   `registry/changes.rs`), encoded once for the followers that ask the same.
//! - [`events`] is the change feed: every join, leave, eviction, replacement, late and back, with
//!   the registry's index, in a bounded history ([`events::HISTORY`]).
//! - `status` is the live status page served at `GET /`; [`observe`] names the master's metrics.
//! - [`http`] is the HTTP server with its limits (over the cluster's one accept loop,
//!   `distribution_shared::listener::Acceptor`); the demo's gateway runs on it too.
//! - [`Master`] ties them together on an already-bound listener; [`Master::router`] gives
//!   in-process application code a `distribution_client::CallRouter` fed by this registry.
//! - `cli` (feature `cli`, on by default): the command line of a master process, shared by the
//!   standalone `distribution-master` program (registry, API, events, status page, metrics; no
//!   gateway: the nodes run your own services) and `distribution-demo master`.
//!
//! The router, the remote follower and the blocking router live in the caller's crate,
//! `distribution-client`, so that callers need not build this server.

pub mod api;
mod auth;
mod changes;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod http;
mod lease;
pub mod observe;
pub mod registry;
mod server;
mod sse;
mod status;
mod watch;

pub use config::{MasterConfig, MetricsRender};
pub use http::HttpOptions;
pub use registry::{Registration, Registry, RegistryError};
pub use server::Master;
