//! `distribution-master`: the master on its own, for clusters whose nodes run their own services.
//!
//! ```text
//! distribution-master [--registry 0.0.0.0:3000] [--heartbeat-interval-ms MS] [--ttl-ms MS]
//!                     [--max-nodes N] [--max-connections-per-ip N] [--idle-timeout-ms MS]
//!                     [--secret S | --secret-file PATH] [--tls-ca PEM --tls-cert PEM --tls-key PEM]
//!                     [--tls-require-client-cert] [--log-format text|json]
//! ```
//!
//! It serves what `distribution-demo master` serves on its registry port (the `/v1` API with
//! blocking queries and events, `/health`, `/metrics`, the status page at `/`) without the
//! demo's gateway; every flag falls back to the `DIST_...` variable `--help` names. This file
//! only parses, logs, binds and starts: the flags are [`distribution_master::cli`], the server
//! is [`distribution_master::Master`]. SIGTERM or Ctrl-C stops it gracefully (exit 0).

use std::process::ExitCode;

use clap::Parser;
use distribution_master::Master;
use distribution_master::cli::{CliError, Logging, MasterArgs, prometheus};
use distribution_shared::shutdown;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    version,
    about = "distribution master: the node registry, its HTTP API, events, status page and metrics"
)]
struct Cli {
    #[command(flatten)]
    logging: Logging,
    #[command(flatten)]
    master: MasterArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.logging.init("info");
    match run(cli.master).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("distribution-master: {}", err.chain());
            ExitCode::FAILURE
        }
    }
}

/// Binds the registry, runs the master until SIGTERM or Ctrl-C, then drains it.
async fn run(args: MasterArgs) -> Result<(), CliError> {
    let mut config = args.config()?;
    config.metrics = Some(prometheus::render());
    let listen = |source| CliError::Listen {
        addr: args.registry.clone(),
        source,
    };
    let listener = TcpListener::bind(&args.registry).await.map_err(listen)?;
    let master = Master::start(listener, config).map_err(listen)?;
    master.run_until(shutdown::signal()).await;
    Ok(())
}
