//! The cluster secret is never logged and no `/metrics` exposition holds it (README, Security).
//!
//! A master, a node, a node with a wrong secret and a `client` job run as real processes with the
//! secret, every one of them logging at `debug` (the project's own crates at `trace`), while
//! routed calls, gateway requests, heartbeats and refused handshakes happen. Every line any of
//! them writes, and every exposition of the master's two ports and the node's metrics port, is
//! then searched for the secret.

mod support;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::get;
use support::procs::{DEMO, Proc, spawn_logged};

/// A secret no log line or metric could hold by chance.
const SECRET: &str = "s3cret-7f3a9c11-never-in-any-log";

/// As verbose as an operator hunting a problem would make them.
const LOG_FILTER: &str = "debug,distribution=trace,distribution_master=trace,\
    distribution_node=trace,distribution_client=trace,distribution_shared=trace";

/// Starts `command` with the filter above, keeping every line it logs.
fn logged(mut command: Command) -> (Proc, mpsc::Receiver<String>) {
    command.env("RUST_LOG", LOG_FILTER);
    spawn_logged(command, |_| true)
}

/// The address logged on the first line of `lines` that contains `what` (its `addr=` field).
fn address(lines: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) -> String {
    let started = Instant::now();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no line with {what:?}"));
        seen.push(line.clone());
        if line.contains(what) {
            let addr = line.split("addr=").nth(1).unwrap();
            return addr.split_whitespace().next().unwrap().to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_in_no_log_line_and_no_exposition() {
    let mut lines = Vec::new();
    let mut command = Command::new(DEMO);
    command
        .args([
            "master",
            "--registry",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
        ])
        .args(["--heartbeat-interval-ms", "200", "--secret", SECRET]);
    let (_master, master_log) = logged(command);
    let registry = address(&master_log, "master listening", &mut lines);
    let gateway = address(&master_log, "gateway listening", &mut lines);

    let mut command = Command::new(DEMO);
    command
        .args(["node", "--master", &registry, "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--secret", SECRET]);
    let (_node, node_log) = logged(command);
    let node_metrics = address(&node_log, "metrics listening", &mut lines);
    // A node with a wrong secret: refused by the master, its refusals logged on both sides.
    let mut command = Command::new(DEMO);
    command
        .args(["node", "--master", &registry, "--listen", "127.0.0.1:0"])
        .args(["--secret", "not-the-secret"]);
    let (_intruder, intruder_log) = logged(command);

    // Gateway requests until the node answers them (it has registered), then a few more.
    let started = Instant::now();
    let mut answered = 0;
    while answered < 5 {
        let (status, _) = get(&format!("http://{gateway}/sum?values=1,2,3"), false).await;
        if status == 200 {
            answered += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway answers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client job with the secret, as a remote caller.
    let mut command = Command::new(DEMO);
    command
        .args(["client", "--master", &registry, "--secret", SECRET])
        .args(["sum", "--values", "4,5,6"])
        .env("RUST_LOG", LOG_FILTER);
    let client = command.output().unwrap();
    assert!(client.status.success(), "the client job runs: {client:?}");
    lines.extend(
        String::from_utf8_lossy(&client.stdout)
            .lines()
            .map(String::from),
    );
    lines.extend(
        String::from_utf8_lossy(&client.stderr)
            .lines()
            .map(String::from),
    );

    let mut expositions = Vec::new();
    for addr in [&registry, &gateway, &node_metrics] {
        let (status, body) = get(&format!("http://{addr}/metrics"), false).await;
        assert_eq!(status, 200, "{addr}/metrics");
        expositions.push((addr.clone(), body));
    }
    // Two more seconds of heartbeats (every 200 ms) and refused registrations, then a moment for
    // the pipes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for log in [&master_log, &node_log, &intruder_log] {
        lines.extend(log.try_iter());
    }

    assert!(
        lines.len() > 100,
        "the processes logged ({} lines): the search below means something",
        lines.len()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Bearer") || l.contains("401") || l.contains("secret")),
        "the refusals of the wrong secret were logged"
    );
    eprintln!("{} lines searched", lines.len());
    let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(SECRET)).collect();
    assert!(leaks.is_empty(), "the secret is logged: {leaks:?}");
    for (addr, body) in &expositions {
        assert!(body.contains("# TYPE"), "{addr}: an exposition");
        assert!(!body.contains(SECRET), "{addr}/metrics holds the secret");
    }
}

/// The start-up warnings (README, Security): a master and a node without a secret or TLS say at
/// start that their registry and calls are open; with a secret they say it is set, and warn of
/// nothing open.
#[test]
fn open_masters_and_nodes_say_so_at_start_and_closed_ones_do_not() {
    // Every line a process logs in its first moments: until `until` appears, at most 20 s.
    fn first_lines(mut command: Command, until: &str) -> (Proc, Vec<String>) {
        command.env("RUST_LOG", "info");
        let (proc, lines) = spawn_logged(command, |_| true);
        let mut seen = Vec::new();
        while !seen.iter().any(|l: &String| l.contains(until)) {
            seen.push(
                lines
                    .recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|_| panic!("no {until:?} in {seen:#?}")),
            );
        }
        (proc, seen)
    }
    let master = |secret: Option<&str>| {
        let mut command = Command::new(DEMO);
        command.args([
            "master",
            "--registry",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
        ]);
        if let Some(secret) = secret {
            command.args(["--secret", secret]);
        }
        first_lines(command, "gateway listening")
    };
    let (_open, lines) = master(None);
    let registry = lines
        .iter()
        .find(|l| l.contains("master listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("the registry is open")),
        "an open master warns: {lines:#?}"
    );
    let (_closed, lines) = master(Some(SECRET));
    assert!(
        lines.iter().any(|l| l.contains("cluster secret set")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("is open")),
        "a master with a secret warns of nothing open: {lines:#?}"
    );

    let node = |secret: Option<&str>| {
        let mut command = Command::new(DEMO);
        command.args(["node", "--master", &registry, "--listen", "127.0.0.1:0"]);
        if let Some(secret) = secret {
            command.args(["--secret", secret]);
        }
        first_lines(command, "node listening")
    };
    let (_open, lines) = node(None);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("node calls are open")),
        "an open node warns: {lines:#?}"
    );
    let (_closed, lines) = node(Some(SECRET));
    assert!(
        lines.iter().any(|l| l.contains("cluster secret set")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("are open")),
        "a node with a secret warns of nothing open: {lines:#?}"
    );
}
