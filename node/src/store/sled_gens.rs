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
//! generation, then each sealed one whose filter may hold the key (one cache line each;
//! about one sealed generation in a thousand answers "maybe" wrongly and costs a read).
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
use dealport_core::bloom::{Bloom, KeyHash};

use super::{merge::merge_runs, sled_backend as backend, StoreError};

/// Deals in a generation before it is sealed: its trees (about 16 MiB of records at
/// format 2's ~1 KiB) stay in sled's 64 MiB page cache beside the other trees' hot
/// leaves, and a million deals make about 60 generations.
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

    fn filter(self, f: &Filters) -> &Bloom {
        match self {
            CidIndex::Proposal => &f.proposal,
            CidIndex::SignedProposal => &f.signed,
        }
    }
}

/// A sealed generation's filters, one per tree (`by_piece_cid`'s over the piece CIDs).
struct Filters {
    uuid: Bloom,
    proposal: Bloom,
    signed: Bloom,
    piece: Bloom,
}

impl Filters {
    /// Read the keys of `trees`, which hold about `deals` deals.
    fn build(trees: &GenTrees, deals: usize) -> Result<Filters, StoreError> {
        let fill = |tree: &Tree, cut: usize| -> Result<Bloom, StoreError> {
            let mut f = Bloom::with_capacity(deals);
            for k in tree.iter().keys() {
                let k = k.map_err(backend)?;
                f.insert(&k[..k.len().saturating_sub(cut)]);
            }
            Ok(f)
        };
        Ok(Filters {
            uuid: fill(&trees.deals, 0)?,
            proposal: fill(&trees.by_proposal_cid, 0)?,
            signed: fill(&trees.by_signed_proposal_cid, 0)?,
            piece: fill(&trees.by_piece_cid, 16)?,
        })
    }

    /// The four filters, each as its length (u32 BE) and [`Bloom::to_bytes`].
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in [&self.uuid, &self.proposal, &self.signed, &self.piece] {
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
        let f = Filters {
            uuid: next()?,
            proposal: next()?,
            signed: next()?,
            piece: next()?,
        };
        bytes.is_empty().then_some(f)
    }
}

struct Sealed {
    trees: GenTrees,
    filters: Filters,
}

/// The generations as one reader sees them: cloned out of [`Generations`], so a seal
/// under way never changes a lookup half-way.
pub(super) struct View {
    /// Oldest first.
    sealed: Vec<Arc<Sealed>>,
    open: GenTrees,
    open_number: u32,
}

impl View {
    /// The generation holding deal `uuid`, and its record.
    pub fn find(&self, uuid: &[u8]) -> Result<Option<(&GenTrees, IVec)>, StoreError> {
        if let Some(v) = self.open.deals.get(uuid).map_err(backend)? {
            return Ok(Some((&self.open, v)));
        }
        let h = KeyHash::of(uuid);
        for s in self.sealed.iter().rev() {
            if s.filters.uuid.may_contain_hash(h) {
                if let Some(v) = s.trees.deals.get(uuid).map_err(backend)? {
                    return Ok(Some((&s.trees, v)));
                }
            }
        }
        Ok(None)
    }

    /// The UUID stored under `cid` in `index`.
    pub fn uuid_by(&self, index: CidIndex, cid: &[u8]) -> Result<Option<IVec>, StoreError> {
        if let Some(u) = index.tree(&self.open).get(cid).map_err(backend)? {
            return Ok(Some(u));
        }
        let h = KeyHash::of(cid);
        for s in self.sealed.iter().rev() {
            if index.filter(&s.filters).may_contain_hash(h) {
                if let Some(u) = index.tree(&s.trees).get(cid).map_err(backend)? {
                    return Ok(Some(u));
                }
            }
        }
        Ok(None)
    }

    /// What the sealed generations hold of a new deal (the open generation is asked
    /// inside the insert's transaction).
    pub fn in_sealed(&self, uuid: &[u8], prop: &[u8]) -> Result<InSealed, StoreError> {
        let (hu, hp) = (KeyHash::of(uuid), KeyHash::of(prop));
        let mut found = InSealed::default();
        for s in self.sealed.iter().rev() {
            if !found.uuid && s.filters.uuid.may_contain_hash(hu) {
                found.uuid = s.trees.deals.contains_key(uuid).map_err(backend)?;
            }
            if found.proposal_of.is_none() && s.filters.proposal.may_contain_hash(hp) {
                found.proposal_of = s.trees.by_proposal_cid.get(prop).map_err(backend)?;
            }
        }
        Ok(found)
    }

    /// The UUIDs of the deals of piece `piece`, in order, at most `limit`.
    pub fn by_piece(&self, piece: &[u8], limit: usize) -> Result<Vec<[u8; 16]>, StoreError> {
        let h = KeyHash::of(piece);
        let mut out = Vec::new();
        for (t, filters) in self.generations() {
            if filters.is_some_and(|f| !f.piece.may_contain_hash(h)) {
                continue;
            }
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
        self.generations().map(|(t, _)| t)
    }

    /// Every generation's trees with its filters (none for the open one), oldest first.
    fn generations(&self) -> impl Iterator<Item = (&GenTrees, Option<&Filters>)> {
        self.sealed
            .iter()
            .map(|s| (&s.trees, Some(&s.filters)))
            .chain(std::iter::once((&self.open, None)))
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
    /// Open the generations `meta` records (a store from before them: one, open), sealing
    /// the open one if it is full (a store from before them with many deals: once).
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
        let mut sealed = Vec::new();
        for n in 0..open_number {
            let trees = GenTrees::open(db, n)?;
            let stored = meta.get(filters_key(n)).map_err(backend)?;
            let filters = match stored.as_deref().and_then(Filters::from_bytes) {
                Some(f) => f,
                None => {
                    tracing::warn!(generation = n, "rebuilding a missing deal-tree filter");
                    let f = Filters::build(&trees, trees.deals.len())?;
                    meta.insert(filters_key(n), f.to_bytes()).map_err(backend)?;
                    f
                }
            };
            sealed.push(Arc::new(Sealed { trees, filters }));
        }
        let open = GenTrees::open(db, open_number)?;
        let in_open = open.deals.len();
        let gens = Generations {
            db: db.clone(),
            meta: meta.clone(),
            deals_per_generation: deals_per_generation.max(1),
            view: RwLock::new(Arc::new(View {
                sealed,
                open,
                open_number,
            })),
            insert: Mutex::new(in_open),
        };
        gens.for_insert()?;
        Ok(gens)
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
        let filters = Filters::build(&view.open, deals)?;
        let mut batch = Batch::default();
        batch.insert(filters_key(n), filters.to_bytes());
        batch.insert(OPEN_GENERATION, &(n + 1).to_be_bytes());
        self.meta.apply_batch(batch).map_err(backend)?;
        let next = GenTrees::open(&self.db, n + 1)?;
        let mut sealed = view.sealed.clone();
        sealed.push(Arc::new(Sealed {
            trees: view.open.clone(),
            filters,
        }));
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(View {
            sealed,
            open: next,
            open_number: n + 1,
        });
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
