//! One HTTP(S) GET of a deal's `Transfer.Params` URL with its headers, from a byte
//! offset (`Range: bytes=<offset>-`) when resuming. hyper's HTTP/1.1 client over
//! async-net, rustls (ring, webpki roots) for https; the address comes from
//! [`super::ssrf`], and redirects are refused (a redirect could point anywhere, and
//! Boost's client-side URL is expected to be the data itself).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use dealport_core::wire::HttpRequest;
use futures::future::{self, AbortHandle};
use http::{header, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use smol_hyper::rt::FuturesIo;

use super::ssrf;
use crate::{
    outbound::{io_sentence, tls_connector, Conn},
    runtime::{timeout, Runtime},
};

/// What a failed request means for the deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Worth another try (connection refused or dropped, 5xx, timeouts).
    Retry(String),
    /// Will not get better: the deal fails with this sentence.
    Fatal(String),
}

/// Settings of one download.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub allow_private: bool,
    pub connect_timeout: Duration,
    /// Also the bound on waiting for the answer's head.
    pub idle_timeout: Duration,
}

/// An answer whose body carries the data from `from` on.
pub struct Fetched {
    /// Where the body starts in the data: the requested offset (206) or 0 (200).
    pub from: u64,
    /// The whole data's size as the server declares it, if it does.
    pub declared_total: Option<u64>,
    pub body: Incoming,
    /// Ends the connection task when the answer is dropped.
    _conn: AbortOnDrop,
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The URL's parts: https?, host (no brackets), port, path and query.
fn parse_url(url: &str) -> Result<(bool, String, u16, String), FetchError> {
    let bad = |why: &str| FetchError::Fatal(format!("the transfer URL {url:?} {why}"));
    let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("is neither http:// nor https://")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad(
            "carries credentials before the host, which are not supported",
        ));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    Ok((tls, host, port, path))
}

async fn connect(
    addrs: &[SocketAddr],
    url: &str,
    limit: Duration,
) -> Result<async_net::TcpStream, FetchError> {
    let mut last = String::from("no address");
    for a in addrs {
        match timeout(limit, async_net::TcpStream::connect(*a)).await {
            Some(Ok(s)) => return Ok(s),
            Some(Err(e)) => last = io_sentence(&e),
            None => last = format!("no connection within {} s", limit.as_secs()),
        }
    }
    Err(FetchError::Retry(format!(
        "cannot connect to {url}: {last}"
    )))
}

/// GET the data from `offset` on.
pub async fn fetch(
    runtime: &Arc<dyn Runtime>,
    req: &HttpRequest,
    offset: u64,
    opts: &FetchOptions,
) -> Result<Fetched, FetchError> {
    let url = req.url.as_str();
    let (tls, host, port, path) = parse_url(url)?;
    let addrs = async_net::resolve((host.as_str(), port))
        .await
        .map_err(|e| FetchError::Retry(format!("cannot resolve {host}: {}", io_sentence(&e))))?;
    ssrf::check_all(&host, &addrs, opts.allow_private).map_err(FetchError::Fatal)?;
    let tcp = connect(&addrs, url, opts.connect_timeout).await?;
    let _ = tcp.set_nodelay(true);
    let conn: Box<dyn Conn> = if tls {
        let name = futures_rustls::rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| FetchError::Fatal(format!("{host:?} is not a valid TLS server name")))?;
        let s = timeout(opts.connect_timeout, tls_connector().connect(name, tcp))
            .await
            .ok_or_else(|| {
                FetchError::Retry(format!("TLS handshake with {url} did not finish in time"))
            })?
            .map_err(|e| FetchError::Retry(format!("TLS handshake with {url} failed: {e}")))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(FuturesIo::new(conn))
            .await
            .map_err(|e| FetchError::Retry(format!("HTTP with {url} failed: {e}")))?;
    let (connection, abort) = future::abortable(connection);
    runtime.spawn(Box::pin(async move {
        let _ = connection.await;
    }));
    let guard = AbortOnDrop(abort);
    let host_header = match (tls, port) {
        (true, 443) | (false, 80) => host.clone(),
        _ if host.contains(':') => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let mut request = Request::get(path).header(header::HOST, host_header).header(
        header::USER_AGENT,
        concat!("dealport/", env!("CARGO_PKG_VERSION")),
    );
    for (k, v) in &req.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    if offset > 0 {
        request = request.header(header::RANGE, format!("bytes={offset}-"));
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| FetchError::Fatal(format!("the transfer headers are not valid HTTP: {e}")))?;
    let response = timeout(opts.idle_timeout, sender.send_request(request))
        .await
        .ok_or_else(|| {
            FetchError::Retry(format!(
                "{url} did not answer within {} s",
                opts.idle_timeout.as_secs()
            ))
        })?
        .map_err(|e| FetchError::Retry(format!("GET {url} failed: {e}")))?;
    let status = response.status();
    let headers = response.headers();
    let number = |name: header::HeaderName| -> Option<u64> {
        headers.get(name)?.to_str().ok()?.trim().parse().ok()
    };
    let content_length = number(header::CONTENT_LENGTH);
    let (from, declared_total) = match status {
        StatusCode::OK => (0, content_length),
        StatusCode::PARTIAL_CONTENT if offset > 0 => {
            let range = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let (start, total) = parse_content_range(range).ok_or_else(|| {
                FetchError::Fatal(format!(
                    "{url} answered 206 with an unusable Content-Range {range:?}"
                ))
            })?;
            if start != offset {
                return Err(FetchError::Fatal(format!(
                    "{url} answered our Range from byte {offset} with data from byte {start}"
                )));
            }
            (start, total.or(content_length.map(|n| offset + n)))
        }
        s if s.is_redirection() => {
            let to = headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Err(FetchError::Fatal(format!(
                "{url} redirects ({}) to {to}; redirects are not followed",
                s.as_u16()
            )));
        }
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::TOO_MANY_REQUESTS =>
        {
            return Err(FetchError::Retry(format!("{url} answered {s}")));
        }
        s => return Err(FetchError::Fatal(format!("{url} answered {s}"))),
    };
    Ok(Fetched {
        from,
        declared_total,
        body: response.into_body(),
        _conn: guard,
    })
}

/// `bytes <start>-<end>/<total or *>`: the start and the total.
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_ranges_parse() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/a/b.car?x=1").unwrap(),
            (false, "127.0.0.1".into(), 8080, "/a/b.car?x=1".into())
        );
        assert_eq!(
            parse_url("https://[::1]/d").unwrap(),
            (true, "::1".into(), 443, "/d".into())
        );
        assert!(matches!(parse_url("ftp://x/y"), Err(FetchError::Fatal(_))));
        assert!(matches!(
            parse_url("libp2p:///ip4/1.2.3.4/tcp/1"),
            Err(FetchError::Fatal(_))
        ));
        assert!(matches!(
            parse_url("http://u:p@h/"),
            Err(FetchError::Fatal(_))
        ));
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
