//! Small Filecoin values: token amounts, signatures, deal labels, deal UUIDs, piece sizes.
use super::cbor::{Cbor, Reader, Writer, BYTE_ARRAY_MAX_LEN};
use super::error::{ErrorKind, WireError};
use num_bigint::{BigInt, Sign};
use num_traits::Zero;
use std::fmt;

/// Longest big-int byte string accepted (go-state-types `BigIntMaxSerializedLen`).
pub const BIGINT_MAX_LEN: u64 = 128;
/// Longest signature byte string accepted, type byte included.
pub const SIGNATURE_MAX_LEN: u64 = 200;

/// attoFIL, or any Filecoin big integer (`big.Int`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TokenAmount(pub BigInt);

impl TokenAmount {
    pub fn zero() -> Self {
        TokenAmount(BigInt::zero())
    }
    pub fn from_u64(v: u64) -> Self {
        TokenAmount(BigInt::from(v))
    }
    /// Go's byte form: empty for zero, else sign byte and big-endian magnitude.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (sign, mag) = self.0.to_bytes_be();
        match sign {
            Sign::NoSign => Vec::new(),
            Sign::Plus | Sign::Minus => {
                let mut out = Vec::with_capacity(mag.len() + 1);
                out.push(u8::from(sign == Sign::Minus));
                out.extend_from_slice(&mag);
                out
            }
        }
    }
    /// go-state-types `big.FromBytes` (leading zero bytes are accepted).
    pub fn from_bytes(b: &[u8]) -> Result<Self, &'static str> {
        let Some((&sign, mag)) = b.split_first() else {
            return Ok(TokenAmount::zero());
        };
        let sign = match sign {
            0 => Sign::Plus,
            1 => Sign::Minus,
            _ => return Err("big int prefix should be either 0 or 1"),
        };
        Ok(TokenAmount(BigInt::from_bytes_be(sign, mag)))
    }
}

impl fmt::Display for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Cbor for TokenAmount {
    const NAME: &'static str = "BigInt";
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.to_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let b = r.bytes(BIGINT_MAX_LEN)?;
        TokenAmount::from_bytes(b).map_err(|e| WireError::at("", ErrorKind::InvalidBigInt(e)))
    }
}

/// Signature type bytes (go-state-types `crypto.SigType`).
pub const SIG_SECP256K1: u8 = 1;
pub const SIG_BLS: u8 = 2;
pub const SIG_DELEGATED: u8 = 3;

/// go-state-types' error for an unknown signature type (the zero value's type 0 too).
pub const INVALID_SIG_TYPE: &str = "invalid signature type in cbor input";

/// `crypto.Signature`: one type byte, then the signature data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Signature {
    pub sig_type: u8,
    pub data: Vec<u8>,
}

impl Signature {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.data.len());
        out.push(self.sig_type);
        out.extend_from_slice(&self.data);
        out
    }
    pub fn from_bytes(b: &[u8]) -> Result<Self, &'static str> {
        let (&t, data) = b.split_first().ok_or("string was empty")?;
        if !matches!(t, SIG_SECP256K1 | SIG_BLS | SIG_DELEGATED) {
            return Err(INVALID_SIG_TYPE);
        }
        Ok(Signature {
            sig_type: t,
            data: data.to_vec(),
        })
    }
}

impl Cbor for Signature {
    const NAME: &'static str = "Signature";
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.to_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let b = r.bytes(SIGNATURE_MAX_LEN)?;
        Signature::from_bytes(b).map_err(|e| WireError::at("", ErrorKind::InvalidSignature(e)))
    }
}

/// `market.DealLabel`: a text or a byte string. The zero value is the empty text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DealLabel {
    Text(String),
    Bytes(Vec<u8>),
}

impl Default for DealLabel {
    fn default() -> Self {
        DealLabel::Text(String::new())
    }
}

impl DealLabel {
    /// Length in bytes, as the 256-byte label rule counts it.
    pub fn len(&self) -> usize {
        match self {
            DealLabel::Text(s) => s.len(),
            DealLabel::Bytes(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Cbor for DealLabel {
    const NAME: &'static str = "DealLabel";
    fn write(&self, w: &mut Writer) {
        match self {
            DealLabel::Text(s) => w.str(s),
            DealLabel::Bytes(b) => w.bytes(b),
        };
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        if r.peek_is(2) {
            return Ok(DealLabel::Bytes(r.bytes(BYTE_ARRAY_MAX_LEN)?.to_vec()));
        }
        let raw = r.text_raw(BYTE_ARRAY_MAX_LEN)?;
        let s = std::str::from_utf8(raw).map_err(|_| WireError::at("", ErrorKind::LabelNotUtf8))?;
        Ok(DealLabel::Text(s.to_owned()))
    }
}

/// A deal's UUID: 16 raw bytes on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DealUuid(pub [u8; 16]);

impl DealUuid {
    /// Parse the hyphenated (or plain 32-hex-digit) form.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
        if hex.len() != 32 || (s.len() != 32 && s.len() != 36) {
            return Err("a deal UUID has 32 hex digits");
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let hi = (pair[0] as char)
                .to_digit(16)
                .ok_or("invalid hex digit in UUID")?;
            let lo = (pair[1] as char)
                .to_digit(16)
                .ok_or("invalid hex digit in UUID")?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(DealUuid(out))
    }
}

impl fmt::Display for DealUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DealUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DealUuid({self})")
    }
}

impl std::str::FromStr for DealUuid {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DealUuid::parse(s)
    }
}

impl Cbor for DealUuid {
    const NAME: &'static str = "UUID";
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let b = r.bytes(BYTE_ARRAY_MAX_LEN)?;
        let arr: [u8; 16] = b.try_into().map_err(|_| {
            WireError::at(
                "",
                ErrorKind::WrongLength {
                    expected: 16,
                    len: b.len() as u64,
                },
            )
        })?;
        Ok(DealUuid(arr))
    }
}

/// go-padreader `PaddedSize(n).Padded()`: the padded piece size that holds `n`
/// unpadded bytes (fr32 expansion, rounded up to a power of two). `None` on overflow.
pub fn padded_piece_size(n: u64) -> Option<u64> {
    if n <= 127 {
        return Some(128);
    }
    let padded = n.checked_add(126)? / 127 * 128;
    if padded.is_power_of_two() {
        Some(padded)
    } else {
        padded.checked_next_power_of_two()
    }
}

/// go-state-types `PaddedPieceSize.Validate()`.
pub fn validate_padded_piece_size(p: u64) -> Result<(), &'static str> {
    if p < 128 {
        return Err("minimum padded piece size is 128 bytes");
    }
    if !p.is_power_of_two() {
        return Err("padded piece size must be a power of 2");
    }
    Ok(())
}

/// Unpadded capacity of a padded piece (`p - p/128`).
pub fn unpadded(p: u64) -> u64 {
    p - p / 128
}
