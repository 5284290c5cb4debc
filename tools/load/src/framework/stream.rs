//! A load thread's stream connection to the server (TCP, or TLS over TCP): connected and, for TLS,
//! handshaken before it joins the thread's poll loop; then non-blocking plaintext reads and buffered
//! writes, whatever the protocol framed on top of it (SIP by Content-Length, TURN by STUN and ChannelData
//! lengths).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mio::{Interest, Registry, Token};

use super::tls::TlsClient;

/// How long connecting (and the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected stream, with its TLS session when the run uses TLS; not yet in a poll.
pub struct Connected {
    stream: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
}

/// Connects to `target` (Nagle off) and, with `tls`, runs the TLS handshake.
pub fn connect(target: SocketAddr, tls: Option<&TlsClient>) -> anyhow::Result<Connected> {
    let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)
        .map_err(|e| anyhow::anyhow!("connecting to {target} over TCP: {e}"))?;
    stream.set_nodelay(true)?;
    let tls = match tls {
        Some(tls) => Some(Box::new(tls.handshake(&mut stream, CONNECT_TIMEOUT)?)),
        None => None,
    };
    stream.set_nonblocking(true)?;
    Ok(Connected { stream, tls })
}

impl Connected {
    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Registers the connection for reading with `registry` under `token`.
    pub fn register(self, registry: &Registry, token: Token) -> io::Result<StreamConn> {
        let mut stream = mio::net::TcpStream::from_std(self.stream);
        registry.register(&mut stream, token, Interest::READABLE)?;
        Ok(StreamConn { stream, tls: self.tls, wbuf: Vec::new(), writable_interest: false, closed: false, token })
    }
}

/// A registered stream connection: plaintext in, plaintext out.
pub struct StreamConn {
    stream: mio::net::TcpStream,
    /// The TLS session over `stream`; `wbuf` and what is read are plaintext.
    tls: Option<Box<rustls::ClientConnection>>,
    /// Plaintext waiting to be written.
    pub wbuf: Vec<u8>,
    writable_interest: bool,
    closed: bool,
    token: Token,
}

impl StreamConn {
    /// Whether the connection was closed (by the server, an error, or [`StreamConn::close`]).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether anything waits to be written: plaintext not yet taken, or TLS records not yet sent.
    pub fn has_output(&self) -> bool {
        vienna_netio::wants_write(self.tls.as_deref().map(|t| &**t), &self.wbuf)
    }

    /// Reads plaintext into `buf`: `Ok(0)` when the server closed, `WouldBlock` when nothing more is there.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        vienna_netio::read_plain(&mut self.stream, self.tls.as_deref_mut().map(|t| &mut **t), buf)
    }

    /// Writes what can be written without blocking, and asks `registry` for writability while something
    /// is left. A closed connection drops what was queued.
    pub fn flush(&mut self, registry: &Registry) {
        if self.closed {
            self.wbuf.clear();
            return;
        }
        // A failed connection shows as a read error or end of stream on the next readiness.
        let _ = vienna_netio::write_plain(&mut self.stream, self.tls.as_deref_mut().map(|t| &mut **t), &mut self.wbuf);
        let want = self.has_output();
        if want != self.writable_interest {
            self.writable_interest = want;
            let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let _ = registry.reregister(&mut self.stream, self.token, interest);
        }
    }

    /// Marks the connection closed and takes it out of `registry`.
    pub fn close(&mut self, registry: &Registry) {
        if !self.closed {
            self.closed = true;
            self.wbuf.clear();
            let _ = registry.deregister(&mut self.stream);
        }
    }
}
