//! `GET /ui/live?u=<uuid>,<uuid>…`: what the open page shows that changes (each deal's
//! state, bytes received, download per mille, sealing status, error; the counts per
//! state), as JSON for the page's script. At most [`MAX_DEALS`] point reads.

use std::sync::Arc;

use dealport_core::{
    dashboard::{download_per_mille, query_pairs},
    wire::DealUuid,
};
use http::StatusCode;
use serde_json::json;

use super::{bounded, PageRequest, UiContext};
use crate::{api::ApiError, http::StreamResponse};

/// Most deals one poll asks about (a page's worth).
pub const MAX_DEALS: usize = dealport_core::dashboard::MAX_PAGE;

pub(super) async fn answer(ctx: Arc<UiContext>, req: PageRequest) -> StreamResponse {
    match read(&ctx, &req.query).await {
        Ok(v) => crate::api::json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn read(ctx: &UiContext, query: &str) -> Result<serde_json::Value, ApiError> {
    let asked = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "u")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let uuids = asked
        .split(',')
        .filter(|s| !s.is_empty())
        .take(MAX_DEALS)
        .map(|s| {
            DealUuid::parse(s)
                .map_err(|_| ApiError::bad_request(format!("{s:?} is not a deal UUID")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let unavailable =
        |e: crate::store::StoreError| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let mut deals = Vec::with_capacity(uuids.len());
    for u in uuids {
        if let Some(d) = bounded(ctx.store.deal_by_uuid(u))
            .await
            .map_err(unavailable)?
        {
            deals.push(json!({
                "uuid": d.uuid.to_string(),
                "state": d.state().to_string(),
                "failed": d.is_failed(),
                "bytes": d.n_bytes_received,
                "bytes_text": super::html::bytes(d.n_bytes_received),
                "per_mille": download_per_mille(&d),
                "sealing_status": d.sealing_status,
                "error": d.error,
            }));
        }
    }
    let counts = bounded(ctx.store.state_counts())
        .await
        .map_err(unavailable)?;
    let counts: serde_json::Map<String, serde_json::Value> = counts
        .0
        .iter()
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    Ok(json!({ "deals": deals, "counts": counts }))
}
