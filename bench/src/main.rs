//! `distribution-bench`: the benchmark suite behind `make bench` (see BENCHMARKS.md).
//!
//! Every figure is measured side by side in one run against a baseline, because the machines
//! this runs on are noisy: routed calls against a raw tarpc client, 2 nodes against 1 node
//! against a local count, and so on. Each part prints a table and the targets it checks; all
//! figures are written as JSON to `<out>/bench.json` (and one file per part), and the latency
//! plot to `<out>/latency.png`.
//!
//! ```text
//! distribution-bench [--out target/bench] [--only overhead,capacity,detection,scatter,blocking,hedging,scale,follow,spread,neighbour] [--quick] [--baseline-demo PATH]
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
//! - [`scale`]: routed calls over 1 to 10,000 members against raw tarpc.
//! - [`neighbour`]: cheap calls beside a handler that spins without yielding, against the same
//!   node idle (and, with `--baseline-demo`, against an earlier commit's node).
//!
//! The command line is [`args`]; the helpers every part shares are their own modules (processes:
//! [`procs`], figures: [`stats`], [`rounds`], [`report`], the machine: [`system`]), so no part
//! depends on this file.

mod args;
mod blocking;
mod capacity;
mod connect;
mod detection;
mod follow;
mod hedging;
mod neighbour;
mod overhead;
mod plot;
mod procs;
mod report;
mod rounds;
mod scale;
mod scatter;
mod spread;
mod stats;
mod system;

use anyhow::Context;
use clap::Parser;

use args::{Args, Part};
use report::Section;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.no_metrics {
        println!("metrics recording: off (--no-metrics)");
    } else {
        distribution_examples::telemetry::install();
        println!("metrics recording: on (metrics-exporter-prometheus recorder installed)");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    report::print_machine();

    let mut sections: Vec<Section> = Vec::new();
    if args.wants(Part::Overhead) {
        let section = overhead::run(&args).await.context("overhead")?;
        plot::latency(&section, &args.out.join("latency.png")).context("plot")?;
        sections.push(section);
        if let Some(baseline) = &args.baseline_demo {
            // The same part against the earlier commit's node, in this run.
            let before = Args {
                demo: Some(baseline.clone()),
                ..args.clone()
            };
            let mut section = overhead::run(&before)
                .await
                .context("overhead (baseline)")?;
            section.name = "overhead-baseline".into();
            sections.push(section);
        }
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
    if args.wants(Part::Scale) {
        sections.push(scale::run(&args).await.context("scale")?);
    }
    if args.wants(Part::Follow) {
        sections.push(follow::run(&args).await.context("follow")?);
    }
    if args.wants(Part::Spread) {
        sections.push(spread::run(&args).await.context("spread")?);
    }
    if args.wants(Part::Neighbour) {
        sections.push(neighbour::run(&args).await.context("neighbour")?);
    }
    report::write_all(&args.out, &sections)?;
    report::print_targets(&sections);
    Ok(())
}
