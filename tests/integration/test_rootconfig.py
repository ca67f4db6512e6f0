"""MNT/config.yml: the whole state in dstack's ~/.dstack/server/config.yml format, readable and
writable (all-or-nothing apply, dstack semantics for listed/unlisted projects), plus
`encryption.keys`."""
import base64
import errno
import os
import stat
import subprocess

import yaml

from fleetlib import (AWS, AWS_ACCESS, AWS_SECRET, LAMBDA, LAMBDA_KEY, LAMBDA_KEY2, read_file,
                      run, scan_bytes_for, write_file)


def root(fleet):
    raw = read_file(fleet.p("config.yml"))
    doc = yaml.safe_load(raw)
    assert isinstance(doc, dict) and isinstance(doc.get("projects"), list), raw
    return doc


def projects_of(doc):
    return {p["name"]: (p.get("backends") or []) for p in doc["projects"]}


def entry_key(e):
    return e.get("name") or e["type"]


def tree(fleet):
    """{project: {backend: config bytes or None}}"""
    out = {}
    for p in sorted(os.listdir(fleet.p("projects"))):
        bk = {}
        for b in sorted(os.listdir(fleet.p("projects", p, "backends"))):
            c = fleet.cfg(b, p)
            bk[b] = read_file(c) if os.path.exists(c) else None
        out[p] = bk
    return out


LAMBDA_E = {"type": "lambda", "creds": {"type": "api_key", "api_key": LAMBDA_KEY2}}
AWS_E = {"type": "aws", "creds": {"type": "access_key", "access_key": AWS_ACCESS,
                                  "secret_key": AWS_SECRET}, "regions": ["us-east-1"]}
AWS_PROD_E = dict(AWS_E, name="aws-prod", regions=["eu-west-1"])


def dump(doc):
    return yaml.safe_dump(doc, sort_keys=False).encode()


def test_fresh_root_config(fleet):
    doc = root(fleet)
    assert [p["name"] for p in doc["projects"]] == ["main"]
    assert not projects_of(doc)["main"]
    assert "encryption" not in doc or not (doc["encryption"] or {}).get("keys")
    st = os.stat(fleet.p("config.yml"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == len(read_file(fleet.p("config.yml")))


def test_root_config_reflects_tree(fleet):
    fleet.add_backend("lambda", LAMBDA)
    fleet.add_backend("aws-prod", AWS)
    os.mkdir(fleet.p("projects", "empty"))
    doc = root(fleet)
    pr = projects_of(doc)
    assert set(pr) == {"main", "empty"}
    assert not pr["empty"]
    ents = {entry_key(e): e for e in pr["main"]}
    assert set(ents) == {"lambda", "aws-prod"}, ents
    lam = dict(ents["lambda"])
    lam.pop("name", None)
    assert lam == yaml.safe_load(LAMBDA)
    prod = ents["aws-prod"]
    assert prod.get("name") == "aws-prod" and prod["type"] == "aws"
    prod = dict(prod)
    prod.pop("name")
    assert prod == yaml.safe_load(AWS)


def test_apply_dstack_config(fleet, tmp_path):
    fleet.add_backend("lambda", LAMBDA)
    fleet.add_backend("vastai", b"creds:\n  type: api_key\n  api_key: vaSECRETx1\n")
    fleet.add_backend("lambda", LAMBDA, project="other")
    other_before = read_file(fleet.cfg("lambda", "other"))
    doc = {"projects": [
        {"name": "main", "backends": [LAMBDA_E]},
        {"name": "research", "backends": [AWS_E, AWS_PROD_E]},
    ]}
    s = tmp_path / "config.yml"
    s.write_bytes(dump(doc))
    r = run(["cp", str(s), fleet.p("config.yml")])
    assert r.returncode == 0, r.stderr

    def check():
        t = tree(fleet)
        assert set(t) == {"main", "research", "other"}, t
        assert set(t["main"]) == {"lambda"}, "backends of a listed project absent from " \
            f"the file must be removed: {t['main']}"
        assert yaml.safe_load(t["main"]["lambda"]) in (LAMBDA_E, {k: v for k, v in
                                                              LAMBDA_E.items() if k != "type"})
        assert set(t["research"]) == {"aws", "aws-prod"}
        assert yaml.safe_load(t["research"]["aws"]) == AWS_E
        prod = yaml.safe_load(t["research"]["aws-prod"])
        assert prod == {k: v for k, v in AWS_PROD_E.items() if k != "name"}, prod
        assert t["other"] == {"lambda": other_before}, "unlisted project must be untouched"
        pr = projects_of(root(fleet))
        assert set(pr) == {"main", "research", "other"}
        assert {entry_key(e) for e in pr["research"]} == {"aws", "aws-prod"}
        for p in ("main", "research", "other"):
            for b in t[p]:
                assert stat.S_IMODE(os.stat(fleet.cfg(b, p)).st_mode) == 0o600
    check()
    fleet.remount()
    check()


def test_apply_is_all_or_nothing(fleet, tmp_path):
    fleet.add_backend("lambda", LAMBDA)
    before = tree(fleet)
    before_root = read_file(fleet.p("config.yml"))
    bad_aws = dict(AWS_E, foo=1)
    doc = {"projects": [
        {"name": "main", "backends": [LAMBDA_E]},
        {"name": "research", "backends": [AWS_PROD_E, bad_aws]},
    ]}
    s = tmp_path / "config.yml"
    s.write_bytes(dump(doc))
    n = len(fleet.events())
    r = run(["cp", str(s), fleet.p("config.yml")])
    assert r.returncode != 0, "cp of a config with one invalid backend must fail"
    assert "Invalid argument" in r.stderr, r.stderr
    new = fleet.events()[n:]
    assert any("config.yml:" in ln and "foo" in ln for ln in new), new
    assert tree(fleet) == before
    assert read_file(fleet.p("config.yml")) == before_root
    fleet.remount()
    assert tree(fleet) == before
    # python: close() raises EINVAL
    f = open(fleet.p("config.yml"), "wb")
    f.write(dump(doc))
    try:
        f.close()
        raise AssertionError("close() should fail")
    except OSError as e:
        assert e.errno == errno.EINVAL
    assert tree(fleet) == before


def test_apply_invalid_documents(fleet, tmp_path):
    fleet.add_backend("lambda", LAMBDA)
    before = tree(fleet)
    bads = [
        b"projects: 5\n",
        b"projectz: []\n",
        b"projects:\n  - backends: []\n",                       # project without name
        b"projects:\n  - name: 'bad name'\n    backends: []\n",
        b"projects:\n  - name: main\n    backends:\n      - type: nosuchcloud\n",
        b"projects: [\n",
        dump({"projects": [{"name": "main", "backends": [dict(LAMBDA_E, name="bad name")]}]}),
    ]
    for b in bads:
        n = len(fleet.events())
        assert _errno_write(fleet.p("config.yml"), b) == errno.EINVAL, b
        new = fleet.events()[n:]
        assert any("config.yml:" in ln for ln in new), (b, new)
        assert fleet.alive()
        assert tree(fleet) == before, b


def _errno_write(path, data):
    try:
        write_file(path, data)
    except OSError as e:
        return e.errno
    return 0


def test_root_config_rename_and_vim(fleet, tmp_path):
    # drafts in the mount root, renamed onto config.yml
    doc = {"projects": [{"name": "main", "backends": [LAMBDA_E]}]}
    draft = fleet.p(".config.yml.tmp")
    write_file(draft, dump(doc))
    os.rename(draft, fleet.p("config.yml"))
    assert yaml.safe_load(read_file(fleet.cfg("lambda"))).get("creds") == LAMBDA_E["creds"]
    # vim on the root config, rename-style save
    r = subprocess.run(["vim", "-N", "-u", "NONE", "-i", "NONE", "-n", "-es",
                        "-c", "set backupskip=", "-c", "set backupcopy=no",
                        "-c", f"%s/{LAMBDA_KEY2}/{LAMBDA_KEY}/", "-c", "wq", "-c", "qa!",
                        "config.yml"], cwd=fleet.mnt, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert yaml.safe_load(read_file(fleet.cfg("lambda")))["creds"]["api_key"] == LAMBDA_KEY
    root_names = set(os.listdir(fleet.mnt))
    assert "config.yml~" not in root_names and ".config.yml.tmp" not in root_names
    fleet.remount()
    assert yaml.safe_load(read_file(fleet.cfg("lambda")))["creds"]["api_key"] == LAMBDA_KEY


def key_b64(n=32, fill=None):
    raw = bytes([fill]) * n if fill is not None else os.urandom(n)
    return base64.b64encode(raw).decode()


def test_encryption_keys(fleet, tmp_path):
    secret = key_b64()
    doc = {"projects": [{"name": "main", "backends": [LAMBDA_E]}],
           "encryption": {"keys": [{"type": "aes", "name": "k1", "secret": secret}]}}
    write_file(fleet.p("config.yml"), dump(doc))
    got = root(fleet)
    keys = (got.get("encryption") or {}).get("keys") or []
    assert [k.get("name") for k in keys if k.get("type") == "aes"] == ["k1"], got
    assert yaml.safe_load(read_file(fleet.cfg("lambda")))["creds"] == LAMBDA_E["creds"]
    fleet.remount()
    assert yaml.safe_load(read_file(fleet.cfg("lambda")))["creds"] == LAMBDA_E["creds"]
    keys = (root(fleet).get("encryption") or {}).get("keys") or []
    assert [k.get("name") for k in keys if k.get("type") == "aes"] == ["k1"]
    fleet.umount()
    hits = scan_bytes_for(fleet.state, [secret, LAMBDA_KEY2, AWS_SECRET])
    assert not hits, f"plain-text secrets in the state dir: {hits}"
    fleet.start()
    # rotation: a new first key, the old one kept
    secret2 = key_b64()
    doc["encryption"]["keys"].insert(0, {"type": "aes", "name": "k2", "secret": secret2})
    write_file(fleet.p("config.yml"), dump(doc))
    fleet.remount()
    assert yaml.safe_load(read_file(fleet.cfg("lambda")))["creds"] == LAMBDA_E["creds"]


def test_encryption_bad_secret(fleet):
    fleet.add_backend("lambda", LAMBDA)
    before = tree(fleet)
    before_root = read_file(fleet.p("config.yml"))
    for bad in [key_b64(16), "not base64 at all!!", key_b64(33), ""]:
        doc = {"projects": [{"name": "main", "backends": [LAMBDA_E]}],
               "encryption": {"keys": [{"type": "aes", "name": "k1", "secret": bad}]}}
        n = len(fleet.events())
        assert _errno_write(fleet.p("config.yml"), dump(doc)) == errno.EINVAL, bad
        new = fleet.events()[n:]
        assert any("config.yml:" in ln and "secret" in ln for ln in new), new
        if bad:
            assert not any(bad in ln for ln in fleet.events()), "secret echoed into events"
        assert tree(fleet) == before
        assert read_file(fleet.p("config.yml")) == before_root
    fleet.remount()
    assert tree(fleet) == before
