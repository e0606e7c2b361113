//! Per-node metric series stay bounded: the gateway's router keeps a `node` label only on the
//! in-flight gauge of live nodes. A departed node's series leaves the exposition once the gauge
//! has gone unset for the exporter's idle time, while a live node's stays, idle or not, because
//! the router sets it again every few seconds.
//!
//! Real processes: a demo master (its gateway's router) with a 7 s idle time
//! (`DIST_GAUGE_IDLE_MS`), two nodes, calls through `/sum`, one node SIGKILLed.

use std::time::{Duration, Instant};

use distribution_shared::wire::NodeList;

mod support;

use support::procs::{start_master_with_env, start_node};

/// The gauges' idle time given to the master process.
const IDLE: Duration = Duration::from_secs(7);

async fn text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

async fn listed(registry: &str) -> Vec<String> {
    let list: NodeList = reqwest::get(format!("http://{registry}/v1/nodes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.nodes.into_iter().map(|n| n.id).collect()
}

/// Whether the master's exposition has the router's in-flight series of node `id`.
fn has_series(metrics: &str, id: &str) -> bool {
    let label = format!("node=\"{id}\"");
    metrics
        .lines()
        .any(|l| l.starts_with("distribution_router_node_in_flight") && l.contains(&label))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_nodes_series_goes_and_a_live_idle_nodes_stays() {
    let idle_ms = IDLE.as_millis().to_string();
    let (_master, registry, gateway) = start_master_with_env(
        "127.0.0.1:0",
        200,
        &[],
        &[("DIST_GAUGE_IDLE_MS", idle_ms.as_str())],
    );
    let mut nodes = vec![start_node(&registry, &[]), start_node(&registry, &[])];
    let started = Instant::now();
    let ids = loop {
        let ids = listed(&registry).await;
        if ids.len() == 2 {
            break ids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "2 nodes listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Calls through the gateway until its router has a series for both nodes.
    let metrics_url = format!("http://{registry}/metrics");
    let started = Instant::now();
    loop {
        for _ in 0..10 {
            let answer = text(&format!("http://{gateway}/sum?values=1,2")).await;
            assert!(answer.contains('3'), "{answer}");
        }
        let metrics = text(&metrics_url).await;
        if ids.iter().all(|id| has_series(&metrics, id)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the router's series of both nodes appear"
        );
    }
    // Which process is which node: the first listed id is not necessarily the first process, so
    // kill one process and see which id leaves the list.
    drop(nodes.remove(0));
    let killed_at = Instant::now();
    let (gone, stays) = loop {
        let now = listed(&registry).await;
        if now.len() == 1 {
            let stays = now[0].clone();
            let gone = ids.iter().find(|id| **id != stays).unwrap().clone();
            break (gone, stays);
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the dead node is evicted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The departed node's series leaves within the idle time plus the exporter's upkeep (5 s)
    // and a margin; no call is made meanwhile, so the live one is idle all along.
    let bound = IDLE + Duration::from_secs(5) + Duration::from_secs(3);
    loop {
        let metrics = text(&metrics_url).await;
        if !has_series(&metrics, &gone) {
            assert!(
                has_series(&metrics, &stays),
                "the live node's series must stay while it is idle"
            );
            eprintln!(
                "departed node's series gone {:?} after the kill",
                killed_at.elapsed()
            );
            break;
        }
        assert!(
            killed_at.elapsed() < bound,
            "the departed node's series is still exposed {:?} after the kill",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Idle well past the idle time, the live node's series is still there.
    tokio::time::sleep(IDLE + Duration::from_secs(1)).await;
    let metrics = text(&metrics_url).await;
    assert!(
        has_series(&metrics, &stays),
        "a live, idle node keeps its series"
    );
    assert!(!has_series(&metrics, &gone));
}
