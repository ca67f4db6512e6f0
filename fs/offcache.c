/* offcache: see offcache.h. */
#include "offcache.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/store.h"
#include "internal.h"

#define OFFCACHE_PROJECTS 64

static const struct offsnap *cmp_snap;

static int cmp_names(const void *a, const void *b)
{
	return strcmp(cmp_snap->names[*(const size_t *)a], cmp_snap->names[*(const size_t *)b]);
}

static void snap_free(struct offsnap *s)
{
	if (!s)
		return;
	offer_list_free(&s->list);
	free(s->names);
	free(s->by_name);
	free(s);
}

static struct offsnap *build(struct fs *fs, const char *project, uint64_t gen)
{
	struct offsnap *s = xcalloc(1, sizeof(*s));
	struct stx *tx = NULL;
	struct st_backend *bs = NULL;
	size_t nb = 0, skipped = 0;
	s->refs = 1;
	s->gen = gen;
	fmt(s->project, sizeof(s->project), "%s", project);
	if (!fs->catalog) {
		fmt(s->note, sizeof(s->note), "no catalog: mount with -o catalog=DIR");
	} else if (store_begin(fs->store, false, &tx) == 0) {
		store_backend_list(tx, project, &bs, &nb);
		store_abort(tx);
		for (size_t i = 0; i < nb; i++) {
			const char *prov = bs[i].has_config ? offers_catalog_provider(bs[i].type) : NULL;
			char path[4096], err[256];
			if (!prov)
				continue;
			fmt(path, sizeof(path), "%s/%s.csv", fs->catalog, prov);
			int r = offers_read_csv(path, bs[i].name, &s->list, &skipped, err, sizeof(err));
			if (r)
				fmt(s->note, sizeof(s->note), "%s: %s", path,
				    r == -EINVAL ? err : strerror(-r));
		}
		free(bs);
	}
	offers_sort(&s->list);
	s->names = xcalloc(s->list.n ? s->list.n : 1, sizeof(*s->names));
	s->by_name = xcalloc(s->list.n ? s->list.n : 1, sizeof(*s->by_name));
	for (size_t i = 0; i < s->list.n; i++) {
		offer_name(&s->list.v[i], s->names[i], sizeof(s->names[i]));
		s->by_name[i] = i;
	}
	pthread_mutex_lock(&fs->offers_lock);
	cmp_snap = s; /* qsort has no context argument; serialised by offers_lock */
	qsort(s->by_name, s->list.n, sizeof(*s->by_name), cmp_names);
	cmp_snap = NULL;
	pthread_mutex_unlock(&fs->offers_lock);
	/* parsing a large catalog leaves freed buffers behind: give them back */
	malloc_trim(0);
	return s;
}

int offcache_get(struct fs *fs, const char *project, struct offsnap **out)
{
	pthread_mutex_lock(&fs->cache_lock);
	uint64_t gen = fs->gen;
	pthread_mutex_unlock(&fs->cache_lock);
	pthread_mutex_lock(&fs->offers_lock);
	for (size_t i = 0; i < fs->noffsnaps; i++) {
		struct offsnap *s = fs->offsnaps[i];
		if (!strcmp(s->project, project) && s->gen == gen) {
			s->refs++;
			pthread_mutex_unlock(&fs->offers_lock);
			*out = s;
			return 0;
		}
	}
	pthread_mutex_unlock(&fs->offers_lock);
	struct offsnap *s = build(fs, project, gen);
	pthread_mutex_lock(&fs->offers_lock);
	/* replace this project's older snapshot (or the oldest slot when full) */
	size_t slot = fs->noffsnaps;
	for (size_t i = 0; i < fs->noffsnaps; i++)
		if (!strcmp(fs->offsnaps[i]->project, project))
			slot = i;
	if (slot == fs->noffsnaps && fs->noffsnaps == OFFCACHE_PROJECTS)
		slot = 0;
	if (slot < fs->noffsnaps) {
		struct offsnap *old = fs->offsnaps[slot];
		if (--old->refs == 0)
			snap_free(old);
	} else {
		fs->noffsnaps++;
	}
	fs->offsnaps[slot] = s;
	s->refs++; /* the caller's */
	pthread_mutex_unlock(&fs->offers_lock);
	*out = s;
	return 0;
}

void offcache_put(struct fs *fs, struct offsnap *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&fs->offers_lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&fs->offers_lock);
	if (last)
		snap_free(s);
}

long offsnap_find(const struct offsnap *s, const char *name)
{
	size_t lo = 0, hi = s->list.n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s->names[s->by_name[mid]], name);
		if (!c)
			return (long)s->by_name[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

void offcache_destroy(struct fs *fs)
{
	for (size_t i = 0; i < fs->noffsnaps; i++)
		snap_free(fs->offsnaps[i]);
	fs->noffsnaps = 0;
}

void offcache_warm(struct fs *fs, fuse_ino_t dir)
{
	char project[STORE_NAME_MAX] = "";
	pthread_mutex_lock(&fs->lock);
	struct node *n = tree_get(fs, dir);
	if (n && (n->kind == N_OFFERS || n->kind == N_OQUERY))
		fmt(project, sizeof(project), "%s", n->project);
	pthread_mutex_unlock(&fs->lock);
	if (!project[0])
		return;
	struct offsnap *s = NULL;
	if (offcache_get(fs, project, &s) == 0)
		offcache_put(fs, s);
}
