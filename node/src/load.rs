//! [`Load`]: the node's count of calls in flight and served, which refuses calls beyond the
//! node's capacity (the `counted` module wraps every handler in it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

use crate::observe;

/// The node's load counters, shared by every connection and the heartbeat loop.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
    /// Work of [`crate::work::run_blocking`] still running after its call ended.
    orphaned: AtomicU32,
    served: AtomicU64,
    refused: AtomicU64,
    refused_connections: AtomicU64,
    capacity: u32,
    idle: Notify,
    /// `Some(reason)` while the node is in maintenance: every heartbeat reports it, and a
    /// change wakes the heartbeat loops at once.
    maintenance: watch::Sender<Option<String>>,
}

impl Load {
    /// Counters for a node running at most `capacity` calls at once.
    pub fn new(capacity: u32) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            orphaned: AtomicU32::new(0),
            served: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            capacity,
            idle: Notify::new(),
            maintenance: watch::Sender::new(None),
        }
    }

    /// Puts the node in maintenance (`Some(reason)`) or takes it out (`None`); see
    /// [`NodeHandle::set_maintenance`](crate::NodeHandle::set_maintenance). The reason is cut
    /// to 256 bytes and its control characters replaced, so that the master accepts it.
    pub fn set_maintenance(&self, reason: Option<String>) {
        let reason = reason.map(|r| {
            let mut clean: String = r
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let mut end = clean.len().min(256);
            while !clean.is_char_boundary(end) {
                end -= 1;
            }
            clean.truncate(end);
            clean
        });
        self.maintenance.send_if_modified(|current| {
            let changed = *current != reason;
            *current = reason;
            changed
        });
    }

    /// Why the node is in maintenance, if it is.
    pub fn maintenance(&self) -> Option<String> {
        self.maintenance.borrow().clone()
    }

    /// Follows [`Load::maintenance`]: the receiver sees each change.
    pub(crate) fn watch_maintenance(&self) -> watch::Receiver<Option<String>> {
        self.maintenance.subscribe()
    }

    /// Calls running now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// What the node reports as its load: calls running now, plus CPU work still running after
    /// its call ended (cancelled or past its deadline, see [`crate::work`]).
    pub fn busy(&self) -> u32 {
        self.in_flight()
            .saturating_add(self.orphaned.load(Ordering::Acquire))
    }

    pub(crate) fn orphan_started(&self) {
        self.orphaned.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn orphan_done(&self) {
        self.orphaned.fetch_sub(1, Ordering::AcqRel);
    }

    /// Calls finished since the node started.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Calls refused before any work: the node was at capacity, or every call thread was held by
    /// a handler that does not yield (see [`crate::calls`]).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections refused because the caller did not complete the cluster handshake (a wrong
    /// or missing secret, a replayed answer, a stall): see `NodeConfig::secret`.
    pub fn refused_connections(&self) -> u64 {
        self.refused_connections.load(Ordering::Relaxed)
    }

    /// Counts a refused connection; returns the new total.
    pub(crate) fn count_refused_connection(&self) -> u64 {
        metrics::counter!(observe::CONNECTIONS_REFUSED).increment(1);
        self.refused_connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The node's capacity.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Counts a call in, unless the node is at capacity.
    pub(crate) fn begin(self: &Arc<Self>) -> Option<CallGuard> {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            let n = self.in_flight.load(Ordering::Relaxed);
            metrics::gauge!(observe::IN_FLIGHT).set(n);
            Some(CallGuard { load: self.clone() })
        } else {
            self.count_refused();
            None
        }
    }

    /// Counts a call refused before any work (at capacity, or every call thread held).
    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(observe::REFUSED).increment(1);
    }

    /// Waits until no call is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted call: counted in flight until dropped, then as served.
pub(crate) struct CallGuard {
    load: Arc<Load>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.load.served.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(observe::SERVED).increment(1);
        let before = self.load.in_flight.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(observe::IN_FLIGHT).set(before.saturating_sub(1));
        if before == 1 {
            self.load.idle.notify_waiters();
        }
    }
}

/// The detail of the error a node at capacity answers with: the router takes it as "try another
/// node", since the node did no work.
pub use distribution_shared::wire::AT_CAPACITY;

/// The detail of the error a node answers when the call's handler panicked (kind `Other`).
pub const HANDLER_PANICKED: &str = "the call's handler panicked";
