/* enc: the byte-to-text encodings fleetfs uses: base64 (RFC 4648, no line breaks), hex, and
 * percent-encoding (RFC 3986, and the form encoding of HTML forms).
 *
 * OpenSSL's block coder does the work; the decoders here add what it lacks: '=' only as the
 * final padding, nothing outside the alphabet, and the padding's zero bytes removed.
 */
#ifndef FLEETFS_ENC_H
#define FLEETFS_ENC_H

#include <stddef.h>
#include <stdint.h>

struct buf;

/* The base64 of n bytes, malloc'd and NUL-terminated; NULL when out of memory. */
char *b64_encode(const void *p, size_t n);
/* The same into out (outlen bytes); -ENAMETOOLONG when it does not fit. */
int b64_encode_to(const void *p, size_t n, char *out, size_t outlen);
/* Decode the base64 string s (all of it). *out malloc'd (caller frees). 0, -EINVAL (not
 * base64, or over 64 MiB) or -ENOMEM. */
int b64_decode(const char *s, uint8_t **out, size_t *outlen);
/* The same for n bytes of text in which whitespace (space, tab, CR, LF) is ignored, as in a
 * PEM body. */
int b64_decode_text(const char *s, size_t n, uint8_t **out, size_t *outlen);

/* Lowercase hex of n bytes into dst (2n + 1 bytes, NUL-terminated). -ENAMETOOLONG (dst
 * holds "") when it does not fit. */
int hex_encode(const void *p, size_t n, char *dst, size_t dstlen);

/* pct_encode flags */
#define PCT_DECODE 1u /* a valid %XX in the input stands for its byte (not encoded twice) */
#define PCT_FORM 2u   /* a space is '+' (application/x-www-form-urlencoded) */

/* Append p[0..n) percent-encoded to b: the unreserved bytes A-Z a-z 0-9 - . _ ~ kept, every
 * other byte %XX in uppercase hex. Without flags that is RFC 3986's encoding (what SigV4
 * signs, and what a URL query value needs). With PCT_FORM it is the form encoding the AWS
 * SDKs write query-API bodies with (botocore: urllib's urlencode, i.e. quote_plus): the same
 * but a space is '+'. AWS reads both; emulators (moto, LocalStack) rebuild the body the SDKs'
 * way before checking the signature, so only the SDKs' form passes there. 0, or
 * buf_append's -errno (b's cap). */
int pct_encode(struct buf *b, const char *p, size_t n, unsigned flags);

#endif
