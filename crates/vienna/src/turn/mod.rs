//! The TURN relay role (RFC 8656/5766): drivers around the sans-IO core `vienna_turn::Relay`.
//!
//! One worker thread per core ([`worker`]) owns a `SO_REUSEPORT` share of the UDP listener, a relay
//! core, a slice of the relay port range and every relayed socket of its allocations; the kernel spreads
//! clients over the workers by 4-tuple hash, so a client always meets the same worker. TCP and TLS
//! clients ([`stream`]) are async tasks that pass frames to the worker owning their connection.

mod credentials;
pub mod settings;
mod shared;
mod stream;
mod stream_clients;
mod worker;

use std::sync::Arc;
use std::sync::mpsc;

use anyhow::{Context, Result, anyhow};
use mio::{Poll, Waker};
use tokio::sync::watch;
use tokio::task::JoinSet;
use vienna_netio::{UdpOptions, bind_udp};
use vienna_store::Store;
use vienna_turn::Relay;

use crate::config::Config;
use crate::roles::Listener;
pub use shared::TurnShared;
pub use worker::unix_now;
use worker::{Command, WAKER, Worker};

/// A handle to a worker: its inbox and the waker that makes it look.
#[derive(Clone)]
pub struct WorkerHandle {
    inbox: mpsc::Sender<Command>,
    waker: Arc<Waker>,
}

impl WorkerHandle {
    /// Delivers `command`; `false` if the worker has stopped.
    fn send(&self, command: Command) -> bool {
        self.inbox.send(command).is_ok() && self.waker.wake().is_ok()
    }
}

/// The running relay.
pub struct TurnRole {
    /// What the admin API and `/metrics` read.
    pub shared: Arc<TurnShared>,
    workers: Arc<Vec<WorkerHandle>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl TurnRole {
    /// Binds every listener (UDP always; TCP and TLS as configured), starts the workers and the stream
    /// accept loops (in `tasks`), and returns the role with its listeners.
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        tls: Arc<rustls::ServerConfig>,
        stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) -> Result<(TurnRole, Vec<Listener>)> {
        let turn = &config.turn;
        let count = settings::worker_count(turn);
        let mut nonce_secret = [0u8; 32];
        getrandom::fill(&mut nonce_secret).map_err(|e| anyhow!("turn: no randomness: {e}"))?;

        // UDP: one SO_REUSEPORT socket per worker on the same address (port 0: the first one's port).
        let options =
            UdpOptions { reuse_port: true, recv_buffer: worker::LISTENER_BUFFER, send_buffer: worker::LISTENER_BUFFER };
        let mut addr = settings::listen_addr(turn, turn.udp_port);
        let mut udp = Vec::with_capacity(count);
        for _ in 0..count {
            let socket = bind_udp(addr, options).map_err(|e| anyhow!("turn: cannot bind udp on {addr}: {e}"))?;
            addr = socket.local_addr()?;
            udp.push(socket);
        }
        let mut listeners = vec![Listener { role: "turn", protocol: "udp", address: addr }];

        let mras_keys = crate::mras::relay_keys(config)?;
        let shared = Arc::new(TurnShared::new(count));
        let quota = Arc::new(vienna_turn::quota::SharedQuota::new());
        let mut handles = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for (index, socket) in udp.into_iter().enumerate() {
            let mut relay_config = settings::relay_config(config, index, count, nonce_secret, quota.clone())?;
            relay_config.mras = mras_keys.clone();
            let poll = Poll::new().context("turn: cannot create a poll instance")?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("turn: cannot create a waker")?);
            let (inbox_tx, inbox_rx) = mpsc::channel();
            let store = store.clone();
            let shared = shared.clone();
            // The core is built on its thread: it holds the credential cache, which is not Send.
            let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
            let thread = std::thread::Builder::new()
                .name(format!("turn-{index}"))
                .spawn(move || {
                    let now = std::time::Instant::now();
                    let relay = Relay::new(
                        relay_config,
                        credentials::StoreCredentials::new(store),
                        SystemEntropy,
                        now,
                        unix_now(),
                    );
                    let worker = relay
                        .map_err(|e| anyhow!("turn: {e}"))
                        .and_then(|relay| Ok(Worker::new(index, relay, poll, socket, inbox_rx, shared)?));
                    match worker {
                        Ok(worker) => {
                            let _ = ready_tx.send(Ok(()));
                            worker.run();
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
                .context("turn: cannot start a worker thread")?;
            ready_rx.recv().context("turn: worker thread died at start")??;
            threads.push(thread);
            handles.push(WorkerHandle { inbox: inbox_tx, waker });
        }
        let workers = Arc::new(handles);

        if turn.tcp {
            let addr = settings::listen_addr(turn, turn.tcp_port);
            let listener =
                crate::net::bind_tcp(addr).await.map_err(|e| anyhow!("turn: cannot bind tcp on {addr}: {e}"))?;
            listeners.push(Listener { role: "turn", protocol: "tcp", address: listener.local_addr()? });
            tasks.spawn(stream::accept_loop(listener, None, workers.clone(), shared.clone(), stop.clone()));
        }
        if turn.msturn && turn.ms_tcp {
            let addr = settings::listen_addr(turn, turn.ms_tcp_port);
            match crate::net::bind_tcp(addr).await {
                Ok(listener) => {
                    listeners.push(Listener { role: "turn", protocol: "ms-tcp", address: listener.local_addr()? });
                    tasks.spawn(stream::accept_loop(listener, None, workers.clone(), shared.clone(), stop.clone()));
                }
                // The default 443 needs privileges a developer's run may not have: MS-TURN over TCP still
                // works on turn.tcp_port.
                Err(e) if turn.ms_tcp_port == 443 => tracing::warn!(
                    address = %addr,
                    error = %e,
                    "turn: cannot bind the MS-TURN TCP port (needs root or CAP_NET_BIND_SERVICE; set turn.ms_tcp_port); \
                     MS-TURN over TCP stays available on turn.tcp_port"
                ),
                Err(e) => return Err(anyhow!("turn: cannot bind ms-tcp on {addr}: {e}")),
            }
        }
        if turn.tls {
            let addr = settings::listen_addr(turn, turn.tls_port);
            let listener =
                crate::net::bind_tcp(addr).await.map_err(|e| anyhow!("turn: cannot bind tls on {addr}: {e}"))?;
            listeners.push(Listener { role: "turn", protocol: "tls", address: listener.local_addr()? });
            tasks.spawn(stream::accept_loop(listener, Some(tls), workers.clone(), shared.clone(), stop));
        }
        tracing::info!(
            workers = count,
            realm = %config.turn_realm(),
            relay_ipv4 = %turn.relay_ipv4,
            relay_ipv6 = %turn.relay_ipv6,
            ports = %format!("{}-{}", turn.min_port, turn.max_port),
            msturn = turn.msturn,
            mras = mras_keys.is_some(),
            "turn relay started"
        );
        let tcp = listeners
            .iter()
            .find(|l| l.protocol == "ms-tcp")
            .or_else(|| listeners.iter().find(|l| l.protocol == "tcp"));
        crate::mras::publish_relay_ports(listeners[0].address.port(), tcp.map_or(0, |l| l.address.port()));
        Ok((TurnRole { shared, workers, threads }, listeners))
    }

    /// Has every worker publish its statistics (and, with `allocations`, its allocation list) now;
    /// waits up to `timeout` in all. Blocking.
    pub fn snapshot(workers: &[WorkerHandle], allocations: bool, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let (tx, rx) = mpsc::channel();
        let asked = workers.iter().filter(|w| w.send(Command::Snapshot { reply: tx.clone(), allocations })).count();
        for _ in 0..asked {
            if rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).is_err() {
                break;
            }
        }
    }

    /// The worker handles (for [`TurnRole::snapshot`]).
    pub fn workers(&self) -> Arc<Vec<WorkerHandle>> {
        self.workers.clone()
    }

    /// Stops the workers (their relayed sockets close) and waits for them.
    pub fn shutdown(self) {
        for worker in self.workers.iter() {
            worker.send(Command::Shutdown);
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// The operating system's CSPRNG, for nonces, ports and reservation tokens.
struct SystemEntropy;

impl vienna_turn::Entropy for SystemEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // No entropy source on Linux means something is badly wrong; stop rather than guess.
            panic!("the system random number generator failed: {e}");
        }
    }
}
