//! Runs a scenario in a real Envoy: a bootstrap with a listener on
//! 127.0.0.1 → the scenario's wasm filters → router → a backend cluster that
//! is a hyper server here, recording what it received and answering with the
//! step's response; every callout upstream is a cluster pointing at another
//! hyper server with its canned answer or failure.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use harness_envoy::{
    Bootstrap, Cluster, Envoy, HttpFilter, Listener, Options, Route, StartError, WasmFilter,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_wasm_harness::LogLevel;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::chunked::{self, OutBody};
use crate::harness_runner::{ROUTE_NAME, VIRTUAL_HOST_NAME};
use crate::outcome::{CallMade, ClientResult, Headers, LogLine, Outcome, Received, StepOutcome};
use crate::scenario::{
    BACKEND, Failure, HeaderLines, Loaded, Protocol, ResponseSpec, Scenario, Step, UpstreamSpec,
    lines, route_metadata_entry, text,
};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The scenario's listener.
const LISTENER: &str = "scenario";
/// Each record as `level|logger|thread|message`, read by [`wasm_lines`].
const LOG_FORMAT: &str = "%l|%n|%t|%v";

/// What the Envoy run produced, with Envoy's whole log for the report.
#[derive(Debug)]
pub(crate) struct EnvoyRun {
    pub(crate) outcome: Outcome,
    pub(crate) log: String,
}

pub(crate) fn run(loaded: &Loaded, envoy: &Path, work: &Path) -> Result<EnvoyRun, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run_async(loaded, envoy, work))
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn run_async(loaded: &Loaded, envoy: &Path, work: &Path) -> Result<EnvoyRun, String> {
    let dir = crate::scenario::work_dir(work, loaded);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let received: Shared<Vec<Received>> = Arc::default();
    let response: Shared<ResponseSpec> = Arc::default();
    let calls: Shared<Vec<CallMade>> = Arc::default();
    let mut clusters = Vec::new();
    for name in std::iter::once(BACKEND).chain(loaded.scenario.clusters.iter().map(String::as_str))
    {
        let addr = start_backend(name.to_owned(), received.clone(), response.clone()).await?;
        clusters.push(Cluster::new(name, addr));
    }
    let mut answers: Vec<(String, Shared<UpstreamSpec>)> = Vec::new();
    for (name, spec) in &loaded.scenario.upstreams {
        let answer = Arc::new(Mutex::new(spec.clone()));
        if spec.grpc.is_some() {
            let addr = start_grpc_upstream(answer.clone()).await?;
            answers.push((name.clone(), answer));
            clusters.push(Cluster::new(name, addr).http2());
        } else {
            let addr = start_upstream(name.clone(), answer.clone(), calls.clone()).await?;
            answers.push((name.clone(), answer));
            clusters.push(Cluster::new(name, addr));
        }
    }
    let bootstrap = bootstrap(loaded, clusters)?;
    let options = Options {
        concurrency: 1,
        log_level: "info",
        log_format: Some(LOG_FORMAT),
    };
    let mut envoy_process = Envoy::start(envoy, &dir, "envoy", &bootstrap, &options)?;
    let admin = match envoy_process.ready(READY_TIMEOUT).await {
        Ok(admin) => admin,
        Err(StartError::Exited { log }) if rejected_by_wasm(&log) => {
            return Ok(EnvoyRun {
                outcome: Outcome::Rejected {
                    logs: wasm_lines(&log).into_iter().map(|(_, l)| l).collect(),
                },
                log,
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    let listener = envoy_process.listener(LISTENER).await?;
    let mut steps = Vec::new();
    // The thread whose VM served the requests: Envoy starts a VM per worker
    // and more on the main thread, each logging its start-up; the harness's
    // one VM is the worker's.
    let mut worker: Option<String> = None;
    let startup_log = envoy_process.log();
    let mut log_offset = startup_log.len();
    for (i, step) in loaded.scenario.steps.iter().enumerate() {
        *lock(&response) = step.response.clone();
        for (name, spec) in &step.upstreams {
            if let Some((_, answer)) = answers.iter().find(|(n, _)| n == name) {
                *lock(answer) = spec.clone();
            }
        }
        let before_received = lock(&received).len();
        let before_calls = lock(&calls).len();
        tokio::time::sleep(Duration::from_millis(step.wait_ms)).await;
        let client = send(listener, step).await;
        wait_completed(admin, i + 1).await?;
        let backend = lock(&received).get(before_received).cloned();
        let step_calls = lock(&calls)[before_calls..].to_vec();
        let log = envoy_process.log();
        let step_log = log.get(log_offset..).unwrap_or_default();
        let vm_failures = vm_failures(step_log);
        let logs = wasm_lines(step_log);
        if worker.is_none() {
            worker = logs.first().map(|(thread, _)| thread.clone());
        }
        let logs = logs.into_iter().map(|(_, line)| line).collect();
        log_offset = log.len();
        steps.push(StepOutcome {
            backend,
            client,
            logs,
            calls: step_calls,
            stale_content_length: Vec::new(),
            costs: Vec::new(),
            vm_failures,
        });
    }
    let log_path = envoy_process.log_path().to_path_buf();
    drop(envoy_process);
    let startup_lines = wasm_lines(&startup_log);
    let startup = startup_lines
        .iter()
        .filter(|(thread, _)| worker.as_ref().is_none_or(|w| w == thread))
        .map(|(_, line)| line.clone())
        .collect();
    Ok(EnvoyRun {
        outcome: Outcome::Steps { startup, steps },
        log: std::fs::read_to_string(log_path).unwrap_or_default(),
    })
}

/// The route's `filter_metadata` from the scenario's route metadata
/// properties: `{namespace: {key: value}}`.
fn route_metadata(scenario: &Scenario) -> Value {
    let mut namespaces = serde_json::Map::new();
    for (property, value) in &scenario.properties {
        if let Some((namespace, key)) = route_metadata_entry(property) {
            let entry = namespaces
                .entry(namespace.to_owned())
                .or_insert_with(|| json!({}));
            if let Some(map) = entry.as_object_mut() {
                map.insert(key.to_owned(), json!(value));
            }
        }
    }
    Value::Object(namespaces)
}

/// The scenario's bootstrap: its filters in a listener on a free port,
/// routes as a routing filter's users deploy them, `clusters` (the
/// backend's and the callout upstreams').
pub(crate) fn bootstrap(loaded: &Loaded, clusters: Vec<Cluster>) -> Result<Bootstrap, String> {
    let scenario = &loaded.scenario;
    let property = |name: &str, default: &str| {
        scenario
            .properties
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let mut listener = Listener::new(LISTENER)
        .route_config("scenario")
        .virtual_host(property("xds.virtual_host_name", VIRTUAL_HOST_NAME));
    for (i, (filter, module)) in scenario.filters.iter().zip(&loaded.modules).enumerate() {
        let module = module
            .canonicalize()
            .map_err(|e| format!("{}: {e}", module.display()))?;
        let allowed = filter.allowed_capabilities(&module)?;
        let mut wasm = WasmFilter::new(filter.plugin_name(i), module)
            .filter_name("envoy.filters.http.wasm")
            .configuration(text(filter.configuration.as_ref()))
            .vm_configuration(text(filter.vm_config.as_ref()))
            .allow_on_headers_stop_iteration(filter.allow_on_headers_stop_iteration)
            .allowed_capabilities(allowed);
        if filter.failure_policy.is_some() {
            wasm = wasm.failure_policy(filter.failure_policy().name());
        }
        if let Some(root_id) = &filter.root_id {
            wasm = wasm.root_id(root_id);
        }
        if let Some(vm_id) = &filter.vm_id {
            wasm = wasm.vm_id(vm_id);
        }
        listener = listener.filter(HttpFilter::wasm(wasm));
    }
    let finish = |route: Route| {
        route
            .named(property("xds.route_name", ROUTE_NAME))
            .timeout("15s")
            .metadata(route_metadata(scenario))
    };
    if !scenario.clusters.is_empty() {
        // As a routing filter's users deploy it: the header picks the
        // cluster when present (Envoy re-routes after the filter sets it).
        listener = listener.route(finish(Route::by_cluster_header(&scenario.cluster_header)));
    }
    listener = listener.route(finish(Route::to_cluster("/", BACKEND)));
    let mut bootstrap = Bootstrap::new().listener(listener);
    for cluster in clusters {
        bootstrap = bootstrap.cluster(cluster);
    }
    Ok(bootstrap)
}

/// A hyper server on 127.0.0.1 (port 0) speaking `protocol` and answering
/// every request with `handler(what it received)`; an error drops the
/// connection unanswered.
async fn serve<F, Fut>(protocol: Protocol, handler: F) -> Result<SocketAddr, String>
where
    F: Fn(Received) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<Response<OutBody>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move { handler(receive(req).await).await }
            });
            let io = TokioIo::new(tcp);
            tokio::spawn(async move {
                let _ = match protocol {
                    Protocol::Http1 => {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    }
                    Protocol::Http2 => {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                    }
                };
            });
        }
    });
    Ok(addr)
}

/// A gRPC service over HTTP/2: answers every call as `spec.grpc` says at
/// that moment. gRPC calls are not `http_calls`: nothing is recorded.
async fn start_grpc_upstream(spec: Shared<UpstreamSpec>) -> Result<SocketAddr, String> {
    serve(Protocol::Http2, move |_: Received| {
        let grpc = lock(&spec).grpc.clone().unwrap_or_default();
        let mut response = Response::new(chunked::grpc_answer(
            grpc.status,
            &grpc.message,
            grpc.response.as_bytes(),
        ));
        response.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/grpc"),
        );
        std::future::ready(Ok(response))
    })
    .await
}

/// The backend: records what it receives, answers with the current step's
/// response.
async fn start_backend(
    name: String,
    received: Shared<Vec<Received>>,
    response: Shared<ResponseSpec>,
) -> Result<SocketAddr, String> {
    serve(Protocol::Http1, move |mut got: Received| {
        got.cluster.clone_from(&name);
        lock(&received).push(got);
        let spec = lock(&response).clone();
        std::future::ready(Ok(answer(
            spec.status,
            &spec.headers,
            &spec.body,
            &spec.chunks,
        )))
    })
    .await
}

/// A callout upstream: records the call, then answers or fails as `spec`
/// says at that moment (a step may change it).
async fn start_upstream(
    name: String,
    spec: Shared<UpstreamSpec>,
    calls: Shared<Vec<CallMade>>,
) -> Result<SocketAddr, String> {
    serve(Protocol::Http1, move |got: Received| {
        // A gRPC call that reached this HTTP/1.1 service is no `http_call`.
        let grpc = got
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/grpc"));
        if !grpc {
            lock(&calls).push(CallMade {
                upstream: name.clone(),
                method: got.method,
                path: got.path,
                body: got.body,
            });
        }
        let spec = lock(&spec).clone();
        async move {
            match spec.failure {
                // An error from the service makes hyper drop the connection
                // without a response: Envoy sees a reset.
                Some(Failure::Reset) => Err(std::io::Error::other("reset")),
                Some(Failure::Timeout) => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Err(std::io::Error::other("never"))
                }
                None => Ok(answer(spec.status, &spec.headers, &spec.body, &[])),
            }
        }
    })
    .await
}

async fn receive(req: Request<Incoming>) -> Received {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Received {
        cluster: String::new(),
        method: parts.method.to_string(),
        path: parts.uri.to_string(),
        headers: header_list(&parts.headers),
        body,
    }
}

fn header_list(headers: &hyper::HeaderMap) -> Headers {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn answer(status: u16, headers: &HeaderLines, body: &str, chunks: &[usize]) -> Response<OutBody> {
    let mut response = Response::new(chunked::body(body.as_bytes(), chunks));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in lines(headers) {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            response.headers_mut().append(k, v);
        }
    }
    response
}

/// Envoy refused the plugin's configuration (as opposed to failing for
/// another reason).
fn rejected_by_wasm(log: &str) -> bool {
    log.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("wasm") && (l.contains("unable to create") || l.contains("failed to"))
    })
}

/// Waits until Envoy finished `n` downstream requests, then a little longer
/// for the filters' `proxy_on_log` (run as the stream is destroyed).
async fn wait_completed(admin: SocketAddr, n: usize) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < REQUEST_TIMEOUT {
        let body = harness_envoy::get(
            admin,
            "/stats?filter=^http\\.ingress\\.downstream_rq_completed$",
            &[],
        )
        .await?
        .text();
        let done = body
            .rsplit(':')
            .next()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if done >= n {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("envoy did not complete request {n} in time"))
}

/// One request on a fresh connection, over HTTP/1.1 or HTTP/2 (prior
/// knowledge, which Envoy's listener detects).
async fn exchange_with(
    addr: SocketAddr,
    request: Request<OutBody>,
    protocol: Protocol,
) -> Result<(u16, Headers, Vec<u8>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        Protocol::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
    }
    .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = header_list(response.headers());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok((status, headers, body))
}

/// Sends a step's request as a client; a failed exchange is a reset.
async fn send(listener: SocketAddr, step: &Step) -> ClientResult {
    let r = &step.request;
    let mut builder = Request::builder().method(r.method.as_str());
    builder = match r.protocol {
        Protocol::Http1 => builder
            .uri(r.path.as_str())
            .header("host", r.authority.as_str()),
        // HTTP/2 carries the authority in the URI (`:authority`).
        Protocol::Http2 => builder
            .version(hyper::Version::HTTP_2)
            .uri(format!("http://{}{}", r.authority, r.path)),
    };
    for (k, v) in lines(&r.headers) {
        builder = builder.header(k, v);
    }
    let body = r.body.clone().unwrap_or_default();
    let Ok(request) = builder.body(chunked::body(body.as_bytes(), &r.chunks)) else {
        return ClientResult::Reset;
    };
    match tokio::time::timeout(
        REQUEST_TIMEOUT,
        exchange_with(listener, request, r.protocol),
    )
    .await
    {
        Ok(Ok((status, headers, body))) => ClientResult::Response {
            status,
            headers,
            body,
        },
        _ => ClientResult::Reset,
    }
}

/// Envoy's own records of a VM call that failed (`Function: <callback>
/// failed: <V8's error>`, logged by the wasm logger at error level).
fn vm_failures(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, '|');
            let (_, logger, _, text) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            (logger == "wasm" && text.starts_with("Function: ") && text.contains(" failed: "))
                .then(|| text.to_owned())
        })
        .collect()
}

/// The plugins' log lines (`wasm log <prefix>: <message>`), each with the
/// thread that wrote it, in a log written with `--log-format "%l|%n|%t|%v"`.
fn wasm_lines(log: &str) -> Vec<(String, LogLine)> {
    // A message with newlines continues on lines of its own, without the
    // `level|logger|thread|` prefix: they belong to the line before.
    let mut records: Vec<String> = Vec::new();
    for line in log.lines() {
        let prefixed = line.splitn(4, '|').count() == 4
            && line.split('|').next().is_some_and(|l| LEVELS.contains(&l));
        match records.last_mut() {
            Some(last) if !prefixed => {
                last.push('\n');
                last.push_str(line);
            }
            _ => records.push(line.to_owned()),
        }
    }
    records
        .iter()
        .filter_map(|line| {
            let mut parts = line.splitn(4, '|');
            let (level, logger, thread, text) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            if logger != "wasm" {
                return None;
            }
            let rest = text.strip_prefix("wasm log")?;
            let (_, message) = rest.split_once(": ")?;
            let level = level.parse().unwrap_or(LogLevel::Critical);
            Some((
                thread.to_owned(),
                LogLine {
                    level,
                    message: message.to_owned(),
                },
            ))
        })
        .collect()
}

/// Envoy's log level names, which start every record of its log.
const LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "warn", "error", "critical", "off",
];
