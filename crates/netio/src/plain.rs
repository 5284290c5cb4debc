//! Plaintext over a non-blocking stream socket, with or without a rustls session on it (client or
//! server): one read and one write routine for every TCP/TLS connection a poll loop drives, so the
//! relay's stream clients and the load tool's connections handle `WouldBlock`, end of stream, TLS errors
//! and partial writes the same way.

use std::io::{self, Read, Write};

use rustls::ConnectionCommon;

/// Reads plaintext into `buf` (which must not be empty): `Ok(n)` bytes, `Ok(0)` when the peer closed the
/// stream, `WouldBlock` when nothing (more) is there. With TLS, records are read and decrypted until
/// plaintext comes or the socket has nothing; a TLS protocol error is `InvalidData`, after the alert rustls
/// queued for it has been sent.
pub fn read_plain<S: Read + Write, D>(
    stream: &mut S,
    tls: Option<&mut ConnectionCommon<D>>,
    buf: &mut [u8],
) -> io::Result<usize> {
    let Some(tls) = tls else { return stream.read(buf) };
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(stream)? == 0 {
            return Ok(0);
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = tls.write_tls(stream);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// Writes as much of `wbuf` as the socket takes now, through the TLS session if there is one (plaintext
/// waits in `wbuf` while the handshake runs; the handshake's own records go out); what was written
/// leaves `wbuf`. `Err` when the connection failed.
pub fn write_plain<S: Read + Write, D>(
    stream: &mut S,
    tls: Option<&mut ConnectionCommon<D>>,
    wbuf: &mut Vec<u8>,
) -> io::Result<()> {
    let Some(tls) = tls else {
        let mut written = 0;
        let result = loop {
            if written == wbuf.len() {
                break Ok(());
            }
            match stream.write(&wbuf[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        wbuf.drain(..written);
        return result;
    };
    loop {
        // rustls takes plaintext (once the handshake is done) up to its buffer limit, encrypted at once.
        let taken = if wbuf.is_empty() || tls.is_handshaking() { 0 } else { tls.writer().write(wbuf)? };
        wbuf.drain(..taken);
        while tls.wants_write() {
            match tls.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if wbuf.is_empty() || taken == 0 {
            return Ok(());
        }
    }
}

/// Whether anything waits to be written: plaintext in `wbuf`, or TLS records rustls has not sent yet.
pub fn wants_write<D>(tls: Option<&ConnectionCommon<D>>, wbuf: &[u8]) -> bool {
    !wbuf.is_empty() || tls.is_some_and(|t| t.wants_write())
}
