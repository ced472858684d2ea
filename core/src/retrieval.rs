//! Retrieval decisions: what the `/fil/retrieval/transports/1.0.0` answer lists, which
//! strings a `/piece/<cid>` request may name, and which of a piece's deals may supply
//! its bytes. Pure: uses `wire` and `deal` only; multiaddrs arrive as their binary form.
//!
//! Facts (docs/retrieval.md): Boost lists `libp2p`, then `http` (only when
//! `HTTPRetrievalMultiaddr` is set), then `bitswap`; clients such as Singularity pick the
//! entry named `http` and fetch `/piece/<pieceCid>` under it.

use std::fmt;

use crate::{
    deal::{Checkpoint, DealRecord},
    wire::{
        cid::{CODEC_FIL_COMMITMENT_UNSEALED, CODEC_RAW, MH_SHA2_256_TRUNC254_PADDED},
        Cid, DealUuid, TransportProtocol, TransportsResponse,
    },
};

/// Multihash of a piece CID v2 (FRC-0069): varint padding, tree height, 32-byte root.
pub const MH_FR32_SHA256_TRUNC254_PADBINTREE: u64 = 0x1011;

/// The retrieval endpoints an operator configured (binary multiaddrs, in config order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// Where `/piece/<cid>` is served: booster-http, Curio, or this node behind a proxy.
    pub http: Vec<Vec<u8>>,
    /// A graphsync retrieval server (dealport serves none itself).
    pub libp2p: Vec<Vec<u8>>,
    /// A bitswap retrieval server (dealport serves none itself).
    pub bitswap: Vec<Vec<u8>>,
}

/// The transports answer: the configured endpoints in Boost's order (libp2p, http,
/// bitswap), an empty kind left out. `own_http` is this node's HTTP announce address
/// when it serves pieces itself; it is listed only when no `http` endpoint is configured
/// (the operator's endpoint is where clients should go). Nothing: an empty list.
pub fn transports(configured: &Endpoints, own_http: Option<&[u8]>) -> TransportsResponse {
    let http = match (configured.http.is_empty(), own_http) {
        (true, Some(own)) => vec![own.to_vec()],
        _ => configured.http.clone(),
    };
    let protocols = [
        ("libp2p", configured.libp2p.clone()),
        ("http", http),
        ("bitswap", configured.bitswap.clone()),
    ]
    .into_iter()
    .filter(|(_, addrs)| !addrs.is_empty())
    .map(|(name, addresses)| TransportProtocol {
        name: name.to_owned(),
        addresses,
    })
    .collect();
    TransportsResponse { protocols }
}

/// Why a `/piece/<cid>` path segment is not a piece CID (answered 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceCidError {
    /// Not a CID at all.
    NotACid { given: String, why: &'static str },
    /// A CID, but of something else (a payload block, a deal proposal, …).
    NotAPiece { given: String, codec: u64, mh: u64 },
}

impl fmt::Display for PieceCidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PieceCidError::NotACid { given, why } => {
                write!(f, "{given:?} is not a CID: {why}")
            }
            PieceCidError::NotAPiece { given, codec, mh } => write!(
                f,
                "{given:?} is a CID but not a piece CID (codec 0x{codec:x}, multihash 0x{mh:x}; \
                 expected a baga… piece CID v1 or a bafkzcib… piece CID v2)"
            ),
        }
    }
}

/// Longest path segment looked at: every piece CID string is far shorter.
const MAX_CID_STRING: usize = 256;

/// The piece CID (v1: fil-commitment-unsealed + sha2-256-trunc254-padded) a request
/// names, as v1 also when it was given as v2 (raw + fr32-sha256-trunc254-padbintree,
/// whose digest ends with the same 32-byte root).
pub fn parse_piece_cid(given: &str) -> Result<Cid, PieceCidError> {
    let not_a_cid = |why| PieceCidError::NotACid {
        given: given.chars().take(80).collect(),
        why,
    };
    if given.len() > MAX_CID_STRING {
        return Err(not_a_cid("longer than any CID"));
    }
    let cid = Cid::parse(given).map_err(not_a_cid)?;
    let p = cid.prefix().ok_or_else(|| not_a_cid("no prefix"))?;
    let digest = cid.digest();
    match (p.codec, p.mh_code) {
        (CODEC_FIL_COMMITMENT_UNSEALED, MH_SHA2_256_TRUNC254_PADDED) if digest.len() == 32 => {
            Ok(cid)
        }
        (CODEC_RAW, MH_FR32_SHA256_TRUNC254_PADBINTREE) if digest.len() >= 34 => Ok(Cid::v1(
            CODEC_FIL_COMMITMENT_UNSEALED,
            MH_SHA2_256_TRUNC254_PADDED,
            &digest[digest.len() - 32..],
        )),
        (codec, mh) => Err(PieceCidError::NotAPiece {
            given: given.to_owned(),
            codec,
            mh,
        }),
    }
}

/// Where a held piece's bytes may come from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceSource {
    /// The piece store (`[retrieval] keep_pieces`), where a sealed deal's data was moved.
    Kept,
    /// A deal's staged data file.
    Staged(DealUuid),
}

/// The sources of `piece` among the deals recorded for it. A failed deal supplies
/// nothing (its data may not be what the client meant to store, and its client was told
/// so); a deal whose data is not all in (before `Transferred`) supplies nothing either.
/// A deal with its piece in a sector points at the piece store; one still before that
/// at its staged data. The caller tries them in order; a missing file is skipped.
pub fn piece_sources(piece: &Cid, deals: &[DealRecord]) -> Vec<PieceSource> {
    let alive: Vec<&DealRecord> = deals
        .iter()
        .filter(|d| {
            !d.is_failed()
                && d.checkpoint >= Checkpoint::Transferred
                && d.params.client_deal_proposal.proposal.piece_cid == *piece
        })
        .collect();
    let mut out = Vec::new();
    if alive.iter().any(|d| d.checkpoint >= Checkpoint::AddedPiece) {
        out.push(PieceSource::Kept);
    }
    // Staged data outlives AddedPiece only with `[transfer] keep_staging`; try it last.
    let (before, after): (Vec<&DealRecord>, Vec<&DealRecord>) = alive
        .into_iter()
        .partition(|d| d.checkpoint < Checkpoint::AddedPiece);
    out.extend(
        before
            .iter()
            .chain(after.iter())
            .map(|d| PieceSource::Staged(d.uuid)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece() -> Cid {
        Cid::v1(
            CODEC_FIL_COMMITMENT_UNSEALED,
            MH_SHA2_256_TRUNC254_PADDED,
            &[7u8; 32],
        )
    }

    #[test]
    fn nothing_configured_and_not_serving_lists_nothing() {
        let r = transports(&Endpoints::default(), None);
        assert!(r.protocols.is_empty());
        // {"Protocols": []}, as a dag-cbor (Boost) or cbor-gen peer writes it.
        assert_eq!(
            crate::wire::Cbor::to_cbor(&r),
            b"\xa1\x69Protocols\x80".to_vec()
        );
    }

    #[test]
    fn serving_lists_the_own_address_unless_an_http_endpoint_is_configured() {
        let own = b"own".to_vec();
        let r = transports(&Endpoints::default(), Some(&own));
        assert_eq!(r.protocols.len(), 1);
        assert_eq!(r.protocols[0].name, "http");
        assert_eq!(r.protocols[0].addresses, vec![own.clone()]);

        let configured = Endpoints {
            http: vec![b"proxy".to_vec()],
            ..Endpoints::default()
        };
        let r = transports(&configured, Some(&own));
        assert_eq!(r.protocols[0].addresses, vec![b"proxy".to_vec()]);
    }

    #[test]
    fn configured_kinds_come_in_boosts_order() {
        let e = Endpoints {
            http: vec![b"h".to_vec()],
            libp2p: vec![b"l1".to_vec(), b"l2".to_vec()],
            bitswap: vec![b"b".to_vec()],
        };
        let names: Vec<String> = transports(&e, None)
            .protocols
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["libp2p", "http", "bitswap"]);
    }

    #[test]
    fn piece_cids_parse_and_others_are_refused_with_a_reason() {
        let v1 = piece();
        assert_eq!(parse_piece_cid(&v1.to_string()), Ok(v1.clone()));
        // v2: varint padding (0), height (5), the same root.
        let mut d = vec![0u8, 5];
        d.extend_from_slice(&[7u8; 32]);
        let v2 = Cid::v1(CODEC_RAW, MH_FR32_SHA256_TRUNC254_PADBINTREE, &d);
        assert_eq!(parse_piece_cid(&v2.to_string()), Ok(v1));

        let payload = "bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy";
        let e = parse_piece_cid(payload).unwrap_err();
        assert!(
            matches!(e, PieceCidError::NotAPiece { codec: 0x70, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("not a piece CID"), "{e}");
        for garbage in ["", "nonsense", "b!!!!", "baga6ea4sea", &"b".repeat(300)] {
            let e = parse_piece_cid(garbage).unwrap_err();
            assert!(
                matches!(e, PieceCidError::NotACid { .. }),
                "{garbage}: {e:?}"
            );
        }
    }
}
