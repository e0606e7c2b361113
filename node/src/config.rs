//! [`NodeConfig`]: where the master is, how the node presents itself, and its limits.

use std::time::Duration;

use distribution_shared::defaults;

/// How a node runs. Build it with [`NodeConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The master's registry API: `host:port` or `http://host:port`.
    pub master: String,
    /// The node's id; a fresh `node-<uuid>` when `None`.
    pub id: Option<String>,
    /// The `host:port` callers should dial. When `None` the master uses the address the
    /// registration came from, with the listener's port.
    pub advertise: Option<String>,
    /// How many calls the node runs at once; calls beyond it are refused at once (the router
    /// sends them elsewhere). Default 1024.
    pub capacity: u32,
    /// The largest tarpc frame the node reads or writes. Default 16 MiB.
    pub max_frame_len: usize,
    /// How long a graceful shutdown waits for calls in flight. Default 30 s.
    pub drain_timeout: Duration,
    /// How long one request to the master may take. Default 2 s.
    pub master_timeout: Duration,
    /// The heartbeat interval used until the master states its own. Default 1 s.
    pub heartbeat_interval: Duration,
}

impl NodeConfig {
    /// The defaults, registering with `master`.
    pub fn new(master: impl Into<String>) -> Self {
        Self {
            master: master.into(),
            id: None,
            advertise: None,
            capacity: defaults::NODE_CAPACITY,
            max_frame_len: defaults::MAX_FRAME_LEN,
            drain_timeout: defaults::DRAIN_TIMEOUT,
            master_timeout: Duration::from_secs(2),
            heartbeat_interval: defaults::HEARTBEAT_INTERVAL,
        }
    }

    /// The master's base URL (`http://host:port`, no trailing slash).
    pub fn master_url(&self) -> String {
        let master = self.master.trim_end_matches('/');
        if master.starts_with("http://") || master.starts_with("https://") {
            master.to_owned()
        } else {
            format!("http://{master}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_url_accepts_bare_and_full_forms() {
        assert_eq!(NodeConfig::new("m:3000").master_url(), "http://m:3000");
        assert_eq!(
            NodeConfig::new("http://m:3000/").master_url(),
            "http://m:3000"
        );
    }
}
