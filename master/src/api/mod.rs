//! The registry's HTTP API (axum): how nodes join, renew and leave, and how anyone reads the list.
//!
//! | method and path               | body            | answer                              |
//! |-------------------------------|-----------------|-------------------------------------|
//! | `POST /v1/nodes`              | `RegisterRequest` | `200` + `Lease`                   |
//! | `PUT /v1/nodes/{id}/heartbeat`| `Heartbeat`     | `200` + `Lease`, `404` if unknown   |
//! | `DELETE /v1/nodes/{id}`       |                 | `204`, `404` if unknown             |
//! | `PUT /v1/nodes/{id}/maintenance` | `MaintenanceRequest` | `200` + the node's `NodeInfo`, `404` if unknown (see [`crate::registry`]'s maintenance) |
//! | `GET /v1/nodes`               |                 | `200` + `NodeList`, `X-Index` header |
//! | `GET /v1/nodes?service=S&tag=T` |               | the nodes of service `S` carrying tag `T` (either or both); the index is `S`'s |
//! | `GET /v1/nodes?index=N&wait=30s` |              | the same, once the index differs from `N` (see `watch.rs`); with `service`, once that service changes |
//! | `GET /v1/nodes?limit=N`       |                 | the first `N` nodes by id, and in `total` the sums over all of them (`400` unless `N` is a positive integer) |
//! | `GET /v1/services`            |                 | `200` + `ServiceList` (names, node counts) |
//! | `GET /v1/events`              |                 | server-sent events of the change feed (see `sse.rs`) |
//! | `GET /health`                 |                 | `200` + `{"status":"ok","nodes":N}`; `"degraded"` + `reason` during self-preservation |
//! | `GET /`                       |                 | the live status page (see `status.rs`) |
//! | `GET /metrics`                |                 | Prometheus text, when [`MasterConfig::metrics`] is set |
//!
//! Every refusal is a 4xx with `{"error": "..."}` and leaves the registry unchanged.

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use distribution_shared::wire::{
    Heartbeat, Lease, MaintenanceRequest, NodeInfo, NodeList, RegisterRequest, ServiceList,
};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::config::MasterConfig;
use crate::error::ApiError;
use crate::registry::{Filter, Registry};

pub(crate) mod validate;
use crate::watch::{BlockingQuery, Watchers};
pub use validate::{
    MAX_CAPACITY, MAX_META, MAX_NAME_LEN, MAX_TAGS, MAX_TEXT_LEN, validate, validate_service,
    validate_tag, validate_text,
};

/// The header that carries the registry's index on `GET /v1/nodes`.
pub const INDEX_HEADER: HeaderName = HeaderName::from_static("x-index");

/// The API's routes over `registry`, with the body limit and timeout of `config`; blocking
/// queries (`GET /v1/nodes?index=N`) answer at once when `shutdown` is cancelled, so that a
/// graceful shutdown does not wait for them to time out. Served by [`crate::http::serve`], which
/// gives handlers the peer address (registration reads it).
///
/// Blocking queries are outside the request timeout: they last up to their `wait`, which is
/// bounded by [`crate::watch::MAX_WAIT`], and a `GET` has no body that a client could trickle.
pub(crate) fn routes(
    registry: Registry,
    config: &MasterConfig,
    shutdown: CancellationToken,
) -> Router {
    let bounded = Router::new()
        .route("/v1/nodes", post(register))
        .route("/v1/nodes/{id}/heartbeat", put(heartbeat))
        .route("/v1/nodes/{id}", axum::routing::delete(deregister))
        .route("/v1/nodes/{id}/maintenance", put(maintenance))
        .route("/v1/services", get(services))
        .route("/health", get(health))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ));
    let mut app = Router::new()
        .route("/v1/nodes", get(list))
        .route("/v1/changes", get(crate::changes::changes))
        .route("/v1/events", get(crate::sse::events))
        .route("/", get(crate::status::page));
    if let Some(render) = config.metrics.clone() {
        app = app.route("/metrics", get(move || async move { render() }));
    }
    app.merge(bounded)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(Extension(crate::sse::Feed::new(
            registry.clone(),
            shutdown.clone(),
        )))
        .layer(Extension(Watchers::new(shutdown)))
        .layer(Extension(crate::changes::Encoded::default()))
        .layer(axum::middleware::from_fn(count_responses))
        .with_state(registry)
}

/// Middleware: counts each answer by route (the matched pattern, never the raw path, so ids do
/// not become labels) and status.
async fn count_responses(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(crate::observe::HTTP_RESPONSES, "route" => route, "status" => status)
        .increment(1);
    response
}

async fn register(
    State(registry): State<Registry>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<Object<RegisterRequest>>, JsonRejection>,
) -> Result<Json<Lease>, ApiError> {
    let Json(Object(req)) = body?;
    let reg = validate(req, peer)?;
    Ok(Json(registry.register(reg)?))
}

async fn heartbeat(
    State(registry): State<Registry>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Object<Heartbeat>>, JsonRejection>,
) -> Result<Json<Lease>, ApiError> {
    let Path(id) = id?;
    let Json(Object(beat)) = body?;
    let started = std::time::Instant::now();
    if beat.capacity == Some(0) || beat.capacity.is_some_and(|c| c > MAX_CAPACITY) {
        return Err(ApiError::bad_request(format!(
            "capacity must be between 1 and {MAX_CAPACITY}"
        )));
    }
    if let Some(reason) = &beat.maintenance {
        validate_text("maintenance", reason)?;
    }
    let lease = registry.heartbeat(&id, &beat);
    metrics::histogram!(crate::observe::HEARTBEAT_SECONDS).record(started.elapsed().as_secs_f64());
    match &lease {
        Ok(_) => metrics::counter!(crate::observe::HEARTBEATS).increment(1),
        Err(_) => metrics::counter!(crate::observe::HEARTBEATS_UNKNOWN).increment(1),
    }
    Ok(Json(lease?))
}

async fn deregister(
    State(registry): State<Registry>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    if registry.deregister(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(crate::registry::RegistryError::UnknownNode(id).into())
    }
}

/// `PUT /v1/nodes/{id}/maintenance`: an operator's maintenance on or off.
async fn maintenance(
    State(registry): State<Registry>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Object<MaintenanceRequest>>, JsonRejection>,
) -> Result<Json<NodeInfo>, ApiError> {
    let Path(id) = id?;
    let Json(Object(req)) = body?;
    validate_text("reason", &req.reason)?;
    let reason = req.enabled.then(|| match req.reason.trim() {
        "" => "set by an operator".to_owned(),
        reason => reason.to_owned(),
    });
    Ok(Json(registry.set_maintenance(&id, reason)?))
}

async fn services(State(registry): State<Registry>) -> Json<ServiceList> {
    Json(registry.services())
}

/// The query parameters of `GET /v1/nodes`; others are ignored.
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    index: Option<String>,
    wait: Option<String>,
    service: Option<String>,
    tag: Option<String>,
    limit: Option<String>,
}

/// The `limit` of `GET /v1/nodes`: a positive integer.
fn parse_limit(limit: Option<&str>) -> Result<Option<usize>, ApiError> {
    limit
        .map(|text| match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit must be a positive integer, not {text:?}"
            ))),
        })
        .transpose()
}

async fn list(
    State(registry): State<Registry>,
    Extension(watchers): Extension<Watchers>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    if let Some(service) = &params.service {
        validate_service(service)?;
    }
    if let Some(tag) = &params.tag {
        validate_tag(tag)?;
    }
    let limit = parse_limit(params.limit.as_deref())?;
    if let Some(query) =
        BlockingQuery::from_params(params.index.as_deref(), params.wait.as_deref())?
    {
        match params.service.as_deref() {
            Some(service) => {
                watchers
                    .wait_events(&registry, query, Some(service))
                    .await?
            }
            None => watchers.wait(&registry, query).await?,
        }
    }
    let filter = Filter {
        service: params.service,
        tag: params.tag,
    };
    Ok(node_list_response(registry.list_first(
        Instant::now(),
        &filter,
        limit,
    )))
}

/// A `GET /v1/nodes` answer: the list as JSON, its index in the `X-Index` header.
fn node_list_response(list: NodeList) -> Response {
    let index = HeaderValue::from(list.index);
    ([(INDEX_HEADER, index)], Json(list)).into_response()
}

/// `GET /health`. During self-preservation (the master hears too few renewals and stopped
/// evicting) the status is `degraded` with a `reason`, and the code is still `200`: the process
/// works, and a `503` would make health checks (Docker's, Kubernetes' liveness) restart the one
/// process whose restart loses the registry, for a fault that is usually the network's.
async fn health(State(registry): State<Registry>) -> Json<serde_json::Value> {
    let nodes = registry.len();
    Json(match registry.degraded() {
        Some(reason) => {
            serde_json::json!({ "status": "degraded", "reason": reason, "nodes": nodes })
        }
        None => serde_json::json!({ "status": "ok", "nodes": nodes }),
    })
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this path; see the table in the API docs".into(),
    }
}

/// A request body that must be a JSON object. serde's derived `Deserialize` also builds a struct
/// from an array of its fields in order (`[1, 2, 3]` as a heartbeat), which would let a
/// wrong-typed body through; this wrapper refuses anything but `{...}` and then decodes `T` from
/// the object itself, so unknown and duplicate fields are still refused.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint; see /v1/nodes and /health".into(),
    }
}
