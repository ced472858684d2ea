//! Files as streams of chunks, read on the runtime's blocking pool (uploads by the
//! import client, downloads of staged pieces by API routes).
use std::{fs::File, io::Read, sync::Arc};

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
    futures::stream::unfold(Some(file), move |f| {
        let rt = runtime.clone();
        async move {
            let mut f = f?;
            let read = unblock(&*rt, move || {
                let mut buf = vec![0u8; CHUNK];
                let n = f.read(&mut buf)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>((buf, f))
            })
            .await
            .unwrap_or_else(|| Err(std::io::Error::other("the blocking pool dropped the read")));
            match read {
                Ok((buf, _)) if buf.is_empty() => None,
                Ok((buf, f)) => Some((Ok(Bytes::from(buf)), Some(f))),
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}
