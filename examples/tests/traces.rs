//! One trace id across the hop: with `--log-format json`, a `/sum` request's "routed call" line
//! in the master process (its gateway) and the "call handled" line in the node process that
//! served it carry the same `trace_id`, sent in the tarpc context.

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

mod support;

use support::procs::{DEMO, Proc, spawn_logged};

/// Spawns the demo with JSON logs (debug for the routed and handled call lines) and forwards
/// every log line, parsed.
fn spawn_json(args: &[&str]) -> (Proc, mpsc::Receiver<Value>) {
    let mut command = Command::new(DEMO);
    command.args(["--log-format", "json"]).args(args).env(
        "RUST_LOG",
        "info,distribution_client::observe=debug,distribution_node::load=debug",
    );
    let (child, lines) = spawn_logged(command, |_| true);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// The next log line whose message is `message`.
fn line(rx: &mpsc::Receiver<Value>, message: &str) -> Value {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("a `{message}` log line"));
        if line["fields"]["message"] == message {
            return line;
        }
    }
}

#[tokio::test]
async fn the_gateway_and_the_node_log_the_same_trace_id_for_a_call() {
    let (_master, master_logs) = spawn_json(&[
        "master",
        "--registry",
        "127.0.0.1:0",
        "--gateway",
        "127.0.0.1:0",
    ]);
    let registry = line(&master_logs, "master listening")["fields"]["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let gateway = line(&master_logs, "gateway listening")["fields"]["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_node, node_logs) =
        spawn_json(&["node", "--master", &registry, "--listen", "127.0.0.1:0"]);
    line(&node_logs, "registered with the master");
    // The gateway's router applies the new membership just after the registration is answered:
    // a request in between finds no node. Ask again (at most 50 times, 100 ms apart) until one
    // is routed.
    let mut answer = String::new();
    for _ in 0..50 {
        let response = reqwest::get(format!("http://{gateway}/sum?values=2,4,6"))
            .await
            .unwrap();
        let ok = response.status().is_success();
        answer = response.text().await.unwrap();
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answer.contains(": 12"), "{answer}");
    // The routed call's line (a request that found no node logs none, or an outcome not "ok").
    let routed = loop {
        let routed = line(&master_logs, "routed call");
        if routed["fields"]["outcome"] == "ok" {
            break routed;
        }
    };
    let handled = line(&node_logs, "call handled");
    let trace = routed["fields"]["trace_id"].as_str().unwrap();
    assert!(
        !trace.is_empty() && trace.chars().any(|c| c != '0'),
        "{routed}"
    );
    assert_eq!(
        handled["fields"]["trace_id"], routed["fields"]["trace_id"],
        "the same trace id on both sides of the hop: {routed} / {handled}"
    );
}
