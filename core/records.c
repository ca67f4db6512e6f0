/* records: see records.h. The one place that knows the JSON keys of fleet records and
 * instance rows.
 *
 * On-disk keys (never rename one without a migration; docs/internals/records.md):
 *
 *   fleet_rec (db fleets)            instance_row (db instances)
 *   spec_size        "size"          num                "num"
 *   spec_mtime       "mt_s" "mt_ns"  status             "status"
 *   committed_at     "cat"           reason             "reason"
 *   rejected         "err"           host               "host"
 *   rejected_at      "errat"         port               "port"
 *   digest           "dg"            user               "user"
 *   deleted          "deleted"       proxy              "proxy"
 *   deleted_at       "deleted_at"    internal_ip        "internal_ip"
 *   ssh              "kind" ssh|cloud hostkey           "hostkey"
 *   hosts            "hosts"         jumpkey            "jumpkey"
 *   nodes_min        "nodes_min"     created            "created"
 *   nodes_target     "nodes_target"  updated            "updated"
 *   nodes_max        "nodes_max"     started            "started"
 *                                    checked            "checked"
 *   host_res ("res")                 next_try           "next_try"
 *   cpus             "cpus"          attempts           "attempts"
 *   arch             "arch"          term_attempts      "term_attempts"
 *   memory_mib       "memory_mib"    unreachable        "unreachable"
 *   disk_mib         "disk_mib"      check_error        "check_error"
 *   gpus             "gpus"          last_error         "last_error"
 *     vendor, name, memory_mib       last_error_at      "last_error_at"
 *   addrs            "addrs"         termination_reason "termination_reason"
 *                                    res                "res"
 *   cloud_vm ("cloud")               log                "log" [{at, what}]
 *   backend          "backend"       cloud              "cloud"
 *   type             "type"          tried              "tried" [{offer, error, at}]
 *   offer            "offer"
 *   region           "region"        cloud_vm (cont.)
 *   zone             "zone"          backend_data       "backend_data"
 *   instance         "instance"      detail             "detail"
 *   price            "price"         created_at         "since"
 *   spot             "spot"          timeout_min        "timeout_min"
 *   name             "name"          term_asked         "term_asked"
 *   intent_at        "at"
 *   create_ended     "ended"
 *   id               "id"
 *
 * Encoding writes the fields that have always been written (fleet: every one but errat and
 * deleted_at; row: num, status, reason, created, updated, next_try, attempts, unreachable)
 * and the others only when not at their default, which decodes to the same thing.
 */
#include "records.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/util.h"

/* ---- the one accessor set ---- */

static const cJSON *get(const cJSON *o, const char *k)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

/* a string field: a copy, "" when missing or not a string */
static char *get_str(const cJSON *o, const char *k)
{
	const cJSON *x = get(o, k);
	return xstrdup(cJSON_IsString(x) && x->valuestring ? x->valuestring : "");
}

static double get_num(const cJSON *o, const char *k)
{
	const cJSON *x = get(o, k);
	return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

/* a count: negative, fractional parts, NaN and huge values clamp like the old casts should */
static unsigned long long get_count(const cJSON *o, const char *k, unsigned long long max)
{
	double d = get_num(o, k);
	if (!(d > 0))
		return 0;
	return d >= (double)max ? max : (unsigned long long)d;
}

static long long get_ll(const cJSON *o, const char *k)
{
	double d = get_num(o, k);
	if (isnan(d))
		return 0;
	if (d >= 9e18)
		return (long long)9e18;
	if (d <= -9e18)
		return (long long)-9e18;
	return (long long)d;
}

static bool get_true(const cJSON *o, const char *k)
{
	return cJSON_IsTrue(get(o, k));
}

static void put_str(cJSON *o, const char *k, const char *v)
{
	cJSON_AddStringToObject(o, k, v ? v : "");
}

static void put_str_opt(cJSON *o, const char *k, const char *v)
{
	if (v && *v)
		cJSON_AddStringToObject(o, k, v);
}

static void put_num(cJSON *o, const char *k, double v)
{
	cJSON_AddNumberToObject(o, k, v);
}

static void put_num_opt(cJSON *o, const char *k, double v)
{
	if (v != 0)
		cJSON_AddNumberToObject(o, k, v);
}

/* keys of o not in known (NULL-terminated), duplicated; NULL when none */
static cJSON *get_extra(const cJSON *o, const char *const *known)
{
	cJSON *extra = NULL;
	const cJSON *it;
	if (!cJSON_IsObject(o))
		return NULL;
	cJSON_ArrayForEach(it, o)
	{
		bool k = false;
		for (size_t i = 0; known[i] && !k; i++)
			k = it->string && !strcmp(it->string, known[i]);
		if (k || !it->string)
			continue;
		if (!extra)
			extra = cJSON_CreateObject();
		cJSON_AddItemToObject(extra, it->string, cJSON_Duplicate(it, true));
	}
	return extra;
}

static void put_extra(cJSON *o, const cJSON *extra)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, extra)
	if (it->string && !cJSON_GetObjectItemCaseSensitive(o, it->string))
		cJSON_AddItemToObject(o, it->string, cJSON_Duplicate(it, true));
}

void rec_set(char **dst, const char *v)
{
	char *n = xstrdup(v ? v : "");
	free(*dst);
	*dst = n;
}

/* ---- fleet records ---- */

static const char *const fleet_keys[] = {"size", "mt_s", "mt_ns", "cat", "err", "errat", "dg",
					 "deleted", "deleted_at", "kind", "hosts", "nodes_min",
					 "nodes_target", "nodes_max", NULL};

void fleet_rec_decode(const cJSON *o, struct fleet_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->spec_size = (size_t)get_count(o, "size", SIZE_MAX);
	r->spec_mtime.tv_sec = (time_t)get_ll(o, "mt_s");
	r->spec_mtime.tv_nsec = (long)get_ll(o, "mt_ns");
	r->committed_at = get_num(o, "cat");
	r->rejected = get_str(o, "err");
	r->rejected_at = get_num(o, "errat");
	r->digest = get_str(o, "dg");
	r->deleted = get_true(o, "deleted");
	r->deleted_at = get_num(o, "deleted_at");
	const cJSON *kind = get(o, "kind");
	r->ssh = cJSON_IsString(kind) && !strcmp(kind->valuestring, "ssh");
	r->hosts = get_ll(o, "hosts");
	r->nodes_min = get_ll(o, "nodes_min");
	r->nodes_target = get_ll(o, "nodes_target");
	r->nodes_max = get_ll(o, "nodes_max");
	r->extra = get_extra(o, fleet_keys);
}

cJSON *fleet_rec_encode(const struct fleet_rec *r)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	put_num(o, "size", (double)r->spec_size);
	put_num(o, "mt_s", (double)r->spec_mtime.tv_sec);
	put_num(o, "mt_ns", (double)r->spec_mtime.tv_nsec);
	put_num(o, "cat", r->committed_at);
	put_str(o, "err", r->rejected);
	put_num_opt(o, "errat", r->rejected_at);
	put_str(o, "dg", r->digest);
	cJSON_AddBoolToObject(o, "deleted", r->deleted);
	put_num_opt(o, "deleted_at", r->deleted_at);
	put_str(o, "kind", r->ssh ? "ssh" : "cloud");
	put_num(o, "hosts", (double)r->hosts);
	put_num(o, "nodes_min", (double)r->nodes_min);
	put_num(o, "nodes_target", (double)r->nodes_target);
	put_num(o, "nodes_max", (double)r->nodes_max);
	put_extra(o, r->extra);
	return o;
}

void fleet_rec_free(struct fleet_rec *r)
{
	free(r->rejected);
	free(r->digest);
	cJSON_Delete(r->extra);
	memset(r, 0, sizeof(*r));
}

/* ---- instance rows ---- */

static const char *const row_keys[] = {
	"num", "status", "reason", "host", "port", "user", "proxy", "internal_ip", "hostkey",
	"jumpkey", "created", "updated", "started", "checked", "next_try", "attempts",
	"term_attempts", "unreachable", "check_error", "last_error", "last_error_at",
	"termination_reason", "res", "log", "cloud", "tried", NULL};
static const char *const cloud_keys[] = {
	"backend", "type", "offer", "region", "zone", "instance", "price", "spot", "name", "at",
	"ended", "id", "backend_data", "detail", "since", "timeout_min", "term_asked", NULL};

static void cloud_free(struct cloud_vm *c)
{
	if (!c)
		return;
	free(c->backend);
	free(c->type);
	free(c->offer);
	free(c->region);
	free(c->zone);
	free(c->instance);
	free(c->name);
	free(c->id);
	free(c->backend_data);
	free(c->detail);
	cJSON_Delete(c->extra);
	free(c);
}

static struct cloud_vm *cloud_decode(const cJSON *o)
{
	struct cloud_vm *c = xcalloc(1, sizeof(*c));
	c->backend = get_str(o, "backend");
	c->type = get_str(o, "type");
	c->offer = get_str(o, "offer");
	c->region = get_str(o, "region");
	c->zone = get_str(o, "zone");
	c->instance = get_str(o, "instance");
	c->price = get_num(o, "price");
	c->spot = get_true(o, "spot");
	c->name = get_str(o, "name");
	c->intent_at = get_num(o, "at");
	c->create_ended = get_num(o, "ended");
	c->id = get_str(o, "id");
	c->backend_data = get_str(o, "backend_data");
	c->detail = get_str(o, "detail");
	c->created_at = get_num(o, "since");
	c->timeout_min = (int)get_count(o, "timeout_min", 1000000);
	c->term_asked = get_num(o, "term_asked");
	c->extra = get_extra(o, cloud_keys);
	return c;
}

static cJSON *cloud_encode(const struct cloud_vm *c)
{
	cJSON *o = cJSON_CreateObject();
	put_str_opt(o, "backend", c->backend);
	put_str_opt(o, "type", c->type);
	put_str(o, "offer", c->offer);
	put_str_opt(o, "region", c->region);
	put_str_opt(o, "zone", c->zone);
	put_str_opt(o, "instance", c->instance);
	put_num_opt(o, "price", c->price);
	if (c->spot)
		cJSON_AddBoolToObject(o, "spot", true);
	put_str_opt(o, "name", c->name);
	put_num_opt(o, "at", c->intent_at);
	put_num_opt(o, "ended", c->create_ended);
	put_str_opt(o, "id", c->id);
	put_str_opt(o, "backend_data", c->backend_data);
	put_str_opt(o, "detail", c->detail);
	put_num_opt(o, "since", c->created_at);
	put_num_opt(o, "timeout_min", c->timeout_min);
	put_num_opt(o, "term_asked", c->term_asked);
	put_extra(o, c->extra);
	return o;
}

void host_res_free(struct host_res *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->ngpus; i++) {
		free(res->gpus[i].vendor);
		free(res->gpus[i].name);
	}
	free(res->gpus);
	free(res->arch);
	free(res->addrs);
	free(res);
}

static struct host_res *res_decode(const cJSON *o)
{
	struct host_res *res = xcalloc(1, sizeof(*res));
	const cJSON *gpus = get(o, "gpus"), *g;
	res->cpus = (int)get_count(o, "cpus", 1u << 30);
	res->arch = get_str(o, "arch");
	res->memory_mib = get_count(o, "memory_mib", 1ULL << 60);
	res->disk_mib = get_count(o, "disk_mib", 1ULL << 60);
	res->addrs = get_str(o, "addrs");
	size_t n = cJSON_IsArray(gpus) ? (size_t)cJSON_GetArraySize(gpus) : 0;
	res->gpus = xcalloc(n ? n : 1, sizeof(*res->gpus));
	if (!cJSON_IsArray(gpus))
		gpus = NULL;
	cJSON_ArrayForEach(g, gpus)
	{
		struct gpu_rec *x = &res->gpus[res->ngpus++];
		x->vendor = get_str(g, "vendor");
		x->name = get_str(g, "name");
		x->memory_mib = get_count(g, "memory_mib", 1ULL << 60);
	}
	return res;
}

static cJSON *res_encode(const struct host_res *res)
{
	cJSON *o = cJSON_CreateObject();
	put_num(o, "cpus", res->cpus);
	put_str(o, "arch", res->arch);
	put_num(o, "memory_mib", (double)res->memory_mib);
	put_num(o, "disk_mib", (double)res->disk_mib);
	cJSON *gpus = cJSON_AddArrayToObject(o, "gpus");
	for (size_t i = 0; i < res->ngpus; i++) {
		cJSON *g = cJSON_CreateObject();
		put_str(g, "vendor", res->gpus[i].vendor);
		put_str(g, "name", res->gpus[i].name);
		put_num(g, "memory_mib", (double)res->gpus[i].memory_mib);
		cJSON_AddItemToArray(gpus, g);
	}
	put_str(o, "addrs", res->addrs);
	return o;
}

void instance_row_decode(const cJSON *o, struct instance_row *r)
{
	memset(r, 0, sizeof(*r));
	r->num = (unsigned)get_count(o, "num", 0xffffffffu);
	r->status = get_str(o, "status");
	r->reason = get_str(o, "reason");
	r->host = get_str(o, "host");
	r->port = (int)get_count(o, "port", 0x7fffffff);
	r->user = get_str(o, "user");
	r->proxy = get_str(o, "proxy");
	r->internal_ip = get_str(o, "internal_ip");
	r->hostkey = get_str(o, "hostkey");
	r->jumpkey = get_str(o, "jumpkey");
	r->created = get_num(o, "created");
	r->updated = get_num(o, "updated");
	r->started = get_num(o, "started");
	r->checked = get_num(o, "checked");
	r->next_try = get_num(o, "next_try");
	r->attempts = (unsigned)get_count(o, "attempts", 0xffffffffu);
	r->term_attempts = (unsigned)get_count(o, "term_attempts", 0xffffffffu);
	r->unreachable = get_true(o, "unreachable");
	r->check_error = get_str(o, "check_error");
	r->last_error = get_str(o, "last_error");
	r->last_error_at = get_num(o, "last_error_at");
	r->termination_reason = get_str(o, "termination_reason");
	const cJSON *x = get(o, "res"), *it;
	if (cJSON_IsObject(x))
		r->res = res_decode(x);
	x = get(o, "log");
	if (cJSON_IsArray(x)) {
		r->log = xcalloc((size_t)cJSON_GetArraySize(x) + 1, sizeof(*r->log));
		cJSON_ArrayForEach(it, x)
		{
			r->log[r->nlog].at = get_num(it, "at");
			r->log[r->nlog++].what = get_str(it, "what");
		}
	}
	x = get(o, "cloud");
	if (cJSON_IsObject(x))
		r->cloud = cloud_decode(x);
	x = get(o, "tried");
	if (cJSON_IsArray(x)) {
		r->tried = xcalloc((size_t)cJSON_GetArraySize(x) + 1, sizeof(*r->tried));
		cJSON_ArrayForEach(it, x)
		{
			struct tried_offer *t = &r->tried[r->ntried++];
			t->offer = get_str(it, "offer");
			t->error = get_str(it, "error");
			t->at = get_num(it, "at");
		}
	}
	r->extra = get_extra(o, row_keys);
}

cJSON *instance_row_encode(const struct instance_row *r)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	put_num(o, "num", r->num);
	put_str(o, "status", r->status);
	put_str(o, "reason", r->reason);
	put_str_opt(o, "host", r->host);
	put_num_opt(o, "port", r->port);
	put_str_opt(o, "user", r->user);
	put_str_opt(o, "proxy", r->proxy);
	put_str_opt(o, "internal_ip", r->internal_ip);
	put_str_opt(o, "hostkey", r->hostkey);
	put_str_opt(o, "jumpkey", r->jumpkey);
	put_num(o, "created", r->created);
	put_num(o, "updated", r->updated);
	put_num_opt(o, "started", r->started);
	put_num_opt(o, "checked", r->checked);
	put_num(o, "next_try", r->next_try);
	put_num(o, "attempts", r->attempts);
	put_num_opt(o, "term_attempts", r->term_attempts);
	cJSON_AddBoolToObject(o, "unreachable", r->unreachable);
	put_str_opt(o, "check_error", r->check_error);
	put_str_opt(o, "last_error", r->last_error);
	put_num_opt(o, "last_error_at", r->last_error_at);
	put_str_opt(o, "termination_reason", r->termination_reason);
	if (r->res)
		cJSON_AddItemToObject(o, "res", res_encode(r->res));
	if (r->nlog) {
		cJSON *log = cJSON_AddArrayToObject(o, "log");
		for (size_t i = 0; i < r->nlog; i++) {
			cJSON *e = cJSON_CreateObject();
			put_num(e, "at", r->log[i].at);
			put_str(e, "what", r->log[i].what);
			cJSON_AddItemToArray(log, e);
		}
	}
	if (r->cloud)
		cJSON_AddItemToObject(o, "cloud", cloud_encode(r->cloud));
	if (r->ntried) {
		cJSON *tried = cJSON_AddArrayToObject(o, "tried");
		for (size_t i = 0; i < r->ntried; i++) {
			cJSON *t = cJSON_CreateObject();
			put_str(t, "offer", r->tried[i].offer);
			put_str(t, "error", r->tried[i].error);
			put_num(t, "at", r->tried[i].at);
			cJSON_AddItemToArray(tried, t);
		}
	}
	put_extra(o, r->extra);
	return o;
}

void instance_row_drop_tried(struct instance_row *r)
{
	for (size_t i = 0; i < r->ntried; i++) {
		free(r->tried[i].offer);
		free(r->tried[i].error);
	}
	free(r->tried);
	r->tried = NULL;
	r->ntried = 0;
}

void instance_row_drop_cloud(struct instance_row *r)
{
	cloud_free(r->cloud);
	r->cloud = NULL;
}

struct cloud_vm *instance_row_new_cloud(struct instance_row *r)
{
	instance_row_drop_cloud(r);
	r->cloud = cloud_decode(NULL);
	return r->cloud;
}

void instance_row_free(struct instance_row *r)
{
	free(r->status);
	free(r->reason);
	free(r->host);
	free(r->user);
	free(r->proxy);
	free(r->internal_ip);
	free(r->hostkey);
	free(r->jumpkey);
	free(r->check_error);
	free(r->last_error);
	free(r->termination_reason);
	host_res_free(r->res);
	for (size_t i = 0; i < r->nlog; i++)
		free(r->log[i].what);
	free(r->log);
	instance_row_drop_cloud(r);
	instance_row_drop_tried(r);
	cJSON_Delete(r->extra);
	memset(r, 0, sizeof(*r));
}

void instance_row_set_res(struct instance_row *r, struct host_res *res)
{
	host_res_free(r->res);
	r->res = res;
}

void instance_row_log(struct instance_row *r, double at, const char *what, size_t max)
{
	r->log = xrealloc(r->log, (r->nlog + 1) * sizeof(*r->log));
	r->log[r->nlog].at = at;
	r->log[r->nlog++].what = xstrdup(what ? what : "");
	while (r->nlog > max) {
		free(r->log[0].what);
		memmove(r->log, r->log + 1, --r->nlog * sizeof(*r->log));
	}
}

void instance_row_try(struct instance_row *r, const char *offer, const char *error, double at,
		      size_t max)
{
	r->tried = xrealloc(r->tried, (r->ntried + 1) * sizeof(*r->tried));
	r->tried[r->ntried].offer = xstrdup(offer ? offer : "");
	r->tried[r->ntried].error = xstrdup(error ? error : "");
	r->tried[r->ntried++].at = at;
	while (r->ntried > max) {
		free(r->tried[0].offer);
		free(r->tried[0].error);
		memmove(r->tried, r->tried + 1, --r->ntried * sizeof(*r->tried));
	}
}

/* ---- the store ---- */

/* Store an encoded row (o, taken; NULL: the encoder ran out of memory). */
static int put_encoded(struct stx *tx, enum store_db db, const char *key, cJSON *o,
		       const char *project)
{
	if (!o)
		return -ENOMEM;
	int r = store_obj_put(tx, db, key, o, project);
	cJSON_Delete(o);
	return r;
}

int fleet_rec_get(struct stx *tx, const char *key, struct fleet_rec *out)
{
	cJSON *o = NULL;
	memset(out, 0, sizeof(*out));
	int r = store_obj_get(tx, SDB_FLEETS, key, &o);
	if (!r)
		fleet_rec_decode(o, out);
	cJSON_Delete(o);
	return r;
}

int fleet_rec_put(struct stx *tx, const char *key, const struct fleet_rec *rec,
		  const char *project)
{
	return put_encoded(tx, SDB_FLEETS, key, fleet_rec_encode(rec), project);
}

/* store_obj_list's [{key, value}] */
static const char *item_key(const cJSON *it)
{
	const cJSON *k = get(it, "key");
	return cJSON_IsString(k) ? k->valuestring : "";
}

int fleet_rec_list(struct stx *tx, const char *prefix, struct fleet_list *out)
{
	cJSON *arr = NULL, *it;
	memset(out, 0, sizeof(*out));
	int r = store_obj_list(tx, SDB_FLEETS, prefix, &arr);
	if (r)
		return r;
	out->v = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*out->v));
	cJSON_ArrayForEach(it, arr)
	{
		out->v[out->n].key = xstrdup(item_key(it));
		fleet_rec_decode(get(it, "value"), &out->v[out->n++].rec);
	}
	cJSON_Delete(arr);
	return 0;
}

void fleet_list_free(struct fleet_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		fleet_rec_free(&l->v[i].rec);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int instance_row_get(struct stx *tx, const char *key, struct instance_row *out)
{
	cJSON *o = NULL;
	memset(out, 0, sizeof(*out));
	int r = store_obj_get(tx, SDB_INSTANCES, key, &o);
	if (!r)
		instance_row_decode(o, out);
	cJSON_Delete(o);
	return r;
}

int instance_row_put(struct stx *tx, const char *key, const struct instance_row *row,
		     const char *project)
{
	return put_encoded(tx, SDB_INSTANCES, key, instance_row_encode(row), project);
}

int instance_row_list(struct stx *tx, const char *prefix, struct instance_list *out)
{
	cJSON *arr = NULL, *it;
	memset(out, 0, sizeof(*out));
	int r = store_obj_list(tx, SDB_INSTANCES, prefix, &arr);
	if (r)
		return r;
	out->v = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*out->v));
	cJSON_ArrayForEach(it, arr)
	{
		out->v[out->n].key = xstrdup(item_key(it));
		instance_row_decode(get(it, "value"), &out->v[out->n++].row);
	}
	cJSON_Delete(arr);
	return 0;
}

void instance_list_add(struct instance_list *l, const char *key, struct instance_row *row)
{
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n].key = xstrdup(key);
	l->v[l->n++].row = *row;
	memset(row, 0, sizeof(*row));
}

void instance_list_free(struct instance_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		instance_row_free(&l->v[i].row);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* ---- sealed SSH endpoints ---- */

static const char *const host_keys[] = {"hostname", "port", "user", "key", "key_path",
					"proxy", "internal_ip", "blocks", NULL};

static void wipe(char *s)
{
	if (s) {
		volatile char *v = s;
		while (*v)
			*v++ = '\0';
	}
	free(s);
}

static void endpoint_free(struct endpoint_rec *e)
{
	free(e->hostname);
	free(e->user);
	wipe(e->key);
	free(e->key_path);
	memset(e, 0, sizeof(*e));
}

static void endpoint_decode(const cJSON *o, struct endpoint_rec *e)
{
	e->hostname = get_str(o, "hostname");
	e->port = (int)get_count(o, "port", 0x7fffffff);
	e->user = get_str(o, "user");
	e->key = get_str(o, "key");
	e->key_path = get_str(o, "key_path");
}

static void endpoint_encode(cJSON *o, const struct endpoint_rec *e)
{
	put_str(o, "hostname", e->hostname);
	put_num(o, "port", e->port);
	put_str(o, "user", e->user);
	put_str(o, "key", e->key);
	put_str_opt(o, "key_path", e->key_path);
}

void host_rec_free(struct host_rec *h)
{
	endpoint_free(&h->ep);
	if (h->proxy)
		endpoint_free(h->proxy);
	free(h->proxy);
	free(h->internal_ip);
	cJSON_Delete(h->extra);
	memset(h, 0, sizeof(*h));
}

void host_recs_free(struct host_rec *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		host_rec_free(&v[i]);
	free(v);
}

static void host_decode(const cJSON *o, struct host_rec *h)
{
	memset(h, 0, sizeof(*h));
	endpoint_decode(o, &h->ep);
	const cJSON *px = get(o, "proxy");
	if (cJSON_IsObject(px)) {
		h->proxy = xcalloc(1, sizeof(*h->proxy));
		endpoint_decode(px, h->proxy);
	}
	h->internal_ip = get_str(o, "internal_ip");
	h->blocks = get_ll(o, "blocks");
	h->extra = get_extra(o, host_keys);
}

static cJSON *host_encode(const struct host_rec *h)
{
	cJSON *o = cJSON_CreateObject();
	endpoint_encode(o, &h->ep);
	if (h->proxy) {
		cJSON *px = cJSON_CreateObject();
		endpoint_encode(px, h->proxy);
		cJSON_AddItemToObject(o, "proxy", px);
	}
	put_str_opt(o, "internal_ip", h->internal_ip);
	put_num_opt(o, "blocks", (double)h->blocks);
	put_extra(o, h->extra);
	return o;
}

/* Wipe every string of a tree (it holds private keys). */
static void wipe_strings(cJSON *o)
{
	if (cJSON_IsString(o) && o->valuestring)
		for (volatile char *v = o->valuestring; *v; v++)
			*v = '\0';
	for (cJSON *c = o ? o->child : NULL; c; c = c->next)
		wipe_strings(c);
}

static void delete_wiped(cJSON *o)
{
	wipe_strings(o);
	cJSON_Delete(o);
}

/* cJSON's printed text of o, the tree wiped and freed */
static char *print_secret(cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;
	delete_wiped(o);
	return s;
}

int host_rec_decode_text(const char *js, size_t len, struct host_rec *out)
{
	memset(out, 0, sizeof(*out));
	cJSON *o = cJSON_ParseWithLength(js, len);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return -EIO;
	}
	host_decode(o, out);
	delete_wiped(o);
	return 0;
}

char *host_rec_encode_text(const struct host_rec *h)
{
	return print_secret(host_encode(h));
}

int host_recs_decode_text(const char *js, size_t len, struct host_rec **out, size_t *n)
{
	const cJSON *it;
	*out = NULL;
	*n = 0;
	cJSON *arr = cJSON_ParseWithLength(js, len);
	if (!cJSON_IsArray(arr)) {
		cJSON_Delete(arr);
		return -EIO;
	}
	*out = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(**out));
	cJSON_ArrayForEach(it, arr)
	host_decode(it, &(*out)[(*n)++]);
	delete_wiped(arr);
	return 0;
}

char *host_recs_encode_text(const struct host_rec *v, size_t n)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; arr && i < n; i++)
		cJSON_AddItemToArray(arr, host_encode(&v[i]));
	return print_secret(arr);
}

/* ---- offers metadata ---- */

static const char *const offers_keys[] = {
	"digest", "src", "data_at", "checked_at", "attempt_at", "version", "source", "count",
	"skipped", "error", "error_at", "cred", "cred_reason", "cred_at", NULL};

void offers_meta_decode(const cJSON *o, struct offers_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->digest = get_str(o, "digest");
	m->src = get_str(o, "src");
	m->data_at = get_num(o, "data_at");
	m->checked_at = get_num(o, "checked_at");
	m->attempt_at = get_num(o, "attempt_at");
	m->version = get_str(o, "version");
	m->source = get_str(o, "source");
	m->count = get_num(o, "count");
	m->skipped = get_num(o, "skipped");
	m->error = get_str(o, "error");
	m->error_at = get_num(o, "error_at");
	m->cred = get_str(o, "cred");
	m->cred_reason = get_str(o, "cred_reason");
	m->cred_at = get_num(o, "cred_at");
	m->extra = get_extra(o, offers_keys);
}

cJSON *offers_meta_encode(const struct offers_meta *m)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	put_str(o, "digest", m->digest);
	put_str_opt(o, "src", m->src);
	put_num(o, "data_at", m->data_at);
	put_num_opt(o, "checked_at", m->checked_at);
	put_num(o, "attempt_at", m->attempt_at);
	put_str_opt(o, "version", m->version);
	put_str_opt(o, "source", m->source);
	put_num(o, "count", m->count);
	put_num_opt(o, "skipped", m->skipped);
	put_str(o, "error", m->error);
	put_num(o, "error_at", m->error_at);
	put_str_opt(o, "cred", m->cred);
	put_str_opt(o, "cred_reason", m->cred_reason);
	put_num_opt(o, "cred_at", m->cred_at);
	put_extra(o, m->extra);
	return o;
}

void offers_meta_free(struct offers_meta *m)
{
	free(m->digest);
	free(m->src);
	free(m->version);
	free(m->source);
	free(m->error);
	free(m->cred);
	free(m->cred_reason);
	cJSON_Delete(m->extra);
	memset(m, 0, sizeof(*m));
}
