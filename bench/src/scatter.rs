//! Part 4, scatter/gather: `/palindrom?n=N` through the demo gateway with 1 node and with 2
//! nodes, against a single-threaded local count of the same `N`.
//!
//! Set-up: two `distribution-demo master` processes, one with a node pinned to CPU 0, the other
//! with two nodes pinned to CPUs 0 and 1 (a node counts on `spawn_blocking` threads, so without
//! pinning one node would use both cores). The local count runs on a thread of this process
//! pinned to CPU 0. Rounds alternate local, 1 node and 2 nodes (rotating which goes first). Each
//! time reported is the fastest of its rounds: other load on the machine only ever adds time,
//! so the fastest round is the closest to what the set-up itself costs (the medians are in the
//! JSON too). The CPU time the counting processes got is measured as well, to tell a slow set-up
//! from a starved one. The three answers must be equal.

use std::time::{Duration, Instant};

use anyhow::Context;
use distribution_examples::palindrome;
use serde::Serialize;

use crate::args::Args;
use crate::procs::{self, MasterProc, Proc};
use crate::report::Section;
use crate::system;

/// How much is counted and how often.
#[derive(Debug, Clone, Copy, Serialize)]
struct Settings {
    /// The `n` of `/palindrom?n=`.
    n: u64,
    /// Rounds of (local, 1 node, 2 nodes); the median is reported.
    rounds: usize,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                n: 200_000_000,
                rounds: 1,
            }
        } else {
            Self {
                n: 2_000_000_000,
                rounds: 5,
            }
        }
    }
}

/// The three ways of counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Local,
    OneNode,
    TwoNodes,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Local => "local, 1 thread",
            Setup::OneNode => "1 node",
            Setup::TwoNodes => "2 nodes",
        }
    }
}

/// One count: its answer, how long it took, how many chunks it was cut into, and the CPU time
/// the counting took (all nodes' processes, or the local thread).
#[derive(Debug, Clone, Copy)]
struct Count {
    answer: u64,
    time: Duration,
    chunks: u64,
    cpu: Duration,
    /// CPU time the whole machine was busy meanwhile, every process included.
    busy: Duration,
}

impl Count {
    /// CPU time other processes took while this count ran (the machine's busy time less the
    /// counting's own), in seconds: what a quiet machine shows as about zero.
    fn others(&self) -> f64 {
        (self.busy.as_secs_f64() - self.cpu.as_secs_f64()).max(0.0)
    }
}

/// A cluster of demo processes: its master and nodes, all killed when dropped.
struct Cluster {
    master: MasterProc,
    nodes: Vec<Proc>,
}

impl Cluster {
    /// A master with one node per CPU of `cpus`, each pinned to its CPU.
    async fn start(args: &Args, name: &str, cpus: &[usize]) -> anyhow::Result<Self> {
        let demo = args.demo_binary()?;
        let mut master = MasterProc::start(
            &demo,
            &procs::log_path(&args.out, &format!("{name}-master"))?,
        )
        .await?;
        let mut nodes = Vec::new();
        for &cpu in cpus {
            let log = procs::log_path(&args.out, &format!("{name}-node-cpu{cpu}"))?;
            nodes.push(procs::node(&demo, master.registry, cpu, &log)?);
        }
        master
            .wait_for_nodes(cpus.len() as u64, Duration::from_secs(15))
            .await
            .with_context(|| format!("starting the {name} cluster"))?;
        Ok(Self { master, nodes })
    }

    /// The CPU time the nodes have used so far.
    fn nodes_cpu(&self) -> anyhow::Result<Duration> {
        self.nodes
            .iter()
            .map(|node| system::process_cpu(node.id()))
            .sum()
    }

    /// Counts `0..=n` through the gateway.
    async fn count(&mut self, n: u64) -> anyhow::Result<Count> {
        self.master.proc.ensure_running()?;
        let path = format!("/palindrom?n={n}");
        let cpu_before = self.nodes_cpu()?;
        let busy_before = system::machine_busy()?;
        let started = Instant::now();
        let (status, body) = procs::get(self.master.gateway, &path).await?;
        let time = started.elapsed();
        let busy = system::machine_busy()?.saturating_sub(busy_before);
        let cpu = self.nodes_cpu()?.saturating_sub(cpu_before);
        anyhow::ensure!(
            status == 200,
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        Ok(Count {
            answer: answer["count"].as_u64().context("no count in the answer")?,
            time,
            chunks: answer["chunks"].as_u64().unwrap_or(0),
            cpu,
            busy,
        })
    }
}

/// Counts `0..=n` on one thread of this process pinned to CPU 0.
async fn count_locally(n: u64) -> anyhow::Result<Count> {
    let thread = std::thread::Builder::new()
        .name("bench-local-count".into())
        .spawn(move || -> anyhow::Result<Count> {
            procs::pin_this_thread(0)?;
            let cpu_before = system::thread_cpu()?;
            let busy_before = system::machine_busy()?;
            let started = Instant::now();
            let answer = palindrome::count_range(0, n);
            let time = started.elapsed();
            Ok(Count {
                answer,
                time,
                chunks: 1,
                busy: system::machine_busy()?.saturating_sub(busy_before),
                cpu: system::thread_cpu()?.saturating_sub(cpu_before),
            })
        })?;
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the local count panicked"))?
}

/// Runs this part.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    procs::require_pinning(2)?;
    let settings = Settings::new(args.quick);
    let n = settings.n;
    println!(
        "scatter: /palindrom?n={n} over 1 node (CPU 0) and 2 nodes (CPUs 0, 1) vs a local \
         count on CPU 0; {} rounds",
        settings.rounds
    );
    let mut one = Cluster::start(args, "scatter-1", &[0]).await?;
    let mut two = Cluster::start(args, "scatter-2", &[0, 1]).await?;
    // Warm-up: the gateways dial their nodes.
    one.count(1_000_000).await?;
    two.count(1_000_000).await?;

    let order = [Setup::Local, Setup::OneNode, Setup::TwoNodes];
    let mut counts: Vec<(Setup, Count)> = Vec::new();
    for round in 0..settings.rounds {
        for i in 0..order.len() {
            let setup = order[(i + round) % order.len()];
            let count = match setup {
                Setup::Local => count_locally(n).await?,
                Setup::OneNode => one.count(n).await?,
                Setup::TwoNodes => two.count(n).await?,
            };
            println!(
                "  round {} {:<16} {:>7.3} s  CPU {:>6.2} s  other processes {:>5.2} CPU s  count {}",
                round + 1,
                setup.label(),
                count.time.as_secs_f64(),
                count.cpu.as_secs_f64(),
                count.others(),
                count.answer
            );
            counts.push((setup, count));
        }
    }
    drop(one);
    drop(two);

    let answer = counts[0].1.answer;
    if let Some((setup, wrong)) = counts.iter().find(|(_, c)| c.answer != answer) {
        anyhow::bail!(
            "the counts differ: {} answered {}, {} answered {answer}",
            setup.label(),
            wrong.answer,
            counts[0].0.label()
        );
    }
    let sorted = |setup: Setup| -> Vec<Count> {
        let mut of: Vec<Count> = counts
            .iter()
            .filter(|(s, _)| *s == setup)
            .map(|(_, c)| *c)
            .collect();
        of.sort_by_key(|c| c.time);
        of
    };
    let best = |setup: Setup| sorted(setup)[0];
    let median = |setup: Setup| {
        let of = sorted(setup);
        of[of.len() / 2].time.as_secs_f64()
    };
    let local = best(Setup::Local);
    let one = best(Setup::OneNode);
    let two = best(Setup::TwoNodes);

    let mut section = Section::new(
        "scatter",
        &[
            "setup",
            "time s",
            "numbers/s (M)",
            "ns per number",
            "speed vs local",
            "chunks",
            "CPU s",
            "CPU use",
            "other processes CPU s",
        ],
    );
    let numbers = n as f64 + 1.0;
    for (setup, c, cores) in [
        (Setup::Local, local, 1.0),
        (Setup::OneNode, one, 1.0),
        (Setup::TwoNodes, two, 2.0),
    ] {
        let secs = c.time.as_secs_f64();
        let cpu = c.cpu.as_secs_f64();
        section.row(vec![
            setup.label().to_string(),
            format!("{secs:.3}"),
            format!("{:.0}", numbers / secs / 1e6),
            format!("{:.3}", secs * 1e9 / numbers),
            format!("{:.3} x", local.time.as_secs_f64() / secs),
            c.chunks.to_string(),
            format!("{cpu:.2}"),
            format!("{:.0}%", 100.0 * cpu / (secs * cores)),
            format!("{:.2}", c.others()),
        ]);
    }
    let speedup = one.time.as_secs_f64() / two.time.as_secs_f64();
    section.target(
        "2 nodes >= 1.8 x the speed of 1 node",
        format!("{speedup:.2} x"),
        speedup >= 1.8,
    );
    let slower = one.time.as_secs_f64() / local.time.as_secs_f64() - 1.0;
    section.target(
        "1 node within 10% of the local single-threaded count",
        format!("{:+.1}%", slower * 100.0),
        slower <= 0.10,
    );
    section.target("the three counts are equal", format!("{answer} each"), true);
    let secs = |setup: Setup| -> Vec<f64> {
        counts
            .iter()
            .filter(|(s, _)| *s == setup)
            .map(|(_, c)| c.time.as_secs_f64())
            .collect()
    };
    section.figures = serde_json::json!({
        "settings": settings,
        "count": answer,
        "best_s": {
            "local": local.time.as_secs_f64(),
            "one_node": one.time.as_secs_f64(),
            "two_nodes": two.time.as_secs_f64(),
        },
        "best_cpu_s": {
            "local": local.cpu.as_secs_f64(),
            "one_node": one.cpu.as_secs_f64(),
            "two_nodes": two.cpu.as_secs_f64(),
        },
        "best_other_processes_cpu_s": {
            "local": local.others(),
            "one_node": one.others(),
            "two_nodes": two.others(),
        },
        "median_s": {
            "local": median(Setup::Local),
            "one_node": median(Setup::OneNode),
            "two_nodes": median(Setup::TwoNodes),
        },
        "rounds_s": {
            "local": secs(Setup::Local),
            "one_node": secs(Setup::OneNode),
            "two_nodes": secs(Setup::TwoNodes),
        },
        "chunks": { "one_node": one.chunks, "two_nodes": two.chunks },
        "speedup_two_vs_one": speedup,
        "one_node_vs_local": one.time.as_secs_f64() / local.time.as_secs_f64(),
    });
    Ok(section)
}
