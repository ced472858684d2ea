//! Status answers: Boost's checks in Boost's order, golden bytes S3/S4, signatures over
//! the UUID bytes, and the verification cache.
use dealport_core::deal::{Checkpoint, DealEvent, DealRecord};
use dealport_core::status::{
    answer_status, answer_status_on, status_response, StatusAnswer, StatusOutcome, VerifyCache,
    AWAITING_OFFLINE_DATA,
};
use dealport_core::wire::{
    Address, Cbor, Cid, DealParams, DealStatusRequest, DealStatusResponse, DealUuid, Network,
};

mod common;
use common::vector;

const SECP_CLIENT: &str = "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna";
const BLS_CLIENT: &str =
    "f3rd27rdpzmhfttvv3fqrtqgal7vun4s3z4yoiyhlw4qodzv4ed3egfsh2yxtqcvwn2m6ih6dtpjfvcqrtzi2a";
const SIZE: u64 = 30_000_000_000;

fn record(name: &str) -> DealRecord {
    let bytes = vector(name);
    let params = DealParams::from_cbor(&bytes).expect("params decode");
    DealRecord::new_accepted(bytes, params, String::new(), 0)
}

/// The A4 deal (secp client).
fn secp_deal() -> DealRecord {
    record("A4")
}

/// The B2 deal (BLS client).
fn bls_deal() -> DealRecord {
    record("B2")
}

fn secp_key() -> Address {
    Address::parse(SECP_CLIENT).unwrap()
}

fn bls_key() -> Address {
    Address::parse(BLS_CLIENT).unwrap()
}

fn s1() -> DealStatusRequest {
    DealStatusRequest::from_cbor(&vector("S1")).unwrap()
}

fn s2() -> DealStatusRequest {
    DealStatusRequest::from_cbor(&vector("S2")).unwrap()
}

fn ask(req: &DealStatusRequest, deal: Option<&DealRecord>, key: Option<&Address>) -> StatusAnswer {
    answer_status(req, deal, key, &mut VerifyCache::new(16))
}

fn assert_error_only(a: &StatusAnswer, req: &DealStatusRequest, outcome: StatusOutcome, msg: &str) {
    assert_eq!(a.outcome, outcome);
    assert_eq!(
        a.response,
        DealStatusResponse {
            deal_uuid: req.deal_uuid,
            error: msg.to_owned(),
            deal_status: None,
            is_offline: false,
            transfer_size: 0,
            n_bytes_received: 0,
        }
    );
}

fn flip_last_bit(req: &DealStatusRequest) -> DealStatusRequest {
    let mut r = req.clone();
    let last = r.signature.data.len() - 1;
    r.signature.data[last] ^= 0x01;
    r
}

// ---------------------------------------------------------------- golden bytes

#[test]
fn unknown_deal_reproduces_s3_byte_for_byte() {
    let a = ask(&s1(), None, Some(&secp_key()));
    assert_error_only(
        &a,
        &s1(),
        StatusOutcome::UnknownDeal,
        "no storage deal found with deal UUID 8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70",
    );
    assert_eq!(hex::encode(a.response.to_cbor()), hex::encode(vector("S3")));
}

#[test]
fn accepted_deal_mid_transfer_reproduces_s4_byte_for_byte() {
    let mut d = secp_deal();
    d.apply(DealEvent::Transferring {
        bytes_received: 1_048_576,
    })
    .unwrap();
    assert_eq!(d.checkpoint, Checkpoint::Accepted);
    let a = ask(&s1(), Some(&d), Some(&secp_key()));
    assert_eq!(a.outcome, StatusOutcome::Ok);
    assert_eq!(hex::encode(a.response.to_cbor()), hex::encode(vector("S4")));
}

// ---------------------------------------------------------------- signatures

#[test]
fn s1_verifies_for_the_secp_client_deal() {
    let a = ask(&s1(), Some(&secp_deal()), Some(&secp_key()));
    assert_eq!(a.outcome, StatusOutcome::Ok);
    assert_eq!(a.response.error, "");
    assert!(a.response.deal_status.is_some());
}

#[test]
fn s2_verifies_for_the_bls_client_deal() {
    let d = bls_deal();
    assert_eq!(d.params.client_deal_proposal.proposal.client, bls_key());
    let a = ask(&s2(), Some(&d), Some(&bls_key()));
    assert_eq!(a.outcome, StatusOutcome::Ok);
    let st = a.response.deal_status.expect("deal status");
    assert_eq!(st.proposal, d.params.client_deal_proposal.proposal);
    assert_eq!(st.signed_proposal_cid, d.signed_proposal_cid);
}

#[test]
fn swapped_clients_fail_verification() {
    let a = ask(&s2(), Some(&secp_deal()), Some(&secp_key()));
    assert_error_only(
        &a,
        &s2(),
        StatusOutcome::BadSignature,
        "signature verification failed",
    );
    let a = ask(&s1(), Some(&bls_deal()), Some(&bls_key()));
    assert_error_only(
        &a,
        &s1(),
        StatusOutcome::BadSignature,
        "signature verification failed",
    );
}

#[test]
fn a_flipped_signature_bit_fails_for_secp_and_bls() {
    let a = ask(&flip_last_bit(&s1()), Some(&secp_deal()), Some(&secp_key()));
    assert_eq!(a.outcome, StatusOutcome::BadSignature);
    assert_eq!(a.response.error, "signature verification failed");
    let a = ask(&flip_last_bit(&s2()), Some(&bls_deal()), Some(&bls_key()));
    assert_eq!(a.outcome, StatusOutcome::BadSignature);
    assert_eq!(a.response.error, "signature verification failed");
}

#[test]
fn a_malformed_signature_fails_verification() {
    let mut req = s1();
    req.signature.data.truncate(10);
    let a = ask(&req, Some(&secp_deal()), Some(&secp_key()));
    assert_error_only(
        &a,
        &req,
        StatusOutcome::BadSignature,
        "signature verification failed",
    );
}

#[test]
fn a_signature_over_another_uuid_fails() {
    // S1's signature presented for a different deal of the same client.
    let mut d = secp_deal();
    d.uuid = DealUuid::parse("00000000-0000-4000-8000-000000000001").unwrap();
    d.params.deal_uuid = d.uuid;
    let mut req = s1();
    req.deal_uuid = d.uuid;
    let a = ask(&req, Some(&d), Some(&secp_key()));
    assert_eq!(a.outcome, StatusOutcome::BadSignature);
}

#[test]
fn f4_clients_get_signature_verification_failed_without_verifying() {
    let f4 = Address::parse("f410fkkld55ioe7qg24wvt7fu6pbknb56ht7pt4zamxa").unwrap();
    let mut cache = VerifyCache::new(16);
    let a = answer_status(&s1(), Some(&secp_deal()), Some(&f4), &mut cache);
    assert_error_only(
        &a,
        &s1(),
        StatusOutcome::BadSignature,
        "signature verification failed",
    );
    assert_eq!((cache.hits(), cache.misses(), cache.len()), (0, 0, 0));
}

// ---------------------------------------------------------------- Boost's order

#[test]
fn key_lookup_failure_names_the_client_address() {
    let a = ask(&s1(), Some(&secp_deal()), None);
    assert_error_only(
        &a,
        &s1(),
        StatusOutcome::KeyLookupFailed,
        &format!("failed to get account key for client addr {SECP_CLIENT}"),
    );
}

#[test]
fn key_lookup_failure_uses_the_network_prefix() {
    let mut d = secp_deal();
    d.params.client_deal_proposal.proposal.client = Address::new_id(1234);
    let a = answer_status_on(
        Network::Testnet,
        &s1(),
        Some(&d),
        None,
        &mut VerifyCache::new(4),
    );
    assert_eq!(
        a.response.error,
        "failed to get account key for client addr t01234"
    );
}

#[test]
fn unknown_deal_is_checked_before_the_key_and_the_signature() {
    let a = ask(&flip_last_bit(&s1()), None, None);
    assert_eq!(a.outcome, StatusOutcome::UnknownDeal);
}

#[test]
fn key_lookup_is_checked_before_the_signature() {
    let a = ask(&flip_last_bit(&s1()), Some(&secp_deal()), None);
    assert_eq!(a.outcome, StatusOutcome::KeyLookupFailed);
}

// ---------------------------------------------------------------- what a deal reports

#[test]
fn a_failed_deal_reports_its_error_and_its_checkpoint() {
    let mut d = secp_deal();
    d.apply(DealEvent::Transferring {
        bytes_received: 777,
    })
    .unwrap();
    d.apply(DealEvent::Failed(
        "data transfer failed: connection reset".into(),
    ))
    .unwrap();
    let a = ask(&s1(), Some(&d), Some(&secp_key()));
    assert_eq!(a.outcome, StatusOutcome::Ok);
    assert_eq!(a.response.error, "", "the request itself succeeded");
    assert_eq!(a.response.n_bytes_received, 777);
    let st = a.response.deal_status.expect("deal status");
    assert_eq!(st.error, "data transfer failed: connection reset");
    assert_eq!(st.status, "Accepted");
}

#[test]
fn a_deal_past_transferred_reports_the_transfer_size_and_chain_facts() {
    let mut d = secp_deal();
    let msg = Cid::dag_cbor_blake2b(b"publish");
    d.apply(DealEvent::Transferred { bytes: SIZE }).unwrap();
    d.apply(DealEvent::Published {
        publish_cid: msg.clone(),
    })
    .unwrap();
    d.apply(DealEvent::PublishConfirmed {
        chain_deal_id: 98765,
    })
    .unwrap();
    d.apply(DealEvent::SealingStatus("PreCommit1".into()))
        .unwrap();
    let r = status_response(&d);
    assert_eq!((r.transfer_size, r.n_bytes_received), (SIZE, SIZE));
    assert!(!r.is_offline);
    let st = r.deal_status.expect("deal status");
    assert_eq!(st.status, "PublishConfirmed");
    assert_eq!(st.publish_cid, Some(msg));
    assert_eq!(st.chain_deal_id, 98765);
    assert_eq!(st.sealing_status, "PreCommit1");
    assert_eq!(st.error, "");
}

#[test]
fn every_checkpoint_name_reaches_the_client() {
    let names = [
        "Accepted",
        "Transferred",
        "Published",
        "PublishConfirmed",
        "AddedPiece",
        "IndexedAndAnnounced",
        "Complete",
    ];
    let mut d = secp_deal();
    let events = [
        DealEvent::Transferred { bytes: SIZE },
        DealEvent::Published {
            publish_cid: Cid::dag_cbor_blake2b(b"m"),
        },
        DealEvent::PublishConfirmed { chain_deal_id: 1 },
        DealEvent::AddedPiece {
            sector_number: 1,
            offset: 0,
        },
        DealEvent::IndexedAndAnnounced,
        DealEvent::Complete,
    ];
    let mut seen = vec![status_response(&d).deal_status.unwrap().status];
    for ev in events {
        d.apply(ev).unwrap();
        seen.push(status_response(&d).deal_status.unwrap().status);
    }
    assert_eq!(seen, names);
}

#[test]
fn an_offline_deal_reports_offline_and_no_transfer() {
    let mut d = secp_deal();
    d.params.is_offline = true;
    d.params.transfer = Default::default();
    let waiting = status_response(&d).deal_status.unwrap();
    assert_eq!(
        (waiting.status.as_str(), waiting.sealing_status.as_str()),
        ("Accepted", AWAITING_OFFLINE_DATA)
    );
    d.apply(DealEvent::Transferred { bytes: 4096 }).unwrap();
    let r = status_response(&d);
    assert!(r.is_offline);
    assert_eq!((r.transfer_size, r.n_bytes_received), (0, 0));
    let st = r.deal_status.unwrap();
    assert_eq!(
        (st.status.as_str(), st.sealing_status.as_str()),
        ("Transferred", "")
    );
}

#[test]
fn an_offline_deal_that_failed_waiting_does_not_say_it_waits() {
    let mut d = secp_deal();
    d.params.is_offline = true;
    d.apply(DealEvent::Failed("piece CID mismatch".into()))
        .unwrap();
    let st = status_response(&d).deal_status.unwrap();
    assert_eq!(st.sealing_status, "");
    assert_eq!(st.error, "piece CID mismatch");
}

// ---------------------------------------------------------------- the cache

#[test]
fn a_repeated_poll_is_a_cache_hit_and_does_not_reverify() {
    let d = bls_deal();
    let mut cache = VerifyCache::new(10_000);
    let first = answer_status(&s2(), Some(&d), Some(&bls_key()), &mut cache);
    assert_eq!((cache.hits(), cache.misses()), (0, 1));
    let second = answer_status(&s2(), Some(&d), Some(&bls_key()), &mut cache);
    assert_eq!(
        (cache.hits(), cache.misses()),
        (1, 1),
        "no second verification"
    );
    assert_eq!(first, second);
    assert_eq!(second.outcome, StatusOutcome::Ok);
}

#[test]
fn a_cached_failure_stays_a_failure() {
    let d = secp_deal();
    let bad = flip_last_bit(&s1());
    let mut cache = VerifyCache::new(8);
    for _ in 0..3 {
        let a = answer_status(&bad, Some(&d), Some(&secp_key()), &mut cache);
        assert_eq!(a.outcome, StatusOutcome::BadSignature);
    }
    assert_eq!((cache.hits(), cache.misses()), (2, 1));
}

#[test]
fn the_cache_key_includes_the_client_key() {
    let mut cache = VerifyCache::new(8);
    let ok = answer_status(&s1(), Some(&secp_deal()), Some(&secp_key()), &mut cache);
    assert_eq!(ok.outcome, StatusOutcome::Ok);
    // Same request and signature, but the deal's client resolves to another key.
    let other = answer_status(&s1(), Some(&secp_deal()), Some(&bls_key()), &mut cache);
    assert_eq!(other.outcome, StatusOutcome::BadSignature);
    assert_eq!((cache.hits(), cache.misses()), (0, 2));
}

#[test]
fn the_cache_never_exceeds_its_capacity_and_forgets_the_oldest() {
    let key = secp_key();
    let sig = s1().signature;
    let uuid = |i: u32| {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_be_bytes());
        DealUuid(b)
    };
    let mut cache = VerifyCache::new(5);
    assert_eq!(cache.capacity(), 5);
    for i in 0..50 {
        cache.verify(&uuid(i), &sig, &key);
        assert!(
            cache.len() <= 5,
            "len {} after {} inserts",
            cache.len(),
            i + 1
        );
    }
    assert_eq!(cache.len(), 5);
    assert_eq!(cache.misses(), 50);
    // The newest five are still there; the oldest is gone.
    for i in 45..50 {
        cache.verify(&uuid(i), &sig, &key);
    }
    assert_eq!((cache.hits(), cache.misses()), (5, 50));
    cache.verify(&uuid(0), &sig, &key);
    assert_eq!(cache.misses(), 51, "the oldest entry was evicted");
    assert_eq!(cache.len(), 5);
}

#[test]
fn a_zero_capacity_cache_verifies_every_time() {
    let mut cache = VerifyCache::new(0);
    for _ in 0..3 {
        let a = answer_status(&s1(), Some(&secp_deal()), Some(&secp_key()), &mut cache);
        assert_eq!(a.outcome, StatusOutcome::Ok);
    }
    assert_eq!((cache.hits(), cache.misses(), cache.len()), (0, 3, 0));
    assert!(cache.is_empty());
}

#[test]
fn outcome_labels_are_stable() {
    let labels: Vec<_> = [
        StatusOutcome::Ok,
        StatusOutcome::UnknownDeal,
        StatusOutcome::KeyLookupFailed,
        StatusOutcome::BadSignature,
    ]
    .iter()
    .map(|o| o.as_str())
    .collect();
    assert_eq!(
        labels,
        ["ok", "unknown_deal", "key_lookup_failed", "bad_signature"]
    );
}
