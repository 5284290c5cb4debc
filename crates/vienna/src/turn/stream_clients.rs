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
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use vienna_stun::msturn;
use vienna_turn::FiveTuple;

use super::shared::TurnShared;
use super::stream::{Framing, IDLE_TIMEOUT, detect, next_frame};

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
    /// Read buffer: `rbuf[..rlen]` holds what was read and not yet framed; the rest is room for the next
    /// read, zeroed once when the buffer grows rather than before every read.
    rbuf: Vec<u8>,
    rlen: usize,
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
    dropped: u64,
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
            dropped: 0,
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
            rlen: 0,
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
            && let Some(framing) = detect(&c.rbuf[..c.rlen])
        {
            if framing == Framing::PseudoTls {
                c.consume(msturn::PSEUDO_TLS_CLIENT_HELLO_LEN);
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
                match next_frame(framing, &c.rbuf[at..c.rlen]) {
                    Ok(Some((header, len))) => {
                        on_frame(c.tuple, &c.rbuf[at + header..at + len]);
                        at += len;
                    }
                    Ok(None) => break,
                    Err(reason) => {
                        self.shared.stream_framing_errors.fetch_add(1, Ordering::Relaxed);
                        outcome = ReadOutcome::Closed(reason);
                        at = c.rlen;
                        break;
                    }
                }
            }
            c.consume(at);
        }
        // The handshake's answers, the pseudo-TLS hello, a TLS alert: written with the turn's flush.
        if c.has_output() {
            c.mark_pending(slot, &mut self.pending);
        }
        outcome
    }

    /// Queues `frame` for the client of `tuple`; `false` when it is dropped (and counted,
    /// [`StreamClients::dropped`]) because the client has no connection here or its backlog is full, as
    /// UDP would.
    pub fn queue(&mut self, tuple: &FiveTuple, frame: &[u8]) -> bool {
        let slot = self.by_tuple.get(tuple).copied();
        let Some((slot, c)) = slot.and_then(|slot| Some((slot, self.conns[slot].as_mut()?))) else {
            self.dropped += 1;
            return false;
        };
        if c.wbuf.len() + frame.len() > MAX_BACKLOG {
            self.dropped += 1;
            return false;
        }
        if c.framing.is_some_and(|f| f != Framing::Standard) {
            c.wbuf.extend_from_slice(&msturn::tcp_header(frame));
        }
        c.wbuf.extend_from_slice(frame);
        c.mark_pending(slot, &mut self.pending);
        true
    }

    /// Frames dropped by [`StreamClients::queue`] since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
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
        self.shared.free_stream_place();
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
    /// Puts connection `slot` (this one) on the turn's list to write, once.
    fn mark_pending(&mut self, slot: usize, pending: &mut Vec<usize>) {
        if !self.queued {
            self.queued = true;
            pending.push(slot);
        }
    }

    fn has_output(&self) -> bool {
        vienna_netio::wants_write(self.tls.as_deref().map(|t| &**t), &self.wbuf)
    }

    /// One read from the socket into `rbuf` (through the TLS session, if any): bytes of plaintext
    /// added, `Ok(0)` at the end of the stream, `WouldBlock` when there is nothing.
    fn read_some(&mut self) -> io::Result<usize> {
        let end = self.rlen + READ_CHUNK;
        if self.rbuf.len() < end {
            self.rbuf.resize(end, 0);
        }
        let tls = self.tls.as_deref_mut().map(|t| &mut **t);
        let n = vienna_netio::read_plain(&mut self.stream, tls, &mut self.rbuf[self.rlen..end])?;
        self.rlen += n;
        Ok(n)
    }

    /// Drops the first `n` bytes read (framed, or the pseudo-TLS hello); what follows moves to the front.
    fn consume(&mut self, n: usize) {
        self.rbuf.copy_within(n..self.rlen, 0);
        self.rlen -= n;
    }

    /// Writes what can be written now; `Err` when the connection failed.
    fn write_out(&mut self) -> io::Result<()> {
        vienna_netio::write_plain(&mut self.stream, self.tls.as_deref_mut().map(|t| &mut **t), &mut self.wbuf)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use vienna_stun::msturn;
    use vienna_turn::{FiveTuple, Transport};

    use super::{MAX_BACKLOG, ReadOutcome, StreamClients};
    use crate::turn::shared::TurnShared;
    use crate::turn::stream::IDLE_TIMEOUT;

    /// A connected pair: the client's end and the server's.
    fn pair() -> (TcpStream, TcpStream, FiveTuple) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, from) = listener.accept().unwrap();
        let tuple = FiveTuple { transport: Transport::Tcp, client: from, server: server.local_addr().unwrap() };
        (client, server, tuple)
    }

    fn clients() -> (mio::Poll, StreamClients, Arc<TurnShared>) {
        let poll = mio::Poll::new().unwrap();
        let shared = Arc::new(TurnShared::new(1));
        let streams = StreamClients::new(poll.registry().try_clone().unwrap(), 100, shared.clone());
        (poll, streams, shared)
    }

    fn tls_config() -> Arc<rustls::ServerConfig> {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let paths = crate::tls::CertificatePaths {
            certificate: dir.path().join("cert.pem"),
            private_key: dir.path().join("key.pem"),
        };
        std::fs::write(&paths.certificate, generated.cert.pem()).unwrap();
        std::fs::write(&paths.private_key, generated.signing_key.serialize_pem()).unwrap();
        crate::tls::server_config(&paths, &[]).unwrap()
    }

    /// Reads slot 0 until `want` frames came (the bytes may take a moment on loopback), at most `patience`.
    fn read_for(streams: &mut StreamClients, want: usize, patience: Duration) -> (Vec<Vec<u8>>, ReadOutcome) {
        let mut frames = Vec::new();
        let deadline = Instant::now() + patience;
        loop {
            let outcome = streams.read(0, Instant::now(), |_, f| frames.push(f.to_vec()));
            if frames.len() >= want || matches!(outcome, ReadOutcome::Closed(_)) || Instant::now() > deadline {
                return (frames, outcome);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn read_frames(streams: &mut StreamClients, want: usize) -> (Vec<Vec<u8>>, ReadOutcome) {
        read_for(streams, want, Duration::from_secs(5))
    }

    #[test]
    fn frames_split_across_reads_come_whole_and_ms_frames_without_their_header() {
        let (_poll, mut streams, _shared) = clients();
        let (mut client, server, tuple) = pair();
        streams.add(server, tuple, None, Instant::now()).unwrap();
        // ChannelData with 5 bytes, padded to 12 on a stream, sent in two halves, then a second frame.
        let frame = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        client.write_all(&frame[..7]).unwrap();
        let (frames, _) = read_for(&mut streams, 1, Duration::from_millis(200));
        assert!(frames.is_empty(), "half a frame is kept, not handed over");
        client.write_all(&frame[7..]).unwrap();
        client.write_all(&frame).unwrap();
        let (frames, outcome) = read_frames(&mut streams, 2);
        assert_eq!(frames, vec![frame.to_vec(), frame.to_vec()]);
        assert_eq!(outcome, ReadOutcome::Drained);

        let (_poll, mut streams, shared) = clients();
        let (mut client, server, tuple) = pair();
        streams.add(server, tuple, None, Instant::now()).unwrap();
        let m = msturn::Builder::new(msturn::types::ALLOCATE_REQUEST, msturn::TransactionId([1; 16]), false).finish();
        client.write_all(&msturn::tcp_header(&m)).unwrap();
        client.write_all(&m).unwrap();
        let (frames, _) = read_frames(&mut streams, 1);
        assert_eq!(frames, vec![m.to_vec()], "the 4-byte MS-TURN header is taken off");
        assert_eq!(shared.ms_stream_clients.load(Ordering::Relaxed), 1);
        // And put back on the way out.
        assert!(streams.queue(&tuple, &m));
        let mut closed = Vec::new();
        streams.flush(&mut closed);
        let mut back = vec![0u8; 4 + m.len()];
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Read::read_exact(&mut client, &mut back).unwrap();
        assert_eq!(&back[..4], &msturn::tcp_header(&m));
        assert_eq!(&back[4..], &m[..]);
        assert!(closed.is_empty());
    }

    #[test]
    fn bad_framing_and_a_closed_stream_end_the_connection() {
        let (_poll, mut streams, shared) = clients();
        let (mut client, server, tuple) = pair();
        shared.stream_open.fetch_add(1, Ordering::Relaxed);
        streams.add(server, tuple, None, Instant::now()).unwrap();
        client.write_all(&[0xff; 8]).unwrap();
        let (_, outcome) = read_frames(&mut streams, 1);
        assert!(matches!(outcome, ReadOutcome::Closed(_)), "{outcome:?}");
        assert_eq!(shared.stream_framing_errors.load(Ordering::Relaxed), 1);
        assert_eq!(streams.close(0, "test"), Some(tuple));
        assert_eq!(streams.len(), 0);
        assert_eq!(shared.stream_open.load(Ordering::Relaxed), 0, "the accept loops' count goes down");

        let (client, server, tuple) = pair();
        streams.add(server, tuple, None, Instant::now()).unwrap();
        drop(client);
        let (_, outcome) = read_frames(&mut streams, 1);
        assert_eq!(outcome, ReadOutcome::Closed("closed by client"));
    }

    #[test]
    fn a_full_backlog_drops_frames_and_unknown_clients_get_none() {
        let (_poll, mut streams, _shared) = clients();
        let (_client, server, tuple) = pair();
        streams.add(server, tuple, None, Instant::now()).unwrap();
        let frame = vec![0x40; 1024];
        let queued = (0..2 * MAX_BACKLOG / frame.len()).take_while(|_| streams.queue(&tuple, &frame)).count();
        assert_eq!(queued, MAX_BACKLOG / frame.len(), "queued up to the backlog, then dropped");
        let stranger = FiveTuple { client: SocketAddr::from(([127, 0, 0, 1], 9)), ..tuple };
        assert!(!streams.queue(&stranger, &frame));
    }

    #[test]
    fn silent_connections_and_stalled_tls_handshakes_are_swept() {
        let (_poll, mut streams, shared) = clients();
        let t0 = Instant::now();
        let (_c1, plain, plain_tuple) = pair();
        let (_c2, tls, tls_tuple) = pair();
        let tls_tuple = FiveTuple { transport: Transport::Tls, ..tls_tuple };
        shared.stream_open.fetch_add(2, Ordering::Relaxed);
        streams.add(plain, plain_tuple, None, t0).unwrap();
        streams.add(tls, tls_tuple, Some(tls_config()), t0).unwrap();
        let mut closed = Vec::new();
        streams.sweep(t0 + Duration::from_secs(5), &mut closed);
        assert!(closed.is_empty());
        streams.sweep(t0 + Duration::from_secs(11), &mut closed);
        assert_eq!(closed, vec![tls_tuple], "a TLS client that never finished its handshake");
        streams.sweep(t0 + IDLE_TIMEOUT, &mut closed);
        assert_eq!(closed, vec![tls_tuple, plain_tuple], "then the silent one");
        assert_eq!(streams.len(), 0);
        assert_eq!(shared.stream_open.load(Ordering::Relaxed), 0);
    }
}
