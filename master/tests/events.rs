//! The change feed over real TCP: `GET /v1/events` (server-sent events, resumable with
//! `Last-Event-ID`, a `lost` message beyond the bounded history, the cluster secret), and the
//! same events as Rust streams: `Master::events()` (join, late, back, eviction with reasons) and
//! `remote::events` (which reconnects and resumes across a master restart on the same port).

use std::time::{Duration, Instant};

use distribution_client::remote::{self, RemoteConfig};
use distribution_master::events::HISTORY;
use distribution_master::registry::Registration;
use distribution_master::{Master, MasterConfig, Registry};
use distribution_shared::wire::{EventKind, Heartbeat, MembershipEvent};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(10);

async fn master(config: MasterConfig) -> Master {
    Master::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), config).unwrap()
}

fn join(registry: &Registry, id: &str, port: u16) {
    registry
        .register(Registration::new(id, format!("127.0.0.1:{port}"), 8))
        .unwrap();
}

/// The SSE messages of `GET /v1/events` with `last_event_id`, as (event name, id, data).
async fn sse(
    addr: std::net::SocketAddr,
    last_event_id: Option<&str>,
    secret: Option<&str>,
) -> impl Stream<Item = (String, String, String)> {
    let mut request = reqwest::Client::new().get(format!("http://{addr}/v1/events"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "server-sent events"
    );
    response
        .bytes_stream()
        .eventsource()
        .map(|m| m.unwrap())
        .map(|m| (m.event, m.id, m.data))
}

async fn next<S: Stream<Item = T> + Unpin, T>(stream: &mut S) -> T {
    tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("an event within the bound")
        .expect("the stream goes on")
}

#[tokio::test]
async fn sse_sends_every_change_with_its_index_and_resumes_from_last_event_id() {
    let master = master(MasterConfig::with_interval(Duration::from_secs(30))).await;
    let registry = master.registry().clone();
    let mut live = Box::pin(sse(master.local_addr(), None, None).await);
    join(&registry, "a", 1);
    join(&registry, "b", 2);
    join(&registry, "c", 2); // replaces b: same address, new id
    assert!(registry.deregister("a"));
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (event, id, data) = next(&mut live).await;
        let parsed: MembershipEvent = serde_json::from_str(&data).unwrap();
        assert_eq!(id, parsed.index.to_string(), "the SSE id is the index");
        seen.push((event, parsed.index, parsed.node, parsed.reason));
    }
    let summary: Vec<(&str, u64, &str)> = seen
        .iter()
        .map(|(e, i, n, _)| (e.as_str(), *i, n.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("join", 1, "a"),
            ("join", 2, "b"),
            ("replacement", 3, "b"),
            ("join", 4, "c"),
            ("leave", 5, "a"),
        ]
    );
    assert!(seen[2].3.contains("replaced by c"), "{:?}", seen[2]);
    assert_eq!(
        registry.index(),
        5,
        "one index per event, as blocking queries see"
    );

    // Resuming after index 3 gives 4 and 5, then the new ones.
    let mut resumed = Box::pin(sse(master.local_addr(), Some("3"), None).await);
    assert_eq!(next(&mut resumed).await.1, "4");
    assert_eq!(next(&mut resumed).await.1, "5");
    join(&registry, "d", 4);
    assert_eq!(next(&mut resumed).await.1, "6");
}

#[tokio::test]
async fn a_reader_beyond_the_bounded_history_is_told_it_lost_events() {
    let master = master(MasterConfig::with_interval(Duration::from_secs(30))).await;
    let registry = master.registry().clone();
    for i in 0..(HISTORY + 10) {
        join(&registry, "n", 1000 + i as u16); // each a move (an event), after the first join
    }
    join(&registry, "m", 1); // and a few more
    assert!(registry.index() as usize > HISTORY);
    let mut stream = Box::pin(sse(master.local_addr(), Some("1"), None).await);
    let (event, _, _) = next(&mut stream).await;
    assert_eq!(event, "lost", "events 2.. are gone from the ring");
    let (_, first, _) = next(&mut stream).await;
    let oldest = registry.index() - HISTORY as u64 + 1;
    assert_eq!(
        first,
        oldest.to_string(),
        "then the oldest event still held"
    );
    // A bad Last-Event-ID is refused.
    let bad = reqwest::Client::new()
        .get(format!("http://{}/v1/events", master.local_addr()))
        .header("Last-Event-ID", "-1")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn the_events_need_the_cluster_secret() {
    let config =
        MasterConfig::with_interval(Duration::from_secs(30)).with_secret(Some("s3cret".into()));
    let master = master(config).await;
    let url = format!("http://{}/v1/events", master.local_addr());
    let refused = reqwest::get(&url).await.unwrap();
    assert_eq!(refused.status(), 401);
    let mut stream = Box::pin(sse(master.local_addr(), Some("0"), Some("s3cret")).await);
    join(master.registry(), "a", 1);
    assert_eq!(next(&mut stream).await.0, "join");
}

#[tokio::test]
async fn master_events_stream_tells_late_back_and_eviction_with_reasons() {
    let master = master(MasterConfig::with_interval(Duration::from_millis(100))).await;
    let registry = master.registry().clone();
    let mut events = Box::pin(master.events());
    join(&registry, "a", 1);
    let started = Instant::now();
    let mut kinds = Vec::new();
    let mut beat_sent = false;
    while kinds.last() != Some(&EventKind::Eviction) {
        let event = next(&mut events).await;
        assert_eq!(event.node, "a");
        if event.kind == EventKind::Late && !beat_sent {
            assert!(event.reason.starts_with("no heartbeat for"), "{event:?}");
            registry.heartbeat("a", &Heartbeat::default()).unwrap();
            beat_sent = true;
        }
        if event.kind == EventKind::Eviction {
            assert!(event.reason.starts_with("no heartbeat for"), "{event:?}");
        }
        kinds.push(event.kind);
        assert!(started.elapsed() < BOUND);
    }
    assert_eq!(
        kinds,
        [
            EventKind::Join,
            EventKind::Late,
            EventKind::Back,
            EventKind::Late,
            EventKind::Eviction
        ]
    );
    // The stream ends when the master shuts down.
    master.shutdown().await;
    assert!(
        tokio::time::timeout(BOUND, events.next())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn remote_events_follow_a_master_and_resume_across_its_restart() {
    let first = master(MasterConfig::with_interval(Duration::from_secs(30))).await;
    let addr = first.local_addr();
    let config = RemoteConfig::default()
        .with_retry_base(Duration::from_millis(20))
        .with_retry_max(Duration::from_millis(200));
    let mut events = Box::pin(remote::events(&addr.to_string(), &config).unwrap());
    // The stream connects in the background: send joins until the first one arrives.
    let mut port = 1;
    let first_event = loop {
        join(first.registry(), &format!("a{port}"), port);
        port += 1;
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
            break e;
        }
        assert!(port < 50, "the remote stream connects");
    };
    assert_eq!(first_event.kind, EventKind::Join);
    // Drain the joins made while connecting (they are all delivered, in order).
    let mut last = first_event.index;
    while last < first.registry().index() {
        let e = next(&mut events).await;
        assert_eq!(e.index, last + 1, "no gap, no repeat");
        last = e.index;
    }
    first.shutdown().await;
    // A new master on the same port: its index starts from zero; the stream reconnects,
    // resumes with its last id (beyond the new master's), and gets the new master's events.
    let second = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break Master::start(l, MasterConfig::default()).unwrap(),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    join(second.registry(), "b", 7);
    let e = next(&mut events).await;
    assert_eq!(
        (e.kind, e.node.as_str(), e.index),
        (EventKind::Join, "b", 1)
    );
}
