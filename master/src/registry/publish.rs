//! How the registry publishes its node set: each change of a small registry at once, by the
//! request that made it; the changes of a large one coalesced by the publisher task
//! ([`Registry::run_publisher`]), spaced by ten times what the last snapshot took, so that
//! building snapshots costs at most about a tenth of a core however fast the node set changes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use distribution_client::membership::{Member, Membership};
use tokio_util::sync::CancellationToken;

use super::{INLINE_PUBLISH_MAX, Registry, State};

/// The shortest spacing of two coalesced publications.
const MIN_PUBLISH_SPACING: Duration = Duration::from_millis(10);

/// Coalesced publications are spaced by this many times what the last one took, so that building
/// snapshots uses at most about a tenth of a core however fast the node set changes.
const PUBLISH_SPACING_FACTOR: u32 = 10;

impl Registry {
    /// Publishes the changes of a large node set, coalesced (see the module's documentation),
    /// until `shutdown` is cancelled; then publishes what is pending and returns. Meant to run
    /// as one task per registry.
    pub async fn run_publisher(self, shutdown: CancellationToken) {
        self.shared.deferred.store(true, Ordering::SeqCst);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.shared.publisher.notified() => {}
            }
            let started = std::time::Instant::now();
            self.flush();
            let spacing = (started.elapsed() * PUBLISH_SPACING_FACTOR).max(MIN_PUBLISH_SPACING);
            if shutdown
                .run_until_cancelled(tokio::time::sleep(spacing))
                .await
                .is_none()
            {
                break;
            }
        }
        self.shared.deferred.store(false, Ordering::SeqCst);
        self.flush();
    }

    /// Publishes the changes recorded (see [`record`]): now, or by the publisher task.
    pub(super) fn publish(&self, state: &mut State) {
        if state.nodes.len() <= INLINE_PUBLISH_MAX || !self.shared.deferred.load(Ordering::SeqCst) {
            let mut members = members(state);
            members.sort_by(|a, b| a.id.cmp(&b.id));
            state.dirty = false;
            state.published = state.index;
            self.send(state.index, members);
        } else {
            state.dirty = true;
            self.shared.publisher.notify_one();
        }
    }

    /// Publishes the pending changes, if any. The members are collected under the lock and
    /// sorted outside it, so that heartbeats do not wait for the sort.
    fn flush(&self) {
        let (index, mut members) = {
            let mut state = self.lock();
            if !state.dirty {
                return;
            }
            state.dirty = false;
            (state.index, members(&state))
        };
        members.sort_by(|a, b| a.id.cmp(&b.id));
        self.send(index, members);
        let mut state = self.lock();
        state.published = state.published.max(index);
    }

    /// Sends a snapshot unless a newer one went out already.
    fn send(&self, index: u64, members: Vec<Member>) {
        let snapshot = Membership {
            index,
            members: members.into(),
        };
        self.shared.membership.send_if_modified(|current| {
            if snapshot.index > current.index {
                *current = snapshot;
                true
            } else {
                false
            }
        });
    }
}

/// The registry's nodes as routable members, unsorted.
fn members(state: &State) -> Vec<Member> {
    state
        .nodes
        .values()
        .map(|e| Member {
            id: e.id.clone(),
            addr: e.addr.clone(),
            service: e.service.clone(),
            tags: e.tags.clone(),
            load: e.load.clone(),
        })
        .collect()
}
