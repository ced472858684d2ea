//! Deal execution end to end, black-box: the real `dealport` binary in Lotus chain mode
//! against FakeLotus (testkit; a TEST DOUBLE of a Lotus node's JSON-RPC, since no Lotus
//! runs here; answers shaped after lotus `documentation/en/api-methods-v1-stable.md`),
//! its own client CLI, testkit's data server, and this test playing the sealing system
//! through the HTTP API.
//!
//! Status over libp2p moves Accepted -> Transferred -> Published -> PublishConfirmed
//! (the PublishCid the fake gave the message, the deal ID its return carries) ->
//! AddedPiece -> IndexedAndAnnounced -> Complete; the piece the API streams is the data
//! served; the staged data is gone once the piece is in a sector.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use dealport_core::wire::{BitField, Cbor, Cid, PublishStorageDealsReturn};
use dealport_testkit::{
    data_server::{DataServer, Serve},
    fake_lotus::FakeLotus,
};
use serde_json::{json, Value};

use crate::{
    execution_transfer::{checkpoint, data, piece_of, poll_until, propose, status},
    harness::{
        config,
        golden::A4_CLIENT_KEY_FILE,
        http::request,
        process::{DataDir, Node},
    },
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const TOKEN: &str = "sealing-secret";
const UUID: &str = "5b0e4f86-7c1d-4a7e-9a51-0d2c3e4f5a71";
pub(crate) const DEAL_ID: u64 = 4_242;
const HEAD: i64 = 4_490_000;

/// Messages pushed to the fake (CID -> params), and the PublishStorageDeals ones landed.
#[derive(Default)]
pub(crate) struct Mpool {
    pub(crate) pushed: HashMap<String, (Value, Vec<u8>)>,
    pub(crate) publish: Vec<String>,
    pub(crate) landed: bool,
}

/// A FakeLotus under which A4's client and terms are acceptable, taking pushes.
pub(crate) fn fake_lotus(mpool: Arc<Mutex<Mpool>>) -> FakeLotus {
    let f = FakeLotus::start();
    // `### ChainHead`: `{"Cids":[{"/":…}],"Blocks":[…],"Height":4863283}`.
    f.set(
        "ChainHead",
        json!({"Cids": [{"/": "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4"}],
               "Blocks": [], "Height": HEAD}),
    );
    // `### StateMinerInfo`: `{"Owner":"f01234","Worker":"f01234",…,"PeerId":…,"Multiaddrs":[…]}`.
    f.set(
        "StateMinerInfo",
        json!({"Owner": "f01002", "Worker": "f01001", "NewWorker": "<empty>",
               "ControlAddresses": [], "PeerId": null, "Multiaddrs": [],
               "SectorSize": 34359738368u64, "WindowPoStPartitionSectors": 2349}),
    );
    // `### StateDealProviderCollateralBounds`: `{"Min":"0","Max":"0"}`.
    f.set(
        "StateDealProviderCollateralBounds",
        json!({"Min": "8589934592000", "Max": "17179869184000"}),
    );
    // `### StateMarketBalance`: `{"Escrow":"0","Locked":"0"}`.
    f.set(
        "StateMarketBalance",
        json!({"Escrow": "1000000000000000000", "Locked": "0"}),
    );
    // `### StateVerifiedClientStatus`: `"0"`.
    f.set("StateVerifiedClientStatus", json!("34359738368"));
    // `### StateAccountKey` / `### StateLookupID`: an address string.
    f.set_fn("StateAccountKey", |p: &Value| p[0].clone());
    f.set("StateLookupID", json!("f01500"));
    // `### MpoolPushMessage`: a SignedMessage `{"Message":{…},"Signature":{…},"CID":{"/":…}}`.
    let m = mpool.clone();
    f.set_fn("MpoolPushMessage", move |p: &Value| {
        let params = B64
            .decode(p[0]["Params"].as_str().unwrap_or(""))
            .unwrap_or_default();
        let mut m = m.lock().unwrap();
        let n = m.pushed.len() as u8;
        let cid = Cid::dag_cbor_blake2b(&[&params[..], &[n]].concat()).to_string();
        if p[0]["To"] == "f05" {
            m.publish.push(cid.clone());
        }
        m.pushed.insert(cid.clone(), (p[0].clone(), params));
        json!({"Message": p[0], "Signature": {"Type": 1, "Data": B64.encode([0u8; 65])},
               "CID": {"/": cid}})
    });
    // `### ChainGetMessage`: a Message `{"Version":0,"To":"f01234",…,"Params":"Ynl0ZSBhcnJheQ=="}`.
    let m = mpool.clone();
    f.set_fn("ChainGetMessage", move |p: &Value| {
        let cid = p[0]["/"].as_str().unwrap_or("");
        let m = m.lock().unwrap();
        match m.pushed.get(cid) {
            Some((msg, _)) => msg.clone(),
            None => Value::Null,
        }
    });
    // `### StateSearchMsg`: a MsgLookup `{"Message":{…},"Receipt":{"ExitCode":0,"Return":"…",…},…}`,
    // `null` until the test lets the publish message land.
    f.set_fn("StateSearchMsg", move |p: &Value| {
        let cid = p[1]["/"].as_str().unwrap_or("");
        let m = mpool.lock().unwrap();
        if !(m.landed && m.publish.iter().any(|c| c == cid)) {
            return Value::Null;
        }
        let ret = PublishStorageDealsReturn {
            ids: vec![DEAL_ID],
            valid_deals: BitField::from_bits([0]),
        };
        json!({"Message": {"/": cid},
               "Receipt": {"ExitCode": 0, "Return": B64.encode(ret.to_cbor()), "GasUsed": 1_000_000, "EventsRoot": null},
               "ReturnDec": null, "TipSet": [], "Height": HEAD + 1})
    });
    f
}

pub fn online_deal_goes_from_accepted_to_complete(bin: &str) {
    let mpool = Arc::new(Mutex::new(Mpool::default()));
    let lotus = fake_lotus(mpool.clone());
    // Publishing waits until the test has seen Transferred.
    lotus.fail("MpoolPushMessage");
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| {
        t["chain"]["mode"] = "lotus".into();
        t["chain"]["lotus"]["url"] = format!("http://{}/rpc/v1", lotus.addr).into();
        t["chain"]["lotus"]["token"] = "lotus-token".into();
        t["transfer"]["allow_private_addresses"] = true.into();
        t["api"]["token"] = TOKEN.into();
        t["publish"]["period_secs"] = 0.into();
        t["publish"]["poll_secs"] = 1.into();
        t["retrieval"]["serve_pieces"] = true.into();
        t["retrieval"]["keep_pieces"] = true.into();
    });
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");

    let bytes = data(3 << 20, 7);
    let piece = piece_of(&bytes);
    let server = DataServer::start(Serve::new(bytes.clone()));
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    let (p2p, http) = (ready.tcp.to_string(), ready.http);
    let size = bytes.len().to_string();
    let url = server.url("/piece.car");
    propose(
        bin,
        &p2p,
        &wallet,
        UUID,
        &piece,
        &["--car-size", &size, "--url", &url],
    );
    let seen = poll_until(bin, &p2p, &wallet, UUID, "Transferred", |s| {
        checkpoint(s) != "Accepted" || s["deal_status"]["error"] != ""
    });
    let last = seen.last().expect("one");
    assert_eq!(checkpoint(last), "Transferred", "{last}");
    // The publisher tries, fails, and says so while the deal waits.
    let seen = poll_until(bin, &p2p, &wallet, UUID, "showed the failing push", |s| {
        s["deal_status"]["sealing_status"]
            .as_str()
            .unwrap_or("")
            .contains("publishing failed, retrying")
    });
    assert_eq!(checkpoint(seen.last().expect("one")), "Transferred");

    // The push works again: Published with the message's CID, then its deal ID.
    lotus.heal("MpoolPushMessage");
    let seen = poll_until(bin, &p2p, &wallet, UUID, "Published", |s| {
        checkpoint(s) != "Transferred"
    });
    let last = seen.last().expect("one");
    assert_eq!(checkpoint(last), "Published", "{last}");
    let publish_cid = mpool
        .lock()
        .unwrap()
        .publish
        .first()
        .cloned()
        .expect("a PSD");
    assert_eq!(last["deal_status"]["publish_cid"], publish_cid.as_str());
    let (msg, _) = mpool.lock().unwrap().pushed[&publish_cid].clone();
    assert_eq!(
        (msg["To"].as_str(), msg["Method"].as_u64()),
        (Some("f05"), Some(4))
    );
    mpool.lock().unwrap().landed = true;
    let seen = poll_until(bin, &p2p, &wallet, UUID, "PublishConfirmed", |s| {
        checkpoint(s) != "Published"
    });
    let last = seen.last().expect("one");
    assert_eq!(checkpoint(last), "PublishConfirmed", "{last}");
    assert_eq!(last["deal_status"]["chain_deal_id"], DEAL_ID);

    // The sealing system: no token, no API.
    assert_eq!(
        request(http, "GET", "/api/v1/sealing/deals", None, None).status,
        401
    );
    let ready_deals = request(http, "GET", "/api/v1/sealing/deals", Some(TOKEN), None);
    assert_eq!(ready_deals.status, 200);
    let listed = ready_deals.json();
    assert_eq!(listed["deals"][0]["uuid"], UUID, "{listed}");
    assert_eq!(listed["deals"][0]["chain_deal_id"], DEAL_ID);
    let got = request(
        http,
        "GET",
        &format!("/api/v1/sealing/deals/{UUID}/piece"),
        Some(TOKEN),
        None,
    );
    assert_eq!(got.status, 200);
    assert!(got.body == bytes, "the piece streamed is the data served");
    // Out of order: Complete before the piece is in a sector.
    let early = request(
        http,
        "POST",
        &format!("/api/v1/sealing/deals/{UUID}/complete"),
        Some(TOKEN),
        Some(&json!({})),
    );
    assert_eq!(
        early.status,
        409,
        "{}",
        String::from_utf8_lossy(&early.body)
    );
    let staged = d.path.join("staging").join(format!("{UUID}.data"));
    assert!(staged.exists());
    for (what, body, want) in [
        (
            "added-piece",
            json!({"sector": 12, "offset": 0}),
            "AddedPiece",
        ),
        ("indexed", json!({}), "IndexedAndAnnounced"),
        ("complete", json!({}), "Complete"),
    ] {
        let r = request(
            http,
            "POST",
            &format!("/api/v1/sealing/deals/{UUID}/{what}"),
            Some(TOKEN),
            Some(&body),
        );
        assert_eq!(
            r.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let s = status(bin, &p2p, &wallet, UUID);
        assert_eq!(checkpoint(&s), want, "{s}");
        if what == "added-piece" {
            // keep_pieces: the staged data moves into the piece store (off the request path).
            let kept = d.path.join("pieces").join(&piece.0);
            let until = std::time::Instant::now() + Duration::from_secs(20);
            while staged.exists() || !kept.exists() {
                assert!(std::time::Instant::now() < until, "the piece was not kept");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    assert!(
        request(http, "GET", "/api/v1/sealing/deals", Some(TOKEN), None).json()["deals"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    assert_eq!(
        mpool.lock().unwrap().publish.len(),
        1,
        "published exactly once"
    );
    // Sealed and complete: still retrievable from the piece store.
    let r = request(http, "GET", &format!("/piece/{}", piece.0), None, None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.body == bytes, "the kept piece is the data received");
    drop(node);
}
