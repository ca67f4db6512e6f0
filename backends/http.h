/* http: the one HTTP client (libcurl), for the cloud backends and the catalog downloader.
 *
 * A call is one request with bounded everything: a total time per attempt, a connect time,
 * a response body cap (-EFBIG past it, never unbounded growth) and a number of attempts.
 * Only http and https; TLS peers are always verified against the system trust store plus,
 * when the environment names one, FLEETFS_CA_BUNDLE (PEM file, one or more CA certificates;
 * an unreadable or invalid file fails every https request with -EPROTO and says so in err).
 *
 * Redirects (301, 302, 303, 307, 308) are followed up to HTTP_MAX_REDIRECTS, to http(s)
 * only, keeping the method and the body (a POST stays a POST even on 303). Secret headers
 * (Authorization, Proxy-Authorization, Cookie, X-Api-Key and the caller's secret_headers) are
 * sent only to the origin (scheme, host, port) of req->url: a redirect elsewhere goes
 * without them.
 *
 * Retries: the attempt's final response 429, 500, 502, 503 or 504, or a transient transport
 * failure (resolve, connect, timeout, connection dropped), is retried until max_attempts,
 * after a Retry-After delay when the response has one (delta seconds or HTTP date), else an
 * exponential backoff with jitter (0.5 s doubling, each delay in [d/2, d]); every delay is
 * capped at 30 s and multiplied by FLEETFS_TIME_SCALE (a float, default 1; tests use 0.01).
 * POST and PATCH are not idempotent, so they are retried only when the server said so (429
 * or 503 with Retry-After) or when not a byte of the request was sent (resolve or connect
 * failures); never after a 500 or a timeout mid-request, unless req->idempotent says the
 * server makes repeats harmless. A retry starts again from req->url.
 *
 * Logs: one line per request sent (each attempt and each redirect hop) through the function
 * set with http_set_logger: label, request id, method, URL without user info, query or
 * fragment, status or error, duration, attempt number. Never a header value or a body; err
 * strings follow the same rule.
 *
 * FLEETFS_HTTP_TIMEOUT_MS, when set, caps the total time of every attempt (tests use it to
 * make a provider "time out" quickly).
 *
 * Threads: a client is shared by any number of threads. It keeps idle curl handles, each
 * with its connection cache (keep-alive, TLS sessions, DNS), and lends one to each call.
 *
 * Cancellation: http_client_shutdown stops a client for good, so that the daemon can unmount
 * promptly while downloads with long timeouts and retries are under way: every call in
 * flight, whatever it is doing (resolving, connecting, waiting for or reading an answer,
 * pausing before a retry), ends within about 100 ms with -ECANCELED, and every later call
 * fails at once without sending anything.
 */
#ifndef FLEETFS_HTTP_H
#define FLEETFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/util.h"

#define HTTP_ERR_MAX 512
#define HTTP_HEADERS_MAX (64 * 1024) /* the response header lines kept in http_resp.headers */
#define HTTP_MAX_REDIRECTS 5

struct http_req {
	const char *method;		   /* GET, POST, PUT, DELETE, PATCH, HEAD; NULL = GET */
	const char *url;		   /* absolute http:// or https:// URL */
	const char *const *headers;	   /* "Name: value" lines, NULL-terminated; may be NULL */
	const char *const *secret_headers; /* more secret header names, NULL-terminated; may be
					    * NULL (see the top of this file) */
	/* The request body (POST, PUT, PATCH, DELETE), may be NULL. Put a Content-Type in
	 * headers: curl labels a body application/x-www-form-urlencoded otherwise. */
	const void *body;
	size_t body_len;
	long timeout_ms;	 /* total per attempt, redirects included; <= 0: 30 s */
	long connect_timeout_ms; /* <= 0: 10 s */
	size_t max_body;	 /* response body cap; 0: 16 MiB */
	int max_attempts;	 /* <= 0: 4; 1 = no retry */
	const char *label;	 /* short tag for the log lines ("lambda"); NULL = "http" */
	/* A POST or PATCH the server treats as idempotent (a read such as EC2's Describe*, or a
	 * create carrying a client token): retried like a GET. */
	bool idempotent;
	/* Substrings of a 5xx body that make it the server's final word, not a passing fault
	 * (EC2's <Code>InsufficientInstanceCapacity</Code> is a 500): not retried. NULL-
	 * terminated; may be NULL. */
	const char *const *final_markers;
};

struct http_resp {
	long status;	    /* the final response's status; 0 when none was received */
	struct buf body;    /* its body, at most max_body bytes */
	struct buf headers; /* its header lines, each "Name: value\n" as received */
	char *content_type; /* these headers' values (malloc'd), NULL when absent */
	char *location;
	char *retry_after;
	int attempts;		/* attempts made (1 + retries) */
	char id[9];		/* the request id of the log lines, 8 hex digits */
	char err[HTTP_ERR_MAX]; /* why it failed, or "HTTP <status>" for a status >= 400; "" else */
};

/* curl_global_init, once per process (later calls return the first result). 0 or -EIO.
 * Call it before starting threads; http_client_new calls it too. */
int http_global_init(void);
/* curl_global_cleanup; at exit, once every client is freed and no thread uses http. */
void http_global_cleanup(void);

/* Where log lines go (one line per call of fn, no newline; fn must be thread-safe).
 * NULL, the default, drops them. */
void http_set_logger(void (*fn)(const char *line));

/* A client; NULL on failure (global init failed). Free with http_client_free once no call
 * is running (after http_client_shutdown too: join the callers first); NULL is fine. */
struct http_client *http_client_new(void);
void http_client_free(struct http_client *c);

/* Cancel c's calls for good: once this returns, each call of http_do (or http_get) on c that
 * is in flight returns -ECANCELED within about 100 ms, its err saying "cancelled: fleetfs is
 * stopping" (a request cut short this way is not retried; the connection it used is
 * closed), and each later call returns -ECANCELED at once, having sent nothing. Any thread
 * may call it, any number of times, also while calls run; it does not wait for them. c stays
 * valid until http_client_free; NULL is fine. */
void http_client_shutdown(struct http_client *c);

/* Perform req. resp is overwritten (it needs no initialisation and must not hold anything
 * to free); free it with http_resp_free after every call, whatever the result.
 * Returns 0 when a response was received, whatever its status (read resp->status; after
 * the last attempt a retryable status such as 503 is returned as it is), else -errno with a
 * reason in resp->err: -EINVAL (bad method, header line or body on GET/HEAD), -ETIMEDOUT,
 * -ECONNREFUSED, -EHOSTUNREACH (no route, or the name does not resolve), -EFBIG (body over
 * max_body, or headers over HTTP_HEADERS_MAX), -EPROTO (TLS: handshake, certificate, CA
 * bundle), -ECANCELED (http_client_shutdown was called; when it woke the pause before a
 * retry, the previous attempt's response is dropped), -ENOMEM, -EIO (anything else: bad URL,
 * protocol other than http(s), too many redirects, connection dropped). req and what it
 * points to are only borrowed. */
int http_do(struct http_client *c, const struct http_req *req, struct http_resp *resp);

/* GET url with the given limits (0 for the defaults of struct http_req); as http_do. */
int http_get(struct http_client *c, const char *url, long timeout_ms, size_t max_body,
	     int max_attempts, struct http_resp *resp);

/* Real milliseconds, for callers that must know how long a request they sent may still be
 * under way (a create whose answer was lost). http_attempt_max_ms: the longest one attempt
 * takes for a request's timeout_ms (<= 0: the default), FLEETFS_HTTP_TIMEOUT_MS applied.
 * http_call_max_ms: the longest a whole http_do takes with these timeout_ms and max_attempts
 * (<= 0: the defaults): every attempt plus the longest pauses between them (scaled by
 * FLEETFS_TIME_SCALE, as the pauses are). No attempt is sent after it. */
long long http_attempt_max_ms(long timeout_ms);
long long http_call_max_ms(long timeout_ms, int max_attempts);

/* The first value of response header name (case-insensitive), blanks trimmed, malloc'd
 * (caller frees), or NULL when the final response has no such header. */
char *http_resp_header(const struct http_resp *r, const char *name);

/* Free what resp holds and reset it to empty; safe to call twice. */
void http_resp_free(struct http_resp *r);

/* Tests only (tests/fuzz): while fn is set, every attempt of http_do is answered by
 * fn(arg, req, resp) instead of the network. The request is still checked and the retries,
 * the body cap and the header parsing still apply; redirects are not followed (a 3xx is the
 * answer). fn sets resp->status, appends the body to resp->body (buf_append: -EFBIG past
 * the cap) and header lines "Name: value\n" to resp->headers, and returns 0, or -errno for a
 * transport failure. Set it before any thread uses http; NULL restores the network. */
typedef int http_responder_fn(void *arg, const struct http_req *req, struct http_resp *resp);
void http_set_responder(http_responder_fn *fn, void *arg);

/* The endpoint for a backend type: the value of FLEETFS_ENDPOINT_<TYPE> (TYPE upper-cased,
 * '-' as '_'; "vast-ai" reads FLEETFS_ENDPOINT_VAST_AI) when set and non-empty, else dflt.
 * The result is borrowed from the environment or is dflt. */
const char *http_endpoint(const char *type, const char *dflt);

#endif
