//! The piece directory's values: what indexing a piece found (its [`IndexState`]) and,
//! per block, where the block's bytes sit in the piece ([`BlockEntry`],
//! [`BlockLocation`]). The store keeps them (node `store`); the CAR reader
//! (`car`) produces them; `/ipfs/<cid>` and the IPNI advertisements read them.
//! Pure values: uses `wire` only.

use std::fmt;

use crate::wire::Cid;

/// What indexing a piece found. A piece never indexed (or being indexed now) is
/// [`IndexState::NotYet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexState {
    /// Not indexed yet (or indexing did not finish: a restart indexes it again).
    NotYet,
    /// A CAR whose every block was read (and checked where its hash is supported):
    /// `blocks` entries are in the store.
    Indexed { blocks: u64 },
    /// The data is not a CAR (e.g. a raw file): kept and served as a piece, no blocks.
    NotCar { reason: String },
    /// It starts like a CAR but breaks the format (the reason says where): no blocks.
    Malformed { reason: String },
}

impl IndexState {
    /// The short name stored and shown in status (`not-yet`, `indexed`, `not-a-car`,
    /// `malformed`).
    pub fn name(&self) -> &'static str {
        match self {
            IndexState::NotYet => "not-yet",
            IndexState::Indexed { .. } => "indexed",
            IndexState::NotCar { .. } => "not-a-car",
            IndexState::Malformed { .. } => "malformed",
        }
    }

    /// The reason of a piece that is not indexed for good.
    pub fn reason(&self) -> Option<&str> {
        match self {
            IndexState::NotCar { reason } | IndexState::Malformed { reason } => Some(reason),
            _ => None,
        }
    }

    /// The block count of an indexed piece.
    pub fn blocks(&self) -> Option<u64> {
        match self {
            IndexState::Indexed { blocks } => Some(*blocks),
            _ => None,
        }
    }

    /// Rebuild from the stored parts (`name`, block count, reason); `None` for parts
    /// that do not fit together (a damaged record).
    pub fn from_parts(name: &str, blocks: Option<u64>, reason: Option<String>) -> Option<Self> {
        match (name, blocks, reason) {
            ("not-yet", None, None) => Some(IndexState::NotYet),
            ("indexed", Some(blocks), None) => Some(IndexState::Indexed { blocks }),
            ("not-a-car", None, Some(reason)) => Some(IndexState::NotCar { reason }),
            ("malformed", None, Some(reason)) => Some(IndexState::Malformed { reason }),
            _ => None,
        }
    }
}

impl fmt::Display for IndexState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexState::NotYet => f.write_str("not indexed yet"),
            IndexState::Indexed { blocks } => write!(f, "indexed, {blocks} blocks"),
            IndexState::NotCar { reason } => write!(f, "not indexed: not a CAR: {reason}"),
            IndexState::Malformed { reason } => write!(f, "not indexed: malformed CAR: {reason}"),
        }
    }
}

/// One block of a piece: its multihash (the CID's, whole: code, length, digest) and
/// where its data (the bytes the CID hashes, after the CID in the CAR section) is:
/// `offset` from the start of the piece's unpadded bytes (the file as received, CARv2
/// header included), `length` bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockEntry {
    pub multihash: Vec<u8>,
    pub offset: u64,
    pub length: u64,
}

/// Where a block (found by multihash) is: which piece, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLocation {
    pub piece: Cid,
    pub offset: u64,
    pub length: u64,
}

/// Entries written to the store per batch while a piece is indexed.
pub const INDEX_BATCH: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_parts() {
        for s in [
            IndexState::NotYet,
            IndexState::Indexed { blocks: 7 },
            IndexState::NotCar {
                reason: "header is not dag-cbor".into(),
            },
            IndexState::Malformed {
                reason: "truncated".into(),
            },
        ] {
            let back = IndexState::from_parts(s.name(), s.blocks(), s.reason().map(str::to_owned));
            assert_eq!(back, Some(s));
        }
        assert_eq!(IndexState::from_parts("indexed", None, None), None);
        assert_eq!(IndexState::from_parts("other", None, None), None);
    }
}
