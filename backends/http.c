/* http: see http.h.
 *
 * Design.
 *
 * - Redirects are followed here, not by curl (CURLOPT_FOLLOWLOCATION stays off): curl keeps
 *   sending every custom header except Authorization and Cookie to whatever host a redirect
 *   names, and backends carry API keys in other headers too. Each hop is one
 *   curl_easy_perform on the same handle with the same options, so the method, the body and
 *   the keep-alive connection carry over; CURLINFO_REDIRECT_URL resolves the Location. The
 *   header list of a hop is the full one on req->url's origin, the one without secrets
 *   elsewhere.
 *
 * - Connection reuse: each client keeps a stack of idle easy handles. curl_easy_reset
 *   between calls keeps a handle's open connections, TLS session ids and DNS cache. A handle
 *   is used by one thread at a time, which is all libcurl asks, so there is no CURLSH and no
 *   lock callback; the stack is LIFO so that one thread's sequential calls find the handle
 *   whose connection is still warm.
 *
 * - FLEETFS_CA_BUNDLE is loaded by the CURLOPT_SSL_CTX_FUNCTION callback into the
 *   X509_STORE of each new connection's SSL_CTX; curl 7.88 then adds the system CAs to that
 *   same store. curl can instead install a store cached on the handle
 *   (CURLOPT_CA_CACHE_TIMEOUT), which would drop ours, so that cache is off for calls with a
 *   bundle.
 *
 * - Cancellation (http_client_shutdown): a call runs its transfer on a multi handle of its
 *   own instead of curl_easy_perform, which waits in curl_multi_poll for up to 1 s at a time
 *   when nothing happens on the socket, and the progress callback only runs when it wakes.
 *   Our loop waits at most CANCEL_POLL_MS and checks the client's flag each time round, in
 *   every phase (resolve, connect, TLS handshake, waiting for the answer, reading it); the
 *   CURLOPT_XFERINFOFUNCTION callback checks the same flag from inside curl while data
 *   flows. CURLOPT_QUICK_EXIT lets curl_multi_remove_handle leave a threaded resolve
 *   running instead of waiting for getaddrinfo. The pauses between attempts are timed waits
 *   on the client's condition variable, which shutdown broadcasts. Each idle handle keeps
 *   its multi handle, because the multi handle owns the connection and DNS caches.
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define DEF_TIMEOUT_MS 30000L
#define DEF_CONNECT_MS 10000L
#define DEF_MAX_BODY ((size_t)16 << 20)
#define DEF_ATTEMPTS 4
#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 30000
#define POOL_MAX 16 /* idle handles kept per client */
#define URL_LOG_MAX 512
#define CANCEL_POLL_MS 50 /* the longest a transfer goes without looking at the stop flag */
#define CANCELLED "cancelled: fleetfs is stopping"

/* An easy handle and the multi handle it runs on (which holds its connections). */
struct curl_pair {
	CURL *h;
	CURLM *m;
};

struct http_client {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* broadcast by http_client_shutdown; CLOCK_MONOTONIC */
	atomic_bool stop;
	struct curl_pair idle[POOL_MAX];
	size_t nidle;
};

/* One http_do call. */
struct xfer {
	struct http_client *c;
	const struct http_req *req;
	struct http_resp *resp;
	CURL *h;
	CURLM *m;
	const char *method, *label;
	bool idempotent;
	long timeout_ms;
	int max_attempts;
	struct curl_slist *hdr_all;    /* for req->url's origin */
	struct curl_slist *hdr_public; /* without the secret headers, for other origins */
	const char *ca_bundle;	       /* FLEETFS_CA_BUNDLE, or NULL */
	uint64_t rng;		       /* backoff jitter */
	/* the attempt under way */
	CURLcode cc;		    /* of its last request */
	bool sent;		    /* a byte of one of its requests was sent */
	int cb_err;		    /* -EFBIG/-ENOMEM from a callback */
	char why[HTTP_ERR_MAX / 2]; /* the failure, for log and err */
	char cerr[CURL_ERROR_SIZE]; /* CURLOPT_ERRORBUFFER */
};

typedef void (*log_fn)(const char *line);

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_rc;
static uint64_t g_seed;
static atomic_uint_fast64_t g_calls;
static _Atomic log_fn g_log;
/* http_set_responder: answers in place of the network (tests/fuzz only) */
static http_responder_fn *g_responder;
static void *g_responder_arg;

/* ---- process-wide ---- */

static void init_once(void)
{
	if (getrandom(&g_seed, sizeof(g_seed), GRND_NONBLOCK) != (ssize_t)sizeof(g_seed))
		g_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

int http_global_init(void)
{
	pthread_once(&g_once, init_once);
	return g_init_rc;
}

void http_global_cleanup(void)
{
	curl_global_cleanup();
}

void http_set_logger(void (*fn)(const char *line))
{
	atomic_store(&g_log, fn);
}

const char *http_endpoint(const char *type, const char *dflt)
{
	static const char prefix[] = "FLEETFS_ENDPOINT_";
	char name[128];
	size_t n = sizeof(prefix) - 1;
	memcpy(name, prefix, n);
	for (const char *p = type; p && *p; p++) {
		if (n + 1 >= sizeof(name))
			return dflt;
		name[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	}
	name[n] = '\0';
	const char *v = getenv(name);
	return v && *v ? v : dflt;
}

/* ---- small helpers ---- */

/* splitmix64: request ids and jitter, from a random seed and a call counter. */
static uint64_t mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FLEETFS_TIME_SCALE, or 1 when unset or not a finite number >= 0. */
static double time_scale(void)
{
	const char *s = getenv("FLEETFS_TIME_SCALE");
	char *end = NULL;
	if (!s)
		return 1.0;
	double v = strtod(s, &end);
	return end != s && *end == '\0' && isfinite(v) && v >= 0 ? v : 1.0;
}

/* url without user, password, query and fragment: what logs and err may show. */
static void url_public(const char *url, char *out, size_t outlen)
{
	CURLU *u = curl_url();
	char *s = NULL;
	if (u && !curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) &&
	    !curl_url_set(u, CURLUPART_USER, NULL, 0) &&
	    !curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) &&
	    !curl_url_set(u, CURLUPART_QUERY, NULL, 0) &&
	    !curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) && !curl_url_get(u, CURLUPART_URL, &s, 0))
		fmt_cut(out, outlen, "%s", s);
	else
		fmt_cut(out, outlen, "(bad URL)");
	curl_free(s);
	curl_url_cleanup(u);
}

/* Whether a and b have the same scheme, host and port. */
static bool same_origin(const char *a, const char *b)
{
	static const CURLUPart parts[] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
	CURLU *ua = curl_url(), *ub = curl_url();
	bool same = ua && ub && !curl_url_set(ua, CURLUPART_URL, a, CURLU_NON_SUPPORT_SCHEME) &&
		    !curl_url_set(ub, CURLUPART_URL, b, CURLU_NON_SUPPORT_SCHEME);
	for (size_t i = 0; same && i < sizeof(parts) / sizeof(parts[0]); i++) {
		char *pa = NULL, *pb = NULL;
		unsigned fl = parts[i] == CURLUPART_PORT ? CURLU_DEFAULT_PORT : 0;
		same = !curl_url_get(ua, parts[i], &pa, fl) &&
		       !curl_url_get(ub, parts[i], &pb, fl) && strcasecmp(pa, pb) == 0;
		curl_free(pa);
		curl_free(pb);
	}
	curl_url_cleanup(ua);
	curl_url_cleanup(ub);
	return same;
}

/* Whether the header name (n bytes) is one of list's (NULL-terminated; may be NULL). */
static bool name_in(const char *name, size_t n, const char *const *list)
{
	for (const char *const *l = list; l && *l; l++)
		if (strlen(*l) == n && strncasecmp(name, *l, n) == 0)
			return true;
	return false;
}

static int slist_add(struct curl_slist **l, const char *s)
{
	struct curl_slist *n = curl_slist_append(*l, s);
	if (!n)
		return -ENOMEM;
	*l = n;
	return 0;
}

/* ---- the handle pool ---- */

struct http_client *http_client_new(void)
{
	pthread_condattr_t ca;
	if (http_global_init() != 0)
		return NULL;
	struct http_client *c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->wake, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&c->stop, false);
	return c;
}

/* The easy handle first: it is no longer in its multi handle, which then closes the
 * connections it holds. */
static void handle_cleanup(struct curl_pair *hd)
{
	curl_easy_cleanup(hd->h);
	curl_multi_cleanup(hd->m);
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nidle; i++)
		handle_cleanup(&c->idle[i]);
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void http_client_shutdown(struct http_client *c)
{
	if (!c)
		return;
	atomic_store(&c->stop, true);
	/* under the lock, so that a pause checks the flag either before this or after the
	 * broadcast, never in between */
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->wake);
	pthread_mutex_unlock(&c->mu);
}

static bool stopping(struct http_client *c)
{
	return atomic_load(&c->stop);
}

/* An idle handle, or a new one; false when out of memory. */
static bool pool_take(struct http_client *c, struct curl_pair *hd)
{
	bool found = false;
	pthread_mutex_lock(&c->mu);
	if (c->nidle) {
		*hd = c->idle[--c->nidle];
		found = true;
	}
	pthread_mutex_unlock(&c->mu);
	if (found)
		return true;
	hd->h = curl_easy_init();
	hd->m = curl_multi_init();
	if (hd->h && hd->m)
		return true;
	handle_cleanup(hd);
	return false;
}

static void pool_give(struct http_client *c, struct curl_pair *hd)
{
	curl_easy_reset(hd->h); /* options only: connections and caches stay */
	pthread_mutex_lock(&c->mu);
	if (c->nidle < POOL_MAX) {
		c->idle[c->nidle++] = *hd;
		hd = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (hd)
		handle_cleanup(hd);
}

/* Wait ms, or less when the client is shut down meanwhile: 0 or -ECANCELED. */
static int pause_ms(struct http_client *c, int64_t ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	while (!stopping(c) && pthread_cond_timedwait(&c->wake, &c->mu, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&c->mu);
	return stopping(c) ? -ECANCELED : 0;
}

/* ---- curl callbacks ---- */

static void why_too_big(struct xfer *x)
{
	fmt_cut(x->why, sizeof(x->why), "response body over %zu bytes", x->resp->body.limit);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	int r = buf_append(&x->resp->body, p, size * n);
	if (r) {
		x->cb_err = r;
		why_too_big(x);
		return 0;
	}
	return size * n;
}

/* Keeps the header lines of the latest response (a status line starts over: 1xx). */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	struct buf *b = &x->resp->headers;
	size_t len = size * n;
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
		return buf_truncate(b, 0) == 0 ? size * n : 0;
	while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		len--;
	if (!len)
		return size * n;
	int r = buf_append(b, p, len);
	if (!r)
		r = buf_append(b, "\n", 1);
	if (r) {
		x->cb_err = r;
		fmt_cut(x->why, sizeof(x->why), "response headers over %d bytes", HTTP_HEADERS_MAX);
		return 0;
	}
	return size * n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct xfer *x = ud;
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return stopping(x->c); /* non-zero: CURLE_ABORTED_BY_CALLBACK */
}

static CURLcode on_ssl_ctx(CURL *h, void *ssl_ctx, void *ud)
{
	struct xfer *x = ud;
	(void)h;
	if (X509_STORE_load_file(SSL_CTX_get_cert_store(ssl_ctx), x->ca_bundle) == 1)
		return CURLE_OK;
	fmt_cut(x->why, sizeof(x->why), "cannot load CA certificates from %s (FLEETFS_CA_BUNDLE)",
		x->ca_bundle);
	return CURLE_SSL_CACERT_BADFILE;
}

/* ---- one call ---- */

/* The -errno of a failed request; also fills x->why when no callback did. */
static int transport_errno(struct xfer *x)
{
	long os = 0;
	if (x->cc == CURLE_ABORTED_BY_CALLBACK) { /* on_progress or perform, nothing else */
		fmt_cut(x->why, sizeof(x->why), CANCELLED);
		return -ECANCELED;
	}
	if (!x->why[0])
		fmt_cut(x->why, sizeof(x->why), "%s",
			x->cerr[0] ? x->cerr : curl_easy_strerror(x->cc));
	if (x->cb_err)
		return x->cb_err;
	switch (x->cc) {
	case CURLE_FILESIZE_EXCEEDED:
		why_too_big(x);
		return -EFBIG;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(x->h, CURLINFO_OS_ERRNO, &os);
		return os == ECONNREFUSED ? -ECONNREFUSED
		       : os == ETIMEDOUT  ? -ETIMEDOUT
					  : -EHOSTUNREACH;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* Transport failures worth another attempt (for POST/PATCH only when nothing was sent). */
static bool transient(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

static bool is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static void log_request(const struct xfer *x, const char *url, int attempt, int64_t ms, int rc)
{
	log_fn fn = atomic_load(&g_log);
	char pub[URL_LOG_MAX], line[1024];
	if (!fn)
		return;
	url_public(url, pub, sizeof(pub));
	if (rc)
		fmt_cut(line, sizeof(line), "%s %s %s %s error: %s (%lld ms, attempt %d/%d)",
			x->label, x->resp->id, x->method, pub, x->why, (long long)ms, attempt,
			x->max_attempts);
	else
		fmt_cut(line, sizeof(line), "%s %s %s %s %ld (%lld ms, attempt %d/%d)", x->label,
			x->resp->id, x->method, pub, x->resp->status, (long long)ms, attempt,
			x->max_attempts);
	fn(line);
}

/* curl_easy_perform of x->h, but one that http_client_shutdown stops within about
 * CANCEL_POLL_MS: CURLE_ABORTED_BY_CALLBACK then. */
static CURLcode perform(struct xfer *x)
{
	CURLcode cc = CURLE_OK;
	CURLMcode mc = curl_multi_add_handle(x->m, x->h);
	while (!mc) {
		int running = 0, left = 0;
		if (stopping(x->c)) {
			cc = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		mc = curl_multi_perform(x->m, &running);
		if (!mc && !running) {
			CURLMsg *msg = curl_multi_info_read(x->m, &left);
			cc = msg && msg->msg == CURLMSG_DONE ? msg->data.result : CURLE_FAILED_INIT;
			break;
		}
		if (!mc)
			mc = curl_multi_poll(x->m, NULL, 0, CANCEL_POLL_MS, NULL);
	}
	if (mc) {
		fmt_cut(x->why, sizeof(x->why), "%s", curl_multi_strerror(mc));
		cc = mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT;
	}
	/* mid-transfer, this closes the connection; the handle keeps its CURLINFO */
	(void)curl_multi_remove_handle(x->m, x->h);
	return cc;
}

void http_set_responder(http_responder_fn *fn, void *arg)
{
	g_responder = fn;
	g_responder_arg = arg;
}

/* One attempt answered by the responder: the same contract as attempt(). */
static int respond(struct xfer *x)
{
	struct http_resp *r = x->resp;
	r->status = 0;
	(void)buf_truncate(&r->body, 0);
	(void)buf_truncate(&r->headers, 0);
	x->cc = CURLE_OK;
	x->why[0] = '\0';
	int rc = g_responder(g_responder_arg, x->req, r);
	if (rc) {
		fmt_cut(x->why, sizeof(x->why), "%s", strerror(-rc));
		r->status = 0;
		(void)buf_truncate(&r->body, 0);
		(void)buf_truncate(&r->headers, 0);
	}
	return rc;
}

/* One attempt: the request to req->url and its redirects. 0 with resp->status, body and
 * headers of the final response, or -errno with the reason in x->why. */
static int attempt(struct xfer *x, int n)
{
	if (g_responder)
		return respond(x);
	struct http_resp *r = x->resp;
	int64_t deadline = now_ms() + x->timeout_ms;
	char *url = xstrdup(x->req->url);
	int rc = 0;
	x->sent = false;
	for (int hop = 0;; hop++) {
		char *next = NULL;
		long reqsize = 0;
		r->status = 0;
		(void)buf_truncate(&r->body, 0);
		(void)buf_truncate(&r->headers, 0);
		x->cb_err = 0;
		x->why[0] = x->cerr[0] = '\0';
		int64_t t0 = now_ms();
		curl_easy_setopt(x->h, CURLOPT_URL, url);
		curl_easy_setopt(x->h, CURLOPT_HTTPHEADER,
				 same_origin(x->req->url, url) ? x->hdr_all : x->hdr_public);
		/* 0 would mean no limit: a hop that starts past the deadline times out at once */
		curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS,
				 (long)(deadline > t0 ? deadline - t0 : 1));
		x->cc = perform(x);
		curl_easy_getinfo(x->h, CURLINFO_REQUEST_SIZE, &reqsize);
		x->sent |= reqsize > 0;
		if (x->cc == CURLE_OK) {
			curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &r->status);
			if (is_redirect(r->status))
				curl_easy_getinfo(x->h, CURLINFO_REDIRECT_URL, &next);
			if (next && hop == HTTP_MAX_REDIRECTS) {
				x->cc = CURLE_TOO_MANY_REDIRECTS;
				fmt_cut(x->why, sizeof(x->why), "more than %d redirects",
					HTTP_MAX_REDIRECTS);
			}
		}
		if (x->cc != CURLE_OK)
			rc = transport_errno(x);
		log_request(x, url, n, now_ms() - t0, rc);
		if (rc || !next)
			break;
		free(url);
		url = xstrdup(next);
	}
	free(url);
	if (rc) {
		r->status = 0;
		(void)buf_truncate(&r->body, 0);
		(void)buf_truncate(&r->headers, 0);
	}
	return rc;
}

/* Retry-After of the current response in ms, capped, or -1 when absent or unreadable. */
static int64_t retry_after_ms(const struct http_resp *r)
{
	char *v = http_resp_header(r, "Retry-After");
	long long s = -1;
	if (v && num_parse_ll(v, LLONG_MIN, LLONG_MAX, &s) != 0) {
		time_t t = curl_getdate(v, NULL), now = time(NULL);
		s = t == -1 ? -1 : t > now ? t - now : 0;
	}
	free(v);
	if (s < 0)
		return -1;
	return s > BACKOFF_CAP_MS / 1000 ? BACKOFF_CAP_MS : s * 1000;
}

/* Does the body say the server's answer is definitive (one of req->final_markers)? */
static bool final_answer(const struct xfer *x)
{
	const struct buf *b = &x->resp->body;
	for (const char *const *m = x->req->final_markers; m && *m; m++)
		if (b->data && memmem(b->data, b->len, *m, strlen(*m)))
			return true;
	return false;
}

static bool should_retry(const struct xfer *x, int rc, int64_t retry_after)
{
	long s = x->resp->status;
	if (rc)
		return transient(x->cc) && (x->idempotent || !x->sent);
	if (!x->idempotent)
		return (s == 429 || s == 503) && retry_after >= 0;
	if (s >= 500 && final_answer(x))
		return false;
	return s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

/* The pause after failed attempt n (1-based), scaled: Retry-After when given, else backoff
 * with jitter in [d/2, d], d = 0.5 s * 2^(n-1) up to the cap. */
static int64_t retry_delay_ms(struct xfer *x, int n, int64_t retry_after)
{
	int64_t d = retry_after;
	if (d < 0) {
		int64_t e = (int64_t)BACKOFF_BASE_MS << (n < 8 ? n - 1 : 7);
		if (e > BACKOFF_CAP_MS)
			e = BACKOFF_CAP_MS;
		x->rng = mix(x->rng);
		d = e / 2 + (int64_t)(x->rng % (uint64_t)(e / 2 + 1));
	}
	return (int64_t)((double)d * time_scale());
}

static int bad_request(struct xfer *x, const char *why)
{
	fmt_cut(x->why, sizeof(x->why), "%s", why);
	return -EINVAL;
}

/* Check req, build the header lists and set up a handle. 0 or -EINVAL/-ENOMEM with the
 * reason in x->why. */
static int setup(struct http_client *c, struct xfer *x)
{
	enum { M_GET, M_HEAD, M_POST, M_PUT, M_PATCH, M_DELETE, M_COUNT };
	static const char *const methods[M_COUNT] = {"GET", "HEAD",  "POST",
						     "PUT", "PATCH", "DELETE"};
	static const char *const always_secret[] = {"Authorization", "Proxy-Authorization",
						    "Cookie", "X-Api-Key", NULL};
	const struct http_req *req = x->req;
	int m = M_GET;
	while (m < M_COUNT && strcmp(x->method, methods[m]) != 0)
		m++;
	if (!req->url)
		return bad_request(x, "no URL");
	if (m == M_COUNT)
		return bad_request(x, "unknown method");
	if ((m == M_GET || m == M_HEAD) && req->body_len)
		return bad_request(x, "a body on GET or HEAD");
	x->idempotent = req->idempotent || (m != M_POST && m != M_PATCH);

	/* "Expect:" turns off curl's 100-continue wait on bodies over 1 MiB */
	if (slist_add(&x->hdr_all, "Expect:") || slist_add(&x->hdr_public, "Expect:"))
		return -ENOMEM;
	for (const char *const *l = req->headers; l && *l; l++) {
		size_t n = strcspn(*l, ": \t\r\n");
		if (n == 0 || (*l)[n] != ':' || strpbrk(*l, "\r\n"))
			return bad_request(x, "bad header line");
		bool secret = name_in(*l, n, always_secret) || name_in(*l, n, req->secret_headers);
		if (slist_add(&x->hdr_all, *l) || (!secret && slist_add(&x->hdr_public, *l)))
			return -ENOMEM;
	}

	struct curl_pair hd;
	if (!pool_take(c, &hd))
		return -ENOMEM;
	x->h = hd.h;
	x->m = hd.m;
	CURL *h = x->h;
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	/* a cancelled resolve leaves its getaddrinfo thread behind instead of waiting for it */
	curl_easy_setopt(h, CURLOPT_QUICK_EXIT, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "fleetfs/" FLEETFS_VERSION);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 req->connect_timeout_ms > 0 ? req->connect_timeout_ms : DEF_CONNECT_MS);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->resp->body.limit);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->cerr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	if (x->ca_bundle) {
		curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
		curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, x);
		curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, 0L);
	}
	if (m == M_HEAD) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (m != M_GET) {
		if (m != M_POST)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, x->method);
		/* a DELETE without a body sends none; the others send Content-Length: 0 */
		if (req->body_len || m != M_DELETE) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body_len ? req->body : "");
		}
	}
	return 0;
}

/* The total time of one attempt for a request's timeout_ms (<= 0: the default), after
 * FLEETFS_HTTP_TIMEOUT_MS, which caps every attempt (slow links raise nothing; tests
 * shorten). */
static long attempt_ms(long timeout_ms)
{
	long t = timeout_ms > 0 ? timeout_ms : DEF_TIMEOUT_MS;
	const char *cap = getenv("FLEETFS_HTTP_TIMEOUT_MS");
	long capms = cap ? strtol(cap, NULL, 10) : 0;
	return capms > 0 && capms < t ? capms : t;
}

long long http_attempt_max_ms(long timeout_ms)
{
	return attempt_ms(timeout_ms);
}

long long http_call_max_ms(long timeout_ms, int max_attempts)
{
	long long n = max_attempts > 0 ? max_attempts : DEF_ATTEMPTS;
	/* each pause is at most the cap (Retry-After and backoff alike), scaled */
	double pause = (double)BACKOFF_CAP_MS * time_scale();
	return n * attempt_ms(timeout_ms) + (long long)((double)(n - 1) * pause + 0.5);
}

int http_do(struct http_client *c, const struct http_req *req, struct http_resp *resp)
{
	struct xfer x = {.c = c, .req = req, .resp = resp};
	char pub[URL_LOG_MAX];
	memset(resp, 0, sizeof(*resp));
	buf_init(&resp->body, req->max_body > 0 ? req->max_body : DEF_MAX_BODY);
	buf_init(&resp->headers, HTTP_HEADERS_MAX);
	x.rng = mix(g_seed + atomic_fetch_add(&g_calls, 1));
	fmt_cut(resp->id, sizeof(resp->id), "%08x", (unsigned)(uint32_t)x.rng); /* fits: 8 + 1 */
	x.method = req->method ? req->method : "GET";
	x.label = req->label ? req->label : "http";
	x.timeout_ms = attempt_ms(req->timeout_ms);
	x.max_attempts = req->max_attempts > 0 ? req->max_attempts : DEF_ATTEMPTS;
	x.ca_bundle = getenv("FLEETFS_CA_BUNDLE");
	if (x.ca_bundle && !*x.ca_bundle)
		x.ca_bundle = NULL;

	int rc = -ECANCELED;
	if (stopping(c))
		fmt_cut(x.why, sizeof(x.why), CANCELLED);
	else
		rc = setup(c, &x);
	if (rc) {
		fmt_cut(resp->err, sizeof(resp->err), "%s: %s", x.method,
			x.why[0] ? x.why : "out of memory");
		goto out;
	}
	for (int n = 1;; n++) {
		resp->attempts = n;
		rc = attempt(&x, n);
		int64_t ra = rc ? -1 : retry_after_ms(resp);
		if (rc == -ECANCELED || n >= x.max_attempts || !should_retry(&x, rc, ra))
			break;
		rc = pause_ms(c, retry_delay_ms(&x, n, ra));
		if (rc) { /* the previous attempt's answer is not the result */
			fmt_cut(x.why, sizeof(x.why), CANCELLED);
			resp->status = 0;
			(void)buf_truncate(&resp->body, 0);
			(void)buf_truncate(&resp->headers, 0);
			break;
		}
	}
	url_public(req->url, pub, sizeof(pub));
	if (rc) {
		fmt_cut(resp->err, sizeof(resp->err), "%s %s: %s (attempts: %d)", x.method, pub,
			x.why, resp->attempts);
		goto out;
	}
	if (resp->status >= 400)
		fmt_cut(resp->err, sizeof(resp->err), "%s %s: HTTP %ld (attempts: %d)", x.method,
			pub, resp->status, resp->attempts);
	resp->content_type = http_resp_header(resp, "Content-Type");
	resp->location = http_resp_header(resp, "Location");
	resp->retry_after = http_resp_header(resp, "Retry-After");
out:
	curl_slist_free_all(x.hdr_all);
	curl_slist_free_all(x.hdr_public);
	if (x.h)
		pool_give(c, &(struct curl_pair){.h = x.h, .m = x.m});
	return rc;
}

int http_get(struct http_client *c, const char *url, long timeout_ms, size_t max_body,
	     int max_attempts, struct http_resp *resp)
{
	const struct http_req req = {.url = url,
				     .timeout_ms = timeout_ms,
				     .max_body = max_body,
				     .max_attempts = max_attempts};
	return http_do(c, &req, resp);
}

char *http_resp_header(const struct http_resp *r, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = r->headers.data; p && *p;) {
		const char *eol = strchr(p, '\n');
		if (!eol)
			break;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *e = eol;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			return xstrndup(v, (size_t)(e - v));
		}
		p = eol + 1;
	}
	return NULL;
}

void http_resp_free(struct http_resp *r)
{
	buf_free(&r->body);
	buf_free(&r->headers);
	free(r->content_type);
	free(r->location);
	free(r->retry_after);
	r->content_type = r->location = r->retry_after = NULL;
}
