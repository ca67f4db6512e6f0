"""What the provider API tests (test_<provider>_api.py) share: build/bkcall, the project key
pair, ssh into a fake's VM, waiting for a VM state. Fixtures are imported by name."""
import json
import os
import subprocess
import sys
import time

import pytest

from fleetlib import REPO

sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
from cloudfake import HostPool  # noqa: E402

BKCALL = os.environ.get("FLEETFS_BKCALL") or os.path.join(REPO, "build", "bkcall")


def run_bkcall(btype, cfg, op, args, env, pubfile, secrets, timeout=60):
    """build/bkcall BTYPE BTYPE CFG OP ARGS (create: OFFER NAME with the public key file) in
    env -> what it printed, plus "exit" and "stderr". Fails the test when a secret shows up
    in the output or bkcall's exit status disagrees with its rc."""
    argv = [BKCALL, btype, btype, str(cfg), op]
    if op == "create":
        offer, name = args
        argv += [json.dumps(offer), name, str(pubfile)]
    else:
        argv += list(args)
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    for s in secrets:
        assert s not in r.stdout and s not in r.stderr, "a secret was printed"
    assert r.returncode in (0, 1), r.stderr
    out = json.loads(r.stdout)
    assert (r.returncode == 0) == (out["rc"] == 0), out
    out["exit"], out["stderr"] = r.returncode, r.stderr
    return out


def serving(fake, pool):
    """For a fixture: `yield from cloudapi.serving(fake, pool)` starts the fake, lends it to the
    test, stops it whatever happened (every host given back, keys cleared, sessions killed),
    then fails the test when the fake failed or a host was not given back."""
    fake.start()
    try:
        yield fake
    finally:
        errors = list(fake.errors)
        fake.stop()
    assert not errors, "the fake failed:\n" + "\n".join(errors)
    assert pool.free == pool.n, "a host was not given back"


def api_key_bk(btype, target, endpoint_var, tmp_path, keypair, secrets, default_key,
               scale="0.01"):
    """bk(op, *args, key=default_key, ca=True, catalog="none", extra_config="", env={}) for
    a backend type whose creds are an API key, against the fake target: the JSON bkcall
    printed, plus "exit" and "stderr" (see run_bkcall). bk.pubfile: the public key file."""
    pubfile = tmp_path / "id_rsa.pub"
    pubfile.write_text(keypair[1] + "\n")

    def call(op, *args, key=default_key, ca=True, catalog="none", extra_config="", env=None):
        cfg = tmp_path / f"{btype}.yml"
        cfg.write_text(f"type: {btype}\ncreds:\n  type: api_key\n  api_key: {key}\n"
                       + extra_config)
        e = dict(os.environ, FLEETFS_TIME_SCALE=scale, FLEETFS_CATALOG=catalog)
        e[endpoint_var] = target.url
        if ca:
            e["FLEETFS_CA_BUNDLE"] = target.ca_path
        else:
            e.pop("FLEETFS_CA_BUNDLE", None)
        e.update(env or {})
        return run_bkcall(btype, cfg, op, args, e, pubfile, secrets)

    call.pubfile = str(pubfile)
    return call


@pytest.fixture(scope="module")
def otherkey(tmp_path_factory):
    """Another key pair (private path, public line): never the project's."""
    d = tmp_path_factory.mktemp("otherkey")
    path = str(d / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True,
                   capture_output=True)
    with open(path + ".pub") as f:
        return path, f.read().strip()


def host_pool(n, user):
    """A module-scoped `pool` fixture: n test hosts for user, shared by the module's fakes,
    started by the first test that needs one, always stopped. In a test module:
    `pool = cloudapi.host_pool(3, "ubuntu")`."""
    @pytest.fixture(scope="module")
    def pool():
        p = HostPool(n=n, user=user)
        try:
            yield p
        finally:
            p.stop()
    return pool


def need_root(what="VMs"):
    if os.geteuid() != 0:
        pytest.skip(f"the fake's {what} are sshd hosts in network namespaces: root needed")


@pytest.fixture(scope="module", autouse=True)
def _bkcall():
    if not os.path.exists(BKCALL):
        if os.environ.get("FLEETFS_ALLOW_MISSING"):
            pytest.skip(f"{BKCALL} not built")
        pytest.fail(f"{BKCALL} is missing: run `make build/bkcall`", pytrace=False)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    """The project key: a throwaway RSA pair (private path, public line)."""
    d = tmp_path_factory.mktemp("keys")
    path = str(d / "id_rsa")
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C",
                    "fleetfs-test-project", "-f", path], check=True, capture_output=True)
    with open(path + ".pub") as f:
        return path, f.read().strip()


def ssh(ip, key, user, timeout=30):
    """`ssh -i key user@ip true`, nothing from ~/.ssh."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"{user}@{ip}", "true"],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def wait_state(bk, vm_id, states, *args, timeout=15.0):
    """bk("get", vm_id, *args) until the VM's state (or the errno) is one of states."""
    end = time.monotonic() + timeout
    while True:
        r = bk("get", vm_id, *args)
        if (r["rc"] == 0 and r["vm"]["state"] in states) or \
                (r["rc"] != 0 and r["errno"] in states):
            return r
        assert time.monotonic() < end, f"not {states} after {timeout}s: {r}"
        time.sleep(0.1)
