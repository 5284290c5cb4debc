//! How a participant gets into a conference: an SDP offer goes in, the bridge's SDP answer comes out
//! ([`Join`]). Two ways are here: Vienna's admin API ([`AdminApi`]: `POST
//! /api/v1/mcu/conferences/{name}/participants` with the offer, 201 with the answer and the participant's
//! URL in `Location`, `DELETE` on that URL to leave), and Janus AudioBridge's HTTP API for plain-RTP
//! participants ([`JanusApi`]), so the same load measures both bridges; a SIP INVITE to a conference focus
//! is another implementation of the same trait.
//!
//! The HTTP client here is the least HTTP/1.1 that talks to one API endpoint: one request per
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
    /// Called every few seconds during the run (a session that times out without it is kept alive).
    fn keepalive(&self) -> anyhow::Result<()> {
        Ok(())
    }
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

/// Janus AudioBridge over Janus's HTTP transport (`http://ADDR/janus`): one session, one plugin handle
/// per participant joining as a plain-RTP participant (`"rtp": {ip, port, payload_type}`); a conference is
/// a room (`ROOM_BASE` + its number in the order the run uses them, created when first needed, 48 kHz).
/// The "answer" is an SDP built from the `joined` event's RTP address, so the rest of the tool is the same.
#[derive(Debug)]
pub struct JanusApi {
    http: AdminApi,
    state: std::sync::Mutex<JanusState>,
}

#[derive(Debug, Default)]
struct JanusState {
    session: Option<u64>,
    rooms: Vec<String>,
    transaction: u64,
}

/// The first room number used.
pub const ROOM_BASE: u64 = 27_000;

impl JanusApi {
    /// Janus's HTTP API at `addr` (base path `/janus`).
    pub fn new(addr: SocketAddr, timeout: Duration) -> JanusApi {
        JanusApi { http: AdminApi { addr, token: None, timeout }, state: std::sync::Mutex::default() }
    }

    fn call(&self, path: &str, mut body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let tx = {
            let mut st = self.state.lock().map_err(|_| anyhow::anyhow!("janus state poisoned"))?;
            st.transaction += 1;
            format!("vl{}", st.transaction)
        };
        body["transaction"] = tx.into();
        let r = self.http.request("POST", path, "application/json", &body.to_string())?;
        if r.status != 200 {
            bail!("POST {path}: HTTP {}", r.status);
        }
        let v: serde_json::Value = serde_json::from_str(&r.body).context("Janus answered no JSON")?;
        if v["janus"] == "error" {
            bail!("Janus: {}", v["error"]["reason"].as_str().unwrap_or("error"));
        }
        Ok(v)
    }

    fn session(&self) -> anyhow::Result<u64> {
        if let Some(s) = self.state.lock().map_err(|_| anyhow::anyhow!("janus state poisoned"))?.session {
            return Ok(s);
        }
        let v = self.call("/janus", serde_json::json!({ "janus": "create" }))?;
        let id = v["data"]["id"].as_u64().context("no session id")?;
        self.state.lock().map_err(|_| anyhow::anyhow!("janus state poisoned"))?.session = Some(id);
        Ok(id)
    }

    /// The room of `conference`, created on first use.
    fn room(&self, session: u64, handle: u64, conference: &str) -> anyhow::Result<u64> {
        let (room, new) = {
            let mut st = self.state.lock().map_err(|_| anyhow::anyhow!("janus state poisoned"))?;
            match st.rooms.iter().position(|r| r == conference) {
                Some(i) => (ROOM_BASE + i as u64, false),
                None => {
                    st.rooms.push(conference.to_owned());
                    (ROOM_BASE + st.rooms.len() as u64 - 1, true)
                }
            }
        };
        if new {
            let body = serde_json::json!({
                "janus": "message",
                "body": { "request": "create", "room": room, "description": conference, "sampling_rate": 48000,
                          "allow_rtp_participants": true, "audiolevel_ext": false, "permanent": false },
            });
            let v = self.call(&format!("/janus/{session}/{handle}"), body)?;
            let data = &v["plugindata"]["data"];
            // 486: it exists already (an earlier run of the same server).
            if data["audiobridge"] != "created" && data["error_code"] != 486 {
                bail!("Janus refused to create room {room}: {data}");
            }
        }
        Ok(room)
    }

    /// Long-polls the session until `handle` got its `joined` event; returns its RTP address.
    fn wait_joined(&self, session: u64, handle: u64) -> anyhow::Result<SocketAddr> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let r = self.http.request("GET", &format!("/janus/{session}?maxev=10"), "application/json", "")?;
            let v: serde_json::Value = serde_json::from_str(&r.body).context("Janus answered no JSON")?;
            let events = if let Some(list) = v.as_array() { list.clone() } else { vec![v] };
            for e in events {
                let data = &e["plugindata"]["data"];
                if e["sender"].as_u64() == Some(handle) && data["audiobridge"] == "joined" {
                    let rtp = &data["rtp"];
                    let ip = rtp["ip"].as_str().unwrap_or("127.0.0.1");
                    let port = rtp["port"].as_u64().context("joined without an RTP port")?;
                    return Ok(SocketAddr::new(ip.parse()?, u16::try_from(port)?));
                }
                if e["sender"].as_u64() == Some(handle) && data["error"].is_string() {
                    bail!("Janus: {}", data["error"]);
                }
            }
        }
        bail!("no joined event from Janus within 30 s")
    }
}

impl Join for JanusApi {
    fn join(&self, conference: &str, label: &str, offer: &str) -> anyhow::Result<Joined> {
        let sdp = vienna_media::sdp::SessionDescription::parse(offer).map_err(|e| anyhow::anyhow!("offer: {e}"))?;
        let m = sdp.media.first().context("offer without media")?;
        let ip = m.connection.or(sdp.connection).context("offer without c=")?;
        let pt = *m.formats.first().context("offer without a format")?;
        let codec = match pt {
            0 => "pcmu",
            8 => "pcma",
            9 => "g722",
            _ => "opus",
        };
        let session = self.session()?;
        let v = self.call(
            &format!("/janus/{session}"),
            serde_json::json!({ "janus": "attach", "plugin": "janus.plugin.audiobridge" }),
        )?;
        let handle = v["data"]["id"].as_u64().context("no handle id")?;
        let room = self.room(session, handle, conference)?;
        let body = serde_json::json!({
            "janus": "message",
            "body": { "request": "join", "room": room, "display": label, "codec": codec,
                      "rtp": { "ip": ip.to_string(), "port": m.port, "payload_type": pt } },
        });
        self.call(&format!("/janus/{session}/{handle}"), body)?;
        let at = self.wait_joined(session, handle)?;
        let fam = if at.is_ipv4() { "IP4" } else { "IP6" };
        let map = match pt {
            0 => "PCMU/8000".to_owned(),
            8 => "PCMA/8000".to_owned(),
            _ => "opus/48000/2".to_owned(),
        };
        let answer = format!(
            "v=0\r\no=janus 1 1 IN {fam} {ip}\r\ns=AudioBridge {room}\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {map}\r\n",
            ip = at.ip(),
            port = at.port()
        );
        Ok(Joined { answer, handle: format!("/janus/{session}/{handle}") })
    }

    fn leave(&self, joined: &Joined) -> anyhow::Result<()> {
        self.call(&joined.handle, serde_json::json!({ "janus": "detach" })).map(|_| ())
    }

    fn name(&self) -> &'static str {
        "janus"
    }

    fn keepalive(&self) -> anyhow::Result<()> {
        let session = self.session()?;
        self.call(&format!("/janus/{session}"), serde_json::json!({ "janus": "keepalive" })).map(|_| ())
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
