//! Metrics of every router, recorded through the [`metrics`] facade.
//!
//! Libraries emit, applications choose the exporter: without a recorder installed (a test, an
//! application that wants none) every call here is a no-op costing a few nanoseconds.
//!
//! Label cardinality stays bounded: labels take values from small fixed sets (outcomes), except
//! the per-node gauge [`ROUTER_NODE_IN_FLIGHT`], whose series exist only for live nodes. Gauges
//! are always **set** to an absolute value, never incremented: an exporter may drop a gauge that
//! has not changed for a while (that is how the series of a node that left disappears), and an
//! increment on a dropped gauge would start again from zero.

use std::sync::Arc;
use std::time::Instant;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use tarpc::trace::TraceId;

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

/// Registers the descriptions (Prometheus `# HELP`) of the routers' metrics. Call once after
/// installing a recorder.
pub fn describe() {
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
        Err(CallError::Cancelled) => ("cancelled", None, 0),
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

/// A node's in-flight gauge, looked up once per endpoint: each call then sets it without
/// hashing the label into the recorder's registry (at 10,000 nodes that lookup cost about 5 µs
/// per call, BENCHMARKS.md). A handle made before a recorder is installed stays a no-op: the
/// programs install theirs before they make a router.
pub(crate) fn node_in_flight_gauge(node: &Arc<str>) -> metrics::Gauge {
    gauge!(ROUTER_NODE_IN_FLIGHT, "node" => Arc::clone(node))
}
