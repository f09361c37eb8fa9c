//! Sending a request the filters let through (or a plugin's callout) to a
//! real server, over a fresh HTTP/1.1 connection.

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proxy_wasm_harness::HeaderMap;

use super::config::Target;

/// Sends `headers` (pseudo-headers included, as the filters see them) and
/// `body` to `target`: `:authority` becomes `host`, the target's base path
/// prefixes `:path`.
pub(crate) async fn send<B>(
    target: &Target,
    headers: &HeaderMap,
    body: B,
) -> Result<Response<Incoming>, String>
where
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Request::builder()
        .method(headers.get(":method").unwrap_or("GET"))
        .uri(format!(
            "{}{}",
            target.base_path,
            headers.get(":path").unwrap_or("/")
        ))
        .header("host", headers.get(":authority").unwrap_or_default());
    for (name, value) in headers.iter() {
        if !name.starts_with(b":") {
            builder = builder.header(name, value);
        }
    }
    let request = builder.body(body).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(&target.address)
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.address))?;
    // Small writes go out at once, as Envoy sets TCP_NODELAY.
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_local(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// Headers as the harness takes them.
pub(crate) fn harness_map(headers: &hyper::HeaderMap) -> HeaderMap {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
        .collect()
}
