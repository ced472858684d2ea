//! `dealport store copy`: a node's embedded store into a PostgreSQL database, for a node
//! whose history outgrew sled (BENCHMARKS.md, "A long history": at a million deals sled
//! holds hundreds of MB and accepts at about 60 % of its empty rate; PostgreSQL meets the
//! targets). Everything a node keeps goes across: the identity key (the PeerID on chain
//! stays), every deal with its dashboard timeline, the piece directory, the IPNI chain
//! (the same advertisements, so indexers see one chain go on) and the leader's intents
//! (a publish or an add-piece in flight when the node stopped).
//!
//! The copy holds the database's lease while it writes, so no node runs on the target
//! meanwhile (the source's data dir is locked by opening it). Stopped half-way, it is run
//! again: deals, pieces and advertisements already there are kept, not written twice;
//! what the target holds from another node stops it before it writes (decisions in
//! `dealport_core::store_copy`).
//!
//! Layer: beside `cluster` at the top of the node (docs/design.md): it uses the store and
//! the names of the leader states of `exec`, `sealing` and `chain`; nothing uses it.

use std::time::{Duration, Instant};

use dealport_core::{
    deal::DealRecord,
    ipni::{ad::no_entries, Advertisement, Block, EntryChunk},
    piece_index::IndexState,
    store_copy::{chain_plan, check_positions, identity_plan, ChainPlan, IdentityPlan},
    wire::{Cid, DealUuid},
};

use crate::chain::miner_info::IN_FLIGHT_STATE;
use crate::exec::publish::INTENT_STATE;
use crate::sealing::handoff::intent_key;
use crate::store::{
    is_live, postgres::PostgresStore, Fence, IpniPublish, Published, Store, StoreError,
};

/// The lease holder's name while a copy runs (what a node that starts meanwhile shows).
pub const COPIER: &str = "dealport store copy";
/// Deals read and written per transaction.
const PAGE: usize = 1000;
/// Block entries per read and write.
const BLOCK_PAGE: usize = 10_000;
/// Held for this long, renewed at a third of it.
const LEASE_TTL: Duration = Duration::from_secs(60);
/// Entry chunks followed from one advertisement at most (go-libipni's chains are far
/// shorter; a bound so a damaged store cannot loop the copy).
const MAX_CHUNKS: usize = 1_000_000;

/// What a copy did (each count is what this run wrote; a second run writes what the
/// first did not).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub identity_copied: bool,
    pub deals_read: u64,
    pub deals_written: u64,
    pub pieces: u64,
    pub blocks: u64,
    pub advertisements: u64,
    pub intents: u64,
}

/// Why a copy stopped.
#[derive(Debug)]
pub enum CopyError {
    Store(StoreError),
    /// The target holds something of another node's, or the source is not whole.
    Refused(String),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Store(e) => write!(f, "{e}"),
            CopyError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CopyError {}

impl From<StoreError> for CopyError {
    fn from(e: StoreError) -> CopyError {
        CopyError::Store(e)
    }
}

fn refused<T>(why: String) -> Result<T, CopyError> {
    Err(CopyError::Refused(why))
}

/// Copy `source` into `target` (see the module docs). `progress` sees the report after
/// each page of deals.
pub async fn copy_to_postgres(
    source: &dyn Store,
    target: &PostgresStore,
    progress: &mut (dyn FnMut(&CopyReport) + Send),
) -> Result<CopyReport, CopyError> {
    let mut lease = Lease::take(target).await?;
    let copied = copy_all(source, target, &mut lease, progress).await;
    let released = target.release(&lease.fence).await;
    let report = copied?;
    released?;
    Ok(report)
}

/// The target's lease, held by the copy.
struct Lease {
    fence: Fence,
    renewed: Instant,
}

impl Lease {
    async fn take(target: &PostgresStore) -> Result<Lease, CopyError> {
        let read = target.read_lease().await?;
        if let Some(row) = &read.row {
            if row.is_live(read.now) && row.holder.as_deref() != Some(COPIER) {
                return refused(format!(
                    "node {} holds the database's lease: stop every node on it first",
                    row.holder.as_deref().unwrap_or("?")
                ));
            }
        }
        let expect = read.row.as_ref().map(|r| r.generation);
        let Some(grant) = target.try_acquire(COPIER, expect, LEASE_TTL).await? else {
            return refused("a node took the database's lease meanwhile: stop it first".into());
        };
        Ok(Lease {
            fence: Fence {
                node: COPIER.to_string(),
                generation: grant.generation,
            },
            renewed: Instant::now(),
        })
    }

    async fn keep(&mut self, target: &PostgresStore) -> Result<(), CopyError> {
        if self.renewed.elapsed() < LEASE_TTL / 3 {
            return Ok(());
        }
        if target.renew(&self.fence, LEASE_TTL).await?.is_none() {
            return refused("the copy lost the database's lease (did a node start?)".into());
        }
        self.renewed = Instant::now();
        Ok(())
    }
}

async fn copy_all(
    source: &dyn Store,
    target: &PostgresStore,
    lease: &mut Lease,
    progress: &mut (dyn FnMut(&CopyReport) + Send),
) -> Result<CopyReport, CopyError> {
    let mut report = CopyReport::default();
    let source_id = source.identity().await?;
    let target_id = target.identity().await?;
    let identity = identity_plan(source_id.as_deref(), target_id.as_deref());
    if identity == IdentityPlan::Conflict {
        return refused(
            "the database already has another node's identity key: copying would change the \
             PeerID or mix two nodes' deals"
                .into(),
        );
    }
    // Every refusal comes before the first write.
    check_target_chain(source, target).await?;
    match identity {
        IdentityPlan::Copy => {
            let key = source_id.unwrap_or_default();
            let copy = key.clone();
            if target.identity_or_create(Box::new(move || copy)).await?.0 != key {
                return refused("another identity key was stored meanwhile".into());
            }
            report.identity_copied = true;
        }
        IdentityPlan::Conflict | IdentityPlan::Same | IdentityPlan::NoSource => {}
    }
    let source_head = source.ipni_head().await?;
    let mut ads: Vec<AdAt> = Vec::new();
    let mut after: Option<DealUuid> = None;
    loop {
        lease.keep(target).await?;
        let page = source.list_deals_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.uuid);
        let mut batch = Vec::with_capacity(page.len());
        for deal in page {
            if source_head.is_some() {
                for r in source.ipni_ads_of_deal(deal.uuid).await? {
                    ads.push(AdAt {
                        seq: r.seq,
                        cid: r.cid,
                        deal: deal.uuid,
                        is_rm: r.is_rm,
                        part: r.part,
                    });
                }
            }
            let timeline = source.deal_timeline(deal.uuid).await?;
            batch.push((deal, timeline));
        }
        report.deals_read += batch.len() as u64;
        report.deals_written += target.bulk_load_history(&batch).await? as u64;
        copy_pieces(source, target, lease, &batch, &mut report).await?;
        copy_intents(source, target, &lease.fence, &batch, &mut report).await?;
        progress(&report);
    }
    for name in [INTENT_STATE, IN_FLIGHT_STATE] {
        copy_state(source, target, &lease.fence, name, &mut report).await?;
    }
    copy_chain(source, target, lease, ads, &mut report).await?;
    Ok(report)
}

/// The piece directory of the pieces of `batch` that the source has indexed and the
/// target has not (or not the same way).
async fn copy_pieces(
    source: &dyn Store,
    target: &PostgresStore,
    lease: &mut Lease,
    batch: &[(DealRecord, Vec<(u8, i64)>)],
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let mut pieces: Vec<&Cid> = batch
        .iter()
        .map(|(d, _)| &d.params.client_deal_proposal.proposal.piece_cid)
        .collect();
    pieces.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    pieces.dedup();
    for piece in pieces {
        lease.keep(target).await?;
        let state = source.piece_index_state(piece).await?;
        if state == IndexState::NotYet || target.piece_index_state(piece).await? == state {
            continue;
        }
        let mut after = None;
        loop {
            let entries = source.piece_blocks_page(piece, after, BLOCK_PAGE).await?;
            let Some(last) = entries.last() else { break };
            after = Some(last.offset);
            target.put_piece_blocks(piece, &entries).await?;
            report.blocks += entries.len() as u64;
        }
        target.set_piece_index_state(piece, &state).await?;
        report.pieces += 1;
    }
    Ok(())
}

/// The add-piece intents of the deals of `batch` still at work.
async fn copy_intents(
    source: &dyn Store,
    target: &PostgresStore,
    fence: &Fence,
    batch: &[(DealRecord, Vec<(u8, i64)>)],
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    for (deal, _) in batch {
        if is_live(deal.checkpoint, deal.is_failed()) {
            copy_state(source, target, fence, &intent_key(deal.uuid), report).await?;
        }
    }
    Ok(())
}

/// One named leader state, when the source has it and the target has not.
async fn copy_state(
    source: &dyn Store,
    target: &PostgresStore,
    fence: &Fence,
    name: &str,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let Some(value) = source.leader_state(name).await? else {
        return Ok(());
    };
    if value.is_empty() || target.leader_state(name).await?.is_some() {
        return Ok(());
    }
    target.put_leader_state(fence, name, &value).await?;
    report.intents += 1;
    Ok(())
}

/// One of the source's advertisements.
#[derive(Debug)]
struct AdAt {
    seq: u64,
    cid: Cid,
    deal: DealUuid,
    is_rm: bool,
    part: u32,
}

/// The source's advertisement chain, appended to the target's from where it stands, each
/// with its entry chunks; every `PreviousID` checked against the chain as copied.
async fn copy_chain(
    source: &dyn Store,
    target: &PostgresStore,
    lease: &mut Lease,
    mut ads: Vec<AdAt>,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    ads.sort_unstable_by_key(|a| a.seq);
    let positions: Vec<(u64, Cid)> = ads.iter().map(|a| (a.seq, a.cid.clone())).collect();
    check_positions(&positions).or_else(|e| refused(format!("the source's IPNI chain: {e}")))?;
    let source_head = source.ipni_head().await?;
    if source_head.as_ref().map(|h| h.seq) != positions.last().map(|(s, _)| *s) {
        return refused(
            "the source's IPNI head is not the last advertisement recorded for its deals".into(),
        );
    }
    let target_head = target.ipni_head().await?;
    let start = match chain_plan(&positions, target_head.as_ref().map(|h| (h.seq, &h.cid))) {
        ChainPlan::From(i) => i,
        ChainPlan::Conflict {
            target_head,
            target_seq,
        } => return fork(&target_head, target_seq),
    };
    for (i, at) in ads.iter().enumerate().skip(start) {
        lease.keep(target).await?;
        let bytes = block(source, &at.cid).await?;
        let ad = Advertisement::from_dag_json(&bytes)
            .or_else(|e| refused(format!("advertisement {}: {}", at.cid, e.0)))?;
        let expected = i.checked_sub(1).map(|p| &ads[p].cid);
        if ad.previous.as_ref() != expected {
            return refused(format!(
                "advertisement {} does not link to the one before it",
                at.cid
            ));
        }
        copy_entries(source, target, &ad.entries).await?;
        let publish = IpniPublish {
            ad: Block {
                cid: at.cid.clone(),
                bytes,
            },
            previous: ad.previous.clone(),
            deal: at.deal,
            is_rm: at.is_rm,
            part: at.part,
        };
        match target.publish_ipni_ad(&lease.fence, &publish).await? {
            Published::Yes { seq } if seq == at.seq => report.advertisements += 1,
            other => {
                return refused(format!(
                    "advertisement {} was not appended at {} ({other:?})",
                    at.cid, at.seq
                ))
            }
        }
    }
    Ok(())
}

fn fork<T>(target_head: &Cid, target_seq: u64) -> Result<T, CopyError> {
    refused(format!(
        "the database's IPNI chain (head {target_head} at {target_seq}) is not this store's: \
         appending would fork it"
    ))
}

/// Before anything is written: a chain the target already has must be the source's up
/// to its head (an earlier run's), found by walking the source's chain back to it.
async fn check_target_chain(source: &dyn Store, target: &PostgresStore) -> Result<(), CopyError> {
    let Some(t) = target.ipni_head().await? else {
        return Ok(());
    };
    let mut at = source.ipni_head().await?.map(|h| (h.seq, h.cid));
    while let Some((seq, cid)) = &at {
        if *seq <= t.seq {
            break;
        }
        let bytes = block(source, cid).await?;
        let ad = Advertisement::from_dag_json(&bytes)
            .or_else(|e| refused(format!("advertisement {cid}: {}", e.0)))?;
        at = ad.previous.map(|p| (seq - 1, p));
    }
    match at {
        Some((seq, cid)) if seq == t.seq && cid == t.cid => Ok(()),
        _ => fork(&t.cid, t.seq),
    }
}

/// An advertisement's entry chunks, first to last.
async fn copy_entries(
    source: &dyn Store,
    target: &PostgresStore,
    first: &Cid,
) -> Result<(), CopyError> {
    let mut next = Some(first.clone()).filter(|c| *c != no_entries());
    for _ in 0..MAX_CHUNKS {
        let Some(cid) = next else { return Ok(()) };
        let bytes = block(source, &cid).await?;
        let chunk = EntryChunk::from_dag_json(&bytes)
            .or_else(|e| refused(format!("entry chunk {cid}: {}", e.0)))?;
        target.put_ipni_chunk(&Block { cid, bytes }).await?;
        next = chunk.next;
    }
    refused(format!("more than {MAX_CHUNKS} entry chunks from {first}"))
}

async fn block(source: &dyn Store, cid: &Cid) -> Result<Vec<u8>, CopyError> {
    match source.ipni_block(cid).await? {
        Some(bytes) => Ok(bytes),
        None => refused(format!("the source's IPNI block {cid} is missing")),
    }
}
