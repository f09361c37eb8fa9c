//! Client addresses: CIDR ranges and where the client IP comes from (the
//! downstream peer, or a trusted hop of `x-forwarded-for` as Envoy's
//! `xff_num_trusted_hops` picks it).

use std::net::IpAddr;

use crate::value::Value;

use crate::config::{Fields, Problems, one_of};

/// An address range such as `10.0.0.0/8` or `2001:db8::/32`; a bare address
/// is a range of one. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) match
/// IPv4 ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    v4: bool,
    network: u128,
    mask: u128,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr = parse_addr(addr)
            .ok_or_else(|| format!("`{text}` is not an IP address or CIDR range"))?;
        let (v4, bits, max) = match addr {
            IpAddr::V4(a) => (true, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (false, u128::from(a), 128),
        };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        let mask = if len == 0 {
            0
        } else {
            (u128::MAX << (max - len)) & (u128::MAX >> (128 - max))
        };
        if bits & !mask != 0 {
            return Err(format!(
                "`{text}` has bits set past its prefix length; write the network address"
            ));
        }
        Ok(Self {
            v4,
            network: bits,
            mask,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, bits) = match canonical(ip) {
            IpAddr::V4(a) => (true, u128::from(u32::from(a))),
            IpAddr::V6(a) => (false, u128::from(a)),
        };
        v4 == self.v4 && bits & self.mask == self.network
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
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

impl ClientIpSource {
    /// Decodes `{"source": "peer" | "x-forwarded-for", "trusted_hops": N}`.
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Self {
        let Some(f) = Fields::new(value, at, &["source", "trusted_hops"], problems) else {
            return Self::Peer;
        };
        let source = f
            .string("source", problems)
            .and_then(|s| one_of(s, &["peer", "x-forwarded-for"], &f.at("source"), problems));
        let hops = f.integer("trusted_hops", 0, 16, problems);
        match source {
            Some("x-forwarded-for") => Self::XForwardedFor {
                trusted_hops: hops.and_then(|h| u32::try_from(h).ok()).unwrap_or(0),
            },
            _ => {
                if hops.is_some() {
                    problems.push(
                        &f.at("trusted_hops"),
                        "`trusted_hops` applies to `source: x-forwarded-for` only",
                    );
                }
                Self::Peer
            }
        }
    }
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
    fn ranges_contain_their_addresses() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert!(
            Cidr::parse("192.168.1.7")
                .unwrap()
                .contains(ip("192.168.1.7"))
        );
        assert!(
            !Cidr::parse("192.168.1.7")
                .unwrap()
                .contains(ip("192.168.1.8"))
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in ["10.0.0.0/33", "10.0.0.1/8", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
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
