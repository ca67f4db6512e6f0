/* fleetpriv: private half of the fleetspec module (core/fleetspec.c + core/fleetres.c).
 *
 * fleetspec.c walks a fleet file (the top level, nodes, ssh_config, keys, updates);
 * fleetres.c holds the resources grammar (§1.8 of the reference). What both use is the walker
 * below: one parse in progress and the helpers that read YAML scalars the way dstack's
 * pydantic models do. Nothing here is visible outside core/.
 */
#ifndef FLEETFS_FLEETPRIV_H
#define FLEETFS_FLEETPRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/ywalk.h"
#include "fleetspec.h"

#define FSW_PATH 256		   /* longest dotted field path we build */
#define FSW_MAX_ITEMS 1000	   /* most items in any list or map of a fleet file */
#define FSW_MAX_SPEC 256	   /* longest resources/nodes/duration string */
#define FSW_MAX_COUNT 1000000000LL /* counts, nodes */

struct keyfile {
	char *abs;  /* resolved path */
	char *data; /* the key text, NUL-terminated past len */
	size_t len;
};

/* One parse in progress. */
struct fsw {
	const struct ydoc *d;
	const struct fileref_ctx *ctx;
	struct fleet_spec *f;
	char *err;
	size_t errlen;
	struct keyfile **keys; /* identity files read so far, each once (stable pointers) */
	size_t nkeys;
};

/* ydoc_err into w's buffer: "FILE:LINE: PATH: message". Returns -EINVAL. */
int fsw_err(struct fsw *w, int node, const char *path, const char *f, ...)
	__attribute__((format(printf, 4, 5)));
/* The reason of a string-level parser (no file/line) into err (may be NULL). -EINVAL. */
int fsw_why(char *err, size_t errlen, const char *msg);
/* "PATH: unknown key "abc…" (N chars) (did you mean W?)" for key node k of the mapping at
 * PATH; known (NULL-terminated, may be NULL) only feeds the suggestion. Returns -EINVAL. */
int fsw_unknown_key(struct fsw *w, int k, const char *path, const char *const *known);
/* A plain YAML 1.1 boolean word. */
bool fsw_is_bool(const struct ydoc *d, int n);
/* A scalar that is neither null nor a boolean, or NULL. */
const char *fsw_text(const struct ydoc *d, int n);
/* A `str` field (numbers coerced to text; null, booleans, lists, mappings refused). */
int fsw_str(struct fsw *w, int val, const char *path, const char **out);
/* A decimal number as Python's float() reads one, without inf, nan or hex: 0 or -EINVAL. */
int fsw_num(const char *s, double *out);
/* Copy s without spaces (lowercased if lower) into b (n bytes); -EINVAL when too long. */
int fsw_strip(const char *s, char *b, size_t n, bool lower, char *err, size_t errlen);

/* Walk a mapping: every key must be a string in `known`; fn runs per pair (null values too),
 * in document order. */
typedef int (*fsw_field_fn)(struct fsw *w, void *ctx, const char *key, int val, const char *path);
int fsw_walk(struct fsw *w, int node, const char *path, const char *const *known, fsw_field_fn fn,
	     void *ctx);

/* fleetres.c: dstack's ResourcesSpec() defaults (given) or ResourcesSpec.unconstrained(),
 * and the `resources:` mapping at val. */
void fsw_resources_defaults(struct resources *res, bool given);
int fsw_resources(struct fsw *w, int val, const char *path);

#endif
