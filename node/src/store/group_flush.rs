//! Group commit for the embedded store: every write is durable before its caller goes
//! on, but writers that arrive while a flush runs share the next one instead of each
//! paying an fsync. A writer takes a ticket after its write; a flush that starts after
//! ticket `t` was taken covers every write with a ticket up to `t`. Used by the sled
//! store only; uses nothing else of the node.

use std::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// The last ticket handed out.
    taken: u64,
    /// Every write with a ticket up to this one is durable.
    durable: u64,
    /// A flush is running.
    flushing: bool,
}

/// Shares flushes between concurrent writers.
#[derive(Debug, Default)]
pub struct GroupFlush {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupFlush {
    pub fn new() -> GroupFlush {
        GroupFlush::default()
    }

    /// Make everything written before this call durable, by running `flush` or by
    /// waiting for a flush that started after this call. Blocks: call it off the async
    /// threads, as the store's blocking work is.
    pub fn flush<E>(&self, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let lock = || self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = lock();
        st.taken += 1;
        let mine = st.taken;
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if !st.flushing {
                st.flushing = true;
                let covers = st.taken;
                drop(st);
                let result = flush();
                st = lock();
                st.flushing = false;
                if result.is_ok() {
                    st.durable = st.durable.max(covers);
                }
                self.done.notify_all();
                // A failed flush fails its runner; the waiters try again themselves.
                result?;
                if st.durable >= mine {
                    return Ok(());
                }
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Barrier,
    };

    use super::*;

    #[test]
    fn one_writer_flushes_every_time() {
        let g = GroupFlush::new();
        let n = AtomicUsize::new(0);
        for _ in 0..3 {
            g.flush(|| -> Result<(), ()> {
                n.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    /// However the writers interleave, none returns before a flush that finished after
    /// it arrived, and there is never more than one flush per writer. (How many they
    /// share is a matter of timing: the acceptance benchmark measures it.)
    #[test]
    fn concurrent_writers_are_each_covered_by_a_later_flush() {
        let g = Arc::new(GroupFlush::new());
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let writers = 16;
        let barrier = Arc::new(Barrier::new(writers));
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                let (g, started, finished, barrier) = (
                    g.clone(),
                    started.clone(),
                    finished.clone(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    // The flushes finished before this writer arrived cannot cover it.
                    let before = finished.load(Ordering::SeqCst);
                    g.flush(|| -> Result<(), ()> {
                        started.fetch_add(1, Ordering::SeqCst);
                        std::thread::yield_now();
                        finished.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .unwrap();
                    assert!(finished.load(Ordering::SeqCst) > before);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let flushes = started.load(Ordering::SeqCst);
        assert!((1..=writers).contains(&flushes), "{flushes} flushes");
    }

    #[test]
    fn a_failed_flush_is_the_runner_s_error_and_the_next_writer_retries() {
        let g = GroupFlush::new();
        assert_eq!(g.flush(|| Err("disk")), Err("disk"));
        assert_eq!(g.flush(|| Ok::<(), &str>(())), Ok(()));
    }
}
