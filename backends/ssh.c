/* ssh: see ssh.h.
 *
 * Design.
 *
 * - Every libssh2 session is non-blocking. A call that returns LIBSSH2_ERROR_EAGAIN is
 *   retried after link_wait(), which poll()s the TCP socket in the directions the session is
 *   blocked on, never past the call's single deadline. Name resolution runs in a detached
 *   thread so that it is bounded too (getaddrinfo has no timeout of its own).
 *
 * - Jump host. The target session runs over a direct-tcpip channel of the jump session
 *   through libssh2's SEND/RECV callbacks, in the calling thread, with no extra socket or
 *   thread. The callbacks only copy bytes between the target session and two bounded
 *   buffers of struct tunnel; they never call into the jump session (no re-entrancy).
 *   tun_pump(), called from link_wait() whenever the target session would block, moves the
 *   buffers through the jump channel. libssh2 keeps one outgoing packet per session and
 *   fails with LIBSSH2_ERROR_BAD_USE when another call sends while it is half written, so
 *   the pump remembers which jump call (read or write) left a packet half sent and repeats
 *   exactly that call first. Waiting is on the jump host's socket: POLLOUT while a packet
 *   is half sent, else POLLIN. A socketpair and a pump thread would work too, but would add
 *   a thread that owns the jump session, its shutdown and joining on timeout, and a second
 *   socket per call, for no gain: the same one-slot discipline is needed either way.
 *
 * - Keys. Ed25519 and ECDSA keys (PEM, PKCS#8 or the OpenSSH format) authenticate with
 *   libssh2_userauth_publickey_frommemory; OpenSSH-format ECDSA keys are first rewritten as
 *   PKCS#8 PEM because libssh2 1.10 leaks memory parsing them. Every key is parsed here first
 *   (public blob, type, no passphrase), so a bad key fails with -EINVAL before any
 *   connection. RSA does not go through frommemory: libssh2 1.10 signs only "ssh-rsa"
 *   (SHA-1), which OpenSSH 8.8+ refuses by default. For RSA keys we sign ourselves with
 *   OpenSSL (rsa-sha2-512, RFC 8332) through libssh2_userauth_publickey's callback. libssh2
 *   1.10 takes the algorithm name it sends from the first string of the public key blob, so
 *   the blob we hand it starts with "rsa-sha2-512" instead of "ssh-rsa"; OpenSSH parses that
 *   name as an RSA key. If the server refuses, a plain ssh-rsa attempt follows (servers that
 *   still allow SHA-1).
 *
 * - Host keys are reported as "TYPE BASE64". With a pin, its type is preferred in the key
 *   exchange so that a server with several host keys presents the pinned one; a different
 *   key is refused before authentication.
 */
#include "ssh.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "../lib/util.h"
#include "../lib/enc.h"

#define KEY_TEXT_MAX (64 * 1024) /* a private key's text */
#define BLOB_MAX (16 * 1024)	 /* a public key blob */
#define TUN_BUF (64 * 1024)	 /* each direction of a tunnel */
#define HOST_MAX 253
#define IO_CHUNK (32 * 1024)

/* ---- small helpers ---- */

static int seterr(char *err, size_t errlen, int rc, const char *f, ...)
	__attribute__((format(printf, 4, 5)));
static int seterr(char *err, size_t errlen, int rc, const char *f, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, f);
		vfmt_cut(err, errlen, f, ap);
		va_end(ap);
	}
	return rc;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
	int64_t r = deadline - now_ms();
	if (r <= 0)
		return 0;
	return r > INT_MAX ? INT_MAX : (int)r;
}

static const char *last_error(LIBSSH2_SESSION *s)
{
	char *msg = NULL;
	if (!s)
		return "";
	libssh2_session_last_error(s, &msg, NULL, 0);
	return msg ? msg : "";
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_rc;

static void global_init_once(void)
{
	g_init_rc = libssh2_init(0) == 0 ? 0 : -EIO;
}

int sshc_global_init(void)
{
	pthread_once(&g_once, global_init_once);
	return g_init_rc;
}

/* ---- SSH wire encoding ---- */

static int wr_u32(struct buf *b, uint32_t v)
{
	unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
			      (unsigned char)(v >> 8), (unsigned char)v};
	return buf_append(b, p, 4);
}

static int wr_str(struct buf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX)
		return -EFBIG;
	int r = wr_u32(b, (uint32_t)n);
	return r ? r : buf_append(b, p, n);
}

/* An mpint (RFC 4251 §5) of a non-negative BIGNUM. */
static int wr_bn(struct buf *b, const BIGNUM *bn)
{
	int n = BN_num_bytes(bn);
	if (n < 0 || n > 2048)
		return -EINVAL;
	unsigned char tmp[2049];
	tmp[0] = 0;
	BN_bn2bin(bn, tmp + 1);
	if (n > 0 && (tmp[1] & 0x80))
		return wr_str(b, tmp, (size_t)n + 1);
	return wr_str(b, tmp + 1, (size_t)n);
}

struct rd {
	const unsigned char *p;
	size_t n;
};

static int rd_u32(struct rd *r, uint32_t *v)
{
	if (r->n < 4)
		return -EINVAL;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->n -= 4;
	return 0;
}

static int rd_str(struct rd *r, const unsigned char **p, size_t *n)
{
	uint32_t len;
	if (rd_u32(r, &len) || len > r->n)
		return -EINVAL;
	*p = r->p;
	*n = len;
	r->p += len;
	r->n -= len;
	return 0;
}

static bool str_is(const unsigned char *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* A positive mpint as a BIGNUM (caller frees). */
static BIGNUM *rd_bn(struct rd *r)
{
	const unsigned char *p;
	size_t n;
	if (rd_str(r, &p, &n) || n > 2049 || (n && (p[0] & 0x80)))
		return NULL;
	return BN_bin2bn(p, (int)n, NULL);
}

/* ---- keys ---- */

enum key_kind { KEY_RSA, KEY_ECDSA, KEY_ED25519 };

struct sshkey {
	enum key_kind kind;
	unsigned char *blob; /* public key blob, wire form (malloc'd) */
	size_t bloblen;
	EVP_PKEY *pkey; /* RSA only, when the private half was asked for: signs rsa-sha2 */
	char *pem;	/* OpenSSH-format ECDSA keys: the same key as PKCS#8 PEM, for libssh2 */
	size_t pemlen;
};

static void key_free(struct sshkey *k)
{
	free(k->blob);
	k->blob = NULL;
	if (k->pem)
		OPENSSL_cleanse(k->pem, k->pemlen);
	free(k->pem);
	k->pem = NULL;
	EVP_PKEY_free(k->pkey);
	k->pkey = NULL;
}

/* The key type named by a blob's first string, checking the rest of the blob. */
static int blob_check(const unsigned char *blob, size_t n, enum key_kind *kind)
{
	struct rd r = {blob, n};
	const unsigned char *t, *a, *b;
	size_t tn, an, bn;
	if (rd_str(&r, &t, &tn))
		return -EINVAL;
	if (str_is(t, tn, "ssh-ed25519")) {
		if (rd_str(&r, &a, &an) || an != 32)
			return -EINVAL;
		*kind = KEY_ED25519;
	} else if (str_is(t, tn, "ssh-rsa")) {
		if (rd_str(&r, &a, &an) || rd_str(&r, &b, &bn) || an == 0 || bn < 64)
			return -EINVAL;
		*kind = KEY_RSA;
	} else if (tn == 19 && memcmp(t, "ecdsa-sha2-nistp", 16) == 0) {
		if (rd_str(&r, &a, &an) || an != 8 || memcmp(a, t + 11, 8) != 0 ||
		    rd_str(&r, &b, &bn) || bn < 65 || b[0] != 0x04)
			return -EINVAL;
		if (!str_is(a, an, "nistp256") && !str_is(a, an, "nistp384") &&
		    !str_is(a, an, "nistp521"))
			return -EINVAL;
		*kind = KEY_ECDSA;
	} else {
		return -EINVAL;
	}
	return r.n == 0 ? 0 : -EINVAL;
}

/* The public blob of an OpenSSL key. */
static int blob_from_pkey(EVP_PKEY *pk, struct sshkey *k)
{
	struct buf b;
	BIGNUM *n = NULL, *e = NULL;
	int r = -EINVAL;
	buf_init(&b, BLOB_MAX);
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) ||
		    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e))
			goto out;
		if (wr_str(&b, "ssh-rsa", 7) || wr_bn(&b, e) || wr_bn(&b, n))
			goto out;
		k->kind = KEY_RSA;
		break;
	case EVP_PKEY_EC: {
		char group[64];
		const char *nist;
		unsigned char pub[256];
		size_t publen = 0;
		if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
						    sizeof(group), NULL))
			goto out;
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
			nist = "nistp256";
		else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
			nist = "nistp384";
		else if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
			nist = "nistp521";
		else
			goto out;
		/* SSH wants the uncompressed point, whatever form the key was saved in */
		(void)EVP_PKEY_set_utf8_string_param(
			pk, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
			OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED);
		if (!EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
						     sizeof(pub), &publen) ||
		    publen < 65 || pub[0] != 0x04)
			goto out;
		char tname[32];
		fmt_cut(tname, sizeof(tname), "ecdsa-sha2-%s", nist); /* fits: nist is nistpNNN */
		if (wr_str(&b, tname, strlen(tname)) || wr_str(&b, nist, 8) ||
		    wr_str(&b, pub, publen))
			goto out;
		k->kind = KEY_ECDSA;
		break;
	}
	case EVP_PKEY_ED25519: {
		unsigned char pub[32];
		size_t publen = sizeof(pub);
		if (!EVP_PKEY_get_raw_public_key(pk, pub, &publen) || publen != 32)
			goto out;
		if (wr_str(&b, "ssh-ed25519", 11) || wr_str(&b, pub, 32))
			goto out;
		k->kind = KEY_ED25519;
		break;
	}
	default:
		goto out;
	}
	k->blob = (unsigned char *)buf_steal(&b, &k->bloblen);
	r = 0;
out:
	BN_free(n);
	BN_free(e);
	buf_free(&b);
	return r;
}

/* An OpenSSL RSA key from the OpenSSH private section's n e d iqmp p q. */
static EVP_PKEY *rsa_from_parts(struct rd *r)
{
	BIGNUM *n = rd_bn(r), *e = rd_bn(r), *d = rd_bn(r), *iqmp = rd_bn(r);
	BIGNUM *p = rd_bn(r), *q = rd_bn(r);
	BIGNUM *dmp1 = BN_new(), *dmq1 = BN_new(), *t = BN_new();
	BN_CTX *ctx = BN_CTX_new();
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pk = NULL;
	if (!n || !e || !d || !iqmp || !p || !q || !dmp1 || !dmq1 || !t || !ctx)
		goto out;
	if (!BN_sub(t, p, BN_value_one()) || !BN_mod(dmp1, d, t, ctx) ||
	    !BN_sub(t, q, BN_value_one()) || !BN_mod(dmq1, d, t, ctx))
		goto out;
	bld = OSSL_PARAM_BLD_new();
	if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, iqmp))
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (!params || !pctx || EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, &pk, EVP_PKEY_KEYPAIR, params) != 1)
		pk = NULL;
out:
	BN_free(n);
	BN_free(e);
	BN_clear_free(d);
	BN_clear_free(iqmp);
	BN_clear_free(p);
	BN_clear_free(q);
	BN_clear_free(dmp1);
	BN_clear_free(dmq1);
	BN_clear_free(t);
	BN_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pctx);
	return pk;
}

/* The OpenSSH private section's ECDSA key (curve, Q, d) as unencrypted PKCS#8 PEM.
 * libssh2 1.10 leaks two BIGNUMs each time it parses an OpenSSH-format ECDSA key, and it
 * parses the key twice per authentication; the PEM path does not leak. */
static int ec_to_pem(struct rd *r, struct sshkey *k)
{
	const unsigned char *curve, *q;
	size_t curven, qn;
	BIGNUM *d = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pk = NULL;
	BIO *bio = NULL;
	const char *group;
	int ret = -EINVAL;
	if (rd_str(r, &curve, &curven) || rd_str(r, &q, &qn) || !(d = rd_bn(r)))
		goto out;
	if (str_is(curve, curven, "nistp256"))
		group = "P-256";
	else if (str_is(curve, curven, "nistp384"))
		group = "P-384";
	else if (str_is(curve, curven, "nistp521"))
		group = "P-521";
	else
		goto out;
	bld = OSSL_PARAM_BLD_new();
	if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q, qn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d))
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!params || !pctx || EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, &pk, EVP_PKEY_KEYPAIR, params) != 1)
		goto out;
	bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL))
		goto out;
	char *p = NULL;
	long n = BIO_get_mem_data(bio, &p);
	if (n <= 0 || !p)
		goto out;
	k->pem = xmalloc((size_t)n + 1);
	memcpy(k->pem, p, (size_t)n);
	k->pem[n] = '\0';
	k->pemlen = (size_t)n;
	OPENSSL_cleanse(p, (size_t)n);
	ret = 0;
out:
	BN_clear_free(d);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return ret;
}

static const char OSSH_BEGIN[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
static const char OSSH_END[] = "-----END OPENSSH PRIVATE KEY-----";

/* The OpenSSH container (PROTOCOL.key): the public blob is in clear. With need_private the
 * key must be unencrypted, and an RSA key's private half is loaded for signing. */
static int key_load_openssh(const char *text, size_t len, bool need_private, struct sshkey *k,
			    char *err, size_t errlen)
{
	const char *beg = memmem(text, len, OSSH_BEGIN, sizeof(OSSH_BEGIN) - 1);
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	int r = -EINVAL;
	const char *why = "malformed OpenSSH private key";
	beg += sizeof(OSSH_BEGIN) - 1;
	const char *end = memmem(beg, len - (size_t)(beg - text), OSSH_END, sizeof(OSSH_END) - 1);
	if (!end || (size_t)(end - beg) > KEY_TEXT_MAX ||
	    b64_decode_text(beg, (size_t)(end - beg), &raw, &rawlen))
		goto out;
	static const char magic[] = "openssh-key-v1"; /* with its NUL */
	if (rawlen < sizeof(magic) || memcmp(raw, magic, sizeof(magic)) != 0)
		goto out;
	struct rd rd = {raw + sizeof(magic), rawlen - sizeof(magic)};
	const unsigned char *cipher, *kdf, *kdfopt, *pub, *priv;
	size_t ciphern, kdfn, kdfoptn, pubn, privn;
	uint32_t nkeys;
	if (rd_str(&rd, &cipher, &ciphern) || rd_str(&rd, &kdf, &kdfn) ||
	    rd_str(&rd, &kdfopt, &kdfoptn) || rd_u32(&rd, &nkeys) || nkeys != 1 ||
	    rd_str(&rd, &pub, &pubn) || rd_str(&rd, &priv, &privn))
		goto out;
	if (blob_check(pub, pubn, &k->kind)) {
		why = "unsupported key type (RSA, ECDSA or Ed25519)";
		goto out;
	}
	if (need_private) {
		if (!str_is(cipher, ciphern, "none")) {
			why = "passphrase-protected keys are not supported";
			goto out;
		}
		struct rd pr = {priv, privn};
		uint32_t c1, c2;
		const unsigned char *t;
		size_t tn;
		if (rd_u32(&pr, &c1) || rd_u32(&pr, &c2) || c1 != c2 || rd_str(&pr, &t, &tn))
			goto out;
		struct rd pt = {pub, pubn};
		const unsigned char *pubt;
		size_t pubtn;
		if (rd_str(&pt, &pubt, &pubtn) || tn != pubtn || memcmp(t, pubt, tn) != 0)
			goto out;
		if (k->kind == KEY_RSA) {
			k->pkey = rsa_from_parts(&pr);
			if (!k->pkey)
				goto out;
		} else if (k->kind == KEY_ECDSA && ec_to_pem(&pr, k)) {
			goto out;
		}
	}
	k->blob = xmalloc(pubn);
	memcpy(k->blob, pub, pubn);
	k->bloblen = pubn;
	r = 0;
out:
	if (raw)
		OPENSSL_cleanse(raw, rawlen);
	free(raw);
	if (r)
		seterr(err, errlen, r, "bad key: %s", why);
	return r;
}

/* OpenSSL must never prompt for a passphrase (the default callback reads the terminal). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static int key_load(const char *text, size_t len, bool need_private, struct sshkey *k, char *err,
		    size_t errlen)
{
	BIO *bio = NULL;
	EVP_PKEY *pk = NULL;
	int r;
	memset(k, 0, sizeof(*k));
	if (!text || len == 0)
		return seterr(err, errlen, -EINVAL, "bad key: empty");
	if (len > KEY_TEXT_MAX)
		return seterr(err, errlen, -EINVAL, "bad key: longer than %d bytes", KEY_TEXT_MAX);
	if (memmem(text, len, OSSH_BEGIN, sizeof(OSSH_BEGIN) - 1)) {
		r = key_load_openssh(text, len, need_private, k, err, errlen);
		if (r)
			key_free(k);
		return r;
	}
	bio = BIO_new_mem_buf(text, (int)len);
	if (!bio)
		return seterr(err, errlen, -ENOMEM, "out of memory");
	pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (!pk) {
		r = seterr(err, errlen, -EINVAL,
			   "bad key: not a PEM or OpenSSH private key (or passphrase-protected)");
		goto out;
	}
	r = blob_from_pkey(pk, k);
	if (r) {
		r = seterr(err, errlen, -EINVAL,
			   "bad key: unsupported key type (RSA, ECDSA or Ed25519)");
		goto out;
	}
	if (need_private && k->kind == KEY_RSA) {
		k->pkey = pk;
		pk = NULL;
	}
out:
	EVP_PKEY_free(pk);
	BIO_free(bio);
	if (r)
		key_free(k);
	return r;
}

int sshc_public_key(const char *key, size_t keylen, const char *comment, char **out)
{
	struct sshkey k;
	int r = key_load(key, keylen, false, &k, NULL, 0);
	if (r)
		return r;
	struct rd rd = {k.blob, k.bloblen};
	const unsigned char *t;
	size_t tn;
	(void)rd_str(&rd, &t, &tn); /* checked by key_load */
	size_t clen = comment ? strlen(comment) : 0;
	for (size_t i = 0; i < clen; i++)
		if ((unsigned char)comment[i] < 0x20 || comment[i] == 0x7f) {
			r = -EINVAL; /* a newline would start another authorized_keys line */
			goto out;
		}
	size_t b64len = 4 * ((k.bloblen + 2) / 3) + 1;
	size_t total = tn + 1 + b64len + (clen ? clen + 1 : 0) + 1;
	char *s = xmalloc(total);
	memcpy(s, t, tn);
	s[tn] = ' ';
	(void)b64_encode_to(k.blob, k.bloblen, s + tn + 1, b64len);
	if (clen) {
		size_t at = strlen(s);
		s[at] = ' ';
		memcpy(s + at + 1, comment, clen + 1);
	}
	*out = s;
out:
	key_free(&k);
	return r;
}

int sshc_generate_key(char **out, size_t *outlen)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
	BIO *bio = NULL;
	int r = -EIO;
	if (!pk)
		goto out;
	bio = BIO_new(BIO_s_mem());
	/* "traditional" = PKCS#1 "BEGIN RSA PRIVATE KEY", which every ssh and libssh2 reads */
	if (!bio || !PEM_write_bio_PrivateKey_traditional(bio, pk, NULL, NULL, 0, NULL, NULL))
		goto out;
	char *p = NULL;
	long n = BIO_get_mem_data(bio, &p);
	if (n <= 0 || !p)
		goto out;
	char *s = xmalloc((size_t)n + 1);
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	*out = s;
	if (outlen)
		*outlen = (size_t)n;
	r = 0;
out:
	BIO_free(bio);
	EVP_PKEY_free(pk);
	return r;
}

/* ---- host keys ---- */

static const char *const HOSTKEY_TYPES[] = {
	"ssh-ed25519",
	"ecdsa-sha2-nistp256",
	"ecdsa-sha2-nistp384",
	"ecdsa-sha2-nistp521",
	"rsa-sha2-512",
	"rsa-sha2-256",
	"ssh-rsa",
};

/* The first whitespace-separated token of s (len in *n); NULL when none. */
static const char *token(const char *s, size_t *n, const char **rest)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s || *s == '\n' || *s == '\r') {
		*n = 0;
		return NULL;
	}
	const char *b = s;
	while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
		s++;
	*n = (size_t)(s - b);
	if (rest)
		*rest = s;
	return b;
}

static bool supported(const char **algs, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (algs[i] && strcmp(algs[i], name) == 0)
			return true;
	return false;
}

/* Host key methods to offer, the pin's family first so that a server with several host keys
 * presents the pinned one. Only methods this libssh2 has are named: 1.10 lacks rsa-sha2, and
 * its libssh2_session_method_pref strips unknown names with an overlapping memcpy. */
static void hostkey_prefs(LIBSSH2_SESSION *s, const char *pin, char *out, size_t outlen)
{
	const size_t ntypes = sizeof(HOSTKEY_TYPES) / sizeof(HOSTKEY_TYPES[0]);
	size_t pn = 0;
	const char *pt = pin ? token(pin, &pn, NULL) : NULL;
	bool rsa = pt && pn == 7 && memcmp(pt, "ssh-rsa", 7) == 0;
	bool first[sizeof(HOSTKEY_TYPES) / sizeof(HOSTKEY_TYPES[0])];
	const char **algs = NULL;
	int nalgs = libssh2_session_supported_algs(s, LIBSSH2_METHOD_HOSTKEY, &algs);
	struct buf b;
	buf_init(&b, outlen - 1);
	for (size_t i = 0; i < ntypes; i++) {
		const char *t = HOSTKEY_TYPES[i];
		first[i] = pt && ((strlen(t) == pn && memcmp(t, pt, pn) == 0) ||
				  (rsa && strncmp(t, "rsa-sha2-", 9) == 0));
	}
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < ntypes; i++)
			if (first[i] == (pass == 0) && supported(algs, nalgs, HOSTKEY_TYPES[i]))
				(void)buf_printf(&b, "%s%s", b.len ? "," : "", HOSTKEY_TYPES[i]);
	fmt_cut(out, outlen, "%s", b.data ? b.data : ""); /* fits: b holds outlen - 1 */
	buf_free(&b);
	if (nalgs > 0)
		libssh2_free(s, (void *)algs);
}

/* "TYPE BASE64" of the session's host key. */
static int hostkey_text(LIBSSH2_SESSION *s, char *out, size_t outlen)
{
	size_t len = 0;
	int type = 0;
	const char *blob = libssh2_session_hostkey(s, &len, &type);
	struct rd rd = {(const unsigned char *)blob, len};
	const unsigned char *t;
	size_t tn;
	if (!blob || rd_str(&rd, &t, &tn) || tn == 0 || tn > 64)
		return -EPROTO;
	for (size_t i = 0; i < tn; i++)
		if (t[i] <= 0x20 || t[i] >= 0x7f)
			return -EPROTO;
	if (tn + 2 > outlen)
		return -EPROTO;
	memcpy(out, t, tn);
	out[tn] = ' ';
	return len > BLOB_MAX || b64_encode_to(blob, len, out + tn + 1, outlen - tn - 1) ? -EPROTO
											   : 0;
}

/* Whether pin ("TYPE BASE64 [comment]") names the key ("TYPE BASE64"). */
static bool pin_matches(const char *pin, const char *key)
{
	size_t pn1, pn2, kn1, kn2;
	const char *rest, *krest;
	const char *p1 = token(pin, &pn1, &rest);
	const char *p2 = p1 ? token(rest, &pn2, NULL) : NULL;
	const char *k1 = token(key, &kn1, &krest);
	const char *k2 = k1 ? token(krest, &kn2, NULL) : NULL;
	return p2 && k2 && pn1 == kn1 && pn2 == kn2 && memcmp(p1, k1, pn1) == 0 &&
	       memcmp(p2, k2, pn2) == 0;
}

/* ---- name resolution (bounded) ---- */

struct resolve_job {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs; /* the caller and the thread */
	bool done;
	char host[HOST_MAX + 1];
	char port[8];
	struct addrinfo *res;
	int gai;
};

static void resolve_job_put(struct resolve_job *j)
{
	pthread_mutex_lock(&j->mu);
	bool last = --j->refs == 0;
	pthread_mutex_unlock(&j->mu);
	if (!last)
		return;
	if (j->res)
		freeaddrinfo(j->res);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	free(j);
}

static void *resolve_thread(void *arg)
{
	struct resolve_job *j = arg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(j->host, j->port, &hints, &res);
	pthread_mutex_lock(&j->mu);
	j->res = res;
	j->gai = gai;
	j->done = true;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	resolve_job_put(j);
	return NULL;
}

/* getaddrinfo within the deadline: numeric addresses at once, names in a detached thread
 * that is abandoned (and cleans up after itself) when the deadline passes. */
static int resolve(const char *host, int port, int64_t deadline, struct addrinfo **out, char *err,
		   size_t errlen)
{
	char ports[8];
	fmt_cut(ports, sizeof(ports), "%d", port); /* fits: 0..65535 (valid_endpoint) */
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	if (getaddrinfo(host, ports, &hints, out) == 0)
		return 0;

	struct resolve_job *j = xcalloc(1, sizeof(*j));
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* fits: host is at most HOST_MAX (valid_endpoint), ports as large as port */
	fmt_cut(j->host, sizeof(j->host), "%s", host);
	fmt_cut(j->port, sizeof(j->port), "%s", ports);
	j->refs = 2;
	pthread_attr_t ta;
	pthread_t th;
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &ta, resolve_thread, j) != 0)
		resolve_thread(j); /* no thread to spare: resolve inline (unbounded) */
	pthread_attr_destroy(&ta);

	int r = 0;
	pthread_mutex_lock(&j->mu);
	while (!j->done) {
		struct timespec ts;
		int64_t dl = deadline;
		ts.tv_sec = dl / 1000;
		ts.tv_nsec = (long)(dl % 1000) * 1000000;
		if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) == ETIMEDOUT && !j->done) {
			r = seterr(err, errlen, -ETIMEDOUT, "timed out resolving %s", host);
			break;
		}
	}
	if (!r && j->gai != 0)
		r = seterr(err, errlen, -EHOSTUNREACH, "cannot resolve %s: %s", host,
			   gai_strerror(j->gai));
	if (!r) {
		*out = j->res;
		j->res = NULL;
	}
	pthread_mutex_unlock(&j->mu);
	resolve_job_put(j);
	return r;
}

/* A non-blocking TCP connection to host:port within the deadline. */
static int tcp_connect(const char *label, const char *host, int port, int64_t deadline, int *fdout,
		       char *err, size_t errlen)
{
	struct addrinfo *res = NULL;
	int r = resolve(host, port, deadline, &res, err, errlen);
	if (r)
		return r;
	r = -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		int one = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		int e = 0;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			e = errno;
			if (e == EINPROGRESS) {
				struct pollfd p = {.fd = fd, .events = POLLOUT};
				int n;
				do
					n = poll(&p, 1, remaining_ms(deadline));
				while (n < 0 && errno == EINTR);
				socklen_t sl = sizeof(e);
				if (n == 0)
					e = ETIMEDOUT;
				else if (n < 0 ||
					 getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0)
					e = errno;
			}
		}
		if (e == 0) {
			*fdout = fd;
			freeaddrinfo(res);
			return 0;
		}
		close(fd);
		r = -e;
		if (e == ETIMEDOUT || remaining_ms(deadline) == 0) {
			r = -ETIMEDOUT;
			break;
		}
	}
	freeaddrinfo(res);
	return seterr(err, errlen, r, "%s: cannot connect: %s", label, strerror(-r));
}

/* ---- the jump host tunnel ---- */

enum tun_pending { TUN_NONE, TUN_WRITING, TUN_READING };

struct tunnel {
	LIBSSH2_SESSION *js;	   /* the jump session (borrowed) */
	LIBSSH2_CHANNEL *ch;	   /* its direct-tcpip channel to the target */
	unsigned char up[TUN_BUF]; /* target session -> channel */
	size_t uplen;
	unsigned char down[TUN_BUF]; /* channel -> target session */
	size_t downoff, downlen;
	enum tun_pending pending; /* the jump call that left a packet half sent */
	bool eof;		  /* the channel's EOF was read */
	bool dead;		  /* torn down: the callbacks fail at once */
	int err;		  /* sticky jump session error */
};

static ssize_t tun_recv(libssh2_socket_t sock, void *buffer, size_t length, int flags,
			void **abstract)
{
	struct tunnel *t = *abstract;
	(void)sock;
	(void)flags;
	if (t->dead || t->err)
		return -ECONNRESET;
	if (t->downlen > t->downoff) {
		size_t n = t->downlen - t->downoff;
		if (n > length)
			n = length;
		memcpy(buffer, t->down + t->downoff, n);
		t->downoff += n;
		if (t->downoff == t->downlen)
			t->downoff = t->downlen = 0;
		return (ssize_t)n;
	}
	return t->eof ? 0 : -EAGAIN;
}

static ssize_t tun_send(libssh2_socket_t sock, const void *buffer, size_t length, int flags,
			void **abstract)
{
	struct tunnel *t = *abstract;
	(void)sock;
	(void)flags;
	if (t->dead || t->err)
		return -EPIPE;
	size_t n = sizeof(t->up) - t->uplen;
	if (n == 0)
		return -EAGAIN;
	if (n > length)
		n = length;
	memcpy(t->up + t->uplen, buffer, n);
	t->uplen += n;
	return (ssize_t)n;
}

/* Move bytes between the buffers and the jump channel. >0 when anything moved, 0 when the
 * jump session would block, -errno on failure. */
static int tun_pump(struct tunnel *t)
{
	int progress = 0;
	if (t->err)
		return t->err;
	for (;;) {
		bool moved = false;
		if (t->pending != TUN_READING && t->uplen > 0) {
			ssize_t n = libssh2_channel_write(t->ch, (const char *)t->up, t->uplen);
			if (n > 0) {
				memmove(t->up, t->up + n, t->uplen - (size_t)n);
				t->uplen -= (size_t)n;
				t->pending = TUN_NONE;
				moved = true;
			} else if (n == LIBSSH2_ERROR_EAGAIN) {
				t->pending = (libssh2_session_block_directions(t->js) &
					      LIBSSH2_SESSION_BLOCK_OUTBOUND)
						     ? TUN_WRITING
						     : TUN_NONE;
			} else if (n < 0) {
				t->err = -EPROTO;
				return t->err;
			}
		}
		if (t->pending != TUN_WRITING && !t->eof && t->downlen < sizeof(t->down)) {
			if (t->downoff) {
				memmove(t->down, t->down + t->downoff, t->downlen - t->downoff);
				t->downlen -= t->downoff;
				t->downoff = 0;
			}
			ssize_t n = libssh2_channel_read(t->ch, (char *)t->down + t->downlen,
							 sizeof(t->down) - t->downlen);
			if (n > 0) {
				t->downlen += (size_t)n;
				t->pending = TUN_NONE;
				moved = true;
			} else if (n == LIBSSH2_ERROR_EAGAIN) {
				t->pending = (libssh2_session_block_directions(t->js) &
					      LIBSSH2_SESSION_BLOCK_OUTBOUND)
						     ? TUN_READING
						     : TUN_NONE;
			} else if (n == 0) {
				if (libssh2_channel_eof(t->ch)) {
					t->eof = true;
					moved = true;
				}
			} else {
				t->err = -EPROTO;
				return t->err;
			}
		}
		if (!moved)
			return progress;
		progress = 1;
	}
}

/* ---- sessions ---- */

struct link {
	LIBSSH2_SESSION *s;
	int fd;		    /* the TCP socket polled (the jump host's for a tunnelled link) */
	struct tunnel *tun; /* non-NULL: s runs over this tunnel */
	int64_t deadline;
	char label[HOST_MAX + 80]; /* "host example.org:22" for messages */
};

/* Wait until the link's session may make progress, or fail at the deadline. */
static int link_wait(struct link *l, const char *doing, char *err, size_t errlen)
{
	short events = POLLIN;
	if (remaining_ms(l->deadline) == 0) /* even while bytes keep flowing */
		return seterr(err, errlen, -ETIMEDOUT, "%s: timed out (%s)", l->label, doing);
	if (l->tun) {
		int r = tun_pump(l->tun);
		if (r < 0)
			return seterr(err, errlen, -EPROTO,
				      "%s: %s: the jump host connection failed (%s)", l->label,
				      doing, last_error(l->tun->js));
		if (r > 0)
			return 0;
		events = l->tun->pending != TUN_NONE ? POLLOUT : POLLIN;
	} else {
		int dir = libssh2_session_block_directions(l->s);
		if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			events = (dir & LIBSSH2_SESSION_BLOCK_INBOUND) ? POLLIN | POLLOUT : POLLOUT;
	}
	int ms = remaining_ms(l->deadline);
	struct pollfd p = {.fd = l->fd, .events = events};
	int n = ms > 0 ? poll(&p, 1, ms) : 0;
	if (n < 0 && errno != EINTR)
		return seterr(err, errlen, -errno, "%s: %s: poll: %s", l->label, doing,
			      strerror(errno));
	if (n == 0)
		return seterr(err, errlen, -ETIMEDOUT, "%s: timed out (%s)", l->label, doing);
	return 0;
}

struct rsa_sign {
	EVP_PKEY *pkey;
	const char *md; /* "SHA512", "SHA256" or "SHA1" */
};

static int rsa_sign_cb(LIBSSH2_SESSION *session, unsigned char **sig, size_t *sig_len,
		       const unsigned char *data, size_t data_len, void **abstract)
{
	struct rsa_sign *rs = *abstract;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *s = NULL;
	size_t n = 0;
	int r = -1;
	(void)session;
	if (!ctx || EVP_DigestSignInit_ex(ctx, NULL, rs->md, NULL, NULL, rs->pkey, NULL) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, data, data_len) != 1)
		goto out;
	s = malloc(n); /* freed by libssh2 with its default allocator (free) */
	if (!s || EVP_DigestSign(ctx, s, &n, data, data_len) != 1)
		goto out;
	*sig = s;
	*sig_len = n;
	s = NULL;
	r = 0;
out:
	free(s);
	EVP_MD_CTX_free(ctx);
	return r;
}

/* One RSA attempt: alg names both the signature and (see the top) the blob's first string. */
static int auth_rsa(struct link *l, const char *user, const struct sshkey *k, const char *alg,
		    const char *md, char *err, size_t errlen)
{
	struct rd rd = {k->blob, k->bloblen};
	const unsigned char *t;
	size_t tn;
	(void)rd_str(&rd, &t, &tn);
	struct buf b;
	buf_init(&b, BLOB_MAX);
	int r = -ENOMEM;
	if (wr_str(&b, alg, strlen(alg)) || buf_append(&b, rd.p, rd.n))
		goto out;
	struct rsa_sign rs = {k->pkey, md};
	void *abstract = &rs;
	int rc;
	while ((rc = libssh2_userauth_publickey(l->s, user, (const unsigned char *)b.data, b.len,
						rsa_sign_cb, &abstract)) == LIBSSH2_ERROR_EAGAIN)
		if ((r = link_wait(l, "authentication", err, errlen)) != 0)
			goto out;
	r = rc == 0 ? 0
	    : rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
		    ? -EACCES
		    : -EPROTO;
out:
	buf_free(&b);
	return r;
}

static int link_auth(struct link *l, const struct sshc_endpoint *ep, const struct sshkey *k,
		     char *err, size_t errlen)
{
	int r, rc;
	if (k->kind == KEY_RSA) {
		r = auth_rsa(l, ep->user, k, "rsa-sha2-512", "SHA512", err, errlen);
		if (r == -EACCES)
			r = auth_rsa(l, ep->user, k, "ssh-rsa", "SHA1", err, errlen);
	} else {
		const char *text = k->pem ? k->pem : ep->key;
		size_t textlen = k->pem ? k->pemlen : ep->keylen;
		while ((rc = libssh2_userauth_publickey_frommemory(l->s, ep->user, strlen(ep->user),
								   NULL, 0, text, textlen, NULL)) ==
		       LIBSSH2_ERROR_EAGAIN)
			if ((r = link_wait(l, "authentication", err, errlen)) != 0)
				return r;
		r = rc == 0 ? 0
		    : rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
				    rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
			    ? -EACCES
		    : rc == LIBSSH2_ERROR_FILE ? -EINVAL
					       : -EPROTO;
	}
	if (r == -EACCES)
		return seterr(err, errlen, -EACCES, "%s: authentication as %s refused", l->label,
			      ep->user);
	if (r == -EINVAL)
		return seterr(err, errlen, -EINVAL, "%s: bad key: %s", l->label, last_error(l->s));
	if (r == -EPROTO)
		return seterr(err, errlen, -EPROTO, "%s: authentication failed: %s", l->label,
			      last_error(l->s));
	return r;
}

/* Create the session, handshake, check the host key against the pin, authenticate. */
static int link_open(struct link *l, const struct sshc_endpoint *ep, const struct sshkey *k,
		     char *hostkey, char *err, size_t errlen)
{
	int rc, r;
	l->s = libssh2_session_init_ex(NULL, NULL, NULL, l->tun);
	if (!l->s)
		return seterr(err, errlen, -ENOMEM, "out of memory");
	libssh2_session_set_blocking(l->s, 0);
	if (l->tun) {
		libssh2_session_callback_set(l->s, LIBSSH2_CALLBACK_SEND, (void *)tun_send);
		libssh2_session_callback_set(l->s, LIBSSH2_CALLBACK_RECV, (void *)tun_recv);
	}
	char prefs[256];
	hostkey_prefs(l->s, ep->pin, prefs, sizeof(prefs));
	if (prefs[0] && libssh2_session_method_pref(l->s, LIBSSH2_METHOD_HOSTKEY, prefs) != 0)
		return seterr(err, errlen, -EPROTO, "%s: host key methods: %s", l->label,
			      last_error(l->s));
	/* A tunnelled session never touches the socket it is given (its I/O goes through the
	 * callbacks); libssh2 only checks that it is non-blocking. */
	while ((rc = libssh2_session_handshake(l->s, l->fd)) == LIBSSH2_ERROR_EAGAIN)
		if ((r = link_wait(l, "SSH handshake", err, errlen)) != 0)
			return r;
	if (rc)
		return seterr(err, errlen, -EPROTO, "%s: SSH handshake failed: %s", l->label,
			      last_error(l->s));
	if (hostkey_text(l->s, hostkey, SSHC_HOSTKEY_MAX))
		return seterr(err, errlen, -EPROTO, "%s: unreadable host key", l->label);
	if (ep->pin && !pin_matches(ep->pin, hostkey)) {
		size_t tn;
		const char *t = token(hostkey, &tn, NULL);
		return seterr(err, errlen, -EKEYREJECTED,
			      "%s: host key differs from the pinned one (now %.*s)", l->label,
			      (int)tn, t ? t : "?");
	}
	return link_auth(l, ep, k, err, errlen);
}

/* Free a session without blocking: its transport is dead by now (socket shut down or tunnel
 * marked dead), so libssh2's close attempts fail at once instead of returning EAGAIN. */
static void session_free(LIBSSH2_SESSION *s)
{
	for (int i = 0; s && i < 4 && libssh2_session_free(s) == LIBSSH2_ERROR_EAGAIN; i++)
		;
}

static void channel_free(LIBSSH2_CHANNEL *ch)
{
	for (int i = 0; ch && i < 4 && libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN; i++)
		;
}

static int signal_status(const char *name, size_t n)
{
	static const struct {
		const char *name;
		int num;
	} sigs[] = {{"HUP", 1},	  {"INT", 2},	{"QUIT", 3},  {"ILL", 4},   {"ABRT", 6},
		    {"FPE", 8},	  {"KILL", 9},	{"USR1", 10}, {"SEGV", 11}, {"USR2", 12},
		    {"PIPE", 13}, {"ALRM", 14}, {"TERM", 15}};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (strlen(sigs[i].name) == n && memcmp(sigs[i].name, name, n) == 0)
			return 128 + sigs[i].num;
	return -1;
}

/* Read both streams to EOF, close the channel and collect the exit status. */
static int run_channel(struct link *l, LIBSSH2_CHANNEL *ch, size_t max_out, struct sshc_result *res,
		       char *err, size_t errlen)
{
	struct buf ob, errb;
	char tmp[IO_CHUNK];
	int r = 0, rc;
	buf_init(&ob, max_out);
	buf_init(&errb, max_out);
	while ((rc = libssh2_channel_send_eof(ch)) == LIBSSH2_ERROR_EAGAIN)
		if ((r = link_wait(l, "command", err, errlen)) != 0)
			goto out;
	for (;;) {
		bool progress = false;
		for (int stream = 0; stream < 2; stream++) {
			struct buf *b = stream ? &errb : &ob;
			ssize_t n = libssh2_channel_read_ex(
				ch, stream ? SSH_EXTENDED_DATA_STDERR : 0, tmp, sizeof(tmp));
			if (n > 0) {
				r = buf_append(b, tmp, (size_t)n);
				if (r == -EFBIG) {
					r = seterr(err, errlen, -EFBIG,
						   "%s: the command's %s exceeded %zu bytes",
						   l->label, stream ? "stderr" : "stdout", max_out);
					goto out;
				}
				if (r) {
					r = seterr(err, errlen, r, "out of memory");
					goto out;
				}
				progress = true;
			} else if (n < 0 && n != LIBSSH2_ERROR_EAGAIN) {
				r = seterr(err, errlen, -EPROTO,
					   "%s: reading the command's output: %s", l->label,
					   last_error(l->s));
				goto out;
			}
		}
		if (progress && remaining_ms(l->deadline) > 0)
			continue;
		if (!progress && libssh2_channel_eof(ch))
			break;
		if ((r = link_wait(l, "command", err, errlen)) != 0)
			goto out;
	}
	while ((rc = libssh2_channel_close(ch)) == LIBSSH2_ERROR_EAGAIN)
		if ((r = link_wait(l, "closing the channel", err, errlen)) != 0)
			goto out;
	while ((rc = libssh2_channel_wait_closed(ch)) == LIBSSH2_ERROR_EAGAIN)
		if ((r = link_wait(l, "closing the channel", err, errlen)) != 0)
			goto out;
	size_t signame_len = 0;
	libssh2_channel_get_exit_signal(ch, NULL, &signame_len, NULL, NULL, NULL, NULL);
	if (signame_len) {
		char *sig = NULL;
		libssh2_channel_get_exit_signal(ch, &sig, &signame_len, NULL, NULL, NULL, NULL);
		res->exit_status = sig ? signal_status(sig, signame_len) : -1;
		libssh2_free(l->s, sig);
	} else {
		res->exit_status = libssh2_channel_get_exit_status(ch);
	}
out:
	free(res->out);
	free(res->errout);
	res->out = buf_steal(&ob, &res->outlen);
	res->errout = buf_steal(&errb, &res->errlen);
	if (!res->out)
		res->out = xcalloc(1, 1);
	if (!res->errout)
		res->errout = xcalloc(1, 1);
	buf_free(&ob);
	buf_free(&errb);
	return r;
}

static int run_command(struct link *l, const char *command, size_t max_out, struct sshc_result *res,
		       char *err, size_t errlen)
{
	LIBSSH2_CHANNEL *ch = NULL;
	int r = 0, rc;
	while (!(ch = libssh2_channel_open_session(l->s)) &&
	       libssh2_session_last_errno(l->s) == LIBSSH2_ERROR_EAGAIN)
		if ((r = link_wait(l, "opening a channel", err, errlen)) != 0)
			goto out;
	if (!ch) {
		r = seterr(err, errlen, -EPROTO, "%s: cannot open a channel: %s", l->label,
			   last_error(l->s));
		goto out;
	}
	while ((rc = libssh2_channel_exec(ch, command)) == LIBSSH2_ERROR_EAGAIN)
		if ((r = link_wait(l, "starting the command", err, errlen)) != 0)
			goto out;
	if (rc) {
		r = seterr(err, errlen, -EPROTO, "%s: cannot start the command: %s", l->label,
			   last_error(l->s));
		goto out;
	}
	r = run_channel(l, ch, max_out, res, err, errlen);
out:
	if (ch && r) {
		/* leave freeing to link_close, after the transport is dead */
		if (l->tun)
			l->tun->dead = true;
		else
			shutdown(l->fd, SHUT_RDWR);
	}
	channel_free(ch);
	return r;
}

/* Polite disconnect while time remains; the result does not matter. */
static void link_bye(struct link *l)
{
	char ignored[8];
	if (!l->s || remaining_ms(l->deadline) == 0 || (l->tun && (l->tun->dead || l->tun->err)))
		return;
	while (libssh2_session_disconnect(l->s, "done") == LIBSSH2_ERROR_EAGAIN)
		if (link_wait(l, "disconnect", ignored, sizeof(ignored)))
			return;
	/* a tunnelled session's last bytes still sit in the tunnel */
	while (l->tun && l->tun->uplen && !l->tun->err)
		if (link_wait(l, "disconnect", ignored, sizeof(ignored)))
			return;
}

static bool valid_endpoint(const struct sshc_endpoint *ep)
{
	return ep && ep->host && ep->host[0] && strlen(ep->host) <= HOST_MAX && ep->user &&
	       ep->user[0] && ep->key && ep->port >= 0 && ep->port <= 65535;
}

static int ep_port(const struct sshc_endpoint *ep)
{
	return ep->port ? ep->port : 22;
}

int sshc_run(const struct sshc_endpoint *target, const struct sshc_endpoint *jump,
	     const char *command, int timeout_ms, size_t max_out, struct sshc_result *res,
	     char *err, size_t errlen)
{
	struct sshkey tkey = {0}, jkey = {0};
	struct link jl = {.fd = -1}, tl = {.fd = -1};
	struct tunnel *tun = NULL;
	int r, rc;
	if (err && errlen)
		err[0] = '\0';
	if (!res)
		return -EINVAL;
	res->exit_status = -1;
	if (!valid_endpoint(target) || (jump && !valid_endpoint(jump)) || !command ||
	    timeout_ms <= 0)
		return seterr(err, errlen, -EINVAL, "invalid arguments");
	if ((r = sshc_global_init()) != 0)
		return seterr(err, errlen, r, "libssh2_init failed");
	int64_t deadline = now_ms() + timeout_ms;
	if ((r = key_load(target->key, target->keylen, true, &tkey, err, errlen)) != 0)
		goto out;
	if (jump && (r = key_load(jump->key, jump->keylen, true, &jkey, err, errlen)) != 0)
		goto out;

	tl.deadline = jl.deadline = deadline;
	fmt_cut(tl.label, sizeof(tl.label), "host %s:%d", target->host, ep_port(target));
	if (jump) {
		fmt_cut(jl.label, sizeof(jl.label), "jump host %s:%d", jump->host, ep_port(jump));
		if ((r = tcp_connect(jl.label, jump->host, ep_port(jump), deadline, &jl.fd, err,
				     errlen)))
			goto out;
		if ((r = link_open(&jl, jump, &jkey, res->jump_key, err, errlen)) != 0)
			goto out;
		tun = xcalloc(1, sizeof(*tun));
		tun->js = jl.s;
		while (!(tun->ch = libssh2_channel_direct_tcpip_ex(
				 jl.s, target->host, ep_port(target), "127.0.0.1", 22)) &&
		       libssh2_session_last_errno(jl.s) == LIBSSH2_ERROR_EAGAIN)
			if ((r = link_wait(&jl, "forwarding to the host", err, errlen)) != 0)
				goto out;
		if (!tun->ch) {
			const char *why = last_error(jl.s);
			r = strstr(why, "connect failed") ? -ECONNREFUSED : -EPROTO;
			r = seterr(err, errlen, r, "%s: cannot reach %s:%d through it: %s",
				   jl.label, target->host, ep_port(target), why);
			goto out;
		}
		tl.fd = jl.fd;
		tl.tun = tun;
	} else if ((r = tcp_connect(tl.label, target->host, ep_port(target), deadline, &tl.fd, err,
				    errlen))) {
		goto out;
	}
	if ((r = link_open(&tl, target, &tkey, res->host_key, err, errlen)) != 0)
		goto out;
	if ((r = run_command(&tl, command, max_out, res, err, errlen)) != 0)
		goto out;
	link_bye(&tl);
	if (tun) {
		/* close the forwarding channel, then the jump session */
		while (remaining_ms(deadline) && !tun->err &&
		       (rc = libssh2_channel_close(tun->ch)) == LIBSSH2_ERROR_EAGAIN)
			if (link_wait(&jl, "closing", NULL, 0))
				break;
		link_bye(&jl);
	}
out:
	if (tun)
		tun->dead = true;
	if (jl.fd >= 0)
		shutdown(jl.fd, SHUT_RDWR);
	if (!jump && tl.fd >= 0)
		shutdown(tl.fd, SHUT_RDWR);
	session_free(tl.s);
	if (tun)
		channel_free(tun->ch);
	session_free(jl.s);
	if (jl.fd >= 0)
		close(jl.fd);
	if (!jump && tl.fd >= 0)
		close(tl.fd);
	free(tun);
	key_free(&tkey);
	key_free(&jkey);
	return r;
}

void sshc_result_free(struct sshc_result *res)
{
	if (!res)
		return;
	free(res->out);
	free(res->errout);
	res->out = res->errout = NULL;
	res->outlen = res->errlen = 0;
}
