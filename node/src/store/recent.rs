//! The sled store's most recently read deal records, so a client polling its deal's
//! status is answered without handing the read to the blocking pool: on that path the
//! thread hand-off cost more than the read (BENCHMARKS.md, "CPU per status request").
//!
//! Never older than the store, because every write to a deal record goes through this
//! process (sled is one machine's store): a write forgets the deal once it has committed
//! and moves the generation on, and a read that began before a write does not put what it
//! read back (it carries the generation it began at).

use std::sync::Mutex;

use dealport_core::fifo_map::FifoMap;

/// Stored bytes held at most (the records' stored size; a status-polling client's deal
/// is a few KiB, so about a thousand deals).
const MAX_BYTES: usize = 4 << 20;

/// Larger records are read from the store each time: a deal whose transfer headers fill
/// a megabyte would otherwise push out hundreds of others.
const MAX_RECORD_BYTES: usize = 64 << 10;

/// Generic over the record so the rules below are tested without a store; the store
/// holds `DealRecord`s.
pub(super) struct RecentDeals<D>(Mutex<Recent<D>>);

struct Recent<D> {
    /// Moves on with every write; see the module docs.
    generation: u64,
    deals: FifoMap<[u8; 16], D>,
}

impl<D: Clone> RecentDeals<D> {
    pub(super) fn new() -> RecentDeals<D> {
        RecentDeals(Mutex::new(Recent {
            generation: 0,
            deals: FifoMap::new(MAX_BYTES),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent<D>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, uuid: &[u8; 16]) -> Option<D> {
        self.lock().deals.get(uuid).cloned()
    }

    /// Take before reading the store; hand to [`RecentDeals::offer`] with what was read.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Hold `deal`, read from the store (`stored_bytes` long) after `generation` was
    /// taken, unless a write came in between.
    pub(super) fn offer(&self, generation: u64, uuid: [u8; 16], deal: &D, stored_bytes: usize) {
        if stored_bytes > MAX_RECORD_BYTES {
            return;
        }
        let mut r = self.lock();
        if r.generation == generation {
            r.deals.insert(uuid, deal.clone(), stored_bytes);
        }
    }

    /// Call after a write to `uuid`'s record has committed.
    pub(super) fn forget(&self, uuid: &[u8; 16]) {
        let mut r = self.lock();
        r.generation += 1;
        r.deals.remove(uuid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: [u8; 16] = [7; 16];

    #[test]
    fn a_read_is_held_until_a_write_forgets_it() {
        let r = RecentDeals::new();
        let g = r.generation();
        r.offer(g, U, &"accepted", 2000);
        assert_eq!(r.get(&U), Some("accepted"));
        r.forget(&U);
        assert_eq!(r.get(&U), None);
    }

    #[test]
    fn a_read_that_began_before_a_write_is_not_held() {
        let r = RecentDeals::new();
        let g = r.generation(); // a reader begins and reads the old record ...
        r.forget(&U); // ... a write to the deal commits ...
        r.offer(g, U, &"old", 2000); // ... and the reader offers what it read
        assert_eq!(r.get(&U), None, "the old record would outlive the write");
        let g = r.generation();
        r.offer(g, U, &"new", 2000);
        assert_eq!(r.get(&U), Some("new"));
    }

    #[test]
    fn a_write_to_another_deal_also_keeps_an_older_read_out() {
        // One generation for all deals: simpler than one per deal, and only costs a
        // missed hold now and then.
        let r = RecentDeals::new();
        let g = r.generation();
        r.forget(&[1; 16]);
        r.offer(g, U, &"x", 10);
        assert_eq!(r.get(&U), None);
    }

    #[test]
    fn large_records_and_too_many_bytes_are_not_held() {
        let r = RecentDeals::new();
        let g = r.generation();
        r.offer(g, U, &"huge", MAX_RECORD_BYTES + 1);
        assert_eq!(r.get(&U), None);
        let per = MAX_RECORD_BYTES;
        for i in 0..=(MAX_BYTES / per) as u8 {
            r.offer(g, [i; 16], &"big", per);
        }
        assert_eq!(r.get(&[0; 16]), None, "the oldest went first");
        assert_eq!(r.get(&[(MAX_BYTES / per) as u8; 16]), Some("big"));
    }
}
