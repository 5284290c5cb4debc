//! Fake-clock tests of every transaction state and timer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::message::{Limits, Message, Request};

const T1: Duration = Duration::from_millis(500);

struct Harness {
    layer: TransactionLayer,
    now: Instant,
    start: Instant,
}

fn peer(t: Transport) -> Peer {
    Peer { transport: t, addr: "192.0.2.10:5060".parse::<SocketAddr>().unwrap() }
}

fn request(method: &str, branch: &str, transport: Transport) -> Request {
    let via = if branch.is_empty() {
        format!("SIP/2.0/{transport} client.example.com:5060")
    } else {
        format!("SIP/2.0/{transport} client.example.com:5060;branch={branch}")
    };
    let text = format!(
        "{method} sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\nCall-ID: call-1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    );
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        Harness { layer: TransactionLayer::new(TimerConfig::default(), Limits::default(), [1; 32]), now, start: now }
    }

    fn drain(&mut self) -> (Vec<Transmit>, Vec<TransactionEvent>) {
        let (mut tx, mut ev) = (vec![], vec![]);
        while let Some(o) = self.layer.poll_output() {
            match o {
                Output::Transmit(t) => tx.push(t),
                Output::Event(e) => ev.push(e),
            }
        }
        (tx, ev)
    }

    /// Advances the fake clock to `at` (since start) running every timer on the way; returns the times (since
    /// start) at which something was transmitted, and all events.
    fn run_until(&mut self, at: Duration) -> (Vec<Duration>, Vec<TransactionEvent>) {
        let end = self.start + at;
        let (mut times, mut events) = (vec![], vec![]);
        while let Some(t) = self.layer.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.layer.handle_timeout(self.now);
            let (tx, ev) = self.drain();
            times.extend(tx.iter().map(|_| self.now - self.start));
            events.extend(ev);
        }
        self.now = end;
        (times, events)
    }

    fn receive(&mut self, msg: Message, t: Transport) -> (Vec<Transmit>, Vec<TransactionEvent>) {
        self.layer.handle_message(self.now, peer(t), msg);
        self.drain()
    }

    fn response_to(&self, req: &Request, status: u16) -> Message {
        Message::Response(req.make_response_with_tag(status, None, "b2"))
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn terminated(ev: &[TransactionEvent], id: TransactionId) -> bool {
    ev.contains(&TransactionEvent::Terminated { id })
}

#[test]
fn invite_client_timer_a_doubles_and_timer_b_times_out() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKa", Transport::Udp);
    let id = h.layer.send_request(h.now, req, peer(Transport::Udp)).unwrap();
    assert_eq!(h.drain().0.len(), 1);
    assert_eq!(h.layer.state(id), Some(State::Calling));
    let (times, ev) = h.run_until(64 * T1);
    // Timer A: T1, then 2T1, 4T1, ... after each retransmission, until Timer B at 64*T1.
    assert_eq!(times, [1, 3, 7, 15, 31, 63].map(|k| k * T1).to_vec());
    assert_eq!(ev[0], TransactionEvent::Timeout { id, timer: Timer::B });
    assert!(terminated(&ev, id));
    assert!(h.layer.is_empty());
}

#[test]
fn invite_client_provisional_stops_retransmission_and_2xx_is_accepted() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKb", Transport::Udp);
    let id = h.layer.send_request(h.now, req.clone(), peer(Transport::Udp)).unwrap();
    h.drain();
    h.run_until(T1); // one retransmission
    let (_, ev) = h.receive(h.response_to(&req, 180), Transport::Udp);
    assert!(matches!(&ev[0], TransactionEvent::Response { id: i, response } if *i == id && response.status == 180));
    assert_eq!(h.layer.state(id), Some(State::Proceeding));
    let (times, ev) = h.run_until(Duration::from_secs(120));
    assert!(times.is_empty() && ev.is_empty(), "no retransmission and no Timer B in Proceeding");
    let (tx, ev) = h.receive(h.response_to(&req, 200), Transport::Udp);
    assert!(tx.is_empty(), "no ACK for 2xx from the transaction");
    assert!(matches!(&ev[0], TransactionEvent::Response { response, .. } if response.status == 200));
    assert_eq!(h.layer.state(id), Some(State::Accepted));
    // RFC 6026: 2xx retransmissions go to the TU while Accepted.
    let (_, ev) = h.receive(h.response_to(&req, 200), Transport::Udp);
    assert_eq!(ev.len(), 1);
    let (_, ev) = h.run_until(Duration::from_secs(120) + 64 * T1);
    assert!(terminated(&ev, id));
    let (_, ev) = h.receive(h.response_to(&req, 200), Transport::Udp);
    assert!(matches!(&ev[0], TransactionEvent::StrayResponse { .. }));
}

#[test]
fn invite_client_non2xx_generates_ack_and_timer_d() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKc", Transport::Udp);
    let id = h.layer.send_request(h.now, req.clone(), peer(Transport::Udp)).unwrap();
    h.drain();
    let (tx, ev) = h.receive(h.response_to(&req, 486), Transport::Udp);
    assert_eq!(ev.len(), 1);
    assert_eq!(tx.len(), 1);
    let Message::Request(ack) = Message::parse(&tx[0].bytes).unwrap() else { panic!() };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.top_via().unwrap().branch(), Some("z9hG4bKc"));
    assert_eq!(ack.headers.to().unwrap().tag(), Some("b2"));
    assert_eq!(ack.headers.cseq().unwrap().to_string(), "1 ACK");
    assert_eq!(h.layer.state(id), Some(State::Completed));
    // A retransmitted final response gets the ACK again, and is not passed up.
    let (tx, ev) = h.receive(h.response_to(&req, 486), Transport::Udp);
    assert_eq!((tx.len(), ev.len()), (1, 0));
    let (_, ev) = h.run_until(Duration::from_secs(31));
    assert!(ev.is_empty());
    let (_, ev) = h.run_until(Duration::from_secs(32));
    assert!(terminated(&ev, id));
}

#[test]
fn invite_client_over_tcp_has_no_timer_a_and_zero_timer_d() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKd", Transport::Tcp);
    let id = h.layer.send_request(h.now, req.clone(), peer(Transport::Tcp)).unwrap();
    h.drain();
    let (times, _) = h.run_until(10 * T1);
    assert!(times.is_empty());
    h.receive(h.response_to(&req, 404), Transport::Tcp);
    let (_, ev) = h.run_until(10 * T1);
    assert!(terminated(&ev, id));
}

#[test]
fn non_invite_client_timer_e_caps_at_t2_and_timer_f() {
    let mut h = Harness::new();
    let id = h.layer.send_request(h.now, request("OPTIONS", "z9hG4bKe", Transport::Udp), peer(Transport::Udp)).unwrap();
    h.drain();
    let (times, ev) = h.run_until(64 * T1);
    let expect: Vec<Duration> = [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500].map(ms).to_vec();
    assert_eq!(times, expect);
    assert_eq!(ev[0], TransactionEvent::Timeout { id, timer: Timer::F });
    assert!(terminated(&ev, id));
}

#[test]
fn non_invite_client_proceeding_uses_t2_and_timer_k() {
    let mut h = Harness::new();
    let req = request("REGISTER", "z9hG4bKf", Transport::Udp);
    let id = h.layer.send_request(h.now, req.clone(), peer(Transport::Udp)).unwrap();
    h.drain();
    h.run_until(ms(100));
    h.receive(h.response_to(&req, 100), Transport::Udp);
    assert_eq!(h.layer.state(id), Some(State::Proceeding));
    let (times, _) = h.run_until(ms(9000));
    // First E still at T1 (0.5 s), then every T2 in Proceeding.
    assert_eq!(times, [500, 4500, 8500].map(ms).to_vec());
    let (_, ev) = h.receive(h.response_to(&req, 200), Transport::Udp);
    assert_eq!(ev.len(), 1);
    assert_eq!(h.layer.state(id), Some(State::Completed));
    let (tx, ev) = h.receive(h.response_to(&req, 200), Transport::Udp);
    assert!(tx.is_empty() && ev.is_empty(), "retransmitted final absorbed in Completed");
    let (times, ev) = h.run_until(ms(9000) + Duration::from_secs(5));
    assert!(times.is_empty());
    assert!(terminated(&ev, id), "Timer K = T4");
}

#[test]
fn invite_server_sends_100_after_200ms_and_absorbs_retransmissions() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKg", Transport::Udp);
    let (tx, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    assert!(tx.is_empty());
    let TransactionEvent::Request { id, request, .. } = &ev[0] else { panic!("{ev:?}") };
    let id = *id;
    assert!(request.headers.top_via().unwrap().received().is_some(), "received stamped");
    let (times, _) = h.run_until(ms(199));
    assert!(times.is_empty());
    let (times, _) = h.run_until(ms(200));
    assert_eq!(times, vec![ms(200)]);
    let (tx, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    assert!(ev.is_empty());
    assert_eq!(tx.len(), 1);
    assert!(tx[0].bytes.starts_with(b"SIP/2.0 100 Trying"));
    assert_eq!(h.layer.counters().retransmissions_absorbed, 1);
    assert_eq!(h.layer.state(id), Some(State::Proceeding));
}

#[test]
fn invite_server_provisional_from_tu_suppresses_100() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKh", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    h.layer.send_response(h.now, id, req.make_response_with_tag(180, None, "t")).unwrap();
    assert_eq!(h.drain().0.len(), 1);
    let (times, _) = h.run_until(ms(1000));
    assert!(times.is_empty());
    let (tx, _) = h.receive(Message::Request(req), Transport::Udp);
    assert!(tx[0].bytes.starts_with(b"SIP/2.0 180"));
}

#[test]
fn invite_server_non2xx_timer_g_and_timer_h() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKi", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    h.layer.send_response(h.now, id, req.make_response_with_tag(486, None, "t")).unwrap();
    assert_eq!(h.drain().0.len(), 1);
    assert_eq!(h.layer.state(id), Some(State::Completed));
    assert_eq!(h.layer.send_response(h.now, id, req.make_response(500, None)), Err(Error::InvalidState));
    let (times, ev) = h.run_until(64 * T1);
    let expect: Vec<Duration> = [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500].map(ms).to_vec();
    assert_eq!(times, expect, "Timer G doubles up to T2");
    assert_eq!(ev[0], TransactionEvent::Timeout { id, timer: Timer::H });
    assert!(terminated(&ev, id));
}

#[test]
fn invite_server_ack_confirms_and_timer_i() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKj", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    h.layer.send_response(h.now, id, req.make_response_with_tag(603, None, "t")).unwrap();
    h.drain();
    let (tx, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    assert!(ev.is_empty() && tx[0].bytes.starts_with(b"SIP/2.0 603"), "INVITE retransmission gets the final again");
    h.now += ms(100);
    let mut ack = request("ACK", "z9hG4bKj", Transport::Udp);
    ack.headers.set(HeaderName::To, "<sip:bob@example.com>;tag=t");
    let (tx, ev) = h.receive(Message::Request(ack.clone()), Transport::Udp);
    assert!(tx.is_empty() && ev.is_empty(), "ACK for non-2xx absorbed");
    assert_eq!(h.layer.state(id), Some(State::Confirmed));
    let (tx, ev) = h.receive(Message::Request(ack), Transport::Udp);
    assert!(tx.is_empty() && ev.is_empty());
    let (times, ev) = h.run_until(ms(100) + Duration::from_secs(5));
    assert!(times.is_empty(), "no G after ACK");
    assert!(terminated(&ev, id), "Timer I = T4");
}

#[test]
fn invite_server_2xx_accepted_then_timer_l() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKk", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    let ok = req.make_response_with_tag(200, None, "t");
    h.layer.send_response(h.now, id, ok.clone()).unwrap();
    h.drain();
    assert_eq!(h.layer.state(id), Some(State::Accepted));
    let (tx, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    assert!(tx.is_empty() && ev.is_empty(), "INVITE retransmission absorbed in Accepted");
    h.layer.send_response(h.now, id, ok).unwrap();
    assert_eq!(h.drain().0.len(), 1, "the TU's 2xx retransmission passes");
    let ack = request("ACK", "z9hG4bKother", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(ack), Transport::Udp);
    assert!(matches!(ev[0], TransactionEvent::Ack { .. }));
    let (times, ev) = h.run_until(64 * T1);
    assert!(times.is_empty());
    assert!(terminated(&ev, id));
}

/// A REGISTER server transaction over `t` taken to Proceeding: its retransmission absorbed in Trying,
/// then answered with the last provisional.
fn proceeding_register(t: Transport) -> (Harness, Request, TransactionId) {
    let mut h = Harness::new();
    let req = request("REGISTER", "z9hG4bKl", t);
    let (_, ev) = h.receive(Message::Request(req.clone()), t);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    let (tx, ev) = h.receive(Message::Request(req.clone()), t);
    assert!(tx.is_empty() && ev.is_empty(), "absorbed in Trying");
    h.layer.send_response(h.now, id, req.make_response_with_tag(100, None, "x")).unwrap();
    h.drain();
    let (tx, _) = h.receive(Message::Request(req.clone()), t);
    assert!(tx[0].bytes.starts_with(b"SIP/2.0 100"), "last provisional resent in Proceeding");
    (h, req, id)
}

#[test]
fn non_invite_server_absorbs_and_timer_j_over_tcp() {
    let t = Transport::Tcp;
    let (mut h, req, id) = proceeding_register(t);
    h.layer.send_response(h.now, id, req.make_response_with_tag(200, None, "x")).unwrap();
    h.drain();
    // Reliable transport: Timer J is zero.
    let (_, ev) = h.run_until(Duration::ZERO);
    assert!(terminated(&ev, id));
    assert_eq!(h.layer.completed_len(), 0);
}

#[test]
fn non_invite_server_over_udp_answers_retransmissions_from_the_completed_cache_until_timer_j() {
    let t = Transport::Udp;
    let (mut h, req, id) = proceeding_register(t);
    h.layer.send_response(h.now, id, req.make_response_with_tag(200, None, "x")).unwrap();
    let (tx, ev) = h.drain();
    assert_eq!(tx.len(), 1);
    let answer = tx[0].clone();
    // The transaction ends with its final response; its response stays for retransmissions.
    assert_eq!(ev, vec![TransactionEvent::Terminated { id }]);
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.completed_len(), 1);
    assert_eq!(h.layer.send_response(h.now, id, req.make_response_with_tag(200, None, "x")), Err(Error::NoTransaction));
    let absorbed = h.layer.counters().retransmissions_absorbed;
    // Retransmissions (T1, 2T1, 4T1, then every T2) get the very same bytes, to the same place, and the
    // TU hears nothing of them; the last one just before Timer J.
    for at in [T1, 3 * T1, 7 * T1, 64 * T1 - ms(1)] {
        h.run_until(at);
        let (tx, ev) = h.receive(Message::Request(req.clone()), t);
        assert!(ev.is_empty(), "at {at:?}");
        assert_eq!(tx, vec![answer.clone()], "at {at:?}");
    }
    assert_eq!(h.layer.counters().retransmissions_absorbed, absorbed + 4);
    assert_eq!(h.layer.counters().server_created, 1);
    // Timer J: forgotten; the same request again is a new transaction.
    let (_, ev) = h.run_until(64 * T1);
    assert!(ev.is_empty());
    assert_eq!(h.layer.completed_len(), 0);
    assert_eq!(h.layer.poll_timeout(), None);
    let (tx, ev) = h.receive(Message::Request(req.clone()), t);
    assert!(tx.is_empty());
    assert!(matches!(&ev[..], [TransactionEvent::Request { id: new, .. }] if *new != id));
}

#[test]
fn completed_cache_matches_by_branch_sent_by_and_method() {
    let t = Transport::Udp;
    let mut h = Harness::new();
    let req = request("REGISTER", "z9hG4bKkey", t);
    let (_, ev) = h.receive(Message::Request(req.clone()), t);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    h.layer.send_response(h.now, id, req.make_response_with_tag(200, None, "x")).unwrap();
    h.drain();
    // Another branch, or the same branch with another method, is another transaction.
    let (tx, ev) = h.receive(Message::Request(request("REGISTER", "z9hG4bKkey2", t)), t);
    assert!(tx.is_empty() && matches!(ev[..], [TransactionEvent::Request { .. }]));
    let (tx, ev) = h.receive(Message::Request(request("OPTIONS", "z9hG4bKkey", t)), t);
    assert!(tx.is_empty() && matches!(ev[..], [TransactionEvent::Request { .. }]));
    // The sent-by host matches without regard to case.
    let text = String::from_utf8(request("REGISTER", "z9hG4bKkey", t).to_bytes()).unwrap();
    let upper = text.replacen("client.example.com:5060;", "CLIENT.Example.COM:5060;", 1);
    let (tx, ev) = h.receive(Message::parse(upper.as_bytes()).unwrap(), t);
    assert!(ev.is_empty() && tx.len() == 1 && tx[0].bytes.starts_with(b"SIP/2.0 200"));
}

#[test]
fn completed_responses_count_towards_the_transaction_cap() {
    let mut h = Harness::new();
    h.layer.set_max_transactions(2);
    for b in ["z9hG4bKc1", "z9hG4bKc2"] {
        let req = request("OPTIONS", b, Transport::Udp);
        let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
        let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
        h.layer.send_response(h.now, id, req.make_response_with_tag(200, None, "x")).unwrap();
        h.drain();
    }
    assert_eq!((h.layer.len(), h.layer.completed_len()), (0, 2));
    let (tx, ev) = h.receive(Message::Request(request("OPTIONS", "z9hG4bKc3", Transport::Udp)), Transport::Udp);
    assert!(ev.is_empty() && tx[0].bytes.starts_with(b"SIP/2.0 503"));
    // A retransmission of a completed one is still answered with its 200.
    let (tx, _) = h.receive(Message::Request(request("OPTIONS", "z9hG4bKc1", Transport::Udp)), Transport::Udp);
    assert!(tx[0].bytes.starts_with(b"SIP/2.0 200"));
    h.run_until(64 * T1);
    let (_, ev) = h.receive(Message::Request(request("OPTIONS", "z9hG4bKc3", Transport::Udp)), Transport::Udp);
    assert!(matches!(ev[..], [TransactionEvent::Request { .. }]));
}

#[test]
fn cancel_matches_invite_server_transaction() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKm", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id: inv, .. } = ev[0] else { panic!() };
    let cancel = make_cancel(&req);
    let (_, ev) = h.receive(Message::Request(cancel.clone()), Transport::Udp);
    let TransactionEvent::Cancel { id, invite, .. } = &ev[0] else { panic!("{ev:?}") };
    assert_eq!(*invite, Some(inv));
    assert_ne!(*id, inv);
    let id = *id;
    h.layer.send_response(h.now, id, cancel.make_response_with_tag(200, None, "t")).unwrap();
    h.layer.send_response(h.now, inv, req.make_response_with_tag(487, None, "t")).unwrap();
    assert_eq!(h.drain().0.len(), 2);
    // A CANCEL for an unknown INVITE.
    let other = make_cancel(&request("INVITE", "z9hG4bKzz", Transport::Udp));
    let (_, ev) = h.receive(Message::Request(other), Transport::Udp);
    assert!(matches!(ev[0], TransactionEvent::Cancel { invite: None, .. }));
}

#[test]
fn rfc2543_ack_matches_invite_without_branch() {
    let mut h = Harness::new();
    let req = request("INVITE", "", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    let (tx, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    assert!(ev.is_empty(), "retransmission matched without branch");
    assert!(tx[0].bytes.starts_with(b"SIP/2.0 100"));
    h.layer.send_response(h.now, id, req.make_response_with_tag(404, None, "t")).unwrap();
    h.drain();
    let mut ack = request("ACK", "", Transport::Udp);
    ack.headers.set(HeaderName::To, "<sip:bob@example.com>;tag=t");
    let (_, ev) = h.receive(Message::Request(ack), Transport::Udp);
    assert!(ev.is_empty());
    assert_eq!(h.layer.state(id), Some(State::Confirmed));
}

#[test]
fn client_cancel_waits_for_provisional_and_timer_c() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKn", Transport::Tcp);
    let opts = ClientOptions { timer_c: true };
    let id = h.layer.send_request_with(h.now, req.clone(), peer(Transport::Tcp), opts).unwrap();
    h.drain();
    assert_eq!(h.layer.cancel(h.now, id), Ok(None));
    let (tx, ev) = h.receive(h.response_to(&req, 180), Transport::Tcp);
    assert_eq!(ev.len(), 1);
    assert_eq!(tx.len(), 1);
    let Message::Request(c) = Message::parse(&tx[0].bytes).unwrap() else { panic!() };
    assert_eq!(c.method, Method::Cancel);
    assert_eq!(c.headers.top_via().unwrap().branch(), Some("z9hG4bKn"));
    assert_eq!(c.headers.cseq().unwrap().to_string(), "1 CANCEL");
    // Timer C on another branch: 180 s after the last provisional.
    let req = request("INVITE", "z9hG4bKn2", Transport::Tcp);
    let id = h.layer.send_request_with(h.now, req.clone(), peer(Transport::Tcp), opts).unwrap();
    h.drain();
    h.receive(h.response_to(&req, 180), Transport::Tcp);
    h.run_until(Duration::from_secs(100));
    h.receive(h.response_to(&req, 183), Transport::Tcp);
    let (_, ev) = h.run_until(Duration::from_secs(279));
    assert!(!ev.iter().any(|e| matches!(e, TransactionEvent::Timeout { timer: Timer::C, .. })));
    let (_, ev) = h.run_until(Duration::from_secs(280));
    assert!(ev.contains(&TransactionEvent::Timeout { id, timer: Timer::C }));
}

#[test]
fn via_stamping_and_response_destination() {
    let mut h = Harness::new();
    let mut req = request("OPTIONS", "z9hG4bKo", Transport::Udp);
    req.headers.set(HeaderName::Via, "SIP/2.0/UDP client.example.com:5070;branch=z9hG4bKo;rport");
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id, request, .. } = &ev[0] else { panic!() };
    let via = request.headers.top_via().unwrap();
    assert_eq!(via.received(), Some("192.0.2.10"));
    assert_eq!(via.rport(), Some(Some(5060)));
    h.layer.send_response(h.now, *id, request.make_response_with_tag(200, None, "t")).unwrap();
    let (tx, _) = h.drain();
    assert_eq!(tx[0].peer.addr, "192.0.2.10:5060".parse().unwrap(), "rport: back to the source port");
    let v = Via::parse("SIP/2.0/UDP client.example.com:5070;branch=z9hG4bKx").unwrap();
    assert_eq!(response_destination(&v, peer(Transport::Udp)).addr.port(), 5070);
    assert_eq!(response_destination(&v, peer(Transport::Tcp)).addr.port(), 5060);
}

#[test]
fn transport_error_and_bad_input() {
    let mut h = Harness::new();
    let id = h.layer.send_request(h.now, request("MESSAGE", "z9hG4bKp", Transport::Tcp), peer(Transport::Tcp)).unwrap();
    h.drain();
    h.layer.connection_lost(peer(Transport::Tcp));
    let (_, ev) = h.drain();
    assert_eq!(ev, vec![TransactionEvent::TransportError { id }, TransactionEvent::Terminated { id }]);
    assert_eq!(
        h.layer.send_request(h.now, request("MESSAGE", "", Transport::Udp), peer(Transport::Udp)),
        Err(Error::MissingBranch)
    );
    assert_eq!(
        h.layer.send_request(h.now, request("ACK", "z9hG4bKq", Transport::Udp), peer(Transport::Udp)),
        Err(Error::AckNeedsNoTransaction)
    );
    let bad =
        b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h:5062;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
        To: <sip:bob@example.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    h.layer.handle_bytes(h.now, peer(Transport::Udp), bad);
    let (tx, ev) = h.drain();
    assert!(ev.is_empty());
    assert!(tx[0].bytes.starts_with(b"SIP/2.0 400 Bad Request (CSeq method does not match request method)\r\n"));
    assert_eq!(tx[0].peer.addr.port(), 5062);
    h.layer.handle_bytes(h.now, peer(Transport::Udp), b"SIP/2.0 200 OK\r\n\r\n");
    assert_eq!(h.drain(), (vec![], vec![]));
    assert_eq!(h.layer.counters().parse_errors, 2);
}

#[test]
fn branches_and_tags_are_unique() {
    let mut h = Harness::new();
    let a = h.layer.new_branch();
    let b = h.layer.new_branch();
    assert!(a.starts_with("z9hG4bK") && a != b);
    assert_eq!(h.layer.new_tag().len(), 16);
}

#[test]
fn invite_retransmission_before_200ms_gets_100_at_once() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKr", Transport::Udp);
    h.receive(Message::Request(req.clone()), Transport::Udp);
    h.now += ms(50);
    let (tx, _) = h.receive(Message::Request(req), Transport::Udp);
    assert!(tx[0].bytes.starts_with(b"SIP/2.0 100 Trying"));
    let (times, _) = h.run_until(ms(1000));
    assert!(times.is_empty(), "no second 100 from the timer");
}

#[test]
fn trying_immediately_when_configured() {
    let cfg = TimerConfig { trying_after: Duration::ZERO, ..TimerConfig::default() };
    let mut layer = TransactionLayer::new(cfg, Limits::default(), [2; 32]);
    layer.handle_message(
        Instant::now(),
        peer(Transport::Tcp),
        Message::Request(request("INVITE", "z9hG4bKs", Transport::Tcp)),
    );
    let first = layer.poll_output();
    assert!(matches!(first, Some(Output::Transmit(ref t)) if t.bytes.starts_with(b"SIP/2.0 100 Trying")));
}

#[test]
fn overload_answers_503() {
    let mut h = Harness::new();
    h.layer.set_max_transactions(1);
    h.receive(Message::Request(request("OPTIONS", "z9hG4bKt1", Transport::Udp)), Transport::Udp);
    let (tx, ev) = h.receive(Message::Request(request("OPTIONS", "z9hG4bKt2", Transport::Udp)), Transport::Udp);
    assert!(ev.is_empty());
    assert!(tx[0].bytes.starts_with(b"SIP/2.0 503"));
    assert_eq!(h.layer.counters().overload_rejected, 1);
}

#[test]
fn cancelled_invite_without_final_response_ends_after_64_t1() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKu", Transport::Udp);
    let id = h.layer.send_request(h.now, req.clone(), peer(Transport::Udp)).unwrap();
    h.drain();
    h.receive(h.response_to(&req, 180), Transport::Udp);
    h.now = h.start + Duration::from_secs(10);
    let cancel = h.layer.cancel(h.now, id).unwrap().unwrap();
    let (_, ev) = h.run_until(Duration::from_secs(10) + 64 * T1);
    assert!(ev.contains(&TransactionEvent::Timeout { id, timer: Timer::B }));
    assert!(ev.contains(&TransactionEvent::Timeout { id: cancel, timer: Timer::F }));
    assert!(terminated(&ev, id) && terminated(&ev, cancel));
}

#[test]
fn cancel_after_final_response_still_names_the_invite() {
    let mut h = Harness::new();
    let req = request("INVITE", "z9hG4bKv", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    h.layer.send_response(h.now, id, req.make_response_with_tag(200, None, "t")).unwrap();
    let (_, ev) = h.receive(Message::Request(make_cancel(&req)), Transport::Udp);
    assert!(matches!(ev[0], TransactionEvent::Cancel { invite: Some(i), .. } if i == id));
    assert_eq!(h.layer.state(id), Some(State::Accepted));
}

#[test]
fn rfc2543_cancel_matches_invite() {
    let mut h = Harness::new();
    let req = request("INVITE", "", Transport::Udp);
    let (_, ev) = h.receive(Message::Request(req.clone()), Transport::Udp);
    let TransactionEvent::Request { id, .. } = ev[0] else { panic!() };
    let (_, ev) = h.receive(Message::Request(make_cancel(&req)), Transport::Udp);
    assert!(matches!(ev[0], TransactionEvent::Cancel { invite: Some(i), .. } if i == id));
}

#[test]
fn via_kept_verbatim_when_nothing_to_stamp() {
    let mut h = Harness::new();
    let mut req = request("OPTIONS", "z9hG4bKw", Transport::Udp);
    req.headers.set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10:5060 ; branch=z9hG4bKw");
    let (_, ev) = h.receive(Message::Request(req), Transport::Udp);
    let TransactionEvent::Request { request, .. } = &ev[0] else { panic!() };
    assert_eq!(request.headers.get(&HeaderName::Via), Some("SIP/2.0/UDP 192.0.2.10:5060 ; branch=z9hG4bKw"));
}

#[test]
fn response_with_unknown_branch_is_stray_and_bad_via_is_dropped() {
    let mut h = Harness::new();
    let req = request("OPTIONS", "z9hG4bKnone", Transport::Udp);
    let (_, ev) = h.receive(h.response_to(&req, 200), Transport::Udp);
    assert!(matches!(ev[0], TransactionEvent::StrayResponse { .. }));
    let bad = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
    h.layer.handle_bytes(h.now, peer(Transport::Udp), bad);
    assert_eq!(h.drain(), (vec![], vec![]));
}
