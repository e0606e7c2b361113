//! Load for the fault tests: worker loops of checked `sum` calls through a router, what they
//! saw ([`Outcome`]), and waits on a master process's list. Shared by `faults.rs` and
//! `masters.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use distribution_client::remote::{self, RemoteConfig};
use distribution_client::{CallRouter, RouterConfig};
use distribution_examples::service::CalcClient;

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Calls answered right.
    pub ok: usize,
    /// What went wrong with the others.
    pub failures: Vec<String>,
    /// Calls answered per node id.
    pub per_node: HashMap<String, usize>,
}

impl Outcome {
    /// Fails the test, showing the first few failures, unless every call succeeded.
    pub fn assert_no_failure(&self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} failed: {:?}",
            self.failures.len(),
            self.ok + self.failures.len(),
            &self.failures[..self.failures.len().min(5)]
        );
    }

    pub fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.failures.extend(other.failures);
        for (node, n) in other.per_node {
            *self.per_node.entry(node).or_default() += n;
        }
    }
}

/// `workers` concurrent loops of `sum` calls, each until `stop` is set or `max_calls` calls,
/// checking every answer.
pub async fn drive(
    router: &CallRouter<CalcClient>,
    workers: usize,
    max_calls: usize,
    stop: Arc<AtomicBool>,
) -> Outcome {
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (router, stop) = (router.clone(), stop.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                for i in 0..max_calls {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (a, b) = (w as i64, i as i64 * 7);
                    let reply = router
                        .call(move |c, ctx| async move { c.sum(ctx, vec![a, b]).await })
                        .await;
                    match reply {
                        Ok(reply) if reply.value == Ok(a + b) => {
                            outcome.ok += 1;
                            *outcome
                                .per_node
                                .entry(reply.node.id.to_string())
                                .or_default() += 1;
                        }
                        Ok(reply) => outcome
                            .failures
                            .push(format!("wrong answer {:?}", reply.value)),
                        Err(err) => outcome.failures.push(err.to_string()),
                    }
                }
                outcome
            })
        })
        .collect();
    let mut total = Outcome::default();
    for task in tasks {
        total.merge(task.await.unwrap());
    }
    total
}

/// Sets `stop` after `after`.
pub fn stop_after(stop: &Arc<AtomicBool>, after: Duration) {
    let stop = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        stop.store(true, Ordering::Relaxed);
    });
}

/// Calls this router has completed, over all nodes.
pub fn served(router: &CallRouter<CalcClient>) -> u64 {
    router.stats().iter().map(|s| s.served).sum()
}

/// Polls the master's `GET /v1/nodes` until it lists `n` nodes (connection errors count as not
/// yet).
pub async fn wait_listed(registry: &str, n: usize, timeout: Duration) -> bool {
    let url = format!("http://{registry}/v1/nodes");
    super::wait_until(timeout, || {
        let url = url.clone();
        async move {
            let Ok(response) = reqwest::get(&url).await else {
                return false;
            };
            let Ok(body) = response.json::<serde_json::Value>().await else {
                return false;
            };
            body["nodes"]
                .as_array()
                .is_some_and(|nodes| nodes.len() == n)
        }
    })
    .await
}

/// A remote router over the masters `masters` (one or a comma-separated list) for idempotent
/// calls that give up on a silent node after 500 ms, following at `interval` with short retries
/// (50 ms doubling to 200 ms) and a 3-interval restart grace; waits until it sees `n` nodes.
pub async fn remote_router(masters: &str, interval: Duration, n: usize) -> CallRouter<CalcClient> {
    let router = remote::connect_with(
        masters,
        RemoteConfig::default()
            .with_router(
                RouterConfig::default()
                    .with_idempotent(true)
                    .with_attempt_timeout(Some(Duration::from_millis(500)))
                    .with_attempts(4),
            )
            .with_load_refresh(interval)
            .with_retry_base(Duration::from_millis(50))
            .with_retry_max(Duration::from_millis(200))
            .with_restart_grace(interval * 3),
    )
    .await
    .unwrap();
    assert!(
        router.wait_for_nodes(n, Duration::from_secs(20)).await,
        "the caller sees the {n} nodes"
    );
    router
}
