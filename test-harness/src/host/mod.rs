//! The host side of the ABI: the state a VM's `Store` carries and the host
//! functions, grouped as the spec groups them.

/// Registers `proxy_*` host functions under `env`, each named once: its Rust
/// name is its ABI name, and the wrapper [`HostFn::link`] puts around it
/// counts the call and refuses it while the module starts ([`enter`]).
macro_rules! register {
    ($linker:expr, $($function:ident),+ $(,)?) => {
        $( super::HostFn::link($function, $linker, stringify!($function))?; )+
    };
}

mod crypto;
mod fields;
mod foreign;
mod grpc;
mod http_call;
mod legacy;
mod lifecycle;
mod queues;
mod shared;
mod wasi;

pub use crypto::{sign, verify_signature};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use wasmtime::{Caller, Linker, Memory, ResourceLimiter, TypedFunc};

use crate::abi::{AbiVersion, LogLevel, Status};
use crate::costs::{Costs, Meter};
use crate::headers::HeaderMap;
use crate::log::LogEntry;
use crate::process::SharedState;
use crate::properties;
use crate::settings::PluginSettings;
use crate::stream_state::{Direction, HttpStreamState, LocalResponse};
use crate::tcp_state::TcpState;
use crate::upstream::HttpResponse;

/// What every host function returns: a status code, or a trap.
type Ret = wasmtime::Result<i32>;

fn status(s: Status) -> Ret {
    Ok(s.code())
}

/// What the guest is doing now, for the rules that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No callback is running.
    Idle,
    /// `_initialize`/`main`/`_start`: only logging and WASI may run.
    Start,
    VmStart,
    Configure,
    /// Any other callback.
    Callback,
}

/// Work a host call asks for that Envoy runs after the VM call returns
/// (`addAfterVmCallAction`), never inline.
#[derive(Debug)]
pub(crate) enum Deferred {
    Continue {
        stream: u32,
        dir: Direction,
    },
    LocalResponse {
        stream: u32,
        response: LocalResponse,
    },
    Reset {
        stream: u32,
    },
    RootDone,
    /// An item was enqueued on a queue this VM registered.
    QueueReady {
        token: u32,
    },
    /// `proxy_continue_stream(DOWNSTREAM)` on a TCP connection.
    TcpResume {
        connection: u32,
    },
    /// `proxy_close_stream(DOWNSTREAM/UPSTREAM)` on a TCP connection.
    TcpClose {
        connection: u32,
    },
}

/// Something a callout delivers to the plugin.
#[derive(Debug)]
pub(crate) enum CalloutEvent {
    /// An HTTP call's answer; `None`: the connection was reset.
    HttpResponse(Option<HttpResponse>),
    GrpcInitialMetadata(HeaderMap),
    GrpcMessage(Vec<u8>),
    GrpcTrailingMetadata(HeaderMap),
    GrpcClose(u32, String),
}

impl Deferred {
    /// Whether this is work for HTTP stream `id`.
    pub(crate) fn targets_stream(&self, id: u32) -> bool {
        matches!(self, Self::Continue { stream, .. } | Self::LocalResponse { stream, .. } | Self::Reset { stream } if *stream == id)
    }
}

/// A callout event waiting for its time on the virtual clock.
#[derive(Debug)]
pub(crate) struct PendingCall {
    pub(crate) token: u32,
    pub(crate) due_ns: u64,
    /// Order among events due at the same time.
    pub(crate) seq: u64,
    pub(crate) event: CalloutEvent,
}

/// Bounds linear memory like Envoy's 1 GiB cap, remembering a refused
/// growth so the resulting trap can be explained.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

/// A trap raised by the host itself (as Envoy's V8 wrapper does for a host
/// call made where it is not allowed).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HostTrap(pub(crate) String);

/// Virtual clocks: they move only when the test advances them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) realtime_ns: u64,
    pub(crate) monotonic_ns: u64,
}

/// State of one VM, owned by its `Store`.
pub(crate) struct Host {
    pub(crate) settings: Arc<PluginSettings>,
    pub(crate) shared: Arc<SharedState>,
    pub(crate) abi: AbiVersion,
    pub(crate) memory: Option<Memory>,
    pub(crate) alloc: Option<TypedFunc<i32, i32>>,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) phase: Phase,
    /// Context of the running callback.
    pub(crate) active: u32,
    /// Context set by `proxy_set_effective_context` during this callback.
    pub(crate) effective: Option<u32>,
    pub(crate) root_id: u32,
    pub(crate) logs: Vec<LogEntry>,
    /// Harness errors raised during the running callback (for example an
    /// unimplemented host function); they fail the call that ran it.
    pub(crate) problems: Vec<String>,
    pub(crate) deferred: Vec<Deferred>,
    pub(crate) streams: BTreeMap<u32, HttpStreamState>,
    pub(crate) tcp: BTreeMap<u32, TcpState>,
    /// Properties the test set.
    pub(crate) properties: Arc<HashMap<Vec<u8>, Vec<u8>>>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) clock: Clock,
    pub(crate) tick: lifecycle::Tick,
    pub(crate) metrics: shared::Metrics,
    pub(crate) http: http_call::HttpCallouts,
    pub(crate) grpc: grpc::GrpcCallouts,
    /// The root context answered false from `proxy_on_done`.
    pub(crate) root_pending_done: bool,
    /// What `proxy_get_status` returns (set by callouts).
    pub(crate) status: (u32, Vec<u8>),
    /// Calls of the `clear_route_cache` foreign function and of 0.1.0's
    /// `proxy_clear_route_cache`.
    pub(crate) route_cache_clears: u32,
    /// Properties the root context declared (`declare_property`).
    pub(crate) declared_properties: HashMap<Vec<u8>, foreign::DeclaredProperty>,
    /// This VM's identity within its runtime (queue owners).
    pub(crate) vm_uid: u64,
    pub(crate) pending_calls: Vec<PendingCall>,
    pub(crate) next_event_seq: u64,
    /// Guest calls made, by callback name (a few entries, scanned by the
    /// name's address: cheaper than hashing on every call).
    pub(crate) callback_counts: Vec<(&'static str, u64)>,
    /// The buffer each context last read or wrote: Envoy's context keeps one
    /// buffer object that every successful `getBuffer` points somewhere,
    /// and the foreign-function-arguments buffer answers whatever it points
    /// at (measured in Envoy 1.40 with the ABI probe).
    pub(crate) last_buffer: BTreeMap<u32, crate::abi::BufferType>,
    /// The running callback's crossings.
    pub(crate) meter: Meter,
    /// Capabilities the module called outside its restriction, in order.
    pub(crate) restricted_calls: Vec<&'static str>,
    /// Crossings of callbacks on contexts that are not HTTP streams (the
    /// root context, TCP connections).
    pub(crate) other_costs: Costs,
}

impl Host {
    pub(crate) fn new(
        settings: Arc<PluginSettings>,
        shared: Arc<SharedState>,
        abi: AbiVersion,
        vm_uid: u64,
        start_time_ns: u64,
    ) -> Self {
        let properties = settings.properties.clone();
        let clock = Clock {
            realtime_ns: start_time_ns,
            monotonic_ns: 0,
        };
        Self {
            http: http_call::HttpCallouts::new(settings.upstreams.clone()),
            grpc: grpc::GrpcCallouts::new(settings.grpc_upstreams.clone()),
            tick: lifecycle::Tick::default(),
            metrics: shared::Metrics::default(),
            rng: ChaCha8Rng::seed_from_u64(settings.seed),
            limiter: MemoryLimiter {
                limit: settings.memory_limit,
                refused: None,
            },
            settings,
            shared,
            abi,
            memory: None,
            alloc: None,
            phase: Phase::Idle,
            active: 0,
            effective: None,
            root_id: 0,
            logs: Vec::new(),
            problems: Vec::new(),
            deferred: Vec::new(),
            streams: BTreeMap::new(),
            tcp: BTreeMap::new(),
            properties,
            clock,
            root_pending_done: false,
            status: (0, Vec::new()),
            route_cache_clears: 0,
            declared_properties: HashMap::new(),
            vm_uid,
            pending_calls: Vec::new(),
            next_event_seq: 0,
            callback_counts: Vec::new(),
            last_buffer: BTreeMap::new(),
            meter: Meter::default(),
            restricted_calls: Vec::new(),
            other_costs: Costs::default(),
        }
    }

    /// The context host calls act on: the effective one if it still exists,
    /// else the one whose callback runs (cpp-host `ContextOrEffectiveContext`).
    pub(crate) fn context(&self) -> u32 {
        match self.effective {
            Some(id) if self.is_context(id) => id,
            _ => self.active,
        }
    }

    /// Whether `id` names a live context (root, HTTP stream or connection).
    pub(crate) fn is_context(&self, id: u32) -> bool {
        id == self.root_id
            || self.streams.get(&id).is_some_and(|s| s.created)
            || self.tcp.contains_key(&id)
    }

    /// The TCP connection of the current context, if it is one.
    pub(crate) fn connection_mut(&mut self) -> Option<(u32, &mut TcpState)> {
        let id = self.context();
        self.tcp.get_mut(&id).map(|c| (id, c))
    }

    pub(crate) fn stream(&self) -> Option<&HttpStreamState> {
        self.streams.get(&self.context())
    }

    pub(crate) fn stream_mut(&mut self) -> Option<(u32, &mut HttpStreamState)> {
        let id = self.context();
        self.streams.get_mut(&id).map(|s| (id, s))
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: &[u8]) {
        if level < self.settings.log_level {
            return;
        }
        let context_id = self.context();
        self.logs.push(LogEntry {
            level,
            message: String::from_utf8_lossy(message).into_owned(),
            context_id,
        });
    }

    pub(crate) fn count_callback(&mut self, name: &'static str) {
        match self
            .callback_counts
            .iter_mut()
            .find(|(n, _)| std::ptr::eq(*n, name))
        {
            Some((_, count)) => *count += 1,
            None => self.callback_counts.push((name, 1)),
        }
    }

    /// Schedules a callout event `delay` from now.
    pub(crate) fn schedule(&mut self, token: u32, delay: std::time::Duration, event: CalloutEvent) {
        self.next_event_seq += 1;
        self.pending_calls.push(PendingCall {
            token,
            due_ns: self
                .clock
                .monotonic_ns
                .saturating_add(delay.as_nanos() as u64),
            seq: self.next_event_seq,
            event,
        });
    }

    /// A property as the current context reads it.
    pub(crate) fn property(&self, path: &[u8]) -> Result<Vec<u8>, properties::Missing> {
        self.property_for(path, self.stream())
    }

    /// A property as a context with `stream` (none for the root) reads it.
    pub(crate) fn property_for(
        &self,
        path: &[u8],
        stream: Option<&HttpStreamState>,
    ) -> Result<Vec<u8>, properties::Missing> {
        properties::lookup(
            path,
            stream,
            &self.properties,
            &self.settings,
            self.clock.realtime_ns,
        )
    }
}

// ---- guest memory ---------------------------------------------------------

/// Guest memory and host state borrowed together; `None` before the module's
/// memory is known (a start function calling the host).
pub(crate) fn split<'a>(caller: &'a mut Caller<'_, Host>) -> Option<(&'a mut [u8], &'a mut Host)> {
    let memory = caller.data().memory?;
    Some(memory.data_and_store_mut(caller))
}

/// `len` bytes at `ptr`, or `None` when any of them is outside memory.
pub(crate) fn slice(mem: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let start = ptr as u32 as usize;
    let bytes = mem.get(start..start.checked_add(len as u32 as usize)?)?;
    crate::costs::note_guest_read(bytes.len());
    Some(bytes)
}

pub(crate) fn write_u32(mem: &mut [u8], ptr: i32, value: u32) -> bool {
    write_bytes(mem, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(mem: &mut [u8], ptr: i32, value: u64) -> bool {
    write_bytes(mem, ptr, &value.to_le_bytes())
}

pub(crate) fn write_bytes(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> bool {
    let start = ptr as u32 as usize;
    match start
        .checked_add(bytes.len())
        .and_then(|end| mem.get_mut(start..end))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// Reads guest bytes into an owned buffer (host state may be borrowed later).
pub(crate) fn read(caller: &mut Caller<'_, Host>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let (mem, _) = split(caller)?;
    // Counted by `slice`.
    slice(mem, ptr, len).map(<[u8]>::to_vec)
}

/// Copies `bytes` into memory the guest allocates, and writes the pointer and
/// size to the guest's out-pointers. An empty value is written as 0/0 without
/// calling the allocator, as Envoy does. Each value comes from one allocation
/// of exactly its size: the Rust SDK adopts it with `Vec::from_raw_parts`.
pub(crate) fn copy_out(
    caller: &mut Caller<'_, Host>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> wasmtime::Result<Status> {
    let Some(ptr) = place(caller, bytes)? else {
        return Ok(Status::InvalidMemoryAccess);
    };
    let Some((mem, _)) = split(caller) else {
        return Ok(Status::InvalidMemoryAccess);
    };
    let ok = write_u32(mem, ptr_ptr, ptr) && write_u32(mem, size_ptr, bytes.len() as u32);
    Ok(if ok {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}

/// Copies `bytes` into one allocation of exactly their size in guest memory
/// and answers its address: 0 for an empty value, without calling the
/// allocator; `None` when the allocation or the copy fails.
pub(crate) fn place(caller: &mut Caller<'_, Host>, bytes: &[u8]) -> wasmtime::Result<Option<u32>> {
    if bytes.is_empty() {
        return Ok(Some(0));
    }
    let Some(ptr) = allocate(caller, bytes.len())? else {
        return Ok(None);
    };
    let Some((mem, host)) = split(caller) else {
        return Ok(None);
    };
    host.meter.copied_to_guest(bytes.len());
    Ok(write_bytes(mem, ptr as i32, bytes).then_some(ptr))
}

/// Calls the guest allocator; `None` when it has none or answers 0.
pub(crate) fn allocate(caller: &mut Caller<'_, Host>, len: usize) -> wasmtime::Result<Option<u32>> {
    let (Some(alloc), Ok(len)) = (caller.data().alloc.clone(), i32::try_from(len)) else {
        return Ok(None);
    };
    caller.data_mut().meter.allocation();
    let ptr = alloc.call(&mut *caller, len)?;
    Ok((ptr != 0).then_some(ptr as u32))
}

/// Counts a host call. Envoy lets only logging and WASI run while the
/// module starts (`_initialize`, `main`, `_start`); any other host call traps.
pub(crate) fn enter(caller: &mut Caller<'_, Host>, function: &'static str) -> wasmtime::Result<()> {
    caller.data_mut().meter.host_call(function);
    if caller.data().phase == Phase::Start {
        return Err(wasmtime::Error::new(HostTrap(format!(
            "{function} was called while the module was starting (_initialize/main/_start); \
             Envoy allows only proxy_log and WASI calls there"
        ))));
    }
    Ok(())
}

/// A `proxy_*` host function: `Fn(Caller, params…) -> Ret`, for any number
/// of wasm parameters. [`register!`] registers one; the wrapper runs [`enter`]
/// first, so the function body holds only what the call does.
pub(crate) trait HostFn<Params>: Send + Sync + 'static {
    fn link(self, linker: &mut Linker<Host>, name: &'static str) -> wasmtime::Result<()>;
}

macro_rules! host_fn_with {
    ($($param:ident),*) => {
        impl<F, $($param: wasmtime::WasmTy),*> HostFn<($($param,)*)> for F
        where
            F: Fn(Caller<'_, Host>, $($param),*) -> Ret + Send + Sync + 'static,
        {
            #[allow(non_snake_case)]
            fn link(self, linker: &mut Linker<Host>, name: &'static str) -> wasmtime::Result<()> {
                linker.func_wrap("env", name, move |mut caller: Caller<'_, Host>, $($param: $param),*| -> Ret {
                    enter(&mut caller, name)?;
                    if restricted(&mut caller, name) {
                        return Ok(Status::InternalFailure.code());
                    }
                    self(caller, $($param),*)
                })?;
                Ok(())
            }
        }
    };
}

host_fn_with!();
host_fn_with!(A1);
host_fn_with!(A1, A2);
host_fn_with!(A1, A2, A3);
host_fn_with!(A1, A2, A3, A4);
host_fn_with!(A1, A2, A3, A4, A5);
host_fn_with!(A1, A2, A3, A4, A5, A6);
host_fn_with!(A1, A2, A3, A4, A5, A6, A7);
host_fn_with!(A1, A2, A3, A4, A5, A6, A7, A8);
host_fn_with!(A1, A2, A3, A4, A5, A6, A7, A8, A9);
host_fn_with!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
host_fn_with!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
host_fn_with!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);

/// Whether `capability` is outside the plugin's capability restriction; if
/// so it is recorded, and the caller answers as Envoy's stub does
/// (`INTERNAL_FAILURE`, or `ENOTCAPABLE` for WASI), doing nothing else.
/// Envoy logs "Attempted call to restricted … capability" in its own log,
/// not the plugin's; the harness lists the call in
/// [`Vm::restricted_calls`](crate::Vm::restricted_calls).
pub(crate) fn restricted(caller: &mut Caller<'_, Host>, capability: &'static str) -> bool {
    let host = caller.data_mut();
    if host.settings.allows(capability) {
        return false;
    }
    host.restricted_calls.push(capability);
    true
}

/// A host function this harness does not implement yet (called after
/// [`enter`]): it answers UNIMPLEMENTED and records a harness error that
/// fails the call.
pub(crate) fn unimplemented(
    caller: &mut Caller<'_, Host>,
    function: &str,
) -> wasmtime::Result<i32> {
    caller.data_mut().problems.push(format!(
        "the plugin called {function}, which this harness does not implement yet (it answered UNIMPLEMENTED)"
    ));
    Ok(Status::Unimplemented.code())
}

/// Registers every host function: the 0.2.1 set, the 0.1.0/0.2.0 extras and
/// Envoy's WASI functions under both WASI module names.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    lifecycle::add_to_linker(linker)?;
    fields::add_to_linker(linker)?;
    foreign::add_to_linker(linker)?;
    shared::add_to_linker(linker)?;
    http_call::add_to_linker(linker)?;
    grpc::add_to_linker(linker)?;
    queues::add_to_linker(linker)?;
    legacy::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    Ok(())
}
