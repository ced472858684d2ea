//! Decode errors that name the field they came from.
use super::framer::FrameError;

/// What went wrong while decoding, and where (e.g. `DealParams.ClientDealProposal.Proposal.Label`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct WireError {
    /// Dotted path of the field, outermost type first.
    pub path: String,
    pub kind: ErrorKind,
}

/// The reason a field could not be decoded. Texts follow cbor-gen's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("expected {expected}, found cbor major type {found}")]
    WrongType { expected: &'static str, found: u8 },
    #[error("{what} too long: {len} bytes, limit {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("wrong length: expected {expected} bytes, got {len}")]
    WrongLength { expected: u64, len: u64 },
    #[error("cbor input had wrong number of fields: expected {expected}, got {found}")]
    WrongFieldCount { expected: u64, found: u64 },
    #[error("map struct too large ({0} entries)")]
    MapTooLarge(u64),
    #[error("array too large ({0} elements)")]
    ArrayTooLarge(u64),
    #[error("integer overflows int64")]
    IntOverflow,
    #[error("booleans are either major type 7, value 20 or 21 (got {0})")]
    InvalidBool(u64),
    #[error("expected cbor tag 42 for a cid, got tag {0}")]
    WrongTag(u64),
    #[error("invalid cid: {0}")]
    InvalidCid(&'static str),
    #[error("invalid address: {0}")]
    InvalidAddress(&'static str),
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
    #[error("invalid big int: {0}")]
    InvalidBigInt(&'static str),
    #[error("label string not valid utf8")]
    LabelNotUtf8,
    #[error("invalid bitfield: {0}")]
    InvalidBitField(&'static str),
}

impl WireError {
    pub(crate) fn at(field: &str, kind: ErrorKind) -> Self {
        WireError {
            path: field.to_owned(),
            kind,
        }
    }

    /// Prefix the path with the enclosing type or field.
    pub(crate) fn within(mut self, outer: &str) -> Self {
        self.path = if self.path.is_empty() {
            outer.to_owned()
        } else {
            format!("{outer}.{}", self.path)
        };
        self
    }
}

/// Prefix any error with the enclosing field name.
pub(crate) trait Within<T> {
    fn within(self, outer: &str) -> Result<T, WireError>;
}

impl<T> Within<T> for Result<T, WireError> {
    fn within(self, outer: &str) -> Result<T, WireError> {
        self.map_err(|e| e.within(outer))
    }
}
