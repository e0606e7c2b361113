//! `Counted`: every handler of a node, wrapped. On the connection's side (the lifecycle thread,
//! see [`crate::calls`]) it refuses the call at once when every call thread is held
//! ([`ALL_THREADS_HELD`]) or beyond the capacity ([`AT_CAPACITY`]): the router tries another
//! node, since no work was done. An admitted call runs on the node's call threads, where its
//! handler gets its CPU-work scope ([`crate::work::run_blocking`]) and has each poll timed
//! ([`Watched`]); a panic is answered as an error ([`HANDLER_PANICKED`]) instead of leaving the
//! caller waiting for its deadline, and the handler's time is recorded.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tarpc::server::Serve;
use tarpc::{RequestName, ServerError};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::task::AbortOnDropHandle;

use crate::calls::{ALL_THREADS_HELD, Held, Method, Watched};
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
    /// The node's call runtime, where the handlers run.
    calls: Handle,
    held: Arc<Held>,
    types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp, F: Clone> Clone for Counted<Req, Resp, F> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            load: self.load.clone(),
            threads: self.threads.clone(),
            calls: self.calls.clone(),
            held: self.held.clone(),
            types: PhantomData,
        }
    }
}

impl<Req, Resp, F> Counted<Req, Resp, F> {
    /// Wraps `handler`: it runs on `calls`, watched by `held`, and its CPU work
    /// ([`crate::work::run_blocking`]) on `threads`.
    pub(crate) fn new(
        handler: F,
        load: Arc<Load>,
        threads: Arc<Semaphore>,
        calls: Handle,
        held: Arc<Held>,
    ) -> Self {
        Self {
            handler,
            load,
            threads,
            calls,
            held,
            types: PhantomData,
        }
    }
}

impl<Req, Resp, F, Fut> Serve for Counted<Req, Resp, F>
where
    Req: RequestName + Send + 'static,
    Resp: Send + 'static,
    F: Fn(tarpc::context::Context, Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, ServerError>> + Send + 'static,
{
    type Req = Req;
    type Resp = Resp;

    async fn serve(self, ctx: tarpc::context::Context, req: Req) -> Result<Resp, ServerError> {
        if self.held.refuses() {
            self.load.count_refused();
            return Err(ServerError::new(
                std::io::ErrorKind::WouldBlock,
                ALL_THREADS_HELD.into(),
            ));
        }
        let Some(guard) = self.load.begin() else {
            return Err(ServerError::new(
                std::io::ErrorKind::WouldBlock,
                AT_CAPACITY.into(),
            ));
        };
        let method = Method::new(req.name());
        let trace = *ctx.trace_id();
        let Counted {
            handler,
            load,
            threads,
            calls,
            held,
            ..
        } = self;
        let scope = Scope { load, threads };
        // The handler runs on a call thread. It keeps the call counted until it returns (a
        // handler that never yields cannot be stopped before): the guard lives in its task.
        // When this future is dropped (the caller cancelled, the deadline passed, the node is
        // killed), the task is aborted at its next `.await`.
        let task = calls.spawn(async move {
            let _counted = guard;
            let started = std::time::Instant::now();
            let handler = Watched::new(
                SCOPE.scope(scope, async move { handler(ctx, req).await }),
                held,
                method,
            );
            // A panicking handler must not leave the caller waiting for its deadline: it
            // answers an error like any other failure, and the node goes on serving.
            let outcome = AssertUnwindSafe(handler).catch_unwind().await;
            (outcome, started.elapsed())
        });
        match AbortOnDropHandle::new(task).await {
            Ok((Ok(result), elapsed)) => {
                metrics::histogram!(observe::HANDLER_SECONDS).record(elapsed.as_secs_f64());
                tracing::debug!(target: LOG_TARGET, trace_id = %trace, ok = result.is_ok(),
                    latency_us = elapsed.as_micros() as u64, "call handled");
                result
            }
            Ok((Err(_), _)) => {
                metrics::counter!(observe::PANICS).increment(1);
                tracing::error!(target: LOG_TARGET, trace_id = %trace, "a call handler panicked");
                Err(ServerError::new(
                    std::io::ErrorKind::Other,
                    HANDLER_PANICKED.into(),
                ))
            }
            // Only when the call runtime shuts down under it: the node is stopping.
            Err(_) => Err(ServerError::new(
                std::io::ErrorKind::Other,
                "the node stopped during the call".into(),
            )),
        }
    }
}
