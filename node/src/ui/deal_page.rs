//! `GET /ui/deal/<uuid>`: one deal: its proposal, the download's progress, the timeline
//! of checkpoints with times, sector and sealing status, the error, the raw record.

use std::{fmt::Write, sync::Arc};

use dealport_core::{
    dashboard::{download_per_mille, from_state_code, CHECKPOINTS},
    deal::DealRecord,
    wire::DealUuid,
};
use http::StatusCode;

use super::{banner, bounded, html, html::esc, unavailable, PageRequest, UiContext};
use crate::http::StreamResponse;

pub(super) async fn answer(ctx: Arc<UiContext>, req: PageRequest) -> StreamResponse {
    let title = "Deal";
    let raw = req.path.strip_prefix("deal/").unwrap_or("");
    let Ok(uuid) = DealUuid::parse(raw) else {
        let b = banner(&ctx, req.role).await;
        let body = html::error_body(&format!("{raw:?} is not a deal UUID"));
        return super::html(
            StatusCode::BAD_REQUEST,
            html::page(title, &b, ctx.refresh_ms, &body),
        );
    };
    let deal = match bounded(ctx.store.deal_by_uuid(uuid)).await {
        Ok(d) => d,
        Err(e) => return unavailable(&ctx, req.role, title, &e).await,
    };
    let b = banner(&ctx, req.role).await;
    let Some(deal) = deal else {
        let body = html::error_body(&format!("no deal with UUID {uuid}"));
        return super::html(
            StatusCode::NOT_FOUND,
            html::page(title, &b, ctx.refresh_ms, &body),
        );
    };
    let timeline = match bounded(ctx.store.deal_timeline(uuid)).await {
        Ok(t) => t,
        Err(e) => return unavailable(&ctx, req.role, title, &e).await,
    };
    let body = render(&deal, &timeline);
    super::html(
        StatusCode::OK,
        html::page(&format!("Deal {uuid}"), &b, ctx.refresh_ms, &body),
    )
}

fn render(d: &DealRecord, timeline: &[(u8, i64)]) -> String {
    let p = &d.params.client_deal_proposal.proposal;
    let opt = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), |v| v.to_string());
    let mut out = format!(
        "<h1>Deal <span id=\"deal-uuid\">{}</span></h1><div id=\"deal\" data-uuid=\"{}\">",
        d.uuid, d.uuid
    );
    let failed = if d.is_failed() { " failed" } else { "" };
    out.push_str(&html::fields(&[
        (
            "State",
            format!(
                "<span class=\"live-state{failed}\" id=\"state\">{}</span>",
                esc(&d.state().to_string())
            ),
        ),
        ("Accepted", html::time_nanos(d.created_at_unix_nanos)),
        ("Client", esc(&p.client.to_string())),
        ("Client PeerID", esc(&d.client_peer_id)),
        ("Provider", esc(&p.provider.to_string())),
        (
            "Label",
            format!(
                "<span id=\"label\">{}</span>",
                esc(&super::deals_page::label_text(&p.label))
            ),
        ),
        ("Proposal CID", esc(&d.proposal_cid.to_string())),
        (
            "Signed proposal CID",
            esc(&d.signed_proposal_cid.to_string()),
        ),
        ("Piece CID", esc(&p.piece_cid.to_string())),
        ("Piece size", html::bytes(p.piece_size)),
        ("Data root", esc(&d.params.deal_data_root.to_string())),
        (
            "Transfer",
            format!(
                "{} · {}",
                esc(&d.params.transfer.transfer_type),
                html::bytes(d.params.transfer.size)
            ),
        ),
        ("Verified", p.verified_deal.to_string()),
        ("Epochs", format!("{} → {}", p.start_epoch, p.end_epoch)),
        (
            "Price per epoch",
            esc(&p.storage_price_per_epoch.to_string()),
        ),
        ("Publish message", esc(&opt_cid(&d.publish_cid))),
        ("Chain deal ID", d.chain_deal_id.to_string()),
        (
            "Sector",
            format!("{} (offset {})", opt(d.sector_number), opt(d.sector_offset)),
        ),
        (
            "Sealing status",
            format!("<span id=\"sealing\">{}</span>", esc(&d.sealing_status)),
        ),
    ]));
    out.push_str(&progress_html(d));
    if let Some(e) = &d.error {
        let _ = write!(
            out,
            "<h2>Error</h2><p class=\"error\" id=\"deal-error\">{}</p>",
            esc(e)
        );
    }
    out.push_str(&timeline_html(d, timeline));
    let json = serde_json::to_string_pretty(&crate::api::deal_json(d)).unwrap_or_default();
    let _ = write!(
        out,
        "<h2>Stored record (JSON)</h2><pre id=\"raw\">{}</pre></div>",
        esc(&json)
    );
    out
}

fn opt_cid(c: &Option<dealport_core::wire::Cid>) -> String {
    c.as_ref()
        .map_or_else(|| "–".to_owned(), ToString::to_string)
}

/// The download's bar; shown (and refreshed) while the deal is `Accepted`.
fn progress_html(d: &DealRecord) -> String {
    let size = d.params.transfer.size;
    let per_mille = download_per_mille(d);
    let hidden = if per_mille.is_some() { "" } else { " hidden" };
    format!(
        "<div class=\"progress\" id=\"progress\"{hidden}><h2>Download</h2>\
         <progress id=\"progress-bar\" max=\"1000\" value=\"{}\"></progress> \
         <span id=\"bytes\">{}</span> of {}</div>",
        per_mille.unwrap_or(0),
        html::bytes(d.n_bytes_received),
        html::bytes(size)
    )
}

fn timeline_html(d: &DealRecord, timeline: &[(u8, i64)]) -> String {
    let mut out = String::from("<h2>Timeline</h2><ol class=\"timeline\" id=\"timeline\">");
    for cp in CHECKPOINTS {
        let at = timeline
            .iter()
            .find(|(code, _)| from_state_code(*code) == Some((cp, false)))
            .map(|(_, ms)| html::time_ms(*ms));
        let reached = cp <= d.checkpoint;
        let (class, when) = match (at, reached) {
            (Some(t), _) => ("reached", t),
            (None, true) => ("reached", "time not recorded".to_owned()),
            (None, false) => ("ahead", String::new()),
        };
        let _ = write!(
            out,
            "<li class=\"{class}\" data-checkpoint=\"{name}\"><b>{name}</b> <time>{when}</time></li>",
            name = cp.name()
        );
    }
    if d.is_failed() {
        let at = timeline
            .iter()
            .find(|(code, _)| from_state_code(*code).is_some_and(|(_, f)| f))
            .map_or_else(String::new, |(_, ms)| html::time_ms(*ms));
        let _ = write!(
            out,
            "<li class=\"failed\" data-checkpoint=\"Failed\"><b>Failed</b> <time>{at}</time></li>"
        );
    }
    out.push_str("</ol>");
    out
}
