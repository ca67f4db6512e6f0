"""The DigitalOcean and AMD Developer Cloud provider (backends/digitalocean.c) against its fake
(tests/fakes/do_fake.py), one call at a time through build/bkcall, over HTTPS with a test CA
(FLEETFS_CA_BUNDLE). The fake's droplets are real sshd hosts in network namespaces
(tests/hosts), so a created droplet is reached with the real ssh client as root@<ip>. The
tests that create droplets need root; the others do not. Every request is recorded by the
fake: paths, queries and bodies are asserted exactly."""
import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
from do_fake import AMDDevCloudFake, DigitalOceanFake, cloud_config_keys  # noqa: E402
import cloudapi  # noqa: E402
from cloudapi import BKCALL, _bkcall, keypair, otherkey, wait_state  # noqa: E402,F401

KEY = "dop_v1_FAKEfa11ce5eed0123456789abcdef0123456789abcdef0123456789abcd"
BAD_KEY = "dop_v1_WRONG0000000000000000000000000000000000000000000000000000000"
INACTIVE_KEY = "dop_v1_INACTIVE111111111111111111111111111111111111111111111111111"
AMD_KEY = "dop_v1_AMDfake2222222222222222222222222222222222222222222222222222222"
SECRETS = (KEY, BAD_KEY, INACTIVE_KEY, AMD_KEY)
SCALE = "0.01"
NAME = "fleetfs-main-gpu-0-a1b2c3d4"
ENDPOINT_VAR = {"digitalocean": "FLEETFS_ENDPOINT_DIGITALOCEAN",
                "amddevcloud": "FLEETFS_ENDPOINT_AMDDEVCLOUD"}


def offer(instance, region, price, cpus, memory_mib, vendor="", gpu="", gpu_mib=0, count=0,
          backend="digitalocean"):
    return {"backend": backend, "type": backend, "region": region, "instance": instance,
            "price": price, "spot": False,
            "gpus": {"vendor": vendor, "name": gpu, "memory_mib": gpu_mib, "count": count},
            "cpus": cpus, "cpu_arch": "x86", "memory_mib": memory_mib, "disk_mib": 0}


CPU_NYC1 = offer("s-2vcpu-4gb", "nyc1", 0.03571, 2, 4096)
H100_TOR1 = offer("gpu-h100x1-80gb", "tor1", 3.39, 20, 245760, "nvidia", "H100", 81920, 1)
H100X8_NYC2 = offer("gpu-h100x8-640gb", "nyc2", 23.92, 160, 1966080, "nvidia", "H100", 81920, 8)
ADA_TOR1 = offer("gpu-6000adax1-48gb", "tor1", 1.57, 8, 65536, "nvidia", "RTX6000ADA", 49152, 1)
MI300X_ATL1 = offer("gpu-mi300x1-192gb", "atl1", 1.99, 20, 245760, "amd", "MI300X", 196608, 1)


def need_root():
    cloudapi.need_root("droplets")


pool = cloudapi.host_pool(3, "root")


@pytest.fixture
def hosts(pool):
    need_root()
    return pool.start()


def _fake(cls, pool, keys):
    f = cls(keys=keys, pool=pool, boot_seconds=0.3, terminate_seconds=0.3,
            terminated_linger=0.5)
    f.inactive_keys.add(INACTIVE_KEY)
    return f


@pytest.fixture
def fake(pool):
    yield from cloudapi.serving(_fake(DigitalOceanFake, pool, [KEY]), pool)


@pytest.fixture
def amd(pool):
    yield from cloudapi.serving(_fake(AMDDevCloudFake, pool, [AMD_KEY]), pool)


def make_bk(target, tmp_path, keypair, btype):
    return cloudapi.api_key_bk(btype, target, ENDPOINT_VAR[btype], tmp_path, keypair, SECRETS,
                               AMD_KEY if btype == "amddevcloud" else KEY, SCALE)


@pytest.fixture
def bk(fake, tmp_path, keypair):
    return make_bk(fake, tmp_path, keypair, "digitalocean")


@pytest.fixture
def amd_bk(amd, tmp_path, keypair):
    return make_bk(amd, tmp_path, keypair, "amddevcloud")


def fp(pub):
    return ":".join(f"{b:02x}" for b in hashlib.md5(base64.b64decode(pub.split()[1])).digest())


def cloud_init(pub):
    return f'#cloud-config\nssh_authorized_keys:\n  - "{pub}"\n'


def ssh(ip, key, timeout=30):
    return cloudapi.ssh(ip, key, "root", timeout)


def routes(fake, **kw):
    return [(x.method, x.route) for x in fake.find(**kw)]


def api(fake, method, path, body=None, key=KEY):
    """One raw call of the fake: (status, JSON answer or None, headers)."""
    ctx = ssl.create_default_context(cafile=fake.ca_path)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(fake.url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None, dict(resp.headers)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None, dict(e.headers)


# ------------------------------------------------------------------------------ check

def test_check_valid_key(fake, bk):
    r = bk("check")
    assert r["rc"] == 0 and r["err"] == "", r
    reqs = fake.find()
    assert [(x.method, x.path, x.query, x.status, x.auth) for x in reqs] == \
        [("GET", "/v2/account", {}, 200, True)]
    assert not any(h.lower() == "authorization" for h in reqs[0].headers)


def test_check_bad_key_is_eacces_with_digitaloceans_reason(fake, bk):
    r = bk("check", key=BAD_KEY)
    assert (r["rc"], r["errno"]) == (-13, "EACCES"), r
    assert r["err"] == "digitalocean: unauthorized: Unable to authenticate you"
    assert [(x.status, x.auth) for x in fake.find()] == [(401, False)]
    r = bk("check", key=INACTIVE_KEY)
    assert r["errno"] == "EACCES" and r["err"].startswith("digitalocean: forbidden: "), r


def test_check_locked_account_is_eacces(fake, bk):
    fake.account_status, fake.account_status_message = "locked", "Billing issue: card declined"
    r = bk("check")
    assert r["errno"] == "EACCES", r
    assert r["err"] == "digitalocean: the account is locked: Billing issue: card declined"


def test_check_project_name_found_across_pages(fake, bk):
    for n in ("alpha", "beta", "gamma", "ml-team"):
        fake.add_project(n)
    fake.max_per_page = 2
    r = bk("check", extra_config="project_name: ml-team\n")
    assert r["rc"] == 0, r
    assert [(x.route, x.query) for x in fake.find(route="^/projects")] == [
        ("/projects", {"per_page": ["200"]}),
        ("/projects", {"per_page": ["200"], "page": ["2"]}),
        ("/projects", {"per_page": ["200"], "page": ["3"]})]


def test_check_project_name_missing_is_einval(fake, bk):
    r = bk("check", extra_config="project_name: nope\n")
    assert (r["rc"], r["errno"]) == (-22, "EINVAL"), r
    assert r["err"] == 'digitalocean: project_name: no project named "nope"'


def test_check_without_the_ca_bundle_fails_tls(fake, bk):
    r = bk("check", ca=False)
    assert r["errno"] == "EPROTO" and "certificate" in r["err"], r
    assert fake.count() == 0 and fake.tls_failures >= 1


# ------------------------------------------------------------------------------ offers

def by_key(offers):
    """Offers by (instance, region), without the time they were fetched (two fetches may
    straddle a second)."""
    return {(o["instance"], o["region"]): {k: v for k, v in o.items() if k != "fetched_at"}
            for o in offers}


def test_offers_from_the_sizes(fake, bk):
    fake.sizes[0]["available"] = False          # s-2vcpu-4gb: not now
    r = bk("offers")
    assert r["rc"] == 0, r
    got = by_key(r["offers"])
    view = {k: (o["gpus"]["vendor"], o["gpus"]["name"], o["gpus"]["count"],
                o["gpus"]["memory_mib"], o["disk_mib"], o["availability"])
            for k, o in got.items()}
    cpu = ("", "", 0, 0, 80 * 1024, "not_available")
    assert view == {
        ("s-2vcpu-4gb", "nyc1"): cpu, ("s-2vcpu-4gb", "nyc3"): cpu,
        ("s-2vcpu-4gb", "tor1"): cpu, ("s-2vcpu-4gb", "fra1"): cpu,
        # the local disk counts, the scratch disk does not
        ("gpu-h100x1-80gb", "nyc2"): ("nvidia", "H100", 1, 81920, 720 * 1024, "available"),
        ("gpu-h100x1-80gb", "tor1"): ("nvidia", "H100", 1, 81920, 720 * 1024, "available"),
        ("gpu-h100x8-640gb", "nyc2"): ("nvidia", "H100", 8, 81920, 2046 * 1024, "available"),
        # a boot disk is the droplet's disk too
        ("gpu-6000adax1-48gb", "tor1"): ("nvidia", "RTX6000ADA", 1, 49152, 500 * 1024,
                                         "available"),
        ("gpu-l40sx1-48gb", "tor1"): ("nvidia", "L40S", 1, 49152, 500 * 1024,
                                      "not_available"),
        ("gpu-mi300x1-192gb", "atl1"): ("amd", "MI300X", 1, 196608, 720 * 1024, "available"),
        # gpu-gaudi3x8 (intel_gaudi3): not a vendor dstack knows, skipped
    }
    assert r["skipped"] == 1
    o = got[("gpu-h100x1-80gb", "tor1")]
    assert (o["name"], o["backend"], o["type"], o["price"], o["cpus"], o["memory_mib"],
            o["spot"], o["cpu_arch"], o["source"]) == \
        ("digitalocean:tor1:gpu-h100x1-80gb", "digitalocean", "digitalocean", 3.39, 20, 245760,
         False, "x86", "api")
    assert r["source"] == fake.url + "/sizes" and r["version"] == ""
    assert [(x.method, x.route, x.query) for x in fake.find()] == \
        [("GET", "/sizes", {"per_page": ["200"]})]


def test_offers_follow_the_configs_regions(fake, bk):
    r = bk("offers", extra_config="regions: [tor1, atl1]\n")
    assert r["rc"] == 0, r
    assert sorted(by_key(r["offers"])) == [
        ("gpu-6000adax1-48gb", "tor1"), ("gpu-h100x1-80gb", "tor1"), ("gpu-l40sx1-48gb", "tor1"),
        ("gpu-mi300x1-192gb", "atl1"), ("s-2vcpu-4gb", "tor1")]


def test_offers_follow_pagination_on_the_configured_host(fake, bk):
    whole = bk("offers")["offers"]
    fake.clear_requests()
    fake.max_per_page = 2
    # the links name DigitalOcean's host: only their page numbers are used, the token never
    # leaves for a host the config does not name
    fake.links_origin = "https://api.digitalocean.com"
    r = bk("offers")
    assert r["rc"] == 0, r
    assert by_key(r["offers"]) == by_key(whole)
    assert [x.query.get("page", ["1"])[0] for x in fake.find(route="^/sizes$")] == \
        ["1", "2", "3", "4"]
    # the fake logs a status once its answer is written: the client may have read it first
    assert fake.wait_for(lambda: all(x.status is not None for x in fake.find()), 5)
    assert all(x.status == 200 for x in fake.find())


def test_offers_refuse_a_next_link_that_does_not_move_on(fake, bk):
    body = {"sizes": [], "links": {"pages": {"next": fake.url + "/sizes?page=1"}},
            "meta": {"total": 0}}
    fake.fail(r"^/sizes$", 200, body, times=None)
    r = bk("offers")
    assert r["errno"] == "EPROTO" and "links.pages.next" in r["err"], r
    assert fake.count() == 1
    fake.clear_faults()
    body["links"]["pages"]["next"] = fake.url + "/sizes?per_page=200&page=5000"
    fake.fail(r"^/sizes$", 200, body, times=None)
    r = bk("offers")
    assert r["errno"] == "EFBIG" and "more than 100 pages" in r["err"], r
    assert fake.count() == 2


def test_offers_fail_when_the_api_fails(fake, bk):
    fake.fail(r"^/sizes$", 500, times=None)
    r = bk("offers")
    assert r["errno"] == "EIO" and r["err"].startswith("digitalocean: server_error: "), r
    assert fake.count("GET", "sizes", status=500) == 4     # the client's retries
    assert "offers" not in r
    fake.clear_faults()
    r = bk("offers", key=BAD_KEY)
    assert r["errno"] == "EACCES", r


# ------------------------------------------------------------------------------ create

def test_create_get_ssh_terminate(fake, hosts, bk, keypair, otherkey):
    priv, pub = keypair
    r = bk("create", H100_TOR1, NAME)
    assert r["rc"] == 0, r
    vm = r["vm"]
    assert (vm["name"], vm["username"], vm["ssh_port"], vm["region"], vm["instance"],
            vm["state"], vm["status"]) == \
        (NAME, "root", 22, "tor1", "gpu-h100x1-80gb", "pending", "new")
    (key,) = fake.ssh_keys()
    assert (key["name"], key["public_key"]) == ("fleetfs-main", pub)
    assert routes(fake) == [("GET", f"/account/keys/{fp(pub)}"), ("POST", "/account/keys"),
                            ("POST", "/droplets")]
    assert fake.find("POST", "^/account/keys$")[0].body == {"name": "fleetfs-main",
                                                            "public_key": pub}
    assert fake.find("POST", "^/droplets$")[0].body == {
        "name": NAME, "region": "tor1", "size": "gpu-h100x1-80gb", "image": "gpu-h100x1-base",
        "ssh_keys": [key["id"]], "backups": False, "ipv6": False, "monitoring": False,
        "tags": ["fleetfs", "fleetfs-project-main", "fleetfs-fleet-bkcall"],
        "user_data": cloud_init(pub)}

    g = bk("get", vm["id"])
    assert g["rc"] == 0 and g["vm"]["id"] == vm["id"], g
    if g["vm"]["status"] == "new":
        assert g["vm"]["state"] == "pending" and g["vm"]["ip"] == ""
    g = wait_state(bk, vm["id"], ("running",))["vm"]
    (snap,) = fake.vms()
    assert g["status"] == "active" and g["ip"] == snap["host_addr"]
    assert g["ip"] in [h.addr for h in hosts.hosts]
    assert g["internal_ip"].startswith("10.120.0.")      # the private address, by its type
    assert (g["name"], g["region"], g["instance"]) == (NAME, "tor1", "gpu-h100x1-80gb")
    assert fake.find("GET", "^/droplets/")[-1].route == f"/droplets/{vm['id']}"

    # the project key gets in as root, another key does not
    s = ssh(g["ip"], priv)
    assert s.returncode == 0, s.stderr
    s = ssh(g["ip"], otherkey[0])
    assert s.returncode == 255 and "Permission denied" in s.stderr, s.stderr

    t = bk("terminate", vm["id"])
    assert t["rc"] == 0, t
    assert fake.find("DELETE")[-1].route == f"/droplets/{vm['id']}"
    assert fake.find("DELETE")[-1].status == 204
    gone = wait_state(bk, vm["id"], ("ENOENT",))
    assert gone["rc"] == -2 and gone["err"].startswith("digitalocean: not_found: "), gone
    # the host is back in the pool, its keys cleared: the project key no longer gets in
    assert fake.wait_for(lambda: hosts.free == hosts.n, 10)
    assert all(hosts.authorized_keys(h) == [] for h in hosts.hosts)
    assert ssh(snap["host_addr"], priv).returncode == 255
    # terminating again is fine (404 is gone already)
    t = bk("terminate", vm["id"])
    assert t["rc"] == 0 and t["err"] == "", t
    assert fake.find("DELETE")[-1].status == 404


def test_ssh_key_registered_once_across_creates(fake, hosts, bk, keypair):
    a = bk("create", CPU_NYC1, NAME)
    b = bk("create", dict(H100_TOR1), "fleetfs-main-gpu-1-e5f6a7b8")
    assert a["rc"] == 0 and b["rc"] == 0, (a, b)
    assert fake.count("POST", "^/account/keys$") == 1
    # found by its fingerprint: the keys are never listed (10 listings a minute at most)
    assert [x.status for x in fake.find("GET", "^/account/keys")] == [404, 200]
    (key,) = fake.ssh_keys()
    assert [x.body["ssh_keys"] for x in fake.find("POST", "^/droplets$")] == [[key["id"]]] * 2
    assert [x.body["image"] for x in fake.find("POST", "^/droplets$")] == \
        ["ubuntu-24-04-x64", "gpu-h100x1-base"]
    vms = fake.vms()
    assert len(vms) == 2 and vms[0]["host"] != vms[1]["host"]
    assert all(v["pubkeys"] == [keypair[1]] for v in vms)
    for r in (a, b):
        assert bk("terminate", r["vm"]["id"])["rc"] == 0


def test_a_key_dstack_registered_is_reused(fake, hosts, bk, keypair):
    typ, blob = keypair[1].split()[:2]
    kid = fake.add_ssh_key("dstack-main", f"{typ} {blob} someone@laptop")
    r = bk("create", CPU_NYC1, NAME)
    assert r["rc"] == 0, r
    assert fake.count("POST", "^/account/keys$") == 0
    assert fake.find("POST", "^/droplets$")[0].body["ssh_keys"] == [kid]
    assert bk("terminate", r["vm"]["id"])["rc"] == 0


def test_a_key_added_meanwhile_is_found_in_the_list(fake, bk, keypair):
    # the fingerprint lookup misses (an API without it, or a create next to this one adding
    # the key at that moment): the add is refused as a duplicate, the list has it
    kid = fake.add_ssh_key("dstack-main", keypair[1])
    fake.fail(r"^/account/keys/", 404, times=1, method="GET")
    fake.set_capacity("s-2vcpu-4gb", "nyc1", 0)
    fake.max_per_page = 1
    fake.add_ssh_key("another", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsab"
                                "gH5C9okWi0dh2l9GKJl other")
    r = bk("create", CPU_NYC1, NAME)
    assert r["errno"] == "ENOSPC", r        # the key was found; the droplet had no room
    assert [(x.method, x.route, x.status) for x in fake.find(route="^/account/keys")] == [
        ("GET", f"/account/keys/{fp(keypair[1])}", 404), ("POST", "/account/keys", 422),
        ("GET", "/account/keys", 200), ("GET", "/account/keys", 200)]
    assert fake.find("POST", "^/droplets$")[0].body["ssh_keys"] == [kid]


@pytest.mark.parametrize("o,image", [
    (CPU_NYC1, "ubuntu-24-04-x64"),
    (H100_TOR1, "gpu-h100x1-base"),
    (H100X8_NYC2, "gpu-h100x8-base"),
    (ADA_TOR1, "gpu-h100x1-base"),
    (MI300X_ATL1, "gpu-amd-base"),
])
def test_image_per_offer(fake, bk, o, image):
    fake.set_capacity(o["instance"], o["region"], 0)     # no droplet: the body is enough
    r = bk("create", o, NAME)
    assert r["errno"] == "ENOSPC", r
    b = fake.find("POST", "^/droplets$")[0].body
    assert (b["image"], b["size"], b["region"]) == (image, o["instance"], o["region"])


def test_no_capacity_is_enospc(fake, bk):
    fake.set_capacity("gpu-h100x1-80gb", "tor1", 0)
    r = bk("create", H100_TOR1, NAME)
    assert (r["rc"], r["errno"]) == (-28, "ENOSPC"), r
    assert r["err"] == ("digitalocean: unprocessable_entity: The requested size is not "
                        "available in this region right now.")
    assert fake.count("POST", "^/droplets$", status=422) == 1 and fake.vms() == []
    # a size DigitalOcean does not offer now, or not in that region: the same answer
    r = bk("create", offer("gpu-l40sx1-48gb", "tor1", 1.57, 8, 65536, "nvidia", "L40S",
                           49152, 1), NAME)
    assert r["errno"] == "ENOSPC", r
    r = bk("create", dict(CPU_NYC1, region="ams3"), NAME)
    assert r["errno"] == "ENOSPC", r


@pytest.mark.parametrize("status,eid,errno_", [
    (422, "unprocessable_entity", "ENOSPC"),
    (400, "bad_request", "EINVAL"),
    (404, "not_found", "EINVAL"),
    (401, "unauthorized", "EACCES"),
    (403, "forbidden", "EACCES"),
    (500, "server_error", "EIO"),
])
def test_create_errors_map_to_errnos(fake, bk, status, eid, errno_):
    body = {"id": eid, "message": f"said {eid}", "request_id": "4851a473-1621"}
    fake.fail(r"^/droplets$", status, body, method="POST")
    r = bk("create", CPU_NYC1, NAME)
    assert r["errno"] == errno_, r
    assert r["err"] == f"digitalocean: {eid}: said {eid}", r
    # a create is not repeated after an answer (it is not idempotent)
    assert fake.count("POST", "^/droplets$") == 1


def test_create_error_without_digitaloceans_body(fake, bk):
    fake.fail(r"^/droplets$", 502, "<html>bad gateway</html>", times=None,
              headers={"Content-Type": "text/html"}, method="POST")
    r = bk("create", CPU_NYC1, NAME)
    assert r["errno"] == "EIO" and r["err"] == "digitalocean: POST /droplets: HTTP 502", r


def test_names_digitalocean_refuses_are_einval_without_a_call(fake, bk):
    r = bk("create", CPU_NYC1, "fleetfs-main_gpu-0-a1b2c3d4")
    assert r["errno"] == "EINVAL" and "droplet names" in r["err"], r
    assert fake.count() == 0


def test_429_with_retry_after_is_retried(fake, hosts, bk):
    fake.fail(r"^/droplets$", 429, times=2, headers={"Retry-After": "1"}, method="POST")
    t0 = time.monotonic()
    r = bk("create", CPU_NYC1, NAME)
    assert r["rc"] == 0, r
    assert time.monotonic() - t0 < 5
    assert [x.status for x in fake.find("POST", "^/droplets$")] == [429, 429, 202]
    assert len(fake.vms()) == 1          # one droplet, not three
    assert bk("terminate", r["vm"]["id"])["rc"] == 0


def test_429_without_retry_after_is_not_repeated_for_a_create(fake, bk):
    # the hourly limit: no Retry-After, so a POST is not known to be safe to repeat
    fake.fail(r"^/droplets$", 429, times=None, method="POST")
    r = bk("create", CPU_NYC1, NAME)
    assert r["errno"] == "EAGAIN" and r["err"].startswith("digitalocean: too_many_requests"), r
    assert fake.count("POST", "^/droplets$") == 1


def test_rate_limit_answers_429_and_the_client_waits(fake, bk):
    fake.rate_limit(1, retry_after=1)
    assert bk("check")["rc"] == 0
    t0 = time.monotonic()
    r = bk("check", env={"FLEETFS_TIME_SCALE": "1"})
    assert r["rc"] == 0, r
    assert time.monotonic() - t0 >= 0.9
    assert [x.status for x in fake.find()] == [200, 429, 200]


def test_project_name_puts_the_droplet_in_the_project(fake, hosts, bk):
    pid = fake.add_project("ml-team")
    r = bk("create", CPU_NYC1, NAME, extra_config="project_name: ml-team\n")
    assert r["rc"] == 0, r
    assert routes(fake)[-3:] == [("GET", "/projects"), ("POST", "/droplets"),
                                 ("POST", f"/projects/{pid}/resources")]
    assert fake.find("POST", "^/droplets$")[0].body["project_id"] == pid
    urn = f"do:droplet:{r['vm']['id']}"
    assert fake.find("POST", "resources$")[0].body == {"resources": [urn]}
    assert fake.assignments == [(pid, urn)]
    assert bk("terminate", r["vm"]["id"])["rc"] == 0
    # a project that is not there: refused before anything is created
    fake.clear_requests()
    r = bk("create", CPU_NYC1, NAME, extra_config="project_name: gone\n")
    assert r["errno"] == "EINVAL" and "no project named" in r["err"], r
    assert fake.count("POST", "^/droplets$") == 0


def test_a_500_on_get_is_retried(fake, hosts, bk):
    vm = fake.create_behind_the_back(NAME, "s-2vcpu-4gb", "nyc1")
    fake.fail(r"^/droplets/[0-9]+$", 500, times=1, method="GET")
    r = bk("get", vm.id)
    assert r["rc"] == 0 and r["vm"]["state"] == "running", r
    assert [x.status for x in fake.find("GET", "^/droplets/")] == [500, 200]


def test_get_and_terminate_unknown(fake, bk):
    r = bk("get", "999999")
    assert (r["rc"], r["errno"]) == (-2, "ENOENT"), r
    assert r["err"] == ("digitalocean: not_found: The resource you requested could not be "
                        "found.")
    r = bk("terminate", "999999")
    assert r["rc"] == 0 and r["err"] == "", r
    assert fake.count("DELETE", status=404) == 1
    for bad in ("../account", "0123", "12a", ""):
        r = bk("get", bad)
        assert r["errno"] == "EINVAL", r
    assert fake.count("GET") == 1


def test_status_mapping(fake, hosts, bk):
    vm = fake.create_behind_the_back(NAME, "s-2vcpu-4gb", "nyc1")
    fake.set_phase(vm.id, "booting")
    r = bk("get", vm.id)["vm"]
    assert (r["state"], r["status"], r["ip"]) == ("pending", "new", ""), r
    fake.set_phase(vm.id, "running", status="off")
    r = bk("get", vm.id)["vm"]
    assert (r["state"], r["status"]) == ("stopped", "off"), r
    fake.set_phase(vm.id, "terminated")
    r = bk("get", vm.id)["vm"]
    assert (r["state"], r["status"]) == ("terminated", "archive"), r


# ------------------------------------------------------------------------------ list_own

def test_list_own_finds_fleetfs_droplets_only(fake, hosts, bk):
    ours = bk("create", CPU_NYC1, NAME)
    assert ours["rc"] == 0, ours
    # made behind fleetfs's back, without tags (an older fleetfs), and a GPU droplet: the
    # API lists those only with type=gpus
    orphan = fake.create_behind_the_back("fleetfs-main-gpu-7-zz00yy11", "gpu-h100x1-80gb",
                                         "tor1")
    fake.create_behind_the_back("someone-elses-droplet", "s-2vcpu-4gb", "nyc3")
    fake.max_per_page = 1
    r = bk("list")
    assert r["rc"] == 0, r
    got = {v["id"]: v for v in r["vms"]}
    assert set(got) == {ours["vm"]["id"], orphan.id}
    o = got[orphan.id]
    assert (o["name"], o["state"], o["status"], o["region"], o["instance"], o["ip"],
            o["username"]) == ("fleetfs-main-gpu-7-zz00yy11", "running", "active", "tor1",
                               "gpu-h100x1-80gb", orphan.host.addr, "root")
    assert [(x.query.get("type", [""])[0], x.query.get("page", ["1"])[0])
            for x in fake.find("GET", "^/droplets$")] == [("", "1"), ("", "2"), ("gpus", "1")]
    assert bk("terminate", ours["vm"]["id"])["rc"] == 0


# ------------------------------------------------------------------------------ AMD

def test_amddevcloud_has_its_own_endpoint(fake, amd, hosts, amd_bk, keypair):
    priv, pub = keypair
    assert amd_bk("check")["rc"] == 0
    r = amd_bk("check", key=BAD_KEY)
    assert r["err"] == "amddevcloud: unauthorized: Unable to authenticate you", r
    r = amd_bk("offers")
    assert r["rc"] == 0, r
    assert sorted((o["instance"], o["region"], o["gpus"]["vendor"], o["gpus"]["name"],
                   o["gpus"]["count"], o["backend"], o["type"]) for o in r["offers"]) == [
        ("gpu-mi300x1-192gb", "atl1", "amd", "MI300X", 1, "amddevcloud", "amddevcloud"),
        ("gpu-mi300x8-1536gb", "atl1", "amd", "MI300X", 8, "amddevcloud", "amddevcloud")]
    c = amd_bk("create", dict(MI300X_ATL1, backend="amddevcloud", type="amddevcloud"), NAME)
    assert c["rc"] == 0, c
    assert amd.find("POST", "^/droplets$")[0].body["image"] == "gpu-amd-base"
    g = wait_state(amd_bk, c["vm"]["id"], ("running",))["vm"]
    assert ssh(g["ip"], priv).returncode == 0
    assert amd_bk("terminate", c["vm"]["id"])["rc"] == 0
    wait_state(amd_bk, c["vm"]["id"], ("ENOENT",))
    assert fake.count() == 0            # nothing went to DigitalOcean


# ------------------------------------------------------------------------------ the fake

@pytest.mark.parametrize("change,word", [
    ({"extra": 1}, "unknown field"),
    ({"name": "bad_name"}, "Name is invalid"),
    ({"name": None}, "Name is invalid"),
    ({"size": None}, "size is required"),
    ({"image": None}, "image is required"),
    ({"image": True}, "image is required"),
    ({"backups": "no"}, "backups must be a boolean"),
    ({"tags": ["has space"]}, "tags may contain"),
    ({"ssh_keys": [12345]}, "invalid SSH key"),
    ({"ssh_keys": "1"}, "ssh_keys must be a list"),
    ({"user_data": 5}, "user_data must be a string"),
    ({"size": "s-99vcpu"}, "invalid size"),
    ({"image": "windows-95"}, "invalid image"),
    ({"region": "mars1"}, "invalid region"),
    ({"project_id": "0000"}, "project_id"),
])
def test_fake_checks_the_droplet_body_like_the_api(fake, change, word):
    body = {"name": "n1", "region": "nyc1", "size": "s-2vcpu-4gb", "image": "ubuntu-24-04-x64"}
    body.update(change)
    st, ans, _ = api(fake, "POST", "/droplets", body)
    assert st == 422 and ans["id"] == "unprocessable_entity" and word in ans["message"], ans
    assert fake.vms() == []


def test_fake_installs_the_user_data_keys_too(fake, hosts, keypair, otherkey):
    kid = fake.add_ssh_key("project", keypair[1])
    ud = f"#cloud-config\nssh_authorized_keys:\n  - {otherkey[1]}\n"
    assert cloud_config_keys(ud) == [otherkey[1]]
    st, ans, hdrs = api(fake, "POST", "/droplets", {
        "name": "n1", "region": "nyc1", "size": "s-2vcpu-4gb", "image": "ubuntu-24-04-x64",
        "ssh_keys": [kid], "user_data": ud})
    assert st == 202, ans
    assert fake.wait_for(lambda: fake.droplet(ans["droplet"]["id"])["status"] == "active", 10)
    ip = [n for n in fake.droplet(ans["droplet"]["id"])["networks"]["v4"]
          if n["type"] == "public"][0]["ip_address"]
    assert ssh(ip, keypair[0]).returncode == 0
    assert ssh(ip, otherkey[0]).returncode == 0
    st, _, _ = api(fake, "DELETE", f"/droplets/{ans['droplet']['id']}")
    assert st == 204


def test_fake_pages_filters_and_rate_limit_headers(fake, hosts):
    fake.create_behind_the_back("a1", "s-2vcpu-4gb", "nyc1", tags=["fleetfs"])
    fake.create_behind_the_back("a2", "s-2vcpu-4gb", "nyc1")
    g = fake.create_behind_the_back("g1", "gpu-h100x1-80gb", "tor1", tags=["fleetfs"])
    st, ans, hdrs = api(fake, "GET", "/droplets?per_page=1")
    assert st == 200 and [d["name"] for d in ans["droplets"]] == ["a1"], ans
    assert ans["meta"] == {"total": 2}
    assert ans["links"]["pages"]["next"] == fake.url + "/droplets?per_page=1&page=2"
    assert ans["links"]["pages"]["last"] == fake.url + "/droplets?per_page=1&page=2"
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= \
        {k.lower() for k in hdrs}
    st, ans, _ = api(fake, "GET", "/droplets?type=gpus")
    assert [d["id"] for d in ans["droplets"]] == [int(g.id)] and "pages" not in ans["links"]
    st, ans, _ = api(fake, "GET", "/droplets?tag_name=fleetfs")
    assert sorted(d["name"] for d in ans["droplets"]) == ["a1", "g1"]
    st, ans, _ = api(fake, "GET", "/droplets?tag_name=fleetfs&type=gpus")
    assert st == 400 and ans["id"] == "bad_request"
    st, ans, _ = api(fake, "GET", "/droplets/123", key=BAD_KEY)
    assert st == 401 and ans["id"] == "unauthorized" and ans["request_id"]


def test_fake_limits_key_listings_like_the_api(fake):
    for _ in range(10):
        assert api(fake, "GET", "/account/keys")[0] == 200
    st, ans, hdrs = api(fake, "GET", "/account/keys")
    assert st == 429 and ans["id"] == "too_many_requests", ans
    h = {k.lower(): v for k, v in hdrs.items()}
    assert h["ratelimit-remaining"] == "0" and int(h["retry-after"]) >= 1
    st, ans, _ = api(fake, "POST", "/account/keys", {"name": "x", "public_key": "ssh-rsa !!"})
    assert st == 422 and ans["id"] == "unprocessable_entity"


# ------------------------------------------------------------------------------ a mount

FLEET = """type: fleet
name: gpu
nodes: 1
resources:
  gpu: H100
"""


def test_a_mount_provisions_a_droplet(fake, hosts, fleet_factory, monkeypatch):
    """The daemon end to end: live offers, a fleet on the cheapest H100 in the config's
    region, root login through the generated stanza, the orphan sweep (a GPU droplet only the
    type=gpus listing shows), delete -> DELETE -> gone."""
    import yaml
    from fleetlib import read_file, wait_until, write_file
    monkeypatch.setenv("FLEETFS_ENDPOINT_DIGITALOCEAN", fake.url)
    monkeypatch.setenv("FLEETFS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("FLEETFS_TIME_SCALE", SCALE)
    orphan = fake.create_behind_the_back("fleetfs-main-old-3-abcd1234", "gpu-h100x1-80gb",
                                         "nyc2")
    m = fleet_factory()
    bdir = m.p("projects", "main", "backends", "digitalocean")
    os.mkdir(bdir)
    write_file(os.path.join(bdir, "config.yml"),
               f"type: digitalocean\ncreds:\n  type: api_key\n  api_key: {KEY}\n"
               "regions: [tor1]\n".encode())

    def status():
        return yaml.safe_load(read_file(os.path.join(bdir, "status")))

    def pev():
        return read_file(m.p("projects", "main", "events")).decode()
    assert wait_until(lambda: status()["state"] == "valid", 15), status()
    offer = m.p("projects", "main", "offers", "digitalocean:tor1:gpu-h100x1-80gb")
    assert wait_until(lambda: os.path.exists(offer), 15), os.listdir(
        m.p("projects", "main", "offers"))
    o = yaml.safe_load(read_file(offer))
    assert (o["source"], o["availability"], o["gpus"]["name"]) == ("api", "available", "H100")
    assert not os.path.exists(m.p("projects", "main", "offers",
                                  "digitalocean:nyc2:gpu-h100x1-80gb"))   # regions: [tor1]

    write_file(m.p("projects", "main", "fleets", "gpu.yml"), FLEET.encode())
    inst = m.p("projects", "main", "fleets", "gpu", "instances", "0")

    def istatus():
        try:
            return yaml.safe_load(read_file(os.path.join(inst, "status")))
        except OSError:
            return None
    assert wait_until(lambda: (istatus() or {}).get("status") == "idle", 60), \
        (istatus(), read_file(m.p("projects", "main", "fleets", "gpu", "events")).decode())
    (vm,) = [v for v in fake.vms() if not v["orphan"]]
    assert vm["name"].startswith("fleetfs-main-gpu-0-") and vm["region"] == "tor1"
    assert vm["extra"]["tags"] == ["fleetfs", "fleetfs-project-main", "fleetfs-fleet-gpu"]
    pub = read_file(m.p("projects", "main", "ssh", "id_rsa.pub")).decode().split()[1]
    assert [k.split()[1] for k in vm["pubkeys"]] == [pub]
    r = subprocess.run(["ssh", "-F", os.path.join(inst, "ssh"), "gpu-0", "whoami"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stdout.strip() == "root", r.stderr
    assert wait_until(lambda: "orphan VM fleetfs-main-old-3-abcd1234" in pev(), 30), pev()
    assert orphan.phase == "running"
    assert KEY not in pev() and KEY not in read_file(os.path.join(bdir, "status")).decode()

    os.unlink(m.p("projects", "main", "fleets", "gpu.yml"))
    assert wait_until(lambda: not [v for v in fake.vms() if not v["orphan"]], 30), fake.vms()
    assert fake.count("DELETE", "^/droplets/") >= 1
    assert fake.count("POST", "^/droplets$") == 1
    assert fake.count("POST", "^/account/keys$") == 1
