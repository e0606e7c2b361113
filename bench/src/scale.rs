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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use distribution_client::{CallRouter, RouterConfig};
use distribution_examples::service::CalcClient;
use distribution_master::registry::Registration;
use distribution_master::{Master, MasterConfig, Registry};
use distribution_shared::{ServiceClient, defaults, stream};
use serde::Serialize;

use crate::args::Args;
use crate::procs;
use crate::report::Section;
use crate::rounds::{Round, VALUES, load, micros, summarize};
use crate::stats;

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

/// The address of the `i`th extra member: 127.1.x.y on the node's port.
fn member_addr(i: usize, port: u16) -> String {
    format!("127.1.{}.{}:{port}", (i >> 8) & 0xff, i & 0xff)
}

/// Grows the membership size by size and measures each, on the current (pinned) runtime.
async fn measure(
    registry: Registry,
    port: u16,
    settings: Settings,
) -> anyhow::Result<Vec<SizeFigures>> {
    let stream = stream::connect(
        &format!("127.0.0.1:{port}"),
        None,
        defaults::CONNECT_TIMEOUT,
    )
    .await
    .context("dialling the node")?;
    let raw = CalcClient::from_stream(stream, defaults::MAX_FRAME_LEN);
    let raw_call = Arc::new(move || {
        let client = raw.clone();
        async move {
            let ctx = tarpc::context::current();
            Ok::<_, anyhow::Error>(client.sum(ctx, VALUES.to_vec()).await??)
        }
    });
    load(&raw_call, 4, Duration::from_secs(10), 5_000).await?;

    let mut registered = 1;
    let mut out = Vec::new();
    for &size in &settings.sizes {
        while registered < size {
            let i = registered - 1;
            registry
                .register(Registration {
                    service: <CalcClient as distribution_shared::ServiceClient>::SERVICE.to_owned(),
                    ..Registration::new(
                        format!("sim-{i}"),
                        member_addr(i, port),
                        defaults::NODE_CAPACITY,
                    )
                })
                .map_err(|e| anyhow::anyhow!("registering a member: {e}"))?;
            registered += 1;
        }
        let router: CallRouter<CalcClient> =
            CallRouter::new(registry.subscribe(), RouterConfig::default());
        let before: CallRouter<CalcClient> = CallRouter::new(
            registry.subscribe(),
            RouterConfig::default().with_aperture_above(256),
        );
        for router in [&router, &before] {
            anyhow::ensure!(
                router.wait_for_nodes(size, Duration::from_secs(30)).await,
                "the router did not see {size} members"
            );
        }
        let routed = |router: &CallRouter<CalcClient>| {
            let router = router.clone();
            Arc::new(move || {
                let router = router.clone();
                async move {
                    let reply = router
                        .call(|client, ctx| async move { client.sum(ctx, VALUES.to_vec()).await })
                        .await?;
                    Ok::<_, anyhow::Error>(reply.value?)
                }
            })
        };
        let routed_call = routed(&router);
        let before_call = routed(&before);
        // Warm-up: about ten calls per member, so that the router has dialled (nearly) all.
        let warm = (size as u64 * 10).max(5_000);
        load(&routed_call, CONCURRENCY, Duration::from_secs(60), warm).await?;
        load(&before_call, CONCURRENCY, Duration::from_secs(60), warm).await?;
        let connected = router.stats().iter().filter(|s| s.served > 0).count();
        // The same spread without a router: raw clients on one connection per member, taken in
        // turn. Routed against it isolates what choosing costs from what spreading the calls
        // over many connections costs (fewer requests per write and per wake-up).
        // At most SPREAD_MAX connections: with the router's own, both processes stay within
        // their file limits, and with 16 calls in flight a few hundred connections already
        // spread them as much as more would.
        let mut spread = Vec::with_capacity(size.min(SPREAD_MAX));
        for i in 0..size.min(SPREAD_MAX) {
            let addr = if i == 0 {
                format!("127.0.0.1:{port}")
            } else {
                member_addr(i - 1, port)
            };
            let stream = stream::connect(&addr, None, defaults::CONNECT_TIMEOUT)
                .await
                .with_context(|| format!("dialling {addr}"))?;
            spread.push(CalcClient::from_stream(stream, defaults::MAX_FRAME_LEN));
        }
        let spread = Arc::new(spread);
        let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let spread_call = Arc::new(move || {
            let i = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % spread.len();
            let client = spread[i].clone();
            async move {
                let ctx = tarpc::context::current();
                Ok::<_, anyhow::Error>(client.sum(ctx, VALUES.to_vec()).await??)
            }
        });
        load(&spread_call, CONCURRENCY, Duration::from_secs(60), warm).await?;
        let mut raw_rounds: Vec<Round> = Vec::new();
        let mut routed_rounds: Vec<Round> = Vec::new();
        let mut spread_rounds: Vec<Round> = Vec::new();
        let mut before_rounds: Vec<Round> = Vec::new();
        for round in 0..settings.rounds {
            let (d, max) = (settings.round, settings.max_calls);
            for path in (0..4).map(|p| (p + round) % 4) {
                match path {
                    0 => raw_rounds.push(load(&raw_call, CONCURRENCY, d, max).await?),
                    1 => routed_rounds.push(load(&routed_call, CONCURRENCY, d, max).await?),
                    2 => spread_rounds.push(load(&spread_call, CONCURRENCY, d, max).await?),
                    _ => before_rounds.push(load(&before_call, CONCURRENCY, d, max).await?),
                }
            }
        }
        let before_pairs = raw_rounds.iter().zip(&before_rounds);
        let pairs = raw_rounds.iter().zip(&routed_rounds);
        let spread_pairs = spread_rounds.iter().zip(&routed_rounds);
        let (raw, routed) = (summarize(&raw_rounds), summarize(&routed_rounds));
        let spread_figures = summarize(&spread_rounds);
        let figures = SizeFigures {
            nodes: size,
            raw_rps: raw.rps,
            routed_rps: routed.rps,
            ratio: stats::median(pairs.clone().map(|(a, b)| b.rps / a.rps)),
            raw_cpu_us: raw.cpu_us,
            routed_cpu_us: routed.cpu_us,
            cpu_diff_us: stats::median(
                pairs.map(|(a, b)| micros(b.cpu_per_call) - micros(a.cpu_per_call)),
            ),
            spread_rps: spread_figures.rps,
            spread_cpu_us: spread_figures.cpu_us,
            spread_ratio: stats::median(spread_pairs.clone().map(|(a, b)| b.rps / a.rps)),
            spread_cpu_diff_us: stats::median(
                spread_pairs.map(|(a, b)| micros(b.cpu_per_call) - micros(a.cpu_per_call)),
            ),
            connected,
            before_rps: summarize(&before_rounds).rps,
            before_ratio: stats::median(before_pairs.clone().map(|(a, b)| b.rps / a.rps)),
            before_cpu_diff_us: stats::median(
                before_pairs.map(|(a, b)| micros(b.cpu_per_call) - micros(a.cpu_per_call)),
            ),
        };
        println!(
            "  {size:>6} members ({connected} connected): raw {:>7.0}/s cpu {:>5.2} µs | spread \
             {:>7.0}/s cpu {:>5.2} µs | routed {:>7.0}/s cpu {:>5.2} µs | routed/raw {:.3} \
             routed/spread {:.3}, cpu vs spread {:+.2} µs | before/raw {:.3} cpu {:+.2} µs",
            figures.raw_rps,
            figures.raw_cpu_us,
            figures.spread_rps,
            figures.spread_cpu_us,
            figures.routed_rps,
            figures.routed_cpu_us,
            figures.ratio,
            figures.spread_ratio,
            figures.spread_cpu_diff_us,
            figures.before_ratio,
            figures.before_cpu_diff_us
        );
        out.push(figures);
        drop((routed_call, before_call));
        drop((router, before));
    }
    Ok(out)
}
