//! The embedded store: sled 0.34 in `<data dir>/store`.
//!
//! Trees: `meta` (`identity` -> key bytes), `deals` (16 UUID bytes -> [`StoredDeal`],
//! format 2 written, format 1 read), `by_proposal_cid` and `by_signed_proposal_cid` (CID
//! bytes -> UUID bytes) and `by_piece_cid` (keys only), these four in generations of
//! [`GENERATION_DEALS`] deals (`deals.1`, … after the first; see [`super::sled_gens`]);
//! `live_by_checkpoint` (keys only);
//! the piece directory: `piece_index` (piece CID bytes -> state JSON), `piece_blocks`
//! (piece CID bytes ‖ offset (8 bytes BE) -> length (8 bytes BE) ‖ multihash) and
//! `blocks_by_multihash` (multihash ‖ piece CID bytes ‖ offset -> length); the IPNI
//! chain (`ipni_*`); the dashboard's `ui_lists`, `ui_counters` and `ui_timeline` (see
//! [`super::sled_ui`]). A new deal goes into all the deal trees in one transaction, with
//! the new deals that arrived meanwhile ([`super::write_group`]), and is flushed before
//! [`Store::insert_new_deal`] returns. sled's calls block, so every
//! operation runs on the runtime's blocking pool.
//!
//! The lease: a sled store belongs to one process (its data dir is locked), so there is
//! nobody to share a lease with. It still keeps one, in memory, with the same rules as the
//! cluster store (conditional acquire / renew / release, fenced writes) on the local wall
//! clock, so the node's lease loop runs unchanged on it: the single node acquires
//! generation 1 at its first poll after every open, and keeps it.

use std::{
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ::sled::{
    transaction::{ConflictableTransactionResult, TransactionError},
    Transactional, Tree,
};
use dealport_core::{
    dashboard::{DealQuery, HourCount, StateCounts},
    deal::{Checkpoint, DealRecord},
    ipni::Block,
    piece_index::{BlockEntry, BlockLocation, IndexState},
    wire::{Cid, DealUuid},
};

use super::group_flush::{GroupFlush, Writing};
use super::merge::merge_runs;
use super::recent::RecentDeals;
pub use super::sled_gens::GENERATION_DEALS;
use super::sled_gens::{CidIndex, GenTrees, Generations, InSealed};
use super::sled_ui::{self, UiFacts};
use super::write_group::WriteGroup;
use super::{
    is_live, sled_backend as backend, DbMillis, Fence, Inserted, IpniAdRef, IpniHead, IpniPublish,
    LeaseGrant, LeaseRead, LeaseRow, Published, RelayTarget, Store, StoreError, StoreFuture,
    StoredDeal, CHECKPOINTS,
};
use crate::runtime::{unblock, Runtime};

const IDENTITY_KEY: &[u8] = b"identity";
/// How long `open` retries a held lock before saying the data dir is in use. A store
/// just dropped in this process releases its lock when sled's flusher thread ends.
const LOCK_RETRY: Duration = Duration::from_millis(600);
/// sled's page cache (its default is 1 GiB, which a store of a million deals fills: the
/// node's memory then follows the history). The background work reads only the live
/// index and status reads one deal, so a small cache serves both: at a million deals
/// acceptance was the same with 16, 32 and 64 MiB (BENCHMARKS.md, "sled leaves that
/// split by size"), and the node's memory at rest 40-50 MB less than with 64.
const CACHE_BYTES: u64 = 16 << 20;
/// Most new deals written in one transaction by the write group (16 streams of one
/// client make groups of a few; the bound keeps a transaction's memory small).
const INSERT_GROUP: usize = 64;
/// Most new deals waiting for the write group's writer; past it a new deal is refused
/// at once (a writer stalled on the disk must not make the queue grow without bound).
const INSERT_QUEUE: usize = 4096;
/// Deals per transaction in [`SledStore::bulk_load`].
const BULK_GROUP: usize = 256;

struct Inner {
    path: PathBuf,
    db: ::sled::Db,
    meta: Tree,
    /// `deals`, `by_proposal_cid`, `by_signed_proposal_cid` and `by_piece_cid`, in
    /// generations ([`super::sled_gens`]).
    gens: Generations,
    /// Deals still at work: `[queue] ‖ uuid` -> nothing, kept in the same transaction
    /// as the deal (see [`live_key`]).
    live: Tree,
    /// The piece directory (see the module docs).
    piece_index: Tree,
    piece_blocks: Tree,
    blocks_by_multihash: Tree,
    /// IPNI advertisements and entry chunks: CID bytes -> dag-json bytes.
    ipni_blocks: Tree,
    /// IPNI advertisements by deal: `uuid ‖ is_rm ‖ part (BE u32)` -> `seq (BE u64) ‖ CID`.
    ipni_ads: Tree,
    /// The chain head: `head` -> `seq (BE u64) ‖ CID`.
    ipni_head: Tree,
    /// Deals announced and not yet removed: uuid -> nothing.
    ipni_announced: Tree,
    /// The dashboard's indexes (`sled_ui`), written with the deal.
    ui_lists: Tree,
    ui_counters: Tree,
    ui_timeline: Tree,
    lease: Mutex<LocalLease>,
    group_flush: GroupFlush,
    /// New deals arriving together are written in one transaction (see
    /// [`super::write_group`]).
    inserts: WriteGroup<InsertJob, Result<Inserted, StoreError>>,
    recent: RecentDeals<DealRecord>,
}

/// The meta key marking that `live` holds every live deal (built once on the first open
/// of a store written before the index existed).
/// Version 2 keeps offline deals waiting for their data apart from online ones waiting
/// for a download; a store with version 1 has its index rebuilt once.
const LIVE_INDEX_BUILT: &[u8] = b"live_index_v2";

/// The meta key marking that `by_piece_cid` holds every deal (built once, as the live
/// index).
const PIECE_INDEX_BUILT: &[u8] = b"piece_index_v1";

/// The meta key marking that the dashboard's trees hold every deal (built once).
const UI_INDEX_BUILT: &[u8] = b"ui_index_v1";

/// A deal's key in the piece index.
fn piece_key(piece: &Cid, uuid: &[u8; 16]) -> Vec<u8> {
    let mut k = piece.as_bytes().to_vec();
    k.extend_from_slice(uuid);
    k
}

/// The live index's queue of offline deals at `Accepted` (waiting for an import, which
/// no background task scans for); the other queues are the checkpoints' positions.
const AWAITING_IMPORT: u8 = 0x40;

/// A deal's key in the live index, or `None` when it is failed or complete. Its first
/// byte is the queue: the checkpoint, except that offline deals at `Accepted` have
/// their own, so the transfer runner reads only the deals it can download.
fn live_key(
    checkpoint: Checkpoint,
    failed: bool,
    offline: bool,
    uuid: &[u8; 16],
) -> Option<[u8; 17]> {
    if !is_live(checkpoint, failed) {
        return None;
    }
    let mut k = [0u8; 17];
    k[0] = match checkpoint {
        Checkpoint::Accepted if offline => AWAITING_IMPORT,
        c => checkpoint_byte(c),
    };
    k[1..].copy_from_slice(uuid);
    Some(k)
}

/// A deal's live-index change: its new key, and whether it is offline (which never
/// changes, so the old key follows from the old record's checkpoint and error).
#[derive(Debug, Clone, Copy)]
struct LiveEntry {
    key: Option<[u8; 17]>,
    offline: bool,
}

impl LiveEntry {
    fn of(d: &DealRecord) -> LiveEntry {
        LiveEntry {
            key: live_key(d.checkpoint, d.is_failed(), d.params.is_offline, &d.uuid.0),
            offline: d.params.is_offline,
        }
    }
}

fn checkpoint_byte(c: Checkpoint) -> u8 {
    CHECKPOINTS.iter().position(|x| *x == c).unwrap_or(0) as u8
}

/// The live key of a stored record of a deal that is `offline` or not, from its
/// checkpoint and error alone.
fn stored_live_key(uuid: &[u8; 16], value: &[u8], offline: bool) -> Option<[u8; 17]> {
    let (checkpoint, failed) = StoredDeal::progress(value)?;
    live_key(checkpoint, failed, offline, uuid)
}

/// The in-memory lease row of a sled store (see the module docs).
#[derive(Debug, Default)]
struct LocalLease {
    row: Option<LeaseRow>,
    local_listen: Option<String>,
    announce: Vec<String>,
}

impl LocalLease {
    fn holds(&self, fence: &Fence, now: DbMillis) -> bool {
        self.row.as_ref().is_some_and(|r| {
            r.holder.as_deref() == Some(fence.node.as_str())
                && r.generation == fence.generation
                && r.is_live(now)
        })
    }

    fn check(&self, fence: &Fence) -> Result<(), StoreError> {
        if self.holds(fence, now_millis()) {
            Ok(())
        } else {
            Err(StoreError::Fenced {
                node: fence.node.clone(),
                generation: fence.generation,
            })
        }
    }
}

/// The local wall clock as the "database time" of an embedded store.
fn now_millis() -> DbMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as DbMillis)
        .unwrap_or(0)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The sled backend of [`Store`].
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
    rt: Arc<dyn Runtime>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn is_lock_error(e: &::sled::Error) -> bool {
    matches!(e, ::sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl SledStore {
    /// Load `deals` with one flush at the end, skipping any already known: an
    /// administrative load (benchmarks, imports) into a store no node runs on. How many
    /// were written.
    pub fn bulk_load(&self, deals: Vec<DealRecord>) -> StoreFuture<'_, usize> {
        self.run(move |inner| {
            let mut written = 0;
            for chunk in deals.chunks(BULK_GROUP) {
                let news: Vec<NewDeal> = chunk.iter().map(NewDeal::of).collect();
                let outcomes = inner.insert_unflushed(&news.iter().collect::<Vec<_>>())?;
                written += outcomes.iter().filter(|o| **o == Inserted::Yes).count();
            }
            inner.flush()?;
            Ok(written)
        })
    }

    /// The store directory inside a data dir.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("store")
    }

    /// Open (or create) the store of `data_dir`. Blocks; call it at start-up.
    /// A store held by another process gives [`StoreError::InUse`] naming `data_dir`.
    pub fn open(data_dir: &Path, rt: Arc<dyn Runtime>) -> Result<SledStore, StoreError> {
        Self::open_with(data_dir, rt, GENERATION_DEALS)
    }

    /// [`SledStore::open`] with `deals_per_generation` new deals in each generation of
    /// the deal trees ([`super::sled_gens`]; tests use a few to have many).
    pub fn open_with(
        data_dir: &Path,
        rt: Arc<dyn Runtime>,
        deals_per_generation: usize,
    ) -> Result<SledStore, StoreError> {
        let path = Self::path_in(data_dir);
        let started = Instant::now();
        let db = loop {
            match ::sled::Config::new()
                .path(&path)
                .cache_capacity(CACHE_BYTES)
                .open()
            {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) => {
                    if started.elapsed() >= LOCK_RETRY {
                        return Err(StoreError::InUse(data_dir.to_path_buf()));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(StoreError::Open {
                        path,
                        message: e.to_string(),
                    })
                }
            }
        };
        restrict_permissions(&path);
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let meta = tree("meta")?;
        let inner = Inner {
            gens: Generations::open(&db, &meta, deals_per_generation)?,
            meta,
            live: tree("live_by_checkpoint")?,
            piece_index: tree("piece_index")?,
            piece_blocks: tree("piece_blocks")?,
            blocks_by_multihash: tree("blocks_by_multihash")?,
            ipni_blocks: tree("ipni_blocks")?,
            ipni_ads: tree("ipni_ads")?,
            ipni_head: tree("ipni_head")?,
            ipni_announced: tree("ipni_announced")?,
            ui_lists: tree("ui_lists")?,
            ui_counters: tree("ui_counters")?,
            ui_timeline: tree("ui_timeline")?,
            lease: Mutex::new(LocalLease::default()),
            group_flush: GroupFlush::new(),
            inserts: WriteGroup::new(INSERT_GROUP, INSERT_QUEUE),
            recent: RecentDeals::new(),
            path,
            db,
        };
        inner.build_live_index()?;
        inner.build_piece_index()?;
        inner.build_ui_index()?;
        // After the builds above, which may add to a store's one generation: a store
        // from before generations, with many deals, has it sealed here, once.
        drop(inner.gens.for_insert()?);
        Ok(SledStore {
            inner: Arc::new(inner),
            rt,
        })
    }

    /// How many generations the deal trees are in ([`super::sled_gens`]), the open one
    /// included.
    pub fn deal_generations(&self) -> usize {
        self.inner.gens.view().count()
    }

    /// Insert a new deal, durably, in a group with the new deals arriving meanwhile
    /// (see [`super::write_group`]): the first to find no group being written starts the
    /// writer on the blocking pool.
    fn insert(&self, job: InsertJob) -> StoreFuture<'_, Inserted> {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        Box::pin(async move {
            let submitted = inner.inserts.submit(job).map_err(|full| {
                StoreError::Backend(format!(
                    "{} new deals are already waiting to be written (is the disk stalled?)",
                    full.0
                ))
            })?;
            if submitted.start_writer {
                let writer = InsertWriter {
                    inner,
                    started: false,
                };
                rt.spawn_blocking(Box::new(move || writer.run()));
            }
            submitted.result.await.map_err(|_| StoreError::Dropped)?
        })
    }

    /// Run `f` on the blocking pool.
    fn run<'a, T, F>(&'a self, f: F) -> StoreFuture<'a, T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let rt = self.rt.clone();
        Box::pin(async move {
            unblock(&*rt, move || f(&inner))
                .await
                .ok_or(StoreError::Dropped)?
        })
    }
}

/// Owner-only permissions on everything sled created (best effort).
fn restrict_permissions(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                let mode = if is_dir { 0o700 } else { 0o600 };
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
                if is_dir {
                    stack.push(p);
                }
            }
        }
    }
}

impl Inner {
    /// [`Inner::get_deal`], remembering what it read in `recent`.
    fn get_recent_deal(&self, uuid: &[u8; 16]) -> Result<Option<DealRecord>, StoreError> {
        let generation = self.recent.generation();
        let read = self.read_deal(uuid)?;
        if let Some((deal, stored_bytes)) = &read {
            self.recent.offer(generation, *uuid, deal, *stored_bytes);
        }
        Ok(read.map(|(deal, _)| deal))
    }

    fn get_deal(&self, uuid: &[u8]) -> Result<Option<DealRecord>, StoreError> {
        Ok(self.read_deal(uuid)?.map(|(deal, _)| deal))
    }

    /// The deal under `uuid` and the size of its stored record.
    fn read_deal(&self, uuid: &[u8]) -> Result<Option<(DealRecord, usize)>, StoreError> {
        let view = self.gens.view();
        let Some((_, v)) = view.find(uuid)? else {
            return Ok(None);
        };
        let key = hex::encode(uuid);
        let deal = StoredDeal::decode(&key, &v)?;
        // Format 2 keeps the UUID only in the key and the params: they must agree.
        if deal.uuid.0[..] != *uuid {
            return Err(StoreError::Corrupt {
                key,
                message: format!("the record is deal {}", deal.uuid),
            });
        }
        Ok(Some((deal, v.len())))
    }

    fn get_by_index(&self, index: CidIndex, cid: &Cid) -> Result<Option<DealRecord>, StoreError> {
        match self.gens.view().uuid_by(index, cid.as_bytes())? {
            Some(uuid) => self.get_deal(&uuid),
            None => Ok(None),
        }
    }

    /// Durable before returning; concurrent writers share one fsync (group commit).
    fn flush(&self) -> Result<(), StoreError> {
        self.group_flush.flush(|| self.flush_now())
    }

    /// [`Inner::flush`] for a deal write announced with `GroupFlush::writing`.
    fn flush_written(&self, w: Writing<'_>) -> Result<(), StoreError> {
        w.flush(|| self.flush_now())
    }

    fn flush_now(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn lease(&self) -> MutexGuard<'_, LocalLease> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fill the live index from the deals once, for a store written before it existed.
    fn build_live_index(&self) -> Result<(), StoreError> {
        if self.meta.get(LIVE_INDEX_BUILT).map_err(backend)?.is_some() {
            return Ok(());
        }
        self.live.clear().map_err(backend)?;
        for kv in self.every_deal() {
            let (k, v) = kv?;
            // A record that does not decode stays out of the index, as it would of a read.
            let Ok(d) = StoredDeal::decode(&hex::encode(&k), &v) else {
                continue;
            };
            if let Some(key) = LiveEntry::of(&d).key {
                self.live.insert(key, &[]).map_err(backend)?;
            }
        }
        self.meta.insert(LIVE_INDEX_BUILT, &[]).map_err(backend)?;
        self.flush()
    }

    /// Fill the piece index from the deals once, for a store written before it existed.
    fn build_piece_index(&self) -> Result<(), StoreError> {
        if self.meta.get(PIECE_INDEX_BUILT).map_err(backend)?.is_some() {
            return Ok(());
        }
        for trees in self.gens.view().trees() {
            for kv in trees.deals.iter() {
                let (k, v) = kv.map_err(backend)?;
                let Ok(uuid) = <[u8; 16]>::try_from(k.as_ref()) else {
                    continue;
                };
                let deal = StoredDeal::decode(&hex::encode(uuid), &v)?;
                let key = piece_key(&deal.params.client_deal_proposal.proposal.piece_cid, &uuid);
                // In the deal's own generation. A store without this index is from before
                // generations: its one generation is sealed after these builds, so the
                // filter will hold the piece.
                trees.by_piece_cid.insert(key, &[]).map_err(backend)?;
            }
        }
        self.meta.insert(PIECE_INDEX_BUILT, &[]).map_err(backend)?;
        self.flush()
    }

    /// Fill the dashboard's trees from the deals once, for a store written before they
    /// existed.
    fn build_ui_index(&self) -> Result<(), StoreError> {
        if self.meta.get(UI_INDEX_BUILT).map_err(backend)?.is_some() {
            return Ok(());
        }
        for kv in self.every_deal() {
            let (k, v) = kv?;
            let deal = StoredDeal::decode(&hex::encode(&k), &v)?;
            let facts = UiFacts::of(&deal);
            (&self.ui_lists, &self.ui_counters, &self.ui_timeline)
                .transaction(|(l, c, t)| {
                    sled_ui::on_insert(l, c, t, &facts)?;
                    Ok::<_, ::sled::transaction::ConflictableTransactionError<StoreError>>(())
                })
                .map_err(tx_error)?;
        }
        self.meta.insert(UI_INDEX_BUILT, &[]).map_err(backend)?;
        self.flush()
    }

    fn by_piece(&self, piece: &Cid, limit: usize) -> Result<Vec<DealRecord>, StoreError> {
        let uuids = self.gens.view().by_piece(piece.as_bytes(), limit)?;
        self.deals_of(&uuids)
    }

    /// Deals in UUID order after `after`, at most `limit`, from every generation.
    fn deals_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<DealRecord>, StoreError> {
        self.gens
            .view()
            .deals_page(after, limit)?
            .into_iter()
            .map(|(k, v)| StoredDeal::decode(&hex::encode(&k), &v))
            .collect()
    }

    /// Every stored deal's key and record, generation by generation (for the one-time
    /// index builds).
    fn every_deal(&self) -> impl Iterator<Item = Result<(::sled::IVec, ::sled::IVec), StoreError>> {
        let view = self.gens.view();
        let trees: Vec<GenTrees> = view.trees().cloned().collect();
        trees
            .into_iter()
            .flat_map(|t| t.deals.iter().map(|kv| kv.map_err(backend)))
    }

    fn live_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> Result<Vec<DealRecord>, StoreError> {
        self.deals_of(&self.live_uuids_at(checkpoint, after, limit)?)
    }

    /// The keys behind [`Inner::live_at`], read from the live index alone.
    fn live_uuids_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        let online = self.queue(checkpoint_byte(checkpoint), after);
        if checkpoint == Checkpoint::Accepted {
            // Both queues of `Accepted`, merged in UUID order.
            let offline = self.queue(AWAITING_IMPORT, after);
            merge_runs(vec![online, offline], limit, false)
        } else {
            online.take(limit).collect()
        }
    }

    /// The online deals at `Accepted` (the transfer runner's work): their own queue of
    /// the live index, keys only.
    fn awaiting_download(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> Result<Vec<DealUuid>, StoreError> {
        self.queue(checkpoint_byte(Checkpoint::Accepted), after)
            .take(limit)
            .map(|k| k.map(DealUuid))
            .collect()
    }

    /// The UUIDs in one queue of the live index, after `after`, in order.
    fn queue(
        &self,
        queue: u8,
        after: Option<DealUuid>,
    ) -> impl Iterator<Item = Result<[u8; 16], StoreError>> {
        let start = match after {
            Some(u) => {
                let mut k = vec![queue];
                k.extend_from_slice(&u.0);
                Bound::Excluded(k)
            }
            None => Bound::Included(vec![queue]),
        };
        self.live
            .range((start, Bound::Excluded(vec![queue + 1])))
            .map(|kv| {
                let (k, _) = kv.map_err(backend)?;
                <[u8; 16]>::try_from(&k[1..]).map_err(|_| StoreError::Corrupt {
                    key: hex::encode(&k),
                    message: "a live-index key of the wrong length".into(),
                })
            })
    }

    fn deals_of(&self, uuids: &[[u8; 16]]) -> Result<Vec<DealRecord>, StoreError> {
        let mut out = Vec::with_capacity(uuids.len());
        for u in uuids {
            if let Some(d) = self.get_deal(u)? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Write a group of new deals: the fences checked and the deals written under the
    /// lease lock (so no write lands after the lease it was made under was lost), then
    /// one flush outside it, shared with any other writer's. One result per job.
    fn write_new_deals(&self, jobs: &[InsertJob]) -> Vec<Result<Inserted, StoreError>> {
        let lease = self.lease();
        let admitted: Vec<Result<&NewDeal, StoreError>> = jobs
            .iter()
            .map(|j| match &j.fence {
                Some(fence) => lease.check(fence).map(|()| &j.new),
                None => Ok(&j.new),
            })
            .collect();
        let news: Vec<&NewDeal> = admitted
            .iter()
            .filter_map(|a| a.as_ref().ok().copied())
            .collect();
        let written = self.insert_unflushed(&news);
        drop(lease);
        let written = written.and_then(|outcomes| {
            if outcomes.contains(&Inserted::Yes) {
                self.flush()?;
            }
            Ok(outcomes)
        });
        let mut outcomes = written.as_ref().map(|o| o.iter());
        admitted
            .into_iter()
            .map(|a| {
                a?;
                match &mut outcomes {
                    Ok(o) => o.next().copied().ok_or_else(|| {
                        StoreError::Backend("a group write returned too few outcomes".into())
                    }),
                    Err(e) => Err(e.clone()),
                }
            })
            .collect()
    }

    /// Write new deals in one transaction, not flushed. A deal whose UUID or proposal
    /// is already stored (or earlier in `news`) is not written; one outcome per deal.
    fn insert_unflushed(&self, news: &[&NewDeal]) -> Result<Vec<Inserted>, StoreError> {
        let mut gens = self.gens.for_insert()?;
        let view = gens.view();
        // Sealed generations take no writes, so they are asked once, outside the
        // transaction; the open one inside it.
        let sealed: Vec<InSealed> = news
            .iter()
            .map(|new| view.in_sealed(&new.uuid, &new.prop))
            .collect::<Result<_, _>>()?;
        let open = view.open();
        let outcomes = (
            &open.deals,
            &open.by_proposal_cid,
            &open.by_signed_proposal_cid,
            &self.live,
            &open.by_piece_cid,
            &self.ui_lists,
            &self.ui_counters,
            &self.ui_timeline,
        )
            .transaction(
                |(
                    deals,
                    by_prop,
                    by_signed,
                    live,
                    by_piece,
                    ui_lists,
                    ui_counters,
                    ui_timeline,
                )|
                 -> ConflictableTransactionResult<Vec<Inserted>, StoreError> {
                    let mut outcomes = Vec::with_capacity(news.len());
                    for (new, sealed) in news.iter().zip(&sealed) {
                        // A transaction reads its own writes, so a duplicate within
                        // `news` is found as one already stored.
                        if sealed.uuid || deals.get(new.uuid)?.is_some() {
                            outcomes.push(Inserted::UuidExists);
                            continue;
                        }
                        let other = match &sealed.proposal_of {
                            Some(u) => Some(u.clone()),
                            None => by_prop.get(&new.prop)?,
                        };
                        if let Some(other) = other {
                            let mut u = [0u8; 16];
                            if other.len() == 16 {
                                u.copy_from_slice(&other);
                            }
                            outcomes.push(Inserted::ProposalExists(DealUuid(u)));
                            continue;
                        }
                        deals.insert(&new.uuid, new.value.as_slice())?;
                        by_prop.insert(new.prop.as_slice(), &new.uuid)?;
                        by_signed.insert(new.signed.as_slice(), &new.uuid)?;
                        if let Some(k) = new.live.key {
                            live.insert(&k, &[])?;
                        }
                        by_piece.insert(new.piece.as_slice(), &[])?;
                        sled_ui::on_insert(ui_lists, ui_counters, ui_timeline, &new.ui)?;
                        outcomes.push(Inserted::Yes);
                    }
                    Ok(outcomes)
                },
            )
            .map_err(tx_error)?;
        gens.written(outcomes.iter().filter(|o| **o == Inserted::Yes).count());
        Ok(outcomes)
    }

    fn update(&self, up: &DealUpdate) -> Result<(), StoreError> {
        let w = self.group_flush.writing();
        self.update_unflushed(up)?;
        self.flush_written(w)
    }

    fn update_unflushed(&self, up: &DealUpdate) -> Result<(), StoreError> {
        let DealUpdate {
            uuid,
            value,
            live: new_live,
            ui,
        } = up;
        let (
            uuid,
            LiveEntry {
                key: new_live,
                offline,
            },
        ) = (*uuid, *new_live);
        let now = now_millis();
        let view = self.gens.view();
        let Some((trees, _)) = view.find(&uuid.0)? else {
            return Err(StoreError::NoSuchDeal(uuid));
        };
        let written = (
            &trees.deals,
            &self.live,
            &self.ui_lists,
            &self.ui_counters,
            &self.ui_timeline,
        )
            .transaction(
                |(deals, live, ui_lists, ui_counters, ui_timeline)| -> ConflictableTransactionResult<(), StoreError> {
                    let Some(old) = deals.get(uuid.0)? else {
                        return ::sled::transaction::abort(StoreError::NoSuchDeal(uuid));
                    };
                    let old_live = stored_live_key(&uuid.0, &old, offline);
                    if old_live != new_live {
                        if let Some(k) = old_live {
                            live.remove(&k)?;
                        }
                        if let Some(k) = new_live {
                            live.insert(&k, &[])?;
                        }
                    }
                    if let Some(old_state) = sled_ui::stored_state(&old) {
                        sled_ui::on_update(ui_lists, ui_counters, ui_timeline, old_state, ui, now)?;
                    }
                    deals.insert(&uuid.0, value.as_slice())?;
                    Ok(())
                },
            )
            .map_err(tx_error);
        // After the commit (whatever it said), so no read can bring the old record back.
        self.recent.forget(&uuid.0);
        written
    }
}

/// The write group's writer for new deals, on the blocking pool. Dropped unrun (the
/// runtime is shutting down), it gives the queued deals up so their callers do not wait.
struct InsertWriter {
    inner: Arc<Inner>,
    started: bool,
}

impl InsertWriter {
    fn run(mut self) {
        self.started = true;
        let inner = &self.inner;
        inner
            .inserts
            .write_queued(|jobs| inner.write_new_deals(&jobs));
    }
}

impl Drop for InsertWriter {
    fn drop(&mut self) {
        if !self.started {
            self.inner.inserts.abandon();
        }
    }
}

/// A new deal for [`SledStore::insert`], with the fence it is written under (none: an
/// unfenced write).
struct InsertJob {
    new: NewDeal,
    fence: Option<Fence>,
}

/// A deal record ready for [`Inner::insert_unflushed`].
struct NewDeal {
    uuid: [u8; 16],
    value: Vec<u8>,
    prop: Vec<u8>,
    signed: Vec<u8>,
    live: LiveEntry,
    piece: Vec<u8>,
    ui: UiFacts,
}

/// A known deal's new record, ready for [`Inner::update`].
struct DealUpdate {
    uuid: DealUuid,
    value: Vec<u8>,
    live: LiveEntry,
    ui: UiFacts,
}

impl DealUpdate {
    fn of(deal: &DealRecord) -> DealUpdate {
        DealUpdate {
            uuid: deal.uuid,
            value: StoredDeal::encode(deal),
            live: LiveEntry::of(deal),
            ui: UiFacts::of(deal),
        }
    }
}

impl NewDeal {
    fn of(deal: &DealRecord) -> NewDeal {
        NewDeal {
            uuid: deal.uuid.0,
            value: StoredDeal::encode(deal),
            prop: deal.proposal_cid.as_bytes().to_vec(),
            signed: deal.signed_proposal_cid.as_bytes().to_vec(),
            live: LiveEntry::of(deal),
            piece: piece_key(
                &deal.params.client_deal_proposal.proposal.piece_cid,
                &deal.uuid.0,
            ),
            ui: UiFacts::of(deal),
        }
    }
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

const IPNI_HEAD_KEY: &[u8] = b"head";

fn ipni_ad_key(deal: DealUuid, is_rm: bool, part: u32) -> Vec<u8> {
    let mut k = deal.0.to_vec();
    k.push(u8::from(is_rm));
    k.extend_from_slice(&part.to_be_bytes());
    k
}

fn seq_and_cid(seq: u64, cid: &Cid) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend_from_slice(cid.as_bytes());
    v
}

fn parse_seq_and_cid(key: &str, v: &[u8]) -> Result<(u64, Cid), StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        key: key.to_owned(),
        message,
    };
    let (seq, cid) = v
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("shorter than a sequence number".into()))?;
    let cid = Cid::from_bytes(cid).map_err(|e| corrupt(e.to_string()))?;
    Ok((u64::from_be_bytes(*seq), cid))
}

impl Inner {
    fn ipni_head(&self) -> Result<Option<IpniHead>, StoreError> {
        self.ipni_head
            .get(IPNI_HEAD_KEY)
            .map_err(backend)?
            .map(|v| {
                let (seq, cid) = parse_seq_and_cid("ipni_head", &v)?;
                Ok(IpniHead { cid, seq })
            })
            .transpose()
    }

    fn publish_ipni(&self, p: &IpniPublish) -> Result<Published, StoreError> {
        let key = ipni_ad_key(p.deal, p.is_rm, p.part);
        let out = (
            &self.ipni_blocks,
            &self.ipni_ads,
            &self.ipni_head,
            &self.ipni_announced,
        )
            .transaction(
                |(blocks, ads, head, announced)| -> ConflictableTransactionResult<Published, StoreError> {
                    use ::sled::transaction::ConflictableTransactionError::Abort;
                    if let Some(v) = ads.get(&key)? {
                        let (_, cid) = parse_seq_and_cid("ipni_ads", &v).map_err(Abort)?;
                        return Ok(Published::Already(cid));
                    }
                    let current = head
                        .get(IPNI_HEAD_KEY)?
                        .map(|v| parse_seq_and_cid("ipni_head", &v))
                        .transpose()
                        .map_err(Abort)?;
                    let seq = match (&current, &p.previous) {
                        (None, None) => 1,
                        (Some((seq, cid)), Some(prev)) if cid == prev => seq + 1,
                        _ => return Ok(Published::HeadMoved),
                    };
                    blocks.insert(p.ad.cid.as_bytes(), p.ad.bytes.as_slice())?;
                    let v = seq_and_cid(seq, &p.ad.cid);
                    ads.insert(key.as_slice(), v.as_slice())?;
                    head.insert(IPNI_HEAD_KEY, v)?;
                    if p.is_rm {
                        announced.remove(&p.deal.0[..])?;
                    } else {
                        announced.insert(&p.deal.0[..], &[][..])?;
                    }
                    Ok(Published::Yes { seq })
                },
            )
            .map_err(tx_error)?;
        Ok(out)
    }

    fn ipni_ads_of(&self, deal: DealUuid) -> Result<Vec<IpniAdRef>, StoreError> {
        let mut out = Vec::new();
        for kv in self.ipni_ads.scan_prefix(deal.0) {
            let (k, v) = kv.map_err(backend)?;
            let (seq, cid) = parse_seq_and_cid("ipni_ads", &v)?;
            let part = k
                .get(17..21)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .unwrap_or(0);
            out.push(IpniAdRef {
                cid,
                is_rm: k.get(16) == Some(&1),
                part,
                seq,
            });
        }
        out.sort_by_key(|a| a.seq);
        Ok(out)
    }

    fn ipni_announced_after(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> Result<Vec<DealUuid>, StoreError> {
        let start = match after {
            Some(u) => Bound::Excluded(u.0.to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for kv in self
            .ipni_announced
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
        {
            let (k, _) = kv.map_err(backend)?;
            let bytes = <[u8; 16]>::try_from(k.as_ref()).map_err(|_| StoreError::Corrupt {
                key: format!("ipni_announced/{}", hex::encode(&k)),
                message: "not a UUID".into(),
            })?;
            out.push(DealUuid(bytes));
        }
        Ok(out)
    }
}

impl Store for SledStore {
    fn identity_or_create<'a>(
        &'a self,
        generate: Box<dyn FnOnce() -> Vec<u8> + Send>,
    ) -> StoreFuture<'a, (Vec<u8>, bool)> {
        self.run(move |inner| {
            if let Some(k) = inner.meta.get(IDENTITY_KEY).map_err(backend)? {
                return Ok((k.to_vec(), false));
            }
            let key = generate();
            let swapped = inner
                .meta
                .compare_and_swap(IDENTITY_KEY, None as Option<&[u8]>, Some(key.as_slice()))
                .map_err(backend)?;
            match swapped {
                Ok(()) => {
                    inner.flush()?;
                    Ok((key, true))
                }
                // Someone else created it first: theirs wins.
                Err(cas) => Ok((cas.current.map(|v| v.to_vec()).unwrap_or_default(), false)),
            }
        })
    }

    fn identity(&self) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.run(|inner| {
            Ok(inner
                .meta
                .get(IDENTITY_KEY)
                .map_err(backend)?
                .map(|v| v.to_vec()))
        })
    }

    fn insert_new_deal<'a>(&'a self, deal: &'a DealRecord) -> StoreFuture<'a, Inserted> {
        self.insert(InsertJob {
            new: NewDeal::of(deal),
            fence: None,
        })
    }

    fn update_deal<'a>(&'a self, deal: &'a DealRecord) -> StoreFuture<'a, ()> {
        let up = DealUpdate::of(deal);
        self.run(move |inner| inner.update(&up))
    }

    fn deal_by_uuid(&self, uuid: DealUuid) -> StoreFuture<'_, Option<DealRecord>> {
        // A recent record is answered here: the hand-off to the blocking pool would cost
        // more than the read (a client polling its deal's status asks again and again).
        if let Some(deal) = self.inner.recent.get(&uuid.0) {
            return Box::pin(std::future::ready(Ok(Some(deal))));
        }
        self.run(move |inner| inner.get_recent_deal(&uuid.0))
    }

    fn deal_by_proposal_cid<'a>(&'a self, cid: &'a Cid) -> StoreFuture<'a, Option<DealRecord>> {
        let cid = cid.clone();
        self.run(move |inner| inner.get_by_index(CidIndex::Proposal, &cid))
    }

    fn deals_for_proposal<'a>(
        &'a self,
        uuid: DealUuid,
        proposal_cid: &'a Cid,
    ) -> StoreFuture<'a, (Option<DealRecord>, Option<DealRecord>)> {
        let cid = proposal_cid.clone();
        self.run(move |inner| {
            Ok((
                inner.get_deal(&uuid.0)?,
                inner.get_by_index(CidIndex::Proposal, &cid)?,
            ))
        })
    }

    fn deal_by_signed_proposal_cid<'a>(
        &'a self,
        cid: &'a Cid,
    ) -> StoreFuture<'a, Option<DealRecord>> {
        let cid = cid.clone();
        self.run(move |inner| inner.get_by_index(CidIndex::SignedProposal, &cid))
    }

    fn list_deals(&self) -> StoreFuture<'_, Vec<DealRecord>> {
        self.run(|inner| inner.deals_page(None, usize::MAX))
    }

    fn list_deals_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealRecord>> {
        self.run(move |inner| inner.deals_page(after.as_ref().map(|u| &u.0[..]), limit))
    }

    fn live_deals_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealRecord>> {
        self.run(move |inner| inner.live_at(checkpoint, after, limit))
    }

    fn live_uuids_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        self.run(move |inner| {
            let keys = inner.live_uuids_at(checkpoint, after, limit)?;
            Ok(keys.into_iter().map(DealUuid).collect())
        })
    }

    fn awaiting_download(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        self.run(move |inner| inner.awaiting_download(after, limit))
    }

    fn deals_by_piece_cid<'a>(
        &'a self,
        piece: &'a Cid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<DealRecord>> {
        let piece = piece.clone();
        self.run(move |inner| inner.by_piece(&piece, limit))
    }

    fn query_deals<'a>(&'a self, q: &'a DealQuery) -> StoreFuture<'a, Vec<DealRecord>> {
        let q = q.clone();
        self.run(move |inner| {
            let uuids = sled_ui::query(&inner.ui_lists, &q)?;
            let mut out = Vec::with_capacity(uuids.len());
            for u in uuids {
                out.extend(inner.get_deal(&u)?);
            }
            Ok(out)
        })
    }

    fn state_counts(&self) -> StoreFuture<'_, StateCounts> {
        self.run(|inner| sled_ui::counts(&inner.ui_counters))
    }

    fn hourly_counts(&self, since_hour: i64) -> StoreFuture<'_, Vec<HourCount>> {
        self.run(move |inner| sled_ui::hourly(&inner.ui_counters, since_hour))
    }

    fn deal_timeline(&self, uuid: DealUuid) -> StoreFuture<'_, Vec<(u8, i64)>> {
        self.run(move |inner| {
            let created = inner.get_deal(&uuid.0)?.map(|d| d.created_at_unix_nanos);
            sled_ui::timeline(&inner.ui_timeline, &uuid.0, created)
        })
    }

    fn describe(&self) -> String {
        format!("sled at {}", self.inner.path.display())
    }

    // The fence is checked under the lease lock, in the write group's transaction (see
    // `Inner::write_new_deals`).
    fn insert_new_deal_fenced<'a>(
        &'a self,
        fence: &'a Fence,
        deal: &'a DealRecord,
    ) -> StoreFuture<'a, Inserted> {
        self.insert(InsertJob {
            new: NewDeal::of(deal),
            fence: Some(fence.clone()),
        })
    }

    fn update_deal_fenced<'a>(
        &'a self,
        fence: &'a Fence,
        deal: &'a DealRecord,
    ) -> StoreFuture<'a, ()> {
        let up = DealUpdate::of(deal);
        let fence = fence.clone();
        self.run(move |inner| {
            let w = inner.group_flush.writing();
            {
                let lease = inner.lease();
                lease.check(&fence)?;
                inner.update_unflushed(&up)?;
            }
            inner.flush_written(w)
        })
    }

    fn read_lease(&self) -> StoreFuture<'_, LeaseRead> {
        let read = LeaseRead {
            row: self.inner.lease().row.clone(),
            now: now_millis(),
        };
        Box::pin(async move { Ok(read) })
    }

    fn try_acquire<'a>(
        &'a self,
        node: &'a str,
        expect_generation: Option<u64>,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<LeaseGrant>> {
        let now = now_millis();
        let mut lease = self.inner.lease();
        let takes = match (&lease.row, expect_generation) {
            (None, None) => Some(1),
            (Some(r), Some(g))
                if r.generation == g && (r.holder.as_deref() == Some(node) || !r.is_live(now)) =>
            {
                Some(g + 1)
            }
            _ => None,
        };
        let grant = takes.map(|generation| {
            let expires_at = now.saturating_add(millis(ttl));
            lease.row = Some(LeaseRow {
                holder: Some(node.to_owned()),
                generation,
                expires_at: Some(expires_at),
            });
            lease.local_listen = None;
            LeaseGrant {
                generation,
                at: now,
                expires_at,
            }
        });
        Box::pin(async move { Ok(grant) })
    }

    fn renew<'a>(&'a self, fence: &'a Fence, ttl: Duration) -> StoreFuture<'a, Option<LeaseGrant>> {
        let now = now_millis();
        let mut lease = self.inner.lease();
        let grant = if lease.holds(fence, now) {
            let expires_at = now.saturating_add(millis(ttl));
            if let Some(r) = lease.row.as_mut() {
                r.expires_at = Some(expires_at);
            }
            Some(LeaseGrant {
                generation: fence.generation,
                at: now,
                expires_at,
            })
        } else {
            None
        };
        Box::pin(async move { Ok(grant) })
    }

    fn release<'a>(&'a self, fence: &'a Fence) -> StoreFuture<'a, bool> {
        let mut lease = self.inner.lease();
        let mine = lease.row.as_ref().is_some_and(|r| {
            r.holder.as_deref() == Some(fence.node.as_str()) && r.generation == fence.generation
        });
        if mine {
            if let Some(r) = lease.row.as_mut() {
                r.holder = None;
                r.expires_at = None;
            }
            lease.local_listen = None;
        }
        Box::pin(async move { Ok(mine) })
    }

    fn set_local_listen<'a>(
        &'a self,
        fence: &'a Fence,
        local_listen: &'a str,
        announce: &'a [String],
    ) -> StoreFuture<'a, ()> {
        let mut lease = self.inner.lease();
        let result = lease.check(fence).map(|()| {
            lease.local_listen = Some(local_listen.to_owned());
            lease.announce = announce.to_vec();
        });
        Box::pin(async move { result })
    }

    fn leader_state<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = leader_state_key(name);
        self.run(move |inner| Ok(inner.meta.get(key).map_err(backend)?.map(|v| v.to_vec())))
    }

    fn put_leader_state<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
        value: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        let (fence, key, value) = (fence.clone(), leader_state_key(name), value.to_vec());
        self.run(move |inner| {
            inner.lease().check(&fence)?;
            inner.meta.insert(key, value).map_err(backend)?;
            inner.flush()
        })
    }

    fn piece_index_state<'a>(&'a self, piece: &'a Cid) -> StoreFuture<'a, IndexState> {
        let piece = piece.clone();
        self.run(move |inner| inner.index_state(&piece))
    }

    fn put_piece_blocks<'a>(
        &'a self,
        piece: &'a Cid,
        entries: &'a [BlockEntry],
    ) -> StoreFuture<'a, ()> {
        let (piece, entries) = (piece.clone(), entries.to_vec());
        self.run(move |inner| inner.put_blocks(&piece, &entries))
    }

    fn set_piece_index_state<'a>(
        &'a self,
        piece: &'a Cid,
        state: &'a IndexState,
    ) -> StoreFuture<'a, ()> {
        let (piece, state) = (piece.clone(), state.clone());
        self.run(move |inner| {
            if state.blocks().is_none() {
                inner.remove_blocks(&piece)?;
            }
            match state {
                IndexState::NotYet => inner.piece_index.remove(piece.as_bytes()),
                _ => inner
                    .piece_index
                    .insert(piece.as_bytes(), StoredIndexState::encode(&state)),
            }
            .map_err(backend)?;
            inner.flush()
        })
    }

    fn piece_blocks_page<'a>(
        &'a self,
        piece: &'a Cid,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<BlockEntry>> {
        let piece = piece.clone();
        self.run(move |inner| inner.blocks_page(&piece, after, limit))
    }

    fn blocks_by_multihash<'a>(
        &'a self,
        multihash: &'a [u8],
        limit: usize,
    ) -> StoreFuture<'a, Vec<BlockLocation>> {
        let multihash = multihash.to_vec();
        self.run(move |inner| inner.by_multihash(&multihash, limit))
    }

    fn ipni_head(&self) -> StoreFuture<'_, Option<IpniHead>> {
        self.run(|inner| inner.ipni_head())
    }

    fn ipni_block<'a>(&'a self, cid: &'a Cid) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = cid.as_bytes().to_vec();
        self.run(move |inner| {
            Ok(inner
                .ipni_blocks
                .get(key)
                .map_err(backend)?
                .map(|v| v.to_vec()))
        })
    }

    fn put_ipni_chunk<'a>(&'a self, block: &'a Block) -> StoreFuture<'a, ()> {
        let (key, value) = (block.cid.as_bytes().to_vec(), block.bytes.clone());
        self.run(move |inner| {
            inner.ipni_blocks.insert(key, value).map_err(backend)?;
            Ok(())
        })
    }

    fn publish_ipni_ad<'a>(
        &'a self,
        fence: &'a Fence,
        ad: &'a IpniPublish,
    ) -> StoreFuture<'a, Published> {
        let (fence, ad) = (fence.clone(), ad.clone());
        self.run(move |inner| {
            let out = {
                let lease = inner.lease();
                lease.check(&fence)?;
                inner.publish_ipni(&ad)?
            };
            inner.flush()?;
            Ok(out)
        })
    }

    fn ipni_ads_of_deal(&self, deal: DealUuid) -> StoreFuture<'_, Vec<IpniAdRef>> {
        self.run(move |inner| inner.ipni_ads_of(deal))
    }

    fn ipni_announced_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        self.run(move |inner| inner.ipni_announced_after(after, limit))
    }

    fn relay_target(&self) -> StoreFuture<'_, Option<RelayTarget>> {
        let lease = self.inner.lease();
        let now = now_millis();
        let target = lease.local_listen.clone().map(|local_listen| RelayTarget {
            local_listen,
            live: lease.row.as_ref().is_some_and(|r| r.is_live(now)),
        });
        Box::pin(async move { Ok(target) })
    }
}

/// Leader state lives in the meta tree under this prefix.
fn leader_state_key(name: &str) -> Vec<u8> {
    format!("leader_state/{name}").into_bytes()
}

/// The stored form of an [`IndexState`] (`piece_index` values).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredIndexState {
    state: String,
    blocks: Option<u64>,
    reason: Option<String>,
}

impl StoredIndexState {
    fn encode(s: &IndexState) -> Vec<u8> {
        serde_json::to_vec(&StoredIndexState {
            state: s.name().to_owned(),
            blocks: s.blocks(),
            reason: s.reason().map(str::to_owned),
        })
        .expect("an index state always serializes")
    }

    fn decode(key: &[u8], v: &[u8]) -> Result<IndexState, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            key: format!("piece_index/{}", hex::encode(key)),
            message,
        };
        let s: StoredIndexState = serde_json::from_slice(v).map_err(|e| corrupt(e.to_string()))?;
        IndexState::from_parts(&s.state, s.blocks, s.reason)
            .ok_or_else(|| corrupt(format!("state {:?} with the wrong parts", s.state)))
    }
}

/// `piece ‖ offset` (the `piece_blocks` key).
fn block_key(piece: &[u8], offset: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(piece.len() + 8);
    k.extend_from_slice(piece);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

impl Inner {
    fn index_state(&self, piece: &Cid) -> Result<IndexState, StoreError> {
        match self.piece_index.get(piece.as_bytes()).map_err(backend)? {
            Some(v) => StoredIndexState::decode(piece.as_bytes(), &v),
            None => Ok(IndexState::NotYet),
        }
    }

    fn put_blocks(&self, piece: &Cid, entries: &[BlockEntry]) -> Result<(), StoreError> {
        let p = piece.as_bytes();
        let mut blocks = ::sled::Batch::default();
        let mut by_mh = ::sled::Batch::default();
        for e in entries {
            let mut v = e.length.to_be_bytes().to_vec();
            v.extend_from_slice(&e.multihash);
            blocks.insert(block_key(p, e.offset), v);
            let mut k = e.multihash.clone();
            k.extend_from_slice(&block_key(p, e.offset));
            by_mh.insert(k, &e.length.to_be_bytes());
        }
        // The piece's entries first: removing a piece walks them to find the others.
        self.piece_blocks.apply_batch(blocks).map_err(backend)?;
        self.blocks_by_multihash.apply_batch(by_mh).map_err(backend)
    }

    /// Remove every entry of `piece`, a batch at a time.
    fn remove_blocks(&self, piece: &Cid) -> Result<(), StoreError> {
        let p = piece.as_bytes();
        loop {
            let mut blocks = ::sled::Batch::default();
            let mut by_mh = ::sled::Batch::default();
            let mut n = 0;
            for kv in self.piece_blocks.scan_prefix(p).take(4096) {
                let (k, v) = kv.map_err(backend)?;
                if k.len() != p.len() + 8 {
                    continue;
                }
                let mut mk = v.get(8..).unwrap_or_default().to_vec();
                mk.extend_from_slice(&k);
                by_mh.remove(mk);
                blocks.remove(k);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            self.blocks_by_multihash
                .apply_batch(by_mh)
                .map_err(backend)?;
            self.piece_blocks.apply_batch(blocks).map_err(backend)?;
        }
    }

    fn blocks_page(
        &self,
        piece: &Cid,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<BlockEntry>, StoreError> {
        let p = piece.as_bytes();
        let start = match after {
            Some(o) if o == u64::MAX => return Ok(Vec::new()),
            Some(o) => block_key(p, o + 1),
            None => block_key(p, 0),
        };
        let end = {
            // The first key past every `p ‖ offset`: `p ‖ [0xff; 8]` and one more byte.
            let mut e = block_key(p, u64::MAX);
            e.push(0);
            e
        };
        let mut out = Vec::new();
        for kv in self.piece_blocks.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(backend)?;
            let damaged = || StoreError::Corrupt {
                key: format!("piece_blocks/{}", hex::encode(&k)),
                message: "short entry".into(),
            };
            if k.len() != p.len() + 8 {
                continue;
            }
            out.push(BlockEntry {
                offset: be_u64(&k[p.len()..]).ok_or_else(damaged)?,
                length: be_u64(&v).ok_or_else(damaged)?,
                multihash: v[8..].to_vec(),
            });
        }
        Ok(out)
    }

    fn by_multihash(&self, mh: &[u8], limit: usize) -> Result<Vec<BlockLocation>, StoreError> {
        let mut out = Vec::new();
        for kv in self.blocks_by_multihash.scan_prefix(mh) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(backend)?;
            // A multihash is self-delimiting (code, length, digest), so what follows the
            // prefix is this block's `piece ‖ offset`.
            let rest = &k[mh.len()..];
            let Some(split) = rest.len().checked_sub(8) else {
                continue;
            };
            let (Ok(piece), Some(offset), Some(length)) = (
                Cid::from_bytes(&rest[..split]),
                be_u64(&rest[split..]),
                be_u64(&v),
            ) else {
                continue;
            };
            out.push(BlockLocation {
                piece,
                offset,
                length,
            });
        }
        Ok(out)
    }
}
