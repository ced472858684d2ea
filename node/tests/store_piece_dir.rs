//! The piece directory on both backends: block entries written in batches read back
//! in offset order a page at a time with a cursor, found by multihash (across pieces),
//! index states written and read, entries removed when a piece turns out malformed or
//! is indexed again, and everything still there after a reopen.
use std::{sync::Arc, time::Duration};

use dealport_core::{
    piece_index::{BlockEntry, BlockLocation, IndexState},
    wire::Cid,
};
use dealport_node::store::{sled::SledStore, Store};
use dealport_testkit::{
    node::{postgres_store, reopen_sled, runtime, within},
    postgres::PgServer,
};
use futures::executor::block_on;

fn piece(n: u8) -> Cid {
    Cid::v1(0xf101, 0x1012, &[n; 32])
}

/// A sha2-256 multihash with digest `[n; 32]`.
fn mh(n: u32) -> Vec<u8> {
    let mut m = vec![0x12, 0x20];
    m.extend_from_slice(&[n as u8; 28]);
    m.extend_from_slice(&n.to_be_bytes());
    m
}

/// Piece `p`'s `n` entries: block `i` at offset `100 + 10 i`, length `i + 1`.
fn entries(n: u32) -> Vec<BlockEntry> {
    (0..n)
        .map(|i| BlockEntry {
            multihash: mh(i),
            offset: 100 + 10 * u64::from(i),
            length: u64::from(i) + 1,
        })
        .collect()
}

async fn all_pages(store: &dyn Store, p: &Cid, page: usize) -> Vec<BlockEntry> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let got = store.piece_blocks_page(p, after, page).await.unwrap();
        assert!(got.len() <= page);
        after = got.last().map(|e| e.offset);
        let n = got.len();
        out.extend(got);
        if n < page {
            return out;
        }
    }
}

async fn write(store: &dyn Store) {
    assert_eq!(
        store.piece_index_state(&piece(1)).await.unwrap(),
        IndexState::NotYet
    );
    // Piece 1: 25 blocks in three batches, out of order; piece 2 shares block 3.
    let all = entries(25);
    for batch in [&all[10..], &all[..4], &all[4..10]] {
        store.put_piece_blocks(&piece(1), batch).await.unwrap();
    }
    let shared = BlockEntry {
        multihash: mh(3),
        offset: 7,
        length: 4,
    };
    store
        .put_piece_blocks(&piece(2), std::slice::from_ref(&shared))
        .await
        .unwrap();
    for (p, blocks) in [(1, 25), (2, 1)] {
        store
            .set_piece_index_state(&piece(p), &IndexState::Indexed { blocks })
            .await
            .unwrap();
    }
    // Piece 3: entries written, then the CAR breaks: none stay.
    store
        .put_piece_blocks(&piece(3), &entries(5))
        .await
        .unwrap();
    let malformed = IndexState::Malformed {
        reason: "block 5 is truncated".into(),
    };
    store
        .set_piece_index_state(&piece(3), &malformed)
        .await
        .unwrap();
    store
        .set_piece_index_state(
            &piece(4),
            &IndexState::NotCar {
                reason: "no CAR header".into(),
            },
        )
        .await
        .unwrap();
}

async fn check(store: &dyn Store) {
    assert_eq!(
        store.piece_index_state(&piece(1)).await.unwrap(),
        IndexState::Indexed { blocks: 25 }
    );
    assert_eq!(
        store.piece_index_state(&piece(3)).await.unwrap(),
        IndexState::Malformed {
            reason: "block 5 is truncated".into()
        }
    );
    assert_eq!(
        store.piece_index_state(&piece(4)).await.unwrap().name(),
        "not-a-car"
    );
    for page in [1, 7, 25, 100] {
        assert_eq!(
            all_pages(store, &piece(1), page).await,
            entries(25),
            "{page}"
        );
    }
    let after = store
        .piece_blocks_page(&piece(1), Some(100 + 10 * 20), 100)
        .await
        .unwrap();
    assert_eq!(after, entries(25)[21..].to_vec());
    assert!(store
        .piece_blocks_page(&piece(1), Some(u64::MAX), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(all_pages(store, &piece(3), 10).await.is_empty());
    assert!(all_pages(store, &piece(9), 10).await.is_empty());

    let found = store.blocks_by_multihash(&mh(3), 10).await.unwrap();
    let mut expected = vec![
        BlockLocation {
            piece: piece(1),
            offset: 130,
            length: 4,
        },
        BlockLocation {
            piece: piece(2),
            offset: 7,
            length: 4,
        },
    ];
    expected.sort_by(|a, b| a.piece.as_bytes().cmp(b.piece.as_bytes()));
    assert_eq!(found, expected);
    assert_eq!(store.blocks_by_multihash(&mh(3), 1).await.unwrap().len(), 1);
    assert_eq!(
        store.blocks_by_multihash(&mh(24), 10).await.unwrap(),
        vec![BlockLocation {
            piece: piece(1),
            offset: 340,
            length: 25
        }]
    );
    // Piece 3's blocks went with its malformed state; unknown and short keys find nothing.
    assert!(store
        .blocks_by_multihash(&mh(99), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.blocks_by_multihash(&[0x12], 10).await.unwrap().len() <= 10);
}

/// Indexing again from the start (`NotYet`) clears the piece's entries.
async fn reindex(store: &dyn Store) {
    store
        .set_piece_index_state(&piece(2), &IndexState::NotYet)
        .await
        .unwrap();
    assert_eq!(
        store.piece_index_state(&piece(2)).await.unwrap(),
        IndexState::NotYet
    );
    assert!(all_pages(store, &piece(2), 10).await.is_empty());
    assert_eq!(
        store.blocks_by_multihash(&mh(3), 10).await.unwrap(),
        vec![BlockLocation {
            piece: piece(1),
            offset: 130,
            length: 4
        }]
    );
}

#[test]
fn sled_piece_directory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
        block_on(async {
            write(&*store).await;
            check(&*store).await;
        });
    }
    let again = reopen_sled(dir.path());
    block_on(async {
        check(&again).await;
        reindex(&again).await;
    });
}

#[test]
fn postgres_piece_directory() {
    let server = PgServer::start();
    block_on(within(Duration::from_secs(60), async {
        let url = server.url();
        let store: Arc<dyn Store> = postgres_store(&url).await;
        write(&*store).await;
        check(&*store).await;
        let again: Arc<dyn Store> = postgres_store(&url).await;
        check(&*again).await;
        reindex(&*again).await;
    }));
}
