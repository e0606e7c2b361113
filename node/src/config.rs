//! [`NodeConfig`]: where the masters are, how the node presents itself, and its limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use distribution_shared::defaults;
use distribution_shared::registry_client::split_masters;
use distribution_shared::tokio_rustls::rustls;
use distribution_shared::{SecretString, ServiceClient};

/// A node's TLS: how it serves its tarpc port and how it dials the master.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// Serves the tarpc port (with client certificates required for mutual TLS).
    pub server: Arc<rustls::ServerConfig>,
    /// Dials the master's HTTPS API (the cluster CA, and this node's certificate).
    pub client: Arc<rustls::ClientConfig>,
}

/// How a node runs. Build it with [`NodeConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The masters' registry APIs, each `host:port` or `http(s)://host:port`. The node keeps a
    /// lease with each of them (one heartbeat loop per master), counts as registered while at
    /// least one holds it, and leaves them all on a graceful stop. Masters do not talk to each
    /// other: each rebuilds its list from the heartbeats. [`NodeConfig::new`] takes one address
    /// or a comma-separated list.
    pub masters: Vec<String>,
    /// The node's id; a fresh `node-<uuid>` when `None`.
    pub id: Option<String>,
    /// The `host:port` callers should dial. When `None` the master uses the address the
    /// registration came from, with the listener's port.
    pub advertise: Option<String>,
    /// How many calls the node runs at once; calls beyond it are refused at once (the router
    /// sends them elsewhere). Default 1024.
    pub capacity: u32,
    /// The largest tarpc frame the node reads or writes. Default 16 MiB.
    pub max_frame_len: usize,
    /// How long a graceful shutdown waits for calls in flight. Default 30 s.
    pub drain_timeout: Duration,
    /// How long one request to the master may take. Default 2 s.
    pub master_timeout: Duration,
    /// The heartbeat interval used until the master states its own. Default 1 s.
    pub heartbeat_interval: Duration,
    /// How many callers' connections the node serves at once. Default 1024.
    pub max_connections: usize,
    /// How many of those one peer IP may hold at once; more are closed as soon as accepted.
    /// Default 512 (`defaults::MAX_CONNECTIONS_PER_IP`).
    pub max_connections_per_ip: usize,
    /// How long a connection may stay silent (no byte either way) with no call running before
    /// the node closes it. Default 5 min (`defaults::NODE_IDLE_TIMEOUT`): routers keep one
    /// connection per node for as long as they use it and drop it themselves after
    /// `defaults::ROUTER_IDLE_CLOSE` (4 min) without calls, so only abandoned or silent
    /// connections meet this limit.
    pub idle_timeout: Duration,
    /// How many requests one connection may have unanswered at once (running, or answered but
    /// not yet written because the caller does not read). At the limit the node stops reading
    /// that connection until answers go out, and a request beyond it is refused at once as at
    /// capacity: one connection can hold at most this many requests and answers in the node's
    /// memory, whatever it sends. `None` (the default): the node's [`capacity`](Self::capacity).
    pub max_calls_per_connection: Option<usize>,
    /// How many pieces of CPU-bound work ([`crate::work::run_blocking`]) run at once; more wait
    /// for a thread. Default: one per core the process may use.
    pub cpu_threads: usize,
    /// How many threads run the node's handlers ([`crate::calls`]): the node's own, apart from
    /// the runtime it was started on and from the thread that reads and writes its connections.
    /// A handler that holds one (a CPU loop in its `async fn`) leaves the others to the calls
    /// beside it; when every one is held, new calls are refused at once. Default: one per core,
    /// at least 2; 0 counts as 1, and more than [`MAX_THREADS`](crate::calls::MAX_THREADS)
    /// (1024) as that many.
    pub call_threads: usize,
    /// How long one poll of a handler may hold its call thread before it counts as blocking:
    /// it is then counted (`distribution_node_handler_blocked_total`) and warned about (once
    /// per method and minute), and while every call thread is held this long new calls are
    /// refused. Default 100 ms.
    pub blocking_threshold: Duration,
    /// TLS: serve the tarpc port under TLS and dial the master over HTTPS. `None`: plain TCP.
    pub tls: Option<NodeTls>,
    /// The cluster secret: presented to the master (`Authorization: Bearer`), and required of
    /// every caller, which must prove it in the cluster handshake before its first call
    /// (`distribution_shared::handshake`; refusals are counted in
    /// [`Load::refused_connections`](crate::Load::refused_connections)). `None`: the node's calls
    /// are open to anyone who reaches its port (unless mutual TLS restricts them). Never logged.
    pub secret: Option<SecretString>,
    /// The service this node's handler serves, as its clients name it
    /// (`service_client!(CalcClient, "calc")`): set it with [`NodeConfig::serving`] to take the
    /// name from the client type. Default
    /// [`DEFAULT_SERVICE`](distribution_shared::wire::DEFAULT_SERVICE). A process that serves
    /// several services starts one node per service, each on its own port and with its own id
    /// (one registration each).
    pub service: String,
    /// Tags routers may require (`"gpu"`); at most 16 (see the master's validation).
    pub tags: Vec<String>,
    /// Details for operators (`"version"`), shown in `GET /v1/nodes`; routing ignores them.
    pub meta: BTreeMap<String, String>,
}

impl NodeConfig {
    /// This config serving `C`'s service: its name is the one `C`'s `service_client!` declared.
    pub fn serving<C: ServiceClient>(self) -> Self {
        self.with_service(C::SERVICE.to_owned())
    }

    /// The defaults, registering with `masters`: one address (`"m1:3000"`) or a
    /// comma-separated list (`"m1:3000,m2:3000"`, as `--master` and `DIST_MASTER` take it).
    pub fn new(masters: impl AsRef<str>) -> Self {
        Self {
            masters: split_masters(masters.as_ref())
                .into_iter()
                .map(String::from)
                .collect(),
            id: None,
            advertise: None,
            capacity: defaults::NODE_CAPACITY,
            max_frame_len: defaults::MAX_FRAME_LEN,
            drain_timeout: defaults::DRAIN_TIMEOUT,
            master_timeout: Duration::from_secs(2),
            heartbeat_interval: defaults::HEARTBEAT_INTERVAL,
            secret: None,
            max_connections: 1024,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            idle_timeout: defaults::NODE_IDLE_TIMEOUT,
            max_calls_per_connection: None,
            cpu_threads: crate::work::default_threads(),
            call_threads: crate::calls::default_threads(),
            blocking_threshold: defaults::BLOCKING_THRESHOLD,
            tls: None,
            service: distribution_shared::wire::DEFAULT_SERVICE.to_owned(),
            tags: Vec::new(),
            meta: BTreeMap::new(),
        }
    }

    /// The per-connection limit in effect: [`max_calls_per_connection`](Self::max_calls_per_connection)
    /// or the capacity, at least 1.
    pub fn calls_per_connection(&self) -> usize {
        self.max_calls_per_connection
            .unwrap_or(self.capacity as usize)
            .max(1)
    }

    /// The masters' base URLs, in order, no trailing slash: each master as given when it has a
    /// scheme, else `https://master` under TLS and `http://master` without.
    pub fn master_urls(&self) -> Vec<String> {
        let url = |master: &String| {
            let master = master.trim_end_matches('/');
            if master.starts_with("http://") || master.starts_with("https://") {
                master.to_owned()
            } else if self.tls.is_some() {
                format!("https://{master}")
            } else {
                format!("http://{master}")
            }
        };
        self.masters.iter().map(url).collect()
    }
}

// `NodeConfig` is `#[non_exhaustive]`: other crates build it from `Default` (or its constructor)
// with these `with_…` methods, or set its public fields.
distribution_shared::with_setters!(NodeConfig {
    with_masters => masters: Vec<String>,
    with_id => id: Option<String>,
    with_advertise => advertise: Option<String>,
    with_capacity => capacity: u32,
    with_max_frame_len => max_frame_len: usize,
    with_drain_timeout => drain_timeout: Duration,
    with_master_timeout => master_timeout: Duration,
    with_heartbeat_interval => heartbeat_interval: Duration,
    with_max_connections => max_connections: usize,
    with_max_connections_per_ip => max_connections_per_ip: usize,
    with_idle_timeout => idle_timeout: Duration,
    with_max_calls_per_connection => max_calls_per_connection: Option<usize>,
    with_cpu_threads => cpu_threads: usize,
    with_call_threads => call_threads: usize,
    with_blocking_threshold => blocking_threshold: Duration,
    with_tls => tls: Option<NodeTls>,
    with_secret => secret: Option<SecretString>,
    with_service => service: String,
    with_tags => tags: Vec<String>,
    with_meta => meta: BTreeMap<String, String>,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_urls_accept_bare_and_full_forms_and_lists() {
        assert_eq!(NodeConfig::new("m:3000").master_urls(), ["http://m:3000"]);
        assert_eq!(
            NodeConfig::new("http://m:3000/").master_urls(),
            ["http://m:3000"]
        );
        assert_eq!(
            NodeConfig::new(" m1:3000, http://m2:3000/ ,").master_urls(),
            ["http://m1:3000", "http://m2:3000"]
        );
    }
}
