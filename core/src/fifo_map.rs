//! A map bounded by a total cost that forgets its oldest insertions first.
//!
//! The one bounded cache of the project: the status verification cache (every entry costs
//! 1, so the bound is a count) and the sled store's recent deal records (an entry costs its
//! stored size, so the bound is bytes) both use it. First in, first out rather than least
//! recently used: a hit costs no bookkeeping, and a client that keeps polling one deal
//! gets it back into the map on its next miss.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

#[derive(Debug)]
pub struct FifoMap<K, V> {
    max_cost: usize,
    cost: usize,
    /// Each entry with its cost and the number of its insertion.
    entries: HashMap<K, (V, usize, u64)>,
    /// Insertions in order. A removed or replaced entry's insertion lingers here until it
    /// reaches the front or a compaction (finding it would be a search); only the entry's
    /// current insertion number evicts it.
    order: VecDeque<(K, u64)>,
    next: u64,
}

impl<K: Hash + Eq + Clone, V> FifoMap<K, V> {
    /// A map holding entries whose costs add up to at most `max_cost` (0: holds nothing).
    pub fn new(max_cost: usize) -> FifoMap<K, V> {
        FifoMap {
            max_cost,
            cost: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.entries.get(k).map(|(v, _, _)| v)
    }

    /// Hold `v` under `k` (replacing what `k` held), forgetting the oldest entries until
    /// it fits. An entry costing more than the whole bound is not held.
    pub fn insert(&mut self, k: K, v: V, cost: usize) {
        self.remove(&k);
        if cost > self.max_cost || self.max_cost == 0 {
            return;
        }
        while self.cost + cost > self.max_cost {
            let Some((old, n)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.2 == n) {
                self.remove(&old);
            }
        }
        // Lingering insertions of removed entries: keep `order` within twice the entries
        // (a map whose entries are removed again and again, as the sled store's are on
        // every write, would otherwise grow it without end).
        if self.order.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(k, n)| entries.get(k).is_some_and(|e| e.2 == *n));
        }
        self.next += 1;
        self.cost += cost;
        self.entries.insert(k.clone(), (v, cost, self.next));
        self.order.push_back((k, self.next));
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let (v, c, _) = self.entries.remove(k)?;
        self.cost -= c;
        Some(v)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sum of the held entries' costs.
    pub fn cost(&self) -> usize {
        self.cost
    }

    pub fn max_cost(&self) -> usize {
        self.max_cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_first_when_the_count_bound_is_reached() {
        let mut m = FifoMap::new(2);
        m.insert(1, "a", 1);
        m.insert(2, "b", 1);
        m.insert(3, "c", 1);
        assert_eq!(
            (m.get(&1), m.get(&2), m.get(&3)),
            (None, Some(&"b"), Some(&"c"))
        );
        assert_eq!((m.len(), m.cost()), (2, 2));
    }

    #[test]
    fn bounds_by_cost_and_refuses_what_alone_exceeds_it() {
        let mut m = FifoMap::new(100);
        m.insert("a", (), 60);
        m.insert("b", (), 30);
        m.insert("c", (), 20); // 110 > 100: "a" goes
        assert!(m.get(&"a").is_none() && m.get(&"b").is_some() && m.get(&"c").is_some());
        assert_eq!(m.cost(), 50);
        m.insert("huge", (), 101);
        assert!(m.get(&"huge").is_none());
        assert_eq!(m.cost(), 50, "a refused entry evicts nothing");
    }

    #[test]
    fn replacing_and_removing_keep_the_cost_right() {
        let mut m = FifoMap::new(10);
        m.insert("k", 1, 4);
        m.insert("k", 2, 6);
        assert_eq!((m.get(&"k"), m.cost(), m.len()), (Some(&2), 6, 1));
        assert_eq!(m.remove(&"k"), Some(2));
        assert_eq!((m.cost(), m.len()), (0, 0));
        assert_eq!(m.remove(&"k"), None);
    }

    #[test]
    fn keys_removed_again_and_again_do_not_grow_the_order() {
        let mut m = FifoMap::new(3);
        for i in 0..1000 {
            m.insert(i, (), 1);
            m.remove(&i);
        }
        assert!(m.order.len() <= 16 + 2, "order holds {}", m.order.len());
        m.insert(7, (), 1);
        assert_eq!(m.get(&7), Some(&()));
    }

    #[test]
    fn a_replaced_entry_is_not_evicted_by_its_old_insertion() {
        let mut m = FifoMap::new(2);
        m.insert("a", 1, 1);
        m.insert("b", 1, 1);
        m.insert("a", 2, 1); // "a" is now the newest
        m.insert("c", 1, 1); // evicts "b", the oldest live insertion
        assert_eq!(
            (m.get(&"a"), m.get(&"b"), m.get(&"c")),
            (Some(&2), None, Some(&1))
        );
    }

    #[test]
    fn zero_bound_holds_nothing() {
        let mut m = FifoMap::new(0);
        m.insert(1, (), 0);
        m.insert(2, (), 1);
        assert!(m.is_empty());
    }
}
