"""DESIGN §2 with real tools: every way users save files must store the exact bytes (checked
by reading back AND after a remount), and an invalid save must fail visibly where the tool
reports errors, leave the stored file unchanged, and journal the reason.

Every test starts from a fleet whose projects/main/backends/lambda/config.yml holds LAMBDA.
"""
import errno
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest

from fleetlib import (LAMBDA, LAMBDA_B, LAMBDA_KEY, LAMBDA_KEY2, LAMBDA_NOTYPE,
                      LAMBDA_UNKNOWN_KEY, assert_rejected, errno_of, read_file, run, write_file)

NEWKEY = "lmbdSECRETkeyVIM9z8y7x6w5v4u3"
MTIME = 1612325106  # 2021-02-03 04:05:06 UTC
MTIME_NS = MTIME * 10**9 + 123456789
EXTRA = b"regions: [us-west-1]\n"


def stored_ok(fleet, expected, backend="lambda", mtime=None, remount=True):
    """config.yml reads back exactly `expected` (now and after a remount), stat size is
    exact, mode 0600, no last_error; mtime (seconds) kept when given."""
    cfg = fleet.cfg(backend)

    def check(when):
        got = read_file(cfg)
        assert got == expected, f"{when}: stored bytes differ:\n{got!r}\n!=\n{expected!r}"
        st = os.stat(cfg)
        assert st.st_size == len(expected), f"{when}: st_size {st.st_size} != {len(expected)}"
        assert stat.S_IMODE(st.st_mode) == 0o600, f"{when}: mode {oct(st.st_mode)}"
        if mtime is not None:
            assert int(st.st_mtime) == int(mtime), f"{when}: mtime {st.st_mtime} != {mtime}"

    check("read back")
    assert not fleet.status(backend).get("last_error"), fleet.status(backend)
    if remount:
        fleet.remount()
        check("after remount")


def refused(fleet, old, field, line=None, before=0, backend="lambda", remount=True,
            may_delete=False):
    """The stored config is still `old` (or, for tools that unlink first, not the bad one),
    the reason is journaled, the daemon is alive; same after a remount."""
    cfg = fleet.cfg(backend)
    assert fleet.alive(), "daemon died after a refused write"
    assert_rejected(fleet, backend, field, line=line, before=before)

    def check(when):
        if may_delete:
            e = errno_of(read_file, cfg)
            assert e in (0, errno.ENOENT), (when, e)
            if e == 0:
                assert read_file(cfg) == old, f"{when}: {read_file(cfg)!r}"
        else:
            assert read_file(cfg) == old, f"{when}: stored content changed: {read_file(cfg)!r}"
            assert os.stat(cfg).st_size == len(old), when

    check("read back")
    if remount:
        fleet.remount()
        check("after remount")


def src(tmp_path, name, data, mtime_ns=None, mode=0o644):
    p = tmp_path / name
    p.write_bytes(data)
    os.chmod(p, mode)
    if mtime_ns is not None:
        os.utime(p, ns=(mtime_ns, mtime_ns))
    return str(p)


def nevents(fleet):
    return len(fleet.events("main"))


# ---------------------------------------------------------------------------- shell > and >>

def test_shell_redirect(lam, tmp_path):
    cfg = lam.cfg("lambda")
    r = run(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", LAMBDA_B.decode(), cfg])
    assert r.returncode == 0, r.stderr
    stored_ok(lam, LAMBDA_B)


def test_shell_redirect_invalid(lam, tmp_path):
    cfg = lam.cfg("lambda")
    bad = src(tmp_path, "bad.yml", LAMBDA_UNKNOWN_KEY)
    n = nevents(lam)
    # an external command's close() error is its exit status
    r = run(["sh", "-c", f'cat "{bad}" > "{cfg}"'])
    assert r.returncode != 0, "cat must report the refused close()"
    assert "Invalid argument" in r.stderr, r.stderr
    refused(lam, LAMBDA, "unknown key", line=5, before=n, remount=False)
    # a builtin's redirection: the shell ignores close() errors, but nothing is stored
    run(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", LAMBDA_UNKNOWN_KEY.decode(), cfg])
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


def test_shell_append(lam, tmp_path):
    cfg = lam.cfg("lambda")
    # step 1 (>) is valid on its own, step 2 (>>) adds a key
    r = run(["sh", "-c", 'printf "%s" "$1" > "$2" && printf "%s" "$3" >> "$2"', "sh",
             LAMBDA_B.decode(), cfg, EXTRA.decode()])
    assert r.returncode == 0, r.stderr
    stored_ok(lam, LAMBDA_B + EXTRA)


def test_shell_append_invalid(lam, tmp_path):
    cfg = lam.cfg("lambda")
    extra = src(tmp_path, "extra", b"foo: 1\n")
    n = nevents(lam)
    r = run(["sh", "-c", f'cat "{extra}" >> "{cfg}"'])
    assert r.returncode != 0 and "Invalid argument" in r.stderr, (r.returncode, r.stderr)
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


# ---------------------------------------------------------------------------- cp, cp -p

def test_cp(lam, tmp_path):
    s = src(tmp_path, "new.yml", LAMBDA_B)
    r = run(["cp", s, lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    stored_ok(lam, LAMBDA_B)


def test_cp_invalid(lam, tmp_path):
    s = src(tmp_path, "bad.yml", LAMBDA_UNKNOWN_KEY)
    n = nevents(lam)
    r = run(["cp", s, lam.cfg("lambda")])
    assert r.returncode != 0, "cp must fail on a refused close()"
    assert "Invalid argument" in r.stderr, r.stderr
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


def test_cp_p_keeps_mtime(lam, tmp_path):
    s = src(tmp_path, "new.yml", LAMBDA_B, mtime_ns=MTIME_NS, mode=0o644)
    r = run(["cp", "-p", s, lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    assert os.stat(lam.cfg("lambda")).st_mtime_ns == MTIME_NS, \
        "cp -p: utimensat nanoseconds not kept"
    stored_ok(lam, LAMBDA_B, mtime=MTIME)
    assert os.stat(lam.cfg("lambda")).st_mtime_ns == MTIME_NS, "mtime ns lost over remount"


def test_cp_p_new_backend(fleet, tmp_path):
    os.mkdir(fleet.bdir("lambda"))
    s = src(tmp_path, "new.yml", LAMBDA, mtime_ns=MTIME_NS, mode=0o600)
    r = run(["cp", "-p", s, fleet.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    stored_ok(fleet, LAMBDA, mtime=MTIME)


# ---------------------------------------------------------------------------- mv, install

def test_mv_from_outside(lam, tmp_path):
    s = src(tmp_path, "new.yml", LAMBDA_B, mtime_ns=MTIME_NS, mode=0o644)
    r = run(["mv", s, lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(s), "mv removes its source after a successful copy"
    stored_ok(lam, LAMBDA_B, mtime=MTIME)


def test_mv_from_outside_invalid(lam, tmp_path):
    s = src(tmp_path, "bad.yml", LAMBDA_UNKNOWN_KEY)
    n = nevents(lam)
    r = run(["mv", s, lam.cfg("lambda")])
    assert r.returncode != 0, "mv must fail when the copy's close() is refused"
    assert os.path.exists(s), "mv must keep its source when the copy failed"
    # cross-fs mv unlinks the destination before copying (coreutils), so the old config may be
    # gone; the refused content must never be stored.
    refused(lam, LAMBDA, "unknown key", line=5, before=n, may_delete=True)


def test_mv_within_mount_draft_onto_config(lam):
    d = lam.bdir("lambda")
    write_file(os.path.join(d, "new.yml"), LAMBDA_B)
    r = run(["mv", os.path.join(d, "new.yml"), lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(os.path.join(d, "new.yml"))
    stored_ok(lam, LAMBDA_B)


def test_install(lam, tmp_path):
    s = src(tmp_path, "new.yml", LAMBDA_B, mode=0o644)
    r = run(["install", "-m", "600", s, lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    stored_ok(lam, LAMBDA_B)


def test_install_invalid(lam, tmp_path):
    s = src(tmp_path, "bad.yml", LAMBDA_UNKNOWN_KEY)
    n = nevents(lam)
    r = run(["install", "-m", "600", s, lam.cfg("lambda")])
    assert r.returncode != 0, "install must fail on a refused close()"
    refused(lam, LAMBDA, "unknown key", line=5, before=n, may_delete=True)


# ---------------------------------------------------------------------------- vim

VIM_MODES = {
    "yes": ["set backupcopy=yes"],
    "no": ["set backupcopy=no"],
    "auto": ["set backupcopy=auto"],
    "backup_keep": ["set backup", "set writebackup", "set backupcopy=auto"],
    "backup_no": ["set backup", "set writebackup", "set backupcopy=no"],
    "nowritebackup": ["set nobackup", "set nowritebackup", "set backupcopy=auto"],
}


def vim(fleet, cmds, edit, swap=False, cwd=None):
    argv = ["vim", "-N", "-u", "NONE", "-i", "NONE"]
    if not swap:
        argv.append("-n")
    argv += ["-es", "-c", "set backupskip=", "-c", "set directory=."]
    for c in cmds:
        argv += ["-c", c]
    argv += ["-c", edit, "-c", "wq", "-c", "qa!", "config.yml"]
    return subprocess.run(argv, cwd=cwd or fleet.bdir("lambda"), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mode", list(VIM_MODES))
def test_vim(lam, mode):
    r = vim(lam, VIM_MODES[mode], f"%s/{LAMBDA_KEY}/{NEWKEY}/")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    want = LAMBDA.replace(LAMBDA_KEY.encode(), NEWKEY.encode())
    names = set(os.listdir(lam.bdir("lambda")))
    if mode.startswith("backup"):
        # 'backup' keeps config.yml~ (a draft holding the old text)
        assert "config.yml~" in names, names
        assert read_file(lam.cfg("lambda") + "~") == LAMBDA
        names.discard("config.yml~")
    assert names == {"config.yml", "status"}, f"vim left {names}"
    stored_ok(lam, want)
    assert sorted(os.listdir(lam.bdir("lambda"))) == ["config.yml", "status"]


@pytest.mark.parametrize("mode", list(VIM_MODES))
def test_vim_invalid(lam, mode):
    n = nevents(lam)
    r = vim(lam, VIM_MODES[mode], "call append(line('$'), 'foo: 1')")
    assert r.returncode != 0, f"vim must report the refused write ({mode})"
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


def test_vim_with_swapfile(lam):
    r = vim(lam, ["set backupcopy=auto"], f"%s/{LAMBDA_KEY}/{NEWKEY}/", swap=True)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert sorted(os.listdir(lam.bdir("lambda"))) == ["config.yml", "status"], \
        "swap file left behind"
    stored_ok(lam, LAMBDA.replace(LAMBDA_KEY.encode(), NEWKEY.encode()))


def test_vim_creates_new_config(fleet):
    os.mkdir(fleet.bdir("lambda"))
    argv = ["vim", "-N", "-u", "NONE", "-i", "NONE", "-es", "-c", "set backupskip=",
            "-c", "set directory=.", "-c", "set backupcopy=auto"]
    for line in LAMBDA.decode().splitlines():
        argv += ["-c", f"call append(line('$'), {line!r})"]
    argv += ["-c", "1delete", "-c", "wq", "-c", "qa!", "config.yml"]
    r = subprocess.run(argv, cwd=fleet.bdir("lambda"), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    stored_ok(fleet, LAMBDA)


# ---------------------------------------------------------------------------- sed -i

def test_sed_i(lam):
    r = run(["sed", "-i", f"s/{LAMBDA_KEY}/{NEWKEY}/", lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(lam.bdir("lambda"))) == ["config.yml", "status"]
    stored_ok(lam, LAMBDA.replace(LAMBDA_KEY.encode(), NEWKEY.encode()))


def test_sed_i_invalid(lam):
    n = nevents(lam)
    r = run(["sed", "-i", "$a foo: 1", lam.cfg("lambda")])
    assert r.returncode != 0, "sed -i must fail when its rename is refused"
    assert "Invalid argument" in r.stderr, r.stderr
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


def test_sed_i_invalid_yaml(lam):
    n = nevents(lam)
    r = run(["sed", "-i", "s/^  type: api_key/  type: [api_key/", lam.cfg("lambda")])
    assert r.returncode != 0, "sed -i producing a YAML syntax error must fail"
    lines = lam.events("main")[n:]
    assert any("projects/main/backends/lambda/config.yml:" in ln for ln in lines), lines
    le = lam.status("lambda").get("last_error")
    assert le and "config.yml:" in str(le), le
    assert lam.alive()
    assert read_file(lam.cfg("lambda")) == LAMBDA
    lam.remount()
    assert read_file(lam.cfg("lambda")) == LAMBDA


# ---------------------------------------------------------------------------- python

def test_python_rename_tempfile(lam):
    d = lam.bdir("lambda")
    tmp = os.path.join(d, ".config.yml.tmp123")
    with open(tmp, "wb") as f:
        f.write(LAMBDA_B)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, lam.cfg("lambda"))
    assert not os.path.exists(tmp)
    stored_ok(lam, LAMBDA_B)


def test_python_replace_namedtemporaryfile(lam):
    d = lam.bdir("lambda")
    with tempfile.NamedTemporaryFile(dir=d, prefix="config.", suffix=".part",
                                     delete=False) as f:
        f.write(LAMBDA_B)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(f.name, 0o600)
    os.replace(f.name, lam.cfg("lambda"))
    stored_ok(lam, LAMBDA_B)


def test_python_rename_invalid(lam):
    d = lam.bdir("lambda")
    tmp = os.path.join(d, "draft.yml")
    write_file(tmp, LAMBDA_UNKNOWN_KEY)  # a draft: anything goes
    n = nevents(lam)
    assert errno_of(os.rename, tmp, lam.cfg("lambda")) == errno.EINVAL
    assert errno_of(os.replace, tmp, lam.cfg("lambda")) == errno.EINVAL
    assert read_file(tmp) == LAMBDA_UNKNOWN_KEY, "the draft stays after a refused rename"
    os.unlink(tmp)
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


def test_python_write_close_invalid(lam):
    n = nevents(lam)
    f = open(lam.cfg("lambda"), "w")
    f.write(LAMBDA_UNKNOWN_KEY.decode())
    with pytest.raises(OSError) as ei:
        f.close()
    assert ei.value.errno == errno.EINVAL
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


def test_python_write_text(lam):
    with open(lam.cfg("lambda"), "w") as f:
        f.write(LAMBDA_B.decode())
    stored_ok(lam, LAMBDA_B)


# ---------------------------------------------------------------------------- rsync

def test_rsync_default(lam, tmp_path):
    s = src(tmp_path, "config.yml", LAMBDA_B, mtime_ns=MTIME_NS, mode=0o600)
    r = run(["rsync", "-a", s, lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    assert os.listdir(lam.bdir("lambda")) and \
        sorted(os.listdir(lam.bdir("lambda"))) == ["config.yml", "status"]
    r = run(["rsync", "-a", "--itemize-changes", s, lam.cfg("lambda")])
    assert r.returncode == 0 and not any(l.startswith(">f") for l in r.stdout.splitlines()), \
        f"second rsync transferred again (size/mtime not kept): {r.stdout!r}"
    stored_ok(lam, LAMBDA_B, mtime=MTIME)
    r = run(["rsync", "-a", "--itemize-changes", s, lam.cfg("lambda")])
    assert not any(l.startswith(">f") for l in r.stdout.splitlines()), r.stdout


def test_rsync_default_invalid(lam, tmp_path):
    s = src(tmp_path, "config.yml", LAMBDA_UNKNOWN_KEY, mtime_ns=MTIME_NS)
    n = nevents(lam)
    r = run(["rsync", "-a", s, lam.cfg("lambda")])
    assert r.returncode != 0, "rsync must fail when its rename is refused"
    assert "Invalid argument" in r.stderr, r.stderr
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


def test_rsync_inplace(lam, tmp_path):
    # shorter than the stored text: rsync writes, then ftruncates after the writes
    s = src(tmp_path, "config.yml", LAMBDA_NOTYPE, mtime_ns=MTIME_NS, mode=0o600)
    assert len(LAMBDA_NOTYPE) < len(LAMBDA)
    r = run(["rsync", "-a", "--inplace", s, lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    stored_ok(lam, LAMBDA_NOTYPE, mtime=MTIME)
    # longer one
    s = src(tmp_path, "config.yml", LAMBDA_B, mtime_ns=MTIME_NS + 10**9, mode=0o600)
    r = run(["rsync", "-a", "--inplace", s, lam.cfg("lambda")])
    assert r.returncode == 0, r.stderr
    stored_ok(lam, LAMBDA_B, mtime=MTIME + 1)


def test_rsync_inplace_invalid(lam, tmp_path):
    s = src(tmp_path, "config.yml", LAMBDA_UNKNOWN_KEY, mtime_ns=MTIME_NS)
    n = nevents(lam)
    r = run(["rsync", "-a", "--inplace", s, lam.cfg("lambda")])
    assert r.returncode != 0, "rsync --inplace must fail when close() is refused"
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


# ---------------------------------------------------------------------------- tar x

def make_tar(tmp_path, members):
    path = str(tmp_path / "cfg.tar")
    with tarfile.open(path, "w") as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o600
            ti.mtime = MTIME
            ti.uid = os.getuid()
            ti.gid = os.getgid()
            t.addfile(ti, io.BytesIO(data))
    return path


def test_tar_x(lam, tmp_path):
    t = make_tar(tmp_path, [("projects/main/backends/lambda/config.yml", LAMBDA_B),
                            ("projects/main/backends/vastai/config.yml",
                             b"type: vastai\ncreds:\n  type: api_key\n  api_key: vaSECRET77\n")])
    r = run(["tar", "-xf", t, "-C", lam.mnt])
    assert r.returncode == 0, r.stderr
    assert read_file(lam.cfg("vastai")).endswith(b"vaSECRET77\n")
    stored_ok(lam, LAMBDA_B, mtime=MTIME)
    assert read_file(lam.cfg("vastai")) == \
        b"type: vastai\ncreds:\n  type: api_key\n  api_key: vaSECRET77\n"
    assert int(os.stat(lam.cfg("vastai")).st_mtime) == MTIME


def test_tar_x_invalid(lam, tmp_path):
    t = make_tar(tmp_path, [("projects/main/backends/lambda/config.yml", LAMBDA_UNKNOWN_KEY)])
    n = nevents(lam)
    r = run(["tar", "-xf", t, "-C", lam.mnt])
    assert r.returncode != 0, "tar must report the refused close()"
    # GNU tar unlinks an existing file before extracting it, so the old config may be gone
    refused(lam, LAMBDA, "unknown key", line=5, before=n, may_delete=True)


def test_tar_x_overwrite_invalid_keeps(lam, tmp_path):
    t = make_tar(tmp_path, [("projects/main/backends/lambda/config.yml", LAMBDA_UNKNOWN_KEY)])
    n = nevents(lam)
    r = run(["tar", "--overwrite", "-xf", t, "-C", lam.mnt])
    assert r.returncode != 0
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


# ---------------------------------------------------------------------------- ansible

def ansible_env(tmp_path):
    return {"ANSIBLE_LOCAL_TEMP": str(tmp_path / "ans-local"),
            "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ans-remote"),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
            "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "0"}


def ansible(tmp_path, module, args):
    return run(["ansible", "localhost", "-c", "local", "-m", module, "-a", args],
               env=ansible_env(tmp_path), timeout=120)


def test_ansible_copy(lam, tmp_path):
    s = src(tmp_path, "new.yml", LAMBDA_B)
    r = ansible(tmp_path, "copy", f"src={s} dest={lam.cfg('lambda')} mode=0600")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CHANGED" in r.stdout
    assert sorted(os.listdir(lam.bdir("lambda"))) == ["config.yml", "status"]
    # idempotent: a second run changes nothing
    r = ansible(tmp_path, "copy", f"src={s} dest={lam.cfg('lambda')} mode=0600")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    stored_ok(lam, LAMBDA_B)


def test_ansible_copy_invalid(lam, tmp_path):
    s = src(tmp_path, "bad.yml", LAMBDA_UNKNOWN_KEY)
    n = nevents(lam)
    r = ansible(tmp_path, "copy", f"src={s} dest={lam.cfg('lambda')} mode=0600")
    assert r.returncode != 0, r.stdout
    assert "FAILED" in r.stdout, r.stdout
    refused(lam, LAMBDA, "unknown key", line=5, before=n)


def test_ansible_copy_content_new_backend(fleet, tmp_path):
    os.mkdir(fleet.bdir("lambda"))
    args = json.dumps({"dest": fleet.cfg("lambda"), "mode": "0600",
                       "content": LAMBDA.decode()})
    r = run(["ansible", "localhost", "-c", "local", "-m", "copy", "-a", args],
            env=ansible_env(tmp_path), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    stored_ok(fleet, LAMBDA)


def test_ansible_file_module(lam, tmp_path):
    d = lam.bdir("vastai")
    r = ansible(tmp_path, "file", f"path={d} state=directory mode=0700")
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.isdir(d) and lam.status("vastai").get("state") == "unconfigured"
    r = ansible(tmp_path, "file", f"path={lam.cfg('lambda')} state=absent")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not os.path.exists(lam.cfg("lambda"))
    lam.remount()
    assert not os.path.exists(lam.cfg("lambda")) and os.path.isdir(d)


PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    key: "{key}"
  tasks:
    - name: lambda backend
      template:
        src: {tpl}
        dest: {dest}
        mode: "0600"
"""

TEMPLATE = """\
# managed by ansible
type: lambda
creds:
  type: api_key
  api_key: {{{{ key }}}}
{extra}"""


def playbook(tmp_path, dest, key, extra=""):
    tpl = tmp_path / "lambda.yml.j2"
    tpl.write_text(TEMPLATE.format(extra=extra))
    pb = tmp_path / "pb.yml"
    pb.write_text(PLAYBOOK.format(key=key, tpl=tpl, dest=dest))
    return run(["ansible-playbook", "-i", "localhost,", str(pb)], env=ansible_env(tmp_path),
               timeout=120)


def test_ansible_template_playbook(lam, tmp_path):
    r = playbook(tmp_path, lam.cfg("lambda"), LAMBDA_KEY2)
    assert r.returncode == 0, r.stdout + r.stderr
    want = ("# managed by ansible\ntype: lambda\ncreds:\n  type: api_key\n"
            f"  api_key: {LAMBDA_KEY2}\n").encode()
    stored_ok(lam, want)


def test_ansible_template_playbook_invalid(lam, tmp_path):
    n = nevents(lam)
    r = playbook(tmp_path, lam.cfg("lambda"), LAMBDA_KEY2, extra="foo: 1\n")
    assert r.returncode != 0, r.stdout
    refused(lam, LAMBDA, "unknown key", line=6, before=n)


# ---------------------------------------------------------------------------- nano (pty)

def nano_edit(path, keys, cwd, timeout=20):
    """Drive nano through a pseudo-terminal; returns (exit code or None, screen bytes)."""
    import pty
    import select
    import time
    pid, fd = pty.fork()
    if pid == 0:  # child
        try:
            os.environ["TERM"] = "xterm"
            os.chdir(cwd)
            os.execvp("nano", ["nano", "--ignorercfiles", "--nohelp", path])
        finally:
            os._exit(127)
    out = b""

    def drain(t):
        nonlocal out
        end = time.time() + t
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    return

    try:
        drain(0.5)
        for k in keys:
            os.write(fd, k)
            drain(0.3)
        end = time.time() + timeout
        while time.time() < end:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                return os.waitstatus_to_exitcode(st), out
            drain(0.1)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return None, out
    finally:
        os.close(fd)


ALT_END = b"\x1b/"   # M-/ : go to the last line
CTRL_O = b"\x0f"     # write out
CTRL_X = b"\x18"     # exit


@pytest.mark.skipif(shutil.which("nano") is None, reason="nano not installed")
def test_nano(lam):
    rc, screen = nano_edit("config.yml", [ALT_END, EXTRA.strip(), CTRL_O, b"\r", CTRL_X],
                           cwd=lam.bdir("lambda"))
    assert rc == 0, screen[-400:]
    assert b"Error" not in screen, screen[-400:]
    stored_ok(lam, LAMBDA + EXTRA)


@pytest.mark.skipif(shutil.which("nano") is None, reason="nano not installed")
def test_nano_invalid(lam):
    n = nevents(lam)
    rc, screen = nano_edit("config.yml", [ALT_END, b"foo: 1", CTRL_O, b"\r", CTRL_X, b"n"],
                           cwd=lam.bdir("lambda"))
    assert rc == 0, screen[-400:]
    assert b"Error writing" in screen and b"Invalid argument" in screen, \
        f"nano did not report the refused write: {screen[-600:]!r}"
    refused(lam, LAMBDA, "unknown key", line=5, before=n)
