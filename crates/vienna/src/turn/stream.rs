//! TURN over TCP and TLS (RFC 8656 §3.1, §12.5; [MS-TURN] §2.1.1, §2.1.4): the accept loops, and how a
//! stream is framed.
//!
//! An accepted connection goes at once to the worker that owns it (by hash of the client address) for its
//! whole life; the worker runs its TLS handshake and its framing ([`super::stream_clients`]); closing it
//! deletes its allocation.
//!
//! The first bytes of a connection decide its framing: the fixed pseudo-TLS ClientHello of MS-TURN
//! (answered with the fixed ServerHello, then MS-TURN framing), MS-TURN framing (`02|03, 0, length16`:
//! the 4-byte header is taken off before the core sees a frame, and put back on the way out: 0x02 for
//! MS-TURN control messages, 0x03 for raw data), or else RFC 8656 framing of STUN and ChannelData.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use vienna_stun::msturn;
use vienna_turn::{FiveTuple, Transport};

use super::worker::Command;
use super::{TurnShared, WorkerHandle};
use crate::net::accept;

/// Largest frame accepted: a STUN message or a ChannelData frame (64 KiB payload plus headers).
const MAX_FRAME: usize = 65_536 + 8;
/// A connection with no byte from the client for this long is closed (clients refresh well within it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Why a connection was closed: a frame longer than [`MAX_FRAME`].
pub const FRAME_TOO_LONG: &str = "frame too long";
/// Why a connection was closed: bytes that are neither STUN nor ChannelData.
pub const BAD_FRAMING: &str = "not STUN or ChannelData framing";
/// Most stream clients at once, all listeners and workers together.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Accepts stream clients on `listener` until `stop`, and hands each to its worker; with `tls`, each
/// connection is TLS.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    workers: Arc<Vec<WorkerHandle>>,
    shared: Arc<TurnShared>,
    mut stop: watch::Receiver<bool>,
) {
    let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
    let Ok(server) = listener.local_addr() else { return };
    while let Some((stream, client)) = accept(&listener, &mut stop, "turn").await {
        if !shared.take_stream_place() {
            shared.stream_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%client, "turn: too many stream clients; connection refused");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                shared.free_stream_place();
                tracing::debug!(%client, error = %e, "turn: cannot take over an accepted connection");
                continue;
            }
        };
        let tuple = FiveTuple { transport, client, server };
        let worker = &workers[owner(client, workers.len())];
        if !worker.send(Command::StreamAccepted { stream, tuple, tls: tls.clone() }) {
            shared.free_stream_place();
        }
    }
}

/// The worker that owns connections from `client`.
fn owner(client: SocketAddr, workers: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client.hash(&mut h);
    (h.finish() % workers as u64) as usize
}

/// How a stream is framed, decided by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// RFC 8656: STUN messages and ChannelData back to back.
    Standard,
    /// MS-TURN: a 4-byte header before every message or raw data.
    Ms,
    /// The MS-TURN pseudo-TLS ClientHello: answer it, then MS-TURN framing.
    PseudoTls,
}

/// The framing of a stream that starts with `buf`; `None` until enough bytes have arrived.
pub fn detect(buf: &[u8]) -> Option<Framing> {
    match buf.first()? {
        0x16 => match msturn::pseudo_tls_client_hello(buf)? {
            true => Some(Framing::PseudoTls),
            false => Some(Framing::Standard),
        },
        0x02 | 0x03 if buf.len() < 2 => None,
        _ if msturn::starts_tcp_framing(buf) => Some(Framing::Ms),
        _ => Some(Framing::Standard),
    }
}

/// The next whole frame at the start of `buf` in `framing`: `Ok(Some((header, total)))` (the payload is
/// `buf[header..total]`), `Ok(None)` to read more, `Err` when the stream is out of sync.
pub fn next_frame(framing: Framing, buf: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
    let (header, len) = match framing {
        Framing::Ms | Framing::PseudoTls => match msturn::tcp_frame(buf) {
            Ok(Some((_, len))) => (msturn::FRAME_HEADER_LEN, len),
            Ok(None) => return Ok(None),
            Err(_) => return Err(BAD_FRAMING),
        },
        Framing::Standard => match vienna_stun::frame_len(buf) {
            Ok(Some(len)) => (0, len),
            Ok(None) => return Ok(None),
            Err(_) => return Err(BAD_FRAMING),
        },
    };
    if len > MAX_FRAME {
        return Err(FRAME_TOO_LONG);
    }
    Ok((buf.len() >= len).then_some((header, len)))
}

#[cfg(test)]
mod tests {
    use super::{Framing, detect, next_frame};
    use vienna_stun::msturn;

    #[test]
    fn framing_is_told_by_the_first_bytes() {
        assert_eq!(detect(&[]), None);
        assert_eq!(detect(&[0x00, 0x01]), Some(Framing::Standard), "STUN Binding");
        assert_eq!(detect(&[0x40]), Some(Framing::Standard), "ChannelData");
        assert_eq!(detect(&[0x02]), None);
        assert_eq!(detect(&[0x02, 0x00]), Some(Framing::Ms));
        assert_eq!(detect(&[0x03, 0x00]), Some(Framing::Ms));
        let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x01];
        hello.extend_from_slice(&[7; 32]);
        hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x00, 0x18, 0x01, 0x00]);
        assert_eq!(detect(&hello[..30]), None, "wait for the whole hello");
        assert_eq!(detect(&hello), Some(Framing::PseudoTls));
        assert_eq!(detect(&[0x16, 0x03, 0x03, 0x01]), Some(Framing::Standard), "real TLS: not ours");
        let m = msturn::Builder::new(msturn::types::ALLOCATE_REQUEST, msturn::TransactionId([1; 16]), false).finish();
        let mut framed = msturn::tcp_header(&m).to_vec();
        framed.extend_from_slice(&m);
        assert_eq!(next_frame(Framing::Ms, &framed[..10]), Ok(None));
        assert_eq!(next_frame(Framing::Ms, &framed), Ok(Some((4, 4 + m.len()))));
        assert!(next_frame(Framing::Ms, &[0x09, 0, 0, 1]).is_err());
    }

    #[test]
    fn owners_spread_and_stay_put() {
        let a: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(super::owner(a, 4), super::owner(a, 4));
        let spread: std::collections::HashSet<usize> =
            (0..64).map(|p| super::owner(format!("127.0.0.1:{}", 40000 + p).parse().unwrap(), 4)).collect();
        assert_eq!(spread.len(), 4);
    }
}
