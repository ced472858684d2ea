//! `GET /ui/`: the deals, a page at a time from the store's dashboard index, with the
//! counts per checkpoint, the filters and the search.

use std::{fmt::Write, sync::Arc};

use dealport_core::{
    dashboard::{
        list_query_string, parse_list_request, state_code, Cursor, DealQuery, ListRequest,
        SearchKey, StateCounts, StateFilter, CHECKPOINTS,
    },
    deal::DealRecord,
    wire::DealLabel,
};
use http::StatusCode;

use super::{banner, bounded, html, html::esc, unavailable, PageRequest, UiContext};
use crate::{http::StreamResponse, store::StoreError};

/// Most deals a search shows (a piece CID may be in several deals).
const SEARCH_LIMIT: usize = 50;

pub(super) async fn answer(ctx: Arc<UiContext>, req: PageRequest) -> StreamResponse {
    let title = "Deals";
    let request = parse_list_request(&req.query);
    let (deals, query, note) = match &request {
        Err(e) => (Ok(Vec::new()), DealQuery::default(), Some(e.clone())),
        Ok(ListRequest::List(q)) => (bounded(ctx.store.query_deals(q)).await, q.clone(), None),
        Ok(ListRequest::Search(key)) => (search(&ctx, key).await, DealQuery::default(), None),
    };
    let deals = match deals {
        Ok(d) => d,
        Err(e) => return unavailable(&ctx, req.role, title, &e).await,
    };
    let counts = bounded(ctx.store.state_counts()).await;
    let counts = match counts {
        Ok(c) => c,
        Err(e) => return unavailable(&ctx, req.role, title, &e).await,
    };
    let mut body = String::new();
    body.push_str(&counts_html(&counts));
    body.push_str(&filters_html(&query, &req.query));
    if let Some(n) = &note {
        body.push_str(&html::error_body(n));
    }
    let searching = matches!(request, Ok(ListRequest::Search(_)));
    if searching && deals.is_empty() {
        body.push_str("<p id=\"no-deals\">No deal matches that search.</p>");
    } else if deals.is_empty() {
        body.push_str("<p id=\"no-deals\">No deals here.</p>");
    } else {
        body.push_str(&table_html(&deals));
    }
    if !searching && deals.len() == query.limit {
        if let Some(last) = deals.last() {
            let qs = list_query_string(&query, Some(&Cursor::of(last)));
            let _ = write!(
                body,
                "<p class=\"pager\"><a id=\"next-page\" href=\"/ui/?{}\">Next page →</a></p>",
                esc(&qs)
            );
        }
    }
    if query.after.is_some() {
        let first = list_query_string(&query, None);
        let _ = write!(
            body,
            "<p class=\"pager\"><a href=\"/ui/?{}\">← First page</a></p>",
            esc(&first)
        );
    }
    let b = banner(&ctx, req.role).await;
    let code = if note.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    super::html(code, html::page(title, &b, ctx.refresh_ms, &body))
}

/// A search by UUID, or by a CID that may be either proposal CID or a piece CID: direct
/// index lookups only.
async fn search(ctx: &UiContext, key: &SearchKey) -> Result<Vec<DealRecord>, StoreError> {
    let s = &ctx.store;
    Ok(match key {
        SearchKey::Uuid(u) => bounded(s.deal_by_uuid(*u)).await?.into_iter().collect(),
        SearchKey::Cid(c) => {
            let mut out: Vec<DealRecord> = Vec::new();
            out.extend(bounded(s.deal_by_proposal_cid(c)).await?);
            out.extend(bounded(s.deal_by_signed_proposal_cid(c)).await?);
            out.extend(bounded(s.deals_by_piece_cid(c, SEARCH_LIMIT)).await?);
            let mut seen = std::collections::HashSet::new();
            out.retain(|d| seen.insert(d.uuid));
            out
        }
    })
}

fn counts_html(c: &StateCounts) -> String {
    let mut out =
        String::from("<section class=\"counts\" id=\"counts\"><h2>Deals by checkpoint</h2><ul>");
    for cp in CHECKPOINTS {
        let (ok, failed) = c.at(cp);
        let _ = write!(
            out,
            "<li><a href=\"/ui/?state={name}\">{name}</a> <b data-count=\"{code}\">{ok}</b>\
             <span class=\"failed\" title=\"failed after reaching {name}\"> + <span \
             data-count=\"{fcode}\">{failed}</span> failed</span></li>",
            name = cp.name(),
            code = state_code(cp, false),
            fcode = state_code(cp, true),
        );
    }
    let failed: u64 = CHECKPOINTS.iter().map(|cp| c.at(*cp).1).sum();
    let _ = write!(
        out,
        "</ul><p>All: <b id=\"count-total\">{}</b> · <a href=\"/ui/?state=in-progress\">in \
         progress</a> · <a href=\"/ui/?state=done\">done</a> · <a href=\"/ui/?state=failed\">\
         failed</a> <b>{failed}</b></p></section>",
        c.total()
    );
    out
}

fn filters_html(q: &DealQuery, raw_query: &str) -> String {
    let search = dealport_core::dashboard::query_pairs(raw_query)
        .into_iter()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let mut states = String::new();
    let options = [
        StateFilter::Any,
        StateFilter::InProgress,
        StateFilter::Done,
        StateFilter::Failed,
    ]
    .into_iter()
    .chain(CHECKPOINTS.into_iter().map(StateFilter::At));
    for f in options {
        let label = match f {
            StateFilter::Any => "any state",
            StateFilter::InProgress => "in progress",
            StateFilter::Done => "done",
            StateFilter::Failed => "failed",
            StateFilter::At(c) => c.name(),
        };
        let sel = if f == q.state { " selected" } else { "" };
        let _ = write!(
            states,
            "<option value=\"{}\"{sel}>{label}</option>",
            f.as_param()
        );
    }
    let (newest, oldest) = match q.order {
        dealport_core::dashboard::Order::Newest => (" selected", ""),
        dealport_core::dashboard::Order::Oldest => ("", " selected"),
    };
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/ui/\">\
         <label>State <select name=\"state\" id=\"f-state\">{states}</select></label>\
         <label>Client <input name=\"client\" id=\"f-client\" placeholder=\"f1…\" value=\"{client}\"></label>\
         <label>Order <select name=\"order\" id=\"f-order\"><option value=\"newest\"{newest}>newest first</option>\
         <option value=\"oldest\"{oldest}>oldest first</option></select></label>\
         <button type=\"submit\" id=\"f-apply\">Filter</button></form>\
         <form class=\"search\" method=\"get\" action=\"/ui/\"><input name=\"q\" id=\"search\" \
         placeholder=\"deal UUID, proposal CID or piece CID\" value=\"{search}\">\
         <button type=\"submit\" id=\"search-go\">Search</button></form>",
        client = esc(q.client.as_deref().unwrap_or("")),
        search = esc(&search),
    )
}

/// A label as text: UTF-8 shown as is (escaped), bytes as hex.
pub(super) fn label_text(l: &DealLabel) -> String {
    match l {
        DealLabel::Text(s) => s.clone(),
        DealLabel::Bytes(b) => format!("0x{}", hex::encode(b)),
    }
}

fn table_html(deals: &[DealRecord]) -> String {
    let mut out = String::from(
        "<table class=\"deals\" id=\"deals\"><thead><tr><th>Deal</th><th>Accepted</th>\
         <th>State</th><th>Client</th><th>Piece CID</th><th>Piece size</th><th>Received</th>\
         <th>Label</th></tr></thead><tbody>",
    );
    for d in deals {
        let p = &d.params.client_deal_proposal.proposal;
        let failed = if d.is_failed() { " failed" } else { "" };
        let _ = write!(
            out,
            "<tr data-uuid=\"{uuid}\"><td><a class=\"deal-link\" href=\"/ui/deal/{uuid}\">{uuid}</a></td>\
             <td>{at}</td><td class=\"live-state{failed}\">{state}</td><td>{client}</td>\
             <td class=\"cid\">{piece}</td><td>{size}</td><td class=\"live-bytes\">{recv}</td>\
             <td class=\"label\">{label}</td></tr>",
            uuid = d.uuid,
            at = html::time_nanos(d.created_at_unix_nanos),
            state = esc(&d.state().to_string()),
            client = esc(&p.client.to_string()),
            piece = esc(&p.piece_cid.to_string()),
            size = html::bytes(p.piece_size),
            recv = html::bytes(d.n_bytes_received),
            label = esc(&label_text(&p.label)),
        );
    }
    out.push_str("</tbody></table>");
    out
}
