//! The node's call threads under absurd settings: 0 and `usize::MAX` threads, a zero and a
//! maximal blocking threshold, a CPU pool of `usize::MAX`. The node starts, with a bounded
//! number of call threads, and serves calls; nothing panics.

use std::time::Duration;

use distribution_master::{Master, MasterConfig};
use distribution_node::calls::{MAX_THREADS, THREAD_NAME};
use distribution_node::{NodeConfig, handler};
use tarpc::context;
use tokio::net::TcpListener;

#[tarpc::service]
trait Echo {
    async fn echo(value: u64) -> u64;
}

#[derive(Clone)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: context::Context, value: u64) -> u64 {
        value
    }
}

distribution_shared::service_client!(EchoClient);

/// The threads of this process named `dist-node-call` (the kernel keeps 15 bytes of a name).
fn call_threads() -> usize {
    let name = &THREAD_NAME[..THREAD_NAME.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_thread_counts_and_thresholds_give_a_working_node() {
    let master = Master::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MasterConfig::with_interval(Duration::from_millis(200)),
    )
    .unwrap();
    let settings = [
        (0, Duration::ZERO),
        (usize::MAX, Duration::MAX),
        (1, Duration::from_nanos(1)),
    ];
    for (threads, threshold) in settings {
        let before = call_threads();
        let config = NodeConfig::new(master.local_addr().to_string())
            .with_call_threads(threads)
            .with_cpu_threads(threads)
            .with_blocking_threshold(threshold);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node =
            distribution_node::start(listener, config, handler!(EchoServer.serve())).unwrap();
        assert!(node.wait_registered(Duration::from_secs(10)).await);
        let started = call_threads() - before;
        assert!(
            (1..=MAX_THREADS).contains(&started),
            "{threads} call threads asked: {started} started"
        );
        let router = master.router::<EchoClient>();
        assert!(router.wait_for_nodes(1, Duration::from_secs(5)).await);
        for value in [0, 7, u64::MAX] {
            let reply = router
                .call(|c, ctx| async move { c.echo(ctx, value).await })
                .await
                .unwrap();
            assert_eq!(
                reply.value, value,
                "threads {threads}, threshold {threshold:?}"
            );
        }
        // Deregistered when this returns: the next round's router sees only its own node.
        node.shutdown().await;
    }
    master.shutdown().await;
}
