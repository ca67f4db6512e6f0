/* ops: the FUSE low-level operations (see fs.h and docs/internals/commit.md).
 *
 * The commit protocol: a canonical file (the root config.yml or a backend's
 * config.yml) is committed at flush/fsync of a handle that changed it, or when a draft is
 * renamed onto it. Each handle has its own buffer, seeded from the stored content unless the
 * open truncates; only the content at commit time counts. Any other name created in a writable
 * directory is a draft that lives in memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/fleets.h"
#include "../core/state.h"
#include "internal.h"
#include "offcache.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* ---- commit context ---- */

struct reqctx {
	char cwd[PATH_MAX];
	char home[PATH_MAX];
	struct fileref_ctx bk;
};

static void req_ctx(fuse_req_t req, struct reqctx *c)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	char link[64];
	c->cwd[0] = c->home[0] = '\0';
	c->bk.cwd = c->bk.home = NULL;
	c->bk.mountpoint = fs_of(req)->mountpoint;
	if (fc && fc->pid > 0) {
		fmt_cut(link, sizeof(link), "/proc/%ld/cwd", (long)fc->pid); /* fits: a long */
		ssize_t n = readlink(link, c->cwd, sizeof(c->cwd) - 1);
		if (n > 0) {
			c->cwd[n] = '\0';
			c->bk.cwd = c->cwd;
		}
	}
	if (fc) {
		struct passwd pw, *res = NULL;
		char tmp[4096];
		if (getpwuid_r(fc->uid, &pw, tmp, sizeof(tmp), &res) == 0 && res && pw.pw_dir) {
			if (fmt(c->home, sizeof(c->home), "%s", pw.pw_dir))
				c->home[0] = '\0'; /* a home longer than a path: none */
			else
				c->bk.home = c->home;
		}
	}
}

/* Commit data as the canonical file (kind, project, backend). mtime NULL = now. */
static int commit(fuse_req_t req, struct fs *fs, enum nkind kind, const char *project,
		  const char *backend, const char *data, size_t len, const struct timespec *mtime)
{
	struct reqctx c;
	char err[1024];
	int r;
	req_ctx(req, &c);
	if (kind == N_RCONFIG) {
		r = state_root_commit(fs->store, data, len, &c.bk, err, sizeof(err));
		if (!r)
			notify_inval_projects(fs);
	} else if (kind == N_FSPEC) {
		r = fleets_commit(fs->store, project, backend, data, len, mtime, &c.bk, err,
				  sizeof(err));
		if (!r)
			engine_wake(fs->engine);
	} else {
		r = state_backend_commit(fs->store, project, backend, data, len, mtime, &c.bk, err,
					 sizeof(err));
	}
	notify_bump(fs);
	if (!r)
		notify_sync(fs, 1000);
	return r;
}

/* The content a canonical file holds now (rendered for the root config). */
static int canonical_content(struct fs *fs, enum nkind kind, const char *project,
			     const char *backend, struct buf *out)
{
	if (kind == N_RCONFIG)
		return state_root_render(fs->store, out);
	struct stx *tx = NULL;
	char *data = NULL;
	size_t len = 0;
	int r = store_begin(fs->store, false, &tx);
	if (r)
		return r;
	if (kind == N_FSPEC)
		r = fleets_spec_text(tx, project, backend, &data, &len);
	else
		r = store_backend_config(tx, project, backend, &data, &len);
	store_abort(tx);
	if (r)
		return r;
	r = buf_set(out, data, len);
	seal_free_secret(data, len);
	return r;
}

/* ---- operations ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	if ((conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) && !getenv("FLEETFS_OPENDIR")) {
		conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
		fs->no_opendir = true;
	}
	/* documents are small, validated at close, and change behind the kernel's back */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
	fs->mount_time = time_now();
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct resolved res;
	struct refusal why;
	offcache_warm(fs, parent);
	pthread_mutex_lock(&fs->lock);
	struct node *p = tree_get(fs, parent);
	if (!p) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	int r = name_resolve(fs, p, name, &res, &why);
	if (r) {
		pthread_mutex_unlock(&fs->lock);
		refusal_note(fs, &why); /* before the reply: the caller may read events next */
		fuse_reply_err(req, -r);
		return;
	}
	struct node *n = res.kind == N_DRAFT ? tree_find(fs, parent, name)
					     : name_child(fs, p, name, res.kind, res.project, res.backend);
	reply_entry_locked(req, fs, n);
}

static void forget_one(struct fs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = tree_get(fs, ino);
	if (!n)
		return;
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	tree_maybe_free(fs, n);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);
	pthread_mutex_lock(&fs->lock);
	forget_one(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++)
		forget_one(fs, forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	(void)fi;
	pthread_mutex_lock(&fs->lock);
	struct node *n = tree_get(fs, ino);
	int r = n ? 0 : -ENOENT;
	if (!r && !fi && !node_exists(fs, n))
		r = -ESTALE; /* gone behind the kernel's back: it looks the name up again */
	if (!r)
		r = node_attr(fs, n, &st);
	double ttl = n ? name_attr_ttl(n) : 0;
	pthread_mutex_unlock(&fs->lock);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, ttl);
}

/* setattr of a draft (fs->lock held): mode, size, times. mtime NULL: not set. */
static int setattr_draft(struct draft *d, const struct stat *attr, int to_set,
			 const struct timespec *mtime)
{
	int r = 0;
	if (to_set & FUSE_SET_ATTR_MODE)
		d->mode = attr->st_mode & 07777;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		r = buf_truncate(&d->data, (size_t)attr->st_size);
		if (!r && !mtime)
			d->mtime = time_now();
	}
	if (mtime)
		d->mtime = *mtime;
	d->ctime = time_now();
	return r;
}

/* truncate(2) by path of a canonical file: commit the truncated stored content right away.
 * Called with fs->lock held; releases it. */
static int truncate_stored(fuse_req_t req, struct fs *fs, struct node *n, size_t size)
{
	enum nkind kind = n->kind;
	char project[STORE_NAME_MAX], backend[STORE_NAME_MAX];
	/* fit: node names are char[STORE_NAME_MAX] too */
	fmt_cut(project, sizeof(project), "%s", n->project);
	fmt_cut(backend, sizeof(backend), "%s", n->backend);
	pthread_mutex_unlock(&fs->lock);
	struct buf b;
	buf_init(&b, FS_MAX_FILE);
	int r = canonical_content(fs, kind, project, backend, &b);
	if (!r)
		r = buf_truncate(&b, size);
	if (!r)
		r = commit(req, fs, kind, project, backend, b.data ? b.data : "", b.len, NULL);
	buf_free(&b);
	return r;
}

/* utimens of node n: stamped now when stored, at commit when a write is pending. */
static int setattr_mtime(struct fs *fs, struct node *n, struct timespec mt)
{
	int r = 0;
	pthread_mutex_lock(&fs->lock);
	enum nkind kind = n->kind;
	char project[STORE_NAME_MAX], backend[STORE_NAME_MAX];
	/* fit: node names are char[STORE_NAME_MAX] too */
	fmt_cut(project, sizeof(project), "%s", n->project);
	fmt_cut(backend, sizeof(backend), "%s", n->backend);
	bool pending = (n->kind == N_BCONFIG || n->kind == N_FSPEC) && n->dirty;
	if (pending) {
		n->pending_mtime = mt;
		n->has_pending_mtime = true;
	}
	pthread_mutex_unlock(&fs->lock);
	if (kind == N_BCONFIG && !pending)
		r = state_backend_set_mtime(fs->store, project, backend, false, mt);
	else if (kind == N_FSPEC && !pending)
		r = fleets_set_mtime(fs->store, project, backend, mt);
	else if (kind == N_BACKEND)
		r = state_backend_set_mtime(fs->store, project, backend, true, mt);
	else if (kind == N_PROJECT)
		r = state_project_set_mtime(fs->store, project, mt);
	else if (kind == N_OFFERS) /* touch offers/: refresh every backend's offers now */
		(void)offcache_refresh(fs, project);
	if (r == -ENOENT && (kind == N_BCONFIG || kind == N_FSPEC))
		r = 0; /* not committed yet: the commit stamps it */
	return r;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
	int r = 0;
	pthread_mutex_lock(&fs->lock);
	struct node *n = tree_get(fs, ino);
	if (!n || (!h && !node_exists(fs, n))) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, n ? ESTALE : ENOENT);
		return;
	}
	if (((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != fs->uid) ||
	    ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != fs->gid)) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, EPERM);
		return;
	}
	struct timespec mt = time_now();
	bool set_mtime = false;
	if (to_set & FUSE_SET_ATTR_MTIME) {
		set_mtime = true;
		if (!(to_set & FUSE_SET_ATTR_MTIME_NOW))
			mt = attr->st_mtim;
	}
	if (n->kind == N_DRAFT && n->draft) {
		r = setattr_draft(n->draft, attr, to_set, set_mtime ? &mt : NULL);
		pthread_mutex_unlock(&fs->lock);
		goto reply;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && (is_generated(n->kind) || is_dir_kind(n->kind))) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, is_dir_kind(n->kind) ? EISDIR : EACCES);
		return;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && h && h->kind == H_CANON) {
		r = buf_truncate(&h->data, (size_t)attr->st_size);
		if (!r) {
			if (!h->dirty)
				n->dirty++;
			h->dirty = true;
			h->written = true;
			h->failed = false;
			n->pending_size = h->data.len;
		}
		pthread_mutex_unlock(&fs->lock);
		if (r)
			goto reply;
	} else if (to_set & FUSE_SET_ATTR_SIZE) {
		r = truncate_stored(req, fs, n, (size_t)attr->st_size);
		if (r)
			goto reply;
	} else {
		pthread_mutex_unlock(&fs->lock);
	}
	/* mode: secret files stay 0600 and directories keep theirs; accepted so that cp -p,
	 * rsync and ansible can set the mode they carry (docs/filesystem.md) */
	if (set_mtime)
		r = setattr_mtime(fs, n, mt);
reply:
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	struct stat st;
	pthread_mutex_lock(&fs->lock);
	r = node_attr(fs, n, &st);
	double ttl = name_attr_ttl(n);
	pthread_mutex_unlock(&fs->lock);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, ttl);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *fs = fs_of(req);
	char err[512], project[STORE_NAME_MAX];
	(void)mode;
	pthread_mutex_lock(&fs->lock);
	struct node *p = tree_get(fs, parent);
	enum nkind pk = p ? p->kind : 0;
	fmt_cut(project, sizeof(project), "%s", p ? p->project : ""); /* fits: a node's name */
	pthread_mutex_unlock(&fs->lock);
	int r;
	enum nkind kind;
	if (pk == N_PROJECTS) {
		r = state_project_create(fs->store, name, err, sizeof(err));
		kind = N_PROJECT;
	} else if (pk == N_BACKENDS) {
		r = state_backend_create(fs->store, project, name, err, sizeof(err));
		kind = N_BACKEND;
	} else {
		char safe[80];
		str_redact(safe, sizeof(safe), name);
		state_note(fs->store, pk == N_ROOT ? "" : project,
			   "mkdir %s refused: only projects/<name> and projects/<p>/backends/<name> "
			   "are directories you can create",
			   safe);
		fuse_reply_err(req, EPERM);
		return;
	}
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	notify_bump(fs);
	pthread_mutex_lock(&fs->lock);
	p = tree_get(fs, parent);
	if (!p) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct node *n = tree_child(fs, p, name, kind, kind == N_PROJECT ? name : project,
				    kind == N_BACKEND ? name : "");
	reply_entry_locked(req, fs, n);
}

/* rmdir of a directory fleetfs makes (fleets/<f>/, instances/, ssh/ ...), or of a name that
 * isn't one: what a local filesystem would say. A fleet's directories hold its state files
 * and go away with the fleet (ENOTEMPTY, and how to delete it in events); offers query
 * directories are names, not things (removing one succeeds, as for offers/). */
static int rmdir_generated(struct fs *fs, fuse_ino_t parent, const char *name,
			   const char *project)
{
	struct resolved res;
	struct refusal why = {.msg = ""};
	char fleet[STORE_NAME_MAX] = "";
	pthread_mutex_lock(&fs->lock);
	struct node *p = tree_get(fs, parent);
	int r = p ? name_resolve(fs, p, name, &res, &why) : -ENOENT;
	if (!r && res.kind == N_FLEET)
		fmt_cut(fleet, sizeof(fleet), "%s", res.backend); /* fits: a node's name */
	enum nkind k = r ? 0 : res.kind;
	enum nkind pk = p ? p->kind : N_ROOT;
	pthread_mutex_unlock(&fs->lock);
	refusal_note(fs, &why);
	if (r)
		return r;
	if (!is_dir_kind(k))
		return -ENOTDIR;
	if (k == N_OQUERY)
		return 0;
	if (pk == N_ROOT)
		return -EPERM; /* projects/ */
	if (k == N_FLEET)
		state_note(fs->store, project,
			   "rmdir fleets/%s refused: it shows the fleet's state; rm fleets/%s.yml "
			   "deletes the fleet, and the directory goes once its instances are gone",
			   fleet, fleet);
	return -ENOTEMPTY;
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	char err[512], project[STORE_NAME_MAX];
	pthread_mutex_lock(&fs->lock);
	struct node *p = tree_get(fs, parent);
	enum nkind pk = p ? p->kind : 0;
	fmt_cut(project, sizeof(project), "%s", p ? p->project : ""); /* fits: a node's name */
	bool has_drafts = false;
	struct node *child = p ? tree_find(fs, parent, name) : NULL;
	if (child && pk == N_BACKENDS)
		for (struct node *d = fs->drafts; d; d = d->draft_next)
			has_drafts |= d->parent == child->ino;
	pthread_mutex_unlock(&fs->lock);
	int r;
	if (pk == N_PROJECTS) {
		r = state_project_delete(fs->store, name, err, sizeof(err));
	} else if (pk == N_BACKENDS) {
		r = has_drafts ? -ENOTEMPTY : state_backend_delete(fs->store, project, name, err,
								    sizeof(err));
	} else if (pk == N_PROJECT && (!strcmp(name, "ssh") || !strcmp(name, "offers"))) {
		r = 0; /* generated, like events (see below) */
	} else if (pk == N_PROJECT && !strcmp(name, "fleets")) {
		struct stx *tx = NULL;
		char **names = NULL;
		size_t n = 0;
		r = store_begin(fs->store, false, &tx);
		if (!r)
			r = fleets_list(tx, project, &names, NULL, &n);
		store_abort(tx);
		fleets_names_free(names, n);
		if (!r && n)
			r = -ENOTEMPTY;
	} else if (pk == N_PROJECT && !strcmp(name, "backends")) {
		/* like events, backends/ is part of every project: "removing" it succeeds when it
		 * is empty, so that rm -r of a project works; the project itself goes at its rmdir */
		struct stx *tx = NULL;
		struct st_backend *arr = NULL;
		size_t n = 0;
		r = store_begin(fs->store, false, &tx);
		if (!r)
			r = store_backend_list(tx, project, &arr, &n);
		store_abort(tx);
		free(arr);
		if (!r && n)
			r = -ENOTEMPTY;
		fuse_reply_err(req, -r);
		return;
	} else {
		r = rmdir_generated(fs, parent, name, project);
	}
	if (!r) {
		notify_bump(fs);
		pthread_mutex_lock(&fs->lock);
		struct node *n = tree_find(fs, parent, name);
		if (n)
			tree_unlink(fs, n);
		pthread_mutex_unlock(&fs->lock);
	}
	fuse_reply_err(req, -r);
}

struct handle *handle_new(enum hkind kind, struct node *n)
{
	struct handle *h = xcalloc(1, sizeof(*h));
	h->kind = kind;
	h->node = n;
	h->nkind = n->kind;
	/* fit: node names are char[STORE_NAME_MAX] too */
	fmt_cut(h->project, sizeof(h->project), "%s", n->project);
	fmt_cut(h->backend, sizeof(h->backend), "%s", n->backend);
	buf_init(&h->data, FS_MAX_FILE);
	n->open++;
	return h;
}

/* Open node n (fs->lock held on entry, released on return). */
static int open_node(struct fs *fs, struct node *n, int flags, struct handle **out)
{
	struct handle *h = NULL;
	int r = 0;
	int acc = flags & O_ACCMODE;
	*out = NULL;
	if (is_dir_kind(n->kind)) {
		pthread_mutex_unlock(&fs->lock);
		return -EISDIR;
	}
	if (n->kind == N_DRAFT) {
		if (!n->draft) {
			pthread_mutex_unlock(&fs->lock);
			return -ENOENT;
		}
		h = handle_new(H_DRAFT, n);
		h->draft = n->draft;
		h->draft->refs++;
		if ((flags & O_TRUNC) && acc != O_RDONLY) {
			buf_truncate(&h->draft->data, 0);
			h->draft->mtime = h->draft->ctime = time_now();
		}
		h->append = flags & O_APPEND;
		pthread_mutex_unlock(&fs->lock);
		*out = h;
		return 0;
	}
	if (is_generated(n->kind)) {
		if (acc != O_RDONLY) {
			pthread_mutex_unlock(&fs->lock);
			return -EACCES;
		}
		h = handle_new(H_SNAP, n);
		pthread_mutex_unlock(&fs->lock);
		if (n->kind == N_ISTATUS)
			/* live: a check younger than 5 s is reused, readers share one check, and
			 * after 3 s the last known state is shown with its age */
			engine_check(fs->engine, h->project, h->backend, n->num, 5000, 3000);
		else if (n->kind == N_OTSV || n->kind == N_OJSON || n->kind == N_OFFER)
			offcache_prepare(fs, h->project);
		h->data.limit = 64 * 1024 * 1024;
		r = render_file(fs, n, &h->data);
		if (!r && (n->kind == N_OTSV || n->kind == N_OJSON)) {
			pthread_mutex_lock(&fs->lock);
			n->last_size = h->data.len;
			pthread_mutex_unlock(&fs->lock);
		}
		goto done;
	}
	/* canonical */
	h = handle_new(H_CANON, n);
	h->append = flags & O_APPEND;
	bool exists = node_exists(fs, n);
	if ((flags & O_TRUNC) && acc != O_RDONLY) {
		h->dirty = true;
		n->dirty++;
		n->pending_size = 0;
		pthread_mutex_unlock(&fs->lock);
		goto done;
	}
	pthread_mutex_unlock(&fs->lock);
	if (n->kind == N_RCONFIG || exists) {
		h->data.limit = n->kind == N_RCONFIG ? 256 * 1024 * 1024 : FS_MAX_FILE;
		r = canonical_content(fs, h->nkind, h->project, h->backend, &h->data);
		if (r == -ENOENT && (n->kind == N_BCONFIG || n->kind == N_FSPEC)) {
			r = 0; /* being created by another handle: start empty */
		}
		h->data.limit = FS_MAX_FILE > h->data.len ? FS_MAX_FILE : h->data.len;
	}
	if (!r && acc != O_RDONLY && (n->kind == N_BCONFIG || n->kind == N_FSPEC) && !exists) {
		/* a new config.yml: it exists from now on for this writer */
		pthread_mutex_lock(&fs->lock);
		if (!h->dirty) {
			h->dirty = true;
			n->dirty++;
			n->pending_size = h->data.len;
		}
		pthread_mutex_unlock(&fs->lock);
	}
done:
	if (r) {
		pthread_mutex_lock(&fs->lock);
		if (h->dirty && n->dirty)
			n->dirty--;
		n->open--;
		tree_maybe_free(fs, n);
		pthread_mutex_unlock(&fs->lock);
		buf_free(&h->data);
		free(h);
		return r;
	}
	*out = h;
	return 0;
}

static void set_fi(struct fuse_file_info *fi, struct handle *h)
{
	fi->fh = (uint64_t)(uintptr_t)h;
	/* every read and write reaches the handle: no cached page can show uncommitted or
	 * refused bytes, and a writer's O_TRUNC can't empty what readers see (the kernel sizes
	 * its page cache from the writer's view). A read-only close has nothing to commit. */
	fi->direct_io = 1;
	fi->keep_cache = 0;
	if ((fi->flags & O_ACCMODE) == O_RDONLY)
		fi->noflush = 1;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = NULL;
	pthread_mutex_lock(&fs->lock);
	struct node *n = tree_get(fs, ino);
	if (!n) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!node_exists(fs, n)) {
		/* The kernel opens by a name it holds from before the thing went away behind its
		 * back: a refused first write of config.yml, an instance the engine removed, a
		 * backend a root config apply removed. ESTALE makes it look the name up again and
		 * retry once: the open then creates (O_CREAT) or fails with ENOENT, as on a local
		 * filesystem. (The kernel never passes O_CREAT here.) */
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, ESTALE);
		return;
	}
	int r = open_node(fs, n, fi->flags, &h);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	set_fi(fi, h);
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* interrupted: the kernel will not release it */
		(void)0;
	}
}

static int new_draft(struct fs *fs, struct node *p, const char *name, mode_t mode,
		     struct node **out)
{
	if (fs->ndrafts >= FS_MAX_DRAFTS)
		return -ENOSPC;
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	struct node *n = tree_child(fs, p, name, N_DRAFT, p->project, p->backend);
	if (n->draft)
		tree_draft_detach(fs, n);
	tree_draft_attach(fs, n, draft_new(mode));
	*out = n;
	return 0;
}

/* The errno for making a file in directory kind k where no file can be made: EPERM in the
 * directories that only hold directories you make (projects/, a project, backends/), as the
 * docs say; EACCES in the read-only directories fleetfs fills itself (offers/, a fleet's
 * directories, ssh/), as for a local read-only directory. */
static int no_file_here(enum nkind k)
{
	return (k == N_PROJECTS || k == N_BACKENDS || k == N_PROJECT) ? EPERM : EACCES;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = NULL;
	struct node *n = NULL;
	int r;
	pthread_mutex_lock(&fs->lock);
	struct node *p = tree_get(fs, parent);
	if (!p) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	enum nkind ck = name_canonical_in(p, name);
	if (ck) {
		n = name_child(fs, p, name, ck, p->project, p->backend);
	} else if (draft_dir(p->kind)) {
		struct resolved res;
		if (name_resolve(fs, p, name, &res, NULL) == 0 && res.kind != N_DRAFT) {
			pthread_mutex_unlock(&fs->lock);
			fuse_reply_err(req, (fi->flags & O_EXCL) ? EEXIST : EACCES);
			return;
		}
		r = new_draft(fs, p, name, mode, &n);
		if (r) {
			pthread_mutex_unlock(&fs->lock);
			fuse_reply_err(req, -r);
			return;
		}
	} else {
		enum nkind pk = p->kind;
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, no_file_here(pk));
		return;
	}
	n->nlookup++; /* the entry we reply with */
	r = open_node(fs, n, fi->flags | O_CREAT, &h);
	if (r) {
		pthread_mutex_lock(&fs->lock);
		n->nlookup--;
		tree_maybe_free(fs, n);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, -r);
		return;
	}
	struct fuse_entry_param e;
	struct stat st;
	pthread_mutex_lock(&fs->lock);
	r = node_attr(fs, n, &st);
	name_fill_entry(&e, n, &st);
	pthread_mutex_unlock(&fs->lock);
	set_fi(fi, h);
	fuse_reply_create(req, &e, fi);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct fs *fs = fs_of(req);
	struct node *n = NULL;
	(void)rdev;
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	struct node *p = tree_get(fs, parent);
	if (!p || !draft_dir(p->kind) || name_canonical_in(p, name)) {
		int e = !p ? ENOENT : !draft_dir(p->kind) ? no_file_here(p->kind) : EPERM;
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, e);
		return;
	}
	int r = new_draft(fs, p, name, mode, &n);
	if (r) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, -r);
		return;
	}
	reply_entry_locked(req, fs, n);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	(void)ino;
	pthread_mutex_lock(&fs->lock);
	struct buf *b = h->kind == H_DRAFT ? &h->draft->data : &h->data;
	size_t n = 0;
	char *copy = NULL;
	if ((size_t)off < b->len) {
		n = b->len - (size_t)off;
		if (n > size)
			n = size;
		copy = xmalloc(n);
		memcpy(copy, b->data + off, n);
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_buf(req, copy, n);
	free(copy);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	int r;
	(void)ino;
	if (h->kind == H_SNAP || h->kind == H_DIR) {
		fuse_reply_err(req, EBADF);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	struct buf *b = h->kind == H_DRAFT ? &h->draft->data : &h->data;
	size_t at = h->append ? b->len : (size_t)off;
	r = buf_pwrite(b, data, size, at);
	if (!r) {
		if (h->kind == H_DRAFT) {
			h->draft->mtime = h->draft->ctime = time_now();
		} else {
			if (!h->dirty)
				h->node->dirty++;
			h->dirty = true;
			h->written = true;
			h->failed = false;
			h->node->pending_size = b->len;
		}
	}
	if (r && h->kind == H_CANON)
		h->write_err = r;
	bool note = r == -EFBIG && !h->noted_big;
	if (note)
		h->noted_big = true;
	pthread_mutex_unlock(&fs->lock);
	if (note) {
		char why[256];
		if (h->nkind == N_FSPEC) {
			fmt_cut(why, sizeof(why), "projects/%s/fleets/%s.yml: larger than %d bytes",
				h->project, h->backend, FS_MAX_FILE);
			fleets_reject(fs->store, h->project, h->backend, why);
		} else if (h->nkind == N_BCONFIG) {
			fmt_cut(why, sizeof(why),
				"projects/%s/backends/%s/config.yml: larger than %d bytes",
				h->project, h->backend, FS_MAX_FILE);
			state_backend_reject(fs->store, h->project, h->backend, why);
		} else {
			fmt_cut(why, sizeof(why), "write refused: %s is limited to %d bytes",
				h->nkind == N_RCONFIG ? "config.yml" : "a draft", FS_MAX_FILE);
			state_note(fs->store, h->project, "%s", why);
		}
	}
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

/* Commit a canonical handle if it changed. Returns 0 or -errno (EINVAL/EFBIG...). */
static int handle_commit(fuse_req_t req, struct fs *fs, struct handle *h)
{
	if (h->kind != H_CANON)
		return 0;
	pthread_mutex_lock(&fs->lock);
	if (h->write_err) {
		pthread_mutex_unlock(&fs->lock);
		return h->write_err;
	}
	if (!h->dirty || !h->written) {
		int e = h->failed ? h->last_err : 0;
		pthread_mutex_unlock(&fs->lock);
		return e;
	}
	struct node *n = h->node;
	struct timespec mt = {0, 0};
	bool has_mt = n->has_pending_mtime;
	if (has_mt)
		mt = n->pending_mtime;
	char *copy = xmalloc(h->data.len + 1);
	memcpy(copy, h->data.data ? h->data.data : "", h->data.len);
	size_t len = h->data.len;
	h->dirty = false;
	pthread_mutex_unlock(&fs->lock);
	int r = commit(req, fs, h->nkind, h->project, h->backend, copy, len, has_mt ? &mt : NULL);
	memset(copy, 0, len);
	free(copy);
	/* the kernel may hold attributes from before the commit (size, mtime) */
	notify_inval_inode(fs, n->ino);
	pthread_mutex_lock(&fs->lock);
	if (!h->dirty) {
		h->failed = r != 0;
		h->last_err = r;
		if (n->dirty)
			n->dirty--;
		if (!n->dirty)
			n->has_pending_mtime = false;
	}
	pthread_mutex_unlock(&fs->lock);
	return r;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	(void)ino;
	int r = handle_commit(req, fs, (struct handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, -r);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	op_flush(req, ino, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	bool inval = false;
	fuse_ino_t parent = 0;
	(void)ino;
	pthread_mutex_lock(&fs->lock);
	struct node *n = h->node;
	if (h->kind == H_CANON) {
		if (h->dirty && n->dirty)
			n->dirty--;
		/* a failed or abandoned write may have left the kernel with a wrong size */
		inval = h->dirty || h->failed;
	}
	if (h->draft)
		draft_put(h->draft);
	n->open--;
	if (inval && (n->kind == N_BCONFIG || n->kind == N_FSPEC) && !n->open &&
	    !node_exists(fs, n) && n->linked)
		/* a refused first write: the name the kernel holds leads nowhere now (ESTALE), and
		 * the directory's cached listing must not show it */
		parent = n->parent;
	fuse_ino_t nino = n->ino;
	tree_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (inval)
		notify_inval_inode(fs, nino);
	if (parent)
		notify_inval_inode(fs, parent);
	if (h->kind == H_CANON || h->kind == H_SNAP)
		memset(h->data.data ? h->data.data : (char *)"", 0, h->data.len);
	bool big = h->data.cap > ((size_t)4 << 20);
	buf_free(&h->data);
	free(h);
	fuse_reply_err(req, 0);
	if (big) /* a table of 100,000 offers: give the memory back to the system */
		malloc_trim(0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	char err[512];
	struct resolved res;
	pthread_mutex_lock(&fs->lock);
	struct node *p = tree_get(fs, parent);
	int r = p ? name_resolve(fs, p, name, &res, NULL) : -ENOENT;
	if (r) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, -r);
		return;
	}
	enum nkind kind = res.kind;
	if (kind == N_DRAFT) {
		struct node *n = tree_find(fs, parent, name);
		tree_unlink(fs, n);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, 0);
		return;
	}
	if (is_generated(kind) && p->project[0]) {
		/* generated files come back by themselves; accepting their removal lets
		 * `rm -r projects/<p>` and `rsync --delete` remove a project */
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, 0);
		return;
	}
	if (kind == N_FSPEC) {
		char pr[STORE_NAME_MAX], fl[STORE_NAME_MAX];
		fmt_cut(pr, sizeof(pr), "%s", p->project); /* fits: a node's name */
		name_spec(name, fl, sizeof(fl));
		pthread_mutex_unlock(&fs->lock);
		r = fleets_unlink(fs->store, pr, fl, err, sizeof(err));
		if (!r) {
			notify_bump(fs);
			engine_wake(fs->engine);
			pthread_mutex_lock(&fs->lock);
			struct node *n = tree_find(fs, parent, name);
			if (n)
				tree_unlink(fs, n);
			pthread_mutex_unlock(&fs->lock);
		}
		fuse_reply_err(req, -r);
		return;
	}
	if (kind != N_BCONFIG) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, is_dir_kind(kind) ? EISDIR : EPERM);
		return;
	}
	char pr[STORE_NAME_MAX], bk[STORE_NAME_MAX];
	/* fit: node names are char[STORE_NAME_MAX] too */
	fmt_cut(pr, sizeof(pr), "%s", p->project);
	fmt_cut(bk, sizeof(bk), "%s", p->backend);
	pthread_mutex_unlock(&fs->lock);
	r = state_backend_unlink_config(fs->store, pr, bk, err, sizeof(err));
	if (!r) {
		notify_bump(fs);
		pthread_mutex_lock(&fs->lock);
		struct node *n = tree_find(fs, parent, name);
		if (n)
			tree_unlink(fs, n);
		pthread_mutex_unlock(&fs->lock);
		notify_sync(fs, 1000);
	}
	fuse_reply_err(req, -r);
}

/* A rename, decided: what moves (sk, from sproject/sbackend) and what it becomes (target, a
 * canonical kind, at tproject/tbackend; 0: a draft), with the content that moves. */
struct rename_plan {
	enum nkind sk, target;
	char sproject[STORE_NAME_MAX], sbackend[STORE_NAME_MAX];
	char tproject[STORE_NAME_MAX], tbackend[STORE_NAME_MAX];
	struct buf content;
	struct timespec mtime;
};

/* Decide a rename: the checks, and a draft's content (the rest is read by rename_read).
 * Takes fs->lock and releases it. 0 with *pl filled (free pl->content), or -errno. */
static int rename_decide(struct fs *fs, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname, unsigned int flags,
			 struct rename_plan *pl)
{
	struct resolved src_res, dst_res;
	enum nkind dk = 0;
	memset(pl, 0, sizeof(*pl));
	pthread_mutex_lock(&fs->lock);
	struct node *p = tree_get(fs, parent), *np = tree_get(fs, newparent);
	int r = p && np ? name_resolve(fs, p, name, &src_res, NULL) : -ENOENT;
	if (r)
		goto fail;
	pl->sk = src_res.kind;
	int dr = name_resolve(fs, np, newname, &dst_res, NULL);
	if (dr == 0)
		dk = dst_res.kind;
	pl->target = name_canonical_in(np, newname);
	bool target_exists = dr == 0;
	if (target_exists && (flags & RENAME_NOREPLACE)) {
		r = -EEXIST;
		goto fail;
	}
	if (!pl->target && !(draft_dir(np->kind) && (!target_exists || dk == N_DRAFT)) &&
	    !is_dir_kind(pl->sk)) {
		/* a file over a directory is EISDIR, as anywhere */
		r = target_exists && is_dir_kind(dk) ? -EISDIR : -EPERM;
		goto fail;
	}
	if (pl->sk != N_DRAFT && !is_canonical(pl->sk)) {
		pthread_mutex_unlock(&fs->lock);
		if (is_dir_kind(pl->sk))
			state_note(fs->store, "", "rename of directory %s refused: projects and "
						  "backends can't be renamed",
				   name);
		return -EPERM;
	}
	if (!pl->target && fs->ndrafts >= FS_MAX_DRAFTS && pl->sk != N_DRAFT) {
		r = -ENOSPC;
		goto fail;
	}
	struct node *src = tree_find(fs, parent, name);
	if (!src) /* the kernel always looked the source up; be safe anyway */
		src = name_child(fs, p, name, pl->sk, src_res.project, src_res.backend);
	buf_init(&pl->content, FS_MAX_FILE);
	pl->mtime = time_now();
	/* fit: node names are char[STORE_NAME_MAX] too */
	fmt_cut(pl->tproject, sizeof(pl->tproject), "%s", np->project);
	fmt_cut(pl->tbackend, sizeof(pl->tbackend), "%s", np->backend);
	if (pl->target == N_FSPEC)
		name_spec(newname, pl->tbackend, sizeof(pl->tbackend));
	fmt_cut(pl->sproject, sizeof(pl->sproject), "%s", src->project);
	fmt_cut(pl->sbackend, sizeof(pl->sbackend), "%s", src->backend);
	if (pl->sk == N_DRAFT) {
		r = buf_set(&pl->content, src->draft->data.data ? src->draft->data.data : "",
			    src->draft->data.len);
		pl->mtime = src->draft->mtime;
	}
	pthread_mutex_unlock(&fs->lock);
	if (r)
		buf_free(&pl->content);
	return r;
fail:
	pthread_mutex_unlock(&fs->lock);
	return r;
}

/* The content and mtime of a canonical file that moves. */
static int rename_read(struct fs *fs, struct rename_plan *pl)
{
	struct stx *tx = NULL;
	if (pl->sk == N_DRAFT)
		return 0;
	pl->content.limit = 256 * 1024 * 1024;
	int r = canonical_content(fs, pl->sk, pl->sproject, pl->sbackend, &pl->content);
	if (r || (pl->sk != N_FSPEC && pl->sk != N_BCONFIG) ||
	    store_begin(fs->store, false, &tx) != 0)
		return r;
	if (pl->sk == N_FSPEC) {
		fleets_spec_exists(tx, pl->sproject, pl->sbackend, NULL, &pl->mtime);
	} else {
		struct st_backend b;
		if (store_backend_get(tx, pl->sproject, pl->sbackend, &b) == 0)
			pl->mtime = b.mtime;
	}
	store_abort(tx);
	return 0;
}

/* After the commit: the source's inode takes the new name (and kind). Returns its inode, or
 * 0 when the kernel had forgotten it. */
static fuse_ino_t rename_relink(struct fs *fs, fuse_ino_t parent, const char *name,
				fuse_ino_t newparent, const char *newname,
				const struct rename_plan *pl)
{
	pthread_mutex_lock(&fs->lock);
	struct node *src = tree_find(fs, parent, name), *np = tree_get(fs, newparent);
	struct node *old = tree_find(fs, newparent, newname);
	if (old && old != src)
		tree_unlink(fs, old);
	if (src && pl->target) {
		/* the moved inode now is the canonical file */
		if (src->draft)
			tree_draft_detach(fs, src);
		src->kind = pl->target;
		src->project = strpool_add(fs->names, pl->tproject);
		src->backend = strpool_add(fs->names, pl->tbackend);
		tree_relink(fs, src, newparent, newname);
	} else if (src && np) {
		struct draft *d = NULL;
		if (pl->sk != N_DRAFT) {
			/* a canonical file renamed away stays; the moved inode becomes a draft
			 * copy of it (vim's config.yml -> config.yml~) */
			d = draft_new(0600);
			buf_set(&d->data, pl->content.data ? pl->content.data : "",
				pl->content.len);
			d->mtime = pl->mtime;
		}
		tree_relink(fs, src, newparent, newname);
		src->project = strpool_add(fs->names, np->project);
		src->backend = strpool_add(fs->names, np->backend);
		if (d)
			tree_draft_attach(fs, src, d);
	}
	fuse_ino_t moved = src ? src->ino : 0;
	pthread_mutex_unlock(&fs->lock);
	return moved;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	struct rename_plan pl;
	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL); /* RENAME_EXCHANGE, RENAME_WHITEOUT */
		return;
	}
	int r = rename_decide(fs, parent, name, newparent, newname, flags, &pl);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	r = rename_read(fs, &pl);
	if (!r && pl.target)
		r = commit(req, fs, pl.target, pl.tproject, pl.tbackend,
			   pl.content.data ? pl.content.data : "", pl.content.len, &pl.mtime);
	fuse_ino_t moved = r ? 0 : rename_relink(fs, parent, name, newparent, newname, &pl);
	if (pl.content.data)
		memset(pl.content.data, 0, pl.content.len);
	buf_free(&pl.content);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	notify_bump(fs);
	fuse_reply_err(req, 0);
	/* the moved inode's cached attributes (a draft's mode and size) no longer hold */
	if (moved && pl.target)
		notify_inval_inode(fs, moved);
}


const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mkdir = op_mkdir,
	.rmdir = op_rmdir,
	.mknod = op_mknod,
	.create = op_create,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.release = op_release,
	.unlink = op_unlink,
	.rename = op_rename,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
};

