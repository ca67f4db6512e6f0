/* offerd: see offerd.h.
 *
 * Refresh work is keyed by source (offerd_source_key): a gpuhunt catalog provider, or one
 * provider API at one endpoint under one set of credentials. Sources are rows of a fixed
 * table: idle, queued or running (with another run requested meanwhile: `again`). A check
 * queues the sources of its project's due backends and notes the project as pending on them;
 * a run refreshes the due backends of the source in the pending projects (in every project
 * when the sweeper asks, so no project starves however many there are). A run groups its
 * backends by config (the same config text makes the same cuts, so the same offers), fetches
 * once per group through a share (backend.h: one catalog download for all groups and all
 * runs of a busy period) and writes every backend's cache, a few hundred per transaction.
 *
 * A run whose fetches all failed marks its source failed (time and reason): for the type's TTL
 * no listing waits on it, and until OFFERD_RETRY has passed a backend that is new to it gets
 * that failure written without a fetch. Waiters wait for a run that starts after their
 * request (a "ticket"), and at most once: when a waiter gives up on a run, later waiters do
 * not wait for that run again, so an `ls -lR` over many projects waits once per source.
 */
#include "offerd.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../backends/backend.h"
#include "../cache/seal.h"
#include "records.h"
#include "../lib/ydoc.h"

#define OFFERD_MAX_SOURCES 512
#define OFFERD_MAX_PROJECTS 64
#define CHECK_EVERY_MS 1000
#define SWEEP_EVERY 30   /* seconds (scaled, at least 0.2 s) */
#define ACTIVE_FOR 3600  /* a source's offers are kept fresh this long after a use */
#define SHARE_FOR 10     /* seconds a fetched source is shared (scaled, at least 1 s) */
#define CHUNK_MEMBERS 256 /* backends written per transaction */
#define CHUNK_BYTES ((size_t)32 << 20)

enum sstate { S_IDLE, S_QUEUED, S_RUNNING };

struct pend {
	char project[STORE_NAME_MAX];
	bool force;
};

struct source {
	char key[OFFERD_SOURCE_MAX]; /* "" = a free row */
	int ttl;                     /* the type's offers TTL (unscaled seconds) */
	enum sstate state;
	bool all;                    /* the next run looks at every project */
	bool force, again;
	struct pend *pend;           /* projects the next run looks at */
	size_t npend, cappend;
	unsigned long long seq;      /* queue order */
	unsigned long long started, finished; /* runs */
	unsigned long long gave_up;  /* a waiter gave up on this run: nobody waits for it again */
	long long use_ms;            /* last check that asked for it (monotonic) */
	long long ran_at, fail_at;   /* unix s: the last run's end; its failure (0: it worked) */
	char err[512];               /* the failure's reason */
};

/* A fetch's outcome, kept for the share's time so that a backend of the same config that
 * asks a moment later (the next project of an `ls -lR`) gets it without a fetch. */
struct memo {
	char key[OFFERD_SOURCE_MAX];   /* the source ("" = free) */
	char type[32];
	char digest[65];
	char known[CATALOG_VERSION_MAX];
	char project[STORE_NAME_MAX];  /* the backend the offers were written to first */
	char backend[STORE_NAME_MAX];
	long long at_ms;
	struct outcome *o;             /* without its offers */
};

#define OFFERD_MEMOS 64

struct seen {
	char project[STORE_NAME_MAX];
	long long settled_ms; /* last check that found nothing missing (0: look again) */
	long long swept_ms;   /* last check by the sweeper */
	long long use_ms;     /* last time anything asked for its offers */
};

struct offerd {
	struct store *s;
	struct catalog *cat;
	struct http_client *http;
	struct bk_memo *bkmemo; /* the provider clients' memory (the mount's) */
	double scale;
	pthread_mutex_t lock;
	pthread_cond_t work, done, tick; /* tick: wakes the sweeper (to stop) */
	struct source *src;              /* OFFERD_MAX_SOURCES rows */
	unsigned long long seq;
	struct seen seen[OFFERD_MAX_PROJECTS];
	struct bk_share *share;          /* fetches of the current busy period (NULL when idle) */
	struct memo memo[OFFERD_MEMOS];  /* outcomes of the same period */
	long long share_ms;              /* how long both are used (ms) */
	bool trimmed;                    /* the share's catalog texts were dropped (idle) */
	int running;                     /* runs in progress */
	unsigned long runs, fetch_groups;
	pthread_t threads[OFFERD_THREADS], sweeper;
	size_t nthreads;
	bool sweeping;
	bool stopping;
};

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline(struct timespec *dl, long long ms)
{
	clock_gettime(CLOCK_REALTIME, dl);
	dl->tv_sec += ms / 1000;
	dl->tv_nsec += (ms % 1000) * 1000000;
	if (dl->tv_nsec >= 1000000000) {
		dl->tv_sec++;
		dl->tv_nsec -= 1000000000;
	}
}

void offerd_key(char *dst, size_t n, char kind, const char *project, const char *backend)
{
	/* fits: callers pass 2 * STORE_NAME_MAX + 4; two names < STORE_NAME_MAX */
	fmt_cut(dst, n, "%c/%s/%s", kind, project, backend);
}

int offerd_source_key(struct store *s, const char *type, const char *config, size_t len,
		      char *out, size_t n)
{
	const struct backend_ops *ops = backend_find(type);
	struct backend_ctx ctx = {.type = type};
	struct ydoc *d = NULL;
	struct buf b;
	char *creds = NULL, e[8], dg[65];
	size_t clen = 0;
	if (!ops || !ops->offers)
		return -ENOTSUP;
	if (ops->offers == backend_catalog_offers) { /* the catalog alone: no credentials */
		const char *prov = backend_type_catalog(type);
		return fmt(out, n, "catalog/%s", prov ? prov : type);
	}
	/* the API: its endpoint and the credentials, as a keyed digest (never the secret) */
	if (config && ydoc_load(config, len, "config.yml", &d, e, sizeof(e)) == 0) {
		int root = ydoc_root(d);
		int node = root && ydoc_kind(d, root) == Y_MAP ? ydoc_map_get(d, root, "creds") : 0;
		if (node)
			(void)ydoc_emit(d, node, &creds, &clen);
		ydoc_free(d);
	}
	buf_init(&b, (size_t)1 << 20);
	(void)buf_printf(&b, "%s\n%s\n", type, backend_endpoint(&ctx, ""));
	if (creds)
		(void)buf_append(&b, creds, clen);
	store_digest(s, b.data ? b.data : "", b.len, dg);
	if (b.data)
		explicit_bzero(b.data, b.len);
	buf_free(&b);
	if (creds)
		explicit_bzero(creds, clen);
	free(creds);
	return fmt(out, n, "%s/%.16s", type, dg);
}

struct offerd *offerd_new(struct store *s, struct catalog *cat, struct http_client *http,
			  struct bk_memo *bkmemo)
{
	struct offerd *od = xcalloc(1, sizeof(*od));
	od->s = s;
	od->cat = cat;
	od->http = http;
	od->bkmemo = bkmemo;
	od->scale = 1.0;
	od->src = xcalloc(OFFERD_MAX_SOURCES, sizeof(*od->src));
	const char *sc = getenv("FLEETFS_TIME_SCALE");
	if (sc) {
		char *end = NULL;
		double d = strtod(sc, &end);
		if (end && !*end && d > 0 && d <= 100)
			od->scale = d;
	}
	pthread_mutex_init(&od->lock, NULL);
	pthread_cond_init(&od->work, NULL);
	pthread_cond_init(&od->done, NULL);
	pthread_cond_init(&od->tick, NULL);
	return od;
}

/* ---------------------------------------------------------------- the source table */

/* With od->lock held: the row of key, or NULL. */
static struct source *source_find(struct offerd *od, const char *key)
{
	for (size_t i = 0; i < OFFERD_MAX_SOURCES; i++)
		if (od->src[i].key[0] && !strcmp(od->src[i].key, key))
			return &od->src[i];
	return NULL;
}

/* With od->lock held: the row of key, made when missing (in a free row, or in place of the
 * idle source used longest ago). NULL when every row is busy: a later check asks again. */
static struct source *source_get(struct offerd *od, const char *key, int ttl)
{
	struct source *s = source_find(od, key), *slot = NULL;
	if (s)
		return s;
	for (size_t i = 0; i < OFFERD_MAX_SOURCES; i++) {
		struct source *x = &od->src[i];
		if (!x->key[0]) {
			slot = x;
			break;
		}
		if (x->state == S_IDLE && !x->npend && !x->all &&
		    (!slot || x->use_ms < slot->use_ms))
			slot = x;
	}
	if (!slot)
		return NULL;
	free(slot->pend);
	memset(slot, 0, sizeof(*slot));
	fmt_cut(slot->key, sizeof(slot->key), "%s", key); /* fits: a source key, as large */
	slot->ttl = ttl;
	return slot;
}

/* With od->lock held: ask for a run of s that looks at project (NULL: at every project).
 * Returns the ticket: the number of the run that will do it. */
static unsigned long long request(struct offerd *od, struct source *s, const char *project,
				  bool force)
{
	if (!project) {
		s->all = true;
	} else {
		struct pend *p = NULL;
		for (size_t i = 0; i < s->npend && !p; i++)
			if (!strcmp(s->pend[i].project, project))
				p = &s->pend[i];
		if (!p) {
			if (s->npend == s->cappend) {
				s->cappend = s->cappend ? 2 * s->cappend : 8;
				s->pend = xrealloc(s->pend, s->cappend * sizeof(*s->pend));
			}
			p = &s->pend[s->npend++];
			memset(p, 0, sizeof(*p));
			fmt_cut(p->project, sizeof(p->project), "%s", project); /* fits: a name */
		}
		p->force |= force;
	}
	s->force |= force;
	if (s->state == S_IDLE) {
		s->state = S_QUEUED;
		s->seq = ++od->seq;
		pthread_cond_signal(&od->work);
	} else if (s->state == S_RUNNING) {
		s->again = true; /* the running one may have looked before this request */
	}
	return s->started + 1;
}

/* ---------------------------------------------------------------- one run */

bool offerd_meta(struct stx *tx, const char *project, const char *backend,
		 struct offers_meta *out)
{
	char key[2 * STORE_NAME_MAX + 4];
	cJSON *m = NULL;
	offerd_key(key, sizeof(key), 'm', project, backend);
	bool found = store_obj_get(tx, SDB_OFFERS, key, &m) == 0;
	offers_meta_decode(m, out);
	cJSON_Delete(m);
	return found;
}

/* The record of a backend when it is for digest (the config the caller has). */
static bool meta_for(struct stx *tx, const char *project, const char *backend,
		     const char *digest, struct offers_meta *out)
{
	return offerd_meta(tx, project, backend, out) && !strcmp(out->digest, digest);
}

/* A backend a run refreshes. */
struct member {
	char project[STORE_NAME_MAX];
	char backend[STORE_NAME_MAX];
	char type[32];
	char digest[65];
	char known[CATALOG_VERSION_MAX]; /* the cached version ("" when none or forced) */
	bool missing;                    /* nothing cached for this config yet */
};

/* The outcome of one fetch, shared by every member of its group. */
struct outcome {
	int rc;
	struct bk_offers_res res; /* its list is freed once written as csv */
	size_t count;         /* offers in csv */
	struct buf csv;       /* the offers as stored */
	char err[1024];
	int cred;             /* the credential check: 0, -errno, 1 = not checked */
	char cred_err[1024];
};

/* The source key of backend b (configured, with offers): the one its cache records for this
 * config, else computed from the config. 0 or -errno. */
static int member_source(struct offerd *od, struct stx *tx, const struct st_backend *b,
			 const struct offers_meta *m, char *key, size_t n)
{
	char *config = NULL;
	size_t clen = 0;
	if (m && !strcmp(m->digest, b->digest) && m->src[0])
		return fmt(key, n, "%s", m->src);
	int r = store_backend_config(tx, b->project, b->name, &config, &clen);
	if (!r)
		r = offerd_source_key(od->s, b->type, config, clen, key, n);
	seal_free_secret(config, clen);
	return r;
}

/* Write one backend's outcome in tx, unless the backend changed under the fetch. */
static int commit_one(struct stx *tx, const struct member *mb, const char *src,
		      const struct outcome *o, long long now)
{
	struct st_backend b;
	char mkey[2 * STORE_NAME_MAX + 4], dkey[2 * STORE_NAME_MAX + 4];
	const struct bk_offers_res *res = &o->res;
	const char *project = mb->project, *backend = mb->backend, *err = o->err;
	offerd_key(mkey, sizeof(mkey), 'm', project, backend);
	offerd_key(dkey, sizeof(dkey), 'd', project, backend);
	if (store_backend_get(tx, project, backend, &b) || !b.has_config ||
	    strcmp(b.digest, mb->digest))
		return 0; /* changed meanwhile: the next check asks again */
	struct offers_meta old, m;
	bool same = meta_for(tx, project, backend, mb->digest, &old);
	/* the record of this config goes on from the old one; another config's starts afresh */
	if (same)
		(void)offerd_meta(tx, project, backend, &m);
	else
		offers_meta_decode(NULL, &m);
	rec_set(&m.digest, mb->digest);
	rec_set(&m.src, src);
	m.attempt_at = (double)now;
	int r = 0, cred = o->cred;
	if (cred <= 0) { /* the credential check's verdict (valid, invalid, or unknown) */
		const char *is = cred == 0			       ? "valid"
				 : cred == -EACCES || cred == -EINVAL ? "invalid"
								       : "unknown";
		if (strcmp(old.cred, is) && strcmp(is, "unknown"))
			r = store_event(tx, project, "backend=%s credentials %s%s%s", backend, is,
					cred ? ": " : "", cred ? o->cred_err : "");
		rec_set(&m.cred, is);
		rec_set(&m.cred_reason, cred == 0 ? "" : o->cred_err);
		m.cred_at = (double)now;
	}
	if (!r && o->rc == 0) {
		m.checked_at = (double)now;
		rec_set(&m.error, "");
		m.error_at = 0;
		if (!res->unchanged) {
			m.data_at = (double)now;
			rec_set(&m.version, res->version);
			rec_set(&m.source, res->source);
			m.count = (double)o->count;
			m.skipped = (double)res->skipped;
			r = store_blob_put(tx, SDB_OFFERS, dkey, o->csv.data ? o->csv.data : "",
					   o->csv.len, project);
			if (!r && (!same || strcmp(old.version, res->version) || old.error[0]))
				r = store_event(tx, project,
						"offers backend=%s %zu offers from %s (version %s)",
						backend, o->count, res->source,
						res->version[0] ? res->version : "-");
		} else if (old.error[0]) {
			r = store_event(tx, project, "offers backend=%s refresh recovered", backend);
		}
	} else if (!r) {
		if (!same) { /* nothing cached for this config */
			m.data_at = 0;
			m.count = 0;
			r = store_blob_put(tx, SDB_OFFERS, dkey, "", 0, project);
		}
		if (!r && strcmp(old.error, err))
			r = store_event(tx, project, "offers backend=%s refresh failed: %s%s", backend,
					err, same ? " (keeping the cached offers)" : "");
		rec_set(&m.error, err);
		m.error_at = (double)now;
	}
	if (!r) {
		cJSON *enc = offers_meta_encode(&m);
		r = enc ? store_obj_put(tx, SDB_OFFERS, mkey, enc, project) : -ENOMEM;
		cJSON_Delete(enc);
	}
	offers_meta_free(&m);
	offers_meta_free(&old);
	return r;
}

/* Write outcome o to the n members of v, a few hundred (and at most CHUNK_BYTES of offers)
 * per transaction. */
static void commit_members(struct offerd *od, const struct member *v, size_t n, const char *src,
			   const struct outcome *o)
{
	long long now = (long long)time(NULL);
	size_t per = CHUNK_MEMBERS;
	if (o->csv.len && CHUNK_BYTES / o->csv.len < per)
		per = CHUNK_BYTES / o->csv.len ? CHUNK_BYTES / o->csv.len : 1;
	for (size_t a = 0; a < n; a += per) {
		struct stx *tx = NULL;
		int r = store_begin(od->s, true, &tx);
		for (size_t i = a; !r && i < n && i < a + per; i++)
			r = commit_one(tx, &v[i], src, o, now);
		if (!tx)
			continue;
		if (r)
			store_abort(tx); /* not written: the next check asks again */
		else
			(void)store_commit(tx);
	}
}

/* Fetch the offers of rep's config (the credential check first), into o. -ESTALE when the
 * backend is gone or changed: nothing to write. */
static int fetch_group(struct offerd *od, const struct member *rep, struct bk_share *sh,
		       struct outcome *o)
{
	struct stx *tx = NULL;
	struct st_backend b;
	char *config = NULL;
	size_t clen = 0;
	o->cred = 1; /* not checked (the type has no check) */
	o->rc = -ENOTSUP;
	if (store_begin(od->s, false, &tx))
		return -ESTALE;
	if (store_backend_get(tx, rep->project, rep->backend, &b) || !b.has_config ||
	    strcmp(b.digest, rep->digest) ||
	    store_backend_config(tx, rep->project, rep->backend, &config, &clen)) {
		store_abort(tx);
		return -ESTALE;
	}
	store_abort(tx);
	const struct backend_ops *ops = backend_find(b.type);
	struct backend_config cfg;
	if (ops && ops->offers &&
	    (o->rc = backend_config_parse(config, clen, &cfg, o->err, sizeof(o->err))) == 0) {
		o->rc = -ENOTSUP;
		struct bk_offers_req req = {.ctx = {.project = rep->project, .name = rep->backend,
						    .type = b.type, .config = &cfg,
						    .catalog = od->cat, .http = od->http,
						    .memo = od->bkmemo},
					    .known_version = rep->known, .now = (long long)time(NULL),
					    .share = sh};
		/* credentials first: offers of an account that refuses them are no offers */
		if (ops->check)
			o->cred = ops->check(&req.ctx, o->cred_err, sizeof(o->cred_err));
		if (o->cred == -EACCES || o->cred == -EINVAL) {
			o->rc = o->cred;
			fmt_cut(o->err, sizeof(o->err), "%s: %s",
				o->cred == -EACCES ? "invalid credentials" : "invalid config",
				o->cred_err);
		} else {
			o->rc = ops->offers(&req, &o->res, o->err, sizeof(o->err));
		}
		backend_config_free(&cfg);
	}
	seal_free_secret(config, clen);
	if (o->rc && !o->err[0])
		fmt_cut(o->err, sizeof(o->err), "%s", strerror(-o->rc));
	if (o->rc == 0 && !o->res.unchanged && offers_write_csv(&o->res.list, &o->csv)) {
		o->rc = -ENOMEM;
		fmt_cut(o->err, sizeof(o->err), "cannot serialise the offers");
	}
	o->count = o->res.list.n;
	return 0;
}

/* Is project among the run's pending ones, and forced? */
static const struct pend *pend_of(const struct pend *pend, size_t npend, const char *project)
{
	for (size_t i = 0; i < npend; i++)
		if (!strcmp(pend[i].project, project))
			return &pend[i];
	return NULL;
}

/* The backends of source key that are due: in the pending projects, and in every project
 * when all. *out malloc'd. */
static void scan(struct offerd *od, const char *key, bool all, const struct pend *pend,
		 size_t npend, struct member **out, size_t *nout)
{
	struct stx *tx = NULL;
	struct st_project *ps = NULL;
	size_t np = 0, cap = 0;
	long long now = (long long)time(NULL);
	double retry = OFFERD_RETRY * od->scale;
	*out = NULL;
	*nout = 0;
	if (store_begin(od->s, false, &tx))
		return;
	if (all)
		(void)store_project_list(tx, &ps, &np);
	size_t nproj = all ? np : npend;
	for (size_t k = 0; k < nproj; k++) {
		const char *project = all ? ps[k].name : pend[k].project;
		const struct pend *pp = pend_of(pend, npend, project);
		bool force = pp && pp->force;
		struct st_backend *bs = NULL;
		size_t nb = 0;
		store_backend_list(tx, project, &bs, &nb);
		for (size_t i = 0; i < nb; i++) {
			const struct backend_ops *ops = backend_find(bs[i].type);
			char sk[OFFERD_SOURCE_MAX];
			if (!bs[i].has_config || !ops || !ops->offers)
				continue;
			struct offers_meta m;
			bool same = meta_for(tx, project, bs[i].name, bs[i].digest, &m);
			if (member_source(od, tx, &bs[i], &m, sk, sizeof(sk)) || strcmp(sk, key)) {
				offers_meta_free(&m);
				continue;
			}
			double ttl = backend_type_find(bs[i].type)->offers_ttl * od->scale;
			bool stale = same && now - m.checked_at >= ttl && now - m.attempt_at >= retry;
			if (!same || stale || force) {
				if (*nout == cap) {
					cap = cap ? 2 * cap : 16;
					*out = xrealloc(*out, cap * sizeof(**out));
				}
				struct member *mb = &(*out)[(*nout)++];
				memset(mb, 0, sizeof(*mb));
				/* fits: the same sizes as struct st_backend's */
				fmt_cut(mb->project, sizeof(mb->project), "%s", project);
				fmt_cut(mb->backend, sizeof(mb->backend), "%s", bs[i].name);
				fmt_cut(mb->type, sizeof(mb->type), "%s", bs[i].type);
				fmt_cut(mb->digest, sizeof(mb->digest), "%s", bs[i].digest);
				mb->missing = !same;
				if (!force && same && m.data_at > 0 &&
				    fmt(mb->known, sizeof(mb->known), "%s", m.version))
					mb->known[0] = '\0'; /* not a version a source gives: none */
			}
			offers_meta_free(&m);
		}
		free(bs);
	}
	free(ps);
	store_abort(tx);
}

static int cmp_member(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c = strcmp(x->type, y->type);
	if (!c)
		c = strcmp(x->digest, y->digest);
	if (!c)
		c = strcmp(x->known, y->known);
	if (!c)
		c = strcmp(x->project, y->project);
	return c ? c : strcmp(x->backend, y->backend);
}

/* What a run learnt about its source. */
struct verdict {
	bool fetched; /* it asked the source (else: nothing due, or the failure was reused) */
	bool ok;      /* at least one fetch worked */
	char err[512];
};

static void outcome_free(struct outcome *o)
{
	bk_offers_res_free(&o->res);
	buf_free(&o->csv);
}

static bool memo_same(const struct memo *e, const char *key, const struct member *mb)
{
	return e->o && !strcmp(e->key, key) && !strcmp(e->type, mb->type) &&
	       !strcmp(e->digest, mb->digest) && !strcmp(e->known, mb->known);
}

/* A copy of the outcome of a fetch for mb's config (and cached version) made within the
 * share's time: true with *out filled (release with outcome_free). The offers themselves are
 * read back from the store, from the backend the outcome was written to first (so nothing
 * big stays in memory between runs); a miss when that record has changed since. */
static bool memo_get(struct offerd *od, const char *key, const struct member *mb,
		     struct outcome *out)
{
	char project[STORE_NAME_MAX], backend[STORE_NAME_MAX], version[CATALOG_VERSION_MAX];
	bool hit = false;
	pthread_mutex_lock(&od->lock);
	long long now = mono_ms();
	for (size_t i = 0; i < OFFERD_MEMOS && !hit; i++) {
		const struct memo *e = &od->memo[i];
		if (!memo_same(e, key, mb) || now - e->at_ms > od->share_ms)
			continue;
		*out = *e->o;
		memset(&out->res.list, 0, sizeof(out->res.list));
		buf_init(&out->csv, (size_t)1 << 30);
		memcpy(project, e->project, sizeof(project));
		memcpy(backend, e->backend, sizeof(backend));
		hit = true;
	}
	pthread_mutex_unlock(&od->lock);
	if (!hit || out->res.unchanged)
		return hit;
	struct stx *tx = NULL;
	const void *data = NULL;
	size_t len = 0;
	char dkey[2 * STORE_NAME_MAX + 4];
	hit = false;
	fmt_cut(version, sizeof(version), "%s", out->res.version); /* fits: as large */
	offerd_key(dkey, sizeof(dkey), 'd', project, backend);
	if (store_begin(od->s, false, &tx) == 0) {
		struct offers_meta m;
		hit = meta_for(tx, project, backend, mb->digest, &m) &&
		      !strcmp(m.version, version) && !m.error[0] && (size_t)m.count == out->count &&
		      store_blob_get(tx, SDB_OFFERS, dkey, &data, &len) == 0 &&
		      buf_append(&out->csv, data ? data : "", len) == 0;
		offers_meta_free(&m);
		store_abort(tx);
	}
	if (!hit)
		outcome_free(out);
	return hit;
}

/* Keep what a successful fetch for mb's config got (not the offers: they are in mb's store
 * record, where memo_get reads them). */
static void memo_put(struct offerd *od, const char *key, const struct member *mb,
		     const struct outcome *o)
{
	struct outcome *c = xcalloc(1, sizeof(*c));
	*c = *o;
	memset(&c->res.list, 0, sizeof(c->res.list));
	buf_init(&c->csv, 1);
	pthread_mutex_lock(&od->lock);
	struct memo *slot = NULL;
	for (size_t i = 0; i < OFFERD_MEMOS; i++) {
		struct memo *e = &od->memo[i];
		if (memo_same(e, key, mb) || !e->o) {
			slot = e;
			break;
		}
		if (!slot || e->at_ms < slot->at_ms)
			slot = e;
	}
	struct outcome *old = slot->o;
	/* fits: a source key, and the same sizes as struct member's */
	fmt_cut(slot->key, sizeof(slot->key), "%s", key);
	fmt_cut(slot->type, sizeof(slot->type), "%s", mb->type);
	fmt_cut(slot->digest, sizeof(slot->digest), "%s", mb->digest);
	fmt_cut(slot->known, sizeof(slot->known), "%s", mb->known);
	fmt_cut(slot->project, sizeof(slot->project), "%s", mb->project);
	fmt_cut(slot->backend, sizeof(slot->backend), "%s", mb->backend);
	slot->at_ms = mono_ms();
	slot->o = c;
	pthread_mutex_unlock(&od->lock);
	if (old) {
		outcome_free(old);
		free(old);
	}
}

/* With od->lock held: forget every kept outcome. */
static void memo_clear(struct offerd *od)
{
	for (size_t i = 0; i < OFFERD_MEMOS; i++) {
		if (od->memo[i].o) {
			outcome_free(od->memo[i].o);
			free(od->memo[i].o);
		}
		memset(&od->memo[i], 0, sizeof(od->memo[i]));
	}
}

/* One run of source key over the members found by scan. failed_at/failed: the source's last
 * failure, reused for new members within OFFERD_RETRY unless forced. */
static void run_source(struct offerd *od, const char *key, bool all, const struct pend *pend,
		       size_t npend, bool force, struct bk_share *sh, long long failed_at,
		       const char *failed, struct verdict *v)
{
	struct member *mv = NULL;
	size_t n = 0;
	long long now = (long long)time(NULL);
	bool big = false;
	memset(v, 0, sizeof(*v));
	scan(od, key, all, pend, npend, &mv, &n);
	if (!n)
		goto out;
	if (!force && failed_at && now - failed_at < OFFERD_RETRY * od->scale) {
		/* the source failed a moment ago: new backends learn why at once, no fetch */
		struct outcome o;
		memset(&o, 0, sizeof(o));
		buf_init(&o.csv, 1);
		o.rc = -EAGAIN;
		o.cred = 1;
		fmt_cut(o.err, sizeof(o.err), "%s", failed);
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (mv[i].missing)
				mv[k++] = mv[i];
		commit_members(od, mv, k, key, &o);
		outcome_free(&o);
		goto out;
	}
	qsort(mv, n, sizeof(*mv), cmp_member);
	for (size_t a = 0, b; a < n; a = b) {
		for (b = a + 1; b < n && !strcmp(mv[a].type, mv[b].type) &&
				!strcmp(mv[a].digest, mv[b].digest) && !strcmp(mv[a].known, mv[b].known);
		     b++)
			;
		struct outcome o;
		memset(&o, 0, sizeof(o));
		buf_init(&o.csv, (size_t)1 << 30);
		/* the same config fetched a moment ago (for another project): its outcome */
		if (!force && memo_get(od, key, &mv[a], &o)) {
			commit_members(od, &mv[a], b - a, key, &o);
			outcome_free(&o);
			continue;
		}
		if (fetch_group(od, &mv[a], sh, &o) == 0) {
			if (o.rc == -ECANCELED) { /* stopping: write nothing */
				outcome_free(&o);
				break;
			}
			v->fetched = true;
			v->ok |= o.rc == 0;
			if (o.rc && !v->err[0])
				fmt_cut(v->err, sizeof(v->err), "%s", o.err);
			big |= o.count > 1000;
			bk_offers_res_free(&o.res); /* written as csv */
			memset(&o.res.list, 0, sizeof(o.res.list));
			commit_members(od, &mv[a], b - a, key, &o);
			if (o.rc == 0)
				memo_put(od, key, &mv[a], &o);
			pthread_mutex_lock(&od->lock);
			od->fetch_groups++;
			pthread_mutex_unlock(&od->lock);
		}
		outcome_free(&o);
	}
out:
	free(mv);
	if (big) /* the download, the parsed list and the CSV written: give them back */
		malloc_trim(0);
}

/* With od->lock held: ms until nothing the share and the memo hold can be used (0: now). */
static long long kept_for(struct offerd *od)
{
	long long left = od->share ? bk_share_expires_in(od->share) : 0, now = mono_ms();
	for (size_t i = 0; i < OFFERD_MEMOS; i++)
		if (od->memo[i].o && od->memo[i].at_ms + od->share_ms - now > left)
			left = od->memo[i].at_ms + od->share_ms - now;
	return left;
}

static void *worker(void *arg)
{
	struct offerd *od = arg;
	/* fetched answers are shared this long (then a source is asked again) */
	long long age = (long long)(SHARE_FOR * 1000 * od->scale);
	if (age < SHARE_FOR * 100)
		age = SHARE_FOR * 100;
	pthread_mutex_lock(&od->lock);
	od->share_ms = age;
	for (;;) {
		struct source *s = NULL;
		if (od->stopping)
			break;
		for (size_t i = 0; i < OFFERD_MAX_SOURCES; i++)
			if (od->src[i].key[0] && od->src[i].state == S_QUEUED &&
			    (!s || od->src[i].seq < s->seq))
				s = &od->src[i];
		if (!s && !od->running && od->share && !od->trimmed) {
			/* idle: the catalogs' text is not kept between runs (memory); their
			 * versions and failures are, for the share's time */
			bk_share_trim(od->share);
			od->trimmed = true;
			pthread_mutex_unlock(&od->lock);
			malloc_trim(0);
			pthread_mutex_lock(&od->lock);
			continue;
		}
		long long linger = !s && !od->running ? kept_for(od) : -1;
		if (linger == 0 && (od->share || od->memo[0].o)) { /* memo fills from row 0 */
			/* idle, and nothing it holds is young enough to be used: give it back */
			struct bk_share *sh = od->share;
			od->share = NULL;
			memo_clear(od);
			pthread_mutex_unlock(&od->lock);
			bk_share_free(sh);
			malloc_trim(0);
			pthread_mutex_lock(&od->lock);
			continue;
		}
		if (!s && linger > 0) { /* backends configured a moment later use it too */
			struct timespec dl;
			deadline(&dl, linger);
			pthread_cond_timedwait(&od->work, &od->lock, &dl);
			continue;
		}
		if (!s) {
			pthread_cond_wait(&od->work, &od->lock);
			continue;
		}
		char key[OFFERD_SOURCE_MAX], failed[sizeof(s->err)];
		bool all = s->all, force = s->force;
		struct pend *pend = s->pend;
		size_t npend = s->npend;
		long long failed_at = s->fail_at;
		memcpy(key, s->key, sizeof(key));
		memcpy(failed, s->err, sizeof(failed));
		s->state = S_RUNNING;
		s->started++;
		s->all = s->force = s->again = false;
		s->pend = NULL;
		s->npend = s->cappend = 0;
		/* a forced run downloads again: a share of its own */
		struct bk_share *sh = force ? bk_share_new(age) : od->share;
		if (!sh)
			sh = od->share = bk_share_new(age);
		od->running++;
		od->runs++;
		od->trimmed = false;
		pthread_mutex_unlock(&od->lock);

		struct verdict v;
		run_source(od, key, all, pend, npend, force, sh, failed_at, failed, &v);
		free(pend);
		if (force)
			bk_share_free(sh);

		pthread_mutex_lock(&od->lock);
		od->running--;
		s->finished++; /* a running row is never given to another source */
		s->ran_at = (long long)time(NULL);
		if (v.fetched) {
			s->fail_at = v.ok ? 0 : s->ran_at;
			fmt_cut(s->err, sizeof(s->err), "%s", v.ok ? "" : v.err);
		}
		if (s->again || s->npend || s->all) {
			s->state = S_QUEUED;
			s->seq = ++od->seq;
		} else {
			s->state = S_IDLE;
		}
		s->again = false;
		pthread_cond_broadcast(&od->done);
	}
	pthread_mutex_unlock(&od->lock);
	return NULL;
}

static int check(struct offerd *od, const char *project, int wait_ms, bool force);

/* Listings are cached by the kernel, so a stale cache is not always noticed by a reader:
 * every SWEEP_EVERY seconds, sources used in the last ACTIVE_FOR seconds whose TTL is over are
 * run over every project (so no project starves, however many there are), and the projects
 * whose state changed or that were used lately are checked (a config written starts its
 * fetch at once). */
static void *sweeper(void *arg)
{
	struct offerd *od = arg;
	long long every = (long long)(SWEEP_EVERY * 1000 * od->scale);
	long long active = (long long)(ACTIVE_FOR * 1000 * od->scale);
	if (every < 200)
		every = 200;
	pthread_mutex_lock(&od->lock);
	while (!od->stopping) {
		struct timespec dl;
		deadline(&dl, every);
		pthread_cond_timedwait(&od->tick, &od->lock, &dl);
		if (od->stopping)
			break;
		char due[OFFERD_MAX_PROJECTS][STORE_NAME_MAX];
		size_t n = 0;
		long long now = mono_ms(), wall = (long long)time(NULL);
		for (size_t i = 0; i < OFFERD_MAX_PROJECTS; i++)
			if (od->seen[i].project[0] && now - od->seen[i].use_ms < active &&
			    now - od->seen[i].swept_ms >= CHECK_EVERY_MS) {
				memcpy(due[n++], od->seen[i].project, STORE_NAME_MAX);
				od->seen[i].swept_ms = now;
			}
		for (size_t i = 0; i < OFFERD_MAX_SOURCES; i++) {
			struct source *s = &od->src[i];
			if (s->key[0] && s->state == S_IDLE && now - s->use_ms < active &&
			    wall - s->ran_at >= s->ttl * od->scale &&
			    (!s->fail_at || wall - s->fail_at >= OFFERD_RETRY * od->scale))
				(void)request(od, s, NULL, false);
		}
		pthread_mutex_unlock(&od->lock);
		for (size_t i = 0; i < n; i++)
			(void)check(od, due[i], 0, false);
		pthread_mutex_lock(&od->lock);
	}
	pthread_mutex_unlock(&od->lock);
	return NULL;
}

int offerd_start(struct offerd *od)
{
	int r = pthread_create(&od->sweeper, NULL, sweeper, od);
	if (r)
		return -r;
	od->sweeping = true;
	for (size_t i = 0; i < OFFERD_THREADS; i++) {
		r = pthread_create(&od->threads[i], NULL, worker, od);
		if (r) {
			offerd_stop(od);
			return -r;
		}
		od->nthreads++;
	}
	return 0;
}

void offerd_stop(struct offerd *od)
{
	if (!od)
		return;
	pthread_mutex_lock(&od->lock);
	od->stopping = true;
	pthread_cond_broadcast(&od->work);
	pthread_cond_broadcast(&od->done);
	pthread_cond_broadcast(&od->tick);
	pthread_mutex_unlock(&od->lock);
	for (size_t i = 0; i < od->nthreads; i++)
		pthread_join(od->threads[i], NULL);
	od->nthreads = 0;
	if (od->sweeping)
		pthread_join(od->sweeper, NULL);
	od->sweeping = false;
}

void offerd_free(struct offerd *od)
{
	if (!od)
		return;
	for (size_t i = 0; i < OFFERD_MAX_SOURCES; i++)
		free(od->src[i].pend);
	free(od->src);
	bk_share_free(od->share);
	memo_clear(od);
	pthread_mutex_destroy(&od->lock);
	pthread_cond_destroy(&od->work);
	pthread_cond_destroy(&od->done);
	pthread_cond_destroy(&od->tick);
	free(od);
}

void offerd_stats(struct offerd *od, struct offerd_stats *st)
{
	pthread_mutex_lock(&od->lock);
	st->runs = od->runs;
	st->fetch_groups = od->fetch_groups;
	pthread_mutex_unlock(&od->lock);
}

/* ---------------------------------------------------------------- reading the cache */

/* When the cached offers of a backend that count (configured, of a type with offers,
 * fetched for its current config, with data) were fetched, or 0. */
static double usable_at(struct stx *tx, const char *project, const struct st_backend *b)
{
	const struct backend_ops *ops = backend_find(b->type);
	struct offers_meta m;
	if (!b->has_config || !ops || !ops->offers)
		return 0;
	double at = meta_for(tx, project, b->name, b->digest, &m) && m.data_at > 0 ? m.data_at : 0;
	offers_meta_free(&m);
	return at;
}

void offerd_signature(struct stx *tx, const char *project, struct buf *sig)
{
	struct st_backend *bs = NULL;
	size_t nb = 0;
	store_backend_list(tx, project, &bs, &nb);
	for (size_t i = 0; i < nb; i++) {
		double at = usable_at(tx, project, &bs[i]);
		if (at > 0)
			(void)buf_printf(sig, "%s|%s|%.0f;", bs[i].name, bs[i].digest, at);
	}
	free(bs);
}

/* The parsed blob's pages of the store's map are not needed any more: take them out of this
 * process's resident set (they stay in the page cache; a later read faults them back in). */
static void drop_pages(const void *data, size_t len)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)data + pg - 1) & ~(pg - 1);
	uintptr_t b = ((uintptr_t)data + len) & ~(pg - 1);
	if (b > a)
		(void)madvise((void *)a, b - a, MADV_DONTNEED);
}

void offerd_load(struct stx *tx, const char *project, struct offer_list *out)
{
	struct st_backend *bs = NULL;
	size_t nb = 0;
	store_backend_list(tx, project, &bs, &nb);
	for (size_t i = 0; i < nb; i++) {
		double at = usable_at(tx, project, &bs[i]);
		const void *data = NULL;
		size_t len = 0;
		char key[2 * STORE_NAME_MAX + 4], err[256];
		offerd_key(key, sizeof(key), 'd', project, bs[i].name);
		if (at > 0 && !store_blob_get(tx, SDB_OFFERS, key, &data, &len) && len) {
			const struct backend_type *t = backend_type_find(bs[i].type);
			struct offer_origin org = {.backend = bs[i].name, .type = bs[i].type,
						   .source = t->offers_source,
						   .fetched_at = (int64_t)at,
						   .disk = t->disk};
			(void)offers_parse_csv(data, len, &org, out, NULL, err, sizeof(err));
			drop_pages(data, len);
		}
	}
	free(bs);
}

/* ---------------------------------------------------------------- checks */

/* With od->lock held: the seen row of project (made in place of the least recently used
 * one), its use noted. */
static struct seen *seen_get(struct offerd *od, const char *project, long long now)
{
	struct seen *slot = &od->seen[0];
	for (size_t i = 0; i < OFFERD_MAX_PROJECTS; i++) {
		struct seen *s = &od->seen[i];
		if (!strcmp(s->project, project)) {
			s->use_ms = now;
			return s;
		}
		if (s->use_ms < slot->use_ms)
			slot = s;
	}
	memset(slot, 0, sizeof(*slot));
	fmt_cut(slot->project, sizeof(slot->project), "%s", project); /* fits: a name */
	slot->use_ms = now;
	return slot;
}

int offerd_check(struct offerd *od, const char *project, int wait_ms, bool force)
{
	long long now = mono_ms();
	pthread_mutex_lock(&od->lock);
	struct seen *s = seen_get(od, project, now);
	/* only a check that found everything settled is trusted for a second: one that found a
	 * backend with nothing cached says nothing about when that fetch ends */
	bool recent = !force && s->settled_ms && now - s->settled_ms < CHECK_EVERY_MS;
	pthread_mutex_unlock(&od->lock);
	return recent ? 0 : check(od, project, wait_ms, force);
}

void offerd_changed(struct offerd *od, const char *project)
{
	long long now = mono_ms();
	pthread_mutex_lock(&od->lock);
	bool found = false;
	for (size_t i = 0; i < OFFERD_MAX_PROJECTS; i++) {
		struct seen *x = &od->seen[i];
		if (x->project[0] && (!project || !strcmp(x->project, project))) {
			x->settled_ms = x->swept_ms = 0;
			found = true;
		}
	}
	if (!found && project) { /* a project not looked at yet: its new config gets checked */
		struct seen *x = seen_get(od, project, now);
		x->settled_ms = x->swept_ms = 0;
	}
	pthread_cond_signal(&od->tick); /* the sweeper looks at once */
	pthread_mutex_unlock(&od->lock);
}

/* A backend of the checked project, as the check found it. */
struct due {
	char key[OFFERD_SOURCE_MAX];
	int ttl;
	bool missing, stale;
};

/* A run a check waits for. */
struct want {
	char key[OFFERD_SOURCE_MAX];
	unsigned long long ticket;
};

/* With od->lock held: has the run w waits for ended, been given up on by a waiter, or has
 * its source just failed (unless forced: then only its own run counts)? */
static bool want_done(struct offerd *od, const struct want *w, bool force, long long now)
{
	struct source *s = source_find(od, w->key);
	return !s || s->finished >= w->ticket || s->gave_up >= w->ticket ||
	       (!force && s->fail_at && now - s->fail_at < s->ttl * od->scale);
}

static int check(struct offerd *od, const char *project, int wait_ms, bool force)
{
	struct stx *tx = NULL;
	struct st_backend *bs = NULL;
	size_t nb = 0, nd = 0, nw = 0, left = 0;
	long long start = mono_ms(), now = (long long)time(NULL);
	double retry = OFFERD_RETRY * od->scale;
	bool unsettled = false;
	if (store_begin(od->s, false, &tx))
		return 0;
	store_backend_list(tx, project, &bs, &nb);
	struct due *dv = xcalloc(nb ? nb : 1, sizeof(*dv));
	struct want *wv = xcalloc(nb ? nb : 1, sizeof(*wv));
	/* the store first (a config may be unsealed to name its source), the table after */
	for (size_t i = 0; i < nb; i++) {
		const struct backend_ops *ops = backend_find(bs[i].type);
		if (!bs[i].has_config || !ops || !ops->offers)
			continue;
		struct offers_meta m;
		struct due *d = &dv[nd];
		bool same = meta_for(tx, project, bs[i].name, bs[i].digest, &m);
		if (member_source(od, tx, &bs[i], &m, d->key, sizeof(d->key)) == 0) {
			d->ttl = backend_type_find(bs[i].type)->offers_ttl;
			d->missing = !same;
			d->stale = same && now - m.checked_at >= d->ttl * od->scale &&
				   now - m.attempt_at >= retry;
			nd++;
		}
		offers_meta_free(&m);
	}
	store_abort(tx);
	free(bs);

	pthread_mutex_lock(&od->lock);
	long long mono = mono_ms();
	for (size_t i = 0; i < nd; i++) {
		struct due *d = &dv[i];
		struct source *s = source_get(od, d->key, d->ttl);
		unsettled |= d->missing;
		if (!s) {
			unsettled = true;
			continue;
		}
		s->use_ms = mono;
		s->ttl = d->ttl;
		if (!d->missing && !d->stale && !force)
			continue;
		unsigned long long ticket = request(od, s, project, force);
		if (!d->missing && !force)
			continue; /* stale offers are served while the run goes on */
		/* a source that failed within its TTL is not waited for: what is cached (or
		 * nothing) is served at once, the reason is in the status */
		if (!force && s->fail_at && now - s->fail_at < s->ttl * od->scale)
			continue;
		size_t k = 0;
		while (k < nw && strcmp(wv[k].key, s->key))
			k++;
		if (k == nw)
			fmt_cut(wv[nw++].key, sizeof(wv[0].key), "%s", s->key); /* fits: as large */
		if (wv[k].ticket < ticket)
			wv[k].ticket = ticket;
	}
	while (!od->stopping) {
		left = 0;
		for (size_t i = 0; i < nw; i++)
			left += !want_done(od, &wv[i], force, (long long)time(NULL));
		long long rest = start + wait_ms - mono_ms();
		if (!left || rest <= 0)
			break;
		struct timespec dl;
		deadline(&dl, rest);
		pthread_cond_timedwait(&od->done, &od->lock, &dl);
	}
	if (left && wait_ms > 0) { /* gave up: nobody waits for these runs again */
		for (size_t i = 0; i < nw; i++) {
			struct source *s = source_find(od, wv[i].key);
			if (s && s->finished < wv[i].ticket && s->gave_up < wv[i].ticket)
				s->gave_up = wv[i].ticket;
		}
		pthread_cond_broadcast(&od->done);
	}
	if (!unsettled && !force) {
		struct seen *sn = seen_get(od, project, mono);
		sn->settled_ms = mono_ms();
	}
	pthread_mutex_unlock(&od->lock);
	free(dv);
	free(wv);
	return (int)left;
}
