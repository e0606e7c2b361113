//! The blocking query's unit tests: `wait` parsing, answers on a change, after the whole wait
//! (paused clock), at shutdown, and the limit of waiting queries.

use std::time::Instant;

use super::*;
use crate::config::MasterConfig;
use crate::registry::Registration;

fn registry() -> Registry {
    Registry::new(&MasterConfig::default())
}

fn join(r: &Registry, id: &str, port: u16) {
    r.register(Registration::new(id, format!("127.0.0.1:{port}"), 4))
        .unwrap();
}

#[test]
fn wait_parses_integer_and_unit() {
    assert_eq!(parse_wait("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_wait("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_wait("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_wait("0s"), Ok(Duration::ZERO));
    assert_eq!(parse_wait("1h"), Ok(MAX_WAIT), "capped");
    assert_eq!(
        parse_wait("999999999999h"),
        Ok(MAX_WAIT),
        "capped, no overflow"
    );
    for bad in [
        "",
        "30",
        "s",
        "-1s",
        "1.5s",
        "30 s",
        " 30s",
        "30S",
        "30sec",
        "1d",
        "9999999999999s",
        "0x10s",
        "+5s",
    ] {
        assert!(parse_wait(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn query_params_default_and_refuse() {
    assert_eq!(BlockingQuery::from_params(None, Some("bad")).unwrap(), None);
    assert_eq!(
        BlockingQuery::from_params(Some("7"), None).unwrap(),
        Some(BlockingQuery {
            index: 7,
            wait: DEFAULT_WAIT
        })
    );
    assert_eq!(
        BlockingQuery::from_params(Some("7"), Some("20m"))
            .unwrap()
            .unwrap()
            .wait,
        MAX_WAIT
    );
    for (index, wait) in [
        ("-1", None),
        ("x", None),
        ("1", Some("1")),
        ("1", Some("1y")),
    ] {
        let err = BlockingQuery::from_params(Some(index), wait).unwrap_err();
        assert!(
            matches!(err, WatchError::BadIndex(_) | WatchError::BadWait(_)),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn answers_at_once_when_the_index_differs() {
    let r = registry();
    join(&r, "a", 1);
    let watchers = Watchers::new(CancellationToken::new());
    for index in [0, 5] {
        let query = BlockingQuery {
            index,
            wait: Duration::from_secs(60),
        };
        let answered = tokio::time::timeout(Duration::from_secs(5), watchers.wait(&r, query));
        assert!(answered.await.unwrap().is_ok(), "index {index}");
    }
}

#[tokio::test(start_paused = true)]
async fn waits_the_whole_wait_without_a_change() {
    let r = registry();
    join(&r, "a", 1);
    let watchers = Watchers::new(CancellationToken::new());
    let start = tokio::time::Instant::now();
    let query = BlockingQuery {
        index: 1,
        wait: Duration::from_secs(32),
    };
    watchers.wait(&r, query).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(32) && waited <= Duration::from_secs(34),
        "waited {waited:?}"
    );
}

#[tokio::test]
async fn returns_on_a_change_within_milliseconds() {
    let r = registry();
    join(&r, "a", 1);
    let watchers = Watchers::new(CancellationToken::new());
    let waiting = {
        let (r, watchers) = (r.clone(), watchers.clone());
        tokio::spawn(async move {
            let query = BlockingQuery {
                index: 1,
                wait: Duration::from_secs(60),
            };
            watchers.wait(&r, query).await.unwrap();
            Instant::now()
        })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    let joined = Instant::now();
    join(&r, "b", 2);
    let answered = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered on the change")
        .unwrap();
    assert!(answered.duration_since(joined) < Duration::from_secs(1));
}

#[tokio::test]
async fn shutdown_ends_waiting_queries() {
    let r = registry();
    let stop = CancellationToken::new();
    let watchers = Watchers::new(stop.clone());
    let query = BlockingQuery {
        index: 0,
        wait: Duration::from_secs(60),
    };
    let waiting = tokio::spawn(async move { watchers.wait(&r, query).await });
    tokio::task::yield_now().await;
    stop.cancel();
    let answered = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert!(answered.expect("answered at shutdown").unwrap().is_ok());
}

#[tokio::test]
async fn too_many_waiters_get_503() {
    let r = registry();
    let watchers = Watchers::with_limit(CancellationToken::new(), 1);
    let query = BlockingQuery {
        index: 0,
        wait: Duration::from_secs(60),
    };
    let first = {
        let (r, watchers) = (r.clone(), watchers.clone());
        tokio::spawn(async move { watchers.wait(&r, query).await })
    };
    // The first query holds the only slot once it is waiting.
    tokio::time::timeout(Duration::from_secs(5), async {
        while watchers.slots.available_permits() != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let err = watchers.wait(&r, query).await.unwrap_err();
    assert_eq!(err, WatchError::TooManyWaiting);
    join(&r, "a", 1);
    tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
