//! The simulated network and clock these tests drive the sans-IO core with: SIP text in (CRLF and
//! Content-Length filled in), everything the core output collected per step, timers run as the clock
//! moves. Each test file brings its own directory of accounts and configuration.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_signaling::conference::ConferenceOutput;
use vienna_signaling::{Core, Directory, Output};
use vienna_sip::transaction::Peer;
use vienna_sip::{Message, Request, Response, Transport};
use vienna_store::BindingChange;

/// The wall-clock time (Unix seconds) at the simulated clock's start.
pub const UNIX0: u64 = 1_800_000_000;

/// A socket address from its text.
pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A message from readable text: header lines up to the first blank line (indentation and line ends
/// trimmed), then the body with each line's indentation removed; joined with CRLF, Content-Length set
/// from the body.
pub fn sip(text: &str) -> Vec<u8> {
    let text = text.replace("\r\n", "\n");
    let mut lines = text.lines();
    let mut head = Vec::new();
    for l in lines.by_ref() {
        let l = l.trim();
        if l.is_empty() {
            break;
        }
        head.push(l);
    }
    let mut body = lines.map(str::trim_start).collect::<Vec<_>>().join("\r\n");
    if text.ends_with('\n') && !body.is_empty() {
        body.push_str("\r\n");
    }
    format!("{}\r\nContent-Length: {}\r\n\r\n{body}", head.join("\r\n"), body.len()).into_bytes()
}

/// What the core sent, parsed, with its destination.
#[derive(Debug)]
pub struct Sent {
    /// Where it went.
    pub to: SocketAddr,
    /// What it was.
    pub message: Message,
}

impl Sent {
    /// The response this is (panics on a request).
    pub fn response(&self) -> &Response {
        match &self.message {
            Message::Response(r) => r,
            Message::Request(r) => panic!("expected a response, got {} {}", r.method, r.uri),
        }
    }

    /// The request this is (panics on a response).
    pub fn request(&self) -> &Request {
        match &self.message {
            Message::Request(r) => r,
            Message::Response(r) => panic!("expected a request, got {}", r.status),
        }
    }
}

/// Everything the core output in one step, in order.
#[derive(Debug, Default)]
pub struct Step {
    /// Messages sent.
    pub sent: Vec<Sent>,
    /// Binding changes to persist.
    pub persisted: Vec<BindingChange>,
    /// Index into `sent` of the first transmit after the first binding write (write-before-answer).
    pub first_sent_after_persist: Option<usize>,
    /// Watcher records to persist.
    pub watchers: usize,
    /// Index into `sent` of the first transmit after the first watcher write.
    pub sent_before_watchers: Option<usize>,
    /// Conference outputs (store writes, MCU requests).
    pub conference: Vec<ConferenceOutput>,
    /// Index into `sent` when the first conference store write came.
    pub saved_before: Option<usize>,
}

impl Step {
    /// Everything sent to `dest`.
    pub fn to(&self, dest: &str) -> Vec<&Sent> {
        self.sent.iter().filter(|s| s.to == addr(dest)).collect()
    }

    /// The one message sent to `dest` (panics unless there is exactly one).
    pub fn only_to(&self, dest: &str) -> &Sent {
        let v = self.to(dest);
        assert_eq!(v.len(), 1, "expected one message to {dest}, got {:#?}", self.sent);
        v[0]
    }

    /// The responses sent to `dest`.
    pub fn responses_to(&self, dest: &str) -> Vec<&Response> {
        self.to(dest)
            .into_iter()
            .filter_map(|s| if let Message::Response(r) = &s.message { Some(r) } else { None })
            .collect()
    }

    /// The one response sent to `dest`.
    pub fn response_to(&self, dest: &str) -> &Response {
        let r = self.responses_to(dest);
        assert_eq!(r.len(), 1, "one response to {dest}: {:#?}", self.sent);
        r[0]
    }

    /// The final (non-1xx) responses sent to `dest`.
    pub fn finals(&self, dest: &str) -> Vec<&Response> {
        self.responses_to(dest).into_iter().filter(|r| r.status >= 200).collect()
    }

    /// The `method` requests sent to `dest`.
    pub fn requests_to(&self, dest: &str, method: &str) -> Vec<&Request> {
        self.to(dest)
            .into_iter()
            .filter_map(|s| if let Message::Request(r) = &s.message { Some(r) } else { None })
            .filter(|r| r.method.as_str() == method)
            .collect()
    }

    /// Appends what a later step output.
    pub fn extend(&mut self, later: Step) {
        self.sent.extend(later.sent);
        self.persisted.extend(later.persisted);
        self.watchers += later.watchers;
        self.conference.extend(later.conference);
    }
}

/// A core on a simulated UDP network with a simulated clock.
pub struct Net<D: Directory> {
    /// The core under test.
    pub core: Core<D>,
    /// The simulated time now.
    pub now: Instant,
    /// When the simulation started (at [`UNIX0`]).
    pub start: Instant,
}

impl<D: Directory> Net<D> {
    /// Drives `core`, created at `now`.
    pub fn around(core: Core<D>, now: Instant) -> Self {
        Net { core, now, start: now }
    }

    /// Collects everything the core has to output.
    pub fn drain(&mut self) -> Step {
        let mut step = Step::default();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Transmit(t) => {
                    let message = Message::parse(&t.bytes).expect("the core sends what it can parse");
                    step.sent.push(Sent { to: t.peer.addr, message });
                }
                Output::Persist(changes) => {
                    step.first_sent_after_persist.get_or_insert(step.sent.len());
                    step.persisted.extend(changes);
                }
                Output::PersistWatchers(w) => {
                    step.sent_before_watchers.get_or_insert(step.sent.len());
                    step.watchers += w.len();
                }
                Output::Conference(c) => {
                    if matches!(c, ConferenceOutput::Save(_)) && step.saved_before.is_none() {
                        step.saved_before = Some(step.sent.len());
                    }
                    step.conference.push(c);
                }
            }
        }
        step
    }

    /// A datagram from `from` holding `bytes`.
    pub fn send_bytes(&mut self, from: &str, bytes: &[u8]) -> Step {
        self.core.handle_datagram(self.now, Peer { transport: Transport::Udp, addr: addr(from) }, bytes);
        self.drain()
    }

    /// A datagram from `from` holding the message of `text` (see [`sip`]).
    pub fn send(&mut self, from: &str, text: &str) -> Step {
        self.send_bytes(from, &sip(text))
    }

    /// A datagram from `from` holding `message`.
    pub fn send_message(&mut self, from: &str, message: &Message) -> Step {
        let bytes = match message {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        };
        self.send_bytes(from, &bytes)
    }

    /// `from` answers `req` with `status` (To tag `b-tag`).
    pub fn reply(&mut self, from: &str, req: &Request, status: u16) -> Step {
        let r = req.make_response_with_tag(status, None, "b-tag");
        self.send_bytes(from, &r.to_bytes())
    }

    /// Moves the clock, running every timer due on the way.
    pub fn advance(&mut self, by: Duration) -> Step {
        let end = self.now + by;
        let mut all = Step::default();
        loop {
            let next = self.core.poll_timeout().filter(|t| *t <= end);
            self.now = next.unwrap_or(end).max(self.now);
            self.core.handle_timeout(self.now);
            all.extend(self.drain());
            if next.is_none() {
                return all;
            }
        }
    }

    /// The simulated wall-clock time (Unix seconds).
    pub fn unix(&self) -> u64 {
        UNIX0 + (self.now - self.start).as_secs()
    }
}
