/* backend: see backend.h. The registry and the catalog offers source. */
#include "backend.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "../lib/ydoc.h"
#include "http.h"


int backend_config_parse(const char *text, size_t len, struct backend_config *out, char *err,
			 size_t errlen)
{
	char e[256];
	memset(out, 0, sizeof(*out));
	if (ydoc_load(text ? text : "", len, "config.yml", &out->doc, e, sizeof(e)))
		return fmt_cut(err, errlen, "config.yml: %s", e), -EINVAL;
	out->root = ydoc_root(out->doc);
	if (!out->root || ydoc_kind(out->doc, out->root) != Y_MAP) {
		backend_config_free(out);
		return fmt_cut(err, errlen, "config.yml: not a mapping"), -EINVAL;
	}
	unsigned int n = 0;
	if (!EVP_Digest(text ? text : "", len, out->digest, &n, EVP_sha256(), NULL) ||
	    n != sizeof(out->digest)) {
		backend_config_free(out);
		return fmt_cut(err, errlen, "config.yml: digest failed"), -ENOMEM;
	}
	return 0;
}

void backend_config_free(struct backend_config *c)
{
	if (!c)
		return;
	ydoc_free_secret(c->doc);
	memset(c, 0, sizeof(*c));
}

int backend_config_node(const struct backend_ctx *ctx, const char *path)
{
	const struct backend_config *c = ctx->config;
	char part[128];
	int node = c ? c->root : 0;
	for (const char *p = path; node && *p;) {
		size_t n = strcspn(p, ".");
		if (fmt(part, sizeof(part), "%.*s", (int)n, p))
			return 0;
		node = ydoc_kind(c->doc, node) == Y_MAP ? ydoc_map_get(c->doc, node, part) : 0;
		p += n + (p[n] == '.');
	}
	return node;
}

void backend_cut_regions(const struct backend_ctx *ctx, struct offer_list *l)
{
	int seq = backend_config_node(ctx, "regions");
	const struct ydoc *d = seq ? ctx->config->doc : NULL;
	size_t n = seq && ydoc_kind(d, seq) == Y_SEQ ? ydoc_len(d, seq) : 0, k = 0;
	const char **regions = n ? xcalloc(n, sizeof(*regions)) : NULL;
	for (size_t i = 0; i < n; i++) {
		const char *s = ydoc_str(d, ydoc_seq_at(d, seq, i));
		if (s && *s)
			regions[k++] = s;
	}
	offers_filter_regions(l, regions, k);
	free(regions);
}

char *backend_config_str(const struct backend_ctx *ctx, const char *path)
{
	int node = backend_config_node(ctx, path);
	const char *v = node ? ydoc_str(ctx->config->doc, node) : NULL;
	return v ? xstrdup(v) : NULL;
}

void backend_secret_free(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

const char *backend_endpoint(const struct backend_ctx *ctx, const char *dflt)
{
	return http_endpoint(ctx->type, dflt);
}

int backend_json(const struct backend_ctx *ctx, const char *method, const char *url,
		 const char *bearer, const cJSON *body, long *status, cJSON **out, char *err,
		 size_t errlen)
{
	char *auth = bearer ? xasprintf("Authorization: Bearer %s", bearer) : NULL;
	char *text = body ? cJSON_PrintUnformatted(body) : NULL;
	const char *hdrs[4] = {"Accept: application/json", NULL, NULL, NULL};
	size_t nh = 1;
	if (text)
		hdrs[nh++] = "Content-Type: application/json";
	if (auth)
		hdrs[nh++] = auth;
	struct http_req req = {.method = method, .url = url, .headers = hdrs, .body = text,
			       .body_len = text ? strlen(text) : 0, .label = ctx->type};
	struct http_resp resp;
	int r = http_do(ctx->http, &req, &resp);
	if (out)
		*out = NULL;
	if (r) {
		fmt_cut(err, errlen, "%s", resp.err[0] ? resp.err : strerror(-r));
	} else {
		*status = resp.status;
		if (out && resp.body.len)
			*out = cJSON_ParseWithLength(resp.body.data, resp.body.len);
	}
	http_resp_free(&resp);
	if (text)
		cJSON_free(text);
	backend_secret_free(auth);
	return r;
}

int backend_api_open(const struct backend_ctx *ctx, const char *dflt, bool need_key,
		     struct bk_api *a, char *err, size_t errlen)
{
	const char *b = backend_endpoint(ctx, dflt);
	size_t n = strlen(b);
	while (n && b[n - 1] == '/')
		n--;
	memset(a, 0, sizeof(*a));
	a->ctx = ctx;
	if (fmt(a->base, sizeof(a->base), "%.*s", (int)n, b))
		return fmt_cut(err, errlen, "%s: the API endpoint is too long", ctx->type),
		       -ENAMETOOLONG;
	if (!need_key)
		return 0;
	a->key = backend_config_str(ctx, "creds.api_key");
	if (!a->key || !*a->key) {
		backend_secret_free(a->key);
		a->key = NULL;
		return fmt_cut(err, errlen, "%s: config.yml has no creds.api_key", ctx->type),
		       -EINVAL;
	}
	return 0;
}

void backend_api_close(struct bk_api *a)
{
	backend_secret_free(a->key);
	a->key = NULL;
}

int backend_http_errno(long status)
{
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 404)
		return -ENOENT;
	if (status == 429)
		return -EAGAIN;
	if (status >= 500)
		return -EIO;
	if (status >= 400)
		return -EINVAL;
	return -EPROTO;
}

int backend_fail(char *err, size_t errlen, int rc, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vfmt_cut(err, errlen, f, ap);
	va_end(ap);
	return rc;
}

const cJSON *backend_jget(const cJSON *o, const char *k)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

const char *backend_jstr(const cJSON *o, const char *k)
{
	const cJSON *v = backend_jget(o, k);
	return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

bool backend_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (!n || n >= BK_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
	return true;
}

void backend_redact(const char *secret, char *text)
{
	size_t n = secret ? strlen(secret) : 0;
	if (n < 4)
		return;
	for (char *p = strstr(text, secret); p; p = strstr(p + n, secret))
		memset(p, '*', n);
}

char *backend_cloud_init(const char *ssh_pubkey)
{
	/* the key is one OpenSSH line: type, base64, comment (no quotes, no specials) */
	return xasprintf("#cloud-config\nssh_authorized_keys:\n  - \"%s\"\n", ssh_pubkey);
}

void bk_offers_res_free(struct bk_offers_res *res)
{
	offer_list_free(&res->list);
}

/* The gpuhunt catalog source (aws, azure, gcp, oci, nebius, lambda, verda/datacrunch,
 * runpod, cloudrift): the provider's catalog, cut to the config's regions. */
/* ---- shared source fetches ---- */

#define SHARE_MAX 32

struct share_ent {
	char provider[64];
	bool busy;        /* being fetched: wait on cond */
	bool used;
	int rc;
	char err[512];
	char version[CATALOG_VERSION_MAX];
	char source[1024];
	bool has_csv;     /* the fetch read the CSV (not "unchanged") */
	struct buf csv;
	long long at_ms;
};

struct bk_share {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	long long max_age_ms;
	unsigned long fetches;
	struct share_ent ent[SHARE_MAX];
};

static long long share_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct bk_share *bk_share_new(long long max_age_ms)
{
	struct bk_share *sh = xcalloc(1, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	pthread_cond_init(&sh->cond, NULL);
	sh->max_age_ms = max_age_ms;
	return sh;
}

void bk_share_free(struct bk_share *sh)
{
	if (!sh)
		return;
	for (size_t i = 0; i < SHARE_MAX; i++)
		buf_free(&sh->ent[i].csv);
	pthread_mutex_destroy(&sh->lock);
	pthread_cond_destroy(&sh->cond);
	free(sh);
}

unsigned long bk_share_fetches(struct bk_share *sh)
{
	pthread_mutex_lock(&sh->lock);
	unsigned long n = sh->fetches;
	pthread_mutex_unlock(&sh->lock);
	return n;
}

void bk_share_trim(struct bk_share *sh)
{
	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; i < SHARE_MAX; i++) {
		struct share_ent *e = &sh->ent[i];
		if (e->used && !e->busy && e->has_csv) {
			buf_free(&e->csv);
			e->has_csv = false;
		}
	}
	pthread_mutex_unlock(&sh->lock);
}

long long bk_share_expires_in(struct bk_share *sh)
{
	long long now = share_ms(), left = 0;
	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; i < SHARE_MAX; i++) {
		const struct share_ent *e = &sh->ent[i];
		long long l = e->used ? (e->busy ? sh->max_age_ms : e->at_ms + sh->max_age_ms - now) : 0;
		if (l > left)
			left = l;
	}
	pthread_mutex_unlock(&sh->lock);
	return left;
}

/* Can entry e answer a caller holding version known? (with sh->lock) */
static bool share_answers(const struct bk_share *sh, const struct share_ent *e, const char *known)
{
	return share_ms() - e->at_ms <= sh->max_age_ms &&
	       (e->rc || e->has_csv || !strcmp(known, e->version));
}

/* catalog_fetch through the share: a copy of the answer another caller got, or a fetch whose
 * answer is kept for the others. */
static int share_catalog(struct bk_share *sh, struct catalog *cat, const char *prov,
			 const char *known, struct catalog_fetch *out, char *err, size_t errlen)
{
	struct share_ent *e = NULL, *fresh = NULL;
	if (strlen(prov) >= sizeof(e->provider)) /* not kept under a cut name */
		return catalog_fetch(cat, prov, known, out, err, errlen);
	pthread_mutex_lock(&sh->lock);
	for (;;) {
		e = NULL;
		for (size_t i = 0; i < SHARE_MAX && !e; i++)
			if (sh->ent[i].used && !strcmp(sh->ent[i].provider, prov))
				e = &sh->ent[i];
		if (!e || !e->busy)
			break;
		pthread_cond_wait(&sh->cond, &sh->lock);
	}
	if (e && share_answers(sh, e, known)) {
		int r = e->rc;
		memset(out, 0, sizeof(*out));
		buf_init(&out->csv, e->csv.limit ? e->csv.limit : 1);
		fmt_cut(err, errlen, "%s", e->err);
		if (!r) {
			/* fits: the same sizes as catalog_fetch's */
			fmt_cut(out->version, sizeof(out->version), "%s", e->version);
			fmt_cut(out->source, sizeof(out->source), "%s", e->source);
			out->unchanged = !strcmp(known, e->version);
			if (!out->unchanged && buf_append(&out->csv, e->csv.data ? e->csv.data : "",
							  e->csv.len)) {
				fmt_cut(err, errlen, "catalog: out of memory");
				r = -ENOMEM;
			}
		}
		pthread_mutex_unlock(&sh->lock);
		if (r)
			catalog_fetch_free(out);
		return r;
	}
	for (size_t i = 0; i < SHARE_MAX && !e; i++)
		if (!sh->ent[i].used)
			e = &sh->ent[i];
	if (!e) { /* full (32 providers in one share): fetch on its own */
		pthread_mutex_unlock(&sh->lock);
		return catalog_fetch(cat, prov, known, out, err, errlen);
	}
	fresh = e;
	buf_free(&e->csv);
	memset(e, 0, sizeof(*e));
	e->used = e->busy = true;
	fmt_cut(e->provider, sizeof(e->provider), "%s", prov); /* fits: checked above */
	sh->fetches++;
	pthread_mutex_unlock(&sh->lock);

	int r = catalog_fetch(cat, prov, known, out, err, errlen);

	pthread_mutex_lock(&sh->lock);
	fresh->rc = r;
	fresh->at_ms = share_ms();
	fmt_cut(fresh->err, sizeof(fresh->err), "%s", r ? err : "");
	if (!r) {
		/* fits: the same sizes as catalog_fetch's */
		fmt_cut(fresh->version, sizeof(fresh->version), "%s", out->version);
		fmt_cut(fresh->source, sizeof(fresh->source), "%s", out->source);
		fresh->has_csv = !out->unchanged;
		buf_init(&fresh->csv, out->csv.limit);
		if (fresh->has_csv &&
		    buf_append(&fresh->csv, out->csv.data ? out->csv.data : "", out->csv.len)) {
			buf_free(&fresh->csv); /* not kept: the next caller fetches again */
			fresh->used = false;
		}
	}
	fresh->busy = false;
	pthread_cond_broadcast(&sh->cond);
	pthread_mutex_unlock(&sh->lock);
	return r;
}

int backend_catalog_offers(const struct bk_offers_req *req, struct bk_offers_res *res,
			   char *err, size_t errlen)
{
	const struct backend_ctx *ctx = &req->ctx;
	const char *prov = backend_type_catalog(ctx->type);
	struct catalog_fetch f;
	if (!prov || !ctx->catalog)
		return fmt_cut(err, errlen, "no catalog for backend type %s", ctx->type), -ENOTSUP;
	int r = req->share ? share_catalog(req->share, ctx->catalog, prov, req->known_version, &f,
					   err, errlen)
			   : catalog_fetch(ctx->catalog, prov, req->known_version, &f, err, errlen);
	if (r)
		return r;
	/* fits: the same sizes as catalog_fetch's */
	fmt_cut(res->version, sizeof(res->version), "%s", f.version);
	fmt_cut(res->source, sizeof(res->source), "%s", f.source);
	res->unchanged = f.unchanged;
	if (!f.unchanged) {
		const struct backend_type *t = backend_type_find(ctx->type);
		struct offer_origin org = {.backend = ctx->name, .type = ctx->type,
					   .source = "catalog", .fetched_at = req->now,
					   .disk = t ? t->disk : (struct disk_range){0, 0}};
		r = offers_parse_csv(f.csv.data ? f.csv.data : "", f.csv.len, &org, &res->list,
				     &res->skipped, err, errlen);
		if (!r)
			backend_cut_regions(ctx, &res->list);
	}
	catalog_fetch_free(&f);
	return r;
}

const struct backend_ops catalog_ops = {
	.offers = backend_catalog_offers,
	.provision_timeout_min = 10,
};
const struct backend_ops live_ops = {
	.provision_timeout_min = 10,
};

const struct backend_ops *backend_find(const char *type)
{
	const struct backend_type *t = backend_type_find(type);
	return t ? t->ops : NULL;
}
