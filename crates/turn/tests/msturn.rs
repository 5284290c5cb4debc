//! MS-TURN message flows through the relay core with a fake clock: libnice's captured messages,
//! MRAS tokens, Send/Data Indication, Set Active Destination with raw data, MS-SEQUENCE-NUMBER,
//! retransmissions, refresh, errors, MS-TURNBWM, and both dialects side by side.

mod harness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use harness::*;
use proptest::prelude::*;
use vienna_edge_auth::MrasKeys;
use vienna_stun::msturn::{self, Builder, Hash, Message, SequenceNumber, TransactionId, attr, types};
use vienna_turn::credentials::rest_password;
use vienna_turn::{Config, DropReason, FiveTuple, NotForwarded, Transport};

const PEER: &str = "203.0.113.5:40000";
const PEER2: &str = "203.0.113.6:40000";
const MRAS_SECRET: &[u8] = b"edge shared secret";

fn ms_config() -> Config {
    let mut c = config();
    c.mras = Some(MrasKeys::derive(MRAS_SECRET));
    c.rest_secrets = vec![b"rest-secret".to_vec()];
    c
}

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testvectors/msturn").join(name);
    let text = std::fs::read_to_string(path).unwrap();
    let hex: String = text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.trim().chars()).collect();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// An MS-TURN client on one 5-tuple, as libnice behaves in OC2007R2 mode.
struct MsClient {
    tuple: FiveTuple,
    username: Vec<u8>,
    password: Vec<u8>,
    version: u32,
    padded: bool,
    nonce: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    seq: Option<SequenceNumber>,
    n: u8,
}

impl MsClient {
    fn new(username: &[u8], password: &[u8]) -> MsClient {
        MsClient::on("192.0.2.10:5000", Transport::Udp, username, password)
    }
    fn on(client: &str, transport: Transport, username: &[u8], password: &[u8]) -> MsClient {
        MsClient {
            tuple: FiveTuple {
                transport,
                client: client.parse().unwrap(),
                server: "198.51.100.1:3478".parse().unwrap(),
            },
            username: username.to_vec(),
            password: password.to_vec(),
            version: 1,
            padded: false,
            nonce: None,
            key: None,
            seq: None,
            n: 0,
        }
    }
    /// A fresh MRAS-token client.
    fn mras(now_unix: u64) -> MsClient {
        let t = MrasKeys::derive(MRAS_SECRET).mint("sip:alice@vienna.test", now_unix + 3600);
        MsClient::new(&t.username, &t.password)
    }
    fn txid(&mut self) -> TransactionId {
        self.n += 1;
        TransactionId([self.n; 16])
    }
    fn hash(&self) -> Hash {
        Hash::for_version(self.version)
    }
    fn derive_key(&mut self) {
        let nonce = self.nonce.clone().unwrap_or_default();
        self.key = Some(match self.hash() {
            Hash::Sha1 => msturn::key_v1(&self.username, REALM.as_bytes(), &self.password).to_vec(),
            Hash::Sha256 => msturn::key_v3(&self.username, REALM.as_bytes(), &nonce, &self.password).to_vec(),
        });
    }
    fn allocate(&mut self, txid: TransactionId, extra: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = Builder::new(types::ALLOCATE_REQUEST, txid, self.padded);
        b.add_u32(attr::MS_VERSION, self.version).unwrap();
        for (t, v) in extra {
            b.add(*t, v).unwrap();
        }
        if let Some(n) = self.nonce.clone() {
            b.add(attr::REALM, REALM.as_bytes()).unwrap();
            b.add(attr::NONCE, &n).unwrap();
            b.add(attr::USERNAME, &self.username).unwrap();
            self.derive_key();
            b.add_integrity(self.hash(), self.key.as_ref().unwrap()).unwrap();
        }
        b.finish()
    }
    fn next_seq(&mut self) -> Option<SequenceNumber> {
        let s = self.seq.as_mut()?;
        s.number += 1;
        Some(*s)
    }
    fn signed(&mut self, typ: u16, txid: TransactionId, attrs: &[(u16, Vec<u8>)], realm: bool) -> Vec<u8> {
        let mut b = Builder::new(typ, txid, self.padded);
        b.add(attr::USERNAME, &self.username).unwrap();
        for (t, v) in attrs {
            b.add(*t, v).unwrap();
        }
        if let Some(s) = self.next_seq() {
            b.add(attr::MS_SEQUENCE_NUMBER, &s.encode()).unwrap();
        }
        if realm {
            b.add(attr::REALM, REALM.as_bytes()).unwrap();
        }
        b.add_integrity(self.hash(), self.key.as_ref().unwrap()).unwrap();
        b.finish()
    }
    fn send(&mut self, peer: SocketAddr, data: &[u8]) -> Vec<u8> {
        let txid = self.txid();
        self.signed(
            types::SEND_REQUEST,
            txid,
            &[(attr::DESTINATION_ADDRESS, addr(peer)), (attr::DATA, data.to_vec())],
            true,
        )
    }
    fn set_active(&mut self, txid: TransactionId, peer: Option<SocketAddr>) -> Vec<u8> {
        let attrs: Vec<(u16, Vec<u8>)> = peer.map(|p| (attr::DESTINATION_ADDRESS, addr(p))).into_iter().collect();
        self.signed(types::SET_ACTIVE_DESTINATION_REQUEST, txid, &attrs, false)
    }
}

fn addr(a: SocketAddr) -> Vec<u8> {
    let mut v = vec![0u8; msturn::address_len(&a)];
    msturn::write_address(a, &mut v);
    v
}

fn decode(bytes: &[u8]) -> Message<'_> {
    Message::decode(bytes).expect("the relay sent a valid MS-TURN message")
}

fn code(bytes: &[u8]) -> Option<u16> {
    decode(bytes).error_code().map(|c| c.unwrap().0)
}

/// Feed one message; the answers to that 5-tuple.
fn feed(h: &mut Harness, c: &MsClient, bytes: &[u8]) -> Vec<Vec<u8>> {
    h.feed(&c.tuple, bytes).into_iter().map(|r| r.0).collect()
}

fn one(h: &mut Harness, c: &MsClient, bytes: &[u8]) -> Vec<u8> {
    let mut r = feed(h, c, bytes);
    assert_eq!(r.len(), 1, "expected one answer");
    r.remove(0)
}

/// Allocate through the 401; returns the relayed address.
fn allocated(h: &mut Harness, c: &mut MsClient) -> SocketAddr {
    let t = c.txid();
    let req = c.allocate(t, &[]);
    let r = one(h, c, &req);
    assert_eq!(code(&r), Some(401));
    c.nonce = decode(&r).get(attr::NONCE).map(<[u8]>::to_vec);
    let t = c.txid();
    let req = c.allocate(t, &[]);
    let r = one(h, c, &req);
    let d = decode(&r);
    assert_eq!(d.msg_type(), types::ALLOCATE_RESPONSE, "code {:?}", code(&r));
    assert!(d.verify(c.key.as_ref().unwrap()), "the response is signed with the client's key");
    c.seq = d.sequence_number().map(|s| s.unwrap());
    d.get_address(attr::MAPPED_ADDRESS).unwrap().unwrap()
}

#[test]
fn libnice_first_allocate_gets_a_401_in_ms_numbering() {
    let mut cfg = ms_config();
    cfg.ms_public_address = Some("198.51.100.1:3478".parse().unwrap());
    let mut h = Harness::new(cfg);
    let c = MsClient::new(b"x", b"y");
    let r = one(&mut h, &c, &vector("libnice-oc2007r2-udp-allocate-1.hex"));
    let d = decode(&r);
    assert_eq!(d.msg_type(), types::ALLOCATE_ERROR);
    assert_eq!(&d.transaction_id().0[..], &vector("libnice-oc2007r2-udp-allocate-1.hex")[4..20]);
    assert_eq!(code(&r), Some(401));
    assert_eq!(d.get(attr::REALM), Some(REALM.as_bytes()), "REALM is 0x0015");
    assert!(d.get(attr::NONCE).unwrap().starts_with(b"v1"), "NONCE is 0x0014");
    assert_eq!(d.get_address(attr::ALTERNATE_SERVER), Some(Ok(c.tuple.server)), "UDP 401 names the public address");
    assert_eq!(d.integrity(), None);
    assert!(!d.padded());
    assert_eq!(h.relay.counters().ms.requests, 1);
    assert_eq!(h.relay.counters().auth_challenges, 1);
    // Over TCP, no ALTERNATE-SERVER.
    let t = MsClient::on("192.0.2.10:5001", Transport::Tcp, b"x", b"y");
    let framed = vector("libnice-oc2007-tcp-allocate-1-framed-02.hex");
    let r = one(&mut h, &t, &framed[4..]);
    assert_eq!(code(&r), Some(401));
    assert_eq!(decode(&r).get(attr::ALTERNATE_SERVER), None);
}

#[test]
fn libnice_authenticated_allocate_with_a_foreign_nonce_gets_438() {
    let mut h = Harness::new(ms_config());
    let c = MsClient::new(b"x", b"y");
    for file in ["libnice-oc2007-udp-allocate-2-auth.hex", "libnice-oc2007r2-udp-allocate-2-auth.hex"] {
        let r = one(&mut h, &c, &vector(file));
        assert_eq!(code(&r), Some(438), "the listener's nonce is not ours");
        assert!(decode(&r).get(attr::NONCE).is_some_and(|n| n.starts_with(b"v1")));
        assert_eq!(decode(&r).get(attr::REALM), Some(REALM.as_bytes()));
    }
}

#[test]
fn mras_allocate_send_and_data_indication() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    let relayed = allocated(&mut h, &mut c);
    assert_eq!(relayed.ip(), std::net::IpAddr::V4(RELAY_V4));
    assert_eq!(h.relay.counters().ms.allocations_active, 1);
    let info: Vec<_> = h.relay.allocations().map(|a| a.username.to_string()).collect();
    assert!(info[0].starts_with("mras:"), "{info:?}");

    // Send: forwarded, never answered, permission installed.
    let peer: SocketAddr = PEER.parse().unwrap();
    let send = c.send(peer, b"hello peer");
    assert!(feed(&mut h, &c, &send).is_empty(), "Send is never answered");
    let (from, to, data) = h.to_peers.last().unwrap().clone();
    assert_eq!((from, to, &data[..]), (relayed, peer, &b"hello peer"[..]));
    assert_eq!(h.relay.counters().ms.send_requests, 1);

    // Peer data: a Data Indication with REMOTE-ADDRESS and DATA, no MI.
    let mut out = [0u8; 256];
    let t = h.relay.relay_peer_datagram(h.now, relayed, peer, b"hello client", &mut out).unwrap();
    assert_eq!(t.tuple, c.tuple);
    let d = decode(&out[..t.len]);
    assert_eq!(d.msg_type(), types::DATA_INDICATION);
    assert_eq!(d.get_address(attr::REMOTE_ADDRESS), Some(Ok(peer)));
    assert_eq!(d.get(attr::DATA), Some(&b"hello client"[..]));
    assert_eq!(d.integrity(), None);
    // A peer without permission is dropped.
    let other: SocketAddr = PEER2.parse().unwrap();
    assert_eq!(h.relay.relay_peer_datagram(h.now, relayed, other, b"x", &mut out), Err(DropReason::NoPermission));

    // The same Send again: a replay by its sequence number.
    assert_eq!(h.relay.relay_client_packet(h.now, &c.tuple, &send), Err(NotForwarded::Dropped(DropReason::Replay)));
    assert_eq!(h.relay.counters().ms.replays, 1);
    // A Send signed with another key is dropped.
    let good_key = c.key.clone();
    c.key = Some(vec![0; 16]);
    let forged = c.send(peer, b"forged");
    assert_eq!(
        h.relay.relay_client_packet(h.now, &c.tuple, &forged),
        Err(NotForwarded::Dropped(DropReason::Unauthenticated))
    );
    c.key = good_key;
    // Out-of-order but unseen numbers are accepted (UDP reorders).
    let a = c.send(peer, b"a");
    let b = c.send(peer, b"b");
    assert!(h.relay.relay_client_packet(h.now, &c.tuple, &b).is_ok());
    assert!(h.relay.relay_client_packet(h.now, &c.tuple, &a).is_ok());
    // Without REALM (as Microsoft clients send it) it verifies too.
    let t = c.txid();
    let no_realm = c.signed(
        types::SEND_REQUEST,
        t,
        &[(attr::DESTINATION_ADDRESS, addr(peer)), (attr::DATA, b"nr".to_vec())],
        false,
    );
    let fwd = h.relay.relay_client_packet(h.now, &c.tuple, &no_realm).unwrap();
    assert_eq!(&no_realm[fwd.payload], b"nr");
}

#[test]
fn set_active_destination_then_raw_data_both_ways() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    let relayed = allocated(&mut h, &mut c);
    let peer: SocketAddr = PEER.parse().unwrap();
    let other: SocketAddr = PEER2.parse().unwrap();
    // Raw data before an active destination: dropped.
    assert_eq!(
        h.relay.relay_client_packet(h.now, &c.tuple, &[0x80; 40]),
        Err(NotForwarded::Dropped(DropReason::NoActiveDestination))
    );
    let t = c.txid();
    let sad = c.set_active(t, Some(peer));
    let r = one(&mut h, &c, &sad);
    let d = decode(&r);
    assert_eq!(d.msg_type(), types::SET_ACTIVE_DESTINATION_RESPONSE);
    assert_eq!(d.transaction_id(), t);
    assert!(d.verify(c.key.as_ref().unwrap()));
    // Retransmission: the same bytes.
    assert_eq!(one(&mut h, &c, &sad), r);
    assert_eq!(h.relay.counters().ms.retransmissions, 1);

    // Raw RTP from the client goes to the peer unchanged; so does an RFC 5389 STUN check.
    let rtp = [0x80u8; 172];
    let t = h.relay.relay_client_packet(h.now, &c.tuple, &rtp).unwrap();
    assert_eq!((t.relayed, t.peer, t.payload.clone()), (relayed, peer, 0..172));
    let mut stun = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[9; 12]);
    assert_eq!(h.relay.relay_client_packet(h.now, &c.tuple, &stun).unwrap().payload, 0..20);
    // From the active destination: raw; from another permitted peer: a Data Indication.
    let mut out = [0u8; 256];
    let back = h.relay.relay_peer_datagram(h.now, relayed, peer, &rtp, &mut out).unwrap();
    assert_eq!(&out[..back.len], &rtp[..]);
    let send = c.send(other, b"perm");
    assert!(h.relay.relay_client_packet(h.now, &c.tuple, &send).is_ok());
    let di = h.relay.relay_peer_datagram(h.now, relayed, other, b"x", &mut out).unwrap();
    assert_eq!(decode(&out[..di.len]).msg_type(), types::DATA_INDICATION);
    let ms = &h.relay.counters().ms;
    assert_eq!((ms.raw_client_to_peer, ms.raw_peer_to_client, ms.active_destinations), (2, 1, 1));

    // A SAD without DESTINATION-ADDRESS clears it.
    let t = c.txid();
    let clear = c.set_active(t, None);
    assert_eq!(decode(&one(&mut h, &c, &clear)).msg_type(), types::SET_ACTIVE_DESTINATION_RESPONSE);
    assert_eq!(
        h.relay.relay_client_packet(h.now, &c.tuple, &rtp),
        Err(NotForwarded::Dropped(DropReason::NoActiveDestination))
    );
    // A SAD to a refused peer: 403.
    let t = c.txid();
    let refused = c.set_active(t, Some("10.0.0.1:5000".parse().unwrap()));
    assert_eq!(code(&one(&mut h, &c, &refused)), Some(403));
    // A SAD with a bad MI: 431, unsigned.
    c.key = Some(vec![1; 16]);
    let t = c.txid();
    let bad = c.set_active(t, Some(peer));
    let r = one(&mut h, &c, &bad);
    assert_eq!((code(&r), decode(&r).integrity()), (Some(431), None));
}

#[test]
fn set_active_destination_without_allocation_is_437() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    c.key = Some(vec![0; 16]);
    let t = c.txid();
    let sad = c.set_active(t, Some(PEER.parse().unwrap()));
    assert_eq!(code(&one(&mut h, &c, &sad)), Some(437));
}

#[test]
fn retransmitted_allocate_refresh_and_delete() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    let t = c.txid();
    let req = c.allocate(t, &[]);
    let r = one(&mut h, &c, &req);
    c.nonce = decode(&r).get(attr::NONCE).map(<[u8]>::to_vec);
    let t = c.txid();
    let req = c.allocate(t, &[(attr::LIFETIME, 1200u32.to_be_bytes().to_vec())]);
    let first = one(&mut h, &c, &req);
    assert_eq!(decode(&first).get_u32(attr::LIFETIME), Some(Ok(1200)));
    assert_eq!(one(&mut h, &c, &req), first, "a retransmission gets the same answer");
    assert_eq!(h.relay.allocation_count(), 1);
    // Refresh: a new Allocate on the same 5-tuple.
    h.advance(Duration::from_secs(500));
    let t = c.txid();
    let refresh = c.allocate(t, &[(attr::LIFETIME, 900u32.to_be_bytes().to_vec())]);
    let r = one(&mut h, &c, &refresh);
    assert_eq!(decode(&r).msg_type(), types::ALLOCATE_RESPONSE);
    assert_eq!(decode(&r).get_u32(attr::LIFETIME), Some(Ok(900)));
    h.advance(Duration::from_secs(800));
    assert_eq!(h.relay.allocation_count(), 1, "refreshed past its first lifetime");
    // LIFETIME 0 deletes (after a 438: the nonce is older than its 600 s).
    let t = c.txid();
    let stale = c.allocate(t, &[(attr::LIFETIME, 0u32.to_be_bytes().to_vec())]);
    let r = one(&mut h, &c, &stale);
    assert_eq!(code(&r), Some(438));
    c.nonce = decode(&r).get(attr::NONCE).map(<[u8]>::to_vec);
    let t = c.txid();
    let del = c.allocate(t, &[(attr::LIFETIME, 0u32.to_be_bytes().to_vec())]);
    let r = one(&mut h, &c, &del);
    assert_eq!(decode(&r).get_u32(attr::LIFETIME), Some(Ok(0)));
    assert_eq!(h.relay.allocation_count(), 0);
    assert_eq!(h.relay.counters().ms.allocations_active, 0);
}

#[test]
fn allocation_expires_without_refresh() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    allocated(&mut h, &mut c);
    h.advance(Duration::from_secs(601));
    assert_eq!(h.relay.allocation_count(), 0);
    assert_eq!(h.relay.counters().ms.allocations_active, 0);
}

#[test]
fn authentication_errors() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    let t = c.txid();
    let req = c.allocate(t, &[]);
    let r = one(&mut h, &c, &req);
    let nonce = decode(&r).get(attr::NONCE).unwrap().to_vec();
    let signed = |c: &mut MsClient, skip: u16, key: &[u8]| {
        let t = c.txid();
        let mut b = Builder::new(types::ALLOCATE_REQUEST, t, false);
        for (typ, v) in [(attr::REALM, REALM.as_bytes()), (attr::NONCE, &nonce[..]), (attr::USERNAME, &c.username[..])]
        {
            if typ != skip {
                b.add(typ, v).unwrap();
            }
        }
        b.add_integrity(Hash::Sha1, key).unwrap();
        b.finish()
    };
    let key = msturn::key_v1(&c.username, REALM.as_bytes(), &c.password);
    for (skip, want) in [(attr::USERNAME, 432), (attr::REALM, 434), (attr::NONCE, 435)] {
        let req = signed(&mut c, skip, &key);
        assert_eq!(code(&one(&mut h, &c, &req)), Some(want));
    }
    let req = signed(&mut c, 0, &[9; 16]);
    assert_eq!(code(&one(&mut h, &c, &req)), Some(431), "wrong MI");
    // An expired token: 436.
    let old = MrasKeys::derive(MRAS_SECRET).mint("sip:alice@vienna.test", UNIX0 - 10);
    let mut e = MsClient::new(&old.username, &old.password);
    e.nonce = Some(nonce.clone());
    let t = e.txid();
    let req = e.allocate(t, &[]);
    assert_eq!(code(&one(&mut h, &e, &req)), Some(436));
    // A token of another service: 436.
    let other = MrasKeys::derive(b"other").mint("sip:alice@vienna.test", UNIX0 + 100);
    let mut o = MsClient::new(&other.username, &other.password);
    o.nonce = Some(nonce.clone());
    let t = o.txid();
    let req = o.allocate(t, &[]);
    assert_eq!(code(&one(&mut h, &o, &req)), Some(436));
    // An expired nonce: 438 with a new one.
    h.advance(Duration::from_secs(601));
    c.nonce = Some(nonce);
    let t = c.txid();
    let req = c.allocate(t, &[]);
    let r = one(&mut h, &c, &req);
    assert_eq!(code(&r), Some(438));
    assert!(h.relay.counters().ms.auth_failures >= 3);
    assert_eq!(h.relay.allocation_count(), 0);
}

#[test]
fn ms_version_3_uses_the_sha256_key() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    c.version = 3;
    let relayed = allocated(&mut h, &mut c);
    assert_eq!(c.key.as_ref().unwrap().len(), 32);
    let send = c.send(PEER.parse().unwrap(), b"v3");
    let t = h.relay.relay_client_packet(h.now, &c.tuple, &send).unwrap();
    assert_eq!(t.relayed, relayed);
}

#[test]
fn rest_and_store_credentials_over_ms_turn() {
    let mut h = Harness::new(ms_config());
    let user = format!("{}:carol", UNIX0 + 600);
    let pass = rest_password(b"rest-secret", &user);
    let mut c = MsClient::new(user.as_bytes(), pass.as_bytes());
    allocated(&mut h, &mut c);
    let mut s = MsClient::on("192.0.2.11:5000", Transport::Udp, b"alice", b"alice-pw");
    allocated(&mut h, &mut s);
    assert_eq!(h.relay.allocation_count(), 2);
    let mut wrong = MsClient::on("192.0.2.12:5000", Transport::Udp, b"alice", b"nope");
    let t = wrong.txid();
    let req = wrong.allocate(t, &[]);
    let r = one(&mut h, &wrong, &req);
    wrong.nonce = decode(&r).get(attr::NONCE).map(<[u8]>::to_vec);
    let t = wrong.txid();
    let req = wrong.allocate(t, &[]);
    assert_eq!(code(&one(&mut h, &wrong, &req)), Some(431));
}

#[test]
fn padded_clients_get_padded_answers() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    c.padded = true;
    let t = c.txid();
    // A 5-byte value forces padding to show.
    let req = c.allocate(t, &[(attr::MS_ALTERNATE_HOST_NAME, b"abcde".to_vec())]);
    let r = one(&mut h, &c, &req);
    let d = decode(&r);
    assert!(d.padded(), "answered in the client's form");
    assert_eq!(code(&r), Some(401));
    c.nonce = d.get(attr::NONCE).map(<[u8]>::to_vec);
    let t = c.txid();
    let req = c.allocate(t, &[(attr::MS_ALTERNATE_HOST_NAME, b"abcde".to_vec())]);
    assert!(decode(&req).padded());
    let r = one(&mut h, &c, &req);
    assert_eq!(decode(&r).msg_type(), types::ALLOCATE_RESPONSE);
}

#[test]
fn unknown_comprehension_required_attribute_is_420() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    let t = c.txid();
    let req = c.allocate(t, &[]);
    let r = one(&mut h, &c, &req);
    c.nonce = decode(&r).get(attr::NONCE).map(<[u8]>::to_vec);
    let t = c.txid();
    let req = c.allocate(t, &[(0x0031, vec![1, 2, 3, 4]), (0x8999, vec![1])]);
    let r = one(&mut h, &c, &req);
    assert_eq!(code(&r), Some(420));
    assert_eq!(decode(&r).get(attr::UNKNOWN_ATTRIBUTES), Some(&[0x00, 0x31][..]));
}

#[test]
fn bandwidth_check_commit_update_enforced_by_the_cap() {
    let mut cfg = ms_config();
    cfg.bandwidth_limit = Some(16_000); // 128 kbps both directions
    let mut h = Harness::new(cfg);
    let mut c = MsClient::mras(UNIX0);
    let t = c.txid();
    let req = c.allocate(t, &[]);
    let r = one(&mut h, &c, &req);
    c.nonce = decode(&r).get(attr::NONCE).map(<[u8]>::to_vec);
    let amount = |v: [u32; 4]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
    let op = |o: u32| o.to_be_bytes().to_vec();
    // Check, too much: V = 0, amounts cut to the cap.
    let t = c.txid();
    let req = c.allocate(
        t,
        &[
            (attr::BANDWIDTH_ADMISSION_CONTROL_MESSAGE, op(1)),
            (attr::BANDWIDTH_RESERVATION_AMOUNT, amount([100, 200, 100, 200])),
            (attr::REMOTE_SITE_ADDRESS, vec![0, 1, 0, 0, 1, 2, 3, 4]),
        ],
    );
    let r = one(&mut h, &c, &req);
    let d = decode(&r);
    assert_eq!(d.msg_type(), types::ALLOCATE_RESPONSE);
    let site = d.get(attr::REMOTE_SITE_ADDRESS_RESPONSE).unwrap();
    assert_eq!(site[0] & 0x80, 0, "not valid: 200 kbps minimum above the 128 kbps cap");
    assert_eq!(&site[4..], &[0, 0, 0, 128, 0, 0, 0, 128]);
    assert!(d.get(attr::LOCAL_SITE_ADDRESS_RESPONSE).is_some());
    assert_eq!(d.get_u32(attr::BANDWIDTH), Some(Ok(128)));
    c.seq = d.sequence_number().map(|s| s.unwrap());
    // Commit 16 + 16 kbps: valid, and the allocation's cap becomes 32 kbps = 4000 bytes/s.
    let t = c.txid();
    let req = c.allocate(
        t,
        &[
            (attr::BANDWIDTH_ADMISSION_CONTROL_MESSAGE, op(2)),
            (attr::BANDWIDTH_RESERVATION_IDENTIFIER, vec![7; 16]),
            (attr::BANDWIDTH_RESERVATION_AMOUNT, amount([8, 16, 8, 16])),
        ],
    );
    let r = one(&mut h, &c, &req);
    let d = decode(&r);
    assert_eq!(d.get(attr::LOCAL_SITE_ADDRESS_RESPONSE).unwrap()[0] & 0x80, 0x80);
    assert_eq!(d.get_u32(attr::BANDWIDTH), Some(Ok(32)));
    let peer: SocketAddr = PEER.parse().unwrap();
    let mut passed = 0;
    for _ in 0..10 {
        let s = c.send(peer, &[0u8; 1000]);
        if h.relay.relay_client_packet(h.now, &c.tuple, &s).is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, 4, "a 4000-byte burst at 4000 bytes/s");
    assert!(h.relay.counters().drops(DropReason::BandwidthExceeded) >= 6);
    // Update to zero: cancelled, back to the relay's cap.
    let t = c.txid();
    let req = c.allocate(
        t,
        &[
            (attr::BANDWIDTH_ADMISSION_CONTROL_MESSAGE, op(3)),
            (attr::BANDWIDTH_RESERVATION_IDENTIFIER, vec![7; 16]),
            (attr::BANDWIDTH_RESERVATION_AMOUNT, amount([0; 4])),
        ],
    );
    assert_eq!(decode(&one(&mut h, &c, &req)).get_u32(attr::BANDWIDTH), Some(Ok(128)));
    let ms = &h.relay.counters().ms;
    assert_eq!((ms.bandwidth_checks, ms.bandwidth_commits, ms.bandwidth_updates), (1, 1, 1));
}

#[test]
fn both_dialects_side_by_side_with_counters() {
    let mut h = Harness::new(ms_config());
    let mut c = MsClient::mras(UNIX0);
    allocated(&mut h, &mut c);
    let mut std_client = Client::new("192.0.2.20:6000", "alice", "alice-pw");
    let r = h.call_auth(
        &mut std_client,
        vienna_stun::Method::ALLOCATE,
        &[vienna_stun::attributes::Attribute::RequestedTransport(17)],
    );
    assert!(r.is_success());
    assert_eq!(h.relay.allocation_count(), 2);
    let counters = h.relay.counters();
    assert_eq!(counters.allocations_active, 2);
    assert_eq!(counters.ms.allocations_active, 1);
    assert_eq!(counters.ms.allocations_created, 1);
    // MS-TURN disabled: MS-TURN messages are dropped.
    let mut cfg = ms_config();
    cfg.msturn = false;
    let mut off = Harness::new(cfg);
    let c2 = MsClient::new(b"x", b"y");
    assert!(feed(&mut off, &c2, &vector("libnice-oc2007r2-udp-allocate-1.hex")).is_empty());
}

proptest! {
    /// Mutated MS-TURN messages (valid ones with bytes flipped, cut or appended) never panic the
    /// core, on the control path and the hot path.
    #[test]
    fn mutated_messages_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6), cut in 0usize..220, tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut h = Harness::new(ms_config());
        let mut c = MsClient::mras(UNIX0);
        allocated(&mut h, &mut c);
        let t = c.txid();
        let peer: SocketAddr = PEER.parse().unwrap();
        for base in [c.send(peer, b"data"), c.set_active(t, Some(peer)), c.allocate(t, &[]), vector("libnice-oc2007r2-udp-allocate-2-auth.hex")] {
            let mut m = base.clone();
            for (at, v) in &flips {
                if let Some(b) = m.get_mut(*at) { *b ^= *v; }
            }
            m.truncate(cut.max(1));
            m.extend_from_slice(&tail);
            let _ = h.relay.relay_client_packet(h.now, &c.tuple, &m);
            let _ = h.feed(&c.tuple, &m);
        }
    }
}

#[test]
fn allocations_over_tcp_ask_for_a_tcp_relayed_address() {
    let mut h = Harness::new(ms_config());
    let mut u = MsClient::mras(UNIX0);
    allocated(&mut h, &mut u);
    let mut t = MsClient::mras(UNIX0);
    t.tuple.transport = Transport::Tcp;
    t.tuple.client = "192.0.2.10:5001".parse().unwrap();
    allocated(&mut h, &mut t);
    let flags: Vec<bool> = h.binds.iter().map(|b| b.tcp).collect();
    assert_eq!(flags, [false, true], "UDP allocation, then TCP allocation");
    // Standard TURN over TCP keeps UDP relaying (RFC 6062 is not implemented).
    let mut s = Client::with_transport("192.0.2.30:7000", "alice", "alice-pw", Transport::Tcp);
    let r = h.call_auth(
        &mut s,
        vienna_stun::Method::ALLOCATE,
        &[vienna_stun::attributes::Attribute::RequestedTransport(17)],
    );
    assert!(r.is_success());
    assert!(!h.binds.last().unwrap().tcp);
    // A held TCP peer: no permission until the client sends to it.
    let relayed = h.relay.allocations().find(|a| a.tuple == t.tuple).and_then(|a| a.relayed_v4).unwrap();
    let peer: SocketAddr = PEER.parse().unwrap();
    assert!(!h.relay.peer_permitted(h.now, relayed, peer));
    let send = t.send(peer, b"x");
    assert!(h.relay.relay_client_packet(h.now, &t.tuple, &send).is_ok());
    assert!(h.relay.peer_permitted(h.now, relayed, peer));
}

#[test]
fn libnice_against_vienna_capture_is_unpadded_and_verifies() {
    // A real exchange between libnice 0.1.21 (OC2007R2) and this relay, captured by a UDP forwarder.
    let header = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testvectors/msturn/vienna-libnice-oc2007r2-udp-3-allocate-auth.hex"),
    )
    .unwrap();
    let secret = header.split("mras.secret \"").nth(1).and_then(|r| r.split('"').next()).unwrap();
    let keys = MrasKeys::derive(secret.as_bytes());
    let challenge = vector("vienna-libnice-oc2007r2-udp-2-401.hex");
    let d = decode(&challenge);
    assert_eq!(d.get(attr::NONCE).map(<[u8]>::len), Some(42), "a 42-byte nonce, not padded");
    assert!(!d.padded());
    let auth = vector("vienna-libnice-oc2007r2-udp-3-allocate-auth.hex");
    let m = decode(&auth);
    assert!(!m.padded(), "libnice echoed the 42-byte nonce and 9-byte realm unpadded");
    assert_eq!(m.get(attr::NONCE), d.get(attr::NONCE));
    assert_eq!(m.get(attr::REALM), Some(&b"localhost"[..]));
    let username = m.get(attr::USERNAME).unwrap();
    let token = keys.validate(username, 0).expect("the token libnice sent is Vienna's");
    let key = msturn::key_v1(username, b"localhost", &token.password);
    assert!(m.verify(&key), "libnice's MI over the unpadded message, padded to 64 bytes for the HMAC");
    let ok = vector("vienna-libnice-oc2007r2-udp-4-allocate-response.hex");
    let r = decode(&ok);
    assert_eq!(r.msg_type(), types::ALLOCATE_RESPONSE);
    assert!(r.verify(&key));
    assert!(r.sequence_number().is_some());
}
