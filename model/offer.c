/* offer: see offer.h. Offer lists, the gpuhunt CSV reader and writer, sorting and names.
 *
 * The CSV is streamed through libcsv (RFC 4180) in 64 KiB chunks; the header row maps column
 * names to the fields we use, every later row is converted into a struct offer or counted as
 * malformed (gpuhunt skips such rows with a warning). Sizes are kept in MiB.
 */
#include "offer.h"

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
#define OFFERS_MAX_COLS 64
#define OFFERS_FIELD_MAX 256

double disk_range_pick(const struct disk_range *r, double wlo, double whi)
{
	double lo = 1, hi = -1;
	if (r && (r->min || r->max)) {
		lo = r->min;
		hi = r->max;
	}
	if (wlo < 0) { /* dstack's default disk request: 100GB.. */
		wlo = 100;
		whi = -1;
	}
	double a = wlo > lo ? wlo : lo;
	double b = whi < 0 ? hi : (hi < 0 ? whi : (whi < hi ? whi : hi));
	if (b >= 0 && a > b + 1e-9)
		return -1;
	return a;
}

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
/* A count: an integer, or a float with no fractional part ("8.0", as pandas may write). */
static int parse_count(const char *s, int *out)
{
	long long v;
	double d;
	if (!num_parse_ll(s, 0, 1000000, &v)) {
		*out = (int)v;
		return 0;
	}
	if (num_parse_size(s, &d) || d > 1000000 || floor(d) != d)
		return -EINVAL;
	*out = (int)d;
	return 0;
}

uint64_t gb_to_mib(double gb)
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
	if (num_parse_size(v[C_PRICE], &price) || parse_count(v[C_CPU], &cpus) ||
	    num_parse_size(v[C_MEMORY], &mem) || parse_count(v[C_GPU_COUNT], &gcount))
		return -EINVAL;
	if (v[C_GPU_MEMORY][0] && num_parse_size(v[C_GPU_MEMORY], &gmem))
		return -EINVAL;
	if (v[C_DISK][0] && num_parse_size(v[C_DISK], &disk))
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
		double d = disk_range_pick(&st->org->disk, -1, -1);
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
		if (fmt(name, sizeof(name), "%s", st->hdr[i]))
			continue; /* longer than any column name: not one of ours */
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
			fmt_cut(st->errbuf, st->errlen, "not a gpuhunt catalog: no %s column",
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
				fmt_cut(st->errbuf, st->errlen,
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
		return fmt_cut(err, errlen, "catalog larger than 256 MiB"), -EFBIG;
	if (csv_init(&p, CSV_APPEND_NULL) != 0)
		return -ENOMEM;
	struct csv_state *st = xcalloc(1, sizeof(*st));
	st->org = org;
	st->l = l;
	st->errbuf = err;
	st->errlen = errlen;
	if (csv_parse(&p, data, len, csv_field_cb, csv_row_cb, st) != len) {
		r = csv_error(&p) == CSV_ENOMEM ? -ENOMEM : -EINVAL;
		fmt_cut(err, errlen, "catalog: %s", csv_strerror(csv_error(&p)));
		goto out;
	}
	if (!st->err)
		(void)csv_fini(&p, csv_field_cb, csv_row_cb, st);
	if (!st->err && st->row == 0) {
		st->err = -EINVAL;
		fmt_cut(err, errlen, "not a gpuhunt catalog: empty file");
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
		fmt_cut(err, errlen, "catalog larger than 256 MiB");
	else if (r)
		fmt_cut(err, errlen, "cannot read catalog: %s", strerror(-r));
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
			fmt_cut(gmem, sizeof(gmem), "%.17g", o->gpu_memory_mib / 1024.0); /* fits */
		if (o->disk_fixed)
			fmt_cut(disk, sizeof(disk), "%.17g", o->disk_mib / 1024.0); /* fits */
		/* fits: numbers of at most 24 chars */
		fmt_cut(nums, sizeof(nums), "%.17g,%d,%.17g,%d,", o->price, o->cpus,
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

static bool region_in(const char *loc, const char *const *regions, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(regions[i]);
		if (!strcasecmp(loc, regions[i]) ||
		    (!strncasecmp(loc, regions[i], k) && loc[k] == '-'))
			return true;
	}
	return false;
}

void offers_filter_regions(struct offer_list *l, const char *const *regions, size_t n)
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

