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

use distribution_shared::backoff::Backoff;
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
use parking_lot::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

use super::error::NodeRef;
use crate::membership::{LoadReport, Member};

/// One node as the router sees it.
#[derive(Debug)]
pub(crate) struct Endpoint<C: ServiceClient> {
    pub(crate) node: NodeRef,
    /// The node's load as the registry last published it. Swapped, not kept, when the node comes
    /// back under the same id and address with a new report (evicted and registered again
    /// between two snapshots): the old report is no longer updated by anyone.
    load: ArcSwap<LoadReport>,
    in_flight: AtomicU32,
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

#[derive(Debug, Default)]
struct Ejection {
    until: Option<Instant>,
    /// Consecutive ejections, for the growing backoff.
    strikes: u32,
    /// Consecutive calls the node aborted, for failure accrual.
    errors: u32,
    /// Consecutive calls on the node that a backup on another node outran (`hedge.rs`).
    slow: u32,
}

/// A dial in progress: its outcome, cloned to every call that waits for it.
type Dial<C> = Shared<BoxFuture<'static, Result<(u64, Conn<C>), Arc<std::io::Error>>>>;

/// The connection to a node: one tarpc channel, cloned by every call multiplexed on it.
pub(crate) type Conn<C> =
    NodeChannel<<C as ServiceClient>::Request, <C as ServiceClient>::Response>;

impl<C: ServiceClient> Endpoint<C> {
    /// The endpoint of `member`; its connection is dropped after `idle_close` without calls.
    pub(crate) fn new(member: &Member, idle_close: Duration) -> Self {
        Self {
            node: NodeRef {
                id: member.id.clone(),
                addr: member.addr.clone(),
            },
            load: ArcSwap::new(member.load.clone()),
            in_flight: AtomicU32::new(0),
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

    /// Counts a call as in flight until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight<C> {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        crate::observe::node_in_flight(&self.node.id, n);
        if self
            .ejection()
            .until
            .is_some_and(|until| until <= Instant::now())
        {
            metrics::counter!(crate::observe::ROUTER_PROBES).increment(1);
        }
        InFlight {
            endpoint: self.clone(),
        }
    }

    /// Whether the endpoint is out of routing at `now` after a failure.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejection().until.is_some_and(|until| until > now)
    }

    /// Whether the endpoint may take a call at `now`: not ejected, and, once the pause after a
    /// failure is over, one call at a time until a call succeeds (a single probe, so that the
    /// callers do not all rush to a node that is still dead the moment its pause ends).
    pub(crate) fn takes_calls(&self, now: Instant) -> bool {
        match self.ejection().until {
            None => true,
            Some(until) if until > now => false,
            Some(_) => self.own_in_flight() == 0,
        }
    }

    /// Takes the endpoint out of routing for a backoff that doubles with each consecutive failure
    /// (jittered by +-20 %), and drops its connection if it is still the one that failed.
    ///
    /// Failures reported while the endpoint is already ejected are the same incident (the other
    /// calls that were in flight when the node died) and add no strike: otherwise the dozens of
    /// calls in flight on a killed node would push its backoff to the maximum at once.
    pub(crate) fn mark_failed(&self, generation: Option<u64>, backoff: &Backoff) {
        if let Some(generation) = generation {
            let mut conn = self.conn.lock();
            if conn.as_ref().is_some_and(|(g, _)| *g == generation) {
                *conn = None;
            }
        }
        let mut ejection = self.ejection();
        if ejection.until.is_some_and(|until| until > Instant::now()) {
            return;
        }
        ejection.strikes = ejection.strikes.saturating_add(1);
        let pause = backoff.pause_after(ejection.strikes);
        ejection.until = Some(Instant::now() + pause);
        metrics::counter!(crate::observe::ROUTER_EJECTIONS).increment(1);
        tracing::warn!(node = %self.node, strikes = ejection.strikes, pause_ms = pause.as_millis() as u64, "node ejected from routing");
    }

    /// Counts a call the node aborted; `threshold` in a row eject the node (0: never).
    pub(crate) fn record_error(&self, threshold: u32, backoff: &Backoff) {
        let errors = {
            let mut ejection = self.ejection();
            ejection.errors = ejection.errors.saturating_add(1);
            ejection.errors
        };
        if threshold != 0 && errors >= threshold {
            self.ejection().errors = 0;
            self.mark_failed(None, backoff);
        }
    }

    /// Counts a call on the node that a backup request on another node outran; `threshold` in
    /// a row eject the node (0: never), and so does one while it is on probation (ejected before
    /// and not answered since). The connection is kept: it is not known to be broken.
    pub(crate) fn record_slow(&self, threshold: u32, backoff: &Backoff) {
        self.outrun.fetch_add(1, Ordering::Relaxed);
        let eject = {
            let mut ejection = self.ejection();
            ejection.slow = ejection.slow.saturating_add(1);
            let eject = threshold != 0 && (ejection.slow >= threshold || ejection.strikes != 0);
            if eject {
                ejection.slow = 0;
            }
            eject
        };
        if eject {
            tracing::info!(node = %self.node, "node outrun by backup requests");
            self.mark_failed(None, backoff);
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

    /// Clears the failure record after a call succeeded.
    pub(crate) fn mark_ok(&self) {
        let mut ejection = self.ejection();
        ejection.errors = 0;
        ejection.slow = 0;
        if ejection.strikes != 0 {
            tracing::info!(node = %self.node, "node back in routing");
            *ejection = Ejection::default();
        }
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

    fn ejection(&self) -> MutexGuard<'_, Ejection> {
        self.ejection.lock()
    }
}

/// A call in flight on an endpoint; dropping it ends the count.
pub(crate) struct InFlight<C: ServiceClient> {
    endpoint: Arc<Endpoint<C>>,
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
        crate::observe::node_in_flight(&self.endpoint.node.id, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distribution_shared::defaults;

    #[tarpc::service]
    trait Echo {
        async fn echo(value: u32) -> u32;
    }
    distribution_shared::service_client!(EchoClient);

    fn endpoint() -> Endpoint<EchoClient> {
        Endpoint::new(
            &Member {
                id: "a".into(),
                addr: "127.0.0.1:1".into(),
                load: Arc::new(LoadReport::default()),
            },
            defaults::ROUTER_IDLE_CLOSE,
        )
    }

    /// The router's default ejection backoff: 1 s doubling to 30 s, jittered.
    fn backoff() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).with_jitter()
    }

    #[test]
    fn failures_of_one_incident_count_once_and_a_single_call_probes() {
        let e = Arc::new(endpoint());
        // The 40 calls in flight when a node dies all fail together: one strike, a 1 s pause.
        for _ in 0..40 {
            e.mark_failed(None, &backoff());
        }
        assert_eq!(e.ejection().strikes, 1);
        let until = e.ejection().until.unwrap();
        assert!(until <= Instant::now() + Duration::from_millis(1200));
        assert!(e.is_ejected(Instant::now()));
        // A failure after the pause (a probe that failed again) doubles it.
        e.ejection().until = Some(Instant::now() - Duration::from_millis(1));
        e.mark_failed(None, &backoff());
        assert_eq!(e.ejection().strikes, 2);
        let until = e.ejection().until.unwrap();
        assert!(until >= Instant::now() + Duration::from_millis(1500));
        // After the pause, one probe call at a time.
        e.ejection().until = Some(Instant::now() - Duration::from_millis(1));
        assert!(e.takes_calls(Instant::now()));
        let probe = e.begin();
        assert!(
            !e.takes_calls(Instant::now()),
            "a second call waits for the probe"
        );
        drop(probe);
        assert!(e.takes_calls(Instant::now()));
        // A success clears the record.
        e.mark_ok();
        assert!(e.takes_calls(Instant::now()));
        assert_eq!(e.ejection().strikes, 0);
        assert!(!e.is_ejected(Instant::now()));
    }

    #[test]
    fn three_slow_strikes_in_a_row_eject_and_one_on_probation_ejects_again() {
        let e = Arc::new(endpoint());
        // Two lost races, then an answer: the record is cleared.
        e.record_slow(3, &backoff());
        e.record_slow(3, &backoff());
        e.mark_ok();
        e.record_slow(3, &backoff());
        e.record_slow(3, &backoff());
        assert!(!e.is_ejected(Instant::now()), "two in a row are not enough");
        e.record_slow(3, &backoff());
        assert!(e.is_ejected(Instant::now()), "the third in a row ejects");
        assert_eq!(e.ejection().strikes, 1);
        // The other calls of the incident add nothing.
        for _ in 0..10 {
            e.record_slow(3, &backoff());
        }
        assert_eq!(e.ejection().strikes, 1);
        assert_eq!(e.outrun(), 15);
        // After the pause, a probe that loses its race ejects again at once, for longer.
        e.ejection().until = Some(Instant::now() - Duration::from_millis(1));
        e.record_slow(3, &backoff());
        assert_eq!(e.ejection().strikes, 2);
        // 0: never.
        let never = endpoint();
        for _ in 0..10 {
            never.record_slow(0, &backoff());
        }
        assert!(!never.is_ejected(Instant::now()));
    }
}
