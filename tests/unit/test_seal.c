/* Unit tests of cache/seal: the key file (created 0600 with 32 random bytes, refused when
 * readable by others or of the wrong size), the sealed format, authentication (AAD, tampering),
 * rotation through a ring, and the base64 helpers. */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../cache/seal.h"
#include "../../lib/util.h"
#include "helpers.h"
#include "suites.h"

static const char *g_dir;

static void setup(void)
{
	g_dir = tmp_dir("seal");
}

static void teardown(void)
{
	tmp_remove_all();
}

static void path_in(char *dst, const char *name)
{
	ck_assert_int_eq(fmt(dst, PATH_MAX, "%s/%s", g_dir, name), 0);
}

static struct seal_key key_of(const char *name, unsigned char fill)
{
	struct seal_key k;
	memset(&k, 0, sizeof(k));
	ck_assert_int_eq(fmt(k.name, sizeof(k.name), "%s", name), 0);
	for (size_t i = 0; i < SEAL_KEY_LEN; i++)
		k.key[i] = (uint8_t)(fill + i);
	return k;
}

/* Open sealed with ring and aad; on success compare to want (wantlen bytes). */
static void open_ok(const struct seal_ring *ring, const char *aad, const char *sealed,
		    const void *want, size_t wantlen)
{
	char *out = NULL;
	size_t len = 0;
	int r = seal_open(ring, aad, sealed, &out, &len);
	ck_assert_msg(r == 0, "seal_open: %d", r);
	ck_assert_uint_eq(len, wantlen);
	ck_assert_int_eq(memcmp(out, want, wantlen), 0);
	ck_assert_int_eq(out[len], '\0');
	seal_free_secret(out, len);
}

static int open_err(const struct seal_ring *ring, const char *aad, const char *sealed)
{
	char *out = (char *)1;
	size_t len = 0;
	int r = seal_open(ring, aad, sealed, &out, &len);
	ck_assert_msg(r != 0, "opened a value that should not open");
	ck_assert_ptr_null(out);
	return r;
}

/* ---- key file ---- */

START_TEST(test_keyfile_create)
{
	char path[PATH_MAX], tmp[PATH_MAX], err[512] = "";
	struct seal_key k, k2;
	path_in(path, "key");
	ck_assert_int_eq(seal_keyfile(path, 1, &k, err, sizeof(err)), 0);
	ck_assert_str_eq(k.name, "local");
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(st.st_size, SEAL_KEY_LEN);
	/* the temporary file is gone */
	path_in(tmp, "key.new");
	ck_assert_int_ne(access(tmp, F_OK), 0);
	/* the file holds the key; loading again (without create) gives the same key */
	size_t n = 0;
	char *raw = file_read(path, &n);
	ck_assert_uint_eq(n, SEAL_KEY_LEN);
	ck_assert_int_eq(memcmp(raw, k.key, SEAL_KEY_LEN), 0);
	free(raw);
	ck_assert_int_eq(seal_keyfile(path, 0, &k2, err, sizeof(err)), 0);
	ck_assert_int_eq(memcmp(k.key, k2.key, SEAL_KEY_LEN), 0);
	ck_assert_int_eq(seal_keyfile(path, 1, &k2, err, sizeof(err)), 0);
	ck_assert_int_eq(memcmp(k.key, k2.key, SEAL_KEY_LEN), 0);
	/* a key is random: another file, another key */
	path_in(path, "key2");
	ck_assert_int_eq(seal_keyfile(path, 1, &k2, err, sizeof(err)), 0);
	ck_assert_int_ne(memcmp(k.key, k2.key, SEAL_KEY_LEN), 0);
	/* created 0600 whatever the umask */
	mode_t old = umask(0);
	path_in(path, "key3");
	ck_assert_int_eq(seal_keyfile(path, 1, &k2, err, sizeof(err)), 0);
	umask(old);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
}
END_TEST

START_TEST(test_keyfile_missing)
{
	char path[PATH_MAX], err[512] = "";
	struct seal_key k;
	path_in(path, "absent");
	ck_assert_int_eq(seal_keyfile(path, 0, &k, err, sizeof(err)), -ENOENT);
	ck_assert_int_ne(access(path, F_OK), 0);
	/* a missing directory cannot be created into */
	path_in(path, "no/such/dir/key");
	ck_assert_int_eq(seal_keyfile(path, 1, &k, err, sizeof(err)), -ENOENT);
}
END_TEST

START_TEST(test_keyfile_mode)
{
	char path[PATH_MAX], err[512] = "";
	uint8_t raw[SEAL_KEY_LEN];
	struct seal_key k;
	memset(raw, 7, sizeof(raw));
	path_in(path, "key");
	static const unsigned modes[] = {0644, 0640, 0604, 0660, 0606, 0700 | 0070};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		ck_assert_int_eq(file_write(path, raw, sizeof(raw), modes[i]), 0);
		err[0] = '\0';
		ck_assert_int_eq(seal_keyfile(path, 1, &k, err, sizeof(err)), -EINVAL);
		ck_assert_msg(strstr(err, path) == err, "%s", err);
		ck_assert_msg(strstr(err, "readable by others"), "%s", err);
		char m[16];
		ck_assert_int_eq(fmt(m, sizeof(m), "mode %03o", modes[i]), 0);
		ck_assert_msg(strstr(err, m), "%s", err);
		/* refused, not repaired */
		struct stat st;
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_uint_eq(st.st_mode & 0777, modes[i]);
	}
	/* 0400 is fine */
	ck_assert_int_eq(file_write(path, raw, sizeof(raw), 0400), 0);
	ck_assert_int_eq(seal_keyfile(path, 0, &k, err, sizeof(err)), 0);
	ck_assert_int_eq(memcmp(k.key, raw, SEAL_KEY_LEN), 0);
}
END_TEST

START_TEST(test_keyfile_size)
{
	char path[PATH_MAX], err[512] = "";
	uint8_t raw[SEAL_KEY_LEN + 8];
	struct seal_key k;
	memset(raw, 9, sizeof(raw));
	path_in(path, "key");
	static const size_t sizes[] = {0, 1, SEAL_KEY_LEN - 1, SEAL_KEY_LEN + 1, SEAL_KEY_LEN + 8};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ck_assert_int_eq(file_write(path, raw, sizes[i], 0600), 0);
		err[0] = '\0';
		ck_assert_msg(seal_keyfile(path, 1, &k, err, sizeof(err)) == -EINVAL, "size %zu",
			      sizes[i]);
		ck_assert_msg(strstr(err, "key file must hold exactly 32 bytes"), "%s", err);
		/* never overwritten */
		size_t n = 99;
		free(file_read(path, &n));
		ck_assert_uint_eq(n, sizes[i]);
	}
	/* a symbolic link is not followed */
	char target[PATH_MAX], link[PATH_MAX];
	path_in(target, "real");
	path_in(link, "link");
	ck_assert_int_eq(file_write(target, raw, SEAL_KEY_LEN, 0600), 0);
	ck_assert_int_eq(symlink(target, link), 0);
	ck_assert_int_ne(seal_keyfile(link, 1, &k, err, sizeof(err)), 0);
	/* a directory is not a key */
	path_in(path, "dir");
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_ne(seal_keyfile(path, 1, &k, err, sizeof(err)), 0);
}
END_TEST

/* ---- sealing ---- */

START_TEST(test_seal_roundtrip)
{
	char path[PATH_MAX], err[512];
	struct seal_ring ring = {.n = 1};
	path_in(path, "key");
	ck_assert_int_eq(seal_keyfile(path, 1, &ring.keys[0], err, sizeof(err)), 0);
	const char *plain = "type: aws\ncreds:\n  secret_key: s3cr3t\n";
	char *s = seal_seal(&ring, "b/main/aws/config", plain, strlen(plain));
	ck_assert_ptr_nonnull(s);
	ck_assert_msg(strncmp(s, "enc:aes:local:", 14) == 0, "%s", s);
	ck_assert_ptr_null(strstr(s, "s3cr3t"));
	/* the payload is base64 of nonce(12) || ciphertext || tag(16) */
	uint8_t *raw = NULL;
	size_t rawlen = 0;
	ck_assert_int_eq(b64_decode(s + 14, &raw, &rawlen), 0);
	ck_assert_uint_eq(rawlen, 12 + strlen(plain) + 16);
	ck_assert_ptr_null(memmem(raw, rawlen, "s3cr3t", 6));
	free(raw);
	for (const char *p = s + 14; *p; p++)
		ck_assert_msg(
			strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
			       *p),
			"not base64: %s", s);
	open_ok(&ring, "b/main/aws/config", s, plain, strlen(plain));
	/* a fresh nonce each time */
	char *s2 = seal_seal(&ring, "b/main/aws/config", plain, strlen(plain));
	ck_assert_str_ne(s, s2);
	open_ok(&ring, "b/main/aws/config", s2, plain, strlen(plain));
	free(s2);
	free(s);
	/* binary data, empty data, no AAD */
	const char bin[] = {'a', '\0', 'b', '\xff', '\0'};
	s = seal_seal(&ring, NULL, bin, sizeof(bin));
	open_ok(&ring, NULL, s, bin, sizeof(bin));
	free(s);
	s = seal_seal(&ring, "k", "", 0);
	ck_assert_ptr_nonnull(s);
	open_ok(&ring, "k", s, "", 0);
	free(s);
	/* a large value */
	size_t big = 300000;
	char *p = xmalloc(big);
	for (size_t i = 0; i < big; i++)
		p[i] = (char)(i * 31);
	s = seal_seal(&ring, "big", p, big);
	open_ok(&ring, "big", s, p, big);
	free(s);
	free(p);
	/* the key's name is the format's third field */
	struct seal_ring named = {.n = 1};
	named.keys[0] = key_of("k1", 1);
	s = seal_seal(&named, "x", "v", 1);
	ck_assert_msg(strncmp(s, "enc:aes:k1:", 11) == 0, "%s", s);
	free(s);
	seal_free_secret(NULL, 0);
}
END_TEST

START_TEST(test_seal_aad)
{
	struct seal_ring ring = {.n = 1};
	ring.keys[0] = key_of("local", 3);
	char *s = seal_seal(&ring, "b/main/aws/config", "secret", 6);
	ck_assert_int_eq(open_err(&ring, "b/main/aws/configX", s), -EACCES);
	ck_assert_int_eq(open_err(&ring, "b/main/lambda/config", s), -EACCES);
	ck_assert_int_eq(open_err(&ring, "", s), -EACCES);
	ck_assert_int_eq(open_err(&ring, NULL, s), -EACCES);
	open_ok(&ring, "b/main/aws/config", s, "secret", 6);
	free(s);
	s = seal_seal(&ring, NULL, "secret", 6);
	ck_assert_int_eq(open_err(&ring, "x", s), -EACCES);
	free(s);
}
END_TEST

/* Decode the payload, let f change it, re-encode into a new sealed string. */
static char *mutate(const char *sealed, size_t at, uint8_t xor_with, int drop)
{
	const char *payload = strrchr(sealed, ':') + 1;
	uint8_t *raw = NULL;
	size_t rawlen = 0;
	ck_assert_int_eq(b64_decode(payload, &raw, &rawlen), 0);
	ck_assert_uint_lt(at, rawlen);
	raw[at] ^= xor_with;
	if (drop)
		rawlen -= (size_t)drop;
	char *b = b64_encode(raw, rawlen);
	char *out = xasprintf("%.*s%s", (int)(payload - sealed), sealed, b);
	free(b);
	free(raw);
	return out;
}

START_TEST(test_seal_tamper)
{
	struct seal_ring ring = {.n = 1};
	ring.keys[0] = key_of("local", 5);
	const char *plain = "access_key: AKIA\nsecret_key: s3cr3t\n";
	size_t n = strlen(plain);
	char *s = seal_seal(&ring, "aad", plain, n);
	/* every region: nonce, ciphertext, tag */
	static const size_t at[] = {0, 11, 12, 20, 12 + 35, 12 + 36, 12 + 36 + 15};
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		char *t = mutate(s, at[i], 0x01, 0);
		ck_assert_msg(open_err(&ring, "aad", t) == -EACCES, "byte %zu", at[i]);
		free(t);
	}
	/* a truncated tag */
	char *t = mutate(s, 0, 0, 1);
	ck_assert_int_eq(open_err(&ring, "aad", t), -EACCES);
	free(t);
	/* unchanged still opens */
	t = mutate(s, 0, 0, 0);
	open_ok(&ring, "aad", t, plain, n);
	free(t);
	/* a wrong key */
	struct seal_ring other = {.n = 1};
	other.keys[0] = key_of("local", 6);
	ck_assert_int_eq(open_err(&other, "aad", s), -EACCES);
	/* an empty ring opens nothing */
	struct seal_ring none = {.n = 0};
	ck_assert_int_eq(open_err(&none, "aad", s), -EACCES);
	free(s);
}
END_TEST

/* "enc:aes:local:" followed by n 'A's and then tail. Caller frees. */
static char *sealed_of(size_t n, const char *tail)
{
	char *a = xmalloc(n + 1);
	memset(a, 'A', n);
	a[n] = '\0';
	char *s = xasprintf("enc:aes:local:%s%s", a, tail);
	free(a);
	return s;
}

START_TEST(test_seal_not_sealed)
{
	struct seal_ring ring = {.n = 1};
	ring.keys[0] = key_of("local", 5);
	static const char *const bad[] = {
		"",
		"plain text",
		"enc:aes:",
		"enc:aes:local",
		"enc:xyz:local:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"ENC:AES:local:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"enc:aes:local:!!!!",
		"enc:aes:local:AAA",
		"enc:aes:local:AAAA", /* 3 bytes: shorter than nonce + tag */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(open_err(&ring, NULL, bad[i]) == -EINVAL, "\"%s\"", bad[i]);
	/* 27 bytes: one short of nonce + tag */
	char *s = sealed_of(36, "");
	ck_assert_int_eq(open_err(&ring, NULL, s), -EINVAL);
	free(s);
	/* 28 bytes (nonce + tag, empty ciphertext) and 30 bytes of zeros have the right shape:
	 * sealed strings that no key opens */
	s = sealed_of(38, "==");
	ck_assert_int_eq(open_err(&ring, NULL, s), -EACCES);
	free(s);
	s = sealed_of(40, "");
	ck_assert_int_eq(open_err(&ring, NULL, s), -EACCES);
	free(s);
}
END_TEST

START_TEST(test_seal_rotation)
{
	struct seal_key k1 = key_of("k1", 10), k2 = key_of("k2", 20), local = key_of("local", 30);
	struct seal_ring r_old = {.n = 2}, r_new = {.n = 3}, r_k2 = {.n = 1};
	r_old.keys[0] = k1;
	r_old.keys[1] = local;
	r_new.keys[0] = k2;
	r_new.keys[1] = k1;
	r_new.keys[2] = local;
	r_k2.keys[0] = k2;
	char *by_local = NULL;
	{
		struct seal_ring r = {.n = 1};
		r.keys[0] = local;
		by_local = seal_seal(&r, "a", "L", 1);
	}
	char *by_k1 = seal_seal(&r_old, "a", "one", 3);
	char *by_k2 = seal_seal(&r_new, "a", "two", 3);
	ck_assert(strncmp(by_k1, "enc:aes:k1:", 11) == 0);
	ck_assert(strncmp(by_k2, "enc:aes:k2:", 11) == 0);
	/* the new ring opens values sealed under any of its keys */
	open_ok(&r_new, "a", by_k1, "one", 3);
	open_ok(&r_new, "a", by_k2, "two", 3);
	open_ok(&r_new, "a", by_local, "L", 1);
	open_ok(&r_old, "a", by_k1, "one", 3);
	ck_assert_int_eq(open_err(&r_old, "a", by_k2), -EACCES);
	ck_assert_int_eq(open_err(&r_k2, "a", by_k1), -EACCES);
	/* the name in the string is ignored: every key of the ring is tried */
	struct seal_ring renamed = {.n = 1};
	renamed.keys[0] = k1;
	ck_assert_int_eq(fmt(renamed.keys[0].name, SEAL_NAME_MAX, "other"), 0);
	open_ok(&renamed, "a", by_k1, "one", 3);
	/* a ring of SEAL_MAX_KEYS keys, the right one last */
	struct seal_ring full = {.n = SEAL_MAX_KEYS};
	for (size_t i = 0; i < SEAL_MAX_KEYS - 1; i++)
		full.keys[i] = key_of("x", (unsigned char)(100 + i));
	full.keys[SEAL_MAX_KEYS - 1] = k2;
	open_ok(&full, "a", by_k2, "two", 3);
	free(by_local);
	free(by_k1);
	free(by_k2);
}
END_TEST

/* ---- keys from base64, base64 ---- */

START_TEST(test_key_from_b64)
{
	uint8_t raw[40];
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(0xf0 ^ (i * 7));
	struct seal_key k;
	char *b = b64_encode(raw, 32);
	ck_assert_uint_eq(strlen(b), 44);
	ck_assert_int_eq(seal_key_from_b64("k1", b, &k), 0);
	ck_assert_str_eq(k.name, "k1");
	ck_assert_int_eq(memcmp(k.key, raw, 32), 0);
	free(b);
	/* sealing with it and opening works */
	struct seal_ring ring = {.n = 1};
	ring.keys[0] = k;
	char *s = seal_seal(&ring, "a", "x", 1);
	open_ok(&ring, "a", s, "x", 1);
	free(s);
	/* not 32 bytes */
	static const size_t lens[] = {0, 1, 16, 24, 31, 33, 40};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		b = b64_encode(raw, lens[i]);
		ck_assert_msg(seal_key_from_b64("k", b, &k) == -EINVAL, "%zu bytes accepted",
			      lens[i]);
		free(b);
	}
	/* not base64 */
	static const char *const junk[] = {"!!!!", "abc", "not base64 at all!!", ""};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		ck_assert_msg(seal_key_from_b64("k", junk[i], &k) == -EINVAL, "\"%s\" accepted",
			      junk[i]);
	/* 44 characters, but not valid base64 of 32 bytes */
	b = b64_encode(raw, 32);
	b[43] = '\0'; /* 43 characters */
	ck_assert_int_eq(seal_key_from_b64("k", b, &k), -EINVAL);
	b[43] = '=';
	b[10] = '*';
	ck_assert_int_eq(seal_key_from_b64("k", b, &k), -EINVAL);
	b[10] = '\n';
	ck_assert_int_eq(seal_key_from_b64("k", b, &k), -EINVAL);
	free(b);
	/* a name longer than the key's name field */
	char name[SEAL_NAME_MAX + 8];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	b = b64_encode(raw, 32);
	ck_assert_int_eq(seal_key_from_b64(name, b, &k), -EINVAL);
	free(b);
}
END_TEST

START_TEST(test_b64)
{
	static const struct {
		const char *plain, *enc;
	} v[] = {{"", ""},
		 {"f", "Zg=="},
		 {"fo", "Zm8="},
		 {"foo", "Zm9v"},
		 {"foob", "Zm9vYg=="},
		 {"fooba", "Zm9vYmE="},
		 {"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *e = b64_encode(v[i].plain, strlen(v[i].plain));
		ck_assert_str_eq(e, v[i].enc);
		free(e);
		uint8_t *d = NULL;
		size_t n = 99;
		ck_assert_int_eq(b64_decode(v[i].enc, &d, &n), 0);
		ck_assert_uint_eq(n, strlen(v[i].plain));
		ck_assert_int_eq(memcmp(d, v[i].plain, n), 0);
		free(d);
	}
	/* random binary round trips, with no newlines in long output */
	uint8_t buf[1000];
	RAND_bytes(buf, sizeof(buf));
	for (size_t n = 0; n <= sizeof(buf); n += 97) {
		char *e = b64_encode(buf, n);
		ck_assert_ptr_null(strchr(e, '\n'));
		uint8_t *d = NULL;
		size_t dn = 0;
		ck_assert_int_eq(b64_decode(e, &d, &dn), 0);
		ck_assert_uint_eq(dn, n);
		ck_assert_int_eq(memcmp(d, buf, n), 0);
		free(d);
		free(e);
	}
	uint8_t *d = (uint8_t *)1;
	size_t dn = 0;
	ck_assert_int_eq(b64_decode("Zm9", &d, &dn), -EINVAL);
	ck_assert_ptr_null(d);
	ck_assert_int_eq(b64_decode("Zm9!", &d, &dn), -EINVAL);
	ck_assert_ptr_null(d);
}
END_TEST

/* BUG: b64_decode lets EVP_DecodeBlock read '=' anywhere as a zero sextet and then only looks
 * at the last two characters, so malformed text decodes: "====" gives 1 byte, "Z=g=" 2 bytes,
 * and a dstack `secret` with a '=' in the middle is taken as a 32-byte key. */
START_TEST(test_b64_bad_padding)
{
	static const char *const bad[] = {"====", "A===", "Z=g=", "=AAA", "AA=A"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *d = NULL;
		size_t n = 0;
		int r = b64_decode(bad[i], &d, &n);
		free(d);
		ck_assert_msg(r == -EINVAL, "\"%s\" decoded to %zu bytes", bad[i], n);
	}
}
END_TEST

Suite *seal_suite(void)
{
	Suite *s = suite_create("seal");
	TCase *kf = tcase_create("keyfile");
	TCase *sl = tcase_create("seal");
	TCase *tcs[] = {kf, sl};
	for (size_t i = 0; i < sizeof(tcs) / sizeof(tcs[0]); i++) {
		tcase_add_unchecked_fixture(tcs[i], tmp_root_setup, tmp_root_teardown);
		tcase_add_checked_fixture(tcs[i], setup, teardown);
		tcase_set_timeout(tcs[i], 30);
		suite_add_tcase(s, tcs[i]);
	}
	tcase_add_test(kf, test_keyfile_create);
	tcase_add_test(kf, test_keyfile_missing);
	tcase_add_test(kf, test_keyfile_mode);
	tcase_add_test(kf, test_keyfile_size);
	tcase_add_test(sl, test_seal_roundtrip);
	tcase_add_test(sl, test_seal_aad);
	tcase_add_test(sl, test_seal_tamper);
	tcase_add_test(sl, test_seal_not_sealed);
	tcase_add_test(sl, test_seal_rotation);
	tcase_add_test(sl, test_key_from_b64);
	tcase_add_test(sl, test_b64);
	tcase_add_test(sl, test_b64_bad_padding);
	return s;
}
