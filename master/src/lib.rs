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
//! - [`api`] is the HTTP API nodes talk to (`/v1/nodes`), with [`error`] mapping refusals to 4xx.
//! - [`router`] turns a membership feed into least-used, failover-safe tarpc calls:
//!   [`Router::call`] (sync), [`Router::spawn`] (async, a [`CallHandle`]), [`Router::scatter`].
//! - [`server`] ties them together in a [`Master`] running on an already-bound listener.

pub mod api;
pub mod config;
pub mod error;
pub mod lease;
pub mod membership;
pub mod registry;
pub mod router;
pub mod server;

pub use config::MasterConfig;
pub use membership::{LoadReport, Member, Membership};
pub use registry::Registry;
pub use router::{
    CallError, CallHandle, CallOptions, NodeRef, NodeStats, Reply, Router, RouterConfig,
    ScatterError, ScatterOptions,
};
pub use server::Master;
