//! The WebSocket relay's decisions, as values: which address a client really comes from
//! (a TLS proxy's `X-Forwarded-For`, only when that proxy is trusted), the signed header
//! that tells the libp2p host that address, where WebSocket frames begin and end in the
//! spliced byte stream (so a close frame can be put between two frames), and what the
//! relay does when a side ends or both go quiet.
//!
//! The relay itself (node/src/http/relay.rs) copies bytes and asks these.

use std::{net::IpAddr, time::Duration};

use sha2::{Digest, Sha256};

/// The header the relay adds to its WebSocket upgrade request to the host:
/// `<client ip> <hex HMAC-SHA256 of the ip under the relay key>`.
pub const RELAYED_FOR: &str = "x-dealport-relayed-for";

/// The first address in `forwarded_for` (the `X-Forwarded-For` values in order) that is
/// not a trusted proxy, read from the right, if `peer` (the TCP peer) is a trusted proxy;
/// otherwise `peer`. An entry that is not an address stops the walk there (what lies to
/// its left cannot be trusted): the last trusted hop is the answer then.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut candidate = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return candidate;
        };
        if !trusted.contains(&ip) {
            return ip;
        }
        candidate = ip;
    }
    candidate
}

/// `1.2.3.4`, `1.2.3.4:5`, `::1`, `[::1]:5`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

/// A relay key: derived by every node of a cluster from the identity they share.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RelayKey([u8; 32]);

impl std::fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayKey(<redacted>)")
    }
}

/// HMAC-SHA256 of `msg` under the relay key.
fn hmac(key: &RelayKey, msg: &[u8]) -> [u8; 32] {
    crate::mac::hmac_sha256(&key.0, msg)
}

/// The relay key for the secret bytes of a node identity.
pub fn relay_key(identity_secret: &[u8]) -> RelayKey {
    RelayKey(
        Sha256::new()
            .chain_update(b"dealport relay header key v1\0")
            .chain_update(identity_secret)
            .finalize()
            .into(),
    )
}

/// The value of [`RELAYED_FOR`] for `ip`.
pub fn relayed_for_value(key: &RelayKey, ip: IpAddr) -> String {
    let ip = ip.to_string();
    let mac = hmac(key, ip.as_bytes());
    format!("{ip} {}", data_encoding::HEXLOWER.encode(&mac))
}

/// The address a [`RELAYED_FOR`] value vouches for, if its MAC is right.
pub fn verify_relayed_for(key: &RelayKey, value: &str) -> Option<IpAddr> {
    let (ip_text, mac_hex) = value.trim().split_once(' ')?;
    let ip: IpAddr = ip_text.parse().ok()?;
    let mac = data_encoding::HEXLOWER_PERMISSIVE
        .decode(mac_hex.trim().as_bytes())
        .ok()?;
    let want = hmac(key, ip_text.as_bytes());
    crate::mac::constant_time_eq(&mac, &want).then_some(ip)
}

/// Where an HTTP request head ends (just past its blank line), if it is all in `buf`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The address a complete request head's [`RELAYED_FOR`] header vouches for, if it has
/// one with the right MAC (the first such header counts).
pub fn relayed_for_in_head(key: &RelayKey, head: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(RELAYED_FOR)
            .then(|| verify_relayed_for(key, value))?
    })
}

/// Follows the WebSocket frame boundaries of one direction of a spliced stream by
/// reading frame headers only (RFC 6455 §5.2); payloads are skipped, never decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameCursor {
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
}

impl FrameCursor {
    /// Account for `bytes`, the next bytes of the stream.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len() as u64);
                self.left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some(len) = self.header_done() {
                self.left = len;
                self.have = 0;
            }
        }
    }

    /// The payload length once the header is complete.
    fn header_done(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let masked = self.header[1] & 0x80 != 0;
        let len7 = self.header[1] & 0x7f;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let need = 2 + ext + if masked { 4 } else { 0 };
        if self.have < need {
            return None;
        }
        Some(match ext {
            0 => u64::from(len7),
            n => self.header[2..2 + n]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        })
    }

    /// Between two frames: a frame of the relay's own may be written here.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }
}

/// A close frame (RFC 6455 §5.5.1) with `code` and `reason`; masked (with `mask`) when
/// sent to a server, as every client-to-server frame must be.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    let mut out = vec![0x88, payload.len() as u8];
    if let Some(m) = mask {
        out[1] |= 0x80;
        out.extend_from_slice(&m);
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    out.extend_from_slice(&payload);
    out
}

/// One side of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Host,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Host,
            Side::Host => Side::Client,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Host => "host",
        }
    }
}

/// Why a relay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEnd {
    /// This side closed its connection first (and the other followed, or the grace ran out).
    Closed(Side),
    /// This side's connection failed.
    Gone(Side, String),
    /// No byte in either direction for the idle limit.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

impl std::fmt::Display for RelayEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayEnd::Closed(side) => write!(f, "closed by the {}", side.name()),
            RelayEnd::Gone(side, e) => write!(f, "the {} went away: {e}", side.name()),
            RelayEnd::Idle => f.write_str("idle timeout"),
            RelayEnd::Shutdown => f.write_str("server shutting down"),
        }
    }
}

/// How long after one side closed the relay waits for the other side to finish.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// When a relay whose last byte passed at `last_activity` (time since it opened) is idle.
pub fn idle_deadline(last_activity: Duration, limit: Duration) -> Duration {
    last_activity.saturating_add(limit)
}

/// What the relay does when `side` ended its sending (end of stream): pass the end on
/// to the other side (shut down writing there) and give the other direction
/// [`CLOSE_GRACE`] to finish, or, when the other side had already ended, finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterEnd {
    ShutWriteThenWait { to: Side, grace: Duration },
    Finish,
}

pub fn after_end(other_already_ended: bool, side: Side) -> AfterEnd {
    if other_already_ended {
        AfterEnd::Finish
    } else {
        AfterEnd::ShutWriteThenWait {
            to: side.other(),
            grace: CLOSE_GRACE,
        }
    }
}

/// The close frames the relay writes itself when it ends for its own reason (idle,
/// shutdown) or because one side failed: `1001 going away` with a reason, to each side
/// that is still there and whose direction is between frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Farewell {
    pub to_client: Option<&'static str>,
    pub to_host: Option<&'static str>,
}

/// The WebSocket close code of a [`Farewell`].
pub const GOING_AWAY: u16 = 1001;

pub fn farewell(end: &RelayEnd, client_at_boundary: bool, host_at_boundary: bool) -> Farewell {
    let (to_client, to_host) = match end {
        RelayEnd::Closed(_) => (None, None),
        RelayEnd::Gone(Side::Client, _) => (None, Some("client went away")),
        RelayEnd::Gone(Side::Host, _) => (Some("libp2p host went away"), None),
        RelayEnd::Idle => (Some("relay idle timeout"), Some("relay idle timeout")),
        RelayEnd::Shutdown => (Some("server shutting down"), Some("server shutting down")),
    };
    Farewell {
        to_client: to_client.filter(|_| client_at_boundary),
        to_host: to_host.filter(|_| host_at_boundary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_only_from_a_trusted_proxy() {
        let proxy = ip("10.0.0.2");
        let trusted = [proxy];
        // Untrusted peer: its header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.9"), &["203.0.113.1"], &trusted),
            ip("198.51.100.9")
        );
        // Trusted peer: the rightmost untrusted hop.
        assert_eq!(
            client_ip(proxy, &["203.0.113.1"], &trusted),
            ip("203.0.113.1")
        );
        assert_eq!(
            client_ip(proxy, &["1.1.1.1, 203.0.113.1", "10.0.0.2"], &trusted),
            ip("203.0.113.1"),
            "a spoofed leftmost entry is not believed"
        );
        assert_eq!(
            client_ip(proxy, &["[2001:db8::1]:443"], &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(proxy, &["203.0.113.1:80"], &trusted),
            ip("203.0.113.1")
        );
        // Nothing usable: the proxy itself.
        assert_eq!(client_ip(proxy, &[], &trusted), proxy);
        assert_eq!(client_ip(proxy, &["garbage"], &trusted), proxy);
        assert_eq!(client_ip(proxy, &["203.0.113.1, unknown"], &trusted), proxy);
    }

    #[test]
    fn relayed_for_needs_the_key() {
        let key = relay_key(b"identity");
        let other = relay_key(b"another identity");
        let v = relayed_for_value(&key, ip("203.0.113.7"));
        assert_eq!(verify_relayed_for(&key, &v), Some(ip("203.0.113.7")));
        assert_eq!(verify_relayed_for(&other, &v), None);
        let forged = v.replace("203.0.113.7", "203.0.113.8");
        assert_eq!(verify_relayed_for(&key, &forged), None);
        assert_eq!(verify_relayed_for(&key, "203.0.113.7"), None);
        assert_eq!(verify_relayed_for(&key, "203.0.113.7 zz"), None);
        let head = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Dealport-Relayed-For: {v}\r\nUpgrade: websocket\r\n\r\n"
        );
        assert_eq!(head_end(head.as_bytes()), Some(head.len()));
        assert_eq!(
            relayed_for_in_head(&key, head.as_bytes()),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(relayed_for_in_head(&other, head.as_bytes()), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn frame_cursor_follows_boundaries_across_any_split() {
        let mut stream = Vec::new();
        stream.extend(close_frame(1000, "bye", None)); // 7-bit length, unmasked
        stream.extend(close_frame(1001, "x", Some([1, 2, 3, 4]))); // masked
        let mut big = vec![0x82, 126, 0x01, 0x00];
        big.extend(vec![7u8; 256]);
        stream.extend(&big);
        let mut huge = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9];
        huge.extend(vec![7u8; 65536]);
        stream.extend(&huge);
        let boundaries = [0, 7, 7 + 9, 7 + 9 + 260, stream.len()];
        for chunk in [1, 2, 3, 5, 13, 4096, stream.len()] {
            let mut c = FrameCursor::default();
            let mut at = 0;
            for part in stream.chunks(chunk) {
                c.advance(part);
                at += part.len();
                assert_eq!(
                    c.at_boundary(),
                    boundaries.contains(&at),
                    "chunk {chunk} at {at}"
                );
            }
        }
    }

    #[test]
    fn close_frame_bytes() {
        assert_eq!(
            close_frame(1001, "a", None),
            vec![0x88, 3, 0x03, 0xe9, b'a']
        );
        let m = close_frame(1001, "a", Some([0xff, 0, 0xff, 0]));
        assert_eq!(
            m,
            vec![0x88, 0x83, 0xff, 0, 0xff, 0, 0x03 ^ 0xff, 0xe9, b'a' ^ 0xff]
        );
    }

    #[test]
    fn ends_and_farewells() {
        assert_eq!(
            after_end(false, Side::Client),
            AfterEnd::ShutWriteThenWait {
                to: Side::Host,
                grace: CLOSE_GRACE
            }
        );
        assert_eq!(after_end(true, Side::Host), AfterEnd::Finish);
        assert_eq!(
            idle_deadline(Duration::from_secs(3), Duration::from_secs(600)),
            Duration::from_secs(603)
        );
        let f = farewell(&RelayEnd::Idle, true, true);
        assert_eq!(f.to_client, Some("relay idle timeout"));
        assert_eq!(f.to_host, Some("relay idle timeout"));
        // Mid-frame: no frame of our own in between.
        assert_eq!(farewell(&RelayEnd::Shutdown, false, true).to_client, None);
        let f = farewell(&RelayEnd::Gone(Side::Host, "reset".into()), true, true);
        assert_eq!(
            (f.to_client, f.to_host),
            (Some("libp2p host went away"), None)
        );
        assert_eq!(
            farewell(&RelayEnd::Closed(Side::Client), true, true),
            Farewell {
                to_client: None,
                to_host: None
            }
        );
        assert_eq!(
            RelayEnd::Closed(Side::Host).to_string(),
            "closed by the host"
        );
    }
}
