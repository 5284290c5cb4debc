//! RFC 4475 torture messages: valid ones parse, invalid ones give an error that maps to 400 (505 for a wrong
//! version) or are dropped (responses); nothing panics. See `testvectors/rfc4475/README.md`.

use std::path::PathBuf;

use vienna_sip::{HeaderName, Message, ParseErrorKind, message::error_response};

fn load(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testvectors/rfc4475").join(format!("{name}.sip"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const VALID: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badbranch",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
    "baddate",
];

const INVALID: &[&str] = &[
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
    "insuf",
    "multi01",
    "mcl01",
];

#[test]
fn all_49_files_are_classified() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testvectors/rfc4475");
    let n = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sip"))
        .count();
    assert_eq!(n, 49);
    assert_eq!(VALID.len() + INVALID.len(), 49);
}

#[test]
fn valid_messages_parse_and_round_trip() {
    for name in VALID {
        let bytes = load(name);
        let msg = Message::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Serializing, parsing and serializing again is stable; only Content-Length may be added.
        let out = msg.to_bytes();
        let again = Message::parse(&out).unwrap_or_else(|e| panic!("{name} re-parse: {e}"));
        assert_eq!(again.to_bytes(), out, "{name}");
        assert_eq!(again.body(), msg.body(), "{name}");
        assert_eq!(
            again.headers().len(),
            msg.headers().len() + usize::from(!msg.headers().contains(&HeaderName::ContentLength))
        );
    }
}

fn request(name: &str) -> vienna_sip::Request {
    match Message::parse(&load(name)).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{name} is a response"),
    }
}

#[test]
fn valid_messages_details() {
    let r = request("wsinv");
    assert_eq!(r.headers.max_forwards().unwrap(), Some(68));
    assert_eq!(r.headers.cseq().unwrap().seq, 9);
    assert_eq!(r.headers.vias().unwrap().len(), 3);
    assert_eq!(r.headers.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(
        r.headers.get(&HeaderName::Other("NewFangledHeader".into())),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(r.body.len(), r.headers.content_length().unwrap().unwrap());
    let r = request("intmeth");
    assert_eq!(r.method.as_str(), "!interesting-Method0123456789_*+`.%indeed'~");
    let r = request("esc01");
    assert_eq!(r.uri.as_sip().unwrap().user_unescaped().unwrap(), "sips:user@example.com");
    let r = request("esc02");
    assert!(matches!(r.headers.contacts().unwrap(), vienna_sip::Contacts::List(ref l) if l.len() == 2));
    let r = request("dblreq");
    assert_eq!(r.method, vienna_sip::Method::Register);
    assert!(r.body.is_empty());
    assert_eq!(request("unkscm").check_uri_scheme(&["sip", "sips"]), Err(416));
    assert_eq!(request("novelsc").check_uri_scheme(&["sip", "sips"]), Err(416));
    assert_eq!(request("zeromf").check_max_forwards(), Err(483));
    let r = request("bext01");
    assert_eq!(r.unsupported_tags(&HeaderName::ProxyRequire, &[]).len(), 2);
    assert_eq!(r.unsupported_tags(&HeaderName::Require, &[]).len(), 2);
    let r = request("regaut01");
    assert!(vienna_sip::digest::Credentials::find(&r.headers, false, "example.com").is_none());
    let r = request("badbranch");
    assert!(!r.headers.top_via().unwrap().is_rfc3261());
    let r = request("inv2543");
    assert!(r.headers.from().unwrap().tag().is_none());
    assert!(!r.headers.top_via().unwrap().is_rfc3261());
    let Message::Response(resp) = Message::parse(&load("noreason")).unwrap() else { panic!() };
    assert_eq!((resp.status, resp.reason.as_str()), (100, ""));
    let Message::Response(resp) = Message::parse(&load("unreason")).unwrap() else { panic!() };
    assert!(resp.reason.contains("простое"));
}

#[test]
fn invalid_messages_are_rejected_with_the_right_response() {
    for name in INVALID {
        let bytes = load(name);
        let err = Message::parse(&bytes).expect_err(name);
        let is_response = bytes.starts_with(b"SIP/");
        let want = if *name == "badvers" { 505 } else { 400 };
        assert_eq!(err.status_code(), want, "{name}: {err}");
        assert!(!matches!(err.kind, ParseErrorKind::TooLarge(_)), "{name}");
        let answer = error_response(&bytes, &err);
        if is_response {
            assert!(answer.is_none(), "{name}: responses are dropped");
        } else if let Some(a) = answer {
            assert_eq!(a.status, want, "{name}");
            assert!(
                a.reason.starts_with(if want == 505 { "Version" } else { "Bad Request (" }),
                "{name}: {}",
                a.reason
            );
        }
    }
}

#[test]
fn every_prefix_and_mutation_is_handled_without_panic() {
    for name in VALID.iter().chain(INVALID) {
        let bytes = load(name);
        for cut in (0..bytes.len()).step_by(7) {
            let _ = Message::parse(&bytes[..cut]);
        }
        let mut framer = vienna_sip::StreamFramer::new(Default::default());
        framer.push(std::time::Instant::now(), &bytes);
        while let Ok(Some(_)) = framer.next_event() {}
    }
}
