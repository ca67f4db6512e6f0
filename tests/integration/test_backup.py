"""Backups with rsync: `rsync -aF MNT/ backup/` skips every generated file (via the mount's
.rsync-filter) and `rsync -a backup/ MNT2/` onto a fresh mount restores every project and
backend byte for byte, with sizes and mtimes kept (a second run transfers nothing)."""
import filecmp
import os

import yaml

from fleetlib import AWS, read_file, run

PROJECTS = ["main", "research", "prod"]
GENERATED = {"README", "events", "config.yml", ".rsync-filter"}


def lam_cfg(p):
    return (f"# lambda for {p}\n"
            "type: lambda\n"
            "creds:\n"
            "  type: api_key\n"
            f"  api_key: lmbdSECRETbk{p}0000\n").encode()


def aws_cfg(p, region):
    return AWS.replace(b"us-east-1", region.encode()).replace(
        b"secret_key: ", b"secret_key: " + p.encode())


def build(fleet):
    """3 projects x 3 backends (two typed, one named), distinct content and mtimes, plus an
    empty project and an empty backend dir."""
    want = {}
    t = 1600000000
    for i, p in enumerate(PROJECTS):
        confs = {"lambda": lam_cfg(p), "aws": aws_cfg(p, "us-east-1"),
                 f"aws-{p}": aws_cfg(p, "eu-west-1")}
        for b, c in confs.items():
            path = fleet.add_backend(b, c, project=p)
            t += 3600
            os.utime(path, (t, t))
            want[(p, b)] = (c, t)
    os.mkdir(fleet.p("projects", "empty"))
    os.mkdir(fleet.bdir("runpod", "main"))
    return want


def configs_under(root):
    out = {}
    for p in sorted(os.listdir(os.path.join(root, "projects"))):
        bdir = os.path.join(root, "projects", p, "backends")
        for b in sorted(os.listdir(bdir)):
            c = os.path.join(bdir, b, "config.yml")
            if os.path.exists(c):
                out[(p, b)] = c
    return out


def test_rsync_filter_rules(fleet):
    rules = read_file(fleet.p(".rsync-filter")).decode()
    assert rules.strip(), "empty .rsync-filter"
    for ln in rules.splitlines():
        s = ln.strip()
        assert not s or s.startswith("#") or s[0] in "-+PHSRE!" or s.split()[0] in (
            "exclude", "include", "hide", "show", "protect", "risk", "clear",
            "dir-merge", "merge"), f"not an rsync filter rule: {ln!r}"


def test_backup_and_restore(fleet_factory, tmp_path):
    f1 = fleet_factory()
    want = build(f1)
    backup = str(tmp_path / "backup")
    r = run(["rsync", "-aF", f1.mnt + "/", backup + "/"], timeout=120)
    assert r.returncode == 0, r.stderr

    # what the backup holds: the configs and the dirs, nothing generated
    rel = set()
    for dp, dn, fn in os.walk(backup):
        for n in fn:
            rel.add(os.path.relpath(os.path.join(dp, n), backup))
    want_files = {f"projects/{p}/backends/{b}/config.yml" for (p, b) in want}
    assert rel == want_files, f"unexpected/missing files in backup: " \
        f"extra={sorted(rel - want_files)} missing={sorted(want_files - rel)}"
    assert os.path.isdir(os.path.join(backup, "projects", "empty", "backends"))
    assert os.path.isdir(os.path.join(backup, "projects", "main", "backends", "runpod"))
    for (p, b), (c, t) in want.items():
        bp = os.path.join(backup, "projects", p, "backends", b, "config.yml")
        assert read_file(bp) == c, (p, b)
        assert int(os.stat(bp).st_mtime) == t, (p, b, "mtime not carried into the backup")

    # a second backup run transfers nothing: the mount's sizes and mtimes are stable
    r = run(["rsync", "-aF", "--itemize-changes", f1.mnt + "/", backup + "/"], timeout=120)
    assert r.returncode == 0, r.stderr
    assert not [ln for ln in r.stdout.splitlines() if ln.startswith(">f")], r.stdout

    # restore onto a fresh mount
    f2 = fleet_factory()
    r = run(["rsync", "-a", backup + "/", f2.mnt + "/"], timeout=120)
    assert r.returncode == 0, f"restore failed: {r.stderr}"

    def check(f):
        assert sorted(os.listdir(f.p("projects"))) == sorted(PROJECTS + ["empty"])
        assert os.path.isdir(f.bdir("runpod", "main"))
        got = configs_under(f.mnt)
        assert set(got) == set(want), (sorted(got), sorted(want))
        for key, path in got.items():
            bp = os.path.join(backup, "projects", key[0], "backends", key[1], "config.yml")
            assert filecmp.cmp(bp, path, shallow=False), f"{key} differs from the backup"
            assert int(os.stat(path).st_mtime) == want[key][1], f"{key} mtime not restored"
            assert os.stat(path).st_size == len(want[key][0])
        assert f.status("aws-prod", "prod").get("type") == "aws"

    check(f2)
    r = run(["rsync", "-a", "--itemize-changes", backup + "/", f2.mnt + "/"], timeout=120)
    assert r.returncode == 0, r.stderr
    transfers = [ln for ln in r.stdout.splitlines() if ln.startswith(">f")]
    assert not transfers, f"second restore transferred files again: {transfers}"
    # both mounts render the same dstack config
    assert yaml.safe_load(read_file(f1.p("config.yml"))) == \
        yaml.safe_load(read_file(f2.p("config.yml")))
    f2.remount()
    check(f2)
    for key in configs_under(f2.mnt):
        r = run(["diff", configs_under(f1.mnt)[key], configs_under(f2.mnt)[key]])
        assert r.returncode == 0, (key, r.stdout)


def test_restore_with_rsync_inplace_and_delete(fleet_factory, tmp_path):
    f1 = fleet_factory()
    want = build(f1)
    backup = str(tmp_path / "backup")
    assert run(["rsync", "-aF", f1.mnt + "/", backup + "/"], timeout=120).returncode == 0
    f2 = fleet_factory()
    f2.add_backend("vastai", b"creds:\n  type: api_key\n  api_key: vaSECRETgone\n")
    r = run(["rsync", "-a", "--inplace", backup + "/", f2.mnt + "/"], timeout=120)
    assert r.returncode == 0, r.stderr
    got = configs_under(f2.mnt)
    for key, (c, t) in want.items():
        assert read_file(got[key]) == c
        assert int(os.stat(got[key]).st_mtime) == t
    assert ("main", "vastai") in got, "rsync without --delete keeps extra backends"
