//! Helpers for the demo's integration tests: an in-process master with its gateway and nodes on
//! 127.0.0.1 port 0, and bounded waits.
#![allow(dead_code)]

pub mod load;
pub mod pki;
pub mod procs;

use std::future::Future;
use std::time::Duration;

use distribution_client::{CallRouter, RouterConfig};
use distribution_examples::cluster::{DemoMaster, start_node};
use distribution_examples::service::CalcClient;
use distribution_master::MasterConfig;
use distribution_node::{NodeConfig, NodeHandle};
use tokio::net::TcpListener;

/// The heartbeat interval the tests run with: short, so that evictions are quick.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Starts a master (registry + gateway) on port 0 with [`INTERVAL`] heartbeats.
pub async fn master() -> DemoMaster {
    master_on("127.0.0.1:0").await
}

/// Starts a master (registry + gateway) on port 0 whose nodes heartbeat every `interval`: a long
/// one when a test must tell the router's own reaction from the master's eviction.
pub async fn master_with_interval(interval: Duration) -> DemoMaster {
    let registry = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    DemoMaster::start(
        registry,
        gateway,
        MasterConfig::with_interval(interval),
        RouterConfig::default(),
    )
    .unwrap()
}

/// Starts a master whose registry listens on `addr`.
pub async fn master_on(addr: &str) -> DemoMaster {
    let registry = TcpListener::bind(addr).await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    DemoMaster::start(
        registry,
        gateway,
        MasterConfig::with_interval(INTERVAL),
        RouterConfig::default(),
    )
    .unwrap()
}

/// Starts a node registered with `master`, whose `sum` takes `delay`; waits until registered.
pub async fn node(master: &DemoMaster, delay: Duration) -> NodeHandle {
    node_for(&master.master.local_addr().to_string(), delay).await
}

/// Starts a node registering with the master at `addr`; waits until registered.
pub async fn node_for(addr: &str, delay: Duration) -> NodeHandle {
    node_with(addr, delay, distribution_shared::defaults::NODE_CAPACITY).await
}

/// [`node_for`] with a capacity (calls at once).
pub async fn node_with(addr: &str, delay: Duration, capacity: u32) -> NodeHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = NodeConfig::new(addr);
    config.heartbeat_interval = INTERVAL;
    config.capacity = capacity;
    let node = start_node(listener, config, delay).unwrap();
    assert!(
        node.wait_registered(Duration::from_secs(10)).await,
        "node registers"
    );
    node
}

/// A router over `master`'s nodes that already knows `n` of them.
pub async fn router(master: &DemoMaster, n: usize, config: RouterConfig) -> CallRouter<CalcClient> {
    let router = master.master.router_with(config);
    assert!(
        router.wait_for_nodes(n, Duration::from_secs(10)).await,
        "router sees {n} nodes"
    );
    router
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET url`, returning the status and the body.
pub async fn get(url: &str, json: bool) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if json {
        request = request.header("accept", "application/json");
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
