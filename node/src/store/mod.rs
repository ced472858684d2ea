//! What the node keeps: its identity key, its deals and the cluster's leader lease,
//! behind one [`Store`] trait so the embedded backend (sled, one machine) and the cluster
//! backend (PostgreSQL, [`postgres`]) are interchangeable.
//!
//! The trait is asynchronous (every method returns a boxed future) because the cluster
//! backend talks to a database over the network; the sled backend runs its blocking work
//! on the runtime's blocking pool. The sled store keeps a deal as the raw DealParams bytes
//! plus the record fields ([`StoredDeal`]); PostgreSQL keeps them as columns.
//!
//! Layer: the store, above the runtime seam: uses `runtime` only.

mod fence;
mod group_flush;
mod merge;
pub mod pg_connect;
mod pg_lease_conn;
pub mod postgres;
mod recent;
mod record;
pub mod sled;
mod sled_gens;
mod sled_ui;
mod write_group;

use std::{collections::BTreeSet, future::Future, path::PathBuf, pin::Pin, time::Duration};

use dealport_core::{
    dashboard::{DealQuery, HourCount, StateCounts},
    deal::{Checkpoint, DealRecord},
    ipni::Block,
    piece_index::{BlockEntry, BlockLocation, IndexState},
    wire::{Cid, DealUuid},
};

pub use dealport_core::lease::{DbMillis, LeaseRow};
pub use fence::{Fence, LeaseGate};
pub use record::StoredDeal;

/// The future every store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed. Clone: a write shared by a group of callers (the sled
/// store's write group) fails each of them with its error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The data dir is locked by another process.
    #[error("data dir {} is in use by another dealport process", .0.display())]
    InUse(PathBuf),
    #[error("store at {}: {message}", path.display())]
    Open { path: PathBuf, message: String },
    #[error("store: {0}")]
    Backend(String),
    /// A stored value that does not decode (a bug or a damaged store).
    #[error("store: damaged record {key}: {message}")]
    Corrupt { key: String, message: String },
    /// The runtime dropped the blocking work (shutting down).
    #[error("store: the blocking task was dropped")]
    Dropped,
    #[error("store: no deal with UUID {0}")]
    NoSuchDeal(DealUuid),
    /// A fenced write refused: the writer no longer holds the lease at that generation
    /// (another node acquired it, or it expired).
    #[error("store: {node} no longer holds the lease at generation {generation}")]
    Fenced { node: String, generation: u64 },
    /// A write that needs a lease (cluster store) made without one.
    #[error("store: {0} needs the lease in a cluster store; use the fenced form")]
    NeedsLease(&'static str),
}

/// A sled error as a [`StoreError`], for the sled store's modules.
fn sled_backend(e: ::sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The lease row as read, with the database's time of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRead {
    /// `None`: the table is empty (acquire with `expect_generation: None`).
    pub row: Option<LeaseRow>,
    /// The database's clock (`now()`) in the same statement.
    pub now: DbMillis,
}

/// A successful acquisition or renewal, in database time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    pub generation: u64,
    /// When the database granted it (`now()` of the statement): the leader's `renewed_at`.
    pub at: DbMillis,
    pub expires_at: DbMillis,
}

/// Where the HTTP relay should send libp2p WebSocket connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTarget {
    /// The holder's internal WebSocket listen multiaddr.
    pub local_listen: String,
    /// Whether the holder's lease is unexpired now (database time).
    pub live: bool,
}

/// The outcome of [`Store::insert_new_deal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored and durable (flushed).
    Yes,
    /// Nothing written: a deal with this UUID already exists.
    UuidExists,
    /// Nothing written: a deal with the same proposal CID exists (under this UUID).
    ProposalExists(DealUuid),
}

/// The node's persistent state.
pub trait Store: Send + Sync + 'static {
    /// The identity key (libp2p protobuf encoding). Created from `generate()` on first
    /// call, then always the same bytes. Durable before returning.
    fn identity_or_create<'a>(
        &'a self,
        generate: Box<dyn FnOnce() -> Vec<u8> + Send>,
    ) -> StoreFuture<'a, (Vec<u8>, bool)>;

    /// The identity key if one exists.
    fn identity(&self) -> StoreFuture<'_, Option<Vec<u8>>>;

    /// Store a newly accepted deal and its indexes atomically, and make it durable
    /// before returning. Writes nothing if its UUID or proposal CID is already known.
    fn insert_new_deal<'a>(&'a self, deal: &'a DealRecord) -> StoreFuture<'a, Inserted>;

    /// Replace the record of a known deal (same UUID) and make it durable.
    fn update_deal<'a>(&'a self, deal: &'a DealRecord) -> StoreFuture<'a, ()>;

    fn deal_by_uuid(&self, uuid: DealUuid) -> StoreFuture<'_, Option<DealRecord>>;
    /// By the on-chain proposal CID (blake2b-256 dag-cbor of the DealProposal).
    fn deal_by_proposal_cid<'a>(&'a self, cid: &'a Cid) -> StoreFuture<'a, Option<DealRecord>>;
    /// What a new proposal is checked against: the deal under its UUID and the deal with
    /// its proposal CID. One call, so a backend can answer both with one trip (sled: one
    /// hand-off to the blocking pool instead of two).
    fn deals_for_proposal<'a>(
        &'a self,
        uuid: DealUuid,
        proposal_cid: &'a Cid,
    ) -> StoreFuture<'a, (Option<DealRecord>, Option<DealRecord>)> {
        Box::pin(async move {
            let by_uuid = self.deal_by_uuid(uuid).await?;
            let by_proposal = self.deal_by_proposal_cid(proposal_cid).await?;
            Ok((by_uuid, by_proposal))
        })
    }
    /// By the signed proposal CID (sha2-256 dag-cbor of the ClientDealProposal).
    fn deal_by_signed_proposal_cid<'a>(
        &'a self,
        cid: &'a Cid,
    ) -> StoreFuture<'a, Option<DealRecord>>;

    /// Every deal, ordered by UUID bytes.
    fn list_deals(&self) -> StoreFuture<'_, Vec<DealRecord>>;

    /// At most `limit` deals whose UUID comes after `after` (from the first when `None`),
    /// ordered by UUID bytes: a page read by key range, never the whole table.
    fn list_deals_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealRecord>>;

    /// At most `limit` deals at `checkpoint` that have not failed, after `after` in UUID
    /// byte order: the work the background tasks do, read from an index that holds only
    /// deals still at work (never failed or `Complete` ones), so its cost follows the
    /// work in flight, not the history. `Complete` gives none.
    fn live_deals_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealRecord>>;

    /// The UUIDs [`Store::live_deals_at`] would give, without reading the deals: a
    /// rescan that has seen most of them already reads only the index (keys on sled, one
    /// column of a partial index on PostgreSQL).
    fn live_uuids_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>>;

    /// The UUIDs of at most `limit` online deals at `Accepted` that have not failed,
    /// after `after` in UUID byte order (fewer than `limit`: no more after these): the
    /// transfer runner's work. Keys only: the runner reads a deal when it starts on it,
    /// so a rescan over a long backlog reads no records. Offline deals waiting for an
    /// import are not its work; a backend that keeps them apart (sled, PostgreSQL) never
    /// reads them here.
    /// The default reads [`Store::live_deals_at`] and leaves the offline ones out.
    fn awaiting_download(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        let limit = limit.max(1);
        let page = move |after| -> StoreFuture<'_, Vec<(DealUuid, bool)>> {
            Box::pin(async move {
                let deals = self
                    .live_deals_at(Checkpoint::Accepted, after, limit)
                    .await?;
                Ok(deals
                    .iter()
                    .map(|d| (d.uuid, !d.params.is_offline))
                    .collect())
            })
        };
        Box::pin(online_only(page, after, limit))
    }

    /// At most `limit` deals whose proposal names `piece` as its piece CID, ordered by
    /// UUID bytes, failed ones included: read from an index by piece CID written with the
    /// deal (`/piece/<cid>` looks pieces up here), never a scan of the deals.
    fn deals_by_piece_cid<'a>(
        &'a self,
        piece: &'a Cid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<DealRecord>>;

    // ---- The dashboard's reads (`/ui/`), each from an index, never a scan ----------

    /// A page of deals matching `q` (state filter, client), newest or oldest first,
    /// strictly after `q.after`, at most `q.limit`.
    fn query_deals<'a>(&'a self, q: &'a DealQuery) -> StoreFuture<'a, Vec<DealRecord>>;

    /// How many deals are in each state (`dashboard::state_code`).
    fn state_counts(&self) -> StoreFuture<'_, StateCounts>;

    /// Deals accepted per hour from hour `since_hour` (hours since the epoch) on, and how
    /// many of those have failed since. Hours with none may be left out.
    fn hourly_counts(&self, since_hour: i64) -> StoreFuture<'_, Vec<HourCount>>;

    /// When the deal was first stored in each state it reached, as `(state code, unix
    /// ms)` in state-code order. Deals stored before the timeline existed have fewer.
    fn deal_timeline(&self, uuid: DealUuid) -> StoreFuture<'_, Vec<(u8, i64)>>;

    /// Where the store lives (for `dealport info`).
    fn describe(&self) -> String;

    /// The database server in use now and whether it took writes when last asked
    /// (`/health`, metrics); `None` for a store with no server.
    fn server(&self) -> Option<(String, bool)> {
        None
    }

    // ---- Fenced deal writes -------------------------------------------------------
    // A cluster leader writes only through these: each succeeds only if the lease row
    // still names `fence.node` at `fence.generation` and is unexpired (database time),
    // checked in the same transaction as the write; otherwise [`StoreError::Fenced`].
    // No defaults: a backend that forgets one of these does not compile (a default that
    // wrote unfenced would silently break the fencing).

    /// [`Store::insert_new_deal`], fenced.
    fn insert_new_deal_fenced<'a>(
        &'a self,
        fence: &'a Fence,
        deal: &'a DealRecord,
    ) -> StoreFuture<'a, Inserted>;

    /// [`Store::update_deal`], fenced.
    fn update_deal_fenced<'a>(
        &'a self,
        fence: &'a Fence,
        deal: &'a DealRecord,
    ) -> StoreFuture<'a, ()>;

    // ---- The leader lease (see `dealport_core::lease`) -----------------------------
    // Every statement is conditional and uses the database's clock.

    /// The lease row and the database's time.
    fn read_lease(&self) -> StoreFuture<'_, LeaseRead>;

    /// Take the lease for `node` for `ttl`, bumping the generation: insert the row if the
    /// table is empty (`expect_generation: None`), else take the row if its generation is
    /// `expect_generation` and it is released, expired or already `node`'s. `None` when
    /// another node got there first (nothing written).
    fn try_acquire<'a>(
        &'a self,
        node: &'a str,
        expect_generation: Option<u64>,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<LeaseGrant>>;

    /// Extend `fence`'s lease to now + `ttl` if it is still held and unexpired. `None`:
    /// lost (step down).
    fn renew<'a>(&'a self, fence: &'a Fence, ttl: Duration) -> StoreFuture<'a, Option<LeaseGrant>>;

    /// Give the lease up (graceful shutdown) and clear the listen address, if `fence`
    /// still holds it. `true` if released. The generation stays; the next acquisition
    /// bumps it.
    fn release<'a>(&'a self, fence: &'a Fence) -> StoreFuture<'a, bool>;

    /// Record the holder's internal WebSocket listen multiaddr and its announce
    /// multiaddrs, fenced like the deal writes ([`StoreError::Fenced`] otherwise).
    fn set_local_listen<'a>(
        &'a self,
        fence: &'a Fence,
        local_listen: &'a str,
        announce: &'a [String],
    ) -> StoreFuture<'a, ()>;

    /// A lease holder's named piece of state (e.g. the miner-info messages in flight),
    /// `None` if never written.
    fn leader_state<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Replace the named state, fenced like the deal writes ([`StoreError::Fenced`]
    /// otherwise); durable before returning.
    fn put_leader_state<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
        value: &'a [u8],
    ) -> StoreFuture<'a, ()>;

    /// Where to relay to: the last listen address a holder wrote (cleared on release and
    /// on every acquisition), and whether its lease is live now.
    fn relay_target(&self) -> StoreFuture<'_, Option<RelayTarget>>;

    // ---- The piece directory (docs/indexing.md) -------------------------------------
    // Keyed by piece CID (deals of one piece share its bytes, so its index). Written
    // unfenced: every entry and state is a function of the piece's bytes, so a stale
    // leader writing them writes what the new one would. Indexing writes entries in
    // batches ([`Store::put_piece_blocks`]), then the final state
    // ([`Store::set_piece_index_state`]); a piece whose state is still `NotYet` after a
    // restart is indexed again from the start.

    /// What indexing `piece` found; [`IndexState::NotYet`] when never (or not fully)
    /// indexed.
    fn piece_index_state<'a>(&'a self, piece: &'a Cid) -> StoreFuture<'a, IndexState>;

    /// Add a batch of `piece`'s block entries (an entry already there is replaced).
    /// Not flushed: the final state's write is.
    fn put_piece_blocks<'a>(
        &'a self,
        piece: &'a Cid,
        entries: &'a [BlockEntry],
    ) -> StoreFuture<'a, ()>;

    /// Record `state` for `piece`, durable before returning. `Indexed` keeps the entries
    /// written; `NotYet` (indexing starts again), `NotCar` and `Malformed` remove them.
    fn set_piece_index_state<'a>(
        &'a self,
        piece: &'a Cid,
        state: &'a IndexState,
    ) -> StoreFuture<'a, ()>;

    /// At most `limit` of `piece`'s block entries with an offset above `after` (from the
    /// first when `None`), ordered by offset (the CAR's order): page on with the last
    /// entry's offset. A page read by key range, never the whole piece.
    fn piece_blocks_page<'a>(
        &'a self,
        piece: &'a Cid,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<BlockEntry>>;

    /// Where the block with `multihash` (whole: code, length, digest) is: at most
    /// `limit` locations, ordered by piece CID bytes then offset (a block may be in
    /// several pieces, or twice in one).
    fn blocks_by_multihash<'a>(
        &'a self,
        multihash: &'a [u8],
        limit: usize,
    ) -> StoreFuture<'a, Vec<BlockLocation>>;

    // ---- The IPNI advertisement chain (docs/ipni.md) --------------------------------
    // Blocks (advertisements and entry chunks, dag-json) by CID, the head, and which
    // deal each advertisement is for. Entry chunks are written unfenced (content
    // addressed: a stale leader's chunk is one the next would write, or garbage nobody
    // links); an advertisement only through [`Store::publish_ipni_ad`], fenced and
    // conditional on the head, so two holders can never fork the chain.

    /// The chain's head, `None` before the first advertisement.
    fn ipni_head(&self) -> StoreFuture<'_, Option<IpniHead>>;

    /// An advertisement's or entry chunk's bytes.
    fn ipni_block<'a>(&'a self, cid: &'a Cid) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Keep an entry chunk (idempotent). Not flushed: the publish that links it is.
    fn put_ipni_chunk<'a>(&'a self, block: &'a Block) -> StoreFuture<'a, ()>;

    /// Append `ad` to the chain in one transaction, fenced like the deal writes: only if
    /// the head is still `ad.previous` and no advertisement is recorded for the same
    /// (deal, is_rm, part). Durable before returning.
    fn publish_ipni_ad<'a>(
        &'a self,
        fence: &'a Fence,
        ad: &'a IpniPublish,
    ) -> StoreFuture<'a, Published>;

    /// The advertisements recorded for `deal`.
    fn ipni_ads_of_deal(&self, deal: DealUuid) -> StoreFuture<'_, Vec<IpniAdRef>>;

    /// At most `limit` deals announced and not yet removed, after `after` in UUID byte
    /// order (the candidates for a removal advertisement).
    fn ipni_announced_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>>;
}

/// The head of the advertisement chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpniHead {
    pub cid: Cid,
    /// How many advertisements the chain holds (the head's position, from 1).
    pub seq: u64,
}

/// An advertisement to append to the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpniPublish {
    pub ad: Block,
    /// The head it links to (`PreviousID`); `None` for the first.
    pub previous: Option<Cid>,
    pub deal: DealUuid,
    pub is_rm: bool,
    /// Which of the deal's advertisements (a piece past 400 entry chunks takes several).
    pub part: u32,
}

/// One advertisement recorded for a deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpniAdRef {
    pub cid: Cid,
    pub is_rm: bool,
    pub part: u32,
    pub seq: u64,
}

/// The outcome of [`Store::publish_ipni_ad`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Appended; the new head's position.
    Yes { seq: u64 },
    /// Nothing written: the head is no longer `previous` (read it again).
    HeadMoved,
    /// Nothing written: this (deal, is_rm, part) is already in the chain, at this CID.
    Already(Cid),
}

/// Every checkpoint, in order.
pub use dealport_core::dashboard::CHECKPOINTS;

/// Is a deal at `checkpoint`, failed or not, still at work (in the live index)?
pub fn is_live(checkpoint: Checkpoint, failed: bool) -> bool {
    !failed && checkpoint != Checkpoint::Complete
}

/// Page through [`Store::live_deals_at`] for `checkpoint`, `page` deals at a time,
/// handing each page to `each`; how many deals were seen. The background tasks' one
/// way to find their work.
pub async fn for_each_live_page<F>(
    store: &dyn Store,
    checkpoint: Checkpoint,
    page: usize,
    each: F,
) -> Result<usize, StoreError>
where
    F: FnMut(Vec<DealRecord>),
{
    for_each_page(
        page,
        |after| store.live_deals_at(checkpoint, after, page),
        each,
    )
    .await
}

/// What [`for_each_new_live_deal`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LivePass {
    /// UUIDs seen in the live index.
    pub seen: usize,
    /// Deals read from the store (whole pages, for the pages holding UUIDs `new` kept).
    pub read: usize,
}

/// Page through the live UUIDs at `checkpoint`, `page` at a time; where a page holds
/// UUIDs `new` keeps, read that page's deals and hand those to `each`. A task that
/// remembers what it has dealt with (the piece indexer) reads only keys at rest, not
/// every deal waiting at its checkpoints.
pub async fn for_each_new_live_deal<N, F>(
    store: &dyn Store,
    checkpoint: Checkpoint,
    page: usize,
    mut new: N,
    mut each: F,
) -> Result<LivePass, StoreError>
where
    N: FnMut(&DealUuid) -> bool,
    F: FnMut(Vec<DealRecord>),
{
    let page = page.max(1);
    let mut pass = LivePass::default();
    let mut after = None;
    loop {
        let uuids = store.live_uuids_at(checkpoint, after, page).await?;
        pass.seen += uuids.len();
        let wanted: BTreeSet<DealUuid> = uuids.iter().filter(|u| new(u)).copied().collect();
        if !wanted.is_empty() {
            // The same range again, as deals (a deal that moved since is left to the
            // next pass).
            let deals = store.live_deals_at(checkpoint, after, page).await?;
            pass.read += deals.len();
            each(
                deals
                    .into_iter()
                    .filter(|d| wanted.contains(&d.uuid))
                    .collect(),
            );
        }
        if uuids.len() < page {
            return Ok(pass);
        }
        after = uuids.last().copied();
    }
}

/// Page through a paged read (`read(after)` gives at most `page` deals after `after`,
/// in UUID order), handing each page to `each`; how many deals were seen.
pub async fn for_each_page<'a, R, F>(
    page: usize,
    mut read: R,
    mut each: F,
) -> Result<usize, StoreError>
where
    R: FnMut(Option<DealUuid>) -> StoreFuture<'a, Vec<DealRecord>>,
    F: FnMut(Vec<DealRecord>),
{
    let mut after = None;
    let mut seen = 0;
    loop {
        let deals = read(after).await?;
        let n = deals.len();
        seen += n;
        after = deals.last().map(|d| d.uuid);
        each(deals);
        if n < page.max(1) {
            return Ok(seen);
        }
    }
}

/// At most `limit` UUIDs of online deals, after `after`, from the pages `read` gives
/// in UUID order (each at most `limit` long, each UUID with whether its deal is online):
/// offline deals are left out and pages read on until `limit` remain or the pages end.
/// The one filter behind [`Store::awaiting_download`].
async fn online_only<'a, R>(
    mut read: R,
    mut after: Option<DealUuid>,
    limit: usize,
) -> Result<Vec<DealUuid>, StoreError>
where
    R: FnMut(Option<DealUuid>) -> StoreFuture<'a, Vec<(DealUuid, bool)>>,
{
    let limit = limit.max(1);
    let mut out = Vec::new();
    loop {
        let page = read(after).await?;
        let full = page.len() >= limit;
        after = page.last().map(|(uuid, _)| *uuid);
        for (uuid, online) in page {
            if out.len() == limit {
                return Ok(out);
            }
            if online {
                out.push(uuid);
            }
        }
        if !full || out.len() == limit {
            return Ok(out);
        }
    }
}

/// Parse a checkpoint from its Boost name.
pub fn checkpoint_from_name(name: &str) -> Option<Checkpoint> {
    CHECKPOINTS.into_iter().find(|c| c.name() == name)
}
