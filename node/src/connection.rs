//! One caller's connection once it is admitted: served on the lifecycle thread, where it was
//! accepted and passed its handshakes (see [`crate::lifecycle`]), one task per call within the
//! limits of [`ConnectionLimits`]; each call's handler runs on the node's call threads
//! ([`crate::calls`]), so no handler can hold up the reading and writing of a connection.

use std::future::Future;
use std::time::Duration;

use distribution_shared::listener::IdleStream;
use distribution_shared::stream::Stream;
use distribution_shared::transport;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tarpc::server::{BaseChannel, Channel};
use tarpc::{RequestName, ServerError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::counted::Counted;

/// What one connection may cost the node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_frame_len: usize,
    /// Requests read and not yet answered (see [`NodeConfig::max_calls_per_connection`]).
    pub(crate) max_calls: usize,
    /// How long the connection may stay silent with no call running
    /// ([`NodeConfig::idle_timeout`]).
    pub(crate) idle_timeout: Duration,
}

/// Serves one caller's connection until it closes or the node is killed. Each request runs in
/// its own task, so a slow call does not hold up the others on the connection.
///
/// Memory per connection is bounded by `limits.max_calls`: tarpc counts a request from the
/// moment it is read until its answer is handed to the transport (or it is cancelled or
/// expires). Below the limit requests are read and run; at the limit tarpc's `MaxRequests`
/// answers the next request at once with a refusal, and it can only do so when the transport
/// takes the refusal, so a caller that pipelines requests and never reads its answers stops
/// being read (TCP back-pressure) instead of filling the node's memory with queued answers.
pub(crate) async fn serve_connection<Req, Resp, F, Fut>(
    stream: Stream,
    limits: ConnectionLimits,
    service: Counted<Req, Resp, F>,
    kill: CancellationToken,
) where
    Req: RequestName + for<'de> Deserialize<'de> + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(tarpc::context::Context, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ServerError>> + Send + 'static,
{
    let stream = IdleStream::new(stream);
    let activity = stream.activity().clone();
    let transport = transport::server_framed::<_, Req, Resp>(stream, limits.max_frame_len);
    let requests = BaseChannel::with_defaults(transport)
        .max_concurrent_requests(limits.max_calls)
        .execute(service);
    let calls = TaskTracker::new();
    let serve = requests.for_each(|call| {
        let kill = kill.clone();
        // A call running is activity, however long it stays silent.
        let busy = activity.busy();
        calls.spawn(async move {
            kill.run_until_cancelled(call).await;
            drop(busy);
        });
        async {}
    });
    tokio::select! {
        _ = kill.run_until_cancelled(serve) => {}
        _ = activity.idle(limits.idle_timeout) => debug!("idle connection closed"),
    }
    calls.close();
    calls.wait().await;
}
