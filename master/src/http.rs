//! The master's HTTP server: the accept loop under the registry API, with the limits that keep a
//! bad or slow client from hurting the others.
//!
//! - at most [`HttpOptions::max_connections`] connections at once (accepting waits for a free slot);
//! - request headers must arrive within [`HttpOptions::header_read_timeout`] (slowloris);
//! - at most 100 headers per request (`431` beyond, hyper's default);
//! - on shutdown, open connections finish their current request, bounded by the drain timeout;
//! - optionally HTTPS, with client certificates required for mutual TLS ([`HttpOptions::tls`]);
//!   the handshake must also finish within the header read timeout.
//!
//! `axum::serve` offers none of these knobs, hence this small loop over hyper-util.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use distribution_shared::stream;
use distribution_shared::tokio_rustls::{TlsAcceptor, rustls};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Limits and TLS of the master's HTTP server.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Connections served at once. Default 4096.
    pub max_connections: usize,
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
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let acceptor = limits.tls.clone().map(TlsAcceptor::from);
    let mut backoff = Duration::from_millis(5);
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(5);
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let (builder, acceptor, watcher) = (builder.clone(), acceptor.clone(), graceful.watcher());
        let handshake = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match stream::accept(stream, acceptor.as_ref(), handshake).await {
                Ok(stream) => stream,
                Err(err) => {
                    debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
            };
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                debug!(%peer, error = %err, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("HTTP drain timed out; closing the remaining connections");
    }
    Ok(())
}

/// The peer address type handlers extract.
pub type Peer = ConnectInfo<SocketAddr>;
