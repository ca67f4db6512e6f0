/* offcache: the offers of a project, built from the catalogs of its configured backends and
 * kept in memory as an immutable, refcounted snapshot per project; a new snapshot is built
 * when the state generation changes (a backend config was written or removed). FUSE threads
 * only take and drop references: lookups are a binary search by name. */
#ifndef FLEETFS_OFFCACHE_H
#define FLEETFS_OFFCACHE_H

#include "../core/offers.h"
#include "fs.h"

struct fs;

struct offsnap {
	unsigned refs;
	char project[64];
	uint64_t gen;
	struct offer_list list;   /* cheapest first */
	char (*names)[128];       /* offer_name of list.v[i] */
	size_t *by_name;          /* indices sorted by name */
	char note[512];           /* why the list is empty or short (no catalog, read errors) */
};

/* A snapshot of project's offers (never NULL on 0). Release with offcache_put. 0/-errno. */
int offcache_get(struct fs *fs, const char *project, struct offsnap **out);
void offcache_put(struct fs *fs, struct offsnap *s);
/* Index of the offer named name, or -1. */
long offsnap_find(const struct offsnap *s, const char *name);
void offcache_destroy(struct fs *fs);
/* Build the snapshot of the project whose offers directory (or query directory) is dir,
 * if it is out of date, without fs->lock held: callers do this before taking the lock so a
 * large catalog never stalls the mount while it is parsed. */
void offcache_warm(struct fs *fs, fuse_ino_t dir);

#endif
