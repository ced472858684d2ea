//! proptest: encode -> decode -> encode is the identity for every message type, and
//! decoding arbitrary bytes never panics.
use dealport_core::wire::*;
use num_bigint::{BigInt, Sign};
use proptest::prelude::*;

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        (0u64..=i64::MAX as u64).prop_map(Address::new_id),
        any::<[u8; 20]>().prop_map(Address::new_secp256k1),
        any::<[u8; 20]>().prop_map(|p| {
            let mut b = vec![2];
            b.extend_from_slice(&p);
            Address::from_bytes(&b).unwrap()
        }),
        proptest::collection::vec(any::<u8>(), 48)
            .prop_map(|k| Address::new_bls(k.try_into().unwrap())),
        (0u64..1000, proptest::collection::vec(any::<u8>(), 0..=54)).prop_map(|(ns, sub)| {
            let mut b = vec![4];
            dealport_core::wire::varint::put(&mut b, ns);
            b.extend_from_slice(&sub);
            Address::from_bytes(&b).unwrap()
        }),
    ]
}

fn cid() -> impl Strategy<Value = Cid> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|d| Cid::v1(0xf101, 0x1012, &d)),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(|d| Cid::dag_cbor_sha256(&d)),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(c, m, d)| Cid::v1(c >> 1, m >> 1, &d)),
        any::<[u8; 32]>().prop_map(|d| {
            let mut b = vec![0x12, 0x20];
            b.extend_from_slice(&d);
            Cid::from_bytes(&b).unwrap()
        }),
    ]
}

fn token() -> impl Strategy<Value = TokenAmount> {
    prop_oneof![
        Just(TokenAmount::zero()),
        any::<u64>().prop_map(TokenAmount::from_u64),
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 1..=127)
        )
            .prop_map(|(neg, mag)| {
                let sign = if neg { Sign::Minus } else { Sign::Plus };
                TokenAmount(BigInt::from_bytes_be(sign, &mag))
            }),
    ]
}

fn label() -> impl Strategy<Value = DealLabel> {
    prop_oneof![
        Just(DealLabel::default()),
        ".{0,300}".prop_map(DealLabel::Text),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(DealLabel::Bytes),
    ]
}

fn signature() -> impl Strategy<Value = Signature> {
    (1u8..=3, proptest::collection::vec(any::<u8>(), 0..199))
        .prop_map(|(sig_type, data)| Signature { sig_type, data })
}

prop_compose! {
    fn proposal()(piece_cid in cid(), piece_size in any::<u64>(), verified_deal in any::<bool>(),
        client in address(), provider in address(), label in label(),
        start_epoch in any::<i64>(), end_epoch in any::<i64>(),
        storage_price_per_epoch in token(), provider_collateral in token(), client_collateral in token())
        -> DealProposal {
        DealProposal { piece_cid, piece_size, verified_deal, client, provider, label, start_epoch,
            end_epoch, storage_price_per_epoch, provider_collateral, client_collateral }
    }
}

prop_compose! {
    fn client_proposal()(proposal in proposal(), client_signature in signature()) -> ClientDealProposal {
        ClientDealProposal { proposal, client_signature }
    }
}

prop_compose! {
    fn transfer()(transfer_type in "(http|libp2p|)", client_id in ".{0,20}",
        params in proptest::collection::vec(any::<u8>(), 0..400), size in any::<u64>()) -> Transfer {
        Transfer { transfer_type, client_id, params, size }
    }
}

prop_compose! {
    fn deal_params()(uuid in any::<[u8; 16]>(), is_offline in any::<bool>(), cdp in client_proposal(),
        root in cid(), transfer in transfer(), r in any::<bool>(), s in any::<bool>()) -> DealParams {
        DealParams { deal_uuid: DealUuid(uuid), is_offline, client_deal_proposal: cdp,
            deal_data_root: root, transfer, remove_unsealed_copy: r, skip_ipni_announce: s }
    }
}

prop_compose! {
    fn deal_status()(error in ".{0,40}", status in ".{0,20}", sealing_status in ".{0,20}",
        proposal in proposal(), spc in cid(), publish_cid in proptest::option::of(cid()),
        chain_deal_id in any::<u64>()) -> DealStatus {
        DealStatus { error, status, sealing_status, proposal, signed_proposal_cid: spc, publish_cid, chain_deal_id }
    }
}

prop_compose! {
    fn storage_ask()(price in token(), verified_price in token(), min_piece_size in any::<u64>(),
        max_piece_size in any::<u64>(), miner in address(), timestamp in any::<i64>(),
        expiry in any::<i64>(), seq_no in any::<u64>()) -> StorageAsk {
        StorageAsk { price, verified_price, min_piece_size, max_piece_size, miner, timestamp, expiry, seq_no }
    }
}

fn identity<T: Cbor + PartialEq + std::fmt::Debug>(v: &T) -> Result<(), TestCaseError> {
    let bytes = v.to_cbor();
    let back = T::from_cbor(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, v);
    prop_assert_eq!(back.to_cbor(), bytes);
    Ok(())
}

proptest! {
    #[test]
    fn deal_params_roundtrip(p in deal_params()) {
        identity(&p)?;
        // The v1.2.0 form decodes to the same deal minus the two v1.2.1 booleans.
        let v120 = DealParams::from_cbor(&p.to_cbor_v120()).unwrap();
        prop_assert_eq!(v120, DealParams { remove_unsealed_copy: false, skip_ipni_announce: false, ..p });
    }

    #[test]
    fn responses_roundtrip(accepted in any::<bool>(), message in ".{0,300}", uuid in any::<[u8; 16]>(),
        sig in signature(), status in proptest::option::of(deal_status()), off in any::<bool>(),
        ts in any::<u64>(), nb in any::<u64>(), error in ".{0,50}") {
        identity(&DealResponse { accepted, message })?;
        identity(&DealStatusRequest { deal_uuid: DealUuid(uuid), signature: sig })?;
        identity(&DealStatusResponse { deal_uuid: DealUuid(uuid), error, deal_status: status,
            is_offline: off, transfer_size: ts, n_bytes_received: nb })?;
    }

    #[test]
    fn ask_and_transports_roundtrip(miner in address(), ask in proptest::option::of(storage_ask()),
        sig in proptest::option::of(signature()), wrap in any::<bool>(),
        names in proptest::collection::vec((".{0,10}", proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4)), 0..4)) {
        identity(&AskRequest { miner })?;
        let signed = SignedStorageAsk { ask, signature: sig };
        identity(&signed)?;
        identity(&AskResponse { ask: wrap.then_some(signed) })?;
        let protocols = names.into_iter().map(|(name, addresses)| TransportProtocol { name, addresses }).collect();
        identity(&TransportsResponse { protocols })?;
    }

    #[test]
    fn cid_and_address_strings_roundtrip(c in cid(), a in address()) {
        prop_assert_eq!(Cid::parse(&c.to_string()).unwrap(), c);
        prop_assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = DealParams::from_cbor(&bytes);
        let _ = DealResponse::from_cbor(&bytes);
        let _ = DealStatusRequest::from_cbor(&bytes);
        let _ = DealStatusResponse::from_cbor(&bytes);
        let _ = AskRequest::from_cbor(&bytes);
        let _ = AskResponse::from_cbor(&bytes);
        let _ = TransportsResponse::from_cbor(&bytes);
        let _ = ClientDealProposal::from_cbor(&bytes);
        let _ = HttpRequest::from_json(&bytes);
        let _ = Cid::from_bytes(&bytes);
        let _ = Address::from_bytes(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = Address::parse(s);
            let _ = Cid::parse(s);
            let _ = DealUuid::parse(s);
        }
    }

    /// Mutating one byte of a valid message either decodes or fails cleanly.
    #[test]
    fn mutated_messages_never_panic(p in deal_params(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut bytes = p.to_cbor();
        let i = at.index(bytes.len());
        bytes[i] = b;
        let _ = DealParams::from_cbor(&bytes);
    }
}
