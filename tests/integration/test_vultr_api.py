"""The Vultr provider (backends/vultr.c) against its fake (tests/fakes/vultr_fake.py), one call
at a time through build/bkcall, over HTTPS with a test CA (FLEETFS_CA_BUNDLE). The fake's
VMs are real sshd hosts in network namespaces (tests/hosts), so a created instance or bare
metal is reached with the real ssh client as root@<ip>, with exactly the keys of its
cloud-init user data. The tests that create VMs need root; the others do not. Every request
is recorded by the fake: paths, queries and bodies are asserted exactly."""
import base64
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
from vultr_fake import VultrFake  # noqa: E402
import cloudapi  # noqa: E402
from cloudapi import BKCALL, _bkcall, keypair, need_root, otherkey  # noqa: E402,F401

KEY = "VULTRFAKEKEY3C1E5B2D48AA7F3A9C0D1E2F"
BAD_KEY = "VULTRWRONGKEY0C9D8E7F6A5B4C3D2E1F0A"
INACTIVE_KEY = "VULTRINACTIVEKEY1A2B3C4D5E6F7A8B9C"
SECRETS = (KEY, BAD_KEY, INACTIVE_KEY)
SCALE = "0.01"
NAME = "fleetfs-main-gpu-0-a1b2c3d4"
VC2 = {"backend": "vultr", "type": "vultr", "region": "ewr", "instance": "vc2-1c-1gb",
       "price": 0.007, "spot": False, "gpus": {"vendor": "", "name": "", "memory_mib": 0,
                                               "count": 0},
       "cpus": 1, "cpu_arch": "x86", "memory_mib": 1024, "disk_mib": 25600}
METAL = dict(VC2, instance="vbm-8c-132gb", price=0.479, cpus=16, memory_mib=131072,
             disk_mib=1945600)
A100 = dict(VC2, instance="vcg-a100-12c-120g-80vram", price=2.397, cpus=12,
            gpus={"vendor": "nvidia", "name": "A100", "memory_mib": 81920, "count": 1})
VM_DATA = '{"plan_type":"vm_instance"}'
METAL_DATA = '{"plan_type":"bare-metal"}'


pool = cloudapi.host_pool(4, "root")


@pytest.fixture
def hosts(pool):
    need_root()
    return pool.start()


@pytest.fixture
def fake(pool):
    f = VultrFake(keys=[KEY], pool=pool, boot_seconds=0.3, terminate_seconds=0.3)
    f.inactive_keys.add(INACTIVE_KEY)
    yield from cloudapi.serving(f, pool)


@pytest.fixture
def bk(fake, tmp_path, keypair):
    return cloudapi.api_key_bk("vultr", fake, "FLEETFS_ENDPOINT_VULTR", tmp_path, keypair,
                               SECRETS, KEY, SCALE)


def cloud_init(pub):
    """The user data fleetfs gives a VM (backends/backend.c backend_cloud_init)."""
    return f'#cloud-config\nssh_authorized_keys:\n  - "{pub}"\n'


def ssh(ip, key, timeout=30):
    return cloudapi.ssh(ip, key, "root", timeout)


def wait_state(bk, vm_id, states, data=VM_DATA, timeout=15.0):
    return cloudapi.wait_state(bk, vm_id, states, data, timeout=timeout)


def routes(fake, **kw):
    return [(x.method, x.route) for x in fake.find(**kw)]


# ------------------------------------------------------------------------------ check

def test_check_valid_key(fake, bk):
    r = bk("check")
    assert r["rc"] == 0 and r["err"] == "", r
    reqs = fake.find()
    assert [(x.method, x.path, x.status, x.auth) for x in reqs] == \
        [("GET", "/v2/ssh-keys", 200, True)]
    assert not any(h.lower() == "authorization" for h in reqs[0].headers)


def test_check_bad_key_is_eacces_with_vultrs_reason(fake, bk):
    r = bk("check", key=BAD_KEY)
    assert (r["rc"], r["errno"], r["err"]) == (-13, "EACCES", "vultr: Invalid API token."), r
    assert [(x.status, x.auth) for x in fake.find()] == [(401, False)]


def test_check_forbidden_is_eacces(fake, bk):
    r = bk("check", key=INACTIVE_KEY)
    assert r["errno"] == "EACCES" and r["err"] == \
        "vultr: API access is not enabled for this account.", r
    assert fake.find()[0].status == 403


def test_check_without_the_ca_bundle_fails_tls(fake, bk):
    r = bk("check", ca=False)
    assert r["errno"] == "EPROTO" and "certificate" in r["err"], r
    assert fake.count() == 0 and fake.tls_failures >= 1


def test_check_key_echoed_by_the_provider_is_masked(fake, bk):
    fake.fail(r"^/ssh-keys$", 401, {"error": f"Invalid API token: {KEY}", "status": 401})
    r = bk("check")
    assert r["errno"] == "EACCES" and r["err"] == "vultr: Invalid API token: " + "*" * len(KEY)


# ------------------------------------------------------------------------------ offers

def offers_by_key(r):
    return {(o["instance"], o["region"]): o for o in r["offers"]}


def test_offers_from_the_plans(fake, bk):
    r = bk("offers")
    assert r["rc"] == 0, r
    got = offers_by_key(r)
    assert set(got) == {
        ("vc2-1c-1gb", "ewr"), ("vc2-1c-1gb", "ord"), ("vc2-1c-1gb", "fra"),
        ("vc2-2c-4gb", "ewr"), ("vc2-2c-4gb", "ams"),
        ("vhf-2c-4gb", "ewr"), ("vhf-2c-4gb", "lax"),
        ("vhp-2c-4gb-amd", "fra"), ("voc-g-2c-8gb-50s-amd", "nrt"),
        ("vcg-a100-12c-120g-80vram", "ewr"), ("vcg-a100-12c-120g-80vram", "fra"),
        ("vcg-a16-2c-8g-2vram", "ewr"), ("vcg-l40s-16c-180g-48vram", "ord"),
        ("vcg-a40-24c-120g-96vram", "sgp"),
        ("vbm-8c-132gb", "ewr"), ("vbm-8c-132gb", "ams"), ("vbm-24c-256gb-amd", "fra"),
        ("vbm-112c-2048gb-8-h100-gpu", "ewr"), ("vbm-256c-2048gb-8-mi300x-gpu", "ord"),
    }
    # left out: the free plan (price 0), vdc (not a family dstack runs), vbm-4c-32gb (no
    # VPC), the GH200 bare metal (not in dstack's families), a bare-metal GPU plan whose GPUs
    # are not known, a cloud GPU not in dstack's families (B200)

    def flat(o):
        g = o["gpus"]
        return (o["cpus"], o["memory_mib"], o["disk_mib"], o["price"], g["vendor"], g["name"],
                g["memory_mib"], g["count"], o["cpu_arch"])
    assert flat(got[("vc2-1c-1gb", "ewr")]) == (1, 1024, 25 * 1024, 0.007, "", "", 0, 0, "x86")
    assert flat(got[("vcg-a100-12c-120g-80vram", "fra")]) == \
        (12, 122880, 1400 * 1024, 2.397, "nvidia", "A100", 80 * 1024, 1, "x86")
    # a fraction of an A16 (2 GB of 16) is one GPU with the fraction's memory
    assert flat(got[("vcg-a16-2c-8g-2vram", "ewr")])[4:8] == ("nvidia", "A16", 2048, 1)
    # 96 GB of A40s (48 GB each) are two
    assert flat(got[("vcg-a40-24c-120g-96vram", "sgp")])[4:8] == ("nvidia", "A40", 49152, 2)
    assert flat(got[("vcg-l40s-16c-180g-48vram", "ord")])[4:8] == ("nvidia", "L40S", 49152, 1)
    # bare metal: cpu_threads, GPUs from the table
    assert flat(got[("vbm-8c-132gb", "ams")]) == \
        (16, 131072, 1900 * 1024, 0.479, "", "", 0, 0, "x86")
    assert flat(got[("vbm-112c-2048gb-8-h100-gpu", "ewr")]) == \
        (224, 2097152, 30720 * 1024, 23.92, "nvidia", "H100", 80 * 1024, 8, "x86")
    assert flat(got[("vbm-256c-2048gb-8-mi300x-gpu", "ord")])[4:8] == \
        ("amd", "MI300X", 192 * 1024, 8)
    for o in r["offers"]:
        assert (o["backend"], o["type"], o["spot"], o["availability"], o["source"]) == \
            ("vultr", "vultr", False, "available", "api"), o
        assert o["fetched_at"].endswith("Z")
    assert r["source"] == fake.url and r["version"] == ""
    # the plans are public: asked for without the key, as gpuhunt does
    reqs = fake.find()
    assert [(x.method, x.route, x.query, x.auth, x.status) for x in reqs] == [
        ("GET", "/plans", {"type": ["all"], "per_page": ["500"]}, None, 200),
        ("GET", "/plans-metal", {"per_page": ["500"]}, None, 200)]


def test_offers_follow_the_cursor(fake, bk):
    whole = offers_by_key(bk("offers"))
    fake.clear_requests()
    fake.page_max = 3
    r = bk("offers")
    assert r["rc"] == 0, r

    def strip(offers):
        return {k: {f: v for f, v in o.items() if f != "fetched_at"} for k, o in offers.items()}
    assert strip(offers_by_key(r)) == strip(whole)
    plans = fake.find("GET", "^/plans$")
    metal = fake.find("GET", "^/plans-metal$")
    assert len(plans) == 4 and len(metal) == 3     # 12 plans by 3, 7 metal plans by 3
    assert "cursor" not in plans[0].query
    assert all(x.query["per_page"] == ["500"] and x.query["cursor"][0] for x in plans[1:])
    assert all(x.status == 200 for x in plans + metal)


def test_offers_follow_the_configs_regions(fake, bk):
    r = bk("offers", extra_config="regions: [fra, AMS]\n")
    assert r["rc"] == 0, r
    assert sorted(offers_by_key(r)) == [
        ("vbm-24c-256gb-amd", "fra"), ("vbm-8c-132gb", "ams"), ("vc2-1c-1gb", "fra"),
        ("vc2-2c-4gb", "ams"), ("vcg-a100-12c-120g-80vram", "fra"), ("vhp-2c-4gb-amd", "fra")]


def test_offers_read_the_spec_forms(fake, bk):
    # the spec's schema: bare-metal plans listed as "plans" with disk a string; a plan without
    # hourly_cost is priced monthly_cost / 730
    plan = {"id": "vbm-8c-132gb", "cpu_count": 8, "cpu_threads": 16, "ram": 131072,
            "disk": "1900", "monthly_cost": 365, "locations": ["ewr"]}
    fake.fail(r"^/plans-metal$", 200, {"plans": [plan], "meta": {"total": 1, "links": {
        "next": "", "prev": ""}}})
    r = bk("offers", extra_config="regions: [ewr]\n")
    assert r["rc"] == 0, r
    o = offers_by_key(r)[("vbm-8c-132gb", "ewr")]
    assert (o["disk_mib"], o["price"], o["cpus"]) == (1900 * 1024, 0.5, 16), o


def test_offers_fail_when_the_plans_fail(fake, bk):
    fake.fail(r"^/plans$", 500, times=None)
    r = bk("offers")
    assert r["errno"] == "EIO" and r["err"] == "vultr: Internal server error.", r
    assert "offers" not in r
    assert fake.count("GET", "^/plans$", status=500) == 4      # the client's retries
    fake.clear_faults()
    fake.fail(r"^/plans-metal$", 200, {"nothing": []})
    r = bk("offers")
    assert r["errno"] == "EPROTO" and "plans_metal is not a list" in r["err"], r


def test_offers_do_not_need_the_key(fake, bk):
    r = bk("offers", key=BAD_KEY)
    assert r["rc"] == 0 and r["offers"], r


# ------------------------------------------------------------------------------ create

def test_create_vm_get_ssh_terminate(fake, hosts, bk, keypair, otherkey):
    priv, pub = keypair
    r = bk("create", VC2, NAME)
    assert r["rc"] == 0, r
    vm = r["vm"]
    assert (vm["name"], vm["username"], vm["ssh_port"], vm["region"], vm["instance"],
            vm["state"], vm["status"], vm["ip"], vm["backend_data"]) == \
        (NAME, "root", 22, "ewr", "vc2-1c-1gb", "pending", "pending", "", VM_DATA)
    # a VPC for the region, then the instance exactly as dstack sends it, plus the tags
    assert routes(fake) == [("GET", "/vpcs"), ("POST", "/vpcs"), ("POST", "/instances")]
    assert fake.find("GET", "^/vpcs$")[0].query == {"per_page": ["500"]}
    assert fake.find("POST", "^/vpcs$")[0].body == {"region": "ewr",
                                                    "description": "fleetfs-vpc-ewr"}
    (vpc,) = fake.vpcs()
    body = fake.find("POST", "^/instances$")[0].body
    assert base64.b64decode(body.pop("user_data"), validate=True).decode() == cloud_init(pub)
    assert body == {"region": "ewr", "plan": "vc2-1c-1gb", "label": NAME, "image_id": "docker",
                    "attach_vpc": [vpc["id"]],
                    "tags": ["fleetfs", "fleetfs-project-main", "fleetfs-fleet-bkcall"]}

    g = bk("get", vm["id"], VM_DATA)
    assert g["rc"] == 0 and g["vm"]["id"] == vm["id"], g
    if g["vm"]["status"] == "pending":
        assert g["vm"]["state"] == "pending" and g["vm"]["ip"] == ""    # main_ip 0.0.0.0
    g = wait_state(bk, vm["id"], ("running",))["vm"]
    (snap,) = fake.vms()
    assert g["status"] == "active" and g["ip"] == snap["host_addr"]
    assert g["ip"] in [h.addr for h in hosts.hosts]
    assert (g["name"], g["region"], g["instance"], g["backend_data"]) == \
        (NAME, "ewr", "vc2-1c-1gb", VM_DATA)
    assert g["internal_ip"].startswith(vpc["v4_subnet"].rsplit(".", 1)[0] + ".")
    assert fake.find("GET", "^/instances/")[-1].route == f"/instances/{vm['id']}"

    # the key of the cloud-init user data gets in as root, another key does not
    s = ssh(g["ip"], priv)
    assert s.returncode == 0, s.stderr
    s = ssh(g["ip"], otherkey[0])
    assert s.returncode == 255 and "Permission denied" in s.stderr, s.stderr

    t = bk("terminate", vm["id"], VM_DATA)
    assert t["rc"] == 0 and t["err"] == "", t
    assert (fake.find("DELETE")[-1].route, fake.find("DELETE")[-1].status) == \
        (f"/instances/{vm['id']}", 204)
    gone = bk("get", vm["id"], VM_DATA)
    assert (gone["rc"], gone["errno"], gone["err"]) == (-2, "ENOENT",
                                                         "vultr: Invalid instance-id."), gone
    # the host is back in the pool, its keys cleared: the project key no longer gets in
    assert fake.wait_for(lambda: hosts.free == hosts.n, 10)
    assert all(hosts.authorized_keys(h) == [] for h in hosts.hosts)
    assert ssh(snap["host_addr"], priv).returncode == 255
    # terminating again is fine: not found is gone
    t = bk("terminate", vm["id"], VM_DATA)
    assert t["rc"] == 0 and t["err"] == "", t
    assert fake.find("DELETE")[-1].status == 404
    # the VPC stays
    assert fake.vpcs() == [vpc]


def test_create_bare_metal(fake, hosts, bk, keypair, otherkey):
    priv, pub = keypair
    r = bk("create", METAL, NAME)
    assert r["rc"] == 0, r
    vm = r["vm"]
    assert (vm["backend_data"], vm["instance"], vm["state"], vm["username"]) == \
        (METAL_DATA, "vbm-8c-132gb", "pending", "root"), vm
    body = fake.find("POST", "^/bare-metals$")[0].body
    assert base64.b64decode(body.pop("user_data")).decode() == cloud_init(pub)
    (vpc,) = fake.vpcs()
    assert body == {"region": "ewr", "plan": "vbm-8c-132gb", "label": NAME,
                    "image_id": "docker", "attach_vpc": [vpc["id"]],
                    "tags": ["fleetfs", "fleetfs-project-main", "fleetfs-fleet-bkcall"]}
    assert fake.count("POST", "^/instances$") == 0
    g = wait_state(bk, vm["id"], ("running",), data=METAL_DATA)["vm"]
    assert fake.find("GET", "^/bare-metals/")[-1].route == f"/bare-metals/{vm['id']}"
    assert g["ip"] == fake.vms()[0]["host_addr"] and g["status"] == "active"
    assert ssh(g["ip"], priv).returncode == 0
    assert ssh(g["ip"], otherkey[0]).returncode == 255
    assert bk("terminate", vm["id"], METAL_DATA)["rc"] == 0
    assert fake.find("DELETE")[-1].route == f"/bare-metals/{vm['id']}"
    assert wait_state(bk, vm["id"], ("ENOENT",), data=METAL_DATA)["rc"] == -2


def test_create_gpu_vm_uses_ubuntu_2204(fake, hosts, bk):
    r = bk("create", A100, NAME)
    assert r["rc"] == 0, r
    body = fake.find("POST", "^/instances$")[0].body
    assert body["os_id"] == 1743 and "image_id" not in body, body
    assert bk("terminate", r["vm"]["id"], VM_DATA)["rc"] == 0


def test_vpc_made_once_per_region_and_reused(fake, hosts, bk):
    mine = fake.add_vpc("ams", "fleetfs-vpc-ams")
    fake.add_vpc("ewr", "someone else's")
    a = bk("create", VC2, NAME)
    b = bk("create", VC2, "fleetfs-main-gpu-1-e5f6a7b8")
    c = bk("create", dict(VC2, region="ams", instance="vc2-2c-4gb"),
           "fleetfs-main-gpu-2-c9d0e1f2")
    assert a["rc"] == b["rc"] == c["rc"] == 0, (a, b, c)
    made = fake.find("POST", "^/vpcs$")
    assert [x.body for x in made] == [{"region": "ewr", "description": "fleetfs-vpc-ewr"}]
    ewr = next(v for v in fake.vpcs() if v["description"] == "fleetfs-vpc-ewr")
    vpcs = [x.body["attach_vpc"] for x in fake.find("POST", "^/instances$")]
    assert vpcs == [[ewr["id"]], [ewr["id"]], [mine["id"]]]
    for r in (a, b, c):
        assert bk("terminate", r["vm"]["id"], VM_DATA)["rc"] == 0


def test_vpc_found_on_a_later_page(fake, hosts, bk):
    for i in range(4):
        fake.add_vpc("ewr", f"other-{i}")
    mine = fake.add_vpc("ewr", "fleetfs-vpc-ewr")
    fake.page_max = 2
    r = bk("create", VC2, NAME)
    assert r["rc"] == 0, r
    assert fake.count("POST", "^/vpcs$") == 0
    assert fake.count("GET", "^/vpcs$") == 3
    assert fake.find("POST", "^/instances$")[0].body["attach_vpc"] == [mine["id"]]
    assert bk("terminate", r["vm"]["id"], VM_DATA)["rc"] == 0


def test_no_capacity_is_enospc(fake, bk):
    fake.set_capacity("vc2-1c-1gb", "ewr", 0)
    r = bk("create", VC2, NAME)
    assert (r["rc"], r["errno"]) == (-28, "ENOSPC"), r
    assert r["err"] == \
        "vultr: The requested plan is currently unavailable in the selected location."
    assert fake.count("POST", "^/instances$", status=400) == 1 and fake.vms() == []
    # a plan Vultr does not offer in that region: the same verdict
    r = bk("create", dict(VC2, region="lax"), NAME)
    assert r["errno"] == "ENOSPC" and r["err"] == \
        "vultr: Plan is not available in the selected location.", r


@pytest.mark.parametrize("status,text,errno_", [
    (400, "Invalid plan chosen.", "EINVAL"),
    (400, "Plan vc2-1c-1gb is sold out in ewr.", "ENOSPC"),
    (422, "Not enough capacity.", "ENOSPC"),
    (404, "Not found.", "EINVAL"),
    (401, "Invalid API token.", "EACCES"),
    (403, "Unauthorized IP address: 127.0.0.1", "EACCES"),
    (500, "Internal server error.", "EIO"),
])
def test_create_errors_map_to_errnos(fake, bk, status, text, errno_):
    fake.fail(r"^/instances$", status, {"error": text, "status": status}, method="POST")
    r = bk("create", VC2, NAME)
    assert (r["errno"], r["err"]) == (errno_, f"vultr: {text}"), r
    # a create is not repeated after an answer (it is not idempotent)
    assert fake.count("POST", "^/instances$") == 1


def test_create_error_without_vultrs_envelope(fake, bk):
    fake.fail(r"^/instances$", 502, "<html>bad gateway</html>", times=None,
              headers={"Content-Type": "text/html"}, method="POST")
    r = bk("create", VC2, NAME)
    assert (r["errno"], r["err"]) == ("EIO", "vultr: POST /instances: HTTP 502"), r


def test_invalid_offer_region_is_einval(fake, bk):
    r = bk("create", dict(VC2, region="mars"), NAME)
    assert (r["errno"], r["err"]) == ("EINVAL", "vultr: Invalid region chosen."), r
    assert fake.count("POST", "^/instances$") == 0      # the VPC for it was refused first


def test_429_with_retry_after_is_retried(fake, hosts, bk):
    fake.fail(r"^/instances$", 429, times=2, headers={"Retry-After": "1"}, method="POST")
    t0 = time.monotonic()
    r = bk("create", VC2, NAME)
    assert r["rc"] == 0, r
    assert time.monotonic() - t0 < 5
    assert [x.status for x in fake.find("POST", "^/instances$")] == [429, 429, 202]
    assert len(fake.vms()) == 1          # one VM, not three
    assert bk("terminate", r["vm"]["id"], VM_DATA)["rc"] == 0


def test_rate_limit_per_second_and_the_client_waits(fake, bk):
    fake.rate_limit(1, retry_after=1)
    assert bk("check")["rc"] == 0
    t0 = time.monotonic()
    r = bk("check", env={"FLEETFS_TIME_SCALE": "1"})
    assert r["rc"] == 0, r
    assert time.monotonic() - t0 >= 0.9
    assert [x.status for x in fake.find()] == [200, 429, 200]
    limited = fake.find(status=429)[0]
    assert limited.route == "/ssh-keys"


# ------------------------------------------------------------------------------ get, terminate

def test_status_mapping(fake, hosts, bk):
    vm = fake.create_behind_the_back(NAME, "vc2-1c-1gb", "ewr")
    r = bk("get", vm.id, VM_DATA)["vm"]
    assert (r["state"], r["status"], r["ip"]) == ("running", "active", vm.host.addr), r
    fake.set_power(vm.id, "stopped")
    r = bk("get", vm.id, VM_DATA)["vm"]
    assert (r["state"], r["status"]) == ("stopped", "stopped"), r
    fake.set_power(vm.id, "running")
    fake.set_phase(vm.id, "running", status="suspended")
    r = bk("get", vm.id, VM_DATA)["vm"]
    assert (r["state"], r["status"]) == ("stopped", "suspended"), r
    fake.set_phase(vm.id, "running", status="failed")
    r = bk("get", vm.id, VM_DATA)["vm"]
    assert (r["state"], r["status"]) == ("failed", "failed"), r
    fake.set_phase(vm.id, "booting")
    r = bk("get", vm.id, VM_DATA)["vm"]
    assert (r["state"], r["status"], r["ip"]) == ("pending", "pending", ""), r


def test_a_500_on_get_is_retried(fake, hosts, bk):
    vm = fake.create_behind_the_back(NAME, "vc2-1c-1gb", "ewr")
    fake.fail(r"^/instances/[^/]+$", 500, times=1, method="GET")
    r = bk("get", vm.id, VM_DATA)
    assert r["rc"] == 0 and r["vm"]["state"] == "running", r
    assert [x.status for x in fake.find("GET", "^/instances/")] == [500, 200]


def test_without_backend_data_both_apis_are_tried(fake, hosts, bk):
    vm = fake.create_behind_the_back(NAME, "vbm-8c-132gb", "ewr", kind="metal")
    r = bk("get", vm.id)
    assert r["rc"] == 0 and r["vm"]["backend_data"] == METAL_DATA, r
    assert [(x.route, x.status) for x in fake.find("GET")] == [
        (f"/instances/{vm.id}", 404), (f"/bare-metals/{vm.id}", 200)]
    assert bk("terminate", vm.id)["rc"] == 0
    assert [(x.route, x.status) for x in fake.find("DELETE")] == [
        (f"/instances/{vm.id}", 404), (f"/bare-metals/{vm.id}", 204)]


def test_get_and_terminate_unknown(fake, bk):
    unknown = "cb676a46-66fd-4dfb-b839-443f2e6c0b60"
    r = bk("get", unknown, VM_DATA)
    assert (r["rc"], r["errno"]) == (-2, "ENOENT"), r
    r = bk("get", unknown, METAL_DATA)
    assert (r["errno"], r["err"]) == ("ENOENT", "vultr: Invalid baremetal-id."), r
    r = bk("terminate", unknown, VM_DATA)
    assert r["rc"] == 0 and r["err"] == "", r
    assert fake.count("DELETE", "^/instances/", status=404) == 1
    r = bk("get", "../ssh-keys")
    assert r["errno"] == "EINVAL" and fake.count("GET", "ssh-keys") == 0, r


# ------------------------------------------------------------------------------ list_own

def test_list_own_finds_fleetfs_vms_across_pages(fake, hosts, bk):
    fake.page_max = 1
    ours = bk("create", VC2, NAME)
    assert ours["rc"] == 0, ours
    orphan = fake.create_behind_the_back("fleetfs-main-gpu-7-zz00yy11", "vc2-2c-4gb", "ams")
    metal = fake.create_behind_the_back("fleetfs-main-gpu-8-xx11ww22", "vbm-8c-132gb", "ams",
                                        kind="metal", tags=["fleetfs"])
    fake.create_behind_the_back("someone-elses-vm", "vc2-1c-1gb", "ewr", tags=["web"])
    r = bk("list")
    assert r["rc"] == 0, r
    got = {v["id"]: v for v in r["vms"]}
    assert set(got) == {ours["vm"]["id"], orphan.id, metal.id}
    o = got[orphan.id]
    assert (o["name"], o["state"], o["region"], o["instance"], o["ip"], o["backend_data"]) == \
        ("fleetfs-main-gpu-7-zz00yy11", "running", "ams", "vc2-2c-4gb", orphan.host.addr,
         VM_DATA)
    assert (got[metal.id]["backend_data"], got[metal.id]["instance"]) == \
        (METAL_DATA, "vbm-8c-132gb")
    # every page of both lists, with the key
    assert fake.count("GET", "^/instances$") == 3 and fake.count("GET", "^/bare-metals$") == 1
    assert all(x.auth for x in fake.find("GET"))
    for v in r["vms"]:
        assert bk("terminate", v["id"], v["backend_data"])["rc"] == 0


def test_list_own_by_tag(fake, hosts, bk):
    tagged = fake.create_behind_the_back("renamed-by-hand", "vc2-1c-1gb", "ewr",
                                         tags=["fleetfs", "fleetfs-project-main"])
    r = bk("list")
    assert [v["id"] for v in r["vms"]] == [tagged.id], r


def test_list_own_error(fake, bk):
    fake.fail(r"^/bare-metals$", 403, method="GET")
    r = bk("list", key=KEY)
    assert r["errno"] == "EACCES" and "vms" not in r, r


# ------------------------------------------------------------------------------ the fake

def _call(fake, method, path, body=None, key=KEY):
    ctx = ssl.create_default_context(cafile=fake.ca_path)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(fake.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.mark.parametrize("change,text", [
    ({"region": None}, "Missing required field: region."),
    ({"plan": None}, "Missing required field: plan."),
    ({"region": 5}, "region must be a string."),
    ({"plan": "vbm-8c-132gb"}, "Invalid plan chosen."),
    ({"image_id": None}, "Choose exactly one of"),
    ({"os_id": 1743}, "Choose exactly one of"),
    ({"image_id": "nosuch"}, "Invalid image_id."),
    ({"user_data": "not base64!"}, "user_data must be base64 encoded."),
    ({"attach_vpc": ["0f0f0f0f-0000-0000-0000-000000000000"]}, "Invalid VPC ID"),
    ({"attach_vpc": "x"}, "attach_vpc must be a array of strings."),
    ({"tags": [1]}, "tags must be a array of strings."),
    ({"flavour": "x"}, "Unknown field: flavour."),
])
def test_fake_create_checks_the_body_like_the_api(fake, change, text):
    body = {"region": "ewr", "plan": "vc2-1c-1gb", "label": "x", "image_id": "docker",
            "user_data": base64.b64encode(b"#cloud-config\n").decode()}
    for k, v in change.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    st, ans = _call(fake, "POST", "/instances", body)
    assert st == 400 and ans["status"] == 400 and ans["error"].startswith(text), ans
    assert fake.vms() == []


def test_fake_vpc_of_another_region_is_refused(fake):
    vpc = fake.add_vpc("fra")
    st, ans = _call(fake, "POST", "/instances", {"region": "ewr", "plan": "vc2-1c-1gb",
                                                 "os_id": 1743, "attach_vpc": [vpc["id"]]})
    assert st == 400 and ans["error"] == f"Invalid VPC ID: {vpc['id']}.", ans


def test_fake_auth_and_public_plans(fake):
    st, ans = _call(fake, "GET", "/plans", key=None)
    assert st == 200 and ans["plans"] and ans["meta"]["links"]["next"] == ""
    st, ans = _call(fake, "GET", "/ssh-keys", key=None)
    assert (st, ans) == (401, {"error": "Invalid API token.", "status": 401})
    st, ans = _call(fake, "GET", "/plans", key=BAD_KEY)
    assert st == 401
    st, ans = _call(fake, "GET", "/ssh-keys?per_page=x")
    assert st == 400
    st, ans = _call(fake, "GET", "/vpcs?cursor=garbage")
    assert st == 400 and ans["error"] == "Invalid cursor."


def test_fake_vpc_api(fake):
    st, ans = _call(fake, "POST", "/vpcs", {"region": "ewr", "description": "d"})
    assert st == 201 and ans["vpc"]["region"] == "ewr" and ans["vpc"]["v4_subnet_mask"] == 20
    vid = ans["vpc"]["id"]
    assert _call(fake, "GET", f"/vpcs/{vid}")[1]["vpc"]["description"] == "d"
    assert _call(fake, "POST", "/vpcs", {"description": "no region"})[0] == 400
    assert _call(fake, "POST", "/vpcs", {"region": "mars"})[0] == 400
    req = urllib.request.Request(fake.url + f"/vpcs/{vid}", method="DELETE",
                                 headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=fake.ca_path),
                                timeout=10) as resp:
        assert resp.status == 204
    assert fake.vpcs() == []


def test_fake_ssh_key_ids_are_installed(fake, hosts, keypair):
    kid = fake.add_ssh_key("mine", keypair[1])
    st, ans = _call(fake, "POST", "/instances", {"region": "ewr", "plan": "vc2-1c-1gb",
                                                 "os_id": 1743, "sshkey_id": [kid]})
    assert st == 202 and ans["instance"]["status"] == "pending", ans
    assert ans["instance"]["main_ip"] == "0.0.0.0"
    (vm,) = fake.vms()
    assert vm["pubkeys"] == [keypair[1]]
    st, _ = _call(fake, "POST", "/instances", {"region": "ewr", "plan": "vc2-1c-1gb",
                                               "os_id": 1743, "sshkey_id": ["nope"]})
    assert st == 400


# ------------------------------------------------------------------------------ through a mount

SPEC = """type: fleet
name: web
nodes: 1
backends: [vultr]
resources:
  cpu: 1..
  memory: 1GB..
  disk: 20GB..
max_price: 0.01
"""


def test_a_mount_provisions_on_vultr(fake, hosts, fleet_factory, monkeypatch):
    """The engine end to end: live offers, the cheapest plan created in its region's VPC with
    the project key in the user data, idle after the SSH probe as root, `ssh -F` works, and
    deleting the fleet deletes the instance."""
    from fleetlib import read_file, wait_until, write_file
    monkeypatch.setenv("FLEETFS_ENDPOINT_VULTR", fake.url)
    monkeypatch.setenv("FLEETFS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("FLEETFS_TIME_SCALE", SCALE)
    m = fleet_factory(opts=["catalog=none"])
    os.mkdir(m.p("projects", "main", "backends", "vultr"))
    write_file(m.p("projects", "main", "backends", "vultr", "config.yml"),
               f"type: vultr\ncreds:\n  type: api_key\n  api_key: {KEY}\n"
               "regions: [ewr]\n".encode())
    offer = m.p("projects", "main", "offers", "vultr:ewr:vc2-1c-1gb")
    assert wait_until(lambda: os.path.exists(offer), 15)
    o = yaml.safe_load(read_file(offer))
    assert (o["source"], o["availability"], o["price"]) == ("api", "available", 0.007), o
    write_file(m.p("projects", "main", "fleets", "web.yml"), SPEC.encode())
    st = m.p("projects", "main", "fleets", "web", "instances", "0", "status")

    def status():
        try:
            return yaml.safe_load(read_file(st)) or {}
        except OSError:
            return {}
    assert wait_until(lambda: status().get("status") == "idle", 60), \
        (status(), read_file(m.p("projects", "main", "fleets", "web", "events")).decode())
    (vm,) = fake.vms()
    pub = read_file(m.p("projects", "main", "ssh", "id_rsa.pub")).decode().strip()
    assert vm["instance_type"] == "vc2-1c-1gb" and vm["name"].startswith("fleetfs-main-web-0-")
    assert [k.split()[1] for k in vm["pubkeys"]] == [pub.split()[1]]
    assert vm["extra"]["tags"] == ["fleetfs", "fleetfs-project-main", "fleetfs-fleet-web"]
    r = subprocess.run(["ssh", "-F", m.p("projects", "main", "fleets", "web", "instances", "0",
                                         "ssh"), "web-0", "echo", "hello-from-$(whoami)"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "hello-from-root" in r.stdout, r.stderr
    os.unlink(m.p("projects", "main", "fleets", "web.yml"))
    assert wait_until(lambda: fake.count("DELETE", "^/instances/", status=204) == 1, 30)
    assert wait_until(lambda: not os.path.exists(m.p("projects", "main", "fleets", "web")), 30)
    for f in (("events",), ("backends", "vultr", "status")):
        assert KEY not in read_file(m.p("projects", "main", *f)).decode()
