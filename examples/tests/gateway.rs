//! The demo's gateway end to end: `/sum` and `/palindrom` over real TCP, answered by real nodes.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{get, master, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sum_and_palindrom_answer_right_in_text_and_json() {
    let master = master().await;
    let _nodes = [
        node(&master, Duration::ZERO).await,
        node(&master, Duration::ZERO).await,
    ];
    let gw = format!("http://{}", master.gateway_addr);

    let (status, body) = get(&format!("{gw}/sum?values=2,4,6"), false).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("Response from node node-"), "{body}");
    assert!(body.trim_end().ends_with(": 12"), "{body}");

    let (status, body) = get(&format!("{gw}/sum?values=2,4,6"), true).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["result"], 12);
    assert!(json["node"]["id"].as_str().unwrap().starts_with("node-"));

    let (status, body) = get(&format!("{gw}/sum"), true).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&body).unwrap();
    let values: Vec<i64> = serde_json::from_value(json["values"].clone()).unwrap();
    assert_eq!(values.len(), 3, "three random values");
    assert_eq!(json["result"].as_i64().unwrap(), values.iter().sum::<i64>());

    for (n, count) in [
        (0u64, 1u64),
        (10, 6),
        (2000, 93),
        (1_000_000, 2000),
        (10_000_000, 6536),
    ] {
        let (status, body) = get(&format!("{gw}/palindrom?n={n}"), true).await;
        assert_eq!(status, 200, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["count"], count, "n = {n}");
        let (_, text) = get(&format!("{gw}/palindrom?n={n}"), false).await;
        assert!(
            text.starts_with(&format!("Palindrom counter to {n}: {count} ")),
            "{text}"
        );
    }
    let (_, body) = get(&format!("{gw}/palindrom?n=10000000"), true).await;
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["nodes"].as_array().unwrap().len(),
        2,
        "both nodes took chunks: {body}"
    );
}

#[tokio::test]
async fn bad_input_gets_400_overflow_422_and_an_empty_cluster_503() {
    let master = master().await;
    let gw = format!("http://{}", master.gateway_addr);
    let (status, body) = get(&format!("{gw}/sum?values=1,2"), false).await;
    assert_eq!(status, 503, "no node yet: {body}");

    let _node = node(&master, Duration::ZERO).await;
    for query in [
        "/sum?values=1,x",
        "/sum?values=",
        "/sum?values=99999999999999999999",
        "/palindrom",
        "/palindrom?n=-5",
        "/palindrom?n=abc",
        "/palindrom?n=1e3",
        "/palindrom?n=99999999999999",
    ] {
        let (status, body) = get(&format!("{gw}{query}"), false).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.starts_with("error: "), "{query}: {body}");
        let (status, body) = get(&format!("{gw}{query}"), true).await;
        assert_eq!(status, 400);
        let json: Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = get(&format!("{gw}/sum?values=9223372036854775807,1"), false).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("overflow"), "{body}");
    let (status, body) = get(&format!("{gw}/sum?values=9223372036854775807,1,-1"), false).await;
    assert_eq!(status, 200, "the exact sum fits: {body}");
}

/// The gateway's `504` and `502` (README, "The demo gateway"): a `/sum` whose only node takes
/// longer than the router's deadline is a `504` within about that deadline; one whose only node
/// fails every call (`--faulty`) is a `502` naming the failure. Both in text and JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_is_a_504_and_a_broken_cluster_a_502() {
    use distribution_examples::cluster::{DemoMaster, start_faulty_node, start_node};
    use distribution_master::MasterConfig;
    use distribution_node::NodeConfig;
    use tokio::net::TcpListener;

    let deadline = Duration::from_millis(500);
    let master = DemoMaster::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MasterConfig::with_interval(support::INTERVAL),
        distribution_client::RouterConfig::default().with_deadline(deadline),
    )
    .unwrap();
    let registry = master.master.local_addr().to_string();
    let gw = format!("http://{}", master.gateway_addr);

    // A node whose sum takes 5 s: ten times the deadline.
    let slow = start_node(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        NodeConfig::new(&registry),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(slow.wait_registered(Duration::from_secs(10)).await);
    for json in [false, true] {
        let started = std::time::Instant::now();
        let (status, body) = get(&format!("{gw}/sum?values=1,2"), json).await;
        assert_eq!(status, 504, "{body}");
        assert!(
            started.elapsed() < deadline + Duration::from_secs(2),
            "answered after {:?}, the deadline being {deadline:?}",
            started.elapsed()
        );
        if json {
            let body: Value = serde_json::from_str(&body).unwrap();
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("deadline")),
                "{body}"
            );
        }
    }
    slow.shutdown().await;

    // A node that fails every call.
    let faulty = start_faulty_node(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        NodeConfig::new(&registry),
    )
    .unwrap();
    assert!(faulty.wait_registered(Duration::from_secs(10)).await);
    for json in [false, true] {
        let (status, body) = get(&format!("{gw}/sum?values=1,2"), json).await;
        assert_eq!(status, 502, "{body}");
        assert!(!body.is_empty(), "a 502 says why");
    }
}
