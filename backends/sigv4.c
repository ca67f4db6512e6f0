/* sigv4: AWS Signature Version 4 signing (see sigv4.h).
 *
 * The canonical request is built in capped buffers from the parsed URL and a sorted copy of
 * the headers; the signing key is derived by the HMAC chain "AWS4"+secret -> date -> region
 * -> service -> "aws4_request" and wiped (with the secret copy) before returning. Path
 * normalization follows what the published test suite expects (and botocore does): dot
 * segments and empty segments go, a trailing slash stays unless the path ends in "." or "..".
 */
#include "sigv4.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../lib/util.h"
#include "../lib/enc.h"

/* The canonical request: the encoded URL (at most 3 times the URL) and the headers. */
#define CANON_MAX (3 * SIGV4_URL_MAX + (SIGV4_HEADERS_MAX + 8) * (SIGV4_HEADER_MAX + 256) + 4096)
#define ALGO "AWS4-HMAC-SHA256"

struct hdr {
	char *name;  /* lowercased */
	char *value; /* trimmed, blanks collapsed */
	size_t idx;  /* input order, to keep same-name values in order */
};

__attribute__((format(printf, 3, 4))) static void seterr(char *err, size_t errlen, const char *f,
							 ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, f);
	vfmt_cut(err, errlen, f, ap);
	va_end(ap);
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* The canonical URI of a path (without the query): see the top of this file. */
static int canon_path(struct buf *b, const char *path, size_t n)
{
	size_t nseg = 0;
	const char **seg = xcalloc(n / 2 + 2, sizeof(*seg));
	size_t *len = xcalloc(n / 2 + 2, sizeof(*len));
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && path[j] != '/')
			j++;
		if (j - i == 0 || (j - i == 1 && path[i] == '.')) {
			/* empty or ".": nothing */
		} else if (j - i == 2 && path[i] == '.' && path[i + 1] == '.') {
			if (nseg)
				nseg--;
		} else {
			seg[nseg] = path + i;
			len[nseg] = j - i;
			nseg++;
		}
		i = j + 1;
	}
	/* "/a/" keeps its slash; "/a/." and "/a/b/.." do not (as posix normpath) */
	bool trailing = n > 0 && path[n - 1] == '/';
	int r = buf_append(b, "/", 1);
	for (size_t k = 0; !r && k < nseg; k++) {
		if (k)
			r = buf_append(b, "/", 1);
		if (!r)
			r = pct_encode(b, seg[k], len[k], 0);
	}
	if (!r && trailing && nseg)
		r = buf_append(b, "/", 1);
	free(seg);
	free(len);
	return r;
}

struct qparam {
	char *key;
	char *value;
};

static int qparam_cmp(const void *a, const void *b)
{
	const struct qparam *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : strcmp(x->value, y->value);
}

static char *buf_take(struct buf *b)
{
	char *s = buf_steal(b, NULL);
	return s ? s : xstrdup("");
}

/* The canonical query string of q[0..n). */
static int canon_query(struct buf *b, const char *q, size_t n)
{
	size_t cnt = 0, np = 1;
	for (size_t i = 0; i < n; i++)
		np += q[i] == '&';
	struct qparam *ps = xcalloc(np, sizeof(*ps));
	int r = 0;
	for (size_t i = 0; i <= n && !r;) {
		size_t j = i;
		while (j < n && q[j] != '&')
			j++;
		if (j > i) {
			const char *eq = memchr(q + i, '=', j - i);
			size_t klen = eq ? (size_t)(eq - (q + i)) : j - i;
			struct buf kb, vb;
			buf_init(&kb, CANON_MAX);
			buf_init(&vb, CANON_MAX);
			r = pct_encode(&kb, q + i, klen, PCT_DECODE);
			if (!r && eq)
				r = pct_encode(&vb, eq + 1, (size_t)(q + j - (eq + 1)),
						 PCT_DECODE);
			ps[cnt].key = buf_take(&kb);
			ps[cnt].value = buf_take(&vb);
			cnt++;
		}
		i = j + 1;
	}
	if (!r)
		qsort(ps, cnt, sizeof(*ps), qparam_cmp);
	for (size_t k = 0; !r && k < cnt; k++)
		r = buf_printf(b, "%s%s=%s", k ? "&" : "", ps[k].key, ps[k].value);
	for (size_t k = 0; k < cnt; k++) {
		free(ps[k].key);
		free(ps[k].value);
	}
	free(ps);
	return r;
}

static int hdr_cmp(const void *a, const void *b)
{
	const struct hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Check and normalize one header into h (name lowercased, value trimmed and collapsed). */
static int hdr_make(struct hdr *h, const char *name, const char *value, size_t idx, char *err,
		    size_t errlen)
{
	if (!name || !*name || !value) {
		seterr(err, errlen, "sigv4: a header without a name or value");
		return -EINVAL;
	}
	size_t nl = strlen(name), vl = strlen(value);
	if (nl > 256 || vl > SIGV4_HEADER_MAX) {
		seterr(err, errlen, "sigv4: header too long");
		return -EFBIG;
	}
	for (size_t i = 0; i < nl; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c >= 0x7f || c == ':') {
			seterr(err, errlen, "sigv4: bad header name");
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < vl; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			seterr(err, errlen, "sigv4: control character in the value of a header");
			return -EINVAL;
		}
	}
	h->name = xstrdup(name);
	for (char *p = h->name; *p; p++)
		*p = lower(*p);
	h->value = xmalloc(vl + 1);
	size_t o = 0;
	const char *p = value;
	while (blank(*p))
		p++;
	while (*p) {
		if (blank(*p)) {
			while (blank(*p))
				p++;
			if (*p)
				h->value[o++] = ' ';
			continue;
		}
		h->value[o++] = *p++;
	}
	h->value[o] = '\0';
	h->idx = idx;
	return 0;
}

static const struct hdr *hdr_find(const struct hdr *hs, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(hs[i].name, name) == 0)
			return &hs[i];
	return NULL;
}

/* host[:port] of the URL, lowercased, without the scheme's default port; *rest: the path. */
static int url_host(const char *url, struct buf *host, const char **rest, char *err, size_t errlen)
{
	const char *sep = strstr(url, "://");
	const char *defport;
	if (sep && sep - url == 5 && strncasecmp(url, "https", 5) == 0)
		defport = "443";
	else if (sep && sep - url == 4 && strncasecmp(url, "http", 4) == 0)
		defport = "80";
	else {
		seterr(err, errlen, "sigv4: not an http(s) URL");
		return -EINVAL;
	}
	const char *a = sep + 3;
	size_t alen = strcspn(a, "/?#");
	if (alen == 0 || memchr(a, '@', alen) || strchr(a, '#')) {
		seterr(err, errlen, "sigv4: URL without a host, or with user info or a fragment");
		return -EINVAL;
	}
	const char *hend = a + alen, *port = NULL;
	const char *colon = NULL;
	if (a[0] == '[') {
		const char *rb = memchr(a, ']', alen);
		if (!rb) {
			seterr(err, errlen, "sigv4: bad IPv6 host in URL");
			return -EINVAL;
		}
		if (rb + 1 < a + alen)
			colon = rb + 1;
	} else {
		colon = memchr(a, ':', alen);
	}
	if (colon) {
		if (*colon != ':' || colon + 1 == a + alen) {
			seterr(err, errlen, "sigv4: bad port in URL");
			return -EINVAL;
		}
		for (const char *p = colon + 1; p < a + alen; p++)
			if (*p < '0' || *p > '9') {
				seterr(err, errlen, "sigv4: bad port in URL");
				return -EINVAL;
			}
		hend = colon;
		port = colon + 1;
	}
	for (const char *p = a; p < hend; p++) {
		char c = lower(*p);
		int r = buf_append(host, &c, 1);
		if (r)
			return r;
	}
	size_t plen = port ? (size_t)(a + alen - port) : 0;
	if (port && !(plen == strlen(defport) && memcmp(port, defport, plen) == 0)) {
		int r = buf_append(host, colon, plen + 1);
		if (r)
			return r;
	}
	*rest = a + alen;
	return 0;
}

/* A credential-scope word: printable, no blanks, '/' or ','. */
static bool scope_word(const char *s)
{
	if (!s || !*s || strlen(s) > 128)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '/' ||
		    *s == ',')
			return false;
	return true;
}

static int hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
	unsigned int outlen = 0;
	if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out,
		  &outlen) ||
	    outlen != 32)
		return -EIO;
	return 0;
}

static int sha256_hex(const void *p, size_t n, char dst[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!EVP_Digest(n ? p : "", n, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return -EIO;
	(void)hex_encode(md, 32, dst, 65);
	return 0;
}

void sigv4_result_free(struct sigv4_result *r)
{
	if (!r)
		return;
	free(r->canonical_request);
	free(r->string_to_sign);
	free(r->signed_headers);
	free(r->authorization);
	memset(r, 0, sizeof(*r));
}

int sigv4_sign(const struct sigv4_req *req, struct sigv4_result *out, char *err, size_t errlen)
{
	int r = 0;
	struct hdr *hs = NULL;
	size_t nh = 0;
	struct buf host, cr, sh, sts;
	char *kbuf = NULL;
	size_t klen = 0;
	unsigned char k[32], k2[32], sig[32];
	char date[9], scope[512];

	memset(out, 0, sizeof(*out));
	buf_init(&host, 1024);
	buf_init(&cr, CANON_MAX);
	buf_init(&sh, CANON_MAX);
	buf_init(&sts, 4096);
	if (err && errlen)
		err[0] = '\0';

	if (!req->method || !*req->method || !req->url || !req->access_key_id || !req->secret_key ||
	    !*req->secret_key || !scope_word(req->access_key_id) || !scope_word(req->region) ||
	    !scope_word(req->service) || (req->n_headers && !req->headers) ||
	    (req->body_len && !req->body)) {
		seterr(err, errlen,
		       "sigv4: missing or bad method, URL, credentials, region or service");
		r = -EINVAL;
		goto out;
	}
	for (const char *p = req->method; *p; p++)
		if (*p < 'A' || *p > 'Z') {
			seterr(err, errlen, "sigv4: bad method");
			r = -EINVAL;
			goto out;
		}
	if (strlen(req->url) > SIGV4_URL_MAX || req->n_headers > SIGV4_HEADERS_MAX) {
		seterr(err, errlen, "sigv4: URL too long or too many headers");
		r = -EFBIG;
		goto out;
	}
	const char *token = req->session_token && *req->session_token ? req->session_token : NULL;

	/* time */
	struct tm tm;
	if (!gmtime_r(&req->when, &tm) ||
	    strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16) {
		seterr(err, errlen, "sigv4: bad signing time");
		r = -EINVAL;
		goto out;
	}
	memcpy(date, out->amz_date, 8);
	date[8] = '\0';

	/* payload */
	if (req->unsigned_payload)
		memcpy(out->payload_hash, "UNSIGNED-PAYLOAD", sizeof("UNSIGNED-PAYLOAD"));
	else if ((r = sha256_hex(req->body, req->body_len, out->payload_hash)))
		goto out;

	/* URL */
	const char *rest;
	if ((r = url_host(req->url, &host, &rest, err, errlen)))
		goto out;
	size_t plen = strcspn(rest, "?");
	const char *query = rest[plen] == '?' ? rest + plen + 1 : "";

	/* headers: the caller's, then the added ones unless passed */
	hs = xcalloc(req->n_headers + 4, sizeof(*hs));
	for (size_t i = 0; i < req->n_headers; i++, nh++)
		if ((r = hdr_make(&hs[nh], req->headers[i].name, req->headers[i].value, nh, err,
				  errlen)))
			goto out;
	const struct hdr *have = hdr_find(hs, nh, "x-amz-date");
	if (have && strcmp(have->value, out->amz_date) != 0) {
		seterr(err, errlen, "sigv4: x-amz-date header differs from the signing time");
		r = -EINVAL;
		goto out;
	}
	have = hdr_find(hs, nh, "x-amz-security-token");
	if (have && token && strcmp(have->value, token) != 0) {
		seterr(err, errlen, "sigv4: x-amz-security-token header differs from the token");
		r = -EINVAL;
		goto out;
	}
	struct {
		const char *name, *value;
		bool want;
	} add[] = {
		{"host", host.data ? host.data : "", true},
		{"x-amz-date", out->amz_date, true},
		{"x-amz-security-token", token, token != NULL},
		{"x-amz-content-sha256", out->payload_hash, req->sign_content_sha256},
	};
	for (size_t i = 0; i < sizeof(add) / sizeof(add[0]); i++) {
		if (!add[i].want || hdr_find(hs, nh, add[i].name))
			continue;
		if ((r = hdr_make(&hs[nh], add[i].name, add[i].value, nh, err, errlen)))
			goto out;
		nh++;
	}
	qsort(hs, nh, sizeof(*hs), hdr_cmp);

	/* canonical request */
	if ((r = buf_printf(&cr, "%s\n", req->method)) || (r = canon_path(&cr, rest, plen)) ||
	    (r = buf_append(&cr, "\n", 1)) || (r = canon_query(&cr, query, strlen(query))) ||
	    (r = buf_append(&cr, "\n", 1)))
		goto too_big;
	for (size_t i = 0; i < nh; i++) {
		bool same = i > 0 && strcmp(hs[i].name, hs[i - 1].name) == 0;
		if (same)
			r = buf_printf(&cr, ",%s", hs[i].value);
		else
			r = buf_printf(&cr, "%s%s:%s", i ? "\n" : "", hs[i].name, hs[i].value);
		if (!r && !same)
			r = buf_printf(&sh, "%s%s", sh.len ? ";" : "", hs[i].name);
		if (r)
			goto too_big;
	}
	if ((r = buf_printf(&cr, "\n\n%s\n%s", sh.data ? sh.data : "", out->payload_hash)))
		goto too_big;

	/* string to sign */
	if ((r = fmt(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, req->region,
		     req->service))) {
		seterr(err, errlen, "sigv4: credential scope too long");
		goto out;
	}
	char crhash[65];
	if ((r = sha256_hex(cr.data, cr.len, crhash)))
		goto out;
	if ((r = buf_printf(&sts, ALGO "\n%s\n%s\n%s", out->amz_date, scope, crhash)))
		goto too_big;

	/* signing key and signature */
	klen = 4 + strlen(req->secret_key);
	kbuf = xmalloc(klen + 1);
	memcpy(kbuf, "AWS4", 4);
	memcpy(kbuf + 4, req->secret_key, klen - 4 + 1);
	if ((r = hmac(kbuf, klen, date, k)) || (r = hmac(k, 32, req->region, k2)) ||
	    (r = hmac(k2, 32, req->service, k)) || (r = hmac(k, 32, "aws4_request", k2)) ||
	    (r = hmac(k2, 32, sts.data, sig))) {
		seterr(err, errlen, "sigv4: HMAC-SHA256 failed");
		goto out;
	}
	(void)hex_encode(sig, 32, out->signature, sizeof(out->signature));

	out->authorization = xasprintf(ALGO " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
				       req->access_key_id, scope, sh.data, out->signature);
	out->canonical_request = buf_take(&cr);
	out->string_to_sign = buf_take(&sts);
	out->signed_headers = buf_take(&sh);
	goto out;

too_big:
	seterr(err, errlen, "sigv4: canonical request too large");
out:
	if (kbuf) {
		OPENSSL_cleanse(kbuf, klen);
		free(kbuf);
	}
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(k2, sizeof(k2));
	for (size_t i = 0; hs && i < nh; i++) {
		free(hs[i].name);
		free(hs[i].value);
	}
	free(hs);
	buf_free(&host);
	buf_free(&cr);
	buf_free(&sh);
	buf_free(&sts);
	if (r)
		sigv4_result_free(out);
	return r;
}
