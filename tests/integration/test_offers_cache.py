"""The offers cache and catalog downloads: -o catalog=URL against a local fake of gpuhunt's
published catalogs (catalogserver.py), TTL expiry and stale-while-revalidate, coalesced
refreshes, failed refreshes keeping the cached offers (reported in the backend's status and
the project's events), corrupt zips, slow and hung servers, forced refresh (touch offers/),
and the cache surviving a kill -9."""
import os
import subprocess
import time

import pytest
import yaml

from catalogserver import CatalogServer
from fleetlib import AWS, AWS_WEST, LAMBDA, read_file, write_file, wait_until

# TTLs scale with FLEETFS_TIME_SCALE: catalogs stay fresh 15 min x 0.005 = 4.5 s, a failed
# refresh is retried after 60 s x 0.005 = 0.3 s at the earliest.
SCALE = "0.005"
TTL = 15 * 60 * float(SCALE)

HEADER = ("instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,"
          "disk_size,gpu_vendor,flags,cpu_arch,provider_data\n")
LAMBDA_CSV = HEADER + (
    "gpu_8x_h100_sxm5,us-east-1,23.92,208,1800,8,H100,80,False,,nvidia,,x86,\n"
    "gpu_1x_a100_sxm4,us-west-2,1.29,30,200,1,A100,40,False,512,nvidia,,x86,\n"
    "cpu_only,us-west-2,0.10,4,16,0,,,False,,,,x86,\n")
AWS_CSV = HEADER + (
    "p4d.24xlarge,us-east-1,32.77,96,1152,8,A100,40,False,,nvidia,,x86,\n"
    "g5.xlarge,us-east-1,1.006,4,16,1,A10G,24,False,,nvidia,,x86,\n"
    "g5.xlarge,eu-west-1,1.1,4,16,1,A10G,24,False,,nvidia,,x86,\n")
NEW_ROW = "gpu_1x_gh200,us-east-3,1.49,64,432,1,GH200,96,False,4096,nvidia,,x86,\n"


@pytest.fixture
def cs():
    with CatalogServer() as s:
        s.set_catalog("lambdalabs", LAMBDA_CSV)
        s.set_catalog("aws", AWS_CSV)
        yield s


@pytest.fixture
def mk(fleet_factory, cs, monkeypatch):
    """A mount reading the fake catalog; configs are written by the test."""
    monkeypatch.setenv("FLEETFS_TIME_SCALE", SCALE)

    def make(*opts):
        return fleet_factory(opts=[f"catalog={cs.url}", *opts])
    return make


def offers_dir(m):
    return m.p("projects", "main", "offers")


def configure(m, name, cfg):
    os.makedirs(m.p("projects", "main", "backends", name), exist_ok=True)
    write_file(m.p("projects", "main", "backends", name, "config.yml"), cfg)


def status(m, name):
    return yaml.safe_load(read_file(m.p("projects", "main", "backends", name, "status")))


def events(m):
    return read_file(m.p("projects", "main", "events")).decode()


def timed_listdir(path):
    t = time.monotonic()
    names = os.listdir(path)
    return names, time.monotonic() - t


def test_url_catalog(mk, cs):
    m = mk()
    configure(m, "lambda", LAMBDA)
    configure(m, "aws", AWS)
    names = os.listdir(offers_dir(m))
    # the first listing waited for both downloads; aws is cut to its configured us-east-1
    assert names == ["lambda:us-west-2:cpu_only", "aws:us-east-1:g5.xlarge",
                     "lambda:us-west-2:gpu_1x_a100_sxm4", "lambda:us-east-1:gpu_8x_h100_sxm5",
                     "aws:us-east-1:p4d.24xlarge"]
    o = yaml.safe_load(read_file(os.path.join(offers_dir(m), "aws:us-east-1:g5.xlarge")))
    assert o["source"] == "catalog" and o["fetched_at"]
    assert o["disk_mib"] == 100 * 1024  # no disk in the catalog: aws's default
    st = status(m, "lambda")["offers"]
    assert st["state"] == "fresh" and st["count"] == 3 and st["error"] is None
    assert st["version"] == cs.version("lambdalabs")
    assert st["source"] == cs.zip_url("lambdalabs")
    assert cs.count("/lambdalabs/version") == 1 and cs.count("/catalog.zip") == 2
    # within the TTL nothing is fetched again, however often it is listed
    for _ in range(20):
        assert len(os.listdir(offers_dir(m))) == 5
        read_file(m.p("projects", "main", "offers.tsv"))
    assert cs.count("/version") == 2 and cs.count("/catalog.zip") == 2


def test_ttl_expiry_stale_while_revalidate(mk, cs):
    m = mk()
    configure(m, "lambda", LAMBDA)
    assert len(os.listdir(offers_dir(m))) == 3
    # same version after the TTL: only the version is read again, never the zip
    time.sleep(TTL + 1.2)
    os.listdir(offers_dir(m))
    assert cs.wait_for("/lambdalabs/version", 2, timeout=5)
    time.sleep(0.3)
    assert cs.count("/catalog.zip") == 1
    # a new version whose download hangs: listings keep answering at once with the cached
    # offers while the refresh (started in the background once the TTL is over) runs
    cs.set_catalog("lambdalabs", LAMBDA_CSV + NEW_ROW)
    cs.hang(what="zip")
    assert cs.wait_for("/catalog.zip", 2, timeout=TTL + 5)
    for _ in range(10):
        names, took = timed_listdir(offers_dir(m))
        assert len(names) == 3 and took < 0.5, took
    # the server recovers: the refresh's retry gets the zip and the new offers show
    cs.clear_faults()
    cs.release_hung()
    assert wait_until(lambda: len(os.listdir(offers_dir(m))) == 4, timeout=10)
    assert "lambda:us-east-3:gpu_1x_gh200" in os.listdir(offers_dir(m))
    # one refresh at a time per backend: the listings above started no other download
    assert cs.count("/catalog.zip") == 3


def test_failed_refresh_keeps_offers(mk, cs):
    m = mk()
    configure(m, "lambda", LAMBDA)
    assert len(os.listdir(offers_dir(m))) == 3
    cs.fail(500, what="version")
    time.sleep(TTL + 1.2)
    os.listdir(offers_dir(m))
    assert wait_until(lambda: status(m, "lambda")["offers"]["state"] == "stale", timeout=10)
    st = status(m, "lambda")["offers"]
    assert "HTTP 500" in st["error"] and st["count"] == 3 and st["error_at"]
    assert len(os.listdir(offers_dir(m))) == 3  # still served
    assert "refresh failed" in events(m) and "keeping the cached offers" in events(m)
    # the source is back with a new catalog: a forced refresh picks it up at once
    cs.clear_faults()
    cs.set_catalog("lambdalabs", LAMBDA_CSV + NEW_ROW)
    os.utime(offers_dir(m))
    assert len(os.listdir(offers_dir(m))) == 4
    st = status(m, "lambda")["offers"]
    assert st["state"] == "fresh" and st["error"] is None and st["count"] == 4


def test_corrupt_zip_and_bad_version(mk, cs):
    cs.corrupt_zip("aws")
    cs.set_catalog("oci", HEADER)
    cs.fail(500, what="both", provider="oci")
    m = mk()
    configure(m, "lambda", LAMBDA)
    configure(m, "aws", AWS)
    names = os.listdir(offers_dir(m))
    assert len(names) == 3 and not any(n.startswith("aws:") for n in names)
    st = status(m, "aws")["offers"]
    assert st["state"] == "failed" and "not a zip" in st["error"], st
    assert "offers backend=aws refresh failed" in events(m)
    # a truncated zip is refused the same way, never read as a shorter catalog
    cs.clear_faults()
    cs.truncate_zip("aws", times=1)
    os.utime(offers_dir(m))
    assert not any(n.startswith("aws:") for n in os.listdir(offers_dir(m)))
    assert status(m, "aws")["offers"]["state"] == "failed"
    os.utime(offers_dir(m))
    assert sum(n.startswith("aws:") for n in os.listdir(offers_dir(m))) == 2
    assert status(m, "aws")["offers"]["state"] == "fresh"


def test_missing_provider_is_reported(mk, cs):
    cs.remove_catalog("aws")
    m = mk()
    configure(m, "aws", AWS)
    assert os.listdir(offers_dir(m)) == []
    # the listing waited for the fetch; the status is read until it says so, bounded (a
    # check that raced the listing's used to skip the wait, and the status said fetching)
    assert wait_until(lambda: status(m, "aws")["offers"]["state"] != "fetching", timeout=10)
    st = status(m, "aws")["offers"]
    assert st["state"] == "failed" and "404" in st["error"]


def test_first_listing_is_bounded(mk, cs):
    cs.hang(provider="lambdalabs")
    m = mk("offers_wait=1")
    configure(m, "lambda", LAMBDA)
    names, took = timed_listdir(offers_dir(m))
    assert names == [] and 0.9 < took < 3, took
    assert status(m, "lambda")["offers"]["state"] == "fetching"
    # everything else stays quick meanwhile
    t = time.monotonic()
    os.listdir(m.p("projects", "main", "backends"))
    read_file(m.p("projects", "main", "backends", "lambda", "config.yml"))
    assert time.monotonic() - t < 0.5
    cs.clear_faults()
    cs.release_hung()
    assert wait_until(lambda: len(os.listdir(offers_dir(m))) == 3, timeout=20)


def test_slow_first_fetch_is_waited_for(mk, cs):
    cs.slow(1.5, what="zip")
    m = mk()
    configure(m, "lambda", LAMBDA)
    names, took = timed_listdir(offers_dir(m))
    assert len(names) == 3 and took >= 1.4, took


def test_source_down_ls_stays_fast(mk, cs):
    m = mk()
    configure(m, "lambda", LAMBDA)
    configure(m, "aws", AWS)
    assert len(os.listdir(offers_dir(m))) == 5
    cs.hang()
    time.sleep(TTL + 1.2)
    worst = 0
    for _ in range(20):
        names, took = timed_listdir(offers_dir(m))
        assert len(names) == 5
        worst = max(worst, took)
        read_file(m.p("projects", "main", "offers", "gpu=A100", "offers.tsv"))
    assert worst < 0.5, worst
    cs.release_hung()


def test_config_change_refetches(mk, cs):
    m = mk()
    configure(m, "aws", AWS)
    assert sorted(os.listdir(offers_dir(m))) == ["aws:us-east-1:g5.xlarge",
                                                 "aws:us-east-1:p4d.24xlarge"]
    configure(m, "aws", AWS.replace(b"[us-east-1]", b"[eu-west-1]"))
    assert os.listdir(offers_dir(m)) == ["aws:eu-west-1:g5.xlarge"]
    # a named backend of the same type has offers of its own
    configure(m, "aws-all", AWS.replace(b"regions: [us-east-1]\n", b""))
    names = os.listdir(offers_dir(m))
    assert sum(n.startswith("aws-all:") for n in names) == 3
    assert os.listdir(os.path.join(offers_dir(m), "backends=aws-all")) == \
        ["offers.json", "offers.tsv"] + [n for n in names if n.startswith("aws-all:")]
    # removing the backend drops its offers and its cache
    os.unlink(m.p("projects", "main", "backends", "aws-all", "config.yml"))
    assert not any(n.startswith("aws-all:") for n in os.listdir(offers_dir(m)))


def test_cache_survives_kill9(mk, cs):
    m = mk()
    configure(m, "lambda", LAMBDA)
    assert len(os.listdir(offers_dir(m))) == 3
    m.kill9()
    cs.hang()
    m.start()
    names, took = timed_listdir(offers_dir(m))
    assert len(names) == 3 and took < 0.5, took
    cs.release_hung()


def test_unmount_with_a_download_hanging(mk, cs):
    cs.hang()
    m = mk("offers_wait=0")
    configure(m, "lambda", LAMBDA)
    assert os.listdir(offers_dir(m)) == []
    assert cs.wait_for("/lambdalabs/version", 1, timeout=5)
    t = time.monotonic()
    assert m.umount() == 0
    assert time.monotonic() - t < 3
    cs.release_hung()


# ------------------------------------------------------------------ many projects, one source

RUNPOD = (b"type: runpod\ncreds:\n  type: api_key\n  api_key: FAKErunpodKEY\n"
          b"regions: [CA-MTL-3]\n")
RUNPOD_CSV = HEADER + (
    "NVIDIA A40,CA-MTL-3,0.39,9,50,1,A40,48,False,,nvidia,,x86,\n"
    "NVIDIA A40,EU-RO-1,0.35,9,50,1,A40,48,False,,nvidia,,x86,\n")
# lambda, aws, runpod from catalogs (lambda's and aws's APIs unreachable: 127.0.0.1:9), and
# vastai, whose offers fleetfs does not list yet
VASTAI = b"type: vastai\ncreds:\n  type: api_key\n  api_key: FAKEvastaiKEY\n"
BACKENDS = [("lambda", LAMBDA), ("aws", AWS), ("aws-west", AWS_WEST), ("runpod", RUNPOD),
            ("vastai", VASTAI)]


def configure_project(m, project, backends=BACKENDS):
    for name, cfg in backends:
        os.makedirs(m.p("projects", project, "backends", name), exist_ok=True)
        write_file(m.p("projects", project, "backends", name, "config.yml"), cfg)


def pstatus(m, project, name):
    return yaml.safe_load(read_file(m.p("projects", project, "backends", name, "status")))


def test_one_fetch_per_source_for_many_projects(fleet_factory, cs, monkeypatch):
    """A catalog is fetched once however many projects and backends use it (before: once per
    project and backend), and every project gets its offers, more of them than the job
    table's 64 projects and 256 jobs (none starves)."""
    monkeypatch.setenv("FLEETFS_TIME_SCALE", "1")  # a fetched source is shared for 10 s
    cs.set_catalog("runpod", RUNPOD_CSV)
    m = fleet_factory(opts=[f"catalog={cs.url}"])
    n = 70
    projects = [f"p{i:03d}" for i in range(n)]
    for p in projects:
        os.makedirs(m.p("projects", p), exist_ok=True)
        configure_project(m, p)
    # lambda 3, aws (us-east-1) 2, aws-west (us-west-2) 0, runpod (CA-MTL-3) 1; a listing
    # waits at most once per source (lambda's and aws's unreachable APIs are retried at full
    # time scale here), so the test waits for the state it asserts
    for p in projects:
        assert wait_until(lambda: len(os.listdir(m.p("projects", p, "offers"))) == 6,
                          timeout=30), (p, os.listdir(m.p("projects", p, "offers")))
    # one version check and one download per catalog, for 70 x 4 backends
    assert cs.count("/lambdalabs/version") == 1
    assert cs.count("/aws/version") == 1
    assert cs.count("/runpod/version") == 1
    assert cs.count("/catalog.zip") == 3
    st = pstatus(m, projects[-1], "aws-west")["offers"]
    assert st["state"] == "fresh" and st["count"] == 0
    assert pstatus(m, projects[-1], "vastai")["offers"] is None


def test_failed_source_is_not_waited_for(mk, cs):
    """A source whose last attempt failed is not waited for: with the catalog server down (a
    hung version request, then HTTP 500), listing 12 projects waits once (offers_wait=1), not
    once per project (before: 12 s), and each backend's status says why."""
    cs.hang(provider="lambdalabs")
    m = mk("offers_wait=1")
    projects = [f"q{i:02d}" for i in range(12)]
    for p in projects:
        os.makedirs(m.p("projects", p), exist_ok=True)
        configure_project(m, p, [("lambda", LAMBDA)])
    t = time.monotonic()
    for p in projects:
        assert os.listdir(m.p("projects", p, "offers")) == []
    took = time.monotonic() - t
    assert took < 3, took  # one wait of 1 s for the hung source, then none
    # the source fails now (the hung request is let go, its retries get HTTP 500): every
    # backend learns it, and listings stay instant
    cs.clear_faults()
    cs.fail(500, what="version", provider="lambdalabs")
    cs.release_hung()
    assert wait_until(lambda: all(
        pstatus(m, p, "lambda")["offers"]["state"] == "failed" for p in projects), timeout=20)
    assert "HTTP 500" in pstatus(m, projects[0], "lambda")["offers"]["error"]
    # a project configured after the failure: its first listing does not wait at all
    os.makedirs(m.p("projects", "late"), exist_ok=True)
    configure_project(m, "late", [("lambda", LAMBDA)])
    names, took = timed_listdir(m.p("projects", "late", "offers"))
    assert names == [] and took < 0.5, took
    assert wait_until(lambda: pstatus(m, "late", "lambda")["offers"]["state"] == "failed",
                      timeout=10)
    assert "HTTP 500" in pstatus(m, "late", "lambda")["offers"]["error"]


def test_no_catalog_many_projects_ls_lR(fleet_factory):
    """-o catalog=none (the default of these tests) and unreachable provider APIs: 80 projects
    x 5 backends, ls -lR of the mount waits at most once per source (before: every project's
    first listing waited for fetches of its own) and every status says there is no catalog."""
    m = fleet_factory(opts=["offers_wait=2"])
    projects = [f"r{i:02d}" for i in range(80)]
    for p in projects:
        os.makedirs(m.p("projects", p), exist_ok=True)
        configure_project(m, p)
    t = time.monotonic()
    out = subprocess.run(["ls", "-lR", m.mnt], capture_output=True, timeout=60)
    took = time.monotonic() - t
    assert out.returncode == 0, out.stderr
    # three sources (lambda's and aws's APIs, runpod's catalog), waited for in parallel
    assert took < 2 * 2 + 3, took
    assert wait_until(lambda: all(
        pstatus(m, p, "runpod")["offers"]["state"] == "failed" for p in projects), timeout=20)
    assert "catalog=none" in pstatus(m, projects[-1], "aws")["offers"]["error"]


def test_slow_source_is_fetched_once_for_latecomers(fleet_factory, cs, monkeypatch):
    """Lambda's API unreachable (retried at full time scale: seconds) while its catalog is
    fine: the first project's listing waits for that fetch; the projects configured and
    listed right after it get the same outcome at once instead of a slow fetch each (before:
    every listing waited seconds for a refresh of its own)."""
    monkeypatch.setenv("FLEETFS_TIME_SCALE", "1")
    m = fleet_factory(opts=[f"catalog={cs.url}"])
    t0 = time.monotonic()
    took = []
    for i in range(8):
        p = f"s{i}"
        os.makedirs(m.p("projects", p), exist_ok=True)
        configure_project(m, p, [("lambda", LAMBDA)])
        names, dt = timed_listdir(m.p("projects", p, "offers"))
        assert len(names) == 3, (p, names)
        took.append(dt)
    assert sum(took[1:]) < 2, took  # the first one waited; the others did not
    assert time.monotonic() - t0 < max(took[0], 1) + 5, took
    assert cs.count("/lambdalabs/version") == 1 and cs.count("/catalog.zip") == 1
