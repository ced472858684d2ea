//! Entry points shared by the cargo-fuzz targets and the stable corpus replay test.
//!
//! Each takes arbitrary bytes, must never panic, and checks an invariant that would
//! reveal a decoder bug: whatever decodes re-encodes canonically and decodes back to
//! the same value.
use crate::wire::framer::{check_single_item, Frame, Framer};
use crate::wire::*;

/// The framer: the whole buffer and a byte-at-a-time feed agree, and a complete item
/// passes the strict single-item check.
pub fn framer(data: &[u8]) {
    let cap = 1 << 16;
    let whole = Framer::new(cap).advance(data);
    let mut f = Framer::new(cap);
    let mut fed = Ok(Frame::NeedMore);
    for i in 0..=data.len() {
        fed = f.advance(&data[..i]);
        if !matches!(fed, Ok(Frame::NeedMore)) {
            break;
        }
    }
    assert_eq!(whole, fed, "chunked and whole framing disagree");
    if let Ok(Frame::Complete(n)) = whole {
        assert!(n <= data.len());
        assert_eq!(check_single_item(&data[..n], cap), Ok(()));
    }
}

/// Decode as `T`; if that works, the canonical re-encoding must decode to the same value.
///
/// One exception, shared with Go: a message missing a non-pointer CID, address or
/// signature decodes to that field's zero value, which Go cannot encode either (an
/// undefined CID or address, a type-0 signature). Re-decoding may fail on exactly those.
pub fn message<T: Cbor + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = T::from_cbor(data) {
        let canonical = v.to_cbor();
        match T::from_cbor(&canonical) {
            Ok(back) => {
                assert_eq!(back, v, "re-encoded value differs");
                assert_eq!(back.to_cbor(), canonical, "canonical form is not stable");
            }
            Err(e) => assert!(
                is_zero_value_error(&e),
                "canonical bytes must decode: {e:?}"
            ),
        }
    }
}

/// The decode errors that only a Go zero value (undefined CID or address, type-0
/// signature) produces after re-encoding.
fn is_zero_value_error(e: &WireError) -> bool {
    use crate::wire::{address::EMPTY_ADDRESS, cid::UNDEFINED_CID, primitives::INVALID_SIG_TYPE};
    matches!(
        e.kind,
        ErrorKind::InvalidCid(UNDEFINED_CID)
            | ErrorKind::InvalidAddress(EMPTY_ADDRESS)
            | ErrorKind::InvalidSignature(INVALID_SIG_TYPE)
    )
}

/// `Transfer.Params` JSON: whatever parses re-serialises to JSON that parses the same.
pub fn http_request(data: &[u8]) {
    if let Ok(r) = HttpRequest::from_json(data) {
        let again = HttpRequest::from_json(&r.to_json()).expect("our JSON must parse");
        assert_eq!(again, r);
    }
}

/// The market actor's PublishStorageDeals return (read from a Lotus receipt): decodes
/// canonically, and mapping it onto a batch of any size never panics.
pub fn publish_return(data: &[u8]) {
    message::<PublishStorageDealsReturn>(data);
    if let Ok(r) = PublishStorageDealsReturn::from_cbor(data) {
        for batch in [0, 1, 8, 256] {
            if let Ok(ids) = r.deal_ids(batch) {
                assert_eq!(ids.len(), batch);
                assert_eq!(ids.iter().flatten().count(), r.ids.len());
            }
        }
    }
}

/// The CAR reader: fed whole, a byte at a time and in 7-byte chunks it reports the
/// same items and outcome; every block lies inside the data, in order, and a block
/// reported verified hashes to its CID.
pub fn car_reader(data: &[u8]) {
    use crate::car::{block_matches, CarItem, CarReader};
    let read = |chunk: usize| {
        let mut r = CarReader::new();
        let mut items = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            if let Err(e) = r.push(c, &mut |i| items.push(i)) {
                return (items, Err(e));
            }
        }
        (items, r.finish())
    };
    let whole = read(data.len());
    assert_eq!(read(1), whole, "byte-at-a-time and whole reads disagree");
    assert_eq!(read(7), whole, "chunked and whole reads disagree");
    let mut last_end = 0u64;
    for item in &whole.0 {
        if let CarItem::Block(b) = item {
            let end = b.offset + b.length;
            assert!(b.offset >= last_end && end <= data.len() as u64, "{b:?}");
            last_end = end;
            let bytes = &data[b.offset as usize..end as usize];
            if b.verified {
                assert_eq!(block_matches(&b.cid, bytes), Some(true));
            }
        }
    }
}

/// A `/ipfs/` request target and `Accept` header (split at the first newline): decided
/// without a panic, and an accepted request's CID prints back to a string that parses.
pub fn trustless_request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (target, accept) = text.split_once('\n').unwrap_or((&text, ""));
    let accept = (!accept.is_empty()).then_some(accept);
    if let Ok(r) = crate::trustless::parse_request(target, accept) {
        assert_eq!(Cid::parse(&r.cid.to_string()), Ok(r.cid.clone()));
        let _ = (r.etag(), r.disposition(), r.prefix(3));
    }
}

/// A fuzz target: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every fuzz target by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("framer", framer),
    ("deal_params", message::<DealParams>),
    ("deal_response", message::<DealResponse>),
    ("status_request", message::<DealStatusRequest>),
    ("status_response", message::<DealStatusResponse>),
    ("ask_request", message::<AskRequest>),
    ("ask_response", message::<AskResponse>),
    ("transports_response", message::<TransportsResponse>),
    ("client_deal_proposal", message::<ClientDealProposal>),
    ("http_request", http_request),
    ("publish_return", publish_return),
    ("car_reader", car_reader),
    ("trustless_request", trustless_request),
];
