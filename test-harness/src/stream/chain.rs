//! Filter chains: several plugins on one stream, in order, with Envoy's
//! filter-manager rules. The request goes through the filters first to last,
//! the response last to first; a filter that pauses holds everything behind
//! it; a local reply from any filter enters the response path at the last
//! filter (Envoy's `sendLocalReplyViaFilterChain` encodes from the start of
//! the encoder list) and skips filters that never saw the request; once the
//! upstream response started it replaces it directly, and once response
//! headers reached the client Envoy resets the stream instead.
//!
//! A single VM's stream is a chain of one: the same code moves its frames.

use std::mem;
use std::time::Duration;

use super::{
    Exchange, HttpStream, Owner, close, is_grpc_request, local_reply_headers, reset_state,
};
use crate::error::{Error, Result};
use crate::stream_state::{
    Direction, Frame, LocalResponse, Message, Out, Progress, SharedFilterState,
};
use crate::upstream::CallOutcome;
use crate::vm::{self, Vm};

/// Several VMs applied to one stream in order, as the HTTP filters of one
/// Envoy listener: `Chain::new([auth.start()?, routing.start()?])`. Each VM
/// keeps its own plugin, logs and metrics; a stream's filter state
/// (`proxy_set_property`, `set_envoy_filter_state`) is shared by all of them,
/// as in Envoy.
#[derive(Debug)]
pub struct Chain {
    vms: Vec<Vm>,
    /// Open streams: each one's context id per VM.
    open: Vec<Box<[u32]>>,
}

impl Chain {
    /// A chain of the given VMs, first to last as configured in Envoy's
    /// `http_filters`.
    ///
    /// # Errors
    ///
    /// When `vms` is empty.
    pub fn new(vms: impl IntoIterator<Item = Vm>) -> Result<Self> {
        let vms: Vec<Vm> = vms.into_iter().collect();
        if vms.is_empty() {
            return Err(Error::invalid_state("a chain needs at least one VM"));
        }
        Ok(Self {
            vms,
            open: Vec::new(),
        })
    }

    /// Opens a stream through every filter of the chain. Each filter's
    /// context is created when the request headers reach it.
    pub fn http_stream(&mut self) -> HttpStream<'_> {
        let filter_state = SharedFilterState::shared();
        let ids: Box<[u32]> = self
            .vms
            .iter_mut()
            .map(|vm| vm.open_stream(filter_state.clone(), true))
            .collect();
        self.open.push(ids.clone());
        HttpStream {
            owner: Owner::Chain(self),
            ids,
        }
    }

    /// Reopens a stream still in flight, by its id (its context id in the
    /// first VM).
    pub fn stream(&mut self, id: u32) -> Option<HttpStream<'_>> {
        let ids = self.open.iter().find(|ids| ids[0] == id)?.clone();
        Some(HttpStream {
            owner: Owner::Chain(self),
            ids,
        })
    }

    /// The VMs, first to last.
    pub fn vms(&self) -> &[Vm] {
        &self.vms
    }

    /// The VMs, to inspect or configure one (`set_upstream`, ...). Move time
    /// with [`Chain::advance_time`], not a single VM's, so what a filter lets
    /// through reaches the next one.
    pub fn vms_mut(&mut self) -> &mut [Vm] {
        &mut self.vms
    }

    /// VM `k`.
    pub fn vm(&self, k: usize) -> Option<&Vm> {
        self.vms.get(k)
    }

    /// The chain's VMs back.
    pub fn into_vms(self) -> Vec<Vm> {
        self.vms
    }

    /// Advances every VM's virtual clock together, delivering ticks and
    /// callout answers across the chain in time order.
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error.
    pub fn advance_time(&mut self, by: Duration) -> Result<()> {
        let open = mem::take(&mut self.open);
        let result = vm::advance(&mut self.vms, by, &mut |vms| pump_all(vms, &open));
        self.open = open;
        result
    }

    /// Answers a call VM `k` made to an upstream that deferred it
    /// ([`CallOutcome::Deferred`]), delivering it now and moving on what it
    /// lets through.
    ///
    /// # Errors
    ///
    /// As [`Vm::answer_http_call`]; [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) for a `k` past
    /// the chain.
    pub fn answer_http_call(&mut self, k: usize, token: u32, outcome: CallOutcome) -> Result<()> {
        let vm = self
            .vms
            .get_mut(k)
            .ok_or_else(|| Error::invalid_state(format!("the chain has no VM {k}")))?;
        vm.schedule_answer(token, outcome)?;
        self.run()
    }

    /// Lets everything due now happen, moving frames along the chain.
    pub(crate) fn run(&mut self) -> Result<()> {
        let open = mem::take(&mut self.open);
        let result = vm::settle(&mut self.vms, &mut |vms| pump_all(vms, &open));
        self.open = open;
        result
    }

    pub(crate) fn forget(&mut self, id: u32) {
        self.open.retain(|ids| ids[0] != id);
    }
}

fn pump_all(vms: &mut [Vm], open: &[Box<[u32]>]) -> Result<()> {
    for ids in open {
        pump(vms, ids)?;
    }
    Ok(())
}

/// Moves what each filter let out of a stream to the next filter, and acts
/// on local replies and resets, until nothing is left.
pub(crate) fn pump(vms: &mut [Vm], ids: &[u32]) -> Result<()> {
    let n = vms.len();
    loop {
        let mut moved = false;
        for k in 0..n {
            let Some(state) = vms[k].store.data_mut().streams.get_mut(&ids[k]) else {
                continue;
            };
            if state.outbox.is_empty() {
                continue;
            }
            moved = true;
            for out in mem::take(&mut state.outbox) {
                match out {
                    Out::Passed(dir, part) => {
                        let next = match dir {
                            Direction::Request => Some(k + 1).filter(|j| *j < n),
                            Direction::Response => k.checked_sub(1),
                        };
                        if let Some(j) = next {
                            let frame = vms[k].forward(ids[k], dir, part)?;
                            vms[j].relay(ids[j], dir, frame)?;
                        }
                    }
                    Out::LocalReply(response) => local_reply(vms, ids, k, response)?,
                    Out::Reset => {
                        for (vm, id) in vms.iter_mut().zip(ids) {
                            if let Ok(state) = vm.state(*id) {
                                reset_state(state);
                            }
                        }
                    }
                }
            }
        }
        if !moved {
            return Ok(());
        }
    }
}

/// A local reply from filter `from`, as Envoy's filter manager sends it.
fn local_reply(vms: &mut [Vm], ids: &[u32], from: usize, response: LocalResponse) -> Result<()> {
    let n = vms.len();
    let done = |vm: &Vm, id: &u32| {
        vm.state_ref(*id)
            .is_none_or(|s| s.answered_locally || s.reset)
    };
    if vms.iter().zip(ids).any(|(vm, id)| done(vm, id)) {
        return Ok(());
    }
    let too_late = vms[0].state(ids[0])?.response.sent.headers.is_some();
    let grpc = vms[0]
        .state(ids[0])?
        .request
        .headers()
        .is_some_and(is_grpc_request);
    let headers = local_reply_headers(&response, grpc);
    let body = if grpc {
        Vec::new()
    } else {
        response.body.clone()
    };
    vms[from].state(ids[from])?.local_response = Some(response);
    if too_late {
        // Response headers reached the client: all Envoy can do is reset.
        for (vm, id) in vms.iter_mut().zip(ids) {
            reset_state(vm.state(*id)?);
        }
        return Ok(());
    }
    let mut upstream_responded = false;
    for (vm, id) in vms.iter_mut().zip(ids) {
        let state = vm.state(*id)?;
        state.answered_locally = true;
        close(&mut state.request);
        upstream_responded |= state.response.input_headers;
    }
    if upstream_responded {
        // The upstream's response is being processed: the reply bypasses
        // the filters and replaces it (`sendDirectLocalReply`).
        for (vm, id) in vms.iter_mut().zip(ids) {
            close(&mut vm.state(*id)?.response);
        }
        vms[0].state(ids[0])?.response.sent = Message {
            headers: Some(headers),
            body,
            trailers: None,
            complete: true,
        };
        return Ok(());
    }
    let eos = body.is_empty();
    let last = n - 1;
    vms[last].relay(ids[last], Direction::Response, Frame::Headers(headers, eos))?;
    if !eos {
        vms[last].relay(ids[last], Direction::Response, Frame::Data(body, true))?;
    }
    Ok(())
}

/// How far a direction of the stream got.
pub(crate) fn progress(vms: &[Vm], ids: &[u32], dir: Direction) -> Progress {
    let states = || vms.iter().zip(ids).filter_map(|(vm, id)| vm.state_ref(*id));
    if states().any(|s| s.reset) {
        Progress::Reset
    } else if states().any(|s| s.answered_locally) {
        Progress::Responded
    } else if states().any(|s| {
        let flow = s.flow(dir);
        flow.stopped.is_some() || !flow.pending.is_empty()
    }) {
        Progress::Paused
    } else {
        Progress::Continued
    }
}

/// Ends a stream: Envoy logs it (`proxy_on_log` in every filter, in order),
/// then destroys the filters (`proxy_on_done`, `proxy_on_delete`).
pub(crate) fn finish(vms: &mut [Vm], ids: &[u32]) -> Result<Exchange> {
    if vms.len() > 1 {
        share_final_headers(vms, ids)?;
    }
    for (vm, id) in vms.iter_mut().zip(ids) {
        vm.log_stream(*id)?;
    }
    let mut states = Vec::with_capacity(vms.len());
    for (vm, id) in vms.iter_mut().zip(ids) {
        states.push(vm.end_stream(*id)?);
    }
    let reset = states.iter().any(|s| s.reset);
    let costs = states.iter_mut().map(|s| mem::take(&mut s.costs)).collect();
    let local_response = states.iter_mut().find_map(|s| s.local_response.take());
    // The upstream got what left the last filter; the client what left the first.
    let upstream_request = states
        .last_mut()
        .map(|s| mem::take(&mut s.request.sent))
        .unwrap_or_default();
    let downstream_response = states
        .first_mut()
        .map(|s| mem::take(&mut s.response.sent))
        .unwrap_or_default();
    Ok(Exchange {
        upstream_request,
        downstream_response,
        local_response,
        reset,
        costs,
    })
}

/// In Envoy every filter of a stream works on the same header maps, so in
/// the access-log phase each one reads the request headers as the last
/// filter left them and the response headers as the client got them.
fn share_final_headers(vms: &mut [Vm], ids: &[u32]) -> Result<()> {
    let request = vms
        .iter()
        .zip(ids)
        .rev()
        .find_map(|(vm, id)| vm.state_ref(*id)?.request.headers().cloned());
    let response = vms
        .iter()
        .zip(ids)
        .find_map(|(vm, id)| vm.state_ref(*id)?.response.headers().cloned());
    for (vm, id) in vms.iter_mut().zip(ids) {
        let state = vm.state(*id)?;
        for (flow, map) in [
            (&mut state.request, &request),
            (&mut state.response, &response),
        ] {
            // What already went on is replaced; a map still held (paused)
            // stays where it is.
            if flow.sent.headers.is_some() {
                flow.sent.headers.clone_from(map);
            } else if flow.headers.is_some() {
                flow.headers.clone_from(map);
            }
        }
    }
    Ok(())
}
