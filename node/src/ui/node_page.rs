//! `GET /ui/node`: this node (PeerID, addresses, chain, uptime, limit hits, relays), the
//! lease, and a chart of the deals accepted and failed per hour over the last days.

use std::{fmt::Write, sync::Arc};

use dealport_core::dashboard::{chart_hours, hour_of, HourCount, CHART_HOURS};
use http::StatusCode;

use super::{banner, bounded, html, html::esc, PageRequest, UiContext};
use crate::http::StreamResponse;

pub(super) async fn answer(ctx: Arc<UiContext>, req: PageRequest) -> StreamResponse {
    let b = banner(&ctx, req.role).await;
    let now = crate::service::now_unix_nanos();
    let head = crate::runtime::timeout(super::STORE_BOUND, ctx.chain.head_epoch()).await;
    let head = match head {
        Some(Some(h)) => h.to_string(),
        Some(None) => "not known (offline chain, or Lotus did not answer)".to_owned(),
        None => "the chain did not answer in time".to_owned(),
    };
    let hours = bounded(ctx.store.hourly_counts(hour_of(now) - CHART_HOURS + 1)).await;
    let n = &ctx.node;
    let list = |v: &[String]| {
        if v.is_empty() {
            "–".to_owned()
        } else {
            v.iter()
                .map(|a| format!("<code>{}</code>", esc(a)))
                .collect::<Vec<_>>()
                .join("<br>")
        }
    };
    let metrics = ctx.metrics.encode();
    let limits = metric_values(&metrics, "dealport_limit_hits_total");
    let limits_html = if limits.is_empty() {
        "none".to_owned()
    } else {
        limits
            .iter()
            .map(|(l, v)| {
                let name = l.trim_start_matches("limit=").trim_matches('"');
                format!("{}: {v}", esc(name))
            })
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let relays = format!(
        "{} open, {} since start",
        metric_values(&metrics, "dealport_relay_active")
            .first()
            .map_or(0, |x| x.1),
        metric_values(&metrics, "dealport_relay_opened_total")
            .first()
            .map_or(0, |x| x.1),
    );
    let holder = match &b.holder {
        Ok(Some(h)) => format!("<span id=\"lease-holder\">{}</span>", esc(h)),
        Ok(None) => "<span id=\"lease-holder\">none</span>".to_owned(),
        Err(e) => esc(e),
    };
    let mut body = String::from("<h1>Node</h1>");
    body.push_str(&html::fields(&[
        (
            "PeerID",
            format!("<code id=\"peer-id\">{}</code>", esc(&n.peer_id)),
        ),
        ("Node", esc(&n.node_id)),
        ("Version", esc(&n.version)),
        (
            "Mode",
            if n.cluster {
                "cluster (PostgreSQL)"
            } else {
                "single node (sled)"
            }
            .to_owned(),
        ),
        ("Lease holder", holder),
        ("Lease generation", b.generation.to_string()),
        (
            "This node",
            if req.role.serving {
                "holds the lease, runs the libp2p host"
            } else {
                "standing by"
            }
            .to_owned(),
        ),
        ("libp2p listen (configured)", list(&n.listen)),
        ("libp2p announce", list(&n.announce)),
        (
            "HTTP listen (configured)",
            format!("<code>{}</code>", esc(&n.http_listen)),
        ),
        ("Chain", esc(&ctx.chain.describe())),
        ("Chain head", esc(&head)),
        ("Uptime", uptime(ctx.started.elapsed().as_secs())),
        ("Limit hits", limits_html),
        ("WebSocket relays", relays),
    ]));
    body.push_str("<h2>Deals accepted and failed per hour (last 3 days)</h2>");
    match hours {
        Ok(h) => body.push_str(&chart(&chart_hours(now, CHART_HOURS, &h))),
        Err(e) => body.push_str(&html::error_body(&format!("cannot read the store: {e}"))),
    }
    super::html(
        StatusCode::OK,
        html::page("Node", &b, ctx.refresh_ms, &body),
    )
}

fn uptime(secs: u64) -> String {
    format!(
        "{}d {}h {}m {}s",
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `(labels, value)` of each sample of metric `name` in OpenMetrics text.
fn metric_values(text: &str, name: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, v) = r.split_once('}')?;
                    (labels.to_owned(), v)
                }
                None if rest.starts_with(' ') => (String::new(), rest),
                None => return None,
            };
            let v: f64 = value.trim().split(' ').next()?.parse().ok()?;
            Some((labels, v as u64))
        })
        .collect()
}

/// Bars per hour: accepted (full height scale) with the failed part on top in red.
fn chart(rows: &[HourCount]) -> String {
    let (w, h, bar) = (rows.len() as u64 * 8, 120u64, 6u64);
    let max = rows.iter().map(|r| r.accepted).max().unwrap_or(0).max(1);
    let mut out = format!(
        "<svg id=\"chart\" class=\"chart\" viewBox=\"0 0 {w} {}\" width=\"{}\" height=\"{}\" \
         role=\"img\" aria-label=\"deals per hour\">",
        h + 14,
        w * 3 / 2,
        (h + 14) * 3 / 2
    );
    let total: u64 = rows.iter().map(|r| r.accepted).sum();
    let failed: u64 = rows.iter().map(|r| r.failed).sum();
    for (i, r) in rows.iter().enumerate() {
        let x = i as u64 * 8 + 1;
        let ah = r.accepted * h / max;
        let fh = r.failed.min(r.accepted) * h / max;
        let when = html::time_ms(r.hour.saturating_mul(3_600_000));
        let _ = write!(
            out,
            "<g><title>{when}: {} accepted, {} failed</title>\
             <rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{ah}\" fill=\"#3b82f6\"></rect>\
             <rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{fh}\" fill=\"#dc2626\"></rect></g>",
            r.accepted,
            r.failed,
            h - ah,
            h - fh,
        );
    }
    let _ = write!(
        out,
        "<text x=\"0\" y=\"{}\" font-size=\"9\">72 h ago</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\">now</text></svg>\
         <p id=\"chart-totals\">{total} accepted, {failed} of them failed (blue: accepted, red: failed; \
         peak {max} per hour)</p>",
        h + 12,
        w,
        h + 12
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_samples_are_read_by_name() {
        let text = "# TYPE x counter\ndealport_limit_hits_total{limit=\"a\"} 3\n\
                    dealport_limit_hits_total{limit=\"b\"} 1.0\ndealport_relay_active 2\n\
                    dealport_relay_active_x 9\n";
        assert_eq!(
            metric_values(text, "dealport_limit_hits_total"),
            vec![("limit=\"a\"".into(), 3), ("limit=\"b\"".into(), 1)]
        );
        assert_eq!(
            metric_values(text, "dealport_relay_active"),
            vec![(String::new(), 2)]
        );
    }
}
