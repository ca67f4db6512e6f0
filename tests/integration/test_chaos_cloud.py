"""Chaos, the cloud half: kill -9 the daemon (or unmount it cleanly) at random points while a
cloud fleet provisions against a slow fake provider, mount again at once, repeat.

After every round the fleet must converge with:
- no wedged mount: the kill leaves nothing mounted, `fusermount3 -u` works, the new mount
  comes up at once (within the mount timeout) and answers;
- no duplicate and no leaked VM: the fake's live VMs are exactly the instance rows' VMs
  (by name), one per row;
and at the end, after `rm` of the spec, the fake has no live VM left.

Providers: the fake Lambda (every round) and the fake AWS (half as many rounds). Rounds come
from CHAOS_ROUNDS (default 8; `make chaos` sets 100+), split into tests of at most
ROUNDS_PER_TEST rounds so each stays within the per-test watchdog. The kill points are
random: CHAOS_SEED fixes them (default: a new seed per run), and every failure message
starts with the seed and the round, so a failure can be replayed with
CHAOS_SEED=<seed> CHAOS_ROUNDS=<rounds>.

The provider answers each create late (0.2-1.5 s, drawn per round), and
FLEETFS_HTTP_TIMEOUT_MS=4000 keeps the time an unresolved intent waits after a restart
short (it waits for the longest a create's request could still be under way)."""
import math
import os
import random
import sys
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fakes"))

import cloudapi  # noqa: E402
from aws_fake import DEFAULT_KEY, AwsFake  # noqa: E402
from fleetlib import MOUNT_TIMEOUT, is_fleet_mounted, read_file, wait_until, \
    write_file  # noqa: E402
from lambda_fake import LambdaFake  # noqa: E402
from test_aws_cloud import CATALOG as AWS_CATALOG, aws_config  # noqa: E402
from test_cloud import KEY, catalog_csv, lambda_config  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root")

ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "8"))
ROUNDS_PER_TEST = 3
SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
CONVERGE_S = 45         # one round's fleet reaching its nodes, idle (bound, not a sleep)
HTTP_TIMEOUT_MS = "4000"

pool = cloudapi.host_pool(3, "ubuntu")


def chunks(rounds):
    n = math.ceil(rounds / ROUNDS_PER_TEST)
    return [min(ROUNDS_PER_TEST, rounds - i * ROUNDS_PER_TEST) for i in range(n)]


# ------------------------------------------------------------------ providers

class Lambda:
    name = "lambda"
    create_route, create_method = "/instance-operations/launch", "POST"
    spec_res = "gpu: A10"

    def fake(self, pool):
        return LambdaFake(keys=[KEY], pool=pool, boot_seconds=0.3, terminate_seconds=0.3)

    def mount(self, fleet_factory, fake, tmp_path, monkeypatch):
        cat = tmp_path / "catalog"
        cat.mkdir()
        (cat / "lambdalabs.csv").write_text(catalog_csv())
        monkeypatch.setenv("FLEETFS_ENDPOINT_LAMBDA", fake.url)
        m = fleet_factory(opts=[f"catalog={cat}"])
        os.makedirs(m.p("projects", "main", "backends", "lambda"))
        write_file(m.p("projects", "main", "backends", "lambda", "config.yml"),
                   lambda_config())
        return m


class Aws:
    name = "aws"
    create_route, create_method = r"^ec2/RunInstances$", None
    spec_res = "gpu: A10G"

    def fake(self, pool):
        return AwsFake(keys=[DEFAULT_KEY], pool=pool, boot_seconds=0.3,
                       terminate_seconds=0.3, terminated_linger=3)

    def mount(self, fleet_factory, fake, tmp_path, monkeypatch):
        cat = tmp_path / "catalog"
        cat.mkdir()
        (cat / "aws.csv").write_text(AWS_CATALOG)
        monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
        m = fleet_factory(opts=[f"catalog={cat}"])
        os.makedirs(m.p("projects", "main", "backends", "aws"))
        write_file(m.p("projects", "main", "backends", "aws", "config.yml"), aws_config())
        return m


# ------------------------------------------------------------------ views

def P(m, *parts):
    return m.p("projects", "main", *parts)


def live(fake):
    return [v for v in fake.vms() if v["phase"] in ("booting", "running")]


def rows(m):
    """{instance number: (status, cloud name or None)} as the mount shows them."""
    out = {}
    try:
        nums = os.listdir(P(m, "fleets", "gpu", "instances"))
    except OSError:
        return out
    for n in nums:
        try:
            st = yaml.safe_load(read_file(P(m, "fleets", "gpu", "instances", n, "status")))
            info = yaml.safe_load(read_file(P(m, "fleets", "gpu", "instances", n,
                                              "info.yml")))
        except OSError:
            continue   # it went meanwhile
        name = ((info or {}).get("cloud") or {}).get("name")
        out[int(n)] = ((st or {}).get("status"), name)
    return out


def events(m):
    try:
        return read_file(P(m, "fleets", "gpu", "events")).decode()
    except OSError as e:
        return f"({e})"


def pevents(m):
    return read_file(P(m, "events")).decode()


# ------------------------------------------------------------------ one chaos run

def run_chaos(kind, seed, nrounds, pool, fleet_factory, tmp_path, monkeypatch):
    rng = random.Random(seed)
    monkeypatch.setenv("FLEETFS_TIME_SCALE", "0.01")
    monkeypatch.setenv("FLEETFS_HTTP_TIMEOUT_MS", HTTP_TIMEOUT_MS)
    with kind.fake(pool) as fake:
        monkeypatch.setenv("FLEETFS_CA_BUNDLE", fake.ca_path)
        m = kind.mount(fleet_factory, fake, tmp_path, monkeypatch)
        ctx = {"round": 0, "what": "start"}

        def why(extra=""):
            return (f"CHAOS_SEED={seed} ({kind.name}) round {ctx['round']}/{nrounds} "
                    f"[{ctx['what']}]: {extra}\nrows: {rows(m) if m.alive() else '-'}\n"
                    f"fake: {[(v['name'], v['phase']) for v in fake.vms()]}\n"
                    f"events:\n{events(m)[-4000:] if m.alive() else ''}\n"
                    f"requests: {[(r.method, r.route, r.status) for r in fake.requests][-60:]}")

        def converged(nodes):
            r = rows(m)
            names = sorted(v["name"] for v in live(fake))
            return (len(r) == nodes and all(s == "idle" for s, _ in r.values())
                    and sorted(n for _, n in r.values()) == names)

        nodes = 0
        for rnd in range(1, nrounds + 1):
            ctx["round"] = rnd
            prev, nodes = nodes, rng.choice([1, 2])
            slow = round(rng.uniform(0.2, 1.5), 2)
            fake.clear_faults()
            fake.latency(kind.create_route, slow, method=kind.create_method)
            arrived = fake.notify(kind.create_route, method=kind.create_method)
            clean = rng.random() < 0.25
            # a create is coming when the fleet grows: kill while it is under way, or at a
            # random time after the write (a create, a terminate, or nothing under way)
            at_arrival = nodes > prev and rng.random() < 0.6
            delay = round(rng.uniform(0, slow + 0.5) if at_arrival else rng.uniform(0, 3.0), 2)
            ctx["what"] = (f"nodes={nodes} create latency {slow}s, "
                           f"{'unmount' if clean else 'kill -9'} "
                           f"{delay}s after {'a create arrived' if at_arrival else 'the write'}")
            write_file(P(m, "fleets", "gpu.yml"),
                       (f"type: fleet\nname: gpu\nnodes: {nodes}\nresources:\n"
                        f"  {kind.spec_res}\n").encode())
            if at_arrival:
                assert arrived.wait(20), why("no create arrived")
            time.sleep(delay)      # the random kill point, not a wait for a state
            if clean:
                t = time.monotonic()
                rc = m.umount()
                assert rc == 0, why(f"clean unmount: daemon exit {rc}, "
                                    f"{time.monotonic() - t:.1f}s\n{m.log()[-3000:]}")
            else:
                m.kill9()
            assert not is_fleet_mounted(m.mnt), why("still mounted after the daemon went")
            t = time.monotonic()
            m.start()   # asserts it mounts within MOUNT_TIMEOUT and answers
            assert time.monotonic() - t < MOUNT_TIMEOUT, why("slow remount")
            ok = wait_until(lambda: converged(nodes), CONVERGE_S, step=0.1)
            assert ok, why("did not converge to one live VM per row")
            assert len(live(fake)) == nodes, why("a duplicate or leaked VM")
        # every round left exactly the rows' VMs; no orphan was ever seen
        assert "orphan VM" not in pevents(m), why(pevents(m)[-3000:])
        # the end: grow by one, rm the spec while that create is under way, kill -9 at a
        # random point, mount again: the intent is looked up until its create could have
        # made the VM, and whatever it made is terminated; nothing remains
        slow = round(rng.uniform(0.5, 1.5), 2)
        delay = round(rng.uniform(0, slow + 0.5), 2)
        ctx["round"] += 1
        ctx["what"] = (f"nodes={nodes + 1} create latency {slow}s, rm when it arrives, "
                       f"kill -9 {delay}s later")
        fake.clear_faults()
        fake.latency(kind.create_route, slow, method=kind.create_method)
        arrived = fake.notify(kind.create_route, method=kind.create_method)
        write_file(P(m, "fleets", "gpu.yml"),
                   (f"type: fleet\nname: gpu\nnodes: {nodes + 1}\nresources:\n"
                    f"  {kind.spec_res}\n").encode())
        assert arrived.wait(20), why("no create arrived")
        os.unlink(P(m, "fleets", "gpu.yml"))
        time.sleep(delay)   # the random kill point
        m.kill9()
        m.start()
        assert wait_until(lambda: not live(fake), CONVERGE_S, step=0.1), why("VMs left")
        assert wait_until(lambda: not os.path.exists(P(m, "fleets", "gpu")), CONVERGE_S,
                          step=0.1), why("the fleet stayed")
        assert not live(fake), why("a VM appeared after the fleet went")
        m.umount()
        assert not is_fleet_mounted(m.mnt)
        assert fake.errors == [], why("\n".join(fake.errors))
        return nrounds


@pytest.mark.parametrize("part,nrounds", list(enumerate(chunks(ROUNDS))))
def test_chaos_lambda(part, nrounds, pool, fleet_factory, tmp_path, monkeypatch):
    run_chaos(Lambda(), SEED + part, nrounds, pool, fleet_factory, tmp_path, monkeypatch)


@pytest.mark.parametrize("part,nrounds", list(enumerate(chunks(max(1, ROUNDS // 2)))))
def test_chaos_aws(part, nrounds, pool, fleet_factory, tmp_path, monkeypatch):
    run_chaos(Aws(), SEED + 1000 + part, nrounds, pool, fleet_factory, tmp_path,
              monkeypatch)
