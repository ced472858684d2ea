//! Black-box: the real `dealport` binary, `init` + `run`, a rust-libp2p client sending the
//! golden proposal A4, SIGKILL right after `Accepted`, restart, same PeerID, deal kept.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{mpsc as std_mpsc, Arc, OnceLock},
    time::{Duration, Instant},
};

use async_io::Timer;
use dealport_core::wire::{AskResponse, Cbor, DealStatusResponse, TransportsResponse};
use dealport_node::{
    p2p::{
        transport::{build_transport, Security, TransportConfig},
        Keypair, Multiaddr, PeerId, StreamProtocol, PROTOCOL_ASK, PROTOCOL_DEAL_1_2_1,
        PROTOCOL_STATUS, PROTOCOL_TRANSPORTS,
    },
    runtime::{BoxTask, Runtime, SwarmExecutor},
};
use futures::{
    channel::mpsc,
    future::{self, Either},
    AsyncReadExt, AsyncWriteExt, StreamExt,
};
use libp2p::{
    core::{multiaddr::Protocol, upgrade::Version},
    swarm::{self, SwarmEvent},
    Swarm,
};

const BIN: &str = env!("CARGO_BIN_EXE_dealport");
const UUID: &str = "8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70";
const R1: &str = "a2674d65737361676560684163636570746564f5";

fn golden(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/data/mk12-golden.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    hex::decode(v["vectors"][name]["hex"].as_str().unwrap()).unwrap()
}

// ---------------------------------------------------------------- client runtime

struct TestRuntime(Arc<async_executor::Executor<'static>>);

impl Runtime for TestRuntime {
    fn spawn(&self, fut: BoxTask) {
        self.0.spawn(fut).detach();
    }
    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send>) {
        std::thread::spawn(f);
    }
}

fn runtime() -> Arc<dyn Runtime> {
    static EX: OnceLock<Arc<async_executor::Executor<'static>>> = OnceLock::new();
    let ex = EX.get_or_init(|| {
        let ex = Arc::new(async_executor::Executor::new());
        let e = ex.clone();
        std::thread::spawn(move || async_io::block_on(e.run(future::pending::<()>())));
        ex
    });
    Arc::new(TestRuntime(ex.clone()))
}

async fn within<F: std::future::Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match future::select(std::pin::pin!(f), Timer::after(limit)).await {
        Either::Left((out, _)) => out,
        Either::Right(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// A libp2p client: dial, then one stream per request (lazy negotiation, like go clients).
struct Client {
    control: libp2p_stream::Control,
    connected: mpsc::UnboundedReceiver<Result<PeerId, String>>,
    dial: mpsc::UnboundedSender<Multiaddr>,
}

impl Client {
    fn new() -> Client {
        let key = Keypair::generate_ed25519();
        let transport = build_transport(
            &key,
            &TransportConfig {
                security: Security::NoiseAndTls,
                version: Version::V1Lazy,
                ..TransportConfig::default()
            },
        )
        .unwrap();
        let behaviour = libp2p_stream::Behaviour::new();
        let rt = runtime();
        let config = swarm::Config::with_executor(SwarmExecutor(rt.clone()))
            .with_substream_upgrade_protocol_override(Version::V1Lazy)
            .with_idle_connection_timeout(Duration::from_secs(30));
        let mut swarm = Swarm::new(transport, behaviour, key.public().to_peer_id(), config);
        let control = swarm.behaviour().new_control();
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
                        _ => {}
                    },
                }
            }
        }));
        Client {
            control,
            connected,
            dial,
        }
    }

    async fn connect(&mut self, addr: &Multiaddr) -> PeerId {
        self.dial.unbounded_send(addr.clone()).unwrap();
        within(Duration::from_secs(10), "connect", self.connected.next())
            .await
            .expect("client running")
            .expect("connected")
    }

    async fn request(&mut self, peer: PeerId, protocol: StreamProtocol, request: &[u8]) -> Vec<u8> {
        within(Duration::from_secs(15), "request", async {
            let mut s = self
                .control
                .open_stream(peer, protocol)
                .await
                .expect("open");
            s.write_all(request).await.unwrap();
            s.flush().await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            out
        })
        .await
    }
}

// ---------------------------------------------------------------- the process

struct Node {
    child: Child,
    lines: std_mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let mut child = Command::new(BIN)
            .args(["run", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dealport run");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                eprintln!("[dealport] {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Node {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Wait for a log line containing `needle`; return it.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?} within {limit:?}; log: {:#?}",
                    self.log
                ),
            }
        }
    }

    /// The PeerID and the loopback TCP multiaddr (with /p2p/) from the start-up log.
    fn ready(&mut self) -> (String, Multiaddr) {
        self.wait_for("ready", Duration::from_secs(20));
        let peer = self
            .wait_for("PeerID ", Duration::from_secs(1))
            .split("PeerID ")
            .nth(1)
            .unwrap()
            .trim()
            .to_owned();
        let line = self
            .log
            .iter()
            .find(|l| l.contains("listening on /ip4/127.0.0.1/tcp/") && !l.contains("/ws"))
            .expect("a loopback tcp listen line")
            .clone();
        let addr: Multiaddr = line
            .split("listening on ")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(matches!(addr.iter().last(), Some(Protocol::P2p(p)) if p.to_string() == peer));
        (peer, addr)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dealport(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run dealport")
}

/// Facts under which the golden proposal A4 is accepted.
fn configure_for_a4(dir: &Path) {
    let path = dir.join("config.toml");
    let mut t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let v = |s: &str| -> toml::Value { s.parse::<toml::Table>().unwrap().remove("x").unwrap() };
    t["libp2p"]["listen"] = v(r#"x = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"]"#);
    t["http"]["listen"] = v(r#"x = "127.0.0.1:0""#);
    let offline = t["chain"]["offline"].as_table_mut().unwrap();
    // A4 starts at 4,500,000: head + 2880 (sealing buffer) must not pass it.
    offline.insert("head_epoch_override".into(), 4_490_000.into());
    offline.insert("provider_collateral_min".into(), "8589934592000".into());
    offline.insert(
        "clients".into(),
        v(r#"x = [{ address = "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna", escrow = "1000000000000000000", datacap = "34359738368" }]"#),
    );
    t.insert(
        "miners".into(),
        v(r#"x = [{ address = "f01000", ask = { price = "0", verified_price = "0", min_piece_size = 256, max_piece_size = 34359738368 } }]"#),
    );
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

#[test]
fn init_run_accept_a4_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = dealport(&["init"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init_peer = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(init_peer.starts_with("12D3KooW"), "{init_peer}");
    configure_for_a4(&dir);

    let a4 = golden("A4");
    let s1 = golden("S1");

    // First run: accept A4, check its status, then SIGKILL at once.
    let mut node = Node::start(&dir);
    let (peer, addr) = node.ready();
    assert_eq!(peer, init_peer);
    node.wait_for("OFFLINE chain mode", Duration::from_secs(1));
    async_io::block_on(async {
        let mut client = Client::new();
        let peer = client.connect(&addr).await;
        let reply = client.request(peer, PROTOCOL_DEAL_1_2_1, &a4).await;
        assert_eq!(hex::encode(&reply), R1, "A4 is accepted with exactly R1");
        let status = client.request(peer, PROTOCOL_STATUS, &s1).await;
        let status = DealStatusResponse::from_cbor(&status).expect("a DealStatusResponse");
        assert_eq!(status.error, "");
        assert_eq!(status.deal_status.expect("deal status").status, "Accepted");
    });
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    drop(node);

    // Restart: same PeerID, the deal is still there, a resend is accepted again.
    let mut node = Node::start(&dir);
    let (peer, addr) = node.ready();
    assert_eq!(peer, init_peer, "same PeerID after SIGKILL");

    // A second node on the same data dir refuses to start.
    let second = dealport(&["run"], &dir);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!(
            "data dir {} is in use by another dealport process",
            dir.display()
        )),
        "{err}"
    );

    async_io::block_on(async {
        let mut client = Client::new();
        let peer = client.connect(&addr).await;
        let status = client.request(peer, PROTOCOL_STATUS, &s1).await;
        let status = DealStatusResponse::from_cbor(&status).unwrap();
        assert_eq!(status.deal_status.expect("deal kept").status, "Accepted");
        let reply = client.request(peer, PROTOCOL_DEAL_1_2_1, &a4).await;
        assert_eq!(hex::encode(&reply), R1, "identical resend accepted again");

        let ask_req = dealport_core::wire::AskRequest {
            miner: dealport_core::wire::Address::new_id(1000),
        };
        let ask = client.request(peer, PROTOCOL_ASK, &ask_req.to_cbor()).await;
        assert_eq!(AskResponse::from_cbor(&ask).unwrap().ask, None);
        let tr = client.request(peer, PROTOCOL_TRANSPORTS, &[]).await;
        let tr = TransportsResponse::from_cbor(&tr).unwrap();
        assert_eq!(tr.protocols.len(), 1);
        assert_eq!(tr.protocols[0].name, "libp2p");
        let listed: Vec<Multiaddr> = tr.protocols[0]
            .addresses
            .iter()
            .map(|b| Multiaddr::try_from(b.clone()).unwrap())
            .collect();
        let plain: Multiaddr = addr
            .iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        assert!(listed.contains(&plain), "{listed:?} lacks {plain}");
    });

    // SIGTERM stops it cleanly.
    sigterm(&node.child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    node.wait_for("stopped", Duration::from_secs(2));
    drop(node);

    let show = dealport(&["deals", "show", UUID], &dir);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["uuid"], UUID);
    assert_eq!(v["checkpoint"], "Accepted");
    assert_eq!(v["params_hex"], hex::encode(&a4));
    assert_eq!(v["proposal"]["provider"], "f01000");

    let info = dealport(&["info", "--json"], &dir);
    assert!(info.status.success());
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["peer_id"], init_peer.as_str());
}

#[test]
fn bad_config_is_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(dealport(&["init"], &dir).status.success());
    let path = dir.join("config.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace(
        "max_label_bytes = 256",
        "max_label_bytes = 256\nmax_lable = 3",
    );
    std::fs::write(&path, text).unwrap();
    let out = dealport(&["run"], &dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("policy.max_lable"), "{err}");
    assert!(err.contains("line "), "{err}");
}
