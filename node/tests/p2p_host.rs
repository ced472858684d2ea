//! The libp2p host against a rust-libp2p client over real loopback sockets.
//!
//! The client is built from the same transport code (Noise/TLS, yamux, TCP, WS) with
//! `libp2p-stream` for outbound streams, and negotiates streams lazily (V1Lazy), as the
//! go-libp2p clients of Boost and Curio do once identify told them our protocols.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use async_io::Timer;
use dealport_node::p2p::{
    mk12_protocols,
    transport::{build_transport, Security, TransportConfig},
    Host, HostConfig, HostHandle, Keypair, Limits, Multiaddr, PeerId, Reply, StreamFailure,
    StreamProtocol, StreamService, PROTOCOL_ASK, PROTOCOL_DEAL_1_2_0, PROTOCOL_DEAL_1_2_1,
    PROTOCOL_STATUS, PROTOCOL_TRANSPORTS,
};
use futures::{
    channel::{mpsc, oneshot},
    future, AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt,
};
use libp2p::{
    core::{multiaddr::Protocol, upgrade::Version},
    identify,
    swarm::{self, NetworkBehaviour, SwarmEvent},
    Swarm,
};

// ---------------------------------------------------------------- runtime

use dealport_testkit::node::{executor_runtime as runtime, run, within};

// ---------------------------------------------------------------- service

/// Answers `ok:` + request. On the status protocol it first waits until released.
#[derive(Default)]
struct EchoService {
    calls: AtomicUsize,
    gate: OnceLock<future::Shared<oneshot::Receiver<()>>>,
    /// Delay before answering on the ask protocol.
    ask_delay: Option<Duration>,
    /// The limit behind each stream failure reported to the service.
    limits_hit: Mutex<Vec<Option<&'static str>>>,
}

impl StreamService for EchoService {
    fn handle(
        &self,
        protocol: &str,
        _peer: PeerId,
        _remote: &Multiaddr,
        request: Vec<u8>,
    ) -> Reply {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let gate = (protocol == PROTOCOL_STATUS.as_ref())
            .then(|| self.gate.get().cloned())
            .flatten();
        let delay = (protocol == PROTOCOL_ASK.as_ref())
            .then_some(self.ask_delay)
            .flatten();
        Box::pin(async move {
            if let Some(g) = gate {
                let _ = g.await;
            }
            if let Some(d) = delay {
                Timer::after(d).await;
            }
            let mut out = b"ok:".to_vec();
            out.extend_from_slice(&request);
            Some(out)
        })
    }

    fn on_stream_failure(&self, _protocol: &str, _peer: PeerId, failure: &StreamFailure) {
        self.limits_hit.lock().unwrap().push(failure.limit());
    }
}

fn loopback_config() -> HostConfig {
    HostConfig {
        listen: vec![
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            "/ip4/127.0.0.1/tcp/0/ws".parse().unwrap(),
        ],
        agent_version: "dealport/test".into(),
        ..HostConfig::default()
    }
}

async fn start(
    config: HostConfig,
    service: Arc<EchoService>,
) -> (HostHandle, Multiaddr, Multiaddr) {
    let host =
        Host::start(runtime(), Keypair::generate_ed25519(), config, service).expect("host starts");
    let addrs = host.listen_addrs().await.expect("listen addrs");
    let ws = addrs
        .iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Ws(_))))
        .expect("a ws address")
        .clone();
    let tcp = addrs
        .iter()
        .find(|a| !a.iter().any(|p| matches!(p, Protocol::Ws(_))))
        .expect("a tcp address")
        .clone();
    (host, tcp, ws)
}

// ---------------------------------------------------------------- client

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct ClientBehaviour {
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

struct Client {
    control: libp2p_stream::Control,
    identified: mpsc::UnboundedReceiver<identify::Info>,
    connected: mpsc::UnboundedReceiver<Result<PeerId, String>>,
    dial: mpsc::UnboundedSender<Multiaddr>,
}

impl Client {
    fn new(security: Security) -> Client {
        let key = Keypair::generate_ed25519();
        let transport = build_transport(
            &key,
            &TransportConfig {
                security,
                version: Version::V1Lazy,
                ..TransportConfig::default()
            },
        )
        .expect("client transport");
        let behaviour = ClientBehaviour {
            identify: identify::Behaviour::new(
                identify::Config::new("ipfs/0.1.0".into(), key.public())
                    .with_agent_version("test-client".into()),
            ),
            stream: libp2p_stream::Behaviour::new(),
        };
        let rt = runtime();
        let config =
            swarm::Config::with_executor(dealport_node::runtime::SwarmExecutor(rt.clone()))
                .with_substream_upgrade_protocol_override(Version::V1Lazy)
                .with_idle_connection_timeout(Duration::from_secs(30));
        let mut swarm = Swarm::new(transport, behaviour, key.public().to_peer_id(), config);
        let control = swarm.behaviour().stream.new_control();
        let (id_tx, identified) = mpsc::unbounded();
        let (conn_tx, connected) = mpsc::unbounded();
        let (dial, mut dial_rx) = mpsc::unbounded::<Multiaddr>();
        rt.spawn(Box::pin(async move {
            loop {
                futures::select! {
                    addr = dial_rx.next() => match addr {
                        Some(addr) => if let Err(e) = swarm.dial(addr) {
                            let _ = conn_tx.unbounded_send(Err(e.to_string()));
                        },
                        None => return,
                    },
                    ev = swarm.select_next_some() => match ev {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                            let _ = conn_tx.unbounded_send(Ok(peer_id));
                        }
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            let _ = conn_tx.unbounded_send(Err(error.to_string()));
                        }
                        SwarmEvent::Behaviour(ClientBehaviourEvent::Identify(
                            identify::Event::Received { info, .. },
                        )) => {
                            let _ = id_tx.unbounded_send(info);
                        }
                        _ => {}
                    },
                }
            }
        }));
        Client {
            control,
            identified,
            connected,
            dial,
        }
    }

    async fn connect(&mut self, addr: &Multiaddr, peer: PeerId) -> Result<(), String> {
        let addr = addr.clone().with(Protocol::P2p(peer));
        self.dial.unbounded_send(addr).unwrap();
        match within(Duration::from_secs(10), self.connected.next()).await {
            Some(Ok(p)) if p == peer => Ok(()),
            Some(Ok(p)) => Err(format!("connected to {p}, wanted {peer}")),
            Some(Err(e)) => Err(e),
            None => Err("client stopped".into()),
        }
    }

    async fn open(&mut self, peer: PeerId, protocol: StreamProtocol) -> libp2p::Stream {
        within(
            Duration::from_secs(5),
            self.control.open_stream(peer, protocol),
        )
        .await
        .expect("open stream")
    }

    /// Write `request` without closing the write side, then read until EOF.
    async fn request(
        &mut self,
        peer: PeerId,
        protocol: StreamProtocol,
        request: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mut s = self.open(peer, protocol).await;
        s.write_all(request).await?;
        s.flush().await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok(out)
    }
}

/// `{"a": 1}`
const ITEM: [u8; 4] = [0xa1, 0x61, 0x61, 0x01];

fn ok_reply(request: &[u8]) -> Vec<u8> {
    [b"ok:".as_slice(), request].concat()
}

// ---------------------------------------------------------------- tests

#[test]
fn tcp_and_ws_serve_requests_and_identify_lists_every_protocol() {
    run(Duration::from_secs(30), async {
        let service = Arc::new(EchoService::default());
        let (host, tcp, ws) = start(loopback_config(), service.clone()).await;
        let peer = host.peer_id();
        for addr in [&tcp, &ws] {
            let mut client = Client::new(Security::TlsAndNoise);
            client.connect(addr, peer).await.expect("connect");

            let info = within(Duration::from_secs(5), client.identified.next())
                .await
                .unwrap();
            assert_eq!(info.agent_version, "dealport/test");
            assert_eq!(info.protocol_version, "ipfs/0.1.0");
            for p in mk12_protocols() {
                assert!(
                    info.protocols.contains(&p.protocol),
                    "{} missing from {:?}",
                    p.protocol,
                    info.protocols
                );
            }
            assert!(info
                .protocols
                .iter()
                .any(|p| p.as_ref() == "/ipfs/id/1.0.0"));
            assert!(info
                .protocols
                .iter()
                .any(|p| p.as_ref() == "/ipfs/ping/1.0.0"));

            for proto in [PROTOCOL_DEAL_1_2_1, PROTOCOL_DEAL_1_2_0] {
                let reply = client.request(peer, proto, &ITEM).await.expect("reply");
                assert_eq!(reply, ok_reply(&ITEM), "over {addr}");
            }
            // The transports protocol reads nothing: the answer comes without a request.
            let mut s = client.open(peer, PROTOCOL_TRANSPORTS).await;
            s.flush().await.unwrap();
            let mut out = Vec::new();
            within(Duration::from_secs(5), s.read_to_end(&mut out))
                .await
                .unwrap();
            assert_eq!(out, b"ok:");
            assert!(host.active_connections() >= 1);
        }
        let stats = host.stats();
        assert_eq!(stats.streams_served, 6);
        assert_eq!(
            stats.read_timeouts + stats.framing_errors + stats.read_errors,
            0
        );
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn noise_only_and_tls_only_dialers_both_connect() {
    run(Duration::from_secs(30), async {
        let (host, tcp, ws) = start(loopback_config(), Arc::default()).await;
        let peer = host.peer_id();
        for (security, addr) in [
            (Security::NoiseOnly, &tcp),
            (Security::TlsOnly, &tcp),
            (Security::NoiseOnly, &ws),
            (Security::TlsOnly, &ws),
        ] {
            let mut client = Client::new(security);
            client
                .connect(addr, peer)
                .await
                .unwrap_or_else(|e| panic!("{security:?} over {addr}: {e}"));
            let reply = client
                .request(peer, PROTOCOL_DEAL_1_2_1, &ITEM)
                .await
                .expect("reply");
            assert_eq!(reply, ok_reply(&ITEM), "{security:?} over {addr}");
        }
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn silent_and_partial_streams_time_out_while_others_are_served() {
    run(Duration::from_secs(30), async {
        let config = HostConfig {
            read_deadline: Duration::from_millis(500),
            ..loopback_config()
        };
        let service = Arc::new(EchoService::default());
        let (host, tcp, _) = start(config, service.clone()).await;
        let peer = host.peer_id();
        let mut client = Client::new(Security::TlsAndNoise);
        client.connect(&tcp, peer).await.unwrap();

        let started = Instant::now();
        // Sends nothing (the flush pushes the lazy protocol proposal out).
        let mut silent = client.open(peer, PROTOCOL_DEAL_1_2_1).await;
        silent.flush().await.unwrap();
        // Sends the first bytes of a map and stops.
        let mut partial = client.open(peer, PROTOCOL_STATUS).await;
        partial.write_all(&[0xa1, 0x61]).await.unwrap();
        partial.flush().await.unwrap();

        // Meanwhile another stream is served at once.
        let reply = client.request(peer, PROTOCOL_ASK, &ITEM).await.unwrap();
        assert_eq!(reply, ok_reply(&ITEM));
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "served while others wait"
        );

        for s in [&mut silent, &mut partial] {
            let mut out = Vec::new();
            let r = within(Duration::from_secs(5), s.read_to_end(&mut out)).await;
            assert!(out.is_empty(), "no reply expected, got {out:?} ({r:?})");
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(450),
            "closed too early: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(3),
            "closed too late: {waited:?}"
        );
        assert_eq!(service.calls.load(Ordering::SeqCst), 1);
        // The stream tasks count and release after closing: let the counters settle.
        within(Duration::from_secs(5), async {
            while host.stats().active_streams != 0 || host.stats().read_timeouts < 2 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        let stats = host.stats();
        assert_eq!(stats.read_timeouts, 2);
        assert_eq!(stats.active_streams, 0);
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn oversized_or_malformed_items_are_closed_without_reply() {
    run(Duration::from_secs(30), async {
        let config = HostConfig {
            max_request_size: 64,
            ..loopback_config()
        };
        let service = Arc::new(EchoService::default());
        let (host, tcp, _) = start(config, service.clone()).await;
        let peer = host.peer_id();
        let mut client = Client::new(Security::TlsAndNoise);
        client.connect(&tcp, peer).await.unwrap();

        // A 100-byte byte string: over the 64-byte cap from its header on.
        let mut big = vec![0x58, 100];
        big.extend(std::iter::repeat_n(7u8, 100));
        // An indefinite-length map, which cbor-gen never writes.
        let indefinite = [0xbf, 0x61, 0x61, 0x01, 0xff];
        for bad in [&big[..], &indefinite[..]] {
            // Err = reset after the close: also no reply.
            if let Ok(out) = client.request(peer, PROTOCOL_DEAL_1_2_1, bad).await {
                assert!(out.is_empty(), "no reply expected, got {out:?}");
            }
        }
        // Exactly at the cap is fine: 0x58 0x3e + 62 bytes = 64 bytes.
        let mut fits = vec![0x58, 62];
        fits.extend(std::iter::repeat_n(1u8, 62));
        let reply = client
            .request(peer, PROTOCOL_DEAL_1_2_1, &fits)
            .await
            .unwrap();
        assert_eq!(reply, ok_reply(&fits));

        assert_eq!(service.calls.load(Ordering::SeqCst), 1);
        assert_eq!(host.stats().framing_errors, 2);
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn silent_stream_closed_at_the_first_byte_deadline_before_the_read_deadline() {
    run(Duration::from_secs(30), async {
        let config = HostConfig {
            first_byte_deadline: Duration::from_millis(300),
            read_deadline: Duration::from_secs(20),
            ..loopback_config()
        };
        let service = Arc::new(EchoService::default());
        let (host, tcp, _) = start(config, service.clone()).await;
        let peer = host.peer_id();
        let mut client = Client::new(Security::TlsAndNoise);
        client.connect(&tcp, peer).await.unwrap();

        let started = Instant::now();
        let mut silent = client.open(peer, PROTOCOL_DEAL_1_2_1).await;
        silent.flush().await.unwrap();
        // A stream whose first byte came in time is not cut at the first-byte deadline.
        let mut slow = client.open(peer, PROTOCOL_STATUS).await;
        slow.write_all(&ITEM[..1]).await.unwrap();
        slow.flush().await.unwrap();

        let mut out = Vec::new();
        let _ = within(Duration::from_secs(10), silent.read_to_end(&mut out)).await;
        let waited = started.elapsed();
        assert!(out.is_empty(), "no reply expected, got {out:?}");
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(10),
            "closed after {waited:?}, not at the 300 ms first-byte deadline"
        );
        Timer::after(Duration::from_millis(500)).await;
        slow.write_all(&ITEM[1..]).await.unwrap();
        slow.flush().await.unwrap();
        let mut out = Vec::new();
        within(Duration::from_secs(10), slow.read_to_end(&mut out))
            .await
            .unwrap();
        assert_eq!(out, ok_reply(&ITEM));
        assert_eq!(host.stats().read_timeouts, 1);
        host.shutdown(Duration::from_secs(1)).await;
    });
}

// ---------------------------------------------------------------- buffer budget

/// A 100 KiB CBOR byte string.
fn item_100k() -> Vec<u8> {
    let mut item = vec![0x5a];
    item.extend_from_slice(&(100u32 << 10).to_be_bytes());
    item.resize(5 + (100 << 10), 7);
    item
}

/// Open a proposal stream and send all of `item` but its last byte: the node holds it.
async fn hold_partial(c: &mut Client, peer: PeerId, item: &[u8]) -> libp2p::Stream {
    let mut s = c.open(peer, PROTOCOL_DEAL_1_2_1).await;
    // A refused stream is closed under the writer: ignore its write errors.
    let _ = s.write_all(&item[..item.len() - 1]).await;
    let _ = s.flush().await;
    s
}

/// Send `item`'s last byte on a held stream and read the answer.
async fn finish(mut s: libp2p::Stream, item: &[u8]) -> Vec<u8> {
    s.write_all(&item[item.len() - 1..]).await.unwrap();
    s.flush().await.unwrap();
    let mut out = Vec::new();
    within(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap();
    out
}

/// The stream was closed without a reply, and this was the only limit hit.
async fn assert_refused_by(mut s: libp2p::Stream, service: &EchoService, limit: &str) {
    let mut out = Vec::new();
    let _ = within(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "no reply expected, got {} bytes", out.len());
    assert_eq!(*service.limits_hit.lock().unwrap(), vec![Some(limit)]);
}

/// A host with this budget and two clients (distinct peers, both on 127.0.0.1).
async fn budget_host(config: HostConfig) -> (Arc<EchoService>, HostHandle, PeerId, Client, Client) {
    let service = Arc::new(EchoService::default());
    let (host, tcp, _) = start(config, service.clone()).await;
    let peer = host.peer_id();
    let mut a = Client::new(Security::TlsAndNoise);
    a.connect(&tcp, peer).await.unwrap();
    let mut b = Client::new(Security::TlsAndNoise);
    b.connect(&tcp, peer).await.unwrap();
    (service, host, peer, a, b)
}

#[test]
fn buffer_budget_closes_a_stream_that_would_go_over_it() {
    run(Duration::from_secs(30), async {
        // Room for one partly read 100 KiB item, not for two.
        let (service, host, peer, mut a, _) = budget_host(HostConfig {
            max_buffered_total: 150 << 10,
            ..loopback_config()
        })
        .await;
        let item = item_100k();
        let first = hold_partial(&mut a, peer, &item).await;
        Timer::after(Duration::from_millis(300)).await;
        // The same again on a second stream does not fit.
        let second = hold_partial(&mut a, peer, &item).await;
        assert_refused_by(second, &service, "buffered_bytes_total").await;
        // The first completes and is answered; small requests are served all along.
        assert_eq!(finish(first, &item).await, ok_reply(&item));
        let reply = a.request(peer, PROTOCOL_STATUS, &ITEM).await.unwrap();
        assert_eq!(reply, ok_reply(&ITEM));
        assert_eq!(host.stats().streams_refused, 1);
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn one_peer_cannot_take_the_whole_buffer_budget() {
    run(Duration::from_secs(30), async {
        // Room in all for several partly read 100 KiB items, for one peer for one.
        let (service, host, peer, mut greedy, mut other) = budget_host(HostConfig {
            max_buffered_total: 1 << 20,
            max_buffered_per_peer: 150 << 10,
            ..loopback_config()
        })
        .await;
        let item = item_100k();
        let first = hold_partial(&mut greedy, peer, &item).await;
        Timer::after(Duration::from_millis(300)).await;
        // The greedy peer's second large request does not fit in its share…
        let second = hold_partial(&mut greedy, peer, &item).await;
        assert_refused_by(second, &service, "buffered_bytes_per_peer").await;
        // …while another peer's, of the same size and at the same time, is answered.
        let reply = other
            .request(peer, PROTOCOL_DEAL_1_2_1, &item)
            .await
            .unwrap();
        assert_eq!(reply, ok_reply(&item));
        assert_eq!(finish(first, &item).await, ok_reply(&item));
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn one_address_cannot_take_the_whole_buffer_budget_with_many_identities() {
    run(Duration::from_secs(30), async {
        // Two peer identities from 127.0.0.1, each well inside its own per-peer share.
        let (service, host, peer, mut a, mut b) = budget_host(HostConfig {
            max_buffered_total: 1 << 20,
            max_buffered_per_ip: 150 << 10,
            limits: Limits {
                per_ip_exempt_loopback: false,
                ..Limits::default()
            },
            ..loopback_config()
        })
        .await;
        let item = item_100k();
        let first = hold_partial(&mut a, peer, &item).await;
        Timer::after(Duration::from_millis(300)).await;
        let second = hold_partial(&mut b, peer, &item).await;
        assert_refused_by(second, &service, "buffered_bytes_per_ip").await;
        // The first completes; afterwards the address has its share back.
        assert_eq!(finish(first, &item).await, ok_reply(&item));
        let reply = b.request(peer, PROTOCOL_DEAL_1_2_1, &item).await.unwrap();
        assert_eq!(reply, ok_reply(&item));
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn per_peer_stream_limit_refuses_the_excess() {
    run(Duration::from_secs(30), async {
        let config = HostConfig {
            limits: Limits {
                max_streams_per_peer: 2,
                ..Limits::default()
            },
            ..loopback_config()
        };
        let service = Arc::new(EchoService::default());
        let (release, gate) = oneshot::channel::<()>();
        let _ = service.gate.set(gate.shared());
        let (host, tcp, _) = start(config, service.clone()).await;
        let peer = host.peer_id();
        let mut client = Client::new(Security::TlsAndNoise);
        client.connect(&tcp, peer).await.unwrap();

        // Two streams held inside the service.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = client.open(peer, PROTOCOL_STATUS).await;
            s.write_all(&ITEM).await.unwrap();
            s.flush().await.unwrap();
            held.push(s);
        }
        within(Duration::from_secs(5), async {
            while service.calls.load(Ordering::SeqCst) < 2 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(host.active_streams(), 2);

        // The third is refused at once, without reaching the service.
        let third = within(
            Duration::from_secs(5),
            client.request(peer, PROTOCOL_DEAL_1_2_1, &ITEM),
        )
        .await;
        // Err = reset: also refused.
        if let Ok(out) = third {
            assert!(out.is_empty(), "refused stream answered {out:?}");
        }
        assert_eq!(host.stats().streams_refused, 1);
        assert_eq!(service.calls.load(Ordering::SeqCst), 2);

        // Release the held ones: both answer, and the slots are free again.
        release.send(()).unwrap();
        for mut s in held {
            let mut out = Vec::new();
            within(Duration::from_secs(5), s.read_to_end(&mut out))
                .await
                .unwrap();
            assert_eq!(out, ok_reply(&ITEM));
        }
        let reply = client
            .request(peer, PROTOCOL_DEAL_1_2_1, &ITEM)
            .await
            .unwrap();
        assert_eq!(reply, ok_reply(&ITEM));
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn per_ip_stream_limit_counts_every_peer_of_the_address() {
    run(Duration::from_secs(30), async {
        let config = HostConfig {
            limits: Limits {
                max_streams_per_ip: 2,
                per_ip_exempt_loopback: false,
                ..Limits::default()
            },
            ..loopback_config()
        };
        let service = Arc::new(EchoService::default());
        let (release, gate) = oneshot::channel::<()>();
        let _ = service.gate.set(gate.shared());
        let (host, tcp, _) = start(config, service.clone()).await;
        let peer = host.peer_id();
        // Two peer identities on 127.0.0.1, one stream each held inside the service.
        let mut a = Client::new(Security::TlsAndNoise);
        a.connect(&tcp, peer).await.unwrap();
        let mut b = Client::new(Security::TlsAndNoise);
        b.connect(&tcp, peer).await.unwrap();
        let mut held = Vec::new();
        for c in [&mut a, &mut b] {
            let mut s = c.open(peer, PROTOCOL_STATUS).await;
            s.write_all(&ITEM).await.unwrap();
            s.flush().await.unwrap();
            held.push(s);
        }
        within(Duration::from_secs(5), async {
            while service.calls.load(Ordering::SeqCst) < 2 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;

        // A third peer from the same address is refused, though it has no stream yet.
        let mut c = Client::new(Security::TlsAndNoise);
        c.connect(&tcp, peer).await.unwrap();
        let third = within(
            Duration::from_secs(5),
            c.request(peer, PROTOCOL_DEAL_1_2_1, &ITEM),
        )
        .await;
        if let Ok(out) = third {
            assert!(out.is_empty(), "refused stream answered {out:?}");
        }
        assert_eq!(host.stats().streams_refused, 1);
        assert_eq!(service.calls.load(Ordering::SeqCst), 2);

        // Released, the address's slots are free again.
        release.send(()).unwrap();
        for mut s in held {
            let mut out = Vec::new();
            within(Duration::from_secs(5), s.read_to_end(&mut out))
                .await
                .unwrap();
            assert_eq!(out, ok_reply(&ITEM));
        }
        let reply = c.request(peer, PROTOCOL_DEAL_1_2_1, &ITEM).await.unwrap();
        assert_eq!(reply, ok_reply(&ITEM));
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn shutdown_lets_streams_in_flight_finish_then_stops_listening() {
    run(Duration::from_secs(30), async {
        let service = Arc::new(EchoService {
            ask_delay: Some(Duration::from_millis(300)),
            ..EchoService::default()
        });
        let (host, tcp, _) = start(loopback_config(), service.clone()).await;
        let peer = host.peer_id();
        let mut client = Client::new(Security::TlsAndNoise);
        client.connect(&tcp, peer).await.unwrap();

        let mut slow = client.open(peer, PROTOCOL_ASK).await;
        slow.write_all(&ITEM).await.unwrap();
        slow.flush().await.unwrap();
        within(Duration::from_secs(5), async {
            while host.active_streams() < 1 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(host.active_connections(), 1);

        let started = Instant::now();
        let read = async {
            let mut out = Vec::new();
            slow.read_to_end(&mut out).await.map(|_| out)
        };
        let (out, ()) = future::join(read, host.shutdown(Duration::from_secs(5))).await;
        assert_eq!(out.expect("answer before shutdown"), ok_reply(&ITEM));
        assert!(started.elapsed() < Duration::from_secs(3));

        let mut late = Client::new(Security::TlsAndNoise);
        assert!(
            late.connect(&tcp, peer).await.is_err(),
            "listener still open after shutdown"
        );
    });
}

#[test]
fn connection_limit_per_ip_denies_the_excess() {
    run(Duration::from_secs(30), async {
        let config = HostConfig {
            limits: Limits {
                max_connections_per_ip: 1,
                per_ip_exempt_loopback: false,
                ..Limits::default()
            },
            ..loopback_config()
        };
        let (host, tcp, ws) = start(config, Arc::default()).await;
        let peer = host.peer_id();
        let mut first = Client::new(Security::TlsAndNoise);
        first.connect(&tcp, peer).await.expect("first connection");
        let mut second = Client::new(Security::TlsAndNoise);
        assert!(
            second.connect(&ws, peer).await.is_err(),
            "second connection from 127.0.0.1"
        );
        assert_eq!(host.stats().connections_denied, 1);
        // The host counts the connection in its swarm task, a moment after the client's
        // handshake completes: wait (bounded) for the gauge to settle.
        within(Duration::from_secs(5), async {
            while host.active_connections() != 1 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        // The first connection still works.
        let reply = first
            .request(peer, PROTOCOL_DEAL_1_2_1, &ITEM)
            .await
            .unwrap();
        assert_eq!(reply, ok_reply(&ITEM));
        host.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_bad_listen_address_fails_start() {
    let config = HostConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        ..loopback_config()
    };
    let err = Host::start(
        runtime(),
        Keypair::generate_ed25519(),
        config,
        Arc::new(EchoService::default()),
    )
    .expect_err("quic is not served");
    assert!(err.to_string().contains("quic"), "{err}");
}
