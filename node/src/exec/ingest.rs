//! One deal's data coming in (a download or an offline import): every chunk passes the
//! core's [`Intake`] rules, is buffered, written to the staging file off the async
//! threads, and every [`SNAPSHOT_EVERY`] bytes the commitment state is saved beside it.
use std::{fs::File, io::Write, sync::Arc};

use dealport_core::{
    transfer::{DataError, Intake},
    wire::{Cid, DealUuid},
};

use super::staging::{Resumed, Staging};
use crate::runtime::{unblock, Runtime};

/// Bytes buffered before a write to the file.
const WRITE_BUFFER: usize = 1 << 20;
/// Bytes between two saved snapshots (a restart re-downloads at most this much).
pub const SNAPSHOT_EVERY: u64 = 4 << 20;

/// Why the data could not be taken in.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The data is not the deal's: the deal fails.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The staging directory failed us (disk full, permissions).
    #[error("staging: {0}")]
    Io(String),
}

pub struct Ingest {
    runtime: Arc<dyn Runtime>,
    staging: Staging,
    uuid: DealUuid,
    file: Option<File>,
    pending: Vec<u8>,
    intake: Intake,
    size: Option<u64>,
    padded: u64,
    saved_at: u64,
}

async fn blocking<T: Send + 'static>(
    rt: &dyn Runtime,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, IngestError> {
    match unblock(rt, f).await {
        Some(Ok(t)) => Ok(t),
        Some(Err(e)) => Err(IngestError::Io(e.to_string())),
        None => Err(IngestError::Io("the blocking pool dropped the work".into())),
    }
}

impl Ingest {
    /// Open the deal's staging data: where the last snapshot left it (`resume`), or
    /// from zero. `size`: `Transfer.Size` for online deals; `padded`: the piece size.
    pub async fn open(
        runtime: Arc<dyn Runtime>,
        staging: Staging,
        uuid: DealUuid,
        size: Option<u64>,
        padded: u64,
        resume: bool,
    ) -> Result<Ingest, IngestError> {
        let s = staging.clone();
        let Resumed { file, commp } = blocking(&*runtime, move || {
            if resume {
                s.resume(uuid)
            } else {
                s.restart(uuid)
            }
        })
        .await?;
        let saved_at = commp.bytes_written();
        Ok(Ingest {
            runtime,
            staging,
            uuid,
            file: Some(file),
            pending: Vec::with_capacity(WRITE_BUFFER),
            intake: Intake::resume(size, padded, commp),
            size,
            padded,
            saved_at,
        })
    }

    /// Bytes taken so far (where a resumed download continues).
    pub fn offset(&self) -> u64 {
        self.intake.received()
    }

    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    /// Drop everything taken and start from zero (a server ignored our Range).
    pub async fn restart(&mut self) -> Result<(), IngestError> {
        self.file = None;
        self.pending.clear();
        let s = self.staging.clone();
        let uuid = self.uuid;
        let Resumed { file, commp } = blocking(&*self.runtime, move || s.restart(uuid)).await?;
        self.file = Some(file);
        self.intake = Intake::resume(self.size, self.padded, commp);
        self.saved_at = 0;
        Ok(())
    }

    /// Take the next chunk of data.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        self.intake.take(chunk)?;
        self.pending.extend_from_slice(chunk);
        if self.pending.len() >= WRITE_BUFFER {
            self.flush().await?;
        }
        if self.offset() - self.saved_at >= SNAPSHOT_EVERY {
            self.save().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), IngestError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut file = self.take_file()?;
        let data = std::mem::replace(&mut self.pending, Vec::with_capacity(WRITE_BUFFER));
        let file = blocking(&*self.runtime, move || {
            file.write_all(&data)?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        Ok(())
    }

    fn take_file(&mut self) -> Result<File, IngestError> {
        self.file
            .take()
            .ok_or_else(|| IngestError::Io("an earlier write failed".into()))
    }

    /// Write what is buffered, make it durable and save the commitment state.
    pub async fn save(&mut self) -> Result<(), IngestError> {
        self.flush().await?;
        let file = self.take_file()?;
        let (s, uuid, commp) = (self.staging.clone(), self.uuid, self.intake.commp().clone());
        let file = blocking(&*self.runtime, move || {
            s.save(uuid, &file, &commp)?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        self.saved_at = self.offset();
        Ok(())
    }

    /// Everything is in: make it durable and check it against the proposal's PieceCID.
    /// The byte count.
    pub async fn finish(mut self, piece_cid: &Cid) -> Result<u64, IngestError> {
        self.save().await?;
        let bytes = self.intake.finish(piece_cid)?;
        let (s, uuid) = (self.staging.clone(), self.uuid);
        blocking(&*self.runtime, move || s.complete(uuid)).await?;
        Ok(bytes)
    }
}
