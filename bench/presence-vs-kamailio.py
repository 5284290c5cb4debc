#!/usr/bin/env python3
"""Vienna's presence agent against Kamailio's presence modules (presence + presence_xml), side by side on one
machine, under the same load from `vienna-load presence`.

Two shapes of load, each run against one server and then the other, alternately, ROUNDS_EACH times:
1. one publisher with WATCHERS (10,000) watchers: every round the publisher PUBLISHes a new note and all
   watchers get a NOTIFY;
2. MANY publishers (1,000) with FEW (4) watchers each: every round each publisher PUBLISHes once.
The load is `vienna-load presence --rounds` (users user0.. publish, the next ones watch: watcher w subscribes
to publisher w mod publishers). Reported per shape: NOTIFY rate (median over rounds, from the first PUBLISH
of a round to its last NOTIFY), PUBLISH-to-NOTIFY latency p50/p99 over every NOTIFY, and the server's memory
per subscription (PSS of the server and its child processes after subscribing and the initial NOTIFYs,
minus before, divided by subscriptions: `vienna-load ... --pid`).

Both servers run without authentication, keep publications and subscriptions in memory only (Kamailio:
subs_db_mode 0, publ_cache 2; Vienna does so always), allow every watcher (Kamailio presence_xml
force_active; Vienna presence.allow_unknown_watchers) and send every NOTIFY at once (Vienna
presence.notify_interval_ms 0: no coalescing). Kamailio runs with children=2 (this machine has 2 cores);
Vienna's SIP core is one thread. Kamailio uses bench/kamailio/load-presence.cfg (also the tests'), with
`-m 512` MB of shared memory. Each run is bounded (rounds, round timeout, a timeout around the tool); the
servers stop when the script ends (by the PIDs it started). Ports 26590 (Kamailio) and 26690 (Vienna).

Usage: python3 bench/presence-vs-kamailio.py   (installs kamailio and kamailio-presence-modules with apt-get
if they are missing; builds vienna and vienna-load in release)
Environment: WATCHERS (10000), MANY (1000), FEW (4), ROUNDS (5 per run), ROUNDS_EACH (2 runs per server and
shape), JSON (write all results there), NO_BUILD (use the release binaries already built).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import ROOT, VIENNA, VIENNA_LOAD, build, log, stop

WATCHERS = int(os.environ.get("WATCHERS", "10000"))
MANY = int(os.environ.get("MANY", "1000"))
FEW = int(os.environ.get("FEW", "4"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
ROUNDS_EACH = int(os.environ.get("ROUNDS_EACH", "2"))
PORTS = {"kamailio": 26590, "vienna": 26690}
LOAD = VIENNA_LOAD




def install():
    benchlib.install(["kamailio", "kamailio-presence-modules"])
    build("vienna", "vienna-load")


def start_kamailio(work):
    port = PORTS["kamailio"]
    db = os.path.join(work, "kamailio-db")
    shutil.copytree("/usr/share/kamailio/dbtext/kamailio", db)
    run = os.path.join(work, "kamailio-run")
    os.makedirs(run)
    cfg = os.path.join(work, "kamailio.cfg")
    with open(os.path.join(ROOT, "bench", "kamailio", "load-presence.cfg")) as f:
        text = f.read().replace("BENCH_PORT", str(port)).replace("DBDIR", db)
    with open(cfg, "w") as f:
        f.write(text)
    check = subprocess.run([kamailio(), "-c", "-f", cfg], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"kamailio config check failed:\n{check.stderr}")
    pidfile = os.path.join(run, "kamailio.pid")
    proc = subprocess.Popen([kamailio(), "-f", cfg, "-DD", "-E", "-m", "512", "-Y", run, "-P", pidfile, "-w", run],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "kamailio.log"), "w"))
    time.sleep(1.5)
    if proc.poll() is not None:
        sys.exit("kamailio did not start: see " + os.path.join(work, "kamailio.log"))
    return proc


def kamailio():
    return "/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else "kamailio"


def start_vienna(work):
    data = os.path.join(work, "vienna-data")
    env = dict(os.environ)
    env.pop("VIENNA_CONFIG", None)
    # vienna-load's publishers are user0, user1, ... (its watchers need no account: authentication is off).
    names = [f"user{i}" for i in range(max(MANY, 1))]
    log(f"adding {len(names)} publisher accounts")
    for name in names:
        subprocess.run([VIENNA, "--data-dir", data, "user", "add", name, "--password-stdin", "--set",
                        "store.synchronous=normal"], input="pw\n", text=True, check=True, capture_output=True, env=env)
    port = PORTS["vienna"]
    args = [VIENNA, "--data-dir", data, "serve",
            "--set", "turn.enabled=false", "--set", "admin.listen=127.0.0.1:0",
            "--set", f"sip.udp_port={port}", "--set", "sip.tcp=false", "--set", "sip.tls=false",
            "--set", "sip.authenticate=false", "--set", "sip.max_transactions=400000",
            "--set", "presence.notify_interval_ms=0", "--set", "presence.require_registration=false",
            "--set", "presence.allow_unknown_watchers=true", "--set", "presence.max_subscriptions=200000",
            "--set", "log.level=warn"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vienna.log"), "w"),
                            env=env)
    time.sleep(1.5)
    if proc.poll() is not None:
        sys.exit("vienna did not start: see " + os.path.join(work, "vienna.log"))
    return proc


def load(server, pid, publishers, watchers, out):
    """`watchers` per publisher: publishers x watchers subscriptions, one per watcher."""
    cmd = ["timeout", "300", LOAD, "presence", "--target", f"127.0.0.1:{PORTS[server]}", "--domain", "localhost",
           "--presentities", str(publishers), "--watchers", str(publishers * watchers),
           "--rounds", str(ROUNDS), "--interval-ms", "1000", "--round-timeout", "20", "--sockets", "8",
           "--pid", str(pid), "--json", out]
    log(" ".join(cmd[2:]))
    r = subprocess.run(cmd, capture_output=True, text=True)
    log(r.stdout.strip())
    if not os.path.exists(out):
        log(r.stderr)
        return None
    with open(out) as f:
        return json.load(f)


def main():
    install()
    work = tempfile.mkdtemp(prefix="presence-bench-")
    shapes = [("one publisher, %d watchers" % WATCHERS, 1, WATCHERS),
              ("%d publishers, %d watchers each" % (MANY, FEW), MANY, FEW)]
    results = {s[0]: {"kamailio": [], "vienna": []} for s in shapes}
    for shape, publishers, watchers in shapes:
        for run in range(ROUNDS_EACH):
            for server in ("kamailio", "vienna"):
                # A fresh server per run: memory per subscription starts from an empty server.
                sub = os.path.join(work, f"{server}-{run}-{publishers}")
                os.makedirs(sub)
                proc = start_kamailio(sub) if server == "kamailio" else start_vienna(sub)
                try:
                    log(f"== {shape}: {server}, run {run + 1}")
                    r = load(server, proc.pid, publishers, watchers, os.path.join(sub, "load.json"))
                    if r:
                        results[shape][server].append(r)
                finally:
                    stop([proc])
    print_tables(results)
    if os.environ.get("JSON"):
        with open(os.environ["JSON"], "w") as f:
            json.dump(results, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)


def print_tables(results):
    for shape, by_server in results.items():
        print(f"\n#### {shape} ({ROUNDS} rounds per run, {ROUNDS_EACH} runs per server, alternating)\n")
        print("| server | NOTIFY rate (median, per s) | latency p50 (ms) | latency p99 (ms) | delivered / expected |"
              " bytes per subscription |")
        print("|---|---|---|---|---|---|")
        for server, runs in by_server.items():
            if not runs:
                print(f"| {server} | failed | | | | |")
                continue
            rate = statistics.median(r["rounds"]["notify_rate_median"] for r in runs)
            p50 = statistics.median(r["latency_us"]["p50"] / 1000 for r in runs)
            p99 = max(r["latency_us"]["p99"] / 1000 for r in runs)
            delivered = sum(r["notifies"]["matched"] for r in runs)
            # one NOTIFY per subscription per round, whether or not the SUBSCRIBE succeeded
            expected = sum(r["config"]["watchers"] * r["config"]["subscriptions_per_watcher"] * ROUNDS
                           for r in runs)
            mem = [r["server_memory"]["bytes_per_subscription"] for r in runs if r.get("server_memory")]
            mem = f"{statistics.median(mem):.0f}" if mem else "n/a"
            print(f"| {server} | {rate:.0f} | {p50:.2f} | {p99:.2f} | {delivered} / {expected} | {mem} |")


if __name__ == "__main__":
    main()
