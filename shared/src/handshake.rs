//! The cluster handshake: how a caller proves to a node that it knows the cluster secret, and the
//! node proves it back, before any tarpc frame.
//!
//! Why: the master checks the secret on its registry (`Authorization: Bearer`), but a node's
//! tarpc port is reached directly by every caller. Without this handshake anyone who can reach a
//! node's port could call it, secret or not. With a secret set, both ends run it right after
//! [`stream::connect`] / [`stream::accept`] (so after TLS, when there is TLS) and only then hand
//! the stream to tarpc. One handshake per connection: calls multiplexed on it afterwards pay
//! nothing.
//!
//! The exchange (version 1; `tag(label)` is HMAC-SHA256 keyed by the secret over
//! `label || node_nonce || caller_nonce`; nonces are 32 fresh random bytes):
//!
//! ```text
//! node   → caller   "DIST" 0x01 node_nonce                        37 bytes
//! caller → node     caller_nonce tag("…caller")                   64 bytes
//! node   → caller   0x01 tag("…node")   (accepted)                33 bytes
//!                   0x00, then close     (refused)                  1 byte
//! ```
//!
//! - **The secret never travels**: only HMACs of fresh nonces do. The node's fresh nonce makes a
//!   recorded caller answer worthless on another connection (no replay); the distinct labels
//!   make a node's proof unusable as a caller's (no reflection).
//! - **Mutual**: the node proves the secret back in the same message that accepts, so a caller
//!   never sends its calls (their arguments) to a listener that merely took over a node's
//!   address. It costs no extra round trip.
//! - **Clear errors**: a caller with a wrong secret reads the refusal byte and gets
//!   [`HandshakeError::Refused`], not a confusing transport error. A caller without a secret
//!   talking to a node with one sees its connection closed; a caller with a secret talking to a
//!   node without one waits for a greeting that never comes and gets
//!   [`HandshakeError::TimedOut`], whose message says so.
//! - **Bounded**: the node runs its side within a timeout ([`HANDSHAKE_TIMEOUT`] by default), so
//!   a peer that stalls mid-handshake is dropped within it; the caller runs its side within its
//!   connect timeout.
//! - **Constant time**: tags are checked with `ring::hmac::verify`. HMAC and the random nonces
//!   come from `ring`, already in every build through rustls (no extra crate).
//!
//! What it does not do: without TLS the connection is not encrypted nor bound to the handshake,
//! so an attacker *on the path* (who can read and inject packets) can still hijack a connection
//! after it; use TLS against that. And anyone who records a handshake in the clear can test
//! guesses of the secret offline: choose a long random secret (`openssl rand -hex 32`).

use std::io;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::stream::{self, Stream};
use crate::tls::ClientTls;
use crate::{ExposeSecret, SecretString};

/// How long a node gives a caller to complete the handshake (and, separately, TLS): 5 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node's greeting starts with: a tag, then the protocol version.
pub const MAGIC: [u8; 4] = *b"DIST";
/// The handshake version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of each nonce, in bytes.
pub const NONCE_LEN: usize = 32;
/// Length of each tag (HMAC-SHA256), in bytes.
pub const TAG_LEN: usize = 32;
/// Length of the node's greeting: magic, version, nonce.
pub const HELLO_LEN: usize = MAGIC.len() + 1 + NONCE_LEN;
/// Length of the caller's answer: its nonce and its tag.
pub const ANSWER_LEN: usize = NONCE_LEN + TAG_LEN;

/// The byte by which the node accepts the caller (followed by the node's tag).
const ACCEPT: u8 = 1;
/// The byte by which the node refuses the caller (then closes).
const REFUSE: u8 = 0;

const CALLER_LABEL: &[u8] = b"distribution handshake v1: caller";
const NODE_LABEL: &[u8] = b"distribution handshake v1: node";

/// The cluster secret, ready to compute and check handshake tags. Cheap to clone; its `Debug`
/// (ring's) shows the algorithm only.
#[derive(Clone, Debug)]
pub struct Key(hmac::Key);

impl Key {
    /// The key for `secret` (the text given as `--secret` / `DIST_SECRET`).
    pub fn new(secret: &str) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
    }

    /// The key for an optional secret.
    pub fn from_secret(secret: Option<&SecretString>) -> Option<Self> {
        secret.map(|secret| Self::new(secret.expose_secret()))
    }

    fn tag(&self, label: &[u8], node_nonce: &[u8], caller_nonce: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(label);
        ctx.update(node_nonce);
        ctx.update(caller_nonce);
        ctx.sign()
    }

    fn verify(&self, label: &[u8], node_nonce: &[u8], caller_nonce: &[u8], tag: &[u8]) -> bool {
        let mut data = Vec::with_capacity(label.len() + 2 * NONCE_LEN);
        data.extend_from_slice(label);
        data.extend_from_slice(node_nonce);
        data.extend_from_slice(caller_nonce);
        hmac::verify(&self.0, &data, tag).is_ok()
    }
}

/// Why a handshake failed. The messages never contain the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The connection failed or closed during the handshake.
    #[error("connection lost during the cluster handshake: {0}")]
    Io(#[from] io::Error),
    /// The handshake did not complete in time.
    #[error(
        "cluster handshake not completed within {0:?} (a node without a cluster secret never \
         starts it: do both ends have the secret?)"
    )]
    TimedOut(Duration),
    /// The node did not open with this handshake (a node without a secret or of another
    /// version, or not a node at all).
    #[error(
        "the peer did not greet with the cluster handshake v{VERSION} (not a node, or a node of another version)"
    )]
    NotAHandshake,
    /// Seen by the caller: the node refused its proof, so the two secrets differ.
    #[error("the node refused this caller: wrong cluster secret")]
    Refused,
    /// Seen by the node: the caller's proof is wrong (a wrong secret, a replayed answer, or
    /// bytes that are not a handshake at all, such as a tarpc frame from a caller without one).
    #[error("the caller did not prove it knows the cluster secret")]
    BadProof,
    /// Seen by the caller: the node accepted but could not prove it knows the secret.
    #[error("the node did not prove it knows the cluster secret (not a cluster node?)")]
    NodeUnproven,
}

impl From<HandshakeError> for io::Error {
    fn from(err: HandshakeError) -> Self {
        let kind = match &err {
            HandshakeError::Io(inner) => inner.kind(),
            HandshakeError::TimedOut(_) => io::ErrorKind::TimedOut,
            HandshakeError::Refused | HandshakeError::BadProof | HandshakeError::NodeUnproven => {
                io::ErrorKind::PermissionDenied
            }
            HandshakeError::NotAHandshake => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

/// Fresh random bytes from the OS. It fails only when the OS has no entropy source at all; the
/// handshake then fails (the connection is dropped) rather than run with a predictable nonce.
fn nonce() -> Result<[u8; NONCE_LEN], HandshakeError> {
    let mut nonce = [0; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| io::Error::other("the operating system's random source failed"))?;
    Ok(nonce)
}

/// The node's side, within `timeout`: greets, checks the caller's proof, and answers with its
/// own proof (accepted) or the refusal byte (refused; the caller should then be dropped).
pub async fn accept<S>(stream: &mut S, key: &Key, timeout: Duration) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let run = async {
        let node_nonce = nonce()?;
        let mut hello = [0; HELLO_LEN];
        hello[..4].copy_from_slice(&MAGIC);
        hello[4] = VERSION;
        hello[5..].copy_from_slice(&node_nonce);
        stream.write_all(&hello).await?;
        stream.flush().await?;
        let mut answer = [0; ANSWER_LEN];
        stream.read_exact(&mut answer).await?;
        let (caller_nonce, tag) = answer.split_at(NONCE_LEN);
        if !key.verify(CALLER_LABEL, &node_nonce, caller_nonce, tag) {
            let _ = stream.write_all(&[REFUSE]).await;
            let _ = stream.flush().await;
            return Err(HandshakeError::BadProof);
        }
        let mut accept = [0; 1 + TAG_LEN];
        accept[0] = ACCEPT;
        accept[1..].copy_from_slice(key.tag(NODE_LABEL, &node_nonce, caller_nonce).as_ref());
        stream.write_all(&accept).await?;
        stream.flush().await?;
        Ok(())
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HandshakeError::TimedOut(timeout))?
}

/// The caller's side: reads the node's greeting, proves the secret, and checks the node's proof.
/// Not bounded by itself: run it within the connect timeout (as [`connect`] does).
pub async fn prove<S>(stream: &mut S, key: &Key) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0; HELLO_LEN];
    stream.read_exact(&mut hello).await?;
    if hello[..4] != MAGIC || hello[4] != VERSION {
        return Err(HandshakeError::NotAHandshake);
    }
    let node_nonce = &hello[5..];
    let caller_nonce = nonce()?;
    let mut answer = [0; ANSWER_LEN];
    answer[..NONCE_LEN].copy_from_slice(&caller_nonce);
    answer[NONCE_LEN..].copy_from_slice(key.tag(CALLER_LABEL, node_nonce, &caller_nonce).as_ref());
    stream.write_all(&answer).await?;
    stream.flush().await?;
    let mut verdict = [0; 1];
    match stream.read_exact(&mut verdict).await {
        Ok(_) => {}
        // A node that closes without a verdict refused us too (it drops refused callers).
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(HandshakeError::Refused);
        }
        Err(err) => return Err(err.into()),
    }
    if verdict[0] != ACCEPT {
        return Err(HandshakeError::Refused);
    }
    let mut tag = [0; TAG_LEN];
    stream.read_exact(&mut tag).await?;
    if !key.verify(NODE_LABEL, node_nonce, &caller_nonce, &tag) {
        return Err(HandshakeError::NodeUnproven);
    }
    Ok(())
}

/// Dials a node: [`stream::connect`], then, when `key` is given, [`prove`], the whole within
/// `timeout`. What the router and every other caller use.
pub async fn connect(
    addr: &str,
    tls: Option<&ClientTls>,
    key: Option<&Key>,
    timeout: Duration,
) -> io::Result<Stream> {
    let start = Instant::now();
    let mut stream = stream::connect(addr, tls, timeout).await?;
    let Some(key) = key else {
        return Ok(stream);
    };
    let left = timeout.saturating_sub(start.elapsed());
    match tokio::time::timeout(left, prove(&mut stream, key)).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(HandshakeError::TimedOut(timeout).into()),
    }
}

#[cfg(test)]
mod tests;
