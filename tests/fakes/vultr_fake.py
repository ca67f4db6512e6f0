"""A fake of the Vultr API v2 (reference/specs/vultr.json) on cloudfake.

Paths (under /v2), bodies, status codes and the error envelope {"error": "<text>",
"status": N} follow the published spec:

    GET    /plans                 public (no key): VM plans; ?type=all|vc2|vhf|vhp|voc|vcg|...
    GET    /plans-metal           public: bare-metal plans, listed as "plans_metal"
    GET    /ssh-keys              the account's SSH keys
    GET    /vpcs, POST /vpcs      VPCs; POST answers 201 {"vpc": {...}}
    GET    /vpcs/{id}, DELETE /vpcs/{id}
    POST   /instances             202 {"instance": {...}}; the body is checked like the API
    GET    /instances             the account's instances (?label= ?region= ?main_ip=)
    GET    /instances/{id}        404 when unknown or deleted
    DELETE /instances/{id}        204; 404 when unknown
    POST   /bare-metals, GET /bare-metals, GET|DELETE /bare-metals/{id}: the same, as
                                  "bare_metal" / "bare_metals"

Every list is paginated like Vultr's: per_page (default 100, at most 500, and at most
`page_max`, which tests lower to force several pages) and an opaque cursor; each answer has
meta {"total", "links": {"next", "prev"}}.

Authentication: `Authorization: Bearer <key>` only (the spec's one scheme). A bad key is 401
"Invalid API token.", a key in inactive_keys 403. /plans and /plans-metal need no key.

Instances and bare metals are VMs on real SSH hosts (user root) that accept exactly the keys
of the cloud-config in their user_data (base64, `ssh_authorized_keys`), plus those of the
`sshkey_id`s given. Statuses: `pending` (main_ip "0.0.0.0", or "" for bare metal) ->
`active` (main_ip the host's address, power_status running). A deleted VM is gone from the
API at once (404, not listed); its host is given back after terminate_seconds.

    with VultrFake(keys=["secret"], hosts=2, boot_seconds=0.3) as f:
        f.url            # https://127.0.0.1:PORT/v2 (FLEETFS_ENDPOINT_VULTR)
        f.ca_path        # FLEETFS_CA_BUNDLE
        f.set_capacity("vc2-1c-1gb", "ewr", 0)   # POST /instances: 400 ... unavailable ...
        f.page_max = 2   # every list in pages of at most 2
        f.vpcs()         # [{"id", "region", "description", "v4_subnet", ...}]
"""
import base64
import binascii
import copy
import os
import sys
import time
import uuid

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from cloudfake import CloudFake, NoCapacity, Reply  # noqa: E402

__all__ = ["VultrFake", "DEFAULT_PLANS", "DEFAULT_METAL_PLANS", "DEFAULT_REGIONS", "OS_IDS",
           "IMAGE_IDS"]

DEFAULT_REGIONS = ["ewr", "ord", "lax", "fra", "ams", "nrt", "sgp"]

# GET /plans. hourly_cost, gpu_vram_gb and gpu_type are not in the spec; the API has them.
DEFAULT_PLANS = [
    {"id": "vc2-1c-1gb", "vcpu_count": 1, "ram": 1024, "disk": 25, "disk_count": 1,
     "bandwidth": 1024, "monthly_cost": 5, "hourly_cost": 0.007, "type": "vc2",
     "locations": ["ewr", "ord", "fra"]},
    {"id": "vc2-2c-4gb", "vcpu_count": 2, "ram": 4096, "disk": 80, "disk_count": 1,
     "bandwidth": 3072, "monthly_cost": 20, "hourly_cost": 0.03, "type": "vc2",
     "locations": ["ewr", "ams"]},
    {"id": "vhf-2c-4gb", "vcpu_count": 2, "ram": 4096, "disk": 128, "disk_count": 1,
     "bandwidth": 3072, "monthly_cost": 24, "hourly_cost": 0.036, "type": "vhf",
     "locations": ["ewr", "lax"]},
    {"id": "vhp-2c-4gb-amd", "vcpu_count": 2, "ram": 4096, "disk": 100, "disk_count": 1,
     "bandwidth": 4096, "monthly_cost": 24, "hourly_cost": 0.036, "type": "vhp",
     "locations": ["fra"]},
    {"id": "voc-g-2c-8gb-50s-amd", "vcpu_count": 2, "ram": 8192, "disk": 50, "disk_count": 1,
     "bandwidth": 4096, "monthly_cost": 60, "hourly_cost": 0.089, "type": "voc",
     "locations": ["nrt"]},
    {"id": "vc2-1c-0.5gb-free", "vcpu_count": 1, "ram": 512, "disk": 10, "disk_count": 1,
     "bandwidth": 500, "monthly_cost": 0, "hourly_cost": 0, "type": "vc2",
     "locations": ["ewr"]},
    {"id": "vdc-4c-16gb", "vcpu_count": 4, "ram": 16384, "disk": 110, "disk_count": 1,
     "bandwidth": 4096, "monthly_cost": 120, "hourly_cost": 0.179, "type": "vdc",
     "locations": ["ewr"]},
    {"id": "vcg-a100-12c-120g-80vram", "vcpu_count": 12, "ram": 122880, "disk": 1400,
     "disk_count": 1, "bandwidth": 10240, "monthly_cost": 1750, "hourly_cost": 2.397,
     "type": "vcg", "gpu_vram_gb": 80, "gpu_type": "NVIDIA_A100",
     "locations": ["ewr", "fra"]},
    {"id": "vcg-a16-2c-8g-2vram", "vcpu_count": 2, "ram": 8192, "disk": 70, "disk_count": 1,
     "bandwidth": 2048, "monthly_cost": 43, "hourly_cost": 0.059, "type": "vcg",
     "gpu_vram_gb": 2, "gpu_type": "NVIDIA_A16", "locations": ["ewr"]},
    {"id": "vcg-l40s-16c-180g-48vram", "vcpu_count": 16, "ram": 184320, "disk": 1200,
     "disk_count": 1, "bandwidth": 10240, "monthly_cost": 1226, "hourly_cost": 1.679,
     "type": "vcg", "gpu_vram_gb": 48, "gpu_type": "NVIDIA_L40S", "locations": ["ord"]},
    {"id": "vcg-a40-24c-120g-96vram", "vcpu_count": 24, "ram": 122880, "disk": 1400,
     "disk_count": 1, "bandwidth": 10240, "monthly_cost": 2200, "hourly_cost": 3.014,
     "type": "vcg", "gpu_vram_gb": 96, "gpu_type": "NVIDIA_A40", "locations": ["sgp"]},
    {"id": "vcg-b200-32c-256g-180vram", "vcpu_count": 32, "ram": 262144, "disk": 2000,
     "disk_count": 1, "bandwidth": 10240, "monthly_cost": 4000, "hourly_cost": 5.5,
     "type": "vcg", "gpu_vram_gb": 180, "gpu_type": "NVIDIA_B200", "locations": ["ewr"]},
]

# GET /plans-metal (the spec's example names the list plans_metal; its disk is a number).
DEFAULT_METAL_PLANS = [
    {"id": "vbm-4c-32gb", "cpu_count": 4, "cpu_threads": 8, "cpu_model": "E3-1270v6",
     "ram": 32768, "disk": 240, "disk_count": 2, "bandwidth": 5120, "monthly_cost": 120,
     "hourly_cost": 0.164, "type": "SSD", "locations": ["ewr"]},
    {"id": "vbm-8c-132gb", "cpu_count": 8, "cpu_threads": 16, "cpu_model": "E-2388G",
     "ram": 131072, "disk": 1900, "disk_count": 2, "bandwidth": 10240, "monthly_cost": 350,
     "hourly_cost": 0.479, "type": "NVMe", "locations": ["ewr", "ams"]},
    {"id": "vbm-24c-256gb-amd", "cpu_count": 24, "cpu_threads": 48, "cpu_model": "EPYC 7443P",
     "ram": 262144, "disk": 3840, "disk_count": 2, "bandwidth": 10240, "monthly_cost": 725,
     "hourly_cost": 0.993, "type": "NVMe", "locations": ["fra"]},
    {"id": "vbm-112c-2048gb-8-h100-gpu", "cpu_count": 112, "cpu_threads": 224,
     "cpu_model": "Xeon 8480+", "ram": 2097152, "disk": 30720, "disk_count": 8,
     "bandwidth": 25600, "monthly_cost": 17462, "hourly_cost": 23.92, "type": "NVMe",
     "locations": ["ewr"]},
    {"id": "vbm-256c-2048gb-8-mi300x-gpu", "cpu_count": 256, "cpu_threads": 512,
     "cpu_model": "EPYC 9534", "ram": 2097152, "disk": 30720, "disk_count": 8,
     "bandwidth": 25600, "monthly_cost": 13432, "hourly_cost": 18.4, "type": "NVMe",
     "locations": ["ord"]},
    {"id": "vbm-72c-480gb-gh200-gpu", "cpu_count": 72, "cpu_threads": 72,
     "cpu_model": "Grace", "ram": 491520, "disk": 3840, "disk_count": 1,
     "bandwidth": 10240, "monthly_cost": 2190, "hourly_cost": 3.0, "type": "NVMe",
     "locations": ["ewr"]},
    {"id": "vbm-64c-1024gb-2-b100-gpu", "cpu_count": 64, "cpu_threads": 128,
     "cpu_model": "EPYC", "ram": 1048576, "disk": 7680, "disk_count": 2,
     "bandwidth": 10240, "monthly_cost": 5000, "hourly_cost": 6.85, "type": "NVMe",
     "locations": ["ewr"]},
]

OS_IDS = {1743: "Ubuntu 22.04 LTS x64", 2284: "Ubuntu 24.04 LTS x64",
          2136: "Debian 12 x64 (bookworm)"}
IMAGE_IDS = {"docker": "Docker on Ubuntu 22.04"}

_MESSAGES = {
    "unauthorized": "Invalid API token.",
    "forbidden": "API access is not enabled for this account.",
    "not_found": "Not found.",
    "method_not_allowed": "Method not allowed.",
    "rate_limited": "Rate limit exceeded.",
    "bad_request": "Bad request.",
    "too_large": "Request body too large.",
    "internal": "Internal server error.",
    "unavailable": "Service temporarily unavailable.",
    "no_capacity": "The requested plan is currently unavailable in the selected location.",
    "not_offered": "Plan is not available in the selected location.",
}

# the fields of each create body (spec), with their JSON types
_STR, _INT, _BOOL, _STRS = "string", "integer", "boolean", "array of strings"
_INSTANCE_FIELDS = {
    "region": _STR, "plan": _STR, "os_id": _INT, "ipxe_chain_url": _STR, "iso_id": _STR,
    "script_id": _STR, "snapshot_id": _STR, "enable_ipv6": _BOOL,
    "attach_private_network": _STRS, "attach_vpc": _STRS, "label": _STR, "sshkey_id": _STRS,
    "backups": _STR, "app_id": _INT, "image_id": _STR, "user_data": _STR,
    "ddos_protection": _BOOL, "activation_email": _BOOL, "hostname": _STR, "tag": _STR,
    "firewall_group_id": _STR, "reserved_ipv4": _STR, "enable_private_network": _BOOL,
    "enable_vpc": _BOOL, "tags": _STRS,
}
# the spec lists no attach_vpc for bare metal; dstack sends it and the API takes it
_METAL_FIELDS = {
    "region": _STR, "plan": _STR, "script_id": _STR, "enable_ipv6": _BOOL, "sshkey_id": _STRS,
    "user_data": _STR, "label": _STR, "activation_email": _BOOL, "hostname": _STR,
    "tag": _STR, "reserved_ipv4": _STR, "os_id": _INT, "snapshot_id": _STR, "app_id": _INT,
    "image_id": _STR, "persistent_pxe": _BOOL, "tags": _STRS, "attach_vpc": _STRS,
}
_VPC_FIELDS = {"region": _STR, "description": _STR, "v4_subnet": _STR, "v4_subnet_mask": _INT}


def _type_ok(v, t):
    if t == _STR:
        return isinstance(v, str)
    if t == _INT:
        return type(v) is int
    if t == _BOOL:
        return isinstance(v, bool)
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def keys_from_user_data(text):
    """The public keys cloud-init would install from user data text: the
    ssh_authorized_keys of a #cloud-config document (none for anything else)."""
    if not text.startswith("#cloud-config"):
        return []
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    keys = doc.get("ssh_authorized_keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        return []
    return [k.strip() for k in keys if isinstance(k, str) and k.strip()]


class VultrFake(CloudFake):
    provider = "vultr"
    base_path = "/v2"
    default_user = "root"
    server_header = "nginx"

    PUBLIC_ROUTES = ("/plans", "/plans-metal")

    def __init__(self, keys=("test-key",), plans=None, metal_plans=None, regions=None,
                 page_max=500, rate_per_second=None, terminated_linger=0, **kw):
        """plans / metal_plans: the GET /plans and /plans-metal items (default DEFAULT_PLANS,
        DEFAULT_METAL_PLANS); regions: the region ids a create may name (default
        DEFAULT_REGIONS plus every plan location). page_max: the largest page of any list.
        rate_per_second: Vultr's rate limit (the API's is 30/s), None for none. The rest as
        CloudFake (hosts, pool, boot_seconds, terminate_seconds, ...)."""
        self.plans = copy.deepcopy(DEFAULT_PLANS if plans is None else plans)
        self.metal_plans = copy.deepcopy(DEFAULT_METAL_PLANS if metal_plans is None
                                         else metal_plans)
        self.regions = set(regions if regions is not None else DEFAULT_REGIONS)
        for p in self.plans + self.metal_plans:
            self.regions.update(p.get("locations", []))
        self.page_max = page_max
        self._vpcs = {}               # id -> vpc object
        self._ssh_keys = {}           # id -> {"id", "date_created", "name", "ssh_key"}
        self._nets = 0
        super().__init__(keys=keys, terminated_linger=terminated_linger, **kw)
        if rate_per_second is not None:
            self.rate_limit(rate_per_second)

    def new_id(self):
        return str(uuid.uuid4())

    # ------------------------------------------------------------------ provider hooks

    def setup_routes(self):
        self.route("GET", r"/plans", self._list_plans)
        self.route("GET", r"/plans-metal", self._list_metal_plans)
        self.route("GET", r"/ssh-keys", self._list_ssh_keys)
        self.route("GET", r"/vpcs", self._list_vpcs)
        self.route("POST", r"/vpcs", self._create_vpc)
        self.route("GET", r"/vpcs/(?P<id>[^/]+)", self._get_vpc)
        self.route("DELETE", r"/vpcs/(?P<id>[^/]+)", self._delete_vpc)
        for kind in ("instance", "metal"):
            path = "/instances" if kind == "instance" else "/bare-metals"
            self.route("POST", path, lambda req, k=kind: self._create(req, k))
            self.route("GET", path, lambda req, k=kind: self._list(req, k))
            self.route("GET", path + r"/(?P<id>[^/]+)", lambda req, k=kind: self._get(req, k))
            self.route("DELETE", path + r"/(?P<id>[^/]+)",
                       lambda req, k=kind: self._delete(req, k))

    def error_reply(self, status, kind, message=None):
        return Reply(status, {"error": message or _MESSAGES.get(kind, _MESSAGES["internal"]),
                              "status": status})

    def _dispatch(self, req, route, auth):
        # the plans are public (the spec's `security: []`): no key is fine, a bad one is not
        if auth is None and route in self.PUBLIC_ROUTES:
            auth = ""
        return super()._dispatch(req, route, auth)

    def status_of(self, vm):
        if vm.status:
            return vm.status
        return {"booting": "pending", "running": "active"}.get(vm.phase, vm.phase)

    # ------------------------------------------------------------------ helpers for tests

    def vpcs(self):
        with self.lock:
            return [dict(v) for v in self._vpcs.values()]

    def add_vpc(self, region, description="", v4_subnet=None, v4_subnet_mask=20):
        """Make a VPC as if through the API; returns it."""
        with self.lock:
            self._nets += 1
            vpc = {"id": str(uuid.uuid4()), "date_created": _now_iso(), "region": region,
                   "description": description,
                   "v4_subnet": v4_subnet or f"10.{self._nets % 250}.96.0",
                   "v4_subnet_mask": v4_subnet_mask}
            self._vpcs[vpc["id"]] = vpc
            return dict(vpc)

    def add_ssh_key(self, name, ssh_key):
        """Register an SSH key as if through the API; returns its id."""
        with self.lock:
            kid = str(uuid.uuid4())
            self._ssh_keys[kid] = {"id": kid, "date_created": _now_iso(), "name": name,
                                   "ssh_key": ssh_key.strip()}
            return kid

    def set_power(self, vm_id, power_status):
        """power_status running | stopped (an active VM that was halted)."""
        with self.lock:
            self._vms[vm_id].extra["power_status"] = power_status

    def create_behind_the_back(self, name, instance_type, region, pubkeys=(), phase="running",
                               kind="instance", tags=(), **extra):
        """An instance (kind "instance") or a bare metal ("metal") the client did not ask
        for, labelled name."""
        return super().create_behind_the_back(name, instance_type, region, pubkeys, phase,
                                              kind=kind, tags=list(tags), **extra)

    # ------------------------------------------------------------------ pagination

    def _page(self, req, member, items):
        """One page of items as Vultr answers a list: {member: [...], "meta": {...}}."""
        q = req.query
        per_page = 100
        if "per_page" in q:
            try:
                per_page = int(q["per_page"][0])
            except ValueError:
                raise self.error_reply(400, "bad_request", "Invalid per_page value.")
            if per_page < 1:
                raise self.error_reply(400, "bad_request", "Invalid per_page value.")
        per_page = min(per_page, 500, max(1, int(self.page_max)))
        start = 0
        if q.get("cursor", [""])[0]:
            try:
                word, _, n = base64.b64decode(q["cursor"][0], validate=True).decode() \
                    .partition("__")
                start = int(n)
                if word not in ("next", "prev") or start < 0:
                    raise ValueError
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise self.error_reply(400, "bad_request", "Invalid cursor.")
        page = items[start:start + per_page]

        def cur(word, n):
            return base64.b64encode(f"{word}__{n}".encode()).decode()
        nxt = cur("next", start + per_page) if start + per_page < len(items) else ""
        prv = cur("prev", max(0, start - per_page)) if start > 0 else ""
        return {member: page, "meta": {"total": len(items), "links": {"next": nxt,
                                                                       "prev": prv}}}

    # ------------------------------------------------------------------ JSON shapes

    def _plan(self, kind, plan_id):
        plans = self.plans if kind == "instance" else self.metal_plans
        return next((p for p in plans if p.get("id") == plan_id), None)

    def _visible(self, vm):
        return vm.phase in ("booting", "running")

    def _vm_json(self, vm):
        kind = vm.extra.get("kind", "instance")
        status = self.status_of(vm)
        active = vm.phase == "running"
        ip = vm.ip if active else None
        plan = self._plan(kind, vm.instance_type) or {}
        common = {
            "id": vm.id,
            "os": vm.extra.get("os", IMAGE_IDS["docker"]),
            "region": vm.region, "plan": vm.instance_type,
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00",
                                          time.gmtime(vm.created)),
            "status": status,
            "netmask_v4": "255.255.255.0" if ip else "",
            "gateway_v4": (ip.rsplit(".", 1)[0] + ".1") if ip else "0.0.0.0",
            "v6_network": "", "v6_main_ip": "", "v6_network_size": 0,
            "label": vm.name or "",
            "os_id": vm.extra.get("os_id", 0), "app_id": vm.extra.get("app_id", 0),
            "image_id": vm.extra.get("image_id", ""),
            "features": [],
            "tags": list(vm.extra.get("tags", [])),
        }
        if kind == "metal":
            common.update({
                "main_ip": ip or "",
                "cpu_count": plan.get("cpu_count", 0),
                "ram": f"{plan.get('ram', 0)} MB",
                "disk": f"{plan.get('disk_count', 1)}x {plan.get('disk', 0)}GB SSD",
                "mac_address": int.from_bytes(uuid.UUID(vm.id).bytes[:5], "big"),
            })
            return common
        common.update({
            "main_ip": ip or "0.0.0.0",
            "vcpu_count": plan.get("vcpu_count", 0), "ram": plan.get("ram", 0),
            "disk": plan.get("disk", 0), "allowed_bandwidth": plan.get("bandwidth", 0),
            "power_status": vm.extra.get("power_status", "running"),
            "server_status": "ok" if active else "installingbooting",
            "internal_ip": vm.extra.get("internal_ip", ""),
            "kvm": "", "hostname": vm.extra.get("hostname") or vm.name or "vultr.guest",
            "firewall_group_id": "",
        })
        return common

    # ------------------------------------------------------------------ handlers

    def _list_plans(self, req):
        t = req.query.get("type", ["all"])[0]
        items = [p for p in self.plans
                 if t == "all" or p.get("type") == t or p.get("id", "").startswith(t + "-")]
        return self._page(req, "plans", copy.deepcopy(items))

    def _list_metal_plans(self, req):
        return self._page(req, "plans_metal", copy.deepcopy(self.metal_plans))

    def _list_ssh_keys(self, req):
        with self.lock:
            return self._page(req, "ssh_keys", [dict(k) for k in self._ssh_keys.values()])

    def _list_vpcs(self, req):
        return self._page(req, "vpcs", self.vpcs())

    def _get_vpc(self, req):
        with self.lock:
            vpc = self._vpcs.get(req.params["id"])
            if vpc is None:
                raise self.error_reply(404, "not_found", "Invalid VPC ID.")
            return {"vpc": dict(vpc)}

    def _delete_vpc(self, req):
        with self.lock:
            vpc = self._vpcs.get(req.params["id"])
            if vpc is None:
                raise self.error_reply(404, "not_found", "Invalid VPC ID.")
            if any(vpc["id"] in v.extra.get("attach_vpc", []) for v in self.all_vms()
                   if self._visible(v)):
                raise self.error_reply(400, "bad_request",
                                       "Unable to delete VPC: instances are attached.")
            del self._vpcs[vpc["id"]]
        return Reply(204, None)

    def _check_body(self, req, fields):
        b = req.body
        if not req.json_ok or not isinstance(b, dict):
            raise self.error_reply(400, "bad_request", "Invalid JSON body.")
        extra = sorted(set(b) - set(fields))
        if extra:
            raise self.error_reply(400, "bad_request", f"Unknown field: {extra[0]}.")
        for k, v in b.items():
            if not _type_ok(v, fields[k]):
                raise self.error_reply(400, "bad_request", f"{k} must be a {fields[k]}.")
        return b

    def _create_vpc(self, req):
        b = self._check_body(req, _VPC_FIELDS)
        if "region" not in b:
            raise self.error_reply(400, "bad_request", "Missing required field: region.")
        if b["region"] not in self.regions:
            raise self.error_reply(400, "bad_request", "Invalid region chosen.")
        mask = b.get("v4_subnet_mask", 20)
        if not 16 <= mask <= 29:
            raise self.error_reply(400, "bad_request", "Invalid v4_subnet_mask.")
        vpc = self.add_vpc(b["region"], b.get("description", ""), b.get("v4_subnet"), mask)
        return Reply(201, {"vpc": vpc})

    def _create(self, req, kind):
        what = "instance" if kind == "instance" else "bare_metal"
        b = self._check_body(req, _INSTANCE_FIELDS if kind == "instance" else _METAL_FIELDS)
        for f in ("region", "plan"):
            if f not in b:
                raise self.error_reply(400, "bad_request", f"Missing required field: {f}.")
        region, plan_id = b["region"], b["plan"]
        if region not in self.regions:
            raise self.error_reply(400, "bad_request", "Invalid region chosen.")
        plan = self._plan(kind, plan_id)
        if plan is None:
            raise self.error_reply(400, "bad_request", "Invalid plan chosen.")
        sources = [k for k in ("os_id", "iso_id", "snapshot_id", "app_id", "image_id")
                   if k in b]
        if len(sources) != 1:
            raise self.error_reply(400, "bad_request", "Choose exactly one of os_id, iso_id, "
                                   "snapshot_id, app_id or image_id.")
        if "os_id" in b and b["os_id"] not in OS_IDS:
            raise self.error_reply(400, "bad_request", "Invalid os_id.")
        if "image_id" in b and b["image_id"] not in IMAGE_IDS:
            raise self.error_reply(400, "bad_request", "Invalid image_id.")
        if sources[0] not in ("os_id", "image_id"):
            raise self.error_reply(400, "bad_request", f"Invalid {sources[0]}.")
        if len(b.get("label", "")) > 255:
            raise self.error_reply(400, "bad_request", "Label must be at most 255 characters.")
        keys = []
        if "user_data" in b:
            try:
                text = base64.b64decode(b["user_data"], validate=True).decode()
            except (binascii.Error, ValueError):
                raise self.error_reply(400, "bad_request",
                                       "user_data must be base64 encoded.")
            if len(text) > 65535:
                raise self.error_reply(400, "bad_request", "user_data is too large.")
            keys += keys_from_user_data(text)
        with self.lock:
            for kid in b.get("sshkey_id", []):
                if kid not in self._ssh_keys:
                    raise self.error_reply(400, "bad_request", f"Invalid SSH key ID: {kid}.")
                keys.append(self._ssh_keys[kid]["ssh_key"])
            vpcs = b.get("attach_vpc", [])
            for vid in vpcs:
                vpc = self._vpcs.get(vid)
                if vpc is None or vpc["region"] != region:
                    raise self.error_reply(400, "bad_request", f"Invalid VPC ID: {vid}.")
            if region not in plan.get("locations", []):
                raise self.error_reply(400, "not_offered")
            internal = ""
            if vpcs and kind == "instance":
                vpc = self._vpcs[vpcs[0]]
                used = sum(1 for v in self.all_vms() if vpcs[0] in v.extra.get("attach_vpc", []))
                internal = vpc["v4_subnet"].rsplit(".", 1)[0] + f".{3 + used}"
        try:
            vm = self.launch_vm(b.get("label", ""), plan_id, region, keys, kind=kind,
                                tags=list(b.get("tags", [])), attach_vpc=list(vpcs),
                                internal_ip=internal, os_id=b.get("os_id", 0),
                                image_id=b.get("image_id", ""), hostname=b.get("hostname"),
                                os=OS_IDS.get(b.get("os_id")) or IMAGE_IDS.get(
                                    b.get("image_id"), ""))
        except NoCapacity:
            raise self.error_reply(400, "no_capacity")
        with self.lock:
            return Reply(202, {what: self._vm_json(vm)})

    def _find(self, req, kind):
        vm = self.vm(req.params["id"])
        if vm is None or vm.extra.get("kind", "instance") != kind or not self._visible(vm):
            raise self.error_reply(404, "not_found", "Invalid instance-id."
                                   if kind == "instance" else "Invalid baremetal-id.")
        return vm

    def _list(self, req, kind):
        q = req.query
        with self.lock:
            vms = [v for v in self.all_vms()
                   if v.extra.get("kind", "instance") == kind and self._visible(v)]
            items = [self._vm_json(v) for v in vms]
        if kind == "instance":
            for f in ("label", "region", "main_ip"):
                if q.get(f, [""])[0]:
                    items = [i for i in items if i.get(f) == q[f][0]]
        return self._page(req, "instances" if kind == "instance" else "bare_metals", items)

    def _get(self, req, kind):
        with self.lock:
            vm = self._find(req, kind)
            return {"instance" if kind == "instance" else "bare_metal": self._vm_json(vm)}

    def _delete(self, req, kind):
        with self.lock:
            vm = self._find(req, kind)
            self.terminate_vm(vm)
        return Reply(204, None)
