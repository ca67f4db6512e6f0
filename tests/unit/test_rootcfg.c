/* Unit tests of core/rootcfg (state_root_commit / state_root_render): a dstack server
 * config.yml applied all or nothing, named backends, unchanged backends skipped, unlisted
 * backends removed and unlisted projects kept, encryption keys, and the rendered text read back
 * with ydoc. */
#include <check.h>
#include <errno.h>
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
static struct fileref_ctx g_ctx;

static void setup(void)
{
	g_s = store_tmp("rootcfg");
	const char *home = tmp_dir("rootcfg-home");
	g_ctx = (struct fileref_ctx){.cwd = home, .home = home, .mountpoint = NULL};
}

static void teardown(void)
{
	store_close(g_s);
	g_s = NULL;
	tmp_remove_all();
}

static const char cfg_two_projects[] = "projects:\n"
				       "- name: main\n"
				       "  backends:\n"
				       "  - type: lambda\n"
				       "    creds:\n"
				       "      type: api_key\n"
				       "      api_key: abc\n"
				       "  - type: aws\n"
				       "    creds:\n"
				       "      type: access_key\n"
				       "      access_key: AKIA\n"
				       "      secret_key: s3cr3t\n"
				       "  - name: aws-dev\n"
				       "    type: aws\n"
				       "    creds:\n"
				       "      type: access_key\n"
				       "      access_key: AKIADEV\n"
				       "      secret_key: dev-s3cr3t\n"
				       "- name: other\n"
				       "  backends: []\n";

static int commit(const char *y, char *err)
{
	err[0] = '\0';
	return state_root_commit(g_s, y, strlen(y), &g_ctx, err, ERRSZ);
}

static void commit_ok(const char *y)
{
	char err[ERRSZ];
	int r = commit(y, err);
	ck_assert_msg(r == 0, "root commit: %d %s\n%s", r, err, y);
}

static char *render(void)
{
	struct buf b;
	buf_init(&b, 16 << 20);
	ck_assert_int_eq(state_root_render(g_s, &b), 0);
	char *t = buf_steal(&b, NULL);
	ck_assert_ptr_nonnull(t);
	return t;
}

static struct ydoc *load(const char *text)
{
	struct ydoc *d = NULL;
	char err[ERRSZ];
	int r = ydoc_load(text, strlen(text), "rendered", &d, err, sizeof(err));
	ck_assert_msg(r == 0, "the rendered root config does not load: %s\n%s", err, text);
	return d;
}

/* The project entry named name in a rendered/loaded root config, or 0. */
static int find_project(const struct ydoc *d, const char *name)
{
	int ps = ydoc_map_get(d, ydoc_root(d), "projects");
	for (size_t i = 0; i < ydoc_len(d, ps); i++) {
		int p = ydoc_seq_at(d, ps, i);
		const char *n = ydoc_str(d, ydoc_map_get(d, p, "name"));
		if (n && !strcmp(n, name))
			return p;
	}
	return 0;
}

/* The backend entry of project p whose directory is dir (name:, else type:), or 0. */
static int find_backend(const struct ydoc *d, int p, const char *dir)
{
	int bs = ydoc_map_get(d, p, "backends");
	for (size_t i = 0; i < ydoc_len(d, bs); i++) {
		int b = ydoc_seq_at(d, bs, i);
		const char *n = ydoc_str(d, ydoc_map_get(d, b, "name"));
		if (!n)
			n = ydoc_str(d, ydoc_map_get(d, b, "type"));
		if (n && !strcmp(n, dir))
			return b;
	}
	return 0;
}

/* The scalar at a dotted path below node, "(none)" if there is none. */
static const char *at(const struct ydoc *d, int node, const char *path)
{
	int n = node;
	for (const char *p = path; n && *p;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		char key[64];
		ck_assert_int_eq(fmt(key, sizeof(key), "%.*s", (int)len, p), 0);
		n = ydoc_map_get(d, n, key);
		p += len + (dot ? 1 : 0);
	}
	const char *s = ydoc_str(d, n);
	return s ? s : "(none)";
}

/* Everything a root commit may change, as text: projects, backends (metadata, config text,
 * attachments), user keys, root extras. Caller frees. */
static char *snapshot(void)
{
	struct buf out;
	struct stx *tx = NULL;
	struct st_project *ps = NULL;
	size_t np = 0;
	buf_init(&out, 64 << 20);
	ck_assert_int_eq(store_begin(g_s, false, &tx), 0);
	ck_assert_int_eq(store_project_list(tx, &ps, &np), 0);
	for (size_t i = 0; i < np; i++) {
		struct st_backend *bs = NULL;
		size_t nb = 0;
		buf_printf(&out, "project %s %lld.%ld\n", ps[i].name, (long long)ps[i].mtime.tv_sec,
			   ps[i].mtime.tv_nsec);
		ck_assert_int_eq(store_backend_list(tx, ps[i].name, &bs, &nb), 0);
		for (size_t j = 0; j < nb; j++) {
			struct st_backend *b = &bs[j];
			buf_printf(&out,
				   " backend %s type=%s cfg=%d size=%llu mt=%lld.%ld dmt=%lld.%ld "
				   "cat=%lld err=[%s] natt=%u\n",
				   b->name, b->type, b->has_config, (unsigned long long)b->size,
				   (long long)b->mtime.tv_sec, b->mtime.tv_nsec,
				   (long long)b->dir_mtime.tv_sec, b->dir_mtime.tv_nsec,
				   (long long)b->committed_at, b->last_error, b->natt);
			char *c = NULL;
			size_t n = 0;
			if (store_backend_config(tx, ps[i].name, b->name, &c, &n) == 0) {
				buf_printf(&out, "  config<<%s>>\n", c);
				seal_free_secret(c, n);
			}
			for (uint32_t a = 0; a < b->natt; a++) {
				struct attachment at_;
				ck_assert_int_eq(
					store_backend_attach(tx, ps[i].name, b->name, a, &at_), 0);
				buf_printf(&out, "  att %s %s <<%s>>\n", at_.field, at_.path,
					   at_.data);
				free(at_.field);
				free(at_.path);
				seal_free_secret(at_.data, at_.len);
			}
		}
		free(bs);
	}
	free(ps);
	static const char *const meta[] = {"root/default_permissions", "root/plugins"};
	for (size_t i = 0; i < 2; i++) {
		char *v = NULL;
		size_t n = 0;
		if (store_meta_get(tx, meta[i], &v, &n) == 0) {
			buf_printf(&out, "%s<<%s>>\n", meta[i], v);
			free(v);
		}
	}
	store_abort(tx);
	struct seal_key keys[SEAL_MAX_KEYS];
	size_t nk = store_user_keys(g_s, keys, SEAL_MAX_KEYS);
	for (size_t i = 0; i < nk; i++) {
		char *b = b64_encode(keys[i].key, SEAL_KEY_LEN);
		buf_printf(&out, "key %s %s\n", keys[i].name, b);
		free(b);
	}
	return buf_steal(&out, NULL);
}


static char *config_of(const char *project, const char *name)
{
	struct stx *tx = NULL;
	char *c = NULL, *copy = NULL;
	size_t n = 0;
	ck_assert_int_eq(store_begin(g_s, false, &tx), 0);
	if (store_backend_config(tx, project, name, &c, &n) == 0) {
		copy = xstrdup(c);
		seal_free_secret(c, n);
	}
	store_abort(tx);
	return copy;
}

static char *b64_of_bytes(size_t n, unsigned char fill)
{
	unsigned char raw[64];
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(fill + 13 * i);
	return b64_encode(raw, n);
}

/* ---- apply and render ---- */

START_TEST(test_commit_and_render)
{
	commit_ok(cfg_two_projects);
	ck_assert(has_project(g_s, "main"));
	ck_assert(has_project(g_s, "other"));
	struct st_backend b = backend_of(g_s, "main", "lambda");
	ck_assert(b.has_config);
	ck_assert_str_eq(b.type, "lambda");
	b = backend_of(g_s, "main", "aws");
	ck_assert(b.has_config);
	ck_assert_str_eq(b.type, "aws");
	b = backend_of(g_s, "main", "aws-dev");
	ck_assert(b.has_config);
	ck_assert_str_eq(b.type, "aws");
	/* a named backend's config.yml is the entry without name: */
	char *c = config_of("main", "aws-dev");
	ck_assert_str_eq(c, "type: aws\ncreds:\n  type: access_key\n  access_key: AKIADEV\n"
			    "  secret_key: dev-s3cr3t\n");
	free(c);
	c = config_of("main", "lambda");
	ck_assert_str_eq(c, cfg_lambda);
	free(c);
	/* events: one per change, and a summary in the mount's journal */
	char *t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " backend=aws-dev config.yml created from the root "
				       "config.yml (type aws)\n"),
			  1);
	ck_assert_ptr_null(strstr(t, "s3cr3t"));
	free(t);
	t = events_text(g_s, "");
	ck_assert_uint_eq(str_count(t, " project=other created from config.yml\n"), 1);
	ck_assert_uint_eq(str_count(t,
				    " config.yml applied: 2 projects listed (1 new), backends: 3 "
				    "created, 0 updated, 0 removed\n"),
			  1);
	free(t);

	char *text = render();
	struct ydoc *d = load(text);
	int root = ydoc_root(d);
	ck_assert_int_eq(ydoc_kind(d, root), Y_MAP);
	int ps = ydoc_map_get(d, root, "projects");
	ck_assert_int_eq(ydoc_kind(d, ps), Y_SEQ);
	ck_assert_uint_eq(ydoc_len(d, ps), 2);
	ck_assert_int_eq(ydoc_map_get(d, root, "encryption"), 0);
	int main_p = find_project(d, "main"), other = find_project(d, "other");
	ck_assert_int_ne(main_p, 0);
	ck_assert_int_ne(other, 0);
	int bl = ydoc_map_get(d, main_p, "backends");
	ck_assert_int_eq(ydoc_kind(d, bl), Y_SEQ);
	ck_assert_uint_eq(ydoc_len(d, bl), 3);
	int ob = ydoc_map_get(d, other, "backends");
	ck_assert_int_eq(ydoc_kind(d, ob), Y_SEQ);
	ck_assert_uint_eq(ydoc_len(d, ob), 0);
	int lam = find_backend(d, main_p, "lambda"), aws = find_backend(d, main_p, "aws"),
	    dev = find_backend(d, main_p, "aws-dev");
	ck_assert_int_ne(lam, 0);
	ck_assert_int_ne(aws, 0);
	ck_assert_int_ne(dev, 0);
	ck_assert_str_eq(at(d, lam, "type"), "lambda");
	ck_assert_str_eq(at(d, lam, "creds.api_key"), "abc");
	ck_assert_int_eq(ydoc_map_get(d, lam, "name"), 0);
	ck_assert_str_eq(at(d, aws, "type"), "aws");
	ck_assert_str_eq(at(d, aws, "creds.secret_key"), "s3cr3t");
	ck_assert_int_eq(ydoc_map_get(d, aws, "name"), 0);
	ck_assert_str_eq(at(d, dev, "name"), "aws-dev");
	ck_assert_str_eq(at(d, dev, "type"), "aws");
	ck_assert_str_eq(at(d, dev, "creds.access_key"), "AKIADEV");
	ck_assert_str_eq(at(d, dev, "creds.secret_key"), "dev-s3cr3t");
	ck_assert_ptr_nonnull(strstr(text, "name: aws-dev\n"));
	/* the rendered entries equal what was written */
	struct ydoc *w = load(cfg_two_projects);
	int wm = find_project(w, "main");
	ck_assert(ydoc_equal(w, find_backend(w, wm, "aws-dev"), d, dev));
	ck_assert(ydoc_equal(w, find_backend(w, wm, "aws"), d, aws));
	ck_assert(ydoc_equal(w, find_backend(w, wm, "lambda"), d, lam));
	ydoc_free(w);
	ydoc_free(d);

	/* the rendered text applied again changes nothing */
	char *before = snapshot();
	commit_ok(text);
	char *after = snapshot();
	ck_assert_str_eq(before, after);
	t = events_text(g_s, "");
	ck_assert_uint_eq(str_count(t,
				    " config.yml applied: 2 projects listed (0 new), backends: 0 "
				    "created, 0 updated, 0 removed\n"),
			  1);
	free(t);
	free(before);
	free(after);
	free(text);
}
END_TEST

START_TEST(test_second_commit)
{
	char err[ERRSZ];
	commit_ok(cfg_two_projects);
	/* a project the root file never lists, with a backend made through the tree */
	ck_assert_int_eq(state_project_create(g_s, "keep", err, sizeof(err)), 0);
	ck_assert_int_eq(state_backend_create(g_s, "keep", "aws", err, sizeof(err)), 0);
	ck_assert_int_eq(state_backend_commit(g_s, "keep", "aws", cfg_aws, strlen(cfg_aws), NULL,
					      &g_ctx, err, sizeof(err)),
			 0);
	/* recognisable mtimes on the backend that will stay unchanged */
	struct timespec mt = {1000, 5}, dmt = {2000, 6};
	ck_assert_int_eq(state_backend_set_mtime(g_s, "main", "lambda", false, mt), 0);
	ck_assert_int_eq(state_backend_set_mtime(g_s, "main", "lambda", true, dmt), 0);
	struct st_backend lam0 = backend_of(g_s, "main", "lambda");
	char *lamcfg0 = config_of("main", "lambda");
	struct st_backend keep0 = backend_of(g_s, "keep", "aws");
	struct st_backend dev0 = backend_of(g_s, "main", "aws-dev");

	/* main: lambda the same (written differently), aws-dev changed, aws omitted; other and
	 * keep not listed */
	commit_ok("projects:\n"
		  "  - name: main\n"
		  "    backends:\n"
		  "      - creds: {api_key: abc, type: api_key}  # same content, other order\n"
		  "        type: lambda\n"
		  "      - name: aws-dev\n"
		  "        type: aws\n"
		  "        creds:\n"
		  "          type: access_key\n"
		  "          access_key: AKIADEV\n"
		  "          secret_key: rotated\n");
	ck_assert(!has_backend(g_s, "main", "aws"));
	ck_assert_ptr_null(config_of("main", "aws"));
	/* unchanged: bytes and mtimes */
	struct st_backend lam1 = backend_of(g_s, "main", "lambda");
	char *lamcfg1 = config_of("main", "lambda");
	ck_assert_str_eq(lamcfg0, lamcfg1);
	ck_assert_int_eq(lam1.mtime.tv_sec, 1000);
	ck_assert_int_eq(lam1.mtime.tv_nsec, 5);
	ck_assert_int_eq(lam1.dir_mtime.tv_sec, 2000);
	ck_assert_int_eq(lam1.dir_mtime.tv_nsec, 6);
	ck_assert_int_eq(lam1.committed_at, lam0.committed_at);
	free(lamcfg0);
	free(lamcfg1);
	/* changed */
	char *c = config_of("main", "aws-dev");
	ck_assert_ptr_nonnull(strstr(c, "secret_key: rotated"));
	free(c);
	struct st_backend dev1 = backend_of(g_s, "main", "aws-dev");
	ck_assert_int_eq(dev1.dir_mtime.tv_sec, dev0.dir_mtime.tv_sec);
	ck_assert_int_eq(dev1.dir_mtime.tv_nsec, dev0.dir_mtime.tv_nsec);
	ck_assert(dev1.mtime.tv_sec > dev0.mtime.tv_sec ||
		  (dev1.mtime.tv_sec == dev0.mtime.tv_sec &&
		   dev1.mtime.tv_nsec > dev0.mtime.tv_nsec));
	/* unlisted projects untouched */
	ck_assert(has_project(g_s, "other"));
	struct st_backend keep1 = backend_of(g_s, "keep", "aws");
	ck_assert_int_eq(keep1.mtime.tv_sec, keep0.mtime.tv_sec);
	ck_assert_int_eq(keep1.mtime.tv_nsec, keep0.mtime.tv_nsec);
	c = config_of("keep", "aws");
	ck_assert_str_eq(c, cfg_aws);
	free(c);
	char *t = events_text(g_s, "main");
	ck_assert_uint_eq(str_count(t, " backend=aws removed: not listed in the root config.yml\n"),
			  1);
	ck_assert_uint_eq(str_count(t, " backend=aws-dev config.yml updated from the root "
				       "config.yml (type aws)\n"),
			  1);
	ck_assert_uint_eq(str_count(t, "backend=lambda config.yml updated"), 0);
	free(t);
	t = events_text(g_s, "");
	ck_assert_uint_eq(str_count(t,
				    " config.yml applied: 1 projects listed (0 new), backends: 0 "
				    "created, 1 updated, 1 removed\n"),
			  1);
	free(t);
	/* a listed project with no backends loses all of them; backends: may be left out */
	commit_ok("projects:\n- name: main\n  backends: []\n- name: keep\n");
	ck_assert(!has_backend(g_s, "main", "lambda"));
	ck_assert(!has_backend(g_s, "main", "aws-dev"));
	ck_assert(!has_backend(g_s, "keep", "aws"));
	ck_assert_ptr_null(config_of("keep", "aws"));
	/* an empty list of projects changes no project */
	commit_ok("projects: []\n");
	ck_assert(has_project(g_s, "main"));
	ck_assert(has_project(g_s, "other"));
	ck_assert(has_project(g_s, "keep"));
}
END_TEST

START_TEST(test_backend_dirs_in_tree)
{
	char err[ERRSZ];
	/* a backend made through the tree (a directory, then config.yml without type:) renders
	 * with its type and is kept as is by a commit of the rendered text */
	ck_assert_int_eq(state_backend_create(g_s, "main", "lambda", err, sizeof(err)), 0);
	const char *cfg = "# through the tree\ncreds:\n  type: api_key\n  api_key: abc\n";
	ck_assert_int_eq(state_backend_commit(g_s, "main", "lambda", cfg, strlen(cfg), NULL, &g_ctx,
					      err, sizeof(err)),
			 0);
	ck_assert_int_eq(state_backend_create(g_s, "main", "prod", err, sizeof(err)), 0);
	ck_assert_int_eq(state_backend_commit(g_s, "main", "prod", cfg_aws, strlen(cfg_aws), NULL,
					      &g_ctx, err, sizeof(err)),
			 0);
	/* a directory without config.yml is not in the rendered file */
	ck_assert_int_eq(state_backend_create(g_s, "main", "vastai", err, sizeof(err)), 0);
	char *text = render();
	struct ydoc *d = load(text);
	int m = find_project(d, "main");
	ck_assert_uint_eq(ydoc_len(d, ydoc_map_get(d, m, "backends")), 2);
	int lam = find_backend(d, m, "lambda"), prod = find_backend(d, m, "prod");
	ck_assert_str_eq(at(d, lam, "type"), "lambda");
	ck_assert_str_eq(at(d, lam, "creds.api_key"), "abc");
	ck_assert_str_eq(at(d, prod, "name"), "prod");
	ck_assert_str_eq(at(d, prod, "type"), "aws");
	ck_assert_int_eq(find_backend(d, m, "vastai"), 0);
	ydoc_free(d);
	/* applying the render keeps lambda's bytes (comment and all) */
	struct st_backend lam0 = backend_of(g_s, "main", "lambda");
	commit_ok(text);
	char *c = config_of("main", "lambda");
	ck_assert_str_eq(c, cfg);
	free(c);
	struct st_backend lam1 = backend_of(g_s, "main", "lambda");
	ck_assert_int_eq(lam1.mtime.tv_sec, lam0.mtime.tv_sec);
	ck_assert_int_eq(lam1.mtime.tv_nsec, lam0.mtime.tv_nsec);
	/* the unconfigured directory was not listed, so it is removed */
	ck_assert(!has_backend(g_s, "main", "vastai"));
	free(text);
}
END_TEST

START_TEST(test_render_multiline)
{
	/* a literal block scalar survives the render's indentation */
	const char *y = "projects:\n"
			"- name: main\n"
			"  backends:\n"
			"  - type: gcp\n"
			"    project_id: my-project\n"
			"    creds:\n"
			"      type: service_account\n"
			"      data: |\n"
			"        {\n"
			"          \"client_email\": \"a@b\",\n"
			"\n"
			"          \"private_key\": \"k\",\n"
			"          \"token_uri\": \"u\"\n"
			"        }\n"
			"    regions: ['us-east1']\n";
	commit_ok(y);
	char *text = render();
	struct ydoc *d = load(text), *w = load(y);
	int g = find_backend(d, find_project(d, "main"), "gcp");
	int wg = find_backend(w, find_project(w, "main"), "gcp");
	ck_assert_msg(ydoc_equal(w, wg, d, g), "render changed the entry:\n%s", text);
	ck_assert_str_eq(at(d, g, "creds.data"),
			 "{\n  \"client_email\": \"a@b\",\n\n  "
			 "\"private_key\": \"k\",\n  \"token_uri\": \"u\"\n}\n");
	ydoc_free(d);
	ydoc_free(w);
	char *before = snapshot();
	commit_ok(text);
	char *after = snapshot();
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
	free(text);
}
END_TEST

/* ---- all or nothing ---- */

START_TEST(test_invalid_changes_nothing)
{
	commit_ok(cfg_two_projects);
	char *before = snapshot();
	static const struct {
		const char *yaml, *prefix;
	} cases[] = {
		/* an invalid backend in the second project, after valid changes in the first */
		{"projects:\n"
		 "- name: main\n"
		 "  backends:\n"
		 "  - type: lambda\n"
		 "    creds: {type: api_key, api_key: changed}\n"
		 "- name: newproject\n"
		 "  backends:\n"
		 "  - type: aws\n"
		 "    creds:\n"
		 "      type: access_key\n"
		 "      access_key: AKIA\n",
		 "config.yml:10: creds.secret_key: "},
		{"projects:\n- name: main\n  backends:\n  - type: nosuchcloud\n",
		 "config.yml:4: type: unknown backend type \"nos\xe2\x80\xa6\" (11 chars) (known: "},
		{"projects:\n- name: main\n  backends:\n  - creds: {type: api_key, api_key: x}\n",
		 "config.yml:4: type: required field is missing"},
		{"projects:\n- name: main\n  backends:\n  - aws\n",
		 "config.yml:4: projects[0].backends[0]: expected a backend mapping"},
		{"projects:\n- name: 'bad name'\n", "config.yml:2: projects[0]: name must match"},
		{"projects:\n- name: newp\n- name: newp\n",
		 "config.yml:3: projects[1]: project \"new\xe2\x80\xa6\" (4 chars) is listed twice "
		 "(also projects[0])"},
		{"projects:\n- backends: []\n", "config.yml:2: projects[0]: name: required"},
		{"projects:\n- name: x\n  extra: 1\n",
		 "config.yml:3: projects[0]: unknown key \"ext\xe2\x80\xa6\" (5 chars)"},
		{"projects: {main: {}}\n", "config.yml:1: projects: expected a list"},
		{"projectz: []\n",
		 "config.yml:1: unknown key \"pro\xe2\x80\xa6\" (8 chars) (did you mean projects?) "
		 "(expected projects, encryption, default_permissions, plugins)"},
		{"projects: []\nlmbdSECRETkey7f3a9c1e: 1\n",
		 "config.yml:2: unknown key \"lmb\xe2\x80\xa6\" (21 chars) (expected projects,"},
		{"encryption: {keys: []}\n", "config.yml:1: projects: required"},
		{"- projects\n", "config.yml:1: expected dstack's server config"},
		{"", "config.yml:1: expected dstack's server config"},
		{"projects: [\n", "config.yml:2: YAML syntax error"},
		{"projects: []\nprojects: []\n", "config.yml:2: duplicate key \"pro\xe2\x80\xa6\" (8 chars)"},
		{"projects: []\ndefault_permissions: {allow_everything: true}\n",
		 "config.yml:2: default_permissions: unknown key \"all\xe2\x80\xa6\" (16 chars)"},
		{"projects: []\ndefault_permissions: {allow_non_admins_create_projects: maybe}\n",
		 "config.yml:2: default_permissions.allow_non_admins_create_projects: expected "
		 "true or "
		 "false"},
		{"projects: []\nplugins: x\n", "config.yml:2: plugins: expected a list"},
		{"projects: []\nplugins: [[x]]\n", "config.yml:2: plugins: expected a name"},
		{"projects:\n- name: newp\n  backends:\n  - name: 'x y'\n    type: lambda\n"
		 "    creds: {type: api_key, api_key: a}\n",
		 "config.yml:4: name: must match"},
		{"projects:\n- name: newp\n  backends:\n  - name: lambda\n    type: aws\n"
		 "    creds: {type: default}\n",
		 "config.yml:4: name: is another backend type"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[ERRSZ];
		int r = commit(cases[i].yaml, err);
		ck_assert_msg(r == -EINVAL, "case %zu: %d %s", i, r, err);
		ck_assert_msg(strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) == 0,
			      "case %zu:\nwant %s\ngot  %s", i, cases[i].prefix, err);
		char *after = snapshot();
		ck_assert_msg(strcmp(before, after) == 0, "case %zu changed the state", i);
		free(after);
		/* the refusal is noted in the mount's journal */
		char *t = events_text(g_s, "");
		char *want = xasprintf(" config.yml rejected: %s\n", err);
		ck_assert_msg(str_count(t, want) >= 1, "case %zu: not in the journal: %s", i, want);
		free(want);
		free(t);
	}
	ck_assert(!has_project(g_s, "newproject"));
	ck_assert(!has_project(g_s, "newp"));
	/* the secret of the failing case never reaches the journal, nor a key pasted as one */
	char *t = events_text(g_s, "");
	ck_assert_ptr_null(strstr(t, "changed"));
	ck_assert_ptr_null(strstr(t, "SECRET"));
	ck_assert_ptr_null(strstr(t, "projectz"));
	free(t);
	free(before);
}
END_TEST

START_TEST(test_duplicate_dirs)
{
	commit_ok(cfg_two_projects);
	char *before = snapshot();
	static const char *const dups[] = {
		"projects:\n- name: main\n  backends:\n"
		"  - {type: aws, creds: {type: default}}\n"
		"  - {type: aws, creds: {type: default}}\n",
		"projects:\n- name: main\n  backends:\n"
		"  - {type: aws, creds: {type: default}}\n"
		"  - {name: aws, type: aws, creds: {type: default}}\n",
		"projects:\n- name: main\n  backends:\n"
		"  - {name: prod, type: aws, creds: {type: default}}\n"
		"  - {name: prod, type: lambda, creds: {type: api_key, api_key: x}}\n",
	};
	for (size_t i = 0; i < sizeof(dups) / sizeof(dups[0]); i++) {
		char err[ERRSZ];
		ck_assert_int_eq(commit(dups[i], err), -EINVAL);
		ck_assert_msg(strncmp(err,
				      "config.yml:5: projects[0].backends[1]: a second backend "
				      "named ",
				      55) == 0,
			      "%s", err);
		ck_assert_msg(strstr(err, " in this project (also backends[0])"), "%s", err);
		char *after = snapshot();
		ck_assert_str_eq(before, after);
		free(after);
	}
	/* the same name in two projects is fine */
	commit_ok("projects:\n"
		  "- name: main\n  backends:\n  - {name: prod, type: aws, creds: {type: default}}\n"
		  "- name: other\n  backends:\n  - {name: prod, type: aws, creds: {type: "
		  "default}}\n");
	ck_assert(has_backend(g_s, "main", "prod"));
	ck_assert(has_backend(g_s, "other", "prod"));
	free(before);
}
END_TEST

/* ---- encryption ---- */

/* The key names here are as long as the key file's ("local"): see
 * test_encryption_keys_many_backends for the other case. */
START_TEST(test_encryption_keys)
{
	char err[ERRSZ];
	char *k1 = b64_of_bytes(32, 1), *k2 = b64_of_bytes(32, 2);
	char *y = xasprintf("projects:\n"
			    "- name: main\n"
			    "  backends:\n"
			    "  - type: aws\n"
			    "    creds: {type: access_key, access_key: AKIA, secret_key: s3cr3t}\n"
			    "encryption:\n"
			    "  keys:\n"
			    "  - type: aes\n"
			    "    name: key01\n"
			    "    secret: %s\n"
			    "  - type: identity\n",
			    k1);
	commit_ok(y);
	struct seal_key keys[SEAL_MAX_KEYS];
	ck_assert_uint_eq(store_user_keys(g_s, keys, SEAL_MAX_KEYS), 1);
	ck_assert_str_eq(keys[0].name, "key01");
	char *kb = b64_encode(keys[0].key, SEAL_KEY_LEN);
	ck_assert_str_eq(kb, k1);
	free(kb);
	char *c = config_of("main", "aws");
	ck_assert_ptr_nonnull(strstr(c, "s3cr3t"));
	free(c);
	char *t = events_text(g_s, "");
	ck_assert_uint_eq(str_count(t, "; encryption keys set, secrets re-sealed\n"), 1);
	ck_assert_ptr_null(strstr(t, k1));
	free(t);
	/* rendered back */
	char *text = render();
	struct ydoc *d = load(text);
	int ks = ydoc_map_get(d, ydoc_map_get(d, ydoc_root(d), "encryption"), "keys");
	ck_assert_int_eq(ydoc_kind(d, ks), Y_SEQ);
	ck_assert_uint_eq(ydoc_len(d, ks), 1);
	int k = ydoc_seq_at(d, ks, 0);
	ck_assert_str_eq(at(d, k, "type"), "aes");
	ck_assert_str_eq(at(d, k, "name"), "key01");
	ck_assert_str_eq(at(d, k, "secret"), k1);
	ydoc_free(d);
	/* applying the render keeps everything */
	char *before = snapshot();
	commit_ok(text);
	char *after = snapshot();
	ck_assert_str_eq(before, after);
	free(after);
	free(text);
	/* `encryption` absent leaves the keys alone */
	commit_ok("projects: []\n");
	ck_assert_uint_eq(store_user_keys(g_s, keys, SEAL_MAX_KEYS), 1);
	ck_assert_str_eq(keys[0].name, "key01");
	after = snapshot();
	ck_assert_str_eq(before, after);
	free(after);
	free(before);
	/* rotation: a new first key */
	free(y);
	y = xasprintf("projects: []\nencryption:\n  keys:\n"
		      "  - {type: aes, name: key02, secret: '%s'}\n"
		      "  - {type: aes, name: key01, secret: '%s'}\n",
		      k2, k1);
	commit_ok(y);
	ck_assert_uint_eq(store_user_keys(g_s, keys, SEAL_MAX_KEYS), 2);
	ck_assert_str_eq(keys[0].name, "key02");
	ck_assert_str_eq(keys[1].name, "key01");
	c = config_of("main", "aws");
	ck_assert_ptr_nonnull(strstr(c, "s3cr3t"));
	free(c);
	/* an empty key list removes the user keys */
	commit_ok("projects: []\nencryption:\n  keys: []\n");
	ck_assert_uint_eq(store_user_keys(g_s, keys, SEAL_MAX_KEYS), 0);
	commit_ok(y);
	commit_ok("projects: []\nencryption:\n  keys:\n");
	ck_assert_uint_eq(store_user_keys(g_s, keys, SEAL_MAX_KEYS), 0);
	c = config_of("main", "aws");
	ck_assert_ptr_nonnull(strstr(c, "s3cr3t"));
	free(c);
	text = render();
	ck_assert_ptr_null(strstr(text, "encryption"));
	free(text);
	(void)err;
	free(y);
	free(k1);
	free(k2);
}
END_TEST

START_TEST(test_encryption_bad)
{
	commit_ok(cfg_two_projects);
	char *before = snapshot();
	char *short_key = b64_of_bytes(16, 3), *long_key = b64_of_bytes(33, 3),
	     *good = b64_of_bytes(32, 3);
	struct {
		char *yaml;
		const char *prefix;
	} cases[] = {
		{xasprintf("projects: []\nencryption:\n  keys:\n  - type: aes\n    name: k\n"
			   "    secret: %s\n",
			   short_key),
		 "config.yml:6: encryption.keys[0]: secret must be the base64 of exactly 32 bytes"},
		{xasprintf("projects: []\nencryption:\n  keys:\n  - type: aes\n    name: k\n"
			   "    secret: %s\n",
			   long_key),
		 "config.yml:6: encryption.keys[0]: secret must be the base64 of exactly 32 bytes"},
		{xasprintf("projects: []\nencryption:\n  keys:\n  - type: aes\n    name: k\n"
			   "    secret: 'not base64!'\n"),
		 "config.yml:6: encryption.keys[0]: secret must be the base64"},
		{xasprintf("projects: []\nencryption:\n  keys:\n  - type: aes\n    name: k\n"),
		 "config.yml:4: encryption.keys[0]: secret: required"},
		{xasprintf("projects: []\nencryption:\n  keys:\n  - type: aes\n    secret: %s\n",
			   good),
		 "config.yml:4: encryption.keys[0]: name: required"},
		{xasprintf("projects: []\nencryption:\n  keys:\n  - type: aes\n    name: 'a:b'\n"
			   "    secret: %s\n",
			   good),
		 "config.yml:4: encryption.keys[0]: name: required, letters and digits only"},
		{xasprintf("projects: []\nencryption:\n  keys:\n  - type: rsa\n"),
		 "config.yml:4: encryption.keys[0]: type must be aes or identity; got \"rsa\" "
		 "(3 chars)"},
		{xasprintf("projects: []\nencryption:\n  keys:\n  - name: k\n"),
		 "config.yml:4: encryption.keys[0]: type: required"},
		{xasprintf("projects: []\nencryption:\n  keys:\n  - type: aes\n    name: k\n"
			   "    secret: %s\n    extra: 1\n",
			   good),
		 "config.yml:7: encryption.keys[0]: unknown key \"ext\xe2\x80\xa6\" (5 chars)"},
		{xasprintf("projects: []\nencryption:\n  keys: {a: b}\n"),
		 "config.yml:3: encryption.keys: expected a list"},
		{xasprintf("projects: []\nencryption:\n  other: []\n"),
		 "config.yml:3: encryption: unknown key \"oth\xe2\x80\xa6\" (5 chars)"},
		{xasprintf("projects: []\nencryption: [x]\n"),
		 "config.yml:2: encryption: expected a mapping"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[ERRSZ];
		int r = commit(cases[i].yaml, err);
		ck_assert_msg(r == -EINVAL, "case %zu: %d %s", i, r, err);
		ck_assert_msg(strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) == 0,
			      "case %zu:\nwant %s\ngot  %s", i, cases[i].prefix, err);
		/* the secret is never echoed */
		ck_assert_ptr_null(strstr(err, short_key));
		ck_assert_ptr_null(strstr(err, good));
		char *after = snapshot();
		ck_assert_msg(strcmp(before, after) == 0, "case %zu changed the state", i);
		free(after);
		free(cases[i].yaml);
	}
	char *t = events_text(g_s, "");
	ck_assert_ptr_null(strstr(t, short_key));
	ck_assert_ptr_null(strstr(t, long_key));
	free(t);
	struct seal_key keys[SEAL_MAX_KEYS];
	ck_assert_uint_eq(store_user_keys(g_s, keys, SEAL_MAX_KEYS), 0);
	free(before);
	free(short_key);
	free(long_key);
	free(good);
}
END_TEST

START_TEST(test_extras_rendered)
{
	commit_ok("projects: []\n"
		  "default_permissions:\n"
		  "  allow_non_admins_create_projects: false\n"
		  "  allow_managers_manage_secrets: yes\n"
		  "plugins:\n"
		  "- my_plugin\n"
		  "- other.plugin\n");
	char *text = render();
	struct ydoc *d = load(text);
	int root = ydoc_root(d);
	int dp = ydoc_map_get(d, root, "default_permissions");
	ck_assert_int_eq(ydoc_kind(d, dp), Y_MAP);
	bool v = true;
	ck_assert_int_eq(ydoc_bool(d, ydoc_map_get(d, dp, "allow_non_admins_create_projects"), &v),
			 0);
	ck_assert(!v);
	ck_assert_int_eq(ydoc_bool(d, ydoc_map_get(d, dp, "allow_managers_manage_secrets"), &v), 0);
	ck_assert(v);
	int pl = ydoc_map_get(d, root, "plugins");
	ck_assert_int_eq(ydoc_kind(d, pl), Y_SEQ);
	ck_assert_uint_eq(ydoc_len(d, pl), 2);
	ck_assert_str_eq(ydoc_str(d, ydoc_seq_at(d, pl, 1)), "other.plugin");
	/* the project "main" of a new store is there with no backends */
	int m = find_project(d, "main");
	ck_assert_int_ne(m, 0);
	ck_assert_int_eq(ydoc_kind(d, ydoc_map_get(d, m, "backends")), Y_SEQ);
	ck_assert_uint_eq(ydoc_len(d, ydoc_map_get(d, m, "backends")), 0);
	ydoc_free(d);
	free(text);
	/* left out, they are removed */
	commit_ok("projects: []\n");
	text = render();
	ck_assert_ptr_null(strstr(text, "default_permissions"));
	ck_assert_ptr_null(strstr(text, "plugins"));
	free(text);
}
END_TEST

/* BUG: state_root_render writes project and backend names plain ("- name: %s"), so a valid
 * name that YAML 1.1 reads as another type (yes, no, on, off, true, null, 123) becomes a bool,
 * a null or a number for dstack (PyYAML), whose format the rendered file promises. */
START_TEST(test_render_quotes_names)
{
	char err[ERRSZ];
	static const char *const names[] = {"yes", "no", "on", "off", "true", "null", "123"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_int_eq(state_project_create(g_s, names[i], err, sizeof(err)), 0);
	ck_assert_int_eq(state_backend_create(g_s, "main", "true", err, sizeof(err)), 0);
	ck_assert_int_eq(state_backend_commit(g_s, "main", "true", cfg_aws, strlen(cfg_aws), NULL,
					      &g_ctx, err, sizeof(err)),
			 0);
	char *text = render();
	struct ydoc *d = load(text);
	int ps = ydoc_map_get(d, ydoc_root(d), "projects");
	for (size_t i = 0; i < ydoc_len(d, ps); i++) {
		int n = ydoc_map_get(d, ydoc_seq_at(d, ps, i), "name");
		bool b;
		long long v;
		ck_assert_msg(ydoc_bool(d, n, &b) != 0 && ydoc_int(d, n, &v) != 0 &&
				      !ydoc_is_null(d, n),
			      "project name %s is rendered plain", ydoc_str(d, n));
	}
	int b = find_backend(d, find_project(d, "main"), "true");
	bool bv;
	ck_assert_msg(ydoc_bool(d, ydoc_map_get(d, b, "name"), &bv) != 0,
		      "backend name true is rendered plain:\n%s", text);
	ydoc_free(d);
	free(text);
}
END_TEST

/* BUG (data loss, through store_set_user_keys, see test_store.c test_user_keys_resize):
 * applying a root config.yml whose first aes key's name is not five characters long
 * re-seals every secret with a different size and LMDB garbles the record keys: the stored
 * backends lose their config.yml. */
START_TEST(test_encryption_keys_many_backends)
{
	commit_ok(cfg_two_projects);
	char *k1 = b64_of_bytes(32, 1);
	char *y = xasprintf(
		"projects: []\nencryption:\n  keys:\n  - {type: aes, name: k1, secret: %s}\n", k1);
	commit_ok(y);
	static const char *const names[] = {"lambda", "aws", "aws-dev"};
	for (size_t i = 0; i < 3; i++) {
		char *c = config_of("main", names[i]);
		ck_assert_msg(c != NULL, "config.yml of %s lost after setting a key", names[i]);
		free(c);
	}
	char *text = render();
	struct ydoc *d = load(text);
	ck_assert_uint_eq(ydoc_len(d, ydoc_map_get(d, find_project(d, "main"), "backends")), 3);
	ydoc_free(d);
	free(text);
	free(y);
	free(k1);
}
END_TEST

Suite *rootcfg_suite(void)
{
	Suite *s = suite_create("rootcfg");
	TCase *apply = tcase_create("apply");
	TCase *enc = tcase_create("encryption");
	TCase *tcs[] = {apply, enc};
	for (size_t i = 0; i < sizeof(tcs) / sizeof(tcs[0]); i++) {
		tcase_add_unchecked_fixture(tcs[i], tmp_root_setup, tmp_root_teardown);
		tcase_add_checked_fixture(tcs[i], setup, teardown);
		tcase_set_timeout(tcs[i], 60);
		suite_add_tcase(s, tcs[i]);
	}
	tcase_add_test(apply, test_commit_and_render);
	tcase_add_test(apply, test_second_commit);
	tcase_add_test(apply, test_backend_dirs_in_tree);
	tcase_add_test(apply, test_render_multiline);
	tcase_add_test(apply, test_invalid_changes_nothing);
	tcase_add_test(apply, test_duplicate_dirs);
	tcase_add_test(apply, test_extras_rendered);
	tcase_add_test(apply, test_render_quotes_names);
	tcase_add_test(enc, test_encryption_keys);
	tcase_add_test(enc, test_encryption_bad);
	tcase_add_test(enc, test_encryption_keys_many_backends);
	return s;
}
