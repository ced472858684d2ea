//! The lotus-miner hand-off (node/src/sealing/handoff.rs) against FakeMiner, a TEST
//! DOUBLE of lotus-miner (testkit; JSON shapes from filecoin-project/lotus
//! `documentation/en/api-v0-methods-miner.md`), with the real piece URLs on the real
//! HTTP server, the sled store under a lease fence, and the Lotus chain over FakeLotus
//! (`### ChainHead`). One round at a time, each failure and back-pressure sentence as
//! the deal's client reads it.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    publish::expired_error,
    sealing::{Timing, UNAUTHORIZED_STATUS},
    wire::{Cbor, Cid, DealParams, DealUuid, Network},
};
use dealport_node::{
    chain::{
        lotus::{Endpoint, LotusChain, LotusClient},
        ChainFactsSource,
    },
    exec::{TransferSettings, Transfers},
    http::{self, BoxFuture, HttpBackend, HttpConfig, StreamRoute},
    metrics::Metrics,
    sealing::{
        handoff::{intent_key, Handoff, HandoffSettings},
        miner::MinerClient,
        piece_url::PieceUrls,
    },
    service::{DealService, ServiceConfig},
    store::{sled::SledStore, Inserted, Store},
};
use dealport_testkit::node::{a4_config, golden, hold_lease, runtime};
use dealport_testkit::{
    commp::naive_commp,
    fake_lotus::FakeLotus,
    fake_miner::{commp_cid, FakeMiner, Piece},
};
use serde_json::json;

const TOKEN: &str = "admin-token";
const DEAL_ID: u64 = 4242;
/// Padded piece size of the test deals (unpadded 2032).
const PADDED: u64 = 2048;

struct Backend(Arc<PieceUrls>);

impl HttpBackend for Backend {
    fn relay_target(&self) -> BoxFuture<Result<dealport_node::http::RelayRoute, String>> {
        Box::pin(async { Err("none".to_owned()) })
    }
    fn health(&self) -> BoxFuture<(bool, serde_json::Value)> {
        Box::pin(async { (true, json!({})) })
    }
    fn banner(&self) -> String {
        String::new()
    }
    fn stream_route(
        &self,
        m: &::http::Method,
        p: &str,
        h: &::http::HeaderMap,
        _ip: std::net::IpAddr,
    ) -> Option<StreamRoute> {
        self.0.route(m, p, h)
    }
}

struct Fixture {
    handoff: Arc<Handoff>,
    store: Arc<dyn Store>,
    transfers: Arc<Transfers>,
    uuid: DealUuid,
    start_epoch: i64,
    _http: http::HttpHandle,
    _dir: tempfile::TempDir,
}

/// The data staged for the deal (1000 bytes; the piece is it padded with zeros).
fn data() -> Vec<u8> {
    (0..1000u32).map(|i| (i * 13 + 5) as u8).collect()
}

fn piece_cid_of(bytes: &[u8]) -> Cid {
    Cid::parse(&commp_cid(&naive_commp(bytes, PADDED))).unwrap()
}

/// A4 as a 2 KiB piece of [`data`].
fn piece_params() -> DealParams {
    let mut p = DealParams::from_cbor(&golden("A4")).unwrap();
    p.client_deal_proposal.proposal.piece_size = PADDED;
    p.client_deal_proposal.proposal.piece_cid = piece_cid_of(&data());
    p.transfer.size = data().len() as u64;
    p
}

/// The deal of `p`, its data in, published and confirmed as `chain_deal_id`.
fn confirmed(p: DealParams, chain_deal_id: u64) -> DealRecord {
    let mut rec = DealRecord::new_accepted(p.to_cbor(), p, "peer".into(), 0);
    for ev in [
        DealEvent::Transferred {
            bytes: data().len() as u64,
        },
        DealEvent::Published {
            publish_cid: Cid::dag_cbor_blake2b(b"psd"),
        },
        DealEvent::PublishConfirmed { chain_deal_id },
    ] {
        rec.apply(ev).unwrap();
    }
    rec
}

/// A4 as a 2 KiB piece of [`data`], at `PublishConfirmed` with `DEAL_ID`; `staged`: what
/// sits in staging (the real data, or other bytes). The head is `head_from_start`
/// epochs after the deal's start epoch.
async fn fixture(miner: &FakeMiner, token: &str, staged: &[u8], head_from_start: i64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("db"), runtime()).unwrap());
    let p = piece_params();
    let start_epoch = p.client_deal_proposal.proposal.start_epoch;
    let rec = confirmed(p, DEAL_ID);
    store.insert_new_deal(&rec).await.unwrap();

    let lotus = FakeLotus::start();
    // `### ChainHead`: `{"Cids":[{"/":…}],"Blocks":[…],"Height":4863283}`.
    lotus.set(
        "ChainHead",
        json!({"Cids": [{"/": "bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4"}],
               "Blocks": [], "Height": start_epoch + head_from_start}),
    );
    let lotus_ep = Endpoint::from_url(&format!("http://{}/rpc/v1", lotus.addr), "t").unwrap();
    let chain: Arc<dyn ChainFactsSource> = Arc::new(LotusChain::new(
        LotusClient::new(lotus_ep, Network::Mainnet, Duration::from_secs(5)),
        Duration::from_secs(5),
        Duration::from_millis(1),
    ));
    let config = a4_config();
    let service = DealService::new(
        store.clone(),
        chain,
        ServiceConfig {
            policy: config.policy(),
            network: Network::Mainnet,
            proposal_budget: config.proposal_budget(),
            verify_cache_capacity: 16,
        },
        Arc::new(Metrics::new()),
    );
    let (gate, _fence) = hold_lease(&store).await;
    service.set_lease_gate(gate);
    let staging = dir.path().join("staging");
    let transfers = Transfers::new(
        runtime(),
        service.clone(),
        TransferSettings::from_config(&config.transfer),
        &staging,
    );
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(transfers.staging.data_path(rec.uuid), staged).unwrap();
    let urls = PieceUrls::new(
        "",
        Duration::from_secs(60),
        runtime(),
        transfers.staging.clone(),
    );
    let http = http::start(
        runtime(),
        HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..HttpConfig::default()
        },
        Arc::new(Backend(urls.clone())),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    urls.http_bound(http.local_addr());
    let ep = Endpoint::from_url(&format!("http://{}/rpc/v0", miner.addr), token).unwrap();
    let client = MinerClient::new(
        LotusClient::new(ep, Network::Mainnet, Duration::from_secs(10)),
        Network::Mainnet,
    );
    let settings = HandoffSettings {
        timing: Timing {
            retry: Duration::ZERO,
            too_many_backoff: Duration::from_secs(300),
            too_many_give_up: Duration::from_secs(6 * 3600),
            intent_grace: Duration::ZERO,
        },
        sealing_buffer_epochs: 0,
        max_concurrent_add_piece: 2,
        poll: Duration::from_millis(10),
        index_first: false,
    };
    let handoff = Handoff::new(service, transfers.clone(), Arc::new(client), urls, settings);
    Fixture {
        handoff,
        store,
        transfers,
        uuid: rec.uuid,
        start_epoch,
        _http: http,
        _dir: dir,
    }
}

impl Fixture {
    /// One round, its add-piece calls made to the end.
    async fn round(&self) {
        for job in self.handoff.round().await {
            self.handoff.clone().add(job).await;
        }
    }
    async fn deal(&self) -> DealRecord {
        self.store.deal_by_uuid(self.uuid).await.unwrap().unwrap()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
fn a_good_piece_goes_to_a_sector_and_the_deal_completes() {
    block_on(async {
        let miner = FakeMiner::start(Duration::from_millis(30));
        miner.require_token(TOKEN);
        let f = fixture(&miner, TOKEN, &data(), -100).await;
        f.round().await;
        let d = f.deal().await;
        assert_eq!(d.checkpoint, Checkpoint::AddedPiece, "{d:?}");
        assert_eq!((d.sector_number, d.sector_offset), (Some(12), Some(0)));
        assert_eq!(d.sealing_status, "Sealing: AddPiece (sector 12)");
        assert!(
            !f.transfers.staging.data_path(f.uuid).exists(),
            "staging dropped"
        );
        assert_eq!(
            f.store.leader_state(&intent_key(f.uuid)).await.unwrap(),
            Some(vec![])
        );
        let until = Instant::now() + Duration::from_secs(10);
        let mut states = Vec::new();
        while f.deal().await.checkpoint != Checkpoint::Complete {
            assert!(Instant::now() < until, "not Complete: {states:?}");
            f.round().await;
            let s = f.deal().await.sealing_status;
            if states.last() != Some(&s) {
                states.push(s);
            }
        }
        assert!(
            states
                .iter()
                .any(|s| s == "Sealing: PreCommit1 (sector 12)"),
            "{states:?}"
        );
        assert_eq!(miner.add_calls(DEAL_ID), 1);
        assert!(f.deal().await.error.is_none());
    });
}

/// A deal at `AddedPiece` in `sector` with `chain_deal_id`: A4 under another UUID.
async fn deal_in_sector(f: &Fixture, n: u8, chain_deal_id: u64, sector: u64) -> DealUuid {
    let mut p = piece_params();
    p.deal_uuid = DealUuid([n; 16]);
    // A proposal of its own (the store keeps one deal per proposal CID).
    p.client_deal_proposal.proposal.start_epoch += i64::from(n);
    let mut rec = confirmed(p, chain_deal_id);
    rec.apply(DealEvent::AddedPiece {
        sector_number: sector,
        offset: 0,
    })
    .unwrap();
    let inserted = f.store.insert_new_deal(&rec).await.unwrap();
    assert_eq!(inserted, Inserted::Yes);
    rec.uuid
}

#[test]
fn a_sector_holding_several_deals_is_asked_about_once_a_round() {
    block_on(async {
        // Slow enough steps that the sector is still sealing at the first round.
        let miner = FakeMiner::start(Duration::from_millis(100));
        let f = fixture(&miner, "", &data(), -100).await;
        let ids = [5001, 5002, 5003];
        let piece = |deal_id| Piece {
            deal_id,
            padded: PADDED,
            piece_cid: piece_cid_of(&data()).to_string(),
        };
        let shared = miner.open_sector(ids.iter().map(|&id| piece(id)).collect());
        let mut deals = Vec::new();
        for (i, id) in ids.into_iter().enumerate() {
            deals.push(deal_in_sector(&f, 0xa0 + i as u8, id, shared).await);
        }
        // The first round also adds the fixture's own deal (a sector of its own), which
        // asks about no sector yet.
        f.round().await;
        assert_eq!(
            miner.status_calls(),
            1,
            "three deals in one sector, one call"
        );
        // All three from the one answer (the state it named depends on the clock).
        let mut shown = Vec::new();
        for &u in &deals {
            shown.push(
                f.store
                    .deal_by_uuid(u)
                    .await
                    .unwrap()
                    .unwrap()
                    .sealing_status,
            );
        }
        assert!(
            shown[0].ends_with(&format!("(sector {shared})")),
            "{shown:?}"
        );
        assert!(shown.iter().all(|s| *s == shown[0]), "{shown:?}");
        // Then one call a round for each of the two sectors, until all four are sealed.
        let until = Instant::now() + Duration::from_secs(10);
        let mut rounds = 1;
        loop {
            let mut done = 0;
            for &u in deals.iter().chain([&f.uuid]) {
                let d = f.store.deal_by_uuid(u).await.unwrap().unwrap();
                assert!(d.error.is_none(), "{d:?}");
                done += usize::from(d.checkpoint == Checkpoint::Complete);
            }
            if done == 4 {
                break;
            }
            assert!(Instant::now() < until, "{done} of 4 Complete");
            let before = miner.status_calls();
            f.round().await;
            rounds += 1;
            assert!(miner.status_calls() - before <= 2, "round {rounds}");
        }
    });
}

#[test]
fn a_failing_sector_fails_the_deal_naming_its_state() {
    block_on(async {
        let miner = FakeMiner::start(Duration::from_millis(30));
        miner.fail_deal(DEAL_ID);
        let f = fixture(&miner, "", &data(), -100).await;
        let until = Instant::now() + Duration::from_secs(10);
        while f.deal().await.error.is_none() {
            assert!(Instant::now() < until);
            f.round().await;
        }
        let d = f.deal().await;
        assert_eq!(d.checkpoint, Checkpoint::AddedPiece);
        assert_eq!(
            d.error.as_deref(),
            Some("sector 12 holding the deal's piece is FailedUnrecoverable: the deal will not be sealed")
        );
    });
}

#[test]
fn bytes_that_are_not_the_piece_are_refused_with_lotus_text() {
    block_on(async {
        let miner = FakeMiner::start(Duration::from_millis(30));
        let mut wrong = data();
        wrong[500] ^= 1;
        let f = fixture(&miner, "", &wrong, -100).await;
        f.round().await;
        let d = f.deal().await;
        let err = d.error.clone().unwrap_or_default();
        assert!(
            err.starts_with(&format!(
                "lotus-miner refused the piece: got unexpected piece CID: expected:{}, got:",
                piece_cid_of(&data())
            )),
            "{d:?}"
        );
        assert_eq!(d.checkpoint, Checkpoint::PublishConfirmed);
        assert!(
            !f.transfers.staging.data_path(f.uuid).exists(),
            "failed: staging dropped"
        );
    });
}

#[test]
fn a_start_epoch_too_close_fails_before_any_call() {
    block_on(async {
        let miner = FakeMiner::start(Duration::from_millis(30));
        let f = fixture(&miner, "", &data(), 1).await;
        f.round().await;
        let d = f.deal().await;
        assert_eq!(
            d.error.as_deref(),
            Some(expired_error(f.start_epoch, f.start_epoch + 1).as_str())
        );
        assert_eq!(miner.add_calls(DEAL_ID), 0);
    });
}

#[test]
fn unreachable_401_and_too_many_wait_with_their_sentence() {
    block_on(async {
        // 401: a wrong token.
        let miner = FakeMiner::start(Duration::from_millis(30));
        miner.require_token(TOKEN);
        let f = fixture(&miner, "not-the-token", &data(), -100).await;
        f.round().await;
        let d = f.deal().await;
        assert_eq!(
            (d.checkpoint, d.error.clone()),
            (Checkpoint::PublishConfirmed, None)
        );
        assert_eq!(d.sealing_status, UNAUTHORIZED_STATUS);
        assert_eq!(
            miner.add_calls(DEAL_ID),
            0,
            "the request never reached the method"
        );

        // Too many sectors sealing.
        let miner = FakeMiner::start(Duration::from_millis(30));
        miner.refuse_too_many(1);
        let f = fixture(&miner, "", &data(), -100).await;
        f.round().await;
        let d = f.deal().await;
        assert_eq!(
            (d.checkpoint, d.error.clone()),
            (Checkpoint::PublishConfirmed, None)
        );
        assert_eq!(
            d.sealing_status,
            "Waiting for lotus-miner: too many sectors sealing (curSealing: 8, maxSealing: 8); retrying every 300 s"
        );
        // Backing off: the next round does not call.
        f.round().await;
        assert_eq!(miner.add_calls(DEAL_ID), 1);

        // Unreachable: nothing listens there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let mut gone = miner.clone();
        gone.addr = format!("127.0.0.1:{port}").parse().unwrap();
        let f = fixture(&gone, "", &data(), -100).await;
        f.round().await;
        let d = f.deal().await;
        assert_eq!(
            (d.checkpoint, d.error.clone()),
            (Checkpoint::PublishConfirmed, None)
        );
        assert!(
            d.sealing_status
                .starts_with("Waiting for lotus-miner: unreachable (cannot connect: "),
            "{}",
            d.sealing_status
        );
    });
}

#[test]
fn a_lost_answer_is_found_in_the_sector_not_added_again() {
    block_on(async {
        let miner = FakeMiner::start(Duration::from_secs(60));
        miner.lose_answers(1);
        let f = fixture(&miner, "", &data(), -100).await;
        f.round().await;
        let d = f.deal().await;
        assert_eq!(d.checkpoint, Checkpoint::PublishConfirmed, "{d:?}");
        let intent = f
            .store
            .leader_state(&intent_key(f.uuid))
            .await
            .unwrap()
            .unwrap();
        let intent: dealport_core::sealing::Intent = serde_json::from_slice(&intent).unwrap();
        assert!(intent.may_have_arrived, "{intent:?}");
        f.round().await;
        let d = f.deal().await;
        assert_eq!(d.checkpoint, Checkpoint::AddedPiece, "{d:?}");
        assert_eq!(d.sector_number, Some(12));
        assert_eq!(miner.add_calls(DEAL_ID), 1);
    });
}
