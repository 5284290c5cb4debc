#!/usr/bin/env python3
"""Vienna's TURN relay against coturn, side by side on one machine, under the same load from vienna-load.

Both servers run at once with one relay thread each (coturn --relay-threads=1, Vienna turn.workers=1) on
different ports; the load goes to one, then the other, alternately, so drift in the machine hits both.

1. CPU per relayed datagram: ROUNDS rounds each at a fixed ChannelData load (CLIENTS clients x RATE pps,
   172-byte payload, built-in echo peer): server CPU (utime + stime from /proc) divided by the datagrams the
   relay forwarded (client->peer plus peer->client), median and range over the rounds.
2. Highest rate under 0.1 % loss: the aggregate rate rises step by step (SWEEP_CLIENTS clients) until a run
   loses 0.1 % or more; the last clean step is reported.
3. Memory per allocation: the server's RSS before, and while vienna-load holds HOLD allocations (each with
   a permission and a channel), divided by HOLD.
4. Load generators: coturn's own turnutils_uclient (with turnutils_peer as the echo peer) and vienna-load
   push the same relay (Vienna, pinned to CPU 0; the generators pinned to CPU 1) as hard as they can with
   GEN_CLIENTS clients: uclient flat out (-z 0, GEN_MESSAGES messages per client), vienna-load at rising
   rates (GEN_RATES, 5 s each). Reported: the relayed rate each reached (loopback packets / 2 for uclient,
   whose own timing is coarse; vienna-load's own count), its loss, and the generator's CPU (peer included)
   per relayed datagram.

Relay port ranges sit below the kernel's ephemeral range (32768-60999), so the load tool's 10k client
sockets cannot take a relay port. Every run is bounded (vienna-load --duration, plus a timeout); the
servers stop when the script ends.
Usage: python3 bench/turn-vs-coturn.py   (after `bash tools/install-deps.sh`; builds Vienna in release)
Environment: ROUNDS (6), CLIENTS (200), RATE (100), SECONDS (8), SWEEP ("20000,30000,..."), SWEEP_CLIENTS (20),
HOLD (10000), GEN_CLIENTS (50), GEN_MESSAGES (10000), GEN_RATES ("50000,80000,110000,140000"),
SECTIONS ("cpu,sweep,memory,generators": which parts to run), PIN (0; 1: the CPU section pins the servers to CPU 0
and vienna-load to CPU 1), TRANSPORT (udp; tcp or tls: the CPU section's clients connect over TCP or TLS).
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import TICKS, VIENNA, VIENNA_LOAD, build, cpu_seconds, cpu_split, log, rss_bytes, stop

ROUNDS = int(os.environ.get("ROUNDS", "6"))
CLIENTS = int(os.environ.get("CLIENTS", "200"))
RATE = int(os.environ.get("RATE", "100"))
SECONDS = int(os.environ.get("SECONDS", "8"))
SWEEP = [int(x) for x in os.environ.get("SWEEP", "20000,30000,40000,50000,60000,70000,80000,100000").split(",")]
SWEEP_CLIENTS = int(os.environ.get("SWEEP_CLIENTS", "20"))
HOLD = int(os.environ.get("HOLD", "10000"))
GEN_CLIENTS = int(os.environ.get("GEN_CLIENTS", "50"))
GEN_MESSAGES = int(os.environ.get("GEN_MESSAGES", "10000"))
GEN_RATES = [int(x) for x in os.environ.get("GEN_RATES", "50000,80000,110000,140000").split(",")]
SECTIONS = os.environ.get("SECTIONS", "cpu,sweep,memory,generators").split(",")
# PIN=1: in the CPU section each server runs on CPU 0 and vienna-load on CPU 1, as a relay and its clients
# on different machines would; unpinned (PIN=0), the scheduler puts them where it likes, and a server
# sharing a core with the generator pays for switching to and from it.
PIN = os.environ.get("PIN", "0") == "1"
# TRANSPORT: how vienna-load's clients reach the servers in the CPU section: udp, tcp (one connection per
# client, RFC 8656 §10.1) or tls (both servers with the same self-signed P-256 certificate).
TRANSPORT = os.environ.get("TRANSPORT", "udp")
if TRANSPORT not in ("udp", "tcp", "tls"):
    sys.exit("TRANSPORT must be udp, tcp or tls")
PEER_PORT = 3580
PORTS = {"coturn": 3578, "vienna": 3678}
# TURN over TCP listens on the UDP port number; TLS one above.
TLS_PORTS = {"coturn": 3579, "vienna": 3679}
# The certificate both servers present (set by main).
CERT = None


def certificate(work):
    """A self-signed P-256 certificate for localhost and 127.0.0.1, for both servers' TLS listeners."""
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:FALSE", "-days", "2",
                    "-keyout", key, "-out", cert], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def start_servers(work):
    cert, key = certificate(work)
    conf = os.path.join(work, "turnserver.conf")
    with open(conf, "w") as f:
        f.write(
            f"""listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port={PORTS['coturn']}
min-port=10000
max-port=20999
tls-listening-port={TLS_PORTS['coturn']}
cert={cert}
pkey={key}
lt-cred-mech
user=alice:secret
realm=localhost
no-dtls
no-cli
allow-loopback-peers
userdb={work}/turndb.sqlite
pidfile={work}/turnserver.pid
log-file={work}/turn.log
simple-log
no-stdout-log
"""
        )
    coturn = subprocess.Popen(["turnserver", "-c", conf, "--relay-threads=1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    vienna_bin = VIENNA
    data = os.path.join(work, "vienna")
    subprocess.run([vienna_bin, "user", "add", "alice", "--password-stdin", "--data-dir", data], input=b"secret\n",
                   check=True, stdout=subprocess.DEVNULL)
    vienna = subprocess.Popen(
        [vienna_bin, "serve", "--data-dir", data, "--set", "admin.enabled=false", "--set", "sip.enabled=false",
         "--set", "turn.workers=1",
         "--set", f"turn.udp_port={PORTS['vienna']}", "--set", f"turn.tcp_port={PORTS['vienna']}",
         "--set", f"turn.tls_port={TLS_PORTS['vienna']}", "--set", "turn.ms_tcp=false",
         "--set", f"tls.certificate={cert}", "--set", f"tls.private_key={key}",
         "--set", "turn.min_port=21000", "--set", "turn.max_port=31999", "--set", "turn.user_quota=0",
         "--set", 'turn.allowed_peers=["127.0.0.0/8"]', "--set", "log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vienna.log"), "w"))
    time.sleep(2)
    for name, p in (("coturn", coturn), ("vienna", vienna)):
        if p.poll() is not None:
            sys.exit(f"{name} did not start")
    return {"coturn": coturn, "vienna": vienna}, cert


def load(server, extra, seconds, prefix=(), transport="udp"):
    """Runs vienna-load against `server` (behind `prefix`, e.g. taskset) over `transport`; returns its JSON
    report."""
    out = os.path.join(tempfile.gettempdir(), f"vienna-load-{os.getpid()}.json")
    port = TLS_PORTS[server] if transport == "tls" else PORTS[server]
    stream = ["--transport", transport] + (["--tls-ca", CERT] if transport == "tls" else [])
    cmd = list(prefix) + [VIENNA_LOAD, "turn", "--server", f"127.0.0.1:{port}",
           "--user", "alice", "--password", "secret", "--duration", str(seconds), "--json", out] + stream + extra
    if os.path.exists(out):
        os.unlink(out)
    run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=seconds + 180)
    if not os.path.exists(out):
        sys.exit(f"vienna-load against {server} wrote no report (exit {run.returncode}): {run.stderr.strip()[-2000:]}")
    with open(out) as f:
        return json.load(f)


def relayed(report):
    return report["sent"] + report["received"]


def children_cpu():
    """CPU seconds of this script's waited-for children (cutime + cstime)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / TICKS


def lo_packets():
    with open("/sys/class/net/lo/statistics/rx_packets") as f:
        return int(f.read())


def uclient_run(server):
    """turnutils_uclient flat out against `server` with turnutils_peer echoing, both on CPU 1."""
    peer = subprocess.Popen(["taskset", "-c", "1", "turnutils_peer", "-L", "127.0.0.1", "-p", str(PEER_PORT)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    lo_before, start, children_before = lo_packets(), time.time(), children_cpu()
    client = subprocess.Popen(
        ["taskset", "-c", "1", "turnutils_uclient", "-u", "alice", "-w", "secret", "-c", "-m", str(GEN_CLIENTS),
         "-z", "0", "-n", str(GEN_MESSAGES), "-l", "172", "-e", "127.0.0.1", "-r", str(PEER_PORT),
         "-p", str(PORTS[server]), "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Relayed datagrams per second, sampled each second: every echoed message is 4 loopback packets
    # (client to relay, relay to peer and back), 2 relayed datagrams.
    samples, last, peer_cpu = [], lo_packets(), 0.0
    deadline = time.time() + 300
    while client.poll() is None and time.time() < deadline:
        time.sleep(1)
        now = lo_packets()
        samples.append((now - last) / 2)
        last = now
        peer_cpu = cpu_seconds(peer.pid)
    if client.poll() is None:
        client.kill()
    output = client.communicate()[0]
    client_cpu = children_cpu() - children_before
    peer.terminate()
    peer.wait(timeout=10)
    # uclient's last progress line: "... tot_send_msgs=N, tot_recv_msgs=M, ..."
    sends = re.findall(r"tot_send_msgs=(\d+)", output)
    recvs = re.findall(r"tot_recv_msgs=(\d+)", output)
    sent, received = (int(sends[-1]) if sends else 0), (int(recvs[-1]) if recvs else 0)
    if not sends:
        log("uclient output:", "\n".join(output.splitlines()[-20:]))
    total_relayed = (lo_packets() - lo_before) / 2
    busy = sorted(samples, reverse=True)[:3]
    return {"seconds": round(time.time() - start, 1), "peak3_relayed_per_sec": statistics.mean(busy) if busy else 0,
            "sent": sent, "received": received, "relayed": total_relayed, "client_cpu": client_cpu,
            "peer_cpu": peer_cpu, "output_tail": output.splitlines()[-6:]}


def main():
    build("vienna", "vienna-load")
    if not shutil.which("turnserver"):
        sys.exit("coturn is missing: bash tools/install-deps.sh")
    work = tempfile.mkdtemp(prefix="turn-bench-")
    global CERT
    servers, CERT = start_servers(work)
    pids = {name: p.pid for name, p in servers.items()}
    try:
        if "cpu" in SECTIONS:
            cpu_section(pids)
        if "sweep" in SECTIONS:
            sweep_section()
        if "memory" in SECTIONS:
            memory_section(pids, work)
        if "generators" in SECTIONS:
            generators_section(pids)
    finally:
        stop(servers.values())
        shutil.rmtree(work, ignore_errors=True)


def cpu_section(pids):
    """1. CPU per relayed datagram, alternating; split into user and system (kernel) time, since the
    kernel's own work on each datagram (the receive, the send and, on loopback, the delivery into the
    receiving socket) is a floor that no relay's user-space code can lower."""
    per = {"coturn": [], "vienna": []}
    user = {"coturn": [], "vienna": []}
    system = {"coturn": [], "vienna": []}
    loss = {"coturn": [], "vienna": []}
    prefix = ("taskset", "-c", "1") if PIN else ()
    for name in pids:
        # coturn's threads all go: its listener and relay threads, as Vienna's.
        for task in os.listdir(f"/proc/{pids[name]}/task"):
            os.sched_setaffinity(int(task), {0} if PIN else set(range(os.cpu_count())))
    for r in range(ROUNDS):
        for name in ("coturn", "vienna") if r % 2 == 0 else ("vienna", "coturn"):
            u0, s0 = cpu_split(pids[name])
            rep = load(name, ["--clients", str(CLIENTS), "--rate", str(RATE)], SECONDS, prefix, TRANSPORT)
            u1, s1 = cpu_split(pids[name])
            n = max(relayed(rep), 1)
            user[name].append(1e6 * (u1 - u0) / n)
            system[name].append(1e6 * (s1 - s0) / n)
            per[name].append(user[name][-1] + system[name][-1])
            loss[name].append(rep["loss_percent"])
            log(f"round {r + 1} {name}: {per[name][-1]:.2f} us/datagram (user {user[name][-1]:.2f}, "
                f"system {system[name][-1]:.2f}), loss {rep['loss_percent']} %")
    pinning = "; servers on CPU 0, vienna-load on CPU 1" if PIN else ""
    if TRANSPORT != "udp":
        pinning += f"; clients over {TRANSPORT.upper()}"
    print(f"### CPU per relayed datagram ({ROUNDS} rounds each, alternating; {CLIENTS} clients x {RATE} pps "
          f"x {SECONDS} s, 172 B{pinning})\n")
    print("| server | median µs per relayed datagram | min | max | median user µs | median system µs | worst loss |")
    print("|---|---|---|---|---|---|---|")
    for name in ("coturn", "vienna"):
        print(f"| {name} | {statistics.median(per[name]):.2f} | {min(per[name]):.2f} | {max(per[name]):.2f} "
              f"| {statistics.median(user[name]):.2f} | {statistics.median(system[name]):.2f} "
              f"| {max(loss[name])} % |")
    coturn = statistics.median(per["coturn"])
    print(f"\nVienna / coturn CPU per datagram: {statistics.median(per['vienna']) / coturn:.2f}; "
          f"Vienna's system time alone / coturn's total: {statistics.median(system['vienna']) / coturn:.2f}\n")


def sweep_section():
    """2. Highest rate under 0.1 % loss."""
    print(f"### Highest relayed rate under 0.1 % loss ({SWEEP_CLIENTS} clients, 5 s per step)\n")
    print("| server | highest clean aggregate rate (pps sent) | relayed datagrams/s | first failing step |")
    print("|---|---|---|---|")
    for name in ("coturn", "vienna"):
        best, best_relayed, failing = None, None, "none reached"
        for total in SWEEP:
            rep = load(name, ["--clients", str(SWEEP_CLIENTS), "--rate", str(total / SWEEP_CLIENTS)], 5)
            log(f"sweep {name} {total} pps: loss {rep['loss_percent']} %, achieved {rep['achieved_rate_pps']}")
            # A step counts when the relay lost under 0.1 % and the generator really sent the rate.
            if rep["loss_percent"] < 0.1 and rep["send_dropped"] == 0 and rep["achieved_rate_pps"] >= 0.99 * total:
                best, best_relayed = rep["achieved_rate_pps"], rep["relayed_datagrams_per_sec"]
            else:
                failing = f"{total} pps: loss {rep['loss_percent']} %, achieved {rep['achieved_rate_pps']:.0f}"
                break
        print(f"| {name} | {best or 0:.0f} | {best_relayed or 0:.0f} | {failing} |")
    print()


def memory_section(pids, work):
    """3. Memory per allocation."""
    print(f"### Memory per allocation ({HOLD} allocations, each with a permission and a channel)\n")
    print("| server | allocations held | RSS idle (MiB) | RSS holding (MiB) | bytes per allocation |")
    print("|---|---|---|---|---|")
    for name in ("coturn", "vienna"):
        idle = rss_bytes(pids[name])
        holder = subprocess.Popen(
            [VIENNA_LOAD, "turn", "--server", f"127.0.0.1:{PORTS[name]}",
             "--user", "alice", "--password", "secret", "--clients", str(HOLD), "--hold", "--duration", "20",
             "--json", os.path.join(work, "hold.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Sample the peak while the allocations are held.
        peak = idle
        deadline = time.time() + 200
        while holder.poll() is None and time.time() < deadline:
            peak = max(peak, rss_bytes(pids[name]))
            time.sleep(0.5)
        holder.wait(timeout=60)
        with open(os.path.join(work, "hold.json")) as f:
            held = json.load(f)["allocations"]["ok"]
        per_alloc = (peak - idle) / max(held, 1)
        print(f"| {name} | {held} | {idle / 2**20:.1f} | {peak / 2**20:.1f} | {per_alloc:.0f} |")
    print()


def generators_section(pids):
    """4. turnutils_uclient and vienna-load against the same relay (Vienna on CPU 0, generators on CPU 1)."""
    if not shutil.which("turnutils_uclient"):
        log("turnutils_uclient missing: generators skipped")
        return
    os.sched_setaffinity(pids["vienna"], {0})
    print(f"### Load generators against Vienna's relay ({GEN_CLIENTS} clients, 172 B; relay on CPU 0, "
          f"generator and its echo peer on CPU 1)\n")
    print("| generator | load | relayed datagrams/s | loss | generator CPU (peer included) per relayed datagram |")
    print("|---|---|---|---|---|")
    u = uclient_run("vienna")
    log(f"uclient: {u}")
    loss = 100 * (1 - u["received"] / u["sent"]) if u["sent"] else float("nan")
    cpu = u["client_cpu"] + u["peer_cpu"]
    print(f"| turnutils_uclient + turnutils_peer | -z 0 -n {GEN_MESSAGES} (flat out), peak 3 s | "
          f"{u['peak3_relayed_per_sec']:.0f} | {loss:.2f} % | {1e6 * cpu / max(u['relayed'], 1):.2f} µs |")
    for total in GEN_RATES:
        rep = load("vienna", ["--clients", str(GEN_CLIENTS), "--rate", str(total / GEN_CLIENTS), "--threads", "1"], 5,
                   prefix=("taskset", "-c", "1"))
        log(f"vienna-load {total} pps: {rep['relayed_datagrams_per_sec']} relayed/s, loss {rep['loss_percent']} %")
        print(f"| vienna-load turn (built-in echo peer) | --rate {total / GEN_CLIENTS:.0f} x {GEN_CLIENTS} clients, 5 s | "
              f"{rep['relayed_datagrams_per_sec']:.0f} | {rep['loss_percent']} % | "
              f"{1e6 * rep['loader_cpu_secs'] / max(relayed(rep), 1):.2f} µs |")
    print()


if __name__ == "__main__":
    main()
