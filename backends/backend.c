/* backend: see backend.h. The registry and the catalog offers source. */
#include "backend.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "../core/ydoc.h"
#include "http.h"

#define CATALOG_TTL (15 * 60)
#define LIVE_TTL 180

static char **backend_regions(const char *config, size_t len)
{
	struct ydoc *d = NULL;
	char e[8];
	char **v = NULL;
	if (ydoc_load(config, len, "config.yml", &d, e, sizeof(e)))
		return NULL;
	int seq = ydoc_map_get(d, ydoc_root(d), "regions");
	size_t n = seq && ydoc_kind(d, seq) == Y_SEQ ? ydoc_len(d, seq) : 0, k = 0;
	if (n) {
		v = xcalloc(n + 1, sizeof(*v));
		for (size_t i = 0; i < n; i++) {
			const char *s = ydoc_str(d, ydoc_seq_at(d, seq, i));
			if (s && *s)
				v[k++] = xstrdup(s);
		}
	}
	ydoc_free(d);
	return v;
}

static void backend_regions_free(char **regions)
{
	for (size_t i = 0; regions && regions[i]; i++)
		free(regions[i]);
	free(regions);
}

void backend_cut_regions(const struct backend_ctx *ctx, struct offer_list *l)
{
	char **regions = backend_regions(ctx->config, ctx->config_len);
	size_t n = 0;
	while (regions && regions[n])
		n++;
	offers_filter_regions(l, regions, n);
	backend_regions_free(regions);
}

char *backend_config_str(const struct backend_ctx *ctx, const char *path)
{
	struct ydoc *d = NULL;
	char e[8], part[128];
	char *out = NULL;
	if (ydoc_load(ctx->config, ctx->config_len, "config.yml", &d, e, sizeof(e)))
		return NULL;
	int node = ydoc_root(d);
	for (const char *p = path; node && *p;) {
		size_t n = strcspn(p, ".");
		(void)fmt(part, sizeof(part), "%.*s", (int)n, p);
		node = ydoc_kind(d, node) == Y_MAP ? ydoc_map_get(d, node, part) : 0;
		p += n + (p[n] == '.');
	}
	const char *v = node ? ydoc_str(d, node) : NULL;
	if (v)
		out = xstrdup(v);
	ydoc_free(d);
	return out;
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
		(void)fmt(err, errlen, "%s", resp.err[0] ? resp.err : strerror(-r));
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
		return fmt(err, errlen, "%s: the API endpoint is too long", ctx->type),
		       -ENAMETOOLONG;
	if (!need_key)
		return 0;
	a->key = backend_config_str(ctx, "creds.api_key");
	if (!a->key || !*a->key) {
		backend_secret_free(a->key);
		a->key = NULL;
		return fmt(err, errlen, "%s: config.yml has no creds.api_key", ctx->type), -EINVAL;
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

#define MEMO_MAX 256

static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char key[700];
	char val[BK_MEMO_VAL_MAX];
	time_t until; /* 0: until forgotten */
} memo[MEMO_MAX];
static unsigned memo_next;

static void memo_key(const struct backend_ctx *ctx, const char *base, const char *what,
		     char *out, size_t n)
{
	(void)fmt(out, n, "%s|%s|%s|%s|%s", ctx->type ? ctx->type : "",
		  ctx->project ? ctx->project : "", ctx->name ? ctx->name : "", base, what);
}

bool backend_memo_get(const struct backend_ctx *ctx, const char *base, const char *what,
		      char *val, size_t n)
{
	char k[700];
	bool found = false;
	memo_key(ctx, base, what, k, sizeof(k));
	pthread_mutex_lock(&memo_lock);
	time_t now = time(NULL);
	for (unsigned i = 0; i < MEMO_MAX && !found; i++)
		if (memo[i].key[0] && !strcmp(memo[i].key, k) &&
		    (!memo[i].until || memo[i].until > now)) {
			(void)fmt(val, n, "%s", memo[i].val);
			found = true;
		}
	pthread_mutex_unlock(&memo_lock);
	return found;
}

void backend_memo_put(const struct backend_ctx *ctx, const char *base, const char *what,
		      const char *val)
{
	backend_memo_put_ttl(ctx, base, what, val, 0);
}

void backend_memo_put_ttl(const struct backend_ctx *ctx, const char *base, const char *what,
			  const char *val, int ttl_s)
{
	char k[700];
	memo_key(ctx, base, what, k, sizeof(k));
	pthread_mutex_lock(&memo_lock);
	for (unsigned i = 0; i < MEMO_MAX; i++)
		if (!strcmp(memo[i].key, k))
			memo[i].key[0] = '\0';
	if (val) {
		unsigned i = memo_next++ % MEMO_MAX;
		(void)fmt(memo[i].key, sizeof(memo[i].key), "%s", k);
		(void)fmt(memo[i].val, sizeof(memo[i].val), "%s", val);
		memo[i].until = ttl_s > 0 ? time(NULL) + ttl_s : 0;
	}
	pthread_mutex_unlock(&memo_lock);
}

/* What each backend's last offers were built from: the catalog version and a digest of the
 * live facts. Process memory, a few entries (one per backend that uses it), replaced in turn. */
#define SEEN_MAX 64
static struct {
	char backend[600]; /* type '/' project '/' backend name */
	char version[CATALOG_VERSION_MAX];
	unsigned char digest[BK_DIGEST_MAX];
} seen[SEEN_MAX];
static size_t seen_next;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static void seen_key(const struct backend_ctx *ctx, char *out, size_t n)
{
	(void)fmt(out, n, "%s/%s/%s", ctx->type ? ctx->type : "", ctx->project ? ctx->project : "",
		  ctx->name ? ctx->name : "");
}

bool backend_offers_seen(const struct backend_ctx *ctx, const char *known,
			 const unsigned char *digest)
{
	char key[600];
	bool same = false;
	seen_key(ctx, key, sizeof(key));
	pthread_mutex_lock(&seen_lock);
	for (size_t i = 0; i < SEEN_MAX && !same; i++)
		same = known[0] && !strcmp(seen[i].backend, key) &&
		       !strcmp(seen[i].version, known) &&
		       !memcmp(seen[i].digest, digest, BK_DIGEST_MAX);
	pthread_mutex_unlock(&seen_lock);
	return same;
}

void backend_offers_remember(const struct backend_ctx *ctx, const char *version,
			     const unsigned char *digest)
{
	char key[600];
	size_t i;
	seen_key(ctx, key, sizeof(key));
	pthread_mutex_lock(&seen_lock);
	for (i = 0; i < SEEN_MAX && strcmp(seen[i].backend, key); i++)
		;
	if (i == SEEN_MAX)
		i = seen_next++ % SEEN_MAX;
	(void)fmt(seen[i].backend, sizeof(seen[i].backend), "%s", key);
	(void)fmt(seen[i].version, sizeof(seen[i].version), "%s", version);
	memcpy(seen[i].digest, digest, BK_DIGEST_MAX);
	pthread_mutex_unlock(&seen_lock);
}

int backend_fail(char *err, size_t errlen, int rc, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	(void)vfmt(err, errlen, f, ap);
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
		(void)fmt(err, errlen, "%s", e->err);
		if (!r) {
			(void)fmt(out->version, sizeof(out->version), "%s", e->version);
			(void)fmt(out->source, sizeof(out->source), "%s", e->source);
			out->unchanged = !strcmp(known, e->version);
			if (!out->unchanged && buf_append(&out->csv, e->csv.data ? e->csv.data : "",
							  e->csv.len)) {
				(void)fmt(err, errlen, "catalog: out of memory");
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
	(void)fmt(e->provider, sizeof(e->provider), "%s", prov);
	sh->fetches++;
	pthread_mutex_unlock(&sh->lock);

	int r = catalog_fetch(cat, prov, known, out, err, errlen);

	pthread_mutex_lock(&sh->lock);
	fresh->rc = r;
	fresh->at_ms = share_ms();
	(void)fmt(fresh->err, sizeof(fresh->err), "%s", r ? err : "");
	if (!r) {
		(void)fmt(fresh->version, sizeof(fresh->version), "%s", out->version);
		(void)fmt(fresh->source, sizeof(fresh->source), "%s", out->source);
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
	const char *prov = offers_catalog_provider(ctx->type);
	struct catalog_fetch f;
	if (!prov || !ctx->catalog)
		return fmt(err, errlen, "no catalog for backend type %s", ctx->type), -ENOTSUP;
	int r = req->share ? share_catalog(req->share, ctx->catalog, prov, req->known_version, &f,
					   err, errlen)
			   : catalog_fetch(ctx->catalog, prov, req->known_version, &f, err, errlen);
	if (r)
		return r;
	(void)fmt(res->version, sizeof(res->version), "%s", f.version);
	(void)fmt(res->source, sizeof(res->source), "%s", f.source);
	res->unchanged = f.unchanged;
	if (!f.unchanged) {
		struct offer_origin org = {.backend = ctx->name, .type = ctx->type,
					   .source = "catalog", .fetched_at = req->now};
		r = offers_parse_csv(f.csv.data ? f.csv.data : "", f.csv.len, &org, &res->list,
				     &res->skipped, err, errlen);
		if (!r)
			backend_cut_regions(ctx, &res->list);
	}
	catalog_fetch_free(&f);
	return r;
}

#define CATALOG(t)                                                                        \
	{.type = t, .offers_ttl = CATALOG_TTL, .offers_source = "catalog",                  \
	 .offers = backend_catalog_offers, .provision_timeout_min = 10}
#define LIVE(t) {.type = t, .offers_ttl = LIVE_TTL, .offers_source = "api", .provision_timeout_min = 10}

/* Types without a provider client of their own yet. */
static const struct backend_ops registry[] = {
	CATALOG("azure"),	   CATALOG("gcp"),     CATALOG("oci"),
	CATALOG("nebius"),  CATALOG("lambda"),	   CATALOG("verda"),   CATALOG("datacrunch"),
	CATALOG("runpod"),  CATALOG("cloudrift"),  LIVE("vastai"),     LIVE("hotaisle"),
	LIVE("cudo"),	    LIVE("kubernetes"),
};

/* Provider clients (backends/<type>.c), found before the table above. */
static const struct backend_ops *const providers[] = {
	&lambda_ops,
	&digitalocean_ops,
	&amddevcloud_ops,
	&vultr_ops,
	&aws_ops,
};

const struct backend_ops *backend_find(const char *type)
{
	for (size_t i = 0; type && i < sizeof(providers) / sizeof(providers[0]); i++)
		if (providers[i] && !strcmp(providers[i]->type, type))
			return providers[i];
	for (size_t i = 0; type && i < sizeof(registry) / sizeof(registry[0]); i++)
		if (!strcmp(registry[i].type, type))
			return &registry[i];
	return NULL;
}
