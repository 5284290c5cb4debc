//! Addresses of record: the `sip:user@domain` URIs that name accounts (RFC 3261 §10.2.1).

use std::fmt;

use crate::{Result, StoreError};

/// A normalized address of record, `sip:user@domain`.
///
/// Accepted input forms: `sip:alice@example.com`, `alice@example.com`, and (with a default domain) `alice`.
/// The scheme and the domain are lower-cased; the user part keeps its case, as RFC 3261 §19.1.4 compares it
/// case-sensitively. URI parameters, headers, ports and passwords are refused: an AOR names a user, not a
/// device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor(String);

/// Longest address of record accepted, in bytes.
pub const MAX_AOR_LEN: usize = 256;

impl Aor {
    /// Parses `input`; a bare user name takes `default_domain` when one is given.
    pub fn parse(input: &str, default_domain: Option<&str>) -> Result<Self> {
        let input = input.trim();
        let invalid = |reason: &str| StoreError::invalid("address of record", format!("{input:?}: {reason}"));
        if input.len() > MAX_AOR_LEN {
            return Err(invalid("too long"));
        }
        let rest = match input.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("sips") => {
                return Err(invalid("use the sip: form; sips is a transport requirement, not an identity"));
            }
            Some(_) => return Err(invalid("expected sip:user@domain")),
            None => input,
        };
        let (user, domain) = match rest.split_once('@') {
            Some((user, domain)) => (user, domain.to_ascii_lowercase()),
            None => match default_domain {
                Some(d) => (rest, d.to_ascii_lowercase()),
                None => return Err(invalid("expected sip:user@domain")),
            },
        };
        if user.is_empty() {
            return Err(invalid("empty user part"));
        }
        if let Some(c) = user.chars().find(|c| !is_user_char(*c)) {
            return Err(invalid(&format!("character {c:?} not allowed in the user part")));
        }
        if !is_domain(&domain) {
            return Err(invalid("domain must be a host name or an IP address without port"));
        }
        Ok(Self(format!("sip:{user}@{domain}")))
    }

    /// The whole URI, `sip:user@domain`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user part.
    pub fn user(&self) -> &str {
        let rest = &self.0[4..];
        &rest[..rest.find('@').unwrap_or(rest.len())]
    }

    /// The domain part.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 3261 `user`: unreserved, escaped and user-unreserved characters.
fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c)
}

fn is_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > 253 {
        return false;
    }
    if let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_forms() {
        let a = Aor::parse("SIP:Alice@Example.COM", None).unwrap();
        assert_eq!(a.as_str(), "sip:Alice@example.com");
        assert_eq!(a.user(), "Alice");
        assert_eq!(a.domain(), "example.com");
        assert_eq!(Aor::parse("bob@x.test", None).unwrap().as_str(), "sip:bob@x.test");
        assert_eq!(Aor::parse("bob", Some("X.test")).unwrap().as_str(), "sip:bob@x.test");
        assert_eq!(Aor::parse("sip:u@[::1]", None).unwrap().domain(), "[::1]");
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "sip:",
            "sip:@x.test",
            "bob",
            "tel:+123",
            "sips:a@x.test",
            "sip:a@x.test:5060",
            "sip:a@x.test;transport=tcp",
            "sip:a b@x.test",
            "sip:a@-x.test",
            "sip:a@x..test",
            "sip:a@[zz]",
        ] {
            assert!(Aor::parse(bad, None).is_err(), "{bad:?} accepted");
        }
        assert!(Aor::parse(&format!("sip:{}@x.test", "a".repeat(300)), None).is_err());
    }
}
