//! Where the client IP comes from: the downstream peer, or a trusted hop
//! of `x-forwarded-for` as Envoy's `xff_num_trusted_hops` picks it; and
//! reading an address as Envoy writes one.

use std::net::IpAddr;

/// Where the client IP comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The downstream peer (`source.address`).
    #[default]
    Peer,
    /// The address `trusted_hops` entries from the right of
    /// `x-forwarded-for` (0: the last one); the peer when the header is
    /// missing, too short or not an address there.
    XForwardedFor { trusted_hops: u32 },
}

/// IPv4-mapped IPv6 addresses as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An IP from `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `[::1]` or `::1`.
pub fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if let Some(ip) = parse_addr(text) {
        return Some(canonical(ip));
    }
    let host = match text.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => text.rsplit_once(':')?.0,
    };
    parse_addr(host).map(canonical)
}

/// An address as std parses it (`Ipv4Addr`/`Ipv6Addr`'s `FromStr`: four
/// decimal octets without leading zeros, RFC 4291 groups with an optional
/// IPv4 tail).
pub fn parse_addr(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

/// The hop `trusted_hops` from the right of `x-forwarded-for` lines
/// (comma-separated, lines in order).
pub fn forwarded_for<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    trusted_hops: u32,
) -> Option<IpAddr> {
    let hops: Vec<&[u8]> = lines.flat_map(|line| line.split(|b| *b == b',')).collect();
    let index = hops
        .len()
        .checked_sub(1 + usize::try_from(trusted_hops).ok()?)?;
    parse_ip(hops.get(index)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_read_with_or_without_ports() {
        assert_eq!(parse_ip(b"1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_ip(b" 1.2.3.4 "), Some(ip("1.2.3.4")));
        assert_eq!(parse_ip(b"[::1]:8080"), Some(ip("::1")));
        assert_eq!(parse_ip(b"::1"), Some(ip("::1")));
        assert_eq!(parse_ip(b"[::ffff:1.2.3.4]:1"), Some(ip("1.2.3.4")));
        assert_eq!(parse_ip(b"bogus"), None);
        assert_eq!(parse_ip(b"\xff"), None);
    }

    #[test]
    fn forwarded_for_counts_trusted_hops_from_the_right() {
        let lines = [&b"1.1.1.1, 2.2.2.2"[..], b"3.3.3.3"];
        assert_eq!(forwarded_for(lines.into_iter(), 0), Some(ip("3.3.3.3")));
        assert_eq!(forwarded_for(lines.into_iter(), 1), Some(ip("2.2.2.2")));
        assert_eq!(forwarded_for(lines.into_iter(), 2), Some(ip("1.1.1.1")));
        assert_eq!(forwarded_for(lines.into_iter(), 3), None);
    }
}
