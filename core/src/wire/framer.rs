//! The one-item framer: finds where a single CBOR data item ends in a byte stream.
//!
//! MK12 peers write exactly one raw CBOR item per direction, with no length prefix,
//! and never half-close first. So the reader must know, from the bytes alone, when
//! the item is complete. The framer walks the item incrementally: the caller keeps
//! appending what it received and calls [`Framer::advance`] with the whole buffer;
//! the framer resumes where it stopped and never re-scans.
//!
//! It enforces cbor-gen's header rules on the way (minimal-length arguments, no
//! indefinite lengths, no reserved additional-info values), bounds nesting depth,
//! and caps the item size so a hostile peer cannot make us buffer without bound.
//! Everything that reaches a message decoder has passed through this walk.

/// Default cap on one MK12 message: Transfer.Params may be 2 MiB, so 4 MiB leaves room.
pub const DEFAULT_MAX_ITEM: usize = 4 << 20;

/// Deepest nesting of arrays, maps and tags accepted. MK12 messages nest four deep;
/// unknown fields may carry more, but not this much.
pub const MAX_DEPTH: usize = 64;

/// What the framer knows after looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// The item is not complete yet: read more bytes.
    NeedMore,
    /// The first `n` bytes are exactly one complete, well-formed item.
    Complete(usize),
}

/// Why a byte stream can never become a valid item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("cbor item is longer than the {max}-byte limit")]
    TooLarge { max: usize },
    #[error("cbor input was not canonical: header at offset {offset} is not minimally encoded")]
    NonMinimal { offset: usize },
    #[error("cbor indefinite-length items are not accepted (offset {offset})")]
    Indefinite { offset: usize },
    #[error("cbor header at offset {offset} uses reserved additional info {info}")]
    Reserved { offset: usize, info: u8 },
    #[error("cbor item nests deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("cbor simple value at offset {offset} is encoded in two bytes but is below 32")]
    BadSimple { offset: usize },
    #[error("cbor input ended before the item was complete")]
    Truncated,
    #[error("unexpected bytes after the cbor item (from offset {at})")]
    Trailing { at: usize },
}

/// A parsed CBOR header: major type, argument, and the header's own length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub major: u8,
    pub info: u8,
    pub arg: u64,
    pub len: usize,
}

/// Parse one header at `buf[at..]`. `Ok(None)` means more bytes are needed.
pub(crate) fn read_header(buf: &[u8], at: usize) -> Result<Option<Header>, FrameError> {
    let Some(&first) = buf.get(at) else {
        return Ok(None);
    };
    let major = first >> 5;
    let info = first & 0x1f;
    let extra = match info {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        28..=30 => return Err(FrameError::Reserved { offset: at, info }),
        _ => return Err(FrameError::Indefinite { offset: at }),
    };
    let Some(bytes) = buf.get(at + 1..at + 1 + extra) else {
        return Ok(None);
    };
    let arg = if info < 24 {
        u64::from(info)
    } else {
        bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    // Floats (major 7, info 25-27) carry their value in the argument bytes: no minimality.
    let is_float = major == 7 && info >= 25;
    if !is_float {
        let minimal = match info {
            24 => arg >= 24,
            25 => arg > 0xff,
            26 => arg > 0xffff,
            27 => arg > 0xffff_ffff,
            _ => true,
        };
        if !minimal {
            if major == 7 {
                return Err(FrameError::BadSimple { offset: at });
            }
            return Err(FrameError::NonMinimal { offset: at });
        }
    }
    Ok(Some(Header {
        major,
        info,
        arg,
        len: 1 + extra,
    }))
}

/// Length of a header from its first byte (reserved/indefinite count as one byte;
/// `read_header` rejects them once that byte is present).
fn header_len(first: u8) -> usize {
    match first & 0x1f {
        24 => 2,
        25 => 3,
        26 => 5,
        27 => 9,
        _ => 1,
    }
}

/// Incremental walker over one CBOR item. See the module docs.
#[derive(Debug, Clone)]
pub struct Framer {
    max: usize,
    /// Offset of the next unread byte of the item.
    pos: usize,
    /// For each open container: how many child items are still expected.
    pending: Vec<u64>,
    /// Bytes of a string payload still to skip before the next header.
    skip: u64,
    started: bool,
    done: Option<usize>,
    /// Bytes still missing from the header being read (0 when between items).
    header_missing: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ITEM)
    }
}

impl Framer {
    /// A framer that refuses items longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Framer {
            max,
            pos: 0,
            pending: Vec::new(),
            skip: 0,
            started: false,
            done: None,
            header_missing: 0,
        }
    }

    /// The size cap this framer enforces.
    pub fn max_item(&self) -> usize {
        self.max
    }

    /// How many bytes the caller may usefully read next without reading past the item:
    /// at least one, and never more than what the cap still allows.
    pub fn read_hint(&self) -> usize {
        let wanted = if self.skip > 0 {
            self.skip
        } else {
            self.header_missing.max(1) as u64
        };
        let left = self.max.saturating_sub(self.pos).max(1) as u64;
        wanted.min(left).max(1) as usize
    }

    /// Look at `buf` (everything received so far, from the item's first byte) and say
    /// whether one complete item is there. Bytes past the item are never inspected.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Frame, FrameError> {
        if let Some(n) = self.done {
            return Ok(Frame::Complete(n));
        }
        loop {
            if self.skip > 0 {
                let available = buf.len().saturating_sub(self.pos) as u64;
                let step = available.min(self.skip);
                self.pos += step as usize;
                self.skip -= step;
                if self.skip > 0 {
                    return Ok(Frame::NeedMore);
                }
                self.close_item();
            }
            if self.started && self.pending.is_empty() {
                self.done = Some(self.pos);
                return Ok(Frame::Complete(self.pos));
            }
            let Some(h) = read_header(buf, self.pos)? else {
                self.header_missing = match buf.get(self.pos) {
                    Some(&first) => header_len(first).saturating_sub(buf.len() - self.pos),
                    None => 1,
                };
                return Ok(Frame::NeedMore);
            };
            self.header_missing = 0;
            self.started = true;
            self.check_size(self.pos as u64 + h.len as u64)?;
            self.pos += h.len;
            match h.major {
                0 | 1 | 7 => self.close_item(),
                2 | 3 => {
                    self.check_size((self.pos as u64).saturating_add(h.arg))?;
                    self.skip = h.arg;
                    if self.skip == 0 {
                        self.close_item();
                    }
                }
                4 | 5 => {
                    let children = if h.major == 5 {
                        h.arg.saturating_mul(2)
                    } else {
                        h.arg
                    };
                    // Every child takes at least one byte: a count larger than the
                    // remaining budget can never complete.
                    self.check_size((self.pos as u64).saturating_add(children))?;
                    if children == 0 {
                        self.close_item();
                    } else {
                        self.open(children)?;
                    }
                }
                _ => self.open(1)?, // tag: exactly one child follows
            }
        }
    }

    fn check_size(&self, end: u64) -> Result<(), FrameError> {
        if end > self.max as u64 {
            return Err(FrameError::TooLarge { max: self.max });
        }
        Ok(())
    }

    fn open(&mut self, children: u64) -> Result<(), FrameError> {
        if self.pending.len() >= MAX_DEPTH {
            return Err(FrameError::TooDeep { max: MAX_DEPTH });
        }
        self.pending.push(children);
        Ok(())
    }

    /// One item finished: count it against its container, closing finished containers.
    fn close_item(&mut self) {
        while let Some(left) = self.pending.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.pending.pop();
        }
    }
}

/// Check that `bytes` is exactly one well-formed item (no trailing bytes).
pub fn check_single_item(bytes: &[u8], max: usize) -> Result<(), FrameError> {
    match Framer::new(max).advance(bytes)? {
        Frame::Complete(n) if n == bytes.len() => Ok(()),
        Frame::Complete(n) => Err(FrameError::Trailing { at: n }),
        Frame::NeedMore => Err(FrameError::Truncated),
    }
}
