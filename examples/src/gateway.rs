//! The HTTP gateway of the demo (the Go example's `:3001`): `/sum` and `/palindrom`, answered by
//! routing calls to the nodes.
//!
//! Plain text by default, JSON with `Accept: application/json`. Bad input gets a `400` with a
//! message; a cluster that cannot answer gets `503` (no node), `504` (deadline) or `502`.
//!
//! Both computations are pure, so their calls are idempotent and hedged (backup requests, see
//! `distribution_client::HedgePolicy`): a node that pauses costs a caller a few milliseconds,
//! not an attempt timeout. `/sum` sends its backup after the router's recent 99th percentile
//! (at least [`SUM_HEDGE_FLOOR`]); a palindrome chunk, whose work grows with its size, after
//! [`chunk_hedge_delay`]. The budget and the ejection of a node that keeps losing the races are
//! the router's (its `RouterConfig::hedge`, or the defaults).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router as HttpRouter};
use distribution_client::{
    CallError, CallOptions, CallRouter, HedgeDelay, NodeRef, ScatterOptions,
};
use serde_json::json;

use crate::palindrome::{self, MAX_N};
use crate::service::{CalcClient, SumError, palindromes_answer};
use crate::text::TextClient;

/// How long one node may take to answer a `/sum` before the gateway tries another: well above
/// the demo's simulated delay (1 s in the Go original), well below the 10 s deadline.
pub const SUM_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The shortest hedge delay of a `/sum`: its backup goes after the router's recent 99th
/// percentile of `/sum` latencies, never sooner than this.
pub const SUM_HEDGE_FLOOR: Duration = Duration::from_millis(10);

/// The hedge delay of a palindrome chunk of `len` numbers: 250 ms plus 20 ms per 2^20 numbers,
/// about eight times the measured work on one core (2.4 ns a number, BENCHMARKS.md), which leaves
/// room for the two chunks a node runs at once sharing a core and for a busy machine: only a
/// chunk whose node is far behind (paused, or several times slower than the others) is counted
/// twice. A chunk of 2.5·10^8 numbers (about 0.6 s of work) gets its backup after 5 s, instead of
/// waiting for a paused node until its 120 s deadline.
pub fn chunk_hedge_delay(len: u64) -> Duration {
    Duration::from_millis(250) + Duration::from_millis((len >> 20).saturating_mul(20))
}

/// The most values one `/sum` accepts.
pub const MAX_VALUES: usize = 10_000;

/// The routers the gateway routes with: one per service.
#[derive(Clone)]
pub struct Routers {
    /// `/sum` and `/palindrom`: the `calc` nodes.
    pub calc: CallRouter<CalcClient>,
    /// `/upper`: the `text` nodes.
    pub text: CallRouter<TextClient>,
}

impl axum::extract::FromRef<Routers> for CallRouter<CalcClient> {
    fn from_ref(routers: &Routers) -> Self {
        routers.calc.clone()
    }
}

impl axum::extract::FromRef<Routers> for CallRouter<TextClient> {
    fn from_ref(routers: &Routers) -> Self {
        routers.text.clone()
    }
}

/// The gateway's routes over `routers`.
pub fn routes(routers: Routers) -> HttpRouter {
    HttpRouter::new()
        .route("/sum", get(sum))
        .route("/palindrom", get(palindrom))
        .route("/upper", get(crate::text::upper))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(routers)
}

/// A gateway answer: a status and a message, in text or JSON.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
    json: bool,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.json {
            (self.status, Json(json!({ "error": self.message }))).into_response()
        } else {
            (self.status, format!("error: {}\n", self.message)).into_response()
        }
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn bad_request(message: impl Into<String>, json: bool) -> Failure {
    Failure {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
        json,
    }
}

fn cluster_failure(err: CallError, json: bool) -> Failure {
    let status = match err {
        CallError::NoNodeAvailable => StatusCode::SERVICE_UNAVAILABLE,
        CallError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        CallError::Remote { .. } | CallError::Transport { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let message = err.chain();
    tracing::warn!(error = %message, "call failed");
    Failure {
        status,
        message,
        json,
    }
}

fn node_json(node: &NodeRef) -> serde_json::Value {
    json!({ "id": &*node.id, "addr": &*node.addr })
}

/// Parses `2,4,6` (spaces allowed) into at most [`MAX_VALUES`] integers.
pub fn parse_values(raw: &str) -> Result<Vec<i64>, String> {
    let values: Vec<i64> = raw
        .split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<i64>()
                .map_err(|_| format!("`{part}` is not a 64-bit integer"))
        })
        .collect::<Result<_, _>>()?;
    if values.len() > MAX_VALUES {
        return Err(format!("at most {MAX_VALUES} values"));
    }
    Ok(values)
}

/// Parses the `n` of `/palindrom`: an integer from 0 to [`MAX_N`].
pub fn parse_n(raw: Option<&String>) -> Result<u64, String> {
    let raw = raw.ok_or("missing parameter n (e.g. /palindrom?n=2000)")?;
    let n: u64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("n must be an integer from 0 to {MAX_N}, got `{raw}`"))?;
    if n > MAX_N {
        return Err(format!("n must be at most {MAX_N}"));
    }
    Ok(n)
}

async fn sum(
    State(router): State<CallRouter<CalcClient>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let json = wants_json(&headers);
    let values = match params.get("values") {
        Some(raw) => parse_values(raw).map_err(|e| bad_request(e, json))?,
        None => {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..3)
                .map(|_| rng.random_range(0..1_000_000_000i64))
                .collect()
        }
    };
    let sent = values.clone();
    // Sums are pure, so the call is idempotent: hedged on another node when its node is slower
    // than usual, and retried elsewhere if a node aborts, leaves, or does not answer within
    // SUM_ATTEMPT_TIMEOUT (a hung or cut-off node, when the budget allows no backup).
    let options = CallOptions::default()
        .idempotent()
        .with_attempt_timeout(SUM_ATTEMPT_TIMEOUT)
        .with_hedge(HedgeDelay::Percentile {
            percentile: 99.0,
            floor: SUM_HEDGE_FLOOR,
        });
    let reply = router
        .call_with(options, move |client, ctx| {
            let values = sent.clone();
            async move { client.sum(ctx, values).await }
        })
        .await
        .map_err(|e| cluster_failure(e, json))?;
    let total = match reply.value {
        Ok(total) => total,
        Err(SumError::Overflow) => {
            return Err(Failure {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: SumError::Overflow.to_string(),
                json,
            });
        }
    };
    Ok(if json {
        Json(json!({ "result": total, "values": values, "node": node_json(&reply.node) }))
            .into_response()
    } else {
        format!("Response from node {}: {total}\n", reply.node).into_response()
    })
}

async fn palindrom(
    State(router): State<CallRouter<CalcClient>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let json = wants_json(&headers);
    let n = parse_n(params.get("n")).map_err(|e| bad_request(e, json))?;
    let parts = palindrome::chunks(n, router.len());
    let chunk_count = parts.len();
    // A chunk of 2^33 / 8 numbers takes about a second per core; leave room for slow machines.
    // Counting is pure, so chunks are idempotent: retried elsewhere if a node aborts, and
    // hedged when their node is far behind (the chunks are of equal size, give or take one).
    let largest = parts.iter().map(|(a, b)| b - a + 1).max().unwrap_or(0);
    let options = ScatterOptions::default().with_call(
        CallOptions::deadline(Duration::from_secs(120))
            .idempotent()
            .with_hedge(HedgeDelay::Fixed(chunk_hedge_delay(largest))),
    );
    let replies = router
        .scatter(parts, options, |client, ctx, (start, end)| async move {
            palindromes_answer(client.palindromes(ctx, start, end).await)
        })
        .await
        .map_err(|e| cluster_failure(e.error, json))?;
    let count: u64 = replies.iter().map(|r| r.value).sum();
    let mut per_node: BTreeMap<String, (NodeRef, usize)> = BTreeMap::new();
    for reply in &replies {
        per_node
            .entry(reply.node.id.to_string())
            .or_insert_with(|| (reply.node.clone(), 0))
            .1 += 1;
    }
    Ok(if json {
        let nodes: Vec<_> = per_node
            .values()
            .map(|(node, chunks)| json!({ "id": &*node.id, "addr": &*node.addr, "chunks": chunks }))
            .collect();
        Json(json!({ "n": n, "count": count, "chunks": chunk_count, "nodes": nodes }))
            .into_response()
    } else {
        let nodes: Vec<String> = per_node
            .values()
            .map(|(node, chunks)| format!("{node} x{chunks}"))
            .collect();
        let unit = if chunk_count == 1 { "chunk" } else { "chunks" };
        format!(
            "Palindrom counter to {n}: {count} ({chunk_count} {unit} on {})\n",
            nodes.join(", ")
        )
        .into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_strictly() {
        assert_eq!(parse_values("2,4,6"), Ok(vec![2, 4, 6]));
        assert_eq!(parse_values(" -1 , 2"), Ok(vec![-1, 2]));
        assert!(parse_values("2,x").is_err());
        assert!(parse_values("").is_err());
        assert!(parse_values("99999999999999999999").is_err());
        assert!(parse_values(&vec!["1"; MAX_VALUES + 1].join(",")).is_err());
    }

    #[test]
    fn chunk_hedge_delays_grow_with_the_work() {
        assert_eq!(chunk_hedge_delay(0), Duration::from_millis(250));
        assert_eq!(chunk_hedge_delay(1 << 20), Duration::from_millis(270));
        // The largest chunk (2^33 on one node: 8 chunks of 2^30) waits about 20 s.
        assert_eq!(
            chunk_hedge_delay(1 << 30),
            Duration::from_millis(250 + 20 * 1024)
        );
        assert_eq!(chunk_hedge_delay(u64::MAX), chunk_hedge_delay(u64::MAX - 1));
    }

    #[test]
    fn n_parses_strictly() {
        assert_eq!(parse_n(Some(&"2000".into())), Ok(2000));
        assert!(parse_n(None).is_err());
        assert!(parse_n(Some(&"-1".into())).is_err());
        assert!(parse_n(Some(&"ten".into())).is_err());
        assert!(parse_n(Some(&(MAX_N + 1).to_string())).is_err());
    }
}
