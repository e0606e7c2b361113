//! Metrics of the master and of every router, recorded through the [`metrics`] facade.
//!
//! Libraries emit, applications choose the exporter: without a recorder installed (a test, an
//! application that wants none) every call here is a no-op costing a few nanoseconds; the demo
//! program installs `metrics-exporter-prometheus` and serves `GET /metrics`.
//!
//! Label cardinality stays bounded: labels take values from small fixed sets (states, outcomes,
//! routes, status codes), except the per-node gauge [`ROUTER_NODE_IN_FLIGHT`], whose series
//! exist only for live nodes. Gauges are always **set** to an absolute value, never incremented:
//! the exporter drops a gauge that has not changed for a while (that is how the series of a node
//! that left disappears), and an increment on a dropped gauge would start again from zero.

use std::sync::Arc;
use std::time::Instant;

use tarpc::trace::TraceId;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Gauge, label `state` (`up`, `late`): registered nodes by state.
pub const NODES: &str = "distribution_master_nodes";
/// Counter: nodes that joined.
pub const JOINS: &str = "distribution_master_joins_total";
/// Counter: nodes that left (deregistered).
pub const LEAVES: &str = "distribution_master_leaves_total";
/// Counter: nodes evicted after their lease ran out.
pub const EVICTIONS: &str = "distribution_master_evictions_total";
/// Counter: nodes replaced by a new id on the same address (a restarted process).
pub const REPLACEMENTS: &str = "distribution_master_replacements_total";
/// Counter: heartbeats received and accepted.
pub const HEARTBEATS: &str = "distribution_master_heartbeats_total";
/// Counter: heartbeats from unknown ids, answered `404`: each makes its node register again.
pub const HEARTBEATS_UNKNOWN: &str = "distribution_master_heartbeats_unknown_total";
/// Histogram: time to handle one heartbeat in the registry, in seconds.
pub const HEARTBEAT_SECONDS: &str = "distribution_master_heartbeat_seconds";
/// Gauge: blocking queries (`GET /v1/nodes?index=N`) waiting now, i.e. remote followers.
pub const BLOCKING_QUERIES: &str = "distribution_master_blocking_queries";
/// Gauge: clients following `GET /v1/events` now.
pub const EVENT_SUBSCRIBERS: &str = "distribution_master_event_subscribers";
/// Counter, labels `route` (the matched route, or `unmatched`) and `status`: HTTP answers.
pub const HTTP_RESPONSES: &str = "distribution_master_http_responses_total";

/// Counter, label `outcome` (`ok`, `remote`, `deadline`, `transport`, `no_node`): routed calls.
pub const ROUTER_CALLS: &str = "distribution_router_calls_total";
/// Counter: attempts, one per node tried.
pub const ROUTER_ATTEMPTS: &str = "distribution_router_attempts_total";
/// Counter: attempts after the first one of a call.
pub const ROUTER_RETRIES: &str = "distribution_router_retries_total";
/// Counter: nodes ejected from routing after failures.
pub const ROUTER_EJECTIONS: &str = "distribution_router_ejections_total";
/// Counter: probe calls to a node whose ejection pause ended.
pub const ROUTER_PROBES: &str = "distribution_router_probes_total";
/// Histogram: a routed call's time, every attempt included, in seconds.
pub const ROUTER_CALL_SECONDS: &str = "distribution_router_call_seconds";
/// Gauge, label `node`: this process's routed calls in flight on each live node.
pub const ROUTER_NODE_IN_FLIGHT: &str = "distribution_router_node_in_flight";

/// Registers the descriptions (Prometheus `# HELP`) of the master's and routers' metrics. Call
/// once after installing a recorder.
pub fn describe() {
    describe_gauge!(NODES, "Registered nodes by state (up, late).");
    describe_counter!(JOINS, "Nodes that joined the registry.");
    describe_counter!(LEAVES, "Nodes that left the registry (deregistered).");
    describe_counter!(EVICTIONS, "Nodes evicted after their lease ran out.");
    describe_counter!(
        REPLACEMENTS,
        "Nodes replaced by a new id on the same address."
    );
    describe_counter!(HEARTBEATS, "Heartbeats accepted.");
    describe_counter!(
        HEARTBEATS_UNKNOWN,
        "Heartbeats from unknown nodes (answered 404; the node registers again)."
    );
    describe_histogram!(
        HEARTBEAT_SECONDS,
        metrics::Unit::Seconds,
        "Time to handle one heartbeat in the registry."
    );
    describe_gauge!(BLOCKING_QUERIES, "Blocking queries waiting now.");
    describe_gauge!(EVENT_SUBSCRIBERS, "Clients following /v1/events now.");
    describe_counter!(HTTP_RESPONSES, "HTTP answers by route and status.");
    describe_counter!(ROUTER_CALLS, "Routed calls by outcome.");
    describe_counter!(
        ROUTER_ATTEMPTS,
        "Attempts of routed calls (one per node tried)."
    );
    describe_counter!(ROUTER_RETRIES, "Attempts after the first one of a call.");
    describe_counter!(
        ROUTER_EJECTIONS,
        "Nodes ejected from routing after failures."
    );
    describe_counter!(
        ROUTER_PROBES,
        "Probe calls to a node after its ejection pause."
    );
    describe_histogram!(
        ROUTER_CALL_SECONDS,
        metrics::Unit::Seconds,
        "Routed call time, all attempts included."
    );
    describe_gauge!(
        ROUTER_NODE_IN_FLIGHT,
        "This process's routed calls in flight per live node."
    );
}

/// Records the end of a routed call: its outcome and its time since `started`, as metrics and
/// as a debug log line carrying the call's trace id (the node's line for the call has the same).
pub(crate) fn call_done<T>(
    result: &Result<crate::Reply<T>, crate::CallError>,
    started: Instant,
    trace: TraceId,
) {
    use crate::CallError;
    let (outcome, node, attempts) = match result {
        Ok(reply) => ("ok", Some(&reply.node), reply.attempts),
        Err(CallError::Remote { node, .. }) => ("remote", Some(node), 0),
        Err(CallError::DeadlineExceeded { node, .. }) => ("deadline", node.as_ref(), 0),
        Err(CallError::Transport { node, attempts, .. }) => ("transport", Some(node), *attempts),
        Err(CallError::NoNodeAvailable) => ("no_node", None, 0),
    };
    let elapsed = started.elapsed();
    counter!(ROUTER_CALLS, "outcome" => outcome).increment(1);
    histogram!(ROUTER_CALL_SECONDS).record(elapsed.as_secs_f64());
    if tracing::enabled!(tracing::Level::DEBUG) {
        let node = node.map(|n| n.id.to_string()).unwrap_or_default();
        tracing::debug!(trace_id = %trace, node, attempts, outcome,
            latency_us = elapsed.as_micros() as u64, "routed call");
    }
}

/// A fresh trace id for a routed call, unless the caller runs inside a traced call already (a
/// node calling other nodes): then the call joins that trace.
pub(crate) fn trace_id() -> TraceId {
    let current = tarpc::context::current().trace_context.trace_id;
    if current.is_none() {
        TraceId::from(rand::random::<u128>().max(1))
    } else {
        current
    }
}

/// Records one attempt (the `attempt`-th of its call).
pub(crate) fn attempt(attempt: u32) {
    counter!(ROUTER_ATTEMPTS).increment(1);
    if attempt > 1 {
        counter!(ROUTER_RETRIES).increment(1);
    }
}

/// Sets a node's in-flight gauge to `in_flight`.
pub(crate) fn node_in_flight(node: &Arc<str>, in_flight: u32) {
    gauge!(ROUTER_NODE_IN_FLIGHT, "node" => Arc::clone(node)).set(in_flight);
}

/// The last values set on [`BLOCKING_QUERIES`] and [`EVENT_SUBSCRIBERS`] (process-wide, as the
/// gauges are), for [`refresh`].
static WAITING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static SUBSCRIBERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the blocking-queries gauge.
pub(crate) fn blocking_queries(n: usize) {
    WAITING.store(n as u64, std::sync::atomic::Ordering::Relaxed);
    gauge!(BLOCKING_QUERIES).set(n as f64);
}

/// Sets the event-subscribers gauge.
pub(crate) fn event_subscribers(n: usize) {
    SUBSCRIBERS.store(n as u64, std::sync::atomic::Ordering::Relaxed);
    gauge!(EVENT_SUBSCRIBERS).set(n as f64);
}

/// Sets the master's gauges that change only with their cause again, so that an exporter
/// dropping gauges left unchanged for a while (the demo's: a minute) keeps them. Called by the
/// reaper at every sweep (which sets the node counts itself).
pub(crate) fn refresh() {
    use std::sync::atomic::Ordering::Relaxed;
    gauge!(BLOCKING_QUERIES).set(WAITING.load(Relaxed) as f64);
    gauge!(EVENT_SUBSCRIBERS).set(SUBSCRIBERS.load(Relaxed) as f64);
}
