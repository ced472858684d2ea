//! Outbound connections the node (deal downloads) and the client crate share: one TLS
//! connector over the web PKI roots, the connection trait both speak HTTP over, and I/O
//! errors as the short phrases users read. Uses no other module of the node.

use std::sync::Arc;

use futures::{AsyncRead, AsyncWrite};
use futures_rustls::{rustls, TlsConnector};

/// A byte stream HTTP runs over: plain TCP or TLS.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// A TLS client over the web PKI roots (ring).
pub fn tls_connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// An I/O error as a short lower-case phrase ("connection refused").
pub fn io_sentence(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        TimedOut => "timed out".into(),
        UnexpectedEof => "connection closed".into(),
        BrokenPipe => "connection closed".into(),
        _ => {
            // Drop the "(os error N)" suffix std adds.
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}
