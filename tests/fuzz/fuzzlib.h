/* fuzzlib: what the libFuzzer targets of tests/fuzz share.
 *
 * - A scratch directory per process (made on first use, removed at exit) for the files a
 *   parser reads by path (keys, service-account JSON, AWS shared files) and for a store.
 * - Scripts of HTTP answers for the provider targets. An input is text:
 *       HEAD LINE(S)               what to call (the target says: "get ID", "list", ...)
 *       === 200 Header: value      one answer: its status, then one optional header line
 *       body ...                   its body: every line up to the next "=== " line
 *       === 404
 *       ...
 *   Each HTTP attempt the library makes takes the next answer; when none is left the
 *   attempt fails as a refused connection. Answers go through the HTTP client's own
 *   checks, body cap and retries (http_set_responder), so the provider code sees exactly
 *   what it would see from the network.
 */
#ifndef FLEETFS_FUZZLIB_H
#define FLEETFS_FUZZLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../backends/backend.h"
#include "../../backends/schema.h"

/* Inputs are bounded as the daemon bounds what it reads: no target looks at more. */
#define FZ_MAX_INPUT (1024 * 1024)

/* The scratch directory (absolute, no trailing '/'); exits on failure. */
const char *fz_scratch(void);
/* Write a file below the scratch directory (name relative to it); exits on failure. Returns
 * its absolute path in a static buffer of the caller's choosing (out, outlen). */
void fz_write(const char *name, const void *data, size_t len, char *out, size_t outlen);
/* A writer's context (struct fileref_ctx) whose home and working directory are the scratch
 * directory, which then holds the files the examples name: ~/.ssh/id_rsa,
 * ~/.ssh/bastion_ed25519, ~/.ssh/admin_ed25519, ~/.oci/private_key.pem,
 * ~/.dstack/server/gcp-sa.json, ~/.nebius/sa-credentials.json, ~/.kube/config. */
const struct fileref_ctx *fz_writer_ctx(void);
/* Remove a directory and everything below it (a path below the scratch directory). */
void fz_remove_tree(const char *path);
/* A NUL-terminated copy of data (malloc'd). */
char *fz_strndup(const uint8_t *data, size_t size);

/* Split the input into its head (returned, malloc'd, NUL-terminated) and the answers that
 * follow, which the responder then serves in turn (thread-safe). Installs the responder on
 * first use. fz_script_end() drops what is left. */
char *fz_script_begin(const uint8_t *data, size_t size);
void fz_script_end(void);
/* The next answer without serving it (for targets that read sections of the input as
 * files): its status, body and length; false when none is left. */
bool fz_script_take(long *status, const char **body, size_t *len);

/* The words of a head line: up to max words split on blanks, into the head's own storage. */
size_t fz_words(char *head, char **w, size_t max);

/* The HTTP client of the provider targets (answered by the script; retries do not pause). */
struct http_client *fz_http(void);

/* Run one call of a provider's interface (ops of type) on a script: head words are
 *   check | offers | list | get ID [BACKEND_DATA] | terminate ID [BACKEND_DATA] |
 *   create [INSTANCE [REGION [SPOT]]]
 * config: the backend's config.yml; dflt_instance/dflt_region: create's defaults. */
void fz_backend_run(const char *type, const char *config, const char *dflt_instance,
		    const char *dflt_region, const uint8_t *data, size_t size);

#endif
