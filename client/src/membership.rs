//! [`Membership`]: the snapshot of live nodes that the registry publishes and the router reads.
//!
//! The registry sends a new snapshot through a `tokio::sync::watch` channel at every join, leave,
//! eviction or address change. Load figures change far more often (every heartbeat), so they do not
//! go through the channel: each [`Member`] shares a [`LoadReport`] with the registry entry, which
//! the registry updates in place and the router reads when it picks a node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// The load a node reported in its last heartbeat, and whether it is in maintenance, shared
/// between the registry (or a remote follower) and the routers, updated in place: a router sees
/// a node go into maintenance at its next pick, without a new snapshot.
#[derive(Debug, Default)]
pub struct LoadReport {
    in_flight: AtomicU32,
    capacity: AtomicU32,
    maintenance: AtomicBool,
    /// Grows at every report, so a reader can tell a new report from the one it saw.
    seq: AtomicU64,
}

impl LoadReport {
    /// A report of `in_flight` calls out of `capacity`.
    pub fn new(in_flight: u32, capacity: u32) -> Self {
        Self {
            in_flight: AtomicU32::new(in_flight),
            capacity: AtomicU32::new(capacity),
            maintenance: AtomicBool::new(false),
            seq: AtomicU64::new(0),
        }
    }

    /// Records a newer report.
    pub fn set(&self, in_flight: u32, capacity: u32) {
        self.in_flight.store(in_flight, Ordering::Relaxed);
        self.capacity.store(capacity, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// How many reports have been recorded (a new value means a new report).
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Calls in flight on the node, from every caller, as last reported.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The node's capacity, as last reported.
    pub fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Puts the node in maintenance (`true`: routers send it no new call) or takes it out.
    pub fn set_maintenance(&self, on: bool) {
        self.maintenance.store(on, Ordering::Release);
    }

    /// Whether the node is in maintenance.
    pub fn in_maintenance(&self) -> bool {
        self.maintenance.load(Ordering::Acquire)
    }
}

/// One routable node.
#[derive(Debug, Clone)]
pub struct Member {
    /// The node's id.
    pub id: Arc<str>,
    /// The `host:port` its tarpc server answers on.
    pub addr: Arc<str>,
    /// The service it serves: a router routes only to members of its own.
    pub service: Arc<str>,
    /// Its tags, which a router may require ([`crate::RouterConfig::tags`]).
    pub tags: Arc<[Arc<str>]>,
    /// Its last reported load (and maintenance), updated in place at each heartbeat.
    pub load: Arc<LoadReport>,
}

impl Member {
    /// A member of the default service with no tags (tests and tools).
    pub fn new(id: &str, addr: &str, load: Arc<LoadReport>) -> Self {
        Self {
            id: id.into(),
            addr: addr.into(),
            service: distribution_shared::wire::DEFAULT_SERVICE.into(),
            tags: Arc::from(Vec::new()),
            load,
        }
    }

    /// Whether a router of `service` that requires `tags` routes to this member.
    pub fn serves(&self, service: &str, tags: &[String]) -> bool {
        *self.service == *service && tags.iter().all(|t| self.tags.iter().any(|m| **m == **t))
    }
}

/// A version of the node set: what the registry publishes, what the router follows.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// The registry's version; it grows at every change of the set.
    pub index: u64,
    /// The nodes, sorted by id.
    pub members: Arc<[Member]>,
}
