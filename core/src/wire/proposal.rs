//! The chain's deal proposal types, tuple (array) encoded as go-state-types writes them.
use super::address::Address;
use super::cbor::{Cbor, Reader, Writer};
use super::cid::Cid;
use super::error::{WireError, Within};
use super::primitives::{DealLabel, Signature, TokenAmount};

/// `market.DealProposal` (array of 11, positional).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DealProposal {
    pub piece_cid: Cid,
    pub piece_size: u64,
    pub verified_deal: bool,
    pub client: Address,
    pub provider: Address,
    pub label: DealLabel,
    pub start_epoch: i64,
    pub end_epoch: i64,
    pub storage_price_per_epoch: TokenAmount,
    pub provider_collateral: TokenAmount,
    pub client_collateral: TokenAmount,
}

impl DealProposal {
    /// The on-chain proposal CID: dag-cbor + blake2b-256 of the canonical bytes.
    pub fn cid(&self) -> Cid {
        Cid::dag_cbor_blake2b(&self.to_cbor())
    }

    /// Number of epochs the deal lasts (`EndEpoch - StartEpoch`).
    pub fn duration(&self) -> i64 {
        self.end_epoch.saturating_sub(self.start_epoch)
    }
}

impl Cbor for DealProposal {
    const NAME: &'static str = "DealProposal";
    fn write(&self, w: &mut Writer) {
        w.array(11)
            .value(&self.piece_cid)
            .uint(self.piece_size)
            .bool(self.verified_deal)
            .value(&self.client)
            .value(&self.provider)
            .value(&self.label)
            .int(self.start_epoch)
            .int(self.end_epoch)
            .value(&self.storage_price_per_epoch)
            .value(&self.provider_collateral)
            .value(&self.client_collateral);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.tuple(11)?;
        Ok(DealProposal {
            piece_cid: Cid::read(r).within("PieceCID")?,
            piece_size: r.uint().within("PieceSize")?,
            verified_deal: r.bool().within("VerifiedDeal")?,
            client: Address::read(r).within("Client")?,
            provider: Address::read(r).within("Provider")?,
            label: DealLabel::read(r).within("Label")?,
            start_epoch: r.int().within("StartEpoch")?,
            end_epoch: r.int().within("EndEpoch")?,
            storage_price_per_epoch: TokenAmount::read(r).within("StoragePricePerEpoch")?,
            provider_collateral: TokenAmount::read(r).within("ProviderCollateral")?,
            client_collateral: TokenAmount::read(r).within("ClientCollateral")?,
        })
    }
}

/// `market.ClientDealProposal`: the proposal and the client's signature over its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientDealProposal {
    pub proposal: DealProposal,
    pub client_signature: Signature,
}

impl ClientDealProposal {
    /// Boost's SignedProposalCid: dag-cbor + sha2-256 of the whole ClientDealProposal.
    pub fn signed_proposal_cid(&self) -> Cid {
        Cid::dag_cbor_sha256(&self.to_cbor())
    }
}

impl Cbor for ClientDealProposal {
    const NAME: &'static str = "ClientDealProposal";
    fn write(&self, w: &mut Writer) {
        w.array(2)
            .value(&self.proposal)
            .value(&self.client_signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.tuple(2)?;
        Ok(ClientDealProposal {
            proposal: DealProposal::read(r).within("Proposal")?,
            client_signature: Signature::read(r).within("ClientSignature")?,
        })
    }
}
