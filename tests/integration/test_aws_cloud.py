"""AWS cloud fleets end to end through a real mount, against the fake AWS
(tests/fakes/aws_fake.py: EC2, STS, IAM and Service Quotas; its VMs are real sshd hosts in
network namespaces, login user ubuntu): offers from a gpuhunt catalog, STS check, RunInstances
with the project key in cloud-init, poll until running, SSH probe, idle, `ssh -F
instances/<n>/ssh` login, delete -> TerminateInstances confirmed by the provider; tags, no
capacity in a zone, kill -9 between RunInstances and its commit, orphans, terminate retries,
spot (and its interruption), cluster placement groups, refused credentials and private
subnets behind a NAT gateway.

The daemon finds the fake through AWS_ENDPOINT_URL (as the AWS SDKs do) and trusts its CA
through FLEETFS_CA_BUNDLE; both are set with monkeypatch before the mount (the daemon inherits
the environment). FLEETFS_TIME_SCALE=0.01 shrinks every engine interval."""
import os
import subprocess
import sys
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fakes"))

from fleetlib import read_file, wait_until, write_file  # noqa: E402
from test_cloud import HEADER, events, istatus, wait_status  # noqa: E402
from aws_fake import DEFAULT_KEY, AwsFake  # noqa: E402
import cloudapi  # noqa: E402

SCALE = "0.01"
AKID, SECRET = DEFAULT_KEY
REGION = "us-east-1"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root")

# gpuhunt v3 rows for aws: CPU in two regions, the GPUs, and a spot g5.xlarge.
CATALOG = HEADER + (
    "t3.small,us-east-1,0.0208,2,2,0,,,False,,,,x86,\n"
    "t3.small,eu-west-1,0.0228,2,2,0,,,False,,,,x86,\n"
    "g4dn.xlarge,us-east-1,0.526,4,16,1,T4,16,False,,nvidia,,x86,\n"
    "g5.xlarge,us-east-1,1.006,4,16,1,A10G,24,False,,nvidia,,x86,\n"
    "g5.xlarge,us-east-1,0.4024,4,16,1,A10G,24,True,,nvidia,,x86,\n"
    "g5.xlarge,eu-west-1,1.123,4,16,1,A10G,24,False,,nvidia,,x86,\n"
    "g5.xlarge,eu-west-1,0.45,4,16,1,A10G,24,True,,nvidia,,x86,\n"
    "p5.48xlarge,us-east-1,98.32,192,2048,8,H100,80,False,,nvidia,,x86,\n")


def aws_config(secret=SECRET, extra=""):
    return (f"type: aws\ncreds:\n  type: access_key\n  access_key: {AKID}\n"
            f"  secret_key: {secret}\nregions: [{REGION}]\n{extra}").encode()


def spec(nodes=1, res="gpu: A10G", extra=""):
    return (f"type: fleet\nname: gpu\nnodes: {nodes}\nresources:\n  {res}\n{extra}").encode()


pool = cloudapi.host_pool(2, "ubuntu")


@pytest.fixture
def fake(pool):
    with AwsFake(keys=[DEFAULT_KEY], pool=pool, boot_seconds=0.3, terminate_seconds=0.3,
                 terminated_linger=3) as f:
        yield f
        assert f.errors == [], "the fake failed:\n" + "\n".join(f.errors)


@pytest.fixture
def mount(fake, fleet_factory, tmp_path, monkeypatch):
    """mount(config=aws_config()): a fresh mount on the fake with backends/aws/config.yml."""
    cat = tmp_path / "catalog"
    cat.mkdir()
    (cat / "aws.csv").write_text(CATALOG)
    monkeypatch.setenv("FLEETFS_TIME_SCALE", SCALE)
    monkeypatch.setenv("FLEETFS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)

    def make(config=None):
        m = fleet_factory(opts=[f"catalog={cat}"])
        os.makedirs(m.p("projects", "main", "backends", "aws"))
        write_file(m.p("projects", "main", "backends", "aws", "config.yml"),
                   config if config is not None else aws_config())
        return m
    return make


# ------------------------------------------------------------------ helpers

def P(m, *parts):
    return m.p("projects", "main", *parts)


def write_spec(m, data):
    write_file(P(m, "fleets", "gpu.yml"), data)


def bstatus(m):
    return yaml.safe_load(read_file(P(m, "backends", "aws", "status")))


def pevents(m):
    return read_file(P(m, "events")).decode()


def live(fake):
    """The fake's instances that are pending or running (not shutting down, not gone)."""
    return [v for v in fake.vms() if v["phase"] in ("booting", "running")]


def only_live(fake):
    vms = live(fake)
    assert len(vms) == 1, fake.vms()
    return fake.instance(vms[0]["id"])


def zone_of_subnet(fake, subnet_id, region=REGION):
    return next(s["az"] for s in fake.vpcs(region)["subnets"] if s["id"] == subnet_id)


def run_requests(fake):
    """[(answer status, parameters)] of every RunInstances, in order."""
    reqs = fake.find(route=r"^ec2/RunInstances$")
    params = fake.calls("RunInstances")
    assert len(reqs) == len(params)
    return [(r.status, p) for r, p in zip(reqs, params)]


def sweep_calls(fake):
    """The DescribeInstances of the orphan sweep (filtered on tag owner=fleetfs)."""
    return [c for c in fake.calls("DescribeInstances")
            if any(v == "tag:owner" for k, v in c.items() if k.startswith("Filter."))]


def all_gone(m, fake):
    os.unlink(P(m, "fleets", "gpu.yml"))
    assert wait_until(lambda: not live(fake), 30), fake.vms()
    assert wait_until(lambda: not os.path.exists(P(m, "fleets", "gpu", "instances", "0")), 30), \
        events(m)


def mount_texts(root):
    """Every generated file of the mount (events, status, info.yml, ssh stanzas, offers...):
    {path: bytes}. config.yml files are the user's own input and are skipped."""
    out = {}
    for d, dirs, files in os.walk(root):
        if os.path.basename(d) == "offers":
            dirs[:] = []
        for f in files:
            if f in ("config.yml", "id_rsa"):
                continue
            path = os.path.join(d, f)
            try:
                out[path] = read_file(path)
            except OSError:
                pass
    return out


# ------------------------------------------------------------------ tests

def test_provision_login_terminate(mount, fake):
    m = mount()
    assert wait_until(lambda: bstatus(m)["state"] == "valid", 15), bstatus(m)
    assert fake.count_calls("GetCallerIdentity", "sts") >= 1
    write_spec(m, spec())
    wait_status(m, 0, "idle")
    inst = only_live(fake)
    assert inst["instance_type"] == "g5.xlarge" and inst["region"] == REGION
    assert inst["name"].startswith("fleetfs-main-gpu-0-")
    assert not inst["spot"]
    pub = read_file(P(m, "ssh", "id_rsa.pub")).decode().split()[1]
    assert any(pub in k for k in inst["pubkeys"]), "the project key was not in cloud-init"
    ev = events(m)
    assert f"provisioning aws {REGION} g5.xlarge" in ev and "idle" in ev, ev
    # ssh through the generated stanza: user ubuntu, the pinned host key
    r = subprocess.run(["ssh", "-F", P(m, "fleets", "gpu", "instances", "0", "ssh"), "gpu-0",
                        "whoami"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stdout.strip() == "ubuntu", (r.stdout, r.stderr)
    assert fake.count_calls("RunInstances") == 1
    # no secret anywhere in what the mount shows, nor in the daemon's log
    texts = mount_texts(m.mnt)
    assert any(p.endswith("/events") for p in texts)
    leaked = [p for p, t in texts.items() if SECRET.encode() in t]
    assert not leaked, leaked
    assert SECRET not in m.log()
    for d, _, files in os.walk(m.state):     # sealed in the store, never in clear
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                assert SECRET.encode() not in fh.read(), os.path.join(d, f)
    # delete: TerminateInstances, the VM terminated at the fake, the instance gone
    iid = inst["id"]
    all_gone(m, fake)
    assert any(c.get("InstanceId.1") == iid for c in fake.calls("TerminateInstances"))
    gone = fake.instance(iid)
    assert gone is None or gone["state"] in ("shutting-down", "terminated"), gone
    assert "confirmed gone by aws" in events(m)
    assert fake.count_calls("RunInstances") == 1
    assert SECRET not in events(m) and SECRET not in pevents(m)


def test_tags(mount, fake):
    # the config's tags come after fleetfs's own (its `owner` cannot take fleetfs's over)
    m = mount(aws_config(extra="tags:\n  env: test\n  cost-center: \"42\"\n  owner: me\n"))
    write_spec(m, spec(extra="tags:\n  team: ml\n"))
    wait_status(m, 0, "idle")
    t = only_live(fake)["tags"]
    assert t["Name"].startswith("fleetfs-main-gpu-0-"), t
    assert t["owner"] == "fleetfs" and t["fleetfs_project"] == "main", t
    assert t["fleetfs_fleet"] == "gpu" and t["fleetfs_instance"] == "0", t
    assert t["env"] == "test" and t["cost-center"] == "42" and t["team"] == "ml", t
    all_gone(m, fake)


def test_no_capacity_in_a_zone_tries_the_next(mount, fake):
    m = mount()
    fake.set_capacity("g5.xlarge", f"{REGION}a", 0)
    write_spec(m, spec())
    wait_status(m, 0, "idle")
    inst = only_live(fake)
    assert inst["instance_type"] == "g5.xlarge" and inst["az"] != f"{REGION}a", inst
    runs = run_requests(fake)
    ok = [p for st, p in runs if st == 200]
    failed = [p for st, p in runs if st != 200]
    assert len(ok) == 1, runs
    # no capacity is EC2's verdict (a 500 all the same): one try in the zone, not 4
    assert len(failed) == 1 and all(zone_of_subnet(fake, p["NetworkInterface.1.SubnetId"]) ==
                          f"{REGION}a" for p in failed), runs
    assert zone_of_subnet(fake, ok[0]["NetworkInterface.1.SubnetId"]) == inst["az"]
    # the same offer: no other offer was tried, the instance shows g5.xlarge in us-east-1
    ev = events(m)
    assert f"provisioning aws {REGION} g5.xlarge" in ev and " offer " not in ev, ev
    # where it landed and why not in 1a: in the event and in info.yml
    assert f"zone={inst['az']} ({REGION}a: InsufficientInstanceCapacity)" in ev, ev
    info = yaml.safe_load(read_file(P(m, "fleets", "gpu", "instances", "0", "info.yml")))
    assert info["backend"] == "aws", info
    cl = info["cloud"]
    assert (cl["type"], cl["region"], cl["zone"], cl["instance"], cl["spot"]) == \
        ("aws", REGION, inst["az"], "g5.xlarge", False), cl
    assert cl["id"] == inst["id"] and cl["name"] == inst["name"]
    assert cl["detail"] == f"{REGION}a: InsufficientInstanceCapacity", cl
    all_gone(m, fake)


def test_kill9_between_run_instances_and_commit(mount, fake):
    m = mount()
    # RunInstances is answered late: the daemon dies while it waits; EC2 still launches
    fake.latency(r"^ec2/RunInstances$", 3.0, times=1)
    write_spec(m, spec())
    assert fake.wait_for(lambda: fake.count_calls("RunInstances") == 1, 20)
    m.kill9()
    assert wait_until(lambda: len(live(fake)) == 1, 10), fake.vms()
    m.start()
    wait_status(m, 0, "idle")
    assert len(live(fake)) == 1, fake.vms()
    assert len(fake.vms()) == 1, fake.vms()
    assert fake.count_calls("RunInstances") == 1
    assert "not created again" in events(m), events(m)
    all_gone(m, fake)


def test_kill9_while_run_instances_in_flight(mount, fake):
    """Issue 11, defect 2 on AWS: the daemon dies while RunInstances is still under way (the
    instance appears 2 s after the call arrived) and is mounted again at once: the name is
    not listed yet, the row waits and looks again, and adopts the instance; no second
    RunInstances, no orphan."""
    m = mount()
    fake.latency(r"^ec2/RunInstances$", 2.0, times=1)
    arrived = fake.notify(r"^ec2/RunInstances$")
    write_spec(m, spec())
    assert arrived.wait(30), events(m)
    m.kill9()
    m.start()
    wait_status(m, 0, "idle", timeout=90)
    ev = events(m)
    assert len(live(fake)) == 1, (fake.vms(), ev)
    assert fake.count_calls("RunInstances") == 1, ev
    assert "was not created" not in ev and "not created again" in ev, ev
    assert "orphan VM" not in pevents(m)
    all_gone(m, fake)


def test_orphans_reported_then_terminated(mount, fake):
    orphan = fake.create_behind_the_back("fleetfs-main-old-3-abcd1234", "t3.small", REGION,
                                         tags={"owner": "fleetfs"})
    untagged = fake.create_behind_the_back("fleetfs-main-old-4-abcd5678", "t3.small", REGION,
                                           host=False)
    stranger = fake.create_behind_the_back("someone-elses-vm", "t3.small", REGION,
                                           tags={"owner": "fleetfs"}, host=False)
    m = mount()
    assert wait_until(lambda: "orphan VM fleetfs-main-old-3-abcd1234" in pevents(m), 30), \
        pevents(m)
    ev = pevents(m)
    assert orphan.id in ev and "t3.small" in ev
    assert "someone-elses-vm" not in ev and "fleetfs-main-old-4" not in ev, ev
    # reported once: the next sweeps (every 10 min, scaled) say nothing more
    sweeps = len(sweep_calls(fake))
    assert wait_until(lambda: len(sweep_calls(fake)) >= sweeps + 1, 20), sweep_calls(fake)
    assert pevents(m).count("orphan VM") == 1, pevents(m)
    assert orphan.phase in ("booting", "running")
    write_file(P(m, "backends", "aws", "config.yml"), aws_config(extra="orphans: terminate\n"))
    assert wait_until(lambda: orphan.phase in ("terminating", "terminated"), 30), pevents(m)
    assert wait_until(lambda: "terminated (orphans: terminate)" in pevents(m), 10), pevents(m)
    assert any(c.get("InstanceId.1") == orphan.id for c in fake.calls("TerminateInstances"))
    assert untagged.phase == "running" and stranger.phase == "running"
    terminated = {c.get("InstanceId.1") for c in fake.calls("TerminateInstances")}
    assert untagged.id not in terminated and stranger.id not in terminated


def test_terminate_retried_until_it_works(mount, fake):
    m = mount()
    write_spec(m, spec())
    wait_status(m, 0, "idle")
    iid = only_live(fake)["id"]
    # the HTTP client tries an idempotent call 4 times: 8 failures are 2 failed terminates
    fake.fail(r"^ec2/TerminateInstances$", 503, times=8)
    os.unlink(P(m, "fleets", "gpu.yml"))
    assert wait_until(lambda: "terminating (retry" in events(m), 30), events(m)
    assert wait_until(lambda: not live(fake), 30), fake.vms()
    assert wait_until(lambda: "confirmed gone by aws" in events(m), 30), events(m)
    terms = fake.find(route=r"^ec2/TerminateInstances$")
    assert sum(1 for r in terms if r.status == 503) == 8, terms
    assert any(r.status == 200 for r in terms), terms
    assert fake.instance(iid) is None or fake.instance(iid)["state"] in ("shutting-down",
                                                                         "terminated")


def test_spot_launch_and_delete(mount, fake):
    m = mount()
    write_spec(m, spec(extra="spot_policy: spot\n"))
    wait_status(m, 0, "idle")
    inst = only_live(fake)
    assert inst["spot"] and inst["spot_request_id"], inst
    (run,) = fake.calls("RunInstances")
    assert run["InstanceMarketOptions.MarketType"] == "spot", run
    assert run["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == \
        "terminate", run
    fake.clear_requests()
    all_gone(m, fake)
    routes = [r.route for r in fake.requests
              if r.route in ("ec2/CancelSpotInstanceRequests", "ec2/TerminateInstances")]
    assert routes[:2] == ["ec2/CancelSpotInstanceRequests", "ec2/TerminateInstances"], routes
    (cancel,) = [c for c in fake.calls("CancelSpotInstanceRequests")]
    assert cancel["SpotInstanceRequestId.1"] == inst["spot_request_id"]


def test_spot_interrupted(mount, fake):
    m = mount()
    write_spec(m, spec(extra="spot_policy: spot\n"))
    wait_status(m, 0, "idle")
    inst = only_live(fake)
    fake.interrupt_spot(inst["id"])
    assert wait_until(lambda: "interrupted_by_provider" in events(m), 30), events(m)
    assert "instance=0 terminated (interrupted_by_provider)" in events(m), events(m)
    # nodes: 1 is kept: a new spot instance replaces the one AWS took back
    assert wait_until(lambda: "1 instance added to keep the fleet's nodes" in events(m), 30), \
        events(m)
    assert wait_until(lambda: [v["id"] for v in live(fake)] not in ([], [inst["id"]]), 30)
    wait_status(m, 0, "idle")
    assert fake.count_calls("RunInstances") == 2
    os.unlink(P(m, "fleets", "gpu.yml"))
    assert wait_until(lambda: not live(fake), 30), fake.vms()


def test_cluster_placement(mount, fake):
    m = mount()
    write_spec(m, spec(nodes=2, extra="placement: cluster\n"))
    wait_status(m, 0, "idle")
    wait_status(m, 1, "idle")
    pgs = fake.calls("CreatePlacementGroup")
    assert pgs and all(c["GroupName"] == "fleetfs-main-gpu" and c["Strategy"] == "cluster"
                       for c in pgs), pgs
    assert list(fake.placement_groups(REGION)) == ["fleetfs-main-gpu"]
    runs = [p for st, p in run_requests(fake) if st == 200]
    assert len(runs) == 2, runs
    assert all(p.get("Placement.GroupName") == "fleetfs-main-gpu" for p in runs), runs
    vms = [fake.instance(v["id"]) for v in live(fake)]
    assert len(vms) == 2 and len({v["az"] for v in vms}) == 1, vms
    assert all(v["placement_group"] == "fleetfs-main-gpu" for v in vms), vms
    os.unlink(P(m, "fleets", "gpu.yml"))
    assert wait_until(lambda: not live(fake), 30), fake.vms()
    assert wait_until(lambda: not os.path.exists(P(m, "fleets", "gpu", "instances", "1")) and
                      not os.path.exists(P(m, "fleets", "gpu", "instances", "0")), 30), events(m)
    assert wait_until(lambda: not fake.placement_groups(REGION), 10), \
        (fake.placement_groups(REGION), fake.find(route="DeletePlacementGroup"))
    assert fake.count(route=r"^ec2/DeletePlacementGroup$", status=200) == 1


def test_refused_credentials(mount, fake):
    m = mount(aws_config(secret="wRoNgSeCrEt/0123456789abcdefghijklmnopqrs"))
    os.listdir(P(m, "offers"))
    assert wait_until(lambda: bstatus(m)["state"] == "invalid", 15), bstatus(m)
    assert "SignatureDoesNotMatch" in bstatus(m)["reason"], bstatus(m)
    assert "wRoNgSeCrEt" not in pevents(m)
    assert "wRoNgSeCrEt" not in read_file(P(m, "backends", "aws", "status")).decode()
    write_spec(m, spec())
    assert wait_until(lambda: (istatus(m, 0) or {}).get("status") == "pending" and
                      "no offer" in (istatus(m, 0) or {}).get("reason", ""), 15), \
        (istatus(m, 0), events(m))
    time.sleep(1)
    assert fake.count_calls("RunInstances") == 0
    assert (istatus(m, 0) or {}).get("status") == "pending"


def test_private_subnet_behind_nat(mount, fake):
    vpc = fake.add_vpc(REGION, name="work")
    nat = fake.add_subnet(REGION, vpc, f"{REGION}b", kind="nat", name="nat")
    isolated = fake.add_subnet(REGION, vpc, f"{REGION}a", kind="isolated", name="isolated")
    m = mount(aws_config(extra="vpc_name: work\npublic_ips: false\n"))
    assert wait_until(lambda: bstatus(m)["state"] == "valid", 15), bstatus(m)
    write_spec(m, spec())
    wait_status(m, 0, "idle")
    inst = only_live(fake)
    assert inst["subnet_id"] == nat and inst["vpc_id"] == vpc, inst
    assert inst["public_ip"] is None and inst["private_ip"], inst
    (run,) = fake.calls("RunInstances")
    assert run["NetworkInterface.1.SubnetId"] == nat, run
    assert run["NetworkInterface.1.SubnetId"] != isolated
    assert run["NetworkInterface.1.AssociatePublicIpAddress"] == "false", run
    info = yaml.safe_load(read_file(P(m, "fleets", "gpu", "instances", "0", "info.yml")))
    assert info["host"] == inst["private_ip"], info
    all_gone(m, fake)
