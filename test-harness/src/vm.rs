//! One VM of a plugin: its own `Store`, started as Envoy starts one, with a
//! guarded way to call into the guest.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Extern, Instance, Store, Trap, TypedFunc, WasmBacktrace, WasmParams, WasmResults};

use crate::abi::{AbiVersion, LogLevel};
use crate::error::{Error, Repr, Result};
use crate::host::{CalloutEvent, Deferred, Host, HostTrap, PendingCall, Phase};
use crate::log::LogEntry;
use crate::plugin::{PluginInner, callback_index};
use crate::process::Metric;
use crate::properties;
use crate::runtime::EPOCH_TICK;
use crate::upstream::{CallOutcome, GrpcCall, GrpcUpstream, HttpCall, HttpResponse, Upstream};

/// A guest callback, looked up on first use: most VMs never call most of
/// the ~25 callbacks an SDK module exports, and each lookup costs a type check.
pub(crate) struct Slot<P, R> {
    name: &'static str,
    resolved: Option<Option<TypedFunc<P, R>>>,
}

impl<P: WasmParams, R: WasmResults> Slot<P, R> {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            resolved: None,
        }
    }

    fn get(
        &mut self,
        store: &mut Store<Host>,
        instance: &Instance,
        plugin: &PluginInner,
    ) -> Option<TypedFunc<P, R>> {
        self.resolved
            .get_or_insert_with(|| typed(store, instance, plugin, self.name))
            .clone()
    }
}

/// The guest callbacks this VM may call.
pub(crate) struct Callbacks {
    pub(crate) on_context_create: Slot<(i32, i32), ()>,
    pub(crate) on_vm_start: Slot<(i32, i32), i32>,
    pub(crate) on_configure: Slot<(i32, i32), i32>,
    pub(crate) on_tick: Slot<i32, ()>,
    pub(crate) on_done: Slot<i32, i32>,
    pub(crate) on_log: Slot<i32, ()>,
    pub(crate) on_delete: Slot<i32, ()>,
    /// Indexed by [`Direction`]: request, response. ABI 0.1.0 headers
    /// callbacks take no `end_of_stream`.
    pub(crate) headers_v0_1: [Slot<(i32, i32), i32>; 2],
    pub(crate) headers: [Slot<(i32, i32, i32), i32>; 2],
    pub(crate) body: [Slot<(i32, i32, i32), i32>; 2],
    pub(crate) trailers: [Slot<(i32, i32), i32>; 2],
    pub(crate) on_http_call_response: Slot<(i32, i32, i32, i32, i32), ()>,
    pub(crate) on_queue_ready: Slot<(i32, i32), ()>,
    pub(crate) on_grpc_receive_initial_metadata: Slot<(i32, i32, i32), ()>,
    pub(crate) on_grpc_receive: Slot<(i32, i32, i32), ()>,
    pub(crate) on_grpc_receive_trailing_metadata: Slot<(i32, i32, i32), ()>,
    pub(crate) on_grpc_close: Slot<(i32, i32, i32), ()>,
    pub(crate) on_new_connection: Slot<i32, i32>,
    pub(crate) on_downstream_data: Slot<(i32, i32, i32), i32>,
    pub(crate) on_upstream_data: Slot<(i32, i32, i32), i32>,
    pub(crate) on_downstream_connection_close: Slot<(i32, i32), ()>,
    pub(crate) on_upstream_connection_close: Slot<(i32, i32), ()>,
}

impl Callbacks {
    const fn new() -> Self {
        Self {
            on_context_create: Slot::new("proxy_on_context_create"),
            on_vm_start: Slot::new("proxy_on_vm_start"),
            on_configure: Slot::new("proxy_on_configure"),
            on_tick: Slot::new("proxy_on_tick"),
            on_done: Slot::new("proxy_on_done"),
            on_log: Slot::new("proxy_on_log"),
            on_delete: Slot::new("proxy_on_delete"),
            headers_v0_1: [
                Slot::new("proxy_on_request_headers"),
                Slot::new("proxy_on_response_headers"),
            ],
            headers: [
                Slot::new("proxy_on_request_headers"),
                Slot::new("proxy_on_response_headers"),
            ],
            body: [
                Slot::new("proxy_on_request_body"),
                Slot::new("proxy_on_response_body"),
            ],
            trailers: [
                Slot::new("proxy_on_request_trailers"),
                Slot::new("proxy_on_response_trailers"),
            ],
            on_http_call_response: Slot::new("proxy_on_http_call_response"),
            on_queue_ready: Slot::new("proxy_on_queue_ready"),
            on_grpc_receive_initial_metadata: Slot::new("proxy_on_grpc_receive_initial_metadata"),
            on_grpc_receive: Slot::new("proxy_on_grpc_receive"),
            on_grpc_receive_trailing_metadata: Slot::new("proxy_on_grpc_receive_trailing_metadata"),
            on_grpc_close: Slot::new("proxy_on_grpc_close"),
            on_new_connection: Slot::new("proxy_on_new_connection"),
            on_downstream_data: Slot::new("proxy_on_downstream_data"),
            on_upstream_data: Slot::new("proxy_on_upstream_data"),
            on_downstream_connection_close: Slot::new("proxy_on_downstream_connection_close"),
            on_upstream_connection_close: Slot::new("proxy_on_upstream_connection_close"),
        }
    }
}

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

fn typed<P: WasmParams, R: WasmResults>(
    store: &mut Store<Host>,
    instance: &Instance,
    plugin: &PluginInner,
    name: &str,
) -> Option<TypedFunc<P, R>> {
    let export = plugin.exports.get(callback_index(name))?.as_ref()?;
    let func = instance
        .get_module_export(&mut *store, export)?
        .into_func()?;
    // Signatures were checked when the plugin was built.
    func.typed(&*store).ok()
}

impl Vm {
    pub(crate) fn start(plugin: &Arc<PluginInner>, start_time_ns: u64) -> Result<Self> {
        let runtime = &plugin.runtime;
        let host = Host::new(
            plugin.settings.clone(),
            runtime.shared().clone(),
            plugin.abi,
            runtime.shared().new_vm_uid(),
            start_time_ns,
        );
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

    /// The guest's callback in `slot`, if it exports one.
    pub(crate) fn callback<P: WasmParams, R: WasmResults>(
        &mut self,
        slot: impl FnOnce(&mut Callbacks) -> &mut Slot<P, R>,
    ) -> Option<TypedFunc<P, R>> {
        slot(&mut self.callbacks).get(&mut self.store, &self.instance, &self.plugin)
    }

    pub(crate) fn new_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        id
    }

    /// Calls into the guest with the deadline armed and the context set;
    /// turns traps into [`Error`]s and poisons the VM, and turns harness
    /// problems raised during the call into [`ErrorKind::Harness`](crate::ErrorKind::Harness).
    pub(crate) fn invoke<R>(
        &mut self,
        callback: &'static str,
        context: u32,
        phase: Phase,
        call: impl FnOnce(&mut Store<Host>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        if let Some(cause) = &self.poisoned {
            return Err(Repr::Poisoned {
                cause: cause.clone(),
            }
            .into());
        }
        let mark = {
            let host = self.store.data_mut();
            host.phase = phase;
            host.active = context;
            host.effective = None;
            host.limiter.refused = None;
            host.logs.len()
        };
        {
            let host = self.store.data_mut();
            host.count_callback(callback);
            host.meter.begin(callback);
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        let result = call(&mut self.store);
        let host = self.store.data_mut();
        let costs = match host.streams.get_mut(&context) {
            Some(stream) => &mut stream.costs,
            None => &mut host.other_costs,
        };
        host.meter.end(costs);
        host.phase = Phase::Idle;
        host.effective = None;
        match result {
            Ok(value) if host.problems.is_empty() => Ok(value),
            Ok(_) => Err(Repr::Harness {
                callback: callback.into(),
                problems: mem::take(&mut host.problems),
            }
            .into()),
            Err(err) => {
                let deadline = self.plugin.settings.callback_deadline;
                let error = classify(callback, &err, host, mark, deadline);
                self.poisoned = Some(error.to_string());
                Err(error.into())
            }
        }
    }

    /// Runs the work host calls deferred until the VM call returned.
    pub(crate) fn flush_deferred(&mut self) -> Result<()> {
        let deferred = mem::take(&mut self.store.data_mut().deferred);
        self.run_deferred(deferred)
    }

    pub(crate) fn run_deferred(&mut self, deferred: Vec<Deferred>) -> Result<()> {
        for action in deferred {
            match action {
                Deferred::Continue { stream, dir } => self.resume(stream, dir)?,
                Deferred::LocalResponse { stream, response } => {
                    self.local_reply(stream, response);
                }
                Deferred::Reset { stream } => self.reset(stream),
                Deferred::RootDone => self.delete_root_context()?,
                Deferred::QueueReady { token } => self.queue_ready(token)?,
                Deferred::TcpResume { connection } => self.tcp_resume(connection),
                Deferred::TcpClose { connection } => {
                    if let Some(state) = self.store.data_mut().tcp.get_mut(&connection) {
                        state.closed_by_filter = true;
                    }
                }
            }
        }
        Ok(())
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

    /// Advances the virtual clock, delivering in time order what falls due:
    /// `proxy_on_tick` at every elapsed tick period, callout answers whose
    /// latency or timeout elapsed.
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error.
    pub fn advance_time(&mut self, by: Duration) -> Result<()> {
        advance(std::slice::from_mut(self), by, &mut |_| Ok(()))
    }

    /// Nanoseconds until the next tick or callout event, if any.
    pub(crate) fn until_next_event(&self) -> Option<u64> {
        let host = self.store.data();
        let tick = (host.tick_period_ns > 0).then_some(host.next_tick_ns);
        let call = host.pending_calls.iter().map(|p| p.due_ns).min();
        let next = match (tick, call) {
            (Some(t), Some(c)) => t.min(c),
            (t, c) => t.or(c)?,
        };
        Some(next.saturating_sub(host.clock.monotonic_ns))
    }

    /// Moves both clocks forward.
    pub(crate) fn elapse(&mut self, ns: u64) {
        let clock = &mut self.store.data_mut().clock;
        clock.monotonic_ns = clock.monotonic_ns.saturating_add(ns);
        clock.realtime_ns = clock.realtime_ns.saturating_add(ns);
    }

    /// Runs what is due at the current instant: callout answers first, then
    /// the tick. Returns whether anything ran.
    pub(crate) fn fire_due(&mut self) -> Result<bool> {
        let mut ran = self.settle()?;
        let host = self.store.data_mut();
        if host.tick_period_ns > 0 && host.next_tick_ns <= host.clock.monotonic_ns {
            host.next_tick_ns = host.clock.monotonic_ns + host.tick_period_ns;
            let root = host.root_id;
            if let Some(f) = self.callback(|c| &mut c.on_tick) {
                self.invoke("proxy_on_tick", root, Phase::Callback, |s| {
                    f.call(s, root as i32)
                })?;
            }
            self.flush_deferred()?;
            self.settle()?;
            ran = true;
        }
        Ok(ran)
    }

    /// Delivers everything due now: callout answers (earliest first) and
    /// queue notifications other VMs left for this one, handling after each
    /// what the VM's own streams' filters asked for (local replies, resets).
    /// Returns whether anything was delivered.
    pub(crate) fn settle(&mut self) -> Result<bool> {
        let mut delivered = false;
        loop {
            self.pump_own()?;
            let host = self.store.data_mut();
            let now = host.clock.monotonic_ns;
            let due = host
                .pending_calls
                .iter()
                .enumerate()
                .filter(|(_, p)| p.due_ns <= now)
                .min_by_key(|(_, p)| (p.due_ns, p.seq))
                .map(|(i, _)| i);
            if let Some(index) = due {
                let event = host.pending_calls.remove(index);
                self.deliver_event(event)?;
                delivered = true;
                continue;
            }
            let ready = host.shared.lock_queues().take_ready(host.vm_uid);
            if ready.is_empty() {
                return Ok(delivered);
            }
            for token in ready {
                self.queue_ready(token)?;
            }
            delivered = true;
        }
    }

    /// Delivers a callout event to the root context, with what it may read
    /// set for the duration of the callback.
    fn deliver_event(&mut self, pending: PendingCall) -> Result<()> {
        let token = pending.token;
        let result = match pending.event {
            CalloutEvent::HttpResponse(response) => self.deliver_http_response(token, response),
            CalloutEvent::GrpcInitialMetadata(metadata) => {
                let n = metadata.len() as i32;
                self.store.data_mut().grpc_initial_metadata = Some(metadata);
                self.call_root3(
                    |c| &mut c.on_grpc_receive_initial_metadata,
                    "proxy_on_grpc_receive_initial_metadata",
                    token,
                    n,
                )
            }
            CalloutEvent::GrpcMessage(message) => {
                let size = message.len() as i32;
                self.store.data_mut().grpc_message = Some(message);
                let result = self.call_root3(
                    |c| &mut c.on_grpc_receive,
                    "proxy_on_grpc_receive",
                    token,
                    size,
                );
                // A unary call is over once its answer arrived.
                let host = self.store.data_mut();
                if let Some(&(index, _)) = host.grpc_open.get(&token)
                    && !host.grpc_calls[index].streaming
                {
                    host.grpc_open.remove(&token);
                }
                result
            }
            CalloutEvent::GrpcTrailingMetadata(metadata) => {
                let n = metadata.len() as i32;
                self.store.data_mut().grpc_trailing_metadata = Some(metadata);
                self.call_root3(
                    |c| &mut c.on_grpc_receive_trailing_metadata,
                    "proxy_on_grpc_receive_trailing_metadata",
                    token,
                    n,
                )
            }
            CalloutEvent::GrpcClose(code, message) => {
                let host = self.store.data_mut();
                host.status = (code, message.into_bytes());
                host.grpc_open.remove(&token);
                self.call_root3(
                    |c| &mut c.on_grpc_close,
                    "proxy_on_grpc_close",
                    token,
                    code as i32,
                )
            }
        };
        let host = self.store.data_mut();
        host.call_response = None;
        host.grpc_message = None;
        host.grpc_initial_metadata = None;
        host.grpc_trailing_metadata = None;
        // Envoy clears the status message after the callback but keeps the
        // code: `proxy_get_status` answers it in every later callback, on
        // any context, until the next callout sets another (measured in
        // Envoy 1.40 with the ABI probe).
        host.status.1.clear();
        result?;
        self.flush_deferred()
    }

    /// A gRPC callback `(root, token, value)`.
    fn call_root3(
        &mut self,
        slot: impl FnOnce(&mut Callbacks) -> &mut Slot<(i32, i32, i32), ()>,
        name: &'static str,
        token: u32,
        value: i32,
    ) -> Result<()> {
        let root = self.store.data().root_id;
        match self.callback(slot) {
            Some(f) => self.invoke(name, root, Phase::Callback, |s| {
                f.call(s, (root as i32, token as i32, value))
            }),
            None => Ok(()),
        }
    }

    /// `proxy_on_http_call_response` with the response maps and body
    /// readable; a reset has zero headers and status (BrokenConnection = 11,
    /// "reset"), as in Envoy.
    fn deliver_http_response(&mut self, token: u32, response: Option<HttpResponse>) -> Result<()> {
        let host = self.store.data_mut();
        let root = host.root_id as i32;
        let sizes = match &response {
            Some(r) => (r.headers.len(), r.body.len(), r.trailers.len()),
            None => {
                host.status = (11, b"reset".to_vec());
                (0, 0, 0)
            }
        };
        host.call_response = response;
        let token = token as i32;
        match self.callback(|c| &mut c.on_http_call_response) {
            Some(f) => self.invoke(
                "proxy_on_http_call_response",
                root as u32,
                Phase::Callback,
                |s| {
                    f.call(
                        s,
                        (root, token, sizes.0 as i32, sizes.1 as i32, sizes.2 as i32),
                    )
                },
            ),
            None => Ok(()),
        }
    }

    /// Every gRPC call and stream the plugin opened, in order.
    pub fn grpc_calls(&self) -> &[GrpcCall] {
        &self.store.data().grpc_calls
    }

    /// Adds or replaces a gRPC upstream for calls from now on.
    pub fn set_grpc_upstream(&mut self, name: impl Into<String>, upstream: GrpcUpstream) {
        Arc::make_mut(&mut self.store.data_mut().grpc_upstreams).insert(name.into(), upstream);
    }

    fn queue_ready(&mut self, token: u32) -> Result<()> {
        let root = self.store.data().root_id;
        if let Some(f) = self.callback(|c| &mut c.on_queue_ready) {
            self.invoke("proxy_on_queue_ready", root, Phase::Callback, |s| {
                f.call(s, (root as i32, token as i32))
            })?;
        }
        self.flush_deferred()
    }

    /// Every `proxy_http_call` the plugin made, in order.
    pub fn http_calls(&self) -> &[HttpCall] {
        &self.store.data().http_calls
    }

    /// Answers a call its upstream left to the driver
    /// ([`CallOutcome::Deferred`]): a response or a reset, delivered now.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when no deferred call has this token (it was
    /// answered already) or the outcome is not an answer; otherwise as
    /// [`Vm::advance_time`].
    pub fn answer_http_call(&mut self, token: u32, outcome: CallOutcome) -> Result<()> {
        self.schedule_answer(token, outcome)?;
        self.advance_time(Duration::ZERO)
    }

    /// Queues the answer to a deferred call for delivery at the current
    /// instant.
    pub(crate) fn schedule_answer(&mut self, token: u32, outcome: CallOutcome) -> Result<()> {
        let response = match outcome {
            CallOutcome::Respond(response) => Some(response),
            CallOutcome::Reset => None,
            CallOutcome::NoResponse | CallOutcome::Deferred => {
                return Err(Error::invalid_state(
                    "answer a deferred call with a response or a reset",
                ));
            }
        };
        let host = self.store.data_mut();
        let Some(index) = host.deferred_calls.iter().position(|t| *t == token) else {
            return Err(Error::invalid_state(format!(
                "no deferred HTTP call with token {token} is waiting for an answer"
            )));
        };
        host.deferred_calls.swap_remove(index);
        host.schedule(token, Duration::ZERO, CalloutEvent::HttpResponse(response));
        Ok(())
    }

    /// Adds or replaces an upstream for calls from now on (rotate a JWKS,
    /// take a service down, ...).
    pub fn set_upstream(&mut self, name: impl Into<String>, upstream: Upstream) {
        Arc::make_mut(&mut self.store.data_mut().upstreams).insert(name.into(), upstream);
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
        let ns = self.store.data().tick_period_ns;
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

    /// Why this VM cannot be used any more, if it trapped.
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

/// Explains a failed guest call in the terms a filter author needs.
fn classify(
    callback: &str,
    err: &wasmtime::Error,
    host: &mut Host,
    mark: usize,
    deadline: Duration,
) -> Repr {
    let callback = callback.to_owned();
    let backtrace = err.downcast_ref::<WasmBacktrace>().map(|b| b.to_string());
    if let Some(HostTrap(message)) = err.downcast_ref::<HostTrap>() {
        return Repr::Trap {
            callback,
            message: message.clone(),
            panic: None,
            backtrace,
        };
    }
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return Repr::Timeout { callback, deadline };
    }
    // The SDK logs a panic at CRITICAL; Rust's std writes panics and
    // allocation failures to stderr (ERROR logs), a line per write.
    let lines: Vec<&str> = host
        .logs
        .get(mark..)
        .unwrap_or_default()
        .iter()
        .filter(|l| l.level >= LogLevel::Error)
        .map(|l| l.message.trim())
        .collect();
    let guest_message =
        (!lines.is_empty()).then(|| lines[lines.len().saturating_sub(5)..].join(" | "));
    if let Some(requested) = host.limiter.refused.take() {
        return Repr::MemoryLimit {
            callback,
            requested,
            limit: host.limiter.limit,
            guest_message,
        };
    }
    let message = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    Repr::Trap {
        callback,
        message,
        panic: guest_message,
        backtrace,
    }
}

/// Delivers everything due now in every VM until nothing moves.
pub(crate) fn settle(vms: &mut [Vm], pump: &mut dyn FnMut(&mut [Vm]) -> Result<()>) -> Result<()> {
    loop {
        pump(vms)?;
        let mut moved = false;
        for vm in vms.iter_mut() {
            moved |= vm.fire_due()?;
        }
        if !moved {
            return Ok(());
        }
    }
}

/// Moves the VMs' clocks together by `by`, stopping at every instant an
/// event falls due in any of them.
pub(crate) fn advance(
    vms: &mut [Vm],
    by: Duration,
    pump: &mut dyn FnMut(&mut [Vm]) -> Result<()>,
) -> Result<()> {
    let mut left = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
    loop {
        settle(vms, pump)?;
        let next = vms.iter().filter_map(Vm::until_next_event).min();
        match next {
            // Everything due now was delivered, so the step is never 0.
            Some(step) if step <= left => {
                let step = step.max(1);
                for vm in vms.iter_mut() {
                    vm.elapse(step);
                }
                left -= step.min(left);
            }
            _ => {
                for vm in vms.iter_mut() {
                    vm.elapse(left);
                }
                return settle(vms, pump);
            }
        }
    }
}
