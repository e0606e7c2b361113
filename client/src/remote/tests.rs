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

#[tokio::test]
async fn connect_moves_past_a_master_that_accepts_and_never_answers() {
    // The first "master" takes connections and never reads or answers (a paused process: the
    // kernel still accepts); the second is a real master with one node.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(listener, MasterConfig::default()).unwrap();
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
