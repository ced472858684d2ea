//! RLE+ bitfields (go-bitfield / fvm_ipld_bitfield), read-only: the market actor's
//! `PublishStorageDealsReturn.ValidDeals` says which deals of a publish message it took.
//!
//! The format (filecoin-project/specs, "RLE+ Bitset Encoding"): bits are read from each
//! byte least significant first; two version bits `00`; one bit, the value of the first
//! run; then run lengths, alternating values, each as `1` (length 1), `01` + 4 bits
//! (2..=15) or `00` + a LEB128 varint (>= 16). The rules go-bitfield enforces carry over:
//! no trailing zero byte, minimal run encodings, no trailing run of zeros, lengths that do
//! not overflow u64, at most 32 KiB encoded.
use super::error::ErrorKind;

/// fvm_ipld_bitfield's `MAX_ENCODED_SIZE`.
pub const MAX_ENCODED_SIZE: usize = 32 << 10;

/// A decoded bitfield: the half-open ranges of set bits, ascending and disjoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitField {
    ranges: Vec<(u64, u64)>,
}

impl BitField {
    /// Decode RLE+ bytes.
    pub fn from_rle(bytes: &[u8]) -> Result<BitField, ErrorKind> {
        let bad = ErrorKind::InvalidBitField;
        if bytes.len() > MAX_ENCODED_SIZE {
            return Err(bad("encoded bitfield too large"));
        }
        if bytes.last() == Some(&0) {
            return Err(bad("not minimally encoded (trailing zero byte)"));
        }
        let mut bits = Bits { bytes, pos: 0 };
        if bytes.is_empty() {
            return Ok(BitField::default());
        }
        if bits.take(2) != 0 {
            return Err(bad("unsupported version"));
        }
        let mut value = bits.take(1) == 1;
        let (mut index, mut ranges) = (0u64, Vec::new());
        while bits.has_more() {
            let len = bits.run_length()?;
            let end = index
                .checked_add(len)
                .ok_or(bad("run lengths overflow u64"))?;
            if value {
                ranges.push((index, end));
            }
            index = end;
            value = !value;
        }
        if value {
            // The last run read was zeros: go-bitfield refuses a trailing zero run.
            return Err(bad("not minimally encoded (trailing run of zeros)"));
        }
        Ok(BitField { ranges })
    }

    /// A bitfield with exactly these bits set (any order, duplicates allowed).
    pub fn from_bits(bits: impl IntoIterator<Item = u64>) -> BitField {
        let mut sorted: Vec<u64> = bits.into_iter().collect();
        sorted.retain(|&b| b < u64::MAX);
        sorted.sort_unstable();
        sorted.dedup();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for b in sorted {
            match ranges.last_mut() {
                Some((_, end)) if *end == b => *end = b + 1,
                _ => ranges.push((b, b.saturating_add(1))),
            }
        }
        BitField { ranges }
    }

    /// The minimal RLE+ encoding (what go-bitfield writes).
    pub fn to_rle(&self) -> Vec<u8> {
        let Some(&(first, _)) = self.ranges.first() else {
            return Vec::new();
        };
        let mut out = BitWriter::default();
        out.put(0, 2);
        out.put(u64::from(first == 0), 1);
        let mut at = 0;
        for &(start, end) in &self.ranges {
            if start > at {
                out.run(start - at);
            }
            out.run(end - start);
            at = end;
        }
        let mut bytes = out.bytes;
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        bytes
    }

    pub fn contains(&self, i: u64) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= i && i < e)
    }

    /// How many bits are set (saturating).
    pub fn count(&self) -> u64 {
        self.ranges
            .iter()
            .fold(0u64, |n, &(s, e)| n.saturating_add(e - s))
    }

    /// The ranges of set bits, `[start, end)`.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }
}

/// A bit cursor over the bytes, least significant bit first; zeros past the end.
struct Bits<'a> {
    bytes: &'a [u8],
    pos: u64,
}

impl Bits<'_> {
    fn bit(&self, at: u64) -> u64 {
        let byte = self.bytes.get((at / 8) as usize).copied().unwrap_or(0);
        u64::from((byte >> (at % 8)) & 1)
    }

    /// Read `n <= 8` bits as a little-endian number.
    fn take(&mut self, n: u64) -> u64 {
        let v = (0..n).fold(0, |v, i| v | (self.bit(self.pos + i) << i));
        self.pos += n;
        v
    }

    /// Whether any set bit remains (the rest is implicit zeros).
    fn has_more(&self) -> bool {
        let byte = (self.pos / 8) as usize;
        match self.bytes.get(byte) {
            None => false,
            Some(b) => (b >> (self.pos % 8)) != 0 || byte + 1 < self.bytes.len(),
        }
    }

    fn run_length(&mut self) -> Result<u64, ErrorKind> {
        let bad = ErrorKind::InvalidBitField;
        if self.take(1) == 1 {
            return Ok(1);
        }
        if self.take(1) == 1 {
            let v = self.take(4);
            return if v < 2 {
                Err(bad("not minimally encoded (short run below 2)"))
            } else {
                Ok(v)
            };
        }
        let v = self.varint()?;
        if v < 16 {
            return Err(bad("not minimally encoded (long run below 16)"));
        }
        Ok(v)
    }

    /// LEB128 of at most 10 bytes; the last byte non-zero unless it is the only one.
    fn varint(&mut self) -> Result<u64, ErrorKind> {
        let mut v = 0u64;
        for i in 0..10u64 {
            let byte = self.take(8);
            v |= (byte & 0x7f) << (i * 7).min(63);
            if byte & 0x80 == 0 {
                if (i == 9 && byte > 1) || (byte == 0 && i != 0) {
                    break;
                }
                return Ok(v);
            }
        }
        Err(ErrorKind::InvalidBitField("invalid varint"))
    }
}

/// Bits appended least significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    len: u64,
}

impl BitWriter {
    fn put(&mut self, value: u64, n: u64) {
        for i in 0..n {
            if self.len.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 1 << (self.len % 8);
            }
            self.len += 1;
        }
    }

    fn run(&mut self, len: u64) {
        match len {
            1 => self.put(1, 1),
            2..=15 => {
                self.put(0b10, 2);
                self.put(len, 4);
            }
            _ => {
                self.put(0, 2);
                let mut v = len;
                loop {
                    let low = v & 0x7f;
                    v >>= 7;
                    if v == 0 {
                        self.put(low, 8);
                        break;
                    }
                    self.put(low | 0x80, 8);
                }
            }
        }
    }
}
