//! The node's own thread: a small tokio runtime, apart from the caller's, that runs the node's
//! lifecycle (the lease loop, the accept loop with its TLS and cluster handshakes, the reading
//! and writing of every connection, and the shutdown sequence), so that the handlers' threads
//! being busy can stop neither the heartbeats nor the calls beside them.
//!
//! Why a thread of its own: handlers are the user's code. One that runs a CPU loop inside its
//! `async fn` (instead of [`crate::work::run_blocking`]) holds a worker of the runtime it runs on
//! until it returns; when every worker is held, nothing else on that runtime runs, heartbeats
//! included, and after the TTL the master evicts a node that is alive and working. The caller's
//! runtime cannot be protected from its own code, so the lifecycle leaves it: one thread named
//! [`THREAD_NAME`], with a current-thread runtime that nothing but the node's own short tasks
//! ever runs on (the handlers run on the call threads, see [`crate::calls`]). One thread is
//! enough: a heartbeat is one small request per interval; accepting and the handshakes are
//! short, bounded in number by `NodeConfig::max_connections` and in time by the handshake
//! timeout; and a call costs this thread only the decoding of its request, the encoding of its
//! answer and two wake-ups (a few microseconds), whatever its handler does.
//!
//! The thread's life is the node's: it ends when the lifecycle future ends (after
//! `NodeHandle::shutdown`, `NodeHandle::kill`, or the caller's runtime shutting down, see
//! [`watch_caller`]), shuts the call threads and its runtime down (each bounded by
//! [`SHUTDOWN_WAIT`]), says so through
//! [`Ended`], and exits: no thread outlives its node.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The name of the node's lifecycle thread (`/proc/<pid>/task/*/comm` shows its first 15
/// bytes: `dist-node-lifec`).
pub const THREAD_NAME: &str = "dist-node-lifecycle";

/// How long the lifecycle runtime may take to stop once the lifecycle has ended: its tasks are
/// all finished or cancelled by then, so this only bounds a DNS lookup left on its blocking pool.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// A current-thread runtime for the lifecycle, built on the caller's thread so that resources
/// can be registered with it (see [`Runtime::enter`]) before its thread starts.
pub(crate) fn runtime() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(THREAD_NAME)
        .build()
}

/// The end of a lifecycle thread, awaited by `NodeHandle::stopped`.
#[derive(Debug)]
pub(crate) struct Ended {
    done: oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Ended {
    /// Waits until the lifecycle has ended and its thread has exited.
    pub(crate) async fn wait(self) {
        if self.done.await.is_err() {
            warn!("the node's lifecycle thread failed");
        }
        // The thread's last act was to send `done`: joining it takes microseconds.
        if self.thread.join().is_err() {
            warn!("the node's lifecycle thread panicked");
        }
    }
}

/// Runs `lifecycle` on `runtime` on a new thread named [`THREAD_NAME`], with the caller's
/// `tracing` dispatcher (so that a test's or an application's subscriber sees the node's logs).
/// When it ends, `calls` (the node's call threads, see [`crate::calls`]) is shut down, then
/// `runtime`, each bounded by [`SHUTDOWN_WAIT`]: a handler that never yields keeps its thread
/// beyond that, detached.
pub(crate) fn spawn(
    runtime: Runtime,
    calls: Runtime,
    lifecycle: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Ended> {
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let (done_tx, done) = oneshot::channel();
    let mut owned = Owned(Some(runtime));
    let mut calls = Owned(Some(calls));
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            let _logs = tracing::dispatcher::set_default(&dispatch);
            if let Some(runtime) = owned.0.take() {
                runtime.block_on(lifecycle);
                if let Some(calls) = calls.0.take() {
                    calls.shutdown_timeout(SHUTDOWN_WAIT);
                }
                runtime.shutdown_timeout(SHUTDOWN_WAIT);
            }
            let _ = done_tx.send(());
        })?;
    Ok(Ended { done, thread })
}

/// A runtime on its way to its thread. Should the thread not start, it is dropped on the
/// caller's thread, inside the caller's runtime, where a runtime's ordinary drop (which may
/// block) panics: this one shuts it down in the background instead.
struct Owned(Option<Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Ties the node to the caller's runtime, as when the node was a task of it: a task there that
/// only waits, and cancels `kill` when it is dropped, which happens when that runtime shuts down
/// (a `#[tokio::test]` ending, an application's runtime dropped) or when the node aborts it at
/// its end. Without it a node whose handle was dropped would outlive the runtime its handlers
/// need.
pub(crate) fn watch_caller(handlers: &Handle, kill: CancellationToken) -> JoinHandle<()> {
    handlers.spawn(async move {
        let _crash = kill.drop_guard();
        std::future::pending::<()>().await
    })
}
