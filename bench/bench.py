#!/usr/bin/python3
"""fleetfs benchmark: the same tree on fleetfs and on tmpfs, timed with ordinary tools.

    /usr/bin/python3 bench/bench.py [--projects N] [--backends 5] [--out FILE]

Builds N projects x B backends (types lambda, aws, runpod, vastai, vultr; each config.yml is
the matching examples/backends/<type>.yml, read at run time) on a fresh fleetfs mount, and
the same tree as plain files on a tmpfs; then times `ls -lR`, `cat` of every backend
config.yml and `rsync -aF` of the whole tree on both, plus the commit latency of 1,000
sequential config writes on fleetfs. See bench/README.md for what each figure means.

Python standard library only. Everything lives in one temporary directory that is removed
at the end; every mount made here (the fleetfs mount, the tmpfs) is unmounted in a finally
block, also on an error, Ctrl-C or SIGTERM.
"""
import argparse
import errno
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib  # noqa: E402
from benchlib import BIN, REPO, BenchError, log, loadavg, mount_fstype, pct  # noqa: E402,F401
EXAMPLES = os.path.join(REPO, "examples", "backends")
TYPES = ["lambda", "aws", "runpod", "vastai", "vultr"]
FSTYPE = "fuse.fleetfs"
MOUNT_TIMEOUT = 15.0
WARM_RUNS = 3
COMMIT_WRITES = 1000
TARGET_META_RATIO = 3.0
TARGET_COMMIT_P99_MS = 5.0
ENV = dict(os.environ, LC_ALL="C")


# ------------------------------------------------------------------------------ mounts

def mounts_under(root):
    root = os.path.realpath(root)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == root or mp.startswith(root + "/"):
                out.append(mp)
    return out


def fs_type_of(path):
    """Filesystem type holding path (longest mountpoint prefix), for the report."""
    path = os.path.realpath(path)
    best, typ = "", "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = parts[4].encode().decode("unicode_escape")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, typ = mp, parts[parts.index("-") + 1]
    return typ


class Fleet:
    """A fleetfs daemon in the foreground (-f), in its own session so that a Ctrl-C reaches
    only this script, which then unmounts cleanly."""

    def __init__(self, state, mnt, logpath):
        self.state, self.mnt, self.logpath = state, mnt, logpath
        self.proc = None
        os.makedirs(mnt, exist_ok=True)

    def start(self):
        logf = open(self.logpath, "ab")
        # offline: no catalog (offers don't matter here), provider APIs on a closed port
        self.proc = subprocess.Popen([BIN, "-f", "-o", f"state={self.state}", "-o",
                                      "catalog=none", self.mnt],
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True,
                                     env=dict(os.environ, **benchlib.offline_env()))
        logf.close()
        end = time.monotonic() + MOUNT_TIMEOUT
        while time.monotonic() < end:
            if mount_fstype(self.mnt) == FSTYPE:
                os.stat(os.path.join(self.mnt, "projects"))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        rc = self.proc.poll()
        if rc is None:
            self.proc.kill()
            self.proc.wait()
        raise BenchError(f"fleetfs did not mount {self.mnt} (exit {rc}); log:\n{self.log()}")

    def log(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        """Unmount (fusermount3 -u, retried while busy, then -uz) and reap the daemon."""
        if self.proc is None:
            return
        for attempt in range(20):
            if mount_fstype(self.mnt) != FSTYPE:
                break
            lazy = attempt >= 10
            subprocess.run(["fusermount3", "-uz" if lazy else "-u", self.mnt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if mount_fstype(self.mnt) == FSTYPE:
                time.sleep(0.2)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            log(f"fleetfs (pid {self.proc.pid}) did not exit after unmount; killing it")
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode not in (0, None):
            log(f"warning: fleetfs exited {self.proc.returncode}; log:\n{self.log()}")
        self.proc = None

    def restart(self):
        self.stop()
        self.start()


def mount_tmpfs(base):
    """A tmpfs for the plain-file tree: mounted here if we may, else a dir on /dev/shm.
    Returns (root, mounted_by_us)."""
    d = os.path.join(base, "tmpfs")
    os.makedirs(d)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g,mode=0700", "fleetfs-bench", d],
                       capture_output=True, text=True)
    if r.returncode == 0 and mount_fstype(d) == "tmpfs":
        return d, True
    if fs_type_of("/dev/shm") != "tmpfs":
        raise BenchError(f"cannot mount a tmpfs ({r.stderr.strip()}) and /dev/shm is not one")
    log(f"note: mount -t tmpfs failed ({r.stderr.strip()}); using /dev/shm")
    return tempfile.mkdtemp(prefix="fleetfs-bench-", dir="/dev/shm"), False


# ------------------------------------------------------------------------------ errors

def events_tail(mnt, project=None, n=15):
    p = os.path.join(mnt, "events") if project is None else \
        os.path.join(mnt, "projects", project, "events")
    try:
        with open(p, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"(cannot read {p}: {e})\n"


def fs_failure(what, e, fleet=None, project=None):
    """A BenchError that says what failed, with errno and the fleetfs events."""
    code = errno.errorcode.get(e.errno, "?") if isinstance(e, OSError) else "-"
    msg = f"{what} failed: {code} ({e})"
    if fleet is not None:
        msg += f"\n--- {fleet.mnt}/events (last lines):\n" + events_tail(fleet.mnt)
        if project:
            msg += f"--- projects/{project}/events (last lines):\n" + \
                events_tail(fleet.mnt, project)
    return BenchError(msg)


# ------------------------------------------------------------------------------ tree

def write_file(path, data, create=True):
    flags = os.O_WRONLY | os.O_TRUNC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)  # fleetfs validates and commits here


def build_tree(root, projects, types, configs, fleet=None):
    """mkdir every project and backend dir and write each config.yml; returns seconds."""
    t0 = time.perf_counter()
    for p in projects:
        step = f"mkdir projects/{p}"
        try:
            os.mkdir(os.path.join(root, "projects", p))
            if fleet is None:
                os.mkdir(os.path.join(root, "projects", p, "backends"))
            for t in types:
                d = os.path.join(root, "projects", p, "backends", t)
                step = f"mkdir projects/{p}/backends/{t}"
                os.mkdir(d)
                step = f"write projects/{p}/backends/{t}/config.yml"
                write_file(os.path.join(d, "config.yml"), configs[t])
        except OSError as e:
            raise fs_failure(step, e, fleet, p)
    return time.perf_counter() - t0


def mirror_generated(mnt, root):
    """Copy what fleetfs generates (README, events, status, .rsync-filter, the root
    config.yml) into the plain tree so both trees hold the same names and sizes. mtimes are
    copied too (they don't matter to the timings)."""
    n = 0
    for dp, dns, fns in os.walk(mnt):
        rel = os.path.relpath(dp, mnt)
        for fn in fns:
            dst = os.path.normpath(os.path.join(root, rel, fn))
            if os.path.exists(dst):
                continue  # the config.yml files were written by build_tree
            src = os.path.join(dp, fn)
            parts = rel.split(os.sep)
            if len(parts) == 3 and parts[0] == "projects" and parts[2] == "ssh":
                # a project's SSH key is made on its first read (an RSA key each: minutes for
                # 1000 projects); the timings only need the same names and sizes
                data = b"\0" * os.lstat(src).st_size
            else:
                with open(src, "rb") as f:
                    data = f.read()
            write_file(dst, data)
            n += 1
        for dn in dns:
            os.makedirs(os.path.join(root, rel, dn), exist_ok=True)
    return n


def tree_census(root):
    dirs = files = size = 0
    for dp, dns, fns in os.walk(root):
        dirs += len(dns)
        for fn in fns:
            files += 1
            size += os.lstat(os.path.join(dp, fn)).st_size
    return dirs, files, size


# ------------------------------------------------------------------------------ timing

def run_timed(cmd, cwd=None):
    """Wall time of one command, output to /dev/null; fails loudly on a non-zero exit."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV,
                       cwd=cwd, shell=isinstance(cmd, str))
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"{cmd!r} exited {r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}")
    return dt


def measure(op, root, scratch, before_cold=None):
    """One cold run (after before_cold(): a fresh mount for fleetfs) and WARM_RUNS more;
    returns (cold, median of the warm runs, all runs)."""
    if before_cold:
        before_cold()
    runs = []
    for i in range(1 + WARM_RUNS):
        if op == "ls":
            runs.append(run_timed(["ls", "-lR", root]))
        elif op == "cat":
            runs.append(run_timed(f"find '{root}/projects' -name config.yml -exec cat {{}} + "
                                  f"> /dev/null"))
        elif op == "rsync":
            dest = os.path.join(scratch, f"rsync-{i}")
            runs.append(run_timed(["rsync", "-aF", root + "/", dest + "/"]))
            shutil.rmtree(dest)
        else:
            raise ValueError(op)
    return runs[0], statistics.median(runs[1:]), runs


def commit_latency(fleet, path, base_cfg, n):
    """n sequential writes (open O_TRUNC, write, close) of a valid config; ms per write."""
    lat = []
    for i in range(n):
        data = base_cfg + f"# bench write {i}\n".encode()
        t0 = time.perf_counter_ns()
        try:
            write_file(path, data, create=False)
        except OSError as e:
            raise fs_failure(f"commit write {i} of {path}", e, fleet,
                             path.split("/projects/")[1].split("/")[0])
        lat.append((time.perf_counter_ns() - t0) / 1e6)
    return lat


# ------------------------------------------------------------------------------ report

def machine_info(tmpbase):
    m = benchlib.machine_info()
    m["statefs"] = fs_type_of(tmpbase)
    m["rsync"] = (benchlib.out(["rsync", "--version"]).splitlines() or ["?"])[0]
    return m


def fmt_s(x):
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def ratio(a, b):
    return a / b if b > 0 else float("inf")


def verdict(ok):
    return "PASS" if ok else "FAIL"


def report(R, M, args, out_path):
    rows = [
        ("build tree (mkdir + write config.yml per backend)", R["build_fleet"], R["build_tmpfs"]),
        ("ls -lR, cold (first run)", R["ls"][0], R["ls_t"][0]),
        (f"ls -lR, warm (median of {WARM_RUNS})", R["ls"][1], R["ls_t"][1]),
        ("cat every backend config.yml, cold", R["cat"][0], R["cat_t"][0]),
        (f"cat every backend config.yml, warm (median of {WARM_RUNS})", R["cat"][1], R["cat_t"][1]),
        ("rsync -aF whole tree, cold", R["rsync"][0], R["rsync_t"][0]),
        (f"rsync -aF whole tree, warm (median of {WARM_RUNS})", R["rsync"][1], R["rsync_t"][1]),
    ]
    lat = sorted(R["lat"])
    p50, p90, p99, mx = pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[-1]
    meta_ratio = ratio(R["ls"][1], R["ls_t"][1])
    meta_ok = meta_ratio <= TARGET_META_RATIO
    commit_ok = p99 < TARGET_COMMIT_P99_MS
    nb = args.projects * args.backends

    # terminal table
    w = max(len(r[0]) for r in rows)
    print()
    print(f"fleetfs bench: {args.projects} projects x {args.backends} backends "
          f"({nb} config.yml), commit {M['commit']}, {M['nproc']} cpus, {M['kernel']}")
    print(f"{'':{w}}  {'fleetfs':>9}  {'tmpfs':>9}  {'ratio':>7}")
    for name, f, t in rows:
        print(f"{name:{w}}  {fmt_s(f):>9}  {fmt_s(t):>9}  {ratio(f, t):>6.1f}x")
    print(f"{'root config.yml: cat (renders every backend)':{w}}  {fmt_s(R['rootcat']):>9}")
    print(f"commit latency, {len(lat)} writes (ms): p50 {p50:.2f}  p90 {p90:.2f}  "
          f"p99 {p99:.2f}  max {mx:.2f}")
    print(f"targets: metadata (ls -lR warm) within {TARGET_META_RATIO:g}x tmpfs: "
          f"{meta_ratio:.1f}x {verdict(meta_ok)};  commit p99 < {TARGET_COMMIT_P99_MS:g} ms: "
          f"{p99:.2f} ms {verdict(commit_ok)}")

    # markdown
    md = []
    md.append("# fleetfs benchmark results\n")
    md.append(f"Produced by `bench/bench.py` (see [README.md](README.md) for what each figure "
              f"means); re-run with `make bench`.\n")
    md.append("| | |\n|---|---|")
    md.append(f"| date | {M['date']} |")
    md.append(f"| machine | {M['nproc']} cpus ({M['cpu']}), {M['mem']} RAM |")
    md.append(f"| kernel | `{M['kernel']}` ({M['uname']}) |")
    md.append(f"| fleetfs commit | `{M['commit']}` ({M['version']}) |")
    md.append(f"| fleetfs state dir on | {M['statefs']} |")
    md.append(f"| plain tree on | {R['tmpfs_kind']} |")
    md.append(f"| tree | {args.projects} projects x {args.backends} backends "
              f"({', '.join(TYPES[:args.backends])}) = {nb} config.yml; "
              f"{R['census'][0]} dirs, {R['census'][1]} files, {R['census'][2]} bytes as "
              f"seen through the mount |")
    md.append(f"| tools | {M['rsync']}; python {M['python']} |")
    md.append(f"| load average (1/5/15 min) | {M['load']} at the start, {R['load_end']} at "
              f"the end (the bench itself adds about 1) |")
    md.append(f"| total bench time | {R['total']:.0f} s |\n")
    md.append("## Targets\n")
    md.append("| target | measured | |\n|---|---|---|")
    md.append(f"| metadata within {TARGET_META_RATIO:g}x tmpfs (`ls -lR`, warm) | "
              f"{meta_ratio:.2f}x | **{verdict(meta_ok)}** |")
    md.append(f"| metadata, cold (`ls -lR` first run after a fresh mount) | "
              f"{ratio(R['ls'][0], R['ls_t'][0]):.2f}x | "
              f"{verdict(ratio(R['ls'][0], R['ls_t'][0]) <= TARGET_META_RATIO)} |")
    md.append(f"| commit p99 under {TARGET_COMMIT_P99_MS:g} ms | {p99:.2f} ms | "
              f"**{verdict(commit_ok)}** |\n")
    md.append("## Tree operations (wall time)\n")
    md.append("| operation | fleetfs | tmpfs | fleetfs / tmpfs |\n|---|---:|---:|---:|")
    for name, f, t in rows:
        md.append(f"| {name} | {fmt_s(f)} | {fmt_s(t)} | {ratio(f, t):.1f}x |")
    md.append(f"| `cat` of the root config.yml (renders all {nb} backends) | "
              f"{fmt_s(R['rootcat'])} | | |\n")
    md.append(f"Build: {R['build_fleet'] / nb * 1000:.2f} ms per backend on fleetfs "
              f"(mkdir of its project dir amortised in), "
              f"{R['build_tmpfs'] / nb * 1000:.3f} ms on tmpfs.\n")
    md.append("All runs (s), cold first:\n")
    for key, label in (("ls", "ls -lR"), ("cat", "cat"), ("rsync", "rsync -aF")):
        md.append(f"- {label}: fleetfs {', '.join(f'{x:.3f}' for x in R[key][2])}; "
                  f"tmpfs {', '.join(f'{x:.3f}' for x in R[key + '_t'][2])}")
    md.append("")
    md.append(f"## Commit latency ({len(lat)} sequential writes of a valid config.yml)\n")
    md.append("Each write is `open(O_WRONLY|O_TRUNC)`, `write`, `close` of "
              f"`projects/{R['lat_path']}`, timed with `time.perf_counter_ns` "
              "including the close (where fleetfs validates and commits).\n")
    md.append("| p50 | p90 | p99 | max | mean |\n|---:|---:|---:|---:|---:|")
    md.append(f"| {p50:.2f} ms | {p90:.2f} ms | {p99:.2f} ms | {mx:.2f} ms | "
              f"{statistics.mean(lat):.2f} ms |\n")
    text = "\n".join(md)
    d = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(d, exist_ok=True)
    with open(out_path, "w") as f:
        f.write(text)
    print(f"\nwrote {out_path}")


# ------------------------------------------------------------------------------ main

def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=int, default=None, help="projects (default 1000)")
    ap.add_argument("--small", action="store_true",
                    help="a quick run for CI: 20 projects, 50 commits, 1 warm run (results "
                         "go to --out, not to bench/RESULTS.md unless named)")
    ap.add_argument("--backends", type=int, default=len(TYPES),
                    help=f"backends per project, 1..{len(TYPES)} (default {len(TYPES)}: "
                         f"{', '.join(TYPES)})")
    ap.add_argument("--out", default=None,
                    help="markdown results file (default bench/RESULTS.md; with --small a "
                         "file in the temporary directory)")
    ap.add_argument("--tmpdir", default=None,
                    help="where the temporary directory (fleetfs state dir, mountpoints) goes "
                         "(default: $TMPDIR or /tmp)")
    args = ap.parse_args()
    global COMMIT_WRITES, WARM_RUNS
    if args.projects is None:
        args.projects = 20 if args.small else 1000
    if args.small:
        COMMIT_WRITES, WARM_RUNS = 50, 1
    if args.out is None:
        args.out = (os.path.join(tempfile.gettempdir(), "fleetfs-bench-small.md") if args.small
                    else os.path.join(REPO, "bench", "RESULTS.md"))
    if args.projects < 1:
        ap.error("--projects must be at least 1")
    if not 1 <= args.backends <= len(TYPES):
        ap.error(f"--backends must be 1..{len(TYPES)}")
    if not os.access(BIN, os.X_OK):
        ap.error(f"{BIN} not found: run `make` first")
    for tool in ("ls", "find", "cat", "rsync", "fusermount3"):
        if not shutil.which(tool):
            ap.error(f"{tool} is needed")
    signal.signal(signal.SIGINT, on_signal)  # also when started with SIGINT ignored (a & job)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    types = TYPES[:args.backends]
    configs = {}
    for t in types:
        with open(os.path.join(EXAMPLES, t + ".yml"), "rb") as f:
            configs[t] = f.read()
    projects = [f"p{i:04d}" for i in range(args.projects)]

    t_start = time.perf_counter()
    base = tempfile.mkdtemp(prefix="fleetfs-bench-", dir=args.tmpdir)
    fleet = None
    tmp_root, tmp_mounted = None, False
    R = {}
    ok = False
    try:
        M = machine_info(base)
        fleet = Fleet(os.path.join(base, "state"), os.path.join(base, "mnt"),
                      os.path.join(base, "fleetfs.log"))
        fleet.start()
        tmp_root, tmp_mounted = mount_tmpfs(base)
        R["tmpfs_kind"] = ("a tmpfs mounted by the bench" if tmp_mounted
                           else "/dev/shm (tmpfs; mounting one was not possible)")
        scratch = os.path.join(tmp_root, "scratch")  # rsync destinations, on the tmpfs
        plain = os.path.join(tmp_root, "tree")
        os.makedirs(scratch)
        os.makedirs(os.path.join(plain, "projects"))

        nb = args.projects * len(types)
        log(f"building {args.projects} x {len(types)} = {nb} backends on fleetfs ...")
        R["build_fleet"] = build_tree(fleet.mnt, projects, types, configs, fleet)
        log(f"  {R['build_fleet']:.1f} s; on tmpfs ...")
        R["build_tmpfs"] = build_tree(plain, projects, types, configs)
        log(f"  {R['build_tmpfs']:.2f} s; mirroring the generated files into the plain tree")
        mirror_generated(fleet.mnt, plain)
        R["census"] = tree_census(fleet.mnt)
        census_t = tree_census(plain)
        if R["census"][:2] != census_t[:2]:
            raise BenchError(f"the trees differ: fleetfs {R['census']} vs tmpfs {census_t}")

        for op in ("ls", "cat", "rsync"):
            log(f"timing {op} on fleetfs (fresh mount, then {WARM_RUNS} warm runs) ...")
            R[op] = measure(op, fleet.mnt, scratch, before_cold=fleet.restart)
            log(f"timing {op} on tmpfs ...")
            R[op + "_t"] = measure(op, plain, scratch)

        t0 = time.perf_counter()
        with open(os.path.join(fleet.mnt, "config.yml"), "rb") as f:
            f.read()
        R["rootcat"] = time.perf_counter() - t0

        rel = f"{projects[0]}/backends/{types[0]}/config.yml"
        R["lat_path"] = rel
        log(f"timing {COMMIT_WRITES} commits of projects/{rel} ...")
        R["lat"] = commit_latency(fleet, os.path.join(fleet.mnt, "projects", rel),
                                  configs[types[0]], COMMIT_WRITES)
        with open(os.path.join(fleet.mnt, "projects", rel), "rb") as f:
            last = f.read()
        if last != configs[types[0]] + f"# bench write {COMMIT_WRITES - 1}\n".encode():
            raise BenchError(f"projects/{rel} does not hold the last write")
        R["total"] = time.perf_counter() - t_start
        R["load_end"] = loadavg()
        ok = True
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
    except BenchError as e:
        log(f"bench failed: {e}")
    finally:
        if fleet is not None:
            fleet.stop()
        tdir = os.path.join(base, "tmpfs")  # ours even if an interrupt beat the bookkeeping
        if mount_fstype(tdir) == "tmpfs":
            subprocess.run(["umount", tdir], stderr=subprocess.DEVNULL)
            if mount_fstype(tdir) == "tmpfs":
                subprocess.run(["umount", "-l", tdir], stderr=subprocess.DEVNULL)
        if tmp_root and not tmp_mounted:
            shutil.rmtree(tmp_root, ignore_errors=True)  # the /dev/shm fallback
        left = mounts_under(base)
        if left:
            log(f"warning: still mounted, not removing {base}: {left}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    if not ok:
        return 1
    report(R, M, args, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
