//! A master process paused with SIGSTOP for three TTLs and resumed evicts none of its nodes
//! (issue #13, self-preservation): its reaper sees its own tick come far too late and renews
//! every lease before judging any, and the nodes' next heartbeats arrive within an interval.
//! Without it, the first tick after SIGCONT would evict every node at once. A remote caller
//! calling throughout (its follower stalls with the master) never sees a call fail.

mod support;

use std::time::{Duration, Instant};

use distribution_client::RouterConfig;
use distribution_client::remote;
use distribution_examples::service::CalcClient;
use support::procs::{node_list, start_master, start_node};

const INTERVAL_MS: u64 = 300;
const NODES: usize = 3;

async fn listed(registry: &str) -> Option<usize> {
    Some(node_list(registry).await?.nodes.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_master_evicts_no_node_when_it_resumes() {
    let (master, registry, _gateway) = start_master(INTERVAL_MS, &[]);
    let _nodes: Vec<_> = (0..NODES).map(|_| start_node(&registry, &[])).collect();
    let started = Instant::now();
    while listed(&registry).await != Some(NODES) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the nodes register"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ttl = Duration::from_millis(INTERVAL_MS) * distribution_shared::defaults::TTL_INTERVALS;
    let router = remote::connect::<CalcClient>(&registry, RouterConfig::default())
        .await
        .unwrap();
    assert!(router.wait_for_nodes(NODES, Duration::from_secs(10)).await);
    let stop_calls = tokio_util::sync::CancellationToken::new();
    let caller = {
        let (router, stop) = (router.clone(), stop_calls.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            // Bounded: one call every 20 ms until told to stop (about 8 s here).
            while !stop.is_cancelled() && ok < 10_000 {
                match router
                    .call(|c, ctx| async move { c.sum(ctx, vec![2, 3]).await })
                    .await
                {
                    Ok(reply) if reply.value == Ok(5) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };

    master.signal("STOP");
    tokio::time::sleep(ttl * 3).await;
    master.signal("CONT");

    // Polled for 2 TTLs after the resume: every node stays listed at every answer.
    let resumed = Instant::now();
    let mut polls = 0;
    while resumed.elapsed() < ttl * 2 {
        match listed(&registry).await {
            Some(n) => {
                assert_eq!(
                    n,
                    NODES,
                    "a node was evicted after the pause ({:?} in)",
                    resumed.elapsed()
                );
                polls += 1;
            }
            None => assert!(
                resumed.elapsed() < ttl,
                "the master does not answer after SIGCONT"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(polls >= 10, "polled throughout ({polls} answers)");
    stop_calls.cancel();
    let (ok, failed) = caller.await.unwrap();
    assert!(
        failed.is_empty(),
        "calls failed through the pause: {failed:?}"
    );
    assert!(ok >= 50, "the caller kept calling ({ok} calls)");
    eprintln!("{ok} calls through the pause, none failed");
}
