//! The `/fil/retrieval/transports/1.0.0` answer from `[retrieval]`, and this node's own
//! HTTP announce address. Uses `config` and core's `retrieval`; no I/O.
use std::net::SocketAddr;

use dealport_core::{
    retrieval::{transports, Endpoints},
    wire::TransportsResponse,
};
use libp2p::{multiaddr::Protocol, Multiaddr};

use crate::config::RetrievalConfig;

/// This node's HTTP announce address: `http_announce` if set; else the bound HTTP
/// address when it is a specific IP (`/ip4/<ip>/tcp/<port>/http`); else derived from
/// the first `[libp2p] announce` address with a host: a `…/tcp/<p>/wss` (or
/// `/tls/ws`) one is the TLS proxy in front of this HTTP server, so `…/tcp/<p>/https`;
/// any other gives `<host>/tcp/<HTTP port>/http`. `None`: unknown (say so in the log).
pub fn own_http(
    c: &RetrievalConfig,
    http_bound: SocketAddr,
    libp2p_announce: &[Multiaddr],
) -> Option<Multiaddr> {
    if let Some(a) = &c.http_announce {
        return Some(a.clone());
    }
    let ip = http_bound.ip();
    if !ip.is_unspecified() {
        return Some(
            Multiaddr::from(ip)
                .with(Protocol::Tcp(http_bound.port()))
                .with(Protocol::Http),
        );
    }
    libp2p_announce.iter().find_map(|a| {
        let mut parts = a.iter();
        let host = match parts.next()? {
            h @ (Protocol::Ip4(_)
            | Protocol::Ip6(_)
            | Protocol::Dns(_)
            | Protocol::Dns4(_)
            | Protocol::Dns6(_)) => h,
            _ => return None,
        };
        let Some(Protocol::Tcp(port)) = parts.next() else {
            return None;
        };
        let rest: Vec<Protocol> = parts.collect();
        let tls = matches!(rest.first(), Some(Protocol::Wss(_)))
            || matches!(rest.as_slice(), [Protocol::Tls, Protocol::Ws(_), ..]);
        let base = Multiaddr::empty().with(host);
        Some(if tls {
            base.with(Protocol::Tcp(port)).with(Protocol::Https)
        } else {
            base.with(Protocol::Tcp(http_bound.port()))
                .with(Protocol::Http)
        })
    })
}

/// The transports answer: the configured endpoints, and `own_http` (when serving
/// pieces) if no `http` endpoint is configured.
pub fn answer(c: &RetrievalConfig, own_http: Option<&Multiaddr>) -> TransportsResponse {
    let bytes = |v: &[Multiaddr]| v.iter().map(|a| a.to_vec()).collect();
    let endpoints = Endpoints {
        http: bytes(&c.http),
        libp2p: bytes(&c.libp2p),
        bitswap: bytes(&c.bitswap),
    };
    let own = own_http.filter(|_| c.serve_pieces).map(|a| a.to_vec());
    transports(&endpoints, own.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_own_http_address_comes_from_the_key_the_listener_or_the_announce() {
        let any: SocketAddr = "0.0.0.0:12310".parse().unwrap();
        let mut c = RetrievalConfig::default();
        assert_eq!(own_http(&c, any, &[]), None);
        assert_eq!(
            own_http(&c, "10.1.2.3:8080".parse().unwrap(), &[]),
            Some(ma("/ip4/10.1.2.3/tcp/8080/http"))
        );
        assert_eq!(
            own_http(&c, any, &[ma("/dns/sp.example.com/tcp/443/wss")]),
            Some(ma("/dns/sp.example.com/tcp/443/https"))
        );
        assert_eq!(
            own_http(&c, any, &[ma("/ip4/1.2.3.4/tcp/24001/tls/ws")]),
            Some(ma("/ip4/1.2.3.4/tcp/24001/https"))
        );
        assert_eq!(
            own_http(&c, any, &[ma("/p2p-circuit"), ma("/ip4/1.2.3.4/tcp/24001")]),
            Some(ma("/ip4/1.2.3.4/tcp/12310/http"))
        );
        c.http_announce = Some(ma("/dns/retrieve.example.com/tcp/443/https"));
        assert_eq!(
            own_http(&c, "10.1.2.3:8080".parse().unwrap(), &[]),
            c.http_announce
        );
    }

    #[test]
    fn the_own_address_is_listed_only_while_serving() {
        let own = ma("/ip4/127.0.0.1/tcp/9/http");
        let mut c = RetrievalConfig::default();
        assert!(answer(&c, Some(&own)).protocols.is_empty());
        c.serve_pieces = true;
        let r = answer(&c, Some(&own));
        assert_eq!(r.protocols[0].name, "http");
        assert_eq!(r.protocols[0].addresses, vec![own.to_vec()]);
        c.libp2p = vec![ma("/ip4/1.2.3.4/tcp/5")];
        let names: Vec<_> = answer(&c, None)
            .protocols
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["libp2p"]);
    }
}
