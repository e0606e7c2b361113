//! The handshake over in-memory pipes: both ends, wrong secrets, replays, stalls, impostors.

use super::*;
use tokio::io::duplex;

const SECRET: &str = "s3cret";
const BOUND: Duration = Duration::from_secs(2);

/// Runs the node's side and the caller's side against each other.
async fn pair(
    node_key: &Key,
    caller_key: &Key,
) -> (Result<(), HandshakeError>, Result<(), HandshakeError>) {
    let (mut node_end, mut caller_end) = duplex(1024);
    let node = accept(&mut node_end, node_key, BOUND);
    let caller = async {
        let result = prove(&mut caller_end, caller_key).await;
        drop(caller_end);
        result
    };
    tokio::join!(node, caller)
}

#[tokio::test]
async fn the_same_secret_is_accepted_on_both_sides() {
    let key = Key::new(SECRET);
    let (node, caller) = pair(&key, &key).await;
    node.unwrap();
    caller.unwrap();
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_a_clear_error() {
    let (node, caller) = pair(&Key::new(SECRET), &Key::new("guess")).await;
    assert!(matches!(node, Err(HandshakeError::BadProof)), "{node:?}");
    assert!(matches!(caller, Err(HandshakeError::Refused)), "{caller:?}");
    let io: io::Error = caller.unwrap_err().into();
    assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);
    assert!(io.to_string().contains("wrong cluster secret"), "{io}");
}

/// Opens a connection to a node task: the node's result, and the caller's raw end with the
/// greeting read.
async fn raw_connection() -> (
    tokio::task::JoinHandle<Result<(), HandshakeError>>,
    tokio::io::DuplexStream,
    [u8; HELLO_LEN],
) {
    let (mut node_end, mut raw) = duplex(1024);
    let node = tokio::spawn(async move { accept(&mut node_end, &Key::new(SECRET), BOUND).await });
    let mut hello = [0; HELLO_LEN];
    raw.read_exact(&mut hello).await.unwrap();
    (node, raw, hello)
}

#[tokio::test]
async fn a_recorded_answer_is_refused_on_a_new_connection() {
    let key = Key::new(SECRET);
    // An honest answer on a first connection, recorded.
    let (node, mut raw, hello) = raw_connection().await;
    let caller_nonce = [7; NONCE_LEN];
    let mut answer = [0; ANSWER_LEN];
    answer[..NONCE_LEN].copy_from_slice(&caller_nonce);
    answer[NONCE_LEN..].copy_from_slice(key.tag(CALLER_LABEL, &hello[5..], &caller_nonce).as_ref());
    raw.write_all(&answer).await.unwrap();
    let mut verdict = [9; 1];
    raw.read_exact(&mut verdict).await.unwrap();
    assert_eq!(verdict[0], ACCEPT);
    node.await.unwrap().unwrap();
    // Replayed on a second connection: the node's fresh nonce makes it worthless.
    let (node, mut raw, hello2) = raw_connection().await;
    assert_ne!(hello[5..], hello2[5..], "nonces must be fresh");
    raw.write_all(&answer).await.unwrap();
    raw.read_exact(&mut verdict).await.unwrap();
    assert_eq!(verdict[0], REFUSE);
    assert!(matches!(node.await.unwrap(), Err(HandshakeError::BadProof)));
}

#[tokio::test]
async fn a_node_proof_cannot_be_reflected_as_a_caller_proof() {
    let key = Key::new(SECRET);
    let (n, c) = ([1; NONCE_LEN], [2; NONCE_LEN]);
    let node_tag = key.tag(NODE_LABEL, &n, &c);
    assert!(!key.verify(CALLER_LABEL, &n, &c, node_tag.as_ref()));
    assert!(key.verify(NODE_LABEL, &n, &c, node_tag.as_ref()));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_caller_times_out_on_the_node() {
    let (node, mut caller_end, _) = raw_connection().await;
    caller_end.write_all(&[0; 10]).await.unwrap(); // part of an answer, then nothing
    let result = node.await.unwrap();
    assert!(
        matches!(result, Err(HandshakeError::TimedOut(t)) if t == BOUND),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_peer_that_does_not_greet_is_not_a_node() {
    let (mut fake_node, mut caller_end) = duplex(1024);
    fake_node.write_all(&[0x55; HELLO_LEN]).await.unwrap();
    let result = prove(&mut caller_end, &Key::new(SECRET)).await;
    assert!(
        matches!(result, Err(HandshakeError::NotAHandshake)),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_impostor_node_that_accepts_without_the_secret_is_caught() {
    let (mut fake_node, mut caller_end) = duplex(1024);
    let fake = tokio::spawn(async move {
        let mut hello = [0; HELLO_LEN];
        hello[..4].copy_from_slice(&MAGIC);
        hello[4] = VERSION;
        fake_node.write_all(&hello).await.unwrap();
        let mut answer = [0; ANSWER_LEN];
        fake_node.read_exact(&mut answer).await.unwrap();
        let mut accept = [0; 1 + TAG_LEN];
        accept[0] = ACCEPT;
        fake_node.write_all(&accept).await.unwrap();
        fake_node
    });
    let result = prove(&mut caller_end, &Key::new(SECRET)).await;
    assert!(
        matches!(result, Err(HandshakeError::NodeUnproven)),
        "{result:?}"
    );
    drop(fake.await.unwrap());
}

#[test]
fn the_secret_never_shows_in_debug_or_errors() {
    let key = Key::new(SECRET);
    assert!(!format!("{key:?}").contains(SECRET), "{key:?}");
    for err in [
        HandshakeError::Refused,
        HandshakeError::BadProof,
        HandshakeError::NodeUnproven,
        HandshakeError::NotAHandshake,
        HandshakeError::TimedOut(BOUND),
    ] {
        assert!(!err.to_string().contains(SECRET));
    }
}
