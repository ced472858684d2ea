//! `dealport client`: its bytes against the golden vectors, then the client against a real
//! node in this process over TCP, WebSocket and MK12-HTTP.

use std::{sync::Arc, time::Duration};

use clap::Parser;
use dealport_client::{
    self as client,
    cli::{execute, ClientCommand},
    ClientError, DataTransfer, DealProtocol, DealSpec, Target, Wallet,
};
use dealport_core::wire::{Address, Cbor, Cid, DealUuid, TokenAmount};
use dealport_node::{
    front_door::{FrontDoor, Role, RunningHost},
    http::{self, HttpConfig},
    mk12_http::Mk12Http,
    p2p::{Host, HostConfig, HostHandle, Keypair, Multiaddr},
};
use libp2p::multiaddr::Protocol;

use dealport_testkit::node::{a4_config, golden, runtime, service_on_sled, ServiceOnSled};

/// `lotus wallet export` of the golden secp256k1 client (secret = sha256("mk12 example
/// secp256k1 client")).
const SECP_KEY: &str = "7b2254797065223a22736563703235366b31222c22507269766174654b6579223a22796a53616f35564348517534644b6132794953484f4b32357331772b424261674942723845396249786d633d227d";
/// `lotus wallet export` of the golden BLS client (scalar = sha256("mk12 example bls
/// client") mod r, stored little-endian).
const BLS_KEY: &str = "7b2254797065223a22626c73222c22507269766174654b6579223a224f312b475878566c4179326d304846747736664b775455626453786659376c6b6b44364b723336713755633d227d";
const UUID: &str = "8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70";

fn secp() -> Wallet {
    Wallet::from_lotus_export(SECP_KEY).unwrap()
}

fn bls() -> Wallet {
    Wallet::from_lotus_export(BLS_KEY).unwrap()
}

/// The deal of vectors A4/A5/B2.
fn a4_spec() -> DealSpec {
    DealSpec {
        uuid: DealUuid::parse(UUID).unwrap(),
        miner: Address::parse("f01000").unwrap(),
        piece_cid: Cid::parse("baga6ea4seaqd6rv4mrnqpi7kfqcpazxzhho7pytj3v3woh46dzq2hi3zpztfcjy")
            .unwrap(),
        piece_size: 32 << 30,
        payload_cid: Cid::parse("bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy")
            .unwrap(),
        transfer: DataTransfer::Http {
            url: "https://example.com/data.car".into(),
            headers: Vec::new(),
            car_size: 30_000_000_000,
        },
        start_epoch: 4_500_000,
        end_epoch: 5_018_400,
        price_per_epoch: TokenAmount::zero(),
        provider_collateral: TokenAmount::from_u64(8_589_934_592_000),
        client_collateral: TokenAmount::zero(),
        verified: true,
        label: None,
        skip_ipni_announce: false,
        remove_unsealed_copy: false,
    }
}

fn a4_params() -> dealport_core::wire::DealParams {
    client::build_deal(&a4_spec(), &secp())
}

// ------------------------------------------------------------ golden bytes

#[test]
fn key_files_give_the_golden_addresses() {
    assert_eq!(
        secp().address().to_string(),
        "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna"
    );
    assert_eq!(
        bls().address().to_string(),
        "f3rd27rdpzmhfttvv3fqrtqgal7vun4s3z4yoiyhlw4qodzv4ed3egfsh2yxtqcvwn2m6ih6dtpjfvcqrtzi2a"
    );
    // The bare JSON (not hex) is accepted too; other key types are refused in a sentence.
    let json = String::from_utf8(hex::decode(SECP_KEY).unwrap()).unwrap();
    assert_eq!(
        Wallet::from_lotus_export(&json).unwrap().address(),
        secp().address()
    );
    let bad = hex::encode(r#"{"Type":"delegated","PrivateKey":"AAAA"}"#);
    let e = Wallet::from_lotus_export(&bad).unwrap_err().to_string();
    assert!(e.contains("not supported"), "{e}");
}

#[test]
fn deal_params_equal_a4_a5_and_b2() {
    let p = a4_params();
    assert_eq!(DealProtocol::V121.encode(&p), golden("A4"), "A4");
    assert_eq!(DealProtocol::V120.encode(&p), golden("A5"), "A5");
    let b = client::build_deal(&a4_spec(), &bls());
    assert_eq!(DealProtocol::V121.encode(&b), golden("B2"), "B2");
}

#[test]
fn status_requests_equal_s1_and_s2() {
    let id = DealUuid::parse(UUID).unwrap();
    assert_eq!(client::status_request(id, &secp()).to_cbor(), golden("S1"));
    assert_eq!(client::status_request(id, &bls()).to_cbor(), golden("S2"));
}

/// The CLI's flags build the same bytes (`--dry-run` prints them).
#[test]
fn cli_flags_build_a4_and_a5() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("client.key");
    std::fs::write(&wallet, format!("{SECP_KEY}\n")).unwrap();
    for (protocol, vector) in [("1.2.1", "A4"), ("1.2.0", "A5")] {
        let cmd = client_command(&[
            "deal",
            "--provider",
            "/ip4/127.0.0.1/tcp/1",
            "--miner",
            "f01000",
            "--piece-cid",
            "baga6ea4seaqd6rv4mrnqpi7kfqcpazxzhho7pytj3v3woh46dzq2hi3zpztfcjy",
            "--piece-size",
            "32GiB",
            "--car-size",
            "30000000000",
            "--payload-cid",
            "bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy",
            "--url",
            "https://example.com/data.car",
            "--head-epoch",
            "4490000",
            "--start-offset",
            "10000",
            "--duration",
            "518400",
            "--provider-collateral",
            "8589934592000",
            "--verified",
            "--uuid",
            UUID,
            "--protocol",
            protocol,
            "--wallet",
            wallet.to_str().unwrap(),
            "--dry-run",
        ]);
        let out = futures::executor::block_on(execute(cmd));
        out.result.unwrap();
        assert_eq!(out.stdout.trim(), hex::encode(golden(vector)), "{vector}");
    }
}

#[test]
fn random_uuids_are_v4() {
    let a = client::random_uuid().unwrap();
    let b = client::random_uuid().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.0[6] >> 4, 4);
    assert_eq!(a.0[8] >> 6, 2);
}

// ------------------------------------------------------------ against a node

struct Node {
    host: Option<HostHandle>,
    tcp: Multiaddr,
    ws: Multiaddr,
    http_url: String,
    _http: http::HttpHandle,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(h) = self.host.take() {
            futures::executor::block_on(h.shutdown(Duration::ZERO));
        }
    }
}

fn start_node() -> Node {
    let config = a4_config();
    let ServiceOnSled {
        store,
        service,
        metrics,
        dir,
    } = service_on_sled(&config);
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let host = Host::start(
        runtime(),
        key,
        HostConfig {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
                "/ip4/127.0.0.1/tcp/0/ws".parse().unwrap(),
            ],
            ..HostConfig::default()
        },
        Arc::new(service.clone()),
    )
    .unwrap();
    let addrs = futures::executor::block_on(host.listen_addrs()).unwrap();
    let is_ws = |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::Ws(_)));
    let tcp = addrs.iter().find(|a| !is_ws(a)).unwrap().clone();
    let ws = addrs.iter().find(|a| is_ws(a)).unwrap().clone();
    let door = FrontDoor::new(peer, store, metrics.clone(), Mk12Http::new(service, 50));
    // This node runs the host (the MK12 routes refuse on a standby); no relay is dialled.
    door.set_role(Role {
        generation: 1,
        host: Some(RunningHost {
            relay: Some("127.0.0.1:9".parse().unwrap()),
        }),
    });
    let http = futures::executor::block_on(http::start(
        runtime(),
        HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..HttpConfig::default()
        },
        Arc::new(door),
        metrics,
    ))
    .unwrap();
    Node {
        host: Some(host),
        tcp: tcp.with(Protocol::P2p(peer)),
        ws: ws.with(Protocol::P2p(peer)),
        http_url: format!("http://{}", http.local_addr()),
        _http: http,
        _dir: dir,
    }
}

/// Bound a test body so a hang fails.
fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(async {
        let f = std::pin::pin!(f);
        match futures::future::select(f, async_io::Timer::after(Duration::from_secs(90))).await {
            futures::future::Either::Left((t, _)) => t,
            futures::future::Either::Right(_) => panic!("test did not finish within 90 s"),
        }
    })
}

/// Propose A4 (over `protocol`), then ask its status (S1) and the ask.
async fn deal_status_ask(target: &Target, protocol: DealProtocol) {
    let params = a4_params();
    let r = client::propose(target, &params, protocol).await.unwrap();
    assert!(r.accepted, "{target}: {}", r.message);
    // A resend of the identical proposal is accepted again.
    assert!(
        client::propose(target, &params, protocol)
            .await
            .unwrap()
            .accepted
    );
    let st = client::status(target, &client::status_request(params.deal_uuid, &secp()))
        .await
        .unwrap();
    assert_eq!(st.error, "");
    assert_eq!(st.deal_uuid, params.deal_uuid);
    assert_eq!(st.deal_status.unwrap().status, "Accepted");
    assert_eq!(st.transfer_size, 30_000_000_000);
    // Status signed by another key: refused with Boost's error.
    let other = client::status(target, &client::status_request(params.deal_uuid, &bls()))
        .await
        .unwrap();
    assert_eq!(other.error, "signature verification failed");
}

#[test]
fn deal_status_ask_info_over_tcp() {
    let node = start_node();
    let target = Target::Libp2p(node.tcp.clone());
    run(async {
        deal_status_ask(&target, DealProtocol::V121).await;
        // Offline mode has no worker key to sign an ask: `Ask: null` on libp2p.
        let ask = client::ask(&target, &Address::parse("f01000").unwrap())
            .await
            .unwrap();
        assert!(ask.ask.is_none());
        let info = client::info(&node.tcp).await.unwrap();
        assert!(info.agent_version.starts_with("dealport/"), "{info:?}");
        for p in [
            "/fil/storage/mk/1.2.0",
            "/fil/storage/mk/1.2.1",
            "/fil/storage/status/1.2.0",
            "/fil/storage/ask/1.1.0",
            "/fil/retrieval/transports/1.0.0",
        ] {
            assert!(info.protocols.iter().any(|x| x == p), "{p} in {info:?}");
        }
        assert!(!info.listen_addrs.is_empty());
        assert_eq!(
            info.peer_id,
            node.tcp
                .iter()
                .last()
                .map(|p| match p {
                    Protocol::P2p(id) => id.to_string(),
                    _ => String::new(),
                })
                .unwrap()
        );
    });
}

#[test]
fn deal_and_status_over_websocket_with_1_2_0() {
    let node = start_node();
    let target = Target::Libp2p(node.ws.clone());
    run(async {
        deal_status_ask(&target, DealProtocol::V120).await;
        let info = client::info(&node.ws).await.unwrap();
        assert!(info.protocols.iter().any(|p| p == "/fil/storage/mk/1.2.1"));
        // The same listeners by DNS name, as providers publish `/dns/<host>/tcp/…` addresses.
        for addr in [&node.ws, &node.tcp] {
            let by_name: Multiaddr = addr
                .iter()
                .map(|p| match p {
                    Protocol::Ip4(_) => Protocol::Dns4("localhost".into()),
                    p => p,
                })
                .collect();
            let info = client::info(&by_name).await.unwrap();
            assert_eq!(info.peer_id, client::info(addr).await.unwrap().peer_id);
        }
    });
}

#[test]
fn deal_status_ask_over_mk12_http() {
    let node = start_node();
    let target = Target::parse(&node.http_url).unwrap();
    run(async {
        deal_status_ask(&target, DealProtocol::V121).await;
        // Curio answers an ask it cannot give with HTTP 500.
        let e = client::ask(&target, &Address::parse("f01000").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Http { code: 500, .. }), "{e}");
    });
}

#[test]
fn rejection_and_unreachable_are_sentences() {
    let node = start_node();
    let target = Target::Libp2p(node.tcp.clone());
    run(async {
        let mut spec = a4_spec();
        spec.miner = Address::new_id(2000);
        let p = client::build_deal(&spec, &secp());
        let r = client::propose(&target, &p, DealProtocol::V121)
            .await
            .unwrap();
        assert!(!r.accepted);
        assert!(r.message.contains("incorrect provider"), "{}", r.message);

        // A port nobody listens on.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
            .parse()
            .unwrap();
        let e = client::info(&addr).await.unwrap_err().to_string();
        assert_eq!(e, format!("cannot reach {addr}: connection refused"));
    });
}

// ------------------------------------------------------------ the CLI entry

/// `dealport client <args…>` as the binary parses it.
#[derive(Debug, Parser)]
struct ClientCli {
    #[command(subcommand)]
    command: ClientCommand,
}

fn client_command(args: &[&str]) -> ClientCommand {
    let mut argv = vec!["dealport client"];
    argv.extend_from_slice(args);
    ClientCli::try_parse_from(argv).unwrap().command
}

#[test]
fn cli_deal_status_info_with_json() {
    let node = start_node();
    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("client.key");
    std::fs::write(&wallet, SECP_KEY).unwrap();
    let wallet = wallet.to_str().unwrap().to_string();
    let provider = node.tcp.to_string();
    let deal = |miner: &str| {
        client_command(&[
            "deal",
            "--provider",
            &provider,
            "--miner",
            miner,
            "--piece-cid",
            "baga6ea4seaqd6rv4mrnqpi7kfqcpazxzhho7pytj3v3woh46dzq2hi3zpztfcjy",
            "--piece-size",
            "34359738368",
            "--car-size",
            "30000000000",
            "--payload-cid",
            "bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy",
            "--url",
            "https://example.com/data.car",
            "--start-epoch",
            "4500000",
            "--provider-collateral",
            "8589934592000",
            "--verified",
            "--wallet",
            &wallet,
            "--json",
        ])
    };
    run(async {
        // A random UUID this time.
        let out = execute(deal("f01000")).await;
        out.result.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["accepted"], true, "{}", out.stdout);
        assert_eq!(v["protocol"], "/fil/storage/mk/1.2.1");
        let uuid = v["uuid"].as_str().unwrap().to_string();
        assert_ne!(uuid, UUID);

        let out = execute(client_command(&[
            "status",
            "--provider",
            &provider,
            "--uuid",
            &uuid,
            "--wallet",
            &wallet,
            "--json",
        ]))
        .await;
        out.result.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["deal_status"]["status"], "Accepted", "{}", out.stdout);

        let out = execute(client_command(&["info", "--provider", &provider, "--json"])).await;
        out.result.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let protocols = v["protocols"].as_array().unwrap();
        for p in [
            "/fil/storage/mk/1.2.0",
            "/fil/storage/mk/1.2.1",
            "/fil/storage/status/1.2.0",
            "/fil/storage/ask/1.1.0",
            "/fil/retrieval/transports/1.0.0",
        ] {
            assert!(protocols.iter().any(|x| x == p), "{p}: {}", out.stdout);
        }

        // Human output of status.
        let out = execute(client_command(&[
            "status",
            "--provider",
            &provider,
            "--uuid",
            &uuid,
            "--wallet",
            &wallet,
        ]))
        .await;
        out.result.unwrap();
        assert!(
            out.stdout.contains("status:         Accepted"),
            "{}",
            out.stdout
        );

        // A rejection: JSON on stdout, the sentence as the error.
        let out = execute(deal("f02000")).await;
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["accepted"], false);
        let e = out.result.unwrap_err().to_string();
        assert!(
            e.starts_with("provider rejected the deal: failed validation: incorrect provider"),
            "{e}"
        );
    });
}

/// A TLS terminator on 127.0.0.1 in front of `backend` (as nginx in front of a Curio
/// provider's `/dns/<host>/tcp/443/wss` address), with a self-signed certificate for
/// `localhost`. Returns its port and the certificate's PEM.
fn tls_terminator(backend: std::net::SocketAddr) -> (u16, String) {
    use futures::AsyncReadExt;
    use futures_rustls::rustls::{self, pki_types::PrivateKeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = futures_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let acceptor = acceptor.clone();
            std::thread::spawn(move || {
                async_io::block_on(async move {
                    let conn = async_io::Async::new(conn).unwrap();
                    let Ok(tls) = acceptor.accept(conn).await else {
                        return;
                    };
                    let Ok(up) = async_net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let (tls_r, mut tls_w) = tls.split();
                    let (up_r, mut up_w) = up.split();
                    let _ = futures::future::select(
                        Box::pin(futures::io::copy(tls_r, &mut up_w)),
                        Box::pin(futures::io::copy(up_r, &mut tls_w)),
                    )
                    .await;
                });
            });
        }
    });
    (port, cert.cert.pem())
}

/// `/dns/localhost/tcp/<port>/wss/p2p/<id>` through a TLS terminator whose self-signed
/// certificate the client trusts through `DEALPORT_CA_FILE`.
#[test]
fn deal_and_status_over_tls_websocket() {
    let node = start_node();
    let ws_port = node
        .ws
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let peer = node.ws.iter().last().unwrap();
    let (port, pem) = tls_terminator(([127, 0, 0, 1], ws_port).into());
    let wss: Multiaddr = format!("/dns/localhost/tcp/{port}/wss")
        .parse::<Multiaddr>()
        .unwrap()
        .with(peer);
    // Without the CA the certificate is refused: the dial really goes through TLS.
    assert!(run(client::info(&wss)).is_err());
    // The variable is process-wide and other tests build transports meanwhile: the file
    // must outlive this test (it only adds a trust anchor for them).
    let ca = std::env::temp_dir().join(format!("dealport-test-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, pem).unwrap();
    std::env::set_var(client::transport::CA_FILE_ENV, &ca);
    run(async {
        deal_status_ask(&Target::Libp2p(wss.clone()), DealProtocol::V121).await;
        let info = client::info(&wss).await.unwrap();
        assert!(info.agent_version.starts_with("dealport/"), "{info:?}");
    });
}
