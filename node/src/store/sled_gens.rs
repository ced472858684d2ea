//! The sled store's deal trees in generations, so a new deal's cost follows the deals
//! written lately, not every deal ever stored.
//!
//! Four of a deal's trees are keyed by random bytes: `deals` (UUID), `by_proposal_cid`,
//! `by_signed_proposal_cid` and `by_piece_cid` (hashes). In one tree of a million deals
//! every insert lands on a leaf that sled must read back from its log (BENCHMARKS.md,
//! "What a million costs on sled"). So the four trees come in generations: new deals go
//! into the open generation's trees (the first generation keeps the original names, later
//! ones add `.N`), and once it holds [`GENERATION_DEALS`] deals it is sealed: a Bloom
//! filter of each tree's keys is stored in `meta` in the same batch that opens the next
//! generation. The open generation's leaves stay in the page cache; a lookup asks the open
//! generation, then each sealed one whose filter may hold the key (about one in six
//! thousand answers "maybe" wrongly and costs a read; `core::bloom`). The filters of one kind are sized
//! alike and kept block by block (`core::bloom::BloomSet`), so asking every generation
//! about a key reads one run of memory, not a cache line in each.
//!
//! A sealed generation takes no new keys (a deal's UUID and CIDs never change; updates
//! rewrite a record in place), so its filter stays true. Filters are derived data: one
//! missing or unreadable at open is rebuilt from the trees. Every insert holds
//! [`Generations::for_insert`]'s lock, so no deal is written into a generation while it
//! is being sealed.

use std::{
    ops::Bound,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use ::sled::{Batch, Db, IVec, Tree};
use dealport_core::bloom::{Bloom, BloomSet, KeyHash};

use super::{merge::merge_runs, sled_backend as backend, StoreError};

/// Deals in a generation before it is sealed. Only the open generation's trees take
/// new deals, so their leaves are the hot part of sled's page cache (`CACHE_BYTES` in
/// `sled.rs`); a million deals make about 60 generations.
pub const GENERATION_DEALS: usize = 16_384;

/// `meta`: the open generation's number (u32, big-endian); absent: 0.
const OPEN_GENERATION: &[u8] = b"open_generation";
/// `meta`: `prefix ‖ number (u32 BE)` -> a sealed generation's filters.
const FILTERS_PREFIX: &[u8] = b"generation_filters/";

fn filters_key(n: u32) -> Vec<u8> {
    [FILTERS_PREFIX, &n.to_be_bytes()].concat()
}

/// One generation's four deal trees.
#[derive(Clone)]
pub(super) struct GenTrees {
    pub deals: Tree,
    pub by_proposal_cid: Tree,
    pub by_signed_proposal_cid: Tree,
    /// `piece CID bytes ‖ uuid` -> nothing.
    pub by_piece_cid: Tree,
}

impl GenTrees {
    fn open(db: &Db, n: u32) -> Result<GenTrees, StoreError> {
        let tree = |base: &str| {
            let name = if n == 0 {
                base.to_string()
            } else {
                format!("{base}.{n}")
            };
            db.open_tree(name).map_err(backend)
        };
        Ok(GenTrees {
            deals: tree("deals")?,
            by_proposal_cid: tree("by_proposal_cid")?,
            by_signed_proposal_cid: tree("by_signed_proposal_cid")?,
            by_piece_cid: tree("by_piece_cid")?,
        })
    }
}

/// A new deal's UUID and proposal CID as found in the sealed generations.
#[derive(Debug, Default)]
pub(super) struct InSealed {
    pub uuid: bool,
    /// The UUID stored under the proposal CID.
    pub proposal_of: Option<IVec>,
}

/// The index a CID is looked up in.
#[derive(Debug, Clone, Copy)]
pub(super) enum CidIndex {
    Proposal,
    SignedProposal,
}

impl CidIndex {
    fn tree(self, t: &GenTrees) -> &Tree {
        match self {
            CidIndex::Proposal => &t.by_proposal_cid,
            CidIndex::SignedProposal => &t.by_signed_proposal_cid,
        }
    }

    fn kind(self) -> Kind {
        match self {
            CidIndex::Proposal => Kind::Proposal,
            CidIndex::SignedProposal => Kind::SignedProposal,
        }
    }
}

/// What a filter holds, and its place in [`Filters`] and [`View`]'s filters.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Uuid = 0,
    Proposal = 1,
    SignedProposal = 2,
    /// The piece CIDs of `by_piece_cid`'s keys.
    Piece = 3,
}

/// A sealed generation's filters, one per tree, in [`Kind`] order.
struct Filters([Bloom; 4]);

impl Filters {
    /// Read the keys of `trees` into filters sized for `capacity` deals.
    fn build(trees: &GenTrees, capacity: usize) -> Result<Filters, StoreError> {
        let fill = |tree: &Tree, cut: usize| -> Result<Bloom, StoreError> {
            let mut f = Bloom::with_capacity(capacity);
            for k in tree.iter().keys() {
                let k = k.map_err(backend)?;
                f.insert(&k[..k.len().saturating_sub(cut)]);
            }
            Ok(f)
        };
        Ok(Filters([
            fill(&trees.deals, 0)?,
            fill(&trees.by_proposal_cid, 0)?,
            fill(&trees.by_signed_proposal_cid, 0)?,
            fill(&trees.by_piece_cid, 16)?,
        ]))
    }

    /// The four filters, each as its length (u32 BE) and [`Bloom::to_bytes`].
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in &self.0 {
            let b = f.to_bytes();
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(&b);
        }
        out
    }

    fn from_bytes(mut bytes: &[u8]) -> Option<Filters> {
        let mut next = || {
            let (len, rest) = bytes.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len) as usize;
            let f = Bloom::from_bytes(rest.get(..len)?)?;
            bytes = &rest[len..];
            Some(f)
        };
        let f = Filters([next()?, next()?, next()?, next()?]);
        bytes.is_empty().then_some(f)
    }
}

/// The generations as one reader sees them: cloned out of [`Generations`], so a seal
/// under way never changes a lookup half-way.
pub(super) struct View {
    /// Oldest first.
    sealed: Vec<GenTrees>,
    /// By [`Kind`], numbered by generation.
    filters: [BloomSet; 4],
    open: GenTrees,
    open_number: u32,
}

impl View {
    fn add_sealed(&mut self, trees: GenTrees, filters: Filters) {
        let generation = self.sealed.len();
        self.sealed.push(trees);
        for (kind, f) in self.filters.iter_mut().zip(filters.0) {
            kind.add(generation, f);
        }
    }

    /// The sealed generations whose `kind` filter may hold `key`, newest first.
    fn candidates(&self, kind: Kind, key: &[u8]) -> Vec<usize> {
        self.filters[kind as usize].candidates(KeyHash::of(key))
    }

    /// The generation holding deal `uuid`, and its record.
    pub fn find(&self, uuid: &[u8]) -> Result<Option<(&GenTrees, IVec)>, StoreError> {
        if let Some(v) = self.open.deals.get(uuid).map_err(backend)? {
            return Ok(Some((&self.open, v)));
        }
        for g in self.candidates(Kind::Uuid, uuid) {
            let trees = &self.sealed[g];
            if let Some(v) = trees.deals.get(uuid).map_err(backend)? {
                return Ok(Some((trees, v)));
            }
        }
        Ok(None)
    }

    /// The UUID stored under `cid` in `index`.
    pub fn uuid_by(&self, index: CidIndex, cid: &[u8]) -> Result<Option<IVec>, StoreError> {
        if let Some(u) = index.tree(&self.open).get(cid).map_err(backend)? {
            return Ok(Some(u));
        }
        for g in self.candidates(index.kind(), cid) {
            if let Some(u) = index.tree(&self.sealed[g]).get(cid).map_err(backend)? {
                return Ok(Some(u));
            }
        }
        Ok(None)
    }

    /// What the sealed generations hold of a new deal (the open generation is asked
    /// inside the insert's transaction).
    pub fn in_sealed(&self, uuid: &[u8], prop: &[u8]) -> Result<InSealed, StoreError> {
        let mut found = InSealed::default();
        for g in self.candidates(Kind::Uuid, uuid) {
            if self.sealed[g].deals.contains_key(uuid).map_err(backend)? {
                found.uuid = true;
                break;
            }
        }
        for g in self.candidates(Kind::Proposal, prop) {
            found.proposal_of = self.sealed[g].by_proposal_cid.get(prop).map_err(backend)?;
            if found.proposal_of.is_some() {
                break;
            }
        }
        Ok(found)
    }

    /// The UUIDs of the deals of piece `piece`, in order, at most `limit`.
    pub fn by_piece(&self, piece: &[u8], limit: usize) -> Result<Vec<[u8; 16]>, StoreError> {
        let sealed = self.candidates(Kind::Piece, piece);
        let asked = sealed.iter().map(|g| &self.sealed[*g]);
        let mut out = Vec::new();
        for t in asked.chain(std::iter::once(&self.open)) {
            for k in t.by_piece_cid.scan_prefix(piece).keys().take(limit) {
                let k = k.map_err(backend)?;
                // CIDs are self-delimiting; the length check keeps a longer key out anyway.
                if let Ok(u) = <[u8; 16]>::try_from(&k[piece.len()..]) {
                    out.push(u);
                }
            }
        }
        out.sort_unstable();
        out.truncate(limit);
        Ok(out)
    }

    /// Deal records in UUID order after `after` (`None`: from the first), at most `limit`,
    /// merged from every generation.
    pub fn deals_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(IVec, IVec)>, StoreError> {
        let runs = self
            .trees()
            .map(|t| match after {
                Some(a) => t
                    .deals
                    .range((Bound::Excluded(a.to_vec()), Bound::Unbounded)),
                None => t.deals.iter(),
            })
            .collect();
        merge_runs(runs, limit, false).map_err(backend)
    }

    /// Every generation's trees, oldest first.
    pub fn trees(&self) -> impl Iterator<Item = &GenTrees> {
        self.sealed.iter().chain(std::iter::once(&self.open))
    }

    /// The open generation's trees (what an insert writes).
    pub fn open(&self) -> &GenTrees {
        &self.open
    }

    /// How many generations there are, the open one included.
    pub fn count(&self) -> usize {
        self.sealed.len() + 1
    }
}

/// The deal trees in generations (see the module docs).
pub(super) struct Generations {
    db: Db,
    meta: Tree,
    deals_per_generation: usize,
    view: RwLock<Arc<View>>,
    /// Deals in the open generation; held by every insert (see [`Generations::for_insert`]).
    insert: Mutex<usize>,
}

impl Generations {
    /// Open the generations `meta` records (a store from before them: one, open). The
    /// open one, if full, is sealed by the next [`Generations::for_insert`].
    pub fn open(
        db: &Db,
        meta: &Tree,
        deals_per_generation: usize,
    ) -> Result<Generations, StoreError> {
        let open_number = match meta.get(OPEN_GENERATION).map_err(backend)? {
            Some(v) => {
                u32::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(OPEN_GENERATION).into_owned(),
                    message: format!("{} bytes, not 4", v.len()),
                })?)
            }
            None => 0,
        };
        let deals_per_generation = deals_per_generation.max(1);
        let mut view = View {
            sealed: Vec::new(),
            filters: std::array::from_fn(|_| BloomSet::new(deals_per_generation)),
            open: GenTrees::open(db, open_number)?,
            open_number,
        };
        let mut rebuilt = 0;
        for n in 0..open_number {
            let trees = GenTrees::open(db, n)?;
            let stored = meta.get(filters_key(n)).map_err(backend)?;
            let filters = match stored.as_deref().and_then(Filters::from_bytes) {
                Some(f) => f,
                None => {
                    rebuilt += 1;
                    let capacity = BloomSet::capacity_for(trees.deals.len(), deals_per_generation);
                    let f = Filters::build(&trees, capacity)?;
                    meta.insert(filters_key(n), f.to_bytes()).map_err(backend)?;
                    f
                }
            };
            view.add_sealed(trees, filters);
        }
        if rebuilt > 0 {
            // Once after an upgrade that changed their format; otherwise a filter lost.
            tracing::warn!(
                rebuilt,
                of = open_number,
                "rebuilt deal-tree filters that were missing, damaged or of an older format"
            );
        }
        let in_open = view.open.deals.len();
        Ok(Generations {
            db: db.clone(),
            meta: meta.clone(),
            deals_per_generation,
            view: RwLock::new(Arc::new(view)),
            insert: Mutex::new(in_open),
        })
    }

    /// The generations now.
    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The lock an insert holds while it writes, the open generation sealed first if
    /// full.
    pub fn for_insert(&self) -> Result<ForInsert<'_>, StoreError> {
        let mut in_open = self.insert.lock().unwrap_or_else(|p| p.into_inner());
        if *in_open >= self.deals_per_generation {
            self.seal(*in_open)?;
            *in_open = 0;
        }
        Ok(ForInsert {
            in_open,
            view: self.view(),
        })
    }

    /// Seal the open generation (holding `deals`) and open the next. The filters and the
    /// new open number go into `meta` in one batch, before any deal is written into the
    /// next generation.
    fn seal(&self, deals: usize) -> Result<(), StoreError> {
        let view = self.view();
        let n = view.open_number;
        let started = std::time::Instant::now();
        if deals > 2 * self.deals_per_generation {
            // Only a store from before generations has one this large: say why the start
            // waits.
            tracing::info!(
                deals,
                "sealing the deals of a store from before generations as its first generation \
                 (once; reads every key of the deal trees)"
            );
        }
        let filters = Filters::build(
            &view.open,
            BloomSet::capacity_for(deals, self.deals_per_generation),
        )?;
        let mut batch = Batch::default();
        batch.insert(filters_key(n), filters.to_bytes());
        batch.insert(OPEN_GENERATION, &(n + 1).to_be_bytes());
        self.meta.apply_batch(batch).map_err(backend)?;
        let next = GenTrees::open(&self.db, n + 1)?;
        let mut next_view = View {
            sealed: view.sealed.clone(),
            filters: view.filters.clone(),
            open: next,
            open_number: n + 1,
        };
        next_view.add_sealed(view.open.clone(), filters);
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next_view);
        tracing::debug!(
            generation = n,
            deals,
            ms = started.elapsed().as_millis() as u64,
            "sealed a generation of the deal trees"
        );
        Ok(())
    }
}

/// Held while new deals are written into the open generation.
pub(super) struct ForInsert<'a> {
    in_open: MutexGuard<'a, usize>,
    view: Arc<View>,
}

impl ForInsert<'_> {
    pub fn view(&self) -> &View {
        &self.view
    }

    /// `n` more deals are in the open generation.
    pub fn written(&mut self, n: usize) {
        *self.in_open += n;
    }
}
