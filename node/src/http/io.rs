//! Glue between hyper's runtime traits and async-io / futures-io.
//!
//! smol-hyper (without its `smol` feature, so it pulls neither smol nor async-executor)
//! supplies `FuturesIo`, which makes an async-net `TcpStream` a hyper I/O object. This file
//! adds the timer hyper needs for its header read timeout, and [`Rewound`], which turns an
//! upgraded connection back into a futures-io stream without losing bytes hyper had
//! already read past the request head.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes};
use futures::{AsyncRead, AsyncWrite};

/// hyper's timer on async-io's reactor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IoTimer;

impl hyper::rt::Timer for IoTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(IoSleep(async_io::Timer::after(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(IoSleep(async_io::Timer::at(deadline)))
    }
}

struct IoSleep(async_io::Timer);

impl Future for IoSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for IoSleep {}

/// A stream that first yields `prefix` (bytes hyper buffered after the request head),
/// then reads from `inner`. Writes go straight to `inner`.
#[derive(Debug)]
pub(crate) struct Rewound<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewound<T> {
    pub(crate) fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
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
