//! `GET` and `HEAD /piece/<pieceCid>`: a deal's data as received (unpadded), as Boost's
//! booster-http and Curio serve it: `Content-Type: application/piece`, `ETag` the piece
//! CID, one `Range` (206, 416 past the end), 404 for a piece this node does not hold,
//! 400 with the reason for anything that is not a piece CID. Which deals may supply the
//! bytes is core's `retrieval::piece_sources` (never a failed deal's). Any node serves
//! it (no lease needed): in a cluster the files must be on storage every node sees.
//!
//! Uses `store` (deals by piece CID, bounded), `exec::staging` and the piece store for
//! paths, `api::file_response_with`, `metrics`, `runtime`.
use std::{path::PathBuf, sync::Arc, time::Duration};

use dealport_core::{
    retrieval::{parse_piece_cid, piece_sources, PieceSource},
    wire::Cid,
};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use crate::{
    api::{file_response_with, get_or_head, ApiError, FileMeta},
    exec::{piece_store::PieceStore, staging::Staging},
    http::{StreamResponse, StreamRoute},
    metrics::Metrics,
    runtime::{timeout, unblock, Runtime},
    store::Store,
};

/// The route's path prefix.
pub const PREFIX: &str = "/piece/";
/// Bound on the store lookup and on opening the file (shared storage can hang).
pub const LOOKUP_BOUND: Duration = Duration::from_secs(5);
/// Deals of one piece read per request (a piece shared by more is served by the first).
const MAX_DEALS: usize = 64;
/// What `/piece/` answers with.
pub const CONTENT_TYPE: &str = "application/piece";
/// Its `Cache-Control`.
const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// The 503 of a store that did not answer within [`LOOKUP_BOUND`].
pub fn store_timeout() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the store did not answer within {} s; retry",
            LOOKUP_BOUND.as_secs()
        ),
    )
}

/// Serves `/piece/` from the staging directory and the piece store.
pub struct PieceServer {
    store: Arc<dyn Store>,
    staging: Staging,
    kept: PieceStore,
    runtime: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
}

impl PieceServer {
    pub fn new(
        store: Arc<dyn Store>,
        staging: Staging,
        kept: PieceStore,
        runtime: Arc<dyn Runtime>,
        metrics: Arc<Metrics>,
    ) -> PieceServer {
        PieceServer {
            store,
            staging,
            kept,
            runtime,
            metrics,
        }
    }

    pub fn is_piece_path(path: &str) -> bool {
        path.starts_with(PREFIX)
    }

    /// The answer to `method path` (`is_piece_path(path)` holds); the body is not read.
    pub fn route(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> StreamRoute {
        let this = self.clone();
        let method = method.clone();
        let segment = path[PREFIX.len()..].to_owned();
        let range = headers.get(header::RANGE).cloned();
        Box::new(move |_body| Box::pin(async move { this.answer(method, segment, range).await }))
    }

    async fn answer(
        &self,
        method: Method,
        segment: String,
        range: Option<HeaderValue>,
    ) -> StreamResponse {
        match self.serve(&method, &segment, range.as_ref()).await {
            Ok(r) => r,
            Err(e) => {
                if e.status == StatusCode::NOT_FOUND {
                    self.metrics.piece_not_found();
                }
                e.into_read_only_response()
            }
        }
    }

    async fn serve(
        &self,
        method: &Method,
        segment: &str,
        range: Option<&HeaderValue>,
    ) -> Result<StreamResponse, ApiError> {
        let head = get_or_head(method, &format!("{PREFIX}<pieceCid>"))?;
        if segment.is_empty() || segment.contains('/') {
            return Err(ApiError::bad_request(format!(
                "expected {PREFIX}<pieceCid>, got {PREFIX}{segment}"
            )));
        }
        let piece = parse_piece_cid(segment).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let paths = self.piece_paths(&piece).await?;
        let Some(file) = self.open_first(paths).await? else {
            return Err(ApiError::not_found(format!(
                "this node does not hold piece {piece}"
            )));
        };
        let meta = FileMeta {
            content_type: CONTENT_TYPE,
            etag: Some(piece.to_string()),
            head,
            pad_to: 0,
        };
        let mut r = file_response_with(self.runtime.clone(), file, range, &meta)?;
        if r.status().is_success() {
            // A piece CID names its bytes forever (booster-http and Curio send the same).
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        }
        Ok(self.counted(r, head))
    }

    /// Where `piece`'s bytes may be read, best first: the files of the deals that may
    /// supply it (core's `piece_sources`), from the store within [`LOOKUP_BOUND`].
    /// `/ipfs/` reads blocks from the same files.
    pub async fn piece_paths(&self, piece: &Cid) -> Result<Vec<PathBuf>, ApiError> {
        let deals = timeout(
            LOOKUP_BOUND,
            self.store.deals_by_piece_cid(piece, MAX_DEALS),
        )
        .await
        .ok_or_else(store_timeout)?
        .map_err(|e| ApiError::internal(format!("cannot look piece {piece} up: {e}")))?;
        Ok(piece_sources(piece, &deals)
            .into_iter()
            .map(|s| match s {
                PieceSource::Kept => self.kept.path(piece),
                PieceSource::Staged(uuid) => self.staging.data_path(uuid),
            })
            .collect())
    }

    /// The first of `paths` that opens (a missing file is the next source's turn).
    pub async fn open_first(&self, paths: Vec<PathBuf>) -> Result<Option<std::fs::File>, ApiError> {
        if paths.is_empty() {
            return Ok(None);
        }
        let open = unblock(&*self.runtime, move || {
            paths.iter().find_map(|p| std::fs::File::open(p).ok())
        });
        timeout(LOOKUP_BOUND, open)
            .await
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the piece file did not open within {} s; retry",
                        LOOKUP_BOUND.as_secs()
                    ),
                )
            })?
            .ok_or_else(|| ApiError::internal("the blocking pool dropped the open"))
    }

    /// Count a data answer and its bytes as they are sent.
    fn counted(&self, r: StreamResponse, head: bool) -> StreamResponse {
        let data = matches!(r.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
        if !data || head {
            return r;
        }
        self.metrics.piece_served();
        let metrics = self.metrics.clone();
        r.map(|body| {
            body.map_frame(move |f| {
                if let Some(d) = f.data_ref() {
                    metrics.piece_bytes(d.len() as u64);
                }
                f
            })
            .boxed()
        })
    }
}
