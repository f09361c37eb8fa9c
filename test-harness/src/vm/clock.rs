//! The virtual clock: what falls due as it advances (ticks, callout
//! answers), delivered in time order, one VM or several moved together.

use std::time::Duration;

use crate::error::Result;
use crate::host::{CalloutEvent, PendingCall, Phase};
use crate::upstream::HttpResponse;

use super::{Callbacks, Slot, Vm};

impl Vm {
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
        let tick = (host.tick.period_ns > 0).then_some(host.tick.next_ns);
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
        if host.tick.period_ns > 0 && host.tick.next_ns <= host.clock.monotonic_ns {
            host.tick.next_ns = host.clock.monotonic_ns + host.tick.period_ns;
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
                self.store.data_mut().grpc.initial_metadata = Some(metadata);
                self.call_root3(
                    |c| &mut c.on_grpc_receive_initial_metadata,
                    "proxy_on_grpc_receive_initial_metadata",
                    token,
                    n,
                )
            }
            CalloutEvent::GrpcMessage(message) => {
                let size = message.len() as i32;
                self.store.data_mut().grpc.message = Some(message);
                let result = self.call_root3(
                    |c| &mut c.on_grpc_receive,
                    "proxy_on_grpc_receive",
                    token,
                    size,
                );
                // A unary call is over once its answer arrived.
                let host = self.store.data_mut();
                if let Some(&(index, _)) = host.grpc.open.get(&token)
                    && !host.grpc.calls[index].streaming
                {
                    host.grpc.open.remove(&token);
                }
                result
            }
            CalloutEvent::GrpcTrailingMetadata(metadata) => {
                let n = metadata.len() as i32;
                self.store.data_mut().grpc.trailing_metadata = Some(metadata);
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
                host.grpc.open.remove(&token);
                self.call_root3(
                    |c| &mut c.on_grpc_close,
                    "proxy_on_grpc_close",
                    token,
                    code as i32,
                )
            }
        };
        let host = self.store.data_mut();
        host.http.response = None;
        host.grpc.message = None;
        host.grpc.initial_metadata = None;
        host.grpc.trailing_metadata = None;
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
        host.http.response = response;
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
