//! The lease reaper: the background task that evicts nodes whose heartbeats stopped.
//!
//! It wakes four times per heartbeat interval, so a node is evicted at most a quarter interval
//! after its TTL runs out, and stops when the master's shutdown token is cancelled.
//!
//! **A master that was paused does not judge the nodes by its own silence** (Eureka's lesson).
//! When a tick comes more than one heartbeat interval late, this process did not run meanwhile
//! (SIGSTOP, a long stall, a VM frozen for a migration): the heartbeats that "stopped" are the
//! ones it could not read. It then renews every lease, so that each node has one full TTL from
//! now to be heard again (their retries and queued heartbeats arrive within an interval), logs
//! the pause once, and judges nobody on that tick. A node that really died meanwhile is evicted
//! one TTL later than it would have been. A master that runs but hears too few renewals (cut off
//! from the network) stops evicting too: that is the registry's `preservation` module.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::registry::Registry;

/// Runs the reaper until `shutdown` is cancelled.
pub(crate) async fn run_reaper(registry: Registry, shutdown: CancellationToken) {
    let period = (registry.interval() / 4).max(std::time::Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let now = Instant::now();
                let late = now.saturating_duration_since(last).saturating_sub(period);
                last = now;
                if late > registry.interval() {
                    paused(&registry, late, now);
                } else {
                    registry.evict_expired(now);
                }
                crate::observe::refresh();
            }
        }
    }
}

/// The reaper's tick came `late`: renew every lease instead of judging any (see the module docs).
fn paused(registry: &Registry, late: Duration, now: Instant) {
    let renewed = registry.renew_all(now);
    warn!(
        pause_ms = late.as_millis() as u64,
        renewed,
        "the master did not run for a while (paused, stalled or frozen): every lease renewed \
         before any node is judged"
    );
}
