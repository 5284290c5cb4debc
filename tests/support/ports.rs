//! Loopback ports for the programs the tests start (SIPp, baresip, GStreamer, plain sockets that a peer
//! binds after the test chose the port).
//!
//! Asking the kernel for an ephemeral port and closing it leaves a race: until the peer binds it, any
//! other `bind(0)` on the machine (the `vienna` under test, another test's peer) may get the same port, and
//! two tests running in parallel may be handed the same one. The ports here come from below the kernel's
//! ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), which `bind(0)` never hands out, and a port
//! is handed out at most once per test process. Each port is checked free (UDP and TCP) when it is handed
//! out.

use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;

/// The lowest port handed out.
const LOWEST: u32 = 10_000;

/// The next port to try, and the end (exclusive) of the range ports come from.
static NEXT: Mutex<Option<(u32, u32)>> = Mutex::new(None);

/// The start of the kernel's ephemeral port range (32768 when it cannot be read).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32_768)
}

fn is_free(port: u16, tcp: bool) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && (!tcp || TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// The first of `n` consecutive ports that are free on loopback (UDP, and TCP too when `tcp`), never handed
/// out before in this process.
fn take(n: u32, tcp: bool) -> u16 {
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let (start, end) = *next.get_or_insert_with(|| {
        let end = ephemeral_start().clamp(LOWEST + 2_000, 65_536);
        // Spread test processes over the range, so one started right after another (its ports perhaps in
        // TIME_WAIT) starts elsewhere.
        (LOWEST + std::process::id() * 211 % (end - LOWEST), end)
    });
    let mut first = start;
    for _ in 0..(end - LOWEST) {
        if first + n > end {
            first = LOWEST;
        }
        if (first..first + n).all(|p| is_free(p as u16, tcp)) {
            *next = Some((first + n, end));
            return first as u16;
        }
        first += 1;
    }
    panic!("no {n} consecutive free ports between {LOWEST} and {end} on loopback")
}

/// A port free on loopback for both UDP and TCP (SIPp and baresip bind both for SIP). The port above it
/// is free too and handed out to nobody else: baresip listens for SIP over TLS there.
pub fn free_port() -> u16 {
    take(2, true)
}

/// The first of `n` consecutive UDP ports that are free on loopback (a media peer's RTP range, an RTP and
/// RTCP pair).
pub fn free_udp_range(n: u16) -> u16 {
    take(u32::from(n), false)
}
