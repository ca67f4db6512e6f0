/* offerd: keeps the offers cache (store: offers db) fresh, in the background.
 *
 * Per project and backend the store holds the backend's offers (CSV) and their metadata
 * (JSON, "m/<project>/<backend>"):
 *   digest      the backend config's digest the offers were fetched for
 *   src         the source they come from (offerd_source_key)
 *   data_at     when the cached offers were fetched (unix s; 0 = nothing cached)
 *   checked_at  last successful refresh, including "source unchanged"
 *   attempt_at  last refresh attempt
 *   version, source, count, skipped
 *   error, error_at   the last failed refresh ("" after a success)
 * Refreshes are keyed by source: a catalog provider, or a provider API at one endpoint under
 * one set of credentials. However many projects and backends use a source, it is fetched
 * once per refresh, and the result is fanned out (each backend keeps its own region and type
 * cuts; backends with the same config share one fetch outright). Offers are fresh for the
 * backend type's TTL (backend.h), then served stale while one background refresh of the
 * source runs. A failed refresh keeps the cached offers, records the error (status, events)
 * and is retried after OFFERD_RETRY seconds at the earliest; the source is remembered as
 * failed, so for its TTL no listing waits on it. Nothing is ever fetched while a caller holds
 * a lock: callers that need offers that are not cached yet (a config was just written) wait,
 * bounded, at most once per source run.
 *
 * All times are multiplied by FLEETFS_TIME_SCALE (tests run with 0.01).
 */
#ifndef FLEETFS_OFFERD_H
#define FLEETFS_OFFERD_H

#include <stdbool.h>

#include "../cache/store.h"
#include "offers.h"

#define OFFERD_THREADS 2
#define OFFERD_RETRY 60
#define OFFERD_SOURCE_MAX 96

struct offerd;
struct catalog;
struct http_client;

struct bk_memo;
struct offerd *offerd_new(struct store *s, struct catalog *cat, struct http_client *http,
			  struct bk_memo *bkmemo);
int offerd_start(struct offerd *od);
void offerd_stop(struct offerd *od);
void offerd_free(struct offerd *od);

/* Queue refreshes of the sources of the project's backends whose offers are missing, from an
 * older config, or stale (all of them when force). Then wait up to wait_ms for the refreshes
 * of backends that have nothing usable cached (and, when force, for all queued ones) — but
 * never for a source whose last refresh failed within its TTL (unless force), nor for a
 * refresh another caller already gave up waiting for.
 * Cheap when nothing is due: after a check that found every backend settled, calls within a
 * second return at once unless force.
 * Returns the number of those source refreshes still running when the wait ended. */
int offerd_check(struct offerd *od, const char *project, int wait_ms, bool force);

/* The project's state changed (a backend config was written, say): the next check looks at
 * the store even if the last one was less than a second ago. NULL: every project. */
void offerd_changed(struct offerd *od, const char *project);

/* Reading the cache (in the caller's read transaction): the offers of every backend of the
 * project whose cache is usable (fetched for its current config), appended to out, unsorted;
 * and a signature that changes whenever those offers do. */
void offerd_load(struct stx *tx, const char *project, struct offer_list *out);
void offerd_signature(struct stx *tx, const char *project, struct buf *sig);

/* The source a backend's offers come from, into out (n bytes, OFFERD_SOURCE_MAX is enough):
 * "catalog/<provider>" for catalog types, "<type>/<16 hex>" for types with a live API, the
 * hex a keyed digest (store_digest) of the API endpoint and the config's `creds` — never the
 * credentials themselves. 0, -ENOTSUP (the type has no offers), -ENAMETOOLONG. */
int offerd_source_key(struct store *s, const char *type, const char *config, size_t len,
		      char *out, size_t n);

/* Counters for tests and benches: source runs started, fetches made (one per group of
 * backends with the same config in a run). */
struct offerd_stats {
	unsigned long runs, fetch_groups;
};
void offerd_stats(struct offerd *od, struct offerd_stats *st);

/* The metadata key of a backend's offers cache; data key is the same with 'd'. */
void offerd_key(char *dst, size_t n, char kind, const char *project, const char *backend);
/* The offers cache's record of a backend (core/records.h) into out, decoded (defaults when
 * there is none); true when there is one. Free out with offers_meta_free either way. */
struct offers_meta;
bool offerd_meta(struct stx *tx, const char *project, const char *backend,
		 struct offers_meta *out);

#endif
