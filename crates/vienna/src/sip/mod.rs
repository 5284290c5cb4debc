//! The SIP role: registrar and stateful forking proxy (the sans-IO core `vienna_signaling::Core`) on UDP,
//! TCP and TLS.
//!
//! One thread ([`engine`]) owns the core and the UDP socket; it runs its own single-threaded runtime, so
//! the store writes it makes (one per batch of messages) block nobody else. With
//! `sip.bindings_write_back_ms` set, registrations are written by a thread of their own instead
//! ([`writeback`]). TCP and TLS connections
//! ([`stream`]) are tasks on the main runtime that frame messages for it and write what it sends back.

pub mod conference;
mod directory;
mod engine;
pub mod settings;
mod shared;
mod stream;
mod writeback;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use vienna_netio::{UdpOptions, bind_udp};
use vienna_signaling::{Core, LocalAddr};
use vienna_sip::{Limits, Transport};
use vienna_store::Store;

use crate::config::Config;
use crate::roles::Listener;
use directory::StoreDirectory;
use engine::Engine;
pub use engine::unix_now;
pub use shared::SipShared;
use stream::StreamContext;

/// Socket buffers of the UDP listener: room for a burst of REGISTERs while a store write is in progress.
const UDP_BUFFER: usize = 4 << 20;
/// Messages from connections waiting for the core thread before readers are slowed down.
const INBOX: usize = 8192;

/// The running SIP role.
pub struct SipRole {
    /// What `/metrics` reads.
    pub shared: Arc<SipShared>,
    /// The conference focus's live conferences and counters, when it runs.
    pub conferences: Option<Arc<conference::ConferenceShared>>,
    thread: std::thread::JoinHandle<()>,
}

/// How the conference focus reaches the audio MCU: the MCU, and the channel of its workers' events.
pub struct ConferenceWiring {
    /// The MCU, when it runs.
    pub mcu: Option<Arc<crate::mcu::McuRole>>,
    /// Its workers' roster events.
    pub events: Option<mpsc::UnboundedReceiver<vienna_signaling::conference::MediaEvent>>,
}

impl SipRole {
    /// Binds the listeners (UDP always; TCP and TLS as configured), loads the live bindings from the store,
    /// starts the core thread and the accept loops (in `tasks`), and returns the role with its listeners.
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        tls: Arc<rustls::ServerConfig>,
        stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
        wiring: ConferenceWiring,
    ) -> Result<(SipRole, Vec<Listener>)> {
        let sip = &config.sip;
        let udp_addr = std::net::SocketAddr::new(sip.listen_ip, sip.udp_port);
        let options = UdpOptions { reuse_port: false, recv_buffer: UDP_BUFFER, send_buffer: UDP_BUFFER };
        let udp = bind_udp(udp_addr, options).map_err(|e| anyhow!("sip: cannot bind udp on {udp_addr}: {e}"))?;
        let udp_addr = udp.local_addr()?;
        let mut listeners = vec![Listener { role: "sip", protocol: "udp", address: udp_addr }];
        let mut local = vec![LocalAddr { transport: Transport::Udp, addr: udp_addr }];
        let mut stream_listeners = Vec::new();
        for (enabled, port, transport, protocol) in
            [(sip.tcp, sip.tcp_port, Transport::Tcp, "tcp"), (sip.tls, sip.tls_port, Transport::Tls, "tls")]
        {
            if !enabled {
                continue;
            }
            let addr = std::net::SocketAddr::new(sip.listen_ip, port);
            let listener =
                crate::net::bind_tcp(addr).await.map_err(|e| anyhow!("sip: cannot bind {protocol} on {addr}: {e}"))?;
            let addr = listener.local_addr()?;
            listeners.push(Listener { role: "sip", protocol, address: addr });
            local.push(LocalAddr { transport, addr });
            stream_listeners.push((transport, listener));
        }

        let core_config = settings::core_config(config, local);
        let limits: Limits = core_config.limits;
        let now_unix = unix_now();
        let bindings =
            store.all_bindings(now_unix as i64).map_err(|e| anyhow!("sip: cannot load registrations: {e}"))?;
        let loaded = bindings.len();
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow!("sip: no randomness: {e}"))?;

        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
        let streams = StreamContext {
            inbox: inbox_tx,
            limits,
            idle_timeout: Duration::from_secs(u64::from(sip.max_expires) + 60),
            stop: stop.clone(),
        };
        for (transport, listener) in stream_listeners {
            let acceptor = (transport == Transport::Tls).then(|| tokio_rustls::TlsAcceptor::from(tls.clone()));
            tasks.spawn(stream::accept_loop(listener, acceptor, streams.clone(), sip.max_connections));
        }

        let shared = Arc::new(SipShared::default());
        let directory = StoreDirectory::new(store.clone(), config.sip_realm());
        let runtime = tokio::runtime::Handle::current();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let thread_shared = shared.clone();
        // The A/V Edge credential service answers SERVICE requests to the MRAS URI (see crate::mras).
        let mras_service = crate::mras::sip_service(config)?;
        let domain = core_config.domain.clone();
        // The conference focus: its settings, the conferences the store holds, the MCU link.
        let focus = if config.conference.enabled {
            let now = unix_now() as i64;
            let stored = store.list_conferences().map_err(|e| anyhow!("sip: cannot load conferences: {e}"))?;
            let stored: Vec<_> = stored.into_iter().filter(|c| c.expires_at.is_none_or(|t| t > now)).collect();
            let mut focus_secret = [0u8; 32];
            getrandom::fill(&mut focus_secret).map_err(|e| anyhow!("sip: no randomness: {e}"))?;
            Some((conference::conference_config(config, wiring.mcu.is_some()), focus_secret, stored))
        } else {
            None
        };
        let conferences = focus.as_ref().map(|_| Arc::new(conference::ConferenceShared::default()));
        let thread_conferences = conferences.clone();
        let lookup_store = store.clone();
        let ConferenceWiring { mcu, events } = wiring;
        let write_back_every =
            (sip.bindings_write_back_ms > 0).then(|| Duration::from_millis(sip.bindings_write_back_ms));
        let thread = std::thread::Builder::new()
            .name("sip-core".into())
            .spawn(move || {
                let local_runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("sip: cannot start the core runtime: {e}")));
                        return;
                    }
                };
                local_runtime.block_on(async move {
                    let mut core = Core::new(core_config, directory, secret, bindings, Instant::now(), now_unix);
                    if let Some((user, handler)) = mras_service {
                        core.add_service("SERVICE", &user, handler);
                    }
                    let restored = focus.as_ref().map_or(0, |f| f.2.len());
                    if let Some((config, focus_secret, stored)) = focus {
                        core.enable_conferences(config, focus_secret, Some(conference::lookup(lookup_store)));
                        for c in &stored {
                            core.restore_conference(c);
                        }
                    }
                    let write_back = match write_back_every {
                        Some(every) => match writeback::WriteBack::start(store.clone(), every) {
                            Ok(w) => Some(w),
                            Err(e) => {
                                let _ = ready_tx.send(Err(anyhow!("sip: cannot start the binding writer: {e}")));
                                return;
                            }
                        },
                        None => None,
                    };
                    match Engine::new(core, udp, inbox_rx, store, thread_shared, streams, runtime) {
                        Ok(engine) => {
                            let engine = engine.with_write_back(write_back);
                            let engine = match thread_conferences {
                                Some(shared) => {
                                    tracing::info!(conferences = restored, "conference focus started");
                                    engine.with_conferences(conference::McuLink::new(mcu, events), shared)
                                }
                                None => engine,
                            };
                            let _ = ready_tx.send(Ok(()));
                            engine.run(stop).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!("sip: cannot register the udp socket: {e}")));
                        }
                    }
                });
            })
            .context("sip: cannot start the core thread")?;
        tokio::task::spawn_blocking(move || ready_rx.recv())
            .await
            .context("sip: core thread start")?
            .context("sip: core thread died at start")??;
        tracing::info!(
            domain = %domain,
            realm = %config.sip_realm(),
            authenticate = sip.authenticate,
            registrations_loaded = loaded,
            bindings_write_back_ms = sip.bindings_write_back_ms,
            "sip registrar and proxy started"
        );
        if !sip.authenticate {
            tracing::warn!("sip.authenticate = false: anyone can register as any user and send as anyone");
        }
        Ok((SipRole { shared, conferences, thread }, listeners))
    }

    /// Waits for the core thread, which stops when the shutdown signal fires (after a last flush).
    pub fn shutdown(self) {
        let _ = self.thread.join();
    }
}
