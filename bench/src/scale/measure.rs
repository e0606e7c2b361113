//! The measuring half of the scale part: grows the membership size by size and, at each, runs
//! the raw, routed, spread and before paths in turn on the callers' pinned runtime.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use distribution_client::{CallRouter, RouterConfig};
use distribution_examples::service::CalcClient;
use distribution_master::Registry;
use distribution_master::registry::Registration;
use distribution_shared::{ServiceClient, defaults, stream};

use super::{CONCURRENCY, SPREAD_MAX, Settings, SizeFigures};
use crate::rounds::{Round, VALUES, load, micros, summarize};
use crate::stats;

/// The address of the `i`th extra member: 127.1.x.y on the node's port.
fn member_addr(i: usize, port: u16) -> String {
    format!("127.1.{}.{}:{port}", (i >> 8) & 0xff, i & 0xff)
}

/// Grows the membership size by size and measures each, on the current (pinned) runtime.
pub(super) async fn measure(
    registry: Registry,
    port: u16,
    settings: Settings,
) -> anyhow::Result<Vec<SizeFigures>> {
    let stream = stream::connect(
        &format!("127.0.0.1:{port}"),
        None,
        defaults::CONNECT_TIMEOUT,
    )
    .await
    .context("dialling the node")?;
    let raw = CalcClient::from_stream(stream, defaults::MAX_FRAME_LEN);
    let raw_call = Arc::new(move || {
        let client = raw.clone();
        async move {
            let ctx = tarpc::context::current();
            Ok::<_, anyhow::Error>(client.sum(ctx, VALUES.to_vec()).await??)
        }
    });
    load(&raw_call, 4, Duration::from_secs(10), 5_000).await?;

    let mut registered = 1;
    let mut out = Vec::new();
    for &size in &settings.sizes {
        while registered < size {
            let i = registered - 1;
            registry
                .register(Registration {
                    service: <CalcClient as distribution_shared::ServiceClient>::SERVICE.to_owned(),
                    ..Registration::new(
                        format!("sim-{i}"),
                        member_addr(i, port),
                        defaults::NODE_CAPACITY,
                    )
                })
                .map_err(|e| anyhow::anyhow!("registering a member: {e}"))?;
            registered += 1;
        }
        let router: CallRouter<CalcClient> =
            CallRouter::new(registry.subscribe(), RouterConfig::default());
        let before: CallRouter<CalcClient> = CallRouter::new(
            registry.subscribe(),
            RouterConfig::default().with_aperture_above(256),
        );
        for router in [&router, &before] {
            anyhow::ensure!(
                router.wait_for_nodes(size, Duration::from_secs(30)).await,
                "the router did not see {size} members"
            );
        }
        let routed = |router: &CallRouter<CalcClient>| {
            let router = router.clone();
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
        let routed_call = routed(&router);
        let before_call = routed(&before);
        // Warm-up: about ten calls per member, so that the router has dialled (nearly) all.
        let warm = (size as u64 * 10).max(5_000);
        load(&routed_call, CONCURRENCY, Duration::from_secs(60), warm).await?;
        load(&before_call, CONCURRENCY, Duration::from_secs(60), warm).await?;
        let connected = router.stats().iter().filter(|s| s.served > 0).count();
        // The same spread without a router: raw clients on one connection per member, taken in
        // turn. Routed against it isolates what choosing costs from what spreading the calls
        // over many connections costs (fewer requests per write and per wake-up).
        // At most SPREAD_MAX connections: with the router's own, both processes stay within
        // their file limits, and with 16 calls in flight a few hundred connections already
        // spread them as much as more would.
        let mut spread = Vec::with_capacity(size.min(SPREAD_MAX));
        for i in 0..size.min(SPREAD_MAX) {
            let addr = if i == 0 {
                format!("127.0.0.1:{port}")
            } else {
                member_addr(i - 1, port)
            };
            let stream = stream::connect(&addr, None, defaults::CONNECT_TIMEOUT)
                .await
                .with_context(|| format!("dialling {addr}"))?;
            spread.push(CalcClient::from_stream(stream, defaults::MAX_FRAME_LEN));
        }
        let spread = Arc::new(spread);
        let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let spread_call = Arc::new(move || {
            let i = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % spread.len();
            let client = spread[i].clone();
            async move {
                let ctx = tarpc::context::current();
                Ok::<_, anyhow::Error>(client.sum(ctx, VALUES.to_vec()).await??)
            }
        });
        load(&spread_call, CONCURRENCY, Duration::from_secs(60), warm).await?;
        let mut raw_rounds: Vec<Round> = Vec::new();
        let mut routed_rounds: Vec<Round> = Vec::new();
        let mut spread_rounds: Vec<Round> = Vec::new();
        let mut before_rounds: Vec<Round> = Vec::new();
        for round in 0..settings.rounds {
            let (d, max) = (settings.round, settings.max_calls);
            for path in (0..4).map(|p| (p + round) % 4) {
                match path {
                    0 => raw_rounds.push(load(&raw_call, CONCURRENCY, d, max).await?),
                    1 => routed_rounds.push(load(&routed_call, CONCURRENCY, d, max).await?),
                    2 => spread_rounds.push(load(&spread_call, CONCURRENCY, d, max).await?),
                    _ => before_rounds.push(load(&before_call, CONCURRENCY, d, max).await?),
                }
            }
        }
        let before_pairs = raw_rounds.iter().zip(&before_rounds);
        let pairs = raw_rounds.iter().zip(&routed_rounds);
        let spread_pairs = spread_rounds.iter().zip(&routed_rounds);
        let (raw, routed) = (summarize(&raw_rounds), summarize(&routed_rounds));
        let spread_figures = summarize(&spread_rounds);
        let figures = SizeFigures {
            nodes: size,
            raw_rps: raw.rps,
            routed_rps: routed.rps,
            ratio: stats::median(pairs.clone().map(|(a, b)| b.rps / a.rps)),
            raw_cpu_us: raw.cpu_us,
            routed_cpu_us: routed.cpu_us,
            cpu_diff_us: stats::median(
                pairs.map(|(a, b)| micros(b.cpu_per_call) - micros(a.cpu_per_call)),
            ),
            spread_rps: spread_figures.rps,
            spread_cpu_us: spread_figures.cpu_us,
            spread_ratio: stats::median(spread_pairs.clone().map(|(a, b)| b.rps / a.rps)),
            spread_cpu_diff_us: stats::median(
                spread_pairs.map(|(a, b)| micros(b.cpu_per_call) - micros(a.cpu_per_call)),
            ),
            connected,
            before_rps: summarize(&before_rounds).rps,
            before_ratio: stats::median(before_pairs.clone().map(|(a, b)| b.rps / a.rps)),
            before_cpu_diff_us: stats::median(
                before_pairs.map(|(a, b)| micros(b.cpu_per_call) - micros(a.cpu_per_call)),
            ),
        };
        println!(
            "  {size:>6} members ({connected} connected): raw {:>7.0}/s cpu {:>5.2} µs | spread \
             {:>7.0}/s cpu {:>5.2} µs | routed {:>7.0}/s cpu {:>5.2} µs | routed/raw {:.3} \
             routed/spread {:.3}, cpu vs spread {:+.2} µs | before/raw {:.3} cpu {:+.2} µs",
            figures.raw_rps,
            figures.raw_cpu_us,
            figures.spread_rps,
            figures.spread_cpu_us,
            figures.routed_rps,
            figures.routed_cpu_us,
            figures.ratio,
            figures.spread_ratio,
            figures.spread_cpu_diff_us,
            figures.before_ratio,
            figures.before_cpu_diff_us
        );
        out.push(figures);
        drop((routed_call, before_call));
        drop((router, before));
    }
    Ok(out)
}
