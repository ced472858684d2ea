//! The piece URLs lotus-miner fetches deals' data from: `GET /piece/<uuid>/<token>`,
//! no headers needed (lotus-miner's `http` reader sends a plain GET). Owns the
//! capability tokens: random (256 bits), one deal each, expiring; a wrong, foreign or
//! expired token is a 404 that says nothing more. The body is the staged data followed
//! by zeros up to the unpadded piece size; one `Range` is served (206/416) through the
//! API's file response. Uses `exec::staging`, `api::file_response_padded`, `runtime`.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dealport_core::wire::DealUuid;
use futures::future;
use http::{HeaderMap, Method, StatusCode};

use crate::{
    api::{file_response_padded, ApiError},
    exec::staging::Staging,
    http::StreamRoute,
    runtime::Runtime,
};

/// Every piece URL's path starts with this.
pub const PREFIX: &str = "/piece/";
/// Tokens kept at most; past this the ones nearest to expiry go first.
const MAX_GRANTS: usize = 4096;
/// The one answer to a URL that does not work (whatever the reason).
const NOT_FOUND: &str = "no such piece";

#[derive(Debug, Clone, Copy)]
struct Grant {
    uuid: DealUuid,
    expires: Instant,
    /// Bytes served: the unpadded piece size.
    size: u64,
}

pub struct PieceUrls {
    /// `None`: this node's HTTP address once bound ([`PieceUrls::http_bound`]).
    base: Mutex<Option<String>>,
    ttl: Duration,
    runtime: Arc<dyn Runtime>,
    staging: Staging,
    grants: Mutex<HashMap<String, Grant>>,
}

impl PieceUrls {
    /// `base`: this node's HTTP server as lotus-miner reaches it (`http://host:port`);
    /// empty: the address the HTTP server binds (loopback for a wildcard).
    pub fn new(
        base: &str,
        ttl: Duration,
        runtime: Arc<dyn Runtime>,
        staging: Staging,
    ) -> Arc<Self> {
        Arc::new(PieceUrls {
            base: Mutex::new((!base.is_empty()).then(|| base.trim_end_matches('/').to_owned())),
            ttl,
            runtime,
            staging,
            grants: Mutex::new(HashMap::new()),
        })
    }

    /// The HTTP server is bound to `addr`: the base, unless one was configured.
    pub fn http_bound(&self, addr: std::net::SocketAddr) {
        let mut b = self.base.lock().unwrap_or_else(|e| e.into_inner());
        if b.is_none() {
            let ip = if addr.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                addr.ip()
            };
            *b = Some(format!(
                "http://{}",
                std::net::SocketAddr::new(ip, addr.port())
            ));
        }
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Grant>> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh URL serving `uuid`'s staged data padded with zeros to `size` bytes,
    /// working until `now + ttl`.
    pub fn grant(&self, uuid: DealUuid, size: u64, now: Instant) -> std::io::Result<String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
        let token = hex::encode(raw);
        let mut g = self.grants();
        g.retain(|_, v| v.expires > now);
        while g.len() >= MAX_GRANTS {
            let Some(oldest) = g
                .iter()
                .min_by_key(|(_, v)| v.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            g.remove(&oldest);
        }
        g.insert(
            token.clone(),
            Grant {
                uuid,
                expires: now + self.ttl,
                size,
            },
        );
        let base = self.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let base = base.ok_or_else(|| std::io::Error::other("the HTTP server is not bound yet"))?;
        Ok(format!("{base}{PREFIX}{uuid}/{token}"))
    }

    /// Every URL of `uuid` stops working.
    pub fn revoke(&self, uuid: DealUuid) {
        self.grants().retain(|_, v| v.uuid != uuid);
    }

    /// The handler for a path under [`PREFIX`]; `None` for other paths.
    pub fn route(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<StreamRoute> {
        let rest = path.strip_prefix(PREFIX)?;
        let answer = |e: ApiError| -> Option<StreamRoute> {
            let r = e.into_response();
            Some(Box::new(move |_body| Box::pin(future::ready(r))))
        };
        if method != Method::GET {
            return answer(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "piece URLs take GET only",
            ));
        }
        let not_found = || ApiError::not_found(NOT_FOUND);
        let Some((uuid, token)) = rest.split_once('/') else {
            return answer(not_found());
        };
        let grant = self.grants().get(token).copied();
        let grant = match (grant, DealUuid::parse(uuid)) {
            (Some(g), Ok(u)) if g.uuid == u && g.expires > Instant::now() => g,
            _ => return answer(not_found()),
        };
        let path = self.staging.data_path(grant.uuid);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(deal = %grant.uuid, "piece URL: cannot open {}: {e}", path.display());
                return answer(ApiError::new(
                    StatusCode::GONE,
                    format!("the staged data of deal {} is not available", grant.uuid),
                ));
            }
        };
        let r = file_response_padded(
            self.runtime.clone(),
            file,
            grant.size,
            headers.get(http::header::RANGE),
        )
        .unwrap_or_else(ApiError::into_response);
        tracing::info!(deal = %grant.uuid, status = %r.status(), "piece URL served");
        Some(Box::new(move |_body| Box::pin(future::ready(r))))
    }
}
