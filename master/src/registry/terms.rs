//! Lease terms: the heartbeat interval and TTL the registry hands each node, scaled with the
//! cluster so that the master's heartbeat rate stays within a budget.
//!
//! A heartbeat costs the master 40 to 65 µs of CPU (see BENCHMARKS.md, mostly the HTTP
//! exchange and the kernel's TCP work), so 10,000 nodes at the configured 1 s would take about
//! half a core. With a budget of `B` heartbeats a second ([`MasterConfig::heartbeat_budget`],
//! default 4,000), `n` nodes are told to beat every `max(interval, n / B)` seconds (rounded up to
//! 100 ms), and their TTL keeps its ratio to the interval (3 intervals by default). The rate then
//! stays at or under `B` whatever the size, at the price of a later eviction of a node that dies
//! without a word: 3 s up to 4,000 nodes, 7.5 s at 10,000, 75 s at 100,000 (Eureka and
//! memberlist make the same trade). A dead node still leaves routing at the first call that
//! fails on it (routers eject it), and a node that stops gracefully leaves at once.
//!
//! [`Registry::renew_all`] is the reaper's answer to its own pause (see `crate::lease`).
//!
//! Every answer to a registration or heartbeat carries the terms for the registry's size at that
//! moment; each entry remembers the terms it was given, and is judged late or expired by those.

use std::time::Duration;

use distribution_shared::wire::Lease;

use super::Registry;
use crate::config::MasterConfig;

/// The terms of a lease: how often to beat, and how long the registry waits before evicting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Terms {
    pub(crate) interval: Duration,
    pub(crate) ttl: Duration,
}

impl Terms {
    /// The lease answered to node `id` at `addr` with these terms.
    pub(super) fn lease(&self, id: &str, addr: &str) -> Lease {
        Lease {
            id: id.to_owned(),
            addr: addr.to_owned(),
            heartbeat_interval_ms: self.interval.as_millis() as u64,
            ttl_ms: self.ttl.as_millis() as u64,
        }
    }

    /// When a node with these terms counts as late: one and a half intervals without a beat.
    pub(crate) fn late_after(&self) -> Duration {
        self.interval + self.interval / 2
    }
}

/// The configured terms and the budget that scales them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    base: Terms,
    /// Heartbeats a second the master aims to receive at most; `None`: never scaled.
    budget: Option<u32>,
}

/// Scaled intervals are whole multiples of this, so that the terms do not change at every join.
const STEP: Duration = Duration::from_millis(100);

impl Policy {
    pub(crate) fn new(config: &MasterConfig) -> Self {
        Self {
            base: Terms {
                interval: config.heartbeat_interval,
                ttl: config.ttl,
            },
            budget: config.heartbeat_budget.filter(|b| *b > 0),
        }
    }

    /// The configured terms.
    pub(crate) fn base(&self) -> Terms {
        self.base
    }

    /// The terms for a registry of `nodes` nodes.
    pub(crate) fn for_size(&self, nodes: usize) -> Terms {
        let Some(budget) = self.budget else {
            return self.base;
        };
        let needed = Duration::from_secs_f64(nodes as f64 / f64::from(budget));
        if needed <= self.base.interval || self.base.interval.is_zero() {
            return self.base;
        }
        let steps = needed.as_nanos().div_ceil(STEP.as_nanos()) as u32;
        let interval = STEP * steps;
        let ratio = self.base.ttl.as_secs_f64() / self.base.interval.as_secs_f64();
        Terms {
            interval,
            ttl: interval.mul_f64(ratio),
        }
    }
}

impl Registry {
    /// The heartbeat interval and TTL a node registering or beating now is given (scaled with
    /// the registry's size, see the module docs).
    pub fn lease_terms(&self) -> (Duration, Duration) {
        let terms = self.shared.terms.for_size(self.len());
        (terms.interval, terms.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(budget: Option<u32>) -> Policy {
        Policy::new(&MasterConfig::default().with_heartbeat_budget(budget))
    }

    #[test]
    fn the_interval_grows_with_the_cluster_beyond_the_budget_and_the_ttl_keeps_its_ratio() {
        let p = policy(Some(4_000));
        let secs = |n| p.for_size(n).interval.as_secs_f64();
        assert_eq!(secs(1), 1.0);
        assert_eq!(secs(4_000), 1.0);
        assert_eq!(secs(4_001), 1.1, "rounded up to 100 ms");
        assert_eq!(secs(10_000), 2.5);
        assert_eq!(secs(100_000), 25.0);
        assert_eq!(p.for_size(10_000).ttl, Duration::from_millis(7_500));
        // The rate it asks for never exceeds the budget.
        for n in [4_001, 9_999, 10_000, 33_333, 100_000, 1_000_000] {
            let rate = n as f64 / secs(n);
            assert!(rate <= 4_000.0, "{n} nodes: {rate} beats/s");
        }
    }

    #[test]
    fn without_a_budget_the_terms_are_the_configured_ones() {
        for budget in [None, Some(0)] {
            let p = policy(budget);
            assert_eq!(p.for_size(1_000_000), p.base(), "{budget:?}");
        }
    }
}
