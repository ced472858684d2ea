//! The one seam between `node/` and the async runtime that runs it.
//!
//! Shaped like quinn's `Runtime` trait: the node asks the runtime only for what it cannot
//! get from `async-io` itself. Sockets and timers come from `async-io` / `async-net`, whose
//! reactor works under any executor, so the trait only needs to spawn work. Each shell
//! (`runtime-smol`, `runtime-asyncstd`, tests) implements it in a few lines and hands an
//! `Arc<dyn Runtime>` to the node.
//!
//! Layer: the runtime seam, the bottom of `node/`: uses no other module.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// A future the runtime runs to completion in the background.
pub type BoxTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task run only while this node holds the lease (the miners' on-chain info upkeep,
/// deal execution, publishing). Called anew on every acquisition; aborted on every
/// step-down. Producers expose one; the app hands them to the lease loop.
pub type LeaderTask = Box<dyn Fn() -> BoxTask + Send + Sync>;

/// Spawning, the only service the node needs from an executor. Object-safe: use it as
/// `Arc<dyn Runtime>`.
pub trait Runtime: Send + Sync + 'static {
    /// Run `fut` in the background until it completes. The task is detached: the node
    /// keeps no handle to it and ends it by ending the future.
    fn spawn(&self, fut: BoxTask);

    /// Run blocking work (file I/O, fsync, CPU-heavy verification) off the async threads.
    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send>);
}

impl fmt::Debug for dyn Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Runtime")
    }
}

/// Adapts a [`Runtime`] to libp2p's swarm executor, so connection tasks run on it.
#[derive(Clone, Debug)]
pub struct SwarmExecutor(pub Arc<dyn Runtime>);

impl libp2p::swarm::Executor for SwarmExecutor {
    fn exec(&self, future: BoxTask) {
        self.0.spawn(future);
    }
}

/// Run blocking `f` on the runtime's blocking pool and await its result.
///
/// If the runtime drops the work without running it, this resolves to `None`.
pub async fn unblock<T, F>(rt: &dyn Runtime, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = futures::channel::oneshot::channel();
    rt.spawn_blocking(Box::new(move || {
        let _ = tx.send(f());
    }));
    rx.await.ok()
}

/// `fut`, or `None` once `limit` has passed. The one "future or timer" in `node/`.
pub fn timeout<F: Future>(limit: Duration, fut: F) -> Deadline<F> {
    deadline(Instant::now() + limit, fut)
}

/// `fut`, or `None` once the monotonic `at` has passed.
pub fn deadline<F: Future>(at: Instant, fut: F) -> Deadline<F> {
    Deadline {
        fut,
        timer: async_io::Timer::at(at),
    }
}

pin_project_lite::pin_project! {
    /// The future [`timeout`] and [`deadline`] return: a plain struct rather than an
    /// `async fn`, so wrapping a future does not double its size (an async fn keeps its
    /// argument and the future it awaits side by side).
    #[must_use = "futures do nothing unless awaited"]
    pub struct Deadline<F> {
        #[pin]
        fut: F,
        timer: async_io::Timer,
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        match Pin::new(this.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
