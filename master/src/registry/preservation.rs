//! Self-preservation (Eureka's lesson): when most nodes go silent at once, the silence is more
//! likely the master's than theirs, so the master stops evicting until renewals recover.
//!
//! A master cut off from the network (a dropped link, a firewall change, a container
//! disconnected) hears no heartbeat while every node keeps serving. Judging each lease on its
//! own, it would evict the whole cluster one TTL later and its routers would see no node at all;
//! the nodes would all register again at once when the link heals. Eureka answers with
//! *self-preservation*: it counts the renewals it receives against the renewals it expects, and
//! below a share (85 %) it stops expiring leases. [`crate::lease`] handles the other case where
//! the silence is the master's own, a paused process; this module handles a master that runs
//! but hears nothing.
//!
//! **The rule.** On each reaper sweep, before evicting:
//!
//! - *expected* renewals are those the registered nodes owe over the window, each at the
//!   interval it was given (its `terms`), and *received* those (heartbeats and registrations)
//!   counted over the same window;
//! - the master is **degraded** when received < `share` × expected
//!   ([`MasterConfig::self_preservation`], default 0.85) **and** at least [`MIN_SILENT`] (2)
//!   nodes are silent (no renewal for 1.5 intervals, the `late` state). One node going silent
//!   is that node's problem, never the master's: in a 3-node cluster one dead node is a third
//!   of the renewals, and a share alone would keep it listed forever. So a single node that
//!   really dies is evicted on time whatever the cluster's size, while 2 of 3 silent, or 8 of
//!   10, stop evictions;
//! - while degraded, nobody is evicted (late nodes are still marked and listed `late`); the state
//!   is logged once (warn), reported by `GET /health`, by `GET /v1/nodes` (`degraded`) and by
//!   the [`crate::observe::SELF_PRESERVATION`] gauge;
//! - it ends when fewer than [`MIN_SILENT`] nodes are silent, or when renewals are back above
//!   the midpoint between the share and 100 % (hysteresis: a cluster hovering at the threshold
//!   does not flap). It is logged once ("ended") and **every lease is renewed**: the nodes that
//!   reach the master again arrive over one interval, and without the renewal the last of them
//!   would be evicted just before its heartbeat. A node that really died meanwhile is evicted one
//!   TTL after the end.
//!
//! **The window** is two heartbeat intervals, made of eight sub-windows of a quarter interval
//! (the reaper's period), counters only: memory is constant whatever the cluster's size or
//! rate. Only complete sub-windows are counted, so each node owes a whole number of renewals (2)
//! and nodes beating in step do not make the count swing. After a cut, the first lease expires
//! at the earliest two intervals later; by then the window holds almost nothing from before
//! the cut and every node is silent, so preservation is engaged on that very sweep, before any
//! eviction.
//!
//! **The price**: while degraded, nodes that really died stay listed (as `late`). Routers eject
//! them at the first failed call, so calls do not fail, but the list is not trusted until the
//! state ends; an operator sees why in `/health`. With the default share, 2 of 10 nodes dying
//! at once (20 %) are also kept: set a lower share (`--self-preservation 0.5`) to evict them,
//! or 0 to turn the mechanism off.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::terms::Terms;
use super::{Registry, State};
use crate::config::MasterConfig;
use crate::observe;

/// The fewest silent nodes that can make the master degraded: one silent node is its own fault.
pub const MIN_SILENT: usize = 2;

/// Sub-windows in the window (of a quarter interval each: two intervals in all).
const SUB_WINDOWS: usize = 8;

/// The self-preservation state of a registry (see the module docs).
#[derive(Debug)]
pub(super) struct Preservation {
    /// Degraded below this share of the expected renewals; `None`: off.
    share: Option<f64>,
    window: Window,
    /// Why evictions are stopped, while they are.
    degraded: Option<Arc<str>>,
}

/// Renewals counted per sub-window, in a ring: constant memory.
#[derive(Debug)]
struct Window {
    origin: Instant,
    sub: Duration,
    /// (sub-window number since `origin`, renewals in it); the current one is being filled.
    counts: [(u64, u64); SUB_WINDOWS + 1],
}

/// What a sweep found, for the verdict: gathered while it looks at every node anyway.
#[derive(Debug, Default)]
pub(super) struct Tally {
    nodes: usize,
    silent: usize,
    /// Renewals a second the nodes owe.
    rate: f64,
}

impl Tally {
    /// Counts one node with lease `terms`, silent for `silent`.
    pub(super) fn add(&mut self, terms: &Terms, silent: Duration) {
        self.nodes += 1;
        self.rate += 1.0 / terms.interval.max(Duration::from_millis(1)).as_secs_f64();
        if silent > terms.late_after() {
            self.silent += 1;
        }
    }
}

impl Preservation {
    pub(super) fn new(config: &MasterConfig) -> Self {
        let share = config
            .self_preservation
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| s.min(1.0));
        Self {
            share,
            window: Window {
                origin: Instant::now(),
                sub: (config.heartbeat_interval / 4).max(Duration::from_millis(10)),
                counts: [(0, 0); SUB_WINDOWS + 1],
            },
            degraded: None,
        }
    }

    /// Counts one renewal (a heartbeat or a registration) at `now`.
    pub(super) fn renewed(&mut self, now: Instant) {
        let slot = self.window.slot(now);
        let count = &mut self.window.counts[(slot % self.window.counts.len() as u64) as usize];
        if count.0 != slot {
            *count = (slot, 0);
        }
        count.1 = count.1.saturating_add(1);
    }

    /// Why evictions are stopped, while they are.
    pub(super) fn reason(&self) -> Option<String> {
        self.degraded.as_deref().map(str::to_owned)
    }
}

impl Window {
    fn slot(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.sub.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// The renewals of the complete sub-windows of the last window, and the time they cover.
    fn recent(&self, now: Instant) -> (u64, Duration) {
        let current = self.slot(now);
        let first = current.saturating_sub(SUB_WINDOWS as u64);
        let received = self
            .counts
            .iter()
            .filter(|(slot, _)| (first..current).contains(slot))
            .map(|(_, n)| n)
            .sum();
        (received, self.sub * (current - first) as u32)
    }
}

/// The verdict of the sweep at `now` that found `tally`: whether it may evict. Starts or ends
/// the degraded state (and renews every lease when it ends; see the module docs).
pub(super) fn allows_eviction(state: &mut State, now: Instant, tally: &Tally) -> bool {
    let preservation = &mut state.preservation;
    let Some(share) = preservation.share else {
        return true;
    };
    let (received, span) = preservation.window.recent(now);
    let expected = tally.rate * span.as_secs_f64();
    let ratio = if expected > 0.0 {
        received as f64 / expected
    } else {
        1.0
    };
    let many_silent = tally.silent >= MIN_SILENT;
    let was = preservation.degraded.is_some();
    let figures = || {
        format!(
            "{received} of {expected:.0} expected renewals in the last {} ms ({:.0} %) and {} of \
             {} nodes silent",
            span.as_millis(),
            ratio * 100.0,
            tally.silent,
            tally.nodes,
        )
    };
    if was && (!many_silent || ratio >= (1.0 + share) / 2.0) {
        info!(
            "self-preservation ended ({}): every lease renewed, evictions resume",
            figures()
        );
        preservation.degraded = None;
        renew_every_lease(state, now);
        metrics::gauge!(observe::SELF_PRESERVATION).set(0.0);
        // This sweep judged leases that are now renewed: it evicts nobody.
        return false;
    }
    let degraded = was || (many_silent && ratio < share);
    if degraded {
        // Kept up to date while it lasts (what `/health` shows); logged once.
        let reason = format!(
            "self-preservation: {}, below {:.0} %: evictions stopped until renewals recover",
            figures(),
            share * 100.0
        );
        if !was {
            warn!("{reason}");
        }
        preservation.degraded = Some(reason.into());
    }
    metrics::gauge!(observe::SELF_PRESERVATION).set(if degraded { 1.0 } else { 0.0 });
    !degraded
}

/// Gives every lease one TTL from `now` (a silence that was not the nodes' own); returns how
/// many.
pub(super) fn renew_every_lease(state: &mut State, now: Instant) -> usize {
    for entry in state.nodes.values_mut() {
        entry.last_seen = entry.last_seen.max(now);
    }
    state.nodes.len()
}

impl Registry {
    /// Renews every lease as of `now` (the master was paused: the nodes' silence was its own, see
    /// `lease`); returns how many.
    pub fn renew_all(&self, now: Instant) -> usize {
        renew_every_lease(&mut self.lock(), now)
    }

    /// Why the master has stopped evicting (self-preservation: most renewals stopped arriving,
    /// see `registry::preservation`); `None` while it evicts as usual.
    pub fn degraded(&self) -> Option<String> {
        self.lock().preservation.reason()
    }
}

#[cfg(test)]
mod tests;
