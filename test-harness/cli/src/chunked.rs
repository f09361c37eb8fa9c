//! A body sent in planned pieces with a pause between them, so that Envoy
//! reads each piece on its own and hands it to the filters as its own body
//! callback (a scenario's `chunks`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
use proxy_wasm_harness::envoy;
use tokio::time::Sleep;

/// The body type the runner's client and servers send.
pub(crate) type OutBody = BoxBody<Bytes, Infallible>;

/// Long enough for Envoy to read each piece separately on loopback.
const PAUSE: Duration = Duration::from_millis(50);

/// A body of `body` cut at `sizes`, with a pause before every piece but the
/// first. Its exact size is known, so an HTTP/1.1 peer sends
/// `content-length`; over HTTP/2 the last piece ends the stream.
pub(crate) fn body(body: &[u8], sizes: &[usize]) -> OutBody {
    let pieces: VecDeque<Bytes> = envoy::body_pieces(body, sizes)
        .into_iter()
        .map(Bytes::copy_from_slice)
        .collect();
    let remaining = pieces.iter().map(|p| p.len() as u64).sum();
    Chunked {
        pieces,
        remaining,
        pause: None,
        first: true,
    }
    .boxed()
}

struct Chunked {
    pieces: VecDeque<Bytes>,
    remaining: u64,
    pause: Option<Pin<Box<Sleep>>>,
    first: bool,
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.pieces.is_empty() {
            return Poll::Ready(None);
        }
        if !self.first {
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(PAUSE)));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        self.first = false;
        match self.pieces.pop_front() {
            Some(piece) => {
                self.remaining -= piece.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A gRPC answer as a service sends it: the response message framed
/// (compression flag, 4-byte length) when the status is OK, then trailers
/// with `grpc-status` and `grpc-message`.
pub(crate) fn grpc_answer(status: u32, message: &str, response: &[u8]) -> OutBody {
    let mut frames = VecDeque::new();
    if status == 0 {
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
        framed.extend_from_slice(response);
        frames.push_back(Frame::data(Bytes::from(framed)));
    }
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from(status));
    if let Ok(value) = hyper::header::HeaderValue::from_str(message)
        && !message.is_empty()
    {
        trailers.insert("grpc-message", value);
    }
    frames.push_back(Frame::trailers(trailers));
    Frames(frames).boxed()
}

struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}
