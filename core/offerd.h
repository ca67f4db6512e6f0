/* offerd: keeps the offers cache (store: offers db) fresh, in the background.
 *
 * Per project and backend the store holds the backend's offers (CSV) and their metadata
 * (JSON, "m/<project>/<backend>"):
 *   digest      the backend config's digest the offers were fetched for
 *   data_at     when the cached offers were fetched (unix s; 0 = nothing cached)
 *   checked_at  last successful refresh, including "source unchanged"
 *   attempt_at  last refresh attempt
 *   version, source, count, skipped
 *   error, error_at   the last failed refresh ("" after a success)
 * Offers are fresh for the backend type's TTL (backend.h), then served stale while one
 * background refresh runs; concurrent requests for the same backend are coalesced into one
 * refresh. A failed refresh keeps the cached offers, records the error (status, events)
 * and is retried after OFFERD_RETRY seconds at the earliest. Nothing is ever fetched while
 * a caller holds a lock: callers that need offers that are not cached yet (a config was just
 * written) wait, bounded.
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

struct offerd;
struct catalog;
struct http_client;

struct offerd *offerd_new(struct store *s, struct catalog *cat, struct http_client *http);
int offerd_start(struct offerd *od);
void offerd_stop(struct offerd *od);
void offerd_free(struct offerd *od);

/* Queue refreshes for the project's backends whose offers are missing, from an older
 * config, or stale (all of them when force). Then wait up to wait_ms for the refreshes of
 * backends that have nothing usable cached (and, when force, for all queued ones).
 * Cheap when nothing is due: repeated calls within a second return at once unless force.
 * Returns the number of those refreshes still running when the wait ended. */
int offerd_check(struct offerd *od, const char *project, int wait_ms, bool force);

/* The project's state changed (a backend config was written, say): the next check looks at
 * the store even if the last one was less than a second ago. NULL: every project. */
void offerd_changed(struct offerd *od, const char *project);

/* Reading the cache (in the caller's read transaction): the offers of every backend of the
 * project whose cache is usable (fetched for its current config), appended to out, unsorted;
 * and a signature that changes whenever those offers do. */
void offerd_load(struct stx *tx, const char *project, struct offer_list *out);
void offerd_signature(struct stx *tx, const char *project, struct buf *sig);

/* The metadata key of a backend's offers cache; data key is the same with 'd'. */
void offerd_key(char *dst, size_t n, char kind, const char *project, const char *backend);

#endif
