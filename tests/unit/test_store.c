/* Unit tests of cache/store: opening (creation, the directory lock, the schema version),
 * projects, backends with sealed configs and attachments (never plain text on disk), the
 * events journals and their cap, user encryption keys and re-sealing, and transactions that
 * abort leaving nothing. */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../backends/schema.h"
#include "../../cache/store.h"
#include "../../lib/util.h"
#include "helpers.h"
#include "suites.h"

static void teardown(void)
{
	tmp_remove_all();
}

static char *state_path(const char *tag)
{
	return xasprintf("%s/a/b/state", tmp_dir(tag));
}

static struct store *open_ok(const char *dir)
{
	struct store *s = NULL;
	char err[STORE_ERR_MAX] = "";
	int r = store_open(dir, &s, err, sizeof(err));
	ck_assert_msg(r == 0, "store_open: %d %s", r, err);
	ck_assert_ptr_nonnull(s);
	return s;
}

static struct stx *wtx(struct store *s)
{
	struct stx *tx = NULL;
	ck_assert_int_eq(store_begin(s, true, &tx), 0);
	ck_assert_ptr_nonnull(tx);
	return tx;
}

static struct stx *rtx(struct store *s)
{
	struct stx *tx = NULL;
	ck_assert_int_eq(store_begin(s, false, &tx), 0);
	return tx;
}

static void put_project(struct stx *tx, const char *name, time_t sec, long nsec)
{
	struct st_project p;
	memset(&p, 0, sizeof(p));
	ck_assert_int_eq(fmt(p.name, sizeof(p.name), "%s", name), 0);
	p.mtime.tv_sec = sec;
	p.mtime.tv_nsec = nsec;
	ck_assert_int_eq(store_project_put(tx, &p), 0);
}

/* A backend with config text and n attachments named after i. */
static void put_backend(struct stx *tx, const char *project, const char *name, const char *type,
			const char *config, size_t natt)
{
	struct st_backend b;
	struct attachment att[SCHEMA_MAX_ATTACH];
	char fields[SCHEMA_MAX_ATTACH][32], paths[SCHEMA_MAX_ATTACH][64], datas[SCHEMA_MAX_ATTACH][128];
	memset(&b, 0, sizeof(b));
	fmt_cut(b.project, sizeof(b.project), "%s", project);
	fmt_cut(b.name, sizeof(b.name), "%s", name);
	fmt_cut(b.type, sizeof(b.type), "%s", type);
	b.has_config = config != NULL;
	b.mtime = (struct timespec){1700000000, 123456789};
	b.dir_mtime = (struct timespec){1600000000, 5};
	b.committed_at = 1700000001;
	for (size_t i = 0; i < natt; i++) {
		fmt_cut(fields[i], sizeof(fields[i]), "creds.file%zu", i);
		fmt_cut(paths[i], sizeof(paths[i]), "/home/u/%s-%s-%zu.json", project, name, i);
		fmt_cut(datas[i], sizeof(datas[i]), "ATTACHED-SECRET-%s-%s-%zu\n{\"k\": 1}",
			project, name, i);
		att[i] = (struct attachment){.field = fields[i],
					    .path = paths[i],
					    .data = datas[i],
					    .len = strlen(datas[i])};
	}
	ck_assert_int_eq(store_backend_put(tx, &b, config, config ? strlen(config) : 0,
					   natt ? att : NULL, natt),
			 0);
	if (config) {
		ck_assert_uint_eq(b.natt, natt);
		ck_assert_uint_eq(b.size, strlen(config));
	}
}

static void check_config(struct stx *tx, const char *project, const char *name, const char *want)
{
	char *c = NULL;
	size_t n = 0;
	int r = store_backend_config(tx, project, name, &c, &n);
	ck_assert_msg(r == 0, "config of %s/%s: %d", project, name, r);
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_str_eq(c, want);
	seal_free_secret(c, n);
}

static void check_attach(struct stx *tx, const char *project, const char *name, uint32_t i)
{
	struct attachment a;
	char want[128];
	ck_assert_int_eq(store_backend_attach(tx, project, name, i, &a), 0);
	fmt_cut(want, sizeof(want), "creds.file%u", i);
	ck_assert_str_eq(a.field, want);
	fmt_cut(want, sizeof(want), "/home/u/%s-%s-%u.json", project, name, i);
	ck_assert_str_eq(a.path, want);
	fmt_cut(want, sizeof(want), "ATTACHED-SECRET-%s-%s-%u\n{\"k\": 1}", project, name, i);
	ck_assert_str_eq(a.data, want);
	ck_assert_uint_eq(a.len, strlen(want));
	free(a.field);
	free(a.path);
	seal_free_secret(a.data, a.len);
}

/* ---- open ---- */

START_TEST(test_open_creates)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	ck_assert_str_eq(store_dir(s), dir);
	struct stat st;
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	char *key = xasprintf("%s/key", dir), *lock = xasprintf("%s/lock", dir),
	     *data = xasprintf("%s/data.mdb", dir);
	ck_assert_int_eq(stat(key, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(st.st_size, SEAL_KEY_LEN);
	ck_assert_int_eq(stat(lock, &st), 0);
	ck_assert_int_eq(stat(data, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0077, 0);
	/* a new store has the project "main", no user keys, and the schema version */
	struct stx *tx = rtx(s);
	struct st_project *ps = NULL;
	size_t n = 0;
	ck_assert_int_eq(store_project_list(tx, &ps, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ps[0].name, "main");
	ck_assert(ps[0].mtime.tv_sec > 0);
	free(ps);
	char *v = NULL;
	size_t vl = 0;
	ck_assert_int_eq(store_meta_get(tx, "schema", &v, &vl), 0);
	ck_assert_str_eq(v, "1");
	free(v);
	store_abort(tx);
	struct seal_key keys[SEAL_MAX_KEYS];
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), 0);
	store_close(s);
	/* reopening keeps the key and does not add "main" again */
	s = open_ok(dir);
	tx = rtx(s);
	ck_assert_int_eq(store_project_list(tx, &ps, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(ps);
	store_abort(tx);
	store_close(s);
	store_close(NULL);
	free(key);
	free(lock);
	free(data);
	free(dir);
}
END_TEST

START_TEST(test_open_busy)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir), *s2 = (struct store *)1;
	char err[STORE_ERR_MAX] = "";
	/* flock is per open file description: a second open in the same process conflicts */
	int r = store_open(dir, &s2, err, sizeof(err));
	ck_assert_int_eq(r, -EBUSY);
	ck_assert_ptr_null(s2);
	ck_assert_msg(strstr(err, "in use"), "%s", err);
	ck_assert_msg(strncmp(err, dir, strlen(dir)) == 0, "%s", err);
	/* the first store still works */
	struct stx *tx = wtx(s);
	put_project(tx, "still", 1, 2);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	/* once closed, the directory can be opened again */
	s = open_ok(dir);
	tx = rtx(s);
	struct st_project p;
	ck_assert_int_eq(store_project_get(tx, "still", &p), 0);
	store_abort(tx);
	store_close(s);
	free(dir);
}
END_TEST

START_TEST(test_open_schema)
{
	char *dir = state_path("store"), *data = NULL;
	char err[STORE_ERR_MAX] = "";
	struct store *s = open_ok(dir), *s2 = (struct store *)1;
	struct stx *tx = wtx(s);
	ck_assert_int_eq(store_meta_put(tx, "schema", "999", 3), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	data = xasprintf("%s/data.mdb", dir);
	size_t n1 = 0, n2 = 0;
	char *before = file_read(data, &n1);
	int r = store_open(dir, &s2, err, sizeof(err));
	ck_assert_int_eq(r, -EPROTO);
	ck_assert_ptr_null(s2);
	ck_assert_msg(strstr(err, "newer"), "%s", err);
	ck_assert_msg(strstr(err, "999"), "%s", err);
	/* refused, never modified */
	char *after = file_read(data, &n2);
	ck_assert_uint_eq(n1, n2);
	ck_assert_msg(memcmp(before, after, n1) == 0, "data.mdb changed by a refused open");
	free(before);
	free(after);
	/* and the lock was released: the failure path closes everything */
	r = store_open(dir, &s2, err, sizeof(err));
	ck_assert_int_eq(r, -EPROTO);
	free(data);
	free(dir);
}
END_TEST

START_TEST(test_open_schema_unreadable)
{
	char *dir = state_path("store");
	char err[STORE_ERR_MAX] = "";
	struct store *s = open_ok(dir), *s2 = NULL;
	struct stx *tx = wtx(s);
	ck_assert_int_eq(store_meta_put(tx, "schema", "one", 3), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	ck_assert_int_eq(store_open(dir, &s2, err, sizeof(err)), -EPROTO);
	ck_assert_msg(strstr(err, "unreadable schema version"), "%s", err);
	free(dir);
}
END_TEST

START_TEST(test_open_errors)
{
	const char *base = tmp_dir("store");
	char *file = xasprintf("%s/file", base), *under = xasprintf("%s/file/state", base);
	char err[STORE_ERR_MAX] = "";
	struct store *s = NULL;
	ck_assert_int_eq(file_write(file, "x", 1, 0600), 0);
	ck_assert_int_eq(store_open(file, &s, err, sizeof(err)), -ENOTDIR);
	ck_assert_ptr_null(s);
	ck_assert_int_ne(store_open(under, &s, err, sizeof(err)), 0);
	ck_assert_ptr_null(s);
	/* a key file readable by others is refused */
	char *dir = xasprintf("%s/st", base), *key = xasprintf("%s/st/key", base);
	s = open_ok(dir);
	store_close(s);
	ck_assert_int_eq(chmod(key, 0644), 0);
	err[0] = '\0';
	ck_assert_int_eq(store_open(dir, &s, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "readable by others"), "%s", err);
	free(file);
	free(under);
	free(dir);
	free(key);
}
END_TEST

/* ---- projects ---- */

START_TEST(test_projects)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	put_project(tx, "zeta", 10, 1);
	put_project(tx, "alpha", 20, 999999999);
	put_project(tx, "beta", 1234567890, 123456789);
	ck_assert_int_eq(store_commit(tx), 0);
	tx = rtx(s);
	struct st_project *ps = NULL, p;
	size_t n = 0;
	ck_assert_int_eq(store_project_list(tx, &ps, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(ps[0].name, "alpha");
	ck_assert_str_eq(ps[1].name, "beta");
	ck_assert_str_eq(ps[2].name, "main");
	ck_assert_str_eq(ps[3].name, "zeta");
	ck_assert_int_eq(ps[1].mtime.tv_sec, 1234567890);
	ck_assert_int_eq(ps[1].mtime.tv_nsec, 123456789);
	free(ps);
	ck_assert_int_eq(store_project_get(tx, "alpha", &p), 0);
	ck_assert_str_eq(p.name, "alpha");
	ck_assert_int_eq(p.mtime.tv_sec, 20);
	ck_assert_int_eq(p.mtime.tv_nsec, 999999999);
	ck_assert_int_eq(store_project_get(tx, "gamma", &p), -ENOENT);
	ck_assert_int_eq(store_project_get(tx, "alph", &p), -ENOENT);
	store_abort(tx);
	/* put replaces */
	tx = wtx(s);
	put_project(tx, "alpha", 30, 0);
	ck_assert_int_eq(store_project_get(tx, "alpha", &p), 0);
	ck_assert_int_eq(p.mtime.tv_sec, 30);
	/* del */
	ck_assert_int_eq(store_project_del(tx, "beta"), 0);
	ck_assert_int_eq(store_project_get(tx, "beta", &p), -ENOENT);
	/* a project with backends is not deleted */
	put_backend(tx, "zeta", "aws", "aws", NULL, 0);
	ck_assert_int_eq(store_project_del(tx, "zeta"), -ENOTEMPTY);
	ck_assert_int_eq(store_project_get(tx, "zeta", &p), 0);
	/* ... but a project whose name is a prefix of it is */
	put_project(tx, "zet", 1, 1);
	ck_assert_int_eq(store_project_del(tx, "zet"), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	tx = rtx(s);
	ck_assert_int_eq(store_project_list(tx, &ps, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(ps[0].name, "alpha");
	ck_assert_str_eq(ps[1].name, "main");
	ck_assert_str_eq(ps[2].name, "zeta");
	free(ps);
	store_abort(tx);
	/* durable across close/open */
	store_close(s);
	s = open_ok(dir);
	tx = rtx(s);
	ck_assert_int_eq(store_project_get(tx, "alpha", &p), 0);
	ck_assert_int_eq(p.mtime.tv_sec, 30);
	store_abort(tx);
	store_close(s);
	free(dir);
}
END_TEST

/* ---- backends ---- */

START_TEST(test_backends)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	put_project(tx, "main-2", 1, 0);
	put_project(tx, "mainx", 1, 0);
	put_backend(tx, "main", "lambda", "lambda", "type: lambda\n", 0);
	put_backend(tx, "main", "aws", "aws", "type: aws\nsecret: one\n", 2);
	put_backend(tx, "main", "aws-dev", "aws", "type: aws\nsecret: two\n", 1);
	put_backend(tx, "main", "gcp", "", NULL, 0);
	put_backend(tx, "main-2", "aws", "aws", "type: aws\nsecret: other project\n", 0);
	put_backend(tx, "mainx", "vastai", "vastai", "type: vastai\n", 0);
	ck_assert_int_eq(store_commit(tx), 0);

	tx = rtx(s);
	struct st_backend *bs = NULL, b;
	size_t n = 0;
	ck_assert_int_eq(store_backend_list(tx, "main", &bs, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(bs[0].name, "aws");
	ck_assert_str_eq(bs[1].name, "aws-dev");
	ck_assert_str_eq(bs[2].name, "gcp");
	ck_assert_str_eq(bs[3].name, "lambda");
	for (size_t i = 0; i < n; i++)
		ck_assert_str_eq(bs[i].project, "main");
	free(bs);
	ck_assert_int_eq(store_backend_list(tx, "main-2", &bs, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(bs[0].project, "main-2");
	ck_assert_str_eq(bs[0].name, "aws");
	free(bs);
	ck_assert_int_eq(store_backend_list(tx, "nope", &bs, &n), 0);
	ck_assert_uint_eq(n, 0);
	free(bs);
	/* every field survives */
	ck_assert_int_eq(store_backend_get(tx, "main", "aws", &b), 0);
	ck_assert_str_eq(b.project, "main");
	ck_assert_str_eq(b.name, "aws");
	ck_assert_str_eq(b.type, "aws");
	ck_assert(b.has_config);
	ck_assert_uint_eq(b.size, strlen("type: aws\nsecret: one\n"));
	ck_assert_int_eq(b.mtime.tv_sec, 1700000000);
	ck_assert_int_eq(b.mtime.tv_nsec, 123456789);
	ck_assert_int_eq(b.dir_mtime.tv_sec, 1600000000);
	ck_assert_int_eq(b.dir_mtime.tv_nsec, 5);
	ck_assert_int_eq(b.committed_at, 1700000001);
	ck_assert_str_eq(b.last_error, "");
	ck_assert_uint_eq(b.natt, 2);
	ck_assert_int_eq(store_backend_get(tx, "main", "gcp", &b), 0);
	ck_assert(!b.has_config);
	ck_assert_str_eq(b.type, "");
	ck_assert_int_eq(store_backend_get(tx, "main", "azure", &b), -ENOENT);
	ck_assert_int_eq(store_backend_get(tx, "other", "aws", &b), -ENOENT);
	check_config(tx, "main", "lambda", "type: lambda\n");
	check_config(tx, "main", "aws", "type: aws\nsecret: one\n");
	check_config(tx, "main", "aws-dev", "type: aws\nsecret: two\n");
	check_config(tx, "main-2", "aws", "type: aws\nsecret: other project\n");
	char *c = NULL;
	size_t cl = 0;
	ck_assert_int_eq(store_backend_config(tx, "main", "gcp", &c, &cl), -ENOENT);
	check_attach(tx, "main", "aws", 0);
	check_attach(tx, "main", "aws", 1);
	check_attach(tx, "main", "aws-dev", 0);
	struct attachment a;
	ck_assert_int_eq(store_backend_attach(tx, "main", "aws", 2, &a), -ENOENT);
	ck_assert_int_eq(store_backend_attach(tx, "main", "aws-dev", 1, &a), -ENOENT);
	store_abort(tx);

	/* metadata only (config NULL): config and attachments stay */
	tx = wtx(s);
	ck_assert_int_eq(store_backend_get(tx, "main", "aws", &b), 0);
	fmt_cut(b.last_error, sizeof(b.last_error), "%s", "config.yml:1: something");
	b.last_error_at = 42;
	ck_assert_int_eq(store_backend_put(tx, &b, NULL, 0, NULL, 0), 0);
	ck_assert_int_eq(store_backend_get(tx, "main", "aws", &b), 0);
	ck_assert_str_eq(b.last_error, "config.yml:1: something");
	ck_assert_int_eq(b.last_error_at, 42);
	ck_assert_uint_eq(b.natt, 2);
	check_config(tx, "main", "aws", "type: aws\nsecret: one\n");
	check_attach(tx, "main", "aws", 1);
	/* a new config replaces the attachments */
	put_backend(tx, "main", "aws", "aws", "type: aws\nsecret: three\n", 1);
	check_config(tx, "main", "aws", "type: aws\nsecret: three\n");
	check_attach(tx, "main", "aws", 0);
	ck_assert_int_eq(store_backend_attach(tx, "main", "aws", 1, &a), -ENOENT);
	ck_assert_int_eq(store_backend_get(tx, "main", "aws", &b), 0);
	ck_assert_uint_eq(b.natt, 1);
	/* del removes metadata, config and attachments, and nothing of its neighbours */
	ck_assert_int_eq(store_backend_del(tx, "main", "aws"), 0);
	ck_assert_int_eq(store_backend_get(tx, "main", "aws", &b), -ENOENT);
	ck_assert_int_eq(store_backend_config(tx, "main", "aws", &c, &cl), -ENOENT);
	ck_assert_int_eq(store_backend_attach(tx, "main", "aws", 0, &a), -ENOENT);
	check_config(tx, "main", "aws-dev", "type: aws\nsecret: two\n");
	check_attach(tx, "main", "aws-dev", 0);
	check_config(tx, "main-2", "aws", "type: aws\nsecret: other project\n");
	ck_assert_int_eq(store_backend_del(tx, "main", "aws"), 0); /* absent: fine */
	ck_assert_int_eq(store_commit(tx), 0);
	tx = rtx(s);
	ck_assert_int_eq(store_backend_list(tx, "main", &bs, &n), 0);
	ck_assert_uint_eq(n, 3);
	free(bs);
	store_abort(tx);
	store_close(s);
	free(dir);
}
END_TEST

START_TEST(test_sealed_on_disk)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	put_backend(tx, "main", "aws", "aws",
		    "type: aws\ncreds:\n  secret_key: TOPSECRET-PLAINTEXT-123\n", 2);
	ck_assert_int_eq(store_event(tx, "main", "backend=aws config.yml created"), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	char *data = xasprintf("%s/data.mdb", dir);
	size_t n = 0;
	char *raw = file_read(data, &n);
	ck_assert_ptr_nonnull(raw);
	/* sanity: this is the file holding the store */
	ck_assert(mem_has(raw, n, "enc:aes:local:"));
	ck_assert(mem_has(raw, n, "backend=aws config.yml created"));
	ck_assert(!mem_has(raw, n, "TOPSECRET-PLAINTEXT-123"));
	ck_assert(!mem_has(raw, n, "ATTACHED-SECRET"));
	ck_assert(!mem_has(raw, n, "/home/u/main-aws"));
	free(raw);
	/* and it reads back */
	s = open_ok(dir);
	tx = rtx(s);
	check_config(tx, "main", "aws",
		     "type: aws\ncreds:\n  secret_key: TOPSECRET-PLAINTEXT-123\n");
	check_attach(tx, "main", "aws", 1);
	store_abort(tx);
	store_close(s);
	free(data);
	free(dir);
}
END_TEST

START_TEST(test_sealed_bound_to_record)
{
	/* a sealed value copied to another record does not open (AAD is the record key) */
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	put_backend(tx, "main", "aws", "aws", "type: aws\nsecret: one\n", 0);
	put_backend(tx, "main", "lambda", "lambda", "type: lambda\n", 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k, v;
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_open(env, dir, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "secrets", 0, &dbi), 0);
	char from[] = "b/main/aws/config", to[] = "b/main/lambda/config";
	k = (MDB_val){.mv_size = strlen(from), .mv_data = from};
	ck_assert_int_eq(mdb_get(txn, dbi, &k, &v), 0);
	char *copy = xstrndup(v.mv_data, v.mv_size);
	k = (MDB_val){.mv_size = strlen(to), .mv_data = to};
	v = (MDB_val){.mv_size = strlen(copy), .mv_data = copy};
	ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(copy);
	s = open_ok(dir);
	tx = rtx(s);
	char *c = NULL;
	size_t cl = 0;
	ck_assert_int_eq(store_backend_config(tx, "main", "lambda", &c, &cl), -EACCES);
	check_config(tx, "main", "aws", "type: aws\nsecret: one\n");
	store_abort(tx);
	store_close(s);
	free(dir);
}
END_TEST

/* ---- events ---- */

/* Check one journal line: "<iso time> <text>\n". */
static void check_line(const char *line, size_t len, const char *text)
{
	ck_assert_uint_eq(len, 21 + strlen(text));
	ck_assert_int_eq(line[4], '-');
	ck_assert_int_eq(line[10], 'T');
	ck_assert_int_eq(line[19], 'Z');
	ck_assert_int_eq(line[20], ' ');
	ck_assert_msg(strncmp(line + 21, text, strlen(text)) == 0, "%.*s", (int)len, line);
}

START_TEST(test_events)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	ck_assert_int_eq(store_event(tx, "main", "first %d", 1), 0);
	ck_assert_int_eq(store_event(tx, "main", "second %s", "two"), 0);
	ck_assert_int_eq(store_event(tx, "", "mount event"), 0);
	ck_assert_int_eq(store_event(tx, "main-2", "other journal"), 0);
	ck_assert_int_eq(store_event(tx, "main", "multi\nline\rtext"), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	char *t = events_text(s, "main");
	char *l1 = t, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	check_line(l1, (size_t)(l2 - l1) - 1, "first 1");
	check_line(l2, (size_t)(l3 - l2) - 1, "second two");
	check_line(l3, strlen(l3) - 1, "multi line text");
	ck_assert_uint_eq(str_count(t, "\n"), 3);
	time_t now = time(NULL);
	char iso[32];
	time_iso(now, iso, sizeof(iso));
	ck_assert_int_eq(strncmp(t, iso, 10), 0); /* today (UTC) */
	tx = rtx(s);
	ck_assert_uint_eq(store_events_size(tx, "main"), strlen(t));
	store_abort(tx);
	free(t);
	t = events_text(s, "");
	ck_assert_uint_eq(str_count(t, "\n"), 1);
	check_line(t, strlen(t) - 1, "mount event");
	free(t);
	t = events_text(s, "main-2");
	check_line(t, strlen(t) - 1, "other journal");
	free(t);
	t = events_text(s, "nope");
	ck_assert_str_eq(t, "");
	free(t);
	tx = rtx(s);
	ck_assert_uint_eq(store_events_size(tx, "nope"), 0);
	/* a read buffer too small reports -EFBIG */
	struct buf b;
	buf_init(&b, 10);
	ck_assert_int_eq(store_events_read(tx, "main", &b), -EFBIG);
	buf_free(&b);
	store_abort(tx);
	/* a very long text is cut, and stays one line */
	char *longt = xmalloc(5000);
	memset(longt, 'L', 4999);
	longt[4999] = '\0';
	tx = wtx(s);
	ck_assert_int_eq(store_event(tx, "long", "%s", longt), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	t = events_text(s, "long");
	ck_assert_uint_eq(str_count(t, "\n"), 1);
	ck_assert_uint_lt(strlen(t), 2200);
	ck_assert_int_eq(t[strlen(t) - 1], '\n');
	free(t);
	free(longt);
	store_close(s);
	free(dir);
}
END_TEST

START_TEST(test_events_cap)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	for (int i = 0; i < STORE_EVENTS_CAP; i++)
		ck_assert_int_eq(store_event(tx, "main", "e%d", i), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	char *t = events_text(s, "main");
	ck_assert_uint_eq(str_count(t, "\n"), STORE_EVENTS_CAP);
	free(t);
	/* past the cap the oldest are dropped, across transactions */
	for (int j = 0; j < 3; j++) {
		tx = wtx(s);
		for (int i = 0; i < 5; i++)
			ck_assert_int_eq(
				store_event(tx, "main", "e%d", STORE_EVENTS_CAP + 5 * j + i), 0);
		ck_assert_int_eq(store_commit(tx), 0);
	}
	t = events_text(s, "main");
	ck_assert_uint_eq(str_count(t, "\n"), STORE_EVENTS_CAP);
	ck_assert_int_eq(strncmp(t + 21, "e15\n", 4), 0);
	char want[32];
	ck_assert_int_eq(fmt(want, sizeof(want), " e%d\n", STORE_EVENTS_CAP + 14), 0);
	size_t tl = strlen(t), wl = strlen(want);
	ck_assert_str_eq(t + tl - wl, want);
	/* in order */
	const char *p = t;
	for (int i = 15; i < STORE_EVENTS_CAP + 15; i++) {
		char w[32];
		ck_assert_int_eq(fmt(w, sizeof(w), " e%d\n", i), 0);
		ck_assert_msg(strncmp(p + 20, w, strlen(w)) == 0, "line for e%d: %.40s", i, p);
		p = strchr(p, '\n') + 1;
	}
	ck_assert_int_eq(*p, '\0');
	/* the size accounting follows the drops */
	tx = rtx(s);
	ck_assert_uint_eq(store_events_size(tx, "main"), tl);
	store_abort(tx);
	free(t);
	store_close(s);
	free(dir);
}
END_TEST

START_TEST(test_project_del_clears_events)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	put_project(tx, "p", 1, 0);
	put_project(tx, "p2", 1, 0);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(store_event(tx, "p", "old %d", i), 0);
	ck_assert_int_eq(store_event(tx, "p2", "keep"), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	tx = wtx(s);
	ck_assert_int_eq(store_project_del(tx, "p"), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	char *t = events_text(s, "p");
	ck_assert_str_eq(t, "");
	free(t);
	tx = rtx(s);
	ck_assert_uint_eq(store_events_size(tx, "p"), 0);
	store_abort(tx);
	t = events_text(s, "p2");
	ck_assert_uint_eq(str_count(t, "keep"), 1);
	free(t);
	/* a project made again under the name starts a new journal */
	tx = wtx(s);
	put_project(tx, "p", 2, 0);
	ck_assert_int_eq(store_event(tx, "p", "new"), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	t = events_text(s, "p");
	ck_assert_uint_eq(str_count(t, "\n"), 1);
	ck_assert_ptr_null(strstr(t, "old"));
	tx = rtx(s);
	ck_assert_uint_eq(store_events_size(tx, "p"), strlen(t));
	store_abort(tx);
	free(t);
	store_close(s);
	free(dir);
}
END_TEST

/* ---- meta ---- */

START_TEST(test_meta)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	char *v = NULL;
	size_t n = 0;
	ck_assert_int_eq(store_meta_get(tx, "root/plugins", &v, &n), -ENOENT);
	ck_assert_int_eq(store_meta_put(tx, "root/plugins", "- a\n", 4), 0);
	ck_assert_int_eq(store_meta_get(tx, "root/plugins", &v, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(v, "- a\n");
	free(v);
	ck_assert_int_eq(store_meta_put(tx, "bin", "a\0b", 3), 0);
	ck_assert_int_eq(store_meta_get(tx, "bin", &v, &n), 0);
	ck_assert_uint_eq(n, 3);
	free(v);
	ck_assert_int_eq(store_meta_del(tx, "root/plugins"), 0);
	ck_assert_int_eq(store_meta_get(tx, "root/plugins", &v, &n), -ENOENT);
	ck_assert_int_eq(store_meta_del(tx, "root/plugins"), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	free(dir);
}
END_TEST

/* ---- transactions ---- */

START_TEST(test_abort)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	put_project(tx, "ghost", 1, 0);
	put_backend(tx, "ghost", "aws", "aws", "type: aws\n", 1);
	put_backend(tx, "main", "aws", "aws", "type: aws\n", 1);
	ck_assert_int_eq(store_event(tx, "main", "ghost event"), 0);
	ck_assert_int_eq(store_event(tx, "", "ghost event"), 0);
	ck_assert_int_eq(store_meta_put(tx, "root/plugins", "x", 1), 0);
	struct seal_key k;
	uint8_t raw[32] = {1};
	char *b = b64_encode(raw, 32);
	ck_assert_int_eq(seal_key_from_b64("k1", b, &k), 0);
	free(b);
	ck_assert_int_eq(store_set_user_keys(tx, &k, 1), 0);
	store_abort(tx);
	store_abort(NULL);
	tx = rtx(s);
	struct st_project p;
	struct st_backend bk;
	struct st_project *ps = NULL;
	size_t n = 0;
	ck_assert_int_eq(store_project_get(tx, "ghost", &p), -ENOENT);
	ck_assert_int_eq(store_backend_get(tx, "ghost", "aws", &bk), -ENOENT);
	ck_assert_int_eq(store_backend_get(tx, "main", "aws", &bk), -ENOENT);
	ck_assert_int_eq(store_project_list(tx, &ps, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(ps);
	ck_assert_uint_eq(store_events_size(tx, "main"), 0);
	ck_assert_uint_eq(store_events_size(tx, ""), 0);
	char *v = NULL;
	ck_assert_int_eq(store_meta_get(tx, "root/plugins", &v, &n), -ENOENT);
	ck_assert_int_eq(store_meta_get(tx, "keys", &v, &n), -ENOENT);
	store_abort(tx);
	struct seal_key keys[SEAL_MAX_KEYS];
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), 0);
	char *t = events_text(s, "main");
	ck_assert_str_eq(t, "");
	free(t);
	/* a read transaction does not see an uncommitted write of another */
	struct stx *w = wtx(s);
	put_project(w, "pending", 1, 0);
	struct stx *r = rtx(s);
	ck_assert_int_eq(store_project_get(r, "pending", &p), -ENOENT);
	ck_assert_int_eq(store_commit(w), 0);
	ck_assert_int_eq(store_project_get(r, "pending", &p), -ENOENT); /* snapshot */
	store_abort(r);
	r = rtx(s);
	ck_assert_int_eq(store_project_get(r, "pending", &p), 0);
	store_abort(r);
	store_close(s);
	free(dir);
}
END_TEST

START_TEST(test_detach_reopen)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct stx *tx = wtx(s);
	put_backend(tx, "main", "aws", "aws", "type: aws\n", 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_detach(s);
	store_detach(s);
	char err[STORE_ERR_MAX] = "";
	ck_assert_int_eq(store_reopen(s, err, sizeof(err)), 0);
	tx = rtx(s);
	check_config(tx, "main", "aws", "type: aws\n");
	store_abort(tx);
	/* the lock is still held */
	struct store *s2 = NULL;
	ck_assert_int_eq(store_open(dir, &s2, err, sizeof(err)), -EBUSY);
	store_close(s);
	free(dir);
}
END_TEST

/* ---- user keys ---- */

static struct seal_key mk_key(const char *name, unsigned char fill)
{
	uint8_t raw[32];
	struct seal_key k;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(fill * 3 + i);
	char *b = b64_encode(raw, sizeof(raw));
	ck_assert_int_eq(seal_key_from_b64(name, b, &k), 0);
	free(b);
	return k;
}

#define NB 12

static const char *cfg_n(int i)
{
	static char c[NB][96];
	fmt_cut(c[i], sizeof(c[i]), "type: aws\ncreds:\n  secret_key: S%02d-%.*s\n", i, 20 + 3 * i,
		"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz");
	return c[i];
}

static void fill_many(struct store *s)
{
	struct stx *tx = wtx(s);
	for (int i = 0; i < NB; i++) {
		char name[16];
		fmt_cut(name, sizeof(name), "b%02d", i);
		put_backend(tx, "main", name, "aws", cfg_n(i), (size_t)(i % 4));
	}
	ck_assert_int_eq(store_commit(tx), 0);
}

static void check_many(struct store *s)
{
	struct stx *tx = rtx(s);
	struct st_backend *bs = NULL;
	size_t n = 0;
	ck_assert_int_eq(store_backend_list(tx, "main", &bs, &n), 0);
	ck_assert_uint_eq(n, NB);
	for (int i = 0; i < NB; i++) {
		char name[16];
		fmt_cut(name, sizeof(name), "b%02d", i);
		ck_assert_str_eq(bs[i].name, name);
		check_config(tx, "main", name, cfg_n(i));
		for (uint32_t a = 0; a < (uint32_t)(i % 4); a++)
			check_attach(tx, "main", name, a);
	}
	free(bs);
	store_abort(tx);
}

/* Every value of the secrets database, read with LMDB directly (the store must be closed),
 * starts with prefix; also checks the set of keys is what the store wrote. */
static void raw_secrets_sealed_by(const char *dir, const char *prefix)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_cursor *c = NULL;
	MDB_dbi dbi;
	MDB_val k, v;
	size_t n = 0, want = 0;
	for (int i = 0; i < NB; i++)
		want += 1 + (size_t)(i % 4);
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "secrets", 0, &dbi), 0);
	ck_assert_int_eq(mdb_cursor_open(txn, dbi, &c), 0);
	while (mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
		n++;
		ck_assert_msg(k.mv_size > 8 && !memcmp(k.mv_data, "b/main/b", 8), "key %.*s",
			      (int)k.mv_size, (char *)k.mv_data);
		ck_assert_msg(v.mv_size > strlen(prefix) &&
				      !memcmp(v.mv_data, prefix, strlen(prefix)),
			      "%.*s sealed as %.20s", (int)k.mv_size, (char *)k.mv_data,
			      (char *)v.mv_data);
	}
	ck_assert_uint_eq(n, want);
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* Re-sealing under keys whose names are as long as the key file's ("local"): every sealed
 * value keeps its size (see test_user_keys_resize for the other case). */
START_TEST(test_user_keys)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct seal_key keys[SEAL_MAX_KEYS];
	fill_many(s);
	check_many(s);
	/* set one user key: everything is re-sealed under it, in the same transaction */
	struct seal_key k1 = mk_key("key01", 1), k2 = mk_key("rot02", 2);
	struct stx *tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, &k1, 1), 0);
	/* before commit the store's ring is unchanged */
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), 1);
	ck_assert_str_eq(keys[0].name, "key01");
	ck_assert_int_eq(memcmp(keys[0].key, k1.key, SEAL_KEY_LEN), 0);
	check_many(s);
	/* new values are sealed under key01 too */
	tx = wtx(s);
	put_backend(tx, "main", "b00", "aws", cfg_n(0), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	raw_secrets_sealed_by(dir, "enc:aes:key01:");
	/* after a reopen the ring still has the user key first and everything opens */
	s = open_ok(dir);
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), 1);
	ck_assert_str_eq(keys[0].name, "key01");
	ck_assert_int_eq(memcmp(keys[0].key, k1.key, SEAL_KEY_LEN), 0);
	check_many(s);
	/* rotation: a new first key, the old one kept */
	struct seal_key two[2] = {k2, k1};
	tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, two, 2), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), 2);
	ck_assert_str_eq(keys[0].name, "rot02");
	ck_assert_str_eq(keys[1].name, "key01");
	check_many(s);
	/* setting the same keys again is a no-op */
	tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, two, 2), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	raw_secrets_sealed_by(dir, "enc:aes:rot02:");
	s = open_ok(dir);
	ck_assert_uint_eq(store_user_keys(s, keys, 1), 1); /* max is honoured */
	ck_assert_str_eq(keys[0].name, "rot02");
	check_many(s);
	/* dropping the key the values are sealed under, in one step, still works: the old ring
	 * opens them and the new one seals */
	tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, &k1, 1), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	check_many(s);
	/* no user keys: back to the key file's key */
	tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, NULL, 0), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), 0);
	check_many(s);
	store_close(s);
	raw_secrets_sealed_by(dir, "enc:aes:local:");
	s = open_ok(dir);
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), 0);
	check_many(s);
	/* too many keys */
	struct seal_key many[SEAL_MAX_KEYS];
	for (size_t i = 0; i < SEAL_MAX_KEYS; i++) {
		char name[8];
		ck_assert_int_eq(fmt(name, sizeof(name), "mk%03zu", i), 0);
		many[i] = mk_key(name, (unsigned char)(10 + i));
	}
	tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, many, SEAL_MAX_KEYS), -E2BIG);
	ck_assert_int_eq(store_set_user_keys(tx, many, SEAL_MAX_KEYS - 1), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), SEAL_MAX_KEYS - 1);
	ck_assert_str_eq(keys[0].name, "mk000");
	check_many(s);
	store_close(s);
	s = open_ok(dir);
	ck_assert_uint_eq(store_user_keys(s, keys, SEAL_MAX_KEYS), SEAL_MAX_KEYS - 1);
	check_many(s);
	store_close(s);
	free(dir);
}
END_TEST

/* BUG (data loss): store_set_user_keys re-seals with mdb_cursor_put(c, &k, &nv, MDB_CURRENT)
 * where k.mv_data points into the LMDB page. When the sealed value changes size (the new first
 * key's name is not as long as the old one's: "local" -> "k1"), LMDB deletes the node and adds
 * it again, copying the key from memory its own delete just shifted: the records get garbage
 * keys and every config/attachment is lost (-ENOENT, or -EACCES since the AAD no longer
 * matches). Fix: put with a private copy of the key (the xstrndup'd `key`, freed after the
 * put) instead of &k. */
START_TEST(test_user_keys_resize)
{
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	fill_many(s);
	struct seal_key k1 = mk_key("k1", 1), k2 = mk_key("a-much-longer-name", 2);
	struct stx *tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, &k1, 1), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	check_many(s);
	tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, &k2, 1), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	check_many(s);
	store_close(s);
	raw_secrets_sealed_by(dir, "enc:aes:a-much-longer-name:");
	free(dir);
}
END_TEST

START_TEST(test_user_keys_wrong_keyfile)
{
	/* the user keys are sealed under the key file: another key file cannot open the store */
	char *dir = state_path("store");
	struct store *s = open_ok(dir);
	struct seal_key k1 = mk_key("k1", 1);
	struct stx *tx = wtx(s);
	ck_assert_int_eq(store_set_user_keys(tx, &k1, 1), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	store_close(s);
	char *key = xasprintf("%s/key", dir);
	uint8_t other[SEAL_KEY_LEN];
	memset(other, 0x5a, sizeof(other));
	ck_assert_int_eq(file_write(key, other, sizeof(other), 0600), 0);
	char err[STORE_ERR_MAX] = "";
	ck_assert_int_eq(store_open(dir, &s, err, sizeof(err)), -EACCES);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err, "cannot open the stored encryption keys"), "%s", err);
	free(key);
	free(dir);
}
END_TEST

Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *open = tcase_create("open");
	TCase *data = tcase_create("data");
	TCase *events = tcase_create("events");
	TCase *keys = tcase_create("keys");
	TCase *tcs[] = {open, data, events, keys};
	for (size_t i = 0; i < sizeof(tcs) / sizeof(tcs[0]); i++) {
		tcase_add_unchecked_fixture(tcs[i], tmp_root_setup, tmp_root_teardown);
		tcase_add_checked_fixture(tcs[i], NULL, teardown);
		tcase_set_timeout(tcs[i], 60);
		suite_add_tcase(s, tcs[i]);
	}
	tcase_add_test(open, test_open_creates);
	tcase_add_test(open, test_open_busy);
	tcase_add_test(open, test_open_schema);
	tcase_add_test(open, test_open_schema_unreadable);
	tcase_add_test(open, test_open_errors);
	tcase_add_test(open, test_detach_reopen);
	tcase_add_test(data, test_projects);
	tcase_add_test(data, test_backends);
	tcase_add_test(data, test_sealed_on_disk);
	tcase_add_test(data, test_sealed_bound_to_record);
	tcase_add_test(data, test_meta);
	tcase_add_test(data, test_abort);
	tcase_add_test(events, test_events);
	tcase_add_test(events, test_events_cap);
	tcase_add_test(events, test_project_del_clears_events);
	tcase_add_test(keys, test_user_keys);
	tcase_add_test(keys, test_user_keys_wrong_keyfile);
	tcase_add_test(keys, test_user_keys_resize);
	return s;
}
