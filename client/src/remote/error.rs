//! [`ConnectError`]: why a remote caller could not start following a master, with the cause
//! kept (the address problem, the last failure of the registry client) for error chains.

use std::time::Duration;

use distribution_shared::registry_client::{AddressError, RegistryError};
use reqwest::StatusCode;

/// Why [`connect`](super::connect), [`follow`](super::follow) or [`events`](super::events)
/// could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The master's address is not `host:port` or `http(s)://host:port` (the same rules, and
    /// the same [`AddressError`], as a node's).
    #[error("bad master address {master:?}: {problem}")]
    InvalidAddress {
        /// The address as given.
        master: String,
        /// What is wrong with it.
        #[source]
        problem: AddressError,
    },
    /// The master gave no usable node list in time.
    #[error("no node list from the master at {url} within {timeout:?}: {}", last_failure(.last))]
    Unreachable {
        /// The URL asked.
        url: String,
        /// How long the caller tried.
        timeout: Duration,
        /// The last failure; `None` when the last try ran out of time.
        #[source]
        last: Option<RegistryError>,
    },
    /// The master refused to list its nodes (a wrong secret, or not a master at that address).
    #[error("the master at {url} refused to list its nodes ({status}): {message}")]
    Refused {
        /// The URL asked.
        url: String,
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The master's message.
        message: String,
    },
    /// The registry client could not be built (a secret that is not visible ASCII, TLS
    /// settings the HTTP client refuses).
    #[error("cannot build the registry client: {0}")]
    Client(#[source] RegistryError),
}

impl ConnectError {
    /// The error of building the registry client of `master`.
    pub(crate) fn building(master: &str, err: RegistryError) -> Self {
        match err {
            RegistryError::BadAddress { problem, .. } => ConnectError::InvalidAddress {
                master: master.to_owned(),
                problem,
            },
            other => ConnectError::Client(other),
        }
    }
}

fn last_failure(last: &Option<RegistryError>) -> String {
    match last {
        Some(err) => err.to_string(),
        None => "timed out".to_owned(),
    }
}
