//! Fault injection under load, with nodes as real processes and the master and router in the
//! test process: every call must end in a correct result (idempotent calls with retries on), and
//! scatter/gather results must be complete and not duplicated.
//!
//! Cases: a node SIGKILLed mid-call; a node SIGSTOPped (hung with its TCP connection open) and
//! SIGCONTed; a slow node; a node whose calls fail; the master SIGKILLed and restarted (master
//! as a process too, the caller a remote router); churn under 200 concurrent callers.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use distribution_client::{CallRouter, RouterConfig, ScatterOptions};
use distribution_examples::service::{CalcClient, palindromes_answer};
use distribution_master::{Master, MasterConfig};
use support::load::{drive, remote_router, served, stop_after, wait_listed};
use support::procs::{Proc, start_master_on, start_node};
use support::wait_until;
use tokio::net::TcpListener;

const INTERVAL: Duration = Duration::from_millis(200);

/// The master in the test process, and a router for idempotent calls that gives up on a silent
/// node after 500 ms.
async fn cluster() -> (Master, String, CallRouter<CalcClient>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(listener, MasterConfig::with_interval(INTERVAL)).unwrap();
    let addr = master.local_addr().to_string();
    let router = master.router_with(
        RouterConfig::default()
            .with_idempotent(true)
            .with_attempt_timeout(Some(Duration::from_millis(500)))
            .with_attempts(4)
            .with_eject_base(Duration::from_millis(300)),
    );
    (master, addr, router)
}

fn node(registry: &str, delay_ms: u64) -> Proc {
    start_node(registry, &["--sum-delay-ms", &delay_ms.to_string()])
}

async fn wait_nodes(master: &Master, n: usize, timeout: Duration) -> bool {
    let registry = master.registry().clone();
    wait_until(timeout, || {
        let registry = registry.clone();
        async move { registry.len() == n }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sigkilled_mid_call_loses_nothing_and_scatter_stays_complete() {
    let (master, addr, router) = cluster().await;
    let mut nodes: Vec<Proc> = (0..3).map(|_| node(&addr, 50)).collect();
    assert!(wait_nodes(&master, 3, Duration::from_secs(20)).await);
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);

    let stop = Arc::new(AtomicBool::new(false));
    stop_after(&stop, Duration::from_secs(2));
    let load = drive(&router, 40, 10_000, stop.clone());
    let scatter = router.scatter(
        palindrome_chunks(),
        ScatterOptions::default().with_concurrency(Some(6)),
        |c, ctx, (a, b)| async move { palindromes_answer(c.palindromes(ctx, a, b).await) },
    );
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes.remove(0); // dropped: SIGKILL
    };
    let (outcome, scattered, ()) = tokio::join!(load, scatter, kill);
    outcome.assert_no_failure();
    assert!(outcome.ok > 100, "the load ran: {outcome:?}");
    let counts: u64 = scattered.unwrap().iter().map(|r| r.value).sum();
    assert_eq!(counts, 6536, "scatter complete, nothing counted twice");
    assert!(
        wait_nodes(&master, 2, Duration::from_secs(10)).await,
        "the dead node is evicted"
    );
}

/// `0..=10_000_000` in 40 chunks (6536 binary palindromes in all).
fn palindrome_chunks() -> Vec<(u64, u64)> {
    distribution_examples::palindrome::chunks_sized(10_000_000, 5, 250_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sigstopped_is_routed_around_evicted_and_welcomed_back() {
    let (master, addr, router) = cluster().await;
    let nodes: Vec<Proc> = (0..3).map(|_| node(&addr, 20)).collect();
    assert!(wait_nodes(&master, 3, Duration::from_secs(20)).await);
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);

    let stop = Arc::new(AtomicBool::new(false));
    stop_after(&stop, Duration::from_secs(3));
    let load = drive(&router, 30, 10_000, stop.clone());
    let hang = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes[0].signal("STOP");
        let stopped_at = Instant::now();
        let evicted = wait_nodes(&master, 2, Duration::from_secs(10)).await;
        (evicted, stopped_at.elapsed())
    };
    let (outcome, (evicted, after)) = tokio::join!(load, hang);
    outcome.assert_no_failure();
    assert!(evicted, "the hung node is evicted");
    assert!(
        after < INTERVAL * 3 + Duration::from_secs(2),
        "evicted after {after:?}"
    );

    nodes[0].signal("CONT");
    assert!(
        wait_nodes(&master, 3, Duration::from_secs(10)).await,
        "welcomed back after SIGCONT"
    );
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let again = drive(&router, 12, 30, stop).await;
    again.assert_no_failure();
    assert_eq!(
        again.per_node.len(),
        3,
        "the returned node serves again: {:?}",
        again.per_node
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_gets_less_work() {
    let (master, addr, router) = cluster().await;
    let _fast: Vec<Proc> = (0..2).map(|_| node(&addr, 10)).collect();
    assert!(wait_nodes(&master, 2, Duration::from_secs(20)).await);
    let fast_ids: Vec<String> = master
        .registry()
        .list(tokio::time::Instant::now())
        .nodes
        .into_iter()
        .map(|n| n.id)
        .collect();
    let _slow = node(&addr, 400);
    assert!(wait_nodes(&master, 3, Duration::from_secs(20)).await);
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);

    let stop = Arc::new(AtomicBool::new(false));
    stop_after(&stop, Duration::from_secs(2));
    let outcome = drive(&router, 12, 10_000, stop).await;
    outcome.assert_no_failure();
    let fast: usize = fast_ids
        .iter()
        .map(|id| outcome.per_node.get(id).copied().unwrap_or(0))
        .sum();
    let slow = outcome.ok - fast;
    assert!(
        slow > 0,
        "the slow node still serves: {:?}",
        outcome.per_node
    );
    assert!(
        slow * 6 < fast,
        "the slow node got {slow} calls, the fast ones {fast} together"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_every_call_costs_no_idempotent_call() {
    let (master, addr, router) = cluster().await;
    let _good: Vec<Proc> = (0..2).map(|_| node(&addr, 5)).collect();
    let _faulty = start_node(&addr, &["--faulty"]);
    assert!(wait_nodes(&master, 3, Duration::from_secs(20)).await);
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);

    let stop = Arc::new(AtomicBool::new(false));
    stop_after(&stop, Duration::from_secs(2));
    let outcome = drive(&router, 16, 10_000, stop).await;
    outcome.assert_no_failure();
    assert_eq!(
        outcome.per_node.len(),
        2,
        "only the good nodes produced results"
    );

    // Without the idempotent flag, the fault reaches the caller as a typed remote error naming
    // the node, and after 5 in a row (`eject_after_errors`) the node is ejected: a fresh router
    // (no history) with a long ejection sees exactly 5 remote errors however many calls follow.
    let strict_router = master.router_with::<CalcClient>(
        RouterConfig::default()
            .with_idempotent(false)
            .with_attempts(1)
            .with_eject_after_errors(5)
            .with_eject_base(Duration::from_secs(60))
            .with_seed(Some(11)),
    );
    assert!(
        strict_router
            .wait_for_nodes(3, Duration::from_secs(5))
            .await
    );
    let mut remote_errors = Vec::new();
    let mut served_by = std::collections::HashSet::new();
    for i in 0..150 {
        match strict_router
            .call(move |c, ctx| async move { c.sum(ctx, vec![i]).await })
            .await
        {
            Ok(reply) => {
                assert_eq!(reply.value, Ok(i));
                served_by.insert(reply.node.id.to_string());
            }
            Err(distribution_client::CallError::Remote { node, detail, .. }) => {
                assert!(detail.contains("injected fault"), "{detail}");
                remote_errors.push(node.id.to_string());
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(
        remote_errors.len(),
        5,
        "ejected after 5 failures in a row: {remote_errors:?}"
    );
    let faulty = &remote_errors[0];
    assert!(
        remote_errors.iter().all(|id| id == faulty),
        "every error names the faulty node: {remote_errors:?}"
    );
    assert!(
        !served_by.contains(faulty),
        "the node named by the errors is the one that never answers: {served_by:?}"
    );
    let stats = strict_router.stats();
    let faulty_stats = stats.iter().find(|s| *s.node.id == **faulty).unwrap();
    assert!(faulty_stats.ejected, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_on_an_evicted_node_with_open_connections_move_at_once() {
    // A node that stops answering without closing its connections (SIGSTOP here; a network
    // cut in the docker e2e): once the master evicts it, the idempotent calls waiting on it are
    // moved to another node at once, without an attempt timeout and long before their deadline.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(listener, MasterConfig::with_interval(INTERVAL)).unwrap();
    let addr = master.local_addr().to_string();
    let router = master.router_with::<CalcClient>(
        RouterConfig::default()
            .with_idempotent(true)
            .with_attempt_timeout(None)
            .with_attempts(1)
            .with_deadline(Duration::from_secs(20)),
    );
    let nodes: Vec<Proc> = (0..2).map(|_| node(&addr, 300)).collect();
    assert!(wait_nodes(&master, 2, Duration::from_secs(20)).await);
    assert!(router.wait_for_nodes(2, Duration::from_secs(5)).await);
    let started = Instant::now();
    let calls: Vec<_> = (0..10i64)
        .map(|i| router.submit(move |c, ctx| async move { c.sum(ctx, vec![i, 1]).await }))
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            router.stats().iter().all(|s| s.in_flight > 0)
        })
        .await,
        "calls run on both nodes"
    );
    nodes[0].signal("STOP");
    let stopped = Instant::now();
    for (i, call) in calls.into_iter().enumerate() {
        let reply = call.await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(reply.value, Ok(i as i64 + 1));
    }
    let took = stopped.elapsed();
    eprintln!(
        "every call done {took:?} after the pause ({:?} in all)",
        started.elapsed()
    );
    // Eviction after the TTL (3 intervals), the moved calls' 300 ms on the other node, and 2 s
    // for a busy machine; waiting for the deadline would take 20 s.
    assert!(
        took <= INTERVAL * 3 + Duration::from_millis(300) + Duration::from_secs(2),
        "the calls waited {took:?}"
    );
    nodes[0].signal("CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_for_sixty_seconds_under_200_callers_loses_nothing() {
    let (master, addr, router) = cluster().await;
    let mut nodes: Vec<Proc> = (0..3).map(|_| node(&addr, 5)).collect();
    assert!(wait_nodes(&master, 3, Duration::from_secs(20)).await);
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);

    let run_for = Duration::from_secs(60);
    let stop = Arc::new(AtomicBool::new(false));
    stop_after(&stop, run_for);
    let load = drive(&router, 200, 100_000, stop.clone());
    let churn = async {
        let started = Instant::now();
        let mut joined = 0;
        let mut left = 0;
        let mut step = 0u32;
        while started.elapsed() < run_for - Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(700)).await;
            step += 1;
            if nodes.len() < 4 {
                nodes.push(node(&addr, 5));
                joined += 1;
            }
            if nodes.len() > 2 && step % 2 == 0 {
                let leaving = nodes.remove(0);
                if step % 4 == 0 {
                    leaving.signal("TERM");
                    leaving_wait(leaving);
                } else {
                    drop(leaving); // SIGKILL
                }
                left += 1;
            }
        }
        (joined, left)
    };
    let (outcome, (joined, left)) = tokio::join!(load, churn);
    outcome.assert_no_failure();
    assert!(
        joined >= 20 && left >= 20,
        "churn happened: {joined} joined, {left} left"
    );
    assert!(outcome.ok > 1000, "the load ran: {} calls", outcome.ok);
    eprintln!(
        "churn: {} calls ok, {joined} joins, {left} leaves, {} nodes served",
        outcome.ok,
        outcome.per_node.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_sigkilled_and_restarted_under_load_loses_no_call_and_rebuilds_membership() {
    // The master is a process on a fixed port, so that it can come back where nodes and callers
    // look for it; the caller is a remote router in this process, fed by the master's watch.
    // Its first start takes a port the OS picks (no port probed and released for another test
    // to take); the restart comes back on that port.
    let interval_ms = INTERVAL.as_millis() as u64;
    let (master, registry, _) = start_master_on("127.0.0.1:0", interval_ms, &[]);
    let nodes: Vec<Proc> = (0..3).map(|_| node(&registry, 20)).collect();
    let router = remote_router(&registry, INTERVAL, 3).await;

    let stop = Arc::new(AtomicBool::new(false));
    stop_after(&stop, Duration::from_secs(4));
    let load = drive(&router, 30, 100_000, stop.clone());
    let outage = async {
        let mut master = master;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before_outage = served(&router);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pace_before = served(&router) - before_outage;
        master.signal("KILL");
        // Waited for off the runtime: the callers' tasks keep both workers.
        let exited = tokio::task::spawn_blocking(move || master.wait_exit(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(exited, Some(false));
        // Calls go on from the caller's last view for a while with no master at all.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let served_during_outage = served(&router);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let outage_calls = served(&router) - served_during_outage;
        let restart = registry.clone();
        let (master, _, _) =
            tokio::task::spawn_blocking(move || start_master_on(&restart, interval_ms, &[]))
                .await
                .unwrap();
        let restarted = Instant::now();
        let listed = wait_listed(&registry, 3, Duration::from_secs(10)).await;
        (
            master,
            pace_before,
            outage_calls,
            listed.then(|| restarted.elapsed()),
        )
    };
    let (outcome, (_master, pace_before, outage_calls, rebuilt_after)) = tokio::join!(load, outage);
    outcome.assert_no_failure();
    // With no master at all, calls go on at the pace they had (half of it at least, for the
    // noise of a busy 2-core machine), not at a trickle.
    assert!(
        outage_calls * 2 >= pace_before,
        "calls served in 0.5 s: {pace_before} before the outage, {outage_calls} during it"
    );
    let rebuilt_after = rebuilt_after.expect("the restarted master lists the 3 nodes again");
    // Nodes register again at their next heartbeat (one interval) after the master is back
    // (its start-up included); 2 s on top for a busy machine.
    assert!(
        rebuilt_after <= INTERVAL + Duration::from_secs(2),
        "the restarted master listed the 3 nodes after {rebuilt_after:?}"
    );
    assert!(
        outcome.per_node.len() == 3,
        "all 3 nodes served: {:?}",
        outcome.per_node
    );

    // The caller follows the new master: a node that joins now is seen and gets work.
    let mut nodes = nodes;
    nodes.push(node(&registry, 20));
    assert!(
        wait_listed(&registry, 4, Duration::from_secs(10)).await,
        "a new node registers with the restarted master"
    );
    assert!(
        router.wait_for_nodes(4, Duration::from_secs(10)).await,
        "the caller's view converges on the restarted master's"
    );
    let again = drive(&router, 16, 20, Arc::new(AtomicBool::new(false))).await;
    again.assert_no_failure();
    assert_eq!(again.per_node.len(), 4, "{:?}", again.per_node);
    eprintln!(
        "master restart: {} calls ok, {pace_before} served in 0.5 s before the outage, \
         {outage_calls} in 0.5 s of outage, membership rebuilt {rebuilt_after:?} after the restart",
        outcome.ok
    );
}

/// Lets a SIGTERMed node finish its graceful exit in the background, then reaps it.
fn leaving_wait(mut node: Proc) {
    std::thread::spawn(move || {
        let _ = node.wait_exit(Duration::from_secs(20));
    });
}
