#!/usr/bin/env python3
"""Vienna's audio MCU side by side with Janus AudioBridge under the same generated traffic (loopback only).

For each server and each N: start the server pinned to CPU 0, join N plain-RTP Opus participants (the first
--talkers replay a tone, the others low noise, as in ../shared/research/janus-anchor.md), send 20 ms frames
from every participant for --warmup + --duration seconds from this process pinned to CPU 1, receive every
mix, and report the server's CPU (utime + stime from /proc over the measured window), the mix packet rate
each participant got, and the share of inter-arrival gaps over 40 ms. Every loop is bounded by time; the
servers are stopped by the pid this script started.

Needs: target/release/vienna (cargo build --release -p vienna), gst-launch-1.0 (to encode the Opus
payloads once), and for Janus the Debian package `janus` (apt-get install janus); a server that is not
there is skipped.

    python3 bench/mcu-vs-janus.py --n 50,100 --talkers 3 --duration 20 [--json out.json]
"""
import argparse, json, os, random, select, shutil, socket, struct, subprocess, sys, tempfile, time
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME = 0.020


def ogg_packets(path):
    """Opus packets of an Ogg file, without the OpusHead/OpusTags headers."""
    data = open(path, "rb").read()
    pos, packets, cur = 0, [], b""
    while pos < len(data):
        if data[pos:pos + 4] != b"OggS":
            raise ValueError("not an Ogg page")
        nseg = data[pos + 26]
        lacing = data[pos + 27:pos + 27 + nseg]
        off = pos + 27 + nseg
        for l in lacing:
            cur += data[off:off + l]
            off += l
            if l < 255:
                packets.append(cur)
                cur = b""
        pos = off
    return [p for p in packets if not p.startswith(b"OpusHead") and not p.startswith(b"OpusTags")]


def encode_payloads(work):
    """A 440 Hz tone at -12 dBFS for talkers and pink noise at about -50 dBFS for the others, 20 ms Opus."""
    out = {}
    for name, src in (("talk", "wave=sine freq=440 volume=0.25"), ("noise", "wave=pink-noise volume=0.003")):
        path = os.path.join(work, name + ".opus")
        subprocess.run(
            ["gst-launch-1.0", "-q", "audiotestsrc"] + src.split() + ["num-buffers=250", "samplesperbuffer=960", "!",
             "audio/x-raw,rate=48000,channels=1", "!", "opusenc", "bitrate=32000", "frame-size=20", "audio-type=voice",
             "!", "oggmux", "!", "filesink", "location=" + path],
            check=True, timeout=60)
        out[name] = ogg_packets(path)
    return out


def http(url, body=None, ctype="application/json", timeout=30):
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def cpu_ticks(pid):
    s = open("/proc/%d/stat" % pid).read()
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Vienna:
    name = "vienna"

    def __init__(self, work):
        self.bin = os.path.join(ROOT, "target", "release", "vienna")
        self.work = work

    def available(self):
        return os.path.exists(self.bin)

    def start(self):
        self.port = free_tcp_port()
        data = tempfile.mkdtemp(dir=self.work)
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", self.bin, "--data-dir", data, "serve", "--set", "log.level=warn",
             "--set", "turn.enabled=false", "--set", "sip.enabled=false", "--set", "mcu.enabled=true",
             "--set", "mcu.workers=1", "--set", "admin.listen=127.0.0.1:%d" % self.port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                http("http://127.0.0.1:%d/healthz" % self.port, timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("vienna did not start")

    def join(self, i, rx_port, ssrc):
        offer = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                 "m=audio %d RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\na=ssrc:%d cname:p%d\r\n"
                 % (rx_port, ssrc, i))
        answer = http("http://127.0.0.1:%d/api/v1/mcu/conferences/bench/participants" % self.port, offer,
                      "application/sdp")
        port = int([l for l in answer.splitlines() if l.startswith("m=audio ")][0].split()[1])
        return ("127.0.0.1", port)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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
room-1234: {
	description = "bench"
	secret = "adminpwd"
	sampling_rate = 48000
	audiolevel_ext = false
	allow_rtp_participants = true
	record = false
}
""",
}


class Janus:
    name = "janus"

    def __init__(self, work):
        self.work = work

    def available(self):
        return shutil.which("janus") is not None

    def start(self):
        self.port = free_tcp_port()
        conf = tempfile.mkdtemp(dir=self.work)
        for name, text in JANUS_CONF.items():
            open(os.path.join(conf, name), "w").write(text % {"conf": conf, "port": self.port})
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", "janus", "-C", os.path.join(conf, "janus.jcfg"), "-F", conf, "-o", "-N",
             "-L", os.path.join(conf, "janus.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.api = "http://127.0.0.1:%d/janus" % self.port
        for _ in range(100):
            try:
                http(self.api + "/info", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("janus did not start")
        self.session = json.loads(http(self.api, {"janus": "create", "transaction": "s"}))["data"]["id"]

    def poll_events(self, handle, deadline):
        """Long-polls the session until `handle` has its joined event with the RTP port (bounded)."""
        while time.time() < deadline:
            evs = json.loads(http("%s/%d?maxev=10" % (self.api, self.session), timeout=40))
            for e in evs if isinstance(evs, list) else [evs]:
                self.events.setdefault(e.get("sender"), []).append(e)
            for e in self.events.get(handle, []):
                data = e.get("plugindata", {}).get("data", {})
                if data.get("audiobridge") == "joined" and "rtp" in data:
                    return (data["rtp"].get("ip", "127.0.0.1"), data["rtp"]["port"])
        raise RuntimeError("no joined event from janus")

    def join(self, i, rx_port, ssrc):
        self.events = getattr(self, "events", {})
        h = json.loads(http("%s/%d" % (self.api, self.session),
                            {"janus": "attach", "plugin": "janus.plugin.audiobridge", "transaction": "a%d" % i}))["data"]["id"]
        body = {"request": "join", "room": 1234, "display": "p%d" % i, "id": i + 1,
                "rtp": {"ip": "127.0.0.1", "port": rx_port, "payload_type": 111}}
        http("%s/%d/%d" % (self.api, self.session, h), {"janus": "message", "body": body, "transaction": "j%d" % i})
        return self.poll_events(h, time.time() + 30)

    def stop(self):
        try:
            http("%s/%d" % (self.api, self.session), {"janus": "destroy", "transaction": "d"})
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(server, n, talkers, payloads, warmup, duration):
    server.start()
    try:
        parts = []
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            ssrc = random.getrandbits(32)
            dest = server.join(i, s.getsockname()[1], ssrc)
            parts.append({"sock": s, "dest": dest, "ssrc": ssrc, "seq": random.getrandbits(16),
                          "ts": random.getrandbits(32), "k": random.randrange(250),
                          "pkts": payloads["talk"] if i < talkers else payloads["noise"], "rx": 0, "last": None})
        ep = select.epoll()
        fds = {}
        for p in parts:
            ep.register(p["sock"].fileno(), select.EPOLLIN)
            fds[p["sock"].fileno()] = p
        pack = struct.Struct("!BBHII").pack
        t0 = time.monotonic()
        t_meas, t_end = t0 + warmup, t0 + warmup + duration
        next_tick, measuring = t0, False
        gaps, long_gaps, late = 0, 0, 0
        buf = bytearray(2048)
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            if not measuring and now >= t_meas:
                measuring, cpu0, wall0 = True, cpu_ticks(server.proc.pid), now
                for p in parts:
                    p["rx"], p["last"] = 0, None
            if now >= next_tick:
                late += now - next_tick > 0.010
                for p in parts:
                    hdr = pack(0x80, 111, p["seq"] & 0xFFFF, p["ts"] & 0xFFFFFFFF, p["ssrc"])
                    try:
                        p["sock"].sendto(hdr + p["pkts"][p["k"] % len(p["pkts"])], p["dest"])
                    except BlockingIOError:
                        pass
                    p["seq"], p["ts"], p["k"] = p["seq"] + 1, p["ts"] + 960, p["k"] + 1
                next_tick += FRAME
                if next_tick < now - 0.2:
                    next_tick = now
            for fd, _ in ep.poll(max(0.0, min(next_tick, t_end) - time.monotonic())):
                p = fds[fd]
                t = time.monotonic()
                while True:
                    try:
                        p["sock"].recv_into(buf)
                    except BlockingIOError:
                        break
                    if measuring:
                        p["rx"] += 1
                if measuring:
                    if p["last"] is not None:
                        gaps += 1
                        long_gaps += t - p["last"] > 0.040
                    p["last"] = t
        wall = time.monotonic() - wall0
        cpu = (cpu_ticks(server.proc.pid) - cpu0) / HZ
        rates = sorted(p["rx"] / wall for p in parts)
        for p in parts:
            p["sock"].close()
        return {"server": server.name, "n": n, "talkers": min(talkers, n),
                "cpu_pct": round(100 * cpu / wall, 2), "cpu_pct_per_participant": round(100 * cpu / wall / n, 3),
                "mix_pps_mean": round(sum(rates) / n, 2), "mix_pps_min": round(rates[0], 2),
                "gaps_over_40ms_pct": round(100 * long_gaps / max(1, gaps), 3), "generator_late_ticks": late}
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="50,100")
    ap.add_argument("--talkers", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--servers", default="vienna,janus")
    ap.add_argument("--json")
    a = ap.parse_args()
    os.sched_setaffinity(0, {1})
    work = tempfile.mkdtemp(prefix="mcu-bench-")
    payloads = encode_payloads(work)
    servers = [s for s in (Vienna(work), Janus(work)) if s.name in a.servers.split(",")]
    results = []
    for n in [int(x) for x in a.n.split(",")]:
        for s in servers:
            if not s.available():
                print("skipping %s: not installed/built" % s.name, file=sys.stderr)
                continue
            r = run(s, n, a.talkers, payloads, a.warmup, a.duration)
            print(json.dumps(r), flush=True)
            results.append(r)
    if a.json:
        open(a.json, "w").write(json.dumps(results, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
