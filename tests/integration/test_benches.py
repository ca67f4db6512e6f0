"""Every bench in bench/ at a small size (--small), so that none of them rots: each must
finish, offline, and print its table. The full runs are `make bench`, `make offers-bench`,
`make fleet-bench` and `make cloud-bench`; these runs take about a minute together.

Each bench runs as a child process with its own session; on a timeout it gets SIGTERM (its
finally block unmounts and removes its temporary directory), then SIGKILL after a bound."""
import os
import shutil
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable or "/usr/bin/python3"


def run_bench(script, args, timeout, tmp_path):
    out = tmp_path / "results.md"
    argv = [PYTHON, os.path.join(REPO, "bench", script), "--small", "--out", str(out), *args]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the bench cleans up on SIGTERM
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"{script} --small did not finish in {timeout} s\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"{script}: exit {proc.returncode}\n{stderr[-3000:]}"
    assert out.exists() and out.stat().st_size > 0, f"{script} wrote no {out}"
    return stdout, out.read_text()


def needs_hosts():
    """The fleet and cloud benches run sshd hosts in network namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root (test hosts live in network namespaces)")
    for tool in ("ip", "ssh", "sshd", "openssl"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            pytest.skip(f"needs {tool}")


def test_bench(tmp_path):
    stdout, md = run_bench("bench.py", ["--tmpdir", str(tmp_path)], 120, tmp_path)
    assert "fleetfs bench: 20 projects x 5 backends" in stdout, stdout
    for row in ("ls -lR", "rsync", "commit latency"):
        assert row in stdout, stdout
    assert "ls -lR" in md


def test_offers_bench(tmp_path):
    stdout, md = run_bench("offers_bench.py", ["--tmpdir", str(tmp_path)], 120, tmp_path)
    assert "fleetfs offers bench:" in stdout, stdout
    assert "ls offers/" in stdout and "daemon RSS" in stdout, stdout
    assert "ls offers/" in md


def test_fleet_bench(tmp_path):
    needs_hosts()
    stdout, md = run_bench("fleet_bench.py", [], 150, tmp_path)
    assert "fleetfs fleet bench: 2 hosts" in stdout, stdout
    assert "single-host probe" in stdout, stdout


def test_cloud_bench(tmp_path):
    needs_hosts()
    stdout, md = run_bench("cloud_bench.py", [], 240, tmp_path)
    assert "fleetfs cloud bench:" in stdout, stdout
