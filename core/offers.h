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

#include "../model/offer.h"
#include "fleetspec.h"

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
