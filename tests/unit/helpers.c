/* helpers: see helpers.h. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include "helpers.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/util.h"

#define TMP_MAX_DIRS 16

const char cfg_lambda[] = "type: lambda\ncreds:\n  type: api_key\n  api_key: abc\n";
const char cfg_aws[] = "type: aws\ncreds:\n  type: access_key\n  access_key: AKIA\n"
		       "  secret_key: s3cr3t\n";

static char g_dirs[TMP_MAX_DIRS][PATH_MAX];
static size_t g_ndirs;
static bool g_atexit;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static char g_root[PATH_MAX];

void tmp_root_setup(void)
{
	if (g_root[0])
		return;
	if (fmt(g_root, sizeof(g_root), "/tmp/fleetfs-unit-XXXXXX") || !mkdtemp(g_root)) {
		fprintf(stderr, "tmp_root_setup: mkdtemp: %s\n", strerror(errno));
		g_root[0] = '\0';
	}
}

void tmp_root_teardown(void)
{
	if (g_root[0])
		nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	g_root[0] = '\0';
}

void tmp_remove_all(void)
{
	for (size_t i = 0; i < g_ndirs; i++)
		nftw(g_dirs[i], rm_one, 16, FTW_DEPTH | FTW_PHYS);
	g_ndirs = 0;
}

const char *tmp_dir(const char *tag)
{
	ck_assert_uint_lt(g_ndirs, TMP_MAX_DIRS);
	if (!g_atexit) {
		atexit(tmp_remove_all);
		g_atexit = true;
	}
	char *d = g_dirs[g_ndirs];
	if (g_root[0])
		ck_assert_int_eq(fmt(d, PATH_MAX, "%s/%s-XXXXXX", g_root, tag), 0);
	else
		ck_assert_int_eq(fmt(d, PATH_MAX, "/tmp/fleetfs-%s-XXXXXX", tag), 0);
	ck_assert_msg(mkdtemp(d) != NULL, "mkdtemp: %s", strerror(errno));
	g_ndirs++;
	return d;
}

char *file_read(const char *path, size_t *len)
{
	struct buf b;
	char chunk[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	buf_init(&b, (size_t)1 << 31);
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n <= 0)
			break;
		ck_assert_int_eq(buf_append(&b, chunk, (size_t)n), 0);
	}
	close(fd);
	size_t n = 0;
	char *p = buf_steal(&b, &n);
	if (!p)
		p = xstrdup("");
	if (len)
		*len = n;
	return p;
}

int file_write(const char *path, const void *p, size_t n, unsigned mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	int r = (write(fd, p, n) == (ssize_t)n) ? 0 : -EIO;
	if (fchmod(fd, mode) != 0)
		r = -errno;
	close(fd);
	return r;
}

bool mem_has(const void *hay, size_t n, const char *needle)
{
	size_t m = strlen(needle);
	if (m > n)
		return false;
	return memmem(hay, n, needle, m) != NULL;
}

size_t str_count(const char *text, const char *needle)
{
	size_t c = 0, m = strlen(needle);
	for (const char *p = text; m && (p = strstr(p, needle)); p += m)
		c++;
	return c;
}

struct store *store_tmp(const char *tag)
{
	char path[PATH_MAX], err[STORE_ERR_MAX] = "";
	struct store *s = NULL;
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/state", tmp_dir(tag)), 0);
	int r = store_open(path, &s, err, sizeof(err));
	ck_assert_msg(r == 0, "store_open(%s): %d %s", path, r, err);
	return s;
}

char *events_text(struct store *s, const char *project)
{
	struct stx *tx = NULL;
	struct buf b;
	buf_init(&b, 64 * 1024 * 1024);
	ck_assert_int_eq(store_begin(s, false, &tx), 0);
	ck_assert_int_eq(store_events_read(tx, project, &b), 0);
	store_abort(tx);
	char *t = buf_steal(&b, NULL);
	return t ? t : xstrdup("");
}

struct st_backend backend_of(struct store *s, const char *project, const char *name)
{
	struct stx *tx = NULL;
	struct st_backend b;
	ck_assert_int_eq(store_begin(s, false, &tx), 0);
	int r = store_backend_get(tx, project, name, &b);
	store_abort(tx);
	ck_assert_msg(r == 0, "no backend %s/%s: %d", project, name, r);
	return b;
}

bool has_backend(struct store *s, const char *project, const char *name)
{
	struct stx *tx = NULL;
	struct st_backend b;
	ck_assert_int_eq(store_begin(s, false, &tx), 0);
	int r = store_backend_get(tx, project, name, &b);
	store_abort(tx);
	return r == 0;
}

bool has_project(struct store *s, const char *name)
{
	struct stx *tx = NULL;
	struct st_project p;
	ck_assert_int_eq(store_begin(s, false, &tx), 0);
	int r = store_project_get(tx, name, &p);
	store_abort(tx);
	return r == 0;
}
