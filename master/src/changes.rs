//! `GET /v1/changes`, the HTTP side of [`crate::registry::changes_since`](crate::Registry::changes_since):
//! the view's parameters checked (a 400 for a partial or malformed view), the blocking wait on
//! the change feed, and the answer encoded once for every follower that asks the same.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use distribution_shared::wire::NodeChanges;
use parking_lot::Mutex;
use serde::Deserialize;

use crate::error::ApiError;
use crate::registry::{Filter, Registry, View};
use crate::watch::{BlockingQuery, Watchers};

/// The query parameters of `GET /v1/changes`: the follower's view (`epoch`, `index`, `loads`,
/// all three or none) and how long to wait for a membership change.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChangesParams {
    epoch: Option<String>,
    index: Option<String>,
    loads: Option<String>,
    wait: Option<String>,
    /// Only this service's nodes, events and load figures.
    service: Option<String>,
}

/// `GET /v1/changes`: what changed since the follower's view (see
/// [`distribution_shared::wire::NodeChanges`]). With a view of this process whose index is the
/// newest, a blocking query: it answers at the next membership event, or after `wait` with the
/// load changes of that time. Without a view: the whole list at once.
pub(crate) async fn changes(
    State(registry): State<Registry>,
    Extension(watchers): Extension<Watchers>,
    Extension(encoded): Extension<Encoded>,
    params: Result<Query<ChangesParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    if let Some(service) = &params.service {
        crate::api::validate::validate_service(service)?;
    }
    let service = params.service.as_deref();
    let number = |name: &str, raw: &Option<String>| -> Result<Option<u64>, ApiError> {
        raw.as_deref()
            .map(|raw| {
                raw.trim().parse::<u64>().map_err(|_| {
                    let shown: String = raw.chars().take(40).collect();
                    ApiError::bad_request(format!(
                        "{name} must be a non-negative integer, got {shown:?}"
                    ))
                })
            })
            .transpose()
    };
    let view = match (
        number("epoch", &params.epoch)?,
        number("loads", &params.loads)?,
    ) {
        (Some(epoch), Some(loads)) => {
            let query =
                BlockingQuery::from_params(params.index.as_deref(), params.wait.as_deref())?
                    .ok_or_else(|| ApiError::bad_request("epoch and loads need an index"))?;
            if epoch == registry.epoch() {
                watchers.wait_events(&registry, query, service).await?;
            }
            Some(View {
                epoch,
                index: query.index,
                loads,
            })
        }
        (None, None) if params.index.is_none() => None,
        _ => {
            return Err(ApiError::bad_request(
                "give a view as epoch, index and loads together, or none of them",
            ));
        }
    };
    let filter = Filter {
        service: params.service.clone(),
        tag: None,
    };
    let changes = registry.changes_since(view, &filter);
    let kind = match (&changes.full, view) {
        (None, _) => "changes",
        (Some(_), None) => "first",
        (Some(_), Some(_)) => "resync",
    };
    metrics::counter!(crate::observe::CHANGES_ANSWERS, "kind" => kind).increment(1);
    let key = (
        view,
        params.service,
        changes.epoch,
        changes.index,
        changes.loads_index,
    );
    let body = encoded.get_or_encode(key, || {
        serde_json::to_vec(&NodeChanges {
            epoch: changes.epoch,
            index: changes.index,
            loads_index: changes.loads_index,
            full: changes.full,
            events: changes.events.iter().map(|e| (**e).clone()).collect(),
            loads: changes.loads,
        })
    })?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}

/// The last encoded answer, shared by every follower that asks with the same view at the same
/// versions: the followers a membership event wakes together all hold the same view, so the
/// answer is encoded once for all of them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Encoded {
    last: Arc<Mutex<Option<(Key, Bytes)>>>,
}

/// What an encoded answer answers: the view and service asked with, and the epoch, index and
/// load version of the answer (the same versions always give the same changes).
type Key = (Option<View>, Option<String>, u64, u64, u64);

impl Encoded {
    fn get_or_encode(
        &self,
        key: Key,
        encode: impl FnOnce() -> serde_json::Result<Vec<u8>>,
    ) -> Result<Bytes, ApiError> {
        if let Some((last, body)) = &*self.last.lock()
            && *last == key
        {
            return Ok(body.clone());
        }
        // Encoded outside the lock: another follower's answer is not held up by this one.
        let body = Bytes::from(encode().map_err(|err| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("cannot encode the changes: {err}"),
        })?);
        *self.last.lock() = Some((key, body.clone()));
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn the_same_view_at_the_same_versions_is_encoded_once() {
        let encoded = Encoded::default();
        let encodings = Cell::new(0);
        let encode = || {
            encodings.set(encodings.get() + 1);
            Ok(b"{}".to_vec())
        };
        let view = Some(View {
            epoch: 1,
            index: 4,
            loads: 9,
        });
        for _ in 0..3 {
            encoded
                .get_or_encode((view, None, 1, 5, 9), encode)
                .unwrap();
        }
        assert_eq!(encodings.get(), 1, "three followers, one encoding");
        encoded
            .get_or_encode((view, None, 1, 5, 10), encode)
            .unwrap();
        encoded
            .get_or_encode((None, None, 1, 5, 10), encode)
            .unwrap();
        assert_eq!(
            encodings.get(),
            3,
            "another version or view is encoded anew"
        );
    }
}
