"""Cloud fleets end to end against a fake Lambda Cloud (tests/fakes/lambda_fake.py) whose VMs
are real sshd hosts in network namespaces: offers from the catalog, create with the project
key, poll until running, SSH probe, idle, `ssh -F instances/<n>/ssh` login, scaling,
delete -> terminate confirmed by the provider; no capacity on the cheapest offer, refused
credentials, a terminate that fails for a while, 429 storms, and kill -9 between the create
call and its commit (the VM is found by name, never created twice)."""
import os
import subprocess
import sys
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fakes"))

from fleetlib import read_file, write_file, wait_until  # noqa: E402
from lambda_fake import DEFAULT_TYPES, LambdaFake  # noqa: E402

SCALE = "0.01"
KEY = "lmbd-fake-key-0123456789abcdef"
HEADER = ("instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,"
          "disk_size,gpu_vendor,flags,cpu_arch,provider_data\n")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root")


def catalog_csv():
    """The fake's instance types as gpuhunt would publish them."""
    rows = []
    for name, t in DEFAULT_TYPES.items():
        count, rest = t["description"].split("x ", 1)
        gpu = rest.split(" ")[0]
        mem = rest.split("(")[1].split(" ")[0]
        for region in t["regions"]:
            rows.append(f"{name},{region},{t['price_cents_per_hour'] / 100},{t['vcpus']},"
                        f"{t['memory_gib']},{count},{gpu},{mem},False,{t['storage_gib']},"
                        f"nvidia,,x86,\n")
    return HEADER + "".join(rows)


def lambda_config(key=KEY):
    return f"type: lambda\ncreds:\n  type: api_key\n  api_key: {key}\n".encode()


SPEC = """type: fleet
name: gpu
nodes: {nodes}
resources:
  gpu: {gpu}
"""


@pytest.fixture
def fake():
    with LambdaFake(keys=[KEY], hosts=3, boot_seconds=0.5, terminate_seconds=0.3) as f:
        yield f
        assert f.errors == []


def mount_lambda(fleet_factory, fake, tmp_path, monkeypatch, key=KEY):
    """A mount on the fake Lambda (the catalog from its types, short intervals) with
    backends/lambda/config.yml holding key."""
    cat = tmp_path / "catalog"
    cat.mkdir()
    (cat / "lambdalabs.csv").write_text(catalog_csv())
    monkeypatch.setenv("FLEETFS_TIME_SCALE", SCALE)
    monkeypatch.setenv("FLEETFS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("FLEETFS_ENDPOINT_LAMBDA", fake.url)
    m = fleet_factory(opts=[f"catalog={cat}"])
    os.makedirs(m.p("projects", "main", "backends", "lambda"))
    write_file(m.p("projects", "main", "backends", "lambda", "config.yml"), lambda_config(key))
    return m


@pytest.fixture
def cloud(fleet_factory, fake, tmp_path, monkeypatch):
    return mount_lambda(fleet_factory, fake, tmp_path, monkeypatch)


def istatus(m, num, fleet="gpu"):
    try:
        return yaml.safe_load(read_file(m.p("projects", "main", "fleets", fleet, "instances",
                                            str(num), "status")))
    except OSError:
        return None


def wait_status(m, num, want, timeout=60, fleet="gpu"):
    last = {}

    def ok():
        last["s"] = istatus(m, num, fleet)
        return last["s"] is not None and last["s"].get("status") == want
    assert wait_until(ok, timeout=timeout), f"instance {num}: {last.get('s')}\n" \
        f"{read_file(m.p('projects', 'main', 'fleets', fleet, 'events')).decode()[-3000:]}"
    return last["s"]


def events(m, fleet="gpu"):
    return read_file(m.p("projects", "main", "fleets", fleet, "events")).decode()


def live_vms(fake):
    """Snapshots of the fake's VMs that are not terminating or gone."""
    return [v for v in fake.vms() if v["phase"] in ("booting", "running")]


def test_provision_login_terminate(cloud, fake):
    m = cloud
    st = yaml.safe_load(read_file(m.p("projects", "main", "backends", "lambda", "status")))
    assert wait_until(lambda: yaml.safe_load(read_file(
        m.p("projects", "main", "backends", "lambda", "status")))["state"] == "valid", 10)
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    s = wait_status(m, 0, "idle")
    # the cheapest matching offer, created under a fleetfs name with the project key
    vms = live_vms(fake)
    assert len(vms) == 1
    vm = vms[0]
    assert vm["instance_type"] == "gpu_1x_a10" and vm["name"].startswith("fleetfs-main-gpu-0-")
    pub = read_file(m.p("projects", "main", "ssh", "id_rsa.pub")).decode().split()[1]
    assert any(pub in k for k in vm["pubkeys"]), "the project key was not installed"
    ev = events(m)
    assert "provisioning lambda" in ev and "idle" in ev
    # ssh works through the generated stanza (user ubuntu, pinned host key)
    r = subprocess.run(["ssh", "-F", m.p("projects", "main", "fleets", "gpu", "instances", "0",
                                         "ssh"), "gpu-0", "echo", "hello-from-$(whoami)"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "hello-from-ubuntu" in r.stdout, r.stderr
    # delete the spec: terminated at the provider, confirmed, then gone
    os.unlink(m.p("projects", "main", "fleets", "gpu.yml"))
    assert wait_until(lambda: not live_vms(fake), 30), fake.vms()
    assert wait_until(lambda: "terminated" in events(m) if os.path.exists(
        m.p("projects", "main", "fleets", "gpu")) else True, 30)
    assert fake.count(method="POST", route="/instance-operations/launch") == 1


def test_no_capacity_moves_to_next_offer(cloud, fake):
    m = cloud
    # the offers were fetched while Lambda still listed capacity for the A10s; by the time
    # of the launch it has none: the launch fails and the next offer is tried
    a10 = yaml.safe_load(read_file(m.p("projects", "main", "offers",
                                       "lambda:us-east-1:gpu_1x_a10")))
    assert a10["availability"] == "available"
    fake.set_capacity("gpu_1x_a10", "us-east-1", 0)
    fake.set_capacity("gpu_1x_a10", "us-west-1", 0)
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="24GB..").encode())
    wait_status(m, 0, "idle")
    vms = live_vms(fake)
    assert len(vms) == 1 and vms[0]["instance_type"] == "gpu_1x_a100_sxm4"
    ev = events(m)
    assert "insufficient-capacity" in ev, ev
    info = read_file(m.p("projects", "main", "fleets", "gpu", "instances", "0",
                         "info.yml")).decode()
    assert "gpu_1x_a100_sxm4" in info


def test_refused_credentials(fleet_factory, fake, tmp_path, monkeypatch):
    m = mount_lambda(fleet_factory, fake, tmp_path, monkeypatch, key="wrong-key")
    os.listdir(m.p("projects", "main", "offers"))

    def state():
        return yaml.safe_load(read_file(m.p("projects", "main", "backends", "lambda",
                                            "status")))
    assert wait_until(lambda: state()["state"] == "invalid", 15), state()
    assert "API key was invalid" in state()["reason"]
    assert "wrong-key" not in read_file(m.p("projects", "main", "events")).decode()
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    assert wait_until(lambda: (istatus(m, 0) or {}).get("status") == "pending" and
                      "no offer" in (istatus(m, 0) or {}).get("reason", ""), 15), istatus(m, 0)
    assert fake.count(method="POST", route="/instance-operations/launch") == 0


def test_scale_up_and_down(cloud, fake):
    m = cloud
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    wait_status(m, 0, "idle")
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=2, gpu="A10").encode())
    wait_status(m, 1, "idle")
    assert len(live_vms(fake)) == 2
    # scaling down terminates the newest instance, keeps the other
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    assert wait_until(lambda: len(live_vms(fake)) == 1, 30), fake.vms()
    assert istatus(m, 0)["status"] == "idle"
    assert wait_until(lambda: istatus(m, 1) is None, 30)
    os.unlink(m.p("projects", "main", "fleets", "gpu.yml"))
    assert wait_until(lambda: not live_vms(fake), 30)


def test_terminate_retried_until_it_works(cloud, fake):
    m = cloud
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    wait_status(m, 0, "idle")
    fake.fail("/instance-operations/terminate", 500, times=3, method="POST")
    os.unlink(m.p("projects", "main", "fleets", "gpu.yml"))
    assert wait_until(lambda: "terminating (retry" in events(m), 30), events(m)
    assert wait_until(lambda: not live_vms(fake), 60), fake.vms()


def test_rate_limited_api(cloud, fake):
    m = cloud
    # two GETs a second: the polls of two instances (scaled intervals) always exceed it,
    # however slow the machine; GETs are retried after Retry-After
    fake.rate_limit(per_second=2, retry_after=1, method="GET")
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=2, gpu="A10").encode())
    wait_status(m, 0, "idle")
    wait_status(m, 1, "idle")
    assert fake.count(status=429) > 0
    assert len(live_vms(fake)) == 2
    assert fake.count(method="POST", route="/instance-operations/launch", status=200) == 2


def test_kill9_between_create_and_commit(cloud, fake):
    m = cloud
    # the launch is answered late: the daemon dies while waiting for it; the fake still
    # creates the VM (as a real provider would have)
    fake.latency("/instance-operations/launch", 3.0, times=1, method="POST")
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    assert fake.wait_for(lambda: fake.count(method="POST",
                                            route="/instance-operations/launch") == 1, 20)
    m.kill9()
    assert wait_until(lambda: len(live_vms(fake)) == 1, 10)
    m.start()
    wait_status(m, 0, "idle")
    assert len(live_vms(fake)) == 1, fake.vms()
    assert fake.count(method="POST", route="/instance-operations/launch") == 1
    assert "not created again" in events(m)


def test_orphans_reported_then_terminated(cloud, fake):
    m = cloud
    orphan = fake.create_behind_the_back("fleetfs-main-old-3-abcd1234", "gpu_1x_a10",
                                         "us-east-1")
    stranger = fake.create_behind_the_back("someone-elses-vm", "gpu_1x_a10", "us-east-1")

    def pev():
        return read_file(m.p("projects", "main", "events")).decode()
    assert wait_until(lambda: "orphan VM fleetfs-main-old-3-abcd1234" in pev(), 30), pev()
    assert "someone-elses-vm" not in pev()
    assert pev().count("orphan VM") == 1
    assert orphan.phase in ("booting", "running")
    write_file(m.p("projects", "main", "backends", "lambda", "config.yml"),
               lambda_config() + b"orphans: terminate\n")
    assert wait_until(lambda: orphan.phase in ("terminating", "terminated"), 30), pev()
    assert wait_until(lambda: "terminated (orphans: terminate)" in pev(), 10), pev()
    assert stranger.phase in ("booting", "running")


def test_vm_gone_at_the_provider(cloud, fake):
    """A VM the provider terminated (preempted, deleted in its console) is noticed by the
    periodic check or a live status read: the instance is terminated with the reason, and a
    new one keeps the fleet's nodes."""
    m = cloud
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    wait_status(m, 0, "idle")
    vm = fake.all_vms()[0]
    fake.terminate_vm(vm)
    assert wait_until(lambda: "interrupted_by_provider" in events(m), 30), events(m)
    # the fleet keeps its nodes: a new instance takes the lost one's place
    assert wait_until(lambda: "1 instance added to keep the fleet's nodes" in events(m), 30), \
        events(m)
    wait_status(m, 0, "idle")
    assert [v["id"] for v in live_vms(fake)] != [vm.id]
    assert fake.count(method="POST", route="/instance-operations/launch") == 2
    # delete the fleet: its VM goes
    os.unlink(m.p("projects", "main", "fleets", "gpu.yml"))
    assert wait_until(lambda: not live_vms(fake), 30), fake.vms()


def test_provider_timing_out(fleet_factory, fake, tmp_path, monkeypatch):
    """A launch that times out has an unknown outcome: fleetfs does not launch again blindly,
    it looks the name up first; the mount stays responsive; the instance gets there."""
    monkeypatch.setenv("FLEETFS_HTTP_TIMEOUT_MS", "1500")
    m = mount_lambda(fleet_factory, fake, tmp_path, monkeypatch)
    fake.hang("/instance-operations/launch", times=1, method="POST")
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    assert wait_until(lambda: "outcome unknown" in events(m), 20), events(m)
    t = time.monotonic()
    os.listdir(m.p("projects", "main", "fleets", "gpu", "instances"))
    read_file(m.p("projects", "main", "fleets", "gpu", "instances", "0", "status"))
    assert time.monotonic() - t < 1.0
    fake.release_hung()
    wait_status(m, 0, "idle", timeout=60)
    assert len(live_vms(fake)) == 1
    assert fake.count(method="GET", route="/instances") >= 1   # the name was looked up


def test_kill9_while_launch_in_flight(cloud, fake):
    """Issue 11, defect 2: the daemon dies while Lambda is still launching (the POST arrived,
    the VM appears 2 s later) and is mounted again at once. The name is not listed yet, but
    the launch may still make it: fleetfs waits and looks again instead of launching a
    second VM, and adopts the one that appears."""
    m = cloud
    fake.latency("/instance-operations/launch", 2.0, times=1, method="POST")
    arrived = fake.notify("/instance-operations/launch", method="POST")
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    assert arrived.wait(20), events(m)
    t_launch = fake.find(method="POST", route="/instance-operations/launch")[0].time
    m.kill9()
    m.start()
    wait_status(m, 0, "idle", timeout=60)
    ev = events(m)
    assert len(live_vms(fake)) == 1, (fake.vms(), ev)
    assert fake.count(method="POST", route="/instance-operations/launch") == 1, ev
    assert "was not created" not in ev, ev
    assert "not created again" in ev, ev
    # a lookup before the VM existed (the usual case: the mount takes less than 2 s) left
    # the intent waiting, and said so
    looked = [r for r in fake.find(method="GET", route="^/instances$") if r.time > t_launch]
    if looked and looked[0].time < t_launch + 2.0:
        assert "waiting to confirm whether fleetfs-main-gpu-0-" in ev, ev
    assert "orphan VM" not in read_file(m.p("projects", "main", "events")).decode()
    os.unlink(m.p("projects", "main", "fleets", "gpu.yml"))
    assert wait_until(lambda: not live_vms(fake), 30), fake.vms()


def test_launch_answer_lost_then_made(fleet_factory, fake, tmp_path, monkeypatch):
    """No restart: the launch times out at fleetfs's end (2 s) while Lambda is still at it
    (it makes the VM after 2.5 s). The outcome is unknown; the name is not listed at the
    first look, but Lambda may still be working on the request: fleetfs looks again instead
    of launching another, and adopts the VM that appears."""
    monkeypatch.setenv("FLEETFS_HTTP_TIMEOUT_MS", "2000")
    m = mount_lambda(fleet_factory, fake, tmp_path, monkeypatch)
    fake.latency("/instance-operations/launch", 2.5, times=1, method="POST")
    write_file(m.p("projects", "main", "fleets", "gpu.yml"), SPEC.format(nodes=1, gpu="A10").encode())
    wait_status(m, 0, "idle", timeout=60)
    ev = events(m)
    assert "outcome unknown" in ev, ev
    assert len(live_vms(fake)) == 1, (fake.vms(), ev)
    assert fake.count(method="POST", route="/instance-operations/launch") == 1, ev
    assert "was not created" not in ev, ev
    os.unlink(m.p("projects", "main", "fleets", "gpu.yml"))
    assert wait_until(lambda: not live_vms(fake), 30), fake.vms()
