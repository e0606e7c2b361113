//! Sliding windows behind backup requests (`hedge.rs`): the router's recent call latencies, from
//! which the hedge delay is estimated, and the hedge budget that caps the extra load.
//!
//! Both are plain data taking `now` from the caller (tokio's clock, so that tests run on a paused
//! clock) and are kept behind one lock by the router; nothing here allocates after construction.
//!
//! - [`LatencyWindow`]: a log-linear histogram (8 buckets per power of two, so an estimate is at
//!   most 12.5 % above the true value, never below) in two halves of half a window each: a value
//!   is forgotten between half a window and a whole window after it was recorded. Recording is
//!   one increment; a percentile reads 2 x 240 counters. A histogram rather than a ring of the last
//!   N samples, so that a router serving 50,000 calls a second and one serving 5 have the same
//!   window in time and the same cost per call.
//! - [`HedgeBudget`]: calls and backups counted in ten slots of a tenth of the window each. A
//!   backup may be sent while the backups of the window stay within `ratio` x its calls plus a
//!   small `reserve` (so that a router with little traffic may still send a few), as Finagle's
//!   retry budget does. Over any window the extra calls are therefore at most
//!   `ratio x calls + reserve`, however many nodes stall at once.

use std::time::Duration;

use tokio::time::Instant;

/// Buckets of the histogram: values up to 2^32 µs (71 minutes) in 8 sub-buckets per power of two.
const BUCKETS: usize = 240;

/// How many latencies a window must hold before its percentiles are trusted.
pub(crate) const MIN_SAMPLES: u32 = 20;

/// The bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    let us = us.min(u64::from(u32::MAX));
    if us < 8 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as usize; // 3..=31
    (e - 2) * 8 + ((us >> (e - 3)) & 7) as usize
}

/// The exclusive upper bound, in microseconds, of bucket `index`: what a percentile reports.
fn upper_bound(index: usize) -> u64 {
    if index < 8 {
        return index as u64 + 1;
    }
    let (e, m) = (index / 8 + 2, (index % 8) as u64);
    let width = 1u64 << (e - 3);
    (8 + m) * width + width
}

/// One half of a [`LatencyWindow`].
#[derive(Debug, Clone)]
struct Half {
    counts: [u32; BUCKETS],
    total: u32,
}

impl Default for Half {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
}

/// Recent latencies, as a histogram over a sliding window (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct LatencyWindow {
    half: Duration,
    current: Half,
    previous: Half,
    started: Instant,
}

impl LatencyWindow {
    /// An empty window of `window` (at least 2 ms).
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Self {
            half: (window / 2).max(Duration::from_millis(1)),
            current: Half::default(),
            previous: Half::default(),
            started: now,
        }
    }

    fn rotate(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.half * 2 {
            self.previous = Half::default();
            self.current = Half::default();
            self.started = now;
        } else if elapsed >= self.half {
            self.previous = std::mem::take(&mut self.current);
            self.started = now;
        }
    }

    /// Records one latency.
    pub(crate) fn record(&mut self, latency: Duration, now: Instant) {
        self.rotate(now);
        let b = bucket(latency.as_micros().min(u128::from(u64::MAX)) as u64);
        self.current.counts[b] = self.current.counts[b].saturating_add(1);
        self.current.total = self.current.total.saturating_add(1);
    }

    /// How many latencies the window holds.
    pub(crate) fn len(&mut self, now: Instant) -> u32 {
        self.rotate(now);
        self.current.total.saturating_add(self.previous.total)
    }

    /// The `p`-th percentile (0 to 100) of the window's latencies, rounded up to its bucket's
    /// bound; `None` while the window holds fewer than [`MIN_SAMPLES`].
    pub(crate) fn percentile(&mut self, p: f64, now: Instant) -> Option<Duration> {
        let total = self.len(now);
        if total < MIN_SAMPLES {
            return None;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * f64::from(total))
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0u64;
        for (index, (a, b)) in self
            .current
            .counts
            .iter()
            .zip(self.previous.counts.iter())
            .enumerate()
        {
            seen += u64::from(*a) + u64::from(*b);
            if seen >= rank {
                return Some(Duration::from_micros(upper_bound(index)));
            }
        }
        Some(Duration::from_micros(upper_bound(BUCKETS - 1)))
    }
}

/// Slots of the budget's window.
const SLOTS: usize = 10;

/// The hedge budget: backups allowed per calls over a sliding window (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct HedgeBudget {
    ratio: f64,
    reserve: u32,
    slot: Duration,
    /// (calls, backups) per slot; `head` is the current one.
    slots: [(u32, u32); SLOTS],
    head: usize,
    head_started: Instant,
}

impl HedgeBudget {
    /// A budget of `ratio` backups per call plus `reserve` per `window`.
    pub(crate) fn new(ratio: f64, reserve: u32, window: Duration, now: Instant) -> Self {
        Self {
            ratio: if ratio.is_finite() {
                ratio.max(0.0)
            } else {
                0.0
            },
            reserve,
            slot: (window / SLOTS as u32).max(Duration::from_millis(1)),
            slots: [(0, 0); SLOTS],
            head: 0,
            head_started: now,
        }
    }

    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.head_started);
        let steps = (elapsed.as_nanos() / self.slot.as_nanos()) as u64;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(SLOTS as u64) {
            self.head = (self.head + 1) % SLOTS;
            self.slots[self.head] = (0, 0);
        }
        self.head_started += self.slot * steps.min(u64::from(u32::MAX)) as u32;
    }

    /// Counts a call that may be hedged (it earns the budget its `ratio`).
    pub(crate) fn deposit(&mut self, now: Instant) {
        self.advance(now);
        let calls = &mut self.slots[self.head].0;
        *calls = calls.saturating_add(1);
    }

    /// Takes one backup from the budget if it allows one now; returns whether it did.
    pub(crate) fn withdraw(&mut self, now: Instant) -> bool {
        self.advance(now);
        let (calls, backups) = self.slots.iter().fold((0u64, 0u64), |(c, b), (sc, sb)| {
            (c + u64::from(*sc), b + u64::from(*sb))
        });
        let allowed = self.ratio * calls as f64 + f64::from(self.reserve);
        if (backups as f64) + 1.0 > allowed {
            return false;
        }
        let sent = &mut self.slots[self.head].1;
        *sent = sent.saturating_add(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn buckets_are_contiguous_and_bound_their_values_within_an_eighth() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let b = bucket(us);
            assert!(b == last || b == last + 1, "gap at {us}");
            last = b;
            let bound = upper_bound(b);
            assert!(bound > us, "{us} above its bound {bound}");
            assert!(
                bound as f64 <= (us as f64 + 1.0) * 1.125 + 1.0,
                "{us}: {bound}"
            );
        }
        assert!(bucket(u64::MAX) < BUCKETS);
    }

    #[tokio::test(start_paused = true)]
    async fn the_percentile_follows_the_window_and_needs_enough_samples() {
        let mut w = LatencyWindow::new(Duration::from_secs(10), Instant::now());
        for _ in 0..(MIN_SAMPLES - 1) {
            w.record(5 * MS, Instant::now());
        }
        assert_eq!(w.percentile(99.0, Instant::now()), None, "too few samples");
        // 95 calls of 5 ms and 5 of 200 ms: p95 is about 5 ms, p99 about 200 ms.
        let mut w = LatencyWindow::new(Duration::from_secs(10), Instant::now());
        for i in 0..100 {
            w.record(if i % 20 == 0 { 200 * MS } else { 5 * MS }, Instant::now());
        }
        let p95 = w.percentile(95.0, Instant::now()).unwrap();
        assert!((5 * MS..6 * MS).contains(&p95), "p95 {p95:?}");
        let p99 = w.percentile(99.0, Instant::now()).unwrap();
        assert!((200 * MS..226 * MS).contains(&p99), "p99 {p99:?}");
        // Half a window later they are still there; a whole window later they are forgotten.
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..100 {
            w.record(MS, Instant::now());
        }
        let p99 = w.percentile(99.0, Instant::now()).unwrap();
        assert!(
            p99 >= 200 * MS,
            "the slow calls of 5 s ago still count: {p99:?}"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..100 {
            w.record(MS, Instant::now());
        }
        let p99 = w.percentile(99.0, Instant::now()).unwrap();
        assert!(
            p99 <= 2 * MS,
            "the slow calls of 10 s ago are forgotten: {p99:?}"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            w.percentile(99.0, Instant::now()),
            None,
            "an idle window empties"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_its_ratio_of_calls_plus_the_reserve_per_window() {
        let window = Duration::from_secs(10);
        let mut b = HedgeBudget::new(0.05, 10, window, Instant::now());
        // No calls yet: the reserve alone.
        assert_eq!((0..50).filter(|_| b.withdraw(Instant::now())).count(), 10);
        // 1,000 calls earn 50 more.
        for _ in 0..1000 {
            b.deposit(Instant::now());
        }
        assert_eq!((0..200).filter(|_| b.withdraw(Instant::now())).count(), 50);
        assert!(!b.withdraw(Instant::now()), "spent");
        // A steady 1,000 calls a second for a minute: never more than 5 % + 10 per window.
        let mut sent = 0u64;
        let mut per_second = Vec::new();
        for _ in 0..60 {
            let mut this_second = 0;
            for _ in 0..10 {
                for _ in 0..100 {
                    b.deposit(Instant::now());
                    if b.withdraw(Instant::now()) {
                        this_second += 1;
                    }
                }
                tokio::time::advance(Duration::from_millis(100)).await;
            }
            sent += this_second;
            per_second.push(this_second);
        }
        for w in per_second.windows(10) {
            let in_window: u64 = w.iter().sum();
            assert!(in_window <= 500 + 10, "{in_window} backups in one window");
        }
        assert!(
            sent >= 6 * 500 - 100,
            "the budget is usable: {sent} in 60 s"
        );
        // Idle for a window: the old calls no longer earn anything, the reserve is back.
        tokio::time::advance(window).await;
        assert_eq!((0..50).filter(|_| b.withdraw(Instant::now())).count(), 10);
        // A zero budget sends nothing.
        let mut none = HedgeBudget::new(0.0, 0, window, Instant::now());
        none.deposit(Instant::now());
        assert!(!none.withdraw(Instant::now()));
    }
}
