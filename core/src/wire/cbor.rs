//! Strict CBOR reading and canonical writing, as cbor-gen does both.
//!
//! Reading: every input first passes the framer's walk (minimal headers, definite
//! lengths, bounded depth, nothing after the item); the [`Reader`] then pulls typed
//! values out of bytes that are known to be well formed. Writing goes through
//! minicbor's encoder, which always emits minimal headers.
use super::error::{ErrorKind, WireError, Within};
use super::framer::{check_single_item, read_header, Framer, Header};

/// cbor-gen's `MaxLength`: limit on map entries, array elements and string fields.
pub const MAX_LENGTH: u64 = 8192;
/// cbor-gen's `ByteArrayMaxLen`: limit on `[]byte` fields.
pub const BYTE_ARRAY_MAX_LEN: u64 = 2 << 20;

/// A value that has a cbor-gen compatible encoding.
pub trait Cbor: Sized {
    /// The Go type name, used as the root of error paths.
    const NAME: &'static str;

    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError>;

    /// Canonical bytes, exactly as a Go peer would write them.
    fn to_cbor(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Decode exactly one item that fills `bytes`, as strictly as cbor-gen.
    fn from_cbor(bytes: &[u8]) -> Result<Self, WireError> {
        check_single_item(bytes, bytes.len()).map_err(|e| WireError::at("", e.into()))?;
        let mut r = Reader::new(bytes);
        Self::read(&mut r).within(Self::NAME)
    }
}

/// Typed reads over a well-formed item. See the module docs.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn header(&mut self) -> Result<Header, WireError> {
        match read_header(self.buf, self.pos) {
            Ok(Some(h)) => {
                self.pos += h.len;
                Ok(h)
            }
            Ok(None) => Err(WireError::at(
                "",
                super::framer::FrameError::Truncated.into(),
            )),
            Err(e) => Err(WireError::at("", e.into())),
        }
    }

    fn peek_major(&self) -> Option<u8> {
        self.buf.get(self.pos).map(|b| b >> 5)
    }

    fn expect(&mut self, major: u8, expected: &'static str) -> Result<Header, WireError> {
        let h = self.header()?;
        if h.major != major {
            return Err(WireError::at(
                "",
                ErrorKind::WrongType {
                    expected,
                    found: h.major,
                },
            ));
        }
        Ok(h)
    }

    fn payload(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| WireError::at("", super::framer::FrameError::Truncated.into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A pointer field: null (absent) or the value.
    pub fn opt<T: Cbor>(&mut self) -> Result<Option<T>, WireError> {
        if self.null() {
            return Ok(None);
        }
        T::read(self).map(Some)
    }

    /// `true` (and consumed) if the next item is CBOR null.
    pub fn null(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            return true;
        }
        false
    }

    pub fn uint(&mut self) -> Result<u64, WireError> {
        Ok(self.expect(0, "unsigned int")?.arg)
    }

    pub fn int(&mut self) -> Result<i64, WireError> {
        let h = self.header()?;
        let v = i64::try_from(h.arg).map_err(|_| WireError::at("", ErrorKind::IntOverflow))?;
        match h.major {
            0 => Ok(v),
            1 => Ok(-1 - v),
            found => Err(WireError::at(
                "",
                ErrorKind::WrongType {
                    expected: "integer",
                    found,
                },
            )),
        }
    }

    pub fn bool(&mut self) -> Result<bool, WireError> {
        let h = self.expect(7, "bool")?;
        match (h.info, h.arg) {
            (20, _) => Ok(false),
            (21, _) => Ok(true),
            (_, v) => Err(WireError::at("", ErrorKind::InvalidBool(v))),
        }
    }

    /// A byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: u64) -> Result<&'a [u8], WireError> {
        let h = self.expect(2, "byte string")?;
        if h.arg > max {
            return Err(WireError::at(
                "",
                ErrorKind::TooLong {
                    what: "byte string",
                    len: h.arg,
                    max,
                },
            ));
        }
        self.payload(h.arg)
    }

    /// A text string of at most `max` bytes, raw (Go does not check UTF-8).
    pub fn text_raw(&mut self, max: u64) -> Result<&'a [u8], WireError> {
        let h = self.expect(3, "text string")?;
        if h.arg > max {
            return Err(WireError::at(
                "",
                ErrorKind::TooLong {
                    what: "string",
                    len: h.arg,
                    max,
                },
            ));
        }
        self.payload(h.arg)
    }

    /// A string field (limit 8192 bytes); invalid UTF-8 is replaced, never rejected.
    pub fn string(&mut self) -> Result<String, WireError> {
        Ok(String::from_utf8_lossy(self.text_raw(MAX_LENGTH)?).into_owned())
    }

    /// An array header with at most `max` elements; returns the count.
    pub fn array(&mut self, max: u64) -> Result<u64, WireError> {
        let h = self.expect(4, "array")?;
        if h.arg > max {
            return Err(WireError::at("", ErrorKind::ArrayTooLarge(h.arg)));
        }
        Ok(h.arg)
    }

    /// An array header that must have exactly `n` elements (tuple structs).
    pub fn tuple(&mut self, n: u64) -> Result<(), WireError> {
        let h = self.expect(4, "array")?;
        if h.arg != n {
            return Err(WireError::at(
                "",
                ErrorKind::WrongFieldCount {
                    expected: n,
                    found: h.arg,
                },
            ));
        }
        Ok(())
    }

    pub fn tag(&mut self) -> Result<u64, WireError> {
        Ok(self.expect(6, "tag")?.arg)
    }

    /// Skip one whole item (an unknown field's value).
    pub fn skip(&mut self) -> Result<(), WireError> {
        let rest = &self.buf[self.pos..];
        match Framer::new(rest.len()).advance(rest) {
            Ok(super::framer::Frame::Complete(n)) => {
                self.pos += n;
                Ok(())
            }
            Ok(super::framer::Frame::NeedMore) => Err(WireError::at(
                "",
                super::framer::FrameError::Truncated.into(),
            )),
            Err(e) => Err(WireError::at("", e.into())),
        }
    }

    /// Walk a map-encoded struct the way cbor-gen does: keys in any order, unknown
    /// keys skipped, missing keys left at their zero value, duplicates last-wins.
    /// `field` reads the value for a known key and returns `false` for unknown ones
    /// (without consuming anything).
    pub fn map_struct(
        &mut self,
        mut field: impl FnMut(&str, &mut Reader<'a>) -> Result<bool, WireError>,
    ) -> Result<(), WireError> {
        let h = self.header()?;
        if h.major != 5 {
            return Err(WireError::at(
                "",
                ErrorKind::WrongType {
                    expected: "map",
                    found: h.major,
                },
            ));
        }
        if h.arg > MAX_LENGTH {
            return Err(WireError::at("", ErrorKind::MapTooLarge(h.arg)));
        }
        for _ in 0..h.arg {
            let key = self.text_raw(MAX_LENGTH)?;
            // Field names are ASCII; a non-UTF-8 key cannot match one, so skip it.
            let known = match std::str::from_utf8(key) {
                Ok(name) => field(name, self).within(name)?,
                Err(_) => false,
            };
            if !known {
                self.skip()?;
            }
        }
        Ok(())
    }

    pub fn peek_is(&self, major: u8) -> bool {
        self.peek_major() == Some(major)
    }
}

/// Canonical writer over minicbor's encoder (minimal headers, definite lengths).
#[derive(Debug)]
pub struct Writer {
    enc: minicbor::Encoder<Vec<u8>>,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

// Writing into a Vec cannot fail (minicbor's write error for it is `Infallible`),
// so the results carry no information.
macro_rules! infallible {
    ($e:expr) => {
        let _ = $e;
    };
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            enc: minicbor::Encoder::new(Vec::new()),
        }
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.enc.into_writer()
    }
    pub fn map(&mut self, n: u64) -> &mut Self {
        infallible!(self.enc.map(n));
        self
    }
    pub fn array(&mut self, n: u64) -> &mut Self {
        infallible!(self.enc.array(n));
        self
    }
    /// A map key (text string).
    pub fn key(&mut self, k: &str) -> &mut Self {
        infallible!(self.enc.str(k));
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        infallible!(self.enc.str(s));
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        infallible!(self.enc.bytes(b));
        self
    }
    pub fn uint(&mut self, v: u64) -> &mut Self {
        infallible!(self.enc.u64(v));
        self
    }
    pub fn int(&mut self, v: i64) -> &mut Self {
        infallible!(self.enc.i64(v));
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        infallible!(self.enc.bool(v));
        self
    }
    pub fn null(&mut self) -> &mut Self {
        infallible!(self.enc.null());
        self
    }
    pub fn tag(&mut self, t: u64) -> &mut Self {
        infallible!(self.enc.tag(minicbor::data::Tag::new(t)));
        self
    }
    pub fn value<T: Cbor>(&mut self, v: &T) -> &mut Self {
        v.write(self);
        self
    }
    /// A pointer field: the value, or null when absent.
    pub fn opt<T: Cbor>(&mut self, v: &Option<T>) -> &mut Self {
        match v {
            Some(v) => self.value(v),
            None => self.null(),
        }
    }
}
