/* awsapi: see awsapi.h. */
#include "awsapi.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libxml/parser.h>

#include "backend.h"
#include "http.h"
#include "sigv4.h"
#include "../lib/enc.h"

#define AWS_BODY_MAX (32u << 20) /* a DescribeInstances page of 1000 is a few MB */
#define AWS_TIMEOUT_MS 30000
#define CREDS_TEXT_MAX 8192 /* the remembered form of one credential */
#define CREDS_CACHE_S 300    /* the longest a resolved credential is reused */
#define CREDS_EXPIRY_MARGIN_S 300

static const struct aws_svc {
	const char *env;      /* AWS_ENDPOINT_URL_<SERVICE> */
	const char *dflt;     /* the URL, %s the region for regional services */
	bool global;	      /* signed for us-east-1 whatever the region */
	const char *version;  /* the query API's version */
	const char *sig_name; /* the service in the signature's scope */
} svcs[] = {
	[AWS_EC2] = {"AWS_ENDPOINT_URL_EC2", "https://ec2.%s.amazonaws.com/", false, "2016-11-15",
		     "ec2"},
	[AWS_STS] = {"AWS_ENDPOINT_URL_STS", "https://sts.amazonaws.com/", true, "2011-06-15",
		     "sts"},
	[AWS_IAM] = {"AWS_ENDPOINT_URL_IAM", "https://iam.amazonaws.com/", true, "2010-05-08",
		     "iam"},
	[AWS_SQ] = {"AWS_ENDPOINT_URL_SERVICE_QUOTAS", "https://servicequotas.%s.amazonaws.com/",
		    false, NULL, "servicequotas"},
};

bool aws_region_ok(const char *region)
{
	size_t n = region ? strlen(region) : 0;
	if (n < 1 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((region[i] >= 'a' && region[i] <= 'z') || (region[i] >= '0' && region[i] <= '9') ||
		      region[i] == '-'))
			return false;
	return true;
}

int aws_endpoint(enum aws_service svc, const char *region, char *url, size_t n)
{
	const struct aws_svc *s = &svcs[svc];
	const char *ign = getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
	const char *o = NULL;
	if (!ign || strcasecmp(ign, "true")) {
		o = getenv(s->env);
		if (!o || !*o)
			o = getenv("AWS_ENDPOINT_URL");
	}
	if (o && *o) {
		/* an endpoint without a path is the service's root, as the SDKs send it */
		const char *host = strstr(o, "://");
		bool has_path = host && strchr(host + 3, '/');
		return fmt(url, n, "%s%s", o, has_path ? "" : "/") ? -ENAMETOOLONG : 0;
	}
	/* the default: the host, with the region for regional services */
	const char *pct = strstr(s->dflt, "%s");
	if (!pct)
		return fmt(url, n, "%s", s->dflt) ? -ENAMETOOLONG : 0;
	return fmt(url, n, "%.*s%s%s", (int)(pct - s->dflt), s->dflt, region, pct + 2)
		       ? -ENAMETOOLONG
		       : 0;
}

/* ------------------------------------------------------------------ credentials */

/* Credentials are remembered in the mount's memo (backend.h), keyed by a digest of the config
 * (a changed config resolves again), as one line per field: access key id, secret, session
 * token ("" none), expiry, source, region. */
#define CREDS_WHAT_LEN (2 * 32 + 8)

static void creds_what(const struct backend_ctx *ctx, char *what, size_t n)
{
	char hex[2 * sizeof(ctx->config->digest) + 1] = "";
	if (ctx->config)
		(void)hex_encode(ctx->config->digest, sizeof(ctx->config->digest), hex, sizeof(hex));
	fmt_cut(what, n, "creds %s", hex); /* fits: CREDS_WHAT_LEN holds 6 + 64 hex digits */
}

static bool creds_recall(const struct backend_ctx *ctx, struct aws_creds *c)
{
	char what[CREDS_WHAT_LEN], *val = xmalloc(CREDS_TEXT_MAX);
	bool ok = backend_memo_get(ctx, "", (creds_what(ctx, what, sizeof(what)), what), val,
				   CREDS_TEXT_MAX);
	char *f[6] = {NULL}, *save = val;
	for (size_t i = 0; ok && i < 6; i++) {
		f[i] = save;
		save = i < 5 ? strchr(save, '\n') : NULL;
		if (i < 5 && !save)
			ok = false;
		else if (save)
			*save++ = '\0';
	}
	if (ok) {
		memset(c, 0, sizeof(*c));
		/* fits: creds_remember wrote these from a struct aws_creds of the same sizes */
		fmt_cut(c->access_key_id, sizeof(c->access_key_id), "%s", f[0]);
		c->secret_access_key = xstrdup(f[1]);
		c->session_token = f[2][0] ? xstrdup(f[2]) : NULL;
		c->expires = strtoll(f[3], NULL, 10);
		fmt_cut(c->source, sizeof(c->source), "%s", f[4]);
		fmt_cut(c->region, sizeof(c->region), "%s", f[5]);
	}
	explicit_bzero(val, CREDS_TEXT_MAX);
	free(val);
	return ok;
}

static void creds_remember(const struct backend_ctx *ctx, const struct aws_creds *c, int ttl_s)
{
	char what[CREDS_WHAT_LEN];
	char *val = xasprintf("%s\n%s\n%s\n%lld\n%s\n%s", c->access_key_id,
			      c->secret_access_key ? c->secret_access_key : "",
			      c->session_token ? c->session_token : "", c->expires, c->source,
			      c->region);
	creds_what(ctx, what, sizeof(what));
	if (strlen(val) < CREDS_TEXT_MAX)
		backend_memo_put_ttl(ctx, "", what, val, ttl_s);
	explicit_bzero(val, strlen(val));
	free(val);
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
	xmlInitParser();
}

int aws_api_open(struct aws_api *a, const struct backend_ctx *ctx, char *err, size_t errlen)
{
	time_t now = time(NULL);
	memset(a, 0, sizeof(*a));
	a->ctx = ctx;
	pthread_once(&xml_once, xml_init);
	if (creds_recall(ctx, &a->creds))
		return 0;
	int r = aws_creds_resolve(ctx, NULL, &a->creds, err, errlen);
	if (r)
		return r;
	time_t until = now + CREDS_CACHE_S;
	if (a->creds.expires && a->creds.expires - CREDS_EXPIRY_MARGIN_S < until)
		until = a->creds.expires - CREDS_EXPIRY_MARGIN_S;
	if (until <= now)
		return 0; /* about to expire: not worth keeping */
	creds_remember(ctx, &a->creds, (int)(until - now));
	return 0;
}

void aws_api_close(struct aws_api *a)
{
	aws_creds_free(&a->creds);
}

/* ------------------------------------------------------------------ queries */

/* s form-encoded as the AWS SDKs write query bodies (see pct_encode). */
static void enc(struct buf *b, const char *s)
{
	(void)pct_encode(b, s, strlen(s), PCT_FORM);
}

void awsq_init(struct aws_query *q, const char *action)
{
	buf_init(&q->b, 1u << 20);
	/* fits: actions are literals (the longest, AuthorizeSecurityGroupIngress, is 29) */
	fmt_cut(q->action, sizeof(q->action), "%s", action);
	q->too_big = false;
}

void awsq_form(const struct aws_query *q, enum aws_service svc, struct buf *out)
{
	(void)buf_append(out, "Action=", 7);
	enc(out, q->action);
	if (svcs[svc].version) {
		(void)buf_append(out, "&Version=", 9);
		enc(out, svcs[svc].version);
	}
	(void)buf_append(out, q->b.data, q->b.len);
}

void awsq_free(struct aws_query *q)
{
	if (q->b.data)
		explicit_bzero(q->b.data, q->b.len); /* user data, tokens */
	buf_free(&q->b);
}

void awsq_add(struct aws_query *q, const char *name, const char *value)
{
	size_t before = q->b.len;
	if (q->too_big)
		return;
	if (buf_append(&q->b, "&", 1) ||
	    pct_encode(&q->b, name, strlen(name), PCT_FORM) ||
	    buf_append(&q->b, "=", 1) ||
	    pct_encode(&q->b, value ? value : "", value ? strlen(value) : 0, PCT_FORM)) {
		/* over the cap: never send a request cut short (aws_query refuses it) */
		q->b.len = before;
		q->too_big = true;
	}
}

void awsq_addf(struct aws_query *q, const char *value, const char *namefmt, ...)
{
	char name[256];
	va_list ap;
	va_start(ap, namefmt);
	int r = vfmt(name, sizeof(name), namefmt, ap);
	va_end(ap);
	if (r) /* never with fleetfs's numbered names; a cut name is not sent */
		q->too_big = true;
	else
		awsq_add(q, name, value);
}

void awsq_filter(struct aws_query *q, int n, const char *name, const char *const *values)
{
	awsq_addf(q, name, "Filter.%d.Name", n);
	for (int k = 0; values && values[k]; k++)
		awsq_addf(q, values[k], "Filter.%d.Value.%d", n, k + 1);
}

/* ------------------------------------------------------------------ XML */

static bool named(const xmlNode *n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && n->name && !strcmp((const char *)n->name, name);
}

xmlNode *awsx_child(const xmlNode *n, const char *name)
{
	for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
		if (named(c, name))
			return c;
	return NULL;
}

xmlNode *awsx_path(const xmlNode *n, const char *path)
{
	char part[128];
	const xmlNode *cur = n;
	for (const char *p = path; cur && *p;) {
		size_t k = strcspn(p, "/");
		if (fmt(part, sizeof(part), "%.*s", (int)k, p))
			return NULL; /* no element has a name that long */
		cur = awsx_child(cur, part);
		p += k + (p[k] == '/');
	}
	return (xmlNode *)cur;
}

bool awsx_text(const xmlNode *n, const char *path, char *buf, size_t len)
{
	const xmlNode *e = *path ? awsx_path(n, path) : n;
	if (len)
		buf[0] = '\0';
	if (!e)
		return false;
	xmlChar *t = xmlNodeGetContent(e);
	str_sanitize(buf, len, t ? (const char *)t : "");
	xmlFree(t);
	return true;
}

xmlNode *awsx_first(const xmlNode *set)
{
	return awsx_child(set, "item");
}

xmlNode *awsx_next(const xmlNode *item)
{
	for (xmlNode *c = item ? item->next : NULL; c; c = c->next)
		if (named(c, "item"))
			return c;
	return NULL;
}

xmlNode *awsx_root(xmlDoc *doc)
{
	return doc ? xmlDocGetRootElement(doc) : NULL;
}

/* The first element named name anywhere below n (depth first). */
static xmlNode *find_deep(xmlNode *n, const char *name)
{
	for (xmlNode *c = n ? n->children : NULL; c; c = c->next) {
		if (named(c, name))
			return c;
		xmlNode *d = find_deep(c, name);
		if (d)
			return d;
	}
	return NULL;
}

xmlDoc *aws_xml_parse(const char *data, size_t len)
{
	if (!len || len > INT32_MAX)
		return NULL;
	pthread_once(&xml_once, xml_init);
	/* no XML_PARSE_NOENT (entities stay unexpanded), no DTD loading, no network; and AWS's
	 * answers have no DTD, so one with a DTD (entities) is refused whole */
	xmlDoc *d = xmlReadMemory(data, (int)len, "aws.xml", NULL,
				  XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
					  XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	if (d && (d->intSubset || d->extSubset)) {
		xmlFreeDoc(d);
		d = NULL;
	}
	return d;
}

/* ------------------------------------------------------------------ errors */

static bool code_in(const char *code, const char *const *set)
{
	for (size_t i = 0; set[i]; i++)
		if (!strcmp(code, set[i]))
			return true;
	return false;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

/* The errno of AWS's error code (see awsapi.h) and HTTP status. */
static int aws_errno(const char *code, long status)
{
	static const char *const auth[] = {
		"AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch",
		"UnrecognizedClientException", "InvalidSignatureException",
		"MissingAuthenticationToken", "MissingAuthenticationTokenException", "ExpiredToken",
		"ExpiredTokenException", "RequestExpired", "OptInRequired", "UnauthorizedOperation",
		"AccessDenied", "AccessDeniedException", "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
		NULL};
	static const char *const capacity[] = {
		"InsufficientInstanceCapacity", "InsufficientCapacity", "InstanceLimitExceeded",
		"VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "SpotMaxPriceTooLow",
		"InsufficientFreeAddressesInSubnet", "Unsupported", "InsufficientHostCapacity",
		"InsufficientReservedInstanceCapacity", NULL};
	static const char *const throttled[] = {"RequestLimitExceeded", "Throttling",
						"ThrottlingException", "TooManyRequestsException",
						NULL};
	if (code_in(code, auth))
		return -EACCES;
	if (code_in(code, capacity))
		return -ENOSPC;
	if (code_in(code, throttled))
		return -EAGAIN;
	if (ends_with(code, ".NotFound") || ends_with(code, ".Unknown") ||
	    !strcmp(code, "NoSuchEntity") || !strcmp(code, "NoSuchResourceException"))
		return -ENOENT;
	if (status >= 500)
		return -EIO;
	if (status >= 400)
		return -EINVAL;
	return -EPROTO;
}

/* err = "aws: <action>: <code>: <message>" (the message sanitized, secrets masked). */
static int aws_fail(struct aws_api *a, const char *action, const char *code, const char *msg,
		    long status, char *err, size_t errlen)
{
	char m[600];
	str_sanitize(m, sizeof(m), msg ? msg : "");
	/* a cut code is shown, and matches none fleetfs acts on (those are all shorter) */
	fmt_cut(a->code, sizeof(a->code), "%s", code);
	if (*code && *m)
		fmt_cut(err, errlen, "aws: %s: %s: %s", action, code, m);
	else if (*code)
		fmt_cut(err, errlen, "aws: %s: %s (HTTP %ld)", action, code, status);
	else
		fmt_cut(err, errlen, "aws: %s: HTTP %ld", action, status);
	backend_redact(a->creds.secret_access_key, err);
	backend_redact(a->creds.session_token, err);
	return *code ? aws_errno(code, status) : status >= 500 ? -EIO : -EPROTO;
}

/* ------------------------------------------------------------------ calls */

/* Sign and send one POST to svc: body of content type ctype, plus X-Amz-Target when target. */
static int aws_send(struct aws_api *a, enum aws_service svc, const char *region,
		    const char *ctype, const char *target, const struct buf *body, bool idem,
		    struct http_resp *resp, char *err, size_t errlen)
{
	const struct aws_svc *s = &svcs[svc];
	const char *sig_region = s->global ? "us-east-1" : region;
	char url[1024];
	struct sigv4_header sh[2] = {{"Content-Type", ctype}, {"X-Amz-Target", target}};
	struct sigv4_result sr;
	memset(resp, 0, sizeof(*resp));
	if (!aws_region_ok(sig_region))
		return backend_fail(err, errlen, -EINVAL, "aws: not a region name");
	if (aws_endpoint(svc, sig_region, url, sizeof(url)))
		return backend_fail(err, errlen, -ENAMETOOLONG, "aws: the %s endpoint is too long",
				    s->sig_name);
	struct sigv4_req sq = {.method = "POST", .url = url, .headers = sh,
			       .n_headers = target ? 2 : 1, .body = body->data,
			       .body_len = body->len,
			       .access_key_id = a->creds.access_key_id,
			       .secret_key = a->creds.secret_access_key,
			       .session_token = a->creds.session_token, .region = sig_region,
			       .service = s->sig_name, .when = time(NULL)};
	char e[SIGV4_ERR_MAX] = "";
	int r = sigv4_sign(&sq, &sr, e, sizeof(e));
	if (r)
		return backend_fail(err, errlen, r, "aws: cannot sign the request: %s", e);
	char *h_ct = xasprintf("Content-Type: %s", ctype);
	char *h_date = xasprintf("X-Amz-Date: %s", sr.amz_date);
	char *h_auth = xasprintf("Authorization: %s", sr.authorization);
	char *h_tok = a->creds.session_token && *a->creds.session_token
			      ? xasprintf("X-Amz-Security-Token: %s", a->creds.session_token)
			      : NULL;
	char *h_tgt = target ? xasprintf("X-Amz-Target: %s", target) : NULL;
	const char *hdrs[7] = {h_ct, h_date, h_auth, NULL, NULL, NULL, NULL};
	size_t nh = 3;
	if (h_tok)
		hdrs[nh++] = h_tok;
	if (h_tgt)
		hdrs[nh++] = h_tgt;
	static const char *const secret[] = {"X-Amz-Security-Token", NULL};
	/* EC2 answers no capacity with a 500: AWS's verdict, not a fault to retry */
	static const char *const final[] = {"<Code>InsufficientInstanceCapacity</Code>",
					    "<Code>InsufficientCapacity</Code>",
					    "<Code>InsufficientHostCapacity</Code>",
					    "<Code>InsufficientReservedInstanceCapacity</Code>", NULL};
	struct http_req req = {.method = "POST", .url = url, .headers = hdrs,
			       .secret_headers = secret, .body = body->data,
			       .body_len = body->len, .timeout_ms = AWS_TIMEOUT_MS,
			       .max_body = AWS_BODY_MAX, .label = "aws", .idempotent = idem,
			       .max_attempts = a->max_attempts, .final_markers = final};
	r = http_do(a->ctx->http, &req, resp);
	if (r)
		fmt_cut(err, errlen, "aws: %s: %s", s->sig_name,
			resp->err[0] ? resp->err : strerror(-r));
	free(h_ct);
	free(h_date);
	backend_secret_free(h_auth);
	backend_secret_free(h_tok);
	free(h_tgt);
	sigv4_result_free(&sr);
	return r;
}

int aws_query(struct aws_api *a, enum aws_service svc, const char *region,
	      const struct aws_query *q, bool idempotent, xmlDoc **doc, char *err,
	      size_t errlen)
{
	struct http_resp resp;
	struct buf body;
	*doc = NULL;
	a->code[0] = '\0';
	a->status = 0;
	if (q->too_big) {
		fmt_cut(err, errlen, "%s: request larger than 1 MiB", q->action);
		return -EFBIG;
	}
	buf_init(&body, q->b.len + 4096); /* room for Action and Version */
	awsq_form(q, svc, &body);
	int r = aws_send(a, svc, region, "application/x-www-form-urlencoded; charset=utf-8", NULL,
			 &body, idempotent, &resp, err, errlen);
	explicit_bzero(body.data, body.len);
	buf_free(&body);
	if (r) {
		http_resp_free(&resp);
		return r;
	}
	a->status = resp.status;
	xmlDoc *d = aws_xml_parse(resp.body.data, resp.body.len);
	if (resp.status >= 200 && resp.status < 300) {
		if (!d)
			r = backend_fail(err, errlen, -EPROTO, "aws: %s: HTTP %ld without an XML "
							       "answer", q->action, resp.status);
	} else {
		char code[AWS_CODE_MAX] = "", msg[600] = "";
		xmlNode *root = awsx_root(d);
		xmlNode *c = find_deep(root, "Code"), *m = find_deep(root, "Message");
		if (c)
			(void)awsx_text(c, "", code, sizeof(code));
		if (m)
			(void)awsx_text(m, "", msg, sizeof(msg));
		r = aws_fail(a, q->action, code, msg, resp.status, err, errlen);
		xmlFreeDoc(d);
		d = NULL;
	}
	http_resp_free(&resp);
	*doc = d;
	return r;
}

int aws_sq_call(struct aws_api *a, const char *region, const char *op, const cJSON *body,
		cJSON **out, char *err, size_t errlen)
{
	char target[128];
	struct http_resp resp;
	struct buf b;
	*out = NULL;
	a->code[0] = '\0';
	a->status = 0;
	char *text = cJSON_PrintUnformatted(body);
	if (!text)
		return backend_fail(err, errlen, -ENOMEM, "aws: out of memory");
	buf_init(&b, 1u << 20);
	(void)buf_append(&b, text, strlen(text));
	cJSON_free(text);
	if (fmt(target, sizeof(target), "ServiceQuotasV20190624.%s", op)) {
		buf_free(&b);
		return backend_fail(err, errlen, -EINVAL, "aws: %s: operation name too long", op);
	}
	int r = aws_send(a, AWS_SQ, region, "application/x-amz-json-1.1", target, &b, true, &resp,
			 err, errlen);
	buf_free(&b);
	if (r) {
		http_resp_free(&resp);
		return r;
	}
	a->status = resp.status;
	cJSON *d = resp.body.len ? cJSON_ParseWithLength(resp.body.data, resp.body.len) : NULL;
	if (resp.status >= 200 && resp.status < 300) {
		if (!cJSON_IsObject(d))
			r = backend_fail(err, errlen, -EPROTO, "aws: %s: HTTP %ld without a JSON "
							       "object", op, resp.status);
	} else {
		/* "__type" may carry the model's namespace: "com.amazonaws...#Code" */
		const char *t = backend_jstr(d, "__type"), *m = backend_jstr(d, "message");
		char *hdr = t ? NULL : http_resp_header(&resp, "x-amzn-ErrorType");
		if (!t)
			t = hdr;
		if (!m)
			m = backend_jstr(d, "Message");
		const char *hash = t ? strrchr(t, '#') : NULL;
		char code[AWS_CODE_MAX];
		/* a cut code is shown, and matches none fleetfs acts on (those are all shorter) */
		fmt_cut(code, sizeof(code), "%s", hash ? hash + 1 : t ? t : "");
		code[strcspn(code, ":")] = '\0'; /* the header's "Code:http://..." form */
		r = aws_fail(a, op, code, m, resp.status, err, errlen);
		free(hdr);
	}
	if (r) {
		cJSON_Delete(d);
		d = NULL;
	}
	http_resp_free(&resp);
	*out = d;
	return r;
}
