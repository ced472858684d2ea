//! The indexer (`exec::index`) on both store backends: a CAR file read as a stream into
//! more than one batch of entries, equal to the blocks the test lays out itself; stale
//! entries of an interrupted pass cleared; malformed and non-CAR files recorded with
//! their sentences and no entries; a missing file leaves the piece `not-yet`.
use std::{path::Path, sync::Arc, time::Duration};

use dealport_core::{
    car::{section_prefix, v1_header},
    piece_index::{BlockEntry, IndexState, INDEX_BATCH},
    wire::{
        cid::{CODEC_RAW, MH_SHA2_256},
        Cid,
    },
};
use dealport_node::{
    exec::{
        index::{IndexError, Indexer},
        staging::Staging,
    },
    metrics::Metrics,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        sled::SledStore,
        Store,
    },
};
use dealport_testkit::{
    node::{runtime, within},
    postgres::PgServer,
};
use futures::executor::block_on;
use sha2::{Digest, Sha256};

/// A CAR of `n` small raw blocks and the entries it must give (laid out here).
fn car(n: usize) -> (Vec<u8>, Vec<BlockEntry>) {
    let block = |i: usize| format!("block number {i}").into_bytes();
    let cid = |d: &[u8]| Cid::v1(CODEC_RAW, MH_SHA2_256, &Sha256::digest(d));
    let mut bytes = v1_header(&[cid(&block(0))]);
    let mut entries = Vec::new();
    for i in 0..n {
        let d = block(i);
        let c = cid(&d);
        bytes.extend(section_prefix(&c, d.len() as u64));
        entries.push(BlockEntry {
            multihash: c.multihash().to_vec(),
            offset: bytes.len() as u64,
            length: d.len() as u64,
        });
        bytes.extend_from_slice(&d);
    }
    (bytes, entries)
}

fn piece(n: u8) -> Cid {
    Cid::v1(0xf101, 0x1012, &[n; 32])
}

async fn all_entries(store: &dyn Store, p: &Cid) -> Vec<BlockEntry> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.piece_blocks_page(p, after, 1000).await.unwrap();
        after = page.last().map(|e| e.offset);
        let n = page.len();
        out.extend(page);
        if n < 1000 {
            return out;
        }
    }
}

async fn scenario(store: Arc<dyn Store>, dir: &Path) {
    let (ix, _wake) = Indexer::new(
        store.clone(),
        Staging::new(dir.join("staging")),
        None,
        runtime(),
        Arc::new(Metrics::new()),
        Duration::from_secs(3600),
    );
    // More than two batches of entries.
    let n = INDEX_BATCH * 2 + 17;
    let (bytes, want) = car(n);
    let good = dir.join("good.car");
    std::fs::write(&good, &bytes).unwrap();
    // A stale entry from an interrupted earlier pass must not survive.
    let stale = BlockEntry {
        multihash: vec![0x12, 0x20, 7],
        offset: 3,
        length: 1,
    };
    store
        .put_piece_blocks(&piece(1), std::slice::from_ref(&stale))
        .await
        .unwrap();
    let state = ix
        .index_piece(&piece(1), vec![dir.join("missing"), good.clone()])
        .await
        .unwrap();
    assert_eq!(state, IndexState::Indexed { blocks: n as u64 });
    assert_eq!(store.piece_index_state(&piece(1)).await.unwrap(), state);
    assert_eq!(all_entries(&*store, &piece(1)).await, want);
    let last = &want[n - 1];
    let found = store.blocks_by_multihash(&last.multihash, 5).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].offset, found[0].length),
        (last.offset, last.length)
    );

    // Broken after a batch was written: no entries stay, the sentence is recorded.
    let mut broken = bytes.clone();
    let at = want[INDEX_BATCH + 5].offset as usize;
    broken[at] ^= 1;
    let bad = dir.join("bad.car");
    std::fs::write(&bad, &broken).unwrap();
    let state = ix.index_piece(&piece(2), vec![bad]).await.unwrap();
    let IndexState::Malformed { reason } = &state else {
        panic!("{state}")
    };
    assert!(
        reason.contains(&format!("at byte {at}: its data does not hash to its CID")),
        "{reason}"
    );
    assert!(all_entries(&*store, &piece(2)).await.is_empty());

    // Not a CAR.
    let text = dir.join("text");
    std::fs::write(&text, b"just some text, no CAR here").unwrap();
    let state = ix.index_piece(&piece(3), vec![text]).await.unwrap();
    assert_eq!(state.name(), "not-a-car", "{state}");
    assert_eq!(store.piece_index_state(&piece(3)).await.unwrap(), state);

    // No file at all: nothing recorded, tried again later.
    let e = ix
        .index_piece(&piece(4), vec![dir.join("gone")])
        .await
        .unwrap_err();
    assert!(matches!(e, IndexError::NoData(_)), "{e}");
    assert_eq!(
        store.piece_index_state(&piece(4)).await.unwrap(),
        IndexState::NotYet
    );
}

#[test]
fn sled_indexes_a_piece_as_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
    block_on(scenario(store, dir.path()));
}

#[test]
fn postgres_indexes_a_piece_as_a_stream() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(within(Duration::from_secs(120), async {
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::connect(&server.url(), PostgresOptions::default())
                .await
                .unwrap(),
        );
        scenario(store, dir.path()).await;
    }));
}

/// The indexer looks at a deal once: a scan settles it (here: no data to read), a later
/// scan does not look at it again (so deals waiting for sealing cost nothing at rest),
/// and a notice that the deal's data is in indexes its piece.
#[test]
fn sled_settled_deals_are_not_looked_at_again_and_a_notice_indexes() {
    use dealport_core::deal::DealEvent;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
    let staging = Staging::new(dir.path().join("staging"));
    let (ix, _notices) = Indexer::new(
        store.clone(),
        staging.clone(),
        None,
        runtime(),
        Arc::new(Metrics::new()),
        Duration::from_secs(3600),
    );
    block_on(async {
        let mut deal = dealport_testkit::node::a4_deal(1);
        let size = deal.params.transfer.size;
        deal.apply(DealEvent::Transferred { bytes: size }).unwrap();
        store.insert_new_deal(&deal).await.unwrap();
        let piece = deal.params.client_deal_proposal.proposal.piece_cid.clone();

        ix.scan().await; // no data: settled, remembered
        assert_eq!(
            store.piece_index_state(&piece).await.unwrap(),
            IndexState::NotYet
        );

        let (bytes, want) = car(3);
        let path = staging.data_path(deal.uuid);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        ix.scan().await;
        assert_eq!(
            store.piece_index_state(&piece).await.unwrap(),
            IndexState::NotYet,
            "a rescan looked at a deal it had settled"
        );

        ix.deal_data_in(deal.uuid).await;
        assert_eq!(
            store.piece_index_state(&piece).await.unwrap(),
            IndexState::Indexed { blocks: 3 }
        );
        assert_eq!(all_entries(&*store, &piece).await, want);
    });
}
