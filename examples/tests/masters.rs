//! No single master (issue #13): two `distribution-demo master` processes, three node processes
//! given both addresses, and a remote caller given both. Both masters list every node; master 1
//! is SIGKILLed under load: no call fails, the nodes keep serving, the caller follows master 2
//! (a node that joins during the outage reaches it through master 2 only), master 2's gateway
//! keeps answering, and master 1 restarted on its port lists every node within an interval + 2 s.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::load::{drive, remote_router, wait_listed};
use support::procs::{Proc, start_master, start_master_on, start_node};

const INTERVAL: Duration = Duration::from_millis(200);

fn node(masters: &str) -> Proc {
    start_node(masters, &["--sum-delay-ms", "20"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_masters_sigkilled_under_load_loses_no_call_and_relists_every_node() {
    let interval_ms = INTERVAL.as_millis() as u64;
    // Master 1 on a port the OS picks (none probed and released for another test to take); it
    // comes back on that port.
    let (master1, registry1, _) = start_master_on("127.0.0.1:0", interval_ms, &[]);
    let (_master2, registry2, gateway2) = start_master(interval_ms, &[]);
    let both = format!("{registry1},{registry2}");
    let mut nodes: Vec<Proc> = (0..3).map(|_| node(&both)).collect();
    for registry in [&registry1, &registry2] {
        assert!(
            wait_listed(registry, 3, Duration::from_secs(20)).await,
            "the master at {registry} lists the 3 nodes"
        );
    }
    let router = remote_router(&both, INTERVAL, 3).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = drive(&router, 16, 100_000, stop.clone());
    let outage = async {
        let mut master1 = master1;
        tokio::time::sleep(Duration::from_millis(500)).await;
        master1.signal("KILL");
        let killed = Instant::now();
        assert_eq!(master1.wait_exit(Duration::from_secs(10)), Some(false));
        drop(master1);
        // A node that joins now is listed by master 2 only: the caller sees it only if it
        // follows master 2.
        nodes.push(node(&both));
        let seen = router
            .wait_for_nodes(4, Duration::from_secs(5))
            .await
            .then(|| killed.elapsed());
        let gateway = gateway_sums(&gateway2, 20).await;
        let (master1, _, _) = start_master_on(&registry1, interval_ms, &[]);
        let restarted = Instant::now();
        let relisted = wait_listed(&registry1, 4, Duration::from_secs(10))
            .await
            .then(|| restarted.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        (master1, seen, gateway, relisted)
    };
    let (outcome, (_master1, seen, gateway, relisted)) = tokio::join!(load, outage);
    outcome.assert_no_failure();
    let seen = seen.expect("the caller follows master 2 while master 1 is down (4 nodes)");
    assert_eq!(gateway, Ok(20), "master 2's gateway answers every /sum");
    let relisted = relisted.expect("the restarted master 1 lists the 4 nodes");
    assert!(
        relisted <= INTERVAL + Duration::from_secs(2),
        "master 1 relisted every node after {relisted:?}"
    );
    assert!(
        outcome.per_node.len() >= 3,
        "the nodes kept serving: {:?}",
        outcome.per_node
    );
    for node in &mut nodes {
        assert!(node.0.try_wait().unwrap().is_none(), "a node exited");
    }
    eprintln!(
        "one of two masters killed: {} calls ok, none failed; the caller saw the node that \
         joined {seen:?} after the kill; master 1 relisted 4 nodes {relisted:?} after its restart",
        outcome.ok
    );
}

/// `n` `GET /sum?values=2,4,6` on `gateway`; how many answered 200 with the sum, or the first
/// failure.
async fn gateway_sums(gateway: &str, n: usize) -> Result<usize, String> {
    let http = reqwest::Client::new();
    let url = format!("http://{gateway}/sum?values=2,4,6");
    let mut ok = 0;
    for _ in 0..n {
        let response = http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() || !body.trim_end().ends_with(": 12") {
            return Err(format!("{status}: {body}"));
        }
        ok += 1;
    }
    Ok(ok)
}
