//! `dealport store copy`: what moving a node's embedded store into a cluster database may
//! do, decided from what each side already holds. A copy that stopped half-way is run
//! again: what the target already has from this source is kept, never written twice, and
//! anything the target holds from somewhere else stops the copy before a write.

use crate::wire::Cid;

/// What to do with the node's identity key (its PeerID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityPlan {
    /// The target has none: store the source's, so the PeerID stays.
    Copy,
    /// The target already has the same key (an earlier run): nothing to write.
    Same,
    /// The target has another node's key: copying would change the PeerID the chain
    /// names, or merge two nodes' histories. Refuse.
    Conflict,
    /// The source has none (a store never run): nothing to copy.
    NoSource,
}

pub fn identity_plan(source: Option<&[u8]>, target: Option<&[u8]>) -> IdentityPlan {
    match (source, target) {
        (None, _) => IdentityPlan::NoSource,
        (Some(_), None) => IdentityPlan::Copy,
        (Some(s), Some(t)) if s == t => IdentityPlan::Same,
        (Some(_), Some(_)) => IdentityPlan::Conflict,
    }
}

/// Where the copy of an advertisement chain starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainPlan {
    /// Copy the source's advertisements from this index of the list on (0: all of them;
    /// the list's length: none left).
    From(usize),
    /// The target's chain is not a prefix of the source's: appending would fork it.
    Conflict { target_head: Cid, target_seq: u64 },
}

/// The copy's start in `source` (the source's advertisements by position, oldest first,
/// positions counted from 1 without a gap) given the target's head (its CID and
/// position), if it has one.
pub fn chain_plan(source: &[(u64, Cid)], target_head: Option<(u64, &Cid)>) -> ChainPlan {
    let Some((seq, cid)) = target_head else {
        return ChainPlan::From(0);
    };
    let at = usize::try_from(seq).ok().and_then(|s| s.checked_sub(1));
    match at.and_then(|i| source.get(i).map(|ad| (i, ad))) {
        Some((i, (s, c))) if *s == seq && c == cid => ChainPlan::From(i + 1),
        _ => ChainPlan::Conflict {
            target_head: cid.clone(),
            target_seq: seq,
        },
    }
}

/// Why a source chain cannot be copied as it is: its positions must run 1, 2, 3...
/// (each advertisement names the one before as its `PreviousID`, which the copy checks
/// as it goes).
pub fn check_positions(source: &[(u64, Cid)]) -> Result<(), String> {
    for (i, (seq, cid)) in source.iter().enumerate() {
        if *seq != i as u64 + 1 {
            return Err(format!(
                "advertisement {cid} is recorded at position {seq}, expected {}",
                i + 1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        Cid::dag_cbor_blake2b(&[n])
    }

    #[test]
    fn identity_is_copied_once_and_never_replaced() {
        assert_eq!(identity_plan(Some(b"k"), None), IdentityPlan::Copy);
        assert_eq!(identity_plan(Some(b"k"), Some(b"k")), IdentityPlan::Same);
        assert_eq!(
            identity_plan(Some(b"k"), Some(b"j")),
            IdentityPlan::Conflict
        );
        assert_eq!(identity_plan(None, Some(b"j")), IdentityPlan::NoSource);
        assert_eq!(identity_plan(None, None), IdentityPlan::NoSource);
    }

    #[test]
    fn a_chain_resumes_after_the_targets_head() {
        let src = vec![(1, cid(1)), (2, cid(2)), (3, cid(3))];
        assert_eq!(chain_plan(&src, None), ChainPlan::From(0));
        assert_eq!(chain_plan(&src, Some((2, &cid(2)))), ChainPlan::From(2));
        assert_eq!(chain_plan(&src, Some((3, &cid(3)))), ChainPlan::From(3));
        assert_eq!(chain_plan(&[], None), ChainPlan::From(0));
    }

    #[test]
    fn a_foreign_or_longer_target_chain_is_a_conflict() {
        let src = vec![(1, cid(1)), (2, cid(2))];
        for (seq, c) in [(2, cid(9)), (3, cid(3)), (0, cid(1)), (1, cid(2))] {
            assert_eq!(
                chain_plan(&src, Some((seq, &c))),
                ChainPlan::Conflict {
                    target_head: c.clone(),
                    target_seq: seq
                },
                "target head at {seq}"
            );
        }
    }

    #[test]
    fn positions_must_run_without_a_gap() {
        assert!(check_positions(&[(1, cid(1)), (2, cid(2))]).is_ok());
        assert!(check_positions(&[]).is_ok());
        let gap = check_positions(&[(1, cid(1)), (3, cid(3))]).unwrap_err();
        assert!(gap.contains("position 3, expected 2"), "{gap}");
    }
}
