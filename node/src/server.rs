//! The node's tarpc server and its lifecycle: accept connections, serve calls (counted by
//! [`Load`]), keep the lease (the `heartbeat` module), and on shutdown leave the master and drain.
//!
//! Shutdown order, so that no call is lost:
//! 1. stop accepting connections and deregister (routers stop sending here within milliseconds);
//! 2. keep serving the open connections until no call has run for a short linger, bounded by
//!    the drain timeout, so that calls already on the wire still get their answer;
//! 3. close the connections. A call that reaches the node after that fails on the caller's side
//!    with a transport error, and the router retries it on another node.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use distribution_shared::backoff::Backoff;
use distribution_shared::listener::{IdleStream, PeerLimits};
use distribution_shared::stream::{self, Stream};
use distribution_shared::tokio_rustls::TlsAcceptor;
use distribution_shared::transport;
use distribution_shared::wire::RegisterRequest;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tarpc::server::{BaseChannel, Channel};
use tarpc::{RequestName, ServerError};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::{self, Gate};
use crate::config::NodeConfig;
use crate::heartbeat;
use crate::load::{Counted, Load};
use crate::master_client::{MasterClient, MasterError, RegistrySettings};

/// How long a caller may take to complete the TLS handshake (and, separately, the cluster
/// handshake when the node has a secret: see [`crate::auth`]).
const HANDSHAKE_TIMEOUT: Duration = distribution_shared::handshake::HANDSHAKE_TIMEOUT;

/// How long the node must be idle before it closes its connections during a graceful shutdown.
const LINGER: Duration = Duration::from_millis(100);

/// A running node. Dropping the handle leaves the node running; call [`NodeHandle::shutdown`]
/// for a graceful stop or [`NodeHandle::kill`] to simulate a crash.
#[derive(Debug)]
pub struct NodeHandle {
    id: String,
    local_addr: SocketAddr,
    load: Arc<Load>,
    registered: watch::Receiver<bool>,
    graceful: CancellationToken,
    kill: CancellationToken,
    task: JoinHandle<()>,
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

    /// The node's load counters.
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    /// Waits until the master holds the node's lease, for at most `timeout`.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let mut rx = self.registered.clone();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
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

    /// Waits until the node has stopped (after a shutdown started elsewhere).
    pub async fn stopped(self) {
        if let Err(err) = self.task.await {
            warn!(error = %err, "node task failed");
        }
    }
}

/// Starts a node serving `handler` on `listener` and registering with the master of `config`.
///
/// `handler` answers one request; [`handler!`](crate::handler) builds it from a tarpc service:
/// `distribution_node::handler!(MyServer.serve())`.
pub fn start<Req, Resp, F, Fut>(
    listener: TcpListener,
    config: NodeConfig,
    handler: F,
) -> Result<NodeHandle, MasterError>
where
    Req: RequestName + for<'de> Deserialize<'de> + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(tarpc::context::Context, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ServerError>> + Send + 'static,
{
    let local_addr = listener.local_addr().map_err(|e| MasterError::Refused {
        status: reqwest::StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("listener has no address: {e}"),
    })?;
    let id = config
        .id
        .clone()
        .unwrap_or_else(|| format!("node-{}", uuid::Uuid::new_v4().simple()));
    let master = MasterClient::new(
        &config.master,
        RegistrySettings::new(config.master_timeout)
            .with_secret(config.secret.as_deref())
            .with_tls(config.tls.as_ref().map(|tls| tls.client.clone())),
    )?;
    auth::announce(&config);
    let load = Arc::new(Load::new(config.capacity));
    let (registered_tx, registered) = watch::channel(false);
    let graceful = CancellationToken::new();
    let kill = CancellationToken::new();
    let request = RegisterRequest {
        id: id.clone(),
        port: local_addr.port(),
        addr: config.advertise.clone(),
        capacity: Some(config.capacity),
    };
    let lifecycle = Lifecycle {
        id: id.clone(),
        config,
        master,
        load: load.clone(),
        graceful: graceful.clone(),
        kill: kill.clone(),
    };
    let task = tokio::spawn(lifecycle.run(listener, request, registered_tx, handler));
    info!(node = %id, addr = %local_addr, "node listening");
    Ok(NodeHandle {
        id,
        local_addr,
        load,
        registered,
        graceful,
        kill,
        task,
    })
}

struct Lifecycle {
    id: String,
    config: NodeConfig,
    master: MasterClient,
    load: Arc<Load>,
    graceful: CancellationToken,
    kill: CancellationToken,
}

impl Lifecycle {
    async fn run<Req, Resp, F, Fut>(
        self,
        listener: TcpListener,
        request: RegisterRequest,
        registered: watch::Sender<bool>,
        handler: F,
    ) where
        Req: RequestName + for<'de> Deserialize<'de> + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(tarpc::context::Context, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ServerError>> + Send + 'static,
    {
        let beats = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat::run(
            self.master.clone(),
            request,
            self.load.clone(),
            self.config.heartbeat_interval,
            registered,
            beats.clone(),
        ));
        let connections = TaskTracker::new();
        let threads = Arc::new(Semaphore::new(self.config.cpu_threads.max(1)));
        let service = Counted::new(handler, self.load.clone(), threads);
        tokio::select! {
            _ = self.graceful.cancelled() => {}
            _ = self.kill.cancelled() => {}
            _ = self.accept(&listener, &connections, service) => {}
        }
        drop(listener);
        beats.cancel();
        let _ = heartbeat.await;
        if !self.kill.is_cancelled() {
            self.leave().await;
        }
        connections.close();
        self.kill.cancel();
        connections.wait().await;
        info!(node = %self.id, served = self.load.served(), "node stopped");
    }

    /// Accepts connections until the listener fails for good (it never does on its own).
    async fn accept<Req, Resp, F, Fut>(
        &self,
        listener: &TcpListener,
        connections: &TaskTracker,
        service: Counted<Req, Resp, F>,
    ) where
        Req: RequestName + for<'de> Deserialize<'de> + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(tarpc::context::Context, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ServerError>> + Send + 'static,
    {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        let slots = Arc::new(Semaphore::new(self.config.max_connections.max(1)));
        let peers = PeerLimits::new(self.config.max_connections_per_ip);
        let acceptor = self
            .config
            .tls
            .as_ref()
            .map(|tls| TlsAcceptor::from(tls.server.clone()));
        let gate = Gate::new(&self.config, self.load.clone());
        let limits = ConnectionLimits {
            max_frame_len: self.config.max_frame_len,
            max_calls: self.config.calls_per_connection(),
            idle_timeout: self.config.idle_timeout,
        };
        loop {
            // At the connection limit, stop accepting until a connection closes: excess callers
            // wait in the listen backlog instead of costing memory here.
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(backoff.next_pause()).await;
                    continue;
                }
            };
            backoff.reset();
            // One peer IP holds at most its share of the slots; beyond it, closed at once.
            let Some(peer_slot) = peers.try_acquire(peer.ip()) else {
                continue;
            };
            debug!(%peer, "caller connected");
            let (acceptor, service, kill, gate) = (
                acceptor.clone(),
                service.clone(),
                self.kill.clone(),
                gate.clone(),
            );
            connections.spawn(async move {
                let _slots = (slot, peer_slot, crate::observe::ConnectionOpen::new());
                match stream::accept(tcp, acceptor.as_ref(), HANDSHAKE_TIMEOUT).await {
                    Ok(mut stream) => {
                        // With a secret, no tarpc frame is read before the caller proves it; a
                        // refused caller is dropped here (and a stopping node does not wait for a
                        // handshake in progress).
                        if let Some(gate) = &gate {
                            let admit = gate.admit(&mut stream, peer);
                            if kill.run_until_cancelled(admit).await != Some(true) {
                                return;
                            }
                        }
                        serve_connection(stream, limits, service, kill).await
                    }
                    Err(err) => debug!(%peer, error = %err, "TLS handshake failed"),
                }
            });
        }
    }

    /// Graceful exit: deregister, then wait (bounded) until no call has run for [`LINGER`].
    async fn leave(&self) {
        match self.master.deregister(&self.id).await {
            Ok(()) => info!(node = %self.id, "left the master"),
            Err(err) => {
                warn!(node = %self.id, error = %err, "could not deregister; the lease will expire")
            }
        }
        let drain = async {
            loop {
                self.load.idle().await;
                tokio::time::sleep(LINGER).await;
                if self.load.in_flight() == 0 {
                    return;
                }
            }
        };
        if tokio::time::timeout(self.config.drain_timeout, drain)
            .await
            .is_err()
        {
            warn!(node = %self.id, in_flight = self.load.in_flight(), "drain timeout; closing with calls in flight");
        }
    }
}

/// What one connection may cost the node.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    max_frame_len: usize,
    /// Requests read and not yet answered (see [`NodeConfig::max_calls_per_connection`]).
    max_calls: usize,
    /// How long the connection may stay silent with no call running
    /// ([`NodeConfig::idle_timeout`]).
    idle_timeout: Duration,
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
async fn serve_connection<Req, Resp, F, Fut>(
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
