//! The transfer runner's deals waiting for a download slot, and where its rescan of the
//! store reads next. The queue is bounded and holds each deal once; a pass stops when
//! the queue is full and the next goes on from there, so a rescan's cost follows the
//! free places in the queue, not the backlog in the store (a node with 430,000 online
//! deals whose sources kept failing read every one of them every 30 s before).
//!
//! No I/O: [`DownloadQueue::next_read`] says which page of the store's waiting deals to
//! read next (none: the pass is over), [`DownloadQueue::took_page`] takes it.
use std::collections::{HashSet, VecDeque};

use crate::wire::DealUuid;

/// Deals queued for a download slot, the ones running, and the rescan's place.
#[derive(Debug)]
pub struct DownloadQueue {
    queued: VecDeque<DealUuid>,
    /// Queued or running: a deal is offered again only once it is done.
    known: HashSet<DealUuid>,
    cap: usize,
    /// The next page starts after this deal; `None`: at the first.
    cursor: Option<DealUuid>,
    /// A pass is under way.
    reading: bool,
    /// The store may hold more work than the queue took (a pass stopped at a full queue,
    /// or a notice found it full).
    more: bool,
}

impl DownloadQueue {
    /// At most `cap` deals queued at once (running ones not counted).
    pub fn new(cap: usize) -> Self {
        DownloadQueue {
            queued: VecDeque::new(),
            known: HashSet::new(),
            cap: cap.max(1),
            cursor: None,
            reading: false,
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

    /// The next deal to start; it stays known until [`DownloadQueue::done`].
    pub fn start_next(&mut self) -> Option<DealUuid> {
        self.queued.pop_front()
    }

    /// The deal's download ended (either way): it may be offered again.
    pub fn done(&mut self, uuid: DealUuid) {
        self.known.remove(&uuid);
    }

    /// Scan before the periodic rescan is due: the queue ran dry and the store has more
    /// work than the last pass took.
    pub fn wants_scan(&self) -> bool {
        self.more && self.queued.is_empty()
    }

    /// Begin a pass where the last one stopped.
    pub fn start_pass(&mut self) {
        self.more = false;
        self.reading = true;
    }

    /// The page to read next: the waiting deals after `Some(after)` (`after` is `None`:
    /// from the first). `None`: the pass is over (the queue is full, or the last page
    /// was the end).
    pub fn next_read(&mut self) -> Option<Option<DealUuid>> {
        if !self.reading {
            return None;
        }
        if self.is_full() {
            self.more = true;
            self.reading = false;
            return None;
        }
        Some(self.cursor)
    }

    /// The page read: at most `page` UUIDs in order (fewer: no more after them). Offers
    /// them until the queue is full, where the next pass goes on.
    pub fn took_page(&mut self, uuids: &[DealUuid], page: usize) {
        for &uuid in uuids {
            if self.is_full() {
                self.more = true;
                self.reading = false;
                return;
            }
            self.offer(uuid);
            self.cursor = Some(uuid);
        }
        if uuids.len() < page.max(1) {
            self.cursor = None;
            self.reading = false;
        }
    }

    /// The read failed: the pass ends, and the next starts at the same place (at the
    /// periodic rescan, not at once).
    pub fn end_pass(&mut self) {
        self.reading = false;
    }
}
