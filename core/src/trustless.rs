//! `GET`/`HEAD /ipfs/<cid>` as the IPFS trustless gateway spec defines it
//! (specs.ipfs.tech/http-gateways/trustless-gateway; facts in docs/indexing.md): what a
//! request asks for, decided from its path, query and `Accept` header, and the labels of
//! the answer. dealport serves single blocks: `application/vnd.ipld.raw` (the block's
//! bytes) and `application/vnd.ipld.car` with `dag-scope=block` (a one-block CARv1 whose
//! root is the CID). Pure: uses `wire` and `car` only.

use std::fmt;

use crate::{
    car,
    wire::{cid::CODEC_RAW, Cid},
};

pub const RAW: &str = "application/vnd.ipld.raw";
pub const CAR: &str = "application/vnd.ipld.car";
/// The CAR answer's `Content-Type`: version 1; one block is trivially depth-first and
/// holds no duplicates.
pub const CAR_CONTENT_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
/// `Cache-Control` of an answer: a CID names its bytes forever.
pub const IMMUTABLE: &str = "public, max-age=29030400, immutable";
/// Longest CID string looked at.
const MAX_CID_STRING: usize = 256;

/// The answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    /// A one-block CARv1.
    Car,
}

/// A request this gateway can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRequest {
    pub cid: Cid,
    pub format: Format,
}

/// Why a request is refused (400), in a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad<T>(why: impl Into<String>) -> Result<T, BadRequest> {
    Err(BadRequest(why.into()))
}

/// Decide what `target` (the request's path and query, starting `/ipfs/`) with
/// `accept` (the `Accept` header) asks for. `format` in the query wins over `Accept`
/// (the spec's SHOULD).
pub fn parse_request(target: &str, accept: Option<&str>) -> Result<BlockRequest, BadRequest> {
    let rest = target.strip_prefix("/ipfs/").unwrap_or(target);
    let (segment, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (cid_str, path) = segment.split_once('/').unwrap_or((segment, ""));
    if cid_str.is_empty() {
        return bad("expected /ipfs/<cid>: no CID given");
    }
    if cid_str.len() > MAX_CID_STRING {
        return bad("the CID is longer than any CID");
    }
    let cid = Cid::parse(cid_str).map_err(|why| {
        BadRequest(format!(
            "{:?} is not a CID: {why}",
            cid_str.chars().take(80).collect::<String>()
        ))
    })?;
    if !path.is_empty() {
        return bad(format!(
            "paths under a CID are not served here (only /ipfs/<cid> itself, one block): /{}",
            path.chars().take(80).collect::<String>()
        ));
    }
    let mut format = None;
    let mut scope = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "format" => {
                format = Some(match v {
                    "raw" => Format::Raw,
                    "car" => Format::Car,
                    other => {
                        return bad(format!(
                            "format={other} is not served here: only format=raw (a block) \
                             and format=car (a one-block CAR)"
                        ))
                    }
                })
            }
            "dag-scope" => scope = Some(v.to_owned()),
            "entity-bytes" => {
                return bad("entity-bytes is not supported: this gateway serves single blocks")
            }
            "car-version" if v != "1" => {
                return bad(format!("car-version={v} is not served: only CARv1"))
            }
            // filename, download, car-order, car-dups and the rest change nothing for
            // one block.
            _ => {}
        }
    }
    let format = match format {
        Some(f) => f,
        None => from_accept(accept)?,
    };
    if format == Format::Car {
        check_scope(&cid, scope.as_deref())?;
    }
    Ok(BlockRequest { cid, format })
}

/// The format an `Accept` header asks for: its first raw or CAR media range.
fn from_accept(accept: Option<&str>) -> Result<Format, BadRequest> {
    let missing = "ask for application/vnd.ipld.raw or application/vnd.ipld.car (Accept \
                   header or ?format=raw|car): this gateway serves no deserialized content";
    let Some(accept) = accept else {
        return bad(missing);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        if media == RAW {
            return Ok(Format::Raw);
        }
        if media == CAR {
            for p in parts {
                if let Some(v) = p.strip_prefix("version=") {
                    if v.trim_matches('"') != "1" {
                        return bad(format!(
                            "CAR version {v} is not served: only application/vnd.ipld.car; version=1"
                        ));
                    }
                }
            }
            return Ok(Format::Car);
        }
    }
    bad(missing)
}

/// `dag-scope` for a CAR answer: `block`, or any scope for a raw block (it has no
/// links, so its entity and its whole DAG are the block). `all` (the default) and
/// `entity` of blocks that may link would need a DAG walk, which is not served.
fn check_scope(cid: &Cid, scope: Option<&str>) -> Result<(), BadRequest> {
    let codec = cid.prefix().map_or(0, |p| p.codec);
    match scope {
        Some("block") => Ok(()),
        Some("all" | "entity") | None if codec == CODEC_RAW => Ok(()),
        Some(s @ ("all" | "entity")) => bad(format!(
            "dag-scope={s} is not supported: this gateway serves single blocks; ask with \
             dag-scope=block"
        )),
        None => bad(
            "dag-scope=all (the default for CAR requests) is not supported: this gateway \
             serves single blocks; ask with dag-scope=block",
        ),
        Some(other) => bad(format!(
            "dag-scope={other} is not a scope (block, entity or all)"
        )),
    }
}

impl BlockRequest {
    pub fn content_type(&self) -> &'static str {
        match self.format {
            Format::Raw => RAW,
            Format::Car => CAR_CONTENT_TYPE,
        }
    }

    /// The `ETag` (quoted): the CID, the format and, for a CAR, its scope.
    pub fn etag(&self) -> String {
        match self.format {
            Format::Raw => format!("\"{}.raw\"", self.cid),
            Format::Car => format!("\"{}.car.block\"", self.cid),
        }
    }

    /// The `Content-Disposition` (the spec's MUST: `attachment`, with its file names).
    pub fn disposition(&self) -> String {
        match self.format {
            Format::Raw => format!("attachment; filename=\"{}.bin\"", self.cid),
            Format::Car => format!("attachment; filename=\"{}.car\"", self.cid),
        }
    }

    /// What precedes the block's bytes in the answer: nothing for raw; for a CAR its
    /// header (root: the CID) and the section's varint and CID.
    pub fn prefix(&self, block_len: u64) -> Vec<u8> {
        match self.format {
            Format::Raw => Vec::new(),
            Format::Car => {
                let mut out = car::v1_header(std::slice::from_ref(&self.cid));
                out.extend(car::section_prefix(&self.cid, block_len));
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cid::{CODEC_DAG_CBOR, MH_SHA2_256};

    fn raw_cid() -> Cid {
        Cid::v1(CODEC_RAW, MH_SHA2_256, &[1; 32])
    }

    fn cbor_cid() -> Cid {
        Cid::v1(CODEC_DAG_CBOR, MH_SHA2_256, &[2; 32])
    }

    #[test]
    fn format_comes_from_the_query_first_then_accept() {
        let c = raw_cid();
        let t = |q: &str| format!("/ipfs/{c}{q}");
        let r = parse_request(&t(""), Some(RAW)).unwrap();
        assert_eq!(
            r,
            BlockRequest {
                cid: c.clone(),
                format: Format::Raw
            }
        );
        assert_eq!(
            parse_request(&t("?format=car"), Some(RAW)).unwrap().format,
            Format::Car
        );
        assert_eq!(
            parse_request(&t("?format=raw"), None).unwrap().format,
            Format::Raw
        );
        let r = parse_request(
            &t(""),
            Some("text/html, application/vnd.ipld.car; version=1"),
        )
        .unwrap();
        assert_eq!(r.format, Format::Car);
        assert_eq!(r.content_type(), CAR_CONTENT_TYPE);
        assert_eq!(r.etag(), format!("\"{c}.car.block\""));
        let e = parse_request(&t(""), Some("text/html")).unwrap_err();
        assert!(e.0.contains("no deserialized content"), "{e}");
        assert!(parse_request(&t(""), None).is_err());
        assert!(parse_request(&t("?format=dag-json"), None)
            .unwrap_err()
            .0
            .contains("format=dag-json"));
        assert!(parse_request(&t(""), Some("application/vnd.ipld.car;version=2")).is_err());
    }

    #[test]
    fn car_requests_need_the_block_scope_unless_the_block_is_raw() {
        let c = cbor_cid();
        let t = |q: &str| format!("/ipfs/{c}?format=car{q}");
        assert!(parse_request(&t("&dag-scope=block"), None).is_ok());
        let e = parse_request(&t(""), None).unwrap_err();
        assert!(
            e.0.contains("dag-scope=all (the default for CAR requests) is not supported"),
            "{e}"
        );
        assert!(parse_request(&t("&dag-scope=all"), None)
            .unwrap_err()
            .0
            .contains("dag-scope=all is not supported"));
        assert!(parse_request(&t("&dag-scope=entity"), None).is_err());
        assert!(parse_request(&t("&dag-scope=nonsense"), None).is_err());
        assert!(parse_request(&t("&dag-scope=block&entity-bytes=0:10"), None).is_err());
        // A raw block is its own DAG.
        let r = format!("/ipfs/{}?format=car", raw_cid());
        assert!(parse_request(&r, None).is_ok());
        // Raw answers ignore the scope.
        assert!(parse_request(&format!("/ipfs/{c}?format=raw&dag-scope=all"), None).is_ok());
    }

    #[test]
    fn bad_cids_and_paths_are_refused_with_a_reason() {
        for t in [
            "/ipfs/",
            "/ipfs/nonsense",
            "/ipfs/bafy!!",
            &format!("/ipfs/{}", "b".repeat(300)),
        ] {
            let e = parse_request(t, Some(RAW)).unwrap_err();
            assert!(e.0.contains("CID"), "{t}: {e}");
        }
        let e = parse_request(&format!("/ipfs/{}/a/b", raw_cid()), Some(RAW)).unwrap_err();
        assert!(e.0.contains("paths under a CID"), "{e}");
        // CIDv0 strings parse.
        let v0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n";
        assert!(parse_request(&format!("/ipfs/{v0}"), Some(RAW)).is_ok());
    }

    #[test]
    fn a_car_answer_is_a_header_with_the_root_then_one_section() {
        let data = b"hello";
        let cid = Cid::v1(
            CODEC_RAW,
            MH_SHA2_256,
            &<sha2::Sha256 as sha2::Digest>::digest(data),
        );
        let r = BlockRequest {
            cid: cid.clone(),
            format: Format::Car,
        };
        let mut bytes = r.prefix(data.len() as u64);
        bytes.extend_from_slice(data);
        let mut items = Vec::new();
        let mut reader = car::CarReader::new();
        reader.push(&bytes, &mut |i| items.push(i)).unwrap();
        assert_eq!(reader.finish().unwrap().blocks, 1);
        assert!(matches!(&items[0], car::CarItem::Header(h) if h.roots == vec![cid.clone()]));
        assert!(matches!(&items[1], car::CarItem::Block(b) if b.cid == cid && b.verified));
        assert!(BlockRequest {
            cid,
            format: Format::Raw
        }
        .prefix(5)
        .is_empty());
    }
}
