/* Unit tests of lib/ydoc: loading within the limits ydoc.h documents (size, NUL bytes, alias
 * expansion, recursion, depth, one document, no duplicate keys), the exact error formats, the
 * scalar helpers, structural equality, and emit -> load round trips. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/util.h"
#include "../../lib/ydoc.h"
#include "suites.h"

#define ERRSZ 1024

/* Load s (NUL-terminated) as "t.yml"; on success return the document. */
static struct ydoc *load_ok(const char *s)
{
	struct ydoc *d = NULL;
	char err[ERRSZ] = "";
	int r = ydoc_load(s, strlen(s), "t.yml", &d, err, sizeof(err));
	ck_assert_msg(r == 0, "expected to load, got %d: %s\n%s", r, err, s);
	return d;
}

/* Load must fail with want (an errno) and an error starting with prefix; returns nothing. */
static void load_bad_n(const char *s, size_t len, int want, const char *prefix)
{
	struct ydoc *d = (struct ydoc *)1;
	char err[ERRSZ] = "";
	int r = ydoc_load(s, len, "t.yml", &d, err, sizeof(err));
	ck_assert_msg(r == want, "expected %d, got %d (%s)", want, r, err);
	ck_assert_ptr_null(d);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
		      "expected prefix \"%s\"\n                 got \"%s\"", prefix, err);
}

static void load_bad(const char *s, int want, const char *prefix)
{
	load_bad_n(s, strlen(s), want, prefix);
}

/* "[[[...x...]]]" nested n deep around an optional scalar. Caller frees. */
static char *nested(int n, const char *inner)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(buf_append(&b, "[", 1), 0);
	ck_assert_int_eq(buf_append(&b, inner, strlen(inner)), 0);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(buf_append(&b, "]", 1), 0);
	return buf_steal(&b, NULL);
}

/* ---- loading ---- */

START_TEST(test_load_valid)
{
	const char *y = "# a comment\n"
			"name: main\n"
			"list:\n"
			"  - one\n"
			"  - 'two'\n"
			"  - {k: v}\n"
			"nested:\n"
			"  deeper:\n"
			"    leaf: \"x\"\n";
	struct ydoc *d = load_ok(y);
	int root = ydoc_root(d);
	ck_assert_int_eq(root, 1);
	ck_assert_str_eq(ydoc_file(d), "t.yml");
	ck_assert_int_eq(ydoc_kind(d, root), Y_MAP);
	ck_assert_uint_eq(ydoc_len(d, root), 3);
	ck_assert_uint_eq(ydoc_line(d, root), 2);
	int name = ydoc_map_get(d, root, "name");
	ck_assert_int_eq(ydoc_kind(d, name), Y_SCALAR);
	ck_assert_str_eq(ydoc_str(d, name), "main");
	ck_assert(ydoc_plain(d, name));
	ck_assert_uint_eq(ydoc_line(d, name), 2);
	ck_assert_str_eq(ydoc_str(d, ydoc_map_key(d, root, 0)), "name");
	ck_assert_int_eq(ydoc_map_val(d, root, 0), name);
	int list = ydoc_map_get(d, root, "list");
	ck_assert_int_eq(ydoc_kind(d, list), Y_SEQ);
	ck_assert_uint_eq(ydoc_len(d, list), 3);
	ck_assert_uint_eq(ydoc_line(d, list), 4);
	ck_assert_str_eq(ydoc_str(d, ydoc_seq_at(d, list, 0)), "one");
	ck_assert_str_eq(ydoc_str(d, ydoc_seq_at(d, list, 1)), "two");
	ck_assert(!ydoc_plain(d, ydoc_seq_at(d, list, 1)));
	ck_assert_uint_eq(ydoc_line(d, ydoc_seq_at(d, list, 1)), 5);
	int m = ydoc_seq_at(d, list, 2);
	ck_assert_int_eq(ydoc_kind(d, m), Y_MAP);
	ck_assert_str_eq(ydoc_str(d, ydoc_map_get(d, m, "k")), "v");
	int leaf =
		ydoc_map_get(d, ydoc_map_get(d, ydoc_map_get(d, root, "nested"), "deeper"), "leaf");
	ck_assert_str_eq(ydoc_str(d, leaf), "x");
	ck_assert_uint_eq(ydoc_line(d, leaf), 9);
	/* out of range and wrong-kind accessors answer "no node" */
	ck_assert_int_eq(ydoc_seq_at(d, list, 3), 0);
	ck_assert_int_eq(ydoc_seq_at(d, root, 0), 0);
	ck_assert_int_eq(ydoc_map_key(d, list, 0), 0);
	ck_assert_int_eq(ydoc_map_val(d, root, 3), 0);
	ck_assert_int_eq(ydoc_map_get(d, root, "absent"), 0);
	ck_assert_int_eq(ydoc_map_get(d, list, "name"), 0);
	ck_assert_ptr_null(ydoc_str(d, root));
	ck_assert_ptr_null(ydoc_str(d, 0));
	ck_assert_int_eq(ydoc_kind(d, 0), Y_NONE);
	ck_assert_int_eq(ydoc_kind(d, 999), Y_NONE);
	ck_assert_uint_eq(ydoc_len(d, name), 0);
	ck_assert_uint_eq(ydoc_line(d, 0), 1);
	ydoc_free(d);
	ydoc_free(NULL);

	/* the buffer need not be NUL-terminated: only len bytes are read */
	char raw[] = {'a', ':', ' ', '1', '\n', 'b', ':', ' ', '2'};
	char err[ERRSZ];
	ck_assert_int_eq(ydoc_load(raw, 5, "raw.yml", &d, err, sizeof(err)), 0);
	ck_assert_uint_eq(ydoc_len(d, ydoc_root(d)), 1);
	ydoc_free(d);

	/* a root scalar and a root sequence */
	d = load_ok("just text\n");
	ck_assert_int_eq(ydoc_kind(d, ydoc_root(d)), Y_SCALAR);
	ck_assert_str_eq(ydoc_str(d, ydoc_root(d)), "just text");
	ydoc_free(d);
	d = load_ok("- a\n- b\n");
	ck_assert_int_eq(ydoc_kind(d, ydoc_root(d)), Y_SEQ);
	ydoc_free(d);
}
END_TEST

START_TEST(test_empty_doc)
{
	static const char *const empties[] = {"", "# only a comment\n", "\n\n   \n",
					      "# a\n\n# b\n"};
	for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		struct ydoc *d = load_ok(empties[i]);
		ck_assert_ptr_nonnull(d);
		ck_assert_int_eq(ydoc_root(d), 0);
		ck_assert_int_eq(ydoc_kind(d, ydoc_root(d)), Y_NONE);
		ck_assert_uint_eq(ydoc_len(d, 0), 0);
		ck_assert(ydoc_is_null(d, ydoc_root(d)));
		ydoc_free(d);
	}
}
END_TEST

START_TEST(test_syntax_errors)
{
	load_bad("a: 1\nb: 2\n  c: 3\n", -EINVAL,
		 "t.yml:3: YAML syntax error: mapping values are not allowed in this context");
	load_bad("a: 1\nb:\n\tc: 3\n", -EINVAL,
		 "t.yml:3: YAML syntax error: found character that cannot start any token");
	load_bad("a: 1\nb: @x\n", -EINVAL,
		 "t.yml:2: YAML syntax error: found character that cannot start any token");
	load_bad("a: [1, 2\n", -EINVAL, "t.yml:2: YAML syntax error: ");
	load_bad("- a\n- b\nc: d\n", -EINVAL, "t.yml:3: YAML syntax error: ");
	/* an undefined alias is an error of libyaml's loader */
	load_bad("a: *nowhere\n", -EINVAL, "t.yml:1: YAML syntax error: ");
	/* the file name in the message is the caller's */
	struct ydoc *d = NULL;
	char err[ERRSZ];
	ck_assert_int_eq(
		ydoc_load("x: [\n", 5, "projects/p/backends/aws/config.yml", &d, err, sizeof(err)),
		-EINVAL);
	ck_assert_msg(strncmp(err, "projects/p/backends/aws/config.yml:", 35) == 0, "%s", err);
	/* messages never contain a scalar's value */
	load_bad("key: SECRET-VALUE-1\n  bad: x\n", -EINVAL, "t.yml:2: YAML syntax error");
	const char *sec = "key: SECRET-VALUE-1\n  bad: x\n";
	ck_assert_int_eq(ydoc_load(sec, strlen(sec), "t.yml", &d, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(strstr(err, "SECRET"));
	/* a small error buffer truncates, never overflows */
	char tiny[8];
	ck_assert_int_eq(ydoc_load("a: 1\nb: @x\n", 11, "t.yml", &d, tiny, sizeof(tiny)), -EINVAL);
	ck_assert_str_eq(tiny, "t.yml:2");
}
END_TEST

START_TEST(test_nul_bytes)
{
	static const char y[] = "a: 1\nb: x\0y\n";
	load_bad_n(y, sizeof(y) - 1, -EINVAL, "t.yml:1: not a text file (contains NUL bytes)");
	load_bad_n("\0", 1, -EINVAL, "t.yml:1: not a text file");
}
END_TEST

START_TEST(test_size_limit)
{
	/* exactly YDOC_MAX_BYTES loads (a key and a long comment), one more byte is -EFBIG */
	char *big = xmalloc(YDOC_MAX_BYTES + 2);
	memset(big, 'x', YDOC_MAX_BYTES + 1);
	memcpy(big, "a: 1\n#", 6);
	big[YDOC_MAX_BYTES - 1] = '\n';
	big[YDOC_MAX_BYTES + 1] = '\0';
	struct ydoc *d = NULL;
	char err[ERRSZ] = "";
	int r = ydoc_load(big, YDOC_MAX_BYTES, "big.yml", &d, err, sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_str_eq(ydoc_str(d, ydoc_map_get(d, ydoc_root(d), "a")), "1");
	ydoc_free(d);
	d = (struct ydoc *)1;
	r = ydoc_load(big, YDOC_MAX_BYTES + 1, "big.yml", &d, err, sizeof(err));
	ck_assert_int_eq(r, -EFBIG);
	ck_assert_ptr_null(d);
	ck_assert_str_eq(err, "big.yml: file is larger than 1048576 bytes");
	free(big);
}
END_TEST

START_TEST(test_alias_bomb)
{
	const char *bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
			   "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
			   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
			   "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
			   "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
			   "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
			   "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
			   "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
			   "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
	/* 10^5 nodes once expanded at d..e: the line of the first node over the limit */
	load_bad(bomb, -EINVAL,
		 "t.yml:5: document too large once aliases are expanded (over 100000 nodes)");
	/* a few aliases well under the limit are fine, and read through */
	struct ydoc *d = load_ok("base: &b {k: v}\none: *b\ntwo: *b\n");
	int root = ydoc_root(d);
	ck_assert_str_eq(ydoc_str(d, ydoc_map_get(d, ydoc_map_get(d, root, "two"), "k")), "v");
	ck_assert(ydoc_equal(d, ydoc_map_get(d, root, "one"), d, ydoc_map_get(d, root, "base")));
	ydoc_free(d);
}
END_TEST

START_TEST(test_recursive_alias)
{
	load_bad("&a [*a]\n", -EINVAL, "t.yml:1: recursive alias");
	/* the line of the node holding the alias: where its anchor is */
	load_bad("top:\n  x: &a\n    - 1\n    - *a\n", -EINVAL, "t.yml:2: recursive alias");
	load_bad("&m {k: *m}\n", -EINVAL, "t.yml:1: recursive alias");
}
END_TEST

START_TEST(test_depth)
{
	char *s = nested(60, "x");
	struct ydoc *d = load_ok(s);
	int n = ydoc_root(d);
	for (int i = 0; i < 60; i++) {
		ck_assert_int_eq(ydoc_kind(d, n), Y_SEQ);
		n = ydoc_seq_at(d, n, 0);
	}
	ck_assert_str_eq(ydoc_str(d, n), "x");
	ydoc_free(d);
	free(s);
	/* block style counts the same */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 60; i++)
		ck_assert_int_eq(buf_printf(&b, "%*sk%d:\n", 2 * i, "", i), 0);
	d = load_ok(b.data);
	ydoc_free(d);
	buf_free(&b);
	static const int deep[] = {65, 100, 5000};
	for (size_t i = 0; i < sizeof(deep) / sizeof(deep[0]); i++) {
		s = nested(deep[i], "x");
		load_bad(s, -EINVAL, "t.yml:1: nesting deeper than 64 levels");
		free(s);
		s = nested(deep[i], "");
		load_bad(s, -EINVAL, "t.yml:1: nesting deeper than 64 levels");
		free(s);
	}
	/* depth reached through aliases counts too */
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(buf_printf(&b, "a: &a %s\n", s = nested(40, "x")), 0);
	free(s);
	ck_assert_int_eq(buf_printf(&b, "b: %s\n", s = nested(40, "*a")), 0);
	free(s);
	load_bad(b.data, -EINVAL, "t.yml:");
	buf_free(&b);
}
END_TEST

START_TEST(test_multi_document)
{
	load_bad("a: 1\n---\nb: 2\n", -EINVAL, "t.yml:3: more than one YAML document in the file");
	load_bad("---\na: 1\n---\n- x\n", -EINVAL, "t.yml:4: more than one YAML document");
	/* an explicit document end with nothing after is one document */
	struct ydoc *d = load_ok("---\na: 1\n...\n");
	ck_assert_str_eq(ydoc_str(d, ydoc_map_get(d, ydoc_root(d), "a")), "1");
	ydoc_free(d);
	/* a second document with a syntax error is a syntax error */
	load_bad("a: 1\n---\nb: [\n", -EINVAL, "t.yml:");
}
END_TEST

START_TEST(test_duplicate_keys)
{
	load_bad("a: 1\nb: 2\na: 3\n", -EINVAL, "t.yml:3: duplicate key \"a\" (1 char)");
	load_bad("top:\n  x: 1\n  y: 2\n  x: 2\n", -EINVAL, "t.yml:4: duplicate key \"x\" (1 char)");
	load_bad("- {k: 1, k: 2}\n", -EINVAL, "t.yml:1: duplicate key \"k\" (1 char)");
	/* quoting does not make a different key */
	load_bad("name: a\n'name': b\n", -EINVAL, "t.yml:2: duplicate key \"nam\xe2\x80\xa6\" (4 chars)");
	/* a key with control characters is sanitized in the message */
	load_bad("\"a\\tb\": 1\n\"a\\tb\": 2\n", -EINVAL, "t.yml:2: duplicate key \"a\xe2\x80\xa6\" (3 chars)");
	/* the same key in different mappings is fine */
	struct ydoc *d = load_ok("a: {x: 1}\nb: {x: 2}\nc: [{x: 1}, {x: 2}]\n");
	ydoc_free(d);
}
END_TEST

/* ---- scalars ---- */

START_TEST(test_bool)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
					  "YES",  "on",   "On",   "ON"};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No",
					 "NO",    "off",   "Off",   "OFF"};
	static const char *const bad[] = {"1",      "0",      "maybe", "truex", "'true'", "\"yes\"",
					  "[true]", "{a: b}", "tru",   "''",    "null",   "~"};
	char y[64];
	bool v;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		ck_assert_int_eq(fmt(y, sizeof(y), "v: %s\n", yes[i]), 0);
		struct ydoc *d = load_ok(y);
		v = false;
		ck_assert_msg(ydoc_bool(d, ydoc_map_get(d, ydoc_root(d), "v"), &v) == 0, "%s",
			      yes[i]);
		ck_assert_msg(v, "%s", yes[i]);
		ydoc_free(d);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		ck_assert_int_eq(fmt(y, sizeof(y), "v: %s\n", no[i]), 0);
		struct ydoc *d = load_ok(y);
		v = true;
		ck_assert_msg(ydoc_bool(d, ydoc_map_get(d, ydoc_root(d), "v"), &v) == 0, "%s",
			      no[i]);
		ck_assert_msg(!v, "%s", no[i]);
		ydoc_free(d);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(fmt(y, sizeof(y), "v: %s\n", bad[i]), 0);
		struct ydoc *d = load_ok(y);
		v = true;
		ck_assert_msg(ydoc_bool(d, ydoc_map_get(d, ydoc_root(d), "v"), &v) == -EINVAL, "%s",
			      bad[i]);
		ck_assert_msg(v, "%s: *out written on failure", bad[i]);
		ydoc_free(d);
	}
	ck_assert_int_eq(ydoc_bool(NULL, 0, &v), -EINVAL);
}
END_TEST

START_TEST(test_int)
{
	struct ydoc *d = load_ok("a: 42\nb: -7\nc: 9223372036854775807\nd: -9223372036854775808\n"
				 "e: 9223372036854775808\nf: '5'\ng: 0x10\nh: 1.5\ni: 12abc\n"
				 "j: [1]\nk: 0\nl: +3\nm:\nn: 1_000\n");
	int root = ydoc_root(d);
	long long v = 0;
#define GET(k) ydoc_map_get(d, root, k)
	ck_assert_int_eq(ydoc_int(d, GET("a"), &v), 0);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(ydoc_int(d, GET("b"), &v), 0);
	ck_assert_int_eq(v, -7);
	ck_assert_int_eq(ydoc_int(d, GET("c"), &v), 0);
	ck_assert(v == INT64_MAX);
	ck_assert_int_eq(ydoc_int(d, GET("d"), &v), 0);
	ck_assert(v == INT64_MIN);
	ck_assert_int_eq(ydoc_int(d, GET("k"), &v), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(ydoc_int(d, GET("l"), &v), 0);
	ck_assert_int_eq(v, 3);
	v = 99;
	ck_assert_int_eq(ydoc_int(d, GET("e"), &v), -ERANGE);
	ck_assert_int_eq(ydoc_int(d, GET("f"), &v), -EINVAL); /* quoted: a string */
	ck_assert_int_eq(ydoc_int(d, GET("g"), &v), -EINVAL);
	ck_assert_int_eq(ydoc_int(d, GET("h"), &v), -EINVAL);
	ck_assert_int_eq(ydoc_int(d, GET("i"), &v), -EINVAL);
	ck_assert_int_eq(ydoc_int(d, GET("j"), &v), -EINVAL);
	ck_assert_int_eq(ydoc_int(d, GET("m"), &v), -EINVAL);
	ck_assert_int_eq(ydoc_int(d, GET("n"), &v), -EINVAL);
	ck_assert_int_eq(ydoc_int(d, GET("absent"), &v), -EINVAL);
	ck_assert_int_eq(v, 99);
#undef GET
	ydoc_free(d);
}
END_TEST

START_TEST(test_is_null)
{
	struct ydoc *d = load_ok("a:\nb: ~\nc: null\nd: Null\ne: NULL\nf: 'null'\ng: nULL\n"
				 "h: ''\ni: x\nj: []\nk: {}\nl: \"~\"\n");
	int root = ydoc_root(d);
	static const char *const nulls[] = {"a", "b", "c", "d", "e"};
	static const char *const not_nulls[] = {"f", "g", "h", "i", "j", "k", "l"};
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		ck_assert_msg(ydoc_is_null(d, ydoc_map_get(d, root, nulls[i])), "%s", nulls[i]);
	for (size_t i = 0; i < sizeof(not_nulls) / sizeof(not_nulls[0]); i++)
		ck_assert_msg(!ydoc_is_null(d, ydoc_map_get(d, root, not_nulls[i])), "%s",
			      not_nulls[i]);
	/* a missing key: node 0 */
	ck_assert(ydoc_is_null(d, ydoc_map_get(d, root, "absent")));
	ck_assert(ydoc_is_null(d, 0));
	ydoc_free(d);
}
END_TEST

START_TEST(test_err_format)
{
	struct ydoc *d = load_ok("a: 1\nb:\n  c: 2\n");
	int c = ydoc_map_get(d, ydoc_map_get(d, ydoc_root(d), "b"), "c");
	char err[ERRSZ];
	ck_assert_int_eq(ydoc_err(d, c, "b.c", err, sizeof(err), "must be %s", "odd"), -EINVAL);
	ck_assert_str_eq(err, "t.yml:3: b.c: must be odd");
	ck_assert_int_eq(ydoc_err(d, c, "", err, sizeof(err), "bad"), -EINVAL);
	ck_assert_str_eq(err, "t.yml:3: bad");
	ck_assert_int_eq(ydoc_err(d, c, NULL, err, sizeof(err), "bad %d", 7), -EINVAL);
	ck_assert_str_eq(err, "t.yml:3: bad 7");
	ck_assert_int_eq(ydoc_err(d, 0, "x", err, sizeof(err), "missing"), -EINVAL);
	ck_assert_str_eq(err, "t.yml:1: x: missing");
	ydoc_free(d);
}
END_TEST

/* ---- equality ---- */

static bool eq_text(const char *a, const char *b)
{
	struct ydoc *da = load_ok(a), *db = load_ok(b);
	bool r = ydoc_equal(da, ydoc_root(da), db, ydoc_root(db));
	ck_assert_msg(r == ydoc_equal(db, ydoc_root(db), da, ydoc_root(da)),
		      "ydoc_equal is not symmetric for:\n%s\n--\n%s", a, b);
	ydoc_free(da);
	ydoc_free(db);
	return r;
}

START_TEST(test_equal)
{
	ck_assert(eq_text("a: 1\nb: [x, y]\n", "a: 1\nb: [x, y]\n"));
	/* style and key order do not matter */
	ck_assert(eq_text("a: 1\nb:\n  - x\n  - y\n", "{b: [x, y], a: 1}\n"));
	ck_assert(eq_text("a: 'yes'\n", "a: yes\n"));
	ck_assert(eq_text("a: \"x\"\n", "a: x\n"));
	ck_assert(eq_text("# comment\na: |\n  t\n", "a: \"t\\n\"\n"));
	ck_assert(eq_text("a: &x {k: v}\nb: *x\n", "a: {k: v}\nb: {k: v}\n"));
	ck_assert(eq_text("", ""));
	/* differences */
	ck_assert(!eq_text("a: 1\n", "a: 2\n"));
	ck_assert(!eq_text("a: 1\n", "b: 1\n"));
	ck_assert(!eq_text("a: 1\n", "a: 1\nb: 2\n"));
	ck_assert(!eq_text("[x, y]\n", "[y, x]\n"));
	ck_assert(!eq_text("[x]\n", "[x, x]\n"));
	ck_assert(!eq_text("a: [x]\n", "a: x\n"));
	ck_assert(!eq_text("a: {x: 1}\n", "a: [x]\n"));
	ck_assert(!eq_text("a: {x: 1}\n", "a: {x: 1, y: 2}\n"));
	ck_assert(!eq_text("a: 1\n", ""));
	ck_assert(!eq_text("a: ''\n", "a: ' '\n"));
	/* subtrees of one document */
	struct ydoc *d = load_ok("p: {k: [1, 2]}\nq: {k: [1, 2]}\nr: {k: [1, 3]}\n");
	int root = ydoc_root(d);
	ck_assert(ydoc_equal(d, ydoc_map_get(d, root, "p"), d, ydoc_map_get(d, root, "q")));
	ck_assert(!ydoc_equal(d, ydoc_map_get(d, root, "p"), d, ydoc_map_get(d, root, "r")));
	ydoc_free(d);
}
END_TEST

/* ---- emit ---- */

/* Emit d's root, load the text back, and check it is equal and keeps each scalar's meaning.
 * Returns the emitted text (caller frees). */
static char *roundtrip(const char *y)
{
	struct ydoc *d = load_ok(y), *e = NULL;
	char *out = NULL, err[ERRSZ];
	size_t len = 0;
	ck_assert_int_eq(ydoc_emit(d, ydoc_root(d), &out, &len), 0);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(len, strlen(out));
	int r = ydoc_load(out, len, "emitted.yml", &e, err, sizeof(err));
	ck_assert_msg(r == 0, "emitted text does not load (%s):\n%s", err, out);
	ck_assert_msg(ydoc_equal(d, ydoc_root(d), e, ydoc_root(e)),
		      "round trip changed the document:\n%s\n-- became --\n%s", y, out);
	ydoc_free(e);
	ydoc_free(d);
	return out;
}

START_TEST(test_emit_roundtrip)
{
	const char *y = "plain: text\n"
			"yes_str: 'yes'\n"
			"no_str: \"no\"\n"
			"on_str: 'on'\n"
			"bool: true\n"
			"num_str: '123'\n"
			"num: 123\n"
			"float_str: '1.5'\n"
			"null_str: 'null'\n"
			"tilde_str: '~'\n"
			"null: ~\n"
			"empty: ''\n"
			"colon: ': x'\n"
			"colon2: 'a: b'\n"
			"hash: '#not a comment'\n"
			"hash2: 'a #b'\n"
			"dash: '- item'\n"
			"brace: '{x}'\n"
			"star: '*alias'\n"
			"amp: '&anchor'\n"
			"bang: '!tag'\n"
			"pct: '%dir'\n"
			"quote: \"it's \\\"quoted\\\"\"\n"
			"lead: '  two spaces'\n"
			"trail: 'trailing  '\n"
			"multi: \"line one\\nline two\\n\"\n"
			"multi_nonl: \"line one\\nline two\"\n"
			"multi_keep: \"a\\nb\\n\\n\"\n"
			"multi_lead: \"  indented\\nnext\\n\"\n"
			"multi_trail: \"a \\nb\\n\"\n"
			"block: |\n  {\n    \"json\": true\n  }\n"
			"folded: >\n  one\n  two\n"
			"tab: \"a\\tb\"\n"
			"ctl: \"bell\\x07\"\n"
			"utf8: 'é ü 日本'\n"
			"'key: with colon': 1\n"
			"'yes': key that is a bool word\n"
			"'': empty key\n"
			"list:\n"
			"  - 'yes'\n"
			"  - 123\n"
			"  - \"multi\\nline\"\n"
			"  - {k: v, 'n': '1'}\n"
			"  - []\n"
			"  - {}\n"
			"  - [a, [b, c]]\n"
			"anchored: &x {k: v}\n"
			"alias: *x\n";
	char *out = roundtrip(y);
	/* the scalars that must stay strings keep their quotes (else a YAML 1.1 reader would take
	 * them for bools, numbers or nulls) */
	struct ydoc *e = load_ok(out);
	int root = ydoc_root(e);
	static const char *const quoted[] = {"yes_str",   "no_str",   "on_str",    "num_str",
					     "float_str", "null_str", "tilde_str", "empty"};
	for (size_t i = 0; i < sizeof(quoted) / sizeof(quoted[0]); i++) {
		int n = ydoc_map_get(e, root, quoted[i]);
		ck_assert_msg(n && !ydoc_plain(e, n), "%s lost its quotes:\n%s", quoted[i], out);
		bool b;
		long long v;
		ck_assert_int_eq(ydoc_bool(e, n, &b), -EINVAL);
		ck_assert_int_eq(ydoc_int(e, n, &v), -EINVAL);
		ck_assert(!ydoc_is_null(e, n));
	}
	bool b = false;
	long long v = 0;
	ck_assert_int_eq(ydoc_bool(e, ydoc_map_get(e, root, "bool"), &b), 0);
	ck_assert(b);
	ck_assert_int_eq(ydoc_int(e, ydoc_map_get(e, root, "num"), &v), 0);
	ck_assert_int_eq(v, 123);
	ck_assert(ydoc_is_null(e, ydoc_map_get(e, root, "null")));
	ck_assert_str_eq(ydoc_str(e, ydoc_map_get(e, root, "multi")), "line one\nline two\n");
	ck_assert_str_eq(ydoc_str(e, ydoc_map_get(e, root, "multi_nonl")), "line one\nline two");
	ck_assert_str_eq(ydoc_str(e, ydoc_map_get(e, root, "multi_keep")), "a\nb\n\n");
	ck_assert_str_eq(ydoc_str(e, ydoc_map_get(e, root, "multi_lead")), "  indented\nnext\n");
	ck_assert_str_eq(ydoc_str(e, ydoc_map_get(e, root, "folded")), "one two\n");
	ck_assert_str_eq(ydoc_str(e, ydoc_map_get(e, root, "utf8")), "é ü 日本");
	ck_assert_str_eq(ydoc_str(e, ydoc_map_get(e, root, "ctl")), "bell\a");
	int list = ydoc_map_get(e, root, "list");
	ck_assert(!ydoc_plain(e, ydoc_seq_at(e, list, 0)));
	ck_assert(ydoc_plain(e, ydoc_seq_at(e, list, 1)));
	/* block style, no document markers */
	ck_assert_ptr_null(strstr(out, "---"));
	ck_assert_ptr_null(strstr(out, "{k"));
	ck_assert_ptr_nonnull(strstr(out, "alias:\n  k: v\n"));
	ydoc_free(e);
	free(out);

	/* other roots */
	free(roundtrip("- a\n- 'yes'\n- [1, 2]\n"));
	out = roundtrip("just a scalar\n");
	ck_assert_str_eq(out, "just a scalar\n");
	free(out);
	free(roundtrip("'123'\n"));
	free(roundtrip("\"multi\\nline\\n\"\n"));
	free(roundtrip("{}\n"));
	free(roundtrip("[]\n"));
	out = roundtrip("type: aws\ncreds:\n  type: access_key\n  access_key: AKIA\n");
	ck_assert_str_eq(out, "type: aws\ncreds:\n  type: access_key\n  access_key: AKIA\n");
	free(out);

	/* node 0 (an empty document) has nothing to emit */
	struct ydoc *d = load_ok("");
	char *o = (char *)1;
	size_t ol = 0;
	ck_assert_int_eq(ydoc_emit(d, 0, &o, &ol), -EINVAL);
	ck_assert_ptr_null(o);
	ydoc_free(d);
}
END_TEST

START_TEST(test_emit_skip)
{
	struct ydoc *d =
		load_ok("name: aws-dev\ntype: aws\ncreds:\n  name: inner\n  type: default\n"
			"tags: [name]\n");
	char *out = NULL, err[ERRSZ];
	size_t len = 0;
	ck_assert_int_eq(ydoc_emit_skip(d, ydoc_root(d), "name", &out, &len), 0);
	ck_assert_str_eq(out, "type: aws\ncreds:\n  name: inner\n  type: default\ntags:\n- name\n");
	ck_assert_uint_eq(len, strlen(out));
	struct ydoc *e = NULL;
	ck_assert_int_eq(ydoc_load(out, len, "e.yml", &e, err, sizeof(err)), 0);
	int root = ydoc_root(e);
	ck_assert_int_eq(ydoc_map_get(e, root, "name"), 0);
	ck_assert_uint_eq(ydoc_len(e, root), 3);
	/* equal to the original without that key */
	struct ydoc *want =
		load_ok("type: aws\ncreds: {name: inner, type: default}\ntags: [name]\n");
	ck_assert(ydoc_equal(want, ydoc_root(want), e, root));
	ydoc_free(want);
	ydoc_free(e);
	free(out);
	/* a skip key that is absent changes nothing; NULL is ydoc_emit */
	char *a = NULL, *b2 = NULL;
	size_t al = 0, bl = 0;
	ck_assert_int_eq(ydoc_emit_skip(d, ydoc_root(d), "absent", &a, &al), 0);
	ck_assert_int_eq(ydoc_emit(d, ydoc_root(d), &b2, &bl), 0);
	ck_assert_str_eq(a, b2);
	ck_assert_int_eq(ydoc_emit_skip(d, ydoc_root(d), NULL, &out, &len), 0);
	ck_assert_str_eq(out, b2);
	free(out);
	free(a);
	free(b2);
	/* skipping every key leaves an empty mapping */
	ydoc_free(d);
	d = load_ok("name: x\n");
	ck_assert_int_eq(ydoc_emit_skip(d, ydoc_root(d), "name", &out, &len), 0);
	ck_assert_int_eq(ydoc_load(out, len, "e.yml", &e, err, sizeof(err)), 0);
	ck_assert_int_eq(ydoc_kind(e, ydoc_root(e)), Y_MAP);
	ck_assert_uint_eq(ydoc_len(e, ydoc_root(e)), 0);
	ydoc_free(e);
	free(out);
	ydoc_free(d);
}
END_TEST

/* Explicit tags are refused at load: the document API can't tell `!!str yes` from `yes`, so
 * emitting or reading such a value would silently change its type. Quoting is the way. */
START_TEST(test_tags_refused)
{
	static const char *const docs[] = {"a: !!str yes\n", "a: 1\nb: !!int 123\n",
					   "a: !custom {x: 1}\n", "a: 1\nb: 2\nc: !!seq [1]\n"};
	static const int lines[] = {1, 2, 1, 3};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		char err[256], want[64];
		struct ydoc *d = NULL;
		ck_assert_int_eq(ydoc_load(docs[i], strlen(docs[i]), "t.yml", &d, err, sizeof(err)),
				 -EINVAL);
		ck_assert_ptr_null(d);
		snprintf(want, sizeof(want), "t.yml:%d: explicit YAML tags", lines[i]);
		ck_assert_msg(strstr(err, want), "%s", err);
	}
	/* a quoted value keeps its type through emit */
	char *out = roundtrip("a: 'yes'\nb: \"123\"\nc: 'null'\n");
	struct ydoc *e = load_ok(out);
	int root = ydoc_root(e);
	bool b;
	long long v;
	ck_assert_msg(ydoc_bool(e, ydoc_map_get(e, root, "a"), &b) == -EINVAL, "%s", out);
	ck_assert_msg(ydoc_int(e, ydoc_map_get(e, root, "b"), &v) == -EINVAL, "%s", out);
	ck_assert_msg(!ydoc_is_null(e, ydoc_map_get(e, root, "c")), "%s", out);
	ydoc_free(e);
	free(out);
}
END_TEST

Suite *ydoc_suite(void)
{
	Suite *s = suite_create("ydoc");
	TCase *load = tcase_create("load");
	TCase *scalars = tcase_create("scalars");
	TCase *emit = tcase_create("emit");
	TCase *tcs[] = {load, scalars, emit};
	for (size_t i = 0; i < sizeof(tcs) / sizeof(tcs[0]); i++) {
		tcase_set_timeout(tcs[i], 30);
		suite_add_tcase(s, tcs[i]);
	}
	tcase_add_test(load, test_load_valid);
	tcase_add_test(load, test_empty_doc);
	tcase_add_test(load, test_syntax_errors);
	tcase_add_test(load, test_nul_bytes);
	tcase_add_test(load, test_size_limit);
	tcase_add_test(load, test_alias_bomb);
	tcase_add_test(load, test_recursive_alias);
	tcase_add_test(load, test_depth);
	tcase_add_test(load, test_multi_document);
	tcase_add_test(load, test_duplicate_keys);
	tcase_add_test(scalars, test_bool);
	tcase_add_test(scalars, test_int);
	tcase_add_test(scalars, test_is_null);
	tcase_add_test(scalars, test_err_format);
	tcase_add_test(scalars, test_equal);
	tcase_add_test(emit, test_emit_roundtrip);
	tcase_add_test(emit, test_emit_skip);
	tcase_add_test(emit, test_tags_refused);
	return s;
}
