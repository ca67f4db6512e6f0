"""SSH fleets end to end: real sshd hosts in network namespaces (tests/hosts), a real mount,
real ssh clients. The daemon runs with FLEETFS_TIME_SCALE so retries and checks take
seconds."""
import errno
import os
import subprocess
import sys
import time

import pytest
import yaml

from fleetlib import read_file, write_fd, write_file
from fleetlib import wait_until as _wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "hosts"))
import hosts as testhosts  # noqa: E402

SCALE = "0.005"


def wait_until(pred, timeout, step=0.2):
    """Poll pred; files that don't exist yet or aren't parsable yet count as 'not yet'."""
    def safe():
        try:
            return pred()
        except (OSError, KeyError, TypeError, IndexError, ValueError, yaml.YAMLError):
            return False
    return _wait_until(safe, timeout, step)   # backoff 1 min -> 0.3 s; idle checks every 0.3 s


def need_root():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    need_root()
    h = testhosts.TestHosts(n=4, jump=True, hidden=1,
                            gpus=["nvidia:A100:80GB:2", "nvidia:H100:80GB:8", "none",
                                  "amd:MI300X:192GB:8"],
                            workdir=str(tmp_path_factory.mktemp("hosts")))
    h.start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def mnt(fleet_factory, monkeypatch):
    monkeypatch.setenv("FLEETFS_TIME_SCALE", SCALE)
    return fleet_factory()


def spec_for(net, hosts, key=None, name="gpu"):
    key = key or net.key_path
    lines = ["type: fleet", f"name: {name}", "ssh_config:", "  user: fleet",
             f"  identity_file: {key}", "  hosts:"]
    for h in hosts:
        if h.hidden:
            lines += [f"  - hostname: {h.addr}",
                      "    proxy_jump:",
                      f"      hostname: {net.jump.addr}",
                      "      user: fleet",
                      f"      identity_file: {key}"]
        else:
            lines.append(f"  - {h.addr}")
    return ("\n".join(lines) + "\n").encode()


def fdir(m, name="gpu"):
    return m.p("projects", "main", "fleets", name)


def fstatus(m, name="gpu"):
    return yaml.safe_load(read_file(os.path.join(fdir(m, name), "status")))


def wait_idle(m, n, name="gpu", timeout=40):
    ok = wait_until(lambda: fstatus(m, name)["actual"]["idle"] == n, timeout, 0.2)
    assert ok, f"not {n} idle: {read_file(os.path.join(fdir(m, name), 'status')).decode()}"


def info(m, num, name="gpu"):
    return yaml.safe_load(read_file(os.path.join(fdir(m, name), "instances", str(num),
                                                 "info.yml")))


def ssh_via(m, num, cmd, name="gpu", timeout=20):
    stanza = os.path.join(fdir(m, name), "instances", str(num), "ssh")
    return subprocess.run(["ssh", "-F", stanza, "-o", "ConnectTimeout=5", f"{name}-{num}", cmd],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_provision_and_ssh(net, mnt):
    spec = spec_for(net, net.hosts)
    write_file(mnt.p("projects", "main", "fleets", "gpu.yml"), spec)
    wait_idle(mnt, len(net.hosts))
    # every host probed: resources and pinned host key
    for num in range(len(net.hosts)):
        i = info(mnt, num)
        assert i["status"] == "idle"
        assert i["resources"]["cpus"] >= 1
        assert i["resources"]["memory_mib"] > 0
        assert i["host_key"]
    gpus = [info(mnt, n)["resources"]["gpus"] for n in range(len(net.hosts))]
    assert any(g for g in gpus), gpus
    # the real ssh client logs in through the generated stanza, host verified, no prompt
    for num, h in enumerate(net.hosts):
        r = ssh_via(mnt, num, "echo hello-$(id -un)")
        assert r.returncode == 0, (h.addr, r.stderr)
        assert r.stdout.strip() == "hello-fleet"
    known = read_file(mnt.p("projects", "main", "ssh", "known_hosts")).decode()
    assert all(h.addr in known for h in net.hosts if not h.hidden)
    st = os.stat(mnt.p("projects", "main", "ssh", "id_rsa"))
    assert st.st_mode & 0o777 == 0o600
    ev = read_file(os.path.join(fdir(mnt), "events")).decode()
    assert "instance=0 idle" in ev
    # the project ssh_config can be Included
    cfg = read_file(mnt.p("projects", "main", "ssh_config")).decode()
    assert "Host gpu-0" in cfg and "StrictHostKeyChecking yes" in cfg


def test_unreachable_then_back(net, mnt):
    hosts = [h for h in net.hosts if not h.hidden][:2]
    write_file(mnt.p("projects", "main", "fleets", "gpu.yml"), spec_for(net, hosts))
    wait_idle(mnt, 2)
    victim = hosts[1]
    net.down(victim)
    try:
        st_path = os.path.join(fdir(mnt), "instances", "1", "status")
        ok = wait_until(lambda: yaml.safe_load(read_file(st_path))["reachable"] is False,
                        30, 0.3)
        assert ok, read_file(st_path)
        s = fstatus(mnt)
        assert s["actual"]["idle"] == 2 and s["actual"]["unreachable"] == 1  # never terminated
    finally:
        net.up(victim)
    ok = wait_until(lambda: fstatus(mnt)["actual"]["unreachable"] == 0, 30, 0.3)
    assert ok, fstatus(mnt)
    assert "reachable again" in read_file(os.path.join(fdir(mnt), "events")).decode()


def test_host_key_changed_is_never_accepted(net, mnt):
    h = [x for x in net.hosts if not x.hidden][0]
    write_file(mnt.p("projects", "main", "fleets", "gpu.yml"), spec_for(net, [h]))
    wait_idle(mnt, 1)
    pinned = info(mnt, 0)["host_key"]
    net.rotate_host_key(h)
    st_path = os.path.join(fdir(mnt), "instances", "0", "status")
    ok = wait_until(lambda: "host key changed" in read_file(st_path).decode(), 30, 0.3)
    assert ok, read_file(st_path)
    assert info(mnt, 0)["host_key"] == pinned
    r = ssh_via(mnt, 0, "true")
    assert r.returncode != 0  # the real client refuses too: known_hosts holds the old key


def test_wrong_key_stays_pending_with_reason(net, mnt, tmp_path):
    bad = str(tmp_path / "other_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", bad], check=True)
    h = [x for x in net.hosts if not x.hidden][0]
    write_file(mnt.p("projects", "main", "fleets", "gpu.yml"), spec_for(net, [h], key=bad))
    ok = wait_until(lambda: info(mnt, 0)["attempts"] >= 2, 30, 0.3)
    i = info(mnt, 0)
    assert ok and i["status"] == "pending", i
    assert "auth" in (i["last_error"] or "").lower(), i
    s = fstatus(mnt)
    assert s["next_retry"] is not None and s["last_error"]


def test_add_and_remove_hosts(net, mnt):
    vis = [h for h in net.hosts if not h.hidden]
    path = mnt.p("projects", "main", "fleets", "gpu.yml")
    write_file(path, spec_for(net, vis[:3]))
    wait_idle(mnt, 3)
    # remove the middle host: instance 1 terminates, 0 and 2 keep their numbers
    write_file(path, spec_for(net, [vis[0], vis[2]]))
    inst = os.path.join(fdir(mnt), "instances")
    ok = wait_until(lambda: sorted(os.listdir(inst)) == ["0", "2"], 20, 0.2)
    assert ok, os.listdir(inst)
    # add it back: it gets the lowest free number
    write_file(path, spec_for(net, vis[:3]))
    wait_idle(mnt, 3)
    assert sorted(os.listdir(inst)) == ["0", "1", "2"]
    assert info(mnt, 1)["host"] == vis[1].addr


def test_in_place_change_refused(net, mnt):
    h = [x for x in net.hosts if not x.hidden][0]
    path = mnt.p("projects", "main", "fleets", "gpu.yml")
    spec = spec_for(net, [h])
    write_file(path, spec)
    wait_idle(mnt, 1)
    werr, cerr = write_fd(path, spec.replace(b"  user: fleet", b"  user: root"))
    assert cerr == errno.EINVAL
    assert read_file(path) == spec
    ev = read_file(mnt.p("projects", "main", "events")).decode()
    assert "can't change in place" in ev


def test_delete_fleet(net, mnt):
    vis = [h for h in net.hosts if not h.hidden][:2]
    path = mnt.p("projects", "main", "fleets", "gpu.yml")
    write_file(path, spec_for(net, vis))
    wait_idle(mnt, 2)
    import pwd
    pub = read_file(mnt.p("projects", "main", "ssh", "id_rsa.pub")).decode().strip()
    ak = os.path.join(pwd.getpwnam(vis[0].user).pw_dir, ".ssh", "authorized_keys")
    assert pub in read_file(ak).decode()          # installed for the user's ssh access
    os.unlink(path)
    assert not os.path.exists(path)
    ok = wait_until(lambda: not os.path.exists(fdir(mnt)), 20, 0.2)
    assert ok, read_file(os.path.join(fdir(mnt), "status"))
    ev = read_file(mnt.p("projects", "main", "events")).decode()
    assert "terminated (terminated_by_user); project key removed from" in ev
    assert pub not in read_file(ak).decode()      # and taken back on termination
    # the hosts are free for another fleet
    write_file(mnt.p("projects", "main", "fleets", "other.yml"),
               spec_for(net, vis, name="other"))
    wait_idle(mnt, 2, name="other")


def test_kill9_during_provisioning(net, mnt):
    path = mnt.p("projects", "main", "fleets", "gpu.yml")
    spec = spec_for(net, net.hosts)
    write_file(path, spec)
    mnt.kill9()
    mnt.start()
    assert read_file(path) == spec
    wait_idle(mnt, len(net.hosts))
    inst = sorted(os.listdir(os.path.join(fdir(mnt), "instances")), key=int)
    assert inst == [str(i) for i in range(len(net.hosts))]  # no duplicate, numbers stable
    hostsseen = [info(mnt, int(n))["host"] for n in inst]
    assert len(set(hostsseen)) == len(hostsseen)


def test_host_in_one_fleet_only(net, mnt):
    h = [x for x in net.hosts if not x.hidden][0]
    write_file(mnt.p("projects", "main", "fleets", "a1.yml"), spec_for(net, [h], name="a1"))
    werr, cerr = write_fd(mnt.p("projects", "main", "fleets", "b1.yml"),
                          spec_for(net, [h], name="b1"))
    assert cerr == errno.EINVAL
    assert "already in fleet main/a1" in read_file(mnt.p("projects", "main", "events")).decode()


@pytest.mark.parametrize("body,frag", [
    (b"type: fleet\n", "No ssh_config or nodes"),
    (b"type: fleet\nnodes: 1\nssh_config:\n  hosts: [a]\n", "mutually exclusive"),
    (b"type: fleet\nname: other\nnodes: 1\n", "name"),
    (b"type: fleet\nnodes: 1\nresources:\n  gpu: 'A100:80GB:x'\n", "gpu"),
    (b"type: fleet\nnodes: 1\nbogus: 1\n", 'unknown key "bog…" (5 chars)'),
])
def test_invalid_specs(mnt, body, frag):
    path = mnt.p("projects", "main", "fleets", "bad.yml")
    werr, cerr = write_fd(path, body)
    assert cerr == errno.EINVAL
    assert not os.path.exists(path)
    ev = read_file(mnt.p("projects", "main", "events")).decode()
    assert "fleets/bad.yml:" in ev and frag in ev, ev[-800:]


def test_refused_create_is_gone_when_close_returns(mnt):
    """The name of a refused first write must be gone as soon as close() returns: RELEASE
    reaches the daemon after close() has returned, so existence must not hang on it."""
    d = mnt.p("projects", "main", "fleets")
    for i in range(60):
        path = os.path.join(d, "r%d.yml" % (i % 3))
        werr, cerr = write_fd(path, b"type: fleet\n")
        assert cerr == errno.EINVAL
        assert not os.path.exists(path), i
        assert "r%d.yml" % (i % 3) not in os.listdir(d), i
    cfg = mnt.p("projects", "main", "backends", "lambda", "config.yml")
    os.makedirs(os.path.dirname(cfg), exist_ok=True)
    for i in range(30):
        werr, cerr = write_fd(cfg, b"type: lambda\nbogus: [\n")
        assert cerr == errno.EINVAL
        assert not os.path.exists(cfg), i
    # deterministic form of the race: a second descriptor keeps the file open past close()
    path = os.path.join(d, "dup.yml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"type: fleet\n")
    fd2 = os.dup(fd)
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.EINVAL
    assert not os.path.exists(path)
    assert "dup.yml" not in os.listdir(d)
    # the same open file can still be fixed and saved
    os.ftruncate(fd2, 0)
    os.pwrite(fd2, b"type: fleet\nnodes: 1\n", 0)
    os.close(fd2)
    assert read_file(path) == b"type: fleet\nnodes: 1\n"


def test_cloud_fleet_waits_with_reason(mnt):
    path = mnt.p("projects", "main", "fleets", "cloud.yml")
    write_file(path, b"type: fleet\nnodes: 2\nresources:\n  gpu: 24GB..\n")
    ok = wait_until(lambda: os.path.isdir(os.path.join(fdir(mnt, "cloud"), "instances", "1")),
                    10, 0.2)
    assert ok
    s = fstatus(mnt, "cloud")
    assert s["kind"] == "cloud" and s["actual"]["pending"] == 2
    # no backend configured: no offers, said in the reason, retried with backoff
    assert wait_until(lambda: "no offer matches" in str(fstatus(mnt, "cloud")["instances"][0]
                                                         ["reason"]), 10, 0.2)


def test_hung_host_does_not_stall_the_mount(net, mnt):
    """Live status reads of a host that accepts TCP but never speaks wait at most ~3 s, and
    the rest of the mount keeps answering meanwhile."""
    import threading
    h = [x for x in net.hosts if not x.hidden][0]
    write_file(mnt.p("projects", "main", "fleets", "gpu.yml"), spec_for(net, [h]))
    wait_idle(mnt, 1)
    time.sleep(float(SCALE) * 60 + 0.5)      # let the last check age past the status TTL
    net.down(h, kind="hang")
    try:
        st_path = os.path.join(fdir(mnt), "instances", "0", "status")
        took = []

        def reader():
            t0 = time.monotonic()
            read_file(st_path)
            took.append(time.monotonic() - t0)

        ts = [threading.Thread(target=reader) for _ in range(16)]
        for t in ts:
            t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        os.stat(mnt.p("projects", "main", "fleets", "gpu.yml"))
        read_file(os.path.join(fdir(mnt), "events"))
        other = time.monotonic() - t0
        for t in ts:
            t.join(20)
        assert other < 1.0, f"unrelated operations waited {other:.2f} s"
        assert len(took) == 16 and max(took) < 4.5, took
    finally:
        net.up(h)
