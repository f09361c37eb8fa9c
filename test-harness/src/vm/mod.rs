//! One VM of a plugin: its own `Store`, started as Envoy starts one. Its
//! guarded calls into the guest are in `call`, its virtual clock and the
//! events that fall due on it in `clock`, the callouts it answers in
//! `callouts`.

mod call;
mod callouts;
mod clock;
mod failure;

use call::typed;
pub(crate) use call::{Callbacks, Slot};
pub(crate) use clock::{advance, settle};

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Extern, Instance, Store, TypedFunc};

use crate::abi::{AbiVersion, LogLevel};
use crate::error::{Repr, Result};
use crate::host::{Clock, Host, Phase};
use crate::log::LogEntry;
use crate::plugin::PluginInner;
use crate::process::Metric;
use crate::properties;
use crate::runtime::EPOCH_TICK;

/// A running VM of a [`Plugin`](crate::Plugin): the module instantiated in
/// its own store, its root context created and configured. Drive HTTP
/// streams through it with [`Vm::http_stream`] and inspect what the plugin
/// did. A VM whose guest trapped is never used again.
pub struct Vm {
    pub(crate) store: Store<Host>,
    pub(crate) plugin: Arc<PluginInner>,
    instance: Instance,
    callbacks: Callbacks,
    next_context_id: u32,
    poisoned: Option<String>,
    deadline_ticks: u64,
    /// Monotonic time the VM was last loaded (FAIL_RELOAD's back-off
    /// counts from it).
    last_load_ns: u64,
    /// New VMs FAIL_RELOAD started in this one's place.
    reloads: u32,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("abi", &self.plugin.abi)
            .field("root_context_id", &self.store.data().root_id)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Vm {
    pub(crate) fn start(plugin: &Arc<PluginInner>, start_time_ns: u64) -> Result<Self> {
        let clock = Clock {
            realtime_ns: start_time_ns,
            monotonic_ns: 0,
        };
        Self::boot(plugin, clock)
    }

    /// Starts a VM whose clocks read `clock` (a reloaded VM goes on with
    /// the clocks of the one it replaces).
    pub(crate) fn boot(plugin: &Arc<PluginInner>, clock: Clock) -> Result<Self> {
        let runtime = &plugin.runtime;
        let mut host = Host::new(
            plugin.settings.clone(),
            runtime.shared().clone(),
            plugin.abi,
            runtime.shared().new_vm_uid(),
            clock.realtime_ns,
        );
        host.clock = clock;
        let mut store = Store::new(runtime.engine(), host);
        store.limiter(|host| &mut host.limiter);
        store.epoch_deadline_trap();
        let tick = EPOCH_TICK.as_millis().max(1);
        let deadline_ticks =
            (plugin.settings.callback_deadline.as_millis() / tick).max(1) as u64 + 1;
        store.set_epoch_deadline(deadline_ticks);
        let instance = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| Repr::Instantiate {
                reason: format!("{e:#}"),
            })?;
        let memory = instance
            .get_module_export(&mut store, &plugin.memory_export)
            .and_then(Extern::into_memory);
        // Envoy looks for `malloc` first, then `proxy_on_memory_allocate`.
        let alloc = typed(&mut store, &instance, plugin, "malloc")
            .or_else(|| typed(&mut store, &instance, plugin, "proxy_on_memory_allocate"));
        let start_fns = StartFunctions {
            initialize: typed(&mut store, &instance, plugin, "_initialize"),
            main: typed(&mut store, &instance, plugin, "main"),
            main_void: typed(&mut store, &instance, plugin, "__main_void"),
            start: typed(&mut store, &instance, plugin, "_start"),
        };
        {
            let host = store.data_mut();
            host.memory = memory;
            host.alloc = alloc;
        }
        let mut vm = Vm {
            store,
            plugin: plugin.clone(),
            instance,
            callbacks: Callbacks::new(),
            next_context_id: 1,
            poisoned: None,
            deadline_ticks,
            last_load_ns: clock.monotonic_ns,
            reloads: 0,
        };
        vm.initialize(start_fns)?;
        vm.create_root_context()?;
        vm.settle()?;
        Ok(vm)
    }

    /// `_initialize` then `main(0, 0)` (or `__main_void`), else `_start`.
    fn initialize(&mut self, fns: StartFunctions) -> Result<()> {
        if let Some(init) = fns.initialize {
            self.invoke("_initialize", 0, Phase::Start, |s| init.call(s, ()))?;
            if let Some(main) = fns.main {
                self.invoke("main", 0, Phase::Start, |s| main.call(s, (0, 0)))?;
            } else if let Some(main) = fns.main_void {
                self.invoke("__main_void", 0, Phase::Start, |s| main.call(s, ()))?;
            }
        } else if let Some(start) = fns.start {
            self.invoke("_start", 0, Phase::Start, |s| start.call(s, ()))?;
        }
        Ok(())
    }

    fn create_root_context(&mut self) -> Result<()> {
        let root = self.new_context_id();
        self.store.data_mut().root_id = root;
        let id = root as i32;
        if let Some(f) = self.callback(|c| &mut c.on_context_create) {
            self.invoke("proxy_on_context_create", root, Phase::Callback, |s| {
                f.call(s, (id, 0))
            })?;
        }
        let mark = self.store.data().logs.len();
        let settings = self.plugin.settings.clone();
        if let Some(f) = self.callback(|c| &mut c.on_vm_start) {
            let size = settings.vm_configuration.len() as i32;
            let ok = self.invoke("proxy_on_vm_start", root, Phase::VmStart, |s| {
                f.call(s, (id, size))
            })?;
            if ok == 0 {
                return Err(Repr::VmStartFailed {
                    logs: self.store.data().logs[mark..].to_vec(),
                }
                .into());
            }
        }
        if let Some(f) = self.callback(|c| &mut c.on_configure) {
            let size = settings.configuration.len() as i32;
            let ok = self.invoke("proxy_on_configure", root, Phase::Configure, |s| {
                f.call(s, (id, size))
            })?;
            if ok == 0 {
                return Err(Repr::ConfigurationRejected {
                    logs: self.store.data().logs[mark..].to_vec(),
                }
                .into());
            }
        }
        self.flush_deferred()
    }

    pub(crate) fn new_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        id
    }

    fn delete_root_context(&mut self) -> Result<()> {
        let root = self.store.data().root_id;
        self.store.data_mut().root_pending_done = false;
        if let Some(f) = self.callback(|c| &mut c.on_delete) {
            self.invoke("proxy_on_delete", root, Phase::Callback, |s| {
                f.call(s, root as i32)
            })?;
        }
        Ok(())
    }

    /// Shuts the plugin down as Envoy does when it is removed: calls
    /// `proxy_on_done` on the root context, then `proxy_on_delete` — at once
    /// if it answered true, or when it later calls `proxy_done`.
    /// Returns whether the root context is gone.
    ///
    /// # Errors
    ///
    /// When the guest traps.
    pub fn shutdown(&mut self) -> Result<bool> {
        let root = self.store.data().root_id;
        let done = match self.callback(|c| &mut c.on_done) {
            Some(f) => {
                self.invoke("proxy_on_done", root, Phase::Callback, |s| {
                    f.call(s, root as i32)
                })? != 0
            }
            None => true,
        };
        if done {
            self.delete_root_context()?;
        } else {
            self.store.data_mut().root_pending_done = true;
        }
        self.flush_deferred()?;
        self.settle()?;
        Ok(!self.store.data().root_pending_done)
    }

    /// How many times the guest's `callback` (e.g. `proxy_on_request_headers`)
    /// ran in this VM.
    pub fn callback_count(&self, callback: &str) -> u64 {
        self.store
            .data()
            .callback_counts
            .iter()
            .filter(|(name, _)| *name == callback)
            .map(|(_, count)| count)
            .sum()
    }

    /// What callbacks on contexts other than HTTP streams cost: the root
    /// context's (start, configuration, ticks, callouts it made, queues) and
    /// TCP connections'. A stream's are in [`HttpStream::costs`](crate::HttpStream::costs)
    /// and [`Exchange::costs`](crate::Exchange::costs).
    pub fn costs(&self) -> &crate::Costs {
        &self.store.data().other_costs
    }

    /// The tick period the plugin set, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        let ns = self.store.data().tick.period_ns;
        (ns > 0).then(|| Duration::from_nanos(ns))
    }

    /// The virtual wall-clock time the plugin sees.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.store.data().clock.realtime_ns)
    }

    /// Every log line the plugin wrote, in order.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    /// Takes the log lines written so far.
    pub fn take_logs(&mut self) -> Vec<LogEntry> {
        mem::take(&mut self.store.data_mut().logs)
    }

    /// Whether a log line at `level` contains `text`.
    pub fn has_log(&self, level: LogLevel, text: &str) -> bool {
        self.logs()
            .iter()
            .any(|l| l.level == level && l.message.contains(text))
    }

    /// Sets a host property (dotted path) for every context from now on.
    pub fn set_property(&mut self, path: &str, value: impl Into<Vec<u8>>) {
        Arc::make_mut(&mut self.store.data_mut().properties)
            .insert(properties::path_from_dotted(path), value.into());
    }

    /// A property as the root context reads it: a stream's properties
    /// (`request.*`, `xds.route_name`, ...) are not there, as in Envoy; read
    /// them with [`HttpStream::property`](crate::HttpStream::property).
    pub fn property(&self, path: &str) -> Option<Vec<u8>> {
        self.store
            .data()
            .property_for(&properties::path_from_dotted(path), None)
            .ok()
    }

    /// A metric's current value (shared by every VM of the runtime).
    pub fn metric(&self, name: &str) -> Option<Metric> {
        self.plugin.runtime.metric(name)
    }

    /// A shared-data value under this VM's vm_id.
    pub fn shared_data(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.plugin
            .runtime
            .shared_data(&self.plugin.settings.vm_id, key)
    }

    /// How often the plugin asked Envoy to clear the route cache: request
    /// header writes under ABI <= 0.2.1, `clear_route_cache` calls.
    pub fn route_cache_clears(&self) -> u32 {
        self.store.data().route_cache_clears
    }

    /// Capabilities the module called outside its restriction
    /// ([`PluginBuilder::allowed_capabilities`](crate::PluginBuilder::allowed_capabilities)),
    /// in order: each answered as Envoy's stub does.
    pub fn restricted_calls(&self) -> &[&'static str] {
        &self.store.data().restricted_calls
    }

    /// Linear-memory size in 64 KiB pages (watch it for leaks).
    pub fn memory_pages(&self) -> u64 {
        self.store.data().memory.map_or(0, |m| m.size(&self.store))
    }

    /// The guest's linear memory, read-only.
    pub fn guest_memory(&self) -> &[u8] {
        self.store
            .data()
            .memory
            .map_or(&[], |m| m.data(&self.store))
    }

    /// The ABI version the module declares.
    pub fn abi_version(&self) -> AbiVersion {
        self.plugin.abi
    }

    /// The root context's id.
    pub fn root_context_id(&self) -> u32 {
        self.store.data().root_id
    }

    /// Why this VM cannot be used any more, if it trapped (the same as
    /// [`Vm::failure`]).
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }
}

struct StartFunctions {
    initialize: Option<TypedFunc<(), ()>>,
    main: Option<TypedFunc<(i32, i32), i32>>,
    main_void: Option<TypedFunc<(), i32>>,
    start: Option<TypedFunc<(), ()>>,
}
