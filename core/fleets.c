/* fleets: see fleets.h. */
#include "fleets.h"
#include "records.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/ssh.h"
#include "fleetspec.h"
#include "state.h"

#define FLEETS_MAX_INSTANCES 4096

void fleets_history(struct instance_row *row, const char *what)
{
	instance_row_log(row, (double)time(NULL), what, FLEETS_HISTORY_MAX);
}

static void fleet_key(char *dst, size_t n, const char *p, const char *f)
{
	/* fits: callers pass 2 * STORE_NAME_MAX + 2; project and fleet names < STORE_NAME_MAX */
	fmt_cut(dst, n, "%s/%s", p, f);
}

static void inst_key(char *dst, size_t n, const char *p, const char *f, unsigned num)
{
	/* fits: callers pass 3 * STORE_NAME_MAX; two names < STORE_NAME_MAX and a number */
	fmt_cut(dst, n, "%s/%s/%08u", p, f, num);
}

int fleets_event(struct stx *tx, const char *p, const char *f, const char *fmtstr, ...)
{
	char msg[1536], fj[2 * STORE_NAME_MAX + 2];
	va_list ap;
	va_start(ap, fmtstr);
	vfmt_cut(msg, sizeof(msg), fmtstr, ap);
	va_end(ap);
	fmt_cut(fj, sizeof(fj), "%s:%s", p, f); /* fits: two names < STORE_NAME_MAX */
	int r = store_event(tx, p, "fleet=%s %s", f, msg);
	if (!r)
		r = store_event(tx, fj, "%s", msg);
	return r;
}

/* ---- queries ---- */

bool fleets_spec_exists(struct stx *tx, const char *project, const char *fleet, size_t *size,
			struct timespec *mtime)
{
	char key[2 * STORE_NAME_MAX + 2];
	struct fleet_rec rec;
	fleet_key(key, sizeof(key), project, fleet);
	if (fleet_rec_get(tx, key, &rec))
		return false;
	bool live = !rec.deleted;
	if (size)
		*size = rec.spec_size;
	if (mtime)
		*mtime = rec.spec_mtime;
	fleet_rec_free(&rec);
	return live;
}

bool fleets_dir_exists(struct stx *tx, const char *project, const char *fleet)
{
	char key[2 * STORE_NAME_MAX + 2];
	struct fleet_rec rec;
	fleet_key(key, sizeof(key), project, fleet);
	if (fleet_rec_get(tx, key, &rec))
		return false;
	fleet_rec_free(&rec);
	return true;
}

bool fleets_instance_exists(struct stx *tx, const char *project, const char *fleet,
			    unsigned num)
{
	char key[3 * STORE_NAME_MAX];
	struct instance_row row;
	inst_key(key, sizeof(key), project, fleet, num);
	if (instance_row_get(tx, key, &row))
		return false;
	instance_row_free(&row);
	return true;
}

void fleets_names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

int fleets_list(struct stx *tx, const char *project, char ***names, bool **live, size_t *n)
{
	char prefix[STORE_NAME_MAX + 2];
	struct fleet_list fl;
	fmt_cut(prefix, sizeof(prefix), "%s/", project); /* fits: a project name */
	*names = NULL;
	*n = 0;
	if (live)
		*live = NULL;
	int r = fleet_rec_list(tx, prefix, &fl);
	if (r)
		return r;
	size_t cnt = fl.n, i = 0;
	*names = xcalloc(cnt ? cnt : 1, sizeof(char *));
	if (live)
		*live = xcalloc(cnt ? cnt : 1, sizeof(bool));
	for (size_t j = 0; j < fl.n; j++) {
		const char *k = fl.v[j].key + strlen(prefix);
		if (strchr(k, '/'))
			continue;
		(*names)[i] = xstrdup(k);
		if (live)
			(*live)[i] = !fl.v[j].rec.deleted;
		i++;
	}
	*n = i;
	fleet_list_free(&fl);
	return 0;
}

static int instances_of(struct stx *tx, const char *p, const char *f, struct instance_list *l)
{
	char prefix[2 * STORE_NAME_MAX + 3];
	fmt_cut(prefix, sizeof(prefix), "%s/%s/", p, f); /* fits: two names < STORE_NAME_MAX */
	return instance_row_list(tx, prefix, l);
}

int fleets_instances(struct stx *tx, const char *project, const char *fleet, unsigned **nums,
		     size_t *n)
{
	struct instance_list l;
	*nums = NULL;
	*n = 0;
	int r = instances_of(tx, project, fleet, &l);
	if (r)
		return r;
	*nums = xcalloc(l.n ? l.n : 1, sizeof(unsigned));
	for (size_t i = 0; i < l.n; i++)
		(*nums)[i] = l.v[i].row.num;
	*n = l.n;
	instance_list_free(&l);
	return 0;
}

int fleets_spec_text(struct stx *tx, const char *project, const char *fleet, char **out,
		     size_t *len)
{
	char key[2 * STORE_NAME_MAX + 16];
	/* fits: two names < STORE_NAME_MAX */
	fmt_cut(key, sizeof(key), "f/%s/%s/spec", project, fleet);
	return store_secret_get(tx, key, out, len);
}

/* ---- the project key ---- */

int fleets_project_key(struct store *s, const char *project, bool create, char **priv,
		       size_t *privlen, char **pub)
{
	char key[STORE_NAME_MAX + 16];
	struct stx *tx = NULL;
	fmt_cut(key, sizeof(key), "p/%s/sshkey", project); /* fits: a project name */
	*priv = NULL;
	*pub = NULL;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	r = store_secret_get(tx, key, priv, privlen);
	store_abort(tx);
	if (r == -ENOENT && !create)
		return r;
	if (r == -ENOENT) {
		/* generate outside any transaction (RSA takes a while), then store it unless
		 * another thread was first */
		char *gen = NULL;
		size_t glen = 0;
		r = sshc_generate_key(&gen, &glen);
		if (r)
			return r;
		r = store_begin(s, true, &tx);
		if (r) {
			seal_free_secret(gen, glen);
			return r;
		}
		if (store_secret_get(tx, key, priv, privlen) == 0) {
			store_abort(tx);
			seal_free_secret(gen, glen);
		} else {
			r = store_secret_put(tx, key, gen, glen);
			if (!r)
				r = store_event(tx, project, "project ssh key generated");
			if (r) {
				store_abort(tx);
				seal_free_secret(gen, glen);
				return r;
			}
			r = store_commit(tx);
			if (r) {
				seal_free_secret(gen, glen);
				return r;
			}
			*priv = gen;
			*privlen = glen;
		}
	} else if (r) {
		return r;
	}
	char comment[STORE_NAME_MAX + 16];
	fmt_cut(comment, sizeof(comment), "fleetfs-%s", project); /* fits: a project name */
	r = sshc_public_key(*priv, *privlen, comment, pub);
	if (r) {
		seal_free_secret(*priv, *privlen);
		*priv = NULL;
	}
	return r;
}

/* ---- commit ---- */

/* The record of one host's resolved endpoint (with its private key: sealed wherever it is
 * stored). It borrows h's strings: never host_rec_free it. */
static void host_rec_of(const struct ssh_host *h, struct host_rec *o, struct endpoint_rec *px)
{
	memset(o, 0, sizeof(*o));
	o->ep = (struct endpoint_rec){.hostname = (char *)h->ep.hostname,
				      .port = h->ep.port ? h->ep.port : 22,
				      .user = (char *)h->ep.user, .key = (char *)h->ep.key,
				      .key_path = (char *)h->ep.key_path};
	if (h->proxy) {
		*px = (struct endpoint_rec){.hostname = (char *)h->proxy->hostname,
					    .port = h->proxy->port ? h->proxy->port : 22,
					    .user = (char *)h->proxy->user,
					    .key = (char *)h->proxy->key,
					    .key_path = (char *)h->proxy->key_path};
		o->proxy = px;
	}
	o->internal_ip = (char *)h->internal_ip;
	o->blocks = h->blocks;
}

static char *hosts_json(const struct fleet_spec *f)
{
	struct host_rec *v = xcalloc(f->nhosts ? f->nhosts : 1, sizeof(*v));
	struct endpoint_rec *px = xcalloc(f->nhosts ? f->nhosts : 1, sizeof(*px));
	for (size_t i = 0; i < f->nhosts; i++)
		host_rec_of(&f->hosts[i], &v[i], &px[i]);
	char *s = host_recs_encode_text(v, f->nhosts);
	free(v);
	free(px);
	return s;
}

/* Each SSH row keeps its own sealed endpoint ("f/<p>/<fleet>/inst/<num>"), so the engine can
 * still reach a host that has left the spec, to remove the project key when terminating. */
static int put_row_endpoint(struct stx *tx, const char *p, const char *fleet, unsigned num,
			    const struct ssh_host *h)
{
	char key[3 * STORE_NAME_MAX + 16];
	struct host_rec o;
	struct endpoint_rec px;
	host_rec_of(h, &o, &px);
	char *js = host_rec_encode_text(&o);
	if (!js)
		return -ENOMEM;
	/* fits: two names < STORE_NAME_MAX and a number */
	fmt_cut(key, sizeof(key), "f/%s/%s/inst/%08u", p, fleet, num);
	int r = store_secret_put(tx, key, js, strlen(js));
	seal_free_secret(js, strlen(js));
	return r;
}

static bool ep_same(const struct endpoint_rec *a, const struct ssh_endpoint *b)
{
	if (!a || !b)
		return !a && !b;
	return !strcmp(a->hostname, b->hostname ? b->hostname : "") &&
	       a->port == (b->port ? b->port : 22) && !strcmp(a->user, b->user ? b->user : "") &&
	       !strcmp(a->key, b->key ? b->key : "");
}

static unsigned lowest_free(const struct instance_list *l)
{
	for (unsigned n = 0;; n++) {
		bool used = false;
		for (size_t i = 0; i < l->n; i++)
			used |= l->v[i].row.num == n;
		if (!used)
			return n;
	}
}

static void new_instance(struct instance_row *o, unsigned num, const char *host,
			 const struct ssh_host *h)
{
	double now = (double)time(NULL);
	memset(o, 0, sizeof(*o));
	instance_row_decode(NULL, o); /* every string "" */
	o->num = num;
	rec_set(&o->status, IST_PENDING);
	rec_set(&o->reason, h ? "waiting for the first connection"
			      : "waiting for the engine to choose an offer");
	if (host)
		rec_set(&o->host, host);
	if (h) {
		o->port = h->ep.port ? h->ep.port : 22;
		rec_set(&o->user, h->ep.user);
		if (h->proxy) {
			/* as long as it is: the row's proxy is used, not shown */
			char *px = xasprintf("%s@%s:%d", h->proxy->user ? h->proxy->user : "",
					     h->proxy->hostname, h->proxy->port ? h->proxy->port : 22);
			rec_set(&o->proxy, px);
			free(px);
		}
		if (h->internal_ip)
			rec_set(&o->internal_ip, h->internal_ip);
	}
	o->created = now;
	o->updated = now;
}

static void terminate_row(struct instance_row *v, const char *reason, const char *msg)
{
	rec_set(&v->status, IST_TERMINATING);
	rec_set(&v->termination_reason, reason);
	rec_set(&v->reason, msg);
	v->next_try = 0;
	v->updated = (double)time(NULL);
}

static bool row_active(const struct instance_row *v)
{
	return strcmp(v->status, IST_TERMINATING) && strcmp(v->status, IST_TERMINATED);
}

/* Is one of f's hosts already in another live fleet (anywhere in the store)? dstack's rule: a
 * host belongs to one fleet. */
static int host_taken(struct stx *tx, const char *p, const char *fleet,
		      const struct fleet_spec *f, char *err, size_t errlen, const char *fname)
{
	struct instance_list l;
	int r = instance_row_list(tx, "", &l);
	if (r)
		return r;
	char own[2 * STORE_NAME_MAX + 3];
	fmt_cut(own, sizeof(own), "%s/%s/", p, fleet); /* fits: two names < STORE_NAME_MAX */
	for (size_t j = 0; j < l.n; j++) {
		const char *k = l.v[j].key;
		const struct instance_row *v = &l.v[j].row;
		if (!strncmp(k, own, strlen(own)) || !row_active(v))
			continue;
		for (size_t i = 0; i < f->nhosts; i++) {
			if (strcmp(v->host, f->hosts[i].ep.hostname))
				continue;
			char other[2 * STORE_NAME_MAX + 2];
			fmt_cut(other, sizeof(other), "%s", k); /* shown in the message below */
			char *slash = strrchr(other, '/');
			if (slash)
				*slash = '\0';
			char host[STR_REDACT_LEN];
			str_redact(host, sizeof(host), f->hosts[i].ep.hostname);
			fmt_cut(err, errlen,
				"%s: ssh_config.hosts[%zu]: host %s is already in fleet %s", fname,
				i, host, other);
			instance_list_free(&l);
			return -EINVAL;
		}
	}
	instance_list_free(&l);
	return 0;
}

/* Bring the instance rows of fleet in line with spec f (inside tx). */
static int reconcile(struct stx *tx, const char *p, const char *fleet, const struct fleet_spec *f,
		     size_t *added, size_t *removed)
{
	struct instance_list arr;
	char key[3 * STORE_NAME_MAX];
	int r = instances_of(tx, p, fleet, &arr);
	if (r)
		return r;
	*added = *removed = 0;
	if (f->ssh) {
		/* rows whose host left the spec terminate */
		for (size_t j = 0; j < arr.n; j++) {
			struct instance_row *v = &arr.v[j].row;
			if (!row_active(v))
				continue;
			bool kept = false;
			for (size_t i = 0; i < f->nhosts && !kept; i++)
				kept = !strcmp(v->host, f->hosts[i].ep.hostname);
			if (kept)
				continue;
			terminate_row(v, "fleet_spec_mismatch", "the host was removed from the spec");
			r = instance_row_put(tx, arr.v[j].key, v, p);
			if (!r)
				r = fleets_event(tx, p, fleet, "instance=%u terminating: host %s removed "
							      "from the spec",
						v->num, v->host);
			if (r)
				goto out;
			(*removed)++;
		}
		/* new hosts get rows */
		for (size_t i = 0; i < f->nhosts; i++) {
			bool have = false;
			for (size_t j = 0; j < arr.n; j++) {
				const struct instance_row *v = &arr.v[j].row;
				have |= row_active(v) && !strcmp(v->host, f->hosts[i].ep.hostname);
			}
			if (have)
				continue;
			unsigned num = lowest_free(&arr);
			struct instance_row v;
			new_instance(&v, num, f->hosts[i].ep.hostname, &f->hosts[i]);
			inst_key(key, sizeof(key), p, fleet, num);
			r = instance_row_put(tx, key, &v, p);
			if (!r)
				r = put_row_endpoint(tx, p, fleet, num, &f->hosts[i]);
			instance_list_add(&arr, key, &v);
			if (!r)
				r = fleets_event(tx, p, fleet, "instance=%u pending: host %s added",
						num, f->hosts[i].ep.hostname);
			if (r)
				goto out;
			(*added)++;
		}
	} else {
		/* backend fleets: keep at least target (and min) live rows, at most max */
		long long want = f->nodes_target > f->nodes_min ? f->nodes_target : f->nodes_min;
		long long live = 0;
		for (size_t j = 0; j < arr.n; j++)
			live += row_active(&arr.v[j].row);
		for (; live < want && live < FLEETS_MAX_INSTANCES; live++) {
			unsigned num = lowest_free(&arr);
			struct instance_row v;
			new_instance(&v, num, NULL, NULL);
			inst_key(key, sizeof(key), p, fleet, num);
			r = instance_row_put(tx, key, &v, p);
			instance_list_add(&arr, key, &v);
			if (!r)
				r = fleets_event(tx, p, fleet, "instance=%u pending", num);
			if (r)
				goto out;
			(*added)++;
		}
		/* above nodes.max: pending instances go first, then the newest of the others */
		for (int pass = 0; pass < 2 && f->nodes_max != FS_UNLIMITED; pass++) {
			for (size_t i = arr.n; i-- > 0 && live > f->nodes_max;) {
				struct instance_row *v = &arr.v[i].row;
				bool pending = !strcmp(v->status, IST_PENDING);
				if (!row_active(v) || pending != (pass == 0))
					continue;
				terminate_row(v, "max_instances_limit", "above nodes.max");
				r = instance_row_put(tx, arr.v[i].key, v, p);
				if (r)
					goto out;
				live--;
				(*removed)++;
			}
		}
	}
out:
	instance_list_free(&arr);
	return r;
}

int fleets_refill(struct stx *tx, const char *project, const char *fleet, size_t *added)
{
	char key[2 * STORE_NAME_MAX + 2], err[256];
	struct fleet_spec *f = NULL;
	struct fleet_rec rec;
	char *text = NULL;
	size_t len = 0, removed = 0;
	*added = 0;
	fleet_key(key, sizeof(key), project, fleet);
	if (fleet_rec_get(tx, key, &rec))
		return 0;
	bool live = !rec.deleted;
	fleet_rec_free(&rec);
	int r = live ? fleets_spec_text(tx, project, fleet, &text, &len) : -ENOENT;
	if (!r)
		r = fleetspec_parse(text, len, fleet, fleet, NULL, &f, err, sizeof(err));
	seal_free_secret(text, len);
	if (r)
		return 0; /* no live spec: nothing to keep up */
	if (!f->ssh)
		r = reconcile(tx, project, fleet, f, added, &removed);
	fleetspec_free(f);
	return r;
}

void fleets_reject(struct store *s, const char *project, const char *fleet, const char *why)
{
	struct stx *tx = NULL;
	char key[2 * STORE_NAME_MAX + 2];
	struct fleet_rec o;
	if (store_begin(s, true, &tx))
		return;
	fleet_key(key, sizeof(key), project, fleet);
	if (fleet_rec_get(tx, key, &o) == 0) {
		rec_set(&o.rejected, why);
		o.rejected_at = (double)time(NULL);
		fleet_rec_put(tx, key, &o, project);
		fleet_rec_free(&o);
		fleets_event(tx, project, fleet, "%s.yml rejected: %s", fleet, why);
	} else {
		store_event(tx, project, "fleet=%s %s.yml rejected: %s", fleet, fleet, why);
	}
	if (store_commit(tx))
		return;
}

/* An SSH fleet's hosts that stay keep their port, user, key and proxy_jump. */
static int hosts_update_check(struct stx *tx, const char *project, const char *fleet,
			      const char *fname, const struct fleet_spec *f, char *err,
			      size_t errlen)
{
	char sk[2 * STORE_NAME_MAX + 16], *hj = NULL;
	size_t hl = 0, nold = 0;
	struct host_rec *old_hosts = NULL;
	int r = 0;
	/* fits: two names < STORE_NAME_MAX */
	fmt_cut(sk, sizeof(sk), "f/%s/%s/hosts", project, fleet);
	if (store_secret_get(tx, sk, &hj, &hl) == 0) {
		(void)host_recs_decode_text(hj, hl, &old_hosts, &nold);
		seal_free_secret(hj, hl);
	}
	for (size_t j = 0; j < nold && !r; j++) {
		const struct host_rec *oh = &old_hosts[j];
		for (size_t i = 0; i < f->nhosts && !r; i++) {
			if (strcmp(oh->ep.hostname, f->hosts[i].ep.hostname))
				continue;
			if (!ep_same(&oh->ep, &f->hosts[i].ep) ||
			    !ep_same(oh->proxy, f->hosts[i].proxy)) {
				fmt_cut(err, errlen,
					"%s: ssh_config.hosts[%zu]: host %s: its port, user, key or "
					"proxy_jump can't change in place; remove the host, then "
					"add it back",
					fname, i, f->hosts[i].ep.hostname);
				r = -EINVAL;
			}
		}
	}
	host_recs_free(old_hosts, nold);
	return r;
}

/* The in-place update rules of a live fleet (was_ssh: its kind) for the new spec f. 0, or
 * -EINVAL with the reason in err. */
static int update_check(struct stx *tx, const char *project, const char *fleet,
			const char *fname, bool was_ssh, const struct fleet_spec *f, char *err,
			size_t errlen)
{
	char *oldtext = NULL, e2[64];
	size_t oldlen = 0;
	struct fleet_spec *old = NULL;
	int r = 0;
	if (was_ssh != f->ssh) {
		fmt_cut(err, errlen,
			"%s: a fleet can't change between ssh_config and nodes in place; delete it "
			"first",
			fname);
		return -EINVAL;
	}
	if (was_ssh)
		return hosts_update_check(tx, project, fleet, fname, f, err, errlen);
	if (fleets_spec_text(tx, project, fleet, &oldtext, &oldlen) == 0 &&
	    fleetspec_parse(oldtext, oldlen, fname, fleet, NULL, &old, e2, sizeof(e2)) == 0) {
		r = fleetspec_update_check(old, f, err, errlen);
		if (r) {
			char tmp[1024];
			fmt_cut(tmp, sizeof(tmp), "%s: %s", fname, err);
			fmt_cut(err, errlen, "%s", tmp);
		}
	}
	seal_free_secret(oldtext, oldlen);
	fleetspec_free(old);
	return r;
}

int fleets_commit(struct store *s, const char *project, const char *fleet, const char *data,
		  size_t len, const struct timespec *mtime, const struct fileref_ctx *ctx, char *err,
		  size_t errlen)
{
	char fname[256], key[2 * STORE_NAME_MAX + 2], sk[2 * STORE_NAME_MAX + 16];
	struct fleet_spec *f = NULL;
	struct stx *tx = NULL;
	struct fleet_rec rec = {0};
	char *hosts = NULL;
	err[0] = '\0';
	/* fits: two names < STORE_NAME_MAX; shown in messages */
	fmt_cut(fname, sizeof(fname), "projects/%s/fleets/%s.yml", project, fleet);
	int r = fleetspec_parse(data, len, fname, fleet, ctx, &f, err, errlen);
	if (r)
		goto refused;
	r = store_begin(s, true, &tx);
	if (r)
		goto out;
	fleet_key(key, sizeof(key), project, fleet);
	bool exists = fleet_rec_get(tx, key, &rec) == 0;
	bool live = exists && !rec.deleted;
	if (exists && !live) {
		fmt_cut(err, errlen,
			"%s: fleet %s is still terminating; write it again once its "
			"instances are gone",
			fname, fleet);
		r = -EBUSY;
		goto refused_tx;
	}
	char digest[65];
	store_digest(s, data, len, digest);
	if (live && !strcmp(rec.digest, digest)) {
		/* the same bytes: not a change */
		rec.spec_mtime = mtime ? *mtime : time_now();
		r = fleet_rec_put(tx, key, &rec, project);
		goto commit;
	}
	if (live) {
		r = update_check(tx, project, fleet, fname, rec.ssh, f, err, errlen);
		if (r)
			goto refused_tx;
	}
	if (f->ssh) {
		r = host_taken(tx, project, fleet, f, err, errlen, fname);
		if (r)
			goto refused_tx;
	}
	rec.spec_size = len;
	rec.spec_mtime = mtime ? *mtime : time_now();
	rec.committed_at = (double)time(NULL);
	rec_set(&rec.rejected, "");
	rec_set(&rec.digest, digest);
	rec.deleted = false;
	rec.ssh = f->ssh;
	rec.hosts = (long long)f->nhosts;
	rec.nodes_min = f->nodes_min;
	rec.nodes_target = f->nodes_target;
	rec.nodes_max = f->nodes_max;
	r = fleet_rec_put(tx, key, &rec, project);
	/* fits: two names < STORE_NAME_MAX */
	fmt_cut(sk, sizeof(sk), "f/%s/%s/spec", project, fleet);
	if (!r)
		r = store_secret_put(tx, sk, data, len);
	if (!r && f->ssh) {
		hosts = hosts_json(f);
		fmt_cut(sk, sizeof(sk), "f/%s/%s/hosts", project, fleet); /* fits: as above */
		r = hosts ? store_secret_put(tx, sk, hosts, strlen(hosts)) : -ENOMEM;
	}
	size_t added = 0, removed = 0;
	if (!r)
		r = reconcile(tx, project, fleet, f, &added, &removed);
	if (!r)
		r = fleets_event(tx, project, fleet, "%s.yml %s (%s fleet, %zu bytes): %zu instances "
						    "added, %zu terminating",
				fleet, live ? "updated" : "created", f->ssh ? "ssh" : "cloud", len,
				added, removed);
commit:
	if (r)
		goto out;
	r = store_commit(tx);
	tx = NULL;
	if (r)
		fmt_cut(err, errlen, "store: commit failed: %s", strerror(-r));
	goto out;
refused_tx:
	store_abort(tx);
	tx = NULL;
refused:
	if (r != -ENOMEM)
		fleets_reject(s, project, fleet, err);
out:
	store_abort(tx);
	fleet_rec_free(&rec);
	if (hosts)
		seal_free_secret(hosts, strlen(hosts));
	fleetspec_free(f);
	return r == -EBUSY ? -EINVAL : r;
}

int fleets_unlink(struct store *s, const char *project, const char *fleet, char *err,
		  size_t errlen)
{
	struct stx *tx = NULL;
	char key[2 * STORE_NAME_MAX + 2];
	struct fleet_rec rec = {0};
	struct instance_list arr = {0};
	size_t n = 0;
	err[0] = '\0';
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	fleet_key(key, sizeof(key), project, fleet);
	if (fleet_rec_get(tx, key, &rec) || rec.deleted) {
		r = -ENOENT;
		goto out;
	}
	rec.deleted = true;
	rec.deleted_at = (double)time(NULL);
	r = fleet_rec_put(tx, key, &rec, project);
	if (!r)
		r = instances_of(tx, project, fleet, &arr);
	for (size_t j = 0; j < arr.n; j++) {
		struct instance_row *v = &arr.v[j].row;
		if (r || !row_active(v))
			continue;
		terminate_row(v, "terminated_by_user", "the fleet was deleted");
		r = instance_row_put(tx, arr.v[j].key, v, project);
		n++;
	}
	if (!r)
		r = fleets_event(tx, project, fleet, "deleted: %zu instances terminating", n);
	if (!r) {
		r = store_commit(tx);
		tx = NULL;
	}
out:
	store_abort(tx);
	fleet_rec_free(&rec);
	instance_list_free(&arr);
	if (r && !err[0])
		fmt_cut(err, errlen, "fleet %s: %s", fleet, strerror(-r));
	return r;
}

int fleets_set_mtime(struct store *s, const char *project, const char *fleet,
		     struct timespec mtime)
{
	struct stx *tx = NULL;
	char key[2 * STORE_NAME_MAX + 2];
	struct fleet_rec rec;
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	fleet_key(key, sizeof(key), project, fleet);
	r = fleet_rec_get(tx, key, &rec);
	if (!r) {
		rec.spec_mtime = mtime;
		r = fleet_rec_put(tx, key, &rec, project);
	}
	fleet_rec_free(&rec);
	if (r) {
		store_abort(tx);
		return r;
	}
	return store_commit(tx);
}
