//! The operator's dashboard at `/ui/`: server-rendered, read-only pages of the deals, one
//! deal and the node, and a small JSON endpoint the pages poll for live values.
//!
//! Behind the API token (`[api] token`; empty: the dashboard is off too): `POST
//! /ui/login` with the token sets an HttpOnly, SameSite=Strict cookie signed with the
//! token and expiring after `[ui] session_ttl_secs` (`core::dashboard::session`); the
//! token never travels in a URL. Pages carry a Content-Security-Policy that allows only
//! the dashboard's own script and style, and every client-written value is escaped
//! ([`html::esc`]). What to read and how pages are cut is decided in
//! `core::dashboard`; every store call is bounded by [`STORE_BOUND`].
//!
//! ```text
//! GET  /ui/assets/ui.css|ui.js   static, no login
//! GET  /ui/login  POST /ui/login  POST /ui/logout
//! GET  /ui/              deals (filters, search, counts)   -> 303 /ui/login without a session
//! GET  /ui/deal/<uuid>   one deal
//! GET  /ui/node          the node, the lease, the chart
//! GET  /ui/live?u=a,b    JSON: states and bytes of those deals, counts -> 401 without a session
//! ```
//!
//! Layer: HTTP pages above the store: uses `api` (JSON answers, body reading), `chain`,
//! `http`, `metrics`, `runtime`, `store`. The front door mounts it.

mod deal_page;
mod deals_page;
pub mod html;
mod live;
mod node_page;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use dealport_core::dashboard::session;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::{
    chain::ChainFactsSource,
    http::{BoxFuture, StreamResponse, StreamRoute},
    metrics::Metrics,
    store::{Store, StoreError},
};

/// Every dashboard path starts with this.
pub const PREFIX: &str = "/ui/";
/// Bound on each store read of a page.
pub const STORE_BOUND: Duration = Duration::from_secs(3);
/// Largest login form read.
const MAX_FORM: usize = 4096;

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// What the node page shows about this node (fixed at start).
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub peer_id: String,
    /// This node's name in the lease.
    pub node_id: String,
    pub listen: Vec<String>,
    pub announce: Vec<String>,
    pub http_listen: String,
    pub cluster: bool,
    pub version: String,
}

/// Settings and sources of the dashboard.
pub struct UiContext {
    /// The API token: the login and the session key. Empty: the dashboard is off.
    pub token: String,
    pub session_ttl: Duration,
    pub refresh_ms: u64,
    pub store: Arc<dyn Store>,
    pub chain: Arc<dyn ChainFactsSource>,
    pub metrics: Arc<Metrics>,
    pub node: NodeFacts,
    pub started: std::time::Instant,
}

/// This node's part in the lease, as the front door knows it now.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoleView {
    pub serving: bool,
    pub generation: u64,
}

/// The dashboard as the front door mounts it.
pub struct Ui {
    ctx: Arc<UiContext>,
}

/// One page request.
pub(crate) struct PageRequest {
    pub path: String,
    pub query: String,
    pub role: RoleView,
}

impl Ui {
    pub fn new(ctx: UiContext) -> Ui {
        Ui { ctx: Arc::new(ctx) }
    }

    pub fn is_ui_path(path: &str) -> bool {
        path == "/ui" || path.starts_with(PREFIX)
    }

    /// The answer to a request under `/ui` (`is_ui_path(path)` must hold).
    pub fn dispatch(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        role: RoleView,
    ) -> StreamRoute {
        let ctx = self.ctx.clone();
        let ready = |r: StreamResponse| -> StreamRoute {
            Box::new(move |_body| Box::pin(futures::future::ready(r)))
        };
        if ctx.token.is_empty() {
            return ready(text(
                StatusCode::NOT_FOUND,
                "the dashboard is off on this node: set [api] token in its config to turn it on",
            ));
        }
        let rel = path.strip_prefix(PREFIX).unwrap_or("");
        match (method.clone(), rel) {
            (Method::GET, "assets/ui.css") => return ready(asset("text/css; charset=utf-8", CSS)),
            (Method::GET, "assets/ui.js") => {
                return ready(asset("text/javascript; charset=utf-8", JS))
            }
            (Method::GET, "login") => return ready(html(StatusCode::OK, html::login_page(None))),
            (Method::POST, "login") => {
                return Box::new(move |body| Box::pin(login(ctx, body)));
            }
            (Method::POST, "logout") => return ready(logout()),
            _ => {}
        }
        if path == "/ui" {
            return ready(redirect("/ui/", None));
        }
        let now_ms = now_ms();
        let signed_in = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|h| session::cookie_value(h, session::COOKIE))
            .any(|c| session::valid(c, &ctx.token, now_ms));
        let req = PageRequest {
            path: rel.to_owned(),
            query: query.to_owned(),
            role,
        };
        if method != Method::GET {
            return ready(text(
                StatusCode::METHOD_NOT_ALLOWED,
                "the dashboard is read-only",
            ));
        }
        if rel == "live" {
            if !signed_in {
                return ready(
                    crate::api::ApiError::new(StatusCode::UNAUTHORIZED, "log in at /ui/login")
                        .into_response(),
                );
            }
            return Box::new(move |_| Box::pin(live::answer(ctx, req)));
        }
        if !signed_in {
            return ready(redirect("/ui/login", None));
        }
        let page: BoxFuture<StreamResponse> = match rel.split_once('/') {
            None if rel.is_empty() => Box::pin(deals_page::answer(ctx, req)),
            None if rel == "node" => Box::pin(node_page::answer(ctx, req)),
            Some(("deal", _)) => Box::pin(deal_page::answer(ctx, req)),
            _ => {
                return ready(html(
                    StatusCode::NOT_FOUND,
                    html::login_page(Some("no such page")),
                ))
            }
        };
        Box::new(move |_| page)
    }
}

async fn login(ctx: Arc<UiContext>, body: crate::http::BodyStream) -> StreamResponse {
    let form = match crate::runtime::timeout(
        crate::api::REQUEST_TIMEOUT,
        crate::api::read_whole(body, MAX_FORM),
    )
    .await
    {
        Some(Ok(b)) => b,
        _ => {
            return html(
                StatusCode::BAD_REQUEST,
                html::login_page(Some("the login form was not read")),
            )
        }
    };
    let given = dealport_core::dashboard::query_pairs(&String::from_utf8_lossy(&form))
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let ttl_ms = i64::try_from(ctx.session_ttl.as_millis()).unwrap_or(i64::MAX);
    match session::login(&given, &ctx.token, now_ms(), ttl_ms) {
        session::Login::Granted { cookie, .. } => {
            let c = format!(
                "{}={cookie}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
                session::COOKIE,
                ctx.session_ttl.as_secs().max(1)
            );
            redirect("/ui/", Some(c))
        }
        session::Login::Refused => {
            tracing::info!("dashboard login with a wrong token");
            html(
                StatusCode::UNAUTHORIZED,
                html::login_page(Some("wrong token")),
            )
        }
    }
}

fn logout() -> StreamResponse {
    let c = format!(
        "{}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        session::COOKIE
    );
    redirect("/ui/login", Some(c))
}

fn now_ms() -> i64 {
    crate::service::now_unix_nanos().div_euclid(1_000_000)
}

/// The header banner: this node and the lease holder, as the store says now.
pub(crate) async fn banner(ctx: &UiContext, role: RoleView) -> html::Banner {
    let lease = bounded(ctx.store.read_lease()).await;
    let (holder, generation) = match lease {
        Ok(read) => match read.row {
            Some(row) if row.is_live(read.now) => (Ok(row.holder), row.generation),
            Some(row) => (Ok(None), row.generation),
            None => (Ok(None), 0),
        },
        Err(e) => (Err(e.to_string()), role.generation),
    };
    html::Banner {
        node_id: ctx.node.node_id.clone(),
        this_node_serves: role.serving,
        holder,
        generation,
    }
}

/// A store read within [`STORE_BOUND`].
pub(crate) async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    crate::runtime::timeout(STORE_BOUND, f)
        .await
        .unwrap_or_else(|| {
            Err(StoreError::Backend(format!(
                "the store did not answer within {} s",
                STORE_BOUND.as_secs()
            )))
        })
}

/// Headers every dashboard answer carries: no caching, no framing, only our own script.
fn secure(r: &mut Response<Full<Bytes>>) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn with_type(code: StatusCode, ctype: &'static str, body: Bytes) -> StreamResponse {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    secure(&mut r);
    crate::http::boxed(r)
}

pub(crate) fn html(code: StatusCode, body: String) -> StreamResponse {
    with_type(code, "text/html; charset=utf-8", Bytes::from(body))
}

fn text(code: StatusCode, body: &'static str) -> StreamResponse {
    with_type(
        code,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn asset(ctype: &'static str, body: &'static str) -> StreamResponse {
    with_type(StatusCode::OK, ctype, Bytes::from_static(body.as_bytes()))
}

fn redirect(to: &'static str, cookie: Option<String>) -> StreamResponse {
    let mut r = with_type(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(v) = cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A page whose store read failed: the frame with the reason, 503.
pub(crate) async fn unavailable(
    ctx: &UiContext,
    role: RoleView,
    title: &str,
    e: &StoreError,
) -> StreamResponse {
    let b = banner(ctx, role).await;
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        html::page(
            title,
            &b,
            ctx.refresh_ms,
            &html::error_body(&format!("cannot read the store: {e}")),
        ),
    )
}
