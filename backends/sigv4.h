/* sigv4: AWS Signature Version 4 request signing (header-based, AWS4-HMAC-SHA256), for the
 * AWS backend's EC2, STS, IAM and Service Quotas calls.
 *
 * One call turns a request (method, URL, headers, body) plus credentials, region, service and
 * a time into the canonical request, the string to sign, the signature and the Authorization
 * header value, following the published algorithm:
 *
 *   - Canonical URI: the URL's path as it appears in the URL, normalized (dot segments
 *     removed, empty segments dropped, a trailing slash kept), each segment URI-encoded once
 *     more (RFC 3986 unreserved A-Z a-z 0-9 - . _ ~ kept, every other byte %XX uppercase).
 *     An already percent-encoded path is thus encoded twice, as AWS asks for every service
 *     but S3; S3 (no normalization, single encoding) is not supported.
 *   - Canonical query: each name and value percent-decoded then encoded as above, a name
 *     without '=' given an empty value, pairs sorted by encoded name then encoded value.
 *   - Canonical headers: names lowercased, values with leading/trailing blanks trimmed and
 *     inner runs of blanks collapsed to one space, same-name headers joined with ',' in their
 *     order, sorted by name. Every header passed is signed.
 *   - Payload: the lowercase hex SHA-256 of the body (or UNSIGNED-PAYLOAD on request).
 *
 * Percent-encoding is lib/enc.h's pct_encode: the canonical URI and query here, and the
 * AWS query APIs' form bodies (PCT_FORM).
 *
 * HMAC-SHA256 and SHA-256 come from OpenSSL; the derived keys are wiped after use. Nothing
 * here logs, and err never holds a secret (key, token, signature).
 */
#ifndef FLEETFS_SIGV4_H
#define FLEETFS_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define SIGV4_URL_MAX (64 * 1024)    /* longest URL accepted (-EFBIG past it) */
#define SIGV4_HEADERS_MAX 64	     /* most headers to sign, before the added ones */
#define SIGV4_HEADER_MAX (16 * 1024) /* longest header value */
#define SIGV4_ERR_MAX 256

struct sigv4_header {
	const char *name;  /* any case; no ':', blanks or control characters */
	const char *value; /* no CR or LF (fold continuation lines before) */
};

struct sigv4_req {
	const char *method; /* GET, POST ... as sent */
	const char *url;    /* scheme://host[:port]/path?query; no user info, no fragment */
	/* The headers to sign besides those added below, in sending order (borrowed). */
	const struct sigv4_header *headers;
	size_t n_headers;
	const void *body; /* may be NULL when body_len is 0 */
	size_t body_len;
	const char *access_key_id;
	const char *secret_key;
	const char *session_token; /* NULL or "": none */
	const char *region;	   /* us-east-1 */
	const char *service;	   /* ec2, sts, iam, servicequotas */
	time_t when;		   /* the signing time (UTC seconds) */
	bool unsigned_payload;	   /* payload hash "UNSIGNED-PAYLOAD" instead of the body's */
	bool sign_content_sha256;  /* also sign x-amz-content-sha256: <payload hash> */
};

/* What sigv4_sign produces. The strings are malloc'd; sigv4_result_free frees them.
 * Headers to send with the request: Host (when sending through curl, let curl write it: it
 * writes the same value), X-Amz-Date: amz_date, X-Amz-Security-Token: the session token when
 * one was given, X-Amz-Content-Sha256: payload_hash when sign_content_sha256 was set, and
 * Authorization: authorization. */
struct sigv4_result {
	char *canonical_request;
	char *string_to_sign;
	char *signed_headers;  /* "host;x-amz-date" */
	char *authorization;   /* "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/..." */
	char signature[65];    /* lowercase hex */
	char amz_date[17];     /* 20150830T123600Z */
	char payload_hash[65]; /* lowercase hex, or UNSIGNED-PAYLOAD */
};

/* Sign req. Added to the signed headers unless the caller passed them:
 *   host                  from the URL (lowercased; the port only when not the scheme's
 *                         default 80/443), as curl sends it;
 *   x-amz-date            amz_date (when passed it must equal amz_date);
 *   x-amz-security-token  the session token, when given (when passed it must equal it);
 *   x-amz-content-sha256  with sign_content_sha256.
 * Returns 0 and fills out (free it with sigv4_result_free; on error out holds nothing to
 * free), or -EINVAL with err set (missing field, bad URL, bad header name or value, a passed
 * x-amz-date or token that disagrees), -EFBIG (URL, header or header count over the caps),
 * -EIO (OpenSSL failed). err may be NULL. */
int sigv4_sign(const struct sigv4_req *req, struct sigv4_result *out, char *err, size_t errlen);

/* Free the strings of a result and clear it. NULL and a cleared result are fine. */
void sigv4_result_free(struct sigv4_result *r);

struct buf;

/* Percent-encoding (URI and form) is lib/enc.h's pct_encode. */

#endif
