//! Driving an HTTP stream through a VM with Envoy's filter-chain semantics:
//! a paused direction moves on only when the filter continues it; a body
//! paused from its callback is buffered and redelivered whole; frames that
//! arrive while headers are paused wait; local replies are sent after the
//! callback returns and run through the response callbacks.

use std::mem;

use crate::abi::{AbiVersion, Action};
use crate::error::{Error, Result};
use crate::headers::HeaderMap;
use crate::host::{Deferred, Phase};
use crate::properties;
use crate::stream::{
    Direction, Frame, HttpStreamState, LocalResponse, Message, Progress, Stage, Stop,
};
use crate::vm::Vm;

/// One HTTP stream of a [`Vm`], fed part by part as a client and an upstream
/// would, and inspected afterwards.
#[derive(Debug)]
pub struct HttpStream<'vm> {
    vm: &'vm mut Vm,
    id: u32,
}

/// What happened to a finished stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exchange {
    /// What the upstream received.
    pub upstream_request: Message,
    /// What the client received.
    pub downstream_response: Message,
    /// The local reply the filter sent, if any.
    pub local_response: Option<LocalResponse>,
    /// Whether the filter reset the stream.
    pub reset: bool,
}

impl Vm {
    /// Opens a new HTTP stream. Its context is created, as in Envoy, when the
    /// request headers arrive.
    pub fn http_stream(&mut self) -> HttpStream<'_> {
        let id = self.new_context_id();
        let now = self.store.data().clock.realtime_ns;
        self.store
            .data_mut()
            .streams
            .insert(id, HttpStreamState::new(now));
        HttpStream { vm: self, id }
    }

    /// Reopens a stream that is still open, by id (several streams can be in
    /// flight on one VM).
    pub fn stream(&mut self, id: u32) -> Option<HttpStream<'_>> {
        let open = self.store.data().streams.contains_key(&id);
        open.then_some(HttpStream { vm: self, id })
    }

    fn state(&mut self, id: u32) -> Result<&mut HttpStreamState> {
        self.store.data_mut().streams.get_mut(&id).ok_or_else(|| {
            Error::InvalidState(format!("stream {id} is finished or does not exist"))
        })
    }

    /// A frame from the client or the upstream, checked for HTTP order.
    fn feed(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<Progress> {
        let side = match dir {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        let state = self.state(id)?;
        if dir == Direction::Response && state.answered_locally {
            // The filter already answered; the upstream's response never arrives.
            return Ok(state.progress(dir));
        }
        let flow = state.flow_mut(dir);
        match (&frame, flow.input_headers, flow.input_ended) {
            (_, _, true) => return Err(Error::InvalidState(format!("the {side} already ended"))),
            (Frame::Headers(..), true, _) => {
                return Err(Error::InvalidState(format!(
                    "{side} headers were already sent"
                )));
            }
            (Frame::Data(..) | Frame::Trailers(_), false, _) => {
                return Err(Error::InvalidState(format!(
                    "send the {side} headers first"
                )));
            }
            _ => {}
        }
        flow.input_headers = true;
        flow.input_ended = match &frame {
            Frame::Headers(_, eos) | Frame::Data(_, eos) => *eos,
            Frame::Trailers(_) => true,
        };
        self.accept(id, dir, frame)?;
        // Callout answers due now arrive before the caller looks.
        self.settle()?;
        Ok(self.state(id)?.progress(dir))
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

    fn deliver(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        self.ensure_context(id)?;
        let d = dir.index();
        let ctx = id as i32;
        let (stop, action) = match frame {
            Frame::Headers(map, eos) => {
                let n = map.len() as i32;
                let flow = self.state(id)?.flow_mut(dir);
                flow.headers = Some(map);
                flow.end_of_stream = eos;
                flow.stage = Stage::Headers;
                let name = pick(dir, "proxy_on_request_headers", "proxy_on_response_headers");
                let raw = if self.abi_version() == AbiVersion::V0_1_0 {
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
                (Stop::Headers, action)
            }
            Frame::Data(chunk, eos) => {
                let flow = self.state(id)?.flow_mut(dir);
                flow.body.extend_from_slice(&chunk);
                flow.end_of_stream |= eos;
                flow.stage = Stage::Body;
                // Paused bodies are buffered: the callback sees the total size.
                let size = flow.body.len() as i32;
                let action = match self.callback(|c| &mut c.body[d]) {
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
                let action = match self.callback(|c| &mut c.trailers[d]) {
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

    /// Lets what the filter held go on, then delivers frames that waited.
    fn pass(&mut self, id: u32, dir: Direction, stop: Stop) -> Result<()> {
        let flow = self.state(id)?.flow_mut(dir);
        flow.stopped = None;
        flow.stage = Stage::Idle;
        // What passes is frozen: the filter cannot write it any more, so it
        // moves to `sent` rather than being copied.
        if stop == Stop::Headers {
            flow.sent.headers = flow.headers.take();
            flow.sent.complete = flow.end_of_stream;
        } else {
            if flow.sent.body.is_empty() {
                flow.sent.body = mem::take(&mut flow.body);
            } else {
                let body = mem::take(&mut flow.body);
                flow.sent.body.extend_from_slice(&body);
            }
            if flow.end_of_stream {
                // Trailers the filter added at the end of the body go too.
                flow.sent.trailers = flow.trailers.take();
                flow.sent.complete = true;
            }
        }
        self.deliver_pending(id, dir)
    }

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

    pub(crate) fn reset(&mut self, id: u32) {
        if let Ok(state) = self.state(id) {
            state.reset = true;
            for flow in [&mut state.request, &mut state.response] {
                close(flow);
            }
        }
    }

    /// Sends a local reply as Envoy does: from the request path the request
    /// stops and the reply runs through this filter's response callbacks;
    /// once an upstream response is being processed it replaces it directly;
    /// once response headers went downstream it is too late.
    pub(crate) fn local_reply(&mut self, id: u32, response: LocalResponse) -> Result<()> {
        let Ok(state) = self.state(id) else {
            return Ok(());
        };
        if state.local_response.is_some() || state.reset || state.response.sent.headers.is_some() {
            return Ok(());
        }
        let headers = local_reply_headers(&response);
        let body = response.body.clone();
        state.local_response = Some(response);
        close(&mut state.request);
        state.answered_locally = true;
        if state.response.started() {
            let flow = &mut state.response;
            close(flow);
            flow.sent = Message {
                headers: Some(headers),
                body,
                trailers: None,
                complete: true,
            };
            return Ok(());
        }
        let eos = body.is_empty();
        self.accept(id, Direction::Response, Frame::Headers(headers, eos))?;
        if !eos {
            self.accept(id, Direction::Response, Frame::Data(body, true))?;
        }
        Ok(())
    }

    fn finish(&mut self, id: u32) -> Result<Exchange> {
        if self.state(id)?.created {
            // Envoy logs the stream, then destroys its filters.
            let ctx = id as i32;
            if let Some(f) = self.callback(|c| &mut c.on_log) {
                self.state(id)?.in_log = true;
                let logged = self.invoke("proxy_on_log", id, Phase::Callback, |s| f.call(s, ctx));
                self.state(id)?.in_log = false;
                logged?;
            }
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
        let state = self
            .store
            .data_mut()
            .streams
            .remove(&id)
            .ok_or_else(|| Error::InvalidState(format!("stream {id} does not exist")))?;
        Ok(Exchange {
            upstream_request: state.request.sent,
            downstream_response: state.response.sent,
            local_response: state.local_response,
            reset: state.reset,
        })
    }
}

fn close(flow: &mut crate::stream::Flow) {
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

/// Headers of a local reply: `:status`, the filter's headers, and for a
/// non-empty body `content-length` and (unless given) `content-type: text/plain`.
fn local_reply_headers(response: &LocalResponse) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.add(":status", response.status.to_string());
    for (k, v) in response.headers.iter() {
        headers.add(k, v);
    }
    if !response.body.is_empty() {
        headers.replace("content-length", response.body.len().to_string());
        if !headers.contains("content-type") {
            headers.add("content-type", "text/plain");
        }
    }
    headers
}

impl HttpStream<'_> {
    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The client sends request headers.
    ///
    /// # Errors
    ///
    /// When the guest traps or a harness problem occurs, or when headers
    /// were already sent.
    pub fn send_request_headers(
        &mut self,
        headers: impl Into<HeaderMap>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.vm.feed(
            self.id,
            Direction::Request,
            Frame::Headers(headers.into(), end_of_stream),
        )
    }

    /// The client sends a chunk of request body.
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_request_body(
        &mut self,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.vm.feed(
            self.id,
            Direction::Request,
            Frame::Data(chunk.as_ref().to_vec(), end_of_stream),
        )
    }

    /// The client sends request trailers (ending the request).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_request_trailers(&mut self, trailers: impl Into<HeaderMap>) -> Result<Progress> {
        self.vm.feed(
            self.id,
            Direction::Request,
            Frame::Trailers(trailers.into()),
        )
    }

    /// The upstream sends response headers. Ignored when the filter already
    /// answered locally (the result says [`Progress::Responded`]).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_response_headers(
        &mut self,
        headers: impl Into<HeaderMap>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.vm.feed(
            self.id,
            Direction::Response,
            Frame::Headers(headers.into(), end_of_stream),
        )
    }

    /// The upstream sends a chunk of response body.
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_response_body(
        &mut self,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.vm.feed(
            self.id,
            Direction::Response,
            Frame::Data(chunk.as_ref().to_vec(), end_of_stream),
        )
    }

    /// The upstream sends response trailers (ending the response).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_response_trailers(&mut self, trailers: impl Into<HeaderMap>) -> Result<Progress> {
        self.vm.feed(
            self.id,
            Direction::Response,
            Frame::Trailers(trailers.into()),
        )
    }

    fn state(&self) -> &HttpStreamState {
        // A handle exists only for an open stream (see `Vm::stream`).
        &self.vm.store.data().streams[&self.id]
    }

    /// What the upstream has received so far.
    pub fn upstream_request(&self) -> &Message {
        &self.state().request.sent
    }

    /// What the client has received so far.
    pub fn downstream_response(&self) -> &Message {
        &self.state().response.sent
    }

    /// The local reply the filter sent, if any.
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.state().local_response.as_ref()
    }

    /// The request headers as the filter left them.
    pub fn request_headers(&self) -> Option<&HeaderMap> {
        self.state().request.headers()
    }

    /// The response headers as the filter left them.
    pub fn response_headers(&self) -> Option<&HeaderMap> {
        self.state().response.headers()
    }

    /// Whether the filter reset the stream.
    pub fn is_reset(&self) -> bool {
        self.state().reset
    }

    /// A property (dotted path) as the filter reads it in this stream,
    /// including values it set with `proxy_set_property`.
    pub fn property(&self, path: &str) -> Option<Vec<u8>> {
        self.vm
            .store
            .data()
            .property_for(&properties::path_from_dotted(path), Some(self.state()))
    }

    /// The VM, for example to advance time while the stream is paused.
    pub fn vm(&mut self) -> &mut Vm {
        self.vm
    }

    /// Ends the stream as Envoy does (`proxy_on_log`, `proxy_on_done`,
    /// `proxy_on_delete`) and returns what happened.
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error.
    pub fn finish(self) -> Result<Exchange> {
        self.vm.finish(self.id)
    }
}
