//! A handler that panics: the caller gets `CallError::Remote` at once (not a timeout), and the
//! node goes on serving the next call on the same connection (`load::Counted` catches the
//! panic and answers it as an error).

use std::time::{Duration, Instant};

use distribution_client::{CallError, RouterConfig};
use distribution_master::{Master, MasterConfig};
use distribution_node::load::HANDLER_PANICKED;
use distribution_node::{NodeConfig, handler};
use tarpc::context;
use tokio::net::TcpListener;

#[tarpc::service]
trait Fragile {
    /// `100 / divisor`; panics on 0.
    async fn divide(divisor: u64) -> u64;
}

#[derive(Clone)]
struct FragileServer;

impl Fragile for FragileServer {
    async fn divide(self, _: context::Context, divisor: u64) -> u64 {
        if divisor == 0 {
            panic!("division by zero in a handler");
        }
        100 / divisor
    }
}

distribution_shared::service_client!(FragileClient);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_remote_at_once_and_the_node_serves_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(
        listener,
        MasterConfig::with_interval(Duration::from_millis(200)),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = NodeConfig::new(master.local_addr().to_string());
    let node = distribution_node::start(listener, config, handler!(FragileServer.serve())).unwrap();
    assert!(node.wait_registered(Duration::from_secs(10)).await);
    // A long deadline, so that "at once" cannot be a deadline passing.
    let router = master.router_with::<FragileClient>(
        RouterConfig::default().with_deadline(Duration::from_secs(30)),
    );
    assert!(router.wait_for_nodes(1, Duration::from_secs(5)).await);

    for round in 0..3 {
        let started = Instant::now();
        let failed = router
            .call(|c, ctx| async move { c.divide(ctx, 0).await })
            .await;
        match failed {
            Err(CallError::Remote {
                node: who, detail, ..
            }) => {
                assert_eq!(&*who.id, node.id());
                assert_eq!(detail, HANDLER_PANICKED);
            }
            other => panic!("round {round}: expected a remote error, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered after {:?}",
            started.elapsed()
        );
        let ok = router
            .call(|c, ctx| async move { c.divide(ctx, 4).await })
            .await
            .expect("the node serves the next call");
        assert_eq!(ok.value, 25);
    }
    assert_eq!(
        node.load().in_flight(),
        0,
        "the panicked calls are not counted as running"
    );
    node.shutdown().await;
    master.shutdown().await;
}
