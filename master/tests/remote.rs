//! Blocking queries and the remote membership feed over real TCP: `GET /v1/nodes?index=N&wait=..`
//! answers on a change or after its wait, refuses bad parameters, outlives the request timeout and
//! ends at shutdown; a remote feed follows joins and leaves, refreshes load figures in place, and
//! converges after a master restart on the same port.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use distribution_client::Membership;
use distribution_client::remote::{self, ConnectError, RemoteConfig};
use distribution_master::registry::Registration;
use distribution_master::{Master, MasterConfig, Registry};
use distribution_shared::wire::NodeList;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

const BOUND: Duration = Duration::from_secs(10);

async fn master_on(addr: &str, config: MasterConfig) -> Master {
    // Rebinding the port of a master that just stopped may need a moment on a busy machine.
    let end = Instant::now() + BOUND;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Master::start(listener, config).unwrap(),
            Err(err) if Instant::now() < end => {
                eprintln!("rebinding {addr}: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("cannot bind {addr}: {err}"),
        }
    }
}

/// A master whose registrations (made in-process, never renewed) last the whole test.
async fn master() -> (Master, String) {
    let master = master_on(
        "127.0.0.1:0",
        MasterConfig::with_interval(Duration::from_secs(30)),
    )
    .await;
    let base = format!("http://{}", master.local_addr());
    (master, base)
}

fn join(registry: &Registry, id: &str, port: u16) {
    registry
        .register(Registration::new(id, format!("127.0.0.1:{port}"), 8))
        .unwrap();
}

async fn get(http: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let response = http.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn list(http: &reqwest::Client, url: &str) -> NodeList {
    let (status, body) = get(http, url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn ids(membership: &Membership) -> BTreeSet<String> {
    membership
        .members
        .iter()
        .map(|m| m.id.to_string())
        .collect()
}

async fn wait_for_ids(feed: &mut watch::Receiver<Membership>, want: &[&str]) -> Duration {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    let seen = tokio::time::timeout(BOUND, feed.wait_for(|m| ids(m) == want))
        .await
        .map(|seen| seen.is_ok());
    assert!(
        seen == Ok(true),
        "the feed never showed {want:?}; it shows {:?}",
        ids(&feed.borrow())
    );
    started.elapsed()
}

fn fast_config() -> RemoteConfig {
    RemoteConfig::default()
        .with_load_refresh(Duration::from_millis(200))
        .with_retry_base(Duration::from_millis(20))
        .with_retry_max(Duration::from_millis(100))
        .with_restart_grace(Duration::from_millis(300))
}

#[tokio::test]
async fn blocking_query_answers_on_a_change_or_after_its_wait() {
    let (master, base) = master().await;
    join(master.registry(), "a", 1);
    let http = reqwest::Client::new();
    let first = list(&http, &format!("{base}/v1/nodes")).await;
    assert_eq!(first.index, 1);

    // An index already passed (or from a previous master: greater) answers at once.
    for index in [0, 9] {
        let started = Instant::now();
        let answer = list(&http, &format!("{base}/v1/nodes?index={index}&wait=1m")).await;
        assert_eq!(answer.index, 1);
        assert!(started.elapsed() < BOUND);
    }

    // No change: the same list after the wait.
    let started = Instant::now();
    let answer = list(&http, &format!("{base}/v1/nodes?index=1&wait=300ms")).await;
    assert_eq!((answer.index, answer.nodes.len()), (1, 1));
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A change: answered at once with the new list.
    let waiting = {
        let (http, url) = (http.clone(), format!("{base}/v1/nodes?index=1&wait=1m"));
        tokio::spawn(async move {
            let answer = list(&http, &url).await;
            (answer, Instant::now())
        })
    };
    // Give the query time to reach the master (if it arrives later, it answers at once anyway).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let joined = Instant::now();
    join(master.registry(), "b", 2);
    let (answer, answered) = tokio::time::timeout(BOUND, waiting).await.unwrap().unwrap();
    assert_eq!(answer.index, 2);
    assert_eq!(answer.nodes.len(), 2);
    eprintln!(
        "blocking query answered {:?} after the join",
        answered.saturating_duration_since(joined)
    );
    assert!(answered.saturating_duration_since(joined) < Duration::from_secs(1));
}

#[tokio::test]
async fn bad_index_or_wait_gets_a_400_with_a_json_message() {
    let (_master, base) = master().await;
    let http = reqwest::Client::new();
    for query in [
        "index=x",
        "index=-1",
        "index=1&wait=30",
        "index=1&wait=1.5s",
        "index=1&wait=1d",
    ] {
        let (status, body) = get(&http, &format!("{base}/v1/nodes?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}"
        );
    }
    // `wait` without `index` is an ordinary read.
    let (status, _) = get(&http, &format!("{base}/v1/nodes?wait=bad")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn blocking_query_outlives_the_request_timeout() {
    let config = MasterConfig::default().with_request_timeout(Duration::from_millis(100));
    let master = master_on("127.0.0.1:0", config).await;
    let url = format!("http://{}/v1/nodes?index=0&wait=500ms", master.local_addr());
    let started = Instant::now();
    let (status, body) = get(&reqwest::Client::new(), &url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn shutdown_answers_open_blocking_queries() {
    let (master, base) = master().await;
    let waiting = tokio::spawn(async move {
        let http = reqwest::Client::new();
        get(&http, &format!("{base}/v1/nodes?index=0&wait=5m")).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    tokio::time::timeout(BOUND, master.shutdown())
        .await
        .expect("shutdown does not wait for the query's 5 minutes");
    let (status, _) = tokio::time::timeout(BOUND, waiting).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    eprintln!(
        "shutdown with an open blocking query took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn feed_follows_joins_and_leaves_and_refreshes_load_in_place() {
    let (master, base) = master().await;
    let registry = master.registry().clone();
    join(&registry, "a", 1);
    let mut feed = remote::follow(&base, &fast_config()).await.unwrap();
    assert_eq!(
        ids(&feed.borrow_and_update()),
        BTreeSet::from(["a".to_string()])
    );

    join(&registry, "b", 2);
    let took = wait_for_ids(&mut feed, &["a", "b"]).await;
    eprintln!("join seen by the feed after {took:?}");
    assert!(took < Duration::from_secs(1));

    let load = feed.borrow().members[0].load.clone();
    let beat = distribution_shared::wire::Heartbeat {
        in_flight: 3,
        capacity: Some(8),
        served: 0,
        ..Default::default()
    };
    registry.heartbeat("a", &beat).unwrap();
    let start = Instant::now();
    while load.in_flight() != 3 {
        assert!(start.elapsed() < BOUND, "load refreshed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("load figure refreshed after {:?}", start.elapsed());

    assert!(registry.deregister("b"));
    let took = wait_for_ids(&mut feed, &["a"]).await;
    eprintln!("leave seen by the feed after {took:?}");
    assert!(took < Duration::from_secs(1));
    master.shutdown().await;
}

#[tokio::test]
async fn feed_keeps_its_view_while_the_master_is_down_and_converges_after_a_restart() {
    // The registrations below never heartbeat: a long lease keeps them for the whole test.
    let config = MasterConfig::with_interval(Duration::from_secs(30));
    let first = master_on("127.0.0.1:0", config.clone()).await;
    let addr = first.local_addr().to_string();
    for (id, port) in [("a", 1), ("b", 2), ("c", 3)] {
        join(first.registry(), id, port);
    }
    let mut feed = remote::follow(&addr, &fast_config()).await.unwrap();
    assert_eq!(feed.borrow_and_update().members.len(), 3);
    let version = feed.borrow().index;

    first.shutdown().await;
    // Long enough for the watcher to notice and retry a few times.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(feed.borrow().members.len(), 3, "the last view is kept");
    assert_eq!(
        feed.borrow().index,
        version,
        "nothing published during the outage"
    );

    // The new master's index starts again from zero; "c" did not come back, "d" is new.
    let second = master_on(&addr, config).await;
    join(second.registry(), "a", 1);
    join(second.registry(), "d", 4);
    join(second.registry(), "b", 2);
    let took = wait_for_ids(&mut feed, &["a", "b", "d"]).await;
    eprintln!("view converged {took:?} after the master came back");
    assert!(
        feed.borrow().index > version,
        "the feed's version only grows"
    );
    second.shutdown().await;
}

#[tokio::test]
async fn feed_sends_the_cluster_secret() {
    let config = MasterConfig::default().with_secret(Some("s3cret".into()));
    let master = master_on("127.0.0.1:0", config).await;
    join(master.registry(), "a", 1);
    let addr = master.local_addr().to_string();
    let err = remote::follow(&addr, &fast_config()).await.unwrap_err();
    assert!(
        matches!(err, ConnectError::Refused { status, .. } if status == StatusCode::UNAUTHORIZED),
        "{err}"
    );
    let with_secret = fast_config().with_secret(Some("s3cret".into()));
    let feed = remote::follow(&addr, &with_secret).await.unwrap();
    assert_eq!(feed.borrow().members.len(), 1);
    master.shutdown().await;
}
