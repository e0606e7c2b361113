//! Self-preservation with real processes (issue #13): a master and ten `distribution-demo node`
//! processes. One node SIGKILLed is evicted on time and the master stays `ok` (one silent node
//! is its own fault); eight of ten SIGSTOPped for three TTLs evict none, the master says
//! `degraded` (in `/health` and the node list) and goes back to `ok` with every node listed
//! when they resume.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::procs::{Proc, health, node_list, start_master, start_node};

const INTERVAL_MS: u64 = 300;
const NODES: usize = 10;

fn ttl() -> Duration {
    Duration::from_millis(INTERVAL_MS) * distribution_shared::defaults::TTL_INTERVALS
}

/// Waits (20 s at most) until the master lists `n` nodes; returns their ids.
async fn wait_listed(registry: &str, n: usize) -> HashSet<String> {
    let started = Instant::now();
    loop {
        if let Some(list) = node_list(registry).await
            && list.nodes.len() == n
        {
            return list.nodes.into_iter().map(|node| node.id).collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{n} nodes register"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(registry: &str) -> Option<String> {
    Some(health(registry).await?["status"].as_str()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_self_preservation_one_sigkilled_node_of_ten_is_evicted_on_time() {
    let (_master, registry, _) = start_master(INTERVAL_MS, &["--self-preservation", "0.85"]);
    let _others: Vec<Proc> = (1..NODES).map(|_| start_node(&registry, &[])).collect();
    let others = wait_listed(&registry, NODES - 1).await;
    let victim = start_node(&registry, &[]);
    let victim_id = wait_listed(&registry, NODES)
        .await
        .difference(&others)
        .next()
        .cloned()
        .unwrap();
    victim.signal("KILL");
    let killed = Instant::now();
    let mut polls = 0;
    let evicted_after = loop {
        let list = node_list(&registry).await.expect("the master answers");
        let ids: HashSet<String> = list.nodes.into_iter().map(|n| n.id).collect();
        assert!(others.is_subset(&ids), "the others stay listed: {ids:?}");
        assert_eq!(list.degraded, None);
        assert_eq!(status(&registry).await.as_deref(), Some("ok"));
        polls += 1;
        if !ids.contains(&victim_id) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < ttl() + Duration::from_secs(2),
            "not evicted within the TTL + 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "evicted {evicted_after:?} after SIGKILL (TTL {:?}), {polls} polls ok",
        ttl()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_nodes_of_ten_sigstopped_for_three_ttls_are_all_kept_and_the_master_says_degraded() {
    let (_master, registry, _) = start_master(INTERVAL_MS, &[]);
    let nodes: Vec<Proc> = (0..NODES).map(|_| start_node(&registry, &[])).collect();
    let all = wait_listed(&registry, NODES).await;
    for node in &nodes[2..] {
        node.signal("STOP");
    }
    let stopped = Instant::now();
    let mut degraded_after = None;
    let mut polls = 0;
    while stopped.elapsed() < ttl() * 3 {
        let list = node_list(&registry).await.expect("the master answers");
        assert_eq!(
            list.nodes.len(),
            NODES,
            "a node was evicted {:?} into the stop",
            stopped.elapsed()
        );
        if list.degraded.is_some() && degraded_after.is_none() {
            degraded_after = Some(stopped.elapsed());
        }
        polls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let degraded_after = degraded_after.expect("the list says degraded");
    let health = health(&registry).await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let reason = health["reason"].as_str().unwrap();
    assert!(reason.contains("8 of 10 nodes silent"), "{reason}");
    assert_eq!(health["nodes"], NODES);
    let list = node_list(&registry).await.unwrap();
    assert_eq!(list.degraded.as_deref(), Some(reason));

    for node in &nodes[2..] {
        node.signal("CONT");
    }
    let resumed = Instant::now();
    while status(&registry).await.as_deref() != Some("ok") {
        assert!(
            resumed.elapsed() < Duration::from_millis(INTERVAL_MS) + Duration::from_secs(2),
            "back to ok within an interval + 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok_after = resumed.elapsed();
    // And it stays whole: for a TTL, every node listed at every answer.
    while resumed.elapsed() < ok_after + ttl() {
        let list = node_list(&registry).await.unwrap();
        let ids: HashSet<String> = list.nodes.into_iter().map(|n| n.id).collect();
        assert_eq!(ids, all, "every node listed after SIGCONT");
        assert_eq!(list.degraded, None);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "degraded {degraded_after:?} into the stop, {polls} polls with {NODES} nodes listed; \
         ok {ok_after:?} after SIGCONT"
    );
}
