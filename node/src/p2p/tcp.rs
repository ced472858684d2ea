//! A plain TCP [`Transport`] over `async-net`.
//!
//! libp2p 0.57's `libp2p-tcp` only ships a tokio provider and keeps its `Provider` trait
//! private, so this is the runtime-agnostic replacement: `async-io`'s reactor drives the
//! sockets under whatever executor polls the swarm.
//!
//! Accepts exactly `/ip4/<a>/tcp/<port>` and `/ip6/<a>/tcp/<port>`; anything with more
//! protocols after the port (e.g. `/ws`) is refused with `MultiaddrNotSupported` so an
//! [`OrTransport`](libp2p::core::transport::OrTransport) passes it to the next transport.
//!
//! Under the WebSocket layer the listener learns relayed clients' addresses
//! ([`RelayedAddrs`]): it reads each connection's upgrade request head before handing it
//! on, and when the head carries the HTTP relay's signed `X-Dealport-Relayed-For` header
//! (core::relay), the connection is reported as coming from that address, so the per-IP
//! limits count the client, not the relay. The head is given back unread
//! ([`Rewound`]) for the WebSocket handshake. The same listener also takes the
//! connections this node's own HTTP relay hands over in-process (crate::handoff), under
//! the client's address.

use std::{
    collections::VecDeque,
    io,
    net::{IpAddr, SocketAddr, TcpListener as StdListener},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use crate::handoff::{HandOffs, HandedOff};
use crate::rewound::Rewound;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use bytes::Bytes;
use dealport_core::relay::{head_end, relayed_for_in_head, RelayKey};
use futures::{
    future::BoxFuture,
    stream::{BoxStream, FuturesUnordered},
    AsyncRead, AsyncReadExt, AsyncWrite, FutureExt, StreamExt,
};
use libp2p::{
    core::{
        multiaddr::Protocol,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
        Transport,
    },
    Multiaddr,
};

/// How long a listener rests after `accept` failed (e.g. out of file descriptors), so a
/// persistent error does not spin the swarm.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Longest upgrade request head read to find the relay's header; a longer one is handed
/// on as it is (the WebSocket handshake then refuses it or not).
const MAX_SNIFFED_HEAD: usize = 8 << 10;

/// A connection as this transport hands it on: a socket it accepted or dialed (any
/// bytes read ahead first), or one the HTTP relay handed over.
#[derive(Debug)]
pub enum TcpConn {
    Socket(Rewound<TcpStream>),
    HandedOff(Box<HandedOff>),
}

impl From<TcpStream> for TcpConn {
    fn from(s: TcpStream) -> Self {
        TcpConn::Socket(Rewound::new(Bytes::new(), s))
    }
}

impl AsyncRead for TcpConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TcpConn::Socket(s) => Pin::new(s).poll_read(cx, buf),
            TcpConn::HandedOff(h) => Pin::new(&mut **h).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TcpConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TcpConn::Socket(s) => Pin::new(s).poll_write(cx, buf),
            TcpConn::HandedOff(h) => Pin::new(&mut **h).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpConn::Socket(s) => Pin::new(s).poll_flush(cx),
            TcpConn::HandedOff(h) => Pin::new(&mut **h).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpConn::Socket(s) => Pin::new(s).poll_close(cx),
            TcpConn::HandedOff(h) => Pin::new(&mut **h).poll_close(cx),
        }
    }
}

/// How a WebSocket listener learns relayed clients' addresses.
#[derive(Clone)]
pub struct RelayedAddrs {
    /// The key the HTTP relays sign their header with (core::relay::relay_key).
    pub key: RelayKey,
    /// Connections whose head is being read at once; more are closed on accept.
    pub max_pending: usize,
    /// Time for a connection's head to arrive.
    pub deadline: Duration,
    /// Connections this node's HTTP relay hands over in-process, if it does.
    pub handoffs: Option<Arc<HandOffs>>,
}

impl std::fmt::Debug for RelayedAddrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayedAddrs")
            .field("max_pending", &self.max_pending)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// A connection whose head was read: who it comes from.
struct Sniffed {
    listener_id: ListenerId,
    local: SocketAddr,
    remote: SocketAddr,
    conn: TcpConn,
}

/// TCP transport over `async-net`, with `TCP_NODELAY` on every connection.
#[derive(Default)]
pub struct TcpTransport {
    listeners: Vec<Listener>,
    events: VecDeque<TransportEvent<<Self as Transport>::ListenerUpgrade, io::Error>>,
    relayed: Option<RelayedAddrs>,
    sniffing: FuturesUnordered<BoxFuture<'static, Option<Sniffed>>>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

struct Listener {
    id: ListenerId,
    /// The address actually bound (port resolved).
    bound: SocketAddr,
    incoming: BoxStream<'static, io::Result<(TcpStream, SocketAddr)>>,
    pause: Option<Timer>,
}

impl TcpTransport {
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport for the WebSocket listener that believes the HTTP relay's header.
    pub fn with_relayed_addrs(relayed: RelayedAddrs) -> Self {
        Self {
            relayed: Some(relayed),
            ..Self::default()
        }
    }
}

impl TcpTransport {
    /// A connection the HTTP relay handed over, as an incoming one on the first
    /// listener (without a listener it is closed: no host serves here).
    fn take_handed_off(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Option<TransportEvent<<Self as Transport>::ListenerUpgrade, io::Error>> {
        let handoffs = self.relayed.as_ref()?.handoffs.as_ref()?;
        while let Poll::Ready(h) = handoffs.poll_take(cx) {
            let Some(l) = self.listeners.first() else {
                continue;
            };
            return Some(TransportEvent::Incoming {
                listener_id: l.id,
                upgrade: futures::future::ready(Ok(TcpConn::HandedOff(h.conn))),
                local_addr: to_multiaddr(l.bound),
                send_back_addr: to_multiaddr(h.remote),
            });
        }
        None
    }
}

/// Read `stream`'s request head (bounded in size and time) and find the address the
/// relay vouches for, if any. `None`: the connection closed or stayed silent.
async fn sniff(
    mut stream: TcpStream,
    peer: SocketAddr,
    relayed: &RelayedAddrs,
) -> Option<(SocketAddr, TcpConn)> {
    let read = async {
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(end) = head_end(&head) {
                let client = relayed_for_in_head(&relayed.key, &head[..end]);
                return Some((client, head));
            }
            if head.len() >= MAX_SNIFFED_HEAD {
                return Some((None, head));
            }
        }
    };
    let (client, head) = crate::runtime::timeout(relayed.deadline, read).await??;
    let remote = client.map_or(peer, |ip| SocketAddr::new(ip, 0));
    Some((
        remote,
        TcpConn::Socket(Rewound::new(Bytes::from(head), stream)),
    ))
}

/// `/ip4|ip6/<addr>/tcp/<port>`, optionally followed by `/p2p/<peer>`, and nothing else.
fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut it = addr.iter();
    let ip: IpAddr = match it.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let port = match it.next()? {
        Protocol::Tcp(port) => port,
        _ => return None,
    };
    match (it.next(), it.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// The multiaddr of a socket address.
pub fn to_multiaddr(sa: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(sa.ip().into())
        .with(Protocol::Tcp(sa.port()))
}

/// The addresses a listener bound to `bound` is reachable on: the address itself, or for
/// an unspecified IP every interface address of the same family.
fn listen_addrs(bound: SocketAddr) -> Vec<Multiaddr> {
    if !bound.ip().is_unspecified() {
        return vec![to_multiaddr(bound)];
    }
    let mut out: Vec<Multiaddr> = match if_addrs::get_if_addrs() {
        Ok(ifs) => ifs
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| ip.is_ipv4() == bound.is_ipv4())
            .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
            .map(|ip| to_multiaddr(SocketAddr::new(ip, bound.port())))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            Vec::new()
        }
    };
    if out.is_empty() {
        out.push(to_multiaddr(bound));
    }
    out.dedup();
    out
}

impl Transport for TcpTransport {
    type Output = TcpConn;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Ready<Result<TcpConn, io::Error>>;
    type Dial = BoxFuture<'static, Result<TcpConn, io::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        let Some(sa) = socket_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        // std sets SO_REUSEADDR on Unix listeners, as go-libp2p does.
        let std_listener = StdListener::bind(sa).map_err(TransportError::Other)?;
        let bound = std_listener.local_addr().map_err(TransportError::Other)?;
        let listener = TcpListener::try_from(std_listener).map_err(TransportError::Other)?;
        let incoming = futures::stream::unfold(listener, |l| async move {
            let r = l.accept().await;
            Some((r, l))
        })
        .boxed();
        tracing::debug!(%bound, ?id, "tcp listener bound");
        for listen_addr in listen_addrs(bound) {
            self.events.push_back(TransportEvent::NewAddress {
                listener_id: id,
                listen_addr,
            });
        }
        self.listeners.push(Listener {
            id,
            bound,
            incoming,
            pause: None,
        });
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        let Some(pos) = self.listeners.iter().position(|l| l.id == id) else {
            return false;
        };
        self.listeners.remove(pos);
        self.events.push_back(TransportEvent::ListenerClosed {
            listener_id: id,
            reason: Ok(()),
        });
        true
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<io::Error>> {
        let sa = match socket_addr(&addr) {
            Some(sa) if sa.port() != 0 && !sa.ip().is_unspecified() => sa,
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        };
        Ok(async move {
            let stream = TcpStream::connect(sa).await?;
            stream.set_nodelay(true)?;
            Ok(TcpConn::from(stream))
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        if let Some(ev) = self.events.pop_front() {
            return Poll::Ready(ev);
        }
        while let Poll::Ready(Some(done)) = self.sniffing.poll_next_unpin(cx) {
            let Some(s) = done else { continue };
            if !self.listeners.iter().any(|l| l.id == s.listener_id) {
                continue;
            }
            return Poll::Ready(TransportEvent::Incoming {
                listener_id: s.listener_id,
                upgrade: futures::future::ready(Ok(s.conn)),
                local_addr: to_multiaddr(s.local),
                send_back_addr: to_multiaddr(s.remote),
            });
        }
        if let Some(ev) = self.take_handed_off(cx) {
            return Poll::Ready(ev);
        }
        let this = &mut *self;
        for l in this.listeners.iter_mut() {
            if let Some(t) = l.pause.as_mut() {
                if t.poll_unpin(cx).is_pending() {
                    continue;
                }
                l.pause = None;
            }
            match l.incoming.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok((stream, remote)))) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "set TCP_NODELAY failed");
                    }
                    let local = stream.local_addr().unwrap_or(l.bound);
                    let Some(relayed) = this.relayed.clone() else {
                        return Poll::Ready(TransportEvent::Incoming {
                            listener_id: l.id,
                            upgrade: futures::future::ready(Ok(TcpConn::from(stream))),
                            local_addr: to_multiaddr(local),
                            send_back_addr: to_multiaddr(remote),
                        });
                    };
                    if this.sniffing.len() >= relayed.max_pending {
                        tracing::debug!(%remote, "too many WebSocket heads being read, closing");
                        cx.waker().wake_by_ref();
                        continue;
                    }
                    let listener_id = l.id;
                    this.sniffing.push(
                        async move {
                            let (remote, conn) = sniff(stream, remote, &relayed).await?;
                            Some(Sniffed {
                                listener_id,
                                local,
                                remote,
                                conn,
                            })
                        }
                        .boxed(),
                    );
                    // Poll the new head read (and this listener again) on the next turn.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(error))) => {
                    l.pause = Some(Timer::after(ACCEPT_ERROR_BACKOFF));
                    cx.waker().wake_by_ref();
                    return Poll::Ready(TransportEvent::ListenerError {
                        listener_id: l.id,
                        error,
                    });
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_plain_tcp() {
        let ok: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        assert_eq!(socket_addr(&ok), Some("127.0.0.1:4001".parse().unwrap()));
        let with_peer: Multiaddr =
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWEYXyyXjKhXv24FL2Kezi1YUqkYDScyTLXX6c2hmsPovx"
                .parse()
                .unwrap();
        assert_eq!(socket_addr(&with_peer), socket_addr(&ok));
        let v6: Multiaddr = "/ip6/::1/tcp/0".parse().unwrap();
        assert_eq!(socket_addr(&v6), Some("[::1]:0".parse().unwrap()));
        for bad in [
            "/ip4/127.0.0.1/tcp/1/ws",
            "/dns/a.b/tcp/1",
            "/ip4/1.2.3.4/udp/1",
        ] {
            let m: Multiaddr = bad.parse().unwrap();
            assert_eq!(socket_addr(&m), None, "{bad}");
        }
    }
}
