"""What the benches share: errors, logging, mount inspection, percentiles, machine facts."""
import datetime
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "fleetfs")


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def mount_fstype(path):
    """fstype of the mount whose mountpoint is exactly path (the top one), or None."""
    path = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[4].encode().decode("unicode_escape") == path:
                found = parts[sep + 1]
    return found


def pct(sorted_vals, q):
    """Nearest-rank percentile."""
    k = max(0, min(len(sorted_vals) - 1, int(round(q / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def out(cmd):
    """stdout+stderr of a command run in the repository, or '?'."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        return (p.stdout + p.stderr).strip()
    except OSError:
        return "?"


def machine_info():
    """Facts every report carries: date, cpus, memory, kernel, commit, version, load."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    commit = out(["git", "rev-parse", "--short", "HEAD"]) or "?"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                            "fs", "core", "cache", "backends", "Makefile"],
                           capture_output=True, text=True, cwd=REPO).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem": mem,
        "kernel": out(["uname", "-r"]),
        "uname": out(["uname", "-srvm"]),
        "commit": commit + (" (with uncommitted changes to the C sources)" if dirty else ""),
        "version": out([BIN, "-V"]).splitlines()[0] if os.path.exists(BIN) else "?",
        "python": sys.version.split()[0],
        "load": loadavg(),
    }
