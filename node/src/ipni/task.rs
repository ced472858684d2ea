//! The lease holder's rounds: advertise deals at `AddedPiece` whose piece is indexed
//! (then record `IndexedAndAnnounced`), and withdraw announced deals that failed or
//! ended. Each round reads the store a page at a time; one chunk in memory.
use std::time::Duration;

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    ipni::{
        build_ad, metadata,
        plan::{self, Step},
        AdContent, Chunker,
    },
    piece_index::IndexState,
    wire::{Cid, DealUuid},
};

use super::Ipni;
use crate::{
    exec::SCAN_PAGE,
    runtime::timeout,
    service::ApplyError,
    store::{for_each_live_page, IpniPublish, Published, StoreError},
};

/// Block entries read from the piece directory at once.
const ENTRY_PAGE: usize = 4096;
/// Bound on one store call.
const STORE_BOUND: Duration = Duration::from_secs(30);
/// Tries when another write moved the head between our read and our append.
const HEAD_TRIES: usize = 5;
/// How long the publisher waits for this node's HTTP address at start.
const ADDRESS_WAIT: Duration = Duration::from_secs(30);
/// Deals of one piece looked at when deciding a removal.
const MAX_PIECE_DEALS: usize = 64;

/// Why advertising stopped.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("this node no longer holds the lease")]
    NotHolder,
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Fenced { .. } => Stop::NotHolder,
            e => Stop::Failed(e.to_string()),
        }
    }
}

impl From<ApplyError> for Stop {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::NotHolder => Stop::NotHolder,
            e => Stop::Failed(e.to_string()),
        }
    }
}

/// A store call under [`STORE_BOUND`].
async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, Stop> {
    match timeout(STORE_BOUND, f).await {
        Some(r) => r.map_err(Stop::from),
        None => Err(Stop::Failed(format!(
            "the store did not answer {what} within {} s",
            STORE_BOUND.as_secs()
        ))),
    }
}

impl Ipni {
    /// Rounds every `poll` and the announcements, until dropped (the lease is lost).
    pub(super) async fn run(&self) {
        tracing::info!(peer = %self.peer, urls = ?self.settings.announce.urls, "IPNI publisher started");
        // The HTTP server starts after the first lease decision: its address (what the
        // advertisements and announcements name) is known a moment later.
        let until = std::time::Instant::now() + ADDRESS_WAIT;
        while self.addresses().is_empty() && std::time::Instant::now() < until {
            async_io::Timer::after(Duration::from_millis(100)).await;
        }
        // A new holder tells the indexers where the chain is now.
        if let Some(Ok(Some(head))) = timeout(STORE_BOUND, self.service.store().ipni_head()).await {
            self.queue_announce(&head.cid);
        }
        let rounds = async {
            loop {
                self.round().await;
                async_io::Timer::after(self.settings.poll).await;
            }
        };
        futures::future::join(rounds, self.announcer.run()).await;
    }

    /// One pass: advertisements first (Boost's order puts them before `Complete`), then
    /// removals.
    pub async fn round(&self) {
        let store = self.service.store();
        let mut deals = Vec::new();
        let read = for_each_live_page(&*store, Checkpoint::AddedPiece, SCAN_PAGE, |page| {
            deals.extend(page)
        })
        .await;
        if let Err(e) = read {
            tracing::warn!("ipni: cannot read the deals at AddedPiece: {e}");
        }
        for deal in deals {
            match self.index_one(&deal).await {
                Ok(()) => {}
                Err(Stop::NotHolder) => return,
                Err(Stop::Failed(e)) => {
                    tracing::warn!(deal = %deal.uuid, "ipni: cannot advertise the deal yet: {e}")
                }
            }
        }
        if let Err(Stop::Failed(e)) = self.removals().await {
            tracing::warn!("ipni: removals: {e}");
        }
    }

    async fn index_one(&self, deal: &DealRecord) -> Result<(), Stop> {
        let store = self.service.store();
        let piece = &deal.params.client_deal_proposal.proposal.piece_cid;
        let index: IndexState =
            bounded("the piece's index state", store.piece_index_state(piece)).await?;
        let why = match plan::at_added_piece(deal, &index) {
            Step::Wait => return Ok(()),
            Step::RecordOnly(why) => why,
            Step::Advertise => {
                let ads = self.advertise(deal, piece).await?;
                format!("announced in {ads} advertisement(s)")
            }
        };
        self.service
            .apply_event(deal.uuid, DealEvent::IndexedAndAnnounced)
            .await?;
        tracing::info!(deal = %deal.uuid, %piece, "IndexedAndAnnounced: {why}");
        Ok(())
    }

    /// Chunk the piece's multihashes from the piece directory and append its
    /// advertisement(s); how many parts. Safe to repeat: a part already on the chain is
    /// left as it is.
    async fn advertise(&self, deal: &DealRecord, piece: &Cid) -> Result<u32, Stop> {
        let store = self.service.store();
        let mut chunker = Chunker::new();
        let mut part = 0u32;
        let mut after = None;
        loop {
            let page = bounded(
                "a page of block entries",
                store.piece_blocks_page(piece, after, ENTRY_PAGE),
            )
            .await?;
            after = page.last().map(|e| e.offset);
            let n = page.len();
            for e in page {
                let pushed = match chunker.push(e.multihash) {
                    Ok(p) => p,
                    Err(why) => {
                        tracing::warn!(deal = %deal.uuid, "ipni: a block left out: {why}");
                        continue;
                    }
                };
                if let Some(chunk) = pushed.chunk {
                    bounded("an entry chunk write", store.put_ipni_chunk(&chunk)).await?;
                }
                if let Some(entries) = pushed.ad_full {
                    self.append(deal.uuid, piece, entries, false, part).await?;
                    part += 1;
                }
            }
            if n < ENTRY_PAGE {
                break;
            }
        }
        let (last, entries) = chunker.finish();
        if let Some(chunk) = last {
            bounded("an entry chunk write", store.put_ipni_chunk(&chunk)).await?;
        }
        self.append(deal.uuid, piece, entries, false, part).await?;
        Ok(part + 1)
    }

    /// Build, sign and append one advertisement at the head, then queue its
    /// announcement.
    async fn append(
        &self,
        deal: DealUuid,
        piece: &Cid,
        entries: Cid,
        is_rm: bool,
        part: u32,
    ) -> Result<(), Stop> {
        let store = self.service.store();
        let addresses: Vec<String> = self.addresses().iter().map(|a| a.to_string()).collect();
        for _ in 0..HEAD_TRIES {
            let fence = self.service.holder_fence()?;
            let head = bounded("the chain head", store.ipni_head()).await?;
            let previous = head.map(|h| h.cid);
            let content = AdContent {
                entries: entries.clone(),
                context_id: piece.as_bytes().to_vec(),
                metadata: metadata(&self.settings.transports),
                addresses: addresses.clone(),
                is_rm,
            };
            let (_, block) = build_ad(previous.clone(), content, &self.signer)
                .map_err(|e| Stop::Failed(e.to_string()))?;
            let publish = IpniPublish {
                ad: block,
                previous,
                deal,
                is_rm,
                part,
            };
            match bounded("the advertisement", store.publish_ipni_ad(&fence, &publish)).await? {
                Published::Yes { seq } => {
                    tracing::info!(%deal, ad = %publish.ad.cid, seq, is_rm, part, "ipni: advertisement published");
                    self.queue_announce(&publish.ad.cid);
                    return Ok(());
                }
                Published::Already(_) => return Ok(()),
                Published::HeadMoved => continue,
            }
        }
        Err(Stop::Failed(format!(
            "the chain head kept moving ({HEAD_TRIES} tries)"
        )))
    }

    /// Withdraw announced deals that failed or ended (core's `plan::removal`).
    async fn removals(&self) -> Result<(), Stop> {
        let store = self.service.store();
        let head = self.service.chain().head_epoch().await;
        let mut after = None;
        loop {
            let page = bounded(
                "the announced deals",
                store.ipni_announced_page(after, SCAN_PAGE),
            )
            .await?;
            after = page.last().copied();
            let n = page.len();
            for uuid in page {
                let Some(deal) = bounded("a deal", store.deal_by_uuid(uuid)).await? else {
                    continue;
                };
                if plan::stands(&deal, head) {
                    continue;
                }
                let piece = &deal.params.client_deal_proposal.proposal.piece_cid;
                let others = bounded(
                    "the deals of a piece",
                    store.deals_by_piece_cid(piece, MAX_PIECE_DEALS),
                )
                .await?;
                let other_live = others.iter().any(|d| {
                    d.uuid != uuid
                        && d.checkpoint >= Checkpoint::IndexedAndAnnounced
                        && plan::stands(d, head)
                });
                if let Some(why) = plan::removal(&deal, head, other_live) {
                    match self
                        .append(uuid, piece, dealport_core::ipni::ad::no_entries(), true, 0)
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(deal = %uuid, %piece, "ipni: removal advertised: {why}")
                        }
                        Err(Stop::NotHolder) => return Err(Stop::NotHolder),
                        Err(e) => {
                            tracing::warn!(deal = %uuid, "ipni: cannot advertise the removal yet: {e}")
                        }
                    }
                }
            }
            if n < SCAN_PAGE {
                return Ok(());
            }
        }
    }
}
