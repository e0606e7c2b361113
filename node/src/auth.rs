//! Who may call this node: the node's side of the cluster handshake
//! ([`distribution_shared::handshake`]), and what the node says about it.
//!
//! With [`NodeConfig::secret`](crate::NodeConfig::secret) set, every connection must complete
//! the handshake (prove the secret) within [`HANDSHAKE_TIMEOUT`] before the node reads a single
//! tarpc frame from it. A connection that does not is closed at once and counted
//! ([`Load::refused_connections`]). Refusals are logged at most once per [`LOG_EVERY`], with the
//! number refused since the last line, so a flood of strangers cannot flood the log; nothing
//! about the secret is ever logged.
//!
//! Without a secret nothing changes on the wire. Under mutual TLS the certificate already
//! restricts callers; with both, both apply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distribution_shared::handshake::{self, HANDSHAKE_TIMEOUT, Key};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use crate::config::NodeConfig;
use crate::load::Load;

/// The shortest time between two log lines about refused connections.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// The node's gate: the key callers must prove, and the refusal count and log.
#[derive(Debug)]
pub(crate) struct Gate {
    key: Key,
    load: Arc<Load>,
    log: Mutex<RefusalLog>,
}

/// Refusals not yet reported, and when the last line was written.
#[derive(Debug, Default)]
struct RefusalLog {
    last_line: Option<Instant>,
    unreported: u64,
}

impl Gate {
    /// The gate for `config`: `None` when the node has no secret (every caller is admitted).
    pub(crate) fn new(config: &NodeConfig, load: Arc<Load>) -> Option<Arc<Self>> {
        let key = Key::from_secret(config.secret.as_ref())?;
        Some(Arc::new(Self {
            key,
            load,
            log: Mutex::new(RefusalLog::default()),
        }))
    }

    /// Runs the handshake on a new connection; `false` when the caller is refused (the caller
    /// must then drop the connection).
    pub(crate) async fn admit<S>(&self, stream: &mut S, peer: SocketAddr) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match handshake::accept(stream, &self.key, HANDSHAKE_TIMEOUT).await {
            Ok(()) => true,
            Err(err) => {
                let total = self.load.count_refused_connection();
                debug!(%peer, error = %err, "caller refused");
                self.log_refusal(peer, &err, total, Instant::now());
                false
            }
        }
    }

    /// Writes a line about refusals unless one was written less than [`LOG_EVERY`] ago.
    fn log_refusal(
        &self,
        peer: SocketAddr,
        err: &handshake::HandshakeError,
        total: u64,
        now: Instant,
    ) {
        let mut log = self.log.lock();
        log.unreported += 1;
        if log
            .last_line
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            return;
        }
        let refused = std::mem::take(&mut log.unreported);
        log.last_line = Some(now);
        drop(log);
        warn!(
            refused,
            total,
            last_peer = %peer,
            last_reason = %err,
            "refused connections without the cluster handshake (wrong or no secret)"
        );
    }
}

/// Says at start-up who may call this node and join through its master, in every configuration.
pub(crate) fn announce(config: &NodeConfig) {
    match (config.secret.is_some(), config.tls.is_some()) {
        (true, _) => info!(
            "cluster secret set: node calls are authenticated (every caller must prove the secret \
             when it connects), and the node presents it to the master"
        ),
        (false, true) => warn!(
            "no cluster secret: node calls are open to any caller who reaches this port, unless \
             the TLS settings require client certificates (mutual TLS)"
        ),
        (false, false) => warn!(
            "no cluster secret and no TLS: node calls are open to any caller who reaches this \
             port, and the master's registry to anyone"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_most_once_per_period_with_the_count() {
        let mut config = NodeConfig::new("m:1");
        config.secret = Some("s".into());
        let gate = Gate::new(&config, Arc::new(Load::new(1))).unwrap();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let err = handshake::HandshakeError::BadProof;
        let t0 = Instant::now();
        gate.log_refusal(peer, &err, 1, t0);
        assert_eq!(gate.log.lock().unreported, 0, "the first is logged");
        for i in 0..10 {
            gate.log_refusal(peer, &err, 2 + i, t0 + Duration::from_millis(100 * i));
        }
        assert_eq!(gate.log.lock().unreported, 10, "held back");
        gate.log_refusal(peer, &err, 12, t0 + LOG_EVERY);
        let log = gate.log.lock();
        assert_eq!(log.unreported, 0, "reported with the next line");
        assert_eq!(log.last_line, Some(t0 + LOG_EVERY));
    }

    #[test]
    fn no_secret_no_gate() {
        assert!(Gate::new(&NodeConfig::new("m:1"), Arc::new(Load::new(1))).is_none());
    }
}
