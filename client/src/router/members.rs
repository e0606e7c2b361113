//! The router's view of the cluster: the endpoints it follows from the membership feed, and the
//! choice of a node for each call.
//!
//! The endpoint list is an immutable snapshot swapped atomically ([`ArcSwap`]) at each membership
//! change, so choosing a node takes no lock shared by the calls: it loads the snapshot, scores a
//! few endpoints (`pick.rs`) and counts the call on the chosen one with atomics.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use distribution_shared::ServiceClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::endpoint::{self, Endpoint};
use super::{Shared, pick};
use crate::membership::Membership;

impl<C: ServiceClient> Shared<C> {
    pub(super) fn endpoints(&self) -> Arc<Vec<Arc<Endpoint<C>>>> {
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
        let endpoints = self.endpoints();
        let now = Instant::now();
        let fresh = |e: &Arc<Endpoint<C>>| !tried.contains(&e.node.id) && !e.in_maintenance();
        let score = |e: &Arc<Endpoint<C>>| e.score();
        let exact = self.config.exact_pick_up_to;
        let found = pick::choose(
            &endpoints,
            exact,
            |e| fresh(e) && e.takes_calls(now) && !e.is_full(),
            score,
            rng,
        )
        .or_else(|| {
            fallback
                .then(|| pick::choose(&endpoints, exact, |e| fresh(e), score, rng))
                .flatten()
        })?;
        Some(endpoints[found].begin())
    }

    /// Rebuilds the endpoint list for a new membership, keeping the endpoints (and so the
    /// connections and counters) of nodes that stay. Only members of the router's service that
    /// carry its tags become endpoints: a router never sends a request to a node of another
    /// service, which could not decode it (and would be ejected for it).
    pub(super) fn sync(&self, membership: &Membership) {
        let old = self.endpoints();
        let by_id: HashMap<&str, &Arc<Endpoint<C>>> =
            old.iter().map(|e| (&*e.node.id, e)).collect();
        let next: Vec<Arc<Endpoint<C>>> = membership
            .members
            .iter()
            .filter(|m| m.serves(C::SERVICE, &self.config.tags))
            .map(|m| match by_id.get(&*m.id) {
                Some(e) if e.is(m) => {
                    e.follow_load(m);
                    Arc::clone(e)
                }
                _ => Arc::new(Endpoint::new(m, self.config.idle_close)),
            })
            .collect();
        let kept: std::collections::HashSet<*const Endpoint<C>> =
            next.iter().map(Arc::as_ptr).collect();
        self.endpoints.store(Arc::new(next));
        for gone in old.iter().filter(|e| !kept.contains(&Arc::as_ptr(e))) {
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
                for endpoint in shared.endpoints().iter() {
                    endpoint.refresh_gauge();
                }
            }
        }
    }
}

/// How often a router sets its per-node gauges again (see `follow`).
const GAUGE_REFRESH: Duration = Duration::from_secs(5);
