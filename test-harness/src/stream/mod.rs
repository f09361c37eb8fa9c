//! Envoy's filter-manager semantics for HTTP streams, in one place: the
//! public handle a test drives ([`HttpStream`], here), one filter's steps
//! through a stream (`step`), the chain of filters a stream passes
//! (`chain`), and the local replies they send (`reply`). A paused direction
//! moves on only when the filter continues it; a body paused from its
//! callback is buffered and redelivered whole; frames that arrive while
//! headers are paused wait; local replies are sent after the callback
//! returns and run through the response callbacks.

mod chain;
mod reply;
mod step;

pub use chain::Chain;
pub(crate) use reply::{is_grpc_request, local_reply_headers};
pub(crate) use step::{close, reset_state};

use std::time::Duration;

use crate::costs::Costs;
use crate::error::{Error, Result};
use crate::headers::HeaderMap;
use crate::properties;
use crate::stream_state::{
    Direction, Frame, HttpStreamState, LocalResponse, Message, Progress, SharedFilterState,
};
use crate::vm::Vm;

/// One HTTP stream through a [`Vm`] or a [`Chain`] of VMs, fed part by part
/// as a client and an upstream would, and inspected afterwards.
#[derive(Debug)]
pub struct HttpStream<'a> {
    pub(crate) owner: Owner<'a>,
    /// The stream's context id in each VM of the chain.
    pub(crate) ids: Box<[u32]>,
}

#[derive(Debug)]
pub(crate) enum Owner<'a> {
    Vm(&'a mut Vm),
    Chain(&'a mut Chain),
}

impl Owner<'_> {
    fn vms(&mut self) -> &mut [Vm] {
        match self {
            Self::Vm(vm) => std::slice::from_mut(&mut **vm),
            Self::Chain(chain) => chain.vms_mut(),
        }
    }
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
    /// What the stream's callbacks cost, one entry per filter in chain
    /// order (one for a lone VM): see [`Costs`].
    pub costs: Vec<Costs>,
}

impl Vm {
    /// Opens a new HTTP stream. Its context is created, as in Envoy, when the
    /// request headers arrive.
    pub fn http_stream(&mut self) -> HttpStream<'_> {
        let id = self.open_stream(SharedFilterState::default(), false);
        HttpStream {
            owner: Owner::Vm(self),
            ids: Box::new([id]),
        }
    }

    /// Reopens a stream that is still open, by id (several streams can be in
    /// flight on one VM).
    pub fn stream(&mut self, id: u32) -> Option<HttpStream<'_>> {
        let open = self
            .store
            .data()
            .streams
            .get(&id)
            .is_some_and(|s| !s.chained);
        open.then_some(HttpStream {
            owner: Owner::Vm(self),
            ids: Box::new([id]),
        })
    }
}

impl HttpStream<'_> {
    /// The stream's context id (in a chain, its context in the first VM).
    pub fn id(&self) -> u32 {
        self.ids[0]
    }

    fn vms(&mut self) -> &mut [Vm] {
        self.owner.vms()
    }

    fn vms_ref(&self) -> &[Vm] {
        match &self.owner {
            Owner::Vm(vm) => std::slice::from_ref(&**vm),
            Owner::Chain(chain) => chain.vms(),
        }
    }

    /// Feeds a frame from the client (into the first filter) or from the
    /// upstream (into the last), then lets everything it set off happen.
    fn send(&mut self, dir: Direction, frame: Frame) -> Result<Progress> {
        let Self { owner, ids } = self;
        let vms = owner.vms();
        let entry = match dir {
            Direction::Request => 0,
            Direction::Response => vms.len() - 1,
        };
        vms[entry].feed(ids[entry], dir, frame)?;
        self.run()?;
        Ok(chain::progress(self.vms_ref(), &self.ids, dir))
    }

    fn run(&mut self) -> Result<()> {
        match &mut self.owner {
            Owner::Vm(vm) => vm.settle().map(drop),
            Owner::Chain(chain) => chain.run(),
        }
    }

    /// The client sends request headers. They must carry `:method`, `:path`
    /// and `:authority`, as every request Envoy hands a filter does
    /// ([`envoy::request_headers`](crate::envoy::request_headers) builds
    /// exactly what Envoy's codec and connection manager deliver).
    ///
    /// # Errors
    ///
    /// When the guest traps or a harness problem occurs, when headers were
    /// already sent, or when a pseudo-header Envoy always delivers is
    /// missing.
    pub fn send_request_headers(
        &mut self,
        headers: impl Into<HeaderMap>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        let headers = headers.into();
        if let Some(missing) = [":method", ":path", ":authority"]
            .into_iter()
            .find(|name| !headers.contains(name))
        {
            return Err(Error::invalid_state(format!(
                "a request without `{missing}`: Envoy never hands a filter one (its codec answers \
                 400 first); build requests with proxy_wasm_harness::envoy::request_headers"
            )));
        }
        self.send(Direction::Request, Frame::Headers(headers, end_of_stream))
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
        self.send(
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
        self.send(Direction::Request, Frame::Trailers(trailers.into()))
    }

    /// The upstream sends response headers. Ignored when a filter already
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
        self.send(
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
        self.send(
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
        self.send(Direction::Response, Frame::Trailers(trailers.into()))
    }

    /// The stream's state in VM `k` of the chain.
    fn state(&self, k: usize) -> &HttpStreamState {
        // A handle exists only for an open stream (see `Vm::stream`).
        &self.vms_ref()[k].store.data().streams[&self.ids[k]]
    }

    fn last(&self) -> usize {
        self.ids.len() - 1
    }

    /// What the upstream has received so far (what left the last filter).
    pub fn upstream_request(&self) -> &Message {
        &self.state(self.last()).request.sent
    }

    /// What the client has received so far (what left the first filter).
    pub fn downstream_response(&self) -> &Message {
        &self.state(0).response.sent
    }

    /// The local reply a filter sent, if any.
    pub fn local_response(&self) -> Option<&LocalResponse> {
        (0..self.ids.len()).find_map(|k| self.state(k).local_response.as_ref())
    }

    /// Which filter of the chain sent the local reply (0 for a single VM).
    pub fn local_responder(&self) -> Option<usize> {
        (0..self.ids.len()).find(|k| self.state(*k).local_response.is_some())
    }

    /// The request headers as the filters left them: the furthest filter's
    /// view.
    pub fn request_headers(&self) -> Option<&HeaderMap> {
        (0..self.ids.len())
            .rev()
            .find_map(|k| self.state(k).request.headers())
    }

    /// The response headers as the filters left them: the view of the
    /// filter closest to the client.
    pub fn response_headers(&self) -> Option<&HeaderMap> {
        (0..self.ids.len()).find_map(|k| self.state(k).response.headers())
    }

    /// Whether a filter reset the stream.
    pub fn is_reset(&self) -> bool {
        self.state(0).reset
    }

    /// A property (dotted path) as the first filter reads it in this
    /// stream, including filter state any filter set.
    pub fn property(&self, path: &str) -> Option<Vec<u8>> {
        let path = properties::path_from_dotted(path);
        let state = self.state(0);
        // A value a filter set, by its whole path (a filter reading it back
        // through the ABI finds it only under a one-segment path, as in
        // Envoy); then what the filter would read.
        state
            .filter_state
            .read(|s| s.properties.get(&path).cloned())
            .flatten()
            .or_else(|| {
                self.vms_ref()[0]
                    .store
                    .data()
                    .property_for(&path, Some(state))
                    .ok()
            })
    }

    /// An object a filter stored with the `set_envoy_filter_state` foreign
    /// function, by its key (`envoy.tcp_proxy.cluster`, ...).
    pub fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        self.state(0)
            .filter_state
            .read(|state| state.objects.get(key).cloned())
            .flatten()
    }

    /// The VM (the first one of a chain), for example to inspect its logs.
    /// To move time while the stream is paused use
    /// [`HttpStream::advance_time`], which also carries what moves on to
    /// the rest of a chain.
    pub fn vm(&mut self) -> &mut Vm {
        &mut self.vms()[0]
    }

    /// VM `k` of the stream's chain.
    pub fn chain_vm(&mut self, k: usize) -> Option<&mut Vm> {
        self.vms().get_mut(k)
    }

    /// Advances virtual time for every VM the stream goes through (see
    /// [`Vm::advance_time`]).
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error.
    pub fn advance_time(&mut self, by: Duration) -> Result<()> {
        match &mut self.owner {
            Owner::Vm(vm) => vm.advance_time(by),
            Owner::Chain(chain) => chain.advance_time(by),
        }
    }

    /// What the stream's callbacks have cost so far, summed over the
    /// filters of a chain (each filter's share is in [`Exchange::costs`]).
    pub fn costs(&self) -> Costs {
        let mut total = Costs::default();
        for (vm, id) in self.vms_ref().iter().zip(self.ids.iter()) {
            if let Some(state) = vm.state_ref(*id) {
                total.add(&state.costs);
            }
        }
        total
    }

    /// Ends the stream as Envoy does (`proxy_on_log` for every filter, then
    /// `proxy_on_done` and `proxy_on_delete` for every filter) and returns
    /// what happened.
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error.
    pub fn finish(self) -> Result<Exchange> {
        let Self { mut owner, ids } = self;
        if let Owner::Chain(chain) = &mut owner {
            chain.forget(ids[0]);
        }
        chain::finish(owner.vms(), &ids)
    }
}
