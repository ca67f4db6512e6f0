"""moto's server with IAM authentication on, for test_aws_moto.py. Run by an interpreter that
has moto and boto3 (moto is not a Debian package: the test looks for one), never imported by
the tests themselves.

    python3 motoserver.py

serves every AWS service moto has on http://127.0.0.1:<an ephemeral port>, makes an IAM user
allowed everything with an access key, gives us-east-1's default VPC the internet gateway and
default route it has on AWS (moto's has none), then prints one JSON line {"port", "access_key",
"secret_key"} and serves until its standard input closes (or it is signalled).

Authentication: moto checks nothing until INITIAL_NO_AUTH_ACTION_COUNT actions have been
served, then checks every request as AWS does: a known access key, a SigV4 signature it
recomputes (over the form body as botocore writes it), and the user's IAM policies. The count
is the setup's three calls (CreateUser, PutUserPolicy, CreateAccessKey): everything after them
is authenticated.
"""
import json
import os
import sys

SETUP_CALLS = 3
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_CALLS)   # read when moto is imported

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

USER = "fleetfs-test"
REGION = "us-east-1"
POLICY = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def main():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        # unsigned in effect: moto lets the first SETUP_CALLS actions in without checking
        iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}",
                           region_name="us-east-1", aws_access_key_id="AKIASETUP0000000000",
                           aws_secret_access_key="setup")
        iam.create_user(UserName=USER)
        iam.put_user_policy(UserName=USER, PolicyName="everything",
                            PolicyDocument=json.dumps(POLICY))
        key = iam.create_access_key(UserName=USER)["AccessKey"]
        # from here on signed with the user's key. moto's default VPC has no internet
        # gateway; AWS's has one, with the main route table's default route through it
        ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
                           aws_access_key_id=key["AccessKeyId"],
                           aws_secret_access_key=key["SecretAccessKey"])
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
        vpc_id = vpc["Vpcs"][0]["VpcId"]
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
        rt = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                {"Name": "association.main", "Values": ["true"]}])
        ec2.create_route(RouteTableId=rt["RouteTables"][0]["RouteTableId"],
                         DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        print(json.dumps({"port": port, "access_key": key["AccessKeyId"],
                          "secret_key": key["SecretAccessKey"]}), flush=True)
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
