//! SIP over TCP and TLS (RFC 3261 §18, keep-alives of RFC 5626 §3.5.1): async tasks that frame the byte
//! stream into messages for the core thread and write what it sends back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use vienna_sip::framing::{FrameEvent, PONG, StreamFramer};
use vienna_sip::transaction::Peer;
use vienna_sip::{Limits, Transport};

use super::engine::Inbound;
use crate::net::{accept, stop_requested, tls_handshake};

/// Messages queued for one connection before more are dropped (the peer is not reading).
const WRITE_QUEUE: usize = 1024;
/// A message started and not finished within this long closes the connection (slow-sender defence).
const SLOW_SENDER: Duration = Duration::from_secs(30);
/// Time an outbound connection gets to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection task needs.
#[derive(Clone)]
pub struct StreamContext {
    /// The core thread's inbox.
    pub inbox: mpsc::Sender<Inbound>,
    /// Message size limits.
    pub limits: Limits,
    /// A connection silent for this long is closed (longer than the longest registration, so a
    /// registered client's connection stays while its binding lives).
    pub idle_timeout: Duration,
    /// Shutdown.
    pub stop: watch::Receiver<bool>,
}

/// Accepts connections on `listener` until shutdown; with `tls`, each is TLS.
pub async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, ctx: StreamContext, max_connections: usize) {
    let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut stop = ctx.stop.clone();
    while let Some((stream, addr)) = accept(&listener, &mut stop, "sip").await {
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(client = %addr, "sip: too many connections; connection refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer { transport, addr };
        let tls = tls.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve(stream, peer, ctx, Vec::new()).await,
                Some(acceptor) => {
                    if let Some(stream) = tls_handshake(&acceptor, stream, addr, "sip").await {
                        serve(stream, peer, ctx, Vec::new()).await;
                    }
                }
            }
        });
    }
}

/// Opens a TCP connection to `peer` to send `queued` (requests to a contact with no connection yet), then
/// serves it like an accepted one. Failure is reported to the core thread.
pub async fn connect(peer: Peer, queued: Vec<Vec<u8>>, ctx: StreamContext) {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer.addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            tracing::debug!(peer = %peer.addr, "sip: connected");
            serve(stream, peer, ctx, queued).await;
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer.addr, error = %e, "sip: connect failed");
            let _ = ctx.inbox.send(Inbound::ConnectFailed { peer }).await;
        }
        Err(_) => {
            tracing::debug!(peer = %peer.addr, "sip: connect timed out");
            let _ = ctx.inbox.send(Inbound::ConnectFailed { peer }).await;
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: Peer,
    ctx: StreamContext,
    queued: Vec<Vec<u8>>,
) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    for bytes in queued {
        let _ = tx.try_send(bytes);
    }
    if ctx.inbox.send(Inbound::Opened { peer, writer: tx.clone() }).await.is_err() {
        return;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let inbox = ctx.inbox.clone();
    let mut stop = ctx.stop.clone();
    let read = async {
        let mut framer = StreamFramer::new(ctx.limits);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            loop {
                let event = match framer.next_event() {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(e) => return format!("framing lost: {e}"),
                };
                let inbound = match event {
                    FrameEvent::Message(message) => Inbound::Message { peer, message },
                    FrameEvent::Invalid { error, bytes } => Inbound::Invalid { peer, bytes, error },
                    FrameEvent::Ping => {
                        let _ = tx.try_send(PONG.to_vec());
                        continue;
                    }
                    FrameEvent::Pong => continue,
                };
                if inbox.send(inbound).await.is_err() {
                    return "core stopped".into();
                }
            }
            // A partial message may wait at most SLOW_SENDER; an idle connection at most idle_timeout.
            let wait = match framer.partial_since() {
                Some(since) => SLOW_SENDER.saturating_sub(since.elapsed()),
                None => ctx.idle_timeout,
            };
            let n = tokio::select! {
                read = tokio::time::timeout(wait, reader.read(&mut chunk)) => match read {
                    Ok(Ok(0)) => return "closed by peer".into(),
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return format!("read error: {e}"),
                    Err(_) if framer.partial_since().is_some() => return "message not completed in time".into(),
                    Err(_) => return "idle timeout".into(),
                },
                () = stop_requested(&mut stop) => return "shutdown".into(),
            };
            framer.push(Instant::now(), &chunk[..n]);
        }
    };
    // The writer ends when the core drops its sender (connection forgotten) or the socket fails.
    let reason = tokio::select! {
        reason = read => reason,
        () = write => "write failed".into(),
    };
    tracing::debug!(peer = %peer.addr, transport = ?peer.transport, reason, "sip: connection closed");
    let _ = ctx.inbox.send(Inbound::Closed { peer }).await;
}
