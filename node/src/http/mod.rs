//! The HTTP server: WebSocket relay to the libp2p host, `/health`, `/metrics`, a banner,
//! and whatever extra routes the application adds.
//!
//! hyper 1 (HTTP/1.1 only) over async-net sockets through smol-hyper's futures-io
//! adapter; connections and relays are spawned on the node's [`Runtime`].
//!
//! ```text
//! GET /  or /libp2p + WebSocket upgrade -> relay_target() -> 503 | limit -> 503
//!                                       -> dial ws://target/ (5 s) -> 502 | 101 + relay
//! GET /        -> 200 banner (text/plain)
//! GET /health  -> 200 | 503 JSON
//! GET /metrics -> 200 OpenMetrics text
//! anything else -> backend.route(..) or 404
//! ```
//!
//! Layer: the HTTP server, above the runtime seam: uses `runtime`, `budget`, `metrics`;
//! knows nothing about deals (routes come from an [`HttpBackend`]).

mod io;
mod relay;

use std::{
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_net::{TcpListener, TcpStream};
use bytes::Bytes;
use futures::{
    channel::oneshot,
    future::{self, Either, FutureExt, Shared},
};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use smol_hyper::rt::FuturesIo;

use crate::{
    budget::{ByteBudget, Held},
    handoff::HandOffs,
    metrics::Metrics,
    rewound::Rewound,
    runtime::Runtime,
};

/// hyper panics below this head buffer size (its `MINIMUM_MAX_BUFFER_SIZE`).
const MIN_HEAD_BUFFER: usize = 8192;

/// The response type of every route.
pub type HttpResponse = Response<Full<Bytes>>;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A request body read as it arrives (no size limit of the server's own).
pub type BodyStream = Pin<Box<dyn futures::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A response body sent as it is produced (a piece's bytes), or a whole one boxed.
pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The response of a streaming route (and of the server as a whole).
pub type StreamResponse = Response<ResponseBody>;

/// A whole response as a [`StreamResponse`].
pub fn boxed(r: HttpResponse) -> StreamResponse {
    r.map(|b| b.map_err(|never| match never {}).boxed())
}

/// A route that reads its own body: called with the body once the head was matched.
pub type StreamRoute = Box<dyn FnOnce(BodyStream) -> BoxFuture<StreamResponse> + Send>;

/// Where a relayed WebSocket connection goes.
#[derive(Debug, Clone)]
pub enum RelayRoute {
    /// Dial that host's WebSocket listener and splice the two connections.
    Dial(SocketAddr),
    /// The host runs in this process: hand the client's connection to it.
    HandOff(Arc<HandOffs>),
}

/// What the HTTP server asks of the rest of the node.
pub trait HttpBackend: Send + Sync + 'static {
    /// Where a WebSocket upgrade goes: the internal WebSocket address of the node that
    /// runs the libp2p host now, or this process's host; or why there is none (lease not
    /// live, host not started). `Err(text)` -> 503 with that text.
    fn relay_target(&self) -> BoxFuture<Result<RelayRoute, String>>;

    /// `(ready, JSON body)` for `/health`: `ready == false` -> 503.
    fn health(&self) -> BoxFuture<(bool, serde_json::Value)>;

    /// Plain-text banner for `GET /` without upgrade (includes the PeerID).
    fn banner(&self) -> String;

    /// Extra routes (e.g. MK12 over HTTP later): `None` falls through to 404. The body
    /// has already been read, up to [`HttpConfig::max_body`] bytes (larger -> 413).
    fn route(
        &self,
        _method: &Method,
        _path: &str,
        _headers: &http::HeaderMap,
        _body: Bytes,
        _client_ip: IpAddr,
    ) -> Option<BoxFuture<HttpResponse>> {
        None
    }

    /// Routes that stream their request body (the API: data uploads larger than
    /// [`HttpConfig::max_body`]), decided from the head alone. They are not under the
    /// server's body limit and request deadline: each bounds its own body and time.
    /// `None` falls through to [`route`](Self::route).
    fn stream_route(
        &self,
        _method: &Method,
        _path: &str,
        _headers: &http::HeaderMap,
        _client_ip: IpAddr,
    ) -> Option<StreamRoute> {
        None
    }

    /// [`stream_route`](Self::stream_route) for a backend that also reads the query
    /// string (the dashboard's filters); what the server calls.
    fn stream_route_with_query(
        &self,
        method: &Method,
        path: &str,
        _query: &str,
        headers: &http::HeaderMap,
        client_ip: IpAddr,
    ) -> Option<StreamRoute> {
        self.stream_route(method, path, headers, client_ip)
    }
}

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where to listen. Default `0.0.0.0:12310` (Curio's port).
    pub listen: SocketAddr,
    /// A relay with no frame in either direction for this long is closed. Default 10 min.
    pub relay_idle_timeout: Duration,
    /// Relays open (or dialling the host) at once; more upgrades get 503. Default 1024.
    pub max_relays: usize,
    /// Time for a client to send a complete request head (slowloris bound); also how
    /// long an idle keep-alive connection is kept. Default 10 s.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers); a larger one gets 431. At least
    /// 8 KiB (hyper's minimum). Default 64 KiB.
    pub max_header_bytes: usize,
    /// Largest request body read for [`HttpBackend::route`]. Default 4 MiB.
    pub max_body: usize,
    /// Bytes of such bodies held at once over all requests (from the first byte read
    /// until the answer); a request that would go over it gets 503. Default 128 MiB.
    pub max_body_total: usize,
    /// Bound on reading a routed request's body and answering it. Default 10 s.
    pub request_timeout: Duration,
    /// Bound on dialling the host and its WebSocket handshake. Default 5 s.
    pub relay_dial_timeout: Duration,
    /// The key relayed upgrades to the host are signed with (`p2p::relay_key` of the
    /// node identity), so the host counts each client's own address; `None`: the host
    /// sees the relay's.
    pub relay_key: Option<dealport_core::relay::RelayKey>,
    /// TLS proxies in front of this server whose `X-Forwarded-For` is believed (the
    /// client address the relay reports and the routes see). Default none.
    pub trusted_proxies: Vec<IpAddr>,
    /// HTTP connections at once (relays included); more are closed on accept.
    /// Default 4096.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 12310)),
            relay_idle_timeout: Duration::from_secs(600),
            max_relays: 1024,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            max_body: 4 << 20,
            max_body_total: 128 << 20,
            request_timeout: Duration::from_secs(10),
            relay_dial_timeout: Duration::from_secs(5),
            relay_key: None,
            trusted_proxies: Vec::new(),
            max_connections: 4096,
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("binding the HTTP listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running server.
#[derive(Debug)]
pub struct HttpHandle {
    local_addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    stopped: Shared<oneshot::Receiver<()>>,
}

impl HttpHandle {
    /// The address the listener is bound to (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting, finish in-flight requests gracefully, close relays with
    /// `1001 going away`. Resolves once the listener is closed.
    pub async fn shutdown(&self) {
        drop(self.stop.lock().unwrap_or_else(|e| e.into_inner()).take());
        let _ = self.stopped.clone().await;
    }
}

type ShutdownSignal = Shared<oneshot::Receiver<()>>;

struct State {
    runtime: Arc<dyn Runtime>,
    config: HttpConfig,
    backend: Arc<dyn HttpBackend>,
    metrics: Arc<Metrics>,
    relays: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    bodies: ByteBudget,
    shutdown: ShutdownSignal,
}

/// A reserved place in a counter with a limit, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(counter.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bind `config.listen` and serve until [`HttpHandle::shutdown`].
pub async fn start(
    runtime: Arc<dyn Runtime>,
    config: HttpConfig,
    backend: Arc<dyn HttpBackend>,
    metrics: Arc<Metrics>,
) -> Result<HttpHandle, HttpError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: config.listen,
        source,
    })?;
    let (stop, shutdown) = oneshot::channel();
    let (stopped_tx, stopped) = oneshot::channel();
    let max_body_total = config.max_body_total;
    let state = Arc::new(State {
        runtime: runtime.clone(),
        config,
        backend,
        metrics,
        relays: Arc::default(),
        connections: Arc::default(),
        bodies: ByteBudget::new(max_body_total),
        shutdown: shutdown.shared(),
    });
    tracing::info!(%local_addr, "HTTP server listening");
    runtime.spawn(Box::pin(accept_loop(state, listener, stopped_tx)));
    Ok(HttpHandle {
        local_addr,
        stop: Mutex::new(Some(stop)),
        stopped: stopped.shared(),
    })
}

async fn accept_loop(state: Arc<State>, listener: TcpListener, stopped: oneshot::Sender<()>) {
    loop {
        let accepted = match future::select(pin!(listener.accept()), state.shutdown.clone()).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let st = state.clone();
                state.runtime.spawn(Box::pin(async move {
                    let Some(_slot) = Slot::take(&st.connections, st.config.max_connections) else {
                        tracing::debug!(%peer, "HTTP connection limit reached, closing");
                        st.metrics.limit_hit("http_connections");
                        return;
                    };
                    serve_connection(&st, stream, peer).await;
                }));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                async_io::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tracing::info!("HTTP server stopped accepting");
    let _ = stopped.send(());
}

async fn serve_connection(state: &Arc<State>, stream: TcpStream, peer: SocketAddr) {
    let st = state.clone();
    let service = service_fn(move |req| {
        let st = st.clone();
        async move { Ok::<_, Infallible>(handle(st, req, peer).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(io::IoTimer)
        .header_read_timeout(state.config.header_timeout)
        .max_buf_size(state.config.max_header_bytes.max(MIN_HEAD_BUFFER))
        .keep_alive(true);
    let mut conn = pin!(builder
        .serve_connection(FuturesIo::new(stream), service)
        .with_upgrades());
    let result = match future::select(conn.as_mut(), state.shutdown.clone()).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => {
            conn.as_mut().graceful_shutdown();
            crate::runtime::timeout(Duration::from_secs(5), conn.as_mut())
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            state.metrics.limit_hit("http_header_timeout");
        } else if e.is_parse_too_large() {
            state.metrics.limit_hit("http_header_size");
        }
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The client's address: the TCP peer's, or the one a trusted proxy forwarded for.
fn client_addr(config: &HttpConfig, req: &Request<Incoming>, peer: SocketAddr) -> SocketAddr {
    if config.trusted_proxies.is_empty() {
        return peer;
    }
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    match dealport_core::relay::client_ip(peer.ip(), &forwarded, &config.trusted_proxies) {
        ip if ip == peer.ip() => peer,
        ip => SocketAddr::new(ip, 0),
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>, peer: SocketAddr) -> StreamResponse {
    let peer = client_addr(&state.config, &req, peer);
    let path = req.uri().path().to_owned();
    let (route, response) = match (req.method(), path.as_str()) {
        (&Method::GET, p @ ("/" | "/libp2p"))
            if relay::wants_websocket(req.method(), req.headers()) =>
        {
            let route = if p == "/" { "root" } else { "libp2p" };
            (route, upgrade(&state, req, peer).await)
        }
        (&Method::GET, "/") => ("root", text(StatusCode::OK, state.backend.banner())),
        (&Method::GET, "/libp2p") => {
            let mut r = text(
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint relays WebSocket connections to the libp2p host\n",
            );
            r.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            ("libp2p", r)
        }
        (&Method::GET, "/health") => {
            let (ready, body) = state.backend.health().await;
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            *r.status_mut() = code;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            ("health", r)
        }
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::OPENMETRICS_CONTENT_TYPE),
            );
            ("metrics", r)
        }
        _ => return other(&state, req, &path, peer).await,
    };
    state
        .metrics
        .http_request(route, response.status().as_u16());
    boxed(response)
}

/// The backend's routes: a streaming route as it answers, else the body read whole and
/// routed within one deadline.
async fn other(
    state: &State,
    req: Request<Incoming>,
    path: &str,
    peer: SocketAddr,
) -> StreamResponse {
    let (route, response) = other_routes(state, req, path, peer).await;
    state
        .metrics
        .http_request(route, response.status().as_u16());
    response
}

async fn other_routes(
    state: &State,
    req: Request<Incoming>,
    path: &str,
    peer: SocketAddr,
) -> (&'static str, StreamResponse) {
    if let Some(route) = state.backend.stream_route_with_query(
        req.method(),
        path,
        req.uri().query().unwrap_or(""),
        req.headers(),
        peer.ip(),
    ) {
        use futures::TryStreamExt;
        let body: BodyStream = Box::pin(
            req.into_body()
                .into_data_stream()
                .map_err(std::io::Error::other),
        );
        let label = if path.starts_with("/piece/") {
            "piece"
        } else if path.starts_with("/ipfs/") {
            "ipfs"
        } else {
            "api"
        };
        return (label, route(body).await);
    }
    // Reading the body and answering share one deadline, as Curio's TimeoutHandler.
    let work = std::pin::pin!(read_and_route(state, req, path, peer));
    let deadline = async_io::Timer::after(state.config.request_timeout);
    let (route, response) = match futures::future::select(work, deadline).await {
        futures::future::Either::Left((answer, _)) => answer,
        futures::future::Either::Right(_) => {
            state.metrics.limit_hit("http_request_timeout");
            (
                "backend",
                text(StatusCode::SERVICE_UNAVAILABLE, "timeout reading request\n"),
            )
        }
    };
    (route, boxed(response))
}

async fn read_and_route(
    state: &State,
    req: Request<Incoming>,
    path: &str,
    peer: SocketAddr,
) -> (&'static str, HttpResponse) {
    let (parts, body) = req.into_parts();
    // Held until the answer: the route works on these bytes.
    let mut held = Held::new(&state.bodies);
    let body = match read_body(body, state.config.max_body, &mut held).await {
        Ok(b) => b,
        Err(BodyProblem::TooLarge) => {
            state.metrics.limit_hit("http_body_size");
            return (
                "backend",
                text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
            );
        }
        Err(BodyProblem::Busy) => {
            state.metrics.limit_hit("http_bodies_total");
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many request bodies in flight, retry shortly\n",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return ("backend", r);
        }
        Err(BodyProblem::Unreadable) => {
            return (
                "backend",
                text(StatusCode::BAD_REQUEST, "could not read the request body\n"),
            );
        }
    };
    let answer = match state
        .backend
        .route(&parts.method, path, &parts.headers, body, peer.ip())
    {
        Some(fut) => ("backend", fut.await),
        None => ("not_found", text(StatusCode::NOT_FOUND, "not found\n")),
    };
    drop(held);
    answer
}

enum BodyProblem {
    TooLarge,
    Busy,
    Unreadable,
}

/// The whole body, at most `max` bytes, each byte counted in `held` as it arrives. When
/// the total has no room the rest is read and dropped (so the client gets its 503 rather
/// than a reset), still within `max` and the request deadline.
async fn read_body(
    mut body: Incoming,
    max: usize,
    held: &mut Held<'_>,
) -> Result<Bytes, BodyProblem> {
    // The frames as hyper hands them over (no copy, no doubling buffer), joined once.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut seen = 0usize;
    let mut busy = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyProblem::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen += data.len();
        if seen > max {
            return Err(BodyProblem::TooLarge);
        }
        if busy || !held.grow(data.len()) {
            busy = true;
            chunks.clear();
            continue;
        }
        chunks.push(data);
    }
    if busy {
        return Err(BodyProblem::Busy);
    }
    Ok(match chunks.len() {
        1 => chunks.pop().expect("one"),
        _ => Bytes::from(chunks.concat()),
    })
}

/// A WebSocket upgrade on `/` or `/libp2p`: find the host, reserve a relay slot, dial
/// the host, and only then answer 101 and start relaying.
async fn upgrade(state: &Arc<State>, mut req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let metrics = &state.metrics;
    let accept = match relay::accept_key(req.headers()) {
        Ok(a) => a,
        Err(relay::HandshakeProblem::Version) => {
            metrics.relay_rejected("bad_request");
            let mut r = text(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version (need 13)\n",
            );
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return r;
        }
        Err(relay::HandshakeProblem::Key) => {
            metrics.relay_rejected("bad_request");
            return text(
                StatusCode::BAD_REQUEST,
                "missing or invalid Sec-WebSocket-Key\n",
            );
        }
    };
    let route = match state.backend.relay_target().await {
        Ok(t) => t,
        Err(reason) => {
            metrics.relay_rejected("no_target");
            tracing::debug!(%peer, %reason, "no relay target");
            return text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"));
        }
    };
    // The slot is held through the dial so concurrent dials count against the limit;
    // it moves into the relay below and is given back when the relay ends.
    let Some(slot) = Slot::take(&state.relays, state.config.max_relays) else {
        metrics.relay_rejected("limit");
        metrics.limit_hit("relays");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "relay connection limit reached\n",
        );
    };
    let target = match route {
        RelayRoute::HandOff(handoffs) => {
            if !handoffs.has_room() {
                metrics.relay_rejected("limit");
                metrics.limit_hit("relay_handoffs");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the libp2p host is not taking connections as fast as they come, retry\n",
                );
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            state.runtime.spawn(Box::pin(relay::hand_off(
                state.clone(),
                on_upgrade,
                handoffs,
                slot,
                peer,
            )));
            return switching_protocols(&accept);
        }
        RelayRoute::Dial(target) => target,
    };
    let relayed_for = state
        .config
        .relay_key
        .map(|k| dealport_core::relay::relayed_for_value(&k, peer.ip()));
    let (host, host_prefix) =
        match relay::dial_host(target, relayed_for, state.config.relay_dial_timeout).await {
            Ok(h) => h,
            Err(reason) => {
                metrics.relay_rejected("unreachable");
                tracing::warn!(%peer, %target, %reason, "libp2p host unreachable");
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("libp2p host unreachable: {reason}\n"),
                );
            }
        };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let st = state.clone();
    state.runtime.spawn(Box::pin(async move {
        let _slot = slot;
        let Some(client) = relay::upgraded_client(on_upgrade, &st.metrics, peer).await else {
            return;
        };
        st.metrics.relay_opened();
        tracing::debug!(%peer, %target, "relay open");
        let shutdown = st.shutdown.clone().map(|_| ());
        let end = relay::run(
            client,
            Rewound::new(host_prefix, host),
            st.config.relay_idle_timeout,
            &st.metrics,
            shutdown,
        )
        .await;
        st.metrics.relay_closed();
        tracing::debug!(%peer, %end, "relay closed");
    }));
    switching_protocols(&accept)
}

/// The `101` answer to a WebSocket upgrade with `accept` as `Sec-WebSocket-Accept`.
fn switching_protocols(accept: &str) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(accept).expect("base64 is a valid header value"),
    );
    r
}
