//! Header names (RFC 3261 §7.3, compact forms §7.3.3 and later RFCs), the ordered header list of a message,
//! generic parameters (`;name=value`), and the lexical helpers the typed headers share (RFC 3261 §25.1).
//!
//! Names compare case-insensitively; compact forms map to their full names. Unknown headers keep the name as
//! written and are serialized unchanged.

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names are variants; others keep their spelling in [`HeaderName::Other`].
        /// Equality and hashing ignore case, also for `Other`.
        #[derive(Clone, Debug)]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any other header, spelled as received.
            Other(String),
        }

        impl HeaderName {
            /// Parses a name, ignoring case and mapping compact forms (`v`, `f`, `t`, `m`, `i`, `l`, ...).
            pub fn parse(s: &str) -> Self {
                $(
                    if s.eq_ignore_ascii_case($name) $(|| s.eq_ignore_ascii_case($compact))? {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(s.to_owned())
            }

            /// The canonical spelling used when serializing.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $name, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
}

header_names! {
    /// `Accept`.
    Accept = "Accept";
    /// `Allow`.
    Allow = "Allow";
    /// `Allow-Events` (compact `u`).
    AllowEvents = "Allow-Events", "u";
    /// `Authorization`.
    Authorization = "Authorization";
    /// `Call-ID` (compact `i`).
    CallId = "Call-ID", "i";
    /// `Contact` (compact `m`).
    Contact = "Contact", "m";
    /// `Content-Encoding` (compact `e`).
    ContentEncoding = "Content-Encoding", "e";
    /// `Content-Length` (compact `l`).
    ContentLength = "Content-Length", "l";
    /// `Content-Type` (compact `c`).
    ContentType = "Content-Type", "c";
    /// `CSeq`.
    CSeq = "CSeq";
    /// `Date`.
    Date = "Date";
    /// `Event` (compact `o`, RFC 6665).
    Event = "Event", "o";
    /// `Expires`.
    Expires = "Expires";
    /// `From` (compact `f`).
    From = "From", "f";
    /// `Max-Forwards`.
    MaxForwards = "Max-Forwards";
    /// `Min-Expires`.
    MinExpires = "Min-Expires";
    /// `Path` (RFC 3327).
    Path = "Path";
    /// `Proxy-Authenticate`.
    ProxyAuthenticate = "Proxy-Authenticate";
    /// `Proxy-Authorization`.
    ProxyAuthorization = "Proxy-Authorization";
    /// `Proxy-Require`.
    ProxyRequire = "Proxy-Require";
    /// `Record-Route`.
    RecordRoute = "Record-Route";
    /// `Refer-To` (compact `r`).
    ReferTo = "Refer-To", "r";
    /// `Require`.
    Require = "Require";
    /// `Retry-After`.
    RetryAfter = "Retry-After";
    /// `Route`.
    Route = "Route";
    /// `Server`.
    Server = "Server";
    /// `Subject` (compact `s`).
    Subject = "Subject", "s";
    /// `Subscription-State`.
    SubscriptionState = "Subscription-State";
    /// `Supported` (compact `k`).
    Supported = "Supported", "k";
    /// `Timestamp`.
    Timestamp = "Timestamp";
    /// `To` (compact `t`).
    To = "To", "t";
    /// `Unsupported`.
    Unsupported = "Unsupported";
    /// `User-Agent`.
    UserAgent = "User-Agent";
    /// `Via` (compact `v`).
    Via = "Via", "v";
    /// `Warning`.
    Warning = "Warning";
    /// `WWW-Authenticate`.
    WwwAuthenticate = "WWW-Authenticate";
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => false,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName {}

impl std::hash::Hash for HeaderName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        if let HeaderName::Other(s) = self {
            for b in s.bytes() {
                state.write_u8(b.to_ascii_lowercase());
            }
        }
    }
}

impl HeaderName {
    /// Whether several values of this header may be joined by commas (RFC 3261 §7.3.1). The authentication
    /// headers and headers whose grammar contains commas are excluded.
    pub fn is_comma_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Accept
                | HeaderName::Allow
                | HeaderName::AllowEvents
                | HeaderName::Contact
                | HeaderName::ContentEncoding
                | HeaderName::Path
                | HeaderName::ProxyRequire
                | HeaderName::RecordRoute
                | HeaderName::Require
                | HeaderName::Route
                | HeaderName::Supported
                | HeaderName::Unsupported
                | HeaderName::Via
                | HeaderName::Warning
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line: a name and its value with folding removed and surrounding whitespace trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The name.
    pub name: HeaderName,
    /// The value, as received (unfolded).
    pub value: String,
}

/// The headers of a message, in order. Several lines with the same name stay separate lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// The value of the first header with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0.iter().find(|h| &h.name == name).map(|h| h.value.as_str())
    }

    /// The values of every header line with this name, in order (not split at commas).
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |h| &h.name == name).map(|h| h.value.as_str())
    }

    /// Every value of a comma-list header, across all its lines, split at top-level commas. Do not use it for
    /// headers whose grammar contains commas (the authentication headers, Date: see
    /// [`HeaderName::is_comma_list`]).
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name).flat_map(split_comma)
    }

    /// Whether a header with this name is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|h| &h.name == name)
    }

    /// Appends a header line.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push(Header { name, value: value.into() });
    }

    /// Inserts a header line before the first line of the same name (or at the top): used for Via and
    /// Record-Route, whose topmost value is the newest.
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        let at = self.0.iter().position(|h| h.name == name).unwrap_or(0);
        self.0.insert(at, Header { name, value: value.into() });
    }

    /// Replaces every line with this name by one line (appended if absent, in place of the first otherwise).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                let mut n = 0;
                self.0.retain(|h| {
                    h.name != name || {
                        n += 1;
                        n == 1
                    }
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every line with this name; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.0.len();
        self.0.retain(|h| &h.name != name);
        before - self.0.len()
    }

    /// Removes the topmost value of a comma-list header (the first value of its first line) and returns it.
    pub fn pop_first_value(&mut self, name: &HeaderName) -> Option<String> {
        let i = self.0.iter().position(|h| &h.name == name)?;
        let value = &self.0[i].value;
        let first_len = split_comma(value).next().map_or(value.len(), |f| {
            // `f` is a sub-slice of `value`; find where the next value starts.
            let start = f.as_ptr() as usize - value.as_ptr() as usize;
            start + f.len()
        });
        let first = value[..first_len].trim().to_owned();
        let rest = value[first_len..].trim_start().trim_start_matches(',').trim().to_owned();
        if rest.is_empty() {
            self.0.remove(i);
        } else {
            self.0[i].value = rest;
        }
        Some(first)
    }

    /// Iterates over the header lines.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Splits a header value at commas that are outside quoted strings and angle brackets; trims each part and
/// skips empty parts.
pub fn split_comma(value: &str) -> impl Iterator<Item = &str> {
    let b = value.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut in_quote = false;
    let mut in_angle = false;
    let mut done = false;
    if !b.contains(&b',') {
        // Fast path: one value; the loop below then just yields it once.
        i = b.len();
    }
    std::iter::from_fn(move || {
        while !done {
            if i >= b.len() {
                done = true;
                let part = value[start..].trim();
                if !part.is_empty() {
                    return Some(part);
                }
                return None;
            }
            let c = b[i];
            i += 1;
            match c {
                b'\\' if in_quote => i += 1,
                b'"' if !in_angle => in_quote = !in_quote,
                b'<' if !in_quote => in_angle = true,
                b'>' if !in_quote => in_angle = false,
                b',' if !in_quote && !in_angle => {
                    let part = value[start..i - 1].trim();
                    start = i;
                    if !part.is_empty() {
                        return Some(part);
                    }
                }
                _ => {}
            }
        }
        None
    })
}

/// Whether `c` is a `token` character (RFC 3261 §25.1).
pub fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Whether `s` is a non-empty token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Length of the quoted string at the start of `s` (which must start with `"`), including both quotes;
/// `None` when it is not terminated.
pub fn quoted_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Removes the quotes and backslash escapes of a quoted string; returns other text unchanged.
pub fn unquote(s: &str) -> std::borrow::Cow<'_, str> {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        let inner = &t[1..t.len() - 1];
        if !inner.contains('\\') {
            return inner.into();
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        out.into()
    } else {
        t.into()
    }
}

/// Quotes `s` as a quoted string, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Generic parameters (`;name[=value]`) of a URI or header value, in order. Names compare case-insensitively;
/// values keep their spelling (quoted strings keep their quotes: see [`Params::get_unquoted`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Parses `;a=b;c` (the text starting at the first `;`, or empty). Whitespace around `;` and `=` is allowed
    /// (header parameters); `uri` forbids it. Empty names are an error (RFC 4475 §3.1.2.1).
    pub fn parse(s: &str, uri: bool) -> Result<Self, &'static str> {
        let mut out = Vec::new();
        let mut rest = s.trim();
        while !rest.is_empty() {
            rest = rest.strip_prefix(';').ok_or("expected ';'")?;
            if !uri {
                rest = rest.trim_start();
            }
            // Name.
            let name_end =
                rest.bytes().position(|c| c == b'=' || c == b';' || c.is_ascii_whitespace()).unwrap_or(rest.len());
            let name = &rest[..name_end];
            if name.is_empty() {
                return Err("empty parameter");
            }
            if !uri && !is_token(name) {
                return Err("parameter name is not a token");
            }
            rest = &rest[name_end..];
            if !uri {
                rest = rest.trim_start();
            }
            let mut value = None;
            if let Some(r) = rest.strip_prefix('=') {
                let r = if uri { r } else { r.trim_start() };
                let vlen = if r.starts_with('"') {
                    quoted_len(r).ok_or("unterminated quoted parameter")?
                } else {
                    r.bytes().position(|c| c == b';' || c.is_ascii_whitespace()).unwrap_or(r.len())
                };
                if vlen == 0 {
                    return Err("empty parameter value");
                }
                value = Some(r[..vlen].to_owned());
                rest = &r[vlen..];
                if !uri {
                    rest = rest.trim_start();
                }
            }
            if uri && rest.starts_with(|c: char| c.is_ascii_whitespace()) {
                return Err("whitespace in URI parameters");
            }
            out.push((name.to_owned(), value));
        }
        Ok(Params(out))
    }

    /// Whether a parameter with this name is present (with or without a value).
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The raw value of the first parameter with this name; `Some(None)` for a parameter without a value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// The value with quotes removed, if the parameter has a value.
    pub fn get_unquoted(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.get(name).flatten().map(unquote)
    }

    /// Sets (replaces or appends) a parameter.
    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(p) => p.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// Removes a parameter; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before != self.0.len()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compact_and_case() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("cAlL-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("k"), HeaderName::Supported);
        assert_eq!(HeaderName::parse("X-Foo").as_str(), "X-Foo");
        assert_eq!(HeaderName::parse("X-Foo"), HeaderName::Other("x-fOO".into()));
        assert_ne!(HeaderName::parse("X-Foo"), HeaderName::Via);
        let set: std::collections::HashSet<_> = [HeaderName::parse("X-Foo"), HeaderName::parse("x-foo")].into();
        assert_eq!(set.len(), 1);
        assert!(HeaderName::Via.is_comma_list() && !HeaderName::WwwAuthenticate.is_comma_list());
    }

    #[test]
    fn comma_split_respects_quotes_and_brackets() {
        let v: Vec<_> = split_comma(r#""a, b" <sip:x@y;p=1,2>;q=1 , <sip:z@w>,, *"#).collect();
        assert_eq!(v, [r#""a, b" <sip:x@y;p=1,2>;q=1"#, "<sip:z@w>", "*"]);
    }

    #[test]
    fn header_list_operations() {
        let mut h = Headers::default();
        h.push(HeaderName::Via, "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2");
        h.push(HeaderName::Via, "SIP/2.0/UDP c;branch=z9hG4bK3");
        h.push_front(HeaderName::Via, "SIP/2.0/UDP p;branch=z9hG4bKp");
        assert_eq!(h.values(&HeaderName::Via).count(), 4);
        assert_eq!(h.pop_first_value(&HeaderName::Via).unwrap(), "SIP/2.0/UDP p;branch=z9hG4bKp");
        assert_eq!(h.pop_first_value(&HeaderName::Via).unwrap(), "SIP/2.0/UDP a;branch=z9hG4bK1");
        assert_eq!(h.get(&HeaderName::Via), Some("SIP/2.0/UDP b;branch=z9hG4bK2"));
        h.push(HeaderName::Expires, "1");
        h.push(HeaderName::Expires, "2");
        h.set(HeaderName::Expires, "3");
        assert_eq!(h.get_all(&HeaderName::Expires).collect::<Vec<_>>(), ["3"]);
        assert_eq!(h.remove(&HeaderName::Via), 2);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn params_and_quoting() {
        let p = Params::parse(r#" ; a = 1 ;b; c="x;y\"z" "#, false).unwrap();
        assert_eq!(p.get("A"), Some(Some("1")));
        assert_eq!(p.get("b"), Some(None));
        assert_eq!(p.get_unquoted("c").unwrap(), r#"x;y"z"#);
        assert_eq!(unquote(&quote(r#"a"b\c"#)), r#"a"b\c"#);
        assert!(Params::parse(";;", false).is_err());
        assert!(Params::parse(";a=", false).is_err());
        assert!(Params::parse(r#";a="open"#, false).is_err());
    }
}
