//! The master's HTTP server: the accept loop under the registry API, with the limits that keep a
//! bad or slow client from hurting the others.
//!
//! - at most [`HttpOptions::max_connections`] connections at once (accepting waits for a free slot);
//! - at most [`HttpOptions::max_connections_per_ip`] of them from one peer IP: beyond it a
//!   connection is closed at once (see [`distribution_shared::listener`]). No slot is reserved
//!   for `/health` (the path is unknown until a request arrives); the per-IP limit is what keeps
//!   slots free for it: one host fills at most an eighth of the global limit by default;
//! - a connection with no request in flight and no byte either way for
//!   [`HttpOptions::idle_timeout`] is closed: silent sockets, HTTP/2 connections that never send
//!   a request, keep-alive connections left open. Blocking queries are requests in flight;
//! - request headers must arrive within [`HttpOptions::header_read_timeout`] (slowloris);
//! - at most 100 headers per request (`431` beyond, hyper's default);
//! - on shutdown, open connections finish their current request, bounded by the drain timeout;
//! - optionally HTTPS, with client certificates required for mutual TLS ([`HttpOptions::tls`]);
//!   the handshake must also finish within the header read timeout.
//!
//! The accept loop is the cluster's one ([`distribution_shared::listener::Acceptor`]: slots,
//! backoff, per-IP limit, bounded TLS handshake); `axum::serve` offers none of these knobs,
//! hence hyper-util under it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use distribution_shared::defaults;
use distribution_shared::listener::{AcceptLimits, Acceptor, IdleStream};
use distribution_shared::tokio_rustls::rustls;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Limits and TLS of the master's HTTP server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Connections served at once. Default 4096.
    pub max_connections: usize,
    /// Connections one peer IP may hold at once; more are closed at once. Default 512
    /// ([`defaults::MAX_CONNECTIONS_PER_IP`]).
    pub max_connections_per_ip: usize,
    /// How long a connection may stay with no request in flight and no byte either way before it
    /// is closed. Default 30 s ([`defaults::IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// How long a client may take to send a request's headers. Default 5 s.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for open requests. Default 5 s.
    pub drain_timeout: Duration,
    /// Serve HTTPS with this configuration (see `distribution_shared::tls`). `None`: HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            idle_timeout: defaults::IDLE_TIMEOUT,
            header_read_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled. Handlers can read the peer address
/// with `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut acceptor = Acceptor::new(
        listener,
        AcceptLimits {
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            tls: limits.tls.clone(),
            handshake_timeout: limits.header_read_timeout,
        },
    );
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            incoming = acceptor.next() => incoming,
        };
        let peer = incoming.peer();
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let idle_timeout = limits.idle_timeout;
        let app = app.clone();
        tokio::spawn(async move {
            let (stream, _permit) = match incoming.handshake().await {
                Ok((stream, permit)) => (IdleStream::new(stream), permit),
                Err(err) => {
                    debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
            };
            let activity = stream.activity().clone();
            let in_flight = activity.clone();
            // Each request holds `busy` until its response is ready; the body's bytes are
            // activity of their own.
            let service = app
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                })
                .map_future(move |response| {
                    let busy = in_flight.busy();
                    async move {
                        let response = response.await;
                        drop(busy);
                        response
                    }
                });
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            tokio::select! {
                served = watcher.watch(connection.into_owned()) => {
                    if let Err(err) = served {
                        debug!(%peer, error = %err, "connection closed with an error");
                    }
                }
                _ = activity.idle(idle_timeout) => debug!(%peer, "idle connection closed"),
            }
        });
    }
    drop(acceptor);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("HTTP drain timed out; closing the remaining connections");
    }
    Ok(())
}

// `HttpOptions` is `#[non_exhaustive]`: other crates build it from `Default` (or its constructor)
// with these `with_…` methods, or set its public fields.
distribution_shared::with_setters!(HttpOptions {
    with_max_connections => max_connections: usize,
    with_max_connections_per_ip => max_connections_per_ip: usize,
    with_idle_timeout => idle_timeout: Duration,
    with_header_read_timeout => header_read_timeout: Duration,
    with_drain_timeout => drain_timeout: Duration,
    with_tls => tls: Option<Arc<rustls::ServerConfig>>,
});
