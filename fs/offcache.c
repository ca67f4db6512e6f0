/* offcache: see offcache.h. */
#include "offcache.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/store.h"
#include "../core/offerd.h"
#include "internal.h"

#define OFFCACHE_PROJECTS 64

struct named {
	char *name;
	uint32_t i; /* index in the list (cheapest first) */
};

static int cmp_named(const void *a, const void *b)
{
	const struct named *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Give offers that share a name (RunPod lists one GPU type in one data center with several
 * GPU counts) a unique one: ":<count>x" (":cpu" without GPUs) first, then ":<n>" in price
 * order for what is still shared. v is sorted by name on return. */
static void unique_names(struct named *v, size_t n, const struct offer_list *l)
{
	for (int round = 0; round < 2; round++) {
		bool again = false;
		qsort(v, n, sizeof(*v), cmp_named);
		for (size_t a = 0, b; a < n; a = b) {
			for (b = a + 1; b < n && !strcmp(v[a].name, v[b].name); b++)
				;
			if (b - a < 2)
				continue;
			again = true;
			for (size_t k = a; k < b; k++) {
				const struct offer *o = &l->v[v[k].i];
				char *nm = round == 0 ? (o->gpu_count
							     ? xasprintf("%s:%dx", v[k].name, o->gpu_count)
							     : xasprintf("%s:cpu", v[k].name))
						      : xasprintf("%s:%zu", v[k].name, k - a + 1);
				free(v[k].name);
				v[k].name = nm;
			}
		}
		if (!again)
			return;
	}
	qsort(v, n, sizeof(*v), cmp_named);
}

static void snap_free(struct offsnap *s)
{
	if (!s)
		return;
	offer_list_free(&s->list);
	free(s->sig);
	free(s->names);
	free(s->by_name);
	free(s);
}

static struct offsnap *build(struct stx *tx, const char *project, const char *sig, uint64_t gen)
{
	struct offsnap *s = xcalloc(1, sizeof(*s));
	s->refs = 1;
	s->gen = gen;
	s->sig = xstrdup(sig);
	fmt_cut(s->project, sizeof(s->project), "%s", project); /* fits: a node's name */
	offerd_load(tx, project, &s->list);
	offers_sort(&s->list);
	size_t n = s->list.n;
	struct named *v = xcalloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		char name[256];
		offer_name(&s->list.v[i], name, sizeof(name));
		v[i].name = xstrdup(name);
		v[i].i = (uint32_t)i;
	}
	unique_names(v, n, &s->list);
	struct buf names;
	buf_init(&names, (size_t)UINT32_MAX);
	uint32_t *at = xcalloc(n ? n : 1, sizeof(*at));
	s->by_name = xcalloc(n ? n : 1, sizeof(*s->by_name));
	for (size_t k = 0; k < n; k++) {
		at[v[k].i] = (uint32_t)names.len;
		s->by_name[k] = v[k].i;
		(void)buf_append(&names, v[k].name, strlen(v[k].name) + 1);
		free(v[k].name);
	}
	free(v);
	size_t nlen = 0;
	s->names = buf_steal(&names, &nlen);
	if (!s->names)
		s->names = xstrdup("");
	for (size_t i = 0; i < n; i++)
		s->list.v[i].name = s->names + at[i];
	free(at);
	return s;
}

int offcache_get(struct fs *fs, const char *project, struct offsnap **out)
{
	if (fs->offerd)
		(void)offerd_check(fs->offerd, project, 0, false); /* stale: refresh behind */
	pthread_mutex_lock(&fs->cache_lock);
	uint64_t gen = fs->gen;
	pthread_mutex_unlock(&fs->cache_lock);
	pthread_mutex_lock(&fs->offers_lock);
	struct offsnap *cur = NULL;
	size_t slot = fs->noffsnaps;
	for (size_t i = 0; i < fs->noffsnaps; i++)
		if (!strcmp(fs->offsnaps[i]->project, project)) {
			cur = fs->offsnaps[i];
			slot = i;
		}
	if (cur && cur->gen == gen) {
		cur->refs++;
		pthread_mutex_unlock(&fs->offers_lock);
		*out = cur;
		return 0;
	}
	pthread_mutex_unlock(&fs->offers_lock);

	struct stx *tx = NULL;
	struct buf sig;
	int r = store_begin(fs->store, false, &tx);
	if (r)
		return r;
	buf_init(&sig, 1 << 20);
	offerd_signature(tx, project, &sig);
	const char *sg = sig.data ? sig.data : "";
	struct offsnap *s = NULL;
	pthread_mutex_lock(&fs->offers_lock);
	if (cur && !strcmp(cur->sig, sg)) {
		/* same offers as before the state changed elsewhere: keep the snapshot */
		cur->gen = gen;
		cur->refs++;
		pthread_mutex_unlock(&fs->offers_lock);
		store_abort(tx);
		buf_free(&sig);
		*out = cur;
		return 0;
	}
	pthread_mutex_unlock(&fs->offers_lock);
	s = build(tx, project, sg, gen);
	store_abort(tx);
	buf_free(&sig);
	malloc_trim(0); /* parsing leaves freed buffers behind: give them back */

	pthread_mutex_lock(&fs->offers_lock);
	/* replace this project's snapshot (or the oldest slot when full) */
	slot = fs->noffsnaps;
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
		int c = strcmp(offsnap_name(s, s->by_name[mid]), name);
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

static void dir_project(struct fs *fs, fuse_ino_t dir, char *project, size_t n)
{
	project[0] = '\0';
	pthread_mutex_lock(&fs->lock);
	struct node *nd = tree_get(fs, dir);
	if (nd && (nd->kind == N_OFFERS || nd->kind == N_OQUERY))
		fmt_cut(project, n, "%s", nd->project); /* fits: a node's name */
	pthread_mutex_unlock(&fs->lock);
}

void offcache_warm(struct fs *fs, fuse_ino_t dir)
{
	char project[STORE_NAME_MAX];
	dir_project(fs, dir, project, sizeof(project));
	if (project[0])
		offcache_prepare(fs, project);
}

void offcache_prepare(struct fs *fs, const char *project)
{
	if (fs->offerd)
		(void)offerd_check(fs->offerd, project, fs->offers_wait_ms, false);
	struct offsnap *s = NULL;
	if (offcache_get(fs, project, &s) == 0)
		offcache_put(fs, s);
}

int offcache_refresh(struct fs *fs, const char *project)
{
	return fs->offerd ? offerd_check(fs->offerd, project, fs->offers_wait_ms, true) : 0;
}
