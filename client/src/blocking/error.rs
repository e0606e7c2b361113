//! [`BlockingError`]: why a blocking call gave no reply. It wraps the async router's own errors
//! ([`CallError`], [`ScatterError`], [`ConnectError`]) unchanged, and adds what only blocking
//! can cause: being called where blocking is forbidden, and a wait that timed out.

use crate::remote::ConnectError;
use crate::router::{CallError, ScatterError};

/// Why a [`BlockingRouter`](super::BlockingRouter) call, connect or wait gave no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockingError {
    /// The call failed: the same error the async router returns.
    #[error(transparent)]
    Call(#[from] CallError),
    /// An item of a scatter failed: the same error the async router returns.
    #[error(transparent)]
    Scatter(#[from] ScatterError),
    /// The master could not be followed: the same error as [`crate::remote::connect`].
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A blocking method was called from a thread that runs a tokio runtime (inside `async`
    /// code, `Runtime::block_on` or `spawn_blocking`), where blocking would stall or deadlock
    /// that runtime. Use the async [`CallRouter`](crate::CallRouter) there (`.await` its calls).
    #[error(
        "blocking call made inside a tokio runtime, where blocking could deadlock it: \
         use the async CallRouter (router.call(..).await) in async code"
    )]
    InsideRuntime,
    /// The runtime behind the blocking router could not be started (the OS refused a thread).
    #[error("cannot start the blocking router's runtime: {0}")]
    Runtime(String),
    /// The handle's result was already returned by an earlier wait.
    #[error("the call's result was already taken by an earlier wait")]
    AlreadyTaken,
}

impl BlockingError {
    /// The call error inside, if this is one (also the failed item's error of a scatter).
    pub fn call_error(&self) -> Option<&CallError> {
        match self {
            BlockingError::Call(err) => Some(err),
            BlockingError::Scatter(err) => Some(&err.error),
            _ => None,
        }
    }
}
