//! MS-TURN: arbitrary bytes through the codec (decode, attributes, integrity, TCP framing, pseudo-TLS),
//! then as client datagrams, peer datagrams and clock jumps into a relay holding one MS-TURN allocation
//! (MRAS credentials) with an active destination; nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vienna_edge_auth::MrasKeys;
use vienna_stun::msturn::{self, Builder, Hash, Message, SequenceNumber, TransactionId, attr, types};
use vienna_turn::{ClientDatagram, Config, FiveTuple, Output, Relay, SplitMix64, StaticUsers, Transmit, Transport};

const REALM: &str = "fuzz";

fn feed(relay: &mut Relay, now: Instant, tuple: &FiveTuple, bytes: &[u8]) -> Vec<Vec<u8>> {
    relay.handle_client_datagram(
        now,
        ClientDatagram { transport: tuple.transport, client: tuple.client, server: tuple.server, bytes },
    );
    let mut out = Vec::new();
    while let Some(o) = relay.poll_output() {
        match o {
            Output::BindRelay(r) => relay.relay_bound(now, r.allocation, r.addr, Ok(())),
            Output::Transmit(Transmit::Client { bytes, .. }) => out.push(bytes),
            _ => {}
        }
    }
    out
}

fn setup() -> (Relay, Instant, FiveTuple, SocketAddr) {
    let now = Instant::now();
    let keys = MrasKeys::derive(b"fuzz");
    let mut cfg = Config::new(REALM, "198.51.100.1".parse().unwrap());
    cfg.mras = Some(keys.clone());
    cfg.peer_policy.allow = vec!["203.0.113.0/24".parse().unwrap()];
    let mut relay = Relay::new(cfg, StaticUsers::new(), SplitMix64(1), now, 1_800_000_000).unwrap();
    let tuple = FiveTuple {
        transport: Transport::Udp,
        client: "192.0.2.1:1000".parse().unwrap(),
        server: "198.51.100.1:3478".parse().unwrap(),
    };
    let token = keys.mint("sip:a@fuzz", 1_800_000_000 + 3600);
    let key = msturn::key_v1(&token.username, REALM.as_bytes(), &token.password);
    let first = Builder::new(types::ALLOCATE_REQUEST, TransactionId([1; 16]), false).finish();
    let challenge = feed(&mut relay, now, &tuple, &first).remove(0);
    let nonce = Message::decode(&challenge).unwrap().get(attr::NONCE).unwrap().to_vec();
    let mut b = Builder::new(types::ALLOCATE_REQUEST, TransactionId([2; 16]), false);
    b.add(attr::REALM, REALM.as_bytes()).unwrap();
    b.add(attr::NONCE, &nonce).unwrap();
    b.add(attr::USERNAME, &token.username).unwrap();
    b.add_integrity(Hash::Sha1, &key).unwrap();
    let ok = feed(&mut relay, now, &tuple, &b.finish()).remove(0);
    let ok = Message::decode(&ok).unwrap();
    let relayed = ok.get_address(attr::MAPPED_ADDRESS).unwrap().unwrap();
    let mut seq = ok.sequence_number().unwrap().unwrap();
    seq.number += 1;
    let peer: SocketAddr = "203.0.113.5:4000".parse().unwrap();
    let mut dest = [0u8; 8];
    msturn::write_address(peer, &mut dest);
    let mut sad = Builder::new(types::SET_ACTIVE_DESTINATION_REQUEST, TransactionId([3; 16]), false);
    sad.add(attr::USERNAME, &token.username).unwrap();
    sad.add(attr::DESTINATION_ADDRESS, &dest).unwrap();
    sad.add(attr::MS_SEQUENCE_NUMBER, &SequenceNumber { ..seq }.encode()).unwrap();
    sad.add_integrity(Hash::Sha1, &key).unwrap();
    feed(&mut relay, now, &tuple, &sad.finish());
    (relay, now, tuple, relayed)
}

fuzz_target!(|data: &[u8]| {
    let _ = msturn::is_msturn(data);
    let _ = msturn::tcp_frame(data);
    let _ = msturn::pseudo_tls_client_hello(data);
    if let Ok(m) = Message::decode(data) {
        for a in m.attributes() {
            let _ = a;
        }
        let _ = m.unknown_required().count();
        let _ = m.verify(&[0; 16]);
        let _ = m.verify(&[0; 32]);
        let _ = m.sequence_number();
        let _ = m.error_code();
        let _ = m.get_xor_address(attr::XOR_MAPPED_ADDRESS);
        let _ = m.get_u32(attr::LIFETIME);
    }
    let (mut relay, mut now, tuple, relayed) = setup();
    let mut out = [0u8; 256];
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        match i % 4 {
            0 => {
                let _ = relay.relay_client_packet(now, &tuple, chunk);
            }
            1 => {
                feed(&mut relay, now, &tuple, chunk);
            }
            2 => {
                let _ = relay.relay_peer_datagram(now, relayed, "203.0.113.5:4000".parse().unwrap(), chunk, &mut out);
            }
            _ => {
                now += Duration::from_secs(u64::from(chunk.first().copied().unwrap_or(0)));
                relay.handle_timeout(now);
            }
        }
        while relay.poll_output().is_some() {}
    }
});
