//! Named services: which services have nodes, and the index of each one's last change, so that
//! a follower of one service is woken by the changes of that service only (Consul's
//! per-service index), and `GET /v1/services` lists names with counts without walking the nodes.
//!
//! The map holds one entry per service with registered nodes: when a service's last node goes,
//! its entry goes too (a client registering a million one-off names cannot grow it beyond
//! the registry's node limit), and its index is folded into `floor`, the index every unknown
//! service reports. A follower of a service that just emptied thus still sees the change
//! (`floor` grew past its index); a follower of a name that never existed is woken, spuriously
//! and harmlessly, when some other service empties.

use std::collections::HashMap;
use std::sync::Arc;

use distribution_shared::wire::{EventKind, ServiceInfo, ServiceList};

use super::Registry;

/// The services with nodes, and the index of each one's last event.
#[derive(Debug, Default)]
pub(crate) struct ServiceIndex {
    services: HashMap<Arc<str>, Service>,
    /// The newest index of a service that has no node any more (see the module's docs).
    floor: u64,
}

#[derive(Debug, Default)]
struct Service {
    nodes: usize,
    maintenance: usize,
    index: u64,
}

impl ServiceIndex {
    /// Takes in an event of `service` at `index`.
    pub(crate) fn record(&mut self, service: &Arc<str>, kind: EventKind, index: u64) {
        let entry = self.services.entry(service.clone()).or_default();
        entry.index = index;
        match kind {
            EventKind::Join => entry.nodes += 1,
            EventKind::Leave | EventKind::Eviction | EventKind::Replacement => {
                entry.nodes = entry.nodes.saturating_sub(1);
            }
            EventKind::Maintenance => entry.maintenance += 1,
            EventKind::Resumed => entry.maintenance = entry.maintenance.saturating_sub(1),
            _ => {}
        }
        if entry.nodes == 0 {
            self.services.remove(service);
            self.floor = self.floor.max(index);
        }
    }

    /// A node in maintenance left: it no longer counts among the service's nodes in maintenance.
    pub(crate) fn left_in_maintenance(&mut self, service: &str) {
        if let Some(entry) = self.services.get_mut(service) {
            entry.maintenance = entry.maintenance.saturating_sub(1);
        }
    }

    /// The index of `service`'s last change.
    pub(crate) fn index_of(&self, service: &str) -> u64 {
        self.services.get(service).map_or(self.floor, |s| s.index)
    }
}

impl Registry {
    /// Every service with registered nodes, sorted by name, with its counts (`GET /v1/services`).
    pub fn services(&self) -> ServiceList {
        let (index, mut services) = {
            let state = self.lock();
            let services: Vec<ServiceInfo> = state
                .services
                .services
                .iter()
                .map(|(name, s)| ServiceInfo {
                    name: name.to_string(),
                    nodes: s.nodes,
                    maintenance: s.maintenance,
                })
                .collect();
            (state.index, services)
        };
        services.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        ServiceList { index, services }
    }

    /// The index of the last change of `service` (`None`: of any service, the newest event's).
    pub fn service_index(&self, service: Option<&str>) -> u64 {
        let state = self.lock();
        match service {
            Some(service) => state.services.index_of(service),
            None => state.index,
        }
    }

    /// Whether a follower that has `index` has something to learn: for one service, a change
    /// of that service after `index`; for all, any other index than the newest. An index from
    /// the future (another master process) always has.
    pub fn changed_since(&self, service: Option<&str>, index: u64) -> bool {
        let state = self.lock();
        match service {
            Some(service) => state.services.index_of(service) > index || index > state.index,
            None => state.index != index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_counts_its_nodes_and_keeps_the_index_of_its_last_change() {
        let mut index = ServiceIndex::default();
        let (calc, text): (Arc<str>, Arc<str>) = ("calc".into(), "text".into());
        index.record(&calc, EventKind::Join, 1);
        index.record(&calc, EventKind::Join, 2);
        index.record(&text, EventKind::Join, 3);
        index.record(&calc, EventKind::Maintenance, 4);
        assert_eq!(index.index_of("calc"), 4);
        assert_eq!(
            index.index_of("text"),
            3,
            "calc's changes leave text's index"
        );
        assert_eq!(index.services["calc"].nodes, 2);
        assert_eq!(index.services["calc"].maintenance, 1);
        index.record(&text, EventKind::Leave, 5);
        assert!(
            !index.services.contains_key("text"),
            "an empty service is gone"
        );
        assert_eq!(index.index_of("text"), 5, "its last change is still seen");
        assert_eq!(index.index_of("never"), 5);
        index.record(&calc, EventKind::Late, 6);
        assert_eq!(index.index_of("calc"), 6);
        assert_eq!(index.index_of("text"), 5);
    }
}
