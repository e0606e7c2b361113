//! Failure detection with the default settings (heartbeat every 1 s, lease TTL 3 s).
//!
//! **A node dies.** An in-process master and router, three `distribution-demo node` processes
//! (`sum` takes 5 ms), and 32 callers making idempotent routed `sum` calls in a loop. After a
//! warm-up second one node is SIGKILLed, and the run measures:
//!
//! - how long until the router sends the dead node nothing more. Every call that reaches the dead
//!   node fails there (reset, or connection refused) and is retried on a live node, so the calls
//!   that needed more than one attempt are exactly the calls that were sent to it. Those that
//!   started before the kill were in flight on it; those that started after are the router's
//!   probes: the first failure ejects the node for 1 s, and a failure after each pause doubles
//!   it (1 s, 2 s, ...), so until the master evicts it the dead node gets a probe call after 1 s
//!   and after 3 s, each refused at once and answered elsewhere. The last one to start marks the
//!   end, the last one to be answered tells when the router was done with it;
//! - how long until the master evicts it (its membership stops listing it);
//! - how many calls failed on the callers' side (the target is none).
//!
//! **The master dies.** A master process on a fixed port with three node processes is SIGKILLed
//! and started again on the same port, and the run times how long until it lists the three
//! nodes again (they register again at their next heartbeat).
//!
//! Every child process is SIGKILLed when its guard drops, on success and on error alike.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use distribution_client::{CallOptions, CallRouter, RouterConfig};
use distribution_examples::service::CalcClient;
use distribution_master::{Master, MasterConfig};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::args::Args;
use crate::procs::{self, MasterProc, Proc};
use crate::report::Section;
use crate::stats;

/// Concurrent callers during a node kill.
const CALLERS: usize = 32;

/// The most calls one caller makes in a run (the run normally ends long before).
const MAX_CALLS_PER_CALLER: u64 = 50_000;

/// The deadline of each routed call (every attempt included).
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// The simulated work of each `sum` on the nodes.
const SUM_DELAY_MS: u64 = 5;

/// How long the killed node may stay registered before the run gives up.
const EVICTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The nodes of each cluster.
const NODES: usize = 3;

/// The time a restarted master may take to list every node again: one heartbeat interval + 1 s.
const RESTART_TARGET: Duration = Duration::from_secs(2);

/// One node-kill run.
#[derive(Debug, Clone, Serialize)]
struct KillRun {
    /// From the SIGKILL to the start of the last call sent to the dead node, in seconds.
    router_stopped_s: f64,
    /// From the SIGKILL to the end of the last call that reached the dead node (retried and
    /// answered elsewhere), in seconds.
    rerouted_s: f64,
    /// From the SIGKILL to the master's eviction of the node, in seconds.
    evicted_s: f64,
    /// Calls completed over the whole run.
    calls: u64,
    /// Calls that failed on the caller's side.
    failed: u64,
    /// Calls that reached the dead node and were retried on another one.
    retried: u64,
    /// From the SIGKILL to the first failed call there (which ejects the node), in seconds.
    ejected_s: f64,
    /// Calls sent to it after that first failure (the router's probes after each pause).
    probes: u64,
    /// The first few errors, for the record.
    errors: Vec<String>,
}

/// One master restart.
#[derive(Debug, Clone, Serialize)]
struct RestartRun {
    /// From starting the new master process to its listing every node, in seconds.
    from_start_s: f64,
    /// From the SIGKILL of the old one, in seconds.
    from_kill_s: f64,
}

/// Everything measured.
#[derive(Debug, Serialize)]
struct Figures {
    callers: usize,
    sum_delay_ms: u64,
    kills: Vec<KillRun>,
    restarts: Vec<RestartRun>,
}

/// Runs this part: node kills, then master restarts.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    let demo = args.demo_binary()?;
    let repeats = if args.quick { 1 } else { 5 };
    let mut kills = Vec::new();
    for trial in 0..repeats {
        let run = node_kill(&demo, &args.out, trial)
            .await
            .with_context(|| format!("node kill, run {}", trial + 1))?;
        eprintln!(
            "detection: node kill {}: router stopped after {:.3} s, evicted after {:.3} s, {} failed",
            trial + 1,
            run.router_stopped_s,
            run.evicted_s,
            run.failed
        );
        kills.push(run);
    }
    let restarts = master_restarts(&demo, &args.out, repeats)
        .await
        .context("master restart")?;
    Ok(section(Figures {
        callers: CALLERS,
        sum_delay_ms: SUM_DELAY_MS,
        kills,
        restarts,
    }))
}

/// A `distribution-demo node` with id `id` registering with `master`, unpinned.
fn start_node(demo: &Path, out: &Path, master: SocketAddr, id: &str) -> anyhow::Result<Proc> {
    let mut command = Command::new(demo);
    command
        .args(["node", "--master", &master.to_string()])
        .args(["--listen", "127.0.0.1:0", "--id", id])
        .args(["--sum-delay-ms", &SUM_DELAY_MS.to_string()])
        .env("RUST_LOG", "warn");
    Proc::spawn(id, command, &procs::log_path(out, id)?)
}

/// One node kill under load (see the module's documentation).
async fn node_kill(demo: &Path, out: &Path, trial: usize) -> anyhow::Result<KillRun> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let master = Master::start(listener, MasterConfig::default())?;
    let result = node_kill_on(demo, out, trial, &master).await;
    master.shutdown().await;
    result
}

async fn node_kill_on(
    demo: &Path,
    out: &Path,
    trial: usize,
    master: &Master,
) -> anyhow::Result<KillRun> {
    let ids: Vec<String> = (0..NODES)
        .map(|k| format!("detection-{trial}-node-{k}"))
        .collect();
    let mut nodes = Vec::new();
    for id in &ids {
        nodes.push(start_node(demo, out, master.local_addr(), id)?);
    }
    let router: CallRouter<CalcClient> = master.router_with(RouterConfig::default());
    anyhow::ensure!(
        router.wait_for_nodes(NODES, Duration::from_secs(10)).await,
        "the {NODES} nodes did not register within 10 s"
    );

    let load = Load::start(&router);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = ids[0].clone();
    let served_before = router
        .stats()
        .iter()
        .find(|s| *s.node.id == *victim)
        .map_or(0, |s| s.served);
    let mut membership = master.registry().subscribe();

    let killed_at = Instant::now();
    drop(nodes.remove(0)); // SIGKILL, then reaped
    let evicted = tokio::time::timeout(
        EVICTION_TIMEOUT,
        membership.wait_for(|m| !m.members.iter().any(|member| *member.id == *victim)),
    )
    .await;
    let evicted_at = Instant::now();
    // A little more load with the node gone, then stop every caller.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let totals = load.stop().await?;
    anyhow::ensure!(
        matches!(evicted, Ok(Ok(_))),
        "the killed node was not evicted within {EVICTION_TIMEOUT:?}"
    );
    anyhow::ensure!(
        served_before > 0,
        "the victim served no call during the warm-up"
    );
    let last_sent = totals
        .retried
        .iter()
        .map(|r| r.0)
        .max()
        .unwrap_or(killed_at);
    // The first call that failed there ejected the node: the end of the first retried call.
    let ejected_at = totals
        .retried
        .iter()
        .map(|r| r.1)
        .min()
        .unwrap_or(killed_at);
    let last_rerouted = totals
        .retried
        .iter()
        .map(|r| r.1)
        .max()
        .unwrap_or(killed_at);
    Ok(KillRun {
        router_stopped_s: last_sent.saturating_duration_since(killed_at).as_secs_f64(),
        rerouted_s: last_rerouted
            .saturating_duration_since(killed_at)
            .as_secs_f64(),
        evicted_s: (evicted_at - killed_at).as_secs_f64(),
        calls: totals.calls,
        failed: totals.failed,
        retried: totals.retried.len() as u64,
        ejected_s: ejected_at
            .saturating_duration_since(killed_at)
            .as_secs_f64(),
        probes: totals
            .retried
            .iter()
            .filter(|(started, _)| *started > ejected_at)
            .count() as u64,
        errors: totals.errors,
    })
}

/// The callers: [`CALLERS`] tasks making routed `sum` calls until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    callers: Vec<tokio::task::JoinHandle<Caller>>,
}

/// What one caller saw.
#[derive(Default)]
struct Caller {
    calls: u64,
    failed: u64,
    /// When each call that needed more than one attempt started and ended.
    retried: Vec<(Instant, Instant)>,
    errors: Vec<String>,
}

impl Load {
    fn start(router: &CallRouter<CalcClient>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let options = CallOptions::deadline(CALL_DEADLINE).idempotent();
        let callers = (0..CALLERS)
            .map(|_| {
                let (router, stop) = (router.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut seen = Caller::default();
                    while !stop.load(Ordering::Relaxed) && seen.calls < MAX_CALLS_PER_CALLER {
                        let started = Instant::now();
                        let result = router
                            .call_with(options, |client, ctx| async move {
                                client.sum(ctx, vec![1, 2, 3]).await
                            })
                            .await;
                        seen.calls += 1;
                        match result {
                            Ok(reply) if reply.value == Ok(6) => {
                                if reply.attempts > 1 {
                                    seen.retried.push((started, Instant::now()));
                                }
                            }
                            Ok(reply) => {
                                seen.failed += 1;
                                note(&mut seen.errors, format!("wrong sum: {:?}", reply.value));
                            }
                            Err(err) => {
                                seen.failed += 1;
                                note(&mut seen.errors, err.to_string());
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        Self { stop, callers }
    }

    /// Stops the callers and adds up what they saw (each ends within one call's deadline).
    async fn stop(self) -> anyhow::Result<Caller> {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Caller::default();
        for caller in self.callers {
            let seen = caller.await.context("a caller panicked")?;
            total.calls += seen.calls;
            total.failed += seen.failed;
            total.retried.extend(seen.retried);
            for error in seen.errors {
                note(&mut total.errors, error);
            }
        }
        Ok(total)
    }
}

/// Keeps the first five error messages.
fn note(errors: &mut Vec<String>, error: String) {
    if errors.len() < 5 {
        errors.push(error);
    }
}

/// A master process on fixed ports, killed and restarted `repeats` times with three nodes.
async fn master_restarts(
    demo: &Path,
    out: &Path,
    repeats: usize,
) -> anyhow::Result<Vec<RestartRun>> {
    let registry: SocketAddr = format!("127.0.0.1:{}", procs::free_port()?).parse()?;
    let gateway: SocketAddr = format!("127.0.0.1:{}", procs::free_port()?).parse()?;
    let start_master = |run: usize| {
        let mut command = Command::new(demo);
        command.env("RUST_LOG", "warn");
        let name = format!("detection-master-{run}");
        let log = procs::log_path(out, &name);
        async move { MasterProc::spawn(command, &name, registry, gateway, &[], &log?).await }
    };
    let mut master = start_master(0).await?;
    let mut nodes = Vec::new();
    for k in 0..NODES {
        nodes.push(start_node(
            demo,
            out,
            registry,
            &format!("detection-restart-node-{k}"),
        )?);
    }
    master
        .wait_for_nodes(NODES as u64, Duration::from_secs(10))
        .await?;
    let mut runs = Vec::new();
    for run in 1..=repeats {
        // Kill at a different point of the nodes' heartbeat cycle each time.
        tokio::time::sleep(Duration::from_millis(1_000 + 170 * run as u64)).await;
        for node in &mut nodes {
            node.ensure_running()?;
        }
        let killed_at = Instant::now();
        drop(master); // SIGKILL, then reaped
        let started_at = Instant::now();
        master = start_master(run).await?;
        master
            .wait_for_nodes(NODES as u64, Duration::from_secs(10))
            .await?;
        let listed_at = Instant::now();
        let restart = RestartRun {
            from_start_s: (listed_at - started_at).as_secs_f64(),
            from_kill_s: (listed_at - killed_at).as_secs_f64(),
        };
        eprintln!(
            "detection: master restart {run}: all {NODES} nodes listed {:.3} s after the new start",
            restart.from_start_s
        );
        runs.push(restart);
    }
    Ok(runs)
}

/// The table and targets of the run.
fn section(figures: Figures) -> Section {
    let mut section = Section::new("detection", &["measure", "runs", "median", "max"]);
    let kills = &figures.kills;
    let seconds = |(median, max): (f64, f64)| (format!("{median:.3} s"), format!("{max:.3} s"));
    let mut row = |measure: &str, runs: usize, (median, max): (String, String)| {
        section.row(vec![measure.to_string(), runs.to_string(), median, max]);
    };
    row(
        "node SIGKILLed: out of routing (first failed call) after",
        kills.len(),
        seconds(stats::median_max(kills.iter().map(|k| k.ejected_s))),
    );
    row(
        "node SIGKILLed: router sends it nothing more (last probe) after",
        kills.len(),
        seconds(stats::median_max(kills.iter().map(|k| k.router_stopped_s))),
    );
    row(
        "node SIGKILLed: its last call answered elsewhere after",
        kills.len(),
        seconds(stats::median_max(kills.iter().map(|k| k.rerouted_s))),
    );
    row(
        "node SIGKILLed: master evicts it after",
        kills.len(),
        seconds(stats::median_max(kills.iter().map(|k| k.evicted_s))),
    );
    let count = |(median, max): (f64, f64)| (format!("{median:.0}"), format!("{max:.0}"));
    row(
        &format!("node SIGKILLed: calls sent to it and retried elsewhere ({CALLERS} callers)"),
        kills.len(),
        count(stats::median_max(kills.iter().map(|k| k.retried as f64))),
    );
    row(
        "node SIGKILLed: of those, sent after its ejection (probes)",
        kills.len(),
        count(stats::median_max(kills.iter().map(|k| k.probes as f64))),
    );
    row(
        "node SIGKILLed: calls failed on the caller's side",
        kills.len(),
        count(stats::median_max(kills.iter().map(|k| k.failed as f64))),
    );
    let restarts = &figures.restarts;
    row(
        "master SIGKILLed and restarted: all 3 nodes listed, from its start",
        restarts.len(),
        seconds(stats::median_max(restarts.iter().map(|r| r.from_start_s))),
    );
    row(
        "master SIGKILLed and restarted: all 3 nodes listed, from the SIGKILL",
        restarts.len(),
        seconds(stats::median_max(restarts.iter().map(|r| r.from_kill_s))),
    );

    let failed: u64 = kills.iter().map(|k| k.failed).sum();
    let calls: u64 = kills.iter().map(|k| k.calls).sum();
    section.target(
        "no call fails on the caller's side when a node is SIGKILLed",
        format!("{failed} failed of {calls} calls over {} runs", kills.len()),
        failed == 0 && !kills.is_empty(),
    );
    let (_, slowest) = stats::median_max(restarts.iter().map(|r| r.from_start_s));
    section.target(
        format!(
            "a restarted master lists every node within one heartbeat interval + 1 s ({} s)",
            RESTART_TARGET.as_secs()
        ),
        format!("slowest {slowest:.3} s over {} restarts", restarts.len()),
        !restarts.is_empty() && slowest < RESTART_TARGET.as_secs_f64(),
    );
    section.figures = serde_json::to_value(&figures).unwrap_or(serde_json::Value::Null);
    section
}
