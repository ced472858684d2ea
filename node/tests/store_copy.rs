//! `dealport store copy` over a real sled store and a real PostgreSQL: everything a node
//! keeps reads back the same from the database (identity, deals, timelines, the piece
//! directory, the IPNI chain with its entry chunks and announced set, the leader's
//! intents); a second run writes nothing; a database held by a running node or holding
//! another node's identity is refused before anything is written.
use std::time::Duration;

use dealport_core::{
    deal::{DealEvent, DealRecord},
    ipni::{ad::dag_json_cid, Advertisement, Block, EntryChunk},
    piece_index::{BlockEntry, IndexState},
    wire::{Cbor, Cid, DealParams, DealUuid},
};
use dealport_node::{
    exec::publish::INTENT_STATE,
    sealing::handoff::intent_key,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        sled::SledStore,
        IpniPublish, Published, Store, CHECKPOINTS,
    },
    store_copy::{copy_to_postgres, CopyError, CopyReport},
};
use dealport_testkit::{
    node::{event_to, golden, runtime, take_lease, within},
    postgres::PgServer,
};
use futures::executor::block_on;

const N: u8 = 12;
const TTL: Duration = Duration::from_secs(30);

/// A node identity key as the store keeps it (libp2p's protobuf encoding), the same
/// for the same `seed`.
fn key(seed: u8) -> Vec<u8> {
    libp2p::identity::Keypair::ed25519_from_bytes([seed; 32])
        .unwrap()
        .to_protobuf_encoding()
        .unwrap()
}

fn piece(i: u8) -> Cid {
    Cid::v1(0xf101, 0x1012, &[i; 32])
}

/// Deal `i` as accepted: its own UUID, proposal and piece.
fn accepted(i: u8) -> DealRecord {
    let mut params = DealParams::from_cbor(&golden("A4")).unwrap();
    params.deal_uuid = DealUuid([i + 1; 16]);
    let p = &mut params.client_deal_proposal.proposal;
    p.start_epoch += i64::from(i);
    p.piece_cid = piece(i);
    let created = 1_700_000_000_000_000_000 + i64::from(i) * 1_000_000_000;
    DealRecord::new_accepted(params.to_cbor(), params, String::new(), created)
}

fn dag_json(bytes: Vec<u8>) -> Block {
    Block {
        cid: dag_json_cid(&bytes),
        bytes,
    }
}

/// An advertisement for deal `d` after `previous`, its entries in two chunks.
fn ad(d: DealUuid, previous: Option<&Cid>, is_rm: bool) -> (Block, Vec<Block>) {
    let last = dag_json(
        EntryChunk {
            entries: vec![vec![0x12, 0x20, d.0[0], 2]],
            next: None,
        }
        .to_ipld()
        .to_dag_json(),
    );
    let first = dag_json(
        EntryChunk {
            entries: vec![vec![0x12, 0x20, d.0[0], 1]],
            next: Some(last.cid.clone()),
        }
        .to_ipld()
        .to_dag_json(),
    );
    let ad = Advertisement {
        previous: previous.cloned(),
        provider: "12D3KooWcopy".into(),
        addresses: vec!["/ip4/127.0.0.1/tcp/1".into()],
        signature: vec![1, 2, 3],
        entries: first.cid.clone(),
        context_id: d.0.to_vec(),
        metadata: vec![0x80, 0x80, 0x04, 0],
        is_rm,
    };
    (dag_json(ad.to_ipld().to_dag_json()), vec![first, last])
}

/// A sled store with everything in it: `N` deals moved through the checkpoints one
/// update at a time (so their timelines have several entries), two of them failed; two
/// pieces indexed (one a CAR, one not); a chain of three advertisements; intents.
async fn fill(store: &dyn Store) -> Vec<DealUuid> {
    store.identity_or_create(Box::new(|| key(1))).await.unwrap();
    let fence = take_lease(store, "sled-node", TTL).await;
    let mut uuids = Vec::new();
    for i in 0..N {
        let mut d = accepted(i);
        uuids.push(d.uuid);
        store.insert_new_deal_fenced(&fence, &d).await.unwrap();
        let target = CHECKPOINTS[usize::from(i) % CHECKPOINTS.len()];
        for c in CHECKPOINTS.iter().skip(1).take_while(|c| **c <= target) {
            d.apply(event_to(*c, &d, i)).unwrap();
            store.update_deal_fenced(&fence, &d).await.unwrap();
        }
        if i % 5 == 4 {
            d.apply(DealEvent::Failed("broken".into())).unwrap();
            store.update_deal_fenced(&fence, &d).await.unwrap();
        }
    }
    let entries: Vec<BlockEntry> = (0..25_000u64)
        .map(|k| BlockEntry {
            multihash: [&[0x12, 0x20][..], &k.to_be_bytes()[..], &[0; 24]].concat(),
            offset: 100 + k * 64,
            length: 60,
        })
        .collect();
    store.put_piece_blocks(&piece(1), &entries).await.unwrap();
    store
        .set_piece_index_state(&piece(1), &IndexState::Indexed { blocks: 25_000 })
        .await
        .unwrap();
    assert_eq!(
        store.piece_index_state(&piece(1)).await.unwrap(),
        IndexState::Indexed { blocks: 25_000 }
    );
    store
        .set_piece_index_state(
            &piece(2),
            &IndexState::NotCar {
                reason: "raw bytes".into(),
            },
        )
        .await
        .unwrap();
    let mut previous: Option<Cid> = None;
    for (n, (d, is_rm)) in [(uuids[1], false), (uuids[3], false), (uuids[1], true)]
        .into_iter()
        .enumerate()
    {
        let (block, chunks) = ad(d, previous.as_ref(), is_rm);
        for c in &chunks {
            store.put_ipni_chunk(c).await.unwrap();
        }
        let publish = IpniPublish {
            ad: block.clone(),
            previous: previous.clone(),
            deal: d,
            is_rm,
            part: 0,
        };
        let published = store.publish_ipni_ad(&fence, &publish).await.unwrap();
        assert_eq!(published, Published::Yes { seq: n as u64 + 1 });
        previous = Some(block.cid);
    }
    store
        .put_leader_state(&fence, INTENT_STATE, b"a batch in flight")
        .await
        .unwrap();
    store
        .put_leader_state(&fence, &intent_key(uuids[3]), b"add piece 3")
        .await
        .unwrap();
    assert!(store.release(&fence).await.unwrap());
    uuids
}

/// Everything `fill` wrote reads back from `b` as from `a`.
async fn same(a: &dyn Store, b: &dyn Store, uuids: &[DealUuid]) {
    assert_eq!(a.identity().await.unwrap(), b.identity().await.unwrap());
    for u in uuids {
        let da = a.deal_by_uuid(*u).await.unwrap().expect("in the source");
        assert_eq!(b.deal_by_uuid(*u).await.unwrap().as_ref(), Some(&da), "{u}");
        let ta = a.deal_timeline(*u).await.unwrap();
        assert!(!ta.is_empty());
        assert_eq!(b.deal_timeline(*u).await.unwrap(), ta, "timeline of {u}");
        assert_eq!(
            b.ipni_ads_of_deal(*u).await.unwrap(),
            a.ipni_ads_of_deal(*u).await.unwrap()
        );
        let key = intent_key(*u);
        assert_eq!(
            b.leader_state(&key).await.unwrap(),
            a.leader_state(&key).await.unwrap()
        );
    }
    assert!(a.deal_timeline(uuids[6]).await.unwrap().len() >= 6);
    for i in 0..N {
        let p = piece(i);
        assert_eq!(
            b.piece_index_state(&p).await.unwrap(),
            a.piece_index_state(&p).await.unwrap()
        );
        assert_eq!(
            b.piece_blocks_page(&p, None, 100_000).await.unwrap(),
            a.piece_blocks_page(&p, None, 100_000).await.unwrap()
        );
    }
    let head = a.ipni_head().await.unwrap().expect("a chain");
    assert_eq!(b.ipni_head().await.unwrap(), Some(head.clone()));
    let mut next = Some(head.cid);
    while let Some(cid) = next {
        let bytes = a.ipni_block(&cid).await.unwrap().unwrap();
        assert_eq!(b.ipni_block(&cid).await.unwrap().as_ref(), Some(&bytes));
        let ad = Advertisement::from_dag_json(&bytes).unwrap();
        let mut chunk = Some(ad.entries);
        while let Some(c) = chunk {
            let cb = a.ipni_block(&c).await.unwrap().unwrap();
            assert_eq!(b.ipni_block(&c).await.unwrap().as_ref(), Some(&cb));
            chunk = EntryChunk::from_dag_json(&cb).unwrap().next;
        }
        next = ad.previous;
    }
    assert_eq!(
        b.ipni_announced_page(None, 100).await.unwrap(),
        a.ipni_announced_page(None, 100).await.unwrap()
    );
    assert_eq!(
        b.leader_state(INTENT_STATE).await.unwrap(),
        a.leader_state(INTENT_STATE).await.unwrap()
    );
}

async fn copy(source: &dyn Store, target: &PostgresStore) -> Result<CopyReport, CopyError> {
    let mut pages = 0;
    let r = copy_to_postgres(source, target, &mut |_| pages += 1).await;
    if r.is_ok() {
        assert!(pages >= 1);
    }
    r
}

fn refusal(r: Result<CopyReport, CopyError>) -> String {
    match r {
        Err(CopyError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_sled_store_moves_to_postgres_whole() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    block_on(within(Duration::from_secs(120), async {
        let source = SledStore::open(dir.path(), runtime()).unwrap();
        let uuids = fill(&source).await;
        let target = PostgresStore::connect(&server.url(), PostgresOptions::default())
            .await
            .unwrap();

        // A node running on the database: refused, nothing written.
        let node = take_lease(&target, "a-node", TTL).await;
        let why = refusal(copy(&source, &target).await);
        assert!(why.contains("a-node holds the database's lease"), "{why}");
        assert_eq!(target.identity().await.unwrap(), None);
        assert!(target.list_deals_page(None, 10).await.unwrap().is_empty());
        assert!(target.release(&node).await.unwrap());

        let first = copy(&source, &target).await.unwrap();
        assert!(first.identity_copied);
        assert_eq!((first.deals_read, first.deals_written), (12, 12));
        assert_eq!((first.pieces, first.blocks), (2, 25_000));
        assert_eq!((first.advertisements, first.intents), (3, 2));
        same(&source, &target, &uuids).await;
        // The copy gave the lease up: a node can take it at once.
        let node = take_lease(&target, "the-node", TTL).await;
        assert!(target.release(&node).await.unwrap());

        // Run again: nothing new to write, and still the same.
        let again = copy(&source, &target).await.unwrap();
        assert_eq!(
            again,
            CopyReport {
                identity_copied: false,
                deals_read: 12,
                ..CopyReport::default()
            }
        );
        same(&source, &target, &uuids).await;

        // Another node's store into the same database: refused before a write.
        let other = SledStore::open(other_dir.path(), runtime()).unwrap();
        other.identity_or_create(Box::new(|| key(2))).await.unwrap();
        let stranger = accepted(N + 1);
        other.insert_new_deal(&stranger).await.unwrap();
        let why = refusal(copy(&other, &target).await);
        assert!(why.contains("another node's identity key"), "{why}");
        assert_eq!(target.deal_by_uuid(stranger.uuid).await.unwrap(), None);
    }));
}

#[test]
fn a_chain_that_is_not_the_stores_is_not_forked() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(within(Duration::from_secs(120), async {
        let source = SledStore::open(dir.path(), runtime()).unwrap();
        fill(&source).await;
        let target = PostgresStore::connect(&server.url(), PostgresOptions::default())
            .await
            .unwrap();
        // The database already has a chain of its own, and no identity yet.
        let d = accepted(40);
        assert_eq!(target.bulk_load(std::slice::from_ref(&d)).await.unwrap(), 1);
        let fence = take_lease(&target, "a-node", TTL).await;
        let (block, _) = ad(d.uuid, None, false);
        let publish = IpniPublish {
            ad: block,
            previous: None,
            deal: d.uuid,
            is_rm: false,
            part: 0,
        };
        target.publish_ipni_ad(&fence, &publish).await.unwrap();
        target.release(&fence).await.unwrap();
        let why = refusal(copy(&source, &target).await);
        assert!(why.contains("appending would fork it"), "{why}");
        assert_eq!(target.ipni_head().await.unwrap().map(|h| h.seq), Some(1));
        // Refused before a write: no identity, none of the source's deals.
        let there = target.list_deals_page(None, 100).await.unwrap();
        assert_eq!(
            there.iter().map(|d| d.uuid).collect::<Vec<_>>(),
            vec![d.uuid]
        );
        assert_eq!(target.identity().await.unwrap(), None);
    }));
}
