//! [`Security`]: who may join and call, the cluster secret and the TLS files. One struct for
//! every program of a cluster (master, and the demo's node and client), so that the flags, their
//! environment variables and their rules (`--secret` or `--secret-file`, a key needs a
//! certificate needs a CA) are the same everywhere.
//!
//! The flags are `global`: in a program with subcommands they may come before or after the
//! subcommand.

use std::path::PathBuf;

use distribution_shared::SecretString;
use distribution_shared::tls::{ClientTls, TlsFiles};

use super::CliError;

/// `--secret`'s value, held as a secret from the moment it is parsed (so `Debug` never shows it).
fn secret_arg(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// The cluster secret and the TLS files, shared by master, node and client.
#[derive(clap::Args, Debug)]
pub struct Security {
    /// The cluster secret: the master requires it on its /v1 API; nodes present it there and
    /// require it of every caller (a handshake on each connection, before any call); routers
    /// (the demo's gateway and client) prove it. The master's /health, /metrics and status page,
    /// and the demo's gateway routes, stay public.
    #[arg(long, env = "DIST_SECRET", hide_env_values = true, global = true, value_parser = secret_arg)]
    pub secret: Option<SecretString>,
    /// Read the cluster secret from this file (Docker secrets); its trailing newline is
    /// dropped.
    #[arg(
        long,
        env = "DIST_SECRET_FILE",
        conflicts_with = "secret",
        global = true
    )]
    pub secret_file: Option<PathBuf>,
    /// The cluster CA (PEM): turns TLS on; peers' certificates must chain to it.
    #[arg(long, env = "DIST_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// This member's certificate chain (PEM).
    #[arg(long, env = "DIST_TLS_CERT", requires = "tls_ca", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// This member's private key (PEM).
    #[arg(long, env = "DIST_TLS_KEY", requires = "tls_cert", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: require a certificate from the cluster CA of every client.
    #[arg(
        long,
        env = "DIST_TLS_REQUIRE_CLIENT_CERT",
        requires = "tls_ca",
        global = true
    )]
    pub tls_require_client_cert: bool,
    /// The name every node certificate carries (default: the node's host).
    #[arg(long, env = "DIST_TLS_SERVER_NAME", requires = "tls_ca", global = true)]
    pub tls_server_name: Option<String>,
}

impl Security {
    /// The cluster secret, from `--secret` or read from `--secret-file` (without its trailing
    /// newline; an empty file is an error, not an empty secret).
    pub fn secret(&self) -> Result<Option<SecretString>, CliError> {
        let Some(path) = &self.secret_file else {
            return Ok(self.secret.clone());
        };
        let text = std::fs::read_to_string(path).map_err(|source| CliError::SecretFile {
            path: path.clone(),
            source,
        })?;
        let secret = text.trim_end_matches(['\r', '\n']);
        if secret.is_empty() {
            return Err(CliError::EmptySecretFile { path: path.clone() });
        }
        Ok(Some(SecretString::from(secret)))
    }

    /// The TLS files, when `--tls-ca` turns TLS on.
    pub fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            ca: self.tls_ca.clone()?,
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            require_client_cert: self.tls_require_client_cert,
        })
    }

    /// The TLS settings a router dials nodes with (`what` names the side in errors), when TLS
    /// is on.
    pub fn client_tls(&self, what: &'static str) -> Result<Option<ClientTls>, CliError> {
        let Some(files) = self.files() else {
            return Ok(None);
        };
        let config = files
            .client_config()
            .map_err(|source| CliError::Tls { what, source })?;
        Ok(Some(ClientTls {
            config,
            server_name: self.tls_server_name.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use distribution_shared::ExposeSecret;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        security: Security,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("m").chain(args.iter().copied()))
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let security = parse(&["--secret", "hunter2-cluster"]).unwrap().security;
        let shown = format!("{security:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let secret = security.secret().unwrap().unwrap();
        assert_eq!(secret.expose_secret(), "hunter2-cluster");
    }

    #[test]
    fn the_secret_file_gives_the_secret_without_its_newline() {
        let path = std::env::temp_dir().join(format!("dist-cli-secret-{}", std::process::id()));
        std::fs::write(&path, "from-a-file\n").unwrap();
        let file = path.to_str().unwrap();
        let security = parse(&["--secret-file", file]).unwrap().security;
        assert_eq!(
            security
                .secret()
                .unwrap()
                .as_ref()
                .map(|s| s.expose_secret()),
            Some("from-a-file")
        );
        assert!(
            parse(&["--secret", "x", "--secret-file", file]).is_err(),
            "one or the other"
        );
        std::fs::write(&path, "\n").unwrap();
        let empty = parse(&["--secret-file", file]).unwrap().security;
        assert!(matches!(
            empty.secret(),
            Err(CliError::EmptySecretFile { .. })
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_key_needs_a_certificate_and_a_certificate_a_ca() {
        assert!(parse(&["--tls-key", "k.pem"]).is_err());
        assert!(parse(&["--tls-cert", "c.pem"]).is_err());
        let tls = parse(&[
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ]);
        assert!(tls.unwrap().security.files().is_some());
    }
}
