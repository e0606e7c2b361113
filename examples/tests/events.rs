//! `distribution-demo client watch --events` as a process: it prints the master's membership
//! events as JSON lines: a node process joining, then leaving on SIGTERM, then one SIGKILLed
//! turning late and being evicted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use distribution_shared::wire::{EventKind, MembershipEvent};

mod support;

use support::procs::{self, DEMO, Proc};

/// Starts `client watch --events --after 0` and forwards its lines.
fn watch_events(master: &str) -> (Proc, mpsc::Receiver<MembershipEvent>) {
    let mut child = Command::new(DEMO)
        .args([
            "client", "--master", master, "watch", "--events", "--after", "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let event = serde_json::from_str(&line).expect("a JSON event per line");
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    (Proc(child), rx)
}

fn next(rx: &mpsc::Receiver<MembershipEvent>) -> MembershipEvent {
    rx.recv_timeout(Duration::from_secs(15))
        .expect("an event line within 15 s")
}

#[test]
fn client_watch_events_prints_joins_leaves_late_and_evictions() {
    let (_master, registry, _gateway) = procs::start_master(200, &[]);
    let (_watch, events) = watch_events(&registry);
    let graceful = procs::start_node(&registry, &["--id", "graceful"]);
    let joined = next(&events);
    assert_eq!(
        (joined.kind, joined.node.as_str()),
        (EventKind::Join, "graceful")
    );
    assert!(joined.addr.starts_with("127.0.0.1:"), "{joined:?}");
    graceful.signal("TERM");
    let left = next(&events);
    assert_eq!(
        (left.kind, left.node.as_str()),
        (EventKind::Leave, "graceful")
    );
    assert_eq!(left.index, joined.index + 1);

    let crashed = procs::start_node(&registry, &["--id", "crashed"]);
    assert_eq!(next(&events).kind, EventKind::Join);
    crashed.signal("KILL");
    let late = next(&events);
    assert_eq!(
        (late.kind, late.node.as_str()),
        (EventKind::Late, "crashed")
    );
    let evicted = next(&events);
    assert_eq!(
        (evicted.kind, evicted.node.as_str()),
        (EventKind::Eviction, "crashed")
    );
    assert!(
        evicted.reason.starts_with("no heartbeat for"),
        "{evicted:?}"
    );
}
