"""offers/: the offers of the project's configured backends from gpuhunt-format catalogs
(-o catalog=DIR), one file each, query directories, offers.tsv and offers.json."""
import errno
import json
import os

import pytest
import yaml

from fleetlib import LAMBDA, AWS, read_file, write_file

HEADER = ("instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,"
          "disk_size,gpu_vendor,flags,cpu_arch,provider_data\n")
LAMBDA_CSV = HEADER + (
    "gpu_8x_h100_sxm5,us-east-1,23.92,208,1800,8,H100,80,False,,nvidia,,x86,\n"
    "gpu_1x_a100_sxm4,us-west-2,1.29,30,200,1,A100,40,False,512,nvidia,,x86,\n"
    "gpu_2x_a100_80gb,us-west-2,2.58,60,400,2,A100,80,False,,nvidia,,x86,\n"
    "cpu_only,us-west-2,0.10,4,16,0,,,False,,,,x86,\n"
    "broken_row,us-west-2,notaprice,4,16,0,,,False,,,,x86,\n")
AWS_CSV = HEADER + (
    "p4d.24xlarge,us-east-1,32.77,96,1152,8,A100,40,False,,nvidia,,x86,\n"
    "p4d.24xlarge,us-east-1,12.00,96,1152,8,A100,40,True,,nvidia,,x86,\n"
    "g5.xlarge,us-east-1,1.006,4,16,1,A10G,24,False,,nvidia,,x86,\n")


@pytest.fixture
def omnt(fleet_factory, tmp_path):
    cat = tmp_path / "catalog"
    cat.mkdir()
    (cat / "lambdalabs.csv").write_text(LAMBDA_CSV)
    (cat / "aws.csv").write_text(AWS_CSV)
    m = fleet_factory(opts=[f"catalog={cat}"])
    for b, cfg in (("lambda", LAMBDA), ("aws", AWS)):
        os.mkdir(m.p("projects", "main", "backends", b))
        write_file(m.p("projects", "main", "backends", b, "config.yml"), cfg)
    return m


def test_offer_files_cheapest_first(omnt):
    d = omnt.p("projects", "main", "offers")
    names = os.listdir(d)
    assert names[0] == "lambda:us-west-2:cpu_only"
    assert "aws:us-east-1:p4d.24xlarge:spot" in names and "aws:us-east-1:p4d.24xlarge" in names
    assert not any("broken_row" in n for n in names)          # malformed rows skipped
    o = yaml.safe_load(read_file(os.path.join(d, "lambda:us-west-2:gpu_2x_a100_80gb")))
    assert o["backend"] == "lambda" and o["region"] == "us-west-2"
    assert o["price"] == pytest.approx(2.58)
    assert o["gpus"]["name"] == "A100" and o["gpus"]["count"] == 2


def test_query_directories(omnt):
    d = omnt.p("projects", "main", "offers")
    q = os.path.join(d, "gpu=A100:80GB:2")
    got = [n for n in os.listdir(q) if not n.startswith("offers.")]
    assert got == ["lambda:us-west-2:gpu_2x_a100_80gb"]
    # query directories are not listed, and a bad one is ENOENT with the reason in events
    assert "gpu=A100:80GB:2" not in os.listdir(d)
    bad = os.path.join(d, "gpu=A100:lots")
    with pytest.raises(OSError) as e:
        os.listdir(bad)
    assert e.value.errno == errno.ENOENT
    ev = read_file(omnt.p("projects", "main", "events")).decode()
    assert "offers/\"gpu…\" (13 chars): neither an offer nor a query" in ev, ev


def test_tables(omnt):
    tsv = read_file(omnt.p("projects", "main", "offers.tsv")).decode().splitlines()
    assert tsv[0].split("\t")[0]            # a header
    assert len(tsv) == 1 + 7                # 4 lambda rows + 3 aws rows (broken one skipped)
    js = json.loads(read_file(omnt.p("projects", "main", "offers.json")))
    assert len(js) == 7
    prices = [o["price"] for o in js]
    assert prices == sorted(prices)
    q = omnt.p("projects", "main", "offers", "gpu=A100:40GB")
    sub = json.loads(read_file(os.path.join(q, "offers.json")))
    assert {o["instance"] for o in sub} == {"gpu_1x_a100_sxm4", "p4d.24xlarge"}


def test_backend_removed_drops_its_offers(omnt):
    os.unlink(omnt.p("projects", "main", "backends", "aws", "config.yml"))
    names = os.listdir(omnt.p("projects", "main", "offers"))
    assert names and not any(n.startswith("aws:") for n in names)


RUNPOD = b"type: runpod\ncreds:\n  type: api_key\n  api_key: rpSECRETkey1234567890\n"
RUNPOD_CSV = HEADER + (
    "NVIDIA A100 80GB PCIe,CA-MTL-1,1.64,8,117,1,A100,80,False,,nvidia,,x86,\n"
    "NVIDIA A100 80GB PCIe,CA-MTL-1,3.28,16,234,2,A100,80,False,,nvidia,,x86,\n"
    "NVIDIA A100 80GB PCIe,CA-MTL-1,1.70,8,117,1,A100,80,False,,nvidia,runpod-cluster,x86,"
    "\"{\"\"pod_counts\"\": [2, 4]}\"\n"
    "NVIDIA L4,CA-MTL-1,0.43,4,50,1,L4,24,False,,nvidia,,x86,\n")


def test_shared_names_made_unique(fleet_factory, tmp_path):
    """RunPod lists one GPU type in one data center with several GPU counts (and cluster
    rows): each offer still gets its own, stable name."""
    cat = tmp_path / "catalog"
    cat.mkdir()
    (cat / "runpod.csv").write_text(RUNPOD_CSV)
    m = fleet_factory(opts=[f"catalog={cat}"])
    os.mkdir(m.p("projects", "main", "backends", "runpod"))
    write_file(m.p("projects", "main", "backends", "runpod", "config.yml"), RUNPOD)
    d = m.p("projects", "main", "offers")
    names = os.listdir(d)
    assert names == ["runpod:CA-MTL-1:NVIDIA_L4",
                     "runpod:CA-MTL-1:NVIDIA_A100_80GB_PCIe:1x:1",
                     "runpod:CA-MTL-1:NVIDIA_A100_80GB_PCIe:1x:2",
                     "runpod:CA-MTL-1:NVIDIA_A100_80GB_PCIe:2x"], names
    o = yaml.safe_load(read_file(os.path.join(d, "runpod:CA-MTL-1:NVIDIA_A100_80GB_PCIe:2x")))
    assert o["gpus"]["count"] == 2 and o["price"] == pytest.approx(3.28)
    tsv = read_file(m.p("projects", "main", "offers.tsv")).decode().splitlines()[1:]
    assert [r.split("\t")[0] for r in tsv] == names
