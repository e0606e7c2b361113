//! The remote follower's tests against a real master: one secret for the registry and the
//! nodes, the watcher stopping with its last follower, load figures updated in place, and a
//! first answer that never comes. (The address rules are tested with the parser, in
//! `distribution_shared::registry_client`.)

use std::sync::Arc;
use std::time::Duration;

use super::*;
use distribution_master::Master;
use distribution_master::config::MasterConfig;
use distribution_master::registry::Registration;
use distribution_shared::ExposeSecret;

#[test]
fn one_secret_serves_the_registry_and_the_nodes_and_is_never_shown() {
    let from_remote = RemoteConfig::default()
        .with_secret(Some("s3cret".into()))
        .with_one_secret();
    assert_eq!(
        from_remote
            .router
            .secret
            .as_ref()
            .map(|s| s.expose_secret()),
        Some("s3cret")
    );
    let mut from_router = RemoteConfig::default();
    from_router.router.secret = Some("s3cret".into());
    let from_router = from_router.with_one_secret();
    assert_eq!(
        from_router.secret.as_ref().map(|s| s.expose_secret()),
        Some("s3cret")
    );
    assert!(!format!("{from_router:?}").contains("s3cret"));
    assert!(format!("{:?}", from_router.router).contains("REDACTED"));
}

fn config() -> RemoteConfig {
    RemoteConfig::default()
        .with_load_refresh(Duration::from_millis(100))
        .with_first_answer_timeout(Duration::from_millis(500))
}

#[tokio::test]
async fn watcher_stops_when_nobody_follows() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(listener, MasterConfig::default()).unwrap();
    let (feed, task) = spawn_watcher(&master.local_addr().to_string(), &config(), None)
        .await
        .unwrap();
    let copy = feed.clone();
    drop(feed);
    tokio::task::yield_now().await;
    assert!(!task.is_finished(), "a receiver is still alive");
    drop(copy);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the watcher stops")
        .unwrap();
    master.shutdown().await;
}

#[tarpc::service]
trait Echo {
    async fn echo(text: String) -> String;
}
distribution_shared::service_client!(EchoClient);

#[tokio::test]
async fn watcher_stops_when_the_router_is_dropped() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(listener, MasterConfig::default()).unwrap();
    let (feed, task) = spawn_watcher(&master.local_addr().to_string(), &config(), None)
        .await
        .unwrap();
    let router: CallRouter<EchoClient> = CallRouter::new(feed, RouterConfig::default());
    let clone = router.clone();
    drop(router);
    tokio::task::yield_now().await;
    assert!(!task.is_finished(), "a router clone is still alive");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the watcher stops with the router")
        .unwrap();
    master.shutdown().await;
}

#[tokio::test]
async fn load_reports_are_shared_across_answers_and_updated_in_place() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(listener, MasterConfig::default()).unwrap();
    let registry = master.registry().clone();
    registry
        .register(Registration::new("a", "127.0.0.1:1", 8))
        .unwrap();
    let mut feed = follow(&master.local_addr().to_string(), &config())
        .await
        .unwrap();
    let first = feed.borrow_and_update().clone();
    assert_eq!(first.members.len(), 1);
    let load = first.members[0].load.clone();
    assert_eq!((load.in_flight(), load.capacity()), (0, 8));
    let beat = distribution_shared::wire::Heartbeat {
        in_flight: 5,
        capacity: Some(8),
        served: 0,
        ..Default::default()
    };
    registry.heartbeat("a", &beat).unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while load.in_flight() != 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the load figure is refreshed without a change of the set");
    assert!(
        !feed.has_changed().unwrap(),
        "no new membership for a load update"
    );
    registry
        .register(Registration::new("b", "127.0.0.1:2", 8))
        .unwrap();
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        feed.wait_for(|m| m.members.len() == 2),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert!(
        Arc::ptr_eq(&next.members[0].load, &load),
        "same report for a"
    );
    assert!(next.index > first.index);
    master.shutdown().await;
}

#[tokio::test]
async fn connect_fails_when_no_master_answers() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let err = follow(&addr.to_string(), &config()).await.unwrap_err();
    assert!(
        matches!(err, ConnectError::Unreachable { .. }),
        "unexpected error: {err}"
    );
}

/// A "master" that takes connections and then says nothing more (a paused process: the kernel
/// still accepts): with `head`, after answering the event stream's head; without, not even
/// that. Its address, and the task holding the connections (abort it to close them).
async fn paused_master(head: bool) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            if head {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
            }
            held.push(stream);
        }
    });
    (addr, holder)
}

async fn real_master() -> Master {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Master::start(listener, MasterConfig::default()).unwrap()
}

#[tokio::test]
async fn connect_moves_past_a_master_that_accepts_and_never_answers() {
    // The first "master" takes connections and never reads or answers (a paused process: the
    // kernel still accepts); the second is a real master with one node.
    let (silent_addr, holder) = paused_master(false).await;
    let master = real_master().await;
    master
        .registry()
        .register(Registration::new("a", "127.0.0.1:1", 8))
        .unwrap();
    let masters = format!("{silent_addr},{}", master.local_addr());
    // 2 s for the first answer, the request timeout (5 s) longer than that: the silent master
    // may take its share (1 s), not all of it.
    let config = config().with_first_answer_timeout(Duration::from_secs(2));
    let feed = follow(&masters, &config)
        .await
        .unwrap_or_else(|e| panic!("connect through the second master: {e}"));
    assert_eq!(feed.borrow().members.len(), 1, "the second master's node");
    holder.abort();
    master.shutdown().await;
}

/// Registers a new node on `master` every 100 ms until `events` yields its join (at most 10 s):
/// a stream that switched masters reads the new one's events from then on.
async fn a_join_comes_through(
    master: &Master,
    events: &mut (impl futures::Stream<Item = distribution_shared::wire::MembershipEvent> + Unpin),
) {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for i in 1u16.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no join through the second master within 10 s"
        );
        let id = format!("late-{i}");
        master
            .registry()
            .register(Registration::new(&id, format!("127.0.0.2:{i}"), 8))
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(100), events.next()).await {
            Ok(Some(event)) => {
                assert_eq!(event.kind, distribution_shared::wire::EventKind::Join);
                return;
            }
            Ok(None) => panic!("the event stream ended"),
            Err(_) => {}
        }
    }
}

#[tokio::test]
async fn the_event_stream_moves_past_a_master_that_never_answers() {
    // The first "master" takes connections and never reads or answers.
    let (silent_addr, holder) = paused_master(false).await;
    let master = real_master().await;
    // `Duration::MAX` as "no idle bound" must not overflow the clock on the second master.
    let config = config()
        .with_request_timeout(Duration::from_millis(500))
        .with_events_idle_timeout(Duration::MAX);
    let mut events =
        Box::pin(events(&format!("{silent_addr},{}", master.local_addr()), &config).unwrap());
    a_join_comes_through(&master, &mut events).await;
    holder.abort();
    master.shutdown().await;
}

#[tokio::test]
async fn the_event_stream_moves_past_a_master_that_falls_silent() {
    // The first "master" answers the stream's head, then sends nothing, not even a keep-alive
    // (a process paused after it answered).
    let (mute_addr, holder) = paused_master(true).await;
    let master = real_master().await;
    let config = config().with_events_idle_timeout(Duration::from_millis(500));
    let mut events =
        Box::pin(events(&format!("{mute_addr},{}", master.local_addr()), &config).unwrap());
    a_join_comes_through(&master, &mut events).await;
    holder.abort();
    master.shutdown().await;
}
