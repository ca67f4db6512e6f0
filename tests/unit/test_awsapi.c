/* Unit tests of backends/awsapi: the query form fleetfs sends (encoding, filters), the
 * endpoints and their environment overrides, the XML reading of EC2 answers (namespaces,
 * <item> lists, sanitized text) and the parser's refusal of external entities. Calls over
 * the network are exercised against the AWS fake (tests/integration/test_aws_api.py). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/awsapi.h"
#include "suites.h"

static void unset_endpoints(void)
{
	static const char *const vars[] = {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2",
					   "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_IAM",
					   "AWS_ENDPOINT_URL_SERVICE_QUOTAS",
					   "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", NULL};
	for (size_t i = 0; vars[i]; i++)
		unsetenv(vars[i]);
}

/* The body aws_query would send to EC2. */
static char *query_text(const struct aws_query *q)
{
	struct buf b;
	buf_init(&b, 1u << 21);
	awsq_form(q, AWS_EC2, &b);
	char *t = strndup(b.data, b.len);
	buf_free(&b);
	return t;
}

START_TEST(test_query_encoding)
{
	struct aws_query q;
	awsq_init(&q, "DescribeImages");
	awsq_add(&q, "Owner.1", "898082745236");
	const char *name[] = {"Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
			      NULL};
	const char *arch[] = {"x86_64", NULL};
	awsq_filter(&q, 1, "name", name);
	awsq_filter(&q, 2, "architecture", arch);
	/* what botocore sends for these params: Action, Version, then the params; a space '+' */
	char *t = query_text(&q);
	ck_assert_str_eq(t, "Action=DescribeImages&Version=2016-11-15&Owner.1=898082745236"
			    "&Filter.1.Name=name"
			    "&Filter.1.Value.1=Deep+Learning+Base+OSS+Nvidia+Driver+"
			    "GPU+AMI+%28Ubuntu+22.04%29+%2A"
			    "&Filter.2.Name=architecture&Filter.2.Value.1=x86_64");
	free(t);
	awsq_free(&q);
	/* several values, a tag filter, user data in base64 (+ / =), unreserved kept */
	awsq_init(&q, "DescribeInstances");
	const char *states[] = {"pending", "running", NULL}, *own[] = {"fleetfs", NULL};
	awsq_filter(&q, 1, "tag:owner", own);
	awsq_filter(&q, 2, "instance-state-name", states);
	awsq_addf(&q, "I2Nsb3VkLWNvbmZpZwo+/=", "NetworkInterface.%d.X_y-z~%s", 1, "a");
	t = query_text(&q);
	ck_assert_str_eq(t, "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Aowner"
			    "&Filter.1.Value.1=fleetfs&Filter.2.Name=instance-state-name"
			    "&Filter.2.Value.1=pending&Filter.2.Value.2=running"
			    "&NetworkInterface.1.X_y-z~a=I2Nsb3VkLWNvbmZpZwo%2B%2F%3D");
	free(t);
	awsq_free(&q);
	/* UTF-8 bytes each %XX; an empty value is name= */
	awsq_init(&q, "CreateTags");
	awsq_add(&q, "Tag.1.Value", "caf\xc3\xa9");
	awsq_add(&q, "Tag.2.Value", "");
	awsq_add(&q, "Tag.3.Value", NULL);
	t = query_text(&q);
	ck_assert_str_eq(t, "Action=CreateTags&Version=2016-11-15&Tag.1.Value=caf%C3%A9"
			    "&Tag.2.Value=&Tag.3.Value=");
	free(t);
	awsq_free(&q);
	/* the security group's description: spaces '+', a '+' itself %2B; every printable
	 * ASCII byte as Python's urllib.parse.urlencode writes it */
	awsq_init(&q, "CreateSecurityGroup");
	awsq_add(&q, "GroupDescription", "Made by fleetfs: SSH in, all traffic within");
	awsq_add(&q, "X", " !\"#$%&'()*+,/:;<=>?@[\\]^`{|}");
	t = query_text(&q);
	ck_assert_str_eq(t, "Action=CreateSecurityGroup&Version=2016-11-15"
			    "&GroupDescription=Made+by+fleetfs%3A+SSH+in%2C+all+traffic+within"
			    "&X=+%21%22%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3C%3D%3E%3F%40"
			    "%5B%5C%5D%5E%60%7B%7C%7D");
	free(t);
	awsq_free(&q);
	/* STS and IAM: their own versions */
	awsq_init(&q, "GetCallerIdentity");
	struct buf b;
	buf_init(&b, 4096);
	awsq_form(&q, AWS_STS, &b);
	ck_assert_str_eq(b.data, "Action=GetCallerIdentity&Version=2011-06-15");
	buf_free(&b);
	buf_init(&b, 4096);
	awsq_form(&q, AWS_IAM, &b);
	ck_assert_str_eq(b.data, "Action=GetCallerIdentity&Version=2010-05-08");
	buf_free(&b);
	awsq_free(&q);
}
END_TEST

START_TEST(test_endpoints)
{
	char url[512];
	unset_endpoints();
	ck_assert_int_eq(aws_endpoint(AWS_EC2, "eu-west-1", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://ec2.eu-west-1.amazonaws.com/");
	ck_assert_int_eq(aws_endpoint(AWS_SQ, "us-east-2", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://servicequotas.us-east-2.amazonaws.com/");
	ck_assert_int_eq(aws_endpoint(AWS_STS, "us-east-1", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://sts.amazonaws.com/");
	ck_assert_int_eq(aws_endpoint(AWS_IAM, "us-east-1", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://iam.amazonaws.com/");
	/* the global override, then the service's own: a bare host gets the root path */
	setenv("AWS_ENDPOINT_URL", "https://127.0.0.1:4566", 1);
	ck_assert_int_eq(aws_endpoint(AWS_EC2, "eu-west-1", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://127.0.0.1:4566/");
	setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", "http://localhost:9000/sq/", 1);
	ck_assert_int_eq(aws_endpoint(AWS_SQ, "eu-west-1", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "http://localhost:9000/sq/");
	ck_assert_int_eq(aws_endpoint(AWS_STS, "eu-west-1", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://127.0.0.1:4566/");
	/* an empty service variable does not count */
	setenv("AWS_ENDPOINT_URL_STS", "", 1);
	ck_assert_int_eq(aws_endpoint(AWS_STS, "us-east-1", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://127.0.0.1:4566/");
	/* the SDKs' switch to ignore configured endpoints */
	setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
	ck_assert_int_eq(aws_endpoint(AWS_EC2, "ap-southeast-1", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://ec2.ap-southeast-1.amazonaws.com/");
	unset_endpoints();
	char small[16];
	ck_assert_int_eq(aws_endpoint(AWS_EC2, "eu-west-1", small, sizeof(small)), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_region_names)
{
	ck_assert(aws_region_ok("us-east-1"));
	ck_assert(aws_region_ok("us-gov-west-1"));
	ck_assert(!aws_region_ok(""));
	ck_assert(!aws_region_ok(NULL));
	ck_assert(!aws_region_ok("us-east-1.evil.com"));
	ck_assert(!aws_region_ok("us-east-1/../x"));
	ck_assert(!aws_region_ok("US-EAST-1"));
	ck_assert(!aws_region_ok("a-very-long-region-name-that-is-not-real-1"));
}
END_TEST

static const char describe[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\n"
	"  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>\n"
	"  <reservationSet>\n"
	"    <item>\n"
	"      <reservationId>r-1234567890abcdef0</reservationId>\n"
	"      <instancesSet>\n"
	"        <item>\n"
	"          <instanceId>i-1234567890abcdef0</instanceId>\n"
	"          <instanceState><code>16</code><name>running</name></instanceState>\n"
	"          <privateIpAddress>10.0.0.12</privateIpAddress>\n"
	"          <ipAddress>54.194.252.215</ipAddress>\n"
	"          <placement><availabilityZone>eu-west-1c</availabilityZone></placement>\n"
	"          <tagSet>\n"
	"            <item><key>owner</key><value>fleetfs</value></item>\n"
	"            <item><key>Name</key><value>fleetfs-main-gpu-0-a1b2&#10;\t\xc3\xa9" "c3d4</value></item>\n"
	"          </tagSet>\n"
	"        </item>\n"
	"        <item><instanceId>i-0aaaaaaaaaaaaaaa1</instanceId></item>\n"
	"      </instancesSet>\n"
	"    </item>\n"
	"  </reservationSet>\n"
	"  <nextToken>eyJ2IjoiMiJ9</nextToken>\n"
	"</DescribeInstancesResponse>\n";

START_TEST(test_xml_reading)
{
	xmlDoc *doc = aws_xml_parse(describe, strlen(describe));
	ck_assert_ptr_nonnull(doc);
	xmlNode *root = awsx_root(doc);
	xmlNode *res = awsx_first(awsx_child(root, "reservationSet"));
	ck_assert_ptr_nonnull(res);
	ck_assert_ptr_null(awsx_next(res));
	xmlNode *inst = awsx_first(awsx_child(res, "instancesSet"));
	char v[128];
	ck_assert(awsx_text(inst, "instanceId", v, sizeof(v)));
	ck_assert_str_eq(v, "i-1234567890abcdef0");
	ck_assert(awsx_text(inst, "instanceState/name", v, sizeof(v)));
	ck_assert_str_eq(v, "running");
	ck_assert(awsx_text(inst, "placement/availabilityZone", v, sizeof(v)));
	ck_assert_str_eq(v, "eu-west-1c");
	/* absent elements read as "" and false */
	ck_assert(!awsx_text(inst, "spotInstanceRequestId", v, sizeof(v)));
	ck_assert_str_eq(v, "");
	/* a tag list; control characters and non-ASCII bytes in a value are replaced */
	xmlNode *t = awsx_first(awsx_child(inst, "tagSet"));
	ck_assert(awsx_text(t, "key", v, sizeof(v)));
	ck_assert_str_eq(v, "owner");
	t = awsx_next(t);
	ck_assert(awsx_text(t, "value", v, sizeof(v)));
	ck_assert_ptr_null(strchr(v, '\n'));
	ck_assert_ptr_null(strchr(v, '\t'));
	ck_assert_ptr_null(strchr(v, '\xc3'));
	ck_assert_ptr_nonnull(strstr(v, "fleetfs-main-gpu-0-a1b2"));
	ck_assert_ptr_null(awsx_next(t));
	/* the second instance, and a cut value */
	xmlNode *i2 = awsx_next(inst);
	char small[6];
	ck_assert(awsx_text(i2, "instanceId", small, sizeof(small)));
	ck_assert_uint_le(strlen(small), 5);
	ck_assert(awsx_text(root, "nextToken", v, sizeof(v)));
	ck_assert_str_eq(v, "eyJ2IjoiMiJ9");
	xmlFreeDoc(doc);
}
END_TEST

START_TEST(test_xml_refusals)
{
	/* not XML, empty */
	ck_assert_ptr_null(aws_xml_parse("<html><body>502 Bad Gateway", 27));
	ck_assert_ptr_null(aws_xml_parse("", 0));
	ck_assert_ptr_null(aws_xml_parse("{\"__type\":\"x\"}", 14));
	/* a DTD (entities, external or not) is not an AWS answer: refused whole */
	static const char xxe[] = "<?xml version=\"1.0\"?>\n"
				  "<!DOCTYPE r [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\n"
				  "<r><v>&e;</v></r>";
	ck_assert_ptr_null(aws_xml_parse(xxe, strlen(xxe)));
	static const char lol[] = "<?xml version=\"1.0\"?>\n"
				  "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\">"
				  "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
				  "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>\n"
				  "<r><v>&c;</v></r>";
	ck_assert_ptr_null(aws_xml_parse(lol, strlen(lol)));
	/* the same document without the DTD parses */
	static const char ok[] = "<?xml version=\"1.0\"?>\n<r><v>x</v></r>";
	xmlDoc *doc = aws_xml_parse(ok, strlen(ok));
	ck_assert_ptr_nonnull(doc);
	xmlFreeDoc(doc);
}
END_TEST

/* A parameter that does not fit under the 1 MiB cap is never sent cut short. */
START_TEST(test_query_too_big)
{
	struct aws_query q;
	awsq_init(&q, "CreateSecurityGroup");
	awsq_add(&q, "GroupName", "fleetfs");
	size_t len = q.b.len;
	char *big = malloc((1u << 20) + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, 'x', 1u << 20);
	big[1u << 20] = '\0';
	awsq_add(&q, "GroupDescription", big);
	ck_assert(q.too_big);
	ck_assert_uint_eq(q.b.len, len);
	awsq_add(&q, "Later", "y"); /* nothing after it either */
	ck_assert_uint_eq(q.b.len, len);
	free(big);
	awsq_free(&q);
}
END_TEST

Suite *awsapi_suite(void)
{
	Suite *s = suite_create("awsapi");
	TCase *tc = tcase_create("awsapi");
	tcase_add_test(tc, test_query_encoding);
	tcase_add_test(tc, test_query_too_big);
	tcase_add_test(tc, test_endpoints);
	tcase_add_test(tc, test_region_names);
	tcase_add_test(tc, test_xml_reading);
	tcase_add_test(tc, test_xml_refusals);
	suite_add_tcase(s, tc);
	return s;
}
