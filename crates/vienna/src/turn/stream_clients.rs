//! Stream clients (TURN over TCP and TLS, RFC 8656 §3.1; MS-TURN's TCP framing and pseudo-TLS) inside the
//! relay worker that owns them: each connection is a non-blocking socket in the worker's poll, with its
//! TLS session (rustls, handshake driven by readiness), its framing told by the first bytes
//! ([`super::stream`]), and two buffers.
//!
//! Frames are handed to the relay core straight from the read buffer, and what goes back to the client
//! (ChannelData written by the core, control answers) is appended to the write buffer and written once per
//! turn of the worker's loop: no allocation, no lock and no cross-thread hop per packet, and one `write`
//! per connection per turn rather than one per frame.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use vienna_stun::msturn;
use vienna_turn::FiveTuple;

use super::shared::TurnShared;
use super::stream::{BAD_FRAMING, FRAME_TOO_LONG, Framing, IDLE_TIMEOUT, detect, next_frame};

/// Bytes queued to one client before more frames are dropped (its network or its reading is too slow).
const MAX_BACKLOG: usize = 1 << 20;
/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 16 << 10;
/// Reads from one connection per turn of the loop before the others get theirs.
pub const READ_BUDGET: usize = 16;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a read left the connection as.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Everything there was has been read.
    Drained,
    /// The read budget ran out with more to read: read again before sleeping.
    More,
    /// The connection is gone (the reason, for the log); its client's allocation must go too.
    Closed(&'static str),
}

struct StreamClient {
    stream: mio::net::TcpStream,
    tuple: FiveTuple,
    tls: Option<Box<rustls::ServerConnection>>,
    /// `None` until the first bytes tell.
    framing: Option<Framing>,
    rbuf: Vec<u8>,
    /// Plaintext to write (with TLS, handed to rustls at the next flush).
    wbuf: Vec<u8>,
    writable_interest: bool,
    queued: bool,
    last_read: Instant,
    opened: Instant,
}

/// A worker's stream clients.
pub struct StreamClients {
    conns: Vec<Option<StreamClient>>,
    free: Vec<usize>,
    by_tuple: HashMap<FiveTuple, usize>,
    /// Connections with something to write this turn.
    pending: Vec<usize>,
    first_token: usize,
    registry: Registry,
    shared: Arc<TurnShared>,
}

impl StreamClients {
    /// No clients yet; connection `slot` gets token `first_token + slot` in `registry`.
    pub fn new(registry: Registry, first_token: usize, shared: Arc<TurnShared>) -> Self {
        Self {
            conns: Vec::new(),
            free: Vec::new(),
            by_tuple: HashMap::new(),
            pending: Vec::new(),
            first_token,
            registry,
            shared,
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.by_tuple.len()
    }

    /// Takes an accepted connection into the poll; with `tls`, its TLS handshake starts with the first
    /// bytes the client sends.
    pub fn add(
        &mut self,
        stream: std::net::TcpStream,
        tuple: FiveTuple,
        tls: Option<Arc<rustls::ServerConfig>>,
        now: Instant,
    ) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        let tls = match tls {
            Some(config) => Some(Box::new(rustls::ServerConnection::new(config).map_err(io::Error::other)?)),
            None => None,
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut stream = mio::net::TcpStream::from_std(stream);
        if let Err(e) = self.registry.register(&mut stream, Token(self.first_token + slot), Interest::READABLE) {
            self.free.push(slot);
            return Err(e);
        }
        self.conns[slot] = Some(StreamClient {
            stream,
            tuple,
            tls,
            framing: None,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            writable_interest: false,
            queued: false,
            last_read: now,
            opened: now,
        });
        self.by_tuple.insert(tuple, slot);
        Ok(())
    }

    /// Reads what connection `slot` has (up to [`READ_BUDGET`] reads) and hands every whole frame to
    /// `on_frame` (MS-TURN's 4-byte header taken off).
    pub fn read(&mut self, slot: usize, now: Instant, mut on_frame: impl FnMut(FiveTuple, &[u8])) -> ReadOutcome {
        let Some(Some(c)) = self.conns.get_mut(slot) else { return ReadOutcome::Drained };
        let mut outcome = ReadOutcome::More;
        for _ in 0..READ_BUDGET {
            match c.read_some() {
                Ok(0) => {
                    outcome = ReadOutcome::Closed("closed by client");
                    break;
                }
                Ok(_) => c.last_read = now,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    outcome = ReadOutcome::Drained;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    outcome = ReadOutcome::Closed("TLS error");
                    break;
                }
                Err(_) => {
                    outcome = ReadOutcome::Closed("read error");
                    break;
                }
            }
        }
        if c.framing.is_none()
            && let Some(framing) = detect(&c.rbuf)
        {
            if framing == Framing::PseudoTls {
                c.rbuf.drain(..msturn::PSEUDO_TLS_CLIENT_HELLO_LEN);
                c.wbuf.extend_from_slice(&msturn::PSEUDO_TLS_SERVER_HELLO);
                self.shared.pseudo_tls_handshakes.fetch_add(1, Ordering::Relaxed);
            }
            if framing != Framing::Standard {
                self.shared.ms_stream_clients.fetch_add(1, Ordering::Relaxed);
            }
            c.framing = Some(framing);
        }
        if let Some(framing) = c.framing {
            let mut at = 0;
            loop {
                match next_frame(framing, &c.rbuf[at..]) {
                    Ok(Some((header, len))) => {
                        on_frame(c.tuple, &c.rbuf[at + header..at + len]);
                        at += len;
                    }
                    Ok(None) => break,
                    Err(reason) => {
                        self.shared.stream_framing_errors.fetch_add(1, Ordering::Relaxed);
                        debug_assert!(reason == BAD_FRAMING || reason == FRAME_TOO_LONG);
                        outcome = ReadOutcome::Closed(reason);
                        at = c.rbuf.len();
                        break;
                    }
                }
            }
            c.rbuf.drain(..at);
        }
        // The handshake's answers, the pseudo-TLS hello, a TLS alert: written with the turn's flush.
        if c.has_output() && !c.queued {
            c.queued = true;
            self.pending.push(slot);
        }
        outcome
    }

    /// Queues `frame` for the client of `tuple`; `false` (the frame dropped) when it has no connection
    /// here or its backlog is full.
    pub fn queue(&mut self, tuple: &FiveTuple, frame: &[u8]) -> bool {
        let Some(&slot) = self.by_tuple.get(tuple) else { return false };
        let Some(Some(c)) = self.conns.get_mut(slot) else { return false };
        if c.wbuf.len() + frame.len() > MAX_BACKLOG {
            return false;
        }
        if c.framing.is_some_and(|f| f != Framing::Standard) {
            c.wbuf.extend_from_slice(&msturn::tcp_header(frame));
        }
        c.wbuf.extend_from_slice(frame);
        if !c.queued {
            c.queued = true;
            self.pending.push(slot);
        }
        true
    }

    /// Writes what every connection has queued this turn; returns the clients whose connection failed
    /// on the way (closed here: their allocations must go).
    pub fn flush(&mut self, closed: &mut Vec<FiveTuple>) {
        let pending = std::mem::take(&mut self.pending);
        for &slot in &pending {
            if let Some(Some(c)) = self.conns.get_mut(slot) {
                c.queued = false;
            }
            self.flush_one(slot, closed);
        }
        self.pending = pending;
        self.pending.clear();
    }

    /// Writes what connection `slot` has (it became writable).
    pub fn flush_one(&mut self, slot: usize, closed: &mut Vec<FiveTuple>) {
        let Some(Some(c)) = self.conns.get_mut(slot) else { return };
        if c.write_out().is_err() {
            closed.extend(self.close(slot, "write error"));
            return;
        }
        let want = c.has_output();
        if want != c.writable_interest {
            c.writable_interest = want;
            let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let _ = self.registry.reregister(&mut c.stream, Token(self.first_token + slot), interest);
        }
    }

    /// Closes connection `slot`; returns its client.
    pub fn close(&mut self, slot: usize, reason: &'static str) -> Option<FiveTuple> {
        let mut c = self.conns.get_mut(slot)?.take()?;
        let _ = self.registry.deregister(&mut c.stream);
        self.by_tuple.remove(&c.tuple);
        self.free.push(slot);
        self.shared.stream_open.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(client = %c.tuple.client, transport = ?c.tuple.transport, reason, "turn: stream client gone");
        Some(c.tuple)
    }

    /// Closes connections silent for [`IDLE_TIMEOUT`] and TLS handshakes older than 10 s; returns their
    /// clients.
    pub fn sweep(&mut self, now: Instant, closed: &mut Vec<FiveTuple>) {
        for slot in 0..self.conns.len() {
            let Some(c) = &self.conns[slot] else { continue };
            let handshaking = c.tls.as_ref().is_some_and(|t| t.is_handshaking());
            if now.duration_since(c.last_read) >= IDLE_TIMEOUT {
                closed.extend(self.close(slot, "idle timeout"));
            } else if handshaking && now.duration_since(c.opened) >= HANDSHAKE_TIMEOUT {
                closed.extend(self.close(slot, "TLS handshake timed out"));
            }
        }
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&mut self) {
        for slot in 0..self.conns.len() {
            self.close(slot, "shutdown");
        }
    }
}

impl StreamClient {
    fn has_output(&self) -> bool {
        !self.wbuf.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// One read from the socket into `rbuf` (through the TLS session, if any): bytes of plaintext
    /// added, `Ok(0)` at the end of the stream, `WouldBlock` when there is nothing.
    fn read_some(&mut self) -> io::Result<usize> {
        let start = self.rbuf.len();
        let Some(tls) = &mut self.tls else {
            self.rbuf.resize(start + READ_CHUNK, 0);
            let read = self.stream.read(&mut self.rbuf[start..]);
            self.rbuf.truncate(start + *read.as_ref().unwrap_or(&0));
            return read;
        };
        if tls.read_tls(&mut self.stream)? == 0 {
            return Ok(0);
        }
        if let Err(e) = tls.process_new_packets() {
            // The alert rustls queued goes out before the connection closes.
            let _ = tls.write_tls(&mut self.stream);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        let mut chunk = [0u8; 4096];
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => return if self.rbuf.len() > start { Ok(self.rbuf.len() - start) } else { Ok(0) },
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                // No more plaintext for now; the TCP bytes were read (handshake records count as progress).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((self.rbuf.len() - start).max(1)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what can be written now; `Err` when the connection failed.
    fn write_out(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            let mut written = 0;
            let result = loop {
                if written == self.wbuf.len() {
                    break Ok(());
                }
                match self.stream.write(&self.wbuf[written..]) {
                    Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            self.wbuf.drain(..written);
            return result;
        };
        loop {
            // rustls takes plaintext (once the handshake is done) up to its buffer limit, encrypted at once.
            let taken =
                if self.wbuf.is_empty() || tls.is_handshaking() { 0 } else { tls.writer().write(&self.wbuf)? };
            self.wbuf.drain(..taken);
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.wbuf.is_empty() || taken == 0 {
                return Ok(());
            }
        }
    }
}
