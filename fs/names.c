/* names: what a name in the tree is, whether it exists, its attributes (see internal.h). */
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

struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

mode_t name_perm_dir(const struct fs *fs)
{
	return fs->allow_other ? 0755 : 0700;
}

mode_t name_perm_ro(const struct fs *fs)
{
	return fs->allow_other ? 0444 : 0400;
}

/* dstack's resource name rule, for fleets: ^[a-z][a-z0-9-]{1,40}$ */
bool name_fleet_valid(const char *s, size_t n)
{
	if (n < 2 || n > 41 || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* "<fleet>.yml" -> fleet (into out); false if name is not a spec file name */
bool name_spec(const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);
	if (n < 5 || strcmp(name + n - 4, ".yml") || !name_fleet_valid(name, n - 4))
		return false;
	return fmt(out, outlen, "%.*s", (int)(n - 4), name) == 0;
}


void refusal_note(struct fs *fs, const struct refusal *why)
{
	if (why->msg[0])
		state_note(fs->store, why->project, "%s", why->msg);
}

/* ---- what a name is ---- */

/* Existence, per kind (kinds.c), with a store transaction open. */
bool exists_project(struct stx *tx, const struct node *n)
{
	struct st_project p;
	return store_project_get(tx, n->project, &p) == 0;
}

bool exists_backend(struct stx *tx, const struct node *n)
{
	struct st_backend b;
	return store_backend_get(tx, n->project, n->backend, &b) == 0;
}

/* a config.yml being created (a handle holds uncommitted bytes) exists already */
bool exists_bconfig(struct stx *tx, const struct node *n)
{
	struct st_backend b;
	return store_backend_get(tx, n->project, n->backend, &b) == 0 && (b.has_config || n->dirty);
}

bool exists_spec(struct stx *tx, const struct node *n)
{
	return fleets_spec_exists(tx, n->project, n->backend, NULL, NULL) || n->dirty;
}

bool exists_fleet(struct stx *tx, const struct node *n)
{
	return fleets_dir_exists(tx, n->project, n->backend);
}

bool exists_instance(struct stx *tx, const struct node *n)
{
	return fleets_instance_exists(tx, n->project, n->backend, n->num);
}

/* Does the thing n stands for exist (in the store, or in memory for a draft)? Call with
 * fs->lock held. */
bool node_exists(struct fs *fs, struct node *n)
{
	struct stx *tx = NULL;
	const struct kind_def *d = kind_def(n->kind);
	if (d->cls == K_DRAFT)
		return n->draft != NULL;
	if (!d->exists)
		return true;
	if (store_begin(fs->store, false, &tx))
		return false;
	bool ok = d->exists(tx, n);
	store_abort(tx);
	return ok;
}

/* Is the canonical file name of directory dir being created (a handle holds uncommitted
 * bytes)? Then it exists before the store has it. */
static bool being_created(struct fs *fs, const struct node *dir, const char *name, enum nkind kind)
{
	struct node *d = tree_find(fs, dir->ino, name);
	return d && d->kind == kind && d->dirty;
}

/* backends/<b>/config.yml: present once stored with a config, or being created */
int present_bconfig(struct fs *fs, const struct node *dir, bool *yes)
{
	struct stx *tx = NULL;
	struct st_backend sb;
	*yes = being_created(fs, dir, "config.yml", N_BCONFIG);
	if (*yes)
		return 0;
	int r = store_begin(fs->store, false, &tx);
	if (r)
		return r;
	*yes = store_backend_get(tx, dir->project, dir->backend, &sb) == 0 && sb.has_config;
	store_abort(tx);
	return 0;
}

/* ---- variable names: the lookup of each directory kind that has them (kinds.c) ---- */

/* projects/<p> */
int lookup_projects(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		    struct refusal *why)
{
	struct stx *tx = NULL;
	struct st_project sp;
	(void)dir;
	(void)why;
	if (!name_valid(name) || store_begin(fs->store, false, &tx))
		return -ENOENT;
	int r = store_project_get(tx, name, &sp);
	store_abort(tx);
	if (r)
		return -ENOENT;
	res->kind = N_PROJECT;
	res->project = name;
	return 0;
}

/* backends/<b> */
int lookup_backends(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		    struct refusal *why)
{
	struct stx *tx = NULL;
	struct st_backend sb;
	(void)why;
	if (!name_valid(name) || store_begin(fs->store, false, &tx))
		return -ENOENT;
	int r = store_backend_get(tx, dir->project, name, &sb);
	store_abort(tx);
	if (r)
		return -ENOENT;
	res->kind = N_BACKEND;
	res->backend = name;
	return 0;
}

/* fleets/<f>.yml (a spec, stored or being created) and fleets/<f>/ (the fleet's state) */
int lookup_fleets(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		  struct refusal *why)
{
	struct stx *tx = NULL;
	char fl[STORE_NAME_MAX];
	bool ok = false;
	(void)why;
	if (name_spec(name, fl, sizeof(fl))) {
		res->kind = N_FSPEC;
		if (being_created(fs, dir, name, N_FSPEC))
			return 0;
		if (store_begin(fs->store, false, &tx))
			return -EIO;
		ok = fleets_spec_exists(tx, dir->project, fl, NULL, NULL);
		store_abort(tx);
		return ok ? 0 : -ENOENT;
	}
	if (!name_fleet_valid(name, strlen(name)))
		return -ENOENT;
	if (store_begin(fs->store, false, &tx))
		return -EIO;
	ok = fleets_dir_exists(tx, dir->project, name);
	store_abort(tx);
	if (!ok)
		return -ENOENT;
	res->kind = N_FLEET;
	res->backend = name;
	return 0;
}

/* instances/<num>: decimal, no leading zero */
int lookup_instances(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		     struct refusal *why)
{
	struct stx *tx = NULL;
	long long num = -1;
	(void)why;
	if (num_parse_ll(name, 0, 100000000, &num) || (name[0] == '0' && name[1]))
		return -ENOENT;
	if (store_begin(fs->store, false, &tx))
		return -EIO;
	bool ok = fleets_instance_exists(tx, dir->project, dir->backend, (unsigned)num);
	store_abort(tx);
	if (!ok)
		return -ENOENT;
	res->kind = N_INSTANCE;
	return 0;
}

/* offers/<offer>, offers/<query>/ and <query>/<offer> (an offer the query matches). A name
 * in offers/ that is neither is refused with the reason the query did not parse. */
int lookup_offers(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		  struct refusal *why)
{
	struct offsnap *snap = NULL;
	struct offer_query *q = NULL;
	char err[400];
	if (offcache_get(fs, dir->project, &snap))
		return -EIO;
	long i = offsnap_find(snap, name);
	bool ok = i >= 0;
	if (ok && dir->kind == N_OQUERY) {
		ok = offers_query_parse(dir->query ? dir->query : "", &q, err, sizeof(err)) == 0 &&
		     offers_match(q, &snap->list.v[i]);
		offers_query_free(q);
		q = NULL;
	}
	offcache_put(fs, snap);
	if (ok) {
		res->kind = N_OFFER;
		return 0;
	}
	if (dir->kind == N_OQUERY)
		return -ENOENT;
	/* not an offer: a query directory? */
	if (offers_query_parse(name, &q, err, sizeof(err)) != 0) {
		char safe[128];
		str_redact(safe, sizeof(safe), name);
		if (why) {
			fmt_cut(why->msg, sizeof(why->msg),
				"offers/%s: neither an offer nor a query: %s", safe, err);
			fmt_cut(why->project, sizeof(why->project), "%s", dir->project); /* fits */
		}
		return -ENOENT;
	}
	offers_query_free(q);
	res->kind = N_OQUERY;
	return 0;
}

/* Resolve (parent, name) to a kind without creating anything: a fixed child of p's kind
 * (kinds.c), else p's lookup of variable names, else a draft. Returns 0 and fills res, or
 * -ENOENT/-ENOTDIR/-EIO; a refusal worth noting goes to why (may be NULL). Call with
 * fs->lock held. */
int name_resolve(struct fs *fs, struct node *p, const char *name, struct resolved *res,
	    struct refusal *why)
{
	const struct kind_def *pd = kind_def(p->kind);
	if (why)
		why->msg[0] = '\0';
	res->kind = 0;
	res->project = p->project;
	res->backend = p->backend;
	if (pd->cls != K_DIR)
		return -ENOTDIR;
	const struct kind_def *c = kind_fixed(p->kind, name);
	if (c) {
		bool yes = true;
		if (c->present && c->present(fs, p, &yes))
			return -EIO;
		if (!yes)
			return -ENOENT;
		res->kind = c->kind;
		return 0;
	}
	int r = pd->lookup ? pd->lookup(fs, p, name, res, why) : -ENOENT;
	if (r != -ENOENT || !pd->drafts)
		return r;
	struct node *d = tree_find(fs, p->ino, name);
	if (!d || d->kind != N_DRAFT || !d->draft)
		return -ENOENT;
	res->kind = N_DRAFT;
	return 0;
}

/* Is name the canonical stored file of directory p? Its kind, or 0. */
enum nkind name_canonical_in(const struct node *p, const char *name)
{
	char fl[STORE_NAME_MAX];
	if (p->kind == N_FLEETS)
		return name_spec(name, fl, sizeof(fl)) ? N_FSPEC : 0;
	const struct kind_def *c = kind_fixed(p->kind, name);
	return c && c->cls == K_CANON ? c->kind : 0;
}

/* tree_child plus what identity the name itself carries: a spec's fleet, an instance's
 * number (inherited by the files inside it). fs->lock held. */
struct node *name_child(struct fs *fs, struct node *p, const char *name, enum nkind kind,
			  const char *project, const char *backend)
{
	struct node *n = tree_child(fs, p, name, kind, project, backend);
	char fl[STORE_NAME_MAX];
	long long num = 0;
	n->num = p->num;
	if (kind == N_OQUERY || p->kind == N_OQUERY) {
		n->query = strpool_add(fs->names, kind == N_OQUERY ? name : p->query ? p->query : "");
	}
	if (kind == N_FSPEC && name_spec(name, fl, sizeof(fl)))
		n->backend = strpool_add(fs->names, fl);
	else if (kind == N_INSTANCE && num_parse_ll(name, 0, 100000000, &num) == 0)
		n->num = (unsigned)num;
	return n;
}

/* ---- attributes ---- */

/* A directory: a project's and a backend's mtime is stored, the others' is the mount's. */
static int dir_attr(struct fs *fs, struct node *n, struct stat *st)
{
	struct stx *tx = NULL;
	struct st_project p;
	struct st_backend b;
	st->st_nlink = 2;
	if (n->kind != N_PROJECT && n->kind != N_BACKEND)
		return 0;
	if (store_begin(fs->store, false, &tx))
		return -EIO;
	if (n->kind == N_PROJECT && store_project_get(tx, n->project, &p) == 0)
		st->st_mtim = st->st_ctim = p.mtime;
	else if (n->kind == N_BACKEND && store_backend_get(tx, n->project, n->backend, &b) == 0)
		st->st_mtim = st->st_ctim = b.dir_mtime;
	store_abort(tx);
	return 0;
}

/* A canonical file: the stored size and mtime, or those of the uncommitted buffer. */
static int canon_attr(struct fs *fs, struct node *n, struct stat *st, size_t *size)
{
	struct stx *tx = NULL;
	if (n->kind == N_RCONFIG) {
		if (n->dirty)
			*size = n->pending_size;
		else if (render_size(fs, n, size))
			return -EIO;
		return 0;
	}
	if (store_begin(fs->store, false, &tx))
		return -EIO;
	if (n->kind == N_BCONFIG) {
		struct st_backend b;
		if (store_backend_get(tx, n->project, n->backend, &b) == 0 && b.has_config) {
			*size = b.size;
			st->st_mtim = st->st_ctim = b.mtime;
		} else {
			st->st_mtim = st->st_ctim = time_now();
		}
	} else {
		struct timespec mt = time_now();
		if (fleets_spec_exists(tx, n->project, n->backend, size, &mt))
			st->st_mtim = st->st_ctim = mt;
	}
	store_abort(tx);
	if (n->dirty)
		*size = n->pending_size;
	if (n->has_pending_mtime)
		st->st_mtim = n->pending_mtime;
	return 0;
}

int node_attr(struct fs *fs, struct node *n, struct stat *st)
{
	const struct kind_def *d = kind_def(n->kind);
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	st->st_mtim = st->st_ctim = st->st_atim = fs->mount_time;
	if (d->cls == K_DIR) {
		st->st_mode = S_IFDIR | (d->mode ? d->mode : name_perm_dir(fs));
		return dir_attr(fs, n, st);
	}
	st->st_nlink = 1;
	size_t size = 0;
	int r = 0;
	if (d->cls == K_DRAFT) {
		if (!n->draft)
			return -ENOENT;
		st->st_mode = S_IFREG | n->draft->mode;
		size = n->draft->data.len;
		st->st_mtim = n->draft->mtime;
		st->st_ctim = n->draft->ctime;
	} else if (d->cls == K_CANON) {
		st->st_mode = S_IFREG | d->mode;
		r = canon_attr(fs, n, st, &size);
	} else {
		st->st_mode = S_IFREG | (d->mode ? d->mode : name_perm_ro(fs));
		r = render_size(fs, n, &size) ? -EIO : 0;
	}
	if (r)
		return r;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_atim = st->st_mtim;
	return 0;
}

double name_attr_ttl(const struct node *n)
{
	return (is_generated(n->kind) || n->kind == N_RCONFIG) ? TTL_GENERATED : TTL_STATIC;
}

void name_fill_entry(struct fuse_entry_param *e, struct node *n, const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = n->ino;
	e->generation = 1;
	e->attr = *st;
	e->attr_timeout = name_attr_ttl(n);
	e->entry_timeout = TTL_STATIC;
}

/* Reply to a lookup-like request with node (fs->lock held; takes a kernel reference). */
void reply_entry_locked(fuse_req_t req, struct fs *fs, struct node *n)
{
	struct stat st;
	struct fuse_entry_param e;
	int r = node_attr(fs, n, &st);
	if (r) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, -r);
		return;
	}
	n->nlookup++;
	name_fill_entry(&e, n, &st);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_entry(req, &e);
}

