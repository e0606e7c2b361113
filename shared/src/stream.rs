//! [`Stream`]: one connection between cluster members, in the clear or under TLS, and the
//! functions that open one ([`connect`]) or take one in ([`accept`]).
//!
//! [`tokio_util::either::Either`] of the two kinds rather than a boxed trait object: no allocation
//! and no dynamic call per read or write, so plain connections cost exactly what a `TcpStream`
//! costs; `Either` and `tokio_rustls::TlsStream` do the delegation of `AsyncRead`/`AsyncWrite`.

use std::io;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tokio_util::either::Either;

use crate::resolve::Resolver;
use crate::tls::ClientTls;

/// A connection to or from a cluster member: `Left` is TCP in the clear, `Right` is TLS (opened
/// by us as a client, or accepted as a server; boxed, since TLS state is large).
pub type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

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
            return Ok(Either::Left(tcp));
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
        Ok(Either::Right(Box::new(TlsStream::Client(tls))))
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
        return Ok(Either::Left(tcp));
    };
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok(Either::Right(Box::new(TlsStream::Server(tls)))),
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
