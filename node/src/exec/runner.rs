//! The download runner, a leader task: at start it scans the store for online deals at
//! `Accepted` (not failed) and resumes them; then it takes newly accepted deals from the
//! service's notification, with a periodic rescan as a backstop. At most
//! `max_concurrent` downloads at once, all of them inside this task, so a step-down
//! (the task is dropped) stops them all and leaves each partial file and its snapshot
//! for the next holder.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    download_queue::DownloadQueue,
    wire::{DealUuid, HttpRequest},
};
use futures::{stream::FuturesUnordered, FutureExt, StreamExt};
use http_body_util::BodyExt;

use super::{
    download::{self, FetchError, FetchOptions},
    ingest::{Ingest, IngestError},
    Transfers, SCAN_PAGE,
};
use crate::{runtime::LeaderTask, service::ApplyError};

/// Progress is recorded at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Deals waiting for a download slot; more are left for a later rescan.
const MAX_QUEUED: usize = 4096;

/// The runner as a [`LeaderTask`].
pub fn leader_task(transfers: Arc<Transfers>) -> LeaderTask {
    Box::new(move || Box::pin(run(transfers.clone())))
}

/// Should the runner download this deal's data?
fn wants_download(d: &DealRecord) -> bool {
    !d.params.is_offline && !d.is_failed() && d.checkpoint == Checkpoint::Accepted
}

/// Run until dropped.
pub async fn run(t: Arc<Transfers>) {
    let mut wake = t.wake.lock().await;
    let mut running = FuturesUnordered::new();
    let mut waiting = DownloadQueue::new(MAX_QUEUED);
    let mut next_scan = Instant::now();
    tracing::info!(
        max_concurrent = t.settings.max_concurrent,
        "transfer runner started"
    );
    loop {
        if Instant::now() >= next_scan || waiting.wants_scan() {
            // UUIDs of the online deals at `Accepted` (the store's live index), until the
            // queue is full: offline deals waiting for an import are not read, and a
            // deal's record is read when its download starts.
            let store = t.service.store();
            waiting.start_pass();
            while let Some(after) = waiting.next_read() {
                match store.awaiting_download(after, SCAN_PAGE).await {
                    Ok(page) => waiting.took_page(&page, SCAN_PAGE),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the deals to download");
                        waiting.end_pass();
                    }
                }
            }
            if Instant::now() >= next_scan {
                sweep_staging(&t).await;
                next_scan = Instant::now() + t.settings.rescan;
            }
        }
        while running.len() < t.settings.max_concurrent {
            let Some(uuid) = waiting.start_next() else {
                break;
            };
            running.push(download_one(t.clone(), uuid).map(move |()| uuid));
        }
        let mut timer = FutureExt::fuse(async_io::Timer::at(next_scan));
        futures::select! {
            uuid = running.select_next_some() => waiting.done(uuid),
            uuid = wake.next() => {
                if let Some(uuid) = uuid {
                    waiting.offer(uuid);
                }
            }
            _ = timer => {}
        }
    }
}

/// Remove staged files of deals that no longer need them (failed, or their piece is in a
/// sector): left behind when a node stopped between recording the outcome and removing
/// the files. Each staged deal is looked up by UUID, so the cost follows the staging
/// directory, not the store; files of deals the store does not know are left alone.
async fn sweep_staging(t: &Transfers) {
    if t.settings.keep_staging {
        return;
    }
    let staged = match t.staging.staged_deals() {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot list the staging directory"),
    };
    let store = t.service.store();
    for uuid in staged {
        match store.deal_by_uuid(uuid).await {
            Ok(Some(d)) if d.is_done_with_staged_data() => {
                tracing::info!(deal = %uuid, "removing staged data left from before");
                t.drop_staged(&d);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(deal = %uuid, error = %e, "cannot read a staged deal"),
        }
    }
}

/// How one attempt at the data ended, short of having it all.
enum Stop {
    /// Worth another try with Range.
    Retry(String),
    /// The deal fails with this sentence.
    Fail(String),
    /// This node may no longer move the deal (lost the lease) or it moved elsewhere.
    Stopped,
}

impl From<FetchError> for Stop {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Retry(s) => Stop::Retry(s),
            FetchError::Fatal(s) => Stop::Fail(s),
        }
    }
}

impl From<IngestError> for Stop {
    fn from(e: IngestError) -> Self {
        Stop::Fail(e.to_string())
    }
}

/// Records `Transferring` progress at most once per [`PROGRESS_EVERY`].
struct Progress {
    uuid: DealUuid,
    last: Option<Instant>,
    recorded: u64,
}

impl Progress {
    async fn record(&mut self, t: &Transfers, bytes: u64, force: bool) -> Result<(), Stop> {
        let due = self.last.is_none_or(|l| l.elapsed() >= PROGRESS_EVERY);
        if bytes <= self.recorded || !(due || force) {
            return Ok(());
        }
        self.last = Some(Instant::now());
        match t
            .service
            .apply_event(
                self.uuid,
                DealEvent::Transferring {
                    bytes_received: bytes,
                },
            )
            .await
        {
            Ok(_) => {
                self.recorded = bytes;
                Ok(())
            }
            Err(ApplyError::Store(e)) => {
                // Progress is informational: a store hiccup must not fail the download.
                tracing::warn!(deal = %self.uuid, error = %e, "cannot record transfer progress");
                Ok(())
            }
            Err(e) => {
                tracing::info!(deal = %self.uuid, reason = %e, "transfer stopped");
                Err(Stop::Stopped)
            }
        }
    }
}

/// Download one deal's data and record the outcome.
async fn download_one(t: Arc<Transfers>, uuid: DealUuid) {
    let Some(_claim) = t.claim(uuid) else {
        return;
    };
    let deal = match t.service.store().deal_by_uuid(uuid).await {
        Ok(Some(d)) if wants_download(&d) => d,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(deal = %uuid, error = %e, "cannot read the deal to download");
            return;
        }
    };
    let outcome = transfer(&t, &deal).await;
    match outcome {
        Ok(bytes) => match t
            .service
            .apply_event(uuid, DealEvent::Transferred { bytes })
            .await
        {
            Ok(_) => {
                tracing::info!(deal = %uuid, bytes, "transferred, piece CID checked");
                t.data_in(uuid);
            }
            Err(e) => tracing::warn!(deal = %uuid, error = %e, "cannot record Transferred"),
        },
        // `transfer` turns a last Retry into a Fail; both end the deal.
        Err(Stop::Fail(why) | Stop::Retry(why)) => t.fail(uuid, why).await,
        Err(Stop::Stopped) => {}
    }
}

async fn transfer(t: &Arc<Transfers>, deal: &DealRecord) -> Result<u64, Stop> {
    let uuid = deal.uuid;
    let transfer = &deal.params.transfer;
    let proposal = &deal.params.client_deal_proposal.proposal;
    let req = HttpRequest::from_json(&transfer.params)
        .map_err(|e| Stop::Fail(format!("the transfer parameters are unusable: {e}")))?;
    let size = transfer.size;
    let mut ingest = Ingest::open(
        t.runtime.clone(),
        t.staging.clone(),
        uuid,
        Some(size),
        proposal.piece_size,
        true,
    )
    .await?;
    let mut progress = Progress {
        uuid,
        last: None,
        recorded: deal.n_bytes_received,
    };
    if ingest.offset() > 0 {
        tracing::info!(deal = %uuid, offset = ingest.offset(), url = %req.url, "resuming the download");
    }
    let opts = FetchOptions {
        allow_private: t.settings.allow_private_addresses,
        connect_timeout: t.settings.connect_timeout,
        idle_timeout: t.settings.idle_timeout,
    };
    let mut retries = 0;
    let mut backoff = t.settings.retry_backoff;
    while ingest.offset() < size {
        match attempt(t, &req, &opts, &mut ingest, &mut progress, size).await {
            Ok(()) => {}
            Err(Stop::Retry(why)) => {
                if retries >= t.settings.max_retries {
                    return Err(Stop::Fail(format!(
                        "{why} (gave up after {retries} retries)"
                    )));
                }
                retries += 1;
                tracing::info!(deal = %uuid, retry = retries, offset = ingest.offset(), reason = %why, ?backoff, "download interrupted, retrying");
                // Keep the snapshot current so a restart during the back-off loses nothing.
                ingest.save().await?;
                async_io::Timer::after(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(stop) => return Err(stop),
        }
    }
    progress.record(t, ingest.offset(), true).await?;
    Ok(ingest.finish(&proposal.piece_cid).await?)
}

/// One GET from the current offset, until the body ends.
async fn attempt(
    t: &Arc<Transfers>,
    req: &HttpRequest,
    opts: &FetchOptions,
    ingest: &mut Ingest,
    progress: &mut Progress,
    size: u64,
) -> Result<(), Stop> {
    let fetched = download::fetch(&t.runtime, req, ingest.offset(), opts).await?;
    if let Some(total) = fetched.declared_total {
        ingest
            .intake()
            .check_declared(total)
            .map_err(|e| Stop::Fail(e.to_string()))?;
    }
    if fetched.from == 0 && ingest.offset() > 0 {
        tracing::info!(url = %req.url, offset = ingest.offset(), "the server ignored our Range: restarting from zero");
        ingest.restart().await?;
    }
    let mut body = fetched.body;
    let idle = opts.idle_timeout;
    loop {
        let frame = match crate::runtime::timeout(idle, body.frame()).await {
            Some(f) => f,
            None => {
                return Err(Stop::Retry(format!(
                    "no data from {} for {} s after {} of {size} bytes",
                    req.url,
                    idle.as_secs(),
                    ingest.offset()
                )))
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                return Err(Stop::Retry(format!(
                    "the download from {} broke off after {} of {size} bytes: {e}",
                    req.url,
                    ingest.offset()
                )))
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        t.throttle.take(data.len()).await;
        ingest.push(&data).await.map_err(|e| match e {
            IngestError::Data(d) => Stop::Fail(d.to_string()),
            e => Stop::Fail(e.to_string()),
        })?;
        progress.record(t, ingest.offset(), false).await?;
    }
    if ingest.offset() < size {
        return Err(Stop::Retry(format!(
            "the connection to {} closed after {} of {size} bytes",
            req.url,
            ingest.offset()
        )));
    }
    Ok(())
}
