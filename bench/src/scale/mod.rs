//! Part 7, routing at scale: the same small call (`Calc::sum`) through a router whose membership
//! holds 1, 10, 30, 100, 300, 1,000 and 10,000 nodes, against a raw tarpc client, side by side in
//! one run.
//! It shows whether a call costs the same at 10,000 nodes as at 1 (the router chooses with
//! power of two choices above 16 nodes, shares no lock between calls, and above 256 nodes calls
//! only its window of them: the aperture, `client/src/router/aperture.rs`).
//!
//! Set-up:
//! - one `distribution-demo node` process **pinned to CPU 1** listens on `0.0.0.0:P`, so that it
//!   answers on every address of 127.0.0.0/8; the in-process master (a 10-minute heartbeat
//!   interval, so nothing expires during the run) lists it once under its own id, and then
//!   `size - 1` more ids with the addresses `127.1.x.y:P`: every member is a real, dialable
//!   address, each with its own connection from the router, all served by the one process;
//! - the router and the raw client run on one current-thread runtime pinned to CPU 0;
//! - at each size the router is new (its connections dialled afresh), warmed up until it has
//!   made about ten calls per member, then raw and routed rounds alternate, and each figure is
//!   the median over the rounds (ratios: the median of each round's raw/routed pair);
//! - a third path, **spread**: raw clients over one connection per member (at most 4,096)
//!   taken in turn, no router. Spreading 16 calls in flight over many connections costs by itself (fewer requests
//!   per write and per wake-up than on the raw path's single connection); routed against spread
//!   is the cost of choosing alone;
//! - a fourth path, **before**: a router with the window only above 256 nodes
//!   (`aperture_above = 256`, the default before issue #32), so that the window at every size is
//!   compared with what it replaced in the same run;
//! - closed loop, 16 callers: throughput and the callers' thread CPU per call.

use std::time::Duration;

use distribution_master::{Master, MasterConfig};
use serde::Serialize;

mod measure;

use measure::measure;

use crate::args::Args;
use crate::procs;
use crate::report::Section;

/// Concurrent callers.
const CONCURRENCY: usize = 16;

/// The most connections of the spread path (see `measure`).
const SPREAD_MAX: usize = 4_096;

/// How long and how often each size is measured.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    sizes: Vec<usize>,
    round: Duration,
    rounds: usize,
    max_calls: u64,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                sizes: vec![1, 1_000],
                round: Duration::from_millis(400),
                rounds: 1,
                max_calls: 200_000,
            }
        } else {
            Self {
                sizes: vec![1, 10, 30, 100, 300, 1_000, 10_000],
                round: Duration::from_secs(2),
                rounds: 6,
                max_calls: 2_000_000,
            }
        }
    }
}

/// One size's figures.
#[derive(Debug, Clone, Copy, Serialize)]
struct SizeFigures {
    nodes: usize,
    raw_rps: f64,
    routed_rps: f64,
    /// Median of the rounds' routed/raw throughput.
    ratio: f64,
    raw_cpu_us: f64,
    routed_cpu_us: f64,
    /// Routed minus raw caller CPU per call, microseconds (median over the pairs).
    cpu_diff_us: f64,
    /// Raw clients over one connection per member, taken in turn (no router).
    spread_rps: f64,
    spread_cpu_us: f64,
    /// Routed over spread throughput (median of the pairs): the cost of choosing alone.
    spread_ratio: f64,
    /// Routed minus spread caller CPU per call, microseconds (median of the pairs).
    spread_cpu_diff_us: f64,
    /// Members the router had a connection to after the warm-up.
    connected: usize,
    /// A router with the window only above 256 nodes (before issue #32).
    before_rps: f64,
    /// Its throughput over raw (median of the pairs).
    before_ratio: f64,
    /// Its caller CPU per call minus raw, microseconds (median of the pairs).
    before_cpu_diff_us: f64,
}

/// Runs this part.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    procs::require_pinning(2)?;
    let settings = Settings::new(args.quick);
    let demo = args.demo_binary()?;
    let master = Master::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        MasterConfig::with_interval(Duration::from_secs(600)),
    )?;
    let port = procs::free_port()?;
    let limit = "20000";
    let mut command = procs::pinned(1, &demo);
    command.args([
        "node",
        "--master",
        &master.local_addr().to_string(),
        "--listen",
        &format!("0.0.0.0:{port}"),
        "--advertise",
        &format!("127.0.0.1:{port}"),
        "--max-connections",
        limit,
        "--max-connections-per-ip",
        limit,
    ]);
    let log = procs::log_path(&args.out, "scale-node")?;
    let mut node = procs::Proc::spawn("scale node on CPU 1", command, &log)?;
    let registry = master.registry().clone();
    let started = std::time::Instant::now();
    while registry.is_empty() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "the node did not register within 15 s (see logs/scale-node.log under --out)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "scale: Calc::sum through routers over 1 to 10,000 members (one node process on CPU 1 \
         answering on 127.0.0.0/8) vs a raw client; callers on CPU 0; {} rounds of {:?}",
        settings.rounds, settings.round
    );
    let measured = {
        let settings = settings.clone();
        let callers = std::thread::Builder::new()
            .name("bench-callers".into())
            .spawn(move || -> anyhow::Result<Vec<SizeFigures>> {
                procs::pin_this_thread(0)?;
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(measure(registry, port, settings))
            })?;
        tokio::task::spawn_blocking(move || callers.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the callers' thread panicked"))?
    };
    node.ensure_running()?;
    drop(node);
    master.shutdown().await;
    let sizes = measured?;

    let mut section = Section::new(
        "scale",
        &[
            "members",
            "connected",
            "raw calls/s",
            "routed calls/s",
            "routed/raw",
            "raw CPU µs/call",
            "routed CPU µs/call",
            "CPU diff µs",
            "spread calls/s",
            "routed/spread",
            "CPU vs spread µs",
            "before/raw",
            "before CPU diff µs",
        ],
    );
    for s in &sizes {
        section.row(vec![
            s.nodes.to_string(),
            s.connected.to_string(),
            format!("{:.0}", s.raw_rps),
            format!("{:.0}", s.routed_rps),
            format!("{:.3}", s.ratio),
            format!("{:.2}", s.raw_cpu_us),
            format!("{:.2}", s.routed_cpu_us),
            format!("{:+.2}", s.cpu_diff_us),
            format!("{:.0}", s.spread_rps),
            format!("{:.3}", s.spread_ratio),
            format!("{:+.2}", s.spread_cpu_diff_us),
            format!("{:.3}", s.before_ratio),
            format!("{:+.2}", s.before_cpu_diff_us),
        ]);
    }
    if let Some(one) = sizes.first() {
        for s in &sizes[1..] {
            section.target(
                format!(
                    "at {} members, routed >= 0.95 x raw and caller CPU within 1 µs of 1 member's",
                    s.nodes
                ),
                format!(
                    "{:.3} x, {:+.2} µs (before issue 32: {:.3} x, {:+.2} µs)",
                    s.ratio,
                    s.cpu_diff_us - one.cpu_diff_us,
                    s.before_ratio,
                    s.before_cpu_diff_us - one.before_cpu_diff_us
                ),
                s.ratio >= 0.95 && s.cpu_diff_us - one.cpu_diff_us <= 1.0,
            );
        }
    }
    if let (Some(one), Some(largest)) = (sizes.first(), sizes.last()) {
        section.target(
            format!(
                "at {} members, routed >= 0.95 x raw throughput",
                largest.nodes
            ),
            format!("{:.3} x", largest.ratio),
            largest.ratio >= 0.95,
        );
        section.target(
            format!(
                "at {} members, routed >= 0.95 x the same spread without a router",
                largest.nodes
            ),
            format!(
                "{:.3} x (caller CPU {:+.2} µs per call)",
                largest.spread_ratio, largest.spread_cpu_diff_us
            ),
            largest.spread_ratio >= 0.95,
        );
        let growth = largest.cpu_diff_us - one.cpu_diff_us;
        section.target(
            format!(
                "at {} members, caller CPU per call within 1 µs of 1 member's (routed - raw)",
                largest.nodes
            ),
            format!(
                "{:+.2} µs at {}, {:+.2} µs at 1: {growth:+.2} µs",
                largest.cpu_diff_us, largest.nodes, one.cpu_diff_us
            ),
            growth <= 1.0,
        );
    }
    section.figures = serde_json::json!({
        "setup": "one node process on CPU 1 listening on 0.0.0.0, members registered at \
                  127.1.x.y; router and raw client on one current-thread runtime on CPU 0; \
                  16 callers, closed loop; raw and routed rounds alternate; medians",
        "settings": settings,
        "sizes": sizes,
    });
    Ok(section)
}
