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

struct fs *FS(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

mode_t perm_dir(const struct fs *fs)
{
	return fs->allow_other ? 0755 : 0700;
}

mode_t perm_ro(const struct fs *fs)
{
	return fs->allow_other ? 0444 : 0400;
}

bool is_dir_kind(enum nkind k)
{
	return k == N_ROOT || k == N_PROJECTS || k == N_PROJECT || k == N_BACKENDS ||
	       k == N_BACKEND || k == N_FLEETS || k == N_FLEET || k == N_INSTANCES ||
	       k == N_INSTANCE || k == N_PSSHDIR || k == N_OFFERS || k == N_OQUERY;
}

bool is_generated(enum nkind k)
{
	return k == N_README || k == N_REVENTS || k == N_RFILTER || k == N_PEVENTS ||
	       k == N_BSTATUS || k == N_FSTATUS || k == N_FEVENTS || k == N_FSSHCFG ||
	       k == N_ISTATUS || k == N_ISSH || k == N_IINFO || k == N_PSSHCFG || k == N_PKEY ||
	       k == N_PKEYPUB || k == N_PKNOWN || k == N_OFFER || k == N_OTSV || k == N_OJSON;
}

bool is_canonical(enum nkind k)
{
	return k == N_RCONFIG || k == N_BCONFIG || k == N_FSPEC;
}

bool draft_dir(enum nkind k)
{
	return k == N_ROOT || k == N_BACKEND || k == N_FLEETS;
}

/* dstack's resource name rule, for fleets: ^[a-z][a-z0-9-]{1,40}$ */
bool fleet_name_valid(const char *s, size_t n)
{
	if (n < 2 || n > 41 || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* "<fleet>.yml" -> fleet (into out); false if name is not a spec file name */
bool spec_name(const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);
	if (n < 5 || strcmp(name + n - 4, ".yml") || !fleet_name_valid(name, n - 4))
		return false;
	fmt(out, outlen, "%.*s", (int)(n - 4), name);
	return true;
}

struct timespec mount_time; /* set in op_init: the mtime of things that have none */

void refusal_note(struct fs *fs, const struct refusal *why)
{
	if (why->msg[0])
		state_note(fs->store, why->project, "%s", why->msg);
}


/* ---- what a name is ---- */

/* Does the canonical thing n stands for exist in the store? Call with fs->lock held. */
bool node_exists(struct fs *fs, struct node *n)
{
	struct stx *tx = NULL;
	struct st_project p;
	struct st_backend b;
	bool ok = false;
	switch (n->kind) {
	case N_DRAFT:
		return n->draft != NULL;
	case N_ROOT:
	case N_README:
	case N_RCONFIG:
	case N_REVENTS:
	case N_RFILTER:
	case N_PROJECTS:
		return true;
	default:
		break;
	}
	if (store_begin(fs->store, false, &tx))
		return false;
	if (n->kind == N_FSPEC)
		ok = fleets_spec_exists(tx, n->project, n->backend, NULL, NULL) || n->dirty;
	else if (n->kind == N_FLEET || n->kind == N_FSTATUS || n->kind == N_FEVENTS ||
		 n->kind == N_FSSHCFG || n->kind == N_INSTANCES)
		ok = fleets_dir_exists(tx, n->project, n->backend);
	else if (n->kind == N_INSTANCE || n->kind == N_ISTATUS || n->kind == N_ISSH ||
		 n->kind == N_IINFO)
		ok = fleets_instance_exists(tx, n->project, n->backend, n->num);
	else if (n->kind != N_BACKEND && n->kind != N_BSTATUS && n->kind != N_BCONFIG)
		ok = store_project_get(tx, n->project, &p) == 0;
	else if (store_backend_get(tx, n->project, n->backend, &b) == 0)
		ok = n->kind != N_BCONFIG || b.has_config || n->dirty;
	store_abort(tx);
	return ok;
}

/* Resolve (parent, name) to a kind without creating anything. Returns 0 and sets res->kind,
 * or -ENOENT/-ENOTDIR. Drafts resolve to N_DRAFT. Call with fs->lock held. */
int resolve(struct fs *fs, struct node *p, const char *name, struct resolved *res,
	    struct refusal *why)
{
	struct stx *tx = NULL;
	struct st_project sp;
	struct st_backend sb;
	struct node *d;
	if (why)
		why->msg[0] = '\0';
	res->project = p->project;
	res->backend = p->backend;
	switch (p->kind) {
	case N_ROOT:
		res->project = res->backend = "";
		if (!strcmp(name, "README"))
			res->kind = N_README;
		else if (!strcmp(name, "config.yml"))
			res->kind = N_RCONFIG;
		else if (!strcmp(name, "events"))
			res->kind = N_REVENTS;
		else if (!strcmp(name, ".rsync-filter"))
			res->kind = N_RFILTER;
		else if (!strcmp(name, "projects"))
			res->kind = N_PROJECTS;
		else
			goto draft;
		return 0;
	case N_PROJECTS:
		if (!name_valid(name) || store_begin(fs->store, false, &tx))
			return -ENOENT;
		if (store_project_get(tx, name, &sp)) {
			store_abort(tx);
			return -ENOENT;
		}
		store_abort(tx);
		res->kind = N_PROJECT;
		res->project = name;
		return 0;
	case N_PROJECT:
		if (!strcmp(name, "events"))
			res->kind = N_PEVENTS;
		else if (!strcmp(name, "backends"))
			res->kind = N_BACKENDS;
		else if (!strcmp(name, "fleets"))
			res->kind = N_FLEETS;
		else if (!strcmp(name, "ssh_config"))
			res->kind = N_PSSHCFG;
		else if (!strcmp(name, "ssh"))
			res->kind = N_PSSHDIR;
		else if (!strcmp(name, "offers"))
			res->kind = N_OFFERS;
		else if (!strcmp(name, "offers.tsv"))
			res->kind = N_OTSV;
		else if (!strcmp(name, "offers.json"))
			res->kind = N_OJSON;
		else
			return -ENOENT;
		return 0;
	case N_OFFERS:
	case N_OQUERY: {
		if (p->kind == N_OQUERY && !strcmp(name, "offers.tsv")) {
			res->kind = N_OTSV;
			return 0;
		}
		if (p->kind == N_OQUERY && !strcmp(name, "offers.json")) {
			res->kind = N_OJSON;
			return 0;
		}
		struct offsnap *snap = NULL;
		if (offcache_get(fs, p->project, &snap))
			return -EIO;
		long i = offsnap_find(snap, name);
		bool ok = i >= 0;
		if (ok && p->kind == N_OQUERY) {
			struct offer_query *q = NULL;
			char e2[8];
			ok = offers_query_parse(p->query ? p->query : "", &q, e2, sizeof(e2)) == 0 &&
			     offers_match(q, &snap->list.v[i]);
			offers_query_free(q);
		}
		offcache_put(fs, snap);
		if (ok) {
			res->kind = N_OFFER;
			return 0;
		}
		if (p->kind == N_OQUERY)
			return -ENOENT;
		/* not an offer: a query directory? */
		struct offer_query *q = NULL;
		char err[400];
		if (offers_query_parse(name, &q, err, sizeof(err)) != 0) {
			char safe[128];
			str_redact(safe, sizeof(safe), name);
			if (why) {
				fmt(why->msg, sizeof(why->msg),
				    "offers/%s: neither an offer nor a query: %s", safe, err);
				fmt(why->project, sizeof(why->project), "%s", p->project);
			}
			return -ENOENT;
		}
		offers_query_free(q);
		res->kind = N_OQUERY;
		return 0;
	}
	case N_PSSHDIR:
		if (!strcmp(name, "id_rsa"))
			res->kind = N_PKEY;
		else if (!strcmp(name, "id_rsa.pub"))
			res->kind = N_PKEYPUB;
		else if (!strcmp(name, "known_hosts"))
			res->kind = N_PKNOWN;
		else
			return -ENOENT;
		return 0;
	case N_FLEETS: {
		char fl[STORE_NAME_MAX];
		bool ok = false;
		if (spec_name(name, fl, sizeof(fl))) {
			d = tree_find(fs, p->ino, name);
			if (d && d->kind == N_FSPEC && d->dirty) {
				res->kind = N_FSPEC;
				return 0; /* being created */
			}
			if (store_begin(fs->store, false, &tx))
				return -EIO;
			ok = fleets_spec_exists(tx, p->project, fl, NULL, NULL);
			store_abort(tx);
			if (ok) {
				res->kind = N_FSPEC;
				return 0;
			}
			goto draft;
		}
		if (fleet_name_valid(name, strlen(name))) {
			if (store_begin(fs->store, false, &tx))
				return -EIO;
			ok = fleets_dir_exists(tx, p->project, name);
			store_abort(tx);
			if (ok) {
				res->kind = N_FLEET;
				res->backend = name;
				return 0;
			}
		}
		goto draft;
	}
	case N_FLEET:
		if (!strcmp(name, "status"))
			res->kind = N_FSTATUS;
		else if (!strcmp(name, "events"))
			res->kind = N_FEVENTS;
		else if (!strcmp(name, "ssh_config"))
			res->kind = N_FSSHCFG;
		else if (!strcmp(name, "instances"))
			res->kind = N_INSTANCES;
		else
			return -ENOENT;
		return 0;
	case N_INSTANCES: {
		long long num = -1;
		if (num_parse_ll(name, 0, 100000000, &num) || (name[0] == '0' && name[1]))
			return -ENOENT;
		if (store_begin(fs->store, false, &tx))
			return -EIO;
		bool ok = fleets_instance_exists(tx, p->project, p->backend, (unsigned)num);
		store_abort(tx);
		if (!ok)
			return -ENOENT;
		res->kind = N_INSTANCE;
		return 0;
	}
	case N_INSTANCE:
		if (!strcmp(name, "status"))
			res->kind = N_ISTATUS;
		else if (!strcmp(name, "ssh"))
			res->kind = N_ISSH;
		else if (!strcmp(name, "info.yml"))
			res->kind = N_IINFO;
		else
			return -ENOENT;
		return 0;
	case N_BACKENDS:
		if (!name_valid(name) || store_begin(fs->store, false, &tx))
			return -ENOENT;
		if (store_backend_get(tx, p->project, name, &sb)) {
			store_abort(tx);
			return -ENOENT;
		}
		store_abort(tx);
		res->kind = N_BACKEND;
		res->backend = name;
		return 0;
	case N_BACKEND:
		if (!strcmp(name, "status")) {
			res->kind = N_BSTATUS;
			return 0;
		}
		if (!strcmp(name, "config.yml")) {
			res->kind = N_BCONFIG;
			d = tree_find(fs, p->ino, name);
			if (d && d->kind == N_BCONFIG && d->dirty)
				return 0; /* being created */
			if (store_begin(fs->store, false, &tx))
				return -EIO;
			int r = store_backend_get(tx, p->project, p->backend, &sb);
			store_abort(tx);
			return (r == 0 && sb.has_config) ? 0 : -ENOENT;
		}
		goto draft;
	default:
		return -ENOTDIR;
	}
draft:
	d = tree_find(fs, p->ino, name);
	if (d && d->kind == N_DRAFT && d->draft) {
		res->kind = N_DRAFT;
		return 0;
	}
	return -ENOENT;
}

/* Is name the canonical stored file of directory p? */
enum nkind canonical_in(const struct node *p, const char *name)
{
	char fl[STORE_NAME_MAX];
	if (p->kind == N_FLEETS)
		return spec_name(name, fl, sizeof(fl)) ? N_FSPEC : 0;
	if (strcmp(name, "config.yml"))
		return 0;
	if (p->kind == N_ROOT)
		return N_RCONFIG;
	if (p->kind == N_BACKEND)
		return N_BCONFIG;
	return 0;
}

/* tree_child plus what identity the name itself carries: a spec's fleet, an instance's
 * number (inherited by the files inside it). fs->lock held. */
struct node *child(struct fs *fs, struct node *p, const char *name, enum nkind kind,
			  const char *project, const char *backend)
{
	struct node *n = tree_child(fs, p, name, kind, project, backend);
	char fl[STORE_NAME_MAX];
	long long num = 0;
	n->num = p->num;
	if (kind == N_OQUERY || p->kind == N_OQUERY) {
		n->query = strpool_add(fs->names, kind == N_OQUERY ? name : p->query ? p->query : "");
	}
	if (kind == N_FSPEC && spec_name(name, fl, sizeof(fl)))
		n->backend = strpool_add(fs->names, fl);
	else if (kind == N_INSTANCE && num_parse_ll(name, 0, 100000000, &num) == 0)
		n->num = (unsigned)num;
	return n;
}

/* ---- attributes ---- */

int node_attr(struct fs *fs, struct node *n, struct stat *st)
{
	struct stx *tx = NULL;
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	st->st_mtim = st->st_ctim = st->st_atim = mount_time;
	if (is_dir_kind(n->kind)) {
		st->st_mode = S_IFDIR | perm_dir(fs);
		st->st_nlink = 2;
		if (n->kind == N_PROJECT || n->kind == N_BACKEND) {
			struct st_project p;
			struct st_backend b;
			if (store_begin(fs->store, false, &tx))
				return -EIO;
			if (n->kind == N_PROJECT && store_project_get(tx, n->project, &p) == 0)
				st->st_mtim = st->st_ctim = p.mtime;
			else if (n->kind == N_BACKEND &&
				 store_backend_get(tx, n->project, n->backend, &b) == 0)
				st->st_mtim = st->st_ctim = b.dir_mtime;
			store_abort(tx);
		}
		return 0;
	}
	st->st_nlink = 1;
	size_t size = 0;
	if (n->kind == N_DRAFT) {
		if (!n->draft)
			return -ENOENT;
		st->st_mode = S_IFREG | n->draft->mode;
		size = n->draft->data.len;
		st->st_mtim = n->draft->mtime;
		st->st_ctim = n->draft->ctime;
	} else if (n->kind == N_BCONFIG) {
		struct st_backend b;
		st->st_mode = S_IFREG | 0600;
		if (store_begin(fs->store, false, &tx))
			return -EIO;
		if (store_backend_get(tx, n->project, n->backend, &b) == 0 && b.has_config) {
			size = b.size;
			st->st_mtim = st->st_ctim = b.mtime;
		} else {
			st->st_mtim = st->st_ctim = time_now();
		}
		store_abort(tx);
		if (n->dirty)
			size = n->pending_size;
		if (n->has_pending_mtime)
			st->st_mtim = n->pending_mtime;
	} else if (n->kind == N_FSPEC) {
		struct timespec mt = time_now();
		st->st_mode = S_IFREG | 0600;
		if (store_begin(fs->store, false, &tx))
			return -EIO;
		if (fleets_spec_exists(tx, n->project, n->backend, &size, &mt))
			st->st_mtim = st->st_ctim = mt;
		store_abort(tx);
		if (n->dirty)
			size = n->pending_size;
		if (n->has_pending_mtime)
			st->st_mtim = n->pending_mtime;
	} else if (n->kind == N_RCONFIG) {
		st->st_mode = S_IFREG | 0600;
		if (n->dirty)
			size = n->pending_size;
		else if (render_size(fs, n, &size))
			return -EIO;
	} else {
		/* the project's private key is a secret: owner only, whatever the mount says */
		st->st_mode = S_IFREG | (n->kind == N_PKEY ? 0600 : perm_ro(fs));
		if (render_size(fs, n, &size))
			return -EIO;
	}
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_atim = st->st_mtim;
	return 0;
}

double attr_ttl(const struct node *n)
{
	return (is_generated(n->kind) || n->kind == N_RCONFIG) ? TTL_GENERATED : TTL_STATIC;
}

void fill_entry(struct fuse_entry_param *e, struct node *n, const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = n->ino;
	e->generation = 1;
	e->attr = *st;
	e->attr_timeout = attr_ttl(n);
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
	fill_entry(&e, n, &st);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_entry(req, &e);
}

