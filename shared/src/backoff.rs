//! [`Backoff`]: the one exponential backoff of the workspace, for every loop that retries
//! something that failed (an `accept` out of file descriptors, a dial, a master that is down).
//!
//! Written once here so that every retry loop doubles, caps, jitters and resets the same way,
//! instead of a hand-written `backoff = (backoff * 2).min(max)` in each of them: the accept loop,
//! the registry follower's retries, a node's re-registration, and the router's ejection of a
//! failed node (which counts its strikes itself and asks [`Backoff::pause_after`]).
//!
//! Jitter ([`Backoff::with_jitter`], +-20 %) keeps many clients that failed at the same moment
//! (a master restart) from retrying in lockstep.

use std::time::Duration;

use rand::Rng;

/// A pause that doubles after each failure, from `base` up to `max`, and returns to `base` on
/// [`reset`](Backoff::reset) (after a success).
///
/// ```
/// use std::time::Duration;
/// use distribution_shared::backoff::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(12));
/// assert_eq!(backoff.next_pause(), Duration::from_millis(5));
/// assert_eq!(backoff.next_pause(), Duration::from_millis(10));
/// assert_eq!(backoff.next_pause(), Duration::from_millis(12));
/// backoff.reset();
/// assert_eq!(backoff.next_pause(), Duration::from_millis(5));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

/// The spread of a jittered pause: each is its nominal value times a factor in this range.
const JITTER: std::ops::Range<f64> = 0.8..1.2;

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max` (`max` below `base` counts as
    /// `base`).
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            next: base,
            jitter: false,
        }
    }

    /// This backoff with each pause jittered by +-20 % (the doubling is of the nominal pause).
    pub fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The pause to take after this failure; the next one is twice as long, up to the maximum.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.jittered(pause)
    }

    /// The pause after `failures` consecutive failures (1 or less: the base), without changing
    /// this backoff: for callers that keep their own count of failures.
    pub fn pause_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.jittered(self.base.saturating_mul(1 << doublings).min(self.max))
    }

    fn jittered(&self, pause: Duration) -> Duration {
        if self.jitter {
            pause.mul_f64(rand::rng().random_range(JITTER))
        } else {
            pause
        }
    }

    /// Sleeps for [`next_pause`](Backoff::next_pause).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
    }

    /// Back to the first pause, after a success.
    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let pauses: Vec<u64> = (0..7).map(|_| backoff.next_pause().as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
        backoff.reset();
        assert_eq!(backoff.next_pause(), Duration::from_secs(1));
    }

    #[test]
    fn pause_after_counts_failures_from_one() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let pauses: Vec<u64> = (0..8).map(|n| backoff.pause_after(n).as_secs()).collect();
        assert_eq!(pauses, [1, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.pause_after(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_spreads_each_pause_within_20_percent() {
        let mut backoff =
            Backoff::new(Duration::from_secs(10), Duration::from_secs(10)).with_jitter();
        let pauses: Vec<Duration> = (0..200).map(|_| backoff.next_pause()).collect();
        assert!(
            pauses
                .iter()
                .all(|p| *p >= Duration::from_secs(8) && *p < Duration::from_secs(12))
        );
        let distinct: std::collections::HashSet<_> = pauses.iter().collect();
        assert!(
            distinct.len() > 100,
            "not jittered: {} distinct pauses",
            distinct.len()
        );
    }

    #[test]
    fn a_max_below_the_base_is_the_base() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(backoff.next_pause(), Duration::from_secs(2));
        assert_eq!(backoff.next_pause(), Duration::from_secs(2));
    }
}
