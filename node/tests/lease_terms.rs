//! Real nodes follow the lease terms a master scales with its size (issue #11): with a budget of
//! 5 heartbeats a second and a 100 ms interval, ten nodes are told to beat every 2 s, and do. The
//! master judges each by the terms it gave: none is ever listed late for beating at 2 s.

use std::time::{Duration, Instant};

use distribution_master::{Master, MasterConfig};
use distribution_node::NodeConfig;
use distribution_shared::wire::NodeState;
use tokio::net::TcpListener;

const INTERVAL: Duration = Duration::from_millis(100);
const BUDGET: u32 = 5;
const NODES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_beat_at_the_scaled_interval_and_are_never_late_for_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = MasterConfig::with_interval(INTERVAL).with_heartbeat_budget(Some(BUDGET));
    let master = Master::start(listener, config).unwrap();
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = NodeConfig::new(master.local_addr().to_string());
        config.heartbeat_interval = INTERVAL;
        let node = distribution_node::start(listener, config, |_ctx, req: u64| async move {
            Ok::<u64, tarpc::ServerError>(req)
        })
        .unwrap();
        assert!(node.wait_registered(Duration::from_secs(10)).await);
        nodes.push(node);
    }
    let (interval, ttl) = master.registry().lease_terms();
    assert_eq!(interval, Duration::from_secs(2), "10 nodes at 5 beats/s");
    assert_eq!(ttl, Duration::from_secs(6), "the TTL keeps its 3 intervals");

    // Over 3 scaled intervals, polled every 100 ms: the nodes go 2 s without a beat (they follow
    // the terms), and none is ever late (the master judges them by those terms).
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    while started.elapsed() < interval * 3 {
        let list = master.registry().list(tokio::time::Instant::now());
        assert_eq!(list.nodes.len(), NODES, "a node was evicted");
        for node in &list.nodes {
            assert_eq!(node.state, NodeState::Up, "{} listed late", node.id);
            longest = longest.max(Duration::from_millis(node.last_heartbeat_ms));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The claim is a beat every 2 s: a node that beat every second (or at its own 100 ms)
    // would never be seen 1.5 s silent; 2 s + 1 s for a busy machine above.
    assert!(
        longest >= interval - Duration::from_millis(500)
            && longest <= interval + Duration::from_secs(1),
        "the nodes beat every {interval:?} (longest silence {longest:?})"
    );
    eprintln!("longest silence between beats: {longest:?} at a scaled interval of {interval:?}");
    for node in nodes {
        node.shutdown().await;
    }
    master.shutdown().await;
}
