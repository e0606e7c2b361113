//! Two named services on one master, with real nodes on 127.0.0.1: every router (in-process,
//! remote, the gateway's) calls only nodes of its own service, so none meets a node that cannot
//! decode its requests; a router that requires a tag calls only the nodes that carry it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use distribution_client::{CallRouter, RouterConfig, remote};
use distribution_examples::service::CalcClient;
use distribution_examples::text::{TextClient, start_text_node};
use distribution_node::{NodeConfig, NodeHandle};
use tokio::net::TcpListener;

async fn text_node(registry: &str, tags: &[&str]) -> NodeHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = NodeConfig::new(registry)
        .with_heartbeat_interval(support::INTERVAL)
        .with_tags(tags.iter().map(|t| (*t).to_owned()).collect());
    let node = start_text_node(listener, config).unwrap();
    assert!(node.wait_registered(Duration::from_secs(10)).await);
    node
}

/// How many of `n` `upper` calls each node answered; every call must succeed.
async fn upper_calls(router: &CallRouter<TextClient>, n: usize) -> BTreeMap<String, usize> {
    let mut answered = BTreeMap::new();
    for i in 0..n {
        let reply = router
            .call(|client, ctx| async move { client.upper(ctx, format!("word {i}")).await })
            .await
            .expect("a text call succeeds");
        assert_eq!(reply.value, format!("WORD {i}"));
        *answered.entry(reply.node.id.to_string()).or_insert(0) += 1;
    }
    answered
}

async fn sum_calls(router: &CallRouter<CalcClient>, n: usize) -> BTreeMap<String, usize> {
    let mut answered = BTreeMap::new();
    for i in 0..n as i64 {
        let reply = router
            .call(|client, ctx| async move { client.sum(ctx, vec![i, 1]).await })
            .await
            .expect("a calc call succeeds");
        assert_eq!(reply.value, Ok(i + 1));
        *answered.entry(reply.node.id.to_string()).or_insert(0) += 1;
    }
    answered
}

fn ids(nodes: &[&NodeHandle]) -> Vec<String> {
    let mut ids: Vec<String> = nodes.iter().map(|n| n.id().to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_router_calls_only_the_nodes_of_its_service() {
    let master = support::master().await;
    let registry = master.master.local_addr().to_string();
    // Text nodes register first and last, so that a router that took every node would meet one
    // whatever its order.
    let t1 = text_node(&registry, &[]).await;
    let c1 = support::node(&master, Duration::ZERO).await;
    let c2 = support::node(&master, Duration::ZERO).await;
    let t2 = text_node(&registry, &["gpu"]).await;

    let calc = support::router(&master, 2, RouterConfig::default()).await;
    let text: CallRouter<TextClient> = master.master.router_with(RouterConfig::default());
    assert!(text.wait_for_nodes(2, Duration::from_secs(10)).await);
    assert_eq!(
        (calc.len(), text.len()),
        (2, 2),
        "each router holds its own service only"
    );

    let by_calc = sum_calls(&calc, 60).await;
    assert_eq!(
        by_calc.keys().cloned().collect::<Vec<_>>(),
        ids(&[&c1, &c2])
    );
    let by_text = upper_calls(&text, 60).await;
    assert_eq!(
        by_text.keys().cloned().collect::<Vec<_>>(),
        ids(&[&t1, &t2])
    );
    for stats in calc.stats().iter().chain(text.stats().iter()) {
        assert!(!stats.ejected, "no node failed its calls: {stats:?}");
    }

    // A remote caller of one service follows and calls only that service.
    let remote_text: CallRouter<TextClient> = remote::connect(&registry, RouterConfig::default())
        .await
        .unwrap();
    assert!(remote_text.wait_for_nodes(2, Duration::from_secs(10)).await);
    assert_eq!(remote_text.len(), 2);
    let by_remote = upper_calls(&remote_text, 40).await;
    assert_eq!(
        by_remote.keys().cloned().collect::<Vec<_>>(),
        ids(&[&t1, &t2])
    );

    // A router that requires a tag calls only the nodes that carry it.
    let gpu: CallRouter<TextClient> = master
        .master
        .router_with(RouterConfig::default().with_tags(vec!["gpu".into()]));
    assert!(gpu.wait_for_nodes(1, Duration::from_secs(10)).await);
    let by_gpu = upper_calls(&gpu, 20).await;
    assert_eq!(by_gpu.keys().cloned().collect::<Vec<_>>(), ids(&[&t2]));

    // The gateway routes each endpoint to its own service.
    let gateway = format!("http://{}", master.gateway_addr);
    for _ in 0..10 {
        let (status, body) = support::get(&format!("{gateway}/upper?text=abc"), false).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("ABC"), "{body}");
        assert!(body.contains(t1.id()) || body.contains(t2.id()), "{body}");
        let (status, body) = support::get(&format!("{gateway}/sum?values=1,2"), false).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(c1.id()) || body.contains(c2.id()), "{body}");
    }
    let (status, _) = support::get(&format!("{gateway}/upper"), false).await;
    assert_eq!(status, 400);
    let long = "x".repeat(5000);
    let (status, _) = support::get(&format!("{gateway}/upper?text={long}"), false).await;
    assert_eq!(status, 400);

    for node in [t1, c1, c2, t2] {
        node.shutdown().await;
    }
    master.shutdown().await;
}
