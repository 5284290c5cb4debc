//! Property tests: generated messages survive serialization and parsing; arbitrary input never panics.

use proptest::prelude::*;
use vienna_sip::digest::{Challenge, Credentials, respond};
use vienna_sip::{HeaderName, Message, Method, NameAddr, Request, StreamFramer, Uri, Via};

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,15}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){1,2}",
        "192\\.0\\.2\\.[0-9]{1,3}",
        Just("[2001:db8::1]".to_owned())
    ]
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        proptest::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}"),
        host(),
        proptest::option::of(1u16..),
        proptest::option::of(token()),
    )
        .prop_map(|(user, host, port, param)| {
            let mut s = String::from("sip:");
            if let Some(u) = user {
                s.push_str(&u.replace('@', ""));
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            if let Some(p) = param {
                s.push_str(&format!(";{p}"));
            }
            s
        })
}

prop_compose! {
    fn request()(
        method in prop_oneof![Just("INVITE".to_owned()), Just("REGISTER".to_owned()), Just("MESSAGE".to_owned()), "[A-Z]{3,10}"],
        ruri in sip_uri(),
        vias in proptest::collection::vec((host(), proptest::option::of(1u16..), token()), 1..4),
        from in sip_uri(), to in sip_uri(), tag in token(),
        display in proptest::option::of("[ -!#-\\[\\]-~]{0,12}"),
        call_id in "[a-zA-Z0-9.@-]{1,30}",
        seq in 0u32..(1 << 31),
        mf in proptest::option::of(0u8..),
        extra in proptest::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,30}"), 0..4),
        contacts in proptest::collection::vec((sip_uri(), proptest::option::of(0u32..100_000)), 0..3),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) -> Request {
        let mut text = format!("{method} {ruri} SIP/2.0\r\n");
        for (h, p, b) in &vias {
            let port = p.map(|p| format!(":{p}")).unwrap_or_default();
            text.push_str(&format!("Via: SIP/2.0/UDP {h}{port};branch=z9hG4bK{b}\r\n"));
        }
        let d = display.map(|d| format!("\"{}\" ", d.trim())).unwrap_or_default();
        text.push_str(&format!("From: {d}<{from}>;tag={tag}\r\nTo: <{to}>\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n"));
        if let Some(m) = mf { text.push_str(&format!("Max-Forwards: {m}\r\n")); }
        for (c, e) in &contacts {
            let e = e.map(|e| format!(";expires={e}")).unwrap_or_default();
            text.push_str(&format!("Contact: <{c}>{e}\r\n"));
        }
        for (n, v) in &extra { text.push_str(&format!("{n}: {}\r\n", v.trim())); }
        text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&body);
        match Message::parse(&bytes) {
            Ok(Message::Request(r)) => r,
            other => panic!("generated request did not parse: {other:?}\n{}", String::from_utf8_lossy(&bytes)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn request_round_trip(req in request()) {
        let bytes = req.to_bytes();
        let Message::Request(again) = Message::parse(&bytes).unwrap() else { panic!() };
        prop_assert_eq!(&again, &req);
        // Typed views agree.
        prop_assert_eq!(again.headers.vias().unwrap(), req.headers.vias().unwrap());
        prop_assert_eq!(again.headers.cseq().unwrap(), req.headers.cseq().unwrap());
        // A response built from it parses and keeps the Vias.
        let resp = req.make_response_with_tag(486, None, "abc");
        let Message::Response(r) = Message::parse(&resp.to_bytes()).unwrap() else { panic!() };
        prop_assert_eq!(r.headers.vias().unwrap(), req.headers.vias().unwrap());
        let to = r.headers.to().unwrap();
        prop_assert_eq!(to.tag(), Some("abc"));
    }

    #[test]
    fn stream_framing_any_split(req in request(), cut in 0usize..2000) {
        let bytes = [b"\r\n\r\n".as_slice(), &req.to_bytes(), &req.to_bytes()].concat();
        let cut = cut.min(bytes.len());
        let mut f = StreamFramer::new(Default::default());
        let now = std::time::Instant::now();
        let mut got = Vec::new();
        for part in [&bytes[..cut], &bytes[cut..]] {
            f.push(now, part);
            while let Some(ev) = f.next_event().unwrap() { got.push(ev); }
        }
        prop_assert_eq!(got.len(), 3);
        prop_assert_eq!(&got[0], &vienna_sip::FrameEvent::Ping);
        prop_assert_eq!(&got[1], &vienna_sip::FrameEvent::Message(Message::Request(req.clone())));
    }

    #[test]
    fn typed_values_round_trip(uri in sip_uri(), h in host(), port in proptest::option::of(1u16..), b in token()) {
        let u = Uri::parse(&uri).unwrap();
        prop_assert_eq!(u.to_string(), uri.clone());
        let v = Via::new("TCP", &h, port, &format!("z9hG4bK{b}"));
        prop_assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
        let mut n = NameAddr::new(u);
        n.params.set("tag", Some(b.clone()));
        prop_assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);
        prop_assert!(Method::parse(&b).is_some());
    }

    #[test]
    fn digest_round_trip(user in "[a-z]{1,10}", pass in "[ -~]{0,20}", nc in 1u32.., cnonce in "[a-zA-Z0-9]{1,16}") {
        let mut server = vienna_sip::digest::DigestServer::new([3; 32], "example.com", 60, 16);
        for ch in server.challenges(100, false) {
            let parsed = Challenge::parse(&ch.to_string()).unwrap();
            prop_assert_eq!(&parsed, &ch);
            let c = respond(&parsed, &user, &pass, "REGISTER", "sip:example.com", &cnonce, nc);
            prop_assert_eq!(Credentials::parse(&c.to_string()).unwrap(), c);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::parse(&data);
        let mut f = StreamFramer::new(Default::default());
        f.push(std::time::Instant::now(), &data);
        while let Ok(Some(_)) = f.next_event() {}
    }

    #[test]
    fn mutated_requests_never_panic(req in request(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = req.to_bytes();
        let i = pos % bytes.len();
        bytes[i] = byte;
        if let Err(e) = Message::parse(&bytes)
            && let Some(r) = vienna_sip::message::error_response(&bytes, &e)
        {
            prop_assert!(r.status == 400 || r.status == 413 || r.status == 505);
        }
        let _ = HeaderName::parse("x");
    }
}
