/* fleetres: the resources grammar of a fleet file (dstack's core/models/resources.py):
 * Range[int] and Range[Memory], Memory sizes, CPUSpec, GPUSpec (the ":"-separated shorthand and
 * the object form), DiskSpec and ResourcesSpec with its defaults. Part of the fleetspec module
 * (see fleetpriv.h). String-level parsers report a reason without file or line; the node-level
 * ones report through fsw_err.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fleetpriv.h"
#include "../lib/util.h"

/* Memory.parse: GB as a float; suffix tb (x1024), gb, mb (/1024), or none (GB). */
static int mem_text(const char *s, double *out, char *err, size_t errlen)
{
	char b[FSW_MAX_SPEC];
	double mult = 1, v;
	if (fsw_strip(s, b, sizeof(b), true, err, errlen))
		return -EINVAL;
	size_t n = strlen(b);
	const char *suffix = n >= 2 ? b + n - 2 : "";
	if (!strcmp(suffix, "tb") || !strcmp(suffix, "gb") || !strcmp(suffix, "mb")) {
		mult = suffix[0] == 't' ? 1024 : suffix[0] == 'm' ? 1.0 / 1024 : 1;
		b[n - 2] = '\0';
	}
	if (fsw_num(b, &v))
		return fsw_why(err, errlen,
			       "invalid memory size (a number of GB, or with a unit: MB, GB, TB)");
	if (v < 0)
		return fsw_why(err, errlen, "memory size must not be negative");
	*out = v * mult;
	return 0;
}

static int count_text(const char *s, double *out, char *err, size_t errlen)
{
	long long v;
	if (s[0] == '-')
		return fsw_why(err, errlen, "count must not be negative");
	int r = num_parse_ll(s, 0, FSW_MAX_COUNT, &v);
	if (r == -ERANGE)
		return fsw_why(err, errlen, "count too large");
	if (r)
		return fsw_why(err, errlen, "count must be a whole number");
	*out = (double)v;
	return 0;
}

static int one_value(const char *s, bool memory, double *out, char *err, size_t errlen)
{
	return memory ? mem_text(s, out, err, errlen) : count_text(s, out, err, errlen);
}

int fleetspec_parse_range(const char *s, bool memory, struct rrange *out, char *err, size_t errlen)
{
	char b[FSW_MAX_SPEC];
	struct rrange r = {.set = true, .min = 0, .max = -1};
	if (fsw_strip(s, b, sizeof(b), false, err, errlen))
		return -EINVAL;
	char *dots = strstr(b, "..");
	if (!dots) {
		if (one_value(b, memory, &r.min, err, errlen))
			return -EINVAL;
		r.max = r.min;
		*out = r;
		return 0;
	}
	*dots = '\0';
	const char *lo = b, *hi = dots + 2;
	if (strstr(hi, ".."))
		return fsw_why(err, errlen, "invalid range: more than one \"..\"");
	if (!*lo && !*hi)
		return fsw_why(err, errlen, "Invalid empty range: ..");
	if (*lo && one_value(lo, memory, &r.min, err, errlen))
		return -EINVAL;
	if (*hi && one_value(hi, memory, &r.max, err, errlen))
		return -EINVAL;
	if (*lo && *hi && r.min > r.max)
		return fsw_why(err, errlen, "Invalid range order: min is greater than max");
	*out = r;
	return 0;
}

/* A Range[int] or Range[Memory] node: a scalar (see fleetspec_parse_range) or {min, max}. */
static int range_node(struct fsw *w, int val, const char *path, bool memory, struct rrange *out)
{
	static const char *const keys[] = {"min", "max", NULL};
	char reason[200], kpath[FSW_PATH];
	const struct ydoc *d = w->d;
	if (ydoc_kind(d, val) == Y_MAP) {
		struct rrange r = {.set = true, .min = 0, .max = -1};
		bool have[2] = {false, false};
		for (size_t i = 0; i < ydoc_len(d, val); i++) {
			int k = ydoc_map_key(d, val, i), v = ydoc_map_val(d, val, i);
			const char *ks = fsw_text(d, k);
			if (!ks || !str_in(ks, keys))
				return fsw_unknown_key(w, k, path, keys);
			if (ydoc_is_null(d, v))
				continue;
			bool ismax = !strcmp(ks, "max");
			const char *s = fsw_text(d, v);
			ywalk_path(kpath, sizeof(kpath), path, ks);
			if (!s || strstr(s, ".."))
				return fsw_err(w, v, kpath, "must be a single %s",
					       memory ? "memory size" : "count");
			if (one_value(s, memory, ismax ? &r.max : &r.min, reason, sizeof(reason)))
				return fsw_err(w, v, kpath, "%s", reason);
			have[ismax] = true;
		}
		if (!have[0] && !have[1])
			return fsw_err(w, val, path, "Invalid empty range: ..");
		if (have[0] && have[1] && r.min > r.max)
			return fsw_err(w, val, path,
				       "Invalid range order: min is greater than max");
		*out = r;
		return 0;
	}
	const char *s = fsw_text(d, val);
	if (!s)
		return fsw_err(w, val, path, "must be a %s or a range (like %s), not %s",
			       memory ? "memory size" : "count", memory ? "8GB.." : "2..8",
			       ydoc_is_null(d, val)  ? "null"
			       : fsw_is_bool(d, val) ? "a boolean"
						     : ywalk_kind(ydoc_kind(d, val)));
	if (fleetspec_parse_range(s, memory, out, reason, sizeof(reason)))
		return fsw_err(w, val, path, "%s", reason);
	return 0;
}

/* gpuhunt's AcceleratorVendor plus dstack's aliases tpu and tt; case-insensitive. */
static const char *vendor_of(const char *tok)
{
	static const char *const map[][2] = {{"nvidia", "nvidia"}, {"amd", "amd"},
					     {"google", "google"}, {"tpu", "google"},
					     {"intel", "intel"},   {"tenstorrent", "tenstorrent"},
					     {"tt", "tenstorrent"}};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcasecmp(tok, map[i][0]))
			return map[i][1];
	return NULL;
}

void gpu_spec_free(struct gpu_spec *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->nnames; i++)
		free(g->names[i]);
	free(g->names);
	g->names = NULL;
	g->nnames = 0;
}

/* Add one GPU name, dropping the deprecated "tpu-" prefix as dstack does. */
static int gpu_add_name(struct gpu_spec *g, const char *s, size_t n, char *err, size_t errlen)
{
	if (n >= 4 && !strncmp(s, "tpu-", 4)) {
		s += 4;
		n -= 4;
	}
	if (n == 0)
		return fsw_why(err, errlen, "GPU name can not be empty");
	if (g->nnames >= FSW_MAX_ITEMS)
		return fsw_why(err, errlen, "too many GPU names");
	g->names = xrealloc(g->names, (g->nnames + 1) * sizeof(*g->names));
	g->names[g->nnames++] = xstrndup(s, n);
	return 0;
}

static bool has_alpha(const char *s)
{
	for (; *s; s++)
		if (isalpha((unsigned char)*s))
			return true;
	return false;
}

int fleetspec_parse_gpu(const char *s, struct gpu_spec *out, char *err, size_t errlen)
{
	char b[FSW_MAX_SPEC];
	struct gpu_spec g;
	bool have_v = false, have_n = false, have_m = false, have_c = false;
	int r = 0;
	memset(&g, 0, sizeof(g));
	if (fsw_strip(s, b, sizeof(b), false, err, errlen))
		return -EINVAL;
	for (char *tok = b;;) {
		char *colon = strchr(tok, ':');
		if (colon)
			*colon = '\0';
		const char *v = *tok ? vendor_of(tok) : NULL;
		if (!*tok) {
			r = fsw_why(err, errlen, "GPU spec contains empty token");
		} else if (v) {
			if (have_v)
				r = fsw_why(err, errlen, "GPU spec vendor conflict");
			else
				fmt_cut(g.vendor, sizeof(g.vendor), "%s", v); /* fits: a known vendor */
			have_v = true;
		} else if (isalpha((
				   unsigned char)tok[0])) { /* a name always starts with a letter */
			if (have_n)
				r = fsw_why(err, errlen, "GPU spec name conflict");
			for (char *p = tok; !r;) {
				char *comma = strchr(p, ',');
				size_t n = comma ? (size_t)(comma - p) : strlen(p);
				r = gpu_add_name(&g, p, n, err, errlen);
				if (!comma)
					break;
				p = comma + 1;
			}
			have_n = true;
		} else if (has_alpha(tok)) { /* memory needs its unit */
			if (have_m)
				r = fsw_why(err, errlen, "GPU spec memory conflict");
			else
				r = fleetspec_parse_range(tok, true, &g.memory, err, errlen);
			have_m = true;
		} else {
			if (have_c)
				r = fsw_why(err, errlen, "GPU spec count conflict");
			else
				r = fleetspec_parse_range(tok, false, &g.count, err, errlen);
			have_c = true;
		}
		if (r || !colon)
			break;
		tok = colon + 1;
	}
	if (r) {
		gpu_spec_free(&g);
		return r;
	}
	if (!have_c)
		g.count = (struct rrange){.set = true, .min = 1, .max = -1}; /* DEFAULT_GPU_COUNT */
	*out = g;
	return 0;
}

/* compute_capability: 7.5 (a YAML float: Python prints 7.50 as 7.5), "7.5", or [7, 5]. */
static int parse_cc(struct fsw *w, int val, const char *path, char *out, size_t outlen)
{
	const struct ydoc *d = w->d;
	long long part[2];
	char b[64];
	const char *msg = "must be a compute capability like 7.5 or [7, 5]";
	if (ydoc_kind(d, val) == Y_SEQ) {
		if (ydoc_len(d, val) != 2)
			return fsw_err(w, val, path, "%s", msg);
		for (size_t i = 0; i < 2; i++) {
			const char *s = fsw_text(d, ydoc_seq_at(d, val, i));
			if (!s || num_parse_ll(s, 0, 999, &part[i]))
				return fsw_err(w, val, path, "%s", msg);
		}
	} else {
		const char *s = fsw_text(d, val);
		if (!s || fmt(b, sizeof(b), "%s", s))
			return fsw_err(w, val, path, "%s", msg);
		char *dot = strchr(b, '.');
		if (!dot || strchr(dot + 1, '.'))
			return fsw_err(w, val, path, "%s", msg);
		*dot = '\0';
		if (ydoc_plain(d, val)) { /* a float: trailing zeros of the fraction go */
			size_t n = strlen(dot + 1);
			while (n > 1 && dot[n] == '0')
				dot[n--] = '\0';
		}
		if (num_parse_ll(b, 0, 999, &part[0]) || num_parse_ll(dot + 1, 0, 999, &part[1]))
			return fsw_err(w, val, path, "%s", msg);
	}
	fmt_cut(out, outlen, "%lld.%lld", part[0], part[1]); /* fits: two numbers below 1000 */
	return 0;
}

static int gpu_field(struct fsw *w, void *ctx, const char *key, int val, const char *path)
{
	struct gpu_spec *g = ctx;
	const struct ydoc *d = w->d;
	char reason[200];
	if (ydoc_is_null(d, val)) {
		if (!strcmp(key, "count"))
			return fsw_err(w, val, path,
				       "must not be null (omit it for the default 1..)");
		return 0;
	}
	if (!strcmp(key, "vendor")) {
		const char *s = fsw_text(d, val), *v = s ? vendor_of(s) : NULL;
		if (!v)
			return fsw_err(
				w, val, path,
				"must be one of: nvidia, amd, google (tpu), intel, tenstorrent");
		fmt_cut(g->vendor, sizeof(g->vendor), "%s", v); /* fits: a known vendor */
		return 0;
	}
	if (!strcmp(key, "name")) {
		const char *s;
		bool seq = ydoc_kind(d, val) == Y_SEQ;
		size_t n = seq ? ydoc_len(d, val) : 1;
		gpu_spec_free(g);
		for (size_t i = 0; i < n; i++) {
			int it = seq ? ydoc_seq_at(d, val, i) : val;
			int r = fsw_str(w, it, path, &s);
			if (r)
				return r;
			if (gpu_add_name(g, s, strlen(s), reason, sizeof(reason)))
				return fsw_err(w, it, path, "%s", reason);
		}
		return 0;
	}
	if (!strcmp(key, "compute_capability"))
		return parse_cc(w, val, path, g->compute_capability, sizeof(g->compute_capability));
	bool mem = strcmp(key, "count") != 0;
	return range_node(w, val, path, mem,
			  !strcmp(key, "count")	   ? &g->count
			  : !strcmp(key, "memory") ? &g->memory
						   : &g->total_memory);
}

static int parse_gpu_node(struct fsw *w, int val, const char *path, struct gpu_spec *out)
{
	static const char *const keys[] = {
		"vendor", "name", "count", "memory", "total_memory", "compute_capability", NULL};
	char reason[200];
	struct gpu_spec g;
	memset(&g, 0, sizeof(g));
	if (ydoc_kind(w->d, val) == Y_MAP) {
		g.count = (struct rrange){.set = true, .min = 1, .max = -1};
		int r = fsw_walk(w, val, path, keys, gpu_field, &g);
		if (r) {
			gpu_spec_free(&g);
			return r;
		}
	} else {
		const char *s = fsw_text(w->d, val);
		if (!s)
			return fsw_err(w, val, path,
				       "must be a GPU spec like A100:80GB:2, or a mapping");
		if (fleetspec_parse_gpu(s, &g, reason, sizeof(reason)))
			return fsw_err(w, val, path, "%s", reason);
	}
	gpu_spec_free(out);
	*out = g;
	return 0;
}

static int cpu_arch(const char *s, char *out, size_t outlen)
{
	if (strcasecmp(s, "x86") && strcasecmp(s, "arm"))
		return -EINVAL;
	fmt_cut(out, outlen, "%s", tolower((unsigned char)s[0]) == 'x' ? "x86" : "arm"); /* fits */
	return 0;
}

/* CPUSpec.parse: ":"-separated tokens; digits or a ".." range is the count, else the arch. */
static int cpu_text(const char *s, struct resources *res, char *err, size_t errlen)
{
	char b[FSW_MAX_SPEC];
	bool have_c = false, have_a = false;
	if (fsw_strip(s, b, sizeof(b), false, err, errlen))
		return -EINVAL;
	for (char *tok = b;;) {
		char *colon = strchr(tok, ':');
		if (colon)
			*colon = '\0';
		bool digits = *tok != '\0';
		for (const char *p = tok; *p; p++)
			digits = digits && isdigit((unsigned char)*p);
		if (!*tok)
			return fsw_why(err, errlen, "CPU spec contains empty token");
		if (digits || strstr(tok, "..")) {
			if (have_c)
				return fsw_why(err, errlen, "CPU spec count conflict");
			if (fleetspec_parse_range(tok, false, &res->cpu, err, errlen))
				return -EINVAL;
			have_c = true;
		} else {
			if (cpu_arch(tok, res->cpu_arch, sizeof(res->cpu_arch)))
				return fsw_why(err, errlen,
					       "Invalid CPU architecture (x86 or arm)");
			if (have_a)
				return fsw_why(err, errlen, "CPU spec arch conflict");
			have_a = true;
		}
		if (!colon)
			return 0;
		tok = colon + 1;
	}
}

static int cpu_field(struct fsw *w, void *ctx, const char *key, int val, const char *path)
{
	struct resources *res = ctx;
	if (!strcmp(key, "arch")) {
		const char *s = fsw_text(w->d, val);
		if (ydoc_is_null(w->d, val)) {
			res->cpu_arch[0] = '\0';
			return 0;
		}
		if (!s || cpu_arch(s, res->cpu_arch, sizeof(res->cpu_arch)))
			return fsw_err(w, val, path, "must be x86 or arm");
		return 0;
	}
	if (ydoc_is_null(w->d, val))
		return fsw_err(w, val, path, "must not be null (omit it for the default 2..)");
	return range_node(w, val, path, false, &res->cpu);
}

static int parse_cpu(struct fsw *w, int val, const char *path, struct resources *res)
{
	static const char *const keys[] = {"arch", "count", NULL};
	const struct ydoc *d = w->d;
	char reason[200];
	if (ydoc_kind(d, val) == Y_MAP) {
		/* a bare {min, max} (or half of it) is a count, for backward compatibility */
		bool range = ydoc_len(d, val) > 0;
		for (size_t i = 0; i < ydoc_len(d, val); i++) {
			const char *k = fsw_text(d, ydoc_map_key(d, val, i));
			range = range && k && (!strcmp(k, "min") || !strcmp(k, "max"));
		}
		if (range)
			return range_node(w, val, path, false, &res->cpu);
		return fsw_walk(w, val, path, keys, cpu_field, res);
	}
	const char *s = fsw_text(d, val);
	if (!s)
		return fsw_err(w, val, path,
			       "must be a CPU spec like 8, 4..16 or arm:8.., or a mapping");
	if (cpu_text(s, res, reason, sizeof(reason)))
		return fsw_err(w, val, path, "%s", reason);
	return 0;
}

static int res_field(struct fsw *w, void *ctx, const char *key, int val, const char *path)
{
	struct resources *res = ctx;
	const struct ydoc *d = w->d;
	bool null = ydoc_is_null(d, val);
	if (!strcmp(key, "cpu")) {
		if (null)
			return fsw_err(w, val, path,
				       "must not be null (omit it for the default 2..)");
		return parse_cpu(w, val, path, res);
	}
	if (!strcmp(key, "memory")) {
		if (null)
			return fsw_err(w, val, path,
				       "must not be null (omit it for the default 8GB..)");
		return range_node(w, val, path, true, &res->memory);
	}
	if (!strcmp(key, "shm_size")) {
		char reason[200];
		const char *s = fsw_text(d, val);
		if (null)
			return 0;
		if (!s || mem_text(s, &res->shm_size.min, reason, sizeof(reason)))
			return fsw_err(w, val, path, "must be a single memory size like 8GB");
		res->shm_size.max = res->shm_size.min;
		res->shm_size.set = true;
		return 0;
	}
	if (!strcmp(key, "gpu")) {
		if (null) /* set_default_gpu_spec */
			return 0;
		return parse_gpu_node(w, val, path, &res->gpu);
	}
	/* disk: a size or range, or {size: ...}; null means no disk constraint */
	if (null) {
		res->disk.set = false;
		return 0;
	}
	if (ydoc_kind(d, val) == Y_MAP) {
		char kpath[FSW_PATH];
		int sz = ydoc_map_get(d, val, "size");
		for (size_t i = 0; i < ydoc_len(d, val); i++) {
			const char *k = fsw_text(d, ydoc_map_key(d, val, i));
			static const char *const disk_keys[] = {"size", NULL};
			if (!k || strcmp(k, "size"))
				return fsw_unknown_key(w, ydoc_map_key(d, val, i), path, disk_keys);
		}
		ywalk_path(kpath, sizeof(kpath), path, "size");
		if (!sz || ydoc_is_null(d, sz))
			return fsw_err(w, val, kpath, "required field is missing");
		return range_node(w, sz, kpath, true, &res->disk);
	}
	return range_node(w, val, path, true, &res->disk);
}

void fsw_resources_defaults(struct resources *res, bool given)
{
	gpu_spec_free(&res->gpu);
	memset(res, 0, sizeof(*res));
	res->set = given;
	/* ResourcesSpec() when given, ResourcesSpec.unconstrained() when not */
	res->cpu = (struct rrange){.set = true, .min = given ? 2 : 1, .max = -1};
	res->memory = (struct rrange){.set = true, .min = given ? 8 : 0, .max = -1};
	res->gpu.count = (struct rrange){.set = true, .min = 0, .max = -1};
	res->shm_size = (struct rrange){.set = false, .min = 0, .max = -1};
	res->disk = (struct rrange){.set = given, .min = given ? 100 : 0, .max = -1};
}

int fsw_resources(struct fsw *w, int val, const char *path)
{
	static const char *const keys[] = {"cpu", "memory", "shm_size", "gpu", "disk", NULL};
	fsw_resources_defaults(&w->f->resources, true);
	return fsw_walk(w, val, path, keys, res_field, &w->f->resources);
}
