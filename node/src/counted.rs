//! `Counted`: every handler of a node, wrapped. It admits the call into the node's [`Load`] or
//! refuses it at once beyond the capacity ([`AT_CAPACITY`]: the router tries another node, since
//! no work was done), gives the handler its CPU-work scope ([`crate::work::run_blocking`]),
//! answers a panic as an error ([`HANDLER_PANICKED`]) instead of leaving the caller waiting for
//! its deadline, and records the handler's time.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tarpc::server::Serve;
use tarpc::{RequestName, ServerError};
use tokio::sync::Semaphore;

use crate::load::{AT_CAPACITY, HANDLER_PANICKED, Load};
use crate::observe;
use crate::work::{SCOPE, Scope};

/// The target of the per-call log lines (`call handled`, a panic): the filter the README gives
/// operators (`RUST_LOG=…,distribution_node::load=debug`), kept when the wrapper left `load.rs`.
const LOG_TARGET: &str = "distribution_node::load";

/// A service handler wrapped to keep the node's [`Load`].
pub(crate) struct Counted<Req, Resp, F> {
    handler: F,
    load: Arc<Load>,
    threads: Arc<Semaphore>,
    types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp, F: Clone> Clone for Counted<Req, Resp, F> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            load: self.load.clone(),
            threads: self.threads.clone(),
            types: PhantomData,
        }
    }
}

impl<Req, Resp, F> Counted<Req, Resp, F> {
    /// Wraps `handler`; its CPU work ([`crate::work::run_blocking`]) runs on `threads`.
    pub(crate) fn new(handler: F, load: Arc<Load>, threads: Arc<Semaphore>) -> Self {
        Self {
            handler,
            load,
            threads,
            types: PhantomData,
        }
    }
}

impl<Req, Resp, F, Fut> Serve for Counted<Req, Resp, F>
where
    Req: RequestName,
    F: Fn(tarpc::context::Context, Req) -> Fut,
    Fut: Future<Output = Result<Resp, ServerError>>,
{
    type Req = Req;
    type Resp = Resp;

    async fn serve(self, ctx: tarpc::context::Context, req: Req) -> Result<Resp, ServerError> {
        let Some(_guard) = self.load.begin() else {
            return Err(ServerError::new(
                std::io::ErrorKind::WouldBlock,
                AT_CAPACITY.into(),
            ));
        };
        // A panicking handler must not leave the caller waiting for its deadline: it answers
        // an error like any other failure, and the node goes on serving.
        let handler = &self.handler;
        let started = std::time::Instant::now();
        let trace = *ctx.trace_id();
        let scope = Scope {
            load: self.load.clone(),
            threads: self.threads.clone(),
        };
        match AssertUnwindSafe(SCOPE.scope(scope, async move { handler(ctx, req).await }))
            .catch_unwind()
            .await
        {
            Ok(result) => {
                let elapsed = started.elapsed();
                metrics::histogram!(observe::HANDLER_SECONDS).record(elapsed.as_secs_f64());
                tracing::debug!(target: LOG_TARGET, trace_id = %trace, ok = result.is_ok(),
                    latency_us = elapsed.as_micros() as u64, "call handled");
                result
            }
            Err(_) => {
                metrics::counter!(observe::PANICS).increment(1);
                tracing::error!(target: LOG_TARGET, trace_id = %trace, "a call handler panicked");
                Err(ServerError::new(
                    std::io::ErrorKind::Other,
                    HANDLER_PANICKED.into(),
                ))
            }
        }
    }
}
