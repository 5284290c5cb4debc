//! Joining a conference over SIP ([`SipFocus`]), the way a standard client dials in: the conference is
//! created through Vienna's admin API (`POST /api/v1/conferences`, which gives its dial-in URI), then each
//! participant, as user `user{i}` with password `pw-user{i}` (the accounts `vienna-load sip` uses),
//! INVITEs the dial-in URI with its SDP offer, answers the 407 challenge with Digest, takes the SDP answer
//! from the 200 OK and sends the ACK; leaving is a BYE in that dialog. The conference focus puts the audio
//! into the MCU, so the run loads the signaling and the media path together.
//!
//! One UDP socket carries the signaling of every participant, one transaction at a time (the tool joins
//! participants one after the other). Requests are retransmitted RFC 3261 style (500 ms doubling, at
//! most 32 s); requests the server sends to it (a BYE when a participant is ejected, NOTIFYs) are answered
//! 200.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use vienna_sip::digest::{Algorithm, Challenge, respond};
use vienna_sip::{HeaderName, Message, Response};

use super::join::{AdminApi, Join, Joined};

/// First retransmission interval (RFC 3261 T1).
const T1: Duration = Duration::from_millis(500);
/// Longest a transaction may take (64 x T1).
const TRANSACTION: Duration = Duration::from_secs(32);

/// A participant's dialog, kept for its BYE.
#[derive(Debug, Clone)]
struct Dialog {
    user: String,
    call_id: String,
    from_tag: String,
    to: String,
    target: String,
    routes: Vec<String>,
    cseq: u32,
}

/// Mutable state behind [`SipFocus`]'s `&self` API.
#[derive(Debug)]
struct State {
    socket: UdpSocket,
    /// Conference name → its dial-in URI.
    dial_in: HashMap<String, String>,
    /// Participant handle → its dialog.
    dialogs: HashMap<String, Dialog>,
    next_user: usize,
    counter: u64,
}

/// Joins through the conference focus over SIP UDP (see the module docs).
#[derive(Debug)]
pub struct SipFocus {
    admin: AdminApi,
    server: SocketAddr,
    domain: String,
    local: SocketAddr,
    state: Mutex<State>,
}

impl SipFocus {
    /// Signaling to `server` (Vienna's SIP UDP listener) for the SIP `domain`; conferences created through
    /// `admin` with `user0` as the organizer.
    pub fn new(admin: AdminApi, server: SocketAddr, domain: &str) -> anyhow::Result<SipFocus> {
        // Bound to the address the kernel routes to the server from: that is what Via and Contact say.
        let probe = UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        probe.connect(server).with_context(|| format!("no route to {server}"))?;
        let socket = UdpSocket::bind(SocketAddr::new(probe.local_addr()?.ip(), 0))
            .context("binding the SIP signaling socket")?;
        let local = socket.local_addr()?;
        let state = State { socket, dial_in: HashMap::new(), dialogs: HashMap::new(), next_user: 0, counter: 0 };
        Ok(SipFocus { admin, server, domain: domain.to_owned(), local, state: Mutex::new(state) })
    }

    /// The dial-in URI of `conference`, creating it on first use.
    fn dial_in(&self, state: &mut State, conference: &str) -> anyhow::Result<String> {
        if let Some(uri) = state.dial_in.get(conference) {
            return Ok(uri.clone());
        }
        let body = serde_json::json!({ "organizer": format!("sip:user0@{}", self.domain), "subject": conference });
        let r = self.admin.request("POST", "/api/v1/conferences", "application/json", &body.to_string())?;
        if r.status != 201 {
            bail!("creating conference {conference}: {} {}", r.status, r.body.trim());
        }
        let v: serde_json::Value = serde_json::from_str(&r.body).context("the conference's JSON")?;
        let uri = v["uris"]["dial_in"].as_str().ok_or_else(|| anyhow!("no dial-in URI in {v}"))?.to_owned();
        state.dial_in.insert(conference.to_owned(), uri.clone());
        Ok(uri)
    }
}

impl State {
    fn unique(&mut self) -> u64 {
        self.counter += 1;
        self.counter ^ (u64::from(std::process::id()) << 40)
    }

    /// Sends `bytes` and waits for the final response to (`call_id`, `cseq`), retransmitting until a
    /// provisional one arrives; answers requests that come meanwhile.
    fn transact(&mut self, server: SocketAddr, bytes: &[u8], call_id: &str, cseq: u32) -> anyhow::Result<Response> {
        let start = Instant::now();
        let mut rto = T1;
        let mut next = start + rto;
        let mut provisional = false;
        self.socket.send_to(bytes, server)?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let now = Instant::now();
            if now >= start + TRANSACTION {
                bail!("no final response in {} s", TRANSACTION.as_secs());
            }
            if !provisional && now >= next {
                self.socket.send_to(bytes, server)?;
                rto = (rto * 2).min(Duration::from_secs(4));
                next = now + rto;
            }
            let wait = next.min(start + TRANSACTION).saturating_duration_since(now).max(Duration::from_millis(1));
            self.socket.set_read_timeout(Some(wait))?;
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => return Err(e.into()),
            };
            match Message::parse(&buf[..n]) {
                Ok(Message::Response(r)) => {
                    let ours = r.headers.call_id().is_ok_and(|c| c == call_id)
                        && r.headers.cseq().is_ok_and(|c| c.seq == cseq);
                    if !ours {
                        continue; // a retransmitted 200 of an earlier join, or another dialog's answer
                    }
                    if r.status < 200 {
                        provisional = true;
                        continue;
                    }
                    return Ok(r);
                }
                Ok(Message::Request(req)) => {
                    if req.method.as_str() != "ACK" {
                        let _ = self.socket.send_to(&req.make_response(200, None).to_bytes(), from);
                    }
                }
                Err(_) => {}
            }
        }
    }
}

/// The challenge to answer among the `Proxy-Authenticate` values (SHA-256 before MD5).
fn challenge(r: &Response) -> Option<Challenge> {
    let offered: Vec<Challenge> =
        r.headers.get_all(&HeaderName::ProxyAuthenticate).filter_map(|v| Challenge::parse(v).ok()).collect();
    let find = |a: Algorithm| offered.iter().find(|c| c.algorithm == a).cloned();
    find(Algorithm::Sha256).or_else(|| find(Algorithm::Md5))
}

impl Join for SipFocus {
    fn join(&self, conference: &str, _label: &str, offer: &str) -> anyhow::Result<Joined> {
        let mut state = self.state.lock().map_err(|_| anyhow!("the SIP join state is poisoned"))?;
        let uri = self.dial_in(&mut state, conference)?;
        let n = state.next_user;
        state.next_user += 1;
        let (user, password) = (format!("user{n}"), format!("pw-user{n}"));
        let id = state.unique();
        let (call_id, from_tag) = (format!("vl-conf-{id:x}@vienna-load"), format!("t{id:x}"));
        let (domain, local) = (&self.domain, self.local);
        let invite = |cseq: u32, auth: &str, branch: u64| {
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch:x};rport\r\nMax-Forwards: 70\r\n\
                 From: <sip:{user}@{domain}>;tag={from_tag}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
                 Contact: <sip:{user}@{local}>\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
                offer.len()
            )
        };
        let branch = state.unique();
        let mut cseq = 1;
        let mut r = state.transact(self.server, invite(cseq, "", branch).as_bytes(), &call_id, cseq)?;
        if r.status == 407 {
            let c = challenge(&r).ok_or_else(|| anyhow!("407 without a Digest challenge we can answer"))?;
            ack(&mut state, self.server, &r, &uri, local, &user, domain, &from_tag, &call_id, cseq, branch);
            let cnonce = format!("{:016x}", state.unique());
            let creds = respond(&c, &user, &password, "INVITE", &uri, &cnonce, 1);
            cseq += 1;
            let branch = state.unique();
            let auth = format!("Proxy-Authorization: {creds}\r\n");
            r = state.transact(self.server, invite(cseq, &auth, branch).as_bytes(), &call_id, cseq)?;
            if r.status >= 300 {
                ack(&mut state, self.server, &r, &uri, local, &user, domain, &from_tag, &call_id, cseq, branch);
            }
        } else if r.status >= 300 {
            ack(&mut state, self.server, &r, &uri, local, &user, domain, &from_tag, &call_id, cseq, branch);
        }
        if r.status != 200 {
            bail!("INVITE {uri} as {user}: {} {}", r.status, r.reason);
        }
        let to = r.headers.get(&HeaderName::To).unwrap_or_default().to_owned();
        let target = r
            .headers
            .contacts()
            .ok()
            .and_then(|c| match c {
                vienna_sip::Contacts::List(list) => list.first().map(|c| c.uri.to_string()),
                vienna_sip::Contacts::Wildcard => None,
            })
            .unwrap_or_else(|| uri.clone());
        let mut routes: Vec<String> = r.headers.values(&HeaderName::RecordRoute).map(str::to_owned).collect();
        routes.reverse();
        let dialog = Dialog { user, call_id, from_tag, to, target, routes, cseq };
        let branch = state.unique();
        let ack = in_dialog(&dialog, "ACK", dialog.cseq, local, domain, branch);
        state.socket.send_to(ack.as_bytes(), self.server)?;
        let answer = String::from_utf8(r.body).context("the SDP answer is not UTF-8")?;
        let handle = format!("{id:x}");
        state.dialogs.insert(handle.clone(), dialog);
        Ok(Joined { answer, handle })
    }

    fn leave(&self, joined: &Joined) -> anyhow::Result<()> {
        let mut state = self.state.lock().map_err(|_| anyhow!("the SIP join state is poisoned"))?;
        let Some(mut dialog) = state.dialogs.remove(&joined.handle) else { bail!("no dialog {}", joined.handle) };
        dialog.cseq += 1;
        let branch = state.unique();
        let bye = in_dialog(&dialog, "BYE", dialog.cseq, self.local, &self.domain, branch);
        let r = state.transact(self.server, bye.as_bytes(), &dialog.call_id, dialog.cseq)?;
        // 481: the focus ended the dialog already (the conference ended, or the participant was ejected).
        if r.status >= 300 && r.status != 481 {
            bail!("BYE: {} {}", r.status, r.reason);
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "sip"
    }
}

/// The ACK of a failed INVITE (same branch, RFC 3261 §17.1.1.3).
#[allow(clippy::too_many_arguments)]
fn ack(
    state: &mut State,
    server: SocketAddr,
    r: &Response,
    uri: &str,
    local: SocketAddr,
    user: &str,
    domain: &str,
    from_tag: &str,
    call_id: &str,
    cseq: u32,
    branch: u64,
) {
    let to = r.headers.get(&HeaderName::To).unwrap_or_default();
    let ack = format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch:x};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{user}@{domain}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let _ = state.socket.send_to(ack.as_bytes(), server);
}

/// A request in `dialog` (ACK of the 2xx, BYE).
fn in_dialog(dialog: &Dialog, method: &str, cseq: u32, local: SocketAddr, domain: &str, branch: u64) -> String {
    let routes: String = dialog.routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    format!(
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch:x};rport\r\nMax-Forwards: 70\r\n\
         {routes}From: <sip:{}@{domain}>;tag={}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        dialog.target, dialog.user, dialog.from_tag, dialog.to, dialog.call_id
    )
}
