//! Palindrome counts abandoned by their callers stop burning the node's CPU (a node process).
//!
//! A count of 2^40 numbers takes tens of minutes. Before, a caller that gave up (deadline
//! passed, call cancelled, HTTP client gone) left it running on a blocking thread while the node
//! reported itself idle; a client repeating that piled up CPU work without bound. Now the count
//! looks at its call every slice (`palindrome::SLICE` numbers) and stops.
//!
//! The figure checked is the node process's CPU time (utime + stime of `/proc/<pid>/stat`) in a
//! window that starts one second after the callers gave up.

use std::time::Duration;

use distribution_examples::service::CalcClient;
use distribution_shared::defaults::MAX_FRAME_LEN;
use distribution_shared::transport;
use tarpc::client::RpcError;
use tarpc::context;
use tokio::net::TcpStream;

mod support;

use support::procs::{Proc, master_and_node};

/// A count no call finishes: 2^40 numbers.
const HUGE: u64 = 1 << 40;

/// How many abandoned counts each test leaves behind: more than the node has cores.
const ABANDONED: usize = 4;

/// The CPU time the node may use in the 1.5 s window (heartbeats, its runtime's housekeeping).
/// One abandoned count alone would use the whole window of a core.
const IDLE_CPU: Duration = Duration::from_millis(300);

/// The node process's CPU time so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) are separated by spaces.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports in USER_HZ, 100 per second on every architecture this runs on.
    Duration::from_millis(ticks * 10)
}

async fn cluster() -> (Proc, Proc, CalcClient) {
    let (master, node, addr) = master_and_node(&[]).await;
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let client = CalcClient::new(
        tarpc::client::Config::default(),
        transport::framed(tcp, MAX_FRAME_LEN),
    )
    .spawn();
    (master, node, client)
}

/// The least CPU the node must have spent while the abandoned counts ran, so that "they
/// stopped" is about work that had started: four counts on at least one core for 200 to 500 ms
/// each use far more.
const RAN_CPU: Duration = Duration::from_millis(300);

/// The CPU the node uses from 1 s to 2.5 s after its callers gave up.
async fn cpu_after_giving_up(pid: u32) -> Duration {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cpu_time(pid) - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_past_their_deadline_stop() {
    let (_master, node, client) = cluster().await;
    let before = cpu_time(node.0.id());
    let calls: Vec<_> = (0..ABANDONED)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut ctx = context::current();
                ctx.deadline = std::time::Instant::now() + Duration::from_millis(500);
                client.palindromes(ctx, 0, HUGE).await
            })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap();
        // A deadline exceeded, or the node's own "stopped" when it answers first: nothing else
        // (a refused connection or any other failure would prove nothing here).
        assert!(
            matches!(
                answer,
                Err(RpcError::DeadlineExceeded) | Ok(Err(distribution_node::work::Stopped))
            ),
            "no count of 2^40 ends in 500 ms, and the deadline ends it: {answer:?}"
        );
    }
    let ran = cpu_time(node.0.id()) - before;
    assert!(
        ran >= RAN_CPU,
        "the counts never ran: the node used {ran:?} of CPU"
    );
    let used = cpu_after_giving_up(node.0.id()).await;
    eprintln!("node CPU in the window: {used:?}");
    assert!(
        used <= IDLE_CPU,
        "the node still counts: {used:?} of CPU in 1.5 s"
    );
    // And it still answers.
    let small = client.palindromes(context::current(), 0, 2000).await;
    assert_eq!(small.unwrap(), Ok(93));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_counts_stop() {
    let (_master, node, client) = cluster().await;
    let before = cpu_time(node.0.id());
    for _ in 0..ABANDONED {
        let client = client.clone();
        let call = tokio::spawn(async move {
            let mut ctx = context::current();
            ctx.deadline = std::time::Instant::now() + Duration::from_secs(600);
            client.palindromes(ctx, 0, HUGE).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Dropping the call makes tarpc's client send a cancel, as a caller giving up does.
        call.abort();
    }
    let ran = cpu_time(node.0.id()) - before;
    assert!(
        ran >= RAN_CPU,
        "the counts never ran: the node used {ran:?} of CPU"
    );
    let used = cpu_after_giving_up(node.0.id()).await;
    eprintln!("node CPU in the window: {used:?}");
    assert!(
        used <= IDLE_CPU,
        "the node still counts: {used:?} of CPU in 1.5 s"
    );
}
