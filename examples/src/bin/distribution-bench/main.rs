//! `distribution-bench`: the benchmark suite behind `make bench` (see BENCHMARKS.md).
//!
//! Every figure is measured side by side in one run against a baseline, because the machines
//! this runs on are noisy: routed calls against a raw tarpc client, 2 nodes against 1 node
//! against a local count, and so on. Each part prints a table and the targets it checks; all
//! figures are written as JSON to `<out>/bench.json` (and one file per part), and the latency
//! plot to `<out>/latency.png`.
//!
//! ```text
//! distribution-bench [--out target/bench] [--only overhead,capacity,detection,scatter,blocking,hedging] [--quick]
//! ```
//!
//! The parts:
//! - [`overhead`]: the same small call through the router and through a raw tarpc client, and
//!   through a router with the cluster secret; the handshake's connect cost ([`connect`]).
//! - [`capacity`]: the master under many simulated nodes heartbeating at 1 Hz.
//! - [`detection`]: how fast a SIGKILLed node stops getting calls and is evicted, and how fast
//!   a restarted master lists every node again.
//! - [`scatter`]: `/palindrom` over 1 and 2 nodes against a single-threaded local count.
//! - [`blocking`]: blocking calls from threads against async calls from tasks, at 1 and 16.
//! - [`hedging`]: a node SIGSTOPped for 5 s under load, backup requests off against on.

mod blocking;
mod capacity;
mod connect;
mod detection;
mod hedging;
mod overhead;
mod plot;
mod procs;
mod report;
mod rounds;
mod scatter;
mod stats;
mod system;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};

use report::Section;

/// The command line: where the figures go, which parts run, and how big.
#[derive(Parser, Debug, Clone)]
#[command(
    about = "distribution benchmarks: routed vs raw, master capacity, failure detection, scatter/gather, blocking vs async calls, backup requests"
)]
pub struct Args {
    /// Where the JSON figures and the plot go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Run only these parts (comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Smaller sizes and shorter runs: a smoke run of the benchmark itself, not figures to quote.
    #[arg(long)]
    pub quick: bool,
    /// The `distribution-demo` binary to run masters and nodes as processes (default: beside
    /// this binary).
    #[arg(long)]
    pub demo: Option<PathBuf>,
}

/// One part of the suite.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Routing overhead: routed vs raw tarpc.
    Overhead,
    /// Master capacity: simulated nodes heartbeating.
    Capacity,
    /// Failure detection: node SIGKILL and master restart.
    Detection,
    /// Scatter/gather: /palindrom over 1 and 2 nodes vs local.
    Scatter,
    /// Blocking calls from threads vs async calls from tasks.
    Blocking,
    /// A paused node under load, backup requests off vs on.
    Hedging,
}

impl Args {
    fn wants(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }

    /// The `distribution-demo` binary, beside this one unless given.
    pub fn demo_binary(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.demo {
            return Ok(path.clone());
        }
        let me = std::env::current_exe().context("where is this binary?")?;
        let path = me.with_file_name("distribution-demo");
        anyhow::ensure!(
            path.exists(),
            "{} not found: build it first (`cargo build --release -p distribution-examples`) or pass --demo",
            path.display()
        );
        Ok(path)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    report::print_machine();

    let mut sections: Vec<Section> = Vec::new();
    if args.wants(Part::Overhead) {
        let section = overhead::run(&args).await.context("overhead")?;
        plot::latency(&section, &args.out.join("latency.png")).context("plot")?;
        sections.push(section);
    }
    if args.wants(Part::Capacity) {
        sections.push(capacity::run(&args).await.context("capacity")?);
    }
    if args.wants(Part::Detection) {
        sections.push(detection::run(&args).await.context("detection")?);
    }
    if args.wants(Part::Scatter) {
        sections.push(scatter::run(&args).await.context("scatter")?);
    }
    if args.wants(Part::Blocking) {
        sections.push(blocking::run(&args).await.context("blocking")?);
    }
    if args.wants(Part::Hedging) {
        sections.push(hedging::run(&args).await.context("hedging")?);
    }
    report::write_all(&args.out, &sections)?;
    report::print_targets(&sections);
    Ok(())
}
