//! Spreading quality (issue #11): how evenly one router spreads its calls, power of two choices
//! (the default above 16 nodes) against exact least-used over every node (the router before
//! issue #11, `RouterConfig::exact_pick_up_to = usize::MAX`), side by side in one run, at 16 and
//! 128 concurrent callers over 3 and 100 nodes.
//!
//! Set-up, in this process: a master (a 10-minute interval: no member expires), one node
//! (`Calc::sum` holding each call 2 ms, so calls overlap) listening on `0.0.0.0`, and `n - 1`
//! more members registered at `127.0.1.x` on its port: every member is its own connection,
//! served by the one node. Closed loop for a fixed time; the figure is the most loaded member's
//! calls against the even share (1.00 is perfectly even).

use std::time::Duration;

use distribution_client::{CallRouter, RouterConfig};
use distribution_examples::cluster::start_node;
use distribution_examples::service::CalcClient;
use distribution_master::{Master, MasterConfig, Registration};
use distribution_node::NodeConfig;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::args::Args;
use crate::report::Section;

/// How long each call holds the node.
const HOLD: Duration = Duration::from_millis(2);

/// One cell of the table.
#[derive(Debug, Serialize)]
struct Cell {
    nodes: usize,
    callers: usize,
    calls: u64,
    /// The most loaded member's calls over the even share, power of two choices (the default).
    p2c_max_over_even: f64,
    /// The same with exact least-used over every member.
    exact_max_over_even: f64,
}

/// Runs this part.
pub async fn run(args: &Args) -> anyhow::Result<Section> {
    let window = if args.quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let master = Master::start(
        listener,
        MasterConfig::with_interval(Duration::from_secs(600)),
    )?;
    let node_listener = TcpListener::bind("0.0.0.0:0").await?;
    let port = node_listener.local_addr()?.port();
    let mut config = NodeConfig::new(master.local_addr().to_string());
    config.advertise = Some(format!("127.0.0.1:{port}"));
    config.capacity = 100_000;
    config.max_connections_per_ip = 100_000;
    let node = start_node(node_listener, config, HOLD)?;
    anyhow::ensure!(
        node.wait_registered(Duration::from_secs(10)).await,
        "node registers"
    );
    let mut cells = Vec::new();
    let mut registered = 1;
    for nodes in [3usize, 100] {
        for i in registered..nodes {
            master.registry().register(Registration {
                service: <CalcClient as distribution_shared::ServiceClient>::SERVICE.to_owned(),
                ..Registration::new(
                    format!("member-{i:03}"),
                    format!("127.0.1.{i}:{port}"),
                    100_000,
                )
            })?;
        }
        registered = nodes;
        for callers in [16usize, 128] {
            let p2c = spread(&master, nodes, callers, RouterConfig::default(), window).await?;
            let exact = RouterConfig::default().with_exact_pick_up_to(usize::MAX);
            let exact = spread(&master, nodes, callers, exact, window).await?;
            let cell = Cell {
                nodes,
                callers,
                calls: p2c.0 + exact.0,
                p2c_max_over_even: p2c.1,
                exact_max_over_even: exact.1,
            };
            eprintln!("spread: {cell:?}");
            cells.push(cell);
        }
    }
    node.shutdown().await;
    master.shutdown().await;
    Ok(section(cells))
}

/// Calls through a fresh router with `config` from `callers` tasks for `window`: the calls made
/// and the most loaded member's count over the even share.
async fn spread(
    master: &Master,
    nodes: usize,
    callers: usize,
    config: RouterConfig,
    window: Duration,
) -> anyhow::Result<(u64, f64)> {
    let router: CallRouter<CalcClient> = master.router_with(config);
    anyhow::ensure!(
        router.wait_for_nodes(nodes, Duration::from_secs(10)).await,
        "the router sees {nodes} members"
    );
    let end = Instant::now() + window;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    let _ = router
                        .call(|c, ctx| async move { c.sum(ctx, vec![1, 2]).await })
                        .await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let served: Vec<u64> = router.stats().iter().map(|s| s.served).collect();
    let total: u64 = served.iter().sum();
    anyhow::ensure!(total > 0, "no call completed");
    let even = total as f64 / nodes as f64;
    let max = served.iter().copied().max().unwrap_or(0) as f64;
    Ok((total, max / even))
}

fn section(cells: Vec<Cell>) -> Section {
    let mut section = Section::new(
        "spread",
        &[
            "nodes",
            "callers",
            "calls",
            "most loaded / even, p2c (default)",
            "most loaded / even, exact least-used",
        ],
    );
    for c in &cells {
        section.row(vec![
            c.nodes.to_string(),
            c.callers.to_string(),
            c.calls.to_string(),
            format!("{:.3}", c.p2c_max_over_even),
            format!("{:.3}", c.exact_max_over_even),
        ]);
    }
    section.figures = serde_json::to_value(&cells).unwrap_or_default();
    section
}
