//! SIP requests and responses (RFC 3261 §7): parsing from bytes, validation of the headers every element
//! relies on (§8.2.2, §16.3), serialization, and response builders (§8.2.6).
//!
//! Parsing follows RFC 4475: header folding (§7.3.1), compact names, whitespace before the colon, escaped
//! URIs, leading CRLFs before the start line, LF-only line ends, and trailing octets after Content-Length in
//! a datagram (§18.3) are accepted; extra spaces in the request line, a Content-Length that is negative,
//! overlarge, repeated or longer than a datagram, mismatched CSeq methods, repeated single-valued headers and
//! malformed Via/From/To/Contact/CSeq/Max-Forwards/Expires values are errors that map to a response
//! ([`ParseError::status_code`]). Other headers are carried as text and checked only when read. Left out:
//! multipart bodies and Content-Encoding (bodies are opaque bytes), `Date` semantics.

use std::fmt;
use std::io::Write as _;

use crate::error::{ParseError, ParseErrorKind};
use crate::header::{Header, HeaderName, Headers, is_token};
use crate::types::{Method, NameAddr};
use crate::uri::Uri;

/// Size limits applied while parsing. Exceeding one is [`ParseErrorKind::TooLarge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, headers and body together.
    pub max_message: usize,
    /// Most header lines.
    pub max_headers: usize,
    /// Longest single header after unfolding.
    pub max_header_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message: 65_535, max_headers: 128, max_header_len: 8_192 }
    }
}

/// How the message was delimited, which decides what Content-Length means (RFC 3261 §18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A UDP datagram: without Content-Length the body runs to the end; octets beyond it are dropped.
    Datagram,
    /// A frame cut from a stream by [`crate::framing::StreamFramer`]: Content-Length is mandatory.
    Stream,
}

/// A SIP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Headers in order.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase (may be empty, may be UTF-8).
    pub reason: String,
    /// Headers in order.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// The default reason phrase for a status code (RFC 3261 §21 and extensions).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// Next line without its line end; `None` at the end of the buffer (no line end found).
    fn next_line(&mut self) -> Option<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        let nl = rest.iter().position(|&c| c == b'\n')?;
        self.pos += nl + 1;
        let line = &rest[..nl];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    fn peek_fold(&self) -> bool {
        matches!(self.buf.get(self.pos), Some(b' ' | b'\t'))
    }
}

fn utf8(b: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(b).map_err(|_| ParseError::new(ParseErrorKind::BadUtf8))
}

fn start_err(w: &'static str) -> ParseError {
    ParseError::new(ParseErrorKind::BadStartLine(w))
}

/// Whether `s` starts with `SIP/` in any case (byte-wise, so never splits a UTF-8 character).
fn starts_with_sip(s: &str) -> bool {
    s.as_bytes().get(..4).is_some_and(|b| b.eq_ignore_ascii_case(b"SIP/"))
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v == "SIP/2.0" {
        return Ok(());
    }
    let looks_like = starts_with_sip(v)
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if looks_like {
        if v[4..] == *"2.0" {
            return Ok(()); // "sip/2.0": case-insensitive protocol name
        }
        Err(ParseError::new(ParseErrorKind::BadVersion))
    } else {
        Err(start_err("bad SIP version"))
    }
}

enum StartLine {
    Request(Method, Uri),
    Response(u16, String),
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if starts_with_sip(line) {
        let (version, rest) = line.split_once(' ').ok_or_else(|| start_err("no status code"))?;
        check_version(version)?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(start_err("bad status code"));
        }
        let status: u16 = code.parse().map_err(|_| start_err("bad status code"))?;
        if !(100..=699).contains(&status) {
            return Err(start_err("status code out of range"));
        }
        return Ok(StartLine::Response(status, reason.to_owned()));
    }
    let mut parts = line.split(' ');
    let (Some(m), Some(u), Some(v), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(start_err("request line must be Method SP Request-URI SP SIP-Version"));
    };
    let method = Method::parse(m).ok_or_else(|| start_err("method is not a token"))?;
    if u.is_empty() || v.is_empty() {
        return Err(start_err("request line must be Method SP Request-URI SP SIP-Version"));
    }
    check_version(v)?;
    let uri = Uri::parse(u).map_err(start_err)?;
    if uri.as_sip().is_some_and(|s| s.headers.is_some()) {
        return Err(start_err("Request-URI must not carry headers"));
    }
    Ok(StartLine::Request(method, uri))
}

impl Message {
    /// Parses a datagram with the default [`Limits`].
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        Self::parse_with(bytes, &Limits::default(), Framing::Datagram)
    }

    /// Parses a message with explicit limits and framing.
    pub fn parse_with(bytes: &[u8], limits: &Limits, framing: Framing) -> Result<Message, ParseError> {
        Self::parse_validated(bytes, limits, framing).map(|(m, _)| m)
    }

    /// [`Message::parse_with`], also returning the top Via that validation parsed (the transaction layer
    /// matches by it, and need not parse it again).
    pub(crate) fn parse_validated(
        bytes: &[u8],
        limits: &Limits,
        framing: Framing,
    ) -> Result<(Message, crate::types::Via), ParseError> {
        if bytes.len() > limits.max_message {
            return Err(ParseError::new(ParseErrorKind::TooLarge("message")));
        }
        let mut lines = Lines { buf: bytes, pos: 0 };
        // Leading CRLFs before the start line are ignored (RFC 3261 §7.5).
        let start = loop {
            let l = lines.next_line().ok_or_else(|| ParseError::new(ParseErrorKind::Incomplete))?;
            if !l.is_empty() {
                break l;
            }
        };
        let start = parse_start_line(utf8(start)?)?;
        let mut headers = Headers(Vec::with_capacity(16));
        loop {
            let line = lines.next_line().ok_or_else(|| ParseError::new(ParseErrorKind::Incomplete))?;
            if line.is_empty() {
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                return Err(ParseError::new(ParseErrorKind::BadHeaderLine));
            }
            let mut text = std::borrow::Cow::Borrowed(utf8(line)?);
            while lines.peek_fold() {
                let cont = lines.next_line().ok_or_else(|| ParseError::new(ParseErrorKind::Incomplete))?;
                let t = text.to_mut();
                t.push(' ');
                t.push_str(utf8(cont)?.trim_start());
                if t.len() > limits.max_header_len {
                    return Err(ParseError::new(ParseErrorKind::TooLarge("header")));
                }
            }
            if text.len() > limits.max_header_len {
                return Err(ParseError::new(ParseErrorKind::TooLarge("header")));
            }
            if headers.len() >= limits.max_headers {
                return Err(ParseError::new(ParseErrorKind::TooLarge("too many headers")));
            }
            let colon = text.find(':').ok_or_else(|| ParseError::new(ParseErrorKind::BadHeaderLine))?;
            let name = text[..colon].trim_end_matches([' ', '\t']);
            if !is_token(name) {
                return Err(ParseError::new(ParseErrorKind::BadHeaderLine));
            }
            let name = HeaderName::parse(name);
            let value = text[colon + 1..].trim_matches([' ', '\t']);
            headers.0.push(Header { name, value: value.to_owned() });
        }
        let rest = &bytes[lines.pos..];
        let body = match (headers.content_length()?, framing) {
            (Some(n), _) if n <= rest.len() => rest[..n].to_vec(),
            (Some(_), Framing::Datagram) => {
                return Err(ParseError::header(
                    ParseErrorKind::BadContentLength("larger than the datagram"),
                    HeaderName::ContentLength,
                ));
            }
            (Some(_), Framing::Stream) => return Err(ParseError::new(ParseErrorKind::Incomplete)),
            (None, Framing::Datagram) => rest.to_vec(),
            (None, Framing::Stream) => {
                return Err(ParseError::header(
                    ParseErrorKind::BadContentLength("missing on a stream"),
                    HeaderName::ContentLength,
                ));
            }
        };
        let msg = match start {
            StartLine::Request(method, uri) => Message::Request(Request { method, uri, headers, body }),
            StartLine::Response(status, reason) => Message::Response(Response { status, reason, headers, body }),
        };
        let via = msg.validated_top_via()?;
        Ok((msg, via))
    }

    /// Checks the headers every element relies on (RFC 3261 §8.1.1, §8.2.2.1 and RFC 4475 §3.1.2, §3.3):
    /// Via, From, To, Call-ID and CSeq present, single and well formed; CSeq method equal to the request
    /// method; Max-Forwards, Expires, Contact and Retry-After well formed.
    pub fn validate(&self) -> Result<(), ParseError> {
        self.validated_top_via().map(|_| ())
    }

    /// [`Message::validate`], returning the top Via.
    fn validated_top_via(&self) -> Result<crate::types::Via, ParseError> {
        let h = self.headers();
        let Some(top) = h.vias()?.into_iter().next() else {
            return Err(ParseError::header(ParseErrorKind::MissingHeader, HeaderName::Via));
        };
        h.from()?;
        h.to()?;
        h.call_id()?;
        let cseq = h.cseq()?;
        if let Message::Request(r) = self
            && cseq.method != r.method
        {
            return Err(ParseError::header(ParseErrorKind::CSeqMismatch, HeaderName::CSeq));
        }
        h.max_forwards()?;
        h.expires()?;
        h.min_expires()?;
        h.contacts()?;
        if let Some(v) = h.get(&HeaderName::RetryAfter) {
            let n = v.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("");
            crate::types::parse_delta(n)
                .map_err(|w| ParseError::header(ParseErrorKind::BadHeader(w), HeaderName::RetryAfter))?;
        }
        Ok(top)
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The headers, mutable.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// Serializes the message (see [`Request::to_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

/// Appends the decimal digits of `n` (no formatting machinery: this runs for every message sent).
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_content_length(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, len);
    out.extend_from_slice(b"\r\n");
}

fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    let size: usize = headers.iter().map(|h| h.name.as_str().len() + h.value.len() + 4).sum();
    out.reserve(size + 24 + body.len());
    let mut wrote_cl = false;
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            if !wrote_cl {
                push_content_length(out, body.len());
                wrote_cl = true;
            }
            continue;
        }
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_cl {
        push_content_length(out, body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: Uri) -> Self {
        Request { method, uri, headers: Headers::default(), body: Vec::new() }
    }

    /// Serializes the request. Headers keep their order and unknown names; known names use their full form;
    /// Content-Length always equals the body length (written where the first one was, or last).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        let _ = write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri);
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }

    /// Builds a response to this request (RFC 3261 §8.2.6.2): copies every Via in order, From, To, Call-ID,
    /// CSeq (and Timestamp for 100). Add the To tag with [`Response::set_to_tag`] (a UAS or a proxy answering
    /// itself must, except for 100).
    pub fn make_response(&self, status: u16, reason: Option<&str>) -> Response {
        let mut headers = Headers(Vec::with_capacity(8));
        for h in self.headers.iter() {
            let copy = match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq => true,
                HeaderName::Timestamp => status == 100,
                _ => false,
            };
            if copy {
                headers.0.push(h.clone());
            }
        }
        Response {
            status,
            reason: reason.unwrap_or_else(|| reason_phrase(status)).to_owned(),
            headers,
            body: Vec::new(),
        }
    }

    /// Like [`Request::make_response`], and adds `tag` to To when To has no tag yet and the status is not 100.
    pub fn make_response_with_tag(&self, status: u16, reason: Option<&str>, tag: &str) -> Response {
        let mut r = self.make_response(status, reason);
        if status != 100 {
            r.set_to_tag(tag);
        }
        r
    }

    /// RFC 3261 §16.3 step 3 / §16.6 step 3: the Max-Forwards check of a proxy. Returns `Err(483)` when it is 0
    /// (except OPTIONS, which the proxy may answer itself: still `Err(483)`, the caller decides).
    pub fn check_max_forwards(&self) -> Result<Option<u8>, u16> {
        match self.headers.max_forwards() {
            Ok(Some(0)) => Err(483),
            Ok(v) => Ok(v),
            Err(_) => Err(400),
        }
    }

    /// Decrements Max-Forwards for forwarding, adding `Max-Forwards: 70` when it is missing (§16.6 step 3).
    pub fn decrement_max_forwards(&mut self) {
        let v = self.headers.max_forwards().ok().flatten().unwrap_or(71);
        self.headers.set(HeaderName::MaxForwards, v.saturating_sub(1).to_string());
    }

    /// RFC 3261 §8.2.2.1 / §16.3 step 2: `Err(416)` when the Request-URI scheme is not one of `schemes`
    /// (lower case, e.g. `["sip", "sips"]`).
    pub fn check_uri_scheme(&self, schemes: &[&str]) -> Result<(), u16> {
        let s = self.uri.scheme();
        if schemes.iter().any(|x| *x == s) { Ok(()) } else { Err(416) }
    }

    /// Option tags of `Require` (or `Proxy-Require`) that are not in `supported`: when non-empty, answer 420
    /// with them in `Unsupported` (§8.2.2.3, §16.3 step 5).
    pub fn unsupported_tags(&self, header: &HeaderName, supported: &[&str]) -> Vec<String> {
        self.headers
            .values(header)
            .filter(|t| !supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .map(str::to_owned)
            .collect()
    }
}

impl Response {
    /// Serializes the response (same rules as [`Request::to_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(b"SIP/2.0 ");
        push_decimal(&mut out, usize::from(self.status));
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }

    /// Adds `;tag=` to the To header if it has none.
    pub fn set_to_tag(&mut self, tag: &str) {
        // A value without the letters "tag" has no tag parameter: no need to parse it (the usual case).
        let may_have_tag = |v: &str| v.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(b"tag"));
        if let Some(h) = self.headers.0.iter_mut().find(|h| h.name == HeaderName::To)
            && (!may_have_tag(&h.value)
                || NameAddr::parse(&h.value).ok().and_then(|n| n.tag().map(str::to_owned)).is_none())
        {
            h.value.push_str(";tag=");
            h.value.push_str(tag);
        }
    }

    /// Whether this is a provisional (1xx) response.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Best effort for answering a request that failed to parse (RFC 3261 §8.2, §18.1.2 drops bad responses):
/// when the start line is a request line and the top Via can be read, returns the error response
/// (`400 Bad Request (Malformed CSeq header: ...)`, `413`, `505`) copying what headers there are.
/// `None` means drop the message.
pub fn error_response(bytes: &[u8], err: &ParseError) -> Option<Response> {
    let limits = Limits { max_message: usize::MAX, max_headers: 512, max_header_len: 65_536 };
    let mut lines = Lines { buf: bytes.get(..bytes.len().min(262_144))?, pos: 0 };
    let start = loop {
        let l = lines.next_line()?;
        if !l.is_empty() {
            break l;
        }
    };
    let line = std::str::from_utf8(start).ok()?;
    let first = line.split(' ').next()?;
    if starts_with_sip(first) {
        return None;
    }
    let method = Method::parse(first).unwrap_or(Method::Options);
    if method == Method::Ack {
        return None;
    }
    let mut headers = Headers::default();
    while let Some(l) = lines.next_line() {
        if l.is_empty() || headers.len() >= limits.max_headers {
            break;
        }
        let Ok(text) = std::str::from_utf8(l) else { continue };
        if let Some((n, v)) = text.split_once(':') {
            if matches!(text.as_bytes()[0], b' ' | b'\t') {
                continue;
            }
            headers.push(HeaderName::parse(n.trim()), v.trim());
        }
    }
    headers.top_via().ok()?;
    let req =
        Request { method, uri: Uri::Other { scheme: "sip".into(), rest: "invalid".into() }, headers, body: vec![] };
    let reason = err.reason_phrase();
    Some(req.make_response(err.status_code(), Some(&reason)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n\
        Max-Forwards: 70\r\n\
        f: <sip:alice@example.com>;tag=1\r\n\
        t: <sip:alice@example.com>\r\n\
        i: c1@10.0.0.1\r\n\
        CSeq: 1 REGISTER\r\n\
        m: <sip:alice@10.0.0.1>;expires=60, <sip:alice@10.0.0.2>\r\n\
        X-Custom:  keep me \r\n\
        l: 0\r\n\r\n";

    #[test]
    fn parses_and_serializes() {
        let Message::Request(r) = Message::parse(REGISTER.as_bytes()).unwrap() else { panic!() };
        assert_eq!(r.method, Method::Register);
        assert_eq!(r.headers.call_id().unwrap(), "c1@10.0.0.1");
        let crate::types::Contacts::List(c) = r.headers.contacts().unwrap() else { panic!() };
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].expires(), Some(60));
        let out = String::from_utf8(r.to_bytes()).unwrap();
        assert!(out.contains("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n"));
        assert!(out.contains("X-Custom: keep me\r\n"));
        assert!(out.ends_with("Content-Length: 0\r\n\r\n"));
        assert_eq!(Message::parse(out.as_bytes()).unwrap(), Message::Request(r));
    }

    #[test]
    fn response_builder() {
        let Message::Request(r) = Message::parse(REGISTER.as_bytes()).unwrap() else { panic!() };
        let resp = r.make_response_with_tag(200, None, "xyz");
        assert_eq!(resp.headers.to().unwrap().tag(), Some("xyz"));
        assert_eq!(resp.headers.cseq().unwrap().seq, 1);
        assert_eq!(resp.headers.vias().unwrap().len(), 1);
        assert!(!resp.headers.contains(&HeaderName::Contact));
        let bytes = resp.to_bytes();
        assert!(bytes.starts_with(b"SIP/2.0 200 OK\r\n"));
        assert!(matches!(Message::parse(&bytes).unwrap(), Message::Response(_)));
    }

    #[test]
    fn errors_map_to_responses() {
        let e = Message::parse(REGISTER.replace("SIP/2.0\r\n", "SIP/7.0\r\n").as_bytes()).unwrap_err();
        assert_eq!(e.status_code(), 505);
        let e = Message::parse(REGISTER.replace("CSeq: 1 REGISTER", "CSeq: x REGISTER").as_bytes()).unwrap_err();
        assert_eq!(e.header, Some(HeaderName::CSeq));
        assert_eq!(e.status_code(), 400);
        assert!(e.reason_phrase().contains("CSeq"));
        let e = Message::parse(REGISTER.replace("i: c1@10.0.0.1\r\n", "").as_bytes()).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::MissingHeader);
        let big = REGISTER.replace("l: 0\r\n", &format!("{}l: 0\r\n", "X: y\r\n".repeat(200)));
        let e = Message::parse(big.as_bytes()).unwrap_err();
        assert_eq!(e.status_code(), 413);
        let e = Message::parse(REGISTER.replace("l: 0", "l: 10").as_bytes()).unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::BadContentLength(_)));
        let e = Message::parse(REGISTER.replace("Max-Forwards: 70", "Max-Forwards: 300").as_bytes()).unwrap_err();
        assert_eq!(e.header, Some(HeaderName::MaxForwards));
    }

    #[test]
    fn proxy_checks() {
        let Message::Request(mut r) = Message::parse(REGISTER.as_bytes()).unwrap() else { panic!() };
        assert_eq!(r.check_max_forwards(), Ok(Some(70)));
        r.headers.set(HeaderName::MaxForwards, "0");
        assert_eq!(r.check_max_forwards(), Err(483));
        r.headers.remove(&HeaderName::MaxForwards);
        r.decrement_max_forwards();
        assert_eq!(r.headers.max_forwards().unwrap(), Some(70));
        assert_eq!(r.check_uri_scheme(&["sip", "sips"]), Ok(()));
        r.uri = Uri::parse("tel:+123").unwrap();
        assert_eq!(r.check_uri_scheme(&["sip", "sips"]), Err(416));
        r.headers.push(HeaderName::ProxyRequire, "foo, gruu");
        assert_eq!(r.unsupported_tags(&HeaderName::ProxyRequire, &["gruu"]), vec!["foo".to_owned()]);
    }
}
