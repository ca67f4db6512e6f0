/* schema: the validation of one backend config entry (the types themselves: registry.h).
 *
 * A backend entry is the mapping dstack accepts as one item of `projects[].backends` in
 * ~/.dstack/server/config.yml (BackendFileConfigWithCreds), e.g.
 *     type: aws
 *     creds: {type: access_key, access_key: ..., secret_key: ...}
 *     regions: [us-east-1]
 * Validation is per type and data-driven (one table per config shape): required fields, types, enum
 * values, unknown keys rejected (dstack forbids extras), mutually exclusive fields. Every error
 * names file, line and field through ydoc_err(); values are never echoed (they may be secrets).
 *
 * Files an entry refers to (GCP/Nebius service-account JSON, OCI and Nebius PEM keys,
 * kubeconfig `filename`) are read at validation time, checked to parse (JSON via cJSON, PEM via
 * OpenSSL, kubeconfig via ydoc), and returned as attachments so the store can seal them: the
 * backend keeps working if the file later moves. Relative paths resolve against ctx->cwd,
 * a leading "~/" against ctx->home.
 */
#ifndef FLEETFS_SCHEMA_H
#define FLEETFS_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/fileref.h"
#include "../lib/ydoc.h"

#define SCHEMA_MAX_ATTACH 8
#define SCHEMA_MAX_FILE (1024 * 1024)

struct schema_result {
	const char *type; /* static string from the type table */
	struct attachment att[SCHEMA_MAX_ATTACH];
	size_t natt;
};

/* Validate the backend entry at node `node` of d.
 * dirname: the backend's directory name when the entry comes from
 *   projects/<p>/backends/<dirname>/config.yml, or NULL when it comes from the root config.yml.
 *   If dirname is a known type, `type:` may be omitted (it defaults to dirname) and when present
 *   must equal it. Otherwise (a named backend, e.g. "aws-prod") `type:` is required.
 *   In the root config.yml, `type:` is always required and an optional `name:` (a fleetfs
 *   extension, name rule ^[a-zA-Z0-9_-]{1,50}$) names the backend directory; `name:` is an
 *   unknown key inside a backends/<x>/config.yml.
 * On success returns 0 and fills *res (free with schema_result_free). On failure returns -EINVAL
 * with "FILE:LINE: FIELD: message" in err, and *res holds nothing to free.
 * -ENOMEM on allocation failure. */
int schema_validate(const struct ydoc *d, int node, const char *dirname, const struct fileref_ctx *ctx,
		struct schema_result *res, char *err, size_t errlen);
void schema_result_free(struct schema_result *res);

#endif
