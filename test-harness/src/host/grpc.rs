//! gRPC callouts: unary calls and streams to the test's gRPC upstreams,
//! with Envoy's tokens, checks and callback sequence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::{CalloutEvent, Host, Ret, split, status, write_u32};
use crate::abi::Status;
use crate::headers::{HeaderMap, decode_pairs};
use crate::upstream::{GrpcCall, GrpcReply, GrpcUpstream};

/// gRPC status a unary call without an answer closes with at its timeout.
const DEADLINE_EXCEEDED: u32 = 4;

/// The VM's gRPC callouts, this file's part of the store's state: the
/// services it may call, the calls and streams opened, and what the
/// callback being delivered may read.
pub(crate) struct GrpcCallouts {
    pub(crate) upstreams: Arc<HashMap<String, GrpcUpstream>>,
    /// Next call and stream tokens (kinds 1 and 2, step 4).
    pub(crate) next_tokens: [u32; 2],
    pub(crate) calls: Vec<GrpcCall>,
    /// Open calls and streams: token → index in `calls`, and whether
    /// initial metadata was delivered.
    pub(crate) open: HashMap<u32, (usize, bool)>,
    pub(crate) message: Option<Vec<u8>>,
    pub(crate) initial_metadata: Option<HeaderMap>,
    pub(crate) trailing_metadata: Option<HeaderMap>,
}

impl GrpcCallouts {
    pub(crate) fn new(upstreams: Arc<HashMap<String, GrpcUpstream>>) -> Self {
        Self {
            upstreams,
            next_tokens: [1, 2],
            calls: Vec::new(),
            open: HashMap::new(),
            message: None,
            initial_metadata: None,
            trailing_metadata: None,
        }
    }
}

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    register!(
        linker,
        proxy_grpc_call,
        proxy_grpc_stream,
        proxy_grpc_send,
        proxy_grpc_cancel,
        proxy_grpc_close
    );
    Ok(())
}

/// Reads (cluster, service, method, metadata) from guest memory.
fn target(mem: &[u8], parts: [(i32, i32); 4]) -> Option<(String, String, String, HeaderMap)> {
    let text = |(p, l): (i32, i32)| {
        super::slice(mem, p, l).map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let metadata = super::slice(mem, parts[3].0, parts[3].1)?;
    Some((
        text(parts[0])?,
        text(parts[1])?,
        text(parts[2])?,
        decode_pairs(metadata).into_iter().collect(),
    ))
}

/// Opens a call or stream: PARSE_FAILURE for an unknown cluster, as Envoy.
fn open(
    host: &mut Host,
    streaming: bool,
    target: (String, String, String, HeaderMap),
    message: Option<Vec<u8>>,
    timeout: Option<Duration>,
) -> Result<u32, Status> {
    let (upstream, service, method, initial_metadata) = target;
    if !host.grpc.upstreams.contains_key(&upstream) {
        return Err(Status::ParseFailure);
    }
    let kind = usize::from(streaming);
    host.grpc.next_tokens[kind] += 4;
    let token = host.grpc.next_tokens[kind];
    host.grpc.calls.push(GrpcCall {
        token,
        upstream,
        service,
        method,
        initial_metadata,
        messages: message.into_iter().collect(),
        streaming,
        timeout,
        closed: !streaming,
        cancelled: false,
    });
    host.grpc
        .open
        .insert(token, (host.grpc.calls.len() - 1, false));
    Ok(token)
}

/// Asks the upstream what it answers now, and schedules it.
fn answer(host: &mut Host, token: u32) {
    let Some(&(index, initial_sent)) = host.grpc.open.get(&token) else {
        return;
    };
    let call = &host.grpc.calls[index];
    let Some(upstream) = host.grpc.upstreams.get(&call.upstream).cloned() else {
        return;
    };
    let (reply, latency) = upstream.answer(call);
    let (streaming, timeout) = (call.streaming, call.timeout);
    if !streaming {
        // A unary call ends with its message (success) or a close (failure).
        let event = match (reply.close, reply.messages.into_iter().next()) {
            (Some((code, message)), _) if code != 0 => {
                Some((latency, CalloutEvent::GrpcClose(code, message)))
            }
            (_, Some(message)) => Some((latency, CalloutEvent::GrpcMessage(message))),
            (_, None) => timeout.map(|t| {
                (
                    t,
                    CalloutEvent::GrpcClose(DEADLINE_EXCEEDED, "timeout".into()),
                )
            }),
        };
        let event = match (event, timeout) {
            (Some((delay, _)), Some(limit)) if delay > limit => Some((
                limit,
                CalloutEvent::GrpcClose(DEADLINE_EXCEEDED, "timeout".into()),
            )),
            (event, _) => event,
        };
        if let Some((delay, event)) = event {
            host.schedule(token, delay, event);
        }
        return;
    }
    let GrpcReply {
        initial_metadata,
        messages,
        trailing_metadata,
        close,
    } = reply;
    if let Some(metadata) = initial_metadata.filter(|_| !initial_sent) {
        host.schedule(token, latency, CalloutEvent::GrpcInitialMetadata(metadata));
        host.grpc.open.insert(token, (index, true));
    }
    for message in messages {
        host.schedule(token, latency, CalloutEvent::GrpcMessage(message));
    }
    if let Some(metadata) = trailing_metadata {
        host.schedule(token, latency, CalloutEvent::GrpcTrailingMetadata(metadata));
    }
    if let Some((code, message)) = close {
        host.schedule(token, latency, CalloutEvent::GrpcClose(code, message));
    }
}

#[allow(clippy::too_many_arguments)]
fn proxy_grpc_call(
    mut caller: Caller<'_, Host>,
    upstream_ptr: i32,
    upstream_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    message_ptr: i32,
    message_len: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> Ret {
    let parts = [
        (upstream_ptr, upstream_len),
        (service_ptr, service_len),
        (method_ptr, method_len),
        (metadata_ptr, metadata_len),
    ];
    let timeout = (timeout_ms != 0).then(|| Duration::from_millis(u64::from(timeout_ms as u32)));
    start(
        &mut caller,
        parts,
        Some((message_ptr, message_len)),
        timeout,
        token_ptr,
    )
}

/// Opens a unary call (with its message) or a stream, answers the token, and
/// for a call asks the upstream at once. As in Envoy the call is started
/// before the token is written back, so a bad token pointer leaves it running.
fn start(
    caller: &mut Caller<'_, Host>,
    parts: [(i32, i32); 4],
    message: Option<(i32, i32)>,
    timeout: Option<Duration>,
    token_ptr: i32,
) -> Ret {
    let Some((mem, host)) = split(caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let message = match message {
        Some((ptr, len)) => match super::slice(mem, ptr, len) {
            Some(bytes) => Some(bytes.to_vec()),
            None => return status(Status::InvalidMemoryAccess),
        },
        None => None,
    };
    let Some(target) = target(mem, parts) else {
        return status(Status::InvalidMemoryAccess);
    };
    let streaming = message.is_none();
    let token = match open(host, streaming, target, message, timeout) {
        Ok(token) => token,
        Err(s) => return status(s),
    };
    if !streaming {
        answer(host, token);
    }
    status(if write_u32(mem, token_ptr, token) {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}

#[allow(clippy::too_many_arguments)]
fn proxy_grpc_stream(
    mut caller: Caller<'_, Host>,
    upstream_ptr: i32,
    upstream_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    token_ptr: i32,
) -> Ret {
    let parts = [
        (upstream_ptr, upstream_len),
        (service_ptr, service_len),
        (method_ptr, method_len),
        (metadata_ptr, metadata_len),
    ];
    start(&mut caller, parts, None, None, token_ptr)
}

/// Sends on a stream; a unary call's token is BAD_ARGUMENT, an unknown one
/// NOT_FOUND.
fn proxy_grpc_send(
    mut caller: Caller<'_, Host>,
    token: i32,
    message_ptr: i32,
    message_len: i32,
    end_stream: i32,
) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(message) = super::slice(mem, message_ptr, message_len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let token = token as u32;
    let Some(&(index, _)) = host.grpc.open.get(&token) else {
        return status(Status::NotFound);
    };
    let call = &mut host.grpc.calls[index];
    if !call.streaming || call.closed {
        return status(Status::BadArgument);
    }
    call.messages.push(message.to_vec());
    call.closed = end_stream != 0;
    answer(host, token);
    status(Status::Ok)
}

/// Cancels a call or stream: nothing more is delivered for it.
fn proxy_grpc_cancel(mut caller: Caller<'_, Host>, token: i32) -> Ret {
    let host = caller.data_mut();
    let token = token as u32;
    let Some((index, _)) = host.grpc.open.remove(&token) else {
        return status(Status::NotFound);
    };
    host.grpc.calls[index].cancelled = true;
    host.pending_calls.retain(|p| p.token != token);
    status(Status::Ok)
}

/// Closes a call (as a cancel) or half-closes a stream (the upstream may
/// still answer).
fn proxy_grpc_close(mut caller: Caller<'_, Host>, token: i32) -> Ret {
    let host = caller.data_mut();
    let token = token as u32;
    let Some(&(index, _)) = host.grpc.open.get(&token) else {
        return status(Status::NotFound);
    };
    if !host.grpc.calls[index].streaming {
        host.grpc.open.remove(&token);
        host.grpc.calls[index].cancelled = true;
        host.pending_calls.retain(|p| p.token != token);
        return status(Status::Ok);
    }
    if !host.grpc.calls[index].closed {
        host.grpc.calls[index].closed = true;
        answer(host, token);
    }
    status(Status::Ok)
}
