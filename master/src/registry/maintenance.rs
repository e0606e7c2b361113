//! Maintenance: a node that stays registered and heartbeating but gets no new calls.
//!
//! Two sides can put a node in maintenance, and it is in maintenance while either says so:
//!
//! - **an operator**, with `PUT /v1/nodes/{id}/maintenance` ([`Registry::set_maintenance`]).
//!   This lives in the master that got the request: like every registration it is soft state,
//!   gone if that master restarts (then the node is routed again; say it again);
//! - **the node itself** (`NodeHandle::set_maintenance`), which carries it in every heartbeat
//!   and registration, so every master it registers with knows it, restarted or not.
//!
//! A change goes out at once as a `maintenance` or `resumed` event of the change feed, and sets
//! the flag of the node's shared [`LoadReport`](distribution_client::membership::LoadReport):
//! in-process routers skip the node at their next pick, remote callers when the event reaches
//! them (their blocking query answers at the event). Calls already running on the node are not
//! touched: they finish.

use distribution_shared::wire::{EventKind, NodeInfo};
use tokio::time::Instant;
use tracing::info;

use super::{Registry, RegistryError, State, record};

/// Who holds a node in maintenance, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Maintenance {
    /// Set by an operator (`PUT /v1/nodes/{id}/maintenance`).
    pub(crate) operator: Option<String>,
    /// Reported by the node in its heartbeats.
    pub(crate) node: Option<String>,
}

impl Maintenance {
    /// The reason the node is in maintenance, if it is (the operator's first).
    pub(crate) fn reason(&self) -> Option<&str> {
        self.operator.as_deref().or(self.node.as_deref())
    }
}

impl Registry {
    /// Puts node `id` in maintenance for an operator (`Some(reason)`) or takes the operator's
    /// maintenance off (`None`; the node's own stays). Returns the node as listed.
    pub fn set_maintenance(
        &self,
        id: &str,
        operator: Option<String>,
    ) -> Result<NodeInfo, RegistryError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if !state.nodes.contains_key(id) {
            return Err(RegistryError::UnknownNode(id.to_owned()));
        }
        if update(state, id, |m| m.operator = operator) {
            self.publish(state);
        }
        let entry = &state.nodes[id];
        Ok(self.info_of(entry, Instant::now()))
    }
}

/// Changes node `id`'s maintenance with `change`; when that puts it in maintenance or takes it
/// out, flags its load report and records the event. Returns whether it did (the caller then
/// publishes).
pub(super) fn update(state: &mut State, id: &str, change: impl FnOnce(&mut Maintenance)) -> bool {
    let Some(entry) = state.nodes.get_mut(id) else {
        return false;
    };
    let was = entry.maintenance.reason().is_some();
    change(&mut entry.maintenance);
    let reason = entry.maintenance.reason().map(str::to_owned);
    if was == reason.is_some() {
        return false;
    }
    entry.load.set_maintenance(reason.is_some());
    let subject = entry.subject();
    let (kind, reason) = match reason {
        Some(reason) => {
            info!(node = %id, reason = %reason, "node in maintenance");
            (EventKind::Maintenance, reason)
        }
        None => {
            info!(node = %id, "node out of maintenance");
            (EventKind::Resumed, "out of maintenance".to_owned())
        }
    };
    record(state, kind, &subject, reason);
    true
}
