//! Property tests of the registry's request decoding: JSON bodies, well-formed or not, decoded
//! by serde and checked by [`api::validate`], directly and through the real HTTP API.
//!
//! An oracle written from the API's contract (not from its code paths) says whether a body is a
//! valid registration or heartbeat; the master must agree with it on every generated body:
//! valid ones are accepted with the expected address and load, all others get a 4xx (never a
//! 5xx, never a panic) and leave the registry exactly as it was.

use std::net::SocketAddr;
use std::time::Duration;

use distribution_master::api::{self, MAX_CAPACITY};
use distribution_master::{Master, MasterConfig};
use distribution_shared::defaults::{MAX_ID_LEN, NODE_CAPACITY};
use distribution_shared::wire::{Lease, NodeList, NodeState, RegisterRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Number, Value, json};
use tokio::net::TcpListener;

const PEER: &str = "127.0.0.1:40000";

// ---- generators -------------------------------------------------------------------------------

/// Any JSON scalar, with the numbers that trip decoders: zero, negatives, beyond `u16`, `u32`
/// and `u64`, and floats.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        ".{0,24}".prop_map(Value::from),
    ]
}

/// Any JSON value, nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[A-Za-z0-9_.:-]{1,128}".prop_map(Value::from),
        1 => "[A-Za-z0-9_.:-]{129,160}".prop_map(Value::from),
        1 => ".{0,12}".prop_map(Value::from),
        1 => "[a-z]{1,4}[ /?#%\\x00é][a-z]{0,4}".prop_map(Value::from),
        1 => scalar(),
    ]
}

fn port() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (1u64..=65535).prop_map(Value::from),
        1 => Just(Value::from(0)),
        1 => (65536u64..=u64::MAX).prop_map(Value::from),
        1 => (i64::MIN..0).prop_map(Value::from),
        1 => "[0-9]{1,5}".prop_map(Value::from),
        1 => scalar(),
    ]
}

fn addr() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => "[a-z0-9.-]{1,20}:[0-9]{1,5}".prop_map(Value::from),
        1 => "\\[[0-9a-f:]{2,20}\\]:[0-9]{1,5}".prop_map(Value::from),
        1 => "[a-z]{1,8}:[+-]?[0-9]{0,6}".prop_map(Value::from),
        1 => "[a-z]{240,260}:80".prop_map(Value::from),
        1 => ".{0,30}".prop_map(Value::from),
        1 => scalar(),
    ]
}

fn capacity() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (1u64..=u64::from(MAX_CAPACITY)).prop_map(Value::from),
        1 => Just(Value::from(0)),
        1 => (u64::from(MAX_CAPACITY) + 1..=u64::MAX).prop_map(Value::from),
        1 => scalar(),
    ]
}

/// A field that is present, absent, or (rarely) given twice the wrong way.
fn field(strategy: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![5 => strategy.prop_map(Some), 1 => Just(None)]
}

/// A registration body: mostly objects with the four fields (each maybe absent or wrong) and
/// sometimes an unknown field; sometimes not an object at all.
fn register_body() -> impl Strategy<Value = Value> {
    let object = (
        field(id()),
        field(port()),
        prop_oneof![2 => Just(None), 1 => addr().prop_map(Some)],
        prop_oneof![2 => Just(None), 1 => capacity().prop_map(Some)],
        prop_oneof![6 => Just(None), 1 => ("[a-z_]{1,8}", value()).prop_map(Some)],
    )
        .prop_map(|(id, port, addr, capacity, extra)| {
            object_of(
                [
                    ("id", id),
                    ("port", port),
                    ("addr", addr),
                    ("capacity", capacity),
                ],
                extra,
            )
        });
    prop_oneof![
        8 => object,
        1 => (id(), port()).prop_map(|(id, port)| json!([id, port])),
        1 => value(),
    ]
}

fn heartbeat_body() -> impl Strategy<Value = Value> {
    let count = || {
        prop_oneof![
            3 => (0u64..=u64::from(u32::MAX)).prop_map(Value::from),
            1 => (u64::from(u32::MAX) + 1..=u64::MAX).prop_map(Value::from),
            1 => scalar(),
        ]
    };
    let object = (
        prop_oneof![1 => Just(None), 2 => count().prop_map(Some)],
        prop_oneof![1 => Just(None), 2 => capacity().prop_map(Some)],
        prop_oneof![1 => Just(None), 2 => count().prop_map(Some)],
        prop_oneof![6 => Just(None), 1 => ("[a-z_]{1,10}", value()).prop_map(Some)],
    )
        .prop_map(|(in_flight, capacity, served, extra)| {
            object_of(
                [
                    ("in_flight", in_flight),
                    ("capacity", capacity),
                    ("served", served),
                ],
                extra,
            )
        });
    prop_oneof![8 => object, 1 => value()]
}

// ---- the oracle -------------------------------------------------------------------------------

/// What the API must make of a registration body, from its documented contract: `Some((id,
/// addr callers dial, capacity))` if valid.
fn expected_registration(body: &Value, peer: SocketAddr) -> Option<(String, String, u32)> {
    let map = body.as_object()?;
    if map
        .keys()
        .any(|k| !["id", "port", "addr", "capacity"].contains(&k.as_str()))
    {
        return None;
    }
    let id = map.get("id")?.as_str()?;
    let id_ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    let port = map.get("port")?.as_u64()?;
    if !id_ok || !(1..=65535).contains(&port) {
        return None;
    }
    let capacity = match map.get("capacity") {
        None | Some(Value::Null) => NODE_CAPACITY,
        Some(c) => {
            let c = c.as_u64()?;
            if !(1..=u64::from(MAX_CAPACITY)).contains(&c) {
                return None;
            }
            c as u32
        }
    };
    let addr = match map.get("addr") {
        None | Some(Value::Null) => format!("{}:{port}", peer.ip()),
        Some(addr) => {
            let addr = addr.as_str()?;
            let (host, port) = addr.rsplit_once(':')?;
            let port_ok = !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p != 0);
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
            if addr.len() > 255 || !port_ok || !host_ok {
                return None;
            }
            addr.to_string()
        }
    };
    Some((id.to_string(), addr, capacity))
}

/// What the API must make of a heartbeat body: `Some((in_flight, capacity if given, served))`.
fn expected_heartbeat(body: &Value) -> Option<(u32, Option<u32>, u64)> {
    let map = body.as_object()?;
    if map
        .keys()
        .any(|k| !["in_flight", "capacity", "served"].contains(&k.as_str()))
    {
        return None;
    }
    let in_flight = match map.get("in_flight") {
        None => 0,
        Some(v) => u32::try_from(v.as_u64()?).ok()?,
    };
    let capacity = match map.get("capacity") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let c = v.as_u64()?;
            if !(1..=u64::from(MAX_CAPACITY)).contains(&c) {
                return None;
            }
            Some(c as u32)
        }
    };
    let served = match map.get("served") {
        None => 0,
        Some(v) => v.as_u64()?,
    };
    Some((in_flight, capacity, served))
}

/// Whether the top-level JSON object in `bytes` names a key twice.
fn has_duplicate_keys(bytes: &[u8]) -> bool {
    struct Keys(bool);

    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;

            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;

                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }

                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut seen = std::collections::HashSet::new();
                    let mut duplicate = false;
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        duplicate |= !seen.insert(key);
                    }
                    Ok(Keys(duplicate))
                }
            }

            deserializer.deserialize_map(Visitor)
        }
    }

    serde_json::from_slice::<Keys>(bytes).is_ok_and(|keys| keys.0)
}

// ---- decoding without the server ----------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes: serde and `validate` never panic, and whatever passes both is a well-formed
    /// registration.
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let peer: SocketAddr = PEER.parse().unwrap();
        if let Ok(req) = serde_json::from_slice::<RegisterRequest>(&bytes)
            && let Ok(reg) = api::validate(req, peer)
        {
            prop_assert!(!reg.id.is_empty() && reg.id.len() <= MAX_ID_LEN);
            prop_assert!((1..=MAX_CAPACITY).contains(&reg.capacity));
        }
    }

    /// Generated JSON objects: decoding + `validate` accept exactly what the oracle accepts, with
    /// the address and capacity it predicts.
    #[test]
    fn decoding_and_validation_agree_with_the_contract(body in register_body()) {
        let peer: SocketAddr = PEER.parse().unwrap();
        let bytes = serde_json::to_vec(&body).unwrap();
        let got = serde_json::from_slice::<RegisterRequest>(&bytes)
            .ok()
            .and_then(|req| api::validate(req, peer).ok())
            .map(|reg| (reg.id, reg.addr, reg.capacity));
        let expected = expected_registration(&body, peer);
        // serde itself builds a struct from an array of its fields; the HTTP API refuses arrays
        // before serde sees them (see `http_registrations_agree_with_the_contract`).
        if !body.is_array() {
            prop_assert_eq!(got, expected, "body {}", body);
        }
    }
}

// ---- decoding through the HTTP API --------------------------------------------------------------

struct Api {
    rt: tokio::runtime::Runtime,
    _master: Master,
    base: String,
    http: reqwest::Client,
}

type Row = (String, String, NodeState, u32, u32, u64);

impl Api {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let master = rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            // A long interval: nothing expires or turns late while the cases run.
            Master::start(
                listener,
                MasterConfig::with_interval(Duration::from_secs(60)),
            )
            .unwrap()
        });
        let base = format!("http://{}", master.local_addr());
        Self {
            rt,
            _master: master,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn snapshot(&self) -> (u64, Vec<Row>) {
        let list: NodeList = self
            .http
            .get(format!("{}/v1/nodes", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = list
            .nodes
            .into_iter()
            .map(|n| (n.id, n.addr, n.state, n.in_flight, n.capacity, n.served))
            .collect();
        (list.index, rows)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            self.http
                .request(method, format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body)
                .send(),
        )
        .await
        .expect("an answer within 5 s")
        .unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// POSTs `bytes` as a registration and checks the answer against `expected`.
    fn check_register(
        &self,
        bytes: Vec<u8>,
        expected: Option<(String, String, u32)>,
    ) -> Result<(), TestCaseError> {
        self.rt.block_on(async {
            let before = self.snapshot().await;
            let (status, answer) = self.send(reqwest::Method::POST, "/v1/nodes", bytes).await;
            let after = self.snapshot().await;
            prop_assert!(status < 500, "a {} answer", status);
            match expected {
                Some((id, addr, capacity)) => {
                    prop_assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    let lease: Lease = serde_json::from_slice(&answer).unwrap();
                    prop_assert_eq!(&lease.addr, &addr);
                    let row = after.1.iter().find(|row| row.0 == id);
                    prop_assert!(row.is_some_and(|row| row.1 == addr && row.4 == capacity));
                }
                None => {
                    prop_assert!((400..500).contains(&status), "accepted with {}", status);
                    let error: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                    prop_assert!(error["error"].as_str().is_some_and(|m| !m.is_empty()));
                    prop_assert_eq!(
                        &before,
                        &after,
                        "a refused registration changed the registry"
                    );
                }
            }
            Ok(())
        })
    }
}

fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    if let Err(err) = runner.run(&strategy, test) {
        panic!("{err}");
    }
}

#[test]
fn http_registrations_agree_with_the_contract() {
    let api = Api::start();
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    run(256, register_body(), |body| {
        let expected = expected_registration(&body, peer);
        api.check_register(serde_json::to_vec(&body).unwrap(), expected)
    });
}

#[test]
fn http_arbitrary_bytes_are_refused_without_changing_the_registry() {
    let api = Api::start();
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        // Valid JSON objects with a byte flipped somewhere.
        (register_body(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
            |(body, at, byte)| {
                let mut bytes = serde_json::to_vec(&body).unwrap();
                let at = at.index(bytes.len());
                bytes[at] = byte;
                bytes
            }
        ),
    ];
    run(256, bytes, |bytes| {
        // Whatever happens to parse is judged by the oracle; a `Value` keeps only the last of
        // duplicate keys, which the API refuses, so those are judged first.
        let expected = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(|_| !has_duplicate_keys(&bytes))
            .and_then(|body| expected_registration(&body, peer));
        api.check_register(bytes, expected)
    });
}

#[test]
fn http_heartbeats_agree_with_the_contract() {
    let api = Api::start();
    api.rt.block_on(async {
        let (status, _) = api
            .send(
                reqwest::Method::POST,
                "/v1/nodes",
                br#"{"id":"beating","port":4000,"capacity":9}"#.to_vec(),
            )
            .await;
        assert_eq!(status, 200);
    });
    run(256, heartbeat_body(), |body| {
        api.rt.block_on(async {
            let before = api.snapshot().await;
            let bytes = serde_json::to_vec(&body).unwrap();
            let (status, _) = api
                .send(reqwest::Method::PUT, "/v1/nodes/beating/heartbeat", bytes)
                .await;
            let after = api.snapshot().await;
            prop_assert!(status < 500, "a {} answer", status);
            let row = |snapshot: &(u64, Vec<Row>)| snapshot.1[0].clone();
            match expected_heartbeat(&body) {
                Some((in_flight, capacity, served)) => {
                    prop_assert_eq!(status, 200, "body {}", body);
                    let now = row(&after);
                    let capacity = capacity.unwrap_or(row(&before).4);
                    prop_assert_eq!((now.3, now.4, now.5), (in_flight, capacity, served));
                    prop_assert_eq!(before.0, after.0, "a heartbeat does not bump the index");
                }
                None => {
                    prop_assert!((400..500).contains(&status), "body {} got {}", body, status);
                    prop_assert_eq!(&before, &after, "a refused heartbeat changed the registry");
                }
            }
            Ok(())
        })
    });
}

#[test]
fn http_paths_with_arbitrary_ids_never_fail_the_server() {
    let api = Api::start();
    run(256, ".{0,40}", |id| {
        api.rt.block_on(async {
            let before = api.snapshot().await;
            let encoded: String = id
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            for (method, path) in [
                (
                    reqwest::Method::PUT,
                    format!("/v1/nodes/{encoded}/heartbeat"),
                ),
                (reqwest::Method::DELETE, format!("/v1/nodes/{encoded}")),
            ] {
                let (status, _) = api.send(method, &path, b"{}".to_vec()).await;
                // Nothing is registered, so every id is unknown or invalid.
                prop_assert!((400..500).contains(&status), "{} got {}", path, status);
            }
            prop_assert_eq!(before, api.snapshot().await);
            Ok(())
        })
    });
}

/// A JSON object of the `fields` that are present, plus the `extra` one.
fn object_of<const N: usize>(
    fields: [(&str, Option<Value>); N],
    extra: Option<(String, Value)>,
) -> Value {
    let mut map = Map::new();
    for (name, value) in fields {
        if let Some(value) = value {
            map.insert(name.to_string(), value);
        }
    }
    if let Some((name, value)) = extra {
        map.insert(name, value);
    }
    Value::Object(map)
}
