//! Properties (`proxy_get_property`) with Envoy's encodings: strings raw,
//! integers as 8-byte little-endian, maps in the pairs encoding, paths as
//! segments joined by NUL.

use std::collections::HashMap;

use crate::headers::{HeaderMap, encode_pairs};
use crate::settings::PluginSettings;
use crate::stream_state::{Flow, HttpStreamState, Stage, Stop};

/// Encoders for property values, as Envoy serialises them.
pub mod value {
    use crate::headers::encode_pairs;

    /// An int64 property (`source.port`, `response.code`, ...): 8 bytes LE.
    pub fn int(v: i64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    /// A bool property: one byte.
    pub fn bool(v: bool) -> Vec<u8> {
        vec![u8::from(v)]
    }

    /// A string map property (`xds.route_metadata` filter fields, ...), in
    /// the pairs encoding.
    pub fn map<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<u8> {
        encode_pairs(pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }
}

/// A dotted path (`xds.route_name`) as the NUL-joined form the ABI uses.
pub(crate) fn path_from_dotted(path: &str) -> Vec<u8> {
    path.replace('.', "\0").into_bytes()
}

/// Properties every stream sees unless the test overrides them, named in
/// the README: a loopback downstream, listener and upstream.
pub(crate) fn defaults() -> HashMap<Vec<u8>, Vec<u8>> {
    [
        ("source.address", b"127.0.0.1:40000".to_vec()),
        ("source.port", value::int(40000)),
        ("destination.address", b"127.0.0.1:10000".to_vec()),
        ("destination.port", value::int(10000)),
        ("request.protocol", b"HTTP/1.1".to_vec()),
        ("connection.mtls", value::bool(false)),
        ("connection.requested_server_name", Vec::new()),
        ("xds.listener_direction", value::int(0)),
        ("xds.cluster_name", b"backend".to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (path_from_dotted(k), v))
    .collect()
}

/// Where the stream's request went, once it left the filter: Envoy's
/// `upstream.address` / `upstream.port` (defaults, override them).
const UPSTREAM_ADDRESS: &[u8] = b"127.0.0.1:8080";
const UPSTREAM_PORT: i64 = 8080;

/// Top-level names that describe a stream: Envoy answers NOT_FOUND for them
/// on the root context, which has no stream.
const STREAM_SCOPED: &[&[u8]] = &[
    b"request",
    b"response",
    b"source",
    b"destination",
    b"connection",
    b"upstream",
];

/// `xds` names that come from the stream's route, cluster and listener.
const STREAM_SCOPED_XDS: &[&[u8]] = &[
    b"route_name",
    b"route_metadata",
    b"virtual_host_name",
    b"virtual_host_metadata",
    b"cluster_name",
    b"cluster_metadata",
    b"upstream_host_metadata",
    b"listener_direction",
];

/// Why a property has no value, as `proxy_get_property` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    NotFound,
    /// A value Envoy cannot serialise (the bare `request` map, ...).
    SerializationFailure,
}

/// Resolves a property for a context (`stream` is `None` on the root
/// context) at virtual time `now_ns`, with Envoy 1.40's rules as the ABI
/// probe measured them: a property the filter set (by its single-segment
/// name), then what the test set, then what Envoy derives from the stream.
pub(crate) fn lookup(
    path: &[u8],
    stream: Option<&HttpStreamState>,
    set_by_test: &HashMap<Vec<u8>, Vec<u8>>,
    plugin: &PluginSettings,
    now_ns: u64,
) -> Result<Vec<u8>, Missing> {
    let segments: Vec<&[u8]> = path.split(|b| *b == 0).collect();
    let stream_scoped = match segments.as_slice() {
        [b"xds", name, ..] => STREAM_SCOPED_XDS.contains(name),
        [first, ..] => STREAM_SCOPED.contains(first),
        [] => false,
    };
    if stream.is_none() && stream_scoped {
        return Err(Missing::NotFound);
    }
    // Envoy stores `proxy_set_property` values as filter state under the
    // path and reads filter state by the path's first segment only.
    if let [single] = segments.as_slice()
        && let Some(v) = stream
            .and_then(|s| {
                s.filter_state
                    .read(|state| state.properties.get(*single).cloned())
            })
            .flatten()
    {
        return Ok(v);
    }
    if let Some(v) = set_by_test.get(path) {
        return Ok(v.clone());
    }
    let found = match segments.as_slice() {
        [b"plugin_name"] => Some(plugin.name.as_bytes().to_vec()),
        [b"plugin_root_id"] => Some(plugin.root_id.as_bytes().to_vec()),
        [b"plugin_vm_id"] => Some(plugin.vm_id.as_bytes().to_vec()),
        [b"request"] | [b"response"] => return Err(Missing::SerializationFailure),
        [b"request", rest @ ..] => stream.and_then(|s| request_property(s, rest, now_ns)),
        [b"response", rest @ ..] => stream.and_then(|s| response_property(s, rest)),
        [b"connection", b"id"] => stream.map(|s| value::int(i64::from(s.connection_id))),
        [b"upstream", rest @ ..] => stream
            .filter(|s| s.request.sent.headers.is_some())
            .and_then(|_| match rest {
                [b"address"] => Some(UPSTREAM_ADDRESS.to_vec()),
                [b"port"] => Some(value::int(UPSTREAM_PORT)),
                _ => None,
            }),
        _ => None,
    };
    found.ok_or(Missing::NotFound)
}

/// A direction's headers as Envoy's context sees them: during their
/// callback (and while paused there) and in the access-log phase; elsewhere
/// Envoy has let go of them.
fn visible_headers<'a>(stream: &HttpStreamState, flow: &'a Flow) -> Option<&'a HeaderMap> {
    if stream.in_log {
        flow.headers()
    } else if flow.stage == Stage::Headers || flow.stopped == Some(Stop::HeadersOnly) {
        flow.headers.as_ref()
    } else {
        None
    }
}

fn request_property(stream: &HttpStreamState, rest: &[&[u8]], now_ns: u64) -> Option<Vec<u8>> {
    let headers = visible_headers(stream, &stream.request);
    let received = stream.request.received as i64;
    match rest {
        [b"time"] => return Some(value::int(stream.start_time_ns as i64)),
        // Only once the stream is complete, for the access log.
        [b"duration"] => {
            return stream
                .in_log
                .then(|| value::int(now_ns.saturating_sub(stream.start_time_ns) as i64));
        }
        [b"size"] => {
            let declared = headers
                .and_then(|h| h.get("content-length"))
                .and_then(|v| v.trim().parse::<i64>().ok());
            return Some(value::int(declared.unwrap_or(received)));
        }
        [b"total_size"] => {
            let header_bytes = headers.map_or(0, HeaderMap::byte_size) as i64;
            return Some(value::int(received + header_bytes));
        }
        [b"headers"] => return Some(map_value(headers)),
        _ => {}
    }
    let headers = headers?;
    let header = |name: &str| headers.get_bytes(name.as_bytes()).map(<[u8]>::to_vec);
    let path = headers.get_bytes(b":path").unwrap_or_default();
    let (url_path, query) = match path.iter().position(|b| *b == b'?') {
        Some(at) => (&path[..at], &path[at + 1..]),
        None => (path, &b""[..]),
    };
    match rest {
        [b"path"] => header(":path"),
        [b"url_path"] => Some(url_path.to_vec()),
        [b"query"] => Some(query.to_vec()),
        [b"host"] => header(":authority"),
        [b"scheme"] => header(":scheme"),
        [b"method"] => header(":method"),
        [b"referer"] => header("referer"),
        [b"useragent"] => header("user-agent"),
        [b"id"] => header("x-request-id"),
        [b"headers", name] => joined(headers, name),
        _ => None,
    }
}

fn response_property(stream: &HttpStreamState, rest: &[&[u8]]) -> Option<Vec<u8>> {
    let flow = &stream.response;
    // The status Envoy recorded, once response headers arrived.
    let code = flow
        .headers()
        .and_then(|h| h.get(":status"))
        .and_then(|s| s.parse::<i64>().ok());
    let headers = visible_headers(stream, flow);
    let sent = flow.sent.body.len() as i64;
    match rest {
        [b"code"] => code.map(value::int),
        [b"code_details"] => match &stream.local_response {
            Some(reply) => Some(reply.details.as_bytes().to_vec()),
            None => code.map(|_| b"via_upstream".to_vec()),
        },
        [b"flags"] => Some(value::int(0)),
        [b"grpc_status"] => {
            let code = code?;
            let from = |map: Option<&HeaderMap>| {
                map.and_then(|m| m.get("grpc-status"))
                    .and_then(|v| v.trim().parse::<i64>().ok())
            };
            let status = from(flow.trailers())
                .or_else(|| from(flow.headers()))
                .unwrap_or_else(|| {
                    i64::from(crate::stream_state::http_to_grpc_status(code as u32))
                });
            Some(value::int(status))
        }
        [b"size"] => Some(value::int(sent)),
        [b"total_size"] => {
            let header_bytes = headers.map_or(0, HeaderMap::byte_size)
                + flow.trailers().map_or(0, HeaderMap::byte_size);
            Some(value::int(sent + header_bytes as i64))
        }
        [b"headers"] => Some(map_value(headers)),
        [b"headers", name] => headers.and_then(|h| joined(h, name)),
        [b"trailers"] => Some(map_value(flow.trailers())),
        [b"trailers", name] => flow.trailers().and_then(|h| joined(h, name)),
        _ => None,
    }
}

/// A header's values joined with `,`, as Envoy's CEL header map reads them.
fn joined(headers: &HeaderMap, name: &[u8]) -> Option<Vec<u8>> {
    let name = String::from_utf8_lossy(name);
    let values = headers.get_all(&name);
    (!values.is_empty()).then(|| values.join(&b","[..]))
}

/// A header map property in the pairs encoding, repeated names joined with
/// `,` as Envoy's CEL map serialises them (Envoy's order is a hash order;
/// the harness keeps the map's); an unavailable map is empty.
fn map_value(headers: Option<&HeaderMap>) -> Vec<u8> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (k, v) in headers.into_iter().flat_map(HeaderMap::iter) {
        match pairs.iter_mut().find(|(name, _)| name == k) {
            Some((_, value)) => {
                value.push(b',');
                value.extend_from_slice(v);
            }
            None => pairs.push((k.to_vec(), v.to_vec())),
        }
    }
    encode_pairs(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
}
