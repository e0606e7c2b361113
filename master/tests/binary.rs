//! The `distribution-master` program as a real process: what a user who runs it gets.
//!
//! One master started on 127.0.0.1 port 0, configured only through the environment
//! (`DIST_SECRET`, `DIST_LOG_FORMAT`, `DIST_HEARTBEAT_INTERVAL_MS`): its address is read from
//! its JSON log line, a node registers over plain HTTP, the node list, `/health` and `/metrics`
//! answer, and SIGTERM stops it with exit 0. Then bad command lines, each of which must exit
//! non-zero at once with a message naming what to fix. Every wait is bounded; a child left by a
//! failing test is killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use distribution_shared::wire::{Lease, NodeList, RegisterRequest};

const BIN: &str = env!("CARGO_BIN_EXE_distribution-master");
const SECRET: &str = "binary-test-secret";

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits at most `timeout` for the process to exit.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// A `distribution-master` command with no `DIST_...` variable inherited from the test's
/// environment, logging at info.
fn master() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DIST_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "info").stdin(Stdio::null());
    command
}

/// Starts the master with `command` and reads the registry's address from its JSON log.
fn start(mut command: Command) -> (Proc, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn distribution-master");
    let stderr = child.stderr.take().expect("piped stderr");
    let proc = Proc(child);
    let (lines, found) = mpsc::channel();
    std::thread::spawn(move || {
        // Reads to the end, so the child never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Ok(line) = found.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let json: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        let fields = json.as_ref().map(|json| &json["fields"]);
        if let Some(fields) = fields.filter(|f| f["message"] == "master listening") {
            let addr = fields["addr"].as_str().expect("addr in the log line");
            return (proc, addr.to_owned());
        }
        seen.push(line);
    }
    panic!(
        "no JSON `master listening` line within 30 s; the log:\n{}",
        seen.join("\n")
    );
}

#[tokio::test]
async fn serves_the_registry_configured_from_the_environment_and_stops_on_sigterm() {
    let mut command = master();
    command
        .args(["--registry", "127.0.0.1:0"])
        .env("DIST_SECRET", SECRET)
        .env("DIST_LOG_FORMAT", "json")
        .env("DIST_HEARTBEAT_INTERVAL_MS", "250");
    let (mut proc, addr) = start(command);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{addr}{path}");

    let open = http.get(url("/v1/nodes")).send().await.unwrap();
    assert_eq!(open.status(), 401, "DIST_SECRET must close the /v1 API");

    let registration = RegisterRequest {
        addr: Some("127.0.0.1:4100".into()),
        ..RegisterRequest::new("node-a", 4100)
    };
    let lease: Lease = http
        .post(url("/v1/nodes"))
        .bearer_auth(SECRET)
        .json(&registration)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .expect("registration with the secret")
        .json()
        .await
        .unwrap();
    assert_eq!(
        lease.heartbeat_interval_ms, 250,
        "DIST_HEARTBEAT_INTERVAL_MS"
    );

    let list: NodeList = get_json(&http, url("/v1/nodes")).await;
    let ids: Vec<&str> = list.nodes.iter().map(|node| node.id.as_str()).collect();
    assert_eq!(ids, ["node-a"]);

    // One answer of each kind from `GET /v1/changes`, counted in `/metrics`.
    let changes =
        |query: String| get_json::<serde_json::Value>(&http, url(&format!("/v1/changes{query}")));
    let first = changes(String::new()).await;
    let (epoch, index, loads) = (
        first["epoch"].as_u64().unwrap(),
        first["index"].as_u64().unwrap(),
        first["loads_index"].as_u64().unwrap(),
    );
    let view = |epoch: u64| format!("?epoch={epoch}&index={index}&loads={loads}&wait=0s");
    assert!(changes(view(epoch)).await["full"].is_null(), "a delta");
    assert!(
        changes(view(epoch.wrapping_add(1))).await["full"].is_array(),
        "another process's view: the whole list"
    );

    for (path, expected) in [
        ("/health", "\"status\":\"ok\""),
        ("/metrics", "distribution_master_nodes"),
        (
            "/metrics",
            "distribution_master_changes_answers_total{kind=\"first\"} 1",
        ),
        (
            "/metrics",
            "distribution_master_changes_answers_total{kind=\"changes\"} 1",
        ),
        (
            "/metrics",
            "distribution_master_changes_answers_total{kind=\"resync\"} 1",
        ),
    ] {
        let response = http.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.contains(expected), "{path} lacks {expected}:\n{body}");
    }

    let kill = Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success(), "kill -TERM");
    let status = proc.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|status| status.success()),
        "SIGTERM must stop the master with exit 0 within 10 s: {status:?}"
    );
}

/// `GET url` with the cluster secret, its body decoded.
async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: String) -> T {
    let response = http.get(url).bearer_auth(SECRET).send().await.unwrap();
    response.json().await.unwrap()
}

#[test]
fn bad_command_lines_exit_non_zero_with_a_message() {
    let empty = std::env::temp_dir().join(format!("dist-master-empty-{}", std::process::id()));
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap().to_owned();
    let cases: [(&[&str], &str); 4] = [
        (&["--no-such-flag"], "--no-such-flag"),
        (
            &["--registry", "127.0.0.1:0", "--max-nodes", "0"],
            "--max-nodes",
        ),
        (&["--registry", "127.0.0.1:not-a-port"], "cannot listen on"),
        (
            &["--registry", "127.0.0.1:0", "--secret-file", &empty],
            "is empty",
        ),
    ];
    for (args, message) in cases {
        let mut command = master();
        let child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut proc = Proc(child);
        let status = proc.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|status| !status.success()),
            "{args:?} must exit non-zero at once: {status:?}"
        );
        let mut stderr = String::new();
        let mut pipe = proc.0.stderr.take().unwrap();
        std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
        assert!(
            stderr.contains(message),
            "{args:?}: {message:?} not in\n{stderr}"
        );
    }
    let _ = std::fs::remove_file(&empty);
}
