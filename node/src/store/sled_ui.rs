//! The sled store's dashboard indexes, written in the same transaction as the deal so a
//! page reads a key range instead of scanning the deals:
//!
//! - `ui_lists` (keys only): `t ‖ time ‖ uuid` (every deal), `s ‖ state ‖ time ‖ uuid`
//!   (by state code), `c ‖ len ‖ client ‖ state ‖ time ‖ uuid` (by the proposal's client
//!   address). `time` is the acceptance time as 8 order-preserving bytes.
//! - `ui_counters`: `s ‖ state` -> deals in that state (u64), `h ‖ hour` -> deals
//!   accepted in that hour and how many of those failed since (2 × u64).
//! - `ui_timeline`: `uuid ‖ state` -> unix milliseconds it was first written in that state
//!   (not written for `Accepted` at insert: the record's acceptance time is that).
//!
//! A list page merges one range per admitted state code (at most 14), newest or oldest
//! first from the cursor, and stops after `limit` keys: its cost follows the page, not the
//! store.

use std::ops::Bound;

use ::sled::{transaction::TransactionalTree, Tree};
use dealport_core::{
    dashboard::{
        all_state_codes, deal_state_code, from_state_code, hour_of, state_code, Cursor, DealQuery,
        HourCount, Order, StateCounts,
    },
    deal::{Checkpoint, DealRecord},
};

use super::{merge::merge_runs, sled_backend as backend, StoreError, StoredDeal};

type TxResult<T> = Result<T, ::sled::transaction::UnabortableTransactionError>;

/// The immutable facts of a deal its index keys are made of.
#[derive(Debug, Clone)]
pub(super) struct UiFacts {
    pub uuid: [u8; 16],
    pub created_at_unix_nanos: i64,
    pub client: String,
    pub state: u8,
}

impl UiFacts {
    pub fn of(d: &DealRecord) -> UiFacts {
        UiFacts {
            uuid: d.uuid.0,
            created_at_unix_nanos: d.created_at_unix_nanos,
            client: d.params.client_deal_proposal.proposal.client.to_string(),
            state: deal_state_code(d),
        }
    }

    fn suffix(&self) -> [u8; 24] {
        let mut k = [0u8; 24];
        k[..8].copy_from_slice(&time_bytes(self.created_at_unix_nanos));
        k[8..].copy_from_slice(&self.uuid);
        k
    }

    /// The deal's three keys in `ui_lists` in state `state`.
    fn list_keys(&self, state: u8) -> [Vec<u8>; 3] {
        let s = self.suffix();
        [
            [&[b't'][..], &s].concat(),
            [&[b's', state][..], &s].concat(),
            [&client_prefix(&self.client)[..], &[state], &s].concat(),
        ]
    }
}

/// Order-preserving bytes of a signed time.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn client_prefix(client: &str) -> Vec<u8> {
    let c = client.as_bytes();
    let c = &c[..c.len().min(255)];
    [&[b'c', c.len() as u8][..], c].concat()
}

fn count_key(state: u8) -> [u8; 2] {
    [b's', state]
}

fn hour_key(hour: i64) -> [u8; 9] {
    let mut k = [b'h'; 9];
    k[1..].copy_from_slice(&time_bytes(hour));
    k
}

fn u64_at(v: &[u8], i: usize) -> u64 {
    v.get(i * 8..i * 8 + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Add `deltas` to the u64s stored at `key` (missing ones read as 0).
fn add(counters: &TransactionalTree, key: &[u8], deltas: &[i64]) -> TxResult<()> {
    let old = counters.get(key)?;
    let old = old.as_deref().unwrap_or(&[]);
    let mut out = Vec::with_capacity(deltas.len() * 8);
    for (i, d) in deltas.iter().enumerate() {
        out.extend_from_slice(&u64_at(old, i).saturating_add_signed(*d).to_be_bytes());
    }
    counters.insert(key, out)?;
    Ok(())
}

/// A new deal's index entries (inside the insert's transaction).
pub(super) fn on_insert(
    lists: &TransactionalTree,
    counters: &TransactionalTree,
    timeline: &TransactionalTree,
    f: &UiFacts,
) -> TxResult<()> {
    for k in f.list_keys(f.state) {
        lists.insert(k, &[])?;
    }
    add(counters, &count_key(f.state), &[1])?;
    let failed = from_state_code(f.state).is_some_and(|(_, failed)| failed);
    add(
        counters,
        &hour_key(hour_of(f.created_at_unix_nanos)),
        &[1, i64::from(failed)],
    )?;
    // A deal stored at `Accepted` (every new deal) gets no timeline entry: its time in
    // `Accepted` is its acceptance time, which the record holds ([`timeline`] adds it),
    // and an entry keyed by UUID would cost every insert one more random leaf, which a
    // store of a million deals reads back from disk (BENCHMARKS.md). Other states come
    // from a bulk load or an index rebuilt for an old store; an entry already there is
    // kept.
    if f.state != accepted() {
        let tk = timeline_key(f);
        if timeline.get(&tk)?.is_none() {
            let at_ms = f.created_at_unix_nanos.div_euclid(1_000_000);
            timeline.insert(tk, &at_ms.to_be_bytes())?;
        }
    }
    Ok(())
}

/// The state code of a deal at `Accepted`, not failed.
fn accepted() -> u8 {
    state_code(Checkpoint::Accepted, false)
}

/// The deal's key in `ui_timeline` for its current state.
fn timeline_key(f: &UiFacts) -> Vec<u8> {
    [&f.uuid[..], &[f.state]].concat()
}

/// A deal that moved from state `old` to `f.state` at `now_ms` (inside the update's
/// transaction); nothing when the state did not change.
pub(super) fn on_update(
    lists: &TransactionalTree,
    counters: &TransactionalTree,
    timeline: &TransactionalTree,
    old: u8,
    f: &UiFacts,
    now_ms: i64,
) -> TxResult<()> {
    if old == f.state {
        return Ok(());
    }
    for k in f.list_keys(old) {
        lists.remove(k)?;
    }
    for k in f.list_keys(f.state) {
        lists.insert(k, &[])?;
    }
    add(counters, &count_key(old), &[-1])?;
    add(counters, &count_key(f.state), &[1])?;
    let failed = |s: u8| from_state_code(s).is_some_and(|(_, f)| f);
    let d = i64::from(failed(f.state)) - i64::from(failed(old));
    if d != 0 {
        add(
            counters,
            &hour_key(hour_of(f.created_at_unix_nanos)),
            &[0, d],
        )?;
    }
    let tk = timeline_key(f);
    if timeline.get(&tk)?.is_none() {
        timeline.insert(tk, &now_ms.to_be_bytes())?;
    }
    Ok(())
}

/// The state code of a stored record, from its checkpoint and error alone.
pub(super) fn stored_state(value: &[u8]) -> Option<u8> {
    let (checkpoint, failed) = StoredDeal::progress(value)?;
    Some(state_code(checkpoint, failed))
}

/// The UUIDs of a page of `q`, in its order.
pub(super) fn query(lists: &Tree, q: &DealQuery) -> Result<Vec<[u8; 16]>, StoreError> {
    let codes: Vec<u8> = q
        .state
        .codes()
        .unwrap_or_else(|| all_state_codes().collect());
    let prefixes: Vec<Vec<u8>> = match (&q.client, q.state.codes()) {
        (None, None) => vec![vec![b't']],
        (None, Some(_)) => codes.iter().map(|c| vec![b's', *c]).collect(),
        (Some(client), _) => codes
            .iter()
            .map(|c| [&client_prefix(client)[..], &[*c]].concat())
            .collect(),
    };
    let cursor = q.after.map(|c: Cursor| {
        let mut s = [0u8; 24];
        s[..8].copy_from_slice(&time_bytes(c.created_at_unix_nanos));
        s[8..].copy_from_slice(&c.uuid.0);
        s
    });
    let newest = q.order == Order::Newest;
    // One run per prefix, of the 24-byte suffixes (time ‖ uuid), merged in the page's order.
    let runs: Vec<_> = prefixes
        .iter()
        .map(|p| {
            let lo = [&p[..], &[0u8; 24]].concat();
            let hi = [&p[..], &[0xffu8; 24]].concat();
            let (start, end) = match (cursor, newest) {
                (Some(c), true) => (Bound::Included(lo), Bound::Excluded([&p[..], &c].concat())),
                (Some(c), false) => (Bound::Excluded([&p[..], &c].concat()), Bound::Included(hi)),
                (None, _) => (Bound::Included(lo), Bound::Included(hi)),
            };
            let plen = p.len();
            let range = lists.range::<Vec<u8>, _>((start, end));
            let it: Box<dyn Iterator<Item = ::sled::Result<(::sled::IVec, ::sled::IVec)>>> =
                if newest {
                    Box::new(range.rev())
                } else {
                    Box::new(range)
                };
            it.filter_map(move |kv| match kv {
                Ok((k, _)) => k.get(plen..).map(|s| Ok(s.to_vec())),
                Err(e) => Some(Err(e)),
            })
        })
        .collect();
    let suffixes = merge_runs(runs, q.limit, newest).map_err(backend)?;
    Ok(suffixes
        .iter()
        .filter_map(|s| <[u8; 16]>::try_from(s.get(8..24)?).ok())
        .collect())
}

/// Deals per state code.
pub(super) fn counts(counters: &Tree) -> Result<StateCounts, StoreError> {
    let mut out = Vec::new();
    for kv in counters.scan_prefix([b's']) {
        let (k, v) = kv.map_err(backend)?;
        let n = u64_at(&v, 0);
        if k.len() == 2 && n > 0 {
            out.push((k[1], n));
        }
    }
    Ok(StateCounts(out))
}

/// Accepted / failed per hour from `since_hour` on.
pub(super) fn hourly(counters: &Tree, since_hour: i64) -> Result<Vec<HourCount>, StoreError> {
    let mut out = Vec::new();
    for kv in counters.range(hour_key(since_hour).to_vec()..vec![b'h' + 1]) {
        let (k, v) = kv.map_err(backend)?;
        let Ok(t) = <[u8; 8]>::try_from(&k[1..]) else {
            continue;
        };
        out.push(HourCount {
            hour: (u64::from_be_bytes(t) ^ (1 << 63)) as i64,
            accepted: u64_at(&v, 0),
            failed: u64_at(&v, 1),
        });
    }
    Ok(out)
}

/// `(state code, unix ms)` of a deal's timeline, in state-code order: its entries, and
/// `Accepted` at `created_at_unix_nanos` (the deal's acceptance) when no entry says
/// otherwise (see [`on_insert`]).
pub(super) fn timeline(
    tree: &Tree,
    uuid: &[u8; 16],
    created_at_unix_nanos: Option<i64>,
) -> Result<Vec<(u8, i64)>, StoreError> {
    let mut out = Vec::new();
    for kv in tree.scan_prefix(uuid) {
        let (k, v) = kv.map_err(backend)?;
        if let (Some(code), Ok(ms)) = (k.get(16), <[u8; 8]>::try_from(v.as_ref())) {
            out.push((*code, i64::from_be_bytes(ms)));
        }
    }
    if let Some(created) = created_at_unix_nanos {
        if out.first().is_none_or(|(code, _)| *code != accepted()) {
            out.insert(0, (accepted(), created.div_euclid(1_000_000)));
        }
    }
    Ok(out)
}
