//! The registry's HTTP API over real TCP: registration, heartbeats, leaving, eviction, and bad
//! input refused with a 4xx that leaves the registry unchanged.

use std::time::Duration;

use distribution_master::{Master, MasterConfig};
use distribution_shared::wire::{Lease, NodeList, NodeState};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

async fn master(interval: Duration) -> (Master, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(listener, MasterConfig::with_interval(interval)).unwrap();
    let base = format!("http://{}", master.local_addr());
    (master, base)
}

/// `POST /v1/nodes` with `body`.
async fn register(http: &reqwest::Client, base: &str, body: Value) -> reqwest::Response {
    http.post(format!("{base}/v1/nodes"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// `GET url`, its body decoded.
async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: String) -> T {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn list(http: &reqwest::Client, base: &str) -> NodeList {
    let response = http.get(format!("{base}/v1/nodes")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let index: u64 = response.headers()["x-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let list: NodeList = response.json().await.unwrap();
    assert_eq!(list.index, index, "X-Index header and body agree");
    list
}

async fn wait_until<F: AsyncFnMut() -> bool>(timeout: Duration, mut cond: F) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn register_takes_the_host_from_the_peer_and_is_idempotent() {
    let (_master, base) = master(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let response = register(&http, &base, json!({"id": "n1", "port": 4242})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let lease: Lease = response.json().await.unwrap();
        assert_eq!(lease.addr, "127.0.0.1:4242");
        assert_eq!(lease.heartbeat_interval_ms, 1000);
        assert_eq!(lease.ttl_ms, 3000);
    }
    let nodes = list(&http, &base).await;
    assert_eq!(nodes.index, 1, "the second registration changed nothing");
    assert_eq!(nodes.nodes.len(), 1);
    assert_eq!(nodes.nodes[0].addr, "127.0.0.1:4242");
    assert_eq!(nodes.nodes[0].state, NodeState::Up);

    let advertised = register(
        &http,
        &base,
        json!({"id": "n2", "port": 1, "addr": "node-b.internal:5000", "capacity": 8}),
    )
    .await;
    assert_eq!(advertised.status(), StatusCode::OK);
    let nodes = list(&http, &base).await;
    assert_eq!(nodes.nodes[1].addr, "node-b.internal:5000");
    assert_eq!(nodes.nodes[1].capacity, 8);

    // A node restarted on the same address under a new id replaces the old entry.
    let restarted = register(&http, &base, json!({"id": "n1-again", "port": 4242})).await;
    assert_eq!(restarted.status(), StatusCode::OK);
    let ids: Vec<String> = list(&http, &base)
        .await
        .nodes
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, vec!["n1-again".to_string(), "n2".to_string()]);
}

#[tokio::test]
async fn heartbeats_renew_and_report_load_and_unknown_ids_get_404() {
    let (_master, base) = master(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    register(&http, &base, json!({"id": "n1", "port": 4242})).await;
    let beat = http
        .put(format!("{base}/v1/nodes/n1/heartbeat"))
        .json(&json!({"in_flight": 3, "capacity": 16, "served": 40}))
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), StatusCode::OK);
    let node = &list(&http, &base).await.nodes[0];
    assert_eq!((node.in_flight, node.capacity, node.served), (3, 16, 40));

    let unknown = http
        .put(format!("{base}/v1/nodes/ghost/heartbeat"))
        .json(&json!({"in_flight": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("ghost"));

    let gone = http
        .delete(format!("{base}/v1/nodes/n1"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let again = http
        .delete(format!("{base}/v1/nodes/n1"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert!(list(&http, &base).await.nodes.is_empty());
}

#[tokio::test]
async fn silent_nodes_are_evicted_after_the_ttl_and_renewed_ones_stay() {
    let (_master, base) = master(Duration::from_millis(100)).await;
    let http = reqwest::Client::new();
    for id in ["silent", "alive"] {
        let port = if id == "silent" { 1 } else { 2 };
        register(&http, &base, json!({"id": id, "port": port})).await;
    }
    let registered = std::time::Instant::now();
    let evicted = wait_until(Duration::from_secs(10), async || {
        http.put(format!("{base}/v1/nodes/alive/heartbeat"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let ids: Vec<String> = list(&http, &base)
            .await
            .nodes
            .into_iter()
            .map(|n| n.id)
            .collect();
        ids == vec!["alive".to_string()]
    })
    .await;
    let after = registered.elapsed();
    assert!(evicted, "the silent node is evicted, the renewed one stays");
    // The TTL is 3 intervals (300 ms); 2 s on top for a busy machine.
    assert!(
        after <= Duration::from_millis(300) + Duration::from_secs(2),
        "evicted after {after:?}"
    );
    // "After the TTL": not before it either (the registration's answer came back after the
    // lease began: 20 ms for that).
    assert!(
        after >= Duration::from_millis(280),
        "evicted after {after:?}, before the TTL of 300 ms"
    );
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_message_and_changes_nothing() {
    let (_master, base) = master(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    register(&http, &base, json!({"id": "n1", "port": 4242})).await;
    let before = list(&http, &base).await;

    let long_id = "x".repeat(200);
    let cases: Vec<(&str, String, String)> = vec![
        ("POST", "/v1/nodes".into(), r#"{"id":"a","port":0}"#.into()),
        ("POST", "/v1/nodes".into(), r#"{"id":"a"}"#.into()),
        (
            "POST",
            "/v1/nodes".into(),
            r#"{"id":"a","port":70000}"#.into(),
        ),
        ("POST", "/v1/nodes".into(), r#"{"id":"a","port":-1}"#.into()),
        (
            "POST",
            "/v1/nodes".into(),
            r#"{"id":"a","port":"80"}"#.into(),
        ),
        ("POST", "/v1/nodes".into(), r#"{"id":"","port":80}"#.into()),
        (
            "POST",
            "/v1/nodes".into(),
            format!(r#"{{"id":"{long_id}","port":80}}"#),
        ),
        (
            "POST",
            "/v1/nodes".into(),
            r#"{"id":"a b","port":80}"#.into(),
        ),
        (
            "POST",
            "/v1/nodes".into(),
            r#"{"id":"a","port":80,"addr":"nope"}"#.into(),
        ),
        (
            "POST",
            "/v1/nodes".into(),
            r#"{"id":"a","port":80,"capacity":0}"#.into(),
        ),
        (
            "POST",
            "/v1/nodes".into(),
            r#"{"id":"a","port":80,"extra":1}"#.into(),
        ),
        ("POST", "/v1/nodes".into(), r#"{"id":"a","port":8"#.into()),
        ("POST", "/v1/nodes".into(), "not json".into()),
        (
            "POST",
            "/v1/nodes".into(),
            format!(r#"{{"id":"a","port":80,"addr":"{}"}}"#, "h".repeat(100_000)),
        ),
        ("PUT", "/v1/nodes/ghost/heartbeat".into(), "{}".into()),
        (
            "PUT",
            "/v1/nodes/n1/heartbeat".into(),
            r#"{"in_flight":-4}"#.into(),
        ),
        (
            "PUT",
            "/v1/nodes/n1/heartbeat".into(),
            r#"{"capacity":0}"#.into(),
        ),
        ("DELETE", "/v1/nodes/ghost".into(), String::new()),
        ("GET", "/v2/nothing".into(), String::new()),
    ];
    for (method, path, body) in &cases {
        let request = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.clone());
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(
            status.is_client_error(),
            "{method} {path} {body:.60}: {status}"
        );
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            body["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: error message missing"
        );
    }
    let no_type = http
        .post(format!("{base}/v1/nodes"))
        .body(r#"{"id":"a","port":80}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let after = list(&http, &base).await;
    assert_eq!(
        after.index, before.index,
        "no refused request changed the registry"
    );
    assert_eq!(after.nodes.len(), 1);
    assert_eq!(after.nodes[0].addr, before.nodes[0].addr);
    assert_eq!(after.nodes[0].in_flight, 0);
    let health: Value = get_json(&http, format!("{base}/health")).await;
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn a_limited_list_holds_the_first_nodes_and_sums_every_node() {
    let (master, base) = master(Duration::from_secs(600)).await;
    let http = reqwest::Client::new();
    for (i, capacity) in [(0, 4), (1, 8), (2, 16)] {
        let body = json!({ "id": format!("n{i}"), "port": 4000 + i, "capacity": capacity });
        assert_eq!(register(&http, &base, body).await.status(), StatusCode::OK);
    }
    let limited: NodeList = get_json(&http, format!("{base}/v1/nodes?limit=2")).await;
    let ids: Vec<&str> = limited.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["n0", "n1"], "the first two by id");
    let total = limited.total.expect("totals with a limit");
    assert_eq!((total.nodes, total.up, total.capacity), (3, 3, 28));
    assert!(list(&http, &base).await.total.is_none(), "none without");
    for bad in ["0", "-1", "abc", "1.5", "18446744073709551616", ""] {
        let response = http
            .get(format!("{base}/v1/nodes?limit={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "limit={bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    }
    master.shutdown().await;
}
