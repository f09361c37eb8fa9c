//! What Envoy 1.40 makes of a message before any filter sees it, so a test
//! can feed a filter exactly what Envoy would: the request map its HTTP/1
//! codec and connection manager build, the response map its router passes
//! on, and how its codecs split a body into callbacks. Measured with the
//! ABI probe (`test-harness/fixtures/abi-probe`) in Envoy 1.40.

use std::time::{Duration, SystemTime};

use crate::headers::HeaderMap;

/// The downstream codec, which decides how a body reaches the filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// HTTP/1.1 with `content-length`: the body arrives as one callback with
    /// the bytes and `end_of_stream = false`, then an empty callback with
    /// `end_of_stream = true` when the codec sees the message complete.
    #[default]
    Http1,
    /// HTTP/2: each DATA frame is a callback; the last carries
    /// `end_of_stream = true`.
    Http2,
}

/// How a body reaches the filter's body callback: `(bytes, end_of_stream)`
/// per call, the body cut at `chunks` (sizes, in order; what is left over is
/// one more chunk), then what the codec adds at the end.
pub fn body_frames(body: &[u8], chunks: &[usize], codec: Codec) -> Vec<(Vec<u8>, bool)> {
    let mut frames: Vec<Vec<u8>> = body_pieces(body, chunks)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    if frames.is_empty() {
        frames.push(Vec::new());
    }
    let last = frames.len() - 1;
    match codec {
        Codec::Http1 => {
            let mut out: Vec<_> = frames.into_iter().map(|f| (f, false)).collect();
            out.push((Vec::new(), true));
            out
        }
        Codec::Http2 => frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| (f, i == last))
            .collect(),
    }
}

/// `body` cut at `sizes`, in order; what is left over is one more piece.
pub fn body_pieces<'a>(body: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = body;
    for &size in sizes {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// The request header map a filter sees for a client's request: over
/// HTTP/1.1 `:authority` (from `Host`), `:path`, `:method`, `:scheme` as the
/// HTTP/1 codec builds them; over HTTP/2 the pseudo-headers in the order the
/// client sent them (here `:method`, `:scheme`, `:authority`, `:path`, as
/// hyper's and most clients' HTTP/2 stacks send them); then the client's
/// other headers in order, then `x-forwarded-proto` and `x-request-id`,
/// which the connection manager adds (a client's own `x-request-id` is
/// kept).
pub fn request_headers<'a>(
    codec: Codec,
    method: &str,
    path: &str,
    authority: &str,
    client_headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    request_id: &str,
) -> HeaderMap {
    let mut map = match codec {
        Codec::Http1 => HeaderMap::from([
            (":authority", authority),
            (":path", path),
            (":method", method),
            (":scheme", "http"),
        ]),
        Codec::Http2 => HeaderMap::from([
            (":method", method),
            (":scheme", "http"),
            (":authority", authority),
            (":path", path),
        ]),
    };
    for (name, value) in client_headers {
        if !name.eq_ignore_ascii_case("host") {
            map.add(name, value);
        }
    }
    if !map.contains("x-forwarded-proto") {
        map.add("x-forwarded-proto", "http");
    }
    if !map.contains("x-request-id") {
        map.add("x-request-id", request_id);
    }
    map
}

/// `request.protocol` for a stream over `codec`.
pub fn protocol(codec: Codec) -> &'static str {
    match codec {
        Codec::Http1 => "HTTP/1.1",
        Codec::Http2 => "HTTP/2",
    }
}

/// A request id shaped as Envoy's (a version-4 UUID), drawn from `n` so runs
/// repeat.
pub fn request_id(n: u64) -> String {
    let a = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        (n & 0xfff) as u16,
        n & 0xffff_ffff_ffff
    )
}

/// The response header map a filter sees for an upstream's HTTP/1.1
/// answer: `:status`, the upstream's headers, the `content-length` and
/// `date` an HTTP/1.1 server adds when it sent none, then the
/// `x-envoy-upstream-service-time` Envoy's router adds.
pub fn response_headers<'a>(
    status: u16,
    upstream_headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body_len: usize,
    now: SystemTime,
    service_time: Duration,
) -> HeaderMap {
    let mut map = HeaderMap::from([(":status", status.to_string())]);
    for (name, value) in upstream_headers {
        map.add(name, value);
    }
    if !map.contains("content-length") {
        map.add("content-length", body_len.to_string());
    }
    if !map.contains("date") {
        map.add("date", httpdate::fmt_http_date(now));
    }
    map.add(
        "x-envoy-upstream-service-time",
        service_time.as_millis().to_string(),
    );
    map
}

/// The largest request header block Envoy's connection manager accepts
/// (`max_request_headers_kb`, default 60 KiB); past it the client gets 431
/// and no filter runs.
pub const MAX_REQUEST_HEADERS_BYTES: usize = 60 * 1024;

/// Whether a header value may go on the wire: Envoy refuses a filter's
/// header with CR, LF or NUL (503, `invalid header value`).
pub fn valid_header_value(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_ends_the_body_with_an_empty_callback() {
        assert_eq!(
            body_frames(b"hello", &[], Codec::Http1),
            vec![(b"hello".to_vec(), false), (Vec::new(), true)]
        );
        assert_eq!(
            body_frames(b"hello", &[2], Codec::Http2),
            vec![(b"he".to_vec(), false), (b"llo".to_vec(), true)]
        );
    }

    #[test]
    fn pieces_follow_the_plan_and_keep_the_rest() {
        assert_eq!(
            body_pieces(b"abcdefgh", &[3, 2]),
            [&b"abc"[..], b"de", b"fgh"]
        );
        assert_eq!(body_pieces(b"ab", &[5, 5]), [&b"ab"[..]]);
        assert!(body_pieces(b"", &[1]).is_empty());
    }

    #[test]
    fn requests_look_as_envoy_builds_them() {
        let map = request_headers(
            Codec::Http1,
            "GET",
            "/a",
            "example.com",
            [("x-a", "1")],
            "id",
        );
        let names: Vec<_> = map.iter().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(
            names,
            [
                &b":authority"[..],
                b":path",
                b":method",
                b":scheme",
                b"x-a",
                b"x-forwarded-proto",
                b"x-request-id"
            ]
        );
        assert_eq!(request_id(7).len(), 36);
    }
}
