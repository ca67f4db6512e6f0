"""A fake of the AWS APIs that fleetfs's AWS backend uses (EC2, STS, IAM, Service Quotas) on
cloudfake.

One HTTPS endpoint (url = https://127.0.0.1:PORT, no path) stands for every service and every
region. On AWS each has its own host name; here a request names them in its SigV4 credential
scope (`Credential=AKID/YYYYMMDD/<region>/<service>/aws4_request`). The wire formats are AWS's,
with the parameter and element names of botocore's service models
(botocore/data/{ec2,sts,iam,service-quotas}/*/service-2.json):

    ec2            POST / (or GET /?...), form `Action=X&Version=2016-11-15&...`; lists are
                   flattened `Name.N` (1-based), structures dotted (`Placement.GroupName`). XML
                   answers in the EC2 namespace, lists as <xxxSet><item>..</item></xxxSet>.
                   Errors: <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/>
    sts, iam       the query protocol (Version 2011-06-15, 2010-05-08): answers wrapped in
                   <XResponse><XResult>..</XResult><ResponseMetadata><RequestId/>..; errors
                   <ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>
    servicequotas  POST / JSON 1.1, `X-Amz-Target: ServiceQuotasV20190624.GetServiceQuota`;
                   errors {"__type": code, "message": text} with x-amzn-ErrorType

Every request is checked like AWS checks it: a SigV4 signature recomputed from what arrived
(method, path, query, the SignedHeaders, the body's SHA-256; a form body as the emulators
moto and LocalStack read it: rebuilt the AWS SDKs' way, see sdk_form, so a body encoded
otherwise, a space as %20, is refused as it is there), the key and its session token,
the clock skew (`max_skew`, 300 s), then the Version, the Action and every parameter name (an
unknown one is 400 UnknownParameter, as on AWS: a misspelt name fails here as it would there).

Implemented: STS GetCallerIdentity; IAM GetInstanceProfile; Service Quotas GetServiceQuota; EC2
DescribeAvailabilityZones, DescribeVpcs, DescribeSubnets, DescribeRouteTables, DescribeImages,
DescribeSecurityGroups, CreateSecurityGroup, AuthorizeSecurityGroupIngress/Egress,
CreatePlacementGroup, DeletePlacementGroup, DescribePlacementGroups, RunInstances,
DescribeInstances, TerminateInstances, DescribeSpotInstanceRequests, CancelSpotInstanceRequests,
DescribeInstanceTypes, AllocateAddress, AssociateAddress, DescribeAddresses,
DisassociateAddress, ReleaseAddress.

EC2 state is per region, made on first use: the zones <region>a/b/c, a default VPC
(172.31.0.0/16, one public default subnet per zone, an internet gateway), the images of
DEFAULT_IMAGES. Instances are VMs on real SSH hosts (login user `ubuntu`, the pool's) that
accept exactly the ssh_authorized_keys of the #cloud-config in UserData. States: pending ->
running -> shutting-down -> terminated (visible for terminated_linger seconds, then
InvalidInstanceID.NotFound). privateIpAddress and ipAddress (public subnets only) are the host's
address, the only address the fake ever hands out. The base's capacity is keyed by
(instance type, availability zone).

RunInstances takes several network interfaces (NetworkInterface.N: EFA, network cards, checked
against INSTANCE_TYPES as EC2 checks them); every interface but an efa-only one has the host's
address as its private address. Elastic IPs (5 per region, `address_limit`) are AWS's but for
their public address: an address not associated shows a placeholder of 192.0.2.0/24
(TEST-NET-1, never routed), an associated one its instance's host address, which is then also
the instance's ipAddress. AllocateAddress therefore answers the placeholder: a client reads
the address after AssociateAddress (DescribeAddresses, DescribeInstances), as it may on AWS.
An instance's associations go when it is terminated; its addresses stay allocated.

    with AwsFake(keys=[("AKIAFAKE", "secret")], hosts=2, boot_seconds=0.3) as f:
        f.url              # https://127.0.0.1:PORT (AWS_ENDPOINT_URL)
        f.ca_path          # FLEETFS_CA_BUNDLE
        f.set_capacity("p5.48xlarge", "us-east-1a", 0)   # RunInstances: 500 InsufficientInstanceCapacity
        f.set_quota("us-east-1", "L-417A185B", 0)         # GetServiceQuota Value 0.0
        f.calls("RunInstances")                          # the parsed parameters of each call
        f.address_limit = 1                              # AllocateAddress: AddressLimitExceeded
        f.addresses("us-east-1")                         # the region's Elastic IPs

Python standard library and python3-yaml (the cloud-init user data) only.
"""
import base64
import binascii
import copy
import datetime
import email
import gzip
import hashlib
import hmac
import ipaddress
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from cloudfake import VM, CloudFake, NoCapacity, Reply  # noqa: E402
from vultr_fake import keys_from_user_data  # noqa: E402

__all__ = ["AwsFake", "AwsKey", "EC2_PARAMS", "INSTANCE_TYPES", "DEFAULT_IMAGES",
           "DEFAULT_QUOTAS", "QUOTA_NAMES", "ACCOUNT", "DEFAULT_KEY", "sigv4_signature",
           "sdk_form"]

ACCOUNT = "123456789012"
DEFAULT_KEY = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
VERSIONS = {"ec2": "2016-11-15", "sts": "2011-06-15", "iam": "2010-05-08"}
NAMESPACES = {"ec2": "http://ec2.amazonaws.com/doc/2016-11-15/",
              "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
              "iam": "https://iam.amazonaws.com/doc/2010-05-08/"}
SERVICES = ("ec2", "sts", "iam", "servicequotas")
SQ_TARGET = "ServiceQuotasV20190624"
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
               "stopping": 64, "stopped": 80}

# Service Quotas (vCPUs) for EC2 on-demand instances, in every region unless set_quota().
QUOTA_NAMES = {
    "L-1216C47A": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    "L-417A185B": "Running On-Demand P instances",
    "L-DB2E81BA": "Running On-Demand G and VT instances",
}
DEFAULT_QUOTAS = {"L-1216C47A": 640.0, "L-417A185B": 384.0, "L-DB2E81BA": 256.0}


def _it(vcpus, memory_gib, efa=0, arch="x86_64", gpus=0, cards=1, card_enis=4,
        efa_primary=True):
    return {"vcpus": vcpus, "memory_mib": int(memory_gib * 1024), "efa": efa, "arch": arch,
            "gpus": gpus, "cards": cards, "card_enis": card_enis, "efa_primary": efa_primary}


# The instance types the fake knows by name (DescribeInstanceTypes, vCPU quotas, the network
# interfaces RunInstances takes). Any other name of EC2's form (family with a digit, a size:
# "m6i.large") is valid too, with 4 vCPUs, one network card and no EFA.
# efa: NetworkInfo.EfaInfo.MaximumEfaInterfaces (0: no EFA); cards: MaximumNetworkCards;
# card_enis: each card's MaximumNetworkInterfaces (device indexes 0..card_enis-1);
# efa_primary: whether network card 0 takes EFA (p6-b300: its primary card is ENA only, its
# 16 EFA interfaces go on cards 1..16).
INSTANCE_TYPES = {
    "t2.small": _it(1, 2, card_enis=3), "t3.micro": _it(2, 1, card_enis=2),
    "t3.small": _it(2, 2, card_enis=3), "t3.medium": _it(2, 4, card_enis=3),
    "c5.large": _it(2, 4, card_enis=3), "m5.large": _it(2, 8, card_enis=3),
    "m5.xlarge": _it(4, 16), "m7i.large": _it(2, 8, card_enis=3),
    "c7i.large": _it(2, 4, card_enis=3), "r7i.large": _it(2, 16, card_enis=3),
    "m7g.large": _it(2, 8, arch="arm64", card_enis=3),
    "g4dn.xlarge": _it(4, 16, gpus=1, card_enis=3),
    "g4dn.12xlarge": _it(48, 192, efa=1, gpus=4, card_enis=8),
    "g5.xlarge": _it(4, 16, gpus=1), "g5.2xlarge": _it(8, 32, gpus=1),
    "g5.12xlarge": _it(48, 192, efa=1, gpus=4, card_enis=15),
    "g5.48xlarge": _it(192, 768, efa=1, gpus=8, card_enis=7),
    "g5g.xlarge": _it(4, 8, arch="arm64", gpus=1), "g6.xlarge": _it(4, 16, gpus=1),
    "g6e.xlarge": _it(4, 32, gpus=1),
    "g6e.48xlarge": _it(192, 1536, efa=4, gpus=8, cards=4, card_enis=2),
    "p3.2xlarge": _it(8, 61, gpus=1),
    "p4d.24xlarge": _it(96, 1152, efa=4, gpus=8, cards=4, card_enis=15),
    "p4de.24xlarge": _it(96, 1152, efa=4, gpus=8, cards=4, card_enis=15),
    "p5.48xlarge": _it(192, 2048, efa=32, gpus=8, cards=32, card_enis=2),
    "p5e.48xlarge": _it(192, 2048, efa=32, gpus=8, cards=32, card_enis=2),
    "p5en.48xlarge": _it(192, 2048, efa=16, gpus=8, cards=16, card_enis=4),
    "p6-b200.48xlarge": _it(192, 2048, efa=8, gpus=8, cards=8, card_enis=2),
    "p6-b300.48xlarge": _it(192, 4096, efa=16, gpus=8, cards=17, card_enis=4,
                            efa_primary=False),
}
_TYPE_RE = re.compile(r"[a-z]+[0-9][a-z0-9-]*\.(nano|micro|small|medium|large|metal|"
                      r"[0-9]*xlarge|metal-[0-9]+xl)")

DLAMI, CANONICAL, DSTACK = "898082745236", "099720109477", "142421590066"
_DLAMI = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) "
_JAMMY = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-"
# (owner, name, architecture, state, creation date): made in every region, ids derived from
# (region, owner, name) so they are the same in every run. The newest DLAMI is still pending:
# a client must pick the newest *available* one.
DEFAULT_IMAGES = [
    (DLAMI, _DLAMI + "20240101", "x86_64", "available", "2024-01-01T08:12:31.000Z"),
    (DLAMI, _DLAMI + "20240611", "x86_64", "available", "2024-06-11T09:30:05.000Z"),
    (DLAMI, _DLAMI + "20240701", "x86_64", "pending", "2024-07-01T10:01:44.000Z"),
    (DLAMI, "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20240611",
     "arm64", "available", "2024-06-11T09:41:19.000Z"),
    (CANONICAL, _JAMMY + "amd64-server-20240301", "x86_64", "available",
     "2024-03-01T04:20:11.000Z"),
    (CANONICAL, _JAMMY + "amd64-server-20240607", "x86_64", "available",
     "2024-06-07T06:45:52.000Z"),
    (CANONICAL, _JAMMY + "arm64-server-20240607", "arm64", "available",
     "2024-06-07T06:46:30.000Z"),
    (DSTACK, "dstack-0.14", "x86_64", "available", "2024-05-20T12:00:00.000Z"),
]
OWNER_ALIASES = {DLAMI: "amazon", CANONICAL: "amazon"}   # Owner.N=amazon finds these

# ---------------------------------------------------------------------------------------------
# EC2 request parameters: the query names of botocore's model (queryName, else the member's
# locationName capitalised, else its name). "s" string, "i" integer, "b" boolean, "t" timestamp,
# [x] a flattened list (Name.N), {..} a structure (Name.Member). test_aws_fake.py checks these
# against the model.

_S, _I, _B, _T = "s", "i", "b", "t"
_FILTER = [{"Name": _S, "Value": [_S]}]
_TAGSPEC = [{"ResourceType": _S, "Tag": [{"Key": _S, "Value": _S}]}]
_PERMS = [{"FromPort": _I, "IpProtocol": _S, "IpRanges": [{"CidrIp": _S, "Description": _S}],
           "Ipv6Ranges": [{"CidrIpv6": _S, "Description": _S}],
           "PrefixListIds": [{"Description": _S, "PrefixListId": _S}], "ToPort": _I,
           "Groups": [{"Description": _S, "GroupId": _S, "GroupName": _S, "PeeringStatus": _S,
                       "UserId": _S, "VpcId": _S, "VpcPeeringConnectionId": _S}]}]
_PAGE = {"NextToken": _S, "MaxResults": _I}
_NIC = {"AssociatePublicIpAddress": _B, "DeleteOnTermination": _B, "Description": _S,
        "DeviceIndex": _I, "SecurityGroupId": [_S], "Ipv6AddressCount": _I,
        "Ipv6Addresses": [{"Ipv6Address": _S}], "NetworkInterfaceId": _S,
        "PrivateIpAddress": _S, "PrivateIpAddresses": [{"Primary": _B, "PrivateIpAddress": _S}],
        "SecondaryPrivateIpAddressCount": _I, "SubnetId": _S, "AssociateCarrierIpAddress": _B,
        "InterfaceType": _S, "NetworkCardIndex": _I, "Ipv4Prefix": [{"Ipv4Prefix": _S}],
        "Ipv4PrefixCount": _I, "Ipv6Prefix": [{"Ipv6Prefix": _S}], "Ipv6PrefixCount": _I}

EC2_PARAMS = {
    "DescribeAvailabilityZones": {"Filter": _FILTER, "ZoneName": [_S], "ZoneId": [_S],
                                  "AllAvailabilityZones": _B},
    "DescribeVpcs": {"Filter": _FILTER, "VpcId": [_S], **_PAGE},
    "DescribeSubnets": {"Filter": _FILTER, "SubnetId": [_S], **_PAGE},
    "DescribeRouteTables": {"Filter": _FILTER, "RouteTableId": [_S], **_PAGE},
    "DescribeImages": {"ExecutableBy": [_S], "Filter": _FILTER, "ImageId": [_S],
                       "Owner": [_S], "IncludeDeprecated": _B},
    "DescribeSecurityGroups": {"Filter": _FILTER, "GroupId": [_S], "GroupName": [_S],
                               **_PAGE},
    "CreateSecurityGroup": {"GroupDescription": _S, "GroupName": _S, "VpcId": _S,
                            "TagSpecification": _TAGSPEC},
    "AuthorizeSecurityGroupIngress": {
        "CidrIp": _S, "FromPort": _I, "GroupId": _S, "GroupName": _S, "IpPermissions": _PERMS,
        "IpProtocol": _S, "SourceSecurityGroupName": _S, "SourceSecurityGroupOwnerId": _S,
        "ToPort": _I, "TagSpecification": _TAGSPEC},
    "AuthorizeSecurityGroupEgress": {
        "GroupId": _S, "IpPermissions": _PERMS, "TagSpecification": _TAGSPEC, "CidrIp": _S,
        "FromPort": _I, "IpProtocol": _S, "ToPort": _I, "SourceSecurityGroupName": _S,
        "SourceSecurityGroupOwnerId": _S},
    "CreatePlacementGroup": {"GroupName": _S, "Strategy": _S, "PartitionCount": _I,
                             "TagSpecification": _TAGSPEC, "SpreadLevel": _S},
    "DeletePlacementGroup": {"GroupName": _S},
    "DescribePlacementGroups": {"Filter": _FILTER, "GroupName": [_S], "GroupId": [_S]},
    "RunInstances": {
        "BlockDeviceMapping": [{"DeviceName": _S, "VirtualName": _S, "NoDevice": _S,
                                "Ebs": {"DeleteOnTermination": _B, "Iops": _I,
                                        "SnapshotId": _S, "VolumeSize": _I, "VolumeType": _S,
                                        "KmsKeyId": _S, "Throughput": _I, "OutpostArn": _S,
                                        "Encrypted": _B}}],
        "ImageId": _S, "InstanceType": _S, "Ipv6AddressCount": _I,
        "Ipv6Address": [{"Ipv6Address": _S}], "KernelId": _S, "KeyName": _S, "MaxCount": _I,
        "MinCount": _I, "Monitoring": {"Enabled": _B},
        "Placement": {"AvailabilityZone": _S, "Affinity": _S, "GroupName": _S,
                      "PartitionNumber": _I, "HostId": _S, "Tenancy": _S, "SpreadDomain": _S,
                      "HostResourceGroupArn": _S, "GroupId": _S},
        "RamdiskId": _S, "SecurityGroupId": [_S], "SecurityGroup": [_S], "SubnetId": _S,
        "UserData": _S, "AdditionalInfo": _S, "ClientToken": _S, "DisableApiTermination": _B,
        "EbsOptimized": _B, "IamInstanceProfile": {"Arn": _S, "Name": _S},
        "InstanceInitiatedShutdownBehavior": _S, "NetworkInterface": [_NIC],
        "PrivateIpAddress": _S, "ElasticGpuSpecification": [{"Type": _S}],
        "ElasticInferenceAccelerator": [{"Type": _S, "Count": _I}],
        "TagSpecification": _TAGSPEC,
        "LaunchTemplate": {"LaunchTemplateId": _S, "LaunchTemplateName": _S, "Version": _S},
        "InstanceMarketOptions": {
            "MarketType": _S,
            "SpotOptions": {"MaxPrice": _S, "SpotInstanceType": _S, "BlockDurationMinutes": _I,
                            "ValidUntil": _T, "InstanceInterruptionBehavior": _S}},
        "CreditSpecification": {"CpuCredits": _S},
        "CpuOptions": {"CoreCount": _I, "ThreadsPerCore": _I},
        "CapacityReservationSpecification": {
            "CapacityReservationPreference": _S,
            "CapacityReservationTarget": {"CapacityReservationId": _S,
                                          "CapacityReservationResourceGroupArn": _S}},
        "HibernationOptions": {"Configured": _B},
        "LicenseSpecification": [{"LicenseConfigurationArn": _S}],
        "MetadataOptions": {"HttpTokens": _S, "HttpPutResponseHopLimit": _I,
                            "HttpEndpoint": _S, "HttpProtocolIpv6": _S,
                            "InstanceMetadataTags": _S},
        "EnclaveOptions": {"Enabled": _B},
        "PrivateDnsNameOptions": {"HostnameType": _S, "EnableResourceNameDnsARecord": _B,
                                  "EnableResourceNameDnsAAAARecord": _B},
        "MaintenanceOptions": {"AutoRecovery": _S}, "DisableApiStop": _B},
    "DescribeInstances": {"Filter": _FILTER, "InstanceId": [_S], **_PAGE},
    "TerminateInstances": {"InstanceId": [_S]},
    "CancelSpotInstanceRequests": {"SpotInstanceRequestId": [_S]},
    "DescribeSpotInstanceRequests": {"Filter": _FILTER, "SpotInstanceRequestId": [_S],
                                     **_PAGE},
    "DescribeInstanceTypes": {"InstanceType": [_S], "Filter": _FILTER, **_PAGE},
    "AllocateAddress": {"Domain": _S, "Address": _S, "PublicIpv4Pool": _S,
                        "NetworkBorderGroup": _S, "CustomerOwnedIpv4Pool": _S,
                        "TagSpecification": _TAGSPEC},
    "AssociateAddress": {"AllocationId": _S, "InstanceId": _S, "PublicIp": _S,
                         "NetworkInterfaceId": _S, "PrivateIpAddress": _S,
                         "AllowReassociation": _B},
    "DescribeAddresses": {"PublicIp": [_S], "Filter": _FILTER, "AllocationId": [_S]},
    "DisassociateAddress": {"AssociationId": _S, "PublicIp": _S},
    "ReleaseAddress": {"AllocationId": _S, "PublicIp": _S, "NetworkBorderGroup": _S},
}
for _p in EC2_PARAMS.values():
    _p["DryRun"] = _B

# ---------------------------------------------------------------------------------------------
# Error words. A base kind (error_reply's) -> per protocol: (status or None to keep the one
# asked for, code, message).

_KINDS = {
    "ec2": {
        "unauthorized": (401, "AuthFailure",
                         "AWS was not able to validate the provided access credentials"),
        "forbidden": (403, "UnauthorizedOperation",
                      "You are not authorized to perform this operation."),
        "not_found": (None, "InvalidAction", "The requested path was not found."),
        "method_not_allowed": (None, "InvalidHttpRequest", "The HTTP method is not allowed."),
        "rate_limited": (503, "RequestLimitExceeded", "Request limit exceeded."),
        "bad_request": (None, "InvalidRequest", "The request received was invalid."),
        "too_large": (None, "RequestEntityTooLarge", "The request is too large."),
        "internal": (None, "InternalError", "An internal error has occurred"),
        "unavailable": (None, "Unavailable", "The server is overloaded and can't handle the "
                                             "request."),
    },
    "query": {
        "unauthorized": (403, "InvalidClientTokenId",
                         "The security token included in the request is invalid."),
        "forbidden": (403, "AccessDenied", "User is not authorized to perform this action."),
        "not_found": (None, "InvalidAction", "The requested path was not found."),
        "method_not_allowed": (None, "InvalidHttpRequest", "The HTTP method is not allowed."),
        "rate_limited": (400, "Throttling", "Rate exceeded"),
        "bad_request": (None, "InvalidRequest", "The request received was invalid."),
        "too_large": (None, "RequestEntityTooLarge", "The request is too large."),
        "internal": (None, "InternalFailure", "The request processing has failed because of "
                                              "an unknown error, exception or failure."),
        "unavailable": (None, "ServiceUnavailable", "Service is unable to handle request."),
    },
    "json": {
        "unauthorized": (400, "UnrecognizedClientException",
                         "The security token included in the request is invalid."),
        "forbidden": (400, "AccessDeniedException",
                      "You don't have sufficient permission to perform this action."),
        "not_found": (None, "UnknownOperationException", "The requested path was not found."),
        "method_not_allowed": (None, "UnknownOperationException",
                               "The HTTP method is not allowed."),
        "rate_limited": (400, "TooManyRequestsException", "Rate exceeded"),
        "bad_request": (None, "SerializationException", "The request received was invalid."),
        "too_large": (None, "RequestEntityTooLargeException", "The request is too large."),
        "internal": (None, "ServiceException", "Internal server error"),
        "unavailable": (None, "ServiceUnavailableException", "Service Unavailable"),
    },
}

_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
             "Check your AWS Secret Access Key and signing method. Consult the service "
             "documentation for details.")
_BAD_TOKEN = "The security token included in the request is invalid."
# SigV4 failures: what -> per protocol (status, code, default message)
_AUTH_ERRORS = {
    "ec2": {
        "missing": (401, "AuthFailure", _KINDS["ec2"]["unauthorized"][2]),
        "unknown": (401, "AuthFailure", _KINDS["ec2"]["unauthorized"][2]),
        "token": (401, "AuthFailure", _KINDS["ec2"]["unauthorized"][2]),
        "incomplete": (400, "IncompleteSignature", "The request signature does not conform to "
                                                   "AWS standards."),
        "signature": (403, "SignatureDoesNotMatch", _MISMATCH),
        "expired": (400, "RequestExpired", "Request has expired."),
    },
    "query": {
        "missing": (403, "MissingAuthenticationToken", "Request is missing Authentication "
                                                       "Token"),
        "unknown": (403, "InvalidClientTokenId", _BAD_TOKEN),
        "token": (403, "InvalidClientTokenId", _BAD_TOKEN),
        "incomplete": (400, "IncompleteSignature", "The request signature does not conform to "
                                                   "AWS standards."),
        "signature": (403, "SignatureDoesNotMatch", _MISMATCH),
        "expired": (403, "SignatureDoesNotMatch", None),
    },
    "json": {
        "missing": (400, "MissingAuthenticationTokenException", "Missing Authentication Token"),
        "unknown": (400, "UnrecognizedClientException", _BAD_TOKEN),
        "token": (400, "UnrecognizedClientException", _BAD_TOKEN),
        "incomplete": (400, "IncompleteSignatureException", "The request signature does not "
                                                            "conform to AWS standards."),
        "signature": (400, "InvalidSignatureException", _MISMATCH),
        "expired": (400, "InvalidSignatureException", None),
    },
}


def _protocol(service):
    return {"ec2": "ec2", "servicequotas": "json"}.get(service, "query")


# ---------------------------------------------------------------------------------------------
# small helpers

def _hex(n):
    return os.urandom((n + 1) // 2).hex()[:n]


def _rid(prefix):
    """An EC2 resource id: prefix-<17 hex digits>."""
    return f"{prefix}-{_hex(17)}"


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z")


def _amz(t):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def _xml(name, value, item="item"):
    """value as XML: a dict's keys are elements (None values left out), a list's members
    are <item> (EC2) or <member> (STS, IAM), booleans true/false."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return f"<{name}>" + "".join(_xml(k, v, item) for k, v in value.items()) + f"</{name}>"
    if isinstance(value, (list, tuple)):
        return f"<{name}>" + "".join(_xml(item, v, item) for v in value) + f"</{name}>"
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def _tag_set(tags):
    return [{"key": k, "value": v} for k, v in (tags or {}).items()]


def _glob(pattern, value):
    """EC2 filter matching: * and ? are wildcards, a backslash escapes the next character."""
    rx, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            rx.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        rx.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.fullmatch("".join(rx), value, re.S) is not None


def _bool_word(v):
    return "true" if v else "false"


def _tags_values(tags, name):
    """The values of a tag filter (tag:K, tag-key, tag-value) for tags; None: not one."""
    if name.startswith("tag:"):
        k = name[4:]
        return [tags[k]] if k in tags else []
    if name == "tag-key":
        return list(tags)
    if name == "tag-value":
        return list(tags.values())
    return None


def user_data_text(raw):
    """The text cloud-init would read from decoded user data bytes: gzip is unpacked, and the
    text/cloud-config parts of a MIME multipart document are joined."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return ""
    text = raw.decode("utf-8", "replace")
    if text.startswith("Content-Type: multipart/"):
        msg = email.message_from_string(text)
        parts = [p.get_payload(decode=True) or b"" for p in msg.walk()
                 if p.get_content_type() == "text/cloud-config"]
        return "\n".join(p.decode("utf-8", "replace") for p in parts)
    return text


# ---------------------------------------------------------------------------------------------
# SigV4, written from AWS's description (not botocore's code)

def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _quote(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def canonical_uri(raw_path):
    """The path without dot segments and repeated slashes, each segment URI-encoded again."""
    segs = []
    for s in (raw_path or "/").split("/"):
        if s in ("", "."):
            continue
        if s == "..":
            if segs:
                segs.pop()
        else:
            segs.append(s)
    path = "/" + "/".join(segs)
    if raw_path.endswith("/") and segs:
        path += "/"
    return _quote(path, safe="/~")


def canonical_query(raw_query):
    """name=value pairs, each side decoded then URI-encoded, sorted by name then value."""
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        k, _, v = part.partition("=")
        pairs.append((_quote(urllib.parse.unquote(k)), _quote(urllib.parse.unquote(v))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def sdk_form(raw):
    """A form body (bytes) as the AWS SDKs write its parameters: botocore's query serializer
    hands them, in order, to urllib's urlencode (quote_plus: A-Z a-z 0-9 _ . - ~ kept, a
    space '+', any other byte %XX uppercase). moto and LocalStack rebuild a query request's
    body this way before they check its signature, so a client that encodes otherwise (a
    space as %20, which AWS itself takes) fails there: the fake does as they do."""
    pairs = urllib.parse.parse_qsl(raw.decode("utf-8", "surrogateescape"),
                                   keep_blank_values=True, errors="surrogateescape")
    return urllib.parse.urlencode([(k.encode("utf-8", "surrogateescape"),
                                    v.encode("utf-8", "surrogateescape"))
                                   for k, v in pairs]).encode("ascii")


def sigv4_signature(secret, amz_date, region, service, canonical_request):
    """The hex signature of a canonical request (AWS4-HMAC-SHA256)."""
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = _hmac(("AWS4" + secret).encode("utf-8"), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


class _SigHeader:
    """What a request's Authorization header claims (check_auth's answer), parsed but not
    verified, plus the values of the headers it signs. Always true: credentials were given."""

    def __init__(self, value, headers):
        self.error = None
        self.akid = self.date = self.region = self.service = None
        self.signed, self.signature = [], ""
        get_all = getattr(headers, "get_all", None) or (lambda n: [headers[n]]
                                                         if n in headers else None)
        self.amz_date = (get_all("X-Amz-Date") or [None])[-1]
        self.token = (get_all("X-Amz-Security-Token") or [None])[-1]
        self.content_sha = (get_all("X-Amz-Content-Sha256") or [None])[-1]
        algo, _, rest = value.strip().partition(" ")
        if algo != "AWS4-HMAC-SHA256":
            self.error = f"Unsupported AWS 'algorithm': '{algo}'"
            return
        fields = {}
        for part in rest.split(","):
            k, eq, v = part.strip().partition("=")
            if eq:
                fields[k.strip()] = v.strip()
        missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in fields]
        if missing:
            self.error = " ".join(f"Authorization header requires '{k}' parameter."
                                  for k in missing)
            return
        cred = fields["Credential"].split("/")
        if len(cred) != 5 or cred[4] != "aws4_request" or not all(cred):
            self.error = f"Credential is malformed: '{fields['Credential']}'"
            return
        self.akid, self.date, self.region, self.service = cred[:4]
        self.signed = fields["SignedHeaders"].split(";")
        self.signature = fields["Signature"]
        self.values = {}
        for name in self.signed:
            vals = get_all(name)
            self.values[name] = None if vals is None else ",".join(" ".join(v.split())
                                                                   for v in vals)

    def __bool__(self):
        return True


def _scope_of(authorization):
    """(region, service) of an Authorization header's credential scope, or (None, None)."""
    m = re.search(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request",
                  authorization or "")
    return (m.group(1), m.group(2)) if m else (None, None)


# ---------------------------------------------------------------------------------------------
# EC2 query parameters -> a tree by EC2_PARAMS


class _Bad(Exception):
    """A parameter error: (code, message)."""


def _scalar(kind, value, name):
    if kind == _I:
        if not re.fullmatch(r"-?[0-9]+", value):
            raise _Bad("InvalidParameterValue", f"Invalid value '{value}' for {name}: an "
                                                "integer is expected")
        return int(value)
    if kind == _B:
        if value.lower() not in ("true", "false"):
            raise _Bad("InvalidParameterValue", f"Invalid value '{value}' for {name}: true or "
                                                "false is expected")
        return value.lower() == "true"
    return value


def _put(node, schema, parts, value, full):
    sub = schema.get(parts[0]) if isinstance(schema, dict) else None
    if sub is None:
        raise _Bad("UnknownParameter", f"The parameter {full} is not recognized")
    rest = parts[1:]
    if isinstance(sub, list):
        if not rest or not rest[0].isdigit() or int(rest[0]) < 1:
            raise _Bad("UnknownParameter", f"The parameter {full} is not recognized")
        items = node.setdefault(parts[0], {})
        idx, rest = int(rest[0]), rest[1:]
        if isinstance(sub[0], dict):
            if not rest:
                raise _Bad("UnknownParameter", f"The parameter {full} is not recognized")
            _put(items.setdefault(idx, {}), sub[0], rest, value, full)
        elif rest:
            raise _Bad("UnknownParameter", f"The parameter {full} is not recognized")
        else:
            items[idx] = _scalar(sub[0], value, full)
    elif isinstance(sub, dict):
        if not rest:
            raise _Bad("UnknownParameter", f"The parameter {full} is not recognized")
        _put(node.setdefault(parts[0], {}), sub, rest, value, full)
    else:
        if rest:
            raise _Bad("UnknownParameter", f"The parameter {full} is not recognized")
        node[parts[0]] = _scalar(sub, value, full)


def _finish(node, schema):
    """Lists kept as {index: member} while parsing become lists in index order."""
    for k, v in node.items():
        sub = schema[k]
        if isinstance(sub, list):
            items = [v[i] for i in sorted(v)]
            node[k] = [_finish(x, sub[0]) for x in items] if isinstance(sub[0], dict) else items
        elif isinstance(sub, dict):
            _finish(v, sub)
    return node


def parse_ec2_params(flat, schema):
    """The tree of a flat {name: value} EC2 request by schema (Action and Version left out).
    Raises _Bad("UnknownParameter", ...) for a name the schema has not."""
    tree = {}
    for key, value in flat.items():
        if key in ("Action", "Version"):
            continue
        _put(tree, schema, key.split("."), value, key)
    return _finish(tree, schema)


# ---------------------------------------------------------------------------------------------
# credentials

class AwsKey:
    """An access key: akid, secret, token (a session token: the key is temporary and every
    request must sign x-amz-security-token with it), account, arn, user_id."""

    def __init__(self, akid, secret, token=None, account=ACCOUNT, arn=None, user_id=None):
        self.akid, self.secret, self.token, self.account = akid, secret, token, account
        h = hashlib.sha256(akid.encode()).hexdigest()[:17].upper()
        if token:
            self.arn = arn or f"arn:aws:sts::{account}:assumed-role/fleetfs-test/fleetfs"
            self.user_id = user_id or f"AROA{h}:fleetfs"
        else:
            self.arn = arn or f"arn:aws:iam::{account}:user/fleetfs-test"
            self.user_id = user_id or f"AIDA{h}"

    @classmethod
    def of(cls, k):
        if isinstance(k, AwsKey):
            return k
        if isinstance(k, dict):
            return cls(k.get("access_key_id") or k["akid"],
                       k.get("secret") or k["secret_access_key"],
                       k.get("session_token") or k.get("token"), k.get("account", ACCOUNT),
                       k.get("arn"), k.get("user_id"))
        return cls(*k)

    def __repr__(self):       # never the secret nor the token
        return f"<AwsKey {self.akid}{' (temporary)' if self.token else ''}>"


class _Call:
    """What a request asks for: service, region, action, params (the form's, or the JSON
    body of Service Quotas), X-Amz-Target, and the raw path and query for the signature."""

    def __init__(self, service, region, action, params, target, ctype, path, query):
        self.service, self.region, self.action = service, region, action
        self.params, self.target, self.ctype = params, target, ctype
        self.path, self.query = path, query


class _Region:
    """One region's EC2 state (under the fake's lock)."""

    def __init__(self, name, zones):
        self.name = name
        self.zones = list(zones)
        self.vpcs = {}             # id -> {id, cidr, default, tags, igw, main_rt}
        self.subnets = {}          # id -> {id, vpc, az, cidr, map_public, default_for_az, tags}
        self.route_tables = {}     # id -> {id, vpc, main, main_assoc, subnets{id: assoc}, routes}
        self.groups = {}           # sg id -> {id, name, description, vpc, tags, rules}
        self.placement_groups = {}  # name -> {name, id, strategy, state, tags, ...}
        self.images = {}           # ami id -> image dict
        self.spot_requests = {}    # sir id -> request dict
        self.tokens = {}           # client token -> (time, params, answer)
        self.quotas = {}           # quota code -> value (None: no such quota)
        self.addresses = {}        # eipalloc id -> Elastic IP dict (see _ec2_AllocateAddress)


class AwsFake(CloudFake):
    provider = "aws"
    base_path = ""
    default_user = "ubuntu"
    server_header = "AmazonEC2"

    def __init__(self, keys=(DEFAULT_KEY,), zones=None, account=ACCOUNT, max_skew=300,
                 terminated_linger=3, iam_region="us-east-1", address_limit=5, **kw):
        """keys: access keys, each an AwsKey, a tuple (akid, secret, session_token=None,
        account=ACCOUNT, arn=None) or a dict (access_key_id, secret, session_token, account,
        arn). zones: {region: [zone names]} (default <region>a, b, c). max_skew: the seconds
        a request's X-Amz-Date may be off. iam_region: the only region IAM takes signatures
        for (None: any). address_limit: the Elastic IPs an account may hold in each region
        (AWS's default quota, 5; None: no limit; the attribute can be changed at any time).
        The rest as CloudFake (hosts, pool, boot_seconds, ...)."""
        creds = [AwsKey.of(k) for k in keys]
        self.credentials = {k.akid: k for k in creds}
        self.account = account
        self.max_skew = max_skew
        self.iam_region = iam_region
        self.clock = time.time             # the fake's now, for the signature's skew
        self.denied = set()                # (service, action or None): AccessDenied
        self.quota_defaults = dict(DEFAULT_QUOTAS)
        self.instance_types = copy.deepcopy(INSTANCE_TYPES)
        self.address_limit = address_limit
        self._placeholders = set()         # the TEST-NET-1 addresses Elastic IPs hold
        self._zone_conf = {r: list(z) for r, z in (zones or {}).items()}
        self._regions = {}
        self._profiles = {}                # instance profile name -> dict
        self._not_offered = set()          # (instance type, zone)
        self._spot_capacity = {}           # (instance type, zone) -> n
        self._seq = 0
        self._run_lock = threading.Lock()  # one RunInstances at a time (tokens, quotas)
        self._tl = threading.local()       # the service of the request this thread serves
        super().__init__(keys=[k.akid for k in creds], terminated_linger=terminated_linger,
                         **kw)

    # ------------------------------------------------------------------ provider hooks

    def new_id(self):
        return _rid("i")

    def setup_routes(self):
        self.route("POST", r"/", self._serve)
        self.route("GET", r"/", self._serve)

    def _advance(self):
        """The base's phase changes, then: an instance that is terminated (or gone) loses its
        Elastic IP associations, in the same step (its interfaces are deleted with it)."""
        out = super()._advance()
        self._eip_gc()
        return out

    def status_of(self, vm):
        if vm.status:
            return vm.status
        return {"booting": "pending", "running": "running", "terminating": "shutting-down",
                "terminated": "terminated"}[vm.phase]

    def error_reply(self, status, kind, message=None):
        """The error of the service the current request is for. kind: a base kind (mapped to
        the service's code and, for unauthorized/forbidden/rate_limited, its status) or an AWS
        error code."""
        svc = getattr(self._tl, "service", "ec2")
        st, code, text = _KINDS[_protocol(svc)].get(kind, (None, kind, kind))
        return self._error(svc, st or status, code, message or text)

    def check_auth(self, headers):
        v = headers.get("Authorization")
        return None if v is None else _SigHeader(v, headers)

    def _handle(self, h):
        self._tl.service = "ec2"          # until the request says otherwise
        return super()._handle(h)

    def _faults_before(self, h, req):
        """Before any fault: tell the service and action (the route faults match is
        "<service>/<Action>", e.g. "ec2/RunInstances"), and log them."""
        call = self._classify(h, req)
        req.aws = call
        req.route = f"{call.service}/{call.action}"
        self._tl.service = call.service
        for k in list(req.headers):            # the log keeps no credential
            if k.lower() == "x-amz-security-token":
                req.headers[k] = "<redacted>"
        for k in ("X-Amz-Signature", "X-Amz-Security-Token"):
            req.query.pop(k, None)
        self._relog(req, route=req.route)
        return super()._faults_before(h, req)

    def _dispatch(self, req, route, auth):
        call = req.aws
        if auth is None:
            return self._auth_error(call.service, "missing")
        key, err = self._verify(req, call, auth)
        self._relog(req, auth=key is not None)
        if err is not None:
            return err
        req.aws_key = key
        return super()._dispatch(req, route, key.akid)

    # ------------------------------------------------------------------ requests

    def _classify(self, h, req):
        parts = urllib.parse.urlsplit(h.path)
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        target = h.headers.get("X-Amz-Target") or ""
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        if req.method == "POST" and ctype == "application/x-www-form-urlencoded" and req.raw:
            params.update(urllib.parse.parse_qsl(req.raw.decode("utf-8", "replace"),
                                                 keep_blank_values=True))
        region, service = _scope_of(h.headers.get("Authorization"))
        if service not in SERVICES:
            if target.startswith(SQ_TARGET + ".") or ctype.startswith("application/x-amz-json"):
                service = "servicequotas"
            else:
                service = {v: k for k, v in VERSIONS.items()}.get(params.get("Version"), "ec2")
        if service == "servicequotas":
            action = target.rpartition(".")[2]
            params = req.body if isinstance(req.body, dict) else {}
        else:
            action = params.get("Action", "")
        return _Call(service, region or "us-east-1", action, params, target, ctype,
                     parts.path, parts.query)

    def _relog(self, req, **fields):
        """Update the request's entry in the log (found by its headers dict, which is the
        entry's own)."""
        with self.lock:
            for i in range(len(self.requests) - 1, -1, -1):
                if self.requests[i].headers is req.headers:
                    self.requests[i] = self.requests[i]._replace(**fields)
                    return

    def _error(self, service, status, code, message):
        rid = str(uuid.uuid4())
        if service == "servicequotas":
            return Reply(status, {"__type": code, "message": message},
                         {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": rid,
                          "x-amzn-ErrorType": code})
        if service in ("sts", "iam"):
            side = "Sender" if status < 500 else "Receiver"
            body = (f'<ErrorResponse xmlns="{NAMESPACES[service]}"><Error><Type>{side}</Type>'
                    f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
                    f"<RequestId>{rid}</RequestId></ErrorResponse>")
            return Reply(status, body, {"Content-Type": "text/xml", "x-amzn-RequestId": rid})
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
                f"</Errors><RequestID>{rid}</RequestID></Response>")
        return Reply(status, body, {"Content-Type": "text/xml;charset=UTF-8",
                                    "x-amzn-RequestId": rid})

    def _fail(self, code, message, status=400):
        """An error of the current request's service (raise it)."""
        return self._error(getattr(self._tl, "service", "ec2"), status, code, message)

    def _auth_error(self, service, what, message=None):
        status, code, text = _AUTH_ERRORS[_protocol(service)][what]
        return self._error(service, status, code, message or text)

    def _verify(self, req, call, sig):
        """(key, None) when the request's SigV4 signature is good, else (None, the error)."""
        svc = call.service

        def bad(what, message=None):
            return None, self._auth_error(svc, what, message)
        if sig.error:
            return bad("incomplete", sig.error)
        if sig.service not in SERVICES:
            return bad("signature", f"Credential should be scoped to correct service: '{svc}'.")
        if sig.amz_date is None:
            return bad("incomplete", "Authorization header requires existence of either a "
                                     "'X-Amz-Date' or a 'Date' header.")
        if "host" not in sig.signed:
            return bad("incomplete", "'Host' or ':authority' must be a 'SignedHeader' in the "
                                     "AWS Authorization.")
        if "x-amz-date" not in sig.signed:
            return bad("incomplete", "'X-Amz-Date' must be a 'SignedHeader' in the AWS "
                                     "Authorization.")
        try:
            t = datetime.datetime.strptime(sig.amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            return bad("incomplete", f"Date must be in ISO-8601 'basic format'. Got "
                                     f"'{sig.amz_date}'.")
        if sig.date != sig.amz_date[:8]:
            return bad("signature", "Date in Credential scope does not match YYYYMMDD from "
                                    f"ISO-8601 version of date from HTTP: '{sig.date}' != "
                                    f"'{sig.amz_date[:8]}', from '{sig.amz_date}'.")
        if svc == "iam" and self.iam_region and sig.region != self.iam_region:
            return bad("signature", "Credential should be scoped to a valid region, not "
                                    f"'{sig.region}'. ")
        with self.lock:
            key = self.credentials.get(sig.akid) if sig.akid in self.keys else None
        if key is None:
            return bad("unknown")
        if key.token is not None:
            if sig.token != key.token or "x-amz-security-token" not in sig.signed:
                return bad("token")
        elif sig.token is not None:
            return bad("token")
        now = self.clock()
        if abs(now - t) > self.max_skew:
            mins = f"{self.max_skew / 60:g} min."
            if t < now:
                text = (f"Signature expired: {sig.amz_date} is now earlier than "
                        f"{_amz(now - self.max_skew)} ({_amz(now)} - {mins})")
            else:
                text = (f"Signature not yet current: {sig.amz_date} is still later than "
                        f"{_amz(now + self.max_skew)} ({_amz(now)} + {mins})")
            return bad("expired", None if _protocol(svc) == "ec2" else text)
        body_hash = hashlib.sha256(req.raw or b"").hexdigest()
        if "x-amz-content-sha256" in sig.signed and sig.content_sha != body_hash:
            return bad("signature")
        # a form body is signed as the emulators read it: rebuilt the AWS SDKs' way
        form = call.ctype == "application/x-www-form-urlencoded" and req.method == "POST"
        signed = sdk_form(req.raw or b"") if form else req.raw or b""
        canonical = "\n".join([
            req.method, canonical_uri(call.path), canonical_query(call.query),
            "".join(f"{n}:{sig.values.get(n) or ''}\n" for n in sig.signed),
            ";".join(sig.signed), hashlib.sha256(signed).hexdigest()])
        want = sigv4_signature(key.secret, sig.amz_date, sig.region, sig.service, canonical)
        if not hmac.compare_digest(want, sig.signature):
            if signed != (req.raw or b""):
                return bad("signature", _MISMATCH + " (the form body is not as the AWS SDKs "
                           "write it: " + signed[:200].decode("ascii", "replace") + ")")
            return bad("signature")
        return key, None

    def _serve(self, req):
        call, key = req.aws, req.aws_key
        with self.lock:
            denied = (call.service, None) in self.denied or \
                (call.service, call.action) in self.denied
        if denied:
            what = f"{call.service}:{call.action}"
            raise self.error_reply(403, "forbidden", f"User: {key.arn} is not authorized to "
                                   f"perform: {what} because no identity-based policy allows "
                                   f"the {what} action")
        if call.service == "servicequotas":
            return self._serve_quotas(req, call)
        if not call.params.get("Action"):
            raise self._fail("MissingAction", "The request must contain the parameter Action")
        if call.service == "ec2":
            return self._serve_ec2(call, key)
        return self._serve_query(call, key)

    def _serve_query(self, call, key):
        """STS and IAM: the query protocol, answers in <XResponse><XResult>."""
        p = call.params
        handler = {"sts": {"GetCallerIdentity": self._get_caller_identity},
                   "iam": {"GetInstanceProfile": self._get_instance_profile}
                   }[call.service].get(call.action)
        if p.get("Version") != VERSIONS[call.service] or handler is None:
            raise self._fail("InvalidAction", f"Could not find operation {call.action} "
                             f"for version {p.get('Version', 'NO_VERSION_SPECIFIED')}")
        result = handler(call, key)
        rid = str(uuid.uuid4())
        body = (f'<{call.action}Response xmlns="{NAMESPACES[call.service]}">'
                + _xml(call.action + "Result", result, "member")
                + f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata>"
                f"</{call.action}Response>")
        return Reply(200, body, {"Content-Type": "text/xml", "x-amzn-RequestId": rid})

    def _serve_ec2(self, call, key):
        """EC2: the parameters parsed by EC2_PARAMS, then _ec2_<Action>(call, tree, key)
        gives the answer's elements."""
        p = call.params
        if "Version" not in p:
            raise self._fail("MissingParameter", "The request must contain the parameter "
                             "Version")
        if p["Version"] != VERSIONS["ec2"]:
            raise self._fail("NoSuchVersion", f"The requested version ({p['Version']}) of "
                             "service AmazonEC2 does not exist")
        handler = getattr(self, "_ec2_" + call.action, None)
        if call.action not in EC2_PARAMS or handler is None:
            raise self._fail("InvalidAction", f"The action {call.action} is not valid for "
                             "this web service.")
        try:
            tree = parse_ec2_params(p, EC2_PARAMS[call.action])
        except _Bad as e:
            raise self._fail(*e.args)
        if tree.get("DryRun"):
            raise self._fail("DryRunOperation", "Request would have succeeded, but DryRun "
                             "flag is set.", 412)
        try:
            if call.action == "RunInstances":        # locks for itself: it waits for a host
                result = handler(call, tree, key)
            else:
                with self.lock:
                    result = handler(call, tree, key)
        except _Bad as e:
            raise self._fail(*e.args)
        rid = str(uuid.uuid4())
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<{call.action}Response xmlns="{NAMESPACES["ec2"]}">'
                f"<requestId>{rid}</requestId>"
                + "".join(_xml(k, v) for k, v in result.items())
                + f"</{call.action}Response>")
        return Reply(200, body, {"Content-Type": "text/xml;charset=UTF-8",
                                 "x-amzn-RequestId": rid})

    # ------------------------------------------------------------------ helpers for tests

    def add_key(self, akid, secret, token=None, account=None, arn=None):
        """A valid access key (token: a session token, making it a temporary key)."""
        k = AwsKey(akid, secret, token, account or self.account, arn)
        with self.lock:
            self.credentials[akid] = k
            self.keys.add(akid)
        return k

    def remove_key(self, akid):
        with self.lock:
            self.credentials.pop(akid, None)
            self.keys.discard(akid)

    def calls(self, action=None, service=None):
        """The parameters of each request so far (the form's as a dict, or the JSON body of
        Service Quotas), in order, whatever the answer was; of one action and/or service."""
        with self.lock:
            reqs = list(self.requests)
        out = []
        for r in reqs:
            svc, _, act = r.route.partition("/")
            if svc not in SERVICES or (action and act != action) or (service and svc != service):
                continue
            if svc == "servicequotas":
                out.append(dict(r.body) if isinstance(r.body, dict) else {})
                continue
            p = {k: v[-1] for k, v in r.query.items()}
            ctype = next((v for k, v in r.headers.items() if k.lower() == "content-type"), "")
            if isinstance(r.body, str) and ctype.startswith("application/x-www-form-urlencoded"):
                p.update(urllib.parse.parse_qsl(r.body, keep_blank_values=True))
            out.append(p)
        return out

    def count_calls(self, action=None, service=None):
        return len(self.calls(action, service))

    def deny(self, service, action=None):
        """Calls of service (one action, or all) get AccessDenied from now on: EC2 403
        UnauthorizedOperation, STS/IAM 403 AccessDenied, Service Quotas 400
        AccessDeniedException. allow() undoes it."""
        with self.lock:
            self.denied.add((service, action))

    def allow(self, service, action=None):
        with self.lock:
            self.denied.discard((service, action))

    def set_quota(self, region, code, value):
        """The Service Quotas value of code in region (None: NoSuchResourceException)."""
        with self.lock:
            self._region(region).quotas[code] = None if value is None else float(value)

    def quota(self, region, code):
        with self.lock:
            q = self._region(region).quotas
            return q[code] if code in q else self.quota_defaults.get(code)

    def add_instance_profile(self, name, role=None, path="/"):
        """An IAM instance profile (with one role, named role or name); returns it."""
        now = time.time()
        role = role or name
        h = hashlib.sha256(name.encode()).hexdigest()[:17].upper()
        prof = {"Path": path, "InstanceProfileName": name, "InstanceProfileId": f"AIPA{h}",
                "Arn": f"arn:aws:iam::{self.account}:instance-profile{path}{name}",
                "CreateDate": _iso(now),
                "Roles": [{"Path": "/", "RoleName": role, "RoleId": f"AROA{h}",
                           "Arn": f"arn:aws:iam::{self.account}:role/{role}",
                           "CreateDate": _iso(now),
                           "AssumeRolePolicyDocument": urllib.parse.quote(json.dumps(
                               {"Version": "2012-10-17", "Statement": [
                                   {"Effect": "Allow", "Action": "sts:AssumeRole",
                                    "Principal": {"Service": "ec2.amazonaws.com"}}]}))}],
                "Tags": []}
        with self.lock:
            self._profiles[name] = prof
        return copy.deepcopy(prof)

    def remove_instance_profile(self, name):
        with self.lock:
            self._profiles.pop(name, None)

    def set_zones(self, region, zones):
        """The availability zones of region (its default VPC gets a subnet in each new one)."""
        with self.lock:
            self._zone_conf[region] = list(zones)
            r = self._regions.get(region)
            if r is not None:
                r.zones = list(zones)
                vpc = next((v for v in r.vpcs.values() if v["default"]), None)
                if vpc is not None:
                    have = {s["az"] for s in r.subnets.values() if s["default_for_az"]}
                    for z in zones:
                        if z not in have:
                            self._make_subnet(r, vpc, z, map_public=True, default_for_az=True)

    def zones(self, region):
        with self.lock:
            return list(self._region(region).zones)

    def add_vpc(self, region, name=None, default=False, cidr="10.0.0.0/16", tags=None):
        """A VPC with its main route table (the local route only) and its default security
        group; returns its id."""
        with self.lock:
            r = self._region(region)
            if default and any(v["default"] for v in r.vpcs.values()):
                raise ValueError(f"{region} has a default VPC: remove_default_vpc() first")
            t = dict(tags or {})
            if name is not None:
                t["Name"] = name
            return self._make_vpc(r, cidr, default, t)["id"]

    def add_subnet(self, region, vpc_id, az, kind="public", own_route_table=True, cidr=None,
                   map_public_ip=None, name=None):
        """A subnet of vpc_id in az. With own_route_table, it gets a route table of its own
        (explicitly associated) with the egress route of kind: public (0.0.0.0/0 -> igw-),
        nat (nat-), tgw (tgw-), peering (pcx-) or isolated (only the local route); without,
        it uses the VPC's main table. map_public_ip: MapPublicIpOnLaunch (default: kind is
        public). Returns its id."""
        if kind not in ("public", "nat", "tgw", "peering", "isolated"):
            raise ValueError(kind)
        with self.lock:
            r = self._region(region)
            vpc = r.vpcs[vpc_id]
            if az not in r.zones:
                raise ValueError(f"{az} is not a zone of {region}")
            sub = self._make_subnet(r, vpc, az, cidr=cidr, map_public=(
                kind == "public" if map_public_ip is None else map_public_ip),
                default_for_az=False, tags={"Name": name} if name else {})
            if own_route_table:
                rt = self._make_route_table(r, vpc, main=False)
                rt["subnets"][sub["id"]] = _rid("rtbassoc")
                self._add_egress(vpc, rt, kind)
            return sub["id"]

    def remove_default_vpc(self, region):
        """Delete region's default VPC, with its subnets, route tables and security groups."""
        with self.lock:
            r = self._region(region)
            for vpc in [v for v in r.vpcs.values() if v["default"]]:
                for d in (r.subnets, r.route_tables, r.groups):
                    for k in [k for k, x in d.items() if x["vpc"] == vpc["id"]]:
                        del d[k]
                del r.vpcs[vpc["id"]]

    def vpcs(self, region):
        """Snapshots of region's VPCs, subnets and route tables: {"vpcs", "subnets",
        "route_tables"}."""
        with self.lock:
            r = self._region(region)
            return copy.deepcopy({"vpcs": list(r.vpcs.values()),
                                  "subnets": list(r.subnets.values()),
                                  "route_tables": list(r.route_tables.values())})

    def placement_groups(self, region):
        """Snapshots of region's placement groups: {name: {name, id, strategy, state, tags}}."""
        with self.lock:
            return copy.deepcopy(self._region(region).placement_groups)

    def security_groups(self, region):
        """Snapshots of region's security groups: {id: {id, name, description, vpc, tags,
        rules}}; a rule is {id, egress, proto, from, to, cidr, group, description}."""
        with self.lock:
            return copy.deepcopy(self._region(region).groups)

    def add_image(self, region, name, owner=ACCOUNT, arch="x86_64", state="available",
                  created=None, user="ubuntu", size=8, public=None):
        """An AMI (owner "self": the fake's account); returns its id. user is the image's
        login user as dstack's os_images would name it: kept in fake.instance(id)["user"],
        but every VM logs in as the host pool's user."""
        with self.lock:
            r = self._region(region)
            img = self._make_image(r, owner, name, arch, state, created or _iso(time.time()),
                                   user, size, public, ident=_rid("ami"))
            return img["id"]

    def image(self, region, image_id):
        with self.lock:
            img = self._region(region).images.get(image_id)
            return copy.deepcopy(img) if img else None

    def image_id(self, region, name):
        """The id of the newest image named name in region (None: none)."""
        with self.lock:
            imgs = [i for i in self._region(region).images.values() if i["name"] == name]
            return max(imgs, key=lambda i: i["created"])["id"] if imgs else None

    def set_offered(self, instance_type, zone, offered=True):
        """Whether zone offers instance_type (not: RunInstances there is 400 Unsupported)."""
        with self.lock:
            (self._not_offered.discard if offered else self._not_offered.add)(
                (instance_type, zone))

    def set_spot_capacity(self, instance_type, zone, n):
        """At most n live spot instances of that type in zone (None: no limit but the
        base's set_capacity and the pool)."""
        with self.lock:
            if n is None:
                self._spot_capacity.pop((instance_type, zone), None)
            else:
                self._spot_capacity[(instance_type, zone)] = int(n)

    def interrupt_spot(self, instance_id):
        """AWS takes a spot instance back: shutting-down, then terminated with stateReason
        Server.SpotInstanceTermination; its request is closed."""
        with self.lock:
            vm = self._vms[instance_id]
            x = vm.extra
            x["state_reason"] = ("Server.SpotInstanceTermination",
                                 "Server.SpotInstanceTermination: Spot instance termination")
            x["reason"] = "Server.SpotInstanceTermination: Spot instance termination"
            req = self._region(x["region_name"]).spot_requests.get(x.get("spot_request_id"))
            if req is not None and req["state"] in ("open", "active"):
                req["state"], req["status"] = "closed", "instance-terminated-no-capacity"
            self.terminate_vm(vm)

    def instance(self, instance_id):
        """Everything about an instance (None when unknown or gone): state, region, az,
        subnet_id, vpc_id, security_group_ids, image_id, user, tags, spot, spot_request_id,
        placement_group, iam_profile, volume_size, volume_type, public, public_ip, private_ip,
        client_token, params (the RunInstances form), request (parsed), user_data, nics, ...
        nics: its network interfaces, primary first: {id, device_index, card_index, type
        (interface, efa, efa-only), subnet_id, vpc_id, sg_ids, public (a public address was
        asked for at launch), public_ip (its public address now, an Elastic IP's included),
        private_ip, allocation_id and association_id (its Elastic IP's, or None),
        delete_on_termination, attach_id, mac}."""
        with self.lock:
            vm = self.vm(instance_id)
            if vm is None:
                return None
            d = copy.deepcopy(vm.extra)
            item = self._instance_item(vm)
            shown = {n["networkInterfaceId"]: n for n in item["networkInterfaceSet"]}
            eips = self._eips_of_vm(vm)
            for n in d.get("nics", []):
                eip = eips.get(n["id"])
                n.update(type=n["interface_type"], private_ip=self._nic_private(vm, n),
                         public_ip=(shown[n["id"]].get("association") or {}).get("publicIp"),
                         allocation_id=eip and eip["id"],
                         association_id=eip and eip["assoc"]["id"])
            d.update(id=vm.id, name=vm.name, instance_type=vm.instance_type,
                     region=vm.extra.get("region_name"),
                     security_group_ids=list(vm.extra.get("sg_ids", [])),
                     state=self.status_of(vm), phase=vm.phase, pubkeys=list(vm.pubkeys),
                     orphan=vm.orphan, created=vm.created,
                     host_addr=vm.host.addr if vm.host else None,
                     public_ip=item.get("ipAddress"), private_ip=item.get("privateIpAddress"))
            return d

    def addresses(self, region):
        """Snapshots of region's Elastic IPs, oldest first: {id (eipalloc-), public_ip (now:
        the host's address while associated with an interface that has one, else
        placeholder), placeholder (its TEST-NET-1 address), domain, tags, created,
        association_id, instance_id, eni, private_ip}."""
        with self.lock:
            self._advance()
            r = self._region(region)
            out = []
            for a in r.addresses.values():
                item = self._address_item(r, a)
                out.append({"id": a["id"], "public_ip": item["publicIp"],
                            "placeholder": a["placeholder"], "domain": a["domain"],
                            "tags": dict(a["tags"]), "created": a["created"],
                            "association_id": item.get("associationId"),
                            "instance_id": item.get("instanceId"),
                            "eni": item.get("networkInterfaceId"),
                            "private_ip": item.get("privateIpAddress")})
            return out

    def create_behind_the_back(self, name, instance_type, region, pubkeys=(), phase="running",
                               tags=None, spot=False, host=True, image_id=None, subnet_id=None,
                               **extra):
        """An instance the client did not launch (an orphan), in phase at once. region: a
        region (its first zone) or a zone. tags: a dict (Name = name). host=False makes one
        without a host (so without any address; needs no pool host: for bulk listings)."""
        m = re.fullmatch(r"(.*-[0-9]+)([a-z])", region)
        with self.lock:
            r = self._region(m.group(1) if m else region)
            az = region if m else r.zones[0]
            if az not in r.zones:
                raise ValueError(f"{az} is not a zone of {r.name}")
            sub = r.subnets.get(subnet_id) if subnet_id else next(
                (s for s in r.subnets.values() if s["az"] == az and s["default_for_az"]), None)
            img = r.images.get(image_id) if image_id else next(
                (i for i in r.images.values() if i["owner"] == DSTACK), None)
            t = dict(tags or {})
            t.setdefault("Name", name)
            x = self._instance_extra(r, az, sub, img, instance_type, t, spot=spot)
            x.update(extra)
        if host:
            vm = super().create_behind_the_back(name, instance_type, az, pubkeys, phase, **x)
        else:
            vm = VM(self.new_id(), name, instance_type, az, pubkeys, None, orphan=True, **x)
            with self.lock:
                vm.phase = phase
                self._vms[vm.id] = vm
        if spot:
            with self.lock:
                self._make_spot_request(r, vm, {"SpotInstanceType": "one-time"})
        return vm

    # ------------------------------------------------------------------ STS, IAM, quotas

    def _get_caller_identity(self, call, key):
        return {"Arn": key.arn, "UserId": key.user_id, "Account": key.account}

    def _get_instance_profile(self, call, key):
        name = call.params.get("InstanceProfileName")
        if not name:
            raise self._fail("ValidationError", "1 validation error detected: Value null at "
                             "'instanceProfileName' failed to satisfy constraint: Member must "
                             "not be null")
        with self.lock:
            prof = self._profiles.get(name)
            if prof is None:
                raise self._fail("NoSuchEntity", f"Instance Profile {name} cannot be found.",
                                 404)
            return {"InstanceProfile": copy.deepcopy(prof)}

    def _serve_quotas(self, req, call):
        if req.method != "POST" or call.target != f"{SQ_TARGET}.GetServiceQuota":
            raise self._fail("UnknownOperationException", "The fake knows GetServiceQuota only")
        b = call.params
        if call.ctype not in ("application/x-amz-json-1.1", "application/x-amz-json-1.0"):
            raise self._fail("SerializationException", "The Content-Type must be "
                             "application/x-amz-json-1.1")
        if not req.json_ok or not isinstance(req.body, dict):
            raise self._fail("SerializationException", "The request body is not a JSON object")
        for f in ("ServiceCode", "QuotaCode"):
            if not isinstance(b.get(f), str) or not b[f]:
                raise self._fail("IllegalArgumentException", f"{f} is required")
        if b["ServiceCode"] != "ec2":
            raise self._fail("NoSuchResourceException", "The request failed because the "
                             "specified service does not exist.")
        value = self.quota(call.region, b["QuotaCode"])
        if value is None:
            raise self._fail("NoSuchResourceException", "The request failed because the "
                             "specified quota does not exist.")
        code = b["QuotaCode"]
        q = {"ServiceCode": "ec2", "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
             "QuotaArn": f"arn:aws:servicequotas:{call.region}:{req.aws_key.account}:ec2/{code}",
             "QuotaCode": code, "QuotaName": QUOTA_NAMES.get(code, code), "Value": value,
             "Unit": "None", "Adjustable": True, "GlobalQuota": False,
             "UsageMetric": {"MetricNamespace": "AWS/Usage", "MetricName": "ResourceCount",
                             "MetricDimensions": {"Class": "Standard/OnDemand",
                                                  "Resource": "vCPU", "Service": "EC2",
                                                  "Type": "Resource"},
                             "MetricStatisticRecommendation": "Maximum"}}
        return Reply(200, {"Quota": q}, {"Content-Type": "application/x-amz-json-1.1",
                                         "x-amzn-RequestId": str(uuid.uuid4())})

    # ------------------------------------------------------------------ EC2 state

    def _region(self, name):
        """name's state, made on first use (caller holds self.lock)."""
        r = self._regions.get(name)
        if r is None:
            r = _Region(name, self._zone_conf.get(name) or [name + c for c in "abc"])
            self._regions[name] = r
            vpc = self._make_vpc(r, "172.31.0.0/16", True, {})
            self._add_egress(vpc, r.route_tables[vpc["main_rt"]], "public")
            for z in r.zones:
                self._make_subnet(r, vpc, z, map_public=True, default_for_az=True)
            for owner, name_, arch, state, created in DEFAULT_IMAGES:
                ident = "ami-" + hashlib.sha256(f"{name}/{owner}/{name_}".encode()
                                                ).hexdigest()[:17]
                self._make_image(r, owner, name_, arch, state, created, "ubuntu", 8, True, ident)
        return r

    def _zone_id(self, r, az):
        parts = r.name.split("-")
        abbr = parts[0] + "".join(p[0] for p in parts[1:-1]) + parts[-1] if len(parts) > 2 \
            else r.name.replace("-", "")
        return f"{abbr}-az{r.zones.index(az) + 1}" if az in r.zones else f"{abbr}-az0"

    def _make_vpc(self, r, cidr, default, tags):
        vpc = {"id": _rid("vpc"), "cidr": str(ipaddress.ip_network(cidr)), "default": default,
               "tags": dict(tags), "igw": None, "main_rt": None}
        r.vpcs[vpc["id"]] = vpc
        vpc["main_rt"] = self._make_route_table(r, vpc, main=True)["id"]
        sg = {"id": _rid("sg"), "name": "default", "description": "default VPC security group",
              "vpc": vpc["id"], "tags": {}, "rules": []}
        sg["rules"] = [self._rule(False, "-1", None, None, group=sg["id"]),
                       self._rule(True, "-1", None, None, cidr="0.0.0.0/0")]
        r.groups[sg["id"]] = sg
        return vpc

    def _make_route_table(self, r, vpc, main):
        rt = {"id": _rid("rtb"), "vpc": vpc["id"], "main": main,
              "main_assoc": _rid("rtbassoc") if main else None, "subnets": {}, "tags": {},
              "routes": [{"destinationCidrBlock": vpc["cidr"], "gatewayId": "local",
                          "state": "active", "origin": "CreateRouteTable"}]}
        r.route_tables[rt["id"]] = rt
        return rt

    def _add_egress(self, vpc, rt, kind):
        if kind == "isolated":
            return
        if kind == "public":
            vpc["igw"] = vpc["igw"] or _rid("igw")
            target = {"gatewayId": vpc["igw"]}
        else:
            target = {{"nat": "natGatewayId", "tgw": "transitGatewayId",
                       "peering": "vpcPeeringConnectionId"}[kind]:
                      _rid({"nat": "nat", "tgw": "tgw", "peering": "pcx"}[kind])}
        rt["routes"].append({"destinationCidrBlock": "0.0.0.0/0", **target, "state": "active",
                             "origin": "CreateRoute"})

    def _make_subnet(self, r, vpc, az, cidr=None, map_public=False, default_for_az=False,
                     tags=None):
        net = ipaddress.ip_network(vpc["cidr"])
        taken = [ipaddress.ip_network(s["cidr"]) for s in r.subnets.values()
                 if s["vpc"] == vpc["id"]]
        if cidr is None:
            size = 20 if default_for_az else max(24, net.prefixlen)
            cidr = next((str(c) for c in net.subnets(new_prefix=max(size, net.prefixlen))
                         if not any(c.overlaps(t) for t in taken)), None)
            if cidr is None:
                raise ValueError(f"no room for a subnet in {vpc['cidr']}")
        sub = {"id": _rid("subnet"), "vpc": vpc["id"], "az": az, "cidr": cidr,
               "map_public": map_public, "default_for_az": default_for_az,
               "tags": dict(tags or {})}
        r.subnets[sub["id"]] = sub
        return sub

    def _make_image(self, r, owner, name, arch, state, created, user, size, public, ident):
        owner = self.account if owner == "self" else owner
        img = {"id": ident, "owner": owner, "name": name, "arch": arch, "state": state,
               "created": created, "user": user, "size": size,
               "public": owner != self.account if public is None else public,
               "alias": OWNER_ALIASES.get(owner), "snapshot": _rid("snap")}
        r.images[ident] = img
        return img

    def _route_tables_of(self, r, sub):
        """The tables that route a subnet: its explicit one, else its VPC's main one."""
        own = [t for t in r.route_tables.values() if sub["id"] in t["subnets"]]
        return own or [t for t in r.route_tables.values() if t["vpc"] == sub["vpc"] and t["main"]]

    def _is_public(self, r, sub):
        return any(str(rt.get("gatewayId", "")).startswith("igw-")
                   for t in self._route_tables_of(r, sub) for rt in t["routes"])

    def _rule(self, egress, proto, lo, hi, cidr=None, group=None, description=None):
        return {"id": _rid("sgr"), "egress": egress, "proto": proto, "from": lo, "to": hi,
                "cidr": cidr, "group": group, "description": description}

    def _vcpus(self, itype):
        return self.instance_types.get(itype, {}).get("vcpus", 4)

    def _type_info(self, itype):
        """The table's row of a type, its missing values _it's defaults (a type of EC2's form
        the table has not: 4 vCPUs, 16 GiB, one network card, no EFA)."""
        t = _it(4, 16)
        t.update(self.instance_types.get(itype) or {})
        return t

    def _arch(self, itype):
        t = self.instance_types.get(itype)
        if t:
            return t["arch"]
        return "arm64" if re.search(r"[0-9]g", itype.split(".")[0]) else "x86_64"

    def _valid_type(self, itype):
        return itype in self.instance_types or bool(_TYPE_RE.fullmatch(itype or ""))

    @staticmethod
    def quota_code(itype):
        """The on-demand vCPU quota an instance type counts against."""
        fam = itype.split(".")[0].lower()
        if fam.startswith("p"):
            return "L-417A185B"
        if fam.startswith(("g", "vt")):
            return "L-DB2E81BA"
        return "L-1216C47A"

    def _live(self, vm):
        return vm.phase != "terminated"

    # ------------------------------------------------------------------ EC2 rendering

    def _filtered(self, items, filters, values):
        """items whose values(item, filter name) match every filter (any of its values)."""
        out = []
        for f in filters:
            if not f.get("Name"):
                raise _Bad("InvalidParameterValue", "The filter name must be given")
            if not f.get("Value"):
                raise _Bad("InvalidParameterValue", f"The filter '{f['Name']}' needs values")
        for it in items:
            ok = True
            for f in filters:
                have = values(it, f["Name"])
                if have is None:
                    raise _Bad("InvalidParameterValue", f"The filter '{f['Name']}' is invalid")
                if not any(_glob(v, str(h)) for v in f["Value"] for h in have):
                    ok = False
                    break
            if ok:
                out.append(it)
        return out

    def _page(self, items, p, key, lo=5, hi=1000):
        """A page of items by MaxResults and NextToken (an opaque cursor over key(item));
        returns (page, next token or None)."""
        start = 0
        if p.get("NextToken"):
            try:
                after = json.loads(base64.urlsafe_b64decode(p["NextToken"].encode()))["after"]
                start = next((i for i, x in enumerate(items) if key(x) > after), len(items))
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise _Bad("InvalidParameterValue", f"Invalid value '{p['NextToken']}' for "
                                                    "nextToken")
        n = p.get("MaxResults")
        if n is None:
            return items[start:], None
        if not lo <= n <= hi:
            raise _Bad("InvalidParameterValue", f"Value ( {n} ) for parameter maxResults is "
                                                f"invalid. Expecting a value greater than {lo}.")
        page = items[start:start + n]
        more = start + n < len(items)
        token = base64.urlsafe_b64encode(json.dumps({"after": key(page[-1])}).encode()
                                         ).decode() if more and page else None
        return page, token

    def _permissions(self, sg, egress):
        """A group's rules as IpPermission items, one per (protocol, ports)."""
        perms = {}
        for rule in sg["rules"]:
            if rule["egress"] != egress:
                continue
            k = (rule["proto"], rule["from"], rule["to"])
            if k not in perms:
                perms[k] = {"ipProtocol": rule["proto"], "fromPort": rule["from"],
                            "toPort": rule["to"], "groups": [], "ipRanges": [],
                            "ipv6Ranges": [], "prefixListIds": []}
            if rule["group"]:
                perms[k]["groups"].append({"groupId": rule["group"], "userId": self.account,
                                           "description": rule["description"]})
            else:
                perms[k]["ipRanges"].append({"cidrIp": rule["cidr"],
                                             "description": rule["description"]})
        return list(perms.values())

    def _sg_item(self, sg):
        return {"ownerId": self.account, "groupId": sg["id"], "groupName": sg["name"],
                "groupDescription": sg["description"], "vpcId": sg["vpc"],
                "ipPermissions": self._permissions(sg, False),
                "ipPermissionsEgress": self._permissions(sg, True),
                "tagSet": _tag_set(sg["tags"])}

    def _image_item(self, img):
        return {"imageId": img["id"], "imageLocation": f"{img['alias'] or img['owner']}/"
                                                       f"{img['name']}",
                "imageState": img["state"], "imageOwnerId": img["owner"],
                "creationDate": img["created"], "isPublic": img["public"],
                "architecture": img["arch"], "imageType": "machine",
                "platformDetails": "Linux/UNIX", "usageOperation": "RunInstances",
                "imageOwnerAlias": img["alias"], "name": img["name"],
                "description": img["name"], "rootDeviceType": "ebs",
                "rootDeviceName": "/dev/sda1",
                "blockDeviceMapping": [{"deviceName": "/dev/sda1", "ebs": {
                    "deleteOnTermination": True, "snapshotId": img["snapshot"],
                    "volumeSize": img["size"], "volumeType": "gp2", "encrypted": False}}],
                "virtualizationType": "hvm", "hypervisor": "xen", "enaSupport": True,
                "sriovNetSupport": "simple", "tagSet": []}

    def _dns_suffix(self, region):
        return "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"

    def _instance_item(self, vm):
        """An instance as DescribeInstances and RunInstances show it (caller holds the lock)."""
        x = vm.extra
        state = self.status_of(vm)
        region = x.get("region_name", "")
        private = vm.host.addr if vm.host is not None and state != "terminated" else None
        public = private if x.get("public") and state in ("running", "stopping") else None
        eips = self._eips_of_vm(vm)
        nics = []
        for n in x.get("nics", []):
            primary = n["device_index"] == 0 and n["card_index"] == 0
            mine = self._nic_private(vm, n)
            eip = eips.get(n["id"])
            pub = self._eip_public(eip) if eip else public if primary else None
            if primary:
                public = pub
            nics.append({
                "networkInterfaceId": n["id"], "subnetId": n["subnet_id"], "vpcId": n["vpc_id"],
                "description": "", "ownerId": self.account,
                "status": "in-use" if state != "terminated" else "detaching",
                "macAddress": n["mac"], "privateIpAddress": mine,
                "privateDnsName": f"ip-{mine.replace('.', '-')}.{self._dns_suffix(region)}"
                if mine else None,
                "sourceDestCheck": True,
                "groupSet": [{"groupId": g, "groupName": x["sg_names"].get(g, "")}
                             for g in n["sg_ids"]],
                "attachment": {"attachmentId": n["attach_id"], "deviceIndex": n["device_index"],
                               "networkCardIndex": n["card_index"],
                               "status": "attached" if state != "terminated" else "detached",
                               "attachTime": _iso(vm.created),
                               "deleteOnTermination": n["delete_on_termination"]},
                "association": {"publicIp": pub, "publicDnsName": "",
                                "ipOwnerId": self.account if eip else "amazon"}
                if pub else None,
                "interfaceType": n["interface_type"]})
        dash = (private or "").replace(".", "-")
        item = {
            "instanceId": vm.id, "imageId": x.get("image_id"),
            "instanceState": {"code": STATE_CODES.get(state, 0), "name": state},
            "privateDnsName": f"ip-{dash}.{self._dns_suffix(region)}" if private else "",
            "dnsName": f"ec2-{dash}.compute-1.amazonaws.com" if public else "",
            "reason": x.get("reason", ""), "amiLaunchIndex": 0, "productCodes": [],
            "instanceType": vm.instance_type, "launchTime": _iso(vm.created),
            "placement": {"availabilityZone": x.get("az", vm.region),
                          "groupName": x.get("placement_group") or "",
                          "tenancy": x.get("tenancy", "default")},
            "monitoring": {"state": "disabled"},
            "subnetId": x.get("subnet_id"), "vpcId": x.get("vpc_id"),
            "privateIpAddress": private, "ipAddress": public, "sourceDestCheck": True,
            "groupSet": [{"groupId": g, "groupName": x["sg_names"].get(g, "")}
                         for g in x.get("sg_ids", [])],
            "stateReason": None, "architecture": x.get("arch", "x86_64"),
            "rootDeviceType": "ebs", "rootDeviceName": "/dev/sda1",
            "blockDeviceMapping": [{"deviceName": v["device"], "ebs": {
                "volumeId": v["id"], "status": "attached" if state != "terminated"
                else "detached", "attachTime": _iso(vm.created),
                "deleteOnTermination": v["delete_on_termination"]}}
                for v in x.get("volumes", [])] if state != "terminated" else [],
            "instanceLifecycle": "spot" if x.get("spot") else None,
            "spotInstanceRequestId": x.get("spot_request_id"),
            "virtualizationType": "hvm", "clientToken": x.get("client_token") or "",
            "tagSet": _tag_set(x.get("tags")), "hypervisor": "xen",
            "networkInterfaceSet": nics,
            "iamInstanceProfile": {"arn": x["iam_arn"], "id": x["iam_id"]}
            if x.get("iam_arn") else None,
            "ebsOptimized": False, "enaSupport": True,
            "cpuOptions": {"coreCount": max(1, self._vcpus(vm.instance_type) // 2),
                           "threadsPerCore": 2 if self._vcpus(vm.instance_type) > 1 else 1},
            "capacityReservationSpecification": {"capacityReservationPreference": "open"},
            "metadataOptions": {"state": "applied", "httpTokens": "optional",
                                "httpPutResponseHopLimit": 1, "httpEndpoint": "enabled"},
            "bootMode": "uefi-preferred",
        }
        if state == "pending":
            item["stateReason"] = {"code": "pending", "message": "pending"}
        elif state in ("shutting-down", "terminated"):
            code, msg = x.get("state_reason") or ("Client.UserInitiatedShutdown",
                                                  "Client.UserInitiatedShutdown: User "
                                                  "initiated shutdown")
            item["stateReason"] = {"code": code, "message": msg}
        return item

    def _instance_extra(self, r, az, sub, img, itype, tags, spot=False):
        """The EC2 facts a VM keeps in vm.extra (caller holds the lock)."""
        sg = next((g for g in r.groups.values() if sub and g["vpc"] == sub["vpc"]
                   and g["name"] == "default"), None)
        with self.lock:
            self._seq += 1
            seq = self._seq
        nic = {"id": _rid("eni"), "attach_id": _rid("eni-attach"), "device_index": 0,
               "card_index": 0, "subnet_id": sub["id"] if sub else None,
               "vpc_id": sub["vpc"] if sub else None, "sg_ids": [sg["id"]] if sg else [],
               "interface_type": "interface", "public": bool(sub and sub["map_public"]),
               "delete_on_termination": True, "mac": self._mac()}
        return {
            "seq": seq, "region_name": r.name, "az": az, "reservation_id": _rid("r"),
            "subnet_id": nic["subnet_id"], "vpc_id": nic["vpc_id"], "sg_ids": list(nic["sg_ids"]),
            "sg_names": {sg["id"]: sg["name"]} if sg else {},
            "image_id": img["id"] if img else None, "image_name": img["name"] if img else None,
            "user": img["user"] if img else "ubuntu", "arch": self._arch(itype),
            "tags": dict(tags), "spot": spot, "spot_request_id": None, "spot_options": None,
            "placement_group": None, "tenancy": "default", "iam_profile": None,
            "iam_arn": None, "iam_id": None, "volume_size": img["size"] if img else 8,
            "volume_type": "gp2", "volumes": [{"id": _rid("vol"), "device": "/dev/sda1",
                                               "size": img["size"] if img else 8,
                                               "type": "gp2", "delete_on_termination": True}],
            "public": bool(sub and sub["map_public"] and self._is_public(r, sub)),
            "client_token": None, "params": {}, "request": {}, "user_data": None,
            "nics": [nic], "reason": "", "state_reason": None,
        }

    def _mac(self):
        return "0e:" + ":".join(_hex(2) for _ in range(5))

    def _make_spot_request(self, r, vm, opts):
        sir = f"sir-{_hex(8)}"
        r.spot_requests[sir] = {
            "id": sir, "instance": vm.id, "state": "active", "status": "fulfilled",
            "type": opts.get("SpotInstanceType", "one-time"),
            "behavior": opts.get("InstanceInterruptionBehavior", "terminate"),
            "max_price": opts.get("MaxPrice"), "created": time.time(),
            "az": vm.extra["az"], "instance_type": vm.instance_type,
            "image_id": vm.extra.get("image_id")}
        vm.extra.update(spot=True, spot_request_id=sir, spot_options=dict(opts))
        return sir

    def _spot_item(self, req):
        vm = self._vms.get(req["instance"])
        state, status = req["state"], req["status"]
        if state == "active" and (vm is None or vm.phase in ("terminating", "terminated")):
            state, status = "closed", "instance-terminated-by-user"
        return {"spotInstanceRequestId": req["id"], "state": state,
                "status": {"code": status, "message": status, "updateTime": _iso(time.time())},
                "instanceId": req["instance"], "type": req["type"],
                "spotPrice": req["max_price"], "createTime": _iso(req["created"]),
                "productDescription": "Linux/UNIX", "launchedAvailabilityZone": req["az"],
                "instanceInterruptionBehavior": req["behavior"],
                "launchSpecification": {"imageId": req["image_id"],
                                        "instanceType": req["instance_type"],
                                        "placement": {"availabilityZone": req["az"]}},
                "tagSet": []}

    # ------------------------------------------------------------------ EC2: the network

    def _ec2_DescribeAvailabilityZones(self, call, p, key):
        r = self._region(call.region)
        for z in p.get("ZoneName", []):
            if z not in r.zones:
                raise _Bad("InvalidParameterValue", f"Invalid availability zone: [{z}]")
        items = [{"zoneName": z, "zoneId": self._zone_id(r, z), "zoneState": "available",
                  "regionName": r.name, "zoneType": "availability-zone",
                  "optInStatus": "opt-in-not-required", "groupName": r.name,
                  "networkBorderGroup": r.name, "messageSet": []}
                 for z in r.zones if not p.get("ZoneName") or z in p["ZoneName"]]
        items = [i for i in items if not p.get("ZoneId") or i["zoneId"] in p["ZoneId"]]
        fields = {"region-name": "regionName", "zone-name": "zoneName", "zone-id": "zoneId",
                  "state": "zoneState", "zone-type": "zoneType", "opt-in-status": "optInStatus",
                  "group-name": "groupName"}
        items = self._filtered(items, p.get("Filter", []),
                               lambda i, n: [i[fields[n]]] if n in fields else None)
        return {"availabilityZoneInfo": items}

    def _vpc_item(self, v):
        return {"vpcId": v["id"], "ownerId": self.account, "cidrBlock": v["cidr"],
                "state": "available", "dhcpOptionsId": "dopt-" + v["id"][4:12],
                "instanceTenancy": "default", "isDefault": v["default"],
                "cidrBlockAssociationSet": [{"cidrBlock": v["cidr"],
                                             "associationId": "vpc-cidr-assoc-" + v["id"][4:],
                                             "cidrBlockState": {"state": "associated"}}],
                "tagSet": _tag_set(v["tags"])}

    def _ec2_DescribeVpcs(self, call, p, key):
        r = self._region(call.region)
        for v in p.get("VpcId", []):
            if v not in r.vpcs:
                raise _Bad("InvalidVpcID.NotFound", f"The vpc ID '{v}' does not exist")
        vpcs = [v for v in r.vpcs.values() if not p.get("VpcId") or v["id"] in p["VpcId"]]

        def values(v, n):
            return {"vpc-id": [v["id"]], "isDefault": [_bool_word(v["default"])],
                    "is-default": [_bool_word(v["default"])], "cidr": [v["cidr"]],
                    "cidr-block-association.cidr-block": [v["cidr"]], "state": ["available"],
                    "owner-id": [self.account]}.get(n) or _tags_values(v["tags"], n)
        vpcs = self._filtered(vpcs, p.get("Filter", []), values)
        page, token = self._page(vpcs, p, lambda v: v["id"])
        return {"vpcSet": [self._vpc_item(v) for v in page], "nextToken": token}

    def _subnet_item(self, r, s):
        net = ipaddress.ip_network(s["cidr"])
        return {"subnetId": s["id"], "vpcId": s["vpc"], "availabilityZone": s["az"],
                "availabilityZoneId": self._zone_id(r, s["az"]), "cidrBlock": s["cidr"],
                "state": "available", "availableIpAddressCount": max(0, net.num_addresses - 5),
                "mapPublicIpOnLaunch": s["map_public"], "defaultForAz": s["default_for_az"],
                "ownerId": self.account,
                "subnetArn": f"arn:aws:ec2:{r.name}:{self.account}:subnet/{s['id']}",
                "tagSet": _tag_set(s["tags"])}

    def _ec2_DescribeSubnets(self, call, p, key):
        r = self._region(call.region)
        for s in p.get("SubnetId", []):
            if s not in r.subnets:
                raise _Bad("InvalidSubnetID.NotFound", f"The subnet ID '{s}' does not exist")
        subs = [s for s in r.subnets.values() if not p.get("SubnetId") or s["id"] in p["SubnetId"]]

        def values(s, n):
            return {"vpc-id": [s["vpc"]], "subnet-id": [s["id"]], "availability-zone": [s["az"]],
                    "availabilityZone": [s["az"]],
                    "availability-zone-id": [self._zone_id(r, s["az"])],
                    "cidr-block": [s["cidr"]], "cidrBlock": [s["cidr"]],
                    "default-for-az": [_bool_word(s["default_for_az"])],
                    "defaultForAz": [_bool_word(s["default_for_az"])],
                    "map-public-ip-on-launch": [_bool_word(s["map_public"])],
                    "state": ["available"], "owner-id": [self.account]
                    }.get(n) or _tags_values(s["tags"], n)
        subs = self._filtered(subs, p.get("Filter", []), values)
        page, token = self._page(subs, p, lambda s: s["id"])
        return {"subnetSet": [self._subnet_item(r, s) for s in page], "nextToken": token}

    def _rt_item(self, t):
        assocs = []
        if t["main"]:
            assocs.append({"routeTableAssociationId": t["main_assoc"], "routeTableId": t["id"],
                           "main": True, "associationState": {"state": "associated"}})
        for sid, aid in t["subnets"].items():
            assocs.append({"routeTableAssociationId": aid, "routeTableId": t["id"],
                           "subnetId": sid, "main": False,
                           "associationState": {"state": "associated"}})
        return {"routeTableId": t["id"], "vpcId": t["vpc"], "ownerId": self.account,
                "associationSet": assocs, "propagatingVgwSet": [],
                "routeSet": [dict(x) for x in t["routes"]], "tagSet": _tag_set(t["tags"])}

    def _ec2_DescribeRouteTables(self, call, p, key):
        r = self._region(call.region)
        for t in p.get("RouteTableId", []):
            if t not in r.route_tables:
                raise _Bad("InvalidRouteTableID.NotFound", f"The routeTable ID '{t}' does not "
                                                           "exist")
        tables = [t for t in r.route_tables.values()
                  if not p.get("RouteTableId") or t["id"] in p["RouteTableId"]]

        def values(t, n):
            routes = t["routes"]
            v = {"route-table-id": [t["id"]], "vpc-id": [t["vpc"]],
                 "association.subnet-id": list(t["subnets"]),
                 "association.route-table-association-id":
                     ([t["main_assoc"]] if t["main"] else []) + list(t["subnets"].values()),
                 "association.route-table-id": [t["id"]] if t["main"] or t["subnets"] else [],
                 "association.main": (["true"] if t["main"] else [])
                 + (["false"] if t["subnets"] else []),
                 "route.destination-cidr-block": [x["destinationCidrBlock"] for x in routes],
                 "route.gateway-id": [x["gatewayId"] for x in routes if "gatewayId" in x],
                 "route.nat-gateway-id": [x["natGatewayId"] for x in routes
                                          if "natGatewayId" in x],
                 "route.transit-gateway-id": [x["transitGatewayId"] for x in routes
                                              if "transitGatewayId" in x],
                 "route.vpc-peering-connection-id": [x["vpcPeeringConnectionId"] for x in routes
                                                     if "vpcPeeringConnectionId" in x],
                 "owner-id": [self.account]}.get(n)
            return v if v is not None else _tags_values(t["tags"], n)
        tables = self._filtered(tables, p.get("Filter", []), values)
        page, token = self._page(tables, p, lambda t: t["id"])
        return {"routeTableSet": [self._rt_item(t) for t in page], "nextToken": token}

    # ------------------------------------------------------------------ EC2: images

    def _ec2_DescribeImages(self, call, p, key):
        r = self._region(call.region)
        for i in p.get("ImageId", []):
            if not re.fullmatch(r"ami-[0-9a-f]{8}([0-9a-f]{9})?", i):
                raise _Bad("InvalidAMIID.Malformed", f'Invalid id: "{i}" (expecting "ami-...")')
            if i not in r.images:
                raise _Bad("InvalidAMIID.NotFound", f"The image id '[{i}]' does not exist")
        imgs = [i for i in r.images.values() if not p.get("ImageId") or i["id"] in p["ImageId"]]
        owners = p.get("Owner", [])
        if owners:
            imgs = [i for i in imgs if any(
                o == i["owner"] or (o == "self" and i["owner"] == key.account)
                or (o == i["alias"] and o is not None) for o in owners)]
        elif not p.get("ImageId"):   # AWS lists every public image then: the fake's own only
            imgs = [i for i in imgs if i["public"] or i["owner"] == key.account]

        def values(i, n):
            return {"name": [i["name"]], "architecture": [i["arch"]], "state": [i["state"]],
                    "image-id": [i["id"]], "owner-id": [i["owner"]],
                    "owner-alias": [i["alias"]] if i["alias"] else [],
                    "is-public": [_bool_word(i["public"])], "image-type": ["machine"],
                    "root-device-type": ["ebs"], "root-device-name": ["/dev/sda1"],
                    "virtualization-type": ["hvm"], "hypervisor": ["xen"],
                    "platform-details": ["Linux/UNIX"], "creation-date": [i["created"]],
                    "description": [i["name"]]}.get(n)
        imgs = self._filtered(imgs, p.get("Filter", []), values)
        return {"imagesSet": [self._image_item(i) for i in imgs]}

    # ------------------------------------------------------------------ EC2: security groups

    def _default_vpc(self, r):
        vpc = next((v for v in r.vpcs.values() if v["default"]), None)
        if vpc is None:
            raise _Bad("VPCIdNotSpecified", "No default VPC for this user")
        return vpc

    def _ec2_DescribeSecurityGroups(self, call, p, key):
        r = self._region(call.region)
        for g in p.get("GroupId", []):
            if g not in r.groups:
                raise _Bad("InvalidGroup.NotFound", f"The security group '{g}' does not exist")
        groups = [g for g in r.groups.values() if not p.get("GroupId") or g["id"] in p["GroupId"]]
        if p.get("GroupName"):
            vpc = self._default_vpc(r)
            for name in p["GroupName"]:
                if not any(g["name"] == name and g["vpc"] == vpc["id"] for g in groups):
                    raise _Bad("InvalidGroup.NotFound", f"The security group '{name}' does not "
                                                        f"exist in default VPC '{vpc['id']}'")
            groups = [g for g in groups if g["vpc"] == vpc["id"] and g["name"] in p["GroupName"]]

        def values(g, n):
            return {"group-name": [g["name"]], "group-id": [g["id"]], "vpc-id": [g["vpc"]],
                    "description": [g["description"]], "owner-id": [self.account]
                    }.get(n) or _tags_values(g["tags"], n)
        groups = self._filtered(groups, p.get("Filter", []), values)
        page, token = self._page(groups, p, lambda g: g["id"])
        return {"securityGroupInfo": [self._sg_item(g) for g in page], "nextToken": token}

    def _tag_specs(self, p, allowed):
        """{resource type: {key: value}} of TagSpecification.N, checked like EC2."""
        out = {}
        for spec in p.get("TagSpecification", []):
            rt = spec.get("ResourceType")
            if rt not in allowed:
                raise _Bad("InvalidParameterValue", f"'{rt}' is not a valid taggable resource "
                                                    "type for this operation.")
            tags = out.setdefault(rt, {})
            for t in spec.get("Tag", []):
                k, v = t.get("Key"), t.get("Value", "")
                if not k:
                    raise _Bad("InvalidParameterValue", "Tag keys must not be empty")
                if k.lower().startswith("aws:"):
                    raise _Bad("InvalidParameterValue", "Tag keys starting with 'aws:' are "
                                                        "reserved for internal use")
                if len(k) > 128 or len(v) > 256:
                    raise _Bad("InvalidParameterValue", f"Tag {k!r}: the key is at most 128 "
                                                        "characters, the value at most 256")
                tags[k] = v
            if len(tags) > 50:
                raise _Bad("TagLimitExceeded", "The maximum number of tags for a resource is 50")
        return out

    def _ec2_CreateSecurityGroup(self, call, p, key):
        r = self._region(call.region)
        for f in ("GroupName", "GroupDescription"):
            if not p.get(f):
                raise _Bad("MissingParameter", f"The request must contain the parameter {f}")
        name = p["GroupName"]
        if name.lower().startswith("sg-") or len(name) > 255:
            raise _Bad("InvalidParameterValue", f"Value ({name}) for parameter GroupName is "
                                                "invalid.")
        if p.get("VpcId"):
            vpc = r.vpcs.get(p["VpcId"])
            if vpc is None:
                raise _Bad("InvalidVpcID.NotFound", f"The vpc ID '{p['VpcId']}' does not exist")
        else:
            vpc = self._default_vpc(r)
        if any(g["name"] == name and g["vpc"] == vpc["id"] for g in r.groups.values()):
            raise _Bad("InvalidGroup.Duplicate", f"The security group '{name}' already exists "
                                                 f"for VPC '{vpc['id']}'")
        tags = self._tag_specs(p, ("security-group",)).get("security-group", {})
        sg = {"id": _rid("sg"), "name": name, "description": p["GroupDescription"],
              "vpc": vpc["id"], "tags": tags, "rules": []}
        sg["rules"].append(self._rule(True, "-1", None, None, cidr="0.0.0.0/0"))
        r.groups[sg["id"]] = sg
        return {"groupId": sg["id"], "tagSet": _tag_set(tags)}

    def _new_rules(self, r, sg, p, egress):
        perms = list(p.get("IpPermissions", []))
        if "IpProtocol" in p or "CidrIp" in p or "SourceSecurityGroupName" in p:
            perm = {"IpProtocol": p.get("IpProtocol", "-1"), "FromPort": p.get("FromPort"),
                    "ToPort": p.get("ToPort")}
            if "CidrIp" in p:
                perm["IpRanges"] = [{"CidrIp": p["CidrIp"]}]
            if "SourceSecurityGroupName" in p:
                perm["Groups"] = [{"GroupName": p["SourceSecurityGroupName"]}]
            perms.append(perm)
        if not perms:
            raise _Bad("MissingParameter", "The request must contain the parameter "
                                           "ipPermissions")
        rules = []
        for perm in perms:
            proto = str(perm.get("IpProtocol", "")).lower()
            proto = {"6": "tcp", "17": "udp", "1": "icmp", "all": "-1"}.get(proto, proto)
            if proto not in ("tcp", "udp", "icmp", "-1") and not proto.isdigit():
                raise _Bad("InvalidParameterValue", f"Invalid value '{perm.get('IpProtocol')}' "
                                                    "for IP protocol. Unknown protocol.")
            lo, hi = perm.get("FromPort"), perm.get("ToPort")
            if proto in ("tcp", "udp"):
                if lo is None or hi is None or not 0 <= lo <= hi <= 65535:
                    raise _Bad("InvalidParameterValue", "Invalid value for portRange. Must "
                                                        "specify both from and to ports with "
                                                        "TCP/UDP.")
            elif proto == "-1":
                lo = hi = None
            sources = []
            for rng in perm.get("IpRanges", []):
                try:
                    cidr = str(ipaddress.ip_network(rng.get("CidrIp", ""), strict=False))
                except ValueError:
                    raise _Bad("InvalidParameterValue", f"CIDR block {rng.get('CidrIp')} is "
                                                        "malformed")
                sources.append(("cidr", cidr, rng.get("Description")))
            for grp in perm.get("Groups", []):
                gid = grp.get("GroupId")
                if gid is None and grp.get("GroupName"):
                    gid = next((g["id"] for g in r.groups.values() if g["name"] ==
                                grp["GroupName"] and g["vpc"] == sg["vpc"]), None)
                if gid not in r.groups or r.groups[gid]["vpc"] != sg["vpc"]:
                    raise _Bad("InvalidGroup.NotFound", f"The security group '{gid or grp}' "
                                                        "does not exist")
                sources.append(("group", gid, grp.get("Description")))
            if not sources:
                raise _Bad("InvalidParameterValue", "An IpPermission needs IpRanges or Groups")
            for kind, val, desc in sources:
                rule = self._rule(egress, proto, lo, hi, cidr=val if kind == "cidr" else None,
                                  group=val if kind == "group" else None, description=desc)
                same = [x for x in sg["rules"] + rules if (x["egress"], x["proto"], x["from"],
                        x["to"], x["cidr"], x["group"]) == (egress, proto, lo, hi, rule["cidr"],
                                                             rule["group"])]
                if same:
                    ports = "" if proto == "-1" else f", from port: {lo}, to port: {hi}"
                    raise _Bad("InvalidPermission.Duplicate",
                               f'the specified rule "peer: {val}, {proto.upper()}{ports}, '
                               'ALLOW" already exists')
                rules.append(rule)
        return rules

    def _authorize(self, call, p, egress):
        r = self._region(call.region)
        gid = p.get("GroupId")
        if gid is None and not egress and p.get("GroupName"):
            vpc = self._default_vpc(r)
            gid = next((g["id"] for g in r.groups.values() if g["name"] == p["GroupName"]
                        and g["vpc"] == vpc["id"]), p["GroupName"])
        if gid is None:
            raise _Bad("MissingParameter", "The request must contain the parameter groupId")
        sg = r.groups.get(gid)
        if sg is None:
            raise _Bad("InvalidGroup.NotFound", f"The security group '{gid}' does not exist")
        rules = self._new_rules(r, sg, p, egress)
        sg["rules"].extend(rules)
        return {"return": True, "securityGroupRuleSet": [
            {"securityGroupRuleId": x["id"], "groupId": sg["id"], "groupOwnerId": self.account,
             "isEgress": egress, "ipProtocol": x["proto"],
             "fromPort": -1 if x["from"] is None else x["from"],
             "toPort": -1 if x["to"] is None else x["to"], "cidrIpv4": x["cidr"],
             "referencedGroupInfo": {"groupId": x["group"], "userId": self.account}
             if x["group"] else None, "description": x["description"]} for x in rules]}

    def _ec2_AuthorizeSecurityGroupIngress(self, call, p, key):
        return self._authorize(call, p, False)

    def _ec2_AuthorizeSecurityGroupEgress(self, call, p, key):
        return self._authorize(call, p, True)

    # ------------------------------------------------------------------ EC2: placement groups

    def _pg_item(self, r, g):
        return {"groupName": g["name"], "state": g["state"], "strategy": g["strategy"],
                "partitionCount": g.get("partitions"), "groupId": g["id"],
                "groupArn": f"arn:aws:ec2:{r.name}:{self.account}:placement-group/{g['name']}",
                "spreadLevel": g.get("spread_level"), "tagSet": _tag_set(g["tags"])}

    def _ec2_CreatePlacementGroup(self, call, p, key):
        r = self._region(call.region)
        name = p.get("GroupName")
        if not name:
            raise _Bad("MissingParameter", "The request must contain the parameter GroupName")
        strategy = p.get("Strategy")
        if strategy not in ("cluster", "spread", "partition"):
            raise _Bad("InvalidParameterValue", f"Value ({strategy}) for parameter strategy is "
                                                "invalid. Expecting one of cluster, spread, "
                                                "partition.")
        if name in r.placement_groups:
            raise _Bad("InvalidPlacementGroup.Duplicate", f"The Placement Group '{name}' "
                                                          "already exists.")
        tags = self._tag_specs(p, ("placement-group",)).get("placement-group", {})
        g = {"name": name, "id": _rid("pg"), "strategy": strategy, "state": "available",
             "tags": tags, "partitions": p.get("PartitionCount") if strategy == "partition"
             else None, "spread_level": p.get("SpreadLevel")}
        r.placement_groups[name] = g
        return {"placementGroup": self._pg_item(r, g)}

    def _ec2_DeletePlacementGroup(self, call, p, key):
        r = self._region(call.region)
        name = p.get("GroupName")
        if not name:
            raise _Bad("MissingParameter", "The request must contain the parameter GroupName")
        if name not in r.placement_groups:
            raise _Bad("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is "
                                                        "unknown.")
        if any(self._live(v) and v.extra.get("region_name") == r.name
               and v.extra.get("placement_group") == name for v in self._vms.values()):
            raise _Bad("InvalidPlacementGroup.InUse", f"The placement group '{name}' is in use "
                                                      "and may not be deleted.")
        del r.placement_groups[name]
        return {"return": True}

    def _ec2_DescribePlacementGroups(self, call, p, key):
        r = self._region(call.region)
        for name in p.get("GroupName", []):
            if name not in r.placement_groups:
                raise _Bad("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is "
                                                            "unknown.")
        groups = [g for g in r.placement_groups.values()
                  if (not p.get("GroupName") or g["name"] in p["GroupName"])
                  and (not p.get("GroupId") or g["id"] in p["GroupId"])]

        def values(g, n):
            return {"group-name": [g["name"]], "group-id": [g["id"]],
                    "strategy": [g["strategy"]], "state": [g["state"]]
                    }.get(n) or _tags_values(g["tags"], n)
        groups = self._filtered(groups, p.get("Filter", []), values)
        return {"placementGroupSet": [self._pg_item(r, g) for g in groups]}

    # ------------------------------------------------------------------ EC2: instances

    def _ec2_DescribeInstanceTypes(self, call, p, key):
        names = p.get("InstanceType") or list(self.instance_types)
        bad = [n for n in names if not self._valid_type(n)]
        if bad:
            raise _Bad("InvalidInstanceType", "The following supplied instance types do not "
                                              f"exist: [{', '.join(bad)}]")
        items = []
        for n in names:
            t = self._type_info(n)
            perf = "Up to 10 Gigabit" if t["cards"] == 1 else f"{t['cards'] * 100} Gigabit"
            net = {"networkPerformance": perf,
                   "maximumNetworkInterfaces": t["cards"] * t["card_enis"],
                   "maximumNetworkCards": t["cards"], "defaultNetworkCardIndex": 0,
                   "networkCards": [{"networkCardIndex": i, "networkPerformance":
                                     "100 Gigabit" if t["cards"] > 1 else "Up to 10 Gigabit",
                                     "maximumNetworkInterfaces": t["card_enis"]}
                                    for i in range(t["cards"])],
                   "efaSupported": t["efa"] > 0,
                   "efaInfo": {"maximumEfaInterfaces": t["efa"]} if t["efa"] else None}
            items.append({"instanceType": n, "currentGeneration": True,
                          "processorInfo": {"supportedArchitectures": [t["arch"]]},
                          "vCpuInfo": {"defaultVCpus": t["vcpus"]},
                          "memoryInfo": {"sizeInMiB": t["memory_mib"]}, "networkInfo": net,
                          "gpuInfo": {"gpus": [{"count": t["gpus"], "name": "GPU",
                                                "manufacturer": "NVIDIA"}]}
                          if t["gpus"] else None})

        def values(i, n):
            net = i["networkInfo"]
            return {"instance-type": [i["instanceType"]],
                    "network-info.efa-supported": [_bool_word(net["efaSupported"])],
                    "network-info.efa-info.maximum-efa-interfaces":
                        [net["efaInfo"]["maximumEfaInterfaces"]] if net["efaInfo"] else [],
                    "network-info.maximum-network-cards": [net["maximumNetworkCards"]],
                    "vcpu-info.default-vcpus": [i["vCpuInfo"]["defaultVCpus"]],
                    "processor-info.supported-architecture":
                        i["processorInfo"]["supportedArchitectures"],
                    "current-generation": ["true"]}.get(n)
        items = self._filtered(items, p.get("Filter", []), values)
        return {"instanceTypeSet": items}

    def _instances_by_id(self, ids, region):
        """The VMs of ids (in region), or InvalidInstanceID.Malformed / .NotFound."""
        for i in ids:
            if not re.fullmatch(r"i-[0-9a-f]{8}([0-9a-f]{9})?", i):
                raise _Bad("InvalidInstanceID.Malformed", f'Invalid id: "{i}"')
        found = {v.id: v for v in self._vms.values() if v.extra.get("region_name") == region}
        missing = [i for i in ids if i not in found]
        if len(missing) == 1:
            raise _Bad("InvalidInstanceID.NotFound", f"The instance ID '{missing[0]}' does "
                                                     "not exist")
        if missing:
            raise _Bad("InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(missing)}' "
                                                     "do not exist")
        return [found[i] for i in dict.fromkeys(ids)]

    def _ec2_DescribeInstances(self, call, p, key):
        ids = p.get("InstanceId", [])
        if ids and "MaxResults" in p:
            raise _Bad("InvalidParameterCombination", "The parameter instancesSet cannot be "
                                                      "used with the parameter maxResults")
        vms = self._instances_by_id(ids, call.region) if ids else \
            [v for v in self._vms.values() if v.extra.get("region_name") == call.region]

        def values(vm, n):
            x = vm.extra
            item = self._instance_item(vm)
            v = {"instance-id": [vm.id], "instance-state-name": [self.status_of(vm)],
                 "instance-state-code": [str(item["instanceState"]["code"])],
                 "client-token": [x["client_token"]] if x.get("client_token") else [],
                 "availability-zone": [x.get("az")], "vpc-id": [x.get("vpc_id")],
                 "subnet-id": [x.get("subnet_id")], "instance-type": [vm.instance_type],
                 "image-id": [x.get("image_id")],
                 "placement-group-name": [x["placement_group"]]
                 if x.get("placement_group") else [],
                 "instance-lifecycle": ["spot"] if x.get("spot") else [],
                 "spot-instance-request-id": [x["spot_request_id"]]
                 if x.get("spot_request_id") else [],
                 "reservation-id": [x.get("reservation_id")],
                 "private-ip-address": [item["privateIpAddress"]]
                 if item["privateIpAddress"] else [],
                 "ip-address": [item["ipAddress"]] if item["ipAddress"] else [],
                 "instance.group-id": list(x.get("sg_ids", [])),
                 "network-interface.network-interface-id": [n["id"] for n in x.get("nics", [])],
                 "owner-id": [self.account]}.get(n)
            return v if v is not None else _tags_values(x.get("tags") or {}, n)
        vms = self._filtered(vms, p.get("Filter", []), values)
        page, token = self._page(vms, p, lambda v: v.extra.get("seq", 0))
        return {"reservationSet": [{"reservationId": v.extra.get("reservation_id"),
                                    "ownerId": self.account, "groupSet": [],
                                    "instancesSet": [self._instance_item(v)]} for v in page],
                "nextToken": token}

    def _ec2_TerminateInstances(self, call, p, key):
        ids = p.get("InstanceId", [])
        if not ids:
            raise _Bad("MissingParameter", "The request must contain the parameter InstanceId")
        out = []
        for vm in self._instances_by_id(ids, call.region):
            before = self.status_of(vm)
            if vm.phase in ("booting", "running"):
                x = vm.extra
                x["reason"] = time.strftime("User initiated (%Y-%m-%d %H:%M:%S GMT)",
                                            time.gmtime())
                x["state_reason"] = x.get("state_reason") or (
                    "Client.UserInitiatedShutdown",
                    "Client.UserInitiatedShutdown: User initiated shutdown")
                self.terminate_vm(vm)
            after = self.status_of(vm)
            out.append({"instanceId": vm.id,
                        "currentState": {"code": STATE_CODES.get(after, 0), "name": after},
                        "previousState": {"code": STATE_CODES.get(before, 0), "name": before}})
        return {"instancesSet": out}

    def _ec2_DescribeSpotInstanceRequests(self, call, p, key):
        r = self._region(call.region)
        for s in p.get("SpotInstanceRequestId", []):
            if s not in r.spot_requests:
                raise _Bad("InvalidSpotInstanceRequestID.NotFound", f"The spot instance "
                                                                    f"request ID '{s}' does "
                                                                    "not exist")
        items = [self._spot_item(s) for s in r.spot_requests.values()
                 if not p.get("SpotInstanceRequestId") or s["id"] in p["SpotInstanceRequestId"]]
        fields = {"spot-instance-request-id": "spotInstanceRequestId", "state": "state",
                  "instance-id": "instanceId", "type": "type",
                  "launched-availability-zone": "launchedAvailabilityZone"}
        items = self._filtered(items, p.get("Filter", []), lambda i, n: (
            [i["status"]["code"]] if n == "status-code" else
            [i[fields[n]]] if n in fields else None))
        page, token = self._page(items, p, lambda i: i["spotInstanceRequestId"])
        return {"spotInstanceRequestSet": page, "nextToken": token}

    def _ec2_CancelSpotInstanceRequests(self, call, p, key):
        r = self._region(call.region)
        ids = p.get("SpotInstanceRequestId", [])
        if not ids:
            raise _Bad("MissingParameter", "The request must contain the parameter "
                                           "SpotInstanceRequestId")
        for s in ids:
            if s not in r.spot_requests:
                raise _Bad("InvalidSpotInstanceRequestID.NotFound", f"The spot instance "
                                                                    f"request ID '{s}' does "
                                                                    "not exist")
        for s in ids:
            req = r.spot_requests[s]
            if req["state"] != "cancelled":
                vm = self._vms.get(req["instance"])
                running = vm is not None and vm.phase in ("booting", "running")
                req["state"] = "cancelled"
                req["status"] = "request-canceled-and-instance-running" if running \
                    else "canceled-before-fulfillment"
        return {"spotInstanceRequestSet": [{"spotInstanceRequestId": s, "state": "cancelled"}
                                           for s in ids]}

    # ------------------------------------------------------------------ EC2: Elastic IPs
    #
    # An Elastic IP is {id (eipalloc-), placeholder, domain, tags, region, created, assoc}:
    # assoc None, or {id (eipassoc-), eni, instance}. Its public address is the only thing
    # not AWS's: the fake never hands out an address a client could reach outside the test
    # hosts, so an address that is not associated shows its placeholder, an address of
    # 192.0.2.0/24 (TEST-NET-1, RFC 5737: documentation only, never routed), and an address
    # associated with an interface of an instance that has a host shows that host's address
    # (the interface's private address): DescribeAddresses' publicIp, the instance's
    # ipAddress (primary interface) and the interface's association/publicIp. So the answer
    # of AllocateAddress is always the placeholder: a client must read the address after
    # AssociateAddress (DescribeAddresses or DescribeInstances), as it can on AWS, where both
    # are the same.

    def _eip_gc(self):
        """Drop the associations of instances that are terminated or gone (caller holds the
        lock): the address stays allocated, as on AWS."""
        for r in self._regions.values():
            for a in r.addresses.values():
                assoc = a["assoc"]
                if assoc is not None:
                    vm = self._vms.get(assoc["instance"])
                    if vm is None or vm.phase == "terminated":
                        a["assoc"] = None

    def _nic_private(self, vm, nic):
        """An interface's private IPv4 address: its host's address (every interface of an
        instance has the same one, the only address the fake hands out), none for an
        efa-only interface (EFA-only interfaces have no IP address), none without a host."""
        if vm.host is None or self.status_of(vm) == "terminated" or \
                nic["interface_type"] == "efa-only":
            return None
        return vm.host.addr

    def _eip_public(self, a):
        """An Elastic IP's public address now: the host's address while it is associated with
        an interface that has one, else its TEST-NET-1 placeholder."""
        assoc = a["assoc"]
        if assoc is not None:
            vm = self._vms.get(assoc["instance"])
            nic = vm and next((n for n in vm.extra.get("nics", []) if n["id"] == assoc["eni"]),
                              None)
            addr = nic and self._nic_private(vm, nic)
            if addr:
                return addr
        return a["placeholder"]

    def _eips_of_vm(self, vm):
        """{interface id: Elastic IP} of the addresses associated with vm's interfaces."""
        r = self._regions.get(vm.extra.get("region_name"))
        if r is None:
            return {}
        return {a["assoc"]["eni"]: a for a in r.addresses.values()
                if a["assoc"] is not None and a["assoc"]["instance"] == vm.id}

    def _find_eni(self, r, eni_id):
        """(vm, interface) of an interface of a live instance of region r, or
        InvalidNetworkInterfaceID.NotFound (an instance's interfaces go with it)."""
        for vm in self._vms.values():
            if vm.extra.get("region_name") != r.name or vm.phase == "terminated":
                continue
            for n in vm.extra.get("nics", []):
                if n["id"] == eni_id:
                    return vm, n
        raise _Bad("InvalidNetworkInterfaceID.NotFound", f"The networkInterface ID '{eni_id}' "
                                                         "does not exist")

    def _address(self, r, alloc_id=None, public_ip=None):
        """The Elastic IP of an allocation id, else of a (current) public address."""
        if alloc_id is not None:
            a = r.addresses.get(alloc_id)
            if a is None:
                raise _Bad("InvalidAllocationID.NotFound", f"The allocation ID '{alloc_id}' "
                                                           "does not exist")
            return a
        a = next((a for a in r.addresses.values() if self._eip_public(a) == public_ip), None)
        if a is None:
            raise _Bad("InvalidAddress.NotFound", f"Address '{public_ip}' not found.")
        return a

    def _address_item(self, r, a):
        item = {"publicIp": self._eip_public(a), "allocationId": a["id"], "domain": a["domain"],
                "publicIpv4Pool": "amazon", "networkBorderGroup": r.name,
                "tagSet": _tag_set(a["tags"])}
        assoc = a["assoc"]
        if assoc is not None:
            vm = self._vms.get(assoc["instance"])
            nic = next((n for n in vm.extra.get("nics", []) if n["id"] == assoc["eni"]), None)
            item.update(associationId=assoc["id"], instanceId=vm.id,
                        networkInterfaceId=assoc["eni"], networkInterfaceOwnerId=self.account,
                        privateIpAddress=self._nic_private(vm, nic) if nic else None)
        return item

    def _ec2_AllocateAddress(self, call, p, key):
        r = self._region(call.region)
        self._eip_gc()
        domain = p.get("Domain", "vpc")
        if domain != "vpc":
            raise _Bad("InvalidParameterValue", f"Invalid value '{domain}' for domain: EC2-Classic "
                                                "is retired, the only domain is vpc.")
        for f in ("Address", "CustomerOwnedIpv4Pool"):
            if p.get(f):
                raise _Bad("InvalidParameterValue", f"The fake allocates from Amazon's pool "
                                                    f"only: {f} is not supported.")
        if p.get("PublicIpv4Pool", "amazon") != "amazon":
            raise _Bad("InvalidPublicIpv4PoolID.NotFound", f"The public IPv4 pool ID "
                                                           f"'{p['PublicIpv4Pool']}' does not "
                                                           "exist")
        if p.get("NetworkBorderGroup", r.name) != r.name:
            raise _Bad("InvalidParameterValue", f"Invalid value '{p['NetworkBorderGroup']}' for "
                                                f"networkBorderGroup: {r.name} is this "
                                                "region's.")
        tags = self._tag_specs(p, ("elastic-ip",)).get("elastic-ip", {})
        if self.address_limit is not None and len(r.addresses) >= self.address_limit:
            raise _Bad("AddressLimitExceeded", "The maximum number of addresses has been "
                                               "reached.")
        free = [f"192.0.2.{i}" for i in range(1, 255) if f"192.0.2.{i}" not in self._placeholders]
        if not free:
            raise _Bad("AddressLimitExceeded", "The maximum number of addresses has been "
                                               "reached. (The fake holds at most 254 Elastic "
                                               "IPs, its TEST-NET-1 placeholders.)")
        a = {"id": _rid("eipalloc"), "placeholder": free[0], "domain": "vpc", "tags": tags,
             "region": r.name, "created": time.time(), "assoc": None}
        self._placeholders.add(free[0])
        r.addresses[a["id"]] = a
        return {"publicIp": a["placeholder"], "allocationId": a["id"],
                "publicIpv4Pool": "amazon", "networkBorderGroup": r.name, "domain": "vpc"}

    def _ec2_AssociateAddress(self, call, p, key):
        r = self._region(call.region)
        self._eip_gc()
        if not p.get("AllocationId") and not p.get("PublicIp"):
            raise _Bad("MissingParameter", "The request must contain the parameter AllocationId")
        a = self._address(r, p.get("AllocationId"), p.get("PublicIp"))
        eni_id, iid = p.get("NetworkInterfaceId"), p.get("InstanceId")
        if eni_id and iid:
            raise _Bad("InvalidParameterCombination", "You can specify either an instance ID or "
                                                      "a network interface ID, but not both.")
        if iid:
            (vm,) = self._instances_by_id([iid], r.name)
            if vm.phase == "terminated":
                raise _Bad("IncorrectInstanceState", f"The instance '{iid}' is not in a valid "
                                                     "state for this operation.")
            nics = vm.extra.get("nics", [])
            if len(nics) != 1:
                raise _Bad("InvalidInstanceID", f"There are multiple interfaces attached to "
                                                f"instance '{iid}'. Please specify an interface "
                                                "ID for the operation instead.")
            nic = nics[0]
        elif eni_id:
            vm, nic = self._find_eni(r, eni_id)
        else:
            raise _Bad("MissingParameter", "Either an instance ID or a network interface ID "
                                           "must be specified.")
        if nic["interface_type"] == "efa-only":
            raise _Bad("InvalidParameterValue", f"The network interface '{nic['id']}' is an "
                                                "EFA-only interface: it has no IPv4 address to "
                                                "associate an Elastic IP address with.")
        mine = self._nic_private(vm, nic)
        if p.get("PrivateIpAddress") and p["PrivateIpAddress"] != mine:
            raise _Bad("InvalidParameterValue", f"The private IP address "
                                                f"{p['PrivateIpAddress']} is not an address of "
                                                f"the network interface '{nic['id']}'.")
        if a["assoc"] is not None and a["assoc"]["eni"] == nic["id"]:
            return {"associationId": a["assoc"]["id"]}          # idempotent, as on AWS
        other = next((b for b in r.addresses.values() if b is not a and b["assoc"] is not None
                      and b["assoc"]["eni"] == nic["id"]), None)
        if not p.get("AllowReassociation", True):
            if a["assoc"] is not None:
                raise _Bad("Resource.AlreadyAssociated", f"resource {a['id']} is already "
                                                         "associated with associate-id "
                                                         f"{a['assoc']['id']}")
            if other is not None:
                raise _Bad("Resource.AlreadyAssociated", f"resource {nic['id']} is already "
                                                         "associated with associate-id "
                                                         f"{other['assoc']['id']}")
        if other is not None:      # the interface's address before stays allocated
            other["assoc"] = None
        a["assoc"] = {"id": _rid("eipassoc"), "eni": nic["id"], "instance": vm.id}
        return {"associationId": a["assoc"]["id"]}

    def _ec2_DescribeAddresses(self, call, p, key):
        r = self._region(call.region)
        self._eip_gc()
        addrs = list(r.addresses.values())
        ids = p.get("AllocationId", [])
        missing = [i for i in ids if i not in r.addresses]
        if missing:
            raise _Bad("InvalidAllocationID.NotFound", f"The allocation ID '{missing[0]}' does "
                                                       "not exist" if len(missing) == 1 else
                       f"The allocation IDs '{', '.join(missing)}' do not exist")
        if ids:
            addrs = [a for a in addrs if a["id"] in ids]
        for ip in p.get("PublicIp", []):
            self._address(r, public_ip=ip)
        if p.get("PublicIp"):
            addrs = [a for a in addrs if self._eip_public(a) in p["PublicIp"]]
        items = [self._address_item(r, a) for a in addrs]
        fields = {"allocation-id": "allocationId", "association-id": "associationId",
                  "instance-id": "instanceId", "network-interface-id": "networkInterfaceId",
                  "network-interface-owner-id": "networkInterfaceOwnerId",
                  "private-ip-address": "privateIpAddress", "public-ip": "publicIp",
                  "domain": "domain", "network-border-group": "networkBorderGroup",
                  "public-ipv4-pool": "publicIpv4Pool"}

        def values(i, n):
            if n in fields:
                return [i[fields[n]]] if i.get(fields[n]) else []
            return _tags_values({t["key"]: t["value"] for t in i["tagSet"]}, n)
        return {"addressesSet": self._filtered(items, p.get("Filter", []), values)}

    def _ec2_DisassociateAddress(self, call, p, key):
        r = self._region(call.region)
        self._eip_gc()
        assoc_id = p.get("AssociationId")
        if assoc_id:
            a = next((a for a in r.addresses.values()
                      if a["assoc"] is not None and a["assoc"]["id"] == assoc_id), None)
            if a is None:
                raise _Bad("InvalidAssociationID.NotFound", f"The association ID '{assoc_id}' "
                                                            "does not exist")
        elif p.get("PublicIp"):
            a = self._address(r, public_ip=p["PublicIp"])
        else:
            raise _Bad("MissingParameter", "The request must contain the parameter "
                                           "AssociationId")
        a["assoc"] = None
        return {"return": True}

    def _ec2_ReleaseAddress(self, call, p, key):
        r = self._region(call.region)
        self._eip_gc()
        if not p.get("AllocationId") and not p.get("PublicIp"):
            raise _Bad("MissingParameter", "The request must contain the parameter AllocationId")
        if p.get("NetworkBorderGroup", r.name) != r.name:
            raise _Bad("InvalidAddress.NotFound", f"Address not found in network border group "
                                                  f"'{p['NetworkBorderGroup']}'.")
        a = self._address(r, p.get("AllocationId"), p.get("PublicIp"))
        if a["assoc"] is not None:
            vm = self._vms.get(a["assoc"]["instance"])
            nic = next((n for n in vm.extra.get("nics", []) if n["id"] == a["assoc"]["eni"]), {})
            sub = r.subnets.get(nic.get("subnet_id"))
            vpc = r.vpcs.get(sub["vpc"]) if sub else None
            if not (vpc and vpc["default"]):   # a default VPC's address is disassociated
                raise _Bad("InvalidIPAddress.InUse", f"Address {self._eip_public(a)} "
                                                     f"({a['id']}) is in use.")
        del r.addresses[a["id"]]
        self._placeholders.discard(a["placeholder"])
        return {"return": True}

    # ------------------------------------------------------------------ EC2: RunInstances

    def _ec2_RunInstances(self, call, p, key):
        with self._run_lock:
            with self.lock:
                r = self._region(call.region)
                token = p.get("ClientToken")
                if token is not None:
                    if len(token) > 64 or not token.isascii():
                        raise _Bad("InvalidParameterValue", f"Value ({token}) for parameter "
                                                            "clientToken is invalid. It must be "
                                                            "at most 64 ASCII characters.")
                    seen = r.tokens.get(token)
                    if seen is not None and time.time() - seen[0] < 86400:
                        if seen[1] != call.params:
                            raise _Bad("IdempotentParameterMismatch", "Arguments on this "
                                       "idempotent request are inconsistent with arguments "
                                       "used in previous request(s).")
                        return copy.deepcopy(seen[2])
                plan = self._run_plan(r, call, p)
            try:
                vm = self.launch_vm(plan["name"], plan["type"], plan["az"], plan["pubkeys"],
                                    **plan["extra"])
            except NoCapacity:
                raise self._no_capacity(r, plan["type"], plan["az"], plan["spot"])
            with self.lock:
                if plan["spot"] is not None:
                    self._make_spot_request(r, vm, plan["spot"])
                answer = {"reservationId": vm.extra["reservation_id"], "ownerId": self.account,
                          "groupSet": [], "instancesSet": [self._instance_item(vm)]}
                if token is not None:
                    r.tokens[token] = (time.time(), dict(call.params), copy.deepcopy(answer))
                return answer

    def _no_capacity(self, r, itype, az, spot):
        if spot is not None:
            return self._fail("InsufficientInstanceCapacity", "There is no Spot capacity "
                              "available that matches your request.", 500)
        others = ", ".join(z for z in r.zones if z != az)
        return self._fail("InsufficientInstanceCapacity", f"We currently do not have "
                          f"sufficient {itype} capacity in the Availability Zone you requested "
                          f"({az}). Our system will be working on provisioning additional "
                          f"capacity. You can currently get {itype} capacity by not "
                          f"specifying an Availability Zone in your request or choosing "
                          f"{others}.", 500)

    def _run_plan(self, r, call, p):
        """Check a RunInstances like EC2 (caller holds the lock): what to launch."""
        for f in ("ImageId", "InstanceType", "MinCount", "MaxCount"):
            if f not in p:
                raise _Bad("MissingParameter", f"The request must contain the parameter {f}")
        if p["MinCount"] != 1 or p["MaxCount"] != 1:
            raise _Bad("InvalidParameterValue", "The fake launches one instance per call: "
                                                "MinCount and MaxCount must be 1")
        itype = p["InstanceType"]
        if not self._valid_type(itype):
            raise _Bad("InvalidParameterValue", f"Invalid value '{itype}' for InstanceType.")
        img_id = p["ImageId"]
        if not re.fullmatch(r"ami-[0-9a-f]{8}([0-9a-f]{9})?", img_id):
            raise _Bad("InvalidAMIID.Malformed", f'Invalid id: "{img_id}" (expecting "ami-...")')
        img = r.images.get(img_id)
        if img is None:
            raise _Bad("InvalidAMIID.NotFound", f"The image id '[{img_id}]' does not exist")
        if img["state"] != "available":
            raise _Bad("InvalidAMIID.Unavailable", f"AMI '{img_id}' is {img['state']}, and "
                                                   "cannot be run")
        if img["arch"] != self._arch(itype):
            raise _Bad("InvalidParameterValue", f"The architecture '{self._arch(itype)}' of "
                                                f"the specified instance type does not match "
                                                f"the architecture '{img['arch']}' of the "
                                                "specified AMI.")
        sub, nics, sgs = self._run_network(r, p, itype)
        az = sub["az"]
        pl = p.get("Placement", {})
        if pl.get("AvailabilityZone") and pl["AvailabilityZone"] != az:
            raise _Bad("InvalidParameterValue", f"Value ({pl['AvailabilityZone']}) for "
                                                "parameter availabilityZone is invalid. Subnet "
                                                f"'{sub['id']}' is in the availability zone "
                                                f"{az}")
        if (itype, az) in self._not_offered:
            offered = ", ".join(z for z in r.zones if (itype, z) not in self._not_offered)
            raise _Bad("Unsupported", f"Your requested instance type ({itype}) is not supported "
                                      f"in your requested Availability Zone ({az}). Please "
                                      "retry your request by not specifying an Availability "
                                      f"Zone or choosing {offered}.")
        pg = pl.get("GroupName")
        if pg and pg not in r.placement_groups:
            raise _Bad("InvalidPlacementGroup.Unknown", f"The Placement Group '{pg}' is "
                                                        "unknown.")
        tenancy = pl.get("Tenancy", "default")
        if tenancy not in ("default", "dedicated", "host"):
            raise _Bad("InvalidParameterValue", f"Value ({tenancy}) for parameter tenancy is "
                                                "invalid.")
        prof = self._run_profile(p)
        volumes = self._run_volumes(p, img)
        tags = self._tag_specs(p, ("instance", "volume", "network-interface",
                                   "spot-instances-request", "elastic-gpu"))
        spot = self._run_market(p)
        keys, text = [], None
        if "UserData" in p:
            try:
                raw = base64.b64decode(p["UserData"], validate=True)
            except (binascii.Error, ValueError):
                raise _Bad("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
            if len(raw) > 16384:
                raise _Bad("InvalidParameterValue", "User data is limited to 16384 bytes")
            text = user_data_text(raw)
            keys = keys_from_user_data(text)
        if spot is None:           # the on-demand vCPU quota of the type's class
            code = self.quota_code(itype)
            limit = r.quotas[code] if code in r.quotas else self.quota_defaults.get(code)
            used = sum(self._vcpus(v.instance_type) for v in self._vms.values()
                       if self._live(v) and v.extra.get("region_name") == r.name
                       and not v.extra.get("spot") and self.quota_code(v.instance_type) == code)
            if limit is not None and used + self._vcpus(itype) > limit:
                raise _Bad("VcpuLimitExceeded", f"You have requested more vCPU capacity than "
                                                f"your current vCPU limit of {limit:g} allows "
                                                "for the instance bucket that the specified "
                                                "instance type belongs to. Please visit "
                                                "http://aws.amazon.com/contact-us/ec2-request to "
                                                "request an adjustment to this limit.")
        else:
            cap = self._spot_capacity.get((itype, az))
            if cap is not None and sum(1 for v in self._vms.values() if self._live(v)
                                       and v.extra.get("spot") and v.instance_type == itype
                                       and v.extra.get("az") == az) >= cap:
                raise self._no_capacity(r, itype, az, spot)
        itags = tags.get("instance", {})
        extra = self._instance_extra(r, az, sub, img, itype, itags)
        public = nics[0]["public"] and self._is_public(r, sub)
        extra.update(
            sg_ids=list(nics[0]["sg_ids"]), sg_names={g["id"]: g["name"] for g in sgs},
            spot=spot is not None, placement_group=pg, tenancy=tenancy,
            iam_profile=prof and prof["InstanceProfileName"], iam_arn=prof and prof["Arn"],
            iam_id=prof and prof["InstanceProfileId"], volume_size=volumes[0]["size"],
            volume_type=volumes[0]["type"], volumes=volumes, public=public,
            client_token=p.get("ClientToken"), params=dict(call.params),
            request=copy.deepcopy(p), user_data=text, nics=nics, tag_specs=tags)
        return {"name": itags.get("Name", ""), "type": itype, "az": az, "pubkeys": keys,
                "spot": spot, "extra": extra}

    def _run_network(self, r, p, itype):
        """(subnet, NICs, security groups) of a RunInstances."""
        specs = p.get("NetworkInterface", [])
        if specs and (p.get("SubnetId") or p.get("SecurityGroupId") or p.get("SecurityGroup")):
            raise _Bad("InvalidParameterCombination", "Network interfaces and an instance-level "
                                                      "subnet ID or security groups may not be "
                                                      "specified on the same request")
        if len(specs) > 1 and any(s.get("AssociatePublicIpAddress") for s in specs):
            raise _Bad("InvalidParameterCombination", "The associatePublicIPAddress parameter "
                                                      "cannot be specified when launching with "
                                                      "multiple network interfaces.")
        if not specs:
            specs = [{"DeviceIndex": 0, "SubnetId": p.get("SubnetId"),
                      "SecurityGroupId": p.get("SecurityGroupId", [])}]
            names = p.get("SecurityGroup", [])
        else:
            names = []
        seen = set()
        for s in specs:
            if "DeviceIndex" not in s:
                raise _Bad("InvalidParameterValue", "Each network interface requires a device "
                                                    "index.")
            slot = (s.get("NetworkCardIndex", 0), s["DeviceIndex"])
            if slot in seen:
                raise _Bad("InvalidParameterValue", "Each network interface requires a unique "
                                                    "device index and network card index.")
            seen.add(slot)
            if s.get("NetworkInterfaceId"):
                raise _Bad("InvalidNetworkInterfaceID.NotFound", f"The networkInterface ID "
                                                                 f"'{s['NetworkInterfaceId']}' "
                                                                 "does not exist")
        if (0, 0) not in seen:
            raise _Bad("InvalidParameterValue", "The primary network interface (device index 0 "
                                                "on network card 0) is missing.")
        primary = next(s for s in specs if (s.get("NetworkCardIndex", 0), s["DeviceIndex"])
                       == (0, 0))
        az = p.get("Placement", {}).get("AvailabilityZone")
        if az and az not in r.zones:
            raise _Bad("InvalidParameterValue", f"Invalid availability zone: [{az}]")
        if primary.get("SubnetId"):
            sub = r.subnets.get(primary["SubnetId"])
            if sub is None:
                raise _Bad("InvalidSubnetID.NotFound", f"The subnet ID '{primary['SubnetId']}' "
                                                       "does not exist")
        else:
            vpc = self._default_vpc(r)
            subs = [s for s in r.subnets.values() if s["vpc"] == vpc["id"]
                    and s["default_for_az"] and (az is None or s["az"] == az)]
            if not subs:
                raise _Bad("MissingInput", "No subnets found for the default VPC "
                                           f"'{vpc['id']}'. Please specify a subnet.")
            sub = subs[0]
        t = self._type_info(itype)
        efa, efa_used = t["efa"], 0
        nics, groups = [], {}
        for s in specs:
            ns = r.subnets.get(s.get("SubnetId") or sub["id"])
            if ns is None:
                raise _Bad("InvalidSubnetID.NotFound", f"The subnet ID '{s['SubnetId']}' does "
                                                       "not exist")
            if ns["az"] != sub["az"]:
                raise _Bad("InvalidParameterCombination", "The network interfaces of an "
                                                          "instance must be in one "
                                                          "availability zone.")
            ids = list(s.get("SecurityGroupId", []))
            for name in names:
                g = next((g for g in r.groups.values() if g["name"] == name
                          and g["vpc"] == ns["vpc"]), None)
                if g is None:
                    raise _Bad("InvalidGroup.NotFound", f"The security group '{name}' does not "
                                                        f"exist in VPC '{ns['vpc']}'")
                ids.append(g["id"])
            if not ids:
                ids = [g["id"] for g in r.groups.values() if g["vpc"] == ns["vpc"]
                       and g["name"] == "default"]
            for gid in ids:
                g = r.groups.get(gid)
                if g is None or g["vpc"] != ns["vpc"]:
                    raise _Bad("InvalidGroup.NotFound", f"The security group '{gid}' does not "
                                                        f"exist in VPC '{ns['vpc']}'")
                groups[gid] = g
            kind = s.get("InterfaceType", "interface")
            self._check_nic(itype, t, s, kind)
            if kind in ("efa", "efa-only"):
                efa_used += 1
                if efa_used > efa:
                    raise _Bad("InvalidParameterCombination", f"The instance type {itype} "
                                                              f"supports at most {efa} EFA "
                                                              "interfaces (efa and efa-only).")
            nics.append({"id": _rid("eni"), "attach_id": _rid("eni-attach"),
                         "device_index": s["DeviceIndex"],
                         "card_index": s.get("NetworkCardIndex", 0), "subnet_id": ns["id"],
                         "vpc_id": ns["vpc"], "sg_ids": ids, "interface_type": kind,
                         "public": s.get("AssociatePublicIpAddress", ns["map_public"])
                         if len(specs) == 1 else False,
                         "delete_on_termination": s.get("DeleteOnTermination", True),
                         "mac": self._mac()})
        nics.sort(key=lambda n: (n["card_index"] != 0 or n["device_index"] != 0,
                                 n["card_index"], n["device_index"]))
        return sub, nics, list(groups.values())

    @staticmethod
    def _check_nic(itype, t, s, kind):
        """One NetworkInterface.N of a RunInstances against the instance type's network
        cards (t: its INSTANCE_TYPES row)."""
        card, dev = s.get("NetworkCardIndex", 0), s["DeviceIndex"]
        if kind not in ("interface", "efa", "efa-only"):
            raise _Bad("InvalidParameterValue", f"Invalid value '{kind}' for InterfaceType. "
                                                "Valid values: interface, efa, efa-only.")
        if not 0 <= card < t["cards"]:
            raise _Bad("InvalidParameterValue", f"The network card index {card} is not valid "
                                                f"for {itype}: it has {t['cards']} network "
                                                f"card(s), 0 to {t['cards'] - 1}.")
        if not 0 <= dev < t["card_enis"]:
            raise _Bad("InvalidParameterValue", f"The device index {dev} is not valid on "
                                                f"network card {card} of {itype}: a card of "
                                                f"it takes {t['card_enis']} network "
                                                f"interfaces, device indexes 0 to "
                                                f"{t['card_enis'] - 1}.")
        if kind in ("efa", "efa-only"):
            if not t["efa"]:
                raise _Bad("InvalidParameterCombination", "Elastic Fabric Adapter (EFA) is not "
                                                          f"supported on {itype}.")
            if card == 0 and not t["efa_primary"]:
                raise _Bad("InvalidParameterCombination", f"Network card 0 of {itype} does "
                                                          "not support EFA: put the EFA "
                                                          "interfaces on network cards 1 to "
                                                          f"{t['cards'] - 1}.")
        if kind == "efa-only" and (card, dev) == (0, 0):
            raise _Bad("InvalidParameterCombination", "The primary network interface (device "
                                                      "index 0 on network card 0) cannot be "
                                                      "an EFA-only interface: it has no IP "
                                                      "address.")

    def _run_profile(self, p):
        ip = p.get("IamInstanceProfile")
        if not ip:
            return None
        if ip.get("Name"):
            prof = self._profiles.get(ip["Name"])
            if prof is None:
                raise _Bad("InvalidParameterValue", f"Value ({ip['Name']}) for parameter "
                                                    "iamInstanceProfile.name is invalid. "
                                                    "Invalid IAM Instance Profile name")
            if ip.get("Arn") and ip["Arn"] != prof["Arn"]:
                raise _Bad("InvalidParameterCombination", "The IAM instance profile name and "
                                                          "ARN do not name the same profile")
            return prof
        prof = next((x for x in self._profiles.values() if x["Arn"] == ip.get("Arn")), None)
        if prof is None:
            raise _Bad("InvalidParameterValue", f"Value ({ip.get('Arn')}) for parameter "
                                                "iamInstanceProfile.arn is invalid. Invalid IAM "
                                                "Instance Profile ARN")
        return prof

    def _run_volumes(self, p, img):
        root = {"id": _rid("vol"), "device": "/dev/sda1", "size": img["size"], "type": "gp2",
                "delete_on_termination": True}
        vols = [root]
        for bd in p.get("BlockDeviceMapping", []):
            dev = bd.get("DeviceName")
            if not dev:
                raise _Bad("InvalidBlockDeviceMapping", "The device name must be given")
            ebs = bd.get("Ebs", {})
            vtype = ebs.get("VolumeType", "gp2")
            if vtype not in ("gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"):
                raise _Bad("InvalidParameterValue", f"Value ({vtype}) for parameter volumeType "
                                                    "is invalid.")
            size = ebs.get("VolumeSize", img["size"] if dev == "/dev/sda1" else None)
            if size is None:
                raise _Bad("InvalidBlockDeviceMapping", f"The volume size of {dev} must be given")
            if dev == "/dev/sda1" and size < img["size"]:
                raise _Bad("InvalidBlockDeviceMapping", f"Volume of size {size}GB is smaller "
                                                        f"than snapshot '{img['snapshot']}', "
                                                        f"expect size >= {img['size']}GB")
            if not 1 <= size <= 65536:
                raise _Bad("InvalidParameterValue", f"Volume size {size} is out of range")
            vol = {"id": root["id"] if dev == "/dev/sda1" else _rid("vol"), "device": dev,
                   "size": size, "type": vtype,
                   "delete_on_termination": ebs.get("DeleteOnTermination", True)}
            if dev == "/dev/sda1":
                vols[0] = vol
            else:
                vols.append(vol)
        return vols

    def _run_market(self, p):
        """The spot options of a spot RunInstances, None for on-demand."""
        mo = p.get("InstanceMarketOptions")
        if not mo:
            return None
        if mo.get("MarketType") != "spot":
            raise _Bad("InvalidParameterValue", f"Value ({mo.get('MarketType')}) for parameter "
                                                "MarketType is invalid: the fake knows spot "
                                                "only.")
        so = dict(mo.get("SpotOptions", {}))
        kind = so.setdefault("SpotInstanceType", "one-time")
        behavior = so.setdefault("InstanceInterruptionBehavior", "terminate")
        if kind not in ("one-time", "persistent"):
            raise _Bad("InvalidParameterValue", f"Value ({kind}) for parameter "
                                                "SpotInstanceType is invalid.")
        if behavior not in ("terminate", "stop", "hibernate"):
            raise _Bad("InvalidParameterValue", f"Value ({behavior}) for parameter "
                                                "InstanceInterruptionBehavior is invalid.")
        if kind == "one-time" and behavior != "terminate":
            raise _Bad("InvalidParameterCombination", "A one-time spot request must use the "
                                                      "interruption behavior terminate.")
        if "MaxPrice" in so and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", so["MaxPrice"]):
            raise _Bad("InvalidParameterValue", f"Value ({so['MaxPrice']}) for parameter "
                                                "MaxPrice is invalid.")
        return so
