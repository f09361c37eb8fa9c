//! Everything about a plugin that is not the module itself, as its VMs
//! read it: configuration, properties, limits, upstreams, foreign functions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::abi::{LogLevel, Status};
use crate::upstream::{GrpcUpstream, Upstream};

/// Everything about a plugin that is not the module itself.
#[derive(Debug, Clone)]
pub(crate) struct PluginSettings {
    pub(crate) name: String,
    pub(crate) root_id: String,
    pub(crate) vm_id: String,
    pub(crate) configuration: Vec<u8>,
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) environment: Vec<(String, String)>,
    /// Shared by every VM until a test changes one VM's (copy on write).
    pub(crate) properties: Arc<HashMap<Vec<u8>, Vec<u8>>>,
    pub(crate) log_level: LogLevel,
    pub(crate) memory_limit: usize,
    pub(crate) callback_deadline: Duration,
    pub(crate) seed: u64,
    pub(crate) start_time_ns: u64,
    pub(crate) upstreams: Arc<HashMap<String, Upstream>>,
    pub(crate) grpc_upstreams: Arc<HashMap<String, GrpcUpstream>>,
    pub(crate) foreign_functions: HashMap<String, ForeignFunction>,
    /// Filter-state keys accepted by `set_envoy_filter_state` besides the
    /// ones Envoy registers.
    pub(crate) filter_state_keys: Vec<String>,
    /// `PluginConfig.allow_on_headers_stop_iteration`.
    pub(crate) allow_on_headers_stop_iteration: bool,
    /// `VmConfig.capability_restriction_config.allowed_capabilities`
    /// (`None`: no restriction, as Envoy treats an empty map).
    pub(crate) allowed_capabilities: Option<Arc<HashSet<String>>>,
    /// `PluginConfig.failure_policy` (`None`: a VM failure is the test's
    /// error, not emulated).
    pub(crate) failure_policy: Option<FailurePolicy>,
    /// `PluginConfig.reload_config.backoff.base_interval` (FAIL_RELOAD).
    pub(crate) reload_base_interval: Duration,
}

/// What Envoy does with a plugin's requests once its VM has failed (a trap,
/// a callback past its deadline, memory past the limit):
/// `PluginConfig.failure_policy`, as Envoy 1.40 applies it. The request
/// whose callback failed gets a local 503 (empty body, details
/// `wasm_fail_stream`) under every policy; the policy decides the requests
/// after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailurePolicy {
    /// Every later request gets a local 503 (Envoy's default: `UNSPECIFIED`
    /// and `fail_open: false` mean this).
    FailClosed,
    /// The filter is skipped: later requests pass it untouched.
    FailOpen,
    /// A new VM takes a later request once the reload back-off elapsed since
    /// the VM was last loaded (a random interval in [base, 1.5 × base),
    /// drawn for each request, as Envoy's `JitteredLowerBoundBackOffStrategy`);
    /// until then requests get the 503 of `FailClosed`.
    FailReload,
}

impl FailurePolicy {
    /// Every policy, in Envoy's enum order after `UNSPECIFIED`.
    pub const ALL: [Self; 3] = [Self::FailReload, Self::FailClosed, Self::FailOpen];

    /// The name Envoy's configuration uses (`FAIL_CLOSED`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::FailClosed => "FAIL_CLOSED",
            Self::FailOpen => "FAIL_OPEN",
            Self::FailReload => "FAIL_RELOAD",
        }
    }
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!("unknown failure policy `{name}`: FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD")
            })
    }
}

impl PluginSettings {
    /// Whether the capability `name` (a host function, a WASI function, a
    /// `proxy_on_*` callback) is allowed: everything is when no
    /// restriction is configured (cpp-host `capabilityAllowed`).
    pub(crate) fn allows(&self, name: &str) -> bool {
        self.allowed_capabilities
            .as_ref()
            .is_none_or(|allowed| allowed.contains(name))
    }
}

type ForeignFn = dyn Fn(&[u8]) -> std::result::Result<Vec<u8>, Status> + Send + Sync;

/// A host function the plugin can call with `proxy_call_foreign_function`:
/// arguments in, results or a status out.
#[derive(Clone)]
pub struct ForeignFunction(pub(crate) Arc<ForeignFn>);

impl std::fmt::Debug for ForeignFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForeignFunction")
    }
}
