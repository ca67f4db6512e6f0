/* enc: see enc.h. */
#include "enc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "util.h"

#define B64_MAX (64u * 1024 * 1024)

char *b64_encode(const void *p, size_t n)
{
	size_t outlen = 4 * ((n + 2) / 3) + 1;
	char *out = n < B64_MAX ? malloc(outlen) : NULL;
	if (out)
		EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

int b64_encode_to(const void *p, size_t n, char *out, size_t outlen)
{
	if (n >= B64_MAX || outlen < 4 * ((n + 2) / 3) + 1)
		return -ENAMETOOLONG;
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return 0;
}

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* Decode exactly n bytes of s. */
static int b64_decode_n(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
	*out = NULL;
	if (n % 4 != 0 || n > B64_MAX)
		return -EINVAL;
	/* OpenSSL's block decoder takes '=' anywhere as zero bits: allow it only as the final
	 * one or two padding characters */
	for (size_t i = 0; i < n; i++) {
		bool ok = b64_char(s[i]);
		if (s[i] == '=')
			ok = i >= n - 2 && (i == n - 1 || s[n - 1] == '=');
		if (!ok)
			return -EINVAL;
	}
	uint8_t *p = malloc(n / 4 * 3 + 1);
	if (!p)
		return -ENOMEM;
	int m = EVP_DecodeBlock(p, (const unsigned char *)s, (int)n);
	if (m < 0) {
		free(p);
		return -EINVAL;
	}
	/* EVP_DecodeBlock counts padding as zero bytes: remove them */
	if (n >= 1 && s[n - 1] == '=')
		m--;
	if (n >= 2 && s[n - 2] == '=')
		m--;
	*out = p;
	*outlen = (size_t)m;
	return 0;
}

int b64_decode(const char *s, uint8_t **out, size_t *outlen)
{
	return b64_decode_n(s, strlen(s), out, outlen);
}

int b64_decode_text(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
	*out = NULL;
	if (n > B64_MAX)
		return -EINVAL;
	char *clean = malloc(n + 1);
	size_t m = 0;
	if (!clean)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			clean[m++] = s[i];
	int r = m ? b64_decode_n(clean, m, out, outlen) : -EINVAL;
	free(clean);
	return r;
}

int hex_encode(const void *p, size_t n, char *dst, size_t dstlen)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = p;
	if (!dstlen)
		return -ENAMETOOLONG;
	dst[0] = '\0';
	if (n > (dstlen - 1) / 2)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < n; i++) {
		dst[2 * i] = digits[b[i] >> 4];
		dst[2 * i + 1] = digits[b[i] & 15];
	}
	dst[2 * n] = '\0';
	return 0;
}

/* ---- percent-encoding ---- */

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int pct_encode(struct buf *b, const char *p, size_t n, unsigned flags)
{
	static const char digits[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((flags & PCT_DECODE) && c == '%' && i + 2 < n &&
		    hexval((unsigned char)p[i + 1]) >= 0 && hexval((unsigned char)p[i + 2]) >= 0) {
			c = (unsigned char)(hexval((unsigned char)p[i + 1]) * 16 +
					    hexval((unsigned char)p[i + 2]));
			i += 2;
		}
		int r;
		if (unreserved(c) || (c == ' ' && (flags & PCT_FORM))) {
			char ch = c == ' ' ? '+' : (char)c;
			r = buf_append(b, &ch, 1);
		} else {
			char e[3] = {'%', digits[c >> 4], digits[c & 15]};
			r = buf_append(b, e, 3);
		}
		if (r)
			return r;
	}
	return 0;
}
