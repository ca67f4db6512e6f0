/* Unit tests of core/state: the rules of project and backend directories, committing a
 * backend's config.yml (valid: stored byte for byte with an event; invalid: refused with the
 * reason recorded in the journal and the status, the stored content untouched), unlinking it,
 * mtimes, and the status file. */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/state.h"
#include "../../lib/util.h"
#include "../../lib/ydoc.h"
#include "helpers.h"
#include "suites.h"

#define ERRSZ 2048

static struct store *g_s;
static const char *g_home;
static struct fileref_ctx g_ctx;

static void setup(void)
{
	g_s = store_tmp("state");
	g_home = tmp_dir("state-home");
	g_ctx = (struct fileref_ctx){.cwd = g_home, .home = g_home, .mountpoint = NULL};
}

static void teardown(void)
{
	store_close(g_s);
	g_s = NULL;
	tmp_remove_all();
}


/* The stored config text (caller frees with free()), or NULL when there is none. */
static char *config_of(const char *project, const char *name, size_t *len)
{
	struct stx *tx = NULL;
	char *c = NULL, *copy = NULL;
	size_t n = 0;
	ck_assert_int_eq(store_begin(g_s, false, &tx), 0);
	if (store_backend_config(tx, project, name, &c, &n) == 0) {
		copy = xmalloc(n + 1);
		memcpy(copy, c, n + 1);
		seal_free_secret(c, n);
		if (len)
			*len = n;
	}
	store_abort(tx);
	return copy;
}

static char *status_of(const char *project, const char *name)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(state_backend_status(g_s, project, name, &b), 0);
	char *t = buf_steal(&b, NULL);
	return t;
}

/* The status parses as YAML; return the scalar at key (or at key.sub), "" if absent. */
static char *status_field(const char *status, const char *key, const char *sub)
{
	struct ydoc *d = NULL;
	char err[512];
	int r = ydoc_load(status, strlen(status), "status", &d, err, sizeof(err));
	ck_assert_msg(r == 0, "status is not YAML: %s\n%s", err, status);
	int n = ydoc_map_get(d, ydoc_root(d), key);
	if (sub)
		n = ydoc_map_get(d, n, sub);
	const char *s = ydoc_str(d, n);
	char *out = xstrdup(s ? s : "");
	ydoc_free(d);
	return out;
}

static void commit_ok(const char *project, const char *name, const char *cfg)
{
	char err[ERRSZ] = "";
	int r = state_backend_commit(g_s, project, name, cfg, strlen(cfg), NULL, &g_ctx, err,
				     sizeof(err));
	ck_assert_msg(r == 0, "commit %s/%s: %d %s", project, name, r, err);
}

static void mkbackend(const char *project, const char *name)
{
	char err[ERRSZ] = "";
	int r = state_backend_create(g_s, project, name, err, sizeof(err));
	ck_assert_msg(r == 0, "backend_create %s/%s: %d %s", project, name, r, err);
}

static void mkproject(const char *name)
{
	char err[ERRSZ] = "";
	int r = state_project_create(g_s, name, err, sizeof(err));
	ck_assert_msg(r == 0, "project_create %s: %d %s", name, r, err);
}

/* ---- projects ---- */

START_TEST(test_project_create)
{
	char err[ERRSZ];
	ck_assert_int_eq(state_project_create(g_s, "alpha", err, sizeof(err)), 0);
	ck_assert(has_project(g_s, "alpha"));
	char *t = events_text(g_s, "");
	ck_assert_uint_eq(str_count(t, " project=alpha created\n"), 1);
	free(t);
	t = events_text(g_s, "alpha");
	ck_assert_uint_eq(str_count(t, " project=alpha created\n"), 1);
	free(t);
	/* twice */
	err[0] = '\0';
	ck_assert_int_eq(state_project_create(g_s, "alpha", err, sizeof(err)), -EEXIST);
	ck_assert_str_eq(err, "project alpha exists");
	ck_assert_int_eq(state_project_create(g_s, "main", err, sizeof(err)), -EEXIST);
	/* a 50-character name is fine */
	char n50[51];
	memset(n50, 'p', 50);
	n50[50] = '\0';
	ck_assert_int_eq(state_project_create(g_s, n50, err, sizeof(err)), 0);
	ck_assert(has_project(g_s, n50));
}
END_TEST

START_TEST(test_project_bad_names)
{
	char n51[52];
	memset(n51, 'p', 51);
	n51[51] = '\0';
	const char *bad[] = {"a b", "", n51, "../x", "a/b", "é", ".", "x:y"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[ERRSZ] = "", safe[80], want[256];
		ck_assert_msg(state_project_create(g_s, bad[i], err, sizeof(err)) == -EINVAL, "%s",
			      bad[i]);
		ck_assert(!has_project(g_s, bad[i]));
		str_redact(safe, sizeof(safe), bad[i]); /* a refused name is user text */
		ck_assert_int_eq(
			fmt(want, sizeof(want),
			    "mkdir projects/%s refused: names must match ^[a-zA-Z0-9_-]{1,50}$",
			    safe),
			0);
		ck_assert_str_eq(err, want);
		/* the refusal is in the mount's journal */
		char *t = events_text(g_s, "");
		char *line = xasprintf(" %s\n", want);
		ck_assert_msg(str_count(t, line) == 1, "journal:\n%s", t);
		free(line);
		free(t);
	}
	/* a name with a newline cannot forge a journal line */
	char err[ERRSZ];
	ck_assert_int_eq(
		state_project_create(g_s, "x\n2026-01-01T00:00:00Z forged", err, sizeof(err)),
		-EINVAL);
	ck_assert_ptr_null(strchr(err, '\n'));
	char *t = events_text(g_s, "");
	ck_assert_ptr_null(strstr(t, "\n2026-01-01T00:00:00Z forged"));
	ck_assert_uint_eq(str_count(t, "\n"), sizeof(bad) / sizeof(bad[0]) + 1);
	free(t);
	/* nothing else was created */
	struct stx *tx = NULL;
	struct st_project *ps = NULL;
	size_t n = 0;
	ck_assert_int_eq(store_begin(g_s, false, &tx), 0);
	ck_assert_int_eq(store_project_list(tx, &ps, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(ps);
	store_abort(tx);
}
END_TEST

START_TEST(test_project_delete)
{
	char err[ERRSZ] = "";
	ck_assert_int_eq(state_project_delete(g_s, "nope", err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "no project nope");
	mkproject("p");
	mkbackend("p", "aws");
	err[0] = '\0';
	ck_assert_int_eq(state_project_delete(g_s, "p", err, sizeof(err)), -ENOTEMPTY);
	ck_assert_str_eq(err, "rmdir projects/p refused: the project still has backends");
	ck_assert(has_project(g_s, "p"));
	char *t = events_text(g_s, "");
	ck_assert_uint_eq(
		str_count(t, " rmdir projects/p refused: the project still has backends\n"), 1);
	free(t);
	ck_assert_int_eq(state_backend_delete(g_s, "p", "aws", err, sizeof(err)), 0);
	ck_assert_int_eq(state_project_delete(g_s, "p", err, sizeof(err)), 0);
	ck_assert(!has_project(g_s, "p"));
	t = events_text(g_s, "");
	ck_assert_uint_eq(str_count(t, " project=p deleted\n"), 1);
	free(t);
	/* the project's journal went with it */
	t = events_text(g_s, "p");
	ck_assert_str_eq(t, "");
	free(t);
	/* and it can be made again */
	mkproject("p");
	/* "main" is an ordinary project */
	ck_assert_int_eq(state_project_delete(g_s, "main", err, sizeof(err)), 0);
	ck_assert(!has_project(g_s, "main"));
}
END_TEST

/* ---- backends ---- */

START_TEST(test_backend_create)
{
	char err[ERRSZ] = "";
	ck_assert_int_eq(state_backend_create(g_s, "nope", "aws", err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "no project nope");
	ck_assert(!has_backend(g_s, "nope", "aws"));
	mkbackend("main", "aws");
	struct st_backend b = backend_of(g_s, "main", "aws");
	ck_assert(!b.has_config);
	ck_assert_str_eq(b.type, "");
	ck_assert(b.dir_mtime.tv_sec > 0);
	err[0] = '\0';
	ck_assert_int_eq(state_backend_create(g_s, "main", "aws", err, sizeof(err)), -EEXIST);
	ck_assert_str_eq(err, "backend aws exists");
	mkbackend("main", "aws-dev");
	char *t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " backend=aws created\n"), 1);
	ck_assert_uint_eq(
		str_count(t, " backend=aws-dev created (a named backend: its config.yml must set "
			     "type:)\n"),
		1);
	free(t);
	/* bad names: refused, noted in the project's journal */
	err[0] = '\0';
	ck_assert_int_eq(state_backend_create(g_s, "main", "a b", err, sizeof(err)), -EINVAL);
	ck_assert_msg(strncmp(err, "mkdir backends/\"a b\" (3 chars) refused: names must match ",
			      57) == 0,
		      "%s", err);
	ck_assert(!has_backend(g_s, "main", "a b"));
	t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " mkdir backends/\"a b\" (3 chars) refused: "), 1);
	free(t);
	ck_assert_int_eq(state_backend_create(g_s, "main", "", err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(state_backend_create(g_s, "main", "x/y", err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_backend_delete)
{
	char err[ERRSZ] = "";
	ck_assert_int_eq(state_backend_delete(g_s, "main", "aws", err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "no backend aws");
	mkbackend("main", "aws");
	commit_ok("main", "aws", cfg_aws);
	err[0] = '\0';
	ck_assert_int_eq(state_backend_delete(g_s, "main", "aws", err, sizeof(err)), -ENOTEMPTY);
	ck_assert_str_eq(err, "rmdir backends/aws refused: remove its config.yml first");
	ck_assert(has_backend(g_s, "main", "aws"));
	char *t = events_text(g_s, "main");
	ck_assert_uint_eq(
		str_count(t, " rmdir backends/aws refused: remove its config.yml first\n"), 1);
	free(t);
	ck_assert_int_eq(state_backend_unlink_config(g_s, "main", "aws", err, sizeof(err)), 0);
	ck_assert_int_eq(state_backend_delete(g_s, "main", "aws", err, sizeof(err)), 0);
	ck_assert(!has_backend(g_s, "main", "aws"));
	ck_assert_ptr_null(config_of("main", "aws", NULL));
	t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " backend=aws deleted\n"), 1);
	free(t);
}
END_TEST

/* ---- commit ---- */

START_TEST(test_commit_valid)
{
	mkbackend("main", "aws");
	const char *cfg = "# my AWS account\ntype: aws\ncreds:\n  type: access_key\n"
			  "  access_key: AKIA\n  secret_key: s3cr3t\nregions: [us-east-1]\n";
	time_t before = time(NULL);
	commit_ok("main", "aws", cfg);
	size_t n = 0;
	char *c = config_of("main", "aws", &n);
	ck_assert_uint_eq(n, strlen(cfg));
	ck_assert_str_eq(c, cfg); /* byte for byte, comments and all */
	free(c);
	struct st_backend b = backend_of(g_s, "main", "aws");
	ck_assert(b.has_config);
	ck_assert_str_eq(b.type, "aws");
	ck_assert_uint_eq(b.size, strlen(cfg));
	ck_assert_str_eq(b.last_error, "");
	ck_assert_uint_eq(b.natt, 0);
	ck_assert(b.committed_at >= before && b.committed_at <= time(NULL));
	ck_assert(b.mtime.tv_sec >= before && b.mtime.tv_sec <= time(NULL));
	char *t = events_text(g_s, "main");
	char *want =
		xasprintf(" backend=aws config.yml created (type aws, %zu bytes)\n", strlen(cfg));
	ck_assert_msg(str_count(t, want) == 1, "%s", t);
	free(want);
	ck_assert_ptr_null(strstr(t, "s3cr3t"));
	ck_assert_ptr_null(strstr(t, "AKIA"));
	free(t);
	/* a second commit is an update */
	commit_ok("main", "aws", cfg_aws);
	c = config_of("main", "aws", &n);
	ck_assert_str_eq(c, cfg_aws);
	free(c);
	t = events_text(g_s, "main");
	want = xasprintf(" backend=aws config.yml updated (type aws, %zu bytes)\n",
			 strlen(cfg_aws));
	ck_assert_msg(str_count(t, want) == 1, "%s", t);
	free(want);
	free(t);
	/* the status */
	char *st = status_of("main", "aws");
	char *v = status_field(st, "state", NULL);
	ck_assert_str_eq(v, "checking");
	free(v);
	v = status_field(st, "type", NULL);
	ck_assert_str_eq(v, "aws");
	free(v);
	v = status_field(st, "config", "size");
	char sz[32];
	ck_assert_int_eq(fmt(sz, sizeof(sz), "%zu", strlen(cfg_aws)), 0);
	ck_assert_str_eq(v, sz);
	free(v);
	ck_assert_ptr_nonnull(strstr(st, "\nlast_error: null\n"));
	ck_assert_ptr_null(strstr(st, "s3cr3t"));
	free(st);
	/* a backend without type: in a type-named directory; a named backend with type: */
	mkbackend("main", "lambda");
	commit_ok("main", "lambda", "creds:\n  type: api_key\n  api_key: abc\n");
	ck_assert_str_eq(backend_of(g_s, "main", "lambda").type, "lambda");
	mkbackend("main", "aws-dev");
	commit_ok("main", "aws-dev", cfg_aws);
	ck_assert_str_eq(backend_of(g_s, "main", "aws-dev").type, "aws");
	st = status_of("main", "aws-dev");
	v = status_field(st, "type", NULL);
	ck_assert_str_eq(v, "aws");
	free(v);
	free(st);
}
END_TEST

START_TEST(test_commit_invalid)
{
	char err[ERRSZ];
	mkbackend("main", "aws");
	commit_ok("main", "aws", cfg_aws);
	struct st_backend before = backend_of(g_s, "main", "aws");
	const char *bad = "type: aws\ncreds:\n  type: access_key\n  access_key: AKIA\n";
	err[0] = '\0';
	int r = state_backend_commit(g_s, "main", "aws", bad, strlen(bad), NULL, &g_ctx, err,
				     sizeof(err));
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_msg(strncmp(err, "projects/main/backends/aws/config.yml:", 38) == 0, "%s", err);
	/* stored content untouched */
	char *c = config_of("main", "aws", NULL);
	ck_assert_str_eq(c, cfg_aws);
	free(c);
	struct st_backend b = backend_of(g_s, "main", "aws");
	ck_assert(b.has_config);
	ck_assert_uint_eq(b.size, before.size);
	ck_assert_int_eq(b.mtime.tv_sec, before.mtime.tv_sec);
	ck_assert_int_eq(b.mtime.tv_nsec, before.mtime.tv_nsec);
	ck_assert_int_eq(b.committed_at, before.committed_at);
	/* the reason is recorded */
	ck_assert_str_eq(b.last_error, err);
	ck_assert(b.last_error_at > 0);
	char *t = events_text(g_s, "main");
	char *want = xasprintf(" backend=aws config.yml rejected: %s\n", err);
	ck_assert_msg(str_count(t, want) == 1, "%s", t);
	free(want);
	free(t);
	char *st = status_of("main", "aws");
	char *v = status_field(st, "state", NULL);
	ck_assert_str_eq(v, "checking");
	free(v);
	v = status_field(st, "last_error", "message");
	ck_assert_str_eq(v, err);
	free(v);
	v = status_field(st, "last_error", "at");
	ck_assert_uint_eq(strlen(v), 20);
	free(v);
	free(st);
	/* a message with quotes and backslashes survives the status's escaping */
	mkbackend("main", "gcp");
	const char *gcp =
		"project_id: p\ncreds:\n  type: service_account\n  filename: ~root/sa.json\n";
	err[0] = '\0';
	ck_assert_int_eq(state_backend_commit(g_s, "main", "gcp", gcp, strlen(gcp), NULL, &g_ctx,
					      err, sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strchr(err, '"'), "expected a quote in: %s", err);
	st = status_of("main", "gcp");
	v = status_field(st, "state", NULL);
	ck_assert_str_eq(v, "unconfigured");
	free(v);
	v = status_field(st, "last_error", "message");
	ck_assert_str_eq(v, err);
	free(v);
	free(st);
	ck_assert_ptr_null(config_of("main", "gcp", NULL));
	ck_assert(!backend_of(g_s, "main", "gcp").has_config);
	/* committing the stored bytes again is not a change: the refusal stays visible */
	commit_ok("main", "aws", cfg_aws);
	ck_assert_str_ne(backend_of(g_s, "main", "aws").last_error, "");
	/* a valid commit that changes the file clears the last error */
	char *changed = xasprintf("# changed\n%s", cfg_aws);
	commit_ok("main", "aws", changed);
	free(changed);
	ck_assert_str_eq(backend_of(g_s, "main", "aws").last_error, "");
	st = status_of("main", "aws");
	ck_assert_ptr_nonnull(strstr(st, "\nlast_error: null\n"));
	free(st);
}
END_TEST

START_TEST(test_commit_invalid_kinds)
{
	char err[ERRSZ];
	mkbackend("main", "lambda");
	mkbackend("main", "named");
	static const struct {
		const char *name, *yaml, *prefix;
	} cases[] = {
		{"lambda", "", "projects/main/backends/lambda/config.yml:1: the file is empty"},
		{"lambda", "# nothing\n",
		 "projects/main/backends/lambda/config.yml:1: the file is empty"},
		{"lambda", "- a\n- b\n",
		 "projects/main/backends/lambda/config.yml:1: expected a mapping of backend "
		 "settings"},
		{"lambda", "type: [\n",
		 "projects/main/backends/lambda/config.yml:2: YAML syntax error"},
		{"lambda", "type: aws\ncreds: {type: default}\n",
		 "projects/main/backends/lambda/config.yml:1: type: is aws but the backend "
		 "directory "
		 "is named lambda"},
		{"named", "creds:\n  type: api_key\n  api_key: abc\n",
		 "projects/main/backends/named/config.yml:"},
		{"lambda", "name: x\ntype: lambda\ncreds:\n  type: api_key\n  api_key: abc\n",
		 "projects/main/backends/lambda/config.yml:1: unknown key \"nam\xe2\x80\xa6\" (4 chars)"},
		{"lambda", "a: 1\na: 2\n",
		 "projects/main/backends/lambda/config.yml:2: duplicate key \"a\" (1 char)"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		int r = state_backend_commit(g_s, "main", cases[i].name, cases[i].yaml,
					     strlen(cases[i].yaml), NULL, &g_ctx, err, sizeof(err));
		ck_assert_msg(r == -EINVAL, "case %zu: %d %s", i, r, err);
		ck_assert_msg(strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) == 0,
			      "case %zu:\nwant %s\ngot  %s", i, cases[i].prefix, err);
		ck_assert_str_eq(backend_of(g_s, "main", cases[i].name).last_error, err);
	}
	ck_assert(!backend_of(g_s, "main", "lambda").has_config);
	/* a commit to a backend that does not exist */
	err[0] = '\0';
	int r = state_backend_commit(g_s, "main", "aws", cfg_aws, strlen(cfg_aws), NULL, &g_ctx,
				     err, sizeof(err));
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_str_ne(err, "");
	ck_assert(!has_backend(g_s, "main", "aws"));
}
END_TEST

START_TEST(test_commit_efbig)
{
	char err[ERRSZ];
	mkbackend("main", "lambda");
	commit_ok("main", "lambda", cfg_lambda);
	/* exactly STATE_MAX_FILE is accepted (a valid config padded with a comment) */
	char *big = xmalloc(STATE_MAX_FILE + 2);
	size_t hl = strlen(cfg_lambda);
	memcpy(big, cfg_lambda, hl);
	big[hl] = '#';
	memset(big + hl + 1, 'x', STATE_MAX_FILE - hl);
	big[STATE_MAX_FILE - 1] = '\n';
	err[0] = '\0';
	int r = state_backend_commit(g_s, "main", "lambda", big, STATE_MAX_FILE, NULL, &g_ctx, err,
				     sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_uint_eq(backend_of(g_s, "main", "lambda").size, STATE_MAX_FILE);
	commit_ok("main", "lambda", cfg_lambda);
	/* one more byte is refused */
	big[STATE_MAX_FILE] = '\n';
	err[0] = '\0';
	r = state_backend_commit(g_s, "main", "lambda", big, STATE_MAX_FILE + 1, NULL, &g_ctx, err,
				 sizeof(err));
	ck_assert_int_eq(r, -EFBIG);
	ck_assert_msg(strstr(err, "larger than 1048576 bytes"), "%s", err);
	char *c = config_of("main", "lambda", NULL);
	ck_assert_str_eq(c, cfg_lambda);
	free(c);
	struct st_backend b = backend_of(g_s, "main", "lambda");
	ck_assert_uint_eq(b.size, strlen(cfg_lambda));
	ck_assert_str_eq(b.last_error, err);
	char *t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " backend=lambda config.yml rejected: "), 1);
	free(t);
	free(big);
}
END_TEST

START_TEST(test_commit_mtime)
{
	char err[ERRSZ] = "";
	mkbackend("main", "lambda");
	struct timespec mt = {1234567890, 987654321};
	ck_assert_int_eq(state_backend_commit(g_s, "main", "lambda", cfg_lambda, strlen(cfg_lambda),
					      &mt, &g_ctx, err, sizeof(err)),
			 0);
	struct st_backend b = backend_of(g_s, "main", "lambda");
	ck_assert_int_eq(b.mtime.tv_sec, 1234567890);
	ck_assert_int_eq(b.mtime.tv_nsec, 987654321);
	ck_assert(b.committed_at >= time(NULL) - 5);
	/* utimens on the file and on the directory */
	struct timespec f = {1111, 1}, d = {2222, 2}, p = {3333, 3};
	ck_assert_int_eq(state_backend_set_mtime(g_s, "main", "lambda", false, f), 0);
	ck_assert_int_eq(state_backend_set_mtime(g_s, "main", "lambda", true, d), 0);
	b = backend_of(g_s, "main", "lambda");
	ck_assert_int_eq(b.mtime.tv_sec, 1111);
	ck_assert_int_eq(b.mtime.tv_nsec, 1);
	ck_assert_int_eq(b.dir_mtime.tv_sec, 2222);
	ck_assert_int_eq(b.dir_mtime.tv_nsec, 2);
	/* the config is untouched by utimens */
	char *c = config_of("main", "lambda", NULL);
	ck_assert_str_eq(c, cfg_lambda);
	free(c);
	ck_assert_int_eq(state_backend_set_mtime(g_s, "main", "nope", false, f), -ENOENT);
	ck_assert_int_eq(state_project_set_mtime(g_s, "main", p), 0);
	struct stx *tx = NULL;
	struct st_project pr;
	ck_assert_int_eq(store_begin(g_s, false, &tx), 0);
	ck_assert_int_eq(store_project_get(tx, "main", &pr), 0);
	store_abort(tx);
	ck_assert_int_eq(pr.mtime.tv_sec, 3333);
	ck_assert_int_eq(pr.mtime.tv_nsec, 3);
	ck_assert_int_eq(state_project_set_mtime(g_s, "nope", p), -ENOENT);
}
END_TEST

START_TEST(test_unlink_config)
{
	char err[ERRSZ] = "";
	mkbackend("main", "aws");
	ck_assert_int_eq(state_backend_unlink_config(g_s, "main", "aws", err, sizeof(err)),
			 -ENOENT);
	ck_assert_int_eq(state_backend_unlink_config(g_s, "main", "nope", err, sizeof(err)),
			 -ENOENT);
	commit_ok("main", "aws", cfg_aws);
	ck_assert_int_eq(state_backend_unlink_config(g_s, "main", "aws", err, sizeof(err)), 0);
	struct st_backend b = backend_of(g_s, "main", "aws");
	ck_assert(!b.has_config);
	ck_assert_uint_eq(b.size, 0);
	ck_assert_str_eq(b.type, "");
	ck_assert_uint_eq(b.natt, 0);
	char *t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " backend=aws config.yml removed\n"), 1);
	free(t);
	/* the secret is gone from the store */
	char *c = config_of("main", "aws", NULL);
	ck_assert(c == NULL || strstr(c, "s3cr3t") == NULL);
	free(c);
	char *st = status_of("main", "aws");
	char *v = status_field(st, "state", NULL);
	ck_assert_str_eq(v, "unconfigured");
	free(v);
	v = status_field(st, "type", NULL);
	ck_assert_str_eq(v, "aws");
	free(v);
	free(st);
	ck_assert_int_eq(state_backend_unlink_config(g_s, "main", "aws", err, sizeof(err)),
			 -ENOENT);
	/* the same bytes put back are a restore (vim after a refused save) */
	commit_ok("main", "aws", cfg_aws);
	t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " backend=aws config.yml created "), 1);
	ck_assert_uint_eq(str_count(t, " backend=aws config.yml restored "), 1);
	free(t);
	/* other bytes after an unlink are a new config */
	ck_assert_int_eq(state_backend_unlink_config(g_s, "main", "aws", err, sizeof(err)), 0);
	char *other = xasprintf("# other\n%s", cfg_aws);
	commit_ok("main", "aws", other);
	free(other);
	t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " backend=aws config.yml created "), 2);
	free(t);
}
END_TEST

START_TEST(test_status)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(state_backend_status(g_s, "main", "aws", &b), -ENOENT);
	ck_assert_int_eq(state_backend_status(g_s, "nope", "aws", &b), -ENOENT);
	buf_free(&b);
	mkbackend("main", "aws");
	mkbackend("main", "aws-dev");
	char *st = status_of("main", "aws");
	ck_assert_msg(strncmp(st, "# fleetfs backend status", 24) == 0, "%s", st);
	char *v = status_field(st, "state", NULL);
	ck_assert_str_eq(v, "unconfigured");
	free(v);
	v = status_field(st, "reason", NULL);
	ck_assert_str_eq(v, "no config.yml yet");
	free(v);
	ck_assert_ptr_nonnull(strstr(st, "\nlast_error: null\n"));
	ck_assert_ptr_nonnull(strstr(st, "\nchecked_at: null\n"));
	free(st);
	/* a named backend's type is unknown until its config says */
	st = status_of("main", "aws-dev");
	ck_assert_ptr_nonnull(strstr(st, "\nstate: unconfigured\n"));
	ck_assert_ptr_nonnull(strstr(st, "\ntype: null\n"));
	ck_assert_ptr_nonnull(strstr(st, "\nreason: \"no config.yml yet; "));
	ck_assert_ptr_nonnull(strstr(st, "must set type:"));
	free(st);
	/* status appends to what out holds */
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(buf_append(&b, "X", 1), 0);
	ck_assert_int_eq(state_backend_status(g_s, "main", "aws", &b), 0);
	ck_assert_int_eq(b.data[0], 'X');
	ck_assert_int_eq(b.data[1], '#');
	buf_free(&b);
}
END_TEST

START_TEST(test_note)
{
	state_note(g_s, "", "refused %s (%d)", "rename", 7);
	state_note(g_s, "main", "line\nbreak");
	char *t = events_text(g_s, "");
	ck_assert_uint_eq(str_count(t, " refused rename (7)\n"), 1);
	free(t);
	t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " line break\n"), 1);
	free(t);
}
END_TEST

/* BUG: the status of an unconfigured named backend is not YAML (docs/filesystem.md says it
 * is): its reason line ends in "must set type:", and a plain scalar cannot hold ": " or end
 * in ':', so `reason: no config.yml yet; a named backend's config.yml must set type:` is a
 * syntax error ("mapping values are not allowed in this context"). */
START_TEST(test_status_named_is_yaml)
{
	mkbackend("main", "aws-dev");
	char *st = status_of("main", "aws-dev");
	char *v = status_field(st, "state", NULL);
	ck_assert_str_eq(v, "unconfigured");
	free(v);
	v = status_field(st, "reason", NULL);
	ck_assert_ptr_nonnull(strstr(v, "type"));
	free(v);
	free(st);
}
END_TEST

Suite *state_suite(void)
{
	Suite *s = suite_create("state");
	TCase *dirs = tcase_create("dirs");
	TCase *commit = tcase_create("commit");
	TCase *tcs[] = {dirs, commit};
	for (size_t i = 0; i < sizeof(tcs) / sizeof(tcs[0]); i++) {
		tcase_add_unchecked_fixture(tcs[i], tmp_root_setup, tmp_root_teardown);
		tcase_add_checked_fixture(tcs[i], setup, teardown);
		tcase_set_timeout(tcs[i], 60);
		suite_add_tcase(s, tcs[i]);
	}
	tcase_add_test(dirs, test_project_create);
	tcase_add_test(dirs, test_project_bad_names);
	tcase_add_test(dirs, test_project_delete);
	tcase_add_test(dirs, test_backend_create);
	tcase_add_test(dirs, test_backend_delete);
	tcase_add_test(dirs, test_note);
	tcase_add_test(commit, test_commit_valid);
	tcase_add_test(commit, test_commit_invalid);
	tcase_add_test(commit, test_commit_invalid_kinds);
	tcase_add_test(commit, test_commit_efbig);
	tcase_add_test(commit, test_commit_mtime);
	tcase_add_test(commit, test_unlink_config);
	tcase_add_test(commit, test_status);
	tcase_add_test(commit, test_status_named_is_yaml);
	return s;
}
