//! State of one TCP connection as the host sees it: what each direction
//! holds at the filter, and what went through.

/// Which peer closed, as `proxy_peer_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerType {
    Unknown = 0,
    Local = 1,
    Remote = 2,
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub(crate) struct TcpFlow {
    /// Bytes held at the filter, visible to it in its callback and while
    /// it paused.
    pub(crate) buffer: Vec<u8>,
    pub(crate) available: bool,
    pub(crate) paused: bool,
    pub(crate) end_of_stream: bool,
    /// What went through the filter.
    pub(crate) sent: Vec<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct TcpState {
    /// Bytes from the client, on their way upstream.
    pub(crate) downstream: TcpFlow,
    /// Bytes from the upstream, on their way to the client.
    pub(crate) upstream: TcpFlow,
    /// The filter closed the connection (`proxy_close_stream`).
    pub(crate) closed_by_filter: bool,
}

impl TcpState {
    pub(crate) fn flow_mut(&mut self, downstream: bool) -> &mut TcpFlow {
        if downstream {
            &mut self.downstream
        } else {
            &mut self.upstream
        }
    }
}
