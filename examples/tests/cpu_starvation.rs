//! A node process whose every tokio worker is busy in a CPU loop inside an async handler keeps
//! its lease (issue #10): its heartbeats run on its own lifecycle thread, not on the workers.
//!
//! The node runs with `--worker-threads 2` and gets three `Calc::spin` calls (the anti-pattern: a
//! busy loop in the `async fn`, never yielding), on three connections, each spinning for
//! 2 × TTL + 2 s (one more than the workers: see below). While they spin, another call gets no
//! answer (the workers are all held: the
//! situation is real), yet the master, polled every 100 ms at `GET /v1/nodes`, lists the node
//! throughout, and its event feed (`GET /v1/events`) names no eviction of it. Before the
//! lifecycle thread, the node went unlisted about 3 s into the spin, until the spin ended.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distribution_client::remote::{self, RemoteConfig};
use distribution_examples::service::CalcClient;
use distribution_shared::defaults::{HEARTBEAT_INTERVAL, MAX_FRAME_LEN, TTL_INTERVALS};
use distribution_shared::transport;
use distribution_shared::wire::{EventKind, MembershipEvent, NodeList};
use futures::StreamExt;
use tarpc::context;
use tokio::net::TcpStream;

mod support;

use support::procs::{start_master, start_node};

/// The node's worker threads, all of which the spins hold.
const WORKERS: usize = 2;

/// The node's id.
const ID: &str = "starved";

async fn client(addr: &str) -> CalcClient {
    let tcp = TcpStream::connect(addr).await.unwrap();
    CalcClient::new(
        tarpc::client::Config::default(),
        transport::framed(tcp, MAX_FRAME_LEN),
    )
    .spawn()
}

/// The master's node list, or `None` when it does not answer within 2 s.
async fn nodes(http: &reqwest::Client, registry: &str) -> Option<NodeList> {
    let response = http
        .get(format!("http://{registry}/v1/nodes"))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_workers_all_spin_in_async_handlers_is_not_evicted() {
    // The default lease terms: a heartbeat a second, evicted after 3 s without one.
    let interval = HEARTBEAT_INTERVAL;
    let ttl = interval * TTL_INTERVALS;
    let spin = ttl * 2 + Duration::from_secs(2);
    let (_master, registry, _gateway) = start_master(interval.as_millis() as u64, &[]);
    let workers = WORKERS.to_string();
    let _node = start_node(&registry, &["--id", ID, "--worker-threads", &workers]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    let started = Instant::now();
    let addr = loop {
        if let Some(list) = nodes(&http, &registry).await
            && let Some(node) = list.nodes.iter().find(|n| n.id == ID)
        {
            break node.addr.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "node registers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let events: Arc<Mutex<Vec<MembershipEvent>>> = Arc::default();
    let mut feed = remote::events_after(&registry, &RemoteConfig::default(), Some(0)).unwrap();
    let seen = events.clone();
    let feed = tokio::spawn(async move {
        while let Some(event) = feed.next().await {
            seen.lock().unwrap().push(event);
        }
    });

    // One spin more than there are workers, each on its own connection. With exactly one per
    // worker, the run occasionally left a worker free: tokio puts a task spawned by a worker in
    // that worker's LIFO slot, which no other worker may steal, so a second spin could wait
    // behind the first on the same worker. One spare spin keeps every worker busy whatever the
    // placement (only one task per worker can sit in a LIFO slot).
    let spins: Vec<_> = {
        let mut spins = Vec::new();
        for _ in 0..WORKERS + 1 {
            let client = client(&addr).await;
            spins.push(tokio::spawn(async move {
                let mut ctx = context::current();
                ctx.deadline = Instant::now() + spin + Duration::from_secs(30);
                let answer = client.spin(ctx, spin.as_millis() as u64).await;
                (answer, client)
            }));
        }
        spins
    };
    let spinning = Instant::now();

    // The spins have started on every worker: the node counts a call from the moment its
    // handler runs, and a spin never yields, so `WORKERS` calls counted means every worker is
    // held (its heartbeats, from the lifecycle thread, carry the count).
    loop {
        let running = nodes(&http, &registry)
            .await
            .and_then(|list| list.nodes.iter().find(|n| n.id == ID).map(|n| n.in_flight));
        if running.is_some_and(|n| n as usize >= WORKERS) {
            break;
        }
        assert!(
            spinning.elapsed() < Duration::from_secs(10),
            "the spins never all ran (the node reports {running:?} calls in flight)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The workers are all held: a call that takes microseconds gets no answer in 1 s.
    let probe = client(&addr).await;
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(1);
    let starved = probe.sum(ctx, vec![1, 2]).await;
    assert!(
        starved.is_err(),
        "a call was answered while the spins ran: not every worker is busy ({starved:?})"
    );

    // The master lists the node throughout the spins: polled every 100 ms until they end.
    let mut polls = 0;
    let mut missing: Vec<Duration> = Vec::new();
    let mut oldest_heartbeat_ms = 0;
    while !spins.iter().all(|s| s.is_finished()) {
        assert!(
            spinning.elapsed() < spin + Duration::from_secs(20),
            "the spins end"
        );
        polls += 1;
        match nodes(&http, &registry).await {
            Some(list) => match list.nodes.iter().find(|n| n.id == ID) {
                Some(node) => oldest_heartbeat_ms = oldest_heartbeat_ms.max(node.last_heartbeat_ms),
                None => missing.push(spinning.elapsed()),
            },
            None => panic!("the master does not answer"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spun = spinning.elapsed();
    eprintln!(
        "spun {spun:?}; {polls} polls; oldest heartbeat seen {oldest_heartbeat_ms} ms; \
         unlisted in {} polls{}",
        missing.len(),
        match (missing.first(), missing.last()) {
            (Some(first), Some(last)) => format!(" (from {first:?} to {last:?} into the spin)"),
            _ => String::new(),
        }
    );
    assert!(
        missing.is_empty(),
        "the node went unlisted while its workers spun: {} of {polls} polls, from {:?} to {:?} \
         into the spin",
        missing.len(),
        missing.first(),
        missing.last()
    );
    assert!(polls >= 50, "polled throughout the spin ({polls} polls)");

    for spin_call in spins {
        let (answer, _client) = spin_call.await.unwrap();
        let ms = answer.expect("the spin answers");
        assert!(ms >= spin.as_millis() as u64, "spun {ms} ms");
    }
    // The workers are free again: the node answers at once.
    let sum = probe.sum(context::current(), vec![1, 2]).await;
    assert_eq!(sum.unwrap(), Ok(3));

    // No eviction of the node in the master's feed (given a moment to arrive).
    tokio::time::sleep(Duration::from_millis(500)).await;
    feed.abort();
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::Join && e.node == ID),
        "the feed works: {events:?}"
    );
    let evictions: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Eviction && e.node == ID)
        .collect();
    assert!(evictions.is_empty(), "the node was evicted: {evictions:?}");
}
