//! [`Acceptor`]: the one accept loop of every listener in the cluster (the master's HTTP API and
//! the demo gateway through `distribution_master::http`, a node's tarpc port), so that each one
//! applies the same limits in the same order:
//!
//! 1. a free slot of [`AcceptLimits::max_connections`] is taken *before* `accept`: at the limit
//!    the listener stops accepting, and excess clients wait in the kernel's listen backlog
//!    instead of costing memory here;
//! 2. `accept` errors (out of file descriptors and the like) are logged and retried after the
//!    shared [`Backoff`] (10 ms doubling to 1 s), never spun on;
//! 3. one peer IP holds at most [`AcceptLimits::max_connections_per_ip`] slots ([`PeerLimits`]);
//!    beyond it the connection is closed at once;
//! 4. the TLS handshake, when TLS is on, runs in the connection's own task
//!    ([`Incoming::handshake`]) within [`AcceptLimits::handshake_timeout`], so a client that
//!    stalls its handshake holds one slot for a bounded time and never the loop.
//!
//! What happens to an admitted connection (HTTP, tarpc, the cluster handshake) is the server's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, rustls};
use tracing::warn;

use super::{PeerGuard, PeerLimits};
use crate::backoff::Backoff;
use crate::stream::{self, Stream};

/// The first pause after a failed `accept`; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_BASE: Duration = Duration::from_millis(10);
/// The longest pause between two `accept`s that fail.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The limits and TLS of one listener.
#[derive(Debug, Clone)]
pub struct AcceptLimits {
    /// Connections open at once (0 counts as 1).
    pub max_connections: usize,
    /// Connections one peer IP may hold at once (0 counts as 1).
    pub max_connections_per_ip: usize,
    /// Serve TLS with this configuration (see [`crate::tls`]). `None`: TCP in the clear.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a client may take to finish the TLS handshake.
    pub handshake_timeout: Duration,
}

/// A listener with its limits: [`Acceptor::next`] gives the next connection within them.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    peers: PeerLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    backoff: Backoff,
}

impl Acceptor {
    /// Accepts on `listener` within `limits`.
    pub fn new(listener: TcpListener, limits: AcceptLimits) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            peers: PeerLimits::new(limits.max_connections_per_ip),
            tls: limits.tls,
            handshake_timeout: limits.handshake_timeout,
            backoff: Backoff::new(ACCEPT_BACKOFF_BASE, ACCEPT_BACKOFF_MAX),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection that fits the limits (see the module docs); waits for a free slot
    /// first. Cancel-safe: dropped before it returns, it loses no connection (a connection is
    /// only taken from the kernel in the poll that returns it).
    pub async fn next(&mut self) -> Incoming {
        loop {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "accept failed; backing off");
                    self.backoff.wait().await;
                    continue;
                }
            };
            self.backoff.reset();
            // Beyond its share, `tcp` and `slot` drop here: the socket closes at once.
            let Some(peer_slot) = self.peers.try_acquire(peer.ip()) else {
                continue;
            };
            return Incoming {
                tcp,
                peer,
                permit: Permit {
                    _slot: slot,
                    _peer: peer_slot,
                },
                tls: self.tls.clone(),
                handshake_timeout: self.handshake_timeout,
            };
        }
    }
}

/// An accepted connection, before its TLS handshake.
#[derive(Debug)]
pub struct Incoming {
    tcp: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
}

impl Incoming {
    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Runs the TLS handshake (when TLS is on) within the listener's handshake timeout. The
    /// [`Permit`] holds the connection's slots: keep it for as long as the connection is served.
    pub async fn handshake(self) -> io::Result<(Stream, Permit)> {
        let acceptor = self.tls.map(TlsAcceptor::from);
        let stream = stream::accept(self.tcp, acceptor.as_ref(), self.handshake_timeout).await?;
        Ok((stream, self.permit))
    }
}

/// A connection's slots in its listener's limits (global and per IP); dropping it frees them.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
    _peer: PeerGuard,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn limits(max_connections: usize, max_connections_per_ip: usize) -> AcceptLimits {
        AcceptLimits {
            max_connections,
            max_connections_per_ip,
            tls: None,
            handshake_timeout: Duration::from_secs(1),
        }
    }

    async fn acceptor(limits: AcceptLimits) -> (Acceptor, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (Acceptor::new(listener, limits), addr)
    }

    #[tokio::test]
    async fn at_the_connection_limit_nothing_is_accepted_until_a_permit_drops() {
        let (mut acceptor, addr) = acceptor(limits(1, 8)).await;
        let _first = TcpStream::connect(addr).await.unwrap();
        let (_, permit) = acceptor.next().await.handshake().await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap(); // waits in the backlog
        let waiting = tokio::time::timeout(Duration::from_millis(300), acceptor.next()).await;
        assert!(
            waiting.is_err(),
            "a second connection was accepted at the limit"
        );
        drop(permit);
        let next = tokio::time::timeout(Duration::from_secs(5), acceptor.next()).await;
        assert!(next.is_ok(), "the freed slot was not used");
    }

    #[tokio::test]
    async fn beyond_the_per_ip_share_a_connection_is_closed_at_once() {
        let (mut acceptor, addr) = acceptor(limits(8, 1)).await;
        let _first = TcpStream::connect(addr).await.unwrap();
        let held = acceptor.next().await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        // The loop takes the second (refused, closed) and the third (likewise) and keeps waiting.
        let next = tokio::time::timeout(Duration::from_millis(500), acceptor.next()).await;
        assert!(
            next.is_err(),
            "a connection beyond the per-IP share was admitted"
        );
        for refused in [&mut second, &mut third] {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut byte)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "the refused connection stayed open: {read:?}"
            );
        }
        drop(held);
        let _fourth = TcpStream::connect(addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), acceptor.next()).await;
        assert!(next.is_ok(), "the freed per-IP slot was not used");
    }
}
