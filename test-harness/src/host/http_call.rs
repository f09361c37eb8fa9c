//! `proxy_http_call`: Envoy's checks, type-tagged tokens, and answers from
//! the test's upstreams delivered on the virtual clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::{CalloutEvent, Host, Ret, split, write_u32};
use crate::abi::Status;
use crate::headers::{HeaderMap, decode_pairs};
use crate::upstream::{CallOutcome, HttpCall, HttpResponse, Upstream};

/// Callout tokens are tagged by kind in the low two bits (HTTP 0, gRPC call
/// 1, gRPC stream 2) and step by 4, as in Envoy; the first HTTP token is 4.
const TOKEN_STEP: u32 = 4;

/// The VM's HTTP callouts (`proxy_http_call`), this file's part of the
/// store's state: the upstreams it may call, the calls made, and the
/// answer being delivered.
#[derive(Default)]
pub(crate) struct HttpCallouts {
    pub(crate) upstreams: Arc<HashMap<String, Upstream>>,
    pub(crate) next_token: u32,
    /// Tokens of calls whose answer the driver delivers
    /// ([`CallOutcome::Deferred`](crate::CallOutcome::Deferred)).
    pub(crate) deferred: Vec<u32>,
    pub(crate) made: Vec<HttpCall>,
    /// The response being delivered (`proxy_on_http_call_response`).
    pub(crate) response: Option<HttpResponse>,
}

impl HttpCallouts {
    pub(crate) fn new(upstreams: Arc<HashMap<String, Upstream>>) -> Self {
        Self {
            upstreams,
            ..Self::default()
        }
    }
}

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    register!(linker, proxy_http_call);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut caller: Caller<'_, Host>,
    upstream_ptr: i32,
    upstream_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    body_ptr: i32,
    body_len: i32,
    trailers_ptr: i32,
    trailers_len: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return Ok(Status::InvalidMemoryAccess.code());
    };
    let slices = (
        super::slice(mem, upstream_ptr, upstream_len),
        super::slice(mem, headers_ptr, headers_len),
        super::slice(mem, body_ptr, body_len),
        super::slice(mem, trailers_ptr, trailers_len),
    );
    let (Some(upstream), Some(headers), Some(body), Some(trailers)) = slices else {
        return Ok(Status::InvalidMemoryAccess.code());
    };
    let upstream = String::from_utf8_lossy(upstream).into_owned();
    let mut headers: HeaderMap = decode_pairs(headers).into_iter().collect();
    let trailers: HeaderMap = decode_pairs(trailers).into_iter().collect();
    let body = body.to_vec();
    // Envoy checks the out-pointer before starting the call.
    if !write_u32(mem, token_ptr, 0) {
        return Ok(Status::InvalidMemoryAccess.code());
    }
    let Some(target) = host.http.upstreams.get(&upstream).cloned() else {
        return Ok(Status::BadArgument.code());
    };
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| !headers.contains(h))
    {
        return Ok(Status::BadArgument.code());
    }
    if !body.is_empty() {
        headers.replace("content-length", body.len().to_string());
    }
    host.http.next_token += TOKEN_STEP;
    let token = host.http.next_token;
    let timeout = (timeout_ms != 0).then(|| Duration::from_millis(u64::from(timeout_ms as u32)));
    let call = HttpCall {
        token,
        upstream,
        headers,
        body,
        trailers,
        timeout,
        at: UNIX_EPOCH + Duration::from_nanos(host.clock.realtime_ns),
    };
    let (outcome, latency) = target.answer(&call);
    let deferred = outcome == CallOutcome::Deferred;
    let reply = match (outcome, timeout) {
        (CallOutcome::Respond(_) | CallOutcome::Reset, Some(limit)) if latency > limit => {
            Some((limit, Some(HttpResponse::upstream_timeout())))
        }
        (CallOutcome::Respond(response), _) => Some((latency, Some(response))),
        (CallOutcome::Reset, _) => Some((latency, None)),
        (CallOutcome::NoResponse, Some(limit)) => {
            Some((limit, Some(HttpResponse::upstream_timeout())))
        }
        (CallOutcome::NoResponse, None) | (CallOutcome::Deferred, _) => None,
    };
    if let Some((delay, response)) = reply {
        host.schedule(token, delay, CalloutEvent::HttpResponse(response));
    } else if deferred {
        host.http.deferred.push(token);
    }
    host.http.made.push(call);
    Ok(if write_u32(mem, token_ptr, token) {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    }
    .code())
}
