/* offcache: the offers of a project as the FUSE face serves them: an immutable, refcounted
 * snapshot per project built from the offers cache in the store (core/offerd.h keeps that
 * fresh in the background). A snapshot is reused while the project's cached offers are the
 * same (same backends, configs and fetch times); FUSE threads only take and drop references,
 * and lookups are a binary search by name. */
#ifndef FLEETFS_OFFCACHE_H
#define FLEETFS_OFFCACHE_H

#include "../core/offers.h"
#include "fs.h"

struct fs;

struct offsnap {
	unsigned refs;
	char project[64];
	uint64_t gen;             /* state generation it was last found current at */
	char *sig;                /* what it was built from: backend|digest|data_at;... */
	struct offer_list list;   /* cheapest first */
	char *names;              /* the offers' unique names (list.v[i].name), NUL-separated */
	uint32_t *by_name;        /* indices sorted by name */
};

/* A snapshot of project's offers (never NULL on 0). Release with offcache_put. Never waits
 * on the network (safe under fs->lock); queues a background refresh of stale offers. */
int offcache_get(struct fs *fs, const char *project, struct offsnap **out);
void offcache_put(struct fs *fs, struct offsnap *s);
static inline const char *offsnap_name(const struct offsnap *s, size_t i)
{
	return s->list.v[i].name;
}
/* Index of the offer named name, or -1. */
long offsnap_find(const struct offsnap *s, const char *name);
void offcache_destroy(struct fs *fs);
/* Before a lookup or listing in dir (the offers directory or a query directory), without
 * fs->lock held: wait, bounded, for the first fetch of backends that have nothing cached yet,
 * and build the snapshot so the locked part finds it ready. */
void offcache_warm(struct fs *fs, fuse_ino_t dir);
/* The same for a project, before a table or offer file is opened. */
void offcache_prepare(struct fs *fs, const char *project);
/* Forced refresh of every backend of the project (touch offers/): waits like a first fetch.
 * Returns how many refreshes were still running when the wait ended. */
int offcache_refresh(struct fs *fs, const char *project);

#endif
