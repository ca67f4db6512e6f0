#!/usr/bin/python3
"""fleetfs SSH-fleet benchmark: probe times and live `status` read latency on real sshd hosts.

    /usr/bin/python3 bench/fleet_bench.py [--hosts 16] [--readers 32] [--reads 200]
                                          [--sustain 12] [--out bench/FLEET_RESULTS.md]

Starts N real OpenSSH test hosts in network namespaces (tests/hosts), mounts a fresh fleetfs
(its own state dir and mountpoint, `./fleetfs -f` in a subprocess, real intervals: no
FLEETFS_TIME_SCALE), then measures

  1. single-host probe time: per host, a fleet with just that host (fleets/s<i>.yml); time
     from the spec write's close() to that instance being idle (fleets/s<i>/status polled
     every 10 ms); the fleets are then removed and the bench waits until their directories
     are gone (a host belongs to one fleet only);
  2. the parallel case: one fleet (fleets/all.yml) with every host; close() to all idle;
     parallelism ratio = sum(single) / parallel (the engine has 8 workers);
  3. the latency of reading fleets/all/instances/<n>/status (live: re-checked over SSH when
     the last check is older than 5 s, readers of one instance share a check, at most 3 s
     of waiting): R threads x K reads, n cycling over the hosts; cold (every check older
     than 5 s) and steady state; then the same readers for --sustain seconds, long enough
     to include the rounds of re-checks.

Python standard library + yaml (Debian python3-yaml). Needs root (network namespaces).
See bench/README.md for what each figure means. The mount is always unmounted and the hosts
always stopped, also on an error, Ctrl-C or SIGTERM.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import yaml

import benchlib  # noqa: E402
from benchlib import BIN, REPO, BenchError, Mount, log, loadavg, mount_fstype, pct  # noqa: E402,F401
sys.path.insert(0, os.path.join(REPO, "tests", "hosts"))
import hosts as testhosts  # noqa: E402

POLL = 0.010             # status poll interval
SINGLE_TIMEOUT = 30.0    # one host: SSH connect timeout is 15 s
PARALLEL_TIMEOUT = 60.0
GONE_TIMEOUT = 60.0
CHECK_TTL = 5.0          # the daemon re-checks an instance whose last check is older than this
COLD_WAIT = 6.0          # so the read phase starts with every check older than CHECK_TTL
PROJECT = "main"
WORKERS = 8              # fs/main.c: engine_start(..., 8, ...)
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# ------------------------------------------------------------------------------ mount

# ------------------------------------------------------------------------------ fleets

def spec(name, hosts, key):
    lines = ["type: fleet", f"name: {name}", "ssh_config:", "  user: fleet",
             f"  identity_file: {key}", "  hosts:"]
    lines += [f"  - {h.addr}" for h in hosts]
    return ("\n".join(lines) + "\n").encode()


def write_spec(m, name, data):
    """open/write/close the spec; returns perf_counter() right after close() returned (the
    commit point: fleetfs validates and stores the spec, and wakes its engine, in close)."""
    path = m.p("fleets", name + ".yml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:])
    except OSError:
        os.close(fd)
        raise
    try:
        os.close(fd)
    except OSError as e:
        raise BenchError(f"writing fleets/{name}.yml failed at close: {e}; "
                         f"events:\n{tail(m.p('events'))}")
    return time.perf_counter()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tail(path, n=12):
    try:
        return "\n".join(read(path).decode("utf-8", "replace").splitlines()[-n:])
    except OSError as e:
        return f"({path}: {e})"


def fleet_status(m, name):
    """The fleet's status YAML, or None while it does not exist / is not parsable yet."""
    try:
        doc = yaml.load(read(m.p("fleets", name, "status")), Loader=Loader)
    except (OSError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) else None


def wait_idle(m, name, n, t0, timeout):
    """Poll fleets/<name>/status every POLL s until n instances are idle. Returns (seconds
    from t0 to the poll that saw all idle, {instance num: seconds from t0 to the first poll
    that saw it idle}, polls)."""
    first = {}
    polls = 0
    end = t0 + timeout
    st = None
    while True:
        st = fleet_status(m, name)
        now = time.perf_counter()
        polls += 1
        if st:
            for it in st.get("instances") or []:
                if it.get("status") == "idle" and it.get("num") not in first:
                    first[it.get("num")] = now - t0
            if (st.get("actual") or {}).get("idle") == n:
                return now - t0, first, polls
        if now > end:
            raise BenchError(f"fleets/{name}: not {n} idle {timeout:.0f} s after close(); "
                             f"status:\n{yaml.safe_dump(st) if st else '(none)'}\n"
                             f"events:\n{tail(m.p('fleets', name, 'events'))}")
        time.sleep(POLL)


def wait_gone(m, names, timeout):
    t0 = time.perf_counter()
    while True:
        left = [n for n in names if os.path.exists(m.p("fleets", n))]
        if not left:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise BenchError(f"fleet dirs still there {timeout:.0f} s after rm of the spec: "
                             f"{left}; status of {left[0]}:\n"
                             f"{tail(m.p('fleets', left[0], 'status'), 40)}")
        time.sleep(POLL)


# ------------------------------------------------------------------------------ measurements

def measure_single(m, net):
    key = net.key_path
    times, polls = [], 0
    for i, h in enumerate(net.hosts):
        name = f"s{i}"
        t0 = write_spec(m, name, spec(name, [h], key))
        dt, _, np = wait_idle(m, name, 1, t0, SINGLE_TIMEOUT)
        times.append(dt)
        polls += np
        log(f"  s{i} ({h.addr}): {dt * 1000:.0f} ms")
    names = [f"s{i}" for i in range(len(net.hosts))]
    t0 = time.perf_counter()
    for n in names:
        os.unlink(m.p("fleets", n + ".yml"))
    gone = wait_gone(m, names, GONE_TIMEOUT)
    log(f"  removed the {len(names)} single fleets; their dirs were gone after {gone:.2f} s "
        f"({time.perf_counter() - t0:.2f} s incl. the rm calls)")
    return {"times": times, "polls": polls, "gone": gone}


def measure_parallel(m, net):
    n = len(net.hosts)
    t0 = write_spec(m, "all", spec("all", net.hosts, net.key_path))
    dt, first, polls = wait_idle(m, "all", n, t0, PARALLEL_TIMEOUT)
    seen_at = time.perf_counter()
    log(f"  all {n} idle after {dt * 1000:.0f} ms")
    # every instance's status says idle, and the instance dirs are there
    insts = sorted(os.listdir(m.p("fleets", "all", "instances")), key=int)
    if insts != [str(i) for i in range(n)]:
        raise BenchError(f"fleets/all/instances holds {insts}, expected 0..{n - 1}")
    return {"time": dt, "first": first, "polls": polls, "seen_at": seen_at}


EXPECTED = b"status: idle\nreachable: true\n"
SLOW_MS = 50.0   # a read this slow waited for an SSH check (served from the store: ~1 ms)


def measure_reads(m, nhosts, readers, reads=None, duration=None):
    """readers threads reading fleets/all/instances/<n>/status, n = (t + j) % hosts, either
    `reads` times each or until `duration` seconds have passed. Each read is open + read to
    EOF + close, timed with perf_counter_ns. Returns the rows (reader, j, n, start ns, end ns,
    checked_at, check_age_s) and the unexpected contents."""
    paths = [m.p("fleets", "all", "instances", str(n), "status") for n in range(nhosts)]
    res = [None] * readers
    errs, bad = [], []
    barrier = threading.Barrier(readers + 1)
    deadline = [0]

    def reader(t):
        out = []
        try:
            barrier.wait()
            j = 0
            while (j < reads) if reads is not None else (time.perf_counter_ns() < deadline[0]):
                n = (t + j) % nhosts
                a = time.perf_counter_ns()
                fd = os.open(paths[n], os.O_RDONLY)
                try:
                    chunks = []
                    while True:
                        b = os.read(fd, 65536)
                        if not b:
                            break
                        chunks.append(b)
                finally:
                    os.close(fd)
                z = time.perf_counter_ns()
                data = b"".join(chunks)
                i = data.find(b"\nchecked_at: ")
                c = data[i + 13:data.find(b"\n", i + 13)] if i >= 0 else None
                k = data.find(b"\ncheck_age_s: ")
                age = int(data[k + 14:data.find(b"\n", k + 14)]) if k >= 0 else None
                if not data.startswith(EXPECTED) or c is None:
                    bad.append((t, j, n, data.decode("utf-8", "replace")))
                out.append((t, j, n, a, z, c, age))
                j += 1
        except Exception as e:  # noqa: BLE001 (reported, the bench fails)
            errs.append(f"reader {t}: {e!r}")
        res[t] = out

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)   # threads mostly sit in syscalls; keep GIL hand-offs short
    th = [threading.Thread(target=reader, args=(t,), daemon=True) for t in range(readers)]
    for x in th:
        x.start()
    deadline[0] = time.perf_counter_ns() + int((duration or 0) * 1e9)
    barrier.wait()
    t0 = time.perf_counter_ns()
    limit = time.monotonic() + 120 + (duration or 0)
    for x in th:
        x.join(max(0.1, limit - time.monotonic()))
    wall = (time.perf_counter_ns() - t0) / 1e9
    sys.setswitchinterval(old)
    if any(x.is_alive() for x in th):
        raise BenchError("readers still blocked 120 s after they should have finished "
                         "(a hung status read?)")
    if errs:
        raise BenchError("status reads failed: " + "; ".join(errs[:5]))
    rows = [r for t in range(readers) for r in res[t]]
    return rows, bad, wall


def summarize(rows, sel=lambda r: True):
    """Sorted latencies (ms) of the selected rows, and what the reads saw."""
    lat = sorted((r[4] - r[3]) / 1e6 for r in rows if sel(r))
    checks = {}
    for r in rows:
        if sel(r) and r[5] is not None:
            checks.setdefault(r[2], set()).add(r[5])
    return {
        "lat": lat,
        "slow": sum(1 for x in lat if x > SLOW_MS),
        "stale": sum(1 for r in rows if sel(r) and r[6] is not None and r[6] > CHECK_TTL),
        "checks": sorted(len(v) for v in checks.values()) or [0],
    }


# ------------------------------------------------------------------------------ report

def machine_info():
    m = benchlib.machine_info()
    m["libssh2"] = benchlib.out(["pkg-config", "--modversion", "libssh2"]) or "?"
    m["openssh"] = benchlib.out(["ssh", "-V"]).split(",")[0]
    return m


def ms(x):
    return f"{x * 1000:.0f} ms"


def lat_row(v):
    return (len(v), pct(v, 50), pct(v, 90), pct(v, 99), v[-1])


def report(R, M, args):
    S, P = R["single"], R["parallel"]
    rows, bad, wall = R["reads"]
    h = args.hosts
    ssum = sum(S["times"])
    ratio = ssum / P["time"]
    srt = sorted(S["times"])
    pfirst = sorted(P["first"].values())
    groups = [
        ("cold: first read of each reader", summarize(rows, lambda r: r[1] == 0)),
        (f"cold wave: first pass, reads 1-{h} of each reader",
         summarize(rows, lambda r: r[1] < h)),
        (f"steady state: reads {h + 1}-{args.reads} of each reader",
         summarize(rows, lambda r: r[1] >= h)),
        (f"all {args.reads} reads of each reader", summarize(rows)),
    ]
    if R.get("sustain"):
        srows, sbad, swall = R["sustain"]
        bad = bad + sbad
        groups.append((f"sustained: every reader for {swall:.0f} s", summarize(srows)))
    cold, steady = groups[1][1], groups[2][1]

    # terminal
    print()
    print(f"fleetfs fleet bench: {h} hosts, commit {M['commit']}, {M['nproc']} cpus")
    print(f"  single-host probe (close -> idle): sum {ssum:.2f} s over {h} hosts; "
          f"min {ms(srt[0])}, median {ms(statistics.median(srt))}, max {ms(srt[-1])}")
    print(f"  parallel, {h} hosts in one fleet (close -> all idle): {P['time']:.2f} s "
          f"(first idle {ms(pfirst[0])}, median {ms(statistics.median(pfirst))})")
    print(f"  parallelism ratio sum(single) / parallel: {ratio:.2f}x "
          f"(engine workers: {WORKERS})")
    w = max(len(g[0]) for g in groups)
    print(f"  instance status reads, {args.readers} readers x {args.reads} ({wall:.2f} s)"
          + (f", then sustained for {R['sustain'][2]:.1f} s" if R.get("sustain") else "") + ":")
    print(f"    {'':{w}}  {'reads':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  "
          f"{'>50ms':>6} {'checks':>6}  (ms)")
    for name, g in groups:
        n, a, b, c, d = lat_row(g["lat"])
        ck = g["checks"]
        print(f"    {name:{w}}  {n:>6} {a:>8.2f} {b:>8.2f} {c:>8.2f} {d:>8.2f}  "
              f"{g['slow']:>6} {ck[0]}..{ck[-1]:<3}")
    stale = sum(g["stale"] for g in (groups[3][1], groups[-1][1] if R.get("sustain") else
                                     {"stale": 0}))
    print(f"  reads showing a check older than {CHECK_TTL:g} s: {stale}; "
          f"wrong/unexpected content: {len(bad)}")

    md = []
    md.append("# fleetfs SSH fleet benchmark results\n")
    md.append("Produced by `bench/fleet_bench.py` (see [README.md](README.md#ssh-fleets-"
              "fleet_benchpy) for what each figure means); re-run with `make fleet-bench`.\n")
    md.append("| | |\n|---|---|")
    md.append(f"| date | {M['date']} |")
    md.append(f"| machine | {M['nproc']} cpus ({M['cpu']}), {M['mem']} RAM, kernel "
              f"`{M['kernel']}` |")
    md.append(f"| fleetfs commit | `{M['commit']}` ({M['version']}) |")
    md.append(f"| SSH | libssh2 {M['libssh2']} in fleetfs; {M['openssh']} sshd on the hosts |")
    md.append(f"| hosts | {h} real sshd test hosts (tests/hosts), one network namespace each, "
              f"on a bridge in the root namespace; started in {R['hosts_start']:.2f} s |")
    md.append(f"| daemon | `./fleetfs -f`, real intervals (no FLEETFS_TIME_SCALE), "
              f"{WORKERS} engine workers, libfuse's default threading |")
    md.append(f"| load average (1/5/15 min) | {M['load']} at the start, {R['load_end']} at "
              f"the end |")
    md.append(f"| total bench time | {R['total']:.0f} s |\n")

    md.append("## Summary\n")
    md.append("| figure | value |\n|---|---:|")
    md.append(f"| single-host probe, sum over {h} hosts (one at a time) | {ssum:.2f} s |")
    md.append(f"| single-host probe, min / median / max | {ms(srt[0])} / "
              f"{ms(statistics.median(srt))} / {ms(srt[-1])} |")
    md.append(f"| parallel: {h} hosts in one fleet, close() to all idle | "
              f"{P['time']:.2f} s |")
    md.append(f"| parallelism ratio, sum(single) / parallel ({WORKERS} engine workers) | "
              f"**{ratio:.2f}x** |")
    md.append(f"| status read, cold wave (first pass): p50 / p99 / max | "
              f"{pct(cold['lat'], 50):.2f} / {pct(cold['lat'], 99):.2f} / "
              f"{cold['lat'][-1]:.2f} ms |")
    md.append(f"| status read, steady state: p50 / p99 / max | "
              f"{pct(steady['lat'], 50):.2f} / {pct(steady['lat'], 99):.2f} / "
              f"{steady['lat'][-1]:.2f} ms |")
    if R.get("sustain"):
        g = groups[-1][1]
        md.append(f"| status read, sustained {R['sustain'][2]:.0f} s (with re-checks): "
                  f"p50 / p99 / max | {pct(g['lat'], 50):.2f} / {pct(g['lat'], 99):.2f} / "
                  f"{g['lat'][-1]:.2f} ms |")
    md.append("")

    md.append("## Probe time: close() of the spec to idle\n")
    md.append(f"Single hosts, in order (ms): "
              f"{', '.join(f'{x * 1000:.0f}' for x in S['times'])}.\n")
    md.append(f"Parallel: each instance's first poll showing it idle (ms, sorted): "
              f"{', '.join(f'{x * 1000:.0f}' for x in pfirst)}.\n")
    md.append(f"Creating the project key (first read of `ssh/id_rsa.pub`, before the first "
              f"fleet): {ms(R['keygen'])}. Removing the {h} single-host fleets (every `rm` "
              f"at once): their directories were gone {S['gone']:.2f} s after the last "
              f"`rm`.\n")

    md.append(f"## Instance `status` read latency ({args.readers} readers)\n")
    md.append(f"Each read is open + read to EOF + close of `fleets/all/instances/<n>/status`; "
              f"reader t's j-th read is of instance (t + j) mod {h}. The phase started "
              f"{R['cold_wait']:.1f} s after every instance was idle, so every check was older "
              f"than the 5 s TTL. {args.readers} x {args.reads} reads took {wall:.2f} s"
              + (f"; then the same readers went on for {R['sustain'][2]:.1f} s "
                 f"(the sustained row)." if R.get("sustain") else ".") + "\n")
    md.append(f"| reads | count | p50 | p90 | p99 | max | > {SLOW_MS:g} ms | checks per "
              f"instance |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, g in groups:
        n, a, b, c, d = lat_row(g["lat"])
        ck = g["checks"]
        cks = f"{ck[0]}" if ck[0] == ck[-1] else f"{ck[0]}-{ck[-1]}"
        md.append(f"| {name} | {n} | {a:.2f} ms | {b:.2f} ms | {c:.2f} ms | {d:.2f} ms | "
                  f"{g['slow']} | {cks} |")
    md.append("")
    md.append(f"*> {SLOW_MS:g} ms*: reads that took longer than that (in practice: reads that "
              f"waited for an SSH check). *Checks per instance*: distinct `checked_at` values "
              f"the reads of one instance showed (second resolution). Reads answered with a "
              f"check older than {CHECK_TTL:g} s (the reader stopped waiting after 3 s): "
              f"{stale}. Reads whose content was not `status: idle`, `reachable: true`: "
              f"{len(bad)}.\n")
    if bad:
        t, j, n, text = bad[0]
        md.append(f"First unexpected read (reader {t}, read {j}, instance {n}):\n")
        md.append("```\n" + text.rstrip() + "\n```\n")

    md.append("## What the figures mean\n")
    md.append("- **Single-host probe**: one fleet per host, written one after the other. The "
              "time runs from the return of `close()` on `fleets/s<i>.yml` (where the spec is "
              "validated and committed and the engine is woken) to the first poll of "
              "`fleets/s<i>/status` (every 10 ms, so up to ~10 ms of it is polling) that "
              "shows `idle: 1`. It covers the scheduler picking up the new row, the libssh2 "
              "connection (TCP, key exchange, host key pinning, public-key auth), the remote "
              "command (install the project key; probe CPUs, memory, disk, addresses, GPUs), "
              "and the commit of the result. The project key is created before the first "
              "fleet, so no host pays for it.")
    md.append(f"- **Parallel**: one fleet with all {h} hosts; from `close()` of "
              "`fleets/all.yml` to the poll that shows every instance idle. The engine works "
              f"on at most {WORKERS} instances at once.")
    md.append("- **Parallelism ratio**: the sum of the single-host times over the parallel "
              "time, i.e. how much faster the hosts come up together than one by one. Its "
              f"ceiling is {WORKERS}, the number of engine workers. The test hosts' sshds run "
              "on the same machine, so on a machine with few CPUs the key exchanges on both "
              "ends compete for the CPUs and the ratio stays lower.")
    md.append("- **Status read latency**: an instance's `status` is live. A read of an "
              "instance last checked more than 5 s ago triggers an SSH check and waits for "
              "it (at most 3 s; after that it shows the last known state and `check_age_s`). "
              "Reads of the same instance at the same time share one check. *Cold, first "
              "read*: every reader's first read. All of them find a stale check: two readers "
              f"per instance, {h} checks queued on {WORKERS} workers. *Cold wave*: every "
              "reader's first pass over all instances, which includes the reads that waited "
              "for those checks. *Steady state*: the rest of the reads. They find a check "
              "younger than 5 s and are served from the store. Because 200 reads per reader "
              "take well under 5 s, this row has no re-checks. *Sustained*: the same readers "
              "keep reading for longer than the TTL, so the row includes the rounds of "
              "re-checks that come every 5 s. Each re-check is shared, and it shows up in "
              "the > 50 ms count and in the max. All latencies are measured from Python "
              "threads on the same machine as the daemon and the hosts.")
    md.append("")
    text = "\n".join(md)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"\nwrote {args.out}")


# ------------------------------------------------------------------------------ main

def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true",
                    help="a quick run for CI: 2 hosts, 4 readers x 20 reads, no sustained "
                         "phase (results go to --out, not to bench/FLEET_RESULTS.md unless "
                         "named)")
    ap.add_argument("--hosts", type=int, default=16, help="test hosts (default 16)")
    ap.add_argument("--readers", type=int, default=32, help="reader threads (default 32)")
    ap.add_argument("--reads", type=int, default=200, help="reads per reader (default 200)")
    ap.add_argument("--sustain", type=float, default=12.0,
                    help="then keep the readers reading this many seconds, past the 5 s "
                         "check TTL (default 12; 0 skips it)")
    ap.add_argument("--out", default=None,
                    help="markdown results file (default bench/FLEET_RESULTS.md; with --small "
                         "a file in the temporary directory)")
    args = ap.parse_args()
    if args.small:
        args.hosts, args.readers, args.reads, args.sustain = 2, 4, 20, 0
    if args.out is None:
        args.out = (os.path.join(tempfile.gettempdir(), "fleetfs-fleet-bench-small.md")
                    if args.small else os.path.join(REPO, "bench", "FLEET_RESULTS.md"))
    if args.hosts < 1 or args.readers < 1 or args.reads < 1:
        ap.error("--hosts, --readers and --reads must be at least 1")
    if args.reads <= args.hosts:
        ap.error("--reads must be more than --hosts (the first pass is the cold wave)")
    if os.geteuid() != 0:
        ap.error("needs root (the test hosts live in network namespaces)")
    if not os.access(BIN, os.X_OK):
        ap.error(f"{BIN} not found: run `make` first")
    for tool in ("fusermount3", "ip", "ssh"):
        if not shutil.which(tool):
            ap.error(f"{tool} is needed")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    t_start = time.perf_counter()
    M = machine_info()
    base = tempfile.mkdtemp(prefix="fleetfs-fleetbench-", dir="/var/tmp")
    net = m = None
    R = {}
    ok = False
    try:
        log(f"starting {args.hosts} test hosts ...")
        t0 = time.perf_counter()
        net = testhosts.start_many(args.hosts)
        R["hosts_start"] = time.perf_counter() - t0
        log(f"  {R['hosts_start']:.2f} s; mounting fleetfs on {base}/mnt")
        # real intervals: 5 s live-check TTL, 3 s wait
        m = Mount(base, drop=("FLEETFS_TIME_SCALE",), project=PROJECT)
        m.start()
        # the project key is generated once, on first use; make that happen now
        t0 = time.perf_counter()
        pub = read(m.p("ssh", "id_rsa.pub"))
        R["keygen"] = time.perf_counter() - t0
        if not pub.startswith(b"ssh-"):
            raise BenchError(f"projects/{PROJECT}/ssh/id_rsa.pub: {pub[:80]!r}")

        log("single-host probes, one fleet per host:")
        R["single"] = measure_single(m, net)
        log(f"parallel: one fleet with all {args.hosts} hosts ...")
        R["parallel"] = measure_parallel(m, net)
        wait = R["parallel"]["seen_at"] + COLD_WAIT - time.perf_counter()
        if wait > 0:
            log(f"waiting {wait:.1f} s so every check is older than {CHECK_TTL:g} s ...")
            time.sleep(wait)
        R["cold_wait"] = time.perf_counter() - R["parallel"]["seen_at"]
        log(f"status reads: {args.readers} readers x {args.reads} ...")
        R["reads"] = measure_reads(m, args.hosts, args.readers, reads=args.reads)
        if args.sustain > 0:
            log(f"status reads, sustained: {args.readers} readers for {args.sustain:g} s ...")
            R["sustain"] = measure_reads(m, args.hosts, args.readers, duration=args.sustain)
        if m.proc.poll() is not None:
            raise BenchError(f"fleetfs exited {m.proc.returncode}; log:\n{m.log()}")
        ok = True
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
    except BenchError as e:
        log(f"bench failed: {e}")
        if m is not None:
            log(f"fleetfs log tail:\n{m.log(1500)}")
    finally:
        rc = None
        if m is not None:
            rc = m.stop()
        if net is not None:
            try:
                net.stop()
            except testhosts.HostsError as e:
                log(f"warning: stopping the test hosts: {e}")
        if mount_fstype(os.path.join(base, "mnt")) is None:
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"warning: still mounted, not removing {base}")
    if ok and rc != 0:
        log(f"fleetfs exited {rc} at unmount")
        ok = False
    if not ok:
        return 1
    R["total"] = time.perf_counter() - t_start
    R["load_end"] = loadavg()
    report(R, M, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
