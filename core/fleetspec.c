/* fleetspec: parse and validate fleets/<name>.yml, dstack's fleet configuration.
 *
 * Design: one walk over the YAML view (ydoc) that does what dstack does in three places:
 * pydantic's model validation (core/models/fleets.py, resources.py, profiles.py, duration.py,
 * envs.py: unknown keys rejected, types, ranges, the resources grammar), the CLI's
 * preprocessing (identity_file read into a key), and the server's checks
 * (services/fleets.py::_validate_fleet_spec_and_set_defaults: nodes xor ssh_config,
 * backend-only vs SSH-only fields, a user and a key for every host, key types, internal_ip).
 * The result is resolved: every SSH host carries its own user, port, key and proxy, and
 * defaults are filled in, so the engine never re-derives them.
 *
 * The module is three files: this one (top level, nodes, profile fields, ssh_config, updates),
 * fleetres.c (the resources grammar) and fleetpriv.h (the walker both use). Key formats are
 * checked by core/sshkey.c, files are read through lib/fileref.c.
 *
 * Messages: "FILE:LINE: FIELD: message" through ydoc_err; a value is never echoed (file paths
 * and host names are, being what the user needs to find the problem).
 */
#include "fleetspec.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../backends/registry.h"
#include "../lib/fileref.h"
#include "fleetpriv.h"
#include "sshkey.h"
#include "../lib/util.h"

#define FS_MAX_KEY (64 * 1024)		  /* an identity file; real keys are under 16 KiB */
#define FS_DEFAULT_IDLE (3LL * 24 * 3600) /* DEFAULT_FLEET_TERMINATION_IDLE_TIME */
#define FS_DEFAULT_RETRY 3600LL		  /* DEFAULT_RETRY_DURATION */
#define NAME_RULE "^[a-z][a-z0-9-]{1,40}$"

/* Fleet-wide ssh_config values, the defaults of every host. */
struct sshdef {
	const char *user;
	long long port; /* 0: not given */
	const struct keyfile *key;
	struct ssh_endpoint *proxy;
};

int fsw_err(struct fsw *w, int node, const char *path, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int r = ywalk_verr(w->d, node, path, w->err, w->errlen, f, ap);
	va_end(ap);
	return r;
}

/* The reason of a string-level parser (no file/line); truncation only shortens it. */
int fsw_why(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		fmt_cut(err, errlen, "%s", msg);
	return -EINVAL;
}

int fsw_unknown_key(struct fsw *w, int k, const char *path, const char *const *known)
{
	char shown[STR_REDACT_KEY_LEN];
	const char *ks = ydoc_str(w->d, k);
	if (!ks || ydoc_is_null(w->d, k))
		return fsw_err(w, k, path, "keys must be strings");
	str_redact_key(shown, sizeof(shown), ks, known);
	return fsw_err(w, k, path, "unknown key %s", shown);
}

bool fsw_is_bool(const struct ydoc *d, int n)
{
	bool b;
	return ydoc_bool(d, n, &b) == 0;
}

/* A scalar that is neither null nor a YAML 1.1 boolean, or NULL. */
const char *fsw_text(const struct ydoc *d, int n)
{
	if (ydoc_kind(d, n) != Y_SCALAR || ydoc_is_null(d, n) || fsw_is_bool(d, n))
		return NULL;
	return ydoc_str(d, n);
}

/* A `str` field as dstack's CoreModel reads it: numbers are coerced to text, null and
 * booleans are not strings. */
int fsw_str(struct fsw *w, int val, const char *path, const char **out)
{
	enum ykind k = ydoc_kind(w->d, val);
	if (k != Y_SCALAR)
		return fsw_err(w, val, path, "must be a string, not %s", ywalk_kind(k));
	if (ydoc_is_null(w->d, val))
		return fsw_err(w, val, path, "must be a string, not null");
	if (fsw_is_bool(w->d, val))
		return fsw_err(w, val, path,
			       "must be a string, not a boolean (quote it if it is meant as text)");
	*out = ydoc_str(w->d, val);
	return 0;
}

/* A host name or user name: non-empty, printable, no whitespace, at most max bytes, and not
 * starting with '-' (no valid host or user does; it would read as an option to ssh tools). */
static int need_token(struct fsw *w, int val, const char *path, size_t max, const char **out)
{
	int r = fsw_str(w, val, path, out);
	if (r)
		return r;
	if (!**out)
		return fsw_err(w, val, path, "must not be empty");
	if (strlen(*out) > max)
		return fsw_err(w, val, path, "longer than %zu characters", max);
	if (**out == '-')
		return fsw_err(w, val, path, "must not start with '-'");
	for (const unsigned char *p = (const unsigned char *)*out; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return fsw_err(w, val, path,
				       "must not contain spaces or control characters");
	return 0;
}

static int need_int(struct fsw *w, int val, const char *path, long long min, long long max,
		    long long *out)
{
	long long v;
	if (ydoc_kind(w->d, val) != Y_SCALAR || ydoc_int(w->d, val, &v))
		return fsw_err(w, val, path, "must be an integer");
	if (v < min || v > max)
		return fsw_err(w, val, path, "must be between %lld and %lld", min, max);
	*out = v;
	return 0;
}

/* A decimal number as Python's float() reads one, without inf, nan or hex. */
int fsw_num(const char *s, double *out)
{
	char *end = NULL;
	if (!*s || strlen(s) > 64)
		return -EINVAL;
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p) && !strchr(".eE+-", *p))
			return -EINVAL;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno == ERANGE || !isfinite(v))
		return -EINVAL;
	*out = v;
	return 0;
}

/* A number field (max_price, min_reliability): a plain or quoted number, not a boolean. */
static int need_num(struct fsw *w, int val, const char *path, double *out)
{
	const char *s = fsw_text(w->d, val);
	if (!s || fsw_num(s, out))
		return fsw_err(w, val, path, "must be a number");
	return 0;
}

/* Copy s without spaces (dstack removes them) into b. */
int fsw_strip(const char *s, char *b, size_t n, bool lower, char *err, size_t errlen)
{
	size_t k = 0;
	for (; *s; s++) {
		if (*s == ' ')
			continue;
		if (k + 1 >= n)
			return fsw_why(err, errlen, "too long");
		b[k++] = lower ? (char)tolower((unsigned char)*s) : *s;
	}
	b[k] = '\0';
	return 0;
}

int fsw_walk(struct fsw *w, int node, const char *path, const char *const *known, fsw_field_fn fn,
	     void *ctx)
{
	char kpath[FSW_PATH];
	size_t n = ydoc_len(w->d, node);
	if (ydoc_kind(w->d, node) != Y_MAP)
		return fsw_err(w, node, path, "must be a mapping, not %s",
			       ywalk_kind(ydoc_kind(w->d, node)));
	for (size_t i = 0; i < n; i++) {
		int k = ydoc_map_key(w->d, node, i);
		const char *ks = fsw_text(w->d, k);
		if (!ks)
			return fsw_err(w, k, path, "keys must be strings");
		if (!str_in(ks, known))
			return fsw_unknown_key(w, k, path, known);
		ywalk_path(kpath, sizeof(kpath), path, ks);
		int r = fn(w, ctx, ks, ydoc_map_val(w->d, node, i), kpath);
		if (r)
			return r;
	}
	return 0;
}

/* ---- durations, nodes, small fields ---- */

/* Duration.parse on a string: an integer, or <n><unit> with unit s/m/h/d/w. */
static int duration_text(const char *s, long long *out)
{
	static const char units[] = "smhdw";
	static const long long mult[] = {1, 60, 3600, 24 * 3600, 7 * 24 * 3600};
	long long n = 0;
	const char *p = s;
	if (!num_parse_ll(s, -FSW_MAX_COUNT, FSW_MAX_COUNT, out))
		return 0;
	for (; isdigit((unsigned char)*p); p++) {
		if (n > FSW_MAX_COUNT)
			return -ERANGE;
		n = n * 10 + (*p - '0');
	}
	if (p == s)
		return -EINVAL;
	while (*p == ' ')
		p++;
	const char *u = *p ? strchr(units, *p) : NULL;
	if (!u || p[1] != '\0')
		return -EINVAL;
	*out = n * mult[u - units];
	return 0;
}

/* idle_duration: seconds, a duration string, off/false/-1 (off: -1), true or null: default. */
static int parse_idle(struct fsw *w, int val, const char *path, bool *nondefault)
{
	const struct ydoc *d = w->d;
	bool b;
	long long v;
	if (ydoc_kind(d, val) == Y_SCALAR && !ydoc_bool(d, val, &b)) {
		w->f->idle_duration = b ? FS_DEFAULT_IDLE : -1;
		*nondefault = !b;
		return 0;
	}
	const char *s = fsw_text(d, val);
	if (s && !strcmp(s, "off")) {
		w->f->idle_duration = -1;
		return 0;
	}
	if (!s || duration_text(s, &v))
		return fsw_err(w, val, path,
			       "must be a duration like 30m, 2h, 3d, 1w (or seconds), "
			       "or off");
	w->f->idle_duration = v < 0 ? -1 : v; /* negative: off, as older clients wrote it */
	return 0;
}

/* A count inside `nodes`: a plain integer, or a string holding one (pydantic's lax int). */
static int nodes_num(const char *s, long long *out)
{
	return num_parse_ll(s, -FSW_MAX_COUNT, FSW_MAX_COUNT, out);
}

static int parse_nodes(struct fsw *w, int val, const char *path)
{
	const struct ydoc *d = w->d;
	struct fleet_spec *f = w->f;
	const char *form = "must be a count, a range like 1..4, or a mapping with min, target "
			   "and max";
	char kpath[FSW_PATH];
	long long v[3] = {0, LLONG_MIN, FS_UNLIMITED}; /* min, target, max */
	bool map = ydoc_kind(d, val) == Y_MAP;
	if (map) {
		static const char *const keys[] = {"min", "target", "max", NULL};
		for (size_t i = 0; i < ydoc_len(d, val); i++) {
			int k = ydoc_map_key(d, val, i), vn = ydoc_map_val(d, val, i);
			const char *ks = fsw_text(d, k);
			size_t j = 0;
			while (j < 3 && (!ks || strcmp(ks, keys[j])))
				j++;
			if (j == 3)
				return fsw_unknown_key(w, k, path, keys);
			ywalk_path(kpath, sizeof(kpath), path, keys[j]);
			if (ydoc_is_null(d, vn))
				continue;
			const char *s = fsw_text(d, vn);
			if (!s || nodes_num(s, &v[j]))
				return fsw_err(w, vn, kpath, "must be an integer");
		}
	} else {
		char b[FSW_MAX_SPEC];
		const char *s = fsw_text(d, val);
		if (!s || fsw_strip(s, b, sizeof(b), false, NULL, 0))
			return fsw_err(w, val, path, "%s", form);
		char *dots = strstr(b, "..");
		if (dots) {
			*dots = '\0';
			if (strstr(dots + 2, "..") || (b[0] && nodes_num(b, &v[0])) ||
			    (dots[2] && nodes_num(dots + 2, &v[2])))
				return fsw_err(w, val, path, "%s", form);
		} else {
			if (nodes_num(b, &v[0]))
				return fsw_err(w, val, path, "%s", form);
			v[2] = v[0];
		}
	}
	if (v[1] == LLONG_MIN)
		v[1] = v[0];
	/* FleetNodesSpec's validators; the object form names the offending key */
	const char *bad = NULL, *msg = NULL;
	if (v[0] < 0)
		bad = "min", msg = "min cannot be negative";
	else if (v[1] < v[0])
		bad = "target", msg = "target must not be less than min";
	else if (v[2] != FS_UNLIMITED && v[2] < v[0])
		bad = "max", msg = "max must not be less than min";
	else if (v[2] != FS_UNLIMITED && v[2] < v[1])
		bad = "max", msg = "max must not be less than target";
	if (bad) {
		if (map)
			ywalk_path(kpath, sizeof(kpath), path, bad);
		return fsw_err(w, val, map ? kpath : path, "%s", msg);
	}
	f->nodes_min = v[0];
	f->nodes_target = v[1];
	f->nodes_max = v[2];
	return 0;
}

/* blocks: an integer >= 1 or "auto" (0). */
static int parse_blocks(struct fsw *w, int val, const char *path, int *out)
{
	long long v;
	const char *s = fsw_text(w->d, val);
	if (s && !strcmp(s, "auto")) {
		*out = 0;
		return 0;
	}
	if (ydoc_kind(w->d, val) != Y_SCALAR || ydoc_int(w->d, val, &v) || v < 1 || v > INT_MAX)
		return fsw_err(w, val, path, "must be an integer >= 1 or auto");
	*out = (int)v;
	return 0;
}

static int parse_strlist(struct fsw *w, int val, const char *path, bool backends, char ***out,
			 size_t *nout)
{
	char ipath[FSW_PATH], list[400];
	size_t n = ydoc_len(w->d, val);
	if (ydoc_kind(w->d, val) != Y_SEQ)
		return fsw_err(w, val, path, "must be a list of strings");
	if (n > FSW_MAX_ITEMS)
		return fsw_err(w, val, path, "must have at most %d items", FSW_MAX_ITEMS);
	char **v = xcalloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		const char *s;
		int it = ydoc_seq_at(w->d, val, i);
		ywalk_path_idx(ipath, sizeof(ipath), path, i);
		int r = fsw_str(w, it, ipath, &s);
		if (!r && backends && !backend_type_known(s)) {
			size_t used = 0;
			list[0] = '\0';
			for (const char *const *t = backend_type_names(); *t && used < sizeof(list); t++) {
				fmt_cut(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
					*t);
				used += strlen(list + used);
			}
			r = fsw_err(w, it, ipath, "unknown backend type (known: %s)", list);
		}
		if (r) {
			for (size_t j = 0; j < i; j++)
				free(v[j]);
			free(v);
			return r;
		}
		v[i] = xstrdup(s);
	}
	*out = v;
	*nout = n;
	return 0;
}

static bool tag_key_ok(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 60)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

static bool tag_value_ok(const char *s)
{
	if (strlen(s) > 256)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(" .:/=_-+@", *s))
			return false;
	return true;
}

static bool env_key_ok(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

static void kv_add(struct kv **v, size_t *n, const char *k, size_t klen, const char *val)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[*n].key = xstrndup(k, klen);
	(*v)[*n].value = xstrdup(val);
	(*n)++;
}

static int parse_tags(struct fsw *w, int val, const char *path)
{
	const struct ydoc *d = w->d;
	char kpath[FSW_PATH];
	size_t n = ydoc_len(d, val);
	if (ydoc_kind(d, val) != Y_MAP)
		return fsw_err(w, val, path, "must be a mapping of strings to strings");
	if (n > FSW_MAX_ITEMS)
		return fsw_err(w, val, path, "must have at most %d entries", FSW_MAX_ITEMS);
	for (size_t i = 0; i < n; i++) {
		int k = ydoc_map_key(d, val, i), v = ydoc_map_val(d, val, i);
		const char *ks, *vs;
		if (fsw_str(w, k, path, &ks))
			return fsw_err(w, k, path, "keys must be strings");
		ywalk_path_user(kpath, sizeof(kpath), path, ks);
		if (!tag_key_ok(ks))
			return fsw_err(w, k, kpath,
				       "invalid tag key: must match ^[_\\-a-zA-Z0-9]{1,60}$");
		int r = fsw_str(w, v, kpath, &vs);
		if (r)
			return r;
		if (!tag_value_ok(vs))
			return fsw_err(
				w, v, kpath,
				"invalid tag value: must match ^[a-zA-Z0-9 .:/=_\\-+@]{0,256}$");
		kv_add(&w->f->tags, &w->f->ntags, ks, strlen(ks), vs);
	}
	return 0;
}

/* env: a list of "KEY=VALUE" or a mapping. A bare "KEY" (take it from the caller's
 * environment) has no meaning here: fleetfs has no CLI process to read it from. */
static int parse_env(struct fsw *w, int val, const char *path, bool *nondefault)
{
	const struct ydoc *d = w->d;
	struct fleet_spec *f = w->f;
	char kpath[FSW_PATH];
	bool seq = ydoc_kind(d, val) == Y_SEQ;
	size_t n = ydoc_len(d, val);
	if (!seq && ydoc_kind(d, val) != Y_MAP)
		return fsw_err(w, val, path, "must be a list of KEY=VALUE or a mapping");
	if (n > FSW_MAX_ITEMS)
		return fsw_err(w, val, path, "must have at most %d entries", FSW_MAX_ITEMS);
	for (size_t i = 0; i < n; i++) {
		const char *s, *eq, *value;
		size_t klen;
		int node = seq ? ydoc_seq_at(d, val, i) : ydoc_map_key(d, val, i);
		if (seq)
			ywalk_path_idx(kpath, sizeof(kpath), path, i);
		else
			fmt_cut(kpath, sizeof(kpath), "%s", path);
		int r = fsw_str(w, node, kpath, &s);
		if (r)
			return r;
		if (seq) {
			eq = strchr(s, '=');
			klen = eq ? (size_t)(eq - s) : strlen(s);
			value = eq ? eq + 1 : NULL;
		} else {
			klen = strlen(s);
			ywalk_path_user(kpath, sizeof(kpath), path, s);
			r = fsw_str(w, ydoc_map_val(d, val, i), kpath, &value);
			if (r)
				return r;
		}
		if (!env_key_ok(s, klen))
			return fsw_err(w, node, kpath,
				       "variable names must match ^[a-zA-Z_][a-zA-Z0-9_]*$");
		if (!value)
			return fsw_err(
				w, node, kpath,
				"must be KEY=VALUE (fleetfs has no environment to take a bare "
				"KEY from)");
		for (size_t j = 0; j < f->nenv; j++)
			if (strlen(f->env[j].key) == klen && !strncmp(f->env[j].key, s, klen))
				return fsw_err(w, node, kpath, "Duplicate environment variable");
		kv_add(&f->env, &f->nenv, s, klen, value);
	}
	*nondefault = n > 0;
	return 0;
}

static int retry_field(struct fsw *w, void *ctx, const char *key, int val, const char *path)
{
	static const char *const events[] = {"no-capacity", "interruption", "error", NULL};
	struct retry_spec *rs = ctx;
	const struct ydoc *d = w->d;
	char ipath[FSW_PATH];
	if (ydoc_is_null(d, val))
		return 0;
	if (!strcmp(key, "duration")) {
		const char *s = fsw_text(d, val);
		if (!s || duration_text(s, &rs->duration) || rs->duration < 0)
			return fsw_err(w, val, path,
				       "must be a duration like 30m, 2h, 1d (or seconds)");
		return 0;
	}
	if (ydoc_kind(d, val) != Y_SEQ)
		return fsw_err(w, val, path, "must be a list of events");
	if (ydoc_len(d, val) == 0)
		return fsw_err(w, val, path, "`on_events` cannot be empty");
	rs->on_events = 0;
	for (size_t i = 0; i < ydoc_len(d, val); i++) {
		int it = ydoc_seq_at(d, val, i);
		const char *s = fsw_text(d, it);
		size_t j = 0;
		while (s && events[j] && strcmp(s, events[j]))
			j++;
		ywalk_path_idx(ipath, sizeof(ipath), path, i);
		if (!s || !events[j])
			return fsw_err(w, it, ipath,
				       "must be one of: no-capacity, interruption, error");
		rs->on_events |= 1u << j;
	}
	return 0;
}

static int parse_retry(struct fsw *w, int val, const char *path)
{
	static const char *const keys[] = {"on_events", "duration", NULL};
	struct retry_spec *rs = &w->f->retry;
	bool b;
	rs->on_events = RETRY_NO_CAPACITY | RETRY_INTERRUPTION | RETRY_ERROR;
	rs->duration = FS_DEFAULT_RETRY;
	if (ydoc_kind(w->d, val) == Y_SCALAR && !ydoc_bool(w->d, val, &b)) {
		rs->enabled = b;
		return 0;
	}
	if (ydoc_kind(w->d, val) != Y_MAP)
		return fsw_err(w, val, path,
			       "must be true, false or a mapping with on_events and duration");
	rs->enabled = true;
	return fsw_walk(w, val, path, keys, retry_field, rs);
}

static int vastai_field(struct fsw *w, void *ctx, const char *key, int val, const char *path)
{
	struct vastai_options *o = ctx;
	const struct ydoc *d = w->d;
	const char *s = fsw_text(d, val);
	if (!strcmp(key, "type")) {
		if (!s || strcmp(s, "vastai"))
			return fsw_err(w, val, path,
				       "must be vastai (the only backend with options)");
		return 0;
	}
	if (ydoc_is_null(d, val))
		return 0;
	if (!strcmp(key, "offer_order")) {
		if (!s || (strcmp(s, "score") && strcmp(s, "price")))
			return fsw_err(w, val, path, "must be one of: score, price");
		fmt_cut(o->offer_order, sizeof(o->offer_order), "%s", s); /* fits: score or price */
		return 0;
	}
	if (!strcmp(key, "min_score")) {
		if (ydoc_kind(d, val) != Y_SCALAR || ydoc_int(d, val, &o->min_score) ||
		    o->min_score < 0)
			return fsw_err(w, val, path, "must be an integer >= 0");
		return 0;
	}
	int r = need_num(w, val, path, &o->min_reliability);
	if (!r && (o->min_reliability < 0 || o->min_reliability > 1))
		r = fsw_err(w, val, path, "must be between 0 and 1");
	return r;
}

static int parse_backend_options(struct fsw *w, int val, const char *path)
{
	static const char *const keys[] = {"type", "offer_order", "min_reliability", "min_score",
					   NULL};
	char ipath[FSW_PATH];
	if (ydoc_kind(w->d, val) != Y_SEQ)
		return fsw_err(w, val, path, "must be a list of backend option mappings");
	for (size_t i = 0; i < ydoc_len(w->d, val); i++) {
		int it = ydoc_seq_at(w->d, val, i);
		ywalk_path_idx(ipath, sizeof(ipath), path, i);
		if (w->f->vastai.set)
			return fsw_err(
				w, it, ipath,
				"backend_options contains duplicate entry for backend 'vastai'");
		w->f->vastai.set = true;
		int r = fsw_walk(w, it, ipath, keys, vastai_field, &w->f->vastai);
		if (r)
			return r;
	}
	return 0;
}

/* ---- IP addresses (Python's ipaddress.is_private, 3.13 tables) ---- */

struct ipnet {
	int family;
	unsigned char a[16];
	int plen;
};

static bool ip_parse(const char *s, struct ipnet *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (inet_pton(AF_INET, s, ip->a) == 1) {
		ip->family = AF_INET;
		ip->plen = 32;
		return true;
	}
	if (inet_pton(AF_INET6, s, ip->a) == 1) {
		ip->family = AF_INET6;
		ip->plen = 128;
		return true;
	}
	return false;
}

static bool ip_in(const unsigned char *a, int family, const char *net, int plen)
{
	struct ipnet n;
	if (!ip_parse(net, &n) || n.family != family)
		return false;
	for (int i = 0; i < plen; i++) {
		int bit = 7 - i % 8;
		if (((a[i / 8] >> bit) & 1) != ((n.a[i / 8] >> bit) & 1))
			return false;
	}
	return true;
}

struct pnet {
	const char *net;
	int plen;
};

static const struct pnet priv4[] = {
	{"0.0.0.0", 8},	     {"10.0.0.0", 8},	      {"127.0.0.0", 8},
	{"169.254.0.0", 16}, {"172.16.0.0", 12},      {"192.0.0.0", 24},
	{"192.0.0.170", 31}, {"192.0.2.0", 24},	      {"192.168.0.0", 16},
	{"198.18.0.0", 15},  {"198.51.100.0", 24},    {"203.0.113.0", 24},
	{"240.0.0.0", 4},    {"255.255.255.255", 32}, {NULL, 0}};
static const struct pnet priv4_except[] = {{"192.0.0.9", 32}, {"192.0.0.10", 32}, {NULL, 0}};
static const struct pnet priv6[] = {{"::1", 128},	 {"::", 128},	 {"::ffff:0:0", 96},
				    {"64:ff9b:1::", 48}, {"100::", 64},	 {"2001::", 23},
				    {"2001:db8::", 32},	 {"2002::", 16}, {"3fff::", 20},
				    {"fc00::", 7},	 {"fe80::", 10}, {NULL, 0}};
static const struct pnet priv6_except[] = {
	{"2001:1::1", 128}, {"2001:1::2", 128}, {"2001:3::", 32}, {"2001:4:112::", 48},
	{"2001:20::", 28},  {"2001:30::", 28},	{NULL, 0}};

/* Is [lo, hi] inside one private block, with neither end in an exception? */
static bool range_private(int family, const unsigned char *lo, const unsigned char *hi)
{
	const struct pnet *p = family == AF_INET ? priv4 : priv6;
	const struct pnet *x = family == AF_INET ? priv4_except : priv6_except;
	bool in = false;
	for (; p->net && !in; p++)
		in = ip_in(lo, family, p->net, p->plen) && ip_in(hi, family, p->net, p->plen);
	for (; x->net && in; x++)
		in = !ip_in(lo, family, x->net, x->plen) && !ip_in(hi, family, x->net, x->plen);
	return in;
}

static bool addr_private(const struct ipnet *ip)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (ip->family == AF_INET6 && !memcmp(ip->a, mapped, 12))
		return range_private(AF_INET, ip->a + 12, ip->a + 12);
	return range_private(ip->family, ip->a, ip->a);
}

/* ip_network(s, strict=False): "addr", "addr/len", or for IPv4 "addr/netmask|hostmask". */
static int net_parse(const char *s, struct ipnet *net, unsigned char *last)
{
	char b[64];
	long long plen;
	if (fmt(b, sizeof(b), "%s", s))
		return -EINVAL;
	char *slash = strchr(b, '/');
	if (slash)
		*slash = '\0';
	if (!ip_parse(b, net))
		return -EINVAL;
	int max = net->plen;
	if (slash && !num_parse_ll(slash + 1, 0, max, &plen) && isdigit((unsigned char)slash[1])) {
		net->plen = (int)plen;
	} else if (slash) {
		struct ipnet m;
		uint32_t v, inv;
		if (net->family != AF_INET || !ip_parse(slash + 1, &m) || m.family != AF_INET)
			return -EINVAL;
		v = (uint32_t)m.a[0] << 24 | (uint32_t)m.a[1] << 16 | (uint32_t)m.a[2] << 8 |
		    m.a[3];
		inv = ~v;
		if ((inv & (inv + 1)) == 0) /* netmask: ones then zeros */
			net->plen = 32 - __builtin_popcount(inv);
		else if ((v & (v + 1)) == 0) /* hostmask: zeros then ones */
			net->plen = 32 - __builtin_popcount(v);
		else
			return -EINVAL;
	}
	memcpy(last, net->a, 16);
	for (int i = net->plen; i < max; i++) {
		net->a[i / 8] &= (unsigned char)~(1u << (7 - i % 8));
		last[i / 8] |= (unsigned char)(1u << (7 - i % 8));
	}
	return 0;
}

/* ---- identity files ---- */

/* Read, check and remember the identity file val names (each file once per parse). */
static int load_key(struct fsw *w, int val, const char *path, const struct keyfile **out)
{
	char abs[PATH_MAX], reason[PATH_MAX + 128];
	const char *p;
	char *data = NULL;
	size_t len = 0;
	int r = fsw_str(w, val, path, &p);
	if (r)
		return r;
	if (!*p)
		return fsw_err(w, val, path, "must not be empty");
	if (fileref_resolve(w->ctx, p, abs, sizeof(abs), reason, sizeof(reason)))
		return fsw_err(w, val, path, "%s", reason);
	for (size_t i = 0; i < w->nkeys; i++) {
		if (!strcmp(w->keys[i]->abs, abs)) {
			*out = w->keys[i];
			return 0;
		}
	}
	r = fileref_read(w->ctx, abs, FS_MAX_KEY, &data, &len, reason, sizeof(reason));
	if (r == -EINVAL)
		return fsw_err(w, val, path, "%s", reason);
	if (r)
		return r;
	r = sshkey_check(data, len, reason, sizeof(reason));
	if (r == -EINVAL) {
		char shown[STR_REDACT_LEN];
		str_redact(shown, sizeof(shown), abs);
		r = fsw_err(w, val, path, "%s: %s", shown, reason);
	}
	if (r) {
		OPENSSL_cleanse(data, len);
		free(data);
		return r;
	}
	struct keyfile *k = xmalloc(sizeof(*k));
	*k = (struct keyfile){.abs = xstrdup(abs), .data = data, .len = len};
	w->keys = xrealloc(w->keys, (w->nkeys + 1) * sizeof(*w->keys));
	w->keys[w->nkeys++] = k;
	*out = k;
	return 0;
}

/* ---- ssh_config (§1.4) ---- */

static void ep_clear(struct ssh_endpoint *ep)
{
	if (!ep)
		return;
	free(ep->hostname);
	free(ep->user);
	if (ep->key)
		OPENSSL_cleanse(ep->key, ep->keylen);
	free(ep->key);
	free(ep->key_path);
	memset(ep, 0, sizeof(*ep));
}

static int ep_set(struct ssh_endpoint *ep, const char *host, long long port, const char *user,
		  const char *key, size_t keylen, const char *key_path)
{
	ep->hostname = xstrdup(host);
	ep->port = port ? (int)port : 22;
	ep->user = xstrdup(user);
	ep->key = malloc(keylen + 1); /* input-sized */
	if (!ep->key)
		return -ENOMEM;
	memcpy(ep->key, key, keylen);
	ep->key[keylen] = '\0';
	ep->keylen = keylen;
	ep->key_path = key_path ? xstrdup(key_path) : NULL;
	return 0;
}

static int ep_dup(const struct ssh_endpoint *src, struct ssh_endpoint **out)
{
	struct ssh_endpoint *ep = xcalloc(1, sizeof(*ep));
	int r = ep_set(ep, src->hostname, src->port, src->user, src->key, src->keylen,
		       src->key_path);
	if (r) {
		ep_clear(ep);
		free(ep);
		return r;
	}
	*out = ep;
	return 0;
}

static int ssh_key_refused(struct fsw *w, int val, const char *path)
{
	return fsw_err(w, val, path,
		       "is the wire form dstack's CLI makes from identity_file; write "
		       "identity_file instead");
}

struct proxy_raw {
	const char *host, *user;
	long long port;
	const struct keyfile *key;
};

static int proxy_field(struct fsw *w, void *ctx, const char *key, int val, const char *path)
{
	struct proxy_raw *p = ctx;
	if (!strcmp(key, "ssh_key"))
		return ssh_key_refused(w, val, path);
	if (ydoc_is_null(w->d, val))
		return 0;
	if (!strcmp(key, "hostname"))
		return need_token(w, val, path, 255, &p->host);
	if (!strcmp(key, "user"))
		return need_token(w, val, path, 255, &p->user);
	if (!strcmp(key, "port"))
		return need_int(w, val, path, 1, 65535, &p->port);
	return load_key(w, val, path, &p->key);
}

/* SSHProxyParams: hostname, user and identity_file required; port defaults to 22. */
static int parse_proxy(struct fsw *w, int val, const char *path, struct ssh_endpoint **out)
{
	static const char *const keys[] = {"hostname",	    "port",    "user",
					   "identity_file", "ssh_key", NULL};
	struct proxy_raw p = {0};
	char kpath[FSW_PATH];
	int r = fsw_walk(w, val, path, keys, proxy_field, &p);
	if (r)
		return r;
	const char *missing = !p.host	? "hostname"
			      : !p.user ? "user"
			      : !p.key	? "identity_file"
					: NULL;
	if (missing) {
		ywalk_path(kpath, sizeof(kpath), path, missing);
		return fsw_err(w, val, kpath, "required field is missing");
	}
	struct ssh_endpoint *ep = xcalloc(1, sizeof(*ep));
	r = ep_set(ep, p.host, p.port, p.user, p.key->data, p.key->len, p.key->abs);
	if (r) {
		ep_clear(ep);
		free(ep);
		return r;
	}
	*out = ep;
	return 0;
}

struct host_raw {
	const char *host, *user;
	char ip[INET6_ADDRSTRLEN]; /* "" or the normalized internal_ip */
	long long port;
	const struct keyfile *key;
	struct ssh_endpoint *proxy;
	int blocks; /* -1: the fleet's */
};

static int host_field(struct fsw *w, void *ctx, const char *key, int val, const char *path)
{
	struct host_raw *h = ctx;
	if (!strcmp(key, "ssh_key"))
		return ssh_key_refused(w, val, path);
	if (ydoc_is_null(w->d, val))
		return 0;
	if (!strcmp(key, "hostname"))
		return need_token(w, val, path, 255, &h->host);
	if (!strcmp(key, "user"))
		return need_token(w, val, path, 255, &h->user);
	if (!strcmp(key, "port"))
		return need_int(w, val, path, 1, 65535, &h->port);
	if (!strcmp(key, "identity_file"))
		return load_key(w, val, path, &h->key);
	if (!strcmp(key, "proxy_jump"))
		return parse_proxy(w, val, path, &h->proxy);
	if (!strcmp(key, "blocks"))
		return parse_blocks(w, val, path, &h->blocks);
	struct ipnet ip;
	const char *s;
	int r = fsw_str(w, val, path, &s);
	if (r)
		return r;
	if (!ip_parse(s, &ip))
		return fsw_err(w, val, path, "Invalid IP address");
	if (!addr_private(&ip))
		return fsw_err(w, val, path, "IP address is not private");
	inet_ntop(ip.family, ip.a, h->ip, sizeof(h->ip));
	return 0;
}

/* One hosts[] item, resolved against the fleet's ssh_config (create_fleet_ssh_instance_model):
 * user, key, port and proxy_jump from the host, else from the fleet. */
static int parse_host(struct fsw *w, int val, const char *path, const struct sshdef *def,
		      struct ssh_host *out)
{
	static const char *const keys[] = {"hostname",	    "port",	  "user",
					   "identity_file", "proxy_jump", "internal_ip",
					   "ssh_key",	    "blocks",	  NULL};
	struct host_raw h = {.blocks = -1};
	char kpath[FSW_PATH];
	int r;
	if (ydoc_kind(w->d, val) == Y_MAP) {
		r = fsw_walk(w, val, path, keys, host_field, &h);
		if (!r && !h.host) {
			ywalk_path(kpath, sizeof(kpath), path, "hostname");
			r = fsw_err(w, val, kpath, "required field is missing");
		}
	} else {
		r = need_token(w, val, path, 255, &h.host);
	}
	const struct keyfile *key = h.key ? h.key : def->key;
	const char *user = h.user ? h.user : def->user;
	if (!r && !key)
		r = fsw_err(w, val, path,
			    "No ssh key specified for this host: set identity_file on "
			    "the host or in ssh_config");
	if (!r && !user)
		r = fsw_err(w, val, path,
			    "No ssh user specified for this host: set user on the host "
			    "or in ssh_config");
	if (!r)
		r = ep_set(&out->ep, h.host, h.port ? h.port : def->port, user, key->data, key->len,
			   key->abs);
	if (!r && h.proxy) {
		out->proxy = h.proxy;
		h.proxy = NULL;
	} else if (!r && def->proxy) {
		r = ep_dup(def->proxy, &out->proxy);
	}
	if (!r && h.ip[0])
		out->internal_ip = xstrdup(h.ip);
	out->blocks = h.blocks;
	if (h.proxy) {
		ep_clear(h.proxy);
		free(h.proxy);
	}
	return r;
}

struct ssh_ctx {
	struct sshdef def;
	int hosts;
	int network;
};

static int ssh_field(struct fsw *w, void *ctx, const char *key, int val, const char *path)
{
	struct ssh_ctx *c = ctx;
	if (!strcmp(key, "ssh_key"))
		return ssh_key_refused(w, val, path);
	if (!strcmp(key, "hosts")) {
		c->hosts = val;
		return 0;
	}
	if (ydoc_is_null(w->d, val))
		return 0;
	if (!strcmp(key, "user"))
		return need_token(w, val, path, 255, &c->def.user);
	if (!strcmp(key, "port"))
		return need_int(w, val, path, 1, 65535, &c->def.port);
	if (!strcmp(key, "identity_file"))
		return load_key(w, val, path, &c->def.key);
	if (!strcmp(key, "proxy_jump"))
		return parse_proxy(w, val, path, &c->def.proxy);
	/* network */
	struct ipnet net;
	unsigned char last[16];
	char text[INET6_ADDRSTRLEN];
	const char *s;
	int r = fsw_str(w, val, path, &s);
	if (r)
		return r;
	if (net_parse(s, &net, last))
		return fsw_err(w, val, path, "Failed to parse network (expected <ip>/<prefix>)");
	if (!range_private(net.family, net.a, last))
		return fsw_err(w, val, path,
			       "Public network is specified when private network is required");
	inet_ntop(net.family, net.a, text, sizeof(text));
	w->f->network = xasprintf("%s/%d", text, net.plen);
	c->network = val;
	return 0;
}

static int parse_ssh_config(struct fsw *w, int val, const char *path)
{
	static const char *const keys[] = {"user",  "port",	  "identity_file", "ssh_key",
					   "hosts", "proxy_jump", "network",	   NULL};
	struct fleet_spec *f = w->f;
	struct ssh_ctx c = {0};
	char hpath[FSW_PATH], ipath[FSW_PATH];
	size_t nip = 0;
	int r = fsw_walk(w, val, path, keys, ssh_field, &c);
	ywalk_path(hpath, sizeof(hpath), path, "hosts");
	if (!r && !c.hosts)
		r = fsw_err(w, val, hpath, "required field is missing");
	if (!r && ydoc_kind(w->d, c.hosts) != Y_SEQ)
		r = fsw_err(w, c.hosts, hpath, "must be a list of hostnames or host mappings");
	if (!r && ydoc_len(w->d, c.hosts) > FSW_MAX_ITEMS)
		r = fsw_err(w, c.hosts, hpath, "must have at most %d items", FSW_MAX_ITEMS);
	size_t n = r ? 0 : ydoc_len(w->d, c.hosts);
	if (n)
		f->hosts = xcalloc(n, sizeof(*f->hosts));
	for (size_t i = 0; i < n && !r; i++) {
		int it = ydoc_seq_at(w->d, c.hosts, i);
		ywalk_path_idx(ipath, sizeof(ipath), hpath, i);
		r = parse_host(w, it, ipath, &c.def, &f->hosts[f->nhosts++]);
		for (size_t j = 0; !r && j + 1 < f->nhosts; j++)
			if (!strcmp(f->hosts[j].ep.hostname, f->hosts[i].ep.hostname))
				r = fsw_err(w, it, ipath, "this hostname appears twice in hosts");
		nip += f->hosts[i].internal_ip != NULL;
	}
	/* _validate_internal_ips */
	for (size_t i = 0; !r && nip && nip < n; i++) {
		if (f->hosts[i].internal_ip)
			continue;
		ywalk_path_idx(ipath, sizeof(ipath), hpath, i);
		r = fsw_err(w, ydoc_seq_at(w->d, c.hosts, i), ipath,
			    "internal_ip must be specified for all hosts");
	}
	if (!r && nip && c.network) {
		ywalk_path(ipath, sizeof(ipath), path, "network");
		r = fsw_err(w, c.network, ipath, "internal_ip is mutually exclusive with network");
	}
	if (c.def.proxy) {
		ep_clear(c.def.proxy);
		free(c.def.proxy);
	}
	return r;
}

/* ---- the top level ---- */

enum grp { G_COMMON, G_BACKEND, G_SSH };

static const struct top_field {
	const char *name;
	enum grp grp;
} top_fields[] = {
	{"type", G_COMMON},
	{"name", G_COMMON},
	{"placement", G_COMMON},
	{"blocks", G_COMMON},
	{"nodes", G_BACKEND},
	{"reservation", G_BACKEND},
	{"resources", G_BACKEND},
	{"backends", G_BACKEND},
	{"regions", G_BACKEND},
	{"availability_zones", G_BACKEND},
	{"instance_types", G_BACKEND},
	{"spot_policy", G_BACKEND},
	{"retry", G_BACKEND},
	{"max_price", G_BACKEND},
	{"idle_duration", G_BACKEND},
	{"tags", G_BACKEND},
	{"backend_options", G_BACKEND},
	{"ssh_config", G_SSH},
	{"env", G_SSH},
	{NULL, G_COMMON},
};

/* One top-level field with a non-null value. Sets *nondefault when the value differs from
 * dstack's default (what the backend-only/SSH-only rule looks at). */
static int top_value(struct fsw *w, const char *key, int val, bool *nondefault)
{
	struct fleet_spec *f = w->f;
	const char *s = NULL;
	int r;
	*nondefault = true;
	if (!strcmp(key, "type")) {
		s = fsw_text(w->d, val);
		return s && !strcmp(s, "fleet") ? 0 : fsw_err(w, val, key, "must be fleet");
	}
	if (!strcmp(key, "name")) {
		r = fsw_str(w, val, key, &s);
		if (!r && strcmp(s, f->name))
			r = fsw_err(w, val, key, "must equal the file name without .yml");
		return r;
	}
	if (!strcmp(key, "placement")) {
		s = fsw_text(w->d, val);
		if (!s || (strcmp(s, "any") && strcmp(s, "cluster")))
			return fsw_err(w, val, key, "must be one of: any, cluster");
		f->placement = strcmp(s, "any") ? PLACEMENT_CLUSTER : PLACEMENT_ANY;
		return 0;
	}
	if (!strcmp(key, "blocks"))
		return parse_blocks(w, val, key, &f->blocks);
	if (!strcmp(key, "nodes"))
		return parse_nodes(w, val, key);
	if (!strcmp(key, "reservation")) {
		r = fsw_str(w, val, key, &s);
		if (!r)
			f->reservation = xstrdup(s);
		return r;
	}
	if (!strcmp(key, "resources"))
		return fsw_resources(w, val, key);
	if (!strcmp(key, "backends"))
		return parse_strlist(w, val, key, true, &f->backends, &f->nbackends);
	if (!strcmp(key, "regions"))
		return parse_strlist(w, val, key, false, &f->regions, &f->nregions);
	if (!strcmp(key, "availability_zones"))
		return parse_strlist(w, val, key, false, &f->availability_zones, &f->nazs);
	if (!strcmp(key, "instance_types"))
		return parse_strlist(w, val, key, false, &f->instance_types, &f->ninstance_types);
	if (!strcmp(key, "spot_policy")) {
		static const char *const pol[] = {"on-demand", "spot", "auto", NULL};
		s = fsw_text(w->d, val);
		if (!s || !str_in(s, pol))
			return fsw_err(w, val, key, "must be one of: spot, on-demand, auto");
		f->spot_policy = !strcmp(s, "spot")   ? SPOT_SPOT
				 : !strcmp(s, "auto") ? SPOT_AUTO
						      : SPOT_ON_DEMAND;
		return 0;
	}
	if (!strcmp(key, "retry"))
		return parse_retry(w, val, key);
	if (!strcmp(key, "max_price")) {
		r = need_num(w, val, key, &f->max_price);
		if (!r && !(f->max_price > 0))
			r = fsw_err(w, val, key, "must be greater than 0");
		return r;
	}
	if (!strcmp(key, "idle_duration"))
		return parse_idle(w, val, key, nondefault);
	if (!strcmp(key, "tags"))
		return parse_tags(w, val, key);
	if (!strcmp(key, "backend_options"))
		return parse_backend_options(w, val, key);
	if (!strcmp(key, "ssh_config")) {
		f->ssh = true;
		return parse_ssh_config(w, val, key);
	}
	return parse_env(w, val, key, nondefault);
}

static bool fleet_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 2 || n > 41 || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || isdigit((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

static int parse_root(struct fsw *w, int root)
{
	const struct ydoc *d = w->d;
	struct fleet_spec *f = w->f;
	int nodes = 0, ssh = 0, backend_only = 0, ssh_only = 0;
	const char *backend_key = NULL, *ssh_key = NULL;
	if (!root)
		return fsw_err(w, 0, "", "No ssh_config or nodes specified");
	if (ydoc_kind(d, root) != Y_MAP)
		return fsw_err(w, root, "", "a fleet configuration must be a mapping, not %s",
			       ywalk_kind(ydoc_kind(d, root)));
	/* the kind of fleet first: its errors say more than those inside either section */
	int has_nodes = ydoc_map_get(d, root, "nodes"), has_ssh = ydoc_map_get(d, root, "ssh_config");
	if (has_nodes && !ydoc_is_null(d, has_nodes) && has_ssh && !ydoc_is_null(d, has_ssh)) {
		int key = has_ssh;
		for (size_t i = 0; i < ydoc_len(d, root); i++)
			if (ydoc_map_val(d, root, i) == has_ssh)
				key = ydoc_map_key(d, root, i);
		return fsw_err(w, key, "ssh_config", "ssh_config and nodes are mutually exclusive");
	}
	for (size_t i = 0; i < ydoc_len(d, root); i++) {
		int k = ydoc_map_key(d, root, i), v = ydoc_map_val(d, root, i);
		const char *ks = fsw_text(d, k);
		const struct top_field *t = top_fields;
		bool nondefault = false;
		if (!ks)
			return fsw_err(w, k, "", "keys must be strings");
		while (t->name && strcmp(t->name, ks))
			t++;
		if (!t->name) {
			const char *known[sizeof(top_fields) / sizeof(top_fields[0])];
			size_t nk = 0;
			for (const struct top_field *q = top_fields; q->name; q++)
				known[nk++] = q->name;
			known[nk] = NULL;
			return fsw_unknown_key(w, k, "", known);
		}
		if (ydoc_is_null(d, v)) {
			/* Optional[...] = None; these three have non-null defaults */
			if (!strcmp(ks, "type") || !strcmp(ks, "blocks") || !strcmp(ks, "env"))
				return fsw_err(w, v, ks,
					       "must not be null (omit it for the default)");
			continue;
		}
		int r = top_value(w, ks, v, &nondefault);
		if (r)
			return r;
		if (!strcmp(ks, "nodes"))
			nodes = v;
		else if (!strcmp(ks, "ssh_config"))
			ssh = k;
		else if (nondefault && t->grp == G_BACKEND && !backend_only)
			backend_only = k, backend_key = t->name;
		else if (nondefault && t->grp == G_SSH && !ssh_only)
			ssh_only = k, ssh_key = t->name;
	}
	/* _validate_fleet_configuration_subtype_specific_fields */
	if (!nodes && !ssh)
		return fsw_err(w, root, "", "No ssh_config or nodes specified");
	if (nodes && ssh)
		return fsw_err(w, ssh, "ssh_config", "ssh_config and nodes are mutually exclusive");
	if (ssh && backend_only)
		return fsw_err(
			w, backend_only, backend_key,
			"SSH fleet configuration does not support this field (it is for backend "
			"fleets)");
	if (nodes && ssh_only)
		return fsw_err(w, ssh_only, ssh_key, "is currently supported for SSH fleets only");
	for (size_t i = 0; i < f->nhosts; i++)
		if (f->hosts[i].blocks < 0)
			f->hosts[i].blocks = f->blocks;
	return 0;
}

void fleetspec_free(struct fleet_spec *f)
{
	if (!f)
		return;
	gpu_spec_free(&f->resources.gpu);
	char ***lists[] = {&f->backends, &f->regions, &f->availability_zones, &f->instance_types};
	size_t ns[] = {f->nbackends, f->nregions, f->nazs, f->ninstance_types};
	for (size_t l = 0; l < 4; l++) {
		for (size_t i = 0; i < ns[l]; i++)
			free((*lists[l])[i]);
		free(*lists[l]);
	}
	free(f->reservation);
	for (size_t i = 0; i < f->ntags; i++) {
		free(f->tags[i].key);
		free(f->tags[i].value);
	}
	free(f->tags);
	for (size_t i = 0; i < f->nenv; i++) {
		free(f->env[i].key);
		free(f->env[i].value);
	}
	free(f->env);
	for (size_t i = 0; i < f->nhosts; i++) {
		ep_clear(&f->hosts[i].ep);
		ep_clear(f->hosts[i].proxy);
		free(f->hosts[i].proxy);
		free(f->hosts[i].internal_ip);
	}
	free(f->hosts);
	free(f->network);
	free(f);
}

int fleetspec_parse(const char *data, size_t len, const char *fname, const char *name,
		    const struct fileref_ctx *ctx, struct fleet_spec **out, char *err, size_t errlen)
{
	struct ydoc *d = NULL;
	struct fleet_spec *f = NULL;
	struct fsw w = {.ctx = ctx, .err = err, .errlen = errlen};
	*out = NULL;
	int r = ydoc_load(data, len, fname, &d, err, errlen);
	if (r)
		return r;
	w.d = d;
	if (!fleet_name_ok(name)) {
		r = ydoc_err(d, 0, "name", err, errlen,
			     "the fleet name (the file name without .yml) must match " NAME_RULE);
		goto out;
	}
	f = xcalloc(1, sizeof(*f));
	w.f = f;
	fmt_cut(f->name, sizeof(f->name), "%s", name); /* fits: fleet_name_ok, at most 41 */
	f->blocks = 1;
	f->max_price = -1;
	f->idle_duration = FS_DEFAULT_IDLE;
	f->spot_policy = SPOT_ON_DEMAND;
	f->retry.duration = FS_DEFAULT_RETRY;
	f->vastai.min_reliability = -1;
	f->vastai.min_score = -1;
	fsw_resources_defaults(&f->resources, false);
	r = parse_root(&w, ydoc_root(d));
	if (!r) {
		*out = f;
		f = NULL;
	}
out:
	for (size_t i = 0; i < w.nkeys; i++) {
		OPENSSL_cleanse(w.keys[i]->data, w.keys[i]->len);
		free(w.keys[i]->data);
		free(w.keys[i]->abs);
		free(w.keys[i]);
	}
	free(w.keys);
	fleetspec_free(f);
	ydoc_free(d);
	if (r && r != -ENOMEM && r != -EFBIG)
		r = -EINVAL;
	return r;
}

/* ---- in-place updates (§1.7) ---- */

static int uerr(char *err, size_t errlen, const char *field, const char *f, ...)
	__attribute__((format(printf, 4, 5)));

static int uerr(char *err, size_t errlen, const char *field, const char *f, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, f);
	vfmt_cut(msg, sizeof(msg), f, ap);
	va_end(ap);
	fmt_cut(err, errlen, "%s: %s", field, msg);
	return -EINVAL;
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* Connection parameters; where the key came from (identity_file) does not matter. */
static bool ep_eq(const struct ssh_endpoint *a, const struct ssh_endpoint *b)
{
	if (!a || !b)
		return a == b;
	return str_eq(a->hostname, b->hostname) && a->port == b->port && str_eq(a->user, b->user) &&
	       a->keylen == b->keylen && (a->keylen == 0 || !memcmp(a->key, b->key, a->keylen));
}

static bool kv_eq(const struct kv *a, size_t na, const struct kv *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i].key, b[i].key) || strcmp(a[i].value, b[i].value))
			return false;
	return true;
}

#define NOT_IN_PLACE "cannot be changed in place; delete the fleet and create it again"

int fleetspec_update_check(const struct fleet_spec *cur, const struct fleet_spec *next, char *err,
			   size_t errlen)
{
	if (cur->ssh != next->ssh)
		return uerr(err, errlen, next->ssh ? "ssh_config" : "nodes",
			    "the fleet type changed from %s to %s; " NOT_IN_PLACE,
			    cur->ssh ? "SSH" : "backend", next->ssh ? "SSH" : "backend");
	if (strcmp(cur->name, next->name))
		return uerr(err, errlen, "name", NOT_IN_PLACE);
	if (cur->placement != next->placement)
		return uerr(err, errlen, "placement", NOT_IN_PLACE);
	if (cur->blocks != next->blocks)
		return uerr(err, errlen, "blocks", NOT_IN_PLACE);
	if (!cur->ssh) {
		/* nodes, reservation, tags, resources, backends, regions, availability_zones,
		 * instance_types, spot_policy and max_price may change (#3766, #3775) */
		if (cur->idle_duration != next->idle_duration)
			return uerr(err, errlen, "idle_duration", NOT_IN_PLACE);
		if (cur->retry.enabled != next->retry.enabled ||
		    (cur->retry.enabled && (cur->retry.on_events != next->retry.on_events ||
					    cur->retry.duration != next->retry.duration)))
			return uerr(err, errlen, "retry", NOT_IN_PLACE);
		if (cur->vastai.set != next->vastai.set ||
		    strcmp(cur->vastai.offer_order, next->vastai.offer_order) ||
		    cur->vastai.min_reliability != next->vastai.min_reliability ||
		    cur->vastai.min_score != next->vastai.min_score)
			return uerr(err, errlen, "backend_options", NOT_IN_PLACE);
		return 0;
	}
	if (!str_eq(cur->network, next->network))
		return uerr(err, errlen, "ssh_config.network", NOT_IN_PLACE);
	if (!kv_eq(cur->env, cur->nenv, next->env, next->nenv))
		return uerr(err, errlen, "env", NOT_IN_PLACE);
	for (size_t i = 0; i < next->nhosts; i++) {
		const struct ssh_host *n = &next->hosts[i];
		for (size_t j = 0; j < cur->nhosts; j++) {
			const struct ssh_host *c = &cur->hosts[j];
			char field[64], host[128];
			if (strcmp(c->ep.hostname, n->ep.hostname))
				continue;
			if (ep_eq(&c->ep, &n->ep) && ep_eq(c->proxy, n->proxy) &&
			    str_eq(c->internal_ip, n->internal_ip) && c->blocks == n->blocks)
				break;
			str_redact(host, sizeof(host), n->ep.hostname);
			fmt_cut(field, sizeof(field), "ssh_config.hosts[%zu]", i);
			return uerr(
				err, errlen, field,
				"host %s: its connection parameters cannot be changed in place; "
				"hosts may only be added or removed",
				host);
		}
	}
	return 0;
}
