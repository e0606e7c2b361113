//! Blocking queries on the node list, in the style of Consul's: `GET /v1/nodes?index=N&wait=30s`
//! answers as soon as the registry's index differs from `N`, otherwise after `wait` with the same
//! list.
//!
//! A caller keeps one such request open and learns of a join or a leave within milliseconds,
//! without polling. The rules:
//!
//! - no `index`: the list at once (`wait` is then ignored);
//! - `index` equal to the registry's: wait for a change, at most `wait` (default
//!   [`DEFAULT_WAIT`], capped at [`MAX_WAIT`]) plus a random jitter of up to `wait / 16` so that
//!   many callers that started together do not all come back at the same instant;
//! - `index` different from the registry's: at once. Greater than `N` means the list changed;
//!   *smaller* means this master restarted since the caller's index (the index starts from zero
//!   in every master process), so the caller's view belongs to another registry and must be
//!   replaced now rather than after the wait;
//! - a master shutting down answers every waiting query at once, so that it does not wait for
//!   them to time out;
//! - at most [`MAX_WAITERS`] queries wait at once; beyond that the master answers `503` and the
//!   caller retries later.
//!
//! `wait` is an integer with a unit: `500ms`, `30s`, `2m`, `1h` (`0s`: answer at once). Anything
//! else is a `400`.
//!
//! This module knows nothing of HTTP: it refuses with a [`WatchError`], and `crate::error` says
//! which status each refusal is.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use distribution_client::membership::Membership;

/// How long a blocking query waits when it names no `wait`: 5 minutes (Consul's default).
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);

/// The longest a blocking query waits, whatever it asks: 10 minutes (Consul's cap).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// How many blocking queries may wait at once: 10,000. Each costs a task and a watch receiver;
/// the limit bounds what a misbehaving caller can pin. It is separate from the connection limit
/// (4096 by default) because HTTP/2 carries many queries on one connection.
pub(crate) const MAX_WAITERS: usize = 10_000;

/// Why a blocking query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WatchError {
    /// `index` is not a non-negative integer (the text, cut to 40 characters).
    #[error("index must be a non-negative integer, got {0:?}")]
    BadIndex(String),
    /// `wait` is not an integer with a unit.
    #[error(transparent)]
    BadWait(#[from] WaitParseError),
    /// [`MAX_WAITERS`] queries wait already.
    #[error("too many blocking queries are waiting; retry later")]
    TooManyWaiting,
}

/// Why a `wait` parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wait must be an integer with a unit (ms, s, m or h), such as 500ms or 30s; got {0:?}")]
pub(crate) struct WaitParseError(pub String);

/// Parses a `wait` such as `500ms`, `30s`, `2m` or `1h`. Values beyond [`MAX_WAIT`] are capped.
pub(crate) fn parse_wait(raw: &str) -> Result<Duration, WaitParseError> {
    let bad = || WaitParseError(raw.chars().take(40).collect());
    let digits = raw.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = raw.split_at(digits);
    if number.is_empty() || number.len() > 12 {
        return Err(bad());
    }
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let ms = number.saturating_mul(unit_ms);
    Ok(Duration::from_millis(ms).min(MAX_WAIT))
}

/// A blocking query: answer when the registry's index differs from `index`, or after `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockingQuery {
    /// The index the caller already has.
    pub index: u64,
    /// How long to wait for a change, at most [`MAX_WAIT`].
    pub wait: Duration,
}

impl BlockingQuery {
    /// Reads the `index` and `wait` query parameters. `None` when there is no `index`: the
    /// request is an ordinary read, answered at once.
    pub(crate) fn from_params(
        index: Option<&str>,
        wait: Option<&str>,
    ) -> Result<Option<Self>, WatchError> {
        let Some(index) = index else {
            return Ok(None);
        };
        let index: u64 = index
            .trim()
            .parse()
            .map_err(|_| WatchError::BadIndex(index.chars().take(40).collect()))?;
        let wait = match wait {
            None => DEFAULT_WAIT,
            Some(raw) => parse_wait(raw.trim())?,
        };
        Ok(Some(Self { index, wait }))
    }
}

/// Waits until `membership`'s index differs from `index`, for at most `wait`, or until
/// `shutdown` is cancelled. Returns whether the index changed (`false`: timed out or shut down).
pub(crate) async fn wait_for_change(
    mut membership: watch::Receiver<Membership>,
    index: u64,
    wait: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let changed = membership.wait_for(|m| m.index != index);
    tokio::select! {
        changed = tokio::time::timeout(wait, changed) => matches!(changed, Ok(Ok(_))),
        _ = shutdown.cancelled() => false,
    }
}

/// What the list handler needs to run blocking queries: the master's shutdown signal and the
/// limit on waiting queries. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Watchers {
    shutdown: CancellationToken,
    slots: Arc<Semaphore>,
    max: usize,
}

impl Watchers {
    /// Blocking queries that end when `shutdown` is cancelled, at most [`MAX_WAITERS`] at once.
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        Self::with_limit(shutdown, MAX_WAITERS)
    }

    /// [`Watchers::new`] with another limit.
    pub(crate) fn with_limit(shutdown: CancellationToken, max_waiters: usize) -> Self {
        Self {
            shutdown,
            slots: Arc::new(Semaphore::new(max_waiters)),
            max: max_waiters,
        }
    }

    /// Runs `query` against `registry`'s published node list: returns when its index differs
    /// from the query's, when the wait (plus jitter) is over, or when the master shuts down.
    /// [`WatchError::TooManyWaiting`] when too many queries wait already.
    pub(crate) async fn wait(
        &self,
        registry: &Registry,
        query: BlockingQuery,
    ) -> Result<(), WatchError> {
        let membership = registry.subscribe();
        let changed = membership.borrow().index != query.index;
        self.hold(changed, query, async move |wait| {
            wait_for_change(membership, query.index, wait, &self.shutdown).await;
        })
        .await
    }

    /// [`Watchers::wait`] on the change feed's newest event index instead (what
    /// `GET /v1/changes` follows: every event, published snapshot or not). With a `service`,
    /// only a change of that service ends the wait ([`Registry::changed_since`]): the events of
    /// other services wake this task, which looks and waits again, but do not answer the query.
    pub(crate) async fn wait_events(
        &self,
        registry: &Registry,
        query: BlockingQuery,
        service: Option<&str>,
    ) -> Result<(), WatchError> {
        let mut newest = registry.subscribe_events();
        newest.borrow_and_update();
        let changed = registry.changed_since(service, query.index);
        self.hold(changed, query, async move |wait| {
            // The registry is asked with no borrow of the watch held: its writers hold the
            // registry's lock while they send.
            let changed = async {
                while newest.changed().await.is_ok() {
                    if registry.changed_since(service, query.index) {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = tokio::time::timeout(wait, changed) => {}
                _ = self.shutdown.cancelled() => {}
            }
        })
        .await
    }

    /// Holds a waiting slot while `waiting` runs with the query's wait plus jitter; at once when
    /// `changed` already or the query waits for nothing.
    async fn hold(
        &self,
        changed: bool,
        query: BlockingQuery,
        waiting: impl AsyncFnOnce(Duration),
    ) -> Result<(), WatchError> {
        if changed || query.wait.is_zero() {
            return Ok(());
        }
        let Ok(slot) = self.slots.try_acquire() else {
            return Err(WatchError::TooManyWaiting);
        };
        self.count_waiting();
        waiting(query.wait + jitter(query.wait)).await;
        drop(slot);
        self.count_waiting();
        Ok(())
    }

    /// Sets the blocking-queries gauge to the number waiting now.
    fn count_waiting(&self) {
        let waiting = self.max.saturating_sub(self.slots.available_permits());
        crate::observe::blocking_queries(waiting);
    }
}

/// A random extra wait of up to `wait / 16`.
fn jitter(wait: Duration) -> Duration {
    let max = (wait / 16).as_millis() as u64;
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=max))
}

#[cfg(test)]
mod tests;
