"""A fake of the DigitalOcean API v2 (reference/specs/digitalocean.yaml) on cloudfake, also
serving as AMD Developer Cloud (the same API under another base URL: AMDDevCloudFake).

Paths (under /v2), bodies, status codes, paging and the error body {"id", "message",
"request_id"} follow the published spec:

    GET    /account                         the account (status active | warning | locked)
    GET    /projects                        paged; POST /projects/{id}/resources assigns
    GET    /sizes                           paged; the fake's sizes (see DEFAULT_SIZES)
    GET    /account/keys                    paged; at most 10 listings a minute (the spec's)
    POST   /account/keys                    201 {ssh_key}; 422 when the key is already there
    GET    /account/keys/{id|fingerprint}   DELETE /account/keys/{id|fingerprint} (204)
    POST   /droplets                        202 {droplet}; the body checked like the API;
                                            422 unprocessable_entity: unknown size, region
                                            or image, size unavailable, no capacity, limit
    GET    /droplets                        paged; tag_name, name, type=gpus|droplets filters
                                            (GPU droplets only with type=gpus, as the spec says)
    GET    /droplets/{id}                   404 not_found when unknown or gone
    DELETE /droplets/{id}                   204; 404 when unknown

Paging: per_page (1..200, default 20; fake.max_per_page lowers the cap so that tests see
pages) and page; answers carry links.pages (first, prev, next, last: absolute URLs under
fake.links_origin, default the fake's own) and meta.total. Every answer carries ratelimit-limit,
ratelimit-remaining and ratelimit-reset; a 429 also Retry-After when it is a burst limit.

Authentication: `Authorization: Bearer <token>`; a bad token is 401 unauthorized, a token in
inactive_keys 403 forbidden. Droplets are VMs on real SSH hosts (user root) that accept
exactly the keys the client gave: the public keys of ssh_keys and the ssh_authorized_keys of
a #cloud-config user_data.

    with DigitalOceanFake(keys=["dop_v1_x"], hosts=2, boot_seconds=0.3) as f:
        f.url            # https://127.0.0.1:PORT/v2 (FLEETFS_ENDPOINT_DIGITALOCEAN)
        f.ca_path        # FLEETFS_CA_BUNDLE
        f.set_capacity("gpu-h100x1-80gb", "tor1", 0)     # POST /droplets: 422
        f.ssh_keys()     # [{"id", "fingerprint", "public_key", "name"}]
"""
import base64
import binascii
import copy
import datetime
import hashlib
import os
import re
import sys
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from cloudfake import CloudFake, NoCapacity, Reply  # noqa: E402

try:
    import yaml
except ImportError:          # python3-yaml is a test dependency; a line scan stands in
    yaml = None

__all__ = ["DigitalOceanFake", "AMDDevCloudFake", "DEFAULT_SIZES", "AMD_SIZES",
           "DEFAULT_REGIONS", "fingerprint"]

DEFAULT_REGIONS = {
    "nyc1": "New York 1", "nyc2": "New York 2", "nyc3": "New York 3", "tor1": "Toronto 1",
    "fra1": "Frankfurt 1", "ams3": "Amsterdam 3", "sfo3": "San Francisco 3",
    "atl1": "Atlanta 1",
}


def _size(slug, memory, vcpus, disk, price, regions, description, gpu=None, disks=None,
          available=True):
    s = {"slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk, "transfer": 10.0,
         "price_monthly": round(price * 672, 2), "price_hourly": price,
         "regions": list(regions), "available": available, "description": description,
         "disk_info": disks if disks is not None else
         [{"type": "local", "size": {"amount": disk, "unit": "gib"}}]}
    if gpu:
        model, count, vram = gpu
        s["gpu_info"] = {"count": count, "model": model, "vram": {"amount": vram, "unit": "gib"}}
    return s


# The shapes of real sizes (slugs, memory in MB, disks in GiB); prices are the fake's.
DEFAULT_SIZES = [
    _size("s-2vcpu-4gb", 4096, 2, 80, 0.03571, ["nyc1", "nyc3", "tor1", "fra1"], "Basic"),
    _size("gpu-h100x1-80gb", 245760, 20, 720, 3.39, ["nyc2", "tor1"], "H100 GPU - 1X",
          gpu=("nvidia_h100", 1, 80),
          disks=[{"type": "local", "size": {"amount": 720, "unit": "gib"}},
                 {"type": "scratch", "size": {"amount": 5120, "unit": "gib"}}]),
    _size("gpu-h100x8-640gb", 1966080, 160, 2046, 23.92, ["nyc2"], "H100 GPU - 8X",
          gpu=("nvidia_h100", 8, 80),
          disks=[{"type": "local", "size": {"amount": 2046, "unit": "gib"}},
                 {"type": "scratch", "size": {"amount": 40960, "unit": "gib"}}]),
    _size("gpu-6000adax1-48gb", 65536, 8, 500, 1.57, ["tor1"], "RTX 6000 Ada GPU - 1X",
          gpu=("nvidia_rtx6000_ada", 1, 48),
          disks=[{"type": "boot", "size": {"amount": 500, "unit": "gib"}}]),
    _size("gpu-l40sx1-48gb", 65536, 8, 500, 1.57, ["tor1"], "L40S GPU - 1X",
          gpu=("nvidia_l40s", 1, 48), available=False),
    _size("gpu-mi300x1-192gb", 245760, 20, 720, 1.99, ["atl1"], "MI300X GPU - 1X",
          gpu=("amd_mi300x", 1, 192),
          disks=[{"type": "boot", "size": {"amount": 720, "unit": "gib"}},
                 {"type": "scratch", "size": {"amount": 5120, "unit": "gib"}}]),
    _size("gpu-gaudi3x8", 1966080, 160, 2046, 20.0, ["nyc2"], "Gaudi 3 - 8X",
          gpu=("intel_gaudi3", 8, 128)),
]

AMD_SIZES = [
    _size("gpu-mi300x1-192gb", 245760, 20, 720, 1.99, ["atl1"], "MI300X GPU - 1X",
          gpu=("amd_mi300x", 1, 192),
          disks=[{"type": "boot", "size": {"amount": 720, "unit": "gib"}},
                 {"type": "scratch", "size": {"amount": 5120, "unit": "gib"}}]),
    _size("gpu-mi300x8-1536gb", 1966080, 160, 2046, 15.92, ["atl1"], "MI300X GPU - 8X",
          gpu=("amd_mi300x", 8, 192),
          disks=[{"type": "boot", "size": {"amount": 2046, "unit": "gib"}},
                 {"type": "scratch", "size": {"amount": 40960, "unit": "gib"}}]),
]

IMAGES = {   # slug -> (id, name, distribution)
    "ubuntu-24-04-x64": (163000001, "24.04 (LTS) x64", "Ubuntu"),
    "ubuntu-22-04-x64": (163000002, "22.04 (LTS) x64", "Ubuntu"),
    "gpu-h100x1-base": (163000011, "AI/ML Ready (NVIDIA, 1 GPU)", "Ubuntu"),
    "gpu-h100x8-base": (163000012, "AI/ML Ready (NVIDIA, 8 GPUs)", "Ubuntu"),
    "gpu-amd-base": (163000021, "AI/ML Ready (AMD)", "Ubuntu"),
    "digitaloceanai-rocmjupyter": (163000022, "ROCm Jupyter (AMD)", "Ubuntu"),
}

_ERRORS = {   # kind -> (id, message), DigitalOcean's words where the spec gives them
    "unauthorized": ("unauthorized", "Unable to authenticate you"),
    "forbidden": ("forbidden", "You do not have access for the attempted action."),
    "not_found": ("not_found", "The resource you requested could not be found."),
    "bad_request": ("bad_request", "error parsing request body"),
    "too_large": ("bad_request", "request body too large"),
    "method_not_allowed": ("method_not_allowed", "method not allowed"),
    "rate_limited": ("too_many_requests", "API rate limit exceeded."),
    "unprocessable": ("unprocessable_entity", "request payload validation failed"),
    "no_capacity": ("unprocessable_entity",
                    "The requested size is not available in this region right now."),
    "internal": ("server_error", "Server was unable to give you a response."),
    "unavailable": ("service_unavailable", "Service unavailable."),
}

_NAME_RE = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_\-:]+$")
_URN_RE = re.compile(r"^do:(dbaas|domain|droplet|floatingip|loadbalancer|space|volume|"
                     r"kubernetes|vpc):.*")
_KEY_RE = re.compile(r"(ssh-rsa|ssh-ed25519|ssh-dss|ecdsa-sha2-nistp(?:256|384|521)|"
                     r"sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)"
                     r" ([A-Za-z0-9+/]+={0,2})(?: [^\r\n]*)?")
# the droplet create body: the spec's fields, plus project_id, which dstack sends (the spec
# has no such field; fleetfs sends it too and also assigns the droplet the documented way)
_DROPLET_FIELDS = {"name", "names", "region", "size", "image", "ssh_keys", "backups",
                   "backup_policy", "ipv6", "monitoring", "tags", "user_data",
                   "private_networking", "volumes", "vpc_uuid", "with_droplet_agent",
                   "public_networking", "project_id"}
_BOOL_FIELDS = ("backups", "ipv6", "monitoring", "private_networking", "with_droplet_agent",
                "public_networking")
USER_DATA_MAX = 64 * 1024


def fingerprint(public_key):
    """DigitalOcean's fingerprint of an OpenSSH public key line: MD5 of the blob, hex pairs
    joined by ':'; None when the line is not a key."""
    m = _KEY_RE.fullmatch(public_key.strip())
    if not m:
        return None
    try:
        blob = base64.b64decode(m.group(2), validate=True)
    except binascii.Error:
        return None
    return ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())


def _key_core(line):
    """(type, base64) of a public key line: what identifies the key."""
    parts = (line or "").split()
    return tuple(parts[:2])


def cloud_config_keys(user_data):
    """The ssh_authorized_keys of a #cloud-config document ([] for anything else)."""
    if not isinstance(user_data, str) or not user_data.startswith("#cloud-config"):
        return []
    if yaml is not None:
        try:
            doc = yaml.safe_load(user_data)
        except yaml.YAMLError:
            return []
        keys = doc.get("ssh_authorized_keys") if isinstance(doc, dict) else None
        return [k.strip() for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
    out, inside = [], False           # the line scan: a block list under the key
    for line in user_data.splitlines():
        if re.match(r"ssh_authorized_keys:\s*$", line):
            inside = True
            continue
        if inside:
            m = re.match(r"\s+-\s+(.*)$", line)
            if not m:
                inside = bool(line.strip() == "")
                continue
            out.append(m.group(1).strip().strip("\"'"))
    return out


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class DigitalOceanFake(CloudFake):
    provider = "digitalocean"
    base_path = "/v2"
    default_user = "root"
    server_header = "cloudflare"

    def __init__(self, keys=("test-key",), sizes=None, regions=None, projects=None,
                 droplet_limit=25, terminated_linger=0.5, keys_list_per_minute=10, **kw):
        """sizes: a list of size objects as /v2/sizes gives them (default DEFAULT_SIZES);
        regions: {slug: name}; projects: [names] (the first is the default; default
        ["first-project"]); droplet_limit: the account's. keys_list_per_minute: the spec's
        limit on GET /account/keys (None: off). The rest as CloudFake (hosts, pool,
        boot_seconds, terminate_seconds, ...)."""
        self.sizes = copy.deepcopy(sizes if sizes is not None else self.default_sizes())
        self.regions = dict(regions or DEFAULT_REGIONS)
        self.projects = []
        self.droplet_limit = droplet_limit
        self.account_status = "active"
        self.account_status_message = ""
        self.max_per_page = 200
        self.links_origin = None             # None: the fake's own https://127.0.0.1:PORT
        self.keys_list_per_minute = keys_list_per_minute
        self.ratelimit_limit = 5000
        self.assignments = []                # (project id, urn) of POST /projects/{id}/resources
        self._keys_listed = []
        self._ssh_keys = {}                  # id (int) -> {id, fingerprint, public_key, name}
        self._next_key = 512189
        self._next_droplet = 3164444
        super().__init__(keys=keys, terminated_linger=terminated_linger, **kw)
        for i, name in enumerate(projects or ["first-project"]):
            self.add_project(name, is_default=(i == 0))

    def default_sizes(self):
        return DEFAULT_SIZES

    # ------------------------------------------------------------------ provider hooks

    def setup_routes(self):
        self.route("GET", r"/account", self._account)
        self.route("GET", r"/projects", self._list_projects)
        self.route("POST", r"/projects/(?P<id>[^/]+)/resources", self._assign)
        self.route("GET", r"/sizes", self._list_sizes)
        self.route("GET", r"/account/keys", self._list_keys)
        self.route("POST", r"/account/keys", self._add_key)
        self.route("GET", r"/account/keys/(?P<id>[^/]+)", self._get_key)
        self.route("DELETE", r"/account/keys/(?P<id>[^/]+)", self._delete_key)
        self.route("GET", r"/droplets", self._list_droplets)
        self.route("POST", r"/droplets", self._create_droplet)
        self.route("GET", r"/droplets/(?P<id>[^/]+)", self._get_droplet)
        self.route("DELETE", r"/droplets/(?P<id>[^/]+)", self._delete_droplet)

    def error_reply(self, status, kind, message=None):
        eid, msg = _ERRORS.get(kind, (kind, kind))
        return Reply(status, {"id": eid, "message": message or msg,
                              "request_id": str(uuid.uuid4())})

    def status_of(self, vm):
        if vm.status:
            return vm.status
        return {"booting": "new", "running": "active", "terminating": "off",
                "terminated": "archive"}[vm.phase]

    def new_id(self):
        with self.lock:
            self._next_droplet += 1
            return str(self._next_droplet)

    def _send(self, h, reply):
        """Every answer carries DigitalOcean's rate limit headers."""
        now = time.time()
        with self.lock:
            mono = time.monotonic()
            used = sum(1 for r in self.requests if mono - r.time < 3600)
        remaining = 0 if reply.status == 429 else max(0, self.ratelimit_limit - used)
        reply.headers.setdefault("ratelimit-limit", str(self.ratelimit_limit))
        reply.headers.setdefault("ratelimit-remaining", str(remaining))
        reply.headers.setdefault("ratelimit-reset", str(int(now) + 60))
        return super()._send(h, reply)

    # ------------------------------------------------------------------ helpers for tests

    def add_project(self, name, is_default=False):
        with self.lock:
            p = {"id": str(uuid.uuid4()), "owner_uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef",
                 "owner_id": 258992, "name": name, "description": "", "purpose": "Other",
                 "environment": "Development", "created_at": _iso(time.time()),
                 "updated_at": _iso(time.time()), "is_default": is_default}
            self.projects.append(p)
            return p["id"]

    def project_id(self, name):
        with self.lock:
            return next((p["id"] for p in self.projects if p["name"] == name), None)

    def ssh_keys(self):
        with self.lock:
            return [dict(k) for k in self._ssh_keys.values()]

    def add_ssh_key(self, name, public_key):
        """Register a key as if through the API; returns its id."""
        with self.lock:
            self._next_key += 1
            kid = self._next_key
            self._ssh_keys[kid] = {"id": kid, "fingerprint": fingerprint(public_key),
                                   "public_key": public_key.strip(), "name": name}
            return kid

    def droplet(self, vm_id):
        """The droplet JSON of a VM (as GET /droplets/{id} answers), or None."""
        with self.lock:
            vm = self.vm(str(vm_id))
            return None if vm is None else self._droplet_json(vm)

    # ------------------------------------------------------------------ JSON shapes

    def _size_of(self, slug):
        return next((s for s in self.sizes if s["slug"] == slug), None)

    def _is_gpu(self, vm):
        s = self._size_of(vm.instance_type)
        return bool(s and s.get("gpu_info")) or bool(vm.extra.get("gpu"))

    def _private_ip(self, vm):
        n = int(vm.id) % 250 + 2
        return f"10.120.0.{n}"

    def _droplet_json(self, vm):
        size = self._size_of(vm.instance_type) or _size(vm.instance_type, 1024, 1, 25, 0.01,
                                                         [vm.region], "Unknown")
        img = vm.extra.get("image", "ubuntu-24-04-x64")
        iid, iname, dist = IMAGES.get(img, (0, str(img), "Unknown"))
        v4 = []
        if vm.ip:       # the private address first: a client must pick by type
            v4 = [{"ip_address": self._private_ip(vm), "netmask": "255.255.240.0",
                   "gateway": "10.120.0.1", "type": "private"},
                  {"ip_address": vm.ip, "netmask": "255.255.255.0",
                   "gateway": vm.ip.rsplit(".", 1)[0] + ".1", "type": "public"}]
        d = {"id": int(vm.id), "name": vm.name, "memory": size["memory"],
             "vcpus": size["vcpus"], "disk": size["disk"],
             "disk_info": copy.deepcopy(size.get("disk_info", [])), "locked": False,
             "status": self.status_of(vm), "kernel": None, "created_at": _iso(vm.created),
             "features": ["droplet_agent", "private_networking"], "backup_ids": [],
             "next_backup_window": None, "snapshot_ids": [],
             "image": {"id": iid, "name": iname, "type": "base", "distribution": dist,
                       "slug": img if isinstance(img, str) else None, "public": True,
                       "regions": [vm.region], "created_at": "2024-05-01T00:00:00Z",
                       "min_disk_size": 20, "size_gigabytes": 2.5, "description": "",
                       "tags": [], "status": "available", "error_message": ""},
             "volume_ids": list(vm.extra.get("volumes", [])), "size": copy.deepcopy(size),
             "size_slug": vm.instance_type, "networks": {"v4": v4, "v6": []},
             "region": {"name": self.regions.get(vm.region, vm.region), "slug": vm.region,
                        "features": ["backups", "ipv6", "metadata", "storage"],
                        "available": True,
                        "sizes": [s["slug"] for s in self.sizes if vm.region in s["regions"]]},
             "tags": list(vm.extra.get("tags", [])), "vpc_uuid": str(uuid.uuid5(
                 uuid.NAMESPACE_DNS, f"vpc-{vm.region}"))}
        if size.get("gpu_info"):
            d["gpu_info"] = copy.deepcopy(size["gpu_info"])
        return d

    def _page(self, req, member, items):
        """One page of items as DigitalOcean pages a collection."""
        q = req.query
        try:
            per_page = int(q.get("per_page", ["20"])[-1])
            page = int(q.get("page", ["1"])[-1])
        except ValueError:
            raise self.error_reply(400, "bad_request", "per_page and page must be integers")
        if per_page < 1 or page < 1:
            raise self.error_reply(400, "bad_request", "per_page and page must be at least 1")
        per_page = min(per_page, 200, self.max_per_page)
        total = len(items)
        last = max(1, -(-total // per_page))
        body = {member: items[(page - 1) * per_page:page * per_page], "links": {},
                "meta": {"total": total}}
        origin = self.links_origin or self.url[:-len(self.base_path)]

        def link(n):
            params = [(k, v) for k, vs in q.items() for v in vs if k != "page"]
            params.append(("page", str(n)))
            return f"{origin}{req.path}?{urllib.parse.urlencode(params)}"
        pages = {}
        if page > 1:
            pages["first"], pages["prev"] = link(1), link(min(page - 1, last))
        if page < last:
            pages["next"], pages["last"] = link(page + 1), link(last)
        if pages:
            body["links"]["pages"] = pages
        return body

    # ------------------------------------------------------------------ handlers

    def _account(self, req):
        with self.lock:
            return {"account": {"droplet_limit": self.droplet_limit, "floating_ip_limit": 3,
                                "email": "sammy@example.com", "name": "Sammy",
                                "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef",
                                "email_verified": True, "status": self.account_status,
                                "status_message": self.account_status_message}}

    def _list_projects(self, req):
        with self.lock:
            return self._page(req, "projects", [dict(p) for p in self.projects])

    def _assign(self, req):
        b = req.body
        if not req.json_ok or not isinstance(b, dict):
            raise self.error_reply(400, "bad_request")
        urns = b.get("resources")
        if not isinstance(urns, list) or not all(isinstance(u, str) and _URN_RE.match(u)
                                                  for u in urns):
            raise self.error_reply(400, "bad_request", "resources must be a list of URNs")
        with self.lock:
            if not any(p["id"] == req.params["id"] for p in self.projects):
                raise self.error_reply(404, "not_found")
            out = []
            for u in urns:
                kind, _, rid = u[3:].partition(":")
                ok = kind != "droplet" or self.vm(rid) is not None
                if ok:
                    self.assignments.append((req.params["id"], u))
                out.append({"urn": u, "assigned_at": _iso(time.time()),
                            "links": {"self": f"{self.url}/droplets/{rid}"},
                            "status": "ok" if ok else "not_found"})
            return {"resources": out}

    def _list_sizes(self, req):
        with self.lock:
            return self._page(req, "sizes", copy.deepcopy(self.sizes))

    def _list_keys(self, req):
        with self.lock:
            if self.keys_list_per_minute is not None:
                now = time.monotonic()
                self._keys_listed = [t for t in self._keys_listed if now - t < 60]
                if len(self._keys_listed) >= self.keys_list_per_minute:
                    r = self.error_reply(429, "rate_limited")
                    r.headers["Retry-After"] = str(max(1, int(60 - (now - self._keys_listed[0]))))
                    raise r
                self._keys_listed.append(now)
            return self._page(req, "ssh_keys", self.ssh_keys())

    def _find_key(self, ident):
        if ident.isdigit():
            return self._ssh_keys.get(int(ident))
        return next((k for k in self._ssh_keys.values() if k["fingerprint"] == ident), None)

    def _get_key(self, req):
        with self.lock:
            k = self._find_key(req.params["id"])
            if k is None:
                raise self.error_reply(404, "not_found")
            return {"ssh_key": dict(k)}

    def _add_key(self, req):
        b = req.body
        if not req.json_ok or not isinstance(b, dict):
            raise self.error_reply(400, "bad_request")
        name, pub = b.get("name"), b.get("public_key")
        if not isinstance(name, str) or not name.strip():
            raise self.error_reply(422, "unprocessable", "Name can't be blank")
        if not isinstance(pub, str) or len(pub) > 16384 or fingerprint(pub) is None:
            raise self.error_reply(422, "unprocessable", "Key invalid, key should be of the "
                                   "format `type key [comment]`")
        with self.lock:
            if any(k["fingerprint"] == fingerprint(pub) for k in self._ssh_keys.values()):
                raise self.error_reply(422, "unprocessable",
                                       "SSH Key is already in use on your account")
            kid = self.add_ssh_key(name, pub)
            return Reply(201, {"ssh_key": dict(self._ssh_keys[kid])})

    def _delete_key(self, req):
        with self.lock:
            k = self._find_key(req.params["id"])
            if k is None:
                raise self.error_reply(404, "not_found")
            del self._ssh_keys[k["id"]]
        return Reply(204, None, {"Content-Type": "application/json; charset=utf-8"})

    def _list_droplets(self, req):
        q = {k: v[-1] for k, v in req.query.items()}
        if "tag_name" in q and ("name" in q or "type" in q):
            raise self.error_reply(400, "bad_request",
                                   "tag_name can not be combined with name or type")
        kind = q.get("type", "droplets")
        if kind not in ("droplets", "gpus"):
            raise self.error_reply(400, "bad_request", "type must be droplets or gpus")
        with self.lock:
            vms = self.all_vms()
            if "tag_name" in q:
                vms = [v for v in vms if q["tag_name"] in v.extra.get("tags", [])]
            else:
                vms = [v for v in vms if self._is_gpu(v) == (kind == "gpus")]
            if "name" in q:
                vms = [v for v in vms if (v.name or "").lower() == q["name"].lower()]
            return self._page(req, "droplets", [self._droplet_json(v) for v in vms])

    def _get_droplet(self, req):
        with self.lock:
            vm = self.vm(req.params["id"])
            if vm is None:
                raise self.error_reply(404, "not_found")
            return {"droplet": self._droplet_json(vm)}

    def _delete_droplet(self, req):
        with self.lock:
            vm = self.vm(req.params["id"])
            if vm is None or vm.phase == "terminated":
                raise self.error_reply(404, "not_found")
            self.terminate_vm(vm)
        return Reply(204, None, {"Content-Type": "application/json; charset=utf-8"})

    def _unprocessable(self, message):
        return self.error_reply(422, "unprocessable", message)

    def _create_droplet(self, req):
        b = req.body
        if not req.json_ok or not isinstance(b, dict):
            raise self.error_reply(400, "bad_request")
        unknown = sorted(set(b) - _DROPLET_FIELDS)
        if unknown:
            raise self._unprocessable(f"unknown field: {unknown[0]}")
        if "names" in b:
            raise self._unprocessable("the fake creates one droplet at a time (name)")
        name = b.get("name")
        if not isinstance(name, str) or len(name) > 255 or not _NAME_RE.match(name):
            raise self._unprocessable("Name is invalid: only valid hostname characters are "
                                      "allowed (a-z, A-Z, 0-9, . and -)")
        size_slug, region, image = b.get("size"), b.get("region"), b.get("image")
        if not isinstance(size_slug, str) or not size_slug:
            raise self._unprocessable("size is required")
        if region is not None and not isinstance(region, str):
            raise self._unprocessable("region must be a string")
        if image is None or isinstance(image, bool) or not isinstance(image, (str, int)):
            raise self._unprocessable("image is required (a slug or an id)")
        for f in _BOOL_FIELDS:
            if f in b and not isinstance(b[f], bool):
                raise self._unprocessable(f"{f} must be a boolean")
        tags = b.get("tags")
        if tags is None:
            tags = []
        if not isinstance(tags, list) or not all(
                isinstance(t, str) and len(t) <= 255 and _TAG_RE.match(t) for t in tags):
            raise self._unprocessable("tags may contain letters, numbers, colons, dashes, "
                                      "and underscores")
        ud = b.get("user_data")
        if ud is not None and (not isinstance(ud, str) or len(ud.encode()) > USER_DATA_MAX):
            raise self._unprocessable("user_data must be a string of at most 64 KiB")
        for f in ("volumes",):
            if f in b and not (isinstance(b[f], list) and all(isinstance(x, str) for x in b[f])):
                raise self._unprocessable(f"{f} must be a list of strings")
        for f in ("vpc_uuid", "project_id"):
            if f in b and not isinstance(b[f], str):
                raise self._unprocessable(f"{f} must be a string")
        ids = b.get("ssh_keys", [])
        if not isinstance(ids, list) or not all(
                isinstance(x, (int, str)) and not isinstance(x, bool) for x in ids):
            raise self._unprocessable("ssh_keys must be a list of key ids or fingerprints")
        with self.lock:
            keys = []
            for x in ids:
                k = self._find_key(str(x))
                if k is None:
                    raise self._unprocessable(f"You specified an invalid SSH key: {x}")
                keys.append(k["public_key"])
            if "project_id" in b and not any(p["id"] == b["project_id"] for p in self.projects):
                raise self._unprocessable("project_id does not name a project")
            size = self._size_of(size_slug)
            live = sum(1 for v in self.all_vms() if v.phase != "terminated")
        if size is None:
            raise self._unprocessable("You specified an invalid size for Droplet creation.")
        if isinstance(image, str) and image not in IMAGES:
            raise self._unprocessable("You specified an invalid image for Droplet creation.")
        if region is None and size["regions"]:     # the API picks one when none is given
            region = size["regions"][0]
        if region not in self.regions:
            raise self._unprocessable("You specified an invalid region for Droplet creation.")
        if region not in size["regions"] or not size["available"]:
            raise self.error_reply(422, "no_capacity",
                                   f"Size {size_slug} is not available in {region}.")
        if live >= self.droplet_limit:
            raise self._unprocessable("creating this/these droplet(s) will exceed your "
                                      "droplet limit")
        pubkeys = []
        for k in keys + cloud_config_keys(ud):
            if _key_core(k) and _key_core(k) not in [_key_core(p) for p in pubkeys]:
                pubkeys.append(k)
        try:
            vm = self.launch_vm(name, size_slug, region, pubkeys, image=image, tags=list(tags),
                                ssh_keys=list(ids), user_data=ud,
                                project_id=b.get("project_id"),
                                volumes=list(b.get("volumes", [])))
        except NoCapacity:
            raise self.error_reply(422, "no_capacity")
        with self.lock:
            d = self._droplet_json(vm)
        return Reply(202, {"droplet": d, "links": {"actions": [
            {"id": int(vm.id) + 7000000, "rel": "create",
             "href": f"{self.url}/actions/{int(vm.id) + 7000000}"}]}})


class AMDDevCloudFake(DigitalOceanFake):
    """AMD Developer Cloud: DigitalOcean's API at its own base URL, AMD sizes by default
    (FLEETFS_ENDPOINT_AMDDEVCLOUD)."""
    provider = "amddevcloud"
    server_header = "envoy"

    def default_sizes(self):
        return AMD_SIZES
