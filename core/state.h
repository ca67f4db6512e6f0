/* state: the operations users perform on projects and backends, on top of the store.
 *
 * Each function is one store transaction: validation happens first, outside the write
 * transaction; then the change and its event are written together, or (for a rejected write)
 * only the reason is recorded, in the matching events journal and in the backend's status.
 * Errors: 0 or -errno, with a readable reason in err (always set on failure). Nothing here
 * knows FUSE; fs/ maps these onto the tree.
 */
#ifndef FLEETFS_STATE_H
#define FLEETFS_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "../cache/store.h"
#include "../backends/schema.h"
#include "../lib/util.h"

#define STATE_MAX_FILE YDOC_MAX_BYTES

/* mkdir projects/<name>: -EINVAL (bad name), -EEXIST. Events go to the mount's journal. */
int state_project_create(struct store *s, const char *name, char *err, size_t errlen);
/* rmdir projects/<name>: -ENOENT, -ENOTEMPTY (has backends). */
int state_project_delete(struct store *s, const char *name, char *err, size_t errlen);

/* mkdir projects/<p>/backends/<name>: -EINVAL, -EEXIST, -ENOENT (no project). */
int state_backend_create(struct store *s, const char *project, const char *name, char *err,
			 size_t errlen);
/* rmdir: -ENOTEMPTY while a config.yml exists. */
int state_backend_delete(struct store *s, const char *project, const char *name, char *err,
			 size_t errlen);

/* Commit data as projects/<p>/backends/<name>/config.yml. mtime NULL means now.
 * Invalid: -EINVAL / -EFBIG, reason recorded (events + status), stored content untouched. */
int state_backend_commit(struct store *s, const char *project, const char *name,
			 const char *data, size_t len, const struct timespec *mtime,
			 const struct fileref_ctx *ctx, char *err, size_t errlen);
/* Record a refused write of config.yml (why: "FILE...: message") in the project's events and
 * the backend's status, as a failed commit does. */
void state_backend_reject(struct store *s, const char *project, const char *name,
			  const char *why);
/* unlink config.yml: the backend stays, unconfigured. -ENOENT if it had none. */
int state_backend_unlink_config(struct store *s, const char *project, const char *name,
				char *err, size_t errlen);
/* utimens on config.yml (dir=false) or on the backend directory (dir=true). */
int state_backend_set_mtime(struct store *s, const char *project, const char *name, bool dir,
			    struct timespec mtime);
int state_project_set_mtime(struct store *s, const char *project, struct timespec mtime);

/* Commit data as the root config.yml (dstack server config format): all or nothing.
 * Listed projects are created, their listed backends created or updated (unchanged ones keep
 * their bytes and mtime), their unlisted backends removed; unlisted projects are untouched;
 * `encryption.keys` replaces the user key ring (everything is re-sealed). */
int state_root_commit(struct store *s, const char *data, size_t len, const struct fileref_ctx *ctx,
		      char *err, size_t errlen);
/* Render the root config.yml of the current state into out (appended). */
int state_root_render(struct store *s, struct buf *out);
/* Render projects/<p>/backends/<name>/status. -ENOENT if no such backend. */
int state_backend_status(struct store *s, const char *project, const char *name,
			 struct buf *out);
/* Record a refused operation (bad name, bad rename...) in a journal ("" = the mount's). */
void state_note(struct store *s, const char *project, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

#endif
