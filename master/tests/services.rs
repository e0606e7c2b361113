//! Named services, tags, meta and maintenance over real HTTP: registrations carry them (bad ones
//! are a 400 that names the field), `GET /v1/nodes?service=&tag=` and `GET /v1/services` read
//! them, a blocking query of one service is not answered by a change of another, and
//! `PUT /v1/nodes/{id}/maintenance` flags a node without unregistering it.

use std::time::Duration;

use distribution_master::{Master, MasterConfig};
use distribution_shared::wire::{
    EventKind, NodeChanges, NodeInfo, NodeList, RegisterRequest, ServiceList,
};
use serde_json::json;
use tokio::net::TcpListener;

async fn master() -> (Master, String, reqwest::Client) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(
        listener,
        MasterConfig::with_interval(Duration::from_secs(60)),
    )
    .unwrap();
    let base = format!("http://{}", master.local_addr());
    (master, base, reqwest::Client::new())
}

fn node(id: &str, port: u16, service: &str, tags: &[&str]) -> RegisterRequest {
    RegisterRequest {
        addr: Some(format!("127.0.0.1:{port}")),
        service: service.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        meta: [("version".to_owned(), "1.4.2".to_owned())].into(),
        ..RegisterRequest::new(id, port)
    }
}

async fn register(http: &reqwest::Client, base: &str, req: &RegisterRequest) {
    let status = http
        .post(format!("{base}/v1/nodes"))
        .json(req)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "{req:?}");
}

async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> T {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

/// `PUT url` with `body`: the answer.
async fn put(http: &reqwest::Client, url: &str, body: serde_json::Value) -> reqwest::Response {
    http.put(url).json(&body).send().await.unwrap()
}

fn ids(list: &NodeList) -> Vec<&str> {
    list.nodes.iter().map(|n| n.id.as_str()).collect()
}

#[tokio::test]
async fn nodes_are_listed_by_service_and_tag_and_services_are_counted() {
    let (_master, base, http) = master().await;
    register(&http, &base, &node("c1", 7001, "calc", &["gpu"])).await;
    register(&http, &base, &node("c2", 7002, "calc", &[])).await;
    register(&http, &base, &node("t1", 7003, "text", &["gpu"])).await;
    register(&http, &base, &RegisterRequest::new("d1", 7004)).await;

    let all: NodeList = get(&http, &format!("{base}/v1/nodes")).await;
    assert_eq!(ids(&all), ["c1", "c2", "d1", "t1"]);
    let c1 = &all.nodes[0];
    assert_eq!(
        (c1.service.as_str(), c1.tags.as_slice()),
        ("calc", &["gpu".to_owned()][..])
    );
    assert_eq!(c1.meta["version"], "1.4.2");
    assert_eq!(
        all.nodes[2].service, "default",
        "no service is the default one"
    );

    let calc: NodeList = get(&http, &format!("{base}/v1/nodes?service=calc")).await;
    assert_eq!(ids(&calc), ["c1", "c2"]);
    let gpu: NodeList = get(&http, &format!("{base}/v1/nodes?tag=gpu")).await;
    assert_eq!(ids(&gpu), ["c1", "t1"]);
    let both: NodeList = get(&http, &format!("{base}/v1/nodes?service=calc&tag=gpu")).await;
    assert_eq!(ids(&both), ["c1"]);
    let none: NodeList = get(&http, &format!("{base}/v1/nodes?service=nothing")).await;
    assert!(none.nodes.is_empty());

    let services: ServiceList = get(&http, &format!("{base}/v1/services")).await;
    let counts: Vec<(&str, usize)> = services
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.nodes))
        .collect();
    assert_eq!(counts, [("calc", 2), ("default", 1), ("text", 1)]);

    // The same id registering as another service moves to it (it left the old one).
    register(&http, &base, &node("c2", 7002, "text", &[])).await;
    let text: NodeList = get(&http, &format!("{base}/v1/nodes?service=text")).await;
    assert_eq!(ids(&text), ["c2", "t1"]);
    let services: ServiceList = get(&http, &format!("{base}/v1/services")).await;
    assert_eq!(services.services[0].nodes, 1, "calc lost c2");
}

#[tokio::test]
async fn bad_services_tags_meta_and_filters_are_a_400_naming_the_field() {
    let (master, base, http) = master().await;
    let mut cases = vec![
        (json!({"id": "a", "port": 1, "service": "Calc"}), "service"),
        (json!({"id": "a", "port": 1, "service": ""}), "service"),
        (
            json!({"id": "a", "port": 1, "service": "x".repeat(65)}),
            "service",
        ),
        (json!({"id": "a", "port": 1, "service": 7}), "service"),
        (json!({"id": "a", "port": 1, "tags": ["a b"]}), "tag"),
        (
            json!({"id": "a", "port": 1, "tags": (0..17).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "tags",
        ),
        (json!({"id": "a", "port": 1, "tags": "gpu"}), "tags"),
        (
            json!({"id": "a", "port": 1, "meta": {"k": "v\u{0}"}}),
            "control",
        ),
        (
            json!({"id": "a", "port": 1, "meta": {"k": "v".repeat(300)}}),
            "meta value",
        ),
        (json!({"id": "a", "port": 1, "meta": {"": "v"}}), "meta key"),
        (
            json!({"id": "a", "port": 1, "maintenance": "m".repeat(300)}),
            "maintenance",
        ),
    ];
    let many: serde_json::Map<String, serde_json::Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    cases.push((json!({"id": "a", "port": 1, "meta": many}), "meta"));
    for (body, field) in cases {
        let response = http
            .post(format!("{base}/v1/nodes"))
            .json(&body)
            .send()
            .await
            .unwrap();
        // 422 where the JSON has the wrong type (axum's rejection), 400 for a broken rule.
        assert!([400, 422].contains(&response.status().as_u16()), "{body}");
        let text = response.text().await.unwrap();
        assert!(text.contains(field), "{body}: {text}");
    }
    let bad_filters = [
        ("v1/nodes", "service=Bad"),
        ("v1/nodes", "service="),
        ("v1/nodes", "tag=a%20b"),
        ("v1/nodes", "tag="),
        ("v1/changes", "service=Bad"),
        ("v1/changes", "service="),
        ("v1/events", "service=Bad"),
        ("v1/events", "service=a%20b"),
    ];
    for (path, query) in bad_filters {
        let response = http
            .get(format!("{base}/{path}?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}?{query}");
    }
    assert!(master.registry().is_empty(), "nothing refused was stored");
}

#[tokio::test]
async fn a_blocking_query_of_one_service_is_not_answered_by_a_change_of_another() {
    let (_master, base, http) = master().await;
    register(&http, &base, &node("c1", 7001, "calc", &[])).await;
    register(&http, &base, &node("t1", 7002, "text", &[])).await;
    let calc: NodeList = get(&http, &format!("{base}/v1/nodes?service=calc")).await;
    let changes: NodeChanges = get(&http, &format!("{base}/v1/changes?service=calc")).await;

    let list_url = format!("{base}/v1/nodes?service=calc&index={}&wait=20s", calc.index);
    let changes_url = format!(
        "{base}/v1/changes?service=calc&epoch={}&index={}&loads={}&wait=20s",
        changes.epoch, changes.index, changes.loads_index
    );
    let list = tokio::spawn({
        let http = http.clone();
        async move { get::<NodeList>(&http, &list_url).await }
    });
    let delta = tokio::spawn({
        let http = http.clone();
        async move { get::<NodeChanges>(&http, &changes_url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Changes of the other service: a join, a leave, a maintenance.
    register(&http, &base, &node("t2", 7003, "text", &[])).await;
    http.delete(format!("{base}/v1/nodes/t1"))
        .send()
        .await
        .unwrap();
    let answer = put(
        &http,
        &format!("{base}/v1/nodes/t2/maintenance"),
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(answer.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !list.is_finished(),
        "a text change answered a calc list query"
    );
    assert!(
        !delta.is_finished(),
        "a text change answered a calc changes query"
    );

    register(&http, &base, &node("c2", 7004, "calc", &[])).await;
    let list = tokio::time::timeout(Duration::from_secs(5), list)
        .await
        .expect("a calc change answers")
        .unwrap();
    assert_eq!(ids(&list), ["c1", "c2"]);
    let delta = tokio::time::timeout(Duration::from_secs(5), delta)
        .await
        .expect("a calc change answers")
        .unwrap();
    let events: Vec<(EventKind, &str)> = delta
        .events
        .iter()
        .map(|e| (e.kind, e.node.as_str()))
        .collect();
    assert_eq!(events, [(EventKind::Join, "c2")], "only calc's events");
    assert!(
        delta.loads.iter().all(|l| l.id.starts_with('c')),
        "{:?}",
        delta.loads
    );
}

#[tokio::test]
async fn maintenance_flags_a_node_that_stays_registered() {
    let (master, base, http) = master().await;
    register(&http, &base, &node("c1", 7001, "calc", &[])).await;
    let url = format!("{base}/v1/nodes/c1/maintenance");
    let on: NodeInfo = put(
        &http,
        &url,
        json!({"enabled": true, "reason": "kernel upgrade"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(on.maintenance.as_deref(), Some("kernel upgrade"));
    let listed: NodeList = get(&http, &format!("{base}/v1/nodes")).await;
    assert_eq!(
        listed.nodes[0].maintenance.as_deref(),
        Some("kernel upgrade")
    );
    let services: ServiceList = get(&http, &format!("{base}/v1/services")).await;
    assert_eq!(services.services[0].maintenance, 1);
    let snapshot = master.registry().subscribe().borrow().clone();
    assert!(
        snapshot.members[0].load.in_maintenance(),
        "routers see the flag"
    );

    for (body, status) in [
        (json!({"enabled": "yes"}), 422),
        (json!({"reason": "x"}), 422),
        (json!({"enabled": true, "reason": "r".repeat(300)}), 400),
        (json!({"enabled": true, "x": 1}), 422),
    ] {
        let response = put(&http, &url, body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
    }
    let unknown = put(
        &http,
        &format!("{base}/v1/nodes/nobody/maintenance"),
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(unknown.status(), 404);

    let off: NodeInfo = put(&http, &url, json!({"enabled": false}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(off.maintenance, None);
    assert!(
        !master.registry().subscribe().borrow().members[0]
            .load
            .in_maintenance()
    );
    let kinds: Vec<EventKind> = master
        .registry()
        .events_since(0)
        .events
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [EventKind::Join, EventKind::Maintenance, EventKind::Resumed]
    );
}
