//! `vienna-load presence` against Vienna's presence agent (`vienna serve`), Kamailio's presence modules and
//! a small presence server written here (SUBSCRIBE answered 200 plus an initial NOTIFY, PUBLISH answered
//! 200 with an entity tag plus a NOTIFY with the published document to every watcher of that presentity;
//! optionally dropping every other NOTIFY), with both schedules (`--rate`, `--rounds`). Every run is
//! bounded by --duration or by its rounds and their timeout; the tests assert counts, never wall time.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Kamailio, Vienna, vienna_load};
use vienna_sip::{HeaderName, Message, Method, Request, Uri};

struct Sub {
    watcher: SocketAddr,
    contact: String,
    call_id: String,
    to: String,
    from_tag: String,
    cseq: u32,
}

/// The presence server of these tests; stops on drop.
struct FakePresence {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    notifies: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl FakePresence {
    fn start(drop_every_other: bool) -> FakePresence {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let notifies = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), notifies.clone());
        let thread = std::thread::spawn(move || serve(&sock, addr, &s, &n, drop_every_other));
        FakePresence { addr, stop, notifies, thread: Some(thread) }
    }
}

impl Drop for FakePresence {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn notify(me: SocketAddr, sub: &mut Sub, presentity: &str, branch: u64, body: Option<&[u8]>) -> Vec<u8> {
    sub.cseq += 1;
    let mut n = Request::new(Method::Notify, Uri::parse(&sub.contact).expect("contact uri"));
    let h = &mut n.headers;
    h.push(HeaderName::Via, format!("SIP/2.0/UDP {me};branch=z9hG4bKfake{branch}"));
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::From, format!("<{presentity}>;tag={}", sub.from_tag));
    h.push(HeaderName::To, sub.to.clone());
    h.push(HeaderName::CallId, sub.call_id.clone());
    h.push(HeaderName::CSeq, format!("{} NOTIFY", sub.cseq));
    h.push(HeaderName::Contact, format!("<sip:fake@{me}>"));
    h.push(HeaderName::Event, "presence");
    h.push(HeaderName::SubscriptionState, "active;expires=600");
    if let Some(b) = body {
        h.push(HeaderName::ContentType, "application/pidf+xml");
        n.body = b.to_vec();
    }
    n.to_bytes()
}

fn serve(sock: &UdpSocket, me: SocketAddr, stop: &AtomicBool, notifies: &AtomicU64, drop_every_other: bool) {
    let mut subs: HashMap<String, Vec<Sub>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut counter = 0u64;
    while !stop.load(Relaxed) {
        let Ok((len, from)) = sock.recv_from(&mut buf) else { continue };
        let Ok(Message::Request(req)) = Message::parse(&buf[..len]) else { continue };
        counter += 1;
        let presentity = req.uri.to_string();
        match req.method {
            Method::Subscribe => {
                let tag = format!("srv{counter}");
                let mut ok = req.make_response_with_tag(200, None, &tag);
                ok.headers.push(HeaderName::Contact, format!("<sip:fake@{me}>"));
                ok.headers.push(HeaderName::Expires, "600");
                let _ = sock.send_to(&ok.to_bytes(), from);
                let contact = req
                    .headers
                    .contacts()
                    .ok()
                    .and_then(|c| match c {
                        vienna_sip::Contacts::List(l) => l.into_iter().next().map(|n| n.uri.to_string()),
                        vienna_sip::Contacts::Wildcard => None,
                    })
                    .expect("Contact");
                let mut sub = Sub {
                    watcher: from,
                    contact,
                    call_id: req.headers.call_id().expect("Call-ID").to_owned(),
                    to: req.headers.get(&HeaderName::From).expect("From").to_owned(),
                    from_tag: tag,
                    cseq: 0,
                };
                let initial = notify(me, &mut sub, &presentity, counter, None);
                let _ = sock.send_to(&initial, from);
                subs.entry(presentity).or_default().push(sub);
            }
            Method::Publish => {
                let mut ok = req.make_response_with_tag(200, None, &format!("p{counter}"));
                ok.headers.push(HeaderName::parse("SIP-ETag"), format!("e{counter}"));
                ok.headers.push(HeaderName::Expires, "600");
                let _ = sock.send_to(&ok.to_bytes(), from);
                for (i, sub) in subs.get_mut(&presentity).into_iter().flatten().enumerate() {
                    counter += 1;
                    if drop_every_other && (counter + i as u64).is_multiple_of(2) {
                        continue;
                    }
                    let n = notify(me, sub, &presentity, counter, Some(&req.body));
                    let _ = sock.send_to(&n, sub.watcher);
                    notifies.fetch_add(1, Relaxed);
                }
            }
            _ => {
                let r = req.make_response_with_tag(200, None, "x");
                let _ = sock.send_to(&r.to_bytes(), from);
            }
        }
    }
}

#[test]
fn every_publish_reaches_every_watcher_of_a_fake_server() {
    let server = FakePresence::start(false);
    let target = server.addr.to_string();
    let args = [
        "presence",
        "--target",
        &target,
        "--presentities",
        "3",
        "--watchers",
        "9",
        "--subscriptions-per-watcher",
        "2",
        "--rate",
        "15",
        "--duration",
        "2",
    ];
    let run = vienna_load(&args, Some("svg"));
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["mode"], "presence");
    assert_eq!(j["subscriptions"], 18, "9 watchers x 2");
    assert_eq!(j["publishes"]["ok"], 30, "15/s x 2 s");
    assert_eq!(j["publishes"]["failed"], 0);
    // each presentity has 18 / 3 = 6 watchers
    assert_eq!(j["notifies"]["expected"], 180);
    assert_eq!(j["notifies"]["matched"], 180);
    assert_eq!(j["notifies"]["missing"], 0);
    assert_eq!(j["notifies"]["received"], 180 + 18, "plus the initial NOTIFY of every subscription");
    assert_eq!(server.notifies.load(Relaxed), 180);
    assert_eq!(j["latency_us"]["count"], 180, "one publish-to-NOTIFY latency per matched NOTIFY");
    assert_eq!(run.timeline_sum("offered"), 30);
    for (topic, key, path) in [
        ("notifies", "matched", "/notifies/matched"),
        ("notifies", "missing", "/notifies/missing"),
        ("publishes", "ok", "/publishes/ok"),
        ("latency_us", "p50", "/latency_us/p50"),
        ("latency_us", "max", "/latency_us/max"),
        ("rate", "achieved", "/achieved_rate"),
    ] {
        run.same(topic, key, path);
    }
    let svg = run.report.as_deref().unwrap();
    assert!(svg.contains("<svg") && svg.contains("notified"));
}

#[test]
fn missing_notifies_are_counted_and_fail_the_run() {
    let server = FakePresence::start(true);
    let target = server.addr.to_string();
    let args =
        ["presence", "--target", &target, "--presentities", "2", "--watchers", "4", "--rate", "10", "--duration", "1"];
    let run = vienna_load(&args, None);
    assert_eq!(run.out.status.code(), Some(1), "missing NOTIFYs fail the run");
    let j = &run.json;
    let sent = server.notifies.load(Relaxed);
    assert_eq!(j["notifies"]["expected"], 20, "10 publishes x 2 watchers each");
    assert_eq!(j["notifies"]["matched"].as_u64(), Some(sent));
    assert_eq!(j["notifies"]["missing"].as_u64(), Some(20 - sent));
    assert!(sent < 20);
}

#[test]
fn kamailio_presence_notifies_every_watcher() {
    let k = Kamailio::start();
    let target = k.addr.to_string();
    let pid = k.pid().to_string();
    let args = [
        "presence",
        "--target",
        &target,
        "--presentities",
        "4",
        "--watchers",
        "12",
        "--rate",
        "10",
        "--duration",
        "2",
        "--pid",
        &pid,
    ];
    let run = vienna_load(&args, Some("html"));
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["subscriptions"], 12);
    assert_eq!(j["publishes"]["ok"], 20);
    assert_eq!(j["notifies"]["expected"], 60, "20 publishes x 3 watchers each");
    assert_eq!(j["notifies"]["matched"], 60);
    assert_eq!(j["notifies"]["missing"], 0);
    assert!(j["server_process"]["processes"].as_u64().unwrap() > 1, "Kamailio's children are sampled too");
    let html = run.report.as_deref().unwrap();
    assert!(html.contains("<svg") && html.contains("matched=60"));
}

#[test]
fn rounds_against_a_fake_server_count_each_round() {
    let server = FakePresence::start(false);
    let target = server.addr.to_string();
    let args = [
        "presence",
        "--target",
        &target,
        "--presentities",
        "2",
        "--watchers",
        "6",
        "--rounds",
        "3",
        "--interval-ms",
        "100",
        "--round-timeout",
        "10",
    ];
    let run = vienna_load(&args, Some("svg"));
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["config"]["rounds"], 3);
    assert!(j["config"]["rate"].is_null() && j["requested_rate"].is_null(), "no rate with rounds");
    assert_eq!(j["publishes"]["ok"], 6, "2 presentities x 3 rounds");
    assert_eq!(j["notifies"]["matched"], 18, "6 subscriptions x 3 rounds");
    let rounds = j["rounds"]["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    for (i, r) in rounds.iter().enumerate() {
        assert_eq!(r["round"], i + 1);
        assert_eq!(r["notifies"], 6, "round {i}: {r}");
        assert_eq!(r["expected"], 6);
        assert_eq!(r["timed_out"], false);
        assert!(r["secs"].as_f64().unwrap() > 0.0 && r["notify_rate"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(j["rounds"]["timed_out"], 0);
    assert!(j["server_memory"].is_null(), "no --pid, no memory");
    run.same("rounds", "notify_rate_median", "/rounds/notify_rate_median");
    run.same("round", "notifies", "/rounds/rounds/0/notifies");
    run.same("notifies", "matched", "/notifies/matched");
}

#[test]
fn a_round_whose_notifies_do_not_all_come_times_out_and_fails() {
    let server = FakePresence::start(true);
    let target = server.addr.to_string();
    let args = [
        "presence",
        "--target",
        &target,
        "--presentities",
        "2",
        "--watchers",
        "4",
        "--rounds",
        "1",
        "--interval-ms",
        "0",
        "--round-timeout",
        "1",
    ];
    let run = vienna_load(&args, None);
    assert_eq!(run.out.status.code(), Some(1), "a timed-out round fails the run");
    let r = &run.json["rounds"]["rounds"][0];
    assert_eq!(r["timed_out"], true);
    assert_eq!(r["notifies"].as_u64(), Some(server.notifies.load(Relaxed)));
    assert!(r["notifies"].as_u64().unwrap() < 4);
}

/// Vienna with presence for every load user, every NOTIFY sent at once (no coalescing: each PUBLISH is
/// one NOTIFY per watcher, which is what the tool counts).
fn vienna_presence(users: usize) -> Vienna {
    Vienna::start(
        users,
        &[
            "--set",
            "presence.notify_interval_ms=0",
            "--set",
            "presence.require_registration=false",
            "--set",
            "presence.allow_unknown_watchers=true",
        ],
    )
}

#[test]
fn vienna_presence_notifies_every_watcher_at_a_rate() {
    let v = vienna_presence(16);
    let target = v.sip.to_string();
    let pid = v.pid().to_string();
    let args = [
        "presence",
        "--target",
        &target,
        "--presentities",
        "4",
        "--watchers",
        "12",
        "--subscriptions-per-watcher",
        "2",
        "--rate",
        "10",
        "--duration",
        "2",
        "--pid",
        &pid,
    ];
    let run = vienna_load(&args, Some("html"));
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["subscriptions"], 24, "12 watchers x 2, Digest-authenticated");
    assert_eq!(j["setup"]["failed_by"].as_object().unwrap().len(), 0);
    assert_eq!(j["publishes"]["ok"], 20, "the requested 10/s for 2 s");
    assert_eq!(j["notifies"]["expected"], 120, "20 publishes x 6 watchers each");
    assert_eq!(j["notifies"]["matched"], 120);
    assert_eq!(j["notifies"]["missing"], 0);
    assert_eq!(j["latency_us"]["count"], 120);
    let mem = &j["server_memory"];
    assert!(mem["pss_before_bytes"].as_u64().unwrap() > 0);
    assert!(mem["bytes_per_subscription"].as_f64().is_some(), "{mem}");
    assert_eq!(j["server_process"]["pids"][0].as_u64(), Some(u64::from(v.pid())));
    for (topic, key, path) in [
        ("notifies", "matched", "/notifies/matched"),
        ("publishes", "ok", "/publishes/ok"),
        ("memory", "bytes_per_subscription", "/server_memory/bytes_per_subscription"),
        ("latency_us", "p99", "/latency_us/p99"),
    ] {
        run.same(topic, key, path);
    }
    let html = run.report.as_deref().unwrap();
    assert!(html.contains("<svg") && html.contains("matched=120"));
}

#[test]
fn vienna_presence_fans_out_every_round_to_every_watcher() {
    let v = vienna_presence(41);
    let target = v.sip.to_string();
    let pid = v.pid().to_string();
    // One presentity, 40 watchers: each round is one PUBLISH and a fan-out of 40 NOTIFYs.
    let args = [
        "presence",
        "--target",
        &target,
        "--presentities",
        "1",
        "--watchers",
        "40",
        "--rounds",
        "3",
        "--interval-ms",
        "200",
        "--round-timeout",
        "20",
        "--pid",
        &pid,
    ];
    let run = vienna_load(&args, None);
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["subscriptions"], 40);
    assert_eq!(j["publishes"]["ok"], 3);
    assert_eq!(j["notifies"]["matched"], 120);
    for r in j["rounds"]["rounds"].as_array().unwrap() {
        assert_eq!((r["notifies"].as_u64(), r["expected"].as_u64()), (Some(40), Some(40)), "{r}");
    }
    assert!(j["rounds"]["notify_rate_median"].as_f64().unwrap() > 0.0);
    assert!(j["server_memory"]["pss_after_bytes"].as_u64().unwrap() > 0);
    run.same("rounds", "notify_rate_median", "/rounds/notify_rate_median");
    run.same("memory", "pss_after_bytes", "/server_memory/pss_after_bytes");
}
