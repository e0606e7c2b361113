//! [`Endpoint`]: the router's view of one node: its persistent connection, the calls this router
//! has in flight on it, and whether it is ejected after a failure.
//!
//! The connection is dialled on first use and kept; every call to the node is multiplexed on it.
//! When a call finds it broken, that connection (and only that one: others may have redialled
//! already) is dropped and the next call dials again.
//!
//! Dialling is shared: the calls that need a connection while one is being dialled wait for that
//! same dial and all get its outcome at once. A node whose address swallows connection attempts
//! (a blackholed host) so costs one connect timeout in all, after which every waiting call moves
//! to another node, instead of each waiting call dialling again with a full timeout in turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use distribution_shared::ServiceClient;
use distribution_shared::handshake::{self, Key};
use distribution_shared::service::NodeChannel;
use distribution_shared::tls::ClientTls;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::error::NodeRef;

mod ejection;

use super::aperture::Usage;
use crate::membership::{LoadReport, Member};
use ejection::Ejection;

/// One node as the router sees it.
#[derive(Debug)]
pub(crate) struct Endpoint<C: ServiceClient> {
    pub(crate) node: NodeRef,
    /// The node's load as the registry last published it. Swapped, not kept, when the node comes
    /// back under the same id and address with a new report (evicted and registered again
    /// between two snapshots): the old report is no longer updated by anyone.
    load: ArcSwap<LoadReport>,
    in_flight: AtomicU32,
    /// What the router's calls do on every node (its aperture's counters).
    usage: Arc<Usage>,
    /// The `distribution_router_node_in_flight` gauge of this node (see `observe`).
    in_flight_gauge: metrics::Gauge,
    served: AtomicU64,
    /// Backup requests sent to the node, and calls on it that a backup elsewhere outran.
    backups: AtomicU64,
    outrun: AtomicU64,
    /// The report sequence number last seen by [`Endpoint::score`], and this router's own count
    /// of calls in flight at that moment.
    report_seen: AtomicU64,
    own_at_report: AtomicU32,
    conn: Mutex<Option<(u64, Conn<C>)>>,
    generation: AtomicU64,
    /// When the connection last carried a call (ms since `born`), and how long it may go unused
    /// before this router drops it (see `defaults::ROUTER_IDLE_CLOSE`).
    last_used: AtomicU64,
    born: Instant,
    idle_close: Duration,
    /// The dial in progress, shared by every call waiting for a connection.
    dialling: Mutex<Option<Dial<C>>>,
    ejection: Mutex<Ejection>,
    /// Cancelled when the node leaves the membership (evicted, deregistered or moved).
    removed: CancellationToken,
}

/// A dial in progress: its outcome, cloned to every call that waits for it.
type Dial<C> = Shared<BoxFuture<'static, Result<(u64, Conn<C>), Arc<std::io::Error>>>>;

/// The connection to a node: one tarpc channel, cloned by every call multiplexed on it.
pub(crate) type Conn<C> =
    NodeChannel<<C as ServiceClient>::Request, <C as ServiceClient>::Response>;

impl<C: ServiceClient> Endpoint<C> {
    /// The endpoint of `member`; its connection is dropped after `idle_close` without calls. Its
    /// calls also count in `usage`, the router's.
    pub(crate) fn new(member: &Member, idle_close: Duration, usage: Arc<Usage>) -> Self {
        Self {
            node: NodeRef {
                id: member.id.clone(),
                addr: member.addr.clone(),
            },
            load: ArcSwap::new(member.load.clone()),
            in_flight: AtomicU32::new(0),
            usage,
            in_flight_gauge: crate::observe::node_in_flight_gauge(&member.id),
            served: AtomicU64::new(0),
            backups: AtomicU64::new(0),
            outrun: AtomicU64::new(0),
            report_seen: AtomicU64::new(u64::MAX),
            own_at_report: AtomicU32::new(0),
            conn: Mutex::new(None),
            generation: AtomicU64::new(0),
            dialling: Mutex::new(None),
            last_used: AtomicU64::new(0),
            born: Instant::now(),
            idle_close,
            ejection: Mutex::new(Ejection::default()),
            removed: CancellationToken::new(),
        }
    }

    /// Marks the node as gone from the membership: idempotent calls still waiting on it are
    /// retried elsewhere at once instead of waiting for their deadline (an evicted node may be
    /// unreachable with its connections still open, e.g. after a network cut).
    pub(crate) fn remove(&self) {
        self.removed.cancel();
        *self.conn.lock() = None;
        // A dial nobody waits for any more holds this endpoint: let both go.
        *self.dialling.lock() = None;
    }

    /// Completes when the node leaves the membership.
    pub(crate) fn removed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.removed.cancelled()
    }

    /// Whether this endpoint stands for `member` (same id, same address).
    pub(crate) fn is(&self, member: &Member) -> bool {
        self.node.id == member.id && self.node.addr == member.addr
    }

    /// Follows `member`'s load report from now on, if it is not the one already followed (the
    /// node was evicted and registered again: its connection and counters stay, its figures
    /// come from the new report).
    pub(crate) fn follow_load(&self, member: &Member) {
        if !Arc::ptr_eq(&self.load.load(), &member.load) {
            self.load.store(member.load.clone());
            self.report_seen.store(u64::MAX, Ordering::Relaxed);
        }
    }

    /// The routing score: calls in flight on the node as best known, from every caller.
    ///
    /// This router's own count is exact and current. The node's report counts every caller's
    /// calls but lags by up to a heartbeat; it includes this router's calls of that moment, which
    /// are estimated by the own count seen when the report first reached this router. So:
    /// score = own now + (reported - own at report time), the second term being the other
    /// callers' load.
    pub(crate) fn score(&self) -> u64 {
        let own = self.own_in_flight();
        let load = self.load.load();
        let seq = load.seq();
        if self.report_seen.load(Ordering::Relaxed) != seq {
            self.report_seen.store(seq, Ordering::Relaxed);
            self.own_at_report.store(own, Ordering::Relaxed);
        }
        let others = load
            .in_flight()
            .saturating_sub(self.own_at_report.load(Ordering::Relaxed));
        u64::from(own) + u64::from(others)
    }

    /// Whether this router alone already fills the node's reported capacity.
    /// Whether the node is in maintenance: it gets no new call, not even as a last resort.
    pub(crate) fn in_maintenance(&self) -> bool {
        self.load.load().in_maintenance()
    }

    pub(crate) fn is_full(&self) -> bool {
        let capacity = self.load.load().capacity();
        capacity != 0 && self.own_in_flight() >= capacity
    }

    /// Calls this router has running on the node.
    pub(crate) fn own_in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Calls this router has completed on the node.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Sets the node's in-flight gauge again (for exporters that drop gauges left unchanged).
    pub(crate) fn refresh_gauge(&self) {
        self.in_flight_gauge.set(self.own_in_flight());
    }

    /// Counts a call as in flight until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight<C> {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.usage.begin();
        self.in_flight_gauge.set(n);
        if self.is_probing(Instant::now()) {
            metrics::counter!(crate::observe::ROUTER_PROBES).increment(1);
        }
        InFlight {
            endpoint: self.clone(),
            started: Instant::now(),
        }
    }

    /// Counts a backup request sent to the node.
    pub(crate) fn count_backup(&self) {
        self.backups.fetch_add(1, Ordering::Relaxed);
    }

    /// Backup requests sent to the node.
    pub(crate) fn backups(&self) -> u64 {
        self.backups.load(Ordering::Relaxed)
    }

    /// Calls on the node that a backup elsewhere outran.
    pub(crate) fn outrun(&self) -> u64 {
        self.outrun.load(Ordering::Relaxed)
    }

    /// The node's client, dialling it first if there is no live connection. Returns the
    /// connection's generation, so a failure can drop exactly that connection.
    ///
    /// Calls that arrive while a dial is in progress wait for it (see the module docs).
    ///
    /// With `key` (the cluster secret), the dial includes the cluster handshake, within the
    /// same `connect_timeout`; a node that refuses the secret fails the dial like a refused
    /// connection, with the reason in the error.
    pub(crate) async fn client(
        self: &Arc<Self>,
        connect_timeout: Duration,
        max_frame_len: usize,
        tls: Option<&ClientTls>,
        key: Option<&Key>,
    ) -> std::io::Result<(u64, Conn<C>)> {
        if let Some(found) = self.cached() {
            return Ok(found);
        }
        let dial = {
            let mut dialling = self.dialling.lock();
            if let Some(found) = self.cached() {
                return Ok(found);
            }
            match &*dialling {
                Some(dial) => dial.clone(),
                None => {
                    let dial = self
                        .clone()
                        .dial(connect_timeout, max_frame_len, tls.cloned(), key.cloned())
                        .boxed()
                        .shared();
                    *dialling = Some(dial.clone());
                    dial
                }
            }
        };
        dial.await
            .map_err(|err| std::io::Error::new(err.kind(), err.to_string()))
    }

    /// Dials the node once and records the outcome: the new connection, or no dial in progress
    /// (the next call dials afresh).
    async fn dial(
        self: Arc<Self>,
        connect_timeout: Duration,
        max_frame_len: usize,
        tls: Option<ClientTls>,
        key: Option<Key>,
    ) -> Result<(u64, Conn<C>), Arc<std::io::Error>> {
        let dialled =
            handshake::connect(&self.node.addr, tls.as_ref(), key.as_ref(), connect_timeout).await;
        let outcome = match dialled {
            Ok(stream) => {
                let client = NodeChannel::new(stream, max_frame_len);
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *self.conn.lock() = Some((generation, client.clone()));
                tracing::debug!(node = %self.node, "connected");
                Ok((generation, client))
            }
            Err(err) => Err(Arc::new(err)),
        };
        *self.dialling.lock() = None;
        outcome
    }

    /// The live connection, unless it went unused for `idle_close`: then it is dropped (calls
    /// still running on it keep it until they end) and the caller dials afresh, before the node's
    /// own idle timeout (longer) could close it under a call.
    fn cached(&self) -> Option<(u64, Conn<C>)> {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_used.swap(now, Ordering::Relaxed);
        let mut conn = self.conn.lock();
        if conn.is_some() && Duration::from_millis(now.saturating_sub(last)) > self.idle_close {
            tracing::debug!(node = %self.node, "dropping a connection unused for too long");
            *conn = None;
        }
        conn.clone()
    }
}

/// A call in flight on an endpoint; dropping it ends the count.
pub(crate) struct InFlight<C: ServiceClient> {
    endpoint: Arc<Endpoint<C>>,
    started: Instant,
}

impl<C: ServiceClient> InFlight<C> {
    /// The endpoint the call runs on.
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint<C>> {
        &self.endpoint
    }

    /// Records the call as served (before the guard drops).
    pub(crate) fn served(&self) {
        self.endpoint.served.fetch_add(1, Ordering::Relaxed);
    }
}

impl<C: ServiceClient> Drop for InFlight<C> {
    fn drop(&mut self) {
        let n = self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
        self.endpoint.usage.end(self.started.elapsed());
        self.endpoint.in_flight_gauge.set(n);
    }
}
