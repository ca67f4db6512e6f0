"""A state directory written by an older fleetfs reads unchanged.

tests/integration/data/oldstore-v1/ holds data.mdb and key of a store made by fleetfs as of
commit e8ce4b1 (fleet records and instance rows as untyped JSON, before core/records.c; how:
make_fixture.py there) and, under expected/, every fleet file that binary rendered from it:
specs, status, events, ssh_config, instance status/info.yml/ssh, the project's ssh/ files.
The rows' times lie about 175 years ahead (the fixture was made under libfaketime), so no row
is due and the engine leaves them alone: renderings compare byte for byte; only the mount
point is replaced by @MNT@ (ssh stanzas name it) and ssh/id_rsa by its SHA-256.

FLEETFS_OLDSTORE_RECORD=1 rewrites expected/ with the binary under test (FLEETFS_BIN): only
ever with the old binary the fixture was made with.
"""
import hashlib
import os
import shutil
import time

import yaml

from fleetlib import read_file, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "data", "oldstore-v1")
EXPECTED = os.path.join(FIXTURE, "expected")


def mount_copy(fleet_factory):
    m = fleet_factory(start=False)
    os.makedirs(m.state, mode=0o700, exist_ok=True)
    os.chmod(m.state, 0o700)
    for f in ("data.mdb", "key"):
        shutil.copyfile(os.path.join(FIXTURE, f), os.path.join(m.state, f))
        os.chmod(os.path.join(m.state, f), 0o600)
    m.start()
    return m


def snapshot(m):
    """{relative path under projects/main: normalised bytes} of every fleet file."""
    root = m.p("projects", "main")
    out = {}
    for top in ("fleets", "ssh"):
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(d, f)
                rel = os.path.relpath(p, root)
                data = read_file(p).replace(m.mnt.encode(), b"@MNT@")
                if rel == os.path.join("ssh", "id_rsa"):   # no private key in the tree
                    data = b"sha256:" + hashlib.sha256(data).hexdigest().encode() + b"\n"
                out[rel] = data
    return out


def expected():
    out = {}
    for d, _, files in os.walk(EXPECTED):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, EXPECTED)] = fh.read()
    return out


def compare(got, want):
    assert sorted(got) == sorted(want), "the tree differs"
    for rel in sorted(want):
        assert got[rel] == want[rel], (f"{rel} differs:\n--- old binary\n"
                                       f"{want[rel].decode()}\n--- this binary\n"
                                       f"{got[rel].decode()}")


def test_old_store_renders_unchanged(fleet_factory):
    m = mount_copy(fleet_factory)
    got = snapshot(m)
    if os.environ.get("FLEETFS_OLDSTORE_RECORD") == "1":
        shutil.rmtree(EXPECTED, ignore_errors=True)
        for rel, data in got.items():
            os.makedirs(os.path.dirname(os.path.join(EXPECTED, rel)), exist_ok=True)
            with open(os.path.join(EXPECTED, rel), "wb") as fh:
                fh.write(data)
    want = expected()
    assert len(want) > 30
    compare(got, want)
    # the engine has scanned the rows meanwhile: none was due, nothing changed
    time.sleep(2.5)
    compare(snapshot(m), want)
    # and a second mount of the same (now rewritten by nothing) state reads the same
    assert m.umount() == 0
    m.start()
    compare(snapshot(m), want)


def test_old_store_rows_take_changes(fleet_factory):
    """Writes on old records go through the new code: an unlink of an old cloud fleet
    terminates its old rows and the fleet goes; the SSH fleet's refused write stays shown."""
    m = mount_copy(fleet_factory)
    fl = m.p("projects", "main", "fleets")
    os.unlink(os.path.join(fl, "cloud.yml"))
    assert wait_until(lambda: not os.path.exists(os.path.join(fl, "cloud")), 20, 0.1)
    ev = read_file(m.p("projects", "main", "events")).decode()
    assert "fleet=cloud deleted: 2 instances terminating" in ev
    assert "fleet=cloud instance=0 terminated (terminated_by_user)" in ev
    assert "fleet=cloud instance=1 terminated (terminated_by_user)" in ev
    assert "fleet=cloud terminated: every instance is gone" in ev
    st = yaml.safe_load(read_file(os.path.join(fl, "gpu", "status")))
    assert st["last_rejected_write"]["message"].startswith(
        "projects/main/fleets/gpu.yml:14: unknown key")
    assert st["actual"]["idle"] == 2 and st["desired"]["hosts"] == 3
    # the same bytes written again: no change but the mtime
    spec = read_file(os.path.join(fl, "big.yml"))
    with open(os.path.join(fl, "big.yml"), "wb") as fh:
        fh.write(spec)
    os.utime(os.path.join(fl, "big.yml"), (1700000000, 1700000000))
    assert os.stat(os.path.join(fl, "big.yml")).st_mtime == 1700000000
    got = snapshot(m)
    want = expected()
    for rel in want:
        if rel.startswith("fleets/big"):
            assert got[rel] == want[rel], rel
