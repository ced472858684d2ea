//! The live index (`Store::live_deals_at`) on both backends: through every transition, a
//! failure, a restart (sled) and another node taking the lease (PostgreSQL), a deal is
//! found at exactly its checkpoint while it is at work, and nowhere once failed or done;
//! `awaiting_download` finds exactly the online deals at `Accepted` (offline ones wait
//! for an import, which no background task scans for); `live_uuids_at` gives the same
//! deals' UUIDs, and a pass that has seen them all reads none of the deals.
use std::{collections::BTreeSet, sync::Arc, time::Duration};

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    wire::{Cbor, Cid, DealUuid},
};
use dealport_node::store::{
    for_each_new_live_deal, sled::SledStore, Fence, LivePass, Store, CHECKPOINTS,
};
use dealport_testkit::{
    node::{a4_deal, hold_lease, postgres_store, raw_sled, reopen_sled, runtime, within},
    postgres::PgServer,
};
use futures::executor::block_on;

/// The events that take a deal (A4: online, 30 GB) from Accepted to each next checkpoint.
fn step(to: Checkpoint) -> DealEvent {
    match to {
        Checkpoint::Transferred => DealEvent::Transferred {
            bytes: 30_000_000_000,
        },
        Checkpoint::Published => DealEvent::Published {
            publish_cid: Cid::dag_cbor_blake2b(b"publish"),
        },
        Checkpoint::PublishConfirmed => DealEvent::PublishConfirmed { chain_deal_id: 7 },
        Checkpoint::AddedPiece => DealEvent::AddedPiece {
            sector_number: 1,
            offset: 0,
        },
        Checkpoint::IndexedAndAnnounced => DealEvent::IndexedAndAnnounced,
        Checkpoint::Complete => DealEvent::Complete,
        Checkpoint::Accepted => unreachable!("deals start there"),
    }
}

/// Every deal in `deals` is found by exactly the query of its checkpoint while live.
async fn assert_index(store: &dyn Store, deals: &[DealRecord]) {
    for c in CHECKPOINTS {
        let mut found = BTreeSet::new();
        let mut after = None;
        loop {
            // A page of 2 makes the paging itself part of the check.
            let page = store.live_deals_at(c, after, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|d| d.uuid);
            for d in page {
                assert_eq!(d.checkpoint, c, "{} found at {c}", d.uuid);
                found.insert(d.uuid);
            }
        }
        let want: BTreeSet<DealUuid> = deals
            .iter()
            .filter(|d| d.checkpoint == c && !d.is_failed() && c != Checkpoint::Complete)
            .map(|d| d.uuid)
            .collect();
        assert_eq!(found, want, "live deals at {c}");
        assert_eq!(live_uuids(store, c).await, want, "live UUIDs at {c}");
        assert_only_new_deals_are_read(store, c, &want).await;
    }
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = store.awaiting_download(after, 2).await.unwrap();
        assert!(page.len() <= 2, "a page longer than asked");
        found.extend_from_slice(&page);
        if page.len() < 2 {
            break;
        }
        after = page.last().copied();
    }
    let want: Vec<DealUuid> = deals
        .iter()
        .filter(|d| d.checkpoint == Checkpoint::Accepted && !d.is_failed())
        .filter(|d| !d.params.is_offline)
        .map(|d| d.uuid)
        .collect();
    assert_eq!(
        found, want,
        "online deals awaiting a download, in UUID order"
    );
}

/// Every UUID `live_uuids_at` gives at `c`, a page of 2 at a time, checked in order.
async fn live_uuids(store: &dyn Store, c: Checkpoint) -> BTreeSet<DealUuid> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.live_uuids_at(c, after, 2).await.unwrap();
        assert!(page.len() <= 2, "a page longer than asked");
        all.extend_from_slice(&page);
        if page.len() < 2 {
            break;
        }
        after = page.last().copied();
    }
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "UUIDs out of order at {c}"
    );
    all.into_iter().collect()
}

/// `for_each_new_live_deal` reads no deal when none is new, and exactly the new ones
/// otherwise (every other live deal at `c`: every page; the first: the first page).
async fn assert_only_new_deals_are_read(
    store: &dyn Store,
    c: Checkpoint,
    live: &BTreeSet<DealUuid>,
) {
    let pass = for_each_new_live_deal(
        store,
        c,
        2,
        |_| false,
        |page| assert!(page.is_empty(), "deals handed over when none was new"),
    )
    .await
    .unwrap();
    assert_eq!(
        pass,
        LivePass {
            seen: live.len(),
            read: 0
        },
        "at rest at {c}"
    );

    let new: BTreeSet<DealUuid> = live.iter().step_by(2).copied().collect();
    let mut got = BTreeSet::new();
    let pass = for_each_new_live_deal(
        store,
        c,
        2,
        |u| new.contains(u),
        |page| got.extend(page.into_iter().map(|d| d.uuid)),
    )
    .await
    .unwrap();
    assert_eq!(got, new, "new deals at {c}");
    assert_eq!(pass.seen, live.len());
    // Each page of 2 holds one new deal (every other one): every page is read.
    assert_eq!(pass.read, live.len(), "pages read at {c}");

    let Some(first) = live.first() else { return };
    let pass = for_each_new_live_deal(store, c, 2, |u| u == first, |_| {})
        .await
        .unwrap();
    assert_eq!(
        pass.read,
        live.len().min(2),
        "only the first page is read at {c}"
    );
}

/// A4 as an offline deal (its data comes by import).
fn offline_deal(b: u8) -> DealRecord {
    let mut params = a4_deal(b).params;
    params.is_offline = true;
    DealRecord::new_accepted(params.to_cbor(), params, String::new(), 1)
}

/// Seven deals, each moved to another checkpoint, one failed on the way, and online and
/// offline deals at `Accepted` interleaved in UUID order, one offline deal moving on;
/// the index checked after every write.
async fn walk(store: &dyn Store, fence: &Fence) -> Vec<DealRecord> {
    let mut deals: Vec<DealRecord> = (1..=7).map(a4_deal).collect();
    let mut waiting = vec![
        offline_deal(8),
        offline_deal(9),
        offline_deal(10),
        a4_deal(11),
    ];
    let both = |d: &[DealRecord], w: &[DealRecord]| [d, w].concat();
    for d in deals.iter().chain(&waiting) {
        store.insert_new_deal_fenced(fence, d).await.unwrap();
    }
    assert_index(store, &both(&deals, &waiting)).await;
    waiting[1].apply(step(Checkpoint::Transferred)).unwrap();
    store.update_deal_fenced(fence, &waiting[1]).await.unwrap();
    for (i, d) in deals.iter_mut().enumerate() {
        for to in CHECKPOINTS.iter().skip(1).take(i) {
            d.apply(step(*to)).unwrap();
            store.update_deal_fenced(fence, d).await.unwrap();
        }
    }
    assert_index(store, &both(&deals, &waiting)).await;
    // A failure takes a deal out; free text does not move it.
    deals[2]
        .apply(DealEvent::Failed("the sector failed".into()))
        .unwrap();
    store.update_deal_fenced(fence, &deals[2]).await.unwrap();
    deals[3]
        .apply(DealEvent::SealingStatus("PreCommit1".into()))
        .unwrap();
    store.update_deal_fenced(fence, &deals[3]).await.unwrap();
    deals.extend(waiting);
    assert_index(store, &deals).await;
    deals
}

#[test]
fn sled_index_follows_every_transition_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let deals = {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
        block_on(async {
            let (_gate, fence) = hold_lease(&store).await;
            walk(&*store, &fence).await
        })
    };
    // Reopened (the first store dropped): the index is what was written.
    block_on(assert_index(&reopen_sled(dir.path()), &deals));
}

/// A store written by a version whose live index kept offline deals with the online
/// ones (`live_index_v1`) has its index rebuilt once on open: the offline deal is no
/// longer read as a download, and is still live at `Accepted`.
#[test]
fn sled_index_of_an_older_store_is_rebuilt_with_offline_deals_apart() {
    let dir = tempfile::tempdir().unwrap();
    let deals = vec![offline_deal(8), a4_deal(9)];
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
        block_on(async {
            let (_gate, fence) = hold_lease(&store).await;
            for d in &deals {
                store.insert_new_deal_fenced(&fence, d).await.unwrap();
            }
        });
    }
    drop(reopen_sled(dir.path()));
    // Rewrite the index as version 1 had it: every deal at `Accepted` under byte 0.
    {
        let db = raw_sled(dir.path());
        let live = db.open_tree("live_by_checkpoint").unwrap();
        live.clear().unwrap();
        for d in &deals {
            let mut k = vec![0u8];
            k.extend_from_slice(&d.uuid.0);
            live.insert(k, &[]).unwrap();
        }
        let meta = db.open_tree("meta").unwrap();
        meta.remove(b"live_index_v2").unwrap();
        meta.insert(b"live_index_v1", &[]).unwrap();
        db.flush().unwrap();
    }
    let store = reopen_sled(dir.path());
    block_on(assert_index(&store, &deals));
}

#[test]
fn postgres_index_follows_every_transition_and_the_next_holder() {
    let server = PgServer::start();
    block_on(within(Duration::from_secs(60), async {
        let url = server.url();
        let first: Arc<dyn Store> = postgres_store(&url).await;
        let (_gate, fence) = hold_lease(&first).await;
        let mut deals = walk(&*first, &fence).await;
        first.release(&fence).await.unwrap();
        // Another node takes the lease and moves a deal on: both see one index.
        let second: Arc<dyn Store> = postgres_store(&url).await;
        let grant = second
            .try_acquire("next", Some(fence.generation), Duration::from_secs(600))
            .await
            .unwrap()
            .expect("the released lease");
        let fence2 = Fence {
            node: "next".into(),
            generation: grant.generation,
        };
        deals[0].apply(step(Checkpoint::Transferred)).unwrap();
        second.update_deal_fenced(&fence2, &deals[0]).await.unwrap();
        assert_index(&*first, &deals).await;
        assert_index(&*second, &deals).await;
    }));
}

/// Each deal's `is_offline` column, in UUID order.
async fn flags(admin: &mut sqlx::PgConnection) -> Vec<(String, Option<bool>)> {
    sqlx::query_as("SELECT uuid::text, is_offline FROM deals ORDER BY uuid")
        .fetch_all(admin)
        .await
        .unwrap()
}

/// Deals stored before PostgreSQL kept the offline flag in a column of its own
/// (migration 8; the flag NULL): `awaiting_download` still leaves the offline ones out,
/// and the next connect fills the flag in for the deals at `Accepted`, the ones its
/// index is about, and leaves finished history alone.
#[test]
fn postgres_offline_flags_of_older_deals_are_filled_at_connect() {
    use sqlx::Connection;
    let server = PgServer::start();
    block_on(within(Duration::from_secs(60), async {
        let url = server.url();
        let store: Arc<dyn Store> = postgres_store(&url).await;
        let (_gate, fence) = hold_lease(&store).await;
        let mut deals = vec![offline_deal(8), a4_deal(9), offline_deal(10), a4_deal(11)];
        for d in &deals {
            store.insert_new_deal_fenced(&fence, d).await.unwrap();
        }
        deals[3].apply(step(Checkpoint::Transferred)).unwrap();
        store.update_deal_fenced(&fence, &deals[3]).await.unwrap();
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        let uuid = |d: &DealRecord| d.uuid.to_string();
        assert_eq!(
            flags(&mut admin).await,
            vec![
                (uuid(&deals[0]), Some(true)),
                (uuid(&deals[1]), Some(false)),
                (uuid(&deals[2]), Some(true)),
                (uuid(&deals[3]), Some(false)),
            ],
            "the insert writes the flag"
        );
        sqlx::query("UPDATE deals SET is_offline = NULL")
            .execute(&mut admin)
            .await
            .unwrap();
        assert_index(&*store, &deals).await;
        let again: Arc<dyn Store> = postgres_store(&url).await;
        assert_eq!(
            flags(&mut admin).await,
            vec![
                (uuid(&deals[0]), Some(true)),
                (uuid(&deals[1]), Some(false)),
                (uuid(&deals[2]), Some(true)),
                (uuid(&deals[3]), None),
            ],
            "filled at connect for the deals at Accepted only"
        );
        assert_index(&*again, &deals).await;
    }));
}
