/* util: see util.h. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void oom(void)
{
	fputs("fleetfs: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom();
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (!p)
		oom();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		oom();
	return p;
}

int vfmt(char *dst, size_t dstlen, const char *f, va_list ap)
{
	int n = vsnprintf(dst, dstlen, f, ap);
	if (n < 0) {
		if (dstlen)
			dst[0] = '\0';
		return -EINVAL;
	}
	return (size_t)n >= dstlen ? -ENAMETOOLONG : 0;
}

int fmt(char *dst, size_t dstlen, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int r = vfmt(dst, dstlen, f, ap);
	va_end(ap);
	return r;
}

void vfmt_cut(char *dst, size_t dstlen, const char *f, va_list ap)
{
	int n = vsnprintf(dst, dstlen, f, ap);
	if (n < 0 && dstlen)
		dst[0] = '\0';
}

void fmt_cut(char *dst, size_t dstlen, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vfmt_cut(dst, dstlen, f, ap);
	va_end(ap);
}

char *xasprintf(const char *f, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, f);
	int n = vasprintf(&s, f, ap);
	va_end(ap);
	if (n < 0)
		oom();
	return s;
}

bool str_in(const char *s, const char *const *list)
{
	for (size_t i = 0; list[i]; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

void str_join(char *dst, size_t n, const char *const *list)
{
	size_t used = 0;
	if (!n)
		return;
	dst[0] = '\0';
	for (size_t i = 0; list[i]; i++) {
		if (fmt(dst + used, n - used, "%s%s", i ? ", " : "", list[i]))
			return;
		used += strlen(dst + used);
	}
}

int num_parse_size(const char *s, double *out)
{
	char *end;
	if (!*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	double d = strtod(s, &end);
	if (errno || *end || !isfinite(d) || d < 0)
		return -EINVAL;
	*out = d;
	return 0;
}

int num_parse_ll(const char *s, long long min, long long max, long long *out)
{
	char *end = NULL;
	if (!s || !*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s || *end != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

void buf_init(struct buf *b, size_t limit)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static int buf_reserve(struct buf *b, size_t need)
{
	if (need > b->limit)
		return -EFBIG;
	if (need + 1 <= b->cap)
		return 0;
	size_t nc = b->cap ? b->cap : 256;
	while (nc < need + 1)
		nc *= 2;
	if (nc > b->limit + 1)
		nc = b->limit + 1;
	char *p = realloc(b->data, nc);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = nc;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n > b->limit - b->len)
		return -EFBIG;
	int r = buf_reserve(b, b->len + n);
	if (r)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_read_file(struct buf *b, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char chunk[65536];
	int r = 0;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0 || (r = buf_append(b, chunk, (size_t)n)))
			break;
	}
	close(fd);
	return r;
}

int buf_printf(struct buf *b, const char *f, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, f);
	int n = vsnprintf(small, sizeof(small), f, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);
	char *big = NULL;
	va_start(ap, f);
	n = vasprintf(&big, f, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	int r = buf_append(b, big, (size_t)n);
	free(big);
	return r;
}

int buf_set(struct buf *b, const void *p, size_t n)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
	return buf_append(b, p, n);
}

int buf_pwrite(struct buf *b, const void *p, size_t n, size_t off)
{
	if (off > b->limit || n > b->limit - off)
		return -EFBIG;
	size_t end = off + n;
	int r = buf_reserve(b, end > b->len ? end : b->len);
	if (r)
		return r;
	if (off > b->len)
		memset(b->data + b->len, 0, off - b->len);
	if (n)
		memcpy(b->data + off, p, n);
	if (end > b->len) {
		b->len = end;
		b->data[b->len] = '\0';
	}
	return 0;
}

int buf_truncate(struct buf *b, size_t n)
{
	if (n > b->limit)
		return -EFBIG;
	if (n > b->len)
		return buf_pwrite(b, "", 0, n);
	b->len = n;
	if (b->data)
		b->data[n] = '\0';
	return 0;
}

char *buf_steal(struct buf *b, size_t *len)
{
	char *p = b->data;
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

int buf_yaml_str(struct buf *b, const char *s)
{
	int r = buf_append(b, "\"", 1);
	for (; !r && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			r = buf_printf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			r = buf_printf(b, "\\x%02x", c);
		else
			r = buf_append(b, s, 1);
	}
	return r ? r : buf_append(b, "\"", 1);
}

void time_iso(time_t t, char *dst, size_t dstlen)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	if (!strftime(dst, dstlen, "%Y-%m-%dT%H:%M:%SZ", &tm) && dstlen)
		dst[0] = '\0';
}

struct timespec time_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

double time_now_s(void)
{
	struct timespec ts = time_now();
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

bool name_valid(const char *s)
{
	size_t n = 0;
	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
		if (n >= 50)
			return false;
	}
	return n >= 1;
}

void str_sanitize(char *dst, size_t dstlen, const char *s)
{
	size_t i = 0;
	if (!dstlen)
		return;
	for (; s && *s && i + 1 < dstlen; s++, i++) {
		unsigned char c = (unsigned char)*s;
		dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

void str_redact(char *dst, size_t dstlen, const char *text)
{
	char shown[STR_REDACT_SHOW + 1];
	size_t k = 0, chars = 0;
	if (!dstlen)
		return;
	if (!text) {
		fmt_cut(dst, dstlen, "(none)");
		return;
	}
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		chars += (*p & 0xc0) != 0x80; /* UTF-8 continuation bytes don't count */
	for (; k < STR_REDACT_SHOW && text[k]; k++) {
		unsigned char c = (unsigned char)text[k];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			break;
		shown[k] = (char)c;
	}
	shown[k] = '\0';
	/* a truncated message only loses its end; the prefix never grows past 3 chars */
	fmt_cut(dst, dstlen, "\"%s%s\" (%zu char%s)", shown, chars > k ? "\xe2\x80\xa6" : "", chars,
		chars == 1 ? "" : "s");
}

/* Levenshtein distance of two short strings (both at most 64 bytes). */
static size_t edit_distance(const char *a, size_t na, const char *b, size_t nb)
{
	size_t row[65];
	for (size_t j = 0; j <= nb; j++)
		row[j] = j;
	for (size_t i = 1; i <= na; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= nb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[nb];
}

const char *str_near(const char *text, const char *const *words)
{
	const char *best = NULL;
	size_t bestd = 3, nt = text ? strlen(text) : 0;
	if (!nt || nt > 64 || !words)
		return NULL;
	for (size_t i = 0; words[i]; i++) {
		size_t nw = strlen(words[i]);
		if (nw > 64)
			continue;
		size_t dist = edit_distance(text, nt, words[i], nw);
		if (dist < bestd && 2 * dist < nt) {
			bestd = dist;
			best = words[i];
		}
	}
	return best;
}

void str_redact_key(char *dst, size_t dstlen, const char *key, const char *const *known)
{
	char shown[STR_REDACT_LEN];
	const char *near = str_near(key, known);
	str_redact(shown, sizeof(shown), key);
	if (near)
		fmt_cut(dst, dstlen, "%s (did you mean %s?)", shown, near);
	else
		fmt_cut(dst, dstlen, "%s", shown);
}

/* ---- string pool: an open-addressing set of pointers into 64 KiB arena blocks ---- */
#define POOL_BLOCK 65536

struct strpool {
	const char **slots;
	size_t nslots, used;
	char *block;          /* current arena block; each block starts with a link to the
			       * previous one */
	size_t block_used, block_size;
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

struct strpool *strpool_new(void)
{
	return xcalloc(1, sizeof(struct strpool));
}

void strpool_free(struct strpool *p)
{
	if (!p)
		return;
	while (p->block) {
		char *prev;
		memcpy(&prev, p->block, sizeof(prev));
		free(p->block);
		p->block = prev;
	}
	free(p->slots);
	free(p);
}

const char *strpool_add(struct strpool *p, const char *s)
{
	if (p->used * 2 >= p->nslots) {
		size_t nn = p->nslots ? p->nslots * 2 : 256;
		const char **ns = xcalloc(nn, sizeof(*ns));
		for (size_t i = 0; i < p->nslots; i++) {
			if (!p->slots[i])
				continue;
			size_t j = str_hash(p->slots[i]) & (nn - 1);
			while (ns[j])
				j = (j + 1) & (nn - 1);
			ns[j] = p->slots[i];
		}
		free(p->slots);
		p->slots = ns;
		p->nslots = nn;
	}
	size_t j = str_hash(s) & (p->nslots - 1);
	for (; p->slots[j]; j = (j + 1) & (p->nslots - 1))
		if (!strcmp(p->slots[j], s))
			return p->slots[j];
	size_t len = strlen(s) + 1;
	if (!p->block || p->block_used + len > p->block_size) {
		size_t bs = len + sizeof(char *) > POOL_BLOCK ? len + sizeof(char *) : POOL_BLOCK;
		char *b = xmalloc(bs);
		memcpy(b, &p->block, sizeof(char *));
		p->block = b;
		p->block_size = bs;
		p->block_used = sizeof(char *);
	}
	char *copy = p->block + p->block_used;
	memcpy(copy, s, len);
	p->block_used += len;
	p->slots[j] = copy;
	p->used++;
	return copy;
}
