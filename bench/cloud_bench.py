#!/usr/bin/python3
"""fleetfs cloud-fleet benchmark: provisioning time, API calls per instance, live status reads,
against the fake provider APIs of tests/fakes with a fixed API latency.

    /usr/bin/python3 bench/cloud_bench.py [--instances 50] [--latency 0.2] [--boot 2]
                                          [--terminate-seconds 1] [--readers 64]
                                          [--read-seconds 10]
                                          [--providers lambda,digitalocean,vultr,aws]
                                          [--out bench/CLOUD_RESULTS.md]

Starts one fake per provider (tests/fakes: Lambda, DigitalOcean, Vultr, AWS; a fake that
cannot be imported, or whose backend type the daemon does not accept, is left out and the
report says so). Each fake's VMs are real sshd hosts in network namespaces, from a pool big
enough for its share of the instances, and every route of every fake answers after --latency
seconds. A fresh fleetfs is mounted with FLEETFS_ENDPOINT_<TYPE> (for aws: AWS_ENDPOINT_URL,
as the AWS SDKs read it) and FLEETFS_CA_BUNDLE pointing at the fakes, a catalog directory for
the providers whose offers come from gpuhunt (lambdalabs.csv made from the Lambda fake's
instance types; aws.csv with g5.xlarge and t3.small in us-east-1) and FLEETFS_TIME_SCALE=1
(real intervals: provider polls every 5 s, live-check TTL 5 s). The daemon inherits no AWS_*
variable of this machine: the shared credentials and config files point at nonexistent paths
and the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED=true), so the AWS
backend uses only the access key of its config.yml. One backend per provider is configured;
one fleet spec per provider (`backends: [<type>]`) splits the instances over them. Then:

  1. time to all idle: from the first spec write to the poll of the fleets' status files that
     shows every instance idle, next to the ideal (what a perfect client needs given the
     fake's latency and boot time) and the ratio, overall and per provider; the per-instance
     timeline from the fakes' request logs says where the time went;
  2. API calls per instance lifecycle: every request of each fake's log, by (method, route
     template), from the spec writes to all idle and from the `rm` of the specs to every
     instance gone, divided by the instances; calls a cache could have saved are marked.
     The AWS fake logs every request as POST "<service>/<Action>" (ec2/RunInstances,
     sts/GetCallerIdentity, ...), the instance ids in the form body (InstanceId.N) and the
     instance's name in its Name tag: each provider has its own function that maps a request
     to the VM it is about (PROVIDERS[...]["vm_of"]);
  3. live status reads: R threads read instances/<n>/status of the idle instances in a loop
     for S seconds: reads/s, latency p50/p99, and the provider GET calls for those instances
     during the window per instance per 5 s TTL (target ~1; on AWS the "GET" of one VM is
     ec2/DescribeInstances with its InstanceId.1).

Python standard library + yaml (Debian python3-yaml). Needs root (network namespaces). All
traffic stays on loopback and the hosts' bridges. The state dir and mountpoint live in a
fresh /var/tmp/fleetfs-cloudbench-XXXX; a `finally` block always unmounts (fusermount3 -u,
lazily if busy), stops the fakes (and their hosts) and removes the directory, also after an
error, Ctrl-C, SIGTERM or SIGHUP. See bench/README.md.
"""
import argparse
import collections
import importlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml

import benchlib
from benchlib import BIN, REPO, BenchError, Mount, log, loadavg, mount_fstype, pct

FAKES_DIR = os.path.join(REPO, "tests", "fakes")
sys.path.insert(0, FAKES_DIR)

PROJECT = "main"
READY_TIMEOUT = 60.0     # backend credentials checked and offers cached
IDLE_TIMEOUT = 300.0     # spec writes -> all idle
GONE_TIMEOUT = 180.0     # rm of the specs -> every instance gone
POLL = 0.05              # fleet status poll interval
POLL_S = 5.0             # core/cloud.c POLL_S: provisioning and terminating polls
CHECK_TTL = 5.0          # fs/ops.c engine_check(..., 5000, 3000): live-check TTL
CHECK_WAIT = 3.0         # ... and how long a reader waits for a check
WORKERS = 8              # fs/main.c engine_start(..., 8, ...)
SCAN_S = 1.0             # core/engine.c: the scheduler scans the rows every second
SLOW_MS = 50.0
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

LAMBDA_HEADER = ("instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,"
                 "disk_size,gpu_vendor,flags,cpu_arch,provider_data\n")


# ------------------------------------------------------------------------------ providers

def _lambda_catalog(fake):
    """The fake's instance types as gpuhunt publishes them (as tests/integration/test_cloud.py)."""
    rows = []
    for name, t in fake.types.items():
        count, rest = t["description"].split("x ", 1)
        gpu = rest.split(" ")[0]
        mem = rest.split("(")[1].split(" ")[0]
        for region in t["regions"]:
            rows.append(f"{name},{region},{t['price_cents_per_hour'] / 100},{t['vcpus']},"
                        f"{t['memory_gib']},{count},{gpu},{mem},False,{t['storage_gib']},"
                        f"nvidia,,x86,\n")
    return {"lambdalabs.csv": LAMBDA_HEADER + "".join(rows)}


def _aws_catalog(fake):
    """gpuhunt's aws rows for the fake's region: the GPU the fleet asks for (A10G: g5.xlarge)
    and a CPU type, as tests/integration/test_aws_cloud.py writes them."""
    return {"aws.csv": LAMBDA_HEADER +
            f"g5.xlarge,{AWS_REGION},1.006,4,16.0,1,A10G,24.0,False,,nvidia,,x86,\n"
            f"t3.small,{AWS_REGION},0.0208,2,2.0,0,,,False,,,,x86,\n"}


DO_PROJECT = "fleetfs-bench"
AWS_REGION = "us-east-1"
AWS_G_QUOTA = "L-DB2E81BA"   # Service Quotas: running on-demand G and VT instances (vCPUs)
# The daemon's AWS environment: the fake (or a closed loopback port) as every service's
# endpoint, and nothing of this machine's AWS set-up (files, instance metadata).
AWS_CLOSED_ENV = {"AWS_ENDPOINT_URL": "https://127.0.0.1:9",
                  "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/fleetfs-cloudbench/credentials",
                  "AWS_CONFIG_FILE": "/nonexistent/fleetfs-cloudbench/config",
                  "AWS_EC2_METADATA_DISABLED": "true"}


def _rest_vm_of(p, r):
    """The bench VM a REST request is about: its id as the path's last part, in the body's
    instance_ids or resources (DigitalOcean's do:droplet:<id>), or its name in the create
    body (name_field)."""
    parts = (r.route or "").rstrip("/").split("/")
    if parts and parts[-1] in p.vms:
        return parts[-1]
    b = r.body if isinstance(r.body, dict) else {}
    for i in b.get("instance_ids") or []:
        if i in p.vms:
            return i
    for u in b.get("resources") or []:
        if isinstance(u, str) and u.split(":")[-1] in p.vms:
            return u.split(":")[-1]
    name = b.get(p.cfg["name_field"])
    return p.by_name.get(name) if isinstance(name, str) else None


_AWS_ID = re.compile(r"InstanceId\.\d+")
_AWS_TAG_KEY = re.compile(r"(TagSpecification\.\d+\.Tag\.\d+)\.Key")


def aws_params(r):
    """The parameters of an AWS request: its query, then its form body (EC2, STS), or the
    JSON body (Service Quotas)."""
    q = {k: v[-1] for k, v in (r.query or {}).items()}
    if isinstance(r.body, str):
        q.update(urllib.parse.parse_qsl(r.body, keep_blank_values=True))
    elif isinstance(r.body, dict):
        q.update(r.body)
    return q


def _aws_vm_of(p, r):
    """The bench VM an AWS request is about: an InstanceId.N of the form body
    (DescribeInstances, TerminateInstances), else the Name tag of a RunInstances."""
    q = aws_params(r)
    for k, v in q.items():
        if _AWS_ID.fullmatch(k) and v in p.vms:
            return v
    for k, v in q.items():
        m = _AWS_TAG_KEY.fullmatch(k)
        if m and v == "Name":
            vid = p.by_name.get(q.get(m.group(1) + ".Value"))
            if vid is not None:
                return vid
    return None


def _aws_not_vm(r):
    """What a DescribeInstances about none of the bench's VMs is."""
    if any(_AWS_ID.fullmatch(k) for k in aws_params(r)):
        return "another VM"
    return "a listing, no InstanceId (orphan sweep)"


def _aws_regions(p, create_reqs):
    """AWS requests name their region only in the signature's scope (not logged): the
    regions of the bench's VMs."""
    return {v["extra"].get("region_name") for v in p.vms.values()}


def _body_regions(p, create_reqs):
    """The regions the create bodies named."""
    return {(r.body or {}).get("region") or (r.body or {}).get("region_name")
            for r in create_reqs if isinstance(r.body, dict)}


def _endpoint_env(ptype):
    return lambda fake: {"FLEETFS_ENDPOINT_" + ptype.upper(): fake.url}


# type -> how to run it. get: the route template of one VM (the polls and checks); create:
# the create route(s); terminate: the terminate route(s); name_field: where the create body
# names the VM (REST providers); vm_of(p, request): the bench VM a request is about, or None;
# not_vm(request): what a `get` about none of them is; regions(p, create requests): the
# regions the window's creates used; env(fake): the daemon's variables that point the backend
# at the fake; setup_rtt: the round trips a perfect client needs, once per account/region,
# before its first create (setup says which); terminating: the fake shows a VM terminating
# for --terminate-seconds before it is gone; terminated_visible: a terminated VM is still
# answered (200, state terminated) rather than 404.
PROVIDERS = {
    "lambda": {
        "module": "lambda_fake", "cls": "LambdaFake", "fleet": "bench-lambda",
        "key": "lmbd-bench-key-0123456789abcdef",
        "gpu": "A10", "expect": "gpu_1x_a10",
        "config": "type: lambda\ncreds:\n  type: api_key\n  api_key: {key}\n",
        "kw": lambda n: {},
        "after": lambda f: None,
        "catalog": _lambda_catalog,
        "get": ("GET", "/instances/{id}"),
        "create": {("POST", "/instance-operations/launch")},
        "terminate": {("POST", "/instance-operations/terminate")},
        "name_field": "name",
        "setup_rtt": 2, "setup": "the SSH key: a look-up and a registration",
        "terminating": True, "terminated_visible": False,
    },
    "digitalocean": {
        "module": "do_fake", "cls": "DigitalOceanFake", "fleet": "bench-do",
        "key": "dop_v1_bench0123456789abcdef0123456789abcdef0123456789abcdef012345",
        "gpu": "H100:80GB:1", "expect": "gpu-h100x1-80gb",
        "config": ("type: digitalocean\nproject_name: " + DO_PROJECT +
                   "\ncreds:\n  type: api_key\n  api_key: {key}\n"),
        "kw": lambda n: {"droplet_limit": 1000},
        "after": lambda f: f.add_project(DO_PROJECT),
        "catalog": None,
        "get": ("GET", "/droplets/{id}"),
        "create": {("POST", "/droplets")},
        "terminate": {("DELETE", "/droplets/{id}")},
        "name_field": "name",
        "setup_rtt": 2, "setup": "the SSH key: a look-up and a registration",
        "terminating": True, "terminated_visible": False,
    },
    "vultr": {
        "module": "vultr_fake", "cls": "VultrFake", "fleet": "bench-vultr",
        "key": "VULTRBENCHKEY3C1E5B2D48AA7F3A9C0D1E",
        "gpu": "A100:80GB:1", "expect": "vcg-a100-12c-120g-80vram",
        "config": "type: vultr\ncreds:\n  type: api_key\n  api_key: {key}\n",
        "kw": lambda n: {},
        "after": lambda f: None,
        "catalog": None,
        "get": ("GET", "/instances/{id}"),
        "create": {("POST", "/instances"), ("POST", "/bare-metals")},
        "terminate": {("DELETE", "/instances/{id}"), ("DELETE", "/bare-metals/{id}")},
        "name_field": "label",
        "setup_rtt": 2, "setup": "the region's VPC: a look-up and a create",
        "terminating": False, "terminated_visible": False,
    },
    "aws": {
        "module": "aws_fake", "cls": "AwsFake", "fleet": "bench-aws",
        "key": ("AKIAFLEETFSBENCH0001", "fleetfsBenchSecretKey0123456789abcdefGHIJ"),
        "gpu": "A10G", "expect": "g5.xlarge",
        "config": ("type: aws\ncreds:\n  type: access_key\n  access_key: {key[0]}\n"
                   "  secret_key: {key[1]}\nregions: [" + AWS_REGION + "]\n"),
        # a terminated instance stays visible (state terminated), as on AWS for about an
        # hour; the fake's default (3 s) is shorter than the engine's 5 s poll
        "kw": lambda n: {"terminated_linger": 3600},
        # the G quota (256 vCPUs by default: 64 g5.xlarge) never limits a bench run
        "after": lambda f: f.set_quota(AWS_REGION, AWS_G_QUOTA, 10000),
        "catalog": _aws_catalog,
        "env": lambda fake: {"AWS_ENDPOINT_URL": fake.url},
        "get": ("POST", "ec2/DescribeInstances"),
        "create": {("POST", "ec2/RunInstances")},
        "terminate": {("POST", "ec2/TerminateInstances")},
        "vm_of": _aws_vm_of, "not_vm": _aws_not_vm, "regions": _aws_regions,
        "setup_rtt": 4,
        "setup": ("the region's security group: the VPC, the group looked up, made, its "
                  "rules authorized (the image, zones and subnets in parallel)"),
        "terminating": True, "terminated_visible": True,
    },
}
for _t, _c in PROVIDERS.items():
    _c.setdefault("vm_of", _rest_vm_of)
    _c.setdefault("not_vm", lambda r: "another VM")
    _c.setdefault("regions", _body_regions)
    _c.setdefault("env", _endpoint_env(_t))
ORDER = ["lambda", "digitalocean", "vultr", "aws"]

# Every type fleetfs knows gets an endpoint: the fakes', else a closed loopback port, so that
# nothing ever leaves the machine (as tests/integration/conftest.py does). AWS's client reads
# AWS_ENDPOINT_URL instead (AWS_CLOSED_ENV).
ALL_TYPES = ("lambda", "digitalocean", "amddevcloud", "vultr", "hotaisle", "cloudrift", "cudo",
             "vastai", "runpod", "verda", "datacrunch", "azure", "gcp", "oci", "nebius",
             "kubernetes")

# What a perfect client needs of each call, per (type, method, route template):
#   all        every call is needed (one per instance, or a poll)
#   once       one call per window is enough: the answer does not change between creates
#   region     one per region the window's creates used
#   per_vm     one per VM the calls are about (a terminate call)
#   none       a perfect client never needs it
#   background not per instance: the offers refresh or the credential check (shown, not
#              counted as savable)
RULES = {
    ("lambda", "GET", "/ssh-keys"): (
        "once", "Lambda create lists every SSH key of the account before each launch "
                "(backends/lambda.c lam_ensure_key): once the project key is known to be "
                "registered, a per-backend cache would make the listing once"),
    ("lambda", "POST", "/ssh-keys"): (
        "once", "creates running at the same time each add the key; all but one are refused "
                "(already exists) and list the keys again: one registration in flight per "
                "backend (or the cache above) would add it once"),
    ("lambda", "GET", "/instance-types"): (
        "background", "offers refresh and credential check (lambda_offers, lambda_check)"),
    ("digitalocean", "GET", "/account/keys/{id}"): (
        "once", "DigitalOcean create looks the project key up by fingerprint before each "
                "droplet (dgo_ensure_key): a per-backend cache of the key id would do it once"),
    ("digitalocean", "POST", "/account/keys"): (
        "once", "creates at the same time each add the key; all but one get 422 (already in "
                "use)"),
    ("digitalocean", "GET", "/account/keys"): (
        "none", "after a refused add the keys are listed whole (dgo_find_key); the spec "
                "allows 10 listings a minute"),
    ("digitalocean", "GET", "/projects"): (
        "once", "with project_name, every create reads every page of GET /projects to find "
                "the project id (dgo_project_id), which the credential check already found"),
    ("digitalocean", "GET", "/account"): ("background", "credential check (digitalocean_check)"),
    ("digitalocean", "GET", "/sizes"): ("background", "offers refresh (digitalocean_offers)"),
    ("vultr", "GET", "/vpcs"): (
        "region", "Vultr create finds fleetfs-vpc-<region> by listing the account's VPCs "
                  "(backends/vultr.c vul_vpc) under a process-wide mutex (vpc_lock) and "
                  "remembers its id per region, but only after releasing the mutex: a create "
                  "that waited for the mutex and takes it before the id is remembered lists "
                  "again. One listing per region is enough"),
    ("vultr", "POST", "/vpcs"): ("region", "the VPC of a region is made once"),
    ("vultr", "GET", "/plans"): ("background", "offers refresh (vultr_offers)"),
    ("vultr", "GET", "/plans-metal"): ("background", "offers refresh (vultr_offers)"),
    ("vultr", "GET", "/ssh-keys"): ("background", "credential check (vultr_check)"),
    ("aws", "POST", "ec2/RunInstances"): (
        "all", "one per instance (more when a zone refuses it and the next zone is tried)"),
    ("aws", "POST", "ec2/DescribeInstances"): ("all", "the polls and live checks"),
    ("aws", "POST", "sts/GetCallerIdentity"): ("background", "credential check (aws_check)"),
    ("aws", "POST", "servicequotas/GetServiceQuota"): (
        "background", "offers refresh: the vCPU quotas of the offers' families (aws_offers)"),
}
_AWS_MEMO = ("one per region is enough; backends/aws.c remembers the answer per region (10 "
             "min, zones and EFA support for good) and sets a region up one create at a "
             "time, so creates that wait read the first one's answer")
for _act, _why in (
        ("DescribeImages", "the newest available image of the region (aws_image_lookup)"),
        ("DescribeAvailabilityZones", "the region's zones (aws_zones)"),
        ("DescribeInstanceTypes", "the type's EFA interfaces (aws_efa)"),
        ("DescribeVpcs", "the default VPC (aws_vpc, from aws_net)"),
        ("DescribeSubnets", "the VPC's subnets (aws_net)"),
        ("DescribeRouteTables", "the VPC's route tables, to tell public subnets (aws_net)"),
        ("DescribeSecurityGroups", "the project's security group (aws_sg), looked up before "
                                   "it is made"),
        ("CreateSecurityGroup", "the project's security group; a create that finds it made "
                                "meanwhile gets InvalidGroup.Duplicate"),
        ("AuthorizeSecurityGroupIngress", "the group's ingress rules (SSH from anywhere, all "
                                          "within the group), in one call"),
        ("AuthorizeSecurityGroupEgress", "the group's egress rule (all within the group)")):
    RULES[("aws", "POST", "ec2/" + _act)] = ("region", f"{_why}; {_AWS_MEMO}")
_RESEND = ("the engine asks the provider once per VM, then only looks, and asks again only "
           "when the VM is still there a minute later (core/cloud.c terminating_step, "
           "term_asked): a second call in this window is one the provider did not need")
for _t, _c in PROVIDERS.items():
    for _m, _r in _c["terminate"]:
        RULES[(_t, _m, _r)] = ("per_vm", _RESEND)
RULES[("aws", "POST", "ec2/CancelSpotInstanceRequests")] = (
    "per_vm", "the spot request of a spot instance is cancelled before its terminate: one per "
              "VM")


def load_fake(ptype):
    """(class, None) or (None, why it cannot be used)."""
    p = PROVIDERS[ptype]
    try:
        mod = importlib.import_module(p["module"])
        return getattr(mod, p["cls"]), None
    except Exception as e:  # noqa: BLE001 (reported)
        return None, f"tests/fakes/{p['module']}.py: {type(e).__name__}: {e}"


def template(fake, method, route):
    """The route template of a request: the fake's route regex with its groups as {name}."""
    for m, rx, _h in fake._routes:          # noqa: SLF001 (the bench reads the fake's table)
        if m == method and rx.fullmatch(route or ""):
            return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", rx.pattern)
    return route


# ------------------------------------------------------------------------------ mount

def read(path):
    with open(path, "rb") as f:
        return f.read()


def tail(path, n=12):
    try:
        return "\n".join(read(path).decode("utf-8", "replace").splitlines()[-n:])
    except OSError as e:
        return f"({path}: {e})"


def write_file(m, path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:])
    except OSError:
        os.close(fd)
        raise
    try:
        os.close(fd)
    except OSError as e:
        raise BenchError(f"writing {os.path.relpath(path, m.mnt)} failed at close: {e}; "
                         f"events:\n{tail(m.p('events'))}")


def yload(path):
    try:
        doc = yaml.load(read(path), Loader=Loader)
    except (OSError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) else None


# ------------------------------------------------------------------------------ set-up

class Provider:
    """One provider in the run: its fake, its backend, its fleet and its share."""

    def __init__(self, ptype, cls):
        self.type = ptype
        self.cfg = PROVIDERS[ptype]
        self.cls = cls
        self.fake = None
        self.n = 0
        self.fleet = self.cfg["fleet"]
        self.vms = {}            # VM id -> snapshot dict (taken once all were idle)
        self.by_num = {}         # instance num -> VM id
        self.by_name = {}        # VM name -> VM id
        self.hosts_start = 0.0

    def start(self, n, spare, boot, term, latency):
        """The fake's API (its host pool is started later, by start_hosts)."""
        self.n = n
        self.fake = self.cls(keys=[self.cfg["key"]], hosts=n + spare, boot_seconds=boot,
                             terminate_seconds=term, **self.cfg["kw"](n))
        self.fake.start()
        self.cfg["after"](self.fake)
        self.fake.latency(".*", latency)   # every route, every method, until the end

    def start_hosts(self, n, spare):
        """Start the host pool now (not inside the first create), sized for n instances."""
        self.n = n
        self.fake.pool.n = n + spare       # not started yet: the size is still free
        t0 = time.monotonic()
        self.fake.pool.start()
        self.hosts_start = time.monotonic() - t0

    def stop(self):
        if self.fake is not None:
            try:
                self.fake.stop()
            except Exception as e:  # noqa: BLE001 (cleanup goes on)
                log(f"warning: stopping the {self.type} fake: {e}")

    def snapshot_vms(self):
        """Remember every VM of the fleet (id, name, created) while they are all there."""
        rx = re.compile(rf"^fleetfs-{PROJECT}-{re.escape(self.fleet)}-(\d+)-[a-z0-9]{{8}}$")
        for v in self.fake.vms():
            mt = rx.match(v["name"] or "")
            if mt and v["phase"] in ("booting", "running"):
                self.vms[v["id"]] = v
                self.by_num[int(mt.group(1))] = v["id"]
                self.by_name[v["name"]] = v["id"]


def wait_ready(m, provs, timeout):
    """Every backend's credentials valid and its offers cached (offers.state fresh, count > 0).
    Returns {type: None | reason it is not usable}."""
    end = time.monotonic() + timeout
    res = {p.type: "not checked" for p in provs}
    while True:
        for p in provs:
            if res[p.type] is None:
                continue
            st = yload(m.p("backends", p.type, "status")) or {}
            off = st.get("offers") if isinstance(st.get("offers"), dict) else {}
            if st.get("state") == "valid" and off.get("state") == "fresh" and \
                    (off.get("count") or 0) > 0:
                res[p.type] = None
            else:
                res[p.type] = (f"backend status: state {st.get('state')!r} "
                               f"({st.get('reason')!r}), offers {off.get('state')!r} "
                               f"count {off.get('count')!r} error {off.get('error')!r}")
        if all(v is None for v in res.values()) or time.monotonic() > end:
            return res
        try:
            os.listdir(m.p("offers"))      # a use of the offers: refresh what is missing
        except OSError:
            pass
        time.sleep(0.2)


def spec_text(p, n):
    return (f"type: fleet\nname: {p.fleet}\nnodes: {n}\nbackends: [{p.type}]\n"
            f"resources:\n  gpu: {p.cfg['gpu']}\n").encode()


# ------------------------------------------------------------------------------ phases

def phase_create(m, provs):
    """Write the specs, poll the fleets' status until every instance is idle. Returns the
    times (monotonic) and per instance: first seen provisioning, first seen idle."""
    t0 = time.monotonic()
    marks = {p.type: len(p.fake.requests) for p in provs}
    written = {}
    for p in provs:
        write_file(m, m.p("fleets", p.fleet + ".yml"), spec_text(p, p.n))
        written[p.type] = time.monotonic()
    log(f"  specs written in {(time.monotonic() - t0) * 1000:.0f} ms; waiting for "
        f"{sum(p.n for p in provs)} idle instances ...")
    seen = {p.type: {} for p in provs}       # num -> {status: first time seen}
    done_at = {}
    polls = 0
    last_log = t0
    while True:
        now = time.monotonic()
        polls += 1
        counts = {}
        for p in provs:
            st = yload(m.p("fleets", p.fleet, "status")) or {}
            for it in st.get("instances") or []:
                d = seen[p.type].setdefault(it.get("num"), {})
                d.setdefault(it.get("status"), now)
            idle = (st.get("actual") or {}).get("idle") or 0
            counts[p.type] = idle
            if idle == p.n and p.type not in done_at:
                done_at[p.type] = now
        if len(done_at) == len(provs):
            break
        if now - last_log > 5:
            last_log = now
            log(f"    {now - t0:5.1f} s: idle " +
                ", ".join(f"{k} {v}/{next(q.n for q in provs if q.type == k)}"
                          for k, v in counts.items()))
        if now - t0 > IDLE_TIMEOUT:
            p = next(q for q in provs if q.type not in done_at)
            raise BenchError(f"not every instance idle {IDLE_TIMEOUT:.0f} s after the spec "
                             f"writes ({counts}); fleets/{p.fleet}/status:\n"
                             f"{tail(m.p('fleets', p.fleet, 'status'), 40)}\nevents:\n"
                             f"{tail(m.p('fleets', p.fleet, 'events'), 20)}")
        time.sleep(POLL)
    end = time.monotonic()
    return {"t0": t0, "written": written, "end": end, "done_at": done_at, "seen": seen,
            "marks": marks, "marks_end": {p.type: len(p.fake.requests) for p in provs},
            "polls": polls}


def phase_reads(m, provs, readers, seconds):
    """R threads read instances/<n>/status of every instance, round robin, for `seconds`."""
    paths = [m.p("fleets", p.fleet, "instances", str(num), "status")
             for p in provs for num in range(p.n)]
    n = len(paths)
    res = [None] * readers
    errs = []
    barrier = threading.Barrier(readers + 1)
    deadline = [0.0]

    def reader(t):
        out = []
        try:
            barrier.wait()
            j = 0
            while time.monotonic() < deadline[0]:
                k = (t + j) % n
                a = time.perf_counter_ns()
                fd = os.open(paths[k], os.O_RDONLY)
                try:
                    chunks = []
                    while True:
                        b = os.read(fd, 65536)
                        if not b:
                            break
                        chunks.append(b)
                finally:
                    os.close(fd)
                z = time.perf_counter_ns()
                data = b"".join(chunks)
                i = data.find(b"\nchecked_at: ")
                c = data[i + 13:data.find(b"\n", i + 13)] if i >= 0 else None
                ok = data.startswith(b"status: idle\nreachable: true\n")
                out.append((k, (z - a) / 1e6, c, ok, None if ok else data[:300]))
                j += 1
        except Exception as e:  # noqa: BLE001 (reported, the bench fails)
            errs.append(f"reader {t}: {e!r}")
        res[t] = out

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    th = [threading.Thread(target=reader, args=(t,), daemon=True) for t in range(readers)]
    for x in th:
        x.start()
    marks = {p.type: len(p.fake.requests) for p in provs}
    t0 = time.monotonic()
    deadline[0] = t0 + seconds
    barrier.wait()
    limit = time.monotonic() + seconds + 60
    for x in th:
        x.join(max(0.1, limit - time.monotonic()))
    t1 = time.monotonic()
    sys.setswitchinterval(old)
    if any(x.is_alive() for x in th):
        raise BenchError("status readers still blocked 60 s after the window (a hung read?)")
    if errs:
        raise BenchError("status reads failed: " + "; ".join(errs[:5]))
    rows = [r for t in range(readers) for r in res[t]]
    return {"t0": t0, "t1": t1, "rows": rows, "n": n, "marks": marks,
            "marks_end": {p.type: len(p.fake.requests) for p in provs}}


def phase_terminate(m, provs):
    t0 = time.monotonic()
    marks = {p.type: len(p.fake.requests) for p in provs}
    for p in provs:
        os.unlink(m.p("fleets", p.fleet + ".yml"))
    gone_at = {}
    while True:
        now = time.monotonic()
        for p in provs:
            if p.type not in gone_at and not os.path.exists(m.p("fleets", p.fleet)):
                gone_at[p.type] = now
        if len(gone_at) == len(provs):
            break
        if now - t0 > GONE_TIMEOUT:
            p = next(q for q in provs if q.type not in gone_at)
            raise BenchError(f"fleets/{p.fleet} still there {GONE_TIMEOUT:.0f} s after rm of "
                             f"the spec; status:\n{tail(m.p('fleets', p.fleet, 'status'), 40)}")
        time.sleep(POLL)
    end = time.monotonic()
    live = {p.type: [v for v in p.fake.vms() if v["id"] in p.vms and
                     v["phase"] in ("booting", "running")] for p in provs}
    return {"t0": t0, "end": end, "gone_at": gone_at, "marks": marks, "live": live,
            "marks_end": {p.type: len(p.fake.requests) for p in provs}}


# ------------------------------------------------------------------------------ analysis

def vm_of(p, r):
    """The bench VM a request is about, or None (the provider's vm_of)."""
    return p.cfg["vm_of"](p, r)


def window(p, a, b):
    with p.fake.lock:
        return list(p.fake.requests[a:b])


def count_calls(p, reqs, phase, C, latency, boot, off, term_s=0.0):
    """{(method, template, sub): count} for a window, GETs of one VM split by what they met."""
    out = collections.Counter()
    vms = collections.defaultdict(set)      # (method, template) -> the VMs the calls were about
    get_m, get_t = p.cfg["get"]
    idle_at = C["idle_at"][p.type] if C else {}
    # terminate window: when each VM was terminated at the fake (its first accepted terminate
    # call handled, plus the terminating time when the fake shows one)
    term_done = {}
    for r in reqs:
        if (r.method, template(p.fake, r.method, r.route)) in p.cfg["terminate"] and \
                r.status is not None and 200 <= r.status < 300:
            vid = vm_of(p, r)
            if vid is not None and vid not in term_done:
                term_done[vid] = r.time + latency + (term_s if p.cfg["terminating"] else 0.0)
    for r in reqs:
        t = template(p.fake, r.method, r.route)
        sub = ""
        vid = vm_of(p, r)
        if vid is not None:
            vms[(r.method, t)].add(vid)
        if (r.method, t) == (get_m, get_t):
            if vid is None:
                sub = p.cfg["not_vm"](r)
            elif phase == "create":
                v = p.vms[vid]
                handled = r.time + latency
                running = v["created"] - off + boot
                num = next((k for k, x in p.by_num.items() if x == vid), None)
                if num is not None and idle_at.get(num) is not None and \
                        handled > idle_at[num] + 0.5:
                    sub = "check after idle"
                elif handled < running:
                    sub = "poll: VM still booting"
                else:
                    sub = "poll: VM running"
            elif r.status == 404 or (p.cfg["terminated_visible"] and vid in term_done and
                                     r.status == 200 and r.time + latency >= term_done[vid]):
                sub = "VM gone: confirmed" + (" (state terminated)" if r.status == 200 else "")
            else:
                sub = "VM still there"
        if r.status is not None and not (200 <= r.status < 300):
            sub = (sub + ", " if sub else "") + f"HTTP {r.status}"
        out[(r.method, t, sub)] += 1
    return out, vms


def savable(p, counted, regions):
    """Rows with (needed, savable, kind, why) per (method, template, sub)."""
    counts, vms = counted
    rows = []
    grouped = collections.Counter()
    for (meth, t, sub), c in counts.items():
        grouped[(meth, t)] += c
    left = {}       # (method, template) -> needed calls not yet given to a sub-row
    # sub-rows in order: the successful ones first (they get the needed calls), then failures
    for (meth, t, sub), c in sorted(counts.items(), key=lambda kv: (
            kv[0][1], kv[0][0], "HTTP" in kv[0][2], kv[0][2])):
        kind, why = RULES.get((p.type, meth, t), ("all", ""))
        if (meth, t) not in left:
            if kind == "once":
                left[(meth, t)] = min(grouped[(meth, t)], 1)
            elif kind == "region":
                left[(meth, t)] = min(grouped[(meth, t)], max(1, len(regions)))
            elif kind == "per_vm":
                left[(meth, t)] = min(grouped[(meth, t)], len(vms.get((meth, t), ())))
            elif kind == "none":
                left[(meth, t)] = 0
            else:
                left[(meth, t)] = grouped[(meth, t)]
        need = min(c, left[(meth, t)])
        left[(meth, t)] -= need
        rows.append({"method": meth, "route": t, "sub": sub, "count": c, "need": need,
                     "save": 0 if kind == "background" else c - need, "kind": kind,
                     "why": why})
    return rows


def timeline(p, C, latency, boot, off):
    """Per instance of p: (spec -> create arrival, create -> VM running, running -> the poll
    that found it, that poll's answer -> idle seen, total)."""
    reqs = window(p, C["marks"][p.type], C["marks_end"][p.type])
    creates, gets = {}, collections.defaultdict(list)
    get_m, get_t = p.cfg["get"]
    for r in reqs:
        t = template(p.fake, r.method, r.route)
        vid = vm_of(p, r)
        if vid is None:
            continue
        if (r.method, t) in p.cfg["create"] and r.status and 200 <= r.status < 300:
            creates[vid] = r.time
        elif (r.method, t) == (get_m, get_t) and r.status == 200:
            gets[vid].append(r.time)
    out = []
    t_spec = C["written"][p.type]
    for num, vid in sorted(p.by_num.items()):
        v = p.vms[vid]
        running = v["created"] - off + boot
        c = creates.get(vid)
        g = next((x for x in sorted(gets[vid]) if x + latency >= running), None)
        idle = C["idle_at"][p.type].get(num)
        if c is None or g is None or idle is None:
            continue
        out.append({"num": num, "queue": c - t_spec, "boot": running - c,
                    "lag": g - running, "ssh": idle - (g + latency), "total": idle - t_spec,
                    "create_at": c - C["t0"], "idle_at": idle - C["t0"]})
    return out


def med(xs):
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------------------ report

def fmt_s(x):
    return f"{x:.2f} s"


def report(R, M, args):
    provs = R["provs"]
    C, RD, T = R["create"], R["reads"], R["term"]
    lat, boot = args.latency, args.boot
    n_all = sum(p.n for p in provs)
    total_idle = C["end"] - C["t0"]

    # ---- time to idle
    tl = {p.type: timeline(p, C, lat, boot, R["off"]) for p in provs}
    all_tl = [x for v in tl.values() for x in v]
    probe = min((x["ssh"] for x in all_tl), default=float("nan"))
    # a perfect client: one-time set-up of the account or region (register the key / find
    # the VPC: look up + create, 2 round trips; AWS's security group: 4), then per instance:
    # create, boot, one GET at the end of the boot, the SSH probe; every instance in parallel.
    # The providers run at once: the run's ideal is the slowest provider's.
    ideal_of = {p.type: p.cfg["setup_rtt"] * lat + lat + boot + lat + probe for p in provs}
    ideal = max(ideal_of.values())
    setup_rtt = max(p.cfg["setup_rtt"] for p in provs)
    ratio = total_idle / ideal if ideal > 0 else float("nan")
    # fleetfs's own floor for one instance: its create step's calls in a row, the scheduler
    # pick-up, a first poll that finds the VM booting (boot > pick-up), the next POLL_S later
    # (when boot <= POLL_S), then the probe
    C_counts = {}
    T_counts = {}
    rows_c, rows_t = {}, {}
    for p in provs:
        rc = window(p, C["marks"][p.type], C["marks_end"][p.type])
        rt = window(p, T["marks"][p.type], T["marks_end"][p.type])
        regions = p.cfg["regions"](p, [r for r in rc if (r.method, template(
            p.fake, r.method, r.route)) in p.cfg["create"]])
        regions.discard(None)
        C_counts[p.type] = count_calls(p, rc, "create", C, lat, boot, R["off"])
        T_counts[p.type] = count_calls(p, rt, "terminate", None, lat, boot, R["off"],
                                       args.terminate_seconds)
        rows_c[p.type] = savable(p, C_counts[p.type], regions)
        rows_t[p.type] = savable(p, T_counts[p.type], set())

    # ---- reads
    rows = RD["rows"]
    win = RD["t1"] - RD["t0"]
    lats = sorted(r[1] for r in rows)
    bad = [r for r in rows if not r[3]]
    checks = collections.defaultdict(set)
    for r in rows:
        if r[2] is not None:
            checks[r[0]].add(r[2])
    ttl_rounds = win / CHECK_TTL
    read_calls = {}
    for p in provs:
        rr = window(p, RD["marks"][p.type], RD["marks_end"][p.type])
        get_m, get_t = p.cfg["get"]
        per = collections.Counter()
        at = collections.defaultdict(list)
        other = collections.Counter()
        for r in rr:
            t = template(p.fake, r.method, r.route)
            vid = vm_of(p, r) if (r.method, t) == (get_m, get_t) else None
            if vid is not None:
                per[vid] += 1
                at[vid].append(r.time)
            else:
                other[(r.method, t)] += 1
        gaps = [b - a for v in at.values() for a, b in zip(sorted(v), sorted(v)[1:])]
        tot = sum(per.values())
        read_calls[p.type] = {"total": tot, "per_ttl": tot / p.n / ttl_rounds,
                              "min": min((per[v] for v in p.vms), default=0),
                              "max": max((per[v] for v in p.vms), default=0),
                              "gaps": gaps, "other": other}
    all_reads_calls = sum(v["total"] for v in read_calls.values())
    per_ttl_all = all_reads_calls / n_all / ttl_rounds
    gaps_all = sorted(g for v in read_calls.values() for g in v["gaps"])
    early = sum(1 for g in gaps_all if g < CHECK_TTL)
    # a perfect TTL cache whose checks start at the window's start: one GET at 0, one per TTL
    perfect_ttl = (1 + int(win // CHECK_TTL)) / ttl_rounds

    # ---- terminate
    term_total = T["end"] - T["t0"]

    # ---- terminal
    print()
    print(f"fleetfs cloud bench: {n_all} instances over {', '.join(p.type for p in provs)}, "
          f"API latency {lat * 1000:.0f} ms, boot {boot:g} s, commit {M['commit']}")
    print(f"  spec writes -> all idle: {total_idle:.2f} s (ideal {ideal:.2f} s, "
          f"{ratio:.1f}x)")
    for p in provs:
        d = C['done_at'][p.type] - C['t0']
        print(f"    {p.type:13} {p.n:3} instances: all idle after {d:.2f} s (ideal "
              f"{ideal_of[p.type]:.2f} s, {d / ideal_of[p.type]:.1f}x)")
    for p in provs:
        cc = sum(x["count"] for x in rows_c[p.type])
        sc = sum(x["save"] for x in rows_c[p.type])
        tc = sum(x["count"] for x in rows_t[p.type])
        print(f"  {p.type:13} calls per instance: create..idle {cc / p.n:.2f} "
              f"(cache could save {sc / p.n:.2f}), terminate {tc / p.n:.2f}")
    print(f"  status reads, {args.readers} readers x {win:.1f} s: {len(rows) / win:.0f} reads/s, "
          f"p50 {pct(lats, 50):.2f} ms, p99 {pct(lats, 99):.2f} ms; provider GETs per "
          f"instance per {CHECK_TTL:g} s TTL: {per_ttl_all:.2f} (perfect {perfect_ttl:.2f}), "
          f"{early} sooner than the TTL")
    print(f"  rm of the specs -> every instance gone: {term_total:.2f} s")

    # ---- markdown
    md = []
    md.append("# fleetfs cloud fleet benchmark results\n")
    md.append("Produced by `bench/cloud_bench.py` (see [README.md](README.md#cloud-fleets-"
              "cloud_benchpy) for what each figure means); re-run with `make cloud-bench`.\n")
    md.append("| | |\n|---|---|")
    md.append(f"| date | {M['date']} |")
    md.append(f"| machine | {M['nproc']} cpus ({M['cpu']}), {M['mem']} RAM, kernel "
              f"`{M['kernel']}` |")
    md.append(f"| fleetfs commit | `{M['commit']}` ({M['version']}) |")
    md.append(f"| daemon | `./fleetfs -f`, FLEETFS_TIME_SCALE=1 (real intervals: provider "
              f"polls every {POLL_S:g} s, live-check TTL {CHECK_TTL:g} s), {WORKERS} engine "
              f"workers, 64 FUSE threads |")
    used = ", ".join(f"{p.type} (`tests/fakes/{p.cfg['module']}.py`, {p.n} instances, "
                     f"{p.n + R['spare']} hosts started in {p.hosts_start:.1f} s)"
                     for p in provs)
    md.append(f"| fakes | {used} |")
    for t, why in R["missing"].items():
        md.append(f"| left out | {t}: {why} |")
    md.append(f"| fake settings | every route answers after {lat * 1000:.0f} ms; VMs boot in "
              f"{boot:g} s, terminate in {args.terminate_seconds:g} s; each VM is a real sshd "
              f"host in a network namespace |")
    md.append(f"| specs | one fleet per provider, `nodes: N`, `backends: [<type>]`, gpu "
              + ", ".join(f"{p.type} `{p.cfg['gpu']}`" for p in provs)
              + (f"; DigitalOcean backend with `project_name: {DO_PROJECT}`"
                 if any(p.type == "digitalocean" for p in provs) else "")
              + (f"; AWS backend with an access key and `regions: [{AWS_REGION}]`, offers "
                 f"from a gpuhunt `aws.csv` (g5.xlarge, t3.small), the fake's default VPC"
                 if any(p.type == "aws" for p in provs) else "") + " |")
    md.append(f"| load average (1/5/15 min) | {M['load']} at the start, {R['load_end']} at "
              f"the end |")
    md.append(f"| daemon stop | {R['daemon_end']} |")
    md.append(f"| total bench time | {R['total']:.0f} s |\n")

    md.append("## Summary\n")
    md.append("| figure | value | target |\n|---|---:|---|")
    md.append(f"| {n_all} instances, spec writes to all idle | **{total_idle:.2f} s** | |")
    md.append(f"| ideal (perfect client, see below) | {ideal:.2f} s | |")
    md.append(f"| measured / ideal | **{ratio:.1f}x** | |")
    for p in provs:
        d = C["done_at"][p.type] - C["t0"]
        md.append(f"| {p.type}: {p.n} instances all idle / ideal | {d:.2f} s / "
                  f"{ideal_of[p.type]:.2f} s = **{d / ideal_of[p.type]:.1f}x** | |")
    for p in provs:
        cc = sum(x["count"] for x in rows_c[p.type])
        sc = sum(x["save"] for x in rows_c[p.type])
        tc = sum(x["count"] for x in rows_t[p.type])
        st = sum(x["save"] for x in rows_t[p.type])
        md.append(f"| {p.type}: API calls per instance, create..idle / terminate | "
                  f"{cc / p.n:.2f} / {tc / p.n:.2f} | |")
        md.append(f"| {p.type}: calls per instance a cache could have saved | "
                  f"{(sc + st) / p.n:.2f} ({sc + st} calls) | 0: "
                  f"{'PASS' if sc + st == 0 else 'FAIL'} |")
    md.append(f"| status reads, {args.readers} readers for {win:.0f} s | "
              f"{len(rows) / win:.0f} reads/s | |")
    md.append(f"| status read latency p50 / p99 / max | {pct(lats, 50):.2f} / "
              f"{pct(lats, 99):.2f} / {lats[-1]:.2f} ms | |")
    md.append(f"| provider GET calls per instance per {CHECK_TTL:g} s TTL during the reads | "
              f"**{per_ttl_all:.2f}** (a perfect TTL: {perfect_ttl:.2f}) | ~1 |")
    md.append(f"| GETs of an instance sooner than {CHECK_TTL:g} s after its previous one | "
              f"{early} of {len(gaps_all)} | 0: {'PASS' if early == 0 else 'FAIL'} |")
    md.append(f"| rm of the specs to every instance gone | {term_total:.2f} s | |")
    left = sum(len(v) for v in T["live"].values())
    md.append(f"| VMs still running at the provider after that | {left} | 0: "
              f"{'PASS' if left == 0 else 'FAIL'} |\n")

    # ---- time to idle
    md.append("## Time to all idle\n")
    md.append(f"The clock starts before the first spec write and stops at the first poll "
              f"(every {POLL * 1000:.0f} ms) of the {len(provs)} `fleets/<name>/status` files "
              f"that shows "
              f"every instance idle. The per-instance timeline comes from the fakes' request "
              f"logs (arrival times; each answer comes {lat * 1000:.0f} ms later) and from the "
              f"VMs' creation times.\n")
    md.append("| provider | instances | all idle after | ideal | first create call | last create "
              "call | first idle | median idle |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in provs:
        x = tl[p.type]
        ca = sorted(y["create_at"] for y in x)
        ia = sorted(y["idle_at"] for y in x)
        d = C['done_at'][p.type] - C['t0']
        head = f"| {p.type} | {p.n} | {d:.2f} s | {ideal_of[p.type]:.2f} s " \
               f"({d / ideal_of[p.type]:.1f}x) |"
        md.append(head + (f" {ca[0]:.2f} s | {ca[-1]:.2f} s | {ia[0]:.2f} s | {med(ia):.2f} s |"
                          if x else " ? | ? | ? | ? |"))
    md.append("")
    md.append("Where an instance's time goes (median / max over the instances of each provider; "
              "seconds):\n")
    md.append("| provider | spec write to its create call | create call to VM running | VM "
              "running to the poll that saw it | that poll's answer to idle (SSH probe, "
              "queue, commit) | total |\n|---|---:|---:|---:|---:|---:|")
    for p in provs + [None]:
        x = tl[p.type] if p else all_tl
        if not x:
            continue
        cols = []
        for k in ("queue", "boot", "lag", "ssh", "total"):
            v = [y[k] for y in x]
            cols.append(f"{med(v):.2f} / {max(v):.2f}")
        md.append(f"| {p.type if p else '**all**'} | " + " | ".join(cols) + " |")
    md.append("")
    md.append("**The ideal.** A perfect client sets up what the account or region needs once ("
              + "; ".join(f"{p.type}: {p.cfg['setup']}, {p.cfg['setup_rtt']} round trips"
                          for p in provs)
              + "), then for every instance at once: one create call, the boot, one GET "
              "exactly when the boot ends, and the SSH probe. The providers run at the same "
              "time, so the run's ideal is the slowest provider's:\n")
    for k in sorted({p.cfg["setup_rtt"] for p in provs}):
        who = ", ".join(p.type for p in provs if p.cfg["setup_rtt"] == k)
        md.append(f"    {who}: {k} x {lat:g} s (set-up) + {lat:g} s (create) + {boot:g} s "
                  f"(boot) + {lat:g} s (one poll) + {probe:.2f} s (SSH probe) = "
                  f"{k * lat + lat + boot + lat + probe:.2f} s\n")
    md.append(f"The SSH probe figure is the fastest 'poll answer to idle' of any instance (the "
              f"probe with no queueing: libssh2 connect, host key pinning, key install, "
              f"hardware probe, commit). Measured: {total_idle:.2f} s, **{ratio:.1f}x** the "
              f"ideal.\n")

    # the gap
    worst = max(all_tl, key=lambda y: y["total"]) if all_tl else None
    lag = [y["lag"] for y in all_tl] or [float("nan")]
    queue = [y["queue"] for y in all_tl] or [float("nan")]
    ssh = [y["ssh"] for y in all_tl] or [float("nan")]
    calls = [(r.time - C["t0"]) for p in provs
             for r in window(p, C["marks"][p.type], C["marks_end"][p.type])]
    n_calls = len(calls)
    n_save = sum(x["save"] for p in provs for x in rows_c[p.type])
    booting = sum(x["count"] for p in provs for x in rows_c[p.type]
                  if x["sub"].startswith("poll: VM still booting"))
    polls_run = sum(x["count"] for p in provs for x in rows_c[p.type]
                    if x["sub"].startswith("poll: VM running"))

    def in_flight(a, b):
        """Mean provider calls in flight over [a, b] (each call taken as [arrival, +lat])."""
        if b <= a:
            return float("nan")
        return sum(max(0.0, min(b, t + lat) - max(a, t)) for t in calls) / (b - a)
    md.append("**The gap**, from the timeline above, the request logs and the engine's code:\n")
    md.append(f"- *{WORKERS} engine workers, every call in series.* A row's step makes its "
              f"provider calls one after the other on one of {WORKERS} workers (a create step: "
              f"its set-up calls, the create, and on DigitalOcean the project assignment). The "
              f"create phase made {n_calls} calls ({n_save} of them savable, next section); at "
              f"{lat * 1000:.0f} ms each that is {n_calls * lat:.1f} worker-seconds, so "
              f"{WORKERS} workers need at least {n_calls * lat / WORKERS:.2f} s for the calls "
              f"alone, plus the {n_all} SSH probes. On average {in_flight(0, total_idle):.1f} "
              f"calls were in flight (at most {WORKERS}). The last create call went out "
              f"{max(queue):.2f} s after the spec writes (median {med(queue):.2f} s); the ideal "
              f"client makes all {n_all} at once.")
    npolls = booting + polls_run
    md.append(f"- *Polls.* The engine made {npolls} polls of provisioning VMs in this window: "
              f"{booting} found the VM still booting"
              + (f" (each then waits the {POLL_S:g} s poll interval for the next)"
                 if booting else "") +
              f", {polls_run} found it running. 'VM running to the poll "
              f"that saw it': median {med(lag):.2f} s, max {max(lag):.2f} s. "
              + ("No poll met a booting VM: a created row's first poll is queued by a later "
                 f"scan (every {SCAN_S:g} s) behind every row still waiting in the one FIFO "
                 f"queue, and with {n_all} instances that wait outlasted the {boot:g} s boot: "
                 f"the queue, not the {POLL_S:g} s interval, decided when a VM was seen running."
                 if not booting else
                 f"A row's first poll comes at the next scan after its create, before the "
                 f"{boot:g} s boot is over; the next poll comes {POLL_S:g} s later."))
    vt = [p for p in provs if p.type == "vultr"]
    if vt and tl["vultr"]:
        ca = sorted(y["create_at"] for y in tl["vultr"])
        span = ca[-1] - ca[0]
        during, before = in_flight(ca[0] - lat, ca[-1]), in_flight(0, ca[0] - lat)
        md.append(f"- *Vultr creates are serialized* by a process-wide mutex held around "
                  f"`GET /vpcs` (backends/vultr.c `vpc_lock`, taken by every create that "
                  f"does not find the VPC id remembered): its "
                  f"{len(ca)} create calls went out over {span:.2f} s "
                  f"({span / max(1, len(ca) - 1):.2f} s apart; one VPC listing is "
                  f"{lat:g} s). A worker waiting for that mutex holds a row and makes no call: "
                  f"while they went out, {during:.1f} calls were in flight on average, "
                  f"{before:.1f} before"
                  + (": fewer calls while more rows were due, i.e. workers held by the lock."
                     if during < before else "."))
    aw = next((p for p in provs if p.type == "aws"), None)
    if aw is not None:
        rc = window(aw, C["marks"]["aws"], C["marks_end"]["aws"])
        runs = sorted(r.time for r in rc if r.route == "ec2/RunInstances")
        setup = collections.Counter(r.route for r in rc
                                    if RULES.get(("aws", r.method, r.route), ("",))[0] ==
                                    "region")
        starts = [r.time for r in rc if r.route in setup] + runs
        if runs:
            first, start = runs[0], min(starts)
            misses = setup.get("ec2/DescribeImages", 0)
            total = sum(setup.values())
            per = total / misses if misses else 0.0
            md.append(f"- *AWS creates set the region up in series, and all at once.* Before "
                      f"its RunInstances a create step looks up the image, the zones, the "
                      f"VPC, its subnets and route tables and the security group, and makes "
                      f"the group and its rules when missing, one call after the other "
                      f"(backends/aws.c aws_create). The first set-up call went out "
                      f"{start - C['written']['aws']:.2f} s after the spec write (its rows "
                      f"queue behind those of the specs written before it), the first "
                      f"RunInstances {first - start:.2f} s after that. The answers are "
                      f"remembered per region only once a create has them, so {misses} of the "
                      f"{aw.n} creates (one per DescribeImages call) started before that and "
                      f"made the whole set-up themselves, {per:.1f} calls each "
                      f"({per * lat:.1f} s at {lat * 1000:.0f} ms), holding {misses} of the "
                      f"{WORKERS} workers meanwhile: {total} set-up calls in all ("
                      + ", ".join(f"{k.split('/')[1]} {v}" for k, v in sorted(setup.items()))
                      + f"), where a perfect client makes each once per region, the look-ups "
                      f"in parallel ({aw.cfg['setup_rtt']} round trips).")
    md.append(f"- *The SSH step.* The poll that finds the VM running runs the SSH probe in the "
              f"same step; 'poll answer to idle' ranges {min(ssh):.2f}-{max(ssh):.2f} s against "
              f"the {probe:.2f} s fastest (the probes' key exchanges share "
              f"{M['nproc']} CPUs with the {n_all} sshds and the fakes).")
    if worst:
        md.append(f"- The slowest instance ({worst['total']:.2f} s after its spec write): "
                  f"{worst['queue']:.2f} s to its create call, {worst['boot']:.2f} s create to "
                  f"running, {worst['lag']:.2f} s until a poll saw it, {worst['ssh']:.2f} s to "
                  f"idle.")
    floor = lat + SCAN_S + POLL_S + lat + probe
    md.append(f"- *The {POLL_S:g} s poll interval* is what a small fleet pays: the first poll "
              f"comes right after the create (at the next {SCAN_S:g} s scan) and finds a "
              f"{boot:g} s boot unfinished, the next comes {POLL_S:g} s later. One instance "
              f"alone needs about {lat:g} s (create, plus its set-up calls) + up to "
              f"{SCAN_S:g} s + {POLL_S:g} s + {lat:g} s (the poll) + {probe:.2f} s (probe) = "
              f"{floor:.2f} s, {floor / ideal:.1f}x the ideal, however idle the engine.")
    md.append("")

    # ---- API calls
    md.append("## API calls per instance lifecycle\n")
    md.append("Every request in each fake's log, by method and route template (`{id}` stands "
              "for any id; the AWS fake logs each call as `POST <service>/<Action>`, the "
              "instance ids in the form body), in two windows: *create..idle* (from the spec "
              "writes to all idle) and *terminate* (from the `rm` of the specs until every "
              "fleet directory is gone, "
              "which is after the provider confirmed every VM gone). *Per instance* divides by "
              "the provider's instances. GETs of one VM are split by what they met. *Needed* is "
              "what a client with a cache would still have made; *savable* is the rest: the "
              "calls a cache (or one request in flight instead of several) could have "
              "saved. Offers refreshes and credential checks are not per instance and are "
              "shown as background. Target: no savable call.\n")
    for p in provs:
        md.append(f"### {p.type} ({p.n} instances)\n")
        md.append("| window | call | count | per instance | needed | savable | note |\n"
                  "|---|---|---:|---:|---:|---:|---|")
        for wname, rws in (("create..idle", rows_c[p.type]), ("terminate", rows_t[p.type])):
            for x in rws:
                call = f"`{x['method']} {x['route']}`" + (f" ({x['sub']})" if x["sub"] else "")
                note = ("background: " + x["why"]) if x["kind"] == "background" else \
                    ("**cache**: " + x["why"] if x["save"] else "")
                md.append(f"| {wname} | {call} | {x['count']} | {x['count'] / p.n:.2f} | "
                          f"{x['need']} | {'**' + str(x['save']) + '**' if x['save'] else 0} "
                          f"| {note} |")
            tot = sum(x["count"] for x in rws)
            sv = sum(x["save"] for x in rws)
            md.append(f"| {wname} | **total** | {tot} | **{tot / p.n:.2f}** | "
                      f"{sum(x['need'] for x in rws)} | {sv} | |")
        md.append("")
    md.append("Every call the engine makes runs in series inside a row's step, so each one "
              f"also costs {lat * 1000:.0f} ms of a worker and of the instance's time to idle.\n")

    # ---- reads
    md.append(f"## Instance `status` reads ({args.readers} readers)\n")
    nchk = [len(checks[k]) for k in range(RD["n"])]
    slow = sum(1 for x in lats if x > SLOW_MS)
    md.append(f"{args.readers} threads read `fleets/<fleet>/instances/<n>/status` of all "
              f"{RD['n']} idle instances, reader t's j-th read of instance (t + j) mod "
              f"{RD['n']}, for {win:.1f} s. The phase started {R['settle']:.1f} s after the "
              f"last instance went idle. A read of an instance whose last check is older than "
              f"{CHECK_TTL:g} s queues a check (the provider GET, then SSH) and waits for it up "
              f"to {CHECK_WAIT:g} s; readers of one instance share the check; at most 8 "
              f"readers wait at once, the others get the last known state.\n")
    md.append("| figure | value |\n|---|---:|")
    md.append(f"| reads | {len(rows)} ({len(rows) / win:.0f}/s) |")
    md.append(f"| latency p50 / p90 / p99 / max | {pct(lats, 50):.2f} / {pct(lats, 90):.2f} / "
              f"{pct(lats, 99):.2f} / {lats[-1]:.2f} ms |")
    md.append(f"| reads over {SLOW_MS:g} ms (waited for a check) | {slow} |")
    md.append(f"| checks per instance seen by the reads (distinct `checked_at`) | "
              f"{min(nchk)}-{max(nchk)} (window / TTL = {ttl_rounds:.1f}) |")
    md.append(f"| reads whose content was not `status: idle`, `reachable: true` | {len(bad)} |")
    for p in provs:
        rc = read_calls[p.type]
        other = ", ".join(f"`{m_} {t_}` {c}" for (m_, t_), c in sorted(rc["other"].items()))
        md.append(f"| {p.type}: `{' '.join(p.cfg['get'])}` of the instances in the window | "
                  f"{rc['total']} ({rc['min']}-{rc['max']} per instance); "
                  f"**{rc['per_ttl']:.2f} per instance per TTL**"
                  + (f"; other calls: {other}" if other else "") + " |")
    md.append(f"| all providers: GET calls per instance per {CHECK_TTL:g} s TTL | "
              f"**{per_ttl_all:.2f}** |")
    if gaps_all:
        md.append(f"| time between two GETs of one instance: min / median / max | "
                  f"{gaps_all[0]:.2f} / {med(gaps_all):.2f} / {gaps_all[-1]:.2f} s |")
    md.append("")
    md.append(f"Provider calls per TTL = the GETs of those instances during the window / "
              f"instances / (window / {CHECK_TTL:g} s). Each live check of an idle cloud "
              f"instance asks the provider first (core/cloud.c `running_step`), then checks over "
              f"SSH; the TTL makes that at most one check per instance per {CHECK_TTL:g} s, "
              f"however many readers. Every check was stale when the window opened, so a "
              f"perfect TTL gives one GET at the start and one per {CHECK_TTL:g} s after it: "
              f"{1 + int(win // CHECK_TTL)} in {win:.0f} s, {perfect_ttl:.2f} per TTL by this "
              f"formula. The time between two GETs of one instance is the direct measure: at "
              f"least {CHECK_TTL:g} s (the TTL runs from the end of the previous check) means "
              f"one provider call per TTL; less would be checks the readers did not share.\n")
    if bad:
        md.append("First unexpected read:\n\n```\n" +
                  bad[0][4].decode("utf-8", "replace").rstrip() + "\n```\n")

    # ---- terminate
    md.append("## Termination\n")
    md.append("| provider | rm of the spec to fleet gone | ideal |\n|---|---:|---:|")
    for p in provs:
        # terminate call, then one GET that finds the VM gone: Lambda and DigitalOcean show a
        # terminating VM for terminate_seconds first
        ide = lat + (args.terminate_seconds if p.cfg["terminating"] else 0) + lat
        md.append(f"| {p.type} | {T['gone_at'][p.type] - T['t0']:.2f} s | {ide:.2f} s |")
    md.append("")
    md.append(f"The engine asks the provider to terminate, then GETs the VM; a VM still "
              f"terminating is polled again {POLL_S:g} s later. The ideal is the terminate call "
              f"and one GET once the provider is done (Vultr deletes at once; Lambda and "
              f"DigitalOcean show the VM terminating for {args.terminate_seconds:g} s, AWS "
              f"shows it shutting-down for {args.terminate_seconds:g} s, then terminated). VMs "
              f"still booting or running at the fakes afterwards: {left}.\n")

    md.append("## Savable calls in this run, by cause\n")
    causes = collections.OrderedDict()
    for p in provs:
        for wname, rws in (("create..idle", rows_c[p.type]), ("terminate", rows_t[p.type])):
            for x in rws:
                if x["save"]:
                    k = (p.type, wname, x["why"])
                    causes.setdefault(k, [0, set()])
                    causes[k][0] += x["save"]
                    causes[k][1].add(f"`{x['method']} {x['route']}`")
    if not causes:
        md.append("None: every call was one a cache could not have saved.\n")
    for (t, wname, why), (n, routes) in causes.items():
        pn = next(p.n for p in provs if p.type == t)
        md.append(f"- **{t}, {wname}: {n} calls ({n / pn:.2f} per instance)**, "
                  f"{', '.join(sorted(routes))}: {why}.")
    if causes:
        md.append("")
    if early:
        md.append(f"Live checks: {early} provider GET(s) of an instance came sooner than "
                  f"{CHECK_TTL:g} s after its previous one (shortest gap {gaps_all[0]:.2f} s): "
                  f"a check the readers did not share.\n")

    md.append("## Reading the numbers\n")
    md.append(f"- The fakes run on the same {M['nproc']}-cpu machine as fleetfs and all "
              f"{n_all + R['spare'] * len(provs)} sshd hosts; the SSH probes' key exchanges "
              f"compete for the CPUs. The API latency is injected ({lat * 1000:.0f} ms before "
              f"each request is handled), so the call counts, not the CPUs, decide most of the "
              f"provider time.")
    md.append(f"- FLEETFS_TIME_SCALE=1: the daemon's real intervals. The {POLL_S:g} s poll and "
              f"the {SCAN_S:g} s scheduler scan are what a real provider sees.")
    md.append("- Request times are arrival times at the fake; the fake waits the latency, then "
              "handles the call, so a VM's `created` is one latency after its create call "
              "arrived.")
    md.append("")
    text = "\n".join(md)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"\nwrote {args.out}")


# ------------------------------------------------------------------------------ main

def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def split(n, k):
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true",
                    help="a quick run for CI: one instance per provider, 20 ms API latency, "
                         "0.5 s boots, 4 readers for 1 s (results go to --out, not to "
                         "bench/CLOUD_RESULTS.md unless named)")
    ap.add_argument("--instances", type=int, default=50, help="instances in all (default 50)")
    ap.add_argument("--latency", type=float, default=0.2,
                    help="seconds every API call waits at the fakes (default 0.2)")
    ap.add_argument("--boot", type=float, default=2.0, help="VM boot seconds (default 2)")
    ap.add_argument("--terminate-seconds", type=float, default=1.0,
                    help="VM terminating -> terminated seconds (default 1)")
    ap.add_argument("--readers", type=int, default=64, help="status reader threads (default 64)")
    ap.add_argument("--read-seconds", type=float, default=10.0,
                    help="how long the readers read (default 10)")
    ap.add_argument("--spare", type=int, default=2, help="extra hosts per fake (default 2)")
    ap.add_argument("--providers", default=",".join(ORDER),
                    help="comma-separated subset of " + ",".join(ORDER))
    ap.add_argument("--out", default=None,
                    help="markdown results file (default bench/CLOUD_RESULTS.md; with --small "
                         "a file in the temporary directory)")
    args = ap.parse_args()
    want = [t.strip() for t in args.providers.split(",") if t.strip()]
    if args.small:
        args.instances, args.latency, args.boot = len(want), 0.02, 0.5
        args.terminate_seconds, args.readers, args.read_seconds, args.spare = 0.5, 4, 1.0, 0
    if args.out is None:
        args.out = (os.path.join(tempfile.gettempdir(), "fleetfs-cloud-bench-small.md")
                    if args.small else os.path.join(REPO, "bench", "CLOUD_RESULTS.md"))
    for t in want:
        if t not in PROVIDERS:
            ap.error(f"--providers: unknown {t!r} (known: {', '.join(ORDER)})")
    if args.instances < len(want) or args.readers < 1 or args.read_seconds <= 0:
        ap.error("--instances must be at least one per provider; --readers >= 1; "
                 "--read-seconds > 0")
    if os.geteuid() != 0:
        ap.error("needs root (the fakes' VMs are sshd hosts in network namespaces)")
    if not os.access(BIN, os.X_OK):
        ap.error(f"{BIN} not found: run `make` first")
    for tool in ("fusermount3", "ip", "ssh", "openssl"):
        if not shutil.which(tool):
            ap.error(f"{tool} is needed")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    t_start = time.monotonic()
    M = benchlib.machine_info()
    base = tempfile.mkdtemp(prefix="fleetfs-cloudbench-", dir="/var/tmp")
    provs, missing, started = [], {}, []
    m = None
    R = {"spare": args.spare, "off": time.time() - time.monotonic()}
    ok = False
    try:
        for t in want:
            cls, why = load_fake(t)
            if cls is None:
                missing[t] = why
                log(f"{t}: left out ({why})")
            else:
                provs.append(Provider(t, cls))
        if not provs:
            raise BenchError("no provider fake could be imported")
        shares = split(args.instances, len(provs))
        log(f"starting the fakes' APIs ({args.latency * 1000:.0f} ms on every route) ...")
        for p, n in zip(provs, shares):
            started.append(p)
            p.start(n, args.spare, args.boot, args.terminate_seconds, args.latency)
            log(f"  {p.type}: {p.fake.url}")
        catalog = os.path.join(base, "catalog")
        os.makedirs(catalog)
        for p in provs:
            if p.cfg["catalog"]:
                for name, text in p.cfg["catalog"](p.fake).items():
                    with open(os.path.join(catalog, name), "w") as f:
                        f.write(text)
        env = {"FLEETFS_TIME_SCALE": "1", "FLEETFS_CA_BUNDLE": provs[0].fake.ca_path}
        for t in ALL_TYPES:
            env["FLEETFS_ENDPOINT_" + t.upper()] = "https://127.0.0.1:9/" + t
        env.update(AWS_CLOSED_ENV)
        for p in provs:
            env.update(p.cfg["env"](p.fake))
        # this machine's AWS keys, profile and endpoints: none of them
        m = Mount(base, opts=[f"catalog={catalog}"], drop=("GPUHUNT_CATALOG_DIR", "AWS_*"),
                  env=dict(env, GPUHUNT_CATALOG_URL="http://127.0.0.1:9/v3"), project=PROJECT)
        m.start()
        log(f"mounted fleetfs on {m.mnt}; configuring {len(provs)} backends ...")
        pub = read(m.p("ssh", "id_rsa.pub"))     # the project key, made now, not in a create
        if not pub.startswith(b"ssh-"):
            raise BenchError(f"projects/{PROJECT}/ssh/id_rsa.pub: {pub[:80]!r}")
        for p in provs:
            os.makedirs(m.p("backends", p.type), exist_ok=True)
            write_file(m, m.p("backends", p.type, "config.yml"),
                       p.cfg["config"].format(key=p.cfg["key"]).encode())
        t0 = time.monotonic()
        ready = wait_ready(m, provs, READY_TIMEOUT)
        for p in list(provs):
            if ready[p.type] is not None:
                missing[p.type] = f"the daemon did not accept the backend: {ready[p.type]}"
                log(f"{p.type}: left out ({missing[p.type]})")
                provs.remove(p)
        if not provs:
            raise BenchError("no backend became usable: " + "; ".join(missing.values()))
        log(f"  backends valid and offers cached after {time.monotonic() - t0:.1f} s")
        names = os.listdir(m.p("offers"))
        for p in provs:
            if not any(x.startswith(p.type + ":") and x.endswith(":" + p.cfg["expect"])
                       for x in names):
                raise BenchError(f"no offer {p.type}:*:{p.cfg['expect']} in offers/ "
                                 f"({len(names)} offers)")
        shares = split(args.instances, len(provs))   # the share of a provider left out
        for p, n in zip(provs, shares):                # goes to the others
            p.start_hosts(n, args.spare)
            log(f"  {p.type}: {n} instances, {n + args.spare} hosts started in "
                f"{p.hosts_start:.2f} s")

        log(f"create: {args.instances} instances "
            f"({', '.join(f'{p.type} {p.n}' for p in provs)}) ...")
        C = phase_create(m, provs)
        C["idle_at"] = {p.type: {num: d.get("idle") for num, d in C["seen"][p.type].items()}
                        for p in provs}
        R["create"] = C
        log(f"  all idle after {C['end'] - C['t0']:.2f} s")
        for p in provs:
            p.snapshot_vms()
            if len(p.vms) != p.n:
                raise BenchError(f"{p.type}: {len(p.vms)} VMs of fleet {p.fleet} at the fake, "
                                 f"expected {p.n}: {[v['name'] for v in p.fake.vms()]}")
        settle = C["end"] + CHECK_TTL + 1 - time.monotonic()
        if settle > 0:
            log(f"waiting {settle:.1f} s so that every check is older than the TTL ...")
            time.sleep(settle)
        R["settle"] = time.monotonic() - C["end"]
        log(f"status reads: {args.readers} readers for {args.read_seconds:g} s ...")
        R["reads"] = phase_reads(m, provs, args.readers, args.read_seconds)
        log(f"  {len(R['reads']['rows'])} reads")
        log("terminate: rm of the specs ...")
        R["term"] = phase_terminate(m, provs)
        log(f"  every fleet gone after {R['term']['end'] - R['term']['t0']:.2f} s")
        if m.proc.poll() is not None:
            raise BenchError(f"fleetfs exited {m.proc.returncode}; log:\n{m.log()}")
        errs = [f"{p.type}: {e}" for p in provs for e in p.fake.errors]
        if errs:
            raise BenchError("a fake failed (its bug, or a request it could not handle):\n"
                             + "\n".join(errs[:3]))
        ok = True
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
    except BenchError as e:
        log(f"bench failed: {e}")
        if m is not None:
            log(f"fleetfs log tail:\n{m.log(1500)}")
    finally:
        rc, how = None, ""
        if m is not None:
            m.unmount()
        for p in started:
            p.stop()
        if m is not None:
            rc, how = m.reap()
        if mount_fstype(os.path.join(base, "mnt")) is None:
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"warning: still mounted, not removing {base}")
    if ok and rc != 0:
        log(f"fleetfs exited {rc} at unmount")
        ok = False
    if not ok:
        return 1
    R["provs"] = provs
    R["missing"] = missing
    R["daemon_end"] = how
    R["total"] = time.monotonic() - t_start
    R["load_end"] = loadavg()
    report(R, M, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
