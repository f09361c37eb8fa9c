//! `proxy-wasm-harness serve` end to end over loopback: the real binary in
//! front of a hyper upstream, with a callout server, a chain of three
//! filters, streaming in both directions, a trap, hot reload (good and bad)
//! and Ctrl-C.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What the upstream received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A hyper server on its own thread. `/stream` answers `first;`, then waits
/// for the test to open the gate before `second`; other paths answer `ok`.
struct Upstream {
    address: SocketAddr,
    seen: Log,
    gate: tokio::sync::mpsc::UnboundedSender<()>,
}

fn upstream(answer: &'static str) -> Upstream {
    let seen: Log = Arc::default();
    let (gate, gate_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let gate_rx = Arc::new(tokio::sync::Mutex::new(gate_rx));
    let (tx, rx) = mpsc::channel();
    let log = seen.clone();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (log, gate_rx) = (log.clone(), gate_rx.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (log, gate_rx) = (log.clone(), gate_rx.clone());
                        async move { answer_request(request, &log, &gate_rx, answer).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
    });
    Upstream {
        address: rx.recv().unwrap(),
        seen,
        gate,
    }
}

async fn answer_request(
    request: Request<Incoming>,
    log: &Log,
    gate: &Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>>,
    answer: &'static str,
) -> Result<Response<http_body_util::Channel<Bytes>>, hyper::Error> {
    let path = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = request.into_body().collect().await?.to_bytes();
    log.lock().unwrap().push(Seen {
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (mut tx, body) = http_body_util::Channel::new(4);
    let gate = gate.clone();
    tokio::spawn(async move {
        if path == "/stream" {
            let _ = tx.send_data(Bytes::from("first;")).await;
            gate.lock().await.recv().await;
            let _ = tx.send_data(Bytes::from("second")).await;
        } else {
            let _ = tx.send_data(Bytes::from(answer)).await;
        }
    });
    Ok(Response::new(body))
}

/// The proxy, its stdout lines as they come, and its stderr in a file.
struct Proxy {
    child: Child,
    address: SocketAddr,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
}

impl Proxy {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_proxy-wasm-harness"))
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
            .args(["--poll-ms", "50"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut proxy = Self {
            child,
            address: "0.0.0.0:0".parse().unwrap(),
            lines,
            stdout: Vec::new(),
        };
        let banner = proxy.wait_line("serving on http://");
        proxy.address = banner
            .trim_start_matches("serving on http://")
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        proxy
    }

    /// The first stdout line from now on that contains `text`.
    fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {text:?}; stdout so far:\n{}",
            self.stdout.join("\n")
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as the client got it.
struct Got {
    status: u16,
    headers: hyper::HeaderMap,
    body: String,
}

async fn send(proxy: SocketAddr, request: Request<Full<Bytes>>) -> Got {
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(path: &str) -> hyper::http::request::Builder {
    Request::builder().uri(path).header("host", "example.com")
}

fn empty(builder: hyper::http::request::Builder) -> Request<Full<Bytes>> {
    builder.body(Full::new(Bytes::new())).unwrap()
}

fn config_text(backend: SocketAddr, docs: SocketAddr, version: &str) -> String {
    format!(
        r#"upstream: http://{backend}
upstreams:
  docs: http://{docs}
filters:
  - wasm: filter:header-transform
    name: headers
    configuration:
      rules:
        - request_headers:
            - set: {{name: x-version, value: "{version}"}}
  - wasm: fixture:cache-filter
    name: cache
    vm_id: cache
  - wasm: fixture:sdk-filter
    name: sdk
"#
    )
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replaces the file in one step, so the proxy never reads half of it.
fn write_config(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn serve_runs_a_chain_on_real_traffic_streams_reloads_survives_a_trap_and_stops() {
    let backend = upstream("ok");
    let docs = upstream("v1");
    let config = scratch_dir().join("serve.yaml");
    write_config(&config, &config_text(backend.address, docs.address, "1"));
    let mut proxy = Proxy::start(&config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let last = |log: &Log| log.lock().unwrap().last().cloned().unwrap();

    // Every filter acts: a header set, a document fetched over a real
    // callout and cached in shared data, the SDK fixture's mark.
    for _ in 0..4 {
        let got = rt.block_on(send(proxy.address, empty(get("/api?x=1"))));
        assert_eq!((got.status, got.body.as_str()), (200, "ok"));
        assert_eq!(got.headers["x-fixture-response"], "200");
    }
    let seen = last(&backend.seen);
    assert_eq!(seen.path, "/api?x=1");
    assert_eq!(seen.headers["x-version"], "1");
    assert_eq!(seen.headers["x-doc"], "v1", "the callout's answer");
    assert!(seen.headers.contains_key("x-fixture-seen"));
    assert_eq!(
        docs.seen.lock().unwrap().len(),
        1,
        "one fetch serves both workers' VMs through shared data"
    );
    assert_eq!(docs.seen.lock().unwrap()[0].path, "/doc");
    let line = proxy.wait_line("GET /api?x=1 200 upstream");
    assert!(
        line.contains("request-headers[")
            && line.contains("+x-version")
            && line.contains("filters="),
        "{line}"
    );

    // A request body the filter buffers and rewrites goes up whole, changed.
    let got = rt.block_on(send(
        proxy.address,
        Request::post("/upper")
            .header("host", "example.com")
            .header("x-fixture-upper", "1")
            .body(Full::new(Bytes::from("streamed body")))
            .unwrap(),
    ));
    assert_eq!(got.status, 200);
    assert_eq!(last(&backend.seen).body, "STREAMED BODY");

    // The response streams: the first chunk reaches the client while the
    // upstream still holds the second.
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(empty(get("/stream"))).await.unwrap();
        let mut body = response.into_body();
        let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the first chunk arrives before the upstream finishes")
            .unwrap()
            .unwrap();
        assert_eq!(first.into_data().unwrap(), "first;");
        backend.gate.send(()).unwrap();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "second");
    });

    // A local reply never reaches the upstream.
    let before = backend.seen.lock().unwrap().len();
    let got = rt.block_on(send(
        proxy.address,
        empty(get("/denied").header("x-fixture-deny", "1")),
    ));
    assert_eq!((got.status, got.body.as_str()), (403, "denied"));
    assert_eq!(backend.seen.lock().unwrap().len(), before);
    proxy.wait_line("GET /denied 403 local reply by `sdk`");

    // A trap answers 500 for that request only; the VMs are replaced.
    let got = rt.block_on(send(
        proxy.address,
        empty(get("/boom").header("x-fixture-panic", "1")),
    ));
    assert_eq!(got.status, 500);
    let line = proxy.wait_line("GET /boom 500");
    assert!(line.contains("trap"), "{line}");
    for _ in 0..2 {
        let got = rt.block_on(send(proxy.address, empty(get("/after"))));
        assert_eq!(got.status, 200, "both workers serve after the trap");
    }

    // Hot reload: a changed configuration serves new requests...
    write_config(&config, &config_text(backend.address, docs.address, "2"));
    proxy.wait_line("reloaded: generation 2");
    let got = rt.block_on(send(proxy.address, empty(get("/v2"))));
    assert_eq!(got.status, 200);
    assert_eq!(last(&backend.seen).headers["x-version"], "2");
    // ...and a broken one is refused with its error while the old one serves.
    let broken = config_text(backend.address, docs.address, "3")
        .replace("set: {name: x-version", "sett: {name: x-version");
    write_config(&config, &broken);
    let refused = proxy.wait_line("reload refused");
    assert!(refused.contains("generation 2 keeps serving"), "{refused}");
    proxy.wait_line("sett");
    let got = rt.block_on(send(proxy.address, empty(get("/still"))));
    assert_eq!(got.status, 200);
    assert_eq!(last(&backend.seen).headers["x-version"], "2");

    // Ctrl-C: a graceful stop.
    // The shell's builtin `kill`: no procps needed.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", proxy.child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    proxy.wait_line("stopped");
    let exit = proxy.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
}
