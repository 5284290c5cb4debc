//! Per-packet cost of the hot paths through the relay core (172-byte payload, the size of a 20 ms
//! G.711 RTP packet), both directions: standard TURN ChannelData, and MS-TURN's Send requests / Data
//! Indications and its active-destination raw data, side by side. No sockets: this measures the core
//! only.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vienna_stun::attributes::Attribute;
use vienna_stun::integrity::long_term_key;
use vienna_stun::{Class, Message, MessageBuilder, Method, TransactionId, channel_data};
use vienna_turn::{ClientDatagram, Config, FiveTuple, Output, Relay, SplitMix64, StaticUsers, Transmit, Transport};

const REALM: &str = "bench";

fn request(method: Method, txid: u8, attrs: &[Attribute<'_>], nonce: Option<&str>, key: &[u8; 16]) -> Vec<u8> {
    let mut b = MessageBuilder::new(Class::Request, method, TransactionId([txid; 12]));
    for a in attrs {
        b.add(a).unwrap();
    }
    if let Some(n) = nonce {
        b.add(&Attribute::Username("u")).unwrap();
        b.add(&Attribute::Realm(REALM)).unwrap();
        b.add(&Attribute::Nonce(n)).unwrap();
        b.add_message_integrity(key);
    }
    b.finish()
}

/// A relay with `n` allocations, each with a channel bound; returns the last one's addresses.
fn setup(n: u16) -> (Relay, Instant, FiveTuple, SocketAddr, SocketAddr) {
    let now = Instant::now();
    let mut cfg = Config::new(REALM, Ipv4Addr::new(198, 51, 100, 1));
    cfg.min_port = 1024;
    let users = StaticUsers::new().with_password("u", REALM, "p");
    let key = long_term_key("u", REALM, "p");
    let mut relay = Relay::new(cfg, users, SplitMix64(1), now, 1_800_000_000).unwrap();
    let peer: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    let mut last = None;
    for i in 0..n {
        let tuple = FiveTuple {
            transport: Transport::Udp,
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 10000 + i),
            server: "198.51.100.1:3478".parse().unwrap(),
        };
        let feed = |relay: &mut Relay, bytes: &[u8]| {
            relay.handle_client_datagram(
                now,
                ClientDatagram { transport: tuple.transport, client: tuple.client, server: tuple.server, bytes },
            );
            let mut resp = None;
            while let Some(o) = relay.poll_output() {
                match o {
                    Output::BindRelay(b) => relay.relay_bound(now, b.allocation, b.addr, Ok(())),
                    Output::Transmit(Transmit::Client { bytes, .. }) => resp = Some(bytes),
                    _ => {}
                }
            }
            resp.unwrap()
        };
        let challenge =
            feed(&mut relay, &request(Method::ALLOCATE, 1, &[Attribute::RequestedTransport(17)], None, &key));
        let m = Message::decode(&challenge).unwrap();
        let nonce = m
            .attributes()
            .find_map(|a| if let Ok(Attribute::Nonce(n)) = a { Some(n.to_string()) } else { None })
            .unwrap();
        let ok =
            feed(&mut relay, &request(Method::ALLOCATE, 2, &[Attribute::RequestedTransport(17)], Some(&nonce), &key));
        let m = Message::decode(&ok).unwrap();
        let relayed = m
            .attributes()
            .find_map(|a| if let Ok(Attribute::XorRelayedAddress(r)) = a { Some(r) } else { None })
            .unwrap();
        let bind = [Attribute::ChannelNumber(0x4000), Attribute::XorPeerAddress(peer)];
        feed(&mut relay, &request(Method::CHANNEL_BIND, 3, &bind, Some(&nonce), &key));
        last = Some((tuple, relayed));
    }
    let (tuple, relayed) = last.unwrap();
    (relay, now, tuple, relayed, peer)
}

fn bench(c: &mut Criterion) {
    for n in [1u16, 1000] {
        let (mut relay, now, tuple, relayed, peer) = setup(n);
        let payload = [0x80u8; 172];
        let mut frame = [0u8; 176];
        let len = channel_data::write(0x4000, &payload, &mut frame, false).unwrap();
        let mut g = c.benchmark_group(format!("channeldata_{n}_allocations"));
        g.throughput(Throughput::Elements(1));
        g.measurement_time(Duration::from_secs(3));
        g.warm_up_time(Duration::from_secs(1));
        g.bench_function("client_to_peer", |b| {
            b.iter(|| {
                let t = relay.relay_channel_data(now, &tuple, black_box(&frame[..len])).unwrap();
                black_box(&frame[t.payload]);
            })
        });
        let mut out = [0u8; 2048];
        g.bench_function("peer_to_client", |b| {
            b.iter(|| {
                let t = relay.relay_peer_datagram(now, relayed, peer, black_box(&payload), &mut out).unwrap();
                black_box(&out[..t.len]);
            })
        });
        g.finish();
    }
}

/// Control plane: one authenticated Allocate (including the relay-socket handshake and the
/// MESSAGE-INTEGRITY check/sign) followed by a Refresh with lifetime 0, per iteration.
fn bench_allocate(c: &mut Criterion) {
    let now = Instant::now();
    let mut cfg = Config::new(REALM, Ipv4Addr::new(198, 51, 100, 1));
    cfg.nonce_lifetime = Duration::from_secs(86_400);
    let users = StaticUsers::new().with_password("u", REALM, "p");
    let key = long_term_key("u", REALM, "p");
    let mut relay = Relay::new(cfg, users, SplitMix64(1), now, 1_800_000_000).unwrap();
    let tuple = FiveTuple {
        transport: Transport::Udp,
        client: "192.0.2.10:10000".parse().unwrap(),
        server: "198.51.100.1:3478".parse().unwrap(),
    };
    let feed = |relay: &mut Relay, bytes: &[u8]| {
        relay.handle_client_datagram(
            now,
            ClientDatagram { transport: tuple.transport, client: tuple.client, server: tuple.server, bytes },
        );
        let mut resp = None;
        while let Some(o) = relay.poll_output() {
            match o {
                Output::BindRelay(b) => relay.relay_bound(now, b.allocation, b.addr, Ok(())),
                Output::Transmit(Transmit::Client { bytes, .. }) => resp = Some(bytes),
                _ => {}
            }
        }
        resp
    };
    let challenge =
        feed(&mut relay, &request(Method::ALLOCATE, 1, &[Attribute::RequestedTransport(17)], None, &key)).unwrap();
    let m = Message::decode(&challenge).unwrap();
    let nonce =
        m.attributes().find_map(|a| if let Ok(Attribute::Nonce(n)) = a { Some(n.to_string()) } else { None }).unwrap();
    // Sanity check outside the timed loop: both requests succeed.
    for (method, t, attrs) in [
        (Method::ALLOCATE, 200u8, [Attribute::RequestedTransport(17)]),
        (Method::REFRESH, 201u8, [Attribute::Lifetime(0)]),
    ] {
        let resp = feed(&mut relay, &request(method, t, &attrs, Some(&nonce), &key)).unwrap();
        assert_eq!(Message::decode(&resp).unwrap().class(), Class::Success);
    }
    let mut txid = 0u8;
    c.bench_function("control/allocate_then_delete", |b| {
        b.iter(|| {
            txid = txid.wrapping_add(2);
            let alloc = request(Method::ALLOCATE, txid, &[Attribute::RequestedTransport(17)], Some(&nonce), &key);
            black_box(feed(&mut relay, &alloc));
            let del = request(Method::REFRESH, txid.wrapping_add(1), &[Attribute::Lifetime(0)], Some(&nonce), &key);
            black_box(feed(&mut relay, &del));
        })
    });
}

/// An MS-TURN allocation made with MRAS credentials; returns (relay, now, tuple, relayed, key,
/// username) with a permission for `PEER` and `PEER` as active destination.
fn ms_setup() -> (Relay, Instant, FiveTuple, SocketAddr, [u8; 16], Vec<u8>) {
    use vienna_stun::msturn::{self, Builder, Hash, attr, types};
    let now = Instant::now();
    let keys = vienna_edge_auth::MrasKeys::derive(b"bench");
    let mut cfg = Config::new(REALM, Ipv4Addr::new(198, 51, 100, 1));
    cfg.mras = Some(keys.clone());
    let mut relay = Relay::new(cfg, StaticUsers::new(), SplitMix64(1), now, 1_800_000_000).unwrap();
    let tuple = FiveTuple {
        transport: Transport::Udp,
        client: "192.0.2.10:10000".parse().unwrap(),
        server: "198.51.100.1:3478".parse().unwrap(),
    };
    let token = keys.mint("sip:u@bench", 1_800_000_000 + 3600);
    let key = msturn::key_v1(&token.username, REALM.as_bytes(), &token.password);
    let feed = |relay: &mut Relay, bytes: &[u8]| {
        relay.handle_client_datagram(
            now,
            ClientDatagram { transport: tuple.transport, client: tuple.client, server: tuple.server, bytes },
        );
        let mut resp = None;
        while let Some(o) = relay.poll_output() {
            match o {
                Output::BindRelay(b) => relay.relay_bound(now, b.allocation, b.addr, Ok(())),
                Output::Transmit(Transmit::Client { bytes, .. }) => resp = Some(bytes),
                _ => {}
            }
        }
        resp.unwrap()
    };
    let first = Builder::new(types::ALLOCATE_REQUEST, msturn::TransactionId([1; 16]), false).finish();
    let challenge = feed(&mut relay, &first);
    let nonce = msturn::Message::decode(&challenge).unwrap().get(attr::NONCE).unwrap().to_vec();
    let mut b = Builder::new(types::ALLOCATE_REQUEST, msturn::TransactionId([2; 16]), false);
    b.add(attr::REALM, REALM.as_bytes()).unwrap();
    b.add(attr::NONCE, &nonce).unwrap();
    b.add(attr::USERNAME, &token.username).unwrap();
    b.add_integrity(Hash::Sha1, &key).unwrap();
    let ok = feed(&mut relay, &b.finish());
    let relayed = msturn::Message::decode(&ok).unwrap().get_address(attr::MAPPED_ADDRESS).unwrap().unwrap();
    let mut sad = Builder::new(types::SET_ACTIVE_DESTINATION_REQUEST, msturn::TransactionId([3; 16]), false);
    sad.add(attr::USERNAME, &token.username).unwrap();
    sad.add_address(attr::DESTINATION_ADDRESS, PEER.parse().unwrap()).unwrap();
    sad.add_integrity(Hash::Sha1, &key).unwrap();
    let resp = feed(&mut relay, &sad.finish());
    assert_eq!(msturn::Message::decode(&resp).unwrap().msg_type(), types::SET_ACTIVE_DESTINATION_RESPONSE);
    (relay, now, tuple, relayed, key, token.username)
}

const PEER: &str = "203.0.113.5:40000";
const PEER2: &str = "203.0.113.6:40000";

/// Standard and MS-TURN hot paths side by side, one allocation, 172-byte payloads.
fn bench_dialects(c: &mut Criterion) {
    use vienna_stun::msturn::{Builder, Hash, attr, types};
    let payload = [0x80u8; 172];
    let mut out = [0u8; 2048];
    let mut g = c.benchmark_group("dialects_172B");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));

    let (mut relay, now, tuple, relayed, peer) = setup(1);
    let mut frame = [0u8; 176];
    let len = channel_data::write(0x4000, &payload, &mut frame, false).unwrap();
    g.bench_function("standard_channeldata/client_to_peer", |b| {
        b.iter(|| black_box(relay.relay_client_packet(now, &tuple, black_box(&frame[..len])).unwrap().payload))
    });
    g.bench_function("standard_channeldata/peer_to_client", |b| {
        b.iter(|| black_box(relay.relay_peer_datagram(now, relayed, peer, black_box(&payload), &mut out).unwrap().len))
    });

    let (mut relay, now, tuple, relayed, key, username) = ms_setup();
    // A Send request as libnice builds it, but without MS-SEQUENCE-NUMBER (one message replayed in a
    // loop would be a replay; the window check it skips costs a few ns).
    let peer2: SocketAddr = PEER2.parse().unwrap();
    let mut send = Builder::new(types::SEND_REQUEST, vienna_stun::msturn::TransactionId([9; 16]), false);
    send.add(attr::USERNAME, &username).unwrap();
    send.add_address(attr::DESTINATION_ADDRESS, peer2).unwrap();
    send.add(attr::REALM, REALM.as_bytes()).unwrap();
    send.add(attr::DATA, &payload).unwrap();
    send.add_integrity(Hash::Sha1, &key).unwrap();
    let send = send.finish();
    assert!(relay.relay_client_packet(now, &tuple, &send).is_ok());
    g.bench_function("msturn_send/client_to_peer", |b| {
        b.iter(|| black_box(relay.relay_client_packet(now, &tuple, black_box(&send)).unwrap().payload))
    });
    g.bench_function("msturn_data_indication/peer_to_client", |b| {
        b.iter(|| black_box(relay.relay_peer_datagram(now, relayed, peer2, black_box(&payload), &mut out).unwrap().len))
    });
    let active: SocketAddr = PEER.parse().unwrap();
    g.bench_function("msturn_active_destination/client_to_peer", |b| {
        b.iter(|| black_box(relay.relay_client_packet(now, &tuple, black_box(&payload)).unwrap().payload))
    });
    g.bench_function("msturn_active_destination/peer_to_client", |b| {
        b.iter(|| {
            black_box(relay.relay_peer_datagram(now, relayed, active, black_box(&payload), &mut out).unwrap().len)
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_allocate, bench_dialects);
criterion_main!(benches);
