//! One MCU worker: a thread with its own `mio` poll, its own UDP socket and its own
//! [`Host`](vienna_mixer::conference::Host), which owns every conference placed on this worker.
//!
//! The loop: sleep until a datagram, a command or the next conference tick; hand received batches
//! (`recvmmsg`) to the core with the time; run due ticks; drain the core's datagrams into a send batch
//! (`sendmmsg`). Nothing on the packet path is shared with another thread.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use tokio::sync::oneshot;
use vienna_mixer::conference::{Host, HostEvent, JoinOptions, MemberKey};
use vienna_mixer::mixer::{MixerEvent, ParticipantId};
use vienna_netio::{BATCH, RecvBatch, SendBatch};
use vienna_signaling::conference::MediaEvent;

use super::shared::{ConferenceView, McuShared, ParticipantView, TickBudget, WorkerStats};

const SOCKET: Token = Token(0);
/// Token of the waker (the inbox has something).
pub const WAKER: Token = Token(1);
/// Batches read before giving ticks a turn.
const READ_BUDGET: usize = 8;
/// Longest sleep with nothing scheduled.
const MAX_IDLE: Duration = Duration::from_millis(500);
/// How often statistics are published.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// What a participant id looks like outside: `<slot>-<generation>`.
pub fn participant_name(id: ParticipantId) -> String {
    format!("{}-{}", id.slot, id.generation)
}

/// CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`); zero if the clock cannot be read.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime writes only into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

fn parse_participant(s: &str) -> Option<ParticipantId> {
    let (slot, generation) = s.split_once('-')?;
    Some(ParticipantId { slot: slot.parse().ok()?, generation: generation.parse().ok()? })
}

/// What a join returns.
pub struct JoinReply {
    /// Participant id within the conference.
    pub participant: String,
    /// SDP answer.
    pub answer: String,
    /// The SSRC the offer announced, if any.
    pub ssrc: Option<u32>,
}

/// What other threads ask a worker.
pub enum Command {
    /// Create a conference (idempotent).
    Create {
        /// Its name.
        name: String,
        /// Answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Add a participant from its SDP offer (the conference is created if missing).
    Join {
        /// Conference.
        conference: String,
        /// SDP offer.
        offer: String,
        /// Label for logs and the roster.
        label: String,
        /// Answer.
        reply: oneshot::Sender<Result<JoinReply, String>>,
    },
    /// Remove a participant.
    Leave {
        /// Conference.
        conference: String,
        /// Participant id.
        participant: String,
        /// Answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Mute or unmute a participant.
    Mute {
        /// Conference.
        conference: String,
        /// Participant id.
        participant: String,
        /// Mute or unmute.
        muted: bool,
        /// Answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Remove a conference and everyone in it.
    Remove {
        /// Conference.
        conference: String,
        /// Answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Describe every conference of this worker.
    List {
        /// Answer.
        reply: oneshot::Sender<Vec<ConferenceView>>,
    },
    /// Stop.
    Shutdown,
}

/// The state of one worker thread.
pub struct Worker {
    index: usize,
    host: Host,
    poll: Poll,
    socket: UdpSocket,
    inbox: Receiver<Command>,
    shared: Arc<McuShared>,
    recv: RecvBatch,
    send: SendBatch,
    send_dropped: u64,
    /// Frames encoded by conferences since removed (so the total never goes down).
    encodes_gone: u64,
    /// Roster events for the conference focus (SIP), when it drives this MCU.
    events: Option<tokio::sync::mpsc::UnboundedSender<MediaEvent>>,
    /// Tick rounds and their overruns of the 20 ms budget.
    budget: TickBudget,
}

impl Worker {
    /// A worker serving `socket` (bound, non-blocking) with `host`.
    pub fn new(
        index: usize,
        host: Host,
        poll: Poll,
        socket: std::net::UdpSocket,
        inbox: Receiver<Command>,
        shared: Arc<McuShared>,
        events: Option<tokio::sync::mpsc::UnboundedSender<MediaEvent>>,
    ) -> io::Result<Worker> {
        let mut socket = UdpSocket::from_std(socket);
        poll.registry().register(&mut socket, SOCKET, Interest::READABLE)?;
        Ok(Worker {
            index,
            host,
            poll,
            socket,
            inbox,
            shared,
            recv: RecvBatch::new(),
            send: SendBatch::new(),
            send_dropped: 0,
            encodes_gone: 0,
            events,
            budget: TickBudget::default(),
        })
    }

    /// Runs until [`Command::Shutdown`] or the inbox closes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut next_stats = Instant::now() + STATS_EVERY;
        // The socket still held datagrams when the read budget ran out: mio's readiness is edge-triggered,
        // and a receive queue that fills up raises no new edge, so it is read again before sleeping.
        let mut unfinished = false;
        loop {
            let now = Instant::now();
            let deadline = self.host.poll_timeout().map_or(next_stats, |t| t.min(next_stats));
            let timeout =
                if unfinished { Duration::ZERO } else { deadline.saturating_duration_since(now).min(MAX_IDLE) };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(worker = self.index, error = %e, "mcu: poll failed; worker stops");
                return;
            }
            let mut readable = false;
            let mut wake = false;
            for event in events.iter() {
                match event.token() {
                    SOCKET => readable = true,
                    WAKER => wake = true,
                    _ => {}
                }
            }
            if wake && !self.read_inbox() {
                return;
            }
            if readable || unfinished {
                unfinished = self.read_socket();
            }
            let now = Instant::now();
            if self.host.poll_timeout().is_some_and(|t| t <= now) {
                // A tick round: the due ticks and the sending of their packets, timed against the budget.
                let cpu = thread_cpu_time();
                self.host.handle_timeout(now);
                self.drain(now);
                self.budget.record(now.elapsed(), thread_cpu_time().saturating_sub(cpu));
            } else {
                self.drain(now);
            }
            if now >= next_stats {
                self.publish();
                next_stats = now + STATS_EVERY;
            }
        }
    }

    /// Reads what the socket holds, up to a budget; `true` when it may hold more (read again soon).
    fn read_socket(&mut self) -> bool {
        for _ in 0..READ_BUDGET {
            let n = match self.recv.recv(&self.socket) {
                Ok(n) => n,
                Err(e) => {
                    // An ICMP error surfacing (ECONNREFUSED): datagrams may still wait behind it.
                    tracing::trace!(worker = self.index, error = %e, "mcu: receive error");
                    return true;
                }
            };
            if n == 0 {
                return false;
            }
            let now = Instant::now();
            for i in 0..n {
                let (bytes, from) = self.recv.get_mut(i);
                self.host.handle_datagram(now, from, bytes);
            }
            // STUN answers go out at once, not at the next tick.
            self.drain(now);
            if n < BATCH {
                // A short batch means the queue is empty; every later datagram raises a new edge.
                return false;
            }
        }
        true
    }

    /// Sends everything the core has.
    fn drain(&mut self, now: Instant) {
        loop {
            if self.send.is_full() {
                self.send_dropped += self.send.flush(&self.socket).dropped as u64;
            }
            let Some(slot) = self.send.slot() else { break };
            let Some(t) = self.host.poll_transmit(now, &mut slot[..]) else { break };
            self.send.commit(t.len, t.destination);
        }
        if !self.send.is_empty() {
            self.send_dropped += self.send.flush(&self.socket).dropped as u64;
        }
        while let Some(event) = self.host.poll_event() {
            self.log_event(event);
        }
    }

    fn log_event(&self, event: HostEvent) {
        self.forward(&event);
        match event {
            HostEvent::Roster { conference, event } => {
                let name = self.host.conference_name(conference).unwrap_or("?");
                match event {
                    MixerEvent::Joined(id) => {
                        tracing::info!(conference = name, participant = participant_name(id), "mcu: joined")
                    }
                    MixerEvent::Left(id) => {
                        tracing::info!(conference = name, participant = participant_name(id), "mcu: left")
                    }
                    MixerEvent::Muted { id, muted } => {
                        tracing::info!(conference = name, participant = participant_name(id), muted, "mcu: mute")
                    }
                    MixerEvent::Speaking { id, speaking } => tracing::debug!(
                        conference = name,
                        participant = participant_name(id),
                        speaking,
                        "mcu: speaking"
                    ),
                    MixerEvent::DominantSpeaker(id) => tracing::debug!(
                        conference = name,
                        participant = id.map(participant_name),
                        "mcu: dominant speaker"
                    ),
                }
            }
            HostEvent::Dtmf { key, event } => tracing::info!(
                conference = self.host.conference_name(key.conference).unwrap_or("?"),
                participant = participant_name(key.participant),
                digit = ?event.digit(),
                "mcu: dtmf"
            ),
            HostEvent::MediaTimeout(key) => tracing::info!(
                conference = self.host.conference_name(key.conference).unwrap_or("?"),
                participant = participant_name(key.participant),
                "mcu: participant removed after media timeout"
            ),
            HostEvent::Source { key, ssrc } => tracing::debug!(
                conference = self.host.conference_name(key.conference).unwrap_or("?"),
                participant = participant_name(key.participant),
                ssrc,
                "mcu: source"
            ),
        }
    }

    /// Hands the events a focus cares about to it (a channel send; nothing on the packet path waits).
    fn forward(&self, event: &HostEvent) {
        let Some(tx) = &self.events else { return };
        let name = |index: u32| self.host.conference_name(index).map(str::to_owned);
        let e = match *event {
            HostEvent::Source { key, ssrc } => name(key.conference).map(|conference| MediaEvent::Source {
                conference,
                participant: participant_name(key.participant),
                ssrc,
            }),
            HostEvent::Roster { conference, event: MixerEvent::Left(id) } => {
                name(conference).map(|conference| MediaEvent::Left { conference, participant: participant_name(id) })
            }
            HostEvent::Roster { conference, event: MixerEvent::Muted { id, muted } } => name(conference)
                .map(|conference| MediaEvent::Muted { conference, participant: participant_name(id), muted }),
            HostEvent::Roster { conference, event: MixerEvent::DominantSpeaker(id) } => name(conference)
                .map(|conference| MediaEvent::Dominant { conference, participant: id.map(participant_name) }),
            _ => None,
        };
        if let Some(e) = e {
            let _ = tx.send(e);
        }
    }

    fn key(&self, conference: &str, participant: &str) -> Result<MemberKey, String> {
        let index = self.host.conference(conference).ok_or("no such conference")?;
        let participant = parse_participant(participant).ok_or("no such participant")?;
        Ok(MemberKey { conference: index, participant })
    }

    /// Commands from other threads; `false` means stop.
    fn read_inbox(&mut self) -> bool {
        loop {
            let command = match self.inbox.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            };
            let now = Instant::now();
            match command {
                Command::Create { name, reply } => {
                    let r = match self.host.conference(&name) {
                        Some(_) => Ok(()),
                        None => self.host.create_conference(&name).map(|_| ()).map_err(|e| e.to_string()),
                    };
                    let _ = reply.send(r);
                }
                Command::Join { conference, offer, label, reply } => {
                    let index = match self.host.conference(&conference) {
                        Some(i) => Ok(i),
                        None => self.host.create_conference(&conference).map_err(|e| e.to_string()),
                    };
                    let mut random = [0u8; 32];
                    let r = index.and_then(|index| {
                        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
                        self.host
                            .add_participant(now, index, &offer, JoinOptions { label, msi: None, random })
                            .map(|j| JoinReply {
                                participant: participant_name(j.key.participant),
                                answer: j.answer,
                                ssrc: j.remote_ssrc,
                            })
                            .map_err(|e| e.to_string())
                    });
                    let _ = reply.send(r);
                }
                Command::Leave { conference, participant, reply } => {
                    let r = self
                        .key(&conference, &participant)
                        .and_then(|k| self.host.remove_participant(now, k).map_err(|e| e.to_string()));
                    let _ = reply.send(r);
                }
                Command::Mute { conference, participant, muted, reply } => {
                    let r = self
                        .key(&conference, &participant)
                        .and_then(|k| self.host.set_muted(k, muted).map_err(|e| e.to_string()));
                    let _ = reply.send(r);
                }
                Command::Remove { conference, reply } => {
                    let r = match self.host.conference(&conference) {
                        Some(i) => {
                            self.encodes_gone += self.host.mixer(i).map_or(0, |m| m.stats().encodes);
                            self.host.remove_conference(now, i).map_err(|e| e.to_string())
                        }
                        None => Err("no such conference".into()),
                    };
                    let _ = reply.send(r);
                }
                Command::List { reply } => {
                    let _ = reply.send(self.views());
                }
                Command::Shutdown => return false,
            }
            self.drain(now);
        }
    }

    fn views(&self) -> Vec<ConferenceView> {
        let local = self.host.config().local;
        let mut out = Vec::new();
        let names: Vec<String> = self.host.conferences().map(|(n, _)| n.to_owned()).collect();
        for name in names {
            let Some(index) = self.host.conference(&name) else { continue };
            let mixer = self.host.mixer(index);
            let dominant = mixer.and_then(|m| m.dominant());
            let participants = self
                .host
                .members(index)
                .into_iter()
                .map(|m| ParticipantView {
                    id: participant_name(m.key.participant),
                    label: m.label,
                    msi: m.msi,
                    codec: m.codec.name().to_owned(),
                    remote: m.destination.map(|a| a.to_string()),
                    muted: m.muted,
                    speaking: m.speaking,
                    dominant: dominant == Some(m.key.participant),
                    rtp_in: m.session.rtp_in,
                    rtp_out: m.session.rtp_out,
                    rtp_dropped: m.session.rtp_dropped,
                    buffered: m.jitter.pushed,
                    played: m.jitter.played,
                    jitter_held: m.jitter.held,
                    duplicate: m.jitter.duplicate,
                    concealed: m.jitter.lost,
                    jitter_dropped: m.jitter.dropped,
                    jitter_resyncs: m.jitter.resyncs,
                    late: m.jitter.late,
                    jitter_target_ms: m.jitter_target * 20,
                    srtp: m.srtp,
                    srtp_rejected: m.protection.rejected,
                    ssrc: m.remote_ssrc,
                })
                .collect();
            let stats = mixer.map(|m| m.stats()).unwrap_or_default();
            out.push(ConferenceView {
                name,
                worker: self.index,
                media_address: local.to_string(),
                participants,
                ticks: stats.ticks,
                encodes: stats.encodes,
                encodes_last_tick: stats.encodes_last_tick,
                talkers_last_tick: stats.talkers_last_tick,
            });
        }
        out
    }

    fn publish(&self) {
        let s = self.host.stats();
        let participants = self.host.conferences().map(|(_, n)| n).sum::<usize>();
        let conferences = self.host.conferences().count();
        let mut encodes = 0;
        let mut srtp_participants = 0;
        let names: Vec<String> = self.host.conferences().map(|(n, _)| n.to_owned()).collect();
        for name in names {
            let Some(index) = self.host.conference(&name) else { continue };
            encodes += self.host.mixer(index).map_or(0, |m| m.stats().encodes);
            srtp_participants += self.host.members(index).iter().filter(|m| m.srtp).count();
        }
        let stats = WorkerStats {
            conferences,
            participants,
            datagrams_in: s.datagrams_in,
            unknown_source: s.unknown_source,
            malformed: s.malformed,
            stun_answered: s.stun_answered,
            stun_refused: s.stun_refused,
            ticks: s.ticks,
            late_ticks: s.late_ticks,
            rtp_out: s.rtp_out,
            rtcp_out: s.rtcp_out,
            send_dropped: s.send_dropped + self.send_dropped,
            unprotect_failed: s.unprotect_failed,
            encodes: self.encodes_gone + encodes,
            srtp_participants,
            budget: self.budget,
        };
        self.shared.publish(self.index, stats);
    }
}
