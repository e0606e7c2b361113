//! The bad-input corpus of a node's tarpc port, over raw TCP on 127.0.0.1.
//!
//! A real node (registered with an in-process master) serves a small `Probe` service. Each case
//! opens its own connection and sends what no honest caller would: random bytes, length prefixes
//! far beyond the frame limit, frames cut short, and well-framed payloads that are not valid
//! bincode or that lie about their inner lengths. Every such connection must be closed by the
//! node within a bounded time; a caller already connected and a new caller must both still get
//! correct answers after each group; no task of the node may panic; and the memory of the test
//! process (which runs the node) must stay bounded.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use distribution_master::{Master, MasterConfig};
use distribution_node::{NodeConfig, NodeHandle, handler};
use distribution_shared::defaults::MAX_FRAME_LEN;
use distribution_shared::transport;
use serde::Serialize;
use tarpc::context;
use tarpc::tokio_serde::Serializer as _;
use tarpc::tokio_serde::formats::Bincode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

/// How long the node may take to close a connection it cannot make sense of.
const CLOSE_BOUND: Duration = Duration::from_secs(3);

/// The most the test process's resident memory may grow over a whole test.
const RSS_BOUND_KIB: u64 = 200 * 1024;

#[tarpc::service]
trait Probe {
    /// `a + b`, wrapping.
    async fn add(a: u64, b: u64) -> u64;
    /// The text back.
    async fn echo(text: String) -> String;
    /// The sum of `values`, wrapping.
    async fn sum(values: Vec<u64>) -> u64;
}

#[derive(Clone)]
struct ProbeServer;

impl Probe for ProbeServer {
    async fn add(self, _: context::Context, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }

    async fn echo(self, _: context::Context, text: String) -> String {
        text
    }

    async fn sum(self, _: context::Context, values: Vec<u64>) -> u64 {
        values.iter().fold(0, |acc, v| acc.wrapping_add(*v))
    }
}

/// Panics anywhere in the process (the node's tasks included), counted by a hook installed once.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A master, a node serving `Probe`, and a caller connected before any bad input.
struct Fixture {
    _master: Master,
    node: NodeHandle,
    addr: SocketAddr,
    caller: ProbeClient,
    rss_before: u64,
}

async fn client(addr: SocketAddr) -> ProbeClient {
    let stream = TcpStream::connect(addr).await.unwrap();
    ProbeClient::new(
        tarpc::client::Config::default(),
        transport::framed(stream, MAX_FRAME_LEN),
    )
    .spawn()
}

/// A context whose deadline is near, so that a call to a stuck node fails fast.
fn ctx() -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = std::time::Instant::now() + Duration::from_secs(3);
    ctx
}

impl Fixture {
    async fn start() -> Self {
        count_panics();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master = Master::start(
            listener,
            MasterConfig::with_interval(Duration::from_millis(200)),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = NodeConfig::new(master.local_addr().to_string());
        config.heartbeat_interval = Duration::from_millis(200);
        let node =
            distribution_node::start(listener, config, handler!(ProbeServer.serve())).unwrap();
        assert!(
            node.wait_registered(Duration::from_secs(10)).await,
            "node registers"
        );
        let addr = node.local_addr();
        let caller = client(addr).await;
        let fixture = Self {
            _master: master,
            node,
            addr,
            caller,
            rss_before: 0,
        };
        fixture.assert_serving("start").await;
        Self {
            rss_before: rss_kib(),
            ..fixture
        }
    }

    /// The caller connected from the start and a new one both get correct answers, and no task
    /// has panicked.
    async fn assert_serving(&self, after_what: &str) {
        let fresh = client(self.addr).await;
        for caller in [&self.caller, &fresh] {
            let started = Instant::now();
            assert_eq!(
                caller.add(ctx(), 2, 40).await.unwrap(),
                42,
                "after {after_what}"
            );
            assert_eq!(
                caller.echo(ctx(), "still here".into()).await.unwrap(),
                "still here",
                "after {after_what}"
            );
            assert_eq!(
                caller.sum(ctx(), (1..=100).collect()).await.unwrap(),
                5050,
                "after {after_what}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "after {after_what}: slow answers"
            );
        }
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            0,
            "after {after_what}: a task panicked"
        );
    }

    fn assert_memory_bounded(&self, after_what: &str) {
        let grown = rss_kib().saturating_sub(self.rss_before);
        assert!(
            grown < RSS_BOUND_KIB,
            "after {after_what}: resident memory grew by {grown} KiB"
        );
    }

    /// Opens a connection, sends `bytes`, half-closes if `then_close`, and checks the node closes
    /// the connection within [`CLOSE_BOUND`] and still serves its callers. Returns whether the
    /// node answered anything first.
    async fn send_expect_close(&self, what: &str, bytes: &[u8], then_close: bool) -> bool {
        let started = Instant::now();
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        // A write error means the node already closed the connection: that is what we want.
        let _ = stream.write_all(bytes).await;
        if then_close {
            let _ = stream.shutdown().await;
        }
        let (closed, answered) = wait_closed(&mut stream, CLOSE_BOUND).await;
        assert!(closed, "{what}: the node kept the connection open");
        assert!(started.elapsed() <= CLOSE_BOUND + Duration::from_secs(1));
        self.assert_serving(what).await;
        answered
    }
}

/// Reads until the peer closes (EOF or reset) or `bound` passes: (closed, read anything).
async fn wait_closed(stream: &mut TcpStream, bound: Duration) -> (bool, bool) {
    let deadline = Instant::now() + bound;
    let mut answered = false;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, answered),
            Ok(Ok(_)) => answered = true,
            Err(_) => return (false, answered),
        }
    }
}

/// A seeded xorshift generator, so that every run sends the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A length-delimited frame around `payload` (4-byte big-endian length, as the codec expects).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut framed = (payload.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(payload);
    framed
}

/// `value` encoded with the cluster's codec (bincode, as [`transport::framed`] writes it).
fn encode<T: Serialize + Unpin>(value: &T) -> Vec<u8> {
    let mut codec = Bincode::<(), T>::default();
    Pin::new(&mut codec).serialize(value).unwrap().to_vec()
}

// Mirrors of tarpc's wire types, so that a test can write any value in any field.

#[derive(Serialize)]
enum FakeClientMessage<M> {
    Request(FakeRequest<M>),
    Cancel {
        trace_context: tarpc::trace::Context,
        request_id: u64,
    },
    /// There is no third kind of client message.
    Bogus(u64),
}

#[derive(Serialize)]
struct FakeRequest<M> {
    context: FakeContext,
    id: u64,
    message: M,
}

#[derive(Serialize)]
struct FakeContext {
    /// Sent as the time left until the deadline.
    deadline: Duration,
    trace_context: tarpc::trace::Context,
}

/// The `Probe` request enum as it travels, with lengths that can lie: a `String` and a `Vec` are
/// encoded as a length followed by the items, so writing only a `u64` length claims that many
/// items and sends none.
#[derive(Serialize)]
enum FakeProbeRequest {
    Add {
        a: u64,
        b: u64,
    },
    EchoClaiming {
        len: u64,
    },
    SumClaiming {
        len: u64,
    },
    /// The service has no fourth method.
    Bogus {
        x: u64,
    },
}

fn request<M: Serialize + Unpin>(message: M) -> Vec<u8> {
    request_with_deadline(message, Duration::from_secs(5))
}

fn request_with_deadline<M: Serialize + Unpin>(message: M, deadline: Duration) -> Vec<u8> {
    encode(&FakeClientMessage::Request(FakeRequest {
        context: FakeContext {
            deadline,
            trace_context: tarpc::trace::Context::default(),
        },
        id: 1,
        message,
    }))
}

#[tokio::test]
async fn the_mirror_types_speak_the_real_protocol() {
    // Without this, the crafted cases below could be refused for the wrong reason.
    let f = Fixture::start().await;
    let mut stream = TcpStream::connect(f.addr).await.unwrap();
    // A cancel for a request that never was is ignored; the request after it is answered.
    let cancel = encode(&FakeClientMessage::<()>::Cancel {
        trace_context: tarpc::trace::Context::default(),
        request_id: 99,
    });
    let mut bytes = frame(&cancel);
    bytes.extend(frame(&request(FakeProbeRequest::Add { a: 20, b: 22 })));
    stream.write_all(&bytes).await.unwrap();
    let mut head = [0u8; 4];
    timeout(CLOSE_BOUND, stream.read_exact(&mut head))
        .await
        .expect("the node answers a well-formed mirror request")
        .unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    stream.read_exact(&mut body).await.unwrap();
    // Response { request_id: 1, message: Ok(ProbeResponse::Add(42)) }, all varints.
    assert_eq!(body, [1, 0, 0, 42], "the answer to add(20, 22)");
    f.assert_serving("a mirror request").await;
}

#[tokio::test]
async fn random_bytes_close_the_connection() {
    let f = Fixture::start().await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = 0;
    for len in [1, 2, 3, 4, 5, 16, 64, 1024, 65_536, 1 << 20] {
        for _ in 0..3 {
            let bytes = rng.bytes(len);
            f.send_expect_close(&format!("{len} random bytes, then close"), &bytes, true)
                .await;
            cases += 1;
        }
    }
    // Random bytes whose first byte makes the length prefix exceed the frame limit: the node
    // must hang up on its own, without waiting for the rest.
    for len in [4, 5, 100, 65_536] {
        let mut bytes = rng.bytes(len);
        bytes[0] |= 0x80;
        f.send_expect_close(&format!("{len} random bytes, left open"), &bytes, false)
            .await;
        cases += 1;
    }
    // Text protocols spoken to the wrong port.
    let texts: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/nodes HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ];
    for text in texts {
        let shown = String::from_utf8_lossy(text);
        f.send_expect_close(&format!("{shown:?}"), text, false)
            .await;
        cases += 1;
    }
    assert_eq!(cases, 39);
    f.assert_serving("random bytes").await;
    f.assert_memory_bounded("random bytes");
}

#[tokio::test]
async fn huge_length_prefixes_are_refused_without_allocating() {
    let f = Fixture::start().await;
    let limit = MAX_FRAME_LEN as u32;
    let prefixes = [u32::MAX, 0x8000_0000, 0x4000_0000, limit + 1, limit * 2];
    for prefix in prefixes {
        let mut bytes = prefix.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"\x00\x01\x02\x03 a few bytes");
        f.send_expect_close(&format!("prefix {prefix:#x}"), &bytes, false)
            .await;
    }
    f.assert_serving("huge length prefixes").await;
    // Many at once: a node that allocated what each claims would need hundreds of GB.
    let mut streams = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(f.addr).await.unwrap();
        let _ = stream.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await;
        streams.push(stream);
    }
    let waits = streams
        .into_iter()
        .map(|mut stream| async move { wait_closed(&mut stream, CLOSE_BOUND).await.0 });
    let closed = futures::future::join_all(waits).await;
    assert!(closed.iter().all(|c| *c), "every connection is closed");
    f.assert_serving("100 concurrent 4 GiB prefixes").await;
    f.assert_memory_bounded("huge length prefixes");
}

#[tokio::test]
async fn truncated_frames_then_close_are_dropped() {
    let f = Fixture::start().await;
    let valid = frame(&request(FakeProbeRequest::Add { a: 1, b: 2 }));
    // Every proper prefix of a valid frame, sent and then closed.
    for end in 1..valid.len() {
        f.send_expect_close(&format!("valid frame cut at {end}"), &valid[..end], true)
            .await;
    }
    let mut cases = valid.len() - 1;
    // A frame that announces more than it sends, at a few sizes up to the frame limit.
    for (announced, sent) in [
        (100u32, 10usize),
        (65_536, 65_535),
        (MAX_FRAME_LEN as u32, 1024),
        (MAX_FRAME_LEN as u32, 1 << 20),
    ] {
        let mut bytes = announced.to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(0u8, sent));
        f.send_expect_close(&format!("{sent} of {announced} bytes"), &bytes, true)
            .await;
        cases += 1;
    }
    // A valid request followed by a cut one: the connection still ends.
    let mut bytes = valid.clone();
    bytes.extend_from_slice(&valid[..valid.len() / 2]);
    f.send_expect_close("a valid frame then a cut one", &bytes, true)
        .await;
    cases += 1;
    assert!(cases > 20);
    f.assert_serving("truncated frames").await;
    f.assert_memory_bounded("truncated frames");
}

#[tokio::test]
async fn well_framed_garbage_bincode_closes_the_connection() {
    let f = Fixture::start().await;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut payloads: Vec<(String, Vec<u8>)> = Vec::new();
    for len in [0, 1, 2, 8, 100, 4096, 1 << 20] {
        for i in 0..3 {
            let mut payload = rng.bytes(len);
            // A first byte of 2..=250 is a variant index no `ClientMessage` has.
            if let Some(first) = payload.first_mut() {
                *first = 2 + (*first % 249);
            }
            payloads.push((format!("{len} random bytes #{i}"), payload));
        }
    }
    let crafted: [(&str, Vec<u8>); 12] = [
        (
            "a third kind of message",
            encode(&FakeClientMessage::<()>::Bogus(7)),
        ),
        (
            "an unknown method",
            request(FakeProbeRequest::Bogus { x: 1 }),
        ),
        (
            "a string claiming 2^64-1 bytes",
            request(FakeProbeRequest::EchoClaiming { len: u64::MAX }),
        ),
        (
            "a string claiming 1 TiB",
            request(FakeProbeRequest::EchoClaiming { len: 1 << 40 }),
        ),
        (
            "a string claiming 16 MiB",
            request(FakeProbeRequest::EchoClaiming { len: 16 << 20 }),
        ),
        (
            "a vector claiming 2^64-1 items",
            request(FakeProbeRequest::SumClaiming { len: u64::MAX }),
        ),
        (
            "a vector claiming 2^32 items",
            request(FakeProbeRequest::SumClaiming { len: 1 << 32 }),
        ),
        (
            "a vector claiming 1M items",
            request(FakeProbeRequest::SumClaiming { len: 1 << 20 }),
        ),
        ("a request without its message", request(())),
        (
            "a request with the wrong argument types",
            request(("add", 1u8)),
        ),
        ("a valid request with trailing bytes", {
            let mut bytes = request(FakeProbeRequest::Add { a: 1, b: 2 });
            bytes.extend_from_slice(b"trailing");
            bytes
        }),
        ("a cancel cut short", encode(&1u32)),
    ];
    payloads.extend(
        crafted
            .into_iter()
            .map(|(name, bytes)| (name.to_string(), bytes)),
    );
    let count = payloads.len();
    for (name, payload) in &payloads {
        f.send_expect_close(name, &frame(payload), false).await;
    }
    assert_eq!(count, 33);
    f.assert_serving("garbage bincode").await;
    // The same garbage on many connections at once, while honest calls go on.
    let floods = payloads.iter().take(20).map(|(_, payload)| {
        let bytes = frame(payload);
        let addr = f.addr;
        async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let _ = stream.write_all(&bytes).await;
            wait_closed(&mut stream, CLOSE_BOUND).await.0
        }
    });
    let honest = async {
        for i in 0..20u64 {
            assert_eq!(f.caller.add(ctx(), i, i).await.unwrap(), 2 * i);
        }
    };
    let (closed, ()) = tokio::join!(futures::future::join_all(floods), honest);
    assert!(
        closed.iter().all(|c| *c),
        "every garbage connection is closed"
    );
    f.assert_serving("concurrent garbage bincode").await;
    f.assert_memory_bounded("garbage bincode");
}

#[tokio::test]
async fn mutated_valid_frames_are_answered_or_dropped() {
    // Bit flips in a real request: whatever they turn it into, the node answers or hangs up,
    // and goes on serving.
    let f = Fixture::start().await;
    let valid = frame(&request(FakeProbeRequest::Add { a: 1000, b: 2000 }));
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for i in 0..100 {
        let mut bytes = valid.clone();
        // Keep the length prefix (its corruption is covered above) and flip 1 to 3 payload bits.
        for _ in 0..=(rng.next() % 3) {
            let at = 4 + (rng.next() as usize) % (bytes.len() - 4);
            bytes[at] ^= 1 << (rng.next() % 8);
        }
        f.send_expect_close(&format!("mutation {i}: {bytes:?}"), &bytes, true)
            .await;
    }
    f.assert_serving("mutated frames").await;
    f.assert_memory_bounded("mutated frames");
}

#[tokio::test]
async fn far_deadlines_are_served_not_a_panic() {
    // The deadline travels as "time left". tarpc's server keeps deadlines in a timer wheel that
    // panics beyond ~2.2 years, which took the connection (and every call on it) down; the node
    // now clamps them. (tarpc's *client* has the same limit: a caller cannot even send these
    // through a tarpc client without its dispatch task panicking, hence raw frames here.)
    let f = Fixture::start().await;
    let day = 24 * 3600;
    for (what, deadline) in [
        ("2 years", Duration::from_secs(2 * 365 * day)),
        ("3 years", Duration::from_secs(3 * 365 * day)),
        ("100 years", Duration::from_secs(100 * 365 * day)),
        (
            "a million years",
            Duration::from_secs(1_000_000 * 365 * day),
        ),
    ] {
        let answered = f
            .send_expect_close(
                &format!("a deadline {what} away"),
                &frame(&request_with_deadline(
                    FakeProbeRequest::Add { a: 1, b: 2 },
                    deadline,
                )),
                true,
            )
            .await;
        assert!(answered, "a deadline {what} away is answered");
        f.assert_serving(&format!("a deadline {what} away")).await;
    }
}

#[tokio::test]
async fn a_deadline_beyond_the_clock_is_clamped_not_a_panic() {
    // A time left that overflows `Instant` (u64::MAX seconds) used to panic inside tarpc's
    // `Context` deserializer, before the node saw the request, killing the connection task. The
    // node now decodes the deadline itself (`transport::server_framed`) and clamps it to a year.
    let f = Fixture::start().await;
    for (what, deadline) in [
        ("u64::MAX seconds", Duration::MAX),
        (
            "u64::MAX seconds and no nanos",
            Duration::from_secs(u64::MAX),
        ),
        ("2^63 seconds", Duration::from_secs(1 << 63)),
    ] {
        let answered = f
            .send_expect_close(
                &format!("a deadline of {what}"),
                &frame(&request_with_deadline(
                    FakeProbeRequest::Add { a: 1, b: 2 },
                    deadline,
                )),
                true,
            )
            .await;
        assert!(answered, "a deadline of {what} is answered (clamped)");
        f.assert_serving(&format!("a deadline of {what}")).await;
    }
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "no task of the node panicked"
    );
}

#[tokio::test]
async fn the_node_still_shuts_down_after_the_corpus() {
    let f = Fixture::start().await;
    let mut rng = Rng(7);
    for _ in 0..10 {
        let bytes = rng.bytes(256);
        f.send_expect_close("random bytes", &bytes, true).await;
    }
    // A connection left holding half a frame must not stall the graceful shutdown for ever.
    let mut holder = TcpStream::connect(f.addr).await.unwrap();
    holder.write_all(&[0, 0, 1, 0, 1, 2, 3]).await.unwrap();
    f.assert_serving("random bytes").await;
    let Fixture { node, caller, .. } = f;
    drop(caller);
    timeout(Duration::from_secs(10), node.shutdown())
        .await
        .expect("the node shuts down within 10 s");
    assert!(wait_closed(&mut holder, CLOSE_BOUND).await.0);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
