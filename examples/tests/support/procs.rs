//! Real OS processes of the demo binary for the process-level tests: started from the built
//! `distribution-demo`, SIGKILLed when dropped so that a failing test leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The demo binary built for these tests.
pub const DEMO: &str = env!("CARGO_BIN_EXE_distribution-demo");

/// A child process, SIGKILLed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Sends `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits (bounded) for the process to exit; returns whether it exited successfully.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<bool> {
        let started = std::time::Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Starts `distribution-demo master` on port 0 with `extra` flags and reads the registry's and
/// gateway's addresses from its log.
pub fn start_master(interval_ms: u64, extra: &[&str]) -> (Proc, String, String) {
    start_master_on("127.0.0.1:0", interval_ms, extra)
}

/// [`start_master`] with the registry on `registry`.
pub fn start_master_on(registry: &str, interval_ms: u64, extra: &[&str]) -> (Proc, String, String) {
    start_master_with_env(registry, interval_ms, extra, &[])
}

/// [`start_master_on`] with environment variables `env` set for the process.
pub fn start_master_with_env(
    registry: &str,
    interval_ms: u64,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, String, String) {
    let mut command = Command::new(DEMO);
    command
        .args(["master", "--registry", registry, "--gateway", "127.0.0.1:0"])
        .args(["--heartbeat-interval-ms", &interval_ms.to_string()])
        .args(extra)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info");
    let (child, rx) = spawn_logged(command, |line| line.contains("listening"));
    let mut registry = None;
    let mut gateway = None;
    while registry.is_none() || gateway.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("master starts");
        let addr = line
            .split("addr=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        if line.contains("master listening") {
            registry = Some(addr.to_string());
        } else if line.contains("gateway listening") {
            gateway = Some(addr.to_string());
        }
    }
    (child, registry.unwrap(), gateway.unwrap())
}

/// Starts `distribution-demo node` registering with `registry`, with `extra` flags.
pub fn start_node(registry: &str, extra: &[&str]) -> Proc {
    let child = Command::new(DEMO)
        .args(["node", "--master", registry, "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// A master process and one node process registered with it; the node's tarpc address (read
/// from the master's list, waiting at most 20 s).
pub async fn master_and_node(node_flags: &[&str]) -> (Proc, Proc, String) {
    let (master, registry, _) = start_master(200, &[]);
    let node = start_node(&registry, node_flags);
    let started = std::time::Instant::now();
    loop {
        let list: distribution_shared::wire::NodeList =
            reqwest::get(format!("http://{registry}/v1/nodes"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        if let Some(found) = list.nodes.first() {
            return (master, node, found.addr.clone());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "node registers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The master's node list at `registry`, or `None` when it does not answer within 2 s.
pub async fn node_list(registry: &str) -> Option<distribution_shared::wire::NodeList> {
    get_json(&format!("http://{registry}/v1/nodes")).await
}

/// The master's `GET /health` answer at `registry`, or `None` when it does not answer in 2 s.
pub async fn health(registry: &str) -> Option<serde_json::Value> {
    get_json(&format!("http://{registry}/health")).await
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Option<T> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// Starts `distribution-demo node` with `--metrics-listen 127.0.0.1:0` and `extra` flags; returns
/// it and the address its `/metrics` answers on (read from its log).
pub fn start_node_with_metrics(registry: &str, extra: &[&str]) -> (Proc, String) {
    let (child, addr, _log) = start_node_with_metrics_and_log(registry, extra, |_| false);
    (child, addr)
}

/// [`start_node_with_metrics`], also forwarding the node's log lines that `keep` selects.
pub fn start_node_with_metrics_and_log(
    registry: &str,
    extra: &[&str],
    keep: impl Fn(&str) -> bool + Send + 'static,
) -> (Proc, String, mpsc::Receiver<String>) {
    let mut command = Command::new(DEMO);
    command
        .args(["node", "--master", registry, "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "info");
    let (child, rx) = spawn_logged(command, move |line| {
        line.contains("metrics listening") || keep(line)
    });
    let line = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("node serves its metrics");
        if line.contains("metrics listening") {
            break line;
        }
    };
    let addr = line.split("addr=").nth(1).unwrap();
    let addr = addr.split_whitespace().next().unwrap().to_string();
    (child, addr, rx)
}

/// Spawns `command` (stdout discarded) and forwards the lines of its log (the demo logs to
/// stderr) that `keep` selects, read on a thread of their own so the pipe never fills.
pub fn spawn_logged(
    mut command: Command,
    keep: impl Fn(&str) -> bool + Send + 'static,
) -> (Proc, mpsc::Receiver<String>) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines() {
            let Ok(line) = line else { return };
            if keep(&line) && tx.send(line).is_err() {
                return;
            }
        }
    });
    (Proc(child), rx)
}

/// A fresh empty directory under the system's temporary directory.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dist-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port on 127.0.0.1 that was free a moment ago, for servers that cannot listen on port 0
/// and report it (Prometheus, chromedriver).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `program` can be run (found on `PATH`).
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
