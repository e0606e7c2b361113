//! `GET /v1/events`: the change feed ([`crate::events`]) as server-sent events.
//!
//! Each event is one SSE message: `id:` the registry's index, `event:` the kind (`join`, `leave`,
//! `eviction`, `replacement`, `moved`, `late`, `back`), `data:` the [`MembershipEvent`] as JSON.
//! A client resumes with `Last-Event-ID: N` (browsers' `EventSource` sends it by itself when it
//! reconnects) or `?after=N`: it gets the events after `N` that the bounded history still holds,
//! preceded by an `event: lost` message when some are gone. Without either it gets only new
//! events. Like every `/v1/` route it needs the cluster secret when the master has one.
//!
//! The stream lasts until the client goes away or the master shuts down, outside the request
//! timeout; a comment every 5 s (`defaults::EVENTS_KEEP_ALIVE`) keeps proxies from closing it
//! and lets readers tell a quiet cluster from a master that stopped answering. At most
//! [`MAX_SUBSCRIBERS`] follow at once (`503` beyond).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use distribution_shared::defaults;
use distribution_shared::wire::MembershipEvent;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::events;
use crate::observe;
use crate::registry::Registry;

/// The most clients following `/v1/events` at once.
pub(crate) const MAX_SUBSCRIBERS: usize = 1024;

/// What the events route needs: the registry, the shutdown token, the subscriber slots.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    pub(crate) registry: Registry,
    pub(crate) shutdown: CancellationToken,
    pub(crate) slots: Arc<Semaphore>,
}

impl Feed {
    pub(crate) fn new(registry: Registry, shutdown: CancellationToken) -> Self {
        Self {
            registry,
            shutdown,
            slots: Arc::new(Semaphore::new(MAX_SUBSCRIBERS)),
        }
    }

    fn count_subscribers(&self) {
        let n = MAX_SUBSCRIBERS.saturating_sub(self.slots.available_permits());
        observe::event_subscribers(n);
    }
}

/// `?after=N`, the same as `Last-Event-ID: N`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventParams {
    after: Option<String>,
    /// Only the events of this service's nodes.
    service: Option<String>,
}

/// Where a client resumes: `Last-Event-ID`, else `?after`, else the newest index (only new
/// events).
fn resume_from(headers: &HeaderMap, params: &EventParams, newest: u64) -> Result<u64, ApiError> {
    let given = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("x").to_owned())
        .or_else(|| params.after.clone());
    match given {
        None => Ok(newest),
        Some(raw) => raw.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request("Last-Event-ID and `after` must be a non-negative integer")
        }),
    }
}

/// `GET /v1/events`.
pub(crate) async fn events(
    Extension(feed): Extension<Feed>,
    headers: HeaderMap,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    if let Some(service) = &params.service {
        crate::api::validate::validate_service(service)?;
    }
    let newest = *feed.registry.subscribe_events().borrow();
    let after = resume_from(&headers, &params, newest)?;
    let Ok(slot) = feed.slots.clone().try_acquire_owned() else {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "too many clients follow the events; retry later".into(),
        });
    };
    feed.count_subscribers();
    let lost = feed.registry.events_since(after).missed;
    let head = futures::stream::iter(lost.then(|| {
        Ok::<_, Infallible>(
            Event::default()
                .event("lost")
                .data(format!("{{\"after\":{after}}}")),
        )
    }));
    let guard = SubscriberGuard {
        feed: feed.clone(),
        _slot: slot,
    };
    let service = params.service;
    let body = events::stream(feed.registry.clone(), after)
        .filter(move |event| {
            let keep = service.as_deref().is_none_or(|s| event.service == s);
            std::future::ready(keep)
        })
        .map(move |event| {
            let _ = &guard;
            Ok::<_, Infallible>(to_sse(&event))
        })
        .take_until(feed.shutdown.clone().cancelled_owned());
    Ok(Sse::new(head.chain(body))
        .keep_alive(KeepAlive::new().interval(defaults::EVENTS_KEEP_ALIVE))
        .into_response())
}

fn to_sse(event: &MembershipEvent) -> Event {
    let kind = serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Event::default()
        .id(event.index.to_string())
        .event(kind)
        .data(serde_json::to_string(event).unwrap_or_default())
}

/// Holds a subscriber slot and updates the gauge when the stream ends.
struct SubscriberGuard {
    feed: Feed,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        // The permit is released after this body: count it as gone already.
        let n = MAX_SUBSCRIBERS.saturating_sub(self.feed.slots.available_permits() + 1);
        observe::event_subscribers(n);
    }
}
