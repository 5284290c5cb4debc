//! `vienna serve`: open the store, bind every listener of the built roles, run until SIGINT/SIGTERM, then
//! drain and flush.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::roles::{Listener, NOT_BUILT};
use crate::sip::SipRole;
use crate::turn::TurnRole;
use crate::{data, tls};

/// Runs the server until a shutdown signal.
pub fn run(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vienna")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> Result<()> {
    let started = Instant::now();
    // Watch the signals first, so a SIGTERM during start-up also shuts down cleanly.
    let signals = ShutdownSignals::install()?;
    let prometheus = admin::metrics::install()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        domain = %config.server.domain,
        data_dir = %config.server.data_dir.display(),
        "starting vienna"
    );
    raise_open_files_limit();
    let store = data::open_store(&config)?;
    tracing::info!(backend = "sqlite", path = %config.store_path().display(), "store open");
    warn_about_stale_realms(&config, store.as_ref());
    let certificate = tls::ensure_certificate(&config)?;
    // Load it now even if no listener needs TLS yet, so a broken certificate fails at start, not later.
    let tls_config = tls::server_config(&certificate, &[b"h2", b"http/1.1"])?;

    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut listeners = Vec::new();

    // The MCU first: the conference focus of the SIP role sends it offers and hears its events.
    let focus = config.sip.enabled && config.conference.enabled;
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut mcu_listeners = Vec::new();
    let mcu = if config.mcu.enabled {
        let (role, bound) = crate::mcu::McuRole::start(&config, focus.then_some(events_tx))?;
        mcu_listeners = bound;
        Some(role)
    } else {
        tracing::info!("audio mcu disabled by configuration (mcu.enabled = false)");
        None
    };

    let sip = if config.sip.enabled {
        let wiring = crate::sip::ConferenceWiring { mcu: mcu.clone(), events: mcu.is_some().then_some(events_rx) };
        let (role, bound) =
            SipRole::start(&config, store.clone(), tls_config.clone(), stopped.clone(), &mut tasks, wiring).await?;
        for listener in &bound {
            listener.log();
        }
        listeners.extend(bound);
        Some(role)
    } else {
        tracing::info!("sip registrar and proxy disabled by configuration (sip.enabled = false)");
        None
    };

    let turn = if config.turn.enabled {
        let (role, bound) =
            TurnRole::start(&config, store.clone(), tls_config.clone(), stopped.clone(), &mut tasks).await?;
        for listener in &bound {
            listener.log();
        }
        listeners.extend(bound);
        Some(role)
    } else {
        tracing::info!("turn relay disabled by configuration (turn.enabled = false)");
        None
    };
    // Listed after SIP and TURN, in the order the README shows.
    for listener in &mcu_listeners {
        listener.log();
    }
    listeners.extend(mcu_listeners);

    if config.admin.enabled {
        let protocol = if config.admin.tls { "https" } else { "http" };
        let socket = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|e| anyhow!("admin: cannot bind {protocol} on {}: {e}", config.admin.listen))?;
        let listener = Listener { role: "admin", protocol, address: socket.local_addr()? };
        listener.log();
        listeners.push(listener);
        let turn_shared = turn.as_ref().map(|t| (t.shared.clone(), t.workers()));
        let state = Arc::new(AdminState {
            store: store.clone(),
            prometheus,
            started,
            started_unix: admin::metrics::unix_now(),
            domain: config.server.domain.clone(),
            listeners: listeners.clone(),
            token: config.admin.token.clone(),
            turn: turn_shared,
            sip: sip.as_ref().map(|s| s.shared.clone()),
            mcu: mcu.clone(),
            conferences: sip.as_ref().and_then(|s| s.conferences.clone()),
            config: Arc::new(config.clone()),
        });
        let tls = config.admin.tls.then(|| tls_config.clone());
        tasks.spawn(admin::serve(socket, tls, admin::router(state), stopped.clone(), config.shutdown_timeout()));
    }
    tracing::info!(not_built = ?NOT_BUILT, "roles not in this build yet");
    tracing::info!(listeners = listeners.len(), "ready");

    let reason = signals.recv().await;
    tracing::info!(signal = reason, "shutting down");
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    if let Some(turn) = turn {
        tokio::task::spawn_blocking(move || turn.shutdown()).await?;
    }
    if let Some(mcu) = mcu {
        tokio::task::spawn_blocking(move || mcu.shutdown()).await?;
    }
    if let Some(sip) = sip {
        tokio::task::spawn_blocking(move || sip.shutdown()).await?;
    }
    let flushed = tokio::task::spawn_blocking(move || store.flush()).await?;
    if let Err(e) = flushed {
        tracing::error!(error = %e, "store flush at shutdown failed");
        return Err(anyhow!("store flush at shutdown failed: {e}"));
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT and SIGTERM, watched from start-up on.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        })
    }

    /// Waits for the first of them; returns its name.
    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Accounts whose secrets were derived for another realm cannot authenticate; say so once at start.
fn warn_about_stale_realms(config: &Config, store: &dyn vienna_store::Store) {
    match store.list_accounts() {
        Ok(accounts) => {
            let stale = accounts.iter().filter(|a| a.realm != config.server.domain).count();
            if stale > 0 {
                tracing::warn!(
                    accounts = stale,
                    domain = %config.server.domain,
                    "accounts have passwords for another realm and cannot authenticate until `vienna user passwd`"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list accounts"),
    }
}

/// Every TURN allocation holds a socket: raise the soft limit on open files to the hard limit, and say
/// what it is, so an operator sizing a relay knows the ceiling.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write one rlimit struct on the stack.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0
    };
    let open_files = if raised { limit.rlim_max } else { limit.rlim_cur };
    tracing::info!(open_files, "open file limit (each TURN allocation uses one)");
}
