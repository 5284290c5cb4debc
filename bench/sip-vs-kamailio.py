#!/usr/bin/env python3
"""Vienna's SIP registrar and proxy against Kamailio 5.6, side by side on one machine, under SIPp.

The servers run at once on different UDP ports: Kamailio with usrloc in memory (db_mode 0, 2 children,
bench/kamailio/registrar.cfg), Vienna (sip.max_transactions raised to 1,000,000, see
Servers.start) with its store as shipped (SQLite, bindings durable before the 200 OK, store.synchronous =
full), Vienna with store.synchronous = normal, and Vienna with write-back
registrations (sip.bindings_write_back_ms = 1000: bindings in memory, written every second, as usrloc's
db_mode 2; store.synchronous = full). For each load the rate rises
step by step (RATES); at every step SIPp loads one server after the other, so drift in the machine hits
all of them. A step is clean when every call of it succeeded (no failed call, no timeout) at 95 % of the
asked rate or more. A server's ladder stops at its first unclean step.

Loads (USERS users, SIPp's injection file gives each call the next user):
- register: REGISTER without authentication, 200 (one transaction per call);
- register-digest: REGISTER, 401, REGISTER with Digest MD5, 200 (two transactions per call);
- message: MESSAGE from a user to a registered sink (a SIPp UAS answering 200), routed by a location
  lookup and relayed statefully (one proxied transaction per call), no authentication on either server.

CPU is the server's utime + stime from /proc (all Kamailio processes; Vienna's one process) during the
step, divided by the calls of the step. Every SIPp run is bounded (-m, -timeout and a timeout around it);
the servers stop when the script ends.

Usage: python3 bench/sip-vs-kamailio.py   (installs kamailio and sip-tester if missing; builds Vienna in
release). Environment: RATES ("1000,2000,5000,10000,15000,20000"), SECONDS per step (5), USERS (1000),
LOADS ("register,register-digest,message"), SIPP_BUFFER (SIPp's -buff_size, 4194304; 0: SIPp's default), SERVERS ("kamailio,vienna,vienna-normal,vienna-wb"), JSON (path of a
JSON result file, optional), BASELINE (path of another `vienna` binary, optional: each Vienna of SERVERS
also runs from it as `<name>-base`, in the same steps, so an old and a new build meet the same machine
drift; with NO_BUILD=1 the current build is not rebuilt).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, VIENNA, build, install, log, sipp_stats, stop
from benchlib import tree_cpu_seconds as cpu

BENCH = os.path.join(ROOT, "bench")
RATES = [int(x) for x in os.environ.get("RATES", "1000,2000,5000,10000,15000,20000").split(",")]
SECONDS = int(os.environ.get("SECONDS", "5"))
USERS = int(os.environ.get("USERS", "1000"))
LOADS = os.environ.get("LOADS", "register,register-digest,message").split(",")
# SIPp's socket buffers in bytes (its -buff_size; 0: SIPp's default, 65,535). A server that answers a
# batch of requests at once can overflow SIPp's default receive buffer while SIPp waits for a core; the
# lost answers come back as retransmissions 500 ms later and stretch the step: the load generator's loss,
# not the server's, so every server is measured with SIPp's buffers at 4 MiB.
SIPP_BUFFER = int(os.environ.get("SIPP_BUFFER", "4194304"))
# vienna: the store as shipped (store.synchronous = full: a registration is on disk, fsynced, before its
# 200 OK). vienna-normal: store.synchronous = normal (written to the WAL before the 200 OK, fsynced at
# checkpoints: survives a crash of the process, not of the machine), the nearest to Kamailio's memory-only
# usrloc that Vienna offers durably. vienna-wb: sip.bindings_write_back_ms = 1000 (bindings in memory,
# the 200 OK at once, written to the store every second and at shutdown; usrloc's db_mode 2).
PORTS = {"kamailio": 25390, "vienna": 25490, "vienna-normal": 25590, "vienna-wb": 25690}
SINK_PORT = {"kamailio": 25391, "vienna": 25491, "vienna-normal": 25591, "vienna-wb": 25691}
# Data directory suffix, store.synchronous and sip.bindings_write_back_ms of each Vienna.
VIENNA_MODES = {"vienna": ("", "full", 0), "vienna-normal": ("-normal", "normal", 0), "vienna-wb": ("-wb", "full", 1000)}
SERVERS = os.environ.get("SERVERS", ",".join(PORTS)).split(",")
BASELINE = os.environ.get("BASELINE")
if BASELINE:
    for name in [s for s in SERVERS if s in VIENNA_MODES]:
        suffix, sync, write_back = VIENNA_MODES[name]
        PORTS[name + "-base"] = PORTS[name] + 5000
        SINK_PORT[name + "-base"] = SINK_PORT[name] + 5000
        VIENNA_MODES[name + "-base"] = (suffix + "-base", sync, write_back)
        SERVERS.insert(SERVERS.index(name) + 1, name + "-base")
PORTS = {s: PORTS[s] for s in SERVERS}
SCENARIO = {
    "register": "register-noauth.xml",
    "register-digest": "register-digest.xml",
    "message": "message-uac.xml",
}
TRANSACTIONS_PER_CALL = {"register": 1, "register-digest": 2, "message": 1}












class Servers:
    def __init__(self, work):
        self.work = work
        self.procs = {}
        self.vienna_bin = VIENNA
        self.data = os.path.join(work, "vienna-data")
        users = os.path.join(work, "users.csv")
        with open(users, "w") as f:
            f.write("SEQUENTIAL\n")
            for i in range(USERS):
                f.write(f"user{i};pw-user{i};[authentication username=user{i} password=pw-user{i}]\n")
        self.users = users
        log(f"creating {USERS} Vienna accounts")
        for i in range(USERS):
            subprocess.run([self.vienna_bin, "user", "add", f"user{i}", "--password-stdin", "--data-dir", self.data],
                           input=f"pw-user{i}\n", text=True, check=True, capture_output=True)
        subprocess.run([self.vienna_bin, "user", "add", "sink", "--password-stdin", "--data-dir", self.data],
                       input="pw-sink\n", text=True, check=True, capture_output=True)
        for suffix, _, _ in VIENNA_MODES.values():
            if suffix and not os.path.exists(self.data + suffix):
                shutil.copytree(self.data, self.data + suffix)

    def start(self, auth):
        self.stop()
        if "kamailio" in PORTS:
            with open(os.path.join(BENCH, "kamailio", "registrar.cfg")) as f:
                cfg = f.read().replace("BENCH_PORT", str(PORTS["kamailio"]))
            kcfg = os.path.join(self.work, "kamailio.cfg")
            with open(kcfg, "w") as f:
                f.write(cfg)
            run_dir = os.path.join(self.work, "kamailio-run")
            os.makedirs(run_dir, exist_ok=True)
            args = ["kamailio", "-f", kcfg, "-DD", "-E", "-m", "256", "-Y", run_dir, "-P",
                    os.path.join(run_dir, "kamailio.pid")]
            if auth:
                args += ["-A", "WITH_AUTH"]
            self.procs["kamailio"] = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                                      stderr=open(os.path.join(self.work, "kamailio.log"), "a"))
        for name in [n for n in PORTS if n.startswith("vienna")]:
            suffix, sync, write_back = VIENNA_MODES[name]
            data = self.data + suffix
            binary = BASELINE if name.endswith("-base") else self.vienna_bin
            self.procs[name] = subprocess.Popen(
                [binary, "serve", "--data-dir", data,
                 "--set", f"sip.udp_port={PORTS[name]}", "--set", "sip.tcp=false", "--set", "sip.tls=false",
                 "--set", "turn.enabled=false", "--set", "admin.listen=127.0.0.1:0",
                 "--set", 'sip.digest_algorithms=["MD5"]', "--set", f"sip.authenticate={'true' if auth else 'false'}",
                 "--set", f"store.synchronous={sync}", "--set", f"sip.bindings_write_back_ms={write_back}",
                 # A non-INVITE transaction over UDP lives 64*T1 = 32 s after its answer (RFC 3261 Timer J),
                 # so the default cap of 100,000 live transactions sustains about 3,000 transactions/s: the
                 # 10,000/s Digest step (20,000/s) needs 640,000. Kamailio's registrar answers statelessly.
                 "--set", "sip.max_transactions=1000000",
                 "--set", "log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, f"{name}.log"), "a"))
        time.sleep(2)
        for name, p in self.procs.items():
            if p.poll() is not None:
                sys.exit(f"{name} did not start; see {self.work}/{name}.log")

    def stop(self):
        stop(self.procs.values())
        self.procs = {}


def sipp(server, scenario, rate, calls, local_port, extra=(), timeout=None, background=False):
    stf = os.path.join(WORK, f"sipp-{server}-{local_port}-{time.monotonic_ns()}.csv")
    args = ["sipp", f"127.0.0.1:{PORTS[server]}", "-sf", os.path.join(BENCH, "sipp", scenario),
            "-i", "127.0.0.1", "-p", str(local_port), "-m", str(calls), "-nostdin",
            "-key", "domain", "localhost", "-trace_stat", "-stf", stf, "-fd", "3600"]
    if rate:
        args += ["-r", str(rate), "-rp", "1000", "-l", str(max(rate * 2, 100))]
    if SIPP_BUFFER:
        args += ["-buff_size", str(SIPP_BUFFER)]
    args += list(extra)
    limit = timeout or SECONDS * 4 + 20
    args += ["-timeout", str(limit)]
    if background:
        return subprocess.Popen(["timeout", str(limit + 5)] + args, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=WORK), stf
    subprocess.run(["timeout", str(limit + 5)] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=WORK)
    r = sipp_stats(stf)
    return r if r["ok"] >= 0 else {"ok": 0, "failed": -1, "retransmissions": 0}


def free_port():
    """A UDP port free on loopback now (SIPp binds it right after)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




def step(servers, server, load, rate):
    calls = rate * SECONDS
    extra = ["-inf", servers.users]
    if load == "message":
        extra += ["-key", "to_user", "sink"]
    pid = servers.procs[server].pid
    before = cpu(pid)
    t0 = time.monotonic()
    r = sipp(server, SCENARIO[load], rate, calls, free_port(), extra)
    wall = time.monotonic() - t0
    used = cpu(pid) - before
    r.update({"server": server, "load": load, "rate": rate, "calls": calls, "wall_s": round(wall, 2),
              "cpu_s": round(used, 3), "achieved": round(r["ok"] / wall, 1) if wall else 0,
              "cpu_us_per_call": round(used / r["ok"] * 1e6, 2) if r["ok"] else None,
              "cpu_us_per_transaction": round(used / r["ok"] / TRANSACTIONS_PER_CALL[load] * 1e6, 2)
              if r["ok"] else None})
    # Clean: every call succeeded and the rate was kept (SIPp paces calls; a server that answers late
    # makes the run last longer).
    r["clean"] = r["failed"] == 0 and r["ok"] == calls and r["achieved"] >= 0.95 * rate
    return r


def register_sink(server):
    """Registers user `sink` at the sink UAS's port (no authentication: the MESSAGE load runs without)."""
    port = SINK_PORT[server]
    subprocess.run(["timeout", "20", "sipp", f"127.0.0.1:{PORTS[server]}", "-sf",
                    os.path.join(BENCH, "sipp", "register-sink.xml"), "-m", "1", "-i", "127.0.0.1", "-p",
                    str(port + 100), "-nostdin", "-s", "sink", "-key", "domain", "localhost", "-key", "contact_port",
                    str(port), "-timeout", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=WORK,
                   check=True)


def main():
    global WORK
    install(["kamailio", "sip-tester"])
    build("vienna")
    WORK = tempfile.mkdtemp(prefix="vienna-sip-bench-")
    servers = Servers(WORK)
    results = []
    try:
        for load in LOADS:
            servers.start(auth=(load == "register-digest"))
            sinks = []
            if load == "message":
                for server in PORTS:
                    total = sum(RATES) * SECONDS + 10
                    p, _ = sipp(server, "message-sink.xml", 0, total, SINK_PORT[server],
                                timeout=len(RATES) * (SECONDS * 4 + 30), background=True)
                    sinks.append(p)
                    time.sleep(0.5)
                    register_sink(server)
            alive = {s: True for s in PORTS}
            for rate in RATES:
                for server in PORTS:
                    if not alive[server]:
                        continue
                    r = step(servers, server, load, rate)
                    results.append(r)
                    log(f"{load:16} {server:8} {rate:6}/s: ok {r['ok']}/{r['calls']} failed {r['failed']} "
                        f"retrans {r['retransmissions']} achieved {r['achieved']}/s cpu {r['cpu_s']} s "
                        f"({r['cpu_us_per_call']} us/call)")
                    alive[server] = r["clean"]
                    time.sleep(1)
                if not any(alive.values()):
                    break
            for p in sinks:
                p.terminate()
    finally:
        servers.stop()
    report(results)
    if os.environ.get("JSON"):
        with open(os.environ["JSON"], "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(WORK, ignore_errors=True)


def report(results):
    print(f"\nSIPp against {', '.join(PORTS)}, {SECONDS} s per step, {USERS} users; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| load | server | highest clean rate (calls/s) | CPU µs per call at that rate | first unclean step |")
    print("|---|---|---|---|---|")
    for load in LOADS:
        for server in PORTS:
            rows = [r for r in results if r["load"] == load and r["server"] == server]
            clean = [r for r in rows if r["clean"]]
            bad = [r for r in rows if not r["clean"]]
            best = max(clean, key=lambda r: r["rate"]) if clean else None
            first_bad = (f"{bad[0]['rate']}/s: {bad[0]['ok']} ok, {bad[0]['failed']} failed"
                         if bad else "none")
            print(f"| {load} | {server} | {best['rate'] if best else 0} | "
                  f"{best['cpu_us_per_call'] if best else '-'} | {first_bad} |")
    print("\nCPU µs per call at each rate (clean steps only):\n")
    print("| load | rate | " + " | ".join(PORTS) + " |")
    print("|---|---|" + "---|" * len(PORTS))
    for load in LOADS:
        for rate in RATES:
            row = {r["server"]: r["cpu_us_per_call"] for r in results
                   if r["load"] == load and r["rate"] == rate and r["clean"]}
            if row:
                print(f"| {load} | {rate} | " + " | ".join(str(row.get(s, "-")) for s in PORTS) + " |")

if __name__ == "__main__":
    main()
