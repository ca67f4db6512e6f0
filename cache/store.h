/* store: the LMDB store of everything fleetfs knows.
 *
 * One LMDB environment in the state directory, named databases:
 *   meta      schema version, sealed user encryption keys, root config extras, event counters
 *   projects  <project>                 -> JSON {mtime}
 *   backends  <project>/<backend>       -> JSON metadata (type, size, mtimes, last error)
 *   secrets   b/<project>/<backend>/... -> sealed config text and sealed attachments
 *   events    <project>/<seq:016x>      -> one event line ("" project = the mount's events)
 *   fleets, instances                   -> JSON records (core/fleets.c)
 *   offers    m/<project>/<backend>     -> JSON fetch metadata of the backend's offers cache
 *             d/<project>/<backend>     -> the cached offers (CSV, core/offers.h)
 * Every change a caller makes through one stx is one LMDB write transaction: all or nothing,
 * durable when store_commit returns 0 (LMDB syncs on commit). Secrets never reach the file in
 * plain text: they are sealed with seal.h under the ring (the key file, plus dstack
 * `encryption.keys` given in the root config.yml, the first of which then seals).
 *
 * A state directory is used by one daemon at a time (flock on <dir>/lock). The store carries a
 * schema version; a store written by a newer fleetfs is refused, never modified.
 *
 * Threads: the store is shared; each thread uses its own stx (MDB_NOTLS). One write stx at a
 * time (LMDB serialises writers; store_begin(write) blocks until the previous one ends).
 */
#ifndef FLEETFS_STORE_H
#define FLEETFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../lib/fileref.h"
#include "../lib/util.h"
#include "seal.h"

#define STORE_SCHEMA 1
#define STORE_EVENTS_CAP 10000
#define STORE_NAME_MAX 64
#define STORE_ERR_MAX 1024

struct store;
struct stx;

struct st_project {
	char name[STORE_NAME_MAX];
	struct timespec mtime;
};

struct st_backend {
	char project[STORE_NAME_MAX];
	char name[STORE_NAME_MAX];
	char type[32];              /* "" until a config is committed */
	bool has_config;            /* config.yml exists */
	uint64_t size;              /* config.yml size in bytes */
	struct timespec mtime;      /* config.yml mtime (utimens is kept) */
	struct timespec dir_mtime;  /* backends/<name>/ mtime */
	int64_t committed_at;       /* last successful commit, unix seconds */
	char last_error[STORE_ERR_MAX]; /* last rejected write, "" if none since last commit */
	int64_t last_error_at;
	uint32_t natt;              /* sealed attachments */
	char digest[65];            /* keyed hash of the last committed config ("" if none);
				     * kept across unlink so a restore of the same bytes is
				     * recognised. HMAC-SHA256 under the key file: reveals nothing */
};

/* Open (creating when absent) the store in dir. Takes the directory lock, checks the schema
 * version, loads the key ring. Errors carry a readable message in err: -EEXIST/-EBUSY (in use),
 * -EPROTO (newer schema), -EACCES, -errno. */
int store_open(const char *dir, struct store **out, char *err, size_t errlen);
/* Close the environment; keeps the directory lock when keep_lock (used across daemonize). */
void store_close(struct store *s);
/* Close only the LMDB environment (before fork); store_reopen opens it again after. */
void store_detach(struct store *s);
int store_reopen(struct store *s, char *err, size_t errlen);

int store_begin(struct store *s, bool write, struct stx **out);
/* Commit and free tx. Returns 0 or -errno (then nothing of tx happened). */
int store_commit(struct stx *tx);
/* Abort and free; NULL is fine. */
void store_abort(struct stx *tx);

/* Generic JSON records for fleets and instances (cJSON objects; see core/fleets.c for their
 * fields). Keys: fleets "<project>/<fleet>", instances "<project>/<fleet>/<num:08u>".
 * put/del mark `project` changed for the store hook. get: 0 or -ENOENT, *out owned by the
 * caller (cJSON_Delete). list: every record whose key starts with prefix, as a cJSON array of
 * {"key": ..., "value": {...}} in key order. */
struct cJSON;
enum store_db { SDB_FLEETS = 0, SDB_INSTANCES, SDB_OFFERS };
int store_obj_get(struct stx *tx, enum store_db db, const char *key, struct cJSON **out);
int store_obj_put(struct stx *tx, enum store_db db, const char *key, const struct cJSON *obj,
		  const char *project);
int store_obj_del(struct stx *tx, enum store_db db, const char *key, const char *project);
int store_obj_list(struct stx *tx, enum store_db db, const char *prefix, struct cJSON **out);
/* Raw values (the offers cache's CSV). get: *data points into the map, valid until tx ends. */
int store_blob_get(struct stx *tx, enum store_db db, const char *key, const void **data,
		   size_t *len);
int store_blob_put(struct stx *tx, enum store_db db, const char *key, const void *data,
		   size_t len, const char *project);
/* Sealed blobs by key ("f/<p>/<fleet>/spec", "p/<p>/sshkey", ...). get: *out malloc'd, free
 * with seal_free_secret. del_prefix removes every key starting with prefix. */
int store_secret_put(struct stx *tx, const char *key, const void *data, size_t len);
int store_secret_get(struct stx *tx, const char *key, char **out, size_t *len);
int store_secret_del_prefix(struct stx *tx, const char *prefix);
/* Mark project changed for the store hook without writing anything else. */
void store_touch(struct stx *tx, const char *project);

/* Keyed digest (HMAC-SHA256 under the key file's key, hex) of data, for st_backend.digest. */
void store_digest(struct store *s, const void *data, size_t len, char out[65]);
/* Remove a backend's sealed config and attachments, keeping its metadata record. */
int store_backend_drop_config(struct stx *tx, const char *project, const char *name);

/* Projects. get: 0 or -ENOENT. put creates or replaces. del removes the project, its events
 * and nothing else (the caller checks it has no backends). list: *arr malloc'd, sorted. */
int store_project_get(struct stx *tx, const char *name, struct st_project *out);
int store_project_put(struct stx *tx, const struct st_project *p);
int store_project_del(struct stx *tx, const char *name);
int store_project_list(struct stx *tx, struct st_project **arr, size_t *n);

/* Backends. put stores metadata; when config is non-NULL it also replaces the sealed config
 * text and the attachments (att may be NULL with natt 0). b->natt is set from natt then.
 * del removes metadata, config and attachments. list: sorted by name, *arr malloc'd. */
int store_backend_get(struct stx *tx, const char *project, const char *name,
		      struct st_backend *out);
int store_backend_put(struct stx *tx, struct st_backend *b, const char *config, size_t len,
		      const struct attachment *att, size_t natt);
int store_backend_del(struct stx *tx, const char *project, const char *name);
int store_backend_list(struct stx *tx, const char *project, struct st_backend **arr, size_t *n);
/* The config text, unsealed. *out malloc'd; free with seal_free_secret(*out, *len). */
int store_backend_config(struct stx *tx, const char *project, const char *name, char **out,
			 size_t *len);
/* Attachment i, unsealed (data in a->data, free its fields: free(field), free(path),
 * seal_free_secret(data, len)). */
int store_backend_attach(struct stx *tx, const char *project, const char *name, uint32_t i,
			 struct attachment *a);

/* Append an event line "<iso time> <text>" to project's journal ("" = the mount's). Keeps at
 * most STORE_EVENTS_CAP lines per journal, dropping the oldest. text must hold no secret. */
int store_event(struct stx *tx, const char *project, const char *f, ...)
	__attribute__((format(printf, 3, 4)));
int store_events_read(struct stx *tx, const char *project, struct buf *out);
uint64_t store_events_size(struct stx *tx, const char *project);

/* Metadata values (not secret). get: 0 or -ENOENT; *val malloc'd. */
int store_meta_get(struct stx *tx, const char *key, char **val, size_t *len);
int store_meta_put(struct stx *tx, const char *key, const char *val, size_t len);
int store_meta_del(struct stx *tx, const char *key);

/* User encryption keys (dstack `encryption.keys`, aes only; n may be 0). Sealed under the
 * key file in meta; on commit of tx the ring becomes keys + the key file's key, and every
 * sealed value in the store is re-sealed under the new first key in the same transaction. */
int store_set_user_keys(struct stx *tx, const struct seal_key *keys, size_t n);
/* Copy of the user keys currently in force. */
size_t store_user_keys(struct store *s, struct seal_key *keys, size_t max);

/* Called after a write transaction commits, once per project whose journal or backends it
 * changed ("" for the mount's journal). Lets the FUSE face drop the kernel's cached sizes of
 * generated files instead of polling. Runs in the committing thread; must not block. */
typedef void (*store_hook_fn)(void *arg, const char *project);
void store_set_hook(struct store *s, store_hook_fn fn, void *arg);

/* The state filesystem's current problem, if any ("state dir full: 3 MiB free on /x ..."):
 * copies it into out (n bytes), *since (may be NULL) = when it began, and returns 1; or
 * returns 0 with out = "". Set when a write fails for want of space (the caller gets
 * -ENOSPC), cleared by the next write that commits. */
int store_health(struct store *s, char *out, size_t n, time_t *since);

/* Paths in the state directory, for tests and messages. */
const char *store_dir(const struct store *s);

#endif
