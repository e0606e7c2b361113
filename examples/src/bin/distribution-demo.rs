//! `distribution-demo`: the demo program, as `master` (registry + gateway) or `node`.
//!
//! ```text
//! distribution-demo master [--registry 0.0.0.0:3000] [--gateway 0.0.0.0:3001]
//! distribution-demo node --master HOST:PORT [--listen 0.0.0.0:0] [--advertise HOST:PORT]
//! ```

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use distribution_examples::cluster::{DemoMaster, start_node};
use distribution_master::{MasterConfig, RouterConfig};
use distribution_node::NodeConfig;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "distribution demo: a master with /sum and /palindrom, or a node"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Run the registry (nodes register here) and the HTTP gateway (/sum, /palindrom).
    Master {
        /// Where the registry API listens.
        #[arg(long, env = "DIST_REGISTRY", default_value = "0.0.0.0:3000")]
        registry: String,
        /// Where the HTTP gateway listens.
        #[arg(long, env = "DIST_GATEWAY", default_value = "0.0.0.0:3001")]
        gateway: String,
        /// How often nodes heartbeat, in milliseconds.
        #[arg(long, env = "DIST_HEARTBEAT_INTERVAL_MS", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
        heartbeat_interval_ms: u64,
        /// How long a silent node keeps its lease, in milliseconds (default: 3 intervals).
        #[arg(long, env = "DIST_TTL_MS", value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
        ttl_ms: Option<u64>,
    },
    /// Run a node serving the Calc service and registering with the master.
    Node {
        /// The master's registry API, HOST:PORT.
        #[arg(long, env = "DIST_MASTER")]
        master: String,
        /// Where the node's RPC server listens (port 0: the OS picks one).
        #[arg(long, env = "DIST_LISTEN", default_value = "0.0.0.0:0")]
        listen: String,
        /// The HOST:PORT callers should dial, if not the address the master sees.
        #[arg(long, env = "DIST_ADVERTISE")]
        advertise: Option<String>,
        /// The node's id (default: a fresh node-<uuid>).
        #[arg(long, env = "DIST_NODE_ID")]
        id: Option<String>,
        /// How many calls the node runs at once.
        #[arg(long, env = "DIST_CAPACITY", default_value_t = distribution_shared::defaults::NODE_CAPACITY,
              value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        capacity: u32,
        /// Simulated work time of each `sum`, in milliseconds (the Go example slept 1000).
        #[arg(long, env = "DIST_SUM_DELAY_MS", default_value_t = 0)]
        sum_delay_ms: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().role {
        Role::Master {
            registry,
            gateway,
            heartbeat_interval_ms,
            ttl_ms,
        } => {
            let mut config =
                MasterConfig::with_interval(Duration::from_millis(heartbeat_interval_ms));
            if let Some(ttl) = ttl_ms {
                config.ttl = Duration::from_millis(ttl);
            }
            let registry = TcpListener::bind(&registry)
                .await
                .with_context(|| format!("cannot listen on {registry}"))?;
            let gateway = TcpListener::bind(&gateway)
                .await
                .with_context(|| format!("cannot listen on {gateway}"))?;
            let demo = DemoMaster::start(registry, gateway, config, RouterConfig::default())?;
            distribution_node::shutdown::signal().await;
            demo.shutdown().await;
        }
        Role::Node {
            master,
            listen,
            advertise,
            id,
            capacity,
            sum_delay_ms,
        } => {
            let listener = TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let mut config = NodeConfig::new(master);
            config.advertise = advertise;
            config.id = id;
            config.capacity = capacity;
            let node = start_node(listener, config, Duration::from_millis(sum_delay_ms))?;
            let stop = node.shutdown_token();
            tokio::select! {
                _ = distribution_node::shutdown::signal() => node.shutdown().await,
                _ = stop.cancelled() => node.stopped().await,
            }
        }
    }
    Ok(())
}
