//! MK12 over plain HTTP, as Curio serves it (`market/mk12/http/http.go`):
//! `POST /market/mk12/store`, `GET /market/mk12/status`, `GET /market/mk12/ask`, each a
//! CBOR body in and a CBOR body out, decided by the same service as the libp2p streams.
//!
//! Differences from the libp2p twins, all Curio's: the client's PeerID is unknown
//! (stored empty); an undecodable body gets 400 with the decode error instead of a
//! silent close; an ask that cannot be answered is HTTP 500. Requests are limited per
//! client IP (429 past the limit).
//!
//! Layer: an HTTP route set, above the service: uses `service` and `http`.
use std::{net::IpAddr, sync::Mutex, time::Instant};

use bytes::Bytes;
use dealport_core::{
    rate_limit::RateLimiter,
    wire::{AskRequest, AskResponse, Cbor, DealParams, DealStatusRequest},
};
use http::{header::CONTENT_TYPE, HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;

use crate::{
    http::{BoxFuture, HttpResponse},
    service::DealService,
};

pub const STORE_PATH: &str = "/market/mk12/store";
pub const STATUS_PATH: &str = "/market/mk12/status";
pub const ASK_PATH: &str = "/market/mk12/ask";
/// Curio's body limits: 4 MiB for a proposal, 1 MiB for status and ask.
pub const STORE_BODY_LIMIT: usize = 4 << 20;
pub const SMALL_BODY_LIMIT: usize = 1 << 20;
const CBOR: &str = "application/cbor";

/// Is `path` one of the MK12 routes?
pub fn is_mk12_path(path: &str) -> bool {
    matches!(path, STORE_PATH | STATUS_PATH | ASK_PATH)
}

/// What a node that does not run the libp2p host (a standby) answers on the MK12 routes.
pub fn standby_response() -> HttpResponse {
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node is standing by: the MK12 routes are served by the node that runs the libp2p host; retry shortly".into(),
    )
}

/// The three routes, with their per-IP limiter.
pub struct Mk12Http {
    service: DealService,
    limiter: Mutex<RateLimiter>,
    started: Instant,
}

impl Mk12Http {
    /// `per_second` requests per client IP (Curio: 50), bursts of the same size.
    pub fn new(service: DealService, per_second: u32) -> Self {
        Mk12Http {
            service,
            limiter: Mutex::new(RateLimiter::new(per_second, per_second, 100_000)),
            started: Instant::now(),
        }
    }

    /// `None` when the path is not an MK12 route.
    pub fn route(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        client: IpAddr,
    ) -> Option<BoxFuture<HttpResponse>> {
        let (expected, limit) = match path {
            STORE_PATH => (Method::POST, STORE_BODY_LIMIT),
            STATUS_PATH | ASK_PATH => (Method::GET, SMALL_BODY_LIMIT),
            _ => return None,
        };
        let refuse = |code, reason: String| -> Option<BoxFuture<HttpResponse>> {
            let r = plain(code, reason);
            Some(Box::pin(async move { r }))
        };
        if *method != expected {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} takes {expected}"),
            );
        }
        let now = self.started.elapsed().as_nanos() as u64;
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(client, now);
        if !allowed {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests from this address, slow down".into(),
            );
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let is_cbor = content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(CBOR));
        if !is_cbor {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("Content-Type must be {CBOR}, got {content_type:?}"),
            );
        }
        if body.len() > limit {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {limit} bytes"),
            );
        }
        let service = self.service.clone();
        Some(match path {
            STORE_PATH => Box::pin(store(service, body)),
            STATUS_PATH => Box::pin(status(service, body)),
            _ => Box::pin(ask(service, body)),
        })
    }
}

async fn store(service: DealService, body: Bytes) -> HttpResponse {
    if let Err(e) = DealParams::from_cbor(&body) {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("undecodable DealParams: {e}"),
        );
    }
    match service
        .propose(STORE_PATH, body.to_vec(), String::new())
        .await
    {
        Some(r) => cbor(r.to_cbor()),
        None => plain(StatusCode::BAD_REQUEST, "undecodable DealParams".into()),
    }
}

async fn status(service: DealService, body: Bytes) -> HttpResponse {
    if let Err(e) = DealStatusRequest::from_cbor(&body) {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("undecodable DealStatusRequest: {e}"),
        );
    }
    match service.status(&body).await {
        Some(r) => cbor(r.to_cbor()),
        None => plain(
            StatusCode::BAD_REQUEST,
            "undecodable DealStatusRequest".into(),
        ),
    }
}

async fn ask(service: DealService, body: Bytes) -> HttpResponse {
    let req = match AskRequest::from_cbor(&body) {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("undecodable AskRequest: {e}"),
            )
        }
    };
    match service.ask_response(&req) {
        AskResponse { ask: Some(a) } => cbor(AskResponse { ask: Some(a) }.to_cbor()),
        // Curio answers an ask it cannot give with HTTP 500 here (libp2p: `Ask: null`).
        AskResponse { ask: None } => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no signed ask for miner {}", req.miner),
        ),
    }
}

fn cbor(bytes: Vec<u8>) -> HttpResponse {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, CBOR)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default()
}

fn plain(code: StatusCode, reason: String) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(reason + "\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
