//! Each node runs its lifecycle (lease, accept loop, shutdown) on a thread of its own,
//! `dist-node-lifecycle`, and that thread ends with the node: after a graceful shutdown, after
//! a kill, and when the runtime the node was started on shuts down with the handle dropped.
//!
//! The only test of this file, so that no other node of the same test process is counted.

use std::time::{Duration, Instant};

use distribution_master::{Master, MasterConfig};
use distribution_node::{NodeConfig, NodeHandle};
use tokio::net::TcpListener;

/// The thread's name as `/proc` shows it (15 bytes at most).
const COMM: &str = "dist-node-lifec";

/// How many threads of this process are lifecycle threads.
fn lifecycle_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == COMM)
        .count()
}

/// Polls (every 10 ms, for at most 5 s) until there are `n` lifecycle threads; returns the last count.
fn wait_for_threads(n: usize) -> usize {
    let started = Instant::now();
    loop {
        let now = lifecycle_threads();
        if now == n || started.elapsed() > Duration::from_secs(5) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn node(master: &Master) -> NodeHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = NodeConfig::new(master.local_addr().to_string());
    config.heartbeat_interval = Duration::from_millis(100);
    let node = distribution_node::start(listener, config, |_ctx, req: u64| async move {
        Ok::<u64, tarpc::ServerError>(req)
    })
    .unwrap();
    assert!(node.wait_registered(Duration::from_secs(10)).await);
    node
}

#[test]
fn the_lifecycle_thread_ends_with_its_node() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let master = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Self-preservation off: the last two nodes go silent within a TTL of each other (one
        // killed, one dropped), which with it on keeps both listed (two silent nodes of two).
        let config =
            MasterConfig::with_interval(Duration::from_millis(100)).with_self_preservation(None);
        Master::start(listener, config).unwrap()
    });
    assert_eq!(lifecycle_threads(), 0);

    runtime.block_on(async {
        let a = node(&master).await;
        let b = node(&master).await;
        assert_eq!(lifecycle_threads(), 2, "one per node");
        a.shutdown().await;
        assert_eq!(lifecycle_threads(), 1, "joined by shutdown");
        b.kill().await;
        assert_eq!(lifecycle_threads(), 0, "joined by kill");
    });

    // A node whose handle is dropped ends with the runtime it was started on.
    let other = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let id = other.block_on(async {
        let node = node(&master).await;
        node.id().to_owned()
    });
    assert_eq!(lifecycle_threads(), 1, "the dropped handle left it running");
    drop(other);
    assert_eq!(wait_for_threads(0), 0, "it ended with its runtime");
    // And it stopped heartbeating: the master evicts it (TTL 300 ms).
    let registry = master.registry().clone();
    let started = Instant::now();
    while registry
        .list(tokio::time::Instant::now())
        .nodes
        .iter()
        .any(|n| n.id == id)
    {
        assert!(started.elapsed() < Duration::from_secs(10), "evicted");
        std::thread::sleep(Duration::from_millis(20));
    }
    runtime.block_on(master.shutdown());
}
