/* fleets: see fleets.h. */
#include "fleets.h"
#include "../lib/jsonx.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/ssh.h"
#include "fleetspec.h"
#include "state.h"

#define FLEETS_MAX_INSTANCES 4096

void fleets_history(cJSON *row, const char *what)
{
	cJSON *log = cJSON_GetObjectItemCaseSensitive(row, "log");
	if (!cJSON_IsArray(log)) {
		cJSON_DeleteItemFromObjectCaseSensitive(row, "log");
		log = cJSON_AddArrayToObject(row, "log");
	}
	cJSON *e = cJSON_CreateObject();
	cJSON_AddNumberToObject(e, "at", (double)time(NULL));
	cJSON_AddStringToObject(e, "what", what);
	cJSON_AddItemToArray(log, e);
	while (cJSON_GetArraySize(log) > FLEETS_HISTORY_MAX)
		cJSON_DeleteItemFromArray(log, 0);
}

static void fleet_key(char *dst, size_t n, const char *p, const char *f)
{
	fmt(dst, n, "%s/%s", p, f);
}

static void inst_key(char *dst, size_t n, const char *p, const char *f, unsigned num)
{
	fmt(dst, n, "%s/%s/%08u", p, f, num);
}

int fleets_event(struct stx *tx, const char *p, const char *f, const char *fmtstr, ...)
{
	char msg[1536], fj[2 * STORE_NAME_MAX + 2];
	va_list ap;
	va_start(ap, fmtstr);
	vfmt(msg, sizeof(msg), fmtstr, ap);
	va_end(ap);
	fmt(fj, sizeof(fj), "%s:%s", p, f);
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
	cJSON *o = NULL;
	fleet_key(key, sizeof(key), project, fleet);
	if (store_obj_get(tx, SDB_FLEETS, key, &o))
		return false;
	bool live = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "deleted"));
	if (size)
		*size = (size_t)jx_num(o, "size");
	if (mtime) {
		mtime->tv_sec = (time_t)jx_num(o, "mt_s");
		mtime->tv_nsec = (long)jx_num(o, "mt_ns");
	}
	cJSON_Delete(o);
	return live;
}

bool fleets_dir_exists(struct stx *tx, const char *project, const char *fleet)
{
	char key[2 * STORE_NAME_MAX + 2];
	cJSON *o = NULL;
	fleet_key(key, sizeof(key), project, fleet);
	if (store_obj_get(tx, SDB_FLEETS, key, &o))
		return false;
	cJSON_Delete(o);
	return true;
}

bool fleets_instance_exists(struct stx *tx, const char *project, const char *fleet,
			    unsigned num)
{
	char key[3 * STORE_NAME_MAX];
	cJSON *o = NULL;
	inst_key(key, sizeof(key), project, fleet, num);
	if (store_obj_get(tx, SDB_INSTANCES, key, &o))
		return false;
	cJSON_Delete(o);
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
	cJSON *arr = NULL, *it;
	fmt(prefix, sizeof(prefix), "%s/", project);
	*names = NULL;
	*n = 0;
	if (live)
		*live = NULL;
	int r = store_obj_list(tx, SDB_FLEETS, prefix, &arr);
	if (r)
		return r;
	size_t cnt = (size_t)cJSON_GetArraySize(arr), i = 0;
	*names = xcalloc(cnt ? cnt : 1, sizeof(char *));
	if (live)
		*live = xcalloc(cnt ? cnt : 1, sizeof(bool));
	cJSON_ArrayForEach(it, arr)
	{
		const char *k = jx_str(it, "key") + strlen(prefix);
		if (strchr(k, '/'))
			continue;
		(*names)[i] = xstrdup(k);
		if (live)
			(*live)[i] = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(it, "value"), "deleted"));
		i++;
	}
	*n = i;
	cJSON_Delete(arr);
	return 0;
}

static int instances_of(struct stx *tx, const char *p, const char *f, cJSON **arr)
{
	char prefix[2 * STORE_NAME_MAX + 3];
	fmt(prefix, sizeof(prefix), "%s/%s/", p, f);
	return store_obj_list(tx, SDB_INSTANCES, prefix, arr);
}

int fleets_instances(struct stx *tx, const char *project, const char *fleet, unsigned **nums,
		     size_t *n)
{
	cJSON *arr = NULL, *it;
	*nums = NULL;
	*n = 0;
	int r = instances_of(tx, project, fleet, &arr);
	if (r)
		return r;
	size_t cnt = (size_t)cJSON_GetArraySize(arr), i = 0;
	*nums = xcalloc(cnt ? cnt : 1, sizeof(unsigned));
	cJSON_ArrayForEach(it, arr)
	(*nums)[i++] = (unsigned)jx_num(cJSON_GetObjectItemCaseSensitive(it, "value"), "num");
	*n = i;
	cJSON_Delete(arr);
	return 0;
}

int fleets_spec_text(struct stx *tx, const char *project, const char *fleet, char **out,
		     size_t *len)
{
	char key[2 * STORE_NAME_MAX + 16];
	fmt(key, sizeof(key), "f/%s/%s/spec", project, fleet);
	return store_secret_get(tx, key, out, len);
}

/* ---- the project key ---- */

int fleets_project_key(struct store *s, const char *project, bool create, char **priv,
		       size_t *privlen, char **pub)
{
	char key[STORE_NAME_MAX + 16];
	struct stx *tx = NULL;
	fmt(key, sizeof(key), "p/%s/sshkey", project);
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
	fmt(comment, sizeof(comment), "fleetfs-%s", project);
	r = sshc_public_key(*priv, *privlen, comment, pub);
	if (r) {
		seal_free_secret(*priv, *privlen);
		*priv = NULL;
	}
	return r;
}

/* ---- commit ---- */

static cJSON *endpoint_json(const struct ssh_endpoint *ep)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "hostname", ep->hostname ? ep->hostname : "");
	cJSON_AddNumberToObject(o, "port", ep->port ? ep->port : 22);
	cJSON_AddStringToObject(o, "user", ep->user ? ep->user : "");
	cJSON_AddStringToObject(o, "key", ep->key ? ep->key : "");
	cJSON_AddStringToObject(o, "key_path", ep->key_path ? ep->key_path : "");
	return o;
}

/* One host's resolved endpoint (with its private key: sealed wherever it is stored). */
static cJSON *host_json(const struct ssh_host *h)
{
	cJSON *o = endpoint_json(&h->ep);
	if (h->proxy)
		cJSON_AddItemToObject(o, "proxy", endpoint_json(h->proxy));
	if (h->internal_ip)
		cJSON_AddStringToObject(o, "internal_ip", h->internal_ip);
	cJSON_AddNumberToObject(o, "blocks", h->blocks);
	return o;
}

static char *hosts_json(const struct fleet_spec *f)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < f->nhosts; i++)
		cJSON_AddItemToArray(arr, host_json(&f->hosts[i]));
	char *s = cJSON_PrintUnformatted(arr);
	cJSON_Delete(arr);
	return s;
}

/* Each SSH row keeps its own sealed endpoint ("f/<p>/<fleet>/inst/<num>"), so the engine can
 * still reach a host that has left the spec, to remove the project key when terminating. */
static int put_row_endpoint(struct stx *tx, const char *p, const char *fleet, unsigned num,
			    const struct ssh_host *h)
{
	char key[3 * STORE_NAME_MAX + 16];
	cJSON *o = host_json(h);
	char *js = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!js)
		return -ENOMEM;
	fmt(key, sizeof(key), "f/%s/%s/inst/%08u", p, fleet, num);
	int r = store_secret_put(tx, key, js, strlen(js));
	seal_free_secret(js, strlen(js));
	return r;
}

static bool ep_same(const cJSON *a, const struct ssh_endpoint *b)
{
	if (!a || !b)
		return !a && !b;
	return !strcmp(jx_str(a, "hostname"), b->hostname ? b->hostname : "") &&
	       (int)jx_num(a, "port") == (b->port ? b->port : 22) &&
	       !strcmp(jx_str(a, "user"), b->user ? b->user : "") &&
	       !strcmp(jx_str(a, "key"), b->key ? b->key : "");
}

static unsigned lowest_free(const cJSON *arr)
{
	for (unsigned n = 0;; n++) {
		bool used = false;
		const cJSON *it;
		cJSON_ArrayForEach(it, arr)
		used |= (unsigned)jx_num(cJSON_GetObjectItemCaseSensitive(it, "value"), "num") == n;
		if (!used)
			return n;
	}
}

static cJSON *new_instance(unsigned num, const char *host, const struct ssh_host *h)
{
	cJSON *o = cJSON_CreateObject();
	double now = (double)time(NULL);
	cJSON_AddNumberToObject(o, "num", num);
	cJSON_AddStringToObject(o, "status", IST_PENDING);
	cJSON_AddStringToObject(o, "reason",
				h ? "waiting for the first connection"
				  : "waiting for the engine to choose an offer");
	if (host)
		cJSON_AddStringToObject(o, "host", host);
	if (h) {
		cJSON_AddNumberToObject(o, "port", h->ep.port ? h->ep.port : 22);
		cJSON_AddStringToObject(o, "user", h->ep.user ? h->ep.user : "");
		if (h->proxy) {
			char px[512];
			fmt(px, sizeof(px), "%s@%s:%d", h->proxy->user ? h->proxy->user : "",
			    h->proxy->hostname, h->proxy->port ? h->proxy->port : 22);
			cJSON_AddStringToObject(o, "proxy", px);
		}
		if (h->internal_ip)
			cJSON_AddStringToObject(o, "internal_ip", h->internal_ip);
	}
	cJSON_AddNumberToObject(o, "created", now);
	cJSON_AddNumberToObject(o, "updated", now);
	cJSON_AddNumberToObject(o, "next_try", 0);
	cJSON_AddNumberToObject(o, "attempts", 0);
	cJSON_AddBoolToObject(o, "unreachable", false);
	return o;
}

static void terminate_row(cJSON *v, const char *reason, const char *msg)
{
	jx_set_str(v, "status", IST_TERMINATING);
	jx_set_str(v, "termination_reason", reason);
	jx_set_str(v, "reason", msg);
	jx_set_num(v, "next_try", 0);
	jx_set_num(v, "updated", (double)time(NULL));
}

static bool row_active(const cJSON *v)
{
	const char *st = jx_str(v, "status");
	return strcmp(st, IST_TERMINATING) && strcmp(st, IST_TERMINATED);
}

/* Is one of f's hosts already in another live fleet (anywhere in the store)? dstack's rule: a
 * host belongs to one fleet. */
static int host_taken(struct stx *tx, const char *p, const char *fleet,
		      const struct fleet_spec *f, char *err, size_t errlen, const char *fname)
{
	cJSON *arr = NULL, *it;
	int r = store_obj_list(tx, SDB_INSTANCES, "", &arr);
	if (r)
		return r;
	char own[2 * STORE_NAME_MAX + 3];
	fmt(own, sizeof(own), "%s/%s/", p, fleet);
	cJSON_ArrayForEach(it, arr)
	{
		const char *k = jx_str(it, "key");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
		if (!strncmp(k, own, strlen(own)) || !row_active(v))
			continue;
		for (size_t i = 0; i < f->nhosts; i++) {
			if (strcmp(jx_str(v, "host"), f->hosts[i].ep.hostname))
				continue;
			char other[2 * STORE_NAME_MAX + 2];
			fmt(other, sizeof(other), "%s", k);
			char *slash = strrchr(other, '/');
			if (slash)
				*slash = '\0';
			char host[STR_REDACT_LEN];
			str_redact(host, sizeof(host), f->hosts[i].ep.hostname);
			fmt(err, errlen, "%s: ssh_config.hosts[%zu]: host %s is already in fleet %s",
			    fname, i, host, other);
			cJSON_Delete(arr);
			return -EINVAL;
		}
	}
	cJSON_Delete(arr);
	return 0;
}

/* Bring the instance rows of fleet in line with spec f (inside tx). */
static int reconcile(struct stx *tx, const char *p, const char *fleet, const struct fleet_spec *f,
		     const cJSON *old_hosts, size_t *added, size_t *removed)
{
	cJSON *arr = NULL, *it;
	char key[3 * STORE_NAME_MAX];
	int r = instances_of(tx, p, fleet, &arr);
	if (r)
		return r;
	*added = *removed = 0;
	if (f->ssh) {
		/* rows whose host left the spec terminate */
		cJSON_ArrayForEach(it, arr)
		{
			cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
			if (!row_active(v))
				continue;
			bool kept = false;
			for (size_t i = 0; i < f->nhosts && !kept; i++)
				kept = !strcmp(jx_str(v, "host"), f->hosts[i].ep.hostname);
			if (kept)
				continue;
			terminate_row(v, "fleet_spec_mismatch", "the host was removed from the spec");
			r = store_obj_put(tx, SDB_INSTANCES, jx_str(it, "key"), v, p);
			if (!r)
				r = fleets_event(tx, p, fleet, "instance=%u terminating: host %s removed "
							      "from the spec",
						(unsigned)jx_num(v, "num"), jx_str(v, "host"));
			if (r)
				goto out;
			(*removed)++;
		}
		/* new hosts get rows */
		for (size_t i = 0; i < f->nhosts; i++) {
			bool have = false;
			cJSON_ArrayForEach(it, arr)
			{
				cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
				have |= row_active(v) && !strcmp(jx_str(v, "host"), f->hosts[i].ep.hostname);
			}
			if (have)
				continue;
			unsigned num = lowest_free(arr);
			cJSON *v = new_instance(num, f->hosts[i].ep.hostname, &f->hosts[i]);
			inst_key(key, sizeof(key), p, fleet, num);
			r = store_obj_put(tx, SDB_INSTANCES, key, v, p);
			if (!r)
				r = put_row_endpoint(tx, p, fleet, num, &f->hosts[i]);
			cJSON *item = cJSON_CreateObject();
			cJSON_AddStringToObject(item, "key", key);
			cJSON_AddItemToObject(item, "value", v);
			cJSON_AddItemToArray(arr, item);
			if (!r)
				r = fleets_event(tx, p, fleet, "instance=%u pending: host %s added",
						num, f->hosts[i].ep.hostname);
			if (r)
				goto out;
			(*added)++;
		}
		(void)old_hosts;
	} else {
		/* backend fleets: keep at least target (and min) live rows, at most max */
		long long want = f->nodes_target > f->nodes_min ? f->nodes_target : f->nodes_min;
		long long live = 0;
		cJSON_ArrayForEach(it, arr)
		live += row_active(cJSON_GetObjectItemCaseSensitive(it, "value"));
		for (; live < want && live < FLEETS_MAX_INSTANCES; live++) {
			unsigned num = lowest_free(arr);
			cJSON *v = new_instance(num, NULL, NULL);
			inst_key(key, sizeof(key), p, fleet, num);
			r = store_obj_put(tx, SDB_INSTANCES, key, v, p);
			cJSON *item = cJSON_CreateObject();
			cJSON_AddStringToObject(item, "key", key);
			cJSON_AddItemToObject(item, "value", v);
			cJSON_AddItemToArray(arr, item);
			if (!r)
				r = fleets_event(tx, p, fleet, "instance=%u pending", num);
			if (r)
				goto out;
			(*added)++;
		}
		/* above nodes.max: pending instances go first, then the newest of the others */
		for (int pass = 0; pass < 2 && f->nodes_max != FS_UNLIMITED; pass++) {
			for (int i = cJSON_GetArraySize(arr) - 1; i >= 0 && live > f->nodes_max; i--) {
				it = cJSON_GetArrayItem(arr, i);
				cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
				bool pending = !strcmp(jx_str(v, "status"), IST_PENDING);
				if (!row_active(v) || pending != (pass == 0))
					continue;
				terminate_row(v, "max_instances_limit", "above nodes.max");
				r = store_obj_put(tx, SDB_INSTANCES, jx_str(it, "key"), v, p);
				if (r)
					goto out;
				live--;
				(*removed)++;
			}
		}
	}
out:
	cJSON_Delete(arr);
	return r;
}

int fleets_refill(struct stx *tx, const char *project, const char *fleet, size_t *added)
{
	char key[2 * STORE_NAME_MAX + 2], err[256];
	struct fleet_spec *f = NULL;
	cJSON *rec = NULL;
	char *text = NULL;
	size_t len = 0, removed = 0;
	*added = 0;
	fleet_key(key, sizeof(key), project, fleet);
	if (store_obj_get(tx, SDB_FLEETS, key, &rec))
		return 0;
	bool live = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "deleted"));
	cJSON_Delete(rec);
	int r = live ? fleets_spec_text(tx, project, fleet, &text, &len) : -ENOENT;
	if (!r)
		r = fleetspec_parse(text, len, fleet, fleet, NULL, &f, err, sizeof(err));
	seal_free_secret(text, len);
	if (r)
		return 0; /* no live spec: nothing to keep up */
	if (!f->ssh)
		r = reconcile(tx, project, fleet, f, NULL, added, &removed);
	fleetspec_free(f);
	return r;
}

void fleets_reject(struct store *s, const char *project, const char *fleet, const char *why)
{
	struct stx *tx = NULL;
	char key[2 * STORE_NAME_MAX + 2];
	cJSON *o = NULL;
	if (store_begin(s, true, &tx))
		return;
	fleet_key(key, sizeof(key), project, fleet);
	if (store_obj_get(tx, SDB_FLEETS, key, &o) == 0) {
		jx_set_str(o, "err", why);
		jx_set_num(o, "errat", (double)time(NULL));
		store_obj_put(tx, SDB_FLEETS, key, o, project);
		cJSON_Delete(o);
		fleets_event(tx, project, fleet, "%s.yml rejected: %s", fleet, why);
	} else {
		store_event(tx, project, "fleet=%s %s.yml rejected: %s", fleet, fleet, why);
	}
	if (store_commit(tx))
		return;
}

int fleets_commit(struct store *s, const char *project, const char *fleet, const char *data,
		  size_t len, const struct timespec *mtime, const struct fileref_ctx *ctx, char *err,
		  size_t errlen)
{
	char fname[256], key[2 * STORE_NAME_MAX + 2], sk[2 * STORE_NAME_MAX + 16];
	struct fleet_spec *f = NULL, *old = NULL;
	struct stx *tx = NULL;
	cJSON *rec = NULL, *old_hosts = NULL;
	char *hosts = NULL, *oldtext = NULL;
	size_t oldlen = 0;
	err[0] = '\0';
	fmt(fname, sizeof(fname), "projects/%s/fleets/%s.yml", project, fleet);
	int r = fleetspec_parse(data, len, fname, fleet, ctx, &f, err, errlen);
	if (r)
		goto refused;
	r = store_begin(s, true, &tx);
	if (r)
		goto out;
	fleet_key(key, sizeof(key), project, fleet);
	bool exists = store_obj_get(tx, SDB_FLEETS, key, &rec) == 0;
	bool live = exists && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "deleted"));
	if (exists && !live) {
		fmt(err, errlen, "%s: fleet %s is still terminating; write it again once its "
				 "instances are gone",
		    fname, fleet);
		r = -EBUSY;
		goto refused_tx;
	}
	char digest[65];
	store_digest(s, data, len, digest);
	if (live && !strcmp(jx_str(rec, "dg"), digest)) {
		/* the same bytes: not a change */
		struct timespec mt = mtime ? *mtime : time_now();
		jx_set_num(rec, "mt_s", (double)mt.tv_sec);
		jx_set_num(rec, "mt_ns", (double)mt.tv_nsec);
		r = store_obj_put(tx, SDB_FLEETS, key, rec, project);
		goto commit;
	}
	if (live) {
		/* in-place update rules */
		bool was_ssh = !strcmp(jx_str(rec, "kind"), "ssh");
		if (was_ssh != f->ssh) {
			fmt(err, errlen, "%s: a fleet can't change between ssh_config and nodes in "
					 "place; delete it first",
			    fname);
			r = -EINVAL;
			goto refused_tx;
		}
		if (was_ssh) {
			char *hj = NULL;
			size_t hl = 0;
			fmt(sk, sizeof(sk), "f/%s/%s/hosts", project, fleet);
			if (store_secret_get(tx, sk, &hj, &hl) == 0) {
				old_hosts = cJSON_ParseWithLength(hj, hl);
				seal_free_secret(hj, hl);
			}
			const cJSON *oh;
			cJSON_ArrayForEach(oh, old_hosts)
			{
				for (size_t i = 0; i < f->nhosts; i++) {
					if (strcmp(jx_str(oh, "hostname"), f->hosts[i].ep.hostname))
						continue;
					const cJSON *op = cJSON_GetObjectItemCaseSensitive(oh, "proxy");
					if (!ep_same(oh, &f->hosts[i].ep) ||
					    !ep_same(cJSON_IsObject(op) ? op : NULL, f->hosts[i].proxy)) {
						fmt(err, errlen,
						    "%s: ssh_config.hosts[%zu]: host %s: its port, user, "
						    "key or proxy_jump can't change in place; remove the "
						    "host, then add it back",
						    fname, i, f->hosts[i].ep.hostname);
						r = -EINVAL;
						goto refused_tx;
					}
				}
			}
		} else if (fleets_spec_text(tx, project, fleet, &oldtext, &oldlen) == 0) {
			char e2[64];
			if (fleetspec_parse(oldtext, oldlen, fname, fleet, NULL, &old, e2,
					    sizeof(e2)) == 0) {
				r = fleetspec_update_check(old, f, err, errlen);
				if (r) {
					char tmp[1024];
					fmt(tmp, sizeof(tmp), "%s: %s", fname, err);
					fmt(err, errlen, "%s", tmp);
					goto refused_tx;
				}
			}
		}
	}
	if (f->ssh) {
		r = host_taken(tx, project, fleet, f, err, errlen, fname);
		if (r)
			goto refused_tx;
	}
	if (!rec)
		rec = cJSON_CreateObject();
	struct timespec mt = mtime ? *mtime : time_now();
	jx_set_num(rec, "size", (double)len);
	jx_set_num(rec, "mt_s", (double)mt.tv_sec);
	jx_set_num(rec, "mt_ns", (double)mt.tv_nsec);
	jx_set_num(rec, "cat", (double)time(NULL));
	jx_set_str(rec, "err", "");
	jx_set_str(rec, "dg", digest);
	jx_set_bool(rec, "deleted", false);
	jx_set_str(rec, "kind", f->ssh ? "ssh" : "cloud");
	jx_set_num(rec, "hosts", (double)f->nhosts);
	jx_set_num(rec, "nodes_min", (double)f->nodes_min);
	jx_set_num(rec, "nodes_target", (double)f->nodes_target);
	jx_set_num(rec, "nodes_max", (double)f->nodes_max);
	r = store_obj_put(tx, SDB_FLEETS, key, rec, project);
	fmt(sk, sizeof(sk), "f/%s/%s/spec", project, fleet);
	if (!r)
		r = store_secret_put(tx, sk, data, len);
	if (!r && f->ssh) {
		hosts = hosts_json(f);
		fmt(sk, sizeof(sk), "f/%s/%s/hosts", project, fleet);
		r = hosts ? store_secret_put(tx, sk, hosts, strlen(hosts)) : -ENOMEM;
	}
	size_t added = 0, removed = 0;
	if (!r)
		r = reconcile(tx, project, fleet, f, old_hosts, &added, &removed);
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
		fmt(err, errlen, "store: commit failed: %s", strerror(-r));
	goto out;
refused_tx:
	store_abort(tx);
	tx = NULL;
refused:
	if (r != -ENOMEM)
		fleets_reject(s, project, fleet, err);
out:
	store_abort(tx);
	cJSON_Delete(rec);
	cJSON_Delete(old_hosts);
	if (hosts)
		seal_free_secret(hosts, strlen(hosts));
	seal_free_secret(oldtext, oldlen);
	fleetspec_free(f);
	fleetspec_free(old);
	return r == -EBUSY ? -EINVAL : r;
}

int fleets_unlink(struct store *s, const char *project, const char *fleet, char *err,
		  size_t errlen)
{
	struct stx *tx = NULL;
	char key[2 * STORE_NAME_MAX + 2];
	cJSON *rec = NULL, *arr = NULL, *it;
	size_t n = 0;
	err[0] = '\0';
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	fleet_key(key, sizeof(key), project, fleet);
	if (store_obj_get(tx, SDB_FLEETS, key, &rec) ||
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "deleted"))) {
		r = -ENOENT;
		goto out;
	}
	jx_set_bool(rec, "deleted", true);
	jx_set_num(rec, "deleted_at", (double)time(NULL));
	r = store_obj_put(tx, SDB_FLEETS, key, rec, project);
	if (!r)
		r = instances_of(tx, project, fleet, &arr);
	cJSON_ArrayForEach(it, arr)
	{
		cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
		if (r || !row_active(v))
			continue;
		terminate_row(v, "terminated_by_user", "the fleet was deleted");
		r = store_obj_put(tx, SDB_INSTANCES, jx_str(it, "key"), v, project);
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
	cJSON_Delete(rec);
	cJSON_Delete(arr);
	if (r && !err[0])
		fmt(err, errlen, "fleet %s: %s", fleet, strerror(-r));
	return r;
}

int fleets_set_mtime(struct store *s, const char *project, const char *fleet,
		     struct timespec mtime)
{
	struct stx *tx = NULL;
	char key[2 * STORE_NAME_MAX + 2];
	cJSON *rec = NULL;
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	fleet_key(key, sizeof(key), project, fleet);
	r = store_obj_get(tx, SDB_FLEETS, key, &rec);
	if (!r) {
		jx_set_num(rec, "mt_s", (double)mtime.tv_sec);
		jx_set_num(rec, "mt_ns", (double)mtime.tv_nsec);
		r = store_obj_put(tx, SDB_FLEETS, key, rec, project);
	}
	cJSON_Delete(rec);
	if (r) {
		store_abort(tx);
		return r;
	}
	return store_commit(tx);
}
