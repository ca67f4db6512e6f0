#!/usr/bin/env python3
"""Seed scripts for the provider fuzz targets: the fakes' own answers (tests/fakes), in the
order the backend asks for them.

    make build/bkcall && python3 tests/fuzz/mkseeds.py

For each provider and operation, runs build/bkcall against the provider's fake (started
here, without SSH hosts: a VM's host is a stand-in address), records every answer the fake
sends (status, Retry-After, body) and writes them as one input of the provider's fuzz target
in fuzzlib.h's script format to tests/fuzz/corpus/<target>/fake-<op>. Run it again when a
fake or a backend's calls change.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakes"))

import aws_fake  # noqa: E402
import do_fake  # noqa: E402
import lambda_fake  # noqa: E402
import vultr_fake  # noqa: E402

PUB = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx3b1k2bGFtYmRhZnV6emtleWZsZWV0ZnNmdXp6aW5n "
       "fleetfs")
# the catalog of tests/fuzz/fuzzlib.c
HEADER = ("instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,"
          "disk_size,gpu_vendor,flags,cpu_arch,provider_data\n")
CATALOG = {
    "lambdalabs": "gpu_1x_a10,us-west-1,0.75,30,200,1,A10,24,False,1400,nvidia,,,\n"
                  "gpu_1x_a10,us-east-1,0.75,30,200,1,A10,24,False,1400,nvidia,,,\n",
    "aws": "t3.small,us-east-1,0.0208,2,2,0,,,False,,,,,\n"
           "g5.xlarge,us-east-1,1.006,4,16,1,A10G,24,False,,nvidia,,,\n"
           "g5.xlarge,us-east-1,0.4,4,16,1,A10G,24,True,,nvidia,,,\n",
}


class Host:
    """A stand-in for a tests/hosts SSH host: an address only."""
    addr = "203.0.113.7"
    name = "h0"


def tap(f):
    """Start recording f's answers; returns the list they go to."""
    got = []
    f.pool.acquire = lambda pubkeys: Host()
    f.pool.release = lambda host: None
    f.capacity_left = lambda instance_type, region: 1
    send = f._send

    def record(h, reply):
        body = reply.body
        if isinstance(body, (dict, list)):
            data = json.dumps(body)
        elif body is None:
            data = ""
        else:
            data = body if isinstance(body, str) else bytes(body).decode("utf-8", "replace")
        ra = reply.headers.get("Retry-After")
        got.append(f"=== {reply.status}{' Retry-After: ' + str(ra) if ra else ''}\n{data}\n")
        return send(h, reply)
    f._send = record
    return got


def run(f, got, target, name, typ, config, env, head, args, pre=""):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "config.yml")
        with open(cfg, "w") as fp:
            fp.write(config)
        pub = os.path.join(tmp, "id.pub")
        with open(pub, "w") as fp:
            fp.write(PUB + "\n")
        cat = os.path.join(tmp, "catalog")
        os.mkdir(cat)
        for prov, rows in CATALOG.items():
            with open(os.path.join(cat, prov + ".csv"), "w") as fp:
                fp.write(HEADER + rows)
        e = dict(os.environ, FLEETFS_CA_BUNDLE=f.ca_path, FLEETFS_TIME_SCALE="0.01",
                 FLEETFS_CATALOG=cat, **env)
        argv = [os.path.join(ROOT, "build", "bkcall"), typ, "fz", cfg] + \
            [a.replace("@PUB", pub) for a in args]
        del got[:]
        p = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=120)
        out = p.stdout.strip()
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "fake-" + name), "w") as fp:
            fp.write(pre + head + "\n" + "".join(got))
        return json.loads(out) if out.startswith("{") else {}


def ops(f, target, typ, config, env, offer, tag="", pre=""):
    got = tap(f)

    def r(name, head, *args):
        return run(f, got, target, tag + name, typ, config, env, head, list(args), pre)
    r("check", "check", "check")
    r("offers", "offers", "offers")
    vm = r("create", f"create {offer['instance']} {offer['region']}", "create",
           json.dumps(offer), "fleetfs-main-gpu-0-a1b2c3d4", "@PUB").get("vm") or {}
    vid, bd = vm.get("id", "0"), vm.get("backend_data", "")
    r("get", f"get {vid} {bd}", "get", vid, bd)
    r("list", "list", "list")
    r("terminate", f"terminate {vid} {bd}", "terminate", vid, bd)
    r("get-gone", f"get {vid} {bd}", "get", vid, bd)
    with_bad = config.replace("api_key: k", "api_key: bad").replace("secret_key: ", "secret_key: x")
    run(f, got, target, tag + "refused", typ, with_bad, env, "check", ["check"], pre)


def main():
    gpu = {"gpus": {"vendor": "nvidia", "name": "A10", "memory_mib": 24576, "count": 1},
           "price": 0.75, "cpus": 30, "cpu_arch": "x86", "memory_mib": 204800,
           "disk_mib": 102400, "spot": False}
    key = "creds:\n  type: api_key\n  api_key: k\n"
    with lambda_fake.LambdaFake(keys=["k"], hosts=0, boot_seconds=0) as f:
        ops(f, "lambda", "lambda", "type: lambda\n" + key,
            {"FLEETFS_ENDPOINT_LAMBDA": f.url},
            dict(gpu, backend="fz", type="lambda", region="us-west-1", instance="gpu_1x_a10"))
    with do_fake.DigitalOceanFake(keys=["k"], hosts=0, boot_seconds=0) as f:
        ops(f, "digitalocean", "digitalocean", "type: digitalocean\n" + key,
            {"FLEETFS_ENDPOINT_DIGITALOCEAN": f.url},
            dict(gpu, backend="fz", type="digitalocean", region="tor1",
                 instance="gpu-h100x1-80gb"), tag="do-")
    with do_fake.AMDDevCloudFake(keys=["k"], hosts=0, boot_seconds=0) as f:
        ops(f, "digitalocean", "amddevcloud", "type: amddevcloud\n" + key,
            {"FLEETFS_ENDPOINT_AMDDEVCLOUD": f.url},
            dict(gpu, backend="fz", type="amddevcloud", region="atl1",
                 instance="gpu-mi300x1-192gb",
                 gpus={"vendor": "amd", "name": "MI300X", "memory_mib": 196608, "count": 1}),
            tag="amd-", pre="+")
    with vultr_fake.VultrFake(keys=["k"], hosts=0, boot_seconds=0) as f:
        plan = vultr_fake.DEFAULT_PLANS[-1]
        plan_id = plan["id"] if isinstance(plan, dict) else plan
        ops(f, "vultr", "vultr", "type: vultr\n" + key, {"FLEETFS_ENDPOINT_VULTR": f.url},
            dict(gpu, backend="fz", type="vultr", region="ewr", instance=plan_id))
    akid, secret = aws_fake.DEFAULT_KEY
    with aws_fake.AwsFake(keys=[aws_fake.DEFAULT_KEY], hosts=0, boot_seconds=0) as f:
        ops(f, "aws", "aws",
            f"type: aws\ncreds:\n  type: access_key\n  access_key: {akid}\n"
            f"  secret_key: {secret}\nregions: [us-east-1]\n",
            {"AWS_ENDPOINT_URL": f.url},
            dict(gpu, backend="fz", type="aws", region="us-east-1", instance="g5.xlarge",
                 cpus=4, memory_mib=16384,
                 gpus={"vendor": "nvidia", "name": "A10G", "memory_mib": 24576, "count": 1}))


if __name__ == "__main__":
    main()
