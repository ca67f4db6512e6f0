"""What the benches share: errors, logging, mount inspection, percentiles, machine facts."""
import datetime
import os
import subprocess
import sys
import time

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


FSTYPE = "fuse.fleetfs"
MOUNT_TIMEOUT = 15.0

# Benches run offline: every provider API fleetfs could reach points at a closed loopback port
# (127.0.0.1:9, refused at once) unless the bench serves a fake there, and a mount reads no
# catalog unless the bench generates one (-o catalog=none otherwise; gpuhunt's public catalog
# would make a bench depend on the network and on whatever the catalog holds that day).
OFFLINE_TYPES = ["aws", "azure", "gcp", "oci", "nebius", "lambda", "verda", "datacrunch",
                 "runpod", "cloudrift", "vastai", "hotaisle", "cudo", "kubernetes", "vultr",
                 "digitalocean", "amddevcloud"]


def offline_env():
    """Variables that keep a fleetfs daemon off the network (a bench's own fakes override
    them)."""
    env = {"FLEETFS_ENDPOINT_" + t.upper(): "https://127.0.0.1:9/" + t for t in OFFLINE_TYPES}
    env["AWS_ENDPOINT_URL"] = "https://127.0.0.1:9"
    return env


def offline_argv(opts):
    """-o catalog=none unless opts name a catalog."""
    return [] if any(o.startswith("catalog=") for o in opts) else ["-o", "catalog=none"]


class Mount:
    """A fleetfs daemon in the foreground (-f), its own session, its state and mountpoint in
    base, its log in base/fleetfs.log. opts: more -o options; env: variables set for it; drop:
    variables it must not inherit (a name ending in * drops every name with that prefix)."""

    def __init__(self, base, opts=(), env=None, drop=(), project="main"):
        self.state = os.path.join(base, "state")
        self.mnt = os.path.join(base, "mnt")
        self.logpath = os.path.join(base, "fleetfs.log")
        self.opts, self.env, self.drop, self.project = list(opts), dict(env or {}), drop, project
        self.proc = None
        os.makedirs(self.mnt)

    def start(self):
        env = dict(os.environ, LC_ALL="C")
        for k in list(env):
            if any(k == d or (d.endswith("*") and k.startswith(d[:-1])) for d in self.drop):
                env.pop(k)
        env.update(offline_env())
        env.update(self.env)
        argv = [BIN, "-f", "-o", f"state={self.state}"] + offline_argv(self.opts)
        for o in self.opts:
            argv += ["-o", o]
        logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(argv + [self.mnt], stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=logf, start_new_session=True, env=env)
        logf.close()
        end = time.monotonic() + MOUNT_TIMEOUT
        while time.monotonic() < end:
            if mount_fstype(self.mnt) == FSTYPE:
                os.stat(os.path.join(self.mnt, "projects"))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise BenchError(f"fleetfs did not mount {self.mnt} (exit {self.proc.poll()}); "
                         f"log:\n{self.log()}")

    def log(self, n=3000):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def unmount(self):
        """fusermount3 -u (retried while busy, then -uz)."""
        if self.proc is None:
            return
        for attempt in range(20):
            if mount_fstype(self.mnt) != FSTYPE:
                break
            subprocess.run(["fusermount3", "-uz" if attempt >= 10 else "-u", self.mnt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if mount_fstype(self.mnt) == FSTYPE:
                time.sleep(0.2)

    def reap(self):
        """Wait for the daemon; SIGTERM it (a clean stop) when the unmount did not end it, kill
        it when that does not either. Returns (exit code, how it ended)."""
        if self.proc is None:
            return None, "not started"
        how = "exited after the unmount"
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            how = "SIGTERM after the unmount (the connection was still held elsewhere)"
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                how = "killed: it did not exit after the unmount and SIGTERM"
                log(f"fleetfs (pid {self.proc.pid}) did not exit; killing it")
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        if rc != 0:
            log(f"warning: fleetfs exited {rc} ({how}); log:\n{self.log()}")
        self.proc = None
        return rc, how

    def stop(self):
        """unmount, then reap: the daemon's exit code."""
        self.unmount()
        return self.reap()[0]

    def p(self, *parts):
        """A path below projects/<project>/ of the mount."""
        return os.path.join(self.mnt, "projects", self.project, *parts)


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
