//! Property tests of the frame decoding of [`transport::framed`] over an in-memory duplex pipe.
//!
//! - arbitrary byte streams, cut into arbitrary chunks, never panic the decoder, and it never
//!   offers a read buffer much beyond the frame limit, whatever length prefix it is sent;
//! - a length prefix beyond the limit is an error at once, without waiting for the frame;
//! - well-framed garbage is an error (or, by chance, a valid value), never a panic;
//! - valid values round-trip through a writer and a reader, whatever the chunking, and a value
//!   too long for the limit is refused when written.
//!
//! "Allocation" is observed as the spare room of the read buffer that the codec hands to the
//! stream at each read (a `ReadBuf` over the buffer's spare capacity): the decoder reserves room
//! for the frame it expects, so a decoder that believed a 4 GiB length prefix would offer 4 GiB.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use distribution_shared::defaults::MAX_FRAME_LEN;
use distribution_shared::transport::{self, Framed};
use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::time::timeout;

/// The capacity of the in-memory pipe: a reader never gets more than this in one read.
const PIPE: usize = 64 * 1024;

/// A value of the kind tarpc messages are made of: integers, text, bytes, options, enums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Msg {
    id: u64,
    name: String,
    data: Vec<u8>,
    score: Option<i32>,
    kind: Kind,
    children: Vec<Kind>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Empty,
    Number(i64),
    Text(String),
    Pair { left: u16, right: Option<bool> },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Empty),
        any::<i64>().prop_map(Kind::Number),
        ".{0,40}".prop_map(Kind::Text),
        (any::<u16>(), any::<Option<bool>>()).prop_map(|(left, right)| Kind::Pair { left, right }),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<u64>(),
        ".{0,60}",
        prop::collection::vec(any::<u8>(), 0..2048),
        any::<Option<i32>>(),
        kind(),
        prop::collection::vec(kind(), 0..8),
    )
        .prop_map(|(id, name, data, score, kind, children)| Msg {
            id,
            name,
            data,
            score,
            kind,
            children,
        })
}

/// A stream that records the largest read buffer it was offered.
struct Watched {
    inner: DuplexStream,
    peak_offer: Arc<AtomicUsize>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.peak_offer
            .fetch_max(buf.remaining(), Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The most read room a decoder with frame limit `limit` may offer: room for one whole frame
/// and its head, doubled for the buffer's growth policy, plus twice the codec's initial 8 KiB.
/// A decoder that believed a length prefix beyond the limit would exceed it.
fn offer_bound(limit: usize) -> usize {
    2 * (limit + 4) + 16 * 1024
}

/// A reader of `Msg` frames limited to `limit` bytes, the far end to feed it, and its peak offer.
fn reader(limit: usize) -> (Framed<Watched, Msg, Msg>, DuplexStream, Arc<AtomicUsize>) {
    let (near, far) = tokio::io::duplex(PIPE);
    let peak = Arc::new(AtomicUsize::new(0));
    let watched = Watched {
        inner: near,
        peak_offer: peak.clone(),
    };
    (transport::framed(watched, limit), far, peak)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `bytes` in pieces of the given sizes (cycled), then closes if `close`.
async fn feed(mut far: DuplexStream, bytes: Vec<u8>, chunks: Vec<usize>, close: bool) {
    let mut rest = &bytes[..];
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        if far.write_all(&rest[..n]).await.is_err() {
            return; // the reader is gone
        }
        rest = &rest[n..];
        tokio::task::yield_now().await;
    }
    if close {
        let _ = far.shutdown().await;
    } else {
        // Keep the pipe open until the reader has given up.
        let mut sink = [0u8; 1];
        let _ = far.read(&mut sink).await;
    }
}

/// What a reader made of a stream.
#[derive(Debug, Default)]
struct Decoded {
    items: Vec<Msg>,
    error: bool,
}

/// Reads items until the end of the stream or the first error, within a bound.
async fn drain(mut framed: Framed<Watched, Msg, Msg>) -> Decoded {
    let mut decoded = Decoded::default();
    let read = async {
        while let Some(item) = framed.next().await {
            match item {
                Ok(item) => decoded.items.push(item),
                Err(_) => {
                    decoded.error = true;
                    break;
                }
            }
        }
    };
    timeout(Duration::from_secs(5), read)
        .await
        .expect("the decoder finishes a closed stream within 5 s");
    decoded
}

/// `payload` behind a 4-byte big-endian length, as the codec frames it.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut framed = (payload.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(payload);
    framed
}

/// `msgs` as the real writer puts them on the wire, read back from the far end of a pipe.
async fn encode(msgs: &[Msg], limit: usize) -> io::Result<Vec<u8>> {
    let (near, mut far) = tokio::io::duplex(PIPE);
    let collect = tokio::spawn(async move {
        let mut wire = Vec::new();
        far.read_to_end(&mut wire).await.map(|_| wire)
    });
    let mut writer: Framed<DuplexStream, Msg, Msg> = transport::framed(near, limit);
    let sent = async {
        for msg in msgs {
            writer.send(msg.clone()).await?;
        }
        writer.close().await
    }
    .await;
    drop(writer);
    let wire = collect.await.unwrap()?;
    sent.map(|()| wire)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes, in any chunks, with any limit: no panic, the stream ends within the bound,
    /// and the read buffer stays within the limit's bound.
    #[test]
    fn arbitrary_streams_never_panic_and_stay_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        chunks in prop::collection::vec(1usize..512, 1..8),
        limit in 1usize..4096,
    ) {
        let rt = runtime();
        let peak = rt.block_on(async {
            let (framed, far, peak) = reader(limit);
            let feeder = tokio::spawn(feed(far, bytes, chunks, true));
            drain(framed).await;
            feeder.abort();
            peak.load(Ordering::Relaxed)
        });
        prop_assert!(peak <= offer_bound(limit), "offered {} with a limit of {}", peak, limit);
    }

    /// Streams made of plausible frames (some too long, some garbage, some cut) decode without
    /// panics, and every frame before the first bad one decodes to what was sent.
    #[test]
    fn mixed_frames_decode_in_order_until_the_first_bad_one(
        parts in prop::collection::vec(
            prop_oneof![
                msg().prop_map(Ok),
                prop::collection::vec(any::<u8>(), 0..300).prop_map(Err),
            ],
            0..6,
        ),
        chunks in prop::collection::vec(1usize..2048, 1..8),
        limit in 64usize..8192,
    ) {
        let rt = runtime();
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut clean = true;
        for part in &parts {
            match part {
                Ok(msg) => {
                    let encoded = rt.block_on(encode(std::slice::from_ref(msg), MAX_FRAME_LEN)).unwrap();
                    if clean && encoded.len() - 4 <= limit {
                        expected.push(msg.clone());
                    } else {
                        clean = false;
                    }
                    wire.extend(encoded);
                }
                Err(garbage) => {
                    // Garbage that happens to decode still counts as a frame; it just is not
                    // predicted, so stop predicting from here.
                    clean = false;
                    wire.extend(frame(garbage));
                }
            }
        }
        let (decoded, peak) = rt.block_on(async {
            let (framed, far, peak) = reader(limit);
            let feeder = tokio::spawn(feed(far, wire, chunks, true));
            let decoded = drain(framed).await;
            feeder.abort();
            (decoded, peak.load(Ordering::Relaxed))
        });
        prop_assert!(decoded.items.len() >= expected.len());
        prop_assert_eq!(&decoded.items[..expected.len()], &expected[..]);
        prop_assert!(peak <= offer_bound(limit));
    }

    /// A length prefix beyond the limit is an error as soon as the prefix is read: the decoder
    /// neither waits for the frame nor makes room for it.
    #[test]
    fn a_prefix_beyond_the_limit_fails_at_once(
        limit in 1usize..(1 << 20),
        excess in any::<u32>(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let limit_u32 = limit as u32;
        let prefix = limit_u32.saturating_add(1).saturating_add(excess % (u32::MAX - limit_u32));
        prop_assume!(prefix as usize > limit);
        let mut bytes = prefix.to_be_bytes().to_vec();
        bytes.extend(tail);
        let rt = runtime();
        let (first, peak) = rt.block_on(async {
            let (mut framed, far, peak) = reader(limit);
            // The writer stays open: only the decoder can end this.
            let feeder = tokio::spawn(feed(far, bytes, vec![usize::MAX], false));
            let first = timeout(Duration::from_secs(2), framed.next()).await;
            feeder.abort();
            (first, peak.load(Ordering::Relaxed))
        });
        let first = first.expect("an error without waiting for the announced frame");
        prop_assert!(matches!(first, Some(Err(_))), "got {:?}", first);
        prop_assert!(peak <= offer_bound(0), "offered {}", peak);
    }

    /// Any payload in a well-formed frame: a value or an error, never a panic.
    #[test]
    fn well_framed_garbage_is_an_error_or_a_value(
        payload in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let rt = runtime();
        let decoded = rt.block_on(async {
            let (framed, far, _) = reader(MAX_FRAME_LEN);
            let feeder = tokio::spawn(feed(far, frame(&payload), vec![PIPE], true));
            let decoded = drain(framed).await;
            feeder.abort();
            decoded
        });
        prop_assert!(decoded.items.len() + usize::from(decoded.error) <= 1);
    }

    /// Valid values round-trip through the real writer and reader, whatever the chunking.
    #[test]
    fn valid_frames_round_trip(
        msgs in prop::collection::vec(msg(), 0..8),
        chunks in prop::collection::vec(1usize..4096, 1..8),
    ) {
        let rt = runtime();
        let decoded = rt.block_on(async {
            let wire = encode(&msgs, MAX_FRAME_LEN).await.unwrap();
            let (framed, far, _) = reader(MAX_FRAME_LEN);
            let feeder = tokio::spawn(feed(far, wire, chunks, true));
            let decoded = drain(framed).await;
            feeder.abort();
            decoded
        });
        prop_assert!(!decoded.error);
        prop_assert_eq!(decoded.items, msgs);
    }

    /// A value whose encoding exceeds the limit is refused by the writer, so a node never sends
    /// a frame its peer would have to refuse.
    #[test]
    fn the_writer_refuses_frames_beyond_the_limit(
        msg in msg(),
        limit in 1usize..512,
    ) {
        let rt = runtime();
        let size = rt.block_on(encode(std::slice::from_ref(&msg), MAX_FRAME_LEN)).unwrap().len() - 4;
        let limited = rt.block_on(encode(std::slice::from_ref(&msg), limit));
        if size > limit {
            prop_assert!(limited.is_err(), "a {}-byte frame written under a {}-byte limit", size, limit);
        } else {
            prop_assert_eq!(limited.unwrap().len(), size + 4);
        }
    }
}
