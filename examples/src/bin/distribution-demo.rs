//! `distribution-demo`: the demo program, as `master` (registry + gateway), `node`, or `client`.
//!
//! ```text
//! distribution-demo master [--registry 0.0.0.0:3000] [--gateway 0.0.0.0:3001] [--max-nodes N]
//!                          [--max-connections-per-ip N] [--idle-timeout-ms MS]
//! distribution-demo node --master HOST:PORT[,HOST:PORT...] [--listen 0.0.0.0:0] [--advertise HOST:PORT]
//!                        [--max-connections N] [--max-connections-per-ip N] [--metrics-listen HOST:PORT]
//!                        [--worker-threads N] [--call-threads N] [--cpu-threads N]
//! distribution-demo client --master HOST:PORT[,HOST:PORT...] sum --values 2,4,6 [--repeat N] [--concurrency C]
//! distribution-demo client --master HOST:PORT palindrome --n N [--concurrency C]
//! distribution-demo health [HOST:PORT]
//! distribution-demo client --master HOST:PORT watch [--events [--after N]]
//! ```
//!
//! The master mode is `distribution-master` plus the gateway: its flags, the security flags and
//! `--log-format` are the structs of `distribution_master::cli`, flattened here.

/// mimalloc: fewer cycles per allocation than glibc's malloc on the HTTP and RPC paths.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use distribution_client::{RemoteConfig, RouterConfig};
use distribution_examples::cluster::{DemoMaster, start_faulty_node, start_node};
use distribution_examples::gateway::{parse_n, parse_values};
use distribution_examples::text::start_text_node;
use distribution_examples::{client, telemetry};
use distribution_master::cli::{Logging, MasterArgs, Security};
use distribution_node::{NodeConfig, NodeTls};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    version,
    about = "distribution demo: a master with /sum and /palindrom, or a node"
)]
struct Cli {
    #[command(flatten)]
    logging: Logging,
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Run the registry (nodes register here) and the HTTP gateway (/sum, /palindrom).
    ///
    /// The registry's flags are those of `distribution-master` (the same code); `--gateway` is
    /// the demo's own.
    Master {
        #[command(flatten)]
        master: MasterArgs,
        /// Where the HTTP gateway listens.
        #[arg(long, env = "DIST_GATEWAY", default_value = "0.0.0.0:3001")]
        gateway: String,
    },
    /// Run a node serving the Calc service and registering with the master.
    Node {
        /// The masters' registry APIs, HOST:PORT or a comma-separated list
        /// (`m1:3000,m2:3000`): the node keeps a lease with each of them.
        #[arg(long, env = "DIST_MASTER")]
        master: String,
        /// Where the node's RPC server listens (port 0: the OS picks one).
        #[arg(long, env = "DIST_LISTEN", default_value = "0.0.0.0:0")]
        listen: String,
        /// The HOST:PORT callers should dial, if not the address the master sees.
        #[arg(long, env = "DIST_ADVERTISE")]
        advertise: Option<String>,
        /// The node's id (default: a fresh `node-<uuid>`).
        #[arg(long, env = "DIST_NODE_ID")]
        id: Option<String>,
        /// How many calls the node runs at once.
        #[arg(long, env = "DIST_CAPACITY", default_value_t = distribution_shared::defaults::NODE_CAPACITY,
              value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        capacity: u32,
        /// How many callers' connections the node serves at once.
        #[arg(long, env = "DIST_MAX_CONNECTIONS", default_value_t = 1024,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        max_connections: u64,
        /// How many of those one peer IP may hold (more are closed at once).
        #[arg(long = "max-connections-per-ip", env = "DIST_NODE_MAX_CONNECTIONS_PER_IP",
              default_value_t = distribution_shared::defaults::MAX_CONNECTIONS_PER_IP as u64,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        node_max_connections_per_ip: u64,
        /// Simulated work time of each `sum`, in milliseconds (the Go example slept 1000).
        #[arg(long, env = "DIST_SUM_DELAY_MS", default_value_t = 0)]
        sum_delay_ms: u64,
        /// Fault injection: abort every call with an error (for testing failure handling).
        #[arg(long, hide = true)]
        faulty: bool,
        /// The service this node serves: `calc` (the gateway's `/sum` and `/palindrom`) or
        /// `text` (`/upper`). SIGUSR1 puts the node in maintenance (no new calls), SIGUSR2
        /// takes it out.
        #[arg(long, env = "DIST_SERVICE", value_enum, default_value_t = DemoService::Calc)]
        service: DemoService,
        /// Tags routers may filter on, comma-separated (`gpu,zone=eu-1`).
        #[arg(long, env = "DIST_TAGS", value_delimiter = ',')]
        tags: Vec<String>,
        /// Serve `GET /metrics` (Prometheus) and `GET /health` on this address.
        #[arg(long, env = "DIST_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        /// How many worker threads the process's tokio runtime has (default: one per core).
        /// The node runs nothing there but a watch: its connections are served on its
        /// lifecycle thread and its handlers on its call threads (`--call-threads`).
        #[arg(long, env = "DIST_WORKER_THREADS",
              value_parser = clap::value_parser!(u64).range(1..=1024))]
        worker_threads: Option<u64>,
        /// How many threads run the node's handlers (default: one per core, at least 2). While
        /// every one is held by a handler that does not yield, new calls are refused at once.
        #[arg(long, env = "DIST_CALL_THREADS",
              value_parser = clap::value_parser!(u64).range(1..=1024))]
        call_threads: Option<u64>,
        /// How many pieces of CPU work (`work::run_blocking`, e.g. `palindromes`) run at once
        /// (default: one per core).
        #[arg(long, env = "DIST_CPU_THREADS",
              value_parser = clap::value_parser!(u64).range(1..=1024))]
        cpu_threads: Option<u64>,
        #[command(flatten)]
        security: Security,
    },
    /// Exit 0 when the process at ADDR answers `GET /health` with 200 within the timeout, 1
    /// otherwise: a Docker `HEALTHCHECK` for the `FROM scratch` image (master or node metrics).
    Health {
        /// The HOST:PORT to ask (the registry, the gateway, or a `--metrics-listen` address).
        /// The image's `HEALTHCHECK` runs `health` with no address: a node container sets
        /// `DIST_HEALTH_ADDR` to its metrics address.
        #[arg(env = "DIST_HEALTH_ADDR", default_value = "127.0.0.1:3000")]
        addr: String,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Run a job from this process against a running cluster: the calls go to the nodes
    /// directly, routed by a router that follows the master's node list.
    Client {
        /// The master's registry API, HOST:PORT, or a comma-separated list of masters
        /// (`m1:3000,m2:3000`): the client follows the first that answers and fails over to
        /// the next.
        #[arg(long, env = "DIST_MASTER")]
        master: String,
        /// Serve `GET /metrics` (Prometheus: this client's router) on this address.
        #[arg(long, env = "DIST_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        #[command(flatten)]
        security: Security,
        #[command(subcommand)]
        job: Job,
    },
}

#[derive(Subcommand)]
enum Job {
    /// Add values on the nodes (the same sum, --repeat times).
    Sum {
        /// The values to add, comma-separated.
        #[arg(long, default_value = "2,4,6", allow_hyphen_values = true)]
        values: String,
        /// How many times to run the sum.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        repeat: u64,
        /// How many calls run at once (default: two per node).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        concurrency: Option<u64>,
    },
    /// Count the binary palindromes from 0 to n, in chunks spread over the nodes.
    Palindrome {
        /// The upper bound (at most 2^33).
        #[arg(long)]
        n: String,
        /// How many chunks run at once (default: two per node).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        concurrency: Option<u64>,
    },
    /// Print the node set as a JSON line now and at every change, until interrupted; with
    /// `--events`, the master's membership events instead (join, leave, eviction, replacement,
    /// moved, late, back), one JSON line each.
    Watch {
        /// Print membership events (from `GET /v1/events`) instead of node sets.
        #[arg(long)]
        events: bool,
        /// With `--events`: start after this index (0: the master's whole bounded history).
        #[arg(long, requires = "events")]
        after: Option<u64>,
    },
}

/// The services a demo node can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DemoService {
    /// `Calc` (service `calc`).
    Calc,
    /// `Text` (service `text`).
    Text,
}

/// SIGUSR1 puts the node in maintenance, SIGUSR2 takes it out (the operator's switch on the
/// node's side; `PUT /v1/nodes/{id}/maintenance` is the one on the master's).
fn follow_maintenance_signals(load: std::sync::Arc<distribution_node::Load>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut on = signal(SignalKind::user_defined1()).context("SIGUSR1")?;
    let mut off = signal(SignalKind::user_defined2()).context("SIGUSR2")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = on.recv() => {
                    tracing::info!("SIGUSR1: in maintenance");
                    load.set_maintenance(Some("SIGUSR1 on the node".to_owned()));
                }
                Some(()) = off.recv() => {
                    tracing::info!("SIGUSR2: out of maintenance");
                    load.set_maintenance(None);
                }
                else => return,
            }
        }
    });
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Role::Node {
        worker_threads: Some(workers),
        ..
    } = &cli.role
    {
        runtime.worker_threads(usize::try_from(*workers).context("--worker-threads")?);
    }
    runtime
        .build()
        .context("cannot start the runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Logs go to stderr in every mode: a client's stdout carries its output (the summary, JSON
    // lines), and a master's or a node's stays free for whatever wraps them. A client logs only
    // warnings unless RUST_LOG says otherwise, so that they do not break the progress bar.
    let client = matches!(cli.role, Role::Client { .. } | Role::Health { .. });
    let level = if client { "warn" } else { "info" };
    cli.logging.init(level);
    match cli.role {
        Role::Health { addr, timeout_ms } => {
            return health(&addr, Duration::from_millis(timeout_ms)).await;
        }
        Role::Master { master, gateway } => {
            let mut config = master.config()?;
            config.metrics = Some(telemetry::render());
            let router = RouterConfig::default().with_tls(master.security.client_tls("gateway")?);
            let registry = TcpListener::bind(&master.registry)
                .await
                .with_context(|| format!("cannot listen on {}", master.registry))?;
            let gateway = TcpListener::bind(&gateway)
                .await
                .with_context(|| format!("cannot listen on {gateway}"))?;
            let demo = DemoMaster::start(registry, gateway, config, router)?;
            distribution_node::shutdown::signal().await;
            demo.shutdown().await;
        }
        Role::Node {
            master,
            listen,
            advertise,
            id,
            capacity,
            max_connections,
            node_max_connections_per_ip,
            sum_delay_ms,
            faulty,
            service,
            tags,
            metrics_listen,
            worker_threads: _,
            call_threads,
            cpu_threads,
            security,
        } => {
            serve_metrics(metrics_listen.as_deref()).await?;
            let listener = TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let mut config = NodeConfig::new(master);
            config.advertise = advertise;
            config.id = id;
            config.capacity = capacity;
            config.max_connections = max_connections as usize;
            config.max_connections_per_ip = node_max_connections_per_ip as usize;
            config.secret = security.secret()?;
            config.tags = tags;
            if let Some(threads) = call_threads {
                config.call_threads = usize::try_from(threads).context("--call-threads")?;
            }
            if let Some(threads) = cpu_threads {
                config.cpu_threads = usize::try_from(threads).context("--cpu-threads")?;
            }
            if let Some(files) = security.files() {
                config.tls = Some(NodeTls {
                    server: files.server_config().context("node TLS")?,
                    client: files.client_config().context("node TLS")?,
                });
            }
            let node = match service {
                DemoService::Text => start_text_node(listener, config)?,
                DemoService::Calc if faulty => start_faulty_node(listener, config)?,
                DemoService::Calc => {
                    start_node(listener, config, Duration::from_millis(sum_delay_ms))?
                }
            };
            follow_maintenance_signals(node.load().clone())?;
            let stop = node.shutdown_token();
            tokio::select! {
                _ = distribution_node::shutdown::signal() => node.shutdown().await,
                _ = stop.cancelled() => node.stopped().await,
            }
        }
        Role::Client {
            master,
            metrics_listen,
            security,
            job,
        } => {
            serve_metrics(metrics_listen.as_deref()).await?;
            let config = RemoteConfig::default()
                .with_secret(security.secret()?)
                .with_router(RouterConfig::default().with_tls(security.client_tls("client")?));
            run_client(&master, config, job).await?
        }
    }
    Ok(())
}

/// `health`: one `GET /health`; an error (exit 1) unless it answers 200 in time.
async fn health(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    let url = if addr.contains("://") {
        format!("{}/health", addr.trim_end_matches('/'))
    } else {
        format!("http://{addr}/health")
    };
    let http = reqwest::Client::builder().timeout(timeout).build()?;
    let status = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?
        .status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    println!("{url}: {status}");
    Ok(())
}

/// Serves `/metrics` on `addr`, when given.
async fn serve_metrics(addr: Option<&str>) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics listening");
        telemetry::serve(listener);
    }
    Ok(())
}

/// Runs a client job and prints its summary (or, for `watch`, the node sets as JSON lines).
async fn run_client(master: &str, config: RemoteConfig, job: Job) -> anyhow::Result<()> {
    let summary = match job {
        Job::Watch {
            events: true,
            after,
        } => {
            let events = distribution_client::remote::events_after(master, &config, after)?;
            tokio::select! {
                result = client::watch_events(events, std::io::stdout()) => result?,
                _ = distribution_node::shutdown::signal() => {}
            }
            return Ok(());
        }
        Job::Watch { events: false, .. } => {
            let feed = distribution_client::remote::follow(master, &config).await?;
            tokio::select! {
                result = client::watch(feed, std::io::stdout()) => result?,
                _ = distribution_node::shutdown::signal() => {}
            }
            return Ok(());
        }
        Job::Sum {
            values,
            repeat,
            concurrency,
        } => {
            let values = parse_values(&values).map_err(anyhow::Error::msg)?;
            let router = client::connect(master, config).await?;
            let progress = client::progress_bar(repeat);
            let concurrency = concurrency.map(|c| c as usize);
            client::run_sum(&router, values, repeat, concurrency, &progress).await?
        }
        Job::Palindrome { n, concurrency } => {
            let n = parse_n(Some(&n)).map_err(anyhow::Error::msg)?;
            let router = client::connect(master, config).await?;
            let progress = client::progress_bar(2);
            let concurrency = concurrency.map(|c| c as usize);
            client::run_palindrome(&router, n, concurrency, &progress).await?
        }
    };
    print!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use distribution_shared::ExposeSecret;

    fn security_of(args: &[&str]) -> Security {
        match Cli::try_parse_from(args).unwrap().role {
            Role::Client { security, .. } | Role::Node { security, .. } => security,
            _ => panic!("not a client or node"),
        }
    }

    #[test]
    fn security_flags_work_before_and_after_the_job() {
        let before = ["demo", "client", "--master", "m:1", "--secret", "s", "sum"];
        let after = ["demo", "client", "--master", "m:1", "sum", "--secret", "s"];
        for args in [&before[..], &after[..]] {
            assert_eq!(
                security_of(args)
                    .secret()
                    .unwrap()
                    .as_ref()
                    .map(|s| s.expose_secret()),
                Some("s"),
                "{args:?}"
            );
        }
    }

    #[test]
    fn the_master_mode_takes_the_shared_flags_and_its_gateway() {
        let args = [
            "demo",
            "master",
            "--max-nodes",
            "5",
            "--gateway",
            "g:1",
            "--secret",
            "s",
        ];
        let Role::Master { master, gateway } = Cli::try_parse_from(args).unwrap().role else {
            panic!("not the master mode");
        };
        assert_eq!((master.max_nodes, gateway.as_str()), (5, "g:1"));
        let secret = master.config().unwrap().secret;
        assert_eq!(secret.as_ref().map(|s| s.expose_secret()), Some("s"));
    }
}
