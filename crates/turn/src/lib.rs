//! Sans-IO TURN relay core (RFC 8656, RFC 5766, RFC 6156) and its MS-TURN dialect ([MS-TURN],
//! MS-TURNBWM) for Vienna.
//!
//! [`Relay`] is a state machine: it never reads a clock, opens a socket or spawns a task. Time is
//! an argument of every call. The driver (the `vienna` binary's tokio code) feeds it datagrams
//! and drains [`Output`]s.
//!
//! # Driver loop
//! ```text
//! loop {
//!     wait for: client datagram | peer datagram on a relayed socket | relay_bound result | poll_timeout()
//!     client datagram: if classify(bytes) == ChannelData -> relay.relay_channel_data(now, &tuple, bytes)
//!                          Ok(t) -> send bytes[t.payload] from t.relayed to t.peer
//!                      else relay.handle_client_datagram(now, ClientDatagram { .. })
//!     peer datagram:   relay.relay_peer_datagram(now, relayed, peer, payload, &mut buf)
//!                          Ok(t) -> send buf[..t.len] to t.tuple.client over t.tuple.transport
//!     timer:           relay.handle_timeout(now)
//!     while let Some(o) = relay.poll_output() {
//!         Transmit(t)        -> send it
//!         BindRelay(req)     -> bind a UDP socket on req.addr (set DF if req.dont_fragment),
//!                               then relay.relay_bound(now, req.allocation, req.addr, result)
//!         ReleaseRelay(addr) -> close the socket bound on addr
//!         Event(e)           -> log / metrics
//!     }
//! }
//! ```
//!
//! # Example
//! ```
//! use std::time::Instant;
//! use vienna_stun::{Class, Message, MessageBuilder, Method, TransactionId};
//! use vienna_turn::{ClientDatagram, Config, Output, Relay, SplitMix64, StaticUsers, Transmit, Transport};
//!
//! let now = Instant::now();
//! let config = Config::new("example.org", "198.51.100.1".parse().unwrap());
//! let users = StaticUsers::new().with_password("alice", "example.org", "secret");
//! let mut relay = Relay::new(config, users, SplitMix64(7), now, 1_800_000_000).unwrap();
//!
//! let request = MessageBuilder::new(Class::Request, Method::BINDING, TransactionId([1; 12])).finish();
//! relay.handle_client_datagram(now, ClientDatagram {
//!     transport: Transport::Udp,
//!     client: "192.0.2.1:5000".parse().unwrap(),
//!     server: "198.51.100.1:3478".parse().unwrap(),
//!     bytes: &request,
//! });
//! match relay.poll_output() {
//!     Some(Output::Transmit(Transmit::Client { bytes, .. })) => {
//!         assert_eq!(Message::decode(&bytes).unwrap().class(), Class::Success);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```
//!
//! # Relayed sockets: two-phase allocation
//! The core cannot bind sockets, so an Allocate that passes authentication and policy takes a
//! port from [`Config::min_port`]..=[`Config::max_port`] (even with EVEN-PORT, with port+1
//! reserved under a RESERVATION-TOKEN when the R bit is set) and emits [`Output::BindRelay`] per
//! address family. The driver binds and answers with [`Relay::relay_bound`]. On
//! [`BindFailure::AddrInUse`] the core tries another port (up to [`Config::bind_attempts`]); when
//! every requested family is resolved it sends the Allocate success (or 508). If the driver does
//! not answer within [`Config::bind_timeout`] the client gets 508 and any late bind is released.
//!
//! # Hot path
//! [`Relay::relay_channel_data`] (client to peer) returns the payload range inside the received
//! buffer and the destination; [`Relay::relay_peer_datagram`] (peer to client) writes a
//! ChannelData frame (or a Data indication when no channel is bound) into a caller-owned buffer.
//! Neither allocates nor parses STUN; each costs one hash lookup for the allocation plus one for
//! the channel/permission.
//!
//! # Several workers
//! Run one `Relay` per worker thread (a 5-tuple and its relayed sockets stay on one worker, so
//! the packet path takes no lock). Give each worker a disjoint port range and the same
//! [`Config::nonce_secret`], so a nonce issued by one worker is accepted by another.
//!
//! # Stream transports
//! For TCP/TLS clients the driver cuts the byte stream into frames with
//! [`vienna_stun::frame_len`] and feeds each frame as one [`ClientDatagram`]; it calls
//! [`Relay::client_disconnected`] when the connection closes.
//!
//! # Implemented
//! RFC 8656 §5-§12 for UDP relaying: Allocate (REQUESTED-TRANSPORT, DONT-FRAGMENT, EVEN-PORT,
//! RESERVATION-TOKEN, REQUESTED-ADDRESS-FAMILY, ADDITIONAL-ADDRESS-FAMILY with ADDRESS-ERROR-CODE,
//! LIFETIME, retransmission answered from cache), Refresh (0 deletes), CreatePermission,
//! ChannelBind, Send/Data indications, ChannelData; Binding (RFC 8489) for anyone; long-term
//! credentials with stateless nonces (RFC 8489 §9.2) and TURN REST ephemeral credentials;
//! quotas, peer policy, per-allocation bandwidth cap, counters and events.
//!
//! MS-TURN on the same ports (the dialect is told per message, see the `relay::msturn` module's
//! documentation): Allocate with refresh and delete, Send requests, Data Indications, Set Active
//! Destination and raw data, MS-SEQUENCE-NUMBER, MS-Version 1-6 integrity, MRAS tokens
//! ([`Config::mras`]), MS-TURNBWM; allocations made over TCP ask the driver for a TCP relayed address
//! ([`BindRequest::tcp`]). [`Relay::relay_client_packet`] is the one client-side hot path of both
//! dialects.
//!
//! # Left out (for now)
//! RFC 6062 TCP relaying (CONNECT/ConnectionBind), RFC 7635 OAuth, the RFC 8489
//! PASSWORD-ALGORITHMS negotiation and USERHASH lookup, SASLprep, sending ICMP attributes to
//! clients, Refresh of one family of a dual allocation (a Refresh covers both), and cutting a live
//! allocation short when a long-term (store) credential is revoked: the allocation keeps the key
//! it was created with. REST credential expiry is checked on every request and, with
//! [`Config::strict_rest_expiry`], also caps allocation lifetimes.

mod config;
pub mod counters;
pub mod credentials;
mod hash;
pub mod nonce;
pub mod policy;
pub mod ports;
pub mod quota;
mod relay;

use std::net::SocketAddr;
use std::time::Duration;

pub use config::Config;
pub use counters::{Counters, DropReason, MsCounters};
pub use credentials::{CredentialStore, StaticUsers};
pub use policy::{IpCidr, PeerPolicy};
pub use relay::Relay;

/// Errors of this crate (configuration only: network input never produces an `Err` that
/// escapes, it is answered or dropped and counted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration is inconsistent.
    #[error("invalid relay configuration: {0}")]
    Config(&'static str),
}

/// Client-side transport of a 5-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (ChannelData padded to 4 bytes).
    Tcp,
    /// TLS over TCP (ChannelData padded to 4 bytes).
    Tls,
}

impl Transport {
    /// Whether this is a stream transport (ChannelData must be padded).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// The client 5-tuple that identifies an allocation (RFC 8656 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Transport between client and server.
    pub transport: Transport,
    /// Client address as the server sees it.
    pub client: SocketAddr,
    /// Server address the client sent to.
    pub server: SocketAddr,
}

/// One datagram (UDP) or one frame (TCP/TLS, delimited with [`vienna_stun::frame_len`]) from a
/// client.
#[derive(Clone, Copy, Debug)]
pub struct ClientDatagram<'a> {
    /// Transport it came over.
    pub transport: Transport,
    /// Client address.
    pub client: SocketAddr,
    /// Local (server) address it arrived on.
    pub server: SocketAddr,
    /// The bytes.
    pub bytes: &'a [u8],
}

impl ClientDatagram<'_> {
    /// The 5-tuple it belongs to.
    pub fn tuple(&self) -> FiveTuple {
        FiveTuple { transport: self.transport, client: self.client, server: self.server }
    }
}

/// Identifies an allocation in events and in the bind handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationId(pub u64);

/// Something to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// To a client over its 5-tuple.
    Client {
        /// The 5-tuple.
        tuple: FiveTuple,
        /// Bytes (a STUN message or ChannelData frame).
        bytes: Vec<u8>,
    },
    /// To a peer from a relayed address (UDP).
    Peer {
        /// Relayed address to send from.
        relayed: SocketAddr,
        /// Peer address.
        peer: SocketAddr,
        /// Payload.
        bytes: Vec<u8>,
    },
}

/// Request to bind a relayed UDP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindRequest {
    /// The allocation being created (pass back to [`Relay::relay_bound`]).
    pub allocation: AllocationId,
    /// Address and port to bind.
    pub addr: SocketAddr,
    /// Set the DF bit / IPV6_DONTFRAG on the socket (client sent DONT-FRAGMENT).
    pub dont_fragment: bool,
    /// A TCP relayed address (an MS-TURN allocation made over TCP): listen on `addr` for peers,
    /// connect to peers from it when the client first sends to them, and frame each datagram on those
    /// connections with a 2-byte length (RFC 4571, as ICE-TCP does), instead of binding a UDP socket.
    pub tcp: bool,
}

/// Why the driver could not bind a relayed socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindFailure {
    /// The port is taken by someone else: the core tries another port.
    AddrInUse,
    /// Any other error: the family fails with 508.
    Other,
}

/// Quota kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// Per-username allocation quota (486).
    User,
    /// Total allocation quota (508 / 300).
    Total,
    /// Relay ports exhausted (508).
    Ports,
    /// The relay is draining (300 / 508), see [`Relay::set_draining`].
    Draining,
}

/// A live allocation as shown by [`Relay::allocations`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationInfo<'a> {
    /// Id.
    pub id: AllocationId,
    /// Client 5-tuple.
    pub tuple: FiveTuple,
    /// Authenticated username.
    pub username: &'a str,
    /// IPv4 relayed address.
    pub relayed_v4: Option<SocketAddr>,
    /// IPv6 relayed address.
    pub relayed_v6: Option<SocketAddr>,
    /// When it expires unless refreshed.
    pub expires: std::time::Instant,
    /// Installed permissions (including any not yet purged after expiry).
    pub permissions: usize,
    /// Channel bindings (including any not yet purged after expiry).
    pub channels: usize,
    /// TURN REST credential expiry (Unix seconds), if authenticated that way.
    pub rest_expiry: Option<u64>,
    /// An MS-TURN allocation (else RFC 8656).
    pub msturn: bool,
}

/// Why a request failed authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown username.
    UnknownUser,
    /// MESSAGE-INTEGRITY did not verify.
    BadIntegrity,
    /// TURN REST username past its expiry.
    Expired,
    /// REALM differs from ours.
    WrongRealm,
    /// Username differs from the allocation's (441).
    WrongUser,
}

/// Something the driver may log or count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An allocation was created.
    AllocationCreated {
        /// Id.
        id: AllocationId,
        /// Client 5-tuple.
        tuple: FiveTuple,
        /// Authenticated username.
        username: String,
        /// Relayed addresses.
        relayed: Vec<SocketAddr>,
        /// Granted lifetime.
        lifetime: Duration,
    },
    /// A Refresh extended an allocation.
    AllocationRefreshed {
        /// Id.
        id: AllocationId,
        /// New lifetime.
        lifetime: Duration,
    },
    /// An allocation timed out.
    AllocationExpired {
        /// Id.
        id: AllocationId,
    },
    /// A Refresh with lifetime 0 deleted an allocation.
    AllocationDeleted {
        /// Id.
        id: AllocationId,
    },
    /// A request failed authentication.
    AuthFailed {
        /// Client address.
        client: SocketAddr,
        /// Username it claimed.
        username: String,
        /// Why.
        reason: AuthFailure,
    },
    /// A quota was hit.
    QuotaExceeded {
        /// Username.
        username: String,
        /// Which quota.
        quota: Quota,
    },
    /// A datagram handed to `handle_client_datagram`/`handle_peer_datagram` was dropped.
    Dropped {
        /// Source address.
        from: SocketAddr,
        /// Why.
        reason: DropReason,
    },
}

/// What [`Relay::poll_output`] hands the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this.
    Transmit(Transmit),
    /// Bind a relayed socket and report with [`Relay::relay_bound`].
    BindRelay(BindRequest),
    /// Close the relayed socket bound on this address.
    ReleaseRelay(SocketAddr),
    /// Informational event.
    Event(Event),
}

/// Client to peer forwarding decision of the hot path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTransmit {
    /// Relayed address to send from.
    pub relayed: SocketAddr,
    /// Peer to send to.
    pub peer: SocketAddr,
    /// Payload location inside the buffer given to [`Relay::relay_channel_data`].
    pub payload: std::ops::Range<usize>,
}

/// Why [`Relay::relay_client_packet`] did not forward a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotForwarded {
    /// A control message: hand it to [`Relay::handle_client_datagram`].
    Control,
    /// Dropped (and counted) for this reason.
    Dropped(DropReason),
}

/// Peer to client forwarding decision of the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTransmit {
    /// Client 5-tuple to send over.
    pub tuple: FiveTuple,
    /// Bytes written at the start of the output buffer.
    pub len: usize,
}

/// Source of randomness (nonce secret, ports, reservation tokens). The driver passes a CSPRNG
/// (e.g. `rand::rng()`); tests pass [`SplitMix64`] for determinism.
pub trait Entropy {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Deterministic, NOT cryptographic generator for tests and benchmarks.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl Entropy for SplitMix64 {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}
