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
