//! Message-flow tests of the relay core with a fake clock (RFC 8656 scenarios).

mod harness;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use harness::*;
use proptest::prelude::*;
use vienna_stun::attributes::{AddressFamily, Attribute};
use vienna_stun::{ChannelData, Class, Message, Method};
use vienna_turn::credentials::rest_password;
use vienna_turn::{AuthFailure, BindFailure, DropReason, Event, Quota, StaticUsers, Transport};

const PEER: &str = "203.0.113.5:40000";
const PEER2: &str = "203.0.113.6:40000";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn alice() -> Client {
    Client::new("192.0.2.10:5000", "alice", "alice-pw")
}

fn allocated(h: &mut Harness, c: &mut Client) -> SocketAddr {
    let r = h.allocate(c, &[]);
    assert!(r.is_success(), "allocate failed: {:?}", r.code());
    r.relayed()[0]
}

#[test]
fn binding_needs_no_auth() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let r = h.call(&mut c, Method::BINDING, &[]);
    assert!(r.is_success());
    assert_eq!(r.mapped(), Some(c.tuple.client));
    assert_eq!(r.software().as_deref(), Some("Vienna test"));
    assert!(!r.has_integrity());
}

#[test]
fn allocate_flow_401_then_success() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let r = h.call(&mut c, Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
    assert_eq!(r.code(), Some(401));
    assert_eq!(r.realm().as_deref(), Some(REALM));
    assert!(r.nonce().is_some());
    assert_eq!(h.relay.counters().auth_challenges, 1);
    c.nonce = r.nonce();
    let r = h.call(&mut c, Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
    assert!(r.is_success());
    let relayed = r.relayed();
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].ip(), IpAddr::V4(RELAY_V4));
    assert!(relayed[0].port() >= 49152);
    assert_eq!(r.mapped(), Some(c.tuple.client));
    assert_eq!(r.lifetime(), Some(600));
    assert!(r.integrity_ok(&c.key));
    assert_eq!(h.binds.len(), 1);
    assert_eq!(h.binds[0].addr, relayed[0]);
    assert!(!h.binds[0].dont_fragment);
    assert_eq!(h.relay.allocation_count(), 1);
    assert_eq!(h.relay.counters().allocations_active, 1);
    assert!(h.has_event(|e| matches!(e, Event::AllocationCreated { username, .. } if username == "alice")));
}

#[test]
fn retransmitted_allocate_gets_same_answer() {
    let mut h = Harness::new(config());
    let mut c = alice();
    h.allocate(&mut c, &[]);
    let (_, first) = h.to_clients.last().cloned().unwrap();
    let txid = Message::decode(&first).unwrap().transaction_id();
    let again = c.request(Method::ALLOCATE, &[Attribute::RequestedTransport(17)], txid);
    let r = h.feed(&c.tuple, &again);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, first);
    assert_eq!(h.binds.len(), 1, "no second relayed socket");
    // A new transaction on the same 5-tuple is a mismatch.
    let r = h.allocate(&mut c, &[]);
    assert_eq!(r.code(), Some(437));
    assert!(r.integrity_ok(&c.key));
}

#[test]
fn refresh_and_delete() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    assert_eq!(h.refresh(&mut c, Some(1200)).lifetime(), Some(1200));
    assert_eq!(h.refresh(&mut c, Some(999_999)).lifetime(), Some(3600));
    assert_eq!(h.refresh(&mut c, None).lifetime(), Some(600));
    let r = h.refresh(&mut c, Some(0));
    assert!(r.is_success());
    assert_eq!(r.lifetime(), Some(0));
    assert!(h.released.contains(&relayed));
    assert!(h.has_event(|e| matches!(e, Event::AllocationDeleted { .. })));
    assert_eq!(h.relay.allocation_count(), 0);
    assert_eq!(h.refresh(&mut c, None).code(), Some(437));
}

#[test]
fn allocation_expires_after_lifetime() {
    let mut cfg = config();
    cfg.nonce_lifetime = secs(3600);
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    h.advance(secs(599));
    assert_eq!(h.relay.allocation_count(), 1);
    h.advance(secs(2));
    assert_eq!(h.relay.allocation_count(), 0);
    assert!(h.released.contains(&relayed));
    assert!(h.has_event(|e| matches!(e, Event::AllocationExpired { .. })));
    assert_eq!(h.relay.counters().allocations_expired, 1);
    assert_eq!(h.refresh(&mut c, None).code(), Some(437));
    // The port went back to the pool: the same client can allocate again.
    assert!(h.allocate(&mut c, &[]).is_success());
}

#[test]
fn tcp_disconnect_deletes_allocation() {
    let mut h = Harness::new(config());
    let mut c = Client::with_transport("192.0.2.10:5000", "alice", "alice-pw", Transport::Tls);
    let relayed = allocated(&mut h, &mut c);
    h.relay.client_disconnected(&c.tuple);
    h.drain();
    assert_eq!(h.relay.allocation_count(), 0);
    assert!(h.released.contains(&relayed));
    assert_eq!(h.relay.counters().allocations_active, 0);
}

#[test]
fn refresh_spam_does_not_grow_timers() {
    let mut h = Harness::new(config());
    let mut c = alice();
    allocated(&mut h, &mut c);
    let first = h.relay.poll_timeout();
    for _ in 0..100 {
        assert!(h.refresh(&mut c, Some(3600)).is_success());
    }
    assert_eq!(h.relay.poll_timeout(), first, "longer lifetimes reuse the scheduled timer");
    // Shortening schedules an earlier timer which expires the allocation on time.
    assert_eq!(h.refresh(&mut c, Some(30)).lifetime(), Some(30));
    h.advance(secs(31));
    assert_eq!(h.relay.allocation_count(), 0);
}

#[test]
fn refresh_extends_expiry() {
    let mut h = Harness::new(config());
    let mut c = alice();
    allocated(&mut h, &mut c);
    h.advance(secs(500));
    assert!(h.refresh(&mut c, None).is_success());
    h.advance(secs(500));
    assert_eq!(h.relay.allocation_count(), 1);
    h.advance(secs(101));
    assert_eq!(h.relay.allocation_count(), 0);
}

#[test]
fn permission_and_data_indication_then_expiry_at_300s() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    // No permission yet: dropped.
    assert!(h.peer_sends(relayed, PEER, b"early").is_none());
    assert_eq!(h.relay.counters().drops(DropReason::NoPermission), 1);
    assert!(h.create_permission(&mut c, PEER).is_success());
    // Send indication goes out, peer's answer comes back as a Data indication.
    let (from, to, data) = h.send_indication(&mut c, PEER, b"hello").unwrap();
    assert_eq!((from, to.to_string().as_str(), &data[..]), (relayed, PEER, &b"hello"[..]));
    let (tuple, bytes) = h.peer_sends(relayed, PEER, b"world").unwrap();
    assert_eq!(tuple, c.tuple);
    let m = Message::decode(&bytes).unwrap();
    assert_eq!((m.method(), m.class()), (Method::DATA, Class::Indication));
    let attrs: Vec<_> = m.attributes().map(|a| a.unwrap()).collect();
    assert_eq!(attrs, vec![Attribute::XorPeerAddress(PEER.parse().unwrap()), Attribute::Data(b"world")]);
    // Permission covers the IP, any port.
    assert!(h.peer_sends(relayed, "203.0.113.5:1", b"x").is_some());
    // Another IP: no.
    assert!(h.peer_sends(relayed, PEER2, b"x").is_none());
    h.advance(secs(299));
    assert!(h.peer_sends(relayed, PEER, b"still").is_some());
    h.advance(secs(2));
    assert!(h.peer_sends(relayed, PEER, b"late").is_none());
    assert!(h.send_indication(&mut c, PEER, b"late").is_none());
    assert_eq!(h.relay.counters().drops(DropReason::NoPermission), 4);
    assert_eq!(h.relay.counters().client_to_peer_packets, 1);
}

#[test]
fn channel_bind_forwarding_both_ways() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    assert!(h.channel_bind(&mut c, 0x4000, PEER).is_success());
    let (from, to, data) = h.channel_data(&c, 0x4000, b"to-peer").unwrap();
    assert_eq!((from, to, &data[..]), (relayed, PEER.parse().unwrap(), &b"to-peer"[..]));
    let (tuple, bytes) = h.peer_sends(relayed, PEER, b"to-client").unwrap();
    assert_eq!(tuple, c.tuple);
    assert_eq!(ChannelData::parse(&bytes).unwrap(), ChannelData { channel: 0x4000, data: b"to-client" });
    assert_eq!(bytes.len(), 4 + 9, "no padding on UDP");
    // Unbound channel: dropped.
    assert!(h.channel_data(&c, 0x4001, b"x").is_none());
    assert_eq!(h.relay.counters().drops(DropReason::NoChannel), 1);
    let k = h.relay.counters();
    assert_eq!((k.client_to_peer_packets, k.client_to_peer_bytes), (1, 7));
    assert_eq!((k.peer_to_client_packets, k.peer_to_client_bytes), (1, 9));
}

#[test]
fn zero_copy_hot_path() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    assert!(h.channel_bind(&mut c, 0x4abc, PEER).is_success());
    let mut frame = [0u8; 64];
    let n = vienna_stun::channel_data::write(0x4abc, b"payload", &mut frame, false).unwrap();
    let t = h.relay.relay_channel_data(h.now, &c.tuple, &frame[..n]).unwrap();
    assert_eq!(&frame[t.payload.clone()], b"payload");
    assert_eq!((t.relayed, t.peer), (relayed, PEER.parse().unwrap()));
    let mut out = [0u8; 64];
    let t = h.relay.relay_peer_datagram(h.now, relayed, PEER.parse().unwrap(), b"back", &mut out).unwrap();
    assert_eq!(t.tuple, c.tuple);
    assert_eq!(&out[..t.len], &[0x4a, 0xbc, 0, 4, b'b', b'a', b'c', b'k']);
    // Too-small buffer is a counted drop, not a panic.
    let e = h.relay.relay_peer_datagram(h.now, relayed, PEER.parse().unwrap(), b"back", &mut out[..5]);
    assert_eq!(e, Err(DropReason::BufferTooSmall));
    // Unknown relayed address / 5-tuple.
    let e = h.relay.relay_peer_datagram(h.now, PEER2.parse().unwrap(), PEER.parse().unwrap(), b"x", &mut out);
    assert_eq!(e, Err(DropReason::NoAllocation));
    let other = Client::new("192.0.2.99:1", "bob", "bob-pw");
    assert_eq!(h.relay.relay_channel_data(h.now, &other.tuple, &frame[..n]), Err(DropReason::NoAllocation));
    assert_eq!(h.relay.relay_channel_data(h.now, &c.tuple, &frame[..3]), Err(DropReason::Malformed));
}

#[test]
fn tcp_channel_data_is_padded() {
    let mut h = Harness::new(config());
    let mut c = Client::with_transport("192.0.2.10:5000", "alice", "alice-pw", Transport::Tcp);
    let relayed = allocated(&mut h, &mut c);
    assert!(h.channel_bind(&mut c, 0x4001, PEER).is_success());
    let (_, bytes) = h.peer_sends(relayed, PEER, b"abcde").unwrap();
    assert_eq!(bytes.len(), 12);
    assert_eq!(vienna_stun::frame_len(&bytes), Ok(Some(12)));
    // Padded ChannelData from a TCP client is accepted too.
    assert_eq!(h.channel_data(&c, 0x4001, b"abcde").unwrap().2, b"abcde");
}

#[test]
fn channel_rebinding_rules() {
    let mut h = Harness::new(config());
    let mut c = alice();
    allocated(&mut h, &mut c);
    assert!(h.channel_bind(&mut c, 0x4000, PEER).is_success());
    // Same binding again refreshes it.
    assert!(h.channel_bind(&mut c, 0x4000, PEER).is_success());
    // Same channel to another peer: 400.
    assert_eq!(h.channel_bind(&mut c, 0x4000, PEER2).code(), Some(400));
    // Same peer on another channel: 400.
    assert_eq!(h.channel_bind(&mut c, 0x4001, PEER).code(), Some(400));
    // Invalid channel numbers: 400.
    assert_eq!(h.channel_bind(&mut c, 0x3fff, PEER2).code(), Some(400));
    assert_eq!(h.channel_bind(&mut c, 0x8000, PEER2).code(), Some(400));
    // Missing peer: 400.
    assert_eq!(h.call(&mut c, Method::CHANNEL_BIND, &[Attribute::ChannelNumber(0x4002)]).code(), Some(400));
    assert!(h.channel_bind(&mut c, 0x4001, PEER2).is_success());
    assert_eq!(h.relay.counters().errors(400), 5);
}

#[test]
fn channel_binding_expires_at_600s() {
    let mut cfg = config();
    cfg.nonce_lifetime = secs(3600);
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    assert!(h.refresh(&mut c, Some(3600)).is_success());
    assert!(h.channel_bind(&mut c, 0x4000, PEER).is_success());
    // Keep the permission alive, not the channel.
    for _ in 0..2 {
        h.advance(secs(290));
        assert!(h.create_permission(&mut c, PEER).is_success());
    }
    h.advance(secs(19)); // t = 599
    assert!(h.channel_data(&c, 0x4000, b"x").is_some());
    h.advance(secs(2)); // t = 601
    assert!(h.channel_data(&c, 0x4000, b"x").is_none());
    assert_eq!(h.relay.counters().drops(DropReason::NoChannel), 1);
    // Peer traffic falls back to Data indications.
    let (_, bytes) = h.peer_sends(relayed, PEER, b"y").unwrap();
    assert_eq!(Message::decode(&bytes).unwrap().method(), Method::DATA);
    // The channel can be bound to another peer now.
    assert!(h.channel_bind(&mut c, 0x4000, PEER2).is_success());
}

#[test]
fn stale_nonce_gets_438_and_fresh_nonce() {
    let mut h = Harness::new(config());
    let mut c = alice();
    allocated(&mut h, &mut c);
    assert!(h.refresh(&mut c, Some(3600)).is_success());
    h.advance(secs(601));
    let old = c.nonce.clone();
    let r = h.create_permission(&mut c, PEER);
    assert_eq!(r.code(), Some(438));
    assert!(!r.has_integrity());
    let fresh = r.nonce().unwrap();
    assert_ne!(Some(fresh.clone()), old);
    c.nonce = Some(fresh);
    assert!(h.create_permission(&mut c, PEER).is_success());
    // A forged nonce is stale as well.
    c.nonce = Some("v10000000000000000000000000000000000000000".into());
    assert_eq!(h.create_permission(&mut c, PEER).code(), Some(438));
}

#[test]
fn wrong_password_and_unknown_user_are_401_and_counted() {
    let mut h = Harness::new(config());
    let mut c = Client::new("192.0.2.10:5000", "alice", "not-her-password");
    let r = h.allocate(&mut c, &[]);
    assert_eq!(r.code(), Some(401));
    assert!(r.nonce().is_some());
    assert_eq!(h.relay.counters().auth_failures, 1);
    assert!(h.has_event(|e| matches!(e, Event::AuthFailed { reason: AuthFailure::BadIntegrity, .. })));
    let mut m = Client::new("192.0.2.11:5000", "mallory", "x");
    assert_eq!(h.allocate(&mut m, &[]).code(), Some(401));
    assert!(h.has_event(|e| matches!(e, Event::AuthFailed { reason: AuthFailure::UnknownUser, .. })));
    assert_eq!(h.relay.counters().auth_failures, 2);
    assert_eq!(h.relay.counters().errors(401), 4);
    assert!(h.binds.is_empty());
}

#[test]
fn other_user_on_the_allocation_gets_441() {
    let mut h = Harness::new(config());
    let mut c = alice();
    allocated(&mut h, &mut c);
    let mut bob = Client::new("192.0.2.10:5000", "bob", "bob-pw");
    bob.nonce = c.nonce.clone();
    let r = h.refresh(&mut bob, None);
    assert_eq!(r.code(), Some(441));
    assert!(r.integrity_ok(&bob.key));
}

#[test]
fn requested_transport_rules() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let r = h.call_auth(&mut c, Method::ALLOCATE, &[]);
    assert_eq!(r.code(), Some(400));
    let r = h.call(&mut c, Method::ALLOCATE, &[Attribute::RequestedTransport(6)]);
    assert_eq!(r.code(), Some(442));
    assert!(h.allocate(&mut c, &[Attribute::DontFragment]).is_success());
    assert!(h.binds[0].dont_fragment);
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let r = h.allocate(&mut c, &[Attribute::Unknown { typ: 0x7001, value: b"x" }]);
    assert_eq!(r.code(), Some(420));
    assert_eq!(r.unknown_attributes(), vec![0x7001]);
    // Comprehension-optional unknowns are ignored.
    assert!(h.allocate(&mut c, &[Attribute::Unknown { typ: 0xC001, value: b"x" }]).is_success());
}

#[test]
fn quotas_hold_across_relays_sharing_counts() {
    // Two workers of one server: separate relays (disjoint ports), one SharedQuota.
    let shared = std::sync::Arc::new(vienna_turn::quota::SharedQuota::new());
    let worker = |min: u16, max: u16| {
        let mut cfg = config();
        cfg.user_quota = Some(1);
        cfg.total_quota = Some(2);
        cfg.min_port = min;
        cfg.max_port = max;
        cfg.shared_quota = Some(shared.clone());
        let users = StaticUsers::new()
            .with_password("alice", REALM, "alice-pw")
            .with_password("bob", REALM, "bob-pw")
            .with_password("carol", REALM, "carol-pw");
        Harness::with_users(cfg, users)
    };
    let (mut w1, mut w2) = (worker(50000, 50099), worker(50100, 50199));
    let mut a1 = alice();
    allocated(&mut w1, &mut a1);
    let mut a2 = Client::new("192.0.2.10:5001", "alice", "alice-pw");
    assert_eq!(w2.allocate(&mut a2, &[]).code(), Some(486), "alice's quota is used on the other worker");
    let mut b1 = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    allocated(&mut w2, &mut b1);
    let mut c1 = Client::new("192.0.2.30:5000", "carol", "carol-pw");
    assert_eq!(w1.allocate(&mut c1, &[]).code(), Some(508), "total of 2 reached across workers");
    assert_eq!(shared.get("alice"), (1, 2));
    // Deleting on one worker frees the slot for the other.
    assert!(w1.refresh(&mut a1, Some(0)).is_success());
    assert!(w2.allocate(&mut a2, &[]).is_success());
    // Expiry frees slots too.
    w2.advance(Duration::from_secs(3601));
    assert_eq!(shared.get("alice"), (0, 0));
}

#[test]
fn a_revoked_or_changed_password_stops_the_allocation() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let keys: Arc<Mutex<HashMap<String, [u8; 16]>>> = Arc::default();
    let key = |user: &str, pw: &str| vienna_stun::integrity::long_term_key(user, REALM, pw);
    keys.lock().unwrap().insert("alice".into(), key("alice", "alice-pw"));
    let lookup = keys.clone();
    let store = move |user: &str, realm: &str| {
        if realm != REALM {
            return None;
        }
        lookup.lock().unwrap().get(user).copied()
    };
    let mut h = Harness::with_users(config(), store);
    let mut a = alice();
    allocated(&mut h, &mut a);
    assert!(h.refresh(&mut a, Some(600)).is_success());
    // The password changes: requests signed with the old key are refused.
    keys.lock().unwrap().insert("alice".into(), key("alice", "new-pw"));
    assert_eq!(h.refresh(&mut a, Some(600)).code(), Some(401));
    assert_eq!(h.create_permission(&mut a, PEER).code(), Some(401));
    // The account goes away entirely: same.
    keys.lock().unwrap().clear();
    assert_eq!(h.refresh(&mut a, Some(600)).code(), Some(401));
    assert!(h.relay.counters().auth_failures >= 3);
}

#[test]
fn user_and_total_quotas() {
    let mut cfg = config();
    cfg.user_quota = Some(1);
    cfg.total_quota = Some(2);
    let mut h = Harness::new(cfg);
    let mut a1 = alice();
    allocated(&mut h, &mut a1);
    let mut a2 = Client::new("192.0.2.10:5001", "alice", "alice-pw");
    assert_eq!(h.allocate(&mut a2, &[]).code(), Some(486));
    assert!(h.has_event(|e| matches!(e, Event::QuotaExceeded { quota: Quota::User, .. })));
    let mut b1 = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    allocated(&mut h, &mut b1);
    let mut b2 = Client::new("192.0.2.20:5001", "bob", "bob-pw");
    assert_eq!(h.allocate(&mut b2, &[]).code(), Some(486));
    // Quota freed by deletion.
    assert!(h.refresh(&mut a1, Some(0)).is_success());
    assert!(h.allocate(&mut a2, &[]).is_success());
    let mut cfg = config();
    cfg.total_quota = Some(1);
    let mut h = Harness::new(cfg);
    allocated(&mut h, &mut alice());
    let mut b = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    assert_eq!(h.allocate(&mut b, &[]).code(), Some(508));
    assert_eq!(h.relay.counters().total_quota_hits, 1);
}

#[test]
fn full_relay_redirects_with_300() {
    let mut cfg = config();
    cfg.total_quota = Some(1);
    let alt: SocketAddr = "198.51.100.2:3478".parse().unwrap();
    cfg.alternate_server = Some(alt);
    let mut h = Harness::new(cfg);
    allocated(&mut h, &mut alice());
    let mut b = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    let r = h.allocate(&mut b, &[]);
    assert_eq!(r.code(), Some(300));
    assert_eq!(r.alternate(), Some(alt));
}

#[test]
fn port_range_exhaustion_is_508() {
    let mut cfg = config();
    cfg.min_port = 50000;
    cfg.max_port = 50001;
    let mut h = Harness::new(cfg);
    for port in 0..2 {
        let mut c = Client::new(&format!("192.0.2.10:{}", 6000 + port), "alice", "alice-pw");
        allocated(&mut h, &mut c);
    }
    let mut c = Client::new("192.0.2.10:7000", "bob", "bob-pw");
    assert_eq!(h.allocate(&mut c, &[]).code(), Some(508));
    assert!(h.has_event(|e| matches!(e, Event::QuotaExceeded { quota: Quota::Ports, .. })));
}

#[test]
fn bandwidth_cap_drops_excess() {
    let mut cfg = config();
    cfg.bandwidth_limit = Some(10_000);
    let mut h = Harness::new(cfg);
    let mut c = alice();
    allocated(&mut h, &mut c);
    assert!(h.channel_bind(&mut c, 0x4000, PEER).is_success());
    let payload = [0u8; 172];
    let passed = (0..100).filter(|_| h.channel_data(&c, 0x4000, &payload).is_some()).count();
    assert_eq!(passed, 10_000 / 172);
    assert_eq!(h.relay.counters().drops(DropReason::BandwidthExceeded), 100 - passed as u64);
    h.advance(Duration::from_millis(500));
    let more = (0..100).filter(|_| h.channel_data(&c, 0x4000, &payload).is_some()).count();
    assert!((28..=30).contains(&more), "{more}");
}

#[test]
fn denied_peers_get_403_allowed_ones_succeed() {
    let mut cfg = config();
    cfg.relay_ipv6 = Some("2001:db8::1".parse().unwrap());
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let r = h.allocate(&mut c, &[Attribute::AdditionalAddressFamily(AddressFamily::V6)]);
    assert_eq!(r.relayed().len(), 2);
    for peer in [
        "127.0.0.1:9",
        "10.1.2.3:9",
        "192.168.1.1:9",
        "[fe80::1]:9",
        "[::ffff:127.0.0.1]:9",
        "100.64.0.1:9",
        "224.0.0.1:9",
        "198.51.100.1:9",
    ] {
        assert_eq!(h.create_permission(&mut c, peer).code(), Some(403), "{peer}");
    }
    assert_eq!(h.channel_bind(&mut c, 0x4000, "10.1.2.3:9").code(), Some(403));
    assert_eq!(h.relay.counters().errors(403), 9);
    assert!(h.create_permission(&mut c, "[2001:db8:2::5]:9").is_success());
    assert!(h.send_indication(&mut c, "10.1.2.3:9", b"x").is_none());
    assert_eq!(h.relay.counters().drops(DropReason::PeerDenied), 1);

    let mut cfg = config();
    cfg.peer_policy.allow = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
    cfg.peer_policy.deny = vec!["10.9.0.0/16".parse().unwrap()];
    let mut h = Harness::new(cfg);
    let mut c = alice();
    allocated(&mut h, &mut c);
    assert!(h.create_permission(&mut c, "10.1.2.3:9").is_success());
    assert!(h.channel_bind(&mut c, 0x4000, "127.0.0.1:9").is_success());
    assert_eq!(h.create_permission(&mut c, "10.9.0.1:9").code(), Some(403));
    assert_eq!(h.create_permission(&mut c, "192.168.0.1:9").code(), Some(403));
}

#[test]
fn peer_family_mismatch_is_443() {
    let mut h = Harness::new(config());
    let mut c = alice();
    allocated(&mut h, &mut c);
    assert_eq!(h.create_permission(&mut c, "[2001:db8::5]:9").code(), Some(443));
}

#[test]
fn address_families() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let r = h.allocate(&mut c, &[Attribute::RequestedAddressFamily(AddressFamily::V6)]);
    assert_eq!(r.code(), Some(440));
    let r = h.allocate(
        &mut c,
        &[Attribute::RequestedAddressFamily(AddressFamily::V4), Attribute::AdditionalAddressFamily(AddressFamily::V6)],
    );
    assert_eq!(r.code(), Some(400));
    // Dual allocation without IPv6 configured: IPv4 only, ADDRESS-ERROR-CODE 440.
    let r = h.allocate(&mut c, &[Attribute::AdditionalAddressFamily(AddressFamily::V6)]);
    assert!(r.is_success());
    assert_eq!(r.relayed().len(), 1);
    assert_eq!(r.address_error(), Some(440));

    let mut cfg = config();
    cfg.relay_ipv4 = None;
    cfg.relay_ipv6 = Some("2001:db8::1".parse().unwrap());
    let mut h = Harness::new(cfg);
    let mut c = alice();
    assert_eq!(h.allocate(&mut c, &[]).code(), Some(440));
    let r = h.allocate(&mut c, &[Attribute::RequestedAddressFamily(AddressFamily::V6)]);
    assert!(r.is_success());
    assert!(r.relayed()[0].is_ipv6());
}

#[test]
fn even_port_reservation_token() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let r = h.allocate(&mut c, &[Attribute::EvenPort(true)]);
    assert!(r.is_success());
    let port = r.relayed()[0].port();
    assert_eq!(port % 2, 0);
    let token = r.token().expect("RESERVATION-TOKEN");
    let mut b = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    assert_eq!(h.allocate(&mut b, &[Attribute::ReservationToken(token), Attribute::EvenPort(false)]).code(), Some(400));
    let r = h.allocate(&mut b, &[Attribute::ReservationToken(token)]);
    assert!(r.is_success());
    assert_eq!(r.relayed()[0].port(), port + 1);
    // Used up.
    let mut d = Client::new("192.0.2.30:5000", "bob", "bob-pw");
    assert_eq!(h.allocate(&mut d, &[Attribute::ReservationToken(token)]).code(), Some(508));
    // EVEN-PORT without R: even, no token.
    let r = h.allocate(&mut d, &[Attribute::EvenPort(false)]);
    assert_eq!(r.relayed()[0].port() % 2, 0);
    assert!(r.token().is_none());
}

#[test]
fn reservation_expires() {
    let mut cfg = config();
    cfg.min_port = 50000;
    cfg.max_port = 50001;
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let token = h.allocate(&mut c, &[Attribute::EvenPort(true)]).token().unwrap();
    let mut b = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    assert_eq!(h.allocate(&mut b, &[]).code(), Some(508), "port 50001 is reserved");
    h.advance(secs(31));
    assert_eq!(h.allocate(&mut b, &[Attribute::ReservationToken(token)]).code(), Some(508));
    assert!(h.allocate(&mut b, &[]).is_success(), "reserved port released");
}

#[test]
fn two_phase_bind_handshake() {
    let mut h = Harness::new(config());
    h.auto_bind = false;
    let mut c = alice();
    let r = h.call(&mut c, Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
    c.nonce = r.nonce();
    let txid = c.txid();
    let req = c.request(Method::ALLOCATE, &[Attribute::RequestedTransport(17)], txid);
    assert!(h.feed(&c.tuple, &req).is_empty(), "no answer before the socket is bound");
    assert_eq!(h.binds.len(), 1);
    // Retransmission while binding: still silent, no second bind.
    assert!(h.feed(&c.tuple, &req).is_empty());
    assert_eq!(h.binds.len(), 1);
    // Port taken by another process: the core picks another.
    let first = h.binds[0];
    h.bound(first, Err(BindFailure::AddrInUse));
    assert_eq!(h.binds.len(), 2);
    let second = h.binds[1];
    assert_ne!(second.addr, first.addr);
    assert_eq!(second.allocation, first.allocation);
    h.bound(second, Ok(()));
    let (_, bytes) = h.to_clients.last().cloned().unwrap();
    let r = Resp(bytes);
    assert!(r.is_success());
    assert_eq!(r.relayed(), vec![second.addr]);
    // A late answer for an unknown bind is released.
    h.bound(first, Ok(()));
    assert!(h.released.contains(&first.addr));
}

#[test]
fn bind_failure_and_timeout_answer_508() {
    let mut h = Harness::new(config());
    h.auto_bind = false;
    let mut c = alice();
    let r = h.call(&mut c, Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
    c.nonce = r.nonce();
    let txid = c.txid();
    let req = c.request(Method::ALLOCATE, &[Attribute::RequestedTransport(17)], txid);
    h.feed(&c.tuple, &req);
    let b = h.binds[0];
    h.bound(b, Err(BindFailure::Other));
    assert_eq!(Resp(h.to_clients.last().unwrap().1.clone()).code(), Some(508));
    assert_eq!(h.relay.allocation_count(), 0);

    // Timeout: the driver never answers.
    let txid = c.txid();
    let req = c.request(Method::ALLOCATE, &[Attribute::RequestedTransport(17)], txid);
    h.feed(&c.tuple, &req);
    let b = h.binds[1];
    assert!(h.relay.poll_timeout().is_some());
    h.advance(secs(6));
    assert_eq!(Resp(h.to_clients.last().unwrap().1.clone()).code(), Some(508));
    assert!(h.released.contains(&b.addr));
    let released = h.released.len();
    h.bound(b, Ok(()));
    assert_eq!(h.released.len(), released + 1, "late bind released again");
}

#[test]
fn rest_api_credentials() {
    let mut cfg = config();
    cfg.rest_secrets = vec![b"new-secret".to_vec(), b"old-secret".to_vec()];
    let mut h = Harness::with_users(cfg, StaticUsers::new());
    let valid = format!("{}:carol", UNIX0 + 3600);
    for secret in ["new-secret", "old-secret"] {
        let pw = rest_password(secret.as_bytes(), &valid);
        let port = if secret == "new-secret" { 1 } else { 2 };
        let mut c = Client::new(&format!("192.0.2.40:{port}"), &valid, &pw);
        assert!(h.allocate(&mut c, &[]).is_success(), "{secret}");
    }
    // Unknown secret.
    let pw = rest_password(b"stolen", &valid);
    let mut c = Client::new("192.0.2.40:3", &valid, &pw);
    assert_eq!(h.allocate(&mut c, &[]).code(), Some(401));
    // Expired username.
    let expired = format!("{}", UNIX0 - 1);
    let pw = rest_password(b"new-secret", &expired);
    let mut c = Client::new("192.0.2.40:4", &expired, &pw);
    assert_eq!(h.allocate(&mut c, &[]).code(), Some(401));
    assert!(h.has_event(|e| matches!(e, Event::AuthFailed { reason: AuthFailure::Expired, .. })));
}

#[test]
fn refresh_with_expired_rest_credential_fails() {
    let mut cfg = config();
    cfg.rest_secrets = vec![b"s".to_vec()];
    cfg.nonce_lifetime = secs(3600);
    let mut h = Harness::with_users(cfg, StaticUsers::new());
    let user = format!("{}:dave", UNIX0 + 300);
    let mut c = Client::new("192.0.2.50:1", &user, &rest_password(b"s", &user));
    allocated(&mut h, &mut c);
    h.advance(secs(200));
    assert!(h.refresh(&mut c, None).is_success());
    h.advance(secs(200));
    assert_eq!(h.refresh(&mut c, None).code(), Some(401));
}

#[test]
fn malformed_requests() {
    let mut h = Harness::new(config());
    let c = alice();
    // Garbage, bad STUN and responses from clients are dropped and counted, never answered.
    assert!(h.feed(&c.tuple, b"\x80hello").is_empty());
    assert!(h.feed(&c.tuple, &[0u8; 20]).is_empty());
    let mut resp = vienna_stun::MessageBuilder::new(Class::Success, Method::BINDING, Default::default());
    resp.add_fingerprint();
    assert!(h.feed(&c.tuple, &resp.finish()).is_empty());
    let k = h.relay.counters();
    assert_eq!(k.drops(DropReason::NotStunOrChannelData), 1);
    assert_eq!(k.drops(DropReason::Malformed), 1);
    assert_eq!(k.drops(DropReason::Unexpected), 1);
    // Bad fingerprint.
    let mut c2 = alice();
    let mut bytes = c2.request(Method::BINDING, &[], Default::default());
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    assert!(h.feed(&c2.tuple, &bytes).is_empty());
    assert_eq!(h.relay.counters().drops(DropReason::BadFingerprint), 1);
    // Unknown method: 400.
    let bytes = c2.request(Method(0x0ff), &[], Default::default());
    assert_eq!(h.feed(&c2.tuple, &bytes)[0].code(), Some(400));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_input_never_panics(
        client_bytes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..8),
        peer_bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut h = Harness::new(config());
        let mut c = alice();
        let relayed = allocated(&mut h, &mut c);
        h.channel_bind(&mut c, 0x4000, PEER);
        for b in &client_bytes {
            h.feed(&c.tuple, b);
            // Same bytes behind a valid STUN header and as ChannelData.
            let mut stun = vec![0, 3, 0, 0, 0x21, 0x12, 0xa4, 0x42];
            stun.extend_from_slice(&[1; 12]);
            let body = &b[..b.len() & !3];
            stun[2..4].copy_from_slice(&(body.len() as u16).to_be_bytes());
            stun.extend_from_slice(body);
            h.feed(&c.tuple, &stun);
            let mut cd = vec![0x40, 0x00];
            cd.extend_from_slice(b);
            h.feed(&c.tuple, &cd);
        }
        h.peer_sends(relayed, PEER, &peer_bytes);
        let mut out = [0u8; 16];
        let _ = h.relay.relay_peer_datagram(h.now, relayed, PEER.parse().unwrap(), &peer_bytes, &mut out);
        h.advance(secs(700));
        prop_assert_eq!(h.relay.allocation_count(), 0);
    }

    #[test]
    fn mutated_requests_never_panic(flip in 0usize..400, bit in 0u8..8, truncate in 0usize..400) {
        let mut h = Harness::new(config());
        let mut c = alice();
        allocated(&mut h, &mut c);
        let txid = c.txid();
        let mut bytes = c.request(
            Method::CHANNEL_BIND,
            &[Attribute::ChannelNumber(0x4000), Attribute::XorPeerAddress(PEER.parse().unwrap())],
            txid,
        );
        let n = bytes.len();
        bytes[flip % n] ^= 1 << bit;
        h.feed(&c.tuple, &bytes);
        h.feed(&c.tuple, &bytes[..truncate % n]);
    }
}

#[test]
fn relay_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<vienna_turn::Relay>();
}

#[test]
fn sha256_integrity_is_answered_in_kind() {
    let mut h = Harness::new(config());
    let mut c = alice();
    c.sha256 = true;
    let r = h.allocate(&mut c, &[]);
    assert!(r.is_success());
    assert_eq!(r.msg().integrity_kind(), Some(vienna_stun::message::IntegrityKind::Sha256));
    assert!(r.integrity_ok(&c.key));
}

#[test]
fn nonce_is_bound_to_client_ip() {
    let mut h = Harness::new(config());
    let mut c = alice();
    allocated(&mut h, &mut c);
    let mut other = Client::new("192.0.2.77:5000", "alice", "alice-pw");
    other.nonce = c.nonce.clone();
    assert_eq!(h.allocate(&mut other, &[]).code(), Some(438));
}

#[test]
fn binding_with_unknown_required_attribute_gets_420() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let r = h.call(&mut c, Method::BINDING, &[Attribute::Unknown { typ: 0x0033, value: b"" }]);
    assert_eq!(r.code(), Some(420));
    assert_eq!(r.unknown_attributes(), vec![0x0033]);
}

#[test]
fn dual_stack_allocation_relays_both_families() {
    let mut cfg = config();
    cfg.relay_ipv6 = Some("2001:db8::1".parse().unwrap());
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let r = h.allocate(&mut c, &[Attribute::AdditionalAddressFamily(AddressFamily::V6)]);
    let relayed = r.relayed();
    assert!(relayed[0].is_ipv4() && relayed[1].is_ipv6());
    assert_eq!(h.binds.len(), 2);
    let v6peer = "[2001:db8:5::9]:7000";
    assert!(h.channel_bind(&mut c, 0x4000, PEER).is_success());
    assert!(h.channel_bind(&mut c, 0x4001, v6peer).is_success());
    assert_eq!(h.channel_data(&c, 0x4001, b"six").unwrap().0, relayed[1]);
    assert_eq!(h.channel_data(&c, 0x4000, b"four").unwrap().0, relayed[0]);
    let (_, bytes) = h.peer_sends(relayed[1], v6peer, b"back6").unwrap();
    assert_eq!(ChannelData::parse(&bytes).unwrap().channel, 0x4001);
    // Worst case output size: Data indication from an IPv6 peer without a channel.
    assert!(h.create_permission(&mut c, "[2001:db8:5::7]:1").is_success());
    let mut out = [0u8; 52];
    let t =
        h.relay.relay_peer_datagram(h.now, relayed[1], "[2001:db8:5::7]:1".parse().unwrap(), b"z", &mut out).unwrap();
    assert_eq!(t.len, 1 + 51);
    // Deleting releases both relayed sockets.
    assert!(h.refresh(&mut c, Some(0)).is_success());
    assert!(h.released.contains(&relayed[0]) && h.released.contains(&relayed[1]));
}

#[test]
fn send_indication_edge_cases() {
    let mut h = Harness::new(config());
    let mut c = alice();
    // No allocation yet.
    assert!(h.send_indication(&mut c, PEER, b"x").is_none());
    assert_eq!(h.relay.counters().drops(DropReason::NoAllocation), 1);
    allocated(&mut h, &mut c);
    // IPv6 peer on an IPv4-only allocation: no permission possible, dropped.
    assert!(h.send_indication(&mut c, "[2001:db8::9]:1", b"x").is_none());
    assert_eq!(h.relay.counters().drops(DropReason::NoPermission), 1);
    assert!(h.events.iter().any(|e| matches!(e, Event::Dropped { reason: DropReason::NoPermission, .. })));
}

#[test]
fn stale_nonce_on_allocate_then_success() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let r = h.call(&mut c, Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
    c.nonce = r.nonce();
    h.advance(secs(600));
    let r = h.call(&mut c, Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
    assert_eq!(r.code(), Some(438));
    assert_eq!(r.realm().as_deref(), Some(REALM));
    c.nonce = r.nonce();
    let r = h.call(&mut c, Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
    assert!(r.is_success());
    assert_eq!(h.relay.counters().errors(438), 1);
    assert_eq!(h.relay.counters().auth_failures, 0, "stale nonce is not an auth failure");
}

#[test]
fn refresh_emits_event_and_missing_credentials_are_400() {
    let mut h = Harness::new(config());
    let mut c = alice();
    allocated(&mut h, &mut c);
    h.refresh(&mut c, Some(900));
    assert!(h.has_event(|e| matches!(e, Event::AllocationRefreshed { lifetime, .. } if *lifetime == secs(900))));
    // MESSAGE-INTEGRITY without USERNAME/REALM/NONCE: 400.
    let mut b = vienna_stun::MessageBuilder::new(Class::Request, Method::REFRESH, c.txid());
    b.add_message_integrity(&c.key);
    b.add_fingerprint();
    let r = h.feed(&c.tuple, &b.finish());
    assert_eq!(r[0].code(), Some(400));
}

#[test]
fn hot_path_respects_bandwidth_and_expiry_without_timers() {
    let mut cfg = config();
    cfg.bandwidth_limit = Some(1000);
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    assert!(h.channel_bind(&mut c, 0x4000, PEER).is_success());
    let mut out = [0u8; 2048];
    let peer: SocketAddr = PEER.parse().unwrap();
    // Burst is max(rate, 1500) bytes.
    assert!(h.relay.relay_peer_datagram(h.now, relayed, peer, &[0; 1400], &mut out).is_ok());
    assert_eq!(
        h.relay.relay_peer_datagram(h.now, relayed, peer, &[0; 200], &mut out),
        Err(DropReason::BandwidthExceeded)
    );
    // Past expiry the hot path drops even if handle_timeout has not run yet.
    let later = h.now + secs(601);
    assert_eq!(h.relay.relay_peer_datagram(later, relayed, peer, &[0; 10], &mut out), Err(DropReason::NoAllocation));
}

#[test]
fn failed_bind_of_reserved_port_returns_it_to_the_pool() {
    let mut cfg = config();
    cfg.min_port = 50000;
    cfg.max_port = 50001;
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let token = h.allocate(&mut c, &[Attribute::EvenPort(true)]).token().unwrap();
    h.auto_bind = false;
    let mut b = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    let r = h.call(&mut b, Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
    b.nonce = r.nonce();
    let txid = b.txid();
    let req =
        b.request(Method::ALLOCATE, &[Attribute::RequestedTransport(17), Attribute::ReservationToken(token)], txid);
    h.feed(&b.tuple, &req);
    let bind = *h.binds.last().unwrap();
    assert_eq!(bind.addr.port(), 50001);
    // A reserved port is not retried elsewhere: AddrInUse fails the Allocate.
    h.bound(bind, Err(BindFailure::AddrInUse));
    assert_eq!(Resp(h.to_clients.last().unwrap().1.clone()).code(), Some(508));
    h.auto_bind = true;
    let mut d = Client::new("192.0.2.30:5000", "bob", "bob-pw");
    let r = h.allocate(&mut d, &[]);
    assert_eq!(r.relayed()[0].port(), 50001, "port released after the failed bind");
}

#[test]
fn strict_rest_expiry_caps_lifetimes() {
    let mut cfg = config();
    cfg.rest_secrets = vec![b"s".to_vec()];
    cfg.strict_rest_expiry = true;
    let mut h = Harness::with_users(cfg, StaticUsers::new());
    let user = format!("{}:erin", UNIX0 + 120);
    let mut c = Client::new("192.0.2.60:1", &user, &rest_password(b"s", &user));
    let r = h.allocate(&mut c, &[]);
    assert_eq!(r.lifetime(), Some(120));
    h.advance(secs(60));
    assert_eq!(h.refresh(&mut c, Some(3600)).lifetime(), Some(60));
    h.advance(secs(61));
    assert_eq!(h.relay.allocation_count(), 0, "allocation ended with its credential");
}

#[test]
fn draining_refuses_new_allocations_only() {
    let mut cfg = config();
    let alt: SocketAddr = "198.51.100.2:3478".parse().unwrap();
    cfg.alternate_server = Some(alt);
    let mut h = Harness::new(cfg);
    let mut c = alice();
    allocated(&mut h, &mut c);
    h.relay.set_draining(true);
    let mut b = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    let r = h.allocate(&mut b, &[]);
    assert_eq!(r.code(), Some(300));
    assert_eq!(r.alternate(), Some(alt));
    assert!(h.refresh(&mut c, None).is_success(), "existing allocations keep working");
    assert!(h.has_event(|e| matches!(e, Event::QuotaExceeded { quota: Quota::Draining, .. })));
    h.relay.set_draining(false);
    assert!(h.allocate(&mut b, &[]).is_success());
}

#[test]
fn allocations_snapshot() {
    let mut h = Harness::new(config());
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    h.channel_bind(&mut c, 0x4000, PEER);
    h.create_permission(&mut c, PEER2);
    let all: Vec<_> = h.relay.allocations().collect();
    assert_eq!(all.len(), 1);
    let a = &all[0];
    assert_eq!((a.username, a.tuple, a.relayed_v4, a.relayed_v6), ("alice", c.tuple, Some(relayed), None));
    assert_eq!((a.permissions, a.channels), (2, 1));
    assert_eq!(a.expires, h.now + secs(600));
}

#[test]
fn late_refresh_does_not_revive_an_expired_allocation() {
    let mut cfg = config();
    cfg.nonce_lifetime = secs(3600);
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let relayed = allocated(&mut h, &mut c);
    // The clock moves past expiry but the driver has not called handle_timeout yet.
    h.now += secs(601);
    assert_eq!(h.refresh(&mut c, None).code(), Some(437));
    assert!(h.released.contains(&relayed));
    assert_eq!(h.relay.counters().allocations_expired, 1);
}

#[test]
fn expired_token_used_before_its_timer_releases_the_port() {
    let mut cfg = config();
    cfg.min_port = 50000;
    cfg.max_port = 50001;
    let mut h = Harness::new(cfg);
    let mut c = alice();
    let token = h.allocate(&mut c, &[Attribute::EvenPort(true)]).token().unwrap();
    h.now += secs(31); // no handle_timeout
    let mut b = Client::new("192.0.2.20:5000", "bob", "bob-pw");
    assert_eq!(h.allocate(&mut b, &[Attribute::ReservationToken(token)]).code(), Some(508));
    assert_eq!(h.allocate(&mut b, &[]).relayed()[0].port(), 50001);
    h.advance(secs(1)); // the stale reservation timer finds nothing to do
    assert_eq!(h.relay.allocation_count(), 2);
}

#[derive(Clone, Debug)]
enum Op {
    Allocate { client: u8, even: Option<bool>, token: bool, dual: bool },
    Delete { client: u8 },
    Disconnect { client: u8 },
    FailNextBind(bool),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, proptest::option::of(any::<bool>()), any::<bool>(), any::<bool>())
            .prop_map(|(client, even, token, dual)| Op::Allocate { client, even, token, dual }),
        (0u8..6).prop_map(|client| Op::Delete { client }),
        (0u8..6).prop_map(|client| Op::Disconnect { client }),
        any::<bool>().prop_map(Op::FailNextBind),
        (0u16..400).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens, once everything has expired no port, quota slot or allocation is left.
    #[test]
    fn no_port_or_quota_leaks(ops in proptest::collection::vec(op(), 1..40)) {
        let mut cfg = config();
        cfg.min_port = 50000;
        cfg.max_port = 50007;
        cfg.relay_ipv6 = Some("2001:db8::1".parse().unwrap());
        cfg.user_quota = Some(3);
        cfg.nonce_lifetime = secs(100_000);
        let mut h = Harness::new(cfg);
        let mut clients: Vec<Client> = (0..6)
            .map(|i| Client::with_transport(&format!("192.0.2.{}:5000", 10 + i), "alice", "alice-pw", Transport::Tcp))
            .collect();
        let mut last_token = None;
        for op in ops {
            match op {
                Op::Allocate { client, even, token, dual } => {
                    let mut attrs = vec![];
                    if token && let Some(t) = last_token {
                        attrs.push(Attribute::ReservationToken(t));
                    } else {
                        attrs.extend(even.map(Attribute::EvenPort));
                        if dual {
                            attrs.push(Attribute::AdditionalAddressFamily(AddressFamily::V6));
                        }
                    }
                    let r = h.allocate(&mut clients[client as usize], &attrs);
                    if let Some(t) = r.token() {
                        last_token = Some(t);
                    }
                }
                Op::Delete { client } => {
                    let c = &mut clients[client as usize];
                    if c.nonce.is_some() {
                        h.refresh(c, Some(0));
                    }
                }
                Op::Disconnect { client } => {
                    h.relay.client_disconnected(&clients[client as usize].tuple);
                    h.drain();
                }
                Op::FailNextBind(in_use) => h.bind_script.push_back(Err(if in_use {
                    BindFailure::AddrInUse
                } else {
                    BindFailure::Other
                })),
                Op::Advance(s) => h.advance(secs(u64::from(s))),
            }
            let live: usize = h.relay.allocations().map(|a| 1 + usize::from(a.relayed_v6.is_some())).sum();
            prop_assert!(h.relay.ports_in_use() >= live);
        }
        h.advance(secs(4000));
        prop_assert_eq!(h.relay.allocation_count(), 0);
        prop_assert_eq!(h.relay.ports_in_use(), 0);
        prop_assert_eq!(h.relay.counters().allocations_active, 0);
        // Quota slots are free again: three allocations for alice succeed.
        h.bind_script.clear();
        for c in clients.iter_mut().take(3) {
            prop_assert!(h.allocate(c, &[]).is_success());
        }
    }
}
