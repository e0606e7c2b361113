//! [`CallError`]: every way a routed call can fail, each naming the node involved.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which node served, or failed, a call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRef {
    /// The node's id.
    pub id: Arc<str>,
    /// The address the call went to.
    pub addr: Arc<str>,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.addr)
    }
}

/// The error behind a [`CallError::Transport`]; shared, so that the error stays `Clone`.
pub type TransportCause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a routed call did not return a value. More kinds may come (`#[non_exhaustive]`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No node could take the call: none is registered, or every one was already tried by it.
    #[error("no node available for the call")]
    NoNodeAvailable,
    /// The call's deadline passed, on `node` if it was running on one.
    #[error("deadline of {deadline:?} exceeded{}", on(.node))]
    DeadlineExceeded {
        /// The node the call was running on when the deadline passed.
        node: Option<NodeRef>,
        /// The deadline the call had, counted from its start, across all attempts.
        deadline: Duration,
    },
    /// The node received the call and aborted it (it was at capacity, shutting down, or the
    /// handler failed). Not retried: the node may have done part of the work.
    #[error("node {node} aborted the call ({kind:?}): {detail}")]
    Remote {
        /// The node that aborted the call.
        node: NodeRef,
        /// The kind of failure the node reported. With tarpc 0.38's bincode transport the kind
        /// does not survive the trip (see `distribution_shared::wire::AT_CAPACITY`): rely on
        /// `detail`.
        kind: std::io::ErrorKind,
        /// What the node said.
        detail: String,
    },
    /// The connection to the node could not be made or broke, on every attempt the call had.
    #[error("transport to node {node} failed after {attempts} attempt(s): {reason}")]
    Transport {
        /// The last node tried.
        node: NodeRef,
        /// How many nodes were tried.
        attempts: u32,
        /// What went wrong on the last attempt: what the router was doing (`connect`, `call`,
        /// `no answer within 2s`, `refused: at capacity`); the error itself is the source.
        reason: String,
        /// The error of the last attempt (an `io::Error` from dialling or the handshake, tarpc's
        /// `RpcError`), when there was one.
        #[source]
        source: Option<TransportCause>,
    },
    /// The call was cancelled before it finished: its task was aborted, which happens when the
    /// runtime that ran it shut down while the handle was still awaited elsewhere.
    #[error("the call was cancelled before it finished")]
    Cancelled,
}

fn on(node: &Option<NodeRef>) -> String {
    match node {
        Some(node) => format!(" on node {node}"),
        None => String::new(),
    }
}

impl CallError {
    /// This error and its sources on one line (`transport to node … failed …: connect: wrong
    /// cluster secret`): `Display` alone does not repeat the source, as the error-handling
    /// guidelines ask, so this is what to log or show to a human.
    pub fn chain(&self) -> String {
        chain(self)
    }

    /// The node the error happened on, if any.
    pub fn node(&self) -> Option<&NodeRef> {
        match self {
            CallError::NoNodeAvailable | CallError::Cancelled => None,
            CallError::DeadlineExceeded { node, .. } => node.as_ref(),
            CallError::Remote { node, .. } | CallError::Transport { node, .. } => Some(node),
        }
    }
}

/// Writes an error and its chain of sources on one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}
