//! The demo's `client` mode: a job run from its own process against a running cluster, through a
//! remote router ([`distribution_client::remote`]) that follows the master's node list and calls
//! the nodes directly.
//!
//! - [`run_sum`]: `sum` of the same values, `repeat` times, `concurrency` calls at once;
//! - [`run_palindrome`]: the binary palindromes up to `n`, scattered in chunks over the nodes;
//! - [`watch()`]: prints the node set as one JSON line at start and at every change (what the
//!   tests read to see a join or a leave from another process).
//!
//! Jobs report their progress on an [`indicatif::ProgressBar`] and end with a [`Summary`]: the
//! result, the time, and how many calls each node served.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use distribution_client::remote::{self, ConnectError, RemoteConfig};
use distribution_client::{
    CallError, CallRouter, Membership, NodeStats, ScatterError, ScatterOptions,
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::watch;

use crate::palindrome;
use crate::service::{CalcClient, SumError, palindromes_answer};

/// How long a client waits for a first node when the master lists none yet.
pub const FIRST_NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a client job failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The master could not be followed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The master lists no node.
    #[error("the master lists no node (waited {0:?})")]
    NoNodes(Duration),
    /// A call failed on every node it tried.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A chunk of a scattered job failed.
    #[error(transparent)]
    Scatter(#[from] ScatterError),
    /// The sum does not fit in an `i64`.
    #[error(transparent)]
    Sum(#[from] SumError),
}

/// What a job did: shown at its end.
#[derive(Debug, Clone)]
pub struct Summary {
    /// What ran, e.g. `sum of [2, 4, 6]`.
    pub job: String,
    /// The answer.
    pub result: String,
    /// How many calls the job made.
    pub calls: u64,
    /// How long the job took, from its first call to its last reply.
    pub elapsed: Duration,
    /// The calls each node served for this client, from [`CallRouter::stats`].
    pub per_node: Vec<NodeStats>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "job:    {}", self.job)?;
        writeln!(f, "result: {}", self.result)?;
        writeln!(
            f,
            "time:   {:.3} s for {} call(s)",
            self.elapsed.as_secs_f64(),
            self.calls
        )?;
        writeln!(f, "calls per node:")?;
        for node in &self.per_node {
            writeln!(f, "  {:<44} {:>6}", node.node.to_string(), node.served)?;
        }
        Ok(())
    }
}

/// A router over the cluster of the master at `master`, with at least one node known (waits up
/// to [`FIRST_NODE_TIMEOUT`] for one).
pub async fn connect(
    master: &str,
    config: RemoteConfig,
) -> Result<CallRouter<CalcClient>, ClientError> {
    let router = remote::connect_with::<CalcClient>(master, config).await?;
    if !router.wait_for_nodes(1, FIRST_NODE_TIMEOUT).await {
        return Err(ClientError::NoNodes(FIRST_NODE_TIMEOUT));
    }
    Ok(router)
}

/// A progress bar for `total` calls on stderr; hidden when stderr is not a terminal or when
/// there is a single call.
pub fn progress_bar(total: u64) -> ProgressBar {
    if total <= 1 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} calls (eta {eta})",
    )
    .expect("the template is valid");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Adds `values` on the nodes `repeat` times, `concurrency` calls at once (default: two per known
/// node), advancing `progress` at each reply.
pub async fn run_sum(
    router: &CallRouter<CalcClient>,
    values: Vec<i64>,
    repeat: u64,
    concurrency: Option<usize>,
    progress: &ProgressBar,
) -> Result<Summary, ClientError> {
    let concurrency = concurrency.unwrap_or(2 * router.len()).max(1);
    let started = Instant::now();
    let mut replies = futures::stream::iter(0..repeat)
        .map(|_| {
            let values = values.clone();
            router.call(move |client, ctx| {
                let values = values.clone();
                async move { client.sum(ctx, values).await }
            })
        })
        .buffer_unordered(concurrency);
    let mut total = None;
    while let Some(reply) = replies.next().await {
        total = Some(reply?.value?);
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(Summary {
        job: format!("sum of {values:?}, {repeat} time(s), {concurrency} at once"),
        result: total.map_or_else(|| "(no call)".into(), |t| t.to_string()),
        calls: repeat,
        elapsed: started.elapsed(),
        per_node: router.stats(),
    })
}

/// Counts the binary palindromes in `0..=n`, cut in chunks over the known nodes and scattered
/// with `concurrency` chunks at once (default: two per node), advancing `progress` per chunk.
pub async fn run_palindrome(
    router: &CallRouter<CalcClient>,
    n: u64,
    concurrency: Option<usize>,
    progress: &ProgressBar,
) -> Result<Summary, ClientError> {
    let parts = palindrome::chunks(n, router.len());
    let chunks = parts.len() as u64;
    progress.set_length(chunks);
    let mut options = ScatterOptions::default().with_concurrency(concurrency);
    // As in the gateway: a big chunk takes seconds on a slow machine.
    options.call.deadline = Some(Duration::from_secs(120));
    let started = Instant::now();
    let replies = router
        .scatter(parts, options, |client, ctx, (start, end)| async move {
            let count = palindromes_answer(client.palindromes(ctx, start, end).await);
            if count.is_ok() {
                progress.inc(1);
            }
            count
        })
        .await?;
    progress.finish_and_clear();
    let count: u64 = replies.iter().map(|r| r.value).sum();
    Ok(Summary {
        job: format!("binary palindromes in 0..={n}, {chunks} chunk(s)"),
        result: count.to_string(),
        calls: chunks,
        elapsed: started.elapsed(),
        per_node: router.stats(),
    })
}

/// Writes the node set as one JSON line now and at every change until the feed closes or `out`
/// fails: `{"version":2,"nodes":[{"id":"n1","addr":"127.0.0.1:4000"}]}`.
pub async fn watch(
    mut feed: watch::Receiver<Membership>,
    mut out: impl Write,
) -> std::io::Result<()> {
    loop {
        let line = {
            let membership = feed.borrow_and_update();
            let nodes: Vec<_> = membership
                .members
                .iter()
                .map(|m| json!({ "id": &*m.id, "addr": &*m.addr }))
                .collect();
            json!({ "version": membership.index, "nodes": nodes })
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        if feed.changed().await.is_err() {
            return Ok(());
        }
    }
}

/// Writes each membership event of `events` as a JSON line to `out` (`client watch --events`),
/// until the stream ends.
pub async fn watch_events(
    events: impl futures::Stream<Item = distribution_shared::wire::MembershipEvent>,
    mut out: impl Write,
) -> std::io::Result<()> {
    use futures::StreamExt;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        writeln!(out, "{}", serde_json::to_string(&event)?)?;
        out.flush()?;
    }
    Ok(())
}
