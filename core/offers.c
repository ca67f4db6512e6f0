/* offers: requirement queries, dstack's offer matching and the renderings of offers (the
 * offers themselves, their lists and CSV form are model/offer.c).
 *
 * Matching mirrors gpuhunt's
 * constraints.matches() on the QueryFilter dstack builds from the requirements (§1.9), plus
 * the server-side backend/region/instance-type filters (§3.2). Sizes are kept in MiB in the
 * offer and compared in GB (MiB / 1024) against the ranges, which is how dstack converts.
 */
#include "offers.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../backends/registry.h"

#define OFFERS_MAX_QUERY 1024
/* The name a rendering shows: the holder's unique name, else the computed one. */
static void offer_label(const struct offer *o, char *out, size_t outlen)
{
	if (o->name)
		fmt_cut(out, outlen, "%s", o->name); /* a label: shown */
	else
		offer_name(o, out, outlen);
}


/* Lower bound of want within the type's disk range in GB, or < 0 when they do not meet. */
static double disk_choose(const char *type, const struct rrange *want)
{
	const struct backend_type *t = backend_type_find(type);
	struct disk_range none = {0, 0};
	return disk_range_pick(t ? &t->disk : &none, want && want->set ? want->min : -1,
			       want && want->set ? want->max : -1);
}

/* ---------------------------------------------------------------- queries */

struct strlist {
	char **v;
	size_t n;
};

struct offer_query {
	bool has_gpu;
	struct gpu_spec gpu;
	struct rrange cpu;
	char cpu_arch[8];
	struct rrange memory, disk;
	int spot; /* -1 any, 0 on-demand, 1 spot */
	double max_price; /* < 0: none */
	int min_cc;	  /* major*100+minor; < 0: none */
	struct strlist backends, regions, instance_types;
};

static void strlist_free(struct strlist *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

void offers_query_free(struct offer_query *q)
{
	if (!q)
		return;
	gpu_spec_free(&q->gpu);
	strlist_free(&q->backends);
	strlist_free(&q->regions);
	strlist_free(&q->instance_types);
	free(q);
}

static int strlist_parse(const char *key, const char *v, struct strlist *out, char *err,
			 size_t errlen)
{
	const char *p = v;
	for (;;) {
		size_t n = strcspn(p, "+,");
		if (!n) {
			strlist_free(out);
			return fmt_cut(err, errlen, "%s: empty list item", key), -EINVAL;
		}
		out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
		out->v[out->n++] = xstrndup(p, n);
		if (!p[n])
			return 0;
		p += n + 1;
	}
}

static int parse_cpu(const char *v, struct offer_query *q, char *err, size_t errlen)
{
	char b[OFFERS_MAX_QUERY];
	bool have_c = false, have_a = false;
	if (fmt(b, sizeof(b), "%s", v))
		return fmt_cut(err, errlen, "cpu: value too long"), -EINVAL;
	for (char *tok = b;;) {
		char *colon = strchr(tok, ':');
		if (colon)
			*colon = '\0';
		bool digits = *tok && strspn(tok, "0123456789") == strlen(tok);
		if (digits || strstr(tok, "..")) {
			if (have_c)
				return fmt_cut(err, errlen, "cpu: CPU spec count conflict"),
				       -EINVAL;
			char e[128];
			if (fleetspec_parse_range(tok, false, &q->cpu, e, sizeof(e)))
				return fmt_cut(err, errlen, "cpu: %s", e), -EINVAL;
			have_c = true;
		} else if (!strcasecmp(tok, "x86") || !strcasecmp(tok, "arm")) {
			if (have_a)
				return fmt_cut(err, errlen, "cpu: CPU spec arch conflict"), -EINVAL;
			fmt_cut(q->cpu_arch, sizeof(q->cpu_arch), "%s", /* fits: x86 or arm */
				!strcasecmp(tok, "x86") ? "x86" : "arm");
			have_a = true;
		} else {
			return fmt_cut(err, errlen, "cpu: invalid CPU architecture"), -EINVAL;
		}
		if (!colon)
			return 0;
		tok = colon + 1;
	}
}

/* "8.0", "8", "10.3" -> major*100+minor. */
static int parse_cc(const char *s, int *out)
{
	long long maj, min = 0;
	char b[32];
	if (fmt(b, sizeof(b), "%s", s))
		return -EINVAL;
	char *dot = strchr(b, '.');
	if (dot)
		*dot = '\0';
	if (num_parse_ll(b, 0, 99, &maj) || (dot && num_parse_ll(dot + 1, 0, 99, &min)))
		return -EINVAL;
	*out = (int)(maj * 100 + min);
	return 0;
}

static int query_kv(struct offer_query *q, const char *key, const char *v, char *err,
		    size_t errlen)
{
	char e[160];
	if (!*v)
		return fmt_cut(err, errlen, "%s: empty value", key), -EINVAL;
	if (!strcmp(key, "gpu")) {
		char b[OFFERS_MAX_QUERY];
		if (fmt(b, sizeof(b), "%s", v))
			return fmt_cut(err, errlen, "gpu: value too long"), -EINVAL;
		for (char *p = b; *p; p++)
			if (*p == '+')
				*p = ',';
		if (fleetspec_parse_gpu(b, &q->gpu, e, sizeof(e)))
			return fmt_cut(err, errlen, "gpu: %s", e), -EINVAL;
		q->has_gpu = true;
		return 0;
	}
	if (!strcmp(key, "cpu"))
		return parse_cpu(v, q, err, errlen);
	if (!strcmp(key, "memory") || !strcmp(key, "disk")) {
		if (fleetspec_parse_range(v, true, key[0] == 'm' ? &q->memory : &q->disk, e,
					  sizeof(e)))
			return fmt_cut(err, errlen, "%s: %s", key, e), -EINVAL;
		return 0;
	}
	if (!strcmp(key, "spot")) {
		if (!strcasecmp(v, "true"))
			q->spot = 1;
		else if (!strcasecmp(v, "false"))
			q->spot = 0;
		else if (!strcasecmp(v, "auto"))
			q->spot = -1;
		else
			return fmt_cut(err, errlen, "spot: must be true, false or auto"), -EINVAL;
		return 0;
	}
	if (!strcmp(key, "max_price")) {
		if (num_parse_size(v, &q->max_price))
			return fmt_cut(err, errlen, "max_price: not a non-negative number"),
			       -EINVAL;
		return 0;
	}
	if (!strcmp(key, "compute_capability")) {
		if (parse_cc(v, &q->min_cc))
			return fmt_cut(err, errlen, "compute_capability: expected MAJOR.MINOR"),
			       -EINVAL;
		return 0;
	}
	if (!strcmp(key, "backends"))
		return strlist_parse(key, v, &q->backends, err, errlen);
	if (!strcmp(key, "regions"))
		return strlist_parse(key, v, &q->regions, err, errlen);
	if (!strcmp(key, "instance_types"))
		return strlist_parse(key, v, &q->instance_types, err, errlen);
	return -EINVAL; /* unreachable: keys are checked by the caller */
}

static const char *const query_keys[] = {"gpu",	 "cpu",	      "memory",
					 "disk", "spot",      "max_price",
					 "compute_capability", "backends", "regions",
					 "instance_types"};

int offers_query_parse(const char *s, struct offer_query **out, char *err, size_t errlen)
{
	enum { NK = sizeof(query_keys) / sizeof(query_keys[0]) };
	char *val[NK] = {NULL};
	char b[OFFERS_MAX_QUERY];
	struct offer_query *q = NULL;
	int r = 0, last = -1;
	if (err && errlen)
		err[0] = '\0';
	if (fmt(b, sizeof(b), "%s", s ? s : ""))
		return fmt_cut(err, errlen, "query longer than %d bytes", OFFERS_MAX_QUERY - 1),
		       -EINVAL;
	for (char *seg = b; *b;) {
		char *comma = strchr(seg, ',');
		if (comma)
			*comma = '\0';
		char *eq = strchr(seg, '=');
		if (!eq) {
			if (last < 0 || !*seg) {
				r = -EINVAL;
				fmt_cut(err, errlen,
					!*seg ? "empty query item" : "expected key=value");
				goto out;
			}
			/* a list continued with ',' (gpu=H100,A100:8) */
			char *nv = xasprintf("%s,%s", val[last], seg);
			free(val[last]);
			val[last] = nv;
		} else {
			*eq = '\0';
			int k = -1;
			for (int i = 0; i < NK; i++)
				if (!strcmp(seg, query_keys[i]))
					k = i;
			if (k < 0) {
				r = -EINVAL;
				fmt_cut(err, errlen,
					"unknown key (expected one of: gpu, cpu, memory, disk, "
					"spot, max_price, compute_capability, backends, regions, "
					"instance_types)");
				goto out;
			}
			if (val[k]) {
				r = -EINVAL;
				fmt_cut(err, errlen, "%s: given twice", query_keys[k]);
				goto out;
			}
			val[k] = xstrdup(eq + 1);
			last = k;
		}
		if (!comma)
			break;
		seg = comma + 1;
	}
	q = xcalloc(1, sizeof(*q));
	q->spot = -1;
	q->max_price = -1;
	q->min_cc = -1;
	for (int i = 0; i < NK && !r; i++)
		if (val[i])
			r = query_kv(q, query_keys[i], val[i], err, errlen);
	if (r)
		goto out;
	*out = q;
	q = NULL;
out:
	for (int i = 0; i < NK; i++)
		free(val[i]);
	offers_query_free(q);
	return r;
}

static void strlist_copy(struct strlist *dst, char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		dst->v = xrealloc(dst->v, (dst->n + 1) * sizeof(*dst->v));
		dst->v[dst->n++] = xstrdup(v[i]);
	}
}

struct offer_query *offers_query_from_spec(const struct fleet_spec *f)
{
	struct offer_query *q = xcalloc(1, sizeof(*q));
	const struct resources *r = &f->resources;
	q->spot = f->spot_policy == SPOT_SPOT ? 1 : f->spot_policy == SPOT_ON_DEMAND ? 0 : -1;
	q->max_price = f->max_price;
	q->min_cc = -1;
	q->cpu = r->cpu;
	fmt_cut(q->cpu_arch, sizeof(q->cpu_arch), "%s", r->cpu_arch); /* fits: as large */
	q->memory = r->memory;
	q->disk = r->disk;
	q->has_gpu = true;
	q->gpu = r->gpu;
	q->gpu.names = NULL;
	q->gpu.nnames = 0;
	for (size_t i = 0; i < r->gpu.nnames; i++) {
		q->gpu.names = xrealloc(q->gpu.names, (i + 1) * sizeof(*q->gpu.names));
		q->gpu.names[q->gpu.nnames++] = xstrdup(r->gpu.names[i]);
	}
	if (r->gpu.compute_capability[0] && parse_cc(r->gpu.compute_capability, &q->min_cc))
		q->min_cc = -1;
	strlist_copy(&q->backends, f->backends, f->nbackends);
	strlist_copy(&q->regions, f->regions, f->nregions);
	strlist_copy(&q->instance_types, f->instance_types, f->ninstance_types);
	return q;
}

bool offers_available(const struct offer *o)
{
	return !strcmp(o->availability, "unknown") || !strcmp(o->availability, "available") ||
	       !strcmp(o->availability, "idle");
}

/* ---------------------------------------------------------------- matching */

/* Compute capability of known NVIDIA GPUs (gpuhunt KNOWN_NVIDIA_GPUS), major*100+minor. */
static const struct {
	const char *name;
	int cc;
} nvidia_cc[] = {
	{"A10", 806},	  {"A10G", 806},    {"A16", 806},     {"A40", 806},	{"A100", 800},
	{"A4000", 806},	  {"A4500", 806},   {"A5000", 806},   {"A6000", 806}, {"B200", 1000},
	{"GB200", 1000},  {"H100", 900},    {"H100NVL", 900}, {"H200", 900},	{"GH200", 900},
	{"L4", 809},	  {"L40", 809},	    {"L40S", 809},    {"K80", 307},	{"M60", 502},
	{"P4", 601},	  {"P40", 601},	    {"P100", 600},    {"T4", 705},	{"V100", 700},
	{"RTX3060", 806}, {"RTX3070", 806}, {"RTX3080", 806}, {"RTX3090", 806},
	{"RTX4090", 809}, {"RTX4000", 705}, {"RTX5000", 705}, {"RTX6000", 705},
	{"RTX4000Ada", 809}, {"RTX6000Ada", 809}, {"RTX5090", 1200}, {"RTXPRO6000", 1200},
};

static int gpu_cc(const char *name)
{
	for (size_t i = 0; i < sizeof(nvidia_cc) / sizeof(nvidia_cc[0]); i++)
		if (!strcasecmp(name, nvidia_cc[i].name))
			return nvidia_cc[i].cc;
	return -1;
}

/* gpuhunt is_between on an rrange (unset = no bound). */
static bool in_range(const struct rrange *r, double v)
{
	if (!r->set)
		return true;
	const double eps = 1e-9;
	if (v + eps < r->min)
		return false;
	if (r->max >= 0 && v > r->max + eps)
		return false;
	return true;
}

static bool in_list(const struct strlist *s, const char *v, const char *alt, const char *alt2)
{
	if (!s->n)
		return true;
	for (size_t i = 0; i < s->n; i++)
		if (!strcasecmp(s->v[i], v) || (alt && !strcasecmp(s->v[i], alt)) ||
		    (alt2 && !strcasecmp(s->v[i], alt2)))
			return true;
	return false;
}

uint64_t offers_disk_for(const struct offer_query *q, const struct offer *o)
{
	if (o->disk_fixed || !q || !q->disk.set)
		return o->disk_mib;
	double d = disk_choose(o->type, &q->disk);
	return d < 0 ? 0 : gb_to_mib(d);
}

bool offers_match(const struct offer_query *q, const struct offer *o)
{
	if (!q)
		return true;
	if (!in_list(&q->backends, o->backend, o->type, backend_type_catalog(o->type)))
		return false;
	if (!in_list(&q->regions, o->region, NULL, NULL) ||
	    !in_list(&q->instance_types, o->instance, NULL, NULL))
		return false;
	if (q->max_price >= 0 && o->price > q->max_price)
		return false;
	if (q->spot >= 0 && o->spot != (q->spot == 1))
		return false;
	if (q->cpu_arch[0] && strcmp(q->cpu_arch, o->cpu_arch))
		return false;
	if (!in_range(&q->cpu, o->cpus) || !in_range(&q->memory, o->memory_mib / 1024.0))
		return false;
	/* ResourcesSpec default gpu: count 0.. — GPU checks skipped for CPU-only items. */
	const struct gpu_spec *g = &q->gpu;
	double gmin = q->has_gpu && g->count.set ? g->count.min : 0;
	if (!(gmin == 0 && o->gpu_count == 0)) {
		if (q->has_gpu) {
			if (g->vendor[0] && strcmp(g->vendor, o->gpu_vendor))
				return false;
			if (!in_range(&g->count, o->gpu_count))
				return false;
			if (g->nnames) {
				bool found = false;
				for (size_t i = 0; i < g->nnames && !found; i++)
					found = o->gpu_count > 0 && !strcasecmp(g->names[i], o->gpu_name);
				if (!found)
					return false;
			}
			double per = o->gpu_count > 0 ? o->gpu_memory_mib / 1024.0 : 0;
			if (!in_range(&g->memory, per) ||
			    !in_range(&g->total_memory, per * o->gpu_count))
				return false;
		}
		if (q->min_cc >= 0) {
			if (strcmp(o->gpu_vendor, "nvidia") || !o->gpu_name[0])
				return false;
			int cc = gpu_cc(o->gpu_name);
			if (cc < 0 || cc < q->min_cc)
				return false;
		}
	}
	/* gpuhunt checks the catalog's disk; otherwise dstack picks one in the backend's range */
	if (o->disk_fixed ? !in_range(&q->disk, o->disk_mib / 1024.0) : !offers_disk_for(q, o))
		return false;
	return true;
}

/* ---------------------------------------------------------------- renderings */

/* Shortest %g form that reads back as the same double. */
static void fmt_double(char *b, size_t n, double d)
{
	for (int prec = 6; prec <= 17; prec++) {
		fmt_cut(b, n, "%.*g", prec, d); /* fits: at most 24 characters, n is 40 */
		if (strtod(b, NULL) == d)
			return;
	}
}

int offer_yaml(const struct offer *o, const struct offer_query *q, struct buf *out)
{
	char price[40], at[32] = "";
	int r = 0;
	fmt_double(price, sizeof(price), o->price);
	if (o->fetched_at)
		time_iso((time_t)o->fetched_at, at, sizeof(at));
	if ((r = buf_printf(out, "backend: ")) || (r = buf_yaml_str(out, o->backend)) ||
	    (r = buf_printf(out, "\ntype: %s\nregion: ", o->type)) ||
	    (r = buf_yaml_str(out, o->region)) || (r = buf_printf(out, "\ninstance: ")) ||
	    (r = buf_yaml_str(out, o->instance)) ||
	    (r = buf_printf(out, "\nspot: %s\nprice: %s\ngpus:\n  vendor: ",
			    o->spot ? "true" : "false", price)) ||
	    (r = buf_yaml_str(out, o->gpu_vendor)) || (r = buf_printf(out, "\n  name: ")) ||
	    (r = buf_yaml_str(out, o->gpu_name)) ||
	    (r = buf_printf(out,
			    "\n  memory_mib: %llu\n  count: %d\ncpus: %d\ncpu_arch: %s\n"
			    "memory_mib: %llu\ndisk_mib: %llu\navailability: %s\nsource: %s\n"
			    "fetched_at: %s\n",
			    (unsigned long long)o->gpu_memory_mib, o->gpu_count, o->cpus,
			    o->cpu_arch, (unsigned long long)o->memory_mib,
			    (unsigned long long)offers_disk_for(q, o), o->availability, o->source,
			    at[0] ? at : "null")))
		return r;
	return 0;
}

static int tsv_field(struct buf *out, const char *s, bool last)
{
	int r = 0;
	for (; *s && !r; s++) {
		char c = (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s;
		r = buf_append(out, &c, 1);
	}
	return r ? r : buf_append(out, last ? "\n" : "\t", 1);
}

int offers_tsv(const struct offer_list *l, const struct offer_query *q, struct buf *out)
{
	int r = buf_printf(out, "name\tbackend\tregion\tinstance\tspot\tprice\tgpu_vendor\t"
				"gpu_name\tgpu_memory_mib\tgpu_count\tcpus\tcpu_arch\tmemory_mib\t"
				"disk_mib\tavailability\tsource\tfetched_at\n");
	for (size_t i = 0; !r && i < l->n; i++) {
		const struct offer *o = &l->v[i];
		if (!offers_match(q, o))
			continue;
		char name[256], price[40], at[32] = "";
		offer_label(o, name, sizeof(name));
		fmt_double(price, sizeof(price), o->price);
		if (o->fetched_at)
			time_iso((time_t)o->fetched_at, at, sizeof(at));
		if ((r = tsv_field(out, name, false)) || (r = tsv_field(out, o->backend, false)) ||
		    (r = tsv_field(out, o->region, false)) ||
		    (r = tsv_field(out, o->instance, false)) ||
		    (r = buf_printf(out, "%s\t%s\t", o->spot ? "true" : "false", price)) ||
		    (r = tsv_field(out, o->gpu_vendor, false)) ||
		    (r = tsv_field(out, o->gpu_name, false)))
			break;
		r = buf_printf(out, "%llu\t%d\t%d\t%s\t%llu\t%llu\t%s\t%s\t%s\n",
			       (unsigned long long)o->gpu_memory_mib, o->gpu_count, o->cpus,
			       o->cpu_arch, (unsigned long long)o->memory_mib,
			       (unsigned long long)offers_disk_for(q, o), o->availability, o->source,
			       at);
	}
	return r;
}

static cJSON *offer_to_json(const struct offer *o, const struct offer_query *q)
{
	char name[256], at[32] = "";
	offer_label(o, name, sizeof(name));
	if (o->fetched_at)
		time_iso((time_t)o->fetched_at, at, sizeof(at));
	cJSON *j = cJSON_CreateObject(), *g = cJSON_CreateObject();
	if (!j || !g) {
		cJSON_Delete(j);
		cJSON_Delete(g);
		return NULL;
	}
	bool ok = cJSON_AddStringToObject(j, "name", name) &&
		  cJSON_AddStringToObject(j, "backend", o->backend) &&
		  cJSON_AddStringToObject(j, "type", o->type) &&
		  cJSON_AddStringToObject(j, "region", o->region) &&
		  cJSON_AddStringToObject(j, "instance", o->instance) &&
		  cJSON_AddBoolToObject(j, "spot", o->spot) &&
		  cJSON_AddNumberToObject(j, "price", o->price) &&
		  cJSON_AddStringToObject(g, "vendor", o->gpu_vendor) &&
		  cJSON_AddStringToObject(g, "name", o->gpu_name) &&
		  cJSON_AddNumberToObject(g, "memory_mib", (double)o->gpu_memory_mib) &&
		  cJSON_AddNumberToObject(g, "count", o->gpu_count);
	if (ok)
		cJSON_AddItemToObject(j, "gpus", g);
	else
		cJSON_Delete(g);
	ok = ok && cJSON_AddNumberToObject(j, "cpus", o->cpus) &&
	     cJSON_AddStringToObject(j, "cpu_arch", o->cpu_arch) &&
	     cJSON_AddNumberToObject(j, "memory_mib", (double)o->memory_mib) &&
	     cJSON_AddNumberToObject(j, "disk_mib", (double)offers_disk_for(q, o)) &&
	     cJSON_AddStringToObject(j, "availability", o->availability) &&
	     cJSON_AddStringToObject(j, "source", o->source) &&
	     (at[0] ? cJSON_AddStringToObject(j, "fetched_at", at)
		    : cJSON_AddNullToObject(j, "fetched_at"));
	if (!ok) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

int offers_json(const struct offer_list *l, const struct offer_query *q, struct buf *out)
{
	/* one object per line, built and printed one at a time: a tree of 100,000 objects
	 * would cost hundreds of MiB */
	int r = buf_append(out, "[", 1);
	bool first = true;
	for (size_t i = 0; !r && i < l->n; i++) {
		if (!offers_match(q, &l->v[i]))
			continue;
		cJSON *j = offer_to_json(&l->v[i], q);
		char *text = j ? cJSON_PrintUnformatted(j) : NULL;
		cJSON_Delete(j);
		if (!text)
			return -ENOMEM;
		if (!(r = buf_append(out, first ? "\n" : ",\n", first ? 1 : 2)))
			r = buf_append(out, text, strlen(text));
		cJSON_free(text);
		first = false;
	}
	return r ? r : buf_append(out, first ? "]\n" : "\n]\n", first ? 2 : 3);
}
