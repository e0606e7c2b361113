//! Remote callers: a [`Router`] in any process (a web service, a batch job on another machine),
//! fed by a blocking query on a master's node list. The master stays out of the data path: the
//! caller dials the nodes itself, one connection per node, exactly as the in-process router does.
//!
//! ```text
//!                                   blocking query:
//!    another machine                GET /v1/nodes?index=N&wait=1s     master (:3000)
//!   ┌────────────────────────────┐                        ┌──────────────────────────┐
//!   │ your code                  │                        │                          │
//!   │    │                       │ ─────────────────────▶ │ api ──▶ registry         │
//!   │    ▼       membership      │                        │   answers on a change,   │
//!   │  Router ◀───────── watcher │ ◀───────────────────── │   or after the wait      │
//!   │    │                       │   node list + loads    │                          │
//!   └────┼───────────────────────┘                        └────────────▲─────────────┘
//!        │ tarpc calls, one connection per node                        │ register,
//!        ▼                                                             │ heartbeats (load)
//!    ┌────────┐  ┌────────┐  ┌────────┐                                │
//!    │ node A │  │ node B │  │ node C │ ───────────────────────────────┘
//!    └────────┘  └────────┘  └────────┘
//! ```
//!
//! [`connect`] fetches the node list once (so calls right after it find the nodes), then spawns a
//! watcher task that keeps one blocking query open (the master's `watch` module) and publishes each new node
//! set into the `tokio::sync::watch` channel that the [`Router`] follows.
//!
//! # Load figures
//!
//! The router's score combines its own calls in flight with the load each node reports in its
//! heartbeats. Those reports do not bump the registry's index, so a blocking query would not
//! return for them. The watcher therefore bounds each query's `wait` by
//! [`RemoteConfig::load_refresh`] (default: one heartbeat interval, 1 s): a join or a leave still
//! arrives within milliseconds, and without one the answer comes back after at most that period
//! with fresh load figures. These are written in place into the [`LoadReport`]s the router already
//! reads (one `Arc` per node id, kept across answers), without republishing the node set, so the
//! router neither rebuilds its endpoints nor drops a connection for a load update. The cost is one
//! small HTTP request per caller per refresh period.
//!
//! # When the master is down
//!
//! - At [`connect`]: it retries for [`RemoteConfig::first_answer_timeout`] (a master that is
//!   starting up gets a chance), then fails with [`ConnectError::Unreachable`]. A router that
//!   knows no node would only fail every call, and a wrong address is better reported at once.
//! - Later: the router keeps its last view and its calls keep going to the known nodes (which
//!   keep serving). The watcher logs the outage once, retries with a backoff from
//!   [`RemoteConfig::retry_base`] to [`RemoteConfig::retry_max`], and logs the recovery. The
//!   stale load figures are zeroed at the start of an outage: the router's own counts then
//!   decide, rather than a report that grows older every second.
//! - When it is back: the first request asks for the list at once (no index), so the view
//!   catches up immediately. The master's index restarts from zero in a new master process; an
//!   index lower than the one known is taken as such a restart. A restarted master lists its
//!   nodes only as they re-register (within a heartbeat), so for
//!   [`RemoteConfig::restart_grace`] after an outage or a restart, nodes missing from its list
//!   are kept; new nodes are added at once. After the grace the view is the master's list.
//!
//! # Security
//!
//! A master with a cluster secret gets it from [`RemoteConfig::secret`], and the nodes get the
//! same secret proved in the cluster handshake on each connection; a master on HTTPS is
//! reached with [`RemoteConfig::master_tls`], by default the router's TLS settings (the cluster
//! CA, and the caller's certificate under mutual TLS), which also secure the calls to the nodes.
//!
//! The watcher stops when nobody follows the feed any more: when the router (every clone) and
//! every receiver of [`follow`] are dropped.

mod events;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use distribution_shared::ServiceClient;
use distribution_shared::defaults;
use distribution_shared::resolve::Resolver;
use distribution_shared::tokio_rustls::rustls;
use distribution_shared::wire::{ErrorBody, NodeList};
use rand::Rng;
use reqwest::{StatusCode, Url};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::membership::{LoadReport, Member, Membership};
use crate::router::{Router, RouterConfig};
pub use events::{events, events_after};

/// How a remote caller follows the master. `RemoteConfig::default()` gives the documented
/// defaults.
#[derive(Clone)]
pub struct RemoteConfig {
    /// How the router calls the nodes.
    pub router: RouterConfig,
    /// The `wait` of each blocking query, so the longest the load figures go without a refresh
    /// while the node set does not change. Default: the heartbeat interval, 1 s.
    pub load_refresh: Duration,
    /// How long [`connect`] keeps trying to get the master's first answer. Default 5 s.
    pub first_answer_timeout: Duration,
    /// How long connecting to the master, or an answer beyond the query's wait, may take.
    /// Default 5 s.
    pub request_timeout: Duration,
    /// The first pause before asking an unreachable master again; it doubles at each failure
    /// (jittered by +-20 %). Default 100 ms.
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
    pub secret: Option<String>,
    /// TLS to the master's registry API (the cluster CA, and this caller's certificate for
    /// mutual TLS). Default: the router's, `router.tls`, since one cluster CA certifies the
    /// master and the nodes. With TLS a bare `host:port` means `https://host:port`.
    pub master_tls: Option<Arc<rustls::ClientConfig>>,
}

impl RemoteConfig {
    /// This configuration with one cluster secret for the registry and the nodes: whichever
    /// of [`RemoteConfig::secret`] and `router.secret` is set fills the other.
    fn with_one_secret(mut self) -> Self {
        if self.secret.is_none() {
            self.secret = self.router.secret.clone();
        }
        if self.router.secret.is_none() {
            self.router.secret = self.secret.clone();
        }
        self
    }

    /// The TLS settings for the master: [`RemoteConfig::master_tls`], else the router's.
    fn effective_master_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.master_tls
            .clone()
            .or_else(|| self.router.tls.as_ref().map(|tls| tls.config.clone()))
    }
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("router", &self.router)
            .field("load_refresh", &self.load_refresh)
            .field("first_answer_timeout", &self.first_answer_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry_base", &self.retry_base)
            .field("retry_max", &self.retry_max)
            .field("restart_grace", &self.restart_grace)
            .field("max_list_bytes", &self.max_list_bytes)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("master_tls", &self.master_tls.is_some())
            .finish()
    }
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            router: RouterConfig::default(),
            load_refresh: defaults::HEARTBEAT_INTERVAL,
            first_answer_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            restart_grace: defaults::HEARTBEAT_INTERVAL * defaults::TTL_INTERVALS,
            max_list_bytes: 64 * 1024 * 1024,
            secret: None,
            master_tls: None,
        }
    }
}

/// Why [`connect`] or [`follow`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The master's address is not `host:port` or `http://host:port`.
    #[error("invalid master address {master:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        master: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The master gave no usable node list in time.
    #[error("no node list from the master at {url} within {timeout:?}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// How long the caller tried.
        timeout: Duration,
        /// The last failure.
        reason: String,
    },
    /// The master refused to list its nodes (a wrong secret, or not a master at that address).
    #[error("the master at {url} refused to list its nodes ({status}): {message}")]
    Refused {
        /// The URL asked.
        url: String,
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The master's message.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A router over the nodes of the master at `master` (`host:port` or `http://host:port`), with
/// the default [`RemoteConfig`] and the router settings `config`.
///
/// ```no_run
/// # #[tarpc::service] trait Arith { async fn sum(values: Vec<i64>) -> i64; }
/// # distribution_shared::service_client!(ArithClient);
/// # async fn demo() -> anyhow::Result<()> {
/// use distribution_client::{RouterConfig, remote};
/// let router = remote::connect::<ArithClient>("10.0.0.5:3000", RouterConfig::default()).await?;
/// let reply = router
///     .call(|client, ctx| async move { client.sum(ctx, vec![2, 4, 6]).await })
///     .await?;
/// println!("{} from {}", reply.value, reply.node);
/// # Ok(()) }
/// ```
pub async fn connect<C: ServiceClient>(
    master: &str,
    config: RouterConfig,
) -> Result<Router<C>, ConnectError> {
    connect_with(
        master,
        RemoteConfig {
            router: config,
            ..RemoteConfig::default()
        },
    )
    .await
}

/// [`connect`] with every setting.
pub async fn connect_with<C: ServiceClient>(
    master: &str,
    config: RemoteConfig,
) -> Result<Router<C>, ConnectError> {
    let config = config.with_one_secret();
    let feed = follow(master, &config).await?;
    Ok(Router::new(feed, config.router))
}

/// The membership feed alone: waits for the master's first answer, then follows its node list
/// (see the [module docs](self)). The watcher runs until every clone of the receiver is dropped.
///
/// Each [`Membership`] it publishes is a new node set; its `index` is the feed's own version,
/// which grows at every change (the master's index may go back when the master restarts).
pub async fn follow(
    master: &str,
    config: &RemoteConfig,
) -> Result<watch::Receiver<Membership>, ConnectError> {
    let (feed, _task) = spawn_watcher(master, config).await?;
    Ok(feed)
}

async fn spawn_watcher(
    master: &str,
    config: &RemoteConfig,
) -> Result<(watch::Receiver<Membership>, JoinHandle<()>), ConnectError> {
    let tls = config.effective_master_tls();
    let url = nodes_url(master, tls.is_some())?;
    let mut http = reqwest::Client::builder()
        .connect_timeout(config.request_timeout)
        // Names resolved in-process at each new connection (works in an empty image).
        .dns_resolver(Arc::new(Resolver::system()));
    if let Some(tls) = tls {
        http = http.use_preconfigured_tls((*tls).clone());
    }
    let http = http.build().map_err(ConnectError::Client)?;
    let mut watcher = Watcher {
        http,
        url,
        config: config.clone().with_one_secret(),
        loads: HashMap::new(),
        members: Arc::from(Vec::new()),
        version: 0,
        master_index: None,
        grace_until: None,
    };
    let deadline = Instant::now() + config.first_answer_timeout;
    let mut pause = config.retry_base;
    let first = loop {
        let failure = match tokio::time::timeout_at(deadline, watcher.fetch()).await {
            Ok(Ok(list)) => break list,
            // A client error will not change by asking again; an overloaded master (503) may.
            Ok(Err(FetchError::Refused { status, message })) if status.is_client_error() => {
                return Err(ConnectError::Refused {
                    url: watcher.url.to_string(),
                    status,
                    message,
                });
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        if Instant::now() + pause >= deadline {
            return Err(ConnectError::Unreachable {
                url: watcher.url.to_string(),
                timeout: config.first_answer_timeout,
                reason: failure,
            });
        }
        debug!(url = %watcher.url, error = %failure, "master not answering yet; retrying");
        tokio::time::sleep(jittered(pause)).await;
        pause = (pause * 2).min(config.retry_max);
    };
    let first = watcher.apply(first).unwrap_or_default();
    info!(url = %watcher.url, nodes = first.members.len(), "following the master's node list");
    let (tx, rx) = watch::channel(first);
    Ok((rx, tokio::spawn(watcher.run(tx))))
}

/// `http://host:port/v1/nodes` from `host:port` or `http://host:port[/]`; `https` with `tls`.
fn nodes_url(master: &str, tls: bool) -> Result<Url, ConnectError> {
    let invalid = |reason: String| ConnectError::InvalidAddress {
        master: master.to_owned(),
        reason,
    };
    let trimmed = master.trim();
    let base = match (trimmed.contains("://"), tls) {
        (true, _) => trimmed.to_owned(),
        (false, false) => format!("http://{trimmed}"),
        (false, true) => format!("https://{trimmed}"),
    };
    let mut url = Url::parse(&base).map_err(|e| invalid(e.to_string()))?;
    match (url.scheme(), tls) {
        ("http", _) | ("https", true) => {}
        ("https", false) => {
            return Err(invalid(
                "https:// needs TLS settings (RemoteConfig::master_tls or RouterConfig::tls)"
                    .into(),
            ));
        }
        _ => {
            return Err(invalid(
                "the master's scheme must be http:// or https://".into(),
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    let path = format!("{}/v1/nodes", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// Why one request for the node list failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("the master answered {status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the node list is larger than {0} bytes")]
    TooLarge(usize),
    #[error("unreadable node list: {0}")]
    Json(#[from] serde_json::Error),
}

/// The watcher's state: what it last published and what it knows of the master.
struct Watcher {
    http: reqwest::Client,
    url: Url,
    config: RemoteConfig,
    /// One load report per node id, shared with the router's endpoints and updated in place.
    loads: HashMap<Arc<str>, Arc<LoadReport>>,
    /// The node set last published.
    members: Arc<[Member]>,
    /// The feed's version: the `index` of the last published membership.
    version: u64,
    /// The master's index in its last answer; `None` after a failure (ask without one).
    master_index: Option<u64>,
    /// Until when nodes missing from the master's list are kept (after an outage or a restart).
    grace_until: Option<Instant>,
}

impl Watcher {
    async fn run(mut self, tx: watch::Sender<Membership>) {
        let refresh = self.config.load_refresh;
        let mut outage: Option<Instant> = None;
        let mut pause = self.config.retry_base;
        loop {
            let asked = self.master_index;
            let started = Instant::now();
            let answer = tokio::select! {
                _ = tx.closed() => break,
                answer = self.fetch() => answer,
            };
            let idle = match answer {
                Ok(list) => {
                    if let Some(since) = outage.take() {
                        info!(url = %self.url, down_ms = since.elapsed().as_millis() as u64,
                            "master reachable again");
                        self.grace_until = Some(Instant::now() + self.config.restart_grace);
                    }
                    pause = self.config.retry_base;
                    let index = list.index;
                    match self.apply(list) {
                        Some(membership) => {
                            debug!(
                                nodes = membership.members.len(),
                                version = membership.index,
                                master_index = index,
                                "node set changed"
                            );
                            tx.send_replace(membership);
                            Duration::ZERO
                        }
                        // A master that answers an unchanged list early (one without blocking
                        // queries, or one shutting down) is asked again only after the refresh
                        // period, never in a tight loop.
                        None if asked == Some(index) => refresh.saturating_sub(started.elapsed()),
                        None => Duration::ZERO,
                    }
                }
                Err(err) => {
                    if outage.is_none() {
                        warn!(url = %self.url, error = %err, nodes = self.members.len(),
                            "master unreachable; routing on the last known nodes");
                        outage = Some(started);
                        for load in self.loads.values() {
                            load.set(0, load.capacity());
                        }
                    } else {
                        debug!(url = %self.url, error = %err, "master still unreachable");
                    }
                    self.master_index = None;
                    let this = jittered(pause);
                    pause = (pause * 2).min(self.config.retry_max);
                    this
                }
            };
            if !idle.is_zero() {
                tokio::select! {
                    _ = tx.closed() => break,
                    _ = tokio::time::sleep(idle) => {}
                }
            }
        }
        debug!(url = %self.url, "nobody follows the node list any more; watcher stopped");
    }

    /// One request for the list: a blocking query when the master's index is known.
    async fn fetch(&self) -> Result<NodeList, FetchError> {
        let mut request = self.http.get(self.url.clone());
        if let Some(secret) = &self.config.secret {
            request = request.bearer_auth(secret);
        }
        let mut timeout = self.config.request_timeout;
        if let Some(index) = self.master_index {
            let wait = self.config.load_refresh;
            request = request.query(&[
                ("index", index.to_string()),
                ("wait", format!("{}ms", wait.as_millis())),
            ]);
            // The master may add up to wait/16 of jitter.
            timeout += wait + wait / 16;
        }
        let mut response = request.timeout(timeout).send().await?;
        let status = response.status();
        if !status.is_success() {
            let message = match response.json::<ErrorBody>().await {
                Ok(body) => body.error,
                Err(_) => "(no message)".into(),
            };
            return Err(FetchError::Refused { status, message });
        }
        let max = self.config.max_list_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(FetchError::TooLarge(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// Takes in an answer: updates the load reports in place and returns the new membership if
    /// the node set (ids and addresses) changed.
    fn apply(&mut self, list: NodeList) -> Option<Membership> {
        if let Some(known) = self.master_index.filter(|known| list.index < *known) {
            info!(url = %self.url, known, index = list.index,
                "the master's index went back: it restarted; taking its list");
            self.grace_until = Some(Instant::now() + self.config.restart_grace);
        }
        self.master_index = Some(list.index);
        let mut members: Vec<Member> = list
            .nodes
            .iter()
            .map(|node| {
                let load = match self.loads.get(node.id.as_str()) {
                    Some(load) => {
                        load.set(node.in_flight, node.capacity);
                        load.clone()
                    }
                    None => Arc::new(LoadReport::new(node.in_flight, node.capacity)),
                };
                Member {
                    id: node.id.as_str().into(),
                    addr: node.addr.as_str().into(),
                    load,
                }
            })
            .collect();
        let in_grace = self.grace_until.is_some_and(|until| Instant::now() < until);
        if !in_grace {
            self.grace_until = None;
        } else {
            // Linear: one set of the listed ids, one pass over the kept view, one sort.
            let listed: std::collections::HashSet<&str> = members.iter().map(|m| &*m.id).collect();
            let missing: Vec<Member> = self
                .members
                .iter()
                .filter(|old| !listed.contains(&*old.id))
                .cloned()
                .collect();
            drop(listed);
            members.extend(missing);
            members.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        }
        self.loads = members
            .iter()
            .map(|m| (m.id.clone(), m.load.clone()))
            .collect();
        let same = members.len() == self.members.len()
            && members
                .iter()
                .zip(self.members.iter())
                .all(|(a, b)| a.id == b.id && a.addr == b.addr);
        if same && self.version != 0 {
            return None;
        }
        self.version += 1;
        self.members = members.into();
        Some(Membership {
            index: self.version,
            members: self.members.clone(),
        })
    }
}

/// `pause` +-20 %.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use distribution_master::Master;
    use distribution_master::config::MasterConfig;
    use distribution_master::registry::Registration;

    #[test]
    fn one_secret_serves_the_registry_and_the_nodes_and_is_never_shown() {
        let from_remote = RemoteConfig {
            secret: Some("s3cret".into()),
            ..RemoteConfig::default()
        }
        .with_one_secret();
        assert_eq!(from_remote.router.secret.as_deref(), Some("s3cret"));
        let mut from_router = RemoteConfig::default();
        from_router.router.secret = Some("s3cret".into());
        let from_router = from_router.with_one_secret();
        assert_eq!(from_router.secret.as_deref(), Some("s3cret"));
        assert!(!format!("{from_router:?}").contains("s3cret"));
        assert!(format!("{:?}", from_router.router).contains("<redacted>"));
    }

    #[test]
    fn master_addresses_parse() {
        let url = |master, tls| nodes_url(master, tls).map(|u| u.to_string());
        assert_eq!(
            url("127.0.0.1:3000", false).unwrap(),
            "http://127.0.0.1:3000/v1/nodes"
        );
        assert_eq!(
            url("http://m:3000/", false).unwrap(),
            "http://m:3000/v1/nodes"
        );
        assert_eq!(url("m:3000", true).unwrap(), "https://m:3000/v1/nodes");
        assert_eq!(
            url("https://m:3000", true).unwrap(),
            "https://m:3000/v1/nodes"
        );
        assert_eq!(
            url("http://m:3000", true).unwrap(),
            "http://m:3000/v1/nodes"
        );
        for bad in ["", "https://m:3000", "ftp://m", "http://", "m:99999"] {
            assert!(url(bad, false).is_err(), "{bad:?} accepted");
        }
    }

    fn config() -> RemoteConfig {
        RemoteConfig {
            load_refresh: Duration::from_millis(100),
            first_answer_timeout: Duration::from_millis(500),
            ..RemoteConfig::default()
        }
    }

    #[tokio::test]
    async fn watcher_stops_when_nobody_follows() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = Master::start(listener, MasterConfig::default()).unwrap();
        let (feed, task) = spawn_watcher(&master.local_addr().to_string(), &config())
            .await
            .unwrap();
        let copy = feed.clone();
        drop(feed);
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "a receiver is still alive");
        drop(copy);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watcher stops")
            .unwrap();
        master.shutdown().await;
    }

    #[tarpc::service]
    trait Echo {
        async fn echo(text: String) -> String;
    }
    distribution_shared::service_client!(EchoClient);

    #[tokio::test]
    async fn watcher_stops_when_the_router_is_dropped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = Master::start(listener, MasterConfig::default()).unwrap();
        let (feed, task) = spawn_watcher(&master.local_addr().to_string(), &config())
            .await
            .unwrap();
        let router: Router<EchoClient> = Router::new(feed, RouterConfig::default());
        let clone = router.clone();
        drop(router);
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "a router clone is still alive");
        drop(clone);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watcher stops with the router")
            .unwrap();
        master.shutdown().await;
    }

    #[tokio::test]
    async fn load_reports_are_shared_across_answers_and_updated_in_place() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = Master::start(listener, MasterConfig::default()).unwrap();
        let registry = master.registry().clone();
        registry
            .register(Registration {
                id: "a".into(),
                addr: "127.0.0.1:1".into(),
                capacity: 8,
            })
            .unwrap();
        let mut feed = follow(&master.local_addr().to_string(), &config())
            .await
            .unwrap();
        let first = feed.borrow_and_update().clone();
        assert_eq!(first.members.len(), 1);
        let load = first.members[0].load.clone();
        assert_eq!((load.in_flight(), load.capacity()), (0, 8));
        let beat = distribution_shared::wire::Heartbeat {
            in_flight: 5,
            capacity: Some(8),
            served: 0,
        };
        registry.heartbeat("a", &beat).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while load.in_flight() != 5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the load figure is refreshed without a change of the set");
        assert!(
            !feed.has_changed().unwrap(),
            "no new membership for a load update"
        );
        registry
            .register(Registration {
                id: "b".into(),
                addr: "127.0.0.1:2".into(),
                capacity: 8,
            })
            .unwrap();
        let next = tokio::time::timeout(
            Duration::from_secs(5),
            feed.wait_for(|m| m.members.len() == 2),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert!(
            Arc::ptr_eq(&next.members[0].load, &load),
            "same report for a"
        );
        assert!(next.index > first.index);
        master.shutdown().await;
    }

    #[tokio::test]
    async fn connect_fails_when_no_master_answers() {
        // Bind then drop a listener: nothing listens on that port any more.
        let addr = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let err = follow(&addr.to_string(), &config()).await.unwrap_err();
        assert!(
            matches!(err, ConnectError::Unreachable { .. }),
            "unexpected error: {err}"
        );
    }
}
