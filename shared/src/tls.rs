//! TLS settings of a cluster member, loaded from PEM files: the cluster's CA, this member's
//! certificate and key, and whether peers must present a certificate too (mutual TLS).
//!
//! - The master serves its registry API over HTTPS with [`TlsFiles::server_config`].
//! - A node serves its tarpc port under TLS with the same, and dials the master with
//!   [`TlsFiles::client_config`] (presenting its certificate when it has one).
//! - A router dials nodes with [`ClientTls`], verifying each node's certificate against the
//!   cluster CA and [`ClientTls::server_name`] (or the node's host when unset).
//!
//! With `require_client_cert`, only holders of a certificate from the cluster CA can register,
//! serve or call: a node without one cannot reach the master, a caller without one cannot call.
//! The crypto provider is `ring`, named explicitly so that no process-wide default is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The certificates or key do not make a valid configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// Client certificates are required, but the CA cannot verify any.
    #[error("invalid client verifier: {0}")]
    Verifier(String),
    /// A server configuration needs this member's certificate and key.
    #[error("a certificate and a key are needed to serve TLS")]
    MissingIdentity,
}

/// How a client dials a cluster member under TLS.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls configuration: the cluster CA, and this member's certificate for mutual TLS.
    pub config: Arc<rustls::ClientConfig>,
    /// The name every node's certificate carries; when `None`, a node's certificate must name
    /// the host of its registered address.
    pub server_name: Option<String>,
}

/// PEM files of one cluster member.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// The cluster CA's certificate(s): peers' certificates must chain to it.
    pub ca: PathBuf,
    /// This member's certificate chain (needed to serve, or to call under mutual TLS).
    pub cert: Option<PathBuf>,
    /// This member's private key.
    pub key: Option<PathBuf>,
    /// Whether this member, serving, requires clients to present a certificate from the CA.
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// The configuration to serve TLS (the master's API, a node's tarpc port).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (chain, key) = self.identity()?.ok_or(TlsError::MissingIdentity)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = if self.require_client_cert {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider())
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The configuration to dial TLS: trusts the cluster CA, presents this member's
    /// certificate when it has one.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?);
        let config = match self.identity()? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&self.ca)? {
            roots.add(cert)?;
        }
        Ok(roots)
    }

    #[allow(clippy::type_complexity)]
    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let chain = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
            path: key.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some((chain, key)))
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no certificate in the file".into()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
