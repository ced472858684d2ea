//! Files as streams of chunks, read on the runtime's blocking pool (uploads by the
//! import client, downloads of staged pieces by API routes).
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    sync::Arc,
};

use bytes::Bytes;
use futures::Stream;

use crate::runtime::{unblock, Runtime};

/// Bytes read at a time.
pub const CHUNK: usize = 1 << 20;

/// `file` from its current position to its end, [`CHUNK`] bytes at a time.
pub fn read_chunks(
    runtime: Arc<dyn Runtime>,
    file: File,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    read_chunks_limited(runtime, file, u64::MAX)
}

/// At most `limit` bytes of `file` from its current position, [`CHUNK`] at a time.
pub fn read_chunks_limited(
    runtime: Arc<dyn Runtime>,
    file: File,
    limit: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(Some((file, limit)), move |f| {
        let rt = runtime.clone();
        async move {
            let (mut f, left) = f?;
            if left == 0 {
                return None;
            }
            let read = unblock(&*rt, move || {
                let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
                let n = f.read(&mut buf)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>((buf, f))
            })
            .await
            .unwrap_or_else(|| Err(std::io::Error::other("the blocking pool dropped the read")));
            match read {
                Ok((buf, _)) if buf.is_empty() => None,
                Ok((buf, f)) => {
                    let left = left - buf.len() as u64;
                    Some((Ok(Bytes::from(buf)), Some((f, left))))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

/// `n` zero bytes, [`CHUNK`] at a time (all chunks share one buffer).
pub fn zeros(n: u64) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let block = Bytes::from(vec![0u8; CHUNK]);
    futures::stream::unfold(n, move |left| {
        let block = block.clone();
        async move {
            if left == 0 {
                return None;
            }
            let take = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            Some((Ok(block.slice(..take)), left - take as u64))
        }
    })
}

/// What a `Range` request header asks of a file of `len` bytes (RFC 9110 section 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No header, or one we do not serve as a range (several ranges, another unit,
    /// malformed): the whole file, as the RFC allows.
    Whole,
    /// Bytes `start..=end` (206).
    Part { start: u64, end: u64 },
    /// Nothing of the file satisfies it (416).
    Unsatisfiable,
}

/// Read a `Range` header value against a file of `len` bytes.
pub fn range_ask(header: Option<&str>, len: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim().is_empty(), num(first), num(last)) {
        // `bytes=-N`: the last N bytes.
        (true, _, Some(n)) if n > 0 && len > 0 => RangeAsk::Part {
            start: len.saturating_sub(n),
            end: len - 1,
        },
        (true, _, Some(_)) => RangeAsk::Unsatisfiable,
        (false, Some(start), _) if start >= len => RangeAsk::Unsatisfiable,
        (false, Some(start), None) if last.trim().is_empty() => RangeAsk::Part {
            start,
            end: len - 1,
        },
        (false, Some(start), Some(end)) if end >= start => RangeAsk::Part {
            start,
            end: end.min(len - 1),
        },
        _ => RangeAsk::Whole,
    }
}

/// Position `file` at `start` (on the caller's thread: one seek).
pub fn seek_to(file: &mut File, start: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(start)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_the_rfc_reads_them() {
        use RangeAsk::*;
        let ask = |h: &str| range_ask(Some(h), 1000);
        assert_eq!(range_ask(None, 1000), Whole);
        assert_eq!(ask("bytes=0-99"), Part { start: 0, end: 99 });
        assert_eq!(
            ask("bytes=500-"),
            Part {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            ask("bytes=990-5000"),
            Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            ask("bytes=-10"),
            Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(ask("bytes=-5000"), Part { start: 0, end: 999 });
        assert_eq!(ask("bytes=1000-"), Unsatisfiable);
        assert_eq!(ask("bytes=-0"), Unsatisfiable);
        assert_eq!(range_ask(Some("bytes=0-"), 0), Unsatisfiable);
        // Served whole: several ranges, other units, nonsense, reversed.
        for h in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=abc",
            "bytes=5-2",
            "bytes=-",
            "0-1",
            "bytes=+1-2",
        ] {
            assert_eq!(ask(h), Whole, "{h}");
        }
    }
}
