//! Microsoft clients against the core over simulated TCP connections and a fake clock: the MS-SIPAE NTLM
//! handshake beside Digest, signatures checked (tampered, replayed, wrong connection, broken token) and
//! made (every final response, every BENOTIFY), the REGISTER answer, provisioning, roaming contacts and
//! self view, SOAP contact-list edits, category publishing with version conflicts, and batched category
//! subscriptions answered by BENOTIFY.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use base64::Engine as _;
use vienna_signaling::{Account, ContactEdit, Core, CoreConfig, Directory, LocalAddr, Output};
use vienna_sip::digest::Ha1;
use vienna_sip::transaction::Peer;
use vienna_sip::{HeaderName, Message, Response, Transport};
use vienna_sipae::ntlm::{self, Challenge, SIPAE_SEQUENCE, SessionKeys};
use vienna_sipae::{NtlmParams, SignedBy, signing_text};
use vienna_store::{Ace, ContactEntry, ContactList, Group};

const DOMAIN: &str = "example.test";
const SERVER: &str = "192.0.2.100:5061";
const UNIX0: u64 = 1_800_000_000;

fn nt_hash(password: &str) -> [u8; 16] {
    use md4::{Digest, Md4};
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    Md4::digest(&utf16).into()
}

/// alice and bob (password "secret"), contact lists and ACEs in memory.
#[derive(Default)]
struct Users {
    lists: RefCell<HashMap<String, ContactList>>,
    aces: RefCell<HashMap<String, Vec<Ace>>>,
}

impl Users {
    fn new() -> Self {
        let u = Users::default();
        u.lists.borrow_mut().insert(
            "sip:alice@example.test".into(),
            ContactList {
                version: 3,
                groups: vec![Group { id: 1, name: "Team".into() }],
                contacts: vec![ContactEntry {
                    uri: "sip:bob@example.test".into(),
                    display_name: "Bob".into(),
                    groups: vec![1],
                    subscribed: true,
                }],
            },
        );
        u
    }
    fn account_of(aor: &str) -> Option<Account> {
        let user = aor.strip_prefix("sip:")?.strip_suffix("@example.test")?;
        ["alice", "bob"].contains(&user).then(|| Account {
            aor: aor.to_owned(),
            enabled: true,
            ha1: Ha1::derive(user, DOMAIN, "secret"),
        })
    }
}

impl Directory for Users {
    fn account(&self, aor: &str) -> Option<Account> {
        Users::account_of(aor)
    }
    fn account_by_auth(&self, username: &str, _realm: &str) -> Option<Account> {
        Users::account_of(&format!("sip:{username}@{DOMAIN}"))
    }
    fn watcher_decision(&self, owner: &str, watcher: &str) -> vienna_presence::Decision {
        let in_list = self.contacts(owner).iter().any(|c| c == watcher);
        let state =
            if in_list { vienna_presence::WatcherState::Allowed } else { vienna_presence::WatcherState::Pending };
        vienna_presence::Decision { state, recorded: true }
    }
    fn contacts(&self, owner: &str) -> Vec<String> {
        self.lists.borrow().get(owner).map(|l| l.contacts.iter().map(|c| c.uri.clone()).collect()).unwrap_or_default()
    }
    fn ntlm_account(&self, aor: &str) -> Option<(Account, [u8; 16])> {
        Some((Users::account_of(aor)?, nt_hash("secret")))
    }
    fn contact_list(&self, owner: &str) -> Option<ContactList> {
        Some(self.lists.borrow().get(owner).cloned().unwrap_or_default())
    }
    fn edit_contacts(&self, owner: &str, edit: &ContactEdit) -> Result<(ContactList, Option<u32>), String> {
        let mut lists = self.lists.borrow_mut();
        let list = lists.entry(owner.to_owned()).or_default();
        let mut group = None;
        match edit {
            ContactEdit::PutContact(c) => {
                list.contacts.retain(|o| o.uri != c.uri);
                list.contacts.push(c.clone());
            }
            ContactEdit::RemoveContact(uri) => list.contacts.retain(|o| o.uri != *uri),
            ContactEdit::AddGroup(name) => {
                let id = list.groups.iter().map(|g| g.id).max().unwrap_or(0) + 1;
                list.groups.push(Group { id, name: name.clone() });
                group = Some(id);
            }
            ContactEdit::RenameGroup(id, name) => {
                let g = list.groups.iter_mut().find(|g| g.id == *id).ok_or("no such group")?;
                g.name = name.clone();
            }
            ContactEdit::RemoveGroup(id) => list.groups.retain(|g| g.id != *id),
            ContactEdit::PutAce(a) => self.aces.borrow_mut().entry(owner.to_owned()).or_default().push(a.clone()),
            ContactEdit::RemoveAce(scope) => {
                self.aces.borrow_mut().entry(owner.to_owned()).or_default().retain(|a| a.scope != *scope)
            }
        }
        list.version += 1;
        Ok((list.clone(), group))
    }
    fn aces(&self, owner: &str) -> Vec<Ace> {
        self.aces.borrow().get(owner).cloned().unwrap_or_default()
    }
}

/// One signed-in (or signing-in) Microsoft client on its own TCP connection.
struct Client {
    user: &'static str,
    peer: Peer,
    keys: Option<SessionKeys>,
    opaque: String,
    cnum: u32,
    cseq: u32,
    call: u32,
}

struct Net {
    core: Core<Users>,
    now: Instant,
}

fn response(m: &Message) -> &Response {
    match m {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {} {}", r.method, r.uri),
    }
}

impl Net {
    fn new() -> Net {
        let local = vec![LocalAddr { transport: Transport::Tcp, addr: SERVER.parse().unwrap() }];
        let mut config = CoreConfig::new(DOMAIN, local);
        config.ms.targetname = "sip.example.test".into();
        config.ms.mras_uri = Some("sip:mras@example.test".into());
        let now = Instant::now();
        Net { core: Core::new(config, Users::new(), [9; 32], Vec::new(), now, UNIX0), now }
    }

    /// Everything sent, to whom.
    fn drain(&mut self) -> Vec<(SocketAddr, Message)> {
        let mut out = Vec::new();
        while let Some(o) = self.core.poll_output() {
            if let Output::Transmit(t) = o {
                out.push((t.peer.addr, Message::parse(&t.bytes).expect("parsable")));
            }
        }
        out
    }

    fn send(&mut self, c: &Client, text: &str) -> Vec<(SocketAddr, Message)> {
        let limits = vienna_sip::Limits { max_message: 1 << 20, ..vienna_sip::Limits::default() };
        let m =
            Message::parse_with(text.as_bytes(), &limits, vienna_sip::Framing::Stream).expect("test message parses");
        self.core.handle_message(self.now, c.peer, m);
        self.drain()
    }

    /// Sends and returns the one response to `c`.
    fn request(&mut self, c: &Client, text: &str) -> Response {
        let out = self.send(c, text);
        out.iter()
            .map(|(_, m)| m)
            .find_map(|m| match m {
                Message::Response(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no response in {out:#?}"))
    }
}

fn header<'a>(r: &'a Response, name: &str) -> Vec<&'a str> {
    r.headers.0.iter().filter(|h| h.name.as_str().eq_ignore_ascii_case(name)).map(|h| h.value.as_str()).collect()
}

impl Client {
    fn new(user: &'static str, port: u16) -> Client {
        Client {
            user,
            peer: Peer { transport: Transport::Tcp, addr: format!("192.0.2.1:{port}").parse().unwrap() },
            keys: None,
            opaque: String::new(),
            cnum: 0,
            cseq: 0,
            call: port.into(),
        }
    }

    /// A request from this client; `auth` is the Authorization value without signature, `extra` more
    /// headers, `body` with its content type.
    fn text(&mut self, method: &str, uri: &str, extra: &str, auth: &str, body: Option<(&str, &str)>) -> String {
        self.cseq += 1;
        let (ctype, body) = match body {
            Some((t, b)) => (format!("Content-Type: {t}\r\n"), b.to_owned()),
            None => (String::new(), String::new()),
        };
        let user = self.user;
        let auth = if auth.is_empty() { String::new() } else { format!("Authorization: {auth}\r\n") };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:{port};branch=z9hG4bK{cseq}x{call}\r\n\
             From: <sip:{user}@example.test>;tag=f{call};epid=01010101\r\nTo: <sip:{to}>\r\n\
             Call-ID: c{call}-{method}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
             Contact: <sip:192.0.2.1:{port};transport=tcp>;+sip.instance=\"<urn:uuid:4b1682a8-f968-5701-83fc-7c6741dc6697>\"\r\n\
             {extra}{auth}{ctype}Content-Length: {len}\r\n\r\n{body}",
            port = self.peer.addr.port(),
            cseq = self.cseq,
            call = self.call,
            to = if method == "REGISTER" {
                format!("{user}@example.test")
            } else {
                uri.trim_start_matches("sip:").to_owned()
            },
            len = body.len(),
        )
    }

    /// Signs `text` (which carries no Authorization yet) the way SIPE does: crand, cnum, response.
    fn signed(&mut self, text: &str, gssapi: Option<&str>) -> String {
        self.cnum += 1;
        let keys = self.keys.as_ref().expect("established");
        let mut p = NtlmParams {
            qop: Some("auth".into()),
            opaque: Some(self.opaque.clone()),
            realm: Some(vienna_sipae::DEFAULT_REALM.into()),
            targetname: Some("sip.example.test".into()),
            gssapi_data: gssapi.map(str::to_owned),
            version: Some(4),
            crand: Some("0c449822".into()),
            cnum: Some(self.cnum),
            ..NtlmParams::default()
        };
        let limits = vienna_sip::Limits { max_message: 1 << 20, ..vienna_sip::Limits::default() };
        let msg = Message::parse_with(text.as_bytes(), &limits, vienna_sip::Framing::Stream).unwrap();
        let cnum = self.cnum.to_string();
        let by = SignedBy {
            scheme: "NTLM",
            rand: "0c449822",
            num: &cnum,
            realm: vienna_sipae::DEFAULT_REALM,
            targetname: "sip.example.test",
            version: 4,
        };
        let sig = ntlm::signature(
            keys.flags,
            &keys.client_sign,
            &keys.client_seal,
            SIPAE_SEQUENCE,
            signing_text(&by, &msg).as_bytes(),
        );
        p.response = Some(hex::encode_upper(sig));
        text.replacen("Content-Length:", &format!("Authorization: {}\r\nContent-Length:", p.to_header()), 1)
    }

    /// Checks the server's signature on `m` with the server-to-client keys.
    fn verify(&self, m: &Message) {
        let keys = self.keys.as_ref().expect("established");
        let info = m.headers().get(&HeaderName::Other("Authentication-Info".into())).expect("signed");
        let p = NtlmParams::parse(info).unwrap();
        let snum = p.snum.unwrap().to_string();
        let by = SignedBy {
            scheme: "NTLM",
            rand: p.srand.as_deref().unwrap(),
            num: &snum,
            realm: p.realm.as_deref().unwrap(),
            targetname: p.targetname.as_deref().unwrap(),
            version: 4,
        };
        let want = ntlm::signature(
            keys.flags,
            &keys.server_sign,
            &keys.server_seal,
            SIPAE_SEQUENCE,
            signing_text(&by, m).as_bytes(),
        );
        assert_eq!(p.rspauth.unwrap(), hex::encode_upper(want), "server signature of {m:?}");
    }
}

const REG_EXTRA: &str = "Supported: gruu-10, adhoclist, msrtc-event-categories, com.microsoft.msrtc.presence\r\n\
                         Event: registration\r\nms-keep-alive: UAC;hop-hop=yes\r\n";
const SUB_EXTRA: &str = "Supported: com.microsoft.autoextend\r\nSupported: ms-benotify\r\nProxy-Require: ms-benotify\r\n\
                         Supported: ms-piggyback-first-notify\r\n";

/// Runs SIPE's sign-in for `c` with a UPN user name; returns the REGISTER 200 OK.
fn sign_in(net: &mut Net, c: &mut Client) -> Response {
    let upn = format!("{}@example.test", c.user);
    sign_in_as(net, c, &upn, "")
}

/// Runs SIPE's sign-in for `c` as NTLM user `user` of `domain`.
fn sign_in_as(net: &mut Net, c: &mut Client, user: &str, domain: &str) -> Response {
    let first = c.text("REGISTER", "sip:example.test", REG_EXTRA, "", None);
    let r = net.request(c, &first);
    assert_eq!(r.status, 401);
    let offers: Vec<&str> = r.headers.get_all(&HeaderName::WwwAuthenticate).collect();
    assert!(offers.iter().any(|o| o.starts_with("Digest")), "Digest stays offered: {offers:?}");
    let ntlm_offer = offers.iter().find(|o| o.starts_with("NTLM")).expect("NTLM offered over TCP");
    assert!(ntlm_offer.contains("targetname=\"sip.example.test\"") && ntlm_offer.contains("version=4"));
    let empty = "NTLM qop=\"auth\", realm=\"SIP Communications Service\", targetname=\"sip.example.test\", gssapi-data=\"\", version=4";
    let second = c.text("REGISTER", "sip:example.test", REG_EXTRA, empty, None);
    let r = net.request(c, &second);
    assert_eq!(r.status, 401);
    let challenge = NtlmParams::parse(r.headers.get(&HeaderName::WwwAuthenticate).unwrap()).unwrap();
    let token = base64::engine::general_purpose::STANDARD.decode(challenge.gssapi_data.unwrap()).unwrap();
    let ch = Challenge::parse(&token).unwrap();
    let (auth, keys) =
        ntlm::authenticate_message(&ch, user, domain, &nt_hash("secret"), [3; 8], ntlm::filetime(UNIX0), [4; 16]);
    c.keys = Some(keys);
    c.opaque = challenge.opaque.unwrap();
    let third = c.text("REGISTER", "sip:example.test", REG_EXTRA, "", None);
    let gss = base64::engine::general_purpose::STANDARD.encode(auth);
    let third = c.signed(&third, Some(&gss));
    let r = net.request(c, &third);
    assert_eq!(r.status, 200, "{r:?}");
    c.verify(&Message::Response(r.clone()));
    r
}

#[test]
fn ntlm_sign_in_and_the_register_answer_microsoft_clients_expect() {
    let mut net = Net::new();
    let mut alice = Client::new("alice", 40001);
    let r = sign_in(&mut net, &mut alice);
    assert_eq!(r.headers.get(&HeaderName::Expires), Some("3600"));
    let supported: Vec<&str> = r.headers.get_all(&HeaderName::Supported).collect();
    for tag in ["msrtc-event-categories", "adhoclist", "ms-benotify"] {
        assert!(supported.contains(&tag), "one tag per Supported line: {supported:?}");
    }
    let events = r.headers.get(&HeaderName::AllowEvents).unwrap();
    assert!(!events.contains(' ') && events.contains("vnd-microsoft-roaming-self"), "{events}");
    let contact = r.headers.get(&HeaderName::Contact).unwrap();
    assert!(contact.contains("4b1682a8-f968-5701-83fc-7c6741dc6697"), "{contact}");
    assert!(contact.contains(";gruu=\"sip:alice@example.test;opaque=user:epid:"), "{contact}");
    assert!(header(&r, "ms-keep-alive")[0].contains("timeout="));
    assert_eq!(net.core.ntlm_associations(), 1);

    // A signed request verifies; the answer is signed.
    let sub = alice.text("SUBSCRIBE", "sip:alice@example.test", &format!("Event: vnd-microsoft-roaming-contacts\r\nAccept: application/vnd-microsoft-roaming-contacts+xml\r\n{SUB_EXTRA}"), "", None);
    let signed = alice.signed(&sub, None);
    let out = net.send(&alice, &signed);
    let (_, m) = &out[0];
    assert_eq!(response(m).status, 200);
    alice.verify(m);
    let body = String::from_utf8_lossy(&response(m).body).into_owned();
    assert!(body.contains("<contactList deltaNum=\"3\"") && body.contains("uri=\"bob@example.test\""), "{body}");
    assert_eq!(header(response(m), "ms-piggyback-cseq").len(), 1);

    // Replayed (another Via branch, same cnum and signature): refused.
    let replay = signed.replace(";branch=z9hG4bK", ";branch=z9hG4bKreplay");
    let r = net.request(&alice, &replay);
    assert_eq!((r.status, r.reason.as_str()), (401, "Unauthorized (replayed message)"));
    // Tampered (the CSeq the signature covers): refused.
    let sub = alice.text("SUBSCRIBE", "sip:alice@example.test", "Event: vnd-microsoft-roaming-self\r\n", "", None);
    let tampered =
        alice.signed(&sub, None).replace(&format!("CSeq: {} ", alice.cseq), &format!("CSeq: {} ", alice.cseq + 7));
    let r = net.request(&alice, &tampered);
    assert_eq!((r.status, r.reason.as_str()), (401, "Unauthorized (bad message signature)"));
    assert!(r.headers.get(&HeaderName::WwwAuthenticate).unwrap().starts_with("NTLM"), "a fresh offer");
    // The same credentials from another connection: refused.
    let mut thief = Client::new("alice", 40009);
    let sub = alice.text("SUBSCRIBE", "sip:alice@example.test", "Event: vnd-microsoft-roaming-self\r\n", "", None);
    let stolen = alice.signed(&sub, None);
    thief.cseq = 100;
    let r = net.request(&thief, &stolen);
    assert_eq!((r.status, r.reason.as_str()), (401, "Unauthorized (no such security association on this connection)"));
    // A broken token and a header that does not parse.
    let mut eve = Client::new("bob", 40010);
    let bad = eve.text(
        "REGISTER",
        "sip:example.test",
        REG_EXTRA,
        "NTLM opaque=\"ABCD\", gssapi-data=\"%%%\", version=4",
        None,
    );
    assert_eq!(net.request(&eve, &bad).status, 401);
    let bad = eve.text("REGISTER", "sip:example.test", REG_EXTRA, "NTLM realm=\"unterminated", None);
    assert_eq!(net.request(&eve, &bad).status, 400);
    let c = net.core.ms_counters();
    assert_eq!((c.ntlm.refused_replay, c.ntlm.refused_signature, c.ntlm.refused_association), (1, 1, 2), "{c:?}");
    assert_eq!(c.ntlm.refused_malformed, 1, "{c:?}");

    // Connection closed: the association goes.
    net.core.connection_lost(net.now, alice.peer);
    assert_eq!(net.core.ntlm_associations(), 0);
}

#[test]
fn provisioning_self_view_and_soap_edits_with_signed_benotify_deltas() {
    let mut net = Net::new();
    let mut alice = Client::new("alice", 40002);
    sign_in(&mut net, &mut alice);
    let sub = alice.text(
        "SUBSCRIBE",
        "sip:alice@example.test",
        &format!("Event: vnd-microsoft-provisioning-v2\r\nExpires: 0\r\n{SUB_EXTRA}"),
        "",
        Some(("application/vnd-microsoft-roaming-provisioning-v2+xml", "<provisioningGroupList xmlns=\"http://schemas.microsoft.com/2006/09/sip/provisioninggrouplist\"><provisioningGroup name=\"ServerConfiguration\"/></provisioningGroupList>")),
    );
    let signed = alice.clone_signed(&sub);
    let r = net.request(&alice, &signed);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains("<focusFactoryUri>sip:alice@example.test;gruu;opaque=app:conf:focusfactory</focusFactoryUri>"),
        "{body}"
    );
    assert!(body.contains("<mrasUri>sip:mras@example.test</mrasUri>"), "{body}");

    let sub = alice.text(
        "SUBSCRIBE",
        "sip:alice@example.test",
        &format!("Event: vnd-microsoft-roaming-contacts\r\n{SUB_EXTRA}"),
        "",
        None,
    );
    let signed = alice.clone_signed(&sub);
    let r = net.request(&alice, &signed);
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get(&HeaderName::Supported), Some("ms-benotify"));

    let soap = |op: &str| {
        format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"http://schemas.microsoft.com/winrtc/2002/11/sip\"><s:Body>{op}</s:Body></s:Envelope>"
        )
    };
    let service = |c: &mut Client, body: &str| {
        let t = c.text("SERVICE", "sip:alice@example.test", "", "", Some(("application/SOAP+xml", body)));
        c.clone_signed(&t)
    };
    // addGroup: the group id comes back; the subscription hears the delta by BENOTIFY, signed.
    let req = service(
        &mut alice,
        &soap("<m:addGroup><m:name>Friends</m:name><m:externalURI/><m:deltaNum>3</m:deltaNum></m:addGroup>"),
    );
    let out = net.send(&alice, &req);
    let r = response(&out[0].1);
    assert_eq!(r.status, 200);
    alice.verify(&out[0].1);
    assert!(String::from_utf8_lossy(&r.body).contains("<m:groupID>2</m:groupID>"), "{r:?}");
    let Message::Request(note) = &out[1].1 else { panic!("a BENOTIFY follows: {out:#?}") };
    assert_eq!(note.method.as_str(), "BENOTIFY");
    alice.verify(&out[1].1);
    assert!(String::from_utf8_lossy(&note.body).contains("<addedGroup id=\"2\" name=\"Friends\"/>"), "{note:?}");
    // setContact, modifyGroup, deleteContact, deleteGroup, setACE.
    for (op, delta) in [
        (
            "<m:setContact><m:displayName>Carol</m:displayName><m:groups>2</m:groups><m:subscribed>true</m:subscribed><m:URI>sip:carol@example.test</m:URI></m:setContact>",
            "<addedContact uri=\"sip:carol@example.test\" name=\"Carol\" groups=\"2\"",
        ),
        (
            "<m:modifyGroup><m:groupID>2</m:groupID><m:name>Pals</m:name></m:modifyGroup>",
            "<modifiedGroup id=\"2\" name=\"Pals\"/>",
        ),
        (
            "<m:deleteContact><m:URI>sip:carol@example.test</m:URI></m:deleteContact>",
            "<deletedContact uri=\"sip:carol@example.test\"/>",
        ),
        ("<m:deleteGroup><m:groupID>2</m:groupID></m:deleteGroup>", "<deletedGroup id=\"2\"/>"),
    ] {
        let req = service(&mut alice, &soap(op));
        let out = net.send(&alice, &req);
        assert_eq!(response(&out[0].1).status, 200, "{op}");
        let Message::Request(n) = &out[1].1 else { panic!("{op}: no delta in {out:#?}") };
        assert!(String::from_utf8_lossy(&n.body).contains(delta), "{op}: {n:?}");
    }
    let req = service(
        &mut alice,
        &soap(
            "<m:setACE><m:ace><m:type>USER</m:type><m:mask>sip:mallory@example.test</m:mask><m:rights>BD</m:rights></m:ace></m:setACE>",
        ),
    );
    assert_eq!(net.request(&alice, &req).status, 200);
    assert_eq!(net.core.ms_counters().edits, 6);
    // Bad bodies: malformed, entity expansion, unknown operation, oversized.
    for body in ["<s:Envelope", "<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>", &soap("<m:launchMissiles/>")] {
        let req = service(&mut alice, body);
        assert_eq!(net.request(&alice, &req).status, 400, "{body}");
    }
    let big = format!("<x>{}</x>", "a".repeat(70_000));
    let req = service(&mut alice, &big);
    let out = net.send(&alice, &req);
    assert!(out.iter().any(|(_, m)| matches!(m, Message::Response(r) if r.status == 413)), "{out:?}");
}

#[test]
fn category_publishing_with_versions_and_batched_category_subscriptions() {
    let mut net = Net::new();
    let mut alice = Client::new("alice", 40003);
    let mut bob = Client::new("bob", 40004);
    sign_in(&mut net, &mut alice);
    sign_in(&mut net, &mut bob);
    let publish = |c: &mut Client, availability: u32, version: u32| {
        let body = format!(
            "<publish xmlns=\"http://schemas.microsoft.com/2006/09/sip/rich-presence\"><publications uri=\"sip:{u}@example.test\"><publication categoryName=\"state\" instance=\"536870912\" container=\"2\" version=\"{version}\" expireType=\"static\"><state xmlns=\"http://schemas.microsoft.com/2006/09/sip/state\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" manual=\"true\" xsi:type=\"userState\"><availability>{availability}</availability></state></publication><publication categoryName=\"note\" instance=\"0\" container=\"200\" version=\"{version}\" expireType=\"static\"><note xmlns=\"http://schemas.microsoft.com/2006/09/sip/note\"><body type=\"personal\" uri=\"\">at lunch</body></note></publication></publications></publish>",
            u = c.user
        );
        let t = c.text(
            "SERVICE",
            &format!("sip:{}@example.test", c.user),
            "",
            "",
            Some(("application/msrtc-category-publish+xml", &body)),
        );
        c.clone_signed(&t)
    };
    // Bob watches Alice with a batched category subscription (BENOTIFY negotiated).
    let batch = "<batchSub xmlns=\"http://schemas.microsoft.com/2006/01/sip/batch-subscribe\" uri=\"sip:bob@example.test\" name=\"\"><action name=\"subscribe\" id=\"63792024\"><adhocList><resource uri=\"sip:alice@example.test\"/></adhocList><categoryList xmlns=\"http://schemas.microsoft.com/2006/09/sip/categorylist\"><category name=\"state\"/><category name=\"note\"/></categoryList></action></batchSub>";
    let sub = bob.text(
        "SUBSCRIBE",
        "sip:bob@example.test",
        &format!("Event: presence\r\nRequire: adhoclist, categoryList\r\nSupported: eventlist\r\nAccept: application/msrtc-event-categories+xml, application/rlmi+xml, multipart/related\r\n{SUB_EXTRA}"),
        "",
        Some(("application/msrtc-adrl-categorylist+xml", batch)),
    );
    let signed = bob.clone_signed(&sub);
    let out = net.send(&bob, &signed);
    assert_eq!(response(&out[0].1).status, 200);
    let Message::Request(first) = &out[1].1 else { panic!("{out:#?}") };
    assert_eq!(first.method.as_str(), "BENOTIFY");
    bob.verify(&out[1].1);
    let body = String::from_utf8_lossy(&first.body).into_owned();
    assert!(first.headers.get(&HeaderName::ContentType).unwrap().starts_with("multipart/related"));
    assert!(
        body.contains(
            "<categories xmlns=\"http://schemas.microsoft.com/2006/09/sip/categories\" uri=\"sip:alice@example.test\">"
        ),
        "{body}"
    );
    assert!(body.contains("<availability>3500</availability>"), "registered and silent is Online: {body}");

    // Alice publishes Busy with a note (version 0: new): 200 with her self view, and Bob hears it.
    let req = publish(&mut alice, 6500, 0);
    let out = net.send(&alice, &req);
    let r = response(&out[0].1);
    assert_eq!(r.status, 200);
    let view = String::from_utf8_lossy(&r.body).into_owned();
    assert!(view.contains("name=\"state\" instance=\"536870912\"") && view.contains("version=\"1\""), "{view}");
    let to_bob: Vec<&Message> = out.iter().filter(|(a, _)| *a == bob.peer.addr).map(|(_, m)| m).collect();
    let Some(Message::Request(n)) = to_bob.first() else { panic!("bob hears nothing: {out:#?}") };
    let body = String::from_utf8_lossy(&n.body).into_owned();
    assert!(body.contains("<availability>6500</availability>") && body.contains("at lunch"), "{body}");
    assert_eq!(net.core.presence().state_of("sip:alice@example.test").availability, 6500, "one presence model");

    // A stale version: 409 with the fault naming the current version; nothing changes.
    let req = publish(&mut alice, 15500, 0);
    let out = net.send(&alice, &req);
    let r = response(&out[0].1);
    assert_eq!(r.status, 409);
    let fault = String::from_utf8_lossy(&r.body).into_owned();
    assert!(fault.contains("<operation index=\"1\" curVersion=\"1\"/>"), "{fault}");
    assert_eq!(net.core.presence().state_of("sip:alice@example.test").availability, 6500);
    assert_eq!(net.core.ms_counters().version_conflicts, 1);
    // The current version: accepted.
    let req = publish(&mut alice, 15500, 1);
    let out = net.send(&alice, &req);
    assert_eq!(response(&out[0].1).status, 200);
    assert_eq!(net.core.presence().state_of("sip:alice@example.test").availability, 15500);
    // Malformed publication.
    let t = alice.text(
        "SERVICE",
        "sip:alice@example.test",
        "",
        "",
        Some(("application/msrtc-category-publish+xml", "<publish><publications/></publish>")),
    );
    let req = alice.clone_signed(&t);
    assert_eq!(net.request(&alice, &req).status, 400);
    // Publishing for somebody else: refused.
    let t = alice.text(
        "SERVICE",
        "sip:bob@example.test",
        "",
        "",
        Some(("application/msrtc-category-publish+xml", "<publish/>")),
    );
    let req = alice.clone_signed(&t);
    assert_eq!(net.request(&alice, &req).status, 403);
}

impl Client {
    /// [`Client::signed`] for a request without a token.
    fn clone_signed(&mut self, text: &str) -> String {
        self.signed(text, None)
    }
}

#[test]
fn legacy_presence_subscription_gets_msrtc_pidf_by_notify() {
    let mut net = Net::new();
    let mut alice = Client::new("alice", 40005);
    let mut bob = Client::new("bob", 40006);
    sign_in(&mut net, &mut alice);
    sign_in(&mut net, &mut bob);
    // An LCS 2005 style single subscription to Alice (no BENOTIFY negotiated): answered by NOTIFY.
    let sub = bob.text(
        "SUBSCRIBE",
        "sip:alice@example.test",
        "Event: presence\r\nAccept: text/xml+msrtc.pidf, application/pidf+xml\r\nSupported: com.microsoft.autoextend\r\n",
        "",
        None,
    );
    let signed = bob.clone_signed(&sub);
    let out = net.send(&bob, &signed);
    assert_eq!(response(&out[0].1).status, 200);
    let Message::Request(n) = &out[1].1 else { panic!("{out:#?}") };
    assert_eq!(n.method, vienna_sip::Method::Notify);
    assert_eq!(n.headers.get(&HeaderName::ContentType), Some("text/xml+msrtc.pidf"));
    let body = String::from_utf8_lossy(&n.body).into_owned();
    assert!(body.contains("<presentity uri=\"alice@example.test\"") && body.contains("aggregate=\"400\""), "{body}");
    bob.verify(&out[1].1);
    // LCS 2005 setPresence (SOAP): Busy reaches the presence model and the watcher.
    let soap = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"http://schemas.microsoft.com/winrtc/2002/11/sip\"><s:Body><m:setPresence><m:presentity m:uri=\"sip:alice@example.test\"><m:availability m:aggregate=\"300\"/><m:activity m:aggregate=\"600\"/></m:presentity></m:setPresence></s:Body></s:Envelope>";
    let t = alice.text("SERVICE", "sip:alice@example.test", "", "", Some(("application/SOAP+xml", soap)));
    let req = alice.clone_signed(&t);
    let out = net.send(&alice, &req);
    assert_eq!(response(&out[0].1).status, 200);
    assert_eq!(net.core.presence().state_of("sip:alice@example.test").availability, 6500);
    let to_bob = out.iter().find(|(a, _)| *a == bob.peer.addr).map(|(_, m)| m);
    let Some(Message::Request(n)) = to_bob else { panic!("{out:#?}") };
    assert!(String::from_utf8_lossy(&n.body).contains("aggregate=\"600\""), "{n:?}");
}

#[test]
fn domain_user_names_and_instances_derived_from_the_epid() {
    let mut net = Net::new();
    let mut bob = Client::new("bob", 40007);
    let r = sign_in_as(&mut net, &mut bob, "bob", "EXAMPLE");
    assert_eq!(r.status, 200);
    let mut alice = Client::new("alice", 40008);
    let r = sign_in_as(&mut net, &mut alice, "EXAMPLE\\alice", "");
    assert_eq!(r.status, 200);
    // A REGISTER with an epid and no +sip.instance gets the instance MS-SIPRE derives from it (epid 01010101).
    let text = alice
        .text("REGISTER", "sip:example.test", REG_EXTRA, "", None)
        .replace(";+sip.instance=\"<urn:uuid:4b1682a8-f968-5701-83fc-7c6741dc6697>\"", "");
    let signed = alice.clone_signed(&text);
    let r = net.request(&alice, &signed);
    assert_eq!(r.status, 200);
    let contact = r.headers.get(&HeaderName::Contact).unwrap();
    assert!(
        contact.contains("<urn:uuid:4b1682a8-f968-5701-83fc-7c6741dc6697>") && contact.contains("gruu="),
        "{contact}"
    );
}
