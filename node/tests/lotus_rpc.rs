//! The Lotus chain mode against `FakeLotus`, a TEST DOUBLE of a Lotus full node's
//! JSON-RPC v1 endpoint on 127.0.0.1 (no Lotus node runs here).
//!
//! Every canned answer copies the JSON shape of the method's documented example in
//! filecoin-project/lotus `documentation/en/api-methods-v1-stable.md` (formerly
//! `api-v1-unstable-methods.md`; read at commit b835fab702ebce57abd7e6d0c3326bbd1e18c008),
//! with our values in place of the example values. The section is cited next to each.
use std::{
    net::TcpListener,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use dealport_core::{
    accept::decide,
    facts::{ChainFacts, Policy},
    miner_info::Change,
    wire::{Address, Cbor, DealParams, Network, TokenAmount},
};
use dealport_node::chain::{
    lotus::{Endpoint, LotusChain, LotusClient, METHOD_AUTHENTICATE_MESSAGE},
    miner_info::{self, MinerInfoUpdater, Outcome},
    ChainFactsSource,
};
use dealport_node::store::{
    postgres::{PostgresOptions, PostgresStore},
    sled::SledStore,
    Fence, Store, StoreError,
};
use dealport_testkit::{
    fake_lotus::FakeLotus,
    node::{golden, runtime},
};
use fvm_ipld_encoding::{strict_bytes, tuple::*};
use libp2p::{identity::Keypair, Multiaddr, PeerId};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJBbGxvdyI6WyJyZWFkIiwic2lnbiJdfQ.fake";
const HEAD_CID_1: &str = "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4";
const HEAD_CID_2: &str = "bafy2bzacebp3shtrn43k7g3unredz7fxn4gj533d3o43tqn2p2ipxxhrvchve";

// ------------------------------------------------------------------ FakeLotus (test double)
// The server is `dealport_testkit::fake_lotus::FakeLotus`; these connect node's client to it.

trait FakeLotusExt {
    fn endpoint(&self) -> Endpoint;
    fn client(&self, call_timeout: Duration) -> LotusClient;
    fn chain(&self, call_timeout: Duration, budget: Duration) -> LotusChain;
}

impl FakeLotusExt for FakeLotus {
    fn endpoint(&self) -> Endpoint {
        Endpoint::from_api_info(&self.api_info(TOKEN)).unwrap()
    }
    fn client(&self, call_timeout: Duration) -> LotusClient {
        LotusClient::new(self.endpoint(), Network::Mainnet, call_timeout)
    }
    fn chain(&self, call_timeout: Duration, budget: Duration) -> LotusChain {
        LotusChain::new(self.client(call_timeout), budget, Duration::from_secs(3))
    }
}

// ------------------------------------------------------------------ canned answers

/// `### ChainHead` — documented response: `{"Cids":[{"/":…}],"Blocks":[…],"Height":4863283}`.
fn chain_head(height: i64) -> Value {
    json!({
        "Cids": [{"/": HEAD_CID_1}, {"/": HEAD_CID_2}],
        "Blocks": [],
        "Height": height
    })
}

/// `### StateDealProviderCollateralBounds` — documented response `{"Min":"0","Max":"0"}`.
fn collateral_bounds(min: &str, max: &str) -> Value {
    json!({"Min": min, "Max": max})
}

/// `### StateMarketBalance` — documented response `{"Escrow":"0","Locked":"0"}`.
fn market_balance(escrow: &str, locked: &str) -> Value {
    json!({"Escrow": escrow, "Locked": locked})
}

/// `### StateCall` — documented response: an InvocResult
/// `{"MsgCid":{…},"Msg":{…},"MsgRct":{"ExitCode":0,"Return":"…","GasUsed":9,"EventsRoot":{…}},"GasCost":{…},"ExecutionTrace":{…},"Error":"…","Duration":…}`.
fn invoc_result(exit_code: i64) -> Value {
    json!({
        "MsgCid": {"/": "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4"},
        "Msg": {"Version": 0, "To": "f01234", "From": "f05", "Nonce": 1, "Value": "0",
                "GasLimit": 0, "GasFeeCap": "0", "GasPremium": "0",
                "Method": METHOD_AUTHENTICATE_MESSAGE, "Params": ""},
        "MsgRct": {"ExitCode": exit_code, "Return": null, "GasUsed": 9,
                   "EventsRoot": null},
        "GasCost": null,
        "ExecutionTrace": {},
        "Error": if exit_code == 0 { "" } else { "actor error" },
        "Duration": 60000000000u64
    })
}

/// `### StateMinerInfo` — documented response
/// `{"Owner":"f01234","Worker":"f01234",…,"PeerId":"12D3KooW…","Multiaddrs":["Ynl0ZSBhcnJheQ=="],…}`.
fn miner_info(worker: &str, peer_id: Option<&PeerId>, addrs: &[Multiaddr]) -> Value {
    json!({
        "Owner": "f01002",
        "Worker": worker,
        "NewWorker": "<empty>",
        "ControlAddresses": [],
        "WorkerChangeEpoch": -1,
        "PeerId": peer_id.map(|p| p.to_base58()),
        "Multiaddrs": addrs.iter().map(|a| B64.encode(a.to_vec())).collect::<Vec<_>>(),
        "WindowPoStProofType": 8,
        "SectorSize": 34359738368u64,
        "WindowPoStPartitionSectors": 2349,
        "ConsensusFaultElapsed": -1,
        "PendingOwnerAddress": null,
        "Beneficiary": "f01002",
        "BeneficiaryTerm": {"Quota": "0", "UsedQuota": "0", "Expiration": 0},
        "PendingBeneficiaryTerm": null
    })
}

/// `### MpoolPushMessage` — documented response: a SignedMessage
/// `{"Message":{…},"Signature":{"Type":2,"Data":"…"},"CID":{"/":…}}`: the pushed message
/// back with its nonce, signed; the CID depends on the method (4 or 18).
fn signed_message(params: &Value) -> Value {
    let mut msg = params[0].clone();
    msg["Nonce"] = json!(17);
    let cid = push_cid(msg["Method"].as_u64().unwrap());
    json!({"Message": msg, "Signature": {"Type": 1, "Data": B64.encode([0u8; 65])}, "CID": {"/": cid}})
}

/// The CIDs the fake gives pushed messages (the documented example CIDs).
fn push_cid(method: u64) -> &'static str {
    match method {
        4 => "bafy2bzacebbpdegvr3i4cosewthysg5xkxpqfn2wfcz6mv2hmoktwbdxkax4s",
        _ => "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4",
    }
}

/// `### StateSearchMsg` — documented response: a MsgLookup
/// `{"Message":{…},"Receipt":{"ExitCode":0,"Return":"…","GasUsed":9,"EventsRoot":{…}},"ReturnDec":{},"TipSet":[…],"Height":10101}`;
/// `null` while the message is not on chain.
fn msg_lookup(cid: &str, exit_code: i64, height: i64) -> Value {
    json!({
        "Message": {"/": cid},
        "Receipt": {"ExitCode": exit_code, "Return": null, "GasUsed": 1_000_000, "EventsRoot": null},
        "ReturnDec": null,
        "TipSet": [{"/": HEAD_CID_1}],
        "Height": height
    })
}

// ------------------------------------------------------------------ helpers

fn a4() -> DealParams {
    DealParams::from_cbor(&golden("A4")).unwrap()
}

fn policy() -> Policy {
    Policy {
        miners: vec![Address::new_id(1000)],
        ..Policy::default()
    }
}

/// A FakeLotus under which golden A4 is acceptable: head 4 490 000, collateral min
/// 5 000 FIL·10⁻³, escrow 1000, datacap 32 GiB.
fn fake_for_a4() -> FakeLotus {
    let f = FakeLotus::start();
    f.set("ChainHead", chain_head(4_490_000));
    f.set(
        "StateDealProviderCollateralBounds",
        collateral_bounds("5000000000000", "100000000000000"),
    );
    f.set("StateMarketBalance", market_balance("1000", "0"));
    // `### StateVerifiedClientStatus` — documented response `"0"` (a decimal string; null
    // when the address has no datacap entry).
    f.set("StateVerifiedClientStatus", json!("34359738368"));
    f
}

fn short() -> Duration {
    Duration::from_secs(5)
}

fn rejection(p: &DealParams, facts: &ChainFacts) -> String {
    decide(p, facts, &policy(), None, None)
        .expect_err("must be rejected")
        .message
}

/// The tipset key argument every state call carried: the head's key.
fn assert_head_key(v: &Value) {
    assert_eq!(v, &json!([{"/": HEAD_CID_1}, {"/": HEAD_CID_2}]));
}

// ------------------------------------------------------------------ facts from RPC

#[test]
fn golden_a4_is_accepted_with_facts_from_rpc() {
    let f = fake_for_a4();
    let chain = f.chain(short(), short());
    let p = a4();
    let t = Instant::now();
    let facts = async_io::block_on(chain.facts_for(&p));
    eprintln!("facts gathered in {:?}", t.elapsed());
    let client = p.client_deal_proposal.proposal.client.clone();
    assert_eq!(facts.head_epoch, Some(4_490_000));
    assert_eq!(
        facts.client_key,
        Some(client.clone()),
        "f1 clients are their own key"
    );
    assert_eq!(facts.f4_authenticated, None);
    assert_eq!(
        facts.provider_collateral_min,
        Some(TokenAmount::from_u64(5_000_000_000_000))
    );
    assert_eq!(
        facts.client_balance.as_ref().unwrap().escrow,
        TokenAmount::from_u64(1000)
    );
    assert_eq!(
        facts.client_datacap,
        Some(Some(TokenAmount::from_u64(32 << 30)))
    );
    decide(&p, &facts, &policy(), None, None).expect("A4 accepted with facts from Lotus");

    // The requests as Lotus documents them.
    let head = f.calls("ChainHead");
    assert_eq!(head.len(), 1);
    assert_eq!(head[0].params, json!([]));
    assert_eq!(
        head[0].auth.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    // `### StateDealProviderCollateralBounds` inputs: [1032, true, [tipset key]].
    let b = f.calls("StateDealProviderCollateralBounds");
    assert_eq!(b[0].params[0], json!(34359738368u64));
    assert_eq!(b[0].params[1], json!(true));
    assert_head_key(&b[0].params[2]);
    // `### StateMarketBalance` / `### StateVerifiedClientStatus` inputs: ["f01234", [key]].
    for m in ["StateMarketBalance", "StateVerifiedClientStatus"] {
        let c = f.calls(m);
        assert_eq!(c[0].params[0], json!(client.to_string()), "{m}");
        assert_head_key(&c[0].params[1]);
    }
    assert!(f.calls("StateAccountKey").is_empty());
    assert!(f.calls("StateCall").is_empty());

    // Within the head refresh and the same epoch: no new ChainHead, no new bounds call.
    let again = async_io::block_on(chain.facts_for(&p));
    assert_eq!(again, facts);
    assert_eq!(f.calls("ChainHead").len(), 1);
    assert_eq!(f.calls("StateDealProviderCollateralBounds").len(), 1);
    assert_eq!(f.calls("StateMarketBalance").len(), 2);
}

#[test]
fn id_client_key_comes_from_state_account_key_and_is_cached() {
    let f = fake_for_a4();
    let key = a4().client_deal_proposal.proposal.client;
    // `### StateAccountKey` — documented response `"f01234"` (an address string).
    f.set("StateAccountKey", json!(key.to_string()));
    let chain = f.chain(short(), short());
    let mut p = a4();
    p.client_deal_proposal.proposal.client = Address::new_id(4242);
    let facts = async_io::block_on(chain.facts_for(&p));
    assert_eq!(facts.client_key, Some(key.clone()));
    let calls = f.calls("StateAccountKey");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].params[0], json!("f04242"));
    assert_head_key(&calls[0].params[1]);
    async_io::block_on(chain.facts_for(&p));
    assert_eq!(
        f.calls("StateAccountKey").len(),
        1,
        "account keys are cached"
    );
    assert_eq!(
        async_io::block_on(chain.account_key(&Address::new_id(4242))),
        Some(key)
    );
}

#[derive(Serialize_tuple)]
struct FvmAuthenticateMessageParams {
    #[serde(with = "strict_bytes")]
    signature: Vec<u8>,
    #[serde(with = "strict_bytes")]
    message: Vec<u8>,
}

#[test]
fn f4_client_is_authenticated_with_state_call() {
    let f = fake_for_a4();
    let mut sub = vec![4u8, 10];
    sub.extend_from_slice(&[0xab; 20]);
    let f4 = Address::from_bytes(&sub).unwrap();
    f.set("StateAccountKey", json!(f4.to_string()));
    f.set("StateCall", invoc_result(0));
    let chain = f.chain(short(), short());
    let mut p = a4();
    p.client_deal_proposal.proposal.client = f4.clone();
    let facts = async_io::block_on(chain.facts_for(&p));
    assert_eq!(facts.client_key, Some(f4.clone()));
    assert_eq!(facts.f4_authenticated, Some(true));
    // Signature check passes on the f4 route (the f4 deal then meets the other rules).
    decide(&p, &facts, &policy(), None, None).expect("f4 client authenticated");

    let c = f.calls("StateCall");
    assert_eq!(c.len(), 1);
    let msg = &c[0].params[0];
    assert_eq!(msg["From"], "f05");
    assert_eq!(msg["To"], json!(f4.to_string()));
    assert_eq!(msg["Method"], json!(2_643_134_072u64));
    assert_eq!(msg["Value"], "0");
    assert_head_key(&c[0].params[1]);
    let params = B64.decode(msg["Params"].as_str().unwrap()).unwrap();
    let oracle = fvm_ipld_encoding::to_vec(&FvmAuthenticateMessageParams {
        signature: p.client_deal_proposal.client_signature.data.clone(),
        message: p.client_deal_proposal.proposal.to_cbor(),
    })
    .unwrap();
    assert_eq!(params, oracle, "AuthenticateMessageParams bytes");

    // Exit code non-zero: an invalid signature.
    let f2 = fake_for_a4();
    f2.set("StateAccountKey", json!(f4.to_string()));
    f2.set("StateCall", invoc_result(16));
    let facts = async_io::block_on(f2.chain(short(), short()).facts_for(&p));
    assert_eq!(facts.f4_authenticated, Some(false));
    assert_eq!(
        rejection(&p, &facts),
        "failed validation: invalid signature"
    );
}

// ------------------------------------------------------------------ server errors

/// Each method failing with a JSON-RPC error gives its `server error: …` rejection.
#[test]
fn each_failing_method_gives_its_server_error() {
    let cases: &[(&str, &str)] = &[
        (
            "ChainHead",
            "failed validation: server error: getting chain head",
        ),
        (
            "StateDealProviderCollateralBounds",
            "failed validation: server error: getting collateral bounds",
        ),
        (
            "StateMarketBalance",
            "failed validation: server error: getting market balance",
        ),
        (
            "StateVerifiedClientStatus",
            "failed validation: server error: getting verified datacap",
        ),
    ];
    for (method, want) in cases {
        let f = fake_for_a4();
        f.fail(method);
        let facts = async_io::block_on(f.chain(short(), short()).facts_for(&a4()));
        assert_eq!(&rejection(&a4(), &facts), want, "{method} fails");
    }
    // StateAccountKey (f0 client) and StateCall (f4 client): the signature cannot be checked.
    let f = fake_for_a4();
    f.fail("StateAccountKey");
    let mut p = a4();
    p.client_deal_proposal.proposal.client = Address::new_id(4242);
    let facts = async_io::block_on(f.chain(short(), short()).facts_for(&p));
    assert_eq!(facts.client_key, None);
    assert_eq!(
        rejection(&p, &facts),
        "failed validation: server error: validating signature"
    );

    let f = fake_for_a4();
    let f4 = Address::from_bytes(&[
        4, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    ])
    .unwrap();
    f.set("StateAccountKey", json!(f4.to_string()));
    f.fail("StateCall");
    p.client_deal_proposal.proposal.client = f4;
    let facts = async_io::block_on(f.chain(short(), short()).facts_for(&p));
    assert_eq!(facts.f4_authenticated, None);
    assert_eq!(
        rejection(&p, &facts),
        "failed validation: server error: validating signature"
    );
}

/// A slow node: the budget turns late facts into `None` well before a client's deadline.
#[test]
fn slow_methods_become_server_errors_within_the_budget() {
    let cases: &[(&str, &str)] = &[
        (
            "ChainHead",
            "failed validation: server error: getting chain head",
        ),
        (
            "StateDealProviderCollateralBounds",
            "failed validation: server error: getting collateral bounds",
        ),
        (
            "StateMarketBalance",
            "failed validation: server error: getting market balance",
        ),
        (
            "StateVerifiedClientStatus",
            "failed validation: server error: getting verified datacap",
        ),
    ];
    let budget = Duration::from_millis(400);
    for (method, want) in cases {
        let f = fake_for_a4();
        f.delay(method, Duration::from_secs(3));
        let t = Instant::now();
        let facts = async_io::block_on(f.chain(short(), budget).facts_for(&a4()));
        let took = t.elapsed();
        assert!(
            took < budget + Duration::from_millis(600),
            "{method}: took {took:?}"
        );
        assert_eq!(&rejection(&a4(), &facts), want, "{method} slow");
    }
    // The per-call timeout works on its own too (budget larger than the call timeout).
    let f = fake_for_a4();
    f.delay("StateMarketBalance", Duration::from_secs(3));
    let t = Instant::now();
    let facts = async_io::block_on(
        f.chain(Duration::from_millis(300), Duration::from_secs(5))
            .facts_for(&a4()),
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(facts.client_balance, None);
    assert!(facts.provider_collateral_min.is_some());
    let e = async_io::block_on(
        f.client(Duration::from_millis(200))
            .state_market_balance(&Address::new_id(1), None),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no answer within"), "{e}");
}

#[test]
fn unreachable_lotus_is_a_server_error_quickly() {
    // Nothing listens on this port once the listener is dropped.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Endpoint::from_url(&format!("http://127.0.0.1:{port}/rpc/v1"), "").unwrap();
    let chain = LotusChain::new(
        LotusClient::new(e, Network::Mainnet, short()),
        short(),
        Duration::from_secs(3),
    );
    let t = Instant::now();
    let facts = async_io::block_on(chain.facts_for(&a4()));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(facts, ChainFacts::default());
    assert!(chain.describe().contains(&format!("127.0.0.1:{port}")));
}

// ------------------------------------------------------------------ miner info

#[derive(Serialize_tuple)]
struct FvmChangePeerIdParams {
    #[serde(with = "strict_bytes")]
    new_id: Vec<u8>,
}

#[derive(Serialize_tuple)]
struct FvmChangeMultiaddrsParams {
    new_multi_addrs: Vec<strict_bytes::ByteBuf>,
}

fn our_peer() -> PeerId {
    Keypair::ed25519_from_bytes([7u8; 32])
        .unwrap()
        .public()
        .to_peer_id()
}

fn announce() -> Vec<Multiaddr> {
    vec!["/dns/sp.example.com/tcp/443/wss".parse().unwrap()]
}

fn miners() -> Vec<(Address, bool)> {
    vec![
        (Address::new_id(1000), false),
        (Address::new_id(2000), true),
    ]
}

#[test]
fn miner_info_update_sends_the_right_messages_once() {
    let f = FakeLotus::start();
    f.set("ChainHead", chain_head(4_500_000));
    let old_peer = Keypair::ed25519_from_bytes([9u8; 32])
        .unwrap()
        .public()
        .to_peer_id();
    let old_addr: Multiaddr = "/ip4/1.2.3.4/tcp/24001".parse().unwrap();
    f.set(
        "StateMinerInfo",
        miner_info("f01001", Some(&old_peer), &[old_addr]),
    );
    f.set_fn("MpoolPushMessage", signed_message);
    let client = f.client(short());
    let up = MinerInfoUpdater::new(
        Arc::new(client),
        dealport_core::miner_info::default_max_fee(),
    );

    // 1. Both differ: ChangePeerID then ChangeMultiaddrs, from the worker to the miner.
    let out = async_io::block_on(up.check(&miners(), &our_peer(), &announce()));
    let pushes = f.calls("MpoolPushMessage");
    assert_eq!(pushes.len(), 2, "{out:?}");
    assert!(
        out.contains(&Outcome::Disabled {
            miner: Address::new_id(2000)
        }),
        "{out:?}"
    );
    let pid_oracle = fvm_ipld_encoding::to_vec(&FvmChangePeerIdParams {
        new_id: our_peer().to_bytes(),
    })
    .unwrap();
    let ma_oracle = fvm_ipld_encoding::to_vec(&FvmChangeMultiaddrsParams {
        new_multi_addrs: announce()
            .iter()
            .map(|a| strict_bytes::ByteBuf(a.to_vec()))
            .collect(),
    })
    .unwrap();
    for (push, (method, oracle)) in pushes
        .iter()
        .zip([(4u64, &pid_oracle), (18u64, &ma_oracle)])
    {
        let msg = &push.params[0];
        assert_eq!(msg["From"], "f01001");
        assert_eq!(msg["To"], "f01000");
        assert_eq!(msg["Value"], "0");
        assert_eq!(msg["Method"], json!(method));
        let params = B64.decode(msg["Params"].as_str().unwrap()).unwrap();
        assert_eq!(&params, oracle, "method {method} params");
        let spec = &push.params[1];
        assert_eq!(spec["MaxFee"], "20000000000000000");
        assert_eq!(spec["MsgUuid"].as_str().unwrap().len(), 36);
    }
    // The exact bytes: [h'0024080112 20…'] and [[h'37 0e sp.example.com 06 01bb de03']].
    assert_eq!(
        &pid_oracle[..8],
        &[0x81, 0x58, 0x26, 0x00, 0x24, 0x08, 0x01, 0x12]
    );
    assert_eq!(
        hex::encode(&ma_oracle),
        "8181\
         55\
         350e73702e6578616d706c652e636f6d\
         0601bb\
         de03"
    );
    assert!(
        f.calls("StateMinerInfo")
            .iter()
            .all(|c| c.params[0] == "f01000"),
        "disabled miner skipped"
    );
    assert_head_key(&f.calls("StateMinerInfo")[0].params[1]);
    assert_eq!(up.in_flight().len(), 2);

    // 2. Still pending (StateSearchMsg: null): nothing is sent again.
    f.set("StateSearchMsg", Value::Null);
    let out = async_io::block_on(up.check(&miners(), &our_peer(), &announce()));
    assert_eq!(f.calls("MpoolPushMessage").len(), 2, "{out:?}");
    assert!(
        out.iter()
            .filter(|o| matches!(o, Outcome::Pending { .. }))
            .count()
            == 2,
        "{out:?}"
    );
    let searches = f.calls("StateSearchMsg");
    assert_eq!(searches.len(), 2);
    // `### StateSearchMsg` inputs: [tipset key, {"/": cid}, limit, allowReplaced].
    let searched: Vec<&Value> = searches.iter().map(|c| &c.params).collect();
    assert!(
        searched.contains(&&json!([null, {"/": push_cid(4)}, -1, true])),
        "{searched:?}"
    );
    assert!(
        searched.contains(&&json!([null, {"/": push_cid(18)}, -1, true])),
        "{searched:?}"
    );

    // 3. Landed: the chain now matches; nothing sent, nothing in flight.
    f.set_fn("StateSearchMsg", |p| {
        msg_lookup(p[1]["/"].as_str().unwrap(), 0, 4_500_010)
    });
    f.set(
        "StateMinerInfo",
        miner_info("f01001", Some(&our_peer()), &announce()),
    );
    let out = async_io::block_on(up.check(&miners(), &our_peer(), &announce()));
    assert_eq!(f.calls("MpoolPushMessage").len(), 2);
    assert!(out.contains(&Outcome::UpToDate {
        miner: Address::new_id(1000),
        change: Change::PeerId
    }));
    assert!(out.contains(&Outcome::UpToDate {
        miner: Address::new_id(1000),
        change: Change::Multiaddrs
    }));
    assert!(up.in_flight().is_empty());
}

#[test]
fn miner_info_no_message_when_chain_matches() {
    let f = FakeLotus::start();
    f.set("ChainHead", chain_head(4_500_000));
    f.set(
        "StateMinerInfo",
        miner_info("f01001", Some(&our_peer()), &announce()),
    );
    let client = f.client(short());
    let up = MinerInfoUpdater::new(
        Arc::new(client),
        dealport_core::miner_info::default_max_fee(),
    );
    let out = async_io::block_on(up.check(&miners(), &our_peer(), &announce()));
    assert!(f.calls("MpoolPushMessage").is_empty(), "{out:?}");
    assert!(f.calls("StateSearchMsg").is_empty());
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Outcome::UpToDate { .. }))
            .count(),
        2
    );
}

#[test]
fn miner_info_failed_message_is_not_resent_at_once_and_errors_are_reported() {
    let f = FakeLotus::start();
    f.set("ChainHead", chain_head(4_500_000));
    f.set("StateMinerInfo", miner_info("f01001", None, &announce()));
    f.set_fn("MpoolPushMessage", signed_message);
    let client = f.client(short());
    let up = MinerInfoUpdater::new(
        Arc::new(client),
        dealport_core::miner_info::default_max_fee(),
    );
    let one = [(Address::new_id(1000), false)];
    async_io::block_on(up.check(&one, &our_peer(), &announce()));
    assert_eq!(
        f.calls("MpoolPushMessage").len(),
        1,
        "PeerId only: the addresses match"
    );
    assert_eq!(f.calls("MpoolPushMessage")[0].params[0]["Method"], json!(4));
    // It landed but failed (exit 18, forbidden): no resend in the same day.
    f.set("StateSearchMsg", msg_lookup(push_cid(4), 18, 4_500_005));
    let out = async_io::block_on(up.check(&one, &our_peer(), &announce()));
    assert_eq!(f.calls("MpoolPushMessage").len(), 1, "{out:?}");
    assert!(up.in_flight()[0].2.failed);
    // The chain call failing is reported, not panicked on.
    f.fail("StateMinerInfo");
    let out = async_io::block_on(up.check(&one, &our_peer(), &announce()));
    assert!(
        matches!(&out[0], Outcome::Error { what, .. } if what.contains("StateMinerInfo")),
        "{out:?}"
    );
}

// ------------------------------------------------------------------ in flight across restarts

/// A lease holder's updater sends both messages; a new updater over the same store (a
/// restart, or the next lease holder) takes them over and sends nothing while they are
/// pending; once they land and the chain matches the stored set is empty. A writer with a
/// stale fence cannot overwrite it.
async fn in_flight_messages_outlive_the_updater(store: Arc<dyn Store>) {
    let f = FakeLotus::start();
    f.set("ChainHead", chain_head(4_500_000));
    f.set("StateMinerInfo", miner_info("f01001", None, &[]));
    f.set_fn("MpoolPushMessage", signed_message);
    f.set("StateSearchMsg", Value::Null);
    let (gate, fence) = dealport_testkit::node::hold_lease(&store).await;
    let updater = || {
        MinerInfoUpdater::new(
            Arc::new(f.client(short())),
            dealport_core::miner_info::default_max_fee(),
        )
        .with_store(store.clone(), gate.clone())
    };
    let one = [(Address::new_id(1000), false)];

    let first = updater();
    assert_eq!(first.load().await.unwrap(), 0);
    first.check(&one, &our_peer(), &announce()).await;
    assert_eq!(f.calls("MpoolPushMessage").len(), 2);

    let second = updater();
    assert_eq!(second.load().await.unwrap(), 2);
    assert_eq!(second.in_flight(), first.in_flight());
    let out = second.check(&one, &our_peer(), &announce()).await;
    assert_eq!(f.calls("MpoolPushMessage").len(), 2, "{out:?}");
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Outcome::Pending { .. }))
            .count(),
        2,
        "{out:?}"
    );

    // A writer whose generation is gone cannot touch the stored set.
    let stale = Fence {
        node: "holder".into(),
        generation: fence.generation + 7,
    };
    assert!(matches!(
        store
            .put_leader_state(&stale, miner_info::IN_FLIGHT_STATE, b"[]")
            .await,
        Err(StoreError::Fenced { .. })
    ));

    // Landed and the chain matches: nothing in flight, and so in the store.
    f.set_fn("StateSearchMsg", |p| {
        msg_lookup(p[1]["/"].as_str().unwrap(), 0, 4_500_010)
    });
    f.set(
        "StateMinerInfo",
        miner_info("f01001", Some(&our_peer()), &announce()),
    );
    second.check(&one, &our_peer(), &announce()).await;
    assert!(second.in_flight().is_empty());
    assert_eq!(updater().load().await.unwrap(), 0);
    assert_eq!(f.calls("MpoolPushMessage").len(), 2);
}

#[test]
fn in_flight_messages_outlive_the_updater_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
    async_io::block_on(in_flight_messages_outlive_the_updater(store));
}

#[test]
fn in_flight_messages_outlive_the_updater_on_postgres() {
    let server = dealport_testkit::postgres::PgServer::start();
    async_io::block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::connect(&server.url(), PostgresOptions::default())
                .await
                .unwrap(),
        );
        in_flight_messages_outlive_the_updater(store).await;
    });
}

// ------------------------------------------------------------------ signed asks

/// `### WalletSign` — documented response: a Signature `{"Type":2,"Data":"Ynl0ZSBhcnJheQ=="}`.
/// The fake signs with a secp256k1-typed signature over nothing real (65 bytes of 7s).
#[test]
fn asks_are_signed_by_the_worker_over_the_storage_ask_cbor() {
    use dealport_core::{
        facts::AskTerms,
        wire::{AskRequest, Signature, StorageAsk},
    };
    use dealport_node::chain::asks::{AskSigner, ASK_DURATION_EPOCHS};
    let f = FakeLotus::start();
    f.set("ChainHead", chain_head(4_500_000));
    f.set("StateMinerInfo", miner_info("f01001", None, &[]));
    f.set(
        "WalletSign",
        json!({"Type": 1, "Data": B64.encode([7u8; 65])}),
    );
    let terms = AskTerms {
        price: TokenAmount::from_u64(50_000_000),
        verified_price: TokenAmount::from_u64(5_000_000),
        min_piece_size: 256,
        max_piece_size: 34_359_738_368,
    };
    let miner = Address::new_id(1000);
    let signer = AskSigner::new(Arc::new(f.client(short())), vec![(miner.clone(), terms)]);
    assert!(
        signer.current(&miner).is_none(),
        "nothing before the first signing"
    );
    assert_eq!(async_io::block_on(signer.refresh()), Ok(1));
    let calls = f.calls("WalletSign");
    assert_eq!(calls.len(), 1);
    // `### WalletSign` inputs: [address, base64 bytes]: the worker, over the ask's CBOR.
    assert_eq!(calls[0].params[0], "f01001");
    let signed_bytes = B64.decode(calls[0].params[1].as_str().unwrap()).unwrap();
    let ask = StorageAsk::from_cbor(&signed_bytes).unwrap();
    assert_eq!(ask.to_cbor(), signed_bytes);
    assert_eq!(ask.miner, miner);
    assert_eq!(ask.price, TokenAmount::from_u64(50_000_000));
    assert_eq!(ask.verified_price, TokenAmount::from_u64(5_000_000));
    assert_eq!(
        (ask.min_piece_size, ask.max_piece_size),
        (256, 34_359_738_368)
    );
    assert_eq!(ask.timestamp, 4_500_000);
    assert_eq!(ask.expiry, 4_500_000 + ASK_DURATION_EPOCHS);
    let current = signer.current(&miner).unwrap();
    assert_eq!(current.ask.as_ref(), Some(&ask));
    assert_eq!(
        current.signature,
        Some(Signature {
            sig_type: 1,
            data: vec![7u8; 65]
        })
    );
    // The stream's answer carries exactly that; another miner still gets null.
    let answer = dealport_core::ask::answer_ask(
        &AskRequest {
            miner: miner.clone(),
        },
        std::slice::from_ref(&miner),
        signer.current(&miner),
    );
    assert_eq!(answer.ask, Some(current));
    // Fresh: no second signature. Near expiry: signed again.
    assert_eq!(async_io::block_on(signer.refresh()), Ok(0));
    f.set(
        "ChainHead",
        chain_head(4_500_000 + ASK_DURATION_EPOCHS - 100),
    );
    assert_eq!(async_io::block_on(signer.refresh()), Ok(1));
    assert_eq!(f.calls("WalletSign").len(), 2);
    // A failing WalletSign is an error sentence; the last signed ask stays.
    f.set("ChainHead", chain_head(4_500_000 + 2 * ASK_DURATION_EPOCHS));
    f.fail("WalletSign");
    let err = async_io::block_on(signer.refresh()).unwrap_err();
    assert!(
        err.starts_with("cannot sign the ask of f01000: lotus Filecoin.WalletSign"),
        "{err}"
    );
    assert!(signer.current(&miner).is_some());
}
