//! The rules a deal's data must pass as it arrives, for a download and an offline import
//! alike: exactly `Transfer.Size` bytes for an online deal (never more than fit the
//! piece for an offline one), a declared size that matches, and a piece commitment
//! (computed while the bytes stream in, see [`crate::commp`]) equal to the proposal's
//! PieceCID.
use crate::{
    commp::{self, CommP, CommpError},
    wire::Cid,
};

/// Why the data is not the deal's. Each is one sentence with the numbers or CIDs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("the data server sent more than the transfer size {size} bytes")]
    MoreThanSize { size: u64 },
    #[error(
        "the data server declares {declared} bytes of data but the deal's transfer size is {size} bytes"
    )]
    DeclaredSize { declared: u64, size: u64 },
    #[error("the data ended after {got} bytes, short of the transfer size {size} bytes")]
    Short { got: u64, size: u64 },
    #[error(
        "the data is more than a piece of padded size {padded} holds (at most {capacity} bytes)"
    )]
    MoreThanPiece { padded: u64, capacity: u64 },
    #[error(
        "piece CID mismatch: the data's piece CID is {computed}, the proposal's is {proposed}"
    )]
    PieceCidMismatch { computed: Cid, proposed: Cid },
    #[error("cannot compute the piece commitment: {0}")]
    Commp(#[from] CommpError),
}

/// The bytes of one deal's data, counted and committed as they arrive.
#[derive(Debug, Clone)]
pub struct Intake {
    /// Online deals: `Transfer.Size`. Offline deals: `None` (any size that fits).
    size: Option<u64>,
    padded: u64,
    commp: CommP,
}

impl Intake {
    /// A fresh intake for a piece of padded size `padded`.
    pub fn new(size: Option<u64>, padded: u64) -> Intake {
        Intake::resume(size, padded, CommP::new())
    }

    /// Continue from a saved commitment state (its byte count is where the data resumes).
    pub fn resume(size: Option<u64>, padded: u64, commp: CommP) -> Intake {
        Intake {
            size,
            padded,
            commp,
        }
    }

    /// Bytes taken so far.
    pub fn received(&self) -> u64 {
        self.commp.bytes_written()
    }

    /// The commitment state, to save beside the data.
    pub fn commp(&self) -> &CommP {
        &self.commp
    }

    /// Most bytes this deal's data may have.
    fn limit(&self) -> u64 {
        let capacity = self.padded / 128 * 127;
        self.size.unwrap_or(capacity)
    }

    /// A server declared the whole data to be `declared` bytes (Content-Length of a full
    /// answer, or the total of a Content-Range).
    pub fn check_declared(&self, declared: u64) -> Result<(), DataError> {
        match self.size {
            Some(size) if declared != size => Err(DataError::DeclaredSize { declared, size }),
            _ => Ok(()),
        }
    }

    /// Take the next bytes. Refused (and nothing taken) past the size.
    pub fn take(&mut self, chunk: &[u8]) -> Result<(), DataError> {
        let after = self.received() + chunk.len() as u64;
        if after > self.limit() {
            return Err(match self.size {
                Some(size) => DataError::MoreThanSize { size },
                None => DataError::MoreThanPiece {
                    padded: self.padded,
                    capacity: self.limit(),
                },
            });
        }
        self.commp.update(chunk);
        Ok(())
    }

    /// All bytes are in: check the count and the piece CID; the byte count.
    pub fn finish(&self, proposed: &Cid) -> Result<u64, DataError> {
        let got = self.received();
        if let Some(size) = self.size {
            if got != size {
                return Err(DataError::Short { got, size });
            }
        }
        let computed = commp::piece_cid(&self.commp.finish(self.padded)?);
        if &computed != proposed {
            return Err(DataError::PieceCidMismatch {
                computed,
                proposed: proposed.clone(),
            });
        }
        Ok(got)
    }
}
