//! [`StartError`]: why [`crate::start`] could not start a node. Either the master's address is
//! unusable (no request was sent), or something of the node's own failed (its listener, its
//! lifecycle thread); never a status the master did not send.

use crate::master_client::MasterError;

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The master's address or the registry client's settings are unusable
    /// ([`MasterError::BadAddress`] and the like); nothing was sent.
    #[error(transparent)]
    Master(#[from] MasterError),
    /// The node's own resources failed: the listener has no address, the lifecycle thread or
    /// its runtime could not be made, the listener could not move to it.
    #[error("{what}")]
    Local {
        /// What the node was doing.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}
