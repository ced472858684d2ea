//! The HTTP API under `/api/v1/`: deal state, offline import, the sealing hand-off.
//!
//! Behind a bearer token from the config (`[api] token`; empty: the API is off and every
//! `/api/` path answers 404 with a sentence). Errors are JSON `{"error": "…"}`. Each
//! route says whether only the lease holder may run it (a standby answers 503) and how it
//! takes its body: small JSON bodies are read whole (at most [`MAX_JSON_BODY`], within
//! [`REQUEST_TIMEOUT`]); streaming routes read their body chunk by chunk, each chunk
//! within the route's idle bound.
//!
//! Adding routes from another file is one line in [`routes`].
//!
//! Layer: HTTP routes, above execution: uses `exec`, `service`, `store`, `http`,
//! `runtime`; owns the one mapping of execution and lifecycle errors to HTTP.

mod deals;
pub mod files;
mod sealing;

pub use deals::deal_json;

use std::{net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use dealport_core::{mac::constant_time_eq, wire::DealUuid};
use futures::{future, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::{
    exec::{ExecError, Transfers},
    http::{BodyStream, BoxFuture, ResponseBody, StreamResponse, StreamRoute},
    service::{ApplyError, DealService},
    store::StoreError,
};

/// Every API path starts with this.
pub const PREFIX: &str = "/api/v1/";
/// Largest body a non-streaming route reads.
pub const MAX_JSON_BODY: usize = 1 << 20;
/// Bound on a non-streaming request: reading its body and answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API says when no token is configured.
pub const API_OFF: &str =
    "the HTTP API is off on this node: set [api] token in its config to turn it on";
/// What a standby says on a route only the lease holder runs.
pub const STANDBY: &str =
    "this node is standing by: deal execution runs on the node that holds the lease; retry shortly";

/// What every handler can use.
pub struct ApiContext {
    pub service: DealService,
    /// Staging files, transfers in flight, the `[transfer]` settings.
    pub transfers: Arc<Transfers>,
}

/// One request as a handler sees it.
pub struct ApiRequest {
    pub method: Method,
    /// The path's `{}` segments, in order.
    pub params: Vec<String>,
    pub headers: HeaderMap,
    /// Streaming routes: the body as it arrives. Others: empty (see `json`).
    pub body: BodyStream,
    /// Non-streaming routes: the whole body (at most [`MAX_JSON_BODY`]).
    pub whole_body: Bytes,
}

/// A failed request: its status code and a sentence, answered as `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn into_response(self) -> StreamResponse {
        json(self.status, &serde_json::json!({ "error": self.message }))
    }

    /// [`ApiError::into_response`] for a read-only route: a 405 says `Allow: GET, HEAD`.
    pub fn into_read_only_response(self) -> StreamResponse {
        let mut r = self.into_response();
        if r.status() == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

/// A read-only route's method: whether it is `HEAD` (`GET` otherwise); any other method
/// is a 405 naming `route`.
pub fn get_or_head(method: &Method, route: &str) -> Result<bool, ApiError> {
    match *method {
        Method::GET => Ok(false),
        Method::HEAD => Ok(true),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{route} takes GET or HEAD, not {method}"),
        )),
    }
}

/// The one mapping of a lifecycle event's failure to HTTP.
impl ApiError {
    pub fn from_apply(uuid: DealUuid, e: ApplyError) -> ApiError {
        match e {
            ApplyError::Transition(..) => ApiError::conflict(e.to_string()),
            ApplyError::NotHolder => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, STANDBY),
            ApplyError::Store(StoreError::NoSuchDeal(u)) => {
                ApiError::not_found(format!("no deal with UUID {u}"))
            }
            e => ApiError::internal(format!("cannot record deal {uuid}: {e}")),
        }
    }
}

/// The executor's failures as HTTP: what the client did wrong is 4xx, ours 5xx.
impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> ApiError {
        match e {
            ExecError::NoSuchDeal(_) => ApiError::not_found(e.to_string()),
            ExecError::Conflict(m) => ApiError::conflict(m),
            ExecError::BadUpload(m) => ApiError::bad_request(m),
            ExecError::Stalled(m) => ApiError::new(StatusCode::REQUEST_TIMEOUT, m),
            ExecError::DataRejected(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            ExecError::Internal(m) => ApiError::internal(m),
            ExecError::Apply(uuid, e) => ApiError::from_apply(uuid, e),
        }
    }
}

pub type ApiResult = Result<StreamResponse, ApiError>;
pub type Handler = fn(Arc<ApiContext>, ApiRequest) -> BoxFuture<ApiResult>;

/// How a route takes its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Read whole before the handler runs (at most [`MAX_JSON_BODY`]); the whole request
    /// is bounded by [`REQUEST_TIMEOUT`].
    Whole,
    /// Handed to the handler as a stream; the handler bounds its own time.
    Stream,
}

/// One route: `path` is relative to [`PREFIX`], `{}` matches one segment.
#[derive(Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// Only the lease holder runs it (deal writes); a standby answers 503.
    pub leader_only: bool,
    pub body: Body,
    pub handler: Handler,
}

/// Every route of the API.
pub fn routes() -> Vec<Route> {
    let mut r = Vec::new();
    r.extend(deals::routes());
    r.extend(sealing::routes());
    r
}

/// The API as the HTTP server mounts it.
pub struct Api {
    token: String,
    context: Arc<ApiContext>,
    routes: Vec<Route>,
}

impl Api {
    /// `token` empty: the API is off.
    pub fn new(token: String, context: ApiContext) -> Api {
        Api {
            token,
            context: Arc::new(context),
            routes: routes(),
        }
    }

    /// Is `path` one of the API's?
    pub fn is_api_path(path: &str) -> bool {
        path == PREFIX.trim_end_matches('/') || path.starts_with(PREFIX)
    }

    /// The handler for a request under [`PREFIX`] (`is_api_path(path)` must hold).
    /// `leader`: whether this node holds the lease now.
    pub fn dispatch(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        client_ip: IpAddr,
        leader: bool,
    ) -> StreamRoute {
        let answer = |e: ApiError| -> StreamRoute {
            Box::new(move |_body| Box::pin(future::ready(e.into_response())))
        };
        if self.token.is_empty() {
            return answer(ApiError::not_found(API_OFF));
        }
        if !authorized(headers, &self.token) {
            tracing::info!(%client_ip, %path, "API request without the right bearer token");
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (send `Authorization: Bearer <[api] token>`)",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Box::new(move |_body| Box::pin(future::ready(r)));
        }
        let rel = path.strip_prefix(PREFIX).unwrap_or("");
        let mut path_matched = false;
        for route in &self.routes {
            let Some(params) = match_path(route.path, rel) else {
                continue;
            };
            path_matched = true;
            if route.method != *method {
                continue;
            }
            if route.leader_only && !leader {
                return answer(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, STANDBY));
            }
            let (route, ctx, headers, method) = (
                route.clone(),
                self.context.clone(),
                headers.clone(),
                method.clone(),
            );
            return Box::new(move |body| Box::pin(run(route, ctx, method, params, headers, body)));
        }
        if path_matched {
            answer(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} does not take {method}"),
            ))
        } else {
            answer(ApiError::not_found(format!("no API route {method} {path}")))
        }
    }
}

async fn run(
    route: Route,
    ctx: Arc<ApiContext>,
    method: Method,
    params: Vec<String>,
    headers: HeaderMap,
    body: BodyStream,
) -> StreamResponse {
    let result = match route.body {
        Body::Stream => {
            let req = ApiRequest {
                method,
                params,
                headers,
                body,
                whole_body: Bytes::new(),
            };
            (route.handler)(ctx, req).await
        }
        Body::Whole => {
            let work = async move {
                let whole_body = read_whole(body, MAX_JSON_BODY).await?;
                let req = ApiRequest {
                    method,
                    params,
                    headers,
                    body: Box::pin(futures::stream::empty()),
                    whole_body,
                };
                (route.handler)(ctx, req).await
            };
            match crate::runtime::timeout(REQUEST_TIMEOUT, work).await {
                Some(r) => r,
                None => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the request was not read and answered within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    ),
                )),
            }
        }
    };
    result.unwrap_or_else(ApiError::into_response)
}

pub(crate) async fn read_whole(mut body: BodyStream, limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// `pattern` against the relative path: the `{}` segments, or `None`.
fn match_path(pattern: &str, rel: &str) -> Option<Vec<String>> {
    let mut want = pattern.split('/');
    let mut got = rel.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some("{}"), Some(seg)) if !seg.is_empty() => params.push(seg.to_owned()),
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
    else {
        return false;
    };
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> StreamResponse {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    crate::http::boxed(r)
}

/// How [`file_response_with`] labels a file's bytes.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub content_type: &'static str,
    /// Sent as `ETag` (quoted) when set.
    pub etag: Option<String>,
    /// A `HEAD` request: the headers of the `GET` answer, no body (nothing is read).
    pub head: bool,
    /// Zero bytes follow the file up to this length in all (0: the file alone).
    pub pad_to: u64,
}

impl Default for FileMeta {
    fn default() -> Self {
        FileMeta {
            content_type: "application/octet-stream",
            etag: None,
            head: false,
            pad_to: 0,
        }
    }
}

/// A response streaming `file` (e.g. a staged piece), whole or the one byte range that
/// `range` (the request's `Range` header) asks for (206; 416 when nothing fits). The file
/// is read in 1 MiB chunks on the runtime's blocking pool.
pub fn file_response(
    runtime: Arc<dyn crate::runtime::Runtime>,
    file: std::fs::File,
    range: Option<&HeaderValue>,
) -> Result<StreamResponse, ApiError> {
    file_response_with(runtime, file, range, &FileMeta::default())
}

/// [`file_response`] of `file` followed by zero bytes up to `pad_to` bytes in all (a
/// piece handed to a sealer: the data, then zeros up to the unpadded piece size).
pub fn file_response_padded(
    runtime: Arc<dyn crate::runtime::Runtime>,
    file: std::fs::File,
    pad_to: u64,
    range: Option<&HeaderValue>,
) -> Result<StreamResponse, ApiError> {
    let meta = FileMeta {
        pad_to,
        ..FileMeta::default()
    };
    file_response_with(runtime, file, range, &meta)
}

/// The one file response of the node (the sealing hand-off, the piece URLs and
/// `/piece/` answer with it): content type, `ETag`, `HEAD` and zero padding from `meta`.
pub fn file_response_with(
    runtime: Arc<dyn crate::runtime::Runtime>,
    mut file: std::fs::File,
    range: Option<&HeaderValue>,
    meta: &FileMeta,
) -> Result<StreamResponse, ApiError> {
    let file_len = file
        .metadata()
        .map_err(|e| ApiError::internal(format!("cannot read the file's length: {e}")))?
        .len();
    let len = file_len.max(meta.pad_to);
    let ask = files::range_ask(range.and_then(|v| v.to_str().ok()), len);
    let (status, start, count) = match ask {
        files::RangeAsk::Whole => (StatusCode::OK, 0, len),
        files::RangeAsk::Part { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        files::RangeAsk::Unsatisfiable => {
            let mut r = json(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &serde_json::json!({"error": format!("the range is outside the {len} bytes")}),
            );
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::try_from(format!("bytes */{len}")).expect("ascii"),
            );
            return Ok(r);
        }
    };
    let body: ResponseBody = if meta.head {
        use http_body_util::BodyExt;
        http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed()
    } else {
        if start > 0 && start < file_len {
            files::seek_to(&mut file, start)
                .map_err(|e| ApiError::internal(format!("cannot seek in the file: {e}")))?;
        }
        let from_file = count.min(file_len.saturating_sub(start));
        let chunks = files::read_chunks_limited(runtime, file, from_file)
            .chain(files::zeros(count - from_file));
        http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(
            chunks.map(|c| c.map(hyper::body::Frame::data)),
        ))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(meta.content_type),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(tag) = meta
        .etag
        .as_ref()
        .and_then(|t| HeaderValue::try_from(format!("\"{t}\"")).ok())
    {
        h.insert(header::ETAG, tag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{len}", start + count - 1);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::try_from(value).expect("ascii"),
        );
    }
    Ok(r)
}

/// The deal UUID in path segment `i`, or a 400 naming the value.
pub fn uuid_param(req: &ApiRequest, i: usize) -> Result<dealport_core::wire::DealUuid, ApiError> {
    let s = req.params.get(i).map(String::as_str).unwrap_or("");
    dealport_core::wire::DealUuid::parse(s)
        .map_err(|e| ApiError::bad_request(format!("{s:?} is not a deal UUID: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_by_segment() {
        assert_eq!(
            match_path("deals/{}", "deals/abc"),
            Some(vec!["abc".into()])
        );
        assert_eq!(
            match_path("deals/{}/data", "deals/abc/data"),
            Some(vec!["abc".into()])
        );
        assert_eq!(match_path("deals/{}", "deals/"), None);
        assert_eq!(match_path("deals/{}", "deals/a/b"), None);
        assert_eq!(match_path("deals", "deals"), Some(vec![]));
    }

    struct ThreadRuntime;

    impl crate::runtime::Runtime for ThreadRuntime {
        fn spawn(&self, fut: crate::runtime::BoxTask) {
            std::thread::spawn(move || futures::executor::block_on(fut));
        }
        fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send>) {
            std::thread::spawn(f);
        }
    }

    #[test]
    fn a_file_response_streams_the_whole_file() {
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("piece");
        let bytes: Vec<u8> = (0..(3 * files::CHUNK + 17)).map(|i| i as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let open = || std::fs::File::open(&path).unwrap();
        let r = file_response(Arc::new(ThreadRuntime), open(), None).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], bytes.len().to_string());
        let body = futures::executor::block_on(r.into_body().collect()).unwrap();
        assert!(body.to_bytes() == bytes);

        // A range across chunk boundaries, from the middle.
        let (start, end) = (files::CHUNK as u64 - 5, 2 * files::CHUNK as u64 + 9);
        let range = HeaderValue::try_from(format!("bytes={start}-{end}")).unwrap();
        let r = file_response(Arc::new(ThreadRuntime), open(), Some(&range)).unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            r.headers()[header::CONTENT_RANGE],
            format!("bytes {start}-{end}/{}", bytes.len())
        );
        assert_eq!(
            r.headers()[header::CONTENT_LENGTH],
            (end - start + 1).to_string()
        );
        let body = futures::executor::block_on(r.into_body().collect()).unwrap();
        assert!(body.to_bytes() == bytes[start as usize..=end as usize]);

        let past = HeaderValue::try_from(format!("bytes={}-", bytes.len())).unwrap();
        let r = file_response(Arc::new(ThreadRuntime), open(), Some(&past)).unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            r.headers()[header::CONTENT_RANGE],
            format!("bytes */{}", bytes.len())
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "t0k"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0k"),
        );
        assert!(authorized(&h, "t0k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic t0k"));
        assert!(!authorized(&h, "t0k"));
    }
}
