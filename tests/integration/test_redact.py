"""User text in error messages, and files referenced through the mount itself (issue 11).

- A secret pasted where a key or a value belongs is refused (EINVAL), and the reason in
  events/status names file, line and parent field, with the text only in its redacted form
  ("lmb…" (21 chars)): never in any events or status file (0444 with allow_other) nor in the
  daemon's -d log.
- A referenced file reached through a symbolic link (or a chain, or "..") into the mount is
  refused with a reason, within a bound, by a single-threaded (-s) daemon that would deadlock
  if it read its own mount; the mount answers afterwards.
"""
import errno
import os
import subprocess
import sys

from fleetlib import read_file, wait_until, write_fd

SECRET = "lmbdSECRETkey7f3a9c1e"
SHOWN = '"lmb\u2026" (21 chars)'
# the writer runs in its own process: if the daemon deadlocked, only the child hangs, and the
# bound below turns that into a failure (the fixture's teardown then unmounts and kills)
WRITE_BOUND = 20


def generated_texts(fleet):
    """Every events and status file of the mount, as text."""
    out = {}
    for root, dirs, files in os.walk(fleet.mnt):
        dirs[:] = [d for d in dirs if d not in ("offers", "ssh")]
        for name in files:
            if name in ("events", "status"):
                p = os.path.join(root, name)
                out[os.path.relpath(p, fleet.mnt)] = read_file(p).decode("utf-8", "replace")
    return out


def test_secret_in_key_or_value_position_is_redacted(fleet_factory):
    f = fleet_factory(args=["-d"])
    os.mkdir(f.bdir("lambda"))
    bad = [
        # (path, content, the redacted reason that must be in events)
        (f.p("config.yml"), f"projects: []\n{SECRET}: 1\n",
         f"config.yml:2: unknown key {SHOWN}"),
        (f.p("config.yml"),
         f"projects:\n- name: main\n  backends:\n  - type: lambda\n    creds:\n"
         f"      api_key: k\n      {SECRET}: 1\n",
         f"config.yml:7: creds: unknown key {SHOWN}"),
        (f.cfg("lambda"), f"type: lambda\ncreds:\n  api_key: k\n  {SECRET}: 1\n",
         f"projects/main/backends/lambda/config.yml:4: creds: unknown key {SHOWN}"),
        (f.cfg("lambda"), f"type: lambda\ncreds:\n  type: {SECRET}\n  api_key: k\n",
         f"projects/main/backends/lambda/config.yml:3: creds.type: must be one of: api_key; "
         f"got {SHOWN}"),
        (f.cfg("lambda"), f"type: lambda\ncreds: {{api_key: k}}\ntags: {{{SECRET}: x}}\n",
         "projects/main/backends/lambda/config.yml:3: unknown key \"tag\u2026\" (4 chars)"),
        (f.p("projects", "main", "fleets", "gpu.yml"), f"nodes: 1\n{SECRET}: 1\n",
         f"fleets/gpu.yml:2: unknown key {SHOWN}"),
        (f.p("projects", "main", "fleets", "gpu.yml"),
         f"nodes: 1\nresources:\n  gpu: {{{SECRET}: 1}}\n",
         f"fleets/gpu.yml:3: resources.gpu: unknown key {SHOWN}"),
        (f.p("projects", "main", "fleets", "gpu.yml"), f"nodes: 1\ntags: {{\"{SECRET}!\": x}}\n",
         "fleets/gpu.yml:2: tags[\"lmb\u2026\" (22 chars)]: invalid tag key"),
    ]
    for path, data, reason in bad:
        werr, cerr = write_fd(path, data.encode())
        assert (werr or cerr) == errno.EINVAL, (path, data, werr, cerr)
        assert f.alive()
        ev = "\n".join(f.events() + f.events("main"))
        assert reason in ev, f"{reason!r} not in the events:\n{ev}"
    # a refused name (mkdir) is user text as well
    try:
        os.mkdir(f.p("projects", SECRET + "!"))
        raise AssertionError("mkdir of a bad project name succeeded")
    except OSError as e:
        assert e.errno == errno.EINVAL
    assert "mkdir projects/\"lmb\u2026\" (22 chars) refused" in "\n".join(f.events())
    # the last refusal of the backend is in its status, redacted too
    st = read_file(os.path.join(f.bdir("lambda"), "status")).decode()
    assert "last_error" in st and "tag\u2026" in st, st
    texts = generated_texts(f)
    assert "events" in texts and "projects/main/events" in texts
    for name, text in texts.items():
        assert SECRET not in text, f"the secret is in {name}:\n{text}"
        assert SECRET[3:] not in text, f"more than 3 characters of the secret in {name}"
    f.umount()
    log = f.log()
    assert "unique" in log.lower() or "init" in log.lower(), "no -d debug output?"
    assert SECRET not in log and SECRET[3:] not in log, "the secret is in the daemon log"


def write_in_child(path, data, cwd=None):
    """Write path (open, write, close) in a child process; its errno (0: accepted)."""
    code = ("import os, sys\n"
            "try:\n"
            "    with open(sys.argv[1], 'wb') as fh:\n"
            "        fh.write(sys.argv[2].encode())\n"
            "except OSError as e:\n"
            "    print(e.errno)\n"
            "else:\n"
            "    print(0)\n")
    r = subprocess.run([sys.executable, "-c", code, path, data], cwd=cwd, timeout=WRITE_BOUND,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip())


def gcp_config(filename):
    return f"project_id: p\ncreds:\n  type: service_account\n  filename: {filename}\n"


def test_referenced_file_through_a_link_into_the_mount(fleet_factory, tmp_path):
    f = fleet_factory(args=["-s"])  # single-threaded: reading our own mount would deadlock
    os.mkdir(f.bdir("gcp"))
    cfg = f.cfg("gcp")
    link = tmp_path / "l"
    os.symlink(f.mnt, link)
    os.symlink("l", tmp_path / "l2")           # a chain of links
    (tmp_path / "sub").mkdir()
    os.symlink("../l2", tmp_path / "sub" / "up")  # relative, through ".."
    cases = [
        # (filename as written, the writer's cwd, the reason)
        (f"{link}/README", None, "leads into the fleetfs mount (through a symbolic link"),
        (f"{tmp_path}/l2/README", None, "leads into the fleetfs mount"),
        ("../l2/README", str(tmp_path / "sub"), "leads into the fleetfs mount"),
        ("up/config.yml", str(tmp_path / "sub"), "leads into the fleetfs mount"),
        (f"{tmp_path}/sub/../l/projects/main/events", None, "leads into the fleetfs mount"),
        # the mount point itself, reached from its parent without a link
        (f"./{os.path.basename(f.mnt)}/README", os.path.dirname(f.mnt),
         "is inside the fleetfs mount"),
        (f"{f.mnt}/README", None, "is inside the fleetfs mount"),
    ]
    for filename, cwd, why in cases:
        n = len(f.events("main"))
        got = write_in_child(cfg, gcp_config(filename), cwd=cwd)
        assert got == errno.EINVAL, (filename, got)
        assert f.alive()
        new = f.events("main")[n:]
        hit = [ln for ln in new if "projects/main/backends/gcp/config.yml:4: creds.filename: "
               in ln and why in ln]
        assert hit, f"{filename}: no readable reason ({why!r}) in {new!r}"
        # the path is user text: shown redacted
        assert filename not in hit[0] and str(tmp_path) not in hit[0], hit[0]
        # the mount still answers
        assert wait_until(lambda: "README" in os.listdir(f.mnt), 5)
    assert not os.path.exists(cfg), "a refused first write must not create config.yml"
    # a file outside the mount reached through a link works (and is checked: not JSON)
    (tmp_path / "sa.json").write_text("not json")
    os.symlink("sa.json", tmp_path / "sa-link")
    n = len(f.events("main"))
    assert write_in_child(cfg, gcp_config(f"{tmp_path}/sa-link")) == errno.EINVAL
    assert any("not valid JSON" in ln for ln in f.events("main")[n:])
    assert f.alive()
