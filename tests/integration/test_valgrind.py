"""The daemon under valgrind (memcheck): a realistic session of tool writes, refusals, a root
config apply with key rotation, renames and removals must produce no memory error and no
definite leak. valgrind's --error-exitcode turns any finding into the daemon's exit code."""
import os
import shutil
import subprocess

import pytest

from fleetlib import AWS, LAMBDA, Fleet, read_file, write_fd, write_file

VALGRIND = shutil.which("valgrind")
ERR_EXIT = 97


class ValgrindFleet(Fleet):
    def cmdline(self):
        supp = os.path.join(os.path.dirname(__file__), "valgrind.supp")
        return ["valgrind", "--quiet", f"--error-exitcode={ERR_EXIT}", "--leak-check=full",
                "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
                "--track-fds=no", f"--suppressions={supp}",
                *super().cmdline()]


@pytest.mark.skipif(not VALGRIND, reason="valgrind is not installed")
def test_daemon_clean_under_valgrind(fleet_base):
    f = ValgrindFleet(fleet_base, "valgrind")
    try:
        f.start(timeout=60)
        bk = f.p("projects", "main", "backends")
        os.mkdir(os.path.join(bk, "lambda"))
        os.mkdir(os.path.join(bk, "aws-dev"))
        cfg = os.path.join(bk, "lambda", "config.yml")
        write_file(cfg, LAMBDA)
        # a refused write, an oversized one, a YAML bomb
        assert write_fd(cfg, b"type: lambda\nfoo: 1\n") == (None, 22)
        assert write_fd(cfg, b"a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n") == (None, 22)
        assert write_fd(cfg, b"x" * (1024 * 1024 + 10)) == (27, 27)
        assert read_file(cfg) == LAMBDA
        # editors and copy tools
        subprocess.run(["vim", "-u", "NONE", "-i", "NONE", "-n", "-es", "-c",
                        "set backupcopy=auto", "-c", "%s/api_key: /api_key: v/", "-c", "wq",
                        cfg], check=True, timeout=60)
        subprocess.run(["sed", "-i", "s/api_key: v/api_key: s/", cfg], check=True, timeout=60)
        src = os.path.join(fleet_base, "valgrind-src.yml")
        write_file(src, AWS.replace(b"type: aws\n", b"type: aws\n# named\n"))
        subprocess.run(["rsync", "-a", src, os.path.join(bk, "aws-dev", "config.yml")],
                       check=True, timeout=60)
        # listing, status, events, the root config, and a root apply that rotates keys
        subprocess.run(["ls", "-lR", f.mnt], check=True, timeout=60, capture_output=True)
        root = read_file(f.p("config.yml"))
        assert b"aws-dev" in root
        key = b"A" * 43 + b"="
        write_file(f.p("config.yml"), root + b"encryption:\n  keys:\n  - type: aes\n"
                   b"    name: k1\n    secret: " + key + b"\n")
        assert b"name: k1" in read_file(f.p("config.yml"))
        # removals
        os.unlink(cfg)
        os.rmdir(os.path.join(bk, "lambda"))
        subprocess.run(["rm", "-r", f.p("projects", "main")], timeout=60)
        rc = f.umount(timeout=120)
    finally:
        f.teardown()
    assert rc == 0, f"valgrind reported errors (exit {rc}):\n{f.log()[-6000:]}"


@pytest.mark.skipif(not VALGRIND, reason="valgrind is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="the fake's VMs are test hosts: root needed")
def test_aws_fleet_clean_under_valgrind(fleet_base, tmp_path, monkeypatch):
    """An AWS fleet through the fake under valgrind: credentials, quotas, the XML of every
    EC2 answer, RunInstances, polls, the SSH probe, terminate, the orphan sweep."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "fakes"))
    from aws_fake import DEFAULT_KEY, AwsFake
    import test_aws_cloud as ac
    cat = tmp_path / "catalog"
    cat.mkdir()
    (cat / "aws.csv").write_text(ac.CATALOG)
    monkeypatch.setenv("FLEETFS_TIME_SCALE", ac.SCALE)
    with AwsFake(keys=[DEFAULT_KEY], hosts=1, boot_seconds=0.3, terminate_seconds=0.3,
                 terminated_linger=60) as fake:
        monkeypatch.setenv("FLEETFS_CA_BUNDLE", fake.ca_path)
        monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
        f = ValgrindFleet(fleet_base, "valgrind-aws", opts=[f"catalog={cat}"])
        try:
            f.start(timeout=60)
            os.makedirs(f.p("projects", "main", "backends", "aws"))
            write_file(f.p("projects", "main", "backends", "aws", "config.yml"),
                       ac.aws_config(extra="tags: {team: ml}\n"))
            write_file(f.p("projects", "main", "fleets", "gpu.yml"), ac.spec())
            ac.wait_status(f, 0, "idle", timeout=240)
            read_file(f.p("projects", "main", "fleets", "gpu", "instances", "0", "info.yml"))
            os.unlink(f.p("projects", "main", "fleets", "gpu.yml"))
            assert ac.wait_until(lambda: not [v for v in fake.vms()
                                              if v["phase"] in ("booting", "running")], 120)
            rc = f.umount(timeout=120)
        finally:
            f.teardown()
    assert rc == 0, f"valgrind reported errors (exit {rc}):\n{f.log()[-6000:]}"
