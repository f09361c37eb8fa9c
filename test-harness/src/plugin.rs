//! Loading a plugin: compile once, check it the way Envoy does, and keep
//! everything needed to start VMs from it cheaply and in parallel.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{ExternType, InstancePre, Module, ModuleExport, ValType};

use crate::abi::{AbiVersion, LogLevel, Status};
use crate::error::{Repr, Result};
use crate::host::Host;
use crate::properties;
use crate::runtime::Runtime;
use crate::settings::{FailurePolicy, ForeignFunction, PluginSettings};
use crate::upstream::{GrpcUpstream, Upstream};
use crate::vm::Vm;

/// Linear memory cap per VM, as Envoy's (cpp-host `limits.h`).
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;
/// How long one callback may run before it is interrupted.
pub const DEFAULT_CALLBACK_DEADLINE: Duration = Duration::from_secs(5);
/// Envoy's default `reload_config.backoff.base_interval` for FAIL_RELOAD.
pub const DEFAULT_RELOAD_BASE_INTERVAL: Duration = Duration::from_secs(1);
/// Where the virtual clock starts: 2026-01-01T00:00:00Z.
pub const DEFAULT_START_TIME_UNIX_SECS: u64 = 1_767_225_600;

/// Callback exports the harness calls, with their signature per ABI version
/// (parameters, results; all i32).
pub(crate) const CALLBACKS: &[(&str, usize, usize)] = &[
    ("proxy_on_memory_allocate", 1, 1),
    ("malloc", 1, 1),
    ("_initialize", 0, 0),
    ("_start", 0, 0),
    ("main", 2, 1),
    ("__main_void", 0, 1),
    ("proxy_on_context_create", 2, 0),
    ("proxy_on_vm_start", 2, 1),
    ("proxy_on_configure", 2, 1),
    ("proxy_on_tick", 1, 0),
    ("proxy_on_done", 1, 1),
    ("proxy_on_log", 1, 0),
    ("proxy_on_delete", 1, 0),
    ("proxy_on_request_headers", 3, 1),
    ("proxy_on_request_body", 3, 1),
    ("proxy_on_request_trailers", 2, 1),
    ("proxy_on_response_headers", 3, 1),
    ("proxy_on_response_body", 3, 1),
    ("proxy_on_response_trailers", 2, 1),
    ("proxy_on_http_call_response", 5, 0),
    ("proxy_on_queue_ready", 2, 0),
    ("proxy_on_grpc_receive_initial_metadata", 3, 0),
    ("proxy_on_grpc_receive", 3, 0),
    ("proxy_on_grpc_receive_trailing_metadata", 3, 0),
    ("proxy_on_grpc_close", 3, 0),
    ("proxy_on_new_connection", 1, 1),
    ("proxy_on_downstream_data", 3, 1),
    ("proxy_on_upstream_data", 3, 1),
    ("proxy_on_downstream_connection_close", 2, 0),
    ("proxy_on_upstream_connection_close", 2, 0),
];

/// Index of each entry of [`CALLBACKS`] in a module, resolved once.
pub(crate) type Exports = [Option<ModuleExport>; CALLBACKS.len()];

/// Where a callback sits in [`CALLBACKS`].
pub(crate) fn callback_index(name: &str) -> usize {
    CALLBACKS
        .iter()
        .position(|(n, _, _)| *n == name)
        .unwrap_or(usize::MAX)
}

/// A compiled, checked plugin: the module, its configuration and a
/// pre-linked instance template. Cloning is cheap; it is `Send + Sync`, so
/// one plugin can start VMs on many test threads at once.
#[derive(Clone, Debug)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

pub(crate) struct PluginInner {
    pub(crate) runtime: Runtime,
    pub(crate) pre: InstancePre<Host>,
    pub(crate) abi: AbiVersion,
    pub(crate) exports: Exports,
    pub(crate) memory_export: ModuleExport,
    pub(crate) settings: Arc<PluginSettings>,
}

impl Plugin {
    /// Starts building a plugin from a `.wasm` (or `.wat`) file.
    pub fn builder(path: impl AsRef<Path>) -> PluginBuilder {
        PluginBuilder::new(Source::File(path.as_ref().to_path_buf()))
    }

    /// Starts building a plugin from module bytes (binary or WAT text).
    pub fn builder_from_bytes(bytes: impl Into<Vec<u8>>) -> PluginBuilder {
        PluginBuilder::new(Source::Bytes(bytes.into()))
    }

    /// Loads a plugin from a file with a plugin configuration and defaults
    /// for everything else.
    ///
    /// # Errors
    ///
    /// See [`PluginBuilder::build`].
    pub fn load(path: impl AsRef<Path>, configuration: impl Into<Vec<u8>>) -> Result<Self> {
        Self::builder(path).configuration(configuration).build()
    }

    /// Starts a VM as Envoy does: instantiate, `_initialize` (then `main`)
    /// or `_start`, create the root context, `proxy_on_vm_start` with the VM
    /// configuration, `proxy_on_configure` with the plugin configuration.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ConfigurationRejected`](crate::ErrorKind::ConfigurationRejected) or [`ErrorKind::VmStartFailed`](crate::ErrorKind::VmStartFailed) with the
    /// plugin's logs when it refuses; [`ErrorKind::Trap`](crate::ErrorKind::Trap), [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) or
    /// [`ErrorKind::MemoryLimit`](crate::ErrorKind::MemoryLimit) when it misbehaves.
    pub fn start(&self) -> Result<Vm> {
        Vm::start(&self.inner, self.inner.settings.start_time_ns)
    }

    /// Starts a VM whose clocks begin at `time` instead of the plugin's
    /// start time: a driver on the real clock passes `SystemTime::now()`.
    ///
    /// # Errors
    ///
    /// As [`Plugin::start`].
    pub fn start_at(&self, time: SystemTime) -> Result<Vm> {
        Vm::start(&self.inner, unix_ns(time))
    }

    /// The ABI version the module declares.
    pub fn abi_version(&self) -> AbiVersion {
        self.inner.abi
    }

    /// The runtime the plugin was compiled on.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }
}

#[derive(Debug)]
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Configures and compiles a [`Plugin`].
#[derive(Debug)]
pub struct PluginBuilder {
    source: Source,
    runtime: Option<Runtime>,
    settings: PluginSettings,
}

impl PluginBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            runtime: None,
            settings: PluginSettings {
                name: "plugin".into(),
                root_id: String::new(),
                vm_id: String::new(),
                configuration: Vec::new(),
                vm_configuration: Vec::new(),
                environment: Vec::new(),
                properties: Arc::new(properties::defaults()),
                log_level: LogLevel::Info,
                memory_limit: DEFAULT_MEMORY_LIMIT,
                callback_deadline: DEFAULT_CALLBACK_DEADLINE,
                seed: 0,
                start_time_ns: DEFAULT_START_TIME_UNIX_SECS * 1_000_000_000,
                upstreams: Arc::new(HashMap::new()),
                grpc_upstreams: Arc::new(HashMap::new()),
                foreign_functions: HashMap::new(),
                filter_state_keys: Vec::new(),
                allow_on_headers_stop_iteration: false,
                allowed_capabilities: None,
                failure_policy: None,
                reload_base_interval: DEFAULT_RELOAD_BASE_INTERVAL,
            },
        }
    }

    /// Compile on this runtime (to share its shared data and metrics with
    /// other plugins, or its pooling allocator).
    pub fn runtime(mut self, runtime: &Runtime) -> Self {
        self.runtime = Some(runtime.clone());
        self
    }

    /// The plugin configuration (`PluginConfig.configuration`).
    pub fn configuration(mut self, configuration: impl Into<Vec<u8>>) -> Self {
        self.settings.configuration = configuration.into();
        self
    }

    /// The VM configuration (`VmConfig.configuration`).
    pub fn vm_configuration(mut self, configuration: impl Into<Vec<u8>>) -> Self {
        self.settings.vm_configuration = configuration.into();
        self
    }

    /// The plugin name (property `plugin_name`); default `plugin`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// The root id (property `plugin_root_id`); default empty.
    pub fn root_id(mut self, root_id: impl Into<String>) -> Self {
        self.settings.root_id = root_id.into();
        self
    }

    /// The vm id (property `plugin_vm_id`, and the scope of shared data);
    /// default empty.
    pub fn vm_id(mut self, vm_id: impl Into<String>) -> Self {
        self.settings.vm_id = vm_id.into();
        self
    }

    /// An environment variable the VM sees (`VmConfig.environment_variables`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.environment.push((key.into(), value.into()));
        self
    }

    /// A host property, by dotted path (`xds.route_name`). Values use
    /// Envoy's encodings; see [`crate::property`] for integers and maps.
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        Arc::make_mut(&mut self.settings.properties)
            .insert(properties::path_from_dotted(path), value.into());
        self
    }

    /// The log level Envoy runs at (default info, as Envoy's): what
    /// `proxy_get_log_level` answers, and logs below it are dropped.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.settings.log_level = level;
        self
    }

    /// Cap on each VM's linear memory (default 1 GiB, as Envoy).
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.settings.memory_limit = bytes;
        self
    }

    /// How long one callback may run (default 5 s).
    pub fn callback_deadline(mut self, deadline: Duration) -> Self {
        self.settings.callback_deadline = deadline;
        self
    }

    /// Seed of the VM's random generator (WASI `random_get`); default 0, so
    /// runs repeat.
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = seed;
        self
    }

    /// Envoy's default `reload_config.backoff.base_interval` for FAIL_RELOAD.
    pub const DEFAULT_RELOAD_BASE_INTERVAL: Duration = Duration::from_secs(1);
    /// Where the virtual clock starts (default 2026-01-01T00:00:00Z).
    pub fn start_time(mut self, time: SystemTime) -> Self {
        self.settings.start_time_ns = unix_ns(time);
        self
    }

    /// An upstream (Envoy cluster) the plugin may call with
    /// `proxy_http_call`; calls to any other name are BAD_ARGUMENT, as in Envoy.
    pub fn upstream(mut self, name: impl Into<String>, upstream: Upstream) -> Self {
        Arc::make_mut(&mut self.settings.upstreams).insert(name.into(), upstream);
        self
    }

    /// A gRPC cluster the plugin may call with `proxy_grpc_call` and
    /// `proxy_grpc_stream`; any other name is PARSE_FAILURE, as in Envoy.
    pub fn grpc_upstream(mut self, name: impl Into<String>, upstream: GrpcUpstream) -> Self {
        Arc::make_mut(&mut self.settings.grpc_upstreams).insert(name.into(), upstream);
        self
    }

    /// A foreign function the plugin may call by name with
    /// `proxy_call_foreign_function`. It takes precedence over the ones the
    /// harness emulates (`clear_route_cache`, `set_envoy_filter_state`,
    /// `declare_property`, `compress`, `uncompress`).
    pub fn foreign_function(
        mut self,
        name: impl Into<String>,
        function: impl Fn(&[u8]) -> std::result::Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) -> Self {
        self.settings
            .foreign_functions
            .insert(name.into(), ForeignFunction(Arc::new(function)));
        self
    }

    /// A filter-state key that `set_envoy_filter_state` accepts with any
    /// string value, for an object factory of an Envoy build the harness
    /// does not know (the built-in ones are listed in the README).
    pub fn filter_state_key(mut self, key: impl Into<String>) -> Self {
        self.settings.filter_state_keys.push(key.into());
        self
    }

    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration` (default
    /// false). Off, a pause from a headers callback stops everything that
    /// follows (`StopAllIterationAndWatermark`): the body waits unseen until
    /// the filter resumes. On, it is a plain `StopIteration`: the headers
    /// wait, the body and trailers still reach the filter, and a `Continue`
    /// from one of their callbacks lets the headers go on too.
    pub fn allow_on_headers_stop_iteration(mut self, allow: bool) -> Self {
        self.settings.allow_on_headers_stop_iteration = allow;
        self
    }

    /// Envoy's `PluginConfig.failure_policy`: emulate what Envoy does once a
    /// VM failed (see [`FailurePolicy`]). Unset (the default), a trap is an
    /// [`Error`](crate::Error) of the call that ran into it and the VM
    /// refuses every later call ([`ErrorKind::Poisoned`](crate::ErrorKind::Poisoned)),
    /// which is what a unit test of a filter usually wants. Set, a trap in a
    /// stream's callback answers that stream 503 and later streams follow the
    /// policy; [`Vm::failure`](crate::Vm::failure) says why the VM failed and
    /// [`Vm::reloads`](crate::Vm::reloads) counts the new VMs of
    /// `FailReload`.
    #[must_use]
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.settings.failure_policy = Some(policy);
        self
    }

    /// `PluginConfig.reload_config.backoff.base_interval` for
    /// [`FailurePolicy::FailReload`] (default 1 s, as Envoy's; at least
    /// 2 ms, as Envoy's back-off requires).
    #[must_use]
    pub fn reload_base_interval(mut self, base: Duration) -> Self {
        self.settings.reload_base_interval = base.max(Duration::from_millis(2));
        self
    }

    /// Envoy's `VmConfig.capability_restriction_config`: only these
    /// capabilities (host functions, WASI functions, `proxy_on_*`
    /// callbacks, by ABI name) are allowed, as Envoy 1.40 enforces it. A
    /// restricted host function answers `INTERNAL_FAILURE` (a restricted
    /// WASI function errno 76, `ENOTCAPABLE`) and is listed by
    /// [`Vm::restricted_calls`](crate::Vm::restricted_calls); a restricted
    /// callback is never called, as if the module did not export it. An
    /// empty list restricts nothing (Envoy treats an empty map so).
    /// [`capabilities::required`](crate::capabilities::required) derives the
    /// list a module needs.
    #[must_use]
    pub fn allowed_capabilities<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: HashSet<String> = names.into_iter().map(Into::into).collect();
        self.settings.allowed_capabilities = (!names.is_empty()).then(|| Arc::new(names));
        self
    }

    /// Compiles and checks the module as Envoy would before starting it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io), [`ErrorKind::InvalidModule`](crate::ErrorKind::InvalidModule), [`ErrorKind::MissingAbiVersion`](crate::ErrorKind::MissingAbiVersion),
    /// [`ErrorKind::MissingMemory`](crate::ErrorKind::MissingMemory), [`ErrorKind::MissingAllocator`](crate::ErrorKind::MissingAllocator),
    /// [`ErrorKind::BadExport`](crate::ErrorKind::BadExport) or [`ErrorKind::Link`](crate::ErrorKind::Link).
    pub fn build(self) -> Result<Plugin> {
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => Runtime::new()?,
        };
        let bytes = match self.source {
            Source::File(path) => {
                std::fs::read(&path).map_err(|source| Repr::Io { path, source })?
            }
            Source::Bytes(bytes) => bytes,
        };
        // Text is accepted as WAT; anything starting with a NUL byte is meant
        // as a binary module and reported as one.
        let module = if bytes.first() == Some(&0) {
            Module::from_binary(runtime.engine(), &bytes)
        } else {
            Module::new(runtime.engine(), &bytes)
        }
        .map_err(|e| Repr::InvalidModule {
            reason: format!("{e:#}"),
        })?;
        let abi = module
            .exports()
            .find_map(|e| AbiVersion::from_marker(e.name()))
            .ok_or(Repr::MissingAbiVersion)?;
        let memory_export = match module.get_export("memory") {
            Some(ExternType::Memory(_)) => module.get_export_index("memory"),
            _ => None,
        }
        .ok_or(Repr::MissingMemory)?;
        let mut exports = resolve_exports(&module, abi)?;
        // Envoy looks a `proxy_on_*` callback up only when it is allowed
        // (the allocator is looked up regardless).
        for (slot, (name, _, _)) in exports.iter_mut().zip(CALLBACKS) {
            if name.starts_with("proxy_on_")
                && *name != "proxy_on_memory_allocate"
                && !self.settings.allows(name)
            {
                *slot = None;
            }
        }
        let has_allocator = ["malloc", "proxy_on_memory_allocate"]
            .iter()
            .any(|name| exports[callback_index(name)].is_some());
        if !has_allocator {
            return Err(Repr::MissingAllocator.into());
        }
        let pre = runtime
            .linker()
            .instantiate_pre(&module)
            .map_err(|e| Repr::Link {
                reason: format!("{e:#}"),
            })?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                runtime,
                pre,
                abi,
                exports,
                memory_export,
                settings: Arc::new(self.settings),
            }),
        })
    }
}

impl std::fmt::Debug for PluginInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("abi", &self.abi)
            .field("name", &self.settings.name)
            .finish_non_exhaustive()
    }
}

/// Finds each callback and checks its signature for the ABI version (0.1.0
/// headers callbacks take no `end_of_stream`).
fn resolve_exports(module: &Module, abi: AbiVersion) -> Result<Exports> {
    let mut exports: Exports = std::array::from_fn(|_| None);
    for (slot, (name, params, results)) in exports.iter_mut().zip(CALLBACKS) {
        let Some(ty) = module.get_export(name) else {
            continue;
        };
        let params = match *name {
            "proxy_on_request_headers" | "proxy_on_response_headers"
                if abi == AbiVersion::V0_1_0 =>
            {
                2
            }
            _ => *params,
        };
        let ok = match &ty {
            ExternType::Func(f) => {
                f.params().len() == params
                    && f.results().len() == *results
                    && f.params()
                        .chain(f.results())
                        .all(|t| matches!(t, ValType::I32))
            }
            _ => false,
        };
        if !ok {
            let signature = |p: usize, r: usize| {
                format!(
                    "({}) -> ({})",
                    vec!["i32"; p].join(", "),
                    vec!["i32"; r].join(", ")
                )
            };
            return Err(Repr::BadExport {
                name: (*name).to_owned(),
                expected: signature(params, *results),
                found: match &ty {
                    ExternType::Func(f) => f.to_string(),
                    other => format!("{other:?}"),
                },
                abi,
            }
            .into());
        }
        *slot = module.get_export_index(name);
    }
    Ok(exports)
}

/// Nanoseconds since the Unix epoch (0 before it).
fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
