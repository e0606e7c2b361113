//! [`CliError`]: what can go wrong between a master's flags and its running server, each with
//! the flag or the file to fix in its message.

use std::path::PathBuf;

use distribution_shared::tls::TlsError;

/// A flag's value could not be used, or the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// `--secret-file` names a file that cannot be read.
    #[error("cannot read the secret file {}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--secret-file` names an empty file (a secret of nothing would let anyone in).
    #[error("the secret file {} is empty", path.display())]
    EmptySecretFile {
        /// The file.
        path: PathBuf,
    },
    /// The TLS files could not be loaded.
    #[error("{what} TLS")]
    Tls {
        /// Which side: `registry`, `gateway`, `node`, `client`.
        what: &'static str,
        /// Why.
        #[source]
        source: TlsError,
    },
    /// A count does not fit this platform's `usize`.
    #[error("{flag} is too large for this platform")]
    TooLarge {
        /// The flag.
        flag: &'static str,
    },
    /// A socket could not be bound, or the server could not start on it.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The message with its causes, `outer: inner: ...`, as a program prints it before exiting.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(err) = cause {
            text.push_str(": ");
            text.push_str(&err.to_string());
            cause = err.source();
        }
        text
    }
}
