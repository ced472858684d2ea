//! A deal as the provider keeps it, and its lifecycle.
use crate::wire::{Cid, DealParams, DealUuid};
use std::fmt;

/// Boost's deal checkpoints (`storagemarket/types/dealcheckpoints`), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Checkpoint {
    Accepted,
    Transferred,
    Published,
    PublishConfirmed,
    AddedPiece,
    IndexedAndAnnounced,
    Complete,
}

impl Checkpoint {
    /// The name Boost clients expect in `DealStatus.Status`.
    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::Accepted => "Accepted",
            Checkpoint::Transferred => "Transferred",
            Checkpoint::Published => "Published",
            Checkpoint::PublishConfirmed => "PublishConfirmed",
            Checkpoint::AddedPiece => "AddedPiece",
            Checkpoint::IndexedAndAnnounced => "IndexedAndAnnounced",
            Checkpoint::Complete => "Complete",
        }
    }
}

/// Everything the provider stores about one deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealRecord {
    pub uuid: DealUuid,
    /// The DealParams bytes exactly as the client sent them.
    pub params_bytes: Vec<u8>,
    /// The decoded DealParams (always `DealParams::from_cbor(&params_bytes)`).
    pub params: DealParams,
    /// dag-cbor sha2-256 of the ClientDealProposal (Boost's SignedProposalCid).
    pub signed_proposal_cid: Cid,
    /// dag-cbor blake2b-256 of the DealProposal (the chain's proposal CID).
    pub proposal_cid: Cid,
    /// The client's libp2p PeerID (base58), empty when the deal came over plain HTTP.
    pub client_peer_id: String,
    /// When the deal was accepted: nanoseconds since the Unix epoch, UTC.
    pub created_at_unix_nanos: i64,
    pub checkpoint: Checkpoint,
    /// Set when the deal failed; the checkpoint then says how far it got.
    pub error: Option<String>,
    pub n_bytes_received: u64,
    pub publish_cid: Option<Cid>,
    pub chain_deal_id: u64,
    pub sector_number: Option<u64>,
    pub sector_offset: Option<u64>,
    /// Free text from the sealing system (e.g. a sector state).
    pub sealing_status: String,
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a deal is: at a checkpoint, or failed after reaching one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DealState {
    /// In flight (or `Complete`) at this checkpoint.
    At(Checkpoint),
    /// Failed; the checkpoint is the last one it reached.
    Failed(Checkpoint),
}

impl fmt::Display for DealState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DealState::At(c) => f.write_str(c.name()),
            DealState::Failed(c) => write!(f, "Failed (at {})", c.name()),
        }
    }
}

/// Something that happened to a deal, reported by the node's deal pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DealEvent {
    /// Progress of an online transfer (or an offline import): bytes so far.
    Transferring {
        bytes_received: u64,
    },
    /// The data is all here. For online deals `bytes` must equal `Transfer.Size`.
    Transferred {
        bytes: u64,
    },
    /// The PublishStorageDeals message was sent.
    Published {
        publish_cid: Cid,
    },
    /// The publish message landed on chain and the deal has its ID.
    PublishConfirmed {
        chain_deal_id: u64,
    },
    /// The piece was handed to the sealing system.
    AddedPiece {
        sector_number: u64,
        offset: u64,
    },
    IndexedAndAnnounced,
    Complete,
    /// Free text from the sealing system; does not move the checkpoint.
    SealingStatus(String),
    /// The deal failed with this message (what the client will read).
    Failed(String),
}

/// The kind of a [`DealEvent`], without its data: the state a transition aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Transferring,
    Transferred,
    Published,
    PublishConfirmed,
    AddedPiece,
    IndexedAndAnnounced,
    Complete,
    SealingStatus,
    Failed,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Transferring => "Transferring",
            EventKind::Transferred => "Transferred",
            EventKind::Published => "Published",
            EventKind::PublishConfirmed => "PublishConfirmed",
            EventKind::AddedPiece => "AddedPiece",
            EventKind::IndexedAndAnnounced => "IndexedAndAnnounced",
            EventKind::Complete => "Complete",
            EventKind::SealingStatus => "SealingStatus",
            EventKind::Failed => "Failed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl DealEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            DealEvent::Transferring { .. } => EventKind::Transferring,
            DealEvent::Transferred { .. } => EventKind::Transferred,
            DealEvent::Published { .. } => EventKind::Published,
            DealEvent::PublishConfirmed { .. } => EventKind::PublishConfirmed,
            DealEvent::AddedPiece { .. } => EventKind::AddedPiece,
            DealEvent::IndexedAndAnnounced => EventKind::IndexedAndAnnounced,
            DealEvent::Complete => EventKind::Complete,
            DealEvent::SealingStatus(_) => EventKind::SealingStatus,
            DealEvent::Failed(_) => EventKind::Failed,
        }
    }
}

/// Why [`DealRecord::apply`] refused an event. The record is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The event is not allowed in the deal's current state.
    #[error("illegal deal transition from {from} to {to}")]
    Illegal { from: DealState, to: EventKind },
    /// A byte count lower than one already reported.
    #[error("bytes received went backwards ({had} -> {got}) while {state}")]
    BytesWentBackwards {
        state: DealState,
        had: u64,
        got: u64,
    },
    /// An online deal reported more bytes than the client declared in `Transfer.Size`.
    #[error("{got} bytes received while {state}, more than the transfer size {size}")]
    BytesAboveTransferSize {
        state: DealState,
        got: u64,
        size: u64,
    },
    /// An online transfer ended with a byte count other than `Transfer.Size`.
    #[error("transfer ended with {got} bytes while {state}, expected the transfer size {size}")]
    TransferSizeMismatch {
        state: DealState,
        got: u64,
        size: u64,
    },
}

/// The error text stored when a failure arrives without one, so that a failed deal
/// never reports an empty `Error` to its client.
pub const UNSPECIFIED_FAILURE: &str = "deal failed";

impl DealRecord {
    /// A freshly accepted deal: checkpoint `Accepted`, nothing received, both CIDs
    /// computed from `params`. `params_bytes` must be the bytes `params` was decoded from.
    pub fn new_accepted(
        params_bytes: Vec<u8>,
        params: DealParams,
        client_peer_id: String,
        created_at_unix_nanos: i64,
    ) -> DealRecord {
        let signed_proposal_cid = params.client_deal_proposal.signed_proposal_cid();
        let proposal_cid = params.client_deal_proposal.proposal.cid();
        DealRecord {
            uuid: params.deal_uuid,
            params_bytes,
            params,
            signed_proposal_cid,
            proposal_cid,
            client_peer_id,
            created_at_unix_nanos,
            checkpoint: Checkpoint::Accepted,
            error: None,
            n_bytes_received: 0,
            publish_cid: None,
            chain_deal_id: 0,
            sector_number: None,
            sector_offset: None,
            sealing_status: String::new(),
        }
    }

    /// True once the deal has failed (its `error` is set).
    pub fn is_failed(&self) -> bool {
        self.error.is_some()
    }

    /// True once the deal's downloaded data is of no more use to it: it failed, or its
    /// piece is in a sector (`AddedPiece` or later).
    pub fn is_done_with_staged_data(&self) -> bool {
        self.is_failed() || self.checkpoint >= Checkpoint::AddedPiece
    }

    /// True when nothing more can happen to the deal: it failed or completed.
    pub fn is_terminal(&self) -> bool {
        self.is_failed() || self.checkpoint == Checkpoint::Complete
    }

    /// The deal's state: its checkpoint, or failed at its checkpoint.
    pub fn state(&self) -> DealState {
        if self.is_failed() {
            DealState::Failed(self.checkpoint)
        } else {
            DealState::At(self.checkpoint)
        }
    }

    /// Apply one lifecycle event.
    ///
    /// Checkpoints advance one step at a time: `Accepted → Transferred → Published →
    /// PublishConfirmed → AddedPiece → IndexedAndAnnounced → Complete` (or `AddedPiece
    /// → Complete` when nothing indexes). `Transferring`
    /// progress is only taken while `Accepted` (non-decreasing, and for online deals never
    /// above `Transfer.Size`); `SealingStatus` any time before `Complete`; `Failed` from
    /// any state but `Complete` (it sets the error and keeps the checkpoint). Nothing is
    /// taken after a failure or `Complete`. On error the record is unchanged.
    pub fn apply(&mut self, ev: DealEvent) -> Result<(), TransitionError> {
        let state = self.state();
        let illegal = TransitionError::Illegal {
            from: state,
            to: ev.kind(),
        };
        if self.is_terminal() {
            return Err(illegal);
        }
        // From here the deal is live: not failed, not Complete.
        let online = !self.params.is_offline;
        let size = self.params.transfer.size;
        let at = self.checkpoint;
        let step = |from: Checkpoint| {
            if at == from {
                Ok(())
            } else {
                Err(illegal.clone())
            }
        };
        match ev {
            DealEvent::Transferring { bytes_received } => {
                step(Checkpoint::Accepted)?;
                self.check_bytes(state, bytes_received, online, size)?;
                self.n_bytes_received = bytes_received;
            }
            DealEvent::Transferred { bytes } => {
                step(Checkpoint::Accepted)?;
                self.check_bytes(state, bytes, online, size)?;
                if online && bytes != size {
                    return Err(TransitionError::TransferSizeMismatch {
                        state,
                        got: bytes,
                        size,
                    });
                }
                self.n_bytes_received = bytes;
                self.checkpoint = Checkpoint::Transferred;
            }
            DealEvent::Published { publish_cid } => {
                step(Checkpoint::Transferred)?;
                self.publish_cid = Some(publish_cid);
                self.checkpoint = Checkpoint::Published;
            }
            DealEvent::PublishConfirmed { chain_deal_id } => {
                step(Checkpoint::Published)?;
                self.chain_deal_id = chain_deal_id;
                self.checkpoint = Checkpoint::PublishConfirmed;
            }
            DealEvent::AddedPiece {
                sector_number,
                offset,
            } => {
                step(Checkpoint::PublishConfirmed)?;
                self.sector_number = Some(sector_number);
                self.sector_offset = Some(offset);
                self.checkpoint = Checkpoint::AddedPiece;
            }
            DealEvent::IndexedAndAnnounced => {
                step(Checkpoint::AddedPiece)?;
                self.checkpoint = Checkpoint::IndexedAndAnnounced;
            }
            DealEvent::Complete => {
                // From `AddedPiece` too: the lotus-miner hand-off seals without indexing
                // (IndexedAndAnnounced is for the indexing work still to come).
                if at != Checkpoint::AddedPiece {
                    step(Checkpoint::IndexedAndAnnounced)?;
                }
                self.checkpoint = Checkpoint::Complete;
            }
            DealEvent::SealingStatus(s) => self.sealing_status = s,
            DealEvent::Failed(msg) => {
                self.error = Some(if msg.is_empty() {
                    UNSPECIFIED_FAILURE.to_owned()
                } else {
                    msg
                });
            }
        }
        Ok(())
    }

    fn check_bytes(
        &self,
        state: DealState,
        got: u64,
        online: bool,
        size: u64,
    ) -> Result<(), TransitionError> {
        if got < self.n_bytes_received {
            return Err(TransitionError::BytesWentBackwards {
                state,
                had: self.n_bytes_received,
                got,
            });
        }
        if online && got > size {
            return Err(TransitionError::BytesAboveTransferSize { state, got, size });
        }
        Ok(())
    }
}
