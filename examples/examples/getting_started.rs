//! Getting started: a service of your own, a master, two nodes and a caller, in one program.
//!
//! ```text
//! cargo run -p distribution-examples --example getting_started
//! ```
//!
//! The README's "Getting started" walks through this file. In a real cluster the three parts
//! run on different machines: the master (`Master::start`, or the `distribution-master`
//! binary), the nodes (`distribution_node::start` in your node program) and the callers
//! (`master.router()` in-process, or `distribution_client::remote::connect` from anywhere).
//! `examples/tests/getting_started.rs` runs [`run`] and checks what it prints.

use std::io::Write;
use std::time::Duration;

use distribution_client::CallOptions;
use distribution_master::{Master, MasterConfig};
use distribution_node::work::{self, Stopped};
use distribution_node::{NodeConfig, handler};
use tarpc::context;
use tokio::net::TcpListener;

/// The service: any `#[tarpc::service]` trait.
#[tarpc::service]
pub trait Primes {
    /// Whether `n` is prime (quick).
    async fn is_prime(n: u64) -> bool;
    /// How many primes are below `limit` (CPU-heavy: run off the async workers, stopped when
    /// the call's deadline passes or the caller gives up).
    async fn count_below(limit: u64) -> Result<u64, Stopped>;
}

// Makes `PrimesClient` routable (the router learns its request and response types).
distribution_client::service_client!(PrimesClient);

/// The node's implementation.
#[derive(Clone)]
struct PrimesServer;

impl Primes for PrimesServer {
    async fn is_prime(self, _: context::Context, n: u64) -> bool {
        prime(n)
    }

    async fn count_below(self, ctx: context::Context, limit: u64) -> Result<u64, Stopped> {
        // CPU work never runs in the `async fn` itself: `run_blocking` moves it to the node's
        // bounded pool, and `stop` turns true when nobody waits for the answer any more.
        work::run_blocking(&ctx, move |stop| {
            let mut count = 0;
            for n in 0..limit {
                if n % 4096 == 0 && stop.requested() {
                    return None;
                }
                count += u64::from(prime(n));
            }
            Some(count)
        })
        .await?
        .ok_or(Stopped)
    }
}

fn prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The library logs through `tracing`; without a subscriber nothing is printed.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,tarpc::client::in_flight_requests=off,tarpc::server::in_flight_requests=off".into()),
        )
        .init();
    run(&mut std::io::stdout()).await
}

/// The whole cluster in this process; what the caller got is written to `out`.
pub async fn run(out: &mut impl Write) -> anyhow::Result<()> {
    // 1. The master: the registry nodes announce themselves to (port 0: any free port).
    let master = Master::start(
        TcpListener::bind("127.0.0.1:0").await?,
        MasterConfig::default(),
    )?;
    let registry = master.local_addr().to_string();

    // 2. Two nodes serving `Primes`, each registering with the master and heartbeating.
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let node = distribution_node::start(
            listener,
            NodeConfig::new(registry.clone()),
            handler!(PrimesServer.serve()),
        )?;
        node.wait_registered(Duration::from_secs(5)).await;
        nodes.push(node);
    }

    // 3. A caller. The generated client over the router's stub: every call goes to the
    //    least-used node, with failover to another one.
    let router = master.router::<PrimesClient>();
    router.wait_for_nodes(2, Duration::from_secs(5)).await;
    let primes = PrimesClient::from(router.stub());
    writeln!(
        out,
        "97 is prime: {}",
        primes.is_prime(context::current(), 97).await?
    )?;
    let below = primes.count_below(context::current(), 100_000).await??;
    writeln!(out, "primes below 100000: {below}")?;

    // The closure API says which node answered, and takes per-call options.
    let quick = CallOptions::deadline(Duration::from_secs(2)).idempotent();
    let reply = router
        .call_with(quick, |c, ctx| async move { c.is_prime(ctx, 7919).await })
        .await?;
    writeln!(out, "7919 is prime: {} (node {})", reply.value, reply.node)?;

    // A computation that cannot finish in time: the deadline stops it on the node too.
    let mut ctx = context::current();
    ctx.deadline = std::time::Instant::now() + Duration::from_millis(300);
    let late = primes.count_below(ctx, u64::MAX).await;
    writeln!(out, "the endless count: {}", outcome(&late))?;

    // Graceful stops: nodes leave the master and finish their calls.
    for node in nodes {
        node.shutdown().await;
    }
    master.shutdown().await;
    Ok(())
}

/// `late`'s outcome in words.
fn outcome(late: &Result<Result<u64, Stopped>, tarpc::client::RpcError>) -> &'static str {
    match late {
        Err(tarpc::client::RpcError::DeadlineExceeded) | Ok(Err(Stopped)) => {
            "stopped at its deadline"
        }
        Ok(Ok(_)) => "finished (impossible)",
        Err(_) => "failed",
    }
}
