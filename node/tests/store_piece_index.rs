//! `Store::deals_by_piece_cid` on both backends: deals sharing a piece are all found (a
//! failed one too: the caller decides what it may serve), other pieces are not, the
//! limit holds, and the index survives a restart; a store written before the index
//! existed gets it built (sled at open, PostgreSQL at connect).
use std::{collections::BTreeSet, sync::Arc, time::Duration};

use dealport_core::{
    deal::{DealEvent, DealRecord},
    wire::{Cbor, Cid, DealParams, DealUuid},
};
use dealport_node::store::{sled::SledStore, Fence, Store};
use dealport_testkit::{
    node::{golden, hold_lease, postgres_store, reopen_sled, runtime, within},
    postgres::PgServer,
};
use futures::executor::block_on;

/// A4 under UUID `[b; 16]` with a piece CID chosen by `piece`.
fn deal(b: u8, piece: u8) -> DealRecord {
    let mut params = DealParams::from_cbor(&golden("A4")).unwrap();
    params.deal_uuid = DealUuid([b; 16]);
    params.client_deal_proposal.proposal.start_epoch += b as i64;
    params.client_deal_proposal.proposal.piece_cid = piece_cid(piece);
    DealRecord::new_accepted(params.to_cbor(), params, String::new(), 1)
}

fn piece_cid(n: u8) -> Cid {
    Cid::v1(0xf101, 0x1012, &[n; 32])
}

/// Deals 1, 2, 3 hold piece 1 (2 failed), deal 4 holds piece 2.
async fn write(store: &dyn Store, fence: &Fence) {
    for (b, p) in [(1, 1), (2, 1), (3, 1), (4, 2)] {
        store
            .insert_new_deal_fenced(fence, &deal(b, p))
            .await
            .unwrap();
    }
    let mut failed = deal(2, 1);
    failed
        .apply(DealEvent::Failed("the data did not match".into()))
        .unwrap();
    store.update_deal_fenced(fence, &failed).await.unwrap();
}

fn uuids(deals: &[DealRecord]) -> BTreeSet<u8> {
    deals.iter().map(|d| d.uuid.0[0]).collect()
}

async fn check(store: &dyn Store) {
    let one = store.deals_by_piece_cid(&piece_cid(1), 100).await.unwrap();
    assert_eq!(uuids(&one), BTreeSet::from([1, 2, 3]));
    assert!(one
        .iter()
        .all(|d| d.params.client_deal_proposal.proposal.piece_cid == piece_cid(1)));
    assert!(
        one.iter().any(|d| d.uuid.0[0] == 2 && d.is_failed()),
        "the failed deal as stored"
    );
    let two = store.deals_by_piece_cid(&piece_cid(2), 100).await.unwrap();
    assert_eq!(uuids(&two), BTreeSet::from([4]));
    assert!(store
        .deals_by_piece_cid(&piece_cid(9), 100)
        .await
        .unwrap()
        .is_empty());
    let limited = store.deals_by_piece_cid(&piece_cid(1), 2).await.unwrap();
    assert_eq!(
        uuids(&limited),
        BTreeSet::from([1, 2]),
        "the first two by UUID"
    );
}

#[test]
fn sled_finds_deals_by_piece_across_a_restart_and_builds_the_index_for_an_old_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
        block_on(async {
            let (_gate, fence) = hold_lease(&store).await;
            write(&*store, &fence).await;
            check(&*store).await;
        });
    }
    block_on(check(&reopen_sled(dir.path())));
    // As a store written before the index: no index tree, no marker.
    {
        let mut n = 0;
        let db = loop {
            match sled::Config::new()
                .path(SledStore::path_in(dir.path()))
                .open()
            {
                Ok(db) => break db,
                Err(_) if n < 100 => {
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        db.drop_tree("by_piece_cid").unwrap();
        db.open_tree("meta")
            .unwrap()
            .remove("piece_index_v1")
            .unwrap();
        db.flush().unwrap();
    }
    block_on(check(&reopen_sled(dir.path())));
}

#[test]
fn postgres_finds_deals_by_piece_and_fills_rows_from_before_the_column() {
    let server = PgServer::start();
    block_on(within(Duration::from_secs(60), async {
        let url = server.url();
        let store: Arc<dyn Store> = postgres_store(&url).await;
        let (_gate, fence) = hold_lease(&store).await;
        write(&*store, &fence).await;
        check(&*store).await;
        // Rows as written before migration 4: no piece CID. The next connect fills them.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query("UPDATE deals SET piece_cid = NULL")
            .execute(&pool)
            .await
            .unwrap();
        assert!(store
            .deals_by_piece_cid(&piece_cid(1), 100)
            .await
            .unwrap()
            .is_empty());
        let again: Arc<dyn Store> = postgres_store(&url).await;
        check(&*again).await;
        check(&*store).await;
    }));
}
