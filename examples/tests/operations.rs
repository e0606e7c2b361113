//! `distribution-demo health ADDR` as a process: exit 0 when the process at ADDR answers
//! `/health`, non-zero when nothing answers (what a Docker `HEALTHCHECK` needs).

use std::process::{Command, Stdio};

mod support;

use support::procs::{self, DEMO};

fn health(addr: &str) -> bool {
    Command::new(DEMO)
        .args(["health", addr, "--timeout-ms", "3000"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn health_exits_zero_only_when_the_process_answers() {
    let (master, registry, gateway) = procs::start_master(200, &[]);
    let (_node, metrics) = procs::start_node_with_metrics(&registry, &[]);
    assert!(health(&registry), "the registry answers /health");
    assert!(health(&gateway), "the gateway answers /health");
    assert!(health(&metrics), "a node's metrics address answers /health");
    drop(master); // SIGKILL
    assert!(
        !health(&registry),
        "nothing answers on a dead master's port"
    );
    let closed = format!("127.0.0.1:{}", procs::free_port());
    assert!(!health(&closed), "nothing listens there");
}
