//! The sled store on a temp dir: inserts, every index, reopening, the data-dir lock.

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    wire::{Cbor, DealParams, DealUuid},
};
use dealport_node::{
    identity,
    store::{sled::SledStore, Inserted, Store, StoreError},
};

use dealport_testkit::node::{golden, runtime as rt};

fn a4_record() -> DealRecord {
    let bytes = golden("A4");
    let params = DealParams::from_cbor(&bytes).unwrap();
    DealRecord::new_accepted(
        bytes,
        params,
        "12D3KooWtest".into(),
        1_700_000_000_123_456_789,
    )
}

/// The same deal under another UUID and another proposal (different start epoch).
fn other_record() -> DealRecord {
    let mut params = DealParams::from_cbor(&golden("A4")).unwrap();
    params.deal_uuid = DealUuid([7; 16]);
    params.client_deal_proposal.proposal.start_epoch += 1;
    let bytes = params.to_cbor();
    DealRecord::new_accepted(bytes, params, String::new(), 5)
}

#[test]
fn insert_lookup_update_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let deal = a4_record();
    futures::executor::block_on(async {
        let store = SledStore::open(dir.path(), rt()).unwrap();
        assert_eq!(store.list_deals().await.unwrap(), vec![]);
        assert_eq!(store.deal_by_uuid(deal.uuid).await.unwrap(), None);

        assert_eq!(store.insert_new_deal(&deal).await.unwrap(), Inserted::Yes);
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
        // The proposal CID is not a signed proposal CID and vice versa.
        assert_eq!(
            store
                .deal_by_signed_proposal_cid(&deal.proposal_cid)
                .await
                .unwrap(),
            None
        );

        // A second insert under the same UUID, or of the same proposal, writes nothing.
        assert_eq!(
            store.insert_new_deal(&deal).await.unwrap(),
            Inserted::UuidExists
        );
        let mut same_proposal = deal.clone();
        same_proposal.uuid = DealUuid([9; 16]);
        same_proposal.params.deal_uuid = same_proposal.uuid;
        assert_eq!(
            store.insert_new_deal(&same_proposal).await.unwrap(),
            Inserted::ProposalExists(deal.uuid)
        );
        assert_eq!(store.deal_by_uuid(same_proposal.uuid).await.unwrap(), None);

        let other = other_record();
        assert_eq!(store.insert_new_deal(&other).await.unwrap(), Inserted::Yes);
        assert_eq!(store.list_deals().await.unwrap().len(), 2);

        let mut updated = deal.clone();
        updated
            .apply(DealEvent::Transferring {
                bytes_received: 1000,
            })
            .unwrap();
        updated
            .apply(DealEvent::Failed("transfer failed: boom".into()))
            .unwrap();
        store.update_deal(&updated).await.unwrap();
        let mut unknown = deal.clone();
        unknown.uuid = DealUuid([1; 16]);
        assert!(matches!(
            store.update_deal(&unknown).await,
            Err(StoreError::NoSuchDeal(_))
        ));

        let (key, created) = identity::load_or_create(&store).await.unwrap();
        assert!(created);
        let (again, created) = identity::load_or_create(&store).await.unwrap();
        assert!(!created);
        assert_eq!(key.public(), again.public());
        let bytes = store.identity().await.unwrap().unwrap();
        assert_eq!(
            &bytes[..4],
            &[0x08, 0x01, 0x12, 0x40],
            "libp2p protobuf ed25519"
        );
    });

    // Reopen: everything is still there.
    futures::executor::block_on(async {
        let store = SledStore::open(dir.path(), rt()).unwrap();
        let deals = store.list_deals().await.unwrap();
        assert_eq!(deals.len(), 2);
        let d = store.deal_by_uuid(deal.uuid).await.unwrap().unwrap();
        assert_eq!(d.checkpoint, Checkpoint::Accepted);
        assert_eq!(d.n_bytes_received, 1000);
        assert_eq!(d.error.as_deref(), Some("transfer failed: boom"));
        assert_eq!(d.params_bytes, deal.params_bytes);
        assert_eq!(
            store
                .deal_by_proposal_cid(&other_record().proposal_cid)
                .await
                .unwrap()
                .map(|d| d.uuid),
            Some(DealUuid([7; 16]))
        );
        assert!(identity::load(&store).await.unwrap().is_some());
    });
}

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
