//! The HTTP and gRPC callouts a VM made, and answering them.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::host::{CalloutEvent, Phase};
use crate::upstream::{CallOutcome, GrpcCall, GrpcUpstream, HttpCall, Upstream};

use super::Vm;

impl Vm {
    /// Every gRPC call and stream the plugin opened, in order.
    pub fn grpc_calls(&self) -> &[GrpcCall] {
        &self.store.data().grpc.calls
    }

    /// Adds or replaces a gRPC upstream for calls from now on.
    pub fn set_grpc_upstream(&mut self, name: impl Into<String>, upstream: GrpcUpstream) {
        Arc::make_mut(&mut self.store.data_mut().grpc.upstreams).insert(name.into(), upstream);
    }

    pub(super) fn queue_ready(&mut self, token: u32) -> Result<()> {
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
        &self.store.data().http.made
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
        let Some(index) = host.http.deferred.iter().position(|t| *t == token) else {
            return Err(Error::invalid_state(format!(
                "no deferred HTTP call with token {token} is waiting for an answer"
            )));
        };
        host.http.deferred.swap_remove(index);
        host.schedule(token, Duration::ZERO, CalloutEvent::HttpResponse(response));
        Ok(())
    }

    /// Adds or replaces an upstream for calls from now on (rotate a JWKS,
    /// take a service down, ...).
    pub fn set_upstream(&mut self, name: impl Into<String>, upstream: Upstream) {
        Arc::make_mut(&mut self.store.data_mut().http.upstreams).insert(name.into(), upstream);
    }
}
