//! Maintenance under load, with real nodes on 127.0.0.1: a node put in maintenance (by itself,
//! `NodeHandle::set_maintenance`, or by an operator, `PUT /v1/nodes/{id}/maintenance`) stays
//! registered, finishes its calls, and gets no call from an in-process or a remote router once
//! the change is seen; no call fails; out of maintenance it is called again.

mod support;

use std::sync::Arc;
use std::time::Duration;

use distribution_client::{CallRouter, RouterConfig, remote};
use distribution_examples::service::CalcClient;
use std::sync::Mutex;
use tokio::time::Instant;

/// The claim: routers stop calling a node within 100 ms of its maintenance; asserted with the
/// margin a busy 2-core machine needs.
const SEEN_WITHIN: Duration = Duration::from_millis(600);

/// One answered call: when it was issued, and which node answered.
type Log = Arc<Mutex<Vec<(Instant, String)>>>;

/// `loops` callers on `router`, each calling `sum` back to back until `until`; every call must
/// succeed. Returns the log of answered calls.
fn load(
    router: &CallRouter<CalcClient>,
    loops: usize,
    until: Instant,
    log: &Log,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..loops)
        .map(|_| {
            let (router, log) = (router.clone(), log.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let issued = Instant::now();
                    let reply = router
                        .call(|client, ctx| async move { client.sum(ctx, vec![1, 2]).await })
                        .await
                        .expect("no call fails");
                    assert_eq!(reply.value, Ok(3));
                    log.lock()
                        .unwrap()
                        .push((issued, reply.node.id.to_string()));
                }
            })
        })
        .collect()
}

/// Calls issued by `node` at or after `from`, and before `to`.
fn answered(log: &Log, node: &str, from: Instant, to: Instant) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(at, id)| id == node && *at >= from && *at < to)
        .count()
}

/// The last issue time of a call `node` answered after `from`, as a delay from `from`.
fn last_after(log: &Log, node: &str, from: Instant) -> Option<Duration> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(at, id)| id == node && *at >= from)
        .map(|(at, _)| *at - from)
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_in_maintenance_gets_no_new_call_and_no_call_fails() {
    let master = support::master().await;
    let registry = master.master.local_addr().to_string();
    let delay = Duration::from_millis(20);
    let a = support::node(&master, delay).await;
    let b = support::node(&master, delay).await;
    let c = support::node(&master, delay).await;
    let local = support::router(&master, 3, RouterConfig::default()).await;
    let far: CallRouter<CalcClient> = remote::connect(&registry, RouterConfig::default())
        .await
        .unwrap();
    assert!(far.wait_for_nodes(3, Duration::from_secs(10)).await);

    let start = Instant::now();
    let phase = Duration::from_millis(1500);
    let until = start + phase * 4;
    let (local_log, far_log) = (Log::default(), Log::default());
    let mut callers = load(&local, 6, until, &local_log);
    callers.extend(load(&far, 6, until, &far_log));

    // Phase 2: node A puts itself in maintenance.
    tokio::time::sleep_until(start + phase).await;
    let a_off = Instant::now();
    a.set_maintenance(Some("draining for a test".into()));
    // Phase 3: an operator puts node B in maintenance too.
    tokio::time::sleep_until(start + phase * 2).await;
    let b_off = Instant::now();
    let http = reqwest::Client::new();
    let put = http
        .put(format!("http://{registry}/v1/nodes/{}/maintenance", b.id()))
        .json(&serde_json::json!({"enabled": true, "reason": "operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    // Phase 4: both out of maintenance.
    tokio::time::sleep_until(start + phase * 3).await;
    let back = Instant::now();
    a.set_maintenance(None);
    http.put(format!("http://{registry}/v1/nodes/{}/maintenance", b.id()))
        .json(&serde_json::json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    for caller in callers {
        caller.await.expect("no call failed");
    }

    for (name, log) in [("in-process", &local_log), ("remote", &far_log)] {
        assert!(
            answered(log, a.id(), start, a_off) > 0,
            "{name}: A worked before"
        );
        let a_seen = last_after(log, a.id(), a_off).filter(|d| *d < back - a_off);
        let b_seen = last_after(log, b.id(), b_off).filter(|d| *d < back - b_off);
        println!("{name}: A's last call issued {a_seen:?} after its maintenance, B's {b_seen:?}");
        assert_eq!(
            answered(log, a.id(), a_off + SEEN_WITHIN, back),
            0,
            "{name}: A got calls in maintenance"
        );
        assert_eq!(
            answered(log, b.id(), b_off + SEEN_WITHIN, back),
            0,
            "{name}: B got calls in maintenance"
        );
        assert!(
            answered(log, c.id(), b_off + SEEN_WITHIN, back) > 0,
            "{name}: C took the work"
        );
        assert!(
            answered(log, a.id(), back + SEEN_WITHIN, until) > 0,
            "{name}: A is called again"
        );
        assert!(
            answered(log, b.id(), back + SEEN_WITHIN, until) > 0,
            "{name}: B is called again"
        );
    }
    assert_eq!(
        master.master.registry().len(),
        3,
        "nobody left the registry"
    );

    for node in [a, b, c] {
        node.shutdown().await;
    }
    master.shutdown().await;
}

/// The demo node's own switch: SIGUSR1 puts the node process in maintenance, SIGUSR2 takes it
/// out; the master lists it so at once (the node's heartbeat goes out on the change), and the
/// node stays registered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_and_sigusr2_switch_a_demo_node_in_and_out_of_maintenance() {
    use support::procs;
    // A long interval: a change listed before the next regular beat came with its own beat.
    let (_master, registry, _) = procs::start_master(5_000, &[]);
    let node = procs::start_node(&registry, &["--service", "text"]);
    let listed = |want: Option<bool>| {
        let registry = registry.clone();
        async move {
            procs::node_list(&registry).await.is_some_and(|list| {
                list.nodes.len() == 1
                    && list.nodes[0].service == "text"
                    && want.is_none_or(|on| list.nodes[0].maintenance.is_some() == on)
            })
        }
    };
    assert!(support::wait_until(Duration::from_secs(20), || listed(Some(false))).await);
    node.signal("USR1");
    let t0 = Instant::now();
    // Bound: well under the 5 s interval, so the change cannot have waited for a regular beat.
    assert!(
        support::wait_until(Duration::from_secs(2), || listed(Some(true))).await,
        "listed in maintenance"
    );
    println!("listed in maintenance {:?} after SIGUSR1", t0.elapsed());
    node.signal("USR2");
    assert!(
        support::wait_until(Duration::from_secs(2), || listed(Some(false))).await,
        "listed out of maintenance"
    );
}
