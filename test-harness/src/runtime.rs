//! The engine and linker plugins are compiled with, and the state Envoy
//! keeps process-wide (shared data, metrics).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, OptLevel, PoolingAllocationConfig,
};

use crate::error::{Error, Result};
use crate::host::{self, Host, Metric};

/// How often the engine's epoch advances; callback deadlines are counted in
/// these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Shared key-value data of one vm_id: key → (value, cas).
pub(crate) type SharedData = HashMap<Vec<u8>, (Vec<u8>, u32)>;

/// Shared queues of a runtime: by (vm_id, name), tokens never 0.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    by_name: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
    next_token: u32,
    /// Tokens with new items, by the VM (uid) to tell.
    ready: HashMap<u64, Vec<u32>>,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Vec<u8>>,
    /// The VM that registered the queue last.
    owner: u64,
}

impl Queues {
    pub(crate) fn register(&mut self, vm_id: &str, name: &str, owner: u64) -> u32 {
        let key = (vm_id.to_owned(), name.to_owned());
        if let Some(token) = self.by_name.get(&key) {
            if let Some(queue) = self.queues.get_mut(token) {
                queue.owner = owner;
            }
            return *token;
        }
        self.next_token += 1;
        let token = self.next_token;
        self.by_name.insert(key, token);
        self.queues.insert(
            token,
            Queue {
                items: VecDeque::new(),
                owner,
            },
        );
        token
    }

    pub(crate) fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.by_name
            .get(&(vm_id.to_owned(), name.to_owned()))
            .copied()
    }

    /// Adds an item; returns the VM to tell, or `None` for an unknown token.
    pub(crate) fn enqueue(&mut self, token: u32, item: Vec<u8>) -> Option<u64> {
        let queue = self.queues.get_mut(&token)?;
        queue.items.push_back(item);
        Some(queue.owner)
    }

    /// `None` for an unknown token, `Some(None)` when empty.
    pub(crate) fn dequeue(&mut self, token: u32) -> Option<Option<Vec<u8>>> {
        self.queues.get_mut(&token).map(|q| q.items.pop_front())
    }

    pub(crate) fn notify(&mut self, owner: u64, token: u32) {
        self.ready.entry(owner).or_default().push(token);
    }

    pub(crate) fn take_ready(&mut self, owner: u64) -> Vec<u32> {
        self.ready.remove(&owner).unwrap_or_default()
    }
}

/// Shared data by vm_id, metrics by name, shared queues.
#[derive(Debug)]
pub(crate) struct SharedState {
    data: Mutex<HashMap<String, SharedData>>,
    pub(crate) next_cas: AtomicU32,
    metrics: Mutex<HashMap<String, Metric>>,
    queues: Mutex<Queues>,
    next_vm_uid: AtomicU64,
}

impl SharedState {
    fn new() -> Self {
        Self {
            data: Mutex::new(HashMap::new()),
            next_cas: AtomicU32::new(1),
            metrics: Mutex::new(HashMap::new()),
            queues: Mutex::new(Queues::default()),
            next_vm_uid: AtomicU64::new(1),
        }
    }

    pub(crate) fn lock_queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn new_vm_uid(&self) -> u64 {
        self.next_vm_uid.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn lock_data(&self) -> MutexGuard<'_, HashMap<String, SharedData>> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn lock_metrics(&self) -> MutexGuard<'_, HashMap<String, Metric>> {
        self.metrics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A wasm engine with every host function linked. Cheap to clone; plugins
/// built on one runtime share its shared data and metrics, as every plugin
/// in one Envoy process does. Plugins built without one get their own, so
/// tests stay isolated and run in parallel.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<Host>,
    shared: Arc<SharedState>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime that allocates each VM's memory on demand.
    ///
    /// # Errors
    ///
    /// When the engine cannot be created on this machine.
    pub fn new() -> Result<Self> {
        Self::with_config(Config::new())
    }

    /// A runtime with a pooling instance allocator sized for `max_vms` live
    /// VMs: faster VM start, at the price of reserving address space up front.
    ///
    /// # Errors
    ///
    /// When the engine cannot be created on this machine.
    pub fn with_pooling(max_vms: u32) -> Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(max_vms)
            .total_memories(max_vms)
            .total_tables(max_vms)
            // Keep a VM's first 2 MiB (a Rust SDK filter starts with 1.1 MiB)
            // and its tables resident between uses; with PAGEMAP_SCAN (Linux
            // 6.7+) only the pages the guest dirtied are reset, which halves
            // VM start (see docs/performance.md).
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Self::with_config(config)
    }

    fn with_config(mut config: Config) -> Result<Self> {
        config
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed);
        // `perf record` can then name the guest's functions (from the
        // module's name section) next to the host's: see README "Speed".
        if std::env::var_os("PROXY_WASM_HARNESS_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| Error::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| Error::Engine(e.to_string()))?;
        spawn_epoch_ticker(&engine);
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                shared: Arc::new(SharedState::new()),
            }),
        })
    }

    /// The current value of a metric any plugin on this runtime defined.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        self.inner.shared.lock_metrics().get(name).cloned()
    }

    /// A shared-data value as plugins with `vm_id` see it.
    pub fn shared_data(&self, vm_id: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.inner
            .shared
            .lock_data()
            .get(vm_id)
            .and_then(|m| m.get(key))
            .map(|(v, _)| v.clone())
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<Host> {
        &self.inner.linker
    }

    pub(crate) fn shared(&self) -> &Arc<SharedState> {
        &self.inner.shared
    }
}

/// Advances the engine's epoch so callback deadlines can fire. The thread
/// holds only a weak reference and ends when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = thread::Builder::new()
        .name("proxy-wasm-harness-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        });
    // Without the thread deadlines cannot fire, but everything else works.
    drop(spawned);
}
