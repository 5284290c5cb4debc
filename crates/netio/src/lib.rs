//! Batched UDP I/O for the media plane and the SIP listener.
//!
//! [`RecvBatch`] receives up to [`BATCH`] datagrams with one `recvmmsg(2)` call into buffers it owns;
//! [`SendBatch`] queues datagrams into preallocated slots and sends them with one `sendmmsg(2)` call per
//! socket; [`send_many`] sends datagrams the caller holds without copying them. After construction none
//! allocates. Sockets are non-blocking; a full send buffer drops the rest of a batch (UDP semantics) and
//! reports how many were dropped, so the caller can count them. [`read_plain`] and [`write_plain`] move
//! plaintext over a non-blocking TCP socket, through a rustls session when there is one.
//!
//! Linux only. UDP GSO/GRO are not used yet: with one relayed socket per TURN allocation, consecutive
//! datagrams rarely share a destination, which is what GSO needs to pay off.

#![cfg(target_os = "linux")]

mod addr;
mod batch;
mod plain;
mod socket;

pub use addr::{from_sockaddr, to_sockaddr};
pub use batch::{BATCH, MAX_DATAGRAM, RecvBatch, SendBatch, SendOutcome, send_many};
pub use plain::{read_plain, wants_write, write_plain};
pub use socket::{UdpOptions, bind_tcp_relay, bind_udp, connect_from, set_dont_fragment};
