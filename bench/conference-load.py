#!/usr/bin/env python3
"""Participants per core: Vienna's audio MCU (its default shared mix, and its encode-per-listener mode) and
Janus AudioBridge side by side under the same `vienna-load conference` traffic. Participants join (Vienna:
its admin API; Janus: its HTTP API, as plain-RTP participants), send Opus with a tone each at 50 packets/s,
and check what they hear; the tool reports mouth-to-ear latency through the bridge, loss, jitter, the mix
checks and the server's CPU.

Shapes, each a step search (participant counts ascending; the search stops at the first step that fails):
(a) one conference, 3 talkers and the rest listeners, N participants in all;
(b) M conferences of 5 participants, 2 talkers each.

A step passes when the mix kept up — at least 49.5 mix packets/s per participant, at least 99 % of the
checked seconds right (every other talker heard, a talker not hearing itself) and at least 90 % of the
seconds there were to check decoded (vienna-load's own verdict wants all of them; at a few hundred
participants a checked listener may miss its last second at the end of the run) — and:
* the server's CPU stayed under 95 % of its one core (research/janus-anchor.md: Janus falls behind once it
  reaches the core; Janus has no tick counter, so for it this is the whole test);
* Vienna: at most 1 % of its tick rounds overran the 20 ms budget in the worker thread's CPU time
  (`tick_cpu_overruns`/`tick_rounds` of /api/v1/mcu, sampled every second, taken over the seconds when
  every participant was in, after the warm-up). The wall-clock overruns (`tick_overruns`) and the ticks
  that started more than a tick late (`late_ticks`/`ticks`) are reported beside: on a shared machine they
  also count the time the worker was preempted by other work on its core.

The server runs pinned to CPU 0 and vienna-load to CPU 1 (taskset); Vienna with one MCU worker
(mcu.workers=1), Janus 1.1.2 (Debian) with the configuration below (48 kHz rooms created by vienna-load,
the AudioBridge's default quality). Every run is bounded (--duration, the drain time, a timeout around the
tool); each server stops after its run (by the PID this script started). Ports: Vienna admin 26464 and MCU
media 26500; Janus HTTP 26088.

Usage: python3 bench/conference-load.py   (builds vienna and vienna-load in release unless NO_BUILD is set;
Janus, if installed: apt-get install janus)
Environment: SERVERS ("vienna,per-listener,janus"); the steps, participants for (a) and conferences for
(b): A_VIENNA ("100,300,600,1000,1300,1500"), A_PER_LISTENER ("20,40,60,80"), A_JANUS ("50,60,70,90"),
B_VIENNA ("8,12,16,20,24"), B_PER_LISTENER ("4,8,12,16"), B_JANUS ("10,14,18"); an empty list skips it;
SHAPES ("a,b"); SECONDS (20), WARMUP (3), ALL_STEPS (run the steps after a failure too), VIENNA_SET (more
Vienna settings, comma-separated, e.g. "mcu.opus_complexity=4"), JSON (write all results).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import VIENNA, VIENNA_LOAD, build, log, stop

SECONDS = int(os.environ.get("SECONDS", "20"))
WARMUP = int(os.environ.get("WARMUP", "3"))
ADMIN = 26464
MEDIA = 26500
JANUS_HTTP = 26088
SERVERS = [x for x in os.environ.get("SERVERS", "vienna,per-listener,janus").split(",") if x]
SHAPES = [x for x in os.environ.get("SHAPES", "a,b").split(",") if x]
VIENNA_SET = [x for x in os.environ.get("VIENNA_SET", "").split(",") if x]
LOAD = VIENNA_LOAD
HZ = os.sysconf("SC_CLK_TCK")
STEPS = {
    ("a", "vienna"): "100,300,600,1000,1300,1500",
    ("a", "per-listener"): "20,40,60,80",
    ("a", "janus"): "50,60,70,90",
    ("b", "vienna"): "8,12,16,20,24",
    ("b", "per-listener"): "4,8,12,16",
    ("b", "janus"): "10,14,18",
}

# Janus 1.1.2 as research/janus-anchor.md ran it: loopback only, the HTTP transport and the AudioBridge
# plugin only, plain-RTP participants allowed in the rooms vienna-load creates.
JANUS_CONF = {
    "janus.jcfg": """general: {
	configs_folder = "%(conf)s"
	plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
	transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports"
	events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
	loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
	debug_level = 3
	admin_secret = "janusoverlord"
	protected_folders = ["/bin","/boot","/dev","/etc","/initrd","/lib","/lib32","/lib64","/proc","/sbin","/sys","/usr","/var"]
	session_timeout = 120
}
certificates: {
}
media: {
	rtp_port_range = "20000-29999"
}
nat: {
	nice_debug = false
	ice_enforce_list = "127.0.0.1"
	ignore_mdns = true
}
plugins: {
	disable = "libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_videoroom.so,libjanus_voicemail.so"
}
transports: {
	disable = "libjanus_websockets.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
events: {
	broadcast = false
	disable = "libjanus_gelfevh.so,libjanus_mqttevh.so,libjanus_nanomsgevh.so,libjanus_rabbitmqevh.so,libjanus_sampleevh.so,libjanus_wsevh.so"
}
""",
    "janus.transport.http.jcfg": """general: {
	json = "plain"
	base_path = "/janus"
	http = true
	port = %(port)d
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
cors: {
}
""",
    "janus.plugin.audiobridge.jcfg": """general: {
	rtp_port_range = "40000-49999"
	local_ip = "127.0.0.1"
	events = false
}
""",
}




def start_janus(work):
    conf = os.path.join(work, "janus")
    os.makedirs(conf, exist_ok=True)
    for name, text in JANUS_CONF.items():
        with open(os.path.join(conf, name), "w") as f:
            f.write(text % {"conf": conf, "port": JANUS_HTTP})
    proc = subprocess.Popen(
        ["taskset", "-c", "0", "janus", "-C", os.path.join(conf, "janus.jcfg"), "-F", conf, "-o", "-N",
         "-L", os.path.join(conf, "janus.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    if proc.poll() is not None:
        sys.exit("janus did not start: see " + os.path.join(conf, "janus.log"))
    return proc


def start_vienna(work, per_listener):
    data = os.path.join(work, "vienna")
    env = dict(os.environ)
    env.pop("VIENNA_CONFIG", None)
    proc = subprocess.Popen(
        ["taskset", "-c", "0", VIENNA, "serve", "--data-dir", data, "--set", "sip.enabled=false", "--set",
         "turn.enabled=false", "--set", f"admin.listen=127.0.0.1:{ADMIN}", "--set", "mcu.enabled=true", "--set",
         "mcu.workers=1", "--set", f"mcu.port={MEDIA}", "--set", "mcu.max_participants=5000", "--set",
         f"mcu.encode_per_listener={'true' if per_listener else 'false'}", "--set", "log.level=warn"]
        + [a for kv in VIENNA_SET for a in ("--set", kv)],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vienna.log"), "w"), env=env)
    time.sleep(2)
    if proc.poll() is not None:
        sys.exit("vienna did not start: see " + os.path.join(work, "vienna.log"))
    return proc


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


class Sampler(threading.Thread):
    """Every second: the server's and the load generator's CPU ticks and (Vienna) the MCU worker's counters."""

    def __init__(self, server_pid, vienna):
        super().__init__(daemon=True)
        self.server_pid, self.vienna, self.loader_pid = server_pid, vienna, None
        self.samples, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.wait(1.0):
            s = {"t": time.monotonic(), "server": cpu_ticks(self.server_pid),
                 "loader": cpu_ticks(self.loader_pid) if self.loader_pid else None}
            if self.vienna:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/api/v1/mcu", timeout=0.9) as r:
                        s["mcu"] = json.load(r)["workers"][0]
                except (OSError, ValueError, KeyError, IndexError):
                    pass
            self.samples.append(s)


def window(samples, participants):
    """Deltas over the seconds every participant was in (after the warm-up), from the MCU's counters."""
    full = [s for s in samples if s.get("mcu", {}).get("participants") == participants]
    full = full[WARMUP:]
    if len(full) < 2:
        return None
    a, b = full[0], full[-1]
    d = {k: b["mcu"][k] - a["mcu"][k] for k in ("ticks", "late_ticks", "tick_rounds", "tick_overruns",
                                                 "tick_cpu_overruns", "tick_busy_us", "tick_cpu_us")}
    secs = b["t"] - a["t"]
    d["secs"] = round(secs, 1)
    rounds = max(1, d["tick_rounds"])
    d["overrun_pct"] = 100 * d["tick_overruns"] / rounds
    d["cpu_overrun_pct"] = 100 * d["tick_cpu_overruns"] / rounds
    d["late_pct"] = 100 * d["late_ticks"] / max(1, d["ticks"])
    d["round_mean_ms"] = d["tick_busy_us"] / rounds / 1000
    d["round_cpu_mean_ms"] = d["tick_cpu_us"] / rounds / 1000
    # Longest since the server started (joins included; they cost less than the full conference).
    d["round_max_ms"] = b["mcu"]["tick_max_us"] / 1000
    d["round_cpu_max_ms"] = b["mcu"]["tick_cpu_max_us"] / 1000
    d["server_cpu_pct"] = 100 * (b["server"] - a["server"]) / HZ / secs
    if a["loader"] is not None and b["loader"] is not None:
        d["loader_cpu_pct"] = 100 * (b["loader"] - a["loader"]) / HZ / secs
    return d


def timed_window(samples, end):
    """Janus has no participant count to go by: the sending seconds after the warm-up, by the clock (the
    tool stops receiving `drain` after its last send). Server and load generator CPU over them."""
    span = [s for s in samples if end - 1 - SECONDS + WARMUP <= s["t"] <= end - 1]
    if len(span) < 2 or span[0]["server"] is None or span[-1]["server"] is None:
        return None
    a, b = span[0], span[-1]
    secs = b["t"] - a["t"]
    d = {"secs": round(secs, 1), "server_cpu_pct": 100 * (b["server"] - a["server"]) / HZ / secs}
    if a["loader"] is not None and b["loader"] is not None:
        d["loader_cpu_pct"] = 100 * (b["loader"] - a["loader"]) / HZ / secs
    return d


def loader_busiest(samples):
    """The load generator's busiest second, % of its core."""
    best = 0.0
    for a, b in zip(samples, samples[1:]):
        if a["loader"] is not None and b["loader"] is not None:
            best = max(best, 100 * (b["loader"] - a["loader"]) / HZ / (b["t"] - a["t"]))
    return best


def one_run(server, shape, step, work):
    n = step if shape == "a" else 5 * step
    extra = ["--participants", str(n)]
    if shape == "b":
        extra += ["--conferences", str(step), "--talkers", "2"]
    proc = start_janus(work) if server == "janus" else start_vienna(work, server == "per-listener")
    out = os.path.join(work, "load.json")
    try:
        target = ["--admin", f"127.0.0.1:{ADMIN}"] if server != "janus" else \
            ["--join", "janus", "--admin", f"127.0.0.1:{JANUS_HTTP}"]
        cmd = ["taskset", "-c", "1", LOAD, "conference"] + target + \
              ["--duration", str(SECONDS), "--warmup", str(WARMUP), "--pid", str(proc.pid), "--json", out] + extra
        log(" ".join(cmd[3:]))
        sampler = Sampler(proc.pid, server != "janus")
        before = os.getloadavg()[0]
        tool = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler.loader_pid = tool.pid  # taskset execs vienna-load in place
        sampler.start()
        try:
            stdout, stderr = tool.communicate(timeout=SECONDS + 120)
        except subprocess.TimeoutExpired:
            tool.kill()
            stdout, stderr = tool.communicate()
        ended = time.monotonic()
        sampler.stop.set()
        sampler.join()
        log(stdout.strip())
        if not os.path.exists(out):
            log(stderr)
            return None
        with open(out) as f:
            r = json.load(f)
        os.remove(out)
    finally:
        stop([proc])
    # The machine's 1-minute load average around the run (other work on it shows).
    r["machine_load"] = [round(before, 2), round(os.getloadavg()[0], 2)]
    r["window"] = window(sampler.samples, n) if server != "janus" else timed_window(sampler.samples, ended)
    r["loader_busiest_pct"] = round(loader_busiest(sampler.samples), 1)
    r["verdict"] = verdict(server, r)
    log("verdict:", r["verdict"], json.dumps(r["window"]) if r["window"] else "")
    return r


def verdict(server, r):
    """Why a step failed, or "pass"."""
    why = []
    pps = r["received"]["per_participant_pps"]
    if pps < 49.5:
        why.append(f"mix {pps:.1f} pkt/s")
    mix = r["mix"]
    if mix["seconds_ok"] < 0.99 * max(1, mix["seconds"]) or mix["seconds"] < 0.9 * mix["seconds_expected"]:
        why.append(f"mix seconds ok {mix['seconds_ok']}/{mix['seconds']}/{mix['seconds_expected']}")
    cpu = (r.get("server_process") or {}).get("cpu_percent_mean", 0)
    if cpu >= 95:
        why.append(f"CPU {cpu:.0f} %")
    if server != "janus":
        w = r["window"]
        if not w:
            why.append("no full window")
        elif w["cpu_overrun_pct"] > 1:
            why.append(f"CPU-time overruns {w['cpu_overrun_pct']:.1f} %")
    return "; ".join(why) or "pass"


def row(shape, server, step, r):
    label = f"{step}" if shape == "a" else f"{step} x 5 = {5 * step}"
    if r is None:
        return f"| {label} | {server} | failed to run | | | | | | | | | |"
    w = r["window"]
    cpu = (r.get("server_process") or {}).get("cpu_percent_mean")
    ticked = w and "ticks" in w
    ticks = f"{w['cpu_overrun_pct']:.2f} % ({w['round_cpu_mean_ms']:.1f} / {w['round_cpu_max_ms']:.1f})" if ticked else "n/a"
    wall = f"{w['overrun_pct']:.2f} % / {w['late_pct']:.2f} % ({w['round_mean_ms']:.1f} / {w['round_max_ms']:.1f})" \
        if ticked else "n/a"
    lat = r["latency_us"]
    mix = r["mix"]
    loader = f"{w['loader_cpu_pct']:.0f}" if w and "loader_cpu_pct" in w else "-"
    return (f"| {label} | {server} | {cpu:.1f} | {ticks} | {wall} | {r['received']['per_participant_pps']:.1f} | "
            f"{mix['seconds_ok']} / {mix['seconds']} / {mix['seconds_expected']} | {lat['p50'] / 1000:.1f} / {lat['p99'] / 1000:.1f} | "
            f"{r['sent']['late']} | {loader} ({r['loader_busiest_pct']:.0f}) | "
            f"{max(r['machine_load'])} | {r['verdict']} |")


def main():
    build("vienna", "vienna-load")
    unknown = [x for x in SERVERS if x not in ("vienna", "per-listener", "janus")]
    if unknown:
        sys.exit(f"unknown server(s) {unknown}: SERVERS takes vienna, per-listener, janus")
    servers = [x for x in SERVERS if x != "janus" or shutil.which("janus")]
    work = tempfile.mkdtemp(prefix="conference-bench-")
    results, rows, best = {}, {}, {}
    try:
        for shape in SHAPES:
            for server in servers:
                env = f"{shape.upper()}_{server.upper().replace('-', '_')}"
                steps = [int(x) for x in os.environ.get(env, STEPS[(shape, server)]).split(",") if x]
                for step in steps:
                    sub = os.path.join(work, f"{shape}-{server}-{step}")
                    os.makedirs(sub)
                    r = one_run(server, shape, step, sub)
                    results[f"{shape} / {server} / {step}"] = r
                    rows.setdefault(shape, []).append(row(shape, server, step, r))
                    ok = r is not None and r["verdict"] == "pass"
                    if ok:
                        best[(shape, server)] = step
                    elif not os.environ.get("ALL_STEPS"):
                        break
        titles = {"a": "(a) one conference, 3 talkers and N-3 listeners; N", "b": "(b) M conferences of 5, 2 talkers each; M x 5"}
        for shape in SHAPES:
            print(f"\n#### {titles[shape]} ({SECONDS} s per run, first {WARMUP} s not checked)\n")
            print("| participants | server | server CPU (% of one core) | tick rounds over 20 ms, CPU time (round mean / max ms) |"
                  " over 20 ms, wall clock / ticks started late (mean / max ms) |"
                  " mix packets/s per participant | mix seconds ok / checked / expected | mouth-to-ear p50 / p99 (ms) | late sends |"
                  " load generator CPU % (busiest second) | machine load average | verdict |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for line in rows.get(shape, []):
                print(line)
        print()
        for (shape, server), step in best.items():
            print(f"- ({shape}) {server}: largest passing step {step}" + (f" conferences ({5 * step} participants)" if shape == "b" else " participants"))
        if os.environ.get("JSON"):
            with open(os.environ["JSON"], "w") as f:
                json.dump(results, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
