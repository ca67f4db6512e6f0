"""Fake GPU tools for the test hosts: nvidia-smi and amd-smi scripts, and the data they print.

The scripts are POSIX sh + awk (no Python on the "remote" side) and read their data from a
per-host file on every call, so TestHosts.set_gpus() takes effect without restarting sshd.

GPU specs (see parse_spec):

    "none"                       no GPU tool on the PATH at all (a CPU host: `command not found`)
    "nvidia:A100:80GB:2"         vendor:model[:<mem>GB][:count]; count defaults to 1,
    "nvidia:H100:8"              the memory to the model's usual size
    "amd:MI300X:192GB:8"
    "nvidia:T4+nvidia:L4:2"      several groups ('+' or a list): a heterogeneous host
    "nvidia:nodriver"            nvidia-smi is installed but the driver is not (exit 9)
    "nvidia:nodevices"           nvidia-smi runs but finds no GPU (exit 6)

Anything else (a str not starting with none/nvidia/amd, or a list of such lines) is raw
nvidia-smi output, printed verbatim for any --query-gpu.
"""
import json
import re
import uuid

NVIDIA_DRIVER = "535.183.01"
CUDA_VERSION = "12.2"
AMD_DRIVER = "6.7.0"

# (model, GB) -> (product name as nvidia-smi prints it, memory.total in MiB, compute_cap).
# The first entry of a model is its default size.
NVIDIA_MODELS = [
    ("A100", 80, "NVIDIA A100-SXM4-80GB", 81920, "8.0"),
    ("A100", 40, "NVIDIA A100-SXM4-40GB", 40960, "8.0"),
    ("H100", 80, "NVIDIA H100 80GB HBM3", 81559, "9.0"),
    ("H100NVL", 94, "NVIDIA H100 NVL", 95830, "9.0"),
    ("H200", 141, "NVIDIA H200", 143771, "9.0"),
    ("GH200", 96, "NVIDIA GH200 480GB", 97871, "9.0"),
    ("B200", 180, "NVIDIA B200", 183359, "10.0"),
    ("L4", 24, "NVIDIA L4", 23034, "8.9"),
    ("L40S", 48, "NVIDIA L40S", 46068, "8.9"),
    ("L40", 48, "NVIDIA L40", 46068, "8.9"),
    ("A10", 24, "NVIDIA A10", 23028, "8.6"),
    ("A10G", 24, "NVIDIA A10G", 23028, "8.6"),
    ("A40", 48, "NVIDIA A40", 46068, "8.6"),
    ("A6000", 48, "NVIDIA RTX A6000", 49140, "8.6"),
    ("A4000", 16, "NVIDIA RTX A4000", 16376, "8.6"),
    ("T4", 16, "Tesla T4", 15360, "7.5"),
    ("V100", 16, "Tesla V100-SXM2-16GB", 16384, "7.0"),
    ("V100", 32, "Tesla V100-SXM2-32GB", 32768, "7.0"),
    ("P100", 16, "Tesla P100-PCIE-16GB", 16384, "6.0"),
    ("RTX4090", 24, "NVIDIA GeForce RTX 4090", 24564, "8.9"),
    ("RTX3090", 24, "NVIDIA GeForce RTX 3090", 24576, "8.6"),
]

# (model, GB) -> (market name, vram MB as amd-smi reports it, device id, gfx target)
AMD_MODELS = [
    ("MI300X", 192, "AMD Instinct MI300X", 196592, "0x74a1", "gfx942"),
    ("MI325X", 256, "AMD Instinct MI325X", 262128, "0x74a5", "gfx942"),
    ("MI250X", 64, "AMD Instinct MI250X", 65520, "0x740c", "gfx90a"),
    ("MI250", 64, "AMD Instinct MI250", 65520, "0x740c", "gfx90a"),
    ("MI210", 64, "AMD Instinct MI210", 65520, "0x740f", "gfx90a"),
    ("MI100", 32, "AMD Instinct MI100", 32752, "0x738c", "gfx908"),
]

NODRIVER_MSG = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                "Make sure that the latest NVIDIA driver is installed and running.")


def _norm(model):
    return re.sub(r"[\s_-]+", "", model).upper()


def is_spec(spec):
    """True for a GPU spec string, False for raw nvidia-smi output."""
    if isinstance(spec, str):
        return bool(re.match(r"^\s*(none\s*$|(nvidia|amd)(:|\s*$))", spec, re.I))
    return False


def parse_spec(spec):
    """'nvidia:A100:80GB:2+amd:MI300X' -> {'nvidia': [gpu dicts] | 'nodriver' | 'nodevices',
    'amd': [gpu dicts]} (a vendor key is present only when its tool should be installed)."""
    groups = spec if isinstance(spec, (list, tuple)) else re.split(r"[+]", spec)
    out = {}
    for g in groups:
        g = g.strip()
        if not g or g.lower() == "none":
            continue
        parts = [p.strip() for p in g.split(":")]
        vendor = parts[0].lower()
        if vendor not in ("nvidia", "amd"):
            raise ValueError(f"GPU spec {g!r}: vendor must be nvidia or amd")
        rest = parts[1:]
        if vendor == "nvidia" and rest and rest[0].lower() in ("nodriver", "nodevices"):
            if len(rest) != 1 or out.get("nvidia"):
                raise ValueError(f"GPU spec {g!r}: {rest[0]} stands alone")
            out["nvidia"] = rest[0].lower()
            continue
        if not rest:
            raise ValueError(f"GPU spec {g!r}: model missing (vendor:model[:memGB][:count])")
        model, mem_gb, count = rest[0], None, 1
        for p in rest[1:]:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(GB|G|GIB)", p, re.I)
            if m:
                mem_gb = float(m.group(1))
            elif re.fullmatch(r"\d+", p):
                count = int(p)
            else:
                raise ValueError(f"GPU spec {g!r}: {p!r} is neither <n>GB nor a count")
        lst = out.setdefault(vendor, [])
        if isinstance(lst, str):
            raise ValueError(f"GPU spec {spec!r}: nvidia:{lst} stands alone")
        for _ in range(count):
            lst.append(_gpu(vendor, model, mem_gb))
    return out


def _gpu(vendor, model, mem_gb):
    table = NVIDIA_MODELS if vendor == "nvidia" else AMD_MODELS
    key = _norm(model)
    same = [e for e in table if e[0] == key]
    exact = [e for e in same if mem_gb is None or e[1] == mem_gb]
    if exact:
        e = exact[0]
    elif same:
        e = same[0][:1] + (mem_gb,) + same[0][2:3] + (int(mem_gb * 1024),) + same[0][4:]
    else:
        gb = mem_gb if mem_gb is not None else 16
        if vendor == "nvidia":
            e = (key, gb, f"NVIDIA {model}", int(gb * 1024), "8.0")
        else:
            e = (key, gb, f"AMD Instinct {model}", int(gb * 1024), "0x7400", "gfx900")
    if vendor == "nvidia":
        return {"vendor": "nvidia", "name": e[2], "memory.total": e[3], "compute_cap": e[4]}
    return {"vendor": "amd", "name": e[2], "vram_mb": e[3], "device_id": e[4], "gfx": e[5]}


# ------------------------------------------------------------------------------------------
# Data files

def nvidia_data(gpus, seed):
    """Contents of the nvidia-smi data file. gpus: list of dicts, 'nodriver', 'nodevices',
    or ('raw', text)."""
    lines = []
    if isinstance(gpus, tuple) and gpus[0] == "raw":
        lines.append("mode raw")
        text = gpus[1]
        for ln in text.splitlines():
            lines.append("raw " + ln)
    elif gpus in ("nodriver", "nodevices") or not gpus:
        lines.append("mode " + (gpus or "nodevices"))
    else:
        lines.append("mode ok")
        for i, g in enumerate(gpus):
            u = uuid.uuid5(uuid.NAMESPACE_URL, f"flfs:{seed}:{i}")
            fields = {
                "index": i,
                "name": g["name"],
                "uuid": f"GPU-{u}",
                "memory.total": g["memory.total"],
                "memory.used": 0,
                "memory.free": g["memory.total"],
                "memory.reserved": 0,
                "driver_version": NVIDIA_DRIVER,
                "pci.bus_id": f"00000000:{0x18 + 0x10 * i:02X}:00.0",
                "pci.bus": f"0x{0x18 + 0x10 * i:02X}",
                "pci.device_id": "0x20B210DE",
                "compute_cap": g["compute_cap"],
                "serial": f"{1320000000000 + i}",
                "vbios_version": "92.00.36.00.01",
                "persistence_mode": "Enabled",
                "temperature.gpu": 31,
                "utilization.gpu": 0,
                "utilization.memory": 0,
                "power.draw": "61.24",
                "power.limit": "400.00",
            }
            lines.append("gpu\t" + "\t".join(f"{k}={v}" for k, v in fields.items()))
    lines.append(f"driver {NVIDIA_DRIVER}")
    lines.append(f"cuda {CUDA_VERSION}")
    return "\n".join(lines) + "\n"


def amd_static(gpus, seed):
    """`amd-smi static --json` (ROCm 6.x form: a flat array) for a list of AMD GPU dicts."""
    out = []
    for i, g in enumerate(gpus):
        u = uuid.uuid5(uuid.NAMESPACE_URL, f"flfs-amd:{seed}:{i}")
        out.append({
            "gpu": i,
            "asic": {
                "market_name": g["name"],
                "vendor_id": "0x1002",
                "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
                "subvendor_id": "0x1002",
                "device_id": g["device_id"],
                "rev_id": "0x00",
                "asic_serial": "0x" + u.hex[:16].upper(),
                "oam_id": i,
                "num_compute_units": 304,
                "target_graphics_version": g["gfx"],
            },
            "bus": {
                "bdf": f"0000:{0x0c + 0x10 * i:02x}:00.0",
                "max_pcie_width": 16,
                "max_pcie_speed": {"value": 32, "unit": "GT/s"},
                "pcie_interface_version": "Gen 5",
                "slot_type": "OAM",
            },
            "vram": {
                "type": "HBM",
                "vendor": "N/A",
                "size": {"value": g["vram_mb"], "unit": "MB"},
                "bit_width": 8192,
            },
            "driver": {"name": "amdgpu", "version": AMD_DRIVER},
        })
    return json.dumps(out, indent=4) + "\n"


def amd_static_text(gpus):
    lines = []
    for i, g in enumerate(gpus):
        lines += [f"GPU: {i}", "    ASIC:", f"        MARKET_NAME: {g['name']}",
                  "        VENDOR_ID: 0x1002", f"        DEVICE_ID: {g['device_id']}",
                  f"        TARGET_GRAPHICS_VERSION: {g['gfx']}", "    BUS:",
                  f"        BDF: 0000:{0x0c + 0x10 * i:02x}:00.0", "    VRAM:",
                  "        TYPE: HBM", f"        SIZE: {g['vram_mb']} MB", "    DRIVER:",
                  "        NAME: amdgpu", f"        VERSION: {AMD_DRIVER}", ""]
    return "\n".join(lines) + "\n"


def amd_list(gpus, seed, as_json):
    rows = []
    for i, _ in enumerate(gpus):
        u = uuid.uuid5(uuid.NAMESPACE_URL, f"flfs-amd:{seed}:{i}")
        rows.append({"gpu": i, "bdf": f"0000:{0x0c + 0x10 * i:02x}:00.0", "uuid": str(u),
                     "kfd_id": 1000 + i, "node_id": 2 + i, "partition_id": 0})
    if as_json:
        return json.dumps(rows, indent=4) + "\n"
    return "".join(f"GPU: {r['gpu']}\n    BDF: {r['bdf']}\n    UUID: {r['uuid']}\n\n"
                   for r in rows)


# ------------------------------------------------------------------------------------------
# Scripts (DATA and DIR are substituted with shell-quoted absolute paths)

NVIDIA_SMI = r"""#!/bin/sh
# Fake nvidia-smi (fleetfs tests/hosts). Canned data, re-read on every call:
DATA=@DATA@
NODRIVER=@NODRIVER@
if [ ! -r "$DATA" ]; then echo "$NODRIVER"; exit 9; fi
mode=$(awk '$1 == "mode" { print $2; exit }' "$DATA")
case "$mode" in
nodriver) echo "$NODRIVER"; exit 9 ;;
nodevices) echo "No devices were found"; exit 6 ;;
raw) awk '$1 == "raw" { print substr($0, 5) }' "$DATA"; exit 0 ;;
esac
query=""; format=""; list=0
while [ $# -gt 0 ]; do
	case "$1" in
	--query-gpu=*) query=${1#--query-gpu=} ;;
	--query-gpu) shift; query=${1:-} ;;
	--format=*) format=${1#--format=} ;;
	--format) shift; format=${1:-} ;;
	-L|--list-gpus) list=1 ;;
	-h|--help) echo "NVIDIA System Management Interface -- v@DRIVER@ (fake, fleetfs tests)"; exit 0 ;;
	esac
	shift
done
if [ -n "$query" ]; then
	case "$format" in
	csv*) ;;
	*) echo '"--format" option must be specified when using --query-gpu (fake: only csv)'; exit 2 ;;
	esac
	exec awk -v q="$query" -v fmt="$format" '
	BEGIN {
		nf = split(q, F, ",")
		noheader = index(fmt, "noheader") > 0
		nounits = index(fmt, "nounits") > 0
		valid = " index name uuid memory.total memory.used memory.free memory.reserved driver_version pci.bus_id pci.bus pci.device_id compute_cap count serial vbios_version persistence_mode temperature.gpu utilization.gpu utilization.memory power.draw power.limit gpu_name gpu_uuid gpu_bus_id "
		alias["gpu_name"] = "name"; alias["gpu_uuid"] = "uuid"; alias["gpu_bus_id"] = "pci.bus_id"
		unit["memory.total"] = "MiB"; unit["memory.used"] = "MiB"; unit["memory.free"] = "MiB"
		unit["memory.reserved"] = "MiB"; unit["power.draw"] = "W"; unit["power.limit"] = "W"
		unit["utilization.gpu"] = "%"; unit["utilization.memory"] = "%"
		for (i = 1; i <= nf; i++) {
			gsub(/[ \t]/, "", F[i])
			if (index(valid, " " F[i] " ") == 0) {
				printf "Field \"%s\" is not a valid field to query.\n\n", F[i]
				bad = 1
				exit 2
			}
			if (F[i] in alias) F[i] = alias[F[i]]
		}
	}
	$1 == "gpu" { rows[++n] = $0 }
	END {
		if (bad) exit 2
		if (!noheader) {
			h = ""
			for (i = 1; i <= nf; i++) {
				name = F[i]
				if (F[i] in unit) name = name " [" unit[F[i]] "]"
				h = h (i > 1 ? ", " : "") name
			}
			print h
		}
		for (r = 1; r <= n; r++) {
			split("", g)
			m = split(rows[r], kv, "\t")
			for (j = 2; j <= m; j++) {
				p = index(kv[j], "=")
				g[substr(kv[j], 1, p - 1)] = substr(kv[j], p + 1)
			}
			g["count"] = n
			line = ""
			for (i = 1; i <= nf; i++) {
				v = (F[i] in g) ? g[F[i]] : "[N/A]"
				if (!nounits && (F[i] in unit) && v ~ /^[0-9.]+$/) v = v " " unit[F[i]]
				line = line (i > 1 ? ", " : "") v
			}
			print line
		}
	}' "$DATA"
fi
if [ "$list" = 1 ]; then
	exec awk -F '\t' '$1 == "gpu" {
		split("", g)
		for (j = 2; j <= NF; j++) { p = index($j, "="); g[substr($j, 1, p - 1)] = substr($j, p + 1) }
		printf "GPU %s: %s (UUID: %s)\n", g["index"], g["name"], g["uuid"]
	}' "$DATA"
fi
exec awk -F '\t' '
/^driver / { drv = substr($0, 8) }
/^cuda / { cuda = substr($0, 6) }
$1 == "gpu" {
	split("", g)
	for (j = 2; j <= NF; j++) { p = index($j, "="); g[substr($j, 1, p - 1)] = substr($j, p + 1) }
	rows[++n] = sprintf("| %3s  %-36s %6sMiB / %6sMiB |", g["index"], g["name"], g["memory.used"], g["memory.total"])
}
END {
	bar = "+-------------------------------------------------------------------+"
	print bar
	printf "| NVIDIA-SMI %-12s Driver Version: %-12s CUDA Version: %-5s|\n", drv, drv, cuda
	print bar
	for (r = 1; r <= n; r++) print rows[r]
	print bar
}' "$DATA"
"""

AMD_SMI = r"""#!/bin/sh
# Fake amd-smi (fleetfs tests/hosts). Canned data, re-read on every call, in:
DIR=@DIR@
if [ -r "$DIR/amd-raw" ]; then cat "$DIR/amd-raw"; exit 0; fi
cmd=${1:-}
[ $# -gt 0 ] && shift
json=0
for a in "$@"; do
	case "$a" in --json|-j) json=1 ;; esac
done
case "$cmd" in
version)
	echo "AMDSMI Tool: 24.6.3+fake | AMDSMI Library version: 24.6.3.0 | ROCm version: 6.2.2"
	exit 0 ;;
static)
	if [ "$json" = 1 ]; then exec cat "$DIR/amd-static.json"; fi
	exec cat "$DIR/amd-static.txt" ;;
list)
	if [ "$json" = 1 ]; then exec cat "$DIR/amd-list.json"; fi
	exec cat "$DIR/amd-list.txt" ;;
""|-h|--help)
	echo "usage: amd-smi [-h] {version,list,static} ... (fake, fleetfs tests)"
	exit 0 ;;
*)
	echo "amd-smi: fake: subcommand '$cmd' not supported" >&2
	exit 2 ;;
esac
"""
