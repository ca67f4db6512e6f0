"""A fake of the Lambda Cloud API v1 (reference/specs/lambda-cloud.yaml) on cloudfake.

Paths (under /api/v1), bodies, status codes and the error envelope
{"error": {"code", "message", "suggestion"}} follow the published spec:

    GET    /instance-types                  types, prices, regions_with_capacity_available
    GET    /instances                       every instance not gone
    GET    /instances/{id}                  404 global/object-does-not-exist when unknown
    POST   /instance-operations/launch      body checked like the API (see _launch)
    POST   /instance-operations/terminate   {instance_ids: [...]}; 404 for an unknown id
    GET    /ssh-keys, POST /ssh-keys        POST without public_key generates a pair
    DELETE /ssh-keys/{id}                   400 ssh-keys/key-in-use while a VM uses it
    GET    /file-systems                    always empty

Authentication: `Authorization: Bearer <key>` or `Basic` (base64 of "<key>:" or the bare
key), as the spec allows; a bad key is 401 global/invalid-api-key, a key in inactive_keys
403 global/account-inactive. Instances are VMs on real SSH hosts (user `ubuntu`) that accept
exactly the public key registered under the launch's ssh key name.

    with LambdaFake(keys=["secret"], hosts=2, boot_seconds=0.3) as f:
        f.url            # https://127.0.0.1:PORT/api/v1 (FLEETFS_ENDPOINT_LAMBDA)
        f.ca_path        # FLEETFS_CA_BUNDLE
        f.set_capacity("gpu_1x_a10", "us-west-1", 0)     # launch: insufficient-capacity
        f.ssh_keys()     # [{"id", "name", "public_key"}]
"""
import base64
import binascii
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from cloudfake import CloudFake, NoCapacity, Reply  # noqa: E402

__all__ = ["LambdaFake", "DEFAULT_TYPES", "DEFAULT_REGIONS"]

DEFAULT_REGIONS = {
    "us-east-1": "Virginia, USA",
    "us-west-1": "California, USA",
    "us-west-2": "Arizona, USA",
    "us-south-1": "Texas, USA",
    "europe-central-1": "Germany",
}

# name -> description, price (cents/h), vcpus, memory_gib, storage_gib, regions offered
DEFAULT_TYPES = {
    "gpu_1x_a10": {"description": "1x A10 (24 GB PCIe)", "price_cents_per_hour": 75,
                   "vcpus": 30, "memory_gib": 200, "storage_gib": 1400,
                   "regions": ["us-east-1", "us-west-1"]},
    "gpu_1x_a100_sxm4": {"description": "1x A100 (40 GB SXM4)", "price_cents_per_hour": 129,
                         "vcpus": 30, "memory_gib": 200, "storage_gib": 512,
                         "regions": ["us-west-2", "us-east-1"]},
    "gpu_8x_h100_sxm5": {"description": "8x H100 (80 GB SXM5)", "price_cents_per_hour": 2392,
                         "vcpus": 208, "memory_gib": 1800, "storage_gib": 24780,
                         "regions": ["us-east-1"]},
}

_KEY_RE = re.compile(r"(ssh-rsa|ssh-ed25519|ssh-dss|ecdsa-sha2-nistp(?:256|384|521)|"
                     r"sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)"
                     r" ([A-Za-z0-9+/]+={0,2})(?: [^\r\n]*)?")
_LAUNCH_FIELDS = {"region_name", "instance_type_name", "ssh_key_names", "file_system_names",
                  "quantity", "name"}

_ERRORS = {   # kind -> (code, message, suggestion)
    "unauthorized": ("global/invalid-api-key", "API key was invalid, expired, or deleted.",
                     "Check your API key or create a new one, then try again."),
    "forbidden": ("global/account-inactive", "Your account is inactive.",
                  "Make sure you have verified your email address and have a valid payment "
                  "method. Contact Support if problems continue."),
    "not_found": ("global/object-does-not-exist", "Specified object does not exist.", None),
    "bad_request": ("global/invalid-parameters", "Invalid request parameters.", None),
    "too_large": ("global/invalid-parameters", "Request body too large.", None),
    "method_not_allowed": ("global/unknown", "Method not allowed.", None),
    "rate_limited": ("global/unknown", "Too many requests.",
                     "Wait for the number of seconds in Retry-After, then try again."),
    "no_capacity": ("instance-operations/launch/insufficient-capacity",
                    "Not enough capacity to fulfill launch request.", None),
    "quota": ("global/quota-exceeded", "Quota exceeded.",
              "Contact Support to increase your quota."),
    "key_in_use": ("ssh-keys/key-in-use", "SSH key is in use by an instance.", None),
    "internal": ("global/unknown", "Something unexpected occurred.", None),
    "unavailable": ("global/unknown", "Service temporarily unavailable.", None),
}


def _bad(message, field=None):
    body = {"error": {"code": "global/invalid-parameters", "message": message}}
    if field:
        body["field_errors"] = {field: {"code": "global/invalid-parameters",
                                        "message": message}}
    return Reply(400, body)


class LambdaFake(CloudFake):
    provider = "lambda"
    base_path = "/api/v1"
    default_user = "ubuntu"
    server_header = "nginx"

    def __init__(self, keys=("test-key",), types=None, regions=None, terminated_linger=2.0,
                 **kw):
        """types: {name: {description, price_cents_per_hour, vcpus, memory_gib, storage_gib,
        regions}} (default DEFAULT_TYPES); regions: {name: description}. The rest as
        CloudFake (hosts, pool, boot_seconds, terminate_seconds, ...)."""
        self.types = {k: dict(v) for k, v in (types or DEFAULT_TYPES).items()}
        self.regions = dict(regions or DEFAULT_REGIONS)
        self._keys = {}               # ssh key id -> {"id", "name", "public_key"}
        super().__init__(keys=keys, terminated_linger=terminated_linger, **kw)

    # ------------------------------------------------------------------ provider hooks

    def setup_routes(self):
        self.route("GET", r"/instance-types", self._instance_types)
        self.route("GET", r"/instances", self._instances)
        self.route("GET", r"/instances/(?P<id>[^/]+)", self._instance)
        self.route("POST", r"/instance-operations/launch", self._launch)
        self.route("POST", r"/instance-operations/terminate", self._terminate)
        self.route("GET", r"/ssh-keys", self._list_keys)
        self.route("POST", r"/ssh-keys", self._add_key)
        self.route("DELETE", r"/ssh-keys/(?P<id>[^/]+)", self._delete_key)
        self.route("GET", r"/file-systems", lambda req: {"data": []})

    def error_reply(self, status, kind, message=None):
        code, msg, suggestion = _ERRORS.get(kind, _ERRORS["internal"])
        err = {"code": code, "message": message or msg}
        if suggestion:
            err["suggestion"] = suggestion
        return Reply(status, {"error": err})

    def check_auth(self, headers):
        v = (headers.get("Authorization") or "").strip()
        if not v:
            return None
        scheme, _, cred = v.partition(" ")
        cred = cred.strip()
        valid = self.keys | self.inactive_keys
        cands = []
        if scheme.lower() == "bearer":
            cands = [cred]
        elif scheme.lower() == "basic":      # base64 of "<key>:", or the bare key
            try:
                dec = base64.b64decode(cred, validate=True).decode()
                cands.append(dec[:-1] if dec.endswith(":") else dec)
            except (binascii.Error, UnicodeDecodeError):
                pass
            cands.append(cred)
        return next((k for k in cands if k in valid), False)

    def status_of(self, vm):
        if vm.status:
            return vm.status
        return {"booting": "booting", "running": "active", "terminating": "terminating",
                "terminated": "terminated"}[vm.phase]

    # ------------------------------------------------------------------ helpers for tests

    def ssh_keys(self):
        with self.lock:
            return [dict(k) for k in self._keys.values()]

    def add_ssh_key(self, name, public_key):
        """Register a key as if through the API; returns its id."""
        with self.lock:
            kid = os.urandom(16).hex()
            self._keys[kid] = {"id": kid, "name": name, "public_key": public_key.strip()}
            return kid

    # ------------------------------------------------------------------ JSON shapes

    def _region(self, name):
        return {"name": name, "description": self.regions.get(name, name)}

    def _type_json(self, name):
        t = self.types[name]
        return {"name": name, "description": t["description"],
                "price_cents_per_hour": t["price_cents_per_hour"],
                "specs": {"vcpus": t["vcpus"], "memory_gib": t["memory_gib"],
                          "storage_gib": t["storage_gib"]}}

    def _vm_json(self, vm):
        ip = vm.ip
        return {"id": vm.id, "name": vm.name, "ip": ip, "private_ip": ip,
                "status": self.status_of(vm),
                "ssh_key_names": list(vm.extra.get("ssh_key_names", [])),
                "file_system_names": list(vm.extra.get("file_system_names", [])),
                "region": self._region(vm.region),
                "instance_type": self._type_json(vm.instance_type)
                if vm.instance_type in self.types else
                {"name": vm.instance_type, "description": vm.instance_type,
                 "price_cents_per_hour": 0, "specs": {"vcpus": 0, "memory_gib": 0,
                                                      "storage_gib": 0}},
                "hostname": f"{ip.replace('.', '-')}.cloud.lambdalabs.com" if ip else None,
                "jupyter_token": None, "jupyter_url": None}

    # ------------------------------------------------------------------ handlers

    def _instance_types(self, req):
        data = {}
        for name, t in self.types.items():
            avail = [self._region(r) for r in t["regions"] if self.capacity_left(name, r) > 0]
            data[name] = {"instance_type": self._type_json(name),
                          "regions_with_capacity_available": avail}
        return {"data": data}

    def _instances(self, req):
        with self.lock:
            return {"data": [self._vm_json(v) for v in self.all_vms()]}

    def _instance(self, req):
        with self.lock:
            vm = self.vm(req.params["id"])
            if vm is None:
                raise self.error_reply(404, "not_found", "Specified instance does not exist.")
            return {"data": self._vm_json(vm)}

    def _launch(self, req):
        b = req.body
        if not req.json_ok or not isinstance(b, dict):
            raise _bad("Request body must be a JSON object.")
        extra = sorted(set(b) - _LAUNCH_FIELDS)
        if extra:
            raise _bad(f"Unknown field: {extra[0]}.", extra[0])
        for f in ("region_name", "instance_type_name", "ssh_key_names"):
            if f not in b:
                raise _bad(f"Field required: {f}.", f)
        region, itype = b["region_name"], b["instance_type_name"]
        if not isinstance(region, str) or region not in self.regions:
            raise _bad("Invalid region_name.", "region_name")
        if not isinstance(itype, str) or itype not in self.types:
            raise _bad("Invalid instance_type_name.", "instance_type_name")
        names = b["ssh_key_names"]
        if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
            raise _bad("Exactly one SSH key name must be specified.", "ssh_key_names")
        fs = b.get("file_system_names", [])
        if not isinstance(fs, list) or len(fs) > 1 or not all(isinstance(x, str) for x in fs):
            raise _bad("At most one file system name may be specified.",
                       "file_system_names")
        if fs:
            raise _bad(f"File system {fs[0]!r} does not exist.", "file_system_names")
        q = b.get("quantity", 1)
        if type(q) is not int or q != 1:
            raise _bad("quantity must be 1.", "quantity")
        name = b.get("name")
        if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 64):
            raise _bad("name must be 1 to 64 characters.", "name")
        with self.lock:
            keys = [k for k in self._keys.values() if k["name"] == names[0]]
        if not keys:
            raise _bad(f"SSH key {names[0]!r} does not exist.", "ssh_key_names")
        if region not in self.types[itype]["regions"]:
            raise self.error_reply(400, "no_capacity")
        try:
            vm = self.launch_vm(name, itype, region, [keys[0]["public_key"]],
                                ssh_key_names=list(names), file_system_names=list(fs))
        except NoCapacity:
            raise self.error_reply(400, "no_capacity")
        return {"data": {"instance_ids": [vm.id]}}

    def _terminate(self, req):
        b = req.body
        if not req.json_ok or not isinstance(b, dict):
            raise _bad("Request body must be a JSON object.")
        extra = sorted(set(b) - {"instance_ids"})
        if extra:
            raise _bad(f"Unknown field: {extra[0]}.", extra[0])
        ids = b.get("instance_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(x, str) for x in ids):
            raise _bad("instance_ids must be a non-empty list of instance IDs.", "instance_ids")
        with self.lock:
            vms = [self.vm(i) for i in ids]
            if any(v is None for v in vms):
                raise self.error_reply(404, "not_found", "Specified instance does not exist.")
            for v in vms:
                self.terminate_vm(v)
            return {"data": {"terminated_instances": [self._vm_json(v) for v in vms]}}

    def _list_keys(self, req):
        return {"data": self.ssh_keys()}

    def _add_key(self, req):
        b = req.body
        if not req.json_ok or not isinstance(b, dict):
            raise _bad("Request body must be a JSON object.")
        extra = sorted(set(b) - {"name", "public_key"})
        if extra:
            raise _bad(f"Unknown field: {extra[0]}.", extra[0])
        name = b.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise _bad("name must be 1 to 64 characters.", "name")
        pub, priv = b.get("public_key"), None
        if pub is None:
            pub, priv = _generate_pair(name)
        elif not isinstance(pub, str) or len(pub) > 4096 or not _valid_pubkey(pub.strip()):
            raise _bad("Invalid public key.", "public_key")
        with self.lock:
            if any(k["name"] == name for k in self._keys.values()):
                raise _bad("An SSH key with this name already exists.", "name")
            kid = self.add_ssh_key(name, pub)
            out = dict(self._keys[kid])
        if priv is not None:
            out["private_key"] = priv
        return {"data": out}

    def _delete_key(self, req):
        with self.lock:
            k = self._keys.get(req.params["id"])
            if k is None:
                raise Reply(400, {"error": {"code": "global/object-does-not-exist",
                                            "message": "Specified SSH key does not exist."}})
            if any(k["name"] in v.extra.get("ssh_key_names", []) and v.phase != "terminated"
                   for v in self.all_vms()):
                raise self.error_reply(400, "key_in_use")
            del self._keys[k["id"]]
        return Reply(200, None)


def _valid_pubkey(s):
    m = _KEY_RE.fullmatch(s)
    if not m:
        return False
    try:
        blob = base64.b64decode(m.group(2), validate=True)
    except binascii.Error:
        return False
    n = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    return blob[4:4 + n].decode("ascii", "replace") == m.group(1)


def _generate_pair(name):
    d = tempfile.mkdtemp(prefix="lambdafake-key-")
    try:
        p = os.path.join(d, "k")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", p],
                       check=True, capture_output=True, timeout=30)
        with open(p + ".pub") as f:
            pub = f.read().strip()
        with open(p) as f:
            priv = f.read()
        return pub, priv
    finally:
        shutil.rmtree(d, ignore_errors=True)
