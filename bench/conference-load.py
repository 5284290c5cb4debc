#!/usr/bin/env python3
"""Vienna's audio MCU, and Janus AudioBridge beside it, under `vienna-load conference`: participants join
(Vienna: its admin API; Janus: its HTTP API, as plain-RTP participants), send Opus (or PCMU) with a tone each
at 50 packets/s, and check what they hear; the tool reports mouth-to-ear latency through the bridge (tone
onsets after each talker's gap), loss, jitter, the mix checks, and with --pid the server's CPU.

Shapes (each run RUNS times per server, a fresh server per run, alternating between the servers):
1. one conference, 3 talkers and the rest listeners, at each N of SIZES (participants in all);
2. CONFS conferences of 5 (2 talkers, 3 listeners each);
3. one conference of 50 in PCMU (Vienna only).
The server runs pinned to CPU 0 and vienna-load to CPU 1 (taskset), Vienna with one MCU worker
(mcu.workers=1), Janus 1.1.2 with the configuration of bench/mcu-vs-janus.py (48 kHz rooms created by
vienna-load). Every run is bounded (--duration, the drain time, a timeout around the tool); the servers stop
when the script ends (by the PIDs it started). Ports: Vienna admin 26464 and MCU media 26500; Janus HTTP 26088.

Usage: python3 bench/conference-load.py   (builds vienna and vienna-load in release unless NO_BUILD is set;
Janus, if installed: apt-get install janus)
Environment: SIZES ("10,50,200"), CONFS (20), RUNS (2), SECONDS (15), WARMUP (3), SERVERS ("vienna,janus"),
JSON (write all results).
"""

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [int(x) for x in os.environ.get("SIZES", "10,50,200").split(",")]
CONFS = int(os.environ.get("CONFS", "20"))
RUNS = int(os.environ.get("RUNS", "2"))
SECONDS = int(os.environ.get("SECONDS", "15"))
WARMUP = int(os.environ.get("WARMUP", "3"))
ADMIN = 26464
MEDIA = 26500
JANUS_HTTP = 26088
SERVERS = [x for x in os.environ.get("SERVERS", "vienna,janus").split(",") if x]
LOAD = os.path.join(ROOT, "target", "release", "vienna-load")
VIENNA = os.path.join(ROOT, "target", "release", "vienna")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def janus_conf():
    """The Janus configuration of bench/mcu-vs-janus.py (one source for both scripts)."""
    spec = importlib.util.spec_from_file_location("mcu_vs_janus", os.path.join(ROOT, "bench", "mcu-vs-janus.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.JANUS_CONF


def start_janus(work):
    conf = os.path.join(work, "janus")
    os.makedirs(conf, exist_ok=True)
    for name, text in janus_conf().items():
        with open(os.path.join(conf, name), "w") as f:
            f.write(text % {"conf": conf, "port": JANUS_HTTP})
    proc = subprocess.Popen(
        ["taskset", "-c", "0", "janus", "-C", os.path.join(conf, "janus.jcfg"), "-F", conf, "-o", "-N",
         "-L", os.path.join(conf, "janus.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    if proc.poll() is not None:
        sys.exit("janus did not start: see " + os.path.join(conf, "janus.log"))
    return proc


def start(work):
    data = os.path.join(work, "vienna")
    env = dict(os.environ)
    env.pop("VIENNA_CONFIG", None)
    proc = subprocess.Popen(
        ["taskset", "-c", "0", VIENNA, "serve", "--data-dir", data, "--set", "sip.enabled=false", "--set", "turn.enabled=false",
         "--set", f"admin.listen=127.0.0.1:{ADMIN}", "--set", "mcu.enabled=true", "--set", "mcu.workers=1",
         "--set", f"mcu.port={MEDIA}", "--set", "log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vienna.log"), "w"), env=env)
    time.sleep(2)
    if proc.poll() is not None:
        sys.exit("vienna did not start: see " + os.path.join(work, "vienna.log"))
    return proc


def load(server, pid, extra, out):
    target = ["--admin", f"127.0.0.1:{ADMIN}"] if server == "vienna" else \
        ["--join", "janus", "--admin", f"127.0.0.1:{JANUS_HTTP}"]
    cmd = ["timeout", str(SECONDS + 240), "taskset", "-c", "1", LOAD, "conference"] + target + \
          ["--duration", str(SECONDS), "--warmup", str(WARMUP), "--pid", str(pid), "--json", out] + extra
    log(" ".join(cmd[4:]))
    r = subprocess.run(cmd, capture_output=True, text=True)
    log(r.stdout.strip())
    if not os.path.exists(out):
        log(r.stderr)
        return None
    with open(out) as f:
        return json.load(f)


def main():
    if not os.environ.get("NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "vienna", "-p", "vienna-load"], cwd=ROOT,
                       check=True)
    shapes = [(f"1 conference, {n} participants (3 talkers), Opus", ["--participants", str(n)]) for n in SIZES]
    shapes.append((f"{CONFS} conferences of 5 (2 talkers each), Opus",
                   ["--participants", str(5 * CONFS), "--conferences", str(CONFS), "--talkers", "2"]))
    shapes.append(("1 conference, 50 participants (3 talkers), PCMU", ["--participants", "50", "--codec", "pcmu"]))
    servers = [x for x in SERVERS if x != "janus" or shutil.which("janus")]
    results = {(name, server): [] for name, _ in shapes for server in servers
               if not (server == "janus" and "PCMU" in name)}
    work = tempfile.mkdtemp(prefix="conference-bench-")
    try:
        for run in range(RUNS):
            for name, extra in shapes:
                order = servers if run % 2 == 0 else servers[::-1]
                for server in order:
                    if (name, server) not in results:
                        continue
                    sub = os.path.join(work, f"run-{run}-{server}")
                    shutil.rmtree(sub, ignore_errors=True)
                    os.makedirs(sub)
                    proc = start(sub) if server == "vienna" else start_janus(sub)
                    try:
                        before = os.getloadavg()[0]
                        r = load(server, proc.pid, extra, os.path.join(sub, "load.json"))
                        if r:
                            # The machine's 1-minute load average around the run (other work on it shows).
                            r["machine_load"] = [round(before, 2), round(os.getloadavg()[0], 2)]
                            results[(name, server)].append(r)
                    finally:
                        proc.terminate()
                        try:
                            proc.wait(timeout=20)
                        except subprocess.TimeoutExpired:
                            proc.kill()
        print(f"#### vienna-load conference ({RUNS} runs per shape and server, {SECONDS} s each, first {WARMUP} s "
              f"not checked)\n")
        print("| shape | server | server CPU (% of one core) | mix packets/s per participant | mouth-to-ear p50 / p99 (ms) |"
              " mix loss | jitter mean (ms) | seconds ok / checked / expected | onsets found / expected (rejected) |"
              " late sends | load generator CPU (% of one core) | machine load average |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for (name, server), runs in results.items():
            if not runs:
                print(f"| {name} | {server} | failed | | | | | | | | | |")
                continue
            cpu = [r["server_process"]["cpu_percent_mean"] for r in runs]
            p50 = statistics.median(r["latency_us"]["p50"] / 1000 for r in runs)
            p99 = max(r["latency_us"]["p99"] / 1000 for r in runs)
            loss = max(r["received"]["loss_percent"] for r in runs)
            jitter = statistics.median(r["jitter_us"]["mean"] / 1000 for r in runs)
            ok = sum(r["mix"]["seconds_ok"] for r in runs)
            checked = sum(r["mix"]["seconds"] for r in runs)
            found = sum(r["mix"]["onsets_found"] for r in runs)
            expected = sum(r["mix"]["onsets_expected"] for r in runs)
            rejected = sum(r["mix"]["onsets_rejected"] for r in runs)
            seconds_expected = sum(r["mix"]["seconds_expected"] for r in runs)
            pps = min(r["received"]["per_participant_pps"] for r in runs)
            late = sum(r["sent"]["late"] for r in runs)
            loader = statistics.median(100 * r["loader_cpu_secs"] / (SECONDS + 2) for r in runs)
            print(f"| {name} | {server} | {' and '.join(f'{c:.1f}' for c in cpu)} | {pps:.1f} | {p50:.1f} / {p99:.1f} | "
                  f"{loss} % | {jitter:.2f} | {ok} / {checked} / {seconds_expected} | {found} / {expected} ({rejected}) | "
                  f"{late} | {loader:.0f} | {max(max(r['machine_load']) for r in runs)} |")
        if os.environ.get("JSON"):
            with open(os.environ["JSON"], "w") as f:
                json.dump({f"{name} / {server}": runs for (name, server), runs in results.items()}, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
