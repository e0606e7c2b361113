//! The blocking router from plain threads (no runtime in these tests): a master and nodes run as
//! real processes, the calls come from `std::thread`s. Many threads share one router; a
//! SIGKILLed node fails over; `wait_timeout` returns in time; the runtime's threads are gone once
//! every handle is dropped; a call inside a tokio runtime gets the typed error instead of
//! hanging; the example runs from a plain `fn main()`; an in-process master's router is wrapped
//! on the caller's runtime.
//!
//! The thread count is per process: nextest (`make test`) runs each test in its own process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use distribution_client::blocking::{BlockingError, BlockingRouter, THREAD_NAME};
use distribution_client::remote::RemoteConfig;
use distribution_client::{CallOptions, RouterConfig, ScatterOptions};
use distribution_examples::service::CalcClient;

mod support;

/// `examples/blocking.rs` itself (its `main` only reads the address and calls `run`).
#[allow(dead_code)]
#[path = "../examples/blocking.rs"]
mod blocking_example;

use support::procs::{Proc, start_master, start_node};

/// The master's heartbeat interval: a SIGKILLed node is evicted after 3 of them.
const INTERVAL_MS: u64 = 200;

/// A master process and `n` node processes whose `sum` takes `delay_ms`, with a blocking router
/// that already knows the `n` nodes.
struct Cluster {
    router: BlockingRouter<CalcClient>,
    nodes: Vec<Proc>,
    master: String,
    _master: Proc,
}

fn cluster(n: usize, delay_ms: u64) -> Cluster {
    let (master_proc, master, _gateway) = start_master(INTERVAL_MS, &[]);
    let delay = delay_ms.to_string();
    let nodes = (0..n)
        .map(|_| start_node(&master, &["--sum-delay-ms", &delay]))
        .collect();
    let config = RemoteConfig::default()
        .with_load_refresh(Duration::from_millis(INTERVAL_MS))
        .with_retry_base(Duration::from_millis(20))
        .with_retry_max(Duration::from_millis(100));
    let router = BlockingRouter::connect_with(&master, config).expect("the router connects");
    // Cold binaries on a loaded machine may take a while to start.
    assert!(
        router.wait_for_nodes(n, Duration::from_secs(30)).unwrap(),
        "the router sees {n} nodes"
    );
    Cluster {
        router,
        nodes,
        master,
        _master: master_proc,
    }
}

/// How many threads of this process carry the blocking runtime's name.
fn runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == THREAD_NAME)
        .count()
}

/// `threads` threads making `per_thread` sum calls each with `options`; each thread bumps `done`
/// after each call. Returns the calls per node and the failures.
fn hammer(
    router: &BlockingRouter<CalcClient>,
    threads: usize,
    per_thread: usize,
    options: CallOptions,
    done: &Arc<AtomicUsize>,
) -> (BTreeMap<String, usize>, Vec<String>) {
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let router = router.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut served = Vec::new();
                let mut failures = Vec::new();
                for i in 0..per_thread {
                    let values = vec![t as i64, i as i64];
                    let reply = router.call_with(options, move |c, ctx| {
                        let values = values.clone();
                        async move { c.sum(ctx, values).await }
                    });
                    match reply {
                        Ok(reply) if reply.value == Ok((t + i) as i64) => {
                            served.push(reply.node.id.to_string());
                        }
                        Ok(reply) => failures.push(format!("wrong sum {:?}", reply.value)),
                        Err(err) => failures.push(err.to_string()),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (served, failures)
            })
        })
        .collect();
    let mut per_node = BTreeMap::new();
    let mut failures = Vec::new();
    for worker in workers {
        let (served, failed) = worker.join().expect("a calling thread panicked");
        for id in served {
            *per_node.entry(id).or_default() += 1;
        }
        failures.extend(failed);
    }
    (per_node, failures)
}

/// Compiles only if the router can be shared between threads and cloned.
const _: fn() = || {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<BlockingRouter<CalcClient>>();
};

#[test]
fn eight_threads_share_one_router_over_three_node_processes() {
    let cluster = cluster(3, 2);
    let done = Arc::new(AtomicUsize::new(0));
    let (per_node, failures) = hammer(&cluster.router, 8, 200, CallOptions::default(), &done);
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert_eq!(per_node.values().sum::<usize>(), 1600);
    assert_eq!(per_node.len(), 3, "every node served: {per_node:?}");

    // Scatter returns the replies in the items' order.
    let items: Vec<Vec<i64>> = (0..30).map(|i| vec![i, 1000]).collect();
    let replies = cluster
        .router
        .scatter(items, ScatterOptions::default(), |c, ctx, v| async move {
            c.sum(ctx, v).await
        })
        .unwrap();
    let sums: Vec<i64> = replies.into_iter().map(|r| r.value.unwrap()).collect();
    assert_eq!(sums, (0..30).map(|i| i + 1000).collect::<Vec<_>>());
}

#[test]
fn a_sigkilled_node_costs_no_idempotent_blocking_call() {
    let mut cluster = cluster(3, 20);
    let done = Arc::new(AtomicUsize::new(0));
    let options = CallOptions::deadline(Duration::from_secs(10)).idempotent();
    let (per_node, failures) = std::thread::scope(|scope| {
        let run = scope.spawn(|| hammer(&cluster.router, 8, 100, options, &done));
        // Kill a node a quarter of the way in, while 8 calls are in flight.
        let until = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::Relaxed) < 200 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        cluster.nodes.remove(0).signal("KILL");
        run.join().expect("the calling threads")
    });
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert_eq!(per_node.values().sum::<usize>(), 800);
}

#[test]
fn wait_timeout_returns_in_time_and_the_call_goes_on() {
    let cluster = cluster(1, 1500);
    let started = Instant::now();
    let mut handle = cluster
        .router
        .submit(|c, ctx| async move { c.sum(ctx, vec![20, 22]).await });
    let early = handle.wait_timeout(Duration::from_millis(100));
    let waited = started.elapsed();
    assert!(early.is_none(), "no reply yet from a 1.5 s call: {early:?}");
    // 100 ms asked; a busy 2-core machine gets a generous margin, still far below 1.5 s.
    assert!(
        waited < Duration::from_millis(1000),
        "returned after {waited:?}"
    );
    assert!(!handle.is_finished());
    // The call went on: its reply is still there to take.
    let reply = handle.wait().expect("the slow call answers");
    assert_eq!(reply.value, Ok(42));
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

#[test]
fn dropping_every_handle_stops_the_runtime() {
    let cluster = cluster(1, 300);
    let router = cluster.router.clone();
    let reply = router.call(|c, ctx| async move { c.sum(ctx, vec![1, 2]).await });
    assert_eq!(reply.unwrap().value, Ok(3));
    assert!(runtime_threads() > 0, "the runtime runs named threads");
    let pending = router.submit(|c, ctx| async move { c.sum(ctx, vec![3, 4]).await });
    let Cluster {
        router: original,
        nodes,
        master,
        _master,
    } = cluster;
    drop((original, router));
    // A pending call keeps the runtime alive: its reply is still to come.
    assert!(runtime_threads() > 0, "a call handle keeps the runtime");
    assert_eq!(pending.wait().unwrap().value, Ok(7));
    // The last handle is gone (`wait` consumed it): the drop waited for the threads to exit.
    assert_eq!(runtime_threads(), 0, "no runtime thread is left");
    drop((nodes, master, _master));
}

#[test]
fn inside_a_tokio_runtime_every_blocking_method_returns_the_typed_error() {
    let cluster = cluster(1, 0);
    let router = cluster.router.clone();
    let master = cluster.master.clone();
    let (tx, rx) = mpsc::channel();
    // The checks run on their own thread, so that a hang fails the test instead of blocking it.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(async {
            let call = router.call(|c, ctx| async move { c.sum(ctx, vec![1]).await });
            let mut handle = router.submit(|c, ctx| async move { c.sum(ctx, vec![2]).await });
            let timed = handle.wait_timeout(Duration::from_millis(10));
            let waited = handle.wait();
            let connect = BlockingRouter::<CalcClient>::connect_with(&master, Default::default());
            [
                call.err(),
                timed.and_then(Result::err),
                waited.err(),
                connect.err(),
            ]
        });
        let _ = tx.send(outcome.map(|e| e.map(|e| e.to_string())));
        // Dropping the router's last clone inside the runtime must not panic either.
        runtime.block_on(async move { drop(router) });
    });
    let outcome = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the blocking calls return inside a runtime (no hang, no panic)");
    let expected = BlockingError::InsideRuntime.to_string();
    for (what, error) in ["call", "wait_timeout", "wait", "connect"]
        .iter()
        .zip(outcome)
    {
        assert_eq!(error.as_deref(), Some(expected.as_str()), "{what}");
    }
    assert!(expected.contains("use the async CallRouter"), "{expected}");
    // The same router still works from a plain thread.
    let reply = cluster
        .router
        .call(|c, ctx| async move { c.sum(ctx, vec![5]).await });
    assert_eq!(reply.unwrap().value, Ok(5));
}

#[test]
fn the_example_runs_from_a_plain_main() {
    let cluster = cluster(2, 0);
    let mut out = Vec::new();
    // The example's code, on this plain thread: no runtime anywhere.
    blocking_example::run(&cluster.master, &mut out).expect("the example runs");
    let stdout = String::from_utf8(out).unwrap();
    assert!(stdout.contains("sum: 12 from node-"), "{stdout}");
    assert!(stdout.contains("spawned: 3, quick: 10"), "{stdout}");
    assert!(
        stdout.contains("scatter: [0, 2, 4, 6, 8, 10, 12, 14]"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("thread: ").count(), 4, "{stdout}");
}

#[test]
fn a_router_of_an_in_process_master_is_wrapped_without_a_second_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (master, node, router) = runtime.block_on(async {
        let master = support::master().await;
        let node = support::node(&master, Duration::ZERO).await;
        let router = support::router(&master, 1, RouterConfig::default()).await;
        (master, node, router)
    });
    let blocking = BlockingRouter::from_async(router, runtime.handle().clone());
    let reply = blocking.call(|c, ctx| async move { c.sum(ctx, vec![40, 2]).await });
    assert_eq!(reply.unwrap().value, Ok(42));
    let waited = blocking
        .submit(|c, ctx| async move { c.sum(ctx, vec![1, 1]).await })
        .wait();
    assert_eq!(waited.unwrap().value, Ok(2));
    assert_eq!(runtime_threads(), 0, "the caller's runtime does the work");
    drop(blocking);
    runtime.block_on(async move { drop((node, master)) });
}
