//! The registry's unit tests: joins, heartbeats, leaves, evictions, replacements and the
//! coalesced publication, on the registry alone (no HTTP).

use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use distribution_shared::wire::NodeState;

use super::*;

fn reg(id: &str, addr: &str) -> Registration {
    Registration::new(id, addr, 4)
}

fn registry() -> Registry {
    Registry::new(&MasterConfig::with_interval(Duration::from_secs(1)))
}

#[tokio::test(start_paused = true)]
async fn lease_runs_out_after_the_ttl_and_not_before() {
    let r = registry();
    r.register(reg("a", "127.0.0.1:1")).unwrap();
    tokio::time::advance(Duration::from_millis(2900)).await;
    assert!(r.evict_expired(Instant::now()).is_empty());
    r.heartbeat("a", &Heartbeat::default()).unwrap();
    tokio::time::advance(Duration::from_millis(2900)).await;
    assert!(r.evict_expired(Instant::now()).is_empty(), "renewed lease");
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(r.evict_expired(Instant::now()), vec!["a".to_string()]);
    assert_eq!(
        r.heartbeat("a", &Heartbeat::default()),
        Err(RegistryError::UnknownNode("a".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn late_state_shows_before_eviction() {
    let r = registry();
    r.register(reg("a", "127.0.0.1:1")).unwrap();
    assert_eq!(r.list(Instant::now()).nodes[0].state, NodeState::Up);
    tokio::time::advance(Duration::from_millis(1600)).await;
    assert_eq!(r.list(Instant::now()).nodes[0].state, NodeState::Late);
}

#[tokio::test]
async fn same_id_is_idempotent_and_same_addr_new_id_replaces() {
    let r = registry();
    let rx = r.subscribe();
    r.register(reg("a", "127.0.0.1:1")).unwrap();
    r.register(reg("a", "127.0.0.1:1")).unwrap();
    assert_eq!(r.index(), 1, "re-registering does not change the set");
    r.register(reg("b", "127.0.0.1:1")).unwrap();
    let list = r.list(Instant::now());
    assert_eq!(list.nodes.len(), 1);
    assert_eq!(list.nodes[0].id, "b");
    assert_eq!(rx.borrow().members.len(), 1);
    assert_eq!(&*rx.borrow().members[0].id, "b");
    assert!(r.deregister("b"));
    assert!(!r.deregister("b"));
    assert!(r.is_empty());
}

#[tokio::test]
async fn full_registry_refuses_new_ids_but_not_known_ones() {
    let config = MasterConfig {
        max_nodes: 1,
        ..MasterConfig::default()
    };
    let r = Registry::new(&config);
    r.register(reg("a", "127.0.0.1:1")).unwrap();
    assert_eq!(
        r.register(reg("b", "127.0.0.1:2")),
        Err(RegistryError::Full(1))
    );
    r.register(reg("a", "127.0.0.1:1")).unwrap();
}

#[tokio::test]
async fn large_sets_are_published_by_the_publisher_task_and_nothing_is_lost() {
    let r = registry();
    let stop = CancellationToken::new();
    let publisher = tokio::spawn(r.clone().run_publisher(stop.clone()));
    // Let the task start, so that changes above the threshold are deferred to it.
    while !r.shared.deferred.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    let n = INLINE_PUBLISH_MAX + 100;
    for i in 0..n {
        r.register(reg(&format!("n{i:05}"), &format!("127.0.0.1:{}", 1000 + i)))
            .unwrap();
    }
    assert!(r.deregister("n00000"));
    let mut rx = r.subscribe();
    let index = r.index();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|m| m.index == index))
        .await
        .expect("published")
        .unwrap();
    let members = rx.borrow().members.clone();
    assert_eq!(members.len(), n - 1);
    assert!(members.windows(2).all(|w| w[0].id < w[1].id), "sorted");
    assert_eq!(r.list(Instant::now()).index, index);
    stop.cancel();
    publisher.await.unwrap();
    // Without the task, changes are published at once again.
    assert!(r.deregister("n00001"));
    assert_eq!(rx.borrow().index, r.index());
    assert_eq!(rx.borrow().members.len(), n - 2);
}

#[tokio::test]
async fn heartbeat_updates_shared_load() {
    let r = registry();
    r.register(reg("a", "127.0.0.1:1")).unwrap();
    let member = r.subscribe().borrow().members[0].clone();
    r.heartbeat(
        "a",
        &Heartbeat {
            in_flight: 7,
            capacity: Some(9),
            served: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(member.load.in_flight(), 7);
    assert_eq!(member.load.capacity(), 9);
    assert_eq!(r.list(Instant::now()).nodes[0].served, 3);
}

#[tokio::test(start_paused = true)]
async fn a_follower_of_changes_gets_no_whole_list_for_a_cluster_wide_late_and_back() {
    // More nodes than the event history: every one goes late, then beats again.
    let r = registry();
    let n = feed::HISTORY + 500;
    for i in 0..n {
        r.register(reg(
            &format!("n{i}"),
            &format!("127.0.{}.{}:1", i >> 8, i & 0xff),
        ))
        .unwrap();
    }
    let first = r.changes_since(None, &Filter::default());
    assert_eq!(first.full.as_ref().map(Vec::len), Some(n));
    let view = View {
        epoch: first.epoch,
        index: first.index,
        loads: first.loads_index,
    };
    tokio::time::advance(Duration::from_millis(2000)).await;
    assert!(r.evict_expired(Instant::now()).is_empty());
    for i in 0..n {
        r.heartbeat(&format!("n{i}"), &Heartbeat::default())
            .unwrap();
    }
    assert!(
        r.events_since(view.index).missed,
        "{n} late and {n} back events went past the history"
    );
    r.register(reg("newcomer", "127.0.99.1:1")).unwrap();
    let changes = r.changes_since(Some(view), &Filter::default());
    assert!(
        changes.full.is_none(),
        "the whole list ({n} nodes) for a follower that missed only late and back"
    );
    assert_eq!(
        changes
            .events
            .iter()
            .map(|e| (e.kind, e.node.as_str()))
            .collect::<Vec<_>>(),
        [(EventKind::Join, "newcomer")]
    );
}
