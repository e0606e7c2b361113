//! The one accept loop of every listener of the cluster (the master's registry, the demo
//! gateway, a node's tarpc port), and the per-connection limits it and the servers apply, so that
//! silent or greedy clients cannot take every slot:
//!
//! - [`Acceptor`] (module `accept`): the accept loop itself: the global connection limit, backoff
//!   on `accept` errors, the per-IP limit and the bounded TLS handshake, in that order;
//! - [`PeerLimits`]: at most N connections open at once from one peer IP. A connection beyond it
//!   is closed at once (its [`PeerLimits::try_acquire`] gives `None`), with a warning logged at
//!   most once a second. One host, however many sockets it opens, can then hold only a share of
//!   a listener's global connection limit, and `/health` from anyone else still gets a slot.
//! - [`IdleStream`] + [`Activity`]: an idle timeout. The stream records when its last byte was
//!   read or written; the server marks each request it is working on with [`Activity::busy`];
//!   [`Activity::idle`] completes once the connection has had no request in flight and no byte in
//!   either direction for the timeout, and the server then drops the connection.
//!
//! Why a wrapper rather than hyper's knobs: hyper 1's HTTP/1 `header_read_timeout` never starts
//! on a connection that sends nothing (hyper-util's `auto` builder first waits for the bytes that
//! tell HTTP/1 from HTTP/2), hyper has no HTTP/1 idle timeout between requests, and HTTP/2
//! keep-alive pings only detect dead peers: a client that answers pings but never sends a request
//! is kept forever. tarpc has no idle timeout either. Counting bytes and requests covers them all.

mod accept;

pub use accept::{AcceptLimits, Acceptor, Incoming, Permit};

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::warn;

/// Counter, label `reason` (`per_ip`): connections closed at once by a listener's limits.
pub const CONNECTIONS_REFUSED: &str = "distribution_connections_refused_total";

/// How often, at most, [`PeerLimits`] logs that it refused connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// Counts the connections open per peer IP and refuses those beyond a limit. Cheap to clone; the
/// clones share the counts.
#[derive(Debug, Clone)]
pub struct PeerLimits {
    inner: Arc<PeerInner>,
}

#[derive(Debug)]
struct PeerInner {
    max_per_ip: usize,
    state: Mutex<PeerState>,
}

#[derive(Debug, Default)]
struct PeerState {
    open: HashMap<IpAddr, usize>,
    refused_unlogged: u64,
    last_log: Option<Instant>,
}

impl PeerLimits {
    /// At most `max_per_ip` connections from one IP at once (0 counts as 1). IPv4 addresses
    /// mapped into IPv6 (`::ffff:a.b.c.d`) count as the IPv4 address.
    pub fn new(max_per_ip: usize) -> Self {
        Self {
            inner: Arc::new(PeerInner {
                max_per_ip: max_per_ip.max(1),
                state: Mutex::new(PeerState::default()),
            }),
        }
    }

    /// The limit per IP.
    pub fn max_per_ip(&self) -> usize {
        self.inner.max_per_ip
    }

    /// Takes a slot for a connection from `ip`: `Some(guard)` while under the limit (the slot is
    /// freed when the guard drops, i.e. when the connection ends), `None` when `ip` already has
    /// the maximum open: close that connection at once.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<PeerGuard> {
        let ip = ip.to_canonical();
        let mut state = self.inner.state.lock();
        let open = state.open.entry(ip).or_insert(0);
        if *open < self.inner.max_per_ip {
            *open += 1;
            return Some(PeerGuard {
                limits: self.inner.clone(),
                ip,
            });
        }
        state.refused_unlogged += 1;
        metrics::counter!(CONNECTIONS_REFUSED, "reason" => "per_ip").increment(1);
        let now = Instant::now();
        if state
            .last_log
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_LOG_EVERY)
        {
            warn!(
                peer = %ip,
                limit = self.inner.max_per_ip,
                refused = state.refused_unlogged,
                "too many connections from one peer IP: refusing (logged at most once a second)"
            );
            state.refused_unlogged = 0;
            state.last_log = Some(now);
        }
        None
    }

    /// How many connections from `ip` hold a slot now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let state = self.inner.state.lock();
        state.open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

/// One connection's slot in [`PeerLimits`]; dropping it frees the slot.
#[derive(Debug)]
pub struct PeerGuard {
    limits: Arc<PeerInner>,
    ip: IpAddr,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let mut state = self.limits.state.lock();
        if let Some(open) = state.open.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                state.open.remove(&self.ip);
            }
        }
    }
}

/// When a connection last moved a byte, and how many requests it has in flight. Cheap to clone;
/// the clones share the record (the stream, the service and the watchdog each hold one).
#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<ActivityInner>,
}

#[derive(Debug)]
struct ActivityInner {
    origin: Instant,
    /// Nanoseconds from `origin` to the last byte or the end of the last request.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A record that starts now, with nothing in flight.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ActivityInner {
                origin: Instant::now(),
                last: AtomicU64::new(0),
                busy: AtomicUsize::new(0),
            }),
        }
    }

    /// Records activity now (a byte moved). [`IdleStream`] calls it for you.
    pub fn touch(&self) {
        let nanos = u64::try_from(self.inner.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.inner.last.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Marks a request in flight until the returned guard drops: a connection is never idle
    /// while it works on a request, however long the request stays silent (a blocking query, a
    /// long computation).
    pub fn busy(&self) -> Busy {
        self.inner.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Completes once the connection has had no request in flight and no byte read or written
    /// for `timeout`. Race it against the connection and drop the connection when it wins.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let now = Instant::now();
            if self.inner.busy.load(Ordering::Relaxed) > 0 {
                // Busy: look again after a timeout; the end of the request counts as activity.
                tokio::time::sleep_until(now + timeout).await;
                continue;
            }
            let last =
                self.inner.origin + Duration::from_nanos(self.inner.last.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if now >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request in flight on a connection (see [`Activity::busy`]); its end counts as activity.
#[derive(Debug)]
pub struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inner.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records every byte read or written in an [`Activity`].
///
/// ```no_run
/// # async fn demo(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// use std::time::Duration;
/// use distribution_shared::listener::{IdleStream, PeerLimits};
///
/// let limits = PeerLimits::new(64);
/// let (tcp, peer) = listener.accept().await?;
/// let Some(_slot) = limits.try_acquire(peer.ip()) else {
///     return Ok(()); // over the limit: `tcp` is dropped, i.e. closed at once
/// };
/// let stream = IdleStream::new(tcp);
/// let activity = stream.activity().clone();
/// let serve = async move {
///     // ... serve `stream`; hold `activity.busy()` while a request runs ...
///     drop(stream);
/// };
/// tokio::select! {
///     _ = serve => {}
///     _ = activity.idle(Duration::from_secs(30)) => {} // silent too long: dropped, closed
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct IdleStream<S> {
    inner: S,
    activity: Activity,
}

impl<S> IdleStream<S> {
    /// Wraps `inner`, with a fresh [`Activity`] that starts now.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            activity: Activity::new(),
        }
    }

    /// The record this stream updates: clone it for the service and the watchdog.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn peer_limits_count_per_ip_and_free_on_drop() {
        let limits = PeerLimits::new(2);
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let first = limits.try_acquire(a).expect("1 of 2");
        let _second = limits.try_acquire(a).expect("2 of 2");
        assert!(limits.try_acquire(a).is_none(), "3 of 2 is refused");
        // The IPv4-mapped form is the same peer.
        assert!(limits.try_acquire(a.to_canonical()).is_none());
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert!(limits.try_acquire(mapped).is_none());
        let _other = limits.try_acquire(b).expect("another IP has its own slots");
        drop(first);
        assert_eq!(limits.open(a), 1);
        assert!(
            limits.try_acquire(a).is_some(),
            "a freed slot is taken again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_is_idle_after_the_timeout_and_bytes_or_requests_postpone_it() {
        let timeout = Duration::from_secs(10);
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleStream::new(server);
        let activity = server.activity().clone();
        let start = Instant::now();
        activity.idle(timeout).await;
        assert_eq!(start.elapsed(), timeout, "silent from the start");

        // A byte read at +4 s postpones the idle point to +14 s.
        let mut client = client;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;
        client.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).await.unwrap();
        activity.idle(timeout).await;
        assert_eq!(started.elapsed(), Duration::from_secs(14));

        // A request in flight for 25 s keeps it from being idle; idle 10 s after it ends.
        let started = Instant::now();
        let busy = activity.busy();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(25)).await;
            drop(busy);
        });
        activity.idle(timeout).await;
        assert!(
            started.elapsed() >= Duration::from_secs(35),
            "idle at {:?}",
            started.elapsed()
        );
    }
}
