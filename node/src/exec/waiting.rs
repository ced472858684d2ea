//! The transfer runner's deals waiting for a download slot, and the rescan that fills
//! them from the store. The queue is bounded and holds each deal once; the rescan stops
//! when the queue is full and goes on from there next time, so its cost follows the free
//! places in the queue, not the backlog in the store (a node with 50,000 online deals
//! whose sources keep failing read all of them every 30 s before).
use std::collections::{HashSet, VecDeque};

use dealport_core::wire::DealUuid;

use crate::store::{StoreError, StoreFuture};

/// Where the next rescan starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Cursor {
    /// At the first deal: the last pass reached the end (or none ran yet).
    #[default]
    Start,
    /// After this deal: the last pass stopped at a full queue.
    After(DealUuid),
}

/// Deals queued for a download slot, and the ones running.
#[derive(Debug)]
pub struct Waiting {
    queued: VecDeque<DealUuid>,
    /// Queued or running: a deal is offered again only once it is [`Waiting::done`].
    known: HashSet<DealUuid>,
    cap: usize,
    cursor: Cursor,
    /// The store may hold more work than the queue took (a pass stopped at a full queue,
    /// or a notice found it full).
    more: bool,
}

impl Waiting {
    /// At most `cap` deals queued at once (running ones not counted).
    pub fn new(cap: usize) -> Self {
        Waiting {
            queued: VecDeque::new(),
            known: HashSet::new(),
            cap: cap.max(1),
            cursor: Cursor::Start,
            more: false,
        }
    }

    fn is_full(&self) -> bool {
        self.queued.len() >= self.cap
    }

    /// Queue `uuid` unless it is queued or running already. A full queue leaves it for a
    /// rescan to find.
    pub fn offer(&mut self, uuid: DealUuid) {
        if self.is_full() {
            self.more = true;
        } else if self.known.insert(uuid) {
            self.queued.push_back(uuid);
        }
    }

    /// The next deal to start; it stays known until [`Waiting::done`].
    pub fn next(&mut self) -> Option<DealUuid> {
        self.queued.pop_front()
    }

    /// The deal's download ended (either way): it may be offered again.
    pub fn done(&mut self, uuid: DealUuid) {
        self.known.remove(&uuid);
    }

    /// Scan again before the periodic rescan is due: the queue ran dry and the store has
    /// more work than the last pass took.
    pub fn wants_scan(&self) -> bool {
        self.more && self.queued.is_empty()
    }

    /// Offer deals from the pages `read(after)` gives (at most `page` UUIDs after
    /// `after`, in order; fewer means the end), starting where the last pass stopped,
    /// until the queue is full or the pages end. A read error ends the pass and leaves
    /// the next one to start at the same place.
    pub async fn scan<'a, R>(&mut self, page: usize, mut read: R) -> Result<(), StoreError>
    where
        R: FnMut(Option<DealUuid>) -> StoreFuture<'a, Vec<DealUuid>>,
    {
        let page = page.max(1);
        self.more = false;
        loop {
            if self.is_full() {
                self.more = true;
                return Ok(());
            }
            let after = match self.cursor {
                Cursor::Start => None,
                Cursor::After(u) => Some(u),
            };
            let uuids = read(after).await?;
            let end = uuids.len() < page;
            for uuid in uuids {
                if self.is_full() {
                    self.more = true;
                    return Ok(());
                }
                self.offer(uuid);
                self.cursor = Cursor::After(uuid);
            }
            if end {
                self.cursor = Cursor::Start;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use futures::executor::block_on;

    use super::*;

    fn uuid(n: u32) -> DealUuid {
        let mut b = [0u8; 16];
        b[12..].copy_from_slice(&n.to_be_bytes());
        DealUuid(b)
    }

    /// A store's awaiting deals `0..n`, paged as `Store::awaiting_download` pages them;
    /// `reads` counts the UUIDs it handed out.
    fn pages(
        n: u32,
        reads: &Cell<usize>,
    ) -> impl FnMut(Option<DealUuid>) -> StoreFuture<'static, Vec<DealUuid>> + '_ {
        move |after| {
            let from = after.map_or(0, |u| u32::from_be_bytes(u.0[12..].try_into().unwrap()) + 1);
            let page: Vec<DealUuid> = (from..n).take(7).map(uuid).collect();
            reads.set(reads.get() + page.len());
            Box::pin(async move { Ok(page) })
        }
    }

    /// Start every queued deal and finish it.
    fn drain(w: &mut Waiting) -> Vec<DealUuid> {
        let mut out = Vec::new();
        while let Some(u) = w.next() {
            w.done(u);
            out.push(u);
        }
        out
    }

    #[test]
    fn a_pass_stops_at_a_full_queue_and_the_next_goes_on_from_there() {
        let reads = Cell::new(0);
        let mut w = Waiting::new(10);
        block_on(w.scan(7, pages(1000, &reads))).unwrap();
        // Two pages of 7 fill 10 places: the backlog of 1,000 is not read.
        assert_eq!(reads.get(), 14);
        assert!(!w.wants_scan(), "the queue is full");
        let first = drain(&mut w);
        assert_eq!(first, (0..10).map(uuid).collect::<Vec<_>>());
        assert!(w.wants_scan(), "dry, and the store has more");
        block_on(w.scan(7, pages(1000, &reads))).unwrap();
        assert_eq!(drain(&mut w), (10..20).map(uuid).collect::<Vec<_>>());
        // Every deal once, in order, and the pass that reaches the end starts over.
        let mut all = [first, (10..20).map(uuid).collect()].concat();
        while w.wants_scan() {
            block_on(w.scan(7, pages(1000, &reads))).unwrap();
            all.extend(drain(&mut w));
        }
        assert_eq!(all, (0..1000).map(uuid).collect::<Vec<_>>());
        assert_eq!(w.cursor, Cursor::Start);
        block_on(w.scan(7, pages(1000, &reads))).unwrap();
        assert_eq!(w.queued.front(), Some(&uuid(0)));
    }

    #[test]
    fn a_full_queue_reads_nothing() {
        let reads = Cell::new(0);
        let mut w = Waiting::new(3);
        for n in 0..3 {
            w.offer(uuid(100 + n));
        }
        block_on(w.scan(7, pages(1000, &reads))).unwrap();
        assert_eq!(reads.get(), 0);
    }

    #[test]
    fn a_deal_is_queued_once_until_done() {
        let mut w = Waiting::new(5);
        w.offer(uuid(1));
        w.offer(uuid(1));
        assert_eq!(w.next(), Some(uuid(1)));
        w.offer(uuid(1));
        assert_eq!(w.next(), None, "running: not queued again");
        w.done(uuid(1));
        w.offer(uuid(1));
        assert_eq!(w.next(), Some(uuid(1)));
    }

    #[test]
    fn a_notice_that_finds_the_queue_full_asks_for_a_scan_once_it_drains() {
        let mut w = Waiting::new(1);
        w.offer(uuid(1));
        w.offer(uuid(2));
        assert!(!w.wants_scan());
        drain(&mut w);
        assert!(w.wants_scan());
    }

    #[test]
    fn a_read_error_ends_the_pass_where_it_stood() {
        let reads = Cell::new(0);
        let mut w = Waiting::new(10);
        block_on(w.scan(7, pages(1000, &reads))).unwrap();
        drain(&mut w);
        let failing = |_| -> StoreFuture<'static, Vec<DealUuid>> {
            Box::pin(async { Err(StoreError::Backend("down".into())) })
        };
        assert!(block_on(w.scan(7, failing)).is_err());
        assert!(
            !w.wants_scan(),
            "no scan at once after an error: the timer's"
        );
        block_on(w.scan(7, pages(1000, &reads))).unwrap();
        assert_eq!(w.next(), Some(uuid(10)));
    }
}
