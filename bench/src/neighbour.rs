//! Part `neighbour` (issue #26): the latency of cheap calls on a node while another call's
//! handler spins on the CPU without yielding (`Calc::spin`, the naive handler), against the same
//! calls on the same node idle; and, with `--baseline-demo`, the same against a node built from
//! an earlier commit, side by side in one run.
//!
//! Set-up: one in-process master; per binary, one node process (unpinned, default threads:
//! the spin takes one core of two) and one router following the master, so that the spin and
//! the cheap calls share the router's one connection to the node. The cheap calls
//! (`Calc::sum`) are sent on a fixed schedule, one every [`PERIOD`], each as its own task, and
//! each latency is measured from its **scheduled** time, so a stalled node shows its whole
//! stall in every call it holds up (no coordinated omission).

use std::path::Path;
use std::time::Duration;

use distribution_client::{CallRouter, RouterConfig};
use distribution_examples::service::CalcClient;
use distribution_master::{Master, MasterConfig};
use serde::Serialize;
use tokio::time::Instant;

use crate::args::Args;
use crate::procs;
use crate::report::Section;
use crate::rounds::{EXPECTED, VALUES};
use crate::stats;

/// One cheap call every this long.
const PERIOD: Duration = Duration::from_millis(20);

/// The latencies of one run of cheap calls, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
struct Latencies {
    calls: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// One binary's figures.
#[derive(Debug, Clone, Serialize)]
struct Figures {
    binary: String,
    idle: Latencies,
    beside_spin: Latencies,
}

/// Runs this part: the current demo, and the baseline when `--baseline-demo` names one.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    let (spin, window) = if args.quick {
        (Duration::from_millis(1_500), Duration::from_millis(1_000))
    } else {
        (Duration::from_secs(5), Duration::from_secs(4))
    };
    let mut binaries = vec![("this commit".to_owned(), args.demo_binary()?)];
    if let Some(baseline) = &args.baseline_demo {
        binaries.push(("baseline".to_owned(), baseline.clone()));
    }
    println!(
        "neighbour: Calc::sum every {PERIOD:?} for {window:?}, idle and beside a {spin:?} \
         Calc::spin on the same connection; latency from the scheduled time"
    );
    let mut section = Section::new(
        "neighbour",
        &["node binary", "node", "calls", "p50 ms", "p99 ms", "max ms"],
    );
    let mut all = Vec::new();
    for (name, demo) in &binaries {
        let figures = measure(args, name, demo, spin, window).await?;
        for (state, l) in [
            ("idle", figures.idle),
            ("beside a spin", figures.beside_spin),
        ] {
            println!(
                "  {name:>12} {state:>14}: {} calls, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                l.calls, l.p50_ms, l.p99_ms, l.max_ms
            );
            section.row(vec![
                name.clone(),
                state.to_owned(),
                l.calls.to_string(),
                format!("{:.2}", l.p50_ms),
                format!("{:.2}", l.p99_ms),
                format!("{:.2}", l.max_ms),
            ]);
        }
        all.push(figures);
    }
    let current = &all[0];
    section.target(
        "cheap calls beside a spinning handler: p99 under 100 ms",
        format!(
            "p99 {:.2} ms (idle {:.2} ms)",
            current.beside_spin.p99_ms, current.idle.p99_ms
        ),
        current.beside_spin.p99_ms < 100.0,
    );
    section.figures = serde_json::json!({
        "setup": "in-process master; one unpinned node process per binary; one router; \
                  Calc::sum on a fixed schedule, latency from the scheduled time; the spin \
                  sent through the same router (same connection)",
        "period_ms": PERIOD.as_millis() as u64,
        "spin_ms": spin.as_millis() as u64,
        "window_ms": window.as_millis() as u64,
        "binaries": all,
    });
    Ok(section)
}

/// One binary: a master, a node process, a router; cheap calls idle, then beside a spin.
async fn measure(
    args: &Args,
    name: &str,
    demo: &Path,
    spin: Duration,
    window: Duration,
) -> anyhow::Result<Figures> {
    let master = Master::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        MasterConfig::default(),
    )?;
    let log = procs::log_path(&args.out, &format!("neighbour-{}", name.replace(' ', "-")))?;
    let mut command = std::process::Command::new(demo);
    command.args([
        "node",
        "--master",
        &master.local_addr().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let mut node = procs::Proc::spawn(&format!("{name} node"), command, &log)?;
    let router: CallRouter<CalcClient> =
        CallRouter::new(master.registry().subscribe(), RouterConfig::default());
    anyhow::ensure!(
        router.wait_for_nodes(1, Duration::from_secs(15)).await,
        "the {name} node did not register within 15 s (see {})",
        log.display()
    );
    // Warm-up: the router's connection.
    schedule(&router, Duration::from_millis(200)).await?;
    let idle = schedule(&router, window).await?;

    let millis = spin.as_millis() as u64;
    let spinning = router.submit(move |client, mut ctx| async move {
        ctx.deadline = std::time::Instant::now() + Duration::from_secs(60);
        client.spin(ctx, millis).await
    });
    // The spin is on the node before the first cheap call.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let beside_spin = schedule(&router, window).await?;
    let spun = spinning.await?.value;
    anyhow::ensure!(spun >= millis, "the spin ran {spun} ms of {millis}");
    node.ensure_running()?;
    drop(node);
    master.shutdown().await;
    Ok(Figures {
        binary: name.to_owned(),
        idle,
        beside_spin,
    })
}

/// Cheap calls, one every [`PERIOD`] for `window`, each checked; their latencies from their
/// scheduled times.
async fn schedule(router: &CallRouter<CalcClient>, window: Duration) -> anyhow::Result<Latencies> {
    let start = Instant::now();
    let count = (window.as_millis() / PERIOD.as_millis()) as u32;
    let calls: Vec<_> = (0..count)
        .map(|i| {
            let router = router.clone();
            let scheduled = start + PERIOD * i;
            tokio::spawn(async move {
                tokio::time::sleep_until(scheduled).await;
                let reply = router
                    .call(|client, ctx| async move { client.sum(ctx, VALUES.to_vec()).await })
                    .await?;
                anyhow::ensure!(reply.value == Ok(EXPECTED), "wrong sum {:?}", reply.value);
                Ok::<_, anyhow::Error>(scheduled.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(calls.len());
    for call in calls {
        latencies.push(call.await??);
    }
    latencies.sort();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    Ok(Latencies {
        calls: latencies.len(),
        p50_ms: ms(stats::percentile(&latencies, 50.0)),
        p99_ms: ms(stats::percentile(&latencies, 99.0)),
        max_ms: ms(latencies.last().copied()),
    })
}
