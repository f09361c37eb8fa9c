//! `serve`: a local dev proxy. Listens on a local address, runs each
//! request and response through a chain of wasm filters in the harness, and
//! forwards to an upstream URL. Worker threads each run their own VMs (as
//! Envoy's workers do) on the real clock; a changed module or configuration
//! is validated and swapped in without a restart.

mod body;
mod config;
mod exchange;
mod upstream;
mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proxy_wasm_harness::Runtime;
use tokio::sync::{mpsc, watch};

use self::worker::{Current, Generation, Worker};

/// Arguments of `proxy-wasm-harness serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The configuration file (filters, upstream URL, callout URLs).
    config: PathBuf,
    /// Address to listen on (overrides `listen`; default 127.0.0.1:10000).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Worker threads, each with its own VMs (default: the CPU count).
    #[arg(long)]
    workers: Option<usize>,
    /// How often files are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 300)]
    poll_ms: u64,
}

/// How long in-flight requests may take to finish after Ctrl-C.
const DRAIN: Duration = Duration::from_secs(10);

pub(crate) fn run(args: &ServeArgs) -> ExitCode {
    let loaded = match config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let generation = match Generation::build(&loaded, &runtime, 1) {
        Ok(generation) => generation,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = args
        .listen
        .or(loaded.config.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 10000)));
    let workers = args
        .workers
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let current: Current = Arc::new(Mutex::new(Arc::new(generation)));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (current, stop, file) = (current.clone(), stop.clone(), args.config.clone());
        let poll = Duration::from_millis(args.poll_ms.max(10));
        let watched = loaded.watched(&args.config);
        thread::spawn(move || watch_files(&file, watched, &runtime, &current, &stop, poll))
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(accept(listen, workers, current));
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    code
}

/// Accepts connections and hands them to the workers in turn until Ctrl-C,
/// then lets open connections finish.
async fn accept(listen: SocketAddr, workers: usize, current: Current) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (shutdown_tx, shutdown) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    for index in 0..workers {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let (current, shutdown, open) = (current.clone(), shutdown.clone(), open.clone());
        threads.push(
            thread::Builder::new()
                .name(format!("serve-worker-{index}"))
                .spawn(move || run_worker(rx, current, shutdown, open)),
        );
    }
    let address = listener.local_addr().unwrap_or(listen);
    println!("serving on http://{address} with {workers} workers (Ctrl-C stops)");
    let mut next = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let Ok(tcp) = tcp.into_std() else { continue };
                open.fetch_add(1, Ordering::SeqCst);
                if let Some(tx) = senders.get(next % senders.len()) {
                    let _ = tx.send(tcp);
                }
                next += 1;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    drop(listener);
    println!(
        "shutting down: waiting for {} open connections",
        open.load(Ordering::SeqCst)
    );
    let _ = shutdown_tx.send(true);
    drop(senders);
    for handle in threads.into_iter().flatten() {
        let _ = handle.join();
    }
    println!("stopped");
    ExitCode::SUCCESS
}

/// A worker thread: its own single-threaded runtime, chains and
/// connections.
fn run_worker(
    mut connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    current: Current,
    shutdown: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let worker = Worker::new(current);
        let ticker = {
            let worker = worker.clone();
            tokio::task::spawn_local(async move {
                let mut interval = tokio::time::interval(worker::TICK);
                loop {
                    interval.tick().await;
                    worker.tick();
                }
            })
        };
        while let Some(tcp) = connections.recv().await {
            let Ok(()) = tcp.set_nonblocking(true) else {
                open.fetch_sub(1, Ordering::SeqCst);
                continue;
            };
            let Ok(tcp) = tokio::net::TcpStream::from_std(tcp) else {
                open.fetch_sub(1, Ordering::SeqCst);
                continue;
            };
            // Envoy sets TCP_NODELAY: a response head and body written
            // apart must not wait for the client's delayed ACK.
            let _ = tcp.set_nodelay(true);
            let (worker, shutdown, open) = (worker.clone(), shutdown.clone(), open.clone());
            tokio::task::spawn_local(async move {
                serve_connection(tcp, worker, shutdown).await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
        // Ctrl-C: connections finish their requests, then close.
        let deadline = Instant::now() + DRAIN;
        while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ticker.abort();
    });
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    worker: Rc<Worker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| exchange::handle(worker.clone(), request));
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(connection);
    let mut draining = *shutdown.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = shutdown.changed(), if !draining => {
                if changed.is_err() || *shutdown.borrow() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Polls the configuration and its modules; on a change, builds and checks
/// the new chain and swaps it in, or keeps the old one and says why.
fn watch_files(
    file: &Path,
    mut watched: Vec<PathBuf>,
    runtime: &Runtime,
    current: &Current,
    stop: &AtomicBool,
    poll: Duration,
) {
    let stamp = |files: &[PathBuf]| -> Vec<Option<SystemTime>> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .collect()
    };
    let mut seen = stamp(&watched);
    let mut number = 1;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(poll);
        let now = stamp(&watched);
        if now == seen {
            continue;
        }
        seen = now;
        let built = config::load(file)
            .map_err(|e| e.to_string())
            .and_then(|loaded| {
                let generation = Generation::build(&loaded, runtime, number + 1)?;
                Ok((loaded, generation))
            });
        match built {
            Ok((loaded, generation)) => {
                number += 1;
                watched = loaded.watched(file);
                seen = stamp(&watched);
                *current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(generation);
                println!("reloaded: generation {number} serves new requests");
            }
            Err(e) => {
                println!("reload refused, generation {number} keeps serving: {e}");
            }
        }
    }
}
