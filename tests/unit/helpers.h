/* helpers: what several unit suites share: temporary directories (each test makes its own
 * under /tmp and removes it, even when an assertion ends the forked test early), reading a
 * file whole, byte search, and a store in a fresh directory. */
#ifndef FLEETFS_TESTS_HELPERS_H
#define FLEETFS_TESTS_HELPERS_H

#include <stdbool.h>
#include <stddef.h>

#include "../../cache/store.h"

/* A test case's root directory, /tmp/fleetfs-unit-XXXXXX: made by tmp_root_setup and removed
 * with everything below it by tmp_root_teardown. Use them as an unchecked fixture: they run in
 * the runner's process, so the root is removed even when a forked test ends early (a failed
 * assertion _exits, skipping checked teardowns and atexit handlers). */
void tmp_root_setup(void);
void tmp_root_teardown(void);

/* mkdtemp("<root>/<tag>-XXXXXX"), or "/tmp/fleetfs-<tag>-XXXXXX" without a root; the path is
 * valid until tmp_remove_all(), which removes it (and also runs at exit). */
const char *tmp_dir(const char *tag);
/* Remove (rm -rf) every directory tmp_dir() made in this process. */
void tmp_remove_all(void);

/* Read a whole file (malloc'd, NUL-terminated past *len; caller frees). NULL if unreadable. */
char *file_read(const char *path, size_t *len);
/* Write a whole file with the given mode (0 on success). */
int file_write(const char *path, const void *p, size_t n, unsigned mode);

/* memmem that also works for empty haystacks. */
bool mem_has(const void *hay, size_t n, const char *needle);
/* Number of non-overlapping occurrences of needle in the NUL-terminated text. */
size_t str_count(const char *text, const char *needle);

/* Open a store in a new temporary directory (<tmp>/state, created by store_open). Fails the
 * test on error. */
struct store *store_tmp(const char *tag);

/* The text of a journal ("" = the mount's), malloc'd; caller frees. */
char *events_text(struct store *s, const char *project);

/* A backend's record (fails the test when missing); whether a backend / project exists. */
struct st_backend backend_of(struct store *s, const char *project, const char *name);
bool has_backend(struct store *s, const char *project, const char *name);
bool has_project(struct store *s, const char *name);

/* Minimal valid backend configs (see the unit test brief). */
extern const char cfg_lambda[];
extern const char cfg_aws[];

#endif
