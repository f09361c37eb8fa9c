//! A failed VM as Envoy 1.40 treats it under the plugin's `failure_policy`
//! (`PluginConfig::createContext`, cpp-host's `CHECK_FAIL_HTTP`): the stream
//! whose callback failed is answered 503; later streams are answered 503
//! (FAIL_CLOSED), pass the filter untouched (FAIL_OPEN), or get a new VM
//! once the reload back-off has elapsed since the VM was last loaded
//! (FAIL_RELOAD). A failed VM runs nothing any more.

use std::mem;
use std::time::Duration;

use rand_core::RngCore;

use crate::headers::HeaderMap;
use crate::host::Phase;
use crate::settings::FailurePolicy;
use crate::stream_state::LocalResponse;

use super::Vm;

/// The gRPC status Envoy's `failStream` answers a gRPC request with.
const GRPC_UNAVAILABLE: u32 = 14;

impl Vm {
    /// Why the VM failed (its trap, deadline or memory error), if it did. A
    /// failed VM runs none of the plugin's code again.
    pub fn failure(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// How many times [`FailurePolicy::FailReload`] replaced this VM with a
    /// new one (Envoy's `wasm.<plugin>.vm_reload_success` statistic).
    pub fn reloads(&self) -> u32 {
        self.reloads
    }

    /// The policy in force when the VM has failed and a policy is set.
    pub(crate) fn failed_policy(&self) -> Option<FailurePolicy> {
        self.poisoned.as_ref()?;
        self.plugin.settings.failure_policy
    }

    /// Whether a guest failure in `phase` is the policy's to handle rather
    /// than the caller's error: a failure while the VM starts is a plugin
    /// Envoy refuses, whatever the policy.
    pub(super) fn policy_absorbs(&self, phase: Phase) -> bool {
        self.plugin.settings.failure_policy.is_some()
            && !matches!(phase, Phase::Start | Phase::VmStart | Phase::Configure)
    }

    /// Answers the HTTP stream `id` 503 because the VM failed (Envoy's
    /// `Context::failStream`: empty body, details `wasm_fail_stream`, gRPC
    /// status UNAVAILABLE), once. Not an HTTP stream of this VM: nothing.
    pub(crate) fn fail_stream(&mut self, id: u32) {
        let Ok(state) = self.state(id) else {
            return;
        };
        if state.failed {
            return;
        }
        state.failed = true;
        self.store
            .data_mut()
            .deferred
            .retain(|d| !d.targets_stream(id));
        self.local_reply(
            id,
            LocalResponse {
                status: 503,
                details: "wasm_fail_stream".into(),
                body: Vec::new(),
                headers: HeaderMap::new(),
                grpc_status: Some(GRPC_UNAVAILABLE),
            },
        );
    }

    /// FAIL_RELOAD, as a new stream arrives: once the back-off (drawn anew
    /// for each stream, in [base, 1.5 × base)) has elapsed since the VM was
    /// last loaded, start a new VM in this one's place. The attempt counts
    /// as a load whether it succeeds or not; a new VM that fails to start
    /// leaves this one in place, failed. Streams still open on the failed
    /// VM end with it: the harness drops them (Envoy keeps the old VM for
    /// them, where they can only fail).
    pub(crate) fn reload_if_due(&mut self) {
        if self.failed_policy() != Some(FailurePolicy::FailReload) {
            return;
        }
        let base_ms = self.plugin.settings.reload_base_interval.as_millis() as u64;
        let jitter = self.store.data_mut().rng.next_u64() % (base_ms / 2).max(1);
        let interval = Duration::from_millis(base_ms + jitter);
        let now = self.store.data().clock;
        if now.monotonic_ns.saturating_sub(self.last_load_ns) < interval.as_nanos() as u64 {
            return;
        }
        self.last_load_ns = now.monotonic_ns;
        let Ok(mut fresh) = Vm::boot(&self.plugin, now) else {
            return;
        };
        // What the test set on this VM and what the plugin logged stay.
        let old = self.store.data_mut();
        let new = fresh.store.data_mut();
        new.properties = old.properties.clone();
        new.http.upstreams = old.http.upstreams.clone();
        new.grpc.upstreams = old.grpc.upstreams.clone();
        let mut logs = mem::take(&mut old.logs);
        logs.append(&mut new.logs);
        new.logs = logs;
        fresh.reloads = self.reloads + 1;
        fresh.last_load_ns = self.last_load_ns;
        *self = fresh;
    }
}
