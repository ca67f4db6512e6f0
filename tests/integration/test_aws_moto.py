"""fleetfs's AWS client (backends/aws.c, awsapi.c, sigv4.c through build/bkcall) against moto's
server, a third-party AWS emulator, with its IAM authentication on: every request must carry a
known access key and a SigV4 signature that moto recomputes itself, over the form body rebuilt
the way botocore writes it (a space '+'). A body encoded otherwise (a space %20, as fleetfs
once wrote it) is AuthFailure there though AWS takes it: these tests fail on that encoding at
the first parameter with a space (DescribeImages' name filter, CreateSecurityGroup's
description).

moto is not a Debian package: the server runs under the first interpreter that has moto and
boto3 (FLEETFS_MOTO_PYTHON, then pyenv's versions, then python3 on PATH), started by
motoserver.py on 127.0.0.1 (plain HTTP, an ephemeral port). Without one the tests skip, even
under CI_STRICT. moto's instances have made-up public addresses outside loopback: nothing here
connects to them, only the API's answers are checked.
"""
import glob
import json
import os
import select
import shutil
import subprocess
import sys
import time

import boto3
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
import cloudapi  # noqa: E402
from cloudapi import _bkcall, keypair  # noqa: E402,F401

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "motoserver.py")
START_TIMEOUT = 120.0          # moto imports every service's models: slow on a busy machine
REGION = "us-east-1"
NAME = "fleetfs-main-cpu-0-a1b2c3d4"
SG_NAME = "fleetfs_security_group_main"
SG_DESCRIPTION = "Made by fleetfs: SSH in, all traffic within"    # backends/aws.c
CPU = {"backend": "aws", "type": "aws", "region": REGION, "instance": "t3.small",
       "price": 0.0208, "spot": False, "cpus": 2, "cpu_arch": "x86", "memory_mib": 2048,
       "disk_mib": 102400, "gpus": {"vendor": "", "name": "", "memory_mib": 0, "count": 0}}
# moto's images are old ones of AWS's: a Deep Learning AMI of Amazon's (owner 898082745236)
# by a name pattern with spaces, so that the filter is form-encoded with '+' too
OS_IMAGES = ('os_images:\n  cpu: {name: "Deep Learning AMI Ubuntu Linux - *", '
             'owner: "898082745236", user: ubuntu}\n')


def moto_python():
    """The first interpreter that can import moto and boto3, or None."""
    cands = [os.environ.get("FLEETFS_MOTO_PYTHON")]
    for root in (os.path.expanduser("~/.pyenv"), "/root/.pyenv",
                 os.environ.get("PYENV_ROOT")):
        if root:
            cands += sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3")),
                            reverse=True)
    cands += [shutil.which("python3"), "/usr/bin/python3"]
    seen = set()
    for py in cands:
        if not py or py in seen or not os.access(py, os.X_OK):
            continue
        seen.add(py)
        try:
            r = subprocess.run([py, "-c", "import importlib.util as u; "
                                "assert u.find_spec('moto') and u.find_spec('boto3')"],
                               capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return py
    return None


def _stop(p):
    """End the runner by its pid: EOF on its stdin, then SIGTERM, then SIGKILL."""
    if p.poll() is None:
        try:
            p.stdin.close()
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
    p.stdout.close()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's server with auth on: {"url", "access_key", "secret_key"}."""
    py = moto_python()
    if py is None:
        pytest.skip("moto (with boto3) is not importable by any interpreter tried "
                    "(FLEETFS_MOTO_PYTHON, ~/.pyenv/versions/*, python3 on PATH); no Debian "
                    "package provides moto, so this skips even under CI_STRICT")
    d = tmp_path_factory.mktemp("moto")
    log = d / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(d / "none"), AWS_SHARED_CREDENTIALS_FILE=str(d / "none"),
               NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    with open(log, "wb") as errf:
        p = subprocess.Popen([py, RUNNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=errf, env=env, cwd=str(d))
    try:
        end = time.monotonic() + START_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            left = end - time.monotonic()
            assert left > 0 and p.poll() is None, \
                f"moto did not start ({py}):\n" + log.read_text()[-3000:]
            if select.select([p.stdout], [], [], min(left, 1.0))[0]:
                chunk = os.read(p.stdout.fileno(), 4096)
                assert chunk, f"moto exited ({py}):\n" + log.read_text()[-3000:]
                line += chunk
        info = json.loads(line)
        info["url"] = f"http://127.0.0.1:{info['port']}"
        info["log"] = log
        yield info
    finally:
        _stop(p)


@pytest.fixture
def bk(moto, tmp_path, keypair):
    """bk(op, *args, secret=the user's, extra="") -> what bkcall printed (+ exit, stderr)."""
    pubfile = tmp_path / "id_rsa.pub"
    pubfile.write_text(keypair[1] + "\n")

    def call(op, *args, secret=None, access_key=None, extra=OS_IMAGES):
        cfg = tmp_path / "config.yml"
        cfg.write_text(f"type: aws\ncreds:\n  type: access_key\n"
                       f"  access_key: {access_key or moto['access_key']}\n"
                       f"  secret_key: {secret or moto['secret_key']}\n"
                       f"regions: [{REGION}]\n" + extra)
        e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        e.update(AWS_ENDPOINT_URL=moto["url"], FLEETFS_TIME_SCALE="0.01",
                 FLEETFS_CATALOG="none", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        return cloudapi.run_bkcall("aws", cfg, op, args, e, pubfile, (moto["secret_key"],),
                                   timeout=90)

    return call


@pytest.fixture
def ec2(moto):
    """Debian's boto3 on moto, with the test user's key: what moto made, as AWS reports it."""
    return boto3.client("ec2", region_name=REGION, endpoint_url=moto["url"],
                        aws_access_key_id=moto["access_key"],
                        aws_secret_access_key=moto["secret_key"])


def test_auth_is_on(bk, moto):
    """moto checks the key and the signature: the right ones pass, others are refused."""
    assert bk("check")["rc"] == 0
    r = bk("check", secret="x" + moto["secret_key"][1:])
    assert r["errno"] == "EACCES" and "SignatureDoesNotMatch" in r["err"], r
    r = bk("check", access_key="AKIANOSUCHKEY0000000")
    assert r["errno"] == "EACCES" and "InvalidClientTokenId" in r["err"], r


def test_create_get_terminate(bk, ec2):
    r = bk("create", CPU, NAME)
    assert r["rc"] == 0, r
    vm = r["vm"]
    assert vm["name"] == NAME and vm["instance"] == "t3.small" and vm["region"] == REGION
    assert vm["id"].startswith("i-") and vm["state"] in ("pending", "running"), vm
    # the security group, with its description's spaces as sent
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [SG_NAME]}])["SecurityGroups"]
    assert [g["Description"] for g in groups] == [SG_DESCRIPTION]
    inst = ec2.describe_instances(InstanceIds=[vm["id"]])["Reservations"][0]["Instances"][0]
    nic = inst["NetworkInterfaces"][0]      # the group is the interface's (RunInstances')
    assert [g["GroupId"] for g in nic["Groups"]] == [groups[0]["GroupId"]]
    assert {t["Key"]: t["Value"] for t in inst["Tags"]}["Name"] == NAME
    g = cloudapi.wait_state(bk, vm["id"], ("running",), vm["backend_data"])
    assert g["vm"]["id"] == vm["id"] and g["vm"]["name"] == NAME
    assert [v["id"] for v in bk("list")["vms"]] == [vm["id"]]
    # terminate: asked, then gone; again: still fine
    assert bk("terminate", vm["id"], vm["backend_data"])["rc"] == 0
    cloudapi.wait_state(bk, vm["id"], ("terminated", "ENOENT"), vm["backend_data"])
    assert bk("terminate", vm["id"], vm["backend_data"])["rc"] == 0
    # a second create finds the group made and complete
    r = bk("create", CPU, NAME.replace("a1b2", "e5f6"))
    assert r["rc"] == 0, r
    assert len(ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [SG_NAME]}])["SecurityGroups"]) == 1
    assert bk("terminate", r["vm"]["id"], r["vm"]["backend_data"])["rc"] == 0
