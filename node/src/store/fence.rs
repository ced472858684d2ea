//! Fencing: every deal write a cluster leader makes names the lease it holds, and the
//! [`LeaseGate`] says which fence that is and until when it may be used. The lease loop
//! opens and closes the gate; the service and the miner-info updater write through it.
//! Uses nothing else of the node.

use std::{sync::Mutex, time::Instant};

/// The writer of a fenced write: a node and the lease generation it believes it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub node: String,
    pub generation: u64,
}

/// The fence every deal write uses, and until when (local monotonic time) it may be used.
#[derive(Debug, Default)]
pub struct LeaseGate {
    state: Mutex<Option<(Fence, Instant)>>,
}

impl LeaseGate {
    pub fn new() -> LeaseGate {
        LeaseGate::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Fence, Instant)>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fence to write under now; `None` when this node is not the holder or its last
    /// renewal is too old (self-fencing).
    pub fn current(&self) -> Option<Fence> {
        match &*self.lock() {
            Some((f, until)) if Instant::now() < *until => Some(f.clone()),
            _ => None,
        }
    }

    /// Open (or extend) the gate for `fence` until `until`.
    pub fn open(&self, fence: Fence, until: Instant) {
        *self.lock() = Some((fence, until));
    }

    /// Close the gate: no more deal writes.
    pub fn close(&self) {
        *self.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fence(generation: u64) -> Fence {
        Fence {
            node: "a".into(),
            generation,
        }
    }

    #[test]
    fn the_gate_is_shut_without_a_fence_and_after_its_deadline() {
        let gate = LeaseGate::new();
        assert_eq!(gate.current(), None);
        gate.open(fence(3), Instant::now() + Duration::from_secs(60));
        assert_eq!(gate.current(), Some(fence(3)));
        gate.open(fence(3), Instant::now() - Duration::from_millis(1));
        assert_eq!(gate.current(), None, "self-fenced after accept_until");
        gate.open(fence(4), Instant::now() + Duration::from_secs(60));
        gate.close();
        assert_eq!(gate.current(), None);
    }
}
