//! `vienna-load conference`: audio conference bridge (MCU) load. N participants join conferences through
//! a pluggable join step ([`join`]: Vienna's admin API today, an SDP offer in and the answer out), each
//! sends real Opus (or G.711 PCMU, or G.722) with a tone of its own at 50 packets/s over plain RTP (or
//! SDES-keyed SRTP with `--srtp`) from its own UDP socket, and receives the mix the bridge sends it.
//!
//! The first `--talkers` participants of each conference talk (a tone at speech level with a short gap
//! every second, [`tone`]); the others are listeners whose tone stays under a bridge's voice threshold.
//! Every checked participant (every talker, and `--check-listeners` listeners per conference) decodes its
//! mix and reads it: each second, the tone of every other talker must be in it and, for a talker, its own
//! must not (an N-1 mix); and each time a talker's tone comes back after its gap, the time from the talker
//! capturing that sample to the packet carrying it arriving is one mouth-to-ear latency sample (it
//! includes the sender's 20 ms packetization, the network both ways, the bridge's jitter buffer, mixing
//! and encoding; the receiver plays on arrival, with no jitter buffer of its own). Every participant's
//! received stream is accounted for loss, duplicates, reordering and RFC 3550 jitter.
//!
//! Frames are encoded before the run (the signals repeat every second, so one second of frames per
//! distinct signal is looped), which keeps the load generator's CPU on the sockets and the checks. The run
//! is bounded by `--duration` and the drain time; participants leave at the end.

pub mod join;
pub mod sip_join;
pub mod tone;
pub mod worker;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use vienna_media::codec::{CodecKind, CodecSetting, frame_samples};
use vienna_media::sdp::SessionDescription;
use vienna_netio::{UdpOptions, bind_udp};
use vienna_srtp::{CryptoAttribute, KeyParam, MasterKey, Suite};

use crate::framework::procstat::self_cpu_secs;
use crate::framework::progress::{Progress, RateMeter, human_us};
use crate::framework::series::{self, Collector, LatencyReport, round3};
use crate::framework::{Common, Finished, OutputArgs, StepResult, plot};
use crate::sys;
use join::{AdminApi, JanusApi, Join, Joined};
use tone::Voice;
use worker::{CheckTotals, Counters, Member, MemberInfo, Outcome, Shared, TalkerInfo, phase};

/// Largest `--duration`.
pub const MAX_DURATION_SECS: u64 = 3600;
/// Most talkers per conference (distinct tones 400..3200 Hz, under G.711's 4 kHz).
pub const MAX_TALKERS: u64 = 8;

/// How participants join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JoinVia {
    /// Vienna's admin API: `POST /api/v1/mcu/conferences/{name}/participants` with the SDP offer.
    Admin,
    /// Janus AudioBridge's HTTP API (`--admin` is Janus's HTTP transport): plain-RTP participants.
    Janus,
    /// SIP through Vienna's conference focus: conferences created by the admin API, participants
    /// (users `user0..`, passwords `pw-user{i}`) INVITE the dial-in URI at `--sip` with Digest.
    Sip,
}

/// The codec participants send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    /// Opus (RFC 7587), 20 ms frames.
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.722 at 64 kbit/s (16 kHz audio).
    G722,
}

/// Arguments of `vienna-load conference`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConferenceArgs {
    /// The bridge's API, host:port (Vienna: `admin.listen`; Janus: its HTTP transport).
    #[arg(long, visible_alias = "target")]
    pub admin: String,
    /// Bearer token of the admin API (`admin.token`).
    #[arg(long)]
    pub token: Option<String>,
    /// How participants join.
    #[arg(long, value_enum, default_value_t = JoinVia::Admin)]
    pub join: JoinVia,
    /// With `--join sip`: Vienna's SIP UDP listener.
    #[arg(long, required_if_eq("join", "sip"))]
    pub sip: Option<String>,
    /// With `--join sip`: the SIP domain of the users and the dial-in URIs.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Conference name (with --conferences above 1: NAME-0, NAME-1, ...).
    #[arg(long, default_value = "vienna-load")]
    pub conference: String,
    /// Conferences; participants are dealt to them in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub conferences: u64,
    /// Participants in all.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub participants: u64,
    /// Talkers per conference, 0..=8 [default: 3, or fewer in small conferences]. A bridge mixes a few
    /// talkers at once (Vienna: `mcu.max_talkers`, 3): with more, who is heard when is the bridge's choice,
    /// and the checks report what each participant heard.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_TALKERS))]
    pub talkers: Option<u64>,
    /// Codec.
    #[arg(long, value_enum, default_value_t = Codec::Opus)]
    pub codec: Codec,
    /// SDES-keyed SRTP (RFC 4568, `RTP/SAVP`, AES_CM_128_HMAC_SHA1_80): each participant offers a key of
    /// its own and encrypts what it sends, and decrypts the mix with the key of the bridge's answer. Not
    /// with `--join janus` (AudioBridge's RTP participants are plain).
    #[arg(long)]
    pub srtp: bool,
    /// Opus bit rate, bits per second.
    #[arg(long, default_value_t = 32_000, value_parser = clap::value_parser!(u32).range(6_000..=510_000))]
    pub bitrate: u32,
    /// Seconds of sending, 1..=3600.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: u64,
    /// Seconds before the mix checks and the latency start (the bridge settles its jitter buffers and
    /// talkers).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup: u64,
    /// Milliseconds of silence in each talker's tone every second (the onset after it is timed).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(30..=200))]
    pub gap_ms: u32,
    /// Listeners per conference that decode and check their mix too (talkers always do).
    #[arg(long, default_value_t = 8)]
    pub check_listeners: u64,
    /// Milliseconds to go on receiving after the last send.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=30_000))]
    pub drain_ms: u64,
    /// Local address of the participants' sockets [default: 127.0.0.1].
    #[arg(long)]
    pub local_ip: Option<IpAddr>,
    /// Load threads [default: one per core, at most one per participant].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Outputs.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// The settings of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// The admin API.
    pub admin: String,
    /// Join step.
    pub join: &'static str,
    /// Conference names.
    pub conferences: Vec<String>,
    /// Participants.
    pub participants: u64,
    /// Talkers per conference.
    pub talkers: u64,
    /// `opus`, `PCMU` or `G722`.
    pub codec: &'static str,
    /// Opus bit rate.
    pub bitrate: Option<u32>,
    /// SRTP on every stream.
    pub srtp: bool,
    /// Packets per second per participant.
    pub packets_per_sec: u32,
    /// Seconds of sending.
    pub duration_secs: u64,
    /// Seconds before checks.
    pub warmup_secs: u64,
    /// Gap in each talker's tone, ms.
    pub gap_ms: u32,
    /// Checked listeners per conference.
    pub check_listeners: u64,
    /// Load threads.
    pub threads: usize,
}

/// Join and leave results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinReport {
    /// Joined.
    pub ok: u64,
    /// Failed, by reason.
    pub failed_by: std::collections::BTreeMap<String, u64>,
    /// Failed in all.
    pub failed: u64,
    /// Seconds joining took.
    pub secs: f64,
    /// Left at the end.
    pub left: u64,
    /// Leaves that failed.
    pub leave_failed: u64,
}

/// What was sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SentReport {
    /// RTP packets.
    pub packets: u64,
    /// Sent more than 5 ms after their time (the load generator fell behind).
    pub late: u64,
    /// Refused by the socket.
    pub errors: u64,
    /// Packets per second over the sending time.
    pub rate_pps: f64,
}

/// What came back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceivedReport {
    /// Distinct RTP packets of the mixes.
    pub packets: u64,
    /// Packets the bridge's sequence numbers say it sent (per participant: highest - first + 1).
    pub expected: u64,
    /// `expected - packets`.
    pub lost: u64,
    /// `lost / expected` in percent.
    pub loss_percent: f64,
    /// Extra copies.
    pub duplicates: u64,
    /// After a later packet.
    pub reordered: u64,
    /// RTCP packets.
    pub rtcp: u64,
    /// Datagrams not from the bridge, or not its RTP.
    pub foreign: u64,
    /// With `--srtp`: packets that failed authentication (or replayed), dropped.
    pub srtp_rejected: u64,
    /// Participants that received no mix at all.
    pub silent_participants: u64,
    /// Packets per second over the sending time (the last ones, sent after it, included).
    pub rate_pps: f64,
    /// Mix packets each participant received per second of the sending time, on average: 50 when the
    /// bridge keeps up (a bridge that falls behind sends fewer, without gaps in its sequence numbers).
    pub per_participant_pps: f64,
}

/// Jitter over the participants' received streams, microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JitterReport {
    /// Participants with two packets or more.
    pub participants: u64,
    /// Mean of their RFC 3550 jitter.
    pub mean: f64,
    /// Largest.
    pub max: f64,
}

/// The mix checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MixReport {
    /// Participants that decoded and checked their mix.
    pub checked: u64,
    /// Seconds checked, over all of them.
    pub seconds: u64,
    /// Seconds there were to check: checked participants x (duration - warm-up). Fewer checked means the
    /// mixes did not bring that much audio.
    pub seconds_expected: u64,
    /// Seconds with every other talker and (talkers) without its own tone.
    pub seconds_ok: u64,
    /// Seconds with another talker's tone missing.
    pub missing_tone: u64,
    /// Seconds where a talker heard itself.
    pub own_tone: u64,
    /// Tone onsets expected (one per other talker per checked second).
    pub onsets_expected: u64,
    /// Onsets found and timed.
    pub onsets_found: u64,
    /// Rises after a silence that was not a talker's gap (a dropout, a stall): not timed.
    pub onsets_rejected: u64,
    /// Frames concealed in the analysis (lost packets).
    pub concealed: u64,
    /// Packets too late for their place (played on arrival: skipped).
    pub late: u64,
    /// Packets that failed to decode.
    pub decode_errors: u64,
    /// The first failed second, if any.
    pub first_failure: Option<String>,
}

/// Everything a `conference` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `conference`.
    pub mode: &'static str,
    /// Settings.
    pub config: ConfigReport,
    /// Joins and leaves.
    pub join: JoinReport,
    /// Sent.
    pub sent: SentReport,
    /// Received.
    pub received: ReceivedReport,
    /// RFC 3550 jitter of the mixes.
    pub jitter_us: JitterReport,
    /// The checks of what the participants heard.
    pub mix: MixReport,
    /// Mouth-to-ear latency through the bridge, microseconds.
    pub latency_us: LatencyReport,
    /// Seconds of sending measured.
    pub duration_secs: f64,
    /// Ctrl-C.
    pub interrupted: bool,
    /// Timeline, server process, load generator CPU.
    #[serde(flatten)]
    pub common: Common,
}

/// Tells distinct signals apart (frequency, amplitude bits, gap) for encoding each once.
type VoiceKey = (u32, u64, Option<tone::Gap>);

/// One participant before it runs.
struct Planned {
    conference: usize,
    talker: Option<usize>,
    listener: usize,
    voice: Voice,
    socket: std::net::UdpSocket,
    joined: Option<Admitted>,
}

/// A participant the bridge took: the handle, the bridge's media address, the payload type, the SRTP
/// keys (ours, the bridge's).
type Admitted = (Joined, SocketAddr, u8, Option<SrtpKeys>);

/// SRTP keys: the one a participant sends with, the one the bridge sends with.
type SrtpKeys = (MasterKey, MasterKey);

/// Runs `vienna-load conference`.
pub fn run(args: ConferenceArgs) -> anyhow::Result<Finished> {
    let sampler = args.out.check()?;
    if args.warmup >= args.duration {
        bail!("--warmup must be shorter than --duration");
    }
    if args.srtp && args.join == JoinVia::Janus {
        bail!("--srtp: Janus AudioBridge's RTP participants are plain RTP (no SDES-SRTP)");
    }
    let admin = crate::sip::resolve(&args.admin).context("--admin")?;
    let joiner: Box<dyn Join> = match args.join {
        JoinVia::Admin => {
            Box::new(AdminApi { addr: admin, token: args.token.clone(), timeout: Duration::from_secs(10) })
        }
        JoinVia::Janus => Box::new(JanusApi::new(admin, Duration::from_secs(40))),
        JoinVia::Sip => {
            let sip = crate::sip::resolve(args.sip.as_deref().unwrap_or_default()).context("--sip")?;
            let api = AdminApi { addr: admin, token: args.token.clone(), timeout: Duration::from_secs(10) };
            Box::new(sip_join::SipFocus::new(api, sip, &args.domain)?)
        }
    };
    let n = args.participants as usize;
    let m = (args.conferences as usize).min(n);
    let per_conf = n.div_ceil(m);
    let k = args.talkers.unwrap_or(3).min(per_conf as u64) as usize;
    let names: Vec<String> = if m == 1 {
        vec![args.conference.clone()]
    } else {
        (0..m).map(|c| format!("{}-{c}", args.conference)).collect()
    };
    let (kind, enc_rate, decode_rate) = match args.codec {
        Codec::Opus => (CodecKind::Opus, 16_000, 16_000),
        Codec::Pcmu => (CodecKind::Pcmu, 8_000, 8_000),
        Codec::G722 => (CodecKind::G722, 16_000, 16_000),
    };
    let setting = CodecSetting::of(kind, args.bitrate);
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |c| c.get())).clamp(1, n);
    sys::catch_signals();
    let nofile = sys::raise_nofile_limit().context("reading RLIMIT_NOFILE")?;
    if n as u64 + 64 > nofile {
        bail!("--participants {n} needs more file descriptors than the open-file limit {nofile}");
    }
    let local = args.local_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let options = UdpOptions { reuse_port: false, recv_buffer: 1 << 20, send_buffer: 0 };

    // Participants: conference i % m, the first k of each conference talk.
    let mut planned = Vec::with_capacity(n);
    for i in 0..n {
        let conference = i % m;
        let position = i / m;
        let (talker, listener) = if position < k { (Some(position), 0) } else { (None, position - k) };
        let voice = match talker {
            Some(t) => Voice::talker(t, k, args.gap_ms),
            None => Voice::listener(listener),
        };
        let socket = bind_udp(SocketAddr::new(local, 0), options)
            .with_context(|| format!("binding the socket of participant {i} on {local}"))?;
        planned.push(Planned { conference, talker, listener, voice, socket, joined: None });
    }

    // Frames, encoded ahead once per distinct signal.
    let mut encoded: HashMap<VoiceKey, Arc<Vec<Vec<u8>>>> = HashMap::new();
    for p in &planned {
        let key = (p.voice.hz, p.voice.amplitude.to_bits(), p.voice.gap);
        if encoded.contains_key(&key) {
            continue;
        }
        let mut enc =
            vienna_media::codec::encoder(setting, enc_rate, 5).map_err(|e| anyhow::anyhow!("encoder: {e}"))?;
        let mut pcm = vec![0i16; frame_samples(enc_rate)];
        let mut frames = Vec::with_capacity(worker::ENCODED_FRAMES);
        for f in 0..worker::ENCODED_FRAMES as u64 {
            p.voice.frame(f, enc_rate, &mut pcm);
            let mut out = vec![0u8; vienna_media::codec::MAX_PAYLOAD];
            let len = enc.encode(&pcm, &mut out).map_err(|e| anyhow::anyhow!("encoding: {e}"))?;
            out.truncate(len);
            frames.push(out);
        }
        encoded.insert(key, Arc::new(frames));
    }

    // Join.
    let mut joins = JoinReport::default();
    let mut progress = Progress::new();
    let t_join = Instant::now();
    for (i, p) in planned.iter_mut().enumerate() {
        if sys::stop_requested() {
            break;
        }
        let port = p.socket.local_addr()?.port();
        let ssrc = ssrc_of(i);
        let key = if args.srtp {
            Some(MasterKey::random(SRTP_SUITE).map_err(|e| anyhow::anyhow!("an SRTP key: {e}"))?)
        } else {
            None
        };
        let offer = offer(local, port, kind, ssrc, i, key.as_ref());
        let label = format!("vl{i}");
        match joiner.join(&names[p.conference], &label, &offer).and_then(|j| {
            let (addr, pt, theirs) = answer_target(&j.answer, kind)?;
            let srtp = match (key, theirs) {
                (Some(ours), Some(theirs)) => Some((ours, theirs)),
                (None, None) => None,
                (Some(_), None) => anyhow::bail!("the answer has no SRTP key"),
                (None, Some(_)) => anyhow::bail!("the answer has an SRTP key for a plain offer"),
            };
            Ok((j, addr, pt, srtp))
        }) {
            Ok(j) => {
                joins.ok += 1;
                p.joined = Some(j);
            }
            Err(e) => {
                joins.failed += 1;
                let reason = format!("{e:#}");
                let reason = reason.split(": ").last().unwrap_or(&reason).chars().take(80).collect::<String>();
                *joins.failed_by.entry(reason).or_insert(0) += 1;
            }
        }
        progress.show(format!("conference join: {} ok, {} failed of {n}", joins.ok, joins.failed));
    }
    joins.secs = round3(t_join.elapsed().as_secs_f64());

    // Schedule: frame 0 of participant i is due at start + i * 20 ms / n (sends spread over a frame).
    let base = Instant::now();
    let start = base + Duration::from_millis(200);
    let start_ns = (start - base).as_nanos() as u64;
    let t0 = |i: usize| start + Duration::from_nanos(20_000_000 * i as u64 / n as u64);
    let mut talkers: Vec<Vec<TalkerInfo>> = vec![Vec::new(); m];
    for (i, p) in planned.iter().enumerate() {
        if let Some(t) = p.talker {
            let list = &mut talkers[p.conference];
            if list.len() <= t {
                list.resize(
                    t + 1,
                    TalkerInfo {
                        hz: 0,
                        amplitude: 0.0,
                        gap_end_ms: 0,
                        gap_ms: 0,
                        t0_ns: 0,
                        participant: 0,
                        joined: false,
                    },
                );
            }
            list[t] = TalkerInfo {
                hz: p.voice.hz,
                amplitude: p.voice.amplitude,
                gap_end_ms: p.voice.gap.map_or(0, |g| g.end_ms()),
                gap_ms: p.voice.gap.map_or(0, |g| g.len_ms),
                t0_ns: (t0(i) - base).as_nanos() as u64,
                participant: i,
                joined: p.joined.is_some(),
            };
        }
    }
    let frames = args.duration * 50;
    let cfg = Arc::new(worker::Config {
        codec: kind,
        decode_rate,
        frames,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        drain: Duration::from_millis(args.drain_ms),
        talkers,
    });
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(phase::RUN),
        cut: AtomicBool::new(false),
        base,
        start_ns,
        counters: (0..threads).map(|_| Counters::default()).collect(),
        collector: Collector::default(),
    });
    let mut per_thread: Vec<Vec<Member>> = (0..threads).map(|_| Vec::new()).collect();
    let mut handles_to_leave = Vec::new();
    for (i, p) in planned.into_iter().enumerate() {
        let Some((joined, bridge, pt, srtp)) = p.joined else { continue };
        let key = (p.voice.hz, p.voice.amplitude.to_bits(), p.voice.gap);
        let check = p.talker.is_some() || (p.listener as u64) < args.check_listeners;
        per_thread[i % threads].push(Member {
            socket: p.socket,
            info: MemberInfo {
                index: i,
                conference: p.conference,
                talker: p.talker,
                own: (p.voice.hz, p.voice.amplitude),
                bridge,
                payload_type: pt,
                ssrc: ssrc_of(i),
                frames: encoded[&key].clone(),
                t0: t0(i),
                check,
                srtp,
            },
        });
        handles_to_leave.push(joined);
    }
    let mut handles = Vec::new();
    for (t, members) in per_thread.into_iter().enumerate() {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("conf-{t}"))
                .spawn(move || worker::run(t, members, cfg, shared))?,
        );
    }

    // Run.
    let mut sampler = sampler;
    let origin = start;
    sampler.start(origin);
    let duration = Duration::from_secs(args.duration);
    let hard_deadline = start + duration + cfg.drain + Duration::from_secs(30);
    let mut interrupted = false;
    let (mut sent_rate, mut recv_rate) = (RateMeter::default(), RateMeter::default());
    let mut sampled_end = false;
    let sum = |f: &dyn Fn(&Counters) -> u64| shared.counters.iter().map(f).sum::<u64>();
    let mut keepalive_at = Instant::now() + Duration::from_secs(10);
    let run_result: anyhow::Result<()> = loop {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() >= keepalive_at {
            keepalive_at = Instant::now() + Duration::from_secs(10);
            let _ = joiner.keepalive();
        }
        if sys::stop_requested() && !interrupted {
            interrupted = true;
            shared.cut.store(true, Relaxed);
        }
        let now = Instant::now();
        sampler.poll(now);
        let secs = now.saturating_duration_since(origin).as_secs_f64();
        if secs >= duration.as_secs_f64() && !sampled_end {
            sampled_end = true;
            sampler.finish(now);
        }
        if shared.counters.iter().all(|c| c.done.load(Relaxed)) {
            break Ok(());
        }
        if now > hard_deadline {
            break Err(anyhow::anyhow!("hard time limit reached; the run did not end by itself"));
        }
        if let Some(i) = handles.iter().position(|h: &std::thread::JoinHandle<_>| h.is_finished()) {
            break Err(anyhow::anyhow!("load thread {i} stopped early"));
        }
        shared.collector.close_before(secs as usize);
        let last = shared
            .collector
            .last_closed()
            .map_or_else(|| "-".to_owned(), |(_, l)| format!("p50 {} p99 {}", human_us(l.p50), human_us(l.p99)));
        let (sent, recv) = (sum(&|c| c.sent.load(Relaxed)), sum(&|c| c.received.load(Relaxed)));
        progress.show(format!(
            "conference: {:.0}/{} s, {} participants, {:.0} pps sent, {:.0} pps mixed back, {} onsets, {} failed checks, \
             mouth-to-ear {last}",
            secs.clamp(0.0, duration.as_secs_f64()),
            args.duration,
            joins.ok,
            sent_rate.update(sent, now),
            recv_rate.update(recv, now),
            sum(&|c| c.onsets.load(Relaxed)),
            sum(&|c| c.check_failures.load(Relaxed)),
        ));
    };
    if !sampled_end {
        sampler.finish(Instant::now());
    }
    shared.phase.store(phase::EXIT, Relaxed);
    progress.finish();
    let mut outcomes = Vec::new();
    let mut thread_error = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => thread_error = Some(anyhow::Error::from(e).context(format!("load thread {i}"))),
            Err(_) => thread_error = Some(anyhow::anyhow!("load thread {i} panicked")),
        }
    }
    // Leave, whatever happened.
    for j in &handles_to_leave {
        match joiner.leave(j) {
            Ok(()) => joins.left += 1,
            Err(_) => joins.leave_failed += 1,
        }
    }
    run_result?;
    if let Some(e) = thread_error {
        return Err(e);
    }

    let config = ConfigReport {
        admin: admin.to_string(),
        join: joiner.name(),
        conferences: names,
        participants: args.participants,
        talkers: k as u64,
        codec: kind.name(),
        bitrate: (kind == CodecKind::Opus).then_some(args.bitrate),
        srtp: args.srtp,
        packets_per_sec: 50,
        duration_secs: args.duration,
        warmup_secs: args.warmup,
        gap_ms: args.gap_ms,
        check_listeners: args.check_listeners,
        threads,
    };
    let report = build_report(config, joins, &outcomes, &shared, &sampler, interrupted, duration);
    let summary = report.summary();
    print!("{summary}");
    let _ = std::io::stdout().flush();
    let figure = || {
        let c = &report.config;
        let title = format!(
            "vienna-load conference: {} participants, {} talkers per conference, {} -> {}",
            c.participants, c.talkers, c.codec, c.admin
        );
        let mut f = plot::timeline_figure(
            title,
            summary.lines().skip(1).map(str::to_owned).collect(),
            &report.common.timeline,
            "mixed back",
        );
        if let Some(p) = f.panels.get_mut(1) {
            p.title = "mouth-to-ear latency".to_owned();
        }
        f
    };
    args.out.write(&report, figure, &report.common.timeline)?;
    let failed = report.join.failed > 0
        || report.mix.missing_tone > 0
        || report.mix.own_tone > 0
        || report.mix.seconds < report.mix.seconds_expected
        || report.received.silent_participants > 0
        || report.mix.checked == 0 && k > 0;
    let exit = if report.interrupted {
        ExitCode::from(130)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    let step = StepResult {
        offered_rate: report.sent.rate_pps,
        achieved_rate: report.received.rate_pps,
        loss_percent: report.received.loss_percent,
        failure_percent: if args.participants > 0 {
            round3(report.join.failed as f64 * 100.0 / args.participants as f64)
        } else {
            0.0
        },
        latency_us: report.latency_us.clone(),
        server_cpu_secs: report.common.server_process.as_ref().map(|p| p.cpu_secs),
        interrupted: report.interrupted,
    };
    Ok(Finished { exit, step, json: serde_json::to_value(&report)? })
}

fn ssrc_of(i: usize) -> u32 {
    0x564c_0000 ^ (i as u32).wrapping_mul(0x9E37_79B9)
}

/// The SRTP suite participants offer with `--srtp`.
const SRTP_SUITE: Suite = Suite::AesCm128HmacSha1_80;

/// The SDP offer of participant `i`: one audio stream, one codec, rtcp-mux, its SSRC; SRTP with `key`.
fn offer(ip: IpAddr, port: u16, kind: CodecKind, ssrc: u32, i: usize, key: Option<&MasterKey>) -> String {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let (pt, map) = match kind {
        CodecKind::Opus => (111, "opus/48000/2"),
        CodecKind::Pcmu => (0, "PCMU/8000"),
        CodecKind::Pcma => (8, "PCMA/8000"),
        CodecKind::G722 => (9, "G722/8000"),
    };
    let (proto, crypto) = match key {
        Some(k) => (
            "RTP/SAVP",
            format!("a=crypto:{}\r\n", CryptoAttribute::new(1, k.suite(), KeyParam::new(k, None, None)).value()),
        ),
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=vienna-load {i} 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} {proto} {pt}\r\n\
         a=rtpmap:{pt} {map}\r\na=ptime:20\r\na=rtcp-mux\r\na=sendrecv\r\na=ssrc:{ssrc} cname:vienna-load\r\n{crypto}"
    )
}

/// Where the answer says to send media, its payload type for `kind`, and the key it sends with (its
/// `a=crypto` line, if any).
fn answer_target(answer: &str, kind: CodecKind) -> anyhow::Result<(SocketAddr, u8, Option<MasterKey>)> {
    let sdp = SessionDescription::parse(answer).map_err(|e| anyhow::anyhow!("the SDP answer: {e}"))?;
    let media = sdp.media.iter().find(|m| m.media == "audio" && m.port != 0).context("the answer refused the audio")?;
    let ip = media.connection.or(sdp.connection).context("the answer has no c= address")?;
    let pt = media
        .formats
        .iter()
        .copied()
        .find(|pt| match media.rtpmaps.iter().find(|r| r.payload_type == *pt) {
            Some(r) => r.name.eq_ignore_ascii_case(kind.name()),
            None => kind.static_payload_type() == Some(*pt),
        })
        .with_context(|| format!("the answer has no {}", kind.name()))?;
    let key = match media.crypto.iter().find(|(name, _)| name == "crypto") {
        Some((name, value)) => {
            let a = CryptoAttribute::parse(name, value).map_err(|e| anyhow::anyhow!("the answer's a=crypto: {e}"))?;
            let suite = a.known_suite().with_context(|| format!("the answer's SRTP suite {}", a.suite))?;
            let k = a.keys.first().context("the answer's a=crypto has no key")?;
            Some(k.master_key(suite).map_err(|e| anyhow::anyhow!("the answer's SRTP key: {e}"))?)
        }
        None => None,
    };
    Ok((SocketAddr::new(ip, media.port), pt, key))
}

fn build_report(
    config: ConfigReport,
    join: JoinReport,
    outcomes: &[Outcome],
    shared: &Shared,
    sampler: &crate::framework::procstat::ProcSampler,
    interrupted: bool,
    duration: Duration,
) -> Report {
    let mut sent = SentReport::default();
    let mut recv = ReceivedReport::default();
    let mut checks = CheckTotals::default();
    let mut hist = series::histogram();
    let mut jitters = Vec::new();
    for o in outcomes {
        sent.packets += o.sent;
        sent.late += o.send_late;
        sent.errors += o.send_errors;
        recv.packets += o.received;
        recv.expected += o.expected;
        recv.duplicates += o.duplicates;
        recv.reordered += o.reordered;
        recv.rtcp += o.rtcp;
        recv.foreign += o.foreign;
        recv.srtp_rejected += o.srtp_rejected;
        recv.silent_participants += o.silent;
        jitters.extend(o.jitter_ns.iter().copied());
        let _ = hist.add(&o.latency);
        let c = &o.checks;
        checks.participants += c.participants;
        checks.seconds += c.seconds;
        checks.seconds_ok += c.seconds_ok;
        checks.missing_tone += c.missing_tone;
        checks.own_tone += c.own_tone;
        checks.onsets_expected += c.onsets_expected;
        checks.onsets_found += c.onsets_found;
        checks.onsets_rejected += c.onsets_rejected;
        checks.concealed += c.concealed;
        checks.late += c.late;
        checks.decode_errors += c.decode_errors;
        if checks.first_failure.is_none() {
            checks.first_failure.clone_from(&c.first_failure);
        }
    }
    recv.lost = recv.expected.saturating_sub(recv.packets);
    recv.loss_percent = if recv.expected > 0 { round3(recv.lost as f64 * 100.0 / recv.expected as f64) } else { 0.0 };
    let secs = duration.as_secs_f64();
    sent.rate_pps = round3(sent.packets as f64 / secs);
    recv.rate_pps = round3(recv.packets as f64 / secs);
    let jitter = JitterReport {
        participants: jitters.len() as u64,
        mean: round3(if jitters.is_empty() {
            0.0
        } else {
            jitters.iter().sum::<f64>() / jitters.len() as f64 / 1000.0
        }),
        max: round3(jitters.iter().copied().fold(0.0, f64::max) / 1000.0),
    };
    let bins: Vec<_> = outcomes.iter().map(|o| o.bins.clone()).collect();
    let timeline = series::timeline(&bins, &shared.collector.finish(), &sampler.samples, false, duration);
    let in_time: u64 = timeline.rows.iter().filter(|r| r.t < duration.as_secs()).map(|r| r.ok).sum();
    let joined = join.ok.max(1);
    recv.per_participant_pps = round3(in_time as f64 / secs / joined as f64);
    let seconds_expected = checks.participants * duration.as_secs().saturating_sub(config.warmup_secs);
    if checks.seconds < seconds_expected && checks.first_failure.is_none() {
        checks.first_failure = Some(format!(
            "{} of {seconds_expected} seconds of mix audio came: {} mix packets/s per participant, not 50",
            checks.seconds, recv.per_participant_pps
        ));
    }
    Report {
        mode: "conference",
        config,
        join,
        sent,
        received: recv,
        jitter_us: jitter,
        mix: MixReport {
            checked: checks.participants,
            seconds: checks.seconds,
            seconds_expected,
            seconds_ok: checks.seconds_ok,
            missing_tone: checks.missing_tone,
            own_tone: checks.own_tone,
            onsets_expected: checks.onsets_expected,
            onsets_found: checks.onsets_found,
            onsets_rejected: checks.onsets_rejected,
            concealed: checks.concealed,
            late: checks.late,
            decode_errors: checks.decode_errors,
            first_failure: checks.first_failure,
        },
        latency_us: LatencyReport::of(&hist),
        duration_secs: round3(secs),
        interrupted,
        common: Common { timeline, server_process: sampler.report(), loader_cpu_secs: round3(self_cpu_secs()) },
    }
}

impl Report {
    /// The human summary: one `topic key=value ...` line per topic, the same numbers as the JSON.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let codec = match c.bitrate {
            Some(b) => format!("{} {b} b/s", c.codec),
            None => c.codec.to_owned(),
        };
        let _ = writeln!(
            s,
            "vienna-load conference: {} participants in {} conference(s), {} talkers each, {codec}, 50 pps x {} s -> {} \
             (join {}), {} threads",
            c.participants,
            c.conferences.len(),
            c.talkers,
            c.duration_secs,
            c.admin,
            c.join,
            c.threads
        );
        let j = &self.join;
        let _ = writeln!(
            s,
            "join         ok={} failed={} secs={} left={} leave_failed={}",
            j.ok, j.failed, j.secs, j.left, j.leave_failed
        );
        if !j.failed_by.is_empty() {
            let _ = writeln!(s, "join_failed  {}", crate::sip::pairs(&j.failed_by));
        }
        let t = &self.sent;
        let _ = writeln!(
            s,
            "sent         packets={} late={} errors={} rate_pps={}",
            t.packets, t.late, t.errors, t.rate_pps
        );
        let r = &self.received;
        let _ = writeln!(
            s,
            "received     packets={} expected={} lost={} loss_percent={} duplicates={} reordered={} rtcp={} foreign={} \
             srtp_rejected={} silent_participants={} rate_pps={} per_participant_pps={}",
            r.packets,
            r.expected,
            r.lost,
            r.loss_percent,
            r.duplicates,
            r.reordered,
            r.rtcp,
            r.foreign,
            r.srtp_rejected,
            r.silent_participants,
            r.rate_pps,
            r.per_participant_pps
        );
        let ji = &self.jitter_us;
        let _ = writeln!(s, "jitter_us    mean={} max={} participants={}", ji.mean, ji.max, ji.participants);
        let x = &self.mix;
        let _ = writeln!(
            s,
            "mix          checked={} seconds={} seconds_expected={} seconds_ok={} missing_tone={} own_tone={} \
             onsets_found={} onsets_expected={} onsets_rejected={} concealed={} late={} decode_errors={}",
            x.checked,
            x.seconds,
            x.seconds_expected,
            x.seconds_ok,
            x.missing_tone,
            x.own_tone,
            x.onsets_found,
            x.onsets_expected,
            x.onsets_rejected,
            x.concealed,
            x.late,
            x.decode_errors
        );
        if let Some(f) = &x.first_failure {
            let _ = writeln!(s, "mix_failure  {f}");
        }
        let _ = writeln!(s, "latency_us   {}", self.latency_us.line());
        for line in self.common.lines(self.received.packets + self.sent.packets, "packet") {
            let _ = writeln!(s, "{line}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_and_answer() {
        let o = offer("127.0.0.1".parse().unwrap(), 40_000, CodecKind::Opus, 7, 3, None);
        let sdp = SessionDescription::parse(&o).unwrap();
        let m = &sdp.media[0];
        assert_eq!((m.port, m.formats.as_slice(), m.rtcp_mux, m.ssrc), (40_000, &[111u8][..], true, Some(7)));
        assert_eq!(m.proto, "RTP/AVP");
        let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 50000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n";
        assert_eq!(answer_target(answer, CodecKind::Opus).unwrap(), ("127.0.0.1:50000".parse().unwrap(), 111, None));
        assert!(answer_target(answer, CodecKind::Pcmu).is_err());
        let pcmu = answer.replace("111\r\na=rtpmap:111 opus/48000/2", "0");
        assert_eq!(answer_target(&pcmu, CodecKind::Pcmu).unwrap().1, 0);
        assert!(answer_target(&answer.replace("m=audio 50000", "m=audio 0"), CodecKind::Opus).is_err());
    }

    #[test]
    fn srtp_offer_carries_our_key_and_the_answer_gives_the_bridges() {
        let ours = MasterKey::random(SRTP_SUITE).unwrap();
        let o = offer("127.0.0.1".parse().unwrap(), 40_000, CodecKind::G722, 7, 3, Some(&ours));
        let sdp = SessionDescription::parse(&o).unwrap();
        let m = &sdp.media[0];
        assert_eq!((m.proto.as_str(), m.formats.as_slice()), ("RTP/SAVP", &[9u8][..]));
        let (name, value) = &m.crypto[0];
        let offered = CryptoAttribute::parse(name, value).unwrap();
        assert_eq!(offered.keys[0].master_key(SRTP_SUITE).unwrap(), ours);
        let theirs = MasterKey::random(SRTP_SUITE).unwrap();
        let line = CryptoAttribute::new(1, SRTP_SUITE, KeyParam::new(&theirs, None, None)).value();
        let answer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 50000 RTP/SAVP 9\r\na=rtpmap:9 G722/8000\r\na=crypto:{line}\r\n"
        );
        let (_, pt, key) = answer_target(&answer, CodecKind::G722).unwrap();
        assert_eq!((pt, key), (9, Some(theirs)));
        let bad = answer.replace("AES_CM_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80");
        assert!(answer_target(&bad, CodecKind::G722).is_err(), "a suite we did not offer");
    }
}
