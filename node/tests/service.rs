//! The MK12 service against the real sled store and an offline chain, without sockets.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    facts::ChainFacts,
    piece_index::{BlockEntry, BlockLocation, IndexState},
    wire::{Address, Cbor, Cid, DealParams, DealResponse, DealStatusResponse, DealUuid},
};
use dealport_node::{
    chain::{ChainFactsSource, ChainFuture, OfflineChain},
    config::Config,
    metrics::Metrics,
    service::{ApplyError, DealService, ServiceConfig, NOT_HOLDER, SAVE_FAILED},
    store::{
        sled::SledStore, Fence, Inserted, LeaseGate, LeaseGrant, LeaseRead, RelayTarget, Store,
        StoreError, StoreFuture,
    },
};

use dealport_testkit::node::{a4_config, golden, service_on_sled, ServiceOnSled, ThreadRuntime};

/// Proposals in these tests arrive as on `/fil/storage/mk/1.2.1`.
const DEAL: &str = "/fil/storage/mk/1.2.1";

fn service_with(
    config: &Config,
    store: Arc<dyn Store>,
    chain: Arc<dyn ChainFactsSource>,
) -> DealService {
    DealService::new(
        store,
        chain,
        ServiceConfig {
            policy: config.policy(),
            network: config.chain.network.address_network(),
            proposal_budget: Duration::from_millis(300),
            verify_cache_capacity: 16,
        },
        Arc::new(Metrics::new()),
    )
}

fn offline(config: &Config) -> Arc<dyn ChainFactsSource> {
    Arc::new(OfflineChain::new(
        config.chain.network,
        config.chain.offline.clone(),
    ))
}

#[test]
fn accept_resend_duplicate_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = a4_config();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(dir.path(), Arc::new(ThreadRuntime)).unwrap());
    let svc = service_with(&config, store.clone(), offline(&config));
    futures::executor::block_on(async {
        let a4 = golden("A4");
        assert_eq!(
            svc.propose(DEAL, a4.clone(), "p".into()).await,
            Some(DealResponse::accepted())
        );
        assert_eq!(
            svc.propose(DEAL, a4.clone(), "p".into()).await,
            Some(DealResponse::accepted())
        );
        // Same UUID, different proposal: Boost's duplicate rejection.
        let mut p = DealParams::from_cbor(&a4).unwrap();
        p.is_offline = true;
        let r = svc.propose(DEAL, p.to_cbor(), "p".into()).await.unwrap();
        assert!(!r.accepted);
        // Undecodable: no answer at all.
        assert_eq!(svc.propose(DEAL, vec![0x01], "p".into()).await, None);

        let st = DealStatusResponse::from_cbor(&svc.status(&golden("S1")).await.unwrap().to_cbor())
            .unwrap();
        assert_eq!(st.deal_status.unwrap().status, "Accepted");
        assert_eq!(svc.status(&[0x01]).await, None);

        let m = svc.metrics();
        assert_eq!(m.proposals_count(DEAL, "accepted"), 1);
        assert_eq!(m.proposals_count(DEAL, "accepted_again"), 1);
        assert_eq!(m.proposals_count(DEAL, "duplicate_proposal"), 1);
        assert_eq!(m.undecodable_count(DEAL), 1);
        assert_eq!(m.undecodable_count("/fil/storage/status/1.2.0"), 1);
        assert_eq!(m.status_count("ok"), 1);
        // The Prometheus page carries the same counts.
        let page = m.encode();
        assert!(
            page.contains(r#"dealport_deal_proposals_total{protocol="/fil/storage/mk/1.2.1",outcome="accepted"} 1"#),
            "{page}"
        );
        assert_eq!(store.list_deals().await.unwrap().len(), 1);
    });
}

#[test]
fn wrong_provider_is_rejected_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = a4_config();
    config.miners[0].address = Address::new_id(2000);
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(dir.path(), Arc::new(ThreadRuntime)).unwrap());
    let svc = service_with(&config, store, offline(&config));
    let r = futures::executor::block_on(svc.propose(DEAL, golden("A4"), "p".into())).unwrap();
    assert!(!r.accepted);
    assert!(
        r.message
            .starts_with("failed validation: incorrect provider for deal"),
        "{}",
        r.message
    );
    assert_eq!(svc.metrics().proposals_count(DEAL, "wrong_provider"), 1);
}

/// A chain that never answers within the budget.
struct SlowChain(OfflineChain);

impl ChainFactsSource for SlowChain {
    fn facts_for<'a>(&'a self, params: &'a DealParams) -> ChainFuture<'a, ChainFacts> {
        Box::pin(async move {
            async_io::Timer::after(Duration::from_secs(5)).await;
            self.0.facts_now(params)
        })
    }
    fn head_epoch(&self) -> ChainFuture<'_, Option<i64>> {
        self.0.head_epoch()
    }
    fn account_key<'a>(&'a self, addr: &'a Address) -> ChainFuture<'a, Option<Address>> {
        self.0.account_key(addr)
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

#[test]
fn slow_chain_gets_a_server_error_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = a4_config();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(dir.path(), Arc::new(ThreadRuntime)).unwrap());
    let chain = Arc::new(SlowChain(OfflineChain::new(
        config.chain.network,
        config.chain.offline.clone(),
    )));
    let svc = service_with(&config, store, chain);
    let started = std::time::Instant::now();
    let r = futures::executor::block_on(svc.propose(DEAL, golden("A4"), "p".into())).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!r.accepted);
    assert!(r.message.starts_with("server error: "), "{}", r.message);
}

/// The sled store with two faults to order: inserts that fail, and a deal planted (as a
/// concurrent proposal would) right after the next UUID lookup has missed it.
struct HookedStore {
    inner: SledStore,
    fail_inserts: bool,
    plant_after_uuid_lookup: std::sync::Mutex<Option<DealRecord>>,
}

impl HookedStore {
    fn new(dir: &std::path::Path) -> HookedStore {
        HookedStore {
            inner: SledStore::open(dir, Arc::new(ThreadRuntime)).unwrap(),
            fail_inserts: false,
            plant_after_uuid_lookup: std::sync::Mutex::new(None),
        }
    }
}

impl Store for HookedStore {
    fn identity_or_create<'a>(
        &'a self,
        g: Box<dyn FnOnce() -> Vec<u8> + Send>,
    ) -> StoreFuture<'a, (Vec<u8>, bool)> {
        self.inner.identity_or_create(g)
    }
    fn identity(&self) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.inner.identity()
    }
    fn insert_new_deal<'a>(&'a self, deal: &'a DealRecord) -> StoreFuture<'a, Inserted> {
        if self.fail_inserts {
            return Box::pin(async { Err(StoreError::Backend("disk full".into())) });
        }
        self.inner.insert_new_deal(deal)
    }
    fn update_deal<'a>(&'a self, deal: &'a DealRecord) -> StoreFuture<'a, ()> {
        self.inner.update_deal(deal)
    }
    fn deal_by_uuid(&self, uuid: DealUuid) -> StoreFuture<'_, Option<DealRecord>> {
        Box::pin(async move {
            let found = self.inner.deal_by_uuid(uuid).await?;
            let plant = self.plant_after_uuid_lookup.lock().unwrap().take();
            if let Some(d) = plant {
                self.inner.insert_new_deal(&d).await?;
            }
            Ok(found)
        })
    }
    fn deal_by_proposal_cid<'a>(&'a self, cid: &'a Cid) -> StoreFuture<'a, Option<DealRecord>> {
        self.inner.deal_by_proposal_cid(cid)
    }
    fn deal_by_signed_proposal_cid<'a>(
        &'a self,
        cid: &'a Cid,
    ) -> StoreFuture<'a, Option<DealRecord>> {
        self.inner.deal_by_signed_proposal_cid(cid)
    }
    fn list_deals(&self) -> StoreFuture<'_, Vec<DealRecord>> {
        self.inner.list_deals()
    }
    fn list_deals_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealRecord>> {
        self.inner.list_deals_page(after, limit)
    }
    fn live_deals_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealRecord>> {
        self.inner.live_deals_at(checkpoint, after, limit)
    }
    fn live_uuids_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        self.inner.live_uuids_at(checkpoint, after, limit)
    }
    fn deals_by_piece_cid<'a>(
        &'a self,
        piece: &'a Cid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<DealRecord>> {
        self.inner.deals_by_piece_cid(piece, limit)
    }
    fn query_deals<'a>(
        &'a self,
        q: &'a dealport_core::dashboard::DealQuery,
    ) -> StoreFuture<'a, Vec<DealRecord>> {
        self.inner.query_deals(q)
    }
    fn state_counts(&self) -> StoreFuture<'_, dealport_core::dashboard::StateCounts> {
        self.inner.state_counts()
    }
    fn hourly_counts(
        &self,
        since_hour: i64,
    ) -> StoreFuture<'_, Vec<dealport_core::dashboard::HourCount>> {
        self.inner.hourly_counts(since_hour)
    }
    fn deal_timeline(&self, uuid: DealUuid) -> StoreFuture<'_, Vec<(u8, i64)>> {
        self.inner.deal_timeline(uuid)
    }
    fn describe(&self) -> String {
        "hooked sled".into()
    }
    fn insert_new_deal_fenced<'a>(
        &'a self,
        fence: &'a Fence,
        deal: &'a DealRecord,
    ) -> StoreFuture<'a, Inserted> {
        if self.fail_inserts {
            return Box::pin(async { Err(StoreError::Backend("disk full".into())) });
        }
        self.inner.insert_new_deal_fenced(fence, deal)
    }
    fn update_deal_fenced<'a>(
        &'a self,
        fence: &'a Fence,
        deal: &'a DealRecord,
    ) -> StoreFuture<'a, ()> {
        self.inner.update_deal_fenced(fence, deal)
    }
    fn read_lease(&self) -> StoreFuture<'_, LeaseRead> {
        self.inner.read_lease()
    }
    fn try_acquire<'a>(
        &'a self,
        node: &'a str,
        expect_generation: Option<u64>,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<LeaseGrant>> {
        self.inner.try_acquire(node, expect_generation, ttl)
    }
    fn renew<'a>(&'a self, fence: &'a Fence, ttl: Duration) -> StoreFuture<'a, Option<LeaseGrant>> {
        self.inner.renew(fence, ttl)
    }
    fn release<'a>(&'a self, fence: &'a Fence) -> StoreFuture<'a, bool> {
        self.inner.release(fence)
    }
    fn set_local_listen<'a>(
        &'a self,
        fence: &'a Fence,
        local_listen: &'a str,
        announce: &'a [String],
    ) -> StoreFuture<'a, ()> {
        self.inner.set_local_listen(fence, local_listen, announce)
    }
    fn leader_state<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.inner.leader_state(name)
    }
    fn put_leader_state<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
        value: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        self.inner.put_leader_state(fence, name, value)
    }
    fn relay_target(&self) -> StoreFuture<'_, Option<RelayTarget>> {
        self.inner.relay_target()
    }
    fn piece_index_state<'a>(&'a self, piece: &'a Cid) -> StoreFuture<'a, IndexState> {
        self.inner.piece_index_state(piece)
    }
    fn put_piece_blocks<'a>(
        &'a self,
        piece: &'a Cid,
        entries: &'a [BlockEntry],
    ) -> StoreFuture<'a, ()> {
        self.inner.put_piece_blocks(piece, entries)
    }
    fn set_piece_index_state<'a>(
        &'a self,
        piece: &'a Cid,
        state: &'a IndexState,
    ) -> StoreFuture<'a, ()> {
        self.inner.set_piece_index_state(piece, state)
    }
    fn piece_blocks_page<'a>(
        &'a self,
        piece: &'a Cid,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<BlockEntry>> {
        self.inner.piece_blocks_page(piece, after, limit)
    }
    fn blocks_by_multihash<'a>(
        &'a self,
        multihash: &'a [u8],
        limit: usize,
    ) -> StoreFuture<'a, Vec<BlockLocation>> {
        self.inner.blocks_by_multihash(multihash, limit)
    }
    fn ipni_head(&self) -> StoreFuture<'_, Option<dealport_node::store::IpniHead>> {
        self.inner.ipni_head()
    }
    fn ipni_block<'a>(&'a self, cid: &'a Cid) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.inner.ipni_block(cid)
    }
    fn put_ipni_chunk<'a>(&'a self, block: &'a dealport_core::ipni::Block) -> StoreFuture<'a, ()> {
        self.inner.put_ipni_chunk(block)
    }
    fn publish_ipni_ad<'a>(
        &'a self,
        fence: &'a Fence,
        ad: &'a dealport_node::store::IpniPublish,
    ) -> StoreFuture<'a, dealport_node::store::Published> {
        self.inner.publish_ipni_ad(fence, ad)
    }
    fn ipni_ads_of_deal(
        &self,
        deal: DealUuid,
    ) -> StoreFuture<'_, Vec<dealport_node::store::IpniAdRef>> {
        self.inner.ipni_ads_of_deal(deal)
    }
    fn ipni_announced_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        self.inner.ipni_announced_page(after, limit)
    }
}

#[test]
fn store_failure_is_answered_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let config = a4_config();
    let store: Arc<dyn Store> = Arc::new(HookedStore {
        fail_inserts: true,
        ..HookedStore::new(dir.path())
    });
    let svc = service_with(&config, store, offline(&config));
    let r = futures::executor::block_on(svc.propose(DEAL, golden("A4"), "p".into())).unwrap();
    assert_eq!(r, DealResponse::rejected(SAVE_FAILED));
}

/// A client's retry racing its first attempt: the same deal lands (from the other
/// attempt) between this attempt's UUID lookup and its proposal lookup. It is the same
/// deal, so this attempt is accepted too, not rejected as a duplicate of itself.
#[test]
fn the_same_deal_landing_mid_decision_is_accepted_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = a4_config();
    let hooked = HookedStore::new(dir.path());
    let a4 = golden("A4");
    let params = DealParams::from_cbor(&a4).unwrap();
    *hooked.plant_after_uuid_lookup.lock().unwrap() = Some(DealRecord::new_accepted(
        a4.clone(),
        params,
        "other attempt".into(),
        0,
    ));
    let store: Arc<dyn Store> = Arc::new(hooked);
    let svc = service_with(&config, store.clone(), offline(&config));
    let r = futures::executor::block_on(svc.propose(DEAL, a4, "p".into())).unwrap();
    assert_eq!(r, DealResponse::accepted(), "{}", r.message);
    assert_eq!(
        futures::executor::block_on(store.list_deals())
            .unwrap()
            .len(),
        1
    );
}

/// Deal writes go through the lease gate: refused (and nothing written) without a
/// current fence or past its deadline, accepted under the held lease's fence.
#[test]
fn deal_writes_need_the_current_fence() {
    let ServiceOnSled {
        store,
        service: svc,
        dir: _dir,
        ..
    } = service_on_sled(&a4_config());
    let gate = Arc::new(LeaseGate::new());
    svc.set_lease_gate(gate.clone());
    let a4 = golden("A4");
    futures::executor::block_on(async {
        let refused = Some(DealResponse::rejected(NOT_HOLDER));
        assert_eq!(svc.propose(DEAL, a4.clone(), "p".into()).await, refused);
        let grant = store
            .try_acquire("me", None, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let fence = Fence {
            node: "me".into(),
            generation: grant.generation,
        };
        // Past its local deadline: self-fenced.
        gate.open(fence.clone(), Instant::now() - Duration::from_millis(1));
        assert_eq!(svc.propose(DEAL, a4.clone(), "p".into()).await, refused);
        // A stale generation: the store refuses the write.
        let stale = Fence {
            node: "me".into(),
            generation: grant.generation + 7,
        };
        gate.open(stale, Instant::now() + Duration::from_secs(60));
        assert_eq!(svc.propose(DEAL, a4.clone(), "p".into()).await, refused);
        assert!(store.list_deals().await.unwrap().is_empty());
        gate.open(fence, Instant::now() + Duration::from_secs(60));
        assert_eq!(
            svc.propose(DEAL, a4.clone(), "p".into()).await,
            Some(DealResponse::accepted())
        );
        assert_eq!(store.list_deals().await.unwrap().len(), 1);

        // Lifecycle events are fenced the same way.
        let uuid = DealParams::from_cbor(&a4).unwrap().deal_uuid;
        let progress = DealEvent::Transferring { bytes_received: 5 };
        let d = svc.apply_event(uuid, progress.clone()).await.unwrap();
        assert_eq!(d.n_bytes_received, 5);
        assert_eq!(store.deal_by_uuid(uuid).await.unwrap(), Some(d.clone()));
        let back = DealEvent::Transferring { bytes_received: 4 };
        assert!(matches!(
            svc.apply_event(uuid, back).await,
            Err(ApplyError::Transition(..))
        ));
        gate.close();
        assert!(matches!(
            svc.apply_event(uuid, DealEvent::Failed("x".into())).await,
            Err(ApplyError::NotHolder)
        ));
        assert_eq!(store.deal_by_uuid(uuid).await.unwrap(), Some(d));
    });
}
