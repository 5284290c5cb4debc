//! Feed arbitrary client and peer datagrams to a relay core that has one allocation with a
//! channel and a permission; nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vienna_stun::attributes::Attribute;
use vienna_stun::integrity::long_term_key;
use vienna_stun::{Class, Message, MessageBuilder, Method, TransactionId};
use vienna_turn::{
    ClientDatagram, Config, FiveTuple, Output, Relay, SplitMix64, StaticUsers, Transmit, Transport,
};

fn setup() -> (Relay, Instant, FiveTuple, SocketAddr) {
    let now = Instant::now();
    let cfg = Config::new("fuzz", "198.51.100.1".parse().unwrap());
    let users = StaticUsers::new().with_password("u", "fuzz", "p");
    let key = long_term_key("u", "fuzz", "p");
    let mut relay = Relay::new(cfg, users, SplitMix64(1), now, 1_800_000_000).unwrap();
    let tuple = FiveTuple {
        transport: Transport::Udp,
        client: "192.0.2.1:1000".parse().unwrap(),
        server: "198.51.100.1:3478".parse().unwrap(),
    };
    let mut nonce = String::new();
    let mut relayed = None;
    let peer: SocketAddr = "203.0.113.5:4000".parse().unwrap();
    let steps: [(Method, Vec<Attribute<'static>>); 4] = [
        (Method::ALLOCATE, vec![Attribute::RequestedTransport(17)]),
        (Method::ALLOCATE, vec![Attribute::RequestedTransport(17)]),
        (
            Method::CHANNEL_BIND,
            vec![
                Attribute::ChannelNumber(0x4000),
                Attribute::XorPeerAddress(peer),
            ],
        ),
        (
            Method::CREATE_PERMISSION,
            vec![Attribute::XorPeerAddress(peer)],
        ),
    ];
    for (i, (method, attrs)) in steps.iter().enumerate() {
        let mut b = MessageBuilder::new(Class::Request, *method, TransactionId([i as u8; 12]));
        for a in attrs {
            b.add(a).unwrap();
        }
        if !nonce.is_empty() {
            b.add(&Attribute::Username("u")).unwrap();
            b.add(&Attribute::Realm("fuzz")).unwrap();
            b.add(&Attribute::Nonce(&nonce)).unwrap();
            b.add_message_integrity(&key);
        }
        let bytes = b.finish();
        relay.handle_client_datagram(
            now,
            ClientDatagram {
                transport: tuple.transport,
                client: tuple.client,
                server: tuple.server,
                bytes: &bytes,
            },
        );
        while let Some(o) = relay.poll_output() {
            match o {
                Output::BindRelay(r) => relay.relay_bound(now, r.allocation, r.addr, Ok(())),
                Output::Transmit(Transmit::Client { bytes, .. }) => {
                    let m = Message::decode(&bytes).unwrap();
                    for a in m.attributes().flatten() {
                        match a {
                            Attribute::Nonce(n) => nonce = n.to_string(),
                            Attribute::XorRelayedAddress(r) => relayed = Some(r),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    (relay, now, tuple, relayed.unwrap())
}

fuzz_target!(|data: &[u8]| {
    let (mut relay, mut now, tuple, relayed) = setup();
    let mut out = [0u8; 256];
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        match i % 4 {
            0 | 1 => relay.handle_client_datagram(
                now,
                ClientDatagram {
                    transport: tuple.transport,
                    client: tuple.client,
                    server: tuple.server,
                    bytes: chunk,
                },
            ),
            2 => {
                let _ = relay.relay_peer_datagram(
                    now,
                    relayed,
                    "203.0.113.5:4000".parse().unwrap(),
                    chunk,
                    &mut out,
                );
            }
            _ => {
                now += Duration::from_secs(u64::from(chunk.first().copied().unwrap_or(0)));
                relay.handle_timeout(now);
            }
        }
        while relay.poll_output().is_some() {}
    }
});
