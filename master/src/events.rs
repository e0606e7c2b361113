//! The change feed: one log of every change of the node set, read by everyone who follows it.
//!
//! Every join, leave, eviction, replacement, address change, and every node turning late or
//! coming back, is recorded by the registry as a [`MembershipEvent`] carrying the registry's
//! index after the change (the same index blocking queries see: it grows by one per event), the
//! time, the node's id and address, and a reason. The log keeps the newest [`HISTORY`] events in
//! a ring and wakes its readers through a `tokio::sync::watch` of the newest index, so a reader
//! that was away catches up from the ring, and a burst costs one wake-up, not one per event.
//!
//! It is the one source for everything that follows changes rather than snapshots:
//! `GET /v1/events` (server-sent events, resumable with `Last-Event-ID`), [`crate::Master::events`]
//! and `distribution_client::remote::events` (Rust streams), the status page, and later a follower asking for
//! "the changes since index N".
//!
//! The log lives inside the registry's state and is written under the registry's lock by the
//! change that makes the event; heartbeats write nothing unless a late node comes back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use distribution_shared::wire::{EventKind, MembershipEvent};
use futures::Stream;
use tokio::sync::watch;

use crate::registry::Registry;

/// How many events the log keeps: a reader resuming from an older index has missed some.
pub const HISTORY: usize = 1024;

/// The ring of recent events; owned by the registry's state.
#[derive(Debug)]
pub(crate) struct EventLog {
    ring: VecDeque<Arc<MembershipEvent>>,
    newest: watch::Sender<u64>,
}

/// The node an event is about: cheap clones of its registry entry's fields.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) id: Arc<str>,
    pub(crate) addr: Arc<str>,
    pub(crate) service: Arc<str>,
    pub(crate) tags: Arc<[Arc<str>]>,
}

/// What a reader gets from [`Registry::events_since`].
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
        }
    }

    /// Appends an event at `index` (the caller bumped the registry's index).
    pub(crate) fn record(&mut self, index: u64, kind: EventKind, node: &Subject, reason: String) {
        if self.ring.len() == HISTORY {
            self.ring.pop_front();
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
        let newest = self.ring.back().map_or(0, |e| e.index);
        let from = if index > newest { 0 } else { index };
        let oldest = self.ring.front().map_or(newest + 1, |e| e.index);
        let events: Vec<_> = self
            .ring
            .iter()
            .filter(|e| e.index > from)
            .cloned()
            .collect();
        Since {
            missed: oldest > from + 1,
            events,
        }
    }

    /// A receiver of the newest event's index.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }
}

/// The registry's events after index `after` that the log still holds (see
/// [`Registry::events_since`]), then every new one as it happens, as a stream. It holds the
/// registry, so it does not end by itself: readers bound it (the master's shutdown, a client
/// that goes away). Events lost because the reader fell more than [`HISTORY`] events behind
/// are skipped (logged once per gap).
pub fn stream(registry: Registry, after: u64) -> impl Stream<Item = Arc<MembershipEvent>> + Send {
    let newest = registry.subscribe_events();
    futures::stream::unfold(
        (
            registry,
            newest,
            after,
            VecDeque::<Arc<MembershipEvent>>::new(),
        ),
        |(registry, mut newest, mut last, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    last = event.index;
                    return Some((event, (registry, newest, last, pending)));
                }
                newest.borrow_and_update();
                let since = registry.events_since(last);
                if since.missed {
                    tracing::warn!(after = last, "event reader fell behind; events lost");
                }
                if since.events.is_empty() {
                    newest.changed().await.ok()?;
                    continue;
                }
                pending.extend(since.events);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: u64) -> EventLog {
        let mut log = EventLog::new();
        for i in 1..=n {
            let node = Subject {
                id: "n".into(),
                addr: "a:1".into(),
                service: "default".into(),
                tags: Arc::from(Vec::new()),
            };
            log.record(i, EventKind::Join, &node, String::new());
        }
        log
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
