/* util: small helpers every module uses.
 *
 * - x* allocation wrappers abort on OOM (small internal allocations);
 *   input-sized allocations use plain malloc and return -ENOMEM instead.
 * - buf: a size-capped, self-freeing byte buffer (curl's dynbuf idea).
 * - fmt: snprintf that reports truncation (must be checked); fmt_cut: snprintf for text that
 *   may be cut (messages, reasons, log lines).
 * - num: strtol/strtoll wrappers that check the whole string and the range.
 */
#ifndef FLEETFS_UTIL_H
#define FLEETFS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Format into dst (size dstlen). Returns 0, or -ENAMETOOLONG when the result was truncated
 * (dst still holds the truncated, NUL-terminated text). */
int fmt(char *dst, size_t dstlen, const char *f, ...)
	__attribute__((format(printf, 3, 4), warn_unused_result));
int vfmt(char *dst, size_t dstlen, const char *f, va_list ap)
	__attribute__((format(printf, 3, 0), warn_unused_result));
/* For text where truncation is acceptable (messages, reasons, log lines): cut to fit. Not for
 * a key, path, name or id that is used rather than shown: those use fmt and check it, unless
 * the buffer provably holds the result (the call says why). */
void fmt_cut(char *dst, size_t dstlen, const char *f, ...) __attribute__((format(printf, 3, 4)));
void vfmt_cut(char *dst, size_t dstlen, const char *f, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* Allocate and format; aborts on OOM. Caller frees. */
char *xasprintf(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* Parse the whole of s as a base-10 integer in [min, max]. Returns 0 or -EINVAL/-ERANGE. */
int num_parse_ll(const char *s, long long min, long long max, long long *out);
/* A finite number >= 0 filling all of s (no leading space): a price, a size. 0 or -EINVAL. */
int num_parse_size(const char *s, double *out);

/* A growable byte buffer with a hard cap. Always NUL-terminated past len (not counted). */
struct buf {
	char *data;
	size_t len;
	size_t cap;   /* allocated */
	size_t limit; /* hard maximum of len */
};
/* Is s one of the NULL-terminated list's strings (exactly)? */
bool str_in(const char *s, const char *const *list);
/* "a, b, c" of a NULL-terminated list into dst (cut to fit). */
void str_join(char *dst, size_t n, const char *const *list);

/* One key: value pair (a tag, a label). */
struct kv {
	char *key;
	char *value;
};

void buf_init(struct buf *b, size_t limit);
void buf_free(struct buf *b);
/* Each returns 0, -EFBIG past limit, -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_printf(struct buf *b, const char *f, ...) __attribute__((format(printf, 2, 3)));
int buf_set(struct buf *b, const void *p, size_t n);
/* Write n bytes at off, zero-filling any gap; grows len as needed. */
int buf_pwrite(struct buf *b, const void *p, size_t n, size_t off);
int buf_truncate(struct buf *b, size_t n);
/* Append the whole of the file at path (0, -EFBIG past limit, -errno of open/read). */
int buf_read_file(struct buf *b, const char *path);
/* Move the contents out: returns data (caller frees, may be NULL when empty) and resets b. */
char *buf_steal(struct buf *b, size_t *len);

/* Interned strings: strpool_add returns the pool's one copy of s, valid until strpool_free.
 * Not thread-safe (callers serialise). Used where many records repeat few strings (offers'
 * regions and instance types, the inode table's project and backend names). */
struct strpool;
struct strpool *strpool_new(void);
const char *strpool_add(struct strpool *p, const char *s);
void strpool_free(struct strpool *p);

/* Append s as a YAML double-quoted scalar ("..." with \" \\ and \xNN escapes). */
int buf_yaml_str(struct buf *b, const char *s);

/* ISO-8601 UTC "2026-11-28T10:00:00Z" into dst (>= 21 bytes). */
void time_iso(time_t t, char *dst, size_t dstlen);
/* Wall clock now as timespec. */
struct timespec time_now(void);
/* The same as seconds (a double). */
double time_now_s(void);

/* Name rule shared by projects, backends and fleets: ^[a-zA-Z0-9_-]{1,50}$ (dstack's). */
bool name_valid(const char *s);

/* Write a copy of s into dst (dstlen) with anything outside printable ASCII replaced by '?',
 * cut to dstlen-1. For echoing user-supplied names into events and logs. */
void str_sanitize(char *dst, size_t dstlen, const char *s);

/* The one way user text (a key, a value, a path someone wrote) is shown in an error, an event
 * or a log line: at most STR_REDACT_SHOW leading characters, then the length, e.g.
 *     "lmb…" (22 chars)      "ab" (2 chars)      "" (0 chars)
 * The shown prefix stops early at the first byte that is not printable ASCII or is '"' or
 * '\', so control characters, escapes and partial UTF-8 never reach a message; the length
 * counts UTF-8 characters. A secret pasted anywhere in a document therefore shows at most
 * three characters. dst gets the text cut to dstlen - 1 (STR_REDACT_LEN always fits). NULL
 * text is shown as (none). Known-safe words (our schema's field names, allowed-values lists)
 * are printed as they are, never through this. */
#define STR_REDACT_SHOW 3
#define STR_REDACT_LEN 40
void str_redact(char *dst, size_t dstlen, const char *text);

/* The word of the NULL-terminated list words that is a likely typo of text (edit distance
 * at most 2, and less than half of text's length), or NULL. Used to suggest "did you mean
 * regions?" next to a redacted unknown key: the suggestion is our own word, and a long
 * random secret is never that close to one. Texts longer than 64 bytes match nothing. */
const char *str_near(const char *text, const char *const *words);

/* str_redact(key), then " (did you mean W?)" when str_near finds W in known (may be NULL):
 * the form of an unknown key in "FIELD: unknown key ..." messages. */
#define STR_REDACT_KEY_LEN (STR_REDACT_LEN + 96)
void str_redact_key(char *dst, size_t dstlen, const char *key, const char *const *known);

#endif
