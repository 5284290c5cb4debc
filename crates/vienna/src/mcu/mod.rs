//! The audio MCU role: drivers around the sans-IO conference core `vienna_mixer::conference::Host`.
//!
//! One worker thread per core ([`worker`]) owns one UDP socket (its own port) and every conference
//! placed on it; a conference lives on one worker, so its packets and ticks take no lock. A new
//! conference goes to the worker with the fewest. Control requests (create, join with an SDP offer,
//! leave, mute, list) reach the worker through its inbox and are answered on a oneshot channel.
//!
//! The conference focus of the SIP role sends its participants' offers here (an INVITE to a conference
//! becomes [`McuRole::join`]) and hears the workers' roster events (SSRC, mute, dominant speaker,
//! participants gone) on the channel given to [`McuRole::start`]. The admin API is another way in:
//! `POST /api/v1/mcu/conferences/{name}/participants` with an SDP offer returns the SDP answer.

pub mod shared;
mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use mio::{Poll, Waker};
use tokio::sync::oneshot;
use vienna_mixer::MixerConfig;
use vienna_mixer::conference::{Host, HostConfig};
use vienna_netio::{UdpOptions, bind_udp};
use vienna_srtp::{EncryptionPolicy, LocalPolicy};

use crate::config::{Config, McuConfig};
use crate::roles::Listener;
pub use shared::{ConferenceView, McuShared};
pub use worker::JoinReply;
use worker::{Command, WAKER, Worker};

/// Socket buffers of a worker's media socket.
const SOCKET_BUFFER: usize = 4 << 20;
/// How long an admin request waits for a worker.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks the `[mcu]` section.
pub fn validate(mcu: &McuConfig) -> Result<()> {
    if !mcu.enabled {
        return Ok(());
    }
    if mcu.listen_ip.is_unspecified() {
        bail!("mcu.listen_ip {} is not a specific address: it goes into SDP answers", mcu.listen_ip);
    }
    if ![8_000, 16_000, 48_000].contains(&mcu.mix_rate) {
        bail!("mcu.mix_rate must be 8000, 16000 or 48000 (got {})", mcu.mix_rate);
    }
    if !(1..=15).contains(&mcu.max_talkers) {
        bail!("mcu.max_talkers must be 1 to 15 (CSRCs an RTP header can carry)");
    }
    if !(6_000..=510_000).contains(&mcu.opus_bitrate) {
        bail!("mcu.opus_bitrate must be 6000 to 510000 bits per second");
    }
    if mcu.opus_complexity > 10 {
        bail!("mcu.opus_complexity must be 0 to 10");
    }
    if !(40..=1000).contains(&mcu.max_jitter_ms) {
        bail!("mcu.max_jitter_ms must be 40 to 1000");
    }
    if !(1..=50).contains(&mcu.quiet_decode_interval) {
        bail!("mcu.quiet_decode_interval must be 1 to 50 frames");
    }
    if mcu.media_timeout_secs == 0 || mcu.max_participants == 0 {
        bail!("mcu.media_timeout_secs and mcu.max_participants must be positive");
    }
    encryption(mcu)?;
    Ok(())
}

/// `mcu.encryption` as a policy.
fn encryption(mcu: &McuConfig) -> Result<EncryptionPolicy> {
    EncryptionPolicy::parse(&mcu.encryption).ok_or_else(|| {
        anyhow!("mcu.encryption must be \"required\", \"optional\" or \"rejected\" (got {:?})", mcu.encryption)
    })
}

#[derive(Clone)]
struct WorkerHandle {
    inbox: mpsc::Sender<Command>,
    waker: Arc<Waker>,
}

impl WorkerHandle {
    fn send(&self, command: Command) -> bool {
        self.inbox.send(command).is_ok() && self.waker.wake().is_ok()
    }
}

/// The running MCU.
pub struct McuRole {
    /// Figures for the admin API and `/metrics`.
    pub shared: Arc<McuShared>,
    workers: Vec<WorkerHandle>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    placement: Mutex<HashMap<String, usize>>,
}

fn host_config(config: &Config, local: SocketAddr) -> HostConfig {
    let mcu = &config.mcu;
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    HostConfig {
        mixer: MixerConfig {
            rate: mcu.mix_rate,
            max_talkers: mcu.max_talkers,
            opus_complexity: mcu.opus_complexity,
            encode_per_listener: mcu.encode_per_listener,
            ..MixerConfig::default()
        },
        local,
        opus_bitrate: mcu.opus_bitrate,
        max_jitter_frames: mcu.max_jitter_ms / 20,
        media_timeout: Duration::from_secs(mcu.media_timeout_secs),
        max_participants: mcu.max_participants,
        quiet_decode_interval: mcu.quiet_decode_interval,
        cname: format!("mcu@{}", config.server.domain),
        unix_at_start: unix,
        started: Instant::now(),
        srtp: LocalPolicy {
            encryption: encryption(mcu).unwrap_or(EncryptionPolicy::Optional),
            ..LocalPolicy::default()
        },
    }
}

impl McuRole {
    /// Binds one UDP socket per worker and starts the workers; with `events`, their roster events go to
    /// the conference focus.
    pub fn start(
        config: &Config,
        events: Option<tokio::sync::mpsc::UnboundedSender<vienna_signaling::conference::MediaEvent>>,
    ) -> Result<(Arc<McuRole>, Vec<Listener>)> {
        let mcu = &config.mcu;
        let count = if mcu.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            mcu.workers
        };
        let shared = Arc::new(McuShared::new(count));
        let mut workers = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let mut listeners = Vec::with_capacity(count);
        for index in 0..count {
            let port =
                if mcu.port == 0 { 0 } else { mcu.port.checked_add(index as u16).context("mcu.port too high")? };
            let addr = SocketAddr::new(mcu.listen_ip, port);
            let options = UdpOptions { reuse_port: false, recv_buffer: SOCKET_BUFFER, send_buffer: SOCKET_BUFFER };
            let socket = bind_udp(addr, options).map_err(|e| anyhow!("mcu: cannot bind udp on {addr}: {e}"))?;
            let local = socket.local_addr()?;
            listeners.push(Listener { role: "mcu", protocol: "udp", address: local });
            let host = Host::new(host_config(config, local)).map_err(|e| anyhow!("mcu: {e}"))?;
            let poll = Poll::new().context("mcu: cannot create a poll instance")?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("mcu: cannot create a waker")?);
            let (tx, rx) = mpsc::channel();
            let worker = Worker::new(index, host, poll, socket, rx, shared.clone(), events.clone())?;
            let thread = std::thread::Builder::new()
                .name(format!("mcu-{index}"))
                .spawn(move || worker.run())
                .context("mcu: cannot start a worker thread")?;
            threads.push(thread);
            workers.push(WorkerHandle { inbox: tx, waker });
        }
        tracing::info!(
            workers = count,
            mix_rate = mcu.mix_rate,
            max_talkers = mcu.max_talkers,
            encryption = %mcu.encryption,
            "audio mcu started (join by SIP INVITE to a conference, or POST /api/v1/mcu/conferences/NAME/participants)"
        );
        let role = McuRole { shared, workers, threads: Mutex::new(threads), placement: Mutex::new(HashMap::new()) };
        Ok((Arc::new(role), listeners))
    }

    /// The worker of conference `name`; with `create`, a new conference goes to the least loaded.
    fn worker_of(&self, name: &str, create: bool) -> Option<usize> {
        let mut placement = self.placement.lock().ok()?;
        if let Some(w) = placement.get(name) {
            return Some(*w);
        }
        if !create {
            return None;
        }
        let mut load = vec![0usize; self.workers.len()];
        for w in placement.values() {
            load[*w] += 1;
        }
        let w = (0..self.workers.len()).min_by_key(|w| load[*w])?;
        placement.insert(name.to_owned(), w);
        Some(w)
    }

    async fn ask<T>(&self, worker: usize, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        if !self.workers[worker].send(make(tx)) {
            return Err("mcu worker stopped".into());
        }
        tokio::time::timeout(REPLY_TIMEOUT, rx)
            .await
            .map_err(|_| "mcu worker did not answer".to_owned())?
            .map_err(|_| "mcu worker stopped".to_owned())
    }

    /// Creates conference `name` (idempotent).
    pub async fn create(&self, name: &str) -> Result<(), String> {
        let w = self.worker_of(name, true).ok_or("no mcu worker")?;
        let name = name.to_owned();
        self.ask(w, |reply| Command::Create { name, reply }).await?
    }

    /// Adds a participant from its SDP offer (creating the conference if needed).
    pub async fn join(&self, conference: &str, offer: String, label: String) -> Result<JoinReply, String> {
        let w = self.worker_of(conference, true).ok_or("no mcu worker")?;
        let conference = conference.to_owned();
        self.ask(w, |reply| Command::Join { conference, offer, label, reply }).await?
    }

    /// Removes a participant.
    pub async fn leave(&self, conference: &str, participant: &str) -> Result<(), String> {
        let w = self.worker_of(conference, false).ok_or("no such conference")?;
        let (conference, participant) = (conference.to_owned(), participant.to_owned());
        self.ask(w, |reply| Command::Leave { conference, participant, reply }).await?
    }

    /// Mutes or unmutes a participant.
    pub async fn mute(&self, conference: &str, participant: &str, muted: bool) -> Result<(), String> {
        let w = self.worker_of(conference, false).ok_or("no such conference")?;
        let (conference, participant) = (conference.to_owned(), participant.to_owned());
        self.ask(w, |reply| Command::Mute { conference, participant, muted, reply }).await?
    }

    /// Removes a conference.
    pub async fn remove(&self, conference: &str) -> Result<(), String> {
        let w = self.worker_of(conference, false).ok_or("no such conference")?;
        let name = conference.to_owned();
        let r = self.ask(w, |reply| Command::Remove { conference: name, reply }).await?;
        if r.is_ok()
            && let Ok(mut p) = self.placement.lock()
        {
            p.remove(conference);
        }
        r
    }

    /// Every conference on every worker.
    pub async fn list(&self) -> Vec<ConferenceView> {
        let mut out = Vec::new();
        for w in 0..self.workers.len() {
            if let Ok(mut views) = self.ask(w, |reply| Command::List { reply }).await {
                out.append(&mut views);
            }
        }
        out
    }

    /// Stops the workers and waits for them.
    pub fn shutdown(&self) {
        for w in &self.workers {
            w.send(Command::Shutdown);
        }
        if let Ok(mut threads) = self.threads.lock() {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}
