/* internal: what the files of fs/ share (not for other modules).
 *
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

struct fs *FS(fuse_req_t req);
mode_t perm_dir(const struct fs *fs);
mode_t perm_ro(const struct fs *fs);
bool is_dir_kind(enum nkind k);
bool is_generated(enum nkind k);
/* Free the listings kept between readdir calls (at unmount, no request running). */
void listings_drop(struct fs *fs);
bool is_canonical(enum nkind k);
/* directories where drafts may be created */
bool draft_dir(enum nkind k);
/* dstack's resource name rule for fleets: ^[a-z][a-z0-9-]{1,40}$ */
bool fleet_name_valid(const char *s, size_t n);
/* "<fleet>.yml" -> fleet; false if name is not a spec file name */
bool spec_name(const char *name, char *out, size_t outlen);

/* when the mount started (names.c; set by op_init) */
extern struct timespec mount_time;

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

/* notify.c */
void inval_projects(struct fs *fs);
void bump(struct fs *fs);

/* names.c — all with fs->lock held */
bool node_exists(struct fs *fs, struct node *n);
/* why may be NULL: the refusal is then not wanted */
int resolve(struct fs *fs, struct node *p, const char *name, struct resolved *res,
	    struct refusal *why);
enum nkind canonical_in(const struct node *p, const char *name);
struct node *child(struct fs *fs, struct node *p, const char *name, enum nkind kind,
		   const char *project, const char *backend);
int node_attr(struct fs *fs, struct node *n, struct stat *st);
double attr_ttl(const struct node *n);
void fill_entry(struct fuse_entry_param *e, struct node *n, const struct stat *st);
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
