//! The cluster secret over real TCP: without it, or with a wrong one, the registry API answers
//! 401 and changes nothing; with it, everything works; `/health` stays open.

use std::time::Duration;

use distribution_master::{Master, MasterConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SECRET: &str = "correct horse battery staple";

async fn guarded_master() -> (Master, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config =
        MasterConfig::with_interval(Duration::from_secs(1)).with_secret(Some(SECRET.into()));
    let master = Master::start(listener, config).unwrap();
    let base = format!("http://{}", master.local_addr());
    (master, base)
}

fn requests(base: &str) -> Vec<(reqwest::Method, String, Option<Value>)> {
    vec![
        (
            reqwest::Method::POST,
            format!("{base}/v1/nodes"),
            Some(json!({"id": "intruder", "port": 9})),
        ),
        (
            reqwest::Method::PUT,
            format!("{base}/v1/nodes/n1/heartbeat"),
            Some(json!({"in_flight": 99})),
        ),
        (reqwest::Method::DELETE, format!("{base}/v1/nodes/n1"), None),
        (reqwest::Method::GET, format!("{base}/v1/nodes"), None),
    ]
}

#[tokio::test]
async fn without_the_secret_everything_is_refused_and_nothing_changes() {
    let (master, base) = guarded_master().await;
    let http = reqwest::Client::new();
    let ok = http
        .post(format!("{base}/v1/nodes"))
        .bearer_auth(SECRET)
        .json(&json!({"id": "n1", "port": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let index = master.registry().index();

    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some("correct horse battery stapl"),
    ] {
        for (method, url, body) in requests(&base) {
            let mut request = http.request(method.clone(), &url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {url} with {token:?}"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("secret"));
        }
    }
    assert_eq!(
        master.registry().index(),
        index,
        "no refused request changed the registry"
    );
    let list = master.registry().list(tokio::time::Instant::now());
    assert_eq!(list.nodes.len(), 1);
    assert_eq!(
        list.nodes[0].in_flight, 0,
        "the forged heartbeat was not applied"
    );

    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "/health needs no secret");
    let listed = http
        .get(format!("{base}/v1/nodes"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
}
