//! A lotus-miner JSON-RPC v0 client: the four calls the hand-off makes, through the one
//! JSON-RPC client dealport has (`chain::lotus::LotusClient::call`). Owns the JSON
//! shapes (lotus `api/api_storage.go`, `documentation/en/api-v0-methods-miner.md`; see
//! docs/lotus-miner.md) and the mapping of call failures to core's `MinerError`.
use std::collections::BTreeSet;

use base64::Engine as _;
use dealport_core::{
    deal::DealRecord,
    sealing::{MinerError, Placement, SectorReport},
    wire::{DealLabel, Network},
};
use serde_json::{json, Value};

use crate::chain::lotus::{LotusClient, RpcError};

/// Sectors whose status a search reads at most, newest first (after the sealing ones).
const MAX_SCAN: usize = 256;

/// Sector states in which pieces are still being added or sealed (lotus
/// `storage/pipeline/sector_state.go`); a deal added moments ago is in one of these.
pub const SEALING_STATES: &[&str] = &[
    "WaitDeals",
    "AddPiece",
    "Packing",
    "GetTicket",
    "PreCommit1",
    "PreCommit2",
    "PreCommitting",
    "PreCommitWait",
    "SubmitPreCommitBatch",
    "PreCommitBatchWait",
    "WaitSeed",
    "Committing",
    "CommitFinalize",
    "SubmitCommit",
    "CommitWait",
    "SubmitCommitAggregate",
    "CommitAggregateWait",
    "FinalizeSector",
];

/// A sector's status with the deal's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorStatus {
    pub report: SectorReport,
    /// `(DealID or 0 for a filler, padded size)` of each piece, in sector order.
    pub pieces: Vec<(u64, u64)>,
}

impl SectorStatus {
    /// Where `deal_id`'s piece sits: the padded sizes of the pieces before it.
    pub fn placement_of(&self, sector: u64, deal_id: u64) -> Option<Placement> {
        let mut offset = 0u64;
        for &(id, size) in &self.pieces {
            if id == deal_id {
                return Some(Placement { sector, offset });
            }
            offset = offset.saturating_add(size);
        }
        None
    }
}

pub struct MinerClient {
    rpc: LotusClient,
    network: Network,
}

/// What a failed call means for the hand-off.
pub fn classify(e: RpcError) -> MinerError {
    match e {
        RpcError::Connect(e) => MinerError::Unreachable {
            detail: format!("cannot connect: {e}"),
            may_have_arrived: false,
        },
        RpcError::Endpoint(e) => MinerError::Unreachable {
            detail: e,
            may_have_arrived: false,
        },
        RpcError::Status { status: 401, .. } => MinerError::Unauthorized,
        RpcError::Status { status, body } => MinerError::Unreachable {
            detail: format!("HTTP {status}: {body}"),
            may_have_arrived: status >= 500,
        },
        RpcError::Rpc { message, .. } => MinerError::from_rpc_message(&message),
        e @ (RpcError::Timeout { .. } | RpcError::Http(_) | RpcError::Decode { .. }) => {
            MinerError::Unreachable {
                detail: e.to_string(),
                may_have_arrived: true,
            }
        }
    }
}

impl MinerClient {
    pub fn new(rpc: LotusClient, network: Network) -> MinerClient {
        MinerClient { rpc, network }
    }

    pub fn describe(&self) -> String {
        format!("lotus-miner at {}", self.rpc.endpoint().url())
    }

    /// `PieceDealInfo` in lotus's JSON (`api.PieceDealInfo`, field order as lotus's).
    pub fn piece_deal_info(&self, deal: &DealRecord) -> Value {
        let p = &deal.params.client_deal_proposal.proposal;
        let label = match &p.label {
            DealLabel::Text(s) => Value::String(s.clone()),
            DealLabel::Bytes(b) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
        };
        json!({
            "PublishCid": deal.publish_cid.as_ref().map(|c| json!({"/": c.to_string()})),
            "DealID": deal.chain_deal_id,
            "DealProposal": {
                "PieceCID": {"/": p.piece_cid.to_string()},
                "PieceSize": p.piece_size,
                "VerifiedDeal": p.verified_deal,
                "Client": p.client.to_string_on(self.network),
                "Provider": p.provider.to_string_on(self.network),
                "Label": label,
                "StartEpoch": p.start_epoch,
                "EndEpoch": p.end_epoch,
                "StoragePricePerEpoch": p.storage_price_per_epoch.to_string(),
                "ProviderCollateral": p.provider_collateral.to_string(),
                "ClientCollateral": p.client_collateral.to_string(),
            },
            "DealSchedule": {"StartEpoch": p.start_epoch, "EndEpoch": p.end_epoch},
            "KeepUnsealed": !deal.params.remove_unsealed_copy,
        })
    }

    /// `Filecoin.SectorAddPieceToAny(size, {"Type":"http","Info":url}, PieceDealInfo)`.
    pub async fn add_piece(
        &self,
        deal: &DealRecord,
        unpadded_size: u64,
        url: &str,
    ) -> Result<Placement, MinerError> {
        let params = json!([
            unpadded_size,
            {"Type": "http", "Info": url},
            self.piece_deal_info(deal),
        ]);
        let v = self
            .rpc
            .call("SectorAddPieceToAny", params)
            .await
            .map_err(classify)?;
        let num = |k: &str| v.get(k).and_then(Value::as_u64);
        match (num("Sector"), num("Offset")) {
            (Some(sector), Some(offset)) => Ok(Placement { sector, offset }),
            // It answered success: the piece may well be placed; the search finds it.
            _ => Err(MinerError::Unreachable {
                detail: format!("SectorAddPieceToAny answered {v} without Sector and Offset"),
                may_have_arrived: true,
            }),
        }
    }

    /// `Filecoin.SectorsStatus(sector, false)`.
    pub async fn sector_status(&self, sector: u64) -> Result<SectorStatus, MinerError> {
        let v = self
            .rpc
            .call("SectorsStatus", json!([sector, false]))
            .await
            .map_err(classify)?;
        let state = v
            .get("State")
            .and_then(Value::as_str)
            .ok_or_else(|| MinerError::Unreachable {
                detail: format!("SectorsStatus({sector}) answered without a State"),
                may_have_arrived: false,
            })?
            .to_owned();
        let deals = v
            .get("Deals")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let pieces = v
            .get("Pieces")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| {
                        let size = p
                            .pointer("/Piece/Size")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                        let id = p
                            .pointer("/DealInfo/DealID")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                        (id, size)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(SectorStatus {
            report: SectorReport { state, deals },
            pieces,
        })
    }

    async fn list(&self, method: &str, params: Value) -> Result<Vec<u64>, MinerError> {
        let v = self.rpc.call(method, params).await.map_err(classify)?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default())
    }

    /// Where the miner holds `deal_id`, if anywhere: first the sectors still sealing
    /// (`SectorsListInStates`), then the newest of all (`SectorsList`), at most
    /// [`MAX_SCAN`] `SectorsStatus` reads.
    pub async fn find_deal(&self, deal_id: u64) -> Result<Option<Placement>, MinerError> {
        let mut sealing = self
            .list("SectorsListInStates", json!([SEALING_STATES]))
            .await?;
        sealing.sort_unstable_by(|a, b| b.cmp(a));
        let mut seen = BTreeSet::new();
        let mut all = self.list("SectorsList", json!([])).await?;
        all.sort_unstable_by(|a, b| b.cmp(a));
        for sector in sealing.into_iter().chain(all).take(MAX_SCAN * 2) {
            if !seen.insert(sector) {
                continue;
            }
            if seen.len() > MAX_SCAN {
                break;
            }
            let s = self.sector_status(sector).await?;
            if s.report.deals.contains(&deal_id) {
                return Ok(Some(
                    s.placement_of(sector, deal_id)
                        .unwrap_or(Placement { sector, offset: 0 }),
                ));
            }
        }
        Ok(None)
    }
}
