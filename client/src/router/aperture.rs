//! The aperture: each router sends its calls to a subset of the nodes sized by its own load (what
//! Finagle's aperture balancer and gRPC's subsetting do), at every cluster size.
//!
//! Why: without it a router spreads its calls over every node's connection (a file descriptor,
//! buffers and a task each, on both sides), every call paying its own write, read and wake-up
//! where calls sharing a connection share them. At 10,000 nodes that is 10,000 connections per
//! router; and already at 100 nodes 16 short calls in flight over 100 connections cost a quarter
//! of the throughput of one connection (issue #32: 0.77 x raw, +5.8 µs of caller CPU per call),
//! because each connection carries too few calls to batch its writes. With it a router uses as
//! many nodes as its calls in flight need, and no more.
//!
//! How:
//! - **Which nodes**: the router orders the nodes by a hash of their id salted with its own
//!   random number ([`Ring`]); its window is `size` consecutive nodes of that order. Each router
//!   so has its own random subset (together they cover the cluster evenly), and a node joining
//!   or leaving moves no other node in or out of a window (a node's place depends on its id
//!   alone).
//! - **The window slides** in clusters of up to [`SLIDE_UP_TO`] nodes: it starts one node
//!   further along the ring every `size x per node` calls ([`Window::start`]), so that over time
//!   one router's calls reach every node evenly (as spreading over the whole cluster did: one
//!   gateway in front of 100 nodes must not load 2 of them only), while at any moment its calls
//!   in flight share a few connections: a window stays in place for about one generation of its
//!   calls in flight. The router then keeps a connection to every node, as before the aperture.
//!   Above, the window stays at the front of the ring: a router's connections stay as few as its
//!   load needs, and the cluster's routers, each with its own ring, share the nodes out.
//! - **How many** ([`Aperture::size`]): enough nodes for the router's calls in flight (the one
//!   being picked included) at `per node` calls each, at least [`RouterConfig::aperture_min`],
//!   at most all of them. The size follows the load call by call, with no state but two
//!   counters: when the nodes slow down, calls stay longer, more are in flight, and the window
//!   widens by itself (Little's law).
//! - **Calls per node** follow the calls' length: sharing a connection saves a few
//!   microseconds of CPU per call (one write, read and wake-up for several calls), which counts
//!   for calls of a hundred microseconds and not at all for a computation of a second, which
//!   wants a node of its own. So `per node` = [`RouterConfig::aperture_budget`] / the router's
//!   mean call time, between 1 and [`RouterConfig::aperture_load`]: calls queue behind each
//!   other on a node only as far as that costs about the budget (2 ms). A batch of long
//!   CPU-bound calls gets one node per call, exactly as without an aperture; 16 short calls in
//!   flight share a few connections. The mean starts at the budget (one call per node), so the
//!   first burst of a new router spreads.
//! - **At every size** above [`RouterConfig::aperture_above`] nodes (2, the smallest window):
//!   until issue #32 the window began above 256 nodes, and the worst cluster size for a busy
//!   caller was a middling one (0.77 x raw at 100 nodes, against 1.02 x at 1,000).
//!
//! Within the window the router chooses as everywhere (`pick.rs`). A window whose nodes are all
//! ejected, full or tried already does not stop a call: the pick then looks at the whole
//! cluster (`members.rs`). A router's calls are taken to be alike: calls of very different
//! lengths are better sent through two routers.
//!
//! [`RouterConfig::aperture_load`]: super::RouterConfig::aperture_load
//! [`RouterConfig::aperture_budget`]: super::RouterConfig::aperture_budget
//! [`RouterConfig::aperture_min`]: super::RouterConfig::aperture_min
//! [`RouterConfig::aperture_above`]: super::RouterConfig::aperture_above

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The default of [`RouterConfig::aperture_above`](super::RouterConfig::aperture_above): the
/// smallest window, [`MIN`].
pub(crate) const ABOVE: usize = MIN;

/// Up to this many nodes the window slides along the whole ring (see the module docs).
pub(crate) const SLIDE_UP_TO: usize = 256;

/// The default of [`RouterConfig::aperture_min`](super::RouterConfig::aperture_min).
pub(crate) const MIN: usize = 2;

/// The default of [`RouterConfig::aperture_load`](super::RouterConfig::aperture_load).
pub(crate) const LOAD: u32 = 16;

/// The default of [`RouterConfig::aperture_budget`](super::RouterConfig::aperture_budget).
pub(crate) const BUDGET: Duration = Duration::from_millis(2);

/// The weight of each call in the mean call time: 1/16 (the last few dozen calls count).
const WEIGHT_SHIFT: u32 = 4;

/// A router's window settings.
#[derive(Debug)]
pub(crate) struct Aperture {
    above: usize,
    min: usize,
    load: u32,
    budget_ns: u64,
    usage: Arc<Usage>,
}

/// What a router's calls do, counted by each of them ([`Usage::begin`], [`Usage::end`]).
#[derive(Debug)]
pub(crate) struct Usage {
    /// Calls in flight, on every node.
    in_flight: AtomicU32,
    /// The mean call time, nanoseconds (an exponentially weighted moving average).
    mean_ns: AtomicU64,
    /// Windows handed out ([`Aperture::window`]): where the window stands on the ring.
    picks: AtomicU64,
}

impl Usage {
    /// A call starts.
    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A call that took `took` ends. Two calls ending at once may lose one of their two updates
    /// of the mean: an average, not an account.
    pub(crate) fn end(&self, took: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let sample = i128::try_from(took.as_nanos()).unwrap_or(i128::MAX);
        let mean = i128::from(self.mean_ns.load(Ordering::Relaxed));
        let next = mean + ((sample - mean) >> WEIGHT_SHIFT);
        self.mean_ns.store(
            u64::try_from(next.max(0)).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl Aperture {
    /// A window over more than `above` nodes, of at least `min` nodes, up to `load` calls per
    /// node for calls much shorter than `budget`.
    pub(crate) fn new(above: usize, min: usize, load: u32, budget: Duration) -> Self {
        let budget_ns = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
        Self {
            above,
            min: min.max(1),
            load: load.max(1),
            budget_ns,
            usage: Arc::new(Usage {
                in_flight: AtomicU32::new(0),
                mean_ns: AtomicU64::new(budget_ns),
                picks: AtomicU64::new(0),
            }),
        }
    }

    /// The counters every call of this router counts itself in while it runs.
    pub(crate) fn usage(&self) -> Arc<Usage> {
        self.usage.clone()
    }

    /// Whether a cluster of `nodes` is large enough for a window.
    pub(crate) fn applies(&self, nodes: usize) -> bool {
        nodes > self.above
    }

    /// Calls in flight per window node: budget / mean call time, within 1 ..= `load`.
    pub(crate) fn per_node(&self) -> u32 {
        let mean = self.usage.mean_ns.load(Ordering::Relaxed).max(1);
        let fits = self.budget_ns / mean;
        u32::try_from(fits).unwrap_or(u32::MAX).clamp(1, self.load)
    }

    /// The window for the next call among `nodes`: where on the ring it starts, how many nodes
    /// it holds, and how many calls in flight each may have before a node outside looks better
    /// (see the module docs).
    pub(crate) fn window(&self, nodes: usize) -> Window {
        let per_node = self.per_node();
        let calls = u64::from(self.usage.in_flight.load(Ordering::Relaxed)) + 1;
        let wanted = calls.div_ceil(u64::from(per_node));
        let size = usize::try_from(wanted)
            .unwrap_or(usize::MAX)
            .max(self.min)
            .min(nodes);
        // One step along the ring every `size x per node` windows: about one generation of the
        // calls in flight. Only a window that can slide counts its picks: above SLIDE_UP_TO nodes
        // no call pays for the shared counter.
        let start = if size >= nodes || nodes > SLIDE_UP_TO {
            0
        } else {
            let picks = self.usage.picks.fetch_add(1, Ordering::Relaxed);
            let stay = (size as u64).saturating_mul(u64::from(per_node)).max(1);
            usize::try_from((picks / stay) % nodes as u64).unwrap_or(0)
        };
        Window {
            start,
            size,
            per_node: u64::from(per_node),
        }
    }
}

/// A router's window for one call ([`Aperture::window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Where on the ring it starts (it runs on past the ring's end to its beginning).
    pub(crate) start: usize,
    /// How many nodes of the ring it holds.
    pub(crate) size: usize,
    /// A window node whose score (calls in flight, from every caller) reaches this has its
    /// share: the call then looks at the whole cluster too.
    pub(crate) per_node: u64,
}

/// The salted order of a router's nodes (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring {
    salt: u64,
}

impl Ring {
    /// The order given by `salt` (the router's own random number, or derived from its seed).
    pub(crate) fn new(salt: u64) -> Self {
        Self { salt }
    }

    /// A node's place: a hash of its id under this ring's salt.
    pub(crate) fn place(&self, id: &str) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.salt.hash(&mut hasher);
        id.hash(&mut hasher);
        hasher.finish()
    }

    /// Sorts `items` into this ring's order, `id` naming each.
    pub(crate) fn sort<T>(&self, items: &mut [T], id: impl Fn(&T) -> &str) {
        items.sort_by_cached_key(|item| self.place(id(item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn set(aperture: &Aperture, in_flight: u32, mean: Duration) {
        let usage = aperture.usage();
        usage.in_flight.store(in_flight, Ordering::Relaxed);
        usage
            .mean_ns
            .store(mean.as_nanos() as u64, Ordering::Relaxed);
    }

    #[test]
    fn long_calls_get_a_node_each_and_short_ones_share_within_the_bounds() {
        let aperture = Aperture::new(256, 3, 8, MS);
        assert!(!aperture.applies(256) && aperture.applies(257));
        assert_eq!(
            aperture.per_node(),
            1,
            "a new router spreads its first calls"
        );
        assert_eq!(
            aperture.window(10_000).size,
            3,
            "no call in flight: the minimum"
        );
        set(&aperture, 499, Duration::from_secs(1));
        assert_eq!(
            aperture.window(10_000).size,
            500,
            "499 long calls running + the one picked"
        );
        assert_eq!(
            aperture.window(300).size,
            300,
            "never more than the cluster"
        );
        set(&aperture, 15, Duration::from_micros(250));
        assert_eq!(aperture.per_node(), 4, "1 ms / 250 µs");
        assert_eq!(aperture.window(10_000).size, 4, "16 calls at 4 per node");
        set(&aperture, 15, Duration::from_micros(10));
        assert_eq!(aperture.per_node(), 8, "at most `load`");
        assert_eq!(
            aperture.window(10_000).size,
            3,
            "16 calls at 8 per node, but the minimum"
        );
        set(&aperture, u32::MAX, Duration::ZERO);
        assert_eq!(aperture.window(10_000).size, 10_000);
    }

    #[test]
    fn the_mean_follows_the_calls_and_starts_at_the_budget() {
        let aperture = Aperture::new(256, 3, 8, MS);
        let usage = aperture.usage();
        for _ in 0..200 {
            usage.begin();
            usage.end(Duration::from_micros(100));
        }
        assert_eq!(
            aperture.per_node(),
            8,
            "short calls: 1 ms / ~100 µs, at most 8"
        );
        for _ in 0..200 {
            usage.begin();
            usage.end(Duration::from_secs(2));
        }
        assert_eq!(aperture.per_node(), 1, "long calls: one per node again");
        usage.begin();
        usage.end(Duration::MAX);
        assert_eq!(aperture.per_node(), 1, "an absurd time saturates");
        assert_eq!(usage.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn absurd_settings_give_a_usable_window() {
        for (above, min, load, budget) in [
            (0, 0, 0, Duration::ZERO),
            (usize::MAX, usize::MAX, u32::MAX, Duration::MAX),
            (0, 1, u32::MAX, Duration::from_nanos(1)),
        ] {
            let aperture = Aperture::new(above, min, load, budget);
            for (in_flight, mean) in [(0, Duration::ZERO), (u32::MAX, Duration::MAX)] {
                set(&aperture, in_flight, mean);
                assert!(aperture.per_node() >= 1);
                assert_eq!(aperture.window(0).size, 0, "an empty cluster");
                let size = aperture.window(10_000).size;
                assert!((1..=10_000).contains(&size), "{size}");
            }
        }
    }

    #[test]
    fn each_salt_gives_its_own_subset_and_a_joining_node_moves_no_other() {
        let ids: Vec<String> = (0..1000).map(|i| format!("node-{i}")).collect();
        let window = |salt: u64, ids: &[String]| {
            let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
            Ring::new(salt).sort(&mut sorted, |s| s);
            sorted[..32]
                .iter()
                .map(|s| s.to_string())
                .collect::<std::collections::HashSet<_>>()
        };
        let (a, b) = (window(1, &ids), window(2, &ids));
        assert!(
            a.intersection(&b).count() < 8,
            "two routers share most of their windows"
        );
        // 16 routers cover about 1 - (1 - 32/1000)^16 = 41 % of the nodes.
        let covered: std::collections::HashSet<String> =
            (0..16).flat_map(|salt| window(salt, &ids)).collect();
        assert!(covered.len() > 300, "16 windows cover {}", covered.len());
        let mut more = ids.clone();
        more.push("newcomer".into());
        let after = window(1, &more);
        let kept = a.intersection(&after).count();
        assert!(kept >= 31, "a join moved {} nodes out", 32 - kept);
    }
}
