/* cloud: see cloud.h.
 *
 * A row's VM (struct cloud_vm in core/records.h): backend, type, offer (name), region,
 * instance, price, spot, name (the cloud name), intent_at (committed before the create call),
 * create_ended (when a create call with an unknown outcome returned), id (the provider's, once
 * known), backend_data, created_at. The row's `tried` lists the offers tried in the current
 * round with their errors. The slow part of a step (provider calls) runs outside any transaction; results are written
 * in a transaction that re-reads the row first.
 */
#include "cloud.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../backends/backend.h"
#include "../backends/http.h"
#include "../cache/seal.h"
#include "fleets.h"
#include "fleetspec.h"
#include "records.h"
#include "offerd.h"

#define POLL_S 5.0             /* provisioning and terminating polls */
#define OFFERS_WAIT_MS 10000   /* for offers of a backend that has none cached yet */
#define TRIED_MAX 25
#define NAME_MAX_LEN 60
#define BK_DATA_MAX sizeof(((struct bk_vm *)0)->backend_data)

static const double retry_s[] = {10, 30, 60, 120, 300}; /* failed terminate calls */


bool cloud_row(const struct instance_row *row)
{
	return row->cloud || !*row->host;
}

static struct cloud_vm *cloud_obj(struct instance_row *row)
{
	return row->cloud ? row->cloud : instance_row_new_cloud(row);
}

/* ---------------------------------------------------------------- rows */

/* The row (0), or an error. */
static int row_get(struct cloud *c, const char *key, struct instance_row *v)
{
	struct stx *tx = NULL;
	memset(v, 0, sizeof(*v));
	int r = store_begin(c->s, false, &tx);
	if (r)
		return r;
	r = instance_row_get(tx, key, v);
	store_abort(tx);
	return r;
}

/* Apply fn to the current row in one write transaction, if its status is still `status`.
 * fn returns 0 (write the row back), ROW_GONE (delete it) or ROW_DONE (fn wrote or deleted
 * it itself), or -errno (abort). */
#define ROW_GONE 1
#define ROW_DONE 2
typedef int (*row_fn)(struct stx *tx, struct instance_row *row, void *arg);

static int row_update(struct cloud *c, const char *key, const char *p, const char *status,
		      row_fn fn, void *arg)
{
	struct stx *tx = NULL;
	struct instance_row v;
	int r = store_begin(c->s, true, &tx);
	if (r)
		return r;
	r = instance_row_get(tx, key, &v);
	if (!r && strcmp(v.status, status))
		r = -ESTALE; /* changed meanwhile (the spec was deleted, say): it wins */
	if (!r)
		r = fn(tx, &v, arg);
	if (r == ROW_DONE) {
		r = 0;
	} else if (r > 0) { /* the row went */
		r = store_obj_del(tx, SDB_INSTANCES, key, p);
	} else if (!r) {
		v.updated = time_now_s();
		r = instance_row_put(tx, key, &v, p);
	}
	if (!r)
		r = store_commit(tx);
	else
		store_abort(tx);
	instance_row_free(&v);
	return r;
}

/* ---------------------------------------------------------------- backends */

struct bk {
	struct st_backend b;
	struct backend_config cfg;
	struct backend_ctx ctx;
	const struct backend_ops *ops;
};

static void bk_free(struct bk *k)
{
	backend_config_free(&k->cfg);
}

static int bk_load(struct cloud *c, const char *p, const char *name, struct bk *k, char *err,
		   size_t errlen)
{
	struct stx *tx = NULL;
	char *text = NULL;
	size_t len = 0;
	memset(k, 0, sizeof(*k));
	int r = store_begin(c->s, false, &tx);
	if (r)
		return fmt_cut(err, errlen, "store: %s", strerror(-r)), r;
	r = store_backend_get(tx, p, name, &k->b);
	if (!r && !k->b.has_config)
		r = -ENOENT;
	if (!r)
		r = store_backend_config(tx, p, name, &text, &len);
	store_abort(tx);
	if (r)
		return fmt_cut(err, errlen, "backend %s is not configured", name), r;
	r = backend_config_parse(text, len, &k->cfg, err, errlen);
	seal_free_secret(text, len);
	if (r)
		return r;
	k->ops = backend_find(k->b.type);
	if (!k->ops || !k->ops->create) {
		bk_free(k);
		return fmt_cut(err, errlen,
			       "backend %s (%s): fleetfs cannot create instances there "
			       "yet",
			       name, k->b.type),
		       -ENOTSUP;
	}
	k->ctx = (struct backend_ctx){.project = p, .name = k->b.name, .type = k->b.type,
				      .config = &k->cfg,
				      .catalog = c->catalog, .http = c->http, .memo = c->memo};
	return 0;
}

/* The VM named name among the backend's own, -ENOENT when it is not there. */
static int find_by_name(struct bk *k, const char *name, struct bk_vm *out, char *err,
			size_t errlen)
{
	struct bk_vm *vms = NULL;
	size_t n = 0;
	int r = k->ops->list_own(&k->ctx, &vms, &n, err, errlen);
	if (r)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < n && r; i++)
		if (!strcmp(vms[i].name, name) && vms[i].state != BK_VM_TERMINATED) {
			*out = vms[i];
			r = 0;
		}
	free(vms);
	return r;
}

/* ---------------------------------------------------------------- pending */

static void cloud_name(const char *p, const char *f, unsigned num, char *out, size_t n)
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char rnd[8];
	char suffix[9];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		for (size_t i = 0; i < sizeof(rnd); i++)
			rnd[i] = (unsigned char)(rand() & 0xff);
	for (size_t i = 0; i < 8; i++)
		suffix[i] = alnum[rnd[i] % 36];
	suffix[8] = '\0';
	char prefix[NAME_MAX_LEN];
	/* cut on purpose: the name keeps its first NAME_MAX_LEN - 9 characters, then a suffix */
	fmt_cut(prefix, sizeof(prefix), "fleetfs-%s-%s-%u", p, f, num);
	for (char *q = prefix; *q; q++) /* providers want lower case and no '_' */
		*q = *q == '_' ? '-' : (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
	size_t keep = NAME_MAX_LEN - 9;
	/* fits: keep + 1 + 8 = NAME_MAX_LEN < n (NAME_MAX_LEN + 1) */
	fmt_cut(out, n, "%.*s-%s", (int)keep, prefix, suffix);
}

struct intent {
	const struct offer *o;
	const char *name;
};

static int put_intent(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct intent *in = arg;
	(void)tx;
	struct cloud_vm *c = instance_row_new_cloud(v);
	rec_set(&c->backend, in->o->backend);
	rec_set(&c->type, in->o->type);
	rec_set(&c->offer, in->o->name);
	rec_set(&c->region, in->o->region);
	rec_set(&c->instance, in->o->instance);
	c->price = in->o->price;
	c->spot = in->o->spot;
	rec_set(&c->name, in->name);
	c->intent_at = time_now_s();
	char why[512];
	fmt_cut(why, sizeof(why), "creating %s on %s (%s %s, $%g/h)", in->name, in->o->backend,
		in->o->region, in->o->instance, in->o->price);
	rec_set(&v->reason, why);
	return 0;
}

struct created {
	const struct bk_vm *vm;
	const char *p, *f;
	unsigned num;
	bool recovered;
};

static int put_created(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct created *cr = arg;
	struct cloud_vm *c = cloud_obj(v);
	rec_set(&c->id, cr->vm->id);
	rec_set(&c->backend_data, cr->vm->backend_data);
	if (cr->vm->zone[0])
		rec_set(&c->zone, cr->vm->zone);
	if (cr->vm->detail[0])
		rec_set(&c->detail, cr->vm->detail);
	c->created_at = time_now_s();
	if (cr->vm->provision_timeout_min > 0)
		c->timeout_min = cr->vm->provision_timeout_min;
	rec_set(&v->user, cr->vm->username[0] ? cr->vm->username : "root");
	v->port = cr->vm->ssh_port ? cr->vm->ssh_port : 22;
	rec_set(&v->status, IST_PROVISIONING);
	v->next_try = 0;
	instance_row_drop_tried(v);
	char why[600];
	fmt_cut(why, sizeof(why), "%s %s (id %s) on %s %s %s, waiting for it to run",
		cr->recovered ? "found" : "created", c->name, cr->vm->id, c->backend, c->region,
		c->instance);
	rec_set(&v->reason, why);
	fleets_history(v, why);
	char more[sizeof(cr->vm->detail) + 4] = "";
	if (cr->vm->detail[0])
		fmt_cut(more, sizeof(more), " (%s)", cr->vm->detail);
	return fleets_event(tx, cr->p, cr->f,
			    "instance=%u provisioning %s %s %s $%g/h %s id=%s%s%s%s%s", cr->num,
			    c->backend, c->region, c->instance, c->price, c->name, cr->vm->id,
			    cr->vm->zone[0] ? " zone=" : "", cr->vm->zone,
			    cr->recovered ? " (found after a restart: not created again)" : "", more);
}

struct failed {
	const char *offer, *backend, *err;
	bool keep_intent; /* the outcome is unknown: look the name up before anything else */
	bool ended;       /* ... because the create call just returned (stamp cloud.ended) */
	const char *p, *f;
	unsigned num;
};

static int put_failed(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct failed *fl = arg;
	instance_row_try(v, fl->offer, fl->err, time_now_s(), TRIED_MAX);
	if (!fl->keep_intent)
		instance_row_drop_cloud(v);
	else if (fl->ended)
		cloud_obj(v)->create_ended = time_now_s();
	return fleets_event(tx, fl->p, fl->f, "instance=%u offer %s: %s%s", fl->num, fl->offer,
			    fl->err, fl->keep_intent ? " (outcome unknown: checking before "
						       "another create)" : "");
}

struct waiting {
	double next;
	const char *why;
	bool attempt; /* counts as a failed round (backoff grows) */
	const char *p, *f;
	unsigned num;
};

static int put_waiting(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct waiting *w = arg;
	bool changed = strcmp(v->reason, w->why) != 0;
	v->next_try = w->next;
	rec_set(&v->reason, w->why);
	if (w->attempt) {
		v->attempts++;
		rec_set(&v->last_error, w->why);
		v->last_error_at = time_now_s();
		instance_row_drop_tried(v);
	}
	if (changed) {
		fleets_history(v, w->why);
		return fleets_event(tx, w->p, w->f, "instance=%u %s: %s", w->num, v->status,
				    w->why);
	}
	return 0;
}

static double backoff_s(struct cloud *c, double attempts)
{
	static const double mins[] = {1, 2, 5, 10, 30};
	size_t i = attempts < 1 ? 0 : (size_t)attempts - 1;
	if (i >= sizeof(mins) / sizeof(mins[0]))
		i = sizeof(mins) / sizeof(mins[0]) - 1;
	return mins[i] * 60.0 * c->scale;
}

static void wait_row(struct cloud *c, const char *key, const char *p, const char *f,
		     unsigned num, const char *status, double delay, bool attempt, const char *why)
{
	struct waiting w = {.next = time_now_s() + delay, .why = why, .attempt = attempt, .p = p,
			    .f = f, .num = num};
	(void)row_update(c, key, p, status, put_waiting, &w);
}

/* Until when (unix seconds) a request of intent cl's create may still make a VM that
 * list_own does not show yet; a name not listed is proof of nothing before it. It is the
 * latest time the create's last request can have been sent, plus one attempt's time (the
 * provider works on a request about as long as the client waits for it, and goes on when
 * the client gives up: a timeout, a cancel, a kill), plus the provider's create lag. The
 * last request was sent
 *  - before the create call returned, when it did (cloud.ended: outcome unknown);
 *  - else (the process died during the call) before the call would have ended: at + the
 *    HTTP client's longest call, retries and pauses included; and when an earlier process
 *    made the intent, before this process started.
 * The HTTP times are real (a test's slow fake is slow in real time: only the pauses between
 * attempts scale); the provider's lag is scaled like every engine interval. */
static double intent_deadline(const struct cloud *c, const struct cloud_vm *cl,
			      const struct backend_ops *ops)
{
	double lag = (ops && ops->create_lag_s > 0 ? ops->create_lag_s : 60) * c->scale;
	double at = cl->intent_at, ended = cl->create_ended;
	double attempt = (double)http_attempt_max_ms(0) / 1000.0;
	double sent = ended;
	if (sent <= 0) {
		sent = at + (double)http_call_max_ms(0, 0) / 1000.0;
		if (at <= 0 || (at < c->started && c->started < sent))
			sent = c->started;
	}
	return sent + attempt + lag;
}

/* The intent's name is not listed yet but its create may still make it: the row stays as
 * it is (status `status`), says so, and looks again after a poll (at the deadline at the
 * latest). */
static void wait_confirm(struct cloud *c, const char *key, const char *p, const char *f,
			 unsigned num, const char *status, const struct cloud_vm *cl,
			 double deadline)
{
	char why[700], until[32];
	time_iso((time_t)deadline + 1, until, sizeof(until));
	fmt_cut(why, sizeof(why),
		"%swaiting to confirm whether %s was created: not listed by %s "
		"yet, and its create may still be under way there (looking "
		"again until %s before anything else is created)",
		strcmp(status, IST_TERMINATING) ? "" : "terminating: ", cl->name, cl->backend,
		until);
	double delay = POLL_S * c->scale, left = deadline - time_now_s();
	if (delay > left)
		delay = left > 0 ? left : 0;
	wait_row(c, key, p, f, num, status, delay, false, why);
}

/* A row with an intent but no id: did the create happen? 0 when resolved (adopted or
 * cleared), else the row waits. */
static int recover_intent(struct cloud *c, const char *key, const char *p, const char *f,
			  unsigned num, const struct instance_row *row)
{
	const struct cloud_vm *cl = row->cloud;
	const char *name = cl->name;
	const struct backend_ops *ops = NULL;
	char err[512] = "";
	struct bk k;
	struct bk_vm vm;
	int r = bk_load(c, p, cl->backend, &k, err, sizeof(err));
	if (!r) {
		ops = k.ops;
		memset(&vm, 0, sizeof(vm));
		r = find_by_name(&k, name, &vm, err, sizeof(err));
		bk_free(&k);
	}
	if (!r) {
		struct created cr = {.vm = &vm, .p = p, .f = f, .num = num, .recovered = true};
		return row_update(c, key, p, IST_PENDING, put_created, &cr) ? -EAGAIN : 1;
	}
	if (r == -ENOENT && ops) {
		double deadline = intent_deadline(c, cl, ops);
		if (time_now_s() < deadline) {
			wait_confirm(c, key, p, f, num, IST_PENDING, cl, deadline);
			return -EAGAIN;
		}
	}
	if (r == -ENOENT || r == -ENOTSUP) {
		char why[600];
		fmt_cut(why, sizeof(why), "%s was not created (not found at the provider%s)", name,
			ops ? " after its create could have made it" : "");
		struct failed fl = {.offer = cl->offer, .backend = cl->backend, .err = why, .p = p,
				    .f = f, .num = num};
		(void)row_update(c, key, p, IST_PENDING, put_failed, &fl);
		return 0;
	}
	char why[900];
	fmt_cut(why, sizeof(why),
		"cannot tell whether %s was created (%s); asking again before "
		"creating anything",
		name, err);
	wait_row(c, key, p, f, num, IST_PENDING, POLL_S * 6 * c->scale, false, why);
	return -EAGAIN;
}

static int cmp_price(const void *a, const void *b)
{
	const struct offer *x = *(const struct offer *const *)a, *y = *(const struct offer *const *)b;
	return (x->price > y->price) - (x->price < y->price);
}

/* A cluster fleet's instances share one backend and region (dstack: the first one's): those
 * of another live instance of the fleet with a cloud intent or VM, "" when none. */
static void cluster_anchor(struct cloud *c, const char *p, const char *f, unsigned num,
			   char *backend, size_t blen, char *region, size_t rlen)
{
	struct stx *tx = NULL;
	struct instance_list rows = {0};
	char prefix[2 * STORE_NAME_MAX + 4];
	backend[0] = region[0] = '\0';
	if (store_begin(c->s, false, &tx))
		return;
	/* fits: a project name < STORE_NAME_MAX, a fleet name at most 41 */
	fmt_cut(prefix, sizeof(prefix), "%s/%s/", p, f);
	(void)instance_row_list(tx, prefix, &rows);
	store_abort(tx);
	for (size_t j = 0; j < rows.n; j++) {
		const struct instance_row *v = &rows.v[j].row;
		const struct cloud_vm *cl = v->cloud;
		const char *st = v->status;
		if (v->num == num || !cl || !*cl->backend || !strcmp(st, IST_TERMINATED) ||
		    !strcmp(st, IST_TERMINATING))
			continue;
		if (fmt(backend, blen, "%s", cl->backend) || fmt(region, rlen, "%s", cl->region)) {
			backend[0] = region[0] = '\0'; /* not a backend or region: no anchor */
			continue;
		}
		break;
	}
	instance_list_free(&rows);
}

/* The name of a cluster fleet's placement group. */
static void placement_name(const char *p, const char *f, char *out, size_t n)
{
	/* fits: 8 + a project name (< STORE_NAME_MAX) + 1 + a fleet name (at most 41) < n */
	fmt_cut(out, n, "fleetfs-%s-%s", p, f);
	for (char *q = out; *q; q++)
		*q = *q == '_' ? '-' : (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
}

/* One pending row's launch round: what it tries, and what it learnt. */
struct launch_round {
	struct cloud *c;
	const char *key, *p, *f;
	unsigned num;
	const struct fleet_spec *spec;
	const struct offer_query *q;
	const char *pub, *user_data;
	const char *pg;             /* the cluster's placement group, NULL: none */
	char last[700];             /* the last create's error */
	char refused[STORE_NAME_MAX]; /* a backend whose credentials were refused */
	size_t tried;
};

/* The offers a row may be created from, cheapest first (at most CLOUD_MAX_OFFERS): matching,
 * available, on a backend with a client that creates, and for a cluster where its first
 * instance is (anchor_b, anchor_r). *nmatch: how many matched at all. cand: all->n slots. */
static size_t candidates(const struct offer_list *all, const struct offer_query *q,
			 const char *anchor_b, const char *anchor_r, const struct offer **cand,
			 size_t *nmatch)
{
	size_t nc = 0;
	*nmatch = 0;
	for (size_t i = 0; i < all->n; i++) {
		const struct backend_ops *ops = backend_find(all->v[i].type);
		if (!offers_match(q, &all->v[i]))
			continue;
		(*nmatch)++;
		if (anchor_b[0] && (strcmp(all->v[i].backend, anchor_b) ||
				    strcasecmp(all->v[i].region, anchor_r)))
			continue; /* a cluster stays where its first instance is */
		if (offers_available(&all->v[i]) && ops && ops->create)
			cand[nc++] = &all->v[i];
	}
	qsort(cand, nc, sizeof(*cand), cmp_price);
	return nc > CLOUD_MAX_OFFERS ? CLOUD_MAX_OFFERS : nc;
}

/* Create the row's VM from offer o: the intent first, then the call. 1: done for this round
 * (created, or waiting to learn whether the create happened), 0: try the next offer, -1:
 * stop (the row changed). */
static int try_offer(struct launch_round *lr, const struct offer *o)
{
	char oname[256], name[NAME_MAX_LEN + 1], err[1024] = "";
	struct bk k;
	if (!strcmp(lr->refused, o->backend))
		return 0; /* its credentials were refused this round */
	offer_name(o, oname, sizeof(oname));
	struct offer named = *o;
	named.name = oname;
	named.disk_mib = offers_disk_for(lr->q, o); /* the disk the spec asks for */
	if (bk_load(lr->c, lr->p, o->backend, &k, err, sizeof(err)))
		return 0;
	cloud_name(lr->p, lr->f, lr->num, name, sizeof(name));
	struct intent in = {.o = &named, .name = name};
	if (row_update(lr->c, lr->key, lr->p, IST_PENDING, put_intent, &in)) {
		bk_free(&k);
		return -1; /* the row changed (terminating): stop */
	}
	struct bk_create_req req = {.offer = &named, .cloud_name = name, .project = lr->p,
				    .fleet = lr->f, .num = lr->num, .ssh_pubkey = lr->pub,
				    .user_data = lr->user_data, .placement_group = lr->pg,
				    .tags = lr->spec->tags, .ntags = lr->spec->ntags};
	struct bk_vm vm;
	memset(&vm, 0, sizeof(vm));
	int r = k.ops->create(&k.ctx, &req, &vm, err, sizeof(err));
	bk_free(&k);
	lr->tried++;
	if (!r) {
		struct created cr = {.vm = &vm, .p = lr->p, .f = lr->f, .num = lr->num};
		(void)row_update(lr->c, lr->key, lr->p, IST_PENDING, put_created, &cr);
		return 1;
	}
	/* no verdict from the provider: the VM may exist (a cancel at unmount too, and an
	 * answer that could not be read) */
	bool unknown = r == -ETIMEDOUT || r == -EIO || r == -ECONNRESET || r == -ECANCELED ||
		       r == -EPROTO;
	fmt_cut(lr->last, sizeof(lr->last), "%s", err[0] ? err : strerror(-r));
	struct failed fl = {.offer = oname, .backend = o->backend, .err = lr->last,
			    .keep_intent = unknown, .ended = unknown, .p = lr->p, .f = lr->f,
			    .num = lr->num};
	(void)row_update(lr->c, lr->key, lr->p, IST_PENDING, put_failed, &fl);
	if (unknown) {
		wait_row(lr->c, lr->key, lr->p, lr->f, lr->num, IST_PENDING, POLL_S * lr->c->scale,
			 false, "checking whether the last create happened");
		return 1;
	}
	if (r == -EACCES) /* fits: a backend name < STORE_NAME_MAX */
		fmt_cut(lr->refused, sizeof(lr->refused), "%s", o->backend);
	return 0;
}

/* Why a round created nothing, for the row's reason. */
static void no_offer_why(char *why, size_t n, size_t ncached, size_t nmatch, size_t nc,
			 const char *anchor_b, const char *anchor_r, const struct launch_round *lr)
{
	if (!nmatch)
		fmt_cut(why, n,
			"no offer matches the fleet's requirements (%zu offers cached for the "
			"project's backends)",
			ncached);
	else if (anchor_b[0] && !nc)
		fmt_cut(why, n,
			"no available offer on %s in %s, where the cluster's other instances are "
			"(%zu offers match elsewhere)",
			anchor_b, anchor_r, nmatch);
	else if (!nc)
		fmt_cut(why, n,
			"%zu offers match but none is available on a backend fleetfs can create "
			"instances on",
			nmatch);
	else
		fmt_cut(why, n, "no offer could be provisioned (%zu tried; last: %s)", lr->tried,
			lr->last);
}

static void pending_step(struct cloud *c, const char *key, const char *p, const char *f,
			 unsigned num, const struct instance_row *row)
{
	const struct cloud_vm *cl = row->cloud;
	if (cl && *cl->name && !*cl->id) {
		if (recover_intent(c, key, p, f, num, row))
			return; /* adopted the VM, or must wait */
	}
	/* the offers: make sure every backend has some cached, then the spec's requirements */
	if (c->offerd)
		(void)offerd_check(c->offerd, p, OFFERS_WAIT_MS, false);
	struct stx *tx = NULL;
	struct fleet_spec *spec = NULL;
	struct offer_list all = {0};
	char *text = NULL, err[1024] = "";
	size_t len = 0;
	if (store_begin(c->s, false, &tx))
		return;
	int r = fleets_spec_text(tx, p, f, &text, &len);
	if (!r)
		offerd_load(tx, p, &all);
	store_abort(tx);
	if (!r)
		r = fleetspec_parse(text, len, f, f, NULL, &spec, err, sizeof(err));
	seal_free_secret(text, len);
	if (r) {
		offer_list_free(&all);
		return; /* the spec is gone: the row is being terminated */
	}
	struct offer_query *q = offers_query_from_spec(spec);
	const struct offer **cand = xcalloc(all.n ? all.n : 1, sizeof(*cand));
	char anchor_b[STORE_NAME_MAX] = "", anchor_r[128] = "", pg[2 * NAME_MAX_LEN] = "";
	bool cluster = spec->placement == PLACEMENT_CLUSTER;
	if (cluster) {
		cluster_anchor(c, p, f, num, anchor_b, sizeof(anchor_b), anchor_r, sizeof(anchor_r));
		placement_name(p, f, pg, sizeof(pg));
	}
	size_t nmatch = 0, nc = candidates(&all, q, anchor_b, anchor_r, cand, &nmatch);
	char *priv = NULL, *pub = NULL;
	size_t privlen = 0;
	if (nc && fleets_project_key(c->s, p, true, &priv, &privlen, &pub))
		nc = 0;
	char *user_data = pub ? backend_cloud_init(pub) : NULL;
	struct launch_round lr = {.c = c, .key = key, .p = p, .f = f, .num = num, .spec = spec,
				  .q = q, .pub = pub, .user_data = user_data,
				  .pg = cluster ? pg : NULL};
	int res = 0; /* try_offer's: 1 done, -1 the row changed */
	for (size_t i = 0; i < nc && !res; i++)
		res = try_offer(&lr, cand[i]);
	if (res != 1) {
		struct instance_row cur;
		double attempts = row_get(c, key, &cur) ? 1 : (double)cur.attempts + 1;
		instance_row_free(&cur);
		char why[1200];
		no_offer_why(why, sizeof(why), all.n, nmatch, nc, anchor_b, anchor_r, &lr);
		wait_row(c, key, p, f, num, IST_PENDING, backoff_s(c, attempts), true, why);
	}
	free(user_data);
	free(pub);
	seal_free_secret(priv, privlen);
	free(cand);
	offers_query_free(q);
	fleetspec_free(spec);
	offer_list_free(&all);
}

/* ---------------------------------------------------------------- provisioning */

struct address {
	const struct bk_vm *vm;
};

static int put_address(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct address *a = arg;
	(void)tx;
	rec_set(&v->host, a->vm->ip);
	if (a->vm->internal_ip[0])
		rec_set(&v->internal_ip, a->vm->internal_ip);
	if (a->vm->username[0])
		rec_set(&v->user, a->vm->username);
	char why[300];
	fmt_cut(why, sizeof(why), "running at %s, connecting", a->vm->ip);
	rec_set(&v->reason, why);
	fleets_history(v, why);
	return 0;
}

/* The sealed endpoint the SSH step reads: the VM's address, user and the project key. */
static int put_endpoint(struct cloud *c, const char *p, const char *f, unsigned num,
			const struct instance_row *row, const struct bk_vm *vm)
{
	char *priv = NULL, *pub = NULL, sk[3 * STORE_NAME_MAX + 16];
	size_t privlen = 0;
	int r = fleets_project_key(c->s, p, true, &priv, &privlen, &pub);
	if (r)
		return r;
	/* borrows the strings: never host_rec_free it */
	struct host_rec ep = {.ep = {.hostname = (char *)vm->ip,
				     .port = vm->ssh_port ? vm->ssh_port : row->port,
				     .user = vm->username[0] ? (char *)vm->username : row->user,
				     .key = priv}};
	char *js = host_rec_encode_text(&ep);
	struct stx *tx = NULL;
	/* fits: project and fleet names, a number */
	fmt_cut(sk, sizeof(sk), "f/%s/%s/inst/%08u", p, f, num);
	r = js ? store_begin(c->s, true, &tx) : -ENOMEM;
	if (!r)
		r = store_secret_put(tx, sk, js, strlen(js));
	if (!r)
		r = store_commit(tx);
	else
		store_abort(tx);
	if (js)
		seal_free_secret(js, strlen(js));
	free(pub);
	seal_free_secret(priv, privlen);
	return r;
}

struct lost {
	const char *why;
	const char *p, *f;
	unsigned num;
};

static int put_lost(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct lost *l = arg;
	struct cloud_vm *cl = cloud_obj(v);
	char *offer = xstrdup(cl->offer); /* the row's cloud part goes below */
	rec_set(&v->status, IST_PENDING);
	v->next_try = 0;
	rec_set(&v->host, "");
	instance_row_drop_cloud(v);
	struct failed fl = {.offer = offer, .err = l->why, .p = l->p, .f = l->f, .num = l->num};
	int r = put_failed(tx, v, &fl);
	free(offer);
	return r;
}

static bool provisioning_step(struct cloud *c, const char *key, const char *p, const char *f,
			      unsigned num, const struct instance_row *row)
{
	const struct cloud_vm *cl = row->cloud;
	char err[700] = "", why[900];
	struct bk k;
	struct bk_vm vm;
	memset(&vm, 0, sizeof(vm));
	int r = bk_load(c, p, cl->backend, &k, err, sizeof(err));
	if (r) {
		wait_row(c, key, p, f, num, IST_PROVISIONING, POLL_S * 6 * c->scale, false, err);
		return false;
	}
	r = k.ops->get(&k.ctx, cl->id, cl->backend_data, &vm, err, sizeof(err));
	int timeout_min = cl->timeout_min > 0		 ? cl->timeout_min
			  : k.ops->provision_timeout_min ? k.ops->provision_timeout_min
							 : 10;
	bk_free(&k);
	if (r == -ENOENT || (!r && (vm.state == BK_VM_TERMINATED || vm.state == BK_VM_FAILED ||
				    vm.state == BK_VM_TERMINATING))) {
		fmt_cut(why, sizeof(why), "%s (id %s) %s while provisioning", cl->name, cl->id,
			r ? "vanished" : vm.status);
		struct lost l = {.why = why, .p = p, .f = f, .num = num};
		(void)row_update(c, key, p, IST_PROVISIONING, put_lost, &l);
		return false;
	}
	if (r) {
		fmt_cut(why, sizeof(why), "cannot get the state of %s: %s", cl->name, err);
		wait_row(c, key, p, f, num, IST_PROVISIONING, POLL_S * c->scale, false, why);
		return false;
	}
	if (vm.state == BK_VM_RUNNING && vm.ip[0]) {
		if (put_endpoint(c, p, f, num, row, &vm))
			return false;
		struct address a = {.vm = &vm};
		return row_update(c, key, p, IST_PROVISIONING, put_address, &a) == 0;
	}
	double since = cl->created_at;
	if (time_now_s() - since > timeout_min * 60.0 * c->scale) {
		struct stx *tx = NULL;
		if (store_begin(c->s, true, &tx) == 0) {
			struct instance_row v;
			if (!instance_row_get(tx, key, &v) && !strcmp(v.status, IST_PROVISIONING)) {
				rec_set(&v.status, IST_TERMINATING);
				rec_set(&v.termination_reason, "provisioning_timeout");
				fmt_cut(why, sizeof(why), "not running after %d min: terminating",
					timeout_min);
				rec_set(&v.reason, why);
				fleets_history(&v, why);
				(void)instance_row_put(tx, key, &v, p);
				(void)fleets_event(tx, p, f, "instance=%u %s", num, why);
				(void)store_commit(tx);
			} else {
				store_abort(tx);
			}
			instance_row_free(&v);
		}
		return false;
	}
	fmt_cut(why, sizeof(why), "waiting for %s to run (provider status: %s)", cl->name,
		vm.status[0] ? vm.status : "?");
	wait_row(c, key, p, f, num, IST_PROVISIONING, POLL_S * c->scale, false, why);
	return false;
}

/* ---------------------------------------------------------------- terminating */

struct gone {
	const char *p, *f;
	unsigned num;
	const char *what;
};

static int put_gone(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct gone *g = arg;
	char sk[3 * STORE_NAME_MAX + 16];
	/* fits: project and fleet names, a number */
	fmt_cut(sk, sizeof(sk), "f/%s/%s/inst/%08u", g->p, g->f, g->num);
	int r = store_secret_del_prefix(tx, sk);
	if (!r)
		r = fleets_event(tx, g->p, g->f, "instance=%u terminated (%s)%s", g->num,
				 v->termination_reason, g->what);
	return r ? r : 1;
}

struct term_retry {
	const char *err;
	struct cloud *c;
	const char *p, *f;
	unsigned num;
};

static int put_term_retry(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct term_retry *t = arg;
	unsigned n = v->term_attempts + 1;
	size_t i = (size_t)n - 1;
	if (i >= sizeof(retry_s) / sizeof(retry_s[0]))
		i = sizeof(retry_s) / sizeof(retry_s[0]) - 1;
	char why[900];
	v->term_attempts = n;
	v->next_try = time_now_s() + retry_s[i] * t->c->scale;
	fmt_cut(why, sizeof(why), "terminating (retry %u: %s)", n, t->err);
	rec_set(&v->reason, why);
	rec_set(&v->last_error, t->err);
	v->last_error_at = time_now_s();
	if (n == 1 || n == 5 || n % 20 == 0) {
		fleets_history(v, why);
		return fleets_event(tx, t->p, t->f, "instance=%u %s", t->num, why);
	}
	return 0;
}

static int put_term_asked(struct stx *tx, struct instance_row *v, void *arg)
{
	(void)tx;
	(void)arg;
	cloud_obj(v)->term_asked = time_now_s();
	return 0;
}

static int put_found(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct bk_vm *vm = arg;
	(void)tx;
	struct cloud_vm *c = cloud_obj(v);
	rec_set(&c->id, vm->id);
	rec_set(&c->backend_data, vm->backend_data);
	return 0;
}

static void terminating_step(struct cloud *c, const char *key, const char *p, const char *f,
			     unsigned num, const struct instance_row *row)
{
	const struct cloud_vm *cl = row->cloud;
	char err[700] = "", what[600] = "", id[BK_ID_MAX], data[BK_DATA_MAX];
	struct bk k;
	struct gone g = {.p = p, .f = f, .num = num, .what = what};
	/* longer than a backend gives (struct bk_vm): not asked, retried with a reason */
	bool bad = fmt(id, sizeof(id), "%s", cl ? cl->id : "") ||
		   fmt(data, sizeof(data), "%s", cl ? cl->backend_data : "");
	if (!cl || (!bad && !id[0] && !*cl->name)) {
		(void)row_update(c, key, p, IST_TERMINATING, put_gone, &g); /* nothing created */
		return;
	}
	int r = bk_load(c, p, cl->backend, &k, err, sizeof(err));
	if (!r && bad) {
		r = -ENAMETOOLONG;
		fmt_cut(err, sizeof(err), "the VM's id or backend data is too long");
	}
	if (!r && !id[0]) { /* an intent: was it created? */
		struct bk_vm vm;
		memset(&vm, 0, sizeof(vm));
		r = find_by_name(&k, cl->name, &vm, err, sizeof(err));
		if (r == -ENOENT) {
			double deadline = intent_deadline(c, cl, k.ops);
			bk_free(&k);
			if (time_now_s() < deadline) /* it may still appear: not gone yet */
				wait_confirm(c, key, p, f, num, IST_TERMINATING, cl, deadline);
			else
				(void)row_update(c, key, p, IST_TERMINATING, put_gone, &g);
			return;
		}
		/* fits: the same sizes as struct bk_vm's; get and terminate need them */
		fmt_cut(id, sizeof(id), "%s", vm.id);
		fmt_cut(data, sizeof(data), "%s", vm.backend_data);
		/* found: from now on the row follows this VM by its id */
		(void)row_update(c, key, p, IST_TERMINATING, put_found, &vm);
	}
	/* ask once, then only look (again after a minute if the VM is still there) */
	double asked = cl->term_asked;
	bool ask = asked <= 0 || time_now_s() - asked > 60.0 * c->scale;
	if (!r && ask) {
		r = k.ops->terminate(&k.ctx, id, data, err, sizeof(err));
		if (!r)
			(void)row_update(c, key, p, IST_TERMINATING, put_term_asked, NULL);
	}
	struct bk_vm vm;
	memset(&vm, 0, sizeof(vm));
	if (!r) {
		r = k.ops->get(&k.ctx, id, data, &vm, err, sizeof(err));
		if (r == -ENOENT || (!r && vm.state == BK_VM_TERMINATED)) {
			bk_free(&k);
			fmt_cut(what, sizeof(what), "; %s (id %s) confirmed gone by %s", cl->name, id,
				cl->backend);
			(void)row_update(c, key, p, IST_TERMINATING, put_gone, &g);
			return;
		}
	}
	bk_free(&k);
	if (r) {
		struct term_retry t = {.err = err[0] ? err : strerror(-r), .c = c, .p = p, .f = f,
				       .num = num};
		(void)row_update(c, key, p, IST_TERMINATING, put_term_retry, &t);
		return;
	}
	char why[300];
	fmt_cut(why, sizeof(why), "terminating: waiting for the provider (status %s)",
		vm.status[0] ? vm.status : "?");
	wait_row(c, key, p, f, num, IST_TERMINATING, POLL_S * c->scale, false, why);
}

/* ---------------------------------------------------------------- orphans */

static void name_prefix(const char *p, char *out, size_t n)
{
	/* fits: a project name < STORE_NAME_MAX, n is STORE_NAME_MAX + 16 */
	fmt_cut(out, n, "fleetfs-%s-", p);
	for (char *q = out; *q; q++)
		*q = *q == '_' ? '-' : (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
}

/* Is vm one of the project's instance rows (by provider id or by the name of an intent)? */
static bool known_vm(const struct instance_list *rows, const char *p, const char *backend,
		     const struct bk_vm *vm)
{
	size_t pl = strlen(p);
	for (size_t j = 0; j < rows->n; j++) {
		const char *k = rows->v[j].key;
		const struct cloud_vm *cl = rows->v[j].row.cloud;
		if (strncmp(k, p, pl) || k[pl] != '/' || !cl || strcmp(cl->backend, backend))
			continue;
		if ((*cl->id && !strcmp(cl->id, vm->id)) || !strcmp(cl->name, vm->name))
			return true;
	}
	return false;
}

static void orphan_note(struct cloud *c, const char *p, const char *b, const struct bk_vm *vm,
			const char *what, bool once)
{
	struct stx *tx = NULL;
	char mk[3 * STORE_NAME_MAX + BK_ID_MAX], *seen = NULL;
	size_t len = 0;
	/* fits: project and backend names < STORE_NAME_MAX, an id < BK_ID_MAX */
	fmt_cut(mk, sizeof(mk), "orphan/%s/%s/%s", p, b, vm->id);
	if (store_begin(c->s, true, &tx))
		return;
	if (once && store_meta_get(tx, mk, &seen, &len) == 0) {
		free(seen);
		store_abort(tx);
		return;
	}
	free(seen);
	char at[32];
	time_iso(time(NULL), at, sizeof(at));
	if (!store_meta_put(tx, mk, at, strlen(at)) &&
	    !store_event(tx, p, "backend=%s orphan VM %s (id %s, %s %s, %s) %s", b, vm->name,
			 vm->id, vm->region, vm->instance, vm->status, what))
		(void)store_commit(tx);
	else
		store_abort(tx);
}

void cloud_sweep(struct cloud *c)
{
	struct stx *tx = NULL;
	struct st_project *ps = NULL;
	size_t np = 0;
	struct instance_list rows = {0};
	if (store_begin(c->s, false, &tx))
		return;
	store_project_list(tx, &ps, &np);
	(void)instance_row_list(tx, "", &rows);
	struct todo {
		char p[STORE_NAME_MAX], b[STORE_NAME_MAX];
	} *todo = NULL;
	size_t nt = 0;
	for (size_t i = 0; i < np; i++) {
		struct st_backend *bs = NULL;
		size_t nb = 0;
		store_backend_list(tx, ps[i].name, &bs, &nb);
		for (size_t j = 0; j < nb; j++) {
			const struct backend_ops *ops = backend_find(bs[j].type);
			if (!bs[j].has_config || !ops || !ops->list_own)
				continue;
			todo = xrealloc(todo, (nt + 1) * sizeof(*todo));
			/* fits: the same sizes as the store's listings */
			fmt_cut(todo[nt].p, sizeof(todo[nt].p), "%s", ps[i].name);
			fmt_cut(todo[nt].b, sizeof(todo[nt].b), "%s", bs[j].name);
			nt++;
		}
		free(bs);
	}
	store_abort(tx);
	free(ps);
	for (size_t i = 0; i < nt; i++) {
		struct bk k;
		struct bk_vm *vms = NULL;
		size_t n = 0;
		char err[512], prefix[STORE_NAME_MAX + 16];
		if (bk_load(c, todo[i].p, todo[i].b, &k, err, sizeof(err)))
			continue;
		name_prefix(todo[i].p, prefix, sizeof(prefix));
		char *mode = backend_config_str(&k.ctx, "orphans");
		bool terminate = mode && !strcmp(mode, "terminate");
		backend_secret_free(mode);
		if (k.ops->list_own(&k.ctx, &vms, &n, err, sizeof(err)) == 0) {
			for (size_t j = 0; j < n; j++) {
				const struct bk_vm *vm = &vms[j];
				if (strncmp(vm->name, prefix, strlen(prefix)) ||
				    vm->state == BK_VM_TERMINATED || vm->state == BK_VM_TERMINATING ||
				    known_vm(&rows, todo[i].p, todo[i].b, vm))
					continue;
				if (!terminate) {
					orphan_note(c, todo[i].p, todo[i].b, vm,
						    "is not known to fleetfs: terminate it at the provider, "
						    "or set `orphans: terminate` in the backend's config.yml",
						    true);
					continue;
				}
				int r = k.ops->terminate(&k.ctx, vm->id, vm->backend_data, err,
							 sizeof(err));
				char what[700];
				fmt_cut(what, sizeof(what), r ? "could not be terminated: %s"
							      : "is not known to fleetfs: terminated "
								"(orphans: terminate)",
					err);
				orphan_note(c, todo[i].p, todo[i].b, vm, what, false);
			}
		}
		free(vms);
		bk_free(&k);
	}
	free(todo);
	instance_list_free(&rows);
}

/* ---------------------------------------------------------------- running */

struct vanished {
	const char *key, *why;
	const char *p, *f;
	unsigned num;
};

/* The VM is gone: the row goes, and the fleet gets a new pending instance in its place when
 * it now has fewer than its nodes (dstack keeps a fleet's nodes.min the same way). */
static int put_vanished(struct stx *tx, struct instance_row *v, void *arg)
{
	const struct vanished *x = arg;
	char sk[3 * STORE_NAME_MAX + 16];
	size_t added = 0;
	(void)v;
	/* fits: project and fleet names, a number */
	fmt_cut(sk, sizeof(sk), "f/%s/%s/inst/%08u", x->p, x->f, x->num);
	int r = store_secret_del_prefix(tx, sk);
	if (!r)
		r = fleets_event(tx, x->p, x->f, "instance=%u terminated (%s): %s", x->num,
				 "interrupted_by_provider", x->why);
	if (!r)
		r = store_obj_del(tx, SDB_INSTANCES, x->key, x->p);
	if (!r)
		r = fleets_refill(tx, x->p, x->f, &added);
	if (!r && added)
		r = fleets_event(tx, x->p, x->f, "%zu instance%s added to keep the fleet's nodes",
				 added, added == 1 ? "" : "s");
	return r ? r : ROW_DONE;
}

/* An idle/busy VM: ask the provider first (it may have gone: preempted, deleted by hand).
 * True when it is still there and the SSH check applies. */
static bool running_step(struct cloud *c, const char *key, const char *p, const char *f,
			 unsigned num, const struct instance_row *row)
{
	const struct cloud_vm *cl = row->cloud;
	char err[700] = "", why[900];
	struct bk k;
	struct bk_vm vm;
	if (!cl || !*cl->id)
		return true;
	if (bk_load(c, p, cl->backend, &k, err, sizeof(err)))
		return true;
	memset(&vm, 0, sizeof(vm));
	int r = k.ops->get(&k.ctx, cl->id, cl->backend_data, &vm, err, sizeof(err));
	bk_free(&k);
	if (r == -ENOENT || (!r && (vm.state == BK_VM_TERMINATED || vm.state == BK_VM_FAILED))) {
		fmt_cut(why, sizeof(why), "%s (id %s) is %s at %s", cl->name, cl->id,
			r ? "gone" : vm.status, cl->backend);
		struct vanished x = {.key = key, .why = why, .p = p, .f = f, .num = num};
		(void)row_update(c, key, p, row->status, put_vanished, &x);
		return false;
	}
	return true; /* a provider error is not a verdict: the SSH check decides */
}

/* ---------------------------------------------------------------- dispatch */

bool cloud_step(struct cloud *c, const char *key, const char *p, const char *f, unsigned num)
{
	struct instance_row row;
	bool ssh = false;
	if (row_get(c, key, &row))
		return false;
	const char *st = row.status;
	if (!strcmp(st, IST_TERMINATING))
		terminating_step(c, key, p, f, num, &row);
	else if (!strcmp(st, IST_PENDING))
		pending_step(c, key, p, f, num, &row);
	else if (!strcmp(st, IST_PROVISIONING) && !*row.host) {
		(void)cloud_obj(&row); /* a row without one reads as an empty VM (in memory only) */
		ssh = provisioning_step(c, key, p, f, num, &row);
	}
	else if (!strcmp(st, IST_IDLE) || !strcmp(st, IST_BUSY))
		ssh = *row.host && running_step(c, key, p, f, num, &row);
	else /* an address: the SSH step (connect, probe, checks) applies */
		ssh = *row.host != '\0';
	instance_row_free(&row);
	return ssh;
}
