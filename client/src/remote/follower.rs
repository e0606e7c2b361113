//! The watcher: the task that follows the master's node list with blocking queries and
//! publishes each new node set into the router's feed (see the [module docs](super) for the
//! behaviour): the first answer at start, load figures updated in place, the outage (last view
//! kept, loads zeroed, backoff), and the restart grace (nodes missing from a restarted master's
//! list kept until they re-register).

use distribution_shared::backoff::Backoff;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use distribution_shared::registry_client::{BlockingQuery, RegistryClient, RegistryError};
use distribution_shared::wire::NodeList;
use reqwest::Url;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{ConnectError, RemoteConfig};
use crate::membership::{LoadReport, Member, Membership};

/// Waits for the master's first answer, then spawns the watcher; returns its feed and task.
pub(crate) async fn spawn_watcher(
    master: &str,
    config: &RemoteConfig,
) -> Result<(watch::Receiver<Membership>, JoinHandle<()>), ConnectError> {
    let config = config.clone().with_one_secret();
    let registry = config.registry(master)?;
    let mut watcher = Watcher {
        url: registry.nodes_url(),
        registry,
        config,
        loads: HashMap::new(),
        members: Arc::from(Vec::new()),
        version: 0,
        master_index: None,
        grace_until: None,
    };
    let timeout = watcher.config.first_answer_timeout;
    let deadline = Instant::now() + timeout;
    let mut backoff = watcher.retry_backoff();
    let first = loop {
        let failure = match tokio::time::timeout_at(deadline, watcher.fetch()).await {
            Ok(Ok(list)) => break list,
            // A client error will not change by asking again; an overloaded master (503) may.
            Ok(Err(RegistryError::Refused { status, message })) if status.is_client_error() => {
                return Err(ConnectError::Refused {
                    url: watcher.url.to_string(),
                    status,
                    message,
                });
            }
            Ok(Err(err)) => Some(err),
            Err(_) => None,
        };
        let pause = backoff.next_pause();
        if Instant::now() + pause >= deadline {
            return Err(ConnectError::Unreachable {
                url: watcher.url.to_string(),
                timeout,
                last: failure,
            });
        }
        match &failure {
            Some(err) => {
                debug!(url = %watcher.url, error = %err, "master not answering yet; retrying")
            }
            None => debug!(url = %watcher.url, "master not answering yet (timed out); retrying"),
        }
        tokio::time::sleep(pause).await;
    };
    let first = watcher.apply(first).unwrap_or_default();
    info!(url = %watcher.url, nodes = first.members.len(), "following the master's node list");
    let (tx, rx) = watch::channel(first);
    Ok((rx, tokio::spawn(watcher.run(tx))))
}

/// The watcher's state: what it last published and what it knows of the master.
struct Watcher {
    registry: RegistryClient,
    /// The node list's URL, for the logs.
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
    /// The pauses between tries at an unreachable master: [`RemoteConfig::retry_base`] doubling
    /// to [`RemoteConfig::retry_max`], jittered so that callers cut off together do not retry
    /// together.
    fn retry_backoff(&self) -> Backoff {
        Backoff::new(self.config.retry_base, self.config.retry_max).with_jitter()
    }

    async fn run(mut self, tx: watch::Sender<Membership>) {
        let refresh = self.config.load_refresh;
        let mut outage: Option<Instant> = None;
        let mut backoff = self.retry_backoff();
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
                    backoff.reset();
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
                    backoff.next_pause()
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
    async fn fetch(&self) -> Result<NodeList, RegistryError> {
        let query = self.master_index.map(|index| BlockingQuery {
            index,
            wait: self.config.load_refresh,
        });
        self.registry.list(query, self.config.max_list_bytes).await
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
