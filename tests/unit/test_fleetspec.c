/* Unit tests of core/fleetspec (+ fleetres, sshkey, fileref): every row of the resources
 * table of the reference (dstack-core.md §1.8) and its error cases, nodes and idle_duration
 * forms, the profile fields, SSH fleets with per-host overrides, identity files of every
 * supported and refused kind, the in-place update rules (§1.7), and examples/fleets/.
 *
 * An unchecked fixture makes a temporary HOME holding keys generated at test time: with
 * OpenSSL (RSA, ECDSA, X25519 and encrypted PEM) and with ssh-keygen run through posix_spawn
 * (Ed25519, ECDSA and RSA in OpenSSH format, an encrypted one), so no key lives in the repo.
 */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../core/fleetspec.h"
#include "../../lib/util.h"
#include "helpers.h"
#include "suites.h"

#ifndef FLEETFS_SRCDIR
#define FLEETFS_SRCDIR "."
#endif

#define ERRSZ 1024

extern char **environ;

static char g_home[PATH_MAX];

/* ---- fixture ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void put(const char *rel, const void *data, size_t len)
{
	char path[PATH_MAX];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", g_home, rel), 0);
	FILE *f = fopen(path, "wb");
	ck_assert_msg(f != NULL, "fopen %s", path);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

static void put_pem(const char *rel, EVP_PKEY *pk, bool traditional, const char *pass)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	ck_assert_ptr_nonnull(b);
	const EVP_CIPHER *enc = pass ? EVP_aes_128_cbc() : NULL;
	int plen = pass ? (int)strlen(pass) : 0;
	if (traditional)
		ck_assert_int_eq(
			PEM_write_bio_PrivateKey_traditional(
				b, pk, enc, (unsigned char *)(uintptr_t)pass, plen, NULL, NULL),
			1);
	else
		ck_assert_int_eq(PEM_write_bio_PrivateKey(b, pk, enc, (const unsigned char *)pass,
							  plen, NULL, NULL),
				 1);
	long n = BIO_get_mem_data(b, &p);
	put(rel, p, (size_t)n);
	BIO_free(b);
}

/* ssh-keygen -q -t TYPE [-b BITS] [-m FORMAT] -N PASS -C "" -f HOME/REL */
static void keygen(const char *type, const char *bits, const char *format, const char *pass,
		   const char *rel)
{
	char path[PATH_MAX];
	const char *args[16];
	char *argv[16];
	size_t n = 0;
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", g_home, rel), 0);
	args[n++] = "ssh-keygen";
	args[n++] = "-q";
	args[n++] = "-t";
	args[n++] = type;
	if (bits) {
		args[n++] = "-b";
		args[n++] = bits;
	}
	if (format) {
		args[n++] = "-m";
		args[n++] = format;
	}
	args[n++] = "-N";
	args[n++] = pass;
	args[n++] = "-C";
	args[n++] = "";
	args[n++] = "-f";
	args[n++] = path;
	for (size_t i = 0; i < n; i++)
		argv[i] = xstrdup(args[i]);
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
	ck_assert_int_eq(posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0), 0);
	ck_assert_int_eq(posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0), 0);
	pid_t pid;
	int st = 0;
	ck_assert_int_eq(posix_spawnp(&pid, "ssh-keygen", &fa, NULL, argv, environ), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ssh-keygen -t %s failed", type);
	posix_spawn_file_actions_destroy(&fa);
	for (size_t i = 0; i < n; i++)
		free(argv[i]);
}

/* An OpenSSH container with the given key type and cipher, made by hand (for types
 * ssh-keygen no longer makes, like ssh-dss). */
static void put_openssh(const char *rel, const char *ktype, const char *cipher, uint32_t nkeys)
{
	struct buf b, out;
	unsigned char enc[4096];
	buf_init(&b, 4096);
	buf_init(&out, 8192);
#define U32(v)                                                                                     \
	do {                                                                                       \
		unsigned char u_[4] = {(unsigned char)((v) >> 24), (unsigned char)((v) >> 16),     \
				       (unsigned char)((v) >> 8), (unsigned char)(v)};             \
		ck_assert_int_eq(buf_append(&b, u_, 4), 0);                                        \
	} while (0)
#define STR(s, n)                                                                                  \
	do {                                                                                       \
		U32((uint32_t)(n));                                                                \
		ck_assert_int_eq(buf_append(&b, (s), (n)), 0);                                     \
	} while (0)
	ck_assert_int_eq(buf_append(&b, "openssh-key-v1", 15), 0);
	STR(cipher, strlen(cipher));
	STR(!strcmp(cipher, "none") ? "none" : "bcrypt", 4 + 2 * !!strcmp(cipher, "none"));
	STR("", 0);
	U32(nkeys);
	/* public key blob: string type, string junk */
	U32((uint32_t)(4 + strlen(ktype) + 4 + 3));
	STR(ktype, strlen(ktype));
	STR("pub", 3);
	/* private section: check ints, type, junk, padding */
	U32((uint32_t)(8 + 4 + strlen(ktype) + 4 + 4));
	U32(0x12345678u);
	U32(0x12345678u);
	STR(ktype, strlen(ktype));
	STR("priv", 4);
#undef STR
#undef U32
	int n = EVP_EncodeBlock(enc, (const unsigned char *)b.data, (int)b.len);
	ck_assert_int_eq(buf_printf(&out, "-----BEGIN OPENSSH PRIVATE KEY-----\n"), 0);
	for (int i = 0; i < n; i += 70)
		ck_assert_int_eq(buf_printf(&out, "%.*s\n", n - i < 70 ? n - i : 70, enc + i), 0);
	ck_assert_int_eq(buf_printf(&out, "-----END OPENSSH PRIVATE KEY-----\n"), 0);
	put(rel, out.data, out.len);
	buf_free(&b);
	buf_free(&out);
}

static void mk(const char *rel)
{
	char path[PATH_MAX];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", g_home, rel), 0);
	ck_assert_int_eq(mkdir(path, 0700), 0);
}

static void fixture_setup(void)
{
	ck_assert_int_eq(fmt(g_home, sizeof(g_home), "%s", "/tmp/fleetspec-test-XXXXXX"), 0);
	ck_assert_ptr_nonnull(mkdtemp(g_home));
	mk(".ssh");
	mk("bad");
	mk("keys");
	EVP_PKEY *rsa = EVP_RSA_gen(2048);
	EVP_PKEY *ec = EVP_EC_gen("P-384");
	EVP_PKEY *k1 = EVP_EC_gen("secp256k1");
	EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	ck_assert_ptr_nonnull(rsa);
	ck_assert_ptr_nonnull(ec);
	ck_assert_ptr_nonnull(k1);
	ck_assert_ptr_nonnull(x);
	put_pem(".ssh/id_rsa", rsa, true, NULL);	 /* BEGIN RSA PRIVATE KEY */
	put_pem("keys/rsa-pkcs8.pem", rsa, false, NULL); /* BEGIN PRIVATE KEY */
	put_pem("keys/ec.pem", ec, true, NULL);		 /* BEGIN EC PRIVATE KEY */
	put_pem("bad/rsa-enc.pem", rsa, true, "s3cret");
	put_pem("bad/rsa-enc8.pem", rsa, false, "s3cret");
	put_pem("bad/k1.pem", k1, true, NULL);
	put_pem("bad/x25519.pem", x, false, NULL);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(x);
	keygen("ed25519", NULL, NULL, "", ".ssh/id_ed25519");
	keygen("ed25519", NULL, NULL, "", ".ssh/admin_ed25519");
	keygen("ed25519", NULL, NULL, "", ".ssh/bastion_ed25519");
	keygen("ecdsa", "256", NULL, "", "keys/ecdsa_openssh");
	keygen("rsa", "2048", NULL, "", "keys/rsa_openssh");
	keygen("rsa", "2048", "PEM", "", "keys/rsa_keygen.pem");
	keygen("ed25519", NULL, NULL, "pass phrase", "bad/ed25519-enc");
	put_openssh("bad/dss", "ssh-dss", "none", 1);
	put_openssh("bad/two-keys", "ssh-ed25519", "none", 2);
	put_openssh("keys/handmade", "ssh-ed25519", "none", 1);
	put_openssh("bad/aes", "ssh-ed25519", "aes256-ctr", 1);
	put("bad/garbage", "hello\n", 6);
	put("bad/empty", "", 0);
	put("bad/b64",
	    "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n", 76);
	char *big = xcalloc(1, 70 * 1024);
	memset(big, 'A', 70 * 1024);
	put("bad/big", big, 70 * 1024);
	free(big);
}

static void fixture_teardown(void)
{
	if (g_home[0])
		nftw(g_home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	g_home[0] = '\0';
}

/* ---- helpers ---- */

static char *home_file(const char *rel, size_t *len)
{
	char path[PATH_MAX];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", g_home, rel), 0);
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	struct buf b;
	char chunk[4096];
	size_t n;
	buf_init(&b, 1 << 20);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		ck_assert_int_eq(buf_append(&b, chunk, n), 0);
	fclose(f);
	return buf_steal(&b, len);
}

/* Parse yaml as fleets/<name>.yml with HOME and cwd = g_home unless ctx is given. */
static int px(const char *yaml, const char *name, const struct fileref_ctx *ctx, struct fleet_spec **out,
	      char *err)
{
	struct fileref_ctx dctx = {.cwd = g_home, .home = g_home};
	char fname[128];
	struct fleet_spec *local = NULL;
	ck_assert_int_eq(fmt(fname, sizeof(fname), "fleets/%s.yml", name), 0);
	err[0] = '\0';
	int r = fleetspec_parse(yaml, strlen(yaml), fname, name, ctx ? ctx : &dctx,
				out ? out : &local, err, ERRSZ);
	if (r)
		ck_assert_msg(err[0] != '\0', "failure without a message");
	else if (!out)
		fleetspec_free(local);
	if (r)
		ck_assert_ptr_null(out ? *out : local);
	return r;
}

static struct fleet_spec *ok_as(const char *yaml, const char *name)
{
	struct fleet_spec *f = NULL;
	char err[ERRSZ];
	int r = px(yaml, name, NULL, &f, err);
	ck_assert_msg(r == 0, "expected valid, got %d: %s\n--- yaml:\n%s", r, err, yaml);
	ck_assert_ptr_nonnull(f);
	return f;
}

static struct fleet_spec *ok(const char *yaml)
{
	return ok_as(yaml, "gpu");
}

#define OK(yaml) fleetspec_free(ok(yaml))

#define BAD_CTX(yaml, name, ctx, prefix)                                                           \
	do {                                                                                       \
		char e_[ERRSZ];                                                                    \
		int r_ = px((yaml), (name), (ctx), NULL, e_);                                      \
		ck_assert_msg(r_ == -EINVAL, "expected -EINVAL, got %d (%s)\n--- yaml:\n%s", r_,   \
			      e_, (yaml));                                                         \
		ck_assert_msg(strncmp(e_, (prefix), strlen(prefix)) == 0,                          \
			      "expected prefix \"%s\"\n                   got \"%s\"", (prefix),   \
			      e_);                                                                 \
	} while (0)

#define BAD(yaml, prefix) BAD_CTX(yaml, "gpu", NULL, prefix)

#define SSH_HEAD "ssh_config:\n  user: ubuntu\n  identity_file: ~/.ssh/id_ed25519\n"
#define SSH_MIN SSH_HEAD "  hosts: [10.0.0.1]\n"

/* A backend fleet with `resources:` holding the one line given. */
static struct fleet_spec *res_ok(const char *line)
{
	char *y = xasprintf("nodes: 1\nresources:\n  %s\n", line);
	struct fleet_spec *f = ok(y);
	free(y);
	return f;
}

static void res_bad(const char *line, const char *prefix)
{
	char *y = xasprintf("nodes: 1\nresources:\n  %s\n", line);
	BAD(y, prefix);
	free(y);
}

static void range_is(const struct rrange *r, double min, double max)
{
	ck_assert_msg(r->set, "range not set");
	ck_assert_msg(fabs(r->min - min) < 1e-9 && fabs(r->max - max) < 1e-9,
		      "range %g..%g, expected %g..%g", r->min, r->max, min, max);
}

static void names_are(const struct gpu_spec *g, const char *a, const char *b)
{
	ck_assert_uint_eq(g->nnames, b ? 2 : a ? 1 : 0);
	if (a)
		ck_assert_str_eq(g->names[0], a);
	if (b)
		ck_assert_str_eq(g->names[1], b);
}

/* ---- resources grammar ---- */

START_TEST(test_range_strings)
{
	struct rrange r;
	char err[200];
	ck_assert_int_eq(fleetspec_parse_range("2..8", false, &r, err, sizeof(err)), 0);
	range_is(&r, 2, 8);
	ck_assert_int_eq(fleetspec_parse_range("4", false, &r, err, sizeof(err)), 0);
	range_is(&r, 4, 4);
	ck_assert_int_eq(fleetspec_parse_range(" 2 .. 8 ", false, &r, err, sizeof(err)), 0);
	range_is(&r, 2, 8);
	ck_assert_int_eq(fleetspec_parse_range("2..", false, &r, err, sizeof(err)), 0);
	range_is(&r, 2, -1);
	ck_assert_int_eq(fleetspec_parse_range("..8", false, &r, err, sizeof(err)), 0);
	range_is(&r, 0, 8);
	ck_assert_int_eq(fleetspec_parse_range("8GB..", true, &r, err, sizeof(err)), 0);
	range_is(&r, 8, -1);
	ck_assert_int_eq(fleetspec_parse_range("..1TB", true, &r, err, sizeof(err)), 0);
	range_is(&r, 0, 1024);
	ck_assert_int_eq(fleetspec_parse_range("512MB", true, &r, err, sizeof(err)), 0);
	range_is(&r, 0.5, 0.5);
	ck_assert_int_eq(fleetspec_parse_range("1.5TB", true, &r, err, sizeof(err)), 0);
	range_is(&r, 1536, 1536);
	ck_assert_int_eq(fleetspec_parse_range("80", true, &r, err, sizeof(err)), 0);
	range_is(&r, 80, 80);
	ck_assert_int_eq(fleetspec_parse_range("16gb..80 GB", true, &r, err, sizeof(err)), 0);
	range_is(&r, 16, 80);
	ck_assert_int_eq(fleetspec_parse_range("0..0", false, &r, err, sizeof(err)), 0);
	range_is(&r, 0, 0);
	/* errors */
	static const struct {
		const char *s;
		bool mem;
		const char *msg;
	} bad[] = {
		{"..", false, "Invalid empty range: .."},
		{" .. ", true, "Invalid empty range: .."},
		{"8..2", false, "Invalid range order"},
		{"80GB..24GB", true, "Invalid range order"},
		{"1..2..3", false, "invalid range"},
		{"8GiB", true, "invalid memory size"},
		{"8Gi", true, "invalid memory size"},
		{"8G", true, "invalid memory size"},
		{"GB", true, "invalid memory size"},
		{"inf", true, "invalid memory size"},
		{"nan", true, "invalid memory size"},
		{"0x10", true, "invalid memory size"},
		{"-8GB", true, "memory size must not be negative"},
		{"-1", false, "count must not be negative"},
		{"2.5", false, "count must be a whole number"},
		{"abc", false, "count must be a whole number"},
		{"", false, "count must be a whole number"},
		{"99999999999", false, "count too large"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(fleetspec_parse_range(bad[i].s, bad[i].mem, &r, err, sizeof(err)) ==
				      -EINVAL,
			      "\"%s\" parsed", bad[i].s);
		ck_assert_msg(strstr(err, bad[i].msg), "\"%s\": got \"%s\"", bad[i].s, err);
	}
}
END_TEST

/* The GPU rows of §1.8's table, through the string parser. */
START_TEST(test_gpu_table)
{
	struct gpu_spec g;
	char err[200];
#define GPU(s)                                                                                     \
	do {                                                                                       \
		memset(&g, 0x5a, sizeof(g));                                                       \
		ck_assert_msg(fleetspec_parse_gpu((s), &g, err, sizeof(err)) == 0, "%s: %s", (s),  \
			      err);                                                                \
	} while (0)
	GPU("0");
	range_is(&g.count, 0, 0);
	names_are(&g, NULL, NULL);
	ck_assert_str_eq(g.vendor, "");
	ck_assert(!g.memory.set);
	gpu_spec_free(&g);
	GPU("8");
	range_is(&g.count, 8, 8);
	gpu_spec_free(&g);
	GPU("H100");
	names_are(&g, "H100", NULL);
	range_is(&g.count, 1, -1);
	gpu_spec_free(&g);
	GPU("H100:8");
	names_are(&g, "H100", NULL);
	range_is(&g.count, 8, 8);
	gpu_spec_free(&g);
	GPU("A100:80GB:2");
	names_are(&g, "A100", NULL);
	range_is(&g.memory, 80, 80);
	range_is(&g.count, 2, 2);
	gpu_spec_free(&g);
	GPU("24GB..80GB");
	range_is(&g.memory, 24, 80);
	range_is(&g.count, 1, -1);
	names_are(&g, NULL, NULL);
	gpu_spec_free(&g);
	GPU("1..");
	range_is(&g.count, 1, -1);
	gpu_spec_free(&g);
	GPU("amd:MI300X:8");
	ck_assert_str_eq(g.vendor, "amd");
	names_are(&g, "MI300X", NULL);
	range_is(&g.count, 8, 8);
	gpu_spec_free(&g);
	GPU("A10G,L4:1..2");
	names_are(&g, "A10G", "L4");
	range_is(&g.count, 1, 2);
	gpu_spec_free(&g);
	GPU("0..:nvidia");
	ck_assert_str_eq(g.vendor, "nvidia");
	range_is(&g.count, 0, -1);
	gpu_spec_free(&g);
	/* aliases, case, order, the deprecated tpu- prefix, spaces */
	GPU("tpu:v5litepod");
	ck_assert_str_eq(g.vendor, "google");
	names_are(&g, "v5litepod", NULL);
	gpu_spec_free(&g);
	GPU("TT:n150");
	ck_assert_str_eq(g.vendor, "tenstorrent");
	gpu_spec_free(&g);
	GPU("2:NVIDIA:..80GB");
	ck_assert_str_eq(g.vendor, "nvidia");
	range_is(&g.memory, 0, 80);
	range_is(&g.count, 2, 2);
	gpu_spec_free(&g);
	GPU("tpu-v3-8");
	names_are(&g, "v3-8", NULL);
	gpu_spec_free(&g);
	GPU(" H100 , A100 : 8 ");
	names_are(&g, "H100", "A100");
	range_is(&g.count, 8, 8);
	gpu_spec_free(&g);
	GPU("intel:Gaudi2:8");
	ck_assert_str_eq(g.vendor, "intel");
	gpu_spec_free(&g);
#undef GPU
	static const struct {
		const char *s, *msg;
	} bad[] = {
		{"nvidia:amd", "GPU spec vendor conflict"},
		{"A100:H100", "GPU spec name conflict"},
		{"80GB:40GB", "GPU spec memory conflict"},
		{"2:4", "GPU spec count conflict"},
		{"A100,:2", "GPU name can not be empty"},
		{"A100,,H100", "GPU name can not be empty"},
		{"A100::2", "GPU spec contains empty token"},
		{":", "GPU spec contains empty token"},
		{"", "GPU spec contains empty token"},
		{"8GB..4GB", "Invalid range order"},
		{"..", "Invalid empty range"},
		{"2.5", "count must be a whole number"},
		{"-1", "count must not be negative"},
		{"80GiB", "invalid memory size"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(fleetspec_parse_gpu(bad[i].s, &g, err, sizeof(err)) == -EINVAL,
			      "\"%s\" parsed", bad[i].s);
		ck_assert_msg(strstr(err, bad[i].msg), "\"%s\": got \"%s\"", bad[i].s, err);
	}
}
END_TEST

/* The table again, through a fleet file, plus the cpu/memory/disk rows and defaults. */
START_TEST(test_resources_table)
{
	static const struct {
		const char *gpu;
		const char *vendor, *n1, *n2;
		double cmin, cmax, mmin, mmax;
	} rows[] = {
		{"0", "", NULL, NULL, 0, 0, -2, -2},
		{"8", "", NULL, NULL, 8, 8, -2, -2},
		{"H100", "", "H100", NULL, 1, -1, -2, -2},
		{"H100:8", "", "H100", NULL, 8, 8, -2, -2},
		{"A100:80GB:2", "", "A100", NULL, 2, 2, 80, 80},
		{"24GB..80GB", "", NULL, NULL, 1, -1, 24, 80},
		{"1..", "", NULL, NULL, 1, -1, -2, -2},
		{"amd:MI300X:8", "amd", "MI300X", NULL, 8, 8, -2, -2},
		{"A10G,L4:1..2", "", "A10G", "L4", 1, 2, -2, -2},
		{"0..:nvidia", "nvidia", NULL, NULL, 0, -1, -2, -2},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char line[64];
		ck_assert_int_eq(fmt(line, sizeof(line), "gpu: %s", rows[i].gpu), 0);
		struct fleet_spec *f = res_ok(line);
		const struct gpu_spec *g = &f->resources.gpu;
		ck_assert(f->resources.set);
		ck_assert_str_eq(g->vendor, rows[i].vendor);
		names_are(g, rows[i].n1, rows[i].n2);
		range_is(&g->count, rows[i].cmin, rows[i].cmax);
		if (rows[i].mmin > -2)
			range_is(&g->memory, rows[i].mmin, rows[i].mmax);
		else
			ck_assert(!g->memory.set);
		/* the rest of ResourcesSpec() defaults */
		range_is(&f->resources.cpu, 2, -1);
		range_is(&f->resources.memory, 8, -1);
		range_is(&f->resources.disk, 100, -1);
		ck_assert(!f->resources.shm_size.set);
		fleetspec_free(f);
	}
	struct fleet_spec *f = res_ok("cpu: arm:8..");
	ck_assert_str_eq(f->resources.cpu_arch, "arm");
	range_is(&f->resources.cpu, 8, -1);
	range_is(&f->resources.gpu.count, 0, -1); /* DEFAULT_GPU_SPEC */
	fleetspec_free(f);
	f = res_ok("memory: 64GB..");
	range_is(&f->resources.memory, 64, -1);
	fleetspec_free(f);
	f = res_ok("disk: 500GB..1TB");
	range_is(&f->resources.disk, 500, 1024);
	fleetspec_free(f);
	/* no resources: ResourcesSpec.unconstrained() */
	f = ok("nodes: 1\n");
	ck_assert(!f->resources.set);
	range_is(&f->resources.cpu, 1, -1);
	range_is(&f->resources.memory, 0, -1);
	range_is(&f->resources.gpu.count, 0, -1);
	ck_assert(!f->resources.disk.set);
	fleetspec_free(f);
	f = ok("nodes: 1\nresources: null\n");
	ck_assert(!f->resources.set);
	fleetspec_free(f);
	f = ok("nodes: 1\nresources: {}\n");
	ck_assert(f->resources.set);
	range_is(&f->resources.cpu, 2, -1);
	fleetspec_free(f);
}
END_TEST

START_TEST(test_resources_forms)
{
	struct fleet_spec *f = res_ok("cpu: 8");
	range_is(&f->resources.cpu, 8, 8);
	ck_assert_str_eq(f->resources.cpu_arch, "");
	fleetspec_free(f);
	f = res_ok("cpu: X86:4..16");
	ck_assert_str_eq(f->resources.cpu_arch, "x86");
	range_is(&f->resources.cpu, 4, 16);
	fleetspec_free(f);
	f = res_ok("cpu: arm");
	ck_assert_str_eq(f->resources.cpu_arch, "arm");
	range_is(&f->resources.cpu, 2, -1);
	fleetspec_free(f);
	f = res_ok("cpu: {arch: arm, count: 4}");
	ck_assert_str_eq(f->resources.cpu_arch, "arm");
	range_is(&f->resources.cpu, 4, 4);
	fleetspec_free(f);
	f = res_ok("cpu: {min: 2, max: 8}");
	range_is(&f->resources.cpu, 2, 8);
	fleetspec_free(f);
	f = res_ok("cpu: {min: 4}");
	range_is(&f->resources.cpu, 4, -1);
	fleetspec_free(f);
	f = res_ok("cpu: {count: {max: 4}}");
	range_is(&f->resources.cpu, 0, 4);
	fleetspec_free(f);
	f = res_ok("memory: {min: 8GB, max: 1TB}");
	range_is(&f->resources.memory, 8, 1024);
	fleetspec_free(f);
	f = res_ok("memory: 16.5");
	range_is(&f->resources.memory, 16.5, 16.5);
	fleetspec_free(f);
	f = res_ok("shm_size: 8GB");
	range_is(&f->resources.shm_size, 8, 8);
	fleetspec_free(f);
	f = res_ok("disk: {size: 200GB..}");
	range_is(&f->resources.disk, 200, -1);
	fleetspec_free(f);
	f = res_ok("disk: 100");
	range_is(&f->resources.disk, 100, 100);
	fleetspec_free(f);
	f = res_ok("disk: null");
	ck_assert(!f->resources.disk.set);
	fleetspec_free(f);
	f = res_ok("gpu: null");
	range_is(&f->resources.gpu.count, 0, -1);
	fleetspec_free(f);
	f = res_ok("gpu: {name: A100, memory: 40GB.., total_memory: 320GB.., count: 8}");
	names_are(&f->resources.gpu, "A100", NULL);
	range_is(&f->resources.gpu.memory, 40, -1);
	range_is(&f->resources.gpu.total_memory, 320, -1);
	range_is(&f->resources.gpu.count, 8, 8);
	fleetspec_free(f);
	f = res_ok("gpu: {vendor: NVIDIA, name: [H100, tpu-x]}");
	ck_assert_str_eq(f->resources.gpu.vendor, "nvidia");
	names_are(&f->resources.gpu, "H100", "x");
	range_is(&f->resources.gpu.count, 1, -1);
	fleetspec_free(f);
	f = res_ok("gpu: {vendor: tpu}");
	ck_assert_str_eq(f->resources.gpu.vendor, "google");
	fleetspec_free(f);
	static const struct {
		const char *in, *out;
	} ccs[] = {{"7.5", "7.5"},  {"\"7.5\"", "7.5"},	  {"[8, 0]", "8.0"},	{"8.0", "8.0"},
		   {"7.10", "7.1"}, {"\"7.10\"", "7.10"}, {"[\"9\", 0]", "9.0"}};
	for (size_t i = 0; i < sizeof(ccs) / sizeof(ccs[0]); i++) {
		char line[80];
		ck_assert_int_eq(
			fmt(line, sizeof(line), "gpu: {compute_capability: %s}", ccs[i].in), 0);
		f = res_ok(line);
		ck_assert_str_eq(f->resources.gpu.compute_capability, ccs[i].out);
		fleetspec_free(f);
	}
	/* errors, with file, line and field */
	res_bad("cpu: arm:x86", "fleets/gpu.yml:3: resources.cpu: CPU spec arch conflict");
	res_bad("cpu: 4:8", "fleets/gpu.yml:3: resources.cpu: CPU spec count conflict");
	res_bad("cpu: mips", "fleets/gpu.yml:3: resources.cpu: Invalid CPU architecture");
	res_bad("cpu: \"arm:\"", "fleets/gpu.yml:3: resources.cpu: CPU spec contains empty token");
	res_bad("cpu: 1.5", "fleets/gpu.yml:3: resources.cpu: Invalid CPU architecture");
	res_bad("cpu: 8..2", "fleets/gpu.yml:3: resources.cpu: Invalid range order");
	res_bad("cpu: ..", "fleets/gpu.yml:3: resources.cpu: Invalid empty range: ..");
	res_bad("cpu: null", "fleets/gpu.yml:3: resources.cpu: must not be null");
	res_bad("cpu: true", "fleets/gpu.yml:3: resources.cpu: must be a CPU spec");
	res_bad("cpu: {arch: sparc}", "fleets/gpu.yml:3: resources.cpu.arch: must be x86 or arm");
	res_bad("cpu: {count: 2, cores: 4}", "fleets/gpu.yml:3: resources.cpu: unknown key \"cor\xe2\x80\xa6\" (5 chars)");
	res_bad("cpu: {min: null}", "fleets/gpu.yml:3: resources.cpu: Invalid empty range: ..");
	res_bad("memory: 8GiB..", "fleets/gpu.yml:3: resources.memory: invalid memory size");
	res_bad("memory: null", "fleets/gpu.yml:3: resources.memory: must not be null");
	res_bad("memory: 64GB..8GB", "fleets/gpu.yml:3: resources.memory: Invalid range order");
	res_bad("memory: {min: 8GB, step: 1}", "fleets/gpu.yml:3: resources.memory: unknown key \"ste\xe2\x80\xa6\" (4 chars)");
	res_bad("memory: {min: 16GB, max: 8GB}",
		"fleets/gpu.yml:3: resources.memory: Invalid range order");
	res_bad("memory: {min: 8GB..}", "fleets/gpu.yml:3: resources.memory.min: must be a single");
	res_bad("memory: [8GB]", "fleets/gpu.yml:3: resources.memory: must be a memory size");
	res_bad("shm_size: 1..2", "fleets/gpu.yml:3: resources.shm_size: must be a single memory");
	res_bad("disk: ..", "fleets/gpu.yml:3: resources.disk: Invalid empty range: ..");
	res_bad("disk: {}", "fleets/gpu.yml:3: resources.disk.size: required field is missing");
	res_bad("disk: {size: 1TB, type: ssd}", "fleets/gpu.yml:3: resources.disk: unknown key \"typ\xe2\x80\xa6\" (4 chars)");
	res_bad("gpu: A100:H100", "fleets/gpu.yml:3: resources.gpu: GPU spec name conflict");
	res_bad("gpu: nvidia:amd", "fleets/gpu.yml:3: resources.gpu: GPU spec vendor conflict");
	res_bad("gpu: 80GB:40GB", "fleets/gpu.yml:3: resources.gpu: GPU spec memory conflict");
	res_bad("gpu: 2:4", "fleets/gpu.yml:3: resources.gpu: GPU spec count conflict");
	res_bad("gpu: A100,:2", "fleets/gpu.yml:3: resources.gpu: GPU name can not be empty");
	res_bad("gpu: 1.5", "fleets/gpu.yml:3: resources.gpu: count must be a whole number");
	res_bad("gpu: yes", "fleets/gpu.yml:3: resources.gpu: must be a GPU spec");
	res_bad("gpu: {vendor: arm}", "fleets/gpu.yml:3: resources.gpu.vendor: must be one of");
	res_bad("gpu: {count: null}", "fleets/gpu.yml:3: resources.gpu.count: must not be null");
	res_bad("gpu: {name: [A100, \"\"]}",
		"fleets/gpu.yml:3: resources.gpu.name: GPU name can not be empty");
	res_bad("gpu: {size: 8}", "fleets/gpu.yml:3: resources.gpu: unknown key \"siz\xe2\x80\xa6\" (4 chars)");
	res_bad("gpu: {compute_capability: 8}",
		"fleets/gpu.yml:3: resources.gpu.compute_capability: must be a compute");
	res_bad("gpu: {compute_capability: [7, 5, 1]}",
		"fleets/gpu.yml:3: resources.gpu.compute_capability: must be a compute");
	res_bad("gpu: {compute_capability: \"7.x\"}",
		"fleets/gpu.yml:3: resources.gpu.compute_capability: must be a compute");
	res_bad("gpus: 8", "fleets/gpu.yml:3: resources: unknown key \"gpu\xe2\x80\xa6\" (4 chars)");
	BAD("nodes: 1\nresources: 8\n", "fleets/gpu.yml:2: resources: must be a mapping");
}
END_TEST

/* ---- nodes, durations, profile fields ---- */

START_TEST(test_nodes)
{
	static const struct {
		const char *v;
		long long min, target, max;
	} rows[] = {
		{"2", 2, 2, 2},
		{"\"3\"", 3, 3, 3},
		{"0", 0, 0, 0},
		{"1..4", 1, 1, 4},
		{"\" 1 .. 4 \"", 1, 1, 4},
		{"2..", 2, 2, FS_UNLIMITED},
		{"..4", 0, 0, 4},
		{"..", 0, 0, FS_UNLIMITED},
		{"{min: 1}", 1, 1, FS_UNLIMITED},
		{"{target: 3}", 0, 3, FS_UNLIMITED},
		{"{min: 1, target: 2, max: 4}", 1, 2, 4},
		{"{min: null, target: null, max: null}", 0, 0, FS_UNLIMITED},
		{"{min: \"2\", max: 2}", 2, 2, 2},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *y = xasprintf("nodes: %s\n", rows[i].v);
		struct fleet_spec *f = ok(y);
		ck_assert(!f->ssh);
		ck_assert_msg(f->nodes_min == rows[i].min && f->nodes_target == rows[i].target &&
				      f->nodes_max == rows[i].max,
			      "nodes: %s -> %lld/%lld/%lld", rows[i].v, f->nodes_min,
			      f->nodes_target, f->nodes_max);
		fleetspec_free(f);
		free(y);
	}
	BAD("nodes: -1\n", "fleets/gpu.yml:1: nodes: min cannot be negative");
	BAD("nodes: 3..1\n", "fleets/gpu.yml:1: nodes: max must not be less than min");
	BAD("nodes: -1..2\n", "fleets/gpu.yml:1: nodes: min cannot be negative");
	BAD("nodes:\n  min: -1\n", "fleets/gpu.yml:2: nodes.min: min cannot be negative");
	BAD("nodes:\n  min: 2\n  target: 1\n",
	    "fleets/gpu.yml:2: nodes.target: target must not be less than min");
	BAD("nodes: {min: 0, target: 5, max: 4}",
	    "fleets/gpu.yml:1: nodes.max: max must not be less than target");
	BAD("nodes: {min: 3, max: 2}",
	    "fleets/gpu.yml:1: nodes.max: max must not be less than min");
	BAD("nodes: {min: 1, size: 2}", "fleets/gpu.yml:1: nodes: unknown key \"siz\xe2\x80\xa6\" (4 chars)");
	BAD("nodes: {min: x}", "fleets/gpu.yml:1: nodes.min: must be an integer");
	BAD("nodes: two\n", "fleets/gpu.yml:1: nodes: must be a count, a range");
	BAD("nodes: true\n", "fleets/gpu.yml:1: nodes: must be a count, a range");
	BAD("nodes: 1.5\n", "fleets/gpu.yml:1: nodes: must be a count, a range");
	BAD("nodes: 1..2..3\n", "fleets/gpu.yml:1: nodes: must be a count, a range");
	BAD("nodes: [1, 2]\n", "fleets/gpu.yml:1: nodes: must be a count, a range");
	BAD("nodes: null\n", "fleets/gpu.yml:1: No ssh_config or nodes specified");
}
END_TEST

START_TEST(test_idle_duration)
{
	static const struct {
		const char *v;
		long long secs;
	} rows[] = {
		{"3600", 3600},	  {"\"3600\"", 3600}, {"30m", 1800},   {"2h", 7200},
		{"3d", 259200},	  {"1w", 604800},     {"90s", 90},     {"\"90 m\"", 5400},
		{"0", 0},	  {"off", -1},	      {"\"off\"", -1}, {"false", -1},
		{"no", -1},	  {"-1", -1},	      {"-5", -1},      {"\"-1\"", -1},
		{"true", 259200}, {"null", 259200},
	};
	struct fleet_spec *f = ok("nodes: 1\n");
	ck_assert_int_eq(f->idle_duration, 3 * 24 * 3600); /* the fleet default */
	fleetspec_free(f);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *y = xasprintf("nodes: 1\nidle_duration: %s\n", rows[i].v);
		f = ok(y);
		ck_assert_msg(f->idle_duration == rows[i].secs, "idle_duration: %s -> %lld",
			      rows[i].v, f->idle_duration);
		fleetspec_free(f);
		free(y);
	}
	static const char *const bad[] = {"3x",	     "1h30m", "abc",	 "[1]",	  "1.5",
					  "\"OFF\"", "h",     "\" 3d\"", "{a: 1}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *y = xasprintf("nodes: 1\nidle_duration: %s\n", bad[i]);
		BAD(y, "fleets/gpu.yml:2: idle_duration: must be a duration");
		free(y);
	}
	/* `idle_duration: true` means the default, so an SSH fleet may say it */
	OK(SSH_MIN "idle_duration: true\n");
	BAD(SSH_MIN "idle_duration: 1h\n",
	    "fleets/gpu.yml:5: idle_duration: SSH fleet configuration does not support");
}
END_TEST

START_TEST(test_profile_fields)
{
	struct fleet_spec *f = ok("nodes: 2\n");
	ck_assert_int_eq(f->spot_policy, SPOT_ON_DEMAND);
	ck_assert_int_eq(f->placement, PLACEMENT_ANY);
	ck_assert_int_eq(f->blocks, 1);
	ck_assert(f->max_price < 0);
	ck_assert(!f->retry.enabled);
	ck_assert(!f->vastai.set);
	ck_assert_str_eq(f->name, "gpu");
	fleetspec_free(f);
	f = ok("type: fleet\nname: gpu\nnodes: 2\nplacement: cluster\nblocks: auto\n"
	       "backends: [aws, gcp, vastai]\nregions: [us-east-1, 42]\n"
	       "availability_zones: [us-east-1a]\ninstance_types: [p5.48xlarge]\n"
	       "reservation: cr-0123\nspot_policy: auto\nmax_price: 12.5\n"
	       "tags: {team: ml, cost-center: \"a b:c/d=e_f-g+h@i.j\", empty: \"\", n: 5}\n"
	       "retry: {on_events: [no-capacity, error], duration: 2h}\n"
	       "backend_options:\n  - type: vastai\n    offer_order: price\n"
	       "    min_reliability: 0.95\n    min_score: 300\n");
	ck_assert_int_eq(f->placement, PLACEMENT_CLUSTER);
	ck_assert_int_eq(f->blocks, 0);
	ck_assert_uint_eq(f->nbackends, 3);
	ck_assert_str_eq(f->backends[2], "vastai");
	ck_assert_uint_eq(f->nregions, 2);
	ck_assert_str_eq(f->regions[1], "42");
	ck_assert_uint_eq(f->nazs, 1);
	ck_assert_str_eq(f->instance_types[0], "p5.48xlarge");
	ck_assert_str_eq(f->reservation, "cr-0123");
	ck_assert_int_eq(f->spot_policy, SPOT_AUTO);
	ck_assert(fabs(f->max_price - 12.5) < 1e-9);
	ck_assert_uint_eq(f->ntags, 4);
	ck_assert_str_eq(f->tags[1].key, "cost-center");
	ck_assert_str_eq(f->tags[1].value, "a b:c/d=e_f-g+h@i.j");
	ck_assert_str_eq(f->tags[3].value, "5");
	ck_assert(f->retry.enabled);
	ck_assert_uint_eq(f->retry.on_events, RETRY_NO_CAPACITY | RETRY_ERROR);
	ck_assert_int_eq(f->retry.duration, 7200);
	ck_assert(f->vastai.set);
	ck_assert_str_eq(f->vastai.offer_order, "price");
	ck_assert(fabs(f->vastai.min_reliability - 0.95) < 1e-9);
	ck_assert_int_eq(f->vastai.min_score, 300);
	fleetspec_free(f);
	f = ok("nodes: 1\nspot_policy: spot\nretry: true\nblocks: 4\nbackend_options: [{}]\n");
	ck_assert_int_eq(f->spot_policy, SPOT_SPOT);
	ck_assert(f->retry.enabled);
	ck_assert_uint_eq(f->retry.on_events, RETRY_NO_CAPACITY | RETRY_INTERRUPTION | RETRY_ERROR);
	ck_assert_int_eq(f->retry.duration, 3600);
	ck_assert_int_eq(f->blocks, 4);
	ck_assert(f->vastai.set); /* type defaults to vastai */
	ck_assert(f->vastai.min_reliability < 0);
	fleetspec_free(f);
	f = ok("nodes: 1\nretry: false\nmax_price: 1\n");
	ck_assert(!f->retry.enabled);
	fleetspec_free(f);
	f = ok("nodes: 1\nretry: {duration: 90m}\n");
	ck_assert(f->retry.enabled);
	ck_assert_uint_eq(f->retry.on_events, 7);
	ck_assert_int_eq(f->retry.duration, 5400);
	fleetspec_free(f);
	/* errors */
	BAD("nodes: 1\ntype: task\n", "fleets/gpu.yml:2: type: must be fleet");
	BAD("nodes: 1\ntype: null\n", "fleets/gpu.yml:2: type: must not be null");
	BAD("nodes: 1\nname: other\n", "fleets/gpu.yml:2: name: must equal the file name");
	BAD("nodes: 1\nname: [gpu]\n", "fleets/gpu.yml:2: name: must be a string");
	BAD("nodes: 1\ncolor: red\n", "fleets/gpu.yml:2: unknown key \"col\xe2\x80\xa6\" (5 chars)");
	BAD("nodes: 1\ntermination_policy: dont-destroy\n",
	    "fleets/gpu.yml:2: unknown key \"ter\xe2\x80\xa6\" (18 chars)");
	BAD("nodes: 1\nplacement: spread\n", "fleets/gpu.yml:2: placement: must be one of: any");
	BAD("nodes: 1\nblocks: 0\n", "fleets/gpu.yml:2: blocks: must be an integer >= 1 or auto");
	BAD("nodes: 1\nblocks: AUTO\n", "fleets/gpu.yml:2: blocks: must be an integer >= 1");
	BAD("nodes: 1\nblocks: null\n", "fleets/gpu.yml:2: blocks: must not be null");
	BAD("nodes: 1\nbackends: [aws, azurre]\n",
	    "fleets/gpu.yml:2: backends[1]: unknown backend type (known: amddevcloud, aws,");
	BAD("nodes: 1\nbackends: aws\n", "fleets/gpu.yml:2: backends: must be a list of strings");
	BAD("nodes: 1\nregions: [null]\n", "fleets/gpu.yml:2: regions[0]: must be a string");
	BAD("nodes: 1\ninstance_types: [yes]\n",
	    "fleets/gpu.yml:2: instance_types[0]: must be a string, not a boolean");
	BAD("nodes: 1\nspot_policy: on_demand\n",
	    "fleets/gpu.yml:2: spot_policy: must be one of: spot, on-demand, auto");
	BAD("nodes: 1\nmax_price: 0\n", "fleets/gpu.yml:2: max_price: must be greater than 0");
	BAD("nodes: 1\nmax_price: -1\n", "fleets/gpu.yml:2: max_price: must be greater than 0");
	BAD("nodes: 1\nmax_price: cheap\n", "fleets/gpu.yml:2: max_price: must be a number");
	BAD("nodes: 1\nreservation: [a]\n", "fleets/gpu.yml:2: reservation: must be a string");
	BAD("nodes: 1\ntags: {\"bad key\": x}\n",
	    "fleets/gpu.yml:2: tags[\"bad\xe2\x80\xa6\" (7 chars)]: invalid tag key");
	BAD("nodes: 1\ntags:\n  ok: fine\n  k: \"semi;colon\"\n",
	    "fleets/gpu.yml:4: tags[\"k\" (1 char)]: invalid tag value");
	char *y = xasprintf("nodes: 1\ntags:\n  %0*d: x\n", 61, 1);
	BAD(y, "fleets/gpu.yml:3: tags[\"000\xe2\x80\xa6\" (61 chars)]: invalid tag key");
	free(y);
	BAD("nodes: 1\ntags: [a]\n", "fleets/gpu.yml:2: tags: must be a mapping");
	BAD("nodes: 1\ntags: {a: null}\n", "fleets/gpu.yml:2: tags[\"a\" (1 char)]: must be a string");
	BAD("nodes: 1\nretry: {on_events: []}\n",
	    "fleets/gpu.yml:2: retry.on_events: `on_events` cannot be empty");
	BAD("nodes: 1\nretry: {on_events: [oom]}\n",
	    "fleets/gpu.yml:2: retry.on_events[0]: must be one of: no-capacity");
	BAD("nodes: 1\nretry: {duration: soon}\n", "fleets/gpu.yml:2: retry.duration: must be a");
	BAD("nodes: 1\nretry: {limit: 3}\n", "fleets/gpu.yml:2: retry: unknown key \"lim\xe2\x80\xa6\" (5 chars)");
	BAD("nodes: 1\nretry: 3\n", "fleets/gpu.yml:2: retry: must be true, false or a mapping");
	BAD("nodes: 1\nbackend_options:\n  - type: vastai\n  - type: vastai\n",
	    "fleets/gpu.yml:4: backend_options[1]: backend_options contains duplicate entry for "
	    "backend 'vastai'");
	BAD("nodes: 1\nbackend_options: [{type: runpod}]\n",
	    "fleets/gpu.yml:2: backend_options[0].type: must be vastai");
	BAD("nodes: 1\nbackend_options: [{offer_order: cheapest}]\n",
	    "fleets/gpu.yml:2: backend_options[0].offer_order: must be one of: score, price");
	BAD("nodes: 1\nbackend_options: [{min_reliability: 2}]\n",
	    "fleets/gpu.yml:2: backend_options[0].min_reliability: must be between 0 and 1");
	BAD("nodes: 1\nbackend_options: [{min_score: -1}]\n",
	    "fleets/gpu.yml:2: backend_options[0].min_score: must be an integer >= 0");
	BAD("nodes: 1\nbackend_options: [vastai]\n",
	    "fleets/gpu.yml:2: backend_options[0]: must be a mapping");
}
END_TEST

START_TEST(test_env)
{
	struct fleet_spec *f = ok(SSH_MIN "env:\n  - A=1\n  - B=x=y\n  - C=\n");
	ck_assert_uint_eq(f->nenv, 3);
	ck_assert_str_eq(f->env[0].key, "A");
	ck_assert_str_eq(f->env[0].value, "1");
	ck_assert_str_eq(f->env[1].value, "x=y");
	ck_assert_str_eq(f->env[2].value, "");
	fleetspec_free(f);
	f = ok(SSH_MIN "env:\n  PORT: 8080\n  _X: \"a b\"\n");
	ck_assert_uint_eq(f->nenv, 2);
	ck_assert_str_eq(f->env[0].key, "PORT");
	ck_assert_str_eq(f->env[0].value, "8080");
	ck_assert_str_eq(f->env[1].value, "a b");
	fleetspec_free(f);
	OK("nodes: 1\nenv: []\n"); /* the default is fine on a backend fleet */
	OK("nodes: 1\nenv: {}\n");
	BAD("nodes: 1\nenv: [A=1]\n",
	    "fleets/gpu.yml:2: env: is currently supported for SSH fleets only");
	BAD(SSH_MIN "env: [A=1, A=2]\n",
	    "fleets/gpu.yml:5: env[1]: Duplicate environment variable");
	BAD(SSH_MIN "env: [HOME]\n", "fleets/gpu.yml:5: env[0]: must be KEY=VALUE");
	BAD(SSH_MIN "env: [1A=x]\n", "fleets/gpu.yml:5: env[0]: variable names must match");
	BAD(SSH_MIN "env: [=x]\n", "fleets/gpu.yml:5: env[0]: variable names must match");
	BAD(SSH_MIN "env: {A-B: x}\n", "fleets/gpu.yml:5: env[\"A-B\" (3 chars)]: variable names must match");
	BAD(SSH_MIN "env: {A: null}\n", "fleets/gpu.yml:5: env[\"A\" (1 char)]: must be a string");
	BAD(SSH_MIN "env: {A: [1]}\n", "fleets/gpu.yml:5: env[\"A\" (1 char)]: must be a string");
	BAD(SSH_MIN "env: A=1\n", "fleets/gpu.yml:5: env: must be a list of KEY=VALUE");
	BAD(SSH_MIN "env: null\n", "fleets/gpu.yml:5: env: must not be null");
}
END_TEST

/* The server's rules, each with its exact "FILE:LINE: FIELD:" prefix. */
START_TEST(test_validation)
{
	BAD("", "fleets/gpu.yml:1: No ssh_config or nodes specified");
	BAD("# only a comment\n", "fleets/gpu.yml:1: No ssh_config or nodes specified");
	BAD("type: fleet\nplacement: any\n", "fleets/gpu.yml:1: No ssh_config or nodes specified");
	BAD("- nodes: 1\n", "fleets/gpu.yml:1: a fleet configuration must be a mapping");
	BAD("nodes: 1\n" SSH_MIN,
	    "fleets/gpu.yml:2: ssh_config: ssh_config and nodes are mutually exclusive");
	BAD(SSH_MIN "resources:\n  gpu: 1\n",
	    "fleets/gpu.yml:5: resources: SSH fleet configuration does not support this field");
	BAD(SSH_MIN "spot_policy: on-demand\n",
	    "fleets/gpu.yml:5: spot_policy: SSH fleet configuration does not support");
	BAD(SSH_MIN "retry: false\n", "fleets/gpu.yml:5: retry: SSH fleet configuration");
	BAD(SSH_MIN "tags: {}\n", "fleets/gpu.yml:5: tags: SSH fleet configuration");
	BAD(SSH_MIN "backends: [aws]\n", "fleets/gpu.yml:5: backends: SSH fleet configuration");
	OK(SSH_MIN "resources: null\nspot_policy: null\nplacement: cluster\nblocks: 2\n");
	/* the fleet name rule applies to the file name; a `name:` must agree */
	BAD_CTX("nodes: 1\n", "GPU", NULL, "fleets/GPU.yml:1: name: the fleet name");
	BAD_CTX("nodes: 1\n", "g", NULL, "fleets/g.yml:1: name: the fleet name (the file name");
	BAD_CTX("nodes: 1\n", "1gpu", NULL, "fleets/1gpu.yml:1: name: the fleet name");
	BAD_CTX("nodes: 1\n", "gpu_a", NULL, "fleets/gpu_a.yml:1: name: the fleet name");
	char long_name[43];
	memset(long_name, 'a', 42);
	long_name[42] = '\0';
	BAD_CTX("nodes: 1\n", long_name, NULL, "fleets/aaaa");
	long_name[41] = '\0';
	fleetspec_free(ok_as("nodes: 1\n", long_name));
	fleetspec_free(ok_as("nodes: 1\nname: a-1\n", "a-1"));
	/* bad YAML and limits come from ydoc */
	BAD("nodes: [1\n", "fleets/gpu.yml:");
	BAD("nodes: 1\nnodes: 2\n", "fleets/gpu.yml:2: duplicate key \"nod\xe2\x80\xa6\" (5 chars)");
	struct fleet_spec *f = NULL;
	char err[ERRSZ];
	char *huge = xcalloc(1, YDOC_MAX_BYTES + 2);
	memset(huge, '#', YDOC_MAX_BYTES + 1);
	ck_assert_int_eq(px(huge, "gpu", NULL, &f, err), -EFBIG);
	free(huge);
	/* values are never echoed */
	BAD("nodes: 1\nmax_price: s3cr3t-value\n", "fleets/gpu.yml:2: max_price:");
	ck_assert_int_eq(px("nodes: 1\nmax_price: s3cr3t-value\n", "gpu", NULL, &f, err), -EINVAL);
	ck_assert_ptr_null(strstr(err, "s3cr3t"));
	ck_assert_int_eq(px("nodes: 1\nresources: {gpu: \"s3cr3t:x:y\"}\n", "gpu", NULL, &f, err),
			 -EINVAL);
	ck_assert_ptr_null(strstr(err, "s3cr3t"));
	ck_assert_int_eq(px("nodes: 1\ntags: {k: \"s3cr3t;\"}\n", "gpu", NULL, &f, err), -EINVAL);
	ck_assert_ptr_null(strstr(err, "s3cr3t"));
}
END_TEST

/* ---- SSH fleets ---- */

START_TEST(test_ssh_fleet)
{
	size_t len_ed, len_rsa, len_admin, len_bastion;
	char *ed = home_file(".ssh/id_ed25519", &len_ed);
	char *rsa = home_file(".ssh/id_rsa", &len_rsa);
	char *admin = home_file(".ssh/admin_ed25519", &len_admin);
	char *bastion = home_file(".ssh/bastion_ed25519", &len_bastion);
	struct fleet_spec *f = ok("type: fleet\n"
				  "blocks: 2\n"
				  "ssh_config:\n"
				  "  user: ubuntu\n"
				  "  port: 2200\n"
				  "  identity_file: ~/.ssh/id_ed25519\n"
				  "  proxy_jump:\n"
				  "    hostname: bastion.example.com\n"
				  "    user: jump\n"
				  "    identity_file: .ssh/bastion_ed25519\n"
				  "  hosts:\n"
				  "    - 10.0.0.1\n"
				  "    - hostname: node-2.internal\n"
				  "      user: admin\n"
				  "      port: 22\n"
				  "      identity_file: ~/.ssh/admin_ed25519\n"
				  "      blocks: auto\n"
				  "    - hostname: 10.0.0.3\n"
				  "      identity_file: ~/.ssh/id_rsa\n"
				  "      blocks: 8\n"
				  "      proxy_jump:\n"
				  "        hostname: 192.0.2.9\n"
				  "        port: 2022\n"
				  "        user: root\n"
				  "        identity_file: ~/.ssh/id_rsa\n"
				  "  network: 10.0.0.7/16\n"
				  "env: {HF_HOME: /data}\n");
	ck_assert(f->ssh);
	ck_assert_uint_eq(f->nhosts, 3);
	ck_assert_str_eq(f->network, "10.0.0.0/16");
	ck_assert_int_eq(f->nodes_min, 0);
	ck_assert_int_eq(f->blocks, 2);
	const struct ssh_host *h = &f->hosts[0];
	ck_assert_str_eq(h->ep.hostname, "10.0.0.1");
	ck_assert_str_eq(h->ep.user, "ubuntu");
	ck_assert_int_eq(h->ep.port, 2200);
	ck_assert_uint_eq(h->ep.keylen, len_ed);
	ck_assert_mem_eq(h->ep.key, ed, len_ed);
	ck_assert_ptr_nonnull(strstr(h->ep.key_path, "/.ssh/id_ed25519"));
	ck_assert_int_eq(h->blocks, 2); /* the fleet's */
	ck_assert_ptr_null(h->internal_ip);
	ck_assert_ptr_nonnull(h->proxy);
	ck_assert_str_eq(h->proxy->hostname, "bastion.example.com");
	ck_assert_str_eq(h->proxy->user, "jump");
	ck_assert_int_eq(h->proxy->port, 22);
	ck_assert_uint_eq(h->proxy->keylen, len_bastion);
	ck_assert_mem_eq(h->proxy->key, bastion, len_bastion);
	h = &f->hosts[1];
	ck_assert_str_eq(h->ep.hostname, "node-2.internal");
	ck_assert_str_eq(h->ep.user, "admin");
	ck_assert_int_eq(h->ep.port, 22);
	ck_assert_mem_eq(h->ep.key, admin, len_admin);
	ck_assert_int_eq(h->blocks, 0);
	ck_assert_str_eq(h->proxy->hostname, "bastion.example.com");
	h = &f->hosts[2];
	ck_assert_str_eq(h->ep.user, "ubuntu");
	ck_assert_int_eq(h->ep.port, 2200);
	ck_assert_uint_eq(h->ep.keylen, len_rsa);
	ck_assert_mem_eq(h->ep.key, rsa, len_rsa);
	ck_assert_int_eq(h->blocks, 8);
	ck_assert_str_eq(h->proxy->hostname, "192.0.2.9");
	ck_assert_int_eq(h->proxy->port, 2022);
	ck_assert_str_eq(h->proxy->user, "root");
	ck_assert_mem_eq(h->proxy->key, rsa, len_rsa);
	ck_assert_uint_eq(f->nenv, 1);
	fleetspec_free(f);
	/* per-host user and key with nothing fleet-wide; internal IPs on every host */
	f = ok("ssh_config:\n"
	       "  hosts:\n"
	       "    - {hostname: a, user: u1, identity_file: ~/.ssh/id_rsa, internal_ip: "
	       "10.1.0.1}\n"
	       "    - {hostname: b, user: u2, identity_file: ~/.ssh/id_rsa, internal_ip: "
	       "\"FD00:0::0002\"}\n");
	ck_assert_str_eq(f->hosts[0].internal_ip, "10.1.0.1");
	ck_assert_str_eq(f->hosts[1].internal_ip, "fd00::2"); /* normalized */
	ck_assert_str_eq(f->hosts[1].ep.user, "u2");
	ck_assert_int_eq(f->hosts[1].ep.port, 22);
	ck_assert_ptr_null(f->hosts[0].proxy);
	ck_assert_int_eq(f->hosts[0].blocks, 1);
	fleetspec_free(f);
	/* networks: prefix, netmask, hostmask, no prefix, IPv6 */
	static const struct {
		const char *in, *out;
	} nets[] = {{"192.168.1.77/24", "192.168.1.0/24"},
		    {"10.0.0.0/255.0.0.0", "10.0.0.0/8"},
		    {"172.16.0.0/0.0.255.255", "172.16.0.0/16"},
		    {"10.2.3.4", "10.2.3.4/32"},
		    {"fd12:3456::/48", "fd12:3456::/48"},
		    {"100.64.0.0/10", NULL},
		    {"8.8.8.0/24", NULL},
		    {"10.0.0.0/7", NULL},
		    {"10.0.0.0/33", ""},
		    {"10.0.0/8", ""},
		    {"10.0.0.0/", ""},
		    {"10.0.0.0/255.0.255.0", ""},
		    {"2001:4860::/32", NULL},
		    {"::ffff:0:0/96", "::ffff:0.0.0.0/96"}};
	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++) {
		char *y = xasprintf(SSH_MIN "  network: \"%s\"\n", nets[i].in);
		if (nets[i].out && *nets[i].out) {
			f = ok(y);
			ck_assert_str_eq(f->network, nets[i].out);
			fleetspec_free(f);
		} else if (nets[i].out) {
			BAD(y, "fleets/gpu.yml:5: ssh_config.network: Failed to parse network");
		} else {
			BAD(y, "fleets/gpu.yml:5: ssh_config.network: Public network is specified");
		}
		free(y);
	}
	/* internal_ip privacy */
	static const struct {
		const char *ip;
		bool ok;
	} ips[] = {{"10.0.0.1", true},	    {"172.31.255.254", true},  {"192.168.0.1", true},
		   {"127.0.0.1", true},	    {"169.254.1.1", true},     {"fe80::1", true},
		   {"fc00::1", true},	    {"::ffff:10.0.0.1", true}, {"172.32.0.1", false},
		   {"100.64.0.1", false},   {"8.8.8.8", false},	       {"192.0.0.9", false},
		   {"2a00:1450::1", false}, {"::ffff:8.8.8.8", false}};
	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
		char *y = xasprintf(SSH_HEAD "  hosts:\n    - {hostname: h, internal_ip: \"%s\"}\n",
				    ips[i].ip);
		if (ips[i].ok)
			OK(y);
		else
			BAD(y,
			    "fleets/gpu.yml:5: ssh_config.hosts[0].internal_ip: IP address is not "
			    "private");
		free(y);
	}
	free(ed);
	free(rsa);
	free(admin);
	free(bastion);
}
END_TEST

START_TEST(test_ssh_errors)
{
	BAD("ssh_config:\n  identity_file: ~/.ssh/id_rsa\n  hosts:\n    - a\n    - b\n",
	    "fleets/gpu.yml:4: ssh_config.hosts[0]: No ssh user specified for this host");
	BAD("ssh_config:\n  user: u\n  hosts:\n    - {hostname: a, identity_file: ~/.ssh/id_rsa}\n"
	    "    - b\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[1]: No ssh key specified for this host");
	BAD(SSH_HEAD "  hosts:\n    - {hostname: a, internal_ip: 10.0.0.1}\n    - b\n",
	    "fleets/gpu.yml:6: ssh_config.hosts[1]: internal_ip must be specified for all hosts");
	BAD(SSH_HEAD "  hosts:\n    - b\n    - {hostname: a, internal_ip: 10.0.0.1}\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[0]: internal_ip must be specified for all hosts");
	BAD(SSH_HEAD
	    "  network: 10.0.0.0/8\n  hosts:\n    - {hostname: a, internal_ip: 10.0.0.1}\n",
	    "fleets/gpu.yml:4: ssh_config.network: internal_ip is mutually exclusive with network");
	BAD(SSH_HEAD "  hosts:\n    - {hostname: a, internal_ip: 10.0.0.300}\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[0].internal_ip: Invalid IP address");
	BAD(SSH_HEAD "  hosts:\n    - {hostname: a, internal_ip: 010.0.0.1}\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[0].internal_ip: Invalid IP address");
	BAD(SSH_HEAD "  hosts: [a, b, a]\n",
	    "fleets/gpu.yml:4: ssh_config.hosts[2]: this hostname appears twice in hosts");
	BAD(SSH_HEAD "  hosts:\n    - {user: x}\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[0].hostname: required field is missing");
	BAD(SSH_HEAD "  hosts:\n    - {hostname: a, shell: zsh}\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[0]: unknown key \"she\xe2\x80\xa6\" (5 chars)");
	BAD(SSH_HEAD "  hosts: [\"\"]\n",
	    "fleets/gpu.yml:4: ssh_config.hosts[0]: must not be empty");
	BAD(SSH_HEAD "  hosts: [\"a b\"]\n",
	    "fleets/gpu.yml:4: ssh_config.hosts[0]: must not contain spaces");
	BAD(SSH_HEAD "  hosts: [-oProxyCommand=x]\n",
	    "fleets/gpu.yml:4: ssh_config.hosts[0]: must not start with '-'");
	BAD(SSH_HEAD "  hosts: [[a]]\n", "fleets/gpu.yml:4: ssh_config.hosts[0]: must be a string");
	BAD(SSH_HEAD "  hosts:\n    - {hostname: a, port: 0}\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[0].port: must be between 1 and 65535");
	BAD(SSH_HEAD "  hosts:\n    - {hostname: a, blocks: 0}\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[0].blocks: must be an integer >= 1 or auto");
	BAD(SSH_HEAD "  port: ssh\n  hosts: [a]\n",
	    "fleets/gpu.yml:4: ssh_config.port: must be an integer");
	BAD(SSH_HEAD "  port: 70000\n  hosts: [a]\n",
	    "fleets/gpu.yml:4: ssh_config.port: must be between 1 and 65535");
	BAD(SSH_HEAD, "fleets/gpu.yml:2: ssh_config.hosts: required field is missing");
	BAD(SSH_HEAD "  hosts: a\n", "fleets/gpu.yml:4: ssh_config.hosts: must be a list");
	BAD(SSH_HEAD "  hosts: [a]\n  ssh_key: {public: x, private: y}\n",
	    "fleets/gpu.yml:5: ssh_config.ssh_key: is the wire form");
	BAD(SSH_HEAD "  hosts:\n    - {hostname: a, ssh_key: {public: x}}\n",
	    "fleets/gpu.yml:5: ssh_config.hosts[0].ssh_key: is the wire form");
	BAD(SSH_HEAD "  hosts: [a]\n  user2: x\n",
	    "fleets/gpu.yml:5: ssh_config: unknown key \"use\xe2\x80\xa6\" (5 chars)");
	BAD(SSH_HEAD "  hosts: [a]\n  proxy_jump: {hostname: j, user: u}\n",
	    "fleets/gpu.yml:5: ssh_config.proxy_jump.identity_file: required field is missing");
	BAD(SSH_HEAD "  hosts: [a]\n  proxy_jump: {hostname: j, identity_file: ~/.ssh/id_rsa}\n",
	    "fleets/gpu.yml:5: ssh_config.proxy_jump.user: required field is missing");
	BAD(SSH_HEAD "  hosts: [a]\n  proxy_jump: {user: u, identity_file: ~/.ssh/id_rsa}\n",
	    "fleets/gpu.yml:5: ssh_config.proxy_jump.hostname: required field is missing");
	BAD(SSH_HEAD "  hosts: [a]\n  proxy_jump: {hostname: j, user: u, identity_file: "
		     "~/.ssh/id_rsa, internal_ip: 10.0.0.1}\n",
	    "fleets/gpu.yml:5: ssh_config.proxy_jump: unknown key \"int\xe2\x80\xa6\" (11 chars)");
	BAD(SSH_HEAD "  hosts: [a]\n  user: again\n", "fleets/gpu.yml:5: duplicate key \"use\xe2\x80\xa6\" (4 chars)");
	BAD("ssh_config:\n  user: \"\"\n  identity_file: ~/.ssh/id_rsa\n  hosts: [a]\n",
	    "fleets/gpu.yml:2: ssh_config.user: must not be empty");
	BAD("ssh_config: [a]\n", "fleets/gpu.yml:1: ssh_config: must be a mapping");
	/* hosts: [] is a fleet with no instances */
	struct fleet_spec *f = ok(SSH_HEAD "  hosts: []\n");
	ck_assert_uint_eq(f->nhosts, 0);
	fleetspec_free(f);
}
END_TEST

/* ---- identity files ---- */

START_TEST(test_identity_files)
{
	static const char *const good[] = {
		"~/.ssh/id_rsa",	 /* RSA, BEGIN RSA PRIVATE KEY (OpenSSL) */
		"~/keys/rsa-pkcs8.pem",	 /* RSA, PKCS#8 */
		"~/keys/ec.pem",	 /* ECDSA P-384, BEGIN EC PRIVATE KEY */
		"~/.ssh/id_ed25519",	 /* Ed25519, OpenSSH format (ssh-keygen) */
		"~/keys/ecdsa_openssh",	 /* ECDSA P-256, OpenSSH format */
		"~/keys/rsa_openssh",	 /* RSA, OpenSSH format */
		"~/keys/rsa_keygen.pem", /* RSA, ssh-keygen -m PEM */
		"~/keys/handmade",	 /* a minimal container made here */
		"keys/ec.pem",		 /* relative: the writer's cwd */
		"@HOME@/keys/ec.pem",	 /* absolute */
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *p = good[i];
		char *abs = NULL;
		if (!strncmp(p, "@HOME@", 6))
			p = abs = xasprintf("%s%s", g_home, p + 6);
		char *y =
			xasprintf("ssh_config:\n  user: u\n  identity_file: %s\n  hosts: [a]\n", p);
		OK(y);
		free(y);
		free(abs);
	}
	static const struct {
		const char *path, *msg;
	} bad[] = {
		{"~/bad/ed25519-enc", "the key is encrypted with a passphrase"},
		{"~/bad/aes", "the key is encrypted with a passphrase"},
		{"~/bad/rsa-enc.pem", "the key is encrypted with a passphrase"},
		{"~/bad/rsa-enc8.pem", "the key is encrypted with a passphrase"},
		{"~/bad/k1.pem", "unsupported ECDSA curve"},
		{"~/bad/x25519.pem", "unsupported key type"},
		{"~/bad/dss", "unsupported key type"},
		{"~/bad/two-keys", "the file must hold exactly one key"},
		{"~/bad/b64", "not a valid OpenSSH private key"},
		{"~/.ssh/id_ed25519.pub", "is a public key"},
		{"~/bad/garbage", "not a private key"},
		{"~/bad/empty", "not a private key"},
		{"~/bad/big", "larger than 65536 bytes"},
		{"~/bad/missing", "no such file"},
		{"~/bad", "not a regular file"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *y = xasprintf("ssh_config:\n  user: u\n  identity_file: %s\n  hosts: [a]\n",
				    bad[i].path);
		/* the path is user text: shown as str_redact does */
		char shown[STR_REDACT_LEN];
		char *abs = xasprintf("%s%s", g_home, bad[i].path + 1);
		str_redact(shown, sizeof(shown), abs);
		char *exp = xasprintf("fleets/gpu.yml:3: ssh_config.identity_file: %s: %s", shown,
				      bad[i].msg);
		BAD(y, exp);
		free(abs);
		free(exp);
		free(y);
	}
	/* on a host, on a proxy */
	char shown[STR_REDACT_LEN];
	char *abs = xasprintf("%s/bad/dss", g_home);
	str_redact(shown, sizeof(shown), abs);
	free(abs);
	char *exp = xasprintf("fleets/gpu.yml:5: ssh_config.hosts[0].identity_file: "
			      "%s: unsupported key type",
			      shown);
	BAD(SSH_HEAD "  hosts:\n    - {hostname: a, identity_file: ~/bad/dss}\n", exp);
	free(exp);
	abs = xasprintf("%s/bad/ed25519-enc", g_home);
	str_redact(shown, sizeof(shown), abs);
	free(abs);
	exp = xasprintf("fleets/gpu.yml:8: ssh_config.proxy_jump.identity_file: "
			"%s: the key is encrypted",
			shown);
	BAD(SSH_HEAD "  hosts: [a]\n  proxy_jump:\n    hostname: j\n    user: u\n"
		     "    identity_file: ~/bad/ed25519-enc\n",
	    exp);
	free(exp);
	/* path rules shared with backends/schema.c (lib/fileref.c) */
	BAD("ssh_config:\n  user: u\n  identity_file: ~root/.ssh/id_rsa\n  hosts: [a]\n",
	    "fleets/gpu.yml:3: ssh_config.identity_file: only \"~/\" is supported");
	BAD("ssh_config:\n  user: u\n  identity_file: \"\"\n  hosts: [a]\n",
	    "fleets/gpu.yml:3: ssh_config.identity_file: must not be empty");
	struct fileref_ctx noctx = {0};
	BAD_CTX("ssh_config:\n  user: u\n  identity_file: ~/.ssh/id_rsa\n  hosts: [a]\n", "gpu",
		&noctx, "fleets/gpu.yml:3: ssh_config.identity_file: cannot expand \"~\"");
	BAD_CTX("ssh_config:\n  user: u\n  identity_file: .ssh/id_rsa\n  hosts: [a]\n", "gpu",
		&noctx, "fleets/gpu.yml:3: ssh_config.identity_file: relative path");
	struct fileref_ctx mnt = {.home = g_home, .cwd = g_home, .mountpoint = g_home};
	abs = xasprintf("%s/.ssh/id_rsa", g_home);
	str_redact(shown, sizeof(shown), abs);
	free(abs);
	exp = xasprintf("fleets/gpu.yml:3: ssh_config.identity_file: %s: is inside "
			"the fleetfs mount",
			shown);
	BAD_CTX("ssh_config:\n  user: u\n  identity_file: ~/.ssh/id_rsa\n  hosts: [a]\n", "gpu",
		&mnt, exp);
	free(exp);
}
END_TEST

static void ln(const char *target, const char *rel)
{
	char path[PATH_MAX];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", g_home, rel), 0);
	ck_assert_int_eq(symlink(target, path), 0);
}

/* A file reached through a symbolic link or ".." into the mount is refused before anything
 * touches the mount (here a plain directory stands in for it: the integration test
 * test_redact.py proves no call reaches a real single-threaded mount). */
START_TEST(test_identity_files_through_links)
{
	char mp[PATH_MAX], sshdir[PATH_MAX], e[ERRSZ];
	size_t len = 0;
	ck_assert_int_eq(fmt(mp, sizeof(mp), "%s/fakemnt", g_home), 0);
	ck_assert_int_eq(fmt(sshdir, sizeof(sshdir), "%s/.ssh", g_home), 0);
	mk("fakemnt");
	char *key = home_file(".ssh/id_ed25519", &len);
	put("fakemnt/id", key, len);
	free(key);
	ln(mp, "l");			/* absolute link to the mount */
	ln("l", "l2");			/* a chain of links */
	ln("fakemnt", "rel");		/* a relative link */
	ln("loop", "loop");		/* a loop */
	ln("../.ssh/id_ed25519", "keys/okkey"); /* a link to a file outside: fine */
	ln(".", "dot");
	struct fileref_ctx m = {.home = g_home, .cwd = sshdir, .mountpoint = mp};
	static const struct {
		const char *path, *why;
	} bad[] = {
		{"~/fakemnt/id", "is inside the fleetfs mount"},
		{"~/l/id", "leads into the fleetfs mount (through a symbolic link or ..)"},
		{"~/l2/id", "leads into the fleetfs mount"},
		{"~/rel/id", "leads into the fleetfs mount"},
		{"~/dot/dot/l/id", "leads into the fleetfs mount"},
		{"~/.ssh/../fakemnt/id", "leads into the fleetfs mount"},
		{"../fakemnt/id", "leads into the fleetfs mount"}, /* relative to cwd .ssh */
		{"../keys/../l2/../l/id", "leads into the fleetfs mount"},
		{"~/l", "leads into the fleetfs mount"}, /* the mount point itself */
		/* even only passing through the mount point: "rel/.." is its root's parent */
		{"../rel/../.ssh/id_ed25519", "leads into the fleetfs mount"},
		{"~/loop/id", "too many symbolic links"},
		{"~/keys/okkey/x", "a path component is not a directory"},
		{"~/keys", "not a regular file"},
		{"~/nope/x", "no such file"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *y = xasprintf("ssh_config:\n  user: u\n  identity_file: %s\n  hosts: [a]\n",
				    bad[i].path);
		ck_assert_int_eq(px(y, "gpu", &m, NULL, e), -EINVAL);
		ck_assert_msg(strstr(e, bad[i].why), "%s: %s", bad[i].path, e);
		ck_assert_msg(!strncmp(e, "fleets/gpu.yml:3: ssh_config.identity_file: \"", 45),
			      "%s", e);
		ck_assert_ptr_null(strstr(e, g_home));
		free(y);
	}
	/* links that stay outside work, also through the fake mount's parent */
	static const char *const good[] = {"~/keys/okkey", "~/dot/keys/okkey", "id_ed25519",
					   "../keys/../.ssh/id_ed25519"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *y = xasprintf("ssh_config:\n  user: u\n  identity_file: %s\n  hosts: [a]\n",
				    good[i]);
		ck_assert_msg(px(y, "gpu", &m, NULL, e) == 0, "%s: %s", good[i], e);
		free(y);
	}
}
END_TEST

/* ---- in-place updates ---- */

static int upd(const char *a, const char *b, char *err)
{
	struct fleet_spec *cur = ok(a), *next = ok(b);
	err[0] = '\0';
	int r = fleetspec_update_check(cur, next, err, ERRSZ);
	fleetspec_free(cur);
	fleetspec_free(next);
	return r;
}

#define UPD_OK(a, b)                                                                               \
	do {                                                                                       \
		char e_[ERRSZ];                                                                    \
		ck_assert_msg(upd((a), (b), e_) == 0, "update refused: %s", e_);                   \
	} while (0)

#define UPD_BAD(a, b, prefix)                                                                      \
	do {                                                                                       \
		char e_[ERRSZ];                                                                    \
		ck_assert_int_eq(upd((a), (b), e_), -EINVAL);                                      \
		ck_assert_msg(strncmp(e_, (prefix), strlen(prefix)) == 0,                          \
			      "expected prefix \"%s\"\n                   got \"%s\"", (prefix),   \
			      e_);                                                                 \
	} while (0)

START_TEST(test_update_check)
{
	const char *base = "nodes: 1\nresources: {gpu: A100}\nidle_duration: 1h\n";
	UPD_OK(base, base);
	UPD_OK(base, "nodes: 0..4\nresources: {gpu: H100:8}\nidle_duration: 3600\n"
		     "reservation: r\ntags: {a: b}\nbackends: [aws]\nregions: [x]\n"
		     "availability_zones: [y]\ninstance_types: [z]\nspot_policy: spot\n"
		     "max_price: 3\n");
	UPD_BAD(base, "nodes: 1\nidle_duration: 2h\n", "idle_duration: cannot be changed in place");
	UPD_BAD(base, "nodes: 1\nidle_duration: 1h\nplacement: cluster\n",
		"placement: cannot be changed in place");
	UPD_BAD(base, "nodes: 1\nidle_duration: 1h\nblocks: 2\n", "blocks: cannot be changed");
	UPD_BAD(base, "nodes: 1\nidle_duration: 1h\nretry: true\n", "retry: cannot be changed");
	UPD_BAD(base, "nodes: 1\nidle_duration: 1h\nbackend_options: [{min_score: 1}]\n",
		"backend_options: cannot be changed");
	UPD_BAD(base, SSH_MIN, "ssh_config: the fleet type changed from backend to SSH");
	UPD_BAD(SSH_MIN, base, "nodes: the fleet type changed from SSH to backend");
	/* SSH: hosts may be added and removed; a kept host may not change */
	const char *ssh2 = SSH_HEAD "  hosts: [10.0.0.1, 10.0.0.2]\n";
	UPD_OK(ssh2, SSH_HEAD "  hosts: [10.0.0.2, 10.0.0.3, 10.0.0.4]\n");
	UPD_OK(ssh2, SSH_HEAD "  hosts: []\n");
	/* the same key through another path is the same host configuration */
	UPD_OK(ssh2, "ssh_config:\n  user: ubuntu\n  identity_file: .ssh/id_ed25519\n"
		     "  hosts: [10.0.0.1, {hostname: 10.0.0.2, identity_file: "
		     "~/.ssh/../.ssh/id_ed25519}]\n");
	UPD_BAD(ssh2, SSH_HEAD "  hosts: [10.0.0.1, {hostname: 10.0.0.2, user: root}]\n",
		"ssh_config.hosts[1]: host \"10.\xe2\x80\xa6\" (8 chars): its connection parameters cannot be changed");
	UPD_BAD(ssh2, SSH_HEAD "  hosts: [{hostname: 10.0.0.1, port: 2222}]\n",
		"ssh_config.hosts[0]: host \"10.\xe2\x80\xa6\" (8 chars):");
	UPD_BAD(ssh2, SSH_HEAD "  hosts: [{hostname: 10.0.0.1, identity_file: ~/.ssh/id_rsa}]\n",
		"ssh_config.hosts[0]: host \"10.\xe2\x80\xa6\" (8 chars):");
	UPD_BAD(ssh2, SSH_HEAD "  hosts: [{hostname: 10.0.0.1, blocks: 2}]\n",
		"ssh_config.hosts[0]: host \"10.\xe2\x80\xa6\" (8 chars):");
	UPD_BAD(ssh2,
		SSH_HEAD "  hosts: [10.0.0.1]\n  proxy_jump: {hostname: j, user: u, "
			 "identity_file: ~/.ssh/id_rsa}\n",
		"ssh_config.hosts[0]: host \"10.\xe2\x80\xa6\" (8 chars):");
	UPD_BAD(ssh2, SSH_HEAD "  hosts: [{hostname: 10.0.0.1, internal_ip: 10.0.0.1}]\n",
		"ssh_config.hosts[0]: host \"10.\xe2\x80\xa6\" (8 chars):");
	UPD_BAD(ssh2, SSH_HEAD "  hosts: [10.0.0.1]\n  network: 10.0.0.0/8\n",
		"ssh_config.network: cannot be changed in place");
	UPD_BAD(ssh2, SSH_HEAD "  hosts: [10.0.0.1]\nenv: [A=1]\n", "env: cannot be changed");
	UPD_BAD(ssh2, SSH_HEAD "  hosts: [10.0.0.1]\nplacement: cluster\n",
		"placement: cannot be changed");
	/* a fleet-wide user change reaches kept hosts */
	UPD_BAD(ssh2,
		"ssh_config:\n  user: root\n  identity_file: ~/.ssh/id_ed25519\n"
		"  hosts: [10.0.0.3, 10.0.0.1]\n",
		"ssh_config.hosts[1]: host \"10.\xe2\x80\xa6\" (8 chars):");
}
END_TEST

/* ---- examples/fleets ---- */

START_TEST(test_examples)
{
	const char *dir = FLEETFS_SRCDIR "/examples/fleets";
	size_t seen = 0;
	DIR *dp = opendir(dir);
	ck_assert_msg(dp != NULL, "cannot open %s", dir);
	for (struct dirent *de; (de = readdir(dp));) {
		size_t n = strlen(de->d_name), len = 0;
		char path[PATH_MAX], name[64], err[ERRSZ];
		if (n < 5 || strcmp(de->d_name + n - 4, ".yml"))
			continue;
		ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", dir, de->d_name), 0);
		ck_assert_int_eq(fmt(name, sizeof(name), "%.*s", (int)(n - 4), de->d_name), 0);
		char *data = file_read(path, &len);
		ck_assert_ptr_nonnull(data);
		struct fleet_spec *f = NULL;
		/* ~/ is the fixture's home, which holds the identity files the example names */
		int r = px(data, name, NULL, &f, err);
		ck_assert_msg(r == 0, "%s: %s", de->d_name, err);
		if (!strcmp(name, "ssh-fleet")) {
			ck_assert(f->ssh);
			ck_assert_uint_eq(f->nhosts, 3);
			ck_assert_str_eq(f->hosts[2].ep.user, "admin");
			ck_assert_int_eq(f->hosts[2].ep.port, 2222);
			ck_assert_int_eq(f->hosts[2].blocks, 2);
			ck_assert_str_eq(f->hosts[0].proxy->hostname, "bastion.example.com");
			ck_assert_str_eq(f->network, "10.0.0.0/24");
			ck_assert_uint_eq(f->nenv, 2);
		} else if (!strcmp(name, "cloud-fleet")) {
			ck_assert(!f->ssh);
			ck_assert_int_eq(f->nodes_target, 2);
			ck_assert_int_eq(f->nodes_max, 4);
			names_are(&f->resources.gpu, "H100", NULL);
			ck_assert_int_eq(f->idle_duration, 3600);
			ck_assert_int_eq(f->spot_policy, SPOT_AUTO);
		}
		fleetspec_free(f);
		free(data);
		seen++;
	}
	closedir(dp);
	ck_assert_uint_ge(seen, 2);
}
END_TEST

Suite *fleetspec_suite(void)
{
	Suite *s = suite_create("fleetspec");
	TCase *res = tcase_create("resources");
	TCase *fields = tcase_create("fields");
	TCase *ssh = tcase_create("ssh");
	TCase *tcs[] = {res, fields, ssh};
	for (size_t i = 0; i < sizeof(tcs) / sizeof(tcs[0]); i++) {
		tcase_add_unchecked_fixture(tcs[i], fixture_setup, fixture_teardown);
		tcase_set_timeout(tcs[i], 60);
		suite_add_tcase(s, tcs[i]);
	}
	tcase_add_test(res, test_range_strings);
	tcase_add_test(res, test_gpu_table);
	tcase_add_test(res, test_resources_table);
	tcase_add_test(res, test_resources_forms);
	tcase_add_test(fields, test_nodes);
	tcase_add_test(fields, test_idle_duration);
	tcase_add_test(fields, test_profile_fields);
	tcase_add_test(fields, test_env);
	tcase_add_test(fields, test_validation);
	tcase_add_test(ssh, test_ssh_fleet);
	tcase_add_test(ssh, test_ssh_errors);
	tcase_add_test(ssh, test_identity_files);
	tcase_add_test(ssh, test_identity_files_through_links);
	tcase_add_test(ssh, test_update_check);
	tcase_add_test(ssh, test_examples);
	return s;
}
