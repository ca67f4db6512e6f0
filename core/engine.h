/* engine: the worker threads that drive instances to their fleet's spec
 * (docs/internals/engine.md).
 *
 * A scheduler thread scans the instance rows in the store and queues the ones that are due:
 * pending/provisioning rows whose next try has come, idle/busy rows whose periodic check is
 * due, terminating rows at once. Worker threads take them one at a time per row (a row is
 * never worked on by two threads), do the slow part (SSH) outside any store transaction, and
 * write the result in one transaction that re-reads the row first, so a spec change made
 * meanwhile (say, the host was removed) wins. All state is in the store: after a crash the
 * next mount's engine just continues from the rows.
 *
 * Time constants (backoff 1, 2, 5, 10, 30 min; idle checks every 60 s) are multiplied by
 * $FLEETFS_TIME_SCALE (default 1) so tests can run them in seconds.
 */
#ifndef FLEETFS_ENGINE_H
#define FLEETFS_ENGINE_H

#include "../cache/store.h"

struct engine;

struct cloud;

/* Start the scheduler and `workers` worker threads; cloud (copied; NULL: backend fleets
 * stay pending) is what instances on providers need. 0 or -errno. */
int engine_start(struct store *s, int workers, const struct cloud *cloud, struct engine **out);
/* Stop and join every thread (in-flight SSH calls finish within their timeout). NULL ok. */
void engine_stop(struct engine *e);
/* Something changed (a spec commit): scan now. */
void engine_wake(struct engine *e);
/* A live read of an instance's status: when its last check is older than ttl_ms, check it
 * now (readers of the same instance share one check) and wait at most wait_ms for it. */
void engine_check(struct engine *e, const char *project, const char *fleet, unsigned num,
		  int ttl_ms, int wait_ms);

#endif
