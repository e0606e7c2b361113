//! The router as tarpc's `Stub`: a generated client of a service that is not the demo's,
//! `InventoryClient::from(router.stub())`, routed over three real nodes on 127.0.0.1; and what a
//! handle of a submitted call says when its runtime is gone.

use std::collections::HashMap;
use std::error::Error as _;
use std::time::{Duration, Instant};

use distribution_client::{CallError, CallOptions, RouterConfig};
use distribution_master::{Master, MasterConfig};
use distribution_node::{NodeConfig, NodeHandle, handler};
use tarpc::client::RpcError;
use tarpc::context;
use tokio::net::TcpListener;

/// A service of this test's own, with a request that is neither `Clone` nor small.
#[tarpc::service]
trait Inventory {
    /// How many of `item` the node holds, after holding the call `hold_ms`; and the node's name.
    async fn count(item: String, hold_ms: u64) -> (u32, String);
}

#[derive(Clone)]
struct Shelf {
    name: String,
}

impl Inventory for Shelf {
    async fn count(self, _: context::Context, item: String, hold_ms: u64) -> (u32, String) {
        tokio::time::sleep(Duration::from_millis(hold_ms.min(10_000))).await;
        (item.len() as u32, self.name)
    }
}

distribution_shared::service_client!(InventoryClient);

async fn cluster(nodes: usize) -> (Master, Vec<NodeHandle>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(
        listener,
        MasterConfig::with_interval(Duration::from_millis(200)),
    )
    .unwrap();
    let mut handles = Vec::new();
    for i in 0..nodes {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = NodeConfig::new(master.local_addr().to_string());
        let shelf = Shelf {
            name: format!("shelf-{i}"),
        };
        let node = distribution_node::start(listener, config, handler!(shelf.serve())).unwrap();
        assert!(node.wait_registered(Duration::from_secs(10)).await);
        handles.push(node);
    }
    (master, handles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_client_over_the_stub_goes_to_the_least_used_node() {
    let (master, _nodes) = cluster(3).await;
    let router = master.router::<InventoryClient>();
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);
    let inventory = InventoryClient::from(router.stub());

    // 30 calls at once, each held 300 ms: least-used puts about a third on each node (random
    // choice would leave one with 5 or fewer about 1 time in 20).
    let calls = (0..30).map(|_| {
        let inventory = inventory.clone();
        async move {
            inventory
                .count(context::current(), "bolts".into(), 300)
                .await
        }
    });
    let answers = futures::future::join_all(calls).await;
    let mut per_node: HashMap<String, u32> = HashMap::new();
    for answer in answers {
        let (count, node) = answer.expect("every routed call succeeds");
        assert_eq!(count, 5);
        *per_node.entry(node).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "every node served: {per_node:?}");
    for (node, n) in &per_node {
        assert!(
            (8..=12).contains(n),
            "{node} served {n} of 30 concurrent calls: {per_node:?}"
        );
    }
    // The router counted them as its own calls.
    let served: u64 = router.stats().iter().map(|s| s.served).sum();
    assert_eq!(served, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_stub_fails_over_when_a_node_dies() {
    let (master, mut nodes) = cluster(3).await;
    let router = master.router_with::<InventoryClient>(
        RouterConfig::default().with_deadline(Duration::from_secs(10)),
    );
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);
    let inventory = InventoryClient::from(router.stub_with(CallOptions::default().idempotent()));
    // Every node holds a connection from the router first.
    for _ in 0..6 {
        inventory
            .count(context::current(), "x".into(), 0)
            .await
            .unwrap();
    }
    let victim = nodes.remove(0);
    let victim_name = "shelf-0";
    // Calls in flight on the victim when it dies, and calls after: none fails.
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let inventory = inventory.clone();
            tokio::spawn(async move {
                inventory
                    .count(context::current(), "nuts".into(), 400)
                    .await
            })
        })
        .collect();
    // Until the router has calls in flight on the victim (each call holds its node 400 ms).
    let started = Instant::now();
    let on_victim = loop {
        let stats = router.stats();
        let on_victim = stats
            .iter()
            .find(|s| &*s.node.id == victim.id())
            .map_or(0, |s| s.in_flight);
        if on_victim > 0 {
            break on_victim;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no call reached the victim: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    victim.kill().await;
    eprintln!("{on_victim} calls in flight on the victim when it was killed");
    for call in calls {
        let (count, node) = call.await.unwrap().expect("failed over");
        assert_eq!(count, 4);
        assert_ne!(node, victim_name, "a dead node cannot answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stub_reports_the_routers_verdicts_as_tarpc_errors() {
    let (master, _nodes) = cluster(1).await;
    let router = master.router::<InventoryClient>();
    assert!(router.wait_for_nodes(1, Duration::from_secs(5)).await);
    let inventory = InventoryClient::from(router.stub());

    // The caller's context bounds the call: 200 ms for a call the node holds 5 s.
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + Duration::from_millis(200);
    let started = Instant::now();
    let late = inventory.count(ctx, "x".into(), 5_000).await;
    assert!(
        matches!(late, Err(RpcError::DeadlineExceeded)),
        "deadline: {late:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the context's deadline, not the router's 10 s: {:?}",
        started.elapsed()
    );

    // No node at all: tarpc's `Send` error, holding the router's `CallError`.
    let (_tx, rx) = tokio::sync::watch::channel(distribution_client::Membership::default());
    let empty =
        distribution_client::CallRouter::<InventoryClient>::new(rx, RouterConfig::default());
    let nobody = InventoryClient::from(empty.stub())
        .count(context::current(), "x".into(), 0)
        .await;
    let Err(err @ RpcError::Send(_)) = nobody else {
        panic!("no node: {nobody:?}");
    };
    let cause = err.source().expect("the router's error as the cause");
    assert!(
        matches!(
            cause.downcast_ref::<CallError>(),
            Some(CallError::NoNodeAvailable)
        ),
        "{cause:?}"
    );
}

/// A call submitted on a runtime that then shuts down ends as `Cancelled` for whoever awaits its
/// handle elsewhere: not as `NoNodeAvailable`, which would send an operator looking for nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_runtime_shut_down_is_cancelled() {
    let (master, _nodes) = cluster(1).await;
    let router = master.router::<InventoryClient>();
    assert!(router.wait_for_nodes(1, Duration::from_secs(5)).await);
    // The other runtime lives on a thread of its own (a runtime cannot block inside this one).
    let submitting = router.clone();
    let handle = std::thread::spawn(move || {
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut handle = None;
        other.block_on(async {
            handle = Some(
                submitting
                    .submit(|c, ctx| async move { c.count(ctx, "nuts".into(), 10_000).await }),
            );
            tokio::time::sleep(Duration::from_millis(100)).await; // the call is on the node
        });
        handle.unwrap()
        // `other` shuts down here, with the call still running on it.
    })
    .join()
    .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), handle).await;
    assert!(
        matches!(outcome, Ok(Err(CallError::Cancelled))),
        "{outcome:?}"
    );
}
