//! `GET /v1/changes` over real HTTP: a follower with a view gets what changed (the nodes whose
//! load changed, the membership events), not the whole list; a view of another master process
//! or none gets the whole list; a blocking query answers at the next membership event.

use std::time::{Duration, Instant};

use distribution_master::{Master, MasterConfig, Registration};
use distribution_shared::wire::{EventKind, Heartbeat, NodeChanges};
use tokio::net::TcpListener;

const NODES: usize = 2_000;

async fn master() -> (Master, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A long lease: the registrations below never heartbeat on their own.
    let master = Master::start(
        listener,
        MasterConfig::with_interval(Duration::from_secs(60)),
    )
    .unwrap();
    let base = format!("http://{}", master.local_addr());
    (master, base)
}

fn join(master: &Master, i: usize) {
    master
        .registry()
        .register(Registration::new(
            format!("n{i:05}"),
            format!("127.0.0.{}:{}", 1 + i / 60_000, 1_000 + i % 60_000),
            8,
        ))
        .unwrap();
}

/// The answer and its size in bytes.
async fn get(http: &reqwest::Client, url: &str) -> (NodeChanges, usize) {
    let response = http.get(url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let bytes = response.bytes().await.unwrap();
    (serde_json::from_slice(&bytes).unwrap(), bytes.len())
}

fn view_url(base: &str, c: &NodeChanges, wait: &str) -> String {
    format!(
        "{base}/v1/changes?epoch={}&index={}&loads={}&wait={wait}",
        c.epoch, c.index, c.loads_index
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gets_what_changed_not_the_whole_list() {
    let (master, base) = master().await;
    for i in 0..NODES {
        join(&master, i);
    }
    let http = reqwest::Client::new();
    let (first, full_bytes) = get(&http, &format!("{base}/v1/changes")).await;
    assert_eq!(
        first.full.as_ref().map(Vec::len),
        Some(NODES),
        "no view: the whole list"
    );

    // 1 % of the nodes report a new load; one joins, one leaves.
    for i in (0..NODES).step_by(100) {
        let beat = Heartbeat {
            in_flight: 3,
            capacity: None,
            served: 1,
            ..Default::default()
        };
        master
            .registry()
            .heartbeat(&format!("n{i:05}"), &beat)
            .unwrap();
    }
    // A heartbeat that changes nothing is not a change.
    let same = Heartbeat {
        in_flight: 0,
        capacity: None,
        served: 2,
        ..Default::default()
    };
    master.registry().heartbeat("n00001", &same).unwrap();
    join(&master, NODES);
    assert!(master.registry().deregister("n00007"));

    let (delta, delta_bytes) = get(&http, &view_url(&base, &first, "0s")).await;
    assert!(
        delta.full.is_none(),
        "a follower with a view gets no whole list"
    );
    let kinds: Vec<_> = delta
        .events
        .iter()
        .map(|e| (e.kind, e.node.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [(EventKind::Join, "n02000"), (EventKind::Leave, "n00007")]
    );
    let mut changed: Vec<_> = delta.loads.iter().map(|l| l.id.as_str()).collect();
    changed.sort_unstable();
    let mut expected: Vec<String> = (0..NODES)
        .step_by(100)
        .map(|i| format!("n{i:05}"))
        .collect();
    expected.push(format!("n{NODES:05}")); // the new node's figures
    assert_eq!(
        changed,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        delta_bytes * 20 < full_bytes,
        "the changes ({delta_bytes} B) cost a fraction of the list ({full_bytes} B)"
    );
    eprintln!(
        "whole list {full_bytes} B, changes of 1 % of the loads and 2 events {delta_bytes} B"
    );

    // Nothing changed since: nothing but the versions.
    let (idle, _) = get(&http, &view_url(&base, &delta, "0s")).await;
    assert!(
        idle.full.is_none() && idle.events.is_empty() && idle.loads.is_empty(),
        "{idle:?}"
    );

    // A view of another master process (another epoch): the whole list.
    let other = NodeChanges {
        epoch: delta.epoch.wrapping_add(1),
        ..delta.clone()
    };
    let (restarted, _) = get(&http, &view_url(&base, &other, "0s")).await;
    assert_eq!(restarted.full.map(|f| f.len()), Some(NODES));
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_query_for_changes_answers_at_the_next_event() {
    let (master, base) = master().await;
    join(&master, 0);
    let http = reqwest::Client::new();
    let (first, _) = get(&http, &format!("{base}/v1/changes")).await;
    let asked = Instant::now();
    let waiting = {
        let (http, url) = (http.clone(), view_url(&base, &first, "30s"));
        tokio::spawn(async move { get(&http, &url).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "answered with nothing new");
    join(&master, 1);
    let (answer, _) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the join wakes the query")
        .unwrap();
    let took = asked.elapsed();
    assert_eq!(answer.events.len(), 1, "{answer:?}");
    assert!(
        took < Duration::from_millis(300) + Duration::from_secs(2),
        "{took:?}"
    );
    master.shutdown().await;
}

#[tokio::test]
async fn a_partial_or_bad_view_is_a_400() {
    let (master, base) = master().await;
    let http = reqwest::Client::new();
    for query in [
        "epoch=1&loads=2",
        "index=3",
        "epoch=1&index=2",
        "epoch=-1&index=0&loads=0",
        "epoch=1&index=0&loads=18446744073709551616",
        "epoch=1&index=x&loads=0",
        "epoch=1&index=0&loads=0&wait=1y",
    ] {
        let response = http
            .get(format!("{base}/v1/changes?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body = response.text().await.unwrap();
        assert!(body.contains("\"error\""), "{query}: {body}");
    }
    master.shutdown().await;
}

/// A view of this process whose index is ahead of the registry (forged, or confused) is no view:
/// it gets the whole list, not the ring's events, which it may never have seen.
#[tokio::test]
async fn an_index_from_the_future_of_this_process_gets_the_whole_list() {
    let (master, base) = master().await;
    let http = reqwest::Client::new();
    for i in 0..3 {
        join(&master, i);
    }
    let (first, _) = get(&http, &format!("{base}/v1/changes")).await;
    let ahead = NodeChanges {
        index: first.index + 1_000,
        ..first.clone()
    };
    let (answer, _) = get(&http, &view_url(&base, &ahead, "0s")).await;
    let full = answer.full.expect("the whole list");
    assert_eq!(full.len(), 3);
    assert!(answer.events.is_empty());
}
