/* memo: what provider clients remember between calls, owned by the mount (backend.h,
 * "Provider memory").
 *
 * One table of small facts keyed by backend and fact, each with an optional lifetime, and a
 * set of striped locks for the "find it, else create it" sequences of the clients (one SSH
 * key per account, one VPC per region, one project per name): whoever takes the lock first
 * creates, the others wait and then find. Values may be secrets (credentials): they are
 * wiped when replaced, forgotten or freed.
 */
#include "backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/enc.h"

#define MEMO_MAX 256
#define MEMO_LOCKS 16

struct memo_ent {
	char key[700];
	char *val;    /* malloc'd; NULL: free slot */
	time_t until; /* 0: until forgotten */
};

struct bk_memo {
	pthread_mutex_t lock; /* the table */
	struct memo_ent ent[MEMO_MAX];
	unsigned next;
	pthread_mutex_t setup[MEMO_LOCKS]; /* find-or-create sequences, striped by key */
};

struct bk_memo *bk_memo_new(void)
{
	struct bk_memo *m = xcalloc(1, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	for (size_t i = 0; i < MEMO_LOCKS; i++)
		pthread_mutex_init(&m->setup[i], NULL);
	return m;
}

static void ent_clear(struct memo_ent *e)
{
	if (e->val) {
		explicit_bzero(e->val, strlen(e->val));
		free(e->val);
	}
	memset(e, 0, sizeof(*e));
}

void bk_memo_free(struct bk_memo *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < MEMO_MAX; i++)
		ent_clear(&m->ent[i]);
	for (size_t i = 0; i < MEMO_LOCKS; i++)
		pthread_mutex_destroy(&m->setup[i]);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* 0, or -ENAMETOOLONG: a key that does not fit is neither looked up nor stored (a cut key
 * could name another entry). */
static int memo_key(const struct backend_ctx *ctx, const char *base, const char *what, char *out,
		    size_t n)
{
	return fmt(out, n, "%s|%s|%s|%s|%s", ctx->type ? ctx->type : "",
		   ctx->project ? ctx->project : "", ctx->name ? ctx->name : "", base ? base : "",
		   what);
}

bool backend_memo_get(const struct backend_ctx *ctx, const char *base, const char *what,
		      char *val, size_t n)
{
	struct bk_memo *m = ctx->memo;
	char k[700];
	bool found = false;
	if (!m || memo_key(ctx, base, what, k, sizeof(k)))
		return false;
	pthread_mutex_lock(&m->lock);
	time_t now = time(NULL);
	for (unsigned i = 0; i < MEMO_MAX && !found; i++) {
		struct memo_ent *e = &m->ent[i];
		if (e->val && !strcmp(e->key, k) && (!e->until || e->until > now))
			found = fmt(val, n, "%s", e->val) == 0;
	}
	pthread_mutex_unlock(&m->lock);
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
	struct bk_memo *m = ctx->memo;
	char k[700];
	if (!m || memo_key(ctx, base, what, k, sizeof(k)))
		return;
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < MEMO_MAX; i++)
		if (m->ent[i].val && !strcmp(m->ent[i].key, k))
			ent_clear(&m->ent[i]);
	if (val) {
		struct memo_ent *e = &m->ent[m->next++ % MEMO_MAX];
		ent_clear(e);
		fmt_cut(e->key, sizeof(e->key), "%s", k); /* fits: k is as large as key */
		e->val = xstrdup(val);
		e->until = ttl_s > 0 ? time(NULL) + ttl_s : 0;
	}
	pthread_mutex_unlock(&m->lock);
}

/* FNV-1a: which stripe a key's sequence takes. */
static pthread_mutex_t *setup_lock(struct bk_memo *m, const char *k)
{
	uint32_t h = 2166136261u;
	for (const char *p = k; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &m->setup[h % MEMO_LOCKS];
}

void backend_lock(const struct backend_ctx *ctx, const char *base, const char *what)
{
	char k[700];
	if (!ctx->memo)
		return;
	(void)memo_key(ctx, base, what, k, sizeof(k)); /* a cut key only picks a stripe */
	pthread_mutex_lock(setup_lock(ctx->memo, k));
}

void backend_unlock(const struct backend_ctx *ctx, const char *base, const char *what)
{
	char k[700];
	if (!ctx->memo)
		return;
	(void)memo_key(ctx, base, what, k, sizeof(k)); /* a cut key only picks a stripe */
	pthread_mutex_unlock(setup_lock(ctx->memo, k));
}

int backend_memo_once(const struct backend_ctx *ctx, const char *base, const char *what,
		      int ttl_s, bk_make_fn make, void *arg, char *val, size_t n, char *err,
		      size_t errlen)
{
	if (backend_memo_get(ctx, base, what, val, n))
		return 0;
	backend_lock(ctx, base, what);
	int r = 0;
	if (!backend_memo_get(ctx, base, what, val, n)) { /* not made while we waited */
		r = make(arg, val, n, err, errlen);
		if (!r)
			backend_memo_put_ttl(ctx, base, what, val, ttl_s);
	}
	backend_unlock(ctx, base, what);
	return r;
}

/* What a backend's last offers were built from: the catalog version and a digest of the live
 * facts, as one memo entry. */
bool backend_offers_seen(const struct backend_ctx *ctx, const char *known,
			 const unsigned char *digest)
{
	char want[CATALOG_VERSION_MAX + 2 * BK_DIGEST_MAX + 2], have[sizeof(want)];
	char hex[2 * BK_DIGEST_MAX + 1];
	if (!known[0] || hex_encode(digest, BK_DIGEST_MAX, hex, sizeof(hex)) ||
	    fmt(want, sizeof(want), "%s\n%s", known, hex))
		return false;
	return backend_memo_get(ctx, "", "offers-seen", have, sizeof(have)) && !strcmp(have, want);
}

void backend_offers_remember(const struct backend_ctx *ctx, const char *version,
			     const unsigned char *digest)
{
	char val[CATALOG_VERSION_MAX + 2 * BK_DIGEST_MAX + 2];
	char hex[2 * BK_DIGEST_MAX + 1];
	if (hex_encode(digest, BK_DIGEST_MAX, hex, sizeof(hex)) ||
	    fmt(val, sizeof(val), "%s\n%s", version, hex))
		return;
	backend_memo_put(ctx, "", "offers-seen", val);
}
