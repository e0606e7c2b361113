//! A cluster PKI for the TLS tests: a CA generated with rcgen and the PEM files of the members
//! it certified, in a temporary folder removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use distribution_shared::tls::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

/// A CA and the PEM files of the members it certified, in a fresh temporary folder.
pub struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA in a folder of its own (`name` tells the folders of one test apart).
    pub fn new(name: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "distribution-tls-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca }
    }

    /// Issues a certificate for `names` (DNS names or IPs), usable to serve and to call.
    pub fn issue(&self, member: &str, names: &[&str]) -> TlsFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_path, key_path) = (
            self.path(&format!("{member}.pem")),
            self.path(&format!("{member}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        TlsFiles {
            ca: self.path("ca.pem"),
            cert: Some(cert_path),
            key: Some(key_path),
            require_client_cert: true,
        }
    }

    /// Trusts this CA but holds no certificate.
    pub fn anonymous(&self) -> TlsFiles {
        TlsFiles {
            ca: self.path("ca.pem"),
            ..TlsFiles::default()
        }
    }

    /// The path of `file` in the PKI's folder.
    pub fn path(&self, file: &str) -> PathBuf {
        Path::new(&self.dir).join(file)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
