//! IPNI, black-box, against the binary it is given: deals whose data is a CAR are
//! indexed and advertised on the node's chain, announced to testkit's IndexerDouble (a
//! TEST DOUBLE of an indexer's ingestion, citing ipni/specs; no indexer runs here),
//! which checks the head's and every advertisement's signature with its own Ed25519
//! code, walks the chain and every entry chunk; the multihashes it ends with are
//! compared with the blocks this test reads from the CAR bytes itself, and a sample of
//! blocks is fetched through `/ipfs/<cid>` and hashed here. A deal that fails after being
//! announced is withdrawn (an `IsRm` advertisement); a `SkipIPNIAnnounce` deal is indexed
//! but not advertised; the chain survives a restart. The cluster scenario (two nodes on
//! PostgreSQL, a failover between two deals) is in `ipni_cluster`.
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dealport_core::wire::Cid;
use dealport_testkit::{
    data_server::{DataServer, Serve},
    ipni_indexer::{IndexerDouble, Synced},
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    execution_lifecycle::{fake_lotus, Mpool},
    execution_transfer::{checkpoint, piece_of, poll_until, propose},
    harness::{
        config,
        golden::A4_CLIENT_KEY_FILE,
        http::{request, request_raw},
        process::{DataDir, Node},
    },
};

pub(crate) const TOKEN: &str = "ipni-secret";

fn uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A CARv1 of `n` raw blocks (sha2-256 CIDs), sizes varying with `seed`.
pub(crate) fn car(n: usize, seed: u64) -> Vec<u8> {
    let blocks: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| {
            let len = 1 + ((i * 7919 + seed * 104_729) % 3000) as usize;
            (0..len as u64)
                .map(|j| (j.wrapping_mul(31).wrapping_add(i * 131 + seed) >> 3) as u8)
                .collect()
        })
        .collect();
    let cid = |b: &[u8]| {
        let mut c = vec![0x01, 0x55, 0x12, 0x20];
        c.extend_from_slice(&Sha256::digest(b));
        c
    };
    // Header {"roots": [cid], "version": 1}, dag-cbor (keys length-first).
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    header.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00]);
    header.extend_from_slice(&cid(&blocks[0]));
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    let mut out = Vec::new();
    uvarint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    for b in &blocks {
        let c = cid(b);
        uvarint(&mut out, (c.len() + b.len()) as u64);
        out.extend_from_slice(&c);
        out.extend_from_slice(b);
    }
    out
}

fn read_uvarint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0;
    let mut shift = 0;
    loop {
        let x = b[*at];
        *at += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// The multihash of every block of a CARv1, read here from its bytes.
pub(crate) fn car_multihashes(car: &[u8]) -> BTreeSet<Vec<u8>> {
    let mut at = 0;
    let header = read_uvarint(car, &mut at) as usize;
    at += header;
    let mut out = BTreeSet::new();
    while at < car.len() {
        let len = read_uvarint(car, &mut at) as usize;
        let end = at + len;
        let mut p = at;
        assert_eq!(read_uvarint(car, &mut p), 1, "CIDv1");
        read_uvarint(car, &mut p); // codec
        let mh_start = p;
        read_uvarint(car, &mut p); // hash code
        let digest = read_uvarint(car, &mut p) as usize;
        out.insert(car[mh_start..p + digest].to_vec());
        at = end;
    }
    out
}

/// Wait (bounded) until `done` holds.
pub(crate) fn wait_for<T>(what: &str, limit: Duration, mut done: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = done() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The double's view once its latest announcement names the node's head and the
/// chain holds `ads` advertisements.
pub(crate) fn synced_with(
    indexer: &IndexerDouble,
    http: std::net::SocketAddr,
    ads: usize,
) -> Synced {
    wait_for("the announced chain", Duration::from_secs(60), || {
        let head = request(http, "GET", "/ipni/v1/ad/head", None, None);
        if head.status != 200 {
            return None;
        }
        let head = head.json()["head"]["/"].as_str()?.to_owned();
        let last = indexer.announced().last()?.cid.clone();
        if last != head {
            return None;
        }
        let s = indexer
            .sync_latest()
            .unwrap_or_else(|e| panic!("sync: {e}"));
        (s.ads.len() == ads).then_some(s)
    })
}

pub(crate) fn sealing(http: std::net::SocketAddr, uuid: &str, what: &str, body: serde_json::Value) {
    let r = request(
        http,
        "POST",
        &format!("/api/v1/sealing/deals/{uuid}/{what}"),
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(
        r.status,
        200,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
}

/// The config every IPNI scenario uses.
pub(crate) fn ipni_config(
    t: &mut toml::Table,
    lotus: std::net::SocketAddr,
    indexer: &IndexerDouble,
) {
    t["chain"]["mode"] = "lotus".into();
    t["chain"]["lotus"]["url"] = format!("http://{lotus}/rpc/v1").into();
    t["chain"]["lotus"]["token"] = "lotus-token".into();
    t["transfer"]["allow_private_addresses"] = true.into();
    t["api"]["token"] = TOKEN.into();
    t["publish"]["period_secs"] = 0.into();
    t["publish"]["poll_secs"] = 1.into();
    t["retrieval"]["serve_pieces"] = true.into();
    t["retrieval"]["keep_pieces"] = true.into();
    t["ipni"]["enable"] = true.into();
    t["ipni"]["announce_urls"] = toml::Value::Array(vec![indexer.announce_url().into()]);
    t["ipni"]["poll_secs"] = 1.into();
}

/// A deal for `bytes` served by a data server (kept alive by the caller).
pub(crate) fn online_deal(
    bin: &str,
    p2p: &str,
    wallet: &std::path::Path,
    uuid: &str,
    bytes: &[u8],
    extra: &[&str],
) -> DataServer {
    let server = DataServer::start(Serve::new(bytes.to_vec()));
    let size = bytes.len().to_string();
    let url = server.url("/data.car");
    let mut how = vec!["--car-size", &size, "--url", &url];
    how.extend_from_slice(extra);
    propose(bin, p2p, wallet, uuid, &piece_of(bytes), &how);
    server
}

pub(crate) fn wait_checkpoint(
    bin: &str,
    p2p: &str,
    wallet: &std::path::Path,
    uuid: &str,
    want: &str,
) {
    let seen = poll_until(bin, p2p, wallet, uuid, want, |s| {
        checkpoint(s) == want || s["deal_status"]["error"] != ""
    });
    let last = seen.last().expect("one");
    assert_eq!(checkpoint(last), want, "{last}");
}

/// The multihash of a `Cid` string.
fn raw_cid_of(mh: &[u8]) -> String {
    let mut b = vec![0x01, 0x55];
    b.extend_from_slice(mh);
    Cid::from_bytes(&b).expect("a CID").to_string()
}

/// Fetch every `step`-th block of `mhs` through `/ipfs/<cid>` and hash it here.
pub(crate) fn fetch_sample(http: std::net::SocketAddr, mhs: &BTreeSet<Vec<u8>>, step: usize) {
    for mh in mhs.iter().step_by(step) {
        let cid = raw_cid_of(mh);
        let r = request_raw(
            http,
            "GET",
            &format!("/ipfs/{cid}"),
            &[("Accept", "application/vnd.ipld.raw")],
            b"",
        );
        assert_eq!(
            r.status,
            200,
            "/ipfs/{cid}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            &mh[2..],
            Sha256::digest(&r.body).as_slice(),
            "/ipfs/{cid} hashes to its CID"
        );
    }
}

const A: &str = "1c7d0f2a-3b4c-4d5e-8f60-718293a4b5c1";
const B: &str = "1c7d0f2a-3b4c-4d5e-8f60-718293a4b5c2";
const C: &str = "1c7d0f2a-3b4c-4d5e-8f60-718293a4b5c3";

pub fn deals_are_advertised_withdrawn_and_the_chain_survives_a_restart(bin: &str) {
    let indexer = IndexerDouble::start();
    // The first announcement fails: the node retries.
    indexer.fail_next(1);
    let mpool = Arc::new(Mutex::new(Mpool {
        landed: true,
        ..Mpool::default()
    }));
    let lotus = fake_lotus(mpool);
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| ipni_config(t, lotus.addr, &indexer));
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    let (p2p, http) = (ready.tcp.to_string(), ready.http);

    // Before any advertisement: no head.
    let r = request(http, "GET", "/ipni/v1/ad/head", None, None);
    assert_eq!(r.status, 204);

    let (car_a, car_b, car_c) = (car(700, 1), car(40, 2), car(30, 3));
    // One deal at a time: the Lotus double's publish return carries one deal ID.
    let mut servers = Vec::new();
    for (n, (uuid, bytes, extra)) in [
        (A, &car_a, &[][..]),
        (B, &car_b, &[][..]),
        (C, &car_c, &["--skip-ipni-announce"][..]),
    ]
    .into_iter()
    .enumerate()
    {
        servers.push(online_deal(bin, &p2p, &wallet, uuid, bytes, extra));
        wait_checkpoint(bin, &p2p, &wallet, uuid, "PublishConfirmed");
        sealing(
            http,
            uuid,
            "added-piece",
            json!({"sector": 10 + n, "offset": 0}),
        );
        wait_checkpoint(bin, &p2p, &wallet, uuid, "IndexedAndAnnounced");
    }
    let s = synced_with(&indexer, http, 2);
    // Linear, from the first, one advertisement per announced deal (not C).
    assert_eq!(s.ads[0].previous, None);
    assert_eq!(s.ads[1].previous.as_deref(), Some(s.ads[0].cid.as_str()));
    assert_eq!(s.topic.as_deref(), Some("/indexer/ingest/mainnet"));
    let piece = |b: &[u8]| Cid::parse(&piece_of(b).0).unwrap().as_bytes().to_vec();
    let mut contexts: Vec<Vec<u8>> = s.ads.iter().map(|a| a.context_id.clone()).collect();
    contexts.sort();
    let mut want = vec![piece(&car_a), piece(&car_b)];
    want.sort();
    assert_eq!(contexts, want, "ContextID: the piece CIDs of A and B");
    for ad in &s.ads {
        assert!(!ad.is_rm);
        assert_eq!(
            ad.provider, ready.peer,
            "signed and provided by the node's identity"
        );
        assert_eq!(
            ad.metadata,
            vec![0xa0, 0x12, 0x00, 0xb0, 0x12, 0x00],
            "gateway + piece HTTP"
        );
        assert_eq!(
            ad.addresses,
            vec![format!("/ip4/127.0.0.1/tcp/{}/http", http.port())]
        );
        let car = if ad.context_id == piece(&car_a) {
            &car_a
        } else {
            &car_b
        };
        let got: BTreeSet<Vec<u8>> = ad.multihashes.iter().cloned().collect();
        assert_eq!(
            got,
            car_multihashes(car),
            "every block of the CAR, nothing else"
        );
    }
    let (mh_a, mh_b) = (car_multihashes(&car_a), car_multihashes(&car_b));
    let both: BTreeSet<Vec<u8>> = mh_a.union(&mh_b).cloned().collect();
    assert_eq!(s.live_multihashes(), both);
    assert!(
        indexer.announced().len() >= 2,
        "announced (after a refused first try)"
    );
    fetch_sample(http, &mh_a, 37);
    fetch_sample(http, &mh_b, 7);

    // The publisher's HTTP side.
    let head = request(http, "GET", "/ipni/v1/ad/head", None, None);
    assert_eq!(
        head.header("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    let ad = request(http, "GET", &format!("/ipni/v1/ad/{}", s.head), None, None);
    assert_eq!(ad.status, 200);
    assert_eq!(
        ad.header("cache-control"),
        Some("public, max-age=29030400, immutable")
    );
    assert_eq!(ad.header("content-type"), Some("application/json"));
    let cbor = request_raw(
        http,
        "GET",
        &format!("/ipni/v1/ad/{}", s.head),
        &[("Accept", "application/vnd.ipld.dag-cbor")],
        b"",
    );
    assert_eq!(
        cbor.header("content-type"),
        Some("application/vnd.ipld.dag-cbor")
    );
    assert_eq!(cbor.body[0], 0xa8, "a map of the advertisement's 8 fields");
    let unknown = "baguqeeraumjlc724azqnrdb5xwt2wmgq2fx7ikwcz2lm4xe5dtulx4r3zd2q";
    assert_eq!(
        request(http, "GET", &format!("/ipni/v1/ad/{unknown}"), None, None).status,
        404
    );
    assert_eq!(
        request(http, "GET", "/ipni/v1/ad/not-a-cid", None, None).status,
        400
    );
    assert_eq!(
        request(http, "POST", "/ipni/v1/ad/head", None, None).status,
        405
    );

    // A completes; B fails after being announced: its blocks are withdrawn.
    sealing(http, A, "complete", json!({}));
    wait_checkpoint(bin, &p2p, &wallet, A, "Complete");
    sealing(http, B, "failed", json!({"error": "sector 11 failed"}));
    let s = synced_with(&indexer, http, 3);
    let rm = &s.ads[2];
    assert!(rm.is_rm, "a removal");
    assert_eq!(rm.context_id, piece(&car_b));
    assert_eq!(rm.previous.as_deref(), Some(s.ads[1].cid.as_str()));
    assert_eq!(s.live_multihashes(), mh_a, "B's blocks withdrawn, A's stay");

    // Restart: the chain is the same, and the new run announces its head again.
    let before = indexer.announced().len();
    drop(node);
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    // The new run announces its head again (from its new HTTP address).
    wait_for(
        "the announcement after the restart",
        Duration::from_secs(30),
        || (indexer.announced().len() > before).then_some(()),
    );
    let again = synced_with(&indexer, ready.http, 3);
    assert_eq!(again.head, s.head);
    assert_eq!(
        again.ads.len(),
        3,
        "nothing advertised twice after the restart"
    );
    drop(node);
}

const D1: &str = "2d8e1f3b-4c5d-4e6f-9a71-8293a4b5c6d1";
const D2: &str = "2d8e1f3b-4c5d-4e6f-9a71-8293a4b5c6d2";

/// Two nodes on one PostgreSQL: the holder advertises a deal, is killed (-9), the other
/// takes the lease and advertises a second deal on the same chain: linear, one
/// advertisement per deal, both signed by the one identity the nodes share.
pub fn cluster_chain_stays_linear_across_a_failover(bin: &str) {
    use crate::harness::{
        cluster::{member, one_leader, Member},
        postgres::PgServer,
    };
    let indexer = IndexerDouble::start();
    let mpool = Arc::new(Mutex::new(Mpool {
        landed: true,
        ..Mpool::default()
    }));
    let lotus = fake_lotus(mpool);
    let pg = PgServer::start();
    let url = pg.url();
    let mut members: Vec<Member> = ["n0", "n1"].iter().map(|n| member(bin, n)).collect();
    // Staged and kept pieces on storage both nodes see (README, "Retrieval").
    let shared = tempfile::tempdir().expect("a shared dir");
    let (staging, pieces) = (shared.path().join("staging"), shared.path().join("pieces"));
    for m in &mut members {
        config::edit(&m.dir.path, |t| {
            ipni_config(t, lotus.addr, &indexer);
            let path = |p: &std::path::Path| toml::Value::from(p.to_string_lossy().into_owned());
            let table = |t: &mut toml::Table, k: &str| -> toml::Table {
                t[k].as_table().cloned().expect("a table")
            };
            let mut transfer = table(t, "transfer");
            transfer.insert("staging_dir".into(), path(&staging));
            t.insert("transfer".into(), transfer.into());
            let mut retrieval = table(t, "retrieval");
            retrieval.insert("piece_dir".into(), path(&pieces));
            t.insert("retrieval".into(), retrieval.into());
        });
        m.start(bin, &url);
    }
    let peer = members[0].peer();
    let wallet = members[0].dir.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");
    let (car1, car2) = (car(200, 11), car(150, 12));
    let piece = |b: &[u8]| Cid::parse(&piece_of(b).0).unwrap().as_bytes().to_vec();

    let deal = |members: &[Member], leader: usize, uuid: &str, bytes: &[u8]| {
        let m = &members[leader];
        let http = m.http.expect("started");
        let p2p = m.relay(&peer).to_string();
        let server = online_deal(bin, &p2p, &wallet, uuid, bytes, &[]);
        wait_checkpoint(bin, &p2p, &wallet, uuid, "PublishConfirmed");
        sealing(http, uuid, "added-piece", json!({"sector": 7, "offset": 0}));
        wait_checkpoint(bin, &p2p, &wallet, uuid, "IndexedAndAnnounced");
        drop(server);
        http
    };

    let first = one_leader(&members, Duration::from_secs(15));
    let http = deal(&members, first, D1, &car1);
    let s1 = synced_with(&indexer, http, 1);
    assert_eq!(s1.ads[0].context_id, piece(&car1));

    // kill -9 the holder; the other takes over and advertises the next deal.
    members[first]
        .node
        .as_ref()
        .expect("running")
        .signal("KILL");
    let _ = members[first]
        .node
        .take()
        .map(|mut n| n.wait_exit(Duration::from_secs(5)));
    let second = 1 - first;
    wait_for("the takeover", Duration::from_secs(30), || {
        members[second].is_leader().then_some(())
    });
    let http = deal(&members, second, D2, &car2);
    let s2 = synced_with(&indexer, http, 2);
    assert_eq!(s2.ads[0].cid, s1.ads[0].cid, "the first advertisement kept");
    assert_eq!(
        s2.ads[1].previous.as_deref(),
        Some(s1.ads[0].cid.as_str()),
        "linear"
    );
    assert_eq!(s2.ads[1].context_id, piece(&car2));
    assert!(s2.ads.iter().all(|a| a.provider == peer && !a.is_rm));
    let both: BTreeSet<Vec<u8>> = car_multihashes(&car1)
        .union(&car_multihashes(&car2))
        .cloned()
        .collect();
    assert_eq!(s2.live_multihashes(), both);
    fetch_sample(http, &car_multihashes(&car1), 23);
    // Every announcement names the shared identity.
    assert!(indexer.announced().iter().all(|a| a.publisher == peer));
}
