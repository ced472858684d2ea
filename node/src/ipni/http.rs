//! The HTTP publisher (ipni/specs IPNI_HTTP_PROVIDER.md): `GET /ipni/v1/ad/head`, the
//! signed head (`Cache-Control: no-cache, no-store, must-revalidate`, the spec's "always
//! fetch the latest"; 204 before the first advertisement, as go-libipni's publisher),
//! and `GET /ipni/v1/ad/<cid>`, an advertisement or entry chunk
//! (`Cache-Control: public, max-age=29030400, immutable`). dag-json by default (the bytes
//! the CID names), dag-cbor when `Accept` asks for `application/vnd.ipld.dag-cbor` or
//! `application/cbor`. `HEAD` too. Any node serves it: the chain is in the store and the
//! key is the node identity every node of a cluster shares.
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use dealport_core::{
    ipni::{ipld::Ipld, signed_head},
    wire::Cid,
};
use http::{header, HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;

use super::Ipni;
use crate::{
    api::{get_or_head, ApiError},
    http::{boxed, StreamResponse, StreamRoute},
    runtime::timeout,
};

/// The route's path prefix.
pub const PREFIX: &str = "/ipni/v1/ad/";
const HEAD_CACHE: &str = "no-cache, no-store, must-revalidate";
const IMMUTABLE: &str = "public, max-age=29030400, immutable";
const DAG_JSON: &str = "application/json";
const DAG_CBOR: &str = "application/vnd.ipld.dag-cbor";
/// Bound on the store read.
const LOOKUP_BOUND: Duration = Duration::from_secs(5);

/// Serves the chain from the store.
pub struct IpniHttp {
    ipni: Arc<Ipni>,
}

/// Does the client ask for dag-cbor?
fn wants_cbor(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| m.split(';').next().unwrap_or("").trim())
        .any(|m| m.eq_ignore_ascii_case(DAG_CBOR) || m.eq_ignore_ascii_case("application/cbor"))
}

impl IpniHttp {
    pub fn new(ipni: Arc<Ipni>) -> IpniHttp {
        IpniHttp { ipni }
    }

    pub fn is_ipni_path(path: &str) -> bool {
        path.starts_with("/ipni/")
    }

    pub fn route(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> StreamRoute {
        let this = self.clone();
        let method = method.clone();
        let path = path.to_owned();
        let cbor = wants_cbor(headers);
        Box::new(move |_body| {
            Box::pin(async move {
                match this.serve(&method, &path, cbor).await {
                    Ok(r) => r,
                    Err(e) => e.into_read_only_response(),
                }
            })
        })
    }

    async fn serve(
        &self,
        method: &Method,
        path: &str,
        cbor: bool,
    ) -> Result<StreamResponse, ApiError> {
        let head_only = get_or_head(method, &format!("{PREFIX}…"))?;
        let Some(segment) = path.strip_prefix(PREFIX).filter(|s| !s.contains('/')) else {
            return Err(ApiError::not_found(format!(
                "no such IPNI resource {path}: the publisher serves {PREFIX}head and {PREFIX}<cid>"
            )));
        };
        let store = self.ipni.service.store();
        let unavailable = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the store did not answer within {} s; retry",
                    LOOKUP_BOUND.as_secs()
                ),
            )
        };
        if segment == "head" {
            let head = timeout(LOOKUP_BOUND, store.ipni_head())
                .await
                .ok_or_else(unavailable)?
                .map_err(|e| ApiError::internal(format!("cannot read the chain head: {e}")))?;
            let Some(head) = head else {
                return Ok(answer(
                    StatusCode::NO_CONTENT,
                    None,
                    HEAD_CACHE,
                    Vec::new(),
                    head_only,
                ));
            };
            let node = signed_head(&head.cid, Some(self.ipni.topic()), self.ipni.signer());
            let (ctype, bytes) = if cbor {
                (DAG_CBOR, node.to_dag_cbor())
            } else {
                (DAG_JSON, node.to_dag_json())
            };
            return Ok(answer(
                StatusCode::OK,
                Some(ctype),
                HEAD_CACHE,
                bytes,
                head_only,
            ));
        }
        let cid = Cid::parse(segment)
            .map_err(|e| ApiError::bad_request(format!("{segment:?} is not a CID: {e}")))?;
        let stored = timeout(LOOKUP_BOUND, store.ipni_block(&cid))
            .await
            .ok_or_else(unavailable)?
            .map_err(|e| ApiError::internal(format!("cannot read {cid}: {e}")))?
            .ok_or_else(|| ApiError::not_found(format!("no advertisement or entry chunk {cid}")))?;
        let (ctype, bytes) = if cbor {
            let node = Ipld::from_dag_json(&stored)
                .map_err(|e| ApiError::internal(format!("stored {cid} does not decode: {e}")))?;
            (DAG_CBOR, node.to_dag_cbor())
        } else {
            (DAG_JSON, stored)
        };
        Ok(answer(
            StatusCode::OK,
            Some(ctype),
            IMMUTABLE,
            bytes,
            head_only,
        ))
    }
}

fn answer(
    status: StatusCode,
    ctype: Option<&'static str>,
    cache: &'static str,
    body: Vec<u8>,
    head_only: bool,
) -> StreamResponse {
    let mut r = Response::builder()
        .status(status)
        .header(header::CACHE_CONTROL, cache)
        .header(header::VARY, "Accept");
    if let Some(t) = ctype {
        r = r
            .header(header::CONTENT_TYPE, t)
            .header(header::CONTENT_LENGTH, body.len());
    }
    let body = if head_only {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    boxed(r.body(Full::new(body)).unwrap_or_default())
}
