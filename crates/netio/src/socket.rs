//! Creating UDP sockets for the media plane (and the TCP sockets of relayed TCP addresses).

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

/// Sets the Don't Fragment behaviour on a UDP socket (`IP_MTU_DISCOVER = IP_PMTUDISC_DO` for IPv4,
/// `IPV6_DONTFRAG` for IPv6), as TURN's DONT-FRAGMENT attribute asks (RFC 8656 §14.8).
pub fn set_dont_fragment(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if socket.local_addr()?.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
    };
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int on the stack.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A non-blocking TCP listener for a relayed TCP address (MS-TURN allocations made over TCP):
/// `SO_REUSEADDR` and `SO_REUSEPORT`, so connections the relay opens to peers can leave from the same
/// address ([`connect_from`]).
pub fn bind_tcp_relay(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    Ok(socket.into())
}

/// Starts a non-blocking TCP connection from `local` (a relayed address with a [`bind_tcp_relay`]
/// listener) to `peer`; it completes when the socket turns writable.
pub fn connect_from(local: SocketAddr, peer: SocketAddr) -> io::Result<std::net::TcpStream> {
    let socket = Socket::new(Domain::for_address(local), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    if local.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&local.into())?;
    match socket.connect(&peer.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dont_fragment_sets_on_both_families() {
        let v4 = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        set_dont_fragment(&v4).unwrap();
        if let Ok(v6) = bind_udp("[::1]:0".parse().unwrap(), UdpOptions::default()) {
            set_dont_fragment(&v6).unwrap();
        }
    }
}
