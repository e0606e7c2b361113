//! Part 1, routing overhead: the same small call (`Calc::sum` of three values, no delay) through
//! the router and through a raw tarpc client, on the same node; and through a router with the
//! cluster secret to a node that has it (the handshake's cost per call, which should be none),
//! plus what the handshake costs per connection ([`crate::connect`]).
//!
//! Set-up, chosen so that the two paths compete for nothing but the comparison:
//! - the node is a `distribution-demo node` **process pinned to CPU 1**;
//! - the callers (the router, with its in-process master's membership, and the raw client) run
//!   on **one current-thread tokio runtime on a thread pinned to CPU 0**, so both paths pay for
//!   their own CPU only: what the router adds per call shows up as fewer calls per second;
//! - the raw client is [`ServiceClient::from_stream`] over [`stream::connect`], the very framing
//!   and dialling the router uses, on its own connection to the same node;
//! - the secret path is a second node process, started with `--secret` and pinned to CPU 1
//!   too, registered with a second in-process master that has the secret; its router proves
//!   the secret once per connection;
//! - each concurrency runs several rounds, the three paths in turn (which goes first rotating),
//!   and each figure is the median over the rounds, so noise hits all of them.
//!
//! Each round is `concurrency` tasks calling in a loop for a fixed time, bounded in count too.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use distribution_client::{CallRouter, Membership, RouterConfig};
use distribution_examples::service::CalcClient;
use distribution_master::{Master, MasterConfig};
use distribution_shared::handshake::Key;
use distribution_shared::{ServiceClient, defaults, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::args::Args;
use crate::procs;
use crate::report::Section;
use crate::rounds::{PathFigures, Round, VALUES, load, micros, summarize};
use crate::{connect, stats};

/// The concurrencies measured.
pub const CONCURRENCY: [usize; 3] = [1, 16, 128];

/// The cluster secret of the secret path's master and node.
const SECRET: &str = "bench-cluster-secret";

/// How long and how often each concurrency is measured.
#[derive(Debug, Clone, Copy, Serialize)]
struct Settings {
    /// How long one round of one path runs.
    round: Duration,
    /// Rounds per path and concurrency (the median is reported).
    rounds: usize,
    /// The most calls one round makes, whatever its duration.
    max_calls: u64,
    /// Calls per path before measuring (dialling, allocator, caches).
    warmup: u64,
    /// Connections opened per kind for the connect figures.
    connections: usize,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                round: Duration::from_millis(400),
                rounds: 1,
                max_calls: 200_000,
                warmup: 500,
                connections: 200,
            }
        } else {
            Self {
                round: Duration::from_secs(2),
                rounds: 8,
                max_calls: 2_000_000,
                warmup: 20_000,
                connections: 2_000,
            }
        }
    }
}

/// Raw and routed at one concurrency: what `figures.points` of the section holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Point {
    /// Concurrent callers.
    pub concurrency: usize,
    /// The raw tarpc client.
    pub raw: PathFigures,
    /// Through the router.
    pub routed: PathFigures,
    /// Routed over raw throughput: the median over rounds of the ratio of each round's pair
    /// (a raw and a routed run side by side), so that slow drifts of the machine cancel out.
    pub ratio: f64,
    /// Routed minus raw p50, microseconds: the median over the rounds' pairs.
    pub p50_diff_us: f64,
    /// Through a router with the cluster secret, to a node that requires it.
    pub routed_secret: PathFigures,
    /// Routed-with-secret over routed throughput: the median over the rounds' pairs.
    pub secret_ratio: f64,
    /// Routed-with-secret minus routed CPU per call, microseconds: the median over the pairs.
    pub secret_cpu_diff_us: f64,
}

/// Runs this part.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    procs::require_pinning(2)?;
    let settings = Settings::new(args.quick);
    let demo = args.demo_binary()?;
    let master = Master::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        MasterConfig::default(),
    )?;
    let node_log = procs::log_path(&args.out, "overhead-node")?;
    let mut node = procs::node(&demo, master.local_addr(), 1, &node_log)?;
    let membership = master.registry().subscribe();
    let secret_master = Master::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        MasterConfig::default().with_secret(Some(SECRET.into())),
    )?;
    let secret_log = procs::log_path(&args.out, "overhead-node-secret")?;
    let mut secret_node = procs::node_with_args(
        &demo,
        secret_master.local_addr(),
        1,
        &secret_log,
        &["--secret", SECRET],
    )?;
    let secret_membership = secret_master.registry().subscribe();

    println!(
        "overhead: Calc::sum through the router vs a raw tarpc client vs a router with the \
         cluster secret; nodes pinned to CPU 1, callers to CPU 0; {} rounds of {:?} per path \
         and concurrency",
        settings.rounds, settings.round
    );
    let callers = std::thread::Builder::new()
        .name("bench-callers".into())
        .spawn(
            move || -> anyhow::Result<(Vec<Point>, connect::ConnectFigures)> {
                procs::pin_this_thread(0)?;
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(measure(membership, secret_membership, settings))
            },
        )?;
    let measured = tokio::task::spawn_blocking(move || callers.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the callers' thread panicked"))?;
    node.ensure_running()?;
    secret_node.ensure_running()?;
    drop(node);
    drop(secret_node);
    master.shutdown().await;
    secret_master.shutdown().await;
    let (points, dialling) = measured?;

    let mut section = Section::new(
        "overhead",
        &[
            "concurrency",
            "raw calls/s",
            "routed calls/s",
            "routed/raw",
            "raw p50 µs",
            "routed p50 µs",
            "p50 diff µs",
            "raw p99 µs",
            "routed p99 µs",
            "raw CPU µs/call",
            "routed CPU µs/call",
            "routed+secret calls/s",
            "secret/routed",
            "routed+secret p50 µs",
            "routed+secret CPU µs/call",
        ],
    );
    for p in &points {
        let (ratio, diff) = (p.ratio, p.p50_diff_us);
        section.row(vec![
            p.concurrency.to_string(),
            format!("{:.0}", p.raw.rps),
            format!("{:.0}", p.routed.rps),
            format!("{ratio:.3}"),
            format!("{:.1}", p.raw.p50_us),
            format!("{:.1}", p.routed.p50_us),
            format!("{diff:+.1}"),
            format!("{:.1}", p.raw.p99_us),
            format!("{:.1}", p.routed.p99_us),
            format!("{:.2}", p.raw.cpu_us),
            format!("{:.2}", p.routed.cpu_us),
            format!("{:.0}", p.routed_secret.rps),
            format!("{:.3}", p.secret_ratio),
            format!("{:.1}", p.routed_secret.p50_us),
            format!("{:.2}", p.routed_secret.cpu_us),
        ]);
    }
    for p in &points {
        let ratio = p.ratio;
        section.target(
            format!(
                "routed >= 0.9 x raw throughput at concurrency {}",
                p.concurrency
            ),
            format!("{ratio:.3} x"),
            ratio >= 0.9,
        );
    }
    for p in &points {
        let diff = p.p50_diff_us;
        section.target(
            format!(
                "routed p50 at most 10 µs above raw at concurrency {}",
                p.concurrency
            ),
            format!("{diff:+.1} µs"),
            diff <= 10.0,
        );
    }
    for p in &points {
        let (ratio, diff) = (p.secret_ratio, p.secret_cpu_diff_us);
        section.target(
            format!(
                "the secret costs nothing per call: routed+secret >= 0.9 x routed throughput at \
                 concurrency {}",
                p.concurrency
            ),
            format!("{ratio:.3} x (caller CPU per call {diff:+.2} µs)"),
            ratio >= 0.9,
        );
    }
    let handshake_cost = dialling.handshake_p50_us - dialling.plain_p50_us;
    section.target(
        "the handshake adds at most 1 ms to opening a connection (p50)",
        format!(
            "connect p50 {:.0} µs without, {:.0} µs with the handshake ({handshake_cost:+.0} µs); \
             p99 {:.0} / {:.0} µs; {} connections each",
            dialling.plain_p50_us,
            dialling.handshake_p50_us,
            dialling.plain_p99_us,
            dialling.handshake_p99_us,
            dialling.connections
        ),
        handshake_cost <= 1_000.0,
    );
    section.figures = serde_json::json!({
        "setup": "node process pinned to CPU 1; router and raw client on one current-thread \
                  runtime pinned to CPU 0; raw and routed rounds alternate; medians over rounds; \
                  ratio and p50_diff_us: medians over the rounds' (raw, routed) pairs",
        "settings": settings,
        "points": points,
        "connect": dialling,
    });
    Ok(section)
}

/// The points of a section's figures (for the plot).
pub fn points(section: &Section) -> anyhow::Result<Vec<Point>> {
    serde_json::from_value(section.figures["points"].clone())
        .context("the overhead section has no points")
}

/// Measures the connect figures, then the three paths at every concurrency, on the current
/// (pinned) runtime.
async fn measure(
    membership: watch::Receiver<Membership>,
    secret_membership: watch::Receiver<Membership>,
    settings: Settings,
) -> anyhow::Result<(Vec<Point>, connect::ConnectFigures)> {
    let router: CallRouter<CalcClient> =
        CallRouter::new(membership.clone(), RouterConfig::default());
    let secret_router: CallRouter<CalcClient> = CallRouter::new(
        secret_membership.clone(),
        RouterConfig::default().with_secret(Some(SECRET.into())),
    );
    for (router, log) in [
        (&router, "overhead-node"),
        (&secret_router, "overhead-node-secret"),
    ] {
        anyhow::ensure!(
            router.wait_for_nodes(1, Duration::from_secs(15)).await,
            "the node did not register within 15 s (see logs/{log}.log under --out)"
        );
    }
    let addr = membership.borrow().members[0].addr.to_string();
    let secret_addr = secret_membership.borrow().members[0].addr.to_string();
    let dialling =
        connect::measure(&addr, &secret_addr, &Key::new(SECRET), settings.connections).await?;
    println!(
        "  connect: p50 {:.0} µs without the handshake, {:.0} µs with it (p99 {:.0} / {:.0} µs)",
        dialling.plain_p50_us,
        dialling.handshake_p50_us,
        dialling.plain_p99_us,
        dialling.handshake_p99_us
    );
    let stream = stream::connect(&addr, None, defaults::CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("dialling the node at {addr}"))?;
    let raw = CalcClient::from_stream(stream, defaults::MAX_FRAME_LEN);

    let raw_call = Arc::new(move || {
        let client = raw.clone();
        async move {
            let ctx = tarpc::context::current();
            Ok::<_, anyhow::Error>(client.sum(ctx, VALUES.to_vec()).await??)
        }
    });
    let routed = |router: CallRouter<CalcClient>| {
        Arc::new(move || {
            let router = router.clone();
            async move {
                let reply = router
                    .call(|client, ctx| async move { client.sum(ctx, VALUES.to_vec()).await })
                    .await?;
                Ok::<_, anyhow::Error>(reply.value?)
            }
        })
    };
    let routed_call = routed(router);
    let secret_call = routed(secret_router);

    // Warm-up: dials the routers' connections, fills caches; `load` checks every answer.
    let warm = Duration::from_secs(10);
    load(&raw_call, 4, warm, settings.warmup).await?;
    load(&routed_call, 4, warm, settings.warmup).await?;
    load(&secret_call, 4, warm, settings.warmup).await?;

    let mut points = Vec::new();
    for concurrency in CONCURRENCY {
        let mut rounds: [Vec<Round>; 3] = Default::default();
        let (duration, max) = (settings.round, settings.max_calls);
        for round in 0..settings.rounds {
            // Which path goes first rotates from round to round.
            for path in (0..3).map(|i| (i + round) % 3) {
                let measured = match path {
                    0 => load(&raw_call, concurrency, duration, max).await?,
                    1 => load(&routed_call, concurrency, duration, max).await?,
                    _ => load(&secret_call, concurrency, duration, max).await?,
                };
                rounds[path].push(measured);
            }
        }
        let [raw_rounds, routed_rounds, secret_rounds] = &rounds;
        let pairs = raw_rounds.iter().zip(routed_rounds);
        let secret_pairs = routed_rounds.iter().zip(secret_rounds);
        let point = Point {
            concurrency,
            raw: summarize(raw_rounds),
            routed: summarize(routed_rounds),
            ratio: stats::median(pairs.clone().map(|(raw, routed)| routed.rps / raw.rps)),
            p50_diff_us: stats::median(
                pairs.map(|(raw, routed)| micros(routed.p50) - micros(raw.p50)),
            ),
            routed_secret: summarize(secret_rounds),
            secret_ratio: stats::median(secret_pairs.clone().map(|(r, s)| s.rps / r.rps)),
            secret_cpu_diff_us: stats::median(
                secret_pairs.map(|(r, s)| micros(s.cpu_per_call) - micros(r.cpu_per_call)),
            ),
        };
        println!(
            "  concurrency {concurrency:>3}: raw {:>7.0}/s p50 {:>7.1} µs p99 {:>7.1} µs \
             cpu {:>5.2} µs | routed {:>7.0}/s p50 {:>7.1} µs p99 {:>7.1} µs cpu {:>5.2} µs \
             | +secret {:>7.0}/s p50 {:>7.1} µs cpu {:>5.2} µs",
            point.raw.rps,
            point.raw.p50_us,
            point.raw.p99_us,
            point.raw.cpu_us,
            point.routed.rps,
            point.routed.p50_us,
            point.routed.p99_us,
            point.routed.cpu_us,
            point.routed_secret.rps,
            point.routed_secret.p50_us,
            point.routed_secret.cpu_us
        );
        points.push(point);
    }
    Ok((points, dialling))
}
