//! The demo program as real OS processes: a master and nodes started from the built binary,
//! nodes SIGKILLed and SIGTERMed while the gateway is under load.

use std::time::{Duration, Instant};

use distribution_shared::wire::NodeList;

mod support;

use support::procs::{Proc, start_master as start_master_with, start_node as start_node_with};

fn start_master(interval_ms: u64) -> (Proc, String, String) {
    start_master_with(interval_ms, &[])
}

fn start_node(registry: &str, sum_delay_ms: u64) -> Proc {
    start_node_with(registry, &["--sum-delay-ms", &sum_delay_ms.to_string()])
}

async fn nodes(registry: &str) -> NodeList {
    reqwest::get(format!("http://{registry}/v1/nodes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_for_count(registry: &str, count: usize, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if nodes(registry).await.nodes.len() == count {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Runs `calls` `/sum` requests from `workers` concurrent loops; returns the failures.
async fn load(gateway: String, workers: usize, calls: usize) -> Vec<String> {
    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (http, gateway) = (http.clone(), gateway.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for i in 0..calls {
                    let (a, b) = (w as i64, i as i64);
                    let url = format!("http://{gateway}/sum?values={a},{b}");
                    match http.get(&url).send().await {
                        Ok(r) if r.status().is_success() => {
                            let text = r.text().await.unwrap_or_default();
                            if !text.trim_end().ends_with(&format!(": {}", a + b)) {
                                failures.push(format!("wrong answer: {text}"));
                            }
                        }
                        Ok(r) => failures.push(format!(
                            "{}: {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        )),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_node_process_costs_no_request_and_is_evicted() {
    let (_master, registry, gateway) = start_master(200);
    let mut nodes_running: Vec<Proc> = (0..3).map(|_| start_node(&registry, 20)).collect();
    assert!(
        wait_for_count(&registry, 3, Duration::from_secs(20))
            .await
            .is_some(),
        "3 nodes listed"
    );

    let run = tokio::spawn(load(gateway.clone(), 6, 60));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = nodes_running.remove(0);
    drop(victim); // SIGKILL
    let evicted = wait_for_count(&registry, 2, Duration::from_secs(10)).await;
    let failures = run.await.unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let evicted = evicted.expect("the killed node is evicted");
    // TTL is 3 x 200 ms; allow 2 s on top for a loaded machine.
    assert!(
        evicted <= Duration::from_millis(2600),
        "evicted after {evicted:?}"
    );
    // And not before its lease ran out: its last heartbeat was at most one interval (200 ms)
    // before the kill, so the lease lasts at least 400 ms after it (50 ms for the clocks).
    assert!(
        evicted >= Duration::from_millis(350),
        "evicted {evicted:?} after the kill: before its lease of 600 ms could run out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_deregisters_at_once_and_loses_no_request() {
    // A long interval: a node gone from the list within a second has left, not expired.
    let (_master, registry, gateway) = start_master(5000);
    let mut nodes_running: Vec<Proc> = (0..2).map(|_| start_node(&registry, 100)).collect();
    assert!(
        wait_for_count(&registry, 2, Duration::from_secs(20))
            .await
            .is_some()
    );
    let run = tokio::spawn(load(gateway.clone(), 4, 15));
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes_running[0].signal("TERM");
    let gone = wait_for_count(&registry, 1, Duration::from_secs(10)).await;
    // "Deregistered at once": the README says within 1 s; 1 s more for a busy machine (the
    // lease is 15 s, so an expiry cannot pass for it).
    assert!(
        gone.is_some_and(|t| t < Duration::from_secs(2)),
        "deregistered: {gone:?}"
    );
    let failures = run.await.unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = nodes_running[0].0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node exits after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "clean exit: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_cluster_secret_join() {
    let (_master, registry, _gateway) = start_master_with(200, &["--secret", "s3cret"]);
    let _intruder = support::procs::start_node(&registry, &["--secret", "guess"]);
    let _anonymous = support::procs::start_node(&registry, &[]);
    let _member = support::procs::start_node(&registry, &["--secret", "s3cret"]);
    let http = reqwest::Client::new();
    let listed = |auth: Option<&'static str>| {
        let http = http.clone();
        let registry = registry.clone();
        async move {
            let mut request = http.get(format!("http://{registry}/v1/nodes"));
            if let Some(secret) = auth {
                request = request.bearer_auth(secret);
            }
            request.send().await.unwrap()
        }
    };
    let started = Instant::now();
    loop {
        let list: NodeList = listed(Some("s3cret")).await.json().await.unwrap();
        if list.nodes.len() == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the member joins"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give the intruders a few heartbeat intervals to try again: they stay out.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let list: NodeList = listed(Some("s3cret")).await.json().await.unwrap();
    assert_eq!(list.nodes.len(), 1, "only the member is listed: {list:?}");
    assert_eq!(
        listed(None).await.status(),
        401,
        "reading the list needs the secret"
    );
}
