//! A streaming CAR reader (CARv1 and CARv2, ipld/specs `transport/car`; facts in
//! docs/indexing.md): the caller pushes the bytes as they arrive ([`CarReader::push`]),
//! in chunks of any size, and gets each block's CID and where its data sits, then calls
//! [`CarReader::finish`] at the end of the stream. Memory is bounded whatever the input:
//! only a header (at most [`MAX_HEADER`] bytes), a varint or a CID is ever buffered;
//! block data is hashed as it passes and never kept.
//!
//! Each block's data is checked against its CID's multihash where the hash is one we
//! compute (sha2-256, sha2-512, blake2b-256, identity; a truncated digest compares its
//! prefix). Blocks with another hash function (blake3, …) are reported with
//! `verified: false` and indexed as the CAR says: the trustless gateway's clients check
//! every block they fetch against its CID anyway.
//!
//! Every way a byte stream can fail to be a CAR ends in a [`CarError`] with its own
//! sentence, never a panic; [`CarError::is_not_car`] separates data that is not a CAR
//! at all (a raw file) from a CAR that breaks the format. Pure: uses `wire` only.

use sha2::Digest;

use crate::wire::{
    cbor::{Cbor, Reader, MAX_LENGTH},
    cid::{MH_BLAKE2B_256, MH_SHA2_256},
    framer::check_single_item,
    varint, Cid,
};

/// Longest header block accepted (go-car's `DefaultMaxAllowedHeaderSize`, 32 MiB).
pub const MAX_HEADER: u64 = 32 << 20;
/// Longest section (CID and data) accepted (go-car's `DefaultMaxAllowedSectionSize`,
/// 8 MiB): a length above it is a damaged or hostile CAR, not a block.
pub const MAX_SECTION: u64 = 8 << 20;
/// The CARv2 pragma: a CARv1-style header `{"version": 2}` (CARv2 spec, "Pragma").
pub const V2_PRAGMA: [u8; 11] = [
    0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02,
];
/// The CARv2 header after the pragma: characteristics (16), data offset, data size,
/// index offset (8 each, little-endian).
pub const V2_HEADER_LEN: usize = 40;
/// Longest CID accepted in a section (go-cid's bound on a CID's bytes, as cbor-gen).
const MAX_CID: usize = 512;
/// The multihash codes checked besides sha2-256 and blake2b-256.
pub const MH_IDENTITY: u64 = 0x00;
pub const MH_SHA2_512: u64 = 0x13;

/// One block found in the CAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarBlock {
    pub cid: Cid,
    /// Where the block's data (after the CID) starts, from the first byte pushed.
    pub offset: u64,
    /// The data's length.
    pub length: u64,
    /// Whether the data was hashed and matched the CID (false: a hash we do not
    /// compute; see the module docs).
    pub verified: bool,
}

/// What the CAR's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarHeader {
    /// 1 or 2 (the outer format; a CARv2's payload is a CARv1).
    pub version: u8,
    pub roots: Vec<Cid>,
}

/// What the reader reports, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarItem {
    Header(CarHeader),
    Block(CarBlock),
}

/// How a byte stream fails to be a (well-formed) CAR. `at` is a byte offset from the
/// first byte pushed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarError {
    #[error("not a CAR: the data is empty")]
    Empty,
    #[error("not a CAR: the first bytes are not a varint-framed header ({why})")]
    NoHeaderFrame { why: &'static str },
    #[error("not a CAR: the header claims {len} bytes, more than the {max}-byte limit")]
    HeaderTooLarge { len: u64, max: u64 },
    #[error("not a CAR: the header is not a dag-cbor map with a version ({why})")]
    NotCarHeader { why: String },
    #[error("malformed CAR: unsupported CAR version {version}")]
    UnsupportedVersion { version: u64 },
    #[error("malformed CAR: the header has no roots (a CARv1 header needs one or more)")]
    NoRoots,
    #[error("malformed CAR: truncated: the data ends at byte {at} inside {what}")]
    Truncated { what: &'static str, at: u64 },
    #[error("malformed CAR: bad varint at byte {at} ({why})")]
    BadVarint { at: u64, why: &'static str },
    #[error("malformed CAR: the CARv2 header lies: {why}")]
    V2HeaderLies { why: String },
    #[error(
        "malformed CAR: the CARv2 data payload at byte {at} is not a CARv1 (version {version})"
    )]
    V2PayloadNotV1 { at: u64, version: u64 },
    #[error("malformed CAR: a section of length 0 at byte {at}")]
    EmptySection { at: u64 },
    #[error("malformed CAR: the section at byte {at} claims {len} bytes, more than the {max}-byte limit")]
    SectionTooLarge { at: u64, len: u64, max: u64 },
    #[error("malformed CAR: bad CID at byte {at} ({why})")]
    BadCid { at: u64, why: &'static str },
    #[error("malformed CAR: the CID at byte {at} is longer than its section ({len} bytes)")]
    CidPastSection { at: u64, len: u64 },
    #[error("malformed CAR: the block {cid} at byte {at}: its data does not hash to its CID")]
    HashMismatch { cid: String, at: u64 },
    #[error("malformed CAR: the section at byte {at} runs past the end of the CARv2 data payload (byte {end})")]
    PastPayload { at: u64, end: u64 },
    #[error("malformed CAR: the CARv2 header puts the end of the data payload at byte {end}, past the end of the data (byte {at}): the header lies or the data is truncated")]
    V2PayloadPastEnd { end: u64, at: u64 },
}

impl CarError {
    /// The data is not a CAR at all (as opposed to a CAR that breaks the format).
    pub fn is_not_car(&self) -> bool {
        matches!(
            self,
            CarError::Empty
                | CarError::NoHeaderFrame { .. }
                | CarError::HeaderTooLarge { .. }
                | CarError::NotCarHeader { .. }
        )
    }
}

/// What has been read so far (after the last complete item). See [`CarReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarSummary {
    pub version: u8,
    pub blocks: u64,
    /// Blocks whose hash we do not compute (reported, not checked).
    pub unverified: u64,
    /// Bytes pushed.
    pub bytes: u64,
}

/// The state of the walk.
#[derive(Debug)]
enum State {
    /// A header's varint: the outer one (CARv1 header or CARv2 pragma) or, `inner`, the
    /// one of a CARv2's CARv1 payload.
    HeaderLen { inner: bool },
    /// Its bytes: `len` of them, gathered in `carry`.
    Header { inner: bool, len: u64 },
    /// The 40 bytes after the CARv2 pragma.
    V2Header,
    /// Skipping to the CARv2 data offset (padding).
    Skip { until: u64 },
    /// A section's length varint.
    SectionLen,
    /// A section's CID (`len`: the whole section after its varint; `start`: its first
    /// byte).
    SectionCid { len: u64, start: u64 },
    /// A section's data, hashed as it passes.
    SectionData {
        cid: Cid,
        start: u64,
        length: u64,
        left: u64,
        hash: Box<BlockHash>,
    },
    /// After a CARv2's data payload: the index and padding are not read.
    Trailer,
    /// An error was returned; every later call returns it again.
    Failed(CarError),
}

/// The incremental hash of one block's data.
#[derive(Debug)]
enum BlockHash {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Blake2b256(blake2b_simd::State),
    /// The identity multihash: the digest is the data; compared as it passes.
    Identity {
        matched: u64,
        ok: bool,
    },
    /// A hash we do not compute.
    Unsupported,
}

impl BlockHash {
    fn for_code(code: u64) -> BlockHash {
        match code {
            MH_SHA2_256 => BlockHash::Sha256(sha2::Sha256::new()),
            MH_SHA2_512 => BlockHash::Sha512(sha2::Sha512::new()),
            MH_BLAKE2B_256 => {
                BlockHash::Blake2b256(blake2b_simd::Params::new().hash_length(32).to_state())
            }
            MH_IDENTITY => BlockHash::Identity {
                matched: 0,
                ok: true,
            },
            _ => BlockHash::Unsupported,
        }
    }

    fn update(&mut self, digest: &[u8], data: &[u8]) {
        match self {
            BlockHash::Sha256(h) => h.update(data),
            BlockHash::Sha512(h) => h.update(data),
            BlockHash::Blake2b256(h) => {
                h.update(data);
            }
            BlockHash::Identity { matched, ok } => {
                let at = usize::try_from(*matched).unwrap_or(usize::MAX);
                *ok = *ok
                    && at
                        .checked_add(data.len())
                        .and_then(|end| digest.get(at..end))
                        == Some(data);
                *matched = matched.saturating_add(data.len() as u64);
            }
            BlockHash::Unsupported => {}
        }
    }

    /// `Some(matches)` for a hash we compute, `None` otherwise. A digest shorter than
    /// the function's output is a truncated one: its prefix must match.
    fn check(self, digest: &[u8]) -> Option<bool> {
        let prefix = |full: &[u8]| !digest.is_empty() && full.get(..digest.len()) == Some(digest);
        match self {
            BlockHash::Sha256(h) => Some(prefix(&h.finalize())),
            BlockHash::Sha512(h) => Some(prefix(&h.finalize())),
            BlockHash::Blake2b256(h) => Some(prefix(h.finalize().as_bytes())),
            BlockHash::Identity { matched, ok } => Some(ok && matched == digest.len() as u64),
            BlockHash::Unsupported => None,
        }
    }
}

/// The streaming CAR reader. See the module docs.
#[derive(Debug)]
pub struct CarReader {
    state: State,
    /// Offset of the next byte to be pushed.
    pos: u64,
    /// A varint, header or CID being gathered (bounded, see the module docs).
    carry: Vec<u8>,
    version: u8,
    /// A CARv2's data payload `[start, end)`.
    payload: Option<(u64, u64)>,
    /// A CARv2's index offset (0: none).
    index_offset: u64,
    blocks: u64,
    unverified: u64,
    /// The byte length of the varint last read (to name a section's first byte).
    last_varint_len: u64,
}

impl Default for CarReader {
    fn default() -> Self {
        Self::new()
    }
}

impl CarReader {
    pub fn new() -> CarReader {
        CarReader {
            state: State::HeaderLen { inner: false },
            pos: 0,
            carry: Vec::new(),
            version: 0,
            payload: None,
            index_offset: 0,
            blocks: 0,
            unverified: 0,
            last_varint_len: 0,
        }
    }

    /// What has been read so far.
    pub fn summary(&self) -> CarSummary {
        CarSummary {
            version: self.version,
            blocks: self.blocks,
            unverified: self.unverified,
            bytes: self.pos,
        }
    }

    /// Read `chunk` (the bytes that follow everything pushed before), handing each
    /// header and block found to `found`, in order. After an error every call returns
    /// that error again.
    pub fn push(&mut self, chunk: &[u8], found: &mut dyn FnMut(CarItem)) -> Result<(), CarError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            match self.step(rest, found) {
                Ok(used) => {
                    self.pos += used as u64;
                    rest = &rest[used..];
                }
                Err(e) => {
                    self.state = State::Failed(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The stream ended: `Ok` if it ended where a CAR may end (after a whole section,
    /// or anywhere after a CARv2's data payload), with what was read.
    pub fn finish(self) -> Result<CarSummary, CarError> {
        let at = self.pos;
        if let Some((_, end)) = self.payload {
            if at < end && !matches!(self.state, State::Failed(_)) {
                return Err(CarError::V2PayloadPastEnd { end, at });
            }
        }
        let truncated = |what| Err(CarError::Truncated { what, at });
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::HeaderLen { inner: false } if at == 0 => Err(CarError::Empty),
            State::HeaderLen { inner: false } => Err(CarError::NoHeaderFrame {
                why: "the data ends inside the first varint",
            }),
            State::Header { inner: false, .. } if !self.looks_like_header() => {
                Err(CarError::NotCarHeader {
                    why: "the data ends before its header does, and that is not a map".into(),
                })
            }
            State::HeaderLen { .. } | State::Header { .. } => truncated("the header"),
            State::V2Header => truncated("the CARv2 header"),
            State::Skip { .. } => truncated("the padding before the CARv2 data payload"),
            State::SectionLen if !self.carry.is_empty() => truncated("a section's length"),
            State::SectionCid { .. } => truncated("a block's CID"),
            State::SectionData { .. } => truncated("a block's data"),
            State::SectionLen => Ok(self.summary()),
            State::Trailer => {
                if self.index_offset != 0 && self.index_offset >= at {
                    return Err(CarError::V2HeaderLies {
                        why: format!(
                            "the index offset {} is at or past the end of the data (byte {at})",
                            self.index_offset
                        ),
                    });
                }
                Ok(self.summary())
            }
        }
    }

    /// Whether the outer header gathered so far starts like a CBOR map (so data that
    /// ends inside it is a truncated CAR, not some other data).
    fn looks_like_header(&self) -> bool {
        self.carry.first().is_some_and(|b| b >> 5 == 5)
    }

    /// Consume a prefix of `all` (at least one byte, or an error).
    fn step(&mut self, all: &[u8], found: &mut dyn FnMut(CarItem)) -> Result<usize, CarError> {
        if matches!(self.state, State::Trailer) {
            return Ok(all.len());
        }
        // Inside a CARv2, nothing past the data payload is read as sections.
        let buf = match self.payload {
            Some((_, end)) => {
                let room = usize::try_from(end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
                &all[..all.len().min(room)]
            }
            None => all,
        };
        if buf.is_empty() {
            if matches!(self.state, State::SectionLen) && self.carry.is_empty() {
                self.state = State::Trailer;
                return Ok(all.len());
            }
            return Err(CarError::V2HeaderLies {
                why: format!(
                    "its data payload ends at byte {} inside the CARv1 header or a section",
                    self.pos
                ),
            });
        }
        let pos = self.pos;
        match std::mem::replace(&mut self.state, State::Trailer) {
            State::Failed(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
            State::Trailer => Ok(all.len()),
            State::HeaderLen { inner } => {
                let used = self.gather_varint(buf);
                match self.varint_done(pos + used as u64) {
                    Err(e) if !inner => Err(CarError::NoHeaderFrame {
                        why: match e {
                            CarError::BadVarint { why, .. } => why,
                            _ => "bad varint",
                        },
                    }),
                    Err(e) => Err(e),
                    Ok(None) => {
                        self.state = State::HeaderLen { inner };
                        Ok(used)
                    }
                    Ok(Some(len)) => {
                        if len > MAX_HEADER && !inner {
                            return Err(CarError::HeaderTooLarge {
                                len,
                                max: MAX_HEADER,
                            });
                        }
                        if let (true, Some((_, end))) = (inner, self.payload) {
                            if (pos + used as u64).saturating_add(len) > end || len > MAX_HEADER {
                                return Err(CarError::V2HeaderLies {
                                    why: format!(
                                        "its CARv1 payload's header ({len} bytes) does not fit \
                                         the data payload, which ends at byte {end}"
                                    ),
                                });
                            }
                        }
                        if len == 0 {
                            return Err(header_error(inner, "the header is empty".into()));
                        }
                        self.state = State::Header { inner, len };
                        Ok(used)
                    }
                }
            }
            State::Header { inner, len } => {
                let used = gather(&mut self.carry, buf, len as usize);
                if self.carry.len() as u64 == len {
                    let header = std::mem::take(&mut self.carry);
                    self.on_header(inner, &header, pos + used as u64, found)?;
                } else {
                    self.state = State::Header { inner, len };
                }
                Ok(used)
            }
            State::V2Header => {
                let used = gather(&mut self.carry, buf, V2_HEADER_LEN);
                if self.carry.len() == V2_HEADER_LEN {
                    let h = std::mem::take(&mut self.carry);
                    self.on_v2_header(&h, pos + used as u64)?;
                } else {
                    self.state = State::V2Header;
                }
                Ok(used)
            }
            State::Skip { until } => {
                let used = usize::try_from(until - pos)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                self.state = if pos + used as u64 == until {
                    State::HeaderLen { inner: true }
                } else {
                    State::Skip { until }
                };
                Ok(used)
            }
            State::SectionLen => {
                let used = self.gather_varint(buf);
                let after = pos + used as u64;
                let Some(len) = self.varint_done(after)? else {
                    self.state = State::SectionLen;
                    return Ok(used);
                };
                let at = after - self.last_varint_len;
                if len == 0 {
                    return Err(CarError::EmptySection { at });
                }
                if len > MAX_SECTION {
                    return Err(CarError::SectionTooLarge {
                        at,
                        len,
                        max: MAX_SECTION,
                    });
                }
                if let Some((_, end)) = self.payload {
                    if after.saturating_add(len) > end {
                        return Err(CarError::PastPayload { at, end });
                    }
                }
                self.state = State::SectionCid { len, start: after };
                Ok(used)
            }
            State::SectionCid { len, start } => {
                let bad = |why| CarError::BadCid { at: start, why };
                let mut used = 0;
                // Byte by byte until the CID's length is known (a CID is ~36 bytes).
                let n = loop {
                    if let Some(n) = cid_len(&self.carry).map_err(bad)? {
                        break n;
                    }
                    if self.carry.len() as u64 >= len {
                        return Err(CarError::CidPastSection { at: start, len });
                    }
                    let Some(&b) = buf.get(used) else {
                        self.state = State::SectionCid { len, start };
                        return Ok(used);
                    };
                    self.carry.push(b);
                    used += 1;
                };
                if n as u64 > len {
                    return Err(CarError::CidPastSection { at: start, len });
                }
                used += gather(&mut self.carry, &buf[used..], n);
                if self.carry.len() < n {
                    self.state = State::SectionCid { len, start };
                    return Ok(used);
                }
                let cid = Cid::from_bytes(&self.carry).map_err(bad)?;
                self.carry.clear();
                let code = cid.prefix().map_or(u64::MAX, |p| p.mh_code);
                let length = len - n as u64;
                self.state = State::SectionData {
                    cid,
                    start: start + n as u64,
                    length,
                    left: length,
                    hash: Box::new(BlockHash::for_code(code)),
                };
                if length == 0 {
                    self.end_block(found)?;
                }
                Ok(used)
            }
            State::SectionData {
                cid,
                start,
                length,
                left,
                mut hash,
            } => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                hash.update(cid.digest(), &buf[..take]);
                self.state = State::SectionData {
                    cid,
                    start,
                    length,
                    left: left - take as u64,
                    hash,
                };
                if left == take as u64 {
                    self.end_block(found)?;
                }
                Ok(take)
            }
        }
    }

    /// Add the bytes of a varint from `buf` to `carry` (up to its last byte, at most
    /// 10 bytes in all); how many were taken.
    fn gather_varint(&mut self, buf: &[u8]) -> usize {
        let mut used = 0;
        for &b in buf {
            if self.carry.len() >= 10 {
                break;
            }
            self.carry.push(b);
            used += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        used
    }

    /// The varint in `carry` if complete (`after`: the offset just past what was
    /// gathered); `carry` is emptied once it is.
    fn varint_done(&mut self, after: u64) -> Result<Option<u64>, CarError> {
        let complete = self.carry.last().is_some_and(|b| b & 0x80 == 0);
        if !complete && self.carry.len() < 10 {
            return Ok(None);
        }
        let at = after - self.carry.len() as u64;
        let (v, n) = varint::get(&self.carry).map_err(|why| CarError::BadVarint { at, why })?;
        self.last_varint_len = n as u64;
        self.carry.clear();
        Ok(Some(v))
    }

    fn on_header(
        &mut self,
        inner: bool,
        bytes: &[u8],
        after: u64,
        found: &mut dyn FnMut(CarItem),
    ) -> Result<(), CarError> {
        if !inner && *bytes == V2_PRAGMA[1..] {
            self.version = 2;
            self.state = State::V2Header;
            return Ok(());
        }
        let (version, roots) = decode_header(bytes).map_err(|why| header_error(inner, why))?;
        let version = version.ok_or_else(|| header_error(inner, "it has no version".into()))?;
        match (inner, version) {
            (_, 1) => {}
            (false, 2) => {
                return Err(CarError::V2HeaderLies {
                    why: "it says version 2 but is not the CARv2 pragma".into(),
                })
            }
            (false, v) => return Err(CarError::UnsupportedVersion { version: v }),
            (true, v) => {
                return Err(CarError::V2PayloadNotV1 {
                    at: after - bytes.len() as u64,
                    version: v,
                })
            }
        }
        let roots = roots.unwrap_or_default();
        if roots.is_empty() {
            return Err(CarError::NoRoots);
        }
        if !inner {
            self.version = 1;
        }
        found(CarItem::Header(CarHeader {
            version: self.version,
            roots,
        }));
        self.state = State::SectionLen;
        Ok(())
    }

    fn on_v2_header(&mut self, h: &[u8], after: u64) -> Result<(), CarError> {
        let le = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (offset, size, index) = (le(16), le(24), le(32));
        let lie = |why: String| Err(CarError::V2HeaderLies { why });
        if offset < after {
            return lie(format!(
                "the data offset {offset} is inside the pragma and header ({after} bytes)"
            ));
        }
        if size == 0 {
            return lie("the data size is 0 (a CARv1 payload has at least a header)".into());
        }
        let Some(end) = offset.checked_add(size) else {
            return lie(format!(
                "the data offset {offset} plus size {size} overflows"
            ));
        };
        if index != 0 && index < end {
            return lie(format!(
                "the index offset {index} is inside the data payload [{offset}, {end})"
            ));
        }
        self.payload = Some((offset, end));
        self.index_offset = index;
        self.state = if offset == after {
            State::HeaderLen { inner: true }
        } else {
            State::Skip { until: offset }
        };
        Ok(())
    }

    /// A block's data ended: check it and report it.
    fn end_block(&mut self, found: &mut dyn FnMut(CarItem)) -> Result<(), CarError> {
        let State::SectionData {
            cid,
            start,
            length,
            hash,
            ..
        } = std::mem::replace(&mut self.state, State::SectionLen)
        else {
            return Ok(());
        };
        let verified = match (*hash).check(cid.digest()) {
            Some(true) => true,
            Some(false) => {
                return Err(CarError::HashMismatch {
                    cid: cid.to_string(),
                    at: start,
                })
            }
            None => {
                self.unverified += 1;
                false
            }
        };
        self.blocks += 1;
        found(CarItem::Block(CarBlock {
            cid,
            offset: start,
            length,
            verified,
        }));
        Ok(())
    }
}

/// Whether `data` hashes to `cid`'s multihash: `None` for a hash we do not compute
/// (see the module docs).
pub fn block_matches(cid: &Cid, data: &[u8]) -> Option<bool> {
    let mut h = BlockHash::for_code(cid.prefix()?.mh_code);
    h.update(cid.digest(), data);
    h.check(cid.digest())
}

/// A CARv1 header block with `roots`, framed (its varint first): what starts a CARv1
/// and a CARv2's payload. dag-cbor map keys in length-first order: "roots", "version".
pub fn v1_header(roots: &[Cid]) -> Vec<u8> {
    let mut w = crate::wire::cbor::Writer::new();
    w.map(2).key("roots").array(roots.len() as u64);
    for r in roots {
        w.value(r);
    }
    w.key("version").uint(1);
    let header = w.into_bytes();
    let mut out = Vec::with_capacity(header.len() + 4);
    varint::put(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    out
}

/// What precedes a block's data in its section: the section's varint and the CID.
pub fn section_prefix(cid: &Cid, data_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(cid.as_bytes().len() + 4);
    varint::put(&mut out, cid.as_bytes().len() as u64 + data_len);
    out.extend_from_slice(cid.as_bytes());
    out
}

/// Move bytes from `buf` into `carry` until it holds `want`; how many were moved.
fn gather(carry: &mut Vec<u8>, buf: &[u8], want: usize) -> usize {
    let take = want.saturating_sub(carry.len()).min(buf.len());
    carry.extend_from_slice(&buf[..take]);
    take
}

/// The error for a header that does not decode: the outer one (not a CAR) or a
/// CARv2's payload's (the CARv2 header pointed at something else).
fn header_error(inner: bool, why: String) -> CarError {
    if inner {
        CarError::V2HeaderLies {
            why: format!("its data payload does not start with a CARv1 header: {why}"),
        }
    } else {
        CarError::NotCarHeader { why }
    }
}

/// The length of the CID at the start of `b`, once enough of it is there to tell:
/// `Ok(None)` when more bytes are needed.
fn cid_len(b: &[u8]) -> Result<Option<usize>, &'static str> {
    if b.len() >= 2 && b[0] == 0x12 && b[1] == 0x20 {
        return Ok(Some(34)); // CIDv0: a bare sha2-256 multihash
    }
    if b == [0x12] {
        return Ok(None); // a CIDv0 if 0x20 follows
    }
    let mut at = 0;
    let mut fields = [0u64; 4];
    for (i, field) in fields.iter_mut().enumerate() {
        match varint::get(&b[at..]) {
            Ok((v, n)) => {
                *field = v;
                at += n;
            }
            Err("varint truncated") if b.len() - at < 9 => return Ok(None),
            Err(e) => return Err(e),
        }
        if i == 0 && *field != 1 {
            return Err("the CID version is not 1 (nor is it a CIDv0)");
        }
    }
    let total = (at as u64).saturating_add(fields[3]);
    if total > MAX_CID as u64 {
        return Err("the CID is longer than 512 bytes");
    }
    Ok(Some(total as usize))
}

/// A CARv1 header's `version` and `roots` (a dag-cbor map; unknown keys skipped).
fn decode_header(bytes: &[u8]) -> Result<(Option<u64>, Option<Vec<Cid>>), String> {
    check_single_item(bytes, bytes.len()).map_err(|e| e.to_string())?;
    let mut r = Reader::new(bytes);
    let mut version = None;
    let mut roots = None;
    r.map_struct(|key, r| match key {
        "version" => {
            version = Some(r.uint()?);
            Ok(true)
        }
        "roots" => {
            let n = r.array(MAX_LENGTH)?;
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(Cid::read(r)?);
            }
            roots = Some(v);
            Ok(true)
        }
        _ => Ok(false),
    })
    .map_err(|e| e.to_string())?;
    Ok((version, roots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cid::{CODEC_DAG_CBOR, CODEC_DAG_PB, CODEC_RAW};

    const MH_BLAKE3: u64 = 0x1e;

    fn raw(data: &[u8]) -> Cid {
        Cid::v1(CODEC_RAW, MH_SHA2_256, &sha2::Sha256::digest(data))
    }

    /// A few blocks of every kind the reader distinguishes: CIDv1 raw sha2-256,
    /// dag-cbor blake2b-256, sha2-512, a truncated sha2-256, identity, a CIDv0, an empty
    /// raw block and one with a hash we do not compute (blake3).
    fn blocks() -> Vec<(Cid, Vec<u8>, bool)> {
        let a = b"hello".to_vec();
        let b = vec![0xa1, 0x61, 0x61, 0x01];
        let c = vec![7u8; 3000];
        let d = b"truncated digest".to_vec();
        let id = b"inline".to_vec();
        let v0data = vec![0x0a, 0x02, 0x08, 0x01];
        let mut v0 = vec![0x12, 0x20];
        v0.extend_from_slice(&sha2::Sha256::digest(&v0data));
        vec![
            (raw(&a), a, true),
            (Cid::dag_cbor_blake2b(&b), b, true),
            (
                Cid::v1(CODEC_RAW, MH_SHA2_512, &sha2::Sha512::digest(&c)),
                c,
                true,
            ),
            (
                Cid::v1(CODEC_RAW, MH_SHA2_256, &sha2::Sha256::digest(&d)[..20]),
                d,
                true,
            ),
            (Cid::v1(CODEC_RAW, MH_IDENTITY, &id), id, true),
            (Cid::from_bytes(&v0).unwrap(), v0data, true),
            (raw(b""), Vec::new(), true),
            (
                Cid::v1(CODEC_DAG_PB, MH_BLAKE3, &[9u8; 32]),
                vec![1, 2, 3],
                false,
            ),
        ]
    }

    /// A CARv1 of `blocks` with the first as root; and each block's data offset.
    fn car_v1(blocks: &[(Cid, Vec<u8>, bool)]) -> (Vec<u8>, Vec<u64>) {
        let mut car = v1_header(&[blocks[0].0.clone()]);
        let mut offsets = Vec::new();
        for (cid, data, _) in blocks {
            car.extend(section_prefix(cid, data.len() as u64));
            offsets.push(car.len() as u64);
            car.extend_from_slice(data);
        }
        (car, offsets)
    }

    /// `v1` wrapped as a CARv2: pragma, header, `pad` bytes, the payload, 5 bytes of
    /// padding and a (dummy) index.
    fn car_v2(v1: &[u8], pad: usize) -> Vec<u8> {
        let offset = (V2_PRAGMA.len() + V2_HEADER_LEN + pad) as u64;
        let size = v1.len() as u64;
        let index = offset + size + 5;
        let mut car = V2_PRAGMA.to_vec();
        car.extend_from_slice(&[0u8; 16]);
        car.extend_from_slice(&offset.to_le_bytes());
        car.extend_from_slice(&size.to_le_bytes());
        car.extend_from_slice(&index.to_le_bytes());
        car.extend(vec![0u8; pad]);
        car.extend_from_slice(v1);
        car.extend_from_slice(&[0u8; 5]);
        car.extend_from_slice(&[0x80, 0x08, 1, 2, 3]);
        car
    }

    /// Read `bytes` in chunks of `chunk` bytes.
    fn read(bytes: &[u8], chunk: usize) -> (Vec<CarItem>, Result<CarSummary, CarError>) {
        let mut r = CarReader::new();
        let mut items = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            if let Err(e) = r.push(c, &mut |i| items.push(i)) {
                return (items, Err(e));
            }
        }
        (items, r.finish())
    }

    fn read_err(bytes: &[u8]) -> CarError {
        let (_, r) = read(bytes, 1);
        let e = r.unwrap_err();
        for chunk in [2, 5, 64, bytes.len()] {
            assert_eq!(read(bytes, chunk).1.unwrap_err(), e, "chunk {chunk}");
        }
        e
    }

    #[test]
    fn v1_blocks_come_out_with_offsets_in_any_chunking() {
        let bs = blocks();
        let (car, offsets) = car_v1(&bs);
        for chunk in [1, 2, 3, 7, 64, 1000, car.len()] {
            let (items, done) = read(&car, chunk);
            let done = done.unwrap();
            assert_eq!(done.version, 1);
            assert_eq!(done.blocks, bs.len() as u64);
            assert_eq!(done.unverified, 1, "blake3");
            assert_eq!(done.bytes, car.len() as u64);
            assert_eq!(
                items[0],
                CarItem::Header(CarHeader {
                    version: 1,
                    roots: vec![bs[0].0.clone()]
                })
            );
            let found: Vec<CarBlock> = items[1..]
                .iter()
                .map(|i| match i {
                    CarItem::Block(b) => b.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(found.len(), bs.len());
            for ((b, (cid, data, verified)), offset) in found.iter().zip(&bs).zip(&offsets) {
                assert_eq!(&b.cid, cid);
                assert_eq!(b.offset, *offset);
                assert_eq!(b.length, data.len() as u64);
                assert_eq!(b.verified, *verified);
                let at = b.offset as usize;
                assert_eq!(&car[at..at + b.length as usize], &data[..]);
            }
        }
    }

    #[test]
    fn v2_payload_is_read_at_its_offset_and_the_index_is_not() {
        let bs = blocks();
        let (v1, v1_offsets) = car_v1(&bs);
        for pad in [0, 3] {
            let car = car_v2(&v1, pad);
            let base = (V2_PRAGMA.len() + V2_HEADER_LEN + pad) as u64;
            for chunk in [1, 9, car.len()] {
                let (items, done) = read(&car, chunk);
                let done = done.unwrap();
                assert_eq!(done.version, 2);
                assert_eq!(done.blocks, bs.len() as u64);
                assert!(
                    matches!(&items[0], CarItem::Header(h) if h.version == 2 && h.roots == vec![bs[0].0.clone()])
                );
                for (item, o) in items[1..].iter().zip(&v1_offsets) {
                    let CarItem::Block(b) = item else { panic!() };
                    assert_eq!(b.offset, base + o, "offsets count from the file's start");
                }
            }
        }
    }

    #[test]
    fn a_car_ends_only_after_a_whole_section() {
        let bs = blocks();
        let (car, offsets) = car_v1(&bs);
        let ends: Vec<u64> = offsets
            .iter()
            .zip(&bs)
            .map(|(o, (_, d, _))| o + d.len() as u64)
            .collect();
        let header_end = v1_header(&[bs[0].0.clone()]).len() as u64;
        for cut in 0..car.len() {
            let (_, r) = read(&car[..cut], 7);
            let boundary = cut as u64 == header_end || ends.contains(&(cut as u64));
            match r {
                Ok(_) => assert!(boundary, "{cut}: accepted"),
                Err(e) => {
                    assert!(!boundary, "{cut}: {e}");
                    let s = e.to_string();
                    assert!(
                        s.contains("truncated") || cut < 2 || e.is_not_car(),
                        "{cut}: {s}"
                    );
                }
            }
        }
        // A CARv2 cut anywhere in its payload: the header lies (or the data is short).
        let v2 = car_v2(&car, 0);
        let e = read_err(&v2[..v2.len() - 20]);
        assert!(matches!(e, CarError::V2PayloadPastEnd { .. }), "{e}");
        assert!(e
            .to_string()
            .contains("the header lies or the data is truncated"));
    }

    #[test]
    fn truncated_data_says_truncated() {
        let (car, _) = car_v1(&blocks());
        let e = read_err(&car[..car.len() - 1]);
        assert_eq!(
            e.to_string(),
            format!(
                "malformed CAR: truncated: the data ends at byte {} inside a block's data",
                car.len() - 1
            )
        );
    }

    #[test]
    fn bad_varints_are_named() {
        let bs = blocks();
        let mut car = v1_header(&[bs[0].0.clone()]);
        let at = car.len();
        // Non-minimal: 5 as two bytes.
        car.extend_from_slice(&[0x85, 0x00]);
        car.extend_from_slice(&[0; 5]);
        let e = read_err(&car);
        assert_eq!(
            e,
            CarError::BadVarint {
                at: at as u64,
                why: "varint not minimally encoded"
            }
        );
        assert_eq!(
            e.to_string(),
            format!("malformed CAR: bad varint at byte {at} (varint not minimally encoded)")
        );
        // Ten continuation bytes.
        let mut car = v1_header(&[bs[0].0.clone()]);
        car.extend_from_slice(&[0xff; 12]);
        assert!(matches!(read_err(&car), CarError::BadVarint { .. }));
        // The first varint: not a CAR at all.
        assert!(read_err(&[0xff; 12]).is_not_car());
    }

    #[test]
    fn a_block_that_does_not_hash_to_its_cid_is_refused() {
        let bs = blocks();
        let (mut car, offsets) = car_v1(&bs);
        car[offsets[2] as usize + 10] ^= 1; // the sha2-512 block
        let e = read_err(&car);
        assert_eq!(
            e,
            CarError::HashMismatch {
                cid: bs[2].0.to_string(),
                at: offsets[2]
            }
        );
        assert!(e.to_string().contains("does not hash to its CID"), "{e}");
        for i in [0, 1, 3, 4, 5] {
            let (mut car, offsets) = car_v1(&bs);
            if bs[i].1.is_empty() {
                continue;
            }
            car[offsets[i] as usize] ^= 0x40;
            assert!(
                matches!(read_err(&car), CarError::HashMismatch { .. }),
                "block {i}"
            );
        }
        // The unsupported hash is not checked: a changed byte still reads.
        let (mut car, offsets) = car_v1(&bs);
        car[offsets[7] as usize] ^= 1;
        assert!(read(&car, 3).1.is_ok());
    }

    #[test]
    fn headers_that_lie_or_lack_roots_are_refused() {
        let bs = blocks();
        let (v1, _) = car_v1(&bs);
        let good = car_v2(&v1, 2);
        let set = |at: usize, v: u64| {
            let mut c = good.clone();
            c[at..at + 8].copy_from_slice(&v.to_le_bytes());
            c
        };
        let (off, size, idx) = (11 + 16, 11 + 24, 11 + 32);
        let len = good.len() as u64;
        // Data offset beyond the file.
        let e = read_err(&set(off, len + 100));
        assert!(
            matches!(
                e,
                CarError::V2PayloadPastEnd { .. } | CarError::V2HeaderLies { .. }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("lies"), "{e}");
        // Data offset inside the header.
        let e = read_err(&set(off, 20));
        assert!(
            e.to_string().contains("inside the pragma and header"),
            "{e}"
        );
        // Data size past the file.
        let e = read_err(&set(size, len));
        assert!(e.to_string().contains("lies"), "{e}");
        // Data size that cuts a section.
        let e = read_err(&set(size, v1.len() as u64 - 1));
        assert!(matches!(e, CarError::PastPayload { .. }), "{e}");
        // Data size 0, overflowing, index inside the payload, index past the end.
        assert!(read_err(&set(size, 0))
            .to_string()
            .contains("data size is 0"));
        assert!(read_err(&set(size, u64::MAX))
            .to_string()
            .contains("overflows"));
        assert!(read_err(&set(idx, 60))
            .to_string()
            .contains("inside the data payload"));
        assert!(read_err(&set(idx, len + 1))
            .to_string()
            .contains("index offset"));
        // Data offset pointing into the middle of the payload: no CARv1 header there.
        let e = read_err(&set(off, 11 + 40 + 2 + 5));
        assert!(
            matches!(
                e,
                CarError::V2HeaderLies { .. } | CarError::V2PayloadPastEnd { .. }
            ),
            "{e}"
        );

        // Roots missing or empty.
        let mut w = crate::wire::cbor::Writer::new();
        w.map(1).key("version").uint(1);
        let h = w.into_bytes();
        let mut car = vec![h.len() as u8];
        car.extend_from_slice(&h);
        assert_eq!(read_err(&car), CarError::NoRoots);
        let mut car = v1_header(&[]);
        car.extend(section_prefix(&bs[0].0, 5));
        car.extend_from_slice(b"hello");
        assert_eq!(read_err(&car), CarError::NoRoots);
        assert_eq!(
            CarError::NoRoots.to_string(),
            "malformed CAR: the header has no roots (a CARv1 header needs one or more)"
        );
        // Version 3.
        let mut w = crate::wire::cbor::Writer::new();
        w.map(1).key("version").uint(3);
        let h = w.into_bytes();
        let mut car = vec![h.len() as u8];
        car.extend_from_slice(&h);
        assert_eq!(read_err(&car), CarError::UnsupportedVersion { version: 3 });
    }

    #[test]
    fn sections_that_break_the_format_are_named() {
        let bs = blocks();
        let header = v1_header(&[bs[0].0.clone()]);
        let with = |tail: &[u8]| {
            let mut c = header.clone();
            c.extend_from_slice(tail);
            c
        };
        assert!(matches!(
            read_err(&with(&[0])),
            CarError::EmptySection { .. }
        ));
        let mut huge = Vec::new();
        varint::put(&mut huge, MAX_SECTION + 1);
        assert!(matches!(
            read_err(&with(&huge)),
            CarError::SectionTooLarge { .. }
        ));
        // A CID version 2, and a CID longer than its section.
        assert!(matches!(
            read_err(&with(&[4, 2, 0x55, 0, 0])),
            CarError::BadCid { .. }
        ));
        let e = read_err(&with(&[3, 1, 0x55, 0x12, 0x20]));
        assert!(matches!(e, CarError::CidPastSection { .. }), "{e}");
        // A multihash claiming a huge digest.
        let e = read_err(&with(&[0x90, 0x04, 1, 0x55, 0x12, 0xff, 0x7f]));
        assert!(matches!(e, CarError::BadCid { .. }), "{e}");
    }

    #[test]
    fn other_data_is_not_a_car() {
        for data in [
            &b""[..],
            b"hello world, this is a text file, not a CAR",
            &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a],
            &[0x03, 0x01, 0x02, 0x03],
            &[0x05, 0x61, 0x61],
        ] {
            let e = read_err(data);
            assert!(e.is_not_car(), "{data:?}: {e}");
            assert!(e.to_string().starts_with("not a CAR"), "{e}");
        }
        // A map that ends early is a truncated CAR, not other data.
        let (car, _) = car_v1(&blocks());
        let e = read_err(&car[..5]);
        assert!(!e.is_not_car(), "{e}");
    }

    #[test]
    fn single_blocks_are_checked_against_their_cids() {
        for (cid, data, verified) in blocks() {
            assert_eq!(
                block_matches(&cid, &data),
                verified.then_some(true),
                "{cid}"
            );
            if verified && !data.is_empty() {
                let mut bad = data.clone();
                bad[0] ^= 1;
                assert_eq!(block_matches(&cid, &bad), Some(false), "{cid}");
            }
        }
    }

    #[test]
    fn an_error_sticks() {
        let mut r = CarReader::new();
        let e = r.push(&[0xff; 12], &mut |_| {}).unwrap_err();
        assert_eq!(r.push(b"more", &mut |_| {}).unwrap_err(), e);
        assert_eq!(r.finish().unwrap_err(), e);
    }

    #[test]
    fn multihashes_and_cids_round_trip() {
        for (cid, _, _) in blocks() {
            let mh = cid.multihash();
            let p = cid.prefix().unwrap();
            if p.version == 1 {
                assert_eq!(Cid::from_multihash(p.codec, mh), Some(cid.clone()));
            } else {
                assert_eq!(mh, cid.as_bytes());
            }
        }
        assert_eq!(Cid::from_multihash(CODEC_DAG_CBOR, &[0x12, 0x20, 1]), None);
    }

    proptest::proptest! {
        #[test]
        fn no_byte_sequence_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), chunk in 1usize..40) {
            let _ = read(&bytes, chunk);
        }

        #[test]
        fn a_damaged_car_never_panics_and_chunking_does_not_change_the_answer(
            flips in proptest::collection::vec((0usize..4000, proptest::prelude::any::<u8>()), 1..4),
            chunk in 1usize..50,
        ) {
            let (mut car, _) = car_v1(&blocks());
            for (at, b) in flips {
                let n = car.len();
                car[at % n] ^= b;
            }
            let whole = read(&car, car.len());
            let chunked = read(&car, chunk);
            proptest::prop_assert_eq!(whole, chunked);
        }
    }
}
