//! A small SIP user agent over UDP on loopback for the conference tests: sends requests (answering 401/407
//! with Digest), keeps dialogs, answers what the server sends it (NOTIFY, BYE) with 200 and keeps those
//! requests for the test to look at. Every wait is bounded by [`crate::PATIENCE`].

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use vienna_sip::digest::{Challenge, respond};
use vienna_sip::{HeaderName, Message, Request, Response};

use crate::PATIENCE;

/// A dialog this agent is in (as the UAC).
#[derive(Clone, Debug)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The server's tag.
    pub remote_tag: String,
    /// Where requests in the dialog go (the server's Contact).
    pub remote_target: String,
    /// The request URI of the initial request (To of the dialog).
    pub to: String,
    /// Our last CSeq.
    pub cseq: u32,
}

/// One user agent.
pub struct Ua {
    socket: UdpSocket,
    server: SocketAddr,
    /// `alice`.
    pub user: String,
    password: String,
    /// The SIP domain.
    pub domain: String,
    /// Requests the server sent us (already answered 200), oldest first.
    pub inbox: VecDeque<Request>,
    seq: u32,
}

/// A request body and its content type.
pub type Body<'a> = Option<(&'a str, &'a str)>;

impl Ua {
    /// An agent for `user` (password `password`) of `domain`, talking to the server at `server`.
    pub fn new(server: SocketAddr, user: &str, password: &str, domain: &str) -> Ua {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Ua {
            socket,
            server,
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            inbox: VecDeque::new(),
            seq: 0,
        }
    }

    /// Our address.
    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }

    fn next(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    fn send_text(&self, text: &str) {
        self.socket.send_to(text.as_bytes(), self.server).unwrap();
    }

    /// Reads one message (answering requests with 200 and keeping them); `None` after `wait`.
    fn read(&mut self, wait: Duration) -> Option<Message> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.socket.recv_from(&mut buf) else { continue };
            let Ok(m) = Message::parse(&buf[..n]) else { continue };
            if let Message::Request(r) = &m {
                if r.method.as_str() != "ACK" {
                    let ok = r.make_response(200, None);
                    self.socket.send_to(&ok.to_bytes(), self.server).unwrap();
                }
                self.inbox.push_back(r.clone());
                continue;
            }
            return Some(m);
        }
        None
    }

    /// The final response to the request with `call_id` and `cseq` (provisional ones skipped).
    fn final_response(&mut self, call_id: &str, cseq: u32) -> Response {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(Message::Response(r)) = self.read(Duration::from_millis(100))
                && r.headers.call_id().ok() == Some(call_id)
                && r.headers.cseq().map(|c| c.seq).ok() == Some(cseq)
                && r.status >= 200
            {
                return r;
            }
        }
        panic!("{}: no final response to CSeq {cseq} of {call_id}", self.user);
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        method: &str,
        uri: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        from_tag: &str,
        extra: &str,
        body: Body<'_>,
    ) -> String {
        let branch = format!("z9hG4bK-{}-{call_id}-{cseq}-{method}", self.user);
        let local = self.local();
        let mut text = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: \"{user}\" <{aor}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:{user}@{local}>\r\n{extra}",
            user = self.user,
            aor = self.aor(),
        );
        match body {
            Some((ctype, b)) => {
                text.push_str(&format!("Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{b}", b.len()))
            }
            None => text.push_str("Content-Length: 0\r\n\r\n"),
        }
        text
    }

    /// Sends an out-of-dialog request to `uri` and returns its final response, answering a Digest
    /// challenge once. A 2xx to an INVITE is acknowledged and its dialog returned.
    pub fn request(&mut self, method: &str, uri: &str, extra: &str, body: Body<'_>) -> (Response, Option<Dialog>) {
        let n = self.next();
        let call_id = format!("{}-{method}-{n}-{}", self.user, self.local().port());
        let tag = format!("t{n}");
        let to = format!("<{uri}>");
        let mut cseq = 1;
        let mut auth = String::new();
        loop {
            let text = self.build(method, uri, &to, &call_id, cseq, &tag, &format!("{extra}{auth}"), body);
            self.send_text(&text);
            let r = self.final_response(&call_id, cseq);
            if (r.status == 401 || r.status == 407) && auth.is_empty() {
                let header = if r.status == 401 { HeaderName::WwwAuthenticate } else { HeaderName::ProxyAuthenticate };
                let challenge = r
                    .headers
                    .get_all(&header)
                    .filter_map(|v| Challenge::parse(v).ok())
                    .find(|c| c.algorithm.as_str() == "MD5")
                    .expect("an MD5 challenge");
                let creds = respond(&challenge, &self.user, &self.password, method, uri, "c0ffee", 1);
                let name = if r.status == 401 { "Authorization" } else { "Proxy-Authorization" };
                auth = format!("{name}: {creds}\r\n");
                cseq += 1;
                continue;
            }
            let dialog = ((200..300).contains(&r.status) && (method == "INVITE" || method == "SUBSCRIBE")).then(|| {
                let remote_target = r
                    .headers
                    .contacts()
                    .ok()
                    .and_then(|c| match c {
                        vienna_sip::Contacts::List(l) => l.into_iter().next().map(|c| c.uri.to_string()),
                        vienna_sip::Contacts::Wildcard => None,
                    })
                    .unwrap_or_else(|| uri.to_owned());
                Dialog {
                    call_id: call_id.clone(),
                    local_tag: tag.clone(),
                    remote_tag: r.headers.to().unwrap().tag().unwrap_or_default().to_owned(),
                    remote_target,
                    to: uri.to_owned(),
                    cseq,
                }
            });
            if method == "INVITE"
                && let Some(d) = &dialog
            {
                self.ack(d);
            }
            return (r, dialog);
        }
    }

    fn ack(&self, d: &Dialog) {
        let to = format!("<{}>;tag={}", d.to, d.remote_tag);
        let text = self.build("ACK", &d.remote_target, &to, &d.call_id, d.cseq, &d.local_tag, "", None);
        self.send_text(&text);
    }

    /// Sends `method` in dialog `d` and returns its final response.
    pub fn in_dialog(&mut self, d: &mut Dialog, method: &str, extra: &str, body: Body<'_>) -> Response {
        d.cseq += 1;
        let to = format!("<{}>;tag={}", d.to, d.remote_tag);
        let text = self.build(method, &d.remote_target, &to, &d.call_id, d.cseq, &d.local_tag, extra, body);
        self.send_text(&text);
        self.final_response(&d.call_id.clone(), d.cseq)
    }

    /// Waits for a request of `method` from the server (already answered 200) and takes it.
    pub fn expect(&mut self, method: &str) -> Request {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(i) = self.inbox.iter().position(|r| r.method.as_str() == method) {
                return self.inbox.remove(i).unwrap();
            }
            assert!(Instant::now() < deadline, "{}: no {method} came; inbox {:?}", self.user, self.inbox);
            let _ = self.read(Duration::from_millis(100));
        }
    }

    /// Reads for `wait`, answering whatever the server sends.
    pub fn idle(&mut self, wait: Duration) {
        let _ = self.read(wait);
    }
}
