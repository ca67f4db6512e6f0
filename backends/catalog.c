/* catalog: see catalog.h. */
#include "catalog.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zip.h>

#include "http.h"

#define CATALOG_MAX_CSV (256ull << 20)
#define CATALOG_MAX_ZIP (128ull << 20)
#define VERSION_TIMEOUT_MS 15000
#define ZIP_TIMEOUT_MS 120000
#define FETCH_ATTEMPTS 3

enum kind { K_NONE, K_DIR, K_URL };

struct catalog {
	enum kind kind;
	char *loc;
	struct http_client *http;
};

static bool is_url(const char *s)
{
	return !strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8);
}

int catalog_new(const char *loc, struct catalog **out, char *err, size_t errlen)
{
	if (!loc || !*loc)
		loc = getenv("GPUHUNT_CATALOG_DIR");
	if (!loc || !*loc)
		loc = getenv("GPUHUNT_CATALOG_URL");
	if (!loc || !*loc)
		loc = CATALOG_DEFAULT_URL;
	enum kind k;
	if (!strcmp(loc, "none"))
		k = K_NONE;
	else if (is_url(loc))
		k = K_URL;
	else if (loc[0] == '/')
		k = K_DIR;
	else
		return fmt_cut(err, errlen,
			       "catalog: expected none, an absolute directory or an "
			       "http(s) URL"),
		       -EINVAL;
	struct catalog *c = xcalloc(1, sizeof(*c));
	c->kind = k;
	c->loc = xstrdup(loc);
	size_t n = strlen(c->loc);
	while (n > 1 && c->loc[n - 1] == '/') /* "<base>/" and "<base>" are the same place */
		c->loc[--n] = '\0';
	*out = c;
	return 0;
}

void catalog_set_http(struct catalog *c, struct http_client *http)
{
	c->http = http;
}

void catalog_free(struct catalog *c)
{
	if (!c)
		return;
	free(c->loc);
	free(c);
}

const char *catalog_location(const struct catalog *c)
{
	return c->loc;
}

void catalog_fetch_free(struct catalog_fetch *f)
{
	buf_free(&f->csv);
}

static int fetch_dir(struct catalog *c, const char *provider, const char *known,
		     struct catalog_fetch *out, char *err, size_t errlen)
{
	struct stat st;
	if (fmt(out->source, sizeof(out->source), "%s/%s.csv", c->loc, provider))
		return fmt_cut(err, errlen, "catalog: %s/%s.csv: path too long", c->loc, provider),
		       -ENAMETOOLONG;
	if (stat(out->source, &st) != 0) {
		int e = errno;
		return fmt_cut(err, errlen, "%s: %s", out->source, strerror(e)), -e;
	}
	/* fits: three numbers, at most 60 characters */
	fmt_cut(out->version, sizeof(out->version), "%lld-%lld.%09ld", (long long)st.st_size,
		(long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	if (!strcmp(known, out->version)) {
		out->unchanged = true;
		return 0;
	}
	int r = buf_read_file(&out->csv, out->source);
	if (r == -EFBIG)
		fmt_cut(err, errlen, "%s: larger than 256 MiB", out->source);
	else if (r)
		fmt_cut(err, errlen, "%s: %s", out->source, strerror(-r));
	return r;
}

/* GET url into resp; 0 on 200, else -errno with err ("<what>: HTTP 500", transport error). */
static int get(struct catalog *c, const char *url, const char *what, long timeout_ms,
	       size_t max_body, struct http_resp *resp, char *err, size_t errlen)
{
	if (!c->http)
		return fmt_cut(err, errlen, "%s: no HTTP client", what), -EIO;
	int r = http_get(c->http, url, timeout_ms, max_body, FETCH_ATTEMPTS, resp);
	if (r)
		return fmt_cut(err, errlen, "%s: %s", what,
			       resp->err[0] ? resp->err : strerror(-r)),
		       r;
	if (resp->status == 404 || resp->status == 403)
		return fmt_cut(err, errlen, "%s: HTTP %ld (no catalog there)", what, resp->status),
		       -ENOENT;
	if (resp->status != 200)
		return fmt_cut(err, errlen, "%s: HTTP %ld", what, resp->status), -EIO;
	return 0;
}

/* A version is one short line of [A-Za-z0-9._-] (it becomes a URL path segment). */
static int version_parse(const struct buf *b, char *out, size_t outlen)
{
	size_t a = 0, n = b->len;
	while (a < n && isspace((unsigned char)b->data[a]))
		a++;
	while (n > a && isspace((unsigned char)b->data[n - 1]))
		n--;
	if (n == a || n - a >= outlen)
		return -EPROTO;
	for (size_t i = a; i < n; i++) {
		unsigned char ch = (unsigned char)b->data[i];
		if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
			return -EPROTO;
	}
	memcpy(out, b->data + a, n - a);
	out[n - a] = '\0';
	return 0;
}

static int fetch_url(struct catalog *c, const char *provider, const char *known,
		     struct catalog_fetch *out, char *err, size_t errlen)
{
	struct http_resp resp;
	char url[1024], member[128];
	memset(&resp, 0, sizeof(resp));
	if (fmt(url, sizeof(url), "%s/%s/version", c->loc, provider) ||
	    fmt(member, sizeof(member), "%s.csv", provider))
		return fmt_cut(err, errlen, "catalog: %s/%s: URL too long", c->loc, provider),
		       -ENAMETOOLONG;
	int r = get(c, url, "catalog version", VERSION_TIMEOUT_MS, 4096, &resp, err, errlen);
	if (!r && version_parse(&resp.body, out->version, sizeof(out->version))) {
		r = -EPROTO;
		fmt_cut(err, errlen, "catalog version: not a version string");
	}
	http_resp_free(&resp);
	if (r)
		return r;
	if (!strcmp(known, out->version)) {
		out->unchanged = true;
		return 0;
	}
	memset(&resp, 0, sizeof(resp));
	if (fmt(out->source, sizeof(out->source), "%s/%s/%s/catalog.zip", c->loc, provider,
		out->version))
		return fmt_cut(err, errlen, "catalog: %s/%s/%s: URL too long", c->loc, provider,
			       out->version),
		       -ENAMETOOLONG;
	r = get(c, out->source, "catalog.zip", ZIP_TIMEOUT_MS, CATALOG_MAX_ZIP, &resp, err,
		errlen);
	if (!r)
		r = catalog_unzip(resp.body.data, resp.body.len, member, &out->csv, err, errlen);
	http_resp_free(&resp);
	return r;
}

int catalog_fetch(struct catalog *c, const char *provider, const char *known,
		  struct catalog_fetch *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	buf_init(&out->csv, CATALOG_MAX_CSV);
	if (err && errlen)
		err[0] = '\0';
	if (!known)
		known = "";
	int r;
	switch (c->kind) {
	case K_DIR:
		r = fetch_dir(c, provider, known, out, err, errlen);
		break;
	case K_URL:
		r = fetch_url(c, provider, known, out, err, errlen);
		break;
	default:
		r = -ENOTSUP;
		fmt_cut(err, errlen, "no catalog (mounted with -o catalog=none)");
	}
	if (r)
		catalog_fetch_free(out);
	return r;
}

int catalog_unzip(const void *data, size_t len, const char *name, struct buf *out, char *err,
		  size_t errlen)
{
	zip_error_t ze;
	zip_t *za = NULL;
	zip_file_t *zf = NULL;
	int r = 0;
	if (len == 0) /* libzip reads nothing as an empty archive */
		return fmt_cut(err, errlen, "catalog.zip: empty"), -EPROTO;
	zip_error_init(&ze);
	zip_source_t *src = zip_source_buffer_create(data, len, 0, &ze);
	if (src)
		za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
	if (!za) {
		fmt_cut(err, errlen, "catalog.zip: not a zip archive (%s)",
			zip_error_strerror(&ze));
		zip_source_free(src);
		zip_error_fini(&ze);
		return -EPROTO;
	}
	zip_int64_t i = zip_name_locate(za, name, 0);
	zip_stat_t st;
	if (i < 0) {
		r = -ENOENT;
		fmt_cut(err, errlen, "catalog.zip has no %s", name);
		goto out;
	}
	zip_stat_init(&st);
	if (zip_stat_index(za, (zip_uint64_t)i, 0, &st) == 0 && (st.valid & ZIP_STAT_SIZE) &&
	    st.size > out->limit - out->len) {
		r = -EFBIG;
		fmt_cut(err, errlen, "catalog.zip: %s is larger than %zu bytes", name, out->limit);
		goto out;
	}
	zf = zip_fopen_index(za, (zip_uint64_t)i, 0);
	if (!zf) {
		r = -EPROTO;
		fmt_cut(err, errlen, "catalog.zip: %s: %s", name, zip_strerror(za));
		goto out;
	}
	char chunk[65536];
	for (;;) {
		zip_int64_t n = zip_fread(zf, chunk, sizeof(chunk));
		if (n < 0) { /* bad checksum, truncated or corrupt deflate data */
			r = -EPROTO;
			fmt_cut(err, errlen, "catalog.zip: %s: %s", name, zip_file_strerror(zf));
			break;
		}
		if (n == 0)
			break;
		if ((r = buf_append(out, chunk, (size_t)n))) {
			fmt_cut(err, errlen, "catalog.zip: %s is too large", name);
			break;
		}
	}
out:
	if (zf)
		zip_fclose(zf);
	zip_discard(za);
	zip_error_fini(&ze);
	return r;
}
