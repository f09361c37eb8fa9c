//! The engine and linker plugins are compiled with, and the handle to the
//! process-wide state (`process`) their VMs share.

use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, OptLevel, PoolingAllocationConfig,
};

use crate::error::{Repr, Result};
use crate::host::{self, Host};
use crate::process::{Metric, SharedState};

/// How often the engine's epoch advances; callback deadlines are counted in
/// these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

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
        let engine = Engine::new(&config).map_err(|e| Repr::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| Repr::Engine(e.to_string()))?;
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

    /// What plugins on this runtime keep in shared data and shared queues,
    /// in bytes (keys, values and queued items): watch it for growth
    /// without bound, as Envoy keeps both for the life of the process.
    pub fn shared_bytes(&self) -> usize {
        let data: usize = self
            .inner
            .shared
            .lock_data()
            .values()
            .flat_map(|m| m.iter())
            .map(|(k, (v, _))| k.len() + v.len())
            .sum();
        data + self.inner.shared.lock_queues().queued_bytes()
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
