//! MK12 over plain HTTP against the real HTTP server, service and sled store: the same
//! answers as over libp2p, and every refusal with its documented status code.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
};

use dealport_core::wire::{Cbor, DealResponse, DealStatusResponse};
use dealport_node::{
    front_door::{FrontDoor, Role, RunningHost},
    http::{self, HttpConfig},
    metrics::Metrics,
    mk12_http::Mk12Http,
    service::DealService,
};

use dealport_testkit::node::{a4_config, golden, runtime, service_on_sled, ServiceOnSled};

struct Node {
    door: Arc<FrontDoor>,
    addr: SocketAddr,
    service: DealService,
    metrics: Arc<Metrics>,
    _http: http::HttpHandle,
    _dir: tempfile::TempDir,
}

fn start(per_second: u32) -> Node {
    start_with(per_second, HttpConfig::default())
}

fn start_with(per_second: u32, http_config: HttpConfig) -> Node {
    let config = a4_config();
    let ServiceOnSled {
        store,
        service,
        metrics,
        dir,
    } = service_on_sled(&config);
    let peer = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let door = FrontDoor::new(
        peer,
        store,
        metrics.clone(),
        Mk12Http::new(service.clone(), per_second),
    );
    // This node runs the host (its WebSocket listener is not dialled by these tests).
    door.set_role(Role {
        generation: 1,
        host: Some(RunningHost {
            relay: Some("127.0.0.1:9".parse().unwrap()),
        }),
    });
    let door = Arc::new(door);
    let http_config = HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..http_config
    };
    let handle = futures::executor::block_on(http::start(
        runtime(),
        http_config,
        door.clone(),
        metrics.clone(),
    ))
    .unwrap();
    Node {
        door,
        addr: handle.local_addr(),
        service,
        metrics,
        _http: handle,
        _dir: dir,
    }
}

/// One request on a fresh connection: `(status code, body)`.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, out[split + 4..].to_vec())
}

const CBOR: &str = "application/cbor";

#[test]
fn store_status_and_ask_give_the_libp2p_answers() {
    let n = start(50);
    // The golden proposal: accepted, exactly R1.
    let (code, body) = request(n.addr, "POST", "/market/mk12/store", CBOR, &golden("A4"));
    assert_eq!(code, 200);
    assert_eq!(body, golden("R1"));
    // The same request again: accepted again (the client may have lost our answer).
    assert_eq!(
        request(n.addr, "POST", "/market/mk12/store", CBOR, &golden("A4")).1,
        golden("R1")
    );
    // Status by the client (S1) and by someone else (S2): the same bytes the libp2p
    // handler produces for the same store state.
    for s in ["S1", "S2"] {
        let (code, body) = request(n.addr, "GET", "/market/mk12/status", CBOR, &golden(s));
        assert_eq!(code, 200);
        let libp2p = futures::executor::block_on(n.service.status(&golden(s))).unwrap();
        assert_eq!(body, libp2p.to_cbor(), "{s}");
    }
    let s1 = DealStatusResponse::from_cbor(
        &request(n.addr, "GET", "/market/mk12/status", CBOR, &golden("S1")).1,
    )
    .unwrap();
    assert_eq!(s1.deal_status.unwrap().status, "Accepted");
    assert_eq!(s1.transfer_size, 30_000_000_000);
    let s2 = DealStatusResponse::from_cbor(
        &request(n.addr, "GET", "/market/mk12/status", CBOR, &golden("S2")).1,
    )
    .unwrap();
    assert_eq!(s2.error, "signature verification failed");
    // The ask: offline mode has no worker key to sign one, which Curio answers with 500.
    let ask = hex::decode("a1654d696e65724300e807").unwrap(); // {Miner: f01000}
    let (code, body) = request(n.addr, "GET", "/market/mk12/ask", CBOR, &ask);
    assert_eq!(code, 500, "{}", String::from_utf8_lossy(&body));
    // Counted next to the libp2p twins.
    assert_eq!(
        n.metrics.proposals_count("/market/mk12/store", "accepted"),
        1
    );
    assert_eq!(
        n.metrics
            .proposals_count("/market/mk12/store", "accepted_again"),
        1
    );
}

#[test]
fn a_rejection_is_a_dealresponse_not_an_http_error() {
    let n = start(50);
    let mut a4 = golden("A4");
    let last_sig_byte = a4.len() - 21; // inside the signature, before RemoveUnsealedCopy
    a4[last_sig_byte] ^= 1;
    let (code, body) = request(n.addr, "POST", "/market/mk12/store", CBOR, &a4);
    assert_eq!(code, 200);
    let r = DealResponse::from_cbor(&body).unwrap();
    assert_eq!(
        r,
        DealResponse::rejected("failed validation: server error: validating signature")
    );
}

#[test]
fn refusals_have_their_documented_status_codes() {
    let n = start(50);
    let a4 = golden("A4");
    // Wrong or missing content type: 400 with a plain reason.
    let (code, body) = request(
        n.addr,
        "POST",
        "/market/mk12/store",
        "application/json",
        &a4,
    );
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("application/cbor"));
    // Truncated CBOR: 400 naming what failed.
    let (code, body) = request(n.addr, "POST", "/market/mk12/store", CBOR, &a4[..100]);
    assert_eq!(code, 400);
    assert!(
        String::from_utf8_lossy(&body).starts_with("undecodable DealParams"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Over the body limits: 4 MiB for store (the server's), 1 MiB for status.
    let big = vec![0u8; (4 << 20) + 1];
    assert_eq!(
        request(n.addr, "POST", "/market/mk12/store", CBOR, &big).0,
        413
    );
    let mid = vec![0u8; (1 << 20) + 1];
    assert_eq!(
        request(n.addr, "GET", "/market/mk12/status", CBOR, &mid).0,
        413
    );
    // Wrong method.
    assert_eq!(
        request(n.addr, "GET", "/market/mk12/store", CBOR, &a4).0,
        405
    );
    // Nothing was stored by any of this.
    assert_eq!(
        n.metrics.proposals_count("/market/mk12/store", "accepted"),
        0
    );
}

/// Bodies being read count against one total: a request that would take it over is
/// answered 503 at once (with Retry-After), and the bytes come back with the answer.
#[test]
fn request_bodies_share_a_bounded_total() {
    let n = start_with(
        50,
        HttpConfig {
            max_body_total: 1 << 20,
            ..HttpConfig::default()
        },
    );
    let mut slow = TcpStream::connect(n.addr).unwrap();
    write!(
        slow,
        "POST /market/mk12/store HTTP/1.1\r\nHost: x\r\nContent-Type: {CBOR}\r\nContent-Length: 900000\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&vec![0u8; 800_000]).unwrap();
    // Time for the server to read them (it needs ~550 KB of them for what follows).
    std::thread::sleep(std::time::Duration::from_secs(1));

    let mut s = TcpStream::connect(n.addr).unwrap();
    write!(
        s,
        "POST /market/mk12/store HTTP/1.1\r\nHost: x\r\nContent-Type: {CBOR}\r\nContent-Length: 500000\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // The answer may come before all of the body is taken: ignore a reset write.
    let _ = s.write_all(&vec![0u8; 500_000]);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(
        answer.contains("too many request bodies in flight"),
        "{answer}"
    );

    // The first body completes and is answered (not CBOR: 400); its bytes come back.
    slow.write_all(&vec![0u8; 100_000]).unwrap();
    let mut out = Vec::new();
    slow.read_to_end(&mut out).unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let (code, _) = request(n.addr, "POST", "/market/mk12/store", CBOR, &[0u8; 500_000]);
    assert_eq!(code, 400);
}

#[test]
fn the_per_ip_rate_limit_answers_429() {
    let n = start(5);
    let s3_request = golden("S1");
    let codes: Vec<u16> = (0..12)
        .map(|_| request(n.addr, "GET", "/market/mk12/status", CBOR, &s3_request).0)
        .collect();
    assert!(codes[..5].iter().all(|&c| c == 200), "{codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
}

#[test]
fn a_standby_answers_503_with_a_reason() {
    let n = start(50);
    // The host stops here (another node holds the lease): the routes refuse, clearly.
    n.door.set_role(Role::default());
    for (method, path, body) in [
        ("POST", "/market/mk12/store", golden("A4")),
        ("GET", "/market/mk12/status", golden("S1")),
    ] {
        let (code, reason) = request(n.addr, method, path, CBOR, &body);
        assert_eq!(code, 503, "{path}");
        assert!(
            String::from_utf8_lossy(&reason).contains("standing by"),
            "{path}"
        );
    }
    assert_eq!(
        n.metrics.proposals_count("/market/mk12/store", "accepted"),
        0
    );
}
