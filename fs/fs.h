/* fs: the FUSE face of fleetfs (libfuse low-level API).
 *
 * Inodes: every name the kernel has looked up has a node (struct node) keyed by inode number
 * and by (parent, name). Inode numbers only grow, so a number is never reused for another
 * file while the kernel may still hold it. A node lives while the kernel references it
 * (nlookup > 0), a handle is open on it, or it is linked in the tree.
 *
 * What a node stands for is its kind plus the project/backend it belongs to; whether it
 * exists is asked of the store at lookup. Drafts (any non-canonical name created in a
 * writable directory) live only in memory (struct draft) and never reach the store until a
 * rename puts one on a canonical name.
 *
 * Locking: fs->lock guards the node table and drafts. It is never held across a store write
 * transaction or a commit — the store's change hook (fs_store_changed) takes it, so a write
 * under it would deadlock; store reads may happen under it (LMDB readers don't block).
 */
#ifndef FLEETFS_FS_H
#define FLEETFS_FS_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "../cache/store.h"
#include "../core/engine.h"
#include "../lib/util.h"

#define FS_MAX_DRAFTS 1024
#define FS_MAX_FILE (1024 * 1024)

/* In the order of fs/kinds.c's table (its rows are indexed by kind: same order). */
enum nkind {
	N_ROOT = 1,
	N_RFILTER,  /* .rsync-filter */
	N_README,
	N_RCONFIG,  /* root config.yml (dstack server config) */
	N_REVENTS,
	N_PROJECTS,
	N_PROJECT,
	N_BACKENDS,
	N_BACKEND,
	N_BCONFIG,  /* backends/<b>/config.yml */
	N_BSTATUS,
	N_PEVENTS,
	/* fleets */
	N_FLEETS,   /* projects/<p>/fleets/ */
	N_FSPEC,    /* fleets/<fleet>.yml (backend = fleet name) */
	N_FLEET,    /* fleets/<fleet>/ */
	N_FEVENTS,
	N_FSSHCFG,
	N_FSTATUS,
	N_INSTANCES,
	N_INSTANCE, /* instances/<num>/ (num) */
	N_IINFO,
	N_ISSH,
	N_ISTATUS,
	/* ssh access */
	N_PSSHDIR,  /* projects/<p>/ssh/ */
	N_PKEY,     /* ssh/id_rsa */
	N_PKEYPUB,  /* ssh/id_rsa.pub */
	N_PKNOWN,   /* ssh/known_hosts */
	N_PSSHCFG,  /* projects/<p>/ssh_config */
	/* offers */
	N_OFFERS,   /* projects/<p>/offers/ */
	N_OQUERY,   /* offers/<query>/ (the node's name is the query) */
	N_OFFER,    /* an offer file, in offers/ or a query directory */
	N_OJSON,
	N_OTSV,     /* offers.tsv of the project or of a query directory */
	N_DRAFT,
	N_KINDS     /* one past the last */
};

struct catalog;
struct http_client;
struct bk_memo;
struct handle;

/* A directory listing kept for the readdir calls that continue it (fs/dirs.c). */
#define FS_LISTINGS 8
struct listing_slot {
	fuse_ino_t ino;
	uint64_t gen;
	struct handle *h; /* holds one of h->lrefs */
};
struct offerd;

struct draft {
	struct buf data;
	mode_t mode;
	struct timespec mtime, ctime;
	unsigned refs; /* the node's link + open handles */
};

struct node {
	fuse_ino_t ino;
	fuse_ino_t parent;
	char *name;
	enum nkind kind;
	uint64_t nlookup;
	unsigned open;   /* open handles */
	bool linked;     /* reachable by (parent, name) */
	/* interned in fs->names (a listing of 100,000 offers makes as many nodes) */
	const char *project;
	const char *backend;          /* the backend, or the fleet for fleet kinds */
	unsigned num;                 /* instance number */
	const char *query;            /* offers: the query of a query directory and its files */
	size_t last_size;             /* offers tables: size of the latest rendering */
	struct draft *draft;        /* N_DRAFT */
	/* canonical: handles holding uncommitted changes. A config.yml or fleet spec that is not
	 * stored yet exists only while this is nonzero: a refused first commit ends it at flush,
	 * so the name is gone when close() returns, not later when RELEASE arrives. */
	unsigned dirty;
	size_t pending_size;        /* canonical: size of the latest uncommitted buffer */
	struct timespec pending_mtime; /* utimens while uncommitted: stamped at commit */
	bool has_pending_mtime;
	struct node *ino_next, *name_next;
	struct node *draft_next, *draft_prev; /* list of linked drafts */
	bool in_list;
};

struct fs {
	struct store *store;
	struct fuse_session *se;
	pthread_mutex_t lock;
	struct node **by_ino, **by_name;
	struct strpool *names;  /* the nodes' project, backend and query strings */
	size_t nbuckets, nnodes;
	fuse_ino_t next_ino;
	struct node *drafts;
	size_t ndrafts;
	uid_t uid;
	gid_t gid;
	bool allow_other;
	bool no_opendir; /* the kernel lists directories without opendir/releasedir */
	const char *mountpoint;
	struct timespec mount_time;   /* set in op_init: the mtime of things that have none */
	struct engine *engine;
	struct catalog *catalog;      /* -o catalog=DIR|URL|none */
	struct http_client *http;
	struct bk_memo *bkmemo;       /* the provider clients' memory (backends/backend.h) */
	struct offerd *offerd;        /* keeps the offers cache fresh */
	int offers_wait_ms;           /* -o offers_wait: bound on waiting for a first fetch */
	pthread_mutex_t listings_lock; /* listings */
	struct listing_slot listings[FS_LISTINGS]; /* fs/dirs.c: listings kept between readdirs */
	pthread_mutex_t offers_lock;  /* offsnaps */
	struct offsnap *offsnaps[64];
	size_t noffsnaps;
	pthread_mutex_t cache_lock; /* guards gen and the cached root config size; may be
				     * taken under lock, never the reverse */
	uint64_t gen;          /* bumped on every state change */
	uint64_t rcfg_gen;     /* generation of the cached root config size */
	size_t rcfg_size;
	/* notifier */
	pthread_t notifier;
	bool notifier_running, stopping;
	pthread_cond_t ncond, ndone_cond;
	struct notice *nhead, *ntail;
	uint64_t npushed, ndone;   /* notices queued / sent so far (notify_sync) */
};

/* tree.c — node table; all need fs->lock held. */
void tree_init(struct fs *fs);
void tree_destroy(struct fs *fs);
struct node *tree_get(struct fs *fs, fuse_ino_t ino);
struct node *tree_find(struct fs *fs, fuse_ino_t parent, const char *name);
/* Find or create the linked node (parent, name) of the given kind; updates its identity. */
struct node *tree_child(struct fs *fs, struct node *parent, const char *name, enum nkind kind,
			const char *project, const char *backend);
void tree_unlink(struct fs *fs, struct node *n);
void tree_relink(struct fs *fs, struct node *n, fuse_ino_t parent, const char *name);
/* Drop a node if nothing references it anymore. */
void tree_maybe_free(struct fs *fs, struct node *n);
struct draft *draft_new(mode_t mode);
void draft_put(struct draft *d);
void tree_draft_attach(struct fs *fs, struct node *n, struct draft *d);
/* Drop the node's draft content and take it off the draft list. */
void tree_draft_detach(struct fs *fs, struct node *n);

/* render.c — generated files. Each appends to out; 0 or -errno. */
int render_file(struct fs *fs, struct node *n, struct buf *out);
/* Size of a generated file without keeping the rendering (cached where it is costly). */
int render_size(struct fs *fs, struct node *n, size_t *size);

/* notify (notify.c): ask the kernel to forget an inode's cached attributes and contents (a
 * directory's listing), from a helper thread. Entries are never invalidated: see notify.c. */
void notify_inval_inode(struct fs *fs, fuse_ino_t ino);
int notify_start(struct fs *fs);
/* Wait (at most timeout_ms) until every invalidation queued so far reached the kernel: a
 * write whose commit changed generated listings (offers/) returns after the kernel's copies
 * are gone, so the caller's next ls sees the change. Never with fs->lock held. */
void notify_sync(struct fs *fs, int timeout_ms);
void notify_stop(struct fs *fs);

/* The store's change hook (store_set_hook): invalidates generated files. */
void fs_store_changed(void *arg, const char *project);

extern const struct fuse_lowlevel_ops fs_ops;

#endif
