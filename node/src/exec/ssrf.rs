//! SSRF protection for downloads: a deal's URL comes from the client, so without a check
//! a client could make the provider fetch from its own network (metadata services,
//! admin pages). The host is resolved once, every address is checked, and the download
//! connects to a checked address (never resolving again, so DNS rebinding cannot slip a
//! private address in between). Curio does the same at download time
//! (`Ingest.DisableSSRFProtection`, docs/curio-reference.md §After acceptance).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address is not public, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    Some(match () {
        _ if a == 0 => "unspecified (0.0.0.0/8)",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        _ if a == 100 && (64..128).contains(&b) => "shared CGNAT (100.64.0.0/10)",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        _ if a >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    // IPv4 inside IPv6: mapped ::ffff:a.b.c.d, the old compatible ::a.b.c.d, and NAT64
    // 64:ff9b::a.b.c.d all reach the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_unspecified() && !ip.is_loopback() {
        return non_public_v4(embedded);
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return non_public_v4(embedded);
    }
    Some(match () {
        _ if ip.is_unspecified() => "unspecified (::)",
        _ if ip.is_loopback() => "loopback (::1)",
        _ if seg[0] & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        _ if seg[0] & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        _ if seg[0] & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        _ if ip.is_multicast() => "multicast",
        _ => return None,
    })
}

/// Resolve `host:port` and check every address; the addresses to connect to.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, String> {
    let addrs = async_net::resolve((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    check_all(host, &addrs, allow_private)?;
    Ok(addrs)
}

/// Refuse the lot if any address is not public (a name with one private address is not
/// trusted with the others either).
pub fn check_all(host: &str, addrs: &[SocketAddr], allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    for a in addrs {
        if let Some(why) = non_public(a.ip()) {
            return Err(format!(
                "refusing to download from {host}: it resolves to {}, a {why} address \
                 (set [transfer] allow_private_addresses = true to allow it)",
                a.ip()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(s: &str) -> bool {
        non_public(s.parse().unwrap()).is_some()
    }

    #[test]
    fn non_public_addresses_are_named() {
        for s in [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(np(s), "{s} should be refused");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!np(s), "{s} should be allowed");
        }
    }

    #[test]
    fn the_refusal_names_the_address_and_the_switch() {
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let e = check_all("example.test", &[a], false).unwrap_err();
        assert!(e.contains("127.0.0.1") && e.contains("loopback"), "{e}");
        assert!(e.contains("allow_private_addresses"), "{e}");
        check_all("example.test", &[a], true).unwrap();
    }
}
