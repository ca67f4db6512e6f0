/* offer: what can be rented, as fleetfs's model shares it between the layers.
 *
 * An offer is one instance type in one region of one backend at a price, as gpuhunt's
 * catalogs and the providers' live APIs describe it. This header is below core/ and the
 * backends: providers build offer lists, the cache stores them as CSV, core/ matches them
 * against queries (core/offers.h). Nothing here does I/O beyond reading a CSV file.
 */
#ifndef FLEETFS_MODEL_OFFER_H
#define FLEETFS_MODEL_OFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/util.h"

/* The disk sizes a backend type can be given, in GB (dstack's CONFIGURABLE_DISK_SIZE per
 * compute); max < 0 = unbounded. {0, 0} reads as {1, -1}. */
struct disk_range {
	double min, max;
};

/* The lower bound of the wanted range [wmin, wmax] (wmax < 0: unbounded; wmin < 0: dstack's
 * default request, 100GB..) within r, in GB, or < 0 when they do not meet. */
double disk_range_pick(const struct disk_range *r, double wmin, double wmax);

/* GB (as catalogs give sizes) to MiB (as offers keep them), rounded. */
uint64_t gb_to_mib(double gb);

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

/* Where parsed offers come from: stamped on every offer. */
struct offer_origin {
	const char *backend; /* backend name */
	const char *type;    /* backend type */
	const char *source;  /* "catalog", "api" */
	int64_t fetched_at;
	struct disk_range disk; /* the backend type's disk sizes ({0, 0}: 1.. unbounded) */
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
 * bound of dstack's default disk request (100GB..) within org->disk (dropped when they do not
 * meet). Parsing is RFC 4180 (libcsv, lenient like Python's csv module). On error
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
void offers_filter_regions(struct offer_list *l, const char *const *regions, size_t n);

/* Sort cheapest first (stable: ties keep catalog order). */
void offers_sort(struct offer_list *l);

/* The offer's file name: "<backend>:<region>:<instance>[:spot]", every character outside
 * [A-Za-z0-9._-] replaced by '_'. */
void offer_name(const struct offer *o, char *out, size_t outlen);

#endif
