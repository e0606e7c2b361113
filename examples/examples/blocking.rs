//! Blocking calls from a plain `fn main()`: no `#[tokio::main]`, no runtime to create. The
//! `BlockingRouter` follows a master and blocks the calling thread on each call, as the Go
//! original's `Call` did; `submit` + `wait` are its `Go` + `Waiter`.
//!
//! ```text
//! distribution-demo master &                       # registry on 127.0.0.1:3000
//! distribution-demo node --master 127.0.0.1:3000 &
//! cargo run -p distribution-examples --example blocking -- 127.0.0.1:3000
//! ```
//!
//! `examples/tests/blocking_calls.rs` runs [`run`] against real node processes.

use std::io::Write;
use std::time::Duration;

use distribution_client::blocking::BlockingRouter;
use distribution_client::{CallOptions, RouterConfig, ScatterOptions};
use distribution_examples::service::CalcClient;

fn main() -> anyhow::Result<()> {
    let master = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    run(&master, &mut std::io::stdout())
}

/// Calls the cluster of the master at `master` every way, writing what came back to `out`.
pub fn run(master: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let router = BlockingRouter::<CalcClient>::connect(master, RouterConfig::default())?;

    // Sync call (Go: Call): blocks until the reply, within the default 10 s deadline.
    let reply = router.call(|c, ctx| async move { c.sum(ctx, vec![2, 4, 6]).await })?;
    writeln!(out, "sum: {} from {}", reply.value?, reply.node)?;

    // Async call (Go: Go + Waiter): start it, do something else, wait for it.
    let later = router.submit(|c, ctx| async move { c.sum(ctx, vec![1, 2]).await });
    let quick = CallOptions::deadline(Duration::from_secs(2)).idempotent();
    let now = router.call_with(quick, |c, ctx| async move { c.sum(ctx, vec![10]).await })?;
    writeln!(
        out,
        "spawned: {}, quick: {}",
        later.wait()?.value?,
        now.value?
    )?;

    // Scatter/gather: results in the items' order.
    let items: Vec<Vec<i64>> = (0..8).map(|i| vec![i, i]).collect();
    let replies = router.scatter(items, ScatterOptions::default(), |c, ctx, v| async move {
        c.sum(ctx, v).await
    })?;
    let sums = replies
        .into_iter()
        .map(|r| r.value)
        .collect::<Result<Vec<i64>, _>>()?;
    writeln!(out, "scatter: {sums:?}")?;

    // From several threads at once: the router is Send + Sync + Clone.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let router = router.clone();
            std::thread::spawn(move || {
                router.call(move |c, ctx| async move { c.sum(ctx, vec![t, 100]).await })
            })
        })
        .collect();
    for thread in threads {
        let reply = thread.join().expect("the thread does not panic")?;
        writeln!(out, "thread: {} from {}", reply.value?, reply.node.id)?;
    }
    Ok(())
}
