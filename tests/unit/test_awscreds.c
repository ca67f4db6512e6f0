/* Unit tests of backends/awscreds: the static key of config.yml; the default chain from the
 * environment, the shared credentials and config files (AWS_PROFILE, the path variables,
 * [profile x] sections, precedence, region) and IMDSv2 against a fake metadata service in a
 * thread of the test (127.0.0.1, port 0) that answers like IMDSv2: a GET without the session
 * token gets 401. Every test points AWS_EC2_METADATA_SERVICE_ENDPOINT at a local port (or
 * disables IMDS) and HOME at a temporary directory: nothing reaches 169.254.169.254 or the
 * real ~/.aws. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../backends/awscreds.h"
#include "../../backends/backend.h"
#include "../../backends/http.h"
#include "../../lib/util.h"
#include "helpers.h"
#include "suites.h"

#define TOKEN "imds-session-token-42"
#define ROLE "fleet-role"
#define IMDS_SECRET "imdsSECRETvalue"

/* ---- a fake IMDSv2 ---- */

#define IMDS_MAX_REQ 16

struct imds {
	int lfd, port;
	pthread_t th;
	atomic_bool stop;
	bool no_role;		 /* the listing answers 404 */
	char *req[IMDS_MAX_REQ]; /* request heads, in order */
	size_t nreq;
	int unauthorized; /* GETs answered 401 */
	char url[128];
};

static void imds_send(int fd, int status, const char *body)
{
	char head[256];
	fmt_cut(head, sizeof(head), "HTTP/1.1 %d Fake\r\nContent-Length: %zu\r\n\r\n", status,
		strlen(body));
	(void)!send(fd, head, strlen(head), MSG_NOSIGNAL);
	(void)!send(fd, body, strlen(body), MSG_NOSIGNAL);
}

static void imds_answer(struct imds *m, int fd, const char *head)
{
	if (m->nreq < IMDS_MAX_REQ)
		m->req[m->nreq] = xstrdup(head);
	m->nreq++;
	if (!strncmp(head, "PUT /latest/api/token ", 22)) {
		if (strcasestr(head, "\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"))
			imds_send(fd, 200, TOKEN);
		else
			imds_send(fd, 400, "");
		return;
	}
	if (!strcasestr(head, "\r\nX-aws-ec2-metadata-token: " TOKEN "\r\n")) {
		m->unauthorized++;
		imds_send(fd, 401, "");
		return;
	}
	if (!strncmp(head, "GET /latest/meta-data/iam/security-credentials/ ", 48))
		imds_send(fd, m->no_role ? 404 : 200, m->no_role ? "" : ROLE "\n");
	else if (!strncmp(head, "GET /latest/meta-data/iam/security-credentials/" ROLE " ", 58))
		imds_send(fd, 200,
			  "{\"Code\":\"Success\",\"LastUpdated\":\"2026-01-01T00:00:00Z\","
			  "\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIAIMDS\",\"SecretAccessKey\":"
			  "\"" IMDS_SECRET
			  "\",\"Token\":\"imdsTOKEN\",\"Expiration\":\"2026-01-01T06:00:00Z\"}");
	else
		imds_send(fd, 404, "");
}

static void *imds_main(void *arg)
{
	struct imds *m = arg;
	int fd = -1;
	struct buf in;
	buf_init(&in, 1 << 16);
	while (!atomic_load(&m->stop)) {
		struct pollfd p = {.fd = fd >= 0 ? fd : m->lfd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		if (fd < 0) {
			fd = accept(m->lfd, NULL, NULL);
			continue;
		}
		char chunk[4096];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n <= 0 || buf_append(&in, chunk, (size_t)n)) {
			close(fd);
			fd = -1;
			(void)buf_truncate(&in, 0);
			continue;
		}
		const char *end;
		while (in.len && (end = memmem(in.data, in.len, "\r\n\r\n", 4))) {
			size_t hlen = (size_t)(end - in.data) + 4;
			char *head = xstrndup(in.data, hlen);
			imds_answer(m, fd, head);
			free(head);
			memmove(in.data, in.data + hlen, in.len - hlen);
			(void)buf_truncate(&in, in.len - hlen);
		}
	}
	if (fd >= 0)
		close(fd);
	buf_free(&in);
	return NULL;
}

static void imds_start(struct imds *m)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	m->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(m->lfd, 0);
	ck_assert_int_eq(bind(m->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(m->lfd, 4), 0);
	ck_assert_int_eq(getsockname(m->lfd, (struct sockaddr *)&a, &sl), 0);
	m->port = ntohs(a.sin_port);
	fmt_cut(m->url, sizeof(m->url), "http://127.0.0.1:%d/", m->port);
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", m->url, 1);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	ck_assert_int_eq(pthread_create(&m->th, NULL, imds_main, m), 0);
}

static void imds_stop(struct imds *m)
{
	atomic_store(&m->stop, true);
	pthread_join(m->th, NULL);
	close(m->lfd);
}

/* Free the records (read them between imds_stop and this). */
static void imds_free(struct imds *m)
{
	for (size_t i = 0; i < m->nreq && i < IMDS_MAX_REQ; i++)
		free(m->req[i]);
}

/* ---- fixtures ---- */

static const char cfg_default[] = "type: aws\ncreds:\n  type: default\n";

static char g_home[512];

static void setup(void)
{
	static const char *const vars[] = {"AWS_ACCESS_KEY_ID",		  "AWS_SECRET_ACCESS_KEY",
					   "AWS_SESSION_TOKEN",		  "AWS_PROFILE",
					   "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
					   "AWS_EC2_METADATA_DISABLED",	  "AWS_REGION",
					   "AWS_DEFAULT_REGION"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("no_proxy", "*", 1);
	/* never the real metadata service: a port nothing listens on (the IMDS tests set theirs) */
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	fmt_cut(g_home, sizeof(g_home), "%s", tmp_dir("awshome"));
	setenv("HOME", g_home, 1);
}

static struct backend_ctx ctx_of(const struct backend_config *cfg)
{
	return (struct backend_ctx){.project = "p", .name = "aws", .type = "aws", .config = cfg};
}

static void write_aws(const char *leaf, const char *text)
{
	char dir[600], path[700];
	fmt_cut(dir, sizeof(dir), "%s/.aws", g_home);
	(void)mkdir(dir, 0700);
	fmt_cut(path, sizeof(path), "%s/%s", dir, leaf);
	ck_assert_int_eq(file_write(path, text, strlen(text), 0600), 0);
}

static int resolve(const char *cfg, struct http_client *http, struct aws_creds *c, char *err,
		   size_t errlen)
{
	struct backend_config bc;
	int r = backend_config_parse(cfg, strlen(cfg), &bc, err, errlen);
	if (r)
		return r;
	struct backend_ctx ctx = ctx_of(&bc);
	r = aws_creds_resolve(&ctx, http, c, err, errlen);
	backend_config_free(&bc);
	return r;
}

/* ---- tests ---- */

START_TEST(test_access_key_from_config)
{
	struct aws_creds c;
	char err[512];
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1); /* ignored: the config's key is explicit */
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	ck_assert_int_eq(resolve(cfg_aws, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.access_key_id, "AKIA");
	ck_assert_str_eq(c.secret_access_key, "s3cr3t");
	ck_assert_ptr_null(c.session_token);
	ck_assert_str_eq(c.source, "config");
	ck_assert_int_eq(c.expires, 0);
	aws_creds_free(&c);
	ck_assert_ptr_null(c.secret_access_key);
	ck_assert_str_eq(c.access_key_id, "");

	const char *bad = "type: aws\ncreds:\n  type: access_key\n  access_key: AKIA\n";
	ck_assert_int_eq(resolve(bad, NULL, &c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "secret_key"));
	ck_assert_int_eq(resolve("type: aws\ncreds:\n  type: magic\n", NULL, &c, err, sizeof(err)),
			 -EINVAL);
}
END_TEST

START_TEST(test_default_env)
{
	struct aws_creds c;
	char err[512];
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	write_aws("credentials", "[default]\naws_access_key_id = AKIAFILE\n"
				 "aws_secret_access_key = filesecret\n");
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.access_key_id, "AKIAENV");
	ck_assert_str_eq(c.secret_access_key, "envsecret");
	ck_assert_ptr_null(c.session_token);
	ck_assert_str_eq(c.source, "env");
	aws_creds_free(&c);

	unsetenv("AWS_SECRET_ACCESS_KEY");
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "AWS_SECRET_ACCESS_KEY"));
}
END_TEST

START_TEST(test_env_session_token)
{
	struct aws_creds c;
	char err[512];
	setenv("AWS_ACCESS_KEY_ID", "ASIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	setenv("AWS_SESSION_TOKEN", "envtoken", 1);
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.session_token, "envtoken");
	ck_assert_str_eq(c.source, "env");
	aws_creds_free(&c);
}
END_TEST

START_TEST(test_profile_credentials_file)
{
	struct aws_creds c;
	char err[512], path[700];
	/* a token far over inih's default 200-byte line */
	char tok[2001];
	memset(tok, 'T', sizeof(tok) - 1);
	tok[sizeof(tok) - 1] = '\0';
	char *text = xasprintf("# comment\n[default]\naws_access_key_id=AKIADEF\n"
			       "aws_secret_access_key=defsecret\n\n[work]\n"
			       "AWS_Access_Key_Id = AKIAWORK\naws_secret_access_key = work;secret\n"
			       "aws_session_token = %s\n",
			       tok);
	write_aws("credentials", text);

	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.access_key_id, "AKIADEF");
	ck_assert_str_eq(c.source, "profile default");
	aws_creds_free(&c);

	setenv("AWS_PROFILE", "work", 1);
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.access_key_id, "AKIAWORK");
	ck_assert_str_eq(c.secret_access_key, "work;secret"); /* no inline comments */
	ck_assert_str_eq(c.session_token, tok);
	ck_assert_str_eq(c.source, "profile work");
	aws_creds_free(&c);

	/* AWS_SHARED_CREDENTIALS_FILE elsewhere: ~/.aws/credentials is not read */
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/other-creds", tmp_dir("awsalt")), 0);
	const char *other = "[work]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = o\n";
	ck_assert_int_eq(file_write(path, other, strlen(other), 0600), 0);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.access_key_id, "AKIAOTHER");
	aws_creds_free(&c);
	free(text);
}
END_TEST

START_TEST(test_config_only_profile)
{
	struct aws_creds c;
	char err[512];
	write_aws("config",
		  "[default]\nregion = eu-west-1\n\n[profile  dev ]\nregion = us-west-2\n"
		  "output = json\naws_access_key_id = AKIADEV\n"
		  "aws_secret_access_key = devsecret\naws_session_token = devtok\n"
		  "s3 =\n  max_concurrent_requests = 10\n[dev]\naws_access_key_id = NOTME\n"
		  "aws_secret_access_key = notme\n");
	setenv("AWS_PROFILE", "dev", 1);
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.access_key_id, "AKIADEV");
	ck_assert_str_eq(c.secret_access_key, "devsecret");
	ck_assert_str_eq(c.session_token, "devtok");
	ck_assert_str_eq(c.region, "us-west-2");
	ck_assert_str_eq(c.source, "profile dev");
	aws_creds_free(&c);

	/* the default profile's region goes with env creds too */
	unsetenv("AWS_PROFILE");
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.source, "env");
	ck_assert_str_eq(c.region, "eu-west-1");
	aws_creds_free(&c);

	/* AWS_CONFIG_FILE elsewhere */
	char path[700];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/cfg", tmp_dir("awscfg")), 0);
	ck_assert_int_eq(file_write(path, "[default]\nregion=ap-south-1\n", 28, 0600), 0);
	setenv("AWS_CONFIG_FILE", path, 1);
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.region, "ap-south-1");
	aws_creds_free(&c);
}
END_TEST

START_TEST(test_credentials_beat_config)
{
	struct aws_creds c;
	char err[512];
	write_aws("credentials", "[ci]\naws_access_key_id = AKIACRED\naws_secret_access_key = c\n");
	write_aws("config", "[profile ci]\naws_access_key_id = AKIACONF\n"
			    "aws_secret_access_key = f\nregion = ca-central-1\n");
	setenv("AWS_PROFILE", "ci", 1);
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.access_key_id, "AKIACRED");
	ck_assert_str_eq(c.secret_access_key, "c");
	ck_assert_str_eq(c.region, "ca-central-1");
	aws_creds_free(&c);

	/* a key without its secret is an error, not a fall-through */
	write_aws("credentials", "[ci]\naws_access_key_id = AKIACRED\n");
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "aws_secret_access_key"));
	/* a file that is not INI */
	write_aws("credentials", "[ci\naws_access_key_id = AKIACRED\n");
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 1"));
}
END_TEST

START_TEST(test_missing_profile)
{
	struct aws_creds c;
	char err[1024];
	write_aws("credentials", "[other]\naws_access_key_id = AKIAOTHER\n"
				 "aws_secret_access_key = topsecretvalue\n");
	setenv("AWS_PROFILE", "nosuch", 1);
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "nosuch"));
	ck_assert_ptr_nonnull(strstr(err, "/.aws/credentials (no such profile)"));
	ck_assert_ptr_nonnull(strstr(err, "/.aws/config (absent)"));
	ck_assert_ptr_null(strstr(err, "topsecretvalue"));
	ck_assert_ptr_null(strstr(err, "AKIAOTHER"));
	ck_assert_ptr_null(c.secret_access_key);

	/* nothing anywhere: the message lists the whole chain */
	unsetenv("AWS_PROFILE");
	ck_assert_int_eq(resolve(cfg_default, NULL, &c, err, sizeof(err)), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "environment"));
	ck_assert_ptr_nonnull(strstr(err, "profile default"));
	ck_assert_ptr_nonnull(strstr(err, "IMDS"));
	ck_assert_ptr_nonnull(strstr(err, "AWS_EC2_METADATA_DISABLED"));
	ck_assert_ptr_null(strstr(err, "topsecretvalue"));
}
END_TEST

START_TEST(test_imds)
{
	struct imds m = {0};
	struct aws_creds c;
	char err[1024];
	struct http_client *http = http_client_new();
	ck_assert_ptr_nonnull(http);
	imds_start(&m);

	/* the fake is IMDSv2: a GET without the token is refused */
	struct http_resp r;
	char url[256];
	ck_assert_int_eq(
		fmt(url, sizeof(url), "%slatest/meta-data/iam/security-credentials/", m.url), 0);
	ck_assert_int_eq(http_get(http, url, 2000, 0, 1, &r), 0);
	ck_assert_int_eq(r.status, 401);
	http_resp_free(&r);

	ck_assert_int_eq(resolve(cfg_default, http, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.access_key_id, "ASIAIMDS");
	ck_assert_str_eq(c.secret_access_key, IMDS_SECRET);
	ck_assert_str_eq(c.session_token, "imdsTOKEN");
	ck_assert_str_eq(c.source, "imds " ROLE);
	ck_assert_int_eq(c.expires, 1767225600LL + 6 * 3600); /* 2026-01-01T06:00:00Z */
	aws_creds_free(&c);
	imds_stop(&m);

	ck_assert_uint_eq(m.nreq, 4);
	ck_assert_int_eq(m.unauthorized, 1); /* only the test's own GET */
	ck_assert(!strncmp(m.req[1], "PUT /latest/api/token ", 22));
	ck_assert(!strncmp(m.req[2], "GET /latest/meta-data/iam/security-credentials/ ", 48));
	ck_assert(
		!strncmp(m.req[3], "GET /latest/meta-data/iam/security-credentials/" ROLE " ", 58));
	ck_assert_ptr_nonnull(strcasestr(m.req[2], "\r\nX-aws-ec2-metadata-token: " TOKEN "\r\n"));
	imds_free(&m);
	http_client_free(http);
}
END_TEST

START_TEST(test_imds_no_role)
{
	struct imds m = {.no_role = true};
	struct aws_creds c;
	char err[1024];
	struct http_client *http = http_client_new();
	imds_start(&m);
	ck_assert_int_eq(resolve(cfg_default, http, &c, err, sizeof(err)), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "no IAM role"));
	imds_stop(&m);
	imds_free(&m);
	http_client_free(http);
}
END_TEST

START_TEST(test_imds_disabled)
{
	struct imds m = {0};
	struct aws_creds c;
	char err[1024];
	struct http_client *http = http_client_new();
	imds_start(&m);
	setenv("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
	ck_assert_int_eq(resolve(cfg_default, http, &c, err, sizeof(err)), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "disabled by AWS_EC2_METADATA_DISABLED"));
	imds_stop(&m);
	ck_assert_uint_eq(m.nreq, 0);
	imds_free(&m);

	/* nothing listening: a quick -EACCES */
	unsetenv("AWS_EC2_METADATA_DISABLED");
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9", 1);
	ck_assert_int_eq(resolve(cfg_default, http, &c, err, sizeof(err)), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "127.0.0.1:9"));
	http_client_free(http);
}
END_TEST

Suite *awscreds_suite(void)
{
	Suite *s = suite_create("awscreds");
	TCase *tc = tcase_create("core");
	tcase_add_unchecked_fixture(tc, tmp_root_setup, tmp_root_teardown);
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_access_key_from_config);
	tcase_add_test(tc, test_default_env);
	tcase_add_test(tc, test_env_session_token);
	tcase_add_test(tc, test_profile_credentials_file);
	tcase_add_test(tc, test_config_only_profile);
	tcase_add_test(tc, test_credentials_beat_config);
	tcase_add_test(tc, test_missing_profile);
	tcase_add_test(tc, test_imds);
	tcase_add_test(tc, test_imds_no_role);
	tcase_add_test(tc, test_imds_disabled);
	suite_add_tcase(s, tc);
	return s;
}
