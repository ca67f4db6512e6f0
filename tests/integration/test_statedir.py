"""The state directory is trusted like ~/.ssh: fleetfs refuses one that others could write to,
and never follows a link planted among its files (it would overwrite the link's target)."""
import os
import subprocess

import pytest

from fleetlib import LAMBDA, is_fleet_mounted, read_file


def _start_refused(f, timeout=15):
    """Run the daemon in the foreground; it must exit non-zero at once. Returns stderr."""
    try:
        p = subprocess.run(f.cmdline(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("fleetfs mounted a state directory it should have refused")
    assert p.returncode != 0, p.stderr
    assert not is_fleet_mounted(f.mnt)
    return p.stderr


@pytest.fixture
def made(fleet_factory):
    """A fleet whose state dir exists (one mount made it), now unmounted."""
    f = fleet_factory()
    f.add_backend("lambda", LAMBDA)
    assert f.umount() == 0
    return f


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_group_or_world_writable_state_dir_is_refused(made, mode):
    os.chmod(made.state, mode)
    err = _start_refused(made)
    assert "writable by" in err and "chmod 700" in err, err
    assert f"{mode:04o}" in err, err
    os.chmod(made.state, 0o700)
    made.start()
    assert read_file(made.cfg("lambda")) == LAMBDA


def test_readable_state_dir_is_accepted(made):
    os.chmod(made.state, 0o755)  # others can list it, but not write to it
    made.start()
    assert read_file(made.cfg("lambda")) == LAMBDA


def test_state_dir_of_another_user_is_refused(made):
    os.chown(made.state, 65534, 65534)
    try:
        err = _start_refused(made)
        assert "belongs to uid 65534" in err, err
    finally:
        os.chown(made.state, 0, 0)


def test_lock_symlink_is_not_followed(made, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    lock = os.path.join(made.state, "lock")
    os.unlink(lock)
    os.symlink(victim, lock)
    err = _start_refused(made)
    assert "lock" in err and "symbolic link" in err, err
    assert victim.read_bytes() == b"precious\n", "the link's target was written to"
    os.unlink(lock)
    made.start()
    assert read_file(made.cfg("lambda")) == LAMBDA


@pytest.mark.parametrize("name", ["data.mdb", "lock.mdb", "key"])
def test_store_file_symlink_is_refused(made, tmp_path, name):
    path = os.path.join(made.state, name)
    real = tmp_path / name
    os.rename(path, real)
    os.symlink(real, path)
    before = real.read_bytes()
    err = _start_refused(made)
    assert name in err and "symbolic link" in err, err
    assert real.read_bytes() == before
    os.unlink(path)
    os.rename(real, path)
    made.start()
    assert read_file(made.cfg("lambda")) == LAMBDA


def test_lock_fifo_is_refused(made):
    lock = os.path.join(made.state, "lock")
    os.unlink(lock)
    os.mkfifo(lock, 0o600)
    err = _start_refused(made)
    assert "not a regular file" in err, err
