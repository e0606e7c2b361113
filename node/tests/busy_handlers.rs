//! A node whose handlers' runtime is entirely busy keeps its lease: the heartbeats run on the
//! node's own lifecycle thread, not on the runtime the node was started on.
//!
//! The node is started on a current-thread runtime, whose one thread is then held for five TTLs
//! without yielding, as a handler running a CPU loop in its `async fn` would hold it. The
//! master (on a runtime of its own) must record no eviction of the node meanwhile.

use std::time::{Duration, Instant};

use distribution_master::{Master, MasterConfig};
use distribution_node::NodeConfig;
use distribution_shared::wire::EventKind;
use tokio::net::TcpListener;

const INTERVAL: Duration = Duration::from_millis(100);

#[test]
fn heartbeats_go_on_while_the_handlers_runtime_is_blocked() {
    let masters = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let master = masters.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Master::start(listener, MasterConfig::with_interval(INTERVAL)).unwrap()
    });
    let ttl = INTERVAL * distribution_shared::defaults::TTL_INTERVALS;
    let handlers = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = master.local_addr().to_string();
    let node = handlers.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = NodeConfig::new(addr);
        config.heartbeat_interval = INTERVAL;
        let node = distribution_node::start(listener, config, |_ctx, req: u64| async move {
            Ok::<u64, tarpc::ServerError>(req)
        })
        .unwrap();
        assert!(node.wait_registered(Duration::from_secs(10)).await);
        node
    });
    let registry = master.registry().clone();
    let joined = registry.index();

    // The handlers' runtime's only thread, busy without a pause for 5 TTLs.
    handlers.block_on(async {
        let busy = Instant::now();
        while busy.elapsed() < ttl * 5 {
            std::hint::black_box(busy.elapsed());
        }
    });

    let evictions: Vec<String> = registry
        .events_since(joined)
        .events
        .iter()
        .filter(|e| e.node == node.id() && e.kind == EventKind::Eviction)
        .map(|e| format!("{:?}: {}", e.kind, e.reason))
        .collect();
    assert!(
        evictions.is_empty(),
        "the node lost its lease while its handlers were busy: {evictions:?}"
    );
    assert!(
        registry
            .list(tokio::time::Instant::now())
            .nodes
            .iter()
            .any(|n| n.id == node.id()),
        "the node is listed"
    );
    handlers.block_on(node.shutdown());
    masters.block_on(master.shutdown());
}
