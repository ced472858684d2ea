//! MK12 messages (Boost `storagemarket/types`, Curio `market/mk12`): cbor-gen maps.
//!
//! Every writer emits every field, keys in length-then-bytewise order; every reader
//! accepts any key order, skips unknown keys and leaves missing ones at zero.
use super::cbor::{Cbor, Reader, Writer, BYTE_ARRAY_MAX_LEN};
use super::cid::Cid;
use super::error::WireError;
use super::primitives::{DealUuid, Signature};
use super::proposal::{ClientDealProposal, DealProposal};

/// How the provider gets the data (`Transfer`). Zero value for offline deals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transfer {
    /// `"http"`, `"libp2p"`, or `""` for offline deals.
    pub transfer_type: String,
    pub client_id: String,
    /// Opaque, interpreted per type: JSON `HttpRequest` for http and libp2p.
    pub params: Vec<u8>,
    /// Bytes the provider will download.
    pub size: u64,
}

impl Cbor for Transfer {
    const NAME: &'static str = "Transfer";
    fn write(&self, w: &mut Writer) {
        w.map(4)
            .key("Size")
            .uint(self.size)
            .key("Type")
            .str(&self.transfer_type)
            .key("Params")
            .bytes(&self.params)
            .key("ClientID")
            .str(&self.client_id);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut t = Transfer::default();
        r.map_struct(|key, r| {
            match key {
                "Size" => t.size = r.uint()?,
                "Type" => t.transfer_type = r.string()?,
                "Params" => t.params = r.bytes(BYTE_ARRAY_MAX_LEN)?.to_vec(),
                "ClientID" => t.client_id = r.string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(t)
    }
}

/// The deal proposal request on `/fil/storage/mk/1.2.0` and `/1.2.1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DealParams {
    pub deal_uuid: DealUuid,
    pub is_offline: bool,
    pub client_deal_proposal: ClientDealProposal,
    pub deal_data_root: Cid,
    pub transfer: Transfer,
    /// v1.2.1 field; absent (false) in the 5-key v1.2.0 form.
    pub remove_unsealed_copy: bool,
    /// v1.2.1 field; absent (false) in the 5-key v1.2.0 form.
    pub skip_ipni_announce: bool,
}

impl DealParams {
    /// The 5-key `DealParamsV120` form a v1.2.0 client writes.
    pub fn to_cbor_v120(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_fields(&mut w, false);
        w.into_bytes()
    }

    /// The map in canonical key order; the two v1.2.1 keys only when `v121`.
    fn write_fields(&self, w: &mut Writer, v121: bool) {
        w.map(if v121 { 7 } else { 5 })
            .key("DealUUID")
            .value(&self.deal_uuid)
            .key("Transfer")
            .value(&self.transfer)
            .key("IsOffline")
            .bool(self.is_offline)
            .key("DealDataRoot")
            .value(&self.deal_data_root);
        if v121 {
            w.key("SkipIPNIAnnounce").bool(self.skip_ipni_announce);
        }
        w.key("ClientDealProposal")
            .value(&self.client_deal_proposal);
        if v121 {
            w.key("RemoveUnsealedCopy").bool(self.remove_unsealed_copy);
        }
    }
}

impl Cbor for DealParams {
    const NAME: &'static str = "DealParams";
    fn write(&self, w: &mut Writer) {
        self.write_fields(w, true);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut p = DealParams::default();
        r.map_struct(|key, r| {
            match key {
                "DealUUID" => p.deal_uuid = DealUuid::read(r)?,
                "Transfer" => p.transfer = Transfer::read(r)?,
                "IsOffline" => p.is_offline = r.bool()?,
                "DealDataRoot" => p.deal_data_root = Cid::read(r)?,
                "SkipIPNIAnnounce" => p.skip_ipni_announce = r.bool()?,
                "ClientDealProposal" => p.client_deal_proposal = ClientDealProposal::read(r)?,
                "RemoveUnsealedCopy" => p.remove_unsealed_copy = r.bool()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(p)
    }
}

/// The answer to a deal proposal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DealResponse {
    pub accepted: bool,
    /// Empty when accepted; the rejection reason otherwise.
    pub message: String,
}

impl DealResponse {
    pub fn accepted() -> Self {
        DealResponse {
            accepted: true,
            message: String::new(),
        }
    }
    pub fn rejected(message: impl Into<String>) -> Self {
        DealResponse {
            accepted: false,
            message: message.into(),
        }
    }
}

impl Cbor for DealResponse {
    const NAME: &'static str = "DealResponse";
    fn write(&self, w: &mut Writer) {
        w.map(2)
            .key("Message")
            .str(&self.message)
            .key("Accepted")
            .bool(self.accepted);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = DealResponse::default();
        r.map_struct(|key, r| {
            match key {
                "Message" => v.message = r.string()?,
                "Accepted" => v.accepted = r.bool()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// The request on `/fil/storage/status/1.2.0`: the client signs the 16 UUID bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DealStatusRequest {
    pub deal_uuid: DealUuid,
    pub signature: Signature,
}

impl Cbor for DealStatusRequest {
    const NAME: &'static str = "DealStatusRequest";
    fn write(&self, w: &mut Writer) {
        w.map(2)
            .key("DealUUID")
            .value(&self.deal_uuid)
            .key("Signature")
            .value(&self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = DealStatusRequest::default();
        r.map_struct(|key, r| {
            match key {
                "DealUUID" => v.deal_uuid = DealUuid::read(r)?,
                "Signature" => v.signature = Signature::read(r)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// A deal's state as the status protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DealStatus {
    pub error: String,
    /// Boost checkpoint name: `Accepted`, `Transferred`, … `Complete`.
    pub status: String,
    pub sealing_status: String,
    pub proposal: DealProposal,
    pub signed_proposal_cid: Cid,
    pub publish_cid: Option<Cid>,
    pub chain_deal_id: u64,
}

impl Cbor for DealStatus {
    const NAME: &'static str = "DealStatus";
    fn write(&self, w: &mut Writer) {
        w.map(7)
            .key("Error")
            .str(&self.error)
            .key("Status")
            .str(&self.status)
            .key("Proposal")
            .value(&self.proposal)
            .key("PublishCid")
            .opt(&self.publish_cid)
            .key("ChainDealID")
            .uint(self.chain_deal_id)
            .key("SealingStatus")
            .str(&self.sealing_status)
            .key("SignedProposalCid")
            .value(&self.signed_proposal_cid);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = DealStatus::default();
        r.map_struct(|key, r| {
            match key {
                "Error" => v.error = r.string()?,
                "Status" => v.status = r.string()?,
                "Proposal" => v.proposal = DealProposal::read(r)?,
                "PublishCid" => v.publish_cid = r.opt()?,
                "ChainDealID" => v.chain_deal_id = r.uint()?,
                "SealingStatus" => v.sealing_status = r.string()?,
                "SignedProposalCid" => v.signed_proposal_cid = Cid::read(r)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// The answer on `/fil/storage/status/1.2.0`. Not signed (MK12 has no such field).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DealStatusResponse {
    pub deal_uuid: DealUuid,
    /// Non-empty when the request failed; then `deal_status` is `None`.
    pub error: String,
    pub deal_status: Option<DealStatus>,
    pub is_offline: bool,
    pub transfer_size: u64,
    pub n_bytes_received: u64,
}

impl DealStatusResponse {
    /// An error-only answer (DealStatus null), as Boost writes for failed requests.
    pub fn error(deal_uuid: DealUuid, error: impl Into<String>) -> Self {
        DealStatusResponse {
            deal_uuid,
            error: error.into(),
            ..Default::default()
        }
    }
}

impl Cbor for DealStatusResponse {
    const NAME: &'static str = "DealStatusResponse";
    fn write(&self, w: &mut Writer) {
        w.map(6)
            .key("Error")
            .str(&self.error)
            .key("DealUUID")
            .value(&self.deal_uuid)
            .key("IsOffline")
            .bool(self.is_offline)
            .key("DealStatus")
            .opt(&self.deal_status)
            .key("TransferSize")
            .uint(self.transfer_size)
            .key("NBytesReceived")
            .uint(self.n_bytes_received);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = DealStatusResponse::default();
        r.map_struct(|key, r| {
            match key {
                "Error" => v.error = r.string()?,
                "DealUUID" => v.deal_uuid = DealUuid::read(r)?,
                "IsOffline" => v.is_offline = r.bool()?,
                "DealStatus" => v.deal_status = r.opt()?,
                "TransferSize" => v.transfer_size = r.uint()?,
                "NBytesReceived" => v.n_bytes_received = r.uint()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}
