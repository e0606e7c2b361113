//! The bad-input corpus of the registry's HTTP API, over real TCP on 127.0.0.1.
//!
//! Every case must get a fast 4xx or a closed connection; after each group the master still
//! answers an honest client at once, and the registry (its index and every node's address, state
//! and load figures) is exactly what it was before. Malformed HTTP (huge bodies, thousands of
//! headers, invalid UTF-8 in the request line, broken framing, trickling clients) goes over a raw
//! `TcpStream`, since no well-behaved client library would send it.

use std::net::SocketAddr;
use std::time::Duration;

use distribution_master::{Master, MasterConfig};
use distribution_shared::wire::{NodeList, NodeState};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

/// The longest any refused request may take to be answered or cut off.
const FAST: Duration = Duration::from_secs(3);

/// How long a request may take on the master under test; short so that trickled bodies are cut
/// off quickly.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// A master holding two known nodes, and an honest client.
struct Fixture {
    _master: Master,
    addr: SocketAddr,
    base: String,
    http: reqwest::Client,
}

/// What the registry holds, minus the ages that change by themselves.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    index: u64,
    nodes: Vec<(String, String, NodeState, u32, u32, u64)>,
}

impl Fixture {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // A long interval: no node turns late or expires while the corpus runs.
        let mut config = MasterConfig::with_interval(Duration::from_secs(60));
        config.request_timeout = REQUEST_TIMEOUT;
        let master = Master::start(listener, config).unwrap();
        let addr = master.local_addr();
        let fixture = Self {
            _master: master,
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        };
        for body in [
            json!({"id": "n1", "port": 4242}),
            json!({"id": "n2", "port": 4243, "addr": "node-2.example:7000", "capacity": 8}),
        ] {
            let response = fixture.post("/v1/nodes", body.to_string()).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        let beat = fixture
            .put(
                "/v1/nodes/n1/heartbeat",
                json!({"in_flight": 3, "capacity": 16, "served": 40}).to_string(),
            )
            .await;
        assert_eq!(beat.status(), StatusCode::OK);
        fixture
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, body.into()).await
    }

    async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.send(reqwest::Method::PUT, path, body.into()).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: reqwest::Body,
    ) -> reqwest::Response {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        timeout(FAST, request.send())
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within {FAST:?}"))
            .unwrap()
    }

    async fn snapshot(&self) -> Snapshot {
        let response = timeout(
            FAST,
            self.http.get(format!("{}/v1/nodes", self.base)).send(),
        )
        .await
        .expect("GET /v1/nodes answers at once")
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let list: NodeList = response.json().await.unwrap();
        Snapshot {
            index: list.index,
            nodes: list
                .nodes
                .into_iter()
                .map(|n| (n.id, n.addr, n.state, n.in_flight, n.capacity, n.served))
                .collect(),
        }
    }

    /// The master answers an honest client at once and the registry equals `before`.
    async fn assert_serving_unchanged(&self, before: &Snapshot, after_what: &str) {
        let started = Instant::now();
        let health = timeout(FAST, self.http.get(format!("{}/health", self.base)).send())
            .await
            .unwrap_or_else(|_| panic!("after {after_what}: /health does not answer"))
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK, "after {after_what}");
        let health: Value = health.json().await.unwrap();
        assert_eq!(health["status"], "ok", "after {after_what}");
        assert!(started.elapsed() < FAST, "after {after_what}: slow answer");
        assert_eq!(
            &self.snapshot().await,
            before,
            "after {after_what}: the registry changed"
        );
    }

    /// Sends `cases` with `method` (JSON content type) and checks each gets a 4xx with a message.
    async fn refused(&self, method: &str, cases: &[(String, Vec<u8>)]) {
        for (path, body) in cases {
            let started = Instant::now();
            let response = self
                .send(method.parse().unwrap(), path, body.clone().into())
                .await;
            let status = response.status();
            let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            assert!(
                status.is_client_error(),
                "{method} {path:.80} {shown:?}: got {status}"
            );
            let error: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                error["error"].as_str().is_some_and(|m| !m.is_empty()),
                "{method} {path:.80} {shown:?}: {status} without an error message"
            );
            assert!(
                started.elapsed() < FAST,
                "{method} {path:.80}: slow refusal"
            );
        }
    }
}

/// How a raw exchange ended.
#[derive(Debug)]
struct Raw {
    /// The status of the first answer, if one came.
    status: Option<u16>,
    /// Whether the server closed the connection (EOF or reset) within the bound.
    closed: bool,
}

impl Raw {
    /// A 4xx, or no answer at all but a closed connection.
    fn is_refusal(&self) -> bool {
        match self.status {
            Some(status) => (400..500).contains(&status),
            None => self.closed,
        }
    }
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.strip_prefix(b"HTTP/1.1 ")?;
    std::str::from_utf8(line.get(..3)?).ok()?.parse().ok()
}

/// Reads what the server says on `stream` until it closes the connection or `bound` passes.
async fn read_answer(stream: &mut TcpStream, bound: Duration) -> Raw {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + bound;
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    Raw {
        status: status_of(&answer),
        closed,
    }
}

/// Sends `bytes` on a fresh connection and reads the answer (write errors count as a close).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    if stream.write_all(bytes).await.is_err() {
        return Raw {
            status: None,
            closed: true,
        };
    }
    read_answer(&mut stream, FAST).await
}

fn body_cases(bodies: Vec<Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    bodies
        .into_iter()
        .map(|body| ("/v1/nodes".to_string(), body))
        .collect()
}

fn bytes(cases: &[&str]) -> Vec<Vec<u8>> {
    cases.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[tokio::test]
async fn malformed_and_truncated_json_is_refused() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    let valid = r#"{"id":"fresh","port":5000,"addr":"h:5000","capacity":4}"#;
    // Every proper prefix of a valid registration is truncated JSON.
    let mut bodies: Vec<Vec<u8>> = (0..valid.len())
        .map(|end| valid.as_bytes()[..end].to_vec())
        .collect();
    bodies.extend(bytes(&[
        "not json",
        "{",
        "}",
        "{{}}",
        "{\"id\":\"a\",\"port\":1,}",
        "{\"id\":\"a\" \"port\":1}",
        "{'id':'a','port':1}",
        "{id:\"a\",port:1}",
        "{\"id\":\"a\",\"port\":1}}",
        "{\"id\":\"a\",\"port\":1} trailing",
        "{\"id\":\"a\",\"port\":1}{\"id\":\"b\",\"port\":2}",
        "{\"id\":\"a\",\"port\":01}",
        "{\"id\":\"a\",\"port\":0x50}",
        "{\"id\":\"a\",\"port\":NaN}",
        "{\"id\":\"a\",\"port\":Infinity}",
        "{\"id\":\"a\\x41\",\"port\":1}",
        "{\"id\":\"a\\ud800\",\"port\":1}",
        "{\"id\":\"a\n\",\"port\":1}",
        "\u{feff}{\"id\":\"a\",\"port\":1}",
        "/* c */ {\"id\":\"a\",\"port\":1}",
        "",
        " ",
        "null",
        "true",
        "[]",
        "[{\"id\":\"a\",\"port\":1}]",
        "\"{\\\"id\\\":\\\"a\\\",\\\"port\\\":1}\"",
        "1",
        // serde would build a struct from an array of its fields; the API takes objects only.
        "[\"fresh\",5000]",
        "[\"fresh\",5000,\"h:5000\",4]",
        "[\"fresh\",5000,null,null]",
    ]));
    // Deep nesting must be refused by the parser's recursion limit, not overflow the stack.
    bodies.push("[".repeat(100_000).into_bytes());
    bodies.push(format!("{{\"id\":{}", "[".repeat(60_000)).into_bytes());
    bodies.push(
        format!(
            "{{\"id\":\"a\",\"port\":1,\"capacity\":{}",
            "{\"a\":".repeat(10_000)
        )
        .into_bytes(),
    );
    let cases = body_cases(bodies);
    f.refused("POST", &cases).await;
    f.assert_serving_unchanged(&before, "malformed JSON").await;
}

#[tokio::test]
async fn wrong_types_huge_numbers_and_bad_ports_are_refused() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    let bodies = bytes(&[
        // Wrong types.
        r#"{"id":1,"port":1}"#,
        r#"{"id":null,"port":1}"#,
        r#"{"id":["a"],"port":1}"#,
        r#"{"id":{"a":1},"port":1}"#,
        r#"{"id":true,"port":1}"#,
        r#"{"id":"a","port":"80"}"#,
        r#"{"id":"a","port":null}"#,
        r#"{"id":"a","port":[80]}"#,
        r#"{"id":"a","port":{"n":80}}"#,
        r#"{"id":"a","port":true}"#,
        r#"{"id":"a","port":80.5}"#,
        r#"{"id":"a","port":80.0}"#,
        r#"{"id":"a","port":8e1}"#,
        r#"{"id":"a","port":80,"addr":80}"#,
        r#"{"id":"a","port":80,"addr":["h:1"]}"#,
        r#"{"id":"a","port":80,"capacity":"4"}"#,
        r#"{"id":"a","port":80,"capacity":4.5}"#,
        r#"{"id":"a","port":80,"capacity":true}"#,
        // Missing fields.
        r#"{}"#,
        r#"{"id":"a"}"#,
        r#"{"port":80}"#,
        // Huge numbers.
        r#"{"id":"a","port":65536}"#,
        r#"{"id":"a","port":4294967296}"#,
        r#"{"id":"a","port":18446744073709551615}"#,
        r#"{"id":"a","port":18446744073709551616}"#,
        r#"{"id":"a","port":99999999999999999999999999999999999999999}"#,
        r#"{"id":"a","port":1e400}"#,
        r#"{"id":"a","port":1e5}"#,
        r#"{"id":"a","port":80,"capacity":4294967296}"#,
        r#"{"id":"a","port":80,"capacity":1000001}"#,
        r#"{"id":"a","port":80,"capacity":4294967295}"#,
        r#"{"id":"a","port":80,"capacity":1e400}"#,
        // Zero and negative ports and capacities.
        r#"{"id":"a","port":0}"#,
        r#"{"id":"a","port":-0}"#,
        r#"{"id":"a","port":0.0}"#,
        r#"{"id":"a","port":-1}"#,
        r#"{"id":"a","port":-65535}"#,
        r#"{"id":"a","port":-9223372036854775808}"#,
        r#"{"id":"a","port":-1e400}"#,
        r#"{"id":"a","port":"-1"}"#,
        r#"{"id":"a","port":80,"capacity":0}"#,
        r#"{"id":"a","port":80,"capacity":-1}"#,
        r#"{"id":"a","port":80,"addr":"h:0"}"#,
        r#"{"id":"a","port":80,"addr":"h:-1"}"#,
        r#"{"id":"a","port":80,"addr":"h:65536"}"#,
        r#"{"id":"a","port":80,"addr":"h:99999999999999999999"}"#,
        r#"{"id":"a","port":80,"addr":"h:"}"#,
        r#"{"id":"a","port":80,"addr":"h"}"#,
        r#"{"id":"a","port":80,"addr":""}"#,
        r#"{"id":"a","port":80,"addr":":80"}"#,
        r#"{"id":"a","port":80,"addr":"h:+80"}"#,
        r#"{"id":"a","port":80,"addr":"h:80 "}"#,
        r#"{"id":"a","port":80,"addr":"h:-0"}"#,
        // Unknown and duplicate fields.
        r#"{"id":"a","port":80,"extra":1}"#,
        r#"{"id":"a","port":80,"Id":"b"}"#,
        r#"{"id":"a","port":80,"ports":81}"#,
        r#"{"id":"a","port":80,"capacity":4,"in_flight":0}"#,
        r#"{"id":"a","port":80,"":null}"#,
        r#"{"id":"a","id":"b","port":80}"#,
        r#"{"id":"a","port":80,"port":81}"#,
        // Bad ids and addresses.
        r#"{"id":"","port":80}"#,
        r#"{"id":" ","port":80}"#,
        r#"{"id":"a b","port":80}"#,
        r#"{"id":"a/b","port":80}"#,
        r#"{"id":"../../etc/passwd","port":80}"#,
        r#"{"id":"a\u0000","port":80}"#,
        r#"{"id":"\u00e9","port":80}"#,
        r#"{"id":"\ud83d\ude00","port":80}"#,
        r#"{"id":"a%20b","port":80}"#,
        r#"{"id":"a?b","port":80}"#,
        r#"{"id":"a#b","port":80}"#,
        r#"{"id":"a","port":80,"addr":"h/x:80"}"#,
        r#"{"id":"a","port":80,"addr":"h x:80"}"#,
        r#"{"id":"a","port":80,"addr":"http://h:80"}"#,
        r#"{"id":"a","port":80,"addr":"h\u0000:80"}"#,
        r#"{"id":"a","port":80,"addr":"h\r\nX-Evil: 1:80"}"#,
        r#"{"id":"a","port":80,"addr":"\u00e9:80"}"#,
    ]);
    let cases = body_cases(bodies);
    f.refused("POST", &cases).await;
    f.assert_serving_unchanged(&before, "wrong types and numbers")
        .await;
}

#[tokio::test]
async fn very_long_strings_and_invalid_utf8_are_refused() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    let mut bodies = Vec::new();
    for len in [129, 1_000, 60_000] {
        let id = "x".repeat(len);
        bodies.push(format!(r#"{{"id":"{id}","port":80}}"#).into_bytes());
    }
    for len in [256, 1_000, 60_000] {
        let addr = format!("{}:80", "h".repeat(len));
        bodies.push(format!(r#"{{"id":"a","port":80,"addr":"{addr}"}}"#).into_bytes());
    }
    // Long but otherwise valid JSON strings in unknown fields, and long whitespace.
    bodies.push(format!(r#"{{"id":"a","port":80,"pad":"{}"}}"#, "p".repeat(60_000)).into_bytes());
    bodies.push(format!("{}{{\"id\":\"a\",\"port\":80,\"x\":1}}", " ".repeat(60_000)).into_bytes());
    // Over the 64 KiB body limit.
    bodies.push(format!(r#"{{"id":"{}","port":80}}"#, "x".repeat(1 << 20)).into_bytes());
    bodies.push(vec![b' '; 100_000]);
    // Invalid UTF-8: raw bytes in and around the JSON.
    let invalid: [&[u8]; 8] = [
        b"\xff\xfe\xfd",
        b"{\"id\":\"\xff\",\"port\":80}",
        b"{\"id\":\"a\xc3\",\"port\":80}",
        b"{\"id\":\"\xed\xa0\x80\",\"port\":80}",
        b"{\"id\":\"\xc0\xaf\",\"port\":80}",
        b"{\"id\":\"a\",\"port\":80,\"addr\":\"h\xfe:80\"}",
        b"{\"id\":\"a\",\"port\":80}\xff",
        b"\x00\x00\x00\x00",
    ];
    bodies.extend(invalid.iter().map(|b| b.to_vec()));
    // Random binary bodies of a few sizes (a fixed seed so that a failure replays).
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for len in [1, 7, 64, 1024, 40_000] {
        let body: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        bodies.push(body);
    }
    let cases = body_cases(bodies);
    f.refused("POST", &cases).await;
    f.assert_serving_unchanged(&before, "long strings and invalid UTF-8")
        .await;
}

#[tokio::test]
async fn bad_heartbeats_change_no_lease_or_load() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    let bodies = bytes(&[
        "",
        "{",
        r#"{"in_flight":1"#,
        "null",
        "[]",
        r#"{"in_flight":-1}"#,
        r#"{"in_flight":4294967296}"#,
        r#"{"in_flight":1e400}"#,
        r#"{"in_flight":"1"}"#,
        r#"{"in_flight":1.5}"#,
        r#"{"served":-1}"#,
        r#"{"served":18446744073709551616}"#,
        r#"{"served":"40"}"#,
        r#"{"capacity":0}"#,
        r#"{"capacity":-5}"#,
        r#"{"capacity":1000001}"#,
        r#"{"capacity":4294967296}"#,
        r#"{"capacity":"16"}"#,
        r#"{"in_flight":1,"extra":true}"#,
        r#"{"in_flight":1,"id":"n2"}"#,
        r#"{"in_flight":1,"in_flight":2}"#,
        "[1,2,3]",
        "[0]",
        "\u{feff}{}",
    ]);
    let mut cases: Vec<(String, Vec<u8>)> = bodies
        .into_iter()
        .map(|body| ("/v1/nodes/n1/heartbeat".to_string(), body))
        .collect();
    cases.push((
        "/v1/nodes/n1/heartbeat".into(),
        b"{\"in_flight\":\xff}".to_vec(),
    ));
    cases.push((
        "/v1/nodes/n1/heartbeat".into(),
        format!(r#"{{"pad":"{}"}}"#, "p".repeat(100_000)).into_bytes(),
    ));
    // A valid body for a node that does not exist.
    let fine = br#"{"in_flight":1,"capacity":2,"served":3}"#.to_vec();
    for id in [
        "ghost",
        "n1%00",
        "N1",
        "n1%20",
        "%FF%FE",
        "%C0%AF",
        "%ED%A0%80",
    ] {
        cases.push((format!("/v1/nodes/{id}/heartbeat"), fine.clone()));
    }
    cases.push((
        format!("/v1/nodes/{}/heartbeat", "x".repeat(10_000)),
        fine.clone(),
    ));
    f.refused("PUT", &cases).await;
    f.assert_serving_unchanged(&before, "bad heartbeats").await;
}

#[tokio::test]
async fn bad_paths_methods_and_queries_are_refused() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    let long = "x".repeat(10_000);
    let deletes: Vec<(String, Vec<u8>)> = [
        "/v1/nodes/ghost".to_string(),
        "/v1/nodes/%FF%FE".into(),
        "/v1/nodes/n1%FF".into(),
        "/v1/nodes/%C0%AF".into(),
        "/v1/nodes/n1%2F..".into(),
        "/v1/nodes/N1".into(),
        format!("/v1/nodes/{long}"),
        "/v1/nodes".into(),
        "/v1/nodes/n1/heartbeat".into(),
        "/health".into(),
    ]
    .into_iter()
    .map(|path| (path, Vec::new()))
    .collect();
    f.refused("DELETE", &deletes).await;
    let elsewhere: Vec<(String, Vec<u8>)> = ["/", "/v2/nodes", "/v1/nodes/n1/heartbeat/x", "/%FF"]
        .into_iter()
        .map(|path| (path.to_string(), br#"{"id":"a","port":80}"#.to_vec()))
        .collect();
    f.refused("POST", &elsewhere).await;
    f.refused(
        "PATCH",
        &body_cases(vec![br#"{"id":"a","port":80}"#.to_vec()]),
    )
    .await;
    let queries: Vec<(String, Vec<u8>)> = [
        "?index=abc",
        "?index=-1",
        "?index=18446744073709551616",
        "?index=1&wait=abc",
        "?index=1&wait=-1s",
        "?index=1&wait=1.5s",
        "?index=1&wait=99999999999999999999h",
        "?index=1&wait=%FF",
        "?index=%FF",
    ]
    .into_iter()
    .map(|q| (format!("/v1/nodes{q}"), Vec::new()))
    .collect();
    f.refused("GET", &queries).await;
    // Wrong or missing content types.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = f
            .http
            .post(format!("{}/v1/nodes", f.base))
            .body(r#"{"id":"typed","port":80}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = timeout(FAST, request.send()).await.unwrap().unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
    }
    f.assert_serving_unchanged(&before, "bad paths and methods")
        .await;
}

#[tokio::test]
async fn malformed_http_gets_a_4xx_or_a_closed_connection() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    let register = r#"{"id":"smuggled","port":80}"#;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("binary junk", vec![0x16, 0x03, 0x01, 0x02, 0x00, 0xff, 0x00, 0x0a, 0x0d, 0x0a]),
        ("TLS client hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec()),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("unknown version", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("no version", b"GET /health\r\n\r\n".to_vec()),
        ("invalid UTF-8 in the path", b"GET /v1/nodes/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "invalid UTF-8 in a heartbeat path",
            b"PUT /v1/nodes/n1\xc3/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        ),
        ("invalid UTF-8 in the method", b"G\xffT /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("space in the path", b"GET /v1/no des HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("NUL in the path", b"GET /v1/\x00nodes HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("bare LF line ends with junk", b"GET /health HTTP/1.1\nHo\x00st: x\n\n".to_vec()),
        ("header without a colon", b"GET /health HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        ("header with invalid name", b"GET /health HTTP/1.1\r\nHo st: x\r\n\r\n".to_vec()),
        ("header value with NUL", b"GET /health HTTP/1.1\r\nHost: x\x00y\r\n\r\n".to_vec()),
        ("obsolete line folding", b"GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n".to_vec()),
    ];
    let framing: [(&str, String); 8] = [
        (
            "negative Content-Length",
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{register}"
            ),
        ),
        (
            "non-numeric Content-Length",
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: lots\r\n\r\n{register}"
            ),
        ),
        (
            "huge Content-Length",
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999999\r\n\r\n{register}"
            ),
        ),
        (
            "conflicting Content-Lengths",
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 27\r\nContent-Length: 5\r\n\r\n{register}"
            ),
        ),
        (
            "bad chunk size",
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{register}\r\n0\r\n\r\n"
            ),
        ),
        (
            "huge chunk size",
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n{register}\r\n0\r\n\r\n"
            ),
        ),
        (
            "unknown transfer coding",
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n{register}"
            ),
        ),
        (
            "truncated body then close",
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{register}"
            ),
        ),
    ];
    cases.extend(
        framing
            .iter()
            .map(|(name, text)| (*name, text.clone().into_bytes())),
    );
    for (name, bytes) in &cases {
        let started = Instant::now();
        let mut stream = TcpStream::connect(f.addr).await.unwrap();
        let _ = stream.write_all(bytes).await;
        // Half-close: a server waiting for more (a truncated body) sees the end at once.
        let _ = stream.shutdown().await;
        let outcome = read_answer(&mut stream, FAST).await;
        assert!(outcome.is_refusal(), "{name}: {outcome:?}");
        assert!(outcome.closed, "{name}: connection left open: {outcome:?}");
        assert!(started.elapsed() < FAST, "{name}: slow");
    }
    f.assert_serving_unchanged(&before, "malformed HTTP").await;

    // Request smuggling: with both Content-Length and chunked, the chunked body (`{}`, refused)
    // counts and the connection closes after the answer, so the request hidden behind it under
    // the Content-Length reading is never run.
    let hidden = format!(
        "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{register}",
        register.len()
    );
    let smuggle = format!(
        "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{hidden}"
    );
    let outcome = raw(f.addr, smuggle.as_bytes()).await;
    assert!(outcome.is_refusal(), "smuggling: {outcome:?}");
    assert!(outcome.closed, "smuggling: connection left open");
    f.assert_serving_unchanged(&before, "a smuggling attempt")
        .await;
}

#[tokio::test]
async fn a_ten_megabyte_body_is_refused_without_reading_it_all() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    const TEN_MB: usize = 10 * 1024 * 1024;
    for chunked in [false, true] {
        let started = Instant::now();
        let stream = TcpStream::connect(f.addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = if chunked {
            "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
        } else {
            format!(
                "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {TEN_MB}\r\n\r\n"
            )
        };
        // The writer pushes the body as fast as the server takes it; it stops at the first error.
        let sender = tokio::spawn(async move {
            let mut sent = 0usize;
            if writer.write_all(head.as_bytes()).await.is_err() {
                return sent;
            }
            let chunk = vec![b' '; 64 * 1024];
            while sent < TEN_MB {
                let written = if chunked {
                    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                    framed.extend_from_slice(&chunk);
                    framed.extend_from_slice(b"\r\n");
                    writer.write_all(&framed).await
                } else {
                    writer.write_all(&chunk).await
                };
                if written.is_err() {
                    return sent;
                }
                sent += chunk.len();
            }
            if chunked {
                let _ = writer.write_all(b"0\r\n\r\n").await;
            }
            sent
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        let closed = loop {
            match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        let status = status_of(&answer);
        assert!(
            status == Some(413) || (status.is_none() && closed),
            "chunked={chunked}: got {status:?}, closed={closed}"
        );
        assert!(closed, "chunked={chunked}: the server keeps the connection");
        let sent = timeout(Duration::from_secs(5), sender)
            .await
            .expect("the sender stops once the server closes")
            .unwrap();
        assert!(
            sent < TEN_MB,
            "chunked={chunked}: the server read the whole 10 MB body"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "chunked={chunked}: slow"
        );
    }
    f.assert_serving_unchanged(&before, "10 MB bodies").await;
}

#[tokio::test]
async fn thousands_of_headers_get_431_or_a_closed_connection() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    let mut many = String::from("GET /v1/nodes HTTP/1.1\r\nHost: x\r\n");
    for i in 0..5_000 {
        many.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let mut repeated = String::from("GET /v1/nodes HTTP/1.1\r\nHost: x\r\n");
    repeated.push_str(&"Cookie: a=b\r\n".repeat(10_000));
    repeated.push_str("\r\n");
    let huge_value = format!(
        "GET /v1/nodes HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(2 << 20)
    );
    let huge_uri = format!(
        "GET /v1/nodes/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "u".repeat(2 << 20)
    );
    let cases = [
        ("5,000 distinct headers", many),
        ("10,000 repeated headers", repeated),
        ("a 2 MB header value", huge_value),
        ("a 2 MB path", huge_uri),
    ];
    for (name, request) in &cases {
        let started = Instant::now();
        let outcome = raw(f.addr, request.as_bytes()).await;
        assert!(outcome.is_refusal(), "{name}: {outcome:?}");
        assert!(
            matches!(outcome.status, None | Some(431) | Some(414) | Some(400)),
            "{name}: {outcome:?}"
        );
        assert!(outcome.closed, "{name}: connection left open");
        assert!(started.elapsed() < FAST, "{name}: slow");
    }
    f.assert_serving_unchanged(&before, "thousands of headers")
        .await;
}

/// Sends a request's head one byte at a time, `pause` apart, until the server closes the
/// connection, `bytes` run out or `limit` passes. Returns how long the connection lived, and
/// whether it was the server that closed it.
async fn trickle(
    addr: SocketAddr,
    bytes: Vec<u8>,
    pause: Duration,
    limit: Duration,
) -> (Duration, bool) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for byte in bytes {
        if started.elapsed() > limit {
            break;
        }
        if stream.write_all(&[byte]).await.is_err() {
            return (started.elapsed(), true);
        }
        // A closed connection shows as a readable EOF (or an error) between two bytes.
        let mut buf = [0u8; 1024];
        match timeout(pause, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), true),
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    (started.elapsed(), false)
}

fn endless_head() -> Vec<u8> {
    let mut head = b"POST /v1/nodes HTTP/1.1\r\nHost: x\r\n".to_vec();
    head.extend(
        b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(100),
    );
    head
}

#[tokio::test]
async fn slowloris_tricklers_do_not_stop_others_being_served() {
    let f = Fixture::start().await;
    let before = f.snapshot().await;
    // Twenty connections trickle headers (a byte every 50 ms), for at most ~3 s.
    let tricklers: Vec<_> = (0..20)
        .map(|_| {
            let head = endless_head()[..60].to_vec();
            tokio::spawn(trickle(
                f.addr,
                head,
                Duration::from_millis(50),
                Duration::from_secs(3),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Honest clients are served at once all the while, and can still change the registry.
    for round in 0..10 {
        f.assert_serving_unchanged(&before, &format!("tricklers, round {round}"))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let joined = f.post("/v1/nodes", r#"{"id":"honest","port":6000}"#).await;
    assert_eq!(joined.status(), StatusCode::OK);
    // A body trickled after complete headers is cut off by the request timeout with a 408.
    let started = Instant::now();
    let mut slow_body = TcpStream::connect(f.addr).await.unwrap();
    slow_body
        .write_all(b"POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\":")
        .await
        .unwrap();
    let mut outcome = None;
    for _ in 0..60 {
        if slow_body.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match timeout(Duration::from_millis(50), slow_body.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                outcome = status_of(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    assert_eq!(outcome, Some(408), "a trickled body times out");
    assert!(started.elapsed() < REQUEST_TIMEOUT + FAST);
    for trickler in tricklers {
        timeout(Duration::from_secs(10), trickler)
            .await
            .expect("tricklers stop")
            .unwrap();
    }
}

/// "Headers within 5 s" (`HttpOptions::header_read_timeout`, the default): a client trickling
/// its head is closed by the server after those 5 s, not before (the trickle itself keeps the
/// connection from idling out) and not much after (2 s for a busy machine).
#[tokio::test]
async fn slowloris_header_trickle_is_closed_at_the_5s_header_timeout() {
    let f = Fixture::start().await;
    // A byte every 200 ms: 30 s of trickling needs 150 bytes; the head is longer than that.
    let (lived, closed_by_server) = trickle(
        f.addr,
        endless_head(),
        Duration::from_millis(200),
        Duration::from_secs(31),
    )
    .await;
    assert!(
        closed_by_server
            && lived >= Duration::from_millis(4_800)
            && lived < Duration::from_secs(5) + Duration::from_secs(2),
        "the trickling connection lived {lived:?} (closed by the server: {closed_by_server}); \
         the header timeout is 5 s"
    );
}
