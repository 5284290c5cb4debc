//! Stream framing for SIP over TCP, TLS and other streams (RFC 3261 §18.3): messages are delimited by the
//! blank line after the headers plus Content-Length, which is mandatory on streams. Between messages,
//! RFC 5626 §4.4.1 keep-alives: a double CRLF (ping) must be answered with a single CRLF (pong); a single
//! CRLF is a pong (or a Microsoft-style keep-alive) and needs no answer.
//!
//! The framer never waits forever without telling: [`StreamFramer::partial_since`] says since when an
//! incomplete message has been sitting in the buffer, so the driver can close slow senders. Left out:
//! WebSocket framing (RFC 7118 puts one message per WebSocket frame: use [`crate::Message::parse`]).

use std::time::Instant;

use crate::error::{ParseError, ParseErrorKind};
use crate::header::HeaderName;
use crate::message::{Framing, Limits, Message};

/// The RFC 5626 §4.4.1 pong: what the driver writes back for a [`FrameEvent::Ping`].
pub const PONG: &[u8] = b"\r\n";

/// What the framer found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameEvent {
    /// A complete, valid message.
    Message(Message),
    /// A complete frame that failed to parse. The stream is still in sync: answer with
    /// [`crate::message::error_response`] if it was a request, and keep reading.
    Invalid {
        /// Why it failed.
        error: ParseError,
        /// The frame's bytes.
        bytes: Vec<u8>,
    },
    /// CRLFCRLF keep-alive ping: write [`PONG`] (a single CRLF) back.
    Ping,
    /// A single CRLF (pong or keep-alive): nothing to answer.
    Pong,
}

/// Splits a byte stream into SIP messages. Feed bytes with [`StreamFramer::push`], then call
/// [`StreamFramer::next_event`] until it returns `Ok(None)`. An `Err` is fatal for the connection (the framing
/// is lost): close it, after answering 400/413 if you wish.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limits: Limits,
    partial_since: Option<Instant>,
    last_push: Option<Instant>,
}

fn find_header_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            if b.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Finds Content-Length (or `l`) in a header section without parsing the message.
fn content_length(head: &[u8]) -> Result<usize, ParseError> {
    let cl_err = |w| ParseError::header(ParseErrorKind::BadContentLength(w), HeaderName::ContentLength);
    let mut found = None;
    for line in head.split(|&c| c == b'\n') {
        let Some(colon) = line.iter().position(|&c| c == b':') else { continue };
        if matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        let name = line[..colon].trim_ascii_end();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            if found.is_some() {
                return Err(ParseError::header(ParseErrorKind::MultipleValues, HeaderName::ContentLength));
            }
            let v = line[colon + 1..].trim_ascii();
            if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
                return Err(cl_err("not a number"));
            }
            let n: usize =
                std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or_else(|| cl_err("not a number"))?;
            found = Some(n);
        }
    }
    found.ok_or_else(|| cl_err("missing on a stream"))
}

impl StreamFramer {
    /// A framer with these limits.
    pub fn new(limits: Limits) -> Self {
        StreamFramer { buf: Vec::new(), limits, partial_since: None, last_push: None }
    }

    /// Appends received bytes.
    pub fn push(&mut self, now: Instant, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.last_push = Some(now);
        if self.partial_since.is_none() && self.has_partial() {
            self.partial_since = Some(now);
        }
    }

    fn has_partial(&self) -> bool {
        !self.buf.is_empty() && self.buf != b"\r\n" && self.buf != b"\r\n\r" && self.buf != b"\r"
    }

    /// Since when an incomplete message has been waiting; `None` when the buffer holds no partial message.
    /// The driver closes the connection when this is older than its slow-sender limit.
    pub fn partial_since(&self) -> Option<Instant> {
        self.partial_since
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<FrameEvent>, ParseError> {
        let ev = self.next_inner();
        if !self.has_partial() {
            self.partial_since = None;
        } else if !matches!(ev, Ok(None)) {
            // Progress was made: what remains has been waiting since the last push.
            self.partial_since = self.last_push;
        }
        ev
    }

    fn next_inner(&mut self) -> Result<Option<FrameEvent>, ParseError> {
        if self.buf.starts_with(b"\r\n") {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.drain(..4);
                return Ok(Some(FrameEvent::Ping));
            }
            if self.buf.len() >= 3 && self.buf[2] != b'\r' || self.buf.len() >= 4 {
                self.buf.drain(..2);
                return Ok(Some(FrameEvent::Pong));
            }
            return Ok(None);
        }
        if self.buf.starts_with(b"\n") {
            self.buf.drain(..1);
            return Ok(Some(FrameEvent::Pong));
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some(head_end) = find_header_end(&self.buf) else {
            if self.buf.len() > self.limits.max_message {
                return Err(ParseError::new(ParseErrorKind::TooLarge("message")));
            }
            return Ok(None);
        };
        let cl = content_length(&self.buf[..head_end])?;
        let total = head_end.checked_add(cl).filter(|&t| t <= self.limits.max_message);
        let Some(total) = total else {
            return Err(ParseError::new(ParseErrorKind::TooLarge("message")));
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame: Vec<u8> = self.buf.drain(..total).collect();
        Ok(Some(match Message::parse_with(&frame, &self.limits, Framing::Stream) {
            Ok(m) => FrameEvent::Message(m),
            Err(error) => FrameEvent::Invalid { error, bytes: frame },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MSG: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n\
        To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn frames_split_and_joined_messages() {
        let now = Instant::now();
        let mut f = StreamFramer::new(Limits::default());
        let all = format!("\r\n\r\n{MSG}{MSG}\r\n");
        let (a, b) = all.as_bytes().split_at(30);
        f.push(now, a);
        assert_eq!(f.next_event().unwrap(), Some(FrameEvent::Ping));
        assert_eq!(f.next_event().unwrap(), None);
        assert_eq!(f.partial_since(), Some(now));
        f.push(now + Duration::from_secs(1), b);
        for _ in 0..2 {
            let Some(FrameEvent::Message(m)) = f.next_event().unwrap() else { panic!() };
            assert_eq!(m.body(), b"body");
        }
        assert_eq!(f.next_event().unwrap(), None);
        assert_eq!(f.partial_since(), None);
        f.push(now, b"X");
        assert_eq!(f.next_event().unwrap(), Some(FrameEvent::Pong));
    }

    #[test]
    fn missing_content_length_and_limits() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(Instant::now(), MSG.replace("Content-Length: 4\r\n", "").as_bytes());
        assert!(f.next_event().is_err());
        let mut f = StreamFramer::new(Limits { max_message: 100, ..Limits::default() });
        f.push(Instant::now(), MSG.as_bytes());
        assert_eq!(f.next_event().unwrap_err().status_code(), 413);
        let mut f = StreamFramer::new(Limits::default());
        f.push(Instant::now(), MSG.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE").as_bytes());
        assert!(matches!(f.next_event().unwrap(), Some(FrameEvent::Invalid { .. })));
    }
}
