//! The router's own unit tests: how a new report and a new membership reach the pick, and
//! what `wait_for_nodes` waits for (no node is dialled).

use super::*;
use crate::membership::{LoadReport, Member};

use testing::EchoClient;

fn member(id: &str, in_flight: u32) -> Member {
    Member::new(
        id,
        &format!("127.0.0.1:{}", 1 + id.len()),
        Arc::new(LoadReport::new(in_flight, 1024)),
    )
}

fn picked(router: &CallRouter<EchoClient>) -> String {
    let call = router.shared.pick(&[]).expect("a node");
    call.endpoint().node.id.to_string()
}

#[tokio::test]
async fn a_node_registered_again_under_the_same_address_is_scored_on_its_new_report() {
    let (a, b) = (member("a", 0), member("bb", 10));
    let first = Membership {
        index: 1,
        members: Arc::from(vec![a.clone(), b.clone()]),
    };
    let (_tx, rx) = watch::channel(first);
    let router = CallRouter::<EchoClient>::new(rx, RouterConfig::default());
    assert_eq!(picked(&router), "a", "a reports 0 calls, bb 10");
    // `a` is evicted and registers again between two snapshots: same id, same address, a
    // new report (the old one is never updated again). It is now busy.
    let again = member("a", 100);
    a.load.set(0, 1024);
    let second = Membership {
        index: 3,
        members: Arc::from(vec![again, b]),
    };
    router.shared.sync(&second);
    assert_eq!(
        picked(&router),
        "bb",
        "the router reads a's new report (100 calls), not the frozen one (0)"
    );
}

// One thread: the feed lists the nodes before the router's follow task has run; a wait
// that answered from the feed alone would return `true` with the router knowing none.
#[tokio::test(flavor = "current_thread")]
async fn wait_for_nodes_returns_once_the_router_itself_knows_them() {
    let (tx, rx) = watch::channel(Membership::default());
    let router = CallRouter::<EchoClient>::new(rx, RouterConfig::default());
    tx.send(Membership {
        index: 1,
        members: Arc::from(vec![member("a", 0), member("bb", 0), member("ccc", 0)]),
    })
    .unwrap();
    assert!(router.wait_for_nodes(3, Duration::from_secs(5)).await);
    assert_eq!(router.len(), 3, "a call made now can reach every node");
    assert!(
        !router.wait_for_nodes(4, Duration::from_millis(50)).await,
        "a fourth node never comes"
    );
}
