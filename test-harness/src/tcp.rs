//! TCP connections through a network filter (`proxy_on_new_connection`,
//! `proxy_on_downstream_data`, `proxy_on_upstream_data`, the close
//! callbacks), with Envoy's buffering: data a callback pauses stays buffered
//! and the next callback sees all of it.

use std::mem;

use crate::abi::Action;
use crate::error::{Error, Result};
use crate::host::{Deferred, Phase};
use crate::stream_state::Progress;
use crate::tcp_state::{PeerType, TcpFlow, TcpState};
use crate::vm::{Callbacks, Slot, Vm};

/// A TCP connection through a [`Vm`]'s network filter.
#[derive(Debug)]
pub struct TcpConnection<'vm> {
    vm: &'vm mut Vm,
    id: u32,
}

impl Vm {
    /// Opens a connection: creates its context and calls
    /// `proxy_on_new_connection`, as Envoy does when a client connects.
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error.
    pub fn tcp_connection(&mut self) -> Result<TcpConnection<'_>> {
        let id = self.new_context_id();
        self.store.data_mut().tcp.insert(id, TcpState::default());
        let root = self.store.data().root_id as i32;
        if let Some(f) = self.callback(|c| &mut c.on_context_create) {
            self.invoke("proxy_on_context_create", id, Phase::Callback, |s| {
                f.call(s, (id as i32, root))
            })?;
        }
        if let Some(f) = self.callback(|c| &mut c.on_new_connection) {
            self.invoke("proxy_on_new_connection", id, Phase::Callback, |s| {
                f.call(s, id as i32)
            })?;
        }
        self.flush_deferred()?;
        self.settle()?;
        Ok(TcpConnection { vm: self, id })
    }

    fn tcp(&mut self, id: u32) -> Result<&mut TcpState> {
        self.store
            .data_mut()
            .tcp
            .get_mut(&id)
            .ok_or_else(|| Error::invalid_state(format!("connection {id} is finished")))
    }

    fn tcp_data(
        &mut self,
        id: u32,
        downstream: bool,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<Progress> {
        let state = self.tcp(id)?;
        if state.closed_by_filter {
            return Ok(Progress::Reset);
        }
        let flow = state.flow_mut(downstream);
        if flow.end_of_stream {
            return Err(Error::invalid_state(
                "that side of the connection already ended",
            ));
        }
        flow.buffer.extend_from_slice(data);
        flow.end_of_stream = end_of_stream;
        flow.available = true;
        let size = flow.buffer.len() as i32;
        let action = if downstream {
            self.data_callback(
                |c| &mut c.on_downstream_data,
                "proxy_on_downstream_data",
                id,
                size,
                end_of_stream,
            )?
        } else {
            self.data_callback(
                |c| &mut c.on_upstream_data,
                "proxy_on_upstream_data",
                id,
                size,
                end_of_stream,
            )?
        };
        let flow = self.tcp(id)?.flow_mut(downstream);
        if action == Action::Continue {
            pass(flow);
        } else {
            flow.paused = true;
        }
        self.flush_deferred()?;
        self.settle()?;
        let state = self.tcp(id)?;
        Ok(if state.closed_by_filter {
            Progress::Reset
        } else if state.flow_mut(downstream).paused {
            Progress::Paused
        } else {
            Progress::Continued
        })
    }

    fn data_callback(
        &mut self,
        slot: impl FnOnce(&mut Callbacks) -> &mut Slot<(i32, i32, i32), i32>,
        name: &'static str,
        id: u32,
        size: i32,
        end_of_stream: bool,
    ) -> Result<Action> {
        match self.callback(slot) {
            Some(f) => Ok(Action::from_abi(self.invoke(
                name,
                id,
                Phase::Callback,
                |s| f.call(s, (id as i32, size, i32::from(end_of_stream))),
            )?)),
            None => Ok(Action::Continue),
        }
    }

    /// `proxy_continue_stream(DOWNSTREAM)`: buffered client bytes go on.
    pub(crate) fn tcp_resume(&mut self, id: u32) {
        if let Ok(state) = self.tcp(id)
            && state.downstream.paused
        {
            pass(&mut state.downstream);
        }
    }

    fn tcp_close(&mut self, id: u32, downstream: bool, peer: PeerType) -> Result<()> {
        let ctx = id as i32;
        let f = if downstream {
            self.callback(|c| &mut c.on_downstream_connection_close)
        } else {
            self.callback(|c| &mut c.on_upstream_connection_close)
        };
        let name = if downstream {
            "proxy_on_downstream_connection_close"
        } else {
            "proxy_on_upstream_connection_close"
        };
        if let Some(f) = f {
            self.invoke(name, id, Phase::Callback, |s| f.call(s, (ctx, peer as i32)))?;
        }
        self.flush_deferred()?;
        self.settle().map(drop)
    }

    fn tcp_finish(&mut self, id: u32) -> Result<TcpExchange> {
        self.tcp(id)?;
        let ctx = id as i32;
        if let Some(f) = self.callback(|c| &mut c.on_log) {
            self.invoke("proxy_on_log", id, Phase::Callback, |s| f.call(s, ctx))?;
        }
        if let Some(f) = self.callback(|c| &mut c.on_done) {
            self.invoke("proxy_on_done", id, Phase::Callback, |s| f.call(s, ctx))?;
        }
        if let Some(f) = self.callback(|c| &mut c.on_delete) {
            self.invoke("proxy_on_delete", id, Phase::Callback, |s| f.call(s, ctx))?;
        }
        self.store.data_mut().deferred.retain(
            |d| !matches!(d, Deferred::TcpResume { connection } | Deferred::TcpClose { connection } if *connection == id),
        );
        let state = self
            .store
            .data_mut()
            .tcp
            .remove(&id)
            .ok_or_else(|| Error::invalid_state(format!("connection {id} does not exist")))?;
        Ok(TcpExchange {
            to_upstream: state.downstream.sent,
            to_client: state.upstream.sent,
            closed_by_filter: state.closed_by_filter,
        })
    }
}

fn pass(flow: &mut TcpFlow) {
    let data = mem::take(&mut flow.buffer);
    flow.sent.extend_from_slice(&data);
    flow.paused = false;
    flow.available = false;
}

/// What happened on a finished connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpExchange {
    /// Bytes the upstream received.
    pub to_upstream: Vec<u8>,
    /// Bytes the client received.
    pub to_client: Vec<u8>,
    /// Whether the filter closed the connection.
    pub closed_by_filter: bool,
}

impl TcpConnection<'_> {
    /// The connection's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The client sends bytes.
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error, or that side ended.
    pub fn send_downstream(
        &mut self,
        data: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.vm
            .tcp_data(self.id, true, data.as_ref(), end_of_stream)
    }

    /// The upstream sends bytes.
    ///
    /// # Errors
    ///
    /// As [`TcpConnection::send_downstream`].
    pub fn send_upstream(
        &mut self,
        data: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.vm
            .tcp_data(self.id, false, data.as_ref(), end_of_stream)
    }

    /// The client side closes (`proxy_on_downstream_connection_close`).
    ///
    /// # Errors
    ///
    /// When the callback traps.
    pub fn close_downstream(&mut self, peer: PeerType) -> Result<()> {
        self.vm.tcp_close(self.id, true, peer)
    }

    /// The upstream side closes (`proxy_on_upstream_connection_close`).
    ///
    /// # Errors
    ///
    /// When the callback traps.
    pub fn close_upstream(&mut self, peer: PeerType) -> Result<()> {
        self.vm.tcp_close(self.id, false, peer)
    }

    fn state(&self) -> &TcpState {
        // A handle exists only for an open connection.
        &self.vm.store.data().tcp[&self.id]
    }

    /// Bytes the upstream has received so far.
    pub fn upstream_received(&self) -> &[u8] {
        &self.state().downstream.sent
    }

    /// Bytes the client has received so far.
    pub fn client_received(&self) -> &[u8] {
        &self.state().upstream.sent
    }

    /// Whether the filter closed the connection.
    pub fn closed_by_filter(&self) -> bool {
        self.state().closed_by_filter
    }

    /// The VM, for example to advance time while data is held.
    pub fn vm(&mut self) -> &mut Vm {
        self.vm
    }

    /// Ends the connection (`proxy_on_log`, `proxy_on_done`, `proxy_on_delete`).
    ///
    /// # Errors
    ///
    /// When a callback traps.
    pub fn finish(self) -> Result<TcpExchange> {
        self.vm.tcp_finish(self.id)
    }
}
