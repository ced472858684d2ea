//! The client's dial-only transport: TCP (by IP or DNS name), WebSocket and TLS
//! WebSocket (`/dns/<host>/tcp/443/wss`, as Curio publishes), then Noise or TLS and yamux
//! exactly as `p2p::transport` builds them for the host.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use async_net::TcpStream;
use futures::{future::BoxFuture, FutureExt};
use libp2p::{
    core::{
        multiaddr::Protocol,
        muxing::StreamMuxerBox,
        transport::{Boxed, DialOpts, ListenerId, TransportError, TransportEvent},
        upgrade::Version,
        Transport,
    },
    identity::Keypair,
    noise, tls, websocket, yamux, Multiaddr, PeerId,
};

use dealport_node::p2p::transport::{SelectSecurity, TransportBuildError};

/// Where a TCP dial goes: an IP address, or a name resolved at dial time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name { name: String, v4: bool, v6: bool },
}

/// `/ip4|ip6|dns|dns4|dns6/<h>/tcp/<port>` optionally followed by `/p2p/<id>`; nothing else.
fn tcp_target(addr: &Multiaddr) -> Option<(Host, u16)> {
    let mut it = addr.iter();
    let host = match it.next()? {
        Protocol::Ip4(ip) => Host::Ip(ip.into()),
        Protocol::Ip6(ip) => Host::Ip(ip.into()),
        Protocol::Dns(h) => Host::Name {
            name: h.to_string(),
            v4: true,
            v6: true,
        },
        Protocol::Dns4(h) => Host::Name {
            name: h.to_string(),
            v4: true,
            v6: false,
        },
        Protocol::Dns6(h) => Host::Name {
            name: h.to_string(),
            v4: false,
            v6: true,
        },
        _ => return None,
    };
    let port = match it.next()? {
        Protocol::Tcp(p) if p != 0 => p,
        _ => return None,
    };
    match (it.next(), it.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => Some((host, port)),
        _ => None,
    }
}

/// Dial-only TCP with DNS resolution (through the system resolver, off the async threads).
#[derive(Debug, Default)]
pub struct DialTcp;

impl Transport for DialTcp {
    type Output = TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Ready<io::Result<TcpStream>>;
    type Dial = BoxFuture<'static, io::Result<TcpStream>>;

    fn listen_on(
        &mut self,
        _id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<io::Error>> {
        let Some((host, port)) = tcp_target(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        Ok(async move {
            let candidates: Vec<SocketAddr> = match host {
                Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
                Host::Name { name, v4, v6 } => {
                    let all = async_net::resolve((name.as_str(), port))
                        .await
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("cannot resolve {name}: {e}"))
                        })?;
                    let kept: Vec<_> = all
                        .into_iter()
                        .filter(|a| (a.is_ipv4() && v4) || (a.is_ipv6() && v6))
                        .collect();
                    if kept.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{name} has no usable address"),
                        ));
                    }
                    kept
                }
            };
            let mut last = None;
            for sa in candidates {
                match TcpStream::connect(sa).await {
                    Ok(s) => {
                        s.set_nodelay(true)?;
                        return Ok(s);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::other("no address to dial")))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

/// Names a PEM file of CA certificates the client trusts for `/wss` besides the web PKI
/// roots (a provider behind a private CA; the tests' self-signed terminator).
pub const CA_FILE_ENV: &str = "DEALPORT_CA_FILE";

/// TLS for `/wss`: the web PKI roots, plus the certificates in `$DEALPORT_CA_FILE`.
fn wss_tls() -> Result<websocket::tls::Config, TransportBuildError> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let Some(path) = std::env::var_os(CA_FILE_ENV) else {
        return Ok(websocket::tls::Config::client());
    };
    let bad = |what: String| {
        TransportBuildError::CaFile(format!(
            "{CA_FILE_ENV}={}: {what}",
            std::path::Path::new(&path).display()
        ))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    let mut b = websocket::tls::Config::builder();
    for c in certs {
        b.add_trust(&websocket::tls::Certificate::new(c.to_vec()))
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(b.finish())
}

/// TCP or (TLS) WebSocket, then TLS-or-Noise (TLS offered first, as go-libp2p), yamux.
pub fn build_client_transport(
    keypair: &Keypair,
    handshake_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, TransportBuildError> {
    let mut ws = websocket::Config::new(DialTcp);
    ws.set_tls_config(wss_tls()?);
    let base = DialTcp.or_transport(ws).boxed();
    Ok(base
        .upgrade(Version::V1)
        .authenticate(SelectSecurity(
            tls::Config::new(keypair)?,
            noise::Config::new(keypair)?,
        ))
        .multiplex(yamux::Config::default())
        .timeout(handshake_timeout)
        .boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_targets() {
        let t = |s: &str| tcp_target(&s.parse().unwrap());
        assert!(t("/ip4/127.0.0.1/tcp/1").is_some());
        assert!(t("/dns/example.com/tcp/443").is_some());
        assert!(t("/dns/example.com/tcp/443/wss").is_none());
        assert!(t("/ip4/127.0.0.1/tcp/1/ws").is_none());
        assert!(t("/ip4/127.0.0.1/tcp/0").is_none());
    }
}
