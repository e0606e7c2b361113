//! The registry: which nodes are alive, where they listen, which service they serve, and how
//! loaded they are.
//!
//! Each node is one `Entry` (`entry.rs`); services and their per-service index are in
//! `services.rs`, maintenance in `maintenance.rs`, lease terms in `terms.rs`, what readers get
//! (lists, changes since a view) in `changes.rs`, and how snapshots go out in `publish.rs`.
//!
//! [`Registry`] is a cheap-to-clone handle around one `parking_lot::Mutex` (no poisoning) that is never held across
//! an `.await`. Every change of the node set bumps the registry's index and publishes a new
//! [`Membership`] snapshot; heartbeats only renew leases and update load figures in place.
//! Expired leases are removed by [`Registry::evict_expired`], which the lease reaper
//! (`lease.rs`) calls on a timer.
//!
//! A snapshot costs time in proportion to the number of nodes, so a large registry does not
//! publish one per change: above [`INLINE_PUBLISH_MAX`] nodes, and when the publisher task runs
//! ([`Registry::run_publisher`], started by the master), changes are coalesced and published by
//! that task, spaced by ten times what the last snapshot took (at least 10 ms). Otherwise 100,000
//! nodes registering (a master restart) would cost 100,000 snapshots of up to 100,000 members.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use distribution_shared::wire::{EventKind, Heartbeat, Lease};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::info;

use crate::config::MasterConfig;
use crate::observe;

mod changes;
mod entry;
pub(crate) mod feed;
mod maintenance;
mod preservation;
mod publish;
mod services;
mod terms;

use changes::LoadLog;
pub use changes::{Changes, Filter, LOAD_HISTORY, View};
use distribution_client::membership::{LoadReport, Membership};
pub use entry::Registration;
use entry::{Entry, remove};
use feed::{EventLog, Since, Subject};
use maintenance::Maintenance;
use services::ServiceIndex;
use terms::Policy;

/// Up to this many nodes, every change of the node set is published at once, by the request that
/// made it; above, by the publisher task when it runs (see the module's documentation).
pub const INLINE_PUBLISH_MAX: usize = 1024;

/// Why the registry refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No node with this id is registered (it was evicted, deregistered, or the master restarted).
    #[error("node `{0}` is not registered")]
    UnknownNode(String),
    /// The registry already holds its maximum number of nodes.
    #[error("the registry is full ({0} nodes)")]
    Full(usize),
}

/// A handle to the registry; clones share the same nodes.
#[derive(Debug, Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    membership: watch::Sender<Membership>,
    /// The lease terms, scaled with the registry's size (see `terms`).
    terms: Policy,
    max_nodes: usize,
    /// Wakes the publisher task after a change it must publish.
    publisher: Notify,
    /// Whether the publisher task runs (otherwise every change is published at once).
    deferred: AtomicBool,
    /// This process's random id (see [`Registry::epoch`]).
    epoch: u64,
}

#[derive(Debug)]
struct State {
    /// The change feed (see [`crate::events`]): written under this lock by each change.
    events: EventLog,
    /// Which nodes' load figures changed, for followers that ask for changes only.
    loads: LoadLog,
    nodes: HashMap<String, Entry>,
    /// Which id holds each address, so a node restarted under a new id replaces its old entry.
    by_addr: HashMap<String, String>,
    /// The services with nodes, and the index of each one's last change.
    services: ServiceIndex,
    index: u64,
    /// The index of the last published snapshot (what `list` reports).
    published: u64,
    /// Whether changes wait for the publisher task.
    dirty: bool,
    /// Renewals counted against those expected: evictions stop when most are missing.
    preservation: preservation::Preservation,
}

impl Registry {
    /// An empty registry with the lease terms and limits of `config`.
    pub fn new(config: &MasterConfig) -> Self {
        let (membership, _) = watch::channel(Membership::default());
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    events: EventLog::new(),
                    loads: LoadLog::default(),
                    nodes: HashMap::new(),
                    by_addr: HashMap::new(),
                    services: ServiceIndex::default(),
                    index: 0,
                    published: 0,
                    dirty: false,
                    preservation: preservation::Preservation::new(config),
                }),
                membership,
                terms: Policy::new(config),
                max_nodes: config.max_nodes,
                publisher: Notify::new(),
                deferred: AtomicBool::new(false),
                epoch: rand::random(),
            }),
        }
    }

    /// Follows the node set: the receiver sees a new [`Membership`] at every change.
    pub fn subscribe(&self) -> watch::Receiver<Membership> {
        self.shared.membership.subscribe()
    }

    /// The events after `index` that the change feed still holds (see [`crate::events`]).
    pub fn events_since(&self, index: u64) -> Since {
        self.lock().events.since(index)
    }

    /// A receiver of the newest event's index: it changes at every event.
    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.lock().events.subscribe()
    }

    /// The registry's current version.
    pub fn index(&self) -> u64 {
        self.lock().index
    }

    /// Registers a node, or renews it when the same id registers again from the same address.
    ///
    /// A different node previously registered on the same address is replaced: it was the same
    /// process before a restart, and it cannot answer there any more.
    pub fn register(&self, reg: Registration) -> Result<Lease, RegistryError> {
        let now = Instant::now();
        let mut state = self.lock();
        let state = &mut *state;
        let terms = self.shared.terms.for_size(state.nodes.len() + 1);
        state.preservation.renewed(now);
        let mut changed = false;
        if let Some(old) = state.by_addr.get(&reg.addr).filter(|old| **old != reg.id) {
            let old = old.clone();
            if let Some(entry) = remove(state, &old) {
                info!(node = %old, addr = %reg.addr, by = %reg.id, "node replaced");
                let reason = format!("replaced by {} on the same address", reg.id);
                record(state, EventKind::Replacement, &entry.subject(), reason);
                changed = true;
            }
        }
        if state.nodes.get(&reg.id).is_some_and(|e| !e.describes(&reg))
            && let Some(entry) = remove(state, &reg.id)
        {
            // Another service, tags or meta: the old node leaves and a new one joins, so that
            // every follower rebuilds it (a router of the old service must drop it).
            info!(node = %reg.id, service = %reg.service, "node registered again as another");
            let reason = format!("registered again as service {}", reg.service);
            record(state, EventKind::Leave, &entry.subject(), reason);
            changed = true;
        }
        match state.nodes.get_mut(&reg.id) {
            Some(entry) => {
                let mut event = None;
                if *entry.addr != *reg.addr {
                    info!(node = %reg.id, old_addr = %entry.addr, addr = %reg.addr, "node moved");
                    let reason = format!("registered again from {} (was {})", reg.addr, entry.addr);
                    state.by_addr.remove(&*entry.addr);
                    entry.addr = reg.addr.as_str().into();
                    event = Some((EventKind::Moved, reason));
                } else if entry.late {
                    event = Some((EventKind::Back, "registered again".to_owned()));
                }
                entry.late = false;
                entry.last_seen = now;
                entry.terms = terms;
                if entry.load.capacity() != reg.capacity {
                    entry.load.set(entry.load.in_flight(), reg.capacity);
                    state.loads.record(&entry.id);
                }
                if let Some((kind, reason)) = event {
                    let subject = entry.subject();
                    record(state, kind, &subject, reason);
                    changed = true;
                }
            }
            None => {
                if state.nodes.len() >= self.shared.max_nodes {
                    return Err(RegistryError::Full(self.shared.max_nodes));
                }
                let entry = Entry {
                    addr: reg.addr.as_str().into(),
                    id: reg.id.as_str().into(),
                    service: reg.service.as_str().into(),
                    tags: reg.tags.iter().map(|t| t.as_str().into()).collect(),
                    meta: Arc::new(reg.meta.clone()),
                    maintenance: Maintenance::default(),
                    served: 0,
                    last_seen: now,
                    load: Arc::new(LoadReport::new(0, reg.capacity)),
                    late: false,
                    terms,
                };
                state.loads.record(&entry.id);
                let subject = entry.subject();
                state.nodes.insert(reg.id.clone(), entry);
                info!(node = %reg.id, addr = %reg.addr, service = %reg.service, capacity = reg.capacity, "node joined");
                let reason = format!("registered, capacity {}", reg.capacity);
                record(state, EventKind::Join, &subject, reason);
                changed = true;
            }
        }
        changed |= maintenance::update(state, &reg.id, |m| m.node = reg.maintenance.clone());
        state.by_addr.insert(reg.addr.clone(), reg.id.clone());
        if changed {
            self.publish(state);
        }
        Ok(terms.lease(&reg.id, &reg.addr))
    }

    /// Renews a node's lease and records the load it reports.
    pub fn heartbeat(&self, id: &str, beat: &Heartbeat) -> Result<Lease, RegistryError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let terms = self.shared.terms.for_size(state.nodes.len());
        let entry = state
            .nodes
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownNode(id.to_owned()))?;
        entry.last_seen = Instant::now();
        state.preservation.renewed(entry.last_seen);
        entry.terms = terms;
        entry.served = beat.served;
        let capacity = beat.capacity.unwrap_or_else(|| entry.load.capacity());
        let changed = (beat.in_flight, capacity) != (entry.load.in_flight(), entry.load.capacity());
        let addr = entry.addr.clone();
        if changed {
            entry.load.set(beat.in_flight, capacity);
            state.loads.record(&entry.id);
        }
        let mut event = false;
        if entry.late {
            // A heartbeat is an event only when the node's state changes.
            entry.late = false;
            info!(node = %id, addr = %addr, "node back");
            let subject = entry.subject();
            record(state, EventKind::Back, &subject, "heartbeat arrived".into());
            event = true;
        }
        if state.nodes[id].maintenance.node != beat.maintenance {
            event |= maintenance::update(state, id, |m| m.node = beat.maintenance.clone());
        }
        if event {
            self.publish(state);
        }
        drop(guard);
        Ok(terms.lease(id, &addr))
    }

    /// Removes a node that is leaving. Returns whether it was registered.
    pub fn deregister(&self, id: &str) -> bool {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(entry) = remove(state, id) else {
            return false;
        };
        info!(node = %id, addr = %entry.addr, "node left");
        record(
            state,
            EventKind::Leave,
            &entry.subject(),
            "deregistered".into(),
        );
        self.publish(state);
        true
    }

    /// Removes every node whose last heartbeat is older than the TTL at `now`, and marks late
    /// those one and a half intervals overdue (a `late` event each); returns the evicted ids.
    /// Also sets the nodes-by-state gauge, since it looks at every node anyway.
    pub fn evict_expired(&self, now: Instant) -> Vec<String> {
        let mut state = self.lock();
        let mut expired = Vec::new();
        let mut turned_late = Vec::new();
        let mut late = 0usize;
        let mut tally = preservation::Tally::default();
        for (id, entry) in state.nodes.iter_mut() {
            let silent = now.saturating_duration_since(entry.last_seen);
            tally.add(&entry.terms, silent);
            if silent > entry.terms.ttl {
                expired.push(id.clone());
            } else if silent > entry.terms.late_after() {
                late += 1;
                if !entry.late {
                    entry.late = true;
                    turned_late.push((entry.subject(), silent));
                }
            }
        }
        if !preservation::allows_eviction(&mut state, now, &tally) {
            late += expired.len(); // held back: listed late
            expired.clear();
        }
        for (node, silent) in &turned_late {
            let reason = format!("no heartbeat for {} ms", silent.as_millis());
            info!(node = %node.id, addr = %node.addr, silent_ms = silent.as_millis() as u64, "node late");
            record(&mut state, EventKind::Late, node, reason);
        }
        for id in &expired {
            if let Some(entry) = remove(&mut state, id) {
                let silent = now.saturating_duration_since(entry.last_seen);
                info!(node = %id, addr = %entry.addr, silent_ms = silent.as_millis() as u64, "node evicted");
                let reason = format!("no heartbeat for {} ms", silent.as_millis());
                record(&mut state, EventKind::Eviction, &entry.subject(), reason);
            }
        }
        if !expired.is_empty() || !turned_late.is_empty() {
            self.publish(&mut state);
        }
        let up = state.nodes.len() - late;
        metrics::gauge!(observe::NODES, "state" => "up").set(up as f64);
        metrics::gauge!(observe::NODES, "state" => "late").set(late as f64);
        expired
    }

    /// How many nodes are registered.
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Whether no node is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured heartbeat interval (what small registries hand out; see
    /// [`Registry::lease_terms`] for the scaled one).
    pub fn interval(&self) -> Duration {
        self.shared.terms.base().interval
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock()
    }
}

/// Records one change of the node set: bumps the index, appends the event to the change feed,
/// counts it. The caller then publishes (once for several changes).
fn record(state: &mut State, kind: EventKind, node: &Subject, reason: String) {
    state.index += 1;
    let counter = match kind {
        EventKind::Join => Some(observe::JOINS),
        EventKind::Leave => Some(observe::LEAVES),
        EventKind::Eviction => Some(observe::EVICTIONS),
        EventKind::Replacement => Some(observe::REPLACEMENTS),
        EventKind::Moved
        | EventKind::Late
        | EventKind::Back
        | EventKind::Maintenance
        | EventKind::Resumed => None,
        _ => None,
    };
    if let Some(name) = counter {
        metrics::counter!(name).increment(1);
    }
    state.services.record(&node.service, kind, state.index);
    state.events.record(state.index, kind, node, reason);
}

#[cfg(test)]
mod tests;
