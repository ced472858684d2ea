//! Multiaddr helpers the host, the lease holder and the relay share: which listener the
//! relay reaches, the address a holder records for the other nodes, `/p2p/<id>` suffixes.
//! Uses only libp2p's address types.

use std::net::{IpAddr, SocketAddr};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

/// The first IP in `addr`.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// `addr` ending in `/p2p/<peer>` (unchanged when it has one).
pub fn with_p2p(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    if addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
        addr.clone()
    } else {
        addr.clone().with(Protocol::P2p(peer))
    }
}

/// The WebSocket listener to relay to, from the host's listen addresses: the loopback
/// one if there is one (the relay runs on this machine), else the first.
pub fn ws_socket_addr(listen: &[Multiaddr]) -> Option<SocketAddr> {
    let ws: Vec<SocketAddr> = listen
        .iter()
        .filter_map(|a| {
            let mut port = None;
            let mut is_ws = false;
            for p in a.iter() {
                match p {
                    Protocol::Tcp(n) => port = Some(n),
                    Protocol::Ws(_) => is_ws = true,
                    _ => {}
                }
            }
            Some(SocketAddr::new(ip_of(a)?, port?)).filter(|_| is_ws)
        })
        .collect();
    ws.iter()
        .find(|s| s.ip().is_loopback())
        .or(ws.first())
        .copied()
}

/// The address a holder records so the other nodes' relays reach its WebSocket listener.
pub fn internal_ws_multiaddr(host: IpAddr, port: u16) -> Multiaddr {
    let ip = match host {
        IpAddr::V4(v) => Protocol::Ip4(v),
        IpAddr::V6(v) => Protocol::Ip6(v),
    };
    Multiaddr::empty()
        .with(ip)
        .with(Protocol::Tcp(port))
        .with(Protocol::Ws("/".into()))
}

/// The relay target written by a holder, as a socket address.
pub fn relay_socket_addr(local_listen: &str) -> Option<SocketAddr> {
    let ma: Multiaddr = local_listen.parse().ok()?;
    ws_socket_addr(&[ma])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_target_parses_the_written_address() {
        let ma = internal_ws_multiaddr("10.0.0.7".parse().unwrap(), 4001);
        assert_eq!(ma.to_string(), "/ip4/10.0.0.7/tcp/4001/ws");
        assert_eq!(
            relay_socket_addr(&ma.to_string()),
            Some("10.0.0.7:4001".parse().unwrap())
        );
        assert_eq!(relay_socket_addr("/ip4/10.0.0.7/tcp/4001"), None);
    }

    #[test]
    fn the_loopback_websocket_listener_is_preferred() {
        let listen: Vec<Multiaddr> = [
            "/ip4/127.0.0.1/tcp/4000",
            "/ip4/10.0.0.7/tcp/4001/ws",
            "/ip4/127.0.0.1/tcp/4002/ws",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            ws_socket_addr(&listen),
            Some("127.0.0.1:4002".parse().unwrap())
        );
        assert_eq!(
            ws_socket_addr(&listen[..1]),
            None,
            "TCP only: no relay target"
        );
    }
}
