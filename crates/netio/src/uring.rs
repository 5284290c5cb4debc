//! Datagram batches over many sockets through one `io_uring` (Linux 5.19 or later).
//!
//! [`RecvBatch`](crate::RecvBatch) and [`SendBatch`](crate::SendBatch) cost one system call per socket:
//! a TURN relay with one relayed socket per allocation pays a `sendmmsg` per datagram to peers and a
//! `recvmmsg` per datagram from them. [`UringSend`] queues datagrams for any number of sockets and sends
//! them all with one `io_uring_enter`; [`UringRecv`] receives up to [`URING_DEPTH`] datagrams from each of
//! any number of ready sockets with one `io_uring_enter`, and says which sockets may hold more (those whose
//! every receive got a datagram: UDP sockets do not report `IORING_CQE_F_SOCK_NONEMPTY`).
//!
//! Every operation is submitted with `MSG_DONTWAIT`, so the kernel completes it during the submission
//! (UDP never waits: a full send buffer or an empty receive queue is `EAGAIN`); a flush still waits for
//! every completion before it returns, so no buffer is ever in the kernel's hands once a call is over.
//!
//! A ring can be refused (kernels before 5.19, `kernel.io_uring_disabled`, seccomp filters of container
//! runtimes): [`UringSend::new`] and [`UringRecv::new`] then fail, and the caller keeps the per-socket
//! batches.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{IoUring, opcode, types};

use crate::addr::{from_sockaddr, to_sockaddr};
use crate::batch::{MAX_DATAGRAM, SendOutcome};

/// Datagrams per [`UringSend`] or [`UringRecv`] batch.
pub const URING_BATCH: usize = 128;
/// Receives [`UringRecv::queue`] queues on one socket: a relayed socket rarely holds more than one
/// datagram when it is reported readable, and the second receive (usually `EAGAIN`, cheap inside the
/// same `io_uring_enter`) tells whether it was drained.
pub const URING_DEPTH: usize = 2;

/// One ring with the message headers, iovecs, addresses and buffers its operations point at, all boxed
/// so that their addresses stay put while the ring is alive.
struct Slots {
    ring: IoUring,
    buffers: Box<[[u8; MAX_DATAGRAM]; URING_BATCH]>,
    addrs: Box<[libc::sockaddr_storage; URING_BATCH]>,
    iovecs: Box<[libc::iovec; URING_BATCH]>,
    headers: Box<[libc::msghdr; URING_BATCH]>,
    /// Result of each operation of the last batch (bytes, or a negated errno) and its CQE flags.
    results: [(i32, u32); URING_BATCH],
    /// Set when the kernel may still hold operations that point into the slots (a failed wait): the
    /// slots are then leaked on drop instead of freed.
    poisoned: bool,
}

// SAFETY: the raw pointers inside the headers and iovecs point into the boxes owned by the same value,
// and no operation is in flight between calls; moving the whole value to another thread is sound.
unsafe impl Send for Slots {}

impl Slots {
    fn new() -> io::Result<Self> {
        let ring = IoUring::builder().setup_submit_all().build(URING_BATCH as u32)?;
        // Probe that the kernel has the socket message operations (5.3) and the flag this code relies on.
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::SendMsg::CODE) || !probe.is_supported(opcode::RecvMsg::CODE) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring without sendmsg/recvmsg"));
        }
        Ok(Self {
            ring,
            buffers: Box::new([[0; MAX_DATAGRAM]; URING_BATCH]),
            // SAFETY: all-zero is a valid value for these plain C structures.
            addrs: Box::new(unsafe { std::mem::zeroed() }),
            // SAFETY: as above.
            iovecs: Box::new(unsafe { std::mem::zeroed() }),
            // SAFETY: as above.
            headers: Box::new(unsafe { std::mem::zeroed() }),
            results: [(0, 0); URING_BATCH],
            poisoned: false,
        })
    }

    /// Submits the `count` operations queued in the submission ring (their user data is their slot) and
    /// waits until all have completed, recording each result.
    fn run(&mut self, count: usize) -> io::Result<()> {
        if self.poisoned {
            return Err(io::Error::other("io_uring batch poisoned by an earlier failure"));
        }
        let mut done = 0;
        let mut failures = 0;
        while done < count {
            match self.ring.submit_and_wait(count - done) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {}
                Err(e) => {
                    failures += 1;
                    if failures > 3 {
                        // Operations may still point into the slots: they must never be freed or reused.
                        self.poisoned = true;
                        return Err(e);
                    }
                }
            }
            for cqe in self.ring.completion() {
                let slot = cqe.user_data() as usize;
                if slot < URING_BATCH {
                    self.results[slot] = (cqe.result(), cqe.flags());
                    done += 1;
                }
            }
        }
        Ok(())
    }

    /// Pushes one prepared entry; `false` if the submission queue is full (it cannot be: a batch holds
    /// at most [`URING_BATCH`] entries, as many as the ring, and every `run` submits them all).
    ///
    /// # Safety
    /// The entry's pointers must stay valid until [`run`](Self::run) has returned.
    unsafe fn push(&mut self, entry: &io_uring::squeue::Entry) -> bool {
        // SAFETY: the caller guarantees the pointed-at memory outlives the operation.
        unsafe { self.ring.submission().push(entry) }.is_ok()
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        if self.poisoned {
            // The kernel may still write into the slots: leak them rather than free memory it uses.
            let buffers = std::mem::replace(&mut self.buffers, Box::new([[0; MAX_DATAGRAM]; URING_BATCH]));
            std::mem::forget(buffers);
            // SAFETY: all-zero is a valid value for these plain C structures.
            std::mem::forget(std::mem::replace(&mut self.addrs, Box::new(unsafe { std::mem::zeroed() })));
            // SAFETY: as above.
            std::mem::forget(std::mem::replace(&mut self.iovecs, Box::new(unsafe { std::mem::zeroed() })));
            // SAFETY: as above.
            std::mem::forget(std::mem::replace(&mut self.headers, Box::new(unsafe { std::mem::zeroed() })));
        }
    }
}

/// Datagrams queued for any number of UDP sockets, sent with one `io_uring_enter`.
pub struct UringSend {
    slots: Slots,
    fds: [RawFd; URING_BATCH],
    lens: [usize; URING_BATCH],
    addr_lens: [libc::socklen_t; URING_BATCH],
    count: usize,
}

impl UringSend {
    /// A ring and its slots (about 280 KiB); fails where the kernel refuses io_uring.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            slots: Slots::new()?,
            fds: [-1; URING_BATCH],
            lens: [0; URING_BATCH],
            addr_lens: [0; URING_BATCH],
            count: 0,
        })
    }

    /// Whether another datagram fits.
    pub fn is_full(&self) -> bool {
        self.count == URING_BATCH
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The next free slot: write the datagram into it, then call [`commit`](Self::commit).
    /// `None` when the batch is full.
    pub fn slot(&mut self) -> Option<&mut [u8; MAX_DATAGRAM]> {
        if self.is_full() { None } else { Some(&mut self.slots.buffers[self.count]) }
    }

    /// Queues the first `len` bytes of the slot to `dest` from `socket`. The socket must stay open until
    /// the next [`flush`](Self::flush) (the batch keeps its descriptor number, not the socket).
    pub fn commit(&mut self, socket: &impl AsRawFd, len: usize, dest: SocketAddr) {
        assert!(self.count < URING_BATCH && len <= MAX_DATAGRAM, "commit without a free slot");
        let i = self.count;
        self.fds[i] = socket.as_raw_fd();
        self.addr_lens[i] = to_sockaddr(dest, &mut self.slots.addrs[i]);
        self.lens[i] = len;
        self.count += 1;
    }

    /// Copies `bytes` into the next slot for `dest` from `socket`; `false` if the batch is full or
    /// `bytes` too long. The socket must stay open until the next [`flush`](Self::flush).
    pub fn push(&mut self, socket: &impl AsRawFd, bytes: &[u8], dest: SocketAddr) -> bool {
        let Some(slot) = self.slot() else { return false };
        if bytes.len() > MAX_DATAGRAM {
            return false;
        }
        slot[..bytes.len()].copy_from_slice(bytes);
        self.commit(socket, bytes.len(), dest);
        true
    }

    /// Sends everything queued with one `io_uring_enter` and empties the batch. A datagram the kernel
    /// refuses (full send buffer, unreachable destination, closed socket) is dropped and counted.
    pub fn flush(&mut self) -> SendOutcome {
        let count = std::mem::take(&mut self.count);
        if count == 0 {
            return SendOutcome::default();
        }
        let s = &mut self.slots;
        let mut pushed = 0;
        for i in 0..count {
            s.results[i] = (-libc::ECANCELED, 0);
            s.iovecs[i] = libc::iovec { iov_base: s.buffers[i].as_mut_ptr().cast(), iov_len: self.lens[i] };
            let h = &mut s.headers[i];
            h.msg_name = (&mut s.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.addr_lens[i];
            h.msg_iov = &mut s.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            let entry = opcode::SendMsg::new(types::Fd(self.fds[i]), &s.headers[i])
                .flags(libc::MSG_DONTWAIT as u32)
                .build()
                .user_data(i as u64);
            // SAFETY: the header, its iovec, address and buffer live in boxes owned by `s`, are not touched
            // again until `run` has seen every completion, and the kernel only reads them.
            pushed += usize::from(unsafe { s.push(&entry) });
        }
        if s.run(pushed).is_err() {
            return SendOutcome { sent: 0, dropped: count };
        }
        let sent = s.results[..count].iter().filter(|(res, _)| *res >= 0).count();
        SendOutcome { sent, dropped: count - sent }
    }
}

/// Up to [`URING_DEPTH`] datagrams from each of up to [`URING_BATCH`] / [`URING_DEPTH`] sockets, received
/// with one `io_uring_enter`.
pub struct UringRecv {
    slots: Slots,
    keys: [usize; URING_BATCH],
    /// Per received datagram: slot, length (`usize::MAX`: dropped), source, and whether its socket may
    /// hold more.
    got: Vec<(usize, usize, SocketAddr, bool)>,
    queued: usize,
    truncated: u64,
}

/// A datagram [`UringRecv::recv`] received.
#[derive(Debug)]
pub struct Received<'a> {
    /// The key its socket was queued with.
    pub key: usize,
    /// Its bytes.
    pub bytes: &'a [u8],
    /// Its source.
    pub from: SocketAddr,
    /// Whether the socket may hold more datagrams (every receive queued on it got one): read it again.
    pub more: bool,
}

impl UringRecv {
    /// A ring and its slots (about 280 KiB); fails where the kernel refuses io_uring.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            slots: Slots::new()?,
            keys: [0; URING_BATCH],
            got: Vec::with_capacity(URING_BATCH),
            queued: 0,
            truncated: 0,
        })
    }

    /// Whether another socket fits in this batch.
    pub fn is_full(&self) -> bool {
        self.queued + URING_DEPTH > URING_BATCH
    }

    /// Queues [`URING_DEPTH`] receives on `socket` (non-blocking, UDP), tagged `key`; `false` when the
    /// batch is full. The socket must stay open until the next [`recv`](Self::recv).
    pub fn queue(&mut self, socket: &impl AsRawFd, key: usize) -> bool {
        if self.is_full() {
            return false;
        }
        for _ in 0..URING_DEPTH {
            let i = self.queued;
            self.slots.results[i] = (-libc::ECANCELED, 0);
            let s = &mut self.slots;
            s.iovecs[i] = libc::iovec { iov_base: s.buffers[i].as_mut_ptr().cast(), iov_len: MAX_DATAGRAM };
            let h = &mut s.headers[i];
            h.msg_name = (&mut s.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut s.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            let entry = opcode::RecvMsg::new(types::Fd(socket.as_raw_fd()), &mut s.headers[i])
                .flags(libc::MSG_DONTWAIT as u32)
                .build()
                .user_data(i as u64);
            // SAFETY: the header, its iovec, address and buffer live in boxes owned by `s` and are not
            // touched until `recv` has seen every completion; the kernel writes at most the lengths given.
            if !unsafe { s.push(&entry) } {
                return false;
            }
            self.keys[i] = key;
            self.queued += 1;
        }
        true
    }

    /// Runs every queued receive with one `io_uring_enter` and returns how many entries it produced;
    /// read them with [`get`](Self::get). A socket with nothing waiting (`EAGAIN`) or with an error (an
    /// ICMP error from a peer) yields nothing; truncated datagrams and unknown address families are
    /// dropped and counted in [`truncated`](Self::truncated).
    pub fn recv(&mut self) -> io::Result<usize> {
        self.got.clear();
        let count = std::mem::take(&mut self.queued);
        if count == 0 {
            return Ok(0);
        }
        self.slots.run(count)?;
        for i in 0..count {
            let (res, _) = self.slots.results[i];
            if res < 0 {
                continue;
            }
            // The socket's last receive got something: there may be more.
            let more = i % URING_DEPTH == URING_DEPTH - 1;
            let h = &self.slots.headers[i];
            match from_sockaddr(&self.slots.addrs[i], h.msg_namelen) {
                Some(from) if h.msg_flags & libc::MSG_TRUNC == 0 => self.got.push((i, res as usize, from, more)),
                _ => {
                    self.truncated += 1;
                    if more {
                        // Nothing to hand out, but the socket must still be read again.
                        self.got.push((i, usize::MAX, SocketAddr::from(([0, 0, 0, 0], 0)), true));
                    }
                }
            }
        }
        Ok(self.got.len())
    }

    /// Entry `i` of the last [`recv`](Self::recv): a datagram, or `Err(key)` for a dropped datagram
    /// whose socket may hold more (read that socket again).
    pub fn get(&self, i: usize) -> Result<Received<'_>, usize> {
        let (slot, len, from, more) = self.got[i];
        if len == usize::MAX {
            return Err(self.keys[slot]);
        }
        Ok(Received { key: self.keys[slot], bytes: &self.slots.buffers[slot][..len], from, more })
    }

    /// Datagrams dropped so far because they were longer than [`MAX_DATAGRAM`] or had no usable source.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{UdpOptions, bind_udp};

    fn ring_or_skip() -> Option<(UringSend, UringRecv)> {
        match (UringSend::new(), UringRecv::new()) {
            (Ok(s), Ok(r)) => Some((s, r)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("io_uring unavailable here ({e}); test skipped");
                None
            }
        }
    }

    #[test]
    fn sends_from_many_sockets_and_receives_from_many() {
        let Some((mut send, mut recv)) = ring_or_skip() else { return };
        let sockets: Vec<_> =
            (0..10).map(|_| bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap()).collect();
        let sink = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        let sink_addr = sink.local_addr().unwrap();
        // Each socket sends two datagrams to the sink; the sink sends one back to each socket.
        for (i, s) in sockets.iter().enumerate() {
            assert!(send.push(s, &[i as u8; 20], sink_addr));
            assert!(send.push(s, &[i as u8; 21], sink_addr));
        }
        assert_eq!(send.flush(), SendOutcome { sent: 20, dropped: 0 });
        let mut seen = std::collections::HashMap::new();
        let mut buf = [0u8; 64];
        while seen.values().map(|v: &Vec<usize>| v.len()).sum::<usize>() < 20 {
            let (n, from) = sink.recv_from(&mut buf).unwrap();
            assert_eq!(buf[0] as usize, sockets.iter().position(|s| s.local_addr().unwrap() == from).unwrap());
            seen.entry(from).or_default().push(n);
        }
        for s in &sockets {
            assert_eq!(seen[&s.local_addr().unwrap()], vec![20, 21], "order kept per socket");
            sink.send_to(b"back", s.local_addr().unwrap()).unwrap();
            sink.send_to(b"again", s.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        for (key, s) in sockets.iter().enumerate() {
            assert!(recv.queue(s, key));
        }
        assert_eq!(recv.recv().unwrap(), 20);
        for i in 0..20 {
            let d = recv.get(i).unwrap();
            let want: &[u8] = if i % 2 == 0 { b"back" } else { b"again" };
            assert_eq!((d.key, d.bytes, d.from, d.more), (i / 2, want, sink_addr, i % 2 == 1));
        }
        // Nothing left: EAGAIN, not a wait.
        for (key, s) in sockets.iter().enumerate() {
            recv.queue(s, key);
        }
        assert_eq!(recv.recv().unwrap(), 0);
        // One datagram on one socket: drained, so no `more`.
        sink.send_to(b"one", sockets[3].local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        recv.queue(&sockets[3], 3);
        assert_eq!(recv.recv().unwrap(), 1);
        assert!(recv.get(0).is_ok_and(|d| d.key == 3 && d.bytes == b"one" && !d.more));
    }

    #[test]
    fn refused_datagrams_are_counted_and_oversized_ones_dropped() {
        let Some((mut send, mut recv)) = ring_or_skip() else { return };
        let a = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        let b = bind_udp("127.0.0.1:0".parse().unwrap(), UdpOptions::default()).unwrap();
        assert!(!send.push(&a, &[0u8; MAX_DATAGRAM + 1], b.local_addr().unwrap()), "too long");
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(&[1u8; MAX_DATAGRAM + 100], b.local_addr().unwrap()).unwrap();
        // An IPv6 destination from an IPv4 socket: the kernel refuses it.
        assert!(send.push(&a, b"x", "[::1]:9".parse().unwrap()));
        assert!(send.push(&a, b"ok", b.local_addr().unwrap()));
        assert_eq!(send.flush(), SendOutcome { sent: 1, dropped: 1 });
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.send_to(b"late", b.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        recv.queue(&b, 7);
        // The oversized datagram is dropped and counted; "ok" comes next, and the socket may hold more.
        assert_eq!(recv.recv().unwrap(), 1);
        assert!(recv.get(0).is_ok_and(|d| d.bytes == b"ok" && d.more));
        assert_eq!(recv.truncated(), 1);
        recv.queue(&b, 7);
        assert_eq!(recv.recv().unwrap(), 1);
        assert!(recv.get(0).is_ok_and(|d| d.bytes == b"late" && !d.more));
        // An oversized datagram as the last receive: dropped, but its key comes back to read again.
        c.send_to(b"first", b.local_addr().unwrap()).unwrap();
        c.send_to(&[1u8; MAX_DATAGRAM + 100], b.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        recv.queue(&b, 7);
        assert_eq!(recv.recv().unwrap(), 2);
        assert!(recv.get(0).is_ok_and(|d| d.bytes == b"first" && !d.more));
        assert_eq!(recv.get(1).unwrap_err(), 7);
        assert_eq!(recv.truncated(), 2);
    }
}
