//! The publisher (node/src/exec/publish.rs) against FakeLotus, a TEST DOUBLE of a Lotus
//! node's JSON-RPC v1 (no Lotus runs here). The canned answers copy the JSON shapes of
//! the documented examples in filecoin-project/lotus
//! `documentation/en/api-methods-v1-stable.md` (`### ChainHead`, `### StateMinerInfo`,
//! `### MpoolPushMessage`, `### StateSearchMsg`, `### ChainGetMessage`), cited at each.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine as _;
use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    publish::expired_error,
    wire::{
        Address, BitField, Cbor, Cid, DealParams, DealUuid, Network, PublishStorageDealsParams,
        PublishStorageDealsReturn, TokenAmount,
    },
};
use dealport_node::{
    chain::lotus::{Endpoint, LotusClient},
    exec::publish::{PublishSettings, Publisher, Round, INTENT_STATE},
    store::{Fence, LeaseGate},
};
use dealport_testkit::fake_lotus::FakeLotus;
use serde_json::{json, Value};

use dealport_testkit::node::{a4_config, golden, service_on_sled, ServiceOnSled};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const WORKER: &str = "f01001";

/// What the fake chain does with pushed messages: the params of each, which have landed
/// and with which exit code and valid-deal positions.
#[derive(Default)]
struct Chain {
    pushed: Vec<(String, Vec<u8>)>,
    landed: HashMap<String, (i64, Vec<u64>)>,
    /// Answers already given per `MsgUuid` of the send spec.
    by_msg_uuid: HashMap<String, Value>,
    /// Run once at the next push (after the message is in the pool).
    on_push: Option<Box<dyn FnOnce() + Send>>,
}

struct Fixture {
    fake: FakeLotus,
    chain: Arc<Mutex<Chain>>,
    svc: ServiceOnSled,
    a4: DealParams,
}

impl Fixture {
    fn new(head: i64) -> Fixture {
        let fake = FakeLotus::start();
        let chain = Arc::new(Mutex::new(Chain::default()));
        // `### ChainHead`: `{"Cids":[{"/":…}],"Blocks":[…],"Height":4863283}`.
        fake.set(
            "ChainHead",
            json!({"Cids": [{"/": "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4"}],
                   "Blocks": [], "Height": head}),
        );
        // `### StateMinerInfo`: `{"Owner":"f01234","Worker":"f01234",…}` (fields we read).
        fake.set(
            "StateMinerInfo",
            json!({"Owner": "f01002", "Worker": WORKER, "PeerId": null, "Multiaddrs": [],
                   "ControlAddresses": [], "SectorSize": 34359738368u64}),
        );
        // `### MpoolPushMessage`: a SignedMessage `{"Message":{…},"Signature":{…},"CID":{"/":…}}`.
        // As Lotus (node/impl/full/mpool.go, MpoolPushMessage: "Message already
        // processed"), a spec `MsgUuid` seen before gets the message already sent.
        let c = chain.clone();
        fake.set_fn("MpoolPushMessage", move |p: &Value| {
            let mut chain = c.lock().unwrap();
            let msg_uuid = p[1]["MsgUuid"].as_str().map(str::to_owned);
            if let Some(done) = msg_uuid.as_ref().and_then(|u| chain.by_msg_uuid.get(u)) {
                return done.clone();
            }
            let params = B64.decode(p[0]["Params"].as_str().unwrap()).unwrap();
            let n = chain.pushed.len() as u8;
            let cid = Cid::dag_cbor_blake2b(&[&params[..], &[n]].concat()).to_string();
            chain.pushed.push((cid.clone(), params));
            let answer = json!({"Message": p[0], "Signature": {"Type": 1, "Data": B64.encode([0u8; 65])},
                   "CID": {"/": cid}});
            if let Some(u) = msg_uuid {
                chain.by_msg_uuid.insert(u, answer.clone());
            }
            if let Some(hook) = chain.on_push.take() {
                hook();
            }
            answer
        });
        // `### ChainGetMessage`: a Message `{"Version":0,"To":"f01234",…,"Params":"Ynl0ZSBhcnJheQ=="}`.
        let c = chain.clone();
        fake.set_fn("ChainGetMessage", move |p: &Value| {
            let cid = p[0]["/"].as_str().unwrap();
            let chain = c.lock().unwrap();
            let (_, params) = chain.pushed.iter().find(|(c, _)| c == cid).unwrap();
            json!({"Version": 0, "To": "f05", "From": WORKER, "Nonce": 3, "Value": "0",
                   "GasLimit": 25_000_000, "GasFeeCap": "100", "GasPremium": "100",
                   "Method": 4, "Params": B64.encode(params), "CID": {"/": cid}})
        });
        // `### StateSearchMsg`: a MsgLookup `{"Message":{…},"Receipt":{"ExitCode":0,"Return":"…",…},…,"Height":10101}`,
        // `null` until landed. The return: deal IDs 1000 + position for the valid positions.
        let c = chain.clone();
        fake.set_fn("StateSearchMsg", move |p: &Value| {
            let cid = p[1]["/"].as_str().unwrap();
            let chain = c.lock().unwrap();
            match chain.landed.get(cid) {
                None => Value::Null,
                Some((exit, valid)) => {
                    let ret = PublishStorageDealsReturn {
                        ids: valid.iter().map(|i| 1000 + i).collect(),
                        valid_deals: BitField::from_bits(valid.iter().copied()),
                    };
                    let ret = if *exit == 0 { json!(B64.encode(ret.to_cbor())) } else { Value::Null };
                    json!({"Message": {"/": cid},
                           "Receipt": {"ExitCode": exit, "Return": ret, "GasUsed": 1_000_000, "EventsRoot": null},
                           "ReturnDec": null, "TipSet": [], "Height": head + 1})
                }
            }
        });
        let svc = service_on_sled(&a4_config());
        let a4 = DealParams::from_cbor(&golden("A4")).unwrap();
        Fixture {
            fake,
            chain,
            svc,
            a4,
        }
    }

    fn publisher(&self, max: usize, period: Duration) -> Arc<Publisher> {
        let endpoint = Endpoint::from_api_info(&self.fake.api_info("token")).unwrap();
        let lotus = LotusClient::new(endpoint, Network::Mainnet, Duration::from_secs(5));
        Publisher::new(
            self.svc.service.clone(),
            Arc::new(lotus),
            PublishSettings {
                wallet: None,
                max_deals_per_message: max,
                period,
                max_fee: TokenAmount::from_u64(500_000_000_000_000_000),
                poll: Duration::from_secs(1),
                sealing_buffer_epochs: 2880,
            },
        )
    }

    /// Deal `n`: A4 with its own UUID and start epoch, stored and `Transferred`.
    async fn transferred(&self, n: u8) -> DealRecord {
        let mut p = self.a4.clone();
        p.deal_uuid = DealUuid([n; 16]);
        p.client_deal_proposal.proposal.start_epoch += i64::from(n);
        let rec = DealRecord::new_accepted(p.to_cbor(), p.clone(), "peer".into(), 0);
        self.svc.store.insert_new_deal(&rec).await.unwrap();
        let bytes = p.transfer.size;
        self.svc
            .service
            .apply_event(p.deal_uuid, DealEvent::Transferred { bytes })
            .await
            .unwrap()
    }

    async fn deal(&self, n: u8) -> DealRecord {
        self.svc
            .store
            .deal_by_uuid(DealUuid([n; 16]))
            .await
            .unwrap()
            .unwrap()
    }

    fn land(&self, cid: &str, exit: i64, valid: &[u64]) {
        let mut c = self.chain.lock().unwrap();
        c.landed.insert(cid.to_owned(), (exit, valid.to_vec()));
    }

    fn pushed(&self) -> Vec<(String, Vec<u8>)> {
        self.chain.lock().unwrap().pushed.clone()
    }

    /// Hold the (sled) lease and fence the service's writes with it, as in a node.
    async fn lease_gate(&self) -> (Arc<LeaseGate>, Fence) {
        let (gate, fence) = dealport_testkit::node::hold_lease(&self.svc.store).await;
        self.svc.service.set_lease_gate(gate.clone());
        (gate, fence)
    }
}

fn start(a4: &DealParams) -> i64 {
    a4.client_deal_proposal.proposal.start_epoch
}

#[test]
fn ten_deals_go_out_as_eight_now_and_get_their_deal_ids_once_landed() {
    dealport_testkit::node::run(Duration::from_secs(60), async {
        let f = Fixture::new(start(&DealParams::from_cbor(&golden("A4")).unwrap()) - 10_000);
        let mut deals = Vec::new();
        for n in 1..=10 {
            deals.push(f.transferred(n).await);
        }
        let p = f.publisher(8, Duration::from_secs(3600));
        let r = p.round().await;
        assert_eq!(r.sent.len(), 1, "{r:?}");
        let pushed = f.pushed();
        let (cid, params) = &pushed[0];
        // Exactly the eight that waited (all equally: UUID order), in UUID order.
        let want = PublishStorageDealsParams {
            deals: deals[..8]
                .iter()
                .map(|d| d.params.client_deal_proposal.clone())
                .collect(),
        };
        assert_eq!(params, &want.to_cbor());
        let push = &f.fake.calls("MpoolPushMessage")[0].params;
        assert_eq!(push[0]["To"], "f05");
        assert_eq!(push[0]["From"], WORKER);
        assert_eq!(push[0]["Method"], 4);
        assert_eq!(push[1]["MaxFee"], "500000000000000000");
        for d in &deals[..8] {
            let d = f.deal(d.uuid.0[0]).await;
            assert_eq!(d.checkpoint, Checkpoint::Published);
            assert_eq!(
                d.publish_cid.as_ref().map(Cid::to_string).as_deref(),
                Some(&cid[..])
            );
        }
        assert_eq!(f.deal(9).await.checkpoint, Checkpoint::Transferred);

        // Not landed yet: nothing new, nothing sent twice.
        assert_eq!(p.round().await, Round::default());
        assert_eq!(f.fake.calls("MpoolPushMessage").len(), 1);

        f.land(cid, 0, &(0..8).collect::<Vec<_>>());
        let r = p.round().await;
        assert_eq!(r.confirmed.len(), 8, "{r:?}");
        for (i, d) in deals[..8].iter().enumerate() {
            let d = f.deal(d.uuid.0[0]).await;
            assert_eq!(d.checkpoint, Checkpoint::PublishConfirmed);
            assert_eq!(d.chain_deal_id, 1000 + i as u64);
        }
    });
}

#[test]
fn a_partial_batch_goes_out_once_its_period_has_passed() {
    dealport_testkit::node::run(Duration::from_secs(60), async {
        let f = Fixture::new(start(&DealParams::from_cbor(&golden("A4")).unwrap()) - 10_000);
        f.transferred(1).await;
        f.transferred(2).await;
        let p = f.publisher(8, Duration::from_millis(300));
        assert!(p.round().await.sent.is_empty());
        async_io::Timer::after(Duration::from_millis(350)).await;
        assert_eq!(p.round().await.sent.len(), 1);
        assert_eq!(f.deal(1).await.checkpoint, Checkpoint::Published);
        assert_eq!(f.deal(2).await.checkpoint, Checkpoint::Published);
    });
}

#[test]
fn a_deal_too_close_to_its_start_fails_without_a_message() {
    dealport_testkit::node::run(Duration::from_secs(60), async {
        let a4 = DealParams::from_cbor(&golden("A4")).unwrap();
        let head = start(&a4) - 2000; // inside the 2880-epoch sealing buffer
        let f = Fixture::new(head);
        f.transferred(1).await;
        let r = f.publisher(8, Duration::ZERO).round().await;
        assert!(r.sent.is_empty());
        let d = f.deal(1).await;
        assert_eq!(d.error, Some(expired_error(start(&a4) + 1, head)));
        assert!(f.fake.calls("MpoolPushMessage").is_empty());
    });
}

#[test]
fn a_failed_message_fails_its_deals_and_invalid_deals_fail_alone() {
    dealport_testkit::node::run(Duration::from_secs(60), async {
        let f = Fixture::new(start(&DealParams::from_cbor(&golden("A4")).unwrap()) - 10_000);
        for n in 1..=3 {
            f.transferred(n).await;
        }
        let p = f.publisher(2, Duration::ZERO);
        assert_eq!(p.round().await.sent.len(), 2);
        let pushed = f.pushed();
        f.land(&pushed[0].0, 16, &[]);
        f.land(&pushed[1].0, 0, &[]);
        p.round().await;
        for n in 1..=2 {
            assert_eq!(
                f.deal(n).await.error,
                Some(format!(
                    "publish message {} failed on chain with exit code 16",
                    pushed[0].0
                ))
            );
        }
        assert_eq!(
            f.deal(3).await.error,
            Some(format!(
                "the market actor did not accept the deal in publish message {}",
                pushed[1].0
            ))
        );
    });
}

#[test]
fn a_new_publisher_waits_for_the_message_already_sent() {
    dealport_testkit::node::run(Duration::from_secs(60), async {
        let f = Fixture::new(start(&DealParams::from_cbor(&golden("A4")).unwrap()) - 10_000);
        for n in 1..=3 {
            f.transferred(n).await;
        }
        f.publisher(8, Duration::ZERO).round().await;
        // A restart, or another node taking the lease: a fresh publisher, same store.
        let again = f.publisher(8, Duration::ZERO);
        assert!(again.round().await.sent.is_empty());
        assert_eq!(f.fake.calls("MpoolPushMessage").len(), 1);
        let cid = f.pushed()[0].0.clone();
        f.land(&cid, 0, &[0, 2]);
        let r = again.round().await;
        let ids: HashSet<u64> = r.confirmed.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids, HashSet::from([1000, 1002]));
        assert_eq!(f.deal(1).await.chain_deal_id, 1000);
        assert_eq!(f.deal(3).await.chain_deal_id, 1002);
        assert!(f.deal(2).await.error.is_some());
    });
}

/// The node stops between Lotus taking the message and the store recording it (here:
/// the node loses its lease right then). The next round, on a fresh publisher, pushes
/// exactly that batch again first: Lotus answers with the message already sent, its
/// deals record it, and a deal that arrived meanwhile goes out in a message of its own,
/// so no deal is in two messages (the second would fail it on chain).
#[test]
fn a_batch_pushed_but_not_recorded_is_not_published_twice() {
    dealport_testkit::node::run(Duration::from_secs(60), async {
        let f = Fixture::new(start(&DealParams::from_cbor(&golden("A4")).unwrap()) - 10_000);
        let (gate, fence) = f.lease_gate().await;
        for n in 1..=2 {
            f.transferred(n).await;
        }
        let g = gate.clone();
        f.chain.lock().unwrap().on_push = Some(Box::new(move || g.close()));
        let r = f.publisher(8, Duration::ZERO).round().await;
        assert_eq!(r.sent.len(), 1, "{r:?}");
        let first = f.pushed()[0].0.clone();
        for n in 1..=2 {
            let d = f.deal(n).await;
            assert_eq!(
                (d.checkpoint, d.publish_cid),
                (Checkpoint::Transferred, None)
            );
        }

        // Back as the holder (a restart, or the next node), with one more deal waiting.
        gate.open(fence, Instant::now() + Duration::from_secs(600));
        f.transferred(3).await;
        let r = f.publisher(8, Duration::ZERO).round().await;
        assert_eq!(r.sent.len(), 2, "{r:?}");
        for n in 1..=2 {
            let d = f.deal(n).await;
            assert_eq!(d.checkpoint, Checkpoint::Published);
            assert_eq!(d.publish_cid.unwrap().to_string(), first);
        }
        let pushed = f.pushed();
        assert_eq!(pushed.len(), 2, "one new message, for deal 3 alone");
        let third = PublishStorageDealsParams::from_cbor(&pushed[1].1).unwrap();
        assert_eq!(third.deals.len(), 1);
        assert_eq!(
            f.deal(3).await.publish_cid.unwrap().to_string(),
            pushed[1].0
        );
        // Both batches recorded: nothing left to push again.
        let saved = f.svc.store.leader_state(INTENT_STATE).await.unwrap();
        assert_eq!(saved.as_deref(), Some(&b""[..]));
        assert!(f.publisher(8, Duration::ZERO).round().await.sent.is_empty());
    });
}

#[test]
fn a_failing_push_is_retried_and_shown_in_sealing_status() {
    dealport_testkit::node::run(Duration::from_secs(60), async {
        let f = Fixture::new(start(&DealParams::from_cbor(&golden("A4")).unwrap()) - 10_000);
        f.transferred(1).await;
        f.fake.fail("MpoolPushMessage");
        let p = f.publisher(8, Duration::ZERO);
        assert!(p.round().await.sent.is_empty());
        let d = f.deal(1).await;
        assert_eq!(d.checkpoint, Checkpoint::Transferred);
        assert!(
            d.sealing_status
                .starts_with("publishing failed, retrying: lotus Filecoin.MpoolPushMessage"),
            "{}",
            d.sealing_status
        );
        f.fake.heal("MpoolPushMessage");
        assert_eq!(p.round().await.sent.len(), 1);
        assert_eq!(f.deal(1).await.checkpoint, Checkpoint::Published);
    });
}

#[test]
fn the_configured_wallet_sends_instead_of_the_worker() {
    dealport_testkit::node::run(Duration::from_secs(60), async {
        let f = Fixture::new(start(&DealParams::from_cbor(&golden("A4")).unwrap()) - 10_000);
        f.transferred(1).await;
        let endpoint = Endpoint::from_api_info(&f.fake.api_info("token")).unwrap();
        let lotus = LotusClient::new(endpoint, Network::Mainnet, Duration::from_secs(5));
        let settings = PublishSettings {
            wallet: Some(Address::new_id(1234)),
            max_deals_per_message: 8,
            period: Duration::ZERO,
            max_fee: TokenAmount::from_u64(1),
            poll: Duration::from_secs(1),
            sealing_buffer_epochs: 2880,
        };
        Publisher::new(f.svc.service.clone(), Arc::new(lotus), settings)
            .round()
            .await;
        let push = &f.fake.calls("MpoolPushMessage")[0].params;
        assert_eq!(push[0]["From"], "f01234");
        assert!(f.fake.calls("StateMinerInfo").is_empty());
    });
}
