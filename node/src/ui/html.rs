//! HTML pieces of the dashboard: escaping (every value a client or an operator wrote
//! goes through [`esc`]), the page frame, and formatting of times and sizes.

use std::fmt::Write;

/// `s` safe as HTML text and inside a double-quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the header says about the cluster on every page.
#[derive(Debug, Clone)]
pub struct Banner {
    /// This node's name in the lease (`[cluster] node_id`).
    pub node_id: String,
    pub this_node_serves: bool,
    /// The lease holder as the store names it, or why it is unknown.
    pub holder: Result<Option<String>, String>,
    pub generation: u64,
}

/// A whole page: header with navigation and the lease holder, then `body`.
/// `title` and everything in `banner` are escaped here; `body` must already be HTML.
pub fn page(title: &str, banner: &Banner, refresh_ms: u64, body: &str) -> String {
    let holder = match &banner.holder {
        Ok(Some(h)) => format!(
            "lease holder <b id=\"holder\">{}</b> (generation {})",
            esc(h),
            banner.generation
        ),
        Ok(None) => "no node holds the lease".to_owned(),
        Err(e) => format!("lease holder unknown: {}", esc(e)),
    };
    let role = if banner.this_node_serves {
        "this node holds the lease"
    } else {
        "this node is standing by (read-only view of the shared store)"
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · dealport</title>\
         <link rel=\"stylesheet\" href=\"/ui/assets/ui.css\">\
         <script src=\"/ui/assets/ui.js\" defer></script></head>\
         <body data-refresh-ms=\"{refresh_ms}\"><header><a class=\"brand\" href=\"/ui/\">dealport</a>\
         <nav><a href=\"/ui/\">Deals</a> <a href=\"/ui/node\">Node</a></nav>\
         <span class=\"cluster\">node <b id=\"node-id\">{node}</b>: {role}; {holder}</span>\
         <form method=\"post\" action=\"/ui/logout\"><button>Log out</button></form></header>\
         <main>{body}</main></body></html>",
        title = esc(title),
        node = esc(&banner.node_id),
    )
}

/// The login form (no frame: nothing is shown before a login). `message`: plain text.
pub fn login_page(message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\" id=\"login-error\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Log in · dealport</title><link rel=\"stylesheet\" href=\"/ui/assets/ui.css\">\
         </head><body><main class=\"login\"><h1>dealport</h1>{msg}\
         <form method=\"post\" action=\"/ui/login\">\
         <label>API token <input type=\"password\" name=\"token\" id=\"token\" \
         autocomplete=\"current-password\" autofocus></label>\
         <button type=\"submit\" id=\"login\">Log in</button></form>\
         <p class=\"hint\">The token is <code>[api] token</code> in the node's config.</p>\
         </main></body></html>"
    )
}

/// An error page inside the frame.
pub fn error_body(message: &str) -> String {
    format!("<p class=\"error\">{}</p>", esc(message))
}

/// `YYYY-MM-DD HH:MM:SS UTC` of unix milliseconds.
pub fn time_ms(ms: i64) -> String {
    // Go's time form without the fraction and the zone offset.
    let go = dealport_core::accept::go_time_utc(ms.saturating_mul(1_000_000));
    format!("{} UTC", go.get(..19).unwrap_or(&go))
}

pub fn time_nanos(nanos: i64) -> String {
    time_ms(nanos.div_euclid(1_000_000))
}

/// Bytes as B, KiB, MiB, GiB, TiB.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A two-column table of `(label, value HTML)` rows.
pub fn fields(rows: &[(&str, String)]) -> String {
    let mut out = String::from("<table class=\"fields\">");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>&'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        let p = login_page(Some("<b>no</b>"));
        assert!(p.contains("&lt;b&gt;no&lt;/b&gt;") && !p.contains("<b>no"));
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(time_ms(0), "1970-01-01 00:00:00 UTC");
    }
}
