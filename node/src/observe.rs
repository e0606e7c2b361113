//! Metrics of a node, recorded through the [`metrics`] facade (the application installs the
//! exporter; without one these calls cost a few nanoseconds).
//!
//! Gauges are always set to an absolute value (see `distribution_master::observe` for why).

use std::sync::atomic::{AtomicI64, Ordering};

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};

/// Gauge: calls running on this node now.
pub const IN_FLIGHT: &str = "distribution_node_in_flight";
/// Counter: calls finished (answered, failed or panicked).
pub const SERVED: &str = "distribution_node_served_total";
/// Counter: calls refused before any work, at capacity or with every call thread held (the
/// router sends them elsewhere).
pub const REFUSED: &str = "distribution_node_refused_total";
/// Counter: handlers that panicked (the caller got an error; the node went on).
pub const PANICS: &str = "distribution_node_handler_panics_total";
/// Histogram: a call's handler time, in seconds.
pub const HANDLER_SECONDS: &str = "distribution_node_handler_seconds";
/// Counter: heartbeats or registrations that got no lease (master unreachable or refusing).
pub const HEARTBEAT_FAILURES: &str = "distribution_node_heartbeat_failures_total";
/// Counter: registrations after the master forgot the node (a `404` on a heartbeat).
pub const REREGISTRATIONS: &str = "distribution_node_reregistrations_total";
/// Gauge: callers' connections open on this node now.
pub const CONNECTIONS_OPEN: &str = "distribution_node_connections_open";
/// Counter (labels `service`, `method`): polls of a handler that held their call thread longer
/// than `NodeConfig::blocking_threshold` without yielding.
pub const HANDLER_BLOCKED: &str = "distribution_node_handler_blocked_total";
/// Gauge: call threads held now by a handler's poll longer than the threshold.
pub const CALL_THREADS_HELD: &str = "distribution_node_call_threads_held";

/// Counter: connections refused because the caller failed the cluster handshake.
pub const CONNECTIONS_REFUSED: &str = "distribution_node_connections_refused_total";

/// Registers the descriptions (Prometheus `# HELP`) of the node's metrics.
pub fn describe() {
    describe_gauge!(IN_FLIGHT, "Calls running on this node now.");
    describe_counter!(SERVED, "Calls finished on this node.");
    describe_counter!(
        REFUSED,
        "Calls refused before any work: at capacity, or every call thread held."
    );
    describe_counter!(
        HANDLER_BLOCKED,
        "Handler polls that held their call thread past the blocking threshold."
    );
    describe_gauge!(
        CALL_THREADS_HELD,
        "Call threads held now by a handler past the blocking threshold."
    );
    describe_counter!(PANICS, "Call handlers that panicked.");
    describe_histogram!(
        HANDLER_SECONDS,
        metrics::Unit::Seconds,
        "Call handler time."
    );
    describe_counter!(
        HEARTBEAT_FAILURES,
        "Heartbeats or registrations that got no lease."
    );
    describe_counter!(
        REREGISTRATIONS,
        "Registrations after the master forgot this node."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Callers' connections open now.");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused: the caller failed the cluster handshake."
    );
}

/// Connections open in this process (all nodes of it), behind [`CONNECTIONS_OPEN`].
static OPEN: AtomicI64 = AtomicI64::new(0);

/// Counts a connection as open until dropped.
pub(crate) struct ConnectionOpen(());

impl ConnectionOpen {
    pub(crate) fn new() -> Self {
        let n = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
        gauge!(CONNECTIONS_OPEN).set(n as f64);
        Self(())
    }
}

impl Drop for ConnectionOpen {
    fn drop(&mut self) {
        let n = OPEN.fetch_sub(1, Ordering::Relaxed) - 1;
        gauge!(CONNECTIONS_OPEN).set(n as f64);
    }
}

/// Sets the node's gauges again from their sources, so that an exporter dropping gauges left
/// unchanged for a while (the demo's drops them after a minute, to forget departed nodes) keeps
/// those of a live but idle node. Called at every heartbeat.
pub(crate) fn refresh(load: &crate::Load) {
    gauge!(IN_FLIGHT).set(load.in_flight());
    gauge!(CONNECTIONS_OPEN).set(OPEN.load(Ordering::Relaxed) as f64);
}
