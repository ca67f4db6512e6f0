/* offers: gpuhunt CSV catalogs, requirement queries and dstack's offer matching.
 *
 * Design: the CSV is streamed through libcsv (RFC 4180) in 64 KiB chunks; the header row
 * maps column names to the fields we use, every later row is converted into a struct offer or
 * counted as malformed (gpuhunt skips such rows with a warning). Matching mirrors gpuhunt's
 * constraints.matches() on the QueryFilter dstack builds from the requirements (§1.9), plus
 * the server-side backend/region/instance-type filters (§3.2). Sizes are kept in MiB in the
 * offer and compared in GB (MiB / 1024) against the ranges, which is how dstack converts.
 */
#include "offers.h"

#include <cjson/cJSON.h>
#include <csv.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define OFFERS_MAX_FILE (256ull << 20)
#define OFFERS_MAX_QUERY 1024
#define OFFERS_MAX_COLS 64
#define OFFERS_FIELD_MAX 256

/* ---------------------------------------------------------------- lists */

const char *offer_list_intern(struct offer_list *l, const char *s)
{
	if (!l->pool)
		l->pool = strpool_new();
	return strpool_add(l->pool, s ? s : "");
}

void offer_list_free(struct offer_list *l)
{
	if (!l)
		return;
	free(l->v);
	strpool_free(l->pool);
	l->v = NULL;
	l->pool = NULL;
	l->n = l->cap = 0;
}

int offer_list_push(struct offer_list *l, const struct offer *o)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct offer *nv = realloc(l->v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	struct offer *d = &l->v[l->n++];
	*d = *o;
	d->name = NULL; /* a name belongs to the list that made it unique */
	d->backend = offer_list_intern(l, o->backend);
	d->type = offer_list_intern(l, o->type);
	d->region = offer_list_intern(l, o->region);
	d->instance = offer_list_intern(l, o->instance);
	d->cpu_arch = offer_list_intern(l, o->cpu_arch);
	d->gpu_vendor = offer_list_intern(l, o->gpu_vendor);
	d->gpu_name = offer_list_intern(l, o->gpu_name);
	d->availability = offer_list_intern(l, o->availability);
	d->source = offer_list_intern(l, o->source);
	return 0;
}

static const struct {
	const char *backend, *provider;
} provider_map[] = {
	{"aws", "aws"},		{"azure", "azure"},   {"gcp", "gcp"},
	{"lambda", "lambdalabs"}, {"nebius", "nebius"}, {"oci", "oci"},
	{"runpod", "runpod"},	{"cloudrift", "cloudrift"}, {"verda", "verda"},
	{"datacrunch", "verda"},
};

const char *offers_catalog_provider(const char *backend_type)
{
	if (!backend_type)
		return NULL;
	for (size_t i = 0; i < sizeof(provider_map) / sizeof(provider_map[0]); i++)
		if (!strcmp(backend_type, provider_map[i].backend))
			return provider_map[i].provider;
	return NULL;
}

/* dstack's CONFIGURABLE_DISK_SIZE per compute, GB (TB = 1024 GB). */
static const struct {
	const char *type;
	double min, max;
} disk_ranges[] = {
	{"aws", 100, 16384},  {"azure", 30, 4095},   {"gcp", 20, 32768}, {"oci", 50, 32768},
	{"nebius", 40, 8192}, {"verda", 50, -1},     {"datacrunch", 50, -1},
};

void offers_disk_range(const char *type, double *min, double *max)
{
	*min = 1;
	*max = -1;
	for (size_t i = 0; type && i < sizeof(disk_ranges) / sizeof(disk_ranges[0]); i++)
		if (!strcmp(type, disk_ranges[i].type)) {
			*min = disk_ranges[i].min;
			*max = disk_ranges[i].max;
		}
}

/* Lower bound of want ∩ the type's range in GB, or < 0 when empty. dstack's default disk
 * request is 100GB.. (DEFAULT_DISK). */
static double disk_choose(const char *type, const struct rrange *want)
{
	double lo, hi, wlo = 100, whi = -1;
	offers_disk_range(type, &lo, &hi);
	if (want && want->set) {
		wlo = want->min;
		whi = want->max;
	}
	double a = wlo > lo ? wlo : lo;
	double b = whi < 0 ? hi : (hi < 0 ? whi : (whi < hi ? whi : hi));
	if (b >= 0 && a > b + 1e-9)
		return -1;
	return a;
}

/* ---------------------------------------------------------------- CSV reading */

enum col {
	C_INSTANCE, C_LOCATION, C_PRICE, C_CPU, C_MEMORY, C_GPU_COUNT, C_GPU_NAME, C_GPU_MEMORY,
	C_SPOT, C_DISK, C_GPU_VENDOR, C_FLAGS, C_CPU_ARCH, C_AVAIL, C_NCOLS
};
static const char *const col_names[C_NCOLS] = {
	"instance_name", "location", "price", "cpu", "memory", "gpu_count", "gpu_name",
	"gpu_memory", "spot", "disk_size", "gpu_vendor", "flags", "cpu_arch", "availability"};
static const bool col_required[C_NCOLS] = {true, true, true, true, true, true, false,
					   false, true, false, false, false, false, false};

/* dstack's allowed_flags (core/backends/base/offers.py). */
static const char *const allowed_flags[] = {"oci-spot",	 "lambda-arm", "gcp-a4", "gcp-g4",
					    "gcp-dws-calendar-mode", "runpod-cpu", "runpod-cluster"};

static const char *const availabilities[] = {"unknown", "available", "not_available",
					     "no_quota", "no_balance", "idle", "busy"};

struct csv_state {
	const struct offer_origin *org;
	struct offer_list *l;
	size_t skipped;
	size_t row;	       /* rows seen, header included */
	int err;	       /* first fatal error */
	char *errbuf;
	size_t errlen;
	/* header */
	char *hdr[OFFERS_MAX_COLS];
	size_t nhdr;
	int colmap[OFFERS_MAX_COLS]; /* column index -> enum col, -1 unused */
	/* current row */
	size_t field;
	char val[C_NCOLS][OFFERS_FIELD_MAX];
	bool present[C_NCOLS];
	bool toolong;
};

static void csv_field_cb(void *s, size_t len, void *data)
{
	struct csv_state *st = data;
	size_t i = st->field++;
	if (st->err)
		return;
	if (st->row == 0) {
		if (i >= OFFERS_MAX_COLS)
			return;
		const char *p = s ? s : "";
		if (i == 0 && len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) { /* UTF-8 BOM */
			p += 3;
			len -= 3;
		}
		st->hdr[i] = xstrndup(p, len);
		st->nhdr = i + 1;
		return;
	}
	if (i >= st->nhdr || st->colmap[i] < 0)
		return;
	int c = st->colmap[i];
	if (len >= OFFERS_FIELD_MAX) {
		st->toolong = true;
		return;
	}
	memcpy(st->val[c], s ? s : "", len);
	st->val[c][len] = '\0';
	st->present[c] = true;
}

static void strip_spaces(char *s)
{
	size_t n = strlen(s), a = 0;
	while (a < n && isspace((unsigned char)s[a]))
		a++;
	while (n > a && isspace((unsigned char)s[n - 1]))
		n--;
	memmove(s, s + a, n - a);
	s[n - a] = '\0';
}

/* A whole-string finite non-negative float; "" is -EINVAL. */
static int parse_float(const char *s, double *out)
{
	char *end;
	if (!*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	double d = strtod(s, &end);
	if (errno || *end || !isfinite(d) || d < 0)
		return -EINVAL;
	*out = d;
	return 0;
}

/* A count: an integer, or a float with no fractional part ("8.0", as pandas may write). */
static int parse_count(const char *s, int *out)
{
	long long v;
	double d;
	if (!num_parse_ll(s, 0, 1000000, &v)) {
		*out = (int)v;
		return 0;
	}
	if (parse_float(s, &d) || d > 1000000 || floor(d) != d)
		return -EINVAL;
	*out = (int)d;
	return 0;
}

static uint64_t gb_to_mib(double gb)
{
	return (uint64_t)llround(gb * 1024.0);
}

static bool flags_allowed(const char *flags)
{
	const char *p = flags;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " ");
		if (!n)
			break;
		bool ok = false;
		for (size_t i = 0; i < sizeof(allowed_flags) / sizeof(allowed_flags[0]); i++)
			if (strlen(allowed_flags[i]) == n && !strncmp(p, allowed_flags[i], n))
				ok = true;
		if (!ok)
			return false;
		p += n;
	}
	return true;
}

/* Convert the current row. 1 = an offer in *o (strings point into st), 0 = dropped (flags,
 * no disk size the backend can give), -EINVAL = malformed. */
static int row_to_offer(struct csv_state *st, struct offer *o)
{
	char(*v)[OFFERS_FIELD_MAX] = st->val;
	double price, mem, gmem = 0, disk = 0;
	int cpus, gcount;
	memset(o, 0, sizeof(*o));
	if (st->toolong)
		return -EINVAL;
	for (int c = 0; c < C_NCOLS; c++) {
		if (!st->present[c])
			v[c][0] = '\0';
		strip_spaces(v[c]);
		if (col_required[c] && !v[c][0])
			return -EINVAL;
	}
	if (parse_float(v[C_PRICE], &price) || parse_count(v[C_CPU], &cpus) ||
	    parse_float(v[C_MEMORY], &mem) || parse_count(v[C_GPU_COUNT], &gcount))
		return -EINVAL;
	if (v[C_GPU_MEMORY][0] && parse_float(v[C_GPU_MEMORY], &gmem))
		return -EINVAL;
	if (v[C_DISK][0] && parse_float(v[C_DISK], &disk))
		return -EINVAL;
	if (!strcasecmp(v[C_SPOT], "true"))
		o->spot = true;
	else if (strcasecmp(v[C_SPOT], "false"))
		return -EINVAL;
	if (!v[C_CPU_ARCH][0] || !strcasecmp(v[C_CPU_ARCH], "x86"))
		o->cpu_arch = "x86";
	else if (!strcasecmp(v[C_CPU_ARCH], "arm"))
		o->cpu_arch = "arm";
	else
		return -EINVAL;
	o->availability = "unknown";
	for (size_t i = 0; v[C_AVAIL][0] && i < sizeof(availabilities) / sizeof(*availabilities);
	     i++)
		if (!strcmp(v[C_AVAIL], availabilities[i]))
			o->availability = availabilities[i];
	o->backend = st->org->backend;
	o->type = st->org->type;
	o->source = st->org->source;
	o->fetched_at = st->org->fetched_at;
	o->region = v[C_LOCATION];
	o->instance = v[C_INSTANCE];
	o->gpu_vendor = o->gpu_name = "";
	if (gcount > 0) {
		if (!v[C_GPU_NAME][0] || gcount > 1024)
			return -EINVAL;
		o->gpu_name = v[C_GPU_NAME];
		const char *vendor = v[C_GPU_VENDOR];
		for (char *p = v[C_GPU_VENDOR]; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (!*vendor) /* legacy rows: tpu- means google, else nvidia */
			vendor = !strncasecmp(o->gpu_name, "tpu-", 4) ? "google" : "nvidia";
		if (strcmp(vendor, "nvidia") && strcmp(vendor, "amd") && strcmp(vendor, "google") &&
		    strcmp(vendor, "intel") && strcmp(vendor, "tenstorrent"))
			return -EINVAL;
		o->gpu_vendor = vendor;
		o->gpu_count = gcount;
		o->gpu_memory_mib = gb_to_mib(gmem);
	}
	if (!flags_allowed(v[C_FLAGS]))
		return 0;
	o->price = price;
	o->cpus = cpus;
	o->memory_mib = gb_to_mib(mem);
	if (disk > 0) {
		o->disk_fixed = true;
		o->disk_mib = gb_to_mib(disk);
	} else {
		double d = disk_choose(o->type, NULL);
		if (d < 0)
			return 0;
		o->disk_mib = gb_to_mib(d);
	}
	return 1;
}

static int header_done(struct csv_state *st)
{
	for (size_t i = 0; i < OFFERS_MAX_COLS; i++)
		st->colmap[i] = -1;
	bool seen[C_NCOLS] = {false};
	for (size_t i = 0; i < st->nhdr; i++) {
		char name[64];
		(void)fmt(name, sizeof(name), "%s", st->hdr[i]);
		strip_spaces(name);
		for (int c = 0; c < C_NCOLS; c++) {
			if (strcmp(name, col_names[c]))
				continue;
			if (seen[c])
				return -EINVAL;
			seen[c] = true;
			st->colmap[i] = c;
		}
	}
	for (int c = 0; c < C_NCOLS; c++)
		if (col_required[c] && !seen[c]) {
			(void)fmt(st->errbuf, st->errlen, "not a gpuhunt catalog: no %s column",
				  col_names[c]);
			return -EINVAL;
		}
	return 0;
}

static void csv_row_cb(int term, void *data)
{
	struct csv_state *st = data;
	(void)term;
	if (!st->err) {
		if (st->row == 0) {
			st->err = header_done(st);
			if (st->err && st->errbuf && st->errlen && !st->errbuf[0])
				(void)fmt(st->errbuf, st->errlen,
					  "not a gpuhunt catalog: duplicate column");
		} else {
			struct offer o;
			int r = row_to_offer(st, &o);
			if (r < 0)
				st->skipped++;
			else if (r == 1)
				st->err = offer_list_push(st->l, &o);
		}
	}
	st->row++;
	st->field = 0;
	st->toolong = false;
	memset(st->present, 0, sizeof(st->present));
}

int offers_parse_csv(const char *data, size_t len, const struct offer_origin *org,
		     struct offer_list *l, size_t *skipped, char *err, size_t errlen)
{
	struct csv_parser p;
	size_t n0 = l->n;
	int r = 0;
	if (err && errlen)
		err[0] = '\0';
	if (len > OFFERS_MAX_FILE)
		return fmt(err, errlen, "catalog larger than 256 MiB"), -EFBIG;
	if (csv_init(&p, CSV_APPEND_NULL) != 0)
		return -ENOMEM;
	struct csv_state *st = xcalloc(1, sizeof(*st));
	st->org = org;
	st->l = l;
	st->errbuf = err;
	st->errlen = errlen;
	if (csv_parse(&p, data, len, csv_field_cb, csv_row_cb, st) != len) {
		r = csv_error(&p) == CSV_ENOMEM ? -ENOMEM : -EINVAL;
		(void)fmt(err, errlen, "catalog: %s", csv_strerror(csv_error(&p)));
		goto out;
	}
	if (!st->err)
		(void)csv_fini(&p, csv_field_cb, csv_row_cb, st);
	if (!st->err && st->row == 0) {
		st->err = -EINVAL;
		(void)fmt(err, errlen, "not a gpuhunt catalog: empty file");
	}
	r = st->err;
	if (!r && skipped)
		*skipped += st->skipped;
out:
	if (r)
		l->n = n0;
	csv_free(&p);
	for (size_t i = 0; i < st->nhdr; i++)
		free(st->hdr[i]);
	free(st);
	return r;
}

int offers_read_csv(const char *path, const struct offer_origin *org, struct offer_list *l,
		    size_t *skipped, char *err, size_t errlen)
{
	struct buf b;
	buf_init(&b, OFFERS_MAX_FILE);
	int r = buf_read_file(&b, path);
	if (r == -EFBIG)
		(void)fmt(err, errlen, "catalog larger than 256 MiB");
	else if (r)
		(void)fmt(err, errlen, "cannot read catalog: %s", strerror(-r));
	else
		r = offers_parse_csv(b.data ? b.data : "", b.len, org, l, skipped, err, errlen);
	buf_free(&b);
	return r;
}

/* One CSV field, quoted when it holds a separator, a quote or a line break. */
static int csv_put(struct buf *out, const char *s, bool last)
{
	int r = 0;
	if (strpbrk(s, ",\"\r\n")) {
		size_t n = strlen(s), need = n * 2 + 2;
		char *q = xmalloc(need);
		size_t w = csv_write(q, need, s, n);
		r = buf_append(out, q, w);
		free(q);
	} else {
		r = buf_append(out, s, strlen(s));
	}
	return r ? r : buf_append(out, last ? "\n" : ",", 1);
}

int offers_write_csv(const struct offer_list *l, struct buf *out)
{
	int r = buf_printf(out, "instance_name,location,price,cpu,memory,gpu_count,gpu_name,"
				"gpu_memory,spot,disk_size,gpu_vendor,flags,cpu_arch,availability\n");
	for (size_t i = 0; !r && i < l->n; i++) {
		const struct offer *o = &l->v[i];
		char nums[160], gmem[40] = "", disk[40] = "";
		if (o->gpu_count)
			(void)fmt(gmem, sizeof(gmem), "%.17g", o->gpu_memory_mib / 1024.0);
		if (o->disk_fixed)
			(void)fmt(disk, sizeof(disk), "%.17g", o->disk_mib / 1024.0);
		(void)fmt(nums, sizeof(nums), "%.17g,%d,%.17g,%d,", o->price, o->cpus,
			  o->memory_mib / 1024.0, o->gpu_count);
		if ((r = csv_put(out, o->instance, false)) || (r = csv_put(out, o->region, false)) ||
		    (r = buf_append(out, nums, strlen(nums))) ||
		    (r = csv_put(out, o->gpu_name, false)) ||
		    (r = buf_printf(out, "%s,%s,%s,", gmem, o->spot ? "True" : "False", disk)) ||
		    (r = csv_put(out, o->gpu_vendor, false)) ||
		    (r = buf_printf(out, ",%s,%s\n", o->cpu_arch, o->availability)))
			break;
	}
	return r;
}

static bool region_in(const char *loc, char *const *regions, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(regions[i]);
		if (!strcasecmp(loc, regions[i]) ||
		    (!strncasecmp(loc, regions[i], k) && loc[k] == '-'))
			return true;
	}
	return false;
}

void offers_filter_regions(struct offer_list *l, char *const *regions, size_t n)
{
	if (!n)
		return;
	size_t w = 0;
	for (size_t i = 0; i < l->n; i++)
		if (region_in(l->v[i].region, regions, n))
			l->v[w++] = l->v[i];
	l->n = w;
}

/* ---------------------------------------------------------------- sorting and names */

static int cmp_offer_ptr(const void *a, const void *b)
{
	const struct offer *x = *(const struct offer *const *)a;
	const struct offer *y = *(const struct offer *const *)b;
	if (x->price < y->price)
		return -1;
	if (x->price > y->price)
		return 1;
	return x < y ? -1 : x > y; /* stable: catalog order */
}

void offers_sort(struct offer_list *l)
{
	if (!l || l->n < 2)
		return;
	struct offer **pv = xmalloc(l->n * sizeof(*pv));
	struct offer *nv = xmalloc(l->cap * sizeof(*nv));
	for (size_t i = 0; i < l->n; i++)
		pv[i] = &l->v[i];
	qsort(pv, l->n, sizeof(*pv), cmp_offer_ptr);
	for (size_t i = 0; i < l->n; i++)
		nv[i] = *pv[i];
	free(pv);
	free(l->v);
	l->v = nv;
}

static size_t name_part(char *out, size_t outlen, size_t pos, const char *s)
{
	for (; *s && pos + 1 < outlen; s++) {
		unsigned char c = (unsigned char)*s;
		out[pos++] = (isalnum(c) || c == '.' || c == '_' || c == '-') && c < 0x80 ? (char)c
											   : '_';
	}
	return pos;
}

void offer_name(const struct offer *o, char *out, size_t outlen)
{
	size_t pos = 0;
	if (!outlen)
		return;
	pos = name_part(out, outlen, pos, o->backend);
	if (pos + 1 < outlen)
		out[pos++] = ':';
	pos = name_part(out, outlen, pos, o->region);
	if (pos + 1 < outlen)
		out[pos++] = ':';
	pos = name_part(out, outlen, pos, o->instance);
	if (o->spot && pos + 5 < outlen) {
		memcpy(out + pos, ":spot", 5);
		pos += 5;
	}
	out[pos] = '\0';
}

/* The name a rendering shows: the holder's unique name, else the computed one. */
static void offer_label(const struct offer *o, char *out, size_t outlen)
{
	if (o->name)
		(void)fmt(out, outlen, "%s", o->name);
	else
		offer_name(o, out, outlen);
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
			return fmt(err, errlen, "%s: empty list item", key), -EINVAL;
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
	(void)fmt(b, sizeof(b), "%s", v);
	for (char *tok = b;;) {
		char *colon = strchr(tok, ':');
		if (colon)
			*colon = '\0';
		bool digits = *tok && strspn(tok, "0123456789") == strlen(tok);
		if (digits || strstr(tok, "..")) {
			if (have_c)
				return fmt(err, errlen, "cpu: CPU spec count conflict"), -EINVAL;
			char e[128];
			if (fleetspec_parse_range(tok, false, &q->cpu, e, sizeof(e)))
				return fmt(err, errlen, "cpu: %s", e), -EINVAL;
			have_c = true;
		} else if (!strcasecmp(tok, "x86") || !strcasecmp(tok, "arm")) {
			if (have_a)
				return fmt(err, errlen, "cpu: CPU spec arch conflict"), -EINVAL;
			(void)fmt(q->cpu_arch, sizeof(q->cpu_arch), "%s",
				  !strcasecmp(tok, "x86") ? "x86" : "arm");
			have_a = true;
		} else {
			return fmt(err, errlen, "cpu: invalid CPU architecture"), -EINVAL;
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
		return fmt(err, errlen, "%s: empty value", key), -EINVAL;
	if (!strcmp(key, "gpu")) {
		char b[OFFERS_MAX_QUERY];
		(void)fmt(b, sizeof(b), "%s", v);
		for (char *p = b; *p; p++)
			if (*p == '+')
				*p = ',';
		if (fleetspec_parse_gpu(b, &q->gpu, e, sizeof(e)))
			return fmt(err, errlen, "gpu: %s", e), -EINVAL;
		q->has_gpu = true;
		return 0;
	}
	if (!strcmp(key, "cpu"))
		return parse_cpu(v, q, err, errlen);
	if (!strcmp(key, "memory") || !strcmp(key, "disk")) {
		if (fleetspec_parse_range(v, true, key[0] == 'm' ? &q->memory : &q->disk, e,
					  sizeof(e)))
			return fmt(err, errlen, "%s: %s", key, e), -EINVAL;
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
			return fmt(err, errlen, "spot: must be true, false or auto"), -EINVAL;
		return 0;
	}
	if (!strcmp(key, "max_price")) {
		if (parse_float(v, &q->max_price))
			return fmt(err, errlen, "max_price: not a non-negative number"), -EINVAL;
		return 0;
	}
	if (!strcmp(key, "compute_capability")) {
		if (parse_cc(v, &q->min_cc))
			return fmt(err, errlen, "compute_capability: expected MAJOR.MINOR"), -EINVAL;
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
		return fmt(err, errlen, "query longer than %d bytes", OFFERS_MAX_QUERY - 1), -EINVAL;
	for (char *seg = b; *b;) {
		char *comma = strchr(seg, ',');
		if (comma)
			*comma = '\0';
		char *eq = strchr(seg, '=');
		if (!eq) {
			if (last < 0 || !*seg) {
				r = -EINVAL;
				(void)fmt(err, errlen, !*seg ? "empty query item"
							     : "expected key=value");
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
				(void)fmt(err, errlen, "unknown key (expected one of: gpu, cpu, memory, disk, spot, max_price, compute_capability, backends, regions, instance_types)");
				goto out;
			}
			if (val[k]) {
				r = -EINVAL;
				(void)fmt(err, errlen, "%s: given twice", query_keys[k]);
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
	(void)fmt(q->cpu_arch, sizeof(q->cpu_arch), "%s", r->cpu_arch);
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
	if (!in_list(&q->backends, o->backend, o->type, offers_catalog_provider(o->type)))
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
		(void)fmt(b, n, "%.*g", prec, d);
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
