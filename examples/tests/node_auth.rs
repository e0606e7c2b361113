//! The cluster secret protects the nodes, not only the registry: with a secret, a node serves
//! only callers that pass the cluster handshake (`distribution_shared::handshake`).
//!
//! Over real TCP on 127.0.0.1, against a node of the demo's `Calc` service: a raw client that
//! sends a well-formed tarpc frame for `Calc::sum([40, 2])` without the handshake, a caller with
//! a wrong secret, one that replays an honest caller's recorded handshake answer on a new
//! connection, and one that stalls mid-handshake are all refused (the last within the handshake
//! timeout) and counted, while routed calls with the secret succeed. Then the same with real
//! `distribution-demo` processes.

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use distribution_client::{CallError, CallRouter, RouterConfig};
use distribution_examples::cluster::{DemoMaster, start_node};
use distribution_examples::service::{CalcClient, CalcResponse};
use distribution_master::MasterConfig;
use distribution_node::{NodeConfig, NodeHandle};
use distribution_shared::handshake::{self, ANSWER_LEN, HANDSHAKE_TIMEOUT, HELLO_LEN, Key};
use distribution_shared::wire::NodeList;
use distribution_shared::{ServiceClient, defaults};
use tarpc::Response;
use tarpc::tokio_serde::Deserializer as _;
use tarpc::tokio_serde::formats::Bincode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::procs::DEMO;
use support::{INTERVAL, wait_until};

const SECRET: &str = "s3cret-for-tests";

/// How long a refused connection may stay open: the handshake timeout (the worst case: a frame
/// shorter than the handshake answer leaves the node waiting for the rest) and a margin for a
/// busy 2-core machine.
const CLOSE_BOUND: Duration = Duration::from_secs(HANDSHAKE_TIMEOUT.as_secs() + 3);

async fn secret_master() -> DemoMaster {
    let mut config = MasterConfig::with_interval(INTERVAL);
    config.secret = Some(SECRET.into());
    DemoMaster::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        config,
        RouterConfig::default(),
    )
    .unwrap()
}

async fn secret_node(master: &DemoMaster, secret: Option<&str>) -> NodeHandle {
    let mut config = NodeConfig::new(master.master.local_addr().to_string());
    config.heartbeat_interval = INTERVAL;
    config.secret = secret.map(Into::into);
    let node = start_node(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        config,
        Duration::ZERO,
    )
    .unwrap();
    assert!(node.wait_registered(Duration::from_secs(10)).await);
    node
}

/// The bytes a real `CalcClient` sends for `sum([40, 2])`: one length-delimited tarpc frame,
/// recorded on a local listener (so the test sends exactly what a caller would, minus the
/// handshake).
async fn recorded_sum_frame() -> Vec<u8> {
    let recorder = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = recorder.local_addr().unwrap().to_string();
    let stream = distribution_shared::stream::connect(&addr, None, defaults::CONNECT_TIMEOUT)
        .await
        .unwrap();
    let client = CalcClient::from_stream(stream, defaults::MAX_FRAME_LEN);
    let call = tokio::spawn(async move {
        let _ = client.sum(tarpc::context::current(), vec![40, 2]).await;
    });
    let (mut tcp, _) = recorder.accept().await.unwrap();
    let mut len = [0; 4];
    tcp.read_exact(&mut len).await.unwrap();
    let mut frame = len.to_vec();
    frame.resize(4 + u32::from_be_bytes(len) as usize, 0);
    tcp.read_exact(&mut frame[4..]).await.unwrap();
    call.abort();
    frame
}

/// Sends `frame` on a fresh connection to `addr`, as a caller that knows nothing of the
/// handshake, and reads until a tarpc answer to it arrives, the node closes the connection, or
/// [`CLOSE_BOUND`] passes. Returns the sum answered, if any, and whether the node closed.
async fn raw_call(addr: SocketAddr, frame: &[u8]) -> (Option<i64>, bool) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(frame).await;
    let deadline = tokio::time::Instant::now() + CLOSE_BOUND;
    let mut received = BytesMut::new();
    loop {
        if let Some(sum) = answered_sum(&received) {
            return (Some(sum), false);
        }
        match tokio::time::timeout_at(deadline, tcp.read_buf(&mut received)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (answered_sum(&received), true),
            Ok(Ok(_)) => {}
            Err(_) => return (None, false),
        }
    }
}

/// The sum in the first frame of `received`, if it is a complete tarpc answer to a `sum`.
fn answered_sum(received: &[u8]) -> Option<i64> {
    let len = u32::from_be_bytes(received.get(..4)?.try_into().ok()?) as usize;
    let payload = BytesMut::from(received.get(4..4 + len)?);
    let mut codec = Bincode::<Response<CalcResponse>, ()>::default();
    match Pin::new(&mut codec).deserialize(&payload).ok()?.message {
        Ok(CalcResponse::Sum(Ok(sum))) => Some(sum),
        _ => None,
    }
}

/// Waits until the node has refused `n` connections in all.
async fn refused(node: &NodeHandle, n: u64) {
    let load = node.load().clone();
    assert!(
        wait_until(CLOSE_BOUND, || {
            let load = load.clone();
            async move { load.refused_connections() >= n }
        })
        .await,
        "expected {n} refused connections, counted {}",
        node.load().refused_connections()
    );
    assert_eq!(node.load().refused_connections(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_tarpc_frame_is_answered_only_by_a_node_without_a_secret() {
    let master = support::master().await;
    let open = secret_node(&master, None).await;
    let frame = recorded_sum_frame().await;
    // The frame is a real call: a node without a secret answers it.
    assert_eq!(raw_call(open.local_addr(), &frame).await.0, Some(42));

    let master = secret_master().await;
    let node = secret_node(&master, Some(SECRET)).await;
    let started = Instant::now();
    let (answer, closed) = raw_call(node.local_addr(), &frame).await;
    assert_eq!(answer, None, "a caller without the handshake got an answer");
    assert!(closed, "the connection stays open");
    assert!(started.elapsed() <= CLOSE_BOUND);
    refused(&node, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_replays_and_stalls_are_refused_while_routed_calls_succeed() {
    let master = secret_master().await;
    let node = secret_node(&master, Some(SECRET)).await;
    let addr = node.local_addr().to_string();

    // Routed calls with the secret (the master's router inherits it) succeed.
    let router = support::router(&master, 1, RouterConfig::default()).await;
    for i in 0..20 {
        let reply = router
            .call(move |c, ctx| async move { c.sum(ctx, vec![i, 2]).await })
            .await
            .unwrap();
        assert_eq!(reply.value, Ok(i + 2));
    }
    let (status, body) = support::get(
        &format!("http://{}/sum?values=40,2", master.gateway_addr),
        false,
    )
    .await;
    assert_eq!(
        (status, body.trim_end().ends_with(": 42")),
        (200, true),
        "{body}"
    );
    assert_eq!(node.load().refused_connections(), 0);

    // A wrong secret: refused, with an error that says so, directly and through a router.
    let wrong = Key::new("guess");
    let err = handshake::connect(&addr, None, Some(&wrong), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("wrong cluster secret"), "{err}");
    refused(&node, 1).await;
    let intruder: CallRouter<CalcClient> = master.master.router_with(
        RouterConfig::default()
            .with_secret(Some("guess".into()))
            .with_attempts(1),
    );
    assert!(intruder.wait_for_nodes(1, Duration::from_secs(5)).await);
    match intruder
        .call(|c, ctx| async move { c.sum(ctx, vec![40, 2]).await })
        .await
    {
        Err(err @ CallError::Transport { .. }) => {
            let source = std::error::Error::source(&err).map(|s| s.to_string());
            assert!(
                source
                    .as_deref()
                    .is_some_and(|s| s.contains("wrong cluster secret")),
                "{err}: {source:?}"
            )
        }
        other => panic!("a router with a wrong secret got {other:?}"),
    }
    refused(&node, 2).await;

    // A replay: an honest caller's answer, recorded by a relay, sent again on a new connection.
    let answer = record_honest_answer(node.local_addr()).await;
    assert_eq!(node.load().refused_connections(), 2, "the honest caller");
    let mut tcp = TcpStream::connect(node.local_addr()).await.unwrap();
    let mut hello = [0; HELLO_LEN];
    tcp.read_exact(&mut hello).await.unwrap();
    tcp.write_all(&answer).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(CLOSE_BOUND, tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the replaying connection stays open");
    assert_eq!(
        rest,
        [0],
        "the node refuses the replay (one refusal byte, then close)"
    );
    refused(&node, 3).await;

    // A stall mid-handshake: part of an answer, then nothing. Closed within the timeout.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(node.local_addr()).await.unwrap();
    tcp.read_exact(&mut hello).await.unwrap();
    tcp.write_all(&answer[..10]).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(CLOSE_BOUND, tcp.read_to_end(&mut rest)).await;
    let elapsed = started.elapsed();
    assert!(
        read.is_ok(),
        "a stalled handshake kept its connection past {CLOSE_BOUND:?}"
    );
    assert!(
        rest.is_empty(),
        "no answer to a stalled handshake: {rest:?}"
    );
    assert!(elapsed <= CLOSE_BOUND, "closed after {elapsed:?}");
    refused(&node, 4).await;

    // And honest callers still get through.
    let reply = router
        .call(|c, ctx| async move { c.sum(ctx, vec![40, 2]).await })
        .await
        .unwrap();
    assert_eq!(reply.value, Ok(42));
}

/// Relays one honest caller's connection to `node` and returns the handshake answer it sent.
async fn record_honest_answer(node: SocketAddr) -> [u8; ANSWER_LEN] {
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap().to_string();
    let honest = tokio::spawn(async move {
        let key = Key::new(SECRET);
        handshake::connect(&relay_addr, None, Some(&key), Duration::from_secs(5))
            .await
            .map(drop)
    });
    let (mut caller, _) = relay.accept().await.unwrap();
    let mut upstream = TcpStream::connect(node).await.unwrap();
    let mut hello = [0; HELLO_LEN];
    upstream.read_exact(&mut hello).await.unwrap();
    caller.write_all(&hello).await.unwrap();
    let mut answer = [0; ANSWER_LEN];
    caller.read_exact(&mut answer).await.unwrap();
    upstream.write_all(&answer).await.unwrap();
    let mut verdict = [0; 1 + 32];
    upstream.read_exact(&mut verdict).await.unwrap();
    assert_eq!(verdict[0], 1, "the node accepts the honest caller");
    caller.write_all(&verdict).await.unwrap();
    honest
        .await
        .unwrap()
        .expect("the honest caller completes its handshake");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_with_a_secret_refuse_raw_callers_and_serve_the_client_and_gateway() {
    let (_master, registry, gateway) = support::procs::start_master(200, &["--secret", SECRET]);
    let _node = support::procs::start_node(&registry, &["--secret", SECRET]);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let node_addr = loop {
        let list: NodeList = http
            .get(format!("http://{registry}/v1/nodes"))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(node) = list.nodes.first() {
            break node.addr.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the node joins"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let node_addr: SocketAddr = node_addr.parse().unwrap();

    let (answer, closed) = raw_call(node_addr, &recorded_sum_frame().await).await;
    assert_eq!(
        answer, None,
        "the node process answered a caller without the handshake"
    );
    assert!(closed);

    let (status, body) = support::get(&format!("http://{gateway}/sum?values=40,2"), false).await;
    assert_eq!(
        (status, body.trim_end().ends_with(": 42")),
        (200, true),
        "{body}"
    );

    let client = tokio::task::spawn_blocking(move || {
        std::process::Command::new(DEMO)
            .args(["client", "--master", &registry, "--secret", SECRET])
            .args(["sum", "--values", "40,2", "--repeat", "4"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    });
    let output = client.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("result: 42"), "{stdout}{stderr}");
}
