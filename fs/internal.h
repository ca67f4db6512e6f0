/* internal: what the files of fs/ share (not for other modules).
 *
 * fs/kinds.c   the tree as data: every node kind once, in one table (struct kind_def)
 * fs/names.c   what a name is (resolve, node_exists), attributes, entry replies
 * fs/notify.c  kernel invalidations from a thread of their own, the store hook
 * fs/ops.c     the operations on files: open/read/write/commit, rename, mkdir, ...
 * fs/dirs.c    directory listings, readdir(plus), statfs
 */
#ifndef FLEETFS_FS_INTERNAL_H
#define FLEETFS_FS_INTERNAL_H

#include "fs.h"

enum hkind { H_SNAP, H_CANON, H_DRAFT, H_DIR };

struct dent {
	char *name;
	fuse_ino_t ino;
	mode_t type;
};

struct handle {
	enum hkind kind;
	struct node *node;
	enum nkind nkind; /* canonical identity, captured at open */
	char project[STORE_NAME_MAX];
	char backend[STORE_NAME_MAX];
	struct buf data;
	struct draft *draft;
	bool dirty;   /* changed since the last commit attempt */
	bool failed;  /* the last commit attempt failed and nothing changed since */
	bool append;
	bool noted_big;
	int write_err;  /* a write failed: this handle never commits, flush reports it */
	bool written; /* a write or an explicit truncate happened: an open(O_TRUNC) alone
		       * commits nothing (bash's `>` closes a dup before writing) */
	int last_err;
	struct dent *ents;
	size_t nents;
	unsigned lrefs; /* listings kept between readdir calls (dirs.c) */
};


/* Names and attributes of stored things change only through this daemon, which invalidates
 * the kernel's copy whenever it changes them behind the kernel's back (commit, root config
 * apply): the kernel may keep them long. Generated files change with every event: the store
 * hook (fs_store_changed) invalidates them after each transaction that touches them. */
#define TTL_STATIC 60.0
#define TTL_GENERATED 60.0

struct fs *fs_of(fuse_req_t req);
mode_t name_perm_dir(const struct fs *fs);
mode_t name_perm_ro(const struct fs *fs);
/* Free the listings kept between readdir calls (at unmount, no request running). */
void listings_drop(struct fs *fs);
/* dstack's resource name rule for fleets: ^[a-z][a-z0-9-]{1,40}$ */
bool name_fleet_valid(const char *s, size_t n);
/* "<fleet>.yml" -> fleet; false if name is not a spec file name */
bool name_spec(const char *name, char *out, size_t outlen);

/* What a name resolves to: its kind and the project/backend it belongs to (pointing into the
 * parent node or the name itself: valid while fs->lock is held and name lives). */
struct resolved {
	enum nkind kind;
	const char *project;
	const char *backend;
};

/* Why a lookup refused a name (a bad offers query), found while fs->lock was held: the caller
 * writes it to the project's events with refusal_note once the lock is released (a store
 * write under it would deadlock), before replying. msg is empty when there is nothing to say. */
struct refusal {
	char project[64];
	char msg[512];
};
void refusal_note(struct fs *fs, const struct refusal *why);

/* ---- kinds.c: the tree as a table ---- */

enum kclass {
	K_NONE,
	K_DIR,   /* a directory */
	K_GEN,   /* a generated read-only file */
	K_CANON, /* a canonical editable file: what it holds is in the store */
	K_DRAFT, /* any other name in a directory that takes drafts: kept in memory */
};

struct listing; /* dirs.c: a directory listing being taken */
struct stx;

/* One node kind. The function pointers are NULL where the generic behaviour applies. All are
 * called with fs->lock held, except render (and size from render_file's callers). */
/* Which store changes drop the kernel's cached attributes (and listing) of a node
 * (fs_store_changed). */
enum kinval {
	INV_NONE = 0, /* never (offers: maybe 100,000 of them; their entries time out) */
	INV_PROJECT,  /* a change in its project (or in many projects) */
	INV_MOUNT,    /* a change of the mount's own journal (or of many projects) */
	INV_ALWAYS,   /* any change */
};

struct kind_def {
	enum nkind kind;
	uint64_t parents;  /* bit (1 << k) for each directory kind k it appears in */
	const char *name;  /* the fixed name; NULL: named after what it stands for */
	enum kclass cls;
	mode_t mode;       /* permissions; 0: the mount's (perm_dir, perm_ro) */
	bool drafts;       /* a directory where other names may be created as drafts */
	/* does what n stands for exist (tx open)? NULL: always */
	bool (*exists)(struct stx *tx, const struct node *n);
	/* a fixed child that may be absent: 0 and *yes, or a store error (-errno) */
	int (*present)(struct fs *fs, const struct node *dir, bool *yes);
	/* directory: a name that is not a fixed child. 0 and res filled, -ENOENT (then a draft
	 * of that name, in a directory with .drafts), or -errno; why: a refusal to note */
	int (*lookup)(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		      struct refusal *why);
	/* directory: add the children that are not fixed, in listing order */
	int (*list)(struct fs *fs, struct node *dir, struct listing *l);
	/* generated or canonical file: its content, appended to out */
	int (*render)(struct fs *fs, struct node *n, struct buf *out);
	/* its size without keeping the rendering; NULL: render and count */
	int (*size)(struct fs *fs, struct node *n, size_t *size);
	enum kinval inval; /* which store changes invalidate it */
	bool on_apply;     /* invalidated when the root config.yml is applied */
};

/* The row of kind k (a row of class K_NONE for no kind). */
const struct kind_def *kind_def(enum nkind k);
/* The table's rows are in enum nkind's order (checked at mount: false is a build defect). */
bool kinds_check(void);
/* The fixed children of directory kind dir, in listing order: start with after = NULL. */
const struct kind_def *kind_next_fixed(enum nkind dir, const struct kind_def *after);
/* The fixed child of directory kind dir called name, or NULL. */
const struct kind_def *kind_fixed(enum nkind dir, const char *name);
bool is_dir_kind(enum nkind k);
bool is_generated(enum nkind k);
bool is_canonical(enum nkind k);
/* directories where drafts may be created */
bool draft_dir(enum nkind k);

/* names.c: existence (tx open) and lookup of variable names */
bool exists_project(struct stx *tx, const struct node *n);
bool exists_backend(struct stx *tx, const struct node *n);
bool exists_bconfig(struct stx *tx, const struct node *n);
bool exists_spec(struct stx *tx, const struct node *n);
bool exists_fleet(struct stx *tx, const struct node *n);
bool exists_instance(struct stx *tx, const struct node *n);
int present_bconfig(struct fs *fs, const struct node *dir, bool *yes);
int lookup_projects(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		    struct refusal *why);
int lookup_backends(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		    struct refusal *why);
int lookup_fleets(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		  struct refusal *why);
int lookup_instances(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		     struct refusal *why);
int lookup_offers(struct fs *fs, struct node *dir, const char *name, struct resolved *res,
		  struct refusal *why);

/* dirs.c: listings of variable names; listing_add adds one entry */
void listing_add(struct listing *l, const char *name, mode_t type);
int list_projects(struct fs *fs, struct node *dir, struct listing *l);
int list_backends(struct fs *fs, struct node *dir, struct listing *l);
int list_fleets(struct fs *fs, struct node *dir, struct listing *l);
int list_instances(struct fs *fs, struct node *dir, struct listing *l);
int list_offers(struct fs *fs, struct node *dir, struct listing *l);

/* render.c: contents and sizes */
int render_readme(struct fs *fs, struct node *n, struct buf *out);
int size_readme(struct fs *fs, struct node *n, size_t *size);
int render_rfilter(struct fs *fs, struct node *n, struct buf *out);
int size_rfilter(struct fs *fs, struct node *n, size_t *size);
int render_rconfig(struct fs *fs, struct node *n, struct buf *out);
int size_rconfig(struct fs *fs, struct node *n, size_t *size);
int render_events(struct fs *fs, struct node *n, struct buf *out);
int size_events(struct fs *fs, struct node *n, size_t *size);
int render_bstatus(struct fs *fs, struct node *n, struct buf *out);
int render_fstatus(struct fs *fs, struct node *n, struct buf *out);
int render_fsshcfg(struct fs *fs, struct node *n, struct buf *out);
int render_psshcfg(struct fs *fs, struct node *n, struct buf *out);
int render_instance(struct fs *fs, struct node *n, struct buf *out);
int render_key(struct fs *fs, struct node *n, struct buf *out);
int size_key(struct fs *fs, struct node *n, size_t *size);
int render_known_hosts(struct fs *fs, struct node *n, struct buf *out);
int render_offers(struct fs *fs, struct node *n, struct buf *out);
int size_table(struct fs *fs, struct node *n, size_t *size);

/* notify.c */
void notify_inval_projects(struct fs *fs);
void notify_bump(struct fs *fs);

/* names.c — all with fs->lock held */
bool node_exists(struct fs *fs, struct node *n);
/* why may be NULL: the refusal is then not wanted */
int name_resolve(struct fs *fs, struct node *p, const char *name, struct resolved *res,
	    struct refusal *why);
enum nkind name_canonical_in(const struct node *p, const char *name);
struct node *name_child(struct fs *fs, struct node *p, const char *name, enum nkind kind,
		   const char *project, const char *backend);
int node_attr(struct fs *fs, struct node *n, struct stat *st);
double name_attr_ttl(const struct node *n);
void name_fill_entry(struct fuse_entry_param *e, struct node *n, const struct stat *st);
/* releases fs->lock */
void reply_entry_locked(fuse_req_t req, struct fs *fs, struct node *n);

/* ops.c */
struct handle *handle_new(enum hkind kind, struct node *n);

/* dirs.c */
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_statfs(fuse_req_t req, fuse_ino_t ino);

#endif
