//! [`BlockingCallHandle`]: a call running in the background, waited on from synchronous code
//! (the Go original's `Waiter`). It wraps the async [`CallHandle`], so dropping it cancels the
//! call exactly as dropping the async handle does.

use std::sync::Arc;
use std::time::Duration;

use super::{BlockingError, Driver};
use crate::router::{CallHandle, Reply};

/// The pending reply of a call started with
/// [`BlockingRouter::submit`](super::BlockingRouter::submit).
///
/// [`wait`](Self::wait) blocks until the reply (or the call's deadline);
/// [`wait_timeout`](Self::wait_timeout) blocks at most a given time and leaves the call running
/// when the reply is not in yet. Dropping the handle before the reply cancels the call. The
/// handle keeps the router's runtime alive: the runtime stops only once every router clone and
/// every handle is dropped.
#[must_use = "dropping a BlockingCallHandle cancels the call"]
pub struct BlockingCallHandle<T> {
    /// `None` once a wait has returned the result. Declared before `driver`, so that the call
    /// is cancelled before the runtime may stop.
    call: Option<CallHandle<T>>,
    driver: Arc<Driver>,
}

impl<T> std::fmt::Debug for BlockingCallHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingCallHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

impl<T> BlockingCallHandle<T> {
    pub(super) fn new(call: CallHandle<T>, driver: Arc<Driver>) -> Self {
        Self {
            call: Some(call),
            driver,
        }
    }

    /// Whether the reply has arrived (a wait will not block), or was already taken.
    pub fn is_finished(&self) -> bool {
        self.call.as_ref().is_none_or(CallHandle::is_finished)
    }

    /// Blocks until the call's reply or its deadline, with the same result as the async
    /// router's call. Inside a tokio runtime it returns [`BlockingError::InsideRuntime`] at once
    /// (and the call is cancelled with the handle).
    pub fn wait(mut self) -> Result<Reply<T>, BlockingError> {
        let call = self.call.take().ok_or(BlockingError::AlreadyTaken)?;
        Ok(self.driver.block_on(call)??)
    }

    /// Blocks for at most `timeout`:
    ///
    /// - `Some(result)`: the call is over, `result` is what [`wait`](Self::wait) would have
    ///   returned; later waits on this handle return [`BlockingError::AlreadyTaken`].
    /// - `None`: no reply within `timeout`. **The call goes on**: wait again (with
    ///   [`wait`](Self::wait) or another `wait_timeout`) to get its reply, or drop the handle to
    ///   cancel it. The call's own deadline still bounds it.
    ///
    /// Inside a tokio runtime it returns `Some(Err(BlockingError::InsideRuntime))` at once, and
    /// the call goes on.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Reply<T>, BlockingError>> {
        let Some(call) = self.call.as_mut() else {
            return Some(Err(BlockingError::AlreadyTaken));
        };
        // The timer is made inside the future: it needs the runtime's context.
        let bounded = async { tokio::time::timeout(timeout, call).await };
        match self.driver.block_on(bounded) {
            Err(inside) => Some(Err(inside)),
            Ok(Err(_elapsed)) => None,
            Ok(Ok(result)) => {
                self.call = None;
                Some(result.map_err(BlockingError::from))
            }
        }
    }
}
