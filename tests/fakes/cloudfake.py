"""cloudfake: the shared base of fleetfs's fake cloud provider APIs (see README.md here).

A fake is an HTTPS server on 127.0.0.1 (a throwaway test CA signs its certificate) that
answers a provider's API with the provider's paths, fields, status codes and error envelope,
and whose VMs are real SSH hosts (tests/hosts: sshd in network namespaces) lent out of a
pool. A subclass supplies the provider's routes and its error bodies; this module supplies
TLS, routing, authentication, the request log, faults (latency, failures, hangs, rate
limits), the VM lifecycle, capacity and the host pool.

    class MyFake(CloudFake):
        provider = "mycloud"
        base_path = "/v2"
        default_user = "root"

        def setup_routes(self):
            self.route("GET", r"/things/(?P<id>[0-9]+)", self.get_thing)

        def error_reply(self, status, kind, message=None):
            return Reply(status, {"error": kind, "message": message or kind})

        def get_thing(self, req):
            return {"thing": {"id": req.params["id"]}}

    with MyFake(keys=["k1"], hosts=2) as f:      # f.url, f.ca_path
        ...

Python standard library, openssl(1) and tests/hosts only. Needs root once VMs are created
(the host pool); the HTTP side alone does not.
"""
import atexit
import collections
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
HOSTS_DIR = os.path.join(os.path.dirname(HERE), "hosts")

__all__ = ["CloudFake", "FakeRequest", "Reply", "Request", "VM", "HostPool", "TestCA", "default_ca",
           "NoCapacity"]

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
MAX_BODY = 1 << 20          # request bodies over this are refused (413)

Request = collections.namedtuple(
    "Request", "method path route query body status auth time headers")
Request.__doc__ = """One request as the fake saw it.
method, path (as sent, without the query), route (path without base_path), query (dict of
lists, parse_qs), body (parsed JSON, else the raw text, None when empty), status (the answer's,
logged just before it is sent; None while being handled, 0 when no answer was sent: a hang, a
closed connection), auth (True:
valid credentials, False: credentials given but refused, None: none given; the Authorization
value itself is never kept), time (time.monotonic() at arrival), headers (a dict of the
request headers without Authorization, Cookie, X-Api-Key)."""

_SECRET_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}


class Reply(Exception):
    """An answer: return it from a handler, or raise it from anywhere inside one.
    body: dict/list (sent as JSON), str/bytes (sent as is), None (empty)."""

    def __init__(self, status=200, body=None, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class NoCapacity(Exception):
    """launch_vm() could not place a VM: no capacity for (instance type, region), or the
    host pool is empty. Subclasses turn it into the provider's no-capacity error."""


# --------------------------------------------------------------------------------------------
# TLS: a throwaway CA and server certificates (openssl CLI)

def _openssl(*args, cwd=None):
    r = subprocess.run([OPENSSL, *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {r.stderr.strip()}")


class TestCA:
    """A CA made for one test process (EC P-256, valid 2 days) in a temporary directory.
    cert_path is what to hand a client (FLEETFS_CA_BUNDLE); issue() signs server
    certificates. cleanup() removes the directory (also done at exit)."""

    __test__ = False

    def __init__(self, name="fleetfs test CA"):
        self.dir = tempfile.mkdtemp(prefix="cloudfake-ca-")
        os.chmod(self.dir, 0o755)
        self.cert_path = os.path.join(self.dir, "ca.pem")
        self.key_path = os.path.join(self.dir, "ca.key")
        self._n = 0
        self._lock = threading.Lock()
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", self.key_path, "-out", self.cert_path, "-days", "2",
                 "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash")
        os.chmod(self.cert_path, 0o644)
        atexit.register(self.cleanup)

    def issue(self, names=("127.0.0.1", "localhost")):
        """A server certificate for names (IP addresses or DNS names): (cert_path, key_path)."""
        with self._lock:
            self._n += 1
            stem = os.path.join(self.dir, f"server{self._n}")
        san = ",".join(("IP:" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", n)
                        else "DNS:") + n for n in names)
        with open(stem + ".ext", "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", stem + ".key", "-out", stem + ".csr",
                 "-subj", f"/CN={names[0]}")
        _openssl("x509", "-req", "-in", stem + ".csr", "-CA", self.cert_path, "-CAkey",
                 self.key_path, "-CAcreateserial", "-out", stem + ".pem", "-days", "2",
                 "-extfile", stem + ".ext")
        return stem + ".pem", stem + ".key"

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


_CA = {}


def default_ca():
    """The process's shared TestCA and its certificate for 127.0.0.1 (made once)."""
    if "ca" not in _CA:
        ca = TestCA()
        _CA["server"] = ca.issue()
        _CA["ca"] = ca
    return _CA["ca"], _CA["server"]


# --------------------------------------------------------------------------------------------
# The host pool: real sshd hosts lent out as VMs

def _testhosts():
    if HOSTS_DIR not in sys.path:
        sys.path.insert(0, HOSTS_DIR)
    import hosts
    return hosts


class HostPool:
    """n real SSH hosts (tests/hosts TestHosts, all visible, user `user`) lent out as VMs.
    Started on first use (start() to start it now); stop() tears them down. Several fakes
    may share one pool (a module-scoped pool under function-scoped fakes saves the start-up).

    acquire(pubkeys) lends a free host that accepts exactly pubkeys for `user` (None when
    none is free); release(host) clears its keys, kills every process in its namespace (a
    terminated VM's sessions drop) and starts its sshd again before the host is free again;
    fresh_host_keys=True also gives it new host keys (slower: RSA keygen). Hosts: .hosts,
    .free (count), .in_use, .testhosts (the TestHosts once started)."""

    def __init__(self, n=2, user="root", workdir=None, fresh_host_keys=False, **testhosts_kw):
        self.n = n
        self.user = user
        self.workdir = workdir
        self.fresh_host_keys = fresh_host_keys
        self.kw = testhosts_kw
        self.testhosts = None
        self._free = []
        self._used = set()
        self._lock = threading.RLock()

    def start(self):
        with self._lock:
            if self.testhosts is None:
                th = _testhosts().TestHosts(n=self.n, jump=False, user=self.user,
                                            workdir=self.workdir, **self.kw)
                th.start()
                for h in th.hosts:
                    th.set_authorized_keys(h, [])
                self.testhosts = th
                self._free = list(th.hosts)
            return self

    def stop(self):
        with self._lock:
            th, self.testhosts = self.testhosts, None
            self._free, self._used = [], set()
        if th is not None:
            th.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def hosts(self):
        return list(self.testhosts.hosts) if self.testhosts else []

    @property
    def free(self):
        with self._lock:
            return len(self._free) if self.testhosts else self.n

    @property
    def in_use(self):
        with self._lock:
            return list(self._used)

    def acquire(self, pubkeys):
        self.start()
        with self._lock:
            if not self._free:
                return None
            h = self._free.pop(0)
            self._used.add(h)
        self.testhosts.set_authorized_keys(h, list(pubkeys))
        return h

    def release(self, host):
        """Give host back: keys cleared, its processes killed, sshd started again."""
        th = self.testhosts
        with self._lock:
            if th is None or host not in self._used:
                return
        try:
            th.set_authorized_keys(host, [])
            th.down(host, kind="sshd")
            if self.fresh_host_keys:
                th.rotate_host_key(host, restart=False)
            th.up(host)
        finally:
            with self._lock:
                self._used.discard(host)
                if self.testhosts is th:
                    self._free.append(host)

    def authorized_keys(self, host):
        """The keys host accepts now (its per-host authorized_keys file)."""
        try:
            with open(os.path.join(host.pubdir, "authorized_keys")) as f:
                return [ln.strip() for ln in f if ln.strip()]
        except FileNotFoundError:
            return []


# --------------------------------------------------------------------------------------------
# VMs

PHASES = ("booting", "running", "terminating", "terminated")


class VM:
    """A fake VM. Generic phases: booting -> running -> terminating -> terminated -> gone;
    a subclass maps them to the provider's words (status_of). `extra` holds provider fields
    (tags, labels, plan ...); `status` overrides the provider word when set (e.g. "unhealthy").
    ip is the host's address once running, None before (and once terminated)."""

    def __init__(self, vm_id, name, instance_type, region, pubkeys, host, orphan=False,
                 **extra):
        self.id = vm_id
        self.name = name
        self.instance_type = instance_type
        self.region = region
        self.pubkeys = list(pubkeys)
        self.host = host
        self.orphan = orphan
        self.extra = extra
        self.phase = "booting"
        self.status = None
        self.created = time.time()
        self.since = time.monotonic()     # when the current phase began

    @property
    def ip(self):
        if self.host is not None and self.phase in ("running", "terminating"):
            return self.host.addr
        return None

    def snapshot(self, status=None):
        return {"id": self.id, "name": self.name, "instance_type": self.instance_type,
                "region": self.region, "phase": self.phase, "status": status or self.phase,
                "ip": self.ip, "host": self.host.name if self.host else None,
                "host_addr": self.host.addr if self.host else None,
                "pubkeys": list(self.pubkeys), "orphan": self.orphan,
                "extra": dict(self.extra), "created": self.created}


# --------------------------------------------------------------------------------------------
# Faults

class _Fault:
    def __init__(self, kind, route, method, times, **params):
        if times is not None and times < 1:
            raise ValueError("times: None (until cleared) or at least 1")
        self.kind, self.route, self.method, self.remaining = kind, route, method, times
        self.rx = re.compile(route)
        self.params = params

    def matches(self, method, route):
        return (self.method is None or self.method == method) and bool(self.rx.search(route))


# --------------------------------------------------------------------------------------------
# HTTP plumbing

class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        # the TLS handshake runs in the connection's thread, so a client that never
        # completes one cannot stall the accept loop
        try:
            # headers and body go out in separate writes: without NODELAY, Nagle's algorithm
            # and the client's delayed ACK add 40 ms to every answer
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.settimeout(10)
            tls = self.owner._ssl.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.owner._tls_failure(e)
            return
        try:
            tls.settimeout(None)
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def version_string(self):
        return self.server.owner.server_header

    def setup(self):
        super().setup()
        self.server.owner._conn(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._conn(self.connection, False)

    def _any(self):
        self.server.owner._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any


class FakeRequest:
    """What a handler gets: method, path, route (path without base_path), params (the route
    regex's named groups), query (dict of lists), headers, body (parsed JSON or None), raw
    (bytes), json_ok (False when a body was sent that is not JSON), key (the credential that
    authenticated it)."""

    def __init__(self, method, path, route, query, headers, raw):
        self.method, self.path, self.route, self.query = method, path, route, query
        self.headers = headers
        self.raw = raw
        self.params = {}
        self.key = None
        self.body, self.json_ok = None, True
        if raw:
            try:
                self.body = json.loads(raw)
            except ValueError:
                self.json_ok = False


class CloudFake:
    """See the module docstring and README.md. Not started by the constructor: start() or
    `with`. Subclasses set provider, base_path, default_user, server_header and implement
    setup_routes() and error_reply(); they may override check_auth(), status_of()."""

    provider = "cloud"
    base_path = ""
    default_user = "root"
    server_header = "cloudfake"
    id_prefix = ""

    def __init__(self, keys=("test-key",), hosts=2, pool=None, user=None, boot_seconds=1.0,
                 terminate_seconds=0.5, terminated_linger=None, ca=None, hosts_workdir=None):
        """keys: the valid API keys. pool: a HostPool to borrow from (not stopped by stop()),
        else one of `hosts` hosts for `user` (default_user) is made on first use and stopped
        by stop(). boot_seconds: booting -> running; terminate_seconds: terminating ->
        terminated; terminated_linger: seconds a terminated VM stays visible (None: forever,
        0: gone at once). ca: a TestCA (default: the process's)."""
        self.keys = set(keys)
        self.inactive_keys = set()     # valid, but the account is not allowed (403)
        self.boot_seconds = boot_seconds
        self.terminate_seconds = terminate_seconds
        self.terminated_linger = terminated_linger
        self.own_pool = pool is None
        self.pool = pool or HostPool(n=hosts, user=user or self.default_user,
                                     workdir=hosts_workdir)
        if ca is None:
            self.ca, (cert, key) = default_ca()
        else:
            self.ca, (cert, key) = ca, ca.issue()
        self.ca_path = self.ca.cert_path
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(cert, key)
        self.lock = threading.RLock()      # guards the fake's state (subclasses use it too)
        self.requests = []
        self.errors = []                   # handler exceptions (a fake's bug): tests assert []
        self.tls_failures = 0
        self.url = self.port = None
        self._routes = []
        self._faults = []
        self._notify = []                  # (route regex, method, threading.Event)
        self._rate = None
        self._hits = collections.deque()
        self._vms = collections.OrderedDict()
        self.capacity = {}                 # (instance_type, region) -> max live VMs
        self._stopping = threading.Event()
        self._release = threading.Event()
        self._conns, self._threads = set(), set()
        self._httpd = self._serve_thread = self._ticker = None
        self.setup_routes()

    # ------------------------------------------------------------------ for subclasses

    def setup_routes(self):
        """Register the provider's routes with self.route()."""

    def route(self, method, pattern, handler):
        """handler(req) for method and a route regex (full match of the path without
        base_path; named groups land in req.params). It returns a Reply, a (status, body)
        pair, or a dict/list (200, JSON)."""
        self._routes.append((method, re.compile(pattern), handler))

    def error_reply(self, status, kind, message=None):
        """The provider's error answer. kind: unauthorized, forbidden, not_found,
        method_not_allowed, rate_limited, bad_request, too_large, internal, unavailable,
        no_capacity, or any other word a subclass uses. Override."""
        return Reply(status, {"error": {"kind": kind, "message": message or kind}})

    def check_auth(self, headers):
        """The key a request authenticates with, False when it gives credentials that are
        not valid, None when it gives none. Default: `Authorization: Bearer <key>`."""
        v = headers.get("Authorization")
        if v is None:
            return None
        m = re.fullmatch(r"Bearer ([^\s]+)", v.strip())
        return m.group(1) if m and m.group(1) in self.keys | self.inactive_keys else False

    def status_of(self, vm):
        """The provider's word for vm's state (default: vm.status or its phase)."""
        return vm.status or vm.phase

    def new_id(self):
        """A new VM id (default: id_prefix + 32 hex digits)."""
        return f"{self.id_prefix}{os.urandom(16).hex()}"

    # ------------------------------------------------------------------ lifecycle

    def start(self):
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._release.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}{self.base_path}"
        self._serve_thread = threading.Thread(target=self._httpd.serve_forever,
                                              kwargs={"poll_interval": 0.05},
                                              name=f"{self.provider}fake:{self.port}",
                                              daemon=True)
        self._serve_thread.start()
        self._ticker = threading.Thread(target=self._tick_loop, daemon=True,
                                        name=f"{self.provider}fake-vms")
        self._ticker.start()
        return self

    def stop(self, timeout=5.0):
        """Stop serving (hung and slowed requests are released, connections closed), let go
        of every VM's host, and stop the pool when this fake made it. Idempotent."""
        if self._httpd is not None:
            self._stopping.set()
            self._release.set()
            self._httpd.shutdown()
            self._httpd.server_close()
            self._serve_thread.join(timeout)
            with self.lock:
                conns = list(self._conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            end = time.monotonic() + timeout
            while True:
                with self.lock:
                    threads = [t for t in self._threads if t.is_alive()]
                if not threads or time.monotonic() >= end:
                    break
                threads[0].join(max(0.0, min(0.1, end - time.monotonic())))
            if self._ticker is not None:
                self._ticker.join(timeout)
            self._httpd = self._serve_thread = self._ticker = None
        if self.own_pool:      # the hosts go with the pool: no need to give them back
            with self.lock:
                self._vms.clear()
            self.pool.stop()
        else:
            self.clear_vms()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ------------------------------------------------------------------ faults

    def fail(self, route, status, body=None, times=1, headers=None, method=None):
        """The next `times` requests (None: until cleared) whose route matches the regex
        (re.search) get status with body (None: the provider's error_reply for it)."""
        self._add(_Fault("fail", route, method, times, status=status, body=body,
                         headers=dict(headers or {})))

    def latency(self, route, seconds, times=None, method=None):
        """Matching requests wait `seconds` before anything else happens to them."""
        self._add(_Fault("latency", route, method, times, seconds=seconds))

    def hang(self, route, times=None, method=None):
        """Matching requests get no answer until release_hung() or stop(); then their
        connection is closed."""
        self._add(_Fault("hang", route, method, times))

    def rate_limit(self, per_second, retry_after=1, route=".*", method=None):
        """At most per_second matching requests in any 1-second window; the others get 429
        with `Retry-After: retry_after` and the provider's rate_limited error. None: off."""
        with self.lock:
            self._rate = None if per_second is None else (
                int(per_second), retry_after, re.compile(route), method)
            self._hits.clear()

    def notify(self, route, method=None):
        """A threading.Event set once a request whose route matches the regex (re.search)
        has arrived whole (body read), before any fault delays it: the signal that the
        client sent it (kill the client then, say). One-shot; wait on it with a timeout."""
        ev = threading.Event()
        with self.lock:
            self._notify.append((re.compile(route), method, ev))
        return ev

    def clear_faults(self):
        with self.lock:
            self._faults = []
            self._rate = None

    def release_hung(self):
        with self.lock:
            self._release.set()
            self._release = threading.Event()

    def _add(self, fault):
        with self.lock:
            self._faults.append(fault)

    def _take(self, kinds, method, route):
        for f in self._faults:
            if f.kind in kinds and f.matches(method, route):
                if f.remaining is not None:
                    f.remaining -= 1
                    if f.remaining == 0:
                        self._faults.remove(f)
                return f
        return None

    # ------------------------------------------------------------------ the request log

    def count(self, method=None, route=None, status=None):
        """Requests so far with that method, a route matching the regex (re.search) and
        that status (any of them None: any)."""
        return len(self.find(method, route, status))

    def find(self, method=None, route=None, status=None):
        rx = re.compile(route) if route else None
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method)
                    and (rx is None or rx.search(r.route))
                    and (status is None or r.status == status)]

    def wait_for(self, pred, timeout=10.0, step=0.02):
        """Poll pred() until true (returns True) or timeout (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(step)
        return bool(pred())

    def clear_requests(self):
        with self.lock:
            self.requests = []

    # ------------------------------------------------------------------ VMs

    def set_capacity(self, instance_type, region, n):
        """At most n live (not terminated) VMs of instance_type in region; None: unlimited
        (the pool still limits)."""
        with self.lock:
            if n is None:
                self.capacity.pop((instance_type, region), None)
            else:
                self.capacity[(instance_type, region)] = int(n)

    def capacity_left(self, instance_type, region):
        """How many more VMs of that type fit in region now (the pool included)."""
        with self.lock:
            left = self.pool.free
            cap = self.capacity.get((instance_type, region))
            if cap is not None:
                live = sum(1 for v in self._vms.values() if v.instance_type == instance_type
                           and v.region == region and v.phase != "terminated")
                left = min(left, max(0, cap - live))
            return left

    def launch_vm(self, name, instance_type, region, pubkeys, orphan=False, **extra):
        """A new VM on a free host that accepts exactly pubkeys; booting. Raises NoCapacity."""
        if self.capacity_left(instance_type, region) <= 0:
            raise NoCapacity(f"no capacity for {instance_type} in {region}")
        host = self.pool.acquire(pubkeys)     # starts the pool on first use (outside lock)
        if host is None:
            raise NoCapacity("every host of the pool is in use")
        vm = VM(self.new_id(), name, instance_type, region, pubkeys, host, orphan=orphan,
                **extra)
        with self.lock:
            self._vms[vm.id] = vm
        return vm

    def create_behind_the_back(self, name, instance_type, region, pubkeys=(), phase="running",
                               **extra):
        """A VM the client did not ask for (an orphan), in `phase` at once."""
        vm = self.launch_vm(name, instance_type, region, pubkeys, orphan=True, **extra)
        with self.lock:
            vm.phase = phase
            vm.since = time.monotonic()
        return vm

    def vm(self, vm_id):
        """The VM (the live object, use under self.lock) or None when unknown or gone."""
        with self.lock:
            self._advance()
            return self._vms.get(vm_id)

    def all_vms(self):
        """The live VM objects (under self.lock), oldest first."""
        with self.lock:
            self._advance()
            return list(self._vms.values())

    def vms(self):
        """Snapshots (dicts) of every VM not gone, with the provider's status word."""
        with self.lock:
            self._advance()
            return [v.snapshot(self.status_of(v)) for v in self._vms.values()]

    def terminate_vm(self, vm):
        """Start terminating vm (no-op when it already is)."""
        with self.lock:
            if vm.phase in ("booting", "running"):
                vm.phase = "terminating"
                vm.since = time.monotonic()

    def set_phase(self, vm_id, phase, status=None):
        """Force a VM into a phase now (status: a provider word to show instead)."""
        if phase not in PHASES:
            raise ValueError(phase)
        with self.lock:
            vm = self._vms[vm_id]
            vm.phase, vm.status, vm.since = phase, status, time.monotonic()
        self._advance_hosts()

    def clear_vms(self):
        """Forget every VM now, giving their hosts back."""
        with self.lock:
            vms = list(self._vms.values())
            self._vms.clear()
        for v in vms:
            if v.host is not None:
                self._release_host(v)

    def _advance(self):
        """Time-driven phase changes (caller holds self.lock); returns the terminated VMs
        whose host is to be given back (the ticker does, outside the lock). A terminated VM
        is forgotten after terminated_linger, once its host is back."""
        now = time.monotonic()
        out = []
        for v in list(self._vms.values()):
            if v.phase == "booting" and now - v.since >= self.boot_seconds:
                v.phase, v.since = "running", now
            if v.phase == "terminating" and now - v.since >= self.terminate_seconds:
                v.phase, v.since, v.status = "terminated", now, None
            if v.phase == "terminated":
                if v.host is not None:      # given back by the caller (outside the lock)
                    out.append(v)
                elif self.terminated_linger is not None and \
                        now - v.since >= self.terminated_linger:
                    del self._vms[v.id]
        return out

    def _advance_hosts(self):
        with self.lock:
            done = self._advance()
        for v in done:
            self._release_host(v)

    def _release_host(self, v):
        with self.lock:
            host, v.host = v.host, None
        if host is not None:
            try:
                self.pool.release(host)
            except Exception:
                self.errors.append(f"releasing {host.name}: {traceback.format_exc()}")

    def _tick_loop(self):
        while not self._stopping.wait(0.02):
            try:
                self._advance_hosts()
            except Exception:
                self.errors.append(traceback.format_exc())

    # ------------------------------------------------------------------ serving

    def _conn(self, sock, opened):
        with self.lock:
            if opened:
                self._conns.add(sock)
                self._threads.add(threading.current_thread())
                self._threads = {t for t in self._threads if t.is_alive()}
            else:
                self._conns.discard(sock)

    def _tls_failure(self, e):
        with self.lock:
            self.tls_failures += 1

    def _handle(self, h):
        parts = urllib.parse.urlsplit(h.path)
        path = parts.path
        route = path[len(self.base_path):] if self.base_path and \
            path.startswith(self.base_path) else (None if self.base_path else path)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _SECRET_HEADERS}
        raw = b""
        n = h.headers.get("Content-Length")
        status = 0
        rec = Request(h.command, path, route if route is not None else path,
                      urllib.parse.parse_qs(parts.query), None, None, None, time.monotonic(),
                      headers)
        with self.lock:
            self.requests.append(rec)
            slot = len(self.requests) - 1

        def answer(reply):
            # logged before it is sent: a client that has its answer finds it in the log
            with self.lock:
                self.requests[slot] = self.requests[slot]._replace(status=reply.status)
            return self._send(h, reply)
        try:
            if n is not None:
                try:
                    n = int(n)
                except ValueError:
                    n = -1
                if n < 0 or n > MAX_BODY:
                    status = answer(self.error_reply(413, "too_large"))
                    h.close_connection = True
                    return
                raw = h.rfile.read(n) if n else b""
            elif h.headers.get("Transfer-Encoding"):
                status = answer(self.error_reply(411, "bad_request",
                                                 "Content-Length required"))
                h.close_connection = True
                return
            req = FakeRequest(h.command, path, rec.route, rec.query, headers, raw)
            auth = self.check_auth(h.headers)
            rec = rec._replace(body=req.body if req.json_ok else raw.decode("utf-8", "replace")
                               if raw else None, auth=None if auth is None else bool(auth))
            with self.lock:
                self.requests[slot] = rec
            reply = self._faults_before(h, req)
            if reply is _SILENT:
                h.close_connection = True
                return
            if reply is None:
                reply = self._dispatch(req, route, auth)
            status = answer(reply)
        except (ConnectionError, socket.timeout, ssl.SSLError, OSError):
            h.close_connection = True
        finally:
            if not status:
                with self.lock:
                    if self.requests[slot].status is None:
                        self.requests[slot] = self.requests[slot]._replace(status=0)

    def _faults_before(self, h, req):
        """Latency, hang, fail and the rate limit, in that order: a Reply to send, None to
        go on, or _SILENT to close the connection without an answer."""
        with self.lock:
            for n in [n for n in self._notify
                      if (n[1] is None or n[1] == req.method) and n[0].search(req.route)]:
                self._notify.remove(n)
                n[2].set()
            slow = self._take(("latency",), req.method, req.route)
        if slow is not None and self._stopping.wait(slow.params["seconds"]):
            return _SILENT
        with self.lock:
            hung = self._take(("hang",), req.method, req.route)
            release = self._release
        if hung is not None:
            while not release.wait(0.05) and not self._stopping.is_set():
                pass
            return _SILENT
        with self.lock:
            f = self._take(("fail",), req.method, req.route)
        if f is not None:
            st = f.params["status"]
            if f.params["body"] is None:
                r = self.error_reply(st, _kind_of(st))
                r.headers.update(f.params["headers"])
                return r
            return Reply(st, f.params["body"], f.params["headers"])
        with self.lock:
            rate = self._rate
            if rate is not None and (rate[3] is None or rate[3] == req.method) and \
                    rate[2].search(req.route):
                now = time.monotonic()
                while self._hits and now - self._hits[0] >= 1.0:
                    self._hits.popleft()
                if len(self._hits) >= rate[0]:
                    r = self.error_reply(429, "rate_limited")
                    r.headers.setdefault("Retry-After", str(rate[1]))
                    return r
                self._hits.append(now)
        return None

    def _dispatch(self, req, route, auth):
        if auth is None or auth is False:
            return self.error_reply(401, "unauthorized")
        if auth in self.inactive_keys:
            return self.error_reply(403, "forbidden")
        req.key = auth
        if route is None:
            return self.error_reply(404, "not_found", f"no such path: {req.path}")
        allowed = []
        for method, rx, handler in self._routes:
            m = rx.fullmatch(route)
            if m is None:
                continue
            if method != req.method:
                allowed.append(method)
                continue
            req.params = m.groupdict()
            try:
                with self.lock:
                    self._advance()
                out = handler(req)
            except Reply as r:
                return r
            except Exception:
                tb = traceback.format_exc()
                with self.lock:
                    self.errors.append(tb)
                print(f"{self.provider} fake: handler error:\n{tb}", file=sys.stderr)
                return self.error_reply(500, "internal")
            if isinstance(out, Reply):
                return out
            if isinstance(out, tuple):
                return Reply(*out)
            return Reply(200, out)
        if allowed:
            r = self.error_reply(405, "method_not_allowed")
            r.headers.setdefault("Allow", ", ".join(sorted(set(allowed))))
            return r
        return self.error_reply(404, "not_found", f"no such path: {req.path}")

    def _send(self, h, reply):
        body = reply.body
        ctype = reply.headers.get("Content-Type")
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            ctype = ctype or "application/json"
        elif isinstance(body, str):
            data = body.encode()
            ctype = ctype or "text/plain; charset=utf-8"
        elif body is None:
            data = b""
        else:
            data = bytes(body)
        h.send_response(reply.status)
        for k, v in reply.headers.items():
            if k.lower() not in ("content-type", "content-length"):
                h.send_header(k, v)
        if ctype and data:
            h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        return reply.status


_SILENT = object()


def _kind_of(status):
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 413: "too_large", 429: "rate_limited",
            503: "unavailable"}.get(status, "internal" if status >= 500 else "bad_request")
