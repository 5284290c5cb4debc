#!/usr/bin/env python3
"""Vienna's audio MCU under `vienna-load conference`: participants join through the admin API, send Opus (or
PCMU) with a tone each at 50 packets/s, and check what they hear; the tool reports mouth-to-ear latency
through the bridge (tone onsets after each talker's gap), loss, jitter, the mix checks, and with --pid the
server's CPU.

Shapes (each run RUNS times, a fresh server per run, one MCU worker: mcu.workers=1):
1. one conference, 3 talkers and the rest listeners, at each N of SIZES (participants in all);
2. CONFS conferences of 5 (2 talkers, 3 listeners each);
3. one conference of 50 in PCMU.
Every run is bounded (--duration, the drain time, a timeout around the tool); the server stops when the
script ends (by the PID it started). Ports: admin 26464, MCU media 26500.

Usage: python3 bench/conference-load.py   (builds vienna and vienna-load in release unless NO_BUILD is set)
Environment: SIZES ("10,50,200"), CONFS (20), RUNS (2), SECONDS (15), WARMUP (3), JSON (write all results).
"""

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
LOAD = os.path.join(ROOT, "target", "release", "vienna-load")
VIENNA = os.path.join(ROOT, "target", "release", "vienna")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def start(work):
    data = os.path.join(work, "vienna")
    env = dict(os.environ)
    env.pop("VIENNA_CONFIG", None)
    proc = subprocess.Popen(
        [VIENNA, "serve", "--data-dir", data, "--set", "sip.enabled=false", "--set", "turn.enabled=false",
         "--set", f"admin.listen=127.0.0.1:{ADMIN}", "--set", "mcu.enabled=true", "--set", "mcu.workers=1",
         "--set", f"mcu.port={MEDIA}", "--set", "log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vienna.log"), "w"), env=env)
    time.sleep(2)
    if proc.poll() is not None:
        sys.exit("vienna did not start: see " + os.path.join(work, "vienna.log"))
    return proc


def load(pid, extra, out):
    cmd = ["timeout", str(SECONDS + 240), LOAD, "conference", "--admin", f"127.0.0.1:{ADMIN}",
           "--duration", str(SECONDS), "--warmup", str(WARMUP), "--pid", str(pid), "--json", out] + extra
    log(" ".join(cmd[2:]))
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
    results = {name: [] for name, _ in shapes}
    work = tempfile.mkdtemp(prefix="conference-bench-")
    try:
        for run in range(RUNS):
            for name, extra in shapes:
                sub = os.path.join(work, f"run-{run}")
                shutil.rmtree(sub, ignore_errors=True)
                os.makedirs(sub)
                proc = start(sub)
                try:
                    r = load(proc.pid, extra, os.path.join(sub, "load.json"))
                    if r:
                        results[name].append(r)
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        print(f"#### vienna-load conference against Vienna's MCU ({RUNS} runs per shape, {SECONDS} s each, "
              f"first {WARMUP} s not checked)\n")
        print("| shape | server CPU (% of one core) | mouth-to-ear p50 / p99 (ms) | mix loss | jitter mean (ms) |"
              " seconds ok / checked | onsets found / expected | load generator CPU (% of one core) |")
        print("|---|---|---|---|---|---|---|---|")
        for name, runs in results.items():
            if not runs:
                print(f"| {name} | failed | | | | | | |")
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
            loader = statistics.median(100 * r["loader_cpu_secs"] / (SECONDS + 2) for r in runs)
            print(f"| {name} | {' and '.join(f'{c:.1f}' for c in cpu)} | {p50:.1f} / {p99:.1f} | {loss} % | "
                  f"{jitter:.2f} | {ok} / {checked} | {found} / {expected} | {loader:.0f} |")
        if os.environ.get("JSON"):
            with open(os.environ["JSON"], "w") as f:
                json.dump(results, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
