//! Properties (`proxy_get_property`) with Envoy's encodings: strings raw,
//! integers as 8-byte little-endian, maps in the pairs encoding, paths as
//! segments joined by NUL.

use std::collections::HashMap;

use crate::headers::{HeaderMap, encode_pairs};
use crate::plugin::PluginSettings;
use crate::stream::HttpStreamState;

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

/// Properties every plugin sees unless the test overrides them, named in the
/// README: a loopback downstream and listener.
pub(crate) fn defaults() -> HashMap<Vec<u8>, Vec<u8>> {
    [
        ("source.address", b"127.0.0.1:40000".to_vec()),
        ("source.port", value::int(40000)),
        ("destination.address", b"127.0.0.1:10000".to_vec()),
        ("destination.port", value::int(10000)),
        ("request.protocol", b"HTTP/1.1".to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (path_from_dotted(k), v))
    .collect()
}

/// Resolves a property for a context: first what the filter set on its stream,
/// then what the test set, then values Envoy derives from the stream.
pub(crate) fn lookup(
    path: &[u8],
    stream: Option<&HttpStreamState>,
    set_by_test: &HashMap<Vec<u8>, Vec<u8>>,
    plugin: &PluginSettings,
) -> Option<Vec<u8>> {
    if let Some(v) = stream
        .and_then(|s| {
            s.filter_state
                .read(|state| state.properties.get(path).cloned())
        })
        .flatten()
    {
        return Some(v);
    }
    if let Some(v) = set_by_test.get(path) {
        return Some(v.clone());
    }
    let segments: Vec<&[u8]> = path.split(|b| *b == 0).collect();
    match segments.as_slice() {
        [b"plugin_name"] => Some(plugin.name.as_bytes().to_vec()),
        [b"plugin_root_id"] => Some(plugin.root_id.as_bytes().to_vec()),
        [b"plugin_vm_id"] => Some(plugin.vm_id.as_bytes().to_vec()),
        [b"request", rest @ ..] => {
            let stream = stream?;
            request_property(stream, rest)
        }
        [b"response", rest @ ..] => {
            let stream = stream?;
            response_property(stream, rest)
        }
        _ => None,
    }
}

fn request_property(stream: &HttpStreamState, rest: &[&[u8]]) -> Option<Vec<u8>> {
    let headers = stream.request.headers()?;
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
        [b"time"] => Some(value::int(stream.start_time_ns as i64)),
        [b"headers"] => Some(map_value(headers)),
        [b"headers", name] => headers.get_bytes(name).map(<[u8]>::to_vec),
        _ => None,
    }
}

fn response_property(stream: &HttpStreamState, rest: &[&[u8]]) -> Option<Vec<u8>> {
    let headers = stream.response.headers()?;
    match rest {
        [b"code"] => {
            let code: i64 = headers.get(":status")?.parse().ok()?;
            Some(value::int(code))
        }
        [b"headers"] => Some(map_value(headers)),
        [b"headers", name] => headers.get_bytes(name).map(<[u8]>::to_vec),
        [b"code_details"] => stream
            .local_response
            .as_ref()
            .map(|r| r.details.as_bytes().to_vec()),
        _ => None,
    }
}

fn map_value(headers: &HeaderMap) -> Vec<u8> {
    encode_pairs(headers.iter())
}
