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
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::time::Instant;

use crate::args::Args;
use crate::procs::{self, MasterProc};
use crate::report::Section;
use crate::{stats, system};

/// The port every simulated node claims (never dialled).
const SIM_PORT: u16 = 7000;

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

/// The memory the master may use with 100,000 registered nodes.
const RSS_TARGET_MB: f64 = 200.0;

/// How long one request (registration or heartbeat) may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A heartbeat's body: an idle node of the default capacity.
const HEARTBEAT: &[u8] = br#"{"in_flight":0,"capacity":1024,"served":0}"#;

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
    for &nodes in &plan.steps {
        let started = Instant::now();
        pool.register(registered, nodes).await?;
        let registration = started.elapsed();
        let new = nodes - registered;
        registered = nodes;
        master.proc.ensure_running()?;
        let mut step = pool.heartbeats(nodes, plan, pid).await?;
        if nodes == plan.cpu_at {
            // The step the CPU target reads: measured three times (this VM's CPU accounting is
            // noisy), the window with the median master CPU kept, all three recorded.
            let mut windows = vec![step];
            for _ in 1..CPU_WINDOWS {
                windows.push(pool.heartbeats(nodes, plan, pid).await?);
            }
            let samples: Vec<f64> = windows.iter().map(|w| w.master_cpu_pct).collect();
            windows.sort_by(|a, b| a.master_cpu_pct.total_cmp(&b.master_cpu_pct));
            step = windows.swap_remove(windows.len() / 2);
            step.cpu_samples_pct = samples;
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
    Ok(Figures {
        quick,
        pool_connections: plan.pool,
        measured_seconds_per_step: plan.rounds,
        idle_rss_mb,
        steps,
        memory,
    })
}

/// The generator's keep-alive connections to the master.
struct Pool {
    conns: Vec<Conn>,
}

impl Pool {
    fn new(addr: SocketAddr, size: usize) -> Self {
        let host = HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header");
        Self {
            conns: (0..size.max(1))
                .map(|_| Conn {
                    addr,
                    host: host.clone(),
                    sender: None,
                })
                .collect(),
        }
    }

    /// Registers simulated nodes `from..to`, spread over the connections; fails on any refusal.
    async fn register(&mut self, from: usize, to: usize) -> anyhow::Result<()> {
        let stride = self.conns.len();
        let jobs = self
            .conns
            .iter_mut()
            .enumerate()
            .map(|(k, conn)| async move {
                for i in (from + k..to).step_by(stride) {
                    let body = serde_json::to_vec(&distribution_shared::wire::RegisterRequest {
                        id: sim_id(i),
                        port: SIM_PORT,
                        addr: Some(sim_addr(i)),
                        capacity: None,
                    })?;
                    let status = conn.send(Method::POST, "/v1/nodes", body.into()).await?;
                    anyhow::ensure!(
                        status == StatusCode::OK,
                        "registering {}: {status}",
                        sim_id(i)
                    );
                }
                anyhow::Ok(())
            });
        for result in futures::future::join_all(jobs).await {
            result?;
        }
        Ok(())
    }

    /// Runs one step: nodes `0..nodes` heartbeat once a second, node `i` at `i / nodes` of each
    /// second, for the plan's warm-up and measured rounds. Each connection carries the nodes
    /// `k, k + pool, ...` one request at a time.
    async fn heartbeats(&mut self, nodes: usize, plan: &Plan, master: u32) -> anyhow::Result<Step> {
        let period = Duration::from_secs(1);
        let t0 = Instant::now() + Duration::from_millis(50);
        let window_start = t0 + period * plan.warmup_rounds;
        let window_end = window_start + period * plan.rounds;
        // Every loop below ends by this time, whatever the master does.
        let hard_end = window_end + Duration::from_secs(5);
        let stride = self.conns.len();
        let total_rounds = plan.warmup_rounds + plan.rounds;
        let jobs = self
            .conns
            .iter_mut()
            .enumerate()
            .map(|(k, conn)| async move {
                let mut record = Record::default();
                'rounds: for round in 0..total_rounds {
                    let measured = round >= plan.warmup_rounds;
                    for i in (k..nodes).step_by(stride) {
                        let due = t0 + period * round + period.mul_f64(i as f64 / nodes as f64);
                        tokio::time::sleep_until(due).await;
                        let sent = Instant::now();
                        if sent >= hard_end {
                            break 'rounds;
                        }
                        let path = format!("/v1/nodes/{}/heartbeat", sim_id(i));
                        let result = conn
                            .send(Method::PUT, &path, Bytes::from_static(HEARTBEAT))
                            .await;
                        let done = Instant::now();
                        if !measured {
                            continue;
                        }
                        match result {
                            Ok(StatusCode::OK) => {
                                record.ok += 1;
                                record.service_us.push(micros(done - sent));
                                record.sched_us.push(micros(done - due));
                                record.last_done = record.last_done.max(Some(done));
                            }
                            _ => record.errors += 1,
                        }
                    }
                }
                record
            });
        let cpu = async {
            tokio::time::sleep_until(window_start).await;
            // The generator is this one thread (a current-thread runtime).
            let start = (
                Instant::now(),
                system::process_cpu(master)?,
                system::thread_cpu()?,
            );
            tokio::time::sleep_until(window_end).await;
            let end = (
                Instant::now(),
                system::process_cpu(master)?,
                system::thread_cpu()?,
            );
            let seconds = (end.0 - start.0).as_secs_f64();
            let pct = |cpu: Duration| cpu.as_secs_f64() / seconds * 100.0;
            anyhow::Ok((pct(end.1 - start.1), pct(end.2 - start.2)))
        };
        let (records, cpu) = futures::join!(futures::future::join_all(jobs), cpu);
        let (master_cpu_pct, generator_cpu_pct) = cpu?;

        let mut service: Vec<u32> = Vec::new();
        let mut sched: Vec<u32> = Vec::new();
        let (mut ok, mut errors, mut last_done) = (0, 0, None);
        for record in records {
            ok += record.ok;
            errors += record.errors;
            service.extend(record.service_us);
            sched.extend(record.sched_us);
            last_done = last_done.max(record.last_done);
        }
        service.sort_unstable();
        sched.sort_unstable();
        let offered = nodes as f64 / period.as_secs_f64();
        let span = last_done
            .map_or(Duration::ZERO, |done| done - window_start)
            .max(period * plan.rounds);
        let achieved = ok as f64 / span.as_secs_f64();
        let p99 = ms(stats::percentile(&service, 99.0));
        let p99_from_schedule = ms(stats::percentile(&sched, 99.0));
        // Judged from the schedule: a heartbeat due at t and sent late because the generator
        // was held up waits as long as one the master answered late (no coordinated omission).
        let passed = errors == 0
            && p99_from_schedule < P99_LIMIT.as_secs_f64() * 1e3
            && achieved >= MIN_ACHIEVED * offered;
        Ok(Step {
            nodes,
            offered_per_s: offered,
            achieved_per_s: achieved,
            ok,
            errors,
            p50_ms: ms(stats::percentile(&service, 50.0)),
            p99_ms: p99,
            max_ms: ms(stats::percentile(&service, 100.0)),
            p99_from_schedule_ms: p99_from_schedule,
            master_cpu_pct,
            cpu_samples_pct: Vec::new(),
            generator_cpu_pct,
            master_rss_mb: 0.0,
            registered: 0,
            registration_s: 0.0,
            passed,
        })
    }
}

/// What one connection saw in a step's measured rounds.
#[derive(Default)]
struct Record {
    ok: u64,
    errors: u64,
    service_us: Vec<u32>,
    sched_us: Vec<u32>,
    last_done: Option<Instant>,
}

/// One keep-alive HTTP/1.1 connection, redialled when it breaks.
struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// Sends one JSON request and reads the whole answer: its status. Bounded by
    /// [`REQUEST_TIMEOUT`]; a failed connection is dropped and redialled by the next request.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<StatusCode> {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.try_send(method, path, body)).await;
        match result {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(err)) => {
                self.sender = None;
                Err(err)
            }
            Err(_) => {
                self.sender = None;
                anyhow::bail!("no answer from the master within {REQUEST_TIMEOUT:?}")
            }
        }
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<StatusCode> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            // Ends when the sender is dropped or the master closes the connection.
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("dialled above");
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// The id of simulated node `i`.
fn sim_id(i: usize) -> String {
    format!("sim-{i}")
}

/// The address simulated node `i` registers: distinct for every `i` below 2^24, never dialled.
fn sim_addr(i: usize) -> String {
    format!(
        "10.{}.{}.{}:{SIM_PORT}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// Microseconds as milliseconds (0 for no value).
fn ms(us: Option<u32>) -> f64 {
    us.map_or(0.0, |us| f64::from(us) / 1e3)
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
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
        section.row(vec![
            s.nodes.to_string(),
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
        ]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_addresses_are_distinct_and_valid() {
        let addrs: std::collections::HashSet<String> = (0..70_000).map(sim_addr).collect();
        assert_eq!(addrs.len(), 70_000);
        assert_eq!(sim_addr(0x01_02_03), "10.1.2.3:7000");
    }
}
