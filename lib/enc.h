/* enc: the byte-to-text encodings fleetfs uses: base64 (RFC 4648, no line breaks) and hex.
 * Percent-encoding is backends/sigv4.h's sigv4_encode (RFC 3986, the form AWS signs).
 *
 * OpenSSL's block coder does the work; the decoders here add what it lacks: '=' only as the
 * final padding, nothing outside the alphabet, and the padding's zero bytes removed.
 */
#ifndef FLEETFS_ENC_H
#define FLEETFS_ENC_H

#include <stddef.h>
#include <stdint.h>

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

#endif
