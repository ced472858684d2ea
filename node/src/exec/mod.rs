//! Deal execution, first part: getting each accepted deal's data into staging with its
//! piece commitment checked, `Accepted` -> `Transferred` (or failed with a sentence).
//!
//! - online deals: the [`runner`] (a leader task) downloads `Transfer.Params`' URL,
//!   resuming with HTTP Range after a dropped connection, a restart or a failover;
//! - offline deals: [`Transfers::import`] takes the data from `PUT
//!   /api/v1/deals/<uuid>/data` (`dealport deals import`).
//!
//! Both go through [`ingest::Ingest`]: core's `Intake` rules (exact size, declared size,
//! PieceCID), a staging file and its commitment snapshot.
//!
//! Layer: execution, above the service: uses `service`, `chain`, `config`, `http` (body
//! streams), `outbound`, `runtime`. HTTP routes use it, never the other way.

pub mod download;
pub mod index;
pub mod ingest;
pub mod piece_store;
pub mod publish;
pub mod runner;
pub mod ssrf;
pub mod staging;
pub mod throttle;

use std::{
    collections::HashSet,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::{
    config::TransferConfig,
    http::BodyStream,
    runtime::Runtime,
    service::{ApplyError, DealService},
};
use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    wire::DealUuid,
};
use futures::{channel::mpsc, StreamExt};
use ingest::{Ingest, IngestError};
use staging::Staging;
use throttle::Throttle;

/// Newly accepted deals waiting for the runner to notice them; past this the runner's
/// periodic rescan picks them up.
const WAKE_QUEUE: usize = 64;

/// Deals a background task reads from the store's live index at once.
pub const SCAN_PAGE: usize = 500;

/// Why an import (or another request the executor serves) did not go through. The HTTP
/// API owns the mapping to status codes.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No deal with that UUID.
    #[error("no deal with UUID {0}")]
    NoSuchDeal(DealUuid),
    /// The deal cannot take this now (an online deal, failed, past it, busy).
    #[error("{0}")]
    Conflict(String),
    /// The upload was empty or broke off: nothing recorded, send it again.
    #[error("{0}")]
    BadUpload(String),
    /// No data within the idle limit: nothing recorded.
    #[error("{0}")]
    Stalled(String),
    /// The data is not the deal's: the deal failed with this sentence.
    #[error("{0}")]
    DataRejected(String),
    /// The store or the staging area failed.
    #[error("{0}")]
    Internal(String),
    /// Recording the outcome failed.
    #[error("cannot record deal {0}: {1}")]
    Apply(DealUuid, ApplyError),
}

/// `[transfer]` as the executor uses it.
#[derive(Debug, Clone)]
pub struct TransferSettings {
    pub max_concurrent: usize,
    pub max_bytes_per_sec: u64,
    pub allow_private_addresses: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    pub keep_staging: bool,
    /// `[retrieval] keep_pieces`: the piece store a sealed deal's data moves into instead
    /// of being deleted (see [`Transfers::drop_staged`]).
    pub keep_pieces_in: Option<std::path::PathBuf>,
    /// How often the runner rescans the store for accepted deals (a backstop to the
    /// notification on accept).
    pub rescan: Duration,
}

impl TransferSettings {
    pub fn from_config(c: &TransferConfig) -> TransferSettings {
        TransferSettings {
            max_concurrent: c.max_concurrent.max(1),
            max_bytes_per_sec: c.max_bytes_per_sec,
            allow_private_addresses: c.allow_private_addresses,
            connect_timeout: Duration::from_secs(c.connect_timeout_secs),
            idle_timeout: Duration::from_secs(c.idle_timeout_secs),
            max_retries: c.max_retries,
            retry_backoff: Duration::from_millis(c.retry_backoff_ms),
            keep_staging: c.keep_staging,
            keep_pieces_in: None,
            rescan: Duration::from_secs(30),
        }
    }
}

/// How the piece indexer hears of data that came in: each deal's UUID on a bounded
/// channel, and a flag raised when the channel was full (the indexer then reads all the
/// deals with data, as at its start).
#[derive(Clone)]
pub struct IndexNotices {
    pub deals: mpsc::Sender<DealUuid>,
    pub missed: Arc<AtomicBool>,
}

/// The executor's shared state: staging, the deals whose data is coming in right now,
/// the bandwidth cap, the accept notifications.
pub struct Transfers {
    pub settings: TransferSettings,
    pub staging: Staging,
    service: DealService,
    runtime: Arc<dyn Runtime>,
    throttle: Throttle,
    in_flight: Mutex<HashSet<DealUuid>>,
    wake: futures::lock::Mutex<mpsc::Receiver<DealUuid>>,
    /// Tells the piece indexer ([`index`]) which deal's data is in.
    index_wake: Mutex<Option<IndexNotices>>,
}

/// A deal's data is coming in (download or import) while this lives.
pub struct Claim {
    transfers: Arc<Transfers>,
    uuid: DealUuid,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.transfers.in_flight().remove(&self.uuid);
    }
}

impl Transfers {
    /// Also asks `service` to tell the runner about every online deal it accepts.
    pub fn new(
        runtime: Arc<dyn Runtime>,
        service: DealService,
        settings: TransferSettings,
        staging_dir: &Path,
    ) -> Arc<Transfers> {
        let (tx, rx) = mpsc::channel(WAKE_QUEUE);
        service.set_accept_notifier(tx);
        Arc::new(Transfers {
            throttle: Throttle::new(settings.max_bytes_per_sec),
            settings,
            staging: Staging::new(staging_dir.to_path_buf()),
            service,
            runtime,
            in_flight: Mutex::new(HashSet::new()),
            wake: futures::lock::Mutex::new(rx),
            index_wake: Mutex::new(None),
        })
    }

    /// Tell the indexer whenever a deal's data is in.
    pub fn set_index_notifier(&self, indexer: IndexNotices) {
        *self.index_wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(indexer);
    }

    /// `uuid`'s data is in: the indexer has work.
    fn data_in(&self, uuid: DealUuid) {
        if let Some(n) = self
            .index_wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            if n.deals.try_send(uuid).is_err() {
                n.missed.store(true, Ordering::Release);
            }
        }
    }

    pub fn service(&self) -> &DealService {
        &self.service
    }

    pub fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<DealUuid>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claim `uuid` for one transfer; `None` if one is already running.
    pub fn claim(self: &Arc<Self>, uuid: DealUuid) -> Option<Claim> {
        self.in_flight().insert(uuid).then(|| Claim {
            transfers: self.clone(),
            uuid,
        })
    }

    /// The deal is done with its staged data (failed, or its piece is in a sector):
    /// remove it unless `keep_staging`; with a piece store (`keep_pieces`) a sealed
    /// deal's data moves there instead. The one place staged data goes.
    pub fn drop_staged(&self, deal: &DealRecord) {
        let uuid = deal.uuid;
        if self.settings.keep_staging {
            return;
        }
        if let (Some(dir), false) = (&self.settings.keep_pieces_in, deal.is_failed()) {
            // On the blocking pool: across file systems keeping is a copy.
            let store = piece_store::PieceStore::new(dir.clone());
            let staging = self.staging.clone();
            let piece = deal.params.client_deal_proposal.proposal.piece_cid.clone();
            self.runtime.spawn_blocking(Box::new(move || {
                match store.keep(&staging.data_path(uuid), &piece) {
                    Ok(()) => tracing::info!(deal = %uuid, %piece, "piece kept for retrieval"),
                    Err(e) => tracing::warn!(deal = %uuid, %piece, "cannot keep the piece: {e}"),
                }
                if let Err(e) = staging.remove(uuid) {
                    tracing::warn!(deal = %uuid, "cannot remove the staged data: {e}");
                }
            }));
            return;
        }
        if let Err(e) = self.staging.remove(uuid) {
            tracing::warn!(deal = %uuid, "cannot remove the staged data: {e}");
        }
    }

    /// Record the deal's failure (what its client will read in status).
    async fn fail(&self, uuid: DealUuid, why: String) {
        tracing::warn!(deal = %uuid, reason = %why, "deal failed");
        match self.service.apply_event(uuid, DealEvent::Failed(why)).await {
            Ok(deal) => self.drop_staged(&deal),
            Err(e) => tracing::warn!(deal = %uuid, error = %e, "cannot record the failure"),
        }
    }

    /// An offline deal's data, streamed in (`PUT /api/v1/deals/<uuid>/data`). Data that
    /// is not the deal's fails the deal; a broken or stalled upload records nothing and
    /// can be sent again.
    pub async fn import(
        self: &Arc<Self>,
        uuid: DealUuid,
        mut body: BodyStream,
    ) -> Result<DealRecord, ExecError> {
        let deal = self
            .service
            .store()
            .deal_by_uuid(uuid)
            .await
            .map_err(|e| ExecError::Internal(format!("cannot read deal {uuid}: {e}")))?
            .ok_or(ExecError::NoSuchDeal(uuid))?;
        if !deal.params.is_offline {
            return Err(ExecError::Conflict(format!(
                "deal {uuid} is an online deal: its data is downloaded from its transfer URL, not imported"
            )));
        }
        if let Some(e) = &deal.error {
            return Err(ExecError::Conflict(format!("deal {uuid} has failed: {e}")));
        }
        if deal.checkpoint != Checkpoint::Accepted {
            return Err(ExecError::Conflict(format!(
                "deal {uuid} is already {}: its data is in",
                deal.checkpoint
            )));
        }
        let _claim = self.claim(uuid).ok_or_else(|| {
            ExecError::Conflict(format!("an import of deal {uuid} is already running"))
        })?;
        let proposal = &deal.params.client_deal_proposal.proposal;
        let staging_error = |e: IngestError| ExecError::Internal(format!("deal {uuid}: {e}"));
        let mut ingest = Ingest::open(
            self.runtime.clone(),
            self.staging.clone(),
            uuid,
            None,
            proposal.piece_size,
            false,
        )
        .await
        .map_err(staging_error)?;
        let idle = self.settings.idle_timeout;
        loop {
            let chunk = match crate::runtime::timeout(idle, body.next()).await {
                Some(c) => c,
                None => {
                    return Err(ExecError::Stalled(format!(
                        "no data for {} s after {} bytes: import of deal {uuid} abandoned, nothing recorded",
                        idle.as_secs(),
                        ingest.offset()
                    )))
                }
            };
            let chunk = match chunk {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    return Err(ExecError::BadUpload(format!(
                    "the upload broke off after {} bytes ({e}): nothing recorded, send it again",
                    ingest.offset()
                )))
                }
            };
            match ingest.push(&chunk).await {
                Ok(()) => {}
                Err(IngestError::Data(e)) => return Err(self.reject_data(uuid, e).await),
                Err(e) => return Err(staging_error(e)),
            }
        }
        if ingest.offset() == 0 {
            return Err(ExecError::BadUpload(format!(
                "the upload for deal {uuid} carried no data: nothing recorded"
            )));
        }
        let bytes = match ingest.finish(&proposal.piece_cid).await {
            Ok(b) => b,
            Err(IngestError::Data(e)) => return Err(self.reject_data(uuid, e).await),
            Err(e) => return Err(staging_error(e)),
        };
        tracing::info!(deal = %uuid, bytes, "offline data imported, piece CID checked");
        let deal = self
            .service
            .apply_event(uuid, DealEvent::Transferred { bytes })
            .await
            .map_err(|e| ExecError::Apply(uuid, e))?;
        self.data_in(uuid);
        Ok(deal)
    }

    async fn reject_data(
        &self,
        uuid: DealUuid,
        e: dealport_core::transfer::DataError,
    ) -> ExecError {
        let why = e.to_string();
        self.fail(uuid, why.clone()).await;
        ExecError::DataRejected(format!("deal {uuid} failed: {why}"))
    }
}
