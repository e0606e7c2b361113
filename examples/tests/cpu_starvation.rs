//! A node process whose every call thread is busy in a CPU loop inside an async handler keeps
//! its lease (issue #10), and refuses new calls at once instead of queueing them behind the
//! loops (issue #26): its heartbeats and connections run on its own lifecycle thread.
//!
//! The node runs with `--call-threads 2` and gets two `Calc::spin` calls (the anti-pattern: a
//! busy loop in the `async fn`, never yielding), on two connections, each spinning for
//! 2 × TTL + 2 s. While they spin, another call is refused with `ALL_THREADS_HELD` (the threads
//! are all held: the situation is real, and a router would send the call elsewhere), yet the
//! master, polled every 100 ms at `GET /v1/nodes`, lists the node throughout, and its event
//! feed (`GET /v1/events`) names no eviction of it. Before the lifecycle thread, the node went
//! unlisted about 3 s into the spin, until the spin ended.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distribution_client::remote::{self, RemoteConfig};
use distribution_examples::service::CalcClient;
use distribution_shared::defaults::{HEARTBEAT_INTERVAL, MAX_FRAME_LEN, TTL_INTERVALS};
use distribution_shared::transport;
use distribution_shared::wire::ALL_THREADS_HELD;
use distribution_shared::wire::{EventKind, MembershipEvent, NodeList};
use futures::StreamExt;
use tarpc::client::RpcError;
use tarpc::context;
use tokio::net::TcpStream;

mod support;

use support::procs::{start_master, start_node};

/// The node's call threads, all of which the spins hold.
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
    let _node = start_node(&registry, &["--id", ID, "--call-threads", &workers]);
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

    // One spin per call thread, each on its own connection. The calls are spawned onto the call
    // threads from the lifecycle thread, so no spin can sit in another's LIFO slot: each takes
    // a thread of its own. (A spare spin, as when the handlers ran on the tokio workers that
    // spawned them, would now be refused once both threads are seen held.)
    let spins: Vec<_> = {
        let mut spins = Vec::new();
        for _ in 0..WORKERS {
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
    // The call threads are all held: a call that takes microseconds is refused at once, never
    // answered. Asked again until the node has seen the hold (its threshold, 100 ms): a probe
    // sent before that waits for a thread and meets its 1 s deadline instead.
    let probe = client(&addr).await;
    let refused = loop {
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + Duration::from_secs(1);
        match probe.sum(ctx, vec![1, 2]).await {
            Err(RpcError::Server(err)) if err.detail == ALL_THREADS_HELD => {
                break spinning.elapsed();
            }
            Ok(answer) => panic!("a call was answered while the spins ran: {answer:?}"),
            Err(_) => {}
        }
        assert!(
            spinning.elapsed() < Duration::from_secs(5),
            "a call is refused within 5 s of the spins' start"
        );
    };
    eprintln!("a call was refused {refused:?} into the spins");

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
