//! What only the sled store does: one process per data dir, owner-only files, the
//! stored form of a deal. What it shares with the PostgreSQL store (deals, identity,
//! reopening, the lease) is in store_contract.rs.

use dealport_node::store::{sled::SledStore, StoreError};

use dealport_testkit::node::{a4_record, runtime as rt};

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

#[test]
fn stored_form_round_trips_and_rejects_damage() {
    use dealport_node::store::StoredDeal;
    let deal = a4_record();
    let bytes = StoredDeal::encode(&deal);
    assert_eq!(StoredDeal::decode("k", &bytes).unwrap(), deal);
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["checkpoint"] = "Sealing".into();
    let err = StoredDeal::decode("k", &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("unknown checkpoint"), "{err}");
}
