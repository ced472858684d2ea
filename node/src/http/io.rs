//! Glue between hyper's runtime traits and async-io / futures-io.
//!
//! smol-hyper (without its `smol` feature, so it pulls neither smol nor async-executor)
//! supplies `FuturesIo`, which makes an async-net `TcpStream` a hyper I/O object. This file
//! adds the timer hyper needs for its header read timeout.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

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
