//! HTTP fields (header and trailer maps) and buffers, with Envoy's rules for
//! which of them a callback may read or write.

use wasmtime::{Caller, Linker};

use super::{Host, Ret, copy_out, lifecycle::configuring, split, status, write_u32};
use crate::abi::{AbiVersion, BufferType, MapType, Status};
use crate::headers::{HeaderMap, decode_pairs};
use crate::stream_state::{Direction, Flow, HttpStreamState, Stage, Stop};

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    register!(
        linker,
        proxy_get_header_map_size,
        proxy_get_header_map_pairs,
        proxy_set_header_map_pairs,
        proxy_get_header_map_value,
        proxy_add_header_map_value,
        proxy_replace_header_map_value,
        proxy_remove_header_map_value,
        proxy_get_buffer_bytes,
        proxy_get_buffer_status,
        proxy_set_buffer_bytes
    );
    Ok(())
}

fn http_map(map: MapType) -> Option<(Direction, bool)> {
    match map {
        MapType::HttpRequestHeaders => Some((Direction::Request, false)),
        MapType::HttpRequestTrailers => Some((Direction::Request, true)),
        MapType::HttpResponseHeaders => Some((Direction::Response, false)),
        MapType::HttpResponseTrailers => Some((Direction::Response, true)),
        // Callout maps exist only inside their callbacks.
        _ => None,
    }
}

/// A map for reading: available in its own callback and while the filter is
/// paused there; every HTTP map is readable in `proxy_on_log` (absent → NOT_FOUND).
fn read_map(host: &Host, map: MapType) -> Result<&HeaderMap, Status> {
    // A callout's response maps exist while its callback runs.
    match map {
        MapType::HttpCallResponseHeaders => {
            return host
                .http
                .response
                .as_ref()
                .map(|r| &r.headers)
                .ok_or(Status::BadArgument);
        }
        MapType::GrpcCallInitialMetadata => {
            return host
                .grpc
                .initial_metadata
                .as_ref()
                .ok_or(Status::BadArgument);
        }
        MapType::GrpcCallTrailingMetadata => {
            return host
                .grpc
                .trailing_metadata
                .as_ref()
                .ok_or(Status::BadArgument);
        }
        MapType::HttpCallResponseTrailers => {
            return host
                .http
                .response
                .as_ref()
                .map(|r| &r.trailers)
                .ok_or(Status::BadArgument);
        }
        _ => {}
    }
    let (dir, trailers) = http_map(map).ok_or(Status::BadArgument)?;
    let stream = host.stream().ok_or(Status::BadArgument)?;
    let flow = stream.flow(dir);
    if trailers {
        if stream.in_log {
            // The access log gets the response trailers, not the request's.
            return match dir {
                Direction::Response => flow.trailers().ok_or(Status::NotFound),
                Direction::Request => Err(Status::NotFound),
            };
        }
        // Once they exist (received, or created from the last body
        // callback), Envoy keeps the trailers reachable from every later
        // callback.
        return flow.trailers().ok_or(Status::BadArgument);
    }
    if stream.in_log {
        return flow.headers().ok_or(Status::NotFound);
    }
    // Headers held by a plain StopIteration stay readable from the body
    // callbacks, as Envoy keeps them until they go on.
    let held = flow.stopped == Some(Stop::HeadersOnly);
    match flow.headers.as_ref() {
        Some(map) if flow.stage == Stage::Headers || held => Ok(map),
        _ => Err(Status::BadArgument),
    }
}

/// `proxy_get_header_map_size`, which Envoy answers from the stream's
/// mutable maps: as a write would find them (so asking in the last body
/// callback creates the trailers), with the headers gone in the access-log
/// phase.
fn map_size(host: &mut Host, map: MapType) -> Result<usize, Status> {
    match http_map(map) {
        None => read_map(host, map).map(HeaderMap::byte_size),
        Some((_, false)) if host.stream().is_some_and(|s| s.in_log) => Err(Status::BadArgument),
        Some((_, false)) => read_map(host, map).map(HeaderMap::byte_size),
        Some((_, true)) => write_map(host, map).map(|m| m.byte_size()),
    }
}

/// A map for writing. Trailers asked for from the last body callback are
/// created, as Envoy's `addDecodedTrailers`/`addEncodedTrailers` do.
fn write_map(host: &mut Host, map: MapType) -> Result<&mut HeaderMap, Status> {
    let (dir, trailers) = http_map(map).ok_or(Status::BadArgument)?;
    let (_, stream) = host.stream_mut().ok_or(Status::BadArgument)?;
    let in_log = stream.in_log;
    let flow = stream.flow_mut(dir);
    let held = flow.stopped == Some(Stop::HeadersOnly);
    let writable = match (trailers, flow.stage) {
        (false, _) if in_log => None,
        (false, Stage::Headers) => flow.headers.as_mut(),
        (false, _) if held => flow.headers.as_mut(),
        (true, _) if flow.trailers.is_some() => flow.trailers.as_mut(),
        (true, Stage::Body) if flow.end_of_stream && !in_log => {
            Some(flow.trailers.get_or_insert_with(HeaderMap::new))
        }
        // Trailers that already went on: Envoy still answers OK, and the
        // write reaches nobody.
        (true, _) if flow.sent.trailers.is_some() => {
            let (late, sent) = (&mut flow.late_trailers, &flow.sent.trailers);
            Some(late.get_or_insert_with(|| sent.clone().unwrap_or_default()))
        }
        _ => None,
    };
    writable.ok_or(Status::BadArgument)
}

/// Envoy clears the route cache on request-header writes for ABI <= 0.2.1.
fn note_request_header_write(host: &mut Host, map: MapType) {
    if map == MapType::HttpRequestHeaders && host.abi <= AbiVersion::V0_2_1 {
        host.route_cache_clears += 1;
    }
}

fn map_type(value: i32) -> Option<MapType> {
    MapType::from_abi(value as u32)
}

fn proxy_get_header_map_size(mut caller: Caller<'_, Host>, map: i32, ret: i32) -> Ret {
    let Some(map) = map_type(map) else {
        return status(Status::BadArgument);
    };
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    match map_size(host, map) {
        Ok(size) => {
            let size = size as u32;
            status(if write_u32(mem, ret, size) {
                Status::Ok
            } else {
                Status::InvalidMemoryAccess
            })
        }
        Err(s) => status(s),
    }
}

fn proxy_get_header_map_pairs(
    mut caller: Caller<'_, Host>,
    map: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Ret {
    let Some(map) = map_type(map) else {
        return status(Status::BadArgument);
    };
    // An unavailable map reads as empty, as in Envoy.
    let encoded = match read_map(caller.data(), map) {
        Ok(m) if !m.is_empty() => m.encode(),
        _ => Vec::new(),
    };
    Ok(copy_out(&mut caller, &encoded, ret_ptr, ret_len)?.code())
}

/// Replaces the whole map; a malformed pairs buffer decodes to nothing and so
/// clears the map, as in Envoy.
fn proxy_set_header_map_pairs(mut caller: Caller<'_, Host>, map: i32, ptr: i32, len: i32) -> Ret {
    let Some(map) = map_type(map) else {
        return status(Status::BadArgument);
    };
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(buf) = super::slice(mem, ptr, len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let pairs: HeaderMap = decode_pairs(buf).into_iter().collect();
    match write_map(host, map) {
        Ok(m) => *m = pairs,
        Err(s) => return status(s),
    }
    note_request_header_write(host, map);
    status(Status::Ok)
}

fn proxy_get_header_map_value(
    mut caller: Caller<'_, Host>,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Ret {
    let Some(map) = map_type(map) else {
        return status(Status::BadArgument);
    };
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(key) = super::slice(mem, key_ptr, key_len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let value = match read_map(host, map) {
        Ok(m) => m.get_bytes(key).map(<[u8]>::to_vec),
        // A map the access-log phase does not have reads as a missing value.
        Err(Status::NotFound) => None,
        Err(s) => return status(s),
    };
    match value {
        Some(v) => Ok(copy_out(&mut caller, &v, ret_ptr, ret_len)?.code()),
        // ABI 0.1.0 answered OK with an empty value.
        None if host.abi == AbiVersion::V0_1_0 => {
            Ok(copy_out(&mut caller, b"", ret_ptr, ret_len)?.code())
        }
        None => status(Status::NotFound),
    }
}

/// Shared shape of add/replace/remove: edit the map straight from guest
/// memory (memory and host state are disjoint borrows).
fn edit_map(
    caller: &mut Caller<'_, Host>,
    map: i32,
    key: (i32, i32),
    value: Option<(i32, i32)>,
    edit: impl FnOnce(&mut HeaderMap, &[u8], &[u8]),
) -> Ret {
    let Some(map) = map_type(map) else {
        return status(Status::BadArgument);
    };
    let Some((mem, host)) = split(caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let key = super::slice(mem, key.0, key.1);
    let value = match value {
        Some((ptr, len)) => super::slice(mem, ptr, len),
        None => Some(&b""[..]),
    };
    let (Some(key), Some(value)) = (key, value) else {
        return status(Status::InvalidMemoryAccess);
    };
    match write_map(host, map) {
        Ok(m) => edit(m, key, value),
        Err(s) => return status(s),
    }
    note_request_header_write(host, map);
    status(Status::Ok)
}

fn proxy_add_header_map_value(
    mut caller: Caller<'_, Host>,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> Ret {
    edit_map(
        &mut caller,
        map,
        (key_ptr, key_len),
        Some((value_ptr, value_len)),
        |m, k, v| m.add(k, v),
    )
}

fn proxy_replace_header_map_value(
    mut caller: Caller<'_, Host>,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> Ret {
    edit_map(
        &mut caller,
        map,
        (key_ptr, key_len),
        Some((value_ptr, value_len)),
        |m, k, v| m.replace(k, v),
    )
}

fn proxy_remove_header_map_value(
    mut caller: Caller<'_, Host>,
    map: i32,
    key_ptr: i32,
    key_len: i32,
) -> Ret {
    edit_map(&mut caller, map, (key_ptr, key_len), None, |m, k, _| {
        m.remove(k)
    })
}

// ---- buffers ----------------------------------------------------------------

fn body_flow(stream: &HttpStreamState, dir: Direction) -> Option<&Flow> {
    let flow = stream.flow(dir);
    (flow.stage == Stage::Body).then_some(flow)
}

/// The bytes of a buffer as Envoy's `Context::getBuffer` answers now.
/// Outside their callbacks the bodies, network data, gRPC message and
/// foreign-function arguments read as empty (Envoy points its buffer at
/// nothing and answers OK); only the callout response body and the plugin
/// configuration are NOT_FOUND there (measured in Envoy 1.40).
fn buffer_bytes(host: &Host, buffer: BufferType) -> Result<&[u8], Status> {
    let body = |dir| {
        host.stream()
            .and_then(|s| body_flow(s, dir))
            .map_or(&[][..], |f| f.body.as_slice())
    };
    match buffer {
        BufferType::HttpRequestBody => Ok(body(Direction::Request)),
        BufferType::HttpResponseBody => Ok(body(Direction::Response)),
        BufferType::VmConfiguration => Ok(host.settings.vm_configuration.as_slice()),
        BufferType::GrpcCallMessage => Ok(host.grpc.message.as_deref().unwrap_or_default()),
        BufferType::DownstreamData | BufferType::UpstreamData => {
            let downstream = buffer == BufferType::DownstreamData;
            Ok(host
                .tcp
                .get(&host.context())
                .and_then(|c| {
                    let flow = if downstream {
                        &c.downstream
                    } else {
                        &c.upstream
                    };
                    (flow.available || flow.paused).then_some(flow.buffer.as_slice())
                })
                .unwrap_or_default())
        }
        BufferType::HttpCallResponseBody => host
            .http
            .response
            .as_ref()
            .map(|r| r.body.as_slice())
            .ok_or(Status::NotFound),
        BufferType::PluginConfiguration => configuring(host)
            .then_some(host.settings.configuration.as_slice())
            .ok_or(Status::NotFound),
        // Envoy answers the buffer the context last pointed at (the
        // harness delivers no foreign-function callbacks of its own).
        BufferType::ForeignFunctionArguments => match host.last_buffer.get(&host.context()) {
            Some(&last) if last != BufferType::ForeignFunctionArguments => buffer_bytes(host, last),
            _ => Ok(&[]),
        },
    }
}

/// Remembers the buffer a context's successful access pointed at.
fn note_buffer(host: &mut Host, buffer: BufferType) {
    if buffer != BufferType::ForeignFunctionArguments {
        let context = host.context();
        host.last_buffer.insert(context, buffer);
    }
}

fn proxy_get_buffer_bytes(
    mut caller: Caller<'_, Host>,
    buffer: i32,
    start: i32,
    max: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Ret {
    let Some(buffer) = BufferType::from_abi(buffer as u32) else {
        return status(Status::BadArgument);
    };
    let bytes = match buffer_bytes(caller.data(), buffer) {
        Ok(b) => b,
        Err(s) => return status(s),
    };
    let (start, max) = (start as u32 as usize, max as u32 as usize);
    let end = start.saturating_add(max).min(bytes.len());
    // An empty range is OK with pointer 0 and size 0 written (Envoy 1.40).
    let chunk = bytes.get(start..end).unwrap_or_default().to_vec();
    note_buffer(caller.data_mut(), buffer);
    Ok(copy_out(&mut caller, &chunk, ret_ptr, ret_len)?.code())
}

fn proxy_get_buffer_status(
    mut caller: Caller<'_, Host>,
    buffer: i32,
    ret_len: i32,
    ret_flags: i32,
) -> Ret {
    let Some(buffer) = BufferType::from_abi(buffer as u32) else {
        return status(Status::BadArgument);
    };
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let len = match buffer_bytes(host, buffer) {
        Ok(b) => b.len() as u32,
        Err(s) => return status(s),
    };
    note_buffer(host, buffer);
    let ok = write_u32(mem, ret_len, len) && write_u32(mem, ret_flags, 0);
    status(if ok {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}

/// Envoy's buffer edit: `start == 0` drains `size` bytes then prepends the
/// value (so `0, len` replaces everything); `start >= len` appends; anything
/// in between is BAD_ARGUMENT.
fn proxy_set_buffer_bytes(
    mut caller: Caller<'_, Host>,
    buffer: i32,
    start: i32,
    size: i32,
    value_ptr: i32,
    value_len: i32,
) -> Ret {
    let Some(buffer) = BufferType::from_abi(buffer as u32) else {
        return status(Status::BadArgument);
    };
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    if let Err(s) = buffer_bytes(host, buffer) {
        return status(s);
    }
    note_buffer(host, buffer);
    let Some(value) = super::slice(mem, value_ptr, value_len) else {
        return status(Status::InvalidMemoryAccess);
    };
    // Outside its callback a body or network buffer is Envoy's empty string
    // buffer, which refuses writes (BAD_ARGUMENT), as do the configuration
    // and callout buffers.
    let body = match buffer {
        BufferType::HttpRequestBody | BufferType::HttpResponseBody => {
            let dir = if buffer == BufferType::HttpRequestBody {
                Direction::Request
            } else {
                Direction::Response
            };
            match host.stream_mut() {
                Some((_, stream)) if stream.flow(dir).stage == Stage::Body => {
                    &mut stream.flow_mut(dir).body
                }
                _ => return status(Status::BadArgument),
            }
        }
        BufferType::DownstreamData | BufferType::UpstreamData => match host.connection_mut() {
            Some((_, connection)) => {
                let flow = connection.flow_mut(buffer == BufferType::DownstreamData);
                if !(flow.available || flow.paused) {
                    return status(Status::BadArgument);
                }
                &mut flow.buffer
            }
            None => return status(Status::BadArgument),
        },
        _ => return status(Status::BadArgument),
    };
    let (start, size) = (start as u32 as usize, size as u32 as usize);
    if start == 0 {
        body.drain(..size.min(body.len()));
        body.splice(0..0, value.iter().copied());
    } else if start >= body.len() {
        body.extend_from_slice(value);
    } else {
        return status(Status::BadArgument);
    }
    status(Status::Ok)
}
