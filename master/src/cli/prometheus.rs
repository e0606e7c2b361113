//! The programs' metrics exporter: `metrics-exporter-prometheus` behind `GET /metrics`.
//!
//! The libraries record through the `metrics` facade; this module is the programs' choice of
//! exporter. `metrics-exporter-prometheus` over the official `prometheus-client`: it is a
//! recorder for that facade (`prometheus-client` would need every library to hold its own
//! registry handles), and it renders on demand, so `/metrics` is one more axum route on the
//! servers the programs already run. Histograms get fixed buckets (Prometheus histograms, not
//! summaries, so they can be aggregated). A gauge that has not changed for [`GAUGE_IDLE`] is
//! dropped from the exposition: that is how the per-node series of a node that left disappear.
//!
//! It lives here, with the master's command line, so that `distribution-master` and the demo's
//! programs export the same way (the demo adds the node's metric descriptions).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::config::MetricsRender;

/// How long a gauge may go without being set before it leaves the exposition: 60 s, or
/// `DIST_GAUGE_IDLE_MS` (for tests). The libraries set the gauges of live things again every few
/// seconds (router: 5 s, node: each heartbeat, master: each reaper sweep), so only the series
/// of departed nodes go.
pub const GAUGE_IDLE: Duration = Duration::from_secs(60);

/// [`GAUGE_IDLE`], or the `DIST_GAUGE_IDLE_MS` override.
fn gauge_idle() -> Duration {
    std::env::var("DIST_GAUGE_IDLE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(GAUGE_IDLE, Duration::from_millis)
}

/// Histogram buckets, in seconds: 10 µs (a heartbeat in the registry) to 10 s (a long call).
const BUCKETS: [f64; 15] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1,
    0.5, 1.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global one (once; later calls return the
/// same handle), describes the master's metrics ([`crate::observe::describe`]), and starts its
/// upkeep task. Must run inside a Tokio runtime.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("the buckets are not empty")
                .idle_timeout(MetricKindMask::GAUGE, Some(gauge_idle()));
            let handle = builder.install_recorder().unwrap_or_else(|_| {
                // Another recorder is installed (a test harness): render into our own.
                PrometheusBuilder::new().build_recorder().handle()
            });
            crate::observe::describe();
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// [`install`], as the renderer [`crate::MasterConfig::metrics`] takes.
pub fn render() -> MetricsRender {
    let handle = install();
    std::sync::Arc::new(move || handle.render())
}
