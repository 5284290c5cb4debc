"""What every bench/ script shares: paths of the release binaries, logging, Debian packages and the
release build, CPU and memory of a server process (with its children) from /proc, and stopping what a
script started. Import it from a script in bench/ with `import benchlib`.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# VIENNA_BIN: another `vienna` binary to measure (an older build, for a before-and-after run; NO_BUILD too).
VIENNA = os.environ.get("VIENNA_BIN") or os.path.join(ROOT, "target", "release", "vienna")
VIENNA_LOAD = os.path.join(ROOT, "target", "release", "vienna-load")
TICKS = os.sysconf("SC_CLK_TCK")


def log(*args):
    """A progress line on standard error (standard output holds the tables)."""
    print(*args, file=sys.stderr, flush=True)


def install(packages):
    """Installs the Debian `packages` that are missing (apt-get; sudo when not root)."""
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout.find("install ok installed") < 0]
    if missing:
        log("installing", *missing)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, check=True,
                       env=env)


def build(*packages):
    """Builds the release binaries of the cargo `packages` (skipped with NO_BUILD set)."""
    if os.environ.get("NO_BUILD"):
        return
    log("building", *packages, "(release)")
    args = ["cargo", "build", "--release", "--locked"]
    for p in packages:
        args += ["-p", p]
    subprocess.run(args, cwd=ROOT, check=True)


def cpu_split(pid):
    """(user, system) CPU seconds of process `pid` ((0, 0) once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / TICKS, int(fields[12]) / TICKS
    except FileNotFoundError:
        return 0.0, 0.0


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` (0 once it is gone)."""
    return sum(cpu_split(pid))


def tree(pid):
    """`pid` and all its descendants (Kamailio forks its children)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_seconds(pid):
    """CPU seconds of `pid` and its descendants."""
    return sum(cpu_seconds(p) for p in tree(pid))


def rss_bytes(pid):
    """Resident memory of process `pid` (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def stop(procs):
    """Stops the processes (SIGTERM, then SIGKILL after 10 s)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def sipp_stats(stf):
    """Successful and failed calls and retransmissions from the last line of a SIPp `-trace_stat` file
    (-1 each when there is none)."""
    try:
        with open(stf) as f:
            rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
        head, last = rows[0], rows[-1]
        get = lambda name: int(last[head.index(name)])
        return {"ok": get("SuccessfulCall(C)"), "failed": get("FailedCall(C)"),
                "retransmissions": get("Retransmissions(C)")}
    except (OSError, IndexError, ValueError):
        return {"ok": -1, "failed": -1, "retransmissions": -1}
