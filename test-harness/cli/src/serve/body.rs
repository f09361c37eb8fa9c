//! A streaming body fed from a channel: what the filters let through is
//! sent on as it passes, to the upstream or to the client.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

/// Why a body ended early: the stream was reset, so the peer must see the
/// connection fail rather than a short, well-formed message.
#[derive(Debug)]
pub(crate) struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the stream was reset")
    }
}

impl std::error::Error for Aborted {}

/// A frame, or the abort that ends the body with an error.
pub(crate) type Item = Result<Frame<Bytes>, Aborted>;

/// The receiving end; the body ends when every sender is dropped.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    frames: mpsc::UnboundedReceiver<Item>,
}

/// A body and the sender that feeds it.
pub(crate) fn channel() -> (mpsc::UnboundedSender<Item>, ChannelBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, ChannelBody { frames: rx })
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        self.frames.poll_recv(cx)
    }
}
