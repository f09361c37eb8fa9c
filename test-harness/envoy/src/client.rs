//! The HTTP/1.1 GET our tools send to a local Envoy (its admin endpoint,
//! its listeners): hyper's client, one connection per request, with a
//! deadline. Async, and blocking through [`block_on`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An answer: status, headers (names lower-case, values as text), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `addr` with `headers`.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    tokio::time::timeout(TIMEOUT, fetch(addr, path, headers))
        .await
        .map_err(|_| format!("{addr}{path}: no answer in {TIMEOUT:?}"))?
}

/// Runs `future` to completion on a fresh current-thread runtime: the
/// blocking form of this crate's async calls, for callers outside tokio.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    Ok(runtime.block_on(future))
}

async fn fetch(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    let at = format!("{addr}{path}");
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    tokio::spawn(connection);
    let mut request = Request::get(path).header("host", addr.to_string());
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
    let headers = response
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
        .to_bytes()
        .to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}
