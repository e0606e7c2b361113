//! The command line of a master process, shared by `distribution-master` and
//! `distribution-demo master` (feature `cli`, on by default).
//!
//! One set of flag structs for both programs, so that a flag, its environment variable, its
//! default and its bounds are written once: the demo flattens [`MasterArgs`] into its `master`
//! mode and adds its gateway on top, and its `node` and `client` modes take the same
//! [`Security`]. The pieces:
//!
//! - [`MasterArgs`]: where the registry listens, the lease terms, the limits, [`Security`];
//!   [`MasterArgs::config`] turns them into a [`MasterConfig`];
//! - [`Security`]: the cluster secret (`--secret`, `--secret-file`) and the TLS files;
//! - [`Logging`]: `--log-format` and the tracing subscriber the programs install;
//! - [`prometheus`]: the exporter behind `GET /metrics` (`metrics-exporter-prometheus`);
//! - [`CliError`]: what can go wrong between the flags and a running master.
//!
//! The library itself never needs any of this: a program that embeds a [`crate::Master`]
//! builds its [`MasterConfig`] as it likes; the feature can be turned off
//! (`default-features = false`) to drop `clap`, `tracing-subscriber` and the exporter.

mod error;
mod logging;
pub mod prometheus;
mod security;

use std::time::Duration;

use distribution_shared::defaults;

use crate::config::MasterConfig;

pub use error::CliError;
pub use logging::{LogFormat, Logging};
pub use security::Security;

/// The flags of a master: `distribution-master`'s whole command line, and the registry part of
/// `distribution-demo master`. Each flag falls back to a `DIST_...` environment variable.
#[derive(clap::Args, Debug)]
pub struct MasterArgs {
    /// Where the registry API listens.
    #[arg(long, env = "DIST_REGISTRY", default_value = "0.0.0.0:3000")]
    pub registry: String,
    /// How often nodes heartbeat, in milliseconds.
    #[arg(long, env = "DIST_HEARTBEAT_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub heartbeat_interval_ms: u64,
    /// How long a silent node keeps its lease, in milliseconds (default: 3 intervals).
    #[arg(long, env = "DIST_TTL_MS", value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
    pub ttl_ms: Option<u64>,
    /// The heartbeats a second the master aims to receive at most: in larger clusters nodes are
    /// told to beat less often (and their TTL grows in proportion). 0: never scale.
    #[arg(long, env = "DIST_HEARTBEAT_BUDGET", default_value_t = defaults::HEARTBEAT_BUDGET,
          value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub heartbeat_budget: u32,
    /// Self-preservation: below this share (0 to 1) of the heartbeats it expects, with two nodes
    /// silent at least, the master stops evicting until they recover. 0: always evict on the TTL.
    #[arg(long, env = "DIST_SELF_PRESERVATION", default_value_t = defaults::SELF_PRESERVATION,
          value_parser = share)]
    pub self_preservation: f64,
    /// The most nodes the registry holds (registrations beyond get 503).
    #[arg(long, env = "DIST_MAX_NODES", default_value_t = defaults::MAX_NODES as u64,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_nodes: u64,
    /// The most connections one peer IP may hold open on the registry (and on the demo's
    /// gateway); more are closed at once. Raise it when many nodes or callers share one IP.
    #[arg(long, env = "DIST_MAX_CONNECTIONS_PER_IP",
          default_value_t = defaults::MAX_CONNECTIONS_PER_IP as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_per_ip: u64,
    /// How long a connection to the registry (or the demo's gateway) may stay silent, with no
    /// request in flight, before it is closed, in milliseconds.
    #[arg(long, env = "DIST_IDLE_TIMEOUT_MS",
          default_value_t = defaults::IDLE_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub idle_timeout_ms: u64,
    /// The cluster secret and the TLS files.
    #[command(flatten)]
    pub security: Security,
}

impl MasterArgs {
    /// The [`MasterConfig`] these flags describe: lease terms, limits, the secret (read from its
    /// file if need be) and the registry's TLS. No metrics renderer: the program chooses one
    /// (see [`prometheus::render`]).
    pub fn config(&self) -> Result<MasterConfig, CliError> {
        let mut config =
            MasterConfig::with_interval(Duration::from_millis(self.heartbeat_interval_ms));
        if let Some(ttl) = self.ttl_ms {
            config.ttl = Duration::from_millis(ttl);
        }
        config.heartbeat_budget = Some(self.heartbeat_budget).filter(|b| *b > 0);
        config.self_preservation = Some(self.self_preservation).filter(|s| *s > 0.0);
        config.max_nodes = usize::try_from(self.max_nodes).map_err(|_| CliError::TooLarge {
            flag: "--max-nodes",
        })?;
        config.http.max_connections_per_ip =
            usize::try_from(self.max_connections_per_ip).map_err(|_| CliError::TooLarge {
                flag: "--max-connections-per-ip",
            })?;
        config.http.idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        config.secret = self.security.secret()?;
        if let Some(files) = self.security.files() {
            let tls = files.server_config().map_err(|source| CliError::Tls {
                what: "registry",
                source,
            })?;
            config.http.tls = Some(tls);
        }
        Ok(config)
    }
}

/// Parses a share: a number from 0 to 1.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!(
            "`{text}` is not a share from 0 to 1 (0.85 is 85 %)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        master: MasterArgs,
    }

    #[test]
    fn the_flags_become_the_config() {
        let cli = Cli::try_parse_from([
            "m",
            "--heartbeat-interval-ms",
            "200",
            "--max-nodes",
            "7",
            "--idle-timeout-ms",
            "1500",
            "--self-preservation",
            "0.6",
        ])
        .unwrap();
        let config = cli.master.config().unwrap();
        assert_eq!(config.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(config.ttl, Duration::from_millis(600), "3 intervals");
        assert_eq!(config.max_nodes, 7);
        assert_eq!(config.http.idle_timeout, Duration::from_millis(1500));
        assert_eq!(config.self_preservation, Some(0.6));
        let off = Cli::try_parse_from(["m", "--self-preservation", "0"]).unwrap();
        assert_eq!(off.master.config().unwrap().self_preservation, None);
        assert!(config.secret.is_none() && config.http.tls.is_none());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for args in [
            ["m", "--max-nodes", "0"],
            ["m", "--heartbeat-interval-ms", "1"],
            ["m", "--self-preservation", "1.5"],
            ["m", "--self-preservation", "NaN"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
