//! SIP and SIPS URIs (RFC 3261 §19.1, §25.1) and opaque URIs of other schemes (tel:, unknown schemes, which a
//! proxy answers with 416 when they appear in a Request-URI it must route: RFC 4475 §3.3.2).
//!
//! Parsing is lenient where RFC 4475 §3.1.1 says it must be (escaped characters anywhere in the user part,
//! `;` and `?` inside the user part, escaped NULs) and strict where §3.1.2 says messages are invalid
//! (whitespace inside a URI). Escapes are kept as received; [`unescape`] decodes them for comparisons
//! (§19.1.4). Left out: full host grammar validation beyond the character set, and URI comparison of
//! parameters (§19.1.4 rules for `user`, `ttl`, `method`, `maddr`, `transport`).

use std::borrow::Cow;
use std::fmt;

use crate::header::Params;

/// A URI as found in a Request-URI, a name-addr or a Route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// Any other scheme (tel:, urn:, unknown): kept opaque.
    Other {
        /// The scheme, as written.
        scheme: String,
        /// Everything after the first colon.
        rest: String,
    },
}

/// A `sip:` or `sips:` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// `true` for `sips:`.
    pub secure: bool,
    /// The user part, escapes kept.
    pub user: Option<String>,
    /// The password part, escapes kept (deprecated by RFC 3261 but legal).
    pub password: Option<String>,
    /// Host name, IPv4 address or bracketed IPv6 reference.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params,
    /// The headers component after `?`, escapes kept.
    pub headers: Option<String>,
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.')
}

impl Uri {
    /// Parses a URI. Whitespace and angle brackets inside it are errors.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("empty URI");
        }
        if s.bytes().any(|c| c.is_ascii_whitespace() || c == b'<' || c == b'>' || c == b'"') {
            return Err("illegal character in URI");
        }
        let colon = s.find(':').ok_or("URI has no scheme")?;
        let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
        if !is_scheme(scheme) {
            return Err("bad URI scheme");
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            return SipUri::parse_after_scheme(scheme.eq_ignore_ascii_case("sips"), rest).map(Uri::Sip);
        }
        if rest.is_empty() {
            return Err("empty URI after scheme");
        }
        Ok(Uri::Other { scheme: scheme.to_owned(), rest: rest.to_owned() })
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    /// The scheme in lower case.
    pub fn scheme(&self) -> Cow<'_, str> {
        match self {
            Uri::Sip(u) if u.secure => "sips".into(),
            Uri::Sip(_) => "sip".into(),
            Uri::Other { scheme, .. } => scheme.to_ascii_lowercase().into(),
        }
    }
}

impl SipUri {
    /// A URI `sip:user@host` without port or parameters.
    pub fn new(user: Option<&str>, host: &str) -> Self {
        Self {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host: host.to_owned(),
            port: None,
            params: Params::default(),
            headers: None,
        }
    }

    fn parse_after_scheme(secure: bool, rest: &str) -> Result<Self, &'static str> {
        // The user part may contain `;`, `?` and `:` (RFC 4475 §3.1.1.2, §3.1.1.9), never an unescaped `@`.
        let (userinfo, hostpart) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(ui) => match ui.find(':') {
                Some(c) => (Some(ui[..c].to_owned()), Some(ui[c + 1..].to_owned())),
                None => (Some(ui.to_owned()), None),
            },
            None => (None, None),
        };
        if user.as_deref() == Some("") {
            return Err("empty user part");
        }
        let (hostport, tail) = match hostpart.find([';', '?']) {
            Some(i) => (&hostpart[..i], &hostpart[i..]),
            None => (hostpart, ""),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6.find(']').ok_or("unterminated IPv6 reference")?;
            let host = &hostport[..end + 2];
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err("junk after IPv6 reference"),
            };
            (host, port)
        } else {
            match hostport.rfind(':') {
                Some(c) => (&hostport[..c], Some(&hostport[c + 1..])),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err("empty host");
        }
        if !host.starts_with('[')
            && !host.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
        {
            return Err("bad host");
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| "bad port")?),
            None => None,
        };
        let (params, headers) = match tail.find('?') {
            Some(q) => (&tail[..q], Some(tail[q + 1..].to_owned())),
            None => (tail, None),
        };
        let params = Params::parse(params, true)?;
        Ok(SipUri { secure, user, password, host: host.to_owned(), port, params, headers })
    }

    /// The user part with escapes decoded (for comparisons and address-of-record keys).
    pub fn user_unescaped(&self) -> Option<Cow<'_, str>> {
        self.user.as_deref().map(unescape)
    }

    /// The address of record this URI names: `sip:user@host` with the user unescaped and the host in lower
    /// case, without port, parameters or headers (RFC 3261 §10.3 step 5). `sips:` maps to `sip:`.
    pub fn aor(&self) -> String {
        let host = self.host.to_ascii_lowercase();
        match self.user_unescaped() {
            Some(u) => format!("sip:{u}@{host}"),
            None => format!("sip:{host}"),
        }
    }

    /// The value of the `transport` parameter in lower case, if any.
    pub fn transport(&self) -> Option<String> {
        self.params.get("transport").flatten().map(str::to_ascii_lowercase)
    }

    /// Whether the `lr` parameter is present (loose routing, RFC 3261 §16.12).
    pub fn is_loose_route(&self) -> bool {
        self.params.contains("lr")
    }
}

/// Decodes `%XX` escapes; invalid escapes stay as they are (RFC 4475 §3.1.1.5). Invalid UTF-8 after decoding
/// becomes U+FFFD.
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return s.into();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_sip_uri() {
        let u = Uri::parse("sips:alice:pw@[2001:db8::1]:5061;transport=tls;lr?subject=x").unwrap();
        let Uri::Sip(s) = &u else { panic!() };
        assert!(s.secure);
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.host, "[2001:db8::1]");
        assert_eq!(s.port, Some(5061));
        assert_eq!(s.transport().as_deref(), Some("tls"));
        assert!(s.is_loose_route());
        assert_eq!(s.headers.as_deref(), Some("subject=x"));
        assert_eq!(u.to_string(), "sips:alice:pw@[2001:db8::1]:5061;transport=tls;lr?subject=x");
    }

    #[test]
    fn escapes_and_semicolons_in_user() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        let s = u.as_sip().unwrap();
        assert_eq!(s.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(s.host, "example.com");
        assert_eq!(s.user_unescaped().unwrap(), "user;par=u@example.net");
        assert_eq!(unescape("null-%00-null"), "null-\0-null");
        assert_eq!(unescape("%Z%45"), "%ZE");
        assert_eq!(
            Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap().as_sip().unwrap().aor(),
            "sip:sips:user@example.com@example.net"
        );
    }

    #[test]
    fn other_schemes_and_errors() {
        assert!(matches!(Uri::parse("tel:+1-201-555-0123").unwrap(), Uri::Other { .. }));
        assert_eq!(Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap().scheme(), "nobodyknowsthisscheme");
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("sip:").is_err());
        assert!(Uri::parse("sip:a@b:99999").is_err());
        assert!(Uri::parse("sip:a@[::1").is_err());
    }
}
