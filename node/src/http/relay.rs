//! The WebSocket relay: a client's WebSocket on the HTTP port, spliced byte for byte to
//! the libp2p host's WebSocket listener once both handshakes are done (what a reverse
//! proxy does). Frames are neither decoded nor re-encoded: both handshakes negotiate no
//! extension and no subprotocol, so the client's masked frames are valid frames for the
//! host and the host's unmasked frames valid for the client.
//!
//! Differences from Curio's relay (docs/curio-reference.md §Relay), on purpose:
//! - Upgrade detection reads `Connection` as a token list (`keep-alive, Upgrade` works).
//! - Ping, pong and close frames go through untouched (the far end answers them).
//! - The only time limit is an idle limit over *both* directions (default 10 min), not a
//!   15 s read deadline per direction.
//! - The host learns the client's address: the upgrade request to the host carries
//!   `X-Dealport-Relayed-For` (core::relay), signed with a key derived from the node
//!   identity, which the host's listener believes and no other header.
//!
//! When this process runs the host itself (the lease holder's own HTTP server), the
//! relay does not dial it: [`hand_off`] gives the client's connection to the host
//! (crate::handoff), which serves it like a direct one under the client's own address;
//! the relay slot and the byte counters follow the connection until the host drops it.
//! What follows is about the splice to another node's host.
//!
//! Close: when one side ends its connection, the end is passed on (the relay shuts down
//! writing to the other side) and the other direction gets `core::relay::CLOSE_GRACE` to finish.
//! When the relay ends for a reason of its own (idle, shutdown, a side failed) it writes
//! a `1001 going away` close frame to each side still there, when that direction is
//! between two frames (read from frame headers only), then drops both connections.

use std::{
    future::Future,
    io,
    net::{Shutdown, SocketAddr},
    pin::{pin, Pin},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use async_io::Timer;
use async_net::TcpStream;
use bytes::Bytes;
use dealport_core::relay::{
    after_end, close_frame, farewell, head_end, idle_deadline, AfterEnd, FrameCursor, RelayEnd,
    Side, GOING_AWAY,
};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use http::HeaderMap;
use hyper::upgrade::OnUpgrade;
use prometheus_client::metrics::counter::Counter;
use smol_hyper::rt::FuturesIo;
use std::sync::Arc;

use super::{Slot, State};
use crate::handoff::{
    new_key, switched, upgrade_request, HandOff, HandOffs, HandedOff, Meter, MAX_ANSWER_HEAD,
};
use crate::metrics::Metrics;
use crate::rewound::Rewound;
use crate::runtime::timeout;

/// Bound on the best-effort close frames written when a relay ends for another reason.
const FAREWELL: Duration = Duration::from_secs(1);

/// Bytes read from one side before they are written to the other: memory per relay is
/// two of these.
const SPLICE_BUFFER: usize = 32 << 10;

/// Reads in a row one direction makes before letting the other one run.
const TURN: usize = 16;

pub(crate) const CLIENT_TO_HOST: &str = "client_to_host";
pub(crate) const HOST_TO_CLIENT: &str = "host_to_client";

/// Values of every `name` header, split at commas and trimmed.
fn tokens(headers: &HeaderMap, name: http::header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether the request asks for a WebSocket upgrade: GET, `Upgrade` lists `websocket`
/// and `Connection` lists `upgrade` (both case-insensitive, as token lists).
pub(crate) fn wants_websocket(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::GET
        && tokens(headers, http::header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
        && tokens(headers, http::header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// What is wrong with a WebSocket upgrade request, if anything.
pub(crate) enum HandshakeProblem {
    /// `Sec-WebSocket-Version` missing or not 13: answer 426 with `Sec-WebSocket-Version: 13`.
    Version,
    /// `Sec-WebSocket-Key` missing or not 16 base64-encoded bytes: 400.
    Key,
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<String, HandshakeProblem> {
    let version_ok = headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "13");
    if !version_ok {
        return Err(HandshakeProblem::Version);
    }
    let key = headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .map(|v| v.as_bytes())
        .filter(|k| k.len() == 24 && k.ends_with(b"=="))
        .ok_or(HandshakeProblem::Key)?;
    Ok(tungstenite::handshake::derive_accept_key(key))
}

/// The client's connection once hyper has sent its 101, with what hyper read past the
/// request; `None` (counted, logged) when the upgrade did not happen.
pub(crate) async fn upgraded_client(
    on_upgrade: OnUpgrade,
    metrics: &Metrics,
    peer: SocketAddr,
) -> Option<Rewound<TcpStream>> {
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            metrics.relay_rejected("upgrade_failed");
            tracing::debug!(%peer, error = %e, "client upgrade failed");
            return None;
        }
    };
    match upgraded.downcast::<FuturesIo<TcpStream>>() {
        Ok(parts) => Some(Rewound::new(parts.read_buf, parts.io.into_inner())),
        Err(_) => {
            metrics.relay_rejected("upgrade_failed");
            tracing::error!("upgraded connection is not the TcpStream we served");
            None
        }
    }
}

/// A handed-off relay's place and counters: the relay ends when the host drops it.
struct HandOffMeter {
    metrics: Arc<Metrics>,
    up: Counter,
    down: Counter,
    _slot: Slot,
    peer: SocketAddr,
}

impl Meter for HandOffMeter {
    fn client_to_host(&self, bytes: u64) {
        self.up.inc_by(bytes);
    }
    fn host_to_client(&self, bytes: u64) {
        self.down.inc_by(bytes);
    }
}

impl Drop for HandOffMeter {
    fn drop(&mut self) {
        self.metrics.relay_closed();
        tracing::debug!(peer = %self.peer, "handed-off relay closed");
    }
}

/// Give the upgraded client connection to this process's host.
pub(crate) async fn hand_off(
    state: Arc<State>,
    on_upgrade: OnUpgrade,
    handoffs: Arc<HandOffs>,
    slot: Slot,
    peer: SocketAddr,
) {
    let metrics = &state.metrics;
    let Some(client) = upgraded_client(on_upgrade, metrics, peer).await else {
        return;
    };
    let (read_ahead, client) = client.into_parts();
    let (up, down) = metrics.relay_byte_counters();
    metrics.relay_opened();
    let meter = HandOffMeter {
        metrics: metrics.clone(),
        up,
        down,
        _slot: slot,
        peer,
    };
    let conn = match HandedOff::new(client, read_ahead, Box::new(meter)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot hand the connection to the host");
            return;
        }
    };
    let handed = HandOff {
        conn: Box::new(conn),
        remote: peer,
    };
    match handoffs.give(handed) {
        Ok(()) => {
            metrics.relay_handed_off();
            tracing::debug!(%peer, "relay handed to this node's host");
        }
        Err(_) => {
            metrics.relay_rejected("limit");
            tracing::debug!(%peer, "the host's hand-off queue is full, closing");
        }
    }
}

/// Dial the host's WebSocket listener and finish the client handshake within `limit`,
/// telling it whom the connection is for (`relayed_for`, the signed header value).
/// Returns the connection and any bytes the host sent after its 101 answer.
pub(crate) async fn dial_host(
    target: SocketAddr,
    relayed_for: Option<String>,
    limit: Duration,
) -> Result<(TcpStream, Bytes), String> {
    let attempt = async {
        let mut tcp = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let key = new_key().map_err(|e| e.to_string())?;
        let request = upgrade_request(&target.to_string(), &key, relayed_for.as_deref());
        let failed = |e: io::Error| format!("websocket handshake with {target}: {e}");
        tcp.write_all(request.as_bytes()).await.map_err(failed)?;
        let mut answer = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        let end = loop {
            let n = tcp.read(&mut chunk).await.map_err(failed)?;
            if n == 0 {
                return Err(format!(
                    "websocket handshake with {target}: the host closed the connection"
                ));
            }
            answer.extend_from_slice(&chunk[..n]);
            if let Some(end) = head_end(&answer) {
                break end;
            }
            if answer.len() > MAX_ANSWER_HEAD {
                return Err(format!(
                    "websocket handshake with {target}: answer head too large"
                ));
            }
        };
        switched(&answer[..end], &key)
            .map_err(|e| format!("websocket handshake with {target}: {e}"))?;
        Ok((tcp, Bytes::copy_from_slice(&answer[end..])))
    };
    timeout(limit, attempt).await.unwrap_or_else(|| {
        Err(format!(
            "no websocket handshake with {target} within {limit:?}"
        ))
    })
}

/// One direction of the splice: bytes read from `from` are written to `to` before the
/// next read (a slow reader slows the writer down instead of filling memory).
struct Pipe {
    from: Rewound<TcpStream>,
    to: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Frame boundaries of what was read (so of what is written once `buf` is empty).
    frames: FrameCursor,
    direction: &'static str,
    source: Side,
}

/// How a pump stopped.
enum Pumped {
    /// The source ended its stream (everything read was written).
    Ended,
    /// This side's connection failed.
    Failed(Side, String),
}

impl Pipe {
    fn new(from: Rewound<TcpStream>, to: TcpStream, direction: &'static str, source: Side) -> Pipe {
        Pipe {
            from,
            to,
            buf: vec![0u8; SPLICE_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            frames: FrameCursor::default(),
            direction,
            source,
        }
    }

    /// Move bytes until the source has nothing more for now. `moved` is set when a
    /// byte was read.
    fn poll_pump(
        &mut self,
        cx: &mut Context<'_>,
        metrics: &Metrics,
        moved: &mut bool,
    ) -> Poll<Pumped> {
        for _ in 0..TURN {
            while self.start < self.end {
                match Pin::new(&mut self.to).poll_write(cx, &self.buf[self.start..self.end]) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Pumped::Failed(
                            self.source.other(),
                            "wrote nothing".into(),
                        ))
                    }
                    Poll::Ready(Ok(n)) => self.start += n,
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Pumped::Failed(self.source.other(), e.to_string()))
                    }
                }
            }
            match Pin::new(&mut self.from).poll_read(cx, &mut self.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Pumped::Ended),
                Poll::Ready(Ok(n)) => {
                    *moved = true;
                    metrics.relay_bytes(self.direction, n as u64);
                    self.frames.advance(&self.buf[..n]);
                    self.start = 0;
                    self.end = n;
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Pumped::Failed(self.source, e.to_string()))
                }
            }
        }
        // Let the other direction (and the timers) have a turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Best effort, bounded: write what is still buffered, then a close frame of the
    /// relay's own (masked toward the host, which is a server).
    async fn farewell(&mut self, reason: Option<&str>) {
        let Some(reason) = reason else { return };
        let mask = (self.source == Side::Client).then(|| {
            let mut m = [0u8; 4];
            let _ = getrandom::fill(&mut m);
            m
        });
        let frame = close_frame(GOING_AWAY, reason, mask);
        let pending = &self.buf[self.start..self.end];
        let to = &mut self.to;
        let _ = timeout(FAREWELL, async {
            to.write_all(pending).await?;
            to.write_all(&frame).await?;
            to.flush().await
        })
        .await;
    }
}

/// Splice the upgraded client connection and the host's until one of them ends, fails,
/// both stay silent for `idle`, or `shutdown` resolves.
pub(crate) async fn run(
    client: Rewound<TcpStream>,
    host: Rewound<TcpStream>,
    idle: Duration,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
) -> RelayEnd {
    let client_w = client.get_ref().clone();
    let host_w = host.get_ref().clone();
    let mut up = Pipe::new(client, host_w.clone(), CLIENT_TO_HOST, Side::Client);
    let mut down = Pipe::new(host, client_w.clone(), HOST_TO_CLIENT, Side::Host);
    let opened = Instant::now();
    // The timer is re-armed only when it fires (moving it on every read would wake the
    // reactor each time): then it is re-armed at the last activity's deadline, or the
    // relay is idle.
    let mut last_activity = Duration::ZERO;
    let mut idle_timer = Timer::at(opened + idle_deadline(last_activity, idle));
    let mut grace: Option<Timer> = None;
    let mut ended = [false, false]; // client, host
    let mut first_end: Option<Side> = None;
    let mut shutdown = pin!(shutdown);

    let end = futures::future::poll_fn(|cx| {
        let mut moved = false;
        for pipe in [&mut up, &mut down] {
            let side = pipe.source;
            let i = side as usize;
            if ended[i] {
                continue;
            }
            match pipe.poll_pump(cx, metrics, &mut moved) {
                Poll::Pending => {}
                Poll::Ready(Pumped::Failed(who, e)) => return Poll::Ready(RelayEnd::Gone(who, e)),
                Poll::Ready(Pumped::Ended) => {
                    ended[i] = true;
                    first_end.get_or_insert(side);
                    match after_end(ended[1 - i], side) {
                        AfterEnd::Finish => {
                            return Poll::Ready(RelayEnd::Closed(first_end.unwrap_or(side)))
                        }
                        AfterEnd::ShutWriteThenWait { to, grace: g } => {
                            let w = if to == Side::Host { &host_w } else { &client_w };
                            let _ = w.shutdown(Shutdown::Write);
                            grace = Some(Timer::after(g));
                        }
                    }
                }
            }
        }
        if moved {
            last_activity = opened.elapsed();
        }
        if let Some(g) = grace.as_mut() {
            if Pin::new(g).poll(cx).is_ready() {
                return Poll::Ready(RelayEnd::Closed(first_end.unwrap_or(Side::Client)));
            }
        }
        while Pin::new(&mut idle_timer).poll(cx).is_ready() {
            let deadline = opened + idle_deadline(last_activity, idle);
            if Instant::now() >= deadline {
                return Poll::Ready(RelayEnd::Idle);
            }
            idle_timer.set_at(deadline);
        }
        if shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(RelayEnd::Shutdown);
        }
        Poll::Pending
    })
    .await;

    // `down` carries host -> client, so its frames tell whether the client can take a
    // frame of ours now; `up` the same toward the host.
    let bye = farewell(&end, down.frames.at_boundary(), up.frames.at_boundary());
    futures::join!(down.farewell(bye.to_client), up.farewell(bye.to_host));
    end
}
