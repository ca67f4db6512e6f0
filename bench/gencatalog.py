#!/usr/bin/python3
"""Generate a synthetic gpuhunt-format offer catalog: DIR/<provider>.csv.

    /usr/bin/python3 bench/gencatalog.py DIR [--offers 100000] [--providers aws,lambdalabs,runpod]
                                             [--seed 1] [--regions aws=us-east-1+us-west-2,...]

Each file has gpuhunt's 14 columns, written the way gpuhunt writes them (csv module, CRLF,
`True`/`False`, floats as Python prints them, `provider_data` as JSON, quoted when needed):

    instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,disk_size,
    gpu_vendor,flags,cpu_arch,provider_data

The rows come from per-provider instance shapes that look like the real catalogs (AWS p5/p4d/
g5/g6/g4dn/CPU types, Lambda gpu_Nx_*, RunPod GPU ids with 1/2/4/8 GPUs, ...): H100, H200,
A100 40/80 GB, L4, A10G, A10, T4, V100, L40S, RTX4090, MI300X and CPU-only shapes, x86 and
arm, on-demand and spot where the provider has spot, some empty disk_size, per-provider
regions. The only flags written are ones dstack allows (lambda-arm, runpod-cpu,
runpod-cluster, oci-spot, gcp-a4, gcp-g4, gcp-dws-calendar-mode), so fleetfs drops no row for
its flags; runpod-cluster rows carry `{"pod_counts": [2, ..., 8]}` and DWS calendar-mode
rows `{"is_dws_calendar_mode": true}` as provider_data.

fleetfs names an offer `<backend>:<region>:<instance>[:spot]`, so every (instance, region,
spot) is unique per provider: once a provider's shapes x regions x spot combinations are used
up, the instance names get a `-v2`, `-v3`, ... suffix. `--regions` puts a provider's offers in
the given regions only (fleetfs shows a backend only the offers in its config's `regions:`).
Rows are sorted by price per file, as gpuhunt publishes them. Offers are split over the
providers by weight (AWS has the most). The same arguments always give the same files.

Importable: generate(dir, n, providers, seed, regions=None) writes the files and returns
{provider: rows}.
Python standard library only.
"""
import argparse
import csv
import json
import os
import random
import sys

HEADER = ["instance_name", "location", "price", "cpu", "memory", "gpu_count", "gpu_name",
          "gpu_memory", "spot", "disk_size", "gpu_vendor", "flags", "cpu_arch", "provider_data"]

# dstack's allowed_flags: the generator writes no other flag.
ALLOWED_FLAGS = {"oci-spot", "lambda-arm", "gcp-a4", "gcp-g4", "gcp-dws-calendar-mode",
                 "runpod-cpu", "runpod-cluster"}

# GPU name -> (vendor, GB per GPU, on-demand USD/h per GPU)
GPUS = {
    "H100": ("nvidia", 80, 3.20), "H200": ("nvidia", 141, 4.10), "B200": ("nvidia", 180, 6.00),
    "GH200": ("nvidia", 96, 1.49), "A100": ("nvidia", 40, 1.30), "A100-80": ("nvidia", 80, 1.80),
    "L4": ("nvidia", 24, 0.70), "L40S": ("nvidia", 48, 1.10), "A10G": ("nvidia", 24, 1.00),
    "A10": ("nvidia", 24, 0.75), "A6000": ("nvidia", 48, 0.80), "T4": ("nvidia", 16, 0.53),
    "V100": ("nvidia", 16, 0.90), "V100-32": ("nvidia", 32, 1.10),
    "RTX4090": ("nvidia", 24, 0.69), "RTXPRO6000": ("nvidia", 96, 1.90),
    "MI300X": ("amd", 192, 2.50),
}


def S(name, gpu, count, cpu, mem, disk=None, arch="x86", flags="", pdata=None, spot=True):
    """An instance shape. gpu: a GPUS key or None (CPU only); spot=False: on-demand only
    (spot also needs the provider to have spot)."""
    return dict(name=name, gpu=gpu, count=count if gpu else 0, cpu=cpu, mem=mem, disk=disk,
                arch=arch, flags=flags, pdata=pdata or {}, spot=spot)


def _aws():
    s = [S("p5.48xlarge", "H100", 8, 192, 2048), S("p5e.48xlarge", "H200", 8, 192, 2048),
         S("p4d.24xlarge", "A100", 8, 96, 1152), S("p4de.24xlarge", "A100-80", 8, 96, 1152),
         S("p3.2xlarge", "V100", 1, 8, 61), S("p3.8xlarge", "V100", 4, 32, 244),
         S("p3.16xlarge", "V100", 8, 64, 488), S("p3dn.24xlarge", "V100-32", 8, 96, 768)]
    for size, cpu, mem, n in (("xlarge", 4, 16, 1), ("2xlarge", 8, 32, 1), ("4xlarge", 16, 64, 1),
                              ("8xlarge", 32, 128, 1), ("12xlarge", 48, 192, 4),
                              ("16xlarge", 64, 256, 1), ("24xlarge", 96, 384, 4),
                              ("48xlarge", 192, 768, 8)):
        s.append(S(f"g5.{size}", "A10G", n, cpu, mem))
        s.append(S(f"g6.{size}", "L4", n, cpu, mem))
    for size, cpu, mem, n in (("xlarge", 4, 16, 1), ("2xlarge", 8, 32, 1), ("4xlarge", 16, 64, 1),
                              ("12xlarge", 48, 192, 4), ("metal", 96, 384, 8)):
        s.append(S(f"g4dn.{size}", "T4", n, cpu, mem))
    s.append(S("g6e.xlarge", "L40S", 1, 4, 32))
    s.append(S("g6e.12xlarge", "L40S", 4, 48, 384))
    for fam, ratio in (("c6i", 2), ("m6i", 4), ("r6i", 8)):
        for size, cpu in (("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16),
                          ("8xlarge", 32)):
            s.append(S(f"{fam}.{size}", None, 0, cpu, cpu * ratio))
    for fam, ratio in (("c7g", 2), ("m7g", 4)):
        for size, cpu in (("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16)):
            s.append(S(f"{fam}.{size}", None, 0, cpu, cpu * ratio, arch="arm"))
    regions = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "eu-west-1",
               "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1",
               "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
               "ap-southeast-1", "ap-southeast-2", "sa-east-1", "me-central-1", "af-south-1"]
    return dict(shapes=s, regions=regions, spot=True, disk=0.0)


def _lambdalabs():
    s = []
    for gpu, key, cpus, mem, disk in (("h100_sxm5", "H100", 26, 225, 2750),
                                      ("h100_pcie", "H100", 26, 225, 1024),
                                      ("a100_sxm4", "A100", 30, 200, 512),
                                      ("a100_80gb_sxm4", "A100-80", 30, 225, 1024),
                                      ("a10", "A10", 30, 200, 1400),
                                      ("a6000", "A6000", 14, 100, 512),
                                      ("v100", "V100", 6, 46, 512)):
        for n in (1, 2, 4, 8):
            s.append(S(f"gpu_{n}x_{gpu}", key, n, cpus * n, mem * n, disk=disk * n))
    s.append(S("gpu_1x_gh200", "GH200", 1, 64, 432, disk=4096, arch="arm", flags="lambda-arm"))
    s.append(S("gpu_8x_b200_sxm6", "B200", 8, 208, 2900, disk=22000))
    regions = ["us-east-1", "us-east-2", "us-east-3", "us-west-1", "us-west-2", "us-west-3",
               "us-south-1", "us-south-2", "us-south-3", "us-midwest-1", "europe-central-1",
               "asia-south-1", "asia-northeast-1", "asia-northeast-2", "me-west-1"]
    return dict(shapes=s, regions=regions, spot=False, disk=0.15)


def _runpod():
    s = []
    for gid, key, cpu, mem in (("NVIDIA H100 80GB HBM3", "H100", 20, 125),
                               ("NVIDIA H100 PCIe", "H100", 16, 188),
                               ("NVIDIA H200", "H200", 24, 250),
                               ("NVIDIA A100 80GB PCIe", "A100-80", 8, 117),
                               ("NVIDIA A100-SXM4-80GB", "A100-80", 16, 125),
                               ("NVIDIA L4", "L4", 12, 50), ("NVIDIA L40S", "L40S", 16, 62),
                               ("NVIDIA RTX A6000", "A6000", 8, 50),
                               ("NVIDIA GeForce RTX 4090", "RTX4090", 6, 41),
                               ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTXPRO6000",
                                16, 188),
                               ("AMD Instinct MI300X OAM", "MI300X", 24, 283)):
        for n in (1, 2, 4, 8):
            # RunPod lists one GPU id per row; the count is in the name here so that every
            # (instance, region) is unique (see the module docstring)
            s.append(S(f"{n}x {gid}", key, n, cpu * n, mem * n))
        s.append(S(f"cluster {gid}", key, 8, cpu * 8, mem * 8, flags="runpod-cluster",
                   pdata={"pod_counts": list(range(2, 9))}, spot=False))
    for flavor, per in (("cpu3c", 2), ("cpu3g", 4), ("cpu5c", 2), ("cpu5g", 4)):
        for vcpu in (2, 4, 8, 16, 32):
            s.append(S(f"{flavor}-{vcpu}-{vcpu * per}", None, 0, vcpu, vcpu * per,
                       flags="runpod-cpu", spot=False))
    regions = ["CA-MTL-1", "CA-MTL-2", "CA-MTL-3", "EU-CZ-1", "EU-FR-1", "EU-NL-1", "EU-RO-1",
               "EU-SE-1", "EUR-IS-1", "EUR-IS-2", "EUR-NO-1", "US-CA-2", "US-GA-1", "US-GA-2",
               "US-IL-1", "US-KS-2", "US-KS-3", "US-NC-1", "US-TX-1", "US-TX-3", "US-TX-4",
               "US-WA-1", "AP-JP-1", "OC-AU-1"]
    return dict(shapes=s, regions=regions, spot=True, disk=0.0)


def _gcp():
    s = [S("a2-highgpu-1g", "A100", 1, 12, 85), S("a2-highgpu-2g", "A100", 2, 24, 170),
         S("a2-highgpu-8g", "A100", 8, 96, 680), S("a2-ultragpu-1g", "A100-80", 1, 12, 170),
         S("a2-ultragpu-2g", "A100-80", 2, 24, 340), S("a2-ultragpu-8g", "A100-80", 8, 96, 1360),
         S("a3-highgpu-8g", "H100", 8, 208, 1872),
         S("a3-highgpu-8g-dws", "H100", 8, 208, 1872, flags="gcp-dws-calendar-mode",
           pdata={"is_dws_calendar_mode": True}, spot=False),
         S("a4-highgpu-8g", "B200", 8, 224, 3968, flags="gcp-a4"),
         S("g4-standard-48", "RTXPRO6000", 1, 48, 180, flags="gcp-g4"),
         S("g2-standard-4", "L4", 1, 4, 16), S("g2-standard-24", "L4", 2, 24, 96),
         S("n1-standard-4", "T4", 1, 4, 15), S("n1-standard-8", "V100", 1, 8, 30),
         S("e2-standard-4", None, 0, 4, 16), S("t2a-standard-4", None, 0, 4, 16, arch="arm")]
    regions = ["us-central1", "us-east1", "us-east4", "us-west1", "us-west4", "europe-west1",
               "europe-west4", "asia-east1", "asia-northeast1", "asia-southeast1"]
    return dict(shapes=s, regions=regions, spot=True, disk=0.0)


def _azure():
    s = [S("Standard_NC24ads_A100_v4", "A100-80", 1, 24, 220),
         S("Standard_NC48ads_A100_v4", "A100-80", 2, 48, 440),
         S("Standard_NC96ads_A100_v4", "A100-80", 4, 96, 880),
         S("Standard_ND96asr_v4", "A100", 8, 96, 900),
         S("Standard_ND96isr_H100_v5", "H100", 8, 96, 1900),
         S("Standard_ND96isr_MI300X_v5", "MI300X", 8, 96, 1850),
         S("Standard_NC4as_T4_v3", "T4", 1, 4, 28), S("Standard_NC64as_T4_v3", "T4", 4, 64, 440),
         S("Standard_NV36ads_A10_v5", "A10", 1, 36, 440), S("Standard_D4s_v5", None, 0, 4, 16),
         S("Standard_D8ps_v5", None, 0, 8, 32, arch="arm")]
    regions = ["eastus", "eastus2", "westus2", "westus3", "southcentralus", "northeurope",
               "westeurope", "uksouth", "japaneast", "australiaeast"]
    return dict(shapes=s, regions=regions, spot=True, disk=0.0)


def _oci():
    s = [S("BM.GPU.A100-v2.8", "A100-80", 8, 128, 2048),
         S("BM.GPU4.8", "A100", 8, 64, 2048), S("BM.GPU.H100.8", "H100", 8, 112, 2048),
         S("BM.GPU.MI300X.8", "MI300X", 8, 112, 2048),
         S("VM.GPU.A10.1", "A10", 1, 15, 240), S("VM.GPU.A10.2", "A10", 2, 30, 480),
         S("VM.GPU3.1", "V100", 1, 6, 90), S("VM.Standard.E4.Flex", None, 0, 4, 64),
         S("VM.Standard.A1.Flex", None, 0, 4, 24, arch="arm")]
    regions = ["us-ashburn-1", "us-phoenix-1", "us-chicago-1", "eu-frankfurt-1",
               "uk-london-1", "ap-tokyo-1"]
    return dict(shapes=s, regions=regions, spot=True, disk=0.0, spot_flag="oci-spot")


def _nebius():
    s = []
    for plat, key, cpu, mem in (("gpu-h100-sxm", "H100", 16, 200),
                                ("gpu-h200-sxm", "H200", 16, 200),
                                ("gpu-l40s-pcie", "L40S", 8, 32)):
        for n in (1, 8):
            s.append(S(f"{plat}-{n}gpu-{cpu * n}vcpu-{mem * n}gb", key, n, cpu * n, mem * n))
    s.append(S("cpu-d3-4vcpu-16gb", None, 0, 4, 16))
    regions = ["eu-north1", "eu-west1", "us-central1", "me-west1"]
    return dict(shapes=s, regions=regions, spot=True, disk=0.0)


def _verda():
    s = [S("1H100.80S.30V", "H100", 1, 30, 120), S("8H100.80S.176V", "H100", 8, 176, 1480),
         S("1A100.80S.22V", "A100-80", 1, 22, 120), S("2A100.80S.44V", "A100-80", 2, 44, 240),
         S("8A100.80S.176V", "A100-80", 8, 176, 960), S("1V100.6V", "V100", 1, 6, 23),
         S("CPU.4V.16G", None, 0, 4, 16)]
    regions = ["FIN-01", "FIN-02", "ICE-01"]
    return dict(shapes=s, regions=regions, spot=True, disk=0.0)


def _cloudrift():
    s = [S("rtx49-7-50-500-nr", "RTX4090", 1, 7, 50, disk=500),
         S("rtx49-14-100-1000-nr", "RTX4090", 2, 14, 100, disk=1000),
         S("rtx59-16-100-1000-nr", "RTX4090", 2, 16, 100, disk=1000),
         S("h100-32-250-2000-nr", "H100", 1, 32, 250, disk=2000)]
    regions = ["us-east-nc-nr-1", "us-central-ks-1"]
    return dict(shapes=s, regions=regions, spot=False, disk=1.0)


PROVIDERS = {"aws": _aws, "lambdalabs": _lambdalabs, "runpod": _runpod, "gcp": _gcp,
             "azure": _azure, "oci": _oci, "nebius": _nebius, "verda": _verda,
             "cloudrift": _cloudrift}
# Share of the offers per provider (normalised over the providers asked for).
WEIGHTS = {"aws": 5, "runpod": 3, "lambdalabs": 2, "gcp": 3, "azure": 3, "oci": 1,
           "nebius": 1, "verda": 1, "cloudrift": 1}
DEFAULT_PROVIDERS = ["aws", "lambdalabs", "runpod"]


def split(n, providers):
    """n offers over the providers by WEIGHTS (largest remainder): {provider: count}."""
    total = sum(WEIGHTS[p] for p in providers)
    exact = {p: n * WEIGHTS[p] / total for p in providers}
    out = {p: int(exact[p]) for p in providers}
    left = n - sum(out.values())
    for p in sorted(providers, key=lambda p: (-(exact[p] - out[p]), providers.index(p)))[:left]:
        out[p] += 1
    return out


def _num(x):
    """A float as gpuhunt writes it (str(float))."""
    return str(float(x))


def rows_for(provider, count, rng, regions=None):
    """count rows (lists of 14 strings) for provider, sorted by price; in these regions
    (default: the provider's usual ones)."""
    prof = PROVIDERS[provider]()
    shapes, regions = prof["shapes"], list(regions or prof["regions"])
    region_factor = {r: round(rng.uniform(0.95, 1.25), 3) for r in regions}
    spots = (False, True) if prof["spot"] else (False,)
    rows = []
    variant = 0
    while len(rows) < count:
        variant += 1
        for sh in shapes:
            for region in regions:
                for spot in spots if sh["spot"] else (False,):
                    if len(rows) >= count:
                        break
                    rows.append(_row(prof, sh, region, spot, variant, region_factor, rng))
    rows.sort(key=lambda r: float(r[2]))
    return rows


def _row(prof, sh, region, spot, variant, region_factor, rng):
    name = sh["name"] if variant == 1 else f"{sh['name']}-v{variant}"
    if sh["gpu"]:
        vendor, gmem, per = GPUS[sh["gpu"]]
        gname = sh["gpu"].split("-")[0]          # "A100-80" -> A100 (80 GB)
        base = per * sh["count"] + 0.01 * sh["cpu"]
    else:
        vendor, gmem, gname = "", None, ""
        base = 0.034 * sh["cpu"] + 0.0045 * sh["mem"]
    price = base * region_factor[region] * rng.uniform(0.9, 1.1) * (1 + 0.02 * (variant - 1))
    if spot:
        price *= rng.uniform(0.25, 0.6)
    flags = sh["flags"]
    if spot and prof.get("spot_flag"):
        flags = (flags + " " + prof["spot_flag"]).strip()
    disk = sh["disk"]
    if disk is None and rng.random() < prof["disk"]:
        disk = rng.choice((100, 200, 512, 1024, 2048)) * max(1, sh["count"])
    return [name, region, str(round(price, 4)), str(sh["cpu"]), _num(sh["mem"]),
            str(sh["count"]), gname, _num(gmem) if gmem else "", str(spot),
            _num(disk) if disk is not None else "", vendor, flags, sh["arch"],
            json.dumps(sh["pdata"])]


def generate(dir, n, providers=None, seed=1, regions=None):  # noqa: A002 - documented name
    """Write dir/<provider>.csv with n offers in all over the providers; {provider: rows}.
    regions: {provider: [region, ...]} puts that provider's offers in those regions only
    (a backend config's `regions:` hides the others)."""
    providers = list(providers or DEFAULT_PROVIDERS)
    for p in providers:
        if p not in PROVIDERS:
            raise ValueError(f"unknown provider {p!r} (known: {', '.join(PROVIDERS)})")
    if len(set(providers)) != len(providers):
        raise ValueError("a provider is listed twice")
    if n < 0:
        raise ValueError("n must not be negative")
    regions = regions or {}
    for p, rl in regions.items():
        if p not in providers:
            raise ValueError(f"regions given for {p!r}, which is not generated")
        if not rl or any(not r or "," in r for r in rl):
            raise ValueError(f"bad regions for {p!r}: {rl!r}")
    os.makedirs(dir, exist_ok=True)
    counts = split(n, providers)
    for i, p in enumerate(providers):
        rng = random.Random(f"{seed}:{p}")
        rows = rows_for(p, counts[p], rng, regions.get(p))
        tmp = os.path.join(dir, f".{p}.csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)           # gpuhunt's DictWriter defaults: CRLF, minimal quoting
            w.writerow(HEADER)
            w.writerows(rows)
        os.replace(tmp, os.path.join(dir, f"{p}.csv"))
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="output directory (created if missing)")
    ap.add_argument("--offers", type=int, default=100000, help="offers in all (default 100000)")
    ap.add_argument("--providers", default=",".join(DEFAULT_PROVIDERS),
                    help=f"comma-separated gpuhunt providers (default "
                         f"{','.join(DEFAULT_PROVIDERS)}; known: {','.join(PROVIDERS)})")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--regions", default="",
                    help="only these regions for some providers, e.g. "
                         "aws=us-east-1+us-west-2,runpod=CA-MTL-3 (default: each provider's "
                         "usual regions)")
    args = ap.parse_args()
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    regions = {}
    for item in filter(None, (x.strip() for x in args.regions.split(","))):
        p, eq, rl = item.partition("=")
        if not eq:
            ap.error(f"--regions: expected PROVIDER=REGION+REGION, not {item!r}")
        regions[p.strip()] = [r.strip() for r in rl.split("+")]
    try:
        counts = generate(args.dir, args.offers, providers, args.seed, regions)
    except ValueError as e:
        ap.error(str(e))
    for p, c in counts.items():
        print(f"{os.path.join(args.dir, p + '.csv')}: {c} offers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
