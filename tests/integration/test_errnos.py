"""The errno of every refused operation on a directory: what a local filesystem would give, or
what docs/filesystem.md promises (they agree)."""
import errno
import os
import subprocess

import pytest

from fleetlib import LAMBDA, errno_of, wait_until, write_file


@pytest.fixture
def tree(fleet, tmp_path):
    """main with a backend and an SSH fleet whose only host never answers (a closed port on
    loopback), so fleets/lab/ and instances/0/ exist; project other with a backend."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fleet.add_backend("lambda", LAMBDA)
    fleet.add_backend("lambda", LAMBDA, project="other")
    spec = ("type: fleet\nssh_config:\n  user: u\n"
            f"  identity_file: {key}\n  hosts:\n    - hostname: 127.0.0.1\n      port: 9\n")
    write_file(fleet.p("projects", "main", "fleets", "lab.yml"), spec.encode())
    inst = fleet.p("projects", "main", "fleets", "lab", "instances", "0")
    assert wait_until(lambda: os.path.isdir(inst), 10), "instance 0 never appeared"
    return fleet


def test_rmdir_of_a_fleet_directory_is_enotempty(tree):
    fl = tree.p("projects", "main", "fleets")
    assert errno_of(os.rmdir, os.path.join(fl, "lab")) == errno.ENOTEMPTY
    assert errno_of(os.rmdir, os.path.join(fl, "lab", "instances")) == errno.ENOTEMPTY
    assert errno_of(os.rmdir, os.path.join(fl, "lab", "instances", "0")) == errno.ENOTEMPTY
    assert os.path.isdir(os.path.join(fl, "lab", "instances", "0"))
    ev = open(tree.p("projects", "main", "events")).read()
    assert "rm fleets/lab.yml deletes the fleet" in ev, ev[-2000:]


def test_rmdir_of_a_file_or_nothing(tree):
    fl = tree.p("projects", "main", "fleets")
    assert errno_of(os.rmdir, os.path.join(fl, "lab.yml")) == errno.ENOTDIR
    assert errno_of(os.rmdir, os.path.join(fl, "lab", "status")) == errno.ENOTDIR
    assert errno_of(os.rmdir, os.path.join(fl, "nope")) == errno.ENOENT
    assert errno_of(os.rmdir, os.path.join(fl, "lab", "instances", "7")) == errno.ENOENT
    assert errno_of(os.rmdir, tree.p("projects", "main", "backends", "lambda",
                                     "config.yml")) == errno.ENOTDIR
    assert errno_of(os.rmdir, tree.p("projects")) == errno.EPERM


@pytest.mark.parametrize("where", [
    ("offers",), ("fleets", "lab"), ("fleets", "lab", "instances"),
    ("fleets", "lab", "instances", "0"), ("ssh",)])
def test_creating_a_file_in_a_read_only_directory_is_eacces(tree, where):
    d = tree.p("projects", "main", *where)
    assert os.path.isdir(d)
    path = os.path.join(d, "new-file")
    assert errno_of(lambda: open(path, "w").close()) == errno.EACCES
    assert errno_of(os.mknod, path, 0o600) == errno.EACCES
    assert not os.path.exists(path)


@pytest.mark.parametrize("where", [("projects",), ("projects", "main"),
                                   ("projects", "main", "backends")])
def test_creating_a_file_where_only_directories_go_is_eperm(tree, where):
    path = os.path.join(tree.p(*where), "new-file")
    assert errno_of(lambda: open(path, "w").close()) == errno.EPERM


def test_renaming_projects_and_backends_is_eperm(tree):
    pr = tree.p("projects")
    assert errno_of(os.rename, os.path.join(pr, "main"), os.path.join(pr, "other")) == \
        errno.EPERM
    assert errno_of(os.rename, os.path.join(pr, "main"), os.path.join(pr, "fresh")) == \
        errno.EPERM
    os.mkdir(tree.bdir("empty"))
    b = tree.p("projects", "main", "backends")
    for dst in ("empty", "fresh"):
        assert errno_of(os.rename, os.path.join(b, "lambda"), os.path.join(b, dst)) == \
            errno.EPERM
    os.mkdir(tree.bdir("lambda2", project="other"))
    assert errno_of(os.rename, tree.bdir("lambda"), tree.bdir("lambda2", "other")) == \
        errno.EPERM
    # a file over a directory stays EISDIR, as anywhere
    assert errno_of(os.rename, tree.cfg("lambda"), tree.bdir("empty")) == errno.EISDIR
    assert open(tree.cfg("lambda"), "rb").read() == LAMBDA
    assert os.path.isdir(tree.bdir("empty"))
