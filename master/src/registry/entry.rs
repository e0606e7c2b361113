//! One registered node: the [`Registration`] that validation lets through, and the [`Entry`]
//! the registry keeps for it (its lease, load, service, tags and maintenance).

use std::collections::BTreeMap;
use std::sync::Arc;

use distribution_client::membership::LoadReport;
use tokio::time::Instant;

use super::State;
use super::feed::Subject;
use super::maintenance::Maintenance;
use super::terms::Terms;

/// A registration that passed validation: what the registry stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The node's id.
    pub id: String,
    /// The `host:port` callers dial.
    pub addr: String,
    /// Calls the node runs at once.
    pub capacity: u32,
    /// The service it serves.
    pub service: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its metadata.
    pub meta: BTreeMap<String, String>,
    /// `Some(reason)` when the node says it is in maintenance.
    pub maintenance: Option<String>,
}

impl Registration {
    /// A node of the default service, with no tags, meta or maintenance.
    pub fn new(id: impl Into<String>, addr: impl Into<String>, capacity: u32) -> Self {
        Self {
            id: id.into(),
            addr: addr.into(),
            capacity,
            service: distribution_shared::wire::DEFAULT_SERVICE.to_owned(),
            tags: Vec::new(),
            meta: BTreeMap::new(),
            maintenance: None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) addr: Arc<str>,
    pub(super) id: Arc<str>,
    pub(super) service: Arc<str>,
    pub(super) tags: Arc<[Arc<str>]>,
    pub(super) meta: Arc<BTreeMap<String, String>>,
    pub(super) maintenance: Maintenance,
    pub(super) served: u64,
    pub(super) last_seen: Instant,
    pub(super) load: Arc<LoadReport>,
    /// Whether the reaper found it late (a `late` event went out; the next heartbeat sends
    /// `back`).
    pub(super) late: bool,
    /// The lease terms it was last given: it is judged late and expired by these.
    pub(super) terms: Terms,
}

impl Entry {
    /// What its events say about it.
    pub(super) fn subject(&self) -> Subject {
        Subject {
            id: self.id.clone(),
            addr: self.addr.clone(),
            service: self.service.clone(),
            tags: self.tags.clone(),
        }
    }

    /// Whether `reg` describes this node as it is registered (same service, tags and meta).
    pub(super) fn describes(&self, reg: &Registration) -> bool {
        *self.service == *reg.service
            && self.tags.len() == reg.tags.len()
            && self.tags.iter().zip(&reg.tags).all(|(a, b)| **a == **b)
            && *self.meta == reg.meta
    }
}

/// Removes node `id` with its address and its place in its service's counts; the caller records
/// why.
pub(super) fn remove(state: &mut State, id: &str) -> Option<Entry> {
    let entry = state.nodes.remove(id)?;
    if state
        .by_addr
        .get(&*entry.addr)
        .is_some_and(|holder| *holder == *id)
    {
        state.by_addr.remove(&*entry.addr);
    }
    if entry.maintenance.reason().is_some() {
        state.services.left_in_maintenance(&entry.service);
    }
    Some(entry)
}
