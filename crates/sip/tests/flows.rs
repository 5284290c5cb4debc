//! End-to-end flows through two transaction layers wired back to back with a fake clock: REGISTER with
//! Digest (challenge, answer, replay refused, stale nonce), and a forking proxy's INVITE where one branch
//! answers and the other is cancelled.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_sip::digest::{Challenge, Credentials, DigestServer, Ha1, Verdict, respond};
use vienna_sip::transaction::{Output, Peer, TimerConfig, TransactionEvent, TransactionLayer, make_cancel};
use vienna_sip::{HeaderName, Limits, Method, Request, Transport, Uri, Via};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Moves every Transmit of `from` into `to` (as if the network delivered it), returns `from`'s events.
fn pump(
    now: Instant,
    from: &mut TransactionLayer,
    from_addr: SocketAddr,
    to: &mut TransactionLayer,
) -> Vec<TransactionEvent> {
    let mut events = vec![];
    while let Some(o) = from.poll_output() {
        match o {
            Output::Transmit(t) => {
                to.handle_bytes(now, Peer { transport: t.peer.transport, addr: from_addr }, &t.bytes)
            }
            Output::Event(e) => events.push(e),
        }
    }
    events
}

fn events(layer: &mut TransactionLayer) -> Vec<TransactionEvent> {
    let mut v = vec![];
    while let Some(o) = layer.poll_output() {
        if let Output::Event(e) = o {
            v.push(e);
        }
    }
    v
}

fn register(branch: &str, cseq: u32) -> Request {
    let mut r = Request::new(Method::Register, Uri::parse("sip:example.com").unwrap());
    r.headers.push(HeaderName::Via, Via::new("UDP", "192.0.2.1", Some(5070), branch).to_string());
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(HeaderName::From, "<sip:alice@example.com>;tag=x1");
    r.headers.push(HeaderName::To, "<sip:alice@example.com>");
    r.headers.push(HeaderName::CallId, "reg-1@192.0.2.1");
    r.headers.push(HeaderName::CSeq, format!("{cseq} REGISTER"));
    r.headers.push(HeaderName::Contact, "<sip:alice@192.0.2.1:5070>;expires=600");
    r
}

#[test]
fn register_with_digest_replay_and_stale() {
    let now = Instant::now();
    let (ua_addr, srv_addr) = (addr("192.0.2.1:5070"), addr("192.0.2.100:5060"));
    let mut ua = TransactionLayer::new(TimerConfig::default(), Limits::default(), [1; 32]);
    let mut srv = TransactionLayer::new(TimerConfig::default(), Limits::default(), [2; 32]);
    let mut digest = DigestServer::new([9; 32], "example.com", 300, 1024);
    let ha1 = Ha1::derive("alice", "example.com", "secret");
    let to_srv = Peer { transport: Transport::Udp, addr: srv_addr };

    // The registrar TU: challenge or verify.
    let mut serve = |srv: &mut TransactionLayer, unix: u64| -> Vec<Verdict> {
        let mut verdicts = vec![];
        for e in events(srv) {
            let TransactionEvent::Request { id, request, .. } = e else { continue };
            let resp = match Credentials::find(&request.headers, false, digest.realm()) {
                None => {
                    let mut r = request.make_response_with_tag(401, None, "srv");
                    digest.add_challenge(&mut r, unix, false, false);
                    r
                }
                Some(c) => {
                    let v = digest.verify(unix, request.method.as_str(), &c, &ha1);
                    verdicts.push(v);
                    let mut r = request.make_response_with_tag(if v == Verdict::Ok { 200 } else { 401 }, None, "srv");
                    if v != Verdict::Ok {
                        digest.add_challenge(&mut r, unix, v == Verdict::Stale, false);
                    }
                    r
                }
            };
            srv.send_response(now, id, resp).unwrap();
        }
        verdicts
    };

    ua.send_request(now, register("z9hG4bKr1", 1), to_srv).unwrap();
    pump(now, &mut ua, ua_addr, &mut srv);
    assert!(serve(&mut srv, 1000).is_empty());
    pump(now, &mut srv, srv_addr, &mut ua);
    let ev = events(&mut ua);
    let TransactionEvent::Response { response, .. } = &ev[0] else { panic!("{ev:?}") };
    assert_eq!(response.status, 401);
    let challenges: Vec<_> =
        response.headers.get_all(&HeaderName::WwwAuthenticate).map(|v| Challenge::parse(v).unwrap()).collect();
    assert_eq!(challenges.len(), 2);

    // Answer the SHA-256 challenge (offered first).
    let creds = respond(&challenges[0], "alice", "secret", "REGISTER", "sip:example.com", "c1", 1);
    let mut r2 = register("z9hG4bKr2", 2);
    r2.headers.push(HeaderName::Authorization, creds.to_string());
    ua.send_request(now, r2.clone(), to_srv).unwrap();
    pump(now, &mut ua, ua_addr, &mut srv);
    assert_eq!(serve(&mut srv, 1001), vec![Verdict::Ok]);
    pump(now, &mut srv, srv_addr, &mut ua);
    let ev = events(&mut ua);
    assert!(matches!(&ev[0], TransactionEvent::Response { response, .. } if response.status == 200));

    // The same credentials again (new transaction): a replay.
    let mut r3 = r2.clone();
    r3.headers.set(HeaderName::Via, Via::new("UDP", "192.0.2.1", Some(5070), "z9hG4bKr3").to_string());
    r3.headers.set(HeaderName::CSeq, "3 REGISTER");
    ua.send_request(now, r3, to_srv).unwrap();
    pump(now, &mut ua, ua_addr, &mut srv);
    assert_eq!(serve(&mut srv, 1002), vec![Verdict::Replay]);

    // Next count after the nonce expired: stale=true in the new challenge.
    let creds = respond(&challenges[1], "alice", "secret", "REGISTER", "sip:example.com", "c1", 2);
    let mut r4 = register("z9hG4bKr4", 4);
    r4.headers.push(HeaderName::Authorization, creds.to_string());
    ua.send_request(now, r4, to_srv).unwrap();
    pump(now, &mut ua, ua_addr, &mut srv);
    assert_eq!(serve(&mut srv, 1400), vec![Verdict::Stale]);
    pump(now, &mut srv, srv_addr, &mut ua);
    let ev = events(&mut ua);
    let resp = ev
        .iter()
        .find_map(|e| match e {
            TransactionEvent::Response { response, .. } if response.headers.cseq().unwrap().seq == 4 => Some(response),
            _ => None,
        })
        .unwrap();
    let ch = Challenge::parse(resp.headers.get(&HeaderName::WwwAuthenticate).unwrap()).unwrap();
    assert!(ch.stale);
}

#[test]
fn forking_proxy_cancels_the_losing_branch() {
    let mut now = Instant::now();
    let proxy_addr = addr("192.0.2.100:5060");
    let (a_addr, b_addr) = (addr("192.0.2.11:5060"), addr("192.0.2.12:5060"));
    let mut proxy = TransactionLayer::new(TimerConfig::default(), Limits::default(), [3; 32]);
    let mut a = TransactionLayer::new(TimerConfig::default(), Limits::default(), [4; 32]);
    let mut b = TransactionLayer::new(TimerConfig::default(), Limits::default(), [5; 32]);

    // The proxy forwards one INVITE to two contacts, each in its own client transaction with its own branch.
    let mut invite = Request::new(Method::Invite, Uri::parse("sip:bob@example.com").unwrap());
    invite.headers.push(HeaderName::From, "<sip:carol@example.com>;tag=c");
    invite.headers.push(HeaderName::To, "<sip:bob@example.com>");
    invite.headers.push(HeaderName::CallId, "fork-1");
    invite.headers.push(HeaderName::CSeq, "1 INVITE");
    invite.headers.push(HeaderName::MaxForwards, "69");
    let mut branches = vec![];
    for (target, layer_addr) in [("sip:bob@192.0.2.11", a_addr), ("sip:bob@192.0.2.12", b_addr)] {
        let mut req = invite.clone();
        req.uri = Uri::parse(target).unwrap();
        let branch = proxy.new_branch();
        req.headers.push_front(HeaderName::Via, Via::new("UDP", "192.0.2.100", Some(5060), &branch).to_string());
        let opts = vienna_sip::transaction::ClientOptions { timer_c: true };
        branches.push(
            proxy.send_request_with(now, req, Peer { transport: Transport::Udp, addr: layer_addr }, opts).unwrap(),
        );
    }
    // Deliver to A and B (the proxy's transmits go in order: A's INVITE then B's).
    while let Some(o) = proxy.poll_output() {
        if let Output::Transmit(t) = o {
            let dst = if t.peer.addr == a_addr { &mut a } else { &mut b };
            dst.handle_bytes(now, Peer { transport: Transport::Udp, addr: proxy_addr }, &t.bytes);
        }
    }
    let ida = match &events(&mut a)[0] {
        TransactionEvent::Request { id, request, .. } => (*id, request.clone()),
        e => panic!("{e:?}"),
    };
    let idb = match &events(&mut b)[0] {
        TransactionEvent::Request { id, request, .. } => (*id, request.clone()),
        e => panic!("{e:?}"),
    };
    // Both ring; A answers.
    a.send_response(now, ida.0, ida.1.make_response_with_tag(180, None, "ta")).unwrap();
    b.send_response(now, idb.0, idb.1.make_response_with_tag(180, None, "tb")).unwrap();
    pump(now, &mut a, a_addr, &mut proxy);
    pump(now, &mut b, b_addr, &mut proxy);
    now += Duration::from_secs(2);
    a.send_response(now, ida.0, ida.1.make_response_with_tag(200, None, "ta")).unwrap();
    pump(now, &mut a, a_addr, &mut proxy);
    let ev = events(&mut proxy);
    let statuses: Vec<u16> = ev
        .iter()
        .filter_map(|e| match e {
            TransactionEvent::Response { response, .. } => Some(response.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![180, 180, 200]);

    // The proxy cancels B's branch; B's TU sees the CANCEL matched to its INVITE, answers 200 and 487.
    let cancel_id = proxy.cancel(now, branches[1]).unwrap().unwrap();
    pump(now, &mut proxy, proxy_addr, &mut b);
    let ev = events(&mut b);
    let TransactionEvent::Cancel { id, invite, request, .. } = &ev[0] else { panic!("{ev:?}") };
    assert_eq!(*invite, Some(idb.0));
    assert_eq!(request.method, Method::Cancel);
    b.send_response(now, *id, request.make_response_with_tag(200, None, "tb")).unwrap();
    b.send_response(now, idb.0, idb.1.make_response_with_tag(487, None, "tb")).unwrap();
    pump(now, &mut b, b_addr, &mut proxy);
    // Pumping the proxy delivers its ACK for the 487 to B.
    let ev = pump(now, &mut proxy, proxy_addr, &mut b);
    let got: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            TransactionEvent::Response { id, response } => Some((*id, response.status)),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![(cancel_id, 200), (branches[1], 487)]);
    // The proxy's client transaction ACKed the 487 by itself; B's server transaction is Confirmed.
    assert_eq!(b.state(idb.0), Some(vienna_sip::transaction::State::Confirmed));
    // Same CANCEL construction as the layer's.
    assert_eq!(make_cancel(proxy.request(branches[0]).unwrap()).method, Method::Cancel);
}
