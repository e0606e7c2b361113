//! [`MasterConfig`]: the master's lease terms and limits.

use std::time::Duration;

use distribution_shared::{SecretString, defaults};

use crate::http::HttpOptions;

/// How the master runs its registry. `MasterConfig::default()` gives the documented defaults.
#[derive(Clone)]
#[non_exhaustive]
pub struct MasterConfig {
    /// How often nodes must heartbeat (told to each node when it registers). Default 1 s.
    pub heartbeat_interval: Duration,
    /// How long after its last heartbeat a node is evicted. Default 3 x the interval.
    pub ttl: Duration,
    /// The heartbeats a second the master aims to receive at most: beyond `budget × interval`
    /// nodes, the interval (and TTL) handed to nodes grow with the cluster (see the registry's
    /// `terms` module). Default 4,000 (about a quarter of a core on the benchmark machine);
    /// `None` or 0: the configured interval whatever the size.
    pub heartbeat_budget: Option<u32>,
    /// Self-preservation: below this share of the renewals it expects over two intervals, with
    /// two nodes silent at least, the master stops evicting until renewals recover (its network
    /// is the likelier culprit; see the registry's `preservation` module). Default 0.85;
    /// `None` or 0: always evict on the TTL.
    pub self_preservation: Option<f64>,
    /// The most nodes the registry holds; more registrations get `503`. Default 100,000.
    pub max_nodes: usize,
    /// The largest request body the HTTP API reads. Default 64 KiB.
    pub max_body_bytes: usize,
    /// How long one HTTP request may take, reading included. Default 10 s (long enough for the
    /// slowest honest client, short enough to drop one that trickles).
    pub request_timeout: Duration,
    /// The cluster secret: when set, every `/v1/...` request must carry
    /// `Authorization: Bearer <secret>` (see `auth.rs`), and this master's routers
    /// ([`crate::Master::router_with`]) prove it to the nodes, which require it of every caller.
    /// Never logged.
    pub secret: Option<SecretString>,
    /// Connection limits of the HTTP server (see [`crate::http`]).
    pub http: HttpOptions,
    /// Renders this process's metrics in Prometheus text format: when set, the master serves
    /// them at `GET /metrics` (open, like `/health`). The application chooses the exporter
    /// (the demo installs `metrics-exporter-prometheus`); the library only records. `None`
    /// (the default): no `/metrics` route.
    pub metrics: Option<MetricsRender>,
}

/// Renders a metrics exposition (see [`MasterConfig::metrics`]).
pub type MetricsRender = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

impl Default for MasterConfig {
    fn default() -> Self {
        Self::with_interval(defaults::HEARTBEAT_INTERVAL)
    }
}

impl MasterConfig {
    /// The defaults, with heartbeat `interval` and a TTL of three intervals.
    pub fn with_interval(interval: Duration) -> Self {
        Self {
            heartbeat_interval: interval,
            ttl: interval * defaults::TTL_INTERVALS,
            heartbeat_budget: Some(defaults::HEARTBEAT_BUDGET),
            self_preservation: Some(defaults::SELF_PRESERVATION),
            max_nodes: defaults::MAX_NODES,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            request_timeout: Duration::from_secs(10),
            secret: None,
            http: HttpOptions::default(),
            metrics: None,
        }
    }
}

impl std::fmt::Debug for MasterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterConfig")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("ttl", &self.ttl)
            .field("heartbeat_budget", &self.heartbeat_budget)
            .field("self_preservation", &self.self_preservation)
            .field("max_nodes", &self.max_nodes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("secret", &self.secret)
            .field("http", &self.http)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

// `MasterConfig` is `#[non_exhaustive]`: other crates build it from `Default` (or its constructor)
// with these `with_…` methods, or set its public fields.
distribution_shared::with_setters!(MasterConfig {
    with_heartbeat_interval => heartbeat_interval: Duration,
    with_ttl => ttl: Duration,
    with_heartbeat_budget => heartbeat_budget: Option<u32>,
    with_self_preservation => self_preservation: Option<f64>,
    with_max_nodes => max_nodes: usize,
    with_max_body_bytes => max_body_bytes: usize,
    with_request_timeout => request_timeout: Duration,
    with_secret => secret: Option<SecretString>,
    with_http => http: HttpOptions,
    with_metrics => metrics: Option<MetricsRender>,
});
