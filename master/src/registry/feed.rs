//! The change feed's ring: the newest [`HISTORY`] membership events, owned by the registry's
//! state and written under its lock by the change that makes each event (heartbeats write
//! nothing unless a late node comes back).
//!
//! Every event carries the registry's index after its change (it grows by one per event), so
//! the ring is in index order: a reader's place is found by bisection. Readers are woken
//! through a `tokio::sync::watch` of the newest index, so a burst costs one wake-up, not one
//! per event. What reads it: `crate::events` (the Rust stream and `GET /v1/events`, every
//! event) and the registry's changes since a follower's view (`GET /v1/changes`, the events
//! that change the node set, [`changes_the_set`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use distribution_shared::wire::{EventKind, MembershipEvent};
use tokio::sync::watch;

/// How many events the log keeps: a reader resuming from an older index has missed some.
pub const HISTORY: usize = 1024;

/// The ring of recent events; owned by the registry's state.
#[derive(Debug)]
pub(crate) struct EventLog {
    ring: VecDeque<Arc<MembershipEvent>>,
    newest: watch::Sender<u64>,
    /// The index of the newest event dropped from the ring that changed the node set (see
    /// [`changes_the_set`]); 0 while none was.
    dropped_change: u64,
}

/// Whether an event of `kind` changes what a follower of the node set routes on: every kind
/// but `late` and `back`, which only say how a node's heartbeats arrive. `GET /v1/changes`
/// answers with these alone, so that a burst of `late` events (a thousand nodes missing a beat
/// together) neither fills its answers nor pushes its followers beyond the history.
pub(crate) fn changes_the_set(kind: EventKind) -> bool {
    !matches!(kind, EventKind::Late | EventKind::Back)
}

/// The node an event is about: cheap clones of its registry entry's fields.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) id: Arc<str>,
    pub(crate) addr: Arc<str>,
    pub(crate) service: Arc<str>,
    pub(crate) tags: Arc<[Arc<str>]>,
}

/// What a reader gets from [`Registry::events_since`](super::Registry::events_since).
#[derive(Debug, Clone, Default)]
pub struct Since {
    /// The events after the index asked for that the log still holds, oldest first.
    pub events: Vec<Arc<MembershipEvent>>,
    /// Whether events between the index asked for and the first of `events` are gone from the
    /// ring (the reader was away for more than [`HISTORY`] events).
    pub missed: bool,
}

impl EventLog {
    pub(crate) fn new() -> Self {
        Self {
            ring: VecDeque::with_capacity(64),
            newest: watch::Sender::new(0),
            dropped_change: 0,
        }
    }

    /// Appends an event at `index` (the caller bumped the registry's index).
    pub(crate) fn record(&mut self, index: u64, kind: EventKind, node: &Subject, reason: String) {
        if self.ring.len() == HISTORY
            && let Some(dropped) = self.ring.pop_front()
            && changes_the_set(dropped.kind)
        {
            self.dropped_change = dropped.index;
        }
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.ring.push_back(Arc::new(MembershipEvent {
            index,
            time_ms,
            kind,
            node: node.id.to_string(),
            addr: node.addr.to_string(),
            service: node.service.to_string(),
            tags: match kind {
                EventKind::Join | EventKind::Moved => {
                    node.tags.iter().map(|t| t.to_string()).collect()
                }
                _ => Vec::new(),
            },
            reason,
        }));
        self.newest.send_replace(index);
    }

    /// The events after `index`. An `index` beyond the newest event means the reader followed
    /// an earlier master process (indexes start from zero in each): it gets the whole ring.
    pub(crate) fn since(&self, index: u64) -> Since {
        let from = self.start(index);
        let oldest = self.ring.front().map_or(from + 1, |e| e.index);
        // The ring is in index order: the first event after `from` by bisection.
        let first = self.ring.partition_point(|e| e.index <= from);
        let events: Vec<_> = self.ring.range(first..).cloned().collect();
        Since {
            missed: oldest > from + 1,
            events,
        }
    }

    /// Where a reader at `index` starts: there, or at 0 for an index beyond the newest event.
    fn start(&self, index: u64) -> u64 {
        let newest = self.ring.back().map_or(0, |e| e.index);
        if index > newest { 0 } else { index }
    }

    /// The events after `index` that change the node set ([`changes_the_set`]), for a follower
    /// of the set: `missed` only when one of those is gone from the ring, however many `late`
    /// and `back` events pushed it out.
    pub(crate) fn set_changes_since(&self, index: u64) -> Since {
        let since = self.since(index);
        Since {
            missed: since.missed && self.dropped_change > self.start(index),
            events: since
                .events
                .into_iter()
                .filter(|e| changes_the_set(e.kind))
                .collect(),
        }
    }

    /// A receiver of the newest event's index.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Subject {
        Subject {
            id: "n".into(),
            addr: "a:1".into(),
            service: "default".into(),
            tags: Arc::from(Vec::new()),
        }
    }

    fn log_with(n: u64) -> EventLog {
        let mut log = EventLog::new();
        for i in 1..=n {
            log.record(i, EventKind::Join, &node(), String::new());
        }
        log
    }

    #[test]
    fn a_burst_of_late_and_back_events_leaves_followers_of_the_set_within_the_history() {
        // Two joins, then twice the history of `late` and `back` (a cluster-wide hiccup), then
        // a leave.
        let mut log = log_with(2);
        let burst = 2 * HISTORY as u64;
        for i in 3..3 + burst {
            let kind = if i % 2 == 0 {
                EventKind::Back
            } else {
                EventKind::Late
            };
            log.record(i, kind, &node(), String::new());
        }
        log.record(3 + burst, EventKind::Leave, &node(), String::new());
        assert!(log.since(2).missed, "the event stream reports its gap");
        let after_joins = log.set_changes_since(2);
        assert!(!after_joins.missed, "only late and back are gone since 2");
        assert_eq!(
            after_joins
                .events
                .iter()
                .map(|e| (e.index, e.kind))
                .collect::<Vec<_>>(),
            [(3 + burst, EventKind::Leave)],
            "late and back are left out"
        );
        assert!(log.set_changes_since(1).missed, "the join at 2 is gone");
        assert!(log.set_changes_since(0).missed);
        assert!(log.set_changes_since(3 + burst).events.is_empty());
    }

    #[test]
    fn since_returns_the_events_after_an_index_and_tells_a_gap() {
        let log = log_with(10);
        let s = log.since(7);
        assert_eq!(
            s.events.iter().map(|e| e.index).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert!(!s.missed);
        assert_eq!(log.since(0).events.len(), 10);
        assert!(!log.since(0).missed);
        assert!(log.since(10).events.is_empty());
        // A reader from an earlier master (index beyond the newest) gets everything.
        assert_eq!(log.since(500).events.len(), 10);
    }

    #[test]
    fn the_ring_keeps_the_newest_history_and_reports_older_readers_as_behind() {
        let n = HISTORY as u64 + 10;
        let log = log_with(n);
        let all = log.since(0);
        assert_eq!(all.events.len(), HISTORY);
        assert_eq!(all.events[0].index, 11);
        assert!(all.missed, "events 1 to 10 are gone");
        assert!(log.since(5).missed);
        assert!(!log.since(10).missed);
        assert!(!log.since(n - 1).missed);
    }
}
