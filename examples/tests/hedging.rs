//! Gray failures: a node paused with SIGSTOP (alive TCP, no answers) under load, with nodes as
//! real processes and the master and router in the test process.
//!
//! The pause (2 s) is shorter than the lease (heartbeat 1 s, TTL 3 s), so the master never
//! evicts the node: only the router's own mechanisms can keep calls fast. With backup requests
//! every idempotent call completes within 1 s (against a 3 s attempt timeout) and the paused node
//! is ejected after the races it loses; without them the calls that were on it wait out their
//! attempt timeout (or the pause), as before backup requests existed. The gateway's `/sum` is
//! hedged the same way.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use distribution_client::{CallOptions, CallRouter, HedgePolicy, NodeStats, RouterConfig};
use distribution_examples::cluster::DemoMaster;
use distribution_examples::service::CalcClient;
use distribution_master::{Master, MasterConfig};
use support::procs::{Proc, start_node};
use support::wait_until;
use tokio::net::TcpListener;

/// The nodes' heartbeat: the default 1 s, so that the lease (3 s) outlasts the pause.
const INTERVAL: Duration = Duration::from_secs(1);

/// How long the victim stays paused.
const PAUSE: Duration = Duration::from_secs(2);

/// The bound on every call with backup requests on.
const BOUND: Duration = Duration::from_secs(1);

/// The attempt timeout of the calls, as the gateway's `/sum`.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// Three `sum` nodes (5 ms each) named `hedge-0..2` registered with an in-process master.
async fn cluster() -> (Master, Vec<Proc>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(listener, MasterConfig::with_interval(INTERVAL)).unwrap();
    let addr = master.local_addr().to_string();
    let nodes: Vec<Proc> = (0..3)
        .map(|k| {
            let id = format!("hedge-{k}");
            start_node(&addr, &["--sum-delay-ms", "5", "--id", &id])
        })
        .collect();
    let registry = master.registry().clone();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let registry = registry.clone();
            async move { registry.len() == 3 }
        })
        .await,
        "3 nodes register"
    );
    (master, nodes)
}

fn router(master: &Master, hedge: Option<HedgePolicy>) -> CallRouter<CalcClient> {
    master.router_with(
        RouterConfig::default()
            .with_idempotent(true)
            .with_attempt_timeout(Some(ATTEMPT_TIMEOUT))
            .with_hedge(hedge),
    )
}

/// What the callers saw.
#[derive(Debug, Default)]
struct Seen {
    ok: usize,
    failures: Vec<String>,
    slowest: Duration,
    /// Calls slower than [`BOUND`].
    over_bound: usize,
    hedged: usize,
}

/// `workers` loops of idempotent `sum` calls until `stop` (at most 20,000 calls each), timing
/// every call.
async fn drive(router: &CallRouter<CalcClient>, workers: usize, stop: Arc<AtomicBool>) -> Seen {
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (router, stop) = (router.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Seen::default();
                for i in 0..20_000i64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (a, b) = (w as i64, i);
                    let started = Instant::now();
                    let reply = router
                        .call_with(
                            CallOptions::default().idempotent(),
                            move |c, ctx| async move { c.sum(ctx, vec![a, b]).await },
                        )
                        .await;
                    let took = started.elapsed();
                    seen.slowest = seen.slowest.max(took);
                    seen.over_bound += usize::from(took > BOUND);
                    match reply {
                        Ok(reply) if reply.value == Ok(a + b) => {
                            seen.ok += 1;
                            seen.hedged += usize::from(reply.hedged);
                        }
                        Ok(reply) => seen.failures.push(format!("wrong sum {:?}", reply.value)),
                        Err(err) => seen.failures.push(err.to_string()),
                    }
                }
                seen
            })
        })
        .collect();
    let mut total = Seen::default();
    for task in tasks {
        let seen = task.await.unwrap();
        total.ok += seen.ok;
        total.failures.extend(seen.failures);
        total.slowest = total.slowest.max(seen.slowest);
        total.over_bound += seen.over_bound;
        total.hedged += seen.hedged;
    }
    total
}

fn victim_stats(router: &CallRouter<CalcClient>) -> NodeStats {
    router
        .stats()
        .into_iter()
        .find(|s| &*s.node.id == "hedge-0")
        .expect("the router knows hedge-0")
}

/// Runs load on `router` for 1 s, pauses `hedge-0` for [`PAUSE`] (recording whether the router
/// ejected it meanwhile), resumes it, runs 0.5 s more; returns what the callers saw and whether
/// the victim was seen ejected while paused.
async fn pause_under_load(router: &CallRouter<CalcClient>, nodes: &[Proc]) -> (Seen, bool) {
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let load = drive(router, 16, stop.clone());
    let fault = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        nodes[0].signal("STOP");
        let paused = Instant::now();
        let ejected = wait_until(PAUSE - Duration::from_millis(200), || async {
            victim_stats(router).ejected
        })
        .await;
        tokio::time::sleep(PAUSE.saturating_sub(paused.elapsed())).await;
        nodes[0].signal("CONT");
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        ejected
    };
    tokio::join!(load, fault)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_backup_requests_every_call_beats_a_paused_node_and_it_is_ejected() {
    let (master, nodes) = cluster().await;
    let router = router(&master, Some(HedgePolicy::default()));
    let (seen, ejected) = pause_under_load(&router, &nodes).await;
    assert!(
        seen.failures.is_empty(),
        "{} failed: {:?}",
        seen.failures.len(),
        &seen.failures[..seen.failures.len().min(5)]
    );
    assert!(seen.ok > 1000, "load ran: {seen:?}");
    assert_eq!(
        seen.over_bound, 0,
        "every call within {BOUND:?} (slowest {:?})",
        seen.slowest
    );
    let victim = victim_stats(&router);
    let hedges = router.hedge_stats();
    assert!(
        ejected,
        "the paused node is ejected: {victim:?}, {hedges:?}"
    );
    assert!(victim.outrun >= 3, "its calls lost their races: {victim:?}");
    assert!(seen.hedged > 0 && hedges.won > 0, "{hedges:?}");
    assert!(
        hedges.sent as f64 <= 0.05 * hedges.eligible as f64 + 10.0,
        "backups within the budget: {hedges:?}"
    );
    // Back after SIGCONT: it serves again.
    let before = victim_stats(&router).served;
    let stop = Arc::new(AtomicBool::new(false));
    let timer = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        timer.store(true, Ordering::Relaxed);
    });
    let again = drive(&router, 8, stop).await;
    assert!(again.failures.is_empty(), "{:?}", again.failures);
    assert!(
        victim_stats(&router).served > before,
        "the resumed node serves again: {:?}",
        router.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_backup_requests_calls_on_a_paused_node_wait_as_before() {
    let (master, nodes) = cluster().await;
    let router = router(&master, None);
    let (seen, _) = pause_under_load(&router, &nodes).await;
    assert!(
        seen.failures.is_empty(),
        "no call fails (they wait): {:?}",
        &seen.failures[..seen.failures.len().min(5)]
    );
    assert!(
        seen.over_bound > 0,
        "the calls in flight on the paused node wait beyond {BOUND:?}: {seen:?}"
    );
    assert_eq!(seen.hedged, 0);
    assert_eq!(router.hedge_stats().sent, 0);
    assert_eq!(victim_stats(&router).outrun, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_sum_beats_a_paused_node() {
    let registry = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The gateway hedges `/sum` by itself (its calls ask for it), whatever the router's config.
    let demo = DemoMaster::start(
        registry,
        gateway,
        MasterConfig::with_interval(INTERVAL),
        RouterConfig::default(),
    )
    .unwrap();
    let addr = demo.master.local_addr().to_string();
    let nodes: Vec<Proc> = (0..3)
        .map(|_| start_node(&addr, &["--sum-delay-ms", "5"]))
        .collect();
    let registry = demo.master.registry().clone();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let registry = registry.clone();
            async move { registry.len() == 3 }
        })
        .await
    );
    let url = format!("http://{}/sum?values=2,4,6", demo.gateway_addr);
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses: HashMap<u16, usize> = HashMap::new();
                let mut slowest = Duration::ZERO;
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let started = Instant::now();
                    let status = match client.get(&url).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    slowest = slowest.max(started.elapsed());
                    *statuses.entry(status).or_default() += 1;
                }
                (statuses, slowest)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nodes[0].signal("STOP");
    tokio::time::sleep(PAUSE).await;
    nodes[0].signal("CONT");
    stop.store(true, Ordering::Relaxed);
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut slowest = Duration::ZERO;
    for caller in callers {
        let (seen, slow) = caller.await.unwrap();
        slowest = slowest.max(slow);
        for (status, n) in seen {
            *statuses.entry(status).or_default() += n;
        }
    }
    assert_eq!(statuses.len(), 1, "every answer is 200: {statuses:?}");
    assert!(statuses.get(&200).is_some_and(|n| *n > 200), "{statuses:?}");
    assert!(slowest < BOUND, "slowest /sum took {slowest:?}");
}
