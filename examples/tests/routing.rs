//! The router against real nodes over TCP: least-used spreading, failover, deadlines, async
//! handles, scatter/gather, graceful shutdown and a master restart.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use distribution_client::{CallError, CallOptions, RouterConfig, ScatterOptions};
use support::{master, master_on, master_with_interval, node, node_for, router, wait_until};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_slow_calls_spread_ten_per_node() {
    let master = master().await;
    let nodes = [
        node(&master, Duration::from_millis(400)).await,
        node(&master, Duration::from_millis(400)).await,
        node(&master, Duration::from_millis(400)).await,
    ];
    let router = router(&master, 3, RouterConfig::default()).await;
    let handles: Vec<_> = (0..30)
        .map(|i| router.submit(move |client, ctx| async move { client.sum(ctx, vec![i, 1]).await }))
        .collect();
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for (i, handle) in handles.into_iter().enumerate() {
        let reply = handle.await.unwrap();
        assert_eq!(reply.value, Ok(i as i64 + 1));
        *per_node.entry(reply.node.id.to_string()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    for node in &nodes {
        let served = per_node[node.id()];
        assert!((9..=11).contains(&served), "uneven spread: {per_node:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_costs_no_call() {
    // A 5 s interval (15 s lease): the master cannot evict the victim during the test, so what
    // takes it out of routing is the router's own ejection.
    let master = master_with_interval(Duration::from_secs(5)).await;
    let mut nodes = vec![
        node(&master, Duration::from_millis(20)).await,
        node(&master, Duration::from_millis(20)).await,
        node(&master, Duration::from_millis(20)).await,
    ];
    // A long first ejection, so that the check at the end still finds the victim ejected
    // however long the run took after the kill.
    let config = RouterConfig::default().with_eject_base(Duration::from_secs(30));
    let router = router(&master, 3, config).await;
    let victim = nodes.remove(0);
    let victim_id = victim.id().to_string();
    let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let worker =
        |router: distribution_client::CallRouter<distribution_examples::service::CalcClient>,
         killed_at: Arc<std::sync::OnceLock<Instant>>| async move {
            let mut results = Vec::new();
            for i in 0..60i64 {
                // When the call started, relative to the kill (None: before it).
                let started_after = killed_at.get().map(|at| at.elapsed());
                let reply = router
                    .call(move |client, ctx| async move { client.sum(ctx, vec![i, i]).await })
                    .await;
                results.push((i, reply, started_after));
            }
            results
        };
    let workers: Vec<_> = (0..8)
        .map(|_| tokio::spawn(worker(router.clone(), killed_at.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    victim.kill().await;
    killed_at.set(Instant::now()).unwrap();
    let mut after_kill = 0;
    for worker in workers {
        for (i, reply, started_after) in worker.await.unwrap() {
            let reply = reply.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
            assert_eq!(reply.value, Ok(2 * i));
            if started_after.is_some() {
                after_kill += 1;
                assert_ne!(
                    reply.node.id.as_ref(),
                    victim_id,
                    "call {i}, started after the kill, was answered by the dead node"
                );
            }
        }
    }
    assert!(after_kill > 0, "the run went on after the kill");
    // Still registered (the lease has 15 s to run), yet out of this router's routing.
    assert!(
        master
            .master
            .registry()
            .list(tokio::time::Instant::now())
            .nodes
            .iter()
            .any(|n| n.id == victim_id),
        "the master has not evicted the victim yet"
    );
    let stats = router.stats();
    let victim_stats = stats
        .iter()
        .find(|s| s.node.id.as_ref() == victim_id)
        .expect("the router still knows the victim");
    assert!(victim_stats.ejected, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_exceeded_is_reported_with_the_node() {
    let master = master().await;
    let slow = node(&master, Duration::from_secs(5)).await;
    let router = router(&master, 1, RouterConfig::default()).await;
    let started = Instant::now();
    let err = router
        .call_with(
            CallOptions::deadline(Duration::from_millis(200)),
            |client, ctx| async move { client.sum(ctx, vec![1]).await },
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the deadline cut the call short"
    );
    match err {
        CallError::DeadlineExceeded { node, deadline } => {
            assert_eq!(node.unwrap().id.as_ref(), slow.id());
            assert_eq!(deadline, Duration::from_millis(200));
        }
        other => panic!("expected a deadline error, got {other}"),
    }
}

#[tokio::test]
async fn no_node_is_a_typed_error() {
    let master = master().await;
    let router = master
        .master
        .router::<distribution_examples::service::CalcClient>();
    let err = router
        .call(|client, ctx| async move { client.sum(ctx, vec![1]).await })
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NoNodeAvailable), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handles_run_concurrently() {
    let master = master().await;
    let node = node(&master, Duration::from_millis(300)).await;
    let router = router(&master, 1, RouterConfig::default()).await;
    let started = Instant::now();
    let handles: Vec<_> = (0..20i64)
        .map(|i| router.submit(move |client, ctx| async move { client.sum(ctx, vec![i]).await }))
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap().value, Ok(i as i64));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "20 calls of 300 ms ran concurrently, not one after another"
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_handle_cancels_its_call_on_the_node() {
    // A call of 60 s: gone from the node within 5 s only if dropping its handle cancelled it.
    let master = master().await;
    let node = node(&master, Duration::from_secs(60)).await;
    let router = router(&master, 1, RouterConfig::default()).await;
    let abandoned = router.submit(|client, ctx| async move { client.sum(ctx, vec![1]).await });
    assert!(
        wait_until(Duration::from_secs(5), || async {
            node.load().in_flight() == 1
        })
        .await
    );
    drop(abandoned);
    assert!(
        wait_until(Duration::from_secs(5), || async {
            node.load().in_flight() == 0
        })
        .await,
        "dropping the handle cancelled the call on the node (it would run 60 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scatter_returns_every_result_in_order_despite_a_node_dying() {
    let master = master().await;
    let victim = node(&master, Duration::from_millis(30)).await;
    let _others = [
        node(&master, Duration::from_millis(30)).await,
        node(&master, Duration::from_millis(30)).await,
    ];
    let router = router(&master, 3, RouterConfig::default()).await;
    let items: Vec<i64> = (0..90).collect();
    let scatter = router.scatter(
        items.clone(),
        ScatterOptions::default().with_concurrency(Some(6)),
        |client, ctx, i| async move { client.sum(ctx, vec![i, 1000]).await },
    );
    let killer = async {
        tokio::time::sleep(Duration::from_millis(120)).await;
        victim.kill().await;
    };
    let (replies, ()) = tokio::join!(scatter, killer);
    let replies = replies.unwrap();
    let values: Vec<i64> = replies.iter().map(|r| r.value.clone().unwrap()).collect();
    let expected: Vec<i64> = items.iter().map(|i| i + 1000).collect();
    assert_eq!(values, expected, "complete, in order, no duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_deregisters_and_finishes_calls_in_flight() {
    // A 5 s interval (15 s lease), so that only deregistration can empty the registry in time.
    let master = master_with_interval(Duration::from_secs(5)).await;
    let leaving = node(&master, Duration::from_millis(500)).await;
    let router = router(&master, 1, RouterConfig::default()).await;
    let handles: Vec<_> = (0..5i64)
        .map(|i| router.submit(move |client, ctx| async move { client.sum(ctx, vec![i]).await }))
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            leaving.load().in_flight() == 5
        })
        .await
    );
    let registry = master.master.registry().clone();
    let shutdown = tokio::spawn(leaving.shutdown());
    let asked = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || async { registry.is_empty() }).await,
        "the node left the registry long before its 15 s lease ran out"
    );
    // "At once": one request to the master, with 2 s for a busy machine (the lease, 15 s, cannot
    // pass for it).
    assert!(
        asked.elapsed() <= Duration::from_secs(2),
        "left the registry after {:?}",
        asked.elapsed()
    );
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(
            handle.await.unwrap().value,
            Ok(i as i64),
            "call {i} finished"
        );
    }
    shutdown.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_come_back_after_a_master_restart() {
    let first = master().await;
    let addr = first.master.local_addr().to_string();
    let nodes = [
        node_for(&addr, Duration::ZERO).await,
        node_for(&addr, Duration::ZERO).await,
    ];
    first.shutdown().await;
    let second = master_on(&addr).await;
    let registry = second.master.registry().clone();
    let restarted = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || async { registry.len() == 2 }).await,
        "both nodes registered again with the new master"
    );
    // At their next heartbeat (one interval, 100 ms); 2 s on top for a busy machine.
    let after = restarted.elapsed();
    assert!(
        after <= support::INTERVAL + Duration::from_secs(2),
        "registered again after {after:?}"
    );
    let router = router(&second, 2, RouterConfig::default()).await;
    let reply = router
        .call(|client, ctx| async move { client.sum(ctx, vec![20, 22]).await })
        .await
        .unwrap();
    assert_eq!(reply.value, Ok(42));
    assert!(nodes.iter().any(|n| n.id() == reply.node.id.as_ref()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_capacity_refuses_at_once_and_the_router_tries_another() {
    let master = master().await;
    let addr = master.master.local_addr().to_string();
    // Calls of 3 s: a refusal "at once" (1.5 s allowed, for a busy machine) cannot be a call
    // that waited for room.
    let full = support::node_with(&addr, Duration::from_secs(3), 2).await;
    // Two callers (two routers) that each see room for two calls: together they overfill it.
    let callers = [
        router(&master, 1, RouterConfig::default()).await,
        router(&master, 1, RouterConfig::default()).await,
    ];
    let started = Instant::now();
    let handles: Vec<_> = callers
        .iter()
        .flat_map(|r| {
            (0..2i64).map(move |i| r.submit(move |c, ctx| async move { c.sum(ctx, vec![i]).await }))
        })
        .map(|handle| tokio::spawn(async move { (handle.await, started.elapsed()) }))
        .collect();
    let mut refused = 0;
    for handle in handles {
        match handle.await.unwrap() {
            (Ok(reply), _) => assert!(reply.value.is_ok()),
            (Err(CallError::Transport { reason, .. }), after) => {
                assert!(reason.contains("at capacity"), "{reason}");
                assert!(
                    after < Duration::from_millis(1_500),
                    "refused at once, not after {after:?}"
                );
                refused += 1;
            }
            (Err(other), _) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(refused, 2, "two calls beyond the capacity of 2");
    assert_eq!(full.load().refused(), 2);

    // With a second node, the refused calls land there instead.
    let _spare = node_for(&addr, Duration::from_millis(600)).await;
    for r in &callers {
        assert!(r.wait_for_nodes(2, Duration::from_secs(5)).await);
    }
    let handles: Vec<_> = callers
        .iter()
        .flat_map(|r| {
            (0..2i64).map(move |i| r.submit(move |c, ctx| async move { c.sum(ctx, vec![i]).await }))
        })
        .collect();
    for handle in handles {
        assert!(handle.await.unwrap().value.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_deadlines_are_clamped_not_fatal() {
    let master = master().await;
    let _node = node(&master, Duration::ZERO).await;
    let router = router(&master, 1, RouterConfig::default()).await;
    for deadline in [Duration::MAX, Duration::from_secs(3 * 365 * 24 * 3600)] {
        let reply = router
            .call_with(CallOptions::deadline(deadline), |c, ctx| async move {
                c.sum(ctx, vec![1, 2]).await
            })
            .await
            .unwrap();
        assert_eq!(reply.value, Ok(3));
    }
    // The shared connection survived: an ordinary call still works.
    let reply = router
        .call(|c, ctx| async move { c.sum(ctx, vec![5]).await })
        .await
        .unwrap();
    assert_eq!(reply.value, Ok(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_survive_most_nodes_leaving_at_once() {
    // Scaling 5 nodes down to 1 while calls run: a call moved off a node that left does not use
    // up an attempt, so even with a single attempt allowed every call ends on the last node.
    let master = master().await;
    let stay = node(&master, Duration::from_millis(300)).await;
    let mut leaving = Vec::new();
    for _ in 0..4 {
        leaving.push(node(&master, Duration::from_millis(300)).await);
    }
    let router = router(&master, 5, RouterConfig::default()).await;
    let options = CallOptions::default().idempotent().with_attempts(1);
    let handles: Vec<_> = (0..20i64)
        .map(|i| {
            router.submit_with(options, move |client, ctx| async move {
                client.sum(ctx, vec![i, 1]).await
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            leaving.iter().all(|n| n.load().in_flight() > 0)
        })
        .await,
        "the calls spread over the leaving nodes too"
    );
    let stops: Vec<_> = leaving
        .into_iter()
        .map(|n| tokio::spawn(n.shutdown()))
        .collect();
    // Every answer comes from the staying node: the calls on a leaving node are moved as soon
    // as it leaves the router's view (its deregistration, the first step of its shutdown),
    // rather than waiting for it to drain them.
    for (i, handle) in handles.into_iter().enumerate() {
        let reply = handle.await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(reply.value, Ok(i as i64 + 1), "call {i}");
        assert_eq!(
            &*reply.node.id,
            stay.id(),
            "call {i} was answered by a leaving node"
        );
    }
    for stop in stops {
        stop.await.unwrap();
    }
    assert!(
        stay.load().served() >= 20,
        "the staying node took the moved calls"
    );
}
