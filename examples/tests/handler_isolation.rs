//! A handler that holds its thread must not stall the calls beside it (issue #26).
//!
//! `Calc::spin` is the naive handler a new user writes: a CPU loop in its `async fn` that never
//! yields. While one spins for [`SPIN`], cheap calls sent through a router (which keeps one
//! connection per node, so they share the spin's connection) must be answered at once, whatever
//! the node process's tokio `worker_threads` and `cpu_threads`: the node reads and writes its
//! connections on a thread where no handler runs, and runs the handlers on call threads of its
//! own (`distribution_node::calls`).
//!
//! Before that, a cheap call sent 50 ms into a 3 s spin was answered after about 2.95 s: the
//! connection's task and the spin shared a tokio worker, the spin sat in that worker's LIFO
//! slot, which no other worker may steal, and no worker was left waiting on the I/O driver to
//! notice the next request.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use distribution_client::{CallError, CallOptions, CallRouter, RouterConfig, remote};
use distribution_examples::service::CalcClient;
use distribution_shared::defaults::MAX_FRAME_LEN;
use distribution_shared::transport;
use support::get;
use support::procs::{Proc, node_list, start_master, start_node, start_node_with_metrics_and_log};

/// How long the naive handler spins.
const SPIN: Duration = Duration::from_secs(3);

/// Cheap calls sent during the spin.
const CHEAP_CALLS: usize = 20;

/// The bound on each cheap call. They take a millisecond or two on an idle machine (the claim
/// is "under 100 ms"); a busy 2-core machine (one core taken by the spin) gets a margin, and
/// the bound stays ten times shorter than the stall it guards against.
const BOUND: Duration = Duration::from_millis(250);

/// Waits (bounded) until the master lists the node with a call in flight: the spin has started.
async fn wait_spinning(registry: &str) {
    let started = Instant::now();
    loop {
        let running = node_list(registry)
            .await
            .and_then(|list| list.nodes.first().map(|n| n.in_flight));
        if running.is_some_and(|n| n >= 1) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the node reports the spin in flight within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node process started with `flags`; a spin and then [`CHEAP_CALLS`] cheap calls through
/// one router; returns each cheap call's latency after checking that all were answered, and
/// correctly, before the spin ended.
async fn cheap_calls_during_a_spin(flags: &[&str]) -> Vec<Duration> {
    let (_master, registry, _) = start_master(200, &[]);
    let _node = start_node(&registry, flags);
    let router: CallRouter<CalcClient> = remote::connect(&registry, RouterConfig::default())
        .await
        .unwrap();
    assert!(router.wait_for_nodes(1, Duration::from_secs(20)).await);
    // The router's connection is open before the spin, so the cheap calls share it.
    let warm = router
        .call(|client, ctx| async move { client.sum(ctx, vec![1]).await })
        .await
        .unwrap();
    assert_eq!(warm.value, Ok(1));

    let millis = SPIN.as_millis() as u64;
    let spin = router.submit(move |client, mut ctx| async move {
        ctx.deadline = std::time::Instant::now() + SPIN + Duration::from_secs(30);
        client.spin(ctx, millis).await
    });
    let spin = tokio::spawn(async move {
        let reply = spin.await;
        (reply, Instant::now())
    });
    wait_spinning(&registry).await;

    let mut latencies = Vec::new();
    for i in 0..CHEAP_CALLS as i64 {
        let sent = Instant::now();
        let reply = router
            .call(|client, ctx| async move { client.sum(ctx, vec![i, 2]).await })
            .await
            .unwrap();
        latencies.push(sent.elapsed());
        assert_eq!(reply.value, Ok(i + 2));
    }
    let last_answer = Instant::now();
    let (spun, spin_ended) = spin.await.unwrap();
    assert!(spun.unwrap().value >= millis, "the spin ran its whole time");
    assert!(
        last_answer < spin_ended,
        "the cheap calls were all answered while the handler spun (latencies {latencies:?})"
    );
    for latency in &latencies {
        assert!(
            *latency < BOUND,
            "a cheap call beside a spinning handler took {latency:?} (all: {latencies:?})"
        );
    }
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_calls_beside_a_spinning_handler_are_answered_with_one_worker_thread() {
    cheap_calls_during_a_spin(&["--worker-threads", "1", "--cpu-threads", "1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_calls_beside_a_spinning_handler_are_answered_with_four_worker_threads() {
    cheap_calls_during_a_spin(&["--worker-threads", "4", "--cpu-threads", "4"]).await;
}

/// A node process with `--metrics-listen` and `flags`: the process, its metrics address, and
/// its log lines that warn about a held thread.
fn node_with_metrics(registry: &str, flags: &[&str]) -> (Proc, String, mpsc::Receiver<String>) {
    start_node_with_metrics_and_log(registry, flags, |line| line.contains("held its thread"))
}

/// The value of the series of `name` whose labels contain every one of `labels` in the node's
/// `/metrics`, if there is one.
async fn metric(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let (status, body) = get(&format!("http://{metrics}/metrics"), false).await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_holds_its_thread_is_warned_about_and_counted_and_a_cheap_one_is_not() {
    let (_master, registry, _) = start_master(200, &[]);
    let (_node, metrics, log) = node_with_metrics(&registry, &[]);
    let router: CallRouter<CalcClient> = remote::connect(&registry, RouterConfig::default())
        .await
        .unwrap();
    assert!(router.wait_for_nodes(1, Duration::from_secs(20)).await);
    for i in 0..20 {
        let reply = router
            .call(|client, ctx| async move { client.sum(ctx, vec![i, 1]).await })
            .await
            .unwrap();
        assert_eq!(reply.value, Ok(i + 1));
    }
    // Two spins of 300 ms, three times the threshold: both counted, one warning (per minute).
    for _ in 0..2 {
        let reply = router
            .call(|client, ctx| async move { client.spin(ctx, 300).await })
            .await
            .unwrap();
        assert!(reply.value >= 300);
    }
    let warning = log
        .recv_timeout(Duration::from_secs(5))
        .expect("the node warns about the spinning handler");
    assert!(warning.contains("Calc.spin"), "{warning}");
    assert!(warning.contains("held_ms="), "{warning}");
    // The second spin's report was made before its answer left the node: a second warning
    // would be in the pipe by now (given a moment for the reading thread).
    let more: Vec<String> = log
        .try_iter()
        .chain(log.recv_timeout(Duration::from_millis(300)))
        .collect();
    assert!(
        more.is_empty(),
        "one warning per method and minute: {more:?}"
    );

    let spins = metric(
        &metrics,
        "distribution_node_handler_blocked_total",
        &["method=\"Calc.spin\"", "service=\"calc\""],
    )
    .await;
    assert_eq!(spins, Some(2.0), "both spins are counted");
    let sums = metric(
        &metrics,
        "distribution_node_handler_blocked_total",
        &["method=\"Calc.sum\""],
    )
    .await;
    assert_eq!(sums, None, "a handler that yields is never counted");
    let held = metric(&metrics, "distribution_node_call_threads_held", &[]).await;
    assert_eq!(held, Some(0.0), "no thread is held once the spins are over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_call_thread_held_calls_go_elsewhere_and_the_node_stays_listed() {
    let (_master, registry, _) = start_master(200, &[]);
    let (_held, metrics, _log) =
        node_with_metrics(&registry, &["--id", "held", "--call-threads", "1"]);
    let _free = start_node(&registry, &["--id", "free"]);
    let router: CallRouter<CalcClient> = remote::connect(&registry, RouterConfig::default())
        .await
        .unwrap();
    assert!(router.wait_for_nodes(2, Duration::from_secs(20)).await);
    let list = node_list(&registry).await.unwrap();
    let held_addr = list
        .nodes
        .iter()
        .find(|n| n.id == "held")
        .unwrap()
        .addr
        .clone();

    // The spin comes from another caller: this router sees the node as idle and keeps choosing
    // it, so every call it sends there must be refused and sent on, not queued.
    let tcp = tokio::net::TcpStream::connect(&held_addr).await.unwrap();
    let spinner = CalcClient::new(
        tarpc::client::Config::default(),
        transport::framed(tcp, MAX_FRAME_LEN),
    )
    .spawn();
    let millis = SPIN.as_millis() as u64;
    let spin = tokio::spawn(async move {
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + SPIN + Duration::from_secs(30);
        spinner.spin(ctx, millis).await
    });
    // Until the node has seen its only call thread held (its threshold, 100 ms).
    let started = Instant::now();
    while metric(&metrics, "distribution_node_call_threads_held", &[]).await != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the hold is seen within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let calling = Instant::now();
    let mut calls = 0;
    let mut unlisted = 0;
    while calling.elapsed() < Duration::from_secs(1) && calls < 200 {
        let sent = Instant::now();
        let reply = router
            .call(|client, ctx| async move { client.sum(ctx, vec![calls, 1]).await })
            .await
            .unwrap();
        assert_eq!(reply.value, Ok(calls + 1));
        assert_eq!(
            &*reply.node.id, "free",
            "call {calls} was answered by the held node"
        );
        assert!(
            sent.elapsed() < BOUND,
            "call {calls} took {:?}",
            sent.elapsed()
        );
        calls += 1;
        let listed = node_list(&registry).await.unwrap();
        if !listed.nodes.iter().any(|n| n.id == "held") {
            unlisted += 1;
        }
    }
    let refused = metric(&metrics, "distribution_node_refused_total", &[]).await;
    assert!(
        refused.is_some_and(|n| n >= 1.0),
        "the router tried the held node and was refused ({refused:?} refusals in {calls} calls)"
    );
    // Listed for the whole spin: polled until it ends.
    while !spin.is_finished() {
        let listed = node_list(&registry).await.unwrap();
        if !listed.nodes.iter().any(|n| n.id == "held") {
            unlisted += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unlisted, 0, "the held node stays listed through its spin");
    assert!(
        spin.await.unwrap().unwrap() >= millis,
        "the spin ran its whole time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_of_a_handler_that_never_yields_gets_its_deadline_on_time() {
    let (_master, registry, _) = start_master(200, &[]);
    let _node = start_node(&registry, &[]);
    let router: CallRouter<CalcClient> = remote::connect(&registry, RouterConfig::default())
        .await
        .unwrap();
    assert!(router.wait_for_nodes(1, Duration::from_secs(20)).await);
    let deadline = Duration::from_millis(500);
    let sent = Instant::now();
    let answer = router
        .call_with(
            CallOptions::default().with_deadline(deadline),
            |client, ctx| async move { client.spin(ctx, SPIN.as_millis() as u64).await },
        )
        .await;
    let waited = sent.elapsed();
    assert!(
        matches!(answer, Err(CallError::DeadlineExceeded { .. })),
        "{answer:?}"
    );
    // The deadline plus a busy machine's margin, far less than the spin.
    assert!(
        waited < deadline + Duration::from_secs(1),
        "waited {waited:?}"
    );
}
