//! TURN over TCP and TLS (RFC 8656 §3.1, §12.5): async tasks that frame the byte stream into STUN
//! messages and ChannelData, and hand each frame to the worker that owns the connection.
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

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    tuple: FiveTuple,
    worker: WorkerHandle,
    shared: Arc<TurnShared>,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if !worker.send(Command::StreamOpened { tuple, sender: tx }) {
        return;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let read = async {
        let mut buf = Vec::with_capacity(4096);
        loop {
            match vienna_stun::frame_len(&buf) {
                Ok(Some(len)) if len > MAX_FRAME => return FRAME_TOO_LONG,
                Ok(Some(len)) if buf.len() >= len => {
                    let rest = buf.split_off(len);
                    let frame = std::mem::replace(&mut buf, rest);
                    if !worker.send(Command::StreamFrame { tuple, bytes: frame }) {
                        return "worker stopped";
                    }
                    continue;
                }
                Ok(_) => {}
                Err(_) => return BAD_FRAMING,
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
    #[test]
    fn owners_spread_and_stay_put() {
        let a: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(super::owner(a, 4), super::owner(a, 4));
        let spread: std::collections::HashSet<usize> =
            (0..64).map(|p| super::owner(format!("127.0.0.1:{}", 40000 + p).parse().unwrap(), 4)).collect();
        assert_eq!(spread.len(), 4);
    }
}
