/* sshkey: see sshkey.h. */
#include "sshkey.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/util.h"

#define ENCRYPTED                                                                                  \
	"the key is encrypted with a passphrase; use an unencrypted key (" SSHKEY_TYPES ")"
#define UNSUPPORTED "unsupported key type; the key must be " SSHKEY_TYPES
#define NOT_OPENSSH "not a valid OpenSSH private key"

static int why_set(char *why, size_t whylen, const char *msg)
{
	fmt_cut(why, whylen, "%s", msg);
	return -EINVAL;
}

static int no_pass_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1; /* never prompt; an encrypted key simply fails to load */
}

/* A reader over the decoded container: big-endian uint32 and length-prefixed strings. */
struct rd {
	const unsigned char *p;
	size_t n;
};

static bool rd_u32(struct rd *r, uint32_t *v)
{
	if (r->n < 4)
		return false;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->n -= 4;
	return true;
}

static bool rd_str(struct rd *r, struct rd *s)
{
	uint32_t len;
	if (!rd_u32(r, &len) || len > r->n)
		return false;
	s->p = r->p;
	s->n = len;
	r->p += len;
	r->n -= len;
	return true;
}

static bool rd_is(const struct rd *s, const char *lit)
{
	return s->n == strlen(lit) && !memcmp(s->p, lit, s->n);
}

static bool type_ok(const struct rd *t)
{
	return rd_is(t, "ssh-rsa") || rd_is(t, "ssh-ed25519") || rd_is(t, "ecdsa-sha2-nistp256") ||
	       rd_is(t, "ecdsa-sha2-nistp384") || rd_is(t, "ecdsa-sha2-nistp521");
}

/* "openssh-key-v1\0", string cipher, string kdf, string kdf options, uint32 key count, the
 * public key blobs, then the private section: uint32 check, uint32 check (equal when not
 * encrypted), and per key its type string and fields. */
static int check_openssh(const char *body, size_t blen, char *why, size_t whylen)
{
	static const char magic[] = "openssh-key-v1";
	struct rd r, cipher, kdf, opts, pub, ktype, priv, ptype;
	uint32_t nkeys, c1, c2;
	int outl = 0, fin = 0, ret = 0;
	size_t cap = blen / 4 * 3 + 4;
	if (blen > INT_MAX / 2)
		return why_set(why, whylen, "key too large");
	unsigned char *raw = malloc(cap);
	EVP_ENCODE_CTX *ec = EVP_ENCODE_CTX_new();
	if (!raw || !ec) {
		ret = -ENOMEM;
		goto out;
	}
	EVP_DecodeInit(ec);
	if (EVP_DecodeUpdate(ec, raw, &outl, (const unsigned char *)body, (int)blen) < 0 ||
	    EVP_DecodeFinal(ec, raw + outl, &fin) < 0) {
		ret = why_set(why, whylen, NOT_OPENSSH " (bad base64)");
		goto out;
	}
	r = (struct rd){raw, (size_t)(outl + fin)};
	if (r.n < sizeof(magic) || memcmp(r.p, magic, sizeof(magic))) {
		ret = why_set(why, whylen, NOT_OPENSSH);
		goto out;
	}
	r.p += sizeof(magic);
	r.n -= sizeof(magic);
	if (!rd_str(&r, &cipher) || !rd_str(&r, &kdf) || !rd_str(&r, &opts) ||
	    !rd_u32(&r, &nkeys)) {
		ret = why_set(why, whylen, NOT_OPENSSH);
		goto out;
	}
	if (!rd_is(&cipher, "none") || !rd_is(&kdf, "none")) {
		ret = why_set(why, whylen, ENCRYPTED);
		goto out;
	}
	if (nkeys != 1) {
		ret = why_set(why, whylen, "the file must hold exactly one key");
		goto out;
	}
	if (!rd_str(&r, &pub) || !rd_str(&pub, &ktype) || !rd_str(&r, &priv) ||
	    !rd_u32(&priv, &c1) || !rd_u32(&priv, &c2) || c1 != c2 || !rd_str(&priv, &ptype) ||
	    ptype.n != ktype.n || memcmp(ptype.p, ktype.p, ktype.n)) {
		ret = why_set(why, whylen, NOT_OPENSSH);
		goto out;
	}
	if (!type_ok(&ktype))
		ret = why_set(why, whylen, UNSUPPORTED);
out:
	EVP_ENCODE_CTX_free(ec);
	if (raw)
		OPENSSL_cleanse(raw, cap);
	free(raw);
	return ret;
}

static int check_pem(const char *data, size_t len, char *why, size_t whylen)
{
	int r = 0;
	if (len > INT_MAX)
		return why_set(why, whylen, "key too large");
	BIO *bio = BIO_new_mem_buf(data, (int)len);
	if (!bio)
		return -ENOMEM;
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, no_pass_cb, NULL);
	ERR_clear_error();
	if (!pk) {
		if (memmem(data, len, "ENCRYPTED", 9)) /* Proc-Type: 4,ENCRYPTED or PKCS#8 */
			r = why_set(why, whylen, ENCRYPTED);
		else
			r = why_set(why, whylen,
				    "not a private key (PEM, PKCS#8 or OpenSSH format)");
		goto out;
	}
	switch (EVP_PKEY_base_id(pk)) {
	case EVP_PKEY_RSA:
	case EVP_PKEY_ED25519:
		break;
	case EVP_PKEY_EC: {
		/* paramiko's ECDSAKey knows the three NIST curves only */
		char curve[64];
		size_t n = 0;
		if (!EVP_PKEY_get_group_name(pk, curve, sizeof(curve), &n) ||
		    (strcmp(curve, "prime256v1") && strcmp(curve, "secp384r1") &&
		     strcmp(curve, "secp521r1")))
			r = why_set(why, whylen,
				    "unsupported ECDSA curve; the key must be " SSHKEY_TYPES);
		ERR_clear_error();
		break;
	}
	default:
		r = why_set(why, whylen, UNSUPPORTED);
	}
out:
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return r;
}

int sshkey_check(const char *data, size_t len, char *why, size_t whylen)
{
	static const char oh[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
	static const char of[] = "-----END OPENSSH PRIVATE KEY-----";
	const char *b = memmem(data, len, oh, sizeof(oh) - 1);
	if (b) {
		const char *body = b + sizeof(oh) - 1;
		const char *e = memmem(body, len - (size_t)(body - data), of, sizeof(of) - 1);
		if (!e)
			return why_set(why, whylen, NOT_OPENSSH);
		return check_openssh(body, (size_t)(e - body), why, whylen);
	}
	const char *p = data;
	while (p < data + len && isspace((unsigned char)*p))
		p++;
	size_t rest = (size_t)(data + len - p);
	if ((rest >= 4 && !memcmp(p, "ssh-", 4)) || (rest >= 6 && !memcmp(p, "ecdsa-", 6)) ||
	    (rest >= 3 && !memcmp(p, "sk-", 3)))
		return why_set(why, whylen, "is a public key; name the private key instead");
	return check_pem(data, len, why, whylen);
}
