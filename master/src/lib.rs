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
//! How the pieces fit:
//! - [`registry`] holds the nodes, their leases and load; it publishes a [`Membership`] snapshot
//!   at every change.
//! - [`lease`] evicts nodes whose heartbeats stopped for the TTL.
//! - [`api`] is the HTTP API nodes talk to (`/v1/nodes`), with [`error`] mapping refusals to 4xx;
//!   [`watch`] makes `GET /v1/nodes?index=N&wait=30s` a blocking query that answers on a change.
//! - [`router`] turns a membership feed into least-used, failover-safe tarpc calls:
//!   [`Router::call`] (sync), [`Router::spawn`] (async, a [`CallHandle`]), [`Router::scatter`].
//! - [`events`] is the change feed: every join, leave, eviction, replacement, late and back, with
//!   the registry's index, in a bounded history; [`sse`] serves it as `GET /v1/events`.
//! - [`status`] is the live status page the master serves at `GET /`.
//! - [`observe`] names the metrics the master and the routers record (through `metrics`).
//! - [`server`] ties them together in a [`Master`] running on an already-bound listener.
//! - [`remote`] gives any other process the same [`Router`], fed by a blocking query on a
//!   master's node list: [`remote::connect`].
//! - [`blocking`] wraps a router for synchronous code (no runtime to create): each call blocks
//!   the calling thread, as the Go original's `Call` did: [`blocking::BlockingRouter`].
//! - `cli` (feature `cli`, on by default): the command line of a master process, shared by the
//!   standalone `distribution-master` program (registry, API, events, status page, metrics; no
//!   gateway: the nodes run your own services) and `distribution-demo master`.

pub mod api;
pub mod auth;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod http;
pub mod lease;
pub mod observe;
pub mod registry;
pub mod server;
pub mod sse;
pub mod status;
pub mod watch;

pub use config::MasterConfig;
pub use registry::Registry;
pub use server::Master;
