//! Master capacity: how many heartbeats a second the master sustains, what they cost it in CPU,
//! and how much memory its registry takes.
//!
//! The master runs as a `distribution-demo master` process pinned to CPU 0. The load generator
//! runs in this process, on one thread pinned to CPU 1 (a single-threaded tokio runtime), so the
//! two do not compete for a core. Its simulated nodes are not nodes, only heartbeat senders: each
//! registers once (`POST /v1/nodes` with a distinct `10.x.y.z:7000` address, a string that
//! nobody dials: the master's gateway router dials a node only to call it, and nothing calls the
//! gateway here) and then renews its lease (`PUT /v1/nodes/{id}/heartbeat`) once a second, the
//! nodes spread evenly over the second, over a small pool of keep-alive HTTP/1.1 connections.
//!
//! - **rate**: steps of 1k, 5k, 10k, 20k, 30k and 40k nodes at 1 Hz, each a warm-up second and
//!   then a measured window; the sweep stops at the first step whose p99 latency reaches 50 ms
//!   or whose achieved rate falls below 95 % of the offered rate;
//! - **CPU**: the master's utime + stime over the measured window (`/proc/<pid>/stat`), as a
//!   share of one core, and the generator thread's (`/proc/thread-self/stat`);
//! - **memory**: the master's `VmRSS` (`/proc/<pid>/status`) with 10,000 and 100,000 registered
//!   nodes.
//!
//! Latency is measured twice: from when the request was sent (the master's service time plus
//! the network stack), and from when it was due by the schedule (which also counts any lag of the
//! generator: no coordinated omission). The master runs with a 10-minute lease TTL so that
//! simulated nodes idle between steps are not evicted, and logs warnings only.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::time::Instant;

use crate::args::Args;
use crate::procs::{self, MasterProc};
use crate::report::Section;
use crate::system;

mod pool;

use pool::Pool;

/// The lease TTL the master runs with: long enough that idle simulated nodes stay registered.
const TTL_MS: u64 = 600_000;

/// The p99 heartbeat latency a step must stay under.
const P99_LIMIT: Duration = Duration::from_millis(50);

/// The share of the offered rate a step must achieve.
const MIN_ACHIEVED: f64 = 0.95;

/// The CPU share of one core the master may use for 10,000 nodes at 1 Hz.
const CPU_TARGET_PCT: f64 = 30.0;

/// How many times the step of the CPU target is measured (the median is kept).
const CPU_WINDOWS: usize = 3;

/// How long the largest registry may take to register again after a master restart.
const RESTART_TARGET_S: f64 = 10.0;

/// The memory the master may use with 100,000 registered nodes.
const RSS_TARGET_MB: f64 = 200.0;

/// The sizes of a run.
#[derive(Debug, Clone)]
struct Plan {
    /// Node counts of the rate steps, increasing.
    steps: Vec<usize>,
    /// Unmeasured seconds at the start of each step.
    warmup_rounds: u32,
    /// Measured seconds of each step.
    rounds: u32,
    /// The step whose CPU is checked against the target.
    cpu_at: usize,
    /// Registered node counts at which the master's memory is read.
    rss_at: [usize; 2],
    /// Keep-alive connections of the generator.
    pool: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                steps: vec![500, 1_000],
                warmup_rounds: 1,
                rounds: 2,
                cpu_at: 1_000,
                rss_at: [1_000, 5_000],
                pool: 16,
            }
        } else {
            Self {
                steps: vec![1_000, 5_000, 10_000, 20_000, 30_000, 40_000],
                warmup_rounds: 1,
                rounds: 6,
                cpu_at: 10_000,
                rss_at: [10_000, 100_000],
                pool: 128,
            }
        }
    }
}

/// One rate step: `nodes` simulated nodes heartbeating at 1 Hz.
#[derive(Debug, Clone, Serialize)]
struct Step {
    nodes: usize,
    /// How often each node beats, in seconds.
    period_s: f64,
    offered_per_s: f64,
    achieved_per_s: f64,
    ok: u64,
    errors: u64,
    /// Latency from sending, in milliseconds.
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Latency from the time the heartbeat was due, in milliseconds.
    p99_from_schedule_ms: f64,
    master_cpu_pct: f64,
    /// At the CPU target's step: the master's CPU in each of the [`CPU_WINDOWS`] windows.
    cpu_samples_pct: Vec<f64>,
    generator_cpu_pct: f64,
    master_rss_mb: f64,
    /// How long registering this step's new nodes took, and how many they were.
    registered: usize,
    registration_s: f64,
    passed: bool,
}

/// Every node registering again with a restarted master.
#[derive(Debug, Clone, Serialize)]
struct Restart {
    nodes: usize,
    registration_s: f64,
    rss_mb: f64,
}

/// The master's memory with `nodes` registered.
#[derive(Debug, Clone, Serialize)]
struct Memory {
    nodes: usize,
    rss_mb: f64,
}

/// Everything measured.
#[derive(Debug, Serialize)]
struct Figures {
    quick: bool,
    pool_connections: usize,
    measured_seconds_per_step: u32,
    idle_rss_mb: f64,
    steps: Vec<Step>,
    /// The largest registry registering again with a restarted master.
    restart: Option<Restart>,
    /// The CPU target's size at the default settings: each node beating at the interval the
    /// master hands out at that size (the heartbeat budget), median of [`CPU_WINDOWS`] windows.
    default_settings: Option<Step>,
    memory: Vec<Memory>,
}

/// Runs this part: the master as a pinned process, the generator on a pinned thread.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    procs::require_pinning(2)?;
    let demo = args.demo_binary()?;
    let log = procs::log_path(&args.out, "capacity-master")?;
    let plan = Plan::new(args.quick);
    let quick = args.quick;
    let thread = std::thread::Builder::new()
        .name("capacity-load".into())
        .spawn(move || -> anyhow::Result<Figures> {
            procs::pin_this_thread(1)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(measure(&demo, &log, &plan, quick))
        })
        .context("starting the load thread")?;
    let figures = tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    Ok(section(figures))
}

/// Starts the master, runs the steps and reads its memory; the master is killed on return.
async fn measure(demo: &Path, log: &Path, plan: &Plan, quick: bool) -> anyhow::Result<Figures> {
    let registry: SocketAddr = format!("127.0.0.1:{}", procs::free_port()?).parse()?;
    let gateway: SocketAddr = format!("127.0.0.1:{}", procs::free_port()?).parse()?;
    let max_nodes = plan.rss_at[1].max(*plan.steps.last().unwrap_or(&0)) + 1_000;
    let mut command = procs::pinned(0, demo);
    command.env("RUST_LOG", "warn");
    let extra = [
        "--ttl-ms".to_string(),
        TTL_MS.to_string(),
        "--max-nodes".to_string(),
        max_nodes.to_string(),
    ];
    let mut master =
        MasterProc::spawn(command, "capacity master", registry, gateway, &extra, log).await?;
    let pid = master.proc.id();
    let idle_rss_mb = system::rss_mb(pid)?;

    let mut pool = Pool::new(registry, plan.pool);
    let mut steps = Vec::new();
    let mut memory = Vec::new();
    let mut registered = 0;
    let mut default_settings = None;
    for &nodes in &plan.steps {
        let started = Instant::now();
        pool.register(registered, nodes).await?;
        let registration = started.elapsed();
        let new = nodes - registered;
        registered = nodes;
        master.proc.ensure_running()?;
        let mut step = pool
            .heartbeats(nodes, Duration::from_secs(1), plan, pid)
            .await?;
        if nodes == plan.cpu_at {
            // The step the CPU target reads: measured three times (this VM's CPU accounting is
            // noisy), the window with the median master CPU kept, all three recorded.
            let mut windows = vec![step];
            for _ in 1..CPU_WINDOWS {
                windows.push(
                    pool.heartbeats(nodes, Duration::from_secs(1), plan, pid)
                        .await?,
                );
            }
            step = median_window(windows);
            default_settings =
                Some(at_default_settings(&mut pool, registry, nodes, plan, pid).await?);
        }
        step.registered = new;
        step.registration_s = registration.as_secs_f64();
        step.master_rss_mb = system::rss_mb(pid)?;
        if nodes == plan.rss_at[0] {
            memory.push(Memory {
                nodes,
                rss_mb: step.master_rss_mb,
            });
        }
        let passed = step.passed;
        eprintln!(
            "capacity: {nodes} nodes: {:.0}/s achieved, p99 {:.2} ms, master CPU {:.1} %",
            step.achieved_per_s, step.p99_ms, step.master_cpu_pct
        );
        steps.push(step);
        if !passed {
            break;
        }
    }
    for &nodes in &plan.rss_at {
        if memory.iter().any(|m| m.nodes == nodes) {
            continue;
        }
        if registered < nodes {
            pool.register(registered, nodes).await?;
            registered = nodes;
        }
        // Let the master's gateway router catch up with the last membership changes.
        tokio::time::sleep(Duration::from_secs(1)).await;
        master.proc.ensure_running()?;
        memory.push(Memory {
            nodes,
            rss_mb: system::rss_mb(pid)?,
        });
    }
    // A master restart with the largest registry: a fresh process on the same address, and the
    // nodes registering again as fast as the generator sends (real nodes do within an interval).
    drop(master);
    let mut command = procs::pinned(0, demo);
    command.env("RUST_LOG", "warn");
    let restarted =
        MasterProc::spawn(command, "capacity master 2", registry, gateway, &extra, log).await?;
    let mut pool = Pool::new(registry, plan.pool);
    let started = Instant::now();
    pool.register(0, plan.rss_at[1]).await?;
    let restart = Restart {
        nodes: plan.rss_at[1],
        registration_s: started.elapsed().as_secs_f64(),
        rss_mb: system::rss_mb(restarted.proc.id())?,
    };
    eprintln!(
        "capacity: {} nodes registered with a restarted master in {:.2} s ({:.1} MB)",
        restart.nodes, restart.registration_s, restart.rss_mb
    );
    Ok(Figures {
        restart: Some(restart),
        quick,
        pool_connections: plan.pool,
        measured_seconds_per_step: plan.rounds,
        idle_rss_mb,
        steps,
        memory,
        default_settings,
    })
}

/// The CPU target's step again, each node beating at the interval the master hands out at this
/// size (read from a heartbeat's answer: the lease terms scale with the heartbeat budget).
async fn at_default_settings(
    pool: &mut Pool,
    registry: SocketAddr,
    nodes: usize,
    plan: &Plan,
    pid: u32,
) -> anyhow::Result<Step> {
    use distribution_shared::registry_client::{RegistryClient, RegistrySettings};
    let client = RegistryClient::new(
        &registry.to_string(),
        RegistrySettings::new(Duration::from_secs(10)),
    )?;
    let beat = distribution_shared::wire::Heartbeat {
        in_flight: 0,
        capacity: None,
        served: 0,
        ..Default::default()
    };
    let lease = client.heartbeat("sim-0", &beat).await?;
    let period = Duration::from_millis(lease.heartbeat_interval_ms);
    let mut windows = Vec::new();
    for _ in 0..CPU_WINDOWS {
        windows.push(pool.heartbeats(nodes, period, plan, pid).await?);
    }
    let mut step = median_window(windows);
    step.master_rss_mb = system::rss_mb(pid)?;
    eprintln!(
        "capacity: {nodes} nodes at the default settings (every {period:?}): master CPU {:.1} %",
        step.master_cpu_pct
    );
    Ok(step)
}

/// Microseconds as milliseconds (0 for no value).
fn ms(us: Option<u32>) -> f64 {
    us.map_or(0.0, |us| f64::from(us) / 1e3)
}

/// Of the windows of one step, the one with the median master CPU, carrying every window's CPU.
fn median_window(mut windows: Vec<Step>) -> Step {
    let samples: Vec<f64> = windows.iter().map(|w| w.master_cpu_pct).collect();
    windows.sort_by(|a, b| a.master_cpu_pct.total_cmp(&b.master_cpu_pct));
    let mut step = windows.swap_remove(windows.len() / 2);
    step.cpu_samples_pct = samples;
    step
}

/// A step's row of the table, under `label`.
fn step_row(label: String, s: &Step) -> Vec<String> {
    vec![
        label,
        format!("{:.0}", s.offered_per_s),
        format!("{:.0}", s.achieved_per_s),
        format!("{:.2}", s.p50_ms),
        format!("{:.2}", s.p99_ms),
        format!("{:.2}", s.max_ms),
        format!("{:.2}", s.p99_from_schedule_ms),
        format!("{:.1}", s.master_cpu_pct),
        format!("{:.1}", s.generator_cpu_pct),
        format!("{:.1}", s.master_rss_mb),
        if s.passed { "passed" } else { "FAILED" }.to_string(),
    ]
}

/// The table and targets of the run.
fn section(figures: Figures) -> Section {
    let mut section = Section::new(
        "capacity",
        &[
            "nodes at 1 Hz",
            "offered hb/s",
            "achieved hb/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 from schedule ms",
            "master CPU % of a core",
            "generator CPU % of a core",
            "master RSS MB",
            "step",
        ],
    );
    for s in &figures.steps {
        section.row(step_row(s.nodes.to_string(), s));
    }
    if let Some(s) = &figures.default_settings {
        let label = format!("{} every {:.1} s (default settings)", s.nodes, s.period_s);
        section.row(step_row(label, s));
    }
    for m in &figures.memory {
        let mut cells = vec![format!("{} registered", m.nodes)];
        cells.extend(std::iter::repeat_n("-".to_string(), 8));
        cells.push(format!("{:.1}", m.rss_mb));
        cells.push("memory".into());
        section.row(cells);
    }
    let plan = Plan::new(figures.quick);

    let sustained = figures.steps.iter().rfind(|s| s.passed);
    match sustained {
        Some(s) => section.target(
            format!(
                "p99 heartbeat latency from schedule < {} ms at the sustained rate (>= {} hb/s)",
                P99_LIMIT.as_millis(),
                plan.cpu_at
            ),
            format!(
                "sustained {:.0} hb/s (highest step passed: {} nodes), p99 from schedule {:.2} ms",
                s.achieved_per_s, s.nodes, s.p99_from_schedule_ms
            ),
            s.nodes >= plan.cpu_at,
        ),
        None => section.target(
            format!(
                "p99 heartbeat latency from schedule < {} ms at the sustained rate (>= {} hb/s)",
                P99_LIMIT.as_millis(),
                plan.cpu_at
            ),
            "no step passed",
            false,
        ),
    }
    let at_cpu = figures.steps.iter().find(|s| s.nodes == plan.cpu_at);
    section.target(
        format!(
            "{} nodes at 1 Hz under {CPU_TARGET_PCT:.0} % of one core",
            plan.cpu_at
        ),
        at_cpu.map_or("not reached".into(), |s| {
            let windows: Vec<String> = s
                .cpu_samples_pct
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect();
            format!(
                "{:.1} %, median of windows [{}] (generator {:.1} %)",
                s.master_cpu_pct,
                windows.join(", "),
                s.generator_cpu_pct
            )
        }),
        at_cpu.is_some_and(|s| s.passed && s.master_cpu_pct < CPU_TARGET_PCT),
    );
    let default = figures.default_settings.as_ref();
    section.target(
        format!(
            "{} nodes at the default settings under {CPU_TARGET_PCT:.0} % of one core",
            plan.cpu_at
        ),
        default.map_or("not reached".into(), |s| {
            let at_1hz = at_cpu.map_or(f64::NAN, |c| c.master_cpu_pct);
            format!(
                "{:.1} % (every {:.1} s; {:.2} x the 1 Hz figure {at_1hz:.1} % of this run)",
                s.master_cpu_pct,
                s.period_s,
                s.master_cpu_pct / at_1hz
            )
        }),
        default.is_some_and(|s| s.passed && s.master_cpu_pct < CPU_TARGET_PCT),
    );
    if let Some(r) = &figures.restart {
        section.target(
            format!(
                "{} nodes registered in under {RESTART_TARGET_S:.0} s after a master restart, under {RSS_TARGET_MB:.0} MB",
                r.nodes
            ),
            format!("{:.2} s, {:.1} MB", r.registration_s, r.rss_mb),
            r.registration_s < RESTART_TARGET_S && r.rss_mb < RSS_TARGET_MB,
        );
    }
    let at_rss = figures.memory.iter().find(|m| m.nodes == plan.rss_at[1]);
    section.target(
        format!(
            "{} registered nodes in under {RSS_TARGET_MB:.0} MB",
            plan.rss_at[1]
        ),
        at_rss.map_or("not measured".into(), |m| format!("{:.1} MB", m.rss_mb)),
        at_rss.is_some_and(|m| m.rss_mb < RSS_TARGET_MB),
    );
    section.figures = serde_json::to_value(&figures).unwrap_or(serde_json::Value::Null);
    section
}
