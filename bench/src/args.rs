//! The benchmark's command line: where the figures go, which parts run, and how big.
//!
//! Its own module so that every part takes an [`Args`] without depending on `main.rs`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};

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
    /// Do not install the metrics recorder (the libraries' recording is then a no-op), to see
    /// what recording costs. By default the benchmark records, as the demo programs do.
    #[arg(long)]
    pub no_metrics: bool,
    /// The `distribution-demo` binary to run masters and nodes as processes (default: beside
    /// this binary).
    #[arg(long)]
    pub demo: Option<PathBuf>,
    /// A `distribution-demo` built from an earlier commit: the parts `overhead` and
    /// `neighbour` then run against it too, in the same run (before and after a change).
    #[arg(long)]
    pub baseline_demo: Option<PathBuf>,
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
    /// Routed calls over 1 to 10,000 members vs raw tarpc.
    Scale,
    /// A remote caller following 1,000 to 100,000 nodes: by changes vs by snapshots.
    Follow,
    /// How evenly a router spreads calls: power of two choices vs exact least-used.
    Spread,
    /// Cheap calls beside a handler that spins without yielding, vs the same node idle.
    Neighbour,
}

impl Args {
    /// Whether `part` runs (`--only` names it, or is empty).
    pub fn wants(&self, part: Part) -> bool {
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
            "{} not found: build it first (`make bench-build`, or `cargo build --release -p distribution-examples --bin distribution-demo`) or pass --demo",
            path.display()
        );
        Ok(path)
    }
}
