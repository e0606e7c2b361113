//! The demo programs' metrics exporter: `metrics-exporter-prometheus` behind `GET /metrics`.
//!
//! The libraries record through the `metrics` facade; this module is the application's choice of
//! exporter. `metrics-exporter-prometheus` over the official `prometheus-client`: it is a
//! recorder for that facade (`prometheus-client` would need every library to hold its own
//! registry handles), and it renders on demand, so `/metrics` is one more axum route on the
//! servers the programs already run. Histograms get fixed buckets (Prometheus histograms, not
//! summaries, so they can be aggregated). A gauge that has not changed for [`GAUGE_IDLE`] is
//! dropped from the exposition: that is how the per-node series of a node that left disappear.

use std::sync::OnceLock;
use std::time::Duration;

use axum::routing::get;
use distribution_master::config::MetricsRender;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tokio::net::TcpListener;

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
/// same handle), describes the metrics, and starts its upkeep task. Must run inside a runtime.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("the buckets are not empty")
                .idle_timeout(MetricKindMask::GAUGE, Some(gauge_idle()))
                .install_recorder()
                .unwrap_or_else(|_| {
                    // Another recorder is installed (a test harness): render into our own.
                    PrometheusBuilder::new().build_recorder().handle()
                });
            distribution_master::observe::describe();
            distribution_node::observe::describe();
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

/// [`install`], as the renderer [`distribution_master::MasterConfig::metrics`] takes.
pub fn render() -> MetricsRender {
    let handle = install();
    std::sync::Arc::new(move || handle.render())
}

/// Routes serving `GET /metrics` (and `GET /health`), for the programs that have no HTTP server
/// of their own (node, client).
pub fn routes() -> axum::Router {
    let render = render();
    axum::Router::new()
        .route("/metrics", get(move || async move { render() }))
        .route("/health", get(|| async { "ok\n" }))
}

/// Serves [`routes`] on `listener` in the background.
pub fn serve(listener: TcpListener) {
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, routes()).await {
            tracing::warn!(error = %err, "metrics server failed");
        }
    });
}
