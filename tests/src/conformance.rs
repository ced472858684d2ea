//! The black-box conformance suite: every scenario starts the binary it is given
//! (`dealport`, `dealport-async-std`, …) with `init` + `run` on its own temp data dir,
//! listening on 127.0.0.1 with random ports, and talks to it over the wire only: a
//! rust-libp2p client and the independent js-libp2p client (`tests/interop-js`).
//!
//! Each runtime shell instantiates it in one line:
//!
//! ```text
//! dealport_tests::conformance_suite!(env!("CARGO_BIN_EXE_dealport"));
//! ```

use std::time::{Duration, Instant};

use dealport_core::wire::{
    Address, AskRequest, AskResponse, Cbor, DealParams, DealResponse, DealStatusResponse, DealUuid,
    TransportsResponse,
};
use dealport_node::p2p::{
    PROTOCOL_ASK, PROTOCOL_DEAL_1_2_0, PROTOCOL_DEAL_1_2_1, PROTOCOL_STATUS, PROTOCOL_TRANSPORTS,
};
use serde_json::json;

use crate::harness::{
    config,
    golden::{golden, A4_TRANSFER_SIZE, A4_UUID},
    js,
    probe::{http, metric},
    process::{dealport, DataDir, Node, Ready},
    rust_client::Client,
};

/// One `#[test]` per scenario of [`crate::conformance`], each run against `$bin`.
#[macro_export]
macro_rules! conformance_suite {
    ($bin:expr) => {
        $crate::conformance_suite!(@scenarios $bin;
            rust_tcp_deal_status_ask_transports,
            rust_ws_deal_status_ask_transports,
            rust_sigkill_after_accepted_restart_keeps_deal_and_peer_id,
            rust_second_run_on_same_data_dir_is_refused,
            rust_data_dir_open_to_others_is_refused,
            rust_bad_config_key_is_one_sentence,
            rust_sigterm_exits_zero,
            js_tcp_interop,
            js_ws_interop,
            js_through_http_relay,
            client_cli_deal_and_status_through_the_relay,
            js_silent_stream_closed_after_read_deadline_while_others_answered,
        );
    };
    (@scenarios $bin:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                $crate::conformance::$scenario($bin);
            }
        )*
    };
}

/// The five protocols the node serves.
pub const PROTOCOLS: [&str; 5] = [
    "/fil/storage/mk/1.2.0",
    "/fil/storage/mk/1.2.1",
    "/fil/storage/status/1.2.0",
    "/fil/storage/ask/1.1.0",
    "/fil/retrieval/transports/1.0.0",
];

/// The rejection of a proposal whose client signature does not verify.
pub const BAD_SIGNATURE_MESSAGE: &str = "failed validation: server error: validating signature";
/// The status error for a request signed by someone other than the deal's client.
pub const NOT_THE_CLIENT_MESSAGE: &str = "signature verification failed";
/// The UUID of the bad-signature proposal (any UUID the node has not seen).
const BAD_SIGNATURE_UUID: &str = "3d6f0a52-9c1b-4e7a-8f25-61b0c4d7e9a3";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    async_io::block_on(f)
}

fn a4() -> DealParams {
    let bytes = golden("A4");
    let p = DealParams::from_cbor(&bytes).expect("A4 decodes");
    assert_eq!(p.to_cbor(), bytes, "A4 re-encodes to itself");
    p
}

/// A4 under a new UUID with one byte of its client signature flipped. The signature
/// covers only the DealProposal, so only the flip makes it fail.
fn a4_bad_signature() -> Vec<u8> {
    let mut p = a4();
    p.deal_uuid = DealUuid::parse(BAD_SIGNATURE_UUID).expect("uuid");
    p.client_deal_proposal.client_signature.data[5] ^= 0x01;
    p.to_cbor()
}

/// An ask request for the configured miner f01000.
fn ask_request() -> Vec<u8> {
    AskRequest {
        miner: Address::new_id(1000),
    }
    .to_cbor()
}

// ------------------------------------------------------------------ response checks

fn assert_r1(reply: &[u8], what: &str) {
    assert_eq!(
        hex::encode(reply),
        hex::encode(golden("R1")),
        "{what}: expected exactly R1 (accepted); got {:?}",
        DealResponse::from_cbor(reply)
    );
}

fn assert_rejected(reply: &[u8], message: &str) {
    let r = DealResponse::from_cbor(reply)
        .unwrap_or_else(|e| panic!("not a DealResponse ({e}): {}", hex::encode(reply)));
    assert!(!r.accepted, "{r:?}");
    assert_eq!(r.message, message);
    assert_eq!(reply, DealResponse::rejected(message).to_cbor());
}

/// S1's answer once A4 is accepted.
fn assert_a4_accepted_status(reply: &[u8]) {
    let s = DealStatusResponse::from_cbor(reply)
        .unwrap_or_else(|e| panic!("not a DealStatusResponse ({e}): {}", hex::encode(reply)));
    let a4 = a4();
    assert_eq!(s.error, "", "{s:?}");
    assert_eq!(s.deal_uuid, DealUuid::parse(A4_UUID).unwrap());
    assert_eq!(s.transfer_size, A4_TRANSFER_SIZE);
    assert_eq!(s.is_offline, a4.is_offline);
    let status = s.deal_status.expect("a DealStatus");
    assert_eq!(status.status, "Accepted");
    assert_eq!(status.error, "");
    assert_eq!(status.proposal, a4.client_deal_proposal.proposal);
}

fn assert_not_the_client(reply: &[u8]) {
    let s = DealStatusResponse::from_cbor(reply).expect("a DealStatusResponse");
    assert_eq!(s.error, NOT_THE_CLIENT_MESSAGE, "{s:?}");
    assert_eq!(s.deal_uuid, DealUuid::parse(A4_UUID).unwrap());
    assert!(s.deal_status.is_none(), "{s:?}");
}

/// A status request for a deal the node does not have: exactly S3.
fn assert_s3(reply: &[u8]) {
    assert_eq!(
        hex::encode(reply),
        hex::encode(golden("S3")),
        "expected exactly S3; got {:?}",
        DealStatusResponse::from_cbor(reply)
    );
}

/// Offline chain mode has no signed ask to give: the node answers `{"Ask": null}`.
fn assert_offline_ask_is_null(reply: &[u8]) {
    let r = AskResponse::from_cbor(reply)
        .unwrap_or_else(|e| panic!("not an AskResponse ({e}): {}", hex::encode(reply)));
    assert_eq!(r.ask, None, "offline mode answers Ask null");
    assert_eq!(reply, AskResponse { ask: None }.to_cbor());
}

/// With nothing in `[retrieval]` the node lists no retrieval transport: it serves no
/// retrieval over libp2p, and nothing over HTTP unless `serve_pieces` (exactly
/// `{"Protocols": []}`).
fn assert_no_transports(reply: &[u8]) {
    assert_eq!(
        hex::encode(reply),
        "a16950726f746f636f6c7380",
        "{:?}",
        TransportsResponse::from_cbor(reply)
    );
}

fn started(bin: &str, d: &DataDir) -> (Node, Ready) {
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    assert_eq!(ready.peer, d.peer, "run uses the PeerID init printed");
    (node, ready)
}

// ------------------------------------------------------------------ rust client

fn rust_deal_status_ask_transports(bin: &str, ws: bool) {
    let d = DataDir::for_a4(bin);
    let (mut node, ready) = started(bin, &d);
    node.wait_for("OFFLINE chain mode", Duration::from_secs(1));
    let addr = if ws { &ready.ws } else { &ready.tcp };
    block_on(async {
        let mut c = Client::new();
        let peer = c.connect(addr).await;
        assert_eq!(peer.to_string(), ready.peer);
        let reply = c.request(peer, PROTOCOL_DEAL_1_2_1, &golden("A4")).await;
        assert_r1(&reply, "A4 on mk/1.2.1");
        assert_a4_accepted_status(&c.request(peer, PROTOCOL_STATUS, &golden("S1")).await);
        assert_offline_ask_is_null(&c.request(peer, PROTOCOL_ASK, &ask_request()).await);
        let tr = c.request(peer, PROTOCOL_TRANSPORTS, &[]).await;
        assert_no_transports(&tr);
        // /metrics counts the connection still open (read when scraped).
        let (code, text) = http(ready.http, "GET", "/metrics").expect("GET /metrics answered");
        assert_eq!(code, 200, "{text}");
        assert_eq!(metric(&text, "dealport_libp2p_connections"), 1.0, "{text}");
    });
}

/// Rust client over TCP: A4 -> R1, S1 -> Accepted (TransferSize 30e9), ask, transports.
pub fn rust_tcp_deal_status_ask_transports(bin: &str) {
    rust_deal_status_ask_transports(bin, false);
}

/// The same over WebSocket.
pub fn rust_ws_deal_status_ask_transports(bin: &str) {
    rust_deal_status_ask_transports(bin, true);
}

/// SIGKILL right after `Accepted`; the restart keeps the PeerID and the deal, and an
/// identical resend of A4 is accepted again.
pub fn rust_sigkill_after_accepted_restart_keeps_deal_and_peer_id(bin: &str) {
    let d = DataDir::for_a4(bin);
    let a4 = golden("A4");
    let s1 = golden("S1");

    let (mut node, ready) = started(bin, &d);
    block_on(async {
        let mut c = Client::new();
        let peer = c.connect(&ready.tcp).await;
        assert_r1(&c.request(peer, PROTOCOL_DEAL_1_2_1, &a4).await, "A4");
        assert_a4_accepted_status(&c.request(peer, PROTOCOL_STATUS, &s1).await);
    });
    node.child.kill().expect("SIGKILL");
    node.child.wait().expect("wait");
    drop(node);

    let (node, ready) = started(bin, &d);
    block_on(async {
        let mut c = Client::new();
        let peer = c.connect(&ready.tcp).await;
        assert_a4_accepted_status(&c.request(peer, PROTOCOL_STATUS, &s1).await);
        assert_r1(
            &c.request(peer, PROTOCOL_DEAL_1_2_1, &a4).await,
            "identical resend after restart",
        );
    });
    drop(node);

    let show = dealport(bin, &["deals", "show", A4_UUID], &d.path);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("deals show JSON");
    assert_eq!(v["uuid"], A4_UUID);
    assert_eq!(v["checkpoint"], "Accepted");
    assert_eq!(v["params_hex"], hex::encode(&a4));
    assert_eq!(v["proposal"]["provider"], "f01000");

    let info = dealport(bin, &["info", "--json"], &d.path);
    assert!(info.status.success());
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info JSON");
    assert_eq!(v["peer_id"], d.peer.as_str());
}

/// A second `run` on a data dir in use says so in one sentence and exits non-zero.
pub fn rust_second_run_on_same_data_dir_is_refused(bin: &str) {
    let d = DataDir::init(bin);
    let (_node, _ready) = started(bin, &d);
    let second = dealport(bin, &["run"], &d.path);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    let sentence = format!(
        "data dir {} is in use by another dealport process",
        d.path.display()
    );
    assert!(err.contains(&sentence), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one sentence: {err}");
}

/// A data dir other users can read (it holds the identity key) is refused with one
/// sentence saying how to fix it; after `chmod 700` the node starts.
pub fn rust_data_dir_open_to_others_is_refused(bin: &str) {
    use std::os::unix::fs::PermissionsExt;
    let d = DataDir::init(bin);
    let mode = std::fs::metadata(&d.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "init creates an owner-only data dir");
    std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dealport(bin, &["run"], &d.path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is open to other users (mode 755)"), "{err}");
    assert!(
        err.contains(&format!("chmod 700 {}", d.path.display())),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one sentence: {err}");
    std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (_node, _ready) = started(bin, &d);
}

/// An unknown config key: one sentence naming the file, the line and the key.
pub fn rust_bad_config_key_is_one_sentence(bin: &str) {
    let d = DataDir::init(bin);
    let path = d.config_path();
    let text = std::fs::read_to_string(&path).expect("config");
    let text = text.replace(
        "max_label_bytes = 256",
        "max_label_bytes = 256\nmax_lable = 3",
    );
    assert!(
        text.contains("max_lable"),
        "the template has max_label_bytes"
    );
    std::fs::write(&path, text).expect("write config");
    let out = dealport(bin, &["run"], &d.path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("policy.max_lable"), "{err}");
    assert!(err.contains("line "), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one sentence: {err}");
}

/// SIGTERM with a client connected: exit status 0 and a `stopped` log line.
pub fn rust_sigterm_exits_zero(bin: &str) {
    let d = DataDir::for_a4(bin);
    let (mut node, ready) = started(bin, &d);
    block_on(async {
        let mut c = Client::new();
        let peer = c.connect(&ready.tcp).await;
        assert_offline_ask_is_null(&c.request(peer, PROTOCOL_ASK, &ask_request()).await);
        node.signal("TERM");
        let status = node.wait_exit(Duration::from_secs(15));
        assert!(status.success(), "exit status after SIGTERM: {status}");
    });
    node.wait_for("stopped", Duration::from_secs(2));
}

// ------------------------------------------------------------------ js-libp2p client

/// How the js client reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Ws,
    /// The HTTP server's WebSocket relay on `/`, as Curio clients reach a provider.
    Relay,
}

fn js_interop(bin: &str, via: Via) {
    js::require_installed();
    let d = DataDir::for_a4(bin);
    let (_node, ready) = started(bin, &d);
    let relay = ready.relay();
    let addr = match via {
        Via::Tcp => &ready.tcp,
        Via::Ws => &ready.ws,
        Via::Relay => &relay,
    };
    let s1 = golden("S1");
    let job = json!({
        "addr": addr.to_string(),
        "identify": true,
        "timeoutMs": 20000,
        "requests": [
            js::request(PROTOCOL_STATUS.as_ref(), Some(&s1)),
            js::request(PROTOCOL_DEAL_1_2_1.as_ref(), Some(&golden("A4"))),
            js::request(PROTOCOL_DEAL_1_2_0.as_ref(), Some(&golden("A5"))),
            js::request(PROTOCOL_DEAL_1_2_1.as_ref(), Some(&a4_bad_signature())),
            js::request(PROTOCOL_DEAL_1_2_1.as_ref(), Some(&golden("A4"))),
            js::request(PROTOCOL_STATUS.as_ref(), Some(&s1)),
            js::request(PROTOCOL_STATUS.as_ref(), Some(&golden("S2"))),
            js::request(PROTOCOL_ASK.as_ref(), Some(&ask_request())),
            js::request(PROTOCOL_TRANSPORTS.as_ref(), None),
        ],
    });
    let r = js::run(&job);
    assert_eq!(r.0["peer"], ready.peer.as_str());
    assert!(
        r.0["identifyError"].is_null(),
        "identify failed: {}",
        r.0["identifyError"]
    );
    let agent = r.0["agent"].as_str().unwrap_or_default();
    assert!(agent.starts_with("dealport/"), "agent {agent:?}");
    let protocols = r.strings("protocols");
    for p in PROTOCOLS {
        assert!(
            protocols.iter().any(|q| q == p),
            "identify lacks {p}: {protocols:?}"
        );
    }
    assert_eq!(
        r.0["responses"].as_array().map(Vec::len),
        Some(9),
        "{}",
        r.0
    );

    assert_s3(&r.bytes(0));
    assert_r1(&r.bytes(1), "A4 on mk/1.2.1");
    assert_r1(&r.bytes(2), "A5 (v1.2.0 form) on mk/1.2.0");
    assert_rejected(&r.bytes(3), BAD_SIGNATURE_MESSAGE);
    assert_r1(&r.bytes(4), "A4 again");
    assert_a4_accepted_status(&r.bytes(5));
    assert_not_the_client(&r.bytes(6));
    assert_offline_ask_is_null(&r.bytes(7));
    assert_no_transports(&r.bytes(8));
}

/// js-libp2p over TCP: identify, S1 on a fresh node -> S3, A4 -> R1, A5 on mk/1.2.0 ->
/// R1, bad signature -> the exact rejection, A4 again -> R1, S1 -> Accepted, S2 ->
/// `signature verification failed`, ask, transports.
pub fn js_tcp_interop(bin: &str) {
    js_interop(bin, Via::Tcp);
}

/// The same over WebSocket, on its own node.
pub fn js_ws_interop(bin: &str) {
    js_interop(bin, Via::Ws);
}

/// The same through the HTTP server's WebSocket relay (`GET /` upgrade), on its own node.
pub fn js_through_http_relay(bin: &str) {
    js_interop(bin, Via::Relay);
}

/// The binary's own `dealport client`, given A4's inputs as flags and the client's Lotus
/// key file, proposes through the HTTP relay (as a Curio-style provider is reached) and
/// is accepted; its signed status request then reports `Accepted`.
pub fn client_cli_deal_and_status_through_the_relay(bin: &str) {
    let d = DataDir::for_a4(bin);
    let (_node, ready) = started(bin, &d);
    let relay = ready.relay().to_string();
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, crate::harness::golden::A4_CLIENT_KEY_FILE).unwrap();
    let wallet = wallet.to_str().unwrap();
    let client = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(bin)
            .arg("client")
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "client {args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    let deal = client(&[
        "deal",
        "--provider",
        &relay,
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
        "--start-epoch",
        "4500000",
        "--duration",
        "518400",
        "--provider-collateral",
        "8589934592000",
        "--verified",
        "--uuid",
        A4_UUID,
        "--wallet",
        wallet,
        "--json",
    ]);
    assert_eq!(deal["accepted"], true, "{deal}");
    let status = client(&[
        "status",
        "--provider",
        &relay,
        "--uuid",
        A4_UUID,
        "--wallet",
        wallet,
        "--json",
    ]);
    assert_eq!(status["deal_status"]["status"], "Accepted", "{status}");
    // The flags built exactly golden vector A4: resending the vector's own bytes is an
    // identical retry (R1), and S1 reports the deal the CLI made.
    block_on(async {
        let mut c = Client::new();
        let peer = c.connect(&ready.tcp).await;
        assert_r1(
            &c.request(peer, PROTOCOL_DEAL_1_2_1, &golden("A4")).await,
            "A4 after the CLI's deal",
        );
        assert_a4_accepted_status(&c.request(peer, PROTOCOL_STATUS, &golden("S1")).await);
    });
}

/// A js stream that never sends its request is closed by the node after
/// `limits.read_deadline_ms`; rust-client requests to the same node keep being
/// answered the whole time.
pub fn js_silent_stream_closed_after_read_deadline_while_others_answered(bin: &str) {
    const DEADLINE_MS: u64 = 2000;
    js::require_installed();
    let d = DataDir::init(bin);
    config::edit(&d.path, |t| {
        config::set_limit(t, "read_deadline_ms", DEADLINE_MS as i64)
    });
    let (_node, ready) = started(bin, &d);
    let s1 = golden("S1");

    block_on(async {
        let mut c = Client::new();
        let peer = c.connect(&ready.tcp).await;
        assert_s3(&c.request(peer, PROTOCOL_STATUS, &s1).await);

        let job = json!({
            "addr": ready.tcp.to_string(),
            "timeoutMs": 20000,
            "requests": [{ "protocol": PROTOCOL_ASK.as_ref(), "holdOpenMs": 4 * DEADLINE_MS }],
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let js_start = Instant::now();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| js::run(&job));
            let _ = tx.send((r, Instant::now()));
        });
        // Requests back to back until the js client reports; record when each answer came.
        let mut answered = vec![js_start];
        let (result, js_end) = loop {
            if let Ok(done) = rx.try_recv() {
                break done;
            }
            let t0 = Instant::now();
            let reply = c.request(peer, PROTOCOL_STATUS, &s1).await;
            assert_s3(&reply);
            let took = t0.elapsed();
            assert!(
                took < Duration::from_millis(DEADLINE_MS),
                "a status request took {took:?} while a silent stream was open"
            );
            answered.push(Instant::now());
            async_io::Timer::after(Duration::from_millis(50)).await;
        };
        let r = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
        answered.push(js_end);
        eprintln!(
            "{} status requests answered in {:?} while the js client ran",
            answered.len() - 2,
            js_end - js_start
        );

        let held = r.response(0);
        assert!(held["error"].is_null(), "{held}");
        let closed_after = held["closedByRemoteAfterMs"]
            .as_u64()
            .unwrap_or_else(|| panic!("the node kept the silent stream open: {held}"));
        assert!(
            (DEADLINE_MS - 100..DEADLINE_MS + 2000).contains(&closed_after),
            "the silent stream closed after {closed_after} ms; read deadline {DEADLINE_MS} ms"
        );
        // The silent stream was open for `closed_after` ms somewhere between js_start and
        // js_end; answers never more than that apart mean some came while it was open.
        let widest = answered
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .expect("two instants");
        assert!(
            widest < Duration::from_millis(closed_after),
            "no request answered while the silent stream was open (gap {widest:?}, held {closed_after} ms)"
        );
    });
}
