//! Retrieval, black-box, against the binary it is given: the
//! `/fil/retrieval/transports/1.0.0` answer from `[retrieval]` (byte for byte), and
//! `GET`/`HEAD /piece/<pieceCid>` over real HTTP on 127.0.0.1: offline deals' data
//! imported with `dealport deals import`, served whole, by Range and by HEAD; the bytes
//! received are hashed to the piece CID here (testkit's bit-by-bit CommP, no dealport
//! code); a deal's piece is 404 once the deal failed, even with its data left on disk;
//! garbage is 400.
//! (`keep_pieces` after sealing is in `execution_lifecycle`, where a deal gets sealed.)
use std::time::Duration;

use dealport_core::wire::{
    primitives::padded_piece_size, Cid, TransportProtocol, TransportsResponse,
};
use dealport_node::p2p::{Multiaddr, PROTOCOL_TRANSPORTS};
use dealport_testkit::commp::naive_commp;

use crate::{
    execution_transfer::{data, piece_of, propose, status},
    harness::{
        config,
        golden::A4_CLIENT_KEY_FILE,
        http::{request, request_raw},
        process::{deals_import, DataDir, Node, Ready},
        rust_client::Client,
    },
};

const TOKEN: &str = "retrieval-secret";
const GOOD_UUID: &str = "7a1f3c5e-2b4d-4e6f-8a0b-1c2d3e4f5a61";
const FAILED_UUID: &str = "7a1f3c5e-2b4d-4e6f-8a0b-1c2d3e4f5a62";

/// The transports answer, asked over libp2p (TCP).
fn transports(ready: &Ready) -> Vec<u8> {
    async_io::block_on(async {
        let mut c = Client::new();
        let peer = c.connect(&ready.tcp).await;
        c.request(peer, PROTOCOL_TRANSPORTS, &[]).await
    })
}

/// Configured endpoints are listed as configured, in Boost's order, with nothing of the
/// node's own (it does not serve pieces here, so `/piece/` is 404 too).
pub fn transports_answer_lists_the_configured_endpoints_byte_for_byte(bin: &str) {
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| {
        t["retrieval"]["http"] = config::value(r#"["/dns/sp.example.com/tcp/443/https"]"#);
        t["retrieval"]["bitswap"] = config::value(r#"["/ip4/203.0.113.7/tcp/4001"]"#);
    });
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    // {"Protocols": [{"Name": "http", "Addresses": [/dns/sp.example.com/tcp/443/https]},
    //                {"Name": "bitswap", "Addresses": [/ip4/203.0.113.7/tcp/4001]}]}
    let want = concat!(
        "a1",
        "6950726f746f636f6c73",
        "82",
        "a2644e616d65646874747069416464726573736573",
        "8155",
        "350e73702e6578616d706c652e636f6d0601bbbb03",
        "a2644e616d65676269747377617069416464726573736573",
        "8148",
        "04cb007107060fa1",
    );
    assert_eq!(hex::encode(transports(&ready)), want);
    let piece = piece_of(&data(1000, 9)).0;
    let r = request(ready.http, "GET", &format!("/piece/{piece}"), None, None);
    assert_eq!(r.status, 404, "serving is off");
    drop(node);
}

/// The piece CID of `bytes` computed here, bit by bit.
fn piece_cid_of(bytes: &[u8]) -> String {
    let padded = padded_piece_size(bytes.len() as u64).expect("a piece size");
    Cid::v1(0xf101, 0x1012, &naive_commp(bytes, padded)).to_string()
}

/// The value of an OpenMetrics counter in `text` (0 when absent).
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

pub fn pieces_are_served_by_range_and_head_never_a_failed_deals(bin: &str) {
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| {
        t["api"]["token"] = TOKEN.into();
        t["retrieval"]["serve_pieces"] = true.into();
        // A failed deal's data stays on disk: only the rule keeps it from being served.
        t["transfer"]["keep_staging"] = true.into();
    });
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    let (p2p, http) = (ready.tcp.to_string(), ready.http);

    // Serving with no http endpoint configured: the node's own HTTP address is listed.
    let own: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}/http", http.port())
        .parse()
        .unwrap();
    let want = TransportsResponse {
        protocols: vec![TransportProtocol {
            name: "http".into(),
            addresses: vec![own.to_vec()],
        }],
    };
    assert_eq!(
        hex::encode(transports(&ready)),
        hex::encode(dealport_core::wire::Cbor::to_cbor(&want))
    );

    // One deal whose data came in, one whose data was not its own (failed).
    let good = data(300_000, 21);
    let good_piece = piece_of(&good);
    propose(bin, &p2p, &wallet, GOOD_UUID, &good_piece, &["--offline"]);
    let said = deals_import(bin, &d.path, http, GOOD_UUID, &good);
    assert!(said.contains("imported"), "{said}");
    // The other is served until it fails (here the sealing system reports a failure
    // after its data came in); then never, though keep_staging leaves its data on disk.
    let other = data(200_000, 22);
    let failed_piece = piece_of(&other);
    propose(
        bin,
        &p2p,
        &wallet,
        FAILED_UUID,
        &failed_piece,
        &["--offline"],
    );
    let said = deals_import(bin, &d.path, http, FAILED_UUID, &other);
    assert!(said.contains("imported"), "{said}");
    let r = request(
        http,
        "GET",
        &format!("/piece/{}", failed_piece.0),
        None,
        None,
    );
    assert_eq!(r.status, 200);
    assert!(r.body == other);
    let r = request(
        http,
        "POST",
        &format!("/api/v1/sealing/deals/{FAILED_UUID}/failed"),
        Some(TOKEN),
        Some(&serde_json::json!({"error": "sector 3 failed"})),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = status(bin, &p2p, &wallet, FAILED_UUID);
    assert_ne!(s["deal_status"]["error"], "", "the deal failed: {s}");
    let left = d.path.join("staging").join(format!("{FAILED_UUID}.data"));
    assert!(left.exists(), "keep_staging left the failed deal's data");

    // The whole piece: what the deal received, hashing to its piece CID.
    let path = format!("/piece/{}", good_piece.0);
    let r = request(http, "GET", &path, None, None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/piece"));
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", good_piece.0).as_str())
    );
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=29030400, immutable")
    );
    assert_eq!(
        piece_cid_of(&r.body),
        good_piece.0,
        "the bytes hash to the piece CID"
    );
    assert!(r.body == good);

    // One range; past the end is 416; HEAD is the GET's head without the body.
    let r = request_raw(http, "GET", &path, &[("Range", "bytes=1000-1099")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 1000-1099/300000"));
    assert!(r.body == good[1000..1100]);
    let r = request_raw(http, "GET", &path, &[("Range", "bytes=300000-")], b"");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */300000"));
    let r = request(http, "HEAD", &path, None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.header("content-type"), Some("application/piece"));
    assert!(r.body.is_empty());

    // Not held: the failed deal's piece (its data on disk), a piece nobody stored.
    for piece in [&failed_piece.0, &piece_of(&data(1000, 24)).0] {
        let r = request(http, "GET", &format!("/piece/{piece}"), None, None);
        assert_eq!(
            r.status,
            404,
            "{piece}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(String::from_utf8_lossy(&r.body).contains("does not hold"));
    }
    // Not piece CIDs: 400 with the reason.
    for (garbage, reason) in [
        ("not-a-cid", "is not a CID"),
        ("baga6ea4seaq", "is not a CID"),
        (
            "bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy",
            "not a piece CID",
        ),
        ("", "expected /piece/<pieceCid>"),
    ] {
        let r = request(http, "GET", &format!("/piece/{garbage}"), None, None);
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 400, "{garbage:?}: {body}");
        assert!(body.contains(reason), "{garbage:?}: {body}");
    }
    assert_eq!(request(http, "POST", &path, None, None).status, 405);

    // Three answers with data (the other piece before it failed, the whole piece, the
    // range), their bytes, two 404s.
    let metrics = request(http, "GET", "/metrics", None, None);
    let text = String::from_utf8_lossy(&metrics.body);
    assert_eq!(counter(&text, "dealport_pieces_served_total"), 3, "{text}");
    assert_eq!(counter(&text, "dealport_piece_bytes_served_total"), 500_100);
    assert_eq!(counter(&text, "dealport_piece_not_found_total"), 2);
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(30));
}
