//! Blocking calls for synchronous code: the Go original's `Call` blocked the calling goroutine,
//! and programs that are not async (command-line tools, thread-pool or rayon jobs, scripts,
//! synchronous applications) want the same without creating a tokio runtime themselves.
//!
//! A [`BlockingRouter<C>`] is a thin layer over the async [`CallRouter<C>`], in the style of
//! `reqwest::blocking`: no routing logic of its own, the same [`Reply`], [`CallError`],
//! [`CallOptions`] and [`ScatterOptions`]. It owns a small multi-threaded tokio runtime whose
//! threads are named [`THREAD_NAME`]; they drive the connections, the timers and the remote
//! caller's watch of the master. Each blocking call runs its future on the calling thread
//! (`Handle::block_on`), so many threads can call at once and none waits for another.
//!
//! ```text
//!   thread 1 ── call() ───┐
//!   thread 2 ── call() ───┼──▶ block_on(router.call(..)): the call's future runs here,
//!   thread N ── submit() ─┘    on the calling thread, and wakes it when the reply is in
//!      wait() ◀── BlockingCallHandle                  │
//!                                                     ▼
//!   ┌─ runtime: 2 threads named "dist-blocking" ─────────────────────┐
//!   │ the tarpc connections, the timers (deadlines), spawned calls,  │
//!   │ and the remote caller's watch of the master's node list        │
//!   └────────────────────────────────────────────────────────────────┘
//! ```
//!
//! - **Lifetime**: the runtime stops when the last clone of the router and the last
//!   [`BlockingCallHandle`] are dropped; its threads have exited when that drop returns (it
//!   waits up to [`SHUTDOWN_WAIT`]). Dropped inside an async runtime, where waiting is not
//!   allowed, it is stopped in the background instead.
//! - **Inside an async runtime** every blocking method returns [`BlockingError::InsideRuntime`]
//!   at once instead of blocking a worker thread (which could deadlock that runtime). Async code
//!   uses the async router.
//! - **Wrapping**: [`BlockingRouter::from_async`] turns a router that already runs on a
//!   multi-threaded runtime (e.g. an in-process master's `distribution_master::Master::router`) into a
//!   blocking one, without a second runtime.

mod error;
mod handle;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use distribution_shared::ServiceClient;
use tarpc::client::RpcError;
use tarpc::context::Context;
use tokio::runtime::{Handle, Runtime};

use crate::remote::{self, RemoteConfig};
use crate::router::{CallError, CallOptions, CallRouter, NodeStats, Reply, RouterConfig};
use crate::router::{ScatterError, ScatterOptions};
pub use error::BlockingError;
pub use handle::BlockingCallHandle;

/// The name of the runtime's threads (`/proc/<pid>/task/*/comm`, `top -H`): short enough for
/// Linux's 15-byte thread names, so that it shows whole.
pub const THREAD_NAME: &str = "dist-blocking";

/// The runtime's worker threads. They only move bytes and fire timers (the calls' futures run
/// on the calling threads), so two are plenty even for many calling threads.
pub const WORKER_THREADS: usize = 2;

/// The most threads the runtime starts for blocking work (name resolution).
const MAX_BLOCKING_THREADS: usize = 2;

/// How long dropping the last handle waits for the runtime's threads to exit.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// A router for synchronous code: each call blocks the calling thread until the reply or the
/// deadline. `Send + Sync`, cheap to clone; clones share the runtime and the connections.
///
/// ```no_run
/// # #[tarpc::service] trait Arith { async fn sum(values: Vec<i64>) -> i64; }
/// # distribution_shared::service_client!(ArithClient);
/// # fn main() -> anyhow::Result<()> {
/// use distribution_client::RouterConfig;
/// use distribution_client::blocking::BlockingRouter;
///
/// // No runtime to create: the router owns one.
/// let router = BlockingRouter::<ArithClient>::connect("10.0.0.5:3000", RouterConfig::default())?;
/// let reply = router.call(|client, ctx| async move { client.sum(ctx, vec![2, 4, 6]).await })?;
/// println!("{} from {}", reply.value, reply.node);
/// # Ok(()) }
/// ```
pub struct BlockingRouter<C: ServiceClient> {
    router: CallRouter<C>,
    driver: Arc<Driver>,
}

impl<C: ServiceClient> Clone for BlockingRouter<C> {
    fn clone(&self) -> Self {
        Self {
            router: self.router.clone(),
            driver: self.driver.clone(),
        }
    }
}

impl<C: ServiceClient> std::fmt::Debug for BlockingRouter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingRouter")
            .field("owns_runtime", &self.driver.owned.is_some())
            .finish_non_exhaustive()
    }
}

/// The runtime the blocking calls run on; shared by the router's clones and the call handles,
/// and stopped when the last of them is dropped.
pub(crate) struct Driver {
    handle: Handle,
    /// `None` when the runtime is the caller's ([`BlockingRouter::from_async`]).
    owned: Option<Runtime>,
}

impl Driver {
    /// Runs `future` to completion on the calling thread, unless that thread is inside a
    /// runtime, where blocking is not allowed.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> Result<F::Output, BlockingError> {
        if Handle::try_current().is_ok() {
            return Err(BlockingError::InsideRuntime);
        }
        Ok(self.handle.block_on(future))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let Some(runtime) = self.owned.take() else {
            return;
        };
        if Handle::try_current().is_ok() {
            // Waiting for threads is not allowed inside a runtime: let them stop on their own.
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(SHUTDOWN_WAIT);
        }
    }
}

impl<C: ServiceClient> BlockingRouter<C> {
    /// Follows the master at `master` (see [`remote::connect`]) and routes calls to its nodes;
    /// returns once the master's first node list has arrived.
    pub fn connect(master: &str, config: RouterConfig) -> Result<Self, BlockingError> {
        Self::connect_with(master, RemoteConfig::default().with_router(config))
    }

    /// [`BlockingRouter::connect`] with every setting (see [`remote::connect_with`]).
    pub fn connect_with(master: &str, config: RemoteConfig) -> Result<Self, BlockingError> {
        if Handle::try_current().is_ok() {
            return Err(BlockingError::InsideRuntime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .map_err(|err| BlockingError::Runtime(err.to_string()))?;
        let driver = Arc::new(Driver {
            handle: runtime.handle().clone(),
            owned: Some(runtime),
        });
        // On failure the driver is dropped here, outside any runtime: its threads stop too.
        let router = driver.block_on(remote::connect_with(master, config))??;
        Ok(Self { router, driver })
    }

    /// A blocking view of `router`, which runs on the runtime of `runtime` (no second runtime).
    /// That runtime must be multi-threaded: a current-thread runtime drives its connections
    /// and timers only while its own thread is inside `Runtime::block_on`.
    pub fn from_async(router: CallRouter<C>, runtime: Handle) -> Self {
        Self {
            router,
            driver: Arc::new(Driver {
                handle: runtime,
                owned: None,
            }),
        }
    }

    /// The async router underneath, for async code sharing this router's connections.
    pub fn as_async(&self) -> &CallRouter<C> {
        &self.router
    }

    /// The router's settings.
    pub fn config(&self) -> &RouterConfig {
        self.router.config()
    }

    /// How many nodes the router knows.
    pub fn len(&self) -> usize {
        self.router.len()
    }

    /// Whether the router knows no node.
    pub fn is_empty(&self) -> bool {
        self.router.is_empty()
    }

    /// What this router has sent to each node it knows.
    pub fn stats(&self) -> Vec<NodeStats> {
        self.router.stats()
    }

    /// Blocks until the router knows at least `n` nodes, for at most `timeout`; returns whether
    /// it does: once it returns `true`, calls find the nodes.
    pub fn wait_for_nodes(&self, n: usize, timeout: Duration) -> Result<bool, BlockingError> {
        let end = tokio::time::Instant::now() + timeout;
        self.driver.block_on(async {
            // `CallRouter::wait_for_nodes` answers from the membership feed, which the router's
            // follower task applies a moment later: wait for the router's own view too.
            self.router.wait_for_nodes(n, timeout).await;
            while self.router.len() < n && tokio::time::Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.router.len() >= n
        })
    }

    /// Calls the least-used node and blocks until the reply or the router's default deadline
    /// (Go: `Call`). `f` is the same closure as for [`CallRouter::call`]; it may run more than once
    /// (on different nodes) when connections fail.
    pub fn call<T, F, Fut>(&self, f: F) -> Result<Reply<T>, BlockingError>
    where
        F: Fn(C::OnNode, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        self.call_with(CallOptions::default(), f)
    }

    /// [`BlockingRouter::call`] with per-call options (deadline, idempotent, attempts).
    pub fn call_with<T, F, Fut>(
        &self,
        options: CallOptions,
        f: F,
    ) -> Result<Reply<T>, BlockingError>
    where
        F: Fn(C::OnNode, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let reply: Result<Reply<T>, CallError> =
            self.driver.block_on(self.router.call_with(options, f))?;
        Ok(reply?)
    }

    /// Starts a call in the background and returns at once (Go: `Go`); the handle's
    /// [`wait`](BlockingCallHandle::wait) blocks for the reply (Go: `Waiter`). Dropping the
    /// handle cancels the call. Starting a call never blocks, so this works inside a runtime
    /// too (only waiting does not).
    pub fn submit<T, F, Fut>(&self, f: F) -> BlockingCallHandle<T>
    where
        T: Send + 'static,
        F: Fn(C::OnNode, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RpcError>> + Send,
    {
        self.submit_with(CallOptions::default(), f)
    }

    /// [`BlockingRouter::submit`] with per-call options.
    pub fn submit_with<T, F, Fut>(&self, options: CallOptions, f: F) -> BlockingCallHandle<T>
    where
        T: Send + 'static,
        F: Fn(C::OnNode, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RpcError>> + Send,
    {
        // The async router spawns on the current runtime: make it this router's.
        let _runtime = self.driver.handle.enter();
        BlockingCallHandle::new(self.router.submit_with(options, f), self.driver.clone())
    }

    /// Runs `f` for every item over the nodes, at most `options.concurrency` at once, and blocks
    /// until every reply is in; returns them in the items' order (see [`CallRouter::scatter`]).
    pub fn scatter<I, T, F, Fut>(
        &self,
        items: Vec<I>,
        options: ScatterOptions,
        f: F,
    ) -> Result<Vec<Reply<T>>, BlockingError>
    where
        I: Clone,
        F: Fn(C::OnNode, Context, I) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let replies: Result<Vec<Reply<T>>, ScatterError> = self
            .driver
            .block_on(self.router.scatter(items, options, f))?;
        Ok(replies?)
    }
}
