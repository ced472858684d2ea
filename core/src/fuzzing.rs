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
];
