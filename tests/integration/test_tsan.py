"""The daemon built with ThreadSanitizer (make fleetfs-tsan): the engine's scheduler and
workers, live status readers and FUSE writers at the same time must show no data race.
TSan reports go to the daemon's log and make it exit with TSAN_EXIT."""
import os
import subprocess
import sys
import threading

import pytest

from fleetlib import REPO, Fleet, read_file, write_file
import test_fleets as tf

TSAN_BIN = os.path.join(REPO, "fleetfs-tsan")
TSAN_EXIT = 66


class TsanFleet(Fleet):
    def cmdline(self):
        return [TSAN_BIN] + super().cmdline()[1:]


@pytest.mark.skipif(not os.path.exists(TSAN_BIN), reason="make fleetfs-tsan first")
def test_engine_under_tsan(fleet_base, net, monkeypatch):
    monkeypatch.setenv("FLEETFS_TIME_SCALE", tf.SCALE)
    monkeypatch.setenv("TSAN_OPTIONS", f"exitcode={TSAN_EXIT} halt_on_error=0 "
                       "second_deadlock_stack=1")
    m = TsanFleet(fleet_base, "tsan")
    try:
        m.start(timeout=60)
        path = m.p("projects", "main", "fleets", "gpu.yml")
        write_file(path, tf.spec_for(net, net.hosts))
        tf.wait_idle(m, len(net.hosts), timeout=90)
        stop = threading.Event()

        def reader(num):
            p = os.path.join(tf.fdir(m), "instances", str(num), "status")
            while not stop.is_set():
                try:
                    read_file(p)
                except OSError:
                    pass

        ts = [threading.Thread(target=reader, args=(i % len(net.hosts),)) for i in range(8)]
        for t in ts:
            t.start()
        # writers meanwhile: remove a host, add it back, touch backends
        vis = [h for h in net.hosts if not h.hidden]
        write_file(path, tf.spec_for(net, vis))
        os.mkdir(m.p("projects", "main", "backends", "lambda"))
        write_file(m.p("projects", "main", "backends", "lambda", "config.yml"),
                   b"type: lambda\ncreds:\n  type: api_key\n  api_key: tsanKEY0123456789\n")
        write_file(path, tf.spec_for(net, net.hosts))
        tf.wait_idle(m, len(net.hosts), timeout=90)
        stop.set()
        for t in ts:
            t.join(30)
        os.unlink(path)
        tf.wait_until(lambda: not os.path.exists(tf.fdir(m)), 60)
        rc = m.umount(timeout=60)
    finally:
        m.teardown()
    log = m.log()
    assert "WARNING: ThreadSanitizer" not in log, log[-8000:]
    assert rc == 0, f"exit {rc}\n{log[-4000:]}"


@pytest.mark.skipif(not os.path.exists(TSAN_BIN), reason="make fleetfs-tsan first")
@pytest.mark.skipif(os.geteuid() != 0, reason="the fake's VMs are test hosts: root needed")
def test_aws_fleet_under_tsan(fleet_base, tmp_path, monkeypatch):
    """An AWS fleet of 3 under TSan: the credential cache, the per-region quota and listing
    threads, the region set-up locks and the memo, with live status readers."""
    sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
    from aws_fake import DEFAULT_KEY, AwsFake
    import test_aws_cloud as ac
    cat = tmp_path / "catalog"
    cat.mkdir()
    (cat / "aws.csv").write_text(ac.CATALOG)
    monkeypatch.setenv("FLEETFS_TIME_SCALE", ac.SCALE)
    monkeypatch.setenv("TSAN_OPTIONS", f"exitcode={TSAN_EXIT} halt_on_error=0 "
                       "second_deadlock_stack=1")
    with AwsFake(keys=[DEFAULT_KEY], hosts=3, boot_seconds=0.3, terminate_seconds=0.3,
                 terminated_linger=60) as fake:
        monkeypatch.setenv("FLEETFS_CA_BUNDLE", fake.ca_path)
        monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
        m = TsanFleet(fleet_base, "tsan-aws", opts=[f"catalog={cat}"])
        try:
            m.start(timeout=60)
            os.makedirs(m.p("projects", "main", "backends", "aws"))
            write_file(m.p("projects", "main", "backends", "aws", "config.yml"),
                       ac.aws_config())
            write_file(m.p("projects", "main", "fleets", "gpu.yml"), ac.spec(nodes=3))
            stop = threading.Event()

            def reader(num):
                p = m.p("projects", "main", "fleets", "gpu", "instances", str(num), "status")
                while not stop.is_set():
                    try:
                        read_file(p)
                    except OSError:
                        pass

            ts = [threading.Thread(target=reader, args=(i % 3,)) for i in range(6)]
            for t in ts:
                t.start()
            try:
                for n in range(3):
                    ac.wait_status(m, n, "idle", timeout=120)
            finally:
                stop.set()
                for t in ts:
                    t.join(30)
            os.unlink(m.p("projects", "main", "fleets", "gpu.yml"))
            assert tf.wait_until(lambda: not [v for v in fake.vms()
                                              if v["phase"] in ("booting", "running")], 60)
            rc = m.umount(timeout=60)
        finally:
            m.teardown()
        assert fake.count_calls("RunInstances") == 3
    log = m.log()
    assert "WARNING: ThreadSanitizer" not in log, log[-8000:]
    assert rc == 0, f"exit {rc}\n{log[-4000:]}"
