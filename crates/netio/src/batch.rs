//! `recvmmsg(2)` and `sendmmsg(2)` batches with buffers allocated once.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use crate::addr::{from_sockaddr, to_sockaddr};

/// Datagrams per batch.
pub const BATCH: usize = 32;
/// Largest datagram handled; longer ones are truncated by the kernel and dropped by [`RecvBatch`].
pub const MAX_DATAGRAM: usize = 2048;

/// Receives up to [`BATCH`] datagrams per call.
pub struct RecvBatch {
    /// [`BATCH`] slots of `stride` bytes each.
    buffers: Box<[u8]>,
    stride: usize,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    lens: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    count: usize,
    truncated: u64,
}

// SAFETY: the raw structures hold no pointers between calls: iovecs and headers are rebuilt on the
// stack of each `recv` call, so moving the batch to another thread is sound.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Allocates the buffers for datagrams of up to [`MAX_DATAGRAM`] bytes (about 70 KiB).
    pub fn new() -> Self {
        Self::with_max_datagram(MAX_DATAGRAM)
    }

    /// Allocates the buffers for datagrams of up to `max` bytes each ([`BATCH`] times `max` bytes; a SIP
    /// listener takes 65,535, the largest UDP payload). Longer datagrams are dropped and counted.
    pub fn with_max_datagram(max: usize) -> Self {
        let stride = max.max(1);
        Self {
            buffers: vec![0; BATCH * stride].into_boxed_slice(),
            stride,
            // SAFETY: all-zero is a valid sockaddr_storage.
            addrs: Box::new(unsafe { std::mem::zeroed() }),
            lens: [0; BATCH],
            peers: [None; BATCH],
            count: 0,
            truncated: 0,
        }
    }

    /// Receives what is waiting on `socket` without blocking; returns how many datagrams arrived
    /// (0 when none was waiting). Truncated datagrams and unknown address families are skipped.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        match self.try_recv(socket) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(0),
            other => other,
        }
    }

    /// As [`recv`](Self::recv), but an empty socket is the error `WouldBlock`, as a readiness-based
    /// driver (tokio's `try_io`) needs it to clear the socket's readiness. `Ok(0)` then means datagrams
    /// were read but all of them were dropped (too long, or from an unusable address): read again.
    pub fn try_recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        // SAFETY: all-zero is a valid value for these plain C structures.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let stride = self.stride;
        for (i, slot) in self.buffers.chunks_exact_mut(stride).enumerate() {
            iovecs[i] = libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: stride };
            let h = &mut headers[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovecs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: every header points at a buffer, an iovec and an address owned by `self` or this frame,
        // all valid and unaliased for the duration of the call; the kernel writes at most the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        let mut kept = 0;
        for (i, h) in headers.iter().enumerate().take(n as usize) {
            let peer = from_sockaddr(&self.addrs[i], h.msg_hdr.msg_namelen);
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || peer.is_none() {
                self.truncated += 1;
                continue;
            }
            if kept != i {
                let len = h.msg_len as usize;
                self.buffers.copy_within(i * stride..i * stride + len, kept * stride);
            }
            self.lens[kept] = h.msg_len as usize;
            self.peers[kept] = peer;
            kept += 1;
        }
        self.count = kept;
        Ok(kept)
    }

    /// Datagrams of the last [`recv`](Self::recv).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last receive and its source.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        assert!(i < self.count, "datagram {i} of {}", self.count);
        let start = i * self.stride;
        (&self.buffers[start..start + self.lens[i]], self.peers[i].expect("kept datagrams have a source"))
    }

    /// Datagram `i` as a mutable buffer (for in-place rewriting) with its source.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], SocketAddr) {
        assert!(i < self.count, "datagram {i} of {}", self.count);
        let start = i * self.stride;
        (&mut self.buffers[start..start + self.lens[i]], self.peers[i].expect("kept datagrams have a source"))
    }

    /// Datagrams dropped so far because they were longer than the slots or had no usable source.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }
}

/// What [`SendBatch::flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOutcome {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped (send buffer full or a send error).
    pub dropped: usize,
}

/// Queues up to [`BATCH`] datagrams for one socket and sends them with `sendmmsg`.
pub struct SendBatch {
    buffers: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    addr_lens: [libc::socklen_t; BATCH],
    lens: [usize; BATCH],
    count: usize,
}

// SAFETY: as for RecvBatch: no pointers survive between calls.
unsafe impl Send for SendBatch {}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Allocates the slots (about 70 KiB).
    pub fn new() -> Self {
        Self {
            buffers: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            // SAFETY: all-zero is a valid sockaddr_storage.
            addrs: Box::new(unsafe { std::mem::zeroed() }),
            addr_lens: [0; BATCH],
            lens: [0; BATCH],
            count: 0,
        }
    }

    /// Whether another datagram fits.
    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next free slot: write the datagram into it, then call [`commit`](Self::commit).
    /// `None` when the batch is full.
    pub fn slot(&mut self) -> Option<&mut [u8; MAX_DATAGRAM]> {
        if self.is_full() { None } else { Some(&mut self.buffers[self.count]) }
    }

    /// Queues the first `len` bytes of the slot for `dest`.
    pub fn commit(&mut self, len: usize, dest: SocketAddr) {
        assert!(self.count < BATCH && len <= MAX_DATAGRAM, "commit without a free slot");
        self.addr_lens[self.count] = to_sockaddr(dest, &mut self.addrs[self.count]);
        self.lens[self.count] = len;
        self.count += 1;
    }

    /// Copies `bytes` into the next slot for `dest`; `false` if the batch is full or `bytes` too long.
    pub fn push(&mut self, bytes: &[u8], dest: SocketAddr) -> bool {
        let Some(slot) = self.slot() else { return false };
        if bytes.len() > MAX_DATAGRAM {
            return false;
        }
        slot[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len(), dest);
        true
    }

    /// Discards everything queued.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Sends everything queued on `socket` and empties the batch. A full socket buffer drops the rest.
    pub fn flush(&mut self, socket: &impl AsRawFd) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        let total = self.count;
        let mut start = 0;
        while start < total {
            // SAFETY: all-zero is a valid value for these plain C structures.
            let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            let n = total - start;
            for j in 0..n {
                let i = start + j;
                iovecs[j] = libc::iovec { iov_base: self.buffers[i].as_mut_ptr().cast(), iov_len: self.lens[i] };
                let h = &mut headers[j].msg_hdr;
                h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = self.addr_lens[i];
                h.msg_iov = &mut iovecs[j];
                h.msg_iovlen = 1;
            }
            // SAFETY: the headers point at buffers, lengths and addresses owned by `self` or this frame,
            // valid for the call; the kernel only reads them.
            let sent = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT)
            };
            if sent < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if err.kind() == io::ErrorKind::WouldBlock {
                    // Send buffer full: UDP may drop; the caller counts it.
                    outcome.dropped += n;
                    break;
                }
                // An error about the first datagram (say, an unreachable destination): drop it, go on.
                outcome.dropped += 1;
                start += 1;
                continue;
            }
            outcome.sent += sent as usize;
            start += sent as usize;
        }
        self.count = 0;
        outcome
    }
}

/// Sends every item of `items` with `sendmmsg`, [`BATCH`] datagrams per call, straight from the
/// caller's buffers (no copy, no size limit but the kernel's); `datagram` gives an item's bytes and
/// destination. A full send buffer drops the rest (UDP semantics); an error about one datagram (an
/// unreachable destination) drops that one and goes on.
pub fn send_many<T>(socket: &impl AsRawFd, items: &[T], datagram: impl Fn(&T) -> (&[u8], SocketAddr)) -> SendOutcome {
    let mut outcome = SendOutcome::default();
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut start = 0;
    while start < items.len() {
        let chunk = &items[start..items.len().min(start + BATCH)];
        // SAFETY: all-zero is a valid value for these plain C structures.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (j, item) in chunk.iter().enumerate() {
            let (bytes, dest) = datagram(item);
            let addr_len = to_sockaddr(dest, &mut addrs[j]);
            // The kernel only reads through iov_base (sendmmsg), so the const-to-mut cast is sound.
            iovecs[j] = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
            let h = &mut headers[j].msg_hdr;
            h.msg_name = (&mut addrs[j] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = addr_len;
            h.msg_iov = &mut iovecs[j];
            h.msg_iovlen = 1;
        }
        // SAFETY: the headers point at the callers' buffers (borrowed through `items` for this whole
        // function) and at iovecs and addresses of this frame, all valid for the call; the kernel only
        // reads them.
        let sent = unsafe {
            libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), chunk.len() as libc::c_uint, libc::MSG_DONTWAIT)
        };
        if sent < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    outcome.dropped += items.len() - start;
                    break;
                }
                _ => {
                    outcome.dropped += 1;
                    start += 1;
                    continue;
                }
            }
        }
        outcome.sent += sent as usize;
        start += sent as usize;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{UdpOptions, bind_udp};

    #[test]
    fn batches_round_trip_over_loopback() {
        let a = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        let b = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        let b_addr = b.local_addr().unwrap();
        let mut out = SendBatch::new();
        for i in 0..BATCH {
            assert!(out.push(&[i as u8; 100][..10 + i], b_addr));
        }
        assert!(out.is_full() && !out.push(b"x", b_addr));
        assert_eq!(out.flush(&a), SendOutcome { sent: BATCH, dropped: 0 });
        assert!(out.is_empty());

        let mut inb = RecvBatch::new();
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = inb.recv(&b).unwrap();
            for i in 0..n {
                let (bytes, from) = inb.get(i);
                assert_eq!(from, a.local_addr().unwrap());
                got.push(bytes.to_vec());
            }
            if got.len() == BATCH {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got.len(), BATCH);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 10 + i]);
        }
        assert_eq!(inb.recv(&b).unwrap(), 0, "nothing left, no blocking");
    }

    #[test]
    fn send_many_and_large_slots_round_trip() {
        let a = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        let b = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions { recv_buffer: 1 << 20, ..Default::default() })
            .unwrap();
        let b_addr = b.local_addr().unwrap();
        // More than one sendmmsg call's worth, and datagrams longer than MAX_DATAGRAM.
        let items: Vec<Vec<u8>> = (0..BATCH + 5).map(|i| vec![i as u8; 3000 + i]).collect();
        let outcome = send_many(&a, &items, |d| (d.as_slice(), b_addr));
        assert_eq!(outcome, SendOutcome { sent: BATCH + 5, dropped: 0 });

        let mut inb = RecvBatch::with_max_datagram(65_535);
        let mut got = Vec::new();
        for _ in 0..100 {
            match inb.try_recv(&b) {
                Ok(n) => (0..n).for_each(|i| got.push(inb.get(i).0.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == items.len() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, items);
        assert_eq!(inb.try_recv(&b).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn oversized_datagrams_are_dropped_and_counted() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        a.send_to(&[1u8; MAX_DATAGRAM + 100], b.local_addr().unwrap()).unwrap();
        a.send_to(b"ok", b.local_addr().unwrap()).unwrap();
        let mut inb = RecvBatch::new();
        let mut seen = Vec::new();
        for _ in 0..100 {
            for i in 0..inb.recv(&b).unwrap() {
                seen.push(inb.get(i).0.to_vec());
            }
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(seen, vec![b"ok".to_vec()]);
        assert_eq!(inb.truncated(), 1);
    }

    #[test]
    fn reuse_port_sockets_share_a_port() {
        let opts = UdpOptions { reuse_port: true, recv_buffer: 1 << 20, send_buffer: 1 << 20 };
        let first = bind_udp("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let second = bind_udp(first.local_addr().unwrap(), opts).unwrap();
        assert_eq!(first.local_addr().unwrap(), second.local_addr().unwrap());
        let plain = bind_udp(first.local_addr().unwrap(), UdpOptions::default());
        assert!(plain.is_err(), "a socket without SO_REUSEPORT cannot join");
    }
}
