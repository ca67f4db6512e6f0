/* ydoc: a bounded, read-only view of one YAML document (libyaml's document API).
 *
 * Loading enforces the limits of everything that comes from outside: at most YDOC_MAX_BYTES
 * of input, nesting depth YDOC_MAX_DEPTH, and an alias-expanded size of YDOC_MAX_NODES (an
 * alias bomb is rejected instead of walked). Recursive aliases are rejected. Multi-document
 * streams are rejected. Node ids are libyaml's (1-based); 0 means "no node".
 *
 * Errors are formatted "FILE:LINE: FIELD: message" (FIELD omitted when empty) and returned as
 * -EINVAL. FIELD is a path of our schema's field names; user text (a key, a value) appears in
 * a message only as str_redact() shows it ("lmb…" (22 chars)), so secrets never reach
 * events.
 */
#ifndef FLEETFS_YDOC_H
#define FLEETFS_YDOC_H

#include <stdbool.h>
#include <stddef.h>

#define YDOC_MAX_BYTES (1024 * 1024)
#define YDOC_MAX_DEPTH 64
#define YDOC_MAX_NODES 100000

struct ydoc;

enum ykind { Y_NONE = 0, Y_SCALAR, Y_SEQ, Y_MAP };

/* Parse buf (len bytes, need not be NUL-terminated). fname names the file in messages and is
 * copied. On success *out owns the document (free with ydoc_free). Returns 0, -EINVAL (syntax,
 * limits; message in err), -EFBIG (len > YDOC_MAX_BYTES), -ENOMEM. An empty document (only
 * comments or whitespace) loads fine and has root 0. */
int ydoc_load(const char *buf, size_t len, const char *fname, struct ydoc **out, char *err,
	      size_t errlen);
void ydoc_free(struct ydoc *d);
/* The same, wiping every scalar first (a document that holds credentials). */
void ydoc_free_secret(struct ydoc *d);

int ydoc_root(const struct ydoc *d);
const char *ydoc_file(const struct ydoc *d);
enum ykind ydoc_kind(const struct ydoc *d, int node);
/* 1-based line where the node starts. */
size_t ydoc_line(const struct ydoc *d, int node);

/* Scalar text (NUL-terminated, borrowed until ydoc_free) or NULL if not a scalar. */
const char *ydoc_str(const struct ydoc *d, int node);
/* True for a plain (unquoted) scalar. */
bool ydoc_plain(const struct ydoc *d, int node);
/* YAML null: plain "", "~", "null", "Null", "NULL"; or node 0. */
bool ydoc_is_null(const struct ydoc *d, int node);
/* YAML 1.1 bool as PyYAML reads it: plain true/false/yes/no/on/off in any common case.
 * Returns 0 and sets *out, or -EINVAL. */
int ydoc_bool(const struct ydoc *d, int node, bool *out);
/* Plain integer scalar. Returns 0 or -EINVAL/-ERANGE. */
int ydoc_int(const struct ydoc *d, int node, long long *out);

/* Number of sequence items or mapping pairs (0 for scalars). */
size_t ydoc_len(const struct ydoc *d, int node);
int ydoc_seq_at(const struct ydoc *d, int node, size_t i);
int ydoc_map_key(const struct ydoc *d, int node, size_t i);
int ydoc_map_val(const struct ydoc *d, int node, size_t i);
/* Value node of the first pair whose key is the scalar key, or 0. */
int ydoc_map_get(const struct ydoc *d, int node, const char *key);

/* Format "FILE:LINE: FIELD: message" for node into err and return -EINVAL. field may be NULL
 * or "" (then omitted); node may be 0 (then line 1). */
int ydoc_err(const struct ydoc *d, int node, const char *field, char *err, size_t errlen,
	     const char *f, ...) __attribute__((format(printf, 6, 7)));

/* Structural equality of two subtrees (scalars compared by text and plain-ness of null/bool
 * does not matter: text only). Used to skip unchanged backends on a root config apply. */
bool ydoc_equal(const struct ydoc *a, int na, const struct ydoc *b, int nb);

/* Emit the subtree at node as a standalone block-style YAML document into a malloc'd string
 * (caller frees). Returns 0 or -ENOMEM/-EINVAL. */
int ydoc_emit(const struct ydoc *d, int node, char **out, size_t *outlen);
/* The same, leaving out the pair whose key is skip in the top-level mapping. */
int ydoc_emit_skip(const struct ydoc *d, int node, const char *skip, char **out, size_t *outlen);

#endif
