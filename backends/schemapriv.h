/* schemapriv: the inside of the config schemas (backends/schema.c + backends/schemas.c).
 *
 * schemas.c holds the data: one field table per config shape (what dstack's
 * src/dstack/_internal/core/backends/<type>/models.py declares, restated) and the few
 * cross-field hooks that a table cannot say (AWS VPC coverage, Azure networks, ...);
 * registry.c gives each backend type one. schema.c holds the one generic walker that
 * interprets the tables, the file reader and the content checks (JSON, PEM, kubeconfig, OCI
 * config). The walker interface below is what the hooks use; nothing here is visible outside
 * backends/.
 */
#ifndef FLEETFS_SCHEMAPRIV_H
#define FLEETFS_SCHEMAPRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "schema.h"
#include "../lib/ywalk.h"

/* Longest dotted field path we build ("os_images.nvidia.owner", "tags.<key>", "regions[3]"). */
#define SCHW_PATH 256
/* Most items in any list or map of a backend entry (bounds the quadratic checks). */
#define SCH_MAX_ITEMS 1000

/* One validation in progress. */
struct schw {
	const struct ydoc *d;
	const struct fileref_ctx *ctx;
	struct schema_result *res;
	char *err;
	size_t errlen;
	int top; /* the backend entry's mapping node */
};

enum sch_kind {
	SCH_STR,   /* scalar; numbers count as text (dstack: coerce_numbers_to_str), booleans not */
	SCH_BOOL,  /* ydoc_bool */
	SCH_INT,   /* ydoc_int */
	SCH_LIST,  /* sequence of strings; of strings or mappings (.obj) when .obj is set */
	SCH_MAP,   /* mapping of string keys to string values */
	SCH_OBJ,   /* mapping described by .obj */
	SCH_CREDS, /* mapping whose `type` selects one of .creds->variants */
};

#define SCH_REQ 1u     /* the key must be present and not null */
#define SCH_NOTNULL 2u /* the key may be omitted (dstack has a default) but not null */

/* Extra check of a value that passed its kind check. Returns 0 or -EINVAL with err set. */
typedef int (*sch_check_fn)(struct schw *w, int val, const char *path);
/* Cross-field check of a mapping whose every field passed. */
typedef int (*sch_post_fn)(struct schw *w, int obj, const char *path);

struct sch_obj;
struct sch_creds;

struct sch_field {
	const char *name;
	enum sch_kind kind;
	unsigned flags;
	const struct sch_obj *obj;     /* SCH_OBJ; SCH_LIST items that are mappings */
	const struct sch_creds *creds; /* SCH_CREDS */
	const char *const *oneof;     /* SCH_STR, SCH_LIST items: allowed values, NULL-terminated */
	size_t max;                   /* SCH_LIST, SCH_MAP: most items (0: SCH_MAX_ITEMS) */
	sch_check_fn check;            /* may be NULL */
};

/* Two keys that may not both be set (null counts as unset). */
struct sch_excl {
	const char *a, *b;
};

struct sch_obj {
	const struct sch_field *fields; /* terminated by .name == NULL */
	const struct sch_excl *excl;    /* terminated by .a == NULL; may be NULL */
	sch_post_fn post;               /* may be NULL */
};

struct sch_variant {
	const char *type; /* the creds.type literal */
	const struct sch_obj *obj;
};

struct sch_creds {
	const struct sch_variant *variants; /* terminated by .type == NULL */
	const char *deflt; /* variant used when `type` is omitted; NULL: `type` is required */
};

/* The field tables of backends/schemas.c, one per config shape; backends/registry.c gives
 * each backend type one. A provider whose config is none of these declares its own
 * (static) in its file. */
extern const struct sch_obj schema_api_regions, schema_aws, schema_azure, schema_gcp,
	schema_nebius, schema_oci, schema_verda, schema_cudo, schema_do, schema_hotaisle,
	schema_community, schema_kube;

/* What a referenced file or inline blob must parse as. */
enum sch_content {
	SCH_C_GCP_SA,     /* GCP service-account JSON (client_email, private_key, token_uri) */
	SCH_C_NEBIUS_SA,  /* Nebius credentials JSON ("subject-credentials", RS256, RSA key) */
	SCH_C_PEM_RSA,    /* PEM RSA private key, decrypted with .pass when set */
	SCH_C_KUBECONFIG, /* kubeconfig YAML; the entry's contexts must exist in it */
	SCH_C_OCI_CONFIG, /* OCI CLI config (INI) holding section .profile */
};

/* A file key and an inline-content key of one mapping, read the way dstack's fill_data does:
 * inline content, when set, wins and is only checked; otherwise the file is read, checked and
 * attached. */
struct sch_fill {
	const char *file;    /* key naming a file, e.g. "filename" */
	const char *data;    /* key holding the content inline, e.g. "data"; may be NULL */
	enum sch_content kind;
	bool exclusive;      /* both set (non-empty) is an error; "" counts as unset (OCI) */
	bool optional;       /* neither set is fine */
	const char *pass;    /* SCH_C_PEM_RSA: passphrase or NULL */
	const char *profile; /* SCH_C_OCI_CONFIG: section that must exist */
};

/* Format "FILE:LINE: PATH: message" for node into w->err. Returns -EINVAL. Never pass a
 * scalar's value as an argument: messages name keys, not values. */
int schw_err(struct schw *w, int node, const char *path, const char *f, ...)
	__attribute__((format(printf, 4, 5)));
/* Value node of key in mapping obj when present and not null, else 0. */
int schw_get(const struct schw *w, int obj, const char *key);
/* Scalar text of schw_get(), or NULL. Borrowed from the document. */
const char *schw_str(const struct schw *w, int obj, const char *key);
/* Resolve and check one file/inline pair of mapping obj (at path) as described above.
 * Returns 0, -EINVAL (message set) or -ENOMEM. */
int schw_fill(struct schw *w, int obj, const char *path, const struct sch_fill *f);

/* dstack's default AWS regions (where its images are published), NULL-terminated: an aws
 * backend without `regions` uses these. */
extern const char *const aws_default_regions[];

/* Is key: value a tag AWS takes (and dstack keeps): key 1-128, value 0-256 characters of
 * [\w .:/=+-@], the key not starting with "aws:". */
bool aws_tag_valid(const char *key, const char *value);

#endif
