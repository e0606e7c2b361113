//! The lease reaper: the background task that evicts nodes whose heartbeats stopped.
//!
//! It wakes four times per heartbeat interval, so a node is evicted at most a quarter interval
//! after its TTL runs out, and stops when the master's shutdown token is cancelled.

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// Runs the reaper until `shutdown` is cancelled.
pub(crate) async fn run_reaper(registry: Registry, shutdown: CancellationToken) {
    let period = (registry.interval() / 4).max(std::time::Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                registry.evict_expired(Instant::now());
                crate::observe::refresh();
            }
        }
    }
}
