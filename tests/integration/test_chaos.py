"""Chaos: kill -9 at random moments while real tools write, rename and remove configs.

Each round starts the daemon, lets writers run (vim-style saves, mv into place, rm, refused
writes and their fixes, root config.yml applies that change another project), SIGKILLs the
daemon at a random moment and then asserts what a user needs:

- the daemon dies at once (no thread stuck in the kernel: a stuck one keeps /dev/fuse open,
  so the dead mount would hang every process that touches it and hold the state dir's lock);
- `fusermount3 -u` clears the mount and a new daemon mounts the same state dir at once;
- no file is torn or lost: each config.yml holds what its last completed write left, or
  what a write in flight at the kill was writing;
- while the daemon lived, no operation failed with an errno a local filesystem would not
  give (saving again after a refused save never gets ENOENT).

CHAOS_ROUNDS sets the number of rounds (`make chaos` runs many); CHAOS_SEED replays one run.
"""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from fleetlib import (LAMBDA, LAMBDA_B, LAMBDA_KEY, LAMBDA_KEY2, abort_connection,
                      fusermount_u, is_fleet_mounted, read_file, wait_until, write_fd)

ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "12"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))
BACKENDS = ["b0", "b1", "b2"]
INVALID = LAMBDA + b"regions: 5\n"

# The writers run in a process of their own: when the daemon dies, requests in flight fail
# with ENOTCONN/ECONNABORTED, and we can SIGKILL the writers if they hang (a test thread
# stuck in a FUSE request could never be stopped).
WRITER = r'''
import errno, os, random, sys, threading, time
mnt, logdir, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
CONTENT = {"A": bytes.fromhex(sys.argv[4]), "B": bytes.fromhex(sys.argv[5])}
INVALID = bytes.fromhex(sys.argv[6])
ROOT = [bytes.fromhex(a) for a in sys.argv[7:9]]
DEAD = (errno.ENOTCONN, errno.ECONNABORTED)

def write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)

def backend_loop(b):
    rng = random.Random(seed * 31 + sum(b.encode()))
    d = os.path.join(mnt, "projects", "main", "backends", b)
    cfg = os.path.join(d, "config.yml")
    log = open(os.path.join(logdir, b), "a", buffering=1)
    i = 0
    while True:
        i += 1
        op = rng.choice(["vim", "mv", "rm", "bad", "write"])
        x = rng.choice("AB")
        expect = {"rm": "-", "bad": "="}.get(op, x)
        log.write(f"S {i} {op} {expect}\n")
        try:
            if op == "vim":
                # vim: config.yml -> config.yml~, write config.yml, remove the backup
                try:
                    os.rename(cfg, cfg + "~")
                except FileNotFoundError:
                    pass
                write(cfg, CONTENT[x])
                try:
                    os.unlink(cfg + "~")
                except FileNotFoundError:
                    pass
            elif op == "mv":
                tmp = os.path.join(d, ".config.yml.tmp")
                write(tmp, CONTENT[x])
                os.rename(tmp, cfg)
            elif op == "rm":
                try:
                    os.unlink(cfg)
                except FileNotFoundError:
                    pass
            elif op == "write":
                write(cfg, CONTENT[x])
            else:
                # a refused save, then saving again at once: EINVAL both times, never ENOENT
                for _ in range(2):
                    try:
                        write(cfg, INVALID)
                        log.write(f"E {i} {op} accepted\n")
                    except OSError as e:
                        if e.errno != errno.EINVAL:
                            raise
            log.write(f"D {i}\n")
        except OSError as e:
            if e.errno in DEAD:
                log.write(f"F {i} {e.errno}\n")
                return
            log.write(f"E {i} {op} {errno.errorcode.get(e.errno, e.errno)}\n")

def root_loop():
    # applies to project rootp only ("projects that are not listed are left alone"), and
    # each apply makes the daemon invalidate the kernel's view of every project
    path = os.path.join(mnt, "config.yml")
    log = open(os.path.join(logdir, "root"), "a", buffering=1)
    k = 0
    while True:
        k += 1
        try:
            write(path, ROOT[k % 2])
        except OSError as e:
            if e.errno in DEAD:
                return
            log.write(f"E {k} root {errno.errorcode.get(e.errno, e.errno)}\n")

ts = [threading.Thread(target=backend_loop, args=(b,)) for b in sys.argv[9:]]
ts.append(threading.Thread(target=root_loop))
for t in ts:
    t.start()
print("started", flush=True)
for t in ts:
    t.join()
'''


def _root_config(n):
    """A root config.yml that gives project rootp n lambda backends."""
    out = ["projects:", "- name: rootp", "  backends:"]
    for i in range(n):
        key = LAMBDA_KEY if i % 2 == 0 else LAMBDA_KEY2
        out += ["  - type: lambda"] + ([f"    name: r{i}"] if i else []) + \
               ["    creds:", "      type: api_key", f"      api_key: {key}"]
    return ("\n".join(out) + "\n").encode()


def _allowed_states(logpath, initial):
    """What config.yml may hold after the kill, from the writer's log: the result of the last
    completed operation, or of any operation still in flight (or failed by the kill: its
    commit may have landed before the reply was lost)."""
    done_state = initial
    pending = []
    errors = []
    if os.path.exists(logpath):
        with open(logpath) as f:
            for line in f:
                p = line.split()
                if not p or (p[0] in "SDF" and len(p) < 2):
                    continue  # the kill cut the last line short
                if p[0] == "S" and len(p) >= 4:
                    pending.append(p[3])
                elif p[0] == "D":
                    for e in pending:
                        if e != "=":
                            done_state = e
                    pending = []
                elif p[0] == "E":
                    errors.append(line.strip())
    allowed = {done_state} | {e for e in pending if e != "="}
    return allowed, done_state, errors


def _state_of(path):
    try:
        data = read_file(path)
    except FileNotFoundError:
        return "-"
    for k, v in (("A", LAMBDA), ("B", LAMBDA_B)):
        if data == v:
            return k
    return f"torn:{data[:80]!r}"


def test_kill9_during_config_writes(fleet, tmp_path):
    rng = random.Random(SEED)
    for b in BACKENDS:
        fleet.add_backend(b, LAMBDA)
    state = {b: "A" for b in BACKENDS}
    survived = 0
    for rnd in range(ROUNDS):
        logdir = tmp_path / f"r{rnd}"
        logdir.mkdir()
        args = [sys.executable, "-c", WRITER, fleet.mnt, str(logdir), str(SEED + rnd),
                LAMBDA.hex(), LAMBDA_B.hex(), INVALID.hex(), _root_config(1).hex(),
                _root_config(2).hex(), *BACKENDS]
        w = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        try:
            assert w.stdout.readline().strip() == b"started", w.stderr.read()[-2000:]
            # let them run into each other, then kill at a random moment
            deadline = time.monotonic() + rng.uniform(0.05, 0.8)
            wait_until(lambda: time.monotonic() >= deadline, timeout=1.0, step=0.01)
            try:
                fleet.sigkill()
            except AssertionError as e:
                pytest.fail(f"seed {SEED} round {rnd}: {e}", pytrace=False)
        finally:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                abort_connection(fleet.mnt)
                w.wait(10)
        r = fusermount_u(fleet.mnt)
        if r is None or r.returncode != 0:
            fusermount_u(fleet.mnt, lazy=True)
        assert wait_until(lambda: not is_fleet_mounted(fleet.mnt), 5), \
            f"seed {SEED} round {rnd}: still mounted after fusermount3 -u"
        fleet.start()  # at once: the state dir's lock must be free
        for b in BACKENDS:
            allowed, done_state, errors = _allowed_states(str(logdir / b), state[b])
            assert not errors, f"seed {SEED} round {rnd} {b}: {errors}"
            got = _state_of(fleet.cfg(b))
            assert got in allowed, \
                f"seed {SEED} round {rnd} {b}: config.yml is {got}, expected one of {allowed}"
            state[b] = got
            if got == "-" and not os.path.isdir(fleet.bdir(b)):
                os.mkdir(fleet.bdir(b))
        _, _, root_errors = _allowed_states(str(logdir / "root"), "-")
        assert not root_errors, f"seed {SEED} round {rnd}: {root_errors}"
        survived += 1
    print(f"chaos: {survived} kills survived (seed {SEED})")


def test_saving_again_after_a_refused_save(fleet):
    """A refused save (EINVAL at close) of a new config.yml, then an O_CREAT|O_TRUNC at once:
    that never fails with ENOENT, whether the retry is valid or refused again."""
    fleet.add_backend("seed", LAMBDA)
    failures = []
    for i in range(60):
        d = fleet.bdir(f"t{i}")
        os.mkdir(d)
        cfg = os.path.join(d, "config.yml")
        werr, cerr = write_fd(cfg, INVALID)
        assert (werr, cerr) == (None, 22), f"try {i}: the invalid write gave {werr}, {cerr}"
        retry = INVALID if i % 2 else LAMBDA
        try:
            werr, cerr = write_fd(cfg, retry)
        except OSError as e:
            failures.append(f"try {i}: open: {e}")
            continue
        want = (None, 22) if i % 2 else (None, None)
        if (werr, cerr) != want:
            failures.append(f"try {i}: write/close gave {werr}, {cerr}, expected {want}")
        elif not i % 2:
            assert read_file(cfg) == LAMBDA
    assert not failures, failures
