//! [`Membership`]: the snapshot of live nodes that the registry publishes and the router reads.
//!
//! The registry sends a new snapshot through a `tokio::sync::watch` channel at every join, leave,
//! eviction or address change. Load figures change far more often (every heartbeat), so they do not
//! go through the channel: each [`Member`] shares a [`LoadReport`] with the registry entry, which
//! the registry updates in place and the router reads when it picks a node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The load a node reported in its last heartbeat, shared between the registry and the routers.
#[derive(Debug, Default)]
pub struct LoadReport {
    in_flight: AtomicU32,
    capacity: AtomicU32,
    /// Grows at every report, so a reader can tell a new report from the one it saw.
    seq: AtomicU64,
}

impl LoadReport {
    /// A report of `in_flight` calls out of `capacity`.
    pub fn new(in_flight: u32, capacity: u32) -> Self {
        Self {
            in_flight: AtomicU32::new(in_flight),
            capacity: AtomicU32::new(capacity),
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
}

/// One routable node.
#[derive(Debug, Clone)]
pub struct Member {
    /// The node's id.
    pub id: Arc<str>,
    /// The `host:port` its tarpc server answers on.
    pub addr: Arc<str>,
    /// Its last reported load, updated in place at each heartbeat.
    pub load: Arc<LoadReport>,
}

/// A version of the node set: what the registry publishes, what the router follows.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// The registry's version; it grows at every change of the set.
    pub index: u64,
    /// The nodes, sorted by id.
    pub members: Arc<[Member]>,
}
