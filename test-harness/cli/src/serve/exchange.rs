//! One request through the chain and on to the upstream, streamed: each
//! part goes to the filters as it arrives, and what they let through goes
//! on as it passes, so a filter's pause and buffering hold exactly what
//! Envoy would hold.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use proxy_wasm_harness::{Chain, HeaderMap, HttpStream, Message, Progress};
use tokio::sync::{mpsc, oneshot, watch};

use super::body::{self, Aborted, ChannelBody, Item};
use super::upstream::{self, harness_map};
use super::worker::{Live, OpError, Worker};
use crate::scenario::{RouteTo, route_by_header};

/// Headers Envoy's codec consumes rather than passing to filters (RFC 9110
/// §7.6.1 hop-by-hop headers).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Envoy's answer when the upstream cannot be reached.
const CONNECT_FAILURE: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";

type UpstreamResponse = Pin<Box<dyn Future<Output = Result<Response<Incoming>, String>>>>;

/// Serves one request: answers with the response head once the filters let
/// it through and streams the rest from a task on this worker.
pub(crate) async fn handle(
    worker: Rc<Worker>,
    request: Request<Incoming>,
) -> Result<Response<ChannelBody>, Aborted> {
    let started = Instant::now();
    let live = match worker.chain() {
        Ok(live) => live,
        Err(e) => {
            eprintln!("serve: {e}");
            return Ok(plain(500, "the filter chain could not start\n"));
        }
    };
    let (head_tx, head_rx) = oneshot::channel();
    let (client_tx, client_body) = body::channel();
    let mut driver = Driver {
        changed: worker.subscribe(),
        worker,
        live,
        id: 0,
        started,
        filter_time: Duration::ZERO,
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string),
        sent: HeaderMap::new(),
        request_body: None,
        upstream: None,
        upstream_response: None,
        upstream_headers: HeaderMap::new(),
        response_body: None,
        head: Some((head_tx, client_body)),
        client: client_tx,
        sent_to_client: 0,
        failure: None,
    };
    tokio::task::spawn_local(async move { driver.run(request).await });
    head_rx.await.map_err(|_| Aborted)
}

/// What has gone to the upstream so far.
struct Upstreaming {
    /// Feeds the upstream request's body; dropped when it ends.
    body: Option<mpsc::UnboundedSender<Item>>,
    forwarded: usize,
    trailers_sent: bool,
}

struct Driver {
    worker: Rc<Worker>,
    live: Rc<Live>,
    changed: watch::Receiver<u64>,
    /// The stream's id in the chain.
    id: u32,
    started: Instant,
    filter_time: Duration,
    method: String,
    path: String,
    /// The request headers the client sent, to log what the filters changed.
    sent: HeaderMap,
    request_body: Option<Incoming>,
    upstream: Option<Upstreaming>,
    upstream_response: Option<UpstreamResponse>,
    /// The response headers the upstream sent.
    upstream_headers: HeaderMap,
    response_body: Option<Incoming>,
    /// The response head's channel and the body to answer with, until sent.
    head: Option<(oneshot::Sender<Response<ChannelBody>>, ChannelBody)>,
    client: mpsc::UnboundedSender<Item>,
    sent_to_client: usize,
    /// A failure met while feeding the stream, acted on at the next step.
    failure: Option<OpError>,
}

/// A direction of the stream.
#[derive(Clone, Copy)]
enum Flow {
    Request,
    Response,
}

/// What the driver does next after reading the stream's state.
enum Next {
    Wait,
    Done { status: u16, acted: String },
    Failed(OpError),
}

impl Driver {
    async fn run(&mut self, request: Request<Incoming>) {
        let (parts, incoming) = request.into_parts();
        let mut headers = HeaderMap::from([
            (":method", parts.method.as_str()),
            (":path", self.path.as_str()),
            (":scheme", "http"),
        ]);
        let authority = parts
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_owned();
        headers.add(":authority", &authority);
        for (name, value) in &parts.headers {
            if name != "host" && !HOP_BY_HOP.contains(&name.as_str()) {
                headers.add(name.as_str(), value.as_bytes());
            }
        }
        self.sent = headers.clone();
        let end = incoming.is_end_stream();
        if !end {
            self.request_body = Some(incoming);
        }
        let opened = self.op(|chain| {
            let mut stream = chain.http_stream();
            stream.send_request_headers(headers, end)?;
            Ok(stream.id())
        });
        match opened {
            Ok(id) => self.id = id,
            Err(e) => return self.fail(e),
        }
        loop {
            self.changed.borrow_and_update();
            if let Some(e) = self.failure.take() {
                return self.fail(e);
            }
            match self.step() {
                Next::Wait => {}
                Next::Done { status, acted } => {
                    self.finish();
                    return self.log(status, &acted);
                }
                Next::Failed(e) => return self.fail(e),
            }
            self.wait().await;
        }
    }

    /// Calls into the chain for this stream, timing it.
    fn op<T>(
        &mut self,
        f: impl FnOnce(&mut Chain) -> proxy_wasm_harness::Result<T>,
    ) -> Result<T, OpError> {
        let start = Instant::now();
        let result = self.worker.op(&self.live, f);
        self.filter_time += start.elapsed();
        result
    }

    /// Runs `f` on this stream.
    fn on_stream<T>(
        &mut self,
        f: impl FnOnce(&mut HttpStream<'_>) -> proxy_wasm_harness::Result<T>,
    ) -> Result<T, OpError> {
        let id = self.id;
        self.op(|chain| match chain.stream(id) {
            Some(mut stream) => f(&mut stream),
            None => Err(proxy_wasm_harness::Error::invalid_state("the stream ended")),
        })
    }

    /// Reads the stream and moves on what the filters let through.
    fn step(&mut self) -> Next {
        if self.live.is_dead() {
            return Next::Failed(OpError::Trapped("the filter chain trapped".into()));
        }
        let id = self.id;
        let state = {
            let Some(mut chain) = self.live.chain_mut() else {
                return Next::Wait;
            };
            let Some(stream) = chain.stream(id) else {
                return Next::Failed(OpError::Harness("the stream is gone".into()));
            };
            let forwarded = self.upstream.as_ref().map_or(0, |u| u.forwarded);
            Snapshot::of(&stream, forwarded, self.sent_to_client)
        };
        if state.reset {
            self.abort();
            return Next::Done {
                status: 0,
                acted: "reset by a filter".into(),
            };
        }
        if state.local_responder.is_none() {
            self.forward_request(&state.upstream_request);
        } else {
            // A local reply replaces whatever the upstream was doing.
            self.upstream = None;
            self.upstream_response = None;
            self.response_body = None;
        }
        let response = &state.downstream_response;
        if let Some(headers) = &response.headers
            && let Some((tx, body)) = self.head.take()
        {
            let _ = tx.send(client_head(headers, body));
        }
        if !response.fresh.is_empty() {
            self.sent_to_client = response.len;
            let _ = self.client.send(Ok(Frame::data(response.fresh.clone())));
        }
        if response.complete {
            if let Some(trailers) = &response.trailers {
                let _ = self.client.send(Ok(Frame::trailers(header_map(trailers))));
            }
            let status = response
                .headers
                .as_ref()
                .and_then(|h| h.get(":status"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let acted = match state.local_responder {
                Some(k) => format!(
                    "local reply by `{}`",
                    self.live
                        .generation
                        .names
                        .get(k)
                        .map_or("?", String::as_str)
                ),
                None => "upstream".to_owned(),
            };
            let mut acted = acted;
            // A local reply has nothing upstream to compare with.
            if state.local_responder.is_none() {
                let changes = [
                    (
                        "request",
                        diff(&self.sent, state.upstream_request.headers.as_ref()),
                    ),
                    (
                        "response",
                        diff(&self.upstream_headers, response.headers.as_ref()),
                    ),
                ];
                for (side, change) in changes {
                    if !change.is_empty() {
                        acted.push_str(&format!(" {side}-headers[{change}]"));
                    }
                }
            }
            return Next::Done { status, acted };
        }
        Next::Wait
    }

    /// Starts the upstream request once its headers passed the filters and
    /// sends on the body bytes and trailers that passed since.
    fn forward_request(&mut self, sent: &Side) {
        let Some(headers) = &sent.headers else {
            return;
        };
        if self.upstream.is_none() {
            let generation = &self.live.generation;
            let named = headers.get(&generation.cluster_header);
            let target = match route_by_header(named, |name| generation.clusters.contains_key(name))
            {
                RouteTo::Default => Some(generation.upstream.clone()),
                RouteTo::Cluster(name) => generation.clusters.get(name).cloned(),
                RouteTo::NoCluster => None,
            };
            // A request that ended with its headers goes without a body
            // (no chunked framing), as Envoy sends it.
            let bodiless = sent.complete && sent.len == 0 && sent.trailers.is_none();
            let (tx, body) = body::channel();
            self.upstream = Some(Upstreaming {
                body: (!bodiless).then_some(tx),
                forwarded: 0,
                trailers_sent: false,
            });
            let headers = headers.clone();
            self.upstream_response = Some(match target {
                Some(target) if bodiless => Box::pin(async move {
                    upstream::send(&target, &headers, Empty::<Bytes>::new()).await
                }),
                Some(target) => {
                    Box::pin(async move { upstream::send(&target, &headers, body).await })
                }
                // Envoy's answer for a cluster it does not know.
                None => Box::pin(async { Err("unknown cluster".to_owned()) }),
            });
        }
        let Some(upstream) = self.upstream.as_mut() else {
            return;
        };
        if let Some(tx) = &upstream.body {
            if !sent.fresh.is_empty() {
                upstream.forwarded = sent.len;
                let _ = tx.send(Ok(Frame::data(sent.fresh.clone())));
            }
            if let Some(trailers) = &sent.trailers
                && !upstream.trailers_sent
            {
                upstream.trailers_sent = true;
                let _ = tx.send(Ok(Frame::trailers(header_map(trailers))));
            }
            if sent.complete {
                upstream.body = None;
            }
        }
    }

    /// Waits for the next thing that can move the stream.
    async fn wait(&mut self) {
        let result = tokio::select! {
            _ = self.changed.changed() => Ok(()),
            // A body that ended or broke (`None`): the filters see its end.
            frame = next_frame(&mut self.request_body) => {
                self.feed_body(Flow::Request, frame.and_then(Result::ok))
            }
            response = wait_response(&mut self.upstream_response) => {
                self.upstream_response = None;
                self.feed_response_head(response)
            }
            frame = next_frame(&mut self.response_body) => {
                self.feed_body(Flow::Response, frame.and_then(Result::ok))
            }
        };
        if let Err(e) = result {
            self.fail_later(e);
        }
    }

    /// Feeds one frame of a body, or its end (`None`), to the filters.
    fn feed_body(&mut self, flow: Flow, frame: Option<Frame<Bytes>>) -> Result<(), OpError> {
        let body = match flow {
            Flow::Request => &mut self.request_body,
            Flow::Response => &mut self.response_body,
        };
        let (data, trailers, end) = match frame.map(Frame::into_data) {
            None => (Some(Bytes::new()), None, true),
            Some(Ok(data)) => (
                Some(data),
                None,
                body.as_ref().is_none_or(Body::is_end_stream),
            ),
            // Trailers end the message.
            Some(Err(frame)) => {
                let trailers = frame.into_trailers().ok().map(|t| harness_map(&t));
                let end = trailers.is_some();
                (None, trailers, end)
            }
        };
        if end {
            *body = None;
        }
        self.on_stream(|s| match (flow, data, trailers) {
            (Flow::Request, Some(data), _) => s.send_request_body(&data, end),
            (Flow::Response, Some(data), _) => s.send_response_body(&data, end),
            (Flow::Request, None, Some(trailers)) => s.send_request_trailers(trailers),
            (Flow::Response, None, Some(trailers)) => s.send_response_trailers(trailers),
            // A frame kind hyper may add later: nothing to feed.
            (_, None, None) => Ok(Progress::Continued),
        })
        .map(drop)
    }

    /// The upstream's response head, or Envoy's 503 when it failed.
    fn feed_response_head(
        &mut self,
        response: Result<Response<Incoming>, String>,
    ) -> Result<(), OpError> {
        match response {
            Ok(response) => {
                let (parts, incoming) = response.into_parts();
                let mut headers = HeaderMap::from([(":status", parts.status.as_str())]);
                for (name, value) in &parts.headers {
                    if !HOP_BY_HOP.contains(&name.as_str()) {
                        headers.add(name.as_str(), value.as_bytes());
                    }
                }
                self.upstream_headers = headers.clone();
                let end = incoming.is_end_stream();
                if !end {
                    self.response_body = Some(incoming);
                }
                self.on_stream(|s| s.send_response_headers(headers, end))
                    .map(drop)
            }
            Err(e) => {
                let body = if e == "unknown cluster" {
                    String::new()
                } else {
                    eprintln!("serve: upstream: {e}");
                    CONNECT_FAILURE.to_owned()
                };
                let mut headers = HeaderMap::from([(":status", "503")]);
                if !body.is_empty() {
                    headers.add("content-length", body.len().to_string());
                    headers.add("content-type", "text/plain");
                }
                self.upstream_headers = headers.clone();
                self.on_stream(|s| {
                    s.send_response_headers(headers, body.is_empty())?;
                    if !body.is_empty() {
                        s.send_response_body(body.as_bytes(), true)?;
                    }
                    Ok(())
                })
            }
        }
    }

    /// Records a failure to act on at the next step (after the wait).
    fn fail_later(&mut self, error: OpError) {
        if let OpError::Harness(message) = &error {
            eprintln!("serve: {} {}: {message}", self.method, self.path);
        }
        self.failure = Some(error);
    }

    /// The filters trapped or the harness failed: 500 when the client has
    /// no response head yet, else the stream is cut.
    fn fail(&mut self, error: OpError) {
        let reason = match &error {
            OpError::Trapped(m) | OpError::Harness(m) => m.lines().next().unwrap_or_default(),
        };
        if let Some((tx, _)) = self.head.take() {
            let _ = tx.send(plain(500, "the filter chain failed\n"));
            self.log(500, &format!("filter failure: {reason}"));
        } else {
            self.abort();
            self.log(
                0,
                &format!("filter failure after the response head: {reason}"),
            );
        }
    }

    /// Cuts the client's response.
    fn abort(&mut self) {
        self.head = None;
        let _ = self.client.send(Err(Aborted));
        self.upstream = None;
        self.upstream_response = None;
    }

    /// Ends the stream in the chain (`on_log`, `on_done`, `on_delete`).
    fn finish(&mut self) {
        let id = self.id;
        let _ = self.op(|chain| match chain.stream(id) {
            Some(stream) => stream.finish().map(drop),
            None => Ok(()),
        });
    }

    fn log(&self, status: u16, acted: &str) {
        println!(
            "{} {} {} {acted} filters={:.3}ms total={:.3}ms",
            self.method,
            self.path,
            status,
            self.filter_time.as_secs_f64() * 1e3,
            self.started.elapsed().as_secs_f64() * 1e3,
        );
    }
}

/// What the stream looks like now.
struct Snapshot {
    upstream_request: Side,
    downstream_response: Side,
    local_responder: Option<usize>,
    reset: bool,
}

/// What has left the chain in one direction: the body bytes not yet sent
/// on, not all of them, so a long body is copied once.
struct Side {
    headers: Option<HeaderMap>,
    fresh: Bytes,
    /// Body bytes out so far.
    len: usize,
    trailers: Option<HeaderMap>,
    complete: bool,
}

impl Side {
    fn of(message: &Message, sent: usize) -> Self {
        Self {
            headers: message.headers.clone(),
            fresh: message
                .body
                .get(sent..)
                .map_or_else(Bytes::new, Bytes::copy_from_slice),
            len: message.body.len(),
            trailers: message.trailers.clone(),
            complete: message.complete,
        }
    }
}

impl Snapshot {
    fn of(stream: &HttpStream<'_>, forwarded: usize, sent_to_client: usize) -> Self {
        Self {
            upstream_request: Side::of(stream.upstream_request(), forwarded),
            downstream_response: Side::of(stream.downstream_response(), sent_to_client),
            local_responder: stream.local_responder(),
            reset: stream.is_reset(),
        }
    }
}

async fn next_frame(body: &mut Option<Incoming>) -> Option<Result<Frame<Bytes>, hyper::Error>> {
    match body {
        Some(body) => std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await,
        None => std::future::pending().await,
    }
}

async fn wait_response(
    pending: &mut Option<UpstreamResponse>,
) -> Result<Response<Incoming>, String> {
    match pending {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// The response head for the client, from the headers the filters let
/// through.
fn client_head(headers: &HeaderMap, body: ChannelBody) -> Response<ChannelBody> {
    let status = headers
        .get(":status")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(500);
    let mut response = Response::builder().status(status);
    for (name, value) in headers.iter() {
        if !name.starts_with(b":") {
            response = response.header(name, value);
        }
    }
    response
        .body(body)
        .unwrap_or_else(|_| plain(500, "the filters produced an invalid response head\n"))
}

/// A complete plain-text response.
fn plain(status: u16, text: &'static str) -> Response<ChannelBody> {
    let (tx, body) = body::channel();
    let _ = tx.send(Ok(Frame::data(Bytes::from_static(text.as_bytes()))));
    let mut response = Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

fn header_map(headers: &HeaderMap) -> hyper::HeaderMap {
    let mut map = hyper::HeaderMap::new();
    for (name, value) in headers.iter() {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name),
            hyper::header::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// What the filters changed between two header sets: `+added -removed
/// ~changed` names (pseudo-headers included: a rewritten `:path` shows).
fn diff(before: &HeaderMap, after: Option<&HeaderMap>) -> String {
    let Some(after) = after else {
        return String::new();
    };
    let names = |map: &HeaderMap| -> Vec<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for (name, _) in map.iter() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_vec());
            }
        }
        names
    };
    let mut changes = Vec::new();
    for name in names(after) {
        let shown = String::from_utf8_lossy(&name).into_owned();
        if !before.contains(&shown) {
            changes.push(format!("+{shown}"));
        } else if before.get_all(&shown) != after.get_all(&shown) {
            changes.push(format!("~{shown}"));
        }
    }
    for name in names(before) {
        let shown = String::from_utf8_lossy(&name).into_owned();
        if !after.contains(&shown) {
            changes.push(format!("-{shown}"));
        }
    }
    changes.join(" ")
}
