//! Fixtures for tests that drive the node library in-process (node/'s and client/'s
//! integration tests): the one test runtime, A4's configuration, a deal service on sled,
//! a held lease, bounded test steps.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use async_io::Timer;
use futures::future::{self, Either};

pub use crate::golden::golden;
use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    wire::{Cbor, Cid, DealParams},
};
use dealport_node::{
    chain::{ChainFactsSource, OfflineChain},
    config::Config,
    metrics::Metrics,
    runtime::{BoxTask, Runtime},
    service::{DealService, ServiceConfig},
    store::{
        postgres::{PostgresOptions, PostgresStore},
        sled::SledStore,
        Fence, LeaseGate, Store,
    },
};

/// Open the sled store in `dir` again, waiting out (bounded) the lock that a store just
/// dropped still holds while sled's flusher thread ends.
pub fn reopen_sled(dir: &std::path::Path) -> SledStore {
    reopen_sled_with(dir, dealport_node::store::sled::GENERATION_DEALS)
}

/// [`reopen_sled`] with `deals_per_generation` deals in each generation of the deal trees.
pub fn reopen_sled_with(dir: &std::path::Path, deals_per_generation: usize) -> SledStore {
    let mut tries = 0;
    loop {
        match SledStore::open_with(dir, runtime(), deals_per_generation) {
            Ok(s) => return s,
            Err(_) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The raw sled database of the store in data dir `dir`, for a test that looks under
/// the store, waiting out (bounded) the lock a store just dropped still holds.
pub fn raw_sled(dir: &std::path::Path) -> sled::Db {
    let path = SledStore::path_in(dir);
    let mut tries = 0;
    loop {
        match sled::open(&path) {
            Ok(db) => return db,
            Err(_) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

/// A PostgreSQL store on `url` with the default options, as a node opens it (migrations
/// and the fills at connect included).
pub async fn postgres_store(url: &str) -> Arc<dyn Store> {
    Arc::new(
        PostgresStore::connect(url, PostgresOptions::default())
            .await
            .unwrap(),
    )
}

/// Take `store`'s lease as node "holder" and open a gate with its fence for a minute,
/// as a node's lease loop does.
pub async fn hold_lease(store: &Arc<dyn Store>) -> (Arc<LeaseGate>, Fence) {
    let grant = store
        .try_acquire("holder", None, Duration::from_secs(600))
        .await
        .unwrap()
        .expect("the lease");
    let fence = Fence {
        node: "holder".into(),
        generation: grant.generation,
    };
    let gate = Arc::new(LeaseGate::new());
    gate.open(fence.clone(), Instant::now() + Duration::from_secs(60));
    (gate, fence)
}

/// Take `store`'s lease (free, expired or released) for `node` for `ttl`, as a node's
/// lease loop would: the fence its writes go under.
pub async fn take_lease(store: &dyn Store, node: &str, ttl: Duration) -> Fence {
    let read = store.read_lease().await.unwrap();
    let grant = store
        .try_acquire(node, read.row.map(|r| r.generation), ttl)
        .await
        .unwrap()
        .expect("the lease is free");
    Fence {
        node: node.into(),
        generation: grant.generation,
    }
}

/// The event that moves deal `d` (number `n`) to checkpoint `c`, with made-up but
/// well-formed facts (publish CID, deal ID, sector).
pub fn event_to(c: Checkpoint, d: &DealRecord, n: u8) -> DealEvent {
    match c {
        Checkpoint::Transferred => DealEvent::Transferred {
            bytes: d.params.transfer.size,
        },
        Checkpoint::Published => DealEvent::Published {
            publish_cid: Cid::dag_cbor_blake2b(&[n]),
        },
        Checkpoint::PublishConfirmed => DealEvent::PublishConfirmed {
            chain_deal_id: u64::from(n),
        },
        Checkpoint::AddedPiece => DealEvent::AddedPiece {
            sector_number: 1,
            offset: 0,
        },
        Checkpoint::IndexedAndAnnounced => DealEvent::IndexedAndAnnounced,
        Checkpoint::Accepted | Checkpoint::Complete => DealEvent::Complete,
    }
}

/// Golden vector A4 as a freshly accepted deal record.
pub fn a4_record() -> DealRecord {
    let bytes = golden("A4");
    let params = DealParams::from_cbor(&bytes).unwrap();
    DealRecord::new_accepted(
        bytes,
        params,
        "12D3KooWtest".into(),
        1_700_000_000_123_456_789,
    )
}

/// Wait until `store` says its lease has expired, by the store's clock (the database's
/// for PostgreSQL), polling; the store's time of that read.
pub async fn until_expired(store: &dyn Store) -> i64 {
    let started = Instant::now();
    loop {
        let read = store.read_lease().await.unwrap();
        if !read.row.as_ref().unwrap().is_live(read.now) {
            return read.now;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never expired");
        Timer::after(Duration::from_millis(50)).await;
    }
}

/// A runtime that gives every task its own thread: enough for tests, no executor crate.
pub struct ThreadRuntime;

impl Runtime for ThreadRuntime {
    fn spawn(&self, fut: BoxTask) {
        std::thread::spawn(move || futures::executor::block_on(fut));
    }
    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send>) {
        // A pool, as the shells have: not an OS thread per file read.
        blocking::unblock(f).detach();
    }
}

pub fn runtime() -> Arc<dyn Runtime> {
    Arc::new(ThreadRuntime)
}

/// A runtime on one executor with two worker threads for the whole test binary, for
/// tests that run many tasks at once (libp2p hosts, the relay).
pub struct ExecutorRuntime(Arc<async_executor::Executor<'static>>);

impl Runtime for ExecutorRuntime {
    fn spawn(&self, fut: BoxTask) {
        self.0.spawn(fut).detach();
    }

    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send>) {
        // A pool, as the shells have: not an OS thread per file read.
        blocking::unblock(f).detach();
    }
}

pub fn executor_runtime() -> Arc<dyn Runtime> {
    static EX: OnceLock<Arc<async_executor::Executor<'static>>> = OnceLock::new();
    Arc::new(ExecutorRuntime(
        EX.get_or_init(|| executor_on_threads(2)).clone(),
    ))
}

/// A runtime on a new executor with one thread of its own, so that another task's work
/// in the same test process (an attacker's, say) does not slow its tasks down, or the
/// other way round.
pub fn isolated_executor_runtime() -> Arc<dyn Runtime> {
    Arc::new(ExecutorRuntime(executor_on_threads(1)))
}

/// A new executor run by `threads` threads of its own.
fn executor_on_threads(threads: usize) -> Arc<async_executor::Executor<'static>> {
    let ex = Arc::new(async_executor::Executor::new());
    for i in 0..threads {
        let ex = ex.clone();
        std::thread::Builder::new()
            .name(format!("test-exec-{i}"))
            .spawn(move || async_io::block_on(ex.run(future::pending::<()>())))
            .expect("spawn executor thread");
    }
    ex
}

/// Run a test body with an overall bound so a hang fails instead of blocking CI.
pub fn run<F: std::future::Future<Output = ()>>(limit: Duration, f: F) {
    async_io::block_on(async {
        match future::select(std::pin::pin!(f), Timer::after(limit)).await {
            Either::Left(((), _)) => {}
            Either::Right(_) => panic!("test did not finish within {limit:?}"),
        }
    })
}

/// One step of a test, bounded.
pub async fn within<F: std::future::Future>(limit: Duration, f: F) -> F::Output {
    match future::select(std::pin::pin!(f), Timer::after(limit)).await {
        Either::Left((out, _)) => out,
        Either::Right(_) => panic!("step did not finish within {limit:?}"),
    }
}

/// Golden vector A4 as an accepted deal under UUID `[b; 16]`, with its own proposal
/// (the start epoch moved by `b`), so many can share a store.
pub fn a4_deal(b: u8) -> dealport_core::deal::DealRecord {
    use dealport_core::wire::{Cbor, DealParams, DealUuid};
    let mut params = DealParams::from_cbor(&golden("A4")).expect("A4 decodes");
    params.deal_uuid = DealUuid([b; 16]);
    params.client_deal_proposal.proposal.start_epoch += b as i64;
    dealport_core::deal::DealRecord::new_accepted(params.to_cbor(), params, String::new(), 1)
}

/// Every deal's UUID, read by `list_deals_page` `limit` at a time from the first page to
/// an empty one (each page checked to hold at most `limit`).
pub async fn page_walk(store: &dyn Store, limit: usize) -> Vec<dealport_core::wire::DealUuid> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_deals_page(after, limit).await.unwrap();
        assert!(page.len() <= limit, "a page of {} for {limit}", page.len());
        let Some(last) = page.last() else {
            return seen;
        };
        after = Some(last.uuid);
        seen.extend(page.iter().map(|d| d.uuid));
    }
}

/// The configuration under which golden vector A4 is accepted.
pub fn a4_config() -> Config {
    Config::parse(
        r#"
[chain.offline]
head_epoch_override = 4490000
provider_collateral_min = "8589934592000"
[[chain.offline.clients]]
address = "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna"
escrow = "1000"
datacap = "34359738368"
[[miners]]
address = "f01000"
"#,
        "test.toml".as_ref(),
    )
    .unwrap()
}

/// A deal service on a fresh sled store in a temp dir, with the offline chain of `config`.
pub struct ServiceOnSled {
    pub store: Arc<dyn Store>,
    pub service: DealService,
    pub metrics: Arc<Metrics>,
    /// Kept so the store outlives the test.
    pub dir: tempfile::TempDir,
}

pub fn service_on_sled(config: &Config) -> ServiceOnSled {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
    let chain: Arc<dyn ChainFactsSource> = Arc::new(OfflineChain::new(
        config.chain.network,
        config.chain.offline.clone(),
    ));
    let metrics = Arc::new(Metrics::new());
    let service = DealService::new(
        store.clone(),
        chain,
        ServiceConfig {
            policy: config.policy(),
            network: config.chain.network.address_network(),
            proposal_budget: config.proposal_budget(),
            verify_cache_capacity: 16,
        },
        metrics.clone(),
    );
    ServiceOnSled {
        store,
        service,
        metrics,
        dir,
    }
}
