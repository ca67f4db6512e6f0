/* seal: see seal.h. OpenSSL EVP does the cryptography; this file only frames it. */
#include "seal.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/util.h"

#define NONCE_LEN 12
#define TAG_LEN 16

int seal_keyfile(const char *path, int create, struct seal_key *out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && create) {
		uint8_t k[SEAL_KEY_LEN];
		if (RAND_bytes(k, sizeof(k)) != 1) {
			fmt_cut(err, errlen, "%s: no randomness for a new key", path);
			return -EIO;
		}
		char tmp[4096];
		if (fmt(tmp, sizeof(tmp), "%s.new", path)) {
			fmt_cut(err, errlen, "%s: path too long", path);
			return -ENAMETOOLONG;
		}
		unlink(tmp);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			int e = errno;
			fmt_cut(err, errlen, "%s: %s", tmp, strerror(e));
			return -e;
		}
		bool ok = write(fd, k, sizeof(k)) == (ssize_t)sizeof(k) && fsync(fd) == 0;
		int e = ok ? 0 : (errno ? errno : EIO);
		if (close(fd) != 0 && ok) {
			ok = false;
			e = errno;
		}
		if (ok && rename(tmp, path) != 0) {
			ok = false;
			e = errno;
		}
		OPENSSL_cleanse(k, sizeof(k));
		if (!ok) {
			unlink(tmp);
			fmt_cut(err, errlen, "%s: %s", path, strerror(e));
			return -e;
		}
		OPENSSL_cleanse(k, sizeof(k));
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0) {
		int e = errno;
		fmt_cut(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	int r = 0;
	if (fstat(fd, &st) != 0) {
		r = -errno;
		fmt_cut(err, errlen, "%s: %s", path, strerror(-r));
		goto out;
	}
	if (st.st_mode & 077) {
		fmt_cut(err, errlen, "%s: key file is readable by others (mode %03o); chmod 600 it",
			path, (unsigned)(st.st_mode & 0777));
		r = -EINVAL;
		goto out;
	}
	if (st.st_size != SEAL_KEY_LEN ||
	    read(fd, out->key, SEAL_KEY_LEN) != SEAL_KEY_LEN) {
		fmt_cut(err, errlen, "%s: key file must hold exactly %d bytes", path, SEAL_KEY_LEN);
		r = -EINVAL;
		goto out;
	}
	fmt_cut(out->name, sizeof(out->name), "local"); /* fits */
out:
	close(fd);
	return r;
}

int seal_key_from_b64(const char *name, const char *b64, struct seal_key *out)
{
	uint8_t *k = NULL;
	size_t n = 0;
	int r = b64_decode(b64, &k, &n);
	if (r)
		return r;
	if (n != SEAL_KEY_LEN) {
		OPENSSL_cleanse(k, n);
		free(k);
		return -EINVAL;
	}
	memcpy(out->key, k, SEAL_KEY_LEN);
	OPENSSL_cleanse(k, n);
	free(k);
	if (fmt(out->name, sizeof(out->name), "%s", name))
		return -EINVAL;
	return 0;
}

char *seal_seal(const struct seal_ring *ring, const char *aad, const void *plain, size_t len)
{
	const struct seal_key *k = &ring->keys[0];
	size_t rawlen = NONCE_LEN + len + TAG_LEN;
	uint8_t *raw = malloc(rawlen);
	char *b64 = NULL, *out = NULL;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0;
	if (!raw || !c)
		goto out;
	if (RAND_bytes(raw, NONCE_LEN) != 1)
		goto out;
	if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, k->key, raw) != 1)
		goto out;
	if (aad && EVP_EncryptUpdate(c, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1)
		goto out;
	if (EVP_EncryptUpdate(c, raw + NONCE_LEN, &n, plain, (int)len) != 1)
		goto out;
	if (EVP_EncryptFinal_ex(c, raw + NONCE_LEN + n, &n) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + len) != 1)
		goto out;
	b64 = b64_encode(raw, rawlen);
	if (!b64)
		goto out;
	out = malloc(strlen(k->name) + strlen(b64) + 16);
	if (out)
		snprintf(out, strlen(k->name) + strlen(b64) + 16, "enc:aes:%s:%s", k->name, b64);
out:
	EVP_CIPHER_CTX_free(c);
	free(b64);
	free(raw);
	return out;
}

static int open_with(const struct seal_key *k, const char *aad, const uint8_t *raw, size_t rawlen,
		     char **out, size_t *outlen)
{
	size_t len = rawlen - NONCE_LEN - TAG_LEN;
	char *p = malloc(len + 1);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, r = -EACCES;
	if (!p || !c) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k->key, raw) != 1)
		goto out;
	if (aad && EVP_DecryptUpdate(c, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1)
		goto out;
	if (EVP_DecryptUpdate(c, (uint8_t *)p, &n, raw + NONCE_LEN, (int)len) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
				(void *)(raw + NONCE_LEN + len)) != 1)
		goto out;
	if (EVP_DecryptFinal_ex(c, (uint8_t *)p + n, &n) != 1)
		goto out;
	p[len] = '\0';
	*out = p;
	*outlen = len;
	p = NULL;
	r = 0;
out:
	EVP_CIPHER_CTX_free(c);
	if (p)
		seal_free_secret(p, len);
	return r;
}

int seal_open(const struct seal_ring *ring, const char *aad, const char *sealed, char **out,
	      size_t *outlen)
{
	*out = NULL;
	if (strncmp(sealed, "enc:aes:", 8) != 0)
		return -EINVAL;
	const char *payload = strchr(sealed + 8, ':');
	if (!payload)
		return -EINVAL;
	uint8_t *raw = NULL;
	size_t rawlen = 0;
	int r = b64_decode(payload + 1, &raw, &rawlen);
	if (r)
		return r;
	if (rawlen < NONCE_LEN + TAG_LEN) {
		free(raw);
		return -EINVAL;
	}
	r = -EACCES;
	for (size_t i = 0; i < ring->n && r == -EACCES; i++)
		r = open_with(&ring->keys[i], aad, raw, rawlen, out, outlen);
	free(raw);
	return r;
}

void seal_free_secret(char *p, size_t len)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}
