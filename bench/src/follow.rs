//! Following the cluster (issue #11): what a remote caller receives each second and what it
//! costs the master, following **by changes** (`GET /v1/changes`, the follower of today) against
//! **by snapshots** (`GET /v1/nodes?index=N&wait=1s`, the follower before), side by side in one
//! run, at 1,000, 10,000 and 100,000 registered nodes, while 1 % of the nodes change load each
//! second and one node joins and one leaves every second.
//!
//! Set-up: a `distribution-demo master` process pinned to CPU 0 (a 10-minute interval and
//! 30-minute TTL, so the simulated nodes, which only beat when the driver changes their load,
//! stay registered and are never late: a real node beats on time, and heartbeats that change
//! nothing send a follower nothing); the driver and the follower
//! in this process, on one current-thread runtime pinned to CPU 1, through the registry client
//! of `distribution-shared`. At each size three windows: changes follower, snapshot follower, no
//! follower (the driver alone); master CPU per follower is a window's CPU minus the driver-only
//! window's. Bytes are those of the JSON bodies (re-encoded from the parsed answers: the master
//! encodes the same compact JSON). A join is "seen" when the follower's answer names it,
//! measured from when the driver sent the registration.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use distribution_shared::registry_client::{
    BlockingQuery, FollowerView, RegistryClient, RegistrySettings,
};
use distribution_shared::wire::{EventKind, Heartbeat, RegisterRequest};
use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::args::Args;
use crate::procs::{self, MasterProc};
use crate::report::Section;
use crate::system;

/// The byte target at the largest size: changes under 1 % of the whole list's bytes a second.
const BYTES_TARGET_PCT: f64 = 1.0;
/// The membership target: a join seen by the follower within this.
const SEEN_TARGET: Duration = Duration::from_millis(100);
/// Requests the driver keeps in flight.
const CONCURRENCY: usize = 64;
/// The largest answer the follower reads.
const MAX_BYTES: usize = 256 * 1024 * 1024;

/// One size's figures.
#[derive(Debug, Serialize)]
struct Figures {
    nodes: usize,
    full_list_bytes: usize,
    changes_bytes_per_s: f64,
    snapshot_bytes_per_s: f64,
    changes_pct_of_list_per_s: f64,
    master_cpu_pct_changes: f64,
    master_cpu_pct_snapshots: f64,
    master_cpu_pct_driver: f64,
    seen_p50_ms: f64,
    seen_max_ms: f64,
    joins_seen: usize,
}

/// How the follower follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Changes,
    Snapshots,
    None,
}

/// Runs this part on a pinned thread (the master on CPU 0, this on CPU 1).
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    procs::require_pinning(2)?;
    let demo = args.demo_binary()?;
    let log = procs::log_path(&args.out, "follow-master")?;
    let quick = args.quick;
    let thread = std::thread::Builder::new()
        .name("follow".into())
        .spawn(move || -> anyhow::Result<Vec<Figures>> {
            procs::pin_this_thread(1)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(measure(&demo, &log, quick))
        })
        .context("starting the follow thread")?;
    let figures = tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the follow thread panicked"))??;
    Ok(section(figures))
}

async fn measure(
    demo: &std::path::Path,
    log: &std::path::Path,
    quick: bool,
) -> anyhow::Result<Vec<Figures>> {
    let (sizes, window): (&[usize], Duration) = if quick {
        (&[1_000, 10_000], Duration::from_secs(2))
    } else {
        (&[1_000, 10_000, 100_000], Duration::from_secs(6))
    };
    let registry: SocketAddr = format!("127.0.0.1:{}", procs::free_port()?).parse()?;
    let gateway: SocketAddr = format!("127.0.0.1:{}", procs::free_port()?).parse()?;
    let mut command = procs::pinned(0, demo);
    command.env("RUST_LOG", "warn");
    // A 10-minute interval: the simulated nodes beat only when the driver changes their load,
    // and must not turn late meanwhile (a real node beats on time; `late` and `back` events
    // from silent simulated nodes would flood the change feed's history).
    let extra = [
        "--heartbeat-interval-ms".to_string(),
        "600000".to_string(),
        "--ttl-ms".to_string(),
        "1800000".to_string(),
        "--max-nodes".to_string(),
        "110000".to_string(),
    ];
    let master =
        MasterProc::spawn(command, "follow master", registry, gateway, &extra, log).await?;
    let pid = master.proc.id();
    let client = RegistryClient::new(
        &registry.to_string(),
        RegistrySettings::new(Duration::from_secs(30)),
    )?;
    let mut driver = Driver {
        client: client.clone(),
        next: 0,
        oldest: 0,
        round: 0,
    };
    let mut all = Vec::new();
    for &nodes in sizes {
        driver.grow_to(nodes).await?;
        let full = client.list(None, MAX_BYTES).await?;
        let full_list_bytes = serde_json::to_vec(&full)?.len();
        let mut windows = HashMap::new();
        for mode in [Mode::Changes, Mode::Snapshots, Mode::None] {
            windows.insert(
                mode,
                window_of(&client, &mut driver, mode, nodes, window, pid).await?,
            );
        }
        let (changes, snapshots, none) = (
            &windows[&Mode::Changes],
            &windows[&Mode::Snapshots],
            &windows[&Mode::None],
        );
        let mut seen = changes.seen_ms.clone();
        seen.sort_by(f64::total_cmp);
        let figures = Figures {
            nodes,
            full_list_bytes,
            changes_bytes_per_s: changes.bytes_per_s,
            snapshot_bytes_per_s: snapshots.bytes_per_s,
            changes_pct_of_list_per_s: changes.bytes_per_s / full_list_bytes as f64 * 100.0,
            master_cpu_pct_changes: changes.master_cpu_pct - none.master_cpu_pct,
            master_cpu_pct_snapshots: snapshots.master_cpu_pct - none.master_cpu_pct,
            master_cpu_pct_driver: none.master_cpu_pct,
            seen_p50_ms: seen.get(seen.len() / 2).copied().unwrap_or(f64::NAN),
            seen_max_ms: seen.last().copied().unwrap_or(f64::NAN),
            joins_seen: seen.len(),
        };
        eprintln!("follow: {figures:?}");
        all.push(figures);
    }
    drop(master);
    Ok(all)
}

/// What one window measured.
struct Window {
    bytes_per_s: f64,
    master_cpu_pct: f64,
    seen_ms: Vec<f64>,
}

/// Runs the driver for `window` with a follower in `mode`.
async fn window_of(
    client: &RegistryClient,
    driver: &mut Driver,
    mode: Mode,
    nodes: usize,
    window: Duration,
    pid: u32,
) -> anyhow::Result<Window> {
    let joins: std::rc::Rc<std::cell::RefCell<HashMap<String, Instant>>> = Default::default();
    let started = Instant::now();
    let cpu_start = system::process_cpu(pid)?;
    let end = started + window;
    let follower = follow(client, mode, end, joins.clone());
    let drive = async {
        while Instant::now() < end {
            let second = Instant::now();
            driver.one_second(nodes, &joins).await?;
            tokio::time::sleep_until(second + Duration::from_secs(1)).await;
        }
        anyhow::Ok(())
    };
    let (bytes_seen, driven) = futures::join!(follower, drive);
    driven?;
    let (bytes, seen_ms) = bytes_seen?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (system::process_cpu(pid)? - cpu_start).as_secs_f64();
    Ok(Window {
        bytes_per_s: bytes as f64 / elapsed,
        master_cpu_pct: cpu / elapsed * 100.0,
        seen_ms,
    })
}

/// Follows until `end`: the bytes received and, for each join the driver made, how long after
/// its registration the follower's answer named it.
async fn follow(
    client: &RegistryClient,
    mode: Mode,
    end: Instant,
    joins: std::rc::Rc<std::cell::RefCell<HashMap<String, Instant>>>,
) -> anyhow::Result<(usize, Vec<f64>)> {
    let wait = Duration::from_secs(1);
    let (mut bytes, mut seen) = (0usize, Vec::new());
    let note = |id: &str, seen: &mut Vec<f64>| {
        if let Some(sent) = joins.borrow_mut().remove(id) {
            seen.push(sent.elapsed().as_secs_f64() * 1e3);
        }
    };
    match mode {
        Mode::None => tokio::time::sleep_until(end).await,
        Mode::Changes => {
            let first = client.changes(None, None, wait, MAX_BYTES).await?;
            let mut view = FollowerView {
                epoch: first.epoch,
                index: first.index,
                loads: first.loads_index,
            };
            while Instant::now() < end {
                let answer = client.changes(Some(view), None, wait, MAX_BYTES).await?;
                bytes += serde_json::to_vec(&answer)?.len();
                for event in answer.events.iter().filter(|e| e.kind == EventKind::Join) {
                    note(&event.node, &mut seen);
                }
                view = FollowerView {
                    epoch: answer.epoch,
                    index: answer.index,
                    loads: answer.loads_index,
                };
            }
        }
        Mode::Snapshots => {
            let first = client.list(None, MAX_BYTES).await?;
            let mut known: HashSet<String> = first.nodes.into_iter().map(|n| n.id).collect();
            let mut index = first.index;
            while Instant::now() < end {
                let list = client
                    .list(Some(BlockingQuery { index, wait }), MAX_BYTES)
                    .await?;
                bytes += serde_json::to_vec(&list)?.len();
                index = list.index;
                let now: HashSet<String> = list.nodes.into_iter().map(|n| n.id).collect();
                for id in now.difference(&known) {
                    note(id, &mut seen);
                }
                known = now;
            }
        }
    }
    Ok((bytes, seen))
}

/// The simulated cluster: nodes `oldest..next` registered (`sim-<i>`, never dialled).
struct Driver {
    client: RegistryClient,
    next: usize,
    oldest: usize,
    round: u32,
}

impl Driver {
    /// Registers nodes until `nodes` are registered.
    async fn grow_to(&mut self, nodes: usize) -> anyhow::Result<()> {
        let from = self.next;
        let to = self.oldest + nodes;
        let client = &self.client;
        let results: Vec<_> = futures::stream::iter(from..to)
            .map(|i| async move { client.register(&request(i)).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for result in results {
            result.context("registering a simulated node")?;
        }
        self.next = to;
        Ok(())
    }

    /// One second of churn: 1 % of the nodes report a new load, one joins, the oldest leaves.
    async fn one_second(
        &mut self,
        nodes: usize,
        joins: &std::rc::Rc<std::cell::RefCell<HashMap<String, Instant>>>,
    ) -> anyhow::Result<()> {
        self.round += 1;
        let beat = Heartbeat {
            in_flight: self.round % 7 + 1,
            capacity: None,
            served: u64::from(self.round),
            ..Default::default()
        };
        let share = (nodes / 100).max(1);
        let start = self.oldest + (self.round as usize * share) % nodes;
        let client = &self.client;
        let beat = &beat;
        let ids: Vec<String> = (0..share)
            .map(|k| sim_id(self.oldest + (start + k - self.oldest) % nodes))
            .collect();
        let results: Vec<_> = futures::stream::iter(ids.iter())
            .map(|id| async move { client.heartbeat(id, beat).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for result in results {
            result.context("a simulated heartbeat")?;
        }
        let joining = self.next;
        joins.borrow_mut().insert(sim_id(joining), Instant::now());
        self.client.register(&request(joining)).await?;
        self.next += 1;
        self.client.deregister(&sim_id(self.oldest)).await?;
        self.oldest += 1;
        Ok(())
    }
}

fn sim_id(i: usize) -> String {
    format!("sim-{i}")
}

fn request(i: usize) -> RegisterRequest {
    RegisterRequest {
        addr: Some(format!(
            "10.{}.{}.{}:7000",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        )),
        ..RegisterRequest::new(sim_id(i), 7000)
    }
}

fn section(figures: Vec<Figures>) -> Section {
    let mut section = Section::new(
        "follow",
        &[
            "nodes",
            "whole list (bytes)",
            "changes B/s",
            "snapshots B/s",
            "changes / list per s",
            "master CPU % per follower, changes",
            "master CPU % per follower, snapshots",
            "join seen p50 / max ms",
        ],
    );
    for f in &figures {
        section.row(vec![
            f.nodes.to_string(),
            f.full_list_bytes.to_string(),
            format!("{:.0}", f.changes_bytes_per_s),
            format!("{:.0}", f.snapshot_bytes_per_s),
            format!("{:.3} %", f.changes_pct_of_list_per_s),
            format!("{:.2}", f.master_cpu_pct_changes),
            format!("{:.2}", f.master_cpu_pct_snapshots),
            format!("{:.1} / {:.1}", f.seen_p50_ms, f.seen_max_ms),
        ]);
    }
    if let Some(largest) = figures.last() {
        section.target(
            format!(
                "{} nodes: changes under {BYTES_TARGET_PCT} % of the whole list's bytes a second",
                largest.nodes
            ),
            format!("{:.3} %", largest.changes_pct_of_list_per_s),
            largest.changes_pct_of_list_per_s < BYTES_TARGET_PCT,
        );
    }
    let worst = figures.iter().map(|f| f.seen_max_ms).fold(0.0, f64::max);
    section.target(
        format!(
            "membership changes seen in under {} ms",
            SEEN_TARGET.as_millis()
        ),
        format!("slowest {worst:.1} ms"),
        worst < SEEN_TARGET.as_secs_f64() * 1e3,
    );
    section.figures = serde_json::to_value(&figures).unwrap_or_default();
    section
}
