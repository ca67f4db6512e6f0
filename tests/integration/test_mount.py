"""Mounting: daemon mode, SIGTERM, the fstab/mount.fuse3 form (SOURCE MOUNTPOINT -o ...),
errors reported before daemonizing (bad options, unusable state dir, state in use, newer
schema, bad key file) with nothing left mounted, --help/--version, -s and -d."""
import hashlib
import os
import re
import signal
import subprocess

import pytest

from fleetlib import (BIN, FSTYPE, LAMBDA, force_unmount, is_fleet_mounted, mount_entry,
                      pid_alive, pids_of_binary, proc_mounts_has, read_file, run,
                      set_meta_schema, wait_until, write_file)


class Daemon:
    """A mount made by fleetfs itself (daemon mode / mount(8)); always cleaned up."""

    def __init__(self, base, name):
        self.state = os.path.join(base, name + "-state")
        self.mnt = os.path.join(base, name + "-mnt")
        os.makedirs(self.mnt, exist_ok=True)

    def pids(self):
        return [p for p in pids_of_binary(self.mnt) if pid_alive(p)]

    def cleanup(self):
        force_unmount(self.mnt)
        for p in self.pids():
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        wait_until(lambda: not self.pids(), 5)


@pytest.fixture
def daemon(fleet_base, request):
    made = []

    def make(name="d"):
        d = Daemon(fleet_base, f"{request.node.name[:40]}-{name}")
        made.append(d)
        return d

    yield make
    for d in made:
        d.cleanup()


def test_proc_mounts_and_clean_exit(fleet):
    assert proc_mounts_has(fleet.mnt, FSTYPE)
    assert mount_entry(fleet.mnt)[1] == FSTYPE
    rc = fleet.umount()
    assert rc == 0, f"daemon exit code after fusermount3 -u: {rc}"
    assert not is_fleet_mounted(fleet.mnt)


def test_help_and_version():
    r = run([BIN, "--help"], timeout=10)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert re.search(r"usage", out, re.I) and "state" in out, out
    r = run([BIN, "--version"], timeout=10)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr), r.stdout + r.stderr


def test_daemon_mode_and_sigterm(daemon):
    d = daemon()
    r = run([BIN, "-o", f"state={d.state}", d.mnt], timeout=20)
    assert r.returncode == 0, r.stderr
    # ready when the command returns
    assert proc_mounts_has(d.mnt)
    assert "README" in os.listdir(d.mnt)
    assert os.listdir(os.path.join(d.mnt, "projects")) == ["main"]
    os.mkdir(os.path.join(d.mnt, "projects", "main", "backends", "lambda"))
    write_file(os.path.join(d.mnt, "projects", "main", "backends", "lambda", "config.yml"),
               LAMBDA)
    pids = d.pids()
    assert len(pids) == 1, f"expected one daemon, found {pids}"
    os.kill(pids[0], signal.SIGTERM)
    assert wait_until(lambda: not proc_mounts_has(d.mnt), 10), "SIGTERM did not unmount"
    assert wait_until(lambda: not pid_alive(pids[0]), 10), "daemon still running"
    # state persisted; the lock was released
    r = run([BIN, "-o", f"state={d.state}", d.mnt], timeout=20)
    assert r.returncode == 0, r.stderr
    assert read_file(os.path.join(d.mnt, "projects", "main", "backends", "lambda",
                                  "config.yml")) == LAMBDA
    r = run(["fusermount3", "-u", d.mnt], timeout=15)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: not d.pids(), 10), "daemon did not exit after fusermount3 -u"


def test_fstab_form_source_mountpoint(daemon):
    d = daemon()
    r = run([BIN, d.state, d.mnt, "-o", "rw,_netdev,nofail,x-systemd.automount"], timeout=20)
    assert r.returncode == 0, r.stderr
    assert proc_mounts_has(d.mnt)
    os.mkdir(os.path.join(d.mnt, "projects", "p1"))
    run(["fusermount3", "-u", d.mnt], timeout=15, check=True)
    wait_until(lambda: not d.pids(), 10)
    assert os.path.isdir(d.state) and os.path.exists(os.path.join(d.state, "data.mdb")), \
        "SOURCE must be the state dir"
    r = run([BIN, "-o", f"state={d.state}", d.mnt], timeout=20)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(os.path.join(d.mnt, "projects"))) == ["main", "p1"]


DASH_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.skipif(not os.path.exists("/sbin/mount.fuse3"), reason="no mount.fuse3")
def test_mount_fuse3_helper(daemon, tmp_path):
    """What `mount -t fuse.fleetfs SRC MNT -o ...` (and fstab) runs: mount.fuse3, which runs
    `fleetfs SRC MNT -o <opts>` through /bin/sh with the PATH it was given."""
    d = daemon()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(BIN, bindir / "fleetfs")
    env = {"PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin"}
    r = run(["/sbin/mount.fuse3", d.state, d.mnt, "-t", "fleetfs", "-o",
             "rw,_netdev,nofail,x-systemd.automount,noatime"], env=env, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert proc_mounts_has(d.mnt)
    assert os.listdir(os.path.join(d.mnt, "projects")) == ["main"]
    r = run(["umount", d.mnt], timeout=15)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: not d.pids(), 10)


@pytest.mark.skipif(not os.path.exists("/sbin/mount.fuse3"), reason="no mount.fuse3")
def test_mount_8_and_fstab(daemon, tmp_path):
    """mount(8) with an fstab line. mount(8) runs its helpers without PATH, so the type
    `fuse.fleetfs` needs fleetfs installed in the default PATH (make install); the legacy
    spelling `fuse` with source `PROGRAM#SOURCE` works from the build tree and goes through
    the same mount.fuse3 option handling."""
    import shutil
    d = daemon()
    installed = shutil.which("fleetfs", path=DASH_DEFAULT_PATH)
    if installed:
        src, fstype = d.state, "fuse.fleetfs"
    else:
        src, fstype = f"{BIN}#{d.state}", "fuse"
    r = run(["mount", "-t", fstype, src, d.mnt, "-o", "defaults,_netdev,nofail"], timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert proc_mounts_has(d.mnt)
    r = run(["umount", d.mnt], timeout=15)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: not d.pids(), 10)

    fstab = tmp_path / "fstab"
    fstab.write_text(f"{src} {d.mnt} {fstype} "
                     "defaults,_netdev,nofail,x-systemd.automount 0 0\n")
    r = run(["mount", "--fstab", str(fstab), d.mnt], timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert proc_mounts_has(d.mnt)
    assert "README" in os.listdir(d.mnt)
    r = run(["umount", d.mnt], timeout=15)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: not d.pids(), 10)


def refused_mount(d, argv, *fragments, timeout=20):
    r = run(argv, timeout=timeout)
    assert r.returncode != 0, f"{argv} should fail"
    err = r.stderr
    for frag in fragments:
        assert frag.lower() in err.lower(), f"stderr lacks {frag!r}: {err!r}"
    assert not proc_mounts_has(d.mnt), "something was mounted"
    assert wait_until(lambda: not d.pids(), 5), "a daemon stayed behind"
    return err


def test_bad_option(daemon):
    d = daemon()
    refused_mount(d, [BIN, "-o", f"state={d.state},bogus_option", d.mnt], "bogus_option")
    refused_mount(d, [BIN, "-o", "bogus_option", d.mnt], "bogus_option")
    refused_mount(d, [BIN, "--no-such-flag", d.mnt])
    refused_mount(d, [BIN, "-o", f"state={d.state}"])  # no mountpoint


def test_unusable_state_dir(daemon, tmp_path):
    d = daemon()
    refused_mount(d, [BIN, "-o", "state=/proc/nonexistent", d.mnt], "/proc/nonexistent")
    f = tmp_path / "plainfile"
    f.write_text("x")
    refused_mount(d, [BIN, "-o", f"state={f}", d.mnt], str(f))


def test_missing_mountpoint(daemon, tmp_path):
    d = daemon()
    missing = str(tmp_path / "nope")
    r = run([BIN, "-o", f"state={d.state}", missing], timeout=20)
    assert r.returncode != 0 and r.stderr.strip(), r
    assert not proc_mounts_has(missing)


def test_state_in_use(fleet, daemon):
    d = daemon()
    err = refused_mount(d, [BIN, "-o", f"state={fleet.state}", d.mnt], "in use")
    assert err
    err = refused_mount(d, [BIN, "-f", "-o", f"state={fleet.state}", d.mnt], "in use")
    assert fleet.alive() and "README" in os.listdir(fleet.mnt)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_newer_schema_refused(fleet, daemon):
    fleet.add_backend("lambda", LAMBDA)
    assert fleet.umount() == 0
    dump = set_meta_schema(fleet.state, "999")
    assert re.search(r"^ schema\n 999", dump, re.M), dump
    before = sha(os.path.join(fleet.state, "data.mdb"))
    d = daemon()
    refused_mount(d, [BIN, "-o", f"state={fleet.state}", d.mnt], "schema")
    refused_mount(d, [BIN, "-f", "-o", f"state={fleet.state}", d.mnt], "schema")
    assert sha(os.path.join(fleet.state, "data.mdb")) == before, "a newer store was modified"
    # back to 1: mounts again with the data intact
    set_meta_schema(fleet.state, "1")
    fleet.start()
    assert read_file(fleet.cfg("lambda")) == LAMBDA


def test_bad_key_file(fleet, daemon):
    assert fleet.umount() == 0
    key = os.path.join(fleet.state, "key")
    os.chmod(key, 0o644)
    d = daemon()
    refused_mount(d, [BIN, "-o", f"state={fleet.state}", d.mnt], "key")
    os.chmod(key, 0o600)
    with open(key, "ab") as f:
        f.write(b"x")
    refused_mount(d, [BIN, "-o", f"state={fleet.state}", d.mnt], "key")


def test_single_threaded_and_debug(fleet_factory):
    f = fleet_factory(args=["-s"])
    f.add_backend("lambda", LAMBDA)
    assert read_file(f.cfg("lambda")) == LAMBDA
    f.remount()
    assert read_file(f.cfg("lambda")) == LAMBDA
    g = fleet_factory(args=["-d"])
    os.listdir(g.p("projects"))
    assert g.log().strip(), "-d printed nothing"


def test_state_default_from_xdg(daemon, tmp_path):
    d = daemon()
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    e = dict(os.environ, XDG_DATA_HOME=str(xdg))
    r = subprocess.run([BIN, d.mnt], capture_output=True, text=True, timeout=20, env=e)
    assert r.returncode == 0, r.stderr
    try:
        assert proc_mounts_has(d.mnt)
        assert os.path.exists(xdg / "fleetfs" / "data.mdb")
    finally:
        run(["fusermount3", "-u", d.mnt], timeout=15)
        wait_until(lambda: not d.pids(), 10)
