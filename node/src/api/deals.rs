//! `GET /api/v1/deals/<uuid>`: the deal as stored, with its piece's index state
//! (`index`: `state`, `blocks`, `reason`; docs/indexing.md). `GET /api/v1/deals` and
//! `GET /api/v1/deals/after/<uuid>`: a page of deals in UUID order, `{"deals": […],
//! "next": <uuid of the last, or null at the end>}`, read by key range from the store.
//! `PUT /api/v1/deals/<uuid>/data`: an offline deal's data, streamed into staging with
//! its piece commitment checked.

use std::sync::Arc;

use dealport_core::{deal::DealRecord, wire::DealUuid};
use http::{Method, StatusCode};

use crate::runtime::timeout;

use super::{json, uuid_param, ApiContext, ApiError, ApiRequest, ApiResult, Body, Route};

/// Deals per page of `GET /api/v1/deals`.
pub const PAGE: usize = 500;

pub fn routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::GET,
            path: "deals",
            leader_only: false,
            body: Body::Whole,
            handler: |ctx, _req| Box::pin(page(ctx, None)),
        },
        Route {
            method: Method::GET,
            path: "deals/after/{}",
            leader_only: false,
            body: Body::Whole,
            handler: |ctx, req| {
                Box::pin(async move {
                    let after = uuid_param(&req, 0)?;
                    page(ctx, Some(after)).await
                })
            },
        },
        Route {
            method: Method::GET,
            path: "deals/{}",
            leader_only: false,
            body: Body::Whole,
            handler: |ctx, req| Box::pin(get_deal(ctx, req)),
        },
        Route {
            method: Method::PUT,
            path: "deals/{}/data",
            leader_only: true,
            body: Body::Stream,
            handler: |ctx, req| Box::pin(put_data(ctx, req)),
        },
    ]
}

async fn get_deal(ctx: Arc<ApiContext>, req: ApiRequest) -> ApiResult {
    let uuid = uuid_param(&req, 0)?;
    let deal = ctx
        .service
        .store()
        .deal_by_uuid(uuid)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read deal {uuid}: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("no deal with UUID {uuid}")))?;
    let piece = &deal.params.client_deal_proposal.proposal.piece_cid;
    let index = timeout(STORE_BOUND, ctx.service.store().piece_index_state(piece))
        .await
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store did not answer in time; retry",
            )
        })?
        .map_err(|e| ApiError::internal(format!("cannot read piece {piece}'s index: {e}")))?;
    let mut body = deal_json(&deal);
    body["index"] = serde_json::json!({
        "state": index.name(),
        "blocks": index.blocks(),
        "reason": index.reason(),
    });
    Ok(json(StatusCode::OK, &body))
}

/// Bound on the piece index read of `GET /api/v1/deals/<uuid>`.
const STORE_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

async fn page(ctx: Arc<ApiContext>, after: Option<DealUuid>) -> ApiResult {
    let deals = ctx
        .service
        .store()
        .list_deals_page(after, PAGE)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the deals: {e}")))?;
    let next = (deals.len() == PAGE)
        .then(|| deals.last().map(|d| d.uuid.to_string()))
        .flatten();
    let deals: Vec<_> = deals.iter().map(deal_json).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "deals": deals, "next": next }),
    ))
}

async fn put_data(ctx: Arc<ApiContext>, req: ApiRequest) -> ApiResult {
    let uuid = uuid_param(&req, 0)?;
    let deal = ctx.transfers.import(uuid, req.body).await?;
    Ok(json(StatusCode::OK, &deal_json(&deal)))
}

/// Everything stored about a deal, as JSON (also `dealport deals show`).
pub fn deal_json(d: &DealRecord) -> serde_json::Value {
    let p = &d.params.client_deal_proposal.proposal;
    serde_json::json!({
        "uuid": d.uuid.to_string(),
        "state": d.state().to_string(),
        "checkpoint": d.checkpoint.name(),
        "error": d.error,
        "client_peer_id": d.client_peer_id,
        "created_at": dealport_core::accept::go_time_utc(d.created_at_unix_nanos),
        "created_at_unix_nanos": d.created_at_unix_nanos,
        "proposal_cid": d.proposal_cid.to_string(),
        "signed_proposal_cid": d.signed_proposal_cid.to_string(),
        "is_offline": d.params.is_offline,
        "deal_data_root": d.params.deal_data_root.to_string(),
        "transfer": {
            "type": d.params.transfer.transfer_type,
            "size": d.params.transfer.size,
        },
        "proposal": {
            "piece_cid": p.piece_cid.to_string(),
            "piece_size": p.piece_size,
            "verified_deal": p.verified_deal,
            "client": p.client.to_string(),
            "provider": p.provider.to_string(),
            "start_epoch": p.start_epoch,
            "end_epoch": p.end_epoch,
            "storage_price_per_epoch": p.storage_price_per_epoch.to_string(),
            "provider_collateral": p.provider_collateral.to_string(),
            "client_collateral": p.client_collateral.to_string(),
        },
        "n_bytes_received": d.n_bytes_received,
        "publish_cid": d.publish_cid.as_ref().map(ToString::to_string),
        "chain_deal_id": d.chain_deal_id,
        "sector_number": d.sector_number,
        "sector_offset": d.sector_offset,
        "sealing_status": d.sealing_status,
        "params_hex": hex::encode(&d.params_bytes),
    })
}
