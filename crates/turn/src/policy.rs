//! Peer address policy: which peers a client may relay to (RFC 8656 §21.3 "Server Resource
//! Exhaustion / use as a tunnel", RFC 6156 §9, and the "denied-peer-ip" practice of coturn).
//!
//! By default loopback, unspecified, RFC 1918 private, CGNAT (100.64.0.0/10), link-local,
//! multicast, broadcast/reserved (240.0.0.0/4), 0.0.0.0/8, IETF protocol assignments
//! (192.0.0.0/24), benchmarking (198.18.0.0/15), IPv6 ULA (fc00::/7), IPv6 link-local
//! (fe80::/10), site-local (fec0::/10), multicast (ff00::/8), and the IPv4-mapped, IPv4-compatible
//! and NAT64 (64:ff9b::/96) forms of denied IPv4 addresses are denied. An explicit allow range
//! overrides the built-in deny list; an explicit deny range always wins.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network in CIDR notation, e.g. `10.0.0.0/8` or `fe80::/10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

/// A CIDR string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR range: {0}")]
pub struct CidrError(pub String);

impl IpCidr {
    /// A range from an address and prefix length (clamped to the address width).
    pub fn new(addr: IpAddr, prefix: u8) -> IpCidr {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        IpCidr { addr, prefix: prefix.min(max) }
    }

    /// Whether `ip` is inside the range (an IPv4 range never contains an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpCidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<IpCidr, CidrError> {
        let err = || CidrError(s.to_string());
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(IpCidr { addr, prefix })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Allow and deny lists on top of the built-in deny list.
#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    /// Ranges allowed even though the built-in list denies them.
    pub allow: Vec<IpCidr>,
    /// Ranges always denied.
    pub deny: Vec<IpCidr>,
}

fn v4_builtin_denied(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_unspecified()
        || o[0] == 0
        || ip.is_loopback()
        || ip.is_private()
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || ip.is_link_local()
        || ip.is_multicast()
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
}

/// The IPv4 address embedded in an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d)
/// or NAT64 well-known-prefix (64:ff9b::a.b.c.d) IPv6 address.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, _, _] if u128::from(ip) > 1 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

fn v6_builtin_denied(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_ipv4(ip) {
        return v4_builtin_denied(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || ip.is_multicast()
}

/// Whether the built-in list denies `ip`.
pub fn builtin_denied(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_builtin_denied(v4),
        IpAddr::V6(v6) => v6_builtin_denied(v6),
    }
}

impl PeerPolicy {
    /// Whether a client may relay to `ip`. Ranges are also matched against the IPv4 address
    /// embedded in a mapped/compatible IPv6 address.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.verdict(ip).unwrap_or_else(|| !builtin_denied(ip))
    }

    /// Whether `ip` is in an allow range and in no deny range: the operator asked for it by name,
    /// which is what relaying to the relay's own address needs (client to client through one relay).
    pub fn is_explicitly_allowed(&self, ip: IpAddr) -> bool {
        self.verdict(ip) == Some(true)
    }

    /// The configured lists' verdict: `Some(false)` denied, `Some(true)` allowed, `None` unlisted.
    fn verdict(&self, ip: IpAddr) -> Option<bool> {
        let alt = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let matches = |list: &[IpCidr]| list.iter().any(|c| c.contains(ip) || alt.is_some_and(|a| c.contains(a)));
        if matches(&self.deny) {
            return Some(false);
        }
        matches(&self.allow).then_some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn builtin() {
        let p = PeerPolicy::default();
        for d in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "100.64.0.1",
            "100.127.1.1",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "fec0::1",
        ] {
            assert!(!p.is_allowed(ip(d)), "{d} should be denied");
        }
        for a in ["8.8.8.8", "100.128.0.1", "172.32.0.1", "2001:db8::1", "2a00::1", "::ffff:8.8.8.8", "198.20.0.1"] {
            assert!(p.is_allowed(ip(a)), "{a} should be allowed");
        }
    }

    #[test]
    fn lists() {
        let p = PeerPolicy {
            allow: vec!["10.0.0.0/8".parse().unwrap(), "fe80::/10".parse().unwrap()],
            deny: vec!["10.9.0.0/16".parse().unwrap(), "8.8.8.8".parse().unwrap()],
        };
        assert!(p.is_allowed(ip("10.1.1.1")));
        assert!(p.is_allowed(ip("::ffff:10.1.1.1")));
        assert!(!p.is_allowed(ip("10.9.1.1")));
        assert!(!p.is_allowed(ip("8.8.8.8")));
        assert!(!p.is_allowed(ip("::ffff:8.8.8.8")));
        assert!(p.is_allowed(ip("fe80::5")));
        assert!(!p.is_allowed(ip("127.0.0.1")));
        assert!("10.0.0.0/33".parse::<IpCidr>().is_err());
        assert!("x/8".parse::<IpCidr>().is_err());
        assert!("0.0.0.0/0".parse::<IpCidr>().unwrap().contains(ip("1.2.3.4")));
    }
}
