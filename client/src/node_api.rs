//! The node API's client side (hyper's HTTP/1.1 client, one request per connection):
//! [`get`] for `dealport deals list|show` while the node runs, and [`import_file`] for
//! `dealport deals import`, streaming a file to `PUT /api/v1/deals/<uuid>/data` (read in
//! 1 MiB chunks on the blocking pool).
use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use dealport_core::wire::DealUuid;
use futures::{
    future::{self, Either},
    StreamExt,
};
use http::{header, Request};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use smol_hyper::rt::FuturesIo;

use dealport_node::{
    outbound::{tls_connector, Conn},
    runtime::Runtime,
};

use crate::http::HttpTarget;

/// Largest answer read.
const MAX_ANSWER: usize = 1 << 20;
/// How long an upload waits for `100 Continue` before sending its body anyway.
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// `GET /api/v1/<path>` on the node at `node` (`http(s)://host:port`) with the bearer
/// `token`: the HTTP status and the answer's body.
pub async fn get(
    node: &str,
    token: &str,
    path: &str,
    connect_timeout: Duration,
) -> Result<(u16, String), String> {
    let target = HttpTarget::parse(node).map_err(|e| e.to_string())?;
    let request = Request::builder()
        .method(http::Method::GET)
        .uri(format!("{}/api/v1/{path}", target.base))
        .header(header::HOST, format!("{}:{}", target.host, target.port))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    exchange(&target, request, connect_timeout).await
}

/// Stream `file` as deal `uuid`'s data to the node at `node` (`http(s)://host:port`).
/// The HTTP status and the answer's body.
///
/// The deal is read first (`GET /api/v1/deals/<uuid>`): a wrong token, an API that is
/// off or an unknown deal is answered before any data is sent (a server refusing an
/// upload early closes the connection under the client's feet).
pub async fn import_file(
    runtime: Arc<dyn Runtime>,
    node: &str,
    token: &str,
    uuid: DealUuid,
    file: &Path,
    connect_timeout: Duration,
) -> Result<(u16, String), String> {
    let target = HttpTarget::parse(node).map_err(|e| e.to_string())?;
    let f =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?
        .len();
    let path = format!("{}/api/v1/deals/{uuid}", target.base);
    let request = |method: http::Method, path: String| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{}:{}", target.host, target.port))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
    };
    let get = request(http::Method::GET, path.clone())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let (code, body) = exchange(&target, get, connect_timeout).await?;
    if code != 200 {
        return Ok((code, body));
    }
    let deal: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if deal["is_offline"] != true
        || deal["error"] != serde_json::Value::Null
        || deal["checkpoint"] != "Accepted"
    {
        return Err(format!(
            "deal {uuid} is not waiting for data: it is {} ({})",
            deal["state"].as_str().unwrap_or("?"),
            if deal["is_offline"] == true {
                "offline"
            } else {
                "an online deal, downloaded from its URL"
            }
        ));
    }
    // `Expect: 100-continue`: the body waits for the node's go-ahead, so a node that
    // refuses (a standby, a deal that cannot take data) is heard with its own status and
    // sentence instead of a connection closed under a body in flight. A server that
    // never says 100 gets the body after CONTINUE_WAIT, as curl does.
    let (go, go_ahead) = futures::channel::oneshot::channel::<()>();
    let go = std::sync::Mutex::new(Some(go));
    let wait = async move {
        let _ = dealport_node::runtime::timeout(CONTINUE_WAIT, go_ahead).await;
        None
    };
    let chunks = futures::stream::once(wait)
        .filter_map(futures::future::ready)
        .chain(dealport_node::api::files::read_chunks(runtime, f))
        .map(|c| c.map(Frame::data));
    let mut put = request(http::Method::PUT, format!("{path}/data"))
        .header(header::CONTENT_LENGTH, len)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::EXPECT, "100-continue")
        .body(StreamBody::new(chunks))
        .map_err(|e| e.to_string())?;
    hyper::ext::on_informational(&mut put, move |r| {
        if r.status() == http::StatusCode::CONTINUE {
            if let Some(go) = go.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = go.send(());
            }
        }
    });
    exchange(&target, put, connect_timeout).await
}

/// One request on a fresh connection; the status and the answer's body.
async fn exchange<B>(
    target: &HttpTarget,
    request: Request<B>,
    connect_timeout: Duration,
) -> Result<(u16, String), String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let url = target.url(request.uri().path());
    let connect = async_net::TcpStream::connect((target.host.as_str(), target.port));
    let tcp = match dealport_node::runtime::timeout(connect_timeout, connect).await {
        Some(r) => r.map_err(|e| format!("cannot connect to {url}: {e}"))?,
        None => {
            return Err(format!(
                "cannot connect to {url}: no connection within {} s",
                connect_timeout.as_secs()
            ))
        }
    };
    let conn: Box<dyn Conn> = if target.tls {
        let name = futures_rustls::rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|_| format!("{:?} is not a valid TLS server name", target.host))?;
        Box::new(
            tls_connector()
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {url} failed: {e}"))?,
        )
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(FuturesIo::new(conn))
        .await
        .map_err(|e| format!("HTTP with {url} failed: {e}"))?;
    let exchange_url = url.clone();
    let exchange = async move {
        let url = exchange_url;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{url} failed: {e}"))?;
        let code = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer from {url}: {e}"))?
            .to_bytes();
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    };
    // The connection is driven here, beside the exchange, and ends with it. A node that
    // answers early and closes ends the connection with an error while the answer is
    // already in: the exchange still yields it.
    match future::select(std::pin::pin!(exchange), connection).await {
        Either::Left((r, _)) => r,
        Either::Right((Ok(()), exchange)) => exchange.await,
        Either::Right((Err(e), exchange)) => {
            match dealport_node::runtime::timeout(connect_timeout, exchange).await {
                Some(Ok(answer)) => Ok(answer),
                _ => Err(format!("HTTP with {url} failed: {e}")),
            }
        }
    }
}
