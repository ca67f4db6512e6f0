"""A full state filesystem: writes fail with ENOSPC (never EIO), events, status and the log say
what happened and what to do, reads go on, nothing stored is lost, and once space is freed
writes commit again."""
import errno
import os
import subprocess

import pytest

from fleetlib import LAMBDA, LAMBDA_B, errno_of, read_file, wait_until, write_fd


@pytest.fixture
def small(fleet_factory, tmp_path):
    """A fleet whose state dir is on an 8 MiB tmpfs of its own."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    f = None
    try:
        f = fleet_factory(state=str(d / "state"))
        yield f, d
    finally:
        if f is not None:
            f.teardown()
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(d):
    """Fill the filesystem of d but for a few KiB."""
    filler = d / "filler"
    with open(filler, "wb") as out:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def _big(i, size=200_000):
    """A valid lambda config with a long comment: each takes fresh pages in the store."""
    return LAMBDA + (f"# {i} " + "x" * size + "\n").encode()


def test_full_state_dir(small):
    f, d = small
    f.add_backend("lambda", LAMBDA)
    for i in range(20):
        os.mkdir(f.bdir(f"b{i}"))
    filler = _fill(d)
    errs = []
    for i in range(20):
        werr, cerr = write_fd(os.path.join(f.bdir(f"b{i}"), "config.yml"), _big(i))
        if werr or cerr:
            errs.append(werr or cerr)
            break
    assert errs, "the state filesystem never filled up"
    print("filled after", i, "backends:", errno.errorcode[errs[-1]])
    assert errs[-1] == errno.ENOSPC, f"a write on a full state dir gave {errno.errorcode[errs[-1]]}"
    # it says so, where a user looks, and what to do
    ev = read_file(f.p("events")).decode()
    assert "state dir full:" in ev and f"MiB free on {f.state}" in ev, ev[-1500:]
    pev = read_file(f.p("projects", "main", "events")).decode()
    assert "state dir full:" in pev
    st = read_file(os.path.join(f.bdir("lambda"), "status")).decode()
    assert "store:" in st and "state dir full" in st, st
    assert "state dir full" in f.log()
    # reads go on, nothing stored is lost
    assert read_file(f.cfg("lambda")) == LAMBDA
    assert os.listdir(f.p("projects", "main", "backends"))
    # more writes too big for the pages the store has free keep failing with ENOSPC, never
    # EIO (a small one may still fit in pages LMDB freed earlier: that one commits)
    for content in (_big("again"), _big("once more")):
        werr, cerr = write_fd(f.cfg("lambda"), content)
        assert (werr or cerr) == errno.ENOSPC, (werr, cerr)
    assert read_file(f.cfg("lambda")) == LAMBDA
    # space freed: writes commit again and the note goes away
    os.unlink(filler)
    assert write_fd(f.cfg("lambda"), LAMBDA_B) == (None, None)
    assert read_file(f.cfg("lambda")) == LAMBDA_B
    assert wait_until(lambda: "state dir full" not in read_file(f.p("events")).decode(), 5)
    assert "store:" not in read_file(os.path.join(f.bdir("lambda"), "status")).decode()
    f.remount()
    assert read_file(f.cfg("lambda")) == LAMBDA_B
