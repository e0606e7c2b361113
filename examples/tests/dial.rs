//! Dialling a node that never answers the connection attempt (a blackholed address) costs the
//! cluster one connect timeout in all: the calls queued behind that dial share its outcome and
//! move to another node at once, instead of each dialling again with a full timeout in turn.
//!
//! The blackhole is real TCP on 127.0.0.1: a listener whose accept queue is full and never
//! accepted, so the kernel drops further SYNs and `connect` hangs until its timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use distribution_client::{CallOptions, RouterConfig};
use distribution_examples::service::CalcClient;
use distribution_master::MasterConfig;
use tokio::net::{TcpSocket, TcpStream};

mod support;

/// How long the router gives one dial.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A listener that takes no more connections: its backlog is full and nothing accepts. Returns
/// its address and what must stay alive for it to stay full.
async fn blackhole() -> (SocketAddr, Vec<TcpStream>, tokio::net::TcpListener) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    let probe = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await;
    assert!(
        probe.is_err(),
        "the blackhole must swallow connection attempts (got {probe:?} after {} connections)",
        held.len()
    );
    (addr, held, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_on_a_blackholed_node_share_one_dial_and_fail_over() {
    // A long lease, so that the fake node stays listed for the whole test.
    let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = distribution_examples::cluster::DemoMaster::start(
        registry,
        gateway,
        MasterConfig::with_interval(Duration::from_secs(5)),
        RouterConfig::default(),
    )
    .unwrap();
    let registry = master.master.local_addr().to_string();
    let _node = support::node_for(&registry, Duration::from_millis(50)).await;
    let (hole, _held, _listener) = blackhole().await;
    let answer = reqwest::Client::new()
        .post(format!("http://{registry}/v1/nodes"))
        .json(
            &serde_json::json!({"id": "blackhole", "port": hole.port(), "addr": hole.to_string(), "service": "calc"}),
        )
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");

    let mut config = RouterConfig::default()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_deadline(Duration::from_secs(10));
    config.seed = Some(7);
    let router = master.master.router_with::<CalcClient>(config);
    assert!(router.wait_for_nodes(2, Duration::from_secs(5)).await);

    // 40 calls at once: least-used routing sends about half of them to the blackhole, where
    // they queue behind the first dial.
    let started = Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let router = router.clone();
            tokio::spawn(async move {
                let reply = router
                    .call_with(
                        CallOptions::default().idempotent(),
                        move |c, ctx| async move { c.sum(ctx, vec![i, 1]).await },
                    )
                    .await;
                (reply, started.elapsed())
            })
        })
        .collect();
    let mut moved = 0;
    let mut slowest = Duration::ZERO;
    for (i, call) in calls.into_iter().enumerate() {
        let (reply, took) = call.await.unwrap();
        let reply = reply.unwrap_or_else(|err| panic!("call {i} failed after {took:?}: {err}"));
        assert_eq!(reply.value, Ok(i as i64 + 1));
        if reply.attempts > 1 {
            moved += 1;
        }
        slowest = slowest.max(took);
    }
    eprintln!("{moved} calls moved off the blackhole; slowest call {slowest:?}");
    // At least 4 queued (about 20 in practice): dialling in turn would take 2 s per queued
    // call, 8 s or more for the last one.
    assert!(
        moved >= 4,
        "calls were queued on the blackholed node ({moved})"
    );
    // One connect timeout for all of them, plus the call on the live node and a margin of 2.5 s
    // for a busy 2-core machine: still far below two dials in turn.
    assert!(
        slowest <= CONNECT_TIMEOUT + Duration::from_millis(2_500),
        "the slowest call took {slowest:?}"
    );
}
