//! Scatter/gather: many items spread over the nodes with bounded concurrency, results in order.

use std::future::Future;

use distribution_shared::ServiceClient;
use futures::StreamExt;
use tarpc::client::RpcError;
use tarpc::context::Context;

use super::{CallError, CallOptions, CallRouter, Reply};

/// How [`CallRouter::scatter`] runs its items.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ScatterOptions {
    /// How many items run at once. Default: twice the number of nodes known when the scatter
    /// starts (so each node has a call queued behind the one it runs), at least 1.
    pub concurrency: Option<usize>,
    /// Deadline and attempts of each item's call. Every item gets its own deadline.
    pub call: CallOptions,
}

/// A scatter failed: item `index` could not be computed on any node it tried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("item {index} failed: {error}")]
pub struct ScatterError {
    /// The position of the failed item in the input.
    pub index: usize,
    /// Why its last attempt failed.
    #[source]
    pub error: CallError,
}

impl<C: ServiceClient> CallRouter<C> {
    /// Runs `f` for every item, each on the least-used node at the time, with at most
    /// `options.concurrency` items in flight, and returns the replies in the items' order.
    ///
    /// An item whose node fails is retried on another node like any call. If an item still
    /// fails, the scatter stops starting new items and returns the first failure: results are
    /// either complete or absent, never partial.
    pub async fn scatter<I, T, F, Fut>(
        &self,
        items: Vec<I>,
        options: ScatterOptions,
        f: F,
    ) -> Result<Vec<Reply<T>>, ScatterError>
    where
        I: Clone,
        F: Fn(C::OnNode, Context, I) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let concurrency = options.concurrency.unwrap_or_else(|| 2 * self.len()).max(1);
        let count = items.len();
        let f = &f;
        let mut running = futures::stream::iter(items.into_iter().enumerate())
            .map(|(index, item)| async move {
                let reply = self
                    .call_with(options.call, |client, ctx| f(client, ctx, item.clone()))
                    .await;
                (index, reply)
            })
            .buffer_unordered(concurrency);
        let mut slots: Vec<Option<Reply<T>>> = (0..count).map(|_| None).collect();
        while let Some((index, reply)) = running.next().await {
            match reply {
                Ok(reply) => slots[index] = Some(reply),
                Err(error) => return Err(ScatterError { index, error }),
            }
        }
        Ok(slots
            .into_iter()
            .map(|slot| slot.expect("every item reports exactly once"))
            .collect())
    }
}

// `ScatterOptions` is `#[non_exhaustive]`: other crates build it from `Default` (or its constructor)
// with these `with_…` methods, or set its public fields.
distribution_shared::with_setters!(ScatterOptions {
    with_concurrency => concurrency: Option<usize>,
    with_call => call: CallOptions,
});
