//! The sealing hand-off: the provider's sealing system takes published deals from here.
//!
//! - `GET  sealing/deals`: deals ready to seal (`PublishConfirmed`), as JSON.
//! - `GET  sealing/deals/<uuid>/piece`: the deal's data as received (unpadded).
//! - `POST sealing/deals/<uuid>/added-piece` `{"sector": n, "offset": n}`
//! - `POST sealing/deals/<uuid>/indexed`, `POST sealing/deals/<uuid>/complete`
//! - `POST sealing/deals/<uuid>/failed` `{"error": "…"}`
//! - `POST sealing/deals/<uuid>/status` `{"text": "…"}` (free text shown in status)
//!
//! Each report is a lifecycle event (core's transition rules); one the deal cannot take
//! now answers 409 with the reason. The staged data is removed once the piece is in a
//! sector or the deal failed, unless `[transfer] keep_staging`.
use std::sync::Arc;

use dealport_core::{
    deal::{Checkpoint, DealEvent},
    wire::DealUuid,
};
use http::{Method, StatusCode};
use serde::Deserialize;

use super::{
    deal_json, file_response, json, uuid_param, ApiContext, ApiError, ApiRequest, ApiResult, Body,
    Route,
};

/// Deals `GET sealing/deals` answers with at most.
const READY_PAGE: usize = 1000;

pub fn routes() -> Vec<Route> {
    let post = |path, handler| Route {
        method: Method::POST,
        path,
        leader_only: true,
        body: Body::Whole,
        handler,
    };
    vec![
        Route {
            method: Method::GET,
            path: "sealing/deals",
            leader_only: false,
            body: Body::Whole,
            handler: |ctx, _req| Box::pin(ready_deals(ctx)),
        },
        Route {
            method: Method::GET,
            path: "sealing/deals/{}/piece",
            leader_only: true,
            body: Body::Whole,
            handler: |ctx, req| Box::pin(piece(ctx, req)),
        },
        post("sealing/deals/{}/added-piece", |ctx, req| {
            Box::pin(report(ctx, req, Report::AddedPiece))
        }),
        post("sealing/deals/{}/indexed", |ctx, req| {
            Box::pin(report(ctx, req, Report::Indexed))
        }),
        post("sealing/deals/{}/complete", |ctx, req| {
            Box::pin(report(ctx, req, Report::Complete))
        }),
        post("sealing/deals/{}/failed", |ctx, req| {
            Box::pin(report(ctx, req, Report::Failed))
        }),
        post("sealing/deals/{}/status", |ctx, req| {
            Box::pin(report(ctx, req, Report::Status))
        }),
    ]
}

async fn ready_deals(ctx: Arc<ApiContext>) -> ApiResult {
    // The live index's deals at PublishConfirmed, at most one page: a sealing system
    // takes them a batch at a time.
    let deals = ctx
        .service
        .store()
        .live_deals_at(Checkpoint::PublishConfirmed, None, READY_PAGE)
        .await
        .map_err(|e| ApiError::internal(format!("cannot list deals: {e}")))?;
    let ready: Vec<serde_json::Value> = deals.iter().map(deal_json).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "deals": ready })))
}

async fn piece(ctx: Arc<ApiContext>, req: ApiRequest) -> ApiResult {
    let uuid = uuid_param(&req, 0)?;
    let deal = find(&ctx, uuid).await?;
    if deal.checkpoint < Checkpoint::Transferred {
        return Err(ApiError::conflict(format!(
            "deal {uuid} is {}: its data is not all here yet",
            deal.state()
        )));
    }
    let path = ctx.transfers.staging.data_path(uuid);
    let file = std::fs::File::open(&path).map_err(|e| {
        ApiError::new(
            StatusCode::GONE,
            format!(
                "the staged data of deal {uuid} is not available ({}: {e})",
                path.display()
            ),
        )
    })?;
    file_response(
        ctx.transfers.runtime(),
        file,
        req.headers.get(http::header::RANGE),
    )
}

#[derive(Clone, Copy)]
enum Report {
    AddedPiece,
    Indexed,
    Complete,
    Failed,
    Status,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddedPiece {
    sector: u64,
    offset: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Failure {
    error: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Status {
    text: String,
}

/// Longest free text taken from the sealing system.
const MAX_TEXT: usize = 4096;

fn body<T: serde::de::DeserializeOwned>(req: &ApiRequest, example: &str) -> Result<T, ApiError> {
    serde_json::from_slice(&req.whole_body)
        .map_err(|e| ApiError::bad_request(format!("the body must be JSON like {example}: {e}")))
}

fn text(s: String, what: &str) -> Result<String, ApiError> {
    if s.len() > MAX_TEXT {
        return Err(ApiError::bad_request(format!(
            "{what} is {} bytes, more than {MAX_TEXT}",
            s.len()
        )));
    }
    Ok(s)
}

async fn report(ctx: Arc<ApiContext>, req: ApiRequest, what: Report) -> ApiResult {
    let uuid = uuid_param(&req, 0)?;
    let event = match what {
        Report::AddedPiece => {
            let b: AddedPiece = body(&req, r#"{"sector": 12, "offset": 0}"#)?;
            DealEvent::AddedPiece {
                sector_number: b.sector,
                offset: b.offset,
            }
        }
        Report::Indexed => DealEvent::IndexedAndAnnounced,
        Report::Complete => DealEvent::Complete,
        Report::Failed => {
            let b: Failure = body(&req, r#"{"error": "sector 12 failed: …"}"#)?;
            DealEvent::Failed(text(b.error, "the error")?)
        }
        Report::Status => {
            let b: Status = body(&req, r#"{"text": "PreCommit1"}"#)?;
            DealEvent::SealingStatus(text(b.text, "the status text")?)
        }
    };
    let deal = ctx
        .service
        .apply_event(uuid, event)
        .await
        .map_err(|e| ApiError::from_apply(uuid, e))?;
    tracing::info!(deal = %uuid, state = %deal.state(), "sealing system reported");
    if deal.is_done_with_staged_data() {
        ctx.transfers.drop_staged(uuid);
    }
    Ok(json(StatusCode::OK, &deal_json(&deal)))
}

async fn find(
    ctx: &ApiContext,
    uuid: DealUuid,
) -> Result<dealport_core::deal::DealRecord, ApiError> {
    ctx.service
        .store()
        .deal_by_uuid(uuid)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read deal {uuid}: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("no deal with UUID {uuid}")))
}
