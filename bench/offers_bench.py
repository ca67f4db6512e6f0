#!/usr/bin/python3
"""fleetfs offers benchmark: a 100,000-offer catalog through projects/<p>/offers/.

    /usr/bin/python3 bench/offers_bench.py [--offers 100000] [--out FILE] [--tmpdir DIR]

Generates a synthetic gpuhunt catalog (bench/gencatalog.py) for the providers aws,
lambdalabs and runpod, mounts fleetfs with `-o catalog=DIR` on a fresh state dir, configures
the backends aws, lambda and runpod in project main (examples/backends/<type>.yml), then times
`ls` of offers/ (cold and warm), `ls -l`, a query directory against the same selection done
with awk on the CSVs, `cat offers.tsv`, `offers.json` through a JSON parser and `ls` of a
tmpfs directory holding as many empty files; it reads the daemon's RSS along the way and
checks that the counts agree. See bench/README.md for what each figure means.

Python standard library only. Everything lives in one temporary directory that is removed
at the end; every mount made here (the fleetfs mount, the tmpfs) is unmounted in a finally
block, also on an error, Ctrl-C or SIGTERM.
"""
import argparse
import csv
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import bench  # Fleet, mount_tmpfs, mounts_under, fs_type_of, fs_failure, write_file
import benchlib
import gencatalog
from benchlib import BIN, REPO, BenchError, log, loadavg, mount_fstype

EXAMPLES = os.path.join(REPO, "examples", "backends")
PROVIDERS = ["aws", "lambdalabs", "runpod"]          # gpuhunt catalogs generated
TYPES = ["aws", "lambda", "runpod"]                  # fleetfs backends whose catalogs those are
PROJECT = "main"
RUNS = 5
QUERY = "gpu=A100:80GB:2,spot=false"
# the same selection on the CSVs: gpu_name A100, gpu_memory 80, gpu_count 2, spot False
AWK_PROG = 'FNR > 1 && $7 == "A100" && $8 == 80 && $6 == 2 && $9 == "False"'
TABLES = ("offers.json", "offers.tsv")
TARGET_LS_RATIO = 3.0
TARGET_QUERY_RATIO = 3.0
TARGET_TSV_MS = 200.0
TARGET_RSS_MIB = 64.0
CMD_TIMEOUT = 600
OUTLIER = 3.0          # a timed run slower than this many times its series' median is named
SERIES = (("ls", "ls offers/ (after the cold one)"), ("lsl", "ls -l offers/"),
          ("query", f"ls offers/{QUERY}/"), ("awk", "awk"), ("tsv", "cat offers.tsv"),
          ("tmpfs_ls", "tmpfs ls"), ("tmpfs_lsl", "tmpfs ls -l"))
COMPLETE_TIMEOUT = 120
STABLE_S = 5.0
ENV = dict(os.environ, LC_ALL="C")


# ------------------------------------------------------------------------------ the daemon

class OffersFleet(bench.Fleet):
    """bench.Fleet with `-o catalog=DIR` (always explicit: the bench never relies on a
    default catalog source)."""

    def __init__(self, state, mnt, logpath, catalog, binary=BIN):
        super().__init__(state, mnt, logpath)
        self.catalog = catalog
        self.bin = binary

    def start(self):
        # whatever the daemon's defaults, nothing may leave the machine: a gpuhunt URL from
        # the environment and the provider APIs (Lambda's capacity, AWS's quotas) are
        # replaced by a closed loopback port
        env = dict(os.environ, GPUHUNT_CATALOG_URL="http://127.0.0.1:9/v3",
                   **benchlib.offline_env())
        env.pop("GPUHUNT_CATALOG_DIR", None)
        logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen([self.bin, "-f", "-o", f"state={self.state}",
                                      "-o", f"catalog={self.catalog}", self.mnt],
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True, env=env)
        logf.close()
        end = time.monotonic() + bench.MOUNT_TIMEOUT
        while time.monotonic() < end:
            if mount_fstype(self.mnt) == bench.FSTYPE:
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


def daemon_pid(fleet):
    """The pid of the fleetfs process serving fleet.mnt: the one we started in the foreground
    (checked against its command line), else found by its command line in /proc."""
    mnt = os.path.realpath(fleet.mnt)

    def serves(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            return False
        return bool(argv) and os.path.basename(argv[0]) == os.path.basename(fleet.bin) and \
            any(os.path.realpath(a) == mnt for a in argv[1:] if a.startswith("/"))

    if fleet.proc is not None and serves(fleet.proc.pid):
        return fleet.proc.pid
    for d in os.listdir("/proc"):
        if d.isdigit() and serves(int(d)):
            return int(d)
    raise BenchError(f"no fleetfs process serves {mnt}")


def rss(pid):
    """(VmRSS, VmHWM) of pid in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024
    return out["VmRSS"], out["VmHWM"]


# ------------------------------------------------------------------------------ timing

def run_timed(cmd, capture=False):
    """Wall time of one command (a list, or a shell string); stdout to /dev/null unless
    capture. Fails loudly on a non-zero exit or after CMD_TIMEOUT seconds."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=ENV, shell=isinstance(cmd, str),
                           timeout=CMD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{cmd!r} still running after {CMD_TIMEOUT} s")
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"{cmd!r} exited {r.returncode}: "
                         f"{r.stderr.decode(errors='replace')[-2000:]}")
    return (dt, r.stdout) if capture else dt


def series(cmd, runs=RUNS):
    """One first run, then `runs` more: (first, median of the others, all runs)."""
    all_runs = [run_timed(cmd) for _ in range(1 + runs)]
    return all_runs[0], statistics.median(all_runs[1:]), all_runs


def cold_listing(offers, expected):
    """The first `ls offers/` after the configs were written: (its wall time, None), or, if
    it was not complete (a daemon that loads offers in the background and stops waiting
    after a while), (its wall time, (seconds until the listing was complete, listings,
    entries in the first one, in the last one)). Complete: `expected` entries, or the same
    number for STABLE_S seconds; listings are repeated every 50 ms for at most
    COMPLETE_TIMEOUT s."""
    t0 = time.perf_counter()
    first = run_timed(["ls", offers])
    n = n0 = len(os.listdir(offers))
    tries, changed, done = 1, time.perf_counter(), time.perf_counter()
    while n != expected and time.perf_counter() - changed < STABLE_S and \
            time.perf_counter() - t0 < COMPLETE_TIMEOUT:
        time.sleep(0.05)
        run_timed(["ls", offers])
        tries += 1
        m = len(os.listdir(offers))
        if m != n:
            n, changed = m, time.perf_counter()
        done = time.perf_counter()
    if tries == 1:
        return first, None
    if n != expected:    # stable but short: the count check reports it
        done = changed
    return first, (done - t0, tries, n0, n)


# ------------------------------------------------------------------------------ catalog facts

def config_regions(text):
    """The `regions:` list of a backend config.yml (flow `[a, b]` or block `- a` form), or
    None when it has none (every region)."""
    lines = text.decode().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^regions:\s*(.*?)\s*(#.*)?$", line)
        if not m:
            continue
        v = m.group(1)
        if v.startswith("["):
            return [x.strip().strip("'\"") for x in v.strip("[]").split(",") if x.strip()]
        out = []
        for nxt in lines[i + 1:]:
            b = re.match(r"^\s+-\s*([^#\s]+)", nxt)
            if not b:
                break
            out.append(b.group(1).strip("'\""))
        return out or None
    return None


def region_in(loc, regions):
    """fleetfs's match of a catalog location against a config's regions (offers.c): equal
    ignoring case, or a region followed by '-'."""
    if not regions:
        return True
    lo = loc.lower()
    return any(lo == r.lower() or (lo.startswith(r.lower()) and lo[len(r):][:1] == "-")
               for r in regions)


# The instance families fleetfs's aws backend offers (backends/aws.c: families, as dstack's);
# the catalog's other rows (p3, c6i, m6i, r6i, c7g, m7g here) are not shown.
AWS_FAMILIES = ("m7i.", "c7i.", "r7i.", "t3.", "t2.small", "c5.", "m5.", "p6-b300.", "p6-b200.",
                "p5.", "p5e.", "p5en.", "p4d.", "p4de.", "g7.", "g7e.", "g6.", "g6e.", "gr6.",
                "g5.", "g4dn.")


def catalog_facts(catdir, regions):
    """From the generated CSVs: rows in all, rows fleetfs should show (every flag allowed,
    in the backend config's regions), and how many of those the query selects."""
    rows = shown = selected = 0
    for p in PROVIDERS:
        with open(os.path.join(catdir, p + ".csv"), newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                rows += 1
                if not all(fl in gencatalog.ALLOWED_FLAGS for fl in r["flags"].split()):
                    continue
                if not region_in(r["location"], regions.get(p)):
                    continue
                if p == "aws" and not r["instance_name"].startswith(AWS_FAMILIES):
                    continue
                shown += 1
                if (r["gpu_name"] == "A100" and r["gpu_memory"] and
                        float(r["gpu_memory"]) == 80 and r["gpu_count"] == "2" and
                        r["spot"] == "False"):
                    selected += 1
    return rows, shown, selected


# ------------------------------------------------------------------------------ report

def fmt_t(x):
    if x < 0.01:
        return f"{x * 1000:.2f} ms"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def ratio(a, b):
    return a / b if b > 0 else float("inf")


def verdict(ok):
    return "PASS" if ok else "FAIL"


def report(R, M, args, out_path):
    n = R["shown"]
    ls_ratio = ratio(R["ls"][1], R["tmpfs_ls"][1])
    q_ratio = ratio(R["query"][1], R["awk"][1])
    tsv_ms = R["tsv"][1] * 1000
    targets = [
        (f"`ls offers/` warm within {TARGET_LS_RATIO:g}x tmpfs `ls`",
         f"{fmt_t(R['ls'][1])} vs {fmt_t(R['tmpfs_ls'][1])} = {ls_ratio:.2f}x",
         ls_ratio <= TARGET_LS_RATIO),
        (f"query directory within {TARGET_QUERY_RATIO:g}x awk on the CSVs",
         f"{fmt_t(R['query'][1])} vs {fmt_t(R['awk'][1])} = {q_ratio:.2f}x",
         q_ratio <= TARGET_QUERY_RATIO),
        (f"`cat offers.tsv` under {TARGET_TSV_MS:g} ms",
         f"{tsv_ms:.0f} ms = {tsv_ms / TARGET_TSV_MS:.2f}x the target", tsv_ms < TARGET_TSV_MS),
        (f"daemon RSS under {TARGET_RSS_MIB:g} MiB after `ls -l`",
         f"{R['rss_lsl'][0]:.1f} MiB = {R['rss_lsl'][0] / TARGET_RSS_MIB:.2f}x the target",
         R["rss_lsl"][0] < TARGET_RSS_MIB),
        (f"daemon RSS under {TARGET_RSS_MIB:g} MiB after everything",
         f"{R['rss_end'][0]:.1f} MiB = {R['rss_end'][0] / TARGET_RSS_MIB:.2f}x the target",
         R["rss_end"][0] < TARGET_RSS_MIB),
    ]
    checks = [
        ("entries in `offers/` = catalog rows with allowed flags, in the configs' regions",
         f"{R['listed']} = {n}", R["listed"] == n),
        ("entry names unique", f"{R['unique']} distinct of {R['listed']}",
         R["unique"] == R["listed"]),
        (f"entries in `offers/{QUERY}/` = awk's rows", f"{R['q_listed']} = {R['awk_n']}"
         + (f" (the CSVs through python: {R['selected']})" if R["selected"] != R["awk_n"]
            else ""),
         R["q_listed"] == R["awk_n"] == R["selected"]),
        ("`offers.tsv` rows (header left out)", f"{R['tsv_rows']} = {n}", R["tsv_rows"] == n),
        ("`offers.json` entries (json.load)", f"{R['json_n']} = {n}", R["json_n"] == n),
    ]
    outliers = []
    for key, label in SERIES:
        first, med, runs = R[key]
        slow = [x for x in runs[1:] if x > OUTLIER * med]
        if slow:
            outliers.append(f"{label}: {len(slow)} of the {RUNS} runs after the first took more "
                            f"than {OUTLIER:g}x their median {fmt_t(med)} "
                            f"({', '.join(fmt_t(x) for x in slow)})")
    rows = [
        ("`ls offers/` cold: first listing after the configs were written (loads the catalog)",
         R["ls_cold"], None)]
    if R["ls_complete"]:
        secs, tries, n0, nend = R["ls_complete"]
        rows.append((f"`ls offers/` until complete: the cold listing had {n0} entries; "
                     + (f"listing {tries} was the first with all" if nend == n else
                        f"{nend} after {tries} listings, unchanged for {STABLE_S:g} s"),
                     secs, None))
    rows += [
        (f"`ls offers/` warm (median of {RUNS})", R["ls"][1], R["tmpfs_ls"][1]),
        ("`ls -l offers/` first", R["lsl"][0], R["tmpfs_lsl"][0]),
        (f"`ls -l offers/` warm (median of {RUNS})", R["lsl"][1], R["tmpfs_lsl"][1]),
        (f"`ls offers/{QUERY}/` (median of {RUNS}); floor: awk on the CSVs", R["query"][1],
         R["awk"][1]),
        ("`cat offers.tsv > /dev/null` first", R["tsv"][0], None),
        (f"`cat offers.tsv > /dev/null` (median of {RUNS})", R["tsv"][1], None),
        ("`cat offers.json | python3 -c 'import json,sys; json.load(sys.stdin)'` (once)",
         R["json"], None),
    ]

    print()
    print(f"fleetfs offers bench: {R['rows']} catalog rows ({', '.join(PROVIDERS)}), "
          f"{n} offers shown, commit {M['commit']}, {M['nproc']} cpus")
    w = max(len(r[0]) for r in rows)
    for name, f, floor in rows:
        extra = f"  floor {fmt_t(floor):>9}  {ratio(f, floor):5.1f}x" if floor else ""
        print(f"{name:{w}}  {fmt_t(f):>9}{extra}")
    print(f"daemon RSS (MiB): mounted {R['rss_start'][0]:.1f}, after cold ls "
          f"{R['rss_cold'][0]:.1f}, after ls -l {R['rss_lsl'][0]:.1f}, after offers.tsv "
          f"{R['rss_tsv'][0]:.1f}, after offers.json {R['rss_json'][0]:.1f}, at the end "
          f"{R['rss_end'][0]:.1f} (peak {R['rss_end'][1]:.1f})")
    for name, got, ok in targets + checks:
        print(f"{verdict(ok)}  {name}: {got}")
    for o in outliers:
        print(f"note: outlier: {o}")

    md = ["# fleetfs offers benchmark results\n",
          "Produced by `bench/offers_bench.py` (see [README.md](README.md#offers-offers_benchpy) "
          "for what each figure means); re-run with `make offers-bench`.\n",
          "| | |\n|---|---|",
          f"| date | {M['date']} |",
          f"| machine | {M['nproc']} cpus ({M['cpu']}), {M['mem']} RAM |",
          f"| kernel | `{M['kernel']}` ({M['uname']}) |",
          f"| fleetfs commit | `{M['commit']}` ({M['version']}) |",
          f"| fleetfs state dir on | {M['statefs']} |",
          f"| catalog | `bench/gencatalog.py --offers {args.offers} --providers "
          f"{','.join(PROVIDERS)} --seed {args.seed}"
          + (" --regions " + ",".join(f"{p}={'+'.join(r)}" for p, r in R["regions"].items())
             if R["regions"] else "") + "`: "
          + ", ".join(f"{p} {c}" for p, c in R["counts"].items())
          + f" rows ({R['csv_bytes'] / 1e6:.1f} MB of CSV, generated in "
          f"{R['gen_s']:.1f} s) |",
          f"| backends | {', '.join(f'projects/{PROJECT}/backends/{t}' for t in TYPES)} "
          f"(examples/backends/<type>.yml) |",
          f"| tmpfs floor on | {R['tmpfs_kind']} |",
          f"| tools | {M['ls']}; {M['awk']}; python {M['python']} |",
          f"| load average (1/5/15 min) | {M['load']} at the start, {R['load_end']} at the "
          f"end |",
          f"| total bench time | {R['total']:.0f} s |\n",
          "## Targets\n",
          "| target | measured | |\n|---|---|---|"]
    for name, got, ok in targets:
        md.append(f"| {name} | {got} | **{verdict(ok)}** |")
    md.append("\n## Correctness\n")
    md.append("| check | got | |\n|---|---|---|")
    for name, got, ok in checks:
        md.append(f"| {name} | {got} | **{verdict(ok)}** |")
    md.append("\n## Timings (wall time)\n")
    md.append("| operation | fleetfs | floor | fleetfs / floor |\n|---|---:|---:|---:|")
    for name, f, floor in rows:
        name = name.replace("|", "\\|")      # a pipe inside a table cell
        md.append(f"| {name} | {fmt_t(f)} | {fmt_t(floor) if floor else ''} | "
                  f"{f'{ratio(f, floor):.2f}x' if floor else ''} |")
    md.append(f"\nThe floor of `ls` and `ls -l` is the same command on a tmpfs directory "
              f"holding {n} empty files with the same names; the floor of the query is "
              f"`awk -F, '{AWK_PROG}'` over the three CSVs (output to /dev/null), "
              f"{R['awk_n']} rows.\n")
    if outliers:
        md.append("**Outliers**: " + "; ".join(outliers) + ".\n")
    md.append("All runs (s), first run first:\n")
    for key, label in SERIES:
        md.append(f"- {label}: {', '.join(f'{x:.4f}' for x in R[key][2])}")
    md.append("")
    md.append("## Daemon memory\n")
    md.append("VmRSS of the fleetfs process (from `/proc/<pid>/status`), and VmHWM, its "
              "peak so far:\n")
    md.append("| when | VmRSS | VmHWM (peak) |\n|---|---:|---:|")
    for key, label in (("rss_start", "mounted, before the backends were configured"),
                       ("rss_cold", "after the cold `ls offers/`"),
                       ("rss_lsl", "after `ls -l offers/`"),
                       ("rss_tsv", f"after the query and `cat offers.tsv` ({1 + RUNS} times)"),
                       ("rss_json", "after reading `offers.json` once"),
                       ("rss_end", "after everything above")):
        md.append(f"| {label} | {R[key][0]:.1f} MiB | {R[key][1]:.1f} MiB |")
    md.append(f"\n`offers.tsv` is {R['tsv_bytes'] / 1e6:.1f} MB, `offers.json` "
              f"{R['json_bytes'] / 1e6:.1f} MB.\n")
    text = "\n".join(md)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        f.write(text)
    print(f"\nwrote {out_path}")
    return all(ok for _, _, ok in checks)


# ------------------------------------------------------------------------------ main

def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def configure(fleet, configs):
    pdir = os.path.join(fleet.mnt, "projects", PROJECT)
    step = f"mkdir projects/{PROJECT}"
    try:
        if not os.path.isdir(pdir):
            os.mkdir(pdir)
        for t in TYPES:
            d = os.path.join(pdir, "backends", t)
            step = f"mkdir projects/{PROJECT}/backends/{t}"
            if not os.path.isdir(d):
                os.mkdir(d)
            step = f"write projects/{PROJECT}/backends/{t}/config.yml"
            bench.write_file(os.path.join(d, "config.yml"), configs[t])
    except OSError as e:
        raise bench.fs_failure(step, e, fleet, PROJECT)


def run(args, base, R, M, state):
    configs = {}
    for t in TYPES:
        with open(os.path.join(EXAMPLES, t + ".yml"), "rb") as f:
            configs[t] = f.read()
    # a backend shows only the offers in its config's regions: generate only those
    regions = {p: config_regions(configs[t]) for p, t in zip(PROVIDERS, TYPES)}
    regions = {p: r for p, r in regions.items() if r}
    R["regions"] = regions

    catdir = os.path.join(base, "catalog")
    log(f"generating a {args.offers}-offer catalog ({', '.join(PROVIDERS)}) ...")
    t0 = time.perf_counter()
    R["counts"] = gencatalog.generate(catdir, args.offers, PROVIDERS, args.seed, regions)
    R["gen_s"] = time.perf_counter() - t0
    R["csv_bytes"] = sum(os.path.getsize(os.path.join(catdir, p + ".csv")) for p in PROVIDERS)
    R["rows"], R["shown"], R["selected"] = catalog_facts(catdir, regions)
    csvs = [os.path.join(catdir, p + ".csv") for p in PROVIDERS]

    fleet = state["fleet"] = OffersFleet(os.path.join(base, "state"), os.path.join(base, "mnt"),
                                         os.path.join(base, "fleetfs.log"), catdir, args.bin)
    fleet.start()
    pid = daemon_pid(fleet)
    pdir = os.path.join(fleet.mnt, "projects", PROJECT)
    offers = os.path.join(pdir, "offers")
    qdir = os.path.join(offers, QUERY)
    R["rss_start"] = rss(pid)

    log("configuring the backends, then timing ls offers/ (cold: loads the catalog) ...")
    configure(fleet, configs)
    R["ls_cold"], R["ls_complete"] = cold_listing(offers, R["shown"])  # nothing in between
    R["rss_cold"] = rss(pid)
    R["ls"] = series(["ls", offers])
    names = os.listdir(offers)
    R["listed"], R["unique"] = len(names), len(set(names))
    if R["listed"] != R["shown"]:
        log(f"warning: offers/ lists {R['listed']} entries, the catalog has {R['shown']} "
            f"rows with allowed flags in the configs' regions; projects/{PROJECT}/events:\n"
            + bench.events_tail(fleet.mnt, PROJECT))

    log("timing ls -l offers/ ...")
    R["lsl"] = series(["ls", "-l", offers])
    R["rss_lsl"] = rss(pid)

    log(f"timing ls offers/{QUERY}/ and awk on the CSVs ...")
    R["query"] = series(["ls", qdir])
    R["q_listed"] = len([x for x in os.listdir(qdir) if x not in TABLES])
    R["awk"] = series(["awk", "-F,", AWK_PROG] + csvs)
    out = run_timed(["awk", "-F,", AWK_PROG + " { n++ } END { print n + 0 }"] + csvs,
                    capture=True)[1]
    R["awk_n"] = int(out.decode().strip())

    log("timing cat offers.tsv and offers.json ...")
    tsv = os.path.join(pdir, "offers.tsv")
    R["tsv"] = series(["cat", tsv])
    R["rss_tsv"] = rss(pid)
    with open(tsv, "rb") as f:
        data = f.read()
    R["tsv_bytes"] = len(data)
    R["tsv_rows"] = data.count(b"\n") - 1
    del data
    jsn = os.path.join(pdir, "offers.json")
    R["json"], out = run_timed(f"cat '{jsn}' | {sys.executable} -c 'import json,sys; "
                               f"print(len(json.load(sys.stdin)))'", capture=True)
    R["json_n"] = int(out.decode().strip())
    R["rss_json"] = rss(pid)
    R["json_bytes"] = os.path.getsize(jsn)

    log(f"timing ls of {len(names)} empty files on a tmpfs ...")
    troot, mounted = bench.mount_tmpfs(base)
    state["tmpfs"] = (troot, mounted)
    R["tmpfs_kind"] = ("a tmpfs mounted by the bench" if mounted
                       else "/dev/shm (tmpfs; mounting one was not possible)")
    tdir = os.path.join(troot, "offers")
    os.mkdir(tdir)
    for nm in set(names):
        os.close(os.open(os.path.join(tdir, nm), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444))
    R["tmpfs_ls"] = series(["ls", tdir])
    R["tmpfs_lsl"] = series(["ls", "-l", tdir])
    R["rss_end"] = rss(pid)
    R["load_end"] = loadavg()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offers", type=int, default=None,
                    help="offers in the generated catalog (default 100000)")
    ap.add_argument("--small", action="store_true",
                    help="a quick run for CI: 2,000 offers, 2 timed runs (results go to --out, "
                         "not to bench/OFFERS_RESULTS.md unless named)")
    ap.add_argument("--seed", type=int, default=1, help="catalog seed (default 1)")
    ap.add_argument("--out", default=None,
                    help="markdown results file (default bench/OFFERS_RESULTS.md; with "
                         "--small a file in the temporary directory)")
    ap.add_argument("--bin", default=os.environ.get("FLEETFS_BIN") or BIN,
                    help="the fleetfs binary (default $FLEETFS_BIN or ./fleetfs)")
    ap.add_argument("--tmpdir", default=None,
                    help="where the temporary directory (catalog, fleetfs state dir, "
                         "mountpoints) goes (default: $TMPDIR or /tmp)")
    args = ap.parse_args()
    global RUNS, STABLE_S
    if args.offers is None:
        args.offers = 2000 if args.small else 100000
    if args.small:
        RUNS, STABLE_S = 2, 1.0
    if args.out is None:
        args.out = (os.path.join(tempfile.gettempdir(), "fleetfs-offers-bench-small.md")
                    if args.small else os.path.join(REPO, "bench", "OFFERS_RESULTS.md"))
    if args.offers < 1:
        ap.error("--offers must be at least 1")
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        ap.error(f"{args.bin} not found: run `make` first")
    for tool in ("ls", "cat", "awk", "fusermount3"):
        if not shutil.which(tool):
            ap.error(f"{tool} is needed")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    t_start = time.perf_counter()
    base = os.path.abspath(tempfile.mkdtemp(prefix="fleetfs-offers-bench-", dir=args.tmpdir))
    state = {"fleet": None, "tmpfs": (None, False)}
    R, M = {}, {}
    ok = False
    try:
        M.update(benchlib.machine_info())
        if args.bin != BIN:
            M["commit"] = f"? (binary {args.bin}; the tree is at {M['commit']})"
            M["version"] = (benchlib.out([args.bin, "-V"]).splitlines() or ["?"])[0]
        M["statefs"] = bench.fs_type_of(base)
        M["ls"] = (benchlib.out(["ls", "--version"]).splitlines() or ["?"])[0]
        awk = benchlib.out(["awk", "-W", "version"]).splitlines() or ["?"]
        if "mawk" not in awk[0] and "GNU" not in awk[0]:
            awk = benchlib.out(["awk", "--version"]).splitlines() or ["?"]
        M["awk"] = awk[0]
        run(args, base, R, M, state)
        R["total"] = time.perf_counter() - t_start
        ok = True
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
    except BenchError as e:
        log(f"bench failed: {e}")
    finally:
        if state["fleet"] is not None:
            state["fleet"].stop()
        tdir = os.path.join(base, "tmpfs")  # ours even if an interrupt beat the bookkeeping
        if mount_fstype(tdir) == "tmpfs":
            subprocess.run(["umount", tdir], stderr=subprocess.DEVNULL)
            if mount_fstype(tdir) == "tmpfs":
                subprocess.run(["umount", "-l", tdir], stderr=subprocess.DEVNULL)
        troot, mounted = state["tmpfs"]
        if troot and not mounted:
            shutil.rmtree(troot, ignore_errors=True)  # the /dev/shm fallback
        left = bench.mounts_under(base)
        if left:
            log(f"warning: still mounted, not removing {base}: {left}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    if not ok:
        return 1
    return 0 if report(R, M, args, args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
