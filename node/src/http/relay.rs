//! The WebSocket relay: a client's WebSocket on the HTTP port, bridged message by message
//! to the libp2p host's internal WebSocket listener.
//!
//! Differences from Curio's relay (docs/curio-reference.md §Relay), on purpose:
//! - Upgrade detection reads `Connection` as a token list (`keep-alive, Upgrade` works).
//! - Ping, pong and close frames are relayed, not swallowed.
//! - The only time limit is an idle limit over *both* directions (default 10 min), not a
//!   15 s read deadline per direction.
//!
//! Ping/pong: tungstenite answers every ping it reads with a pong of its own and gives the
//! ping to us as well (there is no switch to turn the automatic pong off). We forward the
//! ping to the other side, whose endpoint answers it, and we forward that pong back. So a
//! pinging endpoint gets two pongs: one from the relay hop at once, one from the far end.
//! RFC 6455 §5.5.3 allows unsolicited pongs and tells endpoints to expect nothing of
//! them, so both browsers' and libp2p's WebSocket stacks accept this. The far end's
//! pong is the end-to-end liveness answer; the relay's is a hop-level one.
//!
//! Close: a close frame read from one side is forwarded to the other; its auto-reply is
//! held until the other side answered (or [`CLOSE_GRACE`] passed), then both TCP
//! connections are dropped.

use std::{
    future::Future,
    net::SocketAddr,
    pin::pin,
    sync::atomic::{AtomicU64, Ordering},
    task::Poll,
    time::{Duration, Instant},
};

use async_net::TcpStream;
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures::{AsyncRead, AsyncWrite, SinkExt, StreamExt};
use http::HeaderMap;
use tungstenite::{
    protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig},
    Message,
};

use crate::metrics::Metrics;
use crate::runtime::timeout;

/// How long, after one side's close frame was forwarded, the relay waits for the other
/// side's answer before dropping both connections.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Bound on the best-effort close frames written when a relay ends for another reason.
const FAREWELL: Duration = Duration::from_secs(1);

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

/// WebSocket limits for one side of a relay: memory per relay stays around two read
/// buffers plus one message in flight per direction.
pub(crate) fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(max_message + 64 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Dial the host's WebSocket listener and finish the client handshake within `limit`.
pub(crate) async fn dial_host(
    target: SocketAddr,
    config: WebSocketConfig,
    limit: Duration,
) -> Result<WebSocketStream<TcpStream>, String> {
    let attempt = async {
        let tcp = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (ws, _response) = async_tungstenite::client_async_with_config(
            format!("ws://{target}/"),
            tcp,
            Some(config),
        )
        .await
        .map_err(|e| format!("websocket handshake with {target}: {e}"))?;
        Ok(ws)
    };
    timeout(limit, attempt).await.unwrap_or_else(|| {
        Err(format!(
            "no websocket handshake with {target} within {limit:?}"
        ))
    })
}

/// Why a relay ended.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// A close frame went through (from the client or from the host).
    Closed(&'static str),
    /// One side's connection ended or failed without a close frame.
    Gone(&'static str, String),
    /// No frame in either direction for the idle limit.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

impl std::fmt::Display for RelayEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayEnd::Closed(side) => write!(f, "closed by the {side}"),
            RelayEnd::Gone(side, e) => write!(f, "the {side} went away: {e}"),
            RelayEnd::Idle => f.write_str("idle timeout"),
            RelayEnd::Shutdown => f.write_str("server shutting down"),
        }
    }
}

enum PumpEnd {
    Closed,
    Gone(String),
}

struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Forward messages from `rx` to `tx` one at a time (each send awaited before the next
/// read, so a slow reader slows the writer down instead of filling memory).
async fn pump<R, W>(
    rx: &mut WebSocketReceiver<R>,
    tx: &mut WebSocketSender<W>,
    direction: &'static str,
    metrics: &Metrics,
    activity: &Activity,
) -> PumpEnd
where
    R: AsyncRead + AsyncWrite + Unpin,
    W: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let msg = match rx.next().await {
            None => return PumpEnd::Gone("connection closed".into()),
            Some(Err(e)) => return PumpEnd::Gone(e.to_string()),
            Some(Ok(msg)) => msg,
        };
        activity.touch();
        metrics.relay_bytes(direction, msg.len() as u64);
        match msg {
            Message::Close(frame) => {
                // If this side closed in answer to a close we forwarded, the other side
                // is no longer active and the send fails; the flush still writes the
                // close reply tungstenite queued there.
                let _ = tx.send(Message::Close(frame)).await;
                let _ = tx.flush().await;
                return PumpEnd::Closed;
            }
            // Raw frames are never returned by reads.
            Message::Frame(_) => continue,
            msg => {
                if let Err(e) = tx.send(msg).await {
                    return PumpEnd::Gone(format!("forwarding: {e}"));
                }
                activity.touch();
            }
        }
    }
}

async fn idle_watch(activity: &Activity, limit: Duration) {
    loop {
        let deadline = activity.last() + limit;
        if Instant::now() >= deadline {
            return;
        }
        async_io::Timer::at(deadline).await;
    }
}

/// Best effort: tell one side the relay ends (or flush a queued close reply), bounded.
async fn farewell<S>(tx: &mut WebSocketSender<S>, frame: Option<CloseFrame>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = timeout(FAREWELL, async {
        let _ = tx.send(Message::Close(frame)).await;
        let _ = tx.flush().await;
    })
    .await;
}

/// Relay between the upgraded client connection and the host until one of them closes,
/// fails, both stay silent for `idle`, or `shutdown` resolves.
pub(crate) async fn run<C>(
    client: C,
    host: WebSocketStream<TcpStream>,
    config: WebSocketConfig,
    idle: Duration,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
) -> RelayEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let client = WebSocketStream::from_raw_socket(client, Role::Server, Some(config)).await;
    let (mut c_tx, mut c_rx) = client.split();
    let (mut h_tx, mut h_rx) = host.split();
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };

    enum First {
        Up(PumpEnd),
        Down(PumpEnd),
        Idle,
        Shutdown,
    }

    let end = {
        let mut up = pin!(pump(
            &mut c_rx,
            &mut h_tx,
            CLIENT_TO_HOST,
            metrics,
            &activity
        ));
        let mut down = pin!(pump(
            &mut h_rx,
            &mut c_tx,
            HOST_TO_CLIENT,
            metrics,
            &activity
        ));
        let mut idle_fut = pin!(idle_watch(&activity, idle));
        let mut shutdown = pin!(shutdown);
        let first = futures::future::poll_fn(|cx| {
            if let Poll::Ready(e) = up.as_mut().poll(cx) {
                return Poll::Ready(First::Up(e));
            }
            if let Poll::Ready(e) = down.as_mut().poll(cx) {
                return Poll::Ready(First::Down(e));
            }
            if idle_fut.as_mut().poll(cx).is_ready() {
                return Poll::Ready(First::Idle);
            }
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(First::Shutdown);
            }
            Poll::Pending
        })
        .await;
        match first {
            First::Up(PumpEnd::Closed) => {
                // Let the host's close reply (and anything it still sends) through.
                let _ = timeout(CLOSE_GRACE, down.as_mut()).await;
                RelayEnd::Closed("client")
            }
            First::Down(PumpEnd::Closed) => {
                let _ = timeout(CLOSE_GRACE, up.as_mut()).await;
                RelayEnd::Closed("host")
            }
            First::Up(PumpEnd::Gone(e)) => RelayEnd::Gone("client", e),
            First::Down(PumpEnd::Gone(e)) => RelayEnd::Gone("host", e),
            First::Idle => RelayEnd::Idle,
            First::Shutdown => RelayEnd::Shutdown,
        }
    };

    let away = |reason: &str| {
        Some(CloseFrame {
            code: CloseCode::Away,
            reason: reason.to_owned().into(),
        })
    };
    let (to_client, to_host) = match &end {
        RelayEnd::Closed(_) => (None, None),
        RelayEnd::Gone("client", _) => (None, away("client went away")),
        RelayEnd::Gone(_, _) => (away("libp2p host went away"), None),
        RelayEnd::Idle => (away("relay idle timeout"), away("relay idle timeout")),
        RelayEnd::Shutdown => (away("server shutting down"), away("server shutting down")),
    };
    futures::join!(farewell(&mut c_tx, to_client), farewell(&mut h_tx, to_host));
    end
}
