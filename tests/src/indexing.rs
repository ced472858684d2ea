//! The piece directory and `/ipfs/<cid>`, black-box, against the binary it is given:
//! offline deals imported with `dealport deals import`, each data a different case: a
//! multi-block CARv1, a CARv2, a CAR with a block whose bytes do not match its CID, a
//! truncated CAR, a CAR with a bad varint, and data that is not a CAR. The test computes
//! each CAR's block set itself from the CAR bytes (its own reader below, not dealport's),
//! waits for the deal API to show each piece's index state, fetches every block of the
//! good CARs through `/ipfs/<cid>` as a raw block and as a one-block CAR (each hashed to
//! its CID here), checks the refusals (404, 400 with reasons), and after the node stops
//! compares the store's entries with the expected set.
use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use dealport_core::{
    car::{section_prefix, v1_header},
    piece_index::BlockEntry,
    wire::{
        cid::{CODEC_DAG_CBOR, CODEC_RAW, MH_SHA2_256},
        Cid,
    },
};
use dealport_node::store::{sled::SledStore, Store};
use sha2::{Digest, Sha256};

use crate::{
    execution_transfer::{data, piece_of, propose},
    harness::{
        config,
        golden::A4_CLIENT_KEY_FILE,
        http::{request, request_raw},
        probe::wait_until,
        process::{deals_import, DataDir, Node},
    },
};

const TOKEN: &str = "indexing-secret";

// ---- The test's own CAR reading (independent of dealport's reader) ---------------------

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for i in 0.. {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return v;
        }
    }
    unreachable!()
}

/// The blocks of a well-formed CAR (v1 or v2): (CID, multihash, data offset, length).
fn expected_blocks(car: &[u8]) -> Vec<(Cid, Vec<u8>, u64, u64)> {
    let (start, end) = if car[..11]
        == [
            0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 2,
        ] {
        let le = |at: usize| u64::from_le_bytes(car[at..at + 8].try_into().unwrap()) as usize;
        (le(11 + 16), le(11 + 16) + le(11 + 24))
    } else {
        (0, car.len())
    };
    let mut at = start;
    let hlen = varint(car, &mut at) as usize;
    at += hlen;
    let mut out = Vec::new();
    while at < end {
        let len = varint(car, &mut at) as usize;
        let section_end = at + len;
        let cid_start = at;
        let mh_start = if car[at] == 0x12 && car[at + 1] == 0x20 {
            at
        } else {
            varint(car, &mut at);
            varint(car, &mut at);
            at
        };
        varint(car, &mut at);
        let digest_len = varint(car, &mut at) as usize;
        at += digest_len;
        let cid = Cid::from_bytes(&car[cid_start..at]).expect("a CID");
        out.push((
            cid,
            car[mh_start..at].to_vec(),
            at as u64,
            (section_end - at) as u64,
        ));
        at = section_end;
    }
    out
}

// ---- Building the CARs ----------------------------------------------------------------

fn block_cid(codec: u64, data: &[u8]) -> Cid {
    Cid::v1(codec, MH_SHA2_256, &Sha256::digest(data))
}

/// `n` blocks of sizes 0..5000, raw and dag-cbor-labelled alternately, the third one
/// repeated at the end (a CAR may hold a block twice); a CARv1 with the first as root.
fn car_v1(n: usize, seed: u64) -> Vec<u8> {
    let blocks: Vec<(Cid, Vec<u8>)> = (0..n)
        .map(|i| {
            let d = data((i * 997 + seed as usize) % 5000, seed + i as u64);
            let codec = if i % 2 == 0 {
                CODEC_RAW
            } else {
                CODEC_DAG_CBOR
            };
            (block_cid(codec, &d), d)
        })
        .collect();
    let mut car = v1_header(&[blocks[0].0.clone()]);
    for (cid, d) in blocks.iter().chain(std::iter::once(&blocks[2])) {
        car.extend(section_prefix(cid, d.len() as u64));
        car.extend_from_slice(d);
    }
    car
}

/// `v1` inside a CARv2 (7 bytes of padding before the payload, an index offset after).
fn car_v2(v1: &[u8]) -> Vec<u8> {
    let offset = 11 + 40 + 7u64;
    let mut car = vec![
        0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 2,
    ];
    car.extend_from_slice(&[0; 16]);
    car.extend_from_slice(&offset.to_le_bytes());
    car.extend_from_slice(&(v1.len() as u64).to_le_bytes());
    car.extend_from_slice(&(offset + v1.len() as u64).to_le_bytes());
    car.extend_from_slice(&[0; 7]);
    car.extend_from_slice(v1);
    car.extend_from_slice(&[0x80, 0x08, 0, 0, 0, 0]);
    car
}

// ---- The node -------------------------------------------------------------------------

/// The deal's piece index as the API shows it, once it is no longer `not-yet`.
fn index_of(http: SocketAddr, uuid: &str) -> serde_json::Value {
    let mut index = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(60),
        &format!("deal {uuid} indexed"),
        || {
            let r = request(
                http,
                "GET",
                &format!("/api/v1/deals/{uuid}"),
                Some(TOKEN),
                None,
            );
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let deal: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            index = deal["index"].clone();
            index["state"] != "not-yet"
        },
    );
    index
}

fn get(
    http: SocketAddr,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> crate::harness::http::Answer {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    request_raw(http, method, path, &headers, b"")
}

/// Every block of `car` through `/ipfs/`: raw (Accept) and as a one-block CAR
/// (`?format=car&dag-scope=block`), each hashed to its CID here.
fn every_block_is_served(http: SocketAddr, car: &[u8]) -> u64 {
    let mut served = 0;
    let distinct: BTreeSet<Cid> = expected_blocks(car).into_iter().map(|b| b.0).collect();
    for cid in &distinct {
        let r = get(
            http,
            "GET",
            &format!("/ipfs/{cid}"),
            Some("application/vnd.ipld.raw"),
        );
        assert_eq!(r.status, 200, "{cid}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            block_cid(cid.prefix().unwrap().codec, &r.body),
            *cid,
            "raw bytes hash to the CID"
        );
        assert_eq!(r.header("content-type"), Some("application/vnd.ipld.raw"));
        assert_eq!(r.header("etag"), Some(format!("\"{cid}.raw\"").as_str()));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=29030400, immutable")
        );
        let raw = r.body;

        let r = get(
            http,
            "GET",
            &format!("/ipfs/{cid}?format=car&dag-scope=block"),
            None,
        );
        assert_eq!(r.status, 200, "{cid}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.header("content-type"),
            Some("application/vnd.ipld.car; version=1; order=dfs; dups=n")
        );
        let blocks = expected_blocks(&r.body);
        assert_eq!(blocks.len(), 1, "one block");
        let (got, _, off, len) = &blocks[0];
        assert_eq!(got, cid);
        let bytes = &r.body[*off as usize..(*off + *len) as usize];
        assert_eq!(
            block_cid(cid.prefix().unwrap().codec, bytes),
            *cid,
            "CAR block hashes to the CID"
        );
        assert!(bytes == raw.as_slice());
        // The CAR's header names the CID as its root (a dag-cbor map holding it).
        let header_root = &r.body[..*off as usize];
        assert!(header_root
            .windows(cid.as_bytes().len())
            .any(|w| w == cid.as_bytes()));
        served += 2;
    }
    served
}

pub fn deals_cars_are_indexed_and_their_blocks_served_by_cid(bin: &str) {
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| {
        t["api"]["token"] = TOKEN.into();
        t["retrieval"]["serve_pieces"] = true.into();
    });
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    let (p2p, http) = (ready.tcp.to_string(), ready.http);

    let v1 = car_v1(120, 1);
    let v2 = car_v2(&car_v1(40, 2));
    let mut mismatch = car_v1(30, 3);
    let victim = expected_blocks(&mismatch)[10].clone();
    mismatch[victim.2 as usize] ^= 0xff;
    let whole = car_v1(30, 4);
    let cut = expected_blocks(&whole)[20].2 as usize + 3;
    let truncated = whole[..cut].to_vec();
    // The last section's length written in two bytes where one would do.
    let mut bad_varint = car_v1(5, 5);
    let fifth = expected_blocks(&bad_varint)[4].clone();
    let varint_at = (fifth.2 + fifth.3) as usize;
    bad_varint.truncate(varint_at);
    bad_varint.extend_from_slice(&[0x85, 0x00, 1, 2, 3, 4, 5]);
    let not_car = data(20_000, 6);

    let cases: [(&str, &[u8]); 6] = [
        ("7a1f3c5e-2b4d-4e6f-8a0b-1c2d3e4f5b01", &v1),
        ("7a1f3c5e-2b4d-4e6f-8a0b-1c2d3e4f5b02", &v2),
        ("7a1f3c5e-2b4d-4e6f-8a0b-1c2d3e4f5b03", &mismatch),
        ("7a1f3c5e-2b4d-4e6f-8a0b-1c2d3e4f5b04", &truncated),
        ("7a1f3c5e-2b4d-4e6f-8a0b-1c2d3e4f5b05", &bad_varint),
        ("7a1f3c5e-2b4d-4e6f-8a0b-1c2d3e4f5b06", &not_car),
    ];
    for (uuid, bytes) in cases {
        propose(bin, &p2p, &wallet, uuid, &piece_of(bytes), &["--offline"]);
        let said = deals_import(bin, &d.path, http, uuid, bytes);
        assert!(said.contains("imported"), "{uuid}: {said}");
    }
    let states: Vec<serde_json::Value> = cases.iter().map(|(u, _)| index_of(http, u)).collect();
    assert_eq!(states[0]["state"], "indexed", "{}", states[0]);
    assert_eq!(states[0]["blocks"], expected_blocks(&v1).len());
    assert_eq!(states[1]["state"], "indexed", "{}", states[1]);
    assert_eq!(states[1]["blocks"], expected_blocks(&v2).len());
    let reason = |i: usize| states[i]["reason"].as_str().unwrap_or_default().to_owned();
    assert_eq!(states[2]["state"], "malformed");
    assert_eq!(
        reason(2),
        format!(
            "malformed CAR: the block {} at byte {}: its data does not hash to its CID",
            victim.0, victim.2
        )
    );
    assert_eq!(states[3]["state"], "malformed");
    assert_eq!(
        reason(3),
        format!("malformed CAR: truncated: the data ends at byte {cut} inside a block's data")
    );
    assert_eq!(states[4]["state"], "malformed");
    assert_eq!(
        reason(4),
        format!("malformed CAR: bad varint at byte {varint_at} (varint not minimally encoded)")
    );
    assert_eq!(states[5]["state"], "not-a-car");
    assert!(reason(5).starts_with("not a CAR"), "{}", reason(5));
    // None of them failed the deal: it goes on (offline chain: stays Transferred).
    for (uuid, _) in cases {
        let r = request(
            http,
            "GET",
            &format!("/api/v1/deals/{uuid}"),
            Some(TOKEN),
            None,
        );
        let deal: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(deal["error"], serde_json::Value::Null, "{uuid}: {deal}");
        assert_eq!(deal["checkpoint"], "Transferred");
    }

    // The node kept serving through the bad ones: every block of the good CARs.
    let mut served = every_block_is_served(http, &v1);
    served += every_block_is_served(http, &v2);
    let first = &expected_blocks(&v1)[0].0;
    let r = get(
        http,
        "HEAD",
        &format!("/ipfs/{first}"),
        Some("application/vnd.ipld.raw"),
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("content-length").map(str::to_owned),
        Some(expected_blocks(&v1)[0].3.to_string())
    );

    // Refusals: blocks of the failed-to-index CARs and unknown CIDs are 404; bad CIDs,
    // no format, and a DAG walk are 400 with the reason.
    let unknown = block_cid(CODEC_RAW, b"nobody stored this");
    for cid in [&unknown, &expected_blocks(&mismatch)[0].0] {
        let r = get(
            http,
            "GET",
            &format!("/ipfs/{cid}"),
            Some("application/vnd.ipld.raw"),
        );
        assert_eq!(r.status, 404, "{cid}: {}", String::from_utf8_lossy(&r.body));
        let r = get(
            http,
            "HEAD",
            &format!("/ipfs/{cid}"),
            Some("application/vnd.ipld.raw"),
        );
        assert_eq!(r.status, 404);
    }
    let cbor = expected_blocks(&v1)[1].0.clone();
    for (path, accept, reason) in [
        (
            "/ipfs/not-a-cid".to_owned(),
            Some("application/vnd.ipld.raw"),
            "is not a CID",
        ),
        (
            format!("/ipfs/{first}"),
            None,
            "application/vnd.ipld.raw or application/vnd.ipld.car",
        ),
        (
            format!("/ipfs/{cbor}?format=car"),
            None,
            "dag-scope=all (the default for CAR requests) is not supported",
        ),
        (
            format!("/ipfs/{cbor}?format=car&dag-scope=all"),
            None,
            "dag-scope=all is not supported",
        ),
        (
            format!("/ipfs/{first}/some/path"),
            Some("application/vnd.ipld.raw"),
            "paths under a CID",
        ),
    ] {
        let r = get(http, "GET", &path, accept);
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 400, "{path}: {body}");
        assert!(body.contains(reason), "{path}: {body}");
    }
    let metrics = request(http, "GET", "/metrics", None, None);
    let text = String::from_utf8_lossy(&metrics.body);
    let counter = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(counter("dealport_blocks_served_total"), served, "{text}");
    assert_eq!(counter("dealport_block_not_found_total"), 4);
    assert_eq!(
        counter("dealport_pieces_indexed_total{outcome=\"malformed\"}"),
        3
    );
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(30));

    // The store's entries are exactly the blocks the test read from the CAR bytes.
    let store =
        SledStore::open(&d.path, dealport_testkit::node::runtime()).expect("open the store");
    for car in [&v1, &v2] {
        let piece = Cid::parse(&piece_of(car).0).unwrap();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page =
                futures::executor::block_on(store.piece_blocks_page(&piece, after, 50)).unwrap();
            after = page.last().map(|e| e.offset);
            let n = page.len();
            got.extend(page);
            if n < 50 {
                break;
            }
        }
        let want: Vec<BlockEntry> = expected_blocks(car)
            .into_iter()
            .map(|(_, multihash, offset, length)| BlockEntry {
                multihash,
                offset,
                length,
            })
            .collect();
        assert_eq!(got, want);
    }
    for car in [&mismatch, &truncated, &bad_varint, &not_car] {
        let piece = Cid::parse(&piece_of(car).0).unwrap();
        assert!(
            futures::executor::block_on(store.piece_blocks_page(&piece, None, 10))
                .unwrap()
                .is_empty()
        );
    }
}
