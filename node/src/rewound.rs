//! [`Rewound`]: a stream that gives back bytes already read from it. The HTTP server
//! reads past an upgrade request's head (hyper's buffer), the relay past the host's 101
//! answer, the libp2p TCP listener through a relayed upgrade's head: each hands the
//! connection on without losing those bytes.
//!
//! Layer: a leaf (futures-io and bytes only).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use futures::{AsyncRead, AsyncWrite};

/// A stream that first yields `prefix` (bytes already read past a head), then reads
/// from `inner`. Writes go straight to `inner`.
#[derive(Debug)]
pub struct Rewound<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewound<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The bytes not yet read again, and the stream.
    pub fn into_parts(self) -> (Bytes, T) {
        (self.prefix, self.inner)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewound<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.len());
            buf[..n].copy_from_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewound<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncReadExt;

    #[test]
    fn rewound_yields_prefix_then_inner() {
        let mut r = Rewound::new(
            Bytes::from_static(b"abc"),
            futures::io::Cursor::new(b"def".to_vec()),
        );
        let mut out = Vec::new();
        async_io::block_on(r.read_to_end(&mut out)).unwrap();
        assert_eq!(out, b"abcdef");
    }
}
