//! A blocking HTTP/1.1 GET for the xtasks that talk to a local Envoy (its
//! admin endpoint, its listeners): hyper's client on a current-thread tokio
//! runtime, one connection per request.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The status and body of `GET path` on `127.0.0.1:port`, with `headers`.
pub(crate) fn get(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), String> {
    get_with_headers(port, path, headers).map(|(status, _, body)| (status, body))
}

/// [`get`], with the response's headers (names lower-case, values as text).
pub(crate) fn get_with_headers(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, fetch(port, path, headers))
            .await
            .map_err(|_| format!("127.0.0.1:{port}{path}: no answer in {TIMEOUT:?}"))?
    })
}

/// Status, headers and body.
pub(crate) type Response = (u16, Vec<(String, String)>, Vec<u8>);

async fn fetch(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    let at = format!("127.0.0.1:{port}{path}");
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    tokio::spawn(connection);
    let mut request = Request::get(path).header("host", format!("127.0.0.1:{port}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{at}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    let status = response.status().as_u16();
    let head = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{at}: {e}"))?
        .to_bytes();
    Ok((status, head, body.to_vec()))
}
