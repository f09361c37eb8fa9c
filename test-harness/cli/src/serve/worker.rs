//! A worker thread's filter chains: one VM per filter per worker, as Envoy
//! runs one VM per worker thread, on the real clock. Every call into the
//! chain goes through [`Worker::op`], which moves the clock, prints the
//! plugins' logs, sends their callouts to real servers, replaces the VMs
//! after a trap, and wakes the streams waiting on the chain.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use proxy_wasm_harness::{
    CallOutcome, Chain, Error, ErrorKind, HttpCall, HttpResponse, LogEntry, Plugin,
};
use tokio::sync::watch;

use super::config::{Loaded, Target};
use super::upstream;

/// One version of the chain: the plugins built from one reading of the
/// configuration and its modules.
pub(crate) struct Generation {
    pub(crate) number: u64,
    pub(crate) plugins: Vec<Plugin>,
    /// Each filter's plugin name, for logs.
    pub(crate) names: Vec<String>,
    pub(crate) upstream: Target,
    pub(crate) clusters: BTreeMap<String, Target>,
    pub(crate) cluster_header: String,
    pub(crate) callouts: BTreeMap<String, Target>,
}

impl Generation {
    /// Builds the plugins on `runtime` (so shared data and metrics are
    /// shared across workers, as in one Envoy process) and checks that each
    /// one starts and accepts its configuration.
    pub(crate) fn build(
        loaded: &Loaded,
        runtime: &proxy_wasm_harness::Runtime,
        number: u64,
    ) -> Result<Self, String> {
        let config = &loaded.config;
        let mut plugins = Vec::new();
        let mut names = Vec::new();
        for (i, (filter, module)) in config.filters.iter().zip(&loaded.modules).enumerate() {
            let name = filter.plugin_name(i);
            let mut builder = filter
                .plugin_builder(module, i, runtime, &config.properties)
                .map_err(|e| format!("filter `{name}`: {e}"))?;
            for upstream in loaded.callouts.keys() {
                builder =
                    builder.upstream(upstream.clone(), proxy_wasm_harness::Upstream::deferred());
            }
            let plugin = builder
                .build()
                .map_err(|e| format!("filter `{name}` ({}): {e}", module.display()))?;
            plugin
                .start_at(SystemTime::now())
                .map_err(|e| format!("filter `{name}`: {e}"))?;
            plugins.push(plugin);
            names.push(name);
        }
        Ok(Self {
            number,
            plugins,
            names,
            upstream: loaded.upstream.clone(),
            clusters: loaded.clusters.clone(),
            cluster_header: config.cluster_header.clone(),
            callouts: loaded.callouts.clone(),
        })
    }
}

/// The generation every worker serves new requests with.
pub(crate) type Current = Arc<Mutex<Arc<Generation>>>;

/// A chain of one generation's VMs on this worker. Streams in flight keep
/// theirs after a reload; a trap kills it for every stream on it.
pub(crate) struct Live {
    pub(crate) generation: Arc<Generation>,
    chain: RefCell<Chain>,
    /// When the VMs' clocks last caught up with the real one.
    synced: Cell<Instant>,
    dead: Cell<bool>,
    calls_seen: RefCell<Vec<usize>>,
}

impl Live {
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// The chain, to read a stream's state (none while a call into it runs).
    pub(crate) fn chain_mut(&self) -> Option<std::cell::RefMut<'_, Chain>> {
        self.chain.try_borrow_mut().ok()
    }
}

/// Why a call into the chain failed.
#[derive(Debug)]
pub(crate) enum OpError {
    /// The chain's VMs trapped (now or earlier): answer 500.
    Trapped(String),
    /// A harness error that is not the guest's fault.
    Harness(String),
}

/// The state of one worker thread.
pub(crate) struct Worker {
    current: Current,
    live: RefCell<Option<Rc<Live>>>,
    /// Every chain still in use (for the clock).
    chains: RefCell<Vec<Weak<Live>>>,
    /// Bumped after every call into a chain: streams re-read their state.
    changed: watch::Sender<u64>,
}

impl Worker {
    pub(crate) fn new(current: Current) -> Rc<Self> {
        Rc::new(Self {
            current,
            live: RefCell::new(None),
            chains: RefCell::new(Vec::new()),
            changed: watch::channel(0).0,
        })
    }

    /// A receiver that sees every change to this worker's chains.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The chain for a new request: the current generation's, started on
    /// this worker when it is new or the last one trapped.
    pub(crate) fn chain(&self) -> Result<Rc<Live>, String> {
        let generation = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(live) = self.live.borrow().as_ref()
            && !live.is_dead()
            && live.generation.number == generation.number
        {
            return Ok(live.clone());
        }
        let mut vms = Vec::new();
        for (plugin, name) in generation.plugins.iter().zip(&generation.names) {
            vms.push(
                plugin
                    .start_at(SystemTime::now())
                    .map_err(|e| format!("starting filter `{name}`: {e}"))?,
            );
        }
        let mut chain = Chain::new(vms).map_err(|e| e.to_string())?;
        print_logs(&mut chain, &generation.names);
        let calls_seen = chain.vms().iter().map(|vm| vm.http_calls().len()).collect();
        let live = Rc::new(Live {
            generation,
            chain: RefCell::new(chain),
            synced: Cell::new(Instant::now()),
            dead: Cell::new(false),
            calls_seen: RefCell::new(calls_seen),
        });
        self.chains.borrow_mut().push(Rc::downgrade(&live));
        *self.live.borrow_mut() = Some(live.clone());
        Ok(live)
    }

    /// Runs `f` on the chain after moving its clock to now, then acts on
    /// what the plugins did.
    pub(crate) fn op<T>(
        self: &Rc<Self>,
        live: &Rc<Live>,
        f: impl FnOnce(&mut Chain) -> proxy_wasm_harness::Result<T>,
    ) -> Result<T, OpError> {
        if live.is_dead() {
            return Err(OpError::Trapped(
                "the filter chain trapped; its VMs were replaced".into(),
            ));
        }
        let (result, calls) = {
            let mut chain = live.chain.borrow_mut();
            let elapsed = live.synced.get().elapsed();
            live.synced.set(Instant::now());
            let result = chain.advance_time(elapsed).and_then(|()| f(&mut chain));
            print_logs(&mut chain, &live.generation.names);
            let mut seen = live.calls_seen.borrow_mut();
            let mut calls = Vec::new();
            for (k, (vm, seen)) in chain.vms().iter().zip(seen.iter_mut()).enumerate() {
                calls.extend(vm.http_calls()[*seen..].iter().map(|c| (k, c.clone())));
                *seen = vm.http_calls().len();
            }
            let poisoned = chain.vms().iter().any(|vm| vm.poisoned().is_some());
            (result.map_err(|e| classify(e, poisoned)), calls)
        };
        if let Err(OpError::Trapped(message)) = &result {
            live.dead.set(true);
            eprintln!("serve: {message}\nserve: the chain's VMs are replaced for the next request");
        }
        for (k, call) in calls {
            tokio::task::spawn_local(self.clone().callout(live.clone(), k, call));
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    /// Sends a plugin's callout to the real server of its cluster and
    /// delivers the answer (Envoy's 504 after the call's timeout).
    async fn callout(self: Rc<Self>, live: Rc<Live>, k: usize, call: HttpCall) {
        let outcome = match live.generation.callouts.get(&call.upstream) {
            Some(target) => {
                let exchange = fetch(target, &call);
                match call.timeout {
                    Some(limit) => tokio::time::timeout(limit, exchange)
                        .await
                        .unwrap_or_else(|_| Ok(HttpResponse::upstream_timeout())),
                    None => exchange.await,
                }
            }
            None => Err(format!("no URL for cluster `{}`", call.upstream)),
        };
        let outcome = outcome.map_or_else(
            |e| {
                eprintln!("serve: callout to `{}` failed: {e}", call.upstream);
                CallOutcome::Reset
            },
            CallOutcome::Respond,
        );
        // A chain that trapped meanwhile has nobody to answer.
        let _ = self.op(&live, |chain| {
            chain.answer_http_call(k, call.token, outcome)
        });
    }

    /// Moves every chain's clock to now: ticks and timers fire on time.
    pub(crate) fn tick(self: &Rc<Self>) {
        let chains: Vec<Rc<Live>> = {
            let mut chains = self.chains.borrow_mut();
            chains.retain(|weak| weak.upgrade().is_some_and(|live| !live.is_dead()));
            chains.iter().filter_map(Weak::upgrade).collect()
        };
        for live in chains {
            let _ = self.op(&live, |_| Ok(()));
        }
    }
}

fn classify(error: Error, poisoned: bool) -> OpError {
    if poisoned || matches!(error.kind(), ErrorKind::Trap | ErrorKind::Poisoned) {
        OpError::Trapped(format!("trap: {error}"))
    } else {
        OpError::Harness(error.to_string())
    }
}

/// Prints what the plugins logged, as Envoy's `wasm log` lines.
fn print_logs(chain: &mut Chain, names: &[String]) {
    for (vm, name) in chain.vms_mut().iter_mut().zip(names) {
        for LogEntry { level, message, .. } in vm.take_logs() {
            eprintln!("[{level:?}] wasm log {name}: {message}");
        }
    }
}

/// A callout over a fresh connection.
async fn fetch(target: &Target, call: &HttpCall) -> Result<HttpResponse, String> {
    let body = Full::new(Bytes::from(call.body.clone()));
    let response = upstream::send(target, &call.headers, body).await?;
    let status = response.status().as_u16();
    let headers = upstream::harness_map(response.headers());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(HttpResponse::new(status, headers, body.to_vec()))
}

/// How often chains' clocks catch up when nothing else calls into them.
pub(crate) const TICK: Duration = Duration::from_millis(10);
