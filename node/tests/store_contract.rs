//! What every store backend does, run against sled (in a temp dir) and PostgreSQL (a
//! throwaway server, see testkit/src/postgres.rs): deals and their lookups, duplicates,
//! updates, the identity, a second handle seeing the same; the lease's acquire, renew,
//! expiry, release and fencing. What only one backend does stays in store_sled.rs and
//! store_postgres.rs (sled takes unfenced writes from its single node, PostgreSQL refuses
//! them). Missing PostgreSQL server binaries fail the PostgreSQL runs (install postgresql).

use std::time::{Duration, Instant};

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    lease::LeaseRow,
    wire::{Cbor, DealUuid},
};
use dealport_node::{
    identity,
    p2p::Keypair,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        sled::SledStore,
        Fence, Inserted, LeaseGrant, RelayTarget, Store, StoreError,
    },
};
use futures::executor::block_on;

use dealport_testkit::{
    node::{a4_deal, a4_record, runtime, until_expired},
    postgres::PgServer,
};

// ---- The backends ---------------------------------------------------------------------

fn open_sled(dir: &std::path::Path) -> SledStore {
    SledStore::open(dir, runtime()).unwrap()
}

async fn connect(server: &PgServer) -> PostgresStore {
    PostgresStore::connect(&server.url(), PostgresOptions::default())
        .await
        .unwrap()
}

#[test]
fn sled_deals_and_identity_unfenced() {
    let dir = tempfile::tempdir().unwrap();
    let key = block_on(deals_and_identity(&open_sled(dir.path()), Writes::Unfenced));
    // Reopen: everything is still there.
    block_on(another_handle_sees_the_same(&open_sled(dir.path()), &key));
}

#[test]
fn sled_deals_and_identity_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let key = block_on(deals_and_identity(&open_sled(dir.path()), Writes::Fenced));
    block_on(another_handle_sees_the_same(&open_sled(dir.path()), &key));
}

/// The same with one deal to a generation of sled's deal trees, so the contract's
/// deals are spread over many (node/src/store/sled_gens.rs).
#[test]
fn sled_deals_and_identity_in_small_generations() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), runtime(), 1).unwrap();
    let key = block_on(deals_and_identity(&store, Writes::Fenced));
    assert!(store.deal_generations() > 1);
    drop(store);
    block_on(another_handle_sees_the_same(&open_sled(dir.path()), &key));
}

#[test]
fn postgres_deals_and_identity() {
    let server = PgServer::start();
    block_on(async {
        let store = connect(&server).await;
        let key = deals_and_identity(&store, Writes::Fenced).await;
        // A second node, a fresh connection: same deals, and its candidate key loses.
        let second = connect(&server).await;
        another_handle_sees_the_same(&second, &key).await;
        store.close().await;
        second.close().await;
    });
}

#[test]
fn sled_duplicates_submitted_together() {
    let dir = tempfile::tempdir().unwrap();
    block_on(duplicates_submitted_together(&open_sled(dir.path())));
}

#[test]
fn postgres_duplicates_submitted_together() {
    let server = PgServer::start();
    block_on(async {
        let store = connect(&server).await;
        duplicates_submitted_together(&store).await;
        store.close().await;
    });
}

/// A sled store has one handle (its data dir is locked): "both nodes" are that handle.
#[test]
fn sled_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sled(dir.path());
    block_on(lease_acquire_expire_fence_release(&store, &store));
}

#[test]
fn postgres_lease() {
    let server = PgServer::start();
    block_on(async {
        let a = connect(&server).await;
        let b = connect(&server).await;
        lease_acquire_expire_fence_release(&a, &b).await;
    });
}

// ---- The contract -----------------------------------------------------------------

/// `d`'s proposal under another UUID.
fn under_uuid(d: &DealRecord, b: u8) -> DealRecord {
    let mut params = d.params.clone();
    params.deal_uuid = DealUuid([b; 16]);
    DealRecord::new_accepted(params.to_cbor(), params, String::new(), 1)
}

/// Deals submitted all at once, each twice under its UUID and once more under another
/// UUID with the same proposal, and one more under a fence the store does not hold
/// (the sled store writes what arrives together as one group): one copy of each
/// proposal is written and every other copy is told which, the stale fence is refused,
/// and the store holds exactly the written deals.
async fn duplicates_submitted_together(store: &dyn Store) {
    let g = store.try_acquire("a", None, TTL).await.unwrap().unwrap();
    let good = fence("a", &g);
    let stale = Fence {
        node: "a".into(),
        generation: g.generation + 1,
    };
    let deals: Vec<DealRecord> = (0..8).map(|i| a4_deal(100 + i)).collect();
    let mut copies = Vec::new();
    for (i, d) in deals.iter().enumerate() {
        copies.push(d.clone());
        copies.push(under_uuid(d, 200 + i as u8));
        copies.push(d.clone());
    }
    let refused = a4_deal(150);
    let (outcomes, stale_outcome) = futures::join!(
        futures::future::join_all(
            copies
                .iter()
                .map(|d| store.insert_new_deal_fenced(&good, d))
        ),
        store.insert_new_deal_fenced(&stale, &refused),
    );
    assert!(is_fenced(stale_outcome));
    assert_eq!(store.deal_by_uuid(refused.uuid).await.unwrap(), None);

    let mut written = Vec::new();
    for (copies, outcomes) in copies.chunks(3).zip(outcomes.chunks(3)) {
        let outcomes: Vec<Inserted> = outcomes.iter().map(|o| *o.as_ref().unwrap()).collect();
        let winners: Vec<&DealRecord> = copies
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == Inserted::Yes)
            .map(|(d, _)| d)
            .collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        let winner = winners[0];
        for (d, o) in copies.iter().zip(&outcomes) {
            match o {
                Inserted::Yes => {}
                Inserted::UuidExists => assert_eq!(d.uuid, winner.uuid),
                Inserted::ProposalExists(u) => assert_eq!(*u, winner.uuid),
            }
        }
        assert_eq!(
            store.deal_by_uuid(winner.uuid).await.unwrap().as_ref(),
            Some(winner)
        );
        written.push(winner.uuid);
    }
    let mut listed: Vec<DealUuid> = store
        .list_deals()
        .await
        .unwrap()
        .iter()
        .map(|d| d.uuid)
        .collect();
    listed.sort();
    written.sort();
    assert_eq!(listed, written);
}

fn fence(node: &str, g: &LeaseGrant) -> Fence {
    Fence {
        node: node.into(),
        generation: g.generation,
    }
}

const TTL: Duration = Duration::from_secs(15);

fn is_fenced<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Fenced { .. }))
}

/// How [`deals_and_identity`] writes its deals: a single node may write without a lease
/// (sled), a cluster member only under its fence (every backend).
#[derive(Clone, Copy)]
enum Writes {
    Unfenced,
    Fenced,
}

/// The deal writes of `writes`, under the lease `fence` when fenced.
struct Writer<'a> {
    store: &'a dyn Store,
    writes: Writes,
    fence: Fence,
}

impl Writer<'_> {
    async fn insert(&self, deal: &DealRecord) -> Result<Inserted, StoreError> {
        match self.writes {
            Writes::Unfenced => self.store.insert_new_deal(deal).await,
            Writes::Fenced => self.store.insert_new_deal_fenced(&self.fence, deal).await,
        }
    }

    async fn update(&self, deal: &DealRecord) -> Result<(), StoreError> {
        match self.writes {
            Writes::Unfenced => self.store.update_deal(deal).await,
            Writes::Fenced => self.store.update_deal_fenced(&self.fence, deal).await,
        }
    }
}

/// Inserts and every lookup, duplicates that write nothing, an update, the identity key
/// created once, on an empty store. Node "a" holds the lease throughout. The identity
/// key is returned for [`another_handle_sees_the_same`].
async fn deals_and_identity(store: &dyn Store, writes: Writes) -> Keypair {
    let deal = a4_record();
    assert_eq!(store.list_deals().await.unwrap(), vec![]);
    assert_eq!(store.deal_by_uuid(deal.uuid).await.unwrap(), None);

    let g = store.try_acquire("a", None, TTL).await.unwrap().unwrap();
    let w = Writer {
        store,
        writes,
        fence: fence("a", &g),
    };
    assert_eq!(w.insert(&deal).await.unwrap(), Inserted::Yes);
    assert_eq!(
        store.deal_by_uuid(deal.uuid).await.unwrap().as_ref(),
        Some(&deal)
    );
    assert_eq!(
        store
            .deal_by_proposal_cid(&deal.proposal_cid)
            .await
            .unwrap()
            .as_ref(),
        Some(&deal)
    );
    assert_eq!(
        store
            .deal_by_signed_proposal_cid(&deal.signed_proposal_cid)
            .await
            .unwrap()
            .as_ref(),
        Some(&deal)
    );
    // What a new proposal is checked against, in one call.
    let other_uuid = DealUuid([9; 16]);
    assert_eq!(
        store
            .deals_for_proposal(deal.uuid, &deal.proposal_cid)
            .await
            .unwrap(),
        (Some(deal.clone()), Some(deal.clone()))
    );
    assert_eq!(
        store
            .deals_for_proposal(other_uuid, &deal.proposal_cid)
            .await
            .unwrap(),
        (None, Some(deal.clone()))
    );
    assert_eq!(
        store
            .deals_for_proposal(deal.uuid, &deal.signed_proposal_cid)
            .await
            .unwrap(),
        (Some(deal.clone()), None)
    );
    // The proposal CID is not a signed proposal CID and vice versa.
    assert_eq!(
        store
            .deal_by_signed_proposal_cid(&deal.proposal_cid)
            .await
            .unwrap(),
        None
    );

    // A second insert under the same UUID, or of the same proposal, writes nothing.
    assert_eq!(w.insert(&deal).await.unwrap(), Inserted::UuidExists);
    let same_proposal = under_uuid(&deal, 9);
    assert_eq!(
        w.insert(&same_proposal).await.unwrap(),
        Inserted::ProposalExists(deal.uuid)
    );
    assert_eq!(store.deal_by_uuid(same_proposal.uuid).await.unwrap(), None);

    let other = a4_deal(7);
    assert_eq!(w.insert(&other).await.unwrap(), Inserted::Yes);
    // A UUID and a proposal CID of two different deals: each answer is its own deal.
    assert_eq!(
        store
            .deals_for_proposal(other.uuid, &deal.proposal_cid)
            .await
            .unwrap(),
        (Some(other.clone()), Some(deal.clone()))
    );
    let listed = store.list_deals().await.unwrap();
    assert_eq!(listed.len(), 2);
    // Ordered by UUID bytes.
    let uuids: Vec<_> = listed.iter().map(|d| d.uuid.0).collect();
    let mut sorted = uuids.clone();
    sorted.sort();
    assert_eq!(uuids, sorted);

    let mut updated = deal.clone();
    updated
        .apply(DealEvent::Transferring {
            bytes_received: 1000,
        })
        .unwrap();
    updated
        .apply(DealEvent::Failed("transfer failed: boom".into()))
        .unwrap();
    w.update(&updated).await.unwrap();
    let mut unknown = deal.clone();
    unknown.uuid = DealUuid([1; 16]);
    assert!(matches!(
        w.update(&unknown).await,
        Err(StoreError::NoSuchDeal(_))
    ));
    assert_eq!(store.deal_by_uuid(deal.uuid).await.unwrap(), Some(updated));

    // Identity: the key is created once (after the lease in PostgreSQL, whose lease and
    // key share a row).
    assert_eq!(store.identity().await.unwrap(), None);
    let (key, created) = identity::load_or_create(store).await.unwrap();
    assert!(created);
    let (again, created) = identity::load_or_create(store).await.unwrap();
    assert!(!created);
    assert_eq!(key.public(), again.public());
    let bytes = store.identity().await.unwrap().unwrap();
    assert_eq!(
        &bytes[..4],
        &[0x08, 0x01, 0x12, 0x40],
        "libp2p protobuf ed25519"
    );
    // The lease survived the identity write.
    let read = store.read_lease().await.unwrap();
    assert_eq!(read.row.unwrap().holder.as_deref(), Some("a"));
    key
}

/// After [`deals_and_identity`], another handle on the same data (sled reopened, a second
/// PostgreSQL connection) reads every deal as written, and the same identity key.
async fn another_handle_sees_the_same(store: &dyn Store, key: &Keypair) {
    let deal = a4_record();
    let deals = store.list_deals().await.unwrap();
    assert_eq!(deals.len(), 2);
    let d = store.deal_by_uuid(deal.uuid).await.unwrap().unwrap();
    assert_eq!(d.checkpoint, Checkpoint::Accepted);
    assert_eq!(d.n_bytes_received, 1000);
    assert_eq!(d.error.as_deref(), Some("transfer failed: boom"));
    assert_eq!(d.params_bytes, deal.params_bytes);
    assert_eq!(
        store
            .deal_by_proposal_cid(&a4_deal(7).proposal_cid)
            .await
            .unwrap()
            .map(|d| d.uuid),
        Some(DealUuid([7; 16]))
    );
    let loaded = identity::load(store).await.unwrap().expect("the identity");
    assert_eq!(loaded.public(), key.public());
    // Its own candidate key loses to the stored one.
    let (key2, created) = identity::load_or_create(store).await.unwrap();
    assert!(!created);
    assert_eq!(key2.public(), key.public());
}

/// The lease between nodes "a" and "b" on handles `a` and `b` of one empty store (the
/// same handle twice for sled): acquire, a loser, renewal, expiry, takeover, every write
/// of the old holder fenced, release, a holder retaking its own row.
async fn lease_acquire_expire_fence_release(a: &dyn Store, b: &dyn Store) {
    let short = Duration::from_secs(1);

    // Empty: nothing to read, then A acquires generation 1 in the store's time.
    let read = a.read_lease().await.unwrap();
    assert_eq!(read.row, None);
    assert_eq!(b.relay_target().await.unwrap(), None);
    let ga = a.try_acquire("a", None, short).await.unwrap().unwrap();
    assert_eq!(ga.generation, 1);
    assert_eq!(ga.expires_at - ga.at, 1000);
    assert!((ga.at - read.now).abs() < 60_000, "db time, unix ms");
    let fa = fence("a", &ga);

    // B saw an empty table too: its insert loses.
    assert_eq!(b.try_acquire("b", None, short).await.unwrap(), None);
    // While A's lease is live, B cannot take it.
    let read = b.read_lease().await.unwrap();
    let row = read.row.clone().unwrap();
    assert_eq!(row.holder.as_deref(), Some("a"));
    assert!(row.is_live(read.now));
    assert_eq!(b.try_acquire("b", Some(1), short).await.unwrap(), None);

    // A is leader: it writes its address, its state and deals.
    a.set_local_listen(
        &fa,
        "/ip4/127.0.0.1/tcp/4001/ws",
        &["/dns/sp.example/tcp/443/wss".into()],
    )
    .await
    .unwrap();
    assert_eq!(
        b.relay_target().await.unwrap(),
        Some(RelayTarget {
            local_listen: "/ip4/127.0.0.1/tcp/4001/ws".into(),
            live: true
        })
    );
    let deal = a4_record();
    assert_eq!(
        a.insert_new_deal_fenced(&fa, &deal).await.unwrap(),
        Inserted::Yes
    );
    assert_eq!(b.leader_state("s").await.unwrap(), None);
    a.put_leader_state(&fa, "s", b"one").await.unwrap();
    assert_eq!(b.leader_state("s").await.unwrap(), Some(b"one".to_vec()));
    // A renewal extends from the store's now.
    let renewed = a.renew(&fa, short).await.unwrap().unwrap();
    assert_eq!(renewed.generation, 1);
    assert!(renewed.at >= ga.at);

    // A stops renewing (paused, say). The store expires it.
    let expired_at = until_expired(b).await;
    assert!(expired_at >= renewed.expires_at);
    // The relay no longer counts A's address as live.
    assert_eq!(
        b.relay_target().await.unwrap(),
        Some(RelayTarget {
            local_listen: "/ip4/127.0.0.1/tcp/4001/ws".into(),
            live: false
        })
    );
    // Even with no one else around, A's expired lease fences its writes.
    assert!(is_fenced(a.insert_new_deal_fenced(&fa, &a4_deal(3)).await));
    assert!(is_fenced(a.update_deal_fenced(&fa, &deal).await));
    assert_eq!(a.renew(&fa, short).await.unwrap(), None);

    // B takes over: generation 2, and the listen address is cleared.
    let gb = b.try_acquire("b", Some(1), TTL).await.unwrap().unwrap();
    assert_eq!(gb.generation, 2);
    assert_eq!(gb.expires_at - gb.at, 15_000);
    let fb = fence("b", &gb);
    assert_eq!(b.relay_target().await.unwrap(), None);
    // A second acquisition at the same expected generation loses.
    assert_eq!(a.try_acquire("a", Some(1), TTL).await.unwrap(), None);

    // A, resumed, still believes it leads: every write it makes fails.
    let mut updated = deal.clone();
    updated
        .apply(DealEvent::Transferring { bytes_received: 5 })
        .unwrap();
    assert!(is_fenced(a.update_deal_fenced(&fa, &updated).await));
    assert!(is_fenced(a.insert_new_deal_fenced(&fa, &a4_deal(4)).await));
    assert!(is_fenced(
        a.set_local_listen(&fa, "/ip4/127.0.0.1/tcp/9999/ws", &[])
            .await
    ));
    assert!(is_fenced(a.put_leader_state(&fa, "s", b"two").await));
    assert_eq!(a.renew(&fa, TTL).await.unwrap(), None);
    assert!(!a.release(&fa).await.unwrap());
    // Nothing A tried landed.
    assert_eq!(b.deal_by_uuid(DealUuid([3; 16])).await.unwrap(), None);
    assert_eq!(b.deal_by_uuid(DealUuid([4; 16])).await.unwrap(), None);
    assert_eq!(
        b.deal_by_uuid(deal.uuid)
            .await
            .unwrap()
            .unwrap()
            .n_bytes_received,
        0
    );
    assert_eq!(b.relay_target().await.unwrap(), None);
    assert_eq!(b.leader_state("s").await.unwrap(), Some(b"one".to_vec()));

    // B writes under generation 2.
    b.set_local_listen(&fb, "/ip4/127.0.0.1/tcp/4002/ws", &[])
        .await
        .unwrap();
    b.update_deal_fenced(&fb, &updated).await.unwrap();
    assert_eq!(
        a.deal_by_uuid(deal.uuid)
            .await
            .unwrap()
            .unwrap()
            .n_bytes_received,
        5
    );
    assert_eq!(
        a.relay_target().await.unwrap(),
        Some(RelayTarget {
            local_listen: "/ip4/127.0.0.1/tcp/4002/ws".into(),
            live: true
        })
    );

    // B releases (graceful shutdown): A acquires at once, generation 3.
    assert!(b.release(&fb).await.unwrap());
    assert!(!b.release(&fb).await.unwrap(), "release is conditional");
    assert_eq!(b.renew(&fb, TTL).await.unwrap(), None);
    assert_eq!(a.relay_target().await.unwrap(), None);
    let read = a.read_lease().await.unwrap();
    assert_eq!(
        read.row,
        Some(LeaseRow {
            holder: None,
            generation: 2,
            expires_at: None
        })
    );
    let started = Instant::now();
    let ga3 = a.try_acquire("a", Some(2), TTL).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(ga3.generation, 3);
    assert!(is_fenced(b.update_deal_fenced(&fb, &updated).await));

    // A node that finds its own name on a live row (its previous incarnation)
    // retakes it with a fresh generation; the old generation is fenced out.
    let ga4 = a.try_acquire("a", Some(3), TTL).await.unwrap().unwrap();
    assert_eq!(ga4.generation, 4);
    assert!(is_fenced(
        a.update_deal_fenced(&fence("a", &ga3), &updated).await
    ));
    a.update_deal_fenced(&fence("a", &ga4), &updated)
        .await
        .unwrap();
}
