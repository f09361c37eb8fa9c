//! Proxy-wasm glue the filters share (built for wasm32 only): reading a
//! header map, writing back [`Change`]s and setting filter state.
//!
//! The SDK's write calls panic when the host answers anything but `Ok`, and
//! a panic kills the VM (every stream on it). These wrappers call the same
//! host functions directly and return the status instead, so a refused write
//! is counted and logged and the request goes on.
#![allow(unsafe_code)]

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType};

use crate::headers::{Change, HeaderMap};
use crate::request::Host;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// A host status other than `Ok` (the raw number, as the ABI defines it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

fn status(code: u32) -> Result<(), HostStatus> {
    if code == 0 {
        Ok(())
    } else {
        Err(HostStatus(code))
    }
}

/// Reads a whole header map in one host call, keeping the host's buffer as
/// the map's storage. A map the host does not have (trailers not sent,
/// say) reads as empty; the SDK's `get_map_bytes` would panic instead.
pub fn read_map(map: MapType) -> HeaderMap {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated in our
    // memory through `proxy_on_memory_allocate`, the SDK's allocator (a
    // leaked boxed slice of exactly that size): ownership passes to us, as
    // the SDK's own getters take it.
    let bytes = unsafe {
        if proxy_get_header_map_pairs(map as u32, &mut data, &mut size) != 0 || data.is_null() {
            return HeaderMap::default();
        }
        Vec::from_raw_parts(data, size, size)
    };
    HeaderMap::from_serialized(bytes)
}

/// Reads up to `max_size` bytes of a buffer (a body) from its start. A
/// buffer the host does not have, or refuses to show (a capability
/// restriction), reads as empty; the SDK's `get_buffer` would panic on
/// anything but `Ok` and `NotFound`.
pub fn read_buffer(buffer: BufferType, max_size: usize) -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `read_map`: the host hands us `size` bytes it
    // allocated through the SDK's allocator.
    unsafe {
        if proxy_get_buffer_bytes(buffer as u32, 0, max_size, &mut data, &mut size) != 0
            || data.is_null()
        {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    }
}

/// Replaces the first `size` bytes of a buffer (a body) with `value`.
///
/// # Errors
///
/// The host's status when it refuses.
pub fn write_buffer(buffer: BufferType, size: usize, value: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: the value's pointer and length come from a live slice the
    // host only reads.
    status(unsafe { proxy_set_buffer_bytes(buffer as u32, 0, size, value.as_ptr(), value.len()) })
}

/// Applies `changes` to the host's map; returns how many writes the host
/// refused.
pub fn write_changes(map: MapType, changes: &[Change]) -> usize {
    let map = map as u32;
    let mut refused = 0;
    for change in changes {
        // SAFETY: every pointer/length pair comes from a live slice that
        // outlives the call; the host only reads them.
        let result = status(unsafe {
            match change {
                Change::Remove(name) => {
                    proxy_remove_header_map_value(map, name.as_ptr(), name.len())
                }
                Change::Replace(name, value) => proxy_replace_header_map_value(
                    map,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                ),
                Change::Add(name, value) => proxy_add_header_map_value(
                    map,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                ),
            }
        });
        if result.is_err() {
            refused += 1;
        }
    }
    refused
}

/// Calls a foreign function the host registers (Envoy's
/// `verify_signature`, say): its results, empty when it returned none. The
/// SDK's `call_foreign_function` panics on a status it does not list (a
/// host answering UNIMPLEMENTED), which would kill the VM.
///
/// # Errors
///
/// The host's status when it is not OK (NOT_FOUND: no such function).
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, HostStatus> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: live slices read by the host during the call; the results,
    // when any, are `size` bytes the host allocated in our memory through
    // the SDK's allocator, which pass to us as in `read_map`.
    unsafe {
        status(proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        ))?;
        if data.is_null() {
            return Ok(Vec::new());
        }
        Ok(Vec::from_raw_parts(data, size, size))
    }
}

/// Sets a one-segment property (Envoy stores it as filter state
/// `wasm.<name>`, readable by later filters and access logs).
pub fn set_property(name: &str, value: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: as above, live slices read by the host during the call.
    status(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Sends a local reply. Unlike the SDK's `send_http_response`, header values
/// may be any bytes, and `details` (Envoy's response-code details, shown by
/// `%RESPONSE_CODE_DETAILS%` in access logs) is passed on.
pub fn send_local_reply(
    status: u16,
    details: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<(), HostStatus> {
    let pairs = serialize_pairs(headers);
    // SAFETY: as above, live slices read by the host during the call.
    self::status(unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            pairs.as_ptr(),
            pairs.len(),
            -1,
        )
    })
}

/// The ABI's map encoding: count, (name size, value size) per pair, then
/// each name and value followed by a NUL.
fn serialize_pairs(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Sets the `log` crate's level to the host's (Envoy's `wasm` logger), read
/// once, so a line Envoy would drop is neither formatted nor sent: every
/// `proxy_log` is a crossing into the host, even for a line it discards.
/// Called from `on_configure`; a level changed at runtime (Envoy's admin
/// `/logging`) takes effect when the plugin is next configured. A host
/// that does not answer leaves every level on.
pub fn follow_host_log_level() {
    let mut level = 0u32;
    // SAFETY: the host writes one u32 through the pointer, which is valid.
    let status = unsafe { proxy_get_log_level(&mut level) };
    let filter = match (status, level) {
        (0, 0) => log::LevelFilter::Trace,
        (0, 1) => log::LevelFilter::Debug,
        (0, 2) => log::LevelFilter::Info,
        (0, 3) => log::LevelFilter::Warn,
        // error and critical
        (0, _) => log::LevelFilter::Error,
        _ => log::LevelFilter::Trace,
    };
    log::set_max_level(filter);
}

/// Defines a counter (Envoy shows it as `wasmcustom.<name>`); `None` when
/// the host refuses it, and its increments are then skipped.
pub fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

/// Adds one to `metric`.
pub fn count(metric: Option<u32>) {
    add(metric, 1);
}

/// Adds `n` to `metric` (nothing for 0).
pub fn add(metric: Option<u32>, n: usize) {
    if let (Some(id), Ok(n)) = (metric, i64::try_from(n))
        && n > 0
    {
        let _ = hostcalls::increment_metric(id, n);
    }
}

/// The proxy as a [`Host`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyHost;

impl Host for ProxyHost {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}
