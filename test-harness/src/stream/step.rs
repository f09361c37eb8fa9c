//! One filter's steps through a stream, as Envoy's filter manager takes
//! them:
//!
//! - `feed`: a frame from the test (client or upstream), checked to be in
//!   HTTP order, then handed on as `relay` hands on a frame from the
//!   previous filter of a chain or from a local reply;
//! - `accept`: holds the frame while the direction is stopped at headers or
//!   trailers (Envoy buffers what follows), else `deliver`s it;
//! - `deliver`: runs the filter's callback for the frame; what it returns
//!   stops the direction or lets the frame `pass`;
//! - `pass`: lets what the filter held go on (to the next filter, or out),
//!   then `deliver_pending` delivers the frames that waited;
//! - `forward`: what passed, as the frame the next filter receives;
//! - `resume`: the filter continued a stopped direction (`pass` again);
//! - `pump_own`: local replies and resets a VM's own streams left;
//! - `local_reply`, `reset`, `log_stream`, `end_stream`: how a stream ends.

use std::mem;

use super::chain;
use crate::abi::{AbiVersion, Action};
use crate::error::{Error, Result};
use crate::host::{Deferred, Phase};
use crate::settings::FailurePolicy;
use crate::stream_state::{
    Direction, Frame, HttpStreamState, LocalResponse, Out, Part, SharedFilterState, Stage, Stop,
};
use crate::vm::Vm;

impl Vm {
    pub(crate) fn open_stream(&mut self, filter_state: SharedFilterState, chained: bool) -> u32 {
        self.reload_if_due();
        let id = self.new_context_id();
        let now = self.store.data().clock.realtime_ns;
        self.store
            .data_mut()
            .streams
            .insert(id, HttpStreamState::new(now, filter_state, chained, id));
        id
    }

    pub(crate) fn state(&mut self, id: u32) -> Result<&mut HttpStreamState> {
        self.store.data_mut().streams.get_mut(&id).ok_or_else(|| {
            Error::invalid_state(format!("stream {id} is finished or does not exist"))
        })
    }

    pub(crate) fn state_ref(&self, id: u32) -> Option<&HttpStreamState> {
        self.store.data().streams.get(&id)
    }

    /// A frame from the client or the upstream, checked for HTTP order.
    pub(crate) fn feed(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        let side = match dir {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        let state = self.state(id)?;
        if dir == Direction::Response && state.answered_locally {
            // The stream was answered; the upstream's response never arrives.
            return Ok(());
        }
        let flow = state.flow_mut(dir);
        match (&frame, flow.input_headers, flow.input_ended) {
            (_, _, true) => return Err(Error::invalid_state(format!("the {side} already ended"))),
            (Frame::Headers(..), true, _) => {
                return Err(Error::invalid_state(format!(
                    "{side} headers were already sent"
                )));
            }
            (Frame::Data(..) | Frame::Trailers(_), false, _) => {
                return Err(Error::invalid_state(format!(
                    "send the {side} headers first"
                )));
            }
            _ => {}
        }
        self.relay(id, dir, frame)
    }

    /// A frame from the previous filter of the chain (or a local reply):
    /// in order by construction.
    pub(crate) fn relay(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        let flow = self.state(id)?.flow_mut(dir);
        flow.input_headers = true;
        flow.input_ended = match &frame {
            Frame::Headers(_, eos) | Frame::Data(_, eos) => *eos,
            Frame::Trailers(_) => true,
        };
        self.accept(id, dir, frame)
    }

    /// Delivers a frame, or holds it while iteration is stopped at headers or
    /// trailers (Envoy's StopAllIteration buffers what follows).
    fn accept(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        let flow = self.state(id)?.flow_mut(dir);
        if flow.closed {
            return Ok(());
        }
        if matches!(flow.stopped, Some(Stop::Headers | Stop::Trailers)) || !flow.pending.is_empty()
        {
            flow.pending.push_back(frame);
            return Ok(());
        }
        self.deliver(id, dir, frame)
    }

    fn ensure_context(&mut self, id: u32) -> Result<()> {
        if self.state(id)?.created {
            return Ok(());
        }
        self.state(id)?.created = true;
        let root = self.store.data().root_id as i32;
        if let Some(f) = self.callback(|c| &mut c.on_context_create) {
            self.invoke("proxy_on_context_create", id, Phase::Callback, |s| {
                f.call(s, (id as i32, root))
            })?;
        }
        self.flush_deferred()
    }

    /// Runs the filter's callback for `frame` (creating its context first),
    /// then stops the direction or lets the frame pass, as it returned.
    fn deliver(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        // A failed VM runs nothing: under FAIL_OPEN its filter is skipped;
        // otherwise a stream it has not failed yet is answered 503, and what
        // a failed stream still carries (the 503 itself) passes untouched.
        let failed = match self.failed_policy() {
            None => false,
            Some(FailurePolicy::FailOpen) => true,
            Some(_) if self.state(id)?.failed => true,
            Some(_) => {
                self.fail_stream(id);
                return Ok(());
            }
        };
        // Envoy creates a filter's context at its request headers; a response
        // reaching a filter that never saw them (a later filter of a chain
        // answered locally) passes it untouched.
        let skip = failed || (dir == Direction::Response && !self.state(id)?.created);
        if !skip {
            self.ensure_context(id)?;
        }
        let d = dir.index();
        let ctx = id as i32;
        // Headers held by a plain StopIteration: what follows still arrives,
        // and the headers go on only with it.
        let headers_held = self.state(id)?.flow_mut(dir).stopped == Some(Stop::HeadersOnly);
        let (stop, action) = match frame {
            Frame::Headers(map, eos) => {
                let n = map.len() as i32;
                let flow = self.state(id)?.flow_mut(dir);
                flow.headers = Some(map);
                flow.end_of_stream = eos;
                flow.stage = Stage::Headers;
                let name = pick(dir, "proxy_on_request_headers", "proxy_on_response_headers");
                let raw = if skip {
                    None
                } else if self.abi_version() == AbiVersion::V0_1_0 {
                    match self.callback(|c| &mut c.headers_v0_1[d]) {
                        Some(f) => {
                            Some(self.invoke(name, id, Phase::Callback, |s| f.call(s, (ctx, n)))?)
                        }
                        None => None,
                    }
                } else {
                    match self.callback(|c| &mut c.headers[d]) {
                        Some(f) => Some(self.invoke(name, id, Phase::Callback, |s| {
                            f.call(s, (ctx, n, i32::from(eos)))
                        })?),
                        None => None,
                    }
                };
                let action = raw.map_or(Action::Continue, Action::from_abi);
                let stop = if self.plugin.settings.allow_on_headers_stop_iteration {
                    Stop::HeadersOnly
                } else {
                    Stop::Headers
                };
                (stop, action)
            }
            Frame::Data(chunk, eos) => {
                let flow = self.state(id)?.flow_mut(dir);
                flow.received += chunk.len();
                flow.body.extend_from_slice(&chunk);
                flow.end_of_stream |= eos;
                flow.stage = Stage::Body;
                // Paused bodies are buffered: the callback sees the total size.
                let size = flow.body.len() as i32;
                let action = match self.callback(|c| &mut c.body[d]).filter(|_| !skip) {
                    Some(f) => {
                        let name = pick(dir, "proxy_on_request_body", "proxy_on_response_body");
                        Action::from_abi(self.invoke(name, id, Phase::Callback, |s| {
                            f.call(s, (ctx, size, i32::from(eos)))
                        })?)
                    }
                    None => Action::Continue,
                };
                (Stop::Body, action)
            }
            Frame::Trailers(map) => {
                let n = map.len() as i32;
                let flow = self.state(id)?.flow_mut(dir);
                flow.trailers = Some(map);
                flow.end_of_stream = true;
                flow.stage = Stage::Trailers;
                let action = match self.callback(|c| &mut c.trailers[d]).filter(|_| !skip) {
                    Some(f) => {
                        let name = pick(
                            dir,
                            "proxy_on_request_trailers",
                            "proxy_on_response_trailers",
                        );
                        Action::from_abi(
                            self.invoke(name, id, Phase::Callback, |s| f.call(s, (ctx, n)))?,
                        )
                    }
                    None => Action::Continue,
                };
                (Stop::Trailers, action)
            }
        };
        if !skip && self.state(id)?.failed {
            // The callback failed the VM: the stream has its 503.
            return self.flush_deferred();
        }
        let stop = if headers_held {
            Stop::HeadersOnly
        } else {
            stop
        };
        let deferred = mem::take(&mut self.store.data_mut().deferred);
        // A local reply stops iteration whatever the callback returned
        // (cpp-host `stopNextIteration`).
        let replied = deferred
            .iter()
            .any(|d| matches!(d, Deferred::LocalResponse { stream, .. } if *stream == id));
        if action == Action::Continue && !replied {
            self.pass(id, dir, stop)?;
        } else {
            self.state(id)?.flow_mut(dir).stopped = Some(stop);
        }
        self.run_deferred(deferred)
    }

    /// Lets what the filter held go on (to the next filter of the chain, or
    /// out), then delivers frames that waited.
    fn pass(&mut self, id: u32, dir: Direction, stop: Stop) -> Result<()> {
        let state = self.state(id)?;
        let flow = state.flow_mut(dir);
        flow.stopped = None;
        let headers = matches!(stop, Stop::Headers | Stop::HeadersOnly);
        // Held headers that the body or trailers followed go on with them.
        let followed = stop == Stop::HeadersOnly && flow.stage != Stage::Headers;
        flow.stage = Stage::Idle;
        // What passes is frozen: the filter cannot write it any more, so it
        // moves to `sent` rather than being copied.
        let mut parts = [None, None, None];
        if headers {
            let end_of_stream = flow.end_of_stream && !followed;
            flow.sent.headers = flow.headers.take();
            flow.sent.complete = end_of_stream;
            parts[0] = Some(Part::Headers { end_of_stream });
        }
        if !headers || followed {
            let len = flow.body.len();
            if flow.sent.body.is_empty() {
                flow.sent.body = mem::take(&mut flow.body);
            } else {
                let body = mem::take(&mut flow.body);
                flow.sent.body.extend_from_slice(&body);
            }
            let trailers = flow.end_of_stream && flow.trailers.is_some();
            if len > 0 || (flow.end_of_stream && !trailers) {
                parts[1] = Some(Part::Data {
                    len,
                    end_of_stream: flow.end_of_stream && !trailers,
                });
            }
            if flow.end_of_stream {
                // Trailers the filter added at the end of the body go too.
                flow.sent.trailers = flow.trailers.take();
                flow.sent.complete = true;
                if trailers {
                    parts[2] = Some(Part::Trailers);
                }
            }
        }
        // Only a chain moves what passed on; a lone VM's `sent` is the end.
        if state.chained {
            state
                .outbox
                .extend(parts.into_iter().flatten().map(|p| Out::Passed(dir, p)));
        }
        self.deliver_pending(id, dir)
    }

    /// Delivers the frames that waited while the direction was stopped,
    /// until it stops again.
    fn deliver_pending(&mut self, id: u32, dir: Direction) -> Result<()> {
        loop {
            let flow = self.state(id)?.flow_mut(dir);
            if flow.closed || matches!(flow.stopped, Some(Stop::Headers | Stop::Trailers)) {
                return Ok(());
            }
            let Some(frame) = flow.pending.pop_front() else {
                return Ok(());
            };
            // Body that waited is delivered as one buffer, as Envoy does.
            let frame = match frame {
                Frame::Data(mut bytes, mut eos) => {
                    while let Some(Frame::Data(more, more_eos)) = flow.pending.front_mut() {
                        bytes.append(more);
                        eos |= *more_eos;
                        flow.pending.pop_front();
                    }
                    Frame::Data(bytes, eos)
                }
                other => other,
            };
            self.deliver(id, dir, frame)?;
        }
    }

    /// What passed this filter, as the frame the next filter receives.
    pub(crate) fn forward(&mut self, id: u32, dir: Direction, part: Part) -> Result<Frame> {
        let flow = self.state(id)?.flow_mut(dir);
        Ok(match part {
            Part::Headers { end_of_stream } => {
                Frame::Headers(flow.sent.headers.clone().unwrap_or_default(), end_of_stream)
            }
            Part::Data { len, end_of_stream } => {
                let from = flow.forwarded_body.min(flow.sent.body.len());
                let to = (from + len).min(flow.sent.body.len());
                flow.forwarded_body = to;
                Frame::Data(flow.sent.body[from..to].to_vec(), end_of_stream)
            }
            Part::Trailers => Frame::Trailers(flow.sent.trailers.clone().unwrap_or_default()),
        })
    }

    /// The filter continued a stopped direction: what it held goes on.
    pub(crate) fn resume(&mut self, id: u32, dir: Direction) -> Result<()> {
        let Ok(state) = self.state(id) else {
            return Ok(());
        };
        let flow = state.flow_mut(dir);
        match flow.stopped.take() {
            Some(stop) if !flow.closed => self.pass(id, dir, stop),
            _ => Ok(()),
        }
    }

    /// The filter reset the stream (`proxy_close_stream`): this filter stops
    /// at once; the chain resets the others.
    pub(crate) fn reset(&mut self, id: u32) {
        if let Ok(state) = self.state(id) {
            if !state.reset {
                state.outbox.push(Out::Reset);
            }
            reset_state(state);
        }
    }

    /// The filter sent a local reply. Its own request stops at once; where
    /// the reply goes is the chain's decision (see `chain::local_reply`).
    /// The first reply of a stream wins.
    pub(crate) fn local_reply(&mut self, id: u32, response: LocalResponse) {
        let Ok(state) = self.state(id) else {
            return;
        };
        let requested = state.outbox.iter().any(|o| matches!(o, Out::LocalReply(_)));
        if state.answered_locally || state.reset || requested {
            return;
        }
        close(&mut state.request);
        state.outbox.push(Out::LocalReply(response));
    }

    /// Handles what this VM's own (unchained) streams left for their chain
    /// of one: local replies and resets.
    pub(crate) fn pump_own(&mut self) -> Result<()> {
        let waiting: Vec<u32> = self
            .store
            .data()
            .streams
            .iter()
            .filter(|(_, s)| !s.chained && !s.outbox.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            chain::pump(std::slice::from_mut(self), &[id])?;
        }
        Ok(())
    }

    /// `proxy_on_log`, as Envoy runs it at the end of a stream.
    pub(crate) fn log_stream(&mut self, id: u32) -> Result<()> {
        if !self.state(id)?.created {
            return Ok(());
        }
        let ctx = id as i32;
        if let Some(f) = self.callback(|c| &mut c.on_log) {
            self.state(id)?.in_log = true;
            let logged = self.invoke("proxy_on_log", id, Phase::Callback, |s| f.call(s, ctx));
            self.state(id)?.in_log = false;
            logged?;
        }
        Ok(())
    }

    /// Destroys the stream's context (`proxy_on_done`, `proxy_on_delete`)
    /// and returns its final state.
    pub(crate) fn end_stream(&mut self, id: u32) -> Result<HttpStreamState> {
        if self.state(id)?.created {
            let ctx = id as i32;
            if let Some(f) = self.callback(|c| &mut c.on_done) {
                self.invoke("proxy_on_done", id, Phase::Callback, |s| f.call(s, ctx))?;
            }
            if let Some(f) = self.callback(|c| &mut c.on_delete) {
                self.invoke("proxy_on_delete", id, Phase::Callback, |s| f.call(s, ctx))?;
            }
            // Nothing a finished stream asks for can happen any more.
            self.store
                .data_mut()
                .deferred
                .retain(|d| !d.targets_stream(id));
            self.flush_deferred()?;
        }
        self.store
            .data_mut()
            .streams
            .remove(&id)
            .ok_or_else(|| Error::invalid_state(format!("stream {id} does not exist")))
    }
}

pub(crate) fn reset_state(state: &mut HttpStreamState) {
    state.reset = true;
    close(&mut state.request);
    close(&mut state.response);
}

pub(crate) fn close(flow: &mut crate::stream_state::Flow) {
    flow.closed = true;
    flow.stopped = None;
    flow.stage = Stage::Idle;
    flow.pending.clear();
}

fn pick(dir: Direction, request: &'static str, response: &'static str) -> &'static str {
    match dir {
        Direction::Request => request,
        Direction::Response => response,
    }
}
