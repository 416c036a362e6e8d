//! Which IP addresses are public: the table behind the SSRF guard.
//!
//! An address is refused when it is in a range that the public internet does not route to us —
//! loopback, private, link-local (cloud metadata lives at 169.254.169.254), CGNAT, multicast,
//! documentation, benchmarking, reserved — or when it is an IPv6 form that carries such an IPv4
//! address inside it (IPv4-mapped, IPv4-compatible, NAT64, 6to4). Each range has a label that
//! names it and its prefix, for error messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges, most specific first where they nest (0.0.0.0 inside 0.0.0.0/8, the broadcast
/// address inside 240.0.0.0/4): the first match names the range.
const V4_RANGES: &[(Ipv4Addr, u32, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 32, "unspecified 0.0.0.0"),
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network 0.0.0.0/8"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private 10.0.0.0/8"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared address space (CGNAT) 100.64.0.0/10",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback 127.0.0.0/8"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private 172.16.0.0/12"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments 192.0.0.0/24",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation 192.0.2.0/24",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "deprecated 6to4 relay anycast 192.88.99.0/24",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private 192.168.0.0/16"),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "benchmarking 198.18.0.0/15",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation 198.51.100.0/24",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation 203.0.113.0/24",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast 224.0.0.0/4"),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        "broadcast 255.255.255.255",
    ),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved 240.0.0.0/4"),
];

/// IPv6 ranges refused outright (the forms that embed an IPv4 address are judged by that address
/// instead, in [`v6_range`]).
const V6_RANGES: &[(Ipv6Addr, u32, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified ::"),
    (Ipv6Addr::LOCALHOST, 128, "loopback ::1"),
    // Local-use NAT64 (RFC 8215) lets each network choose where in the address the IPv4 part
    // sits, so the embedded address cannot be judged: refuse the prefix.
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64 64:ff9b:1::/48",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only 100::/64",
    ),
    // Teredo tunnels reach the client through a relay, at an obfuscated IPv4 address and port;
    // no webhook receiver needs one, and judging the tunnel's far end is guesswork: refuse.
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        "Teredo 2001::/32",
    ),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        "benchmarking 2001:2::/48",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation 2001:db8::/32",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation 3fff::/20",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique local fc00::/7",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "link-local fe80::/10",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "site-local fec0::/10",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "multicast ff00::/8",
    ),
];

const V6_GLOBAL_UNICAST: (Ipv6Addr, u32) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
const V6_RESERVED: &str = "reserved IPv6 (outside global unicast 2000::/3)";

/// Names the non-public range `ip` belongs to, or `None` when the address is public.
///
/// The answer is a label with the range's name and prefix, e.g. `"loopback 127.0.0.0/8"`. IPv6
/// addresses that embed an IPv4 address — IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::/96` and 6to4 `2002::/16` — are judged by the IPv4 address they
/// lead to, so `::ffff:127.0.0.1` answers `"loopback 127.0.0.0/8"` and `::ffff:8.8.8.8` answers
/// `None`. IPv6 outside global unicast `2000::/3` is all reserved and always refused.
///
/// ```
/// use triggerd_delivery::non_public_range;
///
/// assert_eq!(non_public_range("127.0.0.1".parse().unwrap()), Some("loopback 127.0.0.0/8"));
/// assert_eq!(non_public_range("::ffff:10.0.0.1".parse().unwrap()), Some("private 10.0.0.0/8"));
/// assert_eq!(non_public_range("8.8.8.8".parse().unwrap()), None);
/// ```
pub fn non_public_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    V4_RANGES
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, label)| *label)
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some((_, _, label)) = V6_RANGES.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) {
        return Some(label);
    }
    if let Some(v4) = embedded_v4(ip) {
        return v4_range(v4);
    }
    if !in_v6(ip, V6_GLOBAL_UNICAST.0, V6_GLOBAL_UNICAST.1) {
        return Some(V6_RESERVED);
    }
    None
}

/// The IPv4 address an IPv6 address leads to, for the forms where its place is fixed.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    // IPv4-mapped ::ffff:a.b.c.d — a dual-stack socket connects to a.b.c.d itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated; :: and ::1 are matched before this is asked).
    if bits >> 32 == 0 {
        return Some(low32);
    }
    // Well-known NAT64 prefix 64:ff9b::/96: the translator forwards to the last 32 bits.
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return Some(low32);
    }
    // 6to4 2002:AABB:CCDD::/48 — the relay forwards to AA.BB.CC.DD.
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::from_bits((bits >> 80) as u32));
    }
    None
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    ip.to_bits() & mask == net.to_bits()
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    ip.to_bits() & mask == net.to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ip: &str) -> Option<&'static str> {
        non_public_range(ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")))
    }

    /// Each range: samples inside (first, last and one in between) answer its label, and the
    /// addresses just outside both ends answer something else (usually public).
    fn check_range(label: &str, inside: &[&str], outside: &[&str]) {
        for ip in inside {
            assert_eq!(range(ip), Some(label), "{ip} should be in {label}");
        }
        for ip in outside {
            assert_ne!(range(ip), Some(label), "{ip} should be outside {label}");
        }
    }

    #[test]
    fn ipv4_ranges_and_their_boundaries() {
        check_range("unspecified 0.0.0.0", &["0.0.0.0"], &["0.0.0.1"]);
        check_range(
            "this network 0.0.0.0/8",
            &["0.0.0.1", "0.1.2.3", "0.255.255.255"],
            &["0.0.0.0", "1.0.0.0"],
        );
        assert_eq!(range("1.0.0.0"), None);
        check_range(
            "private 10.0.0.0/8",
            &["10.0.0.0", "10.1.2.3", "10.255.255.255"],
            &["9.255.255.255", "11.0.0.0"],
        );
        assert_eq!(range("9.255.255.255"), None);
        assert_eq!(range("11.0.0.0"), None);
        check_range(
            "shared address space (CGNAT) 100.64.0.0/10",
            &["100.64.0.0", "100.100.1.1", "100.127.255.255"],
            &["100.63.255.255", "100.128.0.0"],
        );
        assert_eq!(range("100.63.255.255"), None);
        assert_eq!(range("100.128.0.0"), None);
        check_range(
            "loopback 127.0.0.0/8",
            &["127.0.0.0", "127.0.0.1", "127.255.255.255"],
            &["126.255.255.255", "128.0.0.0"],
        );
        assert_eq!(range("126.255.255.255"), None);
        assert_eq!(range("128.0.0.0"), None);
        check_range(
            "link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)",
            &["169.254.0.0", "169.254.169.254", "169.254.255.255"],
            &["169.253.255.255", "169.255.0.0"],
        );
        assert_eq!(range("169.253.255.255"), None);
        assert_eq!(range("169.255.0.0"), None);
        check_range(
            "private 172.16.0.0/12",
            &["172.16.0.0", "172.20.1.1", "172.31.255.255"],
            &["172.15.255.255", "172.32.0.0"],
        );
        assert_eq!(range("172.15.255.255"), None);
        assert_eq!(range("172.32.0.0"), None);
        check_range(
            "IETF protocol assignments 192.0.0.0/24",
            &["192.0.0.0", "192.0.0.8", "192.0.0.255"],
            &["191.255.255.255", "192.0.1.0"],
        );
        assert_eq!(range("191.255.255.255"), None);
        assert_eq!(range("192.0.1.0"), None);
        check_range(
            "documentation 192.0.2.0/24",
            &["192.0.2.0", "192.0.2.1", "192.0.2.255"],
            &["192.0.1.255", "192.0.3.0"],
        );
        assert_eq!(range("192.0.1.255"), None);
        assert_eq!(range("192.0.3.0"), None);
        check_range(
            "deprecated 6to4 relay anycast 192.88.99.0/24",
            &["192.88.99.0", "192.88.99.1", "192.88.99.255"],
            &["192.88.98.255", "192.88.100.0"],
        );
        assert_eq!(range("192.88.98.255"), None);
        assert_eq!(range("192.88.100.0"), None);
        check_range(
            "private 192.168.0.0/16",
            &["192.168.0.0", "192.168.1.1", "192.168.255.255"],
            &["192.167.255.255", "192.169.0.0"],
        );
        assert_eq!(range("192.167.255.255"), None);
        assert_eq!(range("192.169.0.0"), None);
        check_range(
            "benchmarking 198.18.0.0/15",
            &["198.18.0.0", "198.18.200.1", "198.19.255.255"],
            &["198.17.255.255", "198.20.0.0"],
        );
        assert_eq!(range("198.17.255.255"), None);
        assert_eq!(range("198.20.0.0"), None);
        check_range(
            "documentation 198.51.100.0/24",
            &["198.51.100.0", "198.51.100.7", "198.51.100.255"],
            &["198.51.99.255", "198.51.101.0"],
        );
        assert_eq!(range("198.51.99.255"), None);
        assert_eq!(range("198.51.101.0"), None);
        check_range(
            "documentation 203.0.113.0/24",
            &["203.0.113.0", "203.0.113.9", "203.0.113.255"],
            &["203.0.112.255", "203.0.114.0"],
        );
        assert_eq!(range("203.0.112.255"), None);
        assert_eq!(range("203.0.114.0"), None);
        check_range(
            "multicast 224.0.0.0/4",
            &["224.0.0.0", "224.0.0.251", "239.255.255.255"],
            &["223.255.255.255", "240.0.0.0"],
        );
        assert_eq!(range("223.255.255.255"), None);
        check_range(
            "reserved 240.0.0.0/4",
            &["240.0.0.0", "250.1.2.3", "255.255.255.254"],
            &["239.255.255.255", "255.255.255.255"],
        );
        check_range(
            "broadcast 255.255.255.255",
            &["255.255.255.255"],
            &["255.255.255.254"],
        );
    }

    #[test]
    fn ipv6_ranges_and_their_boundaries() {
        check_range("unspecified ::", &["::"], &["::1"]);
        check_range("loopback ::1", &["::1"], &["::", "::2"]);
        check_range(
            "local-use NAT64 64:ff9b:1::/48",
            &[
                "64:ff9b:1::",
                "64:ff9b:1::808:808",
                "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            ],
            &["64:ff9b:0:ffff:ffff:ffff:ffff:ffff", "64:ff9b:2::"],
        );
        check_range(
            "discard-only 100::/64",
            &["100::", "100::1", "100::ffff:ffff:ffff:ffff"],
            &["ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "100:0:0:1::"],
        );
        check_range(
            "Teredo 2001::/32",
            &[
                "2001::",
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            &["2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:1::"],
        );
        assert_eq!(range("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), None);
        assert_eq!(range("2001:1::1"), None);
        check_range(
            "benchmarking 2001:2::/48",
            &["2001:2::", "2001:2:0:ffff:ffff:ffff:ffff:ffff"],
            &["2001:1:ffff:ffff:ffff:ffff:ffff:ffff", "2001:2:1::"],
        );
        assert_eq!(range("2001:2:1::"), None);
        check_range(
            "documentation 2001:db8::/32",
            &[
                "2001:db8::",
                "2001:db8::1",
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            &["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::"],
        );
        assert_eq!(range("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"), None);
        assert_eq!(range("2001:db9::"), None);
        check_range(
            "documentation 3fff::/20",
            &["3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"],
            &["3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "3fff:1000::"],
        );
        assert_eq!(range("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), None);
        assert_eq!(range("3fff:1000::"), None);
        check_range(
            "unique local fc00::/7",
            &[
                "fc00::",
                "fd12:3456::1",
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            &["fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::"],
        );
        check_range(
            "link-local fe80::/10",
            &[
                "fe80::",
                "fe80::1",
                "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            &["fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::"],
        );
        check_range(
            "site-local fec0::/10",
            &[
                "fec0::",
                "fec0::1",
                "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            &["febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ff00::"],
        );
        check_range(
            "multicast ff00::/8",
            &[
                "ff00::",
                "ff02::1",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            &["feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
        );
        // Global unicast is 2000::/3; everything else not named above is reserved.
        check_range(
            "reserved IPv6 (outside global unicast 2000::/3)",
            &[
                "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "4000::",
                "::ffff:0:7f00:1",
                "fe00::",
            ],
            &["2000::", "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
        );
        assert_eq!(range("2000::"), None);
        assert_eq!(range("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), None);
    }

    #[test]
    fn ipv6_forms_embedding_ipv4_are_judged_by_the_ipv4_address() {
        let cases = [
            // IPv4-mapped
            ("::ffff:127.0.0.1", Some("loopback 127.0.0.0/8")),
            (
                "::ffff:169.254.169.254",
                Some("link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)"),
            ),
            ("::ffff:10.0.0.1", Some("private 10.0.0.0/8")),
            ("::ffff:0.0.0.0", Some("unspecified 0.0.0.0")),
            ("::ffff:8.8.8.8", None),
            // IPv4-compatible (deprecated)
            ("::10.0.0.1", Some("private 10.0.0.0/8")),
            ("::127.0.0.1", Some("loopback 127.0.0.0/8")),
            ("::0.0.0.2", Some("this network 0.0.0.0/8")),
            ("::8.8.8.8", None),
            // NAT64 well-known prefix
            ("64:ff9b::a00:1", Some("private 10.0.0.0/8")),
            ("64:ff9b::127.0.0.1", Some("loopback 127.0.0.0/8")),
            (
                "64:ff9b::169.254.169.254",
                Some("link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)"),
            ),
            ("64:ff9b::808:808", None),
            // just outside 64:ff9b::/96: not NAT64, and outside 2000::/3
            (
                "64:ff9b:0:0:0:1::",
                Some("reserved IPv6 (outside global unicast 2000::/3)"),
            ),
            // 6to4: the IPv4 address is in bits 16..48
            ("2002:c0a8:0101::", Some("private 192.168.0.0/16")),
            ("2002:7f00:1::1", Some("loopback 127.0.0.0/8")),
            (
                "2002:a9fe:a9fe::",
                Some("link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)"),
            ),
            ("2002:808:808::1", None),
            ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ("2003::", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(range(ip), expected, "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.0.1",
            "172.217.0.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
        ] {
            assert_eq!(range(ip), None, "{ip} is public");
        }
    }
}
