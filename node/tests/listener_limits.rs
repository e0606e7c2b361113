//! The limits of a node's tarpc port: connections per peer IP, and silent connections closed
//! after the idle timeout while a connection with a call running stays open however long the
//! call is silent. And the router's side of the idle timeout: it drops an unused connection
//! before the node would, so a call never meets a connection the node has just closed.

use std::time::Duration;

use distribution_client::RouterConfig;
use distribution_master::{Master, MasterConfig};
use distribution_node::{NodeConfig, NodeHandle, handler};
use tarpc::context;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

#[tarpc::service]
trait Sleepy {
    /// Answers `ms` after it was asked.
    async fn sleep(ms: u64) -> u64;
}

#[derive(Clone)]
struct SleepyServer;

impl Sleepy for SleepyServer {
    async fn sleep(self, _: context::Context, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

distribution_shared::service_client!(SleepyClient);

const IDLE: Duration = Duration::from_millis(800);

async fn cluster(per_ip: usize) -> (Master, NodeHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(
        listener,
        MasterConfig::with_interval(Duration::from_millis(200)),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = NodeConfig::new(master.local_addr().to_string());
    config.idle_timeout = IDLE;
    config.max_connections_per_ip = per_ip;
    let node = distribution_node::start(listener, config, handler!(SleepyServer.serve())).unwrap();
    assert!(node.wait_registered(Duration::from_secs(10)).await);
    (master, node)
}

/// Whether the node closes `stream` within `bound` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        timeout(bound, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A connection from `ip` (a 127.0.0.0/8 address) to `addr`.
async fn connect_from(ip: &str, addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_idle_timeout_not_before() {
    let (_master, node) = cluster(64).await;
    let mut silent = TcpStream::connect(node.local_addr()).await.unwrap();
    let opened = Instant::now();
    assert!(
        !closed_within(&mut silent, IDLE / 2).await,
        "closed before the idle timeout"
    );
    assert!(
        closed_within(&mut silent, IDLE + Duration::from_secs(2)).await,
        "a silent connection stays open past the idle timeout + 2 s"
    );
    eprintln!("silent connection closed after {:?}", opened.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_call_longer_than_the_idle_timeout_is_answered() {
    let (_master, node) = cluster(64).await;
    let tcp = TcpStream::connect(node.local_addr()).await.unwrap();
    let client = SleepyClient::new(
        tarpc::client::Config::default(),
        distribution_shared::transport::framed(tcp, 1 << 20),
    )
    .spawn();
    let ms = (IDLE * 3).as_millis() as u64;
    let answer = client.sleep(context::current(), ms).await;
    assert_eq!(answer.unwrap(), ms, "a call running is activity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_ip_holds_at_most_its_share() {
    let (_master, node) = cluster(4).await;
    let addr = node.local_addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.2", addr).await);
    }
    let mut fifth = connect_from("127.0.0.2", addr).await;
    assert!(
        closed_within(&mut fifth, Duration::from_secs(2)).await,
        "the fifth connection from one IP is closed at once"
    );
    for stream in &mut held {
        assert!(!closed_within(stream, Duration::from_millis(50)).await);
    }
    // Another IP still gets in and is served.
    let tcp = connect_from("127.0.0.3", addr).await;
    let client = SleepyClient::new(
        tarpc::client::Config::default(),
        distribution_shared::transport::framed(tcp, 1 << 20),
    )
    .spawn();
    assert_eq!(client.sleep(context::current(), 1).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_drops_an_unused_connection_before_the_node_closes_it() {
    let (master, _node) = cluster(64).await;
    let router = master.router_with::<SleepyClient>(
        RouterConfig::default()
            .with_idle_close(IDLE / 2)
            .with_attempts(1),
    );
    assert!(router.wait_for_nodes(1, Duration::from_secs(5)).await);
    for round in 0..3 {
        let reply = router
            .call(|c, ctx| async move { c.sleep(ctx, 1).await })
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(reply.value, 1);
        // Long enough for the node to close the connection as idle.
        tokio::time::sleep(IDLE + Duration::from_millis(500)).await;
    }
    assert!(router.stats().iter().all(|s| !s.ejected));
}
