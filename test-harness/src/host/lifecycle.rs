//! Context lifecycle, logging, clocks, timers, properties, foreign functions
//! and the stream operations (continue, close, local reply).

use wasmtime::{Caller, Linker};

use super::{Deferred, Host, Phase, Ret, copy_out, read, split, status, write_u32, write_u64};
use crate::abi::{LogLevel, Status, StreamType};
use crate::headers::{HeaderMap, decode_pairs};
use crate::stream_state::{Direction, LocalResponse};

/// The root context's tick (`proxy_set_tick_period_milliseconds`), this
/// file's part of the store's state: its period (0: none) and when it is
/// next due on the virtual monotonic clock.
#[derive(Default, Clone, Copy)]
pub(crate) struct Tick {
    pub(crate) period_ns: u64,
    pub(crate) next_ns: u64,
}

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    register!(
        linker,
        proxy_done,
        proxy_set_effective_context,
        proxy_get_log_level,
        proxy_get_current_time_nanoseconds,
        proxy_set_tick_period_milliseconds,
        proxy_get_property,
        proxy_set_property,
        proxy_get_status,
        proxy_send_local_response,
        proxy_continue_stream,
        proxy_close_stream
    );
    // Not through `register!`: Envoy lets it run while the module starts.
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    Ok(())
}

/// Finishes a root context that answered false from `proxy_on_done`.
fn proxy_done(mut caller: Caller<'_, Host>) -> Ret {
    let host = caller.data_mut();
    if host.context() == host.root_id && host.root_pending_done {
        host.deferred.push(Deferred::RootDone);
        return status(Status::Ok);
    }
    status(Status::NotFound)
}

fn proxy_set_effective_context(mut caller: Caller<'_, Host>, context_id: i32) -> Ret {
    let host = caller.data_mut();
    let id = context_id as u32;
    if !host.is_context(id) {
        return status(Status::BadArgument);
    }
    host.effective = Some(id);
    status(Status::Ok)
}

fn proxy_log(mut caller: Caller<'_, Host>, level: i32, ptr: i32, len: i32) -> Ret {
    // Allowed while the module starts, so counted without `enter`.
    caller.data_mut().meter.host_call("proxy_log");
    if super::restricted(&mut caller, "proxy_log") {
        return status(Status::InternalFailure);
    }
    let Some(level) = LogLevel::from_abi(level as u32) else {
        return status(Status::BadArgument);
    };
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(message) = super::slice(mem, ptr, len) else {
        return status(Status::InvalidMemoryAccess);
    };
    host.log(level, message);
    status(Status::Ok)
}

fn proxy_get_log_level(mut caller: Caller<'_, Host>, ret: i32) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let level = host.settings.log_level as u32;
    status(if write_u32(mem, ret, level) {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}

fn proxy_get_current_time_nanoseconds(mut caller: Caller<'_, Host>, ret: i32) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let now = host.clock.realtime_ns;
    status(if write_u64(mem, ret, now) {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}

/// Sets the root context's tick period (0 disables); ticks fire as the test
/// advances the virtual clock.
fn proxy_set_tick_period_milliseconds(mut caller: Caller<'_, Host>, period_ms: i32) -> Ret {
    let host = caller.data_mut();
    host.tick.period_ns = u64::from(period_ms as u32) * 1_000_000;
    host.tick.next_ns = host.clock.monotonic_ns + host.tick.period_ns;
    status(Status::Ok)
}

fn proxy_get_property(
    mut caller: Caller<'_, Host>,
    path_ptr: i32,
    path_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Ret {
    let Some(path) = read(&mut caller, path_ptr, path_len) else {
        return status(Status::InvalidMemoryAccess);
    };
    match caller.data().property(&path) {
        Ok(value) => Ok(copy_out(&mut caller, &value, ret_ptr, ret_len)?.code()),
        Err(crate::properties::Missing::NotFound) => status(Status::NotFound),
        Err(crate::properties::Missing::SerializationFailure) => {
            status(Status::SerializationFailure)
        }
    }
}

/// Stores a value in the stream's filter state (shared by the filters of the
/// stream's chain); a context without a stream (the root context) gets
/// NOT_FOUND, as in Envoy.
fn proxy_set_property(
    mut caller: Caller<'_, Host>,
    path_ptr: i32,
    path_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let (Some(path), Some(value)) = (
        super::slice(mem, path_ptr, path_len),
        super::slice(mem, value_ptr, value_len),
    ) else {
        return status(Status::InvalidMemoryAccess);
    };
    let (path, value) = (path.to_vec(), value.to_vec());
    let readonly = host
        .declared_properties
        .get(&path)
        .is_some_and(|d| d.readonly);
    let Some((_, stream)) = host.stream_mut() else {
        return status(Status::NotFound);
    };
    let mut state = stream.filter_state.write();
    if readonly && state.properties.contains_key(&path) {
        // A read-only property is set once (Envoy's `CelState::setValue`).
        return status(Status::BadArgument);
    }
    state.properties.insert(path, value);
    status(Status::Ok)
}

fn proxy_get_status(
    mut caller: Caller<'_, Host>,
    code_ptr: i32,
    msg_ptr: i32,
    msg_len: i32,
) -> Ret {
    let (code, message) = caller.data().status.clone();
    let Some((mem, _)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    if !write_u32(mem, code_ptr, code) {
        return status(Status::InvalidMemoryAccess);
    }
    Ok(copy_out(&mut caller, &message, msg_ptr, msg_len)?.code())
}

/// Queues a local reply; Envoy sends it after the VM call returns and the
/// first reply of a stream wins.
#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut caller: Caller<'_, Host>,
    status_code: i32,
    details_ptr: i32,
    details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    grpc_status: i32,
) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let (Some(details), Some(body), Some(headers)) = (
        super::slice(mem, details_ptr, details_len),
        super::slice(mem, body_ptr, body_len),
        super::slice(mem, headers_ptr, headers_len),
    ) else {
        return status(Status::InvalidMemoryAccess);
    };
    let response = LocalResponse {
        status: status_code as u32,
        details: String::from_utf8_lossy(details).into_owned(),
        body: body.to_vec(),
        headers: decode_pairs(headers).into_iter().collect::<HeaderMap>(),
        grpc_status: (grpc_status >= 0).then_some(grpc_status as u32),
    };
    if let Some((stream, _)) = host.stream_mut() {
        host.deferred
            .push(Deferred::LocalResponse { stream, response });
    }
    status(Status::Ok)
}

/// Continues a direction: HTTP request/response, or reading a TCP
/// connection's downstream. Resuming a TCP upstream is UNIMPLEMENTED in
/// Envoy itself, and the harness answers the same.
fn proxy_continue_stream(mut caller: Caller<'_, Host>, stream_type: i32) -> Ret {
    match StreamType::from_abi(stream_type as u32) {
        None => status(Status::BadArgument),
        Some(StreamType::HttpRequest) => continue_http(&mut caller, Direction::Request),
        Some(StreamType::HttpResponse) => continue_http(&mut caller, Direction::Response),
        Some(StreamType::Downstream) => {
            let host = caller.data_mut();
            if let Some((connection, _)) = host.connection_mut() {
                host.deferred.push(Deferred::TcpResume { connection });
            }
            status(Status::Ok)
        }
        Some(StreamType::Upstream) => status(Status::Unimplemented),
    }
}

pub(super) fn continue_http(caller: &mut Caller<'_, Host>, dir: Direction) -> Ret {
    let host = caller.data_mut();
    if let Some((stream, _)) = host.stream_mut() {
        host.deferred.push(Deferred::Continue { stream, dir });
    }
    status(Status::Ok)
}

/// Resets an HTTP stream, or closes a TCP connection, after the call.
fn proxy_close_stream(mut caller: Caller<'_, Host>, stream_type: i32) -> Ret {
    let Some(kind) = StreamType::from_abi(stream_type as u32) else {
        return status(Status::BadArgument);
    };
    let host = caller.data_mut();
    match kind {
        StreamType::HttpRequest | StreamType::HttpResponse => {
            if let Some((stream, _)) = host.stream_mut() {
                host.deferred.push(Deferred::Reset { stream });
            }
        }
        StreamType::Downstream | StreamType::Upstream => {
            if let Some((connection, _)) = host.connection_mut() {
                host.deferred.push(Deferred::TcpClose { connection });
            }
        }
    }
    status(Status::Ok)
}

/// Whether the configuration buffer may be read now (during `proxy_on_configure`).
pub(super) fn configuring(host: &Host) -> bool {
    host.phase == Phase::Configure
}
