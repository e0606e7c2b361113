//! Part 1, routing overhead: the same small call (`Calc::sum` of three values, no delay) through
//! the router and through a raw tarpc client, on the same node.
//!
//! Set-up, chosen so that the two paths compete for nothing but the comparison:
//! - the node is a `distribution-demo node` **process pinned to CPU 1**;
//! - the callers (the router, with its in-process master's membership, and the raw client) run
//!   on **one current-thread tokio runtime on a thread pinned to CPU 0**, so both paths pay for
//!   their own CPU only: what the router adds per call shows up as fewer calls per second;
//! - the raw client is [`ServiceClient::from_stream`] over [`stream::connect`], the very framing
//!   and dialling the router uses, on its own connection to the same node;
//! - each concurrency runs several rounds, raw and routed alternating (and which goes first
//!   alternating too), and each figure is the median over the rounds, so noise hits both.
//!
//! Each round is `concurrency` tasks calling in a loop for a fixed time, bounded in count too.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use distribution_examples::service::CalcClient;
use distribution_master::{Master, MasterConfig, Membership, Router, RouterConfig};
use distribution_shared::{ServiceClient, defaults, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Args;
use crate::procs;
use crate::report::Section;
use crate::{stats, system};

/// The concurrencies measured.
pub const CONCURRENCY: [usize; 3] = [1, 16, 128];

/// The values every call adds, and their sum.
const VALUES: [i64; 3] = [1_000, 2_000, 3_000];
const EXPECTED: i64 = 6_000;

/// How long and how often each concurrency is measured.
#[derive(Debug, Clone, Copy, Serialize)]
struct Settings {
    /// How long one round of one path runs.
    round: Duration,
    /// Rounds per path and concurrency (the median is reported).
    rounds: usize,
    /// The most calls one round makes, whatever its duration.
    max_calls: u64,
    /// Calls per path before measuring (dialling, allocator, caches).
    warmup: u64,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                round: Duration::from_millis(400),
                rounds: 1,
                max_calls: 200_000,
                warmup: 500,
            }
        } else {
            Self {
                round: Duration::from_secs(2),
                rounds: 8,
                max_calls: 2_000_000,
                warmup: 20_000,
            }
        }
    }
}

/// One path's figures at one concurrency (medians over the rounds).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PathFigures {
    /// Completed calls per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// CPU time the callers' thread spent per call (router or raw client, tarpc's dispatch,
    /// socket I/O and the benchmark loop), microseconds: the cost of a call on the caller's
    /// side, unlike wall-clock figures undisturbed by other load on the machine.
    pub cpu_us: f64,
    /// Calls measured, over all rounds.
    pub calls: u64,
}

/// Raw and routed at one concurrency: what `figures.points` of the section holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Point {
    /// Concurrent callers.
    pub concurrency: usize,
    /// The raw tarpc client.
    pub raw: PathFigures,
    /// Through the router.
    pub routed: PathFigures,
    /// Routed over raw throughput: the median over rounds of the ratio of each round's pair
    /// (a raw and a routed run side by side), so that slow drifts of the machine cancel out.
    pub ratio: f64,
    /// Routed minus raw p50, microseconds: the median over the rounds' pairs.
    pub p50_diff_us: f64,
}

/// One round of one path.
#[derive(Debug, Clone, Copy)]
struct Round {
    rps: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_call: Duration,
    calls: u64,
}

/// Runs this part.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    procs::require_pinning(2)?;
    let settings = Settings::new(args.quick);
    let demo = args.demo_binary()?;
    let master = Master::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        MasterConfig::default(),
    )?;
    let node_log = procs::log_path(&args.out, "overhead-node")?;
    let mut node = procs::node(&demo, master.local_addr(), 1, &node_log)?;
    let membership = master.registry().subscribe();

    println!(
        "overhead: Calc::sum through the router vs a raw tarpc client; node pinned to CPU 1, \
         callers to CPU 0; {} rounds of {:?} per path and concurrency",
        settings.rounds, settings.round
    );
    let callers = std::thread::Builder::new()
        .name("bench-callers".into())
        .spawn(move || -> anyhow::Result<Vec<Point>> {
            procs::pin_this_thread(0)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(measure(membership, settings))
        })?;
    let points = tokio::task::spawn_blocking(move || callers.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the callers' thread panicked"))?;
    node.ensure_running()?;
    drop(node);
    master.shutdown().await;
    let points = points?;

    let mut section = Section::new(
        "overhead",
        &[
            "concurrency",
            "raw calls/s",
            "routed calls/s",
            "routed/raw",
            "raw p50 µs",
            "routed p50 µs",
            "p50 diff µs",
            "raw p99 µs",
            "routed p99 µs",
            "raw CPU µs/call",
            "routed CPU µs/call",
        ],
    );
    for p in &points {
        let (ratio, diff) = (p.ratio, p.p50_diff_us);
        section.row(vec![
            p.concurrency.to_string(),
            format!("{:.0}", p.raw.rps),
            format!("{:.0}", p.routed.rps),
            format!("{ratio:.3}"),
            format!("{:.1}", p.raw.p50_us),
            format!("{:.1}", p.routed.p50_us),
            format!("{diff:+.1}"),
            format!("{:.1}", p.raw.p99_us),
            format!("{:.1}", p.routed.p99_us),
            format!("{:.2}", p.raw.cpu_us),
            format!("{:.2}", p.routed.cpu_us),
        ]);
    }
    for p in &points {
        let ratio = p.ratio;
        section.target(
            format!(
                "routed >= 0.9 x raw throughput at concurrency {}",
                p.concurrency
            ),
            format!("{ratio:.3} x"),
            ratio >= 0.9,
        );
    }
    for p in &points {
        let diff = p.p50_diff_us;
        section.target(
            format!(
                "routed p50 at most 10 µs above raw at concurrency {}",
                p.concurrency
            ),
            format!("{diff:+.1} µs"),
            diff <= 10.0,
        );
    }
    section.figures = serde_json::json!({
        "setup": "node process pinned to CPU 1; router and raw client on one current-thread \
                  runtime pinned to CPU 0; raw and routed rounds alternate; medians over rounds; \
                  ratio and p50_diff_us: medians over the rounds' (raw, routed) pairs",
        "settings": settings,
        "points": points,
    });
    Ok(section)
}

/// The points of a section's figures (for the plot).
pub fn points(section: &Section) -> anyhow::Result<Vec<Point>> {
    serde_json::from_value(section.figures["points"].clone())
        .context("the overhead section has no points")
}

/// Measures both paths at every concurrency, on the current (pinned) runtime.
async fn measure(
    membership: watch::Receiver<Membership>,
    settings: Settings,
) -> anyhow::Result<Vec<Point>> {
    let router: Router<CalcClient> = Router::new(membership.clone(), RouterConfig::default());
    anyhow::ensure!(
        router.wait_for_nodes(1, Duration::from_secs(15)).await,
        "the node did not register within 15 s (see logs/overhead-node.log under --out)"
    );
    let addr = membership.borrow().members[0].addr.to_string();
    let stream = stream::connect(&addr, None, defaults::CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("dialling the node at {addr}"))?;
    let raw = CalcClient::from_stream(stream, defaults::MAX_FRAME_LEN);

    let raw_call = move || {
        let client = raw.clone();
        async move {
            let ctx = tarpc::context::current();
            Ok::<_, anyhow::Error>(client.sum(ctx, VALUES.to_vec()).await??)
        }
    };
    let routed_call = move || {
        let router = router.clone();
        async move {
            let reply = router
                .call(|client, ctx| async move { client.sum(ctx, VALUES.to_vec()).await })
                .await?;
            Ok::<_, anyhow::Error>(reply.value?)
        }
    };
    let raw_call = Arc::new(raw_call);
    let routed_call = Arc::new(routed_call);

    // Warm-up: dials the router's connection, fills caches; `load` checks every answer.
    load(&raw_call, 4, Duration::from_secs(10), settings.warmup).await?;
    load(&routed_call, 4, Duration::from_secs(10), settings.warmup).await?;

    let mut points = Vec::new();
    for concurrency in CONCURRENCY {
        let mut raw_rounds = Vec::new();
        let mut routed_rounds = Vec::new();
        for round in 0..settings.rounds {
            let (first, second) = if round % 2 == 0 {
                (true, false)
            } else {
                (false, true)
            };
            for raw_now in [first, second] {
                if raw_now {
                    raw_rounds.push(
                        load(&raw_call, concurrency, settings.round, settings.max_calls).await?,
                    );
                } else {
                    routed_rounds.push(
                        load(
                            &routed_call,
                            concurrency,
                            settings.round,
                            settings.max_calls,
                        )
                        .await?,
                    );
                }
            }
        }
        let pairs = raw_rounds.iter().zip(&routed_rounds);
        let point = Point {
            concurrency,
            raw: summarize(&raw_rounds),
            routed: summarize(&routed_rounds),
            ratio: stats::median(pairs.clone().map(|(raw, routed)| routed.rps / raw.rps)),
            p50_diff_us: stats::median(
                pairs.map(|(raw, routed)| micros(routed.p50) - micros(raw.p50)),
            ),
        };
        println!(
            "  concurrency {concurrency:>3}: raw {:>7.0}/s p50 {:>7.1} µs p99 {:>7.1} µs \
             cpu {:>5.2} µs | routed {:>7.0}/s p50 {:>7.1} µs p99 {:>7.1} µs cpu {:>5.2} µs",
            point.raw.rps,
            point.raw.p50_us,
            point.raw.p99_us,
            point.raw.cpu_us,
            point.routed.rps,
            point.routed.p50_us,
            point.routed.p99_us,
            point.routed.cpu_us
        );
        points.push(point);
    }
    Ok(points)
}

/// `concurrency` tasks calling `call` in a loop until `duration` has passed or `max_calls` calls
/// were made in all; every answer is checked.
async fn load<F, Fut>(
    call: &Arc<F>,
    concurrency: usize,
    duration: Duration,
    max_calls: u64,
) -> anyhow::Result<Round>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<i64>> + Send + 'static,
{
    let per_task = (max_calls / concurrency as u64).max(1) as usize;
    let cpu_before = system::thread_cpu()?;
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task.min(1 << 16));
                while latencies.len() < per_task {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let value = call().await?;
                    latencies.push(sent.elapsed());
                    anyhow::ensure!(value == EXPECTED, "wrong sum: {value} != {EXPECTED}");
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = start.elapsed();
    let cpu = system::thread_cpu()?.saturating_sub(cpu_before);
    anyhow::ensure!(!all.is_empty(), "no call completed");
    all.sort_unstable();
    Ok(Round {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: stats::percentile(&all, 50.0).unwrap_or_default(),
        p99: stats::percentile(&all, 99.0).unwrap_or_default(),
        cpu_per_call: cpu / all.len() as u32,
        calls: all.len() as u64,
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Medians over rounds.
fn summarize(rounds: &[Round]) -> PathFigures {
    let us = micros;
    PathFigures {
        rps: stats::median(rounds.iter().map(|r| r.rps)),
        p50_us: stats::median(rounds.iter().map(|r| us(r.p50))),
        p99_us: stats::median(rounds.iter().map(|r| us(r.p99))),
        cpu_us: stats::median(rounds.iter().map(|r| us(r.cpu_per_call))),
        calls: rounds.iter().map(|r| r.calls).sum(),
    }
}
