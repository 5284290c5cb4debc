//! How a participant gets into a conference: an SDP offer goes in, the bridge's SDP answer comes out
//! ([`Join`]). Today's way is Vienna's admin API ([`AdminApi`]: `POST
//! /api/v1/mcu/conferences/{name}/participants` with the offer, 201 with the answer and the participant's
//! URL in `Location`, `DELETE` on that URL to leave); a SIP INVITE to a conference focus is another
//! implementation of the same trait.
//!
//! The HTTP client here is the least HTTP/1.1 that talks to one admin endpoint: one request per
//! connection (`Connection: close`), a `Content-Length` or chunked body, a bounded answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// Largest answer read.
const MAX_RESPONSE: u64 = 1 << 20;

/// A participant in a conference, as the join step left it.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The bridge's SDP answer.
    pub answer: String,
    /// What [`Join::leave`] needs (the admin API: the participant's path).
    pub handle: String,
}

/// A way into a conference.
pub trait Join {
    /// Joins `conference` as `label` with an SDP `offer`.
    fn join(&self, conference: &str, label: &str, offer: &str) -> anyhow::Result<Joined>;
    /// Leaves.
    fn leave(&self, joined: &Joined) -> anyhow::Result<()>;
    /// Its name in reports.
    fn name(&self) -> &'static str;
}

/// Vienna's admin API (`[mcu]` role).
#[derive(Debug, Clone)]
pub struct AdminApi {
    /// The admin listener.
    pub addr: SocketAddr,
    /// Bearer token (`admin.token`), if the server has one.
    pub token: Option<String>,
    /// Connect and read timeout.
    pub timeout: Duration,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body (chunked bodies decoded).
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl AdminApi {
    /// Sends one request; returns the answer.
    pub fn request(&self, method: &str, path: &str, content_type: &str, body: &str) -> anyhow::Result<HttpResponse> {
        let mut s = TcpStream::connect_timeout(&self.addr, self.timeout)
            .with_context(|| format!("connecting to the admin API at {}", self.addr))?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        let auth = self.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{auth}\
             Connection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        s.take(MAX_RESPONSE).read_to_end(&mut raw).with_context(|| format!("reading the answer to {method} {path}"))?;
        parse_response(&raw).with_context(|| format!("the answer to {method} {path}"))
    }
}

/// Parses an HTTP/1.1 response (status line, headers, body by Content-Length, chunks or to the end).
pub fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { bail!("no end of headers") };
    let head = std::str::from_utf8(&raw[..end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else { bail!("bad status line {status_line:?}") };
    if !version.starts_with("HTTP/1.") {
        bail!("not HTTP/1.x: {status_line:?}");
    }
    let status: u16 = code.parse().with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().context("bad Content-Length")?;
        rest.get(..len).context("body shorter than its Content-Length")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else { bail!("chunk size line unterminated") };
        let size_text = std::str::from_utf8(&rest[..eol])?.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).context("chunk cut short")?);
        rest = rest.get(size + 2..).context("chunk cut short")?;
    }
}

impl Join for AdminApi {
    fn join(&self, conference: &str, label: &str, offer: &str) -> anyhow::Result<Joined> {
        let path = format!("/api/v1/mcu/conferences/{conference}/participants?label={label}");
        let r = self.request("POST", &path, "application/sdp", offer)?;
        if r.status != 201 {
            bail!("POST {path}: {} {}", r.status, r.body.trim());
        }
        let handle = r.header("location").context("201 without Location")?.to_owned();
        Ok(Joined { answer: r.body, handle })
    }

    fn leave(&self, joined: &Joined) -> anyhow::Result<()> {
        let r = self.request("DELETE", &joined.handle, "text/plain", "")?;
        if r.status != 204 {
            bail!("DELETE {}: {} {}", joined.handle, r.status, r.body.trim());
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "admin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_chunks_or_neither() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\nLocation: /a/b\r\nContent-Length: 3\r\n\r\nv=0xx").unwrap();
        assert_eq!((r.status, r.header("location"), r.body.as_str()), (201, Some("/a/b"), "v=0"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "abcde");
        let r = parse_response(b"HTTP/1.0 204 No Content\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"SIP/2.0 200 OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
