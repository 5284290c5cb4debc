#!/usr/bin/env python3
"""Vienna's relay in its two dialects, side by side: RFC 8656 TURN (ChannelData) against MS-TURN (Send
requests with Data Indications back, and raw data after Set Active Destination), one relay process, the same
machine, the same load from vienna-load.

One `vienna serve` with one relay worker (turn.workers=1) serves both dialects on one UDP port. Each round runs
the three loads one after the other (the order rotates from round to round, so drift in the machine hits all
three), each CLIENTS clients x RATE pps x SECONDS s of 172-byte payloads to vienna-load's built-in echo peer:

1. `turn`: standard TURN with a store account (Allocate, CreatePermission, ChannelBind, ChannelData);
2. `msturn --data send`: MS-TURN with MRAS tokens minted from the relay's shared secret; every packet is a
   Send request whose MESSAGE-INTEGRITY the relay checks, echoes come back as Data Indications;
3. `msturn --data raw`: the same allocations, then Set Active Destination and bare payloads both ways.

Reported per load: server CPU (utime + stime from /proc) per relayed datagram (client->peer plus
peer->client), loss, round-trip latency p50/p99, and the load generator's own CPU per datagram; then memory
per allocation (RSS while HOLD allocations are held, minus before, on a freshly started relay) for `turn`
and `msturn --data raw`.
Every run is bounded (vienna-load --duration, plus a timeout); the server stops when the script ends (by the
PID it started). Ports: 26478 (TURN/MS-TURN UDP), relay ports 26100-31999 (below the kernel's ephemeral
range, so the load tool's client sockets cannot take them).

Usage: python3 bench/msturn-vs-turn.py   (builds vienna and vienna-load in release unless NO_BUILD is set)
Environment: ROUNDS (4), CLIENTS (200), RATE (100), SECONDS (8), HOLD (5000), JSON (write all results there).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import VIENNA, VIENNA_LOAD, build, cpu_seconds, log, rss_bytes

ROUNDS = int(os.environ.get("ROUNDS", "4"))
CLIENTS = int(os.environ.get("CLIENTS", "200"))
RATE = int(os.environ.get("RATE", "100"))
SECONDS = int(os.environ.get("SECONDS", "8"))
HOLD = int(os.environ.get("HOLD", "5000"))
PORT = 26478
SECRET = "msturn-bench shared secret, 32 bytes or more"
LOAD = VIENNA_LOAD
LOADS = {
    "turn ChannelData": ["turn", "--user", "alice", "--password", "secret"],
    "msturn Send / Data Indication": ["msturn", "--mras-secret", SECRET, "--data", "send"],
    "msturn raw (active destination)": ["msturn", "--mras-secret", SECRET, "--data", "raw"],
}








def start(work):
    data = os.path.join(work, "vienna")
    env = dict(os.environ)
    env.pop("VIENNA_CONFIG", None)
    subprocess.run([VIENNA, "user", "add", "alice", "--password-stdin", "--data-dir", data], input=b"secret\n",
                   check=True, stdout=subprocess.DEVNULL, env=env)
    proc = subprocess.Popen(
        [VIENNA, "serve", "--data-dir", data, "--set", "admin.enabled=false", "--set", "sip.enabled=false",
         "--set", "turn.workers=1", "--set", f"turn.udp_port={PORT}", "--set", "turn.tcp=false",
         "--set", "turn.tls=false", "--set", "turn.ms_tcp=false", "--set", "turn.min_port=26100",
         "--set", "turn.max_port=31999", "--set", "turn.user_quota=0", "--set", 'turn.allowed_peers=["127.0.0.0/8"]',
         "--set", f"mras.secret={SECRET}", "--set", "log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vienna.log"), "w"), env=env)
    time.sleep(2)
    if proc.poll() is not None:
        sys.exit("vienna did not start: see " + os.path.join(work, "vienna.log"))
    return proc


def load(args, extra, seconds, out):
    cmd = ["timeout", str(seconds + 180), LOAD] + args[:1] + ["--server", f"127.0.0.1:{PORT}"] + args[1:] + \
          ["--duration", str(seconds), "--json", out] + extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if not os.path.exists(out):
        log(r.stdout, r.stderr)
        sys.exit("vienna-load wrote no JSON: " + " ".join(cmd))
    with open(out) as f:
        return json.load(f)


def main():
    build("vienna", "vienna-load")
    work = tempfile.mkdtemp(prefix="msturn-bench-")
    proc = start(work)
    results = {name: [] for name in LOADS}
    try:
        names = list(LOADS)
        for r in range(ROUNDS):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                out = os.path.join(work, "run.json")
                before = cpu_seconds(proc.pid)
                rep = load(LOADS[name], ["--clients", str(CLIENTS), "--rate", str(RATE)], SECONDS, out)
                used = cpu_seconds(proc.pid) - before
                relayed = rep["sent"] + rep["received"]
                row = {
                    "server_us": 1e6 * used / max(relayed, 1),
                    "loader_us": 1e6 * rep["loader_cpu_secs"] / max(relayed, 1),
                    "loss": rep["loss_percent"],
                    "p50": rep["latency_us"]["p50"],
                    "p99": rep["latency_us"]["p99"],
                    "achieved": rep["achieved_rate_pps"],
                    "allocations_failed": rep["allocations"]["failed"],
                }
                results[name].append(row)
                log(f"round {r + 1} {name}: {row['server_us']:.2f} us/datagram, loss {row['loss']} %, "
                    f"p50 {row['p50']} us, p99 {row['p99']} us, achieved {row['achieved']} pps")
        print(f"#### {CLIENTS} clients x {RATE} pps x {SECONDS} s, 172 B payload ({ROUNDS} rounds, order rotating)\n")
        print("| load | server µs per relayed datagram (median) | min | max | worst loss | RTT p50 (µs, median) |"
              " RTT p99 (µs, worst) | load generator µs per datagram |")
        print("|---|---|---|---|---|---|---|---|")
        for name, rows in results.items():
            us = [x["server_us"] for x in rows]
            print(f"| {name} | {statistics.median(us):.2f} | {min(us):.2f} | {max(us):.2f} | "
                  f"{max(x['loss'] for x in rows)} % | {statistics.median(x['p50'] for x in rows):.0f} | "
                  f"{max(x['p99'] for x in rows)} | {statistics.median(x['loader_us'] for x in rows):.2f} |")
        print(f"\n#### Memory per allocation ({HOLD} allocations held)\n")
        print("| load | allocations held | RSS idle (MiB) | RSS holding (MiB) | bytes per allocation |")
        print("|---|---|---|---|---|")
        memory = {}
        for name in ("turn ChannelData", "msturn raw (active destination)"):
            # A fresh relay for each: freed allocations stay in the allocator's pools.
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(os.path.join(work, "vienna"), ignore_errors=True)
            proc = start(work)
            out = os.path.join(work, "hold.json")
            idle = rss_bytes(proc.pid)
            cmd = [LOAD] + LOADS[name][:1] + ["--server", f"127.0.0.1:{PORT}"] + LOADS[name][1:] + \
                  ["--clients", str(HOLD), "--hold", "--duration", "15", "--json", out]
            holder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            peak = idle
            deadline = time.time() + 200
            while holder.poll() is None and time.time() < deadline:
                peak = max(peak, rss_bytes(proc.pid))
                time.sleep(0.5)
            holder.wait(timeout=60)
            with open(out) as f:
                held = json.load(f)["allocations"]["ok"]
            per = (peak - idle) / max(held, 1)
            memory[name] = {"held": held, "idle": idle, "peak": peak, "per_allocation": per}
            print(f"| {name} | {held} | {idle / 2**20:.1f} | {peak / 2**20:.1f} | {per:.0f} |")
            time.sleep(2)
        if os.environ.get("JSON"):
            with open(os.environ["JSON"], "w") as f:
                json.dump({"runs": results, "memory": memory}, f, indent=2)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
