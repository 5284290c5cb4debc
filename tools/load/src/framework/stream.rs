//! A load thread's stream connection to the server (TCP, or TLS over TCP): connected and, for TLS,
//! handshaken before it joins the thread's poll loop; then non-blocking plaintext reads and buffered
//! writes, whatever the protocol framed on top of it (SIP by Content-Length, TURN by STUN and ChannelData
//! lengths).

use std::io::{self, Read, Write};
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
        !self.wbuf.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Reads plaintext into `buf`: `Ok(0)` when the server closed, `WouldBlock` when nothing more is there.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else { return self.stream.read(buf) };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.stream)? == 0 {
                return Ok(0);
            }
            tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }

    /// Writes what can be written without blocking, and asks `registry` for writability while something
    /// is left. A closed connection drops what was queued.
    pub fn flush(&mut self, registry: &Registry) {
        if self.closed {
            self.wbuf.clear();
            return;
        }
        self.write_out();
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

    fn write_out(&mut self) {
        let Some(tls) = &mut self.tls else {
            let mut written = 0;
            while written < self.wbuf.len() {
                match self.stream.write(&self.wbuf[written..]) {
                    Ok(0) => break,
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            self.wbuf.drain(..written);
            return;
        };
        loop {
            // rustls takes plaintext up to its buffer limit and encrypts it at once.
            let taken = if self.wbuf.is_empty() { 0 } else { tls.writer().write(&self.wbuf).unwrap_or(0) };
            self.wbuf.drain(..taken);
            let mut sent = false;
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => break,
                    Ok(_) => sent = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if self.wbuf.is_empty() || tls.wants_write() || (taken == 0 && !sent) {
                return;
            }
        }
    }
}
