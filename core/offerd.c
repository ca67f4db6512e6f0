/* offerd: see offerd.h.
 *
 * Jobs are (project, backend) keys in a small table: queued, running, or running with
 * another run requested (a forced refresh arriving during a refresh). Workers take queued
 * jobs; waiters sleep on `done` until their keys have left the table or the deadline passed.
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
#include "jsonx.h"

#define OFFERD_MAX_JOBS 256
#define OFFERD_MAX_PROJECTS 64
#define CHECK_EVERY_MS 1000
#define SWEEP_EVERY 30   /* seconds (scaled, at least 0.2 s) */
#define ACTIVE_FOR 3600  /* a project's offers are kept fresh this long after a use */

enum jstate { J_QUEUED, J_RUNNING };

struct job {
	char project[STORE_NAME_MAX];
	char backend[STORE_NAME_MAX];
	enum jstate state;
	bool force, again;
};

struct seen {
	char project[STORE_NAME_MAX];
	long long at_ms;  /* last check */
	long long use_ms; /* last time anything asked for its offers */
};

struct offerd {
	struct store *s;
	struct catalog *cat;
	struct http_client *http;
	double scale;
	pthread_mutex_t lock;
	pthread_cond_t work, done, tick; /* tick: wakes the sweeper (to stop) */
	struct job jobs[OFFERD_MAX_JOBS];
	size_t njobs;
	struct seen seen[OFFERD_MAX_PROJECTS];
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

void offerd_key(char *dst, size_t n, char kind, const char *project, const char *backend)
{
	(void)fmt(dst, n, "%c/%s/%s", kind, project, backend);
}

struct offerd *offerd_new(struct store *s, struct catalog *cat, struct http_client *http)
{
	struct offerd *od = xcalloc(1, sizeof(*od));
	od->s = s;
	od->cat = cat;
	od->http = http;
	od->scale = 1.0;
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

static struct job *job_find(struct offerd *od, const char *project, const char *backend)
{
	for (size_t i = 0; i < od->njobs; i++)
		if (!strcmp(od->jobs[i].project, project) && !strcmp(od->jobs[i].backend, backend))
			return &od->jobs[i];
	return NULL;
}

/* With od->lock held. */
static void job_request(struct offerd *od, const char *project, const char *backend, bool force)
{
	struct job *j = job_find(od, project, backend);
	if (j) {
		if (force && j->state == J_RUNNING)
			j->again = true; /* this run may have read the source before the request */
		j->force |= force;
		return;
	}
	if (od->njobs == OFFERD_MAX_JOBS)
		return; /* a later check asks again */
	j = &od->jobs[od->njobs++];
	memset(j, 0, sizeof(*j));
	(void)fmt(j->project, sizeof(j->project), "%s", project);
	(void)fmt(j->backend, sizeof(j->backend), "%s", backend);
	j->force = force;
	pthread_cond_signal(&od->work);
}

static int check(struct offerd *od, const char *project, int wait_ms, bool force);

/* ---------------------------------------------------------------- one refresh */

static cJSON *meta_get(struct stx *tx, const char *project, const char *backend)
{
	char key[2 * STORE_NAME_MAX + 4];
	cJSON *m = NULL;
	offerd_key(key, sizeof(key), 'm', project, backend);
	(void)store_obj_get(tx, SDB_OFFERS, key, &m);
	return m;
}

/* Write the outcome of a refresh, unless the backend changed under it. */
static void refresh_commit(struct offerd *od, const char *project, const char *backend,
			   const char *digest, int rc, struct bk_offers_res *res, const char *err,
			   int cred, const char *cred_err)
{
	struct stx *tx = NULL;
	struct st_backend b;
	char mkey[2 * STORE_NAME_MAX + 4], dkey[2 * STORE_NAME_MAX + 4];
	long long now = (long long)time(NULL);
	struct buf csv;
	buf_init(&csv, (size_t)1 << 30);
	offerd_key(mkey, sizeof(mkey), 'm', project, backend);
	offerd_key(dkey, sizeof(dkey), 'd', project, backend);
	if (rc == 0 && !res->unchanged && offers_write_csv(&res->list, &csv)) {
		rc = -ENOMEM;
		err = "cannot serialise the offers";
	}
	if (store_begin(od->s, true, &tx))
		goto out;
	if (store_backend_get(tx, project, backend, &b) || !b.has_config ||
	    strcmp(b.digest, digest)) {
		store_abort(tx); /* changed meanwhile: the next check asks again */
		goto out;
	}
	cJSON *old = meta_get(tx, project, backend);
	bool same = old && !strcmp(jx_str(old, "digest"), digest);
	cJSON *m = same ? cJSON_Duplicate(old, true) : cJSON_CreateObject();
	jx_set_str(m, "digest", digest);
	jx_set_num(m, "attempt_at", (double)now);
	int r = 0;
	if (cred <= 0) { /* the credential check's verdict (valid, invalid, or unknown) */
		const char *was = jx_str(old, "cred");
		const char *is = cred == 0			       ? "valid"
				 : cred == -EACCES || cred == -EINVAL ? "invalid"
								       : "unknown";
		jx_set_str(m, "cred", is);
		jx_set_str(m, "cred_reason", cred == 0 ? "" : cred_err);
		jx_set_num(m, "cred_at", (double)now);
		if (strcmp(was, is) && strcmp(is, "unknown"))
			r = store_event(tx, project, "backend=%s credentials %s%s%s", backend, is,
					cred ? ": " : "", cred ? cred_err : "");
	}
	if (rc == 0) {
		jx_set_num(m, "checked_at", (double)now);
		jx_set_str(m, "error", "");
		jx_set_num(m, "error_at", 0);
		if (!res->unchanged) {
			jx_set_num(m, "data_at", (double)now);
			jx_set_str(m, "version", res->version);
			jx_set_str(m, "source", res->source);
			jx_set_num(m, "count", (double)res->list.n);
			jx_set_num(m, "skipped", (double)res->skipped);
			r = store_blob_put(tx, SDB_OFFERS, dkey, csv.data ? csv.data : "", csv.len,
					   project);
			if (!r && (!same || strcmp(jx_str(old, "version"), res->version) ||
				   jx_str(old, "error")[0]))
				r = store_event(tx, project,
						"offers backend=%s %zu offers from %s (version %s)",
						backend, res->list.n, res->source,
						res->version[0] ? res->version : "-");
		} else if (jx_str(old, "error")[0]) {
			r = store_event(tx, project, "offers backend=%s refresh recovered", backend);
		}
	} else {
		if (!same) { /* nothing cached for this config */
			jx_set_num(m, "data_at", 0);
			jx_set_num(m, "count", 0);
			r = store_blob_put(tx, SDB_OFFERS, dkey, "", 0, project);
		}
		if (!r && strcmp(jx_str(old, "error"), err))
			r = store_event(tx, project, "offers backend=%s refresh failed: %s%s", backend,
					err, same ? " (keeping the cached offers)" : "");
		jx_set_str(m, "error", err);
		jx_set_num(m, "error_at", (double)now);
	}
	if (!r)
		r = store_obj_put(tx, SDB_OFFERS, mkey, m, project);
	cJSON_Delete(m);
	cJSON_Delete(old);
	if (r)
		store_abort(tx);
	else
		(void)store_commit(tx);
out:
	buf_free(&csv);
}

static void refresh(struct offerd *od, const char *project, const char *backend, bool force)
{
	struct stx *tx = NULL;
	struct st_backend b;
	char *config = NULL, known[CATALOG_VERSION_MAX] = "", err[1024] = "";
	size_t clen = 0;
	if (store_begin(od->s, false, &tx))
		return;
	if (store_backend_get(tx, project, backend, &b) || !b.has_config ||
	    store_backend_config(tx, project, backend, &config, &clen)) {
		store_abort(tx);
		return;
	}
	cJSON *m = meta_get(tx, project, backend);
	if (!force && m && !strcmp(jx_str(m, "digest"), b.digest) && jx_num(m, "data_at") > 0)
		(void)fmt(known, sizeof(known), "%s", jx_str(m, "version"));
	cJSON_Delete(m);
	store_abort(tx);
	const struct backend_ops *ops = backend_find(b.type);
	struct bk_offers_res res;
	memset(&res, 0, sizeof(res));
	int rc = -ENOTSUP, cred = 1; /* 1: not checked (the type has no check) */
	char cred_err[1024] = "";
	if (ops && ops->offers) {
		struct bk_offers_req req = {.ctx = {.project = project, .name = backend,
						    .type = b.type, .config = config,
						    .config_len = clen, .catalog = od->cat,
						    .http = od->http},
					    .known_version = known, .now = (long long)time(NULL)};
		/* credentials first: offers of an account that refuses them are no offers */
		if (ops->check)
			cred = ops->check(&req.ctx, cred_err, sizeof(cred_err));
		if (cred == -EACCES || cred == -EINVAL) {
			rc = cred;
			(void)fmt(err, sizeof(err), "%s: %s",
				  cred == -EACCES ? "invalid credentials" : "invalid config", cred_err);
		} else {
			rc = ops->offers(&req, &res, err, sizeof(err));
		}
	}
	seal_free_secret(config, clen);
	if (rc && !err[0])
		(void)fmt(err, sizeof(err), "%s", strerror(-rc));
	refresh_commit(od, project, backend, b.digest, rc, &res, err, cred, cred_err);
	bool big = res.list.n > 1000;
	bk_offers_res_free(&res);
	if (big) /* the download, the parsed list and the CSV written: give them back */
		malloc_trim(0);
}

static void *worker(void *arg)
{
	struct offerd *od = arg;
	pthread_mutex_lock(&od->lock);
	for (;;) {
		struct job *j = NULL;
		for (size_t i = 0; i < od->njobs && !j; i++)
			if (od->jobs[i].state == J_QUEUED)
				j = &od->jobs[i];
		if (od->stopping)
			break;
		if (!j) {
			pthread_cond_wait(&od->work, &od->lock);
			continue;
		}
		char project[STORE_NAME_MAX], backend[STORE_NAME_MAX];
		bool force = j->force;
		j->state = J_RUNNING;
		j->force = j->again = false;
		memcpy(project, j->project, sizeof(project));
		memcpy(backend, j->backend, sizeof(backend));
		pthread_mutex_unlock(&od->lock);
		refresh(od, project, backend, force);
		pthread_mutex_lock(&od->lock);
		j = job_find(od, project, backend); /* the table may have moved */
		if (j && j->again) {
			j->state = J_QUEUED;
			j->again = false;
			j->force = true;
		} else if (j) {
			*j = od->jobs[--od->njobs];
		}
		pthread_cond_broadcast(&od->done);
	}
	pthread_mutex_unlock(&od->lock);
	return NULL;
}

/* Listings are cached by the kernel, so a stale cache is not always noticed by a reader:
 * projects whose offers were used in the last ACTIVE_FOR seconds are checked every
 * SWEEP_EVERY seconds. */
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
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += every / 1000;
		dl.tv_nsec += (every % 1000) * 1000000;
		if (dl.tv_nsec >= 1000000000) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&od->tick, &od->lock, &dl);
		if (od->stopping)
			break;
		char due[OFFERD_MAX_PROJECTS][STORE_NAME_MAX];
		size_t n = 0;
		long long now = mono_ms();
		for (size_t i = 0; i < OFFERD_MAX_PROJECTS; i++)
			if (od->seen[i].project[0] && now - od->seen[i].use_ms < active &&
			    now - od->seen[i].at_ms >= CHECK_EVERY_MS) {
				memcpy(due[n++], od->seen[i].project, STORE_NAME_MAX);
				od->seen[i].at_ms = now;
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
	pthread_mutex_destroy(&od->lock);
	pthread_cond_destroy(&od->work);
	pthread_cond_destroy(&od->done);
	pthread_cond_destroy(&od->tick);
	free(od);
}

/* ---------------------------------------------------------------- reading the cache */

/* The meta record of a backend whose cached offers count (configured, of a type with offers,
 * fetched for its current config, with data), or NULL. */
static cJSON *usable_meta(struct stx *tx, const char *project, const struct st_backend *b)
{
	const struct backend_ops *ops = backend_find(b->type);
	if (!b->has_config || !ops || !ops->offers)
		return NULL;
	cJSON *m = meta_get(tx, project, b->name);
	if (m && (strcmp(jx_str(m, "digest"), b->digest) || jx_num(m, "data_at") <= 0)) {
		cJSON_Delete(m);
		m = NULL;
	}
	return m;
}

void offerd_signature(struct stx *tx, const char *project, struct buf *sig)
{
	struct st_backend *bs = NULL;
	size_t nb = 0;
	store_backend_list(tx, project, &bs, &nb);
	for (size_t i = 0; i < nb; i++) {
		cJSON *m = usable_meta(tx, project, &bs[i]);
		if (m)
			(void)buf_printf(sig, "%s|%s|%.0f;", bs[i].name, bs[i].digest,
					 jx_num(m, "data_at"));
		cJSON_Delete(m);
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
		cJSON *m = usable_meta(tx, project, &bs[i]);
		const void *data = NULL;
		size_t len = 0;
		char key[2 * STORE_NAME_MAX + 4], err[256];
		offerd_key(key, sizeof(key), 'd', project, bs[i].name);
		if (m && !store_blob_get(tx, SDB_OFFERS, key, &data, &len) && len) {
			const struct backend_ops *ops = backend_find(bs[i].type);
			struct offer_origin org = {.backend = bs[i].name, .type = bs[i].type,
						   .source = ops->offers_source,
						   .fetched_at = (int64_t)jx_num(m, "data_at")};
			(void)offers_parse_csv(data, len, &org, out, NULL, err, sizeof(err));
			drop_pages(data, len);
		}
		cJSON_Delete(m);
	}
	free(bs);
}

/* ---------------------------------------------------------------- checks */

/* True when the project was checked less than CHECK_EVERY_MS ago (and note this check and
 * this use). */
static bool checked_recently(struct offerd *od, const char *project, long long now)
{
	struct seen *slot = &od->seen[0];
	for (size_t i = 0; i < OFFERD_MAX_PROJECTS; i++) {
		struct seen *s = &od->seen[i];
		if (!strcmp(s->project, project)) {
			s->use_ms = now;
			if (now - s->at_ms < CHECK_EVERY_MS)
				return true;
			slot = s;
			break;
		}
		if (s->use_ms < slot->use_ms)
			slot = s;
	}
	(void)fmt(slot->project, sizeof(slot->project), "%s", project);
	slot->at_ms = slot->use_ms = now;
	return false;
}

int offerd_check(struct offerd *od, const char *project, int wait_ms, bool force)
{
	pthread_mutex_lock(&od->lock);
	bool recent = checked_recently(od, project, mono_ms()) && !force;
	pthread_mutex_unlock(&od->lock);
	return recent ? 0 : check(od, project, wait_ms, force);
}

void offerd_changed(struct offerd *od, const char *project)
{
	long long now = mono_ms();
	pthread_mutex_lock(&od->lock);
	struct seen *slot = NULL;
	for (size_t i = 0; i < OFFERD_MAX_PROJECTS; i++) {
		struct seen *x = &od->seen[i];
		if (!project || !strcmp(x->project, project)) {
			x->at_ms = 0;
			slot = x;
		}
	}
	if (!slot && project) { /* a project not looked at yet: its new config gets checked */
		slot = &od->seen[0];
		for (size_t i = 0; i < OFFERD_MAX_PROJECTS; i++)
			if (od->seen[i].use_ms < slot->use_ms)
				slot = &od->seen[i];
		(void)fmt(slot->project, sizeof(slot->project), "%s", project);
		slot->at_ms = 0;
		slot->use_ms = now;
	}
	pthread_cond_signal(&od->tick); /* the sweeper looks at once */
	pthread_mutex_unlock(&od->lock);
}

static int check(struct offerd *od, const char *project, int wait_ms, bool force)
{
	struct stx *tx = NULL;
	struct st_backend *bs = NULL;
	size_t nb = 0, nwait = 0;
	long long start = mono_ms(), now = (long long)time(NULL);
	char (*waitfor)[STORE_NAME_MAX] = NULL;
	if (store_begin(od->s, false, &tx))
		return 0;
	store_backend_list(tx, project, &bs, &nb);
	waitfor = xcalloc(nb ? nb : 1, sizeof(*waitfor));
	pthread_mutex_lock(&od->lock);
	for (size_t i = 0; i < nb; i++) {
		const struct backend_ops *ops = backend_find(bs[i].type);
		if (!bs[i].has_config || !ops || !ops->offers)
			continue;
		cJSON *m = meta_get(tx, project, bs[i].name);
		bool missing = !m || strcmp(jx_str(m, "digest"), bs[i].digest);
		double ttl = ops->offers_ttl * od->scale, retry = OFFERD_RETRY * od->scale;
		bool stale = !missing && now - jx_num(m, "checked_at") >= ttl &&
			     now - jx_num(m, "attempt_at") >= retry;
		cJSON_Delete(m);
		if (missing || stale || force)
			job_request(od, project, bs[i].name, force);
		if (missing || force)
			memcpy(waitfor[nwait++], bs[i].name, STORE_NAME_MAX);
	}
	store_abort(tx);
	free(bs);
	/* wait for the ones with nothing usable cached */
	size_t left = nwait;
	if (nwait) /* the next call looks again rather than trusting this one */
		for (size_t i = 0; i < OFFERD_MAX_PROJECTS; i++)
			if (!strcmp(od->seen[i].project, project))
				od->seen[i].at_ms = 0;
	while (left && wait_ms > 0 && !od->stopping) {
		left = 0;
		for (size_t i = 0; i < nwait; i++)
			left += job_find(od, project, waitfor[i]) != NULL;
		long long rest = start + wait_ms - mono_ms();
		if (!left || rest <= 0)
			break;
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += rest / 1000;
		dl.tv_nsec += (rest % 1000) * 1000000;
		if (dl.tv_nsec >= 1000000000) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&od->done, &od->lock, &dl);
	}
	pthread_mutex_unlock(&od->lock);
	free(waitfor);
	return (int)left;
}
