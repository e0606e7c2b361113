//! Part 6, gray failures: a node paused with SIGSTOP under steady load, backup requests off
//! against on, side by side in one run.
//!
//! Set-up: an in-process master (heartbeat 1 s, TTL 3 s) and three `distribution-demo node`
//! processes whose `sum` takes [`SUM_DELAY_MS`]; the router's calls are idempotent with the
//! gateway's 3 s attempt timeout. "Off" is `RouterConfig::hedge = None`, "on" is
//! `Some(HedgePolicy::default())` (backup after the recent p99, at least 10 ms; budget 5 % + 10
//! per 10 s; ejection after 3 lost races).
//!
//! - **Pause**: [`CALLERS`] callers, each on a fixed schedule of one call every
//!   [`CALL_EVERY`] (open loop); each call's latency is counted **from its scheduled time**, so
//!   a caller stuck behind a stalled call is charged for the calls it could not start on time.
//!   After [`WARMUP`] one node is SIGSTOPped for [`PAUSE`] then SIGCONTed, and the load goes on
//!   for [`AFTER`]. A fresh cluster for each side (the paused node is evicted by the master
//!   during the pause and registers again after it).
//! - **Steady**: no pause, the callers in a closed loop (each makes its next call when the
//!   previous one answers); the two routers alternate over a few rounds on one cluster and the
//!   throughput is the sum over the rounds, so that drifts of the machine hit both alike.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use distribution_client::{CallOptions, CallRouter, HedgePolicy, HedgeStats, RouterConfig};
use distribution_examples::service::CalcClient;
use distribution_master::{Master, MasterConfig};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::args::Args;
use crate::procs::{self, Proc};
use crate::report::Section;
use crate::stats;

/// Concurrent callers.
const CALLERS: usize = 32;

/// The simulated work of each `sum` on the nodes.
const SUM_DELAY_MS: u64 = 2;

/// Each caller's schedule in the pause run: 32 callers x 100 calls/s = 3,200 calls/s.
const CALL_EVERY: Duration = Duration::from_millis(10);

/// Load before the pause (fills the latency window).
const WARMUP: Duration = Duration::from_secs(2);

/// How long the node stays paused.
const PAUSE: Duration = Duration::from_secs(5);

/// Load after SIGCONT.
const AFTER: Duration = Duration::from_secs(2);

/// The attempt timeout of the calls (the gateway's `/sum`).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the target allows above the hedge delay.
const SLACK: Duration = Duration::from_millis(50);

/// One side of the pause run.
#[derive(Debug, Clone, Serialize)]
struct PauseRun {
    hedging: bool,
    calls: u64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    over_100ms: u64,
    /// The p99 of the calls before the pause, at least 10 ms: about the router's hedge delay.
    delay_ms: f64,
    /// Backup requests sent, and how many answered first.
    backups: u64,
    backups_won: u64,
    /// Attempts beyond the first that were failovers (not backups).
    failovers: u64,
    /// Calls on the paused node that a backup outran, and whether it was ejected, 1 s into
    /// the pause.
    outrun: u64,
    ejected: bool,
    /// Backups the budget refused.
    denied: u64,
    /// The five slowest calls: (scheduled time from the SIGSTOP in s, latency in ms).
    slowest: Vec<(f64, f64)>,
}

/// The steady run.
#[derive(Debug, Clone, Serialize)]
struct Steady {
    off_per_s: f64,
    on_per_s: f64,
    ratio: f64,
    on_backups: u64,
    on_calls: u64,
}

#[derive(Debug, Serialize)]
struct Figures {
    callers: usize,
    sum_delay_ms: u64,
    pause_s: f64,
    pauses: Vec<PauseRun>,
    steady: Steady,
}

/// Runs this part.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    let demo = args.demo_binary()?;
    let mut pauses = Vec::new();
    for hedging in [false, true] {
        let run = pause_run(&demo, &args.out, hedging)
            .await
            .with_context(|| format!("pause run, hedging {hedging}"))?;
        eprintln!(
            "hedging: pause with hedging {}: p99 {:.1} ms, max {:.1} ms, {} over 100 ms, {} failed",
            if hedging { "on" } else { "off" },
            run.p99_ms,
            run.max_ms,
            run.over_100ms,
            run.failed
        );
        pauses.push(run);
    }
    let rounds = if args.quick { 4 } else { 10 };
    let slice = if args.quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let steady = steady_run(&demo, &args.out, rounds, slice)
        .await
        .context("steady run")?;
    eprintln!("hedging: steady throughput on/off = {:.3}", steady.ratio);
    Ok(section(Figures {
        callers: CALLERS,
        sum_delay_ms: SUM_DELAY_MS,
        pause_s: PAUSE.as_secs_f64(),
        pauses,
        steady,
    }))
}

fn config(hedging: bool) -> RouterConfig {
    RouterConfig::default()
        .with_idempotent(true)
        .with_attempt_timeout(Some(ATTEMPT_TIMEOUT))
        .with_hedge(hedging.then(HedgePolicy::default))
}

/// A master in this process and three node processes registered with it.
async fn cluster(demo: &Path, out: &Path, name: &str) -> anyhow::Result<(Master, Vec<Proc>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let master = Master::start(listener, MasterConfig::default())?;
    let mut nodes = Vec::new();
    for k in 0..3 {
        let id = format!("{name}-node-{k}");
        let mut command = Command::new(demo);
        command
            .args(["node", "--master", &master.local_addr().to_string()])
            .args(["--listen", "127.0.0.1:0", "--id", &id])
            .args(["--sum-delay-ms", &SUM_DELAY_MS.to_string()])
            .env("RUST_LOG", "warn");
        nodes.push(Proc::spawn(&id, command, &procs::log_path(out, &id)?)?);
    }
    Ok((master, nodes))
}

/// Sends `signal` to process `pid`.
fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid}: {status}");
    Ok(())
}

async fn pause_run(demo: &Path, out: &Path, hedging: bool) -> anyhow::Result<PauseRun> {
    let name = if hedging { "hedging-on" } else { "hedging-off" };
    let (master, nodes) = cluster(demo, out, name).await?;
    let router: CallRouter<CalcClient> = master.router_with(config(hedging));
    anyhow::ensure!(
        router.wait_for_nodes(3, Duration::from_secs(10)).await,
        "3 nodes did not register within 10 s"
    );
    let victim = nodes[0].id();
    let total = WARMUP + PAUSE + AFTER;
    let start = Instant::now() + Duration::from_millis(50);
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let router = router.clone();
            tokio::spawn(async move {
                let offset = CALL_EVERY.mul_f64(c as f64 / CALLERS as f64);
                let calls = (total.as_nanos() / CALL_EVERY.as_nanos()) as u32;
                let mut seen = Vec::with_capacity(calls as usize);
                for k in 0..calls {
                    let scheduled = start + offset + CALL_EVERY * k;
                    tokio::time::sleep_until(scheduled.into()).await;
                    let reply = router
                        .call_with(CallOptions::default().idempotent(), |c, ctx| async move {
                            c.sum(ctx, vec![1, 2, 3]).await
                        })
                        .await;
                    let (ok, extra) = match &reply {
                        Ok(r) => (r.value == Ok(6), r.attempts - 1 - u32::from(r.hedged)),
                        Err(_) => (false, 0),
                    };
                    seen.push((scheduled, scheduled.elapsed(), ok, extra));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep_until((start + WARMUP).into()).await;
    signal(victim, "STOP")?;
    let victim_id = format!("{name}-node-0");
    // One second in (before the master evicts it at the TTL): what the router did with it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (outrun, ejected) = router
        .stats()
        .iter()
        .find(|s| *s.node.id == *victim_id)
        .map_or((0, false), |s| (s.outrun, s.ejected));
    tokio::time::sleep(PAUSE - Duration::from_secs(1)).await;
    signal(victim, "CONT")?;
    let mut all = Vec::new();
    for caller in callers {
        all.extend(caller.await.context("a caller panicked")?);
    }
    let hedges: HedgeStats = router.hedge_stats();
    drop(router);
    master.shutdown().await;
    drop(nodes);

    let pause_at = start + WARMUP;
    let mut before: Vec<Duration> = all
        .iter()
        .filter(|(s, ..)| *s < pause_at)
        .map(|(_, l, ..)| *l)
        .collect();
    before.sort();
    let mut by_latency: Vec<(f64, f64)> = all
        .iter()
        .map(|(s, l, ..)| {
            let from_pause = if *s >= pause_at {
                (*s - pause_at).as_secs_f64()
            } else {
                -(pause_at - *s).as_secs_f64()
            };
            (from_pause, l.as_secs_f64() * 1e3)
        })
        .collect();
    by_latency.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_latency.truncate(5);
    let mut latencies: Vec<Duration> = all.iter().map(|(_, l, ..)| *l).collect();
    latencies.sort();
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Ok(PauseRun {
        hedging,
        calls: all.len() as u64,
        failed: all.iter().filter(|(_, _, ok, _)| !ok).count() as u64,
        p50_ms: ms(stats::percentile(&latencies, 50.0)),
        p99_ms: ms(stats::percentile(&latencies, 99.0)),
        p999_ms: ms(stats::percentile(&latencies, 99.9)),
        max_ms: ms(latencies.last().copied()),
        over_100ms: latencies
            .iter()
            .filter(|l| **l > Duration::from_millis(100))
            .count() as u64,
        delay_ms: ms(stats::percentile(&before, 99.0)).max(10.0),
        backups: hedges.sent,
        backups_won: hedges.won,
        failovers: all.iter().map(|(.., extra)| u64::from(*extra)).sum(),
        outrun,
        ejected,
        denied: hedges.denied,
        slowest: by_latency,
    })
}

/// Closed-loop throughput of `router` for `slice`: calls answered.
async fn closed_loop(router: &CallRouter<CalcClient>, slice: Duration) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (router, stop) = (router.clone(), stop.clone());
            tokio::spawn(async move {
                let mut ok = 0u64;
                for _ in 0..1_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let reply = router
                        .call_with(CallOptions::default().idempotent(), |c, ctx| async move {
                            c.sum(ctx, vec![1, 2, 3]).await
                        })
                        .await;
                    ok += u64::from(reply.is_ok_and(|r| r.value == Ok(6)));
                }
                ok
            })
        })
        .collect();
    tokio::time::sleep(slice).await;
    stop.store(true, Ordering::Relaxed);
    let mut ok = 0;
    for caller in callers {
        ok += caller.await.unwrap_or(0);
    }
    ok
}

async fn steady_run(
    demo: &Path,
    out: &Path,
    rounds: usize,
    slice: Duration,
) -> anyhow::Result<Steady> {
    let (master, nodes) = cluster(demo, out, "hedging-steady").await?;
    let off: CallRouter<CalcClient> = master.router_with(config(false));
    let on: CallRouter<CalcClient> = master.router_with(config(true));
    anyhow::ensure!(
        off.wait_for_nodes(3, Duration::from_secs(10)).await
            && on.wait_for_nodes(3, Duration::from_secs(10)).await,
        "3 nodes did not register within 10 s"
    );
    // Warm both (connections, and the hedging router's latency window).
    closed_loop(&off, Duration::from_millis(300)).await;
    closed_loop(&on, Duration::from_millis(300)).await;
    let before = on.hedge_stats();
    let (mut off_calls, mut on_calls) = (0u64, 0u64);
    for round in 0..rounds {
        let (first, second) = if round % 2 == 0 {
            (&off, &on)
        } else {
            (&on, &off)
        };
        let a = closed_loop(first, slice).await;
        let b = closed_loop(second, slice).await;
        if round % 2 == 0 {
            (off_calls, on_calls) = (off_calls + a, on_calls + b);
        } else {
            (off_calls, on_calls) = (off_calls + b, on_calls + a);
        }
    }
    let after = on.hedge_stats();
    drop((off, on));
    master.shutdown().await;
    drop(nodes);
    let seconds = slice.as_secs_f64() * rounds as f64;
    Ok(Steady {
        off_per_s: off_calls as f64 / seconds,
        on_per_s: on_calls as f64 / seconds,
        ratio: on_calls as f64 / (off_calls.max(1) as f64),
        on_backups: after.sent - before.sent,
        on_calls: after.eligible - before.eligible,
    })
}

fn section(figures: Figures) -> Section {
    let mut section = Section::new(
        "hedging",
        &[
            "backup requests",
            "calls",
            "failed",
            "p50",
            "p99",
            "p99.9",
            "max",
            "over 100 ms",
            "backups sent (won)",
            "failovers",
            "paused node 1 s in",
        ],
    );
    for r in &figures.pauses {
        section.row(vec![
            if r.hedging { "on" } else { "off" }.to_string(),
            r.calls.to_string(),
            r.failed.to_string(),
            format!("{:.1} ms", r.p50_ms),
            format!("{:.1} ms", r.p99_ms),
            format!("{:.1} ms", r.p999_ms),
            format!("{:.1} ms", r.max_ms),
            r.over_100ms.to_string(),
            format!("{} ({})", r.backups, r.backups_won),
            r.failovers.to_string(),
            format!(
                "{}, {} calls outrun",
                if r.ejected { "ejected" } else { "in routing" },
                r.outrun
            ),
        ]);
    }
    let s = &figures.steady;
    section.row(vec![
        format!(
            "no pause, closed loop: off {:.0} calls/s, on {:.0} calls/s ({:.3} x), {} backups in {} calls",
            s.off_per_s, s.on_per_s, s.ratio, s.on_backups, s.on_calls
        ),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    if let Some(on) = figures.pauses.iter().find(|r| r.hedging) {
        let bound = on.delay_ms + SLACK.as_secs_f64() * 1e3;
        section.target(
            "backups on, one of 3 nodes paused 5 s: no call slower than the hedge delay + 50 ms",
            format!(
                "max {:.1} ms, delay about {:.1} ms, {} failed",
                on.max_ms, on.delay_ms, on.failed
            ),
            on.failed == 0 && on.max_ms <= bound,
        );
        let allowed = 0.05 * on.calls as f64 + 10.0;
        section.target(
            "backups on: extra calls within the budget (5 % of calls + 10)",
            format!(
                "{} backups for {} calls (allowed {allowed:.0})",
                on.backups, on.calls
            ),
            on.backups as f64 <= allowed,
        );
    }
    section.target(
        "no node paused: throughput with backups on within 5 % of off",
        format!("{:.3} x", s.ratio),
        s.ratio >= 0.95,
    );
    section.figures = serde_json::to_value(&figures).unwrap_or(serde_json::Value::Null);
    section
}
