//! A node given two masters keeps a lease with each (issue #13, no single master): both list
//! it, it stays registered while one is down and registers again with it when it is back, and a
//! graceful stop leaves both at once (long before their leases would expire).

use std::time::Duration;

use distribution_master::{Master, MasterConfig};
use distribution_node::{NodeConfig, NodeHandle};
use tokio::net::TcpListener;

async fn master(addr: &str, interval: Duration) -> Master {
    let listener = TcpListener::bind(addr).await.unwrap();
    Master::start(listener, MasterConfig::with_interval(interval)).unwrap()
}

async fn node(masters: &[&Master]) -> NodeHandle {
    let list: Vec<String> = masters.iter().map(|m| m.local_addr().to_string()).collect();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = NodeConfig::new(list.join(","));
    config.heartbeat_interval = Duration::from_millis(100);
    distribution_node::start(listener, config, |_ctx, req: u64| async move {
        Ok::<u64, tarpc::ServerError>(req)
    })
    .unwrap()
}

/// Waits (bounded) until `cond` holds, polling every 20 ms.
async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while !cond() {
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_a_lease_with_each_master_and_survives_one_going_away() {
    let interval = Duration::from_millis(100);
    let one = master("127.0.0.1:0", interval).await;
    let two = master("127.0.0.1:0", interval).await;
    let node = node(&[&one, &two]).await;
    assert!(
        node.wait_leases(2, Duration::from_secs(10)).await,
        "both masters hold the lease ({} do)",
        node.leases()
    );
    assert_eq!((one.registry().len(), two.registry().len()), (1, 1));

    let addr = one.local_addr().to_string();
    one.shutdown().await;
    assert!(
        eventually(Duration::from_secs(5), || node.leases() == 1).await,
        "master 1's lease is gone"
    );
    // Three TTLs of master 2 with master 1 down: still listed, still registered.
    tokio::time::sleep(interval * 9).await;
    assert_eq!(two.registry().len(), 1, "master 2 still lists the node");
    assert!(node.wait_registered(Duration::ZERO).await);

    let one = master(&addr, interval).await;
    assert!(
        eventually(Duration::from_secs(5), || one.registry().len() == 1).await,
        "the node registers again with master 1 when it is back"
    );
    assert!(node.wait_leases(2, Duration::from_secs(5)).await);
    node.shutdown().await;
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_leaves_every_master_at_once() {
    // 2 s intervals, 6 s leases: an empty list right after the stop is a deregistration.
    let interval = Duration::from_secs(2);
    let one = master("127.0.0.1:0", interval).await;
    let two = master("127.0.0.1:0", interval).await;
    let node = node(&[&one, &two]).await;
    assert!(node.wait_leases(2, Duration::from_secs(10)).await);
    assert_eq!((one.registry().len(), two.registry().len()), (1, 1));
    node.shutdown().await;
    assert!(
        eventually(Duration::from_millis(500), || one.registry().len()
            + two.registry().len()
            == 0)
        .await,
        "listed after the stop: {} by master 1, {} by master 2",
        one.registry().len(),
        two.registry().len()
    );
    one.shutdown().await;
    two.shutdown().await;
}
