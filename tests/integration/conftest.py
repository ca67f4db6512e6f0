"""pytest fixtures for fleetfs integration tests.

fleet          a fresh state dir + mountpoint with ./fleetfs -f running on it (project `main`).
fleet_factory  make more (or differently mounted) fleets: fleet_factory(opts=[...], start=False)
fleet_base     the session's scratch directory (0755, outside /tmp so vim's backupskip and the
               'nobody' user do not get in the way); every mount lives under it.

Teardown ALWAYS unmounts (fusermount3 -u, -uz if busy, then kills the daemon), and fails the
test if the daemon died of a signal other than our own SIGKILL. A per-test watchdog SIGKILLs
the daemons of a test that hangs (a hung FUSE request would otherwise block forever), and a
session finalizer unmounts anything left under the scratch directories.
"""
import os
import re
import shutil
import signal
import tempfile
import threading

import pytest

import fleetlib
from fleetlib import BIN, Fleet, force_unmount, mounts, pids_of_binary

PREFIX = "fleetfs-it-"

# A daemon mounted without -o catalog= would download gpuhunt's public catalog: tests never
# leave the machine, so the default points at a closed loopback port (Fleet mounts also pass
# catalog=none unless a test gives its own).
os.environ["GPUHUNT_CATALOG_URL"] = "http://127.0.0.1:9/v3"
os.environ.pop("GPUHUNT_CATALOG_DIR", None)
# The same for the providers' APIs: a test that wants one points it at its fake.
for _t in ("lambda", "digitalocean", "amddevcloud", "vultr", "hotaisle", "cloudrift", "cudo",
           "vastai", "runpod", "verda", "datacrunch", "aws", "azure", "gcp", "oci", "nebius",
           "kubernetes"):
    os.environ["FLEETFS_ENDPOINT_" + _t.upper()] = "https://127.0.0.1:9/" + _t
# AWS's endpoints and credentials the way the AWS SDKs find them: the closed port, and none of
# this machine's credentials, profiles or instance metadata.
os.environ["AWS_ENDPOINT_URL"] = "https://127.0.0.1:9"
for _v in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL_")] + [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_EC2_METADATA_SERVICE_ENDPOINT"]:
    os.environ.pop(_v, None)
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/fleetfs-tests/credentials"
os.environ["AWS_CONFIG_FILE"] = "/nonexistent/fleetfs-tests/config"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
TEST_TIMEOUT = float(os.environ.get("FLEETFS_TEST_TIMEOUT", "90"))


def _scratch_parent():
    return os.environ.get("FLEETFS_TEST_TMPDIR", "/var/tmp")


def _cleanup_under(root):
    """Unmount every mount below root (deepest first) and kill fleetfs daemons naming it."""
    root = os.path.realpath(root)
    for _ in range(3):
        below = [m for m in mounts() if m[0].startswith(root + "/")]
        if not below:
            break
        for m in sorted(below, key=lambda m: -len(m[0])):
            force_unmount(m[0])
            if any(x[0] == m[0] for x in mounts()):
                os.system(f"umount -l '{m[0]}' >/dev/null 2>&1")
    for pid in pids_of_binary(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _owner_alive(base):
    """Another pytest session (a concurrent run) still owns this scratch directory."""
    try:
        with open(os.path.join(base, "owner.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid != os.getpid()
    except (OSError, ValueError):
        return False


def pytest_collection_modifyitems(config, items):
    if not os.path.exists(BIN) and os.environ.get("FLEETFS_ALLOW_MISSING"):
        skip = pytest.mark.skip(reason=f"{BIN} not built and FLEETFS_ALLOW_MISSING is set")
        for it in items:
            it.add_marker(skip)


@pytest.fixture(scope="session")
def fleet_base():
    if not os.path.exists(BIN):
        pytest.fail(f"{BIN} is missing: run `make` first "
                    "(set FLEETFS_ALLOW_MISSING=1 to skip instead)", pytrace=False)
    parent = _scratch_parent()
    # Leftovers of earlier, killed runs: unmount them (they are ours by prefix).
    for name in os.listdir(parent):
        if name.startswith(PREFIX) and not _owner_alive(os.path.join(parent, name)):
            _cleanup_under(os.path.join(parent, name))
    base = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    os.chmod(base, 0o755)
    with open(os.path.join(base, "owner.pid"), "w") as f:
        f.write(str(os.getpid()))
    yield base
    # Safety net: nothing of ours stays mounted or running.
    with fleetlib.REGISTRY_LOCK:
        left = list(fleetlib.LIVE_FLEETS)
    for f in left:
        f.teardown()
    _cleanup_under(base)
    if not any(m[0].startswith(os.path.realpath(base) + "/") for m in mounts()):
        shutil.rmtree(base, ignore_errors=True)


class _Factory:
    def __init__(self, base, testname):
        self.base = base
        self.stem = re.sub(r"[^A-Za-z0-9_]+", "_", testname)[:60]
        self.n = 0
        self.made = []

    def __call__(self, opts=(), args=(), state=None, start=True, name=None):
        self.n += 1
        if name is None:
            # tests of different modules may share a name: never another test's state
            name = f"{self.stem}-{self.n}"
            while os.path.exists(os.path.join(self.base, name + "-state")) or \
                    os.path.exists(os.path.join(self.base, name + "-mnt")):
                self.n += 1
                name = f"{self.stem}-{self.n}"
        f = Fleet(self.base, name, state=state, opts=opts, args=args)
        self.made.append(f)
        if start:
            f.start()
        return f


@pytest.fixture
def fleet_factory(fleet_base, request):
    fac = _Factory(fleet_base, request.node.name)
    fired = []

    def watchdog():
        fired.append(True)
        for f in fac.made:
            f.emergency_kill()

    t = threading.Timer(TEST_TIMEOUT, watchdog)
    t.daemon = True
    t.start()
    try:
        yield fac
    finally:
        t.cancel()
        crashes = []
        for f in fac.made:
            c = f.teardown()
            if c:
                crashes.append(f"{f.name}: {c}\n{f.log()[-3000:]}")
        if fired:
            pytest.fail(f"watchdog: test still running after {TEST_TIMEOUT}s; daemons were "
                        "SIGKILLed to unblock it", pytrace=False)
        if crashes:
            pytest.fail("fleetfs crashed:\n" + "\n".join(crashes), pytrace=False)


@pytest.fixture
def fleet(fleet_factory):
    return fleet_factory()


@pytest.fixture
def lam(fleet):
    """A fleet whose project main has backends/lambda/config.yml = LAMBDA."""
    fleet.add_backend("lambda", fleetlib.LAMBDA)
    assert fleetlib.read_file(fleet.cfg("lambda")) == fleetlib.LAMBDA
    return fleet


# The SSH test hosts (tests/hosts), shared by the fleet tests of a module.
from test_fleets import net  # noqa: E402,F401
