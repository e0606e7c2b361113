//! [`CallHandle`]: a routed call running in the background, to be awaited later (the Go
//! original's `Waiter`). Dropping the handle cancels the call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use super::{CallError, Reply};

/// The pending reply of a call started with [`CallRouter::submit`](super::CallRouter::submit).
///
/// Await it for the reply. Dropping it before the reply arrives cancels the call: the request
/// is abandoned and the node is told to stop working on it.
#[must_use = "dropping a CallHandle cancels the call"]
#[derive(Debug)]
pub struct CallHandle<T> {
    task: JoinHandle<Result<Reply<T>, CallError>>,
}

impl<T> CallHandle<T> {
    pub(crate) fn new(task: JoinHandle<Result<Reply<T>, CallError>>) -> Self {
        Self { task }
    }

    /// Whether the reply has arrived (awaiting the handle will not wait).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl<T> Future for CallHandle<T> {
    type Output = Result<Reply<T>, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.task).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(err)) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // `Drop` aborts the task, and then nobody polls the handle any more; otherwise the
            // runtime that ran it shut down.
            Poll::Ready(Err(_)) => Poll::Ready(Err(CallError::Cancelled)),
        }
    }
}

impl<T> Drop for CallHandle<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
