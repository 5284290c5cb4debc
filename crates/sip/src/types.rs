//! Typed header values a proxy and registrar need: Method (RFC 3261 §7.1), Via (§20.42, RFC 3581 `rport`),
//! name-addr for From/To/Contact/Route/Record-Route (§20.10, §20.20, §20.39), CSeq (§20.16), Contact
//! parameters (`expires`, `q`, RFC 5626 `+sip.instance` and `reg-id`), Event (RFC 6665 §8.2.1), and the
//! accessors on [`Headers`] that parse them on demand.
//!
//! Parsing accepts the linear whitespace RFC 4475 §3.1.1.1 exercises (around `/` in Via, around `;` and `=`
//! in parameters, between CSeq number and method). Left out: typed Accept, Allow, Content-Type, Date
//! (carried as text).

use std::fmt;

use crate::error::{ParseError, ParseErrorKind};
use crate::header::{HeaderName, Headers, Params, is_token, is_token_char, quoted_len, split_comma, unquote};
use crate::uri::Uri;

macro_rules! methods {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal; )*) => {
        /// A request method. Methods compare case-sensitively (RFC 3261 §7.1).
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Method {
            $( $(#[$doc])* $variant, )*
            /// An extension method (any token).
            Other(String),
        }

        impl Method {
            /// Parses a method token. `None` when it is not a token.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $( $name => Some(Method::$variant), )*
                    _ if is_token(s) => Some(Method::Other(s.to_owned())),
                    _ => None,
                }
            }

            /// The method as written on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Method::$variant => $name, )*
                    Method::Other(s) => s,
                }
            }
        }
    };
}

methods! {
    /// INVITE.
    Invite = "INVITE";
    /// ACK.
    Ack = "ACK";
    /// BYE.
    Bye = "BYE";
    /// CANCEL.
    Cancel = "CANCEL";
    /// REGISTER.
    Register = "REGISTER";
    /// OPTIONS.
    Options = "OPTIONS";
    /// MESSAGE (RFC 3428).
    Message = "MESSAGE";
    /// SUBSCRIBE (RFC 6665).
    Subscribe = "SUBSCRIBE";
    /// NOTIFY (RFC 6665).
    Notify = "NOTIFY";
    /// INFO (RFC 6086).
    Info = "INFO";
    /// PRACK (RFC 3262).
    Prack = "PRACK";
    /// UPDATE (RFC 3311).
    Update = "UPDATE";
    /// REFER (RFC 3515).
    Refer = "REFER";
    /// PUBLISH (RFC 3903).
    Publish = "PUBLISH";
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Via value: `SIP/2.0/UDP host:port;branch=...;received=...;rport=...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Transport token in upper case (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or an unknown one).
    pub transport: String,
    /// The sent-by host.
    pub host: String,
    /// The sent-by port.
    pub port: Option<u16>,
    /// Parameters (branch, received, rport, maddr, ttl, extensions).
    pub params: Params,
}

/// RFC 3261 branch prefix (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    /// A Via for `transport` and `host:port` with a branch.
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Self {
        let mut params = Params::default();
        params.set("branch", Some(branch.to_owned()));
        Via { transport: transport.to_ascii_uppercase(), host: host.to_owned(), port, params }
    }

    /// Parses one Via value.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let mut parts = s.splitn(3, '/');
        let name = parts.next().unwrap_or("").trim();
        let version = parts.next().ok_or("missing protocol version")?.trim();
        let rest = parts.next().ok_or("missing transport")?.trim_start();
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err("protocol is not SIP/2.0");
        }
        let tend = rest.find(|c: char| c.is_ascii_whitespace()).ok_or("missing sent-by")?;
        let transport = &rest[..tend];
        if !is_token(transport) {
            return Err("bad transport");
        }
        let rest = rest[tend..].trim_start();
        let pstart = rest.find(';').unwrap_or(rest.len());
        let sent_by: String = rest[..pstart].chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let (host, port) = split_host_port(&sent_by)?;
        let params = Params::parse(&rest[pstart..], false)?;
        if let Some(v) = params.get("branch")
            && v.is_none_or(|b| !is_token(b))
        {
            return Err("bad branch");
        }
        Ok(Via { transport: transport.to_ascii_uppercase(), host: host.to_owned(), port, params })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch starts with the RFC 3261 magic cookie (else RFC 2543 matching applies).
    pub fn is_rfc3261(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len())
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }

    /// `None` without `rport`, `Some(None)` for a bare `rport` (client asks for it), `Some(Some(port))` when
    /// filled in (RFC 3581).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `sent-by` as `host[:port]`.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or("unterminated IPv6 reference")?;
        let after = &s[end + 1..];
        (&s[..=end], after.strip_prefix(':'))
    } else {
        match s.rfind(':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    if host.is_empty() || !host.bytes().all(|c| c.is_ascii_alphanumeric() || b"-._[]:".contains(&c)) {
        return Err("bad host");
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| "bad port")?),
        None => None,
    };
    Ok((host, port))
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}{}", self.transport, self.sent_by(), self.params)
    }
}

/// A name-addr or addr-spec with header parameters: the value of From, To, Contact, Route, Record-Route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (a quoted string keeps its quotes).
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters after the URI (`tag`, `expires`, `q`, ...).
    pub params: Params,
}

impl NameAddr {
    /// `<uri>` without display name or parameters.
    pub fn new(uri: Uri) -> Self {
        NameAddr { display: None, uri, params: Params::default() }
    }

    /// Parses a name-addr (`"Name" <uri>;p=v`, `Name <uri>`) or addr-spec (`uri;p=v`).
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        let (display, rest) = if s.starts_with('"') {
            let q = quoted_len(s).ok_or("unterminated quoted string")?;
            let rest = s[q..].trim_start();
            if !rest.starts_with('<') {
                return Err("quoted display name without <URI>");
            }
            (Some(s[..q].to_owned()), rest)
        } else if let Some(lt) = s.find('<') {
            let d = s[..lt].trim();
            if !d.bytes().all(|c| is_token_char(c) || c == b' ' || c == b'\t') {
                return Err("display name is not a token or quoted string");
            }
            (if d.is_empty() { None } else { Some(d.to_owned()) }, &s[lt..])
        } else {
            let end = s.find(';').unwrap_or(s.len());
            let uri = Uri::parse(s[..end].trim_end())?;
            if uri.as_sip().is_some_and(|u| u.headers.is_some()) || s[..end].contains(',') {
                return Err("URI with headers or comma must be enclosed in <>");
            }
            let params = Params::parse(&s[end..], false)?;
            return Ok(NameAddr { display: None, uri, params });
        };
        let gt = rest.find('>').ok_or("missing >")?;
        let uri = Uri::parse(&rest[1..gt])?;
        let params = Params::parse(&rest[gt + 1..], false)?;
        Ok(NameAddr { display, uri, params })
    }

    /// The display name without quotes.
    pub fn display_name(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.display.as_deref().map(unquote)
    }

    /// The `tag` parameter (From, To).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }

    /// The `expires` Contact parameter (RFC 3261 §10.2.1.1).
    pub fn expires(&self) -> Option<u32> {
        self.params.get("expires").flatten().and_then(|v| parse_delta(v).ok())
    }

    /// The `q` Contact parameter in thousandths (`q=0.5` is 500); `None` when absent or malformed.
    pub fn q_millis(&self) -> Option<u16> {
        let v = self.params.get("q").flatten()?;
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut millis: u16 = match int {
            "0" => 0,
            "1" => 1000,
            _ => return None,
        };
        let mut scale = 100;
        for d in frac.bytes() {
            millis += u16::from(d - b'0') * scale;
            scale /= 10;
        }
        (millis <= 1000).then_some(millis)
    }

    /// The `+sip.instance` Contact parameter without quotes (RFC 5626 §4.1), e.g. `<urn:uuid:...>`.
    pub fn instance(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.params.get_unquoted("+sip.instance")
    }

    /// The `reg-id` Contact parameter (RFC 5626 §4.2).
    pub fn reg_id(&self) -> Option<u32> {
        self.params.get("reg-id").flatten().and_then(|v| v.parse().ok())
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// The Contact header of a message: `*` or a list of contacts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *` (REGISTER removal of every binding, RFC 3261 §10.2.2).
    Wildcard,
    /// Zero or more contacts.
    List(Vec<NameAddr>),
}

/// `CSeq: <seq> <method>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2^31 (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        let end = s.find(|c: char| c.is_ascii_whitespace()).ok_or("missing method")?;
        let num = &s[..end];
        if num.is_empty() || num.len() > 10 || !num.bytes().all(|c| c.is_ascii_digit()) {
            return Err("bad sequence number");
        }
        let seq: u64 = num.parse().map_err(|_| "bad sequence number")?;
        if seq >= 1 << 31 {
            return Err("sequence number too large");
        }
        let method = Method::parse(s[end..].trim()).ok_or("bad method")?;
        Ok(CSeq { seq: seq as u32, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// `Event: package;id=...` (RFC 6665 §8.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event package (`presence`, `reg`, ...).
    pub package: String,
    /// Parameters (`id`).
    pub params: Params,
}

/// Parses delta-seconds (RFC 3261 §25.1) into a u32; values beyond u32 are an error.
pub fn parse_delta(s: &str) -> Result<u32, &'static str> {
    let s = s.trim();
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("not a number of seconds");
    }
    s.parse::<u64>().ok().and_then(|v| u32::try_from(v).ok()).ok_or("number too large")
}

fn bad(name: HeaderName, what: &'static str) -> ParseError {
    ParseError::header(ParseErrorKind::BadHeader(what), name)
}

impl Headers {
    fn single(&self, name: HeaderName) -> Result<Option<&str>, ParseError> {
        let mut it = self.0.iter().filter(|h| h.name == name).map(|h| h.value.as_str());
        let first = it.next();
        if it.next().is_some() {
            return Err(ParseError::header(ParseErrorKind::MultipleValues, name));
        }
        Ok(first)
    }

    fn required(&self, name: HeaderName) -> Result<&str, ParseError> {
        match self.single(name.clone())? {
            Some(v) => Ok(v),
            None => Err(ParseError::header(ParseErrorKind::MissingHeader, name)),
        }
    }

    fn name_addr(&self, name: HeaderName) -> Result<NameAddr, ParseError> {
        let v = self.required(name.clone())?;
        let mut parts = split_comma(v);
        let first = parts.next().ok_or_else(|| bad(name.clone(), "empty"))?;
        if parts.next().is_some() {
            return Err(ParseError::header(ParseErrorKind::MultipleValues, name));
        }
        NameAddr::parse(first).map_err(|w| bad(name, w))
    }

    /// Every Via value, topmost first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.values(&HeaderName::Via).map(|v| Via::parse(v).map_err(|w| bad(HeaderName::Via, w))).collect()
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let v = self
            .values(&HeaderName::Via)
            .next()
            .ok_or_else(|| ParseError::header(ParseErrorKind::MissingHeader, HeaderName::Via))?;
        Via::parse(v).map_err(|w| bad(HeaderName::Via, w))
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.name_addr(HeaderName::From)
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.name_addr(HeaderName::To)
    }

    /// The To tag; `None` without one, and when To is missing or malformed. To is parsed only when its text
    /// holds `tag` at all: an out-of-dialog request has none, and the proxy asks for every request.
    pub fn to_tag(&self) -> Option<String> {
        let v = self.get(&HeaderName::To)?;
        if !v.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(b"tag")) {
            return None;
        }
        self.to().ok().and_then(|t| t.tag().map(str::to_owned))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self.required(HeaderName::CallId)?;
        if v.is_empty() || v.bytes().any(|c| c.is_ascii_whitespace() || c == b',') {
            return Err(bad(HeaderName::CallId, "not a single word"));
        }
        Ok(v)
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.required(HeaderName::CSeq)?).map_err(|w| bad(HeaderName::CSeq, w))
    }

    /// Max-Forwards (0..=255), if present.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single(HeaderName::MaxForwards)?
            .map(|v| {
                parse_delta(v)
                    .ok()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| bad(HeaderName::MaxForwards, "not a number from 0 to 255"))
            })
            .transpose()
    }

    /// The Contact header(s).
    pub fn contacts(&self) -> Result<Contacts, ParseError> {
        let mut list = Vec::new();
        let mut wildcard = false;
        for v in self.values(&HeaderName::Contact) {
            if v == "*" {
                wildcard = true;
            } else {
                list.push(NameAddr::parse(v).map_err(|w| bad(HeaderName::Contact, w))?);
            }
        }
        match (wildcard, list.is_empty()) {
            (true, true) => Ok(Contacts::Wildcard),
            (true, false) => Err(bad(HeaderName::Contact, "* mixed with contacts")),
            (false, _) => Ok(Contacts::List(list)),
        }
    }

    fn delta(&self, name: HeaderName) -> Result<Option<u32>, ParseError> {
        self.single(name.clone())?.map(|v| parse_delta(v).map_err(|w| bad(name, w))).transpose()
    }

    /// Expires, if present.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.delta(HeaderName::Expires)
    }

    /// Min-Expires, if present.
    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.delta(HeaderName::MinExpires)
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let name = HeaderName::ContentLength;
        match self.single(name.clone())? {
            None => Ok(None),
            Some(v) if v.contains(',') => Err(ParseError::header(ParseErrorKind::MultipleValues, name)),
            Some(v) => parse_delta(v)
                .map(|n| Some(n as usize))
                .map_err(|_| ParseError::header(ParseErrorKind::BadContentLength("not a number"), name)),
        }
    }

    /// Route values, topmost first.
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::Route)
    }

    /// Record-Route values, topmost first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Path values (RFC 3327), topmost first.
    pub fn paths(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::Path)
    }

    fn name_addrs(&self, name: HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        self.values(&name).map(|v| NameAddr::parse(v).map_err(|w| bad(name.clone(), w))).collect()
    }

    /// Option tags of Supported, Require, Proxy-Require or Unsupported, across all lines.
    pub fn option_tags<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name)
    }

    /// Whether an option tag is listed in the header (case-insensitive).
    pub fn has_option_tag(&self, name: &HeaderName, tag: &str) -> bool {
        self.values(name).any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// The Event header, if present.
    pub fn event(&self) -> Result<Option<Event>, ParseError> {
        let Some(v) = self.single(HeaderName::Event)? else { return Ok(None) };
        let end = v.find(';').unwrap_or(v.len());
        let package = v[..end].trim();
        if !is_token(package) {
            return Err(bad(HeaderName::Event, "bad event package"));
        }
        let params = Params::parse(&v[end..], false).map_err(|w| bad(HeaderName::Event, w))?;
        Ok(Some(Event { package: package.to_owned(), params }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_lws_and_params() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.is_rfc3261());
        let v = Via::parse("SIP/2.0/tcp [2001:db8::9]:5070 ; branch = z9hG4bK77 ;rport;received=10.0.0.1").unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.port, Some(5070));
        assert!(v.is_rfc3261());
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("10.0.0.1"));
        assert_eq!(v.to_string(), "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bK77;rport;received=10.0.0.1");
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert!(Via::parse("SIP/3.0/UDP host").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ;  tag = 98asjd8"#).unwrap();
        assert_eq!(n.display_name().unwrap(), r#"J Rosenberg \""#);
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.tag(), Some("1918181833n"));
        assert!(NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse(r#""Watson, Thomas" < sip:t.watson@example.org >"#).is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>").is_err());
    }

    #[test]
    fn contact_params() {
        let n = NameAddr::parse(
            r#"<sip:a@10.0.0.1:5060;transport=tcp>;expires=3600;q=0.75;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1"#,
        )
        .unwrap();
        assert_eq!(n.expires(), Some(3600));
        assert_eq!(n.q_millis(), Some(750));
        assert_eq!(n.instance().unwrap(), "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>");
        assert_eq!(n.reg_id(), Some(1));
    }

    #[test]
    fn cseq() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap(), CSeq { seq: 9, method: Method::Invite });
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
    }
}
