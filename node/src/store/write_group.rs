//! Write groups for the embedded store: jobs queue while a group is being written and go
//! out together in the next one, written by one writer on the blocking pool, the way
//! RocksDB's write groups and PostgreSQL's group commit share one log write. The sled
//! store writes a group of new deals in one transaction and makes it durable with one
//! flush: sled 0.34 writes and syncs its log buffer for every transaction
//! (`PageCache::pin_log` rolls the buffer; `write_to_log` then runs `pwrite` and
//! `sync_file_range` on sled's I/O threads, all seven woken for each), so a transaction
//! per deal cost two log writes and two syncs per deal whatever the flush shared.
//!
//! A caller queues its job with a channel for the result ([`WriteGroup::submit`]); the
//! first to find no writer running starts one ([`WriteGroup::write_queued`] on the
//! blocking pool), which writes groups of at most `max` jobs, oldest first, until the
//! queue is empty. So a caller costs no thread of its own: one blocking-pool hop per
//! group, and one wake-up per result. Uses nothing else of the node.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
};

use futures::channel::oneshot;

struct State<J, R> {
    queue: VecDeque<(J, oneshot::Sender<R>)>,
    /// A writer is running (or has been started): it empties the queue.
    writing: bool,
}

/// Groups concurrent jobs into writes of at most `max` jobs, with at most `max_queued`
/// waiting.
pub struct WriteGroup<J, R> {
    state: Mutex<State<J, R>>,
    max: usize,
    max_queued: usize,
}

/// [`WriteGroup::submit`] refused a job: `max_queued` jobs are already waiting (the
/// writer is stalled, e.g. on a disk that stopped answering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull(pub usize);

/// What [`WriteGroup::submit`] hands back.
pub struct Submitted<R> {
    /// The job's result; cancelled if the job was dropped unwritten (the writer never
    /// ran, or its `write` panicked).
    pub result: oneshot::Receiver<R>,
    /// No writer was running: the caller must run [`WriteGroup::write_queued`] (and
    /// nobody else will until it has).
    pub start_writer: bool,
}

impl<J, R> WriteGroup<J, R> {
    pub fn new(max: usize, max_queued: usize) -> WriteGroup<J, R> {
        WriteGroup {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                writing: false,
            }),
            max: max.max(1),
            max_queued: max_queued.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J, R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `job`, unless `max_queued` are already waiting. Does not block.
    pub fn submit(&self, job: J) -> Result<Submitted<R>, QueueFull> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        if st.queue.len() >= self.max_queued {
            return Err(QueueFull(self.max_queued));
        }
        st.queue.push_back((job, tx));
        let start_writer = !st.writing;
        st.writing = true;
        Ok(Submitted {
            result: rx,
            start_writer,
        })
    }

    /// The writer: write groups until the queue is empty. `write` gets a group's jobs,
    /// oldest first, and returns one result per job in the same order (a job without one
    /// is dropped: its caller's result is cancelled). Blocks while `write` does. If it
    /// panics, the queued jobs are dropped too, so no caller waits for a writer that is
    /// gone.
    pub fn write_queued(&self, write: impl Fn(Vec<J>) -> Vec<R>) {
        let mut writer = Writer {
            group: self,
            armed: true,
        };
        loop {
            let (jobs, senders): (Vec<J>, Vec<oneshot::Sender<R>>) = {
                let mut st = self.lock();
                let n = st.queue.len().min(self.max);
                if n == 0 {
                    // Past this, a new job starts a writer of its own.
                    st.writing = false;
                    writer.armed = false;
                    break;
                }
                st.queue.drain(..n).unzip()
            };
            for (tx, r) in senders.into_iter().zip(write(jobs)) {
                // A caller that stopped waiting does not need its result.
                let _ = tx.send(r);
            }
        }
    }

    /// Give up as the writer without writing: drop every queued job (their callers'
    /// results are cancelled). For a writer that cannot run (the runtime dropped it).
    pub fn abandon(&self) {
        let dropped = {
            let mut st = self.lock();
            st.writing = false;
            std::mem::take(&mut st.queue)
        };
        drop(dropped);
    }
}

/// The running writer; dropped by a panic in `write` (still armed), it abandons the
/// queue.
struct Writer<'a, J, R> {
    group: &'a WriteGroup<J, R>,
    armed: bool,
}

impl<J, R> Drop for Writer<'_, J, R> {
    fn drop(&mut self) {
        if self.armed {
            self.group.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Barrier},
        thread,
    };

    use futures::executor::block_on;

    use super::*;

    /// Submit `job`, run the writer if asked to, and wait for the result.
    fn submit_and_wait<J, R>(
        g: &WriteGroup<J, R>,
        job: J,
        write: impl Fn(Vec<J>) -> Vec<R>,
    ) -> Result<R, oneshot::Canceled> {
        let s = g.submit(job).expect("room in the queue");
        if s.start_writer {
            g.write_queued(write);
        }
        block_on(s.result)
    }

    #[test]
    fn a_lone_job_is_written_alone() {
        let g: WriteGroup<u32, u32> = WriteGroup::new(8, 64);
        let groups = Mutex::new(Vec::new());
        for i in 0..3 {
            let r = submit_and_wait(&g, i, |jobs| {
                groups.lock().unwrap().push(jobs.clone());
                jobs.iter().map(|j| j * 10).collect()
            });
            assert_eq!(r, Ok(i * 10));
        }
        assert_eq!(*groups.lock().unwrap(), vec![vec![0], vec![1], vec![2]]);
    }

    /// Every job is written exactly once, in a group of at most `max`, and its caller
    /// gets its own result.
    #[test]
    fn concurrent_jobs_share_groups_and_get_their_own_results() {
        let g: Arc<WriteGroup<usize, usize>> = Arc::new(WriteGroup::new(4, 64));
        let callers = 16;
        let barrier = Arc::new(Barrier::new(callers));
        let written = Arc::new(Mutex::new(Vec::<Vec<usize>>::new()));
        let handles: Vec<_> = (0..callers)
            .map(|i| {
                let (g, barrier, written) = (g.clone(), barrier.clone(), written.clone());
                thread::spawn(move || {
                    barrier.wait();
                    submit_and_wait(&g, i, |jobs| {
                        written.lock().unwrap().push(jobs.clone());
                        thread::yield_now();
                        jobs.iter().map(|j| j + 1000).collect()
                    })
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), Ok(i + 1000));
        }
        let groups = written.lock().unwrap();
        assert!(groups.iter().all(|g| !g.is_empty() && g.len() <= 4));
        let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..callers).collect::<Vec<_>>());
    }

    /// The jobs that arrive while a group is being written wait, start no writer of
    /// their own, and go out together in the next group.
    #[test]
    fn jobs_arriving_during_a_write_go_out_in_one_group() {
        let g: Arc<WriteGroup<usize, usize>> = Arc::new(WriteGroup::new(64, 64));
        let in_write = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let groups = Arc::new(Mutex::new(Vec::<Vec<usize>>::new()));
        let first = {
            let (g, in_write, release, groups) =
                (g.clone(), in_write.clone(), release.clone(), groups.clone());
            thread::spawn(move || {
                submit_and_wait(&g, 0, |jobs| {
                    let first = groups.lock().unwrap().is_empty();
                    groups.lock().unwrap().push(jobs.clone());
                    if first {
                        in_write.wait();
                        release.wait();
                    }
                    jobs
                })
            })
        };
        in_write.wait();
        let later: Vec<_> = (1..=5).map(|i| g.submit(i).unwrap()).collect();
        assert!(later.iter().all(|s| !s.start_writer));
        release.wait();
        assert_eq!(first.join().unwrap(), Ok(0));
        for (i, s) in later.into_iter().enumerate() {
            assert_eq!(block_on(s.result), Ok(i + 1));
        }
        let groups = groups.lock().unwrap();
        assert_eq!(*groups, vec![vec![0], vec![1, 2, 3, 4, 5]]);
    }

    /// A `write` that panics cancels its group and everything queued, and the next job
    /// starts a writer again.
    #[test]
    fn a_panicking_write_cancels_the_queue_and_the_next_job_is_written() {
        let g: Arc<WriteGroup<u32, u32>> = Arc::new(WriteGroup::new(1, 64));
        let first = g.submit(1).unwrap();
        let queued = g.submit(2).unwrap();
        assert!(first.start_writer && !queued.start_writer);
        let g2 = g.clone();
        let writer = thread::spawn(move || g2.write_queued(|_| panic!("the write failed")));
        assert!(writer.join().is_err());
        assert_eq!(block_on(first.result), Err(oneshot::Canceled));
        assert_eq!(block_on(queued.result), Err(oneshot::Canceled));
        assert_eq!(submit_and_wait(&g, 3, |jobs| jobs), Ok(3));
    }

    #[test]
    fn a_job_without_a_result_is_cancelled() {
        let g: WriteGroup<u32, u32> = WriteGroup::new(8, 64);
        assert_eq!(
            submit_and_wait(&g, 7, |_| Vec::new()),
            Err(oneshot::Canceled)
        );
    }

    #[test]
    fn an_abandoned_writer_cancels_the_queue_and_frees_the_next_job() {
        let g: WriteGroup<u32, u32> = WriteGroup::new(8, 64);
        let s = g.submit(1).unwrap();
        assert!(s.start_writer);
        g.abandon();
        assert_eq!(block_on(s.result), Err(oneshot::Canceled));
        assert_eq!(submit_and_wait(&g, 2, |jobs| jobs), Ok(2));
    }

    /// A stalled writer does not let the queue grow: past `max_queued`, a job is
    /// refused at once; once the writer empties the queue, jobs are taken again.
    #[test]
    fn a_full_queue_refuses_jobs_until_the_writer_catches_up() {
        let g: WriteGroup<u32, u32> = WriteGroup::new(8, 3);
        let queued: Vec<_> = (0..3).map(|i| g.submit(i).unwrap()).collect();
        assert_eq!(g.submit(3).err(), Some(QueueFull(3)));
        g.write_queued(|jobs| jobs);
        for (i, s) in queued.into_iter().enumerate() {
            assert_eq!(block_on(s.result), Ok(i as u32));
        }
        assert_eq!(submit_and_wait(&g, 4, |jobs| jobs), Ok(4));
    }
}
