//! [`Resolver`]: host names to addresses, in-process, for every connection the programs open
//! (node → master, remote caller → master, router → node).
//!
//! Why not the operating system's resolver: the demo image is one static glibc binary in an empty
//! (`FROM scratch`) image, with no `/etc/nsswitch.conf` and no NSS modules. What `getaddrinfo`
//! does there depends on the libc the binary was linked with: glibc 2.34 and later carry their
//! `dns` and `files` modules inside, so a static build reaches Docker's DNS (Debian 12's 2.36,
//! which builds the image, does); older glibc sees `/etc/hosts` only, and other libcs differ
//! again. Each lookup also blocks a thread. This resolver is pure Rust (`hickory-resolver`): it
//! reads `/etc/resolv.conf` (name servers, search domains, `ndots`) and `/etc/hosts` itself, asks
//! the name servers over UDP/TCP from tokio, behaves the same whatever the libc, bounds how long
//! an answer is reused, and can be pointed at a test's own DNS server.
//!
//! - **IP literals** (`10.0.0.5:3000`, `[::1]:3000`) never touch DNS: they are parsed, that's all.
//! - **Re-resolved on every connection**: nothing here keeps an address. Answers are cached for
//!   their DNS TTL but never longer than [`MAX_CACHE_TTL`] (Docker's DNS answers with a TTL of
//!   10 minutes): a master rescheduled to a new address is found on the next (re)connect.
//! - **One resolver per process** ([`Resolver::system`]), shared by the HTTP clients (through
//!   `reqwest::dns::Resolve`, feature `reqwest`) and [`crate::stream::connect`].
//! - Without a readable `/etc/resolv.conf` (unusual outside containers) the resolver falls back to
//!   the operating system's (`getaddrinfo`), and says so once in the log.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_resolver::Hosts;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolverOpts;
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;

pub use hickory_resolver::config::{NameServerConfig, ResolverConfig};

/// The longest a DNS answer is reused: 2 s. Queries are cheap and made only when a connection is
/// opened; a moved master must not be dialled at its old address for the TTL Docker gives (600 s).
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(2);

/// Resolves `host:port` to socket addresses. Cheap to clone (one shared resolver inside).
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

enum Inner {
    /// hickory, with the system's or a given configuration.
    Dns(Box<TokioResolver>),
    /// The operating system's resolver (`tokio::net::lookup_host`).
    Os,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match *self.inner {
            Inner::Dns(_) => "in-process DNS",
            Inner::Os => "operating system",
        };
        f.debug_struct("Resolver").field("kind", &kind).finish()
    }
}

impl Resolver {
    /// The process-wide resolver: `/etc/resolv.conf` and `/etc/hosts`, read once, on first use.
    pub fn system() -> Resolver {
        static SYSTEM: OnceLock<Resolver> = OnceLock::new();
        SYSTEM
            .get_or_init(|| match TokioResolver::builder_tokio() {
                Ok(mut builder) => {
                    cap_ttls(builder.options_mut());
                    Resolver::from_hickory(builder.build())
                }
                Err(err) => {
                    tracing::warn!(error = %err,
                        "cannot read the DNS configuration (/etc/resolv.conf); resolving names with the operating system's resolver");
                    Resolver {
                        inner: Arc::new(Inner::Os),
                    }
                }
            })
            .clone()
    }

    /// A resolver that asks the name servers of `config` and looks in `hosts` first (the text of
    /// a hosts file, `None` for none), with the same cache bound as [`Resolver::system`]. For
    /// tests and for programs with their own DNS set-up.
    pub fn with_config(config: ResolverConfig, hosts: Option<&str>) -> io::Result<Resolver> {
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        let options = builder.options_mut();
        cap_ttls(options);
        // `Never` only keeps the builder from loading /etc/hosts: the table set below is still
        // looked up before any query.
        options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let mut resolver = builder.build();
        let mut table = Hosts::default();
        if let Some(text) = hosts {
            table.read_hosts_conf(text.as_bytes())?;
        }
        resolver.set_hosts(Arc::new(table));
        Ok(Resolver::from_hickory(resolver))
    }

    /// A resolver that asks the DNS servers at `servers` (UDP, then TCP for long answers) and
    /// looks in `hosts` first (see [`Resolver::with_config`]).
    pub fn with_name_servers(servers: &[SocketAddr], hosts: Option<&str>) -> io::Result<Resolver> {
        let mut config = ResolverConfig::new();
        for server in servers {
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                config.add_name_server(NameServerConfig::new(*server, protocol));
            }
        }
        Resolver::with_config(config, hosts)
    }

    fn from_hickory(resolver: TokioResolver) -> Resolver {
        Resolver {
            inner: Arc::new(Inner::Dns(Box::new(resolver))),
        }
    }

    /// The addresses of `host` (a name or an IP literal, IPv6 with or without brackets), each with
    /// `port`. An IP literal is returned as is, without any query.
    pub async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = match &*self.inner {
            Inner::Dns(resolver) => resolver
                .lookup_ip(bare)
                .await
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("cannot resolve {bare:?}: {e}"),
                    )
                })?
                .iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            Inner::Os => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {bare:?}: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot resolve {bare:?}: no address"),
            ));
        }
        Ok(addrs)
    }

    /// The addresses of `addr` given as `host:port` (`[v6]:port` for IPv6).
    pub async fn lookup_addr(&self, addr: &str) -> io::Result<Vec<SocketAddr>> {
        if let Ok(sock) = addr.parse::<SocketAddr>() {
            return Ok(vec![sock]);
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr:?} is not host:port"),
            )
        })?;
        let port = port.parse::<u16>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr:?}: bad port {port:?}"),
            )
        })?;
        self.lookup(host, port).await
    }
}

/// Bounds how long answers are reused (see [`MAX_CACHE_TTL`]).
fn cap_ttls(options: &mut ResolverOpts) {
    options.positive_max_ttl = Some(MAX_CACHE_TTL);
    options.negative_max_ttl = Some(Duration::from_secs(1));
}

#[cfg(feature = "reqwest")]
impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let addrs = resolver.lookup(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_need_no_dns() {
        // No name server at all: only literals and the hosts text can answer.
        let resolver =
            Resolver::with_config(ResolverConfig::new(), Some("127.0.0.9 box\n")).unwrap();
        assert_eq!(
            resolver.lookup_addr("127.0.0.1:4000").await.unwrap(),
            vec!["127.0.0.1:4000".parse().unwrap()]
        );
        assert_eq!(
            resolver.lookup_addr("[::1]:4000").await.unwrap(),
            vec!["[::1]:4000".parse().unwrap()]
        );
        assert_eq!(
            resolver.lookup("::1", 7).await.unwrap(),
            vec!["[::1]:7".parse().unwrap()]
        );
        assert_eq!(
            resolver.lookup_addr("box:5").await.unwrap(),
            vec!["127.0.0.9:5".parse().unwrap()]
        );
        let err = resolver.lookup_addr("nowhere:5").await.unwrap_err();
        assert!(
            err.to_string().contains("cannot resolve \"nowhere\""),
            "{err}"
        );
        for bad in ["no-port", "host:port", "host:70000"] {
            let err = resolver.lookup_addr(bad).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}: {err}");
        }
    }
}
