//! `GET` and `HEAD /ipfs/<cid>`: one block of a kept or staged piece, as the IPFS
//! trustless gateway spec asks (core's `trustless` decides the request and the labels):
//! the raw block or a one-block CARv1; 404 when no piece this node serves holds it;
//! 400 with the reason for a bad CID or a request for more than one block. The block is
//! found in the piece directory (`Store::blocks_by_multihash`), read from the piece's
//! file (the same files and the same rule on which deals may supply them as
//! `/piece/`), and checked against its CID before it is sent: a file changed on disk
//! gives the next copy or a 404, never wrong bytes.
//!
//! Uses `store` (bounded by [`LOOKUP_BOUND`]), `retrieval::piece` (paths, opening),
//! `api::ApiError`, `metrics`, `runtime`.
use std::{
    io::{Read, Seek, SeekFrom},
    sync::Arc,
};

use bytes::Bytes;
use dealport_core::{
    car::{block_matches, MAX_SECTION},
    piece_index::BlockLocation,
    trustless::{parse_request, BlockRequest, IMMUTABLE},
};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::piece::{store_timeout, PieceServer, LOOKUP_BOUND};
use crate::{
    api::{get_or_head, ApiError},
    http::{StreamResponse, StreamRoute},
    metrics::Metrics,
    runtime::{timeout, unblock, Runtime},
    store::Store,
};

/// The route's path prefix.
pub const PREFIX: &str = "/ipfs/";
/// Copies of one block looked at per request.
const MAX_LOCATIONS: usize = 16;

/// Serves `/ipfs/` from the pieces `/piece/` serves.
pub struct IpfsServer {
    store: Arc<dyn Store>,
    pieces: Arc<PieceServer>,
    runtime: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
}

impl IpfsServer {
    pub fn new(
        store: Arc<dyn Store>,
        pieces: Arc<PieceServer>,
        runtime: Arc<dyn Runtime>,
        metrics: Arc<Metrics>,
    ) -> IpfsServer {
        IpfsServer {
            store,
            pieces,
            runtime,
            metrics,
        }
    }

    pub fn is_ipfs_path(path: &str) -> bool {
        path.starts_with(PREFIX)
    }

    /// The answer to `method target` (`target`: the path and query).
    pub fn route(
        self: &Arc<Self>,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
    ) -> StreamRoute {
        let this = self.clone();
        let method = method.clone();
        let target = target.to_owned();
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::new(move |_body| {
            Box::pin(async move {
                match this.serve(&method, &target, accept.as_deref()).await {
                    Ok(r) => r,
                    Err(e) => {
                        if e.status == StatusCode::NOT_FOUND {
                            this.metrics.block_not_found();
                        }
                        e.into_read_only_response()
                    }
                }
            })
        })
    }

    async fn serve(
        &self,
        method: &Method,
        target: &str,
        accept: Option<&str>,
    ) -> Result<StreamResponse, ApiError> {
        let head = get_or_head(method, &format!("{PREFIX}<cid>"))?;
        let req = parse_request(target, accept).map_err(|e| ApiError::bad_request(e.0))?;
        let locations = timeout(
            LOOKUP_BOUND,
            self.store
                .blocks_by_multihash(req.cid.multihash(), MAX_LOCATIONS),
        )
        .await
        .ok_or_else(store_timeout)?
        .map_err(|e| ApiError::internal(format!("cannot look {} up: {e}", req.cid)))?;
        for at in locations {
            if at.length > MAX_SECTION {
                continue;
            }
            if let Some(block) = self.read(&req, &at, head).await? {
                return Ok(self.answer(&req, block, at.length, head));
            }
        }
        Err(ApiError::not_found(format!(
            "this node serves no block {}",
            req.cid
        )))
    }

    /// The block at `at` from the first file of its piece that holds it (checked against
    /// the CID); `Some(empty)` for `HEAD` once a file opens. `None`: no copy here.
    async fn read(
        &self,
        req: &BlockRequest,
        at: &BlockLocation,
        head: bool,
    ) -> Result<Option<Bytes>, ApiError> {
        let paths = self.pieces.piece_paths(&at.piece).await?;
        let Some(mut file) = self.pieces.open_first(paths).await? else {
            return Ok(None);
        };
        if head {
            return Ok(Some(Bytes::new()));
        }
        let (offset, length, cid) = (at.offset, at.length, req.cid.clone());
        let read = unblock(&*self.runtime, move || -> std::io::Result<Option<Bytes>> {
            file.seek(SeekFrom::Start(offset))?;
            let mut data = vec![0; length as usize];
            file.read_exact(&mut data)?;
            // A hash we do not compute is sent as indexed: the client checks it.
            Ok((block_matches(&cid, &data) != Some(false)).then(|| Bytes::from(data)))
        });
        match timeout(LOOKUP_BOUND, read).await.flatten() {
            Some(Ok(Some(b))) => Ok(Some(b)),
            Some(Ok(None)) => {
                tracing::warn!(cid = %req.cid, piece = %at.piece, offset, "the piece file no longer holds the indexed block");
                Ok(None)
            }
            Some(Err(e)) => {
                tracing::warn!(cid = %req.cid, piece = %at.piece, error = %e, "cannot read an indexed block");
                Ok(None)
            }
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the piece file did not answer within {} s; retry",
                    LOOKUP_BOUND.as_secs()
                ),
            )),
        }
    }

    fn answer(&self, req: &BlockRequest, block: Bytes, length: u64, head: bool) -> StreamResponse {
        let prefix = req.prefix(length);
        let len = prefix.len() as u64 + length;
        let body = if head {
            Bytes::new()
        } else {
            self.metrics.block_served();
            let mut all = prefix;
            all.extend_from_slice(&block);
            Bytes::from(all)
        };
        let mut r = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
        let h = r.headers_mut();
        let value = |s: String| HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static(""));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(req.content_type()),
        );
        h.insert(header::ETAG, value(req.etag()));
        h.insert(header::CONTENT_DISPOSITION, value(req.disposition()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept"));
        r
    }
}
