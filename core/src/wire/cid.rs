//! CIDs as cbor-gen carries them: tag 42 around a byte string `0x00 ‖ binary CID`.
//!
//! Kept as raw bytes with our own parser (not the `cid` crate) so that anything
//! go-cid accepts decodes here too, including digests longer than 64 bytes.
use super::address::{base32_decode, base32_lower};
use super::cbor::{Cbor, Reader, Writer};
use super::error::{ErrorKind, WireError};
use super::varint;
use sha2::Digest;
use std::fmt;

/// Longest CID accepted on decode (cbor-gen `ReadCid`), including the leading 0x00.
pub const MAX_CID_LEN: u64 = 512;
pub const CBOR_TAG_CID: u64 = 42;
/// The error for tag 42 around a lone 0x00: what an undefined CID encodes to here.
pub const UNDEFINED_CID: &str = "cid is undefined";

pub const CODEC_DAG_CBOR: u64 = 0x71;
pub const CODEC_DAG_PB: u64 = 0x70;
pub const CODEC_RAW: u64 = 0x55;
pub const CODEC_FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
pub const MH_SHA2_256: u64 = 0x12;
pub const MH_BLAKE2B_256: u64 = 0xb220;
pub const MH_SHA2_256_TRUNC254_PADDED: u64 = 0x1012;

/// A CID. The default value is Go's `cid.Undef` (no bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Cid {
    bytes: Vec<u8>,
}

/// The parts of a CID's binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub version: u64,
    pub codec: u64,
    pub mh_code: u64,
    pub mh_len: u64,
}

impl Cid {
    /// A CIDv1 from its codec and multihash.
    pub fn v1(codec: u64, mh_code: u64, digest: &[u8]) -> Cid {
        let mut bytes = Vec::with_capacity(8 + digest.len());
        varint::put(&mut bytes, 1);
        varint::put(&mut bytes, codec);
        varint::put(&mut bytes, mh_code);
        varint::put(&mut bytes, digest.len() as u64);
        bytes.extend_from_slice(digest);
        Cid { bytes }
    }

    /// dag-cbor + sha2-256 over `data` (go-ipld-cbor's default; Boost's SignedProposalCid).
    pub fn dag_cbor_sha256(data: &[u8]) -> Cid {
        Cid::v1(CODEC_DAG_CBOR, MH_SHA2_256, &sha2::Sha256::digest(data))
    }

    /// dag-cbor + blake2b-256 over `data` (the chain's CIDs, e.g. a DealProposal's).
    pub fn dag_cbor_blake2b(data: &[u8]) -> Cid {
        let h = blake2b_simd::Params::new().hash_length(32).hash(data);
        Cid::v1(CODEC_DAG_CBOR, MH_BLAKE2B_256, h.as_bytes())
    }

    /// Validate a binary CID as go-cid `Cast` does (no trailing bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Cid, &'static str> {
        parse_prefix(bytes)?;
        Ok(Cid {
            bytes: bytes.to_vec(),
        })
    }

    pub fn is_undef(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn prefix(&self) -> Option<Prefix> {
        parse_prefix(&self.bytes).ok().map(|(p, _)| p)
    }

    /// The multihash digest.
    pub fn digest(&self) -> &[u8] {
        match parse_prefix(&self.bytes) {
            Ok((_, at)) => &self.bytes[at..],
            Err(_) => &[],
        }
    }

    /// The multihash (hash code, digest length, digest): the whole of a CIDv0, what
    /// follows the version and codec of a CIDv1; empty for an undefined CID.
    pub fn multihash(&self) -> &[u8] {
        match parse_prefix(&self.bytes) {
            Ok((p, _)) if p.version == 0 => &self.bytes,
            Ok(_) => {
                let (_, a) = varint::get(&self.bytes).unwrap_or((0, 0));
                let (_, b) = varint::get(&self.bytes[a..]).unwrap_or((0, 0));
                &self.bytes[a + b..]
            }
            Err(_) => &[],
        }
    }

    /// A CIDv1 of `codec` over the whole multihash `mh`; `None` if `mh` is not exactly
    /// one multihash.
    pub fn from_multihash(codec: u64, mh: &[u8]) -> Option<Cid> {
        let mut bytes = Vec::with_capacity(mh.len() + 4);
        varint::put(&mut bytes, 1);
        varint::put(&mut bytes, codec);
        bytes.extend_from_slice(mh);
        Cid::from_bytes(&bytes).ok()
    }

    /// Parse the usual string forms: base32 `b…` (CIDv1) and base58 `Qm…` (CIDv0).
    pub fn parse(s: &str) -> Result<Cid, &'static str> {
        let bytes = if s.len() == 46 && s.starts_with("Qm") {
            bs58::decode(s).into_vec().map_err(|_| "invalid base58")?
        } else if let Some(rest) = s.strip_prefix('b') {
            base32_decode(rest).ok_or("invalid base32")?
        } else if let Some(rest) = s.strip_prefix('z') {
            bs58::decode(rest)
                .into_vec()
                .map_err(|_| "invalid base58")?
        } else {
            return Err("unsupported multibase (expected b… or Qm…)");
        };
        Cid::from_bytes(&bytes)
    }
}

/// Parse `bytes` as a whole binary CID, returning its prefix and the digest offset.
fn parse_prefix(bytes: &[u8]) -> Result<(Prefix, usize), &'static str> {
    if bytes.len() == 34 && bytes[0] == 0x12 && bytes[1] == 0x20 {
        let p = Prefix {
            version: 0,
            codec: CODEC_DAG_PB,
            mh_code: MH_SHA2_256,
            mh_len: 32,
        };
        return Ok((p, 2));
    }
    let (version, a) = varint::get(bytes)?;
    if version != 1 {
        return Err("expected 1 as the cid version number");
    }
    let (codec, b) = varint::get(&bytes[a..])?;
    let (mh_code, c) = varint::get(&bytes[a + b..])?;
    let (mh_len, d) = varint::get(&bytes[a + b + c..])?;
    let at = a + b + c + d;
    if (bytes.len() - at) as u64 != mh_len {
        return Err("multihash length does not match its digest");
    }
    Ok((
        Prefix {
            version,
            codec,
            mh_code,
            mh_len,
        },
        at,
    ))
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix() {
            None => f.write_str("b"),
            Some(p) if p.version == 0 => f.write_str(&bs58::encode(&self.bytes).into_string()),
            Some(_) => write!(f, "b{}", base32_lower(&self.bytes)),
        }
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl std::str::FromStr for Cid {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cid::parse(s)
    }
}

impl Cbor for Cid {
    const NAME: &'static str = "Cid";
    fn write(&self, w: &mut Writer) {
        // An undefined CID cannot be encoded by Go; we write tag 42 around a lone
        // 0x00, which only ever happens when echoing an incomplete request back.
        let mut payload = Vec::with_capacity(self.bytes.len() + 1);
        payload.push(0);
        payload.extend_from_slice(&self.bytes);
        w.tag(CBOR_TAG_CID).bytes(&payload);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let tag = r.tag()?;
        if tag != CBOR_TAG_CID {
            return Err(WireError::at("", ErrorKind::WrongTag(tag)));
        }
        let b = r.bytes(MAX_CID_LEN)?;
        match b.split_first() {
            None => Err(WireError::at(
                "",
                ErrorKind::InvalidCid("serialized cids must not be empty"),
            )),
            Some((0, [])) => Err(WireError::at("", ErrorKind::InvalidCid(UNDEFINED_CID))),
            Some((0, rest)) => {
                Cid::from_bytes(rest).map_err(|e| WireError::at("", ErrorKind::InvalidCid(e)))
            }
            Some(_) => Err(WireError::at(
                "",
                ErrorKind::InvalidCid("invalid cbor cid: expected 0 byte"),
            )),
        }
    }
}
