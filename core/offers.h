/* offers: gpuhunt-format catalogs, offers, requirement queries and dstack's matching.
 *
 * A catalog is one CSV per gpuhunt provider (reference: dstack-core.md §3.4), read from a
 * directory (<dir>/<provider>.csv). Offers are matched against a query — the name of a query
 * directory under offers/, e.g. "gpu=A100:80GB:2,spot=true" — with dstack's semantics
 * (§1.8 grammar via core/fleetspec.h, §1.9 matching, §3.2 filters). Nothing here does I/O
 * beyond reading the CSV file; nothing knows FUSE.
 */
#ifndef FLEETFS_OFFERS_H
#define FLEETFS_OFFERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleetspec.h"
#include "util.h"

#define OFFER_MAX_GPUS 16

struct offer {
	char backend[32];      /* fleetfs backend type (lambda, not lambdalabs) */
	char region[64];
	char instance[96];
	bool spot;
	double price;          /* USD per hour */
	int cpus;
	char cpu_arch[8];      /* x86, arm */
	uint64_t memory_mib;
	uint64_t disk_mib;     /* 0 = unknown */
	char gpu_vendor[16];   /* "" when no GPU */
	char gpu_name[32];
	int gpu_count;
	uint64_t gpu_memory_mib; /* per GPU */
	char availability[16]; /* unknown, available, not_available, ... */
	char source[16];       /* "catalog" */
};

struct offer_list {
	struct offer *v;
	size_t n, cap;
};

void offer_list_free(struct offer_list *l);

/* gpuhunt provider name for a backend type (lambda -> lambdalabs, datacrunch -> verda, ...),
 * or NULL when the type has no catalog. */
const char *offers_catalog_provider(const char *backend_type);

/* Append the offers of <dir>/<provider>.csv to l, tagged with backend. Malformed rows are
 * skipped and counted in *skipped (may be NULL). 0, -ENOENT (no such file), -EINVAL (not a
 * gpuhunt CSV: header missing columns; reason in err), -EFBIG (over 256 MiB), -ENOMEM.
 * Columns are found by header name (any order; unknown columns ignored). Required:
 * instance_name, location, price, cpu, memory, gpu_count, spot; the optional ones (gpu_name,
 * gpu_memory, disk_size, gpu_vendor, flags, cpu_arch) read as empty when absent. A row is
 * malformed when a number does not parse, spot is not True/False, cpu_arch is not x86/arm,
 * a GPU row has no name, or a text field does not fit struct offer. Rows carrying a flag that
 * dstack does not allow (§1.9 allowed_flags) are dropped without being counted: dstack never
 * offers them. Parsing is RFC 4180 (libcsv, lenient like Python's csv module). On error l
 * keeps what it had before the call. */
int offers_read_csv(const char *path, const char *backend, struct offer_list *l,
		    size_t *skipped, char *err, size_t errlen);

/* Sort cheapest first (stable: ties keep catalog order). */
void offers_sort(struct offer_list *l);

/* The offer's file name: "<backend>:<region>:<instance>[:spot]", every character outside
 * [A-Za-z0-9._-] replaced by '_'. */
void offer_name(const struct offer *o, char *out, size_t outlen);

/* A query: "key=value,key=value" with keys
 *   gpu (§1.8 GPUSpec string), cpu ([arch:]count range, e.g. "arm:8.."), memory, disk
 *   (memory ranges, GB by default), spot (true | false | auto; auto and absent = both),
 *   max_price (USD/h), compute_capability (minimum, "8.0"; only NVIDIA GPUs with a known
 *   name match), backends, regions, instance_types (lists).
 * List separator: '+' (backends=aws+lambda, gpu=H100+A100:8). Because ',' separates keys, a
 * ','-segment without '=' continues the previous value as a list item, so the dstack forms
 * gpu=H100,A100:8 and backends=aws,lambda are read the same way. Keys may appear once; empty
 * values, unknown keys and grammar errors are -EINVAL with the reason in err (values are not
 * echoed). "" is the empty query (everything). Absent keys do not constrain (dstack's
 * ResourcesSpec.unconstrained(): gpu count 0.., so CPU-only offers match unless a gpu is
 * asked for). backends match the offer's backend or its gpuhunt provider name, all lists
 * case-insensitively. On success *out is owned by the caller (offers_query_free). */
struct offer_query;
int offers_query_parse(const char *s, struct offer_query **out, char *err, size_t errlen);
void offers_query_free(struct offer_query *q);
/* dstack's matching of one offer against the query (q NULL = everything): gpuhunt's
 * matches() (§1.9) plus the server's backend/region/instance-type filters (§3.2). */
bool offers_match(const struct offer_query *q, const struct offer *o);

/* Renderings, appended to out (0, -EFBIG past out's limit, -ENOMEM).
 * offer_yaml: one mapping with backend, region, instance, spot, price, gpus {vendor, name,
 *   memory_mib, count} (vendor and name "" and count 0 for CPU-only), cpus, cpu_arch,
 *   memory_mib, disk_mib, availability, source.
 * offers_tsv: the header line "name backend region instance spot price gpu_vendor gpu_name
 *   gpu_memory_mib gpu_count cpus cpu_arch memory_mib disk_mib availability source"
 *   (tab-separated), then one row per offer of l matching q (NULL = all), in list order;
 *   tabs and newlines inside values become spaces.
 * offers_json: a JSON array of objects with the offer_yaml fields plus "name", same rows. */
int offer_yaml(const struct offer *o, struct buf *out);
int offers_tsv(const struct offer_list *l, const struct offer_query *q, struct buf *out);
int offers_json(const struct offer_list *l, const struct offer_query *q, struct buf *out);

#endif
