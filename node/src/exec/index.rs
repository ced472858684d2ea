//! The piece directory's writer, a leader task: every piece whose data is in
//! (`Transferred` up to `AddedPiece`) and not indexed yet is read once, as a stream,
//! through core's [`CarReader`]; its block entries go to the store in batches of
//! [`INDEX_BATCH`], then its final [`IndexState`] (docs/indexing.md). Memory stays
//! bounded whatever the piece's size: a read buffer, the reader's bounded state and one
//! batch of entries. Data that is not a CAR is recorded `not-a-car` (the deal goes on);
//! a CAR that breaks the format is recorded `malformed` with the reader's sentence.
//!
//! The task reads all the live deals with data when it starts, so a restart or a failover
//! finishes what was cut short (a piece still `not-yet` is read again from its start);
//! then it takes the deals [`Transfers`] names as their data comes in, one at a time, and
//! reads everything again only every [`RESCAN`] or after a notice was lost to a full
//! channel. Deals it has dealt with (their piece's state is final, or their data is gone)
//! are remembered, so a rescan reads the live index's keys only
//! ([`for_each_new_live_deal`]), neither their deals nor their pieces: deals stay at
//! `Transferred` to `AddedPiece` for as long as sealing takes, and before, every 30 s
//! rescan looked at each of them (at a million stored deals, 29 % of a core at rest),
//! then every 10-minute rescan read each of them (a burst of seconds of CPU on sled;
//! BENCHMARKS.md).
//!
//! Uses `store` (bounded by [`STORE_BOUND`]), `exec::staging` and the piece store for
//! paths, `metrics`, `runtime`.
use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use dealport_core::{
    car::{CarError, CarItem, CarReader, MH_IDENTITY},
    deal::{Checkpoint, DealRecord},
    fifo_map::FifoMap,
    piece_index::{BlockEntry, IndexState, INDEX_BATCH},
    wire::{Cid, DealUuid},
};
use futures::{channel::mpsc, FutureExt, StreamExt};

use super::{piece_store::PieceStore, staging::Staging, IndexNotices, SCAN_PAGE};
use crate::{
    metrics::Metrics,
    runtime::{timeout, unblock, LeaderTask, Runtime},
    store::{for_each_new_live_deal, Store, StoreError},
};

/// Bound on each store call of the indexer.
pub const STORE_BOUND: Duration = Duration::from_secs(30);
/// Bytes read from the file per read call.
const READ_CHUNK: usize = 1 << 20;
/// Most bytes one blocking step reads before handing its entries back.
const STEP_BYTES: u64 = 16 << 20;
/// Pieces taken from one scan (the rest wait for the next).
const MAX_PER_SCAN: usize = 4096;

/// The checkpoints at which a deal's data is in and may still be read.
const WITH_DATA: [Checkpoint; 4] = [
    Checkpoint::Transferred,
    Checkpoint::Published,
    Checkpoint::PublishConfirmed,
    Checkpoint::AddedPiece,
];

/// How often everything is read again (a safety net: notices come as data comes in).
pub const RESCAN: Duration = Duration::from_secs(600);
/// Notices waiting for the indexer (more raise the `missed` flag).
const NOTICES: usize = 1024;
/// Deals remembered as dealt with (more are looked at again on a rescan, that is all).
const REMEMBERED: usize = 1 << 17;

/// The indexer. See the module docs.
pub struct Indexer {
    store: Arc<dyn Store>,
    staging: Staging,
    kept: Option<PieceStore>,
    runtime: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
    rescan: Duration,
    wake: futures::lock::Mutex<mpsc::Receiver<DealUuid>>,
    missed: Arc<AtomicBool>,
    /// Deals whose piece needs nothing more from this node.
    dealt_with: Mutex<FifoMap<DealUuid, ()>>,
}

/// What [`Indexer::index_if_needed`] made of a piece.
enum Outcome {
    /// Final (already or now), or no data to read: its deals need nothing more.
    Settled,
    /// Try again at the next scan.
    Again,
}

/// How one indexing pass ended without a final state (tried again at the next scan).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no data file for piece {0} (neither staged nor kept)")]
    NoData(Cid),
    #[error("reading piece {piece}: {why}")]
    Io { piece: Cid, why: String },
    #[error("piece {piece}: store: {why}")]
    Store { piece: Cid, why: String },
}

impl Indexer {
    /// The indexer and the sender [`super::Transfers`] wakes it with.
    pub fn new(
        store: Arc<dyn Store>,
        staging: Staging,
        kept: Option<PieceStore>,
        runtime: Arc<dyn Runtime>,
        metrics: Arc<Metrics>,
        rescan: Duration,
    ) -> (Arc<Indexer>, IndexNotices) {
        let (tx, rx) = mpsc::channel(NOTICES);
        let missed = Arc::new(AtomicBool::new(false));
        let ix = Indexer {
            store,
            staging,
            kept,
            runtime,
            metrics,
            rescan,
            wake: futures::lock::Mutex::new(rx),
            missed: missed.clone(),
            dealt_with: Mutex::new(FifoMap::new(REMEMBERED)),
        };
        let notices = IndexNotices { deals: tx, missed };
        (Arc::new(ix), notices)
    }

    fn dealt_with(&self) -> std::sync::MutexGuard<'_, FifoMap<DealUuid, ()>> {
        self.dealt_with.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pieces of live deals with their data in and not yet dealt with, and those
    /// deals (a piece may be shared by several). Only the index is read for deals dealt
    /// with already, which at rest is all of them.
    async fn pieces_to_index(&self) -> BTreeMap<Cid, Vec<DealUuid>> {
        let mut pieces: BTreeMap<Cid, Vec<DealUuid>> = BTreeMap::new();
        for checkpoint in WITH_DATA {
            let read = for_each_new_live_deal(
                &*self.store,
                checkpoint,
                SCAN_PAGE,
                |uuid| self.dealt_with().get(uuid).is_none(),
                |page| {
                    for d in page {
                        if pieces.len() >= MAX_PER_SCAN {
                            return;
                        }
                        pieces.entry(piece_of(&d).clone()).or_default().push(d.uuid);
                    }
                },
            );
            match bounded(read).await {
                Ok(pass) => {
                    tracing::debug!(%checkpoint, seen = pass.seen, read = pass.read, "indexer: deals with data")
                }
                Err(e) => tracing::warn!(error = %e, "indexer: cannot read the deals with data"),
            }
        }
        pieces
    }

    /// Scans until one finds fewer than [`MAX_PER_SCAN`] pieces or settles none of them
    /// (the next rescan tries those again); as many scans at most as the remembered deals
    /// fill, so more deals with data than it remembers cannot keep it going.
    pub async fn scan(&self) {
        for _ in 0..REMEMBERED / MAX_PER_SCAN {
            let pieces = self.pieces_to_index().await;
            tracing::debug!(pieces = pieces.len(), "indexer: scan");
            let full = pieces.len() >= MAX_PER_SCAN;
            let mut settled = 0;
            for (piece, deals) in pieces {
                if let Outcome::Settled = self.settle(&piece, &deals).await {
                    settled += 1;
                }
            }
            if !full || settled == 0 {
                return;
            }
        }
    }

    /// `uuid`'s data came in: index its piece if it is not yet.
    pub async fn deal_data_in(&self, uuid: DealUuid) {
        let deal = match bounded(self.store.deal_by_uuid(uuid)).await {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                // The next rescan finds it.
                tracing::warn!(deal = %uuid, error = %e, "indexer: cannot read the deal");
                return;
            }
        };
        if !deal.is_terminal() && WITH_DATA.contains(&deal.checkpoint) {
            self.settle(piece_of(&deal), &[uuid]).await;
        }
    }

    /// Index `piece` if needed; remember `deals` when their piece needs nothing more.
    async fn settle(&self, piece: &Cid, deals: &[DealUuid]) -> Outcome {
        let outcome = self.index_if_needed(piece, deals).await;
        if let Outcome::Settled = outcome {
            let mut dealt_with = self.dealt_with();
            for uuid in deals {
                dealt_with.insert(*uuid, (), 1);
            }
        }
        outcome
    }

    async fn index_if_needed(&self, piece: &Cid, deals: &[DealUuid]) -> Outcome {
        match self.state(piece).await {
            Ok(IndexState::NotYet) => {}
            Ok(_) => return Outcome::Settled,
            Err(e) => {
                tracing::warn!(%piece, error = %e, "indexer: cannot read the index state");
                return Outcome::Again;
            }
        }
        let mut paths: Vec<PathBuf> = deals.iter().map(|u| self.staging.data_path(*u)).collect();
        if let Some(kept) = &self.kept {
            paths.push(kept.path(piece));
        }
        let started = Instant::now();
        match self.index_piece(piece, paths).await {
            Ok(state) => {
                tracing::info!(%piece, state = %state, took = ?started.elapsed(), "piece indexed");
                Outcome::Settled
            }
            // Data dropped before its pass (sealed, no `keep_pieces`): nothing to read, now
            // or later (a deal's data comes in once).
            Err(e @ IndexError::NoData(_)) => {
                tracing::debug!(error = %e, "indexer: skipped");
                Outcome::Settled
            }
            Err(e) => {
                tracing::warn!(error = %e, "indexer: piece not indexed this time");
                Outcome::Again
            }
        }
    }

    async fn state(&self, piece: &Cid) -> Result<IndexState, StoreError> {
        bounded(self.store.piece_index_state(piece)).await
    }

    /// Read `piece` from the first of `paths` that opens and record what it holds.
    pub async fn index_piece(
        &self,
        piece: &Cid,
        paths: Vec<PathBuf>,
    ) -> Result<IndexState, IndexError> {
        let store_err = |e: StoreError| IndexError::Store {
            piece: piece.clone(),
            why: e.to_string(),
        };
        let io_err = |why: String| IndexError::Io {
            piece: piece.clone(),
            why,
        };
        let open = unblock(&*self.runtime, move || {
            paths.iter().find_map(|p| File::open(p).ok())
        });
        let file = timeout(STORE_BOUND, open)
            .await
            .flatten()
            .flatten()
            .ok_or_else(|| IndexError::NoData(piece.clone()))?;
        // Whatever an interrupted pass left goes first.
        bounded(self.store.set_piece_index_state(piece, &IndexState::NotYet))
            .await
            .map_err(store_err)?;
        let mut pass = Pass {
            file,
            reader: CarReader::new(),
            buf: vec![0; READ_CHUNK],
        };
        let mut written = 0u64;
        let state = loop {
            let step = unblock(&*self.runtime, move || {
                let outcome = pass.step();
                (pass, outcome)
            })
            .await
            .ok_or_else(|| io_err("the blocking pool dropped the read".into()))?;
            let (back, (entries, outcome)) = step;
            pass = back;
            if !entries.is_empty() {
                bounded(self.store.put_piece_blocks(piece, &entries))
                    .await
                    .map_err(store_err)?;
                written += entries.len() as u64;
                self.metrics.block_entries(entries.len() as u64);
            }
            match outcome {
                Step::More => continue,
                Step::Io(why) => return Err(io_err(why)),
                Step::Failed(e) => break state_of(e),
                Step::End => {
                    let reader = std::mem::take(&mut pass.reader);
                    match reader.finish() {
                        Ok(_) => break IndexState::Indexed { blocks: written },
                        Err(e) => break state_of(e),
                    }
                }
            }
        };
        bounded(self.store.set_piece_index_state(piece, &state))
            .await
            .map_err(store_err)?;
        self.metrics.piece_indexed(state.name());
        Ok(state)
    }
}

/// What a failed read says about the piece.
fn state_of(e: CarError) -> IndexState {
    let reason = e.to_string();
    if e.is_not_car() {
        IndexState::NotCar { reason }
    } else {
        IndexState::Malformed { reason }
    }
}

fn piece_of(d: &DealRecord) -> &Cid {
    &d.params.client_deal_proposal.proposal.piece_cid
}

/// A store call within [`STORE_BOUND`].
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    timeout(STORE_BOUND, f).await.unwrap_or_else(|| {
        Err(StoreError::Backend(format!(
            "the store did not answer within {} s",
            STORE_BOUND.as_secs()
        )))
    })
}

/// One file being read (moved to the blocking pool and back for each step).
struct Pass {
    file: File,
    reader: CarReader,
    buf: Vec<u8>,
}

enum Step {
    More,
    End,
    Failed(CarError),
    Io(String),
}

impl Pass {
    /// Read until a batch of entries is gathered, [`STEP_BYTES`] were read, the file
    /// ends or the CAR breaks.
    fn step(&mut self) -> (Vec<BlockEntry>, Step) {
        let mut entries = Vec::new();
        let mut read = 0u64;
        while entries.len() < INDEX_BATCH && read < STEP_BYTES {
            let n = match self.file.read(&mut self.buf) {
                Ok(0) => return (entries, Step::End),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return (entries, Step::Io(e.to_string())),
            };
            read += n as u64;
            let pushed = self.reader.push(&self.buf[..n], &mut |item| {
                if let CarItem::Block(b) = item {
                    // Identity CIDs carry their data inline: nothing to look up (the
                    // CARv2 spec's advice for its index too).
                    if b.cid.prefix().is_some_and(|p| p.mh_code == MH_IDENTITY) {
                        return;
                    }
                    entries.push(BlockEntry {
                        multihash: b.cid.multihash().to_vec(),
                        offset: b.offset,
                        length: b.length,
                    });
                }
            });
            if let Err(e) = pushed {
                return (entries, Step::Failed(e));
            }
        }
        (entries, Step::More)
    }
}

/// The indexer as a [`LeaderTask`].
pub fn leader_task(ix: Arc<Indexer>) -> LeaderTask {
    Box::new(move || Box::pin(run(ix.clone())))
}

/// Scan now; then index each deal named as its data comes in, and scan again every
/// `rescan` or after a lost notice; until dropped.
pub async fn run(ix: Arc<Indexer>) {
    let mut wake = ix.wake.lock().await;
    ix.missed.store(false, Ordering::Release);
    ix.scan().await;
    let mut timer = FutureExt::fuse(async_io::Timer::after(ix.rescan));
    loop {
        futures::select! {
            uuid = wake.next() => match uuid {
                Some(uuid) => ix.deal_data_in(uuid).await,
                // No notifier any more: the rescans alone.
                None => loop {
                    async_io::Timer::after(ix.rescan).await;
                    ix.scan().await;
                },
            },
            _ = timer => {
                ix.scan().await;
                timer = FutureExt::fuse(async_io::Timer::after(ix.rescan));
            }
        }
        if ix.missed.swap(false, Ordering::AcqRel) {
            ix.scan().await;
        }
    }
}
