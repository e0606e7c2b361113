//! Self-preservation on tokio's paused clock: a reaper sweeping every quarter interval and nodes
//! beating every interval (each at its own phase), some of them falling silent.

use std::collections::HashSet;

use distribution_shared::wire::{Heartbeat, NodeState};

use super::super::{Registration, Registry};
use super::*;

const INTERVAL: Duration = Duration::from_secs(1);
const SWEEP: Duration = Duration::from_millis(250);
const TTL: Duration = Duration::from_secs(3);

/// A registry with 1 s heartbeats (3 s TTL), self-preservation at `share`, and `n` nodes
/// `n0`, `n1`, ...
fn cluster(n: usize, share: Option<f64>) -> (Registry, Vec<String>) {
    let config = MasterConfig::with_interval(INTERVAL).with_self_preservation(share);
    let r = Registry::new(&config);
    let ids: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let reg = Registration::new(id.clone(), format!("127.0.0.1:{}", 1000 + i), 4);
        r.register(reg).unwrap();
    }
    (r, ids)
}

/// What a stretch of sweeps saw.
#[derive(Debug, Default)]
struct Seen {
    evicted: Vec<(String, Duration)>,
    /// Sweeps at which the registry was degraded, and how many sweeps in all.
    degraded: usize,
    sweeps: usize,
    /// Times the degraded state started or ended.
    changes: usize,
}

/// Runs `stretch` of sweeps; the nodes in `beating` heartbeat every interval (node `i` at
/// its own phase), the others stay silent. Times in `evicted` are from the start of the stretch.
async fn run(r: &Registry, ids: &[String], beating: &HashSet<&str>, stretch: Duration) -> Seen {
    let mut seen = Seen::default();
    let mut was = r.degraded().is_some();
    let steps = (stretch.as_millis() / SWEEP.as_millis()) as usize;
    for step in 1..=steps {
        tokio::time::advance(SWEEP).await;
        for (i, id) in ids.iter().enumerate() {
            if (step + i) % 4 == 0 && beating.contains(id.as_str()) {
                // A node evicted earlier registers again, as real ones do after a 404.
                if r.heartbeat(id, &Heartbeat::default()).is_err() {
                    let reg = Registration::new(id.clone(), format!("127.0.0.1:{}", 1000 + i), 4);
                    r.register(reg).unwrap();
                }
            }
        }
        let at = SWEEP * step as u32;
        for id in r.evict_expired(Instant::now()) {
            seen.evicted.push((id, at));
        }
        let now = r.degraded().is_some();
        seen.sweeps += 1;
        seen.degraded += usize::from(now);
        seen.changes += usize::from(now != was);
        was = now;
    }
    seen
}

fn all(ids: &[String]) -> HashSet<&str> {
    ids.iter().map(String::as_str).collect()
}

fn without<'a>(ids: &'a [String], silent: &[&str]) -> HashSet<&'a str> {
    all(ids)
        .into_iter()
        .filter(|id| !silent.contains(id))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn one_node_that_dies_among_three_is_evicted_on_time() {
    let (r, ids) = cluster(3, Some(0.85));
    assert!(
        run(&r, &ids, &all(&ids), INTERVAL * 3)
            .await
            .evicted
            .is_empty()
    );
    // n2 dies now (its last beat was half an interval ago).
    let seen = run(&r, &ids, &without(&ids, &["n2"]), INTERVAL * 6).await;
    assert_eq!(
        seen.degraded, 0,
        "one silent node never makes the master degraded"
    );
    assert_eq!(seen.evicted.len(), 1, "{seen:?}");
    let (id, at) = &seen.evicted[0];
    assert_eq!(id, "n2");
    // Its last beat was at most an interval before the stretch: evicted at TTL + one sweep.
    assert!(*at <= TTL + SWEEP, "evicted {at:?} into the silence");
    assert_eq!(r.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_master_cut_off_from_every_node_evicts_none_and_renews_all_when_they_return() {
    let (r, ids) = cluster(10, Some(0.85));
    run(&r, &ids, &all(&ids), INTERVAL * 3).await;
    assert!(r.degraded().is_none());
    let cut = run(&r, &ids, &HashSet::new(), TTL * 3).await;
    assert!(cut.evicted.is_empty(), "{cut:?}");
    assert_eq!(cut.changes, 1, "degraded once, and stays so");
    let reason = r.degraded().expect("degraded");
    assert!(reason.contains("10 of 10 nodes silent"), "{reason}");
    let list = r.list(Instant::now());
    assert_eq!(list.degraded.as_deref(), Some(&*reason));
    assert_eq!(list.nodes.len(), 10);
    assert!(list.nodes.iter().all(|n| n.state == NodeState::Late));
    // Back, except n9 (it died meanwhile): the state ends at once (one silent node), no node
    // is evicted, and n9 is evicted one TTL after the end.
    let back = run(&r, &ids, &without(&ids, &["n9"]), TTL * 2).await;
    assert!(r.degraded().is_none() && r.list(Instant::now()).degraded.is_none());
    assert_eq!(back.changes, 1, "{back:?}");
    assert_eq!(back.evicted.len(), 1, "{back:?}");
    let (id, at) = &back.evicted[0];
    assert_eq!(id, "n9");
    assert!(*at > TTL && *at <= TTL + INTERVAL + SWEEP, "{at:?}");
    assert_eq!(r.len(), 9);
}

#[tokio::test(start_paused = true)]
async fn eight_silent_nodes_of_ten_stop_evictions_until_they_beat_again() {
    let (r, ids) = cluster(10, Some(0.85));
    run(&r, &ids, &all(&ids), INTERVAL * 3).await;
    let stopped: Vec<&str> = ids[2..].iter().map(String::as_str).collect();
    let seen = run(&r, &ids, &without(&ids, &stopped), TTL * 3).await;
    assert!(seen.evicted.is_empty(), "{seen:?}");
    assert!(r.degraded().unwrap().contains("8 of 10 nodes silent"));
    let seen = run(&r, &ids, &all(&ids), TTL * 2).await;
    assert!(
        seen.evicted.is_empty() && r.degraded().is_none(),
        "{seen:?}"
    );
    assert_eq!(r.len(), 10);
}

#[tokio::test(start_paused = true)]
async fn two_dead_nodes_of_ten_keep_the_master_degraded_without_flapping() {
    // 20 % of the renewals missing, two nodes silent: the rule keeps them (a lower share
    // evicts them, see below), and the state does not flap around the threshold.
    let (r, ids) = cluster(10, Some(0.85));
    run(&r, &ids, &all(&ids), INTERVAL * 3).await;
    let seen = run(&r, &ids, &without(&ids, &["n0", "n5"]), INTERVAL * 30).await;
    assert!(seen.evicted.is_empty(), "{seen:?}");
    assert_eq!(seen.changes, 1, "{seen:?}");
    assert_eq!(r.len(), 10);

    let (r, ids) = cluster(10, Some(0.5));
    run(&r, &ids, &all(&ids), INTERVAL * 3).await;
    let seen = run(&r, &ids, &without(&ids, &["n0", "n5"]), INTERVAL * 6).await;
    assert_eq!(seen.degraded, 0, "{seen:?}");
    assert_eq!(seen.evicted.len(), 2, "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn switched_off_the_master_evicts_every_silent_node_on_the_ttl() {
    let (r, ids) = cluster(10, None);
    run(&r, &ids, &all(&ids), INTERVAL * 3).await;
    let seen = run(&r, &ids, &HashSet::new(), TTL * 2).await;
    assert_eq!(seen.degraded, 0);
    assert_eq!(seen.evicted.len(), 10, "{seen:?}");
    assert!(seen.evicted.iter().all(|(_, at)| *at <= TTL + SWEEP));
}

#[tokio::test(start_paused = true)]
async fn the_window_counts_complete_sub_windows_of_the_last_two_intervals_only() {
    let config = MasterConfig::with_interval(INTERVAL);
    let mut p = Preservation::new(&config);
    let start = Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    for ms in [0, 100, 260, 1_900, 2_100] {
        p.renewed(at(ms));
    }
    // At 2.2 s the complete sub-windows cover 0 to 2 s: 2,100 is in the one being filled.
    assert_eq!(p.window.recent(at(2_200)), (4, INTERVAL * 2));
    // At 2.6 s they cover 0.5 to 2.5 s: the first three fell out.
    assert_eq!(p.window.recent(at(2_600)), (2, INTERVAL * 2));
    // Before two intervals have passed, the window is what has passed.
    assert_eq!(p.window.recent(at(600)), (3, Duration::from_millis(500)));
    // Long after, nothing: the ring's old counts are not mistaken for new ones.
    assert_eq!(p.window.recent(at(60_000 + 250)).0, 0);
    assert_eq!(p.window.counts.len(), SUB_WINDOWS + 1, "constant memory");
}
