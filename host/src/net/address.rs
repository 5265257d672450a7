//! Which addresses a plugin may connect to: public ones, or the literal
//! address the operator bound. A name that resolves to loopback, a private
//! network or any other special range is refused, so a public name cannot
//! be pointed at the operator's own machine or network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::manifest::Host;

/// Whether a connection to `addr`, resolved for an endpoint bound to
/// `bound`, may be made: always to the literal address bound, otherwise only
/// to a public one.
pub fn allowed(bound: &Host, addr: IpAddr) -> bool {
    match bound {
        Host::Ip(ip) => canonical(*ip) == canonical(addr),
        Host::Name(_) => is_public(addr),
    }
}

/// Whether `addr` is a public unicast address: not unspecified, loopback,
/// private, shared (CGNAT), link-local, multicast, broadcast, benchmarking,
/// documentation or reserved.
pub fn is_public(addr: IpAddr) -> bool {
    match canonical(addr) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        // "This network", 0.0.0.0/8.
        || a == 0
        // Shared address space (CGNAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, 192.0.0.0/24.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (18..20).contains(&b))
        // Reserved, 240.0.0.0/4.
        || a >= 240;
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local, fc00::/7.
        || (s[0] & 0xfe00) == 0xfc00
        // Link-local, fe80::/10.
        || (s[0] & 0xffc0) == 0xfe80
        // Site-local (deprecated), fec0::/10.
        || (s[0] & 0xffc0) == 0xfec0
        // Documentation, 2001:db8::/32.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // IPv4-compatible and other addresses in ::/96, NAT64 64:ff9b::/96
        // (it reaches whatever IPv4 address it embeds), discard 100::/64.
        || s[..6] == [0; 6]
        || (s[0] == 0x64 && s[1] == 0xff9b)
        || (s[0] == 0x100 && s[1..4] == [0; 3]);
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_not_public() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.8.8.8",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!is_public(ip(s)), "{s} was taken for public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81c::200e",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(s)), "{s} was taken for special");
        }
    }

    #[test]
    fn a_literal_binding_reaches_only_itself() {
        let local = Host::Ip(ip("127.0.0.1"));
        assert!(allowed(&local, ip("127.0.0.1")));
        assert!(allowed(&local, ip("::ffff:127.0.0.1")));
        assert!(!allowed(&local, ip("127.0.0.2")));
        assert!(!allowed(&local, ip("8.8.8.8")));
        let named = Host::Name("example.org".into());
        assert!(allowed(&named, ip("93.184.215.14")));
        assert!(!allowed(&named, ip("127.0.0.1")));
        assert!(!allowed(&named, ip("192.168.0.10")));
    }
}
