//! The demo programs' metrics: the master's Prometheus exporter
//! ([`distribution_master::cli::prometheus`], which `distribution-master` uses too), plus the
//! node's metric descriptions, and `GET /metrics` for the programs with no HTTP server of their
//! own (node, client).
//!
//! The exporter itself (buckets, the idle timeout that drops departed nodes' gauges,
//! `DIST_GAUGE_IDLE_MS`) lives with the master's command line so the two master programs export
//! the same way; this module adds what only the demo runs: nodes.

use std::sync::Once;

use axum::routing::get;
use distribution_master::cli::prometheus;
use distribution_master::config::MetricsRender;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// Installs the Prometheus recorder as the process's global one (once; later calls return the
/// same handle) and describes the master's and the node's metrics. Must run inside a runtime.
pub fn install() -> PrometheusHandle {
    static NODE_DESCRIBED: Once = Once::new();
    let handle = prometheus::install();
    NODE_DESCRIBED.call_once(distribution_node::observe::describe);
    handle
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
