//! Arbitrary bytes into the Microsoft-client support of the SIP core: as every body Microsoft clients send
//! (category publications, container membership, subscriber acknowledgements, SOAP operations, batched
//! resource lists), as endpoint identities and NTLM user names, as what the IM gateway reads (an SDP offer,
//! an `ms-text-format` value, a Content-Type), and as a whole SIP message handed to a core over TCP (NTLM
//! handshake, SERVICE, SUBSCRIBE paths, in-dialog requests to the IM gateway). Nothing may panic; a
//! re-serialized publication value must read back.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vienna_signaling::msclient::{auth, epid, im_gateway, service};
use vienna_signaling::{Account, Core, CoreConfig, Directory, LocalAddr};
use vienna_sip::digest::Ha1;
use vienna_sip::transaction::Peer;
use vienna_sip::{Message, Transport};

struct One;

impl Directory for One {
    fn account(&self, aor: &str) -> Option<Account> {
        (aor == "sip:alice@example.test")
            .then(|| Account { aor: aor.into(), enabled: true, ha1: Ha1::derive("alice", "example.test", "x") })
    }
    fn account_by_auth(&self, _username: &str, _realm: &str) -> Option<Account> {
        self.account("sip:alice@example.test")
    }
    fn ntlm_account(&self, aor: &str) -> Option<(Account, [u8; 16])> {
        Some((self.account(aor)?, [1; 16]))
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok((_, pubs)) = service::parse_publish(data) {
        for p in pubs.iter().filter(|p| !p.value.is_empty()) {
            service::root(p.value.as_bytes()).expect("a re-serialized value parses");
        }
    }
    let _ = service::parse_container_members(data);
    let _ = service::parse_set_subscribers(data);
    let _ = service::parse_soap(data);
    let _ = service::parse_batch(data, 10);
    let text = String::from_utf8_lossy(data);
    let _ = epid::instance_from_epid(&text);
    let _ = epid::epid_of(&text);
    let _ = epid::instance_of_opaque(&text);
    let _ = epid::gruu_opaque(&text);
    let _ = auth::ntlm_aor(&text, &text, "example.test");
    let _ = im_gateway::is_im_offer(Some("application/sdp"), data);
    let _ = im_gateway::first_message(&text);
    let _ = im_gateway::deliverable(Some(text.as_ref()));
    if let Ok(message) = Message::parse(data) {
        let local = vec![LocalAddr { transport: Transport::Tcp, addr: "127.0.0.1:5061".parse().unwrap() }];
        let now = Instant::now();
        let mut core = Core::new(CoreConfig::new("example.test", local), One, [2; 32], Vec::new(), now, 1_800_000_000);
        let peer = Peer { transport: Transport::Tcp, addr: "127.0.0.1:40000".parse().unwrap() };
        core.handle_message(now, peer, message.clone());
        core.handle_message(now, peer, message);
        while core.poll_output().is_some() {}
        core.connection_lost(now, peer);
    }
});
