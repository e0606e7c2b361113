//! Outlier ejection of one endpoint: a node whose connection fails, that aborts calls in a row,
//! or that keeps losing races to backup requests leaves routing for a pause that grows with each
//! strike (the shared [`Backoff`], jittered); when the pause is over, one call probes it, and a
//! success puts it back.
//!
//! One strike per incident: failures reported while the endpoint is already ejected (the other
//! calls that were in flight when the node died) add none.

use std::sync::atomic::Ordering;
use std::time::Instant;

use distribution_shared::ServiceClient;
use distribution_shared::backoff::Backoff;
use parking_lot::MutexGuard;

use super::Endpoint;

#[derive(Debug, Default)]
pub(super) struct Ejection {
    until: Option<Instant>,
    /// Consecutive ejections, for the growing backoff.
    strikes: u32,
    /// Consecutive calls the node aborted, for failure accrual.
    errors: u32,
    /// Consecutive calls on the node that a backup on another node outran (`hedge.rs`).
    slow: u32,
}

impl<C: ServiceClient> Endpoint<C> {
    /// Whether the endpoint is out of routing at `now` after a failure.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejection().until.is_some_and(|until| until > now)
    }

    /// Whether the endpoint's pause after a failure is over at `now` and no call has succeeded
    /// since: a call it takes now is a probe.
    pub(crate) fn is_probing(&self, now: Instant) -> bool {
        self.ejection().until.is_some_and(|until| until <= now)
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

    pub(super) fn ejection(&self) -> MutexGuard<'_, Ejection> {
        self.ejection.lock()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::membership::{LoadReport, Member};
    use distribution_shared::defaults;

    use crate::router::testing::EchoClient;

    fn endpoint() -> Endpoint<EchoClient> {
        Endpoint::new(
            &Member::new("a", "127.0.0.1:1", Arc::new(LoadReport::default())),
            defaults::ROUTER_IDLE_CLOSE,
            crate::router::aperture::Aperture::new(0, 1, 1, Duration::from_millis(1)).usage(),
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
