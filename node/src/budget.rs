//! A count of bytes held against a maximum, shared by every reader of one kind of request
//! (libp2p request buffers, HTTP request bodies), so memory for them is bounded however
//! many arrive at once.
//!
//! Layer: bottom; uses no other module of the node.
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    max: usize,
}

impl ByteBudget {
    pub fn new(max: usize) -> ByteBudget {
        ByteBudget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Take `n` bytes; `false` (nothing taken) if that would go over the maximum.
    pub fn try_take(&self, n: usize) -> bool {
        if self.used.fetch_add(n, Ordering::AcqRel) + n > self.max {
            self.used.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Give back `n` bytes taken before.
    pub fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Bytes one request holds of a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub struct Held<'a> {
    budget: &'a ByteBudget,
    n: usize,
}

impl<'a> Held<'a> {
    pub fn new(budget: &'a ByteBudget) -> Held<'a> {
        Held { budget, n: 0 }
    }

    /// Hold `add` more bytes; `false` (nothing changed) if the budget has no room.
    pub fn grow(&mut self, add: usize) -> bool {
        let ok = self.budget.try_take(add);
        if ok {
            self.n += add;
        }
        ok
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.give(self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_come_back_and_the_maximum_holds() {
        let b = ByteBudget::new(100);
        {
            let mut a = Held::new(&b);
            assert!(a.grow(60));
            let mut c = Held::new(&b);
            assert!(!c.grow(41), "over the maximum");
            assert!(c.grow(40));
            assert_eq!(b.used(), 100);
        }
        assert_eq!(b.used(), 0);
    }
}
