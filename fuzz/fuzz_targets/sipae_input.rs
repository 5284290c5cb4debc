//! Arbitrary bytes into MS-SIPAE: as an NTLM AUTHENTICATE or CHALLENGE token, as an NTLM header value, and
//! as the header of a signed request handed to the security-association server (handshake and signature
//! paths). Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vienna_sip::Message;
use vienna_sipae::ntlm::{Authenticate, Challenge};
use vienna_sipae::{AssociationConfig, NtlmAccount, NtlmParams, NtlmServer};

fuzz_target!(|data: &[u8]| {
    let _ = Authenticate::parse(data).map(|a| a.client_timestamp());
    let _ = Challenge::parse(data);
    let text = String::from_utf8_lossy(data);
    let Ok(params) = NtlmParams::parse(&text) else { return };
    let _ = NtlmParams::parse(&params.to_header());
    let request = Message::parse(
        b"REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5000;branch=z9hG4bK1\r\n\
          From: <sip:alice@example.test>;tag=f1\r\nTo: <sip:alice@example.test>\r\nCall-ID: c1\r\n\
          CSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("valid request");
    let mut server = NtlmServer::new(AssociationConfig::new("example.test", "sip.example.test"), [1; 32]);
    let lookup = |_: &str, _: &str| Some(NtlmAccount { aor: "sip:alice@example.test".into(), nt_hash: [0; 16] });
    let _ = server.authorize(1000, &1u8, &params, &request, lookup);
    let _ = server.authorize(1000, &1u8, &params, &request, lookup);
});
