#!/usr/bin/python3
"""How tests/integration/data/oldstore-v1/ was made (kept for the record; the test does not
run it). Needs root (test hosts in network namespaces) and libfaketime.

    make_fixture.py BUILD OUT_DIR

BUILD is a fleetfs binary of the layout being frozen (v1: fleet records and instance rows
as written before core/records.c, commit e8ce4b1). The daemon runs under libfaketime about
175 years ahead, so every time stored in the rows (checked, next_try, created, ...) is in the
far future: a later mount at the real time finds no row due and the engine leaves them as
they are, which is what lets a test compare renderings byte for byte.

What ends up in the store (project main):
  gpu    an SSH fleet: a visible host (idle, probed: GPUs, host key), a hidden one behind a
         jump host (idle, proxy, jump key), an address nothing answers on (pending, failed
         attempts); then an invalid update of gpu.yml (refused: last_rejected_write)
  cloud  a backend fleet (nodes: 2) with no backend: two pending rows, "no offer matches"
  big    a backend fleet with nodes min/max (ranges in the record)
The expected renderings (expected/) are made afterwards by the same binary from a copy of
the captured state at the real time, exactly as test_oldstore.py mounts it.
"""
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ITEST = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ITEST)
sys.path.insert(0, os.path.join(os.path.dirname(ITEST), "hosts"))

import fleetlib  # noqa: E402
import hosts as testhosts  # noqa: E402
import yaml  # noqa: E402

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def wait(pred, timeout=60):
    def safe():
        try:
            return pred()
        except (OSError, KeyError, TypeError, IndexError, ValueError, yaml.YAMLError):
            return False
    assert fleetlib.wait_until(safe, timeout, 0.2), "timed out"


def main():
    binary, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    fleetlib.BIN = binary
    base = "/var/tmp/fleetfs-mkfixture"
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base, mode=0o755)
    net = testhosts.TestHosts(n=2, jump=True, hidden=1, gpus=["nvidia:A100:80GB:2", "none"],
                              workdir=os.path.join(base, "hosts"))
    net.start()
    os.environ["FLEETFS_TIME_SCALE"] = "0.005"
    os.environ["LD_PRELOAD"] = FAKETIME_LIB
    os.environ["FAKETIME"] = "+64000d"
    os.environ["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    m = fleetlib.Fleet(base, "old")
    try:
        m.start()
        del os.environ["LD_PRELOAD"]
        fl = m.p("projects", "main", "fleets")
        vis = [h for h in net.hosts if not h.hidden][0]
        hid = [h for h in net.hosts if h.hidden][0]
        spec = ("type: fleet\nname: gpu\nssh_config:\n  user: fleet\n"
                f"  identity_file: {net.key_path}\n  hosts:\n  - {vis.addr}\n"
                f"  - hostname: {hid.addr}\n    proxy_jump:\n      hostname: {net.jump.addr}\n"
                f"      user: fleet\n      identity_file: {net.key_path}\n"
                "  - 192.0.2.1\n")
        fleetlib.write_file(os.path.join(fl, "gpu.yml"), spec.encode())
        st = lambda n: yaml.safe_load(fleetlib.read_file(os.path.join(fl, n, "status")))  # noqa
        wait(lambda: st("gpu")["actual"]["idle"] == 2)
        # the unreachable address has failed at least twice
        wait(lambda: yaml.safe_load(fleetlib.read_file(
            os.path.join(fl, "gpu", "instances", "2", "info.yml")))["attempts"] >= 2)
        try:
            fleetlib.write_file(os.path.join(fl, "gpu.yml"), spec.encode() + b"bogus: 1\n")
        except OSError:
            pass
        fleetlib.write_file(os.path.join(fl, "cloud.yml"),
                            b"type: fleet\nnodes: 2\nresources:\n  gpu: 24GB..\n")
        fleetlib.write_file(os.path.join(fl, "big.yml"),
                            b"type: fleet\nnodes: 1..3\nresources:\n  gpu: A100:8\n")
        wait(lambda: all("no offer matches" in str(i["reason"])
                         for n in ("cloud", "big") for i in st(n)["instances"]))
        time.sleep(1)
        rc = m.umount()
        assert rc == 0, rc
        os.makedirs(out, exist_ok=True)
        for f in ("data.mdb", "key"):
            shutil.copy2(os.path.join(m.state, f), os.path.join(out, f))
        print("captured", out)
    finally:
        m.teardown()
        net.stop()


if __name__ == "__main__":
    main()
