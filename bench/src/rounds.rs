//! One measured round of part 1: `concurrency` tasks calling one path in a loop, bounded in time
//! and in count, and the medians over rounds.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{stats, system};

/// The values every benchmark call adds, and their sum (what each answer is checked against).
pub const VALUES: [i64; 3] = [1_000, 2_000, 3_000];
/// The sum of [`VALUES`].
pub const EXPECTED: i64 = 6_000;

/// One path's figures at one concurrency (medians over the rounds).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PathFigures {
    /// Completed calls per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// CPU time the callers' thread spent per call (router or raw client, tarpc's dispatch,
    /// socket I/O and the benchmark loop), microseconds: the cost of a call on the caller's
    /// side, unlike wall-clock figures undisturbed by other load on the machine.
    pub cpu_us: f64,
    /// Calls measured, over all rounds.
    pub calls: u64,
}

/// One round of one path.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Completed calls per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// CPU time of the callers' thread per call.
    pub cpu_per_call: Duration,
    /// Calls completed.
    pub calls: u64,
}

/// `concurrency` tasks calling `call` in a loop until `duration` has passed or `max_calls` calls
/// were made in all; every answer is checked.
pub async fn load<F, Fut>(
    call: &Arc<F>,
    concurrency: usize,
    duration: Duration,
    max_calls: u64,
) -> anyhow::Result<Round>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<i64>> + Send + 'static,
{
    let per_task = (max_calls / concurrency as u64).max(1) as usize;
    let cpu_before = system::thread_cpu()?;
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task.min(1 << 16));
                while latencies.len() < per_task {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let value = call().await?;
                    latencies.push(sent.elapsed());
                    anyhow::ensure!(value == EXPECTED, "wrong sum: {value} != {EXPECTED}");
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = start.elapsed();
    let cpu = system::thread_cpu()?.saturating_sub(cpu_before);
    anyhow::ensure!(!all.is_empty(), "no call completed");
    all.sort_unstable();
    Ok(Round {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: stats::percentile(&all, 50.0).unwrap_or_default(),
        p99: stats::percentile(&all, 99.0).unwrap_or_default(),
        cpu_per_call: cpu / all.len() as u32,
        calls: all.len() as u64,
    })
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Medians over rounds.
pub fn summarize(rounds: &[Round]) -> PathFigures {
    let us = micros;
    PathFigures {
        rps: stats::median(rounds.iter().map(|r| r.rps)),
        p50_us: stats::median(rounds.iter().map(|r| us(r.p50))),
        p99_us: stats::median(rounds.iter().map(|r| us(r.p99))),
        cpu_us: stats::median(rounds.iter().map(|r| us(r.cpu_per_call))),
        calls: rounds.iter().map(|r| r.calls).sum(),
    }
}
