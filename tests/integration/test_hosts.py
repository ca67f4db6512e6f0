"""Self-test of tests/hosts: real sshd hosts in network namespaces, reached with the real ssh
client. Needs root (network namespaces); skipped otherwise."""
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTS_DIR = os.path.join(REPO, "tests", "hosts")
sys.path.insert(0, HOSTS_DIR)
import hosts as th  # noqa: E402

QUERY = "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits"


@pytest.fixture(autouse=True)
def _need_root():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")


@pytest.fixture
def h4():
    """4 hosts (h0, h1 visible; h2, h3 behind the jump host), stopped after the test; the
    test also fails if anything of this run is left behind."""
    h = th.TestHosts(n=4, jump=True, gpus="nvidia:A100:80GB:2")
    h.start()
    try:
        yield h
    finally:
        names = [x.netns for x in h.all_hosts]
        h.stop()
        assert_gone(h, names)


def our_netns():
    return [ln.split()[0] for ln in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                   text=True).stdout.splitlines()
            if ln.startswith(th.NS_PREFIX)]


def assert_gone(h, names):
    left = [n for n in our_netns() if n in names]
    assert not left, f"namespaces left: {left}"
    links = os.listdir("/sys/class/net")
    assert h.bridge not in links and not [x for x in h.root_links if x in links]
    routes = subprocess.run(["ip", "route", "show", "proto", str(th.ROUTE_PROTO)],
                            capture_output=True, text=True).stdout
    if h.hidden_subnet:
        assert h.hidden_subnet not in routes
    assert not os.path.exists(os.path.join(th.REGISTRY, f"{h.tag}.json"))
    for x in h.all_hosts:
        assert not os.path.exists(f"/run/netns/{x.netns}")


def client_config(path, key, known_hosts, timeout=3):
    """An ssh_config holding the options, so that the ssh that -J starts for the jump host
    gets them too (-J passes -F on, not -i/-o)."""
    with open(path, "w") as f:
        f.write("Host *\n"
                "  User fleet\n"
                f"  IdentityFile {key}\n"
                "  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {known_hosts}\n"
                "  GlobalKnownHostsFile /dev/null\n"
                "  StrictHostKeyChecking yes\n"
                "  BatchMode yes\n"
                "  UpdateHostKeys no\n"
                f"  ConnectTimeout {timeout}\n")
    return path


def write_known_hosts(path, hosts):
    with open(path, "w") as f:
        for x in hosts:
            for k in x.host_pubkeys:
                f.write(f"{x.addr} {k}\n")
    return path


def ssh(cfg, host, cmd, jump=None, timeout=20, opts=()):
    argv = ["ssh", "-F", cfg, *opts]
    if jump is not None:
        argv += ["-J", f"{jump.user}@{jump.addr}:{jump.port}"]
    argv += ["-p", str(host.port), f"{host.user}@{host.addr}", "--", cmd]
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    r.elapsed = time.monotonic() - t
    return r


@pytest.fixture
def cli(h4, tmp_path):
    kh = write_known_hosts(str(tmp_path / "known_hosts"), h4.all_hosts)
    return client_config(str(tmp_path / "ssh_config"), h4.key_path, kh)


def test_layout(h4):
    assert [x.name for x in h4.hosts] == ["h0", "h1", "h2", "h3"]
    assert [x.hidden for x in h4.hosts] == [False, False, True, True]
    assert h4.jump.name == "jump" and not h4.jump.hidden and h4.jump not in h4.hosts
    assert all(x.via is h4.jump for x in h4.hosts if x.hidden)
    for x in h4.all_hosts:
        assert x.port == 22 and x.user == "fleet" and x.key_path == h4.key_path
        assert len(x.host_pubkeys) == 3 and x.netns.startswith(f"flfs-{os.getpid()}-")
        assert len(x.netns) and re.fullmatch(r"10\.\d+\.\d+\.\d+", x.addr)
        assert x.netns in our_netns()
    # own ed25519/ecdsa host keys per host (the RSA one is shared by the run)
    assert len({x.host_pubkeys[0] for x in h4.all_hosts}) == 5
    assert len({x.host_pubkeys[1] for x in h4.all_hosts}) == 5
    assert len(h4.bridge) <= 15 and all(len(n) <= 15 for n in h4.root_links)
    for p in (h4.key_path, h4.rsa_key_path, h4.ecdsa_key_path):
        assert os.stat(p).st_mode & 0o077 == 0
    with open(h4.state_path) as f:
        st = json.load(f)
    assert st["pid"] == os.getpid() and set(st["netns"]) == {x.netns for x in h4.all_hosts}
    assert os.path.exists(os.path.join(th.REGISTRY, f"{h4.tag}.json"))
    assert h4.startup_seconds < 10


def test_nvidia_smi_on_visible_and_hidden_host(h4, cli):
    vis, hid = h4.hosts[0], h4.hosts[3]
    r = ssh(cli, vis, QUERY)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "NVIDIA A100-SXM4-80GB, 81920\n" * 2
    r = ssh(cli, hid, QUERY, jump=h4.jump)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "NVIDIA A100-SXM4-80GB, 81920\n" * 2
    r = ssh(cli, hid, "hostname; ip -4 -o addr show eth0", jump=h4.jump)
    assert r.stdout.split("\n")[0] == "h3" and hid.addr in r.stdout
    # the jump host itself has no GPUs (no nvidia-smi at all) and two interfaces
    r = ssh(cli, h4.jump, "command -v nvidia-smi")
    assert r.returncode != 0 and r.stdout == ""
    r = ssh(cli, h4.jump, "ip -4 -o addr show")
    assert all(a in r.stdout for a in h4.jump.addrs) and len(h4.jump.addrs) == 2


def test_hidden_host_not_reachable_directly(h4, cli):
    hid = h4.hosts[2]
    r = ssh(cli, hid, "true", opts=["-o", "ConnectTimeout=2"])
    assert r.returncode == 255 and r.elapsed < 2.5, (r.elapsed, r.stderr)
    assert "No route to host" in r.stderr or "timed out" in r.stderr
    with pytest.raises(OSError):
        th._banner(hid.addr, 22, 1.0)          # from the root namespace
    assert h4.banner(hid).startswith("SSH-2.0-OpenSSH")   # from the jump host
    # nor from a visible host (no route there either), and nothing has a default route
    r = ssh(cli, h4.hosts[0], f"ip route get {hid.addr} 2>&1; ip route show default")
    assert "unreachable" in r.stdout or "Network is unreachable" in r.stdout, r.stdout
    for x in h4.all_hosts:
        assert "default" not in h4.netns_run(x, ["ip", "-4", "route"]).stdout
    assert h4.netns_run(h4.jump, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout == "0\n"


def test_all_client_keys_and_helper(h4, tmp_path):
    kh = write_known_hosts(str(tmp_path / "kh"), h4.all_hosts)
    for key in (h4.key_path, h4.rsa_key_path, h4.ecdsa_key_path):
        cfg = client_config(str(tmp_path / "cfg"), key, kh)
        r = ssh(cfg, h4.hosts[1], "id -un; echo $0")
        assert r.returncode == 0 and r.stdout.split() == ["fleet", "sh"], r.stderr
    assert pwd.getpwnam("fleet").pw_shell == "/bin/sh"
    # an unauthorized key is refused
    other = h4.new_client_key()
    cfg = client_config(str(tmp_path / "cfg"), other, kh)
    r = ssh(cfg, h4.hosts[1], "true")
    assert r.returncode == 255 and "Permission denied" in r.stderr
    # the built-in ssh_config / known_hosts do the same, -J included
    assert h4.ssh(h4.hosts[2], "hostname").stdout == "h2\n"
    assert h4.ssh("h0", "echo $PATH").stdout.startswith(h4.hosts[0].bindir + ":")


def test_down_up(h4, cli):
    vis, hid = h4.hosts[0], h4.hosts[3]
    for kind, expect in (("link", "timed out"), ("sshd", "Connection refused"),
                         ("hang", "timed out")):
        h4.down(vis, kind=kind)
        r = ssh(cli, vis, "true", opts=["-o", "ConnectTimeout=1"])
        assert r.returncode == 255 and expect in r.stderr, (kind, r.stderr)
        assert r.elapsed < 5
        h4.up(vis)
        r = ssh(cli, vis, "echo up")
        assert r.returncode == 0 and r.stdout == "up\n", (kind, r.stderr)
    # a hidden host, and the jump host
    h4.down(hid, kind="sshd")
    r = ssh(cli, hid, "true", jump=h4.jump)
    assert r.returncode == 255
    h4.up(hid)
    h4.down(h4.jump)
    r = ssh(cli, hid, "true", jump=h4.jump, opts=["-o", "ConnectTimeout=1"])
    assert r.returncode == 255
    h4.up(h4.jump)
    assert ssh(cli, hid, "echo ok", jump=h4.jump).stdout == "ok\n"


def test_open_session_survives_sshd_restart_but_not_sshd_down(h4, cli):
    vis = h4.hosts[1]
    p = subprocess.Popen(["ssh", "-F", cli, f"fleet@{vis.addr}", "echo started; sleep 30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "started\n"
        h4.restart_sshd(vis)
        assert p.poll() is None
        h4.down(vis, kind="sshd")
        assert p.wait(timeout=10) != 0
    finally:
        p.kill()
        p.wait()
    h4.up(vis)


def test_rotate_host_key(h4, cli):
    vis, hid = h4.hosts[0], h4.hosts[2]
    old = list(vis.host_pubkeys)
    other = list(h4.hosts[1].host_pubkeys)
    new = h4.rotate_host_key(vis)
    assert new == vis.host_pubkeys and not set(new) & set(old)
    r = ssh(cli, vis, "true")
    assert r.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr or \
        "Host key verification failed" in r.stderr, r.stderr
    # a hidden host (through the jump host) too
    h4.rotate_host_key(hid)
    r = ssh(cli, hid, "true", jump=h4.jump)
    assert r.returncode == 255 and "Host key verification failed" in r.stderr
    # trusting the new keys makes both work again
    kh = re.search(r"UserKnownHostsFile (\S+)", open(cli).read()).group(1)
    write_known_hosts(kh, h4.all_hosts)
    assert ssh(cli, vis, "echo ok").stdout == "ok\n"
    assert ssh(cli, hid, "echo ok", jump=h4.jump).stdout == "ok\n"
    # the other hosts kept their keys
    assert h4.hosts[1].host_pubkeys == other


def test_gpus(h4, cli):
    x = h4.hosts[1]

    def run(cmd):
        return ssh(cli, x, cmd)

    h4.set_gpus(x, "nvidia:H100:8")
    r = run(QUERY)
    assert r.stdout == "NVIDIA H100 80GB HBM3, 81559\n" * 8
    r = run("nvidia-smi --query-gpu=name,memory.total,uuid,driver_version "
            "--format=csv,noheader,nounits")
    rows = [ln.split(", ") for ln in r.stdout.splitlines()]
    assert len(rows) == 8 and all(len(rw) == 4 for rw in rows)
    assert len({rw[2] for rw in rows}) == 8 and all(rw[2].startswith("GPU-") for rw in rows)
    r = run("nvidia-smi --query-gpu=index,name,memory.total --format=csv")
    assert r.stdout.splitlines()[0] == "index, name, memory.total [MiB]"
    assert r.stdout.splitlines()[1] == "0, NVIDIA H100 80GB HBM3, 81559 MiB"
    h4.set_gpus(x, "nvidia:T4+nvidia:L4:2")
    assert run(QUERY).stdout == "Tesla T4, 15360\nNVIDIA L4, 23034\nNVIDIA L4, 23034\n"
    h4.set_gpus(x, "none")
    r = run(QUERY)
    assert r.returncode == 127
    h4.set_gpus(x, "nvidia:nodriver")
    assert run(QUERY).returncode == 9
    h4.set_gpus(x, "nvidia:nodevices")
    r = run(QUERY)
    assert r.returncode == 6 and "No devices were found" in r.stdout
    h4.set_gpus(x, ["NVIDIA Weird GPU, 1234", "garbage"])
    assert run(QUERY).stdout == "NVIDIA Weird GPU, 1234\ngarbage\n"
    h4.set_gpus(x, "amd:MI300X:192GB:8")
    r = run(f"{QUERY}; echo rc=$?; amd-smi static --json --asic --vram --bus --driver")
    assert r.stdout.startswith("rc=127\n")
    data = json.loads(r.stdout.split("\n", 1)[1])
    assert len(data) == 8
    assert data[0]["asic"]["market_name"] == "AMD Instinct MI300X"
    assert data[0]["vram"]["size"] == {"value": 196592, "unit": "MB"}
    assert data[0]["bus"]["bdf"] and data[0]["driver"]["version"]


def test_resources(h4, cli):
    x = h4.hosts[0]
    h4.set_resources(x, cpus=12, memory_mib=65536)
    probe = "nproc; grep MemTotal /proc/meminfo; df -P / | tail -1"
    r = ssh(cli, x, probe)
    lines = r.stdout.splitlines()
    assert lines[0] == "12" and lines[1].split()[1] == str(65536 * 1024), r.stdout
    h4.set_resources(x, memory_mib=1024)
    assert ssh(cli, x, "grep MemTotal /proc/meminfo").stdout.split()[1] == str(1024 * 1024)
    h4.restart_sshd(x)                    # a new sshd (mount namespace) keeps it
    assert ssh(cli, x, "grep MemTotal /proc/meminfo").stdout.split()[1] == str(1024 * 1024)
    # other hosts and the root namespace see the real values
    real = open("/proc/meminfo").readline().split()[1]
    assert ssh(cli, h4.hosts[1], "grep MemTotal /proc/meminfo").stdout.split()[1] == real
    h4.set_resources(x, cpus=0)
    assert ssh(cli, x, "nproc").stdout.strip() == str(os.cpu_count())
    h4.set_resources(x, disk_mib=500 * 1024, arch="aarch64")
    r = ssh(cli, x, "uname -m; uname -s; df -Pk /")
    lines = r.stdout.splitlines()
    assert lines[:2] == ["aarch64", "Linux"] and lines[2].startswith("Filesystem")
    assert lines[3].split()[1] == str(500 * 1024 * 1024) and lines[3].split()[5] == "/"
    h4.set_resources(x, disk_mib=0, arch="")
    assert ssh(cli, x, "uname -m").stdout.strip() == os.uname().machine


PROBE = ("LC_ALL=C; export LC_ALL; echo '### cpus'; nproc; echo '### arch'; uname -m; "
         "echo '### meminfo'; grep '^MemTotal:' /proc/meminfo; echo '### disk'; df -Pk /; "
         "echo '### nvidia'; command -v nvidia-smi >/dev/null && timeout 60 nvidia-smi "
         "--query-gpu=name,memory.total --format=csv,noheader,nounits; "
         "echo '### amd'; command -v amd-smi >/dev/null && amd-smi static --json --asic --vram; "
         "echo '### addrs'; ip -4 -o addr show; echo '### end'")


def test_probe_like_session(h4, cli):
    """What fleetfs's probe runs (core/probe.c), as the test user, on a hidden host."""
    x = h4.hosts[2]
    h4.set_gpus(x, "nvidia:L40S:4+amd:MI300X:2")
    h4.set_resources(x, cpus=64, memory_mib=512 * 1024, disk_mib=2 * 1024 * 1024)
    r = ssh(cli, x, PROBE, jump=h4.jump)
    assert r.returncode == 0, r.stderr
    sec = dict(re.findall(r"### (\w+)\n(.*?)(?=### )", r.stdout, re.S))
    assert sec["cpus"] == "64\n" and sec["meminfo"].split()[1] == str(512 * 1024 * 1024)
    assert sec["nvidia"] == "NVIDIA L40S, 46068\n" * 4
    assert [g["asic"]["market_name"] for g in json.loads(sec["amd"])] == \
        ["AMD Instinct MI300X"] * 2
    assert f"inet {x.addr}/24" in sec["addrs"] and "127.0.0.1" in sec["addrs"]
    assert sec["disk"].splitlines()[1].split()[1] == str(2 * 1024 * 1024 * 1024)


def test_workdir_unreadable_by_fleet(tmp_path):
    """pytest's tmp_path is 0700: the user-visible files go to /run/flfs-hosts/<tag>."""
    wd = tmp_path / "h"
    os.makedirs(wd)
    with th.TestHosts(n=1, workdir=str(wd)) as h:
        assert h.pubdir == os.path.join(th.REGISTRY, h.tag)
        assert h.ssh("h0", "id -un").stdout == "fleet\n"
        names = [x.netns for x in h.all_hosts]
        pub = h.pubdir
    assert_gone(h, names)
    assert not os.path.exists(pub)
    assert os.path.exists(wd / "h0" / "sshd.log")   # the caller's workdir (logs) stays


def test_exception_and_cleanup():
    with pytest.raises(RuntimeError):
        with th.TestHosts(n=2) as h:
            names = [x.netns for x in h.all_hosts]
            wd = h.workdir
            raise RuntimeError("boom")
    assert_gone(h, names)
    assert not os.path.exists(wd)     # a workdir it made itself goes too
    assert not [p for p in th._pids_in_netns(names).values() if p]


CHILD = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
sys.path.insert(0, {dir!r})
import hosts
h = hosts.TestHosts(n=2, jump=True).start()
print(h.tag, flush=True)
if sys.argv[1] == "raise":
    raise SystemExit(3)
if sys.argv[1] == "sigint":
    os.kill(os.getpid(), 2)
time.sleep(120)
"""


def _child(mode):
    p = subprocess.Popen([sys.executable, "-c", CHILD.format(dir=HOSTS_DIR), mode],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tag = p.stdout.readline().strip()
    assert tag, p.stderr.read()
    return p, tag


@pytest.mark.parametrize("mode,sig", [("raise", None), ("sigint", None),
                                      ("sleep", signal.SIGTERM), ("sleep", signal.SIGHUP)])
def test_owner_exit_cleans_up(mode, sig):
    p, tag = _child(mode)
    try:
        if sig:
            p.send_signal(sig)
        p.wait(timeout=30)
    finally:
        p.kill()
        p.wait()
    assert th.leftovers(pid=p.pid) == []
    assert not os.path.exists(os.path.join(th.REGISTRY, f"{tag}.json"))


def test_killed_owner_cleanup_stale():
    p, tag = _child("sleep")
    p.kill()
    p.wait()
    left = th.leftovers(pid=p.pid)
    assert any(x.startswith("netns ") for x in left)
    # pdeathsig: its sshd listeners died with it
    time.sleep(0.2)
    with open(os.path.join(th.REGISTRY, f"{tag}.json")) as f:
        st = json.load(f)
    for x in st["hosts"]:
        assert not th._pid_running(x["sshd_pid"])
    removed = th.cleanup_stale()
    assert any(tag in r for r in removed)
    assert th.leftovers(pid=p.pid) == []
    assert not [n for n in our_netns() if n.startswith(f"flfs-{p.pid}-")]
    routes = subprocess.run(["ip", "route", "show", "proto", str(th.ROUTE_PROTO)],
                            capture_output=True, text=True).stdout
    assert st["hidden_subnet"] not in routes


def test_cli(tmp_path):
    wd = str(tmp_path / "cli")
    os.makedirs(wd)
    cmd = [os.path.join(HOSTS_DIR, "hosts"), "-w", wd]
    try:
        r = subprocess.run(cmd + ["up", "2", "--jump"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert "h1" in r.stdout and "via jump" in r.stdout
        r = subprocess.run(cmd + ["ssh", "h1", "hostname"], capture_output=True, text=True,
                           timeout=30)
        assert r.stdout == "h1\n", r.stderr
        r = subprocess.run(cmd + ["gpus", "h0", "nvidia:L4"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(cmd + ["ssh", "h0", QUERY], capture_output=True, text=True,
                           timeout=30)
        assert r.stdout == "NVIDIA L4, 23034\n", r.stderr
        # a detached run is not "stale" although its owner exited
        th.cleanup_stale()
        assert subprocess.run(cmd + ["ssh", "h0", "true"], timeout=30).returncode == 0
    finally:
        r = subprocess.run(cmd + ["down"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(wd, "state.json")) as f:
        st = json.load(f)
    assert not [n for n in our_netns() if n in st["netns"]]


def test_start_many_16():
    h = th.start_many(16)
    try:
        assert len(h.hosts) == 16 and len({x.addr for x in h.hosts}) == 16
        assert all(h.banner(x).startswith("SSH-2.0-") for x in h.hosts)
        print(f"16 hosts up in {h.startup_seconds:.2f}s: {h.timings}")
        assert h.startup_seconds < 20
    finally:
        names = [x.netns for x in h.all_hosts]
        h.stop()
    assert_gone(h, names)
