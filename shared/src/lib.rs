//! # distribution-shared: the contract
//!
//! Everything the master, the nodes and the callers of a `distribution` cluster must agree on, and
//! nothing else:
//!
//! - [`wire`]: the JSON bodies of the master's HTTP API (register, heartbeat, node list, errors);
//! - [`defaults`]: ports, intervals and limits, with the reasons for their values;
//! - [`transport`]: how a tarpc connection is framed and encoded (length-delimited bincode with a
//!   bounded frame length), kept in one place so both ends always match;
//! - [`service`]: the [`ServiceClient`] trait that lets the router build any tarpc client generated
//!   by `#[tarpc::service]` on top of that transport;
//! - [`stream`]: a connection in the clear or under TLS, and how to open or accept one;
//! - [`resolve`]: host names to addresses in-process (`/etc/resolv.conf`, `/etc/hosts`), for
//!   every outgoing connection, so names resolve even in an empty container image;
//! - [`handshake`]: with a cluster secret, the proof of it that callers and nodes exchange on
//!   every connection before any tarpc frame (HMAC of fresh nonces, never the secret itself);
//! - [`tls`]: TLS and mutual-TLS settings loaded from PEM files (rustls, `ring`);
//! - [`listener`]: the limits every listener applies per connection (per-peer-IP limit, idle
//!   timeout);
//! - `registry_client` (feature `reqwest`): the one typed client of the master's registry HTTP
//!   API, used by the nodes (register, heartbeat, leave) and the callers (node list, events),
//!   so both parse a master's address the same way;
//! - [`backoff`]: the one exponential backoff of the retry loops;
//! - [`setters`]: `with_setters!`, the `with_…` builders of the `#[non_exhaustive]` configs;
//! - [`shutdown`]: the wait for SIGTERM or Ctrl-C that stops a node or a master gracefully.
//!
//! `master/` and `node/` both depend on this crate and never on each other.

pub mod backoff;
pub mod defaults;
pub mod handshake;
pub mod listener;
#[cfg(feature = "reqwest")]
pub mod registry_client;
pub mod resolve;
pub mod service;
pub mod setters;
pub mod shutdown;
pub mod stream;
pub mod tls;
pub mod transport;
pub mod wire;

/// How every secret of the cluster is held (configs, clients): `Debug` prints `[REDACTED]`, the
/// memory is zeroed on drop; [`ExposeSecret::expose_secret`] reads it.
pub use secrecy::{ExposeSecret, SecretString};
pub use service::ServiceClient;
pub use stream::Stream;
pub use tarpc;
pub use tokio_rustls;
