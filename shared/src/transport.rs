//! The one place that decides how tarpc messages travel: length-delimited frames (at most
//! [`MAX_FRAME_LEN`](crate::defaults::MAX_FRAME_LEN) bytes) carrying bincode.
//!
//! Both the node's server side and the router's client side call [`framed`], so the codec can
//! move to another format later by changing this file only.
//!
//! The node's side reads requests through [`server_framed`], which decodes a request's deadline
//! itself: tarpc's own decoder adds the time left to `Instant::now()` and panics when a caller
//! sends an absurd one (u64::MAX seconds). Here the time left is read as a plain `Duration`,
//! clamped to [`MAX_DEADLINE`], and only then turned into an `Instant`; the cost is the same single
//! decode tarpc would have done.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use futures::stream::MapOk;
use serde::{Deserialize, Serialize};
use tarpc::serde_transport::Transport;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{ClientMessage, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::LengthDelimitedCodec;

use crate::defaults::MAX_DEADLINE;

/// The transport type of one tarpc connection over `S` (usually a `TcpStream`).
pub type Framed<S, Item, SinkItem> = Transport<S, Item, SinkItem, Bincode<Item, SinkItem>>;

/// Wraps a connected stream into a tarpc transport with the cluster's codec and frame limit.
///
/// A frame longer than `max_frame_len` makes the read fail, which closes the connection.
pub fn framed<S, Item, SinkItem>(io: S, max_frame_len: usize) -> Framed<S, Item, SinkItem>
where
    S: AsyncRead + AsyncWrite,
    Item: for<'de> Deserialize<'de>,
    SinkItem: Serialize,
{
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(max_frame_len)
        .new_framed(io);
    tarpc::serde_transport::new(codec, Bincode::default())
}

/// The transport type of a node's side of a connection: requests in (deadlines clamped), responses
/// out. See [`server_framed`].
pub type ServerFramed<S, Req, Resp> =
    MapOk<Framed<S, WireMessage<Req>, Response<Resp>>, fn(WireMessage<Req>) -> ClientMessage<Req>>;

/// Wraps an accepted stream into the node's side of a tarpc transport: like [`framed`], but the
/// requests' deadlines are decoded here and clamped to [`MAX_DEADLINE`] (see the module docs).
pub fn server_framed<S, Req, Resp>(io: S, max_frame_len: usize) -> ServerFramed<S, Req, Resp>
where
    S: AsyncRead + AsyncWrite,
    Req: for<'de> Deserialize<'de>,
    Resp: Serialize,
{
    framed::<S, WireMessage<Req>, Response<Resp>>(io, max_frame_len)
        .map_ok(WireMessage::into_message as fn(WireMessage<Req>) -> ClientMessage<Req>)
}

/// `tarpc::ClientMessage` as it travels, with the deadline left as the time left: the same
/// fields in the same order, so bincode reads the same bytes.
#[derive(Debug, Deserialize)]
pub enum WireMessage<T> {
    /// `ClientMessage::Request`.
    Request(WireRequest<T>),
    /// `ClientMessage::Cancel`.
    Cancel {
        /// The cancelled request's trace context.
        #[serde(default)]
        trace_context: tarpc::trace::Context,
        /// The request to cancel.
        request_id: u64,
    },
}

/// `tarpc::Request` as it travels.
#[derive(Debug, Deserialize)]
pub struct WireRequest<T> {
    context: WireContext,
    id: u64,
    message: T,
}

/// `tarpc::context::Context` as it travels: the deadline is the time left.
#[derive(Debug, Deserialize)]
struct WireContext {
    time_left: Duration,
    trace_context: tarpc::trace::Context,
}

impl<T> WireMessage<T> {
    /// The tarpc message, its deadline at most [`MAX_DEADLINE`] from now.
    pub fn into_message(self) -> ClientMessage<T> {
        match self {
            WireMessage::Request(WireRequest {
                context,
                id,
                message,
            }) => {
                let mut ctx = tarpc::context::current();
                ctx.deadline = Instant::now() + context.time_left.min(MAX_DEADLINE);
                ctx.trace_context = context.trace_context;
                ClientMessage::Request(Request {
                    context: ctx,
                    id,
                    message,
                })
            }
            WireMessage::Cancel {
                trace_context,
                request_id,
            } => ClientMessage::Cancel {
                trace_context,
                request_id,
            },
        }
    }
}
