//! Group commit for the embedded store: every write is durable before its caller goes
//! on, but writers that arrive while a flush runs share the next one instead of each
//! paying an fsync. A writer takes a ticket after its write; a flush that starts after
//! ticket `t` was taken covers every write with a ticket up to `t`.
//!
//! A deal update announces itself before it starts ([`GroupFlush::writing`]): a flush
//! that would start while such writes are under way waits for them first (at most
//! [`GATHER`]), so one flush covers every write made in the same few hundred
//! microseconds. Without the wait, a flush began as soon as the previous one ended and
//! covered about one write (measured on new deals, before they were written in groups by
//! [`super::write_group`], whose flush goes through here too: one `sync_file_range` per
//! fresh deal at 16 streams, each a round of sled's I/O threads). PostgreSQL's
//! `commit_delay` does the same when enough other transactions are active. Used by the
//! sled store only; uses nothing else of the node.

use std::{
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// Longest a flush waits for the writes under way to finish.
pub const GATHER: Duration = Duration::from_millis(1);

#[derive(Debug, Default)]
struct State {
    /// The last ticket handed out.
    taken: u64,
    /// Every write with a ticket up to this one is durable.
    durable: u64,
    /// A flush is running (or gathering).
    flushing: bool,
    /// Writes announced and not yet ticketed (or given up).
    writing: usize,
    /// The flush runner is waiting for `writing` to reach 0.
    gathering: bool,
}

/// Shares flushes between concurrent writers.
#[derive(Debug)]
pub struct GroupFlush {
    state: Mutex<State>,
    /// Signalled when a flush ends.
    done: Condvar,
    /// Signalled when an announced write takes its ticket or is given up.
    written: Condvar,
    gather: Duration,
}

impl Default for GroupFlush {
    fn default() -> Self {
        GroupFlush::with_gather(GATHER)
    }
}

/// A write under way (see [`GroupFlush::writing`]); dropped without
/// [`Writing::flush`], it is given up (e.g. the write failed).
#[derive(Debug)]
pub struct Writing<'a> {
    group: &'a GroupFlush,
    open: bool,
}

impl Writing<'_> {
    /// The write is done: make it durable, sharing a flush with the writes around it.
    pub fn flush<E>(mut self, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        self.open = false;
        let mut st = self.group.lock();
        st.writing -= 1;
        self.group.written.notify_all();
        self.group.flush_from(st, flush)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.open {
            self.group.lock().writing -= 1;
            self.group.written.notify_all();
        }
    }
}

impl GroupFlush {
    pub fn new() -> GroupFlush {
        GroupFlush::default()
    }

    /// With another longest wait for the writes under way (tests).
    pub fn with_gather(gather: Duration) -> GroupFlush {
        GroupFlush {
            state: Mutex::default(),
            done: Condvar::new(),
            written: Condvar::new(),
            gather,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announce a write about to be made: a flush starting meanwhile waits for it.
    pub fn writing(&self) -> Writing<'_> {
        self.lock().writing += 1;
        Writing {
            group: self,
            open: true,
        }
    }

    /// Whether a flush is waiting for announced writes now.
    #[cfg(test)]
    pub fn is_gathering(&self) -> bool {
        self.lock().gathering
    }

    /// Make everything written before this call durable, by running `flush` or by
    /// waiting for a flush that started after this call. Blocks: call it off the async
    /// threads, as the store's blocking work is.
    pub fn flush<E>(&self, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        self.flush_from(self.lock(), flush)
    }

    fn flush_from<'a, E>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        flush: impl Fn() -> Result<(), E>,
    ) -> Result<(), E> {
        st.taken += 1;
        let mine = st.taken;
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if !st.flushing {
                st.flushing = true;
                st = self.gather(st);
                let covers = st.taken;
                drop(st);
                let result = flush();
                st = self.lock();
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

    /// Wait (at most `gather`) until no announced write is under way.
    fn gather<'a>(&self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if st.writing == 0 {
            return st;
        }
        let deadline = Instant::now() + self.gather;
        st.gathering = true;
        while st.writing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .written
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.gathering = false;
        st
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

    /// A flush that would start while a write is under way waits for it, and covers it:
    /// one flush for both.
    #[test]
    fn a_flush_waits_for_the_write_under_way_and_covers_it() {
        let g = Arc::new(GroupFlush::with_gather(Duration::from_secs(60)));
        let flushes = Arc::new(AtomicUsize::new(0));
        let count = |n: &AtomicUsize| {
            n.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        };
        let w = g.writing();
        let other = {
            let (g, flushes) = (g.clone(), flushes.clone());
            std::thread::spawn(move || g.flush(|| count(&flushes)))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !g.is_gathering() {
            assert!(Instant::now() < deadline, "the flush never waited");
            std::thread::yield_now();
        }
        w.flush(|| count(&flushes)).unwrap();
        other.join().unwrap().unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 1);
        // A write given up does not hold the next flush.
        drop(g.writing());
        g.flush(|| count(&flushes)).unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_flush_is_the_runner_s_error_and_the_next_writer_retries() {
        let g = GroupFlush::new();
        assert_eq!(g.flush(|| Err("disk")), Err("disk"));
        assert_eq!(g.flush(|| Ok::<(), &str>(())), Ok(()));
    }
}
