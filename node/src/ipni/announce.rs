//! HTTP announcements to indexers (ipni/specs IPNI.md "Announcements", HTTP): a `PUT`
//! of the announce message's JSON to each `[ipni] announce_urls` entry (`/announce`
//! when the URL has no path, as go-libipni's HTTP sender does), retried with doubling
//! back-off a bounded number of times.
//!
//! The queue holds one advertisement: announcing the newest covers every older one (an
//! indexer walks the chain back from it to what it has), so a newer one replaces a
//! waiting one. Uses `outbound` (TLS), `runtime` (deadlines).
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use dealport_core::wire::Cid;
use futures::{channel::mpsc, future, future::Either, StreamExt};
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full};
use smol_hyper::rt::FuturesIo;

use crate::{
    outbound::{io_sentence, tls_connector, Conn},
    runtime::deadline,
};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// First wait.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Most of an indexer's answer body read (for the log line).
const MAX_ANSWER: usize = 4096;

/// Where and how to announce.
#[derive(Debug, Clone)]
pub struct AnnounceSettings {
    pub urls: Vec<String>,
    pub timeout: Duration,
    pub attempts: u32,
}

/// The announce URLs as go-libipni's sender uses them: `/announce` added to a URL with
/// no path, duplicates dropped. Errors name the bad URL.
pub fn announce_urls(urls: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        let uri: Uri = u
            .parse()
            .map_err(|_| format!("[ipni] announce_urls: {u:?} is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "[ipni] announce_urls: {u:?} is not an http:// or https:// URL"
            ));
        }
        let full = if uri.path() == "/" && !u.ends_with('/') {
            format!("{}/announce", u.trim_end_matches('/'))
        } else {
            u.clone()
        };
        if !out.contains(&full) {
            out.push(full);
        }
    }
    Ok(out)
}

/// The newest advertisement waiting to be announced, and the wake-up.
pub struct Announcer {
    settings: AnnounceSettings,
    waiting: Mutex<Option<(Cid, Vec<u8>)>>,
    wake: mpsc::Sender<()>,
    woken: futures::lock::Mutex<mpsc::Receiver<()>>,
}

impl Announcer {
    pub fn new(settings: AnnounceSettings) -> Announcer {
        let (wake, woken) = mpsc::channel(1);
        Announcer {
            settings,
            waiting: Mutex::new(None),
            wake,
            woken: futures::lock::Mutex::new(woken),
        }
    }

    /// Queue `message` (the JSON for `ad`), replacing any older one still waiting.
    pub fn queue(&self, ad: Cid, message: Vec<u8>) {
        if self.settings.urls.is_empty() {
            return;
        }
        *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = Some((ad, message));
        // Full: a wake-up is already pending, which is all this needs.
        let _ = self.wake.clone().try_send(());
    }

    fn take(&self) -> Option<(Cid, Vec<u8>)> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Announce whatever is queued, until dropped (inside the lease holder's task).
    pub async fn run(&self) {
        let mut woken = self.woken.lock().await;
        loop {
            while let Some((ad, msg)) = self.take() {
                for url in &self.settings.urls {
                    self.announce_to(url, &ad, &msg).await;
                }
            }
            if woken.next().await.is_none() {
                return;
            }
        }
    }

    async fn announce_to(&self, url: &str, ad: &Cid, msg: &[u8]) {
        let mut backoff = FIRST_BACKOFF;
        let attempts = self.settings.attempts.max(1);
        for attempt in 1..=attempts {
            let sent = deadline(Instant::now() + self.settings.timeout, put(url, msg))
                .await
                .unwrap_or_else(|| {
                    Err(format!(
                        "no answer within {} s",
                        self.settings.timeout.as_secs()
                    ))
                });
            match sent {
                Ok(()) => {
                    tracing::info!(%ad, %url, "announced to the indexer");
                    return;
                }
                Err(e) if attempt < attempts => {
                    tracing::info!(%ad, %url, attempt, error = %e, ?backoff, "announce failed, retrying");
                    async_io::Timer::after(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::warn!(%ad, %url, attempts, error = %e, "announce failed; the indexer still finds the advertisement when it polls the head or on the next announcement")
                }
            }
        }
    }
}

/// One `PUT url` with `body` as `application/json`; `Ok` on 200 or 204.
async fn put(url: &str, body: &[u8]) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    let tls = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or("no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let tcp = async_net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| io_sentence(&e))?;
    let _ = tcp.set_nodelay(true);
    let conn: Box<dyn Conn> = if tls {
        let name = futures_rustls::rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
        Box::new(
            tls_connector()
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?,
        )
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(FuturesIo::new(conn))
            .await
            .map_err(|e| e.to_string())?;
    let host_header = match uri.port_u16() {
        Some(p) => format!("{}:{p}", uri.host().unwrap_or_default()),
        None => uri.host().unwrap_or_default().to_owned(),
    };
    let request = Request::put(path)
        .header(header::HOST, host_header)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("dealport/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    let work = async move {
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let answer = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status == http::StatusCode::OK || status == http::StatusCode::NO_CONTENT {
            Ok(())
        } else {
            Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&answer).trim()
            ))
        }
    };
    // The connection is driven right here, alongside the request.
    match future::select(std::pin::pin!(work), connection).await {
        Either::Left((out, _)) => out,
        Either::Right((_, work)) => work.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_announce_path_and_lose_duplicates() {
        let got = announce_urls(&[
            "https://cid.contact".into(),
            "https://cid.contact/".into(),
            "http://127.0.0.1:3001/ingest/announce".into(),
            "https://cid.contact".into(),
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                "https://cid.contact/announce",
                "https://cid.contact/",
                "http://127.0.0.1:3001/ingest/announce"
            ]
        );
        assert!(announce_urls(&["ftp://x".into()]).is_err());
        assert!(announce_urls(&["not a url".into()]).is_err());
    }
}
