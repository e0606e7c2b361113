//! The watcher: the task that follows a master's node list and publishes each new node set
//! into the router's feed (see the [module docs](super) for the behaviour): the first answer at
//! start, load figures updated in place, the outage (last view kept, loads zeroed, the next
//! master tried at once, then backoff: the `failover` module), and the restart grace (nodes
//! missing from a restarted or another master's list kept until they re-register).
//!
//! It asks `GET /v1/changes` with its view (the master's epoch, index and load version): the
//! master answers at the next membership event, or after the refresh period with the load
//! figures that changed meanwhile. Only the first answer, an answer after an outage, a master
//! restart (another epoch) or a follower too far behind carry the whole list.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use distribution_shared::registry_client::{FollowerView, RegistryClient, RegistryError};
use distribution_shared::wire::{EventKind, MembershipEvent, NodeChanges, NodeInfo, NodeLoad};
use reqwest::Url;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::failover::Masters;
use super::{ConnectError, RemoteConfig};
use crate::membership::{LoadReport, Member, Membership};

/// Waits for the first answer of one of `masters` (one address or a comma-separated list, tried
/// in order), then spawns the watcher; returns its feed and task.
/// With `service`, it follows that service's nodes only: the master filters the list, the
/// events and the load figures, and a change of another service does not wake it.
pub(crate) async fn spawn_watcher(
    masters: &str,
    config: &RemoteConfig,
    service: Option<&str>,
) -> Result<(watch::Receiver<Membership>, JoinHandle<()>), ConnectError> {
    let config = config.clone().with_one_secret();
    let masters = Masters::new(config.registries(masters)?, config.retry_backoff());
    let mut watcher = Watcher {
        masters,
        service: service.map(str::to_owned),
        config,
        loads: HashMap::new(),
        members: Arc::from(Vec::new()),
        version: 0,
        view: None,
        grace_until: None,
    };
    let timeout = watcher.config.first_answer_timeout;
    let deadline = Instant::now() + timeout;
    // Each master's share of the time: one that accepts the connection and never answers (a
    // paused process) must not use up the whole timeout before the next is asked.
    let share = attempt_share(timeout, watcher.masters.len());
    let first = loop {
        let attempt = deadline.min(Instant::now() + share);
        let failure = match tokio::time::timeout_at(attempt, watcher.fetch()).await {
            Ok(Ok(list)) => break list,
            // A client error will not change by asking again; an overloaded master (503) may.
            Ok(Err(RegistryError::Refused { status, message })) if status.is_client_error() => {
                return Err(ConnectError::Refused {
                    url: watcher.url().to_string(),
                    status,
                    message,
                });
            }
            Ok(Err(err)) => Some(err),
            Err(_) => None,
        };
        let tried = watcher.url();
        let pause = watcher.masters.failed();
        if Instant::now() + pause >= deadline {
            let urls: Vec<String> = watcher
                .masters
                .all()
                .iter()
                .map(|m| m.changes_url().to_string())
                .collect();
            return Err(ConnectError::Unreachable {
                url: urls.join(", "),
                timeout,
                last: failure,
            });
        }
        match &failure {
            Some(err) => {
                debug!(url = %tried, error = %err, next = %watcher.url(), "master not answering yet; retrying")
            }
            None => {
                debug!(url = %tried, next = %watcher.url(), "master not answering yet (timed out); retrying")
            }
        }
        tokio::time::sleep(pause).await;
    };
    watcher.masters.succeeded();
    let first = watcher.apply(first).unwrap_or_default();
    info!(url = %watcher.url(), nodes = first.members.len(), "following the master's node list");
    let (tx, rx) = watch::channel(first);
    Ok((rx, tokio::spawn(watcher.run(tx))))
}

/// How long one first request may take at `connect` with `masters` masters: an equal share of
/// `timeout` (all of it with one master), at least [`MIN_ATTEMPT`].
fn attempt_share(timeout: Duration, masters: usize) -> Duration {
    let masters = u32::try_from(masters.max(1)).unwrap_or(u32::MAX);
    (timeout / masters).max(MIN_ATTEMPT)
}

/// The shortest first request at `connect`, however many masters share its timeout.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// The watcher's state: what it last published and what it knows of the master.
struct Watcher {
    /// The masters, the one followed now, and the pauses between rounds of failures.
    masters: Masters<RegistryClient>,
    /// The one service followed, or every node.
    service: Option<String>,
    config: RemoteConfig,
    /// One load report per node id, shared with the router's endpoints and updated in place.
    loads: HashMap<Arc<str>, Arc<LoadReport>>,
    /// The node set last published.
    members: Arc<[Member]>,
    /// The feed's version: the `index` of the last published membership.
    version: u64,
    /// What the watcher has of the master's registry; `None` before the first answer and after
    /// a failure (then it asks for the whole list).
    view: Option<FollowerView>,
    /// Until when nodes missing from the master's list are kept (after an outage or a restart).
    grace_until: Option<Instant>,
}

impl Watcher {
    /// The URL of the node list followed now, for the logs.
    fn url(&self) -> Url {
        self.masters.current().changes_url()
    }

    async fn run(mut self, tx: watch::Sender<Membership>) {
        let refresh = self.config.load_refresh;
        let mut outage: Option<Instant> = None;
        loop {
            let asked = self.view;
            let started = Instant::now();
            let answer = tokio::select! {
                _ = tx.closed() => break,
                answer = self.fetch() => answer,
            };
            let idle = match answer {
                Ok(changes) => {
                    if let Some(since) = outage.take() {
                        info!(url = %self.url(), down_ms = since.elapsed().as_millis() as u64,
                            "following the master's node list again");
                        self.grace_until = Some(Instant::now() + self.config.restart_grace);
                    }
                    self.masters.succeeded();
                    let index = changes.index;
                    match self.apply(changes) {
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
                        None if asked.is_some_and(|v| v.index == index) => {
                            refresh.saturating_sub(started.elapsed())
                        }
                        None => Duration::ZERO,
                    }
                }
                Err(err) => {
                    let failed = self.url();
                    // The next master is asked at once; a pause only after a whole round.
                    let pause = self.masters.failed();
                    if outage.is_none() {
                        warn!(url = %failed, error = %err, nodes = self.members.len(),
                            next = %self.url(),
                            "master unreachable; routing on the last known nodes, asking the next master");
                        outage = Some(started);
                        for load in self.loads.values() {
                            load.set(0, load.capacity());
                        }
                    } else {
                        debug!(url = %failed, error = %err, next = %self.url(), "master still unreachable");
                    }
                    self.view = None;
                    pause
                }
            };
            if !idle.is_zero() {
                tokio::select! {
                    _ = tx.closed() => break,
                    _ = tokio::time::sleep(idle) => {}
                }
            }
        }
        debug!(url = %self.url(), "nobody follows the node list any more; watcher stopped");
    }

    /// One request for what changed: a blocking query when the watcher has a view, else the
    /// whole list.
    ///
    /// When a restart grace is over, the whole list once more: the nodes kept through the grace
    /// that never came back leave the view then (no event will ever name them).
    async fn fetch(&self) -> Result<NodeChanges, RegistryError> {
        let (wait, max) = (self.config.load_refresh, self.config.max_list_bytes);
        let grace_over = self
            .grace_until
            .is_some_and(|until| Instant::now() >= until);
        let view = if grace_over { None } else { self.view };
        let service = self.service.as_deref();
        self.masters
            .current()
            .changes(view, service, wait, max)
            .await
    }

    /// Takes in an answer: updates the load reports in place and returns the new membership if
    /// the node set (ids and addresses) changed.
    fn apply(&mut self, changes: NodeChanges) -> Option<Membership> {
        if self.view.is_some_and(|v| v.epoch != changes.epoch) {
            info!(url = %self.url(), "the master restarted (another epoch); taking its list");
            self.grace_until = Some(Instant::now() + self.config.restart_grace);
        }
        self.view = Some(FollowerView {
            epoch: changes.epoch,
            index: changes.index,
            loads: changes.loads_index,
        });
        match changes.full {
            Some(nodes) => self.apply_full(nodes),
            None => self.apply_delta(&changes.events, &changes.loads),
        }
    }

    /// Applies the changes since the last answer: load figures in place, then the membership
    /// events in order. Costs what changed, plus one pass over the node set when it changed.
    fn apply_delta(
        &mut self,
        events: &[MembershipEvent],
        loads: &[NodeLoad],
    ) -> Option<Membership> {
        let mut fresh: HashMap<&str, &NodeLoad> = HashMap::new();
        for load in loads {
            match self.loads.get(load.id.as_str()) {
                Some(report) => report.set(load.in_flight, load.capacity),
                None => {
                    fresh.insert(load.id.as_str(), load);
                }
            }
        }
        let changes_set = events.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::Join
                    | EventKind::Leave
                    | EventKind::Eviction
                    | EventKind::Replacement
                    | EventKind::Moved
            )
        });
        if !changes_set {
            events.iter().for_each(|e| self.mark_maintenance(e));
            return None;
        }
        let mut set: std::collections::BTreeMap<Arc<str>, Member> = self
            .members
            .iter()
            .map(|m| (m.id.clone(), m.clone()))
            .collect();
        for event in events {
            match event.kind {
                EventKind::Join | EventKind::Moved => {
                    let id: Arc<str> = event.node.as_str().into();
                    let load = self.loads.get(&id).cloned().unwrap_or_else(|| {
                        let figures = fresh.get(event.node.as_str());
                        Arc::new(LoadReport::new(
                            figures.map_or(0, |f| f.in_flight),
                            figures.map_or(1, |f| f.capacity),
                        ))
                    });
                    self.loads.insert(id.clone(), load.clone());
                    let member = Member {
                        id: id.clone(),
                        addr: event.addr.as_str().into(),
                        service: event.service.as_str().into(),
                        tags: event.tags.iter().map(|t| t.as_str().into()).collect(),
                        load,
                    };
                    set.insert(id, member);
                }
                EventKind::Leave | EventKind::Eviction | EventKind::Replacement => {
                    set.remove(event.node.as_str());
                    self.loads.remove(event.node.as_str());
                }
                _ => self.mark_maintenance(event),
            }
        }
        self.publish(set.into_values().collect())
    }

    /// Follows a node going into maintenance or out of it: its shared report is flagged in
    /// place, so routers stop (or resume) picking it at their next call.
    fn mark_maintenance(&self, event: &MembershipEvent) {
        let on = match event.kind {
            EventKind::Maintenance => true,
            EventKind::Resumed => false,
            _ => return,
        };
        if let Some(load) = self.loads.get(event.node.as_str()) {
            load.set_maintenance(on);
        }
    }

    /// Replaces the view by the master's whole list (keeping, during a grace period, the nodes
    /// it does not list yet).
    fn apply_full(&mut self, nodes: Vec<NodeInfo>) -> Option<Membership> {
        let mut members: Vec<Member> = nodes
            .iter()
            .map(|node| {
                let load = match self.loads.get(node.id.as_str()) {
                    Some(load) => {
                        load.set(node.in_flight, node.capacity);
                        load.clone()
                    }
                    None => Arc::new(LoadReport::new(node.in_flight, node.capacity)),
                };
                load.set_maintenance(node.maintenance.is_some());
                Member {
                    id: node.id.as_str().into(),
                    addr: node.addr.as_str().into(),
                    service: node.service.as_str().into(),
                    tags: node.tags.iter().map(|t| t.as_str().into()).collect(),
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
        self.publish(members)
    }

    /// `members` (sorted by id) as the new membership, unless the ids, addresses, services
    /// and tags are the ones published already.
    fn publish(&mut self, members: Vec<Member>) -> Option<Membership> {
        let same = members.len() == self.members.len()
            && members.iter().zip(self.members.iter()).all(|(a, b)| {
                a.id == b.id && a.addr == b.addr && a.service == b.service && a.tags == b.tags
            });
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
