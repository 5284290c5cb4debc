//! Property test of the transaction layer: any interleaving of received requests, retransmissions, ACKs,
//! CANCELs, TU responses, client requests, responses and clock jumps never panics, and once every transaction
//! has had a final response and the clock has run on, nothing is left (no leaked transactions or timers).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use vienna_sip::transaction::{
    Output, Peer, TimerConfig, TransactionEvent, TransactionId, TransactionLayer, make_cancel,
};
use vienna_sip::{HeaderName, Limits, Message, Method, Request, Transport};

#[derive(Clone, Debug)]
enum Op {
    Incoming { invite: bool, branch: u8, tcp: bool },
    IncomingAck { branch: u8 },
    IncomingCancel { branch: u8 },
    TuRespond { which: u8, status: u16 },
    ClientSend { invite: bool, tcp: bool },
    ClientResponse { which: u8, status: u16 },
    ClientCancel { which: u8 },
    Advance { ms: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![Just(100u16), Just(180), Just(200), Just(486)];
    prop_oneof![
        (any::<bool>(), 0u8..4, any::<bool>()).prop_map(|(invite, branch, tcp)| Op::Incoming { invite, branch, tcp }),
        (0u8..4).prop_map(|branch| Op::IncomingAck { branch }),
        (0u8..4).prop_map(|branch| Op::IncomingCancel { branch }),
        (any::<u8>(), status.clone()).prop_map(|(which, status)| Op::TuRespond { which, status }),
        (any::<bool>(), any::<bool>()).prop_map(|(invite, tcp)| Op::ClientSend { invite, tcp }),
        (any::<u8>(), status).prop_map(|(which, status)| Op::ClientResponse { which, status }),
        any::<u8>().prop_map(|which| Op::ClientCancel { which }),
        (0u32..40_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn req(method: &str, branch: &str) -> Request {
    let text = format!(
        "{method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch={branch}\r\n\
         From: <sip:a@example.com>;tag=f\r\nTo: <sip:bob@example.com>\r\nCall-ID: {branch}\r\nCSeq: 1 {method}\r\n\r\n"
    );
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

struct World {
    layer: TransactionLayer,
    now: Instant,
    servers: Vec<(TransactionId, Request)>,
    clients: Vec<TransactionId>,
}

impl World {
    fn drain(&mut self) {
        while let Some(o) = self.layer.poll_output() {
            match o {
                Output::Event(TransactionEvent::Request { id, request, .. })
                | Output::Event(TransactionEvent::Cancel { id, request, .. }) => self.servers.push((id, request)),
                Output::Event(TransactionEvent::Terminated { id }) => {
                    self.servers.retain(|(i, _)| *i != id);
                    self.clients.retain(|i| *i != id);
                }
                _ => {}
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.layer.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.layer.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn client_response(&mut self, id: TransactionId, status: u16) {
        if let Some(r) = self.layer.request(id).cloned() {
            let resp = r.make_response_with_tag(status, None, "t");
            self.layer.handle_message(self.now, peer(false), Message::Response(resp));
        }
    }
}

fn peer(tcp: bool) -> Peer {
    Peer {
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
        addr: "192.0.2.9:5060".parse::<SocketAddr>().unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_panic_and_no_leak(ops in proptest::collection::vec(op(), 1..60)) {
        let mut w = World {
            layer: TransactionLayer::new(TimerConfig::default(), Limits::default(), [7; 32]),
            now: Instant::now(),
            servers: vec![],
            clients: vec![],
        };
        for op in ops {
            match op {
                Op::Incoming { invite, branch, tcp } => {
                    let m = if invite { "INVITE" } else { "OPTIONS" };
                    w.layer.handle_message(w.now, peer(tcp), Message::Request(req(m, &format!("z9hG4bK{branch}{m}"))));
                }
                Op::IncomingAck { branch } => {
                    let mut ack = req("ACK", &format!("z9hG4bK{branch}INVITE"));
                    ack.headers.set(HeaderName::To, "<sip:bob@example.com>;tag=t");
                    w.layer.handle_message(w.now, peer(false), Message::Request(ack));
                }
                Op::IncomingCancel { branch } => {
                    let c = make_cancel(&req("INVITE", &format!("z9hG4bK{branch}INVITE")));
                    w.layer.handle_message(w.now, peer(false), Message::Request(c));
                }
                Op::TuRespond { which, status } => {
                    if !w.servers.is_empty() {
                        let (id, r) = w.servers[usize::from(which) % w.servers.len()].clone();
                        let _ = w.layer.send_response(w.now, id, r.make_response_with_tag(status, None, "t"));
                    }
                }
                Op::ClientSend { invite, tcp } => {
                    let branch = w.layer.new_branch();
                    let r = req(if invite { "INVITE" } else { "MESSAGE" }, &branch);
                    let id = w.layer.send_request(w.now, r, peer(tcp)).unwrap();
                    w.clients.push(id);
                }
                Op::ClientResponse { which, status } => {
                    if !w.clients.is_empty() {
                        let id = w.clients[usize::from(which) % w.clients.len()];
                        w.client_response(id, status);
                    }
                }
                Op::ClientCancel { which } => {
                    if !w.clients.is_empty() {
                        let id = w.clients[usize::from(which) % w.clients.len()];
                        if let Ok(Some(c)) = w.layer.cancel(w.now, id) {
                            w.clients.push(c);
                        }
                    }
                }
                Op::Advance { ms } => w.advance(Duration::from_millis(u64::from(ms))),
            }
            w.drain();
        }
        // Every transaction gets a final response, then time runs on: nothing may remain.
        for (id, r) in w.servers.clone() {
            let status = if r.method == Method::Invite { 486 } else { 200 };
            let _ = w.layer.send_response(w.now, id, r.make_response_with_tag(status, None, "t"));
        }
        for id in w.clients.clone() {
            w.client_response(id, 486);
        }
        w.drain();
        w.advance(Duration::from_secs(600));
        prop_assert!(w.layer.is_empty(), "{} transactions left", w.layer.len());
        prop_assert_eq!(w.layer.poll_timeout(), None);
    }
}
