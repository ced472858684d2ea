//! The HTTP server and its WebSocket relay over real loopback sockets: the js-libp2p
//! client through the relay to the real libp2p host, raw WebSocket clients against a
//! recording echo target, and the error paths (503, 502, 400, limits, slowloris).

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use async_tungstenite::WebSocketStream;
use dealport_node::{
    handoff::HandOffs,
    http::{self, BoxFuture, HttpBackend, HttpConfig, HttpHandle, RelayRoute},
    metrics::Metrics,
    p2p::{
        transport::{build_transport, Security, TransportConfig},
        Host, HostConfig, HostHandle, Keypair, Multiaddr, PeerId, Reply, StreamProtocol,
        StreamService,
    },
    runtime::SwarmExecutor,
};
use futures::{
    channel::mpsc,
    future::{self, Either},
    AsyncReadExt, AsyncWriteExt, StreamExt,
};
use libp2p::{
    core::multiaddr::Protocol,
    identify,
    swarm::{self, NetworkBehaviour, SwarmEvent},
    Swarm,
};
use tungstenite::{
    protocol::{frame::coding::CloseCode, CloseFrame, Role},
    Message,
};

// ---------------------------------------------------------------- runtime

use dealport_testkit::node::{executor_runtime as runtime, run, within};

// ---------------------------------------------------------------- libp2p host

/// Answers `ok:` + request on every protocol.
struct EchoService;

impl StreamService for EchoService {
    fn handle(&self, _: &str, _: PeerId, _: &Multiaddr, request: Vec<u8>) -> Reply {
        let mut out = b"ok:".to_vec();
        out.extend_from_slice(&request);
        Box::pin(async move { Some(out) })
    }
}

/// Answers the address the host counts the stream's connection under.
#[derive(Default)]
struct RemoteService;

impl StreamService for RemoteService {
    fn handle(&self, _: &str, _: PeerId, remote: &Multiaddr, _: Vec<u8>) -> Reply {
        let out = remote.to_string().into_bytes();
        Box::pin(async move { Some(out) })
    }
}

/// A libp2p host listening on loopback WS only; returns its handle and WS socket address.
async fn start_host() -> (HostHandle, SocketAddr) {
    start_host_with(None, Arc::new(EchoService)).await
}

/// The same, taking the connections an HTTP relay hands over through `handoffs`.
async fn start_host_with(
    handoffs: Option<Arc<HandOffs>>,
    service: Arc<dyn StreamService>,
) -> (HostHandle, SocketAddr) {
    let config = HostConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0/ws".parse().unwrap()],
        agent_version: "dealport/test".into(),
        // The idle relay test keeps a raw WebSocket silent for 20 s before its handshake.
        handshake_timeout: Duration::from_secs(60),
        handoffs,
        ..HostConfig::default()
    };
    let host =
        Host::start(runtime(), Keypair::generate_ed25519(), config, service).expect("host starts");
    let addrs = host.listen_addrs().await.expect("listen addrs");
    let ws = addrs
        .iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Ws(_))))
        .expect("a ws address");
    (host, socket_addr(ws))
}

fn socket_addr(ma: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in ma.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::new(ip.expect("ip4"), port.expect("tcp"))
}

// ---------------------------------------------------------------- backend and server

struct TestBackend {
    target: Mutex<Result<RelayRoute, String>>,
}

impl HttpBackend for TestBackend {
    fn relay_target(&self) -> BoxFuture<Result<RelayRoute, String>> {
        let t = self.target.lock().unwrap().clone();
        Box::pin(async move { t })
    }

    fn health(&self) -> BoxFuture<(bool, serde_json::Value)> {
        Box::pin(async { (true, serde_json::json!({"status": "ok"})) })
    }

    fn banner(&self) -> String {
        "dealport test banner\n".into()
    }
}

fn test_config() -> HttpConfig {
    HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        header_timeout: Duration::from_secs(2),
        ..HttpConfig::default()
    }
}

async fn serve(
    target: Result<SocketAddr, String>,
    config: HttpConfig,
) -> (HttpHandle, Arc<Metrics>, Arc<TestBackend>) {
    serve_route(target.map(RelayRoute::Dial), config).await
}

async fn serve_route(
    target: Result<RelayRoute, String>,
    config: HttpConfig,
) -> (HttpHandle, Arc<Metrics>, Arc<TestBackend>) {
    let metrics = Arc::new(Metrics::new());
    let backend = Arc::new(TestBackend {
        target: Mutex::new(target),
    });
    let handle = http::start(runtime(), config, backend.clone(), metrics.clone())
        .await
        .expect("http server starts");
    (handle, metrics, backend)
}

// ---------------------------------------------------------------- echo target

/// A WebSocket server that records every message it reads, echoes text and binary
/// messages, answers the text `ping-me` with a ping of its own, and finishes the close
/// handshake when the peer closes.
async fn echo_target() -> (SocketAddr, mpsc::UnboundedReceiver<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded();
    runtime().spawn(Box::pin(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            runtime().spawn(Box::pin(async move {
                let Ok(mut ws) = async_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let _ = tx.unbounded_send(msg.clone());
                    if msg == Message::Text("ping-me".into()) {
                        let _ = ws.send(Message::Ping(b"from-target".to_vec().into())).await;
                    } else if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            }));
        }
    }));
    (addr, rx)
}

// ---------------------------------------------------------------- raw HTTP client

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// Read one response head byte by byte (so nothing after it is consumed) and, when it
/// has a Content-Length, its body.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<RawResponse> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = Vec::new();
    if let Some(len) = headers.get("content-length") {
        body.resize(len.parse().unwrap(), 0);
        stream.read_exact(&mut body).await?;
    }
    Ok(RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(&mut s).await.unwrap()
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket upgrade by hand; on 101 the socket becomes a client WebSocket.
async fn upgrade(
    addr: SocketAddr,
    path: &str,
    connection: &str,
) -> Result<WebSocketStream<TcpStream>, RawResponse> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: {connection}\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    if r.status != 101 {
        return Err(r);
    }
    assert_eq!(
        r.headers.get("sec-websocket-accept").map(String::as_str),
        Some(ACCEPT)
    );
    assert!(r.headers["upgrade"].eq_ignore_ascii_case("websocket"));
    Ok(WebSocketStream::from_raw_socket(s, Role::Client, None).await)
}

async fn next_data(ws: &mut WebSocketStream<TcpStream>) -> Message {
    loop {
        match within(Duration::from_secs(5), ws.next()).await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return m,
            Some(Ok(_)) => continue,
            other => panic!("expected a data message, got {other:?}"),
        }
    }
}

/// Wait (10 s at most) until `dealport_relay_active` is back at 0: the client has gone
/// and the relay ended.
async fn until_no_relay_is_active(metrics: &Metrics) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while parse_metrics(&metrics.encode())["dealport_relay_active"] != 0.0 {
        assert!(
            Instant::now() < deadline,
            "relay still active after the client left"
        );
        Timer::after(Duration::from_millis(50)).await;
    }
}

/// The OpenMetrics exposition, checked line by line; returns sample -> value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "ends with # EOF");
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let v = if value == "+Inf" {
            f64::INFINITY
        } else {
            value
                .parse()
                .unwrap_or_else(|_| panic!("numeric value: {line}"))
        };
        out.insert(series.to_owned(), v);
    }
    out
}

// ---------------------------------------------------------------- js client

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop-js")
}

fn ensure_npm() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = interop_dir();
        if !dir.join("node_modules").exists() {
            let st = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .expect("npm runs (Node.js is needed for the js-libp2p interop tests)");
            assert!(st.success(), "npm ci in tests/interop-js failed");
        }
    });
}

async fn js_client(job: serde_json::Value) -> serde_json::Value {
    ensure_npm();
    let dir = interop_dir();
    let out = dealport_node::runtime::unblock(&*runtime(), move || {
        Command::new("node")
            .arg("mk12-client.mjs")
            .arg(job.to_string())
            .current_dir(dir)
            .output()
    })
    .await
    .expect("blocking work ran")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mk12-client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("client output {stdout}: {e}"))
}

fn check_js_round_trip(out: &serde_json::Value, peer: PeerId) {
    assert_eq!(out["error"], serde_json::Value::Null, "{out}");
    assert_eq!(out["peer"], peer.to_string(), "{out}");
    assert_eq!(out["agent"], "dealport/test", "{out}");
    let protocols = out["protocols"].as_array().expect("identify protocols");
    assert!(
        protocols.iter().any(|p| p == "/fil/storage/mk/1.2.1"),
        "{out}"
    );
    let r = &out["responses"][0];
    assert_eq!(r["error"], serde_json::Value::Null, "{out}");
    // "ok:" + a0
    assert_eq!(r["hex"], "6f6b3aa0", "{out}");
}

// ---------------------------------------------------------------- rust-libp2p client

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct ClientBehaviour {
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// Dial `addr` (with `/p2p/peer` appended) with the node's own transport, wait for
/// identify, then send `request` on `/fil/storage/mk/1.2.1` and read the reply to EOF.
async fn rust_client_request(
    addr: Multiaddr,
    peer: PeerId,
    request: &[u8],
) -> (identify::Info, Vec<u8>) {
    let key = Keypair::generate_ed25519();
    let transport = build_transport(
        &key,
        &TransportConfig {
            security: Security::NoiseAndTls,
            ..TransportConfig::default()
        },
    )
    .expect("client transport");
    let behaviour = ClientBehaviour {
        identify: identify::Behaviour::new(identify::Config::new(
            "ipfs/0.1.0".into(),
            key.public(),
        )),
        stream: libp2p_stream::Behaviour::new(),
    };
    let config = swarm::Config::with_executor(SwarmExecutor(runtime()))
        .with_idle_connection_timeout(Duration::from_secs(30));
    let mut swarm = Swarm::new(transport, behaviour, key.public().to_peer_id(), config);
    let mut control = swarm.behaviour().stream.new_control();
    swarm.dial(addr.with(Protocol::P2p(peer))).expect("dial");
    let (info_tx, info_rx) = futures::channel::oneshot::channel();
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    runtime().spawn(Box::pin(async move {
        let mut info_tx = Some(info_tx);
        let mut stop_rx = stop_rx;
        loop {
            match future::select(swarm.select_next_some(), &mut stop_rx).await {
                Either::Left((ev, _)) => match ev {
                    SwarmEvent::Behaviour(ClientBehaviourEvent::Identify(
                        identify::Event::Received { info, .. },
                    )) => {
                        if let Some(tx) = info_tx.take() {
                            let _ = tx.send(Ok(info));
                        }
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        if let Some(tx) = info_tx.take() {
                            let _ = tx.send(Err(error.to_string()));
                        }
                    }
                    _ => {}
                },
                Either::Right(_) => return,
            }
        }
    }));
    let info = within(Duration::from_secs(10), info_rx)
        .await
        .expect("client task")
        .expect("connected and identified");
    let mut s = within(
        Duration::from_secs(5),
        control.open_stream(peer, StreamProtocol::new("/fil/storage/mk/1.2.1")),
    )
    .await
    .expect("open stream");
    s.write_all(request).await.unwrap();
    s.flush().await.unwrap();
    let mut out = Vec::new();
    within(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("reply");
    drop(stop_tx);
    (info, out)
}

// ---------------------------------------------------------------- tests

/// (a) + (h): js-libp2p dials the HTTP port's `/` with WS, identifies and completes an
/// MK12 request/response; afterwards /metrics parses and the relay counters moved.
#[test]
fn js_client_through_root_and_metrics() {
    run(Duration::from_secs(60), async {
        let (host, ws) = start_host().await;
        let (server, metrics, _) = serve(Ok(ws), test_config()).await;
        let port = server.local_addr().port();
        let out = js_client(serde_json::json!({
            "addr": format!("/ip4/127.0.0.1/tcp/{port}/ws/p2p/{}", host.peer_id()),
            "identify": true,
            "timeoutMs": 20000,
            "requests": [{"protocol": "/fil/storage/mk/1.2.1", "hex": "a0"}],
        }))
        .await;
        check_js_round_trip(&out, host.peer_id());

        let r = get(server.local_addr(), "/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let m = parse_metrics(&r.body);
        assert!(m["dealport_relay_opened_total"] >= 1.0, "{}", r.body);
        assert!(m[r#"dealport_relay_bytes_total{direction="client_to_host"}"#] > 0.0);
        assert!(m[r#"dealport_relay_bytes_total{direction="host_to_client"}"#] > 0.0);
        assert!(m[r#"dealport_http_requests_total{route="root",code="101"}"#] >= 1.0);
        // The js client has exited: the relay ends and the active gauge returns to 0.
        until_no_relay_is_active(&metrics).await;
        server.shutdown().await;
        host.shutdown(Duration::from_secs(1)).await;
    });
}

/// (b): the same through `/libp2p`. js-libp2p's websockets transport cannot dial a path
/// (its dial filter accepts only `…/ws[/p2p/…]`, so `/ws/http-path/libp2p` is refused
/// with NoValidAddressesError); rust-libp2p can: `/x-parity-ws/%2Flibp2p` is a `ws`
/// component with the path `/libp2p`.
#[test]
fn rust_client_through_libp2p_path() {
    run(Duration::from_secs(60), async {
        let (host, ws) = start_host().await;
        let (server, metrics, _) = serve(Ok(ws), test_config()).await;
        let port = server.local_addr().port();
        let addr = libp2p_path(port);
        let (info, reply) = rust_client_request(addr, host.peer_id(), b"\xa0").await;
        assert_eq!(info.agent_version, "dealport/test");
        assert!(info
            .protocols
            .iter()
            .any(|p| p.as_ref() == "/fil/storage/mk/1.2.1"));
        assert_eq!(reply, b"ok:\xa0");
        let m = parse_metrics(&metrics.encode());
        assert!(m[r#"dealport_http_requests_total{route="libp2p",code="101"}"#] >= 1.0);
        assert!(!m.contains_key(r#"dealport_http_requests_total{route="root",code="101"}"#));
        server.shutdown().await;
        host.shutdown(Duration::from_secs(1)).await;
    });
}

/// The relay hands the connection to a host in its own process instead of dialing it:
/// a rust-libp2p client through `/libp2p` identifies and gets its answer; the host
/// counts the stream under the client's socket address (with its port, where the
/// dialing relay's signed header gives port 0); the relay's byte counters move both
/// ways, and its slot and gauge come back when the client leaves.
#[test]
fn relay_hands_the_connection_to_its_own_host() {
    run(Duration::from_secs(60), async {
        let handoffs = Arc::new(HandOffs::new(8));
        let (host, _) = start_host_with(Some(handoffs.clone()), Arc::new(RemoteService)).await;
        let config = HttpConfig {
            max_relays: 1,
            ..test_config()
        };
        let (server, metrics, _) = serve_route(Ok(RelayRoute::HandOff(handoffs)), config).await;
        let port = server.local_addr().port();
        let addr = libp2p_path(port);
        let (info, reply) = rust_client_request(addr, host.peer_id(), b"\xa0").await;
        assert_eq!(info.agent_version, "dealport/test");
        let seen: Multiaddr = String::from_utf8(reply).unwrap().parse().unwrap();
        let seen = socket_addr(&seen);
        assert_eq!(seen.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
        assert_ne!(
            seen.port(),
            0,
            "the client's own port, not a vouched-for address"
        );
        let m = parse_metrics(&metrics.encode());
        assert_eq!(m["dealport_relay_opened_total"], 1.0);
        assert_eq!(m["dealport_relay_handed_off_total"], 1.0);
        assert!(m[r#"dealport_relay_bytes_total{direction="client_to_host"}"#] > 0.0);
        assert!(m[r#"dealport_relay_bytes_total{direction="host_to_client"}"#] > 0.0);
        // The client has gone: the host drops the connection, the slot comes back (a
        // second relay fits under max_relays = 1 again).
        until_no_relay_is_active(&metrics).await;
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/ws").parse().unwrap();
        let (_, reply) = rust_client_request(addr, host.peer_id(), b"\xa0").await;
        assert!(!reply.is_empty());
        server.shutdown().await;
        host.shutdown(Duration::from_secs(1)).await;
    });
}

/// A host that does not take handed-over connections fast enough: once its queue is
/// full, upgrades get 503 (and count as the relay limit), not a 101 that leads nowhere.
#[test]
fn a_full_hand_off_queue_is_503() {
    run(Duration::from_secs(30), async {
        // No host drains this queue.
        let handoffs = Arc::new(HandOffs::new(1));
        let (server, metrics, _) =
            serve_route(Ok(RelayRoute::HandOff(handoffs.clone())), test_config()).await;
        let first = upgrade(server.local_addr(), "/", "Upgrade").await;
        assert!(first.is_ok(), "the first one is queued");
        let deadline = Instant::now() + Duration::from_secs(5);
        while handoffs.has_room() {
            assert!(
                Instant::now() < deadline,
                "the first upgrade was not queued"
            );
            Timer::after(Duration::from_millis(20)).await;
        }
        let r = upgrade(server.local_addr(), "/", "Upgrade")
            .await
            .expect_err("not 101");
        assert_eq!(r.status, 503);
        assert!(r.body.contains("not taking connections"), "{}", r.body);
        let m = parse_metrics(&metrics.encode());
        assert_eq!(m[r#"dealport_relay_rejected_total{reason="limit"}"#], 1.0);
        // Clearing the queue (the host stopped) closes the queued client.
        handoffs.clear();
        let mut ws = first.unwrap();
        match within(Duration::from_secs(5), ws.next()).await {
            None | Some(Err(_)) => {}
            other => panic!("expected the connection closed, got {other:?}"),
        }
        server.shutdown().await;
    });
}

/// (c): a relayed connection silent in both directions for 20 s (Curio cuts at 15 s)
/// still carries a multistream-select handshake with the real host afterwards.
#[test]
fn idle_relay_survives_20s() {
    run(Duration::from_secs(60), async {
        let (host, ws) = start_host().await;
        let (server, _, _) = serve(Ok(ws), test_config()).await;
        let mut c = upgrade(server.local_addr(), "/libp2p", "Upgrade")
            .await
            .expect("101");
        Timer::after(Duration::from_secs(20)).await;
        let hello: &[u8] = b"\x13/multistream/1.0.0\n\x07/noise\n";
        c.send(Message::Binary(hello.to_vec().into()))
            .await
            .expect("send after idle");
        let mut got = Vec::new();
        while got.len() < hello.len() {
            match within(Duration::from_secs(5), c.next()).await {
                Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
                Some(Ok(_)) => {}
                other => panic!("relay ended: {other:?}"),
            }
        }
        assert_eq!(got, hello, "host confirmed multistream and noise");
        server.shutdown().await;
        host.shutdown(Duration::from_secs(1)).await;
    });
}

/// The idle limit does close a relay that stays silent longer than configured, with
/// 1001 to both sides.
#[test]
fn idle_limit_closes_relay() {
    run(Duration::from_secs(30), async {
        let (target, mut seen) = echo_target().await;
        let config = HttpConfig {
            relay_idle_timeout: Duration::from_millis(1500),
            ..test_config()
        };
        let (server, metrics, _) = serve(Ok(target), config).await;
        let mut c = upgrade(server.local_addr(), "/", "Upgrade")
            .await
            .expect("101");
        // Traffic keeps it open past the limit.
        for i in 0..4 {
            Timer::after(Duration::from_millis(700)).await;
            c.send(Message::Text(format!("m{i}").into())).await.unwrap();
            assert_eq!(
                next_data(&mut c).await,
                Message::Text(format!("m{i}").into())
            );
        }
        let t0 = Instant::now();
        match within(Duration::from_secs(5), c.next()).await {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(f.code, CloseCode::Away);
                assert_eq!(f.reason.as_str(), "relay idle timeout");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert!(t0.elapsed() >= Duration::from_millis(1000));
        let target_close = loop {
            match within(Duration::from_secs(3), seen.next()).await {
                Some(Message::Close(f)) => break f,
                Some(_) => continue,
                None => panic!("target saw no close"),
            }
        };
        assert_eq!(target_close.map(|f| f.code), Some(CloseCode::Away));
        // The relay task counts itself out just after sending both closes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while parse_metrics(&metrics.encode())["dealport_relay_active"] != 0.0 {
            assert!(Instant::now() < deadline, "relay still counted as active");
            Timer::after(Duration::from_millis(20)).await;
        }
        server.shutdown().await;
    });
}

/// Text and binary messages keep their type and boundaries; pings and pongs go through
/// both ways (answered by the far end only); a close frame is forwarded with its code and reason and the
/// close handshake completes end to end.
#[test]
fn relays_messages_control_frames_and_close() {
    run(Duration::from_secs(30), async {
        let (target, mut seen) = echo_target().await;
        let (server, _, _) = serve(Ok(target), test_config()).await;
        let mut c = upgrade(server.local_addr(), "/", "Upgrade")
            .await
            .expect("101");

        c.send(Message::Text("hello".into())).await.unwrap();
        c.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
        c.send(Message::Binary(vec![7u8; 300_000].into()))
            .await
            .unwrap();
        assert_eq!(next_data(&mut c).await, Message::Text("hello".into()));
        assert_eq!(
            next_data(&mut c).await,
            Message::Binary(vec![1, 2, 3].into())
        );
        assert_eq!(
            next_data(&mut c).await,
            Message::Binary(vec![7u8; 300_000].into())
        );
        for want in [
            Message::Text("hello".into()),
            Message::Binary(vec![1, 2, 3].into()),
            Message::Binary(vec![7u8; 300_000].into()),
        ] {
            assert_eq!(
                within(Duration::from_secs(5), seen.next()).await,
                Some(want)
            );
        }

        // Client ping reaches the target; the client gets the target's pong back and no
        // other (the relay splices bytes: it answers no ping of its own).
        c.send(Message::Ping(b"p1".to_vec().into())).await.unwrap();
        assert_eq!(
            within(Duration::from_secs(5), seen.next()).await,
            Some(Message::Ping(b"p1".to_vec().into()))
        );
        let mut pongs = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while pongs < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match future::select(std::pin::pin!(c.next()), Timer::after(left)).await {
                Either::Left((Some(Ok(m)), _)) => {
                    assert_eq!(m, Message::Pong(b"p1".to_vec().into()));
                    pongs += 1;
                }
                Either::Left((other, _)) => panic!("relay ended: {other:?}"),
                Either::Right(_) => break,
            }
        }
        assert_eq!(pongs, 1, "the target's pong alone");

        // A pong sent unsolicited by the client is forwarded too.
        c.send(Message::Pong(b"beat".to_vec().into()))
            .await
            .unwrap();
        assert_eq!(
            within(Duration::from_secs(5), seen.next()).await,
            Some(Message::Pong(b"beat".to_vec().into()))
        );

        // The target's ping reaches the client.
        c.send(Message::Text("ping-me".into())).await.unwrap();
        assert_eq!(
            within(Duration::from_secs(5), seen.next()).await,
            Some(Message::Text("ping-me".into()))
        );
        match within(Duration::from_secs(5), c.next()).await {
            Some(Ok(Message::Ping(p))) => assert_eq!(&p[..], b"from-target"),
            other => panic!("expected the target's ping, got {other:?}"),
        }

        // Close from the client: forwarded with code and reason, answered end to end.
        c.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        loop {
            match within(Duration::from_secs(5), seen.next()).await {
                Some(Message::Close(Some(f))) => {
                    assert_eq!(f.code, CloseCode::Normal);
                    assert_eq!(f.reason.as_str(), "bye");
                    break;
                }
                Some(Message::Pong(_)) => continue,
                other => panic!("target expected the close frame, got {other:?}"),
            }
        }
        loop {
            match within(Duration::from_secs(5), c.next()).await {
                Some(Ok(Message::Close(f))) => {
                    assert_eq!(f.map(|f| f.code), Some(CloseCode::Normal));
                }
                Some(Ok(m)) => panic!("unexpected {m:?}"),
                None => break,
                Some(Err(e)) => panic!("close handshake failed: {e}"),
            }
        }
        server.shutdown().await;
    });
}

/// (d): no relay target -> 503 with the backend's reason; a target that refuses
/// connections -> 502.
#[test]
fn no_target_503_and_unreachable_502() {
    run(Duration::from_secs(30), async {
        let (server, metrics, backend) = serve(
            Err("lease not live: no leader holds the libp2p host".into()),
            test_config(),
        )
        .await;
        let r = upgrade(server.local_addr(), "/libp2p", "Upgrade")
            .await
            .expect_err("not 101");
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "lease not live: no leader holds the libp2p host\n");
        assert!(r.headers["content-type"].starts_with("text/plain"));

        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        *backend.target.lock().unwrap() = Ok(RelayRoute::Dial(closed));
        let r = upgrade(server.local_addr(), "/", "Upgrade")
            .await
            .expect_err("not 101");
        assert_eq!(r.status, 502);
        assert!(
            r.body.starts_with("libp2p host unreachable: "),
            "{}",
            r.body
        );

        // A target that accepts TCP but never answers the handshake: 502 after the
        // dial timeout.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        *backend.target.lock().unwrap() = Ok(RelayRoute::Dial(silent.local_addr().unwrap()));
        let t0 = Instant::now();
        let r = upgrade(server.local_addr(), "/", "Upgrade")
            .await
            .expect_err("not 101");
        assert_eq!(r.status, 502);
        assert!(r.body.contains("within"), "{}", r.body);
        assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());
        drop(silent);

        let m = parse_metrics(&metrics.encode());
        assert_eq!(
            m[r#"dealport_relay_rejected_total{reason="no_target"}"#],
            1.0
        );
        assert_eq!(
            m[r#"dealport_relay_rejected_total{reason="unreachable"}"#],
            2.0
        );
        server.shutdown().await;
    });
}

/// (e): garbage instead of HTTP gets a 400 or a close; the server keeps serving; a
/// slowloris request head is cut off after the header timeout.
#[test]
fn garbage_and_slowloris() {
    run(Duration::from_secs(30), async {
        let (server, _, _) = serve(Err("none".into()), test_config()).await;
        let addr = server.local_addr();
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"[..],
            b"HELLO THERE\r\n\r\n",
            &[0u8; 64][..],
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(garbage).await.unwrap();
            let mut buf = Vec::new();
            let _ = within(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
            let text = String::from_utf8_lossy(&buf);
            assert!(
                buf.is_empty() || text.starts_with("HTTP/1.1 400"),
                "unexpected answer to garbage: {text}"
            );
        }

        // Slowloris: an unfinished request head, and a silent connection.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let t0 = Instant::now();
        for s in [&mut slow, &mut silent] {
            let mut buf = Vec::new();
            within(Duration::from_secs(6), s.read_to_end(&mut buf))
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&buf);
            assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
        }
        assert!(t0.elapsed() < Duration::from_secs(6));

        let r = get(addr, "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "dealport test banner\n");
        let r = get(addr, "/health").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.body, r#"{"status":"ok"}"#);
        let r = get(addr, "/nope").await;
        assert_eq!(r.status, 404);
        server.shutdown().await;
    });
}

/// (f): with max_relays = 1 the second upgrade gets 503 while the first keeps working;
/// once the first closes, a new one is accepted.
#[test]
fn relay_limit() {
    run(Duration::from_secs(30), async {
        let (target, _seen) = echo_target().await;
        let config = HttpConfig {
            max_relays: 1,
            ..test_config()
        };
        let (server, metrics, _) = serve(Ok(target), config).await;
        let addr = server.local_addr();
        let mut first = upgrade(addr, "/", "Upgrade").await.expect("first 101");
        let r = upgrade(addr, "/", "Upgrade")
            .await
            .expect_err("second refused");
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "relay connection limit reached\n");
        first
            .send(Message::Text("still here".into()))
            .await
            .unwrap();
        assert_eq!(
            next_data(&mut first).await,
            Message::Text("still here".into())
        );
        first.close(None).await.unwrap();
        while let Some(Ok(_)) = within(Duration::from_secs(5), first.next()).await {}
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut third = loop {
            match upgrade(addr, "/", "Upgrade").await {
                Ok(ws) => break ws,
                Err(r) => {
                    assert_eq!(r.status, 503);
                    assert!(Instant::now() < deadline, "slot not released");
                    Timer::after(Duration::from_millis(50)).await;
                }
            }
        };
        third.send(Message::Text("again".into())).await.unwrap();
        assert_eq!(next_data(&mut third).await, Message::Text("again".into()));
        let m = parse_metrics(&metrics.encode());
        assert!(m[r#"dealport_relay_rejected_total{reason="limit"}"#] >= 1.0);
        server.shutdown().await;
    });
}

/// (g): `Connection: keep-alive, Upgrade` (a token list) is an upgrade; so are odd
/// capitalisation and a repeated Connection header. Without the token it is not.
#[test]
fn connection_header_token_list() {
    run(Duration::from_secs(30), async {
        let (target, _seen) = echo_target().await;
        let (server, _, _) = serve(Ok(target), test_config()).await;
        let addr = server.local_addr();
        for connection in ["keep-alive, Upgrade", "UPGRADE", "keep-alive,upgrade"] {
            let mut ws = upgrade(addr, "/", connection)
                .await
                .ok()
                .unwrap_or_else(|| panic!("Connection: {connection} not upgraded"));
            ws.send(Message::Binary(vec![9, 9].into())).await.unwrap();
            assert_eq!(next_data(&mut ws).await, Message::Binary(vec![9, 9].into()));
        }
        // Not an upgrade: the banner.
        let r = upgrade(addr, "/", "keep-alive")
            .await
            .expect_err("no upgrade");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "dealport test banner\n");
        // Wrong version.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET /libp2p HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let r = read_response(&mut s).await.unwrap();
        assert_eq!(r.status, 426);
        assert_eq!(r.headers["sec-websocket-version"], "13");
        server.shutdown().await;
    });
}

/// Shutdown closes the listener and ends open relays with 1001.
#[test]
fn shutdown_closes_relays() {
    run(Duration::from_secs(30), async {
        let (target, _seen) = echo_target().await;
        let (server, _, _) = serve(Ok(target), test_config()).await;
        let addr = server.local_addr();
        let mut ws = upgrade(addr, "/", "Upgrade").await.expect("101");
        server.shutdown().await;
        match within(Duration::from_secs(5), ws.next()).await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Away),
            other => panic!("expected 1001, got {other:?}"),
        }
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    });
}

/// The relay's `/libp2p` path on `port` as rust-libp2p dials it (`x-parity-ws` carries
/// the path).
fn libp2p_path(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}/x-parity-ws/%2Flibp2p")
        .parse()
        .unwrap()
}
