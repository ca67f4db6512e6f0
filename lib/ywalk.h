/* ywalk: what every walk of a YAML document that reports readable errors shares.
 *
 * A walk (the backend config schema, backends/schema.c; the fleet spec, core/fleetspec.c)
 * goes down a ydoc building a dotted path of the field it is in ("creds.access_key",
 * "ssh_config.hosts[2]", "tags[\"team\"]") and stops at the first error with
 * "FILE:LINE: PATH: message" (ydoc_err). Paths are made of schema names; a key of the user's
 * own is shown only as str_redact shows user text. Truncation only shortens a message, so it
 * is never an error here.
 */
#ifndef FLEETFS_YWALK_H
#define FLEETFS_YWALK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "ydoc.h"

/* "FILE:LINE: PATH: <f ...>" for node into err. Returns -EINVAL. Never pass a scalar's value
 * as an argument: messages name keys, not values. */
int ywalk_verr(const struct ydoc *d, int node, const char *path, char *err, size_t errlen,
	       const char *f, va_list ap) __attribute__((format(printf, 6, 0)));
/* dst = base.key (key alone when base is empty). */
void ywalk_path(char *dst, size_t n, const char *base, const char *key);
/* dst = base[i]. */
void ywalk_path_idx(char *dst, size_t n, const char *base, size_t i);
/* dst = base[<the user's key, as str_redact shows it>]. */
void ywalk_path_user(char *dst, size_t n, const char *base, const char *rawkey);
/* "a list", "a mapping", "a single value", "empty": what a node is, for messages. */
const char *ywalk_kind(enum ykind k);

#endif
