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

/* Strings of an offer point into the string pool of the list that holds it (interned: equal
 * strings share one copy), so an offer is only valid while its list is. */
struct offer {
	const char *name;         /* its file name when the holder made names unique, or NULL
				   * (renderings then use offer_name) */
	const char *backend;      /* the backend's name (its directory: lambda, aws-dev, ...) */
	const char *type;         /* backend type (lambda, not lambdalabs) */
	const char *region;
	const char *instance;
	const char *cpu_arch;     /* x86, arm */
	const char *gpu_vendor;   /* "" when no GPU */
	const char *gpu_name;
	const char *availability; /* unknown, available, not_available, no_quota, ... */
	const char *source;       /* catalog, api */
	double price;             /* USD per hour */
	int64_t fetched_at;       /* when its source was read, unix seconds (0 unknown) */
	uint64_t memory_mib;
	uint64_t disk_mib;        /* the catalog's disk, or the backend's default (below) */
	uint64_t gpu_memory_mib;  /* per GPU */
	int cpus;
	int gpu_count;
	bool spot;
	bool disk_fixed;          /* disk_mib came from the catalog */
};

struct strpool;

struct offer_list {
	struct offer *v;
	size_t n, cap;
	struct strpool *pool; /* owns the offers' strings; created on first use */
};

void offer_list_free(struct offer_list *l);
/* The pooled copy of s (NULL -> ""). */
const char *offer_list_intern(struct offer_list *l, const char *s);
/* Append o to l, interning its strings into l's pool (o may point into another list). */
int offer_list_push(struct offer_list *l, const struct offer *o);

/* gpuhunt provider name for a backend type (lambda -> lambdalabs, datacrunch -> verda, ...),
 * or NULL when the type has no catalog. */
const char *offers_catalog_provider(const char *backend_type);

/* The disk sizes a backend type can be given, in GB (dstack's CONFIGURABLE_DISK_SIZE per
 * compute: aws 100..16384, azure 30..4095, gcp 20..32768, oci 50..32768, nebius 40..8192,
 * verda/datacrunch 50.., others 1..); max < 0 = unbounded. */
void offers_disk_range(const char *type, double *min, double *max);

/* Where parsed offers come from: stamped on every offer. */
struct offer_origin {
	const char *backend; /* backend name */
	const char *type;    /* backend type */
	const char *source;  /* "catalog", "api" */
	int64_t fetched_at;
};

/* Append the offers of a gpuhunt-format CSV (data, len) to l. Malformed rows are skipped and
 * added to *skipped (may be NULL). 0, -EINVAL (not a gpuhunt CSV: header missing columns;
 * reason in err), -EFBIG (over 256 MiB), -ENOMEM.
 * Columns are found by header name (any order; unknown columns ignored). Required:
 * instance_name, location, price, cpu, memory, gpu_count, spot; the optional ones (gpu_name,
 * gpu_memory, disk_size, gpu_vendor, flags, cpu_arch, and fleetfs's own availability) read
 * as empty when absent. A row is malformed when a number does not parse, spot is not
 * True/False, cpu_arch is not x86/arm, a GPU row has no name, or a text field is longer than
 * 255 bytes. Rows carrying a flag that dstack does not allow (§1.9 allowed_flags) are dropped
 * without being counted: dstack never offers them. A row without disk_size gets the lower
 * bound of dstack's default disk request (100GB..) within the type's disk range (dropped when
 * they do not meet). Parsing is RFC 4180 (libcsv, lenient like Python's csv module). On error
 * l keeps what it had before the call. */
int offers_parse_csv(const char *data, size_t len, const struct offer_origin *org,
		     struct offer_list *l, size_t *skipped, char *err, size_t errlen);
/* The same from a file (-ENOENT and other open errors as -errno, reason in err). */
int offers_read_csv(const char *path, const struct offer_origin *org, struct offer_list *l,
		    size_t *skipped, char *err, size_t errlen);
/* Write l as a gpuhunt-format CSV that offers_parse_csv reads back to the same offers (the
 * offers cache's format): the 13 gpuhunt columns fleetfs uses plus availability; disk_size
 * empty where the disk was not fixed by the catalog. */
int offers_write_csv(const struct offer_list *l, struct buf *out);
/* Keep only offers in one of the regions (a location equal to a region, or a zone of it:
 * "<region>-..."; case-insensitive). n == 0 keeps everything. */
void offers_filter_regions(struct offer_list *l, char *const *regions, size_t n);

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
/* The query a backend fleet's spec makes (resources, spot_policy, max_price, backends,
 * regions, instance_types), as dstack's Requirements. Never fails; free with
 * offers_query_free. */
struct offer_query *offers_query_from_spec(const struct fleet_spec *f);
/* dstack's provisioning filter: availability unknown, available or idle. */
bool offers_available(const struct offer *o);
/* dstack's matching of one offer against the query (q NULL = everything): gpuhunt's
 * matches() (§1.9) plus the server's backend/region/instance-type filters (§3.2). */
bool offers_match(const struct offer_query *q, const struct offer *o);

/* The disk the offer gets under q: the catalog's, or the lower bound of q's disk range (the
 * default 100GB.. when q has none) within the backend's range; 0 when they do not meet (then
 * the offer does not match q). */
uint64_t offers_disk_for(const struct offer_query *q, const struct offer *o);

/* Renderings, appended to out (0, -EFBIG past out's limit, -ENOMEM). Under a query q (may be
 * NULL) the disk shown is offers_disk_for(q, o).
 * offer_yaml: one mapping with backend, type, region, instance, spot, price, gpus {vendor,
 *   name, memory_mib, count} (vendor and name "" and count 0 for CPU-only), cpus, cpu_arch,
 *   memory_mib, disk_mib, availability, source, fetched_at (ISO 8601 UTC).
 * offers_tsv: the header line "name backend region instance spot price gpu_vendor gpu_name
 *   gpu_memory_mib gpu_count cpus cpu_arch memory_mib disk_mib availability source
 *   fetched_at" (tab-separated), then one row per offer of l matching q (NULL = all), in
 *   list order; tabs and newlines inside values become spaces.
 * offers_json: a JSON array of objects with the offer_yaml fields plus "name", same rows. */
int offer_yaml(const struct offer *o, const struct offer_query *q, struct buf *out);
int offers_tsv(const struct offer_list *l, const struct offer_query *q, struct buf *out);
int offers_json(const struct offer_list *l, const struct offer_query *q, struct buf *out);

#endif
