/* tree: the node table (see fs.h). Two chained hash tables, by inode and by (parent, name). */
#include <stdlib.h>
#include <string.h>

#include "fs.h"

static size_t hash_name(fuse_ino_t parent, const char *name, size_t nb)
{
	uint64_t h = 1469598103934665603ULL ^ parent;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)(h % nb);
}

static size_t hash_ino(fuse_ino_t ino, size_t nb)
{
	return (size_t)((ino * 11400714819323198485ULL) % nb);
}

static void rehash(struct fs *fs)
{
	size_t nb = fs->nbuckets * 2;
	struct node **bi = xcalloc(nb, sizeof(*bi)), **bn = xcalloc(nb, sizeof(*bn));
	for (size_t i = 0; i < fs->nbuckets; i++) {
		for (struct node *n = fs->by_ino[i], *next; n; n = next) {
			next = n->ino_next;
			size_t h = hash_ino(n->ino, nb);
			n->ino_next = bi[h];
			bi[h] = n;
		}
		for (struct node *n = fs->by_name[i], *next; n; n = next) {
			next = n->name_next;
			size_t h = hash_name(n->parent, n->name, nb);
			n->name_next = bn[h];
			bn[h] = n;
		}
	}
	free(fs->by_ino);
	free(fs->by_name);
	fs->by_ino = bi;
	fs->by_name = bn;
	fs->nbuckets = nb;
}

static void link_name(struct fs *fs, struct node *n)
{
	size_t h = hash_name(n->parent, n->name, fs->nbuckets);
	n->name_next = fs->by_name[h];
	fs->by_name[h] = n;
	n->linked = true;
}

static void unlink_name(struct fs *fs, struct node *n)
{
	if (!n->linked)
		return;
	size_t h = hash_name(n->parent, n->name, fs->nbuckets);
	for (struct node **pp = &fs->by_name[h]; *pp; pp = &(*pp)->name_next) {
		if (*pp == n) {
			*pp = n->name_next;
			break;
		}
	}
	n->linked = false;
	n->name_next = NULL;
}

static struct node *node_new(struct fs *fs, fuse_ino_t ino, fuse_ino_t parent, const char *name,
			     enum nkind kind)
{
	if (fs->nnodes + 1 > fs->nbuckets)
		rehash(fs);
	struct node *n = xcalloc(1, sizeof(*n));
	n->ino = ino;
	n->parent = parent;
	n->name = xstrdup(name);
	n->kind = kind;
	n->project = n->backend = "";
	size_t h = hash_ino(ino, fs->nbuckets);
	n->ino_next = fs->by_ino[h];
	fs->by_ino[h] = n;
	link_name(fs, n);
	fs->nnodes++;
	return n;
}

static void draft_list_del(struct fs *fs, struct node *n);

void tree_init(struct fs *fs)
{
	fs->nbuckets = 1024;
	fs->names = strpool_new();
	fs->by_ino = xcalloc(fs->nbuckets, sizeof(*fs->by_ino));
	fs->by_name = xcalloc(fs->nbuckets, sizeof(*fs->by_name));
	fs->next_ino = FUSE_ROOT_ID + 1;
	struct node *root = node_new(fs, FUSE_ROOT_ID, 0, "", N_ROOT);
	root->nlookup = 1; /* the kernel's reference to the root is never forgotten */
}

void tree_destroy(struct fs *fs)
{
	for (size_t i = 0; i < fs->nbuckets; i++) {
		for (struct node *n = fs->by_ino[i], *next; n; n = next) {
			next = n->ino_next;
			if (n->draft)
				draft_put(n->draft);
			free(n->name);
			free(n);
		}
	}
	strpool_free(fs->names);
	free(fs->by_ino);
	free(fs->by_name);
	fs->by_ino = fs->by_name = NULL;
}

struct node *tree_get(struct fs *fs, fuse_ino_t ino)
{
	for (struct node *n = fs->by_ino[hash_ino(ino, fs->nbuckets)]; n; n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

struct node *tree_find(struct fs *fs, fuse_ino_t parent, const char *name)
{
	for (struct node *n = fs->by_name[hash_name(parent, name, fs->nbuckets)]; n;
	     n = n->name_next)
		if (n->parent == parent && !strcmp(n->name, name))
			return n;
	return NULL;
}

struct node *tree_child(struct fs *fs, struct node *parent, const char *name, enum nkind kind,
			const char *project, const char *backend)
{
	struct node *n = tree_find(fs, parent->ino, name);
	if (n && n->kind != kind) {
		/* the name now stands for something else (a draft became canonical or the
		 * reverse): give the new meaning a new inode */
		tree_unlink(fs, n);
		n = NULL;
	}
	if (!n)
		n = node_new(fs, fs->next_ino++, parent->ino, name, kind);
	n->project = strpool_add(fs->names, project ? project : "");
	n->backend = strpool_add(fs->names, backend ? backend : "");
	return n;
}

void tree_maybe_free(struct fs *fs, struct node *n)
{
	if (!n || n->ino == FUSE_ROOT_ID || n->nlookup || n->open)
		return;
	if (n->linked && n->kind != N_DRAFT)
		unlink_name(fs, n); /* canonical names are re-created from the store on lookup */
	if (n->linked)
		return; /* a draft keeps its content until unlinked */
	size_t h = hash_ino(n->ino, fs->nbuckets);
	for (struct node **pp = &fs->by_ino[h]; *pp; pp = &(*pp)->ino_next) {
		if (*pp == n) {
			*pp = n->ino_next;
			break;
		}
	}
	if (n->draft)
		tree_draft_detach(fs, n);
	fs->nnodes--;
	free(n->name);
	free(n);
}

void tree_unlink(struct fs *fs, struct node *n)
{
	unlink_name(fs, n);
	draft_list_del(fs, n); /* the content stays while a handle or the kernel holds it */
	tree_maybe_free(fs, n);
}

void tree_relink(struct fs *fs, struct node *n, fuse_ino_t parent, const char *name)
{
	unlink_name(fs, n);
	free(n->name);
	n->name = xstrdup(name);
	n->parent = parent;
	link_name(fs, n);
}

struct draft *draft_new(mode_t mode)
{
	struct draft *d = xcalloc(1, sizeof(*d));
	buf_init(&d->data, FS_MAX_FILE);
	d->mode = mode & 07777;
	d->mtime = d->ctime = time_now();
	d->refs = 1;
	return d;
}

void draft_put(struct draft *d)
{
	if (d && --d->refs == 0) {
		buf_free(&d->data);
		free(d);
	}
}

static void draft_list_del(struct fs *fs, struct node *n)
{
	if (!n->in_list)
		return;
	if (n->draft_prev)
		n->draft_prev->draft_next = n->draft_next;
	else
		fs->drafts = n->draft_next;
	if (n->draft_next)
		n->draft_next->draft_prev = n->draft_prev;
	n->draft_next = n->draft_prev = NULL;
	n->in_list = false;
	fs->ndrafts--;
}

void tree_draft_attach(struct fs *fs, struct node *n, struct draft *d)
{
	n->kind = N_DRAFT;
	n->draft = d;
	n->draft_prev = NULL;
	n->draft_next = fs->drafts;
	if (fs->drafts)
		fs->drafts->draft_prev = n;
	fs->drafts = n;
	n->in_list = true;
	fs->ndrafts++;
}

void tree_draft_detach(struct fs *fs, struct node *n)
{
	draft_list_del(fs, n);
	if (n->draft)
		draft_put(n->draft);
	n->draft = NULL;
}
