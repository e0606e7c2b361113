//! [`Stream`]: one connection between cluster members, in the clear or under TLS, and the
//! functions that open one ([`connect`]) or take one in ([`accept`]).
//!
//! An enum rather than a boxed trait object: no allocation and no dynamic call per read or write,
//! so plain connections cost exactly what a `TcpStream` costs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::resolve::Resolver;
use crate::tls::ClientTls;

/// A connection to or from a cluster member.
#[derive(Debug)]
pub enum Stream {
    /// TCP in the clear.
    Plain(TcpStream),
    /// TLS we opened (we are the client).
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS we accepted (we are the server).
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Dials `addr` (`host:port`) within `timeout`, with TLS when `tls` is given. A host name is
/// resolved by the process-wide [`Resolver::system`] at every call (see [`connect_via`]).
///
/// Under TLS the peer's certificate is verified against [`ClientTls::server_name`] when set
/// (one name for every node of the cluster), else against `addr`'s host.
pub async fn connect(addr: &str, tls: Option<&ClientTls>, timeout: Duration) -> io::Result<Stream> {
    connect_via(&Resolver::system(), addr, tls, timeout).await
}

/// [`connect`] with a given resolver. The name is resolved anew at each call, inside `timeout`,
/// so a redial after a failure finds a peer that moved; the addresses are tried in order.
pub async fn connect_via(
    resolver: &Resolver,
    addr: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> io::Result<Stream> {
    let dial = async {
        let tcp = dial_tcp(resolver, addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => host_of(addr).to_owned(),
        };
        let name = ServerName::try_from(name).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad TLS server name: {e}"),
            )
        })?;
        let tls = TlsConnector::from(tls.config.clone())
            .connect(name, tcp)
            .await?;
        Ok(Stream::Client(Box::new(tls)))
    };
    tokio::time::timeout(timeout, dial).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect timed out after {timeout:?}"),
        )
    })?
}

/// The first address of `addr` that accepts a TCP connection; the last error if none does.
async fn dial_tcp(resolver: &Resolver, addr: &str) -> io::Result<TcpStream> {
    let mut last = None;
    for sock in resolver.lookup_addr(addr).await? {
        match TcpStream::connect(sock).await {
            Ok(tcp) => return Ok(tcp),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

/// Takes in an accepted connection: runs the TLS handshake (within `timeout`) when `tls` is
/// given. A peer that fails the handshake (no certificate, wrong CA) gets an error here.
pub async fn accept(
    tcp: TcpStream,
    tls: Option<&TlsAcceptor>,
    timeout: Duration,
) -> io::Result<Stream> {
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok(Stream::Server(Box::new(tls))),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Client(s) => Pin::new(s).poll_flush(cx),
            Stream::Server(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Client(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Server(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Client(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Server(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Client(s) => s.is_write_vectored(),
            Stream::Server(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("node-1:4000"), "node-1");
        assert_eq!(host_of("127.0.0.1:4000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4000"), "::1");
    }
}
