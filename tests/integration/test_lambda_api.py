"""The Lambda provider (backends/lambda.c) against its fake (tests/fakes/lambda_fake.py), one
call at a time through build/bkcall, over HTTPS with a test CA (FLEETFS_CA_BUNDLE). The
fake's VMs are real sshd hosts in network namespaces (tests/hosts), so a launched VM is
reached with the real ssh client as ubuntu@<ip>. The tests that create VMs need root; the
others do not. Every request is recorded by the fake: paths and bodies are asserted exactly."""
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
from lambda_fake import LambdaFake  # noqa: E402
import cloudapi  # noqa: E402
from cloudapi import BKCALL, _bkcall, keypair, need_root, otherkey, wait_state  # noqa: E402,F401

KEY = "lmbdFAKEkey3c1e5b2d48aa7f3a9"
BAD_KEY = "lmbdWRONGkey0c9d8e7f6a5b4c3"
INACTIVE_KEY = "lmbdINACTIVEkey1a2b3c4d5e6f"
SECRETS = (KEY, BAD_KEY, INACTIVE_KEY)
SCALE = "0.01"
NAME = "fleetfs-main-gpu-0-a1b2c3d4"
A10_WEST = {"backend": "lambda", "type": "lambda", "region": "us-west-1",
            "instance": "gpu_1x_a10", "price": 0.75, "spot": False,
            "gpus": {"vendor": "nvidia", "name": "A10", "memory_mib": 24576, "count": 1},
            "cpus": 30, "cpu_arch": "x86", "memory_mib": 204800, "disk_mib": 1433600}
HEADER = ("instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,"
          "disk_size,gpu_vendor,flags,cpu_arch,provider_data\n")


pool = cloudapi.host_pool(3, "ubuntu")


@pytest.fixture
def hosts(pool):
    need_root()
    return pool.start()


@pytest.fixture
def fake(pool):
    f = LambdaFake(keys=[KEY], pool=pool, boot_seconds=0.3, terminate_seconds=0.3,
                   terminated_linger=0.5)
    f.inactive_keys.add(INACTIVE_KEY)
    yield from cloudapi.serving(f, pool)


@pytest.fixture
def bk(fake, tmp_path, keypair):
    return cloudapi.api_key_bk("lambda", fake, "FLEETFS_ENDPOINT_LAMBDA", tmp_path, keypair,
                               SECRETS, KEY, SCALE)


def key_name(pub):
    return hashlib.sha1(pub.encode()).hexdigest()[-16:]


def ssh(ip, key, timeout=30):
    return cloudapi.ssh(ip, key, "ubuntu", timeout)


def create_running(bk, fake, name=NAME, offer=A10_WEST):
    r = bk("create", offer, name)
    assert r["rc"] == 0, r
    return wait_state(bk, r["vm"]["id"], ("running",))["vm"]


# ------------------------------------------------------------------------------ check

def test_check_valid_key(fake, bk):
    r = bk("check")
    assert r["rc"] == 0 and r["err"] == "", r
    reqs = fake.find()
    assert [(x.method, x.path, x.status, x.auth) for x in reqs] == \
        [("GET", "/api/v1/instance-types", 200, True)]
    assert not any(h.lower() == "authorization" for h in reqs[0].headers)


def test_check_bad_key_is_eacces_with_lambdas_reason(fake, bk):
    r = bk("check", key=BAD_KEY)
    assert (r["rc"], r["errno"]) == (-13, "EACCES"), r
    assert r["err"] == ("lambda: global/invalid-api-key: API key was invalid, expired, or "
                        "deleted. (Check your API key or create a new one, then try again.)")
    assert [(x.status, x.auth) for x in fake.find()] == [(401, False)]


def test_check_inactive_account_is_eacces(fake, bk):
    r = bk("check", key=INACTIVE_KEY)
    assert r["errno"] == "EACCES" and "global/account-inactive" in r["err"], r


def test_check_without_the_ca_bundle_fails_tls(fake, bk):
    r = bk("check", ca=False)
    assert r["errno"] == "EPROTO", r
    assert "certificate" in r["err"], r
    assert fake.count() == 0 and fake.tls_failures >= 1


def test_check_basic_auth_is_accepted_by_the_fake(fake):
    # the spec allows Basic too: the fake must not be stricter than Lambda
    import base64
    ctx = ssl.create_default_context(cafile=fake.ca_path)
    for auth in ("Basic " + base64.b64encode(f"{KEY}:".encode()).decode(), f"Basic {KEY}"):
        req = urllib.request.Request(fake.url + "/instance-types",
                                     headers={"Authorization": auth})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert resp.status == 200


# ------------------------------------------------------------------------------ create

def test_create_get_ssh_terminate(fake, hosts, bk, keypair, otherkey):
    priv, pub = keypair
    r = bk("create", A10_WEST, NAME)
    assert r["rc"] == 0, r
    vm = r["vm"]
    assert (vm["name"], vm["username"], vm["ssh_port"], vm["region"], vm["instance"],
            vm["state"]) == (NAME, "ubuntu", 22, "us-west-1", "gpu_1x_a10", "pending")
    # dstack's key name; the key registered once, then the launch exactly as dstack sends it
    kn = key_name(pub)
    assert [(k["name"], k["public_key"]) for k in fake.ssh_keys()] == [(kn, pub)]
    assert [(x.method, x.route) for x in fake.find()] == [
        ("GET", "/ssh-keys"), ("POST", "/ssh-keys"), ("POST", "/instance-operations/launch")]
    assert fake.find("POST", "^/ssh-keys$")[0].body == {"name": kn, "public_key": pub}
    assert fake.find("POST", "launch")[0].body == {
        "region_name": "us-west-1", "instance_type_name": "gpu_1x_a10",
        "ssh_key_names": [kn], "file_system_names": [], "quantity": 1, "name": NAME}

    g = bk("get", vm["id"])
    assert g["rc"] == 0 and g["vm"]["id"] == vm["id"], g
    if g["vm"]["status"] == "booting":
        assert g["vm"]["state"] == "pending" and g["vm"]["ip"] == ""
    g = wait_state(bk, vm["id"], ("running",))["vm"]
    (snap,) = fake.vms()
    assert g["status"] == "active" and g["ip"] == snap["host_addr"]
    assert g["ip"] in [h.addr for h in hosts.hosts]
    assert (g["name"], g["region"], g["instance"]) == (NAME, "us-west-1", "gpu_1x_a10")
    assert g["internal_ip"] == g["ip"]
    assert fake.find("GET", "^/instances/")[-1].route == f"/instances/{vm['id']}"

    # the project key gets in, another key does not
    s = ssh(g["ip"], priv)
    assert s.returncode == 0, s.stderr
    s = ssh(g["ip"], otherkey[0])
    assert s.returncode == 255 and "Permission denied" in s.stderr, s.stderr

    t = bk("terminate", vm["id"])
    assert t["rc"] == 0, t
    assert fake.find("POST", "terminate")[-1].body == {"instance_ids": [vm["id"]]}
    g = bk("get", vm["id"])
    assert g["rc"] == 0 and g["vm"]["state"] in ("terminating", "terminated"), g
    gone = wait_state(bk, vm["id"], ("ENOENT",))
    assert gone["rc"] == -2 and "global/object-does-not-exist" in gone["err"], gone
    # the host is back in the pool, its keys cleared: the project key no longer gets in
    assert fake.wait_for(lambda: hosts.free == hosts.n, 10)
    assert all(hosts.authorized_keys(h) == [] for h in hosts.hosts)
    assert ssh(snap["host_addr"], priv).returncode == 255
    # terminating again is fine (idempotent)
    assert bk("terminate", vm["id"])["rc"] == 0


def test_ssh_key_registered_once_across_creates(fake, hosts, bk, keypair):
    a = bk("create", A10_WEST, NAME)
    b = bk("create", dict(A10_WEST, region="us-east-1"), "fleetfs-main-gpu-1-e5f6a7b8")
    assert a["rc"] == 0 and b["rc"] == 0, (a, b)
    assert fake.count("POST", "^/ssh-keys$") == 1
    assert fake.count("GET", "^/ssh-keys$") == 2
    names = [x.body["ssh_key_names"] for x in fake.find("POST", "launch")]
    assert names == [[key_name(keypair[1])]] * 2
    vms = fake.vms()
    assert len(vms) == 2 and vms[0]["host"] != vms[1]["host"]
    assert all(v["pubkeys"] == [keypair[1]] for v in vms)
    for r in (a, b):
        assert bk("terminate", r["vm"]["id"])["rc"] == 0


def test_a_key_dstack_registered_is_reused(fake, hosts, bk, keypair):
    fake.add_ssh_key(key_name(keypair[1]), keypair[1])
    r = bk("create", A10_WEST, NAME)
    assert r["rc"] == 0, r
    assert fake.count("POST", "^/ssh-keys$") == 0
    assert bk("terminate", r["vm"]["id"])["rc"] == 0


def test_insufficient_capacity_is_enospc(fake, bk):
    fake.set_capacity("gpu_1x_a10", "us-west-1", 0)
    r = bk("create", A10_WEST, NAME)
    assert (r["rc"], r["errno"]) == (-28, "ENOSPC"), r
    assert r["err"] == ("lambda: instance-operations/launch/insufficient-capacity: "
                        "Not enough capacity to fulfill launch request.")
    assert fake.count("POST", "launch", status=400) == 1 and fake.vms() == []
    # a type Lambda does not offer in that region: the same answer
    r = bk("create", dict(A10_WEST, region="europe-central-1"), NAME)
    assert r["errno"] == "ENOSPC", r


@pytest.mark.parametrize("status,code,errno_", [
    (400, "instance-operations/launch/insufficient-capacity", "ENOSPC"),
    (400, "global/quota-exceeded", "ENOSPC"),
    (400, "global/invalid-parameters", "EINVAL"),
    (404, "global/object-does-not-exist", "EINVAL"),
    (401, "global/invalid-api-key", "EACCES"),
    (403, "global/account-inactive", "EACCES"),
    (500, "global/unknown", "EIO"),
])
def test_launch_errors_map_to_errnos(fake, bk, status, code, errno_):
    body = {"error": {"code": code, "message": f"said {code}", "suggestion": "do better"}}
    fake.fail(r"^/instance-operations/launch$", status, body, method="POST")
    r = bk("create", A10_WEST, NAME)
    assert r["errno"] == errno_, r
    assert r["err"] == f"lambda: {code}: said {code} (do better)", r
    # a launch is not repeated after an answer (it is not idempotent)
    assert fake.count("POST", "launch") == 1


def test_launch_error_without_lambdas_envelope(fake, bk):
    fake.fail(r"^/instance-operations/launch$", 502, "<html>bad gateway</html>", times=None,
              headers={"Content-Type": "text/html"})
    r = bk("create", A10_WEST, NAME)
    assert r["errno"] == "EIO" and r["err"] == \
        "lambda: POST /instance-operations/launch: HTTP 502", r


def test_invalid_offer_region_is_einval(fake, bk):
    r = bk("create", dict(A10_WEST, region="mars-north-1"), NAME)
    assert r["errno"] == "EINVAL" and "global/invalid-parameters" in r["err"], r


def test_429_with_retry_after_is_retried(fake, hosts, bk):
    fake.fail(r"^/instance-operations/launch$", 429, times=2, headers={"Retry-After": "1"},
              method="POST")
    t0 = time.monotonic()
    r = bk("create", A10_WEST, NAME)
    assert r["rc"] == 0, r
    assert time.monotonic() - t0 < 5
    assert [x.status for x in fake.find("POST", "launch")] == [429, 429, 200]
    assert len(fake.vms()) == 1          # one VM, not three
    assert bk("terminate", r["vm"]["id"])["rc"] == 0


def test_rate_limit_answers_429_and_the_client_waits(fake, bk):
    fake.rate_limit(1, retry_after=1)
    assert bk("check")["rc"] == 0
    t0 = time.monotonic()
    r = bk("check", env={"FLEETFS_TIME_SCALE": "1"})
    assert r["rc"] == 0, r
    assert time.monotonic() - t0 >= 0.9
    limited = fake.find(status=429)
    assert len(limited) == 1
    assert [x.status for x in fake.find()] == [200, 429, 200]


def test_a_500_on_get_is_retried(fake, hosts, bk):
    vm = fake.create_behind_the_back(NAME, "gpu_1x_a10", "us-west-1")
    fake.fail(r"^/instances/[^/]+$", 500, times=1, method="GET")
    r = bk("get", vm.id)
    assert r["rc"] == 0 and r["vm"]["state"] == "running", r
    assert [x.status for x in fake.find("GET", "^/instances/")] == [500, 200]


def test_get_and_terminate_unknown(fake, bk):
    r = bk("get", "0123456789abcdef0123456789abcdef")
    assert (r["rc"], r["errno"]) == (-2, "ENOENT"), r
    r = bk("terminate", "0123456789abcdef0123456789abcdef")
    assert r["rc"] == 0 and r["err"] == "", r
    assert fake.count("POST", "terminate", status=404) == 1
    r = bk("get", "../ssh-keys")
    assert r["errno"] == "EINVAL" and fake.count("GET", "ssh-keys") == 0, r


def test_status_mapping(fake, hosts, bk):
    vm = fake.create_behind_the_back(NAME, "gpu_1x_a10", "us-west-1")
    fake.set_phase(vm.id, "running", status="unhealthy")
    r = bk("get", vm.id)["vm"]
    assert (r["state"], r["status"]) == ("running", "unhealthy"), r
    fake.set_phase(vm.id, "booting")
    r = bk("get", vm.id)["vm"]
    assert (r["state"], r["status"], r["ip"]) == ("pending", "booting", ""), r
    fake.set_phase(vm.id, "terminated", status="preempted")
    r = bk("get", vm.id)["vm"]
    assert (r["state"], r["status"]) == ("terminated", "preempted"), r


# ------------------------------------------------------------------------------ list_own

def test_list_own_finds_fleetfs_vms_only(fake, hosts, bk):
    ours = bk("create", A10_WEST, NAME)
    assert ours["rc"] == 0, ours
    orphan = fake.create_behind_the_back("fleetfs-main-gpu-7-zz00yy11", "gpu_1x_a100_sxm4",
                                         "us-west-2")
    fake.create_behind_the_back("someone-elses-vm", "gpu_1x_a10", "us-east-1")
    r = bk("list")
    assert r["rc"] == 0, r
    got = {v["id"]: v for v in r["vms"]}
    assert set(got) == {ours["vm"]["id"], orphan.id}
    o = got[orphan.id]
    assert (o["name"], o["state"], o["region"], o["instance"], o["ip"]) == \
        ("fleetfs-main-gpu-7-zz00yy11", "running", "us-west-2", "gpu_1x_a100_sxm4",
         orphan.host.addr)
    assert fake.count("GET", "^/instances$") == 1


# ------------------------------------------------------------------------------ offers

LAMBDA_CSV = HEADER + (
    "gpu_1x_a10,us-west-1,0.75,30,200,1,A10,24,False,1400,nvidia,,x86,\n"
    "gpu_1x_a10,us-east-1,0.75,30,200,1,A10,24,False,1400,nvidia,,x86,\n"
    "gpu_8x_h100_sxm5,us-east-1,23.92,208,1800,8,H100,80,False,24780,nvidia,,x86,\n"
    "gpu_1x_a100_sxm4,us-south-1,1.29,30,200,1,A100,40,False,512,nvidia,,x86,\n"
    "gpu_2x_gone,us-east-1,2.00,60,400,2,A100,40,False,512,nvidia,,x86,\n")


@pytest.fixture
def catalog(tmp_path):
    d = tmp_path / "catalog"
    d.mkdir()
    (d / "lambdalabs.csv").write_text(LAMBDA_CSV)
    return str(d)


def test_offers_from_the_catalog_with_live_availability(fake, bk, catalog):
    fake.set_capacity("gpu_1x_a10", "us-east-1", 0)
    r = bk("offers", catalog=catalog)
    assert r["rc"] == 0, r
    got = {(o["instance"], o["region"]): o for o in r["offers"]}
    assert {k: o["availability"] for k, o in got.items()} == {
        ("gpu_1x_a10", "us-west-1"): "available",
        ("gpu_1x_a10", "us-east-1"): "not_available",    # no capacity there now
        ("gpu_8x_h100_sxm5", "us-east-1"): "available",
        ("gpu_1x_a100_sxm4", "us-south-1"): "not_available",  # not offered in that region
        ("gpu_2x_gone", "us-east-1"): "not_available",   # a type the API does not know
    }
    o = got[("gpu_1x_a10", "us-west-1")]
    assert (o["backend"], o["type"], o["source"], o["price"]) == \
        ("lambda", "lambda", "catalog", 0.75)
    assert r["source"].endswith("lambdalabs.csv")
    assert [(x.method, x.route) for x in fake.find()] == [("GET", "/instance-types")]


def test_offers_follow_the_configs_regions(fake, bk, catalog):
    r = bk("offers", catalog=catalog, extra_config="regions: [us-west-1]\n")
    assert r["rc"] == 0, r
    assert [(o["instance"], o["region"], o["availability"]) for o in r["offers"]] == \
        [("gpu_1x_a10", "us-west-1", "available")]


def test_offers_without_availability_when_lambda_fails(fake, bk, catalog):
    """Lambda not answering: the catalog's offers still stand, availability unknown; a key
    Lambda refuses fails the offers (the credential check says why)."""
    fake.fail(r"^/instance-types$", 500, times=None)
    r = bk("offers", catalog=catalog)
    assert r["errno"] == "", r
    assert r["offers"] and {o["availability"] for o in r["offers"]} == {"unknown"}, r
    assert fake.count("GET", "instance-types", status=500) == 4     # the client's retries
    fake.clear_faults()
    r = bk("offers", key=BAD_KEY, catalog=catalog)
    assert r["errno"] == "EACCES", r
    assert "offers" not in r


def test_offers_without_a_catalog(fake, bk):
    r = bk("offers", catalog="none")
    assert r["errno"] == "EOPNOTSUPP" and "no catalog" in r["err"], r
    assert "offers" not in r


def test_a_mount_shows_live_availability(fake, fleet_factory, monkeypatch, catalog):
    """The daemon's offers refresh: availability from the fake; after the TTL a change of
    capacity shows although the catalog is the same file; nothing secret in status/events."""
    import yaml
    from fleetlib import read_file, wait_until, write_file
    monkeypatch.setenv("FLEETFS_ENDPOINT_LAMBDA", fake.url)
    monkeypatch.setenv("FLEETFS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("FLEETFS_TIME_SCALE", "0.005")     # the catalog TTL: 4.5 s
    m = fleet_factory(opts=[f"catalog={catalog}"])
    os.mkdir(m.p("projects", "main", "backends", "lambda"))
    write_file(m.p("projects", "main", "backends", "lambda", "config.yml"),
               f"type: lambda\ncreds:\n  type: api_key\n  api_key: {KEY}\n".encode())
    path = m.p("projects", "main", "offers", "lambda:us-west-1:gpu_1x_a10")

    def availability():
        return yaml.safe_load(read_file(path))["availability"]
    assert wait_until(lambda: os.path.exists(path), 10)
    assert availability() == "available"
    fake.set_capacity("gpu_1x_a10", "us-west-1", 0)
    assert wait_until(lambda: availability() == "not_available", 30, 0.3)
    assert fake.count("GET", "^/instance-types$", status=200) >= 2
    for f in (("events",), ("backends", "lambda", "status")):
        assert KEY not in read_file(m.p("projects", "main", *f)).decode()


# ------------------------------------------------------------------------------ the fake

def _post(fake, path, body, key=KEY):
    ctx = ssl.create_default_context(cafile=fake.ca_path)
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    req = urllib.request.Request(fake.url + path, data=data, method="POST",
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.mark.parametrize("change,field", [
    ({"extra": 1}, "extra"),
    ({"ssh_key_names": []}, "ssh_key_names"),
    ({"ssh_key_names": ["k", "k"]}, "ssh_key_names"),
    ({"ssh_key_names": ["nosuchkey"]}, "ssh_key_names"),
    ({"quantity": 2}, "quantity"),
    ({"quantity": True}, "quantity"),
    ({"name": "x" * 65}, "name"),
    ({"file_system_names": ["fs"]}, "file_system_names"),
    ({"region_name": 5}, "region_name"),
    ({"instance_type_name": "gpu_64x_unobtainium"}, "instance_type_name"),
])
def test_fake_launch_checks_the_body_like_the_api(fake, change, field):
    fake.add_ssh_key("k", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9"
                          "okWi0dh2l9GKJl k")
    body = {"region_name": "us-west-1", "instance_type_name": "gpu_1x_a10",
            "ssh_key_names": ["k"], "file_system_names": [], "quantity": 1, "name": "n"}
    body.update(change)
    st, ans = _post(fake, "/instance-operations/launch", body)
    assert st == 400 and ans["error"]["code"] == "global/invalid-parameters", ans
    assert field in ans["field_errors"], ans
    assert fake.vms() == []


def test_fake_ssh_keys_api(fake):
    st, ans = _post(fake, "/ssh-keys", {"name": "bad", "public_key": "ssh-rsa notbase64!"})
    assert st == 400 and ans["error"]["code"] == "global/invalid-parameters"
    if shutil.which("ssh-keygen"):
        st, ans = _post(fake, "/ssh-keys", {"name": "generated"})
        assert st == 200 and ans["data"]["private_key"].startswith("-----BEGIN")
        st, ans = _post(fake, "/ssh-keys", {"name": "generated",
                                            "public_key": ans["data"]["public_key"]})
        assert st == 400, ans
    st, ans = _post(fake, "/ssh-keys", {"name": "x"}, key=BAD_KEY)
    assert st == 401 and ans["error"]["code"] == "global/invalid-api-key"
