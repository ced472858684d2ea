//! cbor-gen's decoding rules, one test each: what it tolerates and what it rejects.
use dealport_core::wire::*;

mod common;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

/// Build a CBOR map with the given (key, value-bytes) entries, in the given order.
fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0xa0 | entries.len() as u8];
    for (k, v) in entries {
        out.push(0x60 | k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn text(s: &str) -> Vec<u8> {
    let mut w = dealport_core::wire::cbor::Writer::new();
    w.str(s);
    w.into_bytes()
}

#[test]
fn keys_in_any_order_unknown_skipped_missing_zero_duplicates_last_wins() {
    let bytes = map(&[
        ("Accepted", vec![0xf5]),
        ("Unknown", h("a1 61 61 82 01 d8 2a 41 00")), // nested junk is walked and skipped
        ("Message", text("first")),
        ("Message", text("second")),
    ]);
    let r = DealResponse::from_cbor(&bytes).unwrap();
    assert!(r.accepted);
    assert_eq!(r.message, "second");
    let empty = DealResponse::from_cbor(&[0xa0]).unwrap();
    assert_eq!(empty, DealResponse::default());
}

#[test]
fn a_map_struct_must_be_a_map() {
    let e = DealResponse::from_cbor(&h("82 60 f5")).unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::WrongType {
                expected: "map",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn non_minimal_headers_are_rejected() {
    // uint 5 written as 0x18 0x05 inside a Transfer's Size.
    let bytes = map(&[("Size", h("18 05"))]);
    let e = Transfer::from_cbor(&bytes).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Frame(FrameError::NonMinimal { .. })),
        "{e}"
    );
    // A map header with a two-byte length for 1 entry.
    assert!(DealResponse::from_cbor(&h("b9 00 01 60 60")).is_err());
}

#[test]
fn indefinite_lengths_are_rejected() {
    let e = DealResponse::from_cbor(&h("bf ff")).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Frame(FrameError::Indefinite { .. })),
        "{e}"
    );
    let bytes = map(&[("Message", h("7f 61 61 ff"))]);
    assert!(DealResponse::from_cbor(&bytes).is_err());
}

#[test]
fn trailing_bytes_and_truncation_are_rejected() {
    let mut r1 = DealResponse::accepted().to_cbor();
    r1.push(0x00);
    let e = DealResponse::from_cbor(&r1).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Frame(FrameError::Trailing { .. })),
        "{e}"
    );
    let r1 = DealResponse::accepted().to_cbor();
    let e = DealResponse::from_cbor(&r1[..r1.len() - 1]).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Frame(FrameError::Truncated)),
        "{e}"
    );
}

#[test]
fn booleans_must_be_true_or_false() {
    let e = DealResponse::from_cbor(&map(&[("Accepted", vec![0xf6])])).unwrap_err();
    assert_eq!(e.path, "DealResponse.Accepted");
    assert!(matches!(e.kind, ErrorKind::InvalidBool(22)), "{e}");
}

#[test]
fn uuid_must_be_exactly_16_bytes() {
    let mut v = vec![0x4f];
    v.extend_from_slice(&[7; 15]);
    let e = DealStatusRequest::from_cbor(&map(&[("DealUUID", v)])).unwrap_err();
    assert_eq!(e.path, "DealStatusRequest.DealUUID");
    assert!(matches!(
        e.kind,
        ErrorKind::WrongLength {
            expected: 16,
            len: 15
        }
    ));
}

#[test]
fn string_fields_are_limited_to_8192_bytes() {
    let ok = "x".repeat(8192);
    assert_eq!(
        DealResponse::from_cbor(&map(&[("Message", text(&ok))]))
            .unwrap()
            .message,
        ok
    );
    let e = DealResponse::from_cbor(&map(&[("Message", text(&"x".repeat(8193)))])).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::TooLong { max: 8192, .. }),
        "{e}"
    );
}

#[test]
fn string_fields_accept_invalid_utf8_like_go() {
    let r = DealResponse::from_cbor(&map(&[("Message", h("62 ff fe"))])).unwrap();
    assert_eq!(r.message, "\u{fffd}\u{fffd}");
}

#[test]
fn transfer_params_are_limited_to_2_mib() {
    let mut big = vec![0x5a];
    big.extend_from_slice(&((2u32 << 20) + 1).to_be_bytes());
    big.resize(big.len() + (2 << 20) + 1, 0);
    let e = Transfer::from_cbor(&map(&[("Params", big)])).unwrap_err();
    assert_eq!(e.path, "Transfer.Params");
    assert!(
        matches!(e.kind, ErrorKind::TooLong { max: 2097152, .. }),
        "{e}"
    );
}

#[test]
fn map_entry_count_is_limited() {
    // A map claiming 8193 entries is refused before anything else is read.
    let mut bytes = h("b9 20 01");
    for _ in 0..8193 {
        bytes.extend_from_slice(&h("60 60"));
    }
    let e = DealResponse::from_cbor(&bytes).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::MapTooLarge(8193)), "{e}");
}

fn proposal_with(index: usize, value: &[u8]) -> Vec<u8> {
    // Re-encode A1 with field `index` replaced by raw CBOR `value`.
    let a1 = DealProposal::default();
    let mut d = a1;
    d.piece_cid = Cid::v1(0xf101, 0x1012, &[1; 32]);
    d.client = Address::new_id(1);
    d.provider = Address::new_id(2);
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let mut w = |f: &dyn Fn(&mut dealport_core::wire::cbor::Writer)| {
        let mut w = dealport_core::wire::cbor::Writer::new();
        f(&mut w);
        fields.push(w.into_bytes());
    };
    w(&|w| {
        w.value(&d.piece_cid);
    });
    w(&|w| {
        w.uint(d.piece_size);
    });
    w(&|w| {
        w.bool(false);
    });
    w(&|w| {
        w.value(&d.client);
    });
    w(&|w| {
        w.value(&d.provider);
    });
    w(&|w| {
        w.value(&d.label);
    });
    for _ in 0..2 {
        w(&|w| {
            w.int(0);
        });
    }
    for _ in 0..3 {
        w(&|w| {
            w.value(&TokenAmount::zero());
        });
    }
    fields[index] = value.to_vec();
    let mut out = vec![0x8b];
    for f in fields {
        out.extend_from_slice(&f);
    }
    out
}

#[test]
fn proposal_is_an_eleven_element_tuple() {
    let e = DealProposal::from_cbor(&h("8a 00 00 00 00 00 00 00 00 00 00")).unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::WrongFieldCount {
                expected: 11,
                found: 10
            }
        ),
        "{e}"
    );
    assert!(DealProposal::from_cbor(&proposal_with(1, &[0x00])).is_ok());
}

#[test]
fn epochs_are_int64_and_sizes_uint64() {
    // StartEpoch = -1 is fine; 2^63 overflows int64; a negative piece size is rejected.
    assert_eq!(
        DealProposal::from_cbor(&proposal_with(6, &[0x20]))
            .unwrap()
            .start_epoch,
        -1
    );
    let e = DealProposal::from_cbor(&proposal_with(6, &h("1b 8000000000000000"))).unwrap_err();
    assert_eq!(e.path, "DealProposal.StartEpoch");
    assert!(matches!(e.kind, ErrorKind::IntOverflow));
    let e = DealProposal::from_cbor(&proposal_with(1, &[0x20])).unwrap_err();
    assert_eq!(e.path, "DealProposal.PieceSize");
}

#[test]
fn cids_need_tag_42_a_zero_byte_and_a_valid_cid() {
    let e = DealProposal::from_cbor(&proposal_with(0, &h("d8 2b 41 00"))).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::WrongTag(43)), "{e}");
    let e = DealProposal::from_cbor(&proposal_with(0, &h("d8 2a 42 01 01"))).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidCid(_)), "{e}");
    let e = DealProposal::from_cbor(&proposal_with(0, &h("d8 2a 40"))).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidCid(_)), "{e}");
    // A CIDv0 decodes.
    let mut v0 = h("d8 2a 58 23 00 12 20");
    v0.extend_from_slice(&[9; 32]);
    let p = DealProposal::from_cbor(&proposal_with(0, &v0)).unwrap();
    assert_eq!(p.piece_cid.prefix().unwrap().version, 0);
    // A null PieceCID is not accepted (non-pointer field).
    assert!(DealProposal::from_cbor(&proposal_with(0, &[0xf6])).is_err());
}

#[test]
fn addresses_are_validated_per_protocol() {
    let e = DealProposal::from_cbor(&proposal_with(3, &h("40"))).unwrap_err();
    assert_eq!(e.path, "DealProposal.Client");
    let e = DealProposal::from_cbor(&proposal_with(3, &h("42 01 00"))).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidAddress(_)), "{e}");
    // Non-minimal varint in an ID address.
    assert!(DealProposal::from_cbor(&proposal_with(4, &h("43 00 80 00"))).is_err());
    // Unknown protocol.
    assert!(DealProposal::from_cbor(&proposal_with(4, &h("42 05 01"))).is_err());
}

#[test]
fn big_ints_need_a_sign_byte_and_at_most_128_bytes() {
    let e = DealProposal::from_cbor(&proposal_with(8, &h("42 02 01"))).unwrap_err();
    assert_eq!(e.path, "DealProposal.StoragePricePerEpoch");
    let p = DealProposal::from_cbor(&proposal_with(8, &h("43 01 01 00"))).unwrap();
    assert_eq!(p.storage_price_per_epoch.to_string(), "-256");
    let mut long = vec![0x58, 129, 0];
    long.extend_from_slice(&[1; 128]);
    assert!(DealProposal::from_cbor(&proposal_with(9, &long)).is_err());
}

#[test]
fn labels_may_be_bytes_but_text_must_be_utf8() {
    let p = DealProposal::from_cbor(&proposal_with(5, &h("43 ff 00 01"))).unwrap();
    assert_eq!(p.label, DealLabel::Bytes(vec![0xff, 0, 1]));
    let e = DealProposal::from_cbor(&proposal_with(5, &h("62 ff fe"))).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::LabelNotUtf8));
}

#[test]
fn signatures_need_a_known_type_and_at_most_200_bytes() {
    let sig = |b: &[u8]| {
        let mut w = dealport_core::wire::cbor::Writer::new();
        w.bytes(b);
        map(&[("Signature", w.into_bytes())])
    };
    assert!(DealStatusRequest::from_cbor(&sig(&[])).is_err());
    assert!(DealStatusRequest::from_cbor(&sig(&[4, 1, 2])).is_err());
    assert!(DealStatusRequest::from_cbor(&sig(&[2; 201])).is_err());
    assert!(DealStatusRequest::from_cbor(&sig(&[2; 200])).is_ok());
}

#[test]
fn nullable_fields_are_only_the_pointer_ones() {
    let mut r = DealStatusResponse::default();
    assert_eq!(DealStatusResponse::from_cbor(&r.to_cbor()).unwrap(), r);
    r.deal_status = Some(DealStatus::default());
    // A null where Go has a non-pointer struct is refused.
    let e = DealParams::from_cbor(&map(&[("Transfer", vec![0xf6])])).unwrap_err();
    assert_eq!(e.path, "DealParams.Transfer");
}

#[test]
fn errors_name_the_nested_field() {
    let a4 = common::vector("A4");
    let mut p = DealParams::from_cbor(&a4).unwrap();
    p.client_deal_proposal.proposal.label = DealLabel::Text("ok".into());
    let mut bytes = p.to_cbor();
    // Corrupt the label text "ok" into invalid UTF-8.
    let at = bytes
        .windows(3)
        .position(|w| w == [0x62, b'o', b'k'])
        .unwrap();
    bytes[at + 1] = 0xff;
    let e = DealParams::from_cbor(&bytes).unwrap_err();
    assert_eq!(e.path, "DealParams.ClientDealProposal.Proposal.Label");
    assert_eq!(
        e.to_string(),
        "DealParams.ClientDealProposal.Proposal.Label: label string not valid utf8"
    );
}

#[test]
fn address_strings_roundtrip_with_checksums() {
    for s in [
        "f01000",
        "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna",
        "f3rd27rdpzmhfttvv3fqrtqgal7vun4s3z4yoiyhlw4qodzv4ed3egfsh2yxtqcvwn2m6ih6dtpjfvcqrtzi2a",
    ] {
        assert_eq!(Address::parse(s).unwrap().to_string(), s);
    }
    let t = Address::parse("t01000").unwrap();
    assert_eq!(t.to_string_on(Network::Testnet), "t01000");
    // One changed character breaks the checksum.
    assert!(Address::parse("f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fnb").is_err());
    assert!(Address::parse("f09223372036854775808").is_err());
    // f4 (delegated, EVM namespace 10) round-trips.
    let mut f4 = vec![4, 10];
    f4.extend_from_slice(&[0xab; 20]);
    let a = Address::from_bytes(&f4).unwrap();
    assert!(a.to_string().starts_with("f410f"));
    assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
}

#[test]
fn piece_size_helpers_follow_go_padreader() {
    assert_eq!(
        dealport_core::wire::primitives::padded_piece_size(0),
        Some(128)
    );
    assert_eq!(
        dealport_core::wire::primitives::padded_piece_size(127),
        Some(128)
    );
    assert_eq!(
        dealport_core::wire::primitives::padded_piece_size(128),
        Some(256)
    );
    assert_eq!(
        dealport_core::wire::primitives::padded_piece_size(254),
        Some(256)
    );
    assert_eq!(
        dealport_core::wire::primitives::padded_piece_size(255),
        Some(512)
    );
    assert_eq!(
        dealport_core::wire::primitives::padded_piece_size(30_000_000_000),
        Some(32 << 30)
    );
    assert_eq!(
        dealport_core::wire::primitives::padded_piece_size(u64::MAX),
        None
    );
    use dealport_core::wire::primitives::validate_padded_piece_size as v;
    assert_eq!(v(64), Err("minimum padded piece size is 128 bytes"));
    assert_eq!(v(384), Err("padded piece size must be a power of 2"));
    assert_eq!(v(1 << 35), Ok(()));
}

#[test]
fn http_request_json_is_go_identical() {
    let mut r = HttpRequest::new("https://x.test/a?b=1&c=<d>");
    assert_eq!(
        String::from_utf8(r.to_json()).unwrap(),
        r#"{"URL":"https://x.test/a?b=1\u0026c=\u003cd\u003e","Headers":null}"#
    );
    r.headers.insert("X-B".into(), "2".into());
    r.headers.insert("Authorization".into(), "Bearer t".into());
    let json = r.to_json();
    assert_eq!(
        String::from_utf8(json.clone()).unwrap(),
        r#"{"URL":"https://x.test/a?b=1\u0026c=\u003cd\u003e","Headers":{"Authorization":"Bearer t","X-B":"2"}}"#
    );
    assert_eq!(HttpRequest::from_json(&json).unwrap(), r);
    // Keys are matched case-insensitively, headers may be absent.
    let r = HttpRequest::from_json(br#"{"url":"http://a"}"#).unwrap();
    assert_eq!(r.url, "http://a");
    assert!(HttpRequest::from_json(b"[1]").is_err());
    assert!(HttpRequest::from_json(b"{\"URL\":1}").is_err());
}
