#!/usr/bin/python3
"""Real SSH test hosts for fleetfs: one network namespace + one real OpenSSH sshd per host.

    with TestHosts(n=4, jump=True) as h:
        h.hosts            # [Host] the n target hosts (visible ones first, then hidden ones)
        h.jump             # the jump host (only with jump=True); not in h.hosts
        h.ssh(h.hosts[-1], "nvidia-smi -L")      # the real ssh client (-J for hidden hosts)
        h.down(h.hosts[0], kind="link"); h.up(h.hosts[0])
        h.rotate_host_key(h.hosts[0])
        h.set_gpus(h.hosts[1], "nvidia:A100:80GB:2")

Layout: visible hosts (and the jump host's eth0) hang off a bridge in the root namespace that
has the subnet's .1 address, so the root namespace (the test, fleetfs) reaches them directly.
Hidden hosts hang off a bridge *inside the jump host's namespace* (its eth1); the root
namespace has no interface on that subnet, only an `unreachable` route (so nothing for it
ever leaves through the default route, and a direct connect fails at once). Hosts have no
default route: nothing they send can leave the machine.

Every run writes a state file (<workdir>/state.json, copied to /run/flfs-hosts/<tag>.json)
*before* it creates anything; stop() (also run from atexit, SIGTERM/SIGHUP and __exit__)
and cleanup_stale() (runs of dead processes) tear down everything a state file names.

Requires root, iproute2, openssh-server and openssh-client (see tests/hosts/README.md).
"""

import argparse
import atexit
import ctypes
import fcntl
import glob
import ipaddress
import json
import os
import pwd
import queue
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    from . import fakes  # noqa: F401  (imported as a package)
except ImportError:
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import fakes

__all__ = ["TestHosts", "Host", "HostsError", "start_many", "cleanup_stale", "leftovers",
           "ensure_user"]

REGISTRY = "/run/flfs-hosts"        # state copies of live runs, lock file, fallback pub dirs
NS_PREFIX = "flfs-"                 # netns names: flfs-<pid>-<k>-<host>
IF_RE = re.compile(r"^fl([0-9a-z]{5})([0-9a-z]{2})(br|v\d+)$")   # our root-namespace links
NS_RE = re.compile(r"^flfs-(\d+)-(\d+)-")
ROUTE_PROTO = 241                   # marks our `unreachable` routes for hidden subnets
USER = "fleet"
RSA_BITS = 3072
DEFAULT_TIMEOUT = 20.0              # seconds for sshd to answer after a (re)start
CLI_WORKDIR = "/var/tmp/flfs-hosts"


def _tool(name):
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name) or name


IP = _tool("ip")
SSHD = "/usr/sbin/sshd"
SSH = _tool("ssh")
SSH_KEYGEN = _tool("ssh-keygen")
SETPRIV = _tool("setpriv")
NSENTER = _tool("nsenter")
UNSHARE = _tool("unshare")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class HostsError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Small helpers

def _run(argv, input=None, check=True, timeout=60):
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise HostsError(f"{' '.join(shlex.quote(a) for a in argv)} exited {r.returncode}: "
                         f"{(r.stderr or r.stdout).strip()}")
    return r


def _ip_batch(lines, ns=None, force=False):
    if not lines:
        return None
    argv = [IP] + (["-n", ns] if ns else []) + (["-force"] if force else []) + ["-batch", "-"]
    r = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0 and not force:
        raise HostsError(f"ip -batch failed: {r.stderr.strip()}\nbatch:\n" + "\n".join(lines))
    return r


def _write(path, data, mode=0o644):
    """Atomic write (temp file + rename) with the given mode."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _b36(n, width):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    while n:
        n, r = divmod(n, 36)
        s = digits[r] + s
    return s.rjust(width, "0")[-width:]


def _proc_starttime(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return int(s[s.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(pid, starttime):
    st = _proc_starttime(pid)
    return st is not None and (starttime is None or st == starttime)


def _pid_exists(pid):
    return pid is not None and os.path.exists(f"/proc/{pid}")


def _pid_running(pid):
    """Exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def _ns_key(name):
    try:
        st = os.stat(f"/run/netns/{name}")
        return (st.st_dev, st.st_ino)
    except OSError:
        return None


def _pids_in_netns(names):
    """{netns name: [pids]} of the live processes inside each of our namespaces."""
    keys = {}
    for n in names:
        k = _ns_key(n)
        if k:
            keys[k] = n
    out = {n: [] for n in keys.values()}
    if not keys:
        return out
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            st = os.stat(f"/proc/{d}/ns/net")
        except OSError:
            continue
        n = keys.get((st.st_dev, st.st_ino))
        if n is not None:
            out[n].append(int(d))
    return out


def _kill_netns_procs(names, popens=(), timeout=10.0):
    """SIGKILL everything living in the given namespaces; reap our own children."""
    end = time.monotonic() + timeout
    while True:
        pids = [p for lst in _pids_in_netns(names).values() for p in lst]
        for p in popens:
            if p is not None:
                try:
                    p.poll()
                except Exception:
                    pass
        if not pids:
            return True
        for pid in pids:
            for sig in (signal.SIGKILL, signal.SIGCONT):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        if time.monotonic() > end:
            return False
        time.sleep(0.005)


def _in_netns(ns, fn):
    """Run fn() in a fresh thread that has joined network namespace ns (sockets it creates
    stay in that namespace); returns fn's result or raises its exception."""
    box = []

    def body():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            box.append((True, fn()))
        except BaseException as e:  # noqa: B902 - handed to the caller
            box.append((False, e))

    t = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join()
    ok, v = box[0]
    if ok:
        return v
    raise v


def _banner(addr, port, timeout):
    s = socket.create_connection((addr, port), timeout=timeout)
    try:
        s.settimeout(timeout)
        buf = b""
        while b"\n" not in buf and len(buf) < 512:
            chunk = s.recv(512)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    finally:
        s.close()


class _GlobalLock:
    """flock on REGISTRY/lock: serialises subnet choice and cleanup across processes."""

    def __enter__(self):
        os.makedirs(REGISTRY, mode=0o755, exist_ok=True)
        self.fd = os.open(os.path.join(REGISTRY, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                          0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *a):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class _Spawner:
    """sshd processes are forked by this one long-lived thread so that setpriv --pdeathsig
    (which fires when the *forking thread* ends) kills them only when the process dies."""

    def __init__(self):
        self.q = queue.Queue()
        self.t = None
        self.lock = threading.Lock()

    def _loop(self):
        while True:
            fn, box, ev = self.q.get()
            try:
                box.append((True, fn()))
            except BaseException as e:  # noqa: B902
                box.append((False, e))
            ev.set()

    def call(self, fn):
        with self.lock:
            if self.t is None or not self.t.is_alive():
                self.t = threading.Thread(target=self._loop, name="flfs-hosts-spawner",
                                          daemon=True)
                self.t.start()
        box, ev = [], threading.Event()
        self.q.put((fn, box, ev))
        ev.wait()
        ok, v = box[0]
        if ok:
            return v
        raise v


_SPAWNER = _Spawner()
_LIVE = set()                  # started, not yet stopped, owned by this process
_LIVE_LOCK = threading.RLock()
_COUNTER = [0]
_ONCE = {}                     # per-process memo: preflight, user, stale cleanup
_KEYCACHE = {}                 # ("host"|"client", type) -> (private bytes, public str)


# --------------------------------------------------------------------------------------------
# One-time checks

def _sshd_version():
    r = subprocess.run([SSHD, "-V"], capture_output=True, text=True)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", r.stderr + r.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _preflight():
    if "preflight" in _ONCE:
        return
    if os.geteuid() != 0:
        raise HostsError("TestHosts needs root (network namespaces, sshd)")
    for p in (IP, SSHD, SSH_KEYGEN):
        if not os.access(p, os.X_OK):
            raise HostsError(f"{p} missing: run tests/deps.sh (iproute2, openssh-server)")
    v = _sshd_version()
    if v is None or v < (7, 8):
        raise HostsError(f"OpenSSH >= 7.8 needed for SetEnv in sshd_config (found {v})")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation dir
    os.makedirs(REGISTRY, mode=0o755, exist_ok=True)
    os.chmod(REGISTRY, 0o755)
    _ONCE["preflight"] = True


def ensure_user(name=USER):
    """Create the test login user if missing (useradd -m, shell /bin/sh) and make sure the
    account is not locked ('!' in /etc/shadow: sshd with UsePAM no refuses even pubkey logins
    of locked accounts; '*' means "no password" and is not locked). Left in place afterwards."""
    if _ONCE.get(("user", name)):
        return pwd.getpwnam(name)
    if name == "root":     # the hosts of fakes whose VMs log in as root: never touch root
        return pwd.getpwnam(name)
    with _GlobalLock():
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            _run(["useradd", "-m", "-s", "/bin/sh", "-c", "fleetfs test hosts", name],
                 check=False)
            pw = pwd.getpwnam(name)
        if pw.pw_shell != "/bin/sh":
            _run(["usermod", "-s", "/bin/sh", name])
        locked = False
        try:
            with open("/etc/shadow") as f:
                for line in f:
                    p = line.split(":")
                    if p[0] == name:
                        locked = p[1] == "" or p[1].startswith("!")
        except OSError:
            pass
        if locked:
            _run(["usermod", "-p", "*", name])
        pw = pwd.getpwnam(name)
    _ONCE[("user", name)] = True
    return pw


def _reachable_by(path, pw):
    """Can user pw traverse every directory down to path (and read inside it)?"""
    groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
    path = os.path.realpath(path)
    parts = ["/"] + [p for p in path.split("/") if p]
    cur = ""
    for i, p in enumerate(parts):
        cur = os.path.join(cur, p) if cur else p
        try:
            st = os.stat(cur)
        except OSError:
            return False
        if st.st_uid == pw.pw_uid:
            need = 0o100
        elif st.st_gid in groups:
            need = 0o010
        else:
            need = 0o001
        if not st.st_mode & need:
            return False
    return True


# --------------------------------------------------------------------------------------------
# Keys

KEY_TYPES = ("ed25519", "ecdsa", "rsa")


def _keygen(specs, tmpdir):
    """specs: [(label, type)] -> {label: (private bytes, public str)}, all in parallel."""
    procs = []
    for label, t in specs:
        path = os.path.join(tmpdir, label.replace("/", "_"))
        extra = ["-b", str(RSA_BITS)] if t == "rsa" else (["-b", "256"] if t == "ecdsa" else [])
        p = subprocess.Popen([SSH_KEYGEN, "-q", "-t", t, *extra, "-N", "", "-C",
                              f"flfs-test-{label}", "-f", path],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        procs.append((label, path, p))
    out = {}
    for label, path, p in procs:
        msg = p.communicate(timeout=60)[0]
        if p.returncode != 0:
            raise HostsError(f"ssh-keygen {label}: {msg!r}")
        with open(path, "rb") as f:
            priv = f.read()
        with open(path + ".pub") as f:
            pub = f.read().strip()
        out[label] = (priv, pub)
    return out


class _KeyJob:
    """Generates the run's keys in the background while the network is built: per host its
    own ed25519 and ecdsa host keys (fast); the client keys and the RSA host key (shared by
    the run's hosts: an RSA key costs ~0.5 s of ssh-keygen) come from a per-process cache
    unless fresh=True."""

    CACHED = [("client", t) for t in KEY_TYPES] + [("host", "rsa")]

    def __init__(self, fresh, hostnames):
        self.result = None
        self.error = None
        need = [(f"{k}/{t}", t) for k, t in self.CACHED if fresh or (k, t) not in _KEYCACHE]
        need += [(f"{n}/{t}", t) for n in hostnames for t in ("ed25519", "ecdsa")]
        self.t = threading.Thread(target=self._go, args=(need, fresh), daemon=True)
        self.t.start()

    def _go(self, need, fresh):
        try:
            tmp = tempfile.mkdtemp(prefix="keys-", dir=REGISTRY)
            try:
                got = _keygen(need, tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            res = {f"{k}/{t}": v for (k, t), v in _KEYCACHE.items()}
            res.update(got)
            if not fresh:
                for k, t in self.CACHED:
                    if f"{k}/{t}" in got:
                        _KEYCACHE.setdefault((k, t), got[f"{k}/{t}"])
            self.result = res
        except BaseException as e:  # noqa: B902
            self.error = e

    def get(self):
        if self.t is not None:
            self.t.join()
        if self.error:
            raise self.error
        return self.result


# --------------------------------------------------------------------------------------------
# Hosts

class Host:
    """One test host. Connection facts: name, addr, port, user, key_path, host_pubkeys,
    hidden (True: only reachable through .via, the jump host). addrs: all its IPv4 addresses
    (the jump host has two). netns: its network namespace."""

    FIELDS = ("name", "index", "addr", "addrs", "port", "user", "key_path", "host_pubkeys",
              "hidden", "is_jump", "netns", "dir", "pubdir", "link_up", "sshd_up", "frozen",
              "sshd_pid", "gpus", "cpus", "memory_mib", "disk_mib", "arch", "meminfo_pid",
              "via_name")

    def __init__(self, name, index, addr, netns, hidden=False, is_jump=False, user=USER,
                 port=22):
        self.name = name
        self.index = index
        self.addr = addr
        self.addrs = [addr]
        self.port = port
        self.user = user
        self.key_path = None
        self.host_pubkeys = []
        self.hidden = hidden
        self.is_jump = is_jump
        self.netns = netns
        self.dir = None          # private: sshd_config, host keys, pid file, logs
        self.pubdir = None       # readable by the user: bin/ (fakes), gpu data, authorized_keys
        self.link_up = True
        self.sshd_up = False
        self.frozen = False
        self.sshd_pid = None
        self.gpus = "none"
        self.cpus = None
        self.memory_mib = None
        self.disk_mib = None
        self.arch = None
        self.meminfo_pid = None  # the sshd whose mount namespace has our /proc/meminfo
        self.via_name = None
        self.via = None          # the jump Host, for hidden hosts
        self._proc = None

    @property
    def proxy_jump(self):
        """ssh -J argument for hidden hosts ("fleet@10.x.y.2:22"), else None."""
        if not self.via:
            return None
        return f"{self.via.user}@{self.via.addr}:{self.via.port}"

    @property
    def sshd_config(self):
        return os.path.join(self.dir, "sshd_config")

    @property
    def log_path(self):
        return os.path.join(self.dir, "sshd.log")

    @property
    def bindir(self):
        return os.path.join(self.pubdir, "bin")

    def known_hosts_lines(self):
        host = self.addr if self.port == 22 else f"[{self.addr}]:{self.port}"
        return [f"{host} {k}" for k in self.host_pubkeys]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def to_dict(self):
        return {k: getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_dict(cls, d):
        h = cls(d["name"], d["index"], d["addr"], d["netns"])
        for k in cls.FIELDS:
            if k in d:
                setattr(h, k, d[k])
        return h

    def __repr__(self):
        flags = [x for x, on in (("hidden", self.hidden), ("jump", self.is_jump),
                                 ("link-down", not self.link_up),
                                 ("sshd-down", not self.sshd_up), ("frozen", self.frozen)) if on]
        return f"<Host {self.name} {self.user}@{self.addr}:{self.port} {' '.join(flags)}>"


class TestHosts:
    """n real SSH hosts (+ a jump host). See the module docstring and README.md."""

    __test__ = False   # not a pytest test class

    def __init__(self, n=4, jump=False, hidden=None, workdir=None, user=USER, gpus="none",
                 detach=False, fresh_keys=False, timeout=DEFAULT_TIMEOUT):
        if hidden is None:
            hidden = n // 2 if jump else 0
        if hidden and not jump:
            jump = True
        if not 0 <= hidden <= n or n < 0 or n > 200:
            raise ValueError("need 0 <= hidden <= n <= 200")
        self.n = n
        self.nhidden = hidden
        self.want_jump = jump
        self.user = user
        self.detach = detach
        self.fresh_keys = fresh_keys
        self.timeout = timeout
        self.default_gpus = gpus
        self.workdir = os.path.abspath(workdir) if workdir else None
        self.owns_workdir = False
        self.pubdir = None
        self.owns_pubdir = False
        self.hosts = []
        self.jump = None
        self.tag = None
        self.pid = os.getpid()
        self.starttime = _proc_starttime(self.pid)
        self.subnet = None
        self.hidden_subnet = None
        self.bridge = None
        self.root_links = []
        self.routes = []
        self.started = False
        self.stopped = False
        self.timings = {}
        self.startup_seconds = None
        self._lock = threading.RLock()

    # ---- paths ---------------------------------------------------------------------------
    @property
    def all_hosts(self):
        return self.hosts + ([self.jump] if self.jump else [])

    @property
    def key_path(self):
        return os.path.join(self.workdir, "client", "id_ed25519")

    @property
    def rsa_key_path(self):
        return os.path.join(self.workdir, "client", "id_rsa")

    @property
    def ecdsa_key_path(self):
        return os.path.join(self.workdir, "client", "id_ecdsa")

    @property
    def client_pubkeys(self):
        out = []
        for p in (self.key_path, self.ecdsa_key_path, self.rsa_key_path):
            with open(p + ".pub") as f:
                out.append(f.read().strip())
        return out

    @property
    def known_hosts_path(self):
        return os.path.join(self.workdir, "known_hosts")

    @property
    def ssh_config_path(self):
        return os.path.join(self.workdir, "ssh_config")

    @property
    def state_path(self):
        return os.path.join(self.workdir, "state.json")

    def host(self, name):
        for h in self.all_hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def _h(self, host):
        return self.host(host) if isinstance(host, str) else host

    # ---- lifecycle -----------------------------------------------------------------------
    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        try:
            self.stop()
        except Exception as e:
            if et is None:
                raise
            print(f"tests/hosts: cleanup after {et.__name__} failed: {e}", file=sys.stderr)
        return False

    def start(self):
        with self._lock:
            if self.started:
                return self
            t0 = time.monotonic()
            try:
                self._start()
            except BaseException:
                try:
                    self.stop()
                except Exception as e:
                    print(f"tests/hosts: cleanup after failed start: {e}", file=sys.stderr)
                raise
            self.startup_seconds = time.monotonic() - t0
            self.timings["total"] = self.startup_seconds
            return self

    def _phase(self, name, t):
        now = time.monotonic()
        self.timings[name] = now - t
        return now

    def _start(self):
        t = time.monotonic()
        _preflight()
        if not _ONCE.get("stale"):
            cleanup_stale()
            _ONCE["stale"] = True
        pw = ensure_user(self.user)
        keys = _KeyJob(self.fresh_keys, [f"h{i}" for i in range(self.n)] +
                       (["jump"] if self.want_jump else []))
        t = self._phase("preflight", t)

        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix=f"flfs-hosts-{self.pid}-", dir="/var/tmp")
            self.owns_workdir = True
        elif not os.path.isdir(self.workdir):
            os.makedirs(self.workdir)
            self.owns_workdir = True
        if self.owns_workdir:
            os.chmod(self.workdir, 0o755)
        if re.search(r'["\n\\]', self.workdir):
            raise HostsError(f"workdir {self.workdir!r}: no quotes, backslashes or newlines")

        with _GlobalLock():
            self._allocate()
            if _reachable_by(self.workdir, pw):
                self.pubdir = os.path.join(self.workdir, "pub")
            else:  # e.g. pytest's tmp_path (0700): the user could not read authorized_keys
                self.pubdir = os.path.join(REGISTRY, self.tag)
                self.owns_pubdir = True
            self.save()               # before anything exists: cleanup knows every name
            with _LIVE_LOCK:
                _LIVE.add(self)
            if not self.detach:
                _install_exit_hooks()
            self._create_network()
        t = self._phase("network", t)

        os.makedirs(self.pubdir, mode=0o755, exist_ok=True)
        os.chmod(self.pubdir, 0o755)
        k = keys.get()
        t = self._phase("keys", t)
        cdir = os.path.join(self.workdir, "client")
        os.makedirs(cdir, mode=0o700, exist_ok=True)
        for typ in KEY_TYPES:
            priv, pub = k[f"client/{typ}"]
            _write(os.path.join(cdir, f"id_{typ}"), priv, 0o600)
            _write(os.path.join(cdir, f"id_{typ}.pub"), pub + "\n", 0o644)
        for h in self.all_hosts:
            self._prepare_host(h, {"ed25519": k[f"{h.name}/ed25519"],
                                   "ecdsa": k[f"{h.name}/ecdsa"], "rsa": k["host/rsa"]})
        t = self._phase("files", t)

        for h in self.all_hosts:
            self._spawn_sshd(h, netcfg=True)
        self._wait_ready(self.all_hosts)
        t = self._phase("sshd", t)
        self.write_known_hosts()
        self.write_ssh_config()
        self.started = True
        self.save()

    def _allocate(self):
        """Choose the tag, names and two free /24s (caller holds the global lock)."""
        pid36 = _b36(self.pid, 5)
        existing = set(os.listdir("/sys/class/net"))
        claimed = _claimed_nets()
        while True:
            _COUNTER[0] += 1
            k = _COUNTER[0]
            tag = pid36 + _b36(k, 2)
            if f"fl{tag}br" not in existing and not os.path.exists(
                    os.path.join(REGISTRY, tag + ".json")):
                break
        self.tag = tag
        self.k = k
        used = _used_networks() + claimed
        rnd = random.Random(os.urandom(8))
        picks = []
        for _ in range(2000):
            net = ipaddress.ip_network(f"10.{rnd.randint(200, 254)}.{rnd.randint(0, 255)}.0/24")
            if any(net.overlaps(u) for u in used + picks):
                continue
            picks.append(net)
            if len(picks) == (2 if self.want_jump else 1):
                break
        else:
            raise HostsError("no free 10.200-254.x.0/24 subnet")
        self.subnet = str(picks[0])
        self.hidden_subnet = str(picks[1]) if self.want_jump else None
        self.bridge = f"fl{tag}br"
        vis = list(picks[0].hosts())
        hid = list(picks[1].hosts()) if self.want_jump else []
        ns = lambda name: f"{NS_PREFIX}{self.pid}-{k}-{name}"  # noqa: E731
        nvis = self.n - self.nhidden
        self.hosts = []
        for i in range(self.n):
            hidden = i >= nvis
            addr = str(hid[9 + i - nvis]) if hidden else str(vis[9 + i])
            self.hosts.append(Host(f"h{i}", i, addr, ns(f"h{i}"), hidden=hidden, user=self.user))
        if self.want_jump:
            self.jump = Host("jump", self.n, str(vis[1]), ns("jump"), is_jump=True,
                             user=self.user)
            self.jump.addrs = [str(vis[1]), str(hid[0])]
            for h in self.hosts:
                if h.hidden:
                    h.via, h.via_name = self.jump, self.jump.name
        self.root_links = [f"fl{tag}v{h.index}" for h in self.all_hosts if not h.hidden]
        self.routes = ([f"unreachable {self.hidden_subnet} proto {ROUTE_PROTO}"]
                       if self.want_jump else [])

    def _create_network(self):
        b1, b2 = [], []
        for h in self.all_hosts:
            b1.append(f"netns add {h.netns}")
        b1.append(f"link add {self.bridge} type bridge")
        for h in self.all_hosts:
            if h.hidden:
                # Distinct ifindexes at both ends (eth0 is 2): the kernel delays carrier
                # changes of a veth whose ifindex equals its peer's by up to a second.
                b1.append(f"link add hv{h.index} netns {self.jump.netns} index "
                          f"{1000 + h.index} type veth peer name eth0 netns {h.netns}")
            else:
                v = f"fl{self.tag}v{h.index}"
                b1.append(f"link add {v} type veth peer name eth0 netns {h.netns}")
                b2 += [f"link set {v} master {self.bridge}", f"link set {v} up"]
        _ip_batch(b1)
        for ifname in [self.bridge] + self.root_links:   # no IPv6 chatter on our links
            try:
                with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
                    f.write("1")
            except OSError:
                pass
        net = ipaddress.ip_network(self.subnet)
        b2.append(f"addr add {net[1]}/24 dev {self.bridge}")
        b2.append(f"link set {self.bridge} up")
        for r in self.routes:
            b2.append(f"route add {r}")
        _ip_batch(b2)

    def _netcfg(self, h):
        """Shell commands run inside h's namespace before its first sshd starts."""
        lines = ["echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null || true",
                 "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null || true",
                 "echo 0 > /proc/sys/net/ipv4/ip_forward",
                 "ip -batch - <<'EOF'", "link set lo up",
                 f"addr add {h.addr}/24 dev eth0", "link set eth0 up"]
        if h.is_jump:
            lines += ["link add eth1 type bridge", f"addr add {h.addrs[1]}/24 dev eth1"]
            for x in self.hosts:
                if x.hidden:
                    lines += [f"link set hv{x.index} master eth1", f"link set hv{x.index} up"]
            lines.append("link set eth1 up")
        lines.append("EOF")
        return "\n".join(lines) + "\n"

    def _prepare_host(self, h, hostkeys):
        h.dir = os.path.join(self.workdir, h.name)
        h.pubdir = os.path.join(self.pubdir, h.name)
        h.key_path = self.key_path
        os.makedirs(h.dir, mode=0o700, exist_ok=True)
        for d in (h.pubdir, h.bindir, os.path.join(h.pubdir, "gpu")):
            os.makedirs(d, mode=0o755, exist_ok=True)
            os.chmod(d, 0o755)
        self._install_hostkeys(h, hostkeys)
        self._write_sshd_config(h)
        self.set_authorized_keys(h, None)
        self.set_gpus(h, self._gpus_for(h))

    def _gpus_for(self, h):
        """gpus= of the constructor: one spec for every target host, a list (one per target
        host) or a dict {name: spec}; the jump host has none unless the dict names it."""
        g = self.default_gpus
        if isinstance(g, dict):
            return g.get(h.name, "none")
        if h.is_jump:
            return "none"
        if isinstance(g, (list, tuple)):
            if len(g) != len(self.hosts):
                raise ValueError("gpus: a list needs one spec per host")
            return g[h.index]
        return g

    def _install_hostkeys(self, h, hostkeys):
        pubs = []
        for typ in KEY_TYPES:
            priv, pub = hostkeys[typ]
            p = os.path.join(h.dir, f"ssh_host_{typ}_key")
            _write(p, priv, 0o600)
            _write(p + ".pub", pub + "\n", 0o644)
            pubs.append(" ".join(pub.split()[:2]))
        h.host_pubkeys = pubs

    def _write_sshd_config(self, h):
        q = lambda s: f'"{s}"'  # noqa: E731  (paths are checked to hold no quotes)
        cfg = [f"# {h.name}: generated by tests/hosts/hosts.py (fleetfs test hosts)",
               f"ListenAddress 0.0.0.0:{h.port}", "AddressFamily inet"]
        cfg += [f"HostKey {q(os.path.join(h.dir, f'ssh_host_{t}_key'))}" for t in KEY_TYPES]
        cfg += [f"PidFile {q(os.path.join(h.dir, 'sshd.pid'))}",
                # the per-host file the tests control, plus the user's own (where fleetfs
                # installs its project key, as on a real host); for root only the former:
                # root's own keys are this machine's
                f"AuthorizedKeysFile {q(os.path.join(h.pubdir, 'authorized_keys'))}"
                + ("" if h.user == "root" else " .ssh/authorized_keys"),
                "StrictModes no", "UsePAM no", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
                "PermitRootLogin " + ("prohibit-password" if h.user == "root" else "no"),
                f"AllowUsers {h.user}",
                f"SetEnv {q('PATH=' + h.bindir + ':/usr/bin:/bin')}",
                "AllowTcpForwarding yes", "X11Forwarding no", "PrintMotd no",
                "PrintLastLog no", "UseDNS no", "MaxStartups 200", "MaxSessions 64",
                "LoginGraceTime 30", "LogLevel VERBOSE", "Subsystem sftp internal-sftp"]
        _write(h.sshd_config, "\n".join(cfg) + "\n", 0o644)

    # ---- sshd processes --------------------------------------------------------------------
    def _spawn_sshd(self, h, netcfg=False):
        pidfile = os.path.join(h.dir, "sshd.pid")
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass
        script = self._netcfg(h) if netcfg else ""
        # `ip netns exec` copies our mount namespace: a fleetfs mount present now would stay
        # mounted in the copy after the test unmounts it, and keep its daemon serving
        script += "umount -a -l -t fuse.fleetfs 2>/dev/null || true\n"
        uts = os.access(UNSHARE, os.X_OK)
        if uts:   # its own UTS namespace: `hostname` on the host prints its name
            script = f"echo {h.name} > /proc/sys/kernel/hostname\n" + script
        meminfo = os.path.join(h.pubdir, "meminfo")
        if h.memory_mib:
            script += f"mount --bind {shlex.quote(meminfo)} /proc/meminfo\n"
        script += (f"exec {SSHD} -D -f {shlex.quote(h.sshd_config)} "
                   f"-E {shlex.quote(h.log_path)}\n")
        argv = [IP, "netns", "exec", h.netns] + ([UNSHARE, "--uts"] if uts else []) + \
            ["/bin/sh", "-ec", script]
        if not self.detach and os.access(SETPRIV, os.X_OK):
            argv = [SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        out = open(os.path.join(h.dir, "sshd.out"), "ab")
        try:
            p = _SPAWNER.call(lambda: subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True))
        finally:
            out.close()
        h._proc = p
        h.sshd_pid = p.pid
        h.sshd_up = True
        h.meminfo_pid = p.pid if h.memory_mib else None

    def _sshd_alive(self, h):
        if h._proc is not None:
            return h._proc.poll() is None
        return _pid_running(h.sshd_pid)

    def _why_dead(self, h):
        tail = ""
        for f in ("sshd.out", "sshd.log"):
            try:
                with open(os.path.join(h.dir, f), errors="replace") as fh:
                    tail += f"--- {f}\n" + fh.read()[-2000:]
            except OSError:
                pass
        return f"sshd of {h.name} ({h.netns}) exited:\n{tail}"

    def _wait_ready(self, hosts, timeout=None):
        """Until every host's sshd answers with an SSH banner on its address, seen from where
        a client would connect (the root namespace, or the jump host for hidden hosts). Hosts
        whose link is down are only checked for a running sshd with its pid file written."""
        deadline = time.monotonic() + (timeout or self.timeout)

        def poll(group):
            pending = list(group)
            while pending:
                for h in list(pending):
                    if not self._sshd_alive(h):
                        raise HostsError(self._why_dead(h))
                    # The pid file is written once sshd listens (and so after the network
                    # setup that precedes it): connecting earlier could sit through an ARP
                    # timeout.
                    if not os.path.exists(os.path.join(h.dir, "sshd.pid")):
                        continue
                    if not h.link_up:
                        pending.remove(h)
                        continue
                    try:
                        b = _banner(h.addr, h.port, 1.0)
                        if b.startswith("SSH-2.0-"):
                            pending.remove(h)
                    except OSError:
                        pass
                if pending:
                    if time.monotonic() > deadline:
                        raise HostsError("sshd not answering after "
                                         f"{timeout or self.timeout}s: "
                                         + ", ".join(x.name for x in pending))
                    time.sleep(0.005)

        poll([h for h in hosts if not h.hidden])
        hidden = [h for h in hosts if h.hidden]
        if hidden:   # polled from inside the jump host (its eth1 stays up when eth0 is down)
            _in_netns(self.jump.netns, lambda: poll(hidden))

    def _kill_host_procs(self, h, only_listener=False):
        if only_listener:
            pids = [h.sshd_pid] if _pid_running(h.sshd_pid) else []
        else:
            pids = _pids_in_netns([h.netns]).get(h.netns, [])
        for pid in pids:
            for sig in (signal.SIGTERM, signal.SIGCONT):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        end = time.monotonic() + 3
        while any(_pid_running(p) for p in pids) and time.monotonic() < end:
            if h._proc is not None:
                h._proc.poll()
            time.sleep(0.005)
        for pid in pids:
            if _pid_running(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if h._proc is not None:
            try:
                h._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        h.sshd_up = False
        h.frozen = False
        h._proc = None
        h.sshd_pid = None
        h.meminfo_pid = None
        try:
            os.unlink(os.path.join(h.dir, "sshd.pid"))
        except FileNotFoundError:
            pass

    # ---- controls --------------------------------------------------------------------------
    def down(self, host, kind="link"):
        """Make host unreachable. kind="link": its interface goes down (connects time out,
        open connections hang); "sshd": every process in its namespace is killed (connects
        are refused, open sessions drop); "hang": its processes are SIGSTOPped (TCP connects
        succeed, the SSH banner never comes)."""
        h = self._h(host)
        with self._lock:
            if kind == "link":
                _ip_batch(["link set eth0 down"], ns=h.netns)
                h.link_up = False
            elif kind == "sshd":
                self._kill_host_procs(h)
            elif kind == "hang":
                for pid in _pids_in_netns([h.netns]).get(h.netns, []):
                    try:
                        os.kill(pid, signal.SIGSTOP)
                    except OSError:
                        pass
                h.frozen = True
            else:
                raise ValueError(f"kind must be link, sshd or hang, not {kind!r}")
            self.save()

    def up(self, host, wait=True):
        """Undo every down() of host (link up, processes continued, sshd started)."""
        h = self._h(host)
        with self._lock:
            if h.frozen:
                for pid in _pids_in_netns([h.netns]).get(h.netns, []):
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except OSError:
                        pass
                h.frozen = False
            if not h.link_up:
                _ip_batch(["link set eth0 up"], ns=h.netns)
                h.link_up = True
            if not h.sshd_up or not self._sshd_alive(h):
                self._spawn_sshd(h)
            self.save()
            if wait:
                self._wait_ready([h])

    def restart_sshd(self, host):
        """Restart the sshd listener (re-reads config and host keys); sessions survive."""
        h = self._h(host)
        with self._lock:
            frozen = h.frozen
            if h.sshd_up:
                self._kill_host_procs(h, only_listener=True)
            self._spawn_sshd(h)
            self.save()
            self._wait_ready([h])
            if frozen:
                self.down(h, kind="hang")

    def rotate_host_key(self, host, restart=True):
        """New ed25519/ecdsa/rsa host keys for host, sshd restarted; host.host_pubkeys is
        updated but known_hosts_path is not (call write_known_hosts() to trust the new keys)."""
        h = self._h(host)
        with self._lock:
            tmp = tempfile.mkdtemp(prefix="rot-", dir=h.dir)
            try:
                k = _keygen([(t, t) for t in KEY_TYPES], tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self._install_hostkeys(h, k)
            self.save()
            if restart and h.sshd_up:
                self.restart_sshd(h)
        return h.host_pubkeys

    def set_gpus(self, host, spec, vendor="nvidia"):
        """What the host's GPU tools print. spec: "none" (no tool installed), a GPU spec
        ("nvidia:A100:80GB:2", "amd:MI300X:192GB:8", "nvidia:T4+nvidia:L4", "nvidia:nodriver",
        "nvidia:nodevices"), or raw output (str or list of lines) that the `vendor` tool prints
        verbatim (nvidia-smi for any --query-gpu; amd-smi for any subcommand)."""
        h = self._h(host)
        gdir = os.path.join(h.pubdir, "gpu")
        if isinstance(spec, (list, tuple)) and spec and all(fakes.is_spec(s) for s in spec):
            spec = "+".join(spec)
        if isinstance(spec, str) and fakes.is_spec(spec):
            parsed = fakes.parse_spec(spec)
            nv, amd, amd_raw = parsed.get("nvidia"), parsed.get("amd"), None
        else:
            text = "\n".join(spec) if isinstance(spec, (list, tuple)) else str(spec)
            if vendor == "nvidia":
                nv, amd, amd_raw = ("raw", text), None, None
            elif vendor == "amd":
                nv, amd, amd_raw = None, None, text if text.endswith("\n") else text + "\n"
            else:
                raise ValueError("vendor must be nvidia or amd")
        seed = f"{self.tag}:{h.name}"
        nv_path = os.path.join(gdir, "nvidia")
        if nv is not None:
            _write(nv_path, fakes.nvidia_data(nv, seed))
        amd_rawp = os.path.join(gdir, "amd-raw")
        if amd:
            _write(os.path.join(gdir, "amd-static.json"), fakes.amd_static(amd, seed))
            _write(os.path.join(gdir, "amd-static.txt"), fakes.amd_static_text(amd))
            _write(os.path.join(gdir, "amd-list.json"), fakes.amd_list(amd, seed, True))
            _write(os.path.join(gdir, "amd-list.txt"), fakes.amd_list(amd, seed, False))
        if amd_raw is not None:
            _write(amd_rawp, amd_raw)
        elif os.path.exists(amd_rawp):
            os.unlink(amd_rawp)
        self._tool(h, "nvidia-smi", fakes.NVIDIA_SMI.replace("@DATA@", shlex.quote(nv_path))
                   .replace("@NODRIVER@", shlex.quote(fakes.NODRIVER_MSG))
                   .replace("@DRIVER@", fakes.NVIDIA_DRIVER) if nv is not None else None)
        self._tool(h, "amd-smi", fakes.AMD_SMI.replace("@DIR@", shlex.quote(gdir))
                   if (amd or amd_raw is not None) else None)
        h.gpus = spec if isinstance(spec, str) else list(spec)
        if self.started:
            self.save()

    def _tool(self, h, name, script):
        p = os.path.join(h.bindir, name)
        if script is None:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        else:
            _write(p, script, 0o755)

    def set_resources(self, host, cpus=None, memory_mib=None, disk_mib=None, arch=None):
        """What the host reports as its hardware (for the probe's nproc, /proc/meminfo,
        df -Pk /, uname -m); 0 / "" restores the real value.
        cpus: what `nproc` prints (a fake on the PATH). memory_mib: MemTotal of /proc/meminfo
        as the host's sessions see it (a file bind-mounted over it in the mount namespace of
        the host's sshd). disk_mib: the size of / in what a fake `df` prints (df -P format,
        whatever the arguments). arch: what `uname -m` prints (a fake `uname`)."""
        h = self._h(host)
        with self._lock:
            if cpus is not None:
                self._tool(h, "nproc", f"#!/bin/sh\necho {int(cpus)}\n" if cpus else None)
                h.cpus = int(cpus) or None
            if disk_mib is not None:
                kb = int(disk_mib) * 1024
                used = kb // 5
                self._tool(h, "df", (
                    "#!/bin/sh\n# fake df (fleetfs tests/hosts)\n"
                    "echo 'Filesystem     1024-blocks      Used Available Capacity Mounted on'\n"
                    f"echo '/dev/vda1 {kb:>19} {used:>9} {kb - used:>9}      20% /'\n")
                    if kb else None)
                h.disk_mib = int(disk_mib) or None
            if arch is not None:
                if arch and not re.fullmatch(r"[A-Za-z0-9_]+", arch):
                    raise ValueError(f"arch {arch!r}")
                self._tool(h, "uname", (
                    "#!/bin/sh\n# fake uname (fleetfs tests/hosts)\n"
                    f'case "$*" in -m|-p|-i) echo {arch} ;; *) exec /bin/uname "$@" ;; esac\n')
                    if arch else None)
                h.arch = arch or None
            if memory_mib is not None:
                h.memory_mib = int(memory_mib) or None
                if h.memory_mib:
                    self._write_meminfo(h)
                    if h.sshd_up and h.meminfo_pid != h.sshd_pid and _pid_running(h.sshd_pid):
                        _run([NSENTER, "-t", str(h.sshd_pid), "-m", "--", "mount", "--bind",
                              os.path.join(h.pubdir, "meminfo"), "/proc/meminfo"])
                        h.meminfo_pid = h.sshd_pid
                elif h.sshd_up and h.meminfo_pid:
                    _run([NSENTER, "-t", str(h.sshd_pid), "-m", "--", "umount", "/proc/meminfo"],
                         check=False)
                    h.meminfo_pid = None
            self.save()

    def _write_meminfo(self, h):
        kb = h.memory_mib * 1024
        with open("/proc/meminfo") as f:
            real = f.read().splitlines()
        vals = {"MemTotal": kb, "MemFree": kb * 9 // 10, "MemAvailable": kb * 19 // 20}
        out = []
        for line in real:
            k = line.split(":", 1)[0]
            out.append(f"{k + ':':<16}{vals[k]:>8} kB" if k in vals else line)
        path = os.path.join(h.pubdir, "meminfo")
        # In place (a bind mount follows the inode, a rename would not be seen).
        with open(path, "a+") as f:
            f.seek(0)
            f.truncate()
            f.write("\n".join(out) + "\n")
        os.chmod(path, 0o644)

    def set_authorized_keys(self, host, keys=None):
        """The keys host accepts for the user: None = the run's three client keys."""
        h = self._h(host)
        if keys is None:
            keys = self.client_pubkeys
        _write(os.path.join(h.pubdir, "authorized_keys"),
               "".join(k.strip() + "\n" for k in keys), 0o644)

    def new_client_key(self, typ="ed25519", name=None):
        """A fresh client key pair that no host authorizes; returns the private key path."""
        name = name or f"extra_{typ}_{int(time.time() * 1000) % 10**8}"
        d = os.path.join(self.workdir, "client")
        k = _keygen([(name, typ)], d)
        return os.path.join(d, name)

    # ---- clients -------------------------------------------------------------------------
    def known_hosts_lines(self, hosts=None):
        return [ln for h in (hosts or self.all_hosts) for ln in h.known_hosts_lines()]

    def write_known_hosts(self, path=None, hosts=None):
        path = path or self.known_hosts_path
        _write(path, "".join(ln + "\n" for ln in self.known_hosts_lines(hosts)), 0o644)
        return path

    def write_ssh_config(self, path=None, key_path=None):
        """An ssh_config with a Host entry per host name (hidden ones via ProxyJump jump)."""
        path = path or self.ssh_config_path
        lines = ["# generated by tests/hosts/hosts.py", "Host *",
                 f"  User {self.user}", f'  IdentityFile "{key_path or self.key_path}"',
                 "  IdentitiesOnly yes", f'  UserKnownHostsFile "{self.known_hosts_path}"',
                 "  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes",
                 "  UpdateHostKeys no", "  CheckHostIP no", "  BatchMode yes",
                 "  ConnectTimeout 5", "  LogLevel ERROR", ""]
        for h in self.all_hosts:
            lines += [f"Host {h.name}", f"  HostName {h.addr}", f"  Port {h.port}"]
            if h.via:
                lines.append(f"  ProxyJump {h.via.name}")
            lines.append("")
        _write(path, "\n".join(lines), 0o644)
        return path

    def ssh_argv(self, host, command=None, opts=()):
        """argv for the real ssh client to host (by its ssh_config entry)."""
        h = self._h(host)
        argv = [SSH, "-F", self.ssh_config_path, *opts, h.name]
        if command is not None:
            argv += ["--", command]
        return argv

    def ssh(self, host, command, timeout=30, check=True, input=None, opts=()):
        """Run command (a shell string) on host with the real ssh client."""
        argv = self.ssh_argv(host, command, opts)
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise HostsError(f"ssh {self._h(host).name} {command!r} exited {r.returncode}: "
                             f"{r.stderr.strip()}")
        return r

    def connect(self, host, timeout=5.0, port=None):
        """A TCP socket to host's sshd from where a client sits: the root namespace for
        visible hosts, the jump host's namespace for hidden ones."""
        h = self._h(host)
        port = port or h.port
        if h.hidden:
            return _in_netns(self.jump.netns,
                             lambda: socket.create_connection((h.addr, port), timeout=timeout))
        return socket.create_connection((h.addr, port), timeout=timeout)

    def banner(self, host, timeout=5.0):
        h = self._h(host)
        if h.hidden:
            return _in_netns(self.jump.netns, lambda: _banner(h.addr, h.port, timeout))
        return _banner(h.addr, h.port, timeout)

    def netns_run(self, host, argv, timeout=30, check=True):
        """Run argv as root inside host's network namespace."""
        h = self._h(host)
        return _run([IP, "netns", "exec", h.netns, *argv], check=check, timeout=timeout)

    # ---- state ---------------------------------------------------------------------------
    def to_dict(self):
        return {
            "version": 1, "pid": self.pid, "starttime": self.starttime, "detach": self.detach,
            "tag": self.tag, "k": getattr(self, "k", 0), "n": self.n, "nhidden": self.nhidden,
            "jump_wanted": self.want_jump, "user": self.user, "workdir": self.workdir,
            "owns_workdir": self.owns_workdir, "pubdir": self.pubdir,
            "owns_pubdir": self.owns_pubdir, "subnet": self.subnet,
            "hidden_subnet": self.hidden_subnet, "bridge": self.bridge,
            "root_links": self.root_links, "routes": self.routes,
            "netns": [h.netns for h in self.all_hosts], "started": self.started,
            "stopped": self.stopped, "hosts": [h.to_dict() for h in self.hosts],
            "jump": self.jump.to_dict() if self.jump else None, "timings": self.timings,
        }

    def save(self):
        if not self.tag or not self.workdir:
            return
        data = json.dumps(self.to_dict(), indent=1) + "\n"
        if os.path.isdir(self.workdir):
            _write(self.state_path, data, 0o644)
        if not self.stopped:
            _write(os.path.join(REGISTRY, self.tag + ".json"), data, 0o600)

    @classmethod
    def load(cls, workdir):
        """Reattach to a run (e.g. one the CLI started with `up`) from its state file."""
        with open(os.path.join(workdir, "state.json")) as f:
            st = json.load(f)
        self = cls(n=st["n"], jump=st["jump_wanted"], hidden=st["nhidden"], workdir=workdir,
                   user=st["user"], detach=st["detach"])
        for k in ("pid", "starttime", "tag", "k", "owns_workdir", "pubdir", "owns_pubdir",
                  "subnet", "hidden_subnet", "bridge", "root_links", "routes", "started",
                  "stopped", "timings"):
            setattr(self, k, st[k])
        self.hosts = [Host.from_dict(d) for d in st["hosts"]]
        self.jump = Host.from_dict(st["jump"]) if st["jump"] else None
        for h in self.hosts:
            if h.via_name:
                h.via = self.jump
        return self

    # ---- teardown --------------------------------------------------------------------------
    def stop(self):
        """Kill every process in our namespaces, delete namespaces, links, bridge, route and
        files we created. Idempotent. Raises HostsError if something could not be removed."""
        with self._lock:
            if self.stopped or not self.tag:
                self.stopped = True
                return
            left = _teardown(self.to_dict(), popens=[h._proc for h in self.all_hosts])
            self.stopped = True
            for h in self.all_hosts:
                h.sshd_up = False
                h._proc = None
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if left:
                raise HostsError("cleanup left: " + ", ".join(left))


def _teardown(st, popens=()):
    """Remove everything a state dict names; returns what is still there."""
    names = st.get("netns") or []
    _kill_netns_procs(names, popens)
    for p in popens:
        if p is not None:
            try:
                p.wait(timeout=5)
            except Exception:
                pass
    batch = []
    for link in (st.get("root_links") or []) + ([st["bridge"]] if st.get("bridge") else []):
        if os.path.exists(f"/sys/class/net/{link}"):
            batch.append(f"link del {link}")
    for n in names:
        if os.path.exists(f"/run/netns/{n}"):
            batch.append(f"netns del {n}")
    existing = _our_routes()
    for r in st.get("routes") or []:
        if r.split()[1] in existing:
            batch.append(f"route del {r}")
    _ip_batch(batch, force=True)
    if st.get("owns_pubdir") and st.get("pubdir", "").startswith(REGISTRY + "/"):
        shutil.rmtree(st["pubdir"], ignore_errors=True)
    wd = st.get("workdir")
    if wd and os.path.isdir(wd):
        if st.get("owns_workdir"):
            shutil.rmtree(wd, ignore_errors=True)
        else:
            try:
                st2 = dict(st, stopped=True)
                _write(os.path.join(wd, "state.json"), json.dumps(st2, indent=1) + "\n")
            except OSError:
                pass
    if st.get("tag"):
        try:
            os.unlink(os.path.join(REGISTRY, st["tag"] + ".json"))
        except FileNotFoundError:
            pass
    left = [f"netns {n}" for n in names if os.path.exists(f"/run/netns/{n}")]
    left += [f"link {x}" for x in (st.get("root_links") or []) + [st.get("bridge") or ""]
             if x and os.path.exists(f"/sys/class/net/{x}")]
    left += [f"route {r}" for r in st.get("routes") or [] if r.split()[1] in _our_routes()]
    return left


def _our_routes():
    r = subprocess.run([IP, "-j", "-4", "route", "show", "table", "main", "proto",
                        str(ROUTE_PROTO)], capture_output=True, text=True)
    try:
        return {e.get("dst") for e in json.loads(r.stdout or "[]")}
    except ValueError:
        return set()


def _used_networks():
    nets = []
    for args in (["route", "show", "table", "all"], ["addr", "show"]):
        r = subprocess.run([IP, "-j", "-4", *args], capture_output=True, text=True)
        try:
            data = json.loads(r.stdout or "[]")
        except ValueError:
            continue
        for e in data:
            cands = []
            if "dst" in e:
                cands.append(e["dst"])
            for a in e.get("addr_info", []):
                if a.get("local"):
                    cands.append(f"{a['local']}/{a.get('prefixlen', 32)}")
            for c in cands:
                if c in ("default", "0.0.0.0/0") or not c:
                    continue
                try:
                    nets.append(ipaddress.ip_network(c if "/" in c else c + "/32",
                                                     strict=False))
                except ValueError:
                    pass
    return nets


def _registry_states():
    out = []
    for p in glob.glob(os.path.join(REGISTRY, "*.json")):
        try:
            with open(p) as f:
                out.append((p, json.load(f)))
        except (OSError, ValueError):
            out.append((p, None))
    return out


def _claimed_nets():
    nets = []
    for _, st in _registry_states():
        for k in ("subnet", "hidden_subnet"):
            if st and st.get(k):
                nets.append(ipaddress.ip_network(st[k]))
    return nets


def _state_live(st, include_detached):
    if st.get("detach") and not include_detached:
        return True
    if st.get("pid") == os.getpid() and st.get("starttime") == _proc_starttime(os.getpid()):
        with _LIVE_LOCK:
            return any(x.tag == st.get("tag") for x in _LIVE)
    if st.get("detach"):
        return False      # include_detached: the CLI's run goes too
    return _owner_alive(st.get("pid"), st.get("starttime"))


def cleanup_stale(include_detached=False, verbose=False):
    """Tear down runs whose owner process is dead (state files in /run/flfs-hosts), then any
    namespace/link/route of ours that no live run claims. include_detached=True also removes
    runs the CLI started with `up` (they have no owner process). Returns what was removed."""
    removed = []
    if os.geteuid() != 0:
        return removed
    with _GlobalLock():
        live_ns, live_links, live_routes, live_tags = set(), set(), set(), set()
        for path, st in _registry_states():
            if st is None:
                os.unlink(path)
                continue
            if _state_live(st, include_detached):
                live_ns.update(st.get("netns") or [])
                live_links.update((st.get("root_links") or []) + [st.get("bridge")])
                live_routes.update(r.split()[1] for r in st.get("routes") or [])
                live_tags.add(st.get("tag"))
                continue
            left = _teardown(st)
            removed.append(f"run {st.get('tag')} (pid {st.get('pid')})")
            if left and verbose:
                print(f"tests/hosts: could not remove {left}", file=sys.stderr)
        # Orphans no state file names (a run killed between creating and recording is not
        # possible: state is written first; this catches deleted state files).
        try:
            nslist = os.listdir("/run/netns")
        except FileNotFoundError:
            nslist = []
        orphans = []
        for ns in nslist:
            m = NS_RE.match(ns)
            if m and ns not in live_ns:
                pid = int(m.group(1))
                if pid == os.getpid() or not _pid_exists(pid) or include_detached:
                    orphans.append(ns)
        batch = []
        if orphans:
            _kill_netns_procs(orphans)
            batch += [f"netns del {ns}" for ns in orphans]
            removed += [f"netns {ns}" for ns in orphans]
        for link in os.listdir("/sys/class/net"):
            m = IF_RE.match(link)
            if m and link not in live_links:
                pid = int(m.group(1), 36)
                if pid == os.getpid() or not _pid_exists(pid) or include_detached:
                    batch.append(f"link del {link}")
                    removed.append(f"link {link}")
        for dst in _our_routes() - live_routes:
            batch.append(f"route del unreachable {dst} proto {ROUTE_PROTO}")
            removed.append(f"route {dst}")
        _ip_batch(batch, force=True)
        for d in glob.glob(os.path.join(REGISTRY, "*")):
            base = os.path.basename(d)
            if os.path.isdir(d) and re.fullmatch(r"[0-9a-z]{7}", base) and base not in live_tags:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"dir {d}")
    if verbose:
        for r in removed:
            print(f"tests/hosts: removed stale {r}", file=sys.stderr)
    return removed


def leftovers(pid=None):
    """Our namespaces and root links that exist now (optionally only those of pid)."""
    out = []
    try:
        for ns in os.listdir("/run/netns"):
            m = NS_RE.match(ns)
            if m and (pid is None or int(m.group(1)) == pid):
                out.append(f"netns {ns}")
    except FileNotFoundError:
        pass
    for link in os.listdir("/sys/class/net"):
        m = IF_RE.match(link)
        if m and (pid is None or int(m.group(1), 36) == pid):
            out.append(f"link {link}")
    return out


def start_many(n, jump=False, **kw):
    """Start n hosts as fast as possible (benchmarks): returns the started TestHosts; its
    .startup_seconds and .timings (preflight, network, keys, files, sshd) say where time went.
    Use it as a context manager or call .stop()."""
    return TestHosts(n=n, jump=jump, **kw).start()


# --------------------------------------------------------------------------------------------
# Exit hooks: atexit, SIGTERM, SIGHUP (SIGINT raises KeyboardInterrupt -> __exit__/atexit)

def _stop_all():
    with _LIVE_LOCK:
        live = [x for x in _LIVE if x.pid == os.getpid() and not x.detach]
    for x in live:
        try:
            x.stop()
        except Exception as e:
            print(f"tests/hosts: cleanup of {x.tag} at exit: {e}", file=sys.stderr)


def _on_signal(sig, frame):
    _stop_all()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


def _install_exit_hooks():
    if _ONCE.get("hooks"):
        return
    _ONCE["hooks"] = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_signal)


# --------------------------------------------------------------------------------------------
# CLI (tests/hosts/hosts)

def _print_status(h, out=sys.stdout):
    print(f"workdir   {h.workdir}", file=out)
    print(f"subnets   {h.subnet} (bridge {h.bridge})"
          + (f", hidden {h.hidden_subnet} (behind {h.jump.name})" if h.jump else ""), file=out)
    print(f"ssh       ssh -F {h.ssh_config_path} <name> [command]", file=out)
    print(f"key       {h.key_path} (also id_rsa, id_ecdsa)", file=out)
    for x in h.all_hosts:
        state = "up" if x.sshd_up and x.link_up and not x.frozen else "DOWN"
        extra = f" via {x.via.name}" if x.via else ""
        print(f"  {x.name:<5} {x.user}@{x.addr}:{x.port} netns {x.netns} {state} "
              f"gpus={x.gpus}{extra}", file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tests/hosts/hosts",
                                 description="real SSH test hosts in network namespaces")
    ap.add_argument("-w", "--workdir", default=CLI_WORKDIR,
                    help=f"state directory of the CLI's run (default {CLI_WORKDIR})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="start N hosts and leave them running")
    p.add_argument("n", type=int, nargs="?", default=4)
    p.add_argument("--jump", action="store_true", help="add a jump host")
    p.add_argument("--hidden", type=int, default=None,
                   help="how many of the N are only reachable via the jump host "
                        "(default N//2 with --jump)")
    p.add_argument("--gpus", default="none", help="GPU spec for every host")
    p.add_argument("--foreground", action="store_true",
                   help="stay in the foreground; Ctrl-C tears down")
    sub.add_parser("down", help="tear the CLI's run down")
    sub.add_parser("status", help="show hosts")
    p = sub.add_parser("ssh", help="ssh to a host by name")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("gpus", help="set a host's GPUs")
    p.add_argument("name")
    p.add_argument("spec")
    p = sub.add_parser("hostdown", help="make a host unreachable")
    p.add_argument("name")
    p.add_argument("--kind", default="link", choices=("link", "sshd", "hang"))
    p = sub.add_parser("hostup", help="bring a host back")
    p.add_argument("name")
    p = sub.add_parser("rotate", help="new host keys for a host")
    p.add_argument("name")
    p = sub.add_parser("cleanup", help="remove leftovers of dead runs")
    p.add_argument("--all", action="store_true", help="also the CLI's detached run")
    p = sub.add_parser("bench", help="time start/stop of N hosts")
    p.add_argument("n", type=int, nargs="?", default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--jump", action="store_true")
    a = ap.parse_args(argv)
    wd = os.path.abspath(a.workdir)

    def attached():
        if not os.path.exists(os.path.join(wd, "state.json")):
            sys.exit(f"no run in {wd} (tests/hosts/hosts up first)")
        h = TestHosts.load(wd)
        if h.stopped:
            sys.exit(f"the run in {wd} is stopped")
        return h

    if a.cmd == "up":
        if os.path.exists(os.path.join(wd, "state.json")):
            old = TestHosts.load(wd)
            if not old.stopped:
                sys.exit(f"a run is already up in {wd}: `tests/hosts/hosts down` first")
        h = TestHosts(n=a.n, jump=a.jump, hidden=a.hidden, workdir=wd, gpus=a.gpus,
                      detach=not a.foreground)
        h.start()
        _print_status(h)
        print(f"started in {h.startup_seconds:.2f}s", file=sys.stderr)
        if a.foreground:
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
            h.stop()
        return 0
    if a.cmd == "down":
        if not os.path.exists(os.path.join(wd, "state.json")):
            print(f"nothing in {wd}", file=sys.stderr)
            return 0
        h = TestHosts.load(wd)
        left = _teardown(h.to_dict())
        if left:
            print("left: " + ", ".join(left), file=sys.stderr)
            return 1
        return 0
    if a.cmd == "status":
        _print_status(attached())
        return 0
    if a.cmd == "ssh":
        h = attached()
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        os.execv(SSH, h.ssh_argv(a.name, " ".join(cmd) if cmd else None))
    if a.cmd == "gpus":
        h = attached()
        h.set_gpus(a.name, a.spec)
        h.save()
        return 0
    if a.cmd in ("hostdown", "hostup", "rotate"):
        h = attached()
        if a.cmd == "hostdown":
            h.down(a.name, kind=a.kind)
        elif a.cmd == "hostup":
            h.up(a.name)
        else:
            h.rotate_host_key(a.name)
            h.write_known_hosts()
        return 0
    if a.cmd == "cleanup":
        for r in cleanup_stale(include_detached=a.all):
            print(f"removed {r}")
        return 0
    if a.cmd == "bench":
        for i in range(a.repeat):
            t0 = time.monotonic()
            h = start_many(a.n, jump=a.jump)
            up = time.monotonic() - t0
            t1 = time.monotonic()
            h.stop()
            down = time.monotonic() - t1
            ph = " ".join(f"{k}={v:.3f}" for k, v in h.timings.items() if k != "total")
            print(f"{a.n} hosts: up {up:.3f}s ({ph}), down {down:.3f}s")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
