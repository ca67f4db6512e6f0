"""A fake of gpuhunt's published offer catalogs (the v3 layout on S3), for tests.

gpuhunt publishes every provider separately (.github/scripts/publish_catalog.sh):

    <base>/<provider>/version                  the latest version, e.g. "20250101-1\\n"
    <base>/<provider>/<version>/catalog.zip    a zip holding <provider>.csv
    <base>/<provider>/latest/catalog.zip       the same zip as the latest version

and a client reads `version` (stripping it), then that version's catalog.zip. This server
answers the same URLs from catalogs set in memory, plus the faults a client has to survive:

    with CatalogServer() as cs:                  # 127.0.0.1, a free port, daemon threads
        cs.set_catalog("lambdalabs", CSV)        # version "20250101-1" (bumped on each set)
        cs.url                                   # "http://127.0.0.1:PORT/v3" (the base)
        cs.fail(503, what="version", times=2)    # the next 2 version reads get a 503
        cs.corrupt_zip("aws")                    # 200 with bytes that are not a zip
        cs.truncate_zip("aws", times=1)          # 200 with the first half of the zip
        cs.slow(2.0, what="zip")                 # answers after 2 s
        cs.hang(provider="runpod")               # never answers (until release_hung/stop)
        cs.count("/lambdalabs/version")          # requests whose path ends so
        cs.requests                              # [Request(method, path, status, time)]

Faults apply per provider (provider=None: to every provider, known or not) and to the
`version` reads, the `zip` reads or `both`; times=N applies a fault to the next N matching
requests, times=None (the default) until clear_faults(). A request goes through at most one
`slow` and then the first matching answer fault (fail, hang, drop, corrupt_zip, truncate_zip)
in the order they were added; the answer faults of the zip kind apply only to zips that exist.

What S3 does and this server copies: HTTP/1.1 with keep-alive, Content-Length on every
answer, `Content-Type: text/plain` on `version` and `application/zip` on the zips, ETag (a
quoted MD5) and Last-Modified with If-None-Match / If-Modified-Since answered by 304, HEAD,
`Server: AmazonS3`, and errors as an XML <Error> document (`Content-Type: application/xml`):
an unknown key -- provider, version or any other path -- is 404 NoSuchKey (set
`missing_status = 403` to get the AccessDenied a bucket without public listing returns).
Old versions stay downloadable after set_catalog() publishes a new one, as on S3.

stop() releases every hung or slowed handler and shuts down open keep-alive connections, so
it returns promptly (well under a second) whatever the clients are doing.

Python standard library only. `python3 tests/integration/catalogserver.py` runs a self-test.
"""
import collections
import email.utils
import hashlib
import io
import os
import re
import socket
import threading
import time
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Request = collections.namedtuple("Request", "method path status time")
Request.__doc__ = """One request: method, path as sent (query included), the status answered
(None while it is being handled, 0 when the connection was closed without an answer) and
time.monotonic() when it arrived."""

_S3_ERRORS = {
    400: ("InvalidRequest", "Invalid Request"),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    405: ("MethodNotAllowed", "The specified method is not allowed against this resource."),
    429: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    502: ("BadGateway", "Bad Gateway"),
    503: ("SlowDown", "Please reduce your request rate."),
    504: ("GatewayTimeout", "Gateway Timeout"),
}
_WHAT = ("version", "zip", "both")
_PROVIDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ZIP_DATE = (2025, 1, 1, 0, 0, 0)  # fixed, so a catalog's zip (and its ETag) is stable
NOT_A_ZIP = b"<html><body>This is not a zip file.</body></html>\n" * 8


class _Rule:
    def __init__(self, kind, provider, what, times, **params):
        if what not in _WHAT:
            raise ValueError(f"what must be one of {_WHAT}, not {what!r}")
        if times is not None and times < 1:
            raise ValueError("times must be None (forever) or at least 1")
        self.kind, self.provider, self.what, self.remaining = kind, provider, what, times
        self.params = params

    def matches(self, provider, what):
        return ((self.provider is None or self.provider == provider) and
                (self.what == "both" or self.what == what))

    def __repr__(self):
        return (f"<{self.kind} provider={self.provider} what={self.what} "
                f"remaining={self.remaining} {self.params}>")


class _Catalog:
    def __init__(self):
        self.versions = {}      # version -> (csv bytes or None, raw zip bytes or None, mtime)
        self.latest = None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False      # stop() joins the handlers itself, after releasing them
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60                # an idle keep-alive connection is closed after this

    # -------------------------------------------------------------------------- plumbing

    def version_string(self):
        return "AmazonS3"

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def setup(self):
        super().setup()
        self.server.owner._conn_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._conn_closed(self.connection)

    def do_GET(self):
        self.server.owner._handle(self, head=False)

    def do_HEAD(self):
        self.server.owner._handle(self, head=True)

    def _other(self):
        self.server.owner._handle(self, head=False, allowed=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other


class CatalogServer:
    """See the module docstring. Not started by the constructor: use start() or `with`."""

    version_date = "20250101"       # auto versions are "<date>-<n>", as GITHUB_RUN_NUMBER
    version_newline = True          # `version` ends with "\n" (published with echo)
    version_content_type = "text/plain"
    zip_content_type = "application/zip"
    missing_status = 404            # 403 = a bucket that does not allow public listing

    def __init__(self, prefix="/v3", host="127.0.0.1"):
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.host = host
        self.url = None
        self.port = None
        self.requests = []
        self._lock = threading.Lock()
        self._catalogs = {}
        self._zips = {}             # (provider, version) -> zip bytes
        self._rules = []
        self._run = 0
        self._stopping = threading.Event()
        self._release = threading.Event()
        self._conns = set()
        self._threads = set()
        self._httpd = None
        self._serve_thread = None

    # -------------------------------------------------------------------------- lifecycle

    def start(self):
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, 0), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}{self.prefix}"
        self._serve_thread = threading.Thread(target=self._httpd.serve_forever,
                                              kwargs={"poll_interval": 0.05},
                                              name=f"catalogserver:{self.port}", daemon=True)
        self._serve_thread.start()
        return self

    def stop(self, timeout=5.0):
        """Stop accepting, release hung and slowed handlers, close every open connection and
        wait (up to timeout seconds) for the handler threads to end."""
        if self._httpd is None:
            return
        self._stopping.set()
        with self._lock:
            self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._serve_thread.join(timeout)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [t for t in self._threads if t.is_alive()]
            if not threads or time.monotonic() >= end:
                break
            threads[0].join(max(0.0, min(0.1, end - time.monotonic())))
        self._httpd = None
        self._serve_thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _conn_opened(self, sock):
        with self._lock:
            self._conns.add(sock)
            self._threads.add(threading.current_thread())
            self._threads = {t for t in self._threads if t.is_alive()}

    def _conn_closed(self, sock):
        with self._lock:
            self._conns.discard(sock)

    # -------------------------------------------------------------------------- catalogs

    def set_catalog(self, provider, csv_text, version=None):
        """Publish csv_text (str or bytes) as provider's latest catalog; returns its version.
        version=None picks the next "<version_date>-<n>"."""
        return self._publish(provider, csv_text, None, version)

    def set_raw_zip(self, provider, data, version=None):
        """Publish exactly these bytes as provider's latest catalog.zip (a zip without the
        expected member, an empty file, ...); returns the version."""
        return self._publish(provider, None, bytes(data), version)

    def _publish(self, provider, csv_text, raw, version):
        if not _PROVIDER_RE.match(provider or ""):
            raise ValueError(f"bad provider name {provider!r}")
        if isinstance(csv_text, str):
            csv_text = csv_text.encode()
        with self._lock:
            cat = self._catalogs.setdefault(provider, _Catalog())
            if version is None:
                while True:
                    self._run += 1
                    version = f"{self.version_date}-{self._run}"
                    if version not in cat.versions:
                        break
            if not _PROVIDER_RE.match(version) or version == "latest":
                raise ValueError(f"bad version {version!r}")
            cat.versions[version] = (csv_text, raw, time.time())
            cat.latest = version
            self._zips.pop((provider, version), None)
        return version

    def remove_catalog(self, provider):
        """Forget provider entirely: its URLs answer NoSuchKey from now on."""
        with self._lock:
            self._catalogs.pop(provider, None)
            for k in [k for k in self._zips if k[0] == provider]:
                del self._zips[k]

    def version(self, provider):
        """provider's latest version, or None."""
        with self._lock:
            cat = self._catalogs.get(provider)
            return cat.latest if cat else None

    def version_url(self, provider):
        return f"{self.url}/{provider}/version"

    def zip_url(self, provider, version=None):
        return f"{self.url}/{provider}/{version or self.version(provider)}/catalog.zip"

    def zip_bytes(self, provider, version=None):
        """The bytes served as provider's catalog.zip (its latest version by default)."""
        with self._lock:
            return self._zip_locked(provider, version or "latest")[0]

    def _zip_locked(self, provider, version):
        """(zip bytes, mtime) or (None, None)."""
        cat = self._catalogs.get(provider)
        if cat is None:
            return None, None
        if version == "latest":
            version = cat.latest
        if version not in cat.versions:
            return None, None
        csv_bytes, raw, mtime = cat.versions[version]
        if raw is not None:
            return raw, mtime
        z = self._zips.get((provider, version))
        if z is None:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                info = zipfile.ZipInfo(f"{provider}.csv", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, csv_bytes)
            z = self._zips[(provider, version)] = buf.getvalue()
        return z, mtime

    # -------------------------------------------------------------------------- faults

    def _add(self, rule):
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail(self, status=500, what="both", times=None, provider=None):
        """Answer with an S3 error document of this status."""
        return self._add(_Rule("fail", provider, what, times, status=int(status)))

    def corrupt_zip(self, provider=None, times=None):
        """Serve 200 with bytes that are not a zip (an HTML page) instead of catalog.zip."""
        return self._add(_Rule("corrupt", provider, "zip", times))

    def truncate_zip(self, provider=None, times=None, transfer=False):
        """Serve only the first half of catalog.zip. transfer=False: a complete 200 answer
        whose body is the truncated zip (Content-Length says so); transfer=True: the headers
        announce the whole zip, then the connection is closed half-way (a partial transfer)."""
        return self._add(_Rule("truncate", provider, "zip", times, transfer=bool(transfer)))

    def slow(self, seconds, what="both", times=None, provider=None):
        """Wait this long before answering (then answer normally, or as another fault says)."""
        return self._add(_Rule("slow", provider, what, times, seconds=float(seconds)))

    def hang(self, what="both", times=None, provider=None):
        """Never answer (the connection stays open) until release_hung() or stop()."""
        return self._add(_Rule("hang", provider, what, times))

    def drop(self, what="both", times=None, provider=None):
        """Close the connection without any answer (an empty reply)."""
        return self._add(_Rule("drop", provider, what, times))

    def clear_faults(self, provider=None):
        """Remove every fault (provider=None) or the faults added for that provider."""
        with self._lock:
            self._rules = [] if provider is None else \
                [r for r in self._rules if r.provider != provider]

    def release_hung(self):
        """Let the requests hung so far go: their connections are closed without an answer.
        Requests that match a hang rule later hang again (clear_faults() first to stop it)."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()

    def faults(self):
        with self._lock:
            return list(self._rules)

    def _take(self, provider, what, kinds):
        """The first rule of one of these kinds matching the request; uses up one of its
        times. Called with the lock held."""
        for r in self._rules:
            if r.kind in kinds and r.matches(provider, what):
                if r.remaining is not None:
                    r.remaining -= 1
                    if r.remaining == 0:
                        self._rules.remove(r)
                return r
        return None

    # -------------------------------------------------------------------------- request log

    def _path_of(self, path):
        return urllib.parse.urlsplit(path).path

    def count(self, path_suffix="", method=None, status=None):
        """Requests whose path (query left out) ends with path_suffix, optionally only those
        of this method / answered with this status."""
        return len(self.requests_for(path_suffix, method, status))

    def requests_for(self, path_suffix="", method=None, status=None):
        with self._lock:
            log = list(self.requests)
        return [r for r in log if self._path_of(r.path).endswith(path_suffix) and
                (method is None or r.method == method) and
                (status is None or r.status == status)]

    def wait_for(self, path_suffix="", n=1, timeout=10.0, method=None, status=None):
        """Wait until count(path_suffix, ...) >= n; returns whether it got there."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count(path_suffix, method, status) >= n:
                return True
            time.sleep(0.01)
        return self.count(path_suffix, method, status) >= n

    def clear_log(self):
        with self._lock:
            self.requests.clear()

    def _log_start(self, method, path):
        with self._lock:
            self.requests.append(Request(method, path, None, time.monotonic()))
            return len(self.requests) - 1, self.requests[-1]

    def _log_end(self, slot, status):
        idx, rec = slot
        with self._lock:
            # the log may have been cleared meanwhile: find the record again
            if idx < len(self.requests) and self.requests[idx] is rec:
                self.requests[idx] = rec._replace(status=status)
            else:
                for i, r in enumerate(self.requests):
                    if r is rec:
                        self.requests[i] = rec._replace(status=status)
                        break

    # -------------------------------------------------------------------------- answering

    def _parse(self, path):
        """(provider, what, version) for a catalog URL; what is None for any other key."""
        p = self._path_of(path)
        if self.prefix:
            if not p.startswith(self.prefix + "/"):
                return None, None, None
            p = p[len(self.prefix):]
        parts = p.lstrip("/").split("/")
        if len(parts) == 2 and parts[1] == "version" and parts[0]:
            return parts[0], "version", None
        if len(parts) == 3 and parts[2] == "catalog.zip" and parts[0] and parts[1]:
            return parts[0], "zip", parts[1]
        return (parts[0] or None), None, None

    def _handle(self, h, head, allowed=True):
        slot = self._log_start(h.command, h.path)
        status = 0
        try:
            status = self._answer(h, head, allowed)
        except (ConnectionError, socket.timeout, OSError):
            h.close_connection = True
        finally:
            self._log_end(slot, status)

    def _answer(self, h, head, allowed):
        """Send one answer; returns the status sent (0: none)."""
        provider, what, version = self._parse(h.path)
        key = self._path_of(h.path).lstrip("/")
        if not allowed:
            return self._error(h, 405, key, head=False)
        if what is None:
            return self._error(h, self.missing_status, key, head)
        with self._lock:
            slow = self._take(provider, what, ("slow",))
            release = self._release
        if slow is not None:
            if self._stopping.wait(slow.params["seconds"]):
                h.close_connection = True
                return 0
        with self._lock:
            rule = self._take(provider, what, ("fail", "hang", "drop"))
            if rule is None and what == "zip":
                data, _ = self._zip_locked(provider, version)
                if data is not None:
                    rule = self._take(provider, what, ("corrupt", "truncate"))
            release = self._release
        if rule is not None and rule.kind == "hang":
            while not release.wait(0.1) and not self._stopping.is_set():
                pass
            h.close_connection = True
            return 0
        if rule is not None and rule.kind == "drop":
            h.close_connection = True
            return 0
        if rule is not None and rule.kind == "fail":
            return self._error(h, rule.params["status"], key, head)
        # the real thing
        with self._lock:
            cat = self._catalogs.get(provider)
            if what == "version":
                body, mtime = None, None
                if cat is not None and cat.latest is not None:
                    body = (cat.latest + ("\n" if self.version_newline else "")).encode()
                    mtime = cat.versions[cat.latest][2]
                ctype = self.version_content_type
            else:
                body, mtime = self._zip_locked(provider, version)
                ctype = self.zip_content_type
        if body is None:
            return self._error(h, self.missing_status, key, head)
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        partial = False
        if rule is not None and rule.kind == "corrupt":
            body = NOT_A_ZIP
            etag = '"' + hashlib.md5(body).hexdigest() + '"'
        elif rule is not None and rule.kind == "truncate":
            partial = rule.params["transfer"]
            full = len(body)
            body = body[:max(1, full // 2)] if full > 1 else b""
        if rule is None and self._not_modified(h, etag, mtime):
            h.send_response(304)
            h.send_header("ETag", etag)
            h.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
            self._common_headers(h)
            h.end_headers()
            return 304
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(full if partial else len(body)))
        h.send_header("ETag", etag)
        h.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
        self._common_headers(h)
        h.end_headers()
        if not head:
            h.wfile.write(body)
        if partial:
            h.wfile.flush()
            h.close_connection = True
        return 200

    @staticmethod
    def _not_modified(h, etag, mtime):
        inm = h.headers.get("If-None-Match")
        if inm is not None:
            tags = [t.strip() for t in inm.split(",")]
            return "*" in tags or etag in tags or etag in [t[2:] for t in tags
                                                             if t.startswith("W/")]
        ims = h.headers.get("If-Modified-Since")
        if ims and mtime is not None:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
            return int(mtime) <= since
        return False

    @staticmethod
    def _common_headers(h):
        h.send_header("x-amz-request-id", os.urandom(8).hex().upper())
        h.send_header("x-amz-id-2", os.urandom(24).hex())

    def _error(self, h, status, key, head):
        code, msg = _S3_ERRORS.get(status, ("InternalError" if status >= 500 else
                                            "InvalidRequest", "Error"))
        rid = os.urandom(8).hex().upper()
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{msg}</Message>"
                + (f"<Key>{_xml_escape(key)}</Key>" if status == 404 else "")
                + f"<RequestId>{rid}</RequestId><HostId>{os.urandom(24).hex()}</HostId>"
                "</Error>").encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Content-Length", str(len(body)))
        if status == 405:
            h.send_header("Allow", "GET, HEAD")
        h.send_header("x-amz-request-id", rid)
        h.end_headers()
        if not head:
            h.wfile.write(body)
        return status


def _xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ------------------------------------------------------------------------------ self-test

def _selftest():
    import urllib.error
    import urllib.request

    header = ("instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,"
              "disk_size,gpu_vendor,flags,cpu_arch,provider_data\r\n")
    lam = header + "gpu_1x_a10,us-east-1,0.75,30,200.0,1,A10,24.0,False,1400.0,nvidia,,x86,{}\r\n"

    def get(url, headers=None, method="GET", timeout=5):
        req = urllib.request.Request(url, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def unzip(data, provider):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return z.read(f"{provider}.csv").decode()

    with CatalogServer() as cs:
        assert cs.url.startswith("http://127.0.0.1:") and cs.url.endswith("/v3"), cs.url
        v1 = cs.set_catalog("lambdalabs", lam)
        st, hd, body = get(cs.version_url("lambdalabs"))
        assert st == 200 and body == (v1 + "\n").encode(), (st, body)
        assert hd["Content-Type"].startswith("text/plain"), hd
        st, hd, body = get(f"{cs.url}/lambdalabs/{body.decode().strip()}/catalog.zip")
        assert st == 200 and hd["Content-Type"] == "application/zip", (st, hd)
        assert unzip(body, "lambdalabs") == lam
        assert get(f"{cs.url}/lambdalabs/latest/catalog.zip")[2] == body
        # HEAD and conditional GETs
        st, hd2, b2 = get(cs.zip_url("lambdalabs"), method="HEAD")
        assert st == 200 and b2 == b"" and hd2["Content-Length"] == str(len(body))
        st, _, b3 = get(cs.zip_url("lambdalabs"), {"If-None-Match": hd["ETag"]})
        assert st == 304 and b3 == b"", st
        st, _, _ = get(cs.zip_url("lambdalabs"), {"If-Modified-Since": hd["Last-Modified"]})
        assert st == 304, st
        # a new version; the old one stays downloadable
        v2 = cs.set_catalog("lambdalabs", lam + lam.splitlines(True)[1])
        assert v2 != v1 and get(cs.version_url("lambdalabs"))[2].decode().strip() == v2
        assert unzip(get(cs.zip_url("lambdalabs", v1))[2], "lambdalabs") == lam
        # unknown provider, version, key: 404 NoSuchKey as XML
        for u in (cs.version_url("nosuch"), cs.zip_url("lambdalabs", "19990101-1"),
                  f"{cs.url}/lambdalabs/nothing", cs.url.rsplit("/", 1)[0] + "/v2/version"):
            st, hd, body = get(u)
            assert st == 404 and b"<Code>NoSuchKey</Code>" in body, (u, st, body)
            assert hd["Content-Type"] == "application/xml", hd
        assert get(cs.version_url("lambdalabs"), method="POST")[0] == 405
        # fail N times, then OK
        cs.fail(503, what="version", times=2)
        assert [get(cs.version_url("lambdalabs"))[0] for _ in range(3)] == [503, 503, 200]
        assert get(cs.zip_url("lambdalabs"))[0] == 200
        # per provider, forever, until cleared
        cs.set_catalog("aws", header)
        cs.fail(500, provider="aws")
        assert get(cs.version_url("aws"))[0] == 500 and get(cs.zip_url("aws"))[0] == 500
        assert get(cs.version_url("lambdalabs"))[0] == 200
        cs.clear_faults("aws")
        assert get(cs.version_url("aws"))[0] == 200
        # corrupt and truncated zips
        cs.corrupt_zip("lambdalabs", times=1)
        st, _, body = get(cs.zip_url("lambdalabs"))
        assert st == 200 and not zipfile.is_zipfile(io.BytesIO(body))
        cs.truncate_zip("lambdalabs", times=1)
        st, _, body = get(cs.zip_url("lambdalabs"))
        assert st == 200 and len(body) < len(cs.zip_bytes("lambdalabs"))
        try:
            unzip(body, "lambdalabs")
            raise AssertionError("a truncated zip opened")
        except zipfile.BadZipFile:
            pass
        cs.truncate_zip("lambdalabs", times=1, transfer=True)
        try:
            get(cs.zip_url("lambdalabs"))
            raise AssertionError("a partial transfer read completely")
        except (_incomplete_read(), ConnectionError):
            pass
        cs.drop(what="version", times=1)
        try:
            get(cs.version_url("lambdalabs"))
            raise AssertionError("a dropped request answered")
        except (ConnectionError, _remote_disconnected()):
            pass
        assert get(cs.version_url("lambdalabs"))[0] == 200
        # slow
        cs.slow(0.3, what="zip", times=1)
        t0 = time.monotonic()
        assert get(cs.zip_url("lambdalabs"))[0] == 200
        assert time.monotonic() - t0 >= 0.3
        # hang, released by release_hung()
        cs.hang(provider="lambdalabs", times=1)
        res = []
        t = threading.Thread(target=lambda: res.append(_try(get, cs.version_url("lambdalabs"))))
        t.start()
        assert cs.wait_for("/lambdalabs/version", n=cs.count("/lambdalabs/version", status=200)
                           + 1, timeout=5)
        time.sleep(0.3)
        assert t.is_alive() and not res
        cs.release_hung()
        t.join(5)
        assert not t.is_alive() and isinstance(res[0], Exception), res
        # the log
        assert cs.count("/version") >= 10 and cs.count("catalog.zip", status=304) == 2
        assert cs.requests[0].method == "GET" and cs.requests[0].path.endswith("/version")
        # hang forever: stop() releases it promptly
        cs.hang()
        hung = []
        threads = [threading.Thread(target=lambda: hung.append(
            _try(get, cs.version_url("lambdalabs"), timeout=30))) for _ in range(3)]
        for t in threads:
            t.start()
        # and an idle keep-alive connection
        idle = socket.create_connection(("127.0.0.1", cs.port))
        time.sleep(0.3)
        t0 = time.monotonic()
    # __exit__ -> stop()
    dt = time.monotonic() - t0
    for t in threads:
        t.join(5)
    idle.close()
    assert dt < 1.0, f"stop() took {dt:.2f} s"
    assert len(hung) == 3 and all(isinstance(x, Exception) for x in hung), hung
    print(f"catalogserver self-test: ok (stop with 3 hung requests and an idle connection: "
          f"{dt * 1000:.0f} ms)")


def _try(f, *a, **kw):
    try:
        return f(*a, **kw)
    except Exception as e:  # noqa: BLE001 - the self-test inspects it
        return e


def _incomplete_read():
    import http.client
    return http.client.IncompleteRead


def _remote_disconnected():
    import http.client
    return http.client.RemoteDisconnected


if __name__ == "__main__":
    _selftest()
