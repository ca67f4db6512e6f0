"""The AWS provider (backends/aws.c, awsapi.c, awscreds.c, sigv4.c) against the AWS fake
(tests/fakes/aws_fake.py: EC2 + STS + IAM + Service Quotas, SigV4 verified), one call at a
time through build/bkcall, over HTTPS with a test CA. The endpoint is found the AWS SDKs' way
(AWS_ENDPOINT_URL). The fake's VMs are real sshd hosts in network namespaces: a launched
instance is reached with the real ssh client as ubuntu@<ip> with the key of its cloud-init
user data. Every request is recorded by the fake: actions and parameters are asserted
exactly. Tests that launch VMs need root."""
import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
from aws_fake import AwsFake  # noqa: E402
import cloudapi  # noqa: E402
from cloudapi import BKCALL, _bkcall, keypair, need_root  # noqa: E402,F401

AKID = "AKIAFLEETFSTEST00001"
SECRET = "fleetfsTESTsecret/K7MDENG+bPxRfiCYEXAMPLE"
TMP_AKID = "ASIAFLEETFSTEST00002"
TMP_SECRET = "fleetfsTEMPsecret/abcdefghijklmnopqrstuv"
TOKEN = "IQoJb3JpZ2luX2VjEFleetfsSessionToken" + "x" * 300
SECRETS = (SECRET, TMP_SECRET, TOKEN)
SCALE = "0.01"
NAME = "fleetfs-main-gpu-0-a1b2c3d4"
CPU = {"backend": "aws", "type": "aws", "region": "us-east-1", "instance": "t3.small",
       "price": 0.0208, "spot": False, "cpus": 2, "cpu_arch": "x86", "memory_mib": 2048,
       "disk_mib": 102400, "gpus": {"vendor": "", "name": "", "memory_mib": 0, "count": 0}}
GPU = dict(CPU, instance="g5.xlarge", price=1.006, cpus=4, memory_mib=16384,
           gpus={"vendor": "nvidia", "name": "A10G", "memory_mib": 24576, "count": 1})
HEADER = ("instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,"
          "disk_size,gpu_vendor,flags,cpu_arch,provider_data\n")


pool = cloudapi.host_pool(3, "ubuntu")


@pytest.fixture
def fake(pool):
    f = AwsFake(keys=[(AKID, SECRET), (TMP_AKID, TMP_SECRET, TOKEN)], pool=pool,
                boot_seconds=0.3, terminate_seconds=0.3, terminated_linger=1)
    yield from cloudapi.serving(f, pool)


@pytest.fixture
def bk(fake, tmp_path, keypair):
    """bk(op, *args, config=None, extra="", env={}) -> what bkcall printed (+ exit, stderr).
    config: the whole config.yml (default: the access key, us-east-1); extra: appended."""
    pubfile = tmp_path / "id_rsa.pub"
    pubfile.write_text(keypair[1] + "\n")

    def call(op, *args, config=None, extra="", env=None, secret=SECRET):
        cfg = tmp_path / "config.yml"
        cfg.write_text((config if config is not None else
                        f"type: aws\ncreds:\n  type: access_key\n  access_key: {AKID}\n"
                        f"  secret_key: {secret}\nregions: [us-east-1]\n") + extra)
        e = dict(os.environ, AWS_ENDPOINT_URL=fake.url, FLEETFS_CA_BUNDLE=fake.ca_path,
                 FLEETFS_TIME_SCALE=SCALE, FLEETFS_CATALOG="none")
        e.update(env or {})
        return cloudapi.run_bkcall("aws", cfg, op, args, e, pubfile, SECRETS,
                                   timeout=90)

    return call


def actions(fake, service=None):
    return [c.get("Action") for c in fake.calls(service=service)]


def launch(bk, fake, offer=CPU, name=NAME, **kw):
    """create, then wait until running with an address; returns (create's vm, get's vm)."""
    r = bk("create", offer, name, **kw)
    assert r["rc"] == 0, r
    vm = r["vm"]
    g = cloudapi.wait_state(lambda *a: bk(*a, **kw), vm["id"], ("running",), vm["backend_data"])
    if not g["vm"]["ip"]:
        g = cloudapi.wait_state(lambda *a: bk(*a, **kw), vm["id"], ("running",),
                                vm["backend_data"])
    return vm, g["vm"]


# ------------------------------------------------------------------ credentials


def test_check_access_key(bk, fake):
    r = bk("check")
    assert r["rc"] == 0, r
    assert actions(fake) == ["GetCallerIdentity"]
    # STS is signed for us-east-1 whatever the regions
    assert fake.calls()[0] == {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
    # the body as the AWS SDKs write it: Action, then Version
    assert fake.requests[0].body == "Action=GetCallerIdentity&Version=2011-06-15"


def test_check_refusals(bk, fake):
    r = bk("check", secret="wrong" + SECRET[5:])
    assert r["errno"] == "EACCES" and "SignatureDoesNotMatch" in r["err"], r
    r = bk("check", config=f"type: aws\ncreds:\n  type: access_key\n  access_key: AKIANOSUCHKEY0000000\n"
                           f"  secret_key: {SECRET}\n")
    assert r["errno"] == "EACCES" and "InvalidClientTokenId" in r["err"], r
    # a clock 10 minutes off: AWS says the signature expired
    fake.clock = lambda: time.time() + 600
    r = bk("check")
    assert r["errno"] == "EACCES" and "expired" in r["err"].lower(), r
    fake.clock = time.time
    assert bk("check")["rc"] == 0


def test_check_iam_profile(bk, fake):
    extra = "iam_instance_profile: fleetfs-nodes\n"
    r = bk("check", extra=extra)
    assert r["errno"] == "EINVAL" and "fleetfs-nodes" in r["err"], r
    fake.add_instance_profile("fleetfs-nodes")
    assert bk("check", extra=extra)["rc"] == 0
    assert actions(fake)[-1] == "GetInstanceProfile"


def test_check_networks(bk, fake):
    """With vpc_name, vpc_ids or private subnets configured, the check resolves the
    network of every region, as dstack's configurator does."""
    r = bk("check", extra="vpc_name: work\n")
    assert r["errno"] == "EINVAL" and "us-east-1" in r["err"] and "work" in r["err"], r
    vpc = fake.add_vpc("us-east-1", name="work")
    r = bk("check", extra="vpc_name: work\n")
    assert r["errno"] == "EINVAL" and "no public subnet" in r["err"], r
    fake.add_subnet("us-east-1", vpc, "us-east-1b", kind="public")
    assert bk("check", extra="vpc_name: work\n")["rc"] == 0
    # the default VPC has no private subnet with egress
    r = bk("check", extra="public_ips: false\n")
    assert r["errno"] == "EINVAL" and "NAT" in r["err"], r
    # vpc_ids for a region, default_vpcs false for the others
    r = bk("check", extra=f"vpc_ids:\n  us-east-1: {vpc}\ndefault_vpcs: false\n")
    assert r["rc"] == 0, r
    r = bk("check", extra="vpc_ids:\n  us-east-1: vpc-0123456789abcdef0\n")
    assert r["errno"] == "EINVAL" and "vpc-0123456789abcdef0" in r["err"], r


def cfg_default(extra=""):
    return "type: aws\ncreds:\n  type: default\nregions: [us-east-1]\n" + extra


def test_default_chain_env(bk, fake, tmp_path):
    env = {"AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET}
    assert bk("check", config=cfg_default(), env=env)["rc"] == 0
    # a temporary key needs its session token, which is signed and sent
    env = {"AWS_ACCESS_KEY_ID": TMP_AKID, "AWS_SECRET_ACCESS_KEY": TMP_SECRET}
    r = bk("check", config=cfg_default(), env=env)
    assert r["errno"] == "EACCES", r
    env["AWS_SESSION_TOKEN"] = TOKEN
    assert bk("check", config=cfg_default(), env=env)["rc"] == 0
    # nothing found: the reason lists what was tried
    r = bk("check", config=cfg_default())
    assert r["errno"] == "EACCES" and "AWS_ACCESS_KEY_ID" in r["err"], r


def test_default_chain_profiles(bk, fake, tmp_path):
    creds = tmp_path / "credentials"
    conf = tmp_path / "config"
    creds.write_text(f"[default]\naws_access_key_id = AKIANOSUCHKEY0000000\n"
                     f"aws_secret_access_key = x\n\n[work]\naws_access_key_id = {AKID}\n"
                     f"aws_secret_access_key = {SECRET}\n")
    conf.write_text(f"[profile temp]\nregion = eu-west-1\naws_access_key_id = {TMP_AKID}\n"
                    f"aws_secret_access_key = {TMP_SECRET}\naws_session_token = {TOKEN}\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(conf)}
    r = bk("check", config=cfg_default(), env=env)
    assert r["errno"] == "EACCES" and "InvalidClientTokenId" in r["err"], r   # [default]
    assert bk("check", config=cfg_default(), env=dict(env, AWS_PROFILE="work"))["rc"] == 0
    assert bk("check", config=cfg_default(), env=dict(env, AWS_PROFILE="temp"))["rc"] == 0
    r = bk("check", config=cfg_default(), env=dict(env, AWS_PROFILE="nope"))
    assert r["rc"] != 0 and "nope" in r["err"], r


class _Imds(http.server.BaseHTTPRequestHandler):
    """IMDSv2: a session token by PUT, then the role's credentials with that token."""
    token = "imds-session-token-1"
    role = "fleetfs-node-role"
    seen = []

    def log_message(self, *a):
        pass

    def _send(self, code, body, ctype="text/plain"):
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_PUT(self):
        self.seen.append(("PUT", self.path))
        if self.path == "/latest/api/token" and \
                self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._send(200, self.token)
        return self._send(400, "")

    def do_GET(self):
        self.seen.append(("GET", self.path))
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            return self._send(401, "")
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            return self._send(200, self.role)
        if self.path == base + self.role:
            exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            return self._send(200, json.dumps({
                "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": TMP_AKID,
                "SecretAccessKey": TMP_SECRET, "Token": TOKEN, "Expiration": exp}),
                "application/json")
        return self._send(404, "")


def test_default_chain_imds(bk, fake):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Imds)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        env = {"AWS_EC2_METADATA_DISABLED": "false",
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{srv.server_port}"}
        r = bk("check", config=cfg_default(), env=env)
        assert r["rc"] == 0, r
        assert ("PUT", "/latest/api/token") in _Imds.seen
        assert ("GET", "/latest/meta-data/iam/security-credentials/fleetfs-node-role") in \
            _Imds.seen
    finally:
        srv.shutdown()
        srv.server_close()


# ------------------------------------------------------------------ offers


def catalog(tmp_path):
    rows = [
        "t3.small,us-east-1,0.0208,2,2.0,0,,,False,,,,x86,",
        "t3.small,eu-west-1,0.0228,2,2.0,0,,,False,,,,x86,",
        "t3.small,ap-south-1,0.0224,2,2.0,0,,,False,,,,x86,",      # not in regions
        "m7g.large,us-east-1,0.0816,2,8.0,0,,,False,,,,arm,",       # not a dstack family
        "g5.xlarge,us-east-1,1.006,4,16.0,1,A10G,24.0,False,,nvidia,,x86,",
        "g5.xlarge,us-east-1,0.4,4,16.0,1,A10G,24.0,True,,nvidia,,x86,",
        "g5.xlarge,eu-west-1,1.123,4,16.0,1,A10G,24.0,False,,nvidia,,x86,",
        "p5.48xlarge,us-east-1,98.32,192,2048.0,8,H100,80.0,False,,nvidia,,x86,",
        "p4d.24xlarge,eu-west-1,32.77,96,1152.0,8,A100,40.0,False,,nvidia,,x86,",
    ]
    d = tmp_path / "catalog"
    d.mkdir()
    (d / "aws.csv").write_text(HEADER + "\n".join(rows) + "\n")
    return str(d)


def test_offers_with_quotas(bk, fake, tmp_path):
    fake.set_quota("us-east-1", "L-417A185B", 96)     # P: 96 vCPUs < p5.48xlarge's 192
    fake.set_quota("eu-west-1", "L-417A185B", 0)      # P: none
    fake.set_quota("eu-west-1", "L-DB2E81BA", None)   # G: AWS does not tell
    cfg = (f"type: aws\ncreds:\n  type: access_key\n  access_key: {AKID}\n"
           f"  secret_key: {SECRET}\nregions: [us-east-1, eu-west-1]\n")
    r = bk("offers", config=cfg, env={"FLEETFS_CATALOG": catalog(tmp_path)})
    assert r["rc"] == 0, r
    got = {(o["region"], o["instance"], o["spot"]): o["availability"] for o in r["offers"]}
    assert got == {
        ("us-east-1", "t3.small", False): "available",
        ("eu-west-1", "t3.small", False): "available",
        ("us-east-1", "g5.xlarge", False): "available",
        ("us-east-1", "g5.xlarge", True): "unknown",       # spot quotas are not checked
        ("eu-west-1", "g5.xlarge", False): "unknown",
        ("us-east-1", "p5.48xlarge", False): "no_quota",
        ("eu-west-1", "p4d.24xlarge", False): "no_quota",
    }, got
    sq = fake.calls(service="servicequotas")
    assert sorted((c["ServiceCode"], c["QuotaCode"]) for c in sq) == sorted(
        [("ec2", q) for q in ("L-1216C47A", "L-417A185B", "L-DB2E81BA")] * 2)
    # Service Quotas denied (an IAM policy without it): offers stay, availability unknown
    fake.deny("servicequotas")
    r = bk("offers", config=cfg, env={"FLEETFS_CATALOG": str(tmp_path / "catalog")})
    assert r["rc"] == 0, r
    assert {o["availability"] for o in r["offers"]} == {"unknown"}
    # refused credentials: the catalog's offers, availability unknown
    fake.allow("servicequotas")
    r = bk("offers", config=cfg.replace(SECRET, "x" + SECRET[1:]),
           env={"FLEETFS_CATALOG": str(tmp_path / "catalog")})
    assert r["rc"] == 0 and {o["availability"] for o in r["offers"]} == {"unknown"}, r


# ------------------------------------------------------------------ create, get, terminate


def params_of(fake, action, i=-1):
    return fake.calls(action)[i]


def tags_of(params, n=1):
    tags, k = {}, 1
    while f"TagSpecification.{n}.Tag.{k}.Key" in params:
        tags[params[f"TagSpecification.{n}.Tag.{k}.Key"]] = \
            params[f"TagSpecification.{n}.Tag.{k}.Value"]
        k += 1
    return tags


def test_create_login_terminate(bk, fake, keypair):
    need_root()
    extra = "tags:\n  team: ml\n  owner: someone-else\n  'aws:bad': x\n"
    env = {"BKCALL_FLEET_TAGS": "cost=123,team=other,bad tag!=1"}
    vm, g = launch(bk, fake, extra=extra, env=env)
    assert vm["name"] == NAME and vm["username"] == "ubuntu" and vm["region"] == "us-east-1"
    data = json.loads(vm["backend_data"])
    assert data["region"] == "us-east-1" and data["zone"] == "us-east-1a" and data["public_ips"]
    # what was launched: the newest available Canonical image, the project's security group,
    # the root disk of the offer, the public address, the key in cloud-init, a client token
    p = params_of(fake, "RunInstances")
    img = fake.image("us-east-1", p["ImageId"])
    assert img["owner"] == "099720109477" and "ubuntu-jammy-22.04-amd64-server" in img["name"]
    assert img["id"] == fake.image_id("us-east-1", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-"
                                                   "amd64-server-20240607")
    assert p["InstanceType"] == "t3.small" and p["MinCount"] == "1" and p["MaxCount"] == "1"
    assert p["BlockDeviceMapping.1.Ebs.VolumeSize"] == "100"
    assert p["BlockDeviceMapping.1.Ebs.VolumeType"] == "gp2"
    assert p["BlockDeviceMapping.1.DeviceName"] == "/dev/sda1"
    assert p["NetworkInterface.1.AssociatePublicIpAddress"] == "true"
    assert p["NetworkInterface.1.DeviceIndex"] == "0"
    assert p["NetworkInterface.1.InterfaceType"] == "interface"        # t3: no EFA
    assert "NetworkInterface.2.DeviceIndex" not in p
    assert len(p["ClientToken"]) <= 64
    assert "InstanceMarketOptions.MarketType" not in p and "Placement.GroupName" not in p
    ud = base64.b64decode(p["UserData"]).decode()
    assert ud.startswith("#cloud-config") and keypair[1] in yaml.safe_load(ud)[
        "ssh_authorized_keys"]
    assert tags_of(p) == {"Name": NAME, "owner": "fleetfs", "fleetfs_project": "main",
                          "fleetfs_fleet": "bkcall", "fleetfs_instance": "0", "fleetfs_user": "ubuntu",
                          "team": "ml",
                          "cost": "123"}
    sg = fake.calls("CreateSecurityGroup")[0]
    assert sg["GroupName"] == "fleetfs_security_group_main"
    assert sg["GroupDescription"] == "Made by fleetfs: SSH in, all traffic within"
    # the form as the AWS SDKs write it (Action, Version, the parameters; a space '+'), so
    # the emulators that rebuild it so before checking the signature take it too
    body = next(q.body for q in fake.requests if q.route == "ec2/CreateSecurityGroup")
    assert body.startswith("Action=CreateSecurityGroup&Version=2016-11-15&"), body
    assert "&GroupDescription=Made+by+fleetfs%3A+SSH+in%2C+all+traffic+within" in body, body
    assert p["NetworkInterface.1.SecurityGroupId.1"] == fake.instance(vm["id"])["sg_ids"][0]
    assert actions(fake, "ec2")[:11] == [
        "DescribeImages", "DescribeAvailabilityZones", "DescribeInstanceTypes", "DescribeVpcs",
        "DescribeSubnets",
        "DescribeRouteTables", "DescribeSecurityGroups", "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RunInstances"]
    gid = fake.instance(vm["id"])["sg_ids"][0]
    ing = params_of(fake, "AuthorizeSecurityGroupIngress")
    assert (ing["IpPermissions.1.IpProtocol"], ing["IpPermissions.1.FromPort"],
            ing["IpPermissions.1.ToPort"], ing["IpPermissions.1.IpRanges.1.CidrIp"]) == \
        ("tcp", "22", "22", "0.0.0.0/0")
    assert (ing["IpPermissions.2.IpProtocol"], ing["IpPermissions.2.Groups.1.GroupId"]) == \
        ("-1", gid)
    egr = params_of(fake, "AuthorizeSecurityGroupEgress")
    assert (egr["IpPermissions.1.IpProtocol"], egr["IpPermissions.1.Groups.1.GroupId"]) == \
        ("-1", gid) and "IpPermissions.2.IpProtocol" not in egr
    # it runs, with the host's address, and takes the project key
    assert g["ip"] == fake.instance(vm["id"])["host_addr"]
    r = cloudapi.ssh(g["ip"], keypair[0], "ubuntu")
    assert r.returncode == 0, r.stderr
    # listed as ours, with what get and terminate need
    r = bk("list")
    assert [v["id"] for v in r["vms"]] == [vm["id"]]
    assert json.loads(r["vms"][0]["backend_data"])["region"] == "us-east-1"
    # a second create (another process: nothing remembered) finds the group complete
    n = len(fake.calls())
    r = bk("create", CPU, NAME.replace("a1b2", "e5f6"))
    assert r["rc"] == 0, r
    assert actions(fake)[n:] == [
        "DescribeImages", "DescribeAvailabilityZones", "DescribeInstanceTypes", "DescribeVpcs",
        "DescribeSubnets", "DescribeRouteTables", "DescribeSecurityGroups", "RunInstances"]
    # terminate: asked, then gone; again: still fine
    for v in (vm, r["vm"]):
        assert bk("terminate", v["id"], v["backend_data"])["rc"] == 0
        cloudapi.wait_state(bk, v["id"], ("terminated", "ENOENT"), v["backend_data"])
    assert bk("terminate", vm["id"], vm["backend_data"])["rc"] == 0
    time.sleep(1.2)   # past the fake's linger: AWS forgets it
    assert bk("terminate", vm["id"], vm["backend_data"])["rc"] == 0


def test_get_before_visible(bk, fake):
    """An id AWS does not show yet, right after its create, is pending; later, gone."""
    now = time.time()
    fresh = json.dumps({"region": "us-east-1", "public_ips": True, "created_at": now})
    old = json.dumps({"region": "us-east-1", "public_ips": True, "created_at": now - 3600})
    r = bk("get", "i-0123456789abcdef0", fresh)
    assert r["rc"] == 0 and r["vm"]["state"] == "pending", r
    r = bk("get", "i-0123456789abcdef0", old)
    assert r["errno"] == "ENOENT", r
    r = bk("get", "i-0123456789abcdef0", "{}")
    assert r["errno"] == "EINVAL", r


def test_gpu_image_and_os_images(bk, fake):
    need_root()
    vm, _ = launch(bk, fake, offer=GPU)
    img = fake.image("us-east-1", params_of(fake, "RunInstances")["ImageId"])
    assert img["owner"] == "898082745236" and img["state"] == "available"
    # the newest *available* one (a newer one is still pending)
    assert img["name"].endswith("20240611"), img["name"]
    bk("terminate", vm["id"], vm["backend_data"])
    # os_images: the config's images and users
    fake.add_image("us-east-1", "team-gpu-2024-06", owner="self")
    extra = "os_images:\n  nvidia:\n    name: team-gpu-*\n    user: ec2-user\n"
    r = bk("create", GPU, NAME.replace("a1b2", "9999"), extra=extra)
    assert r["rc"] == 0 and r["vm"]["username"] == "ec2-user", r
    assert tags_of(params_of(fake, "RunInstances"))["fleetfs_user"] == "ec2-user"
    g = bk("get", r["vm"]["id"], r["vm"]["backend_data"])
    assert g["vm"]["username"] == "ec2-user", g        # after a crash too: from the tag
    p = params_of(fake, "DescribeImages")
    assert p["Owner.1"] == "self" and p["Filter.1.Value.1"] == "team-gpu-*"
    bk("terminate", r["vm"]["id"], r["vm"]["backend_data"])
    # no cpu image in os_images: the CPU offer cannot be had
    r = bk("create", CPU, NAME, extra=extra)
    assert r["errno"] == "EINVAL" and "os_images" in r["err"], r


def test_private_subnets(bk, fake, keypair):
    need_root()
    vpc = fake.add_vpc("us-east-1", name="work")
    isolated = fake.add_subnet("us-east-1", vpc, "us-east-1a", kind="isolated")
    nat = fake.add_subnet("us-east-1", vpc, "us-east-1b", kind="nat")
    public = fake.add_subnet("us-east-1", vpc, "us-east-1c", kind="public")
    extra = "vpc_name: work\npublic_ips: false\n"
    vm, g = launch(bk, fake, extra=extra)
    p = params_of(fake, "RunInstances")
    assert p["NetworkInterface.1.SubnetId"] == nat != isolated
    assert p["NetworkInterface.1.AssociatePublicIpAddress"] == "false"
    inst = fake.instance(vm["id"])
    assert inst["public_ip"] is None and g["ip"] == inst["private_ip"]
    assert cloudapi.ssh(g["ip"], keypair[0], "ubuntu").returncode == 0
    bk("terminate", vm["id"], vm["backend_data"])
    # public_ips: the public subnet of the same VPC, by vpc_ids
    r = bk("create", CPU, NAME.replace("a1b2", "7777"),
           extra=f"vpc_ids:\n  us-east-1: {vpc}\n")
    assert r["rc"] == 0, r
    assert params_of(fake, "RunInstances")["NetworkInterface.1.SubnetId"] == public
    bk("terminate", r["vm"]["id"], r["vm"]["backend_data"])


def test_spot(bk, fake):
    need_root()
    vm, _ = launch(bk, fake, offer=dict(GPU, spot=True, price=0.4))
    p = params_of(fake, "RunInstances")
    assert p["InstanceMarketOptions.MarketType"] == "spot"
    assert p["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "one-time"
    assert p["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "terminate"
    data = json.loads(vm["backend_data"])
    assert data["spot_request_id"].startswith("sir-")
    assert bk("terminate", vm["id"], vm["backend_data"])["rc"] == 0
    assert actions(fake)[-2:] == ["CancelSpotInstanceRequests", "TerminateInstances"]
    assert params_of(fake, "CancelSpotInstanceRequests")["SpotInstanceRequestId.1"] == \
        data["spot_request_id"]


def test_placement_group(bk, fake):
    need_root()
    env = {"BKCALL_PLACEMENT_GROUP": "fleetfs-main-train"}
    a, _ = launch(bk, fake, offer=GPU, env=env)
    assert params_of(fake, "CreatePlacementGroup") == {
        "Action": "CreatePlacementGroup", "Version": "2016-11-15",
        "GroupName": "fleetfs-main-train", "Strategy": "cluster",
        "TagSpecification.1.ResourceType": "placement-group",
        "TagSpecification.1.Tag.1.Key": "owner", "TagSpecification.1.Tag.1.Value": "fleetfs",
        "TagSpecification.1.Tag.2.Key": "fleetfs_project",
        "TagSpecification.1.Tag.2.Value": "main"}
    assert params_of(fake, "RunInstances")["Placement.GroupName"] == "fleetfs-main-train"
    zone = json.loads(a["backend_data"])["zone"]
    # the second member joins the first one's zone, even when that zone is out of capacity
    # (it does not go elsewhere: the group lives in one zone)
    fake.set_capacity("g5.xlarge", zone, 1)
    r = bk("create", GPU, NAME.replace("a1b2", "bbbb"), env=env)
    assert r["errno"] == "ENOSPC", r
    zone_of = {s["id"]: s["az"] for s in fake.vpcs("us-east-1")["subnets"]}
    tried = [zone_of[c["NetworkInterface.1.SubnetId"]] for c in fake.calls("RunInstances")]
    assert tried[1:] == [zone], tried
    fake.set_capacity("g5.xlarge", zone, None)
    b, _ = launch(bk, fake, offer=GPU, name=NAME.replace("a1b2", "cccc"), env=env)
    assert json.loads(b["backend_data"])["zone"] == zone
    # terminated members: the last one's get deletes the group
    assert fake.placement_groups("us-east-1")["fleetfs-main-train"]["strategy"] == "cluster"
    for v in (a, b):
        bk("terminate", v["id"], v["backend_data"])
    for v in (a, b):
        cloudapi.wait_state(bk, v["id"], ("terminated", "ENOENT"), v["backend_data"])
    bk("get", a["id"], a["backend_data"])
    assert "DeletePlacementGroup" in actions(fake)
    assert "fleetfs-main-train" not in fake.placement_groups("us-east-1")


def test_capacity_moves_to_next_zone(bk, fake):
    need_root()
    fake.set_capacity("t3.small", "us-east-1a", 0)
    fake.set_offered("t3.small", "us-east-1b", False)
    vm, _ = launch(bk, fake)
    runs = fake.calls("RunInstances")
    subnets = {s["id"]: s["az"] for s in fake.vpcs("us-east-1")["subnets"]}
    assert [subnets[c["NetworkInterface.1.SubnetId"]] for c in runs] == \
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert len({c["ClientToken"] for c in runs}) == 3       # one request per subnet
    assert json.loads(vm["backend_data"])["zone"] == "us-east-1c"
    bk("terminate", vm["id"], vm["backend_data"])
    # every zone full: no capacity, AWS's reason kept
    fake.set_capacity("t3.small", "us-east-1c", 0)
    r = bk("create", CPU, NAME.replace("a1b2", "dddd"))
    assert r["errno"] == "ENOSPC" and "InsufficientInstanceCapacity" in r["err"], r


def test_invalid_request_fails_the_offer(bk, fake):
    """InvalidParameterValue (an unknown type, say) fails the offer: no other zone tried."""
    r = bk("create", dict(CPU, instance="t3.nosuchsize"), NAME)
    assert r["errno"] == "EINVAL" and "InvalidParameterValue" in r["err"], r
    assert fake.count_calls("RunInstances") == 1


def test_retried_create_same_token(bk, fake):
    """The answer to RunInstances is lost (the client times out): the HTTP client sends it
    again with the same ClientToken, and AWS answers the same instance: one VM."""
    need_root()
    fake.latency("ec2/RunInstances", 2.0, times=1)
    r = bk("create", CPU, NAME, env={"FLEETFS_HTTP_TIMEOUT_MS": "1000"})
    assert r["rc"] == 0, r
    runs = fake.calls("RunInstances")
    assert len(runs) == 2 and runs[0]["ClientToken"] == runs[1]["ClientToken"]
    assert fake.wait_for(lambda: len([v for v in fake.vms()
                                      if v["phase"] in ("booting", "running")]) >= 1, 5)
    time.sleep(1.5)   # the slow first request has been served by now
    live = [v for v in fake.vms() if v["phase"] in ("booting", "running")]
    assert [v["id"] for v in live] == [r["vm"]["id"]], live
    bk("terminate", r["vm"]["id"], r["vm"]["backend_data"])


def test_unknown_outcome_then_found_by_name(bk, fake):
    """No answer at all (every attempt times out): the outcome is unknown (ETIMEDOUT, so the
    engine looks the name up instead of creating again) and list finds the VM by its Name."""
    need_root()
    fake.latency("ec2/RunInstances", 1.5)
    r = bk("create", CPU, NAME, env={"FLEETFS_HTTP_TIMEOUT_MS": "500"})
    assert r["errno"] == "ETIMEDOUT", r
    fake.clear_faults()
    assert fake.wait_for(lambda: any(v["name"] == NAME for v in fake.vms()), 10)
    r = bk("list")
    found = [v for v in r["vms"] if v["name"] == NAME]
    assert len(found) == 1, r
    live = [v for v in fake.vms() if v["phase"] in ("booting", "running")]
    assert len(live) == 1, live       # the retries carried one token: one VM
    bk("terminate", found[0]["id"], found[0]["backend_data"])


def test_terminate_retries(bk, fake):
    need_root()
    vm, _ = launch(bk, fake)
    fake.fail("ec2/TerminateInstances", 503, times=2)          # retried by the HTTP client
    assert bk("terminate", vm["id"], vm["backend_data"])["rc"] == 0
    fake.fail("ec2/TerminateInstances", 503, times=10)
    r = bk("terminate", vm["id"], vm["backend_data"])
    assert r["rc"] != 0 and r["errno"] != "ENOENT", r           # the engine tries again later
    fake.clear_faults()
    cloudapi.wait_state(bk, vm["id"], ("terminated", "ENOENT"), vm["backend_data"])


def test_list_own_pages_and_filters(bk, fake):
    for i in range(7):
        fake.create_behind_the_back(f"fleetfs-main-old-{i}-abcd1234", "t3.small", "us-east-1",
                                    tags={"owner": "fleetfs"}, host=False)
    fake.create_behind_the_back("fleetfs-main-x-0-abcd1234", "t3.small", "eu-west-1",
                                tags={"owner": "fleetfs"}, host=False)
    fake.create_behind_the_back("someone-elses", "t3.small", "us-east-1",
                                tags={"owner": "fleetfs"}, host=False)
    fake.create_behind_the_back("fleetfs-main-untagged-0-abcd1234", "t3.small", "us-east-1",
                                host=False)
    cfg = (f"type: aws\ncreds:\n  type: access_key\n  access_key: {AKID}\n"
           f"  secret_key: {SECRET}\nregions: [us-east-1, eu-west-1]\n")
    r = bk("list", config=cfg)
    assert r["rc"] == 0, r
    assert sorted(v["name"] for v in r["vms"]) == sorted(
        [f"fleetfs-main-old-{i}-abcd1234" for i in range(7)] + ["fleetfs-main-x-0-abcd1234"])
    assert {json.loads(v["backend_data"])["region"] for v in r["vms"]} == \
        {"us-east-1", "eu-west-1"}
    for c in fake.calls("DescribeInstances"):
        assert c["Filter.1.Name"] == "tag:owner" and c["Filter.1.Value.1"] == "fleetfs"


# ------------------------------------------------------------------ EFA and Elastic IPs

P5 = dict(GPU, instance="p5.48xlarge", price=98.32, cpus=192, memory_mib=2097152,
          gpus={"vendor": "nvidia", "name": "H100", "memory_mib": 81920, "count": 8})


def nics_of(params):
    """The network interfaces of a RunInstances form: [{DeviceIndex, NetworkCardIndex, ...}]."""
    out, n = [], 1
    while f"NetworkInterface.{n}.DeviceIndex" in params:
        pre = f"NetworkInterface.{n}."
        out.append({k[len(pre):]: v for k, v in params.items() if k.startswith(pre)})
        n += 1
    return out


def test_efa_interfaces_and_elastic_ip(bk, fake, keypair):
    """p5.48xlarge: dstack's 32 interfaces (efa primary, efa-only on cards 1..31, efa on every
    fourth card), no public address from AWS, so an Elastic IP once it runs: found again,
    never made twice, released with the instance."""
    need_root()
    r = bk("create", P5, NAME)
    assert r["rc"] == 0, r
    vm = r["vm"]
    assert json.loads(vm["backend_data"])["eip"] is True
    nics = nics_of(params_of(fake, "RunInstances"))
    assert len(nics) == 32
    assert nics[0]["InterfaceType"] == "efa" and nics[0]["AssociatePublicIpAddress"] == "false"
    assert "NetworkCardIndex" not in nics[0] and nics[0]["DeviceIndex"] == "0"
    for i, nic in enumerate(nics[1:], start=1):
        assert nic["NetworkCardIndex"] == str(i) and nic["DeviceIndex"] == "1"
        assert nic["InterfaceType"] == ("efa" if i % 4 == 0 else "efa-only"), (i, nic)
        assert nic["AssociatePublicIpAddress"] == "false"
        assert nic["SubnetId"] == nics[0]["SubnetId"]
    g = cloudapi.wait_state(bk, vm["id"], ("running",), vm["backend_data"])
    for _ in range(50):
        if g["vm"]["ip"]:
            break
        g = bk("get", vm["id"], vm["backend_data"])
    host = fake.instance(vm["id"])["host_addr"]
    assert g["vm"]["ip"] == host, g
    assert fake.count_calls("AllocateAddress") == 1 and fake.count_calls("AssociateAddress") == 1
    alloc = params_of(fake, "AllocateAddress")
    assert alloc["Domain"] == "vpc" and tags_of(alloc)["fleetfs_instance_id"] == vm["id"]
    assert cloudapi.ssh(g["vm"]["ip"], keypair[0], "ubuntu").returncode == 0
    # later gets find the address: nothing allocated again
    bk("get", vm["id"], vm["backend_data"])
    assert fake.count_calls("AllocateAddress") == 1
    # terminate: the instance, then its address
    assert bk("terminate", vm["id"], vm["backend_data"])["rc"] == 0
    assert actions(fake)[-4:] == ["TerminateInstances", "DescribeAddresses",
                                  "DisassociateAddress", "ReleaseAddress"]
    assert fake.addresses("us-east-1") == []


def test_efa_single_and_primary_without_efa(bk, fake):
    """One EFA interface (g5.12xlarge): an efa primary with its public address. p6-b300: an
    ordinary primary, efa-only interfaces on cards 1..16."""
    need_root()
    r = bk("create", dict(GPU, instance="g5.12xlarge", cpus=48), NAME)
    assert r["rc"] == 0, r
    nics = nics_of(params_of(fake, "RunInstances"))
    assert [(n["InterfaceType"], n["AssociatePublicIpAddress"]) for n in nics] == \
        [("efa", "true")]
    assert "eip" not in json.loads(r["vm"]["backend_data"])
    bk("terminate", r["vm"]["id"], r["vm"]["backend_data"])
    r = bk("create", dict(P5, instance="p6-b300.48xlarge"), NAME.replace("a1b2", "b300"))
    assert r["rc"] == 0, r
    nics = nics_of(params_of(fake, "RunInstances"))
    assert nics[0]["InterfaceType"] == "interface" and len(nics) == 17
    assert [n["NetworkCardIndex"] for n in nics[1:]] == [str(i) for i in range(1, 17)]
    assert {n["InterfaceType"] for n in nics[1:]} == {"efa-only"}
    bk("terminate", r["vm"]["id"], r["vm"]["backend_data"])


def test_elastic_ip_refused(bk, fake):
    """No Elastic IP to be had (AddressLimitExceeded): the instance runs without an address,
    says so, and nothing is left allocated."""
    need_root()
    fake.address_limit = 0
    r = bk("create", P5, NAME)
    assert r["rc"] == 0, r
    vm = r["vm"]
    g = cloudapi.wait_state(bk, vm["id"], ("running",), vm["backend_data"])
    g = bk("get", vm["id"], vm["backend_data"])
    assert g["rc"] == 0 and g["vm"]["ip"] == "" and "no Elastic IP" in g["vm"]["status"], g
    assert not fake.addresses("us-east-1")
    bk("terminate", vm["id"], vm["backend_data"])
