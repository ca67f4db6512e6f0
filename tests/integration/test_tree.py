"""The shape of the tree: names, modes, owners, mkdir/rmdir rules, status files, drafts,
rename rules (rename-away keeps, RENAME_NOREPLACE, RENAME_EXCHANGE), commit points at the
syscall level (flush, fsync, truncate before/after writes), and allow_other permissions."""
import errno
import os
import stat
import subprocess

import pytest
import yaml

from fleetlib import (AWS, LAMBDA, LAMBDA_B, LAMBDA_NOTYPE, LAMBDA_TYPE_GCP, LAMBDA_UNKNOWN_KEY,
                      RENAME_EXCHANGE, RENAME_NOREPLACE, assert_event_lines_wellformed,
                      assert_rejected, errno_of, read_file, renameat2, run, write_fd,
                      write_file)

TYPES = ["aws", "azure", "gcp", "lambda", "nebius", "vultr", "cudo", "oci", "datacrunch",
         "verda", "amddevcloud", "digitalocean", "hotaisle", "cloudrift", "kubernetes",
         "runpod", "vastai"]


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_fresh_tree(fleet):
    root = os.listdir(fleet.mnt)
    for n in ("README", "config.yml", "events", ".rsync-filter", "projects"):
        assert n in root, f"{n} missing from {root}"
    assert os.listdir(fleet.p("projects")) == ["main"]
    main = os.listdir(fleet.p("projects", "main"))
    assert "events" in main and "backends" in main, main
    assert os.listdir(fleet.p("projects", "main", "backends")) == []
    # readdir order is stable
    assert os.listdir(fleet.mnt) == os.listdir(fleet.mnt)
    readme = read_file(fleet.p("README"))
    assert len(readme) > 100 and b"config.yml" in readme
    # generated files: stat size is the size of the latest rendering
    assert os.stat(fleet.p("README")).st_size == len(readme)
    assert isinstance(yaml.safe_load(read_file(fleet.p("config.yml"))), dict)


def test_modes_and_owner(fleet):
    fleet.add_backend("lambda", LAMBDA)
    uid, gid = os.getuid(), os.getgid()
    dirs = [fleet.mnt, fleet.p("projects"), fleet.p("projects", "main"),
            fleet.p("projects", "main", "backends"), fleet.bdir("lambda")]
    secret = [fleet.p("config.yml"), fleet.cfg("lambda")]
    gen = [fleet.p("README"), fleet.p("events"), fleet.p(".rsync-filter"),
           fleet.p("projects", "main", "events"), os.path.join(fleet.bdir("lambda"), "status")]
    for d in dirs:
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700, (d, oct(st.st_mode))
        assert (st.st_uid, st.st_gid) == (uid, gid), d
    for f in secret:
        st = os.lstat(f)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, (f, oct(st.st_mode))
        assert (st.st_uid, st.st_gid) == (uid, gid), f
    for f in gen:
        st = os.lstat(f)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o400, (f, oct(st.st_mode))
        assert st.st_uid == uid, f


def test_generated_sizes_match_content(fleet):
    fleet.add_backend("lambda", LAMBDA)
    write_fd(fleet.cfg("lambda"), LAMBDA_UNKNOWN_KEY)  # refused: events and status change
    for f in [fleet.p("README"), fleet.p("events"), fleet.p(".rsync-filter"),
              fleet.p("config.yml"), fleet.p("projects", "main", "events"),
              os.path.join(fleet.bdir("lambda"), "status")]:
        data = read_file(f)
        assert os.stat(f).st_size == len(data), (f, os.stat(f).st_size, len(data))
        # reading in small chunks gives the same bytes (per-open snapshot)
        with open(f, "rb", buffering=0) as h:
            parts = []
            while True:
                b = h.read(7)
                if not b:
                    break
                parts.append(b)
        assert b"".join(parts) == data, f


def test_generated_files_refuse_writes(fleet):
    fleet.add_backend("lambda", LAMBDA)
    for f in [fleet.p("README"), fleet.p("events"), fleet.p(".rsync-filter"),
              fleet.p("projects", "main", "events"), os.path.join(fleet.bdir("lambda"), "status")]:
        before = read_file(f)
        e = errno_of(write_fd, f, b"junk\n", os.O_WRONLY | os.O_TRUNC)
        assert e in (errno.EACCES, errno.EPERM, errno.EROFS), (f, e)
        if not f.endswith("events"):
            assert read_file(f) == before, f
        e = errno_of(os.unlink, f)
        if "/projects/" in f:
            # inside a project, removing a generated file is accepted and changes nothing
            # (so that rm -r of a project works); it is back at once
            assert e == 0, (f, e)
        else:
            assert e in (errno.EACCES, errno.EPERM, errno.EROFS), f
        assert os.path.exists(f)
    assert fleet.alive()


def test_rm_r_project(fleet):
    os.mkdir(fleet.p("projects", "gone"))
    for t in ("lambda", "aws-dev"):
        os.mkdir(fleet.p("projects", "gone", "backends", t))
    write_file(fleet.p("projects", "gone", "backends", "lambda", "config.yml"), LAMBDA)
    # a non-empty backends/ can't be removed on its own
    assert errno_of(os.rmdir, fleet.p("projects", "gone", "backends")) == errno.ENOTEMPTY
    r = subprocess.run(["rm", "-r", fleet.p("projects", "gone")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(fleet.p("projects", "gone"))
    assert "gone" not in os.listdir(fleet.p("projects"))
    assert any("project=gone deleted" in ln for ln in fleet.events(None))
    assert fleet.alive()


def test_mkdir_every_type(fleet):
    bk = fleet.p("projects", "main", "backends")
    for t in TYPES:
        os.mkdir(os.path.join(bk, t))
    assert sorted(os.listdir(bk)) == sorted(TYPES)
    for t in TYPES:
        names = os.listdir(os.path.join(bk, t))
        assert "status" in names and "config.yml" not in names, (t, names)
        assert errno_of(os.stat, os.path.join(bk, t, "config.yml")) == errno.ENOENT
        st = fleet.status(t)
        assert st.get("state") == "unconfigured", (t, st)
        assert st.get("type") == t, (t, st)
    fleet.remount()
    assert sorted(os.listdir(bk)) == sorted(TYPES), "backend dirs did not persist"


def test_config_roundtrip_and_status(fleet):
    os.mkdir(fleet.bdir("lambda"))
    write_file(fleet.cfg("lambda"), LAMBDA)
    assert read_file(fleet.cfg("lambda")) == LAMBDA
    assert os.stat(fleet.cfg("lambda")).st_size == len(LAMBDA)
    st = fleet.status("lambda")
    assert st.get("state") != "unconfigured", st
    assert st.get("type") == "lambda"
    assert not st.get("last_error"), st
    # comments are kept byte for byte; `type:` may be omitted in backends/lambda
    write_file(fleet.cfg("lambda"), LAMBDA_B)
    assert read_file(fleet.cfg("lambda")) == LAMBDA_B
    write_file(fleet.cfg("lambda"), LAMBDA_NOTYPE)
    assert read_file(fleet.cfg("lambda")) == LAMBDA_NOTYPE
    fleet.remount()
    assert read_file(fleet.cfg("lambda")) == LAMBDA_NOTYPE
    assert os.stat(fleet.cfg("lambda")).st_size == len(LAMBDA_NOTYPE)
    assert stat.S_IMODE(os.stat(fleet.cfg("lambda")).st_mode) == 0o600


def test_type_must_match_dir(fleet):
    fleet.add_backend("lambda", LAMBDA)
    n = len(fleet.events("main"))
    assert errno_of(write_file, fleet.cfg("lambda"), LAMBDA_TYPE_GCP) == errno.EINVAL
    assert read_file(fleet.cfg("lambda")) == LAMBDA
    assert_rejected(fleet, "lambda", "type", line=1, before=n)


def test_named_backend(fleet):
    d = fleet.bdir("aws-prod")
    os.mkdir(d)
    assert fleet.status("aws-prod").get("state") == "unconfigured"
    # a named backend needs `type:`
    body_without_type = AWS.replace(b"type: aws\n", b"", 1)
    n = len(fleet.events("main"))
    assert errno_of(write_file, os.path.join(d, "config.yml"), body_without_type) == errno.EINVAL
    assert_rejected(fleet, "aws-prod", "type", before=n)
    assert errno_of(os.stat, os.path.join(d, "config.yml")) == errno.ENOENT or \
        read_file(os.path.join(d, "config.yml")) != body_without_type
    write_file(os.path.join(d, "config.yml"), AWS)
    assert read_file(os.path.join(d, "config.yml")) == AWS
    assert fleet.status("aws-prod").get("type") == "aws"
    # `name:` is not a key of a backends/<x>/config.yml
    n = len(fleet.events("main"))
    assert errno_of(write_file, os.path.join(d, "config.yml"),
                    AWS + b"name: aws-prod\n") == errno.EINVAL
    hit = assert_rejected(fleet, "aws-prod", "unknown key", line=7, before=n)
    assert 'unknown key "nam\u2026" (4 chars)' in hit, hit
    fleet.remount()
    assert read_file(os.path.join(d, "config.yml")) == AWS


def test_project_mkdir_rmdir_rules(fleet):
    p = fleet.p("projects", "research")
    os.mkdir(p)
    assert sorted(os.listdir(fleet.p("projects"))) == ["main", "research"]
    assert "backends" in os.listdir(p) and "events" in os.listdir(p)
    assert errno_of(os.mkdir, p) == errno.EEXIST
    os.mkdir(fleet.bdir("vastai", "research"))  # an empty backend dir is a backend too
    assert errno_of(os.rmdir, p) == errno.ENOTEMPTY
    os.rmdir(fleet.bdir("vastai", "research"))
    fleet.add_backend("lambda", LAMBDA, project="research")
    assert errno_of(os.rmdir, p) == errno.ENOTEMPTY
    assert errno_of(os.rmdir, fleet.bdir("lambda", "research")) == errno.ENOTEMPTY
    assert read_file(fleet.cfg("lambda", "research")) == LAMBDA
    fleet.remount()
    assert read_file(fleet.cfg("lambda", "research")) == LAMBDA
    os.unlink(fleet.cfg("lambda", "research"))
    assert errno_of(os.stat, fleet.cfg("lambda", "research")) == errno.ENOENT
    assert fleet.status("lambda", "research").get("state") == "unconfigured"
    os.rmdir(fleet.bdir("lambda", "research"))
    os.rmdir(p)
    assert os.listdir(fleet.p("projects")) == ["main"]
    fleet.remount()
    assert os.listdir(fleet.p("projects")) == ["main"]
    # an empty backend dir persists and rmdirs cleanly
    os.mkdir(fleet.bdir("vastai"))
    fleet.remount()
    assert os.listdir(fleet.p("projects", "main", "backends")) == ["vastai"]
    os.rmdir(fleet.bdir("vastai"))
    assert os.listdir(fleet.p("projects", "main", "backends")) == []


@pytest.mark.parametrize("bad", ["bad name", "a.b", "x" * 51, "caf\u00e9", "a*",
                                 "new\nline", "tab\tname"])
def test_bad_project_names(fleet, bad):
    n = len(fleet.events())
    e = errno_of(os.mkdir, fleet.p("projects", bad))
    assert e in (errno.EINVAL, errno.ENAMETOOLONG), (bad, e)
    assert os.listdir(fleet.p("projects")) == ["main"]
    new = fleet.events()[n:]
    assert new, "the reason of a refused mkdir should be in MNT/events"
    assert_event_lines_wellformed(fleet.events())
    assert fleet.alive()


def test_good_edge_names(fleet):
    for name in ["A", "x" * 50, "a_b-C9", "-", "_"]:
        os.mkdir(fleet.p("projects", name))
        assert name in os.listdir(fleet.p("projects"))
    os.mkdir(fleet.bdir("my_backend-1"))
    fleet.remount()
    assert "x" * 50 in os.listdir(fleet.p("projects"))
    assert "my_backend-1" in os.listdir(fleet.p("projects", "main", "backends"))


def test_bad_backend_names(fleet):
    bk = fleet.p("projects", "main", "backends")
    for bad in ["bad name", "x" * 51, "\u00fcber", "a.b", "a:b"]:
        n = len(fleet.events("main")) + len(fleet.events())
        e = errno_of(os.mkdir, os.path.join(bk, bad))
        assert e in (errno.EINVAL, errno.ENAMETOOLONG), (bad, e)
        assert len(fleet.events("main")) + len(fleet.events()) > n, \
            f"no reason journaled for mkdir {bad!r}"
    assert os.listdir(bk) == []
    assert fleet.alive()


def test_rename_away_keeps_config(lam):
    cfg = lam.cfg("lambda")
    bak = cfg + "~"
    os.rename(cfg, bak)
    assert read_file(cfg) == LAMBDA, "renaming config.yml away must not delete it"
    assert read_file(bak) == LAMBDA, "the new name is a draft copy"
    os.unlink(bak)
    assert read_file(cfg) == LAMBDA
    lam.remount()
    assert read_file(cfg) == LAMBDA
    assert sorted(os.listdir(lam.bdir("lambda"))) == ["config.yml", "status"]


def test_rename_noreplace_and_exchange(lam):
    cfg = lam.cfg("lambda")
    draft = os.path.join(lam.bdir("lambda"), ".config.yml.Xy12Ab")
    write_file(draft, LAMBDA_B)
    assert errno_of(renameat2, draft, cfg, RENAME_NOREPLACE) == errno.EEXIST
    assert read_file(cfg) == LAMBDA
    assert errno_of(renameat2, draft, cfg, RENAME_EXCHANGE) == errno.EINVAL
    assert read_file(cfg) == LAMBDA and read_file(draft) == LAMBDA_B
    # NOREPLACE onto a name that is free works (draft -> draft)
    renameat2(draft, draft + "2", RENAME_NOREPLACE)
    os.rename(draft + "2", cfg)
    assert read_file(cfg) == LAMBDA_B
    assert not os.path.exists(draft + "2")
    # NOREPLACE onto an absent config.yml commits
    os.mkdir(lam.bdir("vastai"))
    d2 = os.path.join(lam.bdir("vastai"), "draft")
    write_file(d2, b"creds:\n  type: api_key\n  api_key: vaSECRETvastkey123\n")
    renameat2(d2, lam.cfg("vastai"), RENAME_NOREPLACE)
    assert read_file(lam.cfg("vastai")).endswith(b"vaSECRETvastkey123\n")
    lam.remount()
    assert read_file(cfg) == LAMBDA_B


def test_drafts_support_file_ops_and_never_persist(lam):
    d = lam.bdir("lambda")
    names = ["4913", "config.yml~", ".config.yml.swp", ".config.yml.aB3dE9",
             ".ansible_tmpk2j3config.yml", "sedAbC123", "notes.txt"]
    for n in names:
        p = os.path.join(d, n)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"draft " + n.encode() + b"\n")
        os.fsync(fd)
        os.fchmod(fd, 0o600)
        os.fchown(fd, os.getuid(), os.getgid())
        assert errno_of(os.fchown, fd, 65534, -1) == errno.EPERM, "chown to another uid"
        os.close(fd)
        os.utime(p, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
        st = os.stat(p)
        assert st.st_mtime_ns == 1_600_000_000_123_456_789 or int(st.st_mtime) == 1_600_000_000
        assert st.st_size == len(b"draft " + n.encode() + b"\n")
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert read_file(p) == b"draft " + n.encode() + b"\n"
    assert set(names) <= set(os.listdir(d))
    os.rename(os.path.join(d, "notes.txt"), os.path.join(d, "notes2.txt"))
    os.unlink(os.path.join(d, "4913"))
    assert read_file(lam.cfg("lambda")) == LAMBDA
    lam.remount()
    assert sorted(os.listdir(d)) == ["config.yml", "status"], "drafts must never reach the store"


def test_unlink_config_deletes(lam):
    os.unlink(lam.cfg("lambda"))
    assert errno_of(read_file, lam.cfg("lambda")) == errno.ENOENT
    assert lam.status("lambda").get("state") == "unconfigured"
    lam.remount()
    assert not os.path.exists(lam.cfg("lambda"))
    assert os.path.isdir(lam.bdir("lambda"))


def test_commit_at_close_error_and_unchanged(lam):
    cfg = lam.cfg("lambda")
    n = len(lam.events("main"))
    werr, cerr = write_fd(cfg, LAMBDA_UNKNOWN_KEY)
    assert werr is None and cerr == errno.EINVAL, (werr, cerr)
    assert read_file(cfg) == LAMBDA
    assert os.stat(cfg).st_size == len(LAMBDA)
    assert_rejected(lam, "lambda", "unknown key", line=5, before=n)
    # a later valid commit clears last_error
    write_file(cfg, LAMBDA_B)
    assert not lam.status("lambda").get("last_error")


def test_fsync_is_a_commit_point(lam):
    cfg = lam.cfg("lambda")
    fd = os.open(cfg, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, LAMBDA_B)
        os.fsync(fd)
        # visible through another handle before close
        assert read_file(cfg) == LAMBDA_B
    finally:
        os.close(fd)  # second flush of an applied handle: nothing, no error
    fd = os.open(cfg, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, LAMBDA_UNKNOWN_KEY)
    assert errno_of(os.fsync, fd) == errno.EINVAL
    try:
        os.close(fd)
    except OSError as e:
        assert e.errno == errno.EINVAL
    assert read_file(cfg) == LAMBDA_B


def test_dup_close_applies_once(lam):
    cfg = lam.cfg("lambda")
    fd = os.open(cfg, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, LAMBDA_B)
    fd2 = os.dup(fd)
    os.close(fd2)  # first flush commits
    assert read_file(cfg) == LAMBDA_B
    os.close(fd)   # second flush of the applied handle: no error
    assert read_file(cfg) == LAMBDA_B


def test_truncate_before_writes_vim_style(lam):
    cfg = lam.cfg("lambda")
    fd = os.open(cfg, os.O_WRONLY | os.O_CREAT, 0o644)  # no O_TRUNC
    os.ftruncate(fd, 0)
    os.write(fd, LAMBDA_B)
    os.fsync(fd)
    os.close(fd)
    assert read_file(cfg) == LAMBDA_B


def test_truncate_after_writes_rsync_inplace_style(lam):
    cfg = lam.cfg("lambda")
    short = LAMBDA_NOTYPE  # shorter than LAMBDA
    assert len(short) < len(LAMBDA)
    fd = os.open(cfg, os.O_WRONLY)
    os.write(fd, short)
    os.ftruncate(fd, len(short))
    os.close(fd)
    assert read_file(cfg) == short
    # open without O_TRUNC starts from the stored content: a partial overwrite keeps the rest
    fd = os.open(cfg, os.O_WRONLY)
    os.write(fd, b"CREDS")  # would break the key "creds" -> refused
    assert errno_of(os.close, fd) == errno.EINVAL
    assert read_file(cfg) == short
    fd = os.open(cfg, os.O_RDWR)
    assert os.read(fd, 100) == short
    os.close(fd)


def test_append_starts_from_stored(lam):
    cfg = lam.cfg("lambda")
    with open(cfg, "ab") as f:
        f.write(b"regions: [us-west-1]\n")
    assert read_file(cfg) == LAMBDA + b"regions: [us-west-1]\n"


def test_allow_other_permissions(fleet_factory):
    f = fleet_factory(opts=["allow_other"])
    f.add_backend("lambda", LAMBDA)
    for d in [f.mnt, f.p("projects"), f.p("projects", "main"), f.bdir("lambda")]:
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o755, d
    assert stat.S_IMODE(os.stat(f.cfg("lambda")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f.p("README")).st_mode) == 0o444
    assert stat.S_IMODE(os.stat(os.path.join(f.bdir("lambda"), "status")).st_mode) == 0o444

    def as_nobody(*cmd):
        return run(["runuser", "-u", "nobody", "--", *cmd], timeout=20)

    r = as_nobody("ls", f.bdir("lambda"))
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {"config.yml", "status"}
    r = as_nobody("cat", f.p("README"))
    assert r.returncode == 0 and len(r.stdout) > 50, r.stderr
    r = as_nobody("cat", f.cfg("lambda"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.returncode, r.stderr)
    assert LAMBDA.decode() not in r.stdout
    r = as_nobody("python3", "-c", "import os,sys\ntry:\n open(sys.argv[1],'rb')\n"
                  "except OSError as e: print(e.errno)\nelse: print(0)", f.cfg("lambda"))
    assert r.stdout.strip() == str(errno.EACCES), r
    r = as_nobody("mkdir", f.p("projects", "intruder"))
    assert r.returncode != 0
    assert sorted(os.listdir(f.p("projects"))) == ["main"]
    r = as_nobody("sh", "-c", f"echo junk > '{f.cfg('lambda')}'")
    assert r.returncode != 0
    assert read_file(f.cfg("lambda")) == LAMBDA


def test_without_allow_other_others_see_nothing(fleet):
    os.chmod(fleet.base, 0o755)
    r = run(["runuser", "-u", "nobody", "--", "ls", fleet.mnt], timeout=20)
    assert r.returncode != 0
