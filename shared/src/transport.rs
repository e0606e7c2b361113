//! The one place that decides how tarpc messages travel: length-delimited frames (at most
//! [`MAX_FRAME_LEN`](crate::defaults::MAX_FRAME_LEN) bytes) carrying bincode.
//!
//! Both the node's server side and the router's client side call [`framed`], so the codec can
//! move to another format later by changing this file only.

use serde::{Deserialize, Serialize};
use tarpc::serde_transport::Transport;
use tarpc::tokio_serde::formats::Bincode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::LengthDelimitedCodec;

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
