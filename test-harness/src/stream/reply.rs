//! The local replies filters send (`proxy_send_local_response`), with the
//! headers Envoy gives them, gRPC requests answered in gRPC's terms.

use crate::headers::HeaderMap;
use crate::stream_state::{LocalResponse, http_to_grpc_status};

/// Headers of a local reply: `:status`, the filter's headers, and for a
/// non-empty body `content-length` and (unless given) `content-type: text/plain`.
pub(crate) fn local_reply_headers(response: &LocalResponse, grpc_request: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.add(":status", response.status.to_string());
    for (k, v) in response.headers.iter() {
        headers.add(k, v);
    }
    if grpc_request {
        // Envoy answers a gRPC request in gRPC's trailers-only form: 200,
        // the status and message in headers, no body (`Utility::sendLocalReply`).
        headers.replace(":status", "200");
        headers.replace("content-type", "application/grpc");
        let status = response
            .grpc_status
            .unwrap_or_else(|| http_to_grpc_status(response.status));
        headers.replace("grpc-status", status.to_string());
        if !response.body.is_empty() {
            let message = percent_encoding::percent_encode(&response.body, GRPC_MESSAGE);
            headers.replace("grpc-message", message.to_string());
        }
        return headers;
    }
    if !response.body.is_empty() {
        headers.replace("content-length", response.body.len().to_string());
        if !headers.contains("content-type") {
            headers.add("content-type", "text/plain");
        }
    }
    headers
}

/// What Envoy percent-encodes in `grpc-message`: everything outside
/// `' '..='~'`, and `%` itself.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// Whether Envoy treats a request as gRPC (`Grpc::Common::isGrpcRequestHeaders`):
/// its `content-type` is `application/grpc`, or that followed by `+` or `;`.
pub(crate) fn is_grpc_request(headers: &HeaderMap) -> bool {
    headers.get_bytes(b"content-type").is_some_and(|ct| {
        ct.strip_prefix(b"application/grpc")
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
    })
}
