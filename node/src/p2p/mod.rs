//! The libp2p host: TCP and WebSocket listeners, Noise/TLS, yamux, identify, ping, and the
//! one-request-one-response stream protocols of MK12.
//!
//! The host knows nothing about deals. For every inbound stream on a served protocol it
//! reads exactly one CBOR item (never waiting for EOF, under a read deadline), hands it to
//! a [`StreamService`], writes the answer under a write deadline and closes its side.
//!
//! ```text
//! Host::start(runtime, keypair, HostConfig, Arc<dyn StreamService>) -> HostHandle
//!   swarm task:      transport events, identify, ping, connection limits
//!   connection task: yamux + multistream-select, one per connection (swarm executor)
//!   stream task:     read one item -> service.handle -> write -> close, one per stream
//! ```
//!
//! Layer: the p2p host, above the runtime seam: uses `runtime` and `budget`; knows
//! nothing about deals.

pub mod addr;
mod host;
mod serve;
pub mod tcp;
pub mod transport;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

pub use dealport_core::wire::framer::FrameError;
use dealport_core::wire::protocols;
pub use host::{Host, HostError, HostHandle};
pub use libp2p::{identity::Keypair, Multiaddr, PeerId, StreamProtocol};
pub use serve::{Stats, StatsSnapshot};

/// `/fil/storage/mk/1.2.0`: deal proposal (Boost's first version of the 7-field params).
pub const PROTOCOL_DEAL_1_2_0: StreamProtocol = StreamProtocol::new(protocols::DEAL_1_2_0);
/// `/fil/storage/mk/1.2.1`: deal proposal, same handler (Curio's sptool opens this one).
pub const PROTOCOL_DEAL_1_2_1: StreamProtocol = StreamProtocol::new(protocols::DEAL_1_2_1);
/// `/fil/storage/status/1.2.0`: deal status.
pub const PROTOCOL_STATUS: StreamProtocol = StreamProtocol::new(protocols::STATUS_1_2_0);
/// `/fil/storage/ask/1.1.0`: storage ask.
pub const PROTOCOL_ASK: StreamProtocol = StreamProtocol::new(protocols::ASK_1_1_0);
/// `/fil/retrieval/transports/1.0.0`: supported retrieval transports; the client sends
/// nothing.
pub const PROTOCOL_TRANSPORTS: StreamProtocol = StreamProtocol::new(protocols::TRANSPORTS_1_0_0);

/// A protocol the host serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedProtocol {
    pub protocol: StreamProtocol,
    /// The client sends one CBOR item first (`false`: the client sends nothing and the
    /// service is called at once with an empty request).
    pub reads_request: bool,
}

/// The five MK12 protocols.
pub fn mk12_protocols() -> Vec<ServedProtocol> {
    let reads = |protocol| ServedProtocol {
        protocol,
        reads_request: true,
    };
    vec![
        reads(PROTOCOL_DEAL_1_2_0),
        reads(PROTOCOL_DEAL_1_2_1),
        reads(PROTOCOL_STATUS),
        reads(PROTOCOL_ASK),
        ServedProtocol {
            protocol: PROTOCOL_TRANSPORTS,
            reads_request: false,
        },
    ]
}

/// The future a [`StreamService`] returns: the response bytes, or `None` to close the
/// stream without writing anything.
pub type Reply = Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>;

/// What the application does with a stream. Called once per inbound stream.
pub trait StreamService: Send + Sync + 'static {
    /// One complete request (one CBOR item, or empty for protocols that read nothing).
    /// `None` = close without reply.
    fn handle(&self, protocol: &str, peer: PeerId, remote: &Multiaddr, request: Vec<u8>) -> Reply;

    /// A stream ended without reaching [`handle`](Self::handle) or without its answer
    /// being delivered. The host has already logged and counted it.
    fn on_stream_failure(&self, _protocol: &str, _peer: PeerId, _failure: &StreamFailure) {}

    /// An inbound connection was denied by a connection limit. The host has already
    /// counted it.
    fn on_connection_denied(&self, _reason: DenyReason) {}
}

/// Why a stream was not served to the end.
#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    #[error("refused: {0}")]
    Refused(RefuseReason),
    #[error("no complete request within the {0:?} read deadline")]
    ReadTimeout(Duration),
    #[error("not one byte of the request within the {0:?} first-byte deadline")]
    FirstByteTimeout(Duration),
    #[error("the request would take the bytes buffered by all streams over {0}")]
    BufferBudget(usize),
    #[error("the request would take the bytes buffered by this peer's streams over {0}")]
    PeerBufferBudget(usize),
    #[error("the request would take the bytes buffered by this address's streams over {0}")]
    IpBufferBudget(usize),
    #[error("request is not one acceptable cbor item: {0}")]
    Framing(FrameError),
    #[error("stream ended after {received} bytes, before the request was complete")]
    Eof { received: usize },
    #[error("reading the request: {0}")]
    ReadIo(std::io::Error),
    #[error("response not written within the {0:?} write deadline")]
    WriteTimeout(Duration),
    #[error("writing the response: {0}")]
    WriteIo(std::io::Error),
}

impl StreamFailure {
    /// The limit that ended the stream (the `limit` label of
    /// `dealport_limit_hits_total`), `None` when the peer itself failed.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            StreamFailure::Refused(RefuseReason::PeerStreamLimit) => Some("streams_per_peer"),
            StreamFailure::Refused(RefuseReason::IpStreamLimit) => Some("streams_per_ip"),
            StreamFailure::Refused(RefuseReason::TotalStreamLimit) => Some("streams_total"),
            StreamFailure::ReadTimeout(_) => Some("read_deadline"),
            StreamFailure::FirstByteTimeout(_) => Some("first_byte_deadline"),
            StreamFailure::BufferBudget(_) => Some("buffered_bytes_total"),
            StreamFailure::PeerBufferBudget(_) => Some("buffered_bytes_per_peer"),
            StreamFailure::IpBufferBudget(_) => Some("buffered_bytes_per_ip"),
            StreamFailure::Framing(FrameError::TooLarge { .. }) => Some("request_size"),
            StreamFailure::WriteTimeout(_) => Some("write_deadline"),
            _ => None,
        }
    }
}

/// Which limit denied an inbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DenyReason {
    #[error("connection limit")]
    ConnectionsTotal,
    #[error("per-peer connection limit")]
    ConnectionsPerPeer,
    #[error("per-ip connection limit")]
    ConnectionsPerIp,
    #[error("pending connection limit")]
    PendingConnections,
    #[error("shutting down")]
    ShuttingDown,
}

impl DenyReason {
    /// The `limit` label of `dealport_limit_hits_total`; `None` for a shutdown.
    pub fn limit(self) -> Option<&'static str> {
        match self {
            DenyReason::ConnectionsTotal => Some("connections_total"),
            DenyReason::ConnectionsPerPeer => Some("connections_per_peer"),
            DenyReason::ConnectionsPerIp => Some("connections_per_ip"),
            DenyReason::PendingConnections => Some("connections_pending"),
            DenyReason::ShuttingDown => None,
        }
    }
}

/// Why an inbound stream was reset before reading anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefuseReason {
    #[error("the peer has too many streams in flight")]
    PeerStreamLimit,
    #[error("the peer's IP address has too many streams in flight")]
    IpStreamLimit,
    #[error("too many streams in flight")]
    TotalStreamLimit,
    #[error("the host is shutting down")]
    ShuttingDown,
}

/// Bounds on what remote peers can make the host hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Streams of one peer being served at once (over all its connections); excess
    /// streams are reset on arrival.
    pub max_streams_per_peer: usize,
    /// Streams being served at once in total.
    pub max_streams_total: usize,
    /// Streams being served at once for one IP address (over all its peers: many peer
    /// identities behind one address must not take every stream slot).
    pub max_streams_per_ip: usize,
    /// Established connections in total.
    pub max_connections_total: usize,
    /// Established connections of one peer.
    pub max_connections_per_peer: usize,
    /// Established plus handshaking inbound connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Whether loopback addresses are exempt from `max_connections_per_ip` and
    /// `max_streams_per_ip` (the HTTP WebSocket relay connects from loopback on behalf of
    /// every client).
    pub per_ip_exempt_loopback: bool,
    /// Inbound connections still in their handshake.
    pub max_pending_incoming: usize,
    /// Inbound streams still negotiating their protocol, per connection.
    pub max_negotiating_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams_per_peer: 64,
            max_streams_total: 1024,
            max_streams_per_ip: 256,
            max_connections_total: 1024,
            max_connections_per_peer: 8,
            max_connections_per_ip: 32,
            per_ip_exempt_loopback: true,
            max_pending_incoming: 128,
            max_negotiating_streams: 128,
        }
    }
}

/// The key the HTTP relays sign `X-Dealport-Relayed-For` with and this node's host
/// checks it with: derived from the identity, which every node of a cluster shares, so any
/// node's relay is believed by whichever node holds the lease, and no one else's is.
pub fn relay_key(keypair: &Keypair) -> dealport_core::relay::RelayKey {
    let secret = keypair.to_protobuf_encoding().unwrap_or_default();
    dealport_core::relay::relay_key(&secret)
}

/// Everything [`Host::start`] needs besides the key, the runtime and the service.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where to listen. Default: `/ip4/0.0.0.0/tcp/0` and `/ip4/0.0.0.0/tcp/0/ws`.
    pub listen: Vec<Multiaddr>,
    /// Addresses given to peers through identify (e.g. the public `/dns/…/tcp/443/wss`).
    /// When non-empty, the listen addresses are not advertised.
    pub announce: Vec<Multiaddr>,
    /// Identify agent version, e.g. `dealport/0.1.0`.
    pub agent_version: String,
    /// Identify protocol version. Default `ipfs/0.1.0`, as go-libp2p.
    pub protocol_version: String,
    /// The protocols served. Default: [`mk12_protocols`].
    pub protocols: Vec<ServedProtocol>,
    /// Time for the client to deliver its whole request. Default 10 s (Boost, Curio).
    pub read_deadline: Duration,
    /// Time for the first byte of the request to arrive (a stream opened and left
    /// silent holds a slot for less than the whole read deadline). Default 5 s: MK12
    /// clients write the request together with the protocol proposal.
    pub first_byte_deadline: Duration,
    /// Time to write the response and close. Default 10 s.
    pub write_deadline: Duration,
    /// Largest request item accepted, in bytes.
    pub max_request_size: usize,
    /// Bytes all streams may hold at once while reading their requests: with it, memory
    /// is bounded by this, not by `max_streams_total x max_request_size` (4 GiB with the
    /// defaults). A stream that would go over it is closed. Default 128 MiB.
    pub max_buffered_total: usize,
    /// The same bound for the streams of one peer, so one peer cannot take the whole
    /// budget from the others. Default 16 MiB (four full-size requests).
    pub max_buffered_per_peer: usize,
    /// The same for the streams of one IP address (over all its peer identities, which
    /// cost nothing to make); loopback is exempt when the per-IP limits are. Default 32 MiB.
    pub max_buffered_per_ip: usize,
    pub limits: Limits,
    /// A connection with no stream open is closed after this long.
    pub idle_connection_timeout: Duration,
    /// Bound on the security and muxer handshake of a new connection.
    pub handshake_timeout: Duration,
    /// How long [`HostHandle::listen_addrs`] waits for every listener to report.
    pub listen_wait: Duration,
    /// Connections the HTTP relay of this process hands to the WebSocket listener
    /// (crate::handoff); `None`: only dialed connections.
    pub handoffs: Option<Arc<crate::handoff::HandOffs>>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/tcp/0/ws".parse().expect("valid multiaddr"),
            ],
            announce: Vec::new(),
            agent_version: concat!("dealport/", env!("CARGO_PKG_VERSION")).to_string(),
            protocol_version: "ipfs/0.1.0".to_string(),
            protocols: mk12_protocols(),
            read_deadline: Duration::from_secs(10),
            first_byte_deadline: Duration::from_secs(5),
            write_deadline: Duration::from_secs(10),
            max_request_size: dealport_core::wire::framer::DEFAULT_MAX_ITEM,
            max_buffered_total: 128 << 20,
            max_buffered_per_peer: 16 << 20,
            max_buffered_per_ip: 32 << 20,
            limits: Limits::default(),
            idle_connection_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(20),
            listen_wait: Duration::from_secs(5),
            handoffs: None,
        }
    }
}
