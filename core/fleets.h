/* fleets: fleet specs and their instances, on top of the store (no FUSE, no threads).
 *
 * A fleet is fleets/<name>.yml (dstack's fleet configuration, core/fleetspec.h). Committing
 * it validates the spec, checks the change can be applied in place, and reconciles the
 * instance rows in the same transaction: SSH fleets get one instance per host (new hosts a
 * new row with the lowest unused number, removed hosts `terminating`); backend fleets get
 * `nodes.target` rows. The engine (core/engine.c) then drives every row to its goal.
 *
 * Records: fleets "<p>/<fleet>" (struct fleet_rec) and instances "<p>/<fleet>/<num:08u>"
 * (struct instance_row), typed in core/records.h, the only code that knows their JSON keys.
 * Sealed: "f/<p>/<fleet>/spec" (the text as written), "f/<p>/<fleet>/hosts" and
 * "f/<p>/<fleet>/inst/<num:08u>" (resolved SSH endpoints with their private keys: struct
 * host_rec), "p/<p>/sshkey" (the project key). Journals: the project's, and "<p>:<fleet>" for
 * the fleet.
 */
#ifndef FLEETFS_FLEETS_H
#define FLEETFS_FLEETS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "../cache/store.h"
#include "../lib/fileref.h"
#include "../lib/util.h"
#include "records.h"

/* instance statuses (dstack's) */
#define IST_PENDING "pending"
#define IST_PROVISIONING "provisioning"
#define IST_IDLE "idle"
#define IST_BUSY "busy"
#define IST_TERMINATING "terminating"
#define IST_TERMINATED "terminated"

/* Append an event to the project's journal ("fleet=<f> ...") and to the fleet's. */
int fleets_event(struct stx *tx, const char *project, const char *fleet, const char *f, ...)
	__attribute__((format(printf, 4, 5)));

/* Append {at: now, what} to an instance row's history ("log"), the oldest dropped past
 * FLEETS_HISTORY_MAX. */
#define FLEETS_HISTORY_MAX 20
void fleets_history(struct instance_row *row, const char *what);

/* Commit data as projects/<p>/fleets/<fleet>.yml. -EINVAL/-EFBIG with the reason recorded in
 * the project's events (and the fleet's status when the fleet exists). */
int fleets_commit(struct store *s, const char *project, const char *fleet, const char *data,
		  size_t len, const struct timespec *mtime, const struct fileref_ctx *ctx, char *err,
		  size_t errlen);
/* A backend fleet lost an instance (its VM vanished at the provider): add pending rows until
 * it has its nodes (target, at least min) again, in tx. *added: how many. 0 also when the
 * fleet has no live spec (nothing to keep up). */
int fleets_refill(struct stx *tx, const char *project, const char *fleet, size_t *added);
/* unlink fleets/<fleet>.yml: the fleet is deleted, every instance terminating; <fleet>/ stays
 * until the engine has terminated them. -ENOENT if no such (live) fleet. */
int fleets_unlink(struct store *s, const char *project, const char *fleet, char *err,
		  size_t errlen);
int fleets_set_mtime(struct store *s, const char *project, const char *fleet,
		     struct timespec mtime);
/* Record a refused write (EFBIG...) like a refused commit. */
void fleets_reject(struct store *s, const char *project, const char *fleet, const char *why);

/* What exists. spec_exists: the spec file (live, not deleted); dir_exists: <fleet>/ (any
 * record, deleted or not). instance_exists: a row for num. */
bool fleets_spec_exists(struct stx *tx, const char *project, const char *fleet, size_t *size,
			struct timespec *mtime);
bool fleets_dir_exists(struct stx *tx, const char *project, const char *fleet);
bool fleets_instance_exists(struct stx *tx, const char *project, const char *fleet,
			    unsigned num);
/* Names: fleets of a project (sorted) with whether the spec is live; instance numbers. */
int fleets_list(struct stx *tx, const char *project, char ***names, bool **live, size_t *n);
int fleets_instances(struct stx *tx, const char *project, const char *fleet, unsigned **nums,
		     size_t *n);
void fleets_names_free(char **names, size_t n);

/* The spec text as written. *out malloc'd (seal_free_secret). */
int fleets_spec_text(struct stx *tx, const char *project, const char *fleet, char **out,
		     size_t *len);

/* The project's SSH key pair, generated and sealed on first use when create is set (that
 * commits a transaction: never with a lock the store hook takes), else -ENOENT until it
 * exists. *priv: seal_free_secret; *pub: free. */
int fleets_project_key(struct store *s, const char *project, bool create, char **priv,
		       size_t *privlen, char **pub);

/* Generated files. mnt is the mount point (for paths inside stanzas). */
int fleets_render_status(struct store *s, const char *project, const char *fleet,
			 struct buf *out);
int fleets_render_ssh_config(struct store *s, const char *mnt, const char *project,
			     const char *fleet /* NULL: every fleet of the project */,
			     struct buf *out);
int fleets_render_known_hosts(struct store *s, const char *project, struct buf *out);
int fleets_render_instance(struct store *s, const char *mnt, const char *project,
			   const char *fleet, unsigned num, const char *what /* status, ssh, info */,
			   struct buf *out);

#endif
