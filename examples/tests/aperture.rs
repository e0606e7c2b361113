//! The aperture against a real node: in a cluster of 1,000 members a router's short calls keep
//! to a few connections, and its long calls still get a node each.
//!
//! The members are real dialable addresses: one node listens on every address of its port
//! (`0.0.0.0`) and 1,000 members are registered at `127.1.x.y` on that port, each under its own
//! id, so that every member the router picks is a connection of its own to the same process.
//! The routers follow only those members (tag `member`): the node's own entry reports the load
//! of all 1,000 (one process), which the router would rightly count as other callers' calls.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use distribution_client::{CallRouter, RouterConfig};
use distribution_examples::cluster::{DemoMaster, start_node};
use distribution_examples::service::CalcClient;
use distribution_master::registry::Registration;
use distribution_node::{NodeConfig, NodeHandle};
use distribution_shared::{ServiceClient, defaults};
use tokio::net::TcpListener;

/// Members registered besides the real node.
const MEMBERS: usize = 1_000;

/// A master with a ten-minute lease (the registered members never beat), one node on every
/// address of its port whose `sum` takes `delay`, and [`MEMBERS`] members pointing at it.
async fn cluster(delay: Duration) -> (DemoMaster, NodeHandle) {
    cluster_of(MEMBERS, delay).await
}

/// [`cluster`] with `members` members.
async fn cluster_of(members: usize, delay: Duration) -> (DemoMaster, NodeHandle) {
    let master = support::master_with_interval(Duration::from_secs(600)).await;
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = NodeConfig::new(master.master.local_addr().to_string());
    config.advertise = Some(format!("127.0.0.1:{port}"));
    // Room for a connection from the router to every member (all from 127.0.0.1), so that a
    // router without a window would reach them all instead of being refused by the node.
    config.max_connections = 2 * members;
    config.max_connections_per_ip = 2 * members;
    let node = start_node(listener, config, delay).unwrap();
    assert!(node.wait_registered(Duration::from_secs(10)).await);
    for i in 0..members {
        let addr = format!("127.1.{}.{}:{port}", i >> 8, i & 0xff);
        master
            .master
            .registry()
            .register(Registration {
                service: CalcClient::SERVICE.to_owned(),
                tags: vec!["member".to_owned()],
                ..Registration::new(format!("member-{i}"), addr, defaults::NODE_CAPACITY)
            })
            .unwrap();
    }
    (master, node)
}

async fn router(master: &DemoMaster, config: RouterConfig) -> CallRouter<CalcClient> {
    router_of(master, MEMBERS, config).await
}

async fn router_of(
    master: &DemoMaster,
    members: usize,
    config: RouterConfig,
) -> CallRouter<CalcClient> {
    support::router(master, members, config.with_tags(vec!["member".to_owned()])).await
}

/// The members that served at least one of the router's calls.
fn used(router: &CallRouter<CalcClient>) -> HashSet<String> {
    router
        .stats()
        .into_iter()
        .filter(|s| s.served > 0)
        .map(|s| s.node.id.to_string())
        .collect()
}

/// `n` calls submitted at once, each answered right within 30 s: how many each node served.
async fn calls_at_once(router: &CallRouter<CalcClient>, n: i64) -> HashMap<String, usize> {
    let handles: Vec<_> = (0..n)
        .map(|i| router.submit(move |c, ctx| async move { c.sum(ctx, vec![i, 1]).await }))
        .collect();
    let mut per_node = HashMap::new();
    for (i, handle) in handles.into_iter().enumerate() {
        let reply = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("each call within 30 s")
            .unwrap();
        assert_eq!(reply.value, Ok(i as i64 + 1));
        *per_node.entry(reply.node.id.to_string()).or_default() += 1;
    }
    per_node
}

// One thread: picks made at the same instant on two threads read each other's counts mid-way
// (the router shares no lock between calls) and may look outside a window they find full.
#[tokio::test(flavor = "current_thread")]
async fn eight_callers_of_short_calls_use_at_most_nine_of_a_thousand_nodes() {
    let (master, _node) = cluster(Duration::ZERO).await;
    let router = router(&master, RouterConfig::default()).await;
    // 8 callers, 250 calls each. With at most 8 calls in flight, the window never holds more
    // than 9 nodes (8 running + the one picked, at least one call per node), always the first
    // ones of the router's ring: whatever the mean call time, every call lands among them.
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                for i in 0..250i64 {
                    let reply = router
                        .call(|c, ctx| async move { c.sum(ctx, vec![i, 1]).await })
                        .await
                        .unwrap();
                    assert_eq!(reply.value, Ok(i + 1));
                }
            })
        })
        .collect();
    for caller in callers {
        tokio::time::timeout(Duration::from_secs(60), caller)
            .await
            .expect("2,000 calls within 60 s")
            .unwrap();
    }
    let used = used(&router);
    assert!(
        used.len() <= 9,
        "{} of {MEMBERS} nodes served 2,000 calls with 8 in flight: {:?}",
        used.len(),
        router
            .stats()
            .into_iter()
            .filter(|s| s.served > 0)
            .map(|s| (s.served, s.ejected))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_long_calls_at_once_get_a_node_each() {
    let (master, _node) = cluster(Duration::from_millis(500)).await;
    let router = router(&master, RouterConfig::default()).await;
    let nodes = calls_at_once(&router, 200).await;
    // Long calls: one per node, as without an aperture. Two picks made at the same instant on
    // the two worker threads may take the same free node (the router shares no lock between
    // calls), hence a margin of a few.
    assert!(
        nodes.len() >= 195,
        "200 long calls went to {} nodes only",
        nodes.len()
    );
}

/// At 100 members (a window since issue #32; before, every node was called), short calls keep
/// to a few connections at a time, and long calls in flight still reach every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_hundred_members_two_hundred_long_calls_in_flight_reach_every_node() {
    let (master, _node) = cluster_of(100, Duration::from_millis(500)).await;
    let router = router_of(&master, 100, RouterConfig::default()).await;
    let per_node = calls_at_once(&router, 200).await;
    // 200 calls of 500 ms in flight at once over 100 nodes: two each, whatever the window.
    assert_eq!(
        per_node.len(),
        100,
        "200 long calls went to {} of 100 nodes",
        per_node.len()
    );
    let most = per_node.values().max().copied().unwrap_or(0);
    assert!(
        most <= 4,
        "a node got {most} of 200 long calls: {per_node:?}"
    );
}
