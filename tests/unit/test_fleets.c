/* fleets: committing specs reconciles instance rows (the engine's input) in one transaction:
 * SSH hosts added and removed, backend fleets' node counts, in-place rules, deletion. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/ssh.h"
#include "../../core/fleets.h"
#include "../../core/records.h"
#include "helpers.h"
#include "suites.h"

static struct store *g_s;
static char g_key[512];
static char g_err[1024];
static struct fileref_ctx g_ctx;

static void setup(void)
{
	g_s = store_tmp("fleets");
	const char *dir = tmp_dir("fleetkey");
	char *k = NULL;
	size_t kl = 0;
	ck_assert_int_eq(sshc_generate_key(&k, &kl), 0);
	snprintf(g_key, sizeof(g_key), "%s/id_rsa", dir);
	ck_assert_int_eq(file_write(g_key, k, kl, 0600), 0);
	free(k);
	g_ctx.cwd = dir;
	g_ctx.home = dir;
	g_ctx.mountpoint = NULL;
}

static void teardown(void)
{
	store_close(g_s);
	g_s = NULL;
}

static int commit(const char *fleet, const char *text)
{
	g_err[0] = '\0';
	return fleets_commit(g_s, "main", fleet, text, strlen(text), NULL, &g_ctx, g_err,
			     sizeof(g_err));
}

static char *ssh_spec(const char *user, const char *const *hosts, size_t n)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	buf_printf(&b, "type: fleet\nssh_config:\n  user: %s\n  identity_file: %s\n  hosts:\n",
		   user, g_key);
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "  - %s\n", hosts[i]);
	return buf_steal(&b, NULL);
}

/* status of each instance row, "num:status:host;..." */
static char *rows(const char *fleet)
{
	struct stx *tx = NULL;
	struct instance_list arr;
	char prefix[128];
	struct buf b;
	buf_init(&b, 1 << 20);
	snprintf(prefix, sizeof(prefix), "main/%s/", fleet);
	ck_assert_int_eq(store_begin(g_s, false, &tx), 0);
	ck_assert_int_eq(instance_row_list(tx, prefix, &arr), 0);
	store_abort(tx);
	for (size_t i = 0; i < arr.n; i++)
		buf_printf(&b, "%u:%s:%s;", arr.v[i].row.num, arr.v[i].row.status,
			   arr.v[i].row.host);
	instance_list_free(&arr);
	char *s = buf_steal(&b, NULL);
	return s ? s : strdup("");
}

#define ROWS_EQ(fleet, want)                                                                   \
	do {                                                                                   \
		char *got_ = rows(fleet);                                                      \
		ck_assert_str_eq(got_, want);                                                  \
		free(got_);                                                                    \
	} while (0)

START_TEST(test_ssh_hosts_added_and_removed)
{
	static const char *const h3[] = {"10.1.0.1", "10.1.0.2", "10.1.0.3"};
	static const char *const h2[] = {"10.1.0.1", "10.1.0.3"};
	char *s = ssh_spec("fleet", h3, 3);
	ck_assert_int_eq(commit("lab", s), 0);
	free(s);
	ROWS_EQ("lab", "0:pending:10.1.0.1;1:pending:10.1.0.2;2:pending:10.1.0.3;");
	/* the middle host leaves: its row terminates, the others keep their numbers */
	s = ssh_spec("fleet", h2, 2);
	ck_assert_int_eq(commit("lab", s), 0);
	free(s);
	ROWS_EQ("lab", "0:pending:10.1.0.1;1:terminating:10.1.0.2;2:pending:10.1.0.3;");
	/* it comes back before the engine removed the old row: a new row, the lowest free number */
	s = ssh_spec("fleet", h3, 3);
	ck_assert_int_eq(commit("lab", s), 0);
	free(s);
	ROWS_EQ("lab", "0:pending:10.1.0.1;1:terminating:10.1.0.2;2:pending:10.1.0.3;"
		       "3:pending:10.1.0.2;");
	char *ev = events_text(g_s, "main:lab");
	ck_assert_ptr_nonnull(strstr(ev, "instance=1 terminating: host 10.1.0.2 removed"));
	ck_assert_ptr_nonnull(strstr(ev, "instance=3 pending: host 10.1.0.2 added"));
	free(ev);
}
END_TEST

START_TEST(test_in_place_rules)
{
	static const char *const h1[] = {"10.1.0.1"};
	char *s = ssh_spec("fleet", h1, 1);
	ck_assert_int_eq(commit("lab", s), 0);
	/* the same bytes again: nothing happens */
	char *before = events_text(g_s, "main");
	ck_assert_int_eq(commit("lab", s), 0);
	char *after = events_text(g_s, "main");
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
	free(s);
	/* a kept host can't change its user in place; the stored spec stays */
	s = ssh_spec("root", h1, 1);
	ck_assert_int_eq(commit("lab", s), -EINVAL);
	ck_assert_ptr_nonnull(strstr(g_err, "can't change in place"));
	free(s);
	/* nor can the fleet turn into a backend fleet */
	ck_assert_int_eq(commit("lab", "type: fleet\nnodes: 1\n"), -EINVAL);
	ck_assert_ptr_nonnull(strstr(g_err, "between ssh_config and nodes"));
	ROWS_EQ("lab", "0:pending:10.1.0.1;");
	/* a host belongs to one fleet only */
	s = ssh_spec("fleet", h1, 1);
	ck_assert_int_eq(commit("other", s), -EINVAL);
	ck_assert_ptr_nonnull(strstr(g_err, "already in fleet main/lab"));
	free(s);
	char *ev = events_text(g_s, "main");
	ck_assert_ptr_nonnull(strstr(ev, "fleet=other other.yml rejected"));
	free(ev);
}
END_TEST

START_TEST(test_backend_fleet_nodes)
{
	ck_assert_int_eq(commit("gpu", "type: fleet\nnodes: 2\n"), 0);
	ROWS_EQ("gpu", "0:pending:;1:pending:;");
	ck_assert_int_eq(commit("gpu", "type: fleet\nnodes: 3\n"), 0);
	ROWS_EQ("gpu", "0:pending:;1:pending:;2:pending:;");
	/* a lower max terminates surplus rows, pending ones and the newest first */
	ck_assert_int_eq(commit("gpu", "type: fleet\nnodes: 0..1\n"), 0);
	ROWS_EQ("gpu", "0:pending:;1:terminating:;2:terminating:;");
}
END_TEST

/* fleets_refill: a backend fleet that lost a row gets one back (the lowest free number); a
 * fleet at its nodes, an SSH fleet and a deleted fleet get none. */
static size_t refill(const char *fleet)
{
	struct stx *tx = NULL;
	size_t added = 99;
	ck_assert_int_eq(store_begin(g_s, true, &tx), 0);
	ck_assert_int_eq(fleets_refill(tx, "main", fleet, &added), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	return added;
}

START_TEST(test_refill)
{
	static const char *const h1[] = {"10.1.0.1"};
	ck_assert_int_eq(commit("gpu", "type: fleet\nnodes: 2..4\n"), 0);
	ROWS_EQ("gpu", "0:pending:;1:pending:;");
	ck_assert_uint_eq(refill("gpu"), 0);
	struct stx *tx = NULL;
	ck_assert_int_eq(store_begin(g_s, true, &tx), 0);
	ck_assert_int_eq(store_obj_del(tx, SDB_INSTANCES, "main/gpu/00000000", "main"), 0);
	ck_assert_int_eq(store_commit(tx), 0);
	ROWS_EQ("gpu", "1:pending:;");
	ck_assert_uint_eq(refill("gpu"), 1);
	ROWS_EQ("gpu", "0:pending:;1:pending:;");
	/* an SSH fleet keeps its hosts, not a count */
	char *sp = ssh_spec("fleet", h1, 1);
	ck_assert_int_eq(commit("lab", sp), 0);
	free(sp);
	ck_assert_uint_eq(refill("lab"), 0);
	/* a deleted fleet, and one that never was */
	ck_assert_int_eq(fleets_unlink(g_s, "main", "gpu", g_err, sizeof(g_err)), 0);
	ck_assert_uint_eq(refill("gpu"), 0);
	ROWS_EQ("gpu", "0:terminating:;1:terminating:;");
	ck_assert_uint_eq(refill("nosuch"), 0);
}
END_TEST

START_TEST(test_delete)
{
	static const char *const h2[] = {"10.1.0.1", "10.1.0.2"};
	char *s = ssh_spec("fleet", h2, 2);
	ck_assert_int_eq(commit("lab", s), 0);
	ck_assert_int_eq(fleets_unlink(g_s, "main", "lab", g_err, sizeof(g_err)), 0);
	ROWS_EQ("lab", "0:terminating:10.1.0.1;1:terminating:10.1.0.2;");
	struct stx *tx = NULL;
	ck_assert_int_eq(store_begin(g_s, false, &tx), 0);
	ck_assert(!fleets_spec_exists(tx, "main", "lab", NULL, NULL));
	ck_assert(fleets_dir_exists(tx, "main", "lab")); /* until its instances are gone */
	store_abort(tx);
	/* writing it again while it terminates is refused with the reason */
	ck_assert_int_eq(commit("lab", s), -EINVAL);
	ck_assert_ptr_nonnull(strstr(g_err, "still terminating"));
	free(s);
	ck_assert_int_eq(fleets_unlink(g_s, "main", "lab", g_err, sizeof(g_err)), -ENOENT);
	/* a project with a fleet can't be removed */
	ck_assert_int_eq(store_begin(g_s, true, &tx), 0);
	ck_assert_int_eq(store_project_del(tx, "main"), -ENOTEMPTY);
	store_abort(tx);
}
END_TEST

START_TEST(test_renders)
{
	static const char *const h1[] = {"10.1.0.7"};
	char *s = ssh_spec("fleet", h1, 1);
	ck_assert_int_eq(commit("lab", s), 0);
	free(s);
	struct buf b;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(fleets_render_status(g_s, "main", "lab", &b), 0);
	ck_assert_ptr_nonnull(strstr(b.data, "\nkind: ssh\nstatus: active\n"));
	ck_assert_ptr_nonnull(strstr(b.data, "  pending: 1\n"));
	buf_free(&b);
	/* no host key pinned yet: no stanza (ssh would have nothing to verify against) */
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(fleets_render_instance(g_s, "/mnt", "main", "lab", 0, "ssh", &b), 0);
	ck_assert_ptr_null(strstr(b.data, "Host lab-0"));
	buf_free(&b);
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(fleets_render_instance(g_s, "/mnt", "main", "lab", 0, "info", &b), 0);
	ck_assert_ptr_nonnull(strstr(b.data, "host: \"10.1.0.7\""));
	buf_free(&b);
	/* the sealed hosts hold the private key; nothing of it is in plain metadata */
	char *priv = NULL;
	size_t pl = 0;
	priv = file_read(g_key, &pl);
	ck_assert_ptr_nonnull(priv);
	char dbpath[1024];
	snprintf(dbpath, sizeof(dbpath), "%s/data.mdb", store_dir(g_s));
	size_t dl = 0;
	char *db = file_read(dbpath, &dl);
	ck_assert_ptr_nonnull(db);
	ck_assert(!mem_has(db, dl, "PRIVATE KEY"));
	free(db);
	free(priv);
}
END_TEST

Suite *fleets_suite(void)
{
	Suite *s = suite_create("fleets");
	TCase *tc = tcase_create("commit");
	tcase_add_unchecked_fixture(tc, tmp_root_setup, tmp_root_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ssh_hosts_added_and_removed);
	tcase_add_test(tc, test_in_place_rules);
	tcase_add_test(tc, test_backend_fleet_nodes);
	tcase_add_test(tc, test_refill);
	tcase_add_test(tc, test_delete);
	tcase_add_test(tc, test_renders);
	suite_add_tcase(s, tc);
	return s;
}
