"""Spec replay: every request a provider client (backends/<type>.c) sends, and every answer its
fake (tests/fakes/) gives, checked against the provider's published OpenAPI spec by Stoplight
Prism (@stoplight/prism-cli, pinned in tests/npm, installed by tests/deps.sh with `npm ci`).

    build/bkcall --http--> Recorder --http--> prism proxy SPEC --https--> the provider's fake

Prism runs with --errors: a request that violates the spec is refused (422, 401, 404, ...)
and never reaches the fake; an answer of the fake that violates the spec becomes a 500. Both
come back with application/problem+json and Prism's `sl-violations` header, which the
Recorder (a small reverse proxy of this file) keeps for each exchange, so a failure names the
method, path, location and rule. Prism's own log (signale text: it has no JSON log format) is
read too: an error or warning line in it fails the test.

For each provider the whole lifecycle runs through build/bkcall: check, offers, create (a
real VM: a tests/hosts sshd host, so root is needed), get until running, list, terminate,
get until gone. The test then asserts: no call was refused, no request or response violation
anywhere, and the fake saw exactly the requests the client sent, in order (nothing went
around Prism). Two self-checks per provider make sure the harness cannot pass vacuously: a
request missing a field the spec requires IS refused and reported, and a fake's answer of the
wrong shape IS reported.

No exception to the specs is needed today: with --errors an exception could not be made
without patching the spec (Prism answers the client with an error either way), so a spec that
is wrong somewhere should get a narrowly patched copy here, with the reason.

A provider is skipped while its fake module (tests/fakes/<module>.py) or its backend in
bkcall is missing, so a new provider is picked up by adding a row to PROVIDERS. Prism or the
specs missing: skipped, unless CI_STRICT is set (then a failure). Environment:
FLEETFS_PRISM (default tests/npm/node_modules/.bin/prism), FLEETFS_SPEC_DIR (default
shared/reference/specs beside the repository, else /work/shared/reference/specs),
FLEETFS_BKCALL.
"""
import http.client
import importlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKES = os.path.join(REPO, "tests", "fakes")
BKCALL = os.environ.get("FLEETFS_BKCALL") or os.path.join(REPO, "build", "bkcall")
PRISM = os.environ.get("FLEETFS_PRISM") or os.path.join(REPO, "tests", "npm", "node_modules",
                                                        ".bin", "prism")
SPEC_DIR = os.environ.get("FLEETFS_SPEC_DIR") or next(
    (d for d in (os.path.join(os.path.dirname(REPO), "shared", "reference", "specs"),
                 "/work/shared/reference/specs") if os.path.isdir(d)),
    "/work/shared/reference/specs")
STRICT = bool(os.environ.get("CI_STRICT"))
if FAKES not in sys.path:
    sys.path.insert(0, FAKES)

NAME = "fleetfs-main-gpu-0-a1b2c3d4"
SCALE = "0.01"
PRISM_START_TIMEOUT = 60.0


def _offer(backend, instance, region, price, cpus, memory_mib, disk_mib=0, vendor="", gpu="",
           gpu_mib=0, count=0):
    return {"backend": backend, "type": backend, "region": region, "instance": instance,
            "price": price, "spot": False,
            "gpus": {"vendor": vendor, "name": gpu, "memory_mib": gpu_mib, "count": count},
            "cpus": cpus, "cpu_arch": "x86", "memory_mib": memory_mib, "disk_mib": disk_mib}


LAMBDA_CSV = (
    "instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,disk_size,"
    "gpu_vendor,flags,cpu_arch,provider_data\n"
    "gpu_1x_a10,us-west-1,0.75,30,200,1,A10,24,False,1400,nvidia,,x86,\n"
    "gpu_8x_h100_sxm5,us-east-1,23.92,208,1800,8,H100,80,False,24780,nvidia,,x86,\n")


def _do_setup(fake, origin):
    fake.add_project("ml-team")          # check and create look it up: GET /v2/projects
    fake.max_per_page = 2                # every list in several pages
    fake.links_origin = origin           # links.pages.next name the API as the client sees it


def _vultr_setup(fake, origin):
    fake.page_max = 3                    # every list in several pages (the cursor)


# One row per provider. offers: what the lifecycle creates, one after the other. spec_base:
# the path of the spec's first `servers` URL (the spec's paths are below it; checked against
# the spec file). setup(fake, origin): after the fake starts (origin: the client's). config:
# added to the backend's config.yml. bad_request: (method, path below the client's endpoint,
# body, the field the spec requires that the body lacks). bad_answer: (method, path, the
# fake's route regex, a body of the wrong shape).
PROVIDERS = {
    "lambda": dict(
        type="lambda", module="lambda_fake", cls="LambdaFake", spec="lambda-cloud.yaml",
        spec_base="/api/v1", key="lmbdFAKEkey3c1e5b2d48aa7f3a9",
        offers=[_offer("lambda", "gpu_1x_a10", "us-west-1", 0.75, 30, 204800, 1433600,
                       "nvidia", "A10", 24576, 1)],
        catalog={"lambdalabs.csv": LAMBDA_CSV}, config="", setup=None,
        bad_request=("POST", "/instance-operations/launch",
                     {"instance_type_name": "gpu_1x_a10", "ssh_key_names": ["k"],
                      "file_system_names": [], "quantity": 1, "name": "n"}, "region_name"),
        bad_answer=("GET", "/instances", r"^/instances$", {"data": "not a list"})),
    "digitalocean": dict(
        type="digitalocean", module="do_fake", cls="DigitalOceanFake",
        spec="digitalocean.yaml", spec_base="",
        key="dop_v1_FAKEfa11ce5eed0123456789abcdef0123456789abcdef0123456789abcd",
        offers=[_offer("digitalocean", "s-2vcpu-4gb", "nyc1", 0.03571, 2, 4096)],
        catalog=None, config="project_name: ml-team\n", setup=_do_setup,
        bad_request=("POST", "/droplets",
                     {"name": "x", "region": "nyc1", "image": "ubuntu-22-04-x64"}, "size"),
        bad_answer=("GET", "/droplets", r"^/droplets$", {"droplets": "not a list"})),
    "vultr": dict(
        type="vultr", module="vultr_fake", cls="VultrFake", spec="vultr.json",
        spec_base="/v2", key="VULTRFAKEKEY3C1E5B2D48AA7F3A9C0D1E2F",
        offers=[_offer("vultr", "vc2-1c-1gb", "ewr", 0.007, 1, 1024, 25600),
                # bare metal: its own paths (/bare-metals)
                _offer("vultr", "vbm-8c-132gb", "ewr", 0.479, 16, 131072, 1945600)],
        catalog=None, config="", setup=_vultr_setup,
        bad_request=("POST", "/instances", {"plan": "vc2-1c-1gb", "os_id": 1743}, "region"),
        bad_answer=("GET", "/instances", r"^/instances$", {"instances": "not a list"})),
}

# ------------------------------------------------------------------------------ helpers

def need_root():
    if os.geteuid() != 0:
        pytest.skip("the fakes' VMs are sshd hosts in network namespaces: root needed")


def _missing(what):
    if STRICT:
        pytest.fail(f"{what} (CI_STRICT is set)", pytrace=False)
    pytest.skip(what)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec_server_path(path):
    """The path of the first `servers` URL of an OpenAPI document (JSON, or YAML read with a
    regex: the DigitalOcean spec is 3 MB, too slow for PyYAML here)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        url = json.loads(text)["servers"][0]["url"]
    else:
        m = re.search(r"^servers:\s*\n\s*-\s*url:\s*['\"]?([^'\"\s]+)", text, re.M)
        url = m.group(1) if m else ""
    return urllib.parse.urlsplit(url).path.rstrip("/")


def _bkcall_knows(btype):
    r = subprocess.run([BKCALL, btype, btype, "/nonexistent/config.yml", "check"],
                       capture_output=True, text=True, timeout=30)
    return "unknown backend type" not in r.stderr


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(method, url, body=None, headers=None):
    """(status, parsed JSON or text, headers) of one request, proxies ignored."""
    data = None if body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with _NO_PROXY.open(req, timeout=30) as resp:
            status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), dict(e.headers)
    try:
        return status, json.loads(raw) if raw else None, hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


# ------------------------------------------------------------------------------ the recorder

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade", "expect", "host", "content-length"}


class Exchange:
    """One request through Prism: method, path (with the query, below the client's origin),
    status, violations (Prism's sl-violations: [{location, severity, code, message}]),
    problem (Prism's problem+json answer when Prism made the answer itself: a refusal or a
    response violation; None when the answer is the fake's)."""

    def __init__(self, method, path, status, violations, problem):
        self.method, self.path, self.status = method, path, status
        self.violations, self.problem = violations, problem

    def all_violations(self):
        """sl-violations and those of Prism's problem answer (a refused request has only
        the latter), each once."""
        out, seen = [], set()
        for v in self.violations + list((self.problem or {}).get("validation") or []):
            k = (tuple(map(str, v.get("location") or [])), v.get("message"))
            if k not in seen:
                seen.add(k)
                out.append(v)
        return out

    def __repr__(self):
        return f"{self.method} {self.path} -> {self.status}"


def _is_prism_problem(headers, raw):
    if "problem+json" not in (headers.get("content-type") or ""):
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if isinstance(body, dict) and str(body.get("type", "")).startswith(
            "https://stoplight.io/prism/errors#"):
        return body
    return None


class Recorder:
    """A reverse proxy on 127.0.0.1 in front of Prism that keeps an Exchange per request
    (never a header's value but Prism's sl-violations)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.exchanges = []
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    out = b""
                    while True:
                        n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if n == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(n)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else None

            def _any(self):
                body = self._body()
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection("127.0.0.1", rec.target_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=hdrs)
                    resp = conn.getresponse()
                    raw = resp.read()
                    rh = {k.lower(): v for k, v in resp.getheaders()}
                finally:
                    conn.close()
                viol = rh.get("sl-violations")
                try:
                    viol = json.loads(viol) if viol else []
                except ValueError:
                    viol = [{"location": ["?"], "severity": "Error", "code": "?",
                             "message": viol}]
                with rec.lock:
                    rec.exchanges.append(Exchange(self.command, self.path, resp.status, viol,
                                                  _is_prism_problem(rh, raw)))
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True,
                                       name="prism-recorder")
        self.thread.start()

    def since(self, mark):
        with self.lock:
            return list(self.exchanges[mark:])

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------ Prism's log

# signale's lines: "[4:28:57 AM] › [HTTP SERVER] post /x ✖  error     Request terminated ..."
_LOG_RE = re.compile(r"^\[[^\]]*\] › +\[(?P<name>[A-Z ]+)\]"
                     r"(?: (?P<method>[a-z]+) (?P<path>\S+))? (?P<sym>\S+) +(?P<level>[a-z]+)"
                     r" +(?P<msg>.*)$")
_BAD_LEVELS = {"error", "fatal", "warning", "warn"}
SYNC_PATH = "/__fleetfs_spec_replay_sync_"


def parse_log(lines):
    """[(level, name, method, path, message)] of Prism's lines; a line that is not signale's
    comes back as ("unparsed", "", "", "", line)."""
    out = []
    for ln in lines:
        if not ln.strip():
            continue
        m = _LOG_RE.match(ln)
        if m:
            out.append((m["level"], m["name"], (m["method"] or "").upper(), m["path"] or "",
                        m["msg"]))
        else:
            out.append(("unparsed", "", "", "", ln))
    return out


# ------------------------------------------------------------------------------ the stack

class Stack:
    """One provider's fake, Prism in front of it, the Recorder in front of Prism."""

    def __init__(self, name, p, tmpdir):
        self.name, self.p, self.tmpdir = name, p, tmpdir
        self.spec = os.path.join(SPEC_DIR, p["spec"])
        base = _spec_server_path(self.spec)
        assert base == p["spec_base"], f"{p['spec']}: servers[0] path {base!r}"
        mod = importlib.import_module(p["module"])
        self.fake = getattr(mod, p["cls"])(keys=[p["key"]], hosts=len(p["offers"]),
                                           boot_seconds=0.3,
                                           terminate_seconds=0.3, terminated_linger=0.5)
        self.prism = self.recorder = None
        self.log_path = os.path.join(tmpdir, f"prism-{name}.log")
        self._syncs = 0

    def start(self):
        self.fake.start()
        assert self.fake.base_path.startswith(self.p["spec_base"])
        self.port = _free_port()
        upstream = f"https://127.0.0.1:{self.fake.port}{self.p['spec_base']}"
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=self.fake.ca_path, FORCE_COLOR="0",
                   NO_COLOR="1", NODE_NO_WARNINGS="1")   # a line not signale's fails a test
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(k, None)
        self.log = open(self.log_path, "w")
        self.prism = subprocess.Popen(
            [PRISM, "proxy", self.spec, upstream, "--errors", "--port", str(self.port),
             "--host", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        self.recorder = Recorder(self.port)
        # the client's endpoint: the recorder, plus the part of the fake's base path that the
        # spec's paths include (DigitalOcean's start with /v2)
        self.endpoint = self.recorder.origin + self.fake.base_path[len(self.p["spec_base"]):]
        if self.p["setup"]:
            self.p["setup"](self.fake, self.recorder.origin)
        self._wait_listening()
        return self

    def _wait_listening(self):
        end = time.monotonic() + PRISM_START_TIMEOUT
        while True:
            if self.prism.poll() is not None:
                raise AssertionError(f"prism exited ({self.prism.returncode}):\n"
                                     + self.read_log())
            if "Prism is listening on" in self.read_log():
                return
            assert time.monotonic() < end, "prism did not start:\n" + self.read_log()[-3000:]
            time.sleep(0.05)

    def read_log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self):
        if self.prism is not None and self.prism.poll() is None:
            self.prism.terminate()
            try:
                self.prism.wait(5)
            except subprocess.TimeoutExpired:
                self.prism.kill()
                self.prism.wait(5)
        if self.prism is not None:
            self.log.close()
        if self.recorder is not None:
            self.recorder.stop()
        self.fake.stop()

    # -- marks and what happened since

    def mark(self):
        """Where the logs are now: since(mark) is what happened after."""
        self.fake.clear_requests()
        self.fake.clear_faults()
        with self.recorder.lock:
            n = len(self.recorder.exchanges)
        return n, len(self.read_log().splitlines())

    def sync_log(self):
        """Wait until Prism has logged everything it did so far: a request for a path the
        spec does not have goes straight to Prism (not through the recorder), and Prism's
        answer to it is logged after everything before it."""
        self._syncs += 1
        path = f"{SYNC_PATH}{self._syncs}"
        _http("GET", f"http://127.0.0.1:{self.port}{path}")
        end = time.monotonic() + 10
        while not any(x[3] == path and x[0] == "error"
                      for x in parse_log(self.read_log().splitlines())):
            assert time.monotonic() < end, "prism did not log the sync request"
            time.sleep(0.02)

    def log_since(self, mark):
        self.sync_log()
        return [x for x in parse_log(self.read_log().splitlines()[mark[1]:])
                if not x[3].startswith(SYNC_PATH)]

    def problems(self, mark):
        """What went wrong since mark, one line each: refusals and violations from the
        recorder, error and warning lines from Prism's log. [] when all was well."""
        out = []
        for x in self.recorder.since(mark[0]):
            vs = x.all_violations()
            for v in vs:
                out.append(f"{x.method} {x.path} -> {x.status}: {v.get('severity')} "
                           f"{'.'.join(map(str, v.get('location') or []))}: "
                           f"{v.get('message')} [{v.get('code')}]")
            if x.problem is not None and not vs:
                out.append(f"{x.method} {x.path} -> {x.status}: prism answered "
                           f"{x.problem.get('title')}: {x.problem.get('detail')}")
        for level, name, method, path, msg in self.log_since(mark):
            if level in _BAD_LEVELS or level == "unparsed":
                out.append(f"prism log: {level} [{name}] {method} {path} {msg}".rstrip())
        counts = {}
        for line in out:        # the client's retries repeat them
            counts[line] = counts.get(line, 0) + 1
        return [f"{line} (x{n})" if n > 1 else line for line, n in counts.items()]

    def fake_saw_everything(self, mark):
        """The requests the recorder passed on are the fake's, in order: (method, path,
        query) each. Returns the two lists when they differ, None when they are the same."""
        sent = []
        for x in self.recorder.since(mark[0]):
            u = urllib.parse.urlsplit(x.path)
            sent.append((x.method, self.p["spec_base"] + u.path,
                         urllib.parse.parse_qs(u.query)))
        with self.fake.lock:
            seen = [(r.method, r.path, r.query) for r in self.fake.requests]
        return None if sent == seen else (sent, seen)

    # -- the client

    def bk(self, op, *args, pubfile=None):
        cfg = os.path.join(self.tmpdir, f"{self.name}.yml")
        with open(cfg, "w") as f:
            f.write(f"type: {self.p['type']}\ncreds:\n  type: api_key\n  api_key: "
                    f"{self.p['key']}\n" + self.p["config"])
        catalog = "none"
        if self.p["catalog"]:
            catalog = os.path.join(self.tmpdir, f"catalog-{self.name}")
            os.makedirs(catalog, exist_ok=True)
            for fn, text in self.p["catalog"].items():
                with open(os.path.join(catalog, fn), "w") as f:
                    f.write(text)
        env = dict(os.environ, FLEETFS_TIME_SCALE=SCALE, FLEETFS_CATALOG=catalog,
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        env["FLEETFS_ENDPOINT_" + self.p["type"].upper().replace("-", "_")] = self.endpoint
        env.pop("FLEETFS_CA_BUNDLE", None)
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
                  "all_proxy"):
            env.pop(k, None)
        argv = [BKCALL, self.p["type"], self.p["type"], cfg, op]
        if op == "create":
            offer, name = args
            argv += [json.dumps(offer), name, pubfile]
        else:
            argv += [a for a in args if a is not None]
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert self.p["key"] not in r.stdout + r.stderr, "the key was printed"
        assert r.returncode in (0, 1), f"bkcall {op}: exit {r.returncode}: {r.stderr}"
        out = json.loads(r.stdout)
        out["stderr"] = r.stderr
        return out


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module", autouse=True)
def _tools():
    if not os.path.exists(BKCALL):
        if os.environ.get("FLEETFS_ALLOW_MISSING"):
            pytest.skip(f"{BKCALL} not built")
        pytest.fail(f"{BKCALL} is missing: run `make build/bkcall`", pytrace=False)
    if not os.access(PRISM, os.X_OK):
        _missing(f"{PRISM} is missing: run tests/deps.sh (npm ci in tests/npm)")
    if not os.path.isdir(SPEC_DIR):
        _missing(f"the published specs are not in {SPEC_DIR} (FLEETFS_SPEC_DIR)")


@pytest.fixture(scope="module", params=sorted(PROVIDERS))
def stack(request, tmp_path_factory):
    name = request.param
    p = PROVIDERS[name]
    if not os.path.exists(os.path.join(FAKES, p["module"] + ".py")):
        pytest.skip(f"{name}: no fake yet (tests/fakes/{p['module']}.py)")
    if not _bkcall_knows(p["type"]):
        pytest.skip(f"{name}: {BKCALL} does not know the backend type {p['type']}")
    if not os.path.exists(os.path.join(SPEC_DIR, p["spec"])):
        _missing(f"{name}: no spec {os.path.join(SPEC_DIR, p['spec'])}")
    s = Stack(name, p, str(tmp_path_factory.mktemp(f"spec-{name}")))
    try:
        s.start()
        yield s
    finally:
        errors = list(s.fake.errors)
        s.stop()
    assert not errors, "the fake failed:\n" + "\n".join(errors)


@pytest.fixture(scope="module")
def pubfile(tmp_path_factory):
    d = tmp_path_factory.mktemp("spec-keys")
    path = str(d / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleetfs-test-project",
                    "-f", path], check=True, capture_output=True)
    return path + ".pub"


# ------------------------------------------------------------------------------ the tests

def _wait(stack, vm, states, timeout=20.0):
    end = time.monotonic() + timeout
    while True:
        r = stack.bk("get", vm["id"], vm.get("backend_data") or None)
        if (r["rc"] == 0 and r["vm"]["state"] in states) or \
                (r["rc"] != 0 and r["errno"] in states):
            return r
        assert time.monotonic() < end, f"not {states} after {timeout}s: {r}"
        time.sleep(0.1)


def test_the_lifecycle_keeps_to_the_published_spec(stack, pubfile):
    """check, offers, create, get until running, list, terminate, get until gone: every
    request valid for the spec, every answer of the fake too, none around Prism."""
    need_root()
    p, mark = stack.p, stack.mark()
    steps = []

    def step(op, *args, **kw):
        r = stack.bk(op, *args, **kw)
        steps.append((op, r.get("rc"), r.get("errno"), r.get("err")))
        return r

    try:
        r = step("check")
        assert r["rc"] == 0, r
        r = step("offers")
        assert r["rc"] == 0, r
        got = {(x["instance"], x["region"]): x for x in r["offers"]}
        for o in p["offers"]:
            assert (o["instance"], o["region"]) in got, sorted(got)
            assert got[(o["instance"], o["region"])]["availability"] == "available"
        for o in p["offers"]:
            r = step("create", o, NAME, pubfile=pubfile)
            assert r["rc"] == 0, r
            vm = r["vm"]
            assert _wait(stack, vm, ("running",))["vm"]["ip"], "running without an address"
            r = step("list")
            assert r["rc"] == 0 and vm["id"] in [v["id"] for v in r["vms"]], r
            r = step("terminate", vm["id"], vm.get("backend_data") or None)
            assert r["rc"] == 0, r
            r = _wait(stack, vm, ("ENOENT",))
            assert r["rc"] == -2, r
    finally:
        problems = stack.problems(mark)
        if problems:
            pytest.fail(f"{stack.name}: Prism flagged {len(problems)}:\n  "
                        + "\n  ".join(problems) + "\nsteps: " + repr(steps), pytrace=False)
    xs = stack.recorder.since(mark[0])
    assert xs and all(x.problem is None for x in xs)
    diff = stack.fake_saw_everything(mark)
    assert diff is None, "the fake did not see what Prism passed on:\n%s\n%s" % diff


def test_a_request_the_spec_refuses_is_reported(stack):
    """The self-check of requests: a body without a field the spec requires is refused by
    Prism (never reaches the fake), and problems() names the field."""
    method, path, body, field = stack.p["bad_request"]
    mark = stack.mark()
    status, ans, _ = _http(method, stack.endpoint + path, body,
                           {"Authorization": f"Bearer {stack.p['key']}"})
    assert status == 422, (status, ans)
    (x,) = stack.recorder.since(mark[0])
    assert x.problem is not None and x.problem["type"].endswith("#UNPROCESSABLE_ENTITY"), ans
    assert any(field in v["message"] for v in x.all_violations()), x.all_violations()
    assert stack.fake.count() == 0, "the refused request reached the fake"
    problems = stack.problems(mark)
    sent = urllib.parse.urlsplit(stack.endpoint).path + path
    assert any(field in line and line.startswith(f"{method} {sent} -> 422")
               for line in problems), problems
    assert any(line.startswith("prism log: error") for line in problems), problems


def test_an_answer_the_spec_refuses_is_reported(stack):
    """The self-check of answers: the fake made to answer a body of the wrong shape, Prism
    turns it into a 500 with the violation, and problems() names it."""
    method, path, route, body = stack.p["bad_answer"]
    mark = stack.mark()
    stack.fake.fail(route, 200, body, method=method)
    status, ans, _ = _http(method, stack.endpoint + path, None,
                           {"Authorization": f"Bearer {stack.p['key']}"})
    assert status == 500 and ans["type"].endswith("#VIOLATIONS"), (status, ans)
    assert stack.fake.count() == 1, "the request did not reach the fake"
    (x,) = stack.recorder.since(mark[0])
    key = next(iter(body))
    assert any(v["location"][:3] == ["response", "body", key] for v in x.all_violations()), \
        x.all_violations()
    problems = stack.problems(mark)
    assert any(f"response.body.{key}" in line for line in problems), problems
