//! What only the sled store does: one process per data dir, owner-only files, the
//! stored form of a deal. What it shares with the PostgreSQL store (deals, identity,
//! reopening, the lease) is in store_contract.rs.

use dealport_node::store::{sled::SledStore, StoreError};

use dealport_testkit::node::{a4_record, raw_sled, runtime as rt};

#[test]
fn second_open_says_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledStore::open(dir.path(), rt()).unwrap();
    let err = SledStore::open(dir.path(), rt()).unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "data dir {} is in use by another dealport process",
            dir.path().display()
        )
    );
    drop(first);
}

#[cfg(unix)]
#[test]
fn store_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let _store = SledStore::open(dir.path(), rt()).unwrap();
    let store_dir = SledStore::path_in(dir.path());
    let mode = std::fs::metadata(&store_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "store dir mode {mode:o}");
    for e in std::fs::read_dir(&store_dir).unwrap().flatten() {
        let mode = e.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} mode {mode:o}", e.path().display());
    }
}

/// A record in format 1 (JSON), as stores written before format 2 hold it.
fn format_1(d: &dealport_core::deal::DealRecord) -> Vec<u8> {
    serde_json::to_vec(&dealport_node::store::StoredDeal::from_record(d)).unwrap()
}

#[test]
fn stored_form_round_trips_and_rejects_damage() {
    use dealport_node::store::StoredDeal;
    let deal = a4_record();
    let bytes = format_1(&deal);
    assert_eq!(StoredDeal::decode("k", &bytes).unwrap(), deal);
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["checkpoint"] = "Sealing".into();
    let err = StoredDeal::decode("k", &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("unknown checkpoint"), "{err}");
}

/// A record with every optional field set, failed, far along.
fn full_record() -> dealport_core::deal::DealRecord {
    let mut d = a4_record();
    d.checkpoint = dealport_core::deal::Checkpoint::AddedPiece;
    d.error = Some("sealer said no".into());
    d.n_bytes_received = 1 << 40;
    d.publish_cid = Some(d.proposal_cid.clone());
    d.chain_deal_id = u64::MAX;
    d.sector_number = Some(7);
    d.sector_offset = Some(0);
    d.sealing_status = "PreCommit1".into();
    d.created_at_unix_nanos = -1;
    d
}

#[test]
fn format_2_round_trips_and_format_1_is_still_read() {
    use dealport_core::deal::Checkpoint;
    use dealport_node::store::StoredDeal;
    for deal in [a4_record(), full_record()] {
        let v2 = StoredDeal::encode(&deal);
        let v1 = format_1(&deal);
        assert_eq!(v2[0], 0x8e, "a CBOR array of 14 items");
        assert!(
            v2.len() * 2 < v1.len() + 200,
            "{} vs {}",
            v2.len(),
            v1.len()
        );
        assert_eq!(StoredDeal::decode("k", &v2).unwrap(), deal);
        assert_eq!(StoredDeal::decode("k", &v1).unwrap(), deal);
        let progress = Some((deal.checkpoint, deal.error.is_some()));
        assert_eq!(StoredDeal::progress(&v2), progress);
        assert_eq!(StoredDeal::progress(&v1), progress);
    }
    assert_eq!(
        StoredDeal::progress(&StoredDeal::encode(&full_record())),
        Some((Checkpoint::AddedPiece, true))
    );
}

#[test]
fn format_2_damage_is_a_clear_error() {
    use dealport_node::store::StoredDeal;
    let good = StoredDeal::encode(&full_record());
    let msg = |bytes: &[u8]| {
        StoredDeal::decode("deal-key", bytes)
            .unwrap_err()
            .to_string()
    };
    // Every truncation fails, naming the key; none panics.
    for n in 0..good.len() {
        let m = msg(&good[..n]);
        assert!(m.contains("deal-key"), "{n}: {m}");
    }
    // Any byte changed to anything: an answer or an error, never a panic.
    for i in 0..good.len() {
        for b in [0x00, 0x17, 0x18, 0x40, 0x5b, 0x60, 0x7b, 0x9f, 0xf6, 0xff] {
            let mut damaged = good.clone();
            damaged[i] = b;
            let _ = StoredDeal::decode("k", &damaged);
            let _ = StoredDeal::progress(&damaged);
        }
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(
        msg(&trailing).contains("1 bytes after the record"),
        "{}",
        msg(&trailing)
    );
    let mut format = good.clone();
    format[1] = 9;
    assert!(
        msg(&format).contains("format 9 is not known"),
        "{}",
        msg(&format)
    );
    let checkpoint = StoredDeal::encode(&full_record());
    let at = checkpoint
        .windows(10)
        .position(|w| w == b"AddedPiece")
        .unwrap();
    let mut bad = checkpoint.clone();
    bad[at..at + 10].copy_from_slice(b"AddedPeace");
    assert!(
        msg(&bad).contains("unknown checkpoint \"AddedPeace\""),
        "{}",
        msg(&bad)
    );
    assert_eq!(StoredDeal::progress(&bad), None);
}

/// A store written before format 2 (its records JSON, no index built yet) opens, builds
/// its indexes from the old records, answers them, and writes a deal's next record in
/// format 2.
#[test]
fn a_store_of_format_1_records_is_read_and_rewritten_in_format_2() {
    use dealport_node::store::{Store, StoredDeal};
    let dir = tempfile::tempdir().unwrap();
    let old = a4_record();
    {
        let db = raw_sled(dir.path());
        let deals = db.open_tree("deals").unwrap();
        deals.insert(old.uuid.0, format_1(&old)).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), rt()).unwrap();
    use futures::executor::block_on as block;
    assert_eq!(
        block(store.deal_by_uuid(old.uuid)).unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        block(store.live_deals_at(old.checkpoint, None, 10)).unwrap(),
        vec![old.clone()]
    );
    let mut moved = old.clone();
    moved.checkpoint = dealport_core::deal::Checkpoint::Transferred;
    block(store.update_deal(&moved)).unwrap();
    assert_eq!(
        block(store.deal_by_uuid(old.uuid)).unwrap(),
        Some(moved.clone())
    );
    assert!(block(store.live_deals_at(old.checkpoint, None, 10))
        .unwrap()
        .is_empty());
    assert_eq!(
        block(store.live_deals_at(moved.checkpoint, None, 10)).unwrap(),
        vec![moved.clone()]
    );
    drop(store);
    let db = raw_sled(dir.path());
    let raw = db
        .open_tree("deals")
        .unwrap()
        .get(old.uuid.0)
        .unwrap()
        .unwrap();
    assert_eq!(raw.to_vec(), StoredDeal::encode(&moved));
}

/// A record under another deal's key is corruption, not that deal.
#[test]
fn a_record_under_another_uuid_is_corrupt() {
    use dealport_node::store::{Store, StoredDeal};
    use futures::executor::block_on;
    let dir = tempfile::tempdir().unwrap();
    let deal = a4_record();
    let other = dealport_core::wire::DealUuid([7; 16]);
    {
        let db = raw_sled(dir.path());
        let deals = db.open_tree("deals").unwrap();
        deals.insert(other.0, StoredDeal::encode(&deal)).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), rt()).unwrap();
    let err = block_on(store.deal_by_uuid(other)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("the record is deal {}", deal.uuid)),
        "{err}"
    );
}

/// A new deal's timeline starts at its acceptance, read from the record: its insert
/// writes no timeline entry (one random leaf less per deal on a large store); the
/// states it moves to later get theirs.
#[test]
fn a_new_deal_writes_no_timeline_entry_of_its_own() {
    use dealport_core::deal::{Checkpoint, DealEvent};
    use dealport_node::store::Store;
    use futures::executor::block_on as block;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), rt()).unwrap();
    let mut d = a4_record();
    let accepted_ms = d.created_at_unix_nanos / 1_000_000;
    block(store.insert_new_deal(&d)).unwrap();
    assert_eq!(
        block(store.deal_timeline(d.uuid)).unwrap(),
        vec![(0, accepted_ms)]
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    d.apply(DealEvent::Transferred {
        bytes: d.params.transfer.size,
    })
    .unwrap();
    assert_eq!(d.checkpoint, Checkpoint::Transferred);
    block(store.update_deal(&d)).unwrap();
    let t = block(store.deal_timeline(d.uuid)).unwrap();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[0], (0, accepted_ms));
    assert_eq!(t[1].0, 1);
    assert!(t[1].1 >= before, "{t:?}");
    drop(store);
    let db = raw_sled(dir.path());
    let entries: Vec<_> = db
        .open_tree("ui_timeline")
        .unwrap()
        .scan_prefix(d.uuid.0)
        .map(|kv| kv.unwrap().0.to_vec())
        .collect();
    assert_eq!(entries, vec![[&d.uuid.0[..], &[1u8][..]].concat()]);
}
