//! Metrics of the master, recorded through the [`metrics`] facade (the routers' are in
//! `distribution_client::observe`; [`describe`] describes both).
//!
//! Libraries emit, applications choose the exporter: without a recorder installed (a test, an
//! application that wants none) every call here is a no-op costing a few nanoseconds; the demo
//! program installs `metrics-exporter-prometheus` and serves `GET /metrics`.
//!
//! Label cardinality stays bounded: labels take values from small fixed sets (states, outcomes,
//! routes, status codes). Gauges are always **set** to an absolute value, never incremented:
//! the exporter drops a gauge that has not changed for a while (that is how the series of a node
//! that left disappears), and an increment on a dropped gauge would start again from zero.

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};

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
/// Gauge: 1 while the master has stopped evicting because most renewals are missing
/// (self-preservation), else 0.
pub const SELF_PRESERVATION: &str = "distribution_master_self_preservation";
/// Counter: heartbeats received and accepted.
pub const HEARTBEATS: &str = "distribution_master_heartbeats_total";
/// Counter: heartbeats from unknown ids, answered `404`: each makes its node register again.
pub const HEARTBEATS_UNKNOWN: &str = "distribution_master_heartbeats_unknown_total";
/// Histogram: time to handle one heartbeat in the registry, in seconds.
pub const HEARTBEAT_SECONDS: &str = "distribution_master_heartbeat_seconds";
/// Gauge: blocking queries (`GET /v1/nodes?index=N`) waiting now, i.e. remote followers.
pub const BLOCKING_QUERIES: &str = "distribution_master_blocking_queries";
/// Counter, label `kind`: answers of `GET /v1/changes`: `changes` (what changed since the
/// follower's view), `first` (the whole list to a follower without a view: its start, or after
/// an outage), `resync` (the whole list to a follower whose view could not be used: another
/// master process, or a change it needs gone from the history). A steady `resync` rate means
/// followers fall behind: each costs one whole list.
pub const CHANGES_ANSWERS: &str = "distribution_master_changes_answers_total";
/// Gauge: clients following `GET /v1/events` now.
pub const EVENT_SUBSCRIBERS: &str = "distribution_master_event_subscribers";
/// Counter, labels `route` (the matched route, or `unmatched`) and `status`: HTTP answers.
pub const HTTP_RESPONSES: &str = "distribution_master_http_responses_total";

/// Registers the descriptions (Prometheus `# HELP`) of the master's and routers' metrics. Call
/// once after installing a recorder.
pub fn describe() {
    distribution_client::observe::describe();
    describe_gauge!(NODES, "Registered nodes by state (up, late).");
    describe_counter!(JOINS, "Nodes that joined the registry.");
    describe_counter!(LEAVES, "Nodes that left the registry (deregistered).");
    describe_counter!(EVICTIONS, "Nodes evicted after their lease ran out.");
    describe_counter!(
        REPLACEMENTS,
        "Nodes replaced by a new id on the same address."
    );
    describe_gauge!(
        SELF_PRESERVATION,
        "1 while evictions are stopped because most renewals are missing (self-preservation)."
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
    describe_counter!(
        CHANGES_ANSWERS,
        "Answers of GET /v1/changes by kind (changes, first, resync: a whole list to a follower whose view could not be used)."
    );
    describe_gauge!(EVENT_SUBSCRIBERS, "Clients following /v1/events now.");
    describe_counter!(HTTP_RESPONSES, "HTTP answers by route and status.");
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
