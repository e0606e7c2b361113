//! The node's tarpc server and its lifecycle: accept connections, serve calls (counted by
//! [`Load`]), keep a lease with each master (the `heartbeat` module: one loop per master), and on
//! shutdown leave every master and drain.
//!
//! Where each part runs (issue #10: a busy handler must not get its node evicted; issue #26: nor
//! stall the calls beside it):
//! - **the lifecycle and the connections**, on the node's own thread `dist-node-lifecycle` (a
//!   current-thread runtime, see the `lifecycle` module): registration, heartbeats and
//!   deregistration, the accept loop with the TLS and cluster handshakes, reading, decoding
//!   and writing every connection's frames, admitting or refusing each call, and the shutdown
//!   sequence below. [`start`] moves the listener there (a tokio listener belongs to the
//!   runtime that registered it).
//! - **the handlers**, on the node's call threads (`dist-node-call`, see [`crate::calls`]): each
//!   admitted call's handler is a task there.
//! - **the runtime [`start`] was called on** holds only a task that ties the node's life to it
//!   (`lifecycle::watch_caller`): its own work and the node's calls do not compete.
//!
//! So a handler that holds its thread (a CPU loop in an `async fn`) delays neither the
//! heartbeats nor the reading of the next request: another call thread runs the calls beside
//! it, and when every call thread is held new calls are refused at once (the router sends them
//! elsewhere). The parts share only atomics, channels and cancellation tokens ([`Load`], the
//! registered flag), which work across runtimes. The threads end with the node (shutdown,
//! kill, or the caller's runtime shutting down) and [`NodeHandle::stopped`] joins the
//! lifecycle thread.
//!
//! Shutdown order, so that no call is lost:
//! 1. stop accepting connections and deregister from every master (routers stop sending here
//!    within milliseconds);
//! 2. keep serving the open connections until no call has run for a short linger, bounded by
//!    the drain timeout, so that calls already on the wire still get their answer;
//! 3. close the connections. A call that reaches the node after that fails on the caller's side
//!    with a transport error, and the router retries it on another node.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use distribution_shared::listener::{AcceptLimits, Acceptor};
use distribution_shared::wire::RegisterRequest;
use serde::{Deserialize, Serialize};
use tarpc::{RequestName, ServerError};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::{self, Gate};
use crate::calls::{self, Held};
use crate::config::NodeConfig;
use crate::connection::{ConnectionLimits, serve_connection};
use crate::counted::Counted;
use crate::error::StartError;
pub use crate::handle::NodeHandle;
use crate::heartbeat::{self, Leases};
use crate::lifecycle;
use crate::load::Load;
use crate::master_client::{MasterClient, RegistrySettings};

/// How long a caller may take to complete the TLS handshake (and, separately, the cluster
/// handshake when the node has a secret: see [`crate::auth`]).
const HANDSHAKE_TIMEOUT: Duration = distribution_shared::handshake::HANDSHAKE_TIMEOUT;

/// How long the node must be idle before it closes its connections during a graceful shutdown.
const LINGER: Duration = Duration::from_millis(100);

/// Starts a node serving `handler` on `listener` and registering with every master of `config`
/// ([`NodeConfig::masters`]).
/// Must be called within a tokio runtime: the calls run on it, the node's lifecycle on a thread
/// of its own (see the module's documentation).
///
/// `handler` answers one request; [`handler!`](crate::handler) builds it from a tarpc service:
/// `distribution_node::handler!(MyServer.serve())`.
pub fn start<Req, Resp, F, Fut>(
    listener: TcpListener,
    config: NodeConfig,
    handler: F,
) -> Result<NodeHandle, StartError>
where
    Req: RequestName + for<'de> Deserialize<'de> + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(tarpc::context::Context, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ServerError>> + Send + 'static,
{
    let local_addr = listener
        .local_addr()
        .map_err(|e| local_error("listener has no address", e))?;
    let id = config
        .id
        .clone()
        .unwrap_or_else(|| format!("node-{}", uuid::Uuid::new_v4().simple()));
    let settings = RegistrySettings::new(config.master_timeout)
        .with_secret(config.secret.as_ref())
        .with_tls(config.tls.as_ref().map(|tls| tls.client.clone()));
    let masters = masters_of(&config, &settings)?;
    auth::announce(&config);
    let load = Arc::new(Load::new(config.capacity));
    let (leases_tx, leases) = Leases::new();
    let graceful = CancellationToken::new();
    let kill = CancellationToken::new();
    let request = RegisterRequest {
        addr: config.advertise.clone(),
        capacity: Some(config.capacity),
        service: config.service.clone(),
        tags: config.tags.clone(),
        meta: config.meta.clone(),
        ..RegisterRequest::new(id.clone(), local_addr.port())
    };
    let caller = Handle::current();
    let held = Arc::new(Held::new(
        config.call_threads,
        config.blocking_threshold,
        &config.service,
    ));
    let calls =
        calls::runtime(&held).map_err(|e| local_error("cannot build the call threads", e))?;
    let lifecycle = Lifecycle {
        id: id.clone(),
        config,
        masters,
        load: load.clone(),
        graceful: graceful.clone(),
        kill: kill.clone(),
    };
    let runtime = match lifecycle::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            calls.shutdown_background();
            return Err(local_error("cannot build the lifecycle runtime", err));
        }
    };
    // The listener moves to the lifecycle runtime (a tokio listener belongs to the runtime that
    // registered it).
    let listener = match move_listener(listener, &runtime) {
        Ok(listener) => listener,
        Err(err) => {
            runtime.shutdown_background();
            calls.shutdown_background();
            return Err(local_error(
                "cannot move the listener to the lifecycle thread",
                err,
            ));
        }
    };
    let service = Counted::new(
        handler,
        load.clone(),
        Arc::new(Semaphore::new(
            lifecycle
                .config
                .cpu_threads
                .clamp(1, Semaphore::MAX_PERMITS),
        )),
        calls.handle().clone(),
        held.clone(),
    );
    let run = lifecycle.run(listener, request, leases_tx, service, held, caller);
    let ended = lifecycle::spawn(runtime, calls, run)
        .map_err(|e| local_error("cannot start the lifecycle thread", e))?;
    info!(node = %id, addr = %local_addr, "node listening");
    Ok(NodeHandle {
        id,
        local_addr,
        load,
        leases,
        graceful,
        kill,
        ended,
    })
}

/// One registry client per master of `config`, in order; a bad address among them, or none at
/// all, fails the start before any request.
fn masters_of(
    config: &NodeConfig,
    settings: &RegistrySettings,
) -> Result<Vec<MasterClient>, StartError> {
    let masters = match config.masters.as_slice() {
        // An empty list gets the parser's error for an empty address.
        [] => &[String::new()][..],
        masters => masters,
    };
    masters
        .iter()
        .map(|master| MasterClient::new(master, settings.clone()).map_err(StartError::from))
        .collect()
}

/// An error of the node's own making (no request reached the master).
fn local_error(what: &'static str, source: std::io::Error) -> StartError {
    StartError::Local { what, source }
}

/// `listener`, registered with `runtime` instead of the caller's.
fn move_listener(
    listener: TcpListener,
    runtime: &tokio::runtime::Runtime,
) -> std::io::Result<TcpListener> {
    let listener = listener.into_std()?;
    let _inside = runtime.enter();
    TcpListener::from_std(listener)
}

struct Lifecycle {
    id: String,
    config: NodeConfig,
    /// One per master; each gets its own heartbeat loop and lease.
    masters: Vec<MasterClient>,
    load: Arc<Load>,
    graceful: CancellationToken,
    kill: CancellationToken,
}

impl Lifecycle {
    async fn run<Req, Resp, F, Fut>(
        self,
        listener: TcpListener,
        request: RegisterRequest,
        leases: Leases,
        service: Counted<Req, Resp, F>,
        held: Arc<Held>,
        caller: Handle,
    ) where
        Req: RequestName + for<'de> Deserialize<'de> + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(tarpc::context::Context, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ServerError>> + Send + 'static,
    {
        let caller = lifecycle::watch_caller(&caller, self.kill.clone());
        let beats = CancellationToken::new();
        // One loop per master, each with the same registration (built once, in `start`).
        let heartbeats: Vec<_> = self
            .masters
            .iter()
            .map(|master| {
                tokio::spawn(heartbeat::run(
                    master.clone(),
                    request.clone(),
                    self.load.clone(),
                    self.config.heartbeat_interval,
                    leases.clone(),
                    beats.clone(),
                ))
            })
            .collect();
        drop(leases);
        let connections = TaskTracker::new();
        let watch = tokio::spawn(held.watch());
        tokio::select! {
            _ = self.graceful.cancelled() => {}
            _ = self.kill.cancelled() => {}
            _ = self.accept(listener, &connections, service) => {}
        }
        // The accept loop (and with it the listener) is dropped: no new connection from here.
        beats.cancel();
        futures::future::join_all(heartbeats).await;
        if !self.kill.is_cancelled() {
            self.leave().await;
        }
        connections.close();
        self.kill.cancel();
        connections.wait().await;
        watch.abort();
        caller.abort();
        info!(node = %self.id, served = self.load.served(), "node stopped");
    }

    /// Accepts connections until the listener fails for good (it never does on its own). The
    /// handshakes run here, on the lifecycle thread, and each admitted connection is served
    /// here too; its calls' handlers run on the call threads (see [`crate::calls`]).
    async fn accept<Req, Resp, F, Fut>(
        &self,
        listener: TcpListener,
        connections: &TaskTracker,
        service: Counted<Req, Resp, F>,
    ) where
        Req: RequestName + for<'de> Deserialize<'de> + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(tarpc::context::Context, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ServerError>> + Send + 'static,
    {
        let mut acceptor = Acceptor::new(
            listener,
            AcceptLimits {
                max_connections: self.config.max_connections,
                max_connections_per_ip: self.config.max_connections_per_ip,
                tls: self.config.tls.as_ref().map(|tls| tls.server.clone()),
                handshake_timeout: HANDSHAKE_TIMEOUT,
            },
        );
        let gate = Gate::new(&self.config, self.load.clone());
        let limits = ConnectionLimits {
            max_frame_len: self.config.max_frame_len,
            max_calls: self.config.calls_per_connection(),
            idle_timeout: self.config.idle_timeout,
        };
        loop {
            let incoming = acceptor.next().await;
            let peer = incoming.peer();
            debug!(%peer, "caller connected");
            let (service, kill, gate) = (service.clone(), self.kill.clone(), gate.clone());
            connections.spawn(async move {
                let open = crate::observe::ConnectionOpen::new();
                match incoming.handshake().await {
                    Ok((mut stream, permit)) => {
                        // With a secret, no tarpc frame is read before the caller proves it; a
                        // refused caller is dropped here (and a stopping node does not wait for a
                        // handshake in progress).
                        if let Some(gate) = &gate {
                            let admit = gate.admit(&mut stream, peer);
                            if kill.run_until_cancelled(admit).await != Some(true) {
                                return;
                            }
                        }
                        let _slots = (permit, open);
                        serve_connection(stream, limits, service, kill).await
                    }
                    Err(err) => debug!(%peer, error = %err, "TLS handshake failed"),
                }
            });
        }
    }

    /// Graceful exit: deregister from every master at once (each bounded by the request
    /// timeout), then wait (bounded) until no call has run for [`LINGER`].
    async fn leave(&self) {
        let leaving = self.masters.iter().map(|master| async move {
            match master.deregister(&self.id).await {
                Ok(()) => info!(node = %self.id, master = %master.base(), "left the master"),
                Err(err) => {
                    warn!(node = %self.id, master = %master.base(), error = %err,
                        "could not deregister; the lease will expire")
                }
            }
        });
        futures::future::join_all(leaving).await;
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
