//! The built-in UDP echo peer: every datagram goes back to its source, unchanged, from the same
//! address. Several threads can share the port with `SO_REUSEPORT` (the kernel spreads sources over
//! them); each receives with `recvmmsg` and echoes with `sendmmsg`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use mio::{Events, Interest, Poll, Token};
use vienna_netio::{BATCH, RecvBatch, SendBatch, UdpOptions, bind_udp};

/// Counters of the echo peer.
#[derive(Debug, Default)]
pub struct EchoCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Datagrams the socket refused to send back.
    pub dropped: AtomicU64,
}

/// A running echo peer; stopped on drop.
pub struct EchoPeer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its counters.
    pub counters: Arc<EchoCounters>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoPeer {
    /// Binds `bind` (port 0 picks one) with `threads` sockets sharing the port, and starts echoing.
    pub fn start(bind: SocketAddr, threads: usize) -> anyhow::Result<EchoPeer> {
        let options = UdpOptions { reuse_port: threads > 1, recv_buffer: 8 << 20, send_buffer: 8 << 20 };
        let first = bind_udp(bind, options).with_context(|| format!("binding the echo peer on {bind}"))?;
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..threads {
            sockets.push(bind_udp(addr, options).with_context(|| format!("binding another echo socket on {addr}"))?);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(EchoCounters::default());
        let mut handles = Vec::new();
        for (i, s) in sockets.into_iter().enumerate() {
            let (stop, counters) = (stop.clone(), counters.clone());
            let h = std::thread::Builder::new().name(format!("echo-{i}")).spawn(move || echo(s, &stop, &counters))?;
            handles.push(h);
        }
        Ok(EchoPeer { addr, counters, stop, threads: handles })
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

fn echo(socket: std::net::UdpSocket, stop: &AtomicBool, counters: &EchoCounters) {
    let Ok(mut poll) = Poll::new() else { return };
    let mut sock = mio::net::UdpSocket::from_std(socket);
    if poll.registry().register(&mut sock, Token(0), Interest::READABLE).is_err() {
        return;
    }
    let mut events = Events::with_capacity(8);
    let (mut recv, mut send) = (RecvBatch::new(), SendBatch::new());
    while !stop.load(Relaxed) {
        if poll.poll(&mut events, Some(Duration::from_millis(50))).is_err() {
            continue;
        }
        if events.is_empty() {
            continue;
        }
        loop {
            let n = recv.recv(&sock).unwrap_or(0);
            for i in 0..n {
                let (bytes, from) = recv.get(i);
                send.push(bytes, from);
            }
            if n > 0 {
                counters.received.fetch_add(n as u64, Relaxed);
                let o = send.flush(&sock);
                if o.dropped > 0 {
                    counters.dropped.fetch_add(o.dropped as u64, Relaxed);
                }
            }
            if n < BATCH {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_to_the_source() {
        let peer = EchoPeer::start("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.send_to(b"hello", peer.addr).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], peer.addr));
        assert_eq!(peer.counters.received.load(Relaxed), 1);
    }
}
