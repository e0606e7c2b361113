//! What readers get: the whole list ([`Registry::list`], `GET /v1/nodes`), and what changed since
//! a follower's view: the membership events after its index (from the
//! change feed, [`crate::events`]) and the nodes whose load changed after its load version
//! (from the [`LoadLog`]), or the whole list when it has no usable view. This is what
//! `GET /v1/changes` answers, so that a remote caller following 100,000 nodes receives the few
//! that changed each second instead of all of them.
//!
//! Everything is collected under the registry's lock as cheap clones (`Arc`s of events, ids
//! and figures); sorting and serializing happen after it is released.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use distribution_shared::wire::{
    MembershipEvent, NodeInfo, NodeList, NodeLoad, NodeState, NodeTotals,
};
use tokio::time::Instant;

use super::{Entry, Registry, State};

/// How many load changes the log keeps: a follower whose load version is older gets every
/// node's figures (once), as after a restart. 64 Ki entries of an id each: at 10,000 heartbeats
/// a second that change a node's load, about 6 s of history, six follower refreshes.
pub const LOAD_HISTORY: usize = 65_536;

/// The ring of recent load changes: `(version, node id)`, one per registration or heartbeat
/// that changed a node's figures (calls in flight or capacity).
#[derive(Debug, Default)]
pub(crate) struct LoadLog {
    version: u64,
    ring: VecDeque<(u64, Arc<str>)>,
}

impl LoadLog {
    /// Records that `id`'s figures changed.
    pub(crate) fn record(&mut self, id: &Arc<str>) {
        self.version += 1;
        if self.ring.len() == LOAD_HISTORY {
            self.ring.pop_front();
        }
        self.ring.push_back((self.version, id.clone()));
    }

    /// The current version.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The ids whose figures changed after `version`, each once; `None` when the log no longer
    /// reaches back that far, or `version` is from the future (another master process).
    fn since(&self, version: u64) -> Option<HashSet<Arc<str>>> {
        if version > self.version {
            return None;
        }
        let oldest = self.ring.front().map_or(self.version + 1, |(v, _)| *v);
        if version + 1 < oldest {
            return None;
        }
        Some(
            self.ring
                .iter()
                .rev()
                .take_while(|(v, _)| *v > version)
                .map(|(_, id)| id.clone())
                .collect(),
        )
    }
}

/// A follower's view, as it asks `GET /v1/changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The master process the view came from.
    pub epoch: u64,
    /// The registry index the follower has.
    pub index: u64,
    /// The load version the follower has.
    pub loads: u64,
}

/// The answer to a [`View`] (see [`distribution_shared::wire::NodeChanges`]).
#[derive(Debug, Clone)]
pub struct Changes {
    /// This master process's epoch.
    pub epoch: u64,
    /// The index after these changes.
    pub index: u64,
    /// The load version after these changes.
    pub loads_index: u64,
    /// The whole list (sorted by id) when the view was unusable.
    pub full: Option<Vec<NodeInfo>>,
    /// The membership events after the view's index.
    pub events: Vec<Arc<MembershipEvent>>,
    /// The figures of the nodes whose load changed after the view's load version.
    pub loads: Vec<NodeLoad>,
}

/// Which nodes a reader asks for: one service's, those carrying a tag, or all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Only the nodes of this service.
    pub service: Option<String>,
    /// Only the nodes carrying this tag.
    pub tag: Option<String>,
}

impl Filter {
    fn admits(&self, entry: &Entry) -> bool {
        self.service.as_deref().is_none_or(|s| *entry.service == *s)
            && self
                .tag
                .as_deref()
                .is_none_or(|t| entry.tags.iter().any(|mine| **mine == *t))
    }
}

impl Registry {
    /// The registry's contents, sorted by id, with ages measured at `now`. Its index is the last
    /// published one: a blocking query on it answers when the next snapshot is published.
    pub fn list(&self, now: Instant) -> NodeList {
        self.list_filtered(now, &Filter::default())
    }

    /// [`Registry::list`] of the nodes `filter` admits. With a service, the index is that
    /// service's (the index of its last change).
    pub fn list_filtered(&self, now: Instant, filter: &Filter) -> NodeList {
        self.list_first(now, filter, None)
    }

    /// [`Registry::list_filtered`], with `limit`: only the first `limit` nodes by id, and in
    /// `total` the sums over every node the filter admits. Only the nodes listed are turned
    /// into [`NodeInfo`]s (a status page of 100,000 nodes asks for 500).
    pub fn list_first(&self, now: Instant, filter: &Filter, limit: Option<usize>) -> NodeList {
        let (index, mut nodes, degraded) = {
            let state = self.lock();
            let index = match &filter.service {
                Some(service) => state.services.index_of(service),
                None => state.published,
            };
            let degraded = state.preservation.reason();
            (index, listed(&state, now, filter), degraded)
        };
        // Sorted and built after the lock is released: heartbeats do not wait for it.
        nodes.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let total = limit.map(|limit| {
            let total = totals(&nodes);
            nodes.truncate(limit);
            total
        });
        NodeList {
            index,
            nodes: nodes.into_iter().map(Listed::info).collect(),
            degraded,
            total,
        }
    }

    /// One node as the API lists it, its age measured at `now`.
    pub(super) fn info_of(&self, e: &Entry, now: Instant) -> NodeInfo {
        Listed::of(e, now).info()
    }

    /// This master process's epoch: random, so that a follower notices a restart even when the
    /// new process's index has grown past the old one's.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    /// What changed since `view` (`None`: the follower has no view: the whole list), of the
    /// nodes `filter` admits.
    pub fn changes_since(&self, view: Option<View>, filter: &Filter) -> Changes {
        let now = Instant::now();
        let state = self.lock();
        let same_process = view.filter(|v| v.epoch == self.shared.epoch);
        // An index from the future of this process is no view (a forged or confused follower):
        // the whole list, rather than the ring's events, which it may never have seen.
        let same_process = same_process.filter(|v| v.index <= state.index);
        let since = same_process.map(|v| state.events.set_changes_since(v.index));
        let membership = match since {
            Some(since) if !since.missed => Ok(since
                .events
                .into_iter()
                .filter(|e| filter.service.as_deref().is_none_or(|s| e.service == s))
                .collect()),
            _ => Err(listed(
                &state,
                now,
                &Filter {
                    tag: None,
                    ..filter.clone()
                },
            )),
        };
        let changed_loads = same_process.and_then(|v| state.loads.since(v.loads));
        let loads = match (&membership, changed_loads) {
            // The whole list carries every node's figures already.
            (Err(_), _) => Vec::new(),
            (Ok(_), Some(ids)) => ids
                .iter()
                .filter_map(|id| state.nodes.get(&**id))
                .filter(|e| filter.admits(e))
                .map(load_of)
                .collect(),
            (Ok(_), None) => state
                .nodes
                .values()
                .filter(|e| filter.admits(e))
                .map(load_of)
                .collect(),
        };
        let (index, loads_index) = (state.index, state.loads.version());
        drop(state);
        let loads = loads
            .into_iter()
            .map(|(id, in_flight, capacity)| NodeLoad {
                id: id.to_string(),
                in_flight,
                capacity,
            })
            .collect();
        let (full, events) = match membership {
            Ok(events) => (None, events),
            Err(listed) => {
                let mut infos: Vec<NodeInfo> = listed.into_iter().map(Listed::info).collect();
                infos.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                (Some(infos), Vec::new())
            }
        };
        Changes {
            epoch: self.shared.epoch,
            index,
            loads_index,
            full,
            events,
            loads,
        }
    }
}

/// Every node `filter` admits, copied for listing (see [`Listed`]), unsorted.
fn listed(state: &State, now: Instant, filter: &Filter) -> Vec<Listed> {
    state
        .nodes
        .values()
        .filter(|e| filter.admits(e))
        .map(|e| Listed::of(e, now))
        .collect()
}

/// The sums over `nodes` (see [`NodeTotals`]).
fn totals(nodes: &[Listed]) -> NodeTotals {
    nodes.iter().fold(NodeTotals::default(), |mut t, n| {
        t.nodes += 1;
        t.up += usize::from(!n.late);
        t.maintenance += usize::from(n.maintenance.is_some());
        t.in_flight += u64::from(n.in_flight);
        t.capacity += u64::from(n.capacity);
        t.served += n.served;
        t
    })
}

/// One entry as the API lists it, copied under the registry's lock as reference counts and
/// numbers; [`Listed::info`] builds its strings after the lock is released, so that heartbeats
/// do not wait for a whole list's allocations (100,000 nodes: about a million strings).
struct Listed {
    id: Arc<str>,
    addr: Arc<str>,
    service: Arc<str>,
    tags: Arc<[Arc<str>]>,
    meta: Arc<BTreeMap<String, String>>,
    /// Rare: allocated under the lock.
    maintenance: Option<String>,
    late: bool,
    age: Duration,
    in_flight: u32,
    capacity: u32,
    served: u64,
}

impl Listed {
    fn of(e: &Entry, now: Instant) -> Self {
        let age = now.saturating_duration_since(e.last_seen);
        Self {
            id: e.id.clone(),
            addr: e.addr.clone(),
            service: e.service.clone(),
            tags: e.tags.clone(),
            meta: e.meta.clone(),
            maintenance: e.maintenance.reason().map(str::to_owned),
            late: age > e.terms.late_after(),
            age,
            in_flight: e.load.in_flight(),
            capacity: e.load.capacity(),
            served: e.served,
        }
    }

    fn info(self) -> NodeInfo {
        NodeInfo {
            id: self.id.to_string(),
            addr: self.addr.to_string(),
            state: if self.late {
                NodeState::Late
            } else {
                NodeState::Up
            },
            in_flight: self.in_flight,
            capacity: self.capacity,
            served: self.served,
            last_heartbeat_ms: self.age.as_millis() as u64,
            service: self.service.to_string(),
            tags: self.tags.iter().map(|t| t.to_string()).collect(),
            meta: (*self.meta).clone(),
            maintenance: self.maintenance,
        }
    }
}

/// A node's load figures, copied under the registry's lock (its id as a reference count);
/// [`NodeLoad`] is built after the lock is released.
fn load_of(entry: &super::Entry) -> (Arc<str>, u32, u32) {
    (
        entry.id.clone(),
        entry.load.in_flight(),
        entry.load.capacity(),
    )
}
