//! MK12 over HTTP(S), as Curio serves it: one HTTP/1.1 request with a CBOR body, one CBOR
//! body back. A deliberately small HTTP/1.1 client (`Connection: close`, Content-Length
//! or chunked answers) over async-net, with rustls (ring, webpki roots) for https.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::rustls::pki_types::ServerName;

use dealport_node::outbound::{io_sentence, tls_connector, Conn};

use super::{ClientError, Timeouts};

/// Largest answer accepted (Curio's request limit is 4 MiB).
const MAX_RESPONSE: usize = 8 << 20;

/// A parsed `http(s)://host[:port][/base]` provider URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (usually empty).
    pub base: String,
}

impl HttpTarget {
    pub fn parse(url: &str) -> Result<HttpTarget, ClientError> {
        let bad = |why: &str| ClientError::Usage(format!("{url:?} is not a provider URL: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("it must start with https:// or http://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("no host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed [ in host"))?;
            let host = &v6[..end];
            match &v6[end + 1..] {
                "" => (host.to_string(), None),
                p => (
                    host.to_string(),
                    Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(HttpTarget {
            tls,
            host,
            port,
            base: path.trim_end_matches('/').to_string(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}{path}", self.port, self.base)
    }
}

async fn timed<T>(
    limit: Duration,
    what: String,
    f: impl std::future::Future<Output = T>,
) -> Result<T, ClientError> {
    dealport_node::runtime::timeout(limit, f)
        .await
        .ok_or(ClientError::Timeout(what))
}

/// Send `body` with `method` to `path`; the status code and body of the answer.
pub async fn request(
    target: &HttpTarget,
    method: &str,
    path: &str,
    body: &[u8],
    timeouts: Timeouts,
) -> Result<(u16, Vec<u8>), ClientError> {
    let url = target.url(path);
    let unreachable = |reason: String| ClientError::Unreachable {
        addr: url.clone(),
        reason,
    };
    let connect = async {
        let addrs = async_net::resolve((target.host.as_str(), target.port))
            .await
            .map_err(|e| {
                unreachable(format!(
                    "cannot resolve {}: {}",
                    target.host,
                    io_sentence(&e)
                ))
            })?;
        let mut last = None;
        for a in addrs {
            match async_net::TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(unreachable(match last {
            Some(e) => io_sentence(&e),
            None => format!("{} has no address", target.host),
        }))
    };
    let tcp = timed(
        timeouts.connect,
        format!(
            "cannot reach {url}: no connection within {} s",
            timeouts.connect.as_secs()
        ),
        connect,
    )
    .await??;
    let _ = tcp.set_nodelay(true);
    let mut conn: Box<dyn Conn> = if target.tls {
        let name = ServerName::try_from(target.host.clone()).map_err(|_| {
            ClientError::Usage(format!("{:?} is not a valid TLS server name", target.host))
        })?;
        let tls = timed(
            timeouts.connect,
            format!(
                "TLS handshake with {url} did not finish within {} s",
                timeouts.connect.as_secs()
            ),
            tls_connector().connect(name, tcp),
        )
        .await?
        .map_err(|e| unreachable(format!("TLS handshake failed: {e}")))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let host_header = if (target.tls && target.port == 443) || (!target.tls && target.port == 80) {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: dealport-client/{}\r\nContent-Type: application/cbor\r\nAccept: application/cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        target.base,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let stream_err = |e: std::io::Error| ClientError::Stream {
        addr: url.clone(),
        reason: io_sentence(&e),
    };
    timed(
        timeouts.write,
        format!(
            "could not send the request within {} s",
            timeouts.write.as_secs()
        ),
        async {
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(body).await?;
            conn.flush().await
        },
    )
    .await?
    .map_err(stream_err)?;
    let raw = timed(
        timeouts.read,
        format!(
            "no answer from the provider within {} s",
            timeouts.read.as_secs()
        ),
        read_response(&mut conn),
    )
    .await?
    .map_err(stream_err)?;
    parse_response(&raw).map_err(|why| {
        ClientError::BadAnswer(format!(
            "{url} answered with an unreadable HTTP response: {why}"
        ))
    })
}

/// Read until the answer is complete (Content-Length or chunked reached), or EOF.
async fn read_response(conn: &mut Box<dyn Conn>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if response_complete(&buf) {
            return Ok(buf);
        }
        let n = match conn.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify: keep what we have.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            return Err(std::io::Error::other(format!(
                "answer larger than {MAX_RESPONSE} bytes"
            )));
        }
    }
}

fn split_head(raw: &[u8]) -> Option<(&str, &[u8])> {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((std::str::from_utf8(&raw[..at]).ok()?, &raw[at + 4..]))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn response_complete(raw: &[u8]) -> bool {
    let Some((head, body)) = split_head(raw) else {
        return false;
    };
    if let Some(len) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= len;
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return dechunk(body).is_ok();
    }
    false
}

/// Decode a complete chunked body; `Err` if incomplete or malformed.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("incomplete chunk")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("incomplete chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    if raw.is_empty() {
        return Err("the connection closed without an answer".into());
    }
    let (head, body) = split_head(raw).ok_or("no complete response head")?;
    let status_line = head.split("\r\n").next().unwrap_or("");
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let body =
        if let Some(len) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            if body.len() < len {
                return Err(format!("body ended after {} of {len} bytes", body.len()));
            }
            body[..len].to_vec()
        } else if header(head, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            dechunk(body)?
        } else {
            body.to_vec()
        };
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = HttpTarget::parse("https://sp.example.com").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.base.as_str()),
            (true, "sp.example.com", 443, "")
        );
        let t = HttpTarget::parse("http://127.0.0.1:12310/").unwrap();
        assert_eq!((t.tls, t.port, t.base.as_str()), (false, 12310, ""));
        assert_eq!(
            t.url("/market/mk12/store"),
            "http://127.0.0.1:12310/market/mk12/store"
        );
        assert!(HttpTarget::parse("ftp://x").is_err());
    }

    #[test]
    fn responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert!(response_complete(r));
        assert_eq!(parse_response(r).unwrap(), (200, b"abc".to_vec()));
        let c =
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
        assert!(response_complete(c));
        assert_eq!(parse_response(c).unwrap(), (400, b"abc".to_vec()));
        assert!(!response_complete(&c[..c.len() - 7]));
    }
}
