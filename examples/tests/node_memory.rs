//! One connection must not make a node allocate without bound (a node process, a raw client).
//!
//! A client that pipelines valid `Calc::sum` requests as fast as it can write them, and either
//! never reads the answers or reads them, used to make a node's resident memory grow past 1 GB
//! (3.1 GB peak for a million unread requests): every request read became a task holding its
//! answer until the client took it. The node now holds at most `max_calls_per_connection`
//! requests and answers per connection (its capacity, 1024, by default) and stops reading a
//! connection whose answers are not taken.
//!
//! The figure checked is the node process's peak resident memory (`VmHWM`), against the claim in
//! the README: growth under 64 MB for a million requests.

use std::time::{Duration, Instant};

use distribution_examples::service::{CalcClient, CalcRequest, CalcResponse};
use distribution_shared::defaults::MAX_FRAME_LEN;
use distribution_shared::transport;
use futures::{SinkExt, StreamExt};
use tarpc::{ClientMessage, Request, Response, context};
use tokio::net::TcpStream;

mod support;

use support::procs::master_and_node;

/// How much the node's peak resident memory may grow under one hostile connection.
const GROWTH_BOUND_KIB: u64 = 64 * 1024;

/// How many requests one attack sends at most.
const REQUESTS: u64 = 1_000_000;

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn sum_request(id: u64) -> ClientMessage<CalcRequest> {
    let mut ctx = context::current();
    ctx.deadline = std::time::Instant::now() + Duration::from_secs(60);
    ClientMessage::Request(Request {
        context: ctx,
        id,
        message: CalcRequest::Sum {
            values: vec![40, 2],
        },
    })
}

/// A fresh, well-behaved caller still gets its answer from the node.
async fn assert_serving(addr: &str) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = CalcClient::new(
        tarpc::client::Config::default(),
        transport::framed(tcp, MAX_FRAME_LEN),
    )
    .spawn();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.sum(context::current(), vec![40, 2]),
    )
    .await
    .expect("the node answers another caller within 10 s");
    assert_eq!(answer.unwrap(), Ok(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_and_never_reads_cannot_grow_the_node() {
    let (_master, node, addr) = master_and_node(&[]).await;
    let pid = node.0.id();
    let before = status_kib(pid, "VmRSS:");
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let mut sink = transport::framed::<_, Response<CalcResponse>, ClientMessage<CalcRequest>>(
        tcp,
        MAX_FRAME_LEN,
    );
    let started = Instant::now();
    let mut sent = 0;
    // Write until a million requests are out, or the node stops reading for 2 s (it should,
    // once the connection's limit is reached and the unread answers fill the socket).
    while sent < REQUESTS && started.elapsed() < Duration::from_secs(20) {
        match tokio::time::timeout(Duration::from_secs(2), sink.feed(sum_request(sent))).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(err)) => panic!("the node closed the connection: {err}"),
            Err(_) => break,
        }
    }
    let peak = status_kib(pid, "VmHWM:");
    eprintln!(
        "sent {sent} requests in {:?}; node RSS {before} KiB before, peak {peak} KiB",
        started.elapsed()
    );
    assert!(
        peak.saturating_sub(before) < GROWTH_BOUND_KIB,
        "the node's peak RSS grew by {} KiB (bound {GROWTH_BOUND_KIB} KiB) after {sent} unread requests",
        peak.saturating_sub(before)
    );
    assert_serving(&addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_a_million_requests_and_reads_stays_bounded() {
    let (_master, node, addr) = master_and_node(&[]).await;
    let pid = node.0.id();
    let before = status_kib(pid, "VmRSS:");
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let (mut sink, mut answers) = transport::framed::<
        _,
        Response<CalcResponse>,
        ClientMessage<CalcRequest>,
    >(tcp, MAX_FRAME_LEN)
    .split();
    let reader = tokio::spawn(async move {
        let mut read = 0u64;
        while let Some(Ok(_)) = answers.next().await {
            read += 1;
            if read == REQUESTS {
                break;
            }
        }
        read
    });
    let started = Instant::now();
    let mut sent = 0;
    while sent < REQUESTS && started.elapsed() < Duration::from_secs(60) {
        sink.feed(sum_request(sent)).await.unwrap();
        sent += 1;
    }
    sink.flush().await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("every request is answered (served or refused) within 30 s")
        .unwrap();
    let peak = status_kib(pid, "VmHWM:");
    eprintln!(
        "sent {sent}, read {read} answers in {:?}; node RSS {before} KiB before, peak {peak} KiB",
        started.elapsed()
    );
    assert_eq!(read, sent, "every request got an answer");
    assert!(
        peak.saturating_sub(before) < GROWTH_BOUND_KIB,
        "the node's peak RSS grew by {} KiB (bound {GROWTH_BOUND_KIB} KiB) over {sent} requests",
        peak.saturating_sub(before)
    );
    assert_serving(&addr).await;
}
