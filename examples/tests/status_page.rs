//! The master's live status page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver (`fantoccini`). The page shows three node processes,
//! a fourth one appearing, a SIGKILLed one marked late and then gone, all without a reload; with
//! a cluster secret it shows nothing until given the secret in the URL fragment; through a
//! master restart on the same port it says the master is unreachable and then shows the nodes
//! again. Saves a screenshot (`target/status-page.png`; the one in `docs/` comes from here).
//!
//! Skipped with a message when `chromium` or `chromedriver` is not installed (`.ci/run` installs
//! them, and under CI, `CI` set, a missing tool fails the test).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

mod support;

use support::procs::{self, Proc};

const BOUND: Duration = Duration::from_secs(20);

fn browser_present() -> bool {
    let ok = procs::installed("chromium") && procs::installed("chromedriver");
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI must run this test: .ci/run installs its tools"
    );
    if !ok {
        eprintln!(
            "SKIPPED: `chromium` and `chromedriver` are not installed here \
             (apt-get install chromium chromium-driver; .ci/run does it)"
        );
    }
    ok
}

/// chromedriver in a process group of its own, with the Chromium it starts: the whole group is
/// SIGKILLed when dropped, so a failing test leaves no browser behind.
struct Driver(Proc);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

/// Starts chromedriver and a headless Chromium session.
async fn browser() -> (Driver, Client) {
    use std::os::unix::process::CommandExt;
    let port = procs::free_port();
    let driver = Driver(Proc(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--disable-breakpad",
                         "--disable-crash-reporter", "--window-size=1280,900"] }),
    );
    let started = Instant::now();
    loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(err) if started.elapsed() < BOUND => {
                eprintln!("waiting for chromedriver: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("no WebDriver session: {err}"),
        }
    }
}

/// The node table as the page shows it: (id, state) per row.
async fn rows(browser: &Client) -> Vec<(String, String)> {
    let script = "return Array.from(document.querySelectorAll('#nodes tbody tr'))\
                  .map(r => [r.dataset.id, r.className]);";
    let value = browser.execute(script, vec![]).await.unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls the page until `check` holds on its rows, for at most [`BOUND`].
async fn wait_rows(browser: &Client, what: &str, check: impl Fn(&[(String, String)]) -> bool) {
    let started = Instant::now();
    loop {
        let now = rows(browser).await;
        if check(&now) {
            return;
        }
        assert!(started.elapsed() < BOUND, "{what}: the page shows {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(browser: &Client, script: &str) -> Value {
    browser.execute(script, vec![]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_follows_joins_and_a_killed_node_live() {
    if !browser_present() {
        return;
    }
    // 500 ms heartbeats: a killed node is late from 750 ms and evicted at 1.5 s, a window the
    // page's updates and this test's polls both fit in easily.
    let (master, registry, _gateway) = procs::start_master(500, &[]);
    let _nodes: Vec<Proc> = (0..3)
        .map(|i| procs::start_node(&registry, &["--id", &format!("node-{i}")]))
        .collect();
    let (_driver, browser) = browser().await;
    browser.goto(&format!("http://{registry}/")).await.unwrap();
    // A marker that a reload would erase.
    browser
        .execute("window.notReloaded = 42; return 0;", vec![])
        .await
        .unwrap();
    wait_rows(&browser, "three nodes", |r| r.len() == 3).await;

    let fourth = procs::start_node(&registry, &["--id", "node-3"]);
    wait_rows(&browser, "a fourth node appears", |r| {
        r.iter().any(|(id, _)| id == "node-3")
    })
    .await;
    fourth.signal("KILL");
    wait_rows(&browser, "the killed node is marked late", |r| {
        r.iter()
            .any(|(id, state)| id == "node-3" && state == "late")
    })
    .await;
    wait_rows(&browser, "then it is gone", |r| {
        r.len() == 3 && r.iter().all(|(id, _)| id != "node-3")
    })
    .await;
    let events = text(
        &browser,
        "return document.getElementById('events').innerText;",
    )
    .await;
    let events = events.as_str().unwrap();
    for kind in ["join", "late", "eviction"] {
        assert!(
            events.contains(kind),
            "the event list shows `{kind}`: {events}"
        );
    }
    let png = browser.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/status-page.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // Through a master restart on the same port: the page says so, then shows the three nodes
    // again as they register with the new master.
    drop(master); // SIGKILL
    let started = Instant::now();
    while text(
        &browser,
        "return document.getElementById('conn').className;",
    )
    .await
        != json!("down")
    {
        assert!(
            started.elapsed() < BOUND,
            "the page shows the master unreachable"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_master, _, _) = procs::start_master_on(&registry, 500, &[]);
    wait_rows(&browser, "the nodes again, with the new master", |r| {
        r.len() == 3 && r.iter().all(|(_, state)| state == "up")
    })
    .await;
    let started = Instant::now();
    while text(
        &browser,
        "return document.getElementById('conn').className;",
    )
    .await
        != json!("")
    {
        assert!(
            started.elapsed() < BOUND,
            "the page follows the new master's events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = text(&browser, "return window.notReloaded;").await;
    assert_eq!(marker, json!(42), "the page was never reloaded");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_the_page_needs_it_in_the_fragment() {
    if !browser_present() {
        return;
    }
    let (_master, registry, _gateway) = procs::start_master(200, &["--secret", "s3cret"]);
    let _node = procs::start_node(&registry, &["--secret", "s3cret", "--id", "only"]);
    let (_driver, browser) = browser().await;
    browser.goto(&format!("http://{registry}/")).await.unwrap();
    let started = Instant::now();
    loop {
        let shown = text(
            &browser,
            "return getComputedStyle(document.getElementById('login')).display;",
        )
        .await;
        if shown == json!("block") {
            break;
        }
        assert!(started.elapsed() < BOUND, "the page asks for the secret");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rows(&browser).await.is_empty(),
        "no data without the secret"
    );
    browser
        .goto(&format!("http://{registry}/?v=2#secret=s3cret"))
        .await
        .unwrap();
    wait_rows(&browser, "the node, with the secret", |r| {
        r.len() == 1 && r[0].0 == "only"
    })
    .await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_cluster_shows_its_first_rows_and_counts_every_node() {
    use distribution_master::registry::Registration;
    use distribution_master::{Master, MasterConfig};
    if !browser_present() {
        return;
    }
    // 700 nodes (more than the page's 500 rows) that never beat: a ten-minute lease.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master = Master::start(
        listener,
        MasterConfig::with_interval(Duration::from_secs(600)),
    )
    .unwrap();
    for i in 0..700 {
        let addr = format!("127.1.{}.{}:7000", i >> 8, i & 0xff);
        master
            .registry()
            .register(Registration::new(format!("node-{i:03}"), addr, 8))
            .unwrap();
    }
    let (_driver, browser) = browser().await;
    browser
        .goto(&format!("http://{}/", master.local_addr()))
        .await
        .unwrap();
    wait_rows(&browser, "the first 500 nodes by id", |r| {
        r.len() == 500 && r[0].0 == "node-000" && r[499].0 == "node-499"
    })
    .await;
    let totals = text(
        &browser,
        "return [document.getElementById('t-nodes').innerText, \
                 document.getElementById('t-capacity').innerText, \
                 document.getElementById('shown').innerText];",
    )
    .await;
    assert_eq!(
        totals,
        json!(["700", "5600", "(the first 500 of 700 by id)"]),
        "the totals count every node"
    );
    browser.close().await.unwrap();
    master.shutdown().await;
}
