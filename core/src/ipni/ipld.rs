//! The few IPLD kinds IPNI's objects use, and their two deterministic encodings.
//!
//! - dag-cbor: map keys sorted length-first then bytewise (RFC 7049 canonical, what
//!   go-ipld-prime's dagcbor encoder does), minimal headers, links as tag 42 around
//!   `0x00 ‖ CID bytes`.
//! - dag-json: no whitespace, map keys sorted bytewise, bytes as
//!   `{"/":{"bytes":"<standard base64, no padding>"}}`, links as `{"/":"<CID string>"}`.
//!
//! Decoding (dag-json only: what the store keeps) is strict about shape and bounded by
//! the input; any byte sequence gives a value or an error, never a panic.
use crate::wire::{cbor::Writer, Cid};
use data_encoding::{BASE64, BASE64_NOPAD};

/// An IPLD value of the kinds IPNI uses (no floats, no negative integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipld {
    Bool(bool),
    Int(u64),
    String(String),
    Bytes(Vec<u8>),
    List(Vec<Ipld>),
    /// Keys unique; the encoders sort them.
    Map(Vec<(String, Ipld)>),
    Link(Cid),
}

/// Deepest nesting the dag-json reader accepts (IPNI's objects are 3 deep).
const MAX_DEPTH: usize = 16;

impl Ipld {
    pub fn to_dag_cbor(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_cbor(&mut w);
        w.into_bytes()
    }

    fn write_cbor(&self, w: &mut Writer) {
        match self {
            Ipld::Bool(b) => {
                w.bool(*b);
            }
            Ipld::Int(i) => {
                w.uint(*i);
            }
            Ipld::String(s) => {
                w.str(s);
            }
            Ipld::Bytes(b) => {
                w.bytes(b);
            }
            Ipld::List(items) => {
                w.array(items.len() as u64);
                for i in items {
                    i.write_cbor(w);
                }
            }
            Ipld::Map(entries) => {
                let mut sorted: Vec<&(String, Ipld)> = entries.iter().collect();
                sorted
                    .sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
                w.map(sorted.len() as u64);
                for (k, v) in sorted {
                    w.key(k);
                    v.write_cbor(w);
                }
            }
            Ipld::Link(c) => {
                w.value(c);
            }
        }
    }

    pub fn to_dag_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Ipld::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Ipld::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Ipld::String(s) => json_string(out, s),
            Ipld::Bytes(b) => {
                out.extend_from_slice(b"{\"/\":{\"bytes\":\"");
                out.extend_from_slice(BASE64_NOPAD.encode(b).as_bytes());
                out.extend_from_slice(b"\"}}");
            }
            Ipld::List(items) => {
                out.push(b'[');
                for (n, i) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    i.write_json(out);
                }
                out.push(b']');
            }
            Ipld::Map(entries) => {
                let mut sorted: Vec<&(String, Ipld)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push(b'{');
                for (n, (k, v)) in sorted.into_iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    json_string(out, k);
                    out.push(b':');
                    v.write_json(out);
                }
                out.push(b'}');
            }
            Ipld::Link(c) => {
                out.extend_from_slice(b"{\"/\":\"");
                out.extend_from_slice(c.to_string().as_bytes());
                out.extend_from_slice(b"\"}");
            }
        }
    }

    /// Parse dag-json (links and bytes in their `"/"` forms; padded or unpadded base64).
    pub fn from_dag_json(bytes: &[u8]) -> Result<Ipld, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        from_json(&v, 0)
    }

    /// The map's value at `key`.
    pub fn get(&self, key: &str) -> Option<&Ipld> {
        match self {
            Ipld::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping: quotes, backslashes and control characters only.
    out.extend_from_slice(serde_json::Value::from(s).to_string().as_bytes());
}

fn from_json(v: &serde_json::Value, depth: usize) -> Result<Ipld, String> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err("nested too deep".into());
    }
    Ok(match v {
        Value::Null => return Err("null is not used by IPNI objects".into()),
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => Ipld::Int(
            n.as_u64()
                .ok_or_else(|| format!("{n}: only unsigned integers are used"))?,
        ),
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(items) => Ipld::List(
            items
                .iter()
                .map(|i| from_json(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            if let (1, Some(slash)) = (m.len(), m.get("/")) {
                return match slash {
                    Value::String(s) => Cid::parse(s)
                        .map(Ipld::Link)
                        .map_err(|e| format!("link {s:?}: {e}")),
                    Value::Object(inner) => match (inner.len(), inner.get("bytes")) {
                        (1, Some(Value::String(b64))) => decode_base64(b64).map(Ipld::Bytes),
                        _ => Err("a \"/\" object other than bytes".into()),
                    },
                    _ => Err("a \"/\" key that is neither a link nor bytes".into()),
                };
            }
            Ipld::Map(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), from_json(v, depth + 1)?)))
                    .collect::<Result<_, String>>()?,
            )
        }
    })
}

fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    let codec = if s.ends_with('=') {
        &BASE64
    } else {
        &BASE64_NOPAD
    };
    codec
        .decode(s.as_bytes())
        .map_err(|e| format!("bytes: bad base64: {e}"))
}
