/* fuzz_aws: backends/aws and backends/awsapi's handling of AWS's answers — EC2, STS and IAM
 * query APIs (XML, through aws_xml_parse and the awsx_* readers; error documents) and
 * Service Quotas (JSON 1.1) — through the real operations: check, offers (catalog + quotas),
 * create (zones, VPC, subnets, route tables, security and placement groups, images, EFA,
 * RunInstances, Elastic IPs), get, terminate, list. Each HTTP answer is scripted by the
 * input (fuzzlib.h); calls made from parallel threads take answers in arrival order. An
 * input starting with '+' uses a config with VPC ids, public IPs, an instance profile and
 * custom images instead of the plain access-key one. */
#include <stdint.h>

#include <libxml/parser.h>

#include "../../backends/awsapi.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char PLAIN[] = "type: aws\ncreds:\n  type: access_key\n"
			    "  access_key: AKIAIOSFODNN7EXAMPLE\n"
			    "  secret_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
			    "regions: [us-east-1]\n";
static const char CUSTOM[] = "type: aws\ncreds:\n  type: access_key\n"
			     "  access_key: AKIAIOSFODNN7EXAMPLE\n"
			     "  secret_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
			     "regions: [us-east-1, us-west-2]\n"
			     "vpc_ids:\n  us-east-1: vpc-0a2b3c4d5e6f7a8b9\n"
			     "default_vpcs: true\npublic_ips: false\n"
			     "iam_instance_profile: dstack-ec2\n"
			     "tags:\n  team: ml-infra\n"
			     "os_images:\n  nvidia:\n    name: my-cuda-ami\n"
			     "    owner: \"123456789012\"\n    user: ubuntu\n"
			     "  cpu:\n    name: my-cpu-ami\n    owner: self\n    user: ec2-user\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FZ_MAX_INPUT)
		return -1;
	if (size && data[0] == '+')
		fz_backend_run("aws", CUSTOM, "g5.xlarge", "us-east-1", data + 1, size - 1);
	else
		fz_backend_run("aws", PLAIN, "g5.xlarge", "us-east-1", data, size);
	return 0;
}
