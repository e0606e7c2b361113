//! The change feed: one log of every change of the node set, read by everyone who follows it.
//!
//! Every join, leave, eviction, replacement, address change, maintenance switch, and every node
//! turning late or coming back, is recorded by the registry as a [`MembershipEvent`] carrying
//! the registry's index after the change (the same index blocking queries see: it grows by one
//! per event), the time, the node's id and address, and a reason. The registry keeps the newest
//! [`HISTORY`] events in a ring (`registry/feed.rs`) and wakes its readers through a
//! `tokio::sync::watch` of the newest index, so a reader that was away catches up from the ring,
//! and a burst costs one wake-up, not one per event. This module reads it as a stream.
//!
//! It is the one source for everything that follows changes rather than snapshots:
//! `GET /v1/events` (server-sent events, resumable with `Last-Event-ID`), [`crate::Master::events`]
//! and `distribution_client::remote::events` (Rust streams), the status page, and later a follower asking for
//! "the changes since index N".
//!
use std::collections::VecDeque;
use std::sync::Arc;

use distribution_shared::wire::MembershipEvent;
use futures::Stream;

use crate::registry::Registry;
pub use crate::registry::feed::{HISTORY, Since};

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
