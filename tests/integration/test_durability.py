"""Durability and secrecy of the store: a write whose close() returned 0 survives kill -9
(bytes, mtime, mode); SIGTERM unmounts cleanly; no secret in plain text in the state dir,
the events files, or the daemon's -d output; the state dir's own files."""
import errno
import os
import signal
import stat
import subprocess
import threading

from fleetlib import (AWS, AWS_ACCESS, AWS_SECRET, LAMBDA, LAMBDA_B, LAMBDA_KEY, LAMBDA_KEY2,
                      is_fleet_mounted, read_file, run, scan_bytes_for, wait_until, write_file)

MTIME = 1577934245  # 2020-01-02 03:04:05 UTC


def test_kill9_after_close(fleet):
    os.mkdir(fleet.bdir("lambda"))
    write_file(fleet.cfg("lambda"), LAMBDA_B)  # close() returned 0: committed
    r = run(["touch", "-d", "2020-01-02 03:04:05 UTC", fleet.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    assert int(os.stat(fleet.cfg("lambda")).st_mtime) == MTIME
    fleet.kill9()
    assert not is_fleet_mounted(fleet.mnt)
    fleet.start()
    cfg = fleet.cfg("lambda")
    assert read_file(cfg) == LAMBDA_B
    st = os.stat(cfg)
    assert st.st_size == len(LAMBDA_B)
    assert int(st.st_mtime) == MTIME, f"mtime lost over kill -9: {st.st_mtime}"
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_kill9_after_rename_commit(fleet):
    os.mkdir(fleet.bdir("aws"))
    tmp = os.path.join(fleet.bdir("aws"), ".config.yml.Ab12Cd")
    with open(tmp, "wb") as f:
        f.write(AWS)
    os.utime(tmp, (MTIME, MTIME))
    os.rename(tmp, fleet.cfg("aws"))  # rename returned 0: committed
    fleet.kill9()
    fleet.start()
    assert read_file(fleet.cfg("aws")) == AWS
    assert int(os.stat(fleet.cfg("aws")).st_mtime) == MTIME
    assert stat.S_IMODE(os.stat(fleet.cfg("aws")).st_mode) == 0o600


def test_kill9_after_mkdir_and_unlink(fleet):
    fleet.add_backend("lambda", LAMBDA)
    fleet.add_backend("aws", AWS, project="research")
    os.unlink(fleet.cfg("lambda"))
    fleet.kill9()
    fleet.start()
    assert sorted(os.listdir(fleet.p("projects"))) == ["main", "research"]
    assert not os.path.exists(fleet.cfg("lambda"))
    assert read_file(fleet.cfg("aws", "research")) == AWS


def test_kill9_during_writes_never_tears(fleet):
    """Writers hammer config.yml with two valid contents; kill -9 in the middle; after the
    remount the file is exactly one of them."""
    fleet.add_backend("lambda", LAMBDA)
    cfg = fleet.cfg("lambda")
    stop = threading.Event()
    done = []

    def writer(data):
        n = 0
        while not stop.is_set():
            try:
                write_file(cfg, data)
                n += 1
            except OSError:
                if stop.is_set():
                    break
        done.append(n)

    ts = [threading.Thread(target=writer, args=(d,)) for d in (LAMBDA, LAMBDA_B)]
    for t in ts:
        t.start()
    wait_until(lambda: False, timeout=0.7)
    stop.set()
    os.kill(fleet.proc.pid, signal.SIGKILL)
    fleet.killed = True
    fleet.proc.wait(10)
    for t in ts:
        t.join(20)
    assert not any(t.is_alive() for t in ts), "writers hang after the daemon died"
    subprocess.run(["fusermount3", "-uz", fleet.mnt], capture_output=True, timeout=15)
    fleet.start()
    assert read_file(cfg) in (LAMBDA, LAMBDA_B)
    assert os.stat(cfg).st_size == len(read_file(cfg))


def test_sigterm_unmounts_cleanly(fleet):
    fleet.add_backend("lambda", LAMBDA)
    fleet.proc.send_signal(signal.SIGTERM)
    rc = fleet.proc.wait(10)
    assert rc == 0, f"daemon exit code after SIGTERM: {rc}"
    assert wait_until(lambda: not is_fleet_mounted(fleet.mnt), 5), "still mounted"
    fleet.start()
    assert read_file(fleet.cfg("lambda")) == LAMBDA


def test_state_dir_files(fleet):
    names = set(os.listdir(fleet.state))
    assert {"data.mdb", "lock.mdb", "key", "lock"} <= names, names
    k = os.stat(os.path.join(fleet.state, "key"))
    assert stat.S_IMODE(k.st_mode) == 0o600 and k.st_size == 32
    key = read_file(os.path.join(fleet.state, "key"))
    fleet.remount()
    assert read_file(os.path.join(fleet.state, "key")) == key, "the key must not change"


def test_no_plaintext_secrets(fleet_factory):
    f = fleet_factory(args=["-d"])
    secrets = [LAMBDA_KEY, LAMBDA_KEY2, AWS_SECRET, AWS_ACCESS]
    f.add_backend("lambda", LAMBDA)
    f.add_backend("aws", AWS, project="research")
    f.add_backend("aws-prod", AWS)
    # rewrite, read back, rename drafts holding secrets
    write_file(f.cfg("lambda"), LAMBDA_B)
    assert read_file(f.cfg("lambda")) == LAMBDA_B
    d = os.path.join(f.bdir("lambda"), ".config.yml.swp")
    write_file(d, LAMBDA)
    os.rename(d, f.cfg("lambda"))
    read_file(f.p("config.yml"))
    # refused writes holding secrets in every error position
    bad = [
        LAMBDA + b"foo: " + LAMBDA_KEY2.encode() + b"\n",
        b"type: lambda\ncreds:\n  type: api_key\n  api_key: [" + LAMBDA_KEY2.encode() + b"]\n",
        b"type: lambda\ncreds:\n  type: api_key\n  api_key: \"" + LAMBDA_KEY2.encode() + b"\n",
        b"type: lambda\ncreds:\n  type: " + LAMBDA_KEY2.encode() + b"\n",
        b"type: " + LAMBDA_KEY2.encode() + b"\ncreds: {}\n",
        LAMBDA_KEY2.encode() + b"\n",
    ]
    for b in bad:
        try:
            write_file(f.cfg("lambda"), b)
            raise AssertionError(f"accepted {b!r}")
        except OSError as e:
            assert e.errno == errno.EINVAL
    ev = "\n".join(f.events() + f.events("main") + f.events("research"))
    st = read_file(os.path.join(f.bdir("lambda"), "status")).decode()
    f.umount()
    for s in secrets:
        assert s not in ev, f"secret {s} in an events file"
        assert s not in st, f"secret {s} in status"
    log = f.log()
    assert "unique" in log.lower() or "init" in log.lower(), "no -d debug output?"
    for s in secrets:
        assert s not in log, f"secret {s} in the daemon's -d output"
    hits = scan_bytes_for(f.state, secrets)
    assert not hits, f"plain-text secrets in the state dir: {sorted(hits)}"
