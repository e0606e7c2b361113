//! Bad days for real `distribution-demo` processes (issue #18): a node pointed at something that
//! is not a registry (a server answering `404` or `500` to everything, a master URL with a path),
//! and the demo master's listeners facing silent and greedy clients. The registry's own
//! connection attacks are in `master/tests/attacks.rs`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

mod support;

use support::procs::{DEMO, Proc, start_master};

/// How long the node's log is watched for a retry storm.
const WATCH: Duration = Duration::from_secs(3);

/// The most log lines a node may write in [`WATCH`] while its master is wrong: start-up (open
/// cluster warning, listening), one line for the outage, and slack. The bug wrote ~11,000 a second.
const MAX_LINES: usize = 5;

/// How long a node may take to exit after SIGTERM: its drain is immediate (no calls), the leave
/// request is bounded by the 2 s master timeout, plus a margin for a busy machine.
const EXIT: Duration = Duration::from_secs(4);

/// The most requests a node may send in [`WATCH`] to a master that refuses it: one per heartbeat
/// interval (1 s), as during an outage, plus slack.
const MAX_REQUESTS: usize = 6;

/// A server on 127.0.0.1:0 that answers `status` to every request, and counts them.
async fn answering(status: StatusCode) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        async move { (status, "no registry here") }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, requests)
}

/// A `distribution-demo node` registering with `master`, its stdout and stderr lines counted.
fn counted_node(master: &str) -> (Proc, Arc<AtomicUsize>) {
    let mut child = Command::new(DEMO)
        .args(["node", "--master", master, "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(AtomicUsize::new(0));
    let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
    for pipe in [out, err] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                if line.is_err() {
                    return;
                }
                lines.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    (Proc(child), lines)
}

/// Issue #18, item 3: the node neither spins (it retries once an interval, as during an outage)
/// nor floods its log, and stops on SIGTERM.
async fn node_against_a_wrong_master_backs_off_and_stops(status: StatusCode) {
    let (wrong, requests) = answering(status).await;
    let (mut node, lines) = counted_node(&wrong.to_string());
    tokio::time::sleep(WATCH).await;
    let written = lines.load(Ordering::Relaxed);
    let sent = requests.load(Ordering::Relaxed);
    assert!(
        written <= MAX_LINES,
        "a node whose master answers {status} wrote {written} log lines in {WATCH:?}"
    );
    assert!(
        (1..=MAX_REQUESTS).contains(&sent),
        "a node whose master answers {status} sent it {sent} requests in {WATCH:?}"
    );
    assert!(
        node.wait_exit(Duration::ZERO).is_none(),
        "the node still runs"
    );
    let stopping = Instant::now();
    node.signal("TERM");
    assert!(
        node.wait_exit(EXIT).is_some(),
        "a node whose master answers {status} still runs {EXIT:?} after SIGTERM"
    );
    eprintln!(
        "master answering {status}: {written} lines and {sent} requests in {WATCH:?}, exit {:?} after SIGTERM",
        stopping.elapsed()
    );
}

/// `--master` pointed at something that answers 404 (the gateway's port, another service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_master_answers_404_backs_off_and_stops_on_sigterm() {
    node_against_a_wrong_master_backs_off_and_stops(StatusCode::NOT_FOUND).await;
}

/// A master that fails every registration with 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_master_answers_500_backs_off_and_stops_on_sigterm() {
    node_against_a_wrong_master_backs_off_and_stops(StatusCode::INTERNAL_SERVER_ERROR).await;
}

/// `--master http://host:port/some/path`: refused at start with a clear error, before any
/// request (requests would go to `/some/path/v1/nodes` and get 404 forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_url_with_a_path_is_refused_at_start() {
    let (_master, registry, _gateway) = start_master(100, &[]);
    let url = format!("http://{registry}/registry");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(DEMO)
            .args(["node", "--master", &url, "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if child.try_wait().unwrap().is_some() {
                return Some(child.wait_with_output().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    })
    .await
    .unwrap()
    .expect("the node exits at once instead of retrying a wrong URL");
    assert!(!output.status.success(), "a wrong URL is an error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad master address") && stderr.contains("without a path"),
        "the error says what is wrong: {stderr}"
    );
}

/// A TCP connection to `addr` from `from` (an address of 127.0.0.0/8).
async fn connect_from(from: &str, addr: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// Whether the server closes `stream` within `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 256];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, read_to_end).await.is_ok()
}

/// The demo master's two listeners (registry and gateway) take `--max-connections-per-ip` and
/// `--idle-timeout-ms`: connections beyond the limit are closed at once, while the ones within it
/// stay open until the idle timeout, and the gateway still answers another peer.
///
/// The idle timeout (3 s) is longer than the time allowed for "at once" (1 s), so that a closing
/// by the idle timeout cannot pass for the per-IP limit; and the four held connections must still
/// be open when the fifth is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_masters_listeners_close_excess_and_silent_connections() {
    const IDLE: Duration = Duration::from_secs(3);
    let idle_ms = IDLE.as_millis().to_string();
    let (_master, registry, gateway) = start_master(
        100,
        &[
            "--max-connections-per-ip",
            "4",
            "--idle-timeout-ms",
            &idle_ms,
        ],
    );
    for addr in [&registry, &gateway] {
        let opened = tokio::time::Instant::now();
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(connect_from("127.0.0.2", addr).await);
        }
        let mut extra = connect_from("127.0.0.2", addr).await;
        assert!(
            closed_within(&mut extra, Duration::from_secs(1)).await,
            "{addr}: a fifth connection from one IP is closed at once"
        );
        assert!(
            opened.elapsed() < IDLE,
            "{addr}: the check ran past the idle timeout; it proves nothing on this machine"
        );
        for (i, stream) in held.iter_mut().enumerate() {
            assert!(
                !closed_within(stream, Duration::from_millis(10)).await,
                "{addr}: connection {i}, within the limit, was closed with the fifth"
            );
        }
        let answer = reqwest::get(format!("http://{addr}/health")).await;
        assert!(answer.is_ok(), "{addr}: another peer is served: {answer:?}");
        for (i, stream) in held.iter_mut().enumerate() {
            assert!(
                closed_within(stream, IDLE + Duration::from_secs(2)).await,
                "{addr}: silent connection {i} still open 2 s after its idle timeout of {IDLE:?}"
            );
        }
    }
}
