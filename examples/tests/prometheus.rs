//! The metrics as an operator sees them: a real Prometheus server (Debian's `prometheus`)
//! scrapes a master process, its gateway and two node processes, and its HTTP API answers what
//! the test drove; `promtool check metrics` accepts every exposition.
//!
//! Skipped with a message when `prometheus` or `promtool` is not installed (`.ci/run` installs
//! them, and under CI, `CI` set, a missing tool fails the test).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::procs::{self, Proc};

const CALLS: usize = 40;

fn tools_present() -> bool {
    let ok = procs::installed("prometheus") && procs::installed("promtool");
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI must run this test: .ci/run installs its tools"
    );
    if !ok {
        eprintln!(
            "SKIPPED: `prometheus` and `promtool` are not installed here \
             (apt-get install prometheus; .ci/run does it)"
        );
    }
    ok
}

/// Asks Prometheus's HTTP API for an instant query; returns the result vector.
async fn query(http: &reqwest::Client, prometheus: &str, q: &str) -> Vec<serde_json::Value> {
    let url = format!("http://{prometheus}/api/v1/query");
    let answer: serde_json::Value = match http.get(&url).query(&[("query", q)]).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => return Vec::new(),
    };
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The single value of an instant query, if there is exactly one series.
async fn scalar(http: &reqwest::Client, prometheus: &str, q: &str) -> Option<f64> {
    let result = query(http, prometheus, q).await;
    match result.as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// Polls `check` every 250 ms for at most `limit`; returns its last answer.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    check().await
}

/// Runs `promtool check metrics` on an exposition; panics with its output when it refuses it.
fn promtool_accepts(what: &str, exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool refuses the exposition of {what}: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_master_gateway_and_nodes_and_sees_the_calls() {
    if !tools_present() {
        return;
    }
    let (_master, registry, gateway) = procs::start_master(200, &[]);
    let (_node_a, metrics_a) = procs::start_node_with_metrics(&registry, &[]);
    let (_node_b, metrics_b) = procs::start_node_with_metrics(&registry, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let two_nodes = eventually(Duration::from_secs(20), || async {
        let list: serde_json::Value =
            match http.get(format!("http://{registry}/v1/nodes")).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => return false,
            };
        list["nodes"].as_array().is_some_and(|n| n.len() == 2)
    })
    .await;
    assert!(two_nodes, "both nodes registered");
    for i in 0..CALLS {
        let answer = http
            .get(format!("http://{gateway}/sum?values={i},1"))
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "call {i}: {}",
            answer.status()
        );
    }

    // Every exposition passes promtool.
    for (what, addr) in [
        ("the master", &registry),
        ("the gateway", &gateway),
        ("node a", &metrics_a),
        ("node b", &metrics_b),
    ] {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("distribution_"), "{what} exposes metrics");
        promtool_accepts(what, &text);
    }

    // A real Prometheus scrapes the four targets.
    let dir = procs::temp_dir("prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
         - job_name: master\n  static_configs:\n  - targets: ['{registry}']\n\
         - job_name: gateway\n  static_configs:\n  - targets: ['{gateway}']\n\
         - job_name: node\n  static_configs:\n  - targets: ['{metrics_a}', '{metrics_b}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = procs::free_port();
    let prometheus = format!("127.0.0.1:{port}");
    let _server = Proc(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let all_up = eventually(Duration::from_secs(40), || async {
        let up = query(&http, &prometheus, "up").await;
        up.len() == 4 && up.iter().all(|s| s["value"][1] == "1")
    })
    .await;
    assert!(
        all_up,
        "every target up == 1: {:?}",
        query(&http, &prometheus, "up").await
    );
    // Generous: on a loaded 2-core machine a scrape can miss its timeout now and then.
    let counts = eventually(Duration::from_secs(40), || async {
        let nodes = scalar(
            &http,
            &prometheus,
            "distribution_master_nodes{job=\"master\",state=\"up\"}",
        )
        .await;
        let served = scalar(
            &http,
            &prometheus,
            "sum(distribution_node_served_total{job=\"node\"})",
        )
        .await;
        let routed = scalar(
            &http,
            &prometheus,
            "distribution_router_calls_total{job=\"gateway\",outcome=\"ok\"}",
        )
        .await;
        nodes == Some(2.0) && served == Some(CALLS as f64) && routed == Some(CALLS as f64)
    })
    .await;
    assert!(
        counts,
        "Prometheus sees 2 nodes up, {CALLS} calls served by the nodes and routed ok by the \
         gateway: up {:?}, nodes {:?}, served {:?}, routed {:?}",
        query(&http, &prometheus, "up").await,
        query(&http, &prometheus, "distribution_master_nodes").await,
        query(&http, &prometheus, "distribution_node_served_total").await,
        query(&http, &prometheus, "distribution_router_calls_total").await,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
