/* Unit tests of lib/util: the capped buffer, fmt's truncation report, the integer parser,
 * the name rule, sanitizing, and the time helpers. */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../lib/util.h"
#include "suites.h"

/* ---- buf ---- */

START_TEST(test_buf_append_cap)
{
	struct buf b;
	buf_init(&b, 10);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(buf_append(&b, "hello", 5), 0);
	ck_assert_int_eq(buf_append(&b, "world", 5), 0);
	ck_assert_uint_eq(b.len, 10);
	ck_assert_str_eq(b.data, "helloworld");
	/* past the limit: -EFBIG and nothing changes */
	ck_assert_int_eq(buf_append(&b, "!", 1), -EFBIG);
	ck_assert_uint_eq(b.len, 10);
	ck_assert_str_eq(b.data, "helloworld");
	ck_assert_int_eq(buf_append(&b, "", 0), 0);
	ck_assert_int_eq(buf_printf(&b, "%d", 1), -EFBIG);
	ck_assert_uint_eq(b.len, 10);
	ck_assert_int_eq(buf_append(&b, "x", SIZE_MAX), -EFBIG);
	ck_assert_uint_eq(b.len, 10);
	buf_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	buf_free(&b); /* twice is fine */

	/* a single append larger than the limit fails whole */
	buf_init(&b, 4);
	ck_assert_int_eq(buf_append(&b, "abcde", 5), -EFBIG);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(buf_append(&b, "abcd", 4), 0);
	ck_assert_str_eq(b.data, "abcd");
	buf_free(&b);

	/* limit 0 holds only the empty string */
	buf_init(&b, 0);
	ck_assert_int_eq(buf_append(&b, "", 0), 0);
	ck_assert_str_eq(b.data, "");
	ck_assert_int_eq(buf_append(&b, "a", 1), -EFBIG);
	buf_free(&b);

	/* growth over many appends keeps content and termination */
	buf_init(&b, 100000);
	for (int i = 0; i < 10000; i++)
		ck_assert_int_eq(buf_append(&b, "0123456789", 10), 0);
	ck_assert_uint_eq(b.len, 100000);
	ck_assert_int_eq(b.data[b.len], '\0');
	ck_assert_int_eq(memcmp(b.data + 99990, "0123456789", 10), 0);
	ck_assert_int_eq(buf_append(&b, "x", 1), -EFBIG);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_printf_set_steal)
{
	struct buf b;
	buf_init(&b, 4096);
	ck_assert_int_eq(buf_printf(&b, "%s=%d;", "a", 1), 0);
	ck_assert_int_eq(buf_printf(&b, "%s", ""), 0);
	ck_assert_int_eq(buf_printf(&b, "%03d|%x", 7, 255), 0);
	ck_assert_str_eq(b.data, "a=1;007|ff");
	size_t base = b.len;
	/* longer than buf_printf's stack buffer */
	char big[2000];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(buf_printf(&b, "<%s>", big), 0);
	ck_assert_uint_eq(b.len, base + 2 + 1999);
	ck_assert_int_eq(b.data[base], '<');
	ck_assert_int_eq(b.data[b.len - 1], '>');
	/* ... and over the cap through the long path too */
	ck_assert_int_eq(buf_printf(&b, "%s%s%s", big, big, big), -EFBIG);
	ck_assert_uint_eq(b.len, base + 2 + 1999);
	/* set replaces */
	ck_assert_int_eq(buf_set(&b, "new", 3), 0);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_str_eq(b.data, "new");
	ck_assert_int_eq(buf_set(&b, "", 0), 0);
	ck_assert_str_eq(b.data, "");
	/* steal moves the data out and resets */
	ck_assert_int_eq(buf_append(&b, "bin\0ary", 7), 0);
	size_t len = 0;
	char *p = buf_steal(&b, &len);
	ck_assert_uint_eq(len, 7);
	ck_assert_int_eq(memcmp(p, "bin\0ary", 8), 0);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.limit, 4096);
	free(p);
	/* the buffer is usable again after steal */
	ck_assert_int_eq(buf_append(&b, "again", 5), 0);
	ck_assert_str_eq(b.data, "again");
	buf_free(&b);
	/* stealing an empty buffer gives NULL */
	buf_init(&b, 10);
	len = 99;
	ck_assert_ptr_null(buf_steal(&b, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert_ptr_null(buf_steal(&b, NULL));
	/* set past the limit */
	ck_assert_int_eq(buf_set(&b, "0123456789a", 11), -EFBIG);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_pwrite)
{
	struct buf b;
	buf_init(&b, 64);
	/* a write past the end zero-fills the gap */
	ck_assert_int_eq(buf_pwrite(&b, "xyz", 3, 5), 0);
	ck_assert_uint_eq(b.len, 8);
	ck_assert_int_eq(memcmp(b.data, "\0\0\0\0\0xyz\0", 9), 0);
	/* overwriting inside keeps the length */
	ck_assert_int_eq(buf_pwrite(&b, "AB", 2, 1), 0);
	ck_assert_uint_eq(b.len, 8);
	ck_assert_int_eq(memcmp(b.data, "\0AB\0\0xyz\0", 9), 0);
	/* overlapping the end extends it */
	ck_assert_int_eq(buf_pwrite(&b, "1234", 4, 6), 0);
	ck_assert_uint_eq(b.len, 10);
	ck_assert_int_eq(memcmp(b.data, "\0AB\0\0x1234\0", 11), 0);
	/* an empty write at an offset past the end extends with zeros */
	ck_assert_int_eq(buf_pwrite(&b, "", 0, 12), 0);
	ck_assert_uint_eq(b.len, 12);
	ck_assert_int_eq(memcmp(b.data + 10, "\0\0\0", 3), 0);
	/* up to the limit exactly, then past it */
	ck_assert_int_eq(buf_pwrite(&b, "E", 1, 63), 0);
	ck_assert_uint_eq(b.len, 64);
	for (size_t i = 12; i < 63; i++)
		ck_assert_int_eq(b.data[i], 0);
	ck_assert_int_eq(b.data[63], 'E');
	ck_assert_int_eq(b.data[64], '\0');
	ck_assert_int_eq(buf_pwrite(&b, "F", 1, 64), -EFBIG);
	ck_assert_int_eq(buf_pwrite(&b, "FG", 2, 63), -EFBIG);
	ck_assert_int_eq(buf_pwrite(&b, "", 0, 65), -EFBIG);
	ck_assert_int_eq(buf_pwrite(&b, "F", 1, SIZE_MAX), -EFBIG);
	ck_assert_int_eq(buf_pwrite(&b, "F", SIZE_MAX, 1), -EFBIG);
	ck_assert_uint_eq(b.len, 64);
	ck_assert_int_eq(b.data[63], 'E');
	buf_free(&b);
	/* stale bytes beyond len never reappear: truncate down, then write past the end */
	buf_init(&b, 64);
	ck_assert_int_eq(buf_append(&b, "abcdefgh", 8), 0);
	ck_assert_int_eq(buf_truncate(&b, 2), 0);
	ck_assert_int_eq(buf_pwrite(&b, "Z", 1, 6), 0);
	ck_assert_uint_eq(b.len, 7);
	ck_assert_int_eq(memcmp(b.data, "ab\0\0\0\0Z\0", 8), 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_truncate)
{
	struct buf b;
	buf_init(&b, 32);
	/* grow an empty buffer: zeros */
	ck_assert_int_eq(buf_truncate(&b, 4), 0);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_int_eq(memcmp(b.data, "\0\0\0\0\0", 5), 0);
	ck_assert_int_eq(buf_set(&b, "abcdef", 6), 0);
	/* shrink */
	ck_assert_int_eq(buf_truncate(&b, 3), 0);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_str_eq(b.data, "abc");
	/* grow again: the dropped bytes come back as zeros, not as "def" */
	ck_assert_int_eq(buf_truncate(&b, 6), 0);
	ck_assert_uint_eq(b.len, 6);
	ck_assert_int_eq(memcmp(b.data, "abc\0\0\0\0", 7), 0);
	/* same size is a no-op */
	ck_assert_int_eq(buf_truncate(&b, 6), 0);
	ck_assert_uint_eq(b.len, 6);
	/* to the limit, past the limit */
	ck_assert_int_eq(buf_truncate(&b, 32), 0);
	ck_assert_uint_eq(b.len, 32);
	ck_assert_int_eq(buf_truncate(&b, 33), -EFBIG);
	ck_assert_uint_eq(b.len, 32);
	ck_assert_int_eq(buf_truncate(&b, 0), 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(b.data, "");
	buf_free(&b);
	/* truncating a never-allocated buffer to 0 */
	buf_init(&b, 8);
	ck_assert_int_eq(buf_truncate(&b, 0), 0);
	ck_assert_uint_eq(b.len, 0);
	buf_free(&b);
}
END_TEST

/* ---- fmt ---- */

START_TEST(test_fmt)
{
	char d[8];
	ck_assert_int_eq(fmt(d, sizeof(d), "%s", "1234567"), 0);
	ck_assert_str_eq(d, "1234567");
	ck_assert_int_eq(fmt(d, sizeof(d), "%s", "12345678"), -ENAMETOOLONG);
	ck_assert_str_eq(d, "1234567");
	ck_assert_int_eq(fmt(d, sizeof(d), "%d-%d", 1234, 56789), -ENAMETOOLONG);
	ck_assert_str_eq(d, "1234-56");
	ck_assert_int_eq(fmt(d, sizeof(d), "%s", ""), 0);
	ck_assert_str_eq(d, "");
	ck_assert_int_eq(fmt(d, 1, "%s", "x"), -ENAMETOOLONG);
	ck_assert_str_eq(d, "");
	ck_assert_int_eq(fmt(d, 1, "%s", ""), 0);
	char *s = xasprintf("%s/%d", "dir", 42);
	ck_assert_str_eq(s, "dir/42");
	free(s);
	char big[5000];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	s = xasprintf("[%s]", big);
	ck_assert_uint_eq(strlen(s), 5000 + 1);
	free(s);
}
END_TEST

START_TEST(test_xalloc)
{
	char *p = xstrdup("abc");
	ck_assert_str_eq(p, "abc");
	free(p);
	p = xstrdup(NULL);
	ck_assert_str_eq(p, "");
	free(p);
	p = xstrndup("abcdef", 3);
	ck_assert_str_eq(p, "abc");
	free(p);
	p = xstrndup("ab", 10);
	ck_assert_str_eq(p, "ab");
	free(p);
	int *z = xcalloc(16, sizeof(int));
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(z[i], 0);
	z = xrealloc(z, 32 * sizeof(int));
	ck_assert_int_eq(z[15], 0);
	free(z);
	/* zero sizes still give a pointer to free */
	free(xmalloc(0));
	free(xcalloc(0, 0));
}
END_TEST

/* ---- num ---- */

START_TEST(test_num_parse)
{
	long long v = 0;
	ck_assert_int_eq(num_parse_ll("0", 0, 10, &v), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(num_parse_ll("10", 0, 10, &v), 0);
	ck_assert_int_eq(v, 10);
	ck_assert_int_eq(num_parse_ll("-5", -5, 5, &v), 0);
	ck_assert_int_eq(v, -5);
	ck_assert_int_eq(num_parse_ll("007", 0, 10, &v), 0); /* base 10, not octal */
	ck_assert_int_eq(v, 7);
	ck_assert_int_eq(num_parse_ll("9223372036854775807", LLONG_MIN, LLONG_MAX, &v), 0);
	ck_assert(v == LLONG_MAX);
	ck_assert_int_eq(num_parse_ll("-9223372036854775808", LLONG_MIN, LLONG_MAX, &v), 0);
	ck_assert(v == LLONG_MIN);
	v = 1234;
	/* range */
	ck_assert_int_eq(num_parse_ll("11", 0, 10, &v), -ERANGE);
	ck_assert_int_eq(num_parse_ll("-1", 0, 10, &v), -ERANGE);
	ck_assert_int_eq(num_parse_ll("9223372036854775808", LLONG_MIN, LLONG_MAX, &v), -ERANGE);
	ck_assert_int_eq(num_parse_ll("-9223372036854775809", LLONG_MIN, LLONG_MAX, &v), -ERANGE);
	ck_assert_int_eq(num_parse_ll("99999999999999999999999", 0, 10, &v), -ERANGE);
	/* junk */
	static const char *const junk[] = {"",    "x",   "12x", "1 ",    "1.0", "0x10",
					   "1e3", "--1", "- 1", "1,000", "١",   "12\n"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		ck_assert_msg(num_parse_ll(junk[i], LLONG_MIN, LLONG_MAX, &v) == -EINVAL,
			      "\"%s\" accepted", junk[i]);
	ck_assert_int_eq(num_parse_ll(NULL, 0, 10, &v), -EINVAL);
	/* *out is untouched on failure */
	ck_assert_int_eq(v, 1234);
}
END_TEST

/* BUG: num_parse_ll accepts leading whitespace (strtoll skips it), so " 5" and "\t5" parse as
 * 5 while "5 " is refused: the whole string is not checked as the header promises. */
START_TEST(test_num_parse_leading_space)
{
	long long v = 0;
	ck_assert_int_eq(num_parse_ll(" 5", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(num_parse_ll("\t5", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(num_parse_ll("\n5", 0, 10, &v), -EINVAL);
}
END_TEST

/* ---- names ---- */

START_TEST(test_name_valid)
{
	char n[64];
	memset(n, 'a', sizeof(n));
	n[50] = '\0';
	ck_assert(name_valid(n));
	n[50] = 'b';
	n[51] = '\0';
	ck_assert(!name_valid(n));
	ck_assert(name_valid("a"));
	ck_assert(name_valid("Z"));
	ck_assert(name_valid("0"));
	ck_assert(name_valid("aws-dev_2"));
	ck_assert(name_valid("-"));
	ck_assert(name_valid("_"));
	ck_assert(name_valid("ABCdef-019_"));
	static const char *const bad[] = {"",  "a b",  "a/b", ".",   "..",  "a.b", "a:b",
					  "é", "a\tb", "a\n", " a",  "a ",  "a+b", "a@b",
					  "~", "a\\b", "*",   "a'b", "\x7f"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!name_valid(bad[i]), "\"%s\" accepted", bad[i]);
	ck_assert(!name_valid(NULL));
}
END_TEST

START_TEST(test_str_sanitize)
{
	char d[32];
	str_sanitize(d, sizeof(d), "plain text ~!");
	ck_assert_str_eq(d, "plain text ~!");
	str_sanitize(d, sizeof(d),
		     "a\nb\rc\td\x01"
		     "e\x7f"
		     "f");
	ck_assert_str_eq(d, "a?b?c?d?e?f");
	str_sanitize(d, sizeof(d), "\xc3\xa9t\xc3\xa9");
	ck_assert_str_eq(d, "??t??");
	/* cut to dstlen - 1 */
	str_sanitize(d, 4, "abcdef");
	ck_assert_str_eq(d, "abc");
	str_sanitize(d, 1, "abc");
	ck_assert_str_eq(d, "");
	/* dstlen 0 writes nothing */
	d[0] = 'X';
	str_sanitize(d, 0, "abc");
	ck_assert_int_eq(d[0], 'X');
	str_sanitize(d, sizeof(d), NULL);
	ck_assert_str_eq(d, "");
	str_sanitize(d, sizeof(d), "");
	ck_assert_str_eq(d, "");
}
END_TEST

START_TEST(test_str_redact)
{
	char d[STR_REDACT_LEN];
	/* at most 3 leading characters, then the length */
	str_redact(d, sizeof(d), "lmbdSECRETkey7f3a9c1e");
	ck_assert_str_eq(d, "\"lmb\xe2\x80\xa6\" (21 chars)");
	ck_assert_ptr_null(strstr(d, "SECRET"));
	str_redact(d, sizeof(d), "abc");
	ck_assert_str_eq(d, "\"abc\" (3 chars)");
	str_redact(d, sizeof(d), "a");
	ck_assert_str_eq(d, "\"a\" (1 char)");
	str_redact(d, sizeof(d), "");
	ck_assert_str_eq(d, "\"\" (0 chars)");
	str_redact(d, sizeof(d), NULL);
	ck_assert_str_eq(d, "(none)");
	/* control characters, quotes, backslashes and non-ASCII end the shown prefix */
	str_redact(d, sizeof(d), "a\nb-secret");
	ck_assert_str_eq(d, "\"a\xe2\x80\xa6\" (10 chars)");
	str_redact(d, sizeof(d), "\x1b[31mred");
	ck_assert_str_eq(d, "\"\xe2\x80\xa6\" (8 chars)");
	str_redact(d, sizeof(d), "x\"y");
	ck_assert_str_eq(d, "\"x\xe2\x80\xa6\" (3 chars)");
	str_redact(d, sizeof(d), "\\\\");
	ck_assert_str_eq(d, "\"\xe2\x80\xa6\" (2 chars)");
	/* the length counts UTF-8 characters, and no partial character is shown */
	str_redact(d, sizeof(d), "\xc3\xa9t\xc3\xa9");
	ck_assert_str_eq(d, "\"\xe2\x80\xa6\" (3 chars)");
	/* bounded whatever the input: a megabyte shows as 3 characters and a number */
	char *big = xmalloc(1 << 20);
	memset(big, 'k', (1 << 20) - 1);
	big[(1 << 20) - 1] = '\0';
	str_redact(d, sizeof(d), big);
	ck_assert_str_eq(d, "\"kkk\xe2\x80\xa6\" (1048575 chars)");
	free(big);
	/* a small buffer truncates, never overflows */
	char tiny[5];
	str_redact(tiny, sizeof(tiny), "abcdef");
	ck_assert_str_eq(tiny, "\"abc");
	tiny[0] = 'X';
	str_redact(tiny, 0, "abc");
	ck_assert_int_eq(tiny[0], 'X');
}
END_TEST

START_TEST(test_str_near)
{
	static const char *const words[] = {"regions", "projects", "creds", "type", NULL};
	char d[STR_REDACT_KEY_LEN];
	ck_assert_str_eq(str_near("region", words), "regions");
	ck_assert_str_eq(str_near("projetcs", words), "projects");
	ck_assert_str_eq(str_near("cred", words), "creds");
	/* nothing near: a secret-looking key never gets a suggestion */
	ck_assert_ptr_null(str_near("lmbdSECRETkey7f3a9c1e", words));
	ck_assert_ptr_null(str_near("xy", words));
	ck_assert_ptr_null(str_near("", words));
	ck_assert_ptr_null(str_near(NULL, words));
	ck_assert_ptr_null(str_near("region", NULL));
	str_redact_key(d, sizeof(d), "region", words);
	ck_assert_str_eq(d, "\"reg\xe2\x80\xa6\" (6 chars) (did you mean regions?)");
	str_redact_key(d, sizeof(d), "lmbdSECRETkey7f3a9c1e", words);
	ck_assert_str_eq(d, "\"lmb\xe2\x80\xa6\" (21 chars)");
}
END_TEST

/* ---- time ---- */

START_TEST(test_time)
{
	char d[32];
	time_iso(0, d, sizeof(d));
	ck_assert_str_eq(d, "1970-01-01T00:00:00Z");
	time_iso(1795860000, d, sizeof(d));
	ck_assert_str_eq(d, "2026-11-28T10:00:00Z");
	time_iso(1795860000, d, 21);
	ck_assert_str_eq(d, "2026-11-28T10:00:00Z");
	/* too small: empty, not a partial date */
	time_iso(1795860000, d, 20);
	ck_assert_str_eq(d, "");
	struct timespec a = time_now();
	time_t t = time(NULL);
	ck_assert(a.tv_sec >= t - 2 && a.tv_sec <= t + 2);
	ck_assert(a.tv_nsec >= 0 && a.tv_nsec < 1000000000L);
}
END_TEST

Suite *util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *b = tcase_create("buf");
	TCase *m = tcase_create("misc");
	tcase_set_timeout(b, 30);
	tcase_set_timeout(m, 30);
	suite_add_tcase(s, b);
	suite_add_tcase(s, m);
	tcase_add_test(b, test_buf_append_cap);
	tcase_add_test(b, test_buf_printf_set_steal);
	tcase_add_test(b, test_buf_pwrite);
	tcase_add_test(b, test_buf_truncate);
	tcase_add_test(m, test_fmt);
	tcase_add_test(m, test_xalloc);
	tcase_add_test(m, test_num_parse);
	tcase_add_test(m, test_num_parse_leading_space);
	tcase_add_test(m, test_name_valid);
	tcase_add_test(m, test_str_sanitize);
	tcase_add_test(m, test_str_redact);
	tcase_add_test(m, test_str_near);
	tcase_add_test(m, test_time);
	return s;
}
