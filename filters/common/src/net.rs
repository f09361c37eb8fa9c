//! Client addresses: CIDR ranges and where the client IP comes from (the
//! downstream peer, or a trusted hop of `x-forwarded-for` as Envoy's
//! `xff_num_trusted_hops` picks it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::json::Value;

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

/// An address in the text std accepts: IPv4 as four decimal octets without
/// leading zeros, IPv6 as RFC 4291 groups with at most one `::` (standing
/// for one group or more) and an optional IPv4 tail.
///
/// Why not `str::parse`: std's address parser is about 4 KB in a module;
/// this is a third of that. A test checks it against std.
pub fn parse_addr(text: &str) -> Option<IpAddr> {
    if text.as_bytes().contains(&b':') {
        parse_v6(text).map(IpAddr::V6)
    } else {
        parse_v4(text).map(IpAddr::V4)
    }
}

fn parse_v4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        let digits = part.bytes().all(|b| b.is_ascii_digit());
        if !digits || part.is_empty() || part.len() > 3 || (part.len() > 1 && part.starts_with('0'))
        {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

fn parse_v6(text: &str) -> Option<Ipv6Addr> {
    // Client addresses are parsed per request: fixed arrays, no allocation.
    let mut head = Groups::default();
    let mut tail = Groups::default();
    let gap = text.as_bytes().windows(2).position(|w| w == b"::");
    match gap.and_then(|at| Some((text.get(..at)?, text.get(at + 2..)?))) {
        Some((before, after)) => {
            head.parse(before, false)?;
            tail.parse(after, true)?;
            if head.len + tail.len > 7 {
                return None;
            }
        }
        None => {
            head.parse(text, true)?;
            if head.len != 8 {
                return None;
            }
        }
    }
    // Groups past `head.len` are zero: the `::` run, then the tail.
    let mut groups = head.words;
    let tail_words = tail.words.iter().take(tail.len);
    for (slot, word) in groups.iter_mut().skip(8 - tail.len).zip(tail_words) {
        *slot = *word;
    }
    Some(Ipv6Addr::from(groups))
}

/// Up to eight 16-bit groups of an IPv6 address, in order.
#[derive(Default)]
struct Groups {
    words: [u16; 8],
    len: usize,
}

impl Groups {
    fn push(&mut self, word: u16) -> Option<()> {
        *self.words.get_mut(self.len)? = word;
        self.len += 1;
        Some(())
    }

    /// Colon-separated hex groups (none when `text` is empty); the last may
    /// be an IPv4 address (two groups) when `last` says the part ends the
    /// address. `None` on a bad group or more than eight.
    fn parse(&mut self, text: &str, last: bool) -> Option<()> {
        if text.is_empty() {
            return Some(());
        }
        let mut parts = text.split(':').peekable();
        while let Some(part) = parts.next() {
            if last && parts.peek().is_none() && part.as_bytes().contains(&b'.') {
                let [a, b, c, d] = parse_v4(part)?.octets();
                self.push(u16::from_be_bytes([a, b]))?;
                self.push(u16::from_be_bytes([c, d]))?;
            } else if part.is_empty()
                || part.len() > 4
                || !part.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return None;
            } else {
                self.push(u16::from_str_radix(part, 16).ok()?)?;
            }
        }
        Some(())
    }
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
    fn addresses_parse_as_std_parses_them() {
        let pieces = [
            "0", "1", "7f", "ffff", "fFfF", "12345", "01", "00", "255", "256", "999", ":", "::",
            ".", "1.2.3.4", "a", "g", "", " ", "%", "1.2.3",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..200_000 {
            let n = 1 + next() % 12;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let ours = parse_addr(&text);
            assert_eq!(ours, text.parse::<IpAddr>().ok(), "{text:?}");
            if ours.is_some() {
                accepted += 1
            } else {
                refused += 1
            }
        }
        for _ in 0..20_000 {
            // Every shape std writes: `::` runs, IPv4-mapped tails.
            let bits = u128::from(next()) << 64 | u128::from(next());
            let v6 = Ipv6Addr::from(bits & (u128::MAX >> (next() % 128)));
            let v4 = Ipv4Addr::from(next() as u32);
            for text in [
                v6.to_string(),
                v4.to_string(),
                v4.to_ipv6_mapped().to_string(),
            ] {
                assert_eq!(parse_addr(&text), text.parse::<IpAddr>().ok(), "{text:?}");
                accepted += 1;
            }
        }
        assert!(
            accepted > 60_000 && refused > 100_000,
            "{accepted} {refused}"
        );
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
