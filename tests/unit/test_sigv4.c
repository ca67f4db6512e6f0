/* Unit tests of backends/sigv4: AWS's published Signature Version 4 test suite
 * (tests/unit/data/sigv4, see its README) compared byte for byte (canonical request, string
 * to sign, Authorization), the EC2 DescribeInstances call fleetfs makes with a session token
 * (canonical request written out here, signature computed beforehand with the openssl command
 * line and again here with EVP_MAC), and the edges: host and port, query encoding, path
 * double encoding, options, refusals. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "../../backends/sigv4.h"
#include "../../lib/util.h"
#include "helpers.h"
#include "suites.h"

#ifndef FLEETFS_SRCDIR
#define FLEETFS_SRCDIR "."
#endif

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TIME ((time_t)1440938160) /* 20150830T123600Z */

/* Every case of the suite. Cases signed with a session token that their .req does not carry
 * name it here (from their .creq). */
static const struct {
	const char *name;
	const char *token;
} cases[] = {
	{"get-header-key-duplicate", NULL},
	{"get-header-value-multiline", NULL},
	{"get-header-value-order", NULL},
	{"get-header-value-trim", NULL},
	{"get-relative", NULL},
	{"get-relative-relative", NULL},
	{"get-slash", NULL},
	{"get-slash-dot-slash", NULL},
	{"get-slash-pointless-dot", NULL},
	{"get-slashes", NULL},
	{"get-space", NULL},
	{"get-special-character", NULL},
	{"get-unreserved", NULL},
	{"get-utf8", NULL},
	{"get-vanilla", NULL},
	{"get-vanilla-empty-query-key", NULL},
	{"get-vanilla-query", NULL},
	{"get-vanilla-query-order-encoded", NULL},
	{"get-vanilla-query-order-key", NULL},
	{"get-vanilla-query-order-key-case", NULL},
	{"get-vanilla-query-order-value", NULL},
	{"get-vanilla-query-unreserved", NULL},
	{"get-vanilla-utf8-query", NULL},
	{"get-vanilla-with-session-token",
	 "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"},
	{"post-header-key-case", NULL},
	{"post-header-key-sort", NULL},
	{"post-header-value-case", NULL},
	{"post-sts-header-after", NULL},
	{"post-sts-header-before", NULL},
	{"post-vanilla", NULL},
	{"post-vanilla-empty-query-value", NULL},
	{"post-vanilla-query", NULL},
	{"post-x-www-form-urlencoded", NULL},
	{"post-x-www-form-urlencoded-parameters", NULL},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static char *vector_file(const char *name, const char *ext)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/unit/data/sigv4/%s/%s.%s", FLEETFS_SRCDIR, name,
		 name, ext);
	size_t len;
	char *s = file_read(path, &len);
	ck_assert_msg(s != NULL, "cannot read %s", path);
	return s;
}

/* A parsed .req: the request line, header lines (continuation lines folded in with a space)
 * up to a blank line, then the body. Strings point into text (modified in place). */
struct raw_req {
	char *method;
	char *target;
	struct sigv4_header hdr[32];
	size_t nh;
	const char *host;
	const char *body;
	char *owned[8]; /* the folded values */
	size_t nowned;
};

static void raw_req_free(struct raw_req *q)
{
	for (size_t i = 0; i < q->nowned; i++)
		free(q->owned[i]);
}

static void parse_req(char *text, struct raw_req *q)
{
	memset(q, 0, sizeof(*q));
	char *eol = strchr(text, '\n');
	if (eol)
		*eol = '\0';
	char *sp = strchr(text, ' ');
	char *ver = strstr(text, " HTTP/1.1");
	ck_assert_ptr_nonnull(sp);
	ck_assert_ptr_nonnull(ver);
	*sp = '\0';
	*ver = '\0';
	q->method = text;
	q->target = sp + 1;
	q->body = "";
	char *p = eol ? eol + 1 : NULL;
	while (p && *p) {
		char *end = strchr(p, '\n');
		if (end)
			*end = '\0';
		if (*p == '\0') { /* blank line: the body follows */
			q->body = end ? end + 1 : "";
			break;
		}
		if ((*p == ' ' || *p == '\t') && q->nh) {
			/* obs-fold: append to the previous value, joined by a space */
			struct sigv4_header *h = &q->hdr[q->nh - 1];
			char *joined = xasprintf("%s %s", h->value, p);
			ck_assert_uint_lt(q->nowned, 8);
			q->owned[q->nowned++] = joined;
			h->value = joined;
		} else {
			char *colon = strchr(p, ':');
			ck_assert_ptr_nonnull(colon);
			ck_assert_uint_lt(q->nh, 32);
			*colon = '\0';
			q->hdr[q->nh].name = p;
			q->hdr[q->nh].value = colon + 1;
			if (strcasecmp(p, "host") == 0)
				q->host = colon + 1;
			q->nh++;
		}
		p = end ? end + 1 : NULL;
	}
	ck_assert_ptr_nonnull(q->host);
}

START_TEST(test_suite_vector)
{
	const char *name = cases[_i].name;
	char *text = vector_file(name, "req");
	char *creq = vector_file(name, "creq");
	char *sts = vector_file(name, "sts");
	char *authz = vector_file(name, "authz");
	struct raw_req q;
	parse_req(text, &q);
	char url[4096];
	snprintf(url, sizeof(url), "https://%s%s", q.host, q.target);
	struct sigv4_req req = {
		.method = q.method,
		.url = url,
		.headers = q.hdr,
		.n_headers = q.nh,
		.body = q.body,
		.body_len = strlen(q.body),
		.access_key_id = AKID,
		.secret_key = SECRET,
		.session_token = cases[_i].token,
		.region = "us-east-1",
		.service = "service",
		.when = SUITE_TIME,
	};
	struct sigv4_result res;
	char err[SIGV4_ERR_MAX];
	ck_assert_msg(sigv4_sign(&req, &res, err, sizeof(err)) == 0, "%s: %s", name, err);
	ck_assert_msg(strcmp(res.canonical_request, creq) == 0,
		      "%s: canonical request\n%s\n--- want\n%s", name, res.canonical_request, creq);
	ck_assert_msg(strcmp(res.string_to_sign, sts) == 0, "%s: string to sign\n%s\n--- want\n%s",
		      name, res.string_to_sign, sts);
	ck_assert_msg(strcmp(res.authorization, authz) == 0, "%s: authorization\n%s\n--- want\n%s",
		      name, res.authorization, authz);
	ck_assert_str_eq(res.amz_date, "20150830T123600Z");
	ck_assert_int_eq(strncmp(strstr(authz, "Signature=") + 10, res.signature, 65), 0);
	sigv4_result_free(&res);
	sigv4_result_free(&res); /* twice is fine */
	raw_req_free(&q);
	free(text);
	free(creq);
	free(sts);
	free(authz);
}
END_TEST

/* The suite's directory holds exactly the cases listed above. */
START_TEST(test_suite_complete)
{
	char path[1024];
	size_t found = 0;
	for (size_t i = 0; i < NCASES; i++) {
		snprintf(path, sizeof(path), "%s/tests/unit/data/sigv4/%s/%s.req", FLEETFS_SRCDIR,
			 cases[i].name, cases[i].name);
		FILE *f = fopen(path, "r");
		if (f) {
			found++;
			fclose(f);
		}
	}
	ck_assert_uint_eq(found, 34);
}
END_TEST

/* ---- the EC2 call fleetfs makes ---- */

#define EC2_TOKEN "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQEXAMPLE="
#define EC2_BODY "Action=DescribeInstances&Version=2016-11-15"

static const char ec2_creq[] = "POST\n"
			       "/\n"
			       "\n"
			       "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
			       "host:ec2.us-east-1.amazonaws.com\n"
			       "x-amz-date:20150830T123600Z\n"
			       "x-amz-security-token:" EC2_TOKEN "\n"
			       "\n"
			       "content-type;host;x-amz-date;x-amz-security-token\n"
			       /* printf %s "$EC2_BODY" | sha256sum */
			       "6171eb09865e32b0602af0f7957e26573a51f53caaedff02ff88883cb0275885";

static const char ec2_sts[] = "AWS4-HMAC-SHA256\n"
			      "20150830T123600Z\n"
			      "20150830/us-east-1/ec2/aws4_request\n"
			      /* sha256sum of ec2_creq */
			      "acb3938243c10cd5e9a100d7341259d5e41bdcdce55fbbe4a3cdb7d31c56ec60";

/* Computed with `openssl dgst -sha256 -mac HMAC -macopt key:AWS4<secret>` and then
 * -macopt hexkey:<previous> over 20150830, us-east-1, ec2, aws4_request, ec2_sts. */
#define EC2_SIG "716985578ec3ed5871094197ae922ba74c93ce1a5bebd96dac787227285fb99c"

/* HMAC-SHA256 through EVP_MAC, a different OpenSSL interface than sigv4.c's HMAC(). */
static void evp_hmac(const unsigned char *key, size_t keylen, const char *msg,
		     unsigned char out[32])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	ck_assert_ptr_nonnull(mac);
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
	ck_assert_ptr_nonnull(ctx);
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
			       OSSL_PARAM_construct_end()};
	size_t n = 0;
	ck_assert_int_eq(EVP_MAC_init(ctx, key, keylen, params), 1);
	ck_assert_int_eq(EVP_MAC_update(ctx, (const unsigned char *)msg, strlen(msg)), 1);
	ck_assert_int_eq(EVP_MAC_final(ctx, out, &n, 32), 1);
	ck_assert_uint_eq(n, 32);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
}

START_TEST(test_ec2_describe_instances)
{
	const struct sigv4_header hdr[] = {
		{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
	};
	struct sigv4_req req = {
		.method = "POST",
		.url = "https://ec2.us-east-1.amazonaws.com/",
		.headers = hdr,
		.n_headers = 1,
		.body = EC2_BODY,
		.body_len = strlen(EC2_BODY),
		.access_key_id = AKID,
		.secret_key = SECRET,
		.session_token = EC2_TOKEN,
		.region = "us-east-1",
		.service = "ec2",
		.when = SUITE_TIME,
	};
	struct sigv4_result res;
	char err[SIGV4_ERR_MAX];
	ck_assert_msg(sigv4_sign(&req, &res, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(res.canonical_request, ec2_creq);
	ck_assert_str_eq(res.string_to_sign, ec2_sts);
	ck_assert_str_eq(res.signed_headers, "content-type;host;x-amz-date;x-amz-security-token");
	ck_assert_str_eq(res.payload_hash,
			 "6171eb09865e32b0602af0f7957e26573a51f53caaedff02ff88883cb0275885");
	ck_assert_str_eq(res.amz_date, "20150830T123600Z");
	ck_assert_str_eq(res.signature, EC2_SIG);
	ck_assert_str_eq(
		res.authorization,
		"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, "
		"SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "
		"Signature=" EC2_SIG);

	/* the key chain again, by hand, over the string to sign written out above */
	unsigned char k[32], k2[32];
	const char secret[] = "AWS4" SECRET;
	evp_hmac((const unsigned char *)secret, strlen(secret), "20150830", k);
	evp_hmac(k, 32, "us-east-1", k2);
	evp_hmac(k2, 32, "ec2", k);
	evp_hmac(k, 32, "aws4_request", k2);
	evp_hmac(k2, 32, ec2_sts, k);
	char hexsig[65];
	for (int i = 0; i < 32; i++)
		snprintf(hexsig + 2 * i, 3, "%02x", k[i]);
	ck_assert_str_eq(hexsig, EC2_SIG);

	/* passing the token header, or x-amz-date, that agrees changes nothing */
	const struct sigv4_header hdr2[] = {
		{"X-Amz-Security-Token", EC2_TOKEN},
		{"Content-Type", "application/x-www-form-urlencoded;   charset=utf-8  "},
		{"X-Amz-Date", "20150830T123600Z"},
	};
	req.headers = hdr2;
	req.n_headers = 3;
	struct sigv4_result res2;
	ck_assert_int_eq(sigv4_sign(&req, &res2, err, sizeof(err)), 0);
	ck_assert_str_eq(res2.canonical_request, ec2_creq);
	ck_assert_str_eq(res2.signature, EC2_SIG);
	sigv4_result_free(&res2);
	sigv4_result_free(&res);
}
END_TEST

/* ---- edges ---- */

static char *creq_of(const char *method, const char *url, const struct sigv4_header *h, size_t nh)
{
	struct sigv4_req req = {
		.method = method,
		.url = url,
		.headers = h,
		.n_headers = nh,
		.access_key_id = AKID,
		.secret_key = SECRET,
		.region = "us-east-1",
		.service = "service",
		.when = SUITE_TIME,
	};
	struct sigv4_result res;
	char err[SIGV4_ERR_MAX];
	ck_assert_msg(sigv4_sign(&req, &res, err, sizeof(err)) == 0, "%s: %s", url, err);
	char *s = res.canonical_request;
	res.canonical_request = NULL;
	sigv4_result_free(&res);
	return s;
}

#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void expect_creq(const char *url, const char *uri, const char *query, const char *host)
{
	char *got = creq_of("GET", url, NULL, 0);
	char *want = xasprintf("GET\n%s\n%s\nhost:%s\nx-amz-date:20150830T123600Z\n\n"
			       "host;x-amz-date\n" EMPTY_HASH,
			       uri, query, host);
	ck_assert_msg(strcmp(got, want) == 0, "%s:\n%s\n--- want\n%s", url, got, want);
	free(got);
	free(want);
}

START_TEST(test_url_forms)
{
	/* default ports dropped, others kept, host lowercased */
	expect_creq("https://EC2.us-east-1.amazonaws.com:443/", "/", "",
		    "ec2.us-east-1.amazonaws.com");
	expect_creq("http://h.example:80", "/", "", "h.example");
	expect_creq("http://h.example:443/", "/", "", "h.example:443");
	expect_creq("https://127.0.0.1:8443/x", "/x", "", "127.0.0.1:8443");
	expect_creq("https://[::1]:8443/", "/", "", "[::1]:8443");
	expect_creq("https://[::1]/", "/", "", "[::1]");
	/* the path is encoded once more: an encoded path ends up encoded twice */
	expect_creq("https://h/a%20b/c+d", "/a%2520b/c%2Bd", "", "h");
	expect_creq("https://h/a/./b/../c//d/", "/a/c/d/", "", "h");
	expect_creq("https://h/../..", "/", "", "h");
	/* the query: decoded then encoded, sorted, names without '=' get an empty value */
	expect_creq("https://h/?b=%2f&a&c=x+y&&a=%zz", "/", "a=&a=%25zz&b=%2F&c=x%2By", "h");
	expect_creq(
		"https://h/?Action=DescribeInstances&Filter.1.Name=tag:fleetfs&Version=2016-11-15",
		"/", "Action=DescribeInstances&Filter.1.Name=tag%3Afleetfs&Version=2016-11-15",
		"h");
	expect_creq("https://h?x=%E1%88%B4", "/", "x=%E1%88%B4", "h");
}
END_TEST

START_TEST(test_options)
{
	struct sigv4_req req = {
		.method = "PUT",
		.url = "https://h/o",
		.body = "abc",
		.body_len = 3,
		.access_key_id = AKID,
		.secret_key = SECRET,
		.region = "us-east-1",
		.service = "service",
		.when = SUITE_TIME,
		.sign_content_sha256 = true,
	};
	struct sigv4_result res;
	ck_assert_int_eq(sigv4_sign(&req, &res, NULL, 0), 0);
	/* sha256("abc") */
	ck_assert_str_eq(res.payload_hash,
			 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ck_assert_str_eq(res.signed_headers, "host;x-amz-content-sha256;x-amz-date");
	ck_assert_ptr_nonnull(
		strstr(res.canonical_request,
		       "\nx-amz-content-sha256:ba7816bf8f01cfea414140de5dae2223b00361a3"
		       "96177a9cb410ff61f20015ad\n"));
	sigv4_result_free(&res);

	req.unsigned_payload = true;
	ck_assert_int_eq(sigv4_sign(&req, &res, NULL, 0), 0);
	ck_assert_str_eq(res.payload_hash, "UNSIGNED-PAYLOAD");
	size_t n = strlen(res.canonical_request);
	ck_assert_str_eq(res.canonical_request + n - 17, "\nUNSIGNED-PAYLOAD");
	ck_assert_ptr_nonnull(
		strstr(res.canonical_request, "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"));
	sigv4_result_free(&res);

	/* an empty session token is none */
	req.unsigned_payload = false;
	req.sign_content_sha256 = false;
	req.session_token = "";
	ck_assert_int_eq(sigv4_sign(&req, &res, NULL, 0), 0);
	ck_assert_str_eq(res.signed_headers, "host;x-amz-date");
	sigv4_result_free(&res);
}
END_TEST

static int sign_err(const char *method, const char *url, const struct sigv4_header *h, size_t nh,
		    const char *token, char *err)
{
	struct sigv4_req req = {
		.method = method,
		.url = url,
		.headers = h,
		.n_headers = nh,
		.access_key_id = AKID,
		.secret_key = SECRET,
		.session_token = token,
		.region = "us-east-1",
		.service = "service",
		.when = SUITE_TIME,
	};
	struct sigv4_result res;
	err[0] = '\0';
	int r = sigv4_sign(&req, &res, err, SIGV4_ERR_MAX);
	if (r == 0)
		sigv4_result_free(&res);
	else {
		ck_assert_ptr_null(res.authorization);
		ck_assert_ptr_null(res.canonical_request);
		ck_assert_str_ne(err, "");
		ck_assert_ptr_null(strstr(err, SECRET));
	}
	return r;
}

START_TEST(test_refusals)
{
	char err[SIGV4_ERR_MAX];
	ck_assert_int_eq(sign_err("GET", "ftp://h/", NULL, 0, NULL, err), -EINVAL);
	ck_assert_int_eq(sign_err("GET", "h/", NULL, 0, NULL, err), -EINVAL);
	ck_assert_int_eq(sign_err("GET", "https:///x", NULL, 0, NULL, err), -EINVAL);
	ck_assert_int_eq(sign_err("GET", "https://u:p@h/", NULL, 0, NULL, err), -EINVAL);
	ck_assert_int_eq(sign_err("GET", "https://h/#frag", NULL, 0, NULL, err), -EINVAL);
	ck_assert_int_eq(sign_err("GET", "https://h:8x/", NULL, 0, NULL, err), -EINVAL);
	ck_assert_int_eq(sign_err("GET", "https://h:/", NULL, 0, NULL, err), -EINVAL);
	ck_assert_int_eq(sign_err("get", "https://h/", NULL, 0, NULL, err), -EINVAL);
	ck_assert_int_eq(sign_err("", "https://h/", NULL, 0, NULL, err), -EINVAL);

	const struct sigv4_header nl[] = {{"X-A", "a\r\nX-Injected: 1"}};
	ck_assert_int_eq(sign_err("GET", "https://h/", nl, 1, NULL, err), -EINVAL);
	const struct sigv4_header badname[] = {{"X A", "1"}};
	ck_assert_int_eq(sign_err("GET", "https://h/", badname, 1, NULL, err), -EINVAL);
	const struct sigv4_header noname[] = {{"", "1"}};
	ck_assert_int_eq(sign_err("GET", "https://h/", noname, 1, NULL, err), -EINVAL);
	const struct sigv4_header date[] = {{"X-Amz-Date", "20150830T123601Z"}};
	ck_assert_int_eq(sign_err("GET", "https://h/", date, 1, NULL, err), -EINVAL);
	const struct sigv4_header tok[] = {{"X-Amz-Security-Token", "other"}};
	ck_assert_int_eq(sign_err("GET", "https://h/", tok, 1, "secret-token", err), -EINVAL);
	ck_assert_ptr_null(strstr(err, "secret-token"));

	/* caps */
	struct sigv4_header many[SIGV4_HEADERS_MAX + 1];
	for (size_t i = 0; i < SIGV4_HEADERS_MAX + 1; i++)
		many[i] = (struct sigv4_header){"X-A", "1"};
	ck_assert_int_eq(sign_err("GET", "https://h/", many, SIGV4_HEADERS_MAX, NULL, err), 0);
	ck_assert_int_eq(sign_err("GET", "https://h/", many, SIGV4_HEADERS_MAX + 1, NULL, err),
			 -EFBIG);
	char *longval = xmalloc(SIGV4_HEADER_MAX + 2);
	memset(longval, 'v', SIGV4_HEADER_MAX + 1);
	longval[SIGV4_HEADER_MAX + 1] = '\0';
	const struct sigv4_header big[] = {{"X-A", longval}};
	ck_assert_int_eq(sign_err("GET", "https://h/", big, 1, NULL, err), -EFBIG);
	free(longval);
	char *longurl = xmalloc(SIGV4_URL_MAX + 16);
	memcpy(longurl, "https://h/", 10);
	memset(longurl + 10, 'a', SIGV4_URL_MAX);
	longurl[SIGV4_URL_MAX + 10] = '\0';
	ck_assert_int_eq(sign_err("GET", longurl, NULL, 0, NULL, err), -EFBIG);
	free(longurl);

	/* missing pieces */
	struct sigv4_req req = {.method = "GET",
				.url = "https://h/",
				.access_key_id = AKID,
				.secret_key = SECRET,
				.region = "us-east-1",
				.service = NULL};
	struct sigv4_result res;
	ck_assert_int_eq(sigv4_sign(&req, &res, NULL, 0), -EINVAL);
	req.service = "ec2";
	req.region = "us/east";
	ck_assert_int_eq(sigv4_sign(&req, &res, err, sizeof(err)), -EINVAL);
	req.region = "us-east-1";
	req.secret_key = "";
	ck_assert_int_eq(sigv4_sign(&req, &res, err, sizeof(err)), -EINVAL);
	sigv4_result_free(NULL);
}
END_TEST

Suite *sigv4_suite(void)
{
	Suite *s = suite_create("sigv4");
	TCase *tc = tcase_create("aws-test-suite");
	tcase_add_test(tc, test_suite_complete);
	tcase_add_loop_test(tc, test_suite_vector, 0, (int)NCASES);
	suite_add_tcase(s, tc);
	tc = tcase_create("ec2");
	tcase_add_test(tc, test_ec2_describe_instances);
	suite_add_tcase(s, tc);
	tc = tcase_create("edges");
	tcase_add_test(tc, test_url_forms);
	tcase_add_test(tc, test_options);
	tcase_add_test(tc, test_refusals);
	suite_add_tcase(s, tc);
	return s;
}
