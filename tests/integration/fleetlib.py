"""Shared helpers for the fleetfs integration tests (imported by conftest.py and the tests).

Everything here talks to a real mount through ordinary syscalls or real tools; nothing
reaches into the daemon.  A `Fleet` is one state directory + one mountpoint + (at most) one
running daemon started in the foreground (-f) so the test owns its pid.
"""
import ctypes
import os
import re
import signal
import subprocess
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("FLEETFS_BIN") or os.path.join(REPO, "fleetfs")

MOUNT_TIMEOUT = 10.0
FSTYPE = "fuse.fleetfs"

# --------------------------------------------------------------------------------------------
# Configs used all over the suite.  Secrets are long and distinctive so a grep over the state
# directory, the events files or the daemon's stderr cannot match anything by accident.

LAMBDA_KEY = "lmbdSECRETkey7f3a9c1e5b2d48aa"
LAMBDA_KEY2 = "lmbdSECRETkeyTWO0c9d8e7f6a5b4"
AWS_ACCESS = "AKIAEXAMPLE7Q2W3E4R5T"
AWS_SECRET = "awsSECRETkey9r8t7y6u5i4o3p2a1s0dfghjkl"

LAMBDA = ("type: lambda\n"
          "creds:\n"
          "  type: api_key\n"
          f"  api_key: {LAMBDA_KEY}\n").encode()

# Same backend, different key and with a comment (comments must be kept byte for byte).
LAMBDA_B = ("# lambda, second key\n"
            "type: lambda\n"
            "creds:\n"
            "  type: api_key\n"
            f"  api_key: {LAMBDA_KEY2}   # rotated\n").encode()

# `type:` omitted: allowed in backends/lambda/.
LAMBDA_NOTYPE = ("creds:\n"
                 "  type: api_key\n"
                 f"  api_key: {LAMBDA_KEY}\n").encode()

AWS = ("type: aws\n"
       "creds:\n"
       "  type: access_key\n"
       f"  access_key: {AWS_ACCESS}\n"
       f"  secret_key: {AWS_SECRET}\n"
       "regions: [us-east-1]\n").encode()

AWS_WEST = AWS.replace(b"us-east-1", b"us-west-2")

# Invalid variants of LAMBDA: (id, content, field expected in the message, 1-based line or None)
LAMBDA_UNKNOWN_KEY = LAMBDA + b"foo: 1\n"                      # line 5, field foo
LAMBDA_REGIONS_INT = LAMBDA + b"regions: 5\n"                  # line 5, field regions
LAMBDA_NO_CREDS = b"type: lambda\nregions: [us-west-1]\n"       # field creds
LAMBDA_SYNTAX = b"type: lambda\ncreds: [unclosed\n  api_key: x\n"
LAMBDA_TYPE_GCP = LAMBDA.replace(b"type: lambda\n", b"type: gcp\n", 1)


# --------------------------------------------------------------------------------------------
# Processes

def run(cmd, timeout=60, check=False, input=None, env=None, cwd=None, text=True):
    """subprocess.run with a timeout and captured output; returns CompletedProcess."""
    e = dict(os.environ)
    e.setdefault("LC_ALL", "C.UTF-8")
    if env:
        e.update(env)
    p = subprocess.run(cmd, capture_output=True, timeout=timeout, input=input, env=e, cwd=cwd,
                       text=text, shell=isinstance(cmd, str))
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd!r} exited {p.returncode}\nstdout: {p.stdout}\n"
                             f"stderr: {p.stderr}")
    return p


def unescape_mount_field(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounts():
    """[(mountpoint, fstype, source, majmin)] from /proc/self/mountinfo (no syscall on the fs)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            out.append((unescape_mount_field(parts[4]), parts[sep + 1],
                        unescape_mount_field(parts[sep + 2]), parts[2]))
    return out


def mount_entry(mnt):
    mnt = os.path.realpath(mnt)
    found = None
    for m in mounts():
        if m[0] == mnt:
            found = m  # the last one is the top of the stack
    return found


def is_fleet_mounted(mnt):
    e = mount_entry(mnt)
    return e is not None and e[1] == FSTYPE


def proc_mounts_has(mnt, fstype=FSTYPE):
    mnt = os.path.realpath(mnt)
    with open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if unescape_mount_field(p[1]) == mnt and p[2] == fstype:
                return True
    return False


def wait_until(pred, timeout=MOUNT_TIMEOUT, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def fusermount_u(mnt, lazy=False):
    args = ["fusermount3", "-uz" if lazy else "-u", mnt]
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return None


def force_unmount(mnt):
    """Unmount whatever fleetfs is on mnt: -u, then -uz, then umount -l."""
    for _ in range(3):
        if mount_entry(mnt) is None or mount_entry(mnt)[1] not in (FSTYPE, "fuse"):
            return
        r = fusermount_u(mnt)
        if r is not None and r.returncode == 0:
            continue
        fusermount_u(mnt, lazy=True)
    if mount_entry(mnt) is not None and mount_entry(mnt)[1] == FSTYPE:
        subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=15)


def pids_of_binary(path_fragment):
    """Pids of running fleetfs processes whose command line contains path_fragment."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            exe = os.readlink(f"/proc/{d}/exe")
        except OSError:
            continue
        if not exe.endswith("/fleetfs") and not (argv and argv[0].endswith(b"fleetfs")):
            continue
        if any(path_fragment.encode() in a for a in argv):
            out.append(int(d))
    return out


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
        return st not in ("Z", "X")
    except OSError:
        return False


def check_answers(mnt, log=lambda: ""):
    """Fail fast (instead of hanging a test) when a fresh mount does not answer a stat."""
    try:
        r = subprocess.run(["stat", "-c", "%i", mnt, os.path.join(mnt, "projects")],
                           capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{mnt} is mounted but stat() does not return within 5s; "
                             f"log:\n{log()[-3000:]}")
    if r.returncode != 0:
        raise AssertionError(f"stat on the fresh mount failed: {r.stderr}")


def conn_id(mnt):
    """The FUSE connection number of the mount on mnt (its st_dev minor), read from
    mountinfo: stat() on a wedged mount would hang."""
    real = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == real:
                return int(parts[2].split(":")[1])
    return None


def abort_connection(mnt):
    """Free a wedged mount the only way there is: the fusectl abort file."""
    conn = conn_id(mnt)
    if conn is None:
        return
    ctl = "/sys/fs/fuse/connections"
    if not os.path.exists(os.path.join(ctl, str(conn))):
        subprocess.run(["mount", "-t", "fusectl", "none", ctl], capture_output=True)
    try:
        with open(os.path.join(ctl, str(conn), "abort"), "w") as f:
            f.write("1")
    except OSError:
        pass


def threads_of(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"/proc/{pid}/task/{t}/wchan") as f:
                    wchan = f.read()
                out.append(f"{t}:{state}:{wchan}")
            except OSError:
                pass
    except OSError:
        pass
    return out


# Registry of everything the suite started, for the watchdog and the session safety net.
REGISTRY_LOCK = threading.Lock()
LIVE_FLEETS = []


class Fleet:
    """One state dir + mountpoint + foreground daemon."""

    def __init__(self, base, name, state=None, mnt=None, opts=(), args=()):
        self.base = base
        self.name = name
        self.state = state or os.path.join(base, name + "-state")
        self.mnt = mnt or os.path.join(base, name + "-mnt")
        os.makedirs(self.mnt, exist_ok=True)
        self.opts = list(opts)
        self.args = list(args)
        self.proc = None
        self.logpath = os.path.join(base, name + ".log")
        self.starts = 0
        self.killed = False  # we SIGKILLed it on purpose
        self.exit_codes = []
        with REGISTRY_LOCK:
            LIVE_FLEETS.append(self)

    # -- lifecycle -------------------------------------------------------------------------
    def cmdline(self):
        extra = [] if any(x.startswith("catalog=") for x in self.opts) else ["catalog=none"]
        o = ",".join([f"state={self.state}"] + extra + self.opts)
        return [BIN, "-f", *self.args, "-o", o, self.mnt]

    def start(self, timeout=MOUNT_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        self.starts += 1
        self.killed = False
        log = open(self.logpath, "ab")
        log.write(f"==== start {self.starts}: {' '.join(self.cmdline())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.cmdline(), stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        ok = wait_until(lambda: proc_mounts_has(self.mnt) or self.proc.poll() is not None,
                        timeout)
        if not ok or not proc_mounts_has(self.mnt):
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait(5)
            raise AssertionError(f"fleetfs did not mount {self.mnt} within {timeout}s "
                                 f"(exit {rc}); log:\n{self.log()[-4000:]}")
        check_answers(self.mnt, self.log)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None and is_fleet_mounted(self.mnt)

    def umount(self, timeout=10):
        """Clean unmount (fusermount3 -u, -uz if busy), wait for the daemon; returns its exit
        code (None if it had to be killed)."""
        if is_fleet_mounted(self.mnt):
            r = fusermount_u(self.mnt)
            if r is None or r.returncode != 0:
                fusermount_u(self.mnt, lazy=True)
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                rc = None
            self.exit_codes.append(rc)
        force_unmount(self.mnt)
        return rc

    def remount(self):
        rc = self.umount()
        assert rc == 0, f"daemon exited {rc} on unmount; log:\n{self.log()[-3000:]}"
        return self.start()

    def kill9(self):
        self.sigkill()
        fusermount_u(self.mnt, lazy=True)
        wait_until(lambda: not is_fleet_mounted(self.mnt), 5)

    def sigkill(self):
        """SIGKILL the daemon and reap it; the mount is left as the kernel has it. A daemon
        that does not die (a thread stuck in the kernel) fails the test, after its mount was
        freed through fusectl so that nothing else hangs."""
        assert self.proc is not None
        self.killed = True
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            # a thread stuck in the kernel keeps /dev/fuse open: free the mount, then fail
            stuck = threads_of(pid)
            abort_connection(self.mnt)
            self.proc.wait(10)
            raise AssertionError(f"the daemon did not die within 10 s of SIGKILL (threads "
                                 f"{stuck}); the mount needed a fusectl abort")

    def teardown(self):
        """Always leaves nothing mounted and no daemon running. Returns a crash description
        or None."""
        crash = None
        try:
            if self.proc is not None and self.proc.poll() is not None and not self.killed:
                rc = self.proc.returncode
                if rc < 0 and rc != -signal.SIGKILL:
                    crash = f"daemon died with signal {-rc}"
            self.umount()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            force_unmount(self.mnt)
            with REGISTRY_LOCK:
                if self in LIVE_FLEETS:
                    LIVE_FLEETS.remove(self)
        return crash

    def emergency_kill(self):
        """Watchdog: unblock anything stuck on this mount."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        fusermount_u(self.mnt, lazy=True)

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- paths -----------------------------------------------------------------------------
    def p(self, *parts):
        return os.path.join(self.mnt, *parts)

    def bdir(self, backend, project="main"):
        return self.p("projects", project, "backends", backend)

    def cfg(self, backend, project="main"):
        return os.path.join(self.bdir(backend, project), "config.yml")

    def add_backend(self, backend, content, project="main"):
        pdir = self.p("projects", project)
        if not os.path.isdir(pdir):
            os.mkdir(pdir)
        d = self.bdir(backend, project)
        if not os.path.isdir(d):
            os.mkdir(d)
        write_file(os.path.join(d, "config.yml"), content)
        return os.path.join(d, "config.yml")

    def events(self, project=None):
        path = self.p("events") if project is None else self.p("projects", project, "events")
        return read_lines(path)

    def status(self, backend, project="main"):
        with open(os.path.join(self.bdir(backend, project), "status"), "rb") as f:
            raw = f.read()
        doc = yaml.safe_load(raw)
        assert isinstance(doc, dict), f"status is not a YAML mapping: {raw!r}"
        return doc


# --------------------------------------------------------------------------------------------
# File helpers

def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data, mode="wb"):
    """open/write/close; close() errors propagate (that is the commit point)."""
    f = open(path, mode, buffering=0)
    try:
        f.write(data)
    except BaseException:
        try:
            f.close()
        except OSError:
            pass
        raise
    f.close()


def write_fd(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """Raw-syscall writer: returns (write_error, close_error) as errno or None."""
    fd = os.open(path, flags, 0o600)
    werr = cerr = None
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:off + (1 << 20)])
    except OSError as e:
        werr = e.errno
    try:
        os.close(fd)
    except OSError as e:
        cerr = e.errno
    return werr, cerr


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    return data.decode("utf-8", "replace").splitlines()


ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z \S")


def assert_event_lines_wellformed(lines):
    for ln in lines:
        assert ISO_RE.match(ln), f"malformed event line {ln!r}"


def find_reason(lines, relpath, field, line=None):
    """The first event line naming `relpath:LINE: FIELD...`, or None."""
    if line is None:
        rx = re.compile(re.escape(relpath) + r":\d+: " + re.escape(field) + r"\b")
    else:
        rx = re.compile(re.escape(relpath) + rf":{line}: " + re.escape(field) + r"\b")
    for ln in lines:
        if rx.search(ln):
            return ln
    return None


def assert_rejected(fleet, backend, field, line=None, project="main", before=0):
    """The refusal of a write to projects/<p>/backends/<b>/config.yml is journaled in
    projects/<p>/events (after index `before`) and shown in the backend's status."""
    rel = f"projects/{project}/backends/{backend}/config.yml"
    lines = fleet.events(project)
    new = lines[before:]
    hit = find_reason(new, rel, field, line)
    assert hit, (f"no event '{rel}:{line or 'N'}: {field} ...' in projects/{project}/events; "
                 f"new lines: {new!r}")
    st = fleet.status(backend, project)
    le = st.get("last_error")
    assert le, f"status has no last_error after a refused write: {st!r}"
    assert "config.yml:" in str(le) and field in str(le), \
        f"status last_error does not name config.yml:LINE: {field}: {le!r}"
    return hit


def errno_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except OSError as e:
        return e.errno
    return 0


# --------------------------------------------------------------------------------------------
# renameat2 through libc (Python has no wrapper).

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(src, dst, flags):
    AT_FDCWD = -100
    r = _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst),
                        ctypes.c_uint(flags))
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), src)


# --------------------------------------------------------------------------------------------
# The LMDB store, from the outside (lmdb-utils), for the schema test.

def set_meta_schema(state, value):
    """Rewrite meta/schema in the store at `state` with mdb_dump/mdb_load; returns the new
    dump text for verification."""
    d = run(["mdb_dump", "-p", "-s", "meta", state], check=True, timeout=30).stdout
    lines = d.splitlines()
    hdr_end = lines.index("HEADER=END")
    body = lines[hdr_end + 1:]
    out = lines[:hdr_end + 1]
    i = 0
    done = False
    while i < len(body) and body[i] != "DATA=END":
        k, v = body[i], body[i + 1]
        if k.strip().startswith("schema"):
            nul = "\\00" if v.endswith("\\00") else ""
            v = f" {value}{nul}"
            done = True
        out += [k, v]
        i += 2
    assert done, f"no schema key in meta: {d}"
    out.append("DATA=END")
    run(["mdb_load", "-s", "meta", state], input="\n".join(out) + "\n", check=True, timeout=30)
    return run(["mdb_dump", "-p", "-s", "meta", state], check=True, timeout=30).stdout


def scan_bytes_for(root, needles):
    """{(path, needle)} for every file under root whose bytes contain a needle."""
    hits = set()
    for dp, dn, fn in os.walk(root):
        for n in fn:
            p = os.path.join(dp, n)
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for nd in needles:
                if nd.encode() in data:
                    hits.add((p, nd))
    return hits
