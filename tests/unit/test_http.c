/* Unit tests of backends/http against a scripted HTTP/1.1 server running in a thread of the
 * test (127.0.0.1, port 0): bodies and headers, retries and their delays, the POST retry
 * rule, redirects and secret headers, size and time limits, keep-alive, concurrent callers,
 * the log lines, the endpoint variables, cancellation by http_client_shutdown; HTTPS against
 * `openssl s_server` with a CA made at test time. Sleeps run at FLEETFS_TIME_SCALE=0.01. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../backends/http.h"
#include "../../lib/util.h"
#include "helpers.h"
#include "suites.h"

/* ---- the scripted server ---- */

#define SRV_MAX_REQ 64
#define SRV_MAX_CONN 16

struct step {
	int status;	     /* 0: close the connection without answering */
	const char *headers; /* extra header lines, each ending in "\r\n" */
	const char *body;    /* NULL: empty */
	size_t body_len;     /* 0: strlen(body) */
	bool hang;	     /* never answer, keep the connection open */
	bool no_length;	     /* no Content-Length: the body ends when the connection closes */
};

struct rec {
	char *head; /* request line and header lines */
	char *body; /* NUL-terminated past body_len */
	size_t body_len;
	int conn;      /* connection number, from 0 */
	int64_t at_ms; /* arrival, CLOCK_MONOTONIC */
};

/* Only the server thread writes; tests read after srv_stop (the join orders it). */
struct srv {
	int lfd, port;
	pthread_t th;
	atomic_bool stop;
	const struct step *steps;
	size_t nsteps; /* request i gets steps[i], the last one repeating */
	struct rec rec[SRV_MAX_REQ];
	size_t nreq;
	int nconn;
	char url[256]; /* at()'s result */
};

struct sconn {
	int fd, id;
	bool hung;
	struct buf in;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Answer one request; false when the connection is to be closed. */
static bool respond(int fd, const struct step *st)
{
	const char *body = st->body ? st->body : "";
	size_t blen = st->body_len ? st->body_len : strlen(body);
	char head[2048];
	if (!st->status)
		return false;
	if (st->no_length)
		fmt_cut(head, sizeof(head), "HTTP/1.1 %d Scripted\r\n%sConnection: close\r\n\r\n",
			st->status, st->headers ? st->headers : "");
	else
		fmt_cut(head, sizeof(head), "HTTP/1.1 %d Scripted\r\n%sContent-Length: %zu\r\n\r\n",
			st->status, st->headers ? st->headers : "", blen);
	return send_all(fd, head, strlen(head)) && send_all(fd, body, blen) && !st->no_length;
}

/* Read what the connection has and answer every complete request in it; false: close it. */
static bool conn_serve(struct srv *s, struct sconn *c)
{
	char chunk[65536];
	ssize_t n = read(c->fd, chunk, sizeof(chunk));
	if (n <= 0 || buf_append(&c->in, chunk, (size_t)n) != 0)
		return false;
	while (!c->hung && c->in.len) {
		const char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
		if (!end)
			return true;
		size_t hlen = (size_t)(end - c->in.data) + 4, blen = 0;
		char *head = xstrndup(c->in.data, hlen);
		const char *cl = strcasestr(head, "\r\nContent-Length:");
		if (cl)
			blen = strtoul(cl + 17, NULL, 10);
		if (c->in.len < hlen + blen) {
			free(head);
			return true;
		}
		if (s->nreq < SRV_MAX_REQ) {
			struct rec *r = &s->rec[s->nreq];
			r->head = head;
			r->body = xmalloc(blen + 1);
			memcpy(r->body, c->in.data + hlen, blen);
			r->body[blen] = '\0';
			r->body_len = blen;
			r->conn = c->id;
			r->at_ms = mono_ms();
		} else {
			free(head);
		}
		const struct step *st = &s->steps[s->nreq < s->nsteps ? s->nreq : s->nsteps - 1];
		s->nreq++;
		memmove(c->in.data, c->in.data + hlen + blen, c->in.len - hlen - blen);
		(void)buf_truncate(&c->in, c->in.len - hlen - blen);
		if (st->hang)
			c->hung = true;
		else if (!respond(c->fd, st))
			return false;
	}
	return true;
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	struct sconn c[SRV_MAX_CONN];
	size_t nc = 0;
	while (!atomic_load(&s->stop)) {
		struct pollfd p[SRV_MAX_CONN + 1];
		size_t nl = nc;
		for (size_t i = 0; i < nc; i++)
			p[i] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
		p[nl] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
		if (poll(p, nl + 1, 20) <= 0)
			continue;
		for (size_t i = nl; i-- > 0;)
			if (p[i].revents && !conn_serve(s, &c[i])) {
				close(c[i].fd);
				buf_free(&c[i].in);
				c[i] = c[--nc];
			}
		if ((p[nl].revents & POLLIN) && nc < SRV_MAX_CONN) {
			int fd = accept(s->lfd, NULL, NULL);
			if (fd >= 0) {
				c[nc] = (struct sconn){.fd = fd, .id = s->nconn++};
				buf_init(&c[nc++].in, 1 << 20);
			}
		}
	}
	for (size_t i = 0; i < nc; i++) {
		close(c[i].fd);
		buf_free(&c[i].in);
	}
	return NULL;
}

static void srv_start(struct srv *s, const struct step *steps, size_t nsteps)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	memset(s, 0, sizeof(*s));
	s->steps = steps;
	s->nsteps = nsteps;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->lfd, 0);
	ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(s->lfd, 16), 0);
	ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&a, &sl), 0);
	s->port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

/* Stop and join the server thread; its records stay readable until srv_free. */
static void srv_stop(struct srv *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->th, NULL);
	close(s->lfd);
}

static void srv_free(struct srv *s)
{
	for (size_t i = 0; i < s->nreq && i < SRV_MAX_REQ; i++) {
		free(s->rec[i].head);
		free(s->rec[i].body);
	}
}

/* "http://127.0.0.1:<port><path>", valid until the next call for s. */
static const char *at(struct srv *s, const char *path)
{
	ck_assert_int_eq(fmt(s->url, sizeof(s->url), "http://127.0.0.1:%d%s", s->port, path), 0);
	return s->url;
}

static bool has_header(const struct rec *r, const char *name)
{
	char pat[128];
	ck_assert_int_eq(fmt(pat, sizeof(pat), "\r\n%s:", name), 0);
	return strcasestr(r->head, pat) != NULL;
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A port nothing listens on (bound once, then closed). */
static int closed_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static struct http_client *client(void)
{
	struct http_client *c = http_client_new();
	ck_assert_ptr_nonnull(c);
	return c;
}

static void setup(void)
{
	setenv("FLEETFS_TIME_SCALE", "0.01", 1);
	setenv("no_proxy", "*", 1);
	unsetenv("FLEETFS_CA_BUNDLE");
	ck_assert_int_eq(http_global_init(), 0);
}

/* ---- tests ---- */

START_TEST(test_get)
{
	static const struct step steps[] = {
		{.status = 200,
		 .headers = "Content-Type: text/plain\r\nX-Thing:  two words \r\n",
		 .body = "hello"}};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 1);
	ck_assert_int_eq(http_get(c, at(&s, "/a/b?x=1"), 0, 0, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body.len, 5);
	ck_assert_str_eq(r.body.data, "hello");
	ck_assert_int_eq(r.attempts, 1);
	ck_assert_str_eq(r.err, "");
	ck_assert_str_eq(r.content_type, "text/plain");
	ck_assert_ptr_null(r.location);
	ck_assert_ptr_null(r.retry_after);
	char *v = http_resp_header(&r, "x-thing");
	ck_assert_str_eq(v, "two words");
	free(v);
	ck_assert_ptr_null(http_resp_header(&r, "X-Thin"));
	ck_assert_uint_eq(strlen(r.id), 8);
	ck_assert_uint_eq(strspn(r.id, "0123456789abcdef"), 8);
	http_resp_free(&r);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 1);
	ck_assert(starts(s.rec[0].head, "GET /a/b?x=1 HTTP/1.1\r\n"));
	ck_assert(strstr(s.rec[0].head, "\r\nUser-Agent: fleetfs/") != NULL);
	ck_assert(!has_header(&s.rec[0], "Expect"));
	srv_free(&s);
	http_client_free(c);
}
END_TEST

START_TEST(test_methods)
{
	static const struct step steps[] = {{.status = 200}};
	static const char *const hdr[] = {"Content-Type: application/json", NULL};
	static const char *const bad_hdr[] = {"X-A: 1\r\nX-B: 2", NULL};
	static const char *const bad_name[] = {"X-Api-Key : k", NULL};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 1);
	struct http_req q = {.method = "PUT",
			     .url = at(&s, "/p"),
			     .headers = hdr,
			     .body = "{\"a\":1}",
			     .body_len = 7};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 200);
	http_resp_free(&r);
	q = (struct http_req){.method = "DELETE", .url = at(&s, "/d")};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	http_resp_free(&r);
	q = (struct http_req){.method = "PATCH", .url = at(&s, "/x"), .body = "z", .body_len = 1};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	http_resp_free(&r);
	q = (struct http_req){.method = "HEAD", .url = at(&s, "/h")};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 200);
	http_resp_free(&r);

	/* refused before anything is sent */
	q = (struct http_req){.method = "TRACE", .url = at(&s, "/t")};
	ck_assert_int_eq(http_do(c, &q, &r), -EINVAL);
	ck_assert(strstr(r.err, "method") != NULL);
	http_resp_free(&r);
	q = (struct http_req){.url = at(&s, "/g"), .body = "b", .body_len = 1};
	ck_assert_int_eq(http_do(c, &q, &r), -EINVAL);
	http_resp_free(&r);
	q = (struct http_req){.url = at(&s, "/g"), .headers = bad_hdr};
	ck_assert_int_eq(http_do(c, &q, &r), -EINVAL);
	ck_assert(strstr(r.err, "header") != NULL);
	http_resp_free(&r);
	q = (struct http_req){.url = at(&s, "/g"), .headers = bad_name};
	ck_assert_int_eq(http_do(c, &q, &r), -EINVAL);
	http_resp_free(&r);
	q = (struct http_req){.url = NULL};
	ck_assert_int_eq(http_do(c, &q, &r), -EINVAL);
	http_resp_free(&r);
	ck_assert_int_eq(http_get(c, "gopher://127.0.0.1/", 0, 0, 0, &r), -EIO);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);

	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 4);
	ck_assert(starts(s.rec[0].head, "PUT /p HTTP/1.1\r\n"));
	ck_assert_str_eq(s.rec[0].body, "{\"a\":1}");
	ck_assert(strstr(s.rec[0].head, "\r\nContent-Type: application/json\r\n") != NULL);
	ck_assert(starts(s.rec[1].head, "DELETE /d HTTP/1.1\r\n"));
	ck_assert(!has_header(&s.rec[1], "Content-Length"));
	ck_assert(starts(s.rec[2].head, "PATCH /x HTTP/1.1\r\n"));
	ck_assert_str_eq(s.rec[2].body, "z");
	ck_assert(starts(s.rec[3].head, "HEAD /h HTTP/1.1\r\n"));
	srv_free(&s);
	http_client_free(c);
}
END_TEST

START_TEST(test_retry_503)
{
	static const struct step steps[] = {{.status = 503}, {.status = 200, .body = "ok"}};
	static const struct step dropped[] = {{.status = 0}, {.status = 200, .body = "ok"}};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 2);
	ck_assert_int_eq(http_get(c, at(&s, "/"), 0, 0, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body.data, "ok");
	ck_assert_int_eq(r.attempts, 2);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 2);
	srv_free(&s);

	/* a connection closed without an answer is retried too */
	srv_start(&s, dropped, 2);
	ck_assert_int_eq(http_get(c, at(&s, "/"), 0, 0, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.attempts, 2);
	http_resp_free(&r);
	srv_stop(&s);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

/* Retry-After as delta seconds, as an HTTP date, and over the cap; all scaled by 0.01. */
START_TEST(test_retry_after)
{
	char date[128], hdr[160];
	time_t later = time(NULL) + 2;
	struct tm tm;
	ck_assert_uint_gt(
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&later, &tm)),
		0);
	ck_assert_int_eq(fmt(hdr, sizeof(hdr), "Retry-After: %s\r\n", date), 0);
	const struct step steps[] = {{.status = 429, .headers = "Retry-After: 1\r\n"},
				     {.status = 503, .headers = hdr},
				     {.status = 503, .headers = "Retry-After: 3600\r\n"},
				     {.status = 200, .body = "done"}};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 4);
	ck_assert_int_eq(http_get(c, at(&s, "/r"), 0, 0, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.attempts, 4);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 4);
	int64_t d1 = s.rec[1].at_ms - s.rec[0].at_ms, d2 = s.rec[2].at_ms - s.rec[1].at_ms,
		d3 = s.rec[3].at_ms - s.rec[2].at_ms;
	ck_assert_msg(d1 >= 10 && d1 < 1000, "Retry-After 1: %lld ms", (long long)d1);
	ck_assert_msg(d2 >= 10 && d2 < 1000, "Retry-After date: %lld ms", (long long)d2);
	ck_assert_msg(d3 >= 300 && d3 < 2000, "Retry-After capped: %lld ms", (long long)d3);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

START_TEST(test_retries_exhausted)
{
	static const struct step steps[] = {
		{.status = 500}, {.status = 500}, {.status = 500}, {.status = 404}};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 4);
	ck_assert_int_eq(http_get(c, at(&s, "/e"), 0, 0, 3, &r), 0);
	ck_assert_int_eq(r.status, 500);
	ck_assert_int_eq(r.attempts, 3);
	ck_assert(strstr(r.err, "HTTP 500") != NULL);
	http_resp_free(&r);
	/* 404 is an answer, not a failure to retry */
	ck_assert_int_eq(http_get(c, at(&s, "/e"), 0, 0, 3, &r), 0);
	ck_assert_int_eq(r.status, 404);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 4);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

START_TEST(test_post_retry_rule)
{
	static const struct step steps[] = {{.status = 500},
					    {.status = 503},
					    {.status = 503, .headers = "Retry-After: 1\r\n"},
					    {.status = 201, .body = "made"}};
	static const struct step dropped[] = {{.status = 0}, {.status = 200}};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 4);
	struct http_req q = {.method = "POST", .url = at(&s, "/p"), .body = "x=1", .body_len = 3};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 500);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 503);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 201);
	ck_assert_int_eq(r.attempts, 2);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 4);
	for (size_t i = 0; i < 4; i++) {
		ck_assert(starts(s.rec[i].head, "POST /p HTTP/1.1\r\n"));
		ck_assert_str_eq(s.rec[i].body, "x=1");
	}
	srv_free(&s);

	/* sent, then the connection dropped: the server may have acted, so no retry */
	http_client_free(c);
	c = client();
	srv_start(&s, dropped, 2);
	q.url = at(&s, "/p");
	ck_assert_int_eq(http_do(c, &q, &r), -EIO);
	ck_assert_int_eq(r.attempts, 1);
	ck_assert_int_eq(r.status, 0);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 1);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

/* An idempotent POST (EC2's reads, a create with a client token) is retried like a GET, sent
 * or not; a 5xx whose body carries a final marker (EC2's no-capacity 500) is not. */
START_TEST(test_idempotent_post)
{
	static const struct step steps[] = {
		{.status = 500, .body = "<Response><Errors><Error><Code>InternalError</Code>"},
		{.status = 502},
		{.status = 200, .body = "ok"},
		{.status = 500, .body = "<Response><Errors><Error><Code>"
					"InsufficientInstanceCapacity</Code>"},
		{.status = 200, .body = "not reached"}};
	static const char *const final[] = {"<Code>InsufficientInstanceCapacity</Code>", NULL};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 5);
	struct http_req q = {.method = "POST", .url = at(&s, "/"), .body = "Action=X",
			     .body_len = 8, .idempotent = true, .final_markers = final};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.attempts, 3); /* after a 500 and a 502 */
	http_resp_free(&r);
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 500);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 4);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

START_TEST(test_redirects)
{
	static const struct step chain[] = {{.status = 301, .headers = "Location: /b\r\n"},
					    {.status = 302, .headers = "Location: /c?q=1\r\n"},
					    {.status = 303, .headers = "Location: /d\r\n"},
					    {.status = 307, .headers = "Location: /e\r\n"},
					    {.status = 308, .headers = "Location: /f\r\n"},
					    {.status = 200, .body = "done"}};
	static const struct step loop[] = {{.status = 302, .headers = "Location: /loop\r\n"}};
	static const struct step ftp[] = {
		{.status = 302, .headers = "Location: ftp://127.0.0.1/\r\n"}};
	static const char *const paths[] = {"/a", "/b", "/c?q=1", "/d", "/e", "/f"};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, chain, 6);
	struct http_req q = {
		.method = "POST", .url = at(&s, "/a"), .body = "payload", .body_len = 7};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body.data, "done");
	ck_assert_int_eq(r.attempts, 1);
	ck_assert_ptr_null(r.location);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 6);
	for (size_t i = 0; i < 6; i++) {
		char line[64];
		ck_assert_int_eq(fmt(line, sizeof(line), "POST %s HTTP/1.1\r\n", paths[i]), 0);
		ck_assert_msg(starts(s.rec[i].head, line), "request %zu: %s", i, s.rec[i].head);
		ck_assert_str_eq(s.rec[i].body, "payload");
		ck_assert_int_eq(s.rec[i].conn, 0);
	}
	srv_free(&s);

	srv_start(&s, loop, 1);
	ck_assert_int_eq(http_get(c, at(&s, "/a"), 0, 0, 0, &r), -EIO);
	ck_assert(strstr(r.err, "redirects") != NULL);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 1 + HTTP_MAX_REDIRECTS);
	srv_free(&s);

	srv_start(&s, ftp, 1);
	ck_assert_int_eq(http_get(c, at(&s, "/a"), 0, 0, 0, &r), -EIO);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 1);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

/* Secret headers follow a redirect on the same origin, not to another one. */
START_TEST(test_redirect_secrets)
{
	static const struct step b_steps[] = {{.status = 200, .body = "b"}};
	static const char *const hdr[] = {"Authorization: Bearer tok",
					  "X-Api-Key: k1",
					  "Cookie: c=1",
					  "X-Mine: m",
					  "X-Plain: p",
					  NULL};
	static const char *const secret[] = {"x-mine", NULL};
	struct srv a, b;
	struct http_resp r;
	char loc[128];
	struct http_client *c = client();
	srv_start(&b, b_steps, 1);
	ck_assert_int_eq(fmt(loc, sizeof(loc), "Location: %s\r\n", at(&b, "/other")), 0);
	const struct step a_steps[] = {{.status = 302, .headers = "Location: /same\r\n"},
				       {.status = 302, .headers = loc}};
	srv_start(&a, a_steps, 2);
	struct http_req q = {.url = at(&a, "/first"), .headers = hdr, .secret_headers = secret};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body.data, "b");
	http_resp_free(&r);
	srv_stop(&a);
	srv_stop(&b);
	ck_assert_uint_eq(a.nreq, 2);
	ck_assert_uint_eq(b.nreq, 1);
	for (size_t i = 0; i < 2; i++)
		for (const char *const *h = hdr; *h; h++)
			ck_assert_msg(strstr(a.rec[i].head, *h) != NULL, "%s missing", *h);
	ck_assert(starts(b.rec[0].head, "GET /other HTTP/1.1\r\n"));
	ck_assert(strstr(b.rec[0].head, "X-Plain: p") != NULL);
	ck_assert(!has_header(&b.rec[0], "Authorization"));
	ck_assert(!has_header(&b.rec[0], "X-Api-Key"));
	ck_assert(!has_header(&b.rec[0], "Cookie"));
	ck_assert(!has_header(&b.rec[0], "X-Mine"));
	srv_free(&a);
	srv_free(&b);
	http_client_free(c);
}
END_TEST

START_TEST(test_max_body)
{
	static char big[100000];
	memset(big, 'a', sizeof(big));
	const struct step steps[] = {
		{.status = 200, .body = big, .body_len = sizeof(big)},
		{.status = 200, .body = big, .body_len = sizeof(big), .no_length = true},
		{.status = 200, .body = big, .body_len = 1000}};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 3);
	/* announced by Content-Length */
	ck_assert_int_eq(http_get(c, at(&s, "/big"), 0, 1000, 0, &r), -EFBIG);
	ck_assert_int_eq(r.attempts, 1);
	ck_assert(strstr(r.err, "over 1000 bytes") != NULL);
	ck_assert_uint_eq(r.body.len, 0);
	http_resp_free(&r);
	/* found while reading */
	ck_assert_int_eq(http_get(c, at(&s, "/big"), 0, 1000, 0, &r), -EFBIG);
	ck_assert(strstr(r.err, "over 1000 bytes") != NULL);
	http_resp_free(&r);
	/* exactly the cap */
	ck_assert_int_eq(http_get(c, at(&s, "/big"), 0, 1000, 0, &r), 0);
	ck_assert_uint_eq(r.body.len, 1000);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 3);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

START_TEST(test_timeout)
{
	static const struct step steps[] = {{.hang = true}};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 1);
	int64_t t0 = mono_ms();
	ck_assert_int_eq(http_get(c, at(&s, "/slow"), 300, 0, 1, &r), -ETIMEDOUT);
	int64_t dt = mono_ms() - t0;
	ck_assert_msg(dt >= 290 && dt < 2000, "took %lld ms", (long long)dt);
	ck_assert(strstr(r.err, "timed out") != NULL);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);
	/* a GET that timed out is retried */
	ck_assert_int_eq(http_get(c, at(&s, "/slow"), 200, 0, 2, &r), -ETIMEDOUT);
	ck_assert_int_eq(r.attempts, 2);
	http_resp_free(&r);
	/* a POST that timed out after sending is not */
	struct http_req q = {
		.method = "POST", .url = at(&s, "/slow"), .timeout_ms = 200, .max_attempts = 3};
	ck_assert_int_eq(http_do(c, &q, &r), -ETIMEDOUT);
	ck_assert_int_eq(r.attempts, 1);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 4);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

START_TEST(test_refused)
{
	struct http_resp r;
	char url[64];
	struct http_client *c = client();
	ck_assert_int_eq(fmt(url, sizeof(url), "http://127.0.0.1:%d/x", closed_port()), 0);
	ck_assert_int_eq(http_get(c, url, 0, 0, 2, &r), -ECONNREFUSED);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert(strstr(r.err, "127.0.0.1") != NULL);
	http_resp_free(&r);
	/* nothing was sent: a POST is retried too */
	struct http_req q = {.method = "POST", .url = url, .max_attempts = 3};
	ck_assert_int_eq(http_do(c, &q, &r), -ECONNREFUSED);
	ck_assert_int_eq(r.attempts, 3);
	http_resp_free(&r);
	http_client_free(c);
}
END_TEST

START_TEST(test_keepalive)
{
	static const struct step steps[] = {{.status = 200, .body = "k"}};
	struct srv s;
	struct http_resp r;
	struct http_client *c = client();
	srv_start(&s, steps, 1);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(http_get(c, at(&s, "/k"), 0, 0, 0, &r), 0);
		ck_assert_int_eq(r.status, 200);
		http_resp_free(&r);
	}
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 2);
	ck_assert_int_eq(s.nconn, 1);
	ck_assert_int_eq(s.rec[0].conn, s.rec[1].conn);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

#define PAR_THREADS 4
#define PAR_CALLS 10

struct par {
	struct http_client *c;
	const char *url;
	atomic_int *failed;
};

static void *par_run(void *arg)
{
	struct par *p = arg;
	for (int i = 0; i < PAR_CALLS; i++) {
		struct http_resp r;
		if (http_get(p->c, p->url, 0, 0, 1, &r) != 0 || r.status != 200 ||
		    strcmp(r.body.data, "ok") != 0)
			atomic_fetch_add(p->failed, 1);
		http_resp_free(&r);
	}
	return NULL;
}

START_TEST(test_concurrent)
{
	static const struct step steps[] = {{.status = 200, .body = "ok"}};
	struct srv s;
	pthread_t th[PAR_THREADS];
	atomic_int failed = 0;
	struct http_client *c = client();
	srv_start(&s, steps, 1);
	struct par p = {.c = c, .url = at(&s, "/c"), .failed = &failed};
	for (int i = 0; i < PAR_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, par_run, &p), 0);
	for (int i = 0; i < PAR_THREADS; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(atomic_load(&failed), 0);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, PAR_THREADS * PAR_CALLS);
	/* at most one handle, so one connection, per thread at a time */
	ck_assert_int_le(s.nconn, PAR_THREADS);
	srv_free(&s);
	http_client_free(c);
}
END_TEST

static struct buf g_lines;
static int g_nlines;

static void capture(const char *line)
{
	ck_assert_int_eq(buf_printf(&g_lines, "%s\n", line), 0);
	g_nlines++;
}

START_TEST(test_log_lines)
{
	static const struct step steps[] = {{.status = 503, .headers = "Retry-After: 0\r\n"},
					    {.status = 200}};
	static const char *const hdr[] = {"Authorization: Bearer s3cr3t-tok", "X-Api-Key: k3y-val",
					  NULL};
	static const char *const never[] = {"s3cr3t", "Bearer", "k3y-val",  "sekrit",	  "token",
					    "fr4g",   "us3r",	"passw0rd", "bodysecret", NULL};
	struct srv s;
	struct http_resp r;
	char url[256], expect[128];
	struct http_client *c = client();
	buf_init(&g_lines, 64 * 1024);
	http_set_logger(capture);
	srv_start(&s, steps, 2);
	ck_assert_int_eq(fmt(url, sizeof(url),
			     "http://us3r:passw0rd@127.0.0.1:%d/path/x?token=sekrit#fr4g", s.port),
			 0);
	struct http_req q = {.method = "POST",
			     .url = url,
			     .headers = hdr,
			     .body = "bodysecret",
			     .body_len = 10,
			     .label = "mylabel"};
	ck_assert_int_eq(http_do(c, &q, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_int_eq(g_nlines, 2);
	ck_assert_int_eq(fmt(expect, sizeof(expect),
			     "mylabel %s POST http://127.0.0.1:%d/path/x 503 (", r.id, s.port),
			 0);
	ck_assert_msg(starts(g_lines.data, expect), "%s", g_lines.data);
	ck_assert(strstr(g_lines.data, "attempt 1/4)\n") != NULL);
	ck_assert(strstr(g_lines.data, "/path/x 200 (") != NULL);
	ck_assert(strstr(g_lines.data, "attempt 2/4)\n") != NULL);
	http_resp_free(&r);
	srv_stop(&s);
	ck_assert(strstr(s.rec[0].head, "Bearer s3cr3t-tok") != NULL); /* it was sent */
	srv_free(&s);

	/* a failure: the line and err name the error, still without secrets */
	ck_assert_int_eq(fmt(url, sizeof(url), "http://127.0.0.1:%d/y?token=sekrit", closed_port()),
			 0);
	q = (struct http_req){.url = url, .headers = hdr, .max_attempts = 1};
	ck_assert_int_eq(http_do(c, &q, &r), -ECONNREFUSED);
	ck_assert_int_eq(g_nlines, 3);
	ck_assert(strstr(g_lines.data, "/y error: ") != NULL);
	for (const char *const *w = never; *w; w++) {
		ck_assert_msg(strstr(g_lines.data, *w) == NULL, "log shows %s: %s", *w,
			      g_lines.data);
		ck_assert_msg(strstr(r.err, *w) == NULL, "err shows %s: %s", *w, r.err);
	}
	http_resp_free(&r);

	http_set_logger(NULL);
	ck_assert_int_eq(http_do(c, &q, &r), -ECONNREFUSED);
	ck_assert_int_eq(g_nlines, 3);
	http_resp_free(&r);
	buf_free(&g_lines);
	http_client_free(c);
}
END_TEST

START_TEST(test_endpoint)
{
	unsetenv("FLEETFS_ENDPOINT_VAST_AI");
	ck_assert_str_eq(http_endpoint("vast-ai", "https://d"), "https://d");
	setenv("FLEETFS_ENDPOINT_VAST_AI", "http://127.0.0.1:9/v", 1);
	ck_assert_str_eq(http_endpoint("vast-ai", "https://d"), "http://127.0.0.1:9/v");
	setenv("FLEETFS_ENDPOINT_LAMBDA", "http://l", 1);
	ck_assert_str_eq(http_endpoint("lambda", NULL), "http://l");
	setenv("FLEETFS_ENDPOINT_LAMBDA", "", 1);
	ck_assert_ptr_null(http_endpoint("lambda", NULL));
	char longtype[300];
	memset(longtype, 'a', sizeof(longtype) - 1);
	longtype[sizeof(longtype) - 1] = '\0';
	ck_assert_str_eq(http_endpoint(longtype, "d"), "d");
}
END_TEST

/* The longest attempt and call (the engine's bound for a create still under way): real
 * attempt times, capped by FLEETFS_HTTP_TIMEOUT_MS; pauses of at most 30 s, scaled. */
START_TEST(test_call_max)
{
	unsetenv("FLEETFS_HTTP_TIMEOUT_MS");
	ck_assert_int_eq(http_attempt_max_ms(0), 30000);
	ck_assert_int_eq(http_attempt_max_ms(5000), 5000);
	ck_assert_int_eq(http_call_max_ms(0, 0), 4 * 30000 + 3 * 300); /* scale 0.01 */
	ck_assert_int_eq(http_call_max_ms(5000, 1), 5000);
	setenv("FLEETFS_HTTP_TIMEOUT_MS", "1500", 1);
	ck_assert_int_eq(http_attempt_max_ms(0), 1500);
	ck_assert_int_eq(http_attempt_max_ms(1000), 1000);
	ck_assert_int_eq(http_call_max_ms(0, 2), 2 * 1500 + 300);
	setenv("FLEETFS_TIME_SCALE", "1", 1);
	ck_assert_int_eq(http_call_max_ms(0, 0), 4 * 1500 + 3 * 30000);
	unsetenv("FLEETFS_HTTP_TIMEOUT_MS");
	setenv("FLEETFS_TIME_SCALE", "0.01", 1);
}
END_TEST

/* ---- cancellation ---- */

#define CANCEL_AFTER_MS 200 /* how long the calls run before http_client_shutdown */
#define CANCEL_WITHIN_MS 600

/* A call of http_do in a thread of its own. */
struct bg {
	struct http_client *c;
	struct http_req q;
	struct http_resp r;
	int rc;
	int64_t end_ms; /* when it returned */
	atomic_bool done;
	pthread_t th;
};

static void *bg_main(void *arg)
{
	struct bg *b = arg;
	b->rc = http_do(b->c, &b->q, &b->r);
	b->end_ms = mono_ms();
	atomic_store(&b->done, true);
	return NULL;
}

static void bg_start(struct bg *b, struct http_client *c, const struct http_req *q)
{
	memset(b, 0, sizeof(*b));
	b->c = c;
	b->q = *q;
	ck_assert_int_eq(pthread_create(&b->th, NULL, bg_main, b), 0);
}

static void pause_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void *shutdown_main(void *arg)
{
	http_client_shutdown(arg);
	return NULL;
}

/* Let the n calls run CANCEL_AFTER_MS, shut c down (from another thread when asked), join
 * the calls and check that each ended in -ECANCELED within CANCEL_WITHIN_MS of it. */
static void cancel_and_check(struct http_client *c, struct bg *b, size_t n, bool other_thread)
{
	pause_ms(CANCEL_AFTER_MS);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(!atomic_load(&b[i].done), "call %zu ended before the shutdown", i);
	int64_t t0 = mono_ms();
	if (other_thread) {
		pthread_t th;
		ck_assert_int_eq(pthread_create(&th, NULL, shutdown_main, c), 0);
		pthread_join(th, NULL);
	} else {
		http_client_shutdown(c);
	}
	for (size_t i = 0; i < n; i++) {
		pthread_join(b[i].th, NULL);
		int64_t dt = b[i].end_ms - t0;
		ck_assert_int_eq(b[i].rc, -ECANCELED);
		ck_assert_msg(dt < CANCEL_WITHIN_MS, "call %zu took %lld ms", i, (long long)dt);
		ck_assert_msg(strstr(b[i].r.err, "cancelled: fleetfs is stopping") != NULL, "%s",
			      b[i].r.err);
		ck_assert_int_eq(b[i].r.status, 0);
		ck_assert_uint_eq(b[i].r.body.len, 0);
		ck_assert_int_eq(b[i].r.attempts, 1); /* not retried */
		http_resp_free(&b[i].r);
	}
}

/* After the shutdown: a call fails at once and sends nothing. */
static void check_refused_after(struct http_client *c, const char *url)
{
	struct http_resp r;
	int64_t t0 = mono_ms();
	struct http_req q = {.method = "POST", .url = url, .body = "b", .body_len = 1};
	ck_assert_int_eq(http_do(c, &q, &r), -ECANCELED);
	ck_assert_int_lt(mono_ms() - t0, 50);
	ck_assert_int_eq(r.attempts, 0);
	ck_assert(strstr(r.err, "cancelled: fleetfs is stopping") != NULL);
	http_resp_free(&r);
	ck_assert_int_eq(http_get(c, url, 0, 0, 0, &r), -ECANCELED);
	http_resp_free(&r);
}

/* A server that accepts and never answers: the calls wait for a response. */
START_TEST(test_cancel_no_answer)
{
	static const struct step steps[] = {{.hang = true}};
	struct srv s;
	struct bg b[2];
	struct http_client *c = client();
	srv_start(&s, steps, 1);
	const struct http_req get = {.url = at(&s, "/hang"), .timeout_ms = 30000};
	const struct http_req post = {.method = "POST",
				      .url = at(&s, "/hang"),
				      .timeout_ms = 30000,
				      .body = "x=1",
				      .body_len = 3};
	bg_start(&b[0], c, &get);
	bg_start(&b[1], c, &post);
	cancel_and_check(c, b, 2, false);
	http_client_shutdown(c); /* again: harmless */
	http_client_shutdown(NULL);
	check_refused_after(c, at(&s, "/after"));
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 2);
	for (size_t i = 0; i < s.nreq; i++)
		ck_assert(starts(s.rec[i].head, "GET /hang ") ||
			  starts(s.rec[i].head, "POST /hang "));
	srv_free(&s);
	http_client_free(c);
}
END_TEST

/* A listening socket whose accept queue is full (backlog 0, one connection nobody accepts):
 * the kernel drops the SYNs, so connect() never completes. */
START_TEST(test_cancel_connecting)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	char url[64];
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(lfd, 0), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &sl), 0);
	int filler = -1, probe = -1;
	for (int i = 0; i < 2; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		ck_assert_int_ge(fd, 0);
		ck_assert(connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 &&
			  errno == EINPROGRESS);
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int ready = poll(&p, 1, i == 0 ? 2000 : 200);
		if (i == 0) {
			ck_assert_int_eq(ready, 1); /* the one connection the queue takes */
			filler = fd;
		} else {
			ck_assert_msg(ready == 0, "the accept queue is not full"); /* the premise */
			probe = fd;
		}
	}
	close(probe);
	ck_assert_int_eq(fmt(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(a.sin_port)), 0);

	struct bg b;
	struct http_client *c = client();
	const struct http_req q = {.url = url, .timeout_ms = 30000, .connect_timeout_ms = 30000};
	bg_start(&b, c, &q);
	cancel_and_check(c, &b, 1, true);
	check_refused_after(c, url);
	http_client_free(c);
	close(filler);
	close(lfd);
}
END_TEST

/* A call pausing before its retry (Retry-After: 30 at full time scale) is woken. */
START_TEST(test_cancel_retry_pause)
{
	static const struct step steps[] = {{.status = 503, .headers = "Retry-After: 30\r\n"},
					    {.status = 200}};
	struct srv s;
	struct bg b;
	struct http_client *c = client();
	setenv("FLEETFS_TIME_SCALE", "1", 1);
	srv_start(&s, steps, 2);
	const struct http_req q = {.url = at(&s, "/r"), .timeout_ms = 30000};
	bg_start(&b, c, &q);
	cancel_and_check(c, &b, 1, false);
	srv_stop(&s);
	ck_assert_uint_eq(s.nreq, 1); /* the 503; the retry was never sent */
	srv_free(&s);
	http_client_free(c);
}
END_TEST

/* ---- HTTPS against openssl s_server ---- */

/* Run argv (openssl), output to /dev/null; fails the test unless it exits 0. */
static void run(const char *const argv[])
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s %s failed", argv[0], argv[1]);
}

/* Start `openssl s_server -www` with cert/key on 127.0.0.1; returns its pid, *port set. It
 * dies with the test process (PR_SET_PDEATHSIG). */
static pid_t tls_server(const char *cert, const char *key, int *port)
{
	int pfd[2];
	char out[4096];
	size_t n = 0;
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 0);
		dup2(pfd[1], 1);
		dup2(fd, 2);
		execlp("openssl", "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert,
		       "-key", key, "-www", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	const char *acc = NULL;
	while (!acc || !strchr(acc, '\n')) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		ck_assert_msg(poll(&p, 1, 10000) == 1, "s_server did not start");
		ssize_t r = read(pfd[0], out + n, sizeof(out) - 1 - n);
		ck_assert_int_gt(r, 0);
		n += (size_t)r;
		out[n] = '\0';
		acc = strstr(out, "ACCEPT ");
	}
	close(pfd[0]);
	*port = (int)strtol(strrchr(acc, ':') + 1, NULL, 10);
	ck_assert_int_gt(*port, 0);
	return pid;
}

START_TEST(test_https)
{
	const char *d = tmp_dir("https");
	char ca[256], cakey[256], other[256], otherkey[256], srv[256], srvkey[256], csr[256],
		ext[256], bundle[256], missing[256], url[64];
	ck_assert_int_eq(fmt(ca, sizeof(ca), "%s/ca.pem", d), 0);
	ck_assert_int_eq(fmt(cakey, sizeof(cakey), "%s/ca.key", d), 0);
	ck_assert_int_eq(fmt(other, sizeof(other), "%s/other.pem", d), 0);
	ck_assert_int_eq(fmt(otherkey, sizeof(otherkey), "%s/other.key", d), 0);
	ck_assert_int_eq(fmt(srv, sizeof(srv), "%s/srv.pem", d), 0);
	ck_assert_int_eq(fmt(srvkey, sizeof(srvkey), "%s/srv.key", d), 0);
	ck_assert_int_eq(fmt(csr, sizeof(csr), "%s/srv.csr", d), 0);
	ck_assert_int_eq(fmt(ext, sizeof(ext), "%s/ext", d), 0);
	ck_assert_int_eq(fmt(bundle, sizeof(bundle), "%s/bundle.pem", d), 0);
	ck_assert_int_eq(fmt(missing, sizeof(missing), "%s/missing.pem", d), 0);
	const char *const mkca[] = {"openssl",
				    "req",
				    "-x509",
				    "-newkey",
				    "ec",
				    "-pkeyopt",
				    "ec_paramgen_curve:P-256",
				    "-nodes",
				    "-days",
				    "1",
				    "-subj",
				    "/CN=fleetfs test CA",
				    "-keyout",
				    cakey,
				    "-out",
				    ca,
				    NULL};
	const char *const mkother[] = {"openssl",
				       "req",
				       "-x509",
				       "-newkey",
				       "ec",
				       "-pkeyopt",
				       "ec_paramgen_curve:P-256",
				       "-nodes",
				       "-days",
				       "1",
				       "-subj",
				       "/CN=another CA",
				       "-keyout",
				       otherkey,
				       "-out",
				       other,
				       NULL};
	const char *const mkcsr[] = {"openssl", "req",	    "-newkey",
				     "ec",	"-pkeyopt", "ec_paramgen_curve:P-256",
				     "-nodes",	"-subj",    "/CN=localhost",
				     "-keyout", srvkey,	    "-out",
				     csr,	NULL};
	const char *const sign[] = {
		"openssl",	   "x509",  "-req", "-in",	csr, "-CA",  ca,  "-CAkey", cakey,
		"-CAcreateserial", "-days", "1",    "-extfile", ext, "-out", srv, NULL};
	static const char san[] = "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
	run(mkca);
	run(mkother);
	run(mkcsr);
	ck_assert_int_eq(file_write(ext, san, strlen(san), 0600), 0);
	run(sign);
	/* a bundle of two CAs, ours second */
	size_t n1 = 0, n2 = 0;
	char *p1 = file_read(other, &n1), *p2 = file_read(ca, &n2);
	ck_assert(p1 && p2);
	char *both = xmalloc(n1 + n2);
	memcpy(both, p1, n1);
	memcpy(both + n1, p2, n2);
	ck_assert_int_eq(file_write(bundle, both, n1 + n2, 0600), 0);
	free(both);
	free(p1);
	free(p2);

	int port = 0;
	pid_t pid = tls_server(srv, srvkey, &port);
	ck_assert_int_eq(fmt(url, sizeof(url), "https://127.0.0.1:%d/", port), 0);
	struct http_resp r;
	struct http_client *c = client();
	/* the system CAs alone do not know ours */
	ck_assert_int_eq(http_get(c, url, 5000, 0, 0, &r), -EPROTO);
	ck_assert_int_eq(r.attempts, 1);
	ck_assert(r.err[0] != '\0');
	http_resp_free(&r);
	http_client_free(c);

	setenv("FLEETFS_CA_BUNDLE", bundle, 1);
	c = client();
	ck_assert_int_eq(http_get(c, url, 5000, 0, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	http_resp_free(&r);
	http_client_free(c);

	setenv("FLEETFS_CA_BUNDLE", missing, 1);
	c = client();
	ck_assert_int_eq(http_get(c, url, 5000, 0, 0, &r), -EPROTO);
	ck_assert_msg(strstr(r.err, "FLEETFS_CA_BUNDLE") != NULL, "%s", r.err);
	ck_assert(strstr(r.err, missing) != NULL);
	http_resp_free(&r);
	http_client_free(c);

	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}
END_TEST

Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *t = tcase_create("local");
	TCase *tls = tcase_create("https");
	tcase_add_checked_fixture(t, setup, NULL);
	tcase_add_checked_fixture(tls, setup, NULL);
	tcase_add_unchecked_fixture(tls, tmp_root_setup, tmp_root_teardown);
	tcase_set_timeout(t, 30);
	tcase_set_timeout(tls, 60);
	suite_add_tcase(s, t);
	suite_add_tcase(s, tls);
	tcase_add_test(t, test_get);
	tcase_add_test(t, test_methods);
	tcase_add_test(t, test_retry_503);
	tcase_add_test(t, test_retry_after);
	tcase_add_test(t, test_retries_exhausted);
	tcase_add_test(t, test_post_retry_rule);
	tcase_add_test(t, test_idempotent_post);
	tcase_add_test(t, test_redirects);
	tcase_add_test(t, test_redirect_secrets);
	tcase_add_test(t, test_max_body);
	tcase_add_test(t, test_timeout);
	tcase_add_test(t, test_refused);
	tcase_add_test(t, test_keepalive);
	tcase_add_test(t, test_concurrent);
	tcase_add_test(t, test_log_lines);
	tcase_add_test(t, test_endpoint);
	tcase_add_test(t, test_call_max);
	tcase_add_test(t, test_cancel_no_answer);
	tcase_add_test(t, test_cancel_connecting);
	tcase_add_test(t, test_cancel_retry_pause);
	tcase_add_test(tls, test_https);
	return s;
}
