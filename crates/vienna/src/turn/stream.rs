//! TURN over TCP and TLS (RFC 8656 §3.1, §12.5; [MS-TURN] §2.1.1, §2.1.4): async tasks that frame the
//! byte stream and hand each frame to the worker that owns the connection.
//!
//! The first bytes of a connection decide its framing: the fixed pseudo-TLS ClientHello of MS-TURN
//! (answered with the fixed ServerHello, then MS-TURN framing), MS-TURN framing (`02|03, 0, length16`:
//! the 4-byte header is taken off before the worker sees a frame, and put back on the way out: 0x02 for
//! MS-TURN control messages, 0x03 for raw data), or else RFC 8656 framing of STUN and ChannelData.
//!
//! A connection belongs to one worker (by hash of the client address) for its whole life; closing it
//! deletes its allocation. Frames cost one allocation each on this path (the UDP path has none).

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use vienna_stun::msturn;
use vienna_turn::{FiveTuple, Transport};

use super::worker::Command;
use super::{TurnShared, WorkerHandle};
use crate::net::{accept, stop_requested, tls_handshake};
use std::sync::atomic::Ordering;

/// Largest frame accepted: a STUN message or a ChannelData frame (64 KiB payload plus headers).
const MAX_FRAME: usize = 65_536 + 8;
/// A connection with no byte from the client for this long is closed (clients refresh well within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Frames queued for one client before more are dropped.
const WRITE_QUEUE: usize = 1024;
/// Why a connection was closed: a frame longer than [`MAX_FRAME`].
const FRAME_TOO_LONG: &str = "frame too long";
/// Why a connection was closed: bytes that are neither STUN nor ChannelData.
const BAD_FRAMING: &str = "not STUN or ChannelData framing";
/// Most stream clients at once per listener.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Accepts stream clients on `listener` until `stop`; with `tls`, each connection is TLS.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    workers: Arc<Vec<WorkerHandle>>,
    shared: Arc<TurnShared>,
    mut stop: watch::Receiver<bool>,
) {
    let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let Ok(server) = listener.local_addr() else { return };
    while let Some((stream, client)) = accept(&listener, &mut stop, "turn").await {
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            shared.stream_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%client, "turn: too many stream clients; connection refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tuple = FiveTuple { transport, client, server };
        let worker = workers[owner(client, workers.len())].clone();
        let tls = tls.clone();
        let stop = stop.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve(stream, tuple, worker, shared, stop).await,
                Some(acceptor) => {
                    if let Some(stream) = tls_handshake(&acceptor, stream, client, "turn").await {
                        serve(stream, tuple, worker, shared, stop).await;
                    }
                }
            }
        });
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
enum Framing {
    /// RFC 8656: STUN messages and ChannelData back to back.
    Standard,
    /// MS-TURN: a 4-byte header before every message or raw data.
    Ms,
    /// The MS-TURN pseudo-TLS ClientHello: answer it, then MS-TURN framing.
    PseudoTls,
}

/// The framing of a stream that starts with `buf`; `None` until enough bytes have arrived.
fn detect(buf: &[u8]) -> Option<Framing> {
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
fn next_frame(framing: Framing, buf: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
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

/// Reads until the framing is known; answers the pseudo-TLS hello. The bytes read come back in `buf`.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    shared: &TurnShared,
) -> Result<Framing, &'static str> {
    loop {
        if let Some(framing) = detect(buf) {
            if framing == Framing::PseudoTls {
                buf.drain(..msturn::PSEUDO_TLS_CLIENT_HELLO_LEN);
                stream.write_all(&msturn::PSEUDO_TLS_SERVER_HELLO).await.map_err(|_| "write error")?;
                shared.pseudo_tls_handshakes.fetch_add(1, Ordering::Relaxed);
            }
            if framing != Framing::Standard {
                shared.ms_stream_clients.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(framing);
        }
        let mut chunk = [0u8; 512];
        match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err("closed by client"),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => return Err("read error"),
            Err(_) => return Err("idle timeout"),
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    tuple: FiveTuple,
    worker: WorkerHandle,
    shared: Arc<TurnShared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = Vec::with_capacity(4096);
    let framing = tokio::select! {
        f = handshake(&mut stream, &mut buf, &shared) => match f {
            Ok(f) => f,
            Err(reason) => {
                tracing::debug!(client = %tuple.client, reason, "turn: stream client gone before its first frame");
                return;
            }
        },
        () = stop_requested(&mut stop) => return,
    };
    let ms = framing != Framing::Standard;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if !worker.send(Command::StreamOpened { tuple, sender: tx }) {
        return;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async move {
        while let Some(frame) = rx.recv().await {
            let written = if ms {
                let mut framed = Vec::with_capacity(msturn::FRAME_HEADER_LEN + frame.len());
                framed.extend_from_slice(&msturn::tcp_header(&frame));
                framed.extend_from_slice(&frame);
                writer.write_all(&framed).await
            } else {
                writer.write_all(&frame).await
            };
            if written.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let read = async {
        loop {
            match next_frame(framing, &buf) {
                Err(reason) => return reason,
                Ok(Some((header, len))) => {
                    let rest = buf.split_off(len);
                    let mut frame = std::mem::replace(&mut buf, rest);
                    frame.drain(..header);
                    if !worker.send(Command::StreamFrame { tuple, bytes: frame }) {
                        return "worker stopped";
                    }
                    continue;
                }
                Ok(None) => {}
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::select! {
                read = tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut chunk)) => match read {
                    Ok(Ok(0)) => return "closed by client",
                    Ok(Ok(n)) => n,
                    Ok(Err(_)) => return "read error",
                    Err(_) => return "idle timeout",
                },
                () = stop_requested(&mut stop) => return "shutdown",
            };
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    // The writer ends when the worker drops the sender (StreamClosed) or the socket fails.
    let reason = tokio::select! {
        reason = read => reason,
        () = write => "write failed",
    };
    if reason == FRAME_TOO_LONG || reason == BAD_FRAMING {
        shared.stream_framing_errors.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(client = %tuple.client, transport = ?tuple.transport, reason, "turn: stream client gone");
    worker.send(Command::StreamClosed { tuple });
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
