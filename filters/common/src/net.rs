//! Client addresses in configuration: CIDR ranges, and decoding where the
//! client IP comes from (`filter_proxy::client` reads it from a request).

use std::net::IpAddr;

use filter_proxy::client::{ClientIpSource, canonical, parse_addr};

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

/// Decodes where the client IP comes from: `{"source": "peer" |
/// "x-forwarded-for", "trusted_hops": N}`.
pub fn client_ip_source(value: &Value, at: &str, problems: &mut Problems) -> ClientIpSource {
    let Some(f) = Fields::new(value, at, &["source", "trusted_hops"], problems) else {
        return ClientIpSource::Peer;
    };
    let source = f
        .string("source", problems)
        .and_then(|s| one_of(s, &["peer", "x-forwarded-for"], &f.at("source"), problems));
    let hops = f.integer("trusted_hops", 0, 16, problems);
    match source {
        Some("x-forwarded-for") => ClientIpSource::XForwardedFor {
            trusted_hops: hops.and_then(|h| u32::try_from(h).ok()).unwrap_or(0),
        },
        _ => {
            if hops.is_some() {
                problems.push(
                    &f.at("trusted_hops"),
                    "`trusted_hops` applies to `source: x-forwarded-for` only",
                );
            }
            ClientIpSource::Peer
        }
    }
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
}
