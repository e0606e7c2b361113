//! Names resolved in-process, and re-resolved at every connection: a tiny DNS server on
//! 127.0.0.1 answers `master.test` with an address the test changes (127.0.0.2, then 127.0.0.3),
//! and each connection must reach the address of the moment — by `stream::connect_via` (the
//! router → node path, and the handshake on top of it) and by a reqwest client given the resolver
//! (node → master, remote caller → master).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use distribution_shared::resolve::Resolver;
use distribution_shared::stream;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const NAME: &str = "master.test.";
const TIMEOUT: Duration = Duration::from_secs(5);

/// A DNS server on 127.0.0.1 that knows one name, whose address can be changed.
struct Dns {
    addr: SocketAddr,
    answer: Arc<Mutex<Ipv4Addr>>,
    queries: Arc<AtomicUsize>,
}

impl Dns {
    /// Answers `A master.test` with the current address and TTL `ttl`; `NXDOMAIN` for any other
    /// name, no record (and no error) for other types of `master.test`.
    async fn start(ttl: u32) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Ipv4Addr::new(127, 0, 0, 2)));
        let queries = Arc::new(AtomicUsize::new(0));
        let (current, count) = (answer.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            // Bounded: a test sends a handful of queries.
            for _ in 0..10_000 {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let mut reply = Message::new();
                reply
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(query.op_code())
                    .set_recursion_desired(query.recursion_desired())
                    .set_recursion_available(true)
                    .set_authoritative(true);
                for q in query.queries() {
                    reply.add_query(q.clone());
                    if q.name().to_ascii().to_lowercase() != NAME {
                        reply.set_response_code(ResponseCode::NXDomain);
                    } else if q.query_type() == RecordType::A {
                        count.fetch_add(1, Ordering::SeqCst);
                        let ip = *current.lock();
                        let name = Name::from_ascii(NAME).unwrap();
                        reply.add_answer(Record::from_rdata(name, ttl, RData::A(A(ip))));
                    }
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        Dns {
            addr,
            answer,
            queries,
        }
    }

    fn point_to(&self, ip: Ipv4Addr) {
        *self.answer.lock() = ip;
    }

    fn resolver(&self) -> Resolver {
        Resolver::with_name_servers(&[self.addr], None).unwrap()
    }
}

/// Two listeners on the same port, one on 127.0.0.2 and one on 127.0.0.3 (so that only the
/// address a name resolves to decides which one is reached).
async fn listener_pair() -> (u16, TcpListener, TcpListener) {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = TcpListener::bind(("127.0.0.3", port)).await {
            return (port, a, b);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// Accepts one connection on either listener and says which one took it.
async fn which(a: &TcpListener, b: &TcpListener) -> &'static str {
    let accepted = tokio::time::timeout(TIMEOUT, async {
        tokio::select! {
            r = a.accept() => { r.unwrap(); "127.0.0.2" }
            r = b.accept() => { r.unwrap(); "127.0.0.3" }
        }
    });
    accepted.await.expect("no connection arrived")
}

#[tokio::test]
async fn stream_connect_resolves_the_name_again_at_every_connection() {
    let dns = Dns::start(0).await;
    let resolver = dns.resolver();
    let (port, a, b) = listener_pair().await;
    let addr = format!("master.test:{port}");

    let first = stream::connect_via(&resolver, &addr, None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(which(&a, &b).await, "127.0.0.2");
    drop(first);

    // The master moved: the next connection (a redial) must find it at its new address.
    dns.point_to(Ipv4Addr::new(127, 0, 0, 3));
    let second = stream::connect_via(&resolver, &addr, None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(which(&a, &b).await, "127.0.0.3");
    drop(second);
    assert!(dns.queries.load(Ordering::SeqCst) >= 2);

    // An IP literal is dialled without asking the DNS server.
    let before = dns.queries.load(Ordering::SeqCst);
    let _third = stream::connect_via(&resolver, &format!("127.0.0.2:{port}"), None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(which(&a, &b).await, "127.0.0.2");
    assert_eq!(dns.queries.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn an_unknown_name_is_a_clear_error() {
    let dns = Dns::start(0).await;
    let err = stream::connect_via(&dns.resolver(), "nowhere.test:4000", None, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot resolve \"nowhere.test\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_hosts_table_answers_before_any_name_server() {
    let (port, a, b) = listener_pair().await;
    // No name server at all: only the hosts text can answer.
    let resolver =
        Resolver::with_name_servers(&[], Some("127.0.0.3 master.test master\n")).unwrap();
    let _conn = stream::connect_via(&resolver, &format!("master:{port}"), None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(which(&a, &b).await, "127.0.0.3");
}

/// Serves `count` HTTP requests on either listener, answering with the listener's address and
/// closing each connection (so the client must open, and resolve, a new one each time).
async fn serve_http(a: TcpListener, b: TcpListener, count: usize) {
    for _ in 0..count {
        let (mut conn, label) = tokio::select! {
            r = a.accept() => (r.unwrap().0, "127.0.0.2"),
            r = b.accept() => (r.unwrap().0, "127.0.0.3"),
        };
        let mut buf = vec![0u8; 4096];
        let _ = conn.read(&mut buf).await;
        let reply = format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{label}",
            label.len()
        );
        let _ = conn.write_all(reply.as_bytes()).await;
        let _ = conn.shutdown().await;
    }
}

#[tokio::test]
async fn an_http_client_given_the_resolver_follows_a_moved_name() {
    let dns = Dns::start(0).await;
    let (port, a, b) = listener_pair().await;
    let server = tokio::spawn(serve_http(a, b, 2));
    let http = reqwest::Client::builder()
        .dns_resolver(Arc::new(dns.resolver()))
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let url = format!("http://master.test:{port}/health");

    let body = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "127.0.0.2");
    dns.point_to(Ipv4Addr::new(127, 0, 0, 3));
    let body = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "127.0.0.3");
    tokio::time::timeout(TIMEOUT, server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_long_dns_ttl_is_not_trusted_beyond_the_cache_bound() {
    // Docker's DNS answers with a TTL of 600 s; a moved master must be found within the bound.
    let dns = Dns::start(600).await;
    let resolver = dns.resolver();
    let (port, a, b) = listener_pair().await;
    let addr = format!("master.test:{port}");
    let _first = stream::connect_via(&resolver, &addr, None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(which(&a, &b).await, "127.0.0.2");
    dns.point_to(Ipv4Addr::new(127, 0, 0, 3));
    tokio::time::sleep(distribution_shared::resolve::MAX_CACHE_TTL + Duration::from_millis(500))
        .await;
    let _second = stream::connect_via(&resolver, &addr, None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(which(&a, &b).await, "127.0.0.3");
}
