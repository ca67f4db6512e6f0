/* awscreds: AWS credentials from config.yml or the SDKs' default chain (see awscreds.h).
 *
 * Every secret read passes through a buffer that is wiped before it is freed: the file
 * contents, the values inih hands over (copied, and the copies wiped on replace), the IMDS
 * bodies. Error messages name sources (variables, paths, the IMDS endpoint and role), never a
 * value other than the access key id's absence or presence.
 */
#include "awscreds.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <pthread.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../lib/util.h"
#include "backend.h"
#include "http.h"

/* inih cuts section names at 49 bytes (its MAX_SECTION 50): a profile name longer than this
 * could match a cut section, so it is refused. */
#define PROFILE_NAME_MAX 40
#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_TOKEN_TTL "21600"
#define IMDS_BODY_MAX (64 * 1024)

static pthread_once_t ini_once = PTHREAD_ONCE_INIT;

/* Debian's inih reads its options from globals: lines on the heap, growing up to
 * AWS_CREDS_LINE_MAX (session tokens are often over the default 200), and no inline comments
 * (configparser as botocore uses it has none: a value is the whole rest of the line). */
static void ini_setup(void)
{
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = AWS_CREDS_LINE_MAX;
	ini_allow_inline_comments = false;
}

static void secret_set(char **dst, const char *v)
{
	backend_secret_free(*dst);
	*dst = xstrdup(v);
}

void aws_creds_free(struct aws_creds *c)
{
	if (!c)
		return;
	backend_secret_free(c->secret_access_key);
	backend_secret_free(c->session_token);
	explicit_bzero(c, sizeof(*c));
}

/* ---- shared files ---- */

struct prof {
	const char *name;
	bool config; /* the config file: [profile name], and [default] for "default" */
	bool found;  /* the profile's section had at least one key */
	char *id, *secret, *token, *region; /* malloc'd (secret and token wiped) */
};

static void prof_free(struct prof *p)
{
	backend_secret_free(p->id);
	backend_secret_free(p->secret);
	backend_secret_free(p->token);
	free(p->region);
	p->id = p->secret = p->token = p->region = NULL;
	p->found = false;
}

static bool section_is(const struct prof *p, const char *section)
{
	if (!p->config || (!strcmp(p->name, "default") && !strcmp(section, "default")))
		return !strcmp(section, p->name);
	if (strncmp(section, "profile", 7) || !isblank((unsigned char)section[7]))
		return false;
	const char *s = section + 7;
	while (isblank((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isblank((unsigned char)s[n - 1]))
		n--;
	return n == strlen(p->name) && !strncmp(s, p->name, n);
}

static int prof_handler(void *user, const char *section, const char *name, const char *value)
{
	struct prof *p = user;
	if (!section_is(p, section))
		return 1;
	p->found = true;
	if (!strcasecmp(name, "aws_access_key_id"))
		secret_set(&p->id, value);
	else if (!strcasecmp(name, "aws_secret_access_key"))
		secret_set(&p->secret, value);
	else if (!strcasecmp(name, "aws_session_token"))
		secret_set(&p->token, value);
	else if (p->config && !strcasecmp(name, "region"))
		secret_set(&p->region, value);
	return 1;
}

/* Read the profile from the INI file at path into p. 0 (p->found tells whether the file has
 * it), -ENOENT no such file, else -errno with err. */
static int prof_read(const char *path, struct prof *p, char *err, size_t errlen)
{
	struct buf b;
	int r;
	buf_init(&b, AWS_CREDS_FILE_MAX);
	r = buf_read_file(&b, path);
	if (r == -ENOENT)
		goto out;
	if (r == -EFBIG) {
		fmt_cut(err, errlen, "aws creds: %s is over %d bytes", path, AWS_CREDS_FILE_MAX);
		goto out;
	}
	if (r) {
		fmt_cut(err, errlen, "aws creds: cannot read %s: %s", path, strerror(-r));
		r = -EINVAL;
		goto out;
	}
	(void)pthread_once(&ini_once, ini_setup);
	int line = ini_parse_string(b.data ? b.data : "", prof_handler, p);
	if (line == -2) {
		r = -ENOMEM;
		fmt_cut(err, errlen, "aws creds: out of memory reading %s", path);
	} else if (line) {
		r = -EINVAL;
		fmt_cut(err, errlen, "aws creds: %s: line %d is not INI (or is over %d bytes)",
			path, line, AWS_CREDS_LINE_MAX - 3);
	}
out:
	if (b.data)
		explicit_bzero(b.data, b.len);
	buf_free(&b);
	if (r && r != -ENOENT)
		prof_free(p);
	return r;
}

/* The path of a shared file: the variable's value when set and non-empty, else ~/.aws/<leaf>. */
static int aws_path(const char *var, const char *leaf, char *dst, size_t n)
{
	const char *v = getenv(var);
	if (v && *v)
		return fmt(dst, n, "%s", v);
	const char *home = getenv("HOME");
	char pwbuf[4096];
	struct passwd pw, *res = NULL;
	if ((!home || !*home) && !getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) && res)
		home = res->pw_dir;
	if (!home || !*home)
		return -ENOENT;
	return fmt(dst, n, "%s/.aws/%s", home, leaf);
}

/* Take the key from p (file at path) into out. 1 taken, 0 p has no key, -EINVAL partial. */
static int prof_take(struct prof *p, const char *path, struct aws_creds *out, char *err,
		     size_t errlen)
{
	if (!p->id && !p->secret)
		return 0;
	if (!p->id || !*p->id || !p->secret || !*p->secret)
		return fmt_cut(err, errlen, "aws creds: profile %s in %s has %s but no %s", p->name,
			       path, p->id ? "aws_access_key_id" : "aws_secret_access_key",
			       p->id ? "aws_secret_access_key" : "aws_access_key_id"),
		       -EINVAL;
	if (fmt(out->access_key_id, sizeof(out->access_key_id), "%s", p->id))
		return fmt_cut(err, errlen,
			       "aws creds: aws_access_key_id of profile %s in %s is too long",
			       p->name, path),
		       -EINVAL;
	out->secret_access_key = p->secret;
	p->secret = NULL;
	if (p->token && *p->token) {
		out->session_token = p->token;
		p->token = NULL;
	}
	fmt_cut(out->source, sizeof(out->source), "profile %s", p->name);
	return 1;
}

/* ---- IMDSv2 ---- */

static int imds_call(struct http_client *http, const char *method, const char *url,
		     const char *const *headers, struct http_resp *resp)
{
	static const char *const secret[] = {"X-aws-ec2-metadata-token", NULL};
	struct http_req req = {.method = method,
			       .url = url,
			       .headers = headers,
			       .secret_headers = secret,
			       .timeout_ms = 2000,
			       .connect_timeout_ms = 1000,
			       .max_body = IMDS_BODY_MAX,
			       .max_attempts = 1,
			       .label = "imds"};
	return http_do(http, &req, resp);
}

static void body_wipe(struct http_resp *r)
{
	if (r->body.data)
		explicit_bzero(r->body.data, r->body.len);
	http_resp_free(r);
}

static bool role_valid(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("+=,.@_-", *s))
			return false;
	return true;
}

/* "2024-01-01T00:00:00Z" into unix seconds; -EINVAL otherwise. */
static int iso_parse(const char *s, long long *out)
{
	struct tm tm = {0};
	const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!rest || *rest)
		return -EINVAL;
	*out = (long long)timegm(&tm);
	return 0;
}

static int imds_creds(const char *body, size_t len, const char *role, struct aws_creds *out,
		      char *why, size_t whylen)
{
	cJSON *j = cJSON_ParseWithLength(body, len);
	int r = -EINVAL;
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "Code");
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "AccessKeyId"));
	const char *sec =
		cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "SecretAccessKey"));
	const char *tok = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "Token"));
	const char *exp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "Expiration"));
	long long expires = 0;
	if (!cJSON_IsObject(j)) {
		fmt_cut(why, whylen, "the credentials of role %s are not JSON", role);
		goto out;
	}
	if (code && (!cJSON_IsString(code) || strcmp(code->valuestring, "Success"))) {
		fmt_cut(why, whylen,
			"the credentials of role %s are not available (Code not Success)", role);
		r = -EACCES;
		goto out;
	}
	if (!id || !*id || !sec || !*sec || strlen(id) >= sizeof(out->access_key_id)) {
		fmt_cut(why, whylen,
			"the credentials of role %s lack AccessKeyId or SecretAccessKey", role);
		goto out;
	}
	if (exp && iso_parse(exp, &expires)) {
		fmt_cut(why, whylen, "the credentials of role %s have a malformed Expiration",
			role);
		goto out;
	}
	/* fits: its length was checked above */
	fmt_cut(out->access_key_id, sizeof(out->access_key_id), "%s", id);
	out->secret_access_key = xstrdup(sec);
	out->session_token = tok && *tok ? xstrdup(tok) : NULL;
	out->expires = expires;
	fmt_cut(out->source, sizeof(out->source), "imds %s", role);
	r = 0;
out:
	if (j) {
		/* wipe the parsed copies of the secrets before cJSON frees them */
		for (cJSON *it = j->child; it; it = it->next)
			if (cJSON_IsString(it) && it->valuestring)
				explicit_bzero(it->valuestring, strlen(it->valuestring));
		cJSON_Delete(j);
	}
	return r;
}

/* IMDSv2 at base. 0 with out filled, -EACCES (nothing there, why says so), -EINVAL (a bad
 * answer), -ECANCELED, -ENOMEM. */
static int imds_resolve(struct http_client *http, const char *base, struct aws_creds *out,
			char *why, size_t whylen)
{
	struct http_resp resp = {0};
	char url[1024], role[128], token[1024], hdr[1100];
	int r;
	const char *const put_h[] = {"X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TOKEN_TTL, NULL};
	const char *const get_h[] = {hdr, NULL};

	if (fmt(url, sizeof(url), "%s/latest/api/token", base))
		return fmt_cut(why, whylen, "endpoint too long"), -EINVAL;
	r = imds_call(http, "PUT", url, put_h, &resp);
	if (r) {
		fmt_cut(why, whylen, "no token (%s)", resp.err);
		goto out;
	}
	if (resp.status != 200) {
		fmt_cut(why, whylen, "the token request got HTTP %ld", resp.status);
		r = -EACCES;
		goto out;
	}
	size_t n = resp.body.len;
	while (n && isspace((unsigned char)resp.body.data[n - 1]))
		n--;
	bool ok = n && n < sizeof(token);
	for (size_t i = 0; ok && i < n; i++)
		ok = isgraph((unsigned char)resp.body.data[i]);
	if (!ok) {
		fmt_cut(why, whylen, "the token is malformed");
		r = -EINVAL;
		goto out;
	}
	memcpy(token, resp.body.data, n);
	token[n] = '\0';
	/* fits: 26 + a token shorter than 1024 */
	fmt_cut(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %s", token);
	body_wipe(&resp);

	if (fmt(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base)) {
		fmt_cut(why, whylen, "endpoint too long");
		r = -EINVAL;
		goto out;
	}
	r = imds_call(http, "GET", url, get_h, &resp);
	if (r) {
		fmt_cut(why, whylen, "the role listing failed (%s)", resp.err);
		goto out;
	}
	if (resp.status == 404) {
		fmt_cut(why, whylen, "no IAM role attached to this instance");
		r = -EACCES;
		goto out;
	}
	if (resp.status != 200) {
		fmt_cut(why, whylen, "the role listing got HTTP %ld", resp.status);
		r = -EACCES;
		goto out;
	}
	const char *p = resp.body.data ? resp.body.data : "";
	p += strspn(p, " \t\r\n");
	size_t rl = strcspn(p, " \t\r\n");
	/* fits: at most sizeof(role) - 1 characters */
	fmt_cut(role, sizeof(role), "%.*s", (int)(rl < sizeof(role) ? rl : sizeof(role) - 1), p);
	if (rl >= sizeof(role) || !role_valid(role)) {
		fmt_cut(why, whylen, "the role listing has no valid role name");
		r = -EINVAL;
		goto out;
	}
	http_resp_free(&resp);

	if (fmt(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base, role)) {
		fmt_cut(why, whylen, "endpoint too long");
		r = -EINVAL;
		goto out;
	}
	r = imds_call(http, "GET", url, get_h, &resp);
	if (r) {
		fmt_cut(why, whylen, "the credentials of role %s failed (%s)", role, resp.err);
		goto out;
	}
	if (resp.status != 200) {
		fmt_cut(why, whylen, "the credentials of role %s got HTTP %ld", role, resp.status);
		r = -EACCES;
		goto out;
	}
	r = imds_creds(resp.body.data ? resp.body.data : "", resp.body.len, role, out, why, whylen);
out:
	if (r && r != -ECANCELED && r != -ENOMEM && r != -EINVAL)
		r = -EACCES;
	explicit_bzero(token, sizeof(token));
	explicit_bzero(hdr, sizeof(hdr));
	body_wipe(&resp);
	return r;
}

/* ---- the chain ---- */

static int from_config(const struct backend_ctx *ctx, struct aws_creds *out, char *err,
		       size_t errlen)
{
	char *id = backend_config_str(ctx, "creds.access_key");
	char *sec = backend_config_str(ctx, "creds.secret_key");
	int r = -EINVAL;
	if (!id || !*id || !sec || !*sec) {
		fmt_cut(err, errlen,
			"aws: config.yml creds of type access_key need access_key and "
			"secret_key");
		goto out;
	}
	if (fmt(out->access_key_id, sizeof(out->access_key_id), "%s", id)) {
		fmt_cut(err, errlen, "aws: config.yml creds.access_key is too long");
		goto out;
	}
	out->secret_access_key = sec;
	sec = NULL;
	fmt_cut(out->source, sizeof(out->source), "config");
	r = 0;
out:
	backend_secret_free(id);
	backend_secret_free(sec);
	return r;
}

static int from_env(struct aws_creds *out, char *err, size_t errlen)
{
	const char *id = getenv("AWS_ACCESS_KEY_ID"), *sec = getenv("AWS_SECRET_ACCESS_KEY");
	const char *tok = getenv("AWS_SESSION_TOKEN");
	bool has_id = id && *id, has_sec = sec && *sec;
	if (!has_id && !has_sec)
		return 0;
	if (!has_id || !has_sec)
		return fmt_cut(err, errlen, "aws creds: %s is set but %s is not",
			       has_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
			       has_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID"),
		       -EINVAL;
	if (fmt(out->access_key_id, sizeof(out->access_key_id), "%s", id))
		return fmt_cut(err, errlen, "aws creds: AWS_ACCESS_KEY_ID is too long"), -EINVAL;
	out->secret_access_key = xstrdup(sec);
	out->session_token = tok && *tok ? xstrdup(tok) : NULL;
	fmt_cut(out->source, sizeof(out->source), "env");
	return 1;
}

static const char *file_state(int r, const struct prof *p)
{
	if (r == -ENOENT)
		return "absent";
	return p->found ? "no keys for it" : "no such profile";
}

static int from_chain(struct http_client *http, struct aws_creds *out, char *err, size_t errlen)
{
	char cred_path[1024] = "", conf_path[1024] = "", pname[PROFILE_NAME_MAX + 1];
	char why[256] = "";
	const char *envp = getenv("AWS_PROFILE");
	bool explicit_prof = envp && *envp;
	struct prof cred = {0}, conf = {0};
	int r, rc = -ENOENT, rf = -ENOENT;

	if (explicit_prof) {
		bool ok = strlen(envp) <= PROFILE_NAME_MAX;
		for (const char *s = envp; ok && *s; s++)
			ok = isgraph((unsigned char)*s) && *s != '[' && *s != ']';
		if (!ok) {
			char shown[64];
			str_sanitize(shown, sizeof(shown), envp);
			return fmt_cut(err, errlen,
				       "aws creds: AWS_PROFILE \"%s\" is not a profile name "
				       "(printable, no "
				       "blanks or brackets, at most %d characters)",
				       shown, PROFILE_NAME_MAX),
			       -EINVAL;
		}
	}
	/* fits: AWS_PROFILE is at most PROFILE_NAME_MAX (checked above) */
	fmt_cut(pname, sizeof(pname), "%s", explicit_prof ? envp : "default");
	cred.name = conf.name = pname;
	conf.config = true;

	/* The config file first: its region goes with whatever source the key comes from. */
	if (aws_path("AWS_CONFIG_FILE", "config", conf_path, sizeof(conf_path)) == 0) {
		rf = prof_read(conf_path, &conf, err, errlen);
		if (rf && rf != -ENOENT)
			return rf;
		if (conf.region && fmt(out->region, sizeof(out->region), "%s", conf.region))
			out->region[0] = '\0';
	}

	r = from_env(out, err, errlen);
	if (r)
		goto out;

	if (aws_path("AWS_SHARED_CREDENTIALS_FILE", "credentials", cred_path, sizeof(cred_path)) ==
	    0) {
		rc = prof_read(cred_path, &cred, err, errlen);
		if (rc && rc != -ENOENT) {
			r = rc;
			goto out;
		}
	}
	r = prof_take(&cred, cred_path, out, err, errlen);
	if (!r)
		r = prof_take(&conf, conf_path, out, err, errlen);
	if (r)
		goto out;

	if (explicit_prof && !cred.found && !conf.found) {
		r = fmt(err, errlen,
			"aws creds: profile %s (AWS_PROFILE) not found: tried %s (%s), %s (%s)",
			pname, cred_path[0] ? cred_path : "~/.aws/credentials",
			file_state(rc, &cred), conf_path[0] ? conf_path : "~/.aws/config",
			file_state(rf, &conf)),
		r = -EACCES;
		goto out;
	}

	const char *dis = getenv("AWS_EC2_METADATA_DISABLED");
	const char *ep = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	char base[512];
	if (fmt(base, sizeof(base), "%s", ep && *ep ? ep : IMDS_DEFAULT)) {
		r = fmt(err, errlen, "aws creds: AWS_EC2_METADATA_SERVICE_ENDPOINT is too long"),
		r = -EINVAL;
		goto out;
	}
	for (size_t n = strlen(base); n && base[n - 1] == '/';)
		base[--n] = '\0';
	if (dis && !strcasecmp(dis, "true"))
		fmt_cut(why, sizeof(why), "disabled by AWS_EC2_METADATA_DISABLED");
	else if (!http)
		fmt_cut(why, sizeof(why), "no HTTP client");
	else {
		r = imds_resolve(http, base, out, why, sizeof(why));
		if (r == 0) {
			r = 1;
			goto out;
		}
		if (r != -EACCES) {
			fmt_cut(err, errlen, "aws creds: IMDS at %s: %s", base, why);
			goto out;
		}
	}
	fmt_cut(err, errlen,
		"aws creds: no credentials found; tried: environment (AWS_ACCESS_KEY_ID, "
		"AWS_SECRET_ACCESS_KEY unset), profile %s in %s (%s) and %s (%s), EC2 IMDSv2 at "
		"%s (%s)",
		pname, cred_path[0] ? cred_path : "~/.aws/credentials", file_state(rc, &cred),
		conf_path[0] ? conf_path : "~/.aws/config", file_state(rf, &conf), base, why);
	r = -EACCES;
out:
	prof_free(&cred);
	prof_free(&conf);
	return r < 0 ? r : 0;
}

int aws_creds_resolve(const struct backend_ctx *ctx, struct http_client *http,
		      struct aws_creds *out, char *err, size_t errlen)
{
	char *type = backend_config_str(ctx, "creds.type");
	int r;
	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	if (type && !strcmp(type, "access_key"))
		r = from_config(ctx, out, err, errlen);
	else if (type && !strcmp(type, "default"))
		r = from_chain(http ? http : ctx->http, out, err, errlen);
	else
		r = fmt(err, errlen, "aws: config.yml creds.type must be access_key or default"),
		r = -EINVAL;
	free(type);
	if (r)
		aws_creds_free(out);
	return r;
}
