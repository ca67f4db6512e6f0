"""The AWS fake (tests/fakes/aws_fake.py) against the real AWS SDK: Debian's boto3, pointed at
the fake (endpoint_url=fake.url, verify=fake.ca_path), signs, serialises and parses every call
by botocore's service models. A wrong parameter name is the fake's UnknownParameter, a wrong
element name would be a field boto3 silently drops: every answer the clients get here is also
walked element by element against the operation's output shape (`_strict`), and the fake's
parameter tables are compared with the models (test_param_names_are_botocores).

The SigV4 checks are proven with boto3 too (a wrong secret, an unknown key, a tampered body,
a clock off by ten minutes, session tokens), and with requests signed by botocore's signer
and sent by urllib (no Authorization, GET query form, protocol errors). The tests that launch
instances need root (the VMs are sshd hosts in network namespaces); the others do not."""
import datetime
import gzip
import hashlib
import ipaddress
import os
import ssl
import sys
import time
import types
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import boto3
import botocore.auth
import botocore.config
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
from aws_fake import (CANONICAL, DLAMI, DSTACK, EC2_PARAMS, AwsFake,  # noqa: E402
                      user_data_text)
from vultr_fake import keys_from_user_data  # noqa: E402
import cloudapi  # noqa: E402
from cloudapi import keypair, need_root  # noqa: E402,F401

KEY = ("AKIAFAKEFLEETFS00001", "fAkEsEcReT/0123456789abcdefghijklmnopqrs")
TMP = ("ASIAFAKEFLEETFS00002", "tMpSeCrEt/0123456789abcdefghijklmnopqrst",
       "FwoGZXIvYXdzEFAKESESSIONTOKEN0123456789")
UNKNOWN = ("AKIAFAKEFLEETFS99999", "nOsUcHkEy/0123456789abcdefghijklmnopqrs")
REGION = "us-east-1"
NO_RETRY = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                  connect_timeout=5, read_timeout=30)
DLAMI_PATTERN = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"


pool = cloudapi.host_pool(2, "ubuntu")


@pytest.fixture
def hosts(pool):
    need_root()
    return pool.start()


@pytest.fixture
def fake(pool):
    f = AwsFake(keys=[KEY, TMP], pool=pool, boot_seconds=0.3, terminate_seconds=0.3,
                terminated_linger=1)
    yield from cloudapi.serving(f, pool)


def _local(tag):
    return tag.rpartition("}")[2]


def _walk_xml(elem, shape, where):
    """Every child element of elem is a member of shape (by its serialized name)."""
    if shape.type_name == "structure":
        members = {m.serialization.get("name", n): m for n, m in shape.members.items()}
        for child in elem:
            tag = _local(child.tag)
            assert tag in members, f"<{tag}> is not in {shape.name} ({where})"
            _walk_xml(child, members[tag], f"{where}/{tag}")
    elif shape.type_name == "list":
        item = shape.member.serialization.get("name", "member")
        for child in elem:
            assert _local(child.tag) == item, f"<{_local(child.tag)}> in a list ({where})"
            _walk_xml(child, shape.member, f"{where}/{item}")
    else:
        assert len(elem) == 0, f"a {shape.type_name} with elements ({where})"


def _walk_json(value, shape, where):
    if shape.type_name == "structure":
        assert isinstance(value, dict), where
        for k, v in value.items():
            assert k in shape.members, f"{k} is not in {shape.name} ({where})"
            _walk_json(v, shape.members[k], f"{where}.{k}")
    elif shape.type_name == "list":
        for v in value:
            _walk_json(v, shape.member, where + "[]")


def _strict(client):
    """Check every answer the client gets: each element (key) of a successful answer is in
    the operation's output shape. boto3 itself drops unknown elements without a word."""
    model = client.meta.service_model

    def check(response_dict=None, event_name=None, **kw):
        if not response_dict or response_dict["status_code"] >= 300:
            return
        op = model.operation_model(event_name.rpartition(".")[2])
        out, body = op.output_shape, response_dict["body"]
        if out is None:
            return
        if model.protocol == "json":
            import json
            _walk_json(json.loads(body), out, op.name)
            return
        root = ET.fromstring(body)
        assert _local(root.tag) == op.name + "Response", root.tag
        if model.protocol == "ec2":
            assert _local(root[0].tag) == "requestId"
            for child in root[1:]:
                fake_root = ET.Element("r")
                fake_root.append(child)
                _walk_xml(fake_root, out, op.name)
        else:
            wrapper = op.output_shape.serialization.get("resultWrapper", op.name + "Result")
            assert [_local(c.tag) for c in root] == [wrapper, "ResponseMetadata"]
            _walk_xml(root[0], out, op.name)
    client.meta.events.register("response-received", check)
    return client


def client(fake, service, region=REGION, key=KEY, strict=True):
    c = boto3.client(service, region_name=region, endpoint_url=fake.url, verify=fake.ca_path,
                     aws_access_key_id=key[0], aws_secret_access_key=key[1],
                     aws_session_token=key[2] if len(key) > 2 else None, config=NO_RETRY)
    return _strict(c) if strict else c


def err(call, *args, **kw):
    """The ClientError of call(...): (code, HTTP status, message)."""
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    r = e.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def raw(fake, service, params=None, method="POST", region=REGION, key=KEY, sign=True,
        headers=None, body=None, tamper=None, auth=None):
    """One request signed by botocore's SigV4 signer (not boto3's serialiser) and sent by
    urllib: (status, headers, body text). tamper(body) and auth(Authorization) change what
    is sent after signing."""
    url = fake.url + "/"
    data = None
    if method == "GET":
        url += "?" + urllib.parse.urlencode(params or {})
    else:
        data = body if body is not None else urllib.parse.urlencode(params or {}).encode()
    hdrs = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    hdrs.update(headers or {})
    req = AWSRequest(method=method, url=url, data=data, headers=hdrs)
    if sign:
        SigV4Auth(Credentials(*key), service, region).add_auth(req)
    p = req.prepare()
    sent = p.body if tamper is None else tamper(p.body)
    hdrs = dict(p.headers)
    if auth is not None:
        hdrs["Authorization"] = auth(hdrs["Authorization"])
    ctx = ssl.create_default_context(cafile=fake.ca_path)
    u = urllib.request.Request(p.url, data=sent, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(u, context=ctx, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def ec2_error(text):
    """(Code, Message) of an EC2 error body, checking the envelope."""
    root = ET.fromstring(text)
    assert root.tag == "Response" and [c.tag for c in root] == ["Errors", "RequestID"]
    e = root.find("Errors/Error")
    return e.findtext("Code"), e.findtext("Message")


def query_error(text, ns):
    root = ET.fromstring(text)
    assert root.tag == "{%s}ErrorResponse" % ns
    e = root.find("{%s}Error" % ns)
    assert root.find("{%s}RequestId" % ns).text
    return (e.findtext("{%s}Type" % ns), e.findtext("{%s}Code" % ns),
            e.findtext("{%s}Message" % ns))


def cloud_init(pub):
    """The user data fleetfs gives a VM (backends/backend.c backend_cloud_init)."""
    return f'#cloud-config\nssh_authorized_keys:\n  - "{pub}"\n'


def wait_state(ec2, iid, state, timeout=10.0):
    end = time.monotonic() + timeout
    while True:
        inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        if inst["State"]["Name"] == state:
            return inst
        assert time.monotonic() < end, f"{iid} is {inst['State']} after {timeout}s"
        time.sleep(0.05)


def newest(images):
    return max((i for i in images if i["State"] == "available"),
               key=lambda i: i["CreationDate"])


def dlami(ec2):
    return newest(ec2.describe_images(Owners=[DLAMI], Filters=[
        {"Name": "name", "Values": [DLAMI_PATTERN]}])["Images"])["ImageId"]


# ------------------------------------------------------------------------------ the models

def _model_params(shape):
    if shape.type_name == "structure":
        out = {}
        for name, m in shape.members.items():
            ser = m.serialization
            q = ser.get("queryName") or (ser["name"][0].upper() + ser["name"][1:]
                                         if "name" in ser else name)
            out[q] = _model_params(m)
        return out
    if shape.type_name == "list":
        return [_model_params(shape.member)]
    return {"string": "s", "integer": "i", "long": "i", "boolean": "b",
            "timestamp": "t"}[shape.type_name]


def test_param_names_are_botocores():
    """The fake's EC2 parameter tables are exactly the query names of botocore's model."""
    model = boto3.session.Session().client("ec2", region_name=REGION).meta.service_model
    for action, schema in EC2_PARAMS.items():
        assert schema == _model_params(model.operation_model(action).input_shape), action


# ------------------------------------------------------------------------------ SigV4

def test_caller_identity(fake):
    r = client(fake, "sts").get_caller_identity()
    assert r["Account"] == "123456789012"
    assert r["Arn"] == "arn:aws:iam::123456789012:user/fleetfs-test"
    assert r["UserId"].startswith("AIDA")
    rid = r["ResponseMetadata"]["RequestId"]
    assert rid and r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == rid
    assert fake.calls("GetCallerIdentity") == [{"Action": "GetCallerIdentity",
                                                "Version": "2011-06-15"}]
    assert fake.count_calls(service="sts") == 1
    (req,) = fake.find(route="^sts/GetCallerIdentity$")
    assert req.auth is True and req.status == 200


def test_wrong_secret_is_signature_does_not_match(fake):
    bad = (KEY[0], "wrong" + KEY[1][5:])
    assert err(client(fake, "ec2", key=bad).describe_vpcs)[:2] == ("SignatureDoesNotMatch", 403)
    code, status, msg = err(client(fake, "sts", key=bad).get_caller_identity)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert msg.startswith("The request signature we calculated does not match")
    assert err(client(fake, "service-quotas", key=bad).get_service_quota, ServiceCode="ec2",
               QuotaCode="L-1216C47A")[:2] == ("InvalidSignatureException", 400)
    assert [r.auth for r in fake.requests] == [False, False, False]


def test_unknown_key(fake):
    code, status, msg = err(client(fake, "ec2", key=UNKNOWN).describe_vpcs)
    assert (code, status) == ("AuthFailure", 401)
    assert msg == "AWS was not able to validate the provided access credentials"
    assert err(client(fake, "sts", key=UNKNOWN).get_caller_identity)[:3] == (
        "InvalidClientTokenId", 403, "The security token included in the request is invalid.")
    assert err(client(fake, "iam", key=UNKNOWN).get_instance_profile,
               InstanceProfileName="x")[:2] == ("InvalidClientTokenId", 403)
    assert err(client(fake, "service-quotas", key=UNKNOWN).get_service_quota,
               ServiceCode="ec2", QuotaCode="L-1216C47A")[:2] == (
        "UnrecognizedClientException", 400)
    fake.add_key(*UNKNOWN)
    assert client(fake, "sts", key=UNKNOWN).get_caller_identity()["Account"] == "123456789012"
    fake.remove_key(UNKNOWN[0])
    assert err(client(fake, "ec2", key=UNKNOWN).describe_vpcs)[0] == "AuthFailure"


def test_tampered_body_is_refused(fake):
    ec2 = client(fake, "ec2")

    def tamper(request, **kw):     # after signing: the same length, another VpcId
        request.body = request.body.replace("vpc-1", "vpc-2")
    ec2.meta.events.register("before-send.ec2.DescribeVpcs", tamper)
    assert err(ec2.describe_vpcs, VpcIds=["vpc-1"])[:2] == ("SignatureDoesNotMatch", 403)
    # a signed x-amz-content-sha256 must be the body's
    body = b"Action=DescribeVpcs&Version=2016-11-15"
    sha = hashlib.sha256(body).hexdigest()
    assert raw(fake, "ec2", body=body, headers={"X-Amz-Content-SHA256": sha})[0] == 200
    st, _, text = raw(fake, "ec2", body=body, headers={"X-Amz-Content-SHA256": sha},
                      tamper=lambda b: b.replace(b"Vpcs", b"Vpcz"))
    assert (st, ec2_error(text)[0]) == (403, "SignatureDoesNotMatch")


def test_form_body_is_read_as_the_sdks_write_it(fake):
    """As moto and LocalStack: a form body is signed as botocore writes it (a space '+').
    One encoded otherwise (a space %20, which AWS itself takes) is refused."""
    ec2 = client(fake, "ec2")
    pattern = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
    assert ec2.describe_images(Filters=[{"Name": "name", "Values": [pattern]}])["Images"]
    sent = fake.requests[-1].body
    assert "Filter.1.Value.1=Deep+Learning+Base+OSS" in sent, sent
    body = ("Action=DescribeImages&Version=2016-11-15&Filter.1.Name=name"
            "&Filter.1.Value.1=" + urllib.parse.quote(pattern, safe="")).encode()
    assert b"%20" in body
    st, _, text = raw(fake, "ec2", body=body)
    assert (st, ec2_error(text)[0]) == (403, "SignatureDoesNotMatch"), text
    assert "not as the AWS SDKs write it" in ec2_error(text)[1]
    st, _, text = raw(fake, "ec2", body=body.replace(b"%20", b"+"))
    assert st == 200, text


@pytest.fixture
def skewed(monkeypatch):
    """skewed(seconds): botocore signs with its clock off by that much."""
    def set_skew(seconds):
        class Skewed(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return datetime.datetime.utcnow() + datetime.timedelta(seconds=seconds)
        monkeypatch.setattr(botocore.auth, "datetime",
                            types.SimpleNamespace(datetime=Skewed))
    return set_skew


def test_stale_or_future_date(fake, skewed):
    skewed(-600)
    ec2, sts, sq = (client(fake, s) for s in ("ec2", "sts", "service-quotas"))
    assert err(ec2.describe_vpcs)[:3] == ("RequestExpired", 400, "Request has expired.")
    code, status, msg = err(sts.get_caller_identity)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert msg.startswith("Signature expired: ") and "is now earlier than" in msg
    code, status, msg = err(sq.get_service_quota, ServiceCode="ec2", QuotaCode="L-1216C47A")
    assert (code, status) == ("InvalidSignatureException", 400)
    assert msg.startswith("Signature expired: ")
    skewed(+600)
    assert err(sts.get_caller_identity)[2].startswith("Signature not yet current: ")
    assert err(ec2.describe_vpcs)[0] == "RequestExpired"
    skewed(-200)               # within the 5 minutes
    assert sts.get_caller_identity()["Account"]
    fake.max_skew = 900
    skewed(-600)
    assert sts.get_caller_identity()["Account"]


def test_session_tokens(fake):
    r = client(fake, "sts", key=TMP).get_caller_identity()
    assert ":assumed-role/" in r["Arn"] and r["UserId"].startswith("AROA")
    assert client(fake, "ec2", key=TMP).describe_vpcs()["Vpcs"]
    no_token = TMP[:2]
    assert err(client(fake, "ec2", key=no_token).describe_vpcs)[:2] == ("AuthFailure", 401)
    assert err(client(fake, "sts", key=no_token).get_caller_identity)[:2] == (
        "InvalidClientTokenId", 403)
    wrong = TMP[:2] + ("AnotherToken",)
    assert err(client(fake, "ec2", key=wrong).describe_vpcs)[0] == "AuthFailure"
    # a long-term key with a token is refused too
    assert err(client(fake, "sts", key=KEY + ("AnotherToken",)).get_caller_identity)[0] == \
        "InvalidClientTokenId"
    # the log keeps no credential
    for r in fake.requests:
        text = repr(r)
        assert TMP[1] not in text and TMP[2] not in text and KEY[1] not in text
        assert "Signature=" not in text and "authorization" not in {k.lower() for k in r.headers}


def test_unsigned_requests(fake):
    st, h, text = raw(fake, "ec2", {"Action": "DescribeVpcs", "Version": "2016-11-15"},
                      sign=False)
    assert (st, ec2_error(text)) == (401, ("AuthFailure", "AWS was not able to validate the "
                                                          "provided access credentials"))
    assert h["x-amzn-RequestId"] == ET.fromstring(text).findtext("RequestID")
    st, _, text = raw(fake, "sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"},
                      sign=False)
    assert st == 403
    assert query_error(text, "https://sts.amazonaws.com/doc/2011-06-15/")[:2] == (
        "Sender", "MissingAuthenticationToken")
    st, h, text = raw(fake, "servicequotas", body=b'{"ServiceCode":"ec2","QuotaCode":"L-1"}',
                      sign=False, headers={"Content-Type": "application/x-amz-json-1.1",
                                           "X-Amz-Target": "ServiceQuotasV20190624."
                                                           "GetServiceQuota"})
    assert st == 400 and h["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert '"__type": "MissingAuthenticationTokenException"' in text
    assert [r.auth for r in fake.requests] == [None, None, None]
    assert [r.route for r in fake.requests] == ["ec2/DescribeVpcs", "sts/GetCallerIdentity",
                                                "servicequotas/GetServiceQuota"]


def test_query_form_and_protocol_errors(fake):
    st, _, text = raw(fake, "ec2", {"Action": "DescribeAvailabilityZones",
                                    "Version": "2016-11-15", "ZoneName.1": "us-east-1b"},
                      method="GET")
    assert st == 200
    ns = {"e": "http://ec2.amazonaws.com/doc/2016-11-15/"}
    assert [z.text for z in ET.fromstring(text).findall(
        "e:availabilityZoneInfo/e:item/e:zoneName", ns)] == ["us-east-1b"]
    assert fake.calls("DescribeAvailabilityZones")[-1]["ZoneName.1"] == "us-east-1b"
    st, _, text = raw(fake, "sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"},
                      method="GET")
    assert st == 200 and "<Account>123456789012</Account>" in text

    def ec2(params):
        st, _, text = raw(fake, "ec2", dict({"Version": "2016-11-15"}, **params))
        return (st,) + ec2_error(text)
    assert ec2({"Action": "DescribeVpcz"}) == (
        400, "InvalidAction", "The action DescribeVpcz is not valid for this web service.")
    assert ec2({"Action": "DescribeVpcs", "Version": "2014-01-01"})[:2] == (400, "NoSuchVersion")
    assert ec2({"Action": "DescribeVpcs", "VpcIds.1": "vpc-1"}) == (
        400, "UnknownParameter", "The parameter VpcIds.1 is not recognized")
    assert ec2({"Action": "RunInstances", "ImageId": "ami-12345678", "MinCount": "1",
                "MaxCount": "1", "InstanceType": "t3.micro",
                "NetworkInterfaces.1.SubnetId": "subnet-1"})[:2] == (400, "UnknownParameter")
    assert ec2({"Action": "RunInstances", "InstanceType": "t3.micro", "MinCount": "1",
                "MaxCount": "1"})[1:] == (
        "MissingParameter", "The request must contain the parameter ImageId")
    assert ec2({"Action": "DescribeInstances", "MaxResults": "ten"})[:2] == (
        400, "InvalidParameterValue")
    assert ec2({"Action": "DescribeVpcs", "DryRun": "true"})[:2] == (412, "DryRunOperation")
    st, _, text = raw(fake, "sts", {"Action": "GetCallerIdentity", "Version": "2010-05-08"})
    assert st == 400 and query_error(text, "https://sts.amazonaws.com/doc/2011-06-15/")[1] == \
        "InvalidAction"
    # IAM takes signatures for us-east-1 only, as on AWS
    st, _, text = raw(fake, "iam", {"Action": "GetInstanceProfile", "Version": "2010-05-08",
                                    "InstanceProfileName": "x"}, region="eu-west-1")
    assert st == 403
    t, code, msg = query_error(text, "https://iam.amazonaws.com/doc/2010-05-08/")
    assert code == "SignatureDoesNotMatch" and "eu-west-1" in msg
    # the form needs its content type: without it there is no Action
    assert raw(fake, "ec2", {"Action": "DescribeVpcs", "Version": "2016-11-15"},
               headers={"Content-Type": "text/plain"})[0] == 400
    # host and x-amz-date must be signed; a malformed Authorization is incomplete
    vpcs = {"Action": "DescribeVpcs", "Version": "2016-11-15"}
    st, _, text = raw(fake, "ec2", vpcs, auth=lambda a: a.replace(";host;", ";"))
    assert (st, ec2_error(text)[0]) == (400, "IncompleteSignature")
    assert "'Host'" in ec2_error(text)[1]
    st, _, text = raw(fake, "ec2", vpcs, auth=lambda a: a.replace(";x-amz-date", ""))
    assert (st, ec2_error(text)[0]) == (400, "IncompleteSignature")
    st, _, text = raw(fake, "ec2", vpcs, auth=lambda a: a.split(", Signature=")[0])
    assert (st, ec2_error(text)[0]) == (400, "IncompleteSignature")
    # Service Quotas wants its JSON content type
    st, h, _ = raw(fake, "servicequotas", body=b'{"ServiceCode":"ec2","QuotaCode":"L-1"}',
                   headers={"Content-Type": "application/json",
                            "X-Amz-Target": "ServiceQuotasV20190624.GetServiceQuota"})
    assert (st, h["x-amzn-ErrorType"]) == (400, "SerializationException")
    # the credential scope names the service: one signed for s3 is not EC2's
    st, _, text = raw(fake, "s3", vpcs)
    assert (st, ec2_error(text)[0]) == (403, "SignatureDoesNotMatch")


def test_user_data_forms():
    """The keys of a #cloud-config, also gzipped or in a MIME multipart document."""
    text = cloud_init("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE x@y")
    mime = ("Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n--B\n"
            "Content-Type: text/x-shellscript\n\n#!/bin/sh\ntrue\n--B\n"
            "Content-Type: text/cloud-config\n\n" + text + "--B--\n")
    for raw_data in (text.encode(), gzip.compress(text.encode()), mime.encode()):
        assert keys_from_user_data(user_data_text(raw_data)) == [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE x@y"]
    assert keys_from_user_data(user_data_text(b"#!/bin/sh\necho hi\n")) == []


# ------------------------------------------------------------------------------ faults

def test_throttling_and_server_errors(fake):
    ec2, sts, sq = (client(fake, s) for s in ("ec2", "sts", "service-quotas"))
    fake.fail("^ec2/DescribeVpcs$", 429)
    assert err(ec2.describe_vpcs)[:3] == ("RequestLimitExceeded", 503,
                                         "Request limit exceeded.")
    assert ec2.describe_subnets()["Subnets"]         # only DescribeVpcs was failed
    fake.fail("^sts/", 429)
    assert err(sts.get_caller_identity)[:2] == ("Throttling", 400)
    fake.fail("^servicequotas/", 429)
    assert err(sq.get_service_quota, ServiceCode="ec2", QuotaCode="L-1216C47A")[:2] == (
        "TooManyRequestsException", 400)
    fake.fail("RunInstances", 500)
    assert err(ec2.run_instances, ImageId="ami-12345678", InstanceType="t3.micro",
               MinCount=1, MaxCount=1)[:2] == ("InternalError", 500)
    fake.fail("ec2/", 503)
    assert err(ec2.describe_vpcs)[:2] == ("Unavailable", 503)
    fake.rate_limit(2, route="^ec2/")
    ec2.describe_vpcs()
    ec2.describe_vpcs()
    code, status, _ = err(ec2.describe_vpcs)
    assert (code, status) == ("RequestLimitExceeded", 503)
    fake.rate_limit(None)
    fake.inactive_keys.add(KEY[0])
    assert err(ec2.describe_vpcs)[:2] == ("UnauthorizedOperation", 403)
    assert err(sts.get_caller_identity)[:2] == ("AccessDenied", 403)


def test_deny_and_quotas_and_iam(fake):
    sq = client(fake, "service-quotas")
    sq_west = client(fake, "service-quotas", region="eu-west-1")
    q = sq.get_service_quota(ServiceCode="ec2", QuotaCode="L-1216C47A")["Quota"]
    assert (q["Value"], q["QuotaCode"], q["ServiceCode"], q["Unit"]) == (
        640.0, "L-1216C47A", "ec2", "None")
    assert q["QuotaArn"] == "arn:aws:servicequotas:us-east-1:123456789012:ec2/L-1216C47A"
    assert sq.get_service_quota(ServiceCode="ec2", QuotaCode="L-417A185B")["Quota"]["Value"] \
        == 384.0
    fake.set_quota("us-east-1", "L-DB2E81BA", 8)
    assert sq.get_service_quota(ServiceCode="ec2", QuotaCode="L-DB2E81BA")["Quota"]["Value"] \
        == 8.0
    assert sq_west.get_service_quota(ServiceCode="ec2",
                                     QuotaCode="L-DB2E81BA")["Quota"]["Value"] == 256.0
    fake.set_quota("us-east-1", "L-417A185B", None)
    assert err(sq.get_service_quota, ServiceCode="ec2", QuotaCode="L-417A185B")[:2] == (
        "NoSuchResourceException", 400)
    fake.deny("servicequotas")
    assert err(sq_west.get_service_quota, ServiceCode="ec2", QuotaCode="L-1216C47A")[:2] == (
        "AccessDeniedException", 400)
    fake.allow("servicequotas")
    assert sq_west.get_service_quota(ServiceCode="ec2", QuotaCode="L-1216C47A")
    iam = client(fake, "iam")
    fake.add_instance_profile("fleetfs-nodes")
    p = iam.get_instance_profile(InstanceProfileName="fleetfs-nodes")["InstanceProfile"]
    assert p["Arn"] == "arn:aws:iam::123456789012:instance-profile/fleetfs-nodes"
    assert p["Roles"][0]["RoleName"] == "fleetfs-nodes" and p["Path"] == "/"
    assert isinstance(p["CreateDate"], datetime.datetime)
    assert err(iam.get_instance_profile, InstanceProfileName="nope") == (
        "NoSuchEntity", 404, "Instance Profile nope cannot be found.")
    fake.deny("ec2", "DescribeVpcs")
    code, status, msg = err(client(fake, "ec2").describe_vpcs)
    assert (code, status) == ("UnauthorizedOperation", 403) and "ec2:DescribeVpcs" in msg
    assert client(fake, "ec2").describe_subnets()["Subnets"]


# ------------------------------------------------------------------------------ the network

def test_default_topology(fake):
    ec2 = client(fake, "ec2")
    zones = ec2.describe_availability_zones(Filters=[
        {"Name": "region-name", "Values": [REGION]}])["AvailabilityZones"]
    assert [(z["ZoneName"], z["ZoneId"], z["State"], z["RegionName"], z["ZoneType"])
            for z in zones] == [(f"us-east-1{c}", f"use1-az{i}", "available", REGION,
                                 "availability-zone") for i, c in enumerate("abc", 1)]
    assert ec2.describe_availability_zones(Filters=[
        {"Name": "region-name", "Values": ["eu-west-1"]}])["AvailabilityZones"] == []
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    assert (vpc["CidrBlock"], vpc["IsDefault"], vpc["State"]) == ("172.31.0.0/16", True,
                                                                  "available")
    assert ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"] == [vpc]
    assert err(ec2.describe_vpcs, VpcIds=["vpc-0123456789abcdef0"])[:3] == (
        "InvalidVpcID.NotFound", 400, "The vpc ID 'vpc-0123456789abcdef0' does not exist")
    subs = ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
        {"Name": "availability-zone", "Values": ["us-east-1a", "us-east-1c"]}])["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subs) == ["us-east-1a", "us-east-1c"]
    for s in subs:
        assert (s["VpcId"], s["State"], s["MapPublicIpOnLaunch"], s["DefaultForAz"]) == (
            vpc["VpcId"], "available", True, True)
        assert s["CidrBlock"].startswith("172.31.") and s["AvailabilityZoneId"].startswith("use1")
    assert err(ec2.describe_subnets, SubnetIds=["subnet-0123456789abcdef0"])[0] == \
        "InvalidSubnetID.NotFound"
    # default subnets have no table of their own: the main one routes to the internet gateway
    assert ec2.describe_route_tables(Filters=[
        {"Name": "association.subnet-id", "Values": [subs[0]["SubnetId"]]}])["RouteTables"] == []
    (main,) = ec2.describe_route_tables(Filters=[
        {"Name": "association.main", "Values": ["true"]},
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["RouteTables"]
    assert main["Associations"][0]["Main"] is True
    assert [(r["DestinationCidrBlock"], r["GatewayId"][:4]) for r in main["Routes"]] == [
        ("172.31.0.0/16", "loca"), ("0.0.0.0/0", "igw-")]
    # other regions are made on first use, zones configurable
    fake.set_zones("eu-north-1", ["eu-north-1a", "eu-north-1b"])
    north = client(fake, "ec2", region="eu-north-1")
    assert [z["ZoneName"] for z in north.describe_availability_zones()["AvailabilityZones"]] \
        == ["eu-north-1a", "eu-north-1b"]
    assert len(north.describe_subnets()["Subnets"]) == 2
    assert north.describe_vpcs()["Vpcs"][0]["VpcId"] != vpc["VpcId"]


def test_custom_vpcs_and_route_kinds(fake):
    ec2 = client(fake, "ec2")
    vpc = fake.add_vpc(REGION, name="fleet-vpc", cidr="10.20.0.0/16")
    kinds = {k: fake.add_subnet(REGION, vpc, "us-east-1b", kind=k)
             for k in ("public", "nat", "tgw", "peering", "isolated")}
    shared = fake.add_subnet(REGION, vpc, "us-east-1a", kind="public", own_route_table=False)
    (v,) = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["fleet-vpc"]}])["Vpcs"]
    assert v["VpcId"] == vpc and v["IsDefault"] is False and v["Tags"] == [
        {"Key": "Name", "Value": "fleet-vpc"}]
    assert ec2.describe_vpcs(Filters=[{"Name": "tag-key", "Values": ["Name"]}])["Vpcs"] == [v]
    subs = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    assert len(subs) == 6 and all(s["CidrBlock"].startswith("10.20.") for s in subs)
    egress = {}
    for k, sid in kinds.items():
        (t,) = ec2.describe_route_tables(Filters=[
            {"Name": "association.subnet-id", "Values": [sid]}])["RouteTables"]
        a = t["Associations"][0]
        assert (a["SubnetId"], a["Main"], a["RouteTableId"]) == (sid, False, t["RouteTableId"])
        assert t["Routes"][0] == {"DestinationCidrBlock": "10.20.0.0/16", "GatewayId": "local",
                                  "Origin": "CreateRouteTable", "State": "active"}
        egress[k] = {key: val[:4] for r in t["Routes"][1:] for key, val in r.items()
                     if key.endswith("Id")}
    assert egress == {"public": {"GatewayId": "igw-"}, "nat": {"NatGatewayId": "nat-"},
                      "tgw": {"TransitGatewayId": "tgw-"},
                      "peering": {"VpcPeeringConnectionId": "pcx-"}, "isolated": {}}
    assert ec2.describe_route_tables(Filters=[
        {"Name": "association.subnet-id", "Values": [shared]}])["RouteTables"] == []
    (main,) = ec2.describe_route_tables(Filters=[{"Name": "association.main",
                                                  "Values": ["true"]},
                                                 {"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"]
    assert len(main["Routes"]) == 1                   # a new VPC's main table: local only
    (sg,) = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "SecurityGroups"]
    assert sg["GroupName"] == "default"
    fake.remove_default_vpc(REGION)
    assert ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"] == []
    assert err(ec2.describe_vpcs, Filters=[{"Name": "bogus", "Values": ["x"]}])[:2] == (
        "InvalidParameterValue", 400)


# ------------------------------------------------------------------------------ images

def test_images(fake):
    ec2 = client(fake, "ec2")
    imgs = ec2.describe_images(Owners=[DLAMI], Filters=[
        {"Name": "name", "Values": [DLAMI_PATTERN]}])["Images"]
    assert sorted((i["Name"][-8:], i["State"]) for i in imgs) == [
        ("20240101", "available"), ("20240611", "available"), ("20240701", "pending")]
    best = newest(imgs)
    assert best["Name"].endswith("20240611")
    assert (best["Architecture"], best["OwnerId"], best["ImageType"], best["RootDeviceType"],
            best["RootDeviceName"], best["VirtualizationType"], best["Public"]) == (
        "x86_64", DLAMI, "machine", "ebs", "/dev/sda1", "hvm", True)
    assert best["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 8
    assert best["ImageId"].startswith("ami-") and len(best["ImageId"]) == 21
    arm = ec2.describe_images(Owners=["amazon"], Filters=[
        {"Name": "architecture", "Values": ["arm64"]}])["Images"]
    assert sorted(i["Name"] for i in arm) == [
        "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20240611",
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-20240607"]
    jammy = ec2.describe_images(Owners=[CANONICAL], Filters=[
        {"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"]},
        {"Name": "state", "Values": ["available"]}])["Images"]
    assert newest(jammy)["Name"].endswith("20240607") and len(jammy) == 2
    (ds,) = ec2.describe_images(Owners=[DSTACK], Filters=[
        {"Name": "name", "Values": ["dstack-0.1?"]}])["Images"]
    assert ds["Name"] == "dstack-0.14"
    mine = fake.add_image(REGION, "fleetfs-custom", owner="self", user="admin")
    (m,) = ec2.describe_images(Owners=["self"])["Images"]
    assert (m["ImageId"], m["OwnerId"], m["Public"]) == (mine, "123456789012", False)
    assert ec2.describe_images(ImageIds=[mine])["Images"][0]["Name"] == "fleetfs-custom"
    assert err(ec2.describe_images, ImageIds=["ami-0123456789abcdef0"])[0] == \
        "InvalidAMIID.NotFound"
    assert err(ec2.describe_images, ImageIds=["ami-xyz"])[0] == "InvalidAMIID.Malformed"
    # another region has the same default images under its own ids
    west = client(fake, "ec2", region="us-west-2")
    assert dlami(west) != dlami(ec2) and dlami(ec2) == best["ImageId"]


# ------------------------------------------------------------------------------ security groups

def test_security_groups(fake):
    ec2 = client(fake, "ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0][
        "VpcId"]
    (default,) = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["default"]}, {"Name": "vpc-id", "Values": [vpc]}])[
        "SecurityGroups"]
    assert default["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == default["GroupId"]
    name = "dstack_security_group_main"
    assert ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}])[
        "SecurityGroups"] == []
    r = ec2.create_security_group(GroupName=name, Description="Generated by dstack",
                                  VpcId=vpc, TagSpecifications=[{
                                      "ResourceType": "security-group",
                                      "Tags": [{"Key": "owner", "Value": "dstack"},
                                               {"Key": "dstack_project", "Value": "main"}]}])
    gid = r["GroupId"]
    assert gid.startswith("sg-") and r["Tags"][0] == {"Key": "owner", "Value": "dstack"}
    assert fake.calls("CreateSecurityGroup")[0]["TagSpecification.1.Tag.2.Key"] == \
        "dstack_project"
    assert err(ec2.create_security_group, GroupName=name, Description="again", VpcId=vpc)[
        :2] == ("InvalidGroup.Duplicate", 400)
    assert ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])["Return"] is True
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": gid}]}])
    r = ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": gid}]}])
    assert r["Return"] is True and r["SecurityGroupRules"][0]["IsEgress"] is True
    code, status, msg = err(ec2.authorize_security_group_ingress, GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert (code, status) == ("InvalidPermission.Duplicate", 400) and "already exists" in msg
    assert err(ec2.authorize_security_group_egress, GroupId=gid, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])[0] == \
        "InvalidPermission.Duplicate"             # a new group's default egress rule
    (sg,) = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
    assert (sg["GroupName"], sg["Description"], sg["VpcId"], sg["OwnerId"]) == (
        name, "Generated by dstack", vpc, "123456789012")
    assert {t["Key"]: t["Value"] for t in sg["Tags"]} == {"owner": "dstack",
                                                           "dstack_project": "main"}
    ingress = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p
               for p in sg["IpPermissions"]}
    assert ingress[("tcp", 22, 22)]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    assert ingress[("-1", None, None)]["UserIdGroupPairs"] == [
        {"GroupId": gid, "UserId": "123456789012"}]
    (egress,) = sg["IpPermissionsEgress"]
    assert egress["IpProtocol"] == "-1" and egress["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    assert egress["UserIdGroupPairs"] == [{"GroupId": gid, "UserId": "123456789012"}]
    assert err(ec2.describe_security_groups, GroupIds=["sg-0123456789abcdef0"])[0] == \
        "InvalidGroup.NotFound"
    assert err(ec2.authorize_security_group_ingress, GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])[0] == \
        "InvalidParameterValue"


def test_placement_groups(fake):
    ec2 = client(fake, "ec2")
    g = ec2.create_placement_group(GroupName="fleet-pg", Strategy="cluster", TagSpecifications=[
        {"ResourceType": "placement-group", "Tags": [{"Key": "owner", "Value": "dstack"}]}])[
        "PlacementGroup"]
    assert (g["GroupName"], g["State"], g["Strategy"]) == ("fleet-pg", "available", "cluster")
    assert g["GroupId"].startswith("pg-")
    assert err(ec2.create_placement_group, GroupName="fleet-pg", Strategy="cluster")[:2] == (
        "InvalidPlacementGroup.Duplicate", 400)
    (d,) = ec2.describe_placement_groups(GroupNames=["fleet-pg"])["PlacementGroups"]
    assert d["GroupId"] == g["GroupId"] and d["Tags"] == [{"Key": "owner", "Value": "dstack"}]
    assert ec2.describe_placement_groups(Filters=[{"Name": "tag:owner", "Values": ["dstack"]}])[
        "PlacementGroups"][0]["GroupName"] == "fleet-pg"
    ec2.delete_placement_group(GroupName="fleet-pg")
    assert err(ec2.delete_placement_group, GroupName="fleet-pg")[:3] == (
        "InvalidPlacementGroup.Unknown", 400, "The Placement Group 'fleet-pg' is unknown.")
    assert err(ec2.create_placement_group, GroupName="x", Strategy="tight")[0] == \
        "InvalidParameterValue"


EFA_ONLY = [{"Name": "network-info.efa-supported", "Values": ["true"]}]


def test_instance_types(fake):
    """dstack's question (InstanceType.1 and network-info.efa-supported=true) and the
    network cards."""
    ec2 = client(fake, "ec2")
    (p5,) = ec2.describe_instance_types(InstanceTypes=["p5.48xlarge"],
                                        Filters=EFA_ONLY)["InstanceTypes"]
    assert p5["NetworkInfo"]["EfaInfo"]["MaximumEfaInterfaces"] == 32
    assert p5["VCpuInfo"]["DefaultVCpus"] == 192
    net = p5["NetworkInfo"]
    assert (net["EfaSupported"], net["MaximumNetworkCards"], net["MaximumNetworkInterfaces"],
            net["DefaultNetworkCardIndex"]) == (True, 32, 64, 0)
    assert [(c["NetworkCardIndex"], c["MaximumNetworkInterfaces"])
            for c in net["NetworkCards"]] == [(i, 2) for i in range(32)]
    sent = fake.calls("DescribeInstanceTypes")[0]
    assert (sent["InstanceType.1"], sent["Filter.1.Name"], sent["Filter.1.Value.1"]) == (
        "p5.48xlarge", "network-info.efa-supported", "true")
    (b300,) = ec2.describe_instance_types(InstanceTypes=["p6-b300.48xlarge"],
                                          Filters=EFA_ONLY)["InstanceTypes"]
    assert (b300["NetworkInfo"]["EfaInfo"]["MaximumEfaInterfaces"],
            b300["NetworkInfo"]["MaximumNetworkCards"]) == (16, 17)
    assert ec2.describe_instance_types(InstanceTypes=["t3.micro"],
                                       Filters=EFA_ONLY)["InstanceTypes"] == []
    got = ec2.describe_instance_types(InstanceTypes=["t3.micro", "p4d.24xlarge", "g5.xlarge",
                                                     "g6e.48xlarge"], Filters=EFA_ONLY)
    assert sorted((t["InstanceType"], t["NetworkInfo"]["EfaInfo"]["MaximumEfaInterfaces"],
                   t["NetworkInfo"]["MaximumNetworkCards"]) for t in got["InstanceTypes"]) == [
        ("g6e.48xlarge", 4, 4), ("p4d.24xlarge", 4, 4)]
    (t3,) = ec2.describe_instance_types(InstanceTypes=["t3.micro"])["InstanceTypes"]
    assert (t3["NetworkInfo"]["EfaSupported"], t3["NetworkInfo"]["MaximumNetworkCards"]) == (
        False, 1)
    assert "EfaInfo" not in t3["NetworkInfo"]
    (m6i,) = ec2.describe_instance_types(InstanceTypes=["m6i.large"])["InstanceTypes"]
    assert m6i["NetworkInfo"]["MaximumNetworkCards"] == 1     # EC2's form, not in the table
    assert err(ec2.describe_instance_types, InstanceTypes=["x9.bogus"])[:3] == (
        "InvalidInstanceType", 400, "The following supplied instance types do not exist: "
                                    "[x9.bogus]")
    assert err(ec2.describe_instance_types, InstanceTypes=["x9.bogus"],
               Filters=EFA_ONLY)[0] == "InvalidInstanceType"


# ------------------------------------------------------------------------------ instances

def test_run_instances_refusals(fake):
    """Every refusal happens before a host is taken: no root needed, no VM made."""
    ec2 = client(fake, "ec2")
    ami = dlami(ec2)
    subnets = {s["AvailabilityZone"]: s["SubnetId"]
               for s in ec2.describe_subnets()["Subnets"]}
    base = dict(ImageId=ami, InstanceType="g5.xlarge", MinCount=1, MaxCount=1,
                NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnets["us-east-1a"],
                                    "AssociatePublicIpAddress": True}])

    def run(**kw):
        return err(ec2.run_instances, **dict(base, **kw))
    pending = [i for i in ec2.describe_images(Owners=[DLAMI])["Images"]
               if i["State"] == "pending"][0]["ImageId"]
    other_vpc = fake.add_vpc(REGION, cidr="10.9.0.0/16")
    other_sg = ec2.create_security_group(GroupName="x", Description="x",
                                         VpcId=other_vpc)["GroupId"]
    arm = [i for i in ec2.describe_images(Owners=[DLAMI])["Images"]
           if i["Architecture"] == "arm64"][0]["ImageId"]
    assert run(ImageId="ami-0123456789abcdef0")[:2] == ("InvalidAMIID.NotFound", 400)
    assert run(ImageId=pending)[0] == "InvalidAMIID.Unavailable"
    assert run(ImageId=arm)[0] == "InvalidParameterValue"
    assert run(NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": "subnet-0123456789abcdef0"}])[
        0] == "InvalidSubnetID.NotFound"
    assert run(NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnets["us-east-1a"],
                                   "Groups": [other_sg]}])[0] == "InvalidGroup.NotFound"
    assert run(InstanceType="x9.bogus")[:3] == (
        "InvalidParameterValue", 400, "Invalid value 'x9.bogus' for InstanceType.")
    fake.set_offered("g5.xlarge", "us-east-1a", False)
    code, status, msg = run()
    assert (code, status) == ("Unsupported", 400) and "(us-east-1a)" in msg
    fake.set_offered("g5.xlarge", "us-east-1a", True)
    fake.set_capacity("g5.xlarge", "us-east-1a", 0)
    code, status, msg = run()
    assert (code, status) == ("InsufficientInstanceCapacity", 500)
    assert "sufficient g5.xlarge capacity in the Availability Zone you requested (us-east-1a)" \
        in msg
    fake.set_capacity("g5.xlarge", "us-east-1a", None)
    fake.set_spot_capacity("g5.xlarge", "us-east-1a", 0)
    assert run(InstanceMarketOptions={"MarketType": "spot"})[:2] == (
        "InsufficientInstanceCapacity", 500)
    fake.set_quota(REGION, "L-DB2E81BA", 2)
    code, status, msg = run()
    assert (code, status) == ("VcpuLimitExceeded", 400) and "vCPU limit of 2 allows" in msg
    fake.set_quota(REGION, "L-DB2E81BA", 256)
    assert run(IamInstanceProfile={"Name": "nope"})[2] == (
        "Value (nope) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance "
        "Profile name")
    assert run(Placement={"GroupName": "nope"})[0] == "InvalidPlacementGroup.Unknown"
    assert run(MinCount=2, MaxCount=2)[0] == "InvalidParameterValue"
    assert run(BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 7}}])[
        0] == "InvalidBlockDeviceMapping"
    assert run(ClientToken="t" * 65)[0] == "InvalidParameterValue"
    assert run(NetworkInterfaces=[
        {"DeviceIndex": 0, "SubnetId": subnets["us-east-1a"], "AssociatePublicIpAddress": True},
        {"DeviceIndex": 1, "NetworkCardIndex": 1, "SubnetId": subnets["us-east-1a"]}])[0] == \
        "InvalidParameterCombination"
    assert run(InstanceType="t3.micro", ImageId=ami, NetworkInterfaces=[
        {"DeviceIndex": 0, "SubnetId": subnets["us-east-1a"], "InterfaceType": "efa"}])[0] == \
        "InvalidParameterCombination"
    assert run(DryRun=True)[:2] == ("DryRunOperation", 412)
    fake.remove_default_vpc("eu-west-3")
    west = client(fake, "ec2", region="eu-west-3")
    assert err(west.run_instances, ImageId=dlami(west), InstanceType="g5.xlarge", MinCount=1,
               MaxCount=1)[0] == "VPCIdNotSpecified"
    assert fake.vms() == [] and fake.pool.free == fake.pool.n


def test_run_describe_ssh_terminate(fake, hosts, keypair):
    """One spot instance with everything dstack sends, through its whole life."""
    priv, pub = keypair
    ec2 = client(fake, "ec2")
    ami = dlami(ec2)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0][
        "VpcId"]
    subnet = ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc]},
        {"Name": "availability-zone", "Values": ["us-east-1b"]}])["Subnets"][0]["SubnetId"]
    sg = ec2.create_security_group(GroupName="dstack_security_group_main",
                                   Description="Generated by dstack", VpcId=vpc)["GroupId"]
    ec2.create_placement_group(GroupName="fleet-pg", Strategy="cluster")
    fake.add_instance_profile("fleetfs-nodes")
    args = dict(
        ImageId=ami, InstanceType="g5.xlarge", MinCount=1, MaxCount=1,
        UserData=cloud_init(pub), ClientToken="fleetfs-main-gpu-0-a1b2c3d4",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                              "Ebs": {"VolumeSize": 100, "VolumeType": "gp2",
                                      "DeleteOnTermination": True}}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "Name", "Value": "fleetfs-main-gpu-0"}, {"Key": "owner", "Value": "dstack"}]}],
        IamInstanceProfile={"Name": "fleetfs-nodes"},
        InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}},
        Placement={"GroupName": "fleet-pg"},
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet, "Groups": [sg],
                            "AssociatePublicIpAddress": True, "InterfaceType": "interface",
                            "DeleteOnTermination": True}])
    r = ec2.run_instances(**args)
    (inst,) = r["Instances"]
    iid = inst["InstanceId"]
    assert r["ReservationId"].startswith("r-") and r["OwnerId"] == "123456789012"
    assert inst["State"] == {"Code": 0, "Name": "pending"}
    assert inst["Placement"] == {"AvailabilityZone": "us-east-1b", "GroupName": "fleet-pg",
                                 "Tenancy": "default"}
    assert inst["SpotInstanceRequestId"].startswith("sir-") and inst["InstanceLifecycle"] == \
        "spot"
    assert inst["ClientToken"] == "fleetfs-main-gpu-0-a1b2c3d4"
    assert "PublicIpAddress" not in inst
    sent = fake.calls("RunInstances")[0]
    assert sent["NetworkInterface.1.SubnetId"] == subnet
    assert sent["NetworkInterface.1.SecurityGroupId.1"] == sg
    assert sent["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "one-time"
    x = fake.instance(iid)
    assert (x["region"], x["az"], x["subnet_id"], x["vpc_id"], x["security_group_ids"]) == (
        REGION, "us-east-1b", subnet, vpc, [sg])
    assert (x["spot"], x["placement_group"], x["iam_profile"], x["volume_size"],
            x["volume_type"], x["public"], x["user"]) == (
        True, "fleet-pg", "fleetfs-nodes", 100, "gp2", True, "ubuntu")
    assert x["pubkeys"] == [pub] and x["tags"]["owner"] == "dstack"
    assert hosts.authorized_keys(fake.vm(iid).host) == [pub]

    inst = wait_state(ec2, iid, "running")
    addr = fake.instance(iid)["host_addr"]
    assert inst["State"] == {"Code": 16, "Name": "running"}
    assert inst["PublicIpAddress"] == inst["PrivateIpAddress"] == addr
    assert {t["Key"]: t["Value"] for t in inst["Tags"]} == {"Name": "fleetfs-main-gpu-0",
                                                            "owner": "dstack"}
    assert inst["IamInstanceProfile"]["Arn"].endswith(":instance-profile/fleetfs-nodes")
    (nic,) = inst["NetworkInterfaces"]
    assert nic["Attachment"]["DeviceIndex"] == 0 and nic["NetworkInterfaceId"].startswith("eni-")
    assert nic["Association"]["PublicIp"] == addr and nic["Groups"][0]["GroupId"] == sg
    assert inst["BlockDeviceMappings"][0]["DeviceName"] == "/dev/sda1"
    assert cloudapi.ssh(inst["PublicIpAddress"], priv, "ubuntu").returncode == 0

    # the same token and parameters: the same reservation, no second VM; others: a mismatch
    again = ec2.run_instances(**args)
    assert again["Instances"][0]["InstanceId"] == iid and len(fake.vms()) == 1
    assert err(ec2.run_instances, **dict(args, InstanceType="g5.2xlarge"))[:2] == (
        "IdempotentParameterMismatch", 400)
    by_token = ec2.describe_instances(Filters=[
        {"Name": "client-token", "Values": ["fleetfs-main-gpu-0-a1b2c3d4"]}])["Reservations"]
    assert [i["InstanceId"] for res in by_token for i in res["Instances"]] == [iid]

    (sir,) = ec2.describe_spot_instance_requests(
        SpotInstanceRequestIds=[inst["SpotInstanceRequestId"]])["SpotInstanceRequests"]
    assert (sir["State"], sir["Status"]["Code"], sir["InstanceId"]) == ("active", "fulfilled",
                                                                       iid)
    assert ec2.cancel_spot_instance_requests(
        SpotInstanceRequestIds=[inst["SpotInstanceRequestId"]])["CancelledSpotInstanceRequests"] \
        == [{"SpotInstanceRequestId": inst["SpotInstanceRequestId"], "State": "cancelled"}]
    assert err(ec2.cancel_spot_instance_requests,
               SpotInstanceRequestIds=["sir-12345678"])[0] == \
        "InvalidSpotInstanceRequestID.NotFound"
    assert wait_state(ec2, iid, "running")["State"]["Name"] == "running"
    assert err(ec2.delete_placement_group, GroupName="fleet-pg")[:2] == (
        "InvalidPlacementGroup.InUse", 400)

    (t,) = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"]
    assert (t["CurrentState"], t["PreviousState"]) == ({"Code": 32, "Name": "shutting-down"},
                                                       {"Code": 16, "Name": "running"})
    inst = wait_state(ec2, iid, "terminated")
    assert inst["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
    assert "PublicIpAddress" not in inst and "PrivateIpAddress" not in inst
    assert fake.wait_for(lambda: hosts.free == hosts.n, 10)    # the host is given back
    assert cloudapi.ssh(addr, priv, "ubuntu").returncode == 255
    assert ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0][
        "CurrentState"]["Name"] == "terminated"
    assert ec2.run_instances(**args)["Instances"][0]["InstanceId"] == iid   # still the token's
    ec2.delete_placement_group(GroupName="fleet-pg")
    assert fake.wait_for(lambda: fake.instance(iid) is None, 5)
    assert err(ec2.describe_instances, InstanceIds=[iid])[:3] == (
        "InvalidInstanceID.NotFound", 400, f"The instance ID '{iid}' does not exist")


def test_private_subnet_instance_has_no_public_ip(fake, hosts, keypair):
    priv, pub = keypair
    ec2 = client(fake, "ec2")
    vpc = fake.add_vpc(REGION, name="private", cidr="10.30.0.0/16")
    sub = fake.add_subnet(REGION, vpc, "us-east-1c", kind="nat")
    r = ec2.run_instances(ImageId=dlami(ec2), InstanceType="t3.micro", MinCount=1, MaxCount=1,
                          UserData=cloud_init(pub), NetworkInterfaces=[
                              {"DeviceIndex": 0, "SubnetId": sub,
                               "AssociatePublicIpAddress": True}])
    iid = r["Instances"][0]["InstanceId"]
    inst = wait_state(ec2, iid, "running")
    assert "PublicIpAddress" not in inst and not inst.get("PublicDnsName")
    assert inst["PrivateIpAddress"] == fake.instance(iid)["host_addr"]
    assert (inst["VpcId"], inst["SubnetId"]) == (vpc, sub)
    assert inst["SecurityGroups"][0]["GroupName"] == "default"
    assert cloudapi.ssh(inst["PrivateIpAddress"], priv, "ubuntu").returncode == 0
    ec2.terminate_instances(InstanceIds=[iid])


def test_describe_instances_pages_and_filters(fake):
    ec2 = client(fake, "ec2")
    ids = [fake.create_behind_the_back(f"orphan-{i}", "t3.micro",
                                       "us-east-1a" if i % 2 else "us-east-1b",
                                       tags={"dstack_project": "main" if i < 5 else "other"},
                                       host=False).id for i in range(7)]
    pages = list(ec2.get_paginator("describe_instances").paginate(
        PaginationConfig={"PageSize": 5}))
    assert [sum(len(r["Instances"]) for r in p["Reservations"]) for p in pages] == [5, 2]
    assert [i["InstanceId"] for p in pages for r in p["Reservations"]
            for i in r["Instances"]] == ids
    assert all(c.get("MaxResults") == "5" for c in fake.calls("DescribeInstances"))
    assert "NextToken" in fake.calls("DescribeInstances")[1]

    def found(*filters):
        res = ec2.describe_instances(Filters=[{"Name": n, "Values": v} for n, v in filters])
        return sorted(i["InstanceId"] for r in res["Reservations"] for i in r["Instances"])
    assert found(("tag:dstack_project", ["main"])) == sorted(ids[:5])
    assert found(("tag:Name", ["orphan-6"])) == [ids[6]]
    assert found(("tag:Name", ["orphan-?"]), ("availability-zone", ["us-east-1a"])) == \
        sorted(ids[1::2])
    assert found(("instance-state-name", ["pending", "running"])) == sorted(ids)
    assert found(("tag-key", ["nope"])) == []
    inst = ec2.describe_instances(InstanceIds=[ids[0]])["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] == "running" and "PrivateIpAddress" not in inst  # no host
    assert inst["Placement"]["AvailabilityZone"] == "us-east-1b"
    assert err(ec2.describe_instances, InstanceIds=[ids[0]], MaxResults=5)[0] == \
        "InvalidParameterCombination"
    assert err(ec2.describe_instances, MaxResults=3)[0] == "InvalidParameterValue"
    assert err(ec2.describe_instances, InstanceIds=["i-0123456789abcdef0"])[0] == \
        "InvalidInstanceID.NotFound"
    assert err(ec2.describe_instances, InstanceIds=["instance-1"])[0] == \
        "InvalidInstanceID.Malformed"
    assert client(fake, "ec2", region="us-west-2").describe_instances()["Reservations"] == []


def test_terminate_linger_and_spot_interruption(fake):
    ec2 = client(fake, "ec2")
    spot = fake.create_behind_the_back("spot", "g5.xlarge", REGION, spot=True, host=False).id
    plain = fake.create_behind_the_back("plain", "t3.micro", REGION, host=False).id
    inst = ec2.describe_instances(InstanceIds=[spot])["Reservations"][0]["Instances"][0]
    assert inst["InstanceLifecycle"] == "spot" and inst["SpotInstanceRequestId"].startswith(
        "sir-")
    fake.interrupt_spot(spot)
    inst = ec2.describe_instances(InstanceIds=[spot])["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] == "shutting-down"
    inst = wait_state(ec2, spot, "terminated")
    assert inst["StateReason"] == {"Code": "Server.SpotInstanceTermination",
                                   "Message": "Server.SpotInstanceTermination: Spot instance "
                                              "termination"}
    (sir,) = ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
    assert (sir["State"], sir["Status"]["Code"]) == ("closed", "instance-terminated-no-capacity")
    ec2.terminate_instances(InstanceIds=[plain])
    assert wait_state(ec2, plain, "terminated")["StateReason"]["Code"] == \
        "Client.UserInitiatedShutdown"
    assert err(ec2.terminate_instances, InstanceIds=["i-0123456789abcdef0"])[0] == \
        "InvalidInstanceID.NotFound"
    end = time.monotonic() + 5
    while ec2.describe_instances()["Reservations"]:      # terminated_linger=1
        assert time.monotonic() < end
        time.sleep(0.05)
    assert err(ec2.terminate_instances, InstanceIds=[plain])[0] == "InvalidInstanceID.NotFound"


def test_vcpu_quota_counts_live_on_demand_instances(fake):
    ec2 = client(fake, "ec2")
    fake.set_quota(REGION, "L-417A185B", 192)
    fake.create_behind_the_back("big", "p5.48xlarge", REGION, host=False)    # 192 vCPUs
    fake.create_behind_the_back("spot", "p5.48xlarge", REGION, spot=True, host=False)
    code, _, msg = err(ec2.run_instances, ImageId=dlami(ec2), InstanceType="p4d.24xlarge",
                       MinCount=1, MaxCount=1)
    assert code == "VcpuLimitExceeded" and "vCPU limit of 192 allows" in msg
    assert fake.vms()[0]["extra"]["spot"] is False and len(fake.vms()) == 2


# ------------------------------------------------------------------------------ EFA, Elastic IPs

def dstack_nics(itype, efa_max, subnet, sg, efa_primary=True):
    """dstack's NetworkInterface.N for an EFA type (reference §1.4 step 6c): the primary on
    card 0 (efa, or interface when card 0 has no EFA), then one interface per further card on
    device 1, efa-only (p5.48xlarge: efa on every fourth card); no public address asked."""
    def nic(card, dev, kind):
        return {"DeviceIndex": dev, "NetworkCardIndex": card, "SubnetId": subnet,
                "Groups": [sg], "AssociatePublicIpAddress": False,
                "DeleteOnTermination": True, "InterfaceType": kind}
    nics = [nic(0, 0, "efa" if efa_primary else "interface")]
    nics[0].pop("NetworkCardIndex")                  # dstack leaves the primary's out
    last = efa_max - 1 if efa_primary else efa_max
    for i in range(1, last + 1):
        nics.append(nic(i, 1, "efa" if itype == "p5.48xlarge" and i % 4 == 0 else "efa-only"))
    return nics


def test_run_instances_network_interface_refusals(fake):
    """EC2's rules for several interfaces, EFA and network cards; checked before a host is
    taken (no root needed, no VM made)."""
    ec2 = client(fake, "ec2")
    ami = dlami(ec2)
    subnet = {s["AvailabilityZone"]: s["SubnetId"]
              for s in ec2.describe_subnets()["Subnets"]}["us-east-1a"]
    sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    p5 = dstack_nics("p5.48xlarge", 32, subnet, sg)
    b300 = dstack_nics("p6-b300.48xlarge", 16, subnet, sg, efa_primary=False)

    def nic(card, dev, kind="efa-only"):
        return {"DeviceIndex": dev, "NetworkCardIndex": card, "SubnetId": subnet,
                "InterfaceType": kind}

    def run(itype, nics):
        return err(ec2.run_instances, ImageId=ami, InstanceType=itype, MinCount=1, MaxCount=1,
                   NetworkInterfaces=nics)
    assert run("p5.48xlarge", [dict(p5[0], AssociatePublicIpAddress=True)] + p5[1:]) == (
        "InvalidParameterCombination", 400, "The associatePublicIPAddress parameter cannot be "
        "specified when launching with multiple network interfaces.")
    code, _, msg = run("p5.48xlarge", p5 + [nic(0, 1)])            # 33 EFA interfaces
    assert code == "InvalidParameterCombination" and "at most 32 EFA" in msg
    code, _, msg = run("p5.48xlarge", p5[:-1] + [nic(32, 1)])      # cards 0..31
    assert code == "InvalidParameterValue" and "network card index 32" in msg
    code, _, msg = run("p5.48xlarge", p5[:-1] + [nic(31, 2)])      # 2 interfaces a card
    assert code == "InvalidParameterValue" and "device index 2" in msg
    assert run("p5.48xlarge", p5 + [nic(1, 1, "interface")])[:2] == (
        "InvalidParameterValue", 400)                               # (card 1, device 1) twice
    assert run("p5.48xlarge", [nic(0, 0)])[0] == "InvalidParameterCombination"  # efa-only 0
    assert run("p5.48xlarge", [nic(0, 0, "trunk")])[0] == "InvalidParameterValue"
    assert run("p5.48xlarge", p5[1:])[0] == "InvalidParameterValue"   # no primary
    code, _, msg = run("g5.xlarge", [nic(0, 0, "interface"), nic(0, 1)])
    assert (code, msg) == ("InvalidParameterCombination",
                           "Elastic Fabric Adapter (EFA) is not supported on g5.xlarge.")
    assert run("g5.xlarge", [nic(0, 0, "interface"), nic(1, 0, "interface")])[0] == \
        "InvalidParameterValue"                                     # one network card
    code, _, msg = run("p6-b300.48xlarge", [dict(b300[0], InterfaceType="efa")] + b300[1:])
    assert code == "InvalidParameterCombination" and "Network card 0 of p6-b300" in msg
    assert run("p6-b300.48xlarge", b300 + [nic(0, 1)])[0] == "InvalidParameterCombination"
    # dstack's layouts pass every check: no capacity is the first refusal left
    for itype, nics in (("p5.48xlarge", p5), ("p6-b300.48xlarge", b300),
                        ("p4d.24xlarge", dstack_nics("p4d.24xlarge", 4, subnet, sg)),
                        ("g6e.48xlarge", dstack_nics("g6e.48xlarge", 4, subnet, sg)),
                        ("p5en.48xlarge", dstack_nics("p5en.48xlarge", 16, subnet, sg))):
        fake.set_capacity(itype, "us-east-1a", 0)
        assert run(itype, nics)[:2] == ("InsufficientInstanceCapacity", 500), itype
    sent = fake.calls("RunInstances")[-4]                       # p6-b300.48xlarge
    assert (sent["NetworkInterface.1.InterfaceType"], sent["NetworkInterface.2.InterfaceType"],
            sent["NetworkInterface.17.NetworkCardIndex"],
            sent["NetworkInterface.17.DeviceIndex"]) == ("interface", "efa-only", "16", "1")
    assert fake.vms() == [] and fake.pool.free == fake.pool.n


def test_efa_instance_with_elastic_ip(fake, hosts, keypair):
    """dstack's multi-EFA p5.48xlarge: 32 interfaces, no public address from AWS, then an
    Elastic IP allocated, associated with the primary interface (the instance's address is
    then its host's: ssh works), disassociated and released."""
    priv, pub = keypair
    ec2 = client(fake, "ec2")
    (it,) = ec2.describe_instance_types(InstanceTypes=["p5.48xlarge"],
                                        Filters=EFA_ONLY)["InstanceTypes"]
    efa_max = it["NetworkInfo"]["EfaInfo"]["MaximumEfaInterfaces"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0][
        "VpcId"]
    subnet = ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc]},
        {"Name": "availability-zone", "Values": ["us-east-1a"]}])["Subnets"][0]["SubnetId"]
    sg = ec2.create_security_group(GroupName="dstack_security_group_main",
                                   Description="Generated by dstack", VpcId=vpc)["GroupId"]
    r = ec2.run_instances(ImageId=dlami(ec2), InstanceType="p5.48xlarge", MinCount=1,
                          MaxCount=1, UserData=cloud_init(pub),
                          NetworkInterfaces=dstack_nics("p5.48xlarge", efa_max, subnet, sg))
    (inst,) = r["Instances"]
    iid = inst["InstanceId"]
    sent = fake.calls("RunInstances")[0]
    assert (sent["NetworkInterface.1.InterfaceType"], sent["NetworkInterface.32.InterfaceType"],
            sent["NetworkInterface.32.NetworkCardIndex"], sent["NetworkInterface.32.DeviceIndex"],
            sent["NetworkInterface.5.InterfaceType"],
            sent["NetworkInterface.2.AssociatePublicIpAddress"]) == (
        "efa", "efa-only", "31", "1", "efa", "false")
    layout = sorted((n["Attachment"]["NetworkCardIndex"], n["Attachment"]["DeviceIndex"],
                     n["InterfaceType"]) for n in inst["NetworkInterfaces"])
    assert layout == [(0, 0, "efa")] + [(i, 1, "efa" if i % 4 == 0 else "efa-only")
                                        for i in range(1, 32)]
    enis = [n["NetworkInterfaceId"] for n in inst["NetworkInterfaces"]]
    assert len(set(enis)) == 32 and all(e.startswith("eni-") for e in enis)
    assert all(n["SubnetId"] == subnet and n["Groups"][0]["GroupId"] == sg
               and n["Attachment"]["AttachmentId"].startswith("eni-attach-")
               and n["Attachment"]["Status"] == "attached" for n in inst["NetworkInterfaces"])
    primary = inst["NetworkInterfaces"][0]
    assert (primary["Attachment"]["NetworkCardIndex"], primary["Attachment"]["DeviceIndex"]) \
        == (0, 0)
    x = fake.instance(iid)
    assert [(n["card_index"], n["device_index"], n["type"]) for n in x["nics"]][:2] == [
        (0, 0, "efa"), (1, 1, "efa-only")]
    assert x["nics"][0]["id"] == primary["NetworkInterfaceId"] and x["public"] is False

    inst = wait_state(ec2, iid, "running")
    addr = fake.instance(iid)["host_addr"]
    assert "PublicIpAddress" not in inst and inst["PrivateIpAddress"] == addr
    for n in inst["NetworkInterfaces"]:      # efa-only interfaces have no IP address
        assert n.get("PrivateIpAddress") == (None if n["InterfaceType"] == "efa-only" else addr)
        assert "Association" not in n
    efa_only = next(n["NetworkInterfaceId"] for n in inst["NetworkInterfaces"]
                    if n["InterfaceType"] == "efa-only")

    alloc = ec2.allocate_address(Domain="vpc", TagSpecifications=[{
        "ResourceType": "elastic-ip", "Tags": [{"Key": "owner", "Value": "dstack"},
                                               {"Key": "dstack_instance", "Value": iid}]}])
    aid = alloc["AllocationId"]
    assert aid.startswith("eipalloc-") and alloc["Domain"] == "vpc"
    assert ipaddress.ip_address(alloc["PublicIp"]) in ipaddress.ip_network("192.0.2.0/24")
    assert fake.calls("AllocateAddress")[0]["TagSpecification.1.ResourceType"] == "elastic-ip"
    assert err(ec2.associate_address, AllocationId=aid, InstanceId=iid)[0] == \
        "InvalidInstanceID"                  # several interfaces: name one
    assert err(ec2.associate_address, AllocationId=aid, NetworkInterfaceId=efa_only)[0] == \
        "InvalidParameterValue"
    assoc = ec2.associate_address(AllocationId=aid, NetworkInterfaceId=enis[0],
                                  AllowReassociation=False)["AssociationId"]
    assert assoc.startswith("eipassoc-")
    assert fake.calls("AssociateAddress")[-1]["AllowReassociation"] == "false"
    assert ec2.associate_address(AllocationId=aid, NetworkInterfaceId=enis[0],
                                 AllowReassociation=False)["AssociationId"] == assoc  # again

    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["PublicIpAddress"] == addr and inst["PrivateIpAddress"] == addr
    assert inst["NetworkInterfaces"][0]["Association"] == {
        "PublicIp": addr, "PublicDnsName": "", "IpOwnerId": "123456789012"}
    (a,) = ec2.describe_addresses(Filters=[{"Name": "tag:dstack_instance",
                                            "Values": [iid]}])["Addresses"]
    assert (a["AllocationId"], a["PublicIp"], a["AssociationId"], a["InstanceId"],
            a["NetworkInterfaceId"], a["PrivateIpAddress"], a["Domain"]) == (
        aid, addr, assoc, iid, enis[0], addr, "vpc")
    assert {t["Key"]: t["Value"] for t in a["Tags"]} == {"owner": "dstack",
                                                         "dstack_instance": iid}
    assert ec2.describe_addresses(AllocationIds=[aid])["Addresses"] == [a]
    assert ec2.describe_addresses(PublicIps=[addr])["Addresses"] == [a]
    nic0 = fake.instance(iid)["nics"][0]
    assert (nic0["public_ip"], nic0["allocation_id"], nic0["association_id"]) == (
        addr, aid, assoc)
    assert fake.addresses(REGION)[0]["public_ip"] == addr
    assert cloudapi.ssh(inst["PublicIpAddress"], priv, "ubuntu").returncode == 0

    # a second address for the same interface: refused without reassociation
    other = ec2.allocate_address(Domain="vpc")["AllocationId"]
    code, _, msg = err(ec2.associate_address, AllocationId=other, NetworkInterfaceId=enis[0],
                       AllowReassociation=False)
    assert code == "Resource.AlreadyAssociated" and assoc in msg
    ec2.release_address(AllocationId=other)

    ec2.disassociate_address(AssociationId=assoc)
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert "PublicIpAddress" not in inst and "Association" not in inst["NetworkInterfaces"][0]
    (a,) = ec2.describe_addresses(AllocationIds=[aid])["Addresses"]
    assert a["PublicIp"] == alloc["PublicIp"] and "AssociationId" not in a
    assert err(ec2.disassociate_address, AssociationId=assoc)[:2] == (
        "InvalidAssociationID.NotFound", 400)
    ec2.release_address(AllocationId=aid)
    assert err(ec2.describe_addresses, AllocationIds=[aid])[:3] == (
        "InvalidAllocationID.NotFound", 400, f"The allocation ID '{aid}' does not exist")
    assert fake.addresses(REGION) == []
    ec2.terminate_instances(InstanceIds=[iid])
    assert fake.wait_for(lambda: hosts.free == hosts.n, 10)


def test_elastic_ip_errors_and_limit(fake):
    """AllocateAddress, AssociateAddress, DescribeAddresses, DisassociateAddress and
    ReleaseAddress refusals, the per-region limit, and termination dropping an association;
    on instances without a host (their addresses stay the TEST-NET-1 placeholders)."""
    ec2 = client(fake, "ec2")
    test_net = ipaddress.ip_network("192.0.2.0/24")
    allocs = [ec2.allocate_address(Domain="vpc") for _ in range(5)]
    assert len({a["PublicIp"] for a in allocs}) == 5
    assert all(ipaddress.ip_address(a["PublicIp"]) in test_net for a in allocs)
    assert err(ec2.allocate_address, Domain="vpc") == (
        "AddressLimitExceeded", 400, "The maximum number of addresses has been reached.")
    west = client(fake, "ec2", region="us-west-2")
    wid = west.allocate_address()["AllocationId"]            # per region; vpc by default
    assert west.describe_addresses()["Addresses"][0]["Domain"] == "vpc"
    assert ec2.describe_addresses(AllocationIds=[allocs[0]["AllocationId"]])["Addresses"]
    assert err(ec2.describe_addresses, AllocationIds=[wid])[0] == \
        "InvalidAllocationID.NotFound"
    for a in allocs[3:]:
        ec2.release_address(AllocationId=a["AllocationId"])
    fake.address_limit = 4
    a4 = ec2.allocate_address(Domain="vpc")["AllocationId"]
    assert err(ec2.allocate_address, Domain="vpc")[0] == "AddressLimitExceeded"
    fake.address_limit = 10
    assert err(ec2.allocate_address, Domain="standard")[0] == "InvalidParameterValue"
    assert err(ec2.allocate_address, Domain="vpc", TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b"}]}])[0] == \
        "InvalidParameterValue"
    a1, a2, a3 = (a["AllocationId"] for a in allocs[:3])

    one = fake.create_behind_the_back("one", "t3.micro", "us-east-1a", host=False).id
    two = fake.create_behind_the_back("two", "t3.micro", "us-east-1a", host=False).id
    eni1, eni2 = (fake.instance(i)["nics"][0]["id"] for i in (one, two))
    assert err(ec2.associate_address, AllocationId="eipalloc-0123456789abcdef0",
               NetworkInterfaceId=eni1)[:3] == (
        "InvalidAllocationID.NotFound", 400,
        "The allocation ID 'eipalloc-0123456789abcdef0' does not exist")
    assert err(ec2.associate_address, AllocationId=a1,
               NetworkInterfaceId="eni-0123456789abcdef0")[:3] == (
        "InvalidNetworkInterfaceID.NotFound", 400,
        "The networkInterface ID 'eni-0123456789abcdef0' does not exist")
    assert err(ec2.associate_address, AllocationId=a1, InstanceId="i-0123456789abcdef0")[0] == \
        "InvalidInstanceID.NotFound"
    assert err(ec2.associate_address, AllocationId=a1)[0] == "MissingParameter"
    assoc1 = ec2.associate_address(AllocationId=a1, InstanceId=one)["AssociationId"]  # one ENI
    (inst,) = ec2.describe_instances(InstanceIds=[one])["Reservations"][0]["Instances"]
    placeholder = allocs[0]["PublicIp"]      # no host: the address stays unreachable
    assert inst["PublicIpAddress"] == placeholder and "PrivateIpAddress" not in inst
    code, _, msg = err(ec2.associate_address, AllocationId=a1, NetworkInterfaceId=eni2,
                       AllowReassociation=False)
    assert (code, msg) == ("Resource.AlreadyAssociated",
                           f"resource {a1} is already associated with associate-id {assoc1}")
    assert err(ec2.associate_address, AllocationId=a2, NetworkInterfaceId=eni1,
               AllowReassociation=False)[0] == "Resource.AlreadyAssociated"   # ENI taken
    assoc2 = ec2.associate_address(AllocationId=a2, NetworkInterfaceId=eni2)["AssociationId"]
    # reassociation (the default): a1 moves to two, whose address before (a2) is let go
    moved = ec2.associate_address(AllocationId=a1, NetworkInterfaceId=eni2,
                                  AllowReassociation=True)["AssociationId"]
    assert moved not in (assoc1, assoc2)
    by = {a["AllocationId"]: a for a in ec2.describe_addresses()["Addresses"]}
    assert (by[a1]["InstanceId"], by[a1]["NetworkInterfaceId"], by[a1]["AssociationId"]) == (
        two, eni2, moved)
    assert "AssociationId" not in by[a2] and "InstanceId" not in by[a2]

    def found(name, *values):
        return sorted(a["AllocationId"] for a in ec2.describe_addresses(
            Filters=[{"Name": name, "Values": list(values)}])["Addresses"])
    assert found("instance-id", two) == [a1] and found("instance-id", one) == []
    assert found("association-id", moved) == [a1]
    assert found("network-interface-id", eni2) == [a1]
    assert found("allocation-id", a2, a3) == sorted([a2, a3])
    assert found("domain", "vpc") == sorted(by)
    assert found("public-ip", placeholder) == [a1]
    assert err(ec2.describe_addresses, Filters=[{"Name": "bogus", "Values": ["x"]}])[0] == \
        "InvalidParameterValue"
    assert err(ec2.describe_addresses, PublicIps=["198.51.100.7"])[0] == \
        "InvalidAddress.NotFound"
    assert err(ec2.disassociate_address, AssociationId="eipassoc-0123456789abcdef0")[:3] == (
        "InvalidAssociationID.NotFound", 400,
        "The association ID 'eipassoc-0123456789abcdef0' does not exist")
    assert err(ec2.release_address, AllocationId="eipalloc-0123456789abcdef0")[:2] == (
        "InvalidAllocationID.NotFound", 400)

    # in a VPC of one's own, an associated address is in use; in the default VPC releasing
    # it disassociates it (AWS's rule)
    vpc = fake.add_vpc(REGION, name="fleet", cidr="10.40.0.0/16")
    sub = fake.add_subnet(REGION, vpc, "us-east-1b")
    three = fake.create_behind_the_back("three", "t3.micro", "us-east-1b", subnet_id=sub,
                                        host=False).id
    ec2.associate_address(AllocationId=a3, InstanceId=three)
    code, status, msg = err(ec2.release_address, AllocationId=a3)
    assert (code, status) == ("InvalidIPAddress.InUse", 400) and a3 in msg
    ec2.release_address(AllocationId=a1)
    assert a1 not in {a["id"] for a in fake.addresses(REGION)}
    (inst,) = ec2.describe_instances(InstanceIds=[two])["Reservations"][0]["Instances"]
    assert "PublicIpAddress" not in inst

    # termination: the association goes with the instance, the address stays (a leak
    # unless the client releases it)
    ec2.terminate_instances(InstanceIds=[three])
    wait_state(ec2, three, "terminated")
    (a,) = ec2.describe_addresses(AllocationIds=[a3])["Addresses"]
    assert "AssociationId" not in a and a["PublicIp"] == allocs[2]["PublicIp"]
    snap = {x["id"]: x for x in fake.addresses(REGION)}[a3]
    assert (snap["instance_id"], snap["association_id"], snap["eni"]) == (None, None, None)
    assert err(ec2.associate_address, AllocationId=a3,
               NetworkInterfaceId=fake.vm(three).extra["nics"][0]["id"])[0] == \
        "InvalidNetworkInterfaceID.NotFound"
    ec2.release_address(AllocationId=a3)
    assert sorted(x["id"] for x in fake.addresses(REGION)) == sorted([a2, a4])
    assert [x["id"] for x in fake.addresses("us-west-2")] == [wid]
