//! [`RemoteConfig`]: how a remote caller follows a master (timeouts, backoff, the restart
//! grace, the size bound of the node list, the secret and TLS), and how it turns into the shared
//! registry client, so the follower and the event stream reach the master the same way.

use std::sync::Arc;
use std::time::Duration;

use distribution_shared::backoff::Backoff;
use distribution_shared::registry_client::{RegistryClient, RegistrySettings, split_masters};
use distribution_shared::tokio_rustls::rustls;
use distribution_shared::{SecretString, defaults};

use super::ConnectError;
use crate::router::RouterConfig;

/// How a remote caller follows its masters. `RemoteConfig::default()` gives the documented
/// defaults. The masters themselves are the address given to [`connect`](super::connect) (one,
/// or a comma-separated list to fail over in: see the `failover` module).
// Not `#[non_exhaustive]` yet: callers across the workspace (examples, bench, the master's
// tests) build it with ``, which that would forbid.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteConfig {
    /// How the router calls the nodes.
    pub router: RouterConfig,
    /// The `wait` of each blocking query, so the longest the load figures go without a refresh
    /// while the node set does not change. Default: the heartbeat interval, 1 s.
    pub load_refresh: Duration,
    /// How long [`connect`](super::connect) keeps trying to get the master's first answer. Default 5 s.
    /// With several masters each request gets an equal share of it (at least 100 ms), so a
    /// master that never answers leaves time for the next.
    pub first_answer_timeout: Duration,
    /// How long connecting to the master, or an answer beyond the query's wait, may take.
    /// Default 5 s.
    pub request_timeout: Duration,
    /// How long the event stream ([`events`](super::events)) may stay silent, without an event
    /// or a keep-alive, before its master is taken as gone and the next is asked (or the same
    /// one again). Default 15 s: three of the master's keep-alives (one every 5 s).
    pub events_idle_timeout: Duration,
    /// The first pause before asking an unreachable master again (with several masters: before
    /// a new round, once every one has failed; the next is tried at once); it doubles at each
    /// round (jittered by +-20 %). Default 100 ms.
    pub retry_base: Duration,
    /// The longest pause between two tries. Default 5 s.
    pub retry_max: Duration,
    /// After an outage or a master restart, how long nodes missing from the master's list stay
    /// in the view (they re-register within a heartbeat). Default: the TTL, 3 s.
    pub restart_grace: Duration,
    /// The largest node list the caller reads. Default 64 MiB (100,000 nodes take about 20 MiB).
    pub max_list_bytes: usize,
    /// The cluster secret, sent as `Authorization: Bearer` when the master has one (see
    /// the master's `auth` module), and proved to every node in the cluster handshake. One secret for
    /// both: when only this or only `router.secret` is set, it serves for both. Default none.
    /// Never logged.
    pub secret: Option<SecretString>,
    /// TLS to the master's registry API (the cluster CA, and this caller's certificate for
    /// mutual TLS). Default: the router's, `router.tls`, since one cluster CA certifies the
    /// master and the nodes. With TLS a bare `host:port` means `https://host:port`.
    pub master_tls: Option<Arc<rustls::ClientConfig>>,
}

impl RemoteConfig {
    /// This configuration with one cluster secret for the registry and the nodes: whichever
    /// of [`RemoteConfig::secret`] and `router.secret` is set fills the other.
    pub(crate) fn with_one_secret(mut self) -> Self {
        if self.secret.is_none() {
            self.secret = self.router.secret.clone();
        }
        if self.router.secret.is_none() {
            self.router.secret = self.secret.clone();
        }
        self
    }

    /// The TLS settings for the master: [`RemoteConfig::master_tls`], else the router's.
    pub(crate) fn effective_master_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.master_tls
            .clone()
            .or_else(|| self.router.tls.as_ref().map(|tls| tls.config.clone()))
    }

    /// One registry client per master of `masters` (one address, or a comma-separated list,
    /// read by `split_masters`), in order, with these settings (the request timeout, the one
    /// secret, the master's TLS). Fails on a bad address, before any request.
    pub(crate) fn registries(&self, masters: &str) -> Result<Vec<RegistryClient>, ConnectError> {
        let secret = self.secret.as_ref().or(self.router.secret.as_ref());
        let settings = RegistrySettings::new(self.request_timeout)
            .with_secret(secret)
            .with_tls(self.effective_master_tls());
        split_masters(masters)
            .into_iter()
            .map(|master| {
                RegistryClient::new(master, settings.clone())
                    .map_err(|err| ConnectError::building(master, err))
            })
            .collect()
    }

    /// The pauses between rounds of tries at unreachable masters: [`RemoteConfig::retry_base`]
    /// doubling to [`RemoteConfig::retry_max`], jittered so that callers cut off together do
    /// not retry together.
    pub(crate) fn retry_backoff(&self) -> Backoff {
        Backoff::new(self.retry_base, self.retry_max).with_jitter()
    }
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            router: RouterConfig::default(),
            load_refresh: defaults::HEARTBEAT_INTERVAL,
            first_answer_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            events_idle_timeout: defaults::EVENTS_KEEP_ALIVE * 3,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            restart_grace: defaults::HEARTBEAT_INTERVAL * defaults::TTL_INTERVALS,
            max_list_bytes: 64 * 1024 * 1024,
            secret: None,
            master_tls: None,
        }
    }
}

// `RemoteConfig` is `#[non_exhaustive]`: other crates build it from `Default` (or its constructor)
// with these `with_…` methods, or set its public fields.
distribution_shared::with_setters!(RemoteConfig {
    with_router => router: RouterConfig,
    with_load_refresh => load_refresh: Duration,
    with_first_answer_timeout => first_answer_timeout: Duration,
    with_request_timeout => request_timeout: Duration,
    with_events_idle_timeout => events_idle_timeout: Duration,
    with_retry_base => retry_base: Duration,
    with_retry_max => retry_max: Duration,
    with_restart_grace => restart_grace: Duration,
    with_max_list_bytes => max_list_bytes: usize,
    with_secret => secret: Option<SecretString>,
    with_master_tls => master_tls: Option<Arc<rustls::ClientConfig>>,
});
