//! The behaviour that serves the application protocols, and the per-stream task.
//!
//! Why not `libp2p-stream`: its inbound side hands streams over a channel with a single
//! slot per protocol and silently drops streams that arrive while the slot is full, and
//! it does not say which connection (remote address) a stream came on. Here the
//! connection handler admits or refuses each negotiated stream on the spot (limits are
//! checked synchronously) and spawns its task directly on the runtime.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use dealport_core::wire::framer::{Frame, Framer};
use futures::{
    future::{self, Ready},
    AsyncReadExt, AsyncWriteExt,
};
use libp2p::{
    core::{
        transport::PortUse,
        upgrade::{DeniedUpgrade, InboundUpgrade, UpgradeInfo},
        Endpoint,
    },
    swarm::{
        handler::{ConnectionEvent, FullyNegotiatedInbound},
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, Stream, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent,
        ToSwarm,
    },
    Multiaddr, PeerId, StreamProtocol,
};

use super::{
    addr::ip_of, DenyReason, HostConfig, Limits, RefuseReason, ServedProtocol, StreamFailure,
    StreamService,
};
use crate::{
    budget::ByteBudget,
    runtime::{timeout, Runtime},
};

/// Largest single read while collecting a request: memory grows with bytes received,
/// not with lengths a peer merely announces.
const READ_CHUNK: usize = 64 * 1024;

/// Least read while collecting a request. The framer asks for as little as the next
/// CBOR header (a byte or a few), and a proposal has dozens of headers: reading only
/// that made each header a read and a budget update of its own. A read returns what is
/// there, so a larger one does not wait for more; bytes past the item (MK12 clients send
/// none) are dropped.
const MIN_READ: usize = 4 * 1024;

/// Live counters of a host. All monotonic except the `active_*` gauges.
#[derive(Debug, Default)]
pub struct Stats {
    active_connections: AtomicUsize,
    active_streams: AtomicUsize,
    streams_served: AtomicU64,
    streams_refused: AtomicU64,
    read_timeouts: AtomicU64,
    framing_errors: AtomicU64,
    read_errors: AtomicU64,
    write_errors: AtomicU64,
    connections_denied: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub active_connections: usize,
    pub active_streams: usize,
    /// Streams whose service was called (answered or closed without reply by choice).
    pub streams_served: u64,
    /// Streams refused by a limit: reset on arrival (stream limits, shutdown) or closed
    /// while reading (the buffer budget).
    pub streams_refused: u64,
    pub read_timeouts: u64,
    pub framing_errors: u64,
    /// Early EOF or I/O error while reading the request.
    pub read_errors: u64,
    /// Write deadline or I/O error while answering.
    pub write_errors: u64,
    /// Inbound connections denied by the connection limits.
    pub connections_denied: u64,
}

impl Stats {
    pub fn active_connections(&self) -> usize {
        self.active_connections.load(Ordering::Relaxed)
    }

    pub fn active_streams(&self) -> usize {
        self.active_streams.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            active_connections: self.active_connections(),
            active_streams: self.active_streams(),
            streams_served: l(&self.streams_served),
            streams_refused: l(&self.streams_refused),
            read_timeouts: l(&self.read_timeouts),
            framing_errors: l(&self.framing_errors),
            read_errors: l(&self.read_errors),
            write_errors: l(&self.write_errors),
            connections_denied: l(&self.connections_denied),
        }
    }
}

/// What every connection handler and stream task of one host shares.
pub(crate) struct Shared {
    runtime: Arc<dyn Runtime>,
    service: Arc<dyn StreamService>,
    protocols: Vec<ServedProtocol>,
    read_deadline: Duration,
    first_byte_deadline: Duration,
    write_deadline: Duration,
    max_request: usize,
    buffers: BufferBudget,
    limits: Limits,
    pub(crate) stats: Arc<Stats>,
    streams_per_peer: Mutex<HashMap<PeerId, usize>>,
    streams_per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub(crate) draining: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        runtime: Arc<dyn Runtime>,
        service: Arc<dyn StreamService>,
        cfg: &HostConfig,
    ) -> Arc<Self> {
        Arc::new(Shared {
            runtime,
            service,
            protocols: cfg.protocols.clone(),
            read_deadline: cfg.read_deadline,
            first_byte_deadline: cfg.first_byte_deadline,
            write_deadline: cfg.write_deadline,
            max_request: cfg.max_request_size,
            buffers: BufferBudget {
                total: ByteBudget::new(cfg.max_buffered_total),
                per_peer: Mutex::new(Shares::new(cfg.max_buffered_per_peer)),
                per_ip: Mutex::new(Shares::new(cfg.max_buffered_per_ip)),
            },
            limits: cfg.limits.clone(),
            stats: Arc::new(Stats::default()),
            streams_per_peer: Mutex::new(HashMap::new()),
            streams_per_ip: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
        })
    }

    fn per_peer(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, usize>> {
        lock(&self.streams_per_peer)
    }

    fn per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        lock(&self.streams_per_ip)
    }

    /// The IP whose streams are counted: `None` when unknown or exempt (loopback).
    fn counted_ip(&self, remote: &Multiaddr) -> Option<IpAddr> {
        ip_of(remote).filter(|ip| !(self.limits.per_ip_exempt_loopback && ip.is_loopback()))
    }

    /// Take a slot for one stream of `peer` from `ip`, or say why not.
    fn reserve(
        self: &Arc<Self>,
        peer: PeerId,
        ip: Option<IpAddr>,
    ) -> Result<StreamSlot, RefuseReason> {
        if self.draining.load(Ordering::Acquire) {
            return Err(RefuseReason::ShuttingDown);
        }
        // Lock order: per IP, then per peer (StreamSlot::drop takes them one at a time).
        let mut per_ip = self.per_ip();
        if let Some(ip) = ip {
            if per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_streams_per_ip {
                return Err(RefuseReason::IpStreamLimit);
            }
        }
        let mut per_peer = self.per_peer();
        let n = per_peer.entry(peer).or_insert(0);
        if *n >= self.limits.max_streams_per_peer {
            if *n == 0 {
                per_peer.remove(&peer);
            }
            return Err(RefuseReason::PeerStreamLimit);
        }
        let total = self.stats.active_streams.fetch_add(1, Ordering::AcqRel);
        if total >= self.limits.max_streams_total {
            self.stats.active_streams.fetch_sub(1, Ordering::AcqRel);
            if *n == 0 {
                per_peer.remove(&peer);
            }
            return Err(RefuseReason::TotalStreamLimit);
        }
        *n += 1;
        if let Some(ip) = ip {
            *per_ip.entry(ip).or_insert(0) += 1;
        }
        Ok(StreamSlot {
            shared: self.clone(),
            peer,
            ip,
        })
    }

    /// A stream finished negotiating `protocol`: serve it or reset it.
    fn admit(
        self: &Arc<Self>,
        peer: PeerId,
        remote: &Multiaddr,
        stream: Stream,
        protocol: StreamProtocol,
    ) {
        let Some(served) = self
            .protocols
            .iter()
            .find(|p| p.protocol == protocol)
            .cloned()
        else {
            return; // cannot happen: we only listen on our own protocols
        };
        match self.reserve(peer, self.counted_ip(remote)) {
            Ok(slot) => {
                let remote = remote.clone();
                self.runtime
                    .spawn(Box::pin(serve_stream(slot, stream, served, remote)));
            }
            Err(reason) => {
                drop(stream); // an unclosed yamux stream is reset on drop
                self.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, %protocol, %reason, "inbound stream refused");
                self.service.on_stream_failure(
                    protocol.as_ref(),
                    peer,
                    &StreamFailure::Refused(reason),
                );
            }
        }
    }

    fn fail(&self, protocol: &str, peer: PeerId, failure: StreamFailure) {
        let counter = match &failure {
            StreamFailure::Refused(_)
            | StreamFailure::BufferBudget(_)
            | StreamFailure::PeerBufferBudget(_)
            | StreamFailure::IpBufferBudget(_) => &self.stats.streams_refused,
            StreamFailure::ReadTimeout(_) | StreamFailure::FirstByteTimeout(_) => {
                &self.stats.read_timeouts
            }
            StreamFailure::Framing(_) => &self.stats.framing_errors,
            StreamFailure::Eof { .. } | StreamFailure::ReadIo(_) => &self.stats.read_errors,
            StreamFailure::WriteTimeout(_) | StreamFailure::WriteIo(_) => &self.stats.write_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, %protocol, error = %failure, "stream closed without an answer");
        self.service.on_stream_failure(protocol, peer, &failure);
    }
}

/// One admitted stream; gives its slot back when dropped.
struct StreamSlot {
    shared: Arc<Shared>,
    peer: PeerId,
    ip: Option<IpAddr>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some(ip) = &self.ip {
            dec(&mut self.shared.per_ip(), ip);
        }
        dec(&mut self.shared.per_peer(), &self.peer);
        self.shared
            .stats
            .active_streams
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bytes that request buffers hold, against a maximum for all streams, one for the
/// streams of each peer and one for those of each (counted) IP address.
struct BufferBudget {
    total: ByteBudget,
    per_peer: Mutex<Shares<PeerId>>,
    per_ip: Mutex<Shares<IpAddr>>,
}

/// Bytes held per key against one maximum per key; keys holding nothing are dropped, so
/// the map is as large as the set of streams reading right now.
struct Shares<K> {
    held: HashMap<K, usize>,
    max: usize,
}

impl<K: std::hash::Hash + Eq> Shares<K> {
    fn new(max: usize) -> Self {
        Shares {
            held: HashMap::new(),
            max,
        }
    }

    fn fits(&self, k: &K, add: usize) -> bool {
        self.held.get(k).copied().unwrap_or(0) + add <= self.max
    }

    fn add(&mut self, k: K, n: usize) {
        *self.held.entry(k).or_insert(0) += n;
    }

    fn sub(&mut self, k: &K, n: usize) {
        release(&mut self.held, k, n);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BufferBudget {
    /// Take `add` more bytes for `peer` at `ip`, or say which bound it would cross.
    fn grow(&self, peer: PeerId, ip: Option<IpAddr>, add: usize) -> Result<(), StreamFailure> {
        // Lock order: per IP, then per peer (as in `shrink`).
        let mut per_ip = lock(&self.per_ip);
        let mut per_peer = lock(&self.per_peer);
        if let Some(ip) = &ip {
            if !per_ip.fits(ip, add) {
                return Err(StreamFailure::IpBufferBudget(per_ip.max));
            }
        }
        if !per_peer.fits(&peer, add) {
            return Err(StreamFailure::PeerBufferBudget(per_peer.max));
        }
        if !self.total.try_take(add) {
            return Err(StreamFailure::BufferBudget(self.total.max()));
        }
        if let Some(ip) = ip {
            per_ip.add(ip, add);
        }
        per_peer.add(peer, add);
        Ok(())
    }

    /// Give back `n` bytes of `peer`'s at `ip`.
    fn shrink(&self, peer: PeerId, ip: Option<IpAddr>, n: usize) {
        if n == 0 {
            return;
        }
        let mut per_ip = lock(&self.per_ip);
        let mut per_peer = lock(&self.per_peer);
        self.total.give(n);
        if let Some(ip) = &ip {
            per_ip.sub(ip, n);
        }
        per_peer.sub(&peer, n);
    }
}

/// One request buffer's share of the [`BufferBudget`], given back on drop.
struct BufferShare<'a> {
    budget: &'a BufferBudget,
    peer: PeerId,
    ip: Option<IpAddr>,
    held: usize,
}

impl BufferShare<'_> {
    /// Hold `n` bytes from now on; on `Err` nothing changed.
    fn set(&mut self, n: usize) -> Result<(), StreamFailure> {
        if n > self.held {
            self.budget.grow(self.peer, self.ip, n - self.held)?;
        } else {
            self.budget.shrink(self.peer, self.ip, self.held - n);
        }
        self.held = n;
        Ok(())
    }
}

impl Drop for BufferShare<'_> {
    fn drop(&mut self) {
        self.budget.shrink(self.peer, self.ip, self.held);
    }
}

/// Read exactly one CBOR item: never waiting for EOF or for bytes past its end, never
/// more than `max` bytes. The first read must return within `first_byte` (the caller
/// bounds the whole read).
async fn read_item(
    stream: &mut Stream,
    max: usize,
    first_byte: Duration,
    budget: &BufferBudget,
    peer: PeerId,
    ip: Option<IpAddr>,
) -> Result<Vec<u8>, StreamFailure> {
    let mut framer = Framer::new(max);
    let mut buf = Vec::new();
    let mut share = BufferShare {
        budget,
        peer,
        ip,
        held: 0,
    };
    loop {
        let old = buf.len();
        let room = max.saturating_sub(old).max(1);
        let want = framer.read_hint().max(MIN_READ.min(room)).min(READ_CHUNK);
        share.set(old + want)?;
        buf.resize(old + want, 0);
        let read = stream.read(&mut buf[old..]);
        let n = if old == 0 {
            timeout(first_byte, read)
                .await
                .ok_or(StreamFailure::FirstByteTimeout(first_byte))?
        } else {
            read.await
        }
        .map_err(StreamFailure::ReadIo)?;
        buf.truncate(old + n);
        if n == 0 {
            return Err(StreamFailure::Eof { received: old });
        }
        match framer.advance(&buf).map_err(StreamFailure::Framing)? {
            Frame::NeedMore => {}
            Frame::Complete(len) => {
                if len < buf.len() {
                    // The client wrote past its request; MK12 clients never do.
                    tracing::debug!(extra = buf.len() - len, "ignoring bytes after the request");
                }
                buf.truncate(len);
                return Ok(buf);
            }
        }
    }
}

/// The life of one inbound stream.
async fn serve_stream(
    slot: StreamSlot,
    mut stream: Stream,
    served: ServedProtocol,
    remote: Multiaddr,
) {
    let shared = slot.shared.clone();
    let peer = slot.peer;
    let protocol = served.protocol.as_ref();
    let request = if served.reads_request {
        let outcome = timeout(
            shared.read_deadline,
            read_item(
                &mut stream,
                shared.max_request,
                shared.first_byte_deadline,
                &shared.buffers,
                peer,
                slot.ip,
            ),
        )
        .await;
        let failure = match outcome {
            Some(Ok(request)) => Ok(request),
            Some(Err(f)) => Err(f),
            None => Err(StreamFailure::ReadTimeout(shared.read_deadline)),
        };
        match failure {
            Ok(r) => r,
            Err(f) => {
                shared.fail(protocol, peer, f);
                let _ = timeout(shared.write_deadline, stream.close()).await;
                return;
            }
        }
    } else {
        Vec::new()
    };

    shared.stats.streams_served.fetch_add(1, Ordering::Relaxed);
    let reply = shared
        .service
        .handle(protocol, peer, &remote, request)
        .await;
    let write = async {
        if let Some(bytes) = &reply {
            stream.write_all(bytes).await?;
            stream.flush().await?;
        }
        stream.close().await
    };
    match timeout(shared.write_deadline, write).await {
        Some(Ok(())) => {}
        Some(Err(e)) if reply.is_some() => shared.fail(protocol, peer, StreamFailure::WriteIo(e)),
        Some(Err(_)) => {} // closing without reply; the peer may have gone already
        None => shared.fail(
            protocol,
            peer,
            StreamFailure::WriteTimeout(shared.write_deadline),
        ),
    }
    drop(slot);
}

/// Upgrade that accepts any of the served protocols and hands the raw stream over.
#[derive(Debug, Clone)]
pub(crate) struct ServeUpgrade(Vec<StreamProtocol>);

impl UpgradeInfo for ServeUpgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for ServeUpgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, info: StreamProtocol) -> Self::Future {
        future::ready(Ok((stream, info)))
    }
}

/// Per-connection handler: lists the served protocols (identify advertises exactly what
/// `listen_protocol` returns) and admits negotiated streams.
pub(crate) struct ServeHandler {
    shared: Arc<Shared>,
    peer: PeerId,
    remote: Multiaddr,
    protocols: Vec<StreamProtocol>,
}

impl ConnectionHandler for ServeHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ServeUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<ServeUpgrade, ()> {
        SubstreamProtocol::new(ServeUpgrade(self.protocols.clone()), ())
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, Infallible, Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<ServeUpgrade, DeniedUpgrade, (), Infallible>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, protocol),
            ..
        }) = event
        {
            self.shared.admit(self.peer, &self.remote, stream, protocol);
        }
    }
}

/// Serves the application protocols and enforces the connection limits.
pub(crate) struct ServeBehaviour {
    shared: Arc<Shared>,
    /// Inbound connections in their handshake, with the remote IP.
    pending: HashMap<ConnectionId, Option<IpAddr>>,
    /// Established connections: peer and (for inbound ones) remote IP.
    established: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    per_ip: HashMap<IpAddr, usize>,
    per_peer: HashMap<PeerId, usize>,
}

/// Take `n` off `key`'s count, dropping the key at zero (so the map only holds keys
/// with something counted).
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K, n: usize) {
    if let Some(held) = map.get_mut(key) {
        *held = held.saturating_sub(n);
        if *held == 0 {
            map.remove(key);
        }
    }
}

fn dec<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    release(map, key, 1);
}

impl ServeBehaviour {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            pending: HashMap::new(),
            established: HashMap::new(),
            per_ip: HashMap::new(),
            per_peer: HashMap::new(),
        }
    }

    fn deny(&self, why: DenyReason) -> ConnectionDenied {
        self.shared
            .stats
            .connections_denied
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%why, "inbound connection denied");
        self.shared.service.on_connection_denied(why);
        ConnectionDenied::new(why)
    }

    fn handler(&self, peer: PeerId, remote: &Multiaddr) -> ServeHandler {
        ServeHandler {
            shared: self.shared.clone(),
            peer,
            remote: remote.clone(),
            protocols: self
                .shared
                .protocols
                .iter()
                .map(|p| p.protocol.clone())
                .collect(),
        }
    }

    fn check_established(&self, peer: PeerId) -> Result<(), ConnectionDenied> {
        let l = &self.shared.limits;
        if self.established.len() >= l.max_connections_total {
            return Err(self.deny(DenyReason::ConnectionsTotal));
        }
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= l.max_connections_per_peer {
            return Err(self.deny(DenyReason::ConnectionsPerPeer));
        }
        Ok(())
    }
}

impl NetworkBehaviour for ServeBehaviour {
    type ConnectionHandler = ServeHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let l = &self.shared.limits;
        if self.shared.draining.load(Ordering::Acquire) {
            return Err(self.deny(DenyReason::ShuttingDown));
        }
        if self.pending.len() >= l.max_pending_incoming {
            return Err(self.deny(DenyReason::PendingConnections));
        }
        let ip = ip_of(remote_addr);
        if let Some(ip) = ip {
            let exempt = l.per_ip_exempt_loopback && ip.is_loopback();
            if !exempt && self.per_ip.get(&ip).copied().unwrap_or(0) >= l.max_connections_per_ip {
                return Err(self.deny(DenyReason::ConnectionsPerIp));
            }
            *self.per_ip.entry(ip).or_insert(0) += 1;
        }
        self.pending.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_established(peer)?;
        Ok(self.handler(peer, remote_addr))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_established(peer)?;
        Ok(self.handler(peer, addr))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                // An inbound connection moves its IP count from pending to established.
                let ip = self.pending.remove(&e.connection_id).flatten();
                self.established.insert(e.connection_id, (e.peer_id, ip));
                *self.per_peer.entry(e.peer_id).or_insert(0) += 1;
                self.shared
                    .stats
                    .active_connections
                    .store(self.established.len(), Ordering::Relaxed);
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some((peer, ip)) = self.established.remove(&e.connection_id) {
                    dec(&mut self.per_peer, &peer);
                    if let Some(ip) = ip {
                        dec(&mut self.per_ip, &ip);
                    }
                }
                self.shared
                    .stats
                    .active_connections
                    .store(self.established.len(), Ordering::Relaxed);
            }
            FromSwarm::ListenFailure(e) => {
                if let Some(Some(ip)) = self.pending.remove(&e.connection_id) {
                    dec(&mut self.per_ip, &ip);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
