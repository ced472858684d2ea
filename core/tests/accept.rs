//! Every acceptance rule with its exact message, Curio's order, and the golden deals.
use dealport_core::accept::{decide, go_time_utc, is_identical_retry, Rule};
use dealport_core::deal::{Checkpoint, DealRecord};
use dealport_core::facts::{AskTerms, ChainFacts, ClientFilter, MarketBalance, Policy};
use dealport_core::wire::*;
use proptest::prelude::*;

mod common;
use common::vector;

fn a4() -> DealParams {
    DealParams::from_cbor(&vector("A4")).unwrap()
}

fn b2() -> DealParams {
    DealParams::from_cbor(&vector("B2")).unwrap()
}

/// Facts under which the golden deals (A4, B2) are acceptable.
fn facts_for(p: &DealParams) -> ChainFacts {
    ChainFacts {
        head_epoch: Some(4_490_000),
        client_key: Some(p.client_deal_proposal.proposal.client.clone()),
        f4_authenticated: None,
        provider_collateral_min: Some(TokenAmount::from_u64(5_000_000_000_000)),
        client_balance: Some(MarketBalance {
            escrow: TokenAmount::from_u64(1),
            locked: TokenAmount::zero(),
        }),
        client_datacap: Some(Some(TokenAmount::from_u64(64 << 30))),
    }
}

fn policy() -> Policy {
    Policy {
        miners: vec![Address::new_id(1000)],
        asks: vec![(
            Address::new_id(1000),
            AskTerms {
                price: TokenAmount::from_u64(1_000),
                verified_price: TokenAmount::zero(),
                min_piece_size: 256,
                max_piece_size: 32 << 30,
            },
        )],
        ..Policy::default()
    }
}

/// The rejection message for `p` under `facts` and `policy`, which must be a rejection.
fn reject(p: &DealParams, facts: &ChainFacts, policy: &Policy) -> (Rule, String) {
    let r = decide(p, facts, policy, None, None).expect_err("must be rejected");
    (r.rule, r.message)
}

fn resign_secp(p: &mut DealParams) {
    // Re-sign with the golden secp256k1 client key after changing a field.
    use k256::ecdsa::SigningKey;
    use sha2::Digest;
    let secret = sha2::Sha256::digest(b"mk12 example secp256k1 client");
    let key = SigningKey::from_slice(&secret).unwrap();
    let msg = p.client_deal_proposal.proposal.to_cbor();
    let digest = blake2b_simd::Params::new().hash_length(32).hash(&msg);
    let (sig, recid) = key.sign_prehash_recoverable(digest.as_bytes());
    let mut data = sig.to_bytes().to_vec();
    data.push(recid.to_byte());
    p.client_deal_proposal.client_signature = Signature { sig_type: 1, data };
}

#[test]
fn golden_secp256k1_deal_is_accepted() {
    let p = a4();
    assert_eq!(decide(&p, &facts_for(&p), &policy(), None, None), Ok(()));
}

#[test]
fn golden_bls_deal_is_accepted() {
    let p = b2();
    assert_eq!(p.client_deal_proposal.client_signature.sig_type, 2);
    assert_eq!(decide(&p, &facts_for(&p), &policy(), None, None), Ok(()));
}

#[test]
fn a_flipped_signature_bit_is_rejected_as_unverifiable() {
    for mut p in [a4(), b2()] {
        p.client_deal_proposal.client_signature.data[10] ^= 1;
        let (rule, msg) = reject(&p, &facts_for(&p), &policy());
        assert_eq!(rule, Rule::SignatureUnverifiable);
        assert_eq!(msg, "failed validation: server error: validating signature");
    }
}

#[test]
fn a_changed_field_breaks_the_signature() {
    let mut p = a4();
    p.client_deal_proposal.proposal.end_epoch += 1;
    let (_, msg) = reject(&p, &facts_for(&p), &policy());
    assert_eq!(msg, "failed validation: server error: validating signature");
    // Fields outside the signed proposal do not matter to the signature.
    let mut p = a4();
    p.skip_ipni_announce = true;
    assert_eq!(decide(&p, &facts_for(&p), &policy(), None, None), Ok(()));
}

#[test]
fn the_wrong_provider_is_rejected_with_boost_and_curio_forms() {
    let p = a4();
    let mut pol = policy();
    pol.miners = vec![Address::new_id(1001)];
    assert_eq!(
        reject(&p, &facts_for(&p), &pol).1,
        "failed validation: incorrect provider for deal; proposal.Provider: f01000; provider.Address: f01001"
    );
    pol.miners = vec![Address::new_id(1001), Address::new_id(1002)];
    assert_eq!(
        reject(&p, &facts_for(&p), &pol).1,
        "failed validation: incorrect provider for deal; proposal.Provider: f01000; provider.Address: [f01001 f01002]"
    );
}

#[test]
fn disabled_miners_are_refused_first() {
    let mut p = a4();
    p.client_deal_proposal.client_signature.data[0] ^= 1;
    let mut pol = policy();
    pol.disabled_miners = vec![Address::new_id(1000)];
    let (rule, msg) = reject(&p, &ChainFacts::default(), &pol);
    assert_eq!(
        (rule, msg.as_str()),
        (Rule::DisabledMiner, "Libp2p is disabled for the provider")
    );
}

/// Each rule, with a proposal re-signed after the change so only that rule fails.
#[test]
fn every_validation_rule_has_its_exact_message() {
    type Case = (
        &'static str,
        fn(&mut DealParams, &mut ChainFacts, &mut Policy),
        Rule,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("head", |_, f, _| f.head_epoch = None, Rule::ChainHead,
         "failed validation: server error: getting chain head"),
        ("undef piece", |p, _, _| p.client_deal_proposal.proposal.piece_cid = Cid::default(),
         Rule::PieceCidUndefined, "failed validation: proposal PieceCID undefined"),
        ("key lookup", |_, f, _| f.client_key = None, Rule::SignatureUnverifiable,
         "failed validation: server error: validating signature"),
        ("label", |p, _, _| p.client_deal_proposal.proposal.label = DealLabel::Bytes(vec![1; 257]),
         Rule::LabelTooLong, "failed validation: deal label can be at most 256 bytes, is 257"),
        ("size min", |p, _, _| p.client_deal_proposal.proposal.piece_size = 64, Rule::PieceSizeInvalid,
         "failed validation: proposal piece size is invalid: minimum padded piece size is 128 bytes"),
        ("size pow2", |p, _, _| p.client_deal_proposal.proposal.piece_size = 384, Rule::PieceSizeInvalid,
         "failed validation: proposal piece size is invalid: padded piece size must be a power of 2"),
        ("prefix", |p, _, _| p.client_deal_proposal.proposal.piece_cid = Cid::dag_cbor_sha256(b"x"),
         Rule::PieceCidPrefix, "failed validation: proposal PieceCID had wrong prefix"),
        ("end<=start", |p, _, _| p.client_deal_proposal.proposal.end_epoch = 4_500_000, Rule::EndBeforeStart,
         "failed validation: proposal end 4500000 before proposal start 4500000"),
        ("elapsed", |_, f, _| f.head_epoch = Some(4_500_001), Rule::StartElapsed,
         "failed validation: deal start epoch 4500000 has already elapsed (current epoch: 4500001)"),
        ("sealing buffer", |_, f, _| f.head_epoch = Some(4_499_000), Rule::SealingBuffer,
         "failed validation: deal start epoch 4500000 is too soon to seal: the current epoch is 4499000 and sealing needs 2880 epochs, so the earliest start accepted is 4501880"),
        ("too far", |_, f, _| f.head_epoch = Some(4_400_000), Rule::StartTooFar,
         "failed validation: deal start epoch is too far in the future: 4500000 > 4443200"),
        ("duration", |p, _, _| p.client_deal_proposal.proposal.end_epoch = 4_500_000 + 518_399, Rule::DurationBounds,
         "failed validation: deal duration out of bounds (min, max, provided): 518400, 3680640, 518399"),
        ("collateral rpc", |_, f, _| f.provider_collateral_min = None, Rule::CollateralBounds,
         "failed validation: server error: getting collateral bounds"),
        ("collateral low", |_, f, _| f.provider_collateral_min = Some(TokenAmount::from_u64(9_000_000_000_000)),
         Rule::CollateralTooLow, "failed validation: proposed provider collateral 8589934592000 below minimum 9000000000000"),
        ("collateral high", |_, f, _| f.provider_collateral_min = Some(TokenAmount::from_u64(4_000_000_000_000)),
         Rule::CollateralTooHigh, "failed validation: proposed provider collateral 8589934592000 above maximum 8000000000000"),
        ("ask price", |_, _, pol| pol.asks[0].1.verified_price = TokenAmount::from_u64(3),
         Rule::AskPrice, "failed validation: storage price per epoch less than asking price: 0 < 96"),
        ("ask min", |_, _, pol| pol.asks[0].1.min_piece_size = 64 << 30, Rule::AskMinSize,
         "failed validation: piece size less than minimum required size: 34359738368 < 68719476736"),
        ("ask max", |_, _, pol| pol.asks[0].1.max_piece_size = 16 << 30, Rule::AskMaxSize,
         "failed validation: piece size more than maximum allowed size: 34359738368 > 17179869184"),
        ("balance rpc", |_, f, _| f.client_balance = None, Rule::MarketBalance,
         "failed validation: server error: getting market balance"),
        ("escrow", |p, f, _| { p.client_deal_proposal.proposal.client_collateral = TokenAmount::from_u64(10);
            f.client_balance = Some(MarketBalance { escrow: TokenAmount::from_u64(9), locked: TokenAmount::from_u64(2) }); },
         Rule::InsufficientEscrow, "failed validation: client available funds in escrow 7 not enough to meet storage cost for deal 10"),
        ("datacap rpc", |_, f, _| f.client_datacap = None, Rule::DatacapLookup,
         "failed validation: server error: getting verified datacap"),
        ("not verified", |_, f, _| f.client_datacap = Some(None), Rule::NotVerifiedClient,
         "failed validation: client is not a verified client"),
        ("datacap small", |_, f, _| f.client_datacap = Some(Some(TokenAmount::from_u64(1 << 30))), Rule::DatacapTooSmall,
         "failed validation: verified deal DataCap 1073741824 too small for proposed piece size 34359738368"),
        ("deny online", |_, _, pol| pol.deny_online = true, Rule::OnlineDenied,
         "online deals are not allowed on this provider"),
        ("deny offline", |p, _, pol| { p.is_offline = true; p.transfer = Transfer::default(); pol.deny_offline = true; },
         Rule::OfflineDenied, "offline deals are not allowed on this provider"),
        ("allow list", |_, _, pol| pol.clients = ClientFilter::Only(vec![Address::new_id(5)]),
         Rule::ClientNotAllowed, "client not allowed by provider"),
        ("deny list", |p, _, pol| pol.clients = ClientFilter::AllBut(vec![p.client_deal_proposal.proposal.client.clone()]),
         Rule::ClientNotAllowed, "client not allowed by provider"),
        ("libp2p", |p, _, _| p.transfer.transfer_type = "libp2p".into(), Rule::Libp2pTransfer,
         "libp2p URLs are not supported by this provider"),
        ("type", |p, _, _| p.transfer.transfer_type = "ftp".into(), Rule::TransferType,
         "server error: get deal transfer host: cannot parse params for unrecognized transfer type 'ftp'"),
        ("padded size", |p, _, _| p.transfer.size = 1 << 30, Rule::PieceSizeMismatch,
         "deal proposal piece size 34359738368 doesn't match padded piece size 2147483648"),
    ];
    for (name, change, rule, message) in cases {
        let mut p = a4();
        let mut f = facts_for(&p);
        let mut pol = policy();
        change(&mut p, &mut f, &mut pol);
        resign_secp(&mut p);
        let got = reject(&p, &f, &pol);
        assert_eq!(got, (rule, message.to_owned()), "case {name}");
    }
}

#[test]
fn transfer_params_that_are_not_json_are_rejected() {
    let mut p = a4();
    p.transfer.params = b"{not json".to_vec();
    let (rule, msg) = reject(&p, &facts_for(&p), &policy());
    assert_eq!(rule, Rule::TransferParams);
    assert!(
        msg.starts_with("failed to de-serialize transport params bytes '{not json': "),
        "{msg}"
    );
}

#[test]
fn the_first_failing_rule_wins_in_curio_order() {
    // Wrong provider AND label too long AND offline denied: the provider rule comes first.
    let mut p = a4();
    p.client_deal_proposal.proposal.label = DealLabel::Text("x".repeat(300));
    resign_secp(&mut p);
    let mut pol = policy();
    pol.miners = vec![Address::new_id(7)];
    pol.deny_online = true;
    assert_eq!(reject(&p, &facts_for(&p), &pol).0, Rule::WrongProvider);
    pol.miners = vec![Address::new_id(1000)];
    assert_eq!(reject(&p, &facts_for(&p), &pol).0, Rule::LabelTooLong);
    p.client_deal_proposal.proposal.label = DealLabel::default();
    resign_secp(&mut p);
    assert_eq!(reject(&p, &facts_for(&p), &pol).0, Rule::OnlineDenied);
    // The chain head is needed before anything else is looked at.
    let mut f = facts_for(&p);
    f.head_epoch = None;
    f.client_balance = None;
    assert_eq!(reject(&p, &f, &pol).0, Rule::ChainHead);
}

#[test]
fn an_id_address_client_is_checked_against_its_key_address() {
    // The proposal names the client by ID; the chain resolves it to the f1 key.
    let mut p = a4();
    let key = p.client_deal_proposal.proposal.client.clone();
    p.client_deal_proposal.proposal.client = Address::new_id(1234);
    resign_secp(&mut p);
    let mut f = facts_for(&p);
    f.client_key = Some(key);
    assert_eq!(decide(&p, &f, &policy(), None, None), Ok(()));
    // Resolved to the BLS client instead: the signature does not match.
    f.client_key = Some(b2().client_deal_proposal.proposal.client);
    assert_eq!(reject(&p, &f, &policy()).0, Rule::SignatureUnverifiable);
}

#[test]
fn f4_clients_use_the_authenticate_message_fact() {
    let mut p = a4();
    let mut f4 = vec![4, 10];
    f4.extend_from_slice(&[7; 20]);
    let f4 = Address::from_bytes(&f4).unwrap();
    p.client_deal_proposal.proposal.client = f4.clone();
    let mut f = facts_for(&p);
    f.client_key = Some(f4);
    f.f4_authenticated = Some(true);
    assert_eq!(decide(&p, &f, &policy(), None, None), Ok(()));
    f.f4_authenticated = Some(false);
    assert_eq!(
        reject(&p, &f, &policy()).1,
        "failed validation: invalid signature"
    );
    f.f4_authenticated = None;
    assert_eq!(
        reject(&p, &f, &policy()).1,
        "failed validation: server error: validating signature"
    );
}

fn record(p: &DealParams, uuid: DealUuid, created: i64) -> DealRecord {
    DealRecord {
        uuid,
        params_bytes: p.to_cbor(),
        params: p.clone(),
        signed_proposal_cid: p.client_deal_proposal.signed_proposal_cid(),
        proposal_cid: p.client_deal_proposal.proposal.cid(),
        client_peer_id: String::new(),
        created_at_unix_nanos: created,
        checkpoint: Checkpoint::Accepted,
        error: None,
        n_bytes_received: 0,
        publish_cid: None,
        chain_deal_id: 0,
        sector_number: None,
        sector_offset: None,
        sealing_status: String::new(),
    }
}

#[test]
fn an_identical_resend_is_accepted_again_even_when_facts_moved_on() {
    let p = a4();
    let known = record(&p, p.deal_uuid, 1_782_987_072_123_456_789);
    assert!(is_identical_retry(&p, Some(&known)));
    // The head has passed the start epoch since: a retry is still answered Accepted.
    let mut f = facts_for(&p);
    f.head_epoch = Some(5_000_000);
    assert_eq!(
        decide(&p, &f, &policy(), Some(&known), Some(&known)),
        Ok(())
    );
    // The v1.2.0 form of the same deal is the same deal.
    let v120 = DealParams::from_cbor(&vector("A5")).unwrap();
    assert!(is_identical_retry(&v120, Some(&known)));
}

#[test]
fn duplicates_get_boosts_messages() {
    let p = a4();
    let created = 1_782_987_072_123_456_789; // 2026-07-02 10:11:12.123456789 UTC
    let other_uuid = DealUuid::parse("00000000-0000-4000-8000-000000000001").unwrap();
    // Same proposal under a new UUID.
    let known = record(&p, other_uuid, created);
    let r = decide(&p, &facts_for(&p), &policy(), None, Some(&known)).unwrap_err();
    assert_eq!(r.rule, Rule::DuplicateProposal);
    assert_eq!(
        r.message,
        "deal proposal is identical to deal 00000000-0000-4000-8000-000000000001 (proposed at 2026-07-02 10:11:12.123456789 +0000 UTC)"
    );
    // A different proposal under a known UUID.
    let mut changed = p.clone();
    changed.transfer.client_id = "other".into();
    let known = record(&p, p.deal_uuid, 1_782_987_072_000_000_000);
    let r = decide(&changed, &facts_for(&p), &policy(), Some(&known), None).unwrap_err();
    assert_eq!(r.rule, Rule::DuplicateUuid);
    assert_eq!(
        r.message,
        "deal has the same uuid as deal 8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70 (proposed at 2026-07-02 10:11:12 +0000 UTC)"
    );
}

#[test]
fn go_time_format_matches_go() {
    assert_eq!(go_time_utc(0), "1970-01-01 00:00:00 +0000 UTC");
    assert_eq!(
        go_time_utc(1_500_000_000),
        "1970-01-01 00:00:01.5 +0000 UTC"
    );
    assert_eq!(
        go_time_utc(951_782_400 * 1_000_000_000),
        "2000-02-29 00:00:00 +0000 UTC"
    );
    assert_eq!(go_time_utc(-1), "1969-12-31 23:59:59.999999999 +0000 UTC");
}

proptest! {
    /// Validation never panics on any decoded DealParams and any facts, and is deterministic.
    #[test]
    fn decide_never_panics_and_is_deterministic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        head in proptest::option::of(any::<i64>()),
        min in proptest::option::of(any::<u64>()),
        escrow in any::<u64>(), locked in any::<u64>(),
        datacap in proptest::option::of(proptest::option::of(any::<u64>())),
        mutate in any::<prop::sample::Index>(), byte in any::<u8>(),
        ask_price in any::<u64>(), buffer in any::<i64>(), delay in any::<i64>(),
    ) {
        // Either arbitrary bytes or a mutated golden deal (which decodes far more often).
        let mut a = vector("A4");
        let i = mutate.index(a.len());
        a[i] = byte;
        for input in [bytes, a] {
            let Ok(p) = DealParams::from_cbor(&input) else { continue };
            let f = ChainFacts {
                head_epoch: head,
                client_key: Some(p.client_deal_proposal.proposal.client.clone()),
                f4_authenticated: Some(true),
                provider_collateral_min: min.map(TokenAmount::from_u64),
                client_balance: Some(MarketBalance { escrow: TokenAmount::from_u64(escrow), locked: TokenAmount::from_u64(locked) }),
                client_datacap: datacap.map(|d| d.map(TokenAmount::from_u64)),
            };
            let mut pol = policy();
            pol.asks[0].1.price = TokenAmount::from_u64(ask_price);
            pol.sealing_buffer_epochs = buffer;
            pol.max_start_delay_epochs = delay;
            let first = decide(&p, &f, &pol, None, None);
            prop_assert_eq!(first, decide(&p, &f, &pol, None, None));
        }
    }
}
