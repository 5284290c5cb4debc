#!/usr/bin/env python3
"""vienna-load sip against Kamailio 5.6 and Vienna side by side, and vienna-load against SIPp as load generators.

Part 1, servers: both run at once on different UDP ports: Kamailio with usrloc in memory (2 children,
bench/kamailio/load-presence.cfg; -A WITH_AUTH challenges REGISTER with Digest MD5, passwords pw-USER) and
Vienna as shipped (SQLite, bindings durable before the 200 OK). At each rate step (RATES) vienna-load loads one
server and then the other, with --pid on the server, so the server's CPU per transaction comes from /proc.
A step is clean when every operation succeeded (no failure, none unfinished, none not started); a server's
ladder stops at its first unclean step.

Part 2, load generators: at the same rates vienna-load and SIPp (sip-tester) each load Kamailio with the same
scenario (REGISTER plain, REGISTER with a Digest challenge answered in every operation, MESSAGE to a registered
callee); the CPU each load generator used (user + system, from wait4's rusage, process start to exit) is divided
by the transactions it completed. For MESSAGE, SIPp needs two processes (the sender and the registered sink
that answers 200) and their CPU is added; vienna-load is both in one process. vienna-load runs with fixed local
ports (--local-port, so the users' bindings are refreshed, not added, from step to step: Kamailio returns every
binding in the 200 OK) and --t4-ms 0 (SIPp keeps no finished transaction either).

Loads (USERS users user0..; Kamailio needs no accounts, Vienna gets them):
- register: REGISTER without authentication (Vienna with sip.authenticate=false), 1 transaction per operation;
- register-digest: REGISTER, 401, REGISTER with Digest MD5, 200 (2 transactions per operation);
- message: every user registers, then MESSAGE from user to user, answered 200 by vienna-load's own callee UAs,
  no authentication on either server (1 proxied transaction per operation; Vienna: sip.authenticate=false).

Every run is bounded (--duration and --count for vienna-load, -m and -timeout for SIPp, a timeout around each);
the servers stop when the script ends. Usage: python3 bench/sipload-vs-kamailio.py (installs kamailio and
sip-tester if missing; builds Vienna and vienna-load in release). Environment: RATES ("1000,2000,5000,10000"),
STEP_SECS (5), USERS (1000), LOADS ("register,register-digest,message"), PARTS ("servers,generators"),
BASE_PORT (25500), JSON (path of a JSON result file, optional).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, VIENNA, VIENNA_LOAD, build, install, log, sipp_stats, stop

BENCH = os.path.join(ROOT, "bench")
RATES = [int(x) for x in os.environ.get("RATES", "1000,2000,5000,10000").split(",")]
STEP_SECS = int(os.environ.get("STEP_SECS", "5"))
USERS = int(os.environ.get("USERS", "1000"))
LOADS = os.environ.get("LOADS", "register,register-digest,message").split(",")
PARTS = os.environ.get("PARTS", "servers,generators").split(",")
# Servers on BASE and BASE+100, vienna-load's sockets at +2000, SIPp's at BASE+1400.. (other benchmarks on
# this machine use 5060-7000).
BASE = int(os.environ.get("BASE_PORT", "25500"))
PORTS = {"kamailio": BASE, "vienna": BASE + 100}
SIPP_PORT = BASE + 1400
TX_PER_OP = {"register": 1, "register-digest": 2, "message": 1}
VL = VIENNA_LOAD

SIPP_SCENARIOS = {"register": "register-noauth.xml", "register-digest": "register-digest.xml",
                  "message": "message-uac.xml"}






def timed(args, limit, cwd):
    """Runs args under `timeout`; returns (returncode, cpu seconds of the whole tree, wall seconds, stdout).
    Standard error goes to cwd/last-stderr.txt."""
    t0 = time.monotonic()
    err = open(os.path.join(cwd, "last-stderr.txt"), "w")
    p = subprocess.Popen(["timeout", str(limit)] + args, stdout=subprocess.PIPE, stderr=err, cwd=cwd)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_utime + ru.ru_stime, time.monotonic() - t0, out


class Servers:
    def __init__(self, work):
        self.work = work
        self.procs = {}
        self.data = os.path.join(work, "vienna-data")
        self.vienna = "servers" in PARTS
        if not self.vienna:
            return
        log(f"creating {USERS} Vienna accounts")
        for i in range(USERS):
            subprocess.run([VIENNA, "user", "add", f"user{i}", "--password-stdin", "--data-dir", self.data],
                           input=f"pw-user{i}\n", text=True, check=True, capture_output=True)

    def start(self, auth):
        self.stop()
        db = os.path.join(self.work, "kamailio-db")
        shutil.rmtree(db, ignore_errors=True)
        shutil.copytree("/usr/share/kamailio/dbtext/kamailio", db)
        with open(os.path.join(BENCH, "kamailio", "load-presence.cfg")) as f:
            cfg = f.read().replace("BENCH_PORT", str(PORTS["kamailio"])).replace("DBDIR", db)
        kcfg = os.path.join(self.work, "kamailio.cfg")
        with open(kcfg, "w") as f:
            f.write(cfg)
        run_dir = os.path.join(self.work, "kamailio-run")
        os.makedirs(run_dir, exist_ok=True)
        args = ["kamailio", "-f", kcfg, "-DD", "-E", "-m", "256", "-Y", run_dir]
        if auth:
            args += ["-A", "WITH_AUTH"]
        self.procs["kamailio"] = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                                  stderr=open(os.path.join(self.work, "kamailio.log"), "a"))
        if not self.vienna:
            time.sleep(2)
            return
        self.procs["vienna"] = subprocess.Popen(
            [VIENNA, "serve", "--data-dir", self.data,
             "--set", f"sip.udp_port={PORTS['vienna']}", "--set", "sip.tcp=false", "--set", "sip.tls=false",
             "--set", "turn.enabled=false", "--set", "admin.listen=127.0.0.1:0",
             "--set", 'sip.digest_algorithms=["MD5"]', "--set", f"sip.authenticate={'true' if auth else 'false'}",
             "--set", "log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "vienna.log"), "a"))
        time.sleep(2)
        for name, p in self.procs.items():
            if p.poll() is not None:
                sys.exit(f"{name} did not start; see {self.work}/{name}.log")

    def stop(self):
        stop(self.procs.values())
        self.procs = {}


def vienna_load(server, load, rate, pid, work):
    out = os.path.join(work, f"vl-{server}-{load}-{rate}.json")
    scenario = "message" if load == "message" else "register"
    args = [VL, "sip", "--target", f"127.0.0.1:{PORTS[server]}", "--users", str(USERS), "--scenario", scenario,
            "--rate", str(rate), "--duration", str(STEP_SECS), "--algorithm", "md5", "--json", out,
            "--local-port", str(PORTS[server] + 2000), "--t4-ms", "0"]
    if load == "register-digest":
        args += ["--auth", "challenge"]
    if pid:
        args += ["--pid", str(pid)]
    code, cpu, wall, _ = timed(args, STEP_SECS * 4 + 90, work)
    try:
        with open(out) as f:
            j = json.load(f)
    except (OSError, ValueError):
        return {"ok": 0, "failed": -1, "clean": False, "loader_cpu_s": cpu}
    o = j["operations"]
    tx = j["messages"]["transactions"]
    sp = j.get("server_process") or {}
    r = {"tool": "vienna-load", "server": server, "load": load, "rate": rate, "ok": o["ok"], "failed": o["failed"],
         "unfinished": o["unfinished"], "not_started": o["not_started"], "achieved": j["achieved_rate"],
         "transactions": tx, "retransmissions": j["messages"]["retransmissions"],
         "p50_us": j["latency_us"]["p50"], "p99_us": j["latency_us"]["p99"],
         "server_cpu_s": sp.get("cpu_secs"), "loader_cpu_s": round(cpu, 3), "wall_s": round(wall, 2)}
    done = o["ok"] * TX_PER_OP[load]
    r["server_cpu_us_per_tx"] = round(sp["cpu_secs"] / done * 1e6, 2) if sp and done else None
    r["loader_cpu_us_per_tx"] = round(cpu / done * 1e6, 2) if done else None
    r["clean"] = o["failed"] == 0 and o["unfinished"] == 0 and o["not_started"] == 0 and o["ok"] == rate * STEP_SECS
    return r






def sipp(load, rate, work, users_csv):
    scen = os.path.join(BENCH, "sipp", SIPP_SCENARIOS[load])
    calls = rate * STEP_SECS
    stf = os.path.join(work, f"sipp-{load}-{rate}.csv")
    limit = STEP_SECS * 4 + 20
    sink = None
    if load == "message":
        # The registered receiver: a second SIPp process, bounded by -m and -timeout.
        sink = subprocess.Popen(["sipp", f"127.0.0.1:{PORTS['kamailio']}", "-sf", os.path.join(BENCH, "sipp", "message-sink.xml"),
                                 "-i", "127.0.0.1", "-p", str(SIPP_PORT + 900), "-m", str(calls), "-nostdin",
                                 "-timeout", str(limit)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=work)
        time.sleep(0.5)
        subprocess.run(["timeout", "20", "sipp", f"127.0.0.1:{PORTS['kamailio']}", "-sf",
                        os.path.join(BENCH, "sipp", "register-sink.xml"), "-m", "1", "-i", "127.0.0.1",
                        "-p", str(SIPP_PORT + 901), "-nostdin", "-s", "sink", "-key", "domain", "localhost",
                        "-key", "contact_port",
                        str(SIPP_PORT + 900),
                        "-timeout", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    args = ["sipp", f"127.0.0.1:{PORTS['kamailio']}", "-sf", scen, "-inf", users_csv, "-i", "127.0.0.1",
            "-p", str(SIPP_PORT + rate % 800), "-m", str(calls), "-r", str(rate), "-rp", "1000",
            "-l", str(max(rate * 2, 100)), "-nostdin", "-key", "domain", "localhost", "-trace_stat", "-stf", stf,
            "-fd", "3600", "-timeout", str(limit)]
    if load == "message":
        args += ["-key", "to_user", "sink"]
    code, cpu, wall, _ = timed(args, limit + 10, work)
    if sipp_stats(stf)["ok"] <= 0:
        with open(os.path.join(work, "last-stderr.txt")) as f:
            log("sipp failed:", f.read()[-2000:])
    if sink is not None:
        time.sleep(0.5)
        # Not Popen.terminate: it polls first and may reap the process, losing its rusage.
        try:
            os.kill(sink.pid, 15)
        except ProcessLookupError:
            pass
        _, _, ru = os.wait4(sink.pid, 0)
        cpu += ru.ru_utime + ru.ru_stime
    st = sipp_stats(stf)
    ok, failed, retrans = st["ok"], st["failed"], st["retransmissions"]
    done = max(ok, 0) * TX_PER_OP[load]
    return {"tool": "sipp", "server": "kamailio", "load": load, "rate": rate, "ok": ok, "failed": failed,
            "retransmissions": retrans, "loader_cpu_s": round(cpu, 3), "wall_s": round(wall, 2),
            "achieved": round(ok / STEP_SECS, 1) if ok > 0 else 0,
            "loader_cpu_us_per_tx": round(cpu / done * 1e6, 2) if done else None,
            "clean": failed == 0 and ok == calls}


def main():
    install(["kamailio", "sip-tester"])
    build("vienna", "vienna-load")
    work = tempfile.mkdtemp(prefix="vienna-sipload-bench-")
    users_csv = os.path.join(work, "users.csv")
    with open(users_csv, "w") as f:
        # Field 2 is SIPp's authentication keyword (SIPp 3.6 does not expand fields nested in it).
        f.write("SEQUENTIAL\n" + "".join(
            f"user{i};pw-user{i};[authentication username=user{i} password=pw-user{i}]\n" for i in range(USERS)))
    servers = Servers(work)
    results = []
    try:
        for load in LOADS:
            servers.start(auth=(load == "register-digest"))
            if "servers" in PARTS:
                alive = {s: True for s in PORTS}
                for rate in RATES:
                    for server in PORTS:
                        if not alive[server]:
                            continue
                        r = vienna_load(server, load, rate, servers.procs[server].pid, work)
                        results.append(r)
                        log(f"{load:16} {server:8} {rate:6}/s: ok {r['ok']} failed {r['failed']} "
                            f"achieved {r.get('achieved')}/s server {r.get('server_cpu_us_per_tx')} us/tx "
                            f"loader {r.get('loader_cpu_us_per_tx')} us/tx")
                        alive[server] = r["clean"]
                        time.sleep(1)
            if "generators" in PARTS:
                for rate in RATES:
                    for tool in ("vienna-load", "sipp"):
                        if tool == "sipp":
                            r = sipp(load, rate, work, users_csv)
                        else:
                            r = vienna_load("kamailio", load, rate, None, work)
                            r["tool"] = "vienna-load/gen"
                        results.append(r)
                        log(f"{load:16} {tool:12} {rate:6}/s: ok {r['ok']} failed {r['failed']} "
                            f"loader {r['loader_cpu_s']} s = {r.get('loader_cpu_us_per_tx')} us/tx")
                        time.sleep(1)
    finally:
        servers.stop()
    report(results)
    if os.environ.get("JSON"):
        with open(os.environ["JSON"], "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)


def report(results):
    print(f"\nvienna-load sip against Kamailio and Vienna, {STEP_SECS} s per step, {USERS} users; "
          f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
    print("| load | rate/s | server | ok | failed | achieved/s | p50 µs | p99 µs | server CPU µs/tx |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["tool"] == "vienna-load":
            print(f"| {r['load']} | {r['rate']} | {r['server']} | {r['ok']} | {r['failed']} | {r.get('achieved')} | "
                  f"{r.get('p50_us')} | {r.get('p99_us')} | {r.get('server_cpu_us_per_tx')} |")
    print("\nLoad generator CPU per completed transaction, same load against Kamailio (MESSAGE: SIPp sender + sink):\n")
    print("| load | rate/s | vienna-load ok | vienna-load CPU µs/tx | SIPp ok | SIPp CPU µs/tx | SIPp / vienna-load |")
    print("|---|---|---|---|---|---|---|")
    for load in LOADS:
        for rate in RATES:
            v = [r for r in results if r["tool"] == "vienna-load/gen" and r["load"] == load and r["rate"] == rate]
            s = [r for r in results if r["tool"] == "sipp" and r["load"] == load and r["rate"] == rate]
            if v and s:
                v, s = v[0], s[0]
                ratio = (f"{s['loader_cpu_us_per_tx'] / v['loader_cpu_us_per_tx']:.2f}"
                         if v.get("loader_cpu_us_per_tx") and s.get("loader_cpu_us_per_tx") else "-")
                print(f"| {load} | {rate} | {v['ok']} | {v.get('loader_cpu_us_per_tx')} | {s['ok']} | "
                      f"{s.get('loader_cpu_us_per_tx')} | {ratio} |")


if __name__ == "__main__":
    main()
