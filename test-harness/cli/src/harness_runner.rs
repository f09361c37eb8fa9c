//! Runs a scenario in the harness: one VM per filter, chained, on virtual
//! time; requests as an HTTP/1.1 client sends them through Envoy.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use proxy_wasm_harness::envoy::{self, Codec};
use proxy_wasm_harness::{
    CallOutcome, Chain, Costs, ErrorKind, GrpcReply, GrpcUpstream, HeaderMap, HttpResponse,
    HttpStream, LogEntry, LogLevel, Plugin, Progress, Runtime, Upstream,
};

use crate::outcome::{CallMade, ClientResult, Headers, LogLine, Outcome, Received, StepOutcome};
use crate::scenario::{
    BACKEND, Failure, HeaderLines, Loaded, Protocol, ResponseSpec, RouteTo, Scenario, UpstreamSpec,
    lines, route_by_header,
};

/// Route and virtual host names both runners use unless the scenario sets
/// `xds.route_name` / `xds.virtual_host_name`.
pub(crate) const ROUTE_NAME: &str = "scenario-route";
pub(crate) const VIRTUAL_HOST_NAME: &str = "scenario-host";

/// How long a paused stream may wait for its filter (Envoy's default route
/// timeout).
const PATIENCE: Duration = Duration::from_secs(15);
const STEP: Duration = Duration::from_millis(100);

pub(crate) fn run(loaded: &Loaded) -> Result<Outcome, String> {
    let runtime = Runtime::new().map_err(|e| e.to_string())?;
    let plugins = plugins(loaded, &runtime, None)?;
    let mut session = match start(&plugins)? {
        Started::Ready(session) => session,
        Started::Rejected(outcome) => return Ok(outcome),
    };
    let mut steps = Vec::new();
    for (index, step) in loaded.scenario.steps.iter().enumerate() {
        steps.push(session.step(&loaded.scenario, step, index)?);
    }
    Ok(Outcome::Steps {
        startup: session.startup,
        steps,
    })
}

/// The scenario's plugins, compiled on `runtime`, set up as Envoy's
/// configuration sets them up (with another callback deadline, when given).
pub(crate) fn plugins(
    loaded: &Loaded,
    runtime: &Runtime,
    callback_deadline: Option<Duration>,
) -> Result<Vec<Plugin>, String> {
    let scenario = &loaded.scenario;
    // The route's names as the Envoy runner's bootstrap has them, unless the
    // scenario sets its own.
    let mut properties = std::collections::BTreeMap::from([
        ("xds.route_name".to_owned(), ROUTE_NAME.to_owned()),
        (
            "xds.virtual_host_name".to_owned(),
            VIRTUAL_HOST_NAME.to_owned(),
        ),
    ]);
    properties.extend(scenario.properties.clone());
    let mut plugins = Vec::new();
    for (i, (filter, module)) in scenario.filters.iter().zip(&loaded.modules).enumerate() {
        // A trap does what Envoy's failure policy says, its default included.
        let mut builder = filter
            .plugin_builder(module, i, runtime, &properties)?
            .failure_policy(filter.failure_policy());
        if let Some(deadline) = callback_deadline {
            builder = builder.callback_deadline(deadline);
        }
        for (name, spec) in &scenario.upstreams {
            builder = builder
                .upstream(name.clone(), upstream(spec))
                .grpc_upstream(name.clone(), grpc_upstream(spec));
        }
        plugins.push(builder.build().map_err(|e| e.to_string())?);
    }
    Ok(plugins)
}

/// A chain of the scenario's filters, started, or what refused it.
pub(crate) enum Started {
    Ready(Session),
    Rejected(Outcome),
}

/// The scenario's filter chain in the harness, taking steps.
pub(crate) struct Session {
    chain: Chain,
    calls_seen: Vec<usize>,
    /// Clusters with an idle upstream connection in the router's pool.
    warm: HashSet<String>,
    /// What the plugins logged while they started.
    pub(crate) startup: Vec<LogLine>,
    /// What the last step showed that only the harness sees.
    pub(crate) observed: Observed,
}

/// Starts a VM of each plugin, chained, as Envoy starts them.
pub(crate) fn start(plugins: &[Plugin]) -> Result<Started, String> {
    let mut vms = Vec::new();
    for plugin in plugins {
        // Envoy runs at the real time; so does the harness, so that what
        // depends on the time (an expired token) agrees.
        match plugin.start_at(SystemTime::now()) {
            Ok(vm) => vms.push(vm),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConfigurationRejected | ErrorKind::VmStartFailed
                ) =>
            {
                return Ok(Started::Rejected(Outcome::Rejected {
                    logs: e.logs().iter().map(line).collect(),
                }));
            }
            // A VM that fails while it starts (a trap, a callback past its
            // deadline, memory past the limit) is a plugin Envoy refuses.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Trap | ErrorKind::Timeout | ErrorKind::MemoryLimit
                ) =>
            {
                return Ok(Started::Rejected(Outcome::Rejected {
                    logs: vec![LogLine {
                        level: LogLevel::Critical,
                        message: e.to_string(),
                    }],
                }));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut chain = Chain::new(vms).map_err(|e| e.to_string())?;
    let mut startup = Vec::new();
    for vm in chain.vms_mut() {
        startup.extend(vm.take_logs().iter().map(line));
    }
    let calls_seen = chain.vms().iter().map(|vm| vm.http_calls().len()).collect();
    Ok(Started::Ready(Session {
        chain,
        calls_seen,
        warm: HashSet::new(),
        startup,
        observed: Observed::default(),
    }))
}

impl Session {
    /// The chain's VMs.
    pub(crate) fn vms(&self) -> &[proxy_wasm_harness::Vm] {
        self.chain.vms()
    }

    /// Runs step `index` of `scenario`: its wait, its request, what the
    /// filters logged and called meanwhile.
    pub(crate) fn step(
        &mut self,
        scenario: &Scenario,
        step: &crate::scenario::Step,
        index: usize,
    ) -> Result<StepOutcome, String> {
        let chain = &mut self.chain;
        for (name, spec) in &step.upstreams {
            for vm in chain.vms_mut() {
                vm.set_upstream(name.clone(), upstream(spec));
                vm.set_grpc_upstream(name.clone(), grpc_upstream(spec));
            }
        }
        if step.wait_ms > 0 {
            chain
                .advance_time(Duration::from_millis(step.wait_ms))
                .map_err(|e| e.to_string())?;
        }
        let failed_before: Vec<bool> = chain
            .vms()
            .iter()
            .map(|vm| vm.failure().is_some())
            .collect();
        let outcome =
            run_step(chain, scenario, step, index, &mut self.warm).map_err(|e| e.to_string())?;
        let vm_failures = chain
            .vms()
            .iter()
            .zip(&failed_before)
            .filter(|(_, before)| !**before)
            .filter_map(|(vm, _)| vm.failure().map(str::to_owned))
            .collect();
        let mut logs = Vec::new();
        let mut calls = Vec::new();
        for (vm, seen) in chain.vms_mut().iter_mut().zip(&mut self.calls_seen) {
            logs.extend(vm.take_logs().iter().map(line));
            calls.extend(vm.http_calls()[*seen..].iter().map(|c| CallMade {
                upstream: c.upstream.clone(),
                method: c.header(":method").unwrap_or_default().to_owned(),
                path: c.header(":path").unwrap_or_default().to_owned(),
                body: c.body.clone(),
            }));
            *seen = vm.http_calls().len();
        }
        self.observed = outcome.observed;
        Ok(StepOutcome {
            backend: outcome.backend,
            client: outcome.client,
            logs,
            calls,
            stale_content_length: outcome.stale,
            costs: outcome.costs,
            vm_failures,
        })
    }
}

/// A callout upstream as the harness plays it.
fn upstream(spec: &UpstreamSpec) -> Upstream {
    match spec.failure {
        Some(Failure::Reset) => Upstream::reset(),
        Some(Failure::Timeout) => Upstream::unresponsive(),
        None => {
            let spec = spec.clone();
            // As Envoy's async client hands the answer over: through the
            // router, with the upstream's `date` and the router's
            // `x-envoy-upstream-service-time`.
            Upstream::handler(move |_| {
                let mut headers = headers_with_length(&spec.headers, spec.body.len());
                headers.add("date", httpdate::fmt_http_date(SystemTime::now()));
                headers.add("x-envoy-upstream-service-time", "0");
                CallOutcome::Respond(HttpResponse::new(spec.status, headers, spec.body.clone()))
            })
        }
    }
}

/// A callout upstream as gRPC calls to it play out in Envoy: a gRPC
/// service answers as its spec says; an HTTP/1.1 service cannot answer a
/// gRPC call.
fn grpc_upstream(spec: &UpstreamSpec) -> GrpcUpstream {
    match (&spec.grpc, spec.failure) {
        (_, Some(Failure::Timeout)) => GrpcUpstream::handler(|_| GrpcReply::default()),
        (Some(grpc), None) if grpc.status == 0 => {
            GrpcUpstream::reply(GrpcReply::message(grpc.response.clone()))
        }
        // Envoy's gRPC client adds the response's details to the message.
        (Some(grpc), None) => GrpcUpstream::reply(GrpcReply::status(
            grpc.status,
            format!("{}{{via_upstream}}", grpc.message),
        )),
        // Measured in Envoy 1.40: the call reaches the HTTP/1.1 service,
        // whose answer is no gRPC answer: INTERNAL.
        _ => GrpcUpstream::reply(GrpcReply::status(13, "via_upstream")),
    }
}

/// What a step showed that only the harness sees (the fuzzer's checks).
#[derive(Debug, Default, Clone)]
pub(crate) struct Observed {
    /// A header value a filter wrote that Envoy's codec refuses (CR, LF,
    /// NUL): the request's, answered 503 by the router, or the response's,
    /// reset.
    pub(crate) refused_header: Option<String>,
    /// The status of a filter's local reply.
    pub(crate) local_status: Option<u32>,
    /// The request body as the last filter sent it upstream, whole.
    pub(crate) sent_body: Vec<u8>,
    /// The filters held the request and never let it go, answered or reset
    /// it.
    pub(crate) stalled: bool,
}

/// What one step's request did in the harness.
struct Ran {
    backend: Option<Received>,
    client: ClientResult,
    /// Stale `content-length`s the filters left.
    stale: Vec<String>,
    /// What else the step showed that only the harness sees.
    observed: Observed,
    costs: Vec<Costs>,
}

fn run_step(
    chain: &mut Chain,
    scenario: &Scenario,
    step: &crate::scenario::Step,
    step_index: usize,
    warm: &mut HashSet<String>,
) -> proxy_wasm_harness::Result<Ran> {
    let request = &step.request;
    let body = request.body.as_deref().unwrap_or_default();
    // As the Envoy runner's HTTP/1.1 client sends it: `host`, the headers,
    // then `content-length` for a body; then as Envoy's codec and
    // connection manager hand it to the first filter.
    let length = body.len().to_string();
    let client_headers = lines(&request.headers)
        .chain((!body.is_empty()).then_some(("content-length", length.as_str())));
    let request_id = envoy::request_id(step_index as u64 + 1);
    let codec = match request.protocol {
        Protocol::Http1 => Codec::Http1,
        Protocol::Http2 => Codec::Http2,
    };
    for vm in chain.vms_mut() {
        vm.set_property("request.protocol", envoy::protocol(codec));
    }
    let headers = envoy::request_headers(
        codec,
        &request.method,
        &request.path,
        &request.authority,
        client_headers,
        &request_id,
    );
    if headers.byte_size() > envoy::MAX_REQUEST_HEADERS_BYTES {
        // The connection manager answers before any filter runs.
        let client = ClientResult::Response {
            status: 431,
            headers: Vec::new(),
            body: b"Request Header Fields Too Large".to_vec(),
        };
        return Ok(Ran {
            backend: None,
            client,
            stale: Vec::new(),
            observed: Observed::default(),
            costs: Vec::new(),
        });
    }
    let mut stream = chain.http_stream();
    stream.send_request_headers(headers, body.is_empty())?;
    // Whether a filter answered or reset the request while Envoy was still
    // in the read that brought the headers: the router had no time to send
    // them upstream (measured: a trap in the first body callback of a
    // one-piece body leaves the backend unreached).
    let mut cut_in_first_read = false;
    if !body.is_empty() {
        let pieces = envoy::body_pieces(body.as_bytes(), &request.chunks).len();
        let frames = envoy::body_frames(body.as_bytes(), &request.chunks, codec);
        // One piece arrives whole with the headers (HTTP/1.1's end of
        // message too); later pieces come after the runner's pause.
        let first_read = if pieces <= 1 { frames.len() } else { 1 };
        for (i, (chunk, end_of_stream)) in frames.into_iter().enumerate() {
            let progress = stream.send_request_body(chunk, end_of_stream)?;
            if i < first_read && (stream.local_response().is_some() || stream.is_reset()) {
                cut_in_first_read = true;
            }
            if matches!(progress, Progress::Responded | Progress::Reset) {
                break;
            }
        }
    }
    wait(&mut stream, |s| {
        s.upstream_request().complete || s.local_response().is_some() || s.is_reset()
    })?;
    let sent = stream.upstream_request().clone();
    // Neither let through whole nor answered nor reset by a filter, after
    // the router's patience: in Envoy the request waits for its stream to
    // time out.
    let stalled = !sent.complete && stream.local_response().is_none() && !stream.is_reset();
    let mut stale = Vec::new();
    // Envoy does not fix `content-length` after a filter changed the body:
    // the backend reads the declared length. Longer: it gets the first bytes
    // (the rest spoils the connection); shorter: it waits for the rest until
    // the route times out.
    let mut body_read = sent.body.clone();
    let mut upstream_hangs = false;
    if let Some((declared, actual)) = sent.content_length_mismatch() {
        stale.push(format!(
            "the request body the upstream got is {actual} bytes, but its content-length says {declared}"
        ));
        body_read.truncate(declared);
        upstream_hangs = actual < declared;
    }
    // Envoy's codec refuses a header value a filter gave CR, LF or NUL: the
    // router answers 503 instead of sending the request.
    let invalid = invalid_header(sent.headers.as_ref());
    // The router sends the request headers upstream as soon as they leave
    // the filters: a request cut off after that (a local reply from a later
    // body callback) reached the backend with its headers, and the backend's
    // read of the reset body ends empty (as the Envoy runner's backend
    // records it).
    // Measured with Envoy 1.40: when the cut comes in the read that brought
    // the headers, they reach the backend only over an idle upstream
    // connection the router can write to at once (a pooled one); a new
    // connection is not up yet, and the request never leaves.
    let cluster_of = route(scenario, sent.headers.as_ref());
    let pooled = cluster_of.as_ref().is_some_and(|c| warm.contains(c));
    let cut_off = !sent.complete
        && (!cut_in_first_read || pooled)
        && sent.headers.is_some()
        && (stream.local_response().is_some() || stream.is_reset());
    if cut_off {
        body_read.clear();
    }
    let cluster = (sent.complete || cut_off).then(|| cluster_of.clone());
    // What the step leaves in the router's pool: a request that went and
    // came back whole leaves its connection idle; one reset midway, or
    // whose body overran its content-length, closes it.
    if let Some(Some(name)) = &cluster {
        if sent.complete && !upstream_hangs && stale.is_empty() && invalid.is_none() {
            warm.insert(name.clone());
        } else {
            warm.remove(name);
        }
    }
    let backend = match &cluster {
        _ if invalid.is_some() => None,
        Some(Some(name)) if !upstream_hangs => Some(Received {
            cluster: name.clone(),
            method: sent.header(":method").unwrap_or_default().to_owned(),
            path: sent.header(":path").unwrap_or_default().to_owned(),
            headers: upstream_headers(sent.headers.as_ref()),
            body: body_read,
        }),
        _ => None,
    };
    let answered = stream.local_response().is_some() || stream.is_reset();
    if cluster.is_some() && !answered {
        let (response, headers) = match backend {
            _ if invalid.is_some() => router_reply(
                503,
                format!(
                    "invalid header value for: {}",
                    invalid.as_deref().unwrap_or_default()
                ),
            ),
            _ if upstream_hangs => router_reply(504, "upstream request timeout".into()),
            Some(_) => {
                let response = &step.response;
                let headers = envoy::response_headers(
                    response.status,
                    lines(&response.headers),
                    response.body.len(),
                    stream.vm().now(),
                    Duration::ZERO,
                );
                (Cow::Borrowed(response), headers)
            }
            // No such cluster: Envoy's router answers itself.
            None => (
                Cow::Owned(no_cluster()),
                HeaderMap::from([(":status", "503")]),
            ),
        };
        let progress = stream.send_response_headers(headers, response.body.is_empty())?;
        if !response.body.is_empty() && progress != Progress::Reset {
            // The backend is an HTTP/1.1 upstream, whatever the client speaks.
            for (chunk, end_of_stream) in
                envoy::body_frames(response.body.as_bytes(), &response.chunks, Codec::Http1)
            {
                if stream.send_response_body(chunk, end_of_stream)? == Progress::Reset {
                    break;
                }
            }
        }
        wait(&mut stream, |s| {
            s.downstream_response().complete || s.is_reset()
        })?;
    }
    let local_status = stream.local_response().map(|r| r.status);
    let exchange = stream.finish()?;
    let got = &exchange.downstream_response;
    let mismatch = got.content_length_mismatch();
    if let Some((declared, actual)) = mismatch {
        stale.push(format!(
            "the response body the client got is {actual} bytes, but its content-length says {declared}"
        ));
    }
    // The client reads the declared length; a shorter body never ends. A
    // header value Envoy's codec refuses resets the stream.
    let client = if exchange.reset
        || !got.complete
        || invalid_header(got.headers.as_ref()).is_some()
        || mismatch.is_some_and(|(declared, actual)| actual < declared)
    {
        ClientResult::Reset
    } else {
        let mut body = got.body.clone();
        if let Some((declared, _)) = mismatch {
            body.truncate(declared);
        }
        ClientResult::Response {
            status: got
                .status()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0),
            headers: plain(got.headers.as_ref()),
            body,
        }
    };
    let observed = Observed {
        refused_header: invalid.or_else(|| invalid_header(got.headers.as_ref())),
        local_status,
        sent_body: sent.body,
        stalled,
    };
    Ok(Ran {
        backend,
        client,
        stale,
        observed,
        costs: exchange.costs,
    })
}

/// A reply Envoy's router sends itself (a route timeout, a request it
/// could not send), and its headers.
fn router_reply(status: u16, body: String) -> (Cow<'static, ResponseSpec>, HeaderMap) {
    let headers = HeaderMap::from([
        (":status", status.to_string()),
        ("content-length", body.len().to_string()),
        ("content-type", "text/plain".to_owned()),
    ]);
    let reply = ResponseSpec {
        status,
        headers: HeaderLines::new(),
        body,
        chunks: Vec::new(),
    };
    (Cow::Owned(reply), headers)
}

/// The first header whose value Envoy's codec would refuse.
fn invalid_header(headers: Option<&HeaderMap>) -> Option<String> {
    headers?
        .iter()
        .find(|(_, v)| !envoy::valid_header_value(v))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
}

/// The cluster Envoy's route sends the request to: `backend`, or with
/// `clusters` the one `cluster_header` names (`None`: no such cluster).
fn route(scenario: &Scenario, headers: Option<&HeaderMap>) -> Option<String> {
    // Without clusters, the Envoy config has no `cluster_header` route.
    if scenario.clusters.is_empty() {
        return Some(BACKEND.to_owned());
    }
    let named = headers.and_then(|h| h.get(&scenario.cluster_header));
    match route_by_header(named, |name| {
        name == BACKEND || scenario.clusters.iter().any(|c| c == name)
    }) {
        RouteTo::Default => Some(BACKEND.to_owned()),
        RouteTo::Cluster(name) => Some(name.to_owned()),
        RouteTo::NoCluster => None,
    }
}

/// Envoy's router reply when `cluster_header` names no cluster.
fn no_cluster() -> ResponseSpec {
    ResponseSpec {
        status: 503,
        headers: HeaderLines::new(),
        body: String::new(),
        chunks: Vec::new(),
    }
}

/// Lets virtual time pass until `done` or the patience runs out (a filter
/// that paused may be waiting for a tick or a callout).
fn wait(
    stream: &mut HttpStream<'_>,
    done: impl Fn(&HttpStream<'_>) -> bool,
) -> proxy_wasm_harness::Result<()> {
    let mut waited = Duration::ZERO;
    while !done(stream) && waited < PATIENCE {
        stream.advance_time(STEP)?;
        waited += STEP;
    }
    Ok(())
}

/// Headers as an HTTP/1.1 peer sends them: `content-length` for a body.
fn headers_with_length(headers: &HeaderLines, body_len: usize) -> HeaderMap {
    let mut map: HeaderMap = lines(headers).collect();
    if body_len > 0 && !map.contains("content-length") {
        map.add("content-length", body_len.to_string());
    }
    map
}

/// A request's headers as an HTTP/1.1 upstream reads them: `:authority`
/// becomes `host`, other pseudo-headers go into the request line.
fn upstream_headers(headers: Option<&HeaderMap>) -> Headers {
    let host = headers
        .and_then(|h| h.get(":authority"))
        .map(|a| ("host".to_owned(), a.to_owned()));
    host.into_iter().chain(plain(headers)).collect()
}

/// Regular headers (no pseudo-headers), as a peer sees them.
fn plain(headers: Option<&HeaderMap>) -> Headers {
    headers
        .map(|h| {
            h.iter()
                .filter(|(k, _)| !k.starts_with(b":"))
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn line(entry: &LogEntry) -> LogLine {
    LogLine {
        level: entry.level,
        message: entry.message.clone(),
    }
}
