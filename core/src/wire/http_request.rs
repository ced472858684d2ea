//! `Transfer.Params` for http transfers: the JSON of Boost's `HttpRequest`.
//!
//! Written exactly as Go's `encoding/json` writes it (no spaces, struct field order,
//! map keys sorted, `<>&` escaped) so a client can reproduce Boost's bytes; read as
//! leniently as Go reads it (keys case-insensitive, `Headers` null or absent).
use std::collections::BTreeMap;

/// Where to download a deal's data from, and with which headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

/// Why `Transfer.Params` is not a usable `HttpRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamsError(pub String);

impl HttpRequest {
    pub fn new(url: impl Into<String>) -> Self {
        HttpRequest {
            url: url.into(),
            headers: BTreeMap::new(),
        }
    }

    /// Go's `json.Marshal(HttpRequest{…})`; an empty header map is written as `null`,
    /// as Boost's client leaves the map nil when no header is given.
    pub fn to_json(&self) -> Vec<u8> {
        let mut s = String::from("{\"URL\":");
        go_json_string(&mut s, &self.url);
        s.push_str(",\"Headers\":");
        if self.headers.is_empty() {
            s.push_str("null");
        } else {
            s.push('{');
            for (i, (k, v)) in self.headers.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                go_json_string(&mut s, k);
                s.push(':');
                go_json_string(&mut s, v);
            }
            s.push('}');
        }
        s.push('}');
        s.into_bytes()
    }

    /// Go's `json.Unmarshal` into `HttpRequest`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ParamsError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ParamsError(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| {
            ParamsError("json: cannot unmarshal non-object into HttpRequest".into())
        })?;
        let mut out = HttpRequest::default();
        // Go matches keys case-insensitively; the last matching key wins.
        for (k, val) in obj {
            if k.eq_ignore_ascii_case("url") {
                out.url = match val {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    _ => return Err(ParamsError("json: URL must be a string".into())),
                };
            } else if k.eq_ignore_ascii_case("headers") {
                out.headers = match val {
                    serde_json::Value::Null => BTreeMap::new(),
                    serde_json::Value::Object(m) => m
                        .iter()
                        .map(|(hk, hv)| match hv {
                            serde_json::Value::String(s) => Ok((hk.clone(), s.clone())),
                            _ => Err(ParamsError("json: header values must be strings".into())),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(ParamsError("json: Headers must be an object".into())),
                };
            }
        }
        Ok(out)
    }
}

/// Append `v` as a JSON string the way Go's encoder escapes it.
fn go_json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
