//! [`Backoff`]: the one exponential backoff of the workspace, for every loop that retries
//! something that failed (an `accept` out of file descriptors, a dial, a master that is down).
//!
//! Written once here so that every retry loop doubles, caps and resets the same way, instead of a
//! hand-written `backoff = (backoff * 2).min(max)` in each of them.

use std::time::Duration;

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
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max` (`max` below `base` counts as
    /// `base`).
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            next: base,
        }
    }

    /// The pause to take after this failure; the next one is twice as long, up to the maximum.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        pause
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
    fn a_max_below_the_base_is_the_base() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(backoff.next_pause(), Duration::from_secs(2));
        assert_eq!(backoff.next_pause(), Duration::from_secs(2));
    }
}
