/* dirs: directory listings (snapshots of store names + drafts), readdir, readdirplus, statfs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fleets.h"
#include "../core/state.h"
#include "internal.h"
#include "offcache.h"
#include <sys/statvfs.h>

/* ---- directories ---- */

static void dent_add(struct handle *h, size_t *cap, const char *name, fuse_ino_t ino,
		     mode_t type)
{
	if (h->nents == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		h->ents = xrealloc(h->ents, *cap * sizeof(*h->ents));
	}
	h->ents[h->nents].name = xstrdup(name);
	h->ents[h->nents].ino = ino;
	h->ents[h->nents].type = type;
	h->nents++;
}

static fuse_ino_t known_ino(struct fs *fs, fuse_ino_t parent, const char *name)
{
	struct node *n = tree_find(fs, parent, name);
	return n ? n->ino : (fuse_ino_t)-1;
}

static void dir_handle_free(struct fs *fs, struct handle *h)
{
	pthread_mutex_lock(&fs->lock);
	h->node->open--;
	tree_maybe_free(fs, h->node);
	pthread_mutex_unlock(&fs->lock);
	for (size_t i = 0; i < h->nents; i++)
		free(h->ents[i].name);
	free(h->ents);
	free(h);
}

/* A listing being taken: the handle that keeps it, with fs->lock held. */
struct listing {
	struct fs *fs;
	struct handle *h;
	size_t cap;
};

/* Add name (a child of the listed directory; type S_IFDIR or S_IFREG) to the listing. */
void listing_add(struct listing *l, const char *name, mode_t type)
{
	fuse_ino_t dir = l->h->node->ino;
	dent_add(l->h, &l->cap, name, known_ino(l->fs, dir, name), type);
}

/* ---- variable names: the list of each directory kind that has them (kinds.c) ---- */

int list_projects(struct fs *fs, struct node *dir, struct listing *l)
{
	struct stx *tx = NULL;
	struct st_project *ps = NULL;
	size_t np = 0;
	(void)dir;
	int r = store_begin(fs->store, false, &tx);
	if (!r)
		r = store_project_list(tx, &ps, &np);
	store_abort(tx);
	for (size_t i = 0; !r && i < np; i++)
		listing_add(l, ps[i].name, S_IFDIR);
	free(ps);
	return r;
}

int list_backends(struct fs *fs, struct node *dir, struct listing *l)
{
	struct stx *tx = NULL;
	struct st_backend *bs = NULL;
	size_t nb = 0;
	int r = store_begin(fs->store, false, &tx);
	if (!r)
		r = store_backend_list(tx, dir->project, &bs, &nb);
	store_abort(tx);
	for (size_t i = 0; !r && i < nb; i++)
		listing_add(l, bs[i].name, S_IFDIR);
	free(bs);
	return r;
}

/* each fleet: its spec <f>.yml while it is not deleted, then its directory <f>/ */
int list_fleets(struct fs *fs, struct node *dir, struct listing *l)
{
	struct stx *tx = NULL;
	char **names = NULL;
	bool *live = NULL;
	size_t nf = 0;
	int r = store_begin(fs->store, false, &tx);
	if (!r)
		r = fleets_list(tx, dir->project, &names, &live, &nf);
	store_abort(tx);
	for (size_t i = 0; !r && i < nf; i++) {
		char spec[STORE_NAME_MAX + 8];
		if (live[i] && !fmt(spec, sizeof(spec), "%s.yml", names[i]))
			listing_add(l, spec, S_IFREG);
		listing_add(l, names[i], S_IFDIR);
	}
	fleets_names_free(names, nf);
	free(live);
	return r;
}

int list_instances(struct fs *fs, struct node *dir, struct listing *l)
{
	struct stx *tx = NULL;
	unsigned *nums = NULL;
	size_t ni = 0;
	int r = store_begin(fs->store, false, &tx);
	if (!r)
		r = fleets_instances(tx, dir->project, dir->backend, &nums, &ni);
	store_abort(tx);
	for (size_t i = 0; !r && i < ni; i++) {
		char nm[16];
		fmt_cut(nm, sizeof(nm), "%u", nums[i]); /* fits: an unsigned */
		listing_add(l, nm, S_IFDIR);
	}
	free(nums);
	return r;
}

/* offers cheapest first (those the query matches, in a query directory); query directories
 * themselves are not listed */
int list_offers(struct fs *fs, struct node *dir, struct listing *l)
{
	struct offsnap *snap = NULL;
	struct offer_query *q = NULL;
	char e2[8];
	if (dir->kind == N_OQUERY &&
	    offers_query_parse(dir->query ? dir->query : "", &q, e2, sizeof(e2)))
		return 0;
	int r = offcache_get(fs, dir->project, &snap);
	for (size_t i = 0; !r && i < snap->list.n; i++)
		if (!q || offers_match(q, &snap->list.v[i]))
			listing_add(l, offsnap_name(snap, i), S_IFREG);
	offcache_put(fs, snap);
	offers_query_free(q);
	return r;
}

/* The fixed children of n (kinds.c), in the table's order. 0 or -errno. */
static int list_fixed(struct fs *fs, struct node *n, struct listing *l)
{
	for (const struct kind_def *c = NULL; (c = kind_next_fixed(n->kind, c));) {
		bool yes = true;
		int r = c->present ? c->present(fs, n, &yes) : 0;
		if (r)
			return r;
		if (yes)
			listing_add(l, c->name, c->cls == K_DIR ? S_IFDIR : S_IFREG);
	}
	return 0;
}

/* drafts, oldest first, for a stable order */
static void list_drafts(struct fs *fs, fuse_ino_t ino, struct listing *l)
{
	struct node *last = NULL;
	for (struct node *d = fs->drafts; d; d = d->draft_next)
		last = d;
	for (struct node *d = last; d; d = d->draft_prev)
		if (d->parent == ino && d->linked)
			dent_add(l->h, &l->cap, d->name, d->ino, S_IFREG);
}

/* Snapshot the listing of directory ino into a new handle: fixed entries first (kinds.c),
 * then the variable names (the store's, sorted; offers cheapest first), then drafts oldest
 * first. 0 or -errno. */
static int dir_listing(struct fs *fs, fuse_ino_t ino, struct handle **out)
{
	*out = NULL;
	offcache_warm(fs, ino);
	pthread_mutex_lock(&fs->lock);
	struct node *n = tree_get(fs, ino);
	if (!n || !is_dir_kind(n->kind) || !node_exists(fs, n)) {
		pthread_mutex_unlock(&fs->lock);
		return n && !is_dir_kind(n->kind) ? -ENOTDIR : -ENOENT;
	}
	const struct kind_def *d = kind_def(n->kind);
	struct listing l = {.fs = fs, .h = handle_new(H_DIR, n)};
	dent_add(l.h, &l.cap, ".", n->ino, S_IFDIR);
	dent_add(l.h, &l.cap, "..", n->parent ? n->parent : n->ino, S_IFDIR);
	int r = list_fixed(fs, n, &l);
	if (!r && d->list)
		r = d->list(fs, n, &l);
	if (d->drafts)
		list_drafts(fs, ino, &l);
	pthread_mutex_unlock(&fs->lock);
	if (r) {
		dir_handle_free(fs, l.h);
		return r;
	}
	*out = l.h;
	return 0;
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = NULL;
	if (fs->no_opendir) {
		/* the kernel then skips opendir/releasedir for good: each readdir lists afresh */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	int r = dir_listing(fs, ino, &h);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	/* the kernel may cache listings: it drops them itself when an entry is added or removed
	 * through it, and we invalidate directories the root config.yml changes */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* Without opendir, every readdir call would list the directory again (100,000 offers come in
 * hundreds of calls): the listing made at offset 0 is kept for the calls that continue it, as
 * long as the state generation is the same, and dropped when a reader reaches its end. */
#define LISTINGS FS_LISTINGS

static uint64_t cur_gen(struct fs *fs)
{
	pthread_mutex_lock(&fs->cache_lock);
	uint64_t g = fs->gen;
	pthread_mutex_unlock(&fs->cache_lock);
	return g;
}

/* The listing a readdir works from: the opendir snapshot, or (the kernel skipping opendir)
 * a kept or fresh one that the caller releases with listing_done (*own). NULL after
 * replying with the error. */
static struct handle *listing_for(fuse_req_t req, fuse_ino_t ino, off_t off,
				  struct fuse_file_info *fi, bool *own)
{
	struct fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh, *old = NULL;
	*own = false;
	if (h)
		return h;
	uint64_t gen = cur_gen(fs);
	*own = true;
	pthread_mutex_lock(&fs->listings_lock);
	for (size_t i = 0; off > 0 && i < LISTINGS && !h; i++)
		if (fs->listings[i].h && fs->listings[i].ino == ino && fs->listings[i].gen == gen) {
			h = fs->listings[i].h;
			h->lrefs++;
		}
	pthread_mutex_unlock(&fs->listings_lock);
	if (h)
		return h;
	int r = dir_listing(fs, ino, &h);
	if (r) {
		fuse_reply_err(req, -r);
		return NULL;
	}
	h->lrefs = 2; /* this reader's and the cache's */
	pthread_mutex_lock(&fs->listings_lock);
	size_t slot = (size_t)(ino % LISTINGS);
	for (size_t i = 0; i < LISTINGS; i++)
		if (fs->listings[i].h && fs->listings[i].ino == ino)
			slot = i;
	if (fs->listings[slot].h && --fs->listings[slot].h->lrefs == 0)
		old = fs->listings[slot].h;
	fs->listings[slot].ino = ino;
	fs->listings[slot].gen = gen;
	fs->listings[slot].h = h;
	pthread_mutex_unlock(&fs->listings_lock);
	if (old)
		dir_handle_free(fs, old);
	return h;
}

void listings_drop(struct fs *fs)
{
	for (size_t i = 0; i < LISTINGS; i++) {
		struct handle *h = fs->listings[i].h;
		fs->listings[i].h = NULL;
		if (h && --h->lrefs == 0)
			dir_handle_free(fs, h);
	}
}

/* Release a listing from listing_for; at_end: the reader got to its end (the kept copy goes:
 * the next listing starts afresh). */
static void listing_done(struct fs *fs, struct handle *h, bool at_end)
{
	pthread_mutex_lock(&fs->listings_lock);
	unsigned left = --h->lrefs;
	for (size_t i = 0; at_end && i < LISTINGS; i++)
		if (fs->listings[i].h == h) {
			fs->listings[i].h = NULL;
			left = --h->lrefs;
		}
	pthread_mutex_unlock(&fs->listings_lock);
	if (left == 0)
		dir_handle_free(fs, h);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	bool own = false;
	struct handle *h = listing_for(req, ino, off, fi, &own);
	if (!h)
		return;
	char *out = xmalloc(size);
	size_t used = 0;
	bool at_end = (size_t)off >= h->nents;
	for (size_t i = (size_t)off; i < h->nents; i++) {
		struct stat st = {.st_ino = h->ents[i].ino, .st_mode = h->ents[i].type};
		size_t need = fuse_add_direntry(req, out + used, size - used, h->ents[i].name, &st,
						(off_t)(i + 1));
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, out, used);
	free(out);
	if (own)
		listing_done(fs, h, at_end);
}

/* readdir with attributes: the kernel needs no LOOKUP per entry afterwards (ls -l, rsync). Each
 * entry handed out takes a kernel reference, like a lookup. */
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	bool own = false;
	struct handle *h = listing_for(req, ino, off, fi, &own);
	if (!h)
		return;
	char *out = xmalloc(size);
	size_t used = 0;
	bool at_end = (size_t)off >= h->nents;
	pthread_mutex_lock(&fs->lock);
	struct node *dir = tree_get(fs, ino);
	for (size_t i = (size_t)off; dir && i < h->nents; i++) {
		struct fuse_entry_param e;
		struct node *n = NULL;
		const char *name = h->ents[i].name;
		memset(&e, 0, sizeof(e));
		if (strcmp(name, ".") && strcmp(name, "..")) {
			struct resolved res;
			if (name_resolve(fs, dir, name, &res, NULL))
				continue; /* gone since the listing was taken */
			n = res.kind == N_DRAFT
				    ? tree_find(fs, ino, name)
				    : name_child(fs, dir, name, res.kind, res.project, res.backend);
			struct stat st;
			if (!n || node_attr(fs, n, &st)) {
				tree_maybe_free(fs, n);
				continue;
			}
			name_fill_entry(&e, n, &st);
		} else {
			e.attr.st_ino = h->ents[i].ino;
			e.attr.st_mode = h->ents[i].type;
		}
		size_t need = fuse_add_direntry_plus(req, out + used, size - used, name, &e,
						     (off_t)(i + 1));
		if (need > size - used) {
			tree_maybe_free(fs, n);
			break;
		}
		if (n)
			n->nlookup++;
		used += need;
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_buf(req, out, used);
	free(out);
	if (own)
		listing_done(fs, h, at_end);
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	(void)ino;
	if (h)
		dir_handle_free(fs_of(req), h);
	fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	(void)ino;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_namemax = NAME_MAX;
	sv.f_files = fs_of(req)->nnodes;
	fuse_reply_statfs(req, &sv);
}

