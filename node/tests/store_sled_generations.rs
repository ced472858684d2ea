//! The sled store's deal trees in generations (node/src/store/sled_gens.rs): with a few
//! deals per generation, every lookup finds every deal whatever generation holds it,
//! duplicates are refused across generations, updates reach a sealed generation, pages
//! merge the generations in UUID order, and all of it holds after a reopen, with a
//! filter lost or damaged, and for a store written before generations existed.

use dealport_core::{
    deal::{Checkpoint, DealRecord},
    wire::DealUuid,
};
use dealport_node::store::{sled::SledStore, Inserted, Store};
use dealport_testkit::node::{a4_deal, event_to, page_walk, raw_sled, reopen_sled_with, runtime};
use futures::executor::block_on;

/// Deals `1..=n` (UUID `[b; 16]`, each its own proposal, all one piece), stored out of
/// UUID order.
fn deals(n: u8) -> Vec<DealRecord> {
    let mut v: Vec<DealRecord> = (1..=n).map(a4_deal).collect();
    v.reverse();
    v.rotate_left(usize::from(n / 3));
    v
}

async fn store_all(store: &SledStore, deals: &[DealRecord]) {
    for d in deals {
        assert_eq!(store.insert_new_deal(d).await.unwrap(), Inserted::Yes);
    }
}

/// Every deal of `deals` found by UUID, both proposal CIDs and its piece; pages walk
/// them all in UUID order.
async fn every_lookup_finds_every_deal(store: &SledStore, deals: &[DealRecord]) {
    for d in deals {
        let by_uuid = store.deal_by_uuid(d.uuid).await.unwrap();
        assert_eq!(by_uuid.as_ref().map(|x| x.uuid), Some(d.uuid));
        let by_prop = store.deal_by_proposal_cid(&d.proposal_cid).await.unwrap();
        assert_eq!(by_prop.map(|x| x.uuid), Some(d.uuid));
        let by_signed = store
            .deal_by_signed_proposal_cid(&d.signed_proposal_cid)
            .await
            .unwrap();
        assert_eq!(by_signed.map(|x| x.uuid), Some(d.uuid));
    }
    let mut uuids: Vec<DealUuid> = deals.iter().map(|d| d.uuid).collect();
    uuids.sort();
    let piece = &deals[0].params.client_deal_proposal.proposal.piece_cid;
    let of_piece = store.deals_by_piece_cid(piece, 1000).await.unwrap();
    assert_eq!(of_piece.iter().map(|d| d.uuid).collect::<Vec<_>>(), uuids);
    let first_five = store.deals_by_piece_cid(piece, 5).await.unwrap();
    assert_eq!(
        first_five.iter().map(|d| d.uuid).collect::<Vec<_>>(),
        uuids[..5]
    );
    for limit in [1, 4, 7, 100] {
        assert_eq!(page_walk(store, limit).await, uuids, "pages of {limit}");
    }
    let all = store.list_deals().await.unwrap();
    assert_eq!(all.iter().map(|d| d.uuid).collect::<Vec<_>>(), uuids);
    assert_eq!(
        store.deal_by_uuid(DealUuid([0xee; 16])).await.unwrap(),
        None
    );
}

#[test]
fn lookups_duplicates_updates_and_pages_span_the_generations() {
    let dir = tempfile::tempdir().unwrap();
    let all = deals(40);
    block_on(async {
        let store = SledStore::open_with(dir.path(), runtime(), 3).unwrap();
        store_all(&store, &all).await;
        // 40 deals, 3 to a generation: 13 sealed and the open one holding 1.
        assert_eq!(store.deal_generations(), 14);
        every_lookup_finds_every_deal(&store, &all).await;

        // Duplicates of a deal in the first generation, by UUID and by proposal.
        let first = &all[0];
        assert_eq!(
            store.insert_new_deal(first).await.unwrap(),
            Inserted::UuidExists
        );
        let mut again = first.clone();
        again.uuid = DealUuid([0xaa; 16]);
        again.params.deal_uuid = again.uuid;
        assert_eq!(
            store.insert_new_deal(&again).await.unwrap(),
            Inserted::ProposalExists(first.uuid)
        );

        // An update reaches a deal in a sealed generation, and its live-index entry moves.
        let mut moved = first.clone();
        moved
            .apply(event_to(Checkpoint::Transferred, first, 1))
            .unwrap();
        store.update_deal(&moved).await.unwrap();
        let read = store.deal_by_uuid(first.uuid).await.unwrap().unwrap();
        assert_eq!(read.checkpoint, Checkpoint::Transferred);
        let at = store
            .live_uuids_at(Checkpoint::Transferred, None, 100)
            .await
            .unwrap();
        assert_eq!(at, vec![first.uuid]);
    });
    drop(all);
    // Reopened with another size: the generations are what the store recorded.
    let store = reopen_sled_with(dir.path(), 1000);
    assert_eq!(store.deal_generations(), 14);
    block_on(every_lookup_finds_every_deal(&store, &deals(40)));
}

/// A closed store holding `all` (twelve deals) in generations of four: two sealed, with
/// their filters stored, and the open one.
fn in_three_generations(all: &[DealRecord]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), runtime(), 4).unwrap();
    block_on(store_all(&store, all));
    assert_eq!(store.deal_generations(), 3);
    dir
}

/// Generation `n`'s filters' key in `meta`.
fn key(n: u32) -> Vec<u8> {
    [&b"generation_filters/"[..], &n.to_be_bytes()].concat()
}

/// Where the format bytes are in a generation's stored filters: four of (length (u32
/// BE) ‖ format byte ‖ words).
fn format_bytes(stored: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < stored.len() {
        out.push(at + 4);
        at += 4 + u32::from_be_bytes(stored[at..at + 4].try_into().unwrap()) as usize;
    }
    out
}

/// The format byte of each of a generation's stored filters.
fn formats(stored: &[u8]) -> Vec<u8> {
    format_bytes(stored).iter().map(|at| stored[*at]).collect()
}

#[test]
fn a_lost_or_damaged_filter_is_rebuilt_at_open() {
    let all = deals(12);
    let dir = in_three_generations(&all);
    {
        let db = raw_sled(dir.path());
        let meta = db.open_tree("meta").unwrap();
        assert!(meta.remove(key(0)).unwrap().is_some());
        assert!(meta.insert(key(1), &b"not a filter"[..]).unwrap().is_some());
        db.flush().unwrap();
    }
    let store = reopen_sled_with(dir.path(), 4);
    block_on(every_lookup_finds_every_deal(&store, &all));
    drop(store);
    let db = raw_sled(dir.path());
    let meta = db.open_tree("meta").unwrap();
    let stored = meta.get(key(0));
    assert!(
        stored.unwrap().is_some_and(|v| v.len() > 100),
        "rebuilt and stored"
    );
}

/// Filters stored by a release whose filters were 16 bits a key (format 1) are rebuilt
/// at the current size at open, all of them, so the stack of each kind stays one size;
/// every lookup still finds its deal.
#[test]
fn filters_of_the_first_format_are_rebuilt_at_open() {
    let all = deals(12);
    let dir = in_three_generations(&all);
    let current = {
        let db = raw_sled(dir.path());
        let meta = db.open_tree("meta").unwrap();
        let mut current = Vec::new();
        for n in 0..2 {
            let mut bytes = meta.get(key(n)).unwrap().unwrap().to_vec();
            current = formats(&bytes);
            for at in format_bytes(&bytes) {
                bytes[at] = 1;
            }
            assert_eq!(formats(&bytes), vec![1; 4]);
            meta.insert(key(n), bytes).unwrap();
        }
        db.flush().unwrap();
        current
    };
    assert_eq!(current.len(), 4);
    assert!(
        current.iter().all(|f| *f == current[0] && *f != 1),
        "{current:?}"
    );
    let store = reopen_sled_with(dir.path(), 4);
    block_on(every_lookup_finds_every_deal(&store, &all));
    drop(store);
    let db = raw_sled(dir.path());
    let meta = db.open_tree("meta").unwrap();
    for n in 0..2 {
        let stored = meta.get(key(n)).unwrap().unwrap();
        assert_eq!(
            formats(&stored),
            current,
            "generation {n} rebuilt and stored"
        );
    }
}

#[test]
fn a_store_from_before_generations_is_sealed_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = deals(40);
    {
        // A large generation size: all forty in the first, open generation, as a store
        // written before generations holds every deal in the trees' original names.
        let store = SledStore::open_with(dir.path(), runtime(), 1000).unwrap();
        block_on(store_all(&store, &all));
        assert_eq!(store.deal_generations(), 1);
    }
    let store = reopen_sled_with(dir.path(), 4);
    assert_eq!(
        store.deal_generations(),
        2,
        "the full generation sealed at open"
    );
    // Its filters are sized for its forty deals, the later ones for four: the lookups
    // ask both kinds.
    let new: Vec<DealRecord> = (200..209).map(a4_deal).collect();
    block_on(store_all(&store, &new));
    assert_eq!(store.deal_generations(), 4);
    all.extend(new);
    block_on(every_lookup_finds_every_deal(&store, &all));
    assert_eq!(
        block_on(store.insert_new_deal(&all[3])).unwrap(),
        Inserted::UuidExists
    );
    assert_eq!(
        block_on(store.insert_new_deal(&all[45])).unwrap(),
        Inserted::UuidExists
    );
}
