//! Part 1's connect figures: what the cluster handshake costs when a caller opens a connection.
//!
//! The handshake runs once per connection (the router keeps one per node), so its cost belongs
//! to dialling, not to calls: this measures dialling alone, to a node without a secret (TCP
//! only) and to a node with one (TCP + handshake), alternating, on the callers' pinned thread.

use std::time::{Duration, Instant};

use anyhow::Context;
use distribution_shared::handshake::{self, Key};
use serde::{Deserialize, Serialize};

use crate::stats;

/// Dialling figures, microseconds of wall-clock time per connection.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ConnectFigures {
    /// Connections opened per kind.
    pub connections: usize,
    /// Median TCP connect to the node without a secret.
    pub plain_p50_us: f64,
    /// 99th percentile of the same.
    pub plain_p99_us: f64,
    /// Median TCP connect + cluster handshake to the node with a secret.
    pub handshake_p50_us: f64,
    /// 99th percentile of the same.
    pub handshake_p99_us: f64,
}

/// Opens `count` connections of each kind, alternating, each dropped at once; every handshake
/// must succeed.
pub async fn measure(
    plain: &str,
    with_secret: &str,
    key: &Key,
    count: usize,
) -> anyhow::Result<ConnectFigures> {
    let timeout = Duration::from_secs(5);
    let mut plain_times = Vec::with_capacity(count);
    let mut handshake_times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let stream = handshake::connect(plain, None, None, timeout)
            .await
            .with_context(|| format!("dialling {plain}"))?;
        plain_times.push(started.elapsed());
        drop(stream);
        let started = Instant::now();
        let stream = handshake::connect(with_secret, None, Some(key), timeout)
            .await
            .with_context(|| format!("dialling {with_secret} with the handshake"))?;
        handshake_times.push(started.elapsed());
        drop(stream);
    }
    plain_times.sort_unstable();
    handshake_times.sort_unstable();
    let us = |sorted: &[Duration], p: f64| {
        stats::percentile(sorted, p)
            .unwrap_or_default()
            .as_secs_f64()
            * 1e6
    };
    Ok(ConnectFigures {
        connections: count,
        plain_p50_us: us(&plain_times, 50.0),
        plain_p99_us: us(&plain_times, 99.0),
        handshake_p50_us: us(&handshake_times, 50.0),
        handshake_p99_us: us(&handshake_times, 99.0),
    })
}
