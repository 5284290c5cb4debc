//! `vienna-load presence`: loads any SIMPLE presence server (Vienna, Kamailio, ...) over UDP without
//! authentication. P publishers each have W watchers: the watchers SUBSCRIBE (paced), answer every NOTIFY
//! 200; then every round each publisher PUBLISHes a new note (`rN`, kept in the tuple so servers that
//! aggregate by copying tuples pass it on) and the tool measures, per watcher, the time from the PUBLISH
//! to the NOTIFY that carries it: NOTIFY rate and latency percentiles. With `--pid`, the server's
//! memory (the PSS of the process and its children) is read before and after subscribing, for the
//! memory per subscription. Bounded by `--rounds` and `--round-timeout`; loopback by default.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use vienna_sip::{HeaderName, Message};

/// Arguments of `vienna-load presence`.
#[derive(Debug, Args)]
pub struct PresenceArgs {
    /// The server's UDP address.
    #[arg(long, default_value = "127.0.0.1:5060")]
    server: SocketAddr,
    /// SIP domain of the users.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Publishers (users `pub0`, `pub1`, ...).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Watchers per publisher (users `w0`, `w1`, ...).
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Rounds of one PUBLISH per publisher.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Pause between rounds, milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Longest wait for a round's NOTIFYs, seconds.
    #[arg(long, default_value_t = 20)]
    round_timeout: u64,
    /// SUBSCRIBEs per second while subscribing.
    #[arg(long, default_value_t = 4000)]
    subscribe_rate: u64,
    /// Receiving sockets (threads) for the watchers.
    #[arg(long, default_value_t = 2)]
    sockets: usize,
    /// Server process id, for its memory per subscription.
    #[arg(long)]
    pid: Option<u32>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// What every receiving thread shares with the driver.
struct Shared {
    start: Instant,
    round: AtomicU32,
    /// Nanoseconds since `start` at which each publisher's PUBLISH of the current round left.
    published_at: Vec<AtomicU64>,
    subscribed: AtomicU64,
    subscribe_failures: AtomicU64,
    initial_notifies: AtomicU64,
    round_notifies: AtomicU64,
    notifies: AtomicU64,
    stop: AtomicBool,
    latencies: Mutex<Histogram<u64>>,
    /// Nanoseconds since `start` of the last NOTIFY of the current round.
    last_arrival: AtomicU64,
}

fn now_ns(shared: &Shared) -> u64 {
    shared.start.elapsed().as_nanos() as u64
}

/// The publisher index in a `pubN` user part of a From header.
fn publisher_of(from: &str) -> Option<usize> {
    let i = from.find("sip:pub")? + 7;
    let digits: String = from[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The round of an `>rN<` note marker in a body.
fn round_of(body: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(body).ok()?;
    let mut rest = text;
    while let Some(i) = rest.find(">r") {
        let after = &rest[i + 2..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && after[digits.len()..].starts_with('<') {
            return digits.parse().ok();
        }
        rest = after;
    }
    None
}

fn subscribe_text(args: &PresenceArgs, me: SocketAddr, watcher: usize, publisher: usize) -> String {
    let d = &args.domain;
    format!(
        "SUBSCRIBE sip:pub{publisher}@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-s{watcher};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:w{watcher}@{d}>;tag=w{watcher}\r\nTo: <sip:pub{publisher}@{d}>\r\n\
         Call-ID: load-sub-{watcher}@{me}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w{watcher}@{me}>\r\nEvent: presence\r\n\
         Accept: application/pidf+xml\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
}

fn publish_text(args: &PresenceArgs, me: SocketAddr, publisher: usize, round: u32, etag: Option<&str>) -> String {
    let d = &args.domain;
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         entity=\"sip:pub{publisher}@{d}\">\r\n<tuple id=\"t{publisher}\"><status><basic>open</basic></status>\
         <note>r{round}</note></tuple>\r\n</presence>\r\n"
    );
    let if_match = etag.map(|e| format!("SIP-If-Match: {e}\r\n")).unwrap_or_default();
    format!(
        "PUBLISH sip:pub{publisher}@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-p{publisher}-{round};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:pub{publisher}@{d}>;tag=p{publisher}\r\nTo: <sip:pub{publisher}@{d}>\r\n\
         Call-ID: load-pub-{publisher}@{me}\r\nCSeq: {} PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\n{if_match}\
         Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
        round + 1,
        body.len()
    )
}

/// One watcher socket: sends its SUBSCRIBEs (paced), then answers NOTIFYs and records latencies.
fn watcher_thread(args: Arc<PresenceArgs>, shared: Arc<Shared>, socket: UdpSocket, watchers: Vec<(usize, usize)>) {
    let me = socket.local_addr().expect("bound");
    let per_socket_rate = (args.subscribe_rate / args.sockets.max(1) as u64).max(1);
    let gap = Duration::from_nanos(1_000_000_000 / per_socket_rate);
    let mut buf = vec![0u8; 65_536];
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut next_send = Instant::now();
    let mut pending = watchers.into_iter();
    let mut sending = true;
    socket.set_read_timeout(Some(Duration::from_millis(2))).ok();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        while sending && Instant::now() >= next_send {
            match pending.next() {
                Some((w, p)) => {
                    let _ = socket.send_to(subscribe_text(&args, me, w, p).as_bytes(), args.server);
                    next_send += gap;
                }
                None => sending = false,
            }
        }
        let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
        let Ok(message) = Message::parse(&buf[..n]) else { continue };
        match message {
            Message::Response(r) => {
                if r.headers.cseq().is_ok_and(|c| c.method.as_str() == "SUBSCRIBE") {
                    if (200..300).contains(&r.status) {
                        shared.subscribed.fetch_add(1, Ordering::Relaxed);
                    } else if r.status >= 300 {
                        shared.subscribe_failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Message::Request(req) => {
                let ok = req.make_response(200, None);
                let _ = socket.send_to(&ok.to_bytes(), from);
                if req.method.as_str() != "NOTIFY" {
                    continue;
                }
                let arrival = now_ns(&shared);
                shared.notifies.fetch_add(1, Ordering::Relaxed);
                let call_id = req.headers.call_id().unwrap_or_default().to_owned();
                let round = round_of(&req.body).unwrap_or(0);
                let previous = seen.insert(call_id, round);
                if previous.is_none() {
                    shared.initial_notifies.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let current = shared.round.load(Ordering::Acquire);
                if round == current && current > 0 && previous != Some(round) {
                    let publisher = req.headers.get(&HeaderName::From).and_then(publisher_of);
                    if let Some(sent) = publisher.and_then(|p| shared.published_at.get(p)) {
                        let sent = sent.load(Ordering::Acquire);
                        if sent > 0 && arrival >= sent {
                            let _ = hist.record((arrival - sent).max(1));
                        }
                    }
                    shared.round_notifies.fetch_add(1, Ordering::Relaxed);
                    shared.last_arrival.fetch_max(arrival, Ordering::Relaxed);
                }
            }
        }
    }
    if let Ok(mut all) = shared.latencies.lock() {
        let _ = all.add(&hist);
    }
}

/// Proportional set size of `pid` and its descendants, bytes (shared memory counted once).
fn pss_tree(pid: u32) -> u64 {
    let mut total = 0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            total += text
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024;
        }
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            stack.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    total
}

/// Runs the presence load; prints a report and writes it as JSON when asked.
pub fn run(args: PresenceArgs) -> Result<ExitCode> {
    if args.publishers == 0 || args.watchers == 0 || args.sockets == 0 {
        bail!("--publishers, --watchers and --sockets must be positive");
    }
    let args = Arc::new(args);
    let total = args.publishers * args.watchers;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        round: AtomicU32::new(0),
        published_at: (0..args.publishers).map(|_| AtomicU64::new(0)).collect(),
        subscribed: AtomicU64::new(0),
        subscribe_failures: AtomicU64::new(0),
        initial_notifies: AtomicU64::new(0),
        round_notifies: AtomicU64::new(0),
        notifies: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        latencies: Mutex::new(Histogram::new_with_bounds(1, 60_000_000_000, 3)?),
        last_arrival: AtomicU64::new(0),
    });

    // Publishers first publish round 0, so every first NOTIFY has a state.
    let publisher = UdpSocket::bind("127.0.0.1:0").context("bind the publisher socket")?;
    publisher.set_read_timeout(Some(Duration::from_secs(5)))?;
    let me = publisher.local_addr()?;
    let mut etags: Vec<Option<String>> = vec![None; args.publishers];
    let mut publish_failures = 0u64;
    let mut buf = vec![0u8; 65_536];
    let mut publish = |p: usize, round: u32, etags: &mut Vec<Option<String>>| -> bool {
        let text = publish_text(&args, me, p, round, etags[p].as_deref());
        shared.published_at[p].store(now_ns(&shared), Ordering::Release);
        if publisher.send_to(text.as_bytes(), args.server).is_err() {
            return false;
        }
        loop {
            let Ok((n, _)) = publisher.recv_from(&mut buf) else { return false };
            if let Ok(Message::Response(r)) = Message::parse(&buf[..n]) {
                if r.headers.cseq().map(|c| c.seq) != Ok(round + 1) {
                    continue;
                }
                etags[p] = r.headers.get(&HeaderName::Other("SIP-ETag".into())).map(str::to_owned);
                return (200..300).contains(&r.status);
            }
        }
    };
    for p in 0..args.publishers {
        if !publish(p, 0, &mut etags) {
            publish_failures += 1;
        }
    }

    let pss_before = args.pid.map(pss_tree);
    let mut threads = Vec::new();
    let mut assignments: Vec<Vec<(usize, usize)>> = vec![Vec::new(); args.sockets];
    for w in 0..total {
        assignments[w % args.sockets].push((w, w / args.watchers));
    }
    for list in assignments {
        let socket = vienna_netio_socket()?;
        let (a, s) = (args.clone(), shared.clone());
        threads.push(std::thread::spawn(move || watcher_thread(a, s, socket, list)));
    }
    let subscribe_started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(args.round_timeout + total as u64 / args.subscribe_rate.max(1));
    while (shared.initial_notifies.load(Ordering::Relaxed) as usize) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let subscribe_secs = subscribe_started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let pss_after = args.pid.map(pss_tree);

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        std::thread::sleep(Duration::from_millis(args.interval_ms));
        shared.round_notifies.store(0, Ordering::Relaxed);
        shared.last_arrival.store(0, Ordering::Relaxed);
        shared.round.store(round, Ordering::Release);
        let first = now_ns(&shared);
        for p in 0..args.publishers {
            if !publish(p, round, &mut etags) {
                publish_failures += 1;
            }
        }
        let publish_secs = (now_ns(&shared) - first) as f64 / 1e9;
        let deadline = Instant::now() + Duration::from_secs(args.round_timeout);
        while (shared.round_notifies.load(Ordering::Relaxed) as usize) < total && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let got = shared.round_notifies.load(Ordering::Relaxed);
        let last = shared.last_arrival.load(Ordering::Relaxed);
        let secs = (last.saturating_sub(first)) as f64 / 1e9;
        let rate = if secs > 0.0 { got as f64 / secs } else { 0.0 };
        println!(
            "round {round}: {got}/{total} NOTIFYs in {secs:.3} s ({rate:.0}/s), PUBLISHes took {publish_secs:.3} s"
        );
        rounds.push(serde_json::json!({
            "round": round, "notifies": got, "expected": total, "seconds": secs, "notify_rate": rate,
            "publish_seconds": publish_secs,
        }));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let hist = shared.latencies.lock().map_err(|_| anyhow::anyhow!("latency histogram poisoned"))?.clone();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e6;
    let rates: Vec<f64> = rounds.iter().filter_map(|r| r["notify_rate"].as_f64()).collect();
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median_rate = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let delivered: u64 = rounds.iter().filter_map(|r| r["notifies"].as_u64()).sum();
    let per_sub = match (pss_before, pss_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / total as f64),
        _ => None,
    };
    let report = serde_json::json!({
        "publishers": args.publishers,
        "watchers_per_publisher": args.watchers,
        "subscriptions": total,
        "subscribed": shared.subscribed.load(Ordering::Relaxed),
        "subscribe_failures": shared.subscribe_failures.load(Ordering::Relaxed),
        "subscribe_seconds": subscribe_secs,
        "publish_failures": publish_failures,
        "rounds": rounds,
        "notifies_expected": total as u64 * u64::from(args.rounds),
        "notifies_delivered": delivered,
        "median_notify_rate": median_rate,
        "latency_ms": { "p50": ms(0.50), "p99": ms(0.99), "max": hist.max() as f64 / 1e6, "samples": hist.len() },
        "server_pss_bytes": { "before": pss_before, "after": pss_after },
        "bytes_per_subscription": per_sub,
    });
    println!(
        "{} subscriptions ({} subscribed, {} failed) in {subscribe_secs:.2} s; NOTIFY rate median {median_rate:.0}/s; \
         latency p50 {:.2} ms p99 {:.2} ms; {}",
        total,
        shared.subscribed.load(Ordering::Relaxed),
        shared.subscribe_failures.load(Ordering::Relaxed),
        ms(0.5),
        ms(0.99),
        per_sub
            .map_or_else(|| "no --pid: memory not measured".to_owned(), |b| format!("{b:.0} bytes per subscription"))
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    let complete = delivered == total as u64 * u64::from(args.rounds);
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A loopback UDP socket with large buffers (a fan-out of 10,000 NOTIFYs arrives at once).
fn vienna_netio_socket() -> Result<UdpSocket> {
    let options = vienna_netio::UdpOptions { reuse_port: false, recv_buffer: 8 << 20, send_buffer: 4 << 20 };
    let socket = vienna_netio::bind_udp("127.0.0.1:0".parse()?, options).context("bind a watcher socket")?;
    socket.set_nonblocking(false)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(publisher_of("<sip:pub12@localhost>;tag=x"), Some(12));
        assert_eq!(round_of(b"<note>r7</note>"), Some(7));
        assert_eq!(round_of(b"<x>ra</x><note>r10</note>"), Some(10));
        assert_eq!(round_of(b"<basic>open</basic>"), None);
    }
}
