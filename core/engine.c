/* engine: see engine.h. */
#include "engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../backends/ssh.h"
#include "cloud.h"
#include "fleets.h"
#include "records.h"
#include "probe.h"
#include "../lib/util.h"

#define ENGINE_MAX_WORKERS 32
#define SSH_TIMEOUT_MS 15000
#define SSH_MAX_OUT (256 * 1024)
#define ENGINE_MAX_LIVE_WAITERS 8

static const double backoff_min[] = {1, 2, 5, 10, 30};

#define SWEEP_KEY "!orphans" /* the job of the orphan sweep (not a row key) */
#define SWEEP_EVERY (10 * 60) /* seconds, scaled */

struct job {
	char key[3 * STORE_NAME_MAX];
	struct job *next;
};

struct inflight {
	char key[3 * STORE_NAME_MAX];
	bool done;
	double done_at; /* when the last check of this row finished */
	unsigned waiters;
	struct inflight *next;
};

struct engine {
	struct store *s;
	pthread_t sched;
	pthread_t workers[ENGINE_MAX_WORKERS];
	int nworkers;
	pthread_mutex_t lock;
	pthread_cond_t wake;     /* scheduler */
	pthread_cond_t work;     /* workers */
	pthread_cond_t checked;  /* live readers */
	bool stop, kicked;
	struct job *head, *tail;
	char (*busy)[3 * STORE_NAME_MAX]; /* queued or being worked on */
	size_t nbusy, capbusy;
	struct inflight *inflight;
	unsigned live_waiters;
	double scale;
	struct cloud cloud;
	bool has_cloud;
	double next_sweep; /* the next orphan sweep (scheduler thread only) */
};


/* split "<p>/<fleet>/<num>"; -ENAMETOOLONG: a name longer than the store writes */
static int split_key(const char *key, char *p, char *f, unsigned *num)
{
	const char *a = strchr(key, '/');
	const char *b = a ? strchr(a + 1, '/') : NULL;
	long long n = 0;
	if (fmt(p, STORE_NAME_MAX, "%.*s", a ? (int)(a - key) : 0, key) ||
	    fmt(f, STORE_NAME_MAX, "%.*s", (a && b) ? (int)(b - a - 1) : 0, a ? a + 1 : ""))
		return -ENAMETOOLONG;
	if (b)
		num_parse_ll(b + 1, 0, 100000000, &n);
	*num = (unsigned)n;
	return 0;
}

/* ---- the queue ---- */

static bool is_busy(struct engine *e, const char *key)
{
	for (size_t i = 0; i < e->nbusy; i++)
		if (!strcmp(e->busy[i], key))
			return true;
	return false;
}

static void busy_del(struct engine *e, const char *key)
{
	for (size_t i = 0; i < e->nbusy; i++) {
		if (!strcmp(e->busy[i], key)) {
			memmove(e->busy[i], e->busy[e->nbusy - 1], sizeof(e->busy[i]));
			e->nbusy--;
			return;
		}
	}
}

/* lock held */
static void enqueue(struct engine *e, const char *key, bool front)
{
	if (is_busy(e, key) || strlen(key) >= sizeof(e->busy[0]))
		return; /* too long: not a row key the store writes */
	if (e->nbusy == e->capbusy) {
		e->capbusy = e->capbusy ? e->capbusy * 2 : 64;
		e->busy = xrealloc(e->busy, e->capbusy * sizeof(*e->busy));
	}
	/* fits: checked above, and a job's key is as large */
	fmt_cut(e->busy[e->nbusy++], sizeof(e->busy[0]), "%s", key);
	struct job *j = xcalloc(1, sizeof(*j));
	fmt_cut(j->key, sizeof(j->key), "%s", key);
	if (front) {
		j->next = e->head;
		e->head = j;
		if (!e->tail)
			e->tail = j;
	} else {
		if (e->tail)
			e->tail->next = j;
		else
			e->head = j;
		e->tail = j;
	}
	pthread_cond_signal(&e->work);
}

/* ---- the work on one row ---- */

/* The sealed endpoint of row num (host, port, user, key, proxy). */
static int load_host(struct store *s, const char *p, const char *f, unsigned num,
		     struct host_rec *out)
{
	struct stx *tx = NULL;
	char key[3 * STORE_NAME_MAX + 16], *js = NULL;
	size_t len = 0;
	memset(out, 0, sizeof(*out));
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	/* fits: project and fleet names, a number */
	fmt_cut(key, sizeof(key), "f/%s/%s/inst/%08u", p, f, num);
	r = store_secret_get(tx, key, &js, &len);
	store_abort(tx);
	if (r)
		return r;
	r = host_rec_decode_text(js, len, out);
	seal_free_secret(js, len);
	return r;
}

static void ep_from(const struct endpoint_rec *o, struct sshc_endpoint *ep, const char *pin)
{
	ep->host = o->hostname;
	ep->port = o->port;
	if (!ep->port)
		ep->port = 22;
	ep->user = o->user;
	ep->key = o->key;
	ep->keylen = strlen(ep->key);
	ep->pin = (pin && *pin) ? pin : NULL;
}

/* The command run on a host: install the project key for user access, then probe. */
static char *host_command(const char *pub)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	/* pub is "type base64 comment": no quotes or shell specials in any part */
	buf_printf(&b, "umask 077; mkdir -p \"$HOME/.ssh\" && "
		       "(grep -qxF '%s' \"$HOME/.ssh/authorized_keys\" 2>/dev/null || "
		       "echo '%s' >> \"$HOME/.ssh/authorized_keys\"); ",
		   pub, pub);
	buf_printf(&b, "%s", probe_command());
	char *s = buf_steal(&b, NULL);
	return s ? s : xstrdup(probe_command());
}

static struct host_res *resources_of(const struct host_info *hi)
{
	struct host_res *res = xcalloc(1, sizeof(*res));
	res->cpus = hi->cpus;
	res->arch = xstrdup(hi->arch);
	res->memory_mib = hi->memory_mib;
	res->disk_mib = hi->disk_mib;
	res->gpus = xcalloc(hi->ngpus ? hi->ngpus : 1, sizeof(*res->gpus));
	for (size_t i = 0; i < hi->ngpus; i++) {
		res->gpus[i].vendor = xstrdup(hi->gpus[i].vendor);
		res->gpus[i].name = xstrdup(hi->gpus[i].name);
		res->gpus[i].memory_mib = hi->gpus[i].memory_mib;
	}
	res->ngpus = hi->ngpus;
	res->addrs = xstrdup(hi->addrs);
	return res;
}

static void gpu_summary(const struct host_info *hi, char *out, size_t n)
{
	out[0] = '\0';
	if (!hi->ngpus) {
		fmt_cut(out, n, "no GPUs");
		return;
	}
	fmt_cut(out, n, "%zux%s %lluGB", hi->ngpus, hi->gpus[0].name,
		(unsigned long long)(hi->gpus[0].memory_mib / 1024));
}

struct outcome {
	int r;                       /* sshc_run result, or probe parse error */
	char err[512];
	struct host_info hi;
	char host_key[SSHC_HOSTKEY_MAX];
	char jump_key[SSHC_HOSTKEY_MAX];
};

static void ssh_probe(struct engine *e, const char *p, const char *f,
		      const struct instance_row *row, struct outcome *o)
{
	struct host_rec h;
	char *priv = NULL, *pub = NULL, *cmd = NULL;
	size_t privlen = 0;
	struct sshc_result res;
	memset(&res, 0, sizeof(res));
	memset(o, 0, sizeof(*o));
	o->r = load_host(e->s, p, f, row->num, &h);
	if (o->r) {
		fmt_cut(o->err, sizeof(o->err), "the host is no longer in the spec");
		return;
	}
	o->r = fleets_project_key(e->s, p, true, &priv, &privlen, &pub);
	if (o->r) {
		fmt_cut(o->err, sizeof(o->err), "project key: %s", strerror(-o->r));
		goto out;
	}
	struct sshc_endpoint target, jump;
	ep_from(&h.ep, &target, row->hostkey);
	if (h.proxy)
		ep_from(h.proxy, &jump, row->jumpkey);
	cmd = host_command(pub);
	o->r = sshc_run(&target, h.proxy ? &jump : NULL, cmd, SSH_TIMEOUT_MS,
			SSH_MAX_OUT, &res, o->err, sizeof(o->err));
	/* fits: the same size as struct sshc_result's */
	fmt_cut(o->host_key, sizeof(o->host_key), "%s", res.host_key);
	fmt_cut(o->jump_key, sizeof(o->jump_key), "%s", res.jump_key);
	if (o->r)
		goto out;
	if (res.exit_status != 0 && (!res.out || !strstr(res.out, "### "))) {
		o->r = -EIO;
		fmt_cut(o->err, sizeof(o->err), "the probe failed on the host (exit %d)",
			res.exit_status);
		goto out;
	}
	o->r = probe_parse(res.out ? res.out : "", res.outlen, &o->hi, o->err, sizeof(o->err));
out:
	sshc_result_free(&res);
	host_rec_free(&h);
	free(cmd);
	free(pub);
	seal_free_secret(priv, privlen);
}

static double backoff(struct engine *e, double attempts)
{
	size_t i = attempts < 1 ? 0 : (size_t)attempts - 1;
	if (i >= sizeof(backoff_min) / sizeof(backoff_min[0]))
		i = sizeof(backoff_min) / sizeof(backoff_min[0]) - 1;
	return backoff_min[i] * 60.0 * e->scale;
}

/* Apply an SSH outcome to the row (re-read inside tx). */
static int apply_outcome(struct engine *e, struct stx *tx, const char *key, const char *p,
			 const char *f, unsigned num, const struct outcome *o)
{
	struct instance_row v;
	int r = instance_row_get(tx, key, &v);
	if (r)
		return r == -ENOENT ? 0 : r;
	const char *st = v.status;
	double now = time_now_s();
	bool pending = !strcmp(st, IST_PENDING) || !strcmp(st, IST_PROVISIONING);
	bool live = !strcmp(st, IST_IDLE) || !strcmp(st, IST_BUSY);
	if (!pending && !live)
		goto out; /* terminating meanwhile: the spec changed, it wins */
	v.checked = now;
	v.updated = now;
	if (o->r == 0) {
		if (!*v.hostkey && *o->host_key)
			rec_set(&v.hostkey, o->host_key);
		if (!*v.jumpkey && *o->jump_key)
			rec_set(&v.jumpkey, o->jump_key);
		instance_row_set_res(&v, resources_of(&o->hi));
		bool was_unreachable = v.unreachable;
		v.unreachable = false;
		rec_set(&v.check_error, "");
		char gs[128];
		gpu_summary(&o->hi, gs, sizeof(gs));
		if (pending) {
			rec_set(&v.status, IST_IDLE);
			v.started = now;
			v.next_try = 0;
			char why[256];
			fmt_cut(why, sizeof(why), "ready: %d cpus, %llu GiB memory, %s", o->hi.cpus,
				(unsigned long long)(o->hi.memory_mib / 1024), gs);
			rec_set(&v.reason, why);
			fleets_history(&v, why);
			r = fleets_event(tx, p, f, "instance=%u idle %s %s (%d cpus, %llu GiB, %s)",
					num, v.host, o->hi.arch, o->hi.cpus,
					(unsigned long long)(o->hi.memory_mib / 1024), gs);
		} else if (was_unreachable) {
			rec_set(&v.reason, "reachable again");
			fleets_history(&v, "reachable again");
			r = fleets_event(tx, p, f, "instance=%u reachable again", num);
		}
	} else {
		char why[700];
		if (o->r == -EKEYREJECTED)
			fmt_cut(why, sizeof(why),
				"host key changed: %s; the pinned key stays and the "
				"new one is never accepted (remove the host from the "
				"spec and add it back if the change is expected)",
				o->err);
		else
			fmt_cut(why, sizeof(why), "%s", o->err[0] ? o->err : strerror(-o->r));
		if (pending) {
			unsigned attempts = v.attempts + 1;
			double next = now + backoff(e, attempts);
			char ts[32], msg[900];
			time_iso((time_t)next, ts, sizeof(ts));
			v.attempts = attempts;
			v.next_try = next;
			rec_set(&v.last_error, why);
			v.last_error_at = now;
			fmt_cut(msg, sizeof(msg), "attempt %u failed: %s; next try at %s", attempts,
				why, ts);
			rec_set(&v.reason, msg);
			fleets_history(&v, msg);
			r = fleets_event(tx, p, f, "instance=%u pending: %s", num, msg);
		} else {
			bool was = v.unreachable;
			v.unreachable = true;
			rec_set(&v.check_error, why);
			rec_set(&v.last_error, why);
			v.last_error_at = now;
			if (!was) {
				char msg[800];
				fmt_cut(msg, sizeof(msg), "unreachable: %s", why);
				rec_set(&v.reason, msg);
				fleets_history(&v, msg);
				r = fleets_event(tx, p, f, "instance=%u unreachable (kept, never "
							  "terminated): %s",
						num, why);
			}
		}
	}
	if (!r)
		r = instance_row_put(tx, key, &v, p);
out:
	instance_row_free(&v);
	return r;
}

/* Remove the project key from the host's authorized_keys; note what happened. */
static void unkey_host(struct engine *e, const char *p, const char *f,
		       const struct instance_row *row, char *note, size_t notelen)
{
	struct host_rec h;
	char *priv = NULL, *pub = NULL, err[512] = "";
	size_t privlen = 0;
	struct sshc_result res;
	memset(&res, 0, sizeof(res));
	int r = load_host(e->s, p, f, row->num, &h);
	if (!r)
		r = fleets_project_key(e->s, p, false, &priv, &privlen, &pub);
	if (!r) {
		struct buf cmd;
		struct sshc_endpoint target, jump;
		buf_init(&cmd, 1 << 16);
		buf_printf(&cmd, "f=\"$HOME/.ssh/authorized_keys\"; if [ -f \"$f\" ]; then "
				 "grep -vxF '%s' \"$f\" > \"$f.fleetfs.$$\"; "
				 "cat \"$f.fleetfs.$$\" > \"$f\"; rm -f \"$f.fleetfs.$$\"; fi",
			   pub);
		ep_from(&h.ep, &target, row->hostkey);
		if (h.proxy)
			ep_from(h.proxy, &jump, row->jumpkey);
		r = sshc_run(&target, h.proxy ? &jump : NULL, cmd.data, 10000, 65536,
			     &res, err, sizeof(err));
		if (!r && res.exit_status != 0)
			r = -EIO;
		buf_free(&cmd);
	}
	if (!r)
		fmt_cut(note, notelen, "; project key removed from %s", row->host);
	else
		fmt_cut(note, notelen,
			"; the project key could not be removed from %s (%s): delete the "
			"line ending in fleetfs-%s from its ~/.ssh/authorized_keys",
			row->host, err[0] ? err : strerror(-r), p);
	sshc_result_free(&res);
	host_rec_free(&h);
	free(pub);
	seal_free_secret(priv, privlen);
}

static void work_one(struct engine *e, const char *key)
{
	char p[STORE_NAME_MAX], f[STORE_NAME_MAX];
	unsigned num;
	struct stx *tx = NULL;
	struct instance_row v;
	if (!strcmp(key, SWEEP_KEY)) {
		if (e->has_cloud)
			cloud_sweep(&e->cloud);
		return;
	}
	if (split_key(key, p, f, &num) || store_begin(e->s, false, &tx))
		return;
	int r = instance_row_get(tx, key, &v);
	store_abort(tx);
	if (r)
		return;
	const char *st = v.status;
	if (!strcmp(st, IST_TERMINATING) && !cloud_row(&v)) {
		/* SSH hosts: fleetfs installed nothing but the project key; take it back (once,
		 * bounded: the host is not ours to keep retrying) and say how that went. Then the
		 * row goes. (Cloud rows are terminated at their provider: core/cloud.c.) */
		char note[600] = "";
		if (*v.host && *v.hostkey)
			unkey_host(e, p, f, &v, note, sizeof(note));
		if (store_begin(e->s, true, &tx) == 0) {
			struct instance_row cur;
			char sk[3 * STORE_NAME_MAX + 16];
			/* fits: project and fleet names, a number */
			fmt_cut(sk, sizeof(sk), "f/%s/%s/inst/%08u", p, f, num);
			if (instance_row_get(tx, key, &cur) == 0 &&
			    !strcmp(cur.status, IST_TERMINATING)) {
				r = store_obj_del(tx, SDB_INSTANCES, key, p);
				if (!r)
					r = store_secret_del_prefix(tx, sk);
				if (!r)
					r = fleets_event(tx, p, f, "instance=%u terminated (%s)%s", num,
							 cur.termination_reason, note);
				if (!r)
					r = store_commit(tx);
				else
					store_abort(tx);
				tx = NULL;
			}
			instance_row_free(&cur);
			store_abort(tx);
		}
		goto out;
	}
	if (cloud_row(&v)) {
		/* a backend fleet's row: the provider steps, then SSH once it has an address */
		if (!e->has_cloud || !cloud_step(&e->cloud, key, p, f, num))
			goto out;
		instance_row_free(&v);
		if (store_begin(e->s, false, &tx))
			return;
		r = instance_row_get(tx, key, &v);
		store_abort(tx);
		if (r)
			return;
	}
	struct outcome o;
	ssh_probe(e, p, f, &v, &o);
	if (store_begin(e->s, true, &tx) == 0) {
		r = apply_outcome(e, tx, key, p, f, num, &o);
		if (!r)
			store_commit(tx);
		else
			store_abort(tx);
	}
out:
	instance_row_free(&v);
}

static void *worker_main(void *arg)
{
	struct engine *e = arg;
	pthread_mutex_lock(&e->lock);
	while (!e->stop) {
		if (!e->head) {
			pthread_cond_wait(&e->work, &e->lock);
			continue;
		}
		struct job *j = e->head;
		e->head = j->next;
		if (!e->head)
			e->tail = NULL;
		pthread_mutex_unlock(&e->lock);
		work_one(e, j->key);
		pthread_mutex_lock(&e->lock);
		busy_del(e, j->key);
		for (struct inflight *f = e->inflight; f; f = f->next)
			if (!strcmp(f->key, j->key)) {
				f->done = true;
				f->done_at = time_now_s();
			}
		pthread_cond_broadcast(&e->checked);
		free(j);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/* ---- the scheduler ---- */

static bool due(struct engine *e, const struct instance_row *v, double now)
{
	const char *st = v->status;
	if (!strcmp(st, IST_TERMINATING) || !strcmp(st, IST_PENDING) ||
	    !strcmp(st, IST_PROVISIONING))
		return v->next_try <= now;
	if (!strcmp(st, IST_IDLE) || !strcmp(st, IST_BUSY))
		return v->checked + 60.0 * e->scale <= now;
	return false;
}

/* Deleted fleets whose instances are all gone disappear. */
static void sweep_fleets(struct engine *e)
{
	struct stx *tx = NULL;
	struct fleet_list fl;
	if (store_begin(e->s, true, &tx))
		return;
	if (fleet_rec_list(tx, "", &fl)) {
		store_abort(tx);
		return;
	}
	bool changed = false;
	for (size_t j = 0; j < fl.n; j++) {
		if (!fl.v[j].rec.deleted)
			continue;
		char p[STORE_NAME_MAX], f[STORE_NAME_MAX], prefix[3 * STORE_NAME_MAX];
		const char *k = fl.v[j].key, *slash = strchr(k, '/');
		if (!slash)
			continue;
		if (fmt(p, sizeof(p), "%.*s", (int)(slash - k), k) ||
		    fmt(f, sizeof(f), "%s", slash + 1) || fmt(prefix, sizeof(prefix), "f/%s/", k))
			continue; /* names longer than the store writes */
		/* fits: shorter than "f/<k>/" */
		fmt_cut(prefix, sizeof(prefix), "%s/", k);
		struct instance_list insts;
		if (instance_row_list(tx, prefix, &insts) == 0 && insts.n == 0) {
			/* fits: checked above */
			fmt_cut(prefix, sizeof(prefix), "f/%s/", k);
			if (!store_obj_del(tx, SDB_FLEETS, k, p) &&
			    !store_secret_del_prefix(tx, prefix) &&
			    !fleets_event(tx, p, f, "terminated: every instance is gone"))
				changed = true;
		}
		instance_list_free(&insts);
	}
	fleet_list_free(&fl);
	if (changed)
		store_commit(tx);
	else
		store_abort(tx);
}

static void *sched_main(void *arg)
{
	struct engine *e = arg;
	pthread_mutex_lock(&e->lock);
	while (!e->stop) {
		e->kicked = false;
		pthread_mutex_unlock(&e->lock);
		struct stx *tx = NULL;
		struct instance_list all = {0};
		if (store_begin(e->s, false, &tx) == 0) {
			(void)instance_row_list(tx, "", &all);
			store_abort(tx);
		}
		double now = time_now_s();
		pthread_mutex_lock(&e->lock);
		for (size_t j = 0; j < all.n; j++)
			if (due(e, &all.v[j].row, now))
				enqueue(e, all.v[j].key, false);
		pthread_mutex_unlock(&e->lock);
		instance_list_free(&all);
		sweep_fleets(e);
		if (now >= e->next_sweep) {
			e->next_sweep = now + SWEEP_EVERY * e->scale;
			pthread_mutex_lock(&e->lock);
			enqueue(e, SWEEP_KEY, false);
			pthread_mutex_unlock(&e->lock);
		}
		pthread_mutex_lock(&e->lock);
		if (e->stop || e->kicked)
			continue;
		/* scan again within a second (scaled), or at once when kicked */
		double wait = e->scale < 1 ? 0.25 : 1.0;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += (long)(wait * 1e9);
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&e->wake, &e->lock, &until);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

int engine_start(struct store *s, int workers, const struct cloud *cloud, struct engine **out)
{
	struct engine *e = xcalloc(1, sizeof(*e));
	e->s = s;
	if (cloud) {
		e->cloud = *cloud;
		e->has_cloud = true;
	}
	e->scale = 1.0;
	const char *sc = getenv("FLEETFS_TIME_SCALE");
	if (sc) {
		char *end = NULL;
		double d = strtod(sc, &end);
		if (end && !*end && d > 0 && d <= 100)
			e->scale = d;
	}
	e->cloud.scale = e->scale;
	e->cloud.s = s;
	e->cloud.started = time_now_s();
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->wake, NULL);
	pthread_cond_init(&e->work, NULL);
	pthread_cond_init(&e->checked, NULL);
	if (workers < 1)
		workers = 1;
	if (workers > ENGINE_MAX_WORKERS)
		workers = ENGINE_MAX_WORKERS;
	int r = sshc_global_init();
	if (r) {
		free(e);
		return r;
	}
	for (int i = 0; i < workers; i++) {
		if (pthread_create(&e->workers[i], NULL, worker_main, e))
			break;
		e->nworkers++;
	}
	if (pthread_create(&e->sched, NULL, sched_main, e)) {
		engine_stop(e);
		return -EAGAIN;
	}
	*out = e;
	return 0;
}

void engine_stop(struct engine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stop = true;
	pthread_cond_broadcast(&e->wake);
	pthread_cond_broadcast(&e->work);
	pthread_cond_broadcast(&e->checked);
	pthread_mutex_unlock(&e->lock);
	pthread_join(e->sched, NULL);
	for (int i = 0; i < e->nworkers; i++)
		pthread_join(e->workers[i], NULL);
	while (e->head) {
		struct job *j = e->head;
		e->head = j->next;
		free(j);
	}
	while (e->inflight) {
		struct inflight *f = e->inflight;
		e->inflight = f->next;
		free(f);
	}
	free(e->busy);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->wake);
	pthread_cond_destroy(&e->work);
	pthread_cond_destroy(&e->checked);
	free(e);
}

void engine_wake(struct engine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->kicked = true;
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->lock);
}

void engine_check(struct engine *e, const char *project, const char *fleet, unsigned num,
		  int ttl_ms, int wait_ms)
{
	char key[3 * STORE_NAME_MAX];
	struct stx *tx = NULL;
	struct instance_row v;
	if (!e)
		return;
	if (fmt(key, sizeof(key), "%s/%s/%08u", project, fleet, num) ||
	    store_begin(e->s, false, &tx))
		return;
	int r = instance_row_get(tx, key, &v);
	store_abort(tx);
	if (r)
		return;
	const char *st = v.status;
	bool checkable = *v.host && (!strcmp(st, IST_IDLE) || !strcmp(st, IST_BUSY));
	bool fresh = time_now_s() - v.checked < ttl_ms / 1000.0;
	instance_row_free(&v);
	if (!checkable || fresh)
		return;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&e->lock);
	struct inflight *f = e->inflight;
	while (f && strcmp(f->key, key))
		f = f->next;
	if (f && f->done && time_now_s() - f->done_at < ttl_ms / 1000.0) {
		/* a check finished after the row was read above: it is fresh */
		pthread_mutex_unlock(&e->lock);
		return;
	}
	if (!f || f->done) {
		if (!f) {
			f = xcalloc(1, sizeof(*f));
			fmt_cut(f->key, sizeof(f->key), "%s", key); /* fits: the same size */
			f->next = e->inflight;
			e->inflight = f;
		}
		f->done = false;
		if (!is_busy(e, key))
			enqueue(e, key, true);
	}
	/* at most ENGINE_MAX_LIVE_WAITERS request threads wait at once (a FUSE thread that
	 * waits is one the rest of the mount can't use); the others show the last known state
	 * right away, the check still runs */
	if (e->live_waiters >= ENGINE_MAX_LIVE_WAITERS) {
		pthread_mutex_unlock(&e->lock);
		return;
	}
	e->live_waiters++;
	f->waiters++;
	while (!f->done && !e->stop)
		if (pthread_cond_timedwait(&e->checked, &e->lock, &until) == ETIMEDOUT)
			break;
	e->live_waiters--;
	if (--f->waiters == 0 && f->done) {
		struct inflight **pp = &e->inflight;
		while (*pp && *pp != f)
			pp = &(*pp)->next;
		if (*pp)
			*pp = f->next;
		free(f);
	}
	pthread_mutex_unlock(&e->lock);
}
