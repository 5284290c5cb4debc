//! Creating UDP sockets for the media plane.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// How to set up a UDP socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpOptions {
    /// `SO_REUSEPORT`: several sockets (one per worker) share the port and the kernel spreads flows
    /// over them by 4-tuple hash.
    pub reuse_port: bool,
    /// `SO_RCVBUF` in bytes; 0 keeps the system default.
    pub recv_buffer: usize,
    /// `SO_SNDBUF` in bytes; 0 keeps the system default.
    pub send_buffer: usize,
}

/// Binds a non-blocking UDP socket. IPv6 sockets are IPv6-only, so IPv4 and IPv6 listeners can share a
/// port number.
pub fn bind_udp(addr: SocketAddr, options: UdpOptions) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM.nonblocking(), Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if options.recv_buffer > 0 {
        socket.set_recv_buffer_size(options.recv_buffer)?;
    }
    if options.send_buffer > 0 {
        socket.set_send_buffer_size(options.send_buffer)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
