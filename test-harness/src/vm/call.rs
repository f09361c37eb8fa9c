//! Guarded calls into the guest: callbacks looked up on first use, each
//! call under the callback deadline and the memory limit, a trap turned
//! into the harness's error (and the VM retired), and the work host calls
//! deferred until the call returned.

use std::mem;
use std::time::Duration;

use wasmtime::{Instance, Store, Trap, TypedFunc, WasmBacktrace, WasmParams, WasmResults};

use crate::abi::LogLevel;
use crate::error::{Repr, Result};
use crate::host::{Deferred, Host, HostTrap, Phase};
use crate::plugin::{PluginInner, callback_index};

use super::Vm;

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
    pub(super) const fn new() -> Self {
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
pub(super) fn typed<P: WasmParams, R: WasmResults>(
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
    /// The guest's callback in `slot`, if it exports one.
    pub(crate) fn callback<P: WasmParams, R: WasmResults>(
        &mut self,
        slot: impl FnOnce(&mut Callbacks) -> &mut Slot<P, R>,
    ) -> Option<TypedFunc<P, R>> {
        slot(&mut self.callbacks).get(&mut self.store, &self.instance, &self.plugin)
    }

    /// Calls into the guest with the deadline armed and the context set;
    /// turns traps into [`Error`]s and poisons the VM, and turns harness
    /// problems raised during the call into [`ErrorKind::Harness`](crate::ErrorKind::Harness).
    ///
    /// Under a failure policy a failed VM runs nothing (the call returns
    /// `R::default()`), and a guest failure in a callback fails the VM
    /// without being the caller's error: when it was a stream's own filter
    /// callback, that stream is answered 503 (see `failure`).
    pub(crate) fn invoke<R: Default>(
        &mut self,
        callback: &'static str,
        context: u32,
        phase: Phase,
        call: impl FnOnce(&mut Store<Host>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        if let Some(cause) = &self.poisoned {
            if self.policy_absorbs(phase) {
                return Ok(R::default());
            }
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
                if !self.policy_absorbs(phase) {
                    return Err(error.into());
                }
                if STREAM_CALLBACKS.contains(&callback) {
                    self.fail_stream(context);
                }
                Ok(R::default())
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
}

/// The callbacks of a stream's own filter chain steps: Envoy answers the
/// stream 503 when one of them fails the VM (cpp-host `CHECK_FAIL_HTTP`).
/// A failure in another callback (a callout's answer, a tick, `on_log`)
/// fails the VM only.
const STREAM_CALLBACKS: &[&str] = &[
    "proxy_on_context_create",
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
];

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
