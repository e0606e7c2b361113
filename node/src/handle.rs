//! [`NodeHandle`]: what [`start`](crate::start) returns, to look at a running node (its id,
//! address, load and leases), put it in maintenance, and stop it gracefully or as a crash would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::Ended;
use crate::load::Load;

/// A running node. Dropping the handle leaves the node running; call [`NodeHandle::shutdown`]
/// for a graceful stop or [`NodeHandle::kill`] to simulate a crash.
#[derive(Debug)]
pub struct NodeHandle {
    pub(crate) id: String,
    pub(crate) local_addr: SocketAddr,
    pub(crate) load: Arc<Load>,
    /// How many masters hold the lease now (the heartbeat loops write it).
    pub(crate) leases: watch::Receiver<usize>,
    pub(crate) graceful: CancellationToken,
    pub(crate) kill: CancellationToken,
    /// Resolves when the lifecycle thread has ended.
    pub(crate) ended: Ended,
}

impl NodeHandle {
    /// The node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The address the node's tarpc server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Puts the node in maintenance (`Some(reason)`): it stays registered and heartbeating,
    /// finishes the calls it runs, and routers (in-process and remote) send it no new call once
    /// the master has heard (at once: the heartbeat goes out on the change). `None` takes it
    /// out. Every heartbeat carries it, so a restarted master knows it again.
    pub fn set_maintenance(&self, reason: Option<String>) {
        self.load.set_maintenance(reason);
    }

    /// The node's load counters.
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    /// Waits until at least one master holds the node's lease, for at most `timeout`.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        self.wait_leases(1, timeout).await
    }

    /// Waits until at least `n` of the node's masters hold its lease, for at most `timeout`.
    pub async fn wait_leases(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.leases.clone();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|held| *held >= n)).await,
            Ok(Ok(_))
        )
    }

    /// How many of the node's masters ([`NodeConfig::masters`](crate::NodeConfig::masters)) hold its lease now.
    pub fn leases(&self) -> usize {
        *self.leases.borrow()
    }

    /// A token that starts a graceful shutdown when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.graceful.clone()
    }

    /// Shuts down gracefully (leave, drain, close) and waits until the node has stopped.
    pub async fn shutdown(self) {
        self.graceful.cancel();
        self.stopped().await;
    }

    /// Stops at once, as a crash would: no deregistration, connections dropped mid-call.
    pub async fn kill(self) {
        self.kill.cancel();
        self.stopped().await;
    }

    /// Waits until the node has stopped (after a shutdown started elsewhere), its lifecycle
    /// thread included.
    pub async fn stopped(self) {
        self.ended.wait().await;
    }
}
