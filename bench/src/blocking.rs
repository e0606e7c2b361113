//! Part 5, blocking calls: the same small call (`Calc::sum` of three values, no delay) from
//! synchronous threads through a [`BlockingRouter`] and from tokio tasks through the async
//! [`CallRouter`], at 1 and 16 callers, side by side in one run. It shows what a program that is not
//! async pays for blocking calls: a thread wake-up per reply instead of a task wake-up.
//!
//! Set-up:
//! - a `distribution-demo master` process and one `distribution-demo node` process **pinned to
//!   CPU 1**; both routers follow the master as remote callers (`connect_with`);
//! - the blocking router owns its runtime (2 threads) and its callers are plain threads; the
//!   async router runs on a multi-threaded runtime of 2 workers, its callers are tasks: the two
//!   sides have the same threads to move bytes with, and neither is pinned;
//! - **closed loop**: each caller makes its next call when the previous one answers, for a fixed
//!   time (bounded in count too), so the latency is each call's own, from its start to its reply;
//! - the four ways alternate within each round (the first one rotating), and each figure is the
//!   median over the rounds, so drifts of the machine hit every way alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distribution_client::blocking::BlockingRouter;
use distribution_client::remote::{self, RemoteConfig};
use distribution_client::{CallRouter, RouterConfig};
use distribution_examples::service::CalcClient;
use serde::Serialize;

use crate::args::Args;
use crate::procs::{self, MasterProc};
use crate::report::Section;
use crate::rounds::{EXPECTED, VALUES};
use crate::stats;

/// The callers (threads or tasks) measured.
const CALLERS: [usize; 2] = [1, 16];

/// How long and how often each way is measured.
#[derive(Debug, Clone, Copy, Serialize)]
struct Settings {
    /// How long one way runs in one round.
    round: Duration,
    /// Rounds (the median is reported).
    rounds: usize,
    /// The most calls one way makes in one round, whatever its duration.
    max_calls: u64,
    /// Calls per router before measuring (dialling, caches).
    warmup: u64,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                round: Duration::from_millis(500),
                rounds: 3,
                max_calls: 200_000,
                warmup: 500,
            }
        } else {
            Self {
                round: Duration::from_secs(2),
                rounds: 7,
                max_calls: 2_000_000,
                warmup: 10_000,
            }
        }
    }
}

/// Blocking threads or async tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Kind {
    Blocking,
    Async,
}

/// One way's figures (medians over the rounds).
#[derive(Debug, Clone, Copy, Serialize)]
struct Figures {
    kind: Kind,
    callers: usize,
    /// Completed calls per second.
    rps: f64,
    /// Median latency of a call, microseconds.
    p50_us: f64,
    /// 99th percentile latency, microseconds.
    p99_us: f64,
    /// Calls measured, over all rounds.
    calls: u64,
}

/// One round of one way.
#[derive(Debug, Clone, Copy)]
struct Round {
    rps: f64,
    p50: Duration,
    p99: Duration,
    calls: u64,
}

/// Runs this part.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    procs::require_pinning(2)?;
    let settings = Settings::new(args.quick);
    let demo = args.demo_binary()?;
    let mut master =
        MasterProc::start(&demo, &procs::log_path(&args.out, "blocking-master")?).await?;
    let node_log = procs::log_path(&args.out, "blocking-node")?;
    let mut node = procs::node(&demo, master.registry, 1, &node_log)?;
    master.wait_for_nodes(1, Duration::from_secs(15)).await?;
    let registry = master.registry.to_string();

    println!(
        "blocking: Calc::sum from threads through BlockingRouter vs tasks through the async \
         CallRouter, closed loop; node pinned to CPU 1; {} rounds of {:?} per way",
        settings.rounds, settings.round
    );
    // Blocking calls are refused inside a runtime: measure from a thread of our own.
    let callers = std::thread::Builder::new()
        .name("bench-blocking".into())
        .spawn(move || measure(&registry, settings))?;
    let figures = tokio::task::spawn_blocking(move || callers.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the callers' thread panicked"))??;
    node.ensure_running()?;
    drop(node);
    drop(master);

    let mut section = Section::new(
        "blocking",
        &["callers", "calls/s", "p50 µs", "p99 µs", "calls"],
    );
    for f in &figures {
        let label = match f.kind {
            Kind::Blocking => format!("BlockingRouter, {} thread(s)", f.callers),
            Kind::Async => format!("async CallRouter, {} task(s)", f.callers),
        };
        section.row(vec![
            label,
            format!("{:.0}", f.rps),
            format!("{:.1}", f.p50_us),
            format!("{:.1}", f.p99_us),
            f.calls.to_string(),
        ]);
    }
    section.figures = serde_json::json!({
        "setup": "master and node processes (node pinned to CPU 1); both routers are remote \
                  callers with 2 runtime threads, callers unpinned; closed loop; the four ways \
                  alternate in each round; medians over rounds",
        "settings": settings,
        "ways": figures,
    });
    Ok(section)
}

/// Measures every way, rounds alternating; runs on a plain thread (no runtime).
fn measure(master: &str, settings: Settings) -> anyhow::Result<Vec<Figures>> {
    let config = RemoteConfig::default().with_router(RouterConfig::default());
    let blocking = BlockingRouter::<CalcClient>::connect_with(master, config.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-async")
        .enable_all()
        .build()?;
    let router: CallRouter<CalcClient> = runtime.block_on(remote::connect_with(master, config))?;
    anyhow::ensure!(blocking.wait_for_nodes(1, Duration::from_secs(15))?);
    anyhow::ensure!(runtime.block_on(router.wait_for_nodes(1, Duration::from_secs(15))));

    let warm = Duration::from_secs(10);
    blocking_round(&blocking, 4, warm, settings.warmup)?;
    runtime.block_on(async_round(&router, 4, warm, settings.warmup))?;

    let ways: Vec<(Kind, usize)> = CALLERS
        .iter()
        .flat_map(|&n| [(Kind::Blocking, n), (Kind::Async, n)])
        .collect();
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); ways.len()];
    for r in 0..settings.rounds {
        for i in 0..ways.len() {
            let w = (i + r) % ways.len();
            let (kind, callers) = ways[w];
            let round = match kind {
                Kind::Blocking => {
                    blocking_round(&blocking, callers, settings.round, settings.max_calls)?
                }
                Kind::Async => runtime.block_on(async_round(
                    &router,
                    callers,
                    settings.round,
                    settings.max_calls,
                ))?,
            };
            rounds[w].push(round);
        }
    }
    Ok(ways
        .iter()
        .zip(rounds)
        .map(|(&(kind, callers), rounds)| Figures {
            kind,
            callers,
            rps: stats::median(rounds.iter().map(|r| r.rps)),
            p50_us: stats::median(rounds.iter().map(|r| micros(r.p50))),
            p99_us: stats::median(rounds.iter().map(|r| micros(r.p99))),
            calls: rounds.iter().map(|r| r.calls).sum(),
        })
        .collect())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The figures of one round from every caller's latencies.
fn summarize(mut latencies: Vec<Duration>, elapsed: Duration) -> anyhow::Result<Round> {
    anyhow::ensure!(!latencies.is_empty(), "no call completed");
    latencies.sort_unstable();
    let calls = latencies.len() as u64;
    Ok(Round {
        rps: calls as f64 / elapsed.as_secs_f64(),
        p50: stats::percentile(&latencies, 50.0).unwrap_or_default(),
        p99: stats::percentile(&latencies, 99.0).unwrap_or_default(),
        calls,
    })
}

/// `callers` threads calling through the blocking router for `duration` or `max_calls` calls.
fn blocking_round(
    router: &BlockingRouter<CalcClient>,
    callers: usize,
    duration: Duration,
    max_calls: u64,
) -> anyhow::Result<Round> {
    let budget = AtomicU64::new(max_calls);
    let start = Instant::now();
    let per_thread = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..callers)
            .map(|_| {
                let budget = &budget;
                scope.spawn(move || -> anyhow::Result<Vec<Duration>> {
                    let mut latencies = Vec::new();
                    while start.elapsed() < duration && take(budget) {
                        let began = Instant::now();
                        let reply = router
                            .call(|c, ctx| async move { c.sum(ctx, VALUES.to_vec()).await })?;
                        latencies.push(began.elapsed());
                        anyhow::ensure!(reply.value == Ok(EXPECTED), "wrong sum");
                    }
                    Ok(latencies)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().map_err(|_| anyhow::anyhow!("a caller panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    summarize(per_thread.concat(), start.elapsed())
}

/// `callers` tasks calling through the async router for `duration` or `max_calls` calls.
async fn async_round(
    router: &CallRouter<CalcClient>,
    callers: usize,
    duration: Duration,
    max_calls: u64,
) -> anyhow::Result<Round> {
    let budget = Arc::new(AtomicU64::new(max_calls));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let router = router.clone();
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while start.elapsed() < duration && take(&budget) {
                    let began = Instant::now();
                    let reply = router
                        .call(|c, ctx| async move { c.sum(ctx, VALUES.to_vec()).await })
                        .await?;
                    latencies.push(began.elapsed());
                    anyhow::ensure!(reply.value == Ok(EXPECTED), "wrong sum");
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    summarize(latencies, start.elapsed())
}

/// Takes one call from the round's budget; false once it is spent.
fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}
