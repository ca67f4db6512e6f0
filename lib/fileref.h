/* fileref: files a configuration names by path (a backend's key_file, a fleet's identity_file).
 *
 * Paths are those of the *writer*: "~/x" resolves against ctx->home, a relative path against
 * ctx->cwd, an absolute path is taken as is. A file inside ctx->mountpoint is refused (reading
 * our own mount from a request handler could deadlock), and so is anything that is not a
 * regular file or is larger than the caller's cap.
 *
 * Messages go into `why` without a file/line prefix (the caller adds its own, e.g. through
 * ydoc_err); they show the path only as str_redact() does (it is user text) and never the
 * file's contents. fileref_read resolves symbolic links and ".." itself, component by
 * component, and refuses a path that leads into the mount before any system call reaches it
 * (see open_outside in fileref.c: with -s, such a call would deadlock the daemon).
 */
#ifndef FLEETFS_FILEREF_H
#define FLEETFS_FILEREF_H

#include <stddef.h>

/* Who is writing: the context their paths resolve in. */
struct fileref_ctx {
	const char *cwd;  /* directory of the writing process, for relative paths; may be NULL */
	const char *home; /* home of the writing user, for "~/"; may be NULL */
	const char *mountpoint; /* files below it are refused (reading our own mount from a
				 * request handler could deadlock); may be NULL */
};

/* A file a configuration named, read when it was written: kept (sealed) with the
 * configuration, so it keeps working if the file later moves. */
struct attachment {
	char *field; /* dotted path of the key that named the file, e.g. "creds.filename" */
	char *path;  /* the absolute path that was read */
	char *data;  /* the file's bytes (NUL-terminated past len) */
	size_t len;
};

/* Resolve p (as written in the config) into abs (abslen bytes). ctx may be NULL (then only
 * absolute paths resolve). Returns 0 or -EINVAL with the reason in why. */
int fileref_resolve(const struct fileref_ctx *ctx, const char *p, char *abs, size_t abslen, char *why,
		    size_t whylen);

/* Read the regular file abs (an absolute path from fileref_resolve), at most max bytes.
 * On success *data is malloc'd and NUL-terminated past *len (caller frees). Returns 0,
 * -EINVAL with the reason in why (refused, missing, unreadable, not regular, too large),
 * or -ENOMEM. */
int fileref_read(const struct fileref_ctx *ctx, const char *abs, size_t max, char **data, size_t *len,
		 char *why, size_t whylen);

#endif
