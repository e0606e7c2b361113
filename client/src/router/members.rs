//! The router's view of the cluster: the endpoints it follows from the membership feed, and the
//! choice of a node for each call.
//!
//! The endpoint list is an immutable snapshot ([`View`]) swapped atomically ([`ArcSwap`]) at each
//! membership change, so choosing a node takes no lock shared by the calls: it loads the
//! snapshot, scores a few endpoints of the router's window (`aperture.rs`, `pick.rs`) and counts
//! the call on the chosen one with atomics.
//!
//! [`ArcSwap`]: arc_swap::ArcSwap

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use distribution_shared::ServiceClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::endpoint::{self, Endpoint};
use super::{Shared, pick};
use crate::membership::Membership;

/// The router's endpoints at one membership snapshot.
pub(super) struct View<C: ServiceClient> {
    /// Every endpoint, in the membership's order.
    pub(super) all: Vec<Arc<Endpoint<C>>>,
    /// The same endpoints in the router's ring order, twice over, so that a window running past
    /// the ring's end is one slice; empty while the cluster is too small for an aperture (see
    /// `aperture.rs`).
    pub(super) ring: Vec<Arc<Endpoint<C>>>,
}

impl<C: ServiceClient> Default for View<C> {
    fn default() -> Self {
        Self {
            all: Vec::new(),
            ring: Vec::new(),
        }
    }
}

impl<C: ServiceClient> Shared<C> {
    pub(super) fn endpoints(&self) -> Arc<View<C>> {
        self.endpoints.load_full()
    }

    /// Picks the least-used node not yet `tried` (exactly in small clusters, the less used of two
    /// random nodes in large ones: `pick::choose`) and counts the call on it. No lock is shared
    /// by the calls: two calls picking at the same instant may both take the node that was least
    /// used, and the next picks even it out. Nodes that are ejected (or probed
    /// by another call after their pause) or full are used only when no other node is left
    /// (better a doubtful node than no answer); nodes in maintenance are never picked.
    pub(super) fn pick(&self, tried: &[Arc<str>]) -> Option<endpoint::InFlight<C>> {
        self.choose(tried, true)
    }

    /// Like [`Shared::pick`], but only a node that takes calls and is not full, or none: a
    /// backup request is worth sending only to a node that is likely to answer.
    pub(super) fn pick_healthy(&self, tried: &[Arc<str>]) -> Option<endpoint::InFlight<C>> {
        self.choose(tried, false)
    }

    fn choose(&self, tried: &[Arc<str>], fallback: bool) -> Option<endpoint::InFlight<C>> {
        // No lock shared by every call: the thread's own RNG, unless a seed asks for
        // reproducible draws (tests).
        match &self.rng {
            Some(seeded) => {
                let mut rng = seeded.lock();
                self.choose_with(tried, fallback, &mut *rng)
            }
            None => self.choose_with(tried, fallback, &mut rand::rng()),
        }
    }

    fn choose_with<R: rand::Rng>(
        &self,
        tried: &[Arc<str>],
        fallback: bool,
        rng: &mut R,
    ) -> Option<endpoint::InFlight<C>> {
        let view = self.endpoints();
        let now = Instant::now();
        let fresh = |e: &Arc<Endpoint<C>>| !tried.contains(&e.node.id) && !e.in_maintenance();
        let healthy = |e: &Arc<Endpoint<C>>| fresh(e) && e.takes_calls(now) && !e.is_full();
        let score = |e: &Arc<Endpoint<C>>| e.score();
        let exact = self.config.exact_pick_up_to;
        // A healthy node of the window with room for the call; else the less used of it and a
        // healthy node anywhere (the window is a preference, not a wall); else (for `pick`)
        // any node still worth a try. A small cluster has no window: the whole cluster.
        let nodes = view.ring.len() / 2;
        let window = self.aperture.window(nodes);
        let ring = &view.ring[window.start..window.start + window.size];
        let in_window = exact.max(WINDOW_EXACT_UP_TO);
        let near = pick::choose(ring, in_window, healthy, score, rng).map(|i| &ring[i]);
        let found = match near {
            Some(e) if window.size == nodes || e.score() < window.per_node => Some(e),
            near => {
                let far = pick::choose(&view.all, exact, healthy, score, rng).map(|i| &view.all[i]);
                match (near, far) {
                    (Some(n), Some(f)) => Some(if f.score() < n.score() { f } else { n }),
                    (n, f) => n.or(f),
                }
            }
        };
        let found = found.or_else(|| {
            fallback
                .then(|| pick::choose(&view.all, exact, fresh, score, rng))
                .flatten()
                .map(|i| &view.all[i])
        })?;
        Some(found.begin())
    }

    /// Rebuilds the endpoint list for a new membership, keeping the endpoints (and so the
    /// connections and counters) of nodes that stay. Only members of the router's service that
    /// carry its tags become endpoints: a router never sends a request to a node of another
    /// service, which could not decode it (and would be ejected for it).
    pub(super) fn sync(&self, membership: &Membership) {
        let old = self.endpoints();
        let by_id: HashMap<&str, &Arc<Endpoint<C>>> =
            old.all.iter().map(|e| (&*e.node.id, e)).collect();
        let next: Vec<Arc<Endpoint<C>>> = membership
            .members
            .iter()
            .filter(|m| m.serves(C::SERVICE, &self.config.tags))
            .map(|m| match by_id.get(&*m.id) {
                Some(e) if e.is(m) => {
                    e.follow_load(m);
                    Arc::clone(e)
                }
                _ => Arc::new(Endpoint::new(
                    m,
                    self.config.idle_close,
                    self.aperture.usage(),
                )),
            })
            .collect();
        let kept: std::collections::HashSet<*const Endpoint<C>> =
            next.iter().map(Arc::as_ptr).collect();
        let mut ring = Vec::new();
        if self.aperture.applies(next.len()) {
            ring = next.clone();
            self.ring.sort(&mut ring, |e| &e.node.id);
            ring.extend_from_within(..);
        }
        self.endpoints.store(Arc::new(View { all: next, ring }));
        for gone in old.all.iter().filter(|e| !kept.contains(&Arc::as_ptr(e))) {
            gone.remove();
        }
    }
}

pub(super) async fn follow<C: ServiceClient>(
    shared: Weak<Shared<C>>,
    mut membership: watch::Receiver<Membership>,
    stop: CancellationToken,
) {
    // Also sets the per-node gauges of the live nodes again every few seconds: an exporter that
    // drops gauges left unchanged (the demo's, after a minute) then forgets only departed nodes.
    let mut refresh = tokio::time::interval(GAUGE_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.run_until_cancelled(membership.changed()) => {
                let Some(Ok(())) = changed else { return };
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let snapshot = membership.borrow_and_update().clone();
                shared.sync(&snapshot);
            }
            _ = refresh.tick() => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                for endpoint in shared.endpoints().all.iter() {
                    endpoint.refresh_gauge();
                }
            }
        }
    }
}

/// Up to this many nodes a window is searched exactly (least used of all): it holds about one
/// node per call in flight, and calls that many in flight are long enough for the scan not to
/// count.
const WINDOW_EXACT_UP_TO: usize = 256;

/// How often a router sets its per-node gauges again (see `follow`).
const GAUGE_REFRESH: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{LoadReport, Member};
    use crate::router::{CallRouter, RouterConfig};
    use std::collections::HashSet;

    use crate::router::testing::EchoClient;

    /// A router (seeded) over `n` members reporting no load; their reports, by id.
    fn router(n: usize) -> (CallRouter<EchoClient>, HashMap<String, Arc<LoadReport>>) {
        let mut reports = HashMap::new();
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let report = Arc::new(LoadReport::new(0, 1024));
                reports.insert(format!("m{i}"), report.clone());
                Member::new(&format!("m{i}"), &format!("127.1.0.1:{}", 1000 + i), report)
            })
            .collect();
        let (tx, rx) = watch::channel(Membership {
            index: 1,
            members: Arc::from(members),
        });
        std::mem::forget(tx);
        let router = CallRouter::new(rx, RouterConfig::default().with_seed(Some(11)));
        (router, reports)
    }

    fn ring_ids(router: &CallRouter<EchoClient>, first: usize) -> Vec<String> {
        let view = router.shared.endpoints();
        view.ring[..first]
            .iter()
            .map(|e| e.node.id.to_string())
            .collect()
    }

    /// Makes the router's mean call time 20 µs, as after many short calls.
    fn after_short_calls(router: &CallRouter<EchoClient>) {
        let usage = router.shared.aperture.usage();
        for _ in 0..200 {
            usage.begin();
            usage.end(Duration::from_micros(20));
        }
    }

    /// `n` calls picked and held (still in flight), and the nodes they went to.
    fn hold(
        router: &CallRouter<EchoClient>,
        n: usize,
    ) -> (Vec<endpoint::InFlight<EchoClient>>, HashSet<String>) {
        let calls: Vec<_> = (0..n)
            .map(|_| router.shared.pick(&[]).expect("a node"))
            .collect();
        let picked = calls
            .iter()
            .map(|c| c.endpoint().node.id.to_string())
            .collect();
        (calls, picked)
    }

    #[tokio::test]
    async fn held_picks_fill_the_front_of_the_ring_one_per_node() {
        let (router, _) = router(1_000);
        // Up to 256 the window is searched exactly (above, two random draws may both find busy
        // nodes, and the call then looks at the whole cluster).
        let (_calls, picked) = hold(&router, 256);
        assert_eq!(
            picked.len(),
            256,
            "a new router gives each call its own node"
        );
        let front: HashSet<String> = ring_ids(&router, 256).into_iter().collect();
        assert_eq!(picked, front, "and only the first 256 of its ring");
    }

    #[tokio::test]
    async fn short_calls_share_the_minimum_window() {
        let (router, _) = router(1_000);
        after_short_calls(&router);
        let (_calls, picked) = hold(&router, 16);
        // 2 ms / 20 µs, at most 16 per node: a window of ceil(16 / 16) nodes, at least 2.
        assert!(
            picked.len() <= 2,
            "16 short calls on {} nodes",
            picked.len()
        );
    }

    #[tokio::test]
    async fn a_window_busy_with_other_callers_calls_sends_the_call_outside() {
        let (router, reports) = router(1_000);
        // Other callers keep 10 calls on every node of this router's window (its first 2).
        let front = ring_ids(&router, 2);
        for id in &front {
            reports[id].set(10, 1024);
        }
        // Calls held (long ones: each may have a node of its own).
        let (_calls, picked) = hold(&router, 50);
        assert_eq!(picked.len(), 50);
        for id in &front {
            assert!(
                !picked.contains(id),
                "picked {id}, busy with 10 other calls"
            );
        }
    }

    #[tokio::test]
    async fn a_cluster_no_larger_than_the_smallest_window_has_no_window() {
        let (two, _) = router(2);
        assert!(two.shared.endpoints().ring.is_empty());
        let (three, _) = router(3);
        assert_eq!(
            three.shared.endpoints().ring.len(),
            6,
            "the ring, twice over"
        );
    }

    #[tokio::test]
    async fn short_calls_keep_to_a_few_nodes_at_a_time_and_reach_all_hundred_evenly() {
        let (router, _) = router(100);
        let mut served: HashMap<String, u32> = HashMap::new();
        // 16 calls in flight at a time, 32,000 calls: the window (2 nodes of 16 calls each)
        // steps one node along the ring every 32 calls, ten times round the ring of 100.
        for _ in 0..2_000 {
            // The calls held here end after however long this loop takes (debug builds): the
            // mean is set back to 20 µs each time.
            after_short_calls(&router);
            let (calls, picked) = hold(&router, 16);
            assert!(
                picked.len() <= 3,
                "16 short calls in flight on {} nodes",
                picked.len()
            );
            for call in &calls {
                *served
                    .entry(call.endpoint().node.id.to_string())
                    .or_default() += 1;
            }
        }
        assert_eq!(served.len(), 100, "every node served");
        let (least, most) = (
            *served.values().min().unwrap(),
            *served.values().max().unwrap(),
        );
        // The even share is 320.
        assert!(
            (288..=352).contains(&least) && (288..=352).contains(&most),
            "calls per node between {least} and {most}, the even share 320"
        );
    }
}
