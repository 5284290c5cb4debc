//! Test harness for the relay core: a fake clock, simulated clients that speak STUN with
//! long-term credentials, simulated peers, and a fake driver that binds relayed sockets.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use vienna_stun::attributes::{self as attr, Attribute};
use vienna_stun::integrity::long_term_key;
use vienna_stun::{Class, Message, MessageBuilder, Method, TransactionId};
use vienna_turn::{
    BindFailure, BindRequest, ClientDatagram, Config, Event, FiveTuple, Output, Relay, SplitMix64, StaticUsers,
    Transmit, Transport,
};

pub const REALM: &str = "vienna.test";
pub const UNIX0: u64 = 1_800_000_000;
pub const RELAY_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

pub fn config() -> Config {
    let mut c = Config::new(REALM, RELAY_V4);
    c.software = Some("Vienna test".into());
    c
}

/// A decoded response (owned bytes; accessors decode on demand).
#[derive(Clone, Debug)]
pub struct Resp(pub Vec<u8>);

impl Resp {
    pub fn msg(&self) -> Message<'_> {
        Message::decode(&self.0).expect("relay sent a valid STUN message")
    }
    pub fn class(&self) -> Class {
        self.msg().class()
    }
    pub fn is_success(&self) -> bool {
        self.class() == Class::Success
    }
    pub fn code(&self) -> Option<u16> {
        match self.msg().get(attr::ERROR_CODE)? {
            Ok(Attribute::ErrorCode(e)) => Some(e.code),
            _ => None,
        }
    }
    pub fn all(&self) -> Vec<Attribute<'_>> {
        self.msg().attributes().map(|a| a.unwrap()).collect()
    }
    pub fn relayed(&self) -> Vec<SocketAddr> {
        self.all()
            .into_iter()
            .filter_map(|a| if let Attribute::XorRelayedAddress(x) = a { Some(x) } else { None })
            .collect()
    }
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.all().into_iter().find_map(|a| if let Attribute::XorMappedAddress(x) = a { Some(x) } else { None })
    }
    pub fn lifetime(&self) -> Option<u32> {
        self.all().into_iter().find_map(|a| if let Attribute::Lifetime(x) = a { Some(x) } else { None })
    }
    pub fn nonce(&self) -> Option<String> {
        self.all().into_iter().find_map(|a| if let Attribute::Nonce(x) = a { Some(x.to_string()) } else { None })
    }
    pub fn realm(&self) -> Option<String> {
        self.all().into_iter().find_map(|a| if let Attribute::Realm(x) = a { Some(x.to_string()) } else { None })
    }
    pub fn token(&self) -> Option<[u8; 8]> {
        self.all().into_iter().find_map(|a| if let Attribute::ReservationToken(x) = a { Some(x) } else { None })
    }
    pub fn alternate(&self) -> Option<SocketAddr> {
        self.all().into_iter().find_map(|a| if let Attribute::AlternateServer(x) = a { Some(x) } else { None })
    }
    pub fn address_error(&self) -> Option<u16> {
        self.all()
            .into_iter()
            .find_map(|a| if let Attribute::AddressErrorCode { error, .. } = a { Some(error.code) } else { None })
    }
    pub fn unknown_attributes(&self) -> Vec<u16> {
        self.all()
            .into_iter()
            .find_map(|a| if let Attribute::UnknownAttributes(x) = a { Some(x.to_vec()) } else { None })
            .unwrap_or_default()
    }
    pub fn software(&self) -> Option<String> {
        self.all().into_iter().find_map(|a| if let Attribute::Software(x) = a { Some(x.to_string()) } else { None })
    }
    pub fn integrity_ok(&self, key: &[u8]) -> bool {
        self.msg().verify_integrity(key).is_some()
    }
    pub fn has_integrity(&self) -> bool {
        self.msg().has_integrity()
    }
    pub fn fingerprint_ok(&self) -> bool {
        self.msg().check_fingerprint() == Some(true)
    }
}

/// A simulated TURN client on one 5-tuple.
#[derive(Clone, Debug)]
pub struct Client {
    pub tuple: FiveTuple,
    pub username: String,
    pub key: [u8; 16],
    pub nonce: Option<String>,
    /// Protect requests with MESSAGE-INTEGRITY-SHA256 instead of MESSAGE-INTEGRITY.
    pub sha256: bool,
    next_txid: u64,
}

impl Client {
    pub fn new(client: &str, username: &str, password: &str) -> Client {
        Client::with_transport(client, username, password, Transport::Udp)
    }
    pub fn with_transport(client: &str, username: &str, password: &str, transport: Transport) -> Client {
        Client {
            tuple: FiveTuple {
                transport,
                client: client.parse().unwrap(),
                server: SocketAddr::new(IpAddr::V4(RELAY_V4), 3478),
            },
            username: username.into(),
            key: long_term_key(username, REALM, password),
            nonce: None,
            sha256: false,
            next_txid: u64::from(client.len() as u32) << 40,
        }
    }

    pub fn txid(&mut self) -> TransactionId {
        self.next_txid += 1;
        let mut t = [0u8; 12];
        t[4..].copy_from_slice(&self.next_txid.to_be_bytes());
        t[0] = self.tuple.client.port() as u8;
        TransactionId(t)
    }

    /// A request; with credentials once a nonce is known.
    pub fn request(&mut self, method: Method, attrs: &[Attribute<'_>], txid: TransactionId) -> Vec<u8> {
        let mut b = MessageBuilder::new(Class::Request, method, txid);
        for a in attrs {
            b.add(a).unwrap();
        }
        if let Some(n) = &self.nonce {
            b.add(&Attribute::Username(&self.username)).unwrap();
            b.add(&Attribute::Realm(REALM)).unwrap();
            b.add(&Attribute::Nonce(n)).unwrap();
            if self.sha256 {
                b.add_message_integrity_sha256(&self.key);
            } else {
                b.add_message_integrity(&self.key);
            }
        }
        b.add_fingerprint();
        b.finish()
    }
}

/// Fake driver + clock around a [`Relay`].
pub struct Harness {
    pub relay: Relay,
    pub now: Instant,
    pub auto_bind: bool,
    /// Results the fake driver gives to the next binds (then `Ok`).
    pub bind_script: std::collections::VecDeque<Result<(), BindFailure>>,
    pub to_clients: Vec<(FiveTuple, Vec<u8>)>,
    pub to_peers: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub binds: Vec<BindRequest>,
    pub released: Vec<SocketAddr>,
    pub events: Vec<Event>,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        let users = StaticUsers::new().with_password("alice", REALM, "alice-pw").with_password("bob", REALM, "bob-pw");
        Harness::with_users(config, users)
    }

    pub fn with_users(config: Config, users: impl vienna_turn::CredentialStore + Send + 'static) -> Harness {
        let now = Instant::now();
        let relay = Relay::new(config, users, SplitMix64(42), now, UNIX0).unwrap();
        Harness {
            relay,
            now,
            auto_bind: true,
            bind_script: Default::default(),
            to_clients: vec![],
            to_peers: vec![],
            binds: vec![],
            released: vec![],
            events: vec![],
        }
    }

    pub fn unix_now(&self) -> u64 {
        UNIX0
    }

    /// Advance the fake clock and run timers.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.relay.handle_timeout(self.now);
        self.drain();
    }

    pub fn drain(&mut self) {
        while let Some(o) = self.relay.poll_output() {
            match o {
                Output::Transmit(Transmit::Client { tuple, bytes }) => self.to_clients.push((tuple, bytes)),
                Output::Transmit(Transmit::Peer { relayed, peer, bytes }) => self.to_peers.push((relayed, peer, bytes)),
                Output::BindRelay(req) => {
                    if self.auto_bind {
                        let result = self.bind_script.pop_front().unwrap_or(Ok(()));
                        self.relay.relay_bound(self.now, req.allocation, req.addr, result);
                    }
                    self.binds.push(req);
                }
                Output::ReleaseRelay(a) => self.released.push(a),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    pub fn bound(&mut self, req: BindRequest, result: Result<(), BindFailure>) {
        self.relay.relay_bound(self.now, req.allocation, req.addr, result);
        self.drain();
    }

    /// Feed raw bytes from a client; returns what the relay sent back to that 5-tuple.
    pub fn feed(&mut self, c: &FiveTuple, bytes: &[u8]) -> Vec<Resp> {
        let start = self.to_clients.len();
        self.relay.handle_client_datagram(
            self.now,
            ClientDatagram { transport: c.transport, client: c.client, server: c.server, bytes },
        );
        self.drain();
        self.to_clients[start..].iter().filter(|(t, _)| t == c).map(|(_, b)| Resp(b.clone())).collect()
    }

    /// Send a request and expect exactly one response.
    pub fn call(&mut self, c: &mut Client, method: Method, attrs: &[Attribute<'_>]) -> Resp {
        let txid = c.txid();
        let bytes = c.request(method, attrs, txid);
        let mut r = self.feed(&c.tuple, &bytes);
        assert_eq!(r.len(), 1, "expected one response, got {r:?}");
        let r = r.remove(0);
        assert_eq!(r.msg().transaction_id(), txid);
        assert!(r.fingerprint_ok(), "every response carries a valid FINGERPRINT");
        r
    }

    /// The 401 dance then the authenticated request (any method).
    pub fn call_auth(&mut self, c: &mut Client, method: Method, attrs: &[Attribute<'_>]) -> Resp {
        if c.nonce.is_none() {
            let r = self.call(c, method, attrs);
            assert_eq!(r.code(), Some(401));
            assert_eq!(r.realm().as_deref(), Some(REALM));
            assert!(!r.has_integrity());
            c.nonce = r.nonce();
        }
        self.call(c, method, attrs)
    }

    /// Authenticated UDP Allocate.
    pub fn allocate(&mut self, c: &mut Client, extra: &[Attribute<'_>]) -> Resp {
        let mut attrs = vec![Attribute::RequestedTransport(17)];
        attrs.extend_from_slice(extra);
        self.call_auth(c, Method::ALLOCATE, &attrs)
    }

    pub fn create_permission(&mut self, c: &mut Client, peer: &str) -> Resp {
        self.call(c, Method::CREATE_PERMISSION, &[Attribute::XorPeerAddress(peer.parse().unwrap())])
    }

    pub fn channel_bind(&mut self, c: &mut Client, ch: u16, peer: &str) -> Resp {
        self.call(
            c,
            Method::CHANNEL_BIND,
            &[Attribute::ChannelNumber(ch), Attribute::XorPeerAddress(peer.parse().unwrap())],
        )
    }

    pub fn refresh(&mut self, c: &mut Client, lifetime: Option<u32>) -> Resp {
        let attrs: Vec<Attribute<'_>> = lifetime.map(Attribute::Lifetime).into_iter().collect();
        self.call(c, Method::REFRESH, &attrs)
    }

    /// A peer sends `payload` to `relayed`; returns what reached the client (if anything).
    pub fn peer_sends(&mut self, relayed: SocketAddr, peer: &str, payload: &[u8]) -> Option<(FiveTuple, Vec<u8>)> {
        let start = self.to_clients.len();
        self.relay.handle_peer_datagram(self.now, relayed, peer.parse().unwrap(), payload);
        self.drain();
        self.to_clients.get(start).cloned()
    }

    /// A client sends ChannelData; returns what reached a peer (if anything).
    pub fn channel_data(&mut self, c: &Client, ch: u16, payload: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        let mut buf = vec![0u8; payload.len() + 8];
        let n = vienna_stun::channel_data::write(ch, payload, &mut buf, c.tuple.transport.is_stream()).unwrap();
        let start = self.to_peers.len();
        self.feed(&c.tuple, &buf[..n]);
        self.to_peers.get(start).cloned()
    }

    pub fn send_indication(
        &mut self,
        c: &mut Client,
        peer: &str,
        data: &[u8],
    ) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        let txid = c.txid();
        let mut b = MessageBuilder::new(Class::Indication, Method::SEND, txid);
        b.add(&Attribute::XorPeerAddress(peer.parse().unwrap())).unwrap();
        b.add(&Attribute::Data(data)).unwrap();
        b.add_fingerprint();
        let start = self.to_peers.len();
        let bytes = b.finish();
        self.feed(&c.tuple, &bytes);
        self.to_peers.get(start).cloned()
    }

    pub fn has_event(&self, f: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(f)
    }
}
