/* fileref: see fileref.h. Shared by bkschema (backend key/credential files) and fleetspec
 * (SSH identity files). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_PATH */
#endif

#include "fileref.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static const char *errno_text(int e)
{
	switch (e) {
	case ENOENT:
		return "no such file";
	case EACCES:
	case EPERM:
		return "permission denied";
	case ENOTDIR:
		return "a path component is not a directory";
	case ELOOP:
		return "too many symbolic links";
	case ENAMETOOLONG:
		return "path too long";
	default:
		return "cannot open";
	}
}

/* A truncated reason only shortens a message, so truncation is not an error. */
static int why_set(char *why, size_t whylen, const char *msg)
{
	fmt_cut(why, whylen, "%s", msg);
	return -EINVAL;
}

int fileref_resolve(const struct fileref_ctx *ctx, const char *p, char *abs, size_t abslen, char *why,
		    size_t whylen)
{
	const char *home = ctx ? ctx->home : NULL;
	const char *cwd = ctx ? ctx->cwd : NULL;
	int r;
	if (p[0] == '~') {
		if (p[1] != '\0' && p[1] != '/')
			return why_set(why, whylen, "only \"~/\" is supported, not \"~user/\"");
		if (!home || home[0] != '/')
			return why_set(why, whylen,
				       "cannot expand \"~\": the writer's home is unknown");
		r = fmt(abs, abslen, "%s%s", home, p + 1);
	} else if (p[0] == '/') {
		r = fmt(abs, abslen, "%s", p);
	} else {
		if (!cwd || cwd[0] != '/')
			return why_set(why, whylen,
				       "relative path but the writer's directory is unknown; "
				       "use an absolute path");
		r = fmt(abs, abslen, "%s/%s", cwd, p);
	}
	if (r)
		return why_set(why, whylen, "path too long");
	return 0;
}

static bool under(const char *mnt, size_t ml, const char *p)
{
	if (!ml)
		return false;
	if (ml == 1 && mnt[0] == '/')
		return true;
	return !strncmp(p, mnt, ml) && (p[ml] == '/' || p[ml] == '\0');
}

/* "<path as written, redacted>: <msg>"; -EINVAL. */
static int why_path(char *why, size_t whylen, const char *abs, const char *msg)
{
	char shown[STR_REDACT_LEN];
	str_redact(shown, sizeof(shown), abs);
	fmt_cut(why, whylen, "%s: %s", shown, msg);
	return -EINVAL;
}

static void swap_fd(int *dirfd, int fd)
{
	close(*dirfd);
	*dirfd = fd;
}

/* Open the regular file abs for reading without ever making a system call that reaches the
 * fleetfs mount at mnt (a canonical path: fs/main.c takes realpath() of the mount point before
 * mounting).
 *
 * Why a walk of our own: with -s the daemon serves one request at a time, so any syscall on a
 * path inside its own mount (open, stat, realpath's lstat of the mount point, readlink) waits
 * for the very request that issued it: a deadlock. Comparing the path as written misses a
 * symbolic link or a ".." that leads inside, and resolving it with realpath() or open()-then-
 * fstat() already enters the mount. So the path is resolved one component at a time, from "/"
 * down, keeping the canonical (symlink-free) path of the directory reached so far: before a
 * component is touched at all, the canonical path it would have is compared with mnt, and a
 * match is refused. Only components outside the mount are ever fstatat()ed, readlinkat()ed or
 * opened. Each step is relative to the directory fd of the previous one and never follows a
 * link by itself (AT_SYMLINK_NOFOLLOW, O_NOFOLLOW, O_PATH), so swapping a component for a
 * link between our check and our open cannot steer the kernel into the mount either; links
 * are read and spliced into the rest of the path like the kernel does (at most 40, ELOOP).
 * Not covered: the same file system mounted a second time elsewhere (a bind mount of the
 * fleetfs mount), which has another path. */
#define IN_MOUNT "is inside the fleetfs mount; refer to a file outside it"
#define LEADS_IN                                                                            \
	"leads into the fleetfs mount (through a symbolic link or ..); refer to a file outside " \
	"it"

/* One walk of open_outside: the directory reached (dirfd) and its canonical path (cur), what
 * is left of the path (rest), symbolic links followed, whether the walk left the path as
 * written (a link or ..). */
struct walk {
	const char *mnt;
	size_t ml;
	int dirfd;
	char cur[PATH_MAX], rest[PATH_MAX];
	int links;
	bool detour;
};

/* "..": cur is canonical, so its parent is the physical parent. NULL or why not. */
static const char *walk_up(struct walk *w)
{
	char *slash = strrchr(w->cur, '/');
	int fd = openat(w->dirfd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno_text(errno);
	swap_fd(&w->dirfd, fd);
	if (slash)
		*slash = '\0';
	w->detour = true;
	return NULL;
}

/* A symbolic link: its target goes in front of what is left (from / when absolute). */
static const char *walk_link(struct walk *w, const char *name)
{
	char link[PATH_MAX], next[PATH_MAX];
	if (++w->links > 40)
		return errno_text(ELOOP);
	ssize_t k = readlinkat(w->dirfd, name, link, sizeof(link) - 1);
	if (k <= 0)
		return errno_text(k < 0 ? errno : ENOENT);
	link[k] = '\0';
	if (fmt(next, sizeof(next), "%s/%s", link, w->rest))
		return "path too long";
	memcpy(w->rest, next, strlen(next) + 1);
	if (link[0] == '/') {
		int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return errno_text(errno);
		swap_fd(&w->dirfd, fd);
		w->cur[0] = '\0';
	}
	w->detour = true;
	return NULL;
}

/* One component of the path: NULL to go on (or, with *out >= 0, done), else why not. */
static const char *walk_step(struct walk *w, int *out)
{
	char name[NAME_MAX + 1], cand[PATH_MAX];
	struct stat st;
	const char *p = w->rest + strspn(w->rest, "/");
	size_t n = strcspn(p, "/");
	if (!n)
		return "not a regular file"; /* ends on a directory */
	if (n > NAME_MAX)
		return "path too long";
	memcpy(name, p, n);
	name[n] = '\0';
	p += n;
	bool last = p[strspn(p, "/")] == '\0';
	memmove(w->rest, p, strlen(p) + 1);
	if (!strcmp(name, "."))
		return NULL;
	if (!strcmp(name, ".."))
		return walk_up(w);
	if (fmt(cand, sizeof(cand), "%s/%s", w->cur, name))
		return "path too long";
	if (under(w->mnt, w->ml, cand))
		return w->detour ? LEADS_IN : IN_MOUNT;
	if (fstatat(w->dirfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno_text(errno);
	if (S_ISLNK(st.st_mode))
		return walk_link(w, name);
	if (last) {
		/* no open of a FIFO or device at all; O_NONBLOCK covers a swap race */
		if (!S_ISREG(st.st_mode))
			return "not a regular file";
		*out = openat(w->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		return *out < 0 ? errno_text(errno) : NULL;
	}
	if (!S_ISDIR(st.st_mode))
		return errno_text(ENOTDIR);
	int fd = openat(w->dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno_text(errno);
	swap_fd(&w->dirfd, fd);
	memcpy(w->cur, cand, strlen(cand) + 1);
	return NULL;
}

static int open_outside(const char *mnt, const char *abs, int *out, char *why, size_t whylen)
{
	struct walk *w = xcalloc(1, sizeof(*w));
	const char *msg = NULL;
	*out = -1;
	w->dirfd = -1;
	w->mnt = mnt;
	w->ml = mnt ? strlen(mnt) : 0;
	if (under(w->mnt, w->ml, abs))
		msg = IN_MOUNT;
	else if (fmt(w->rest, sizeof(w->rest), "%s", abs))
		msg = "path too long";
	else if ((w->dirfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		msg = errno_text(errno);
	while (!msg && *out < 0)
		msg = walk_step(w, out);
	if (w->dirfd >= 0)
		close(w->dirfd);
	free(w);
	return msg ? why_path(why, whylen, abs, msg) : 0;
}

int fileref_read(const struct fileref_ctx *ctx, const char *abs, size_t max, char **data, size_t *len,
		 char *why, size_t whylen)
{
	struct buf b;
	struct stat st;
	char chunk[16384];
	int fd = -1;
	*data = NULL;
	*len = 0;
	int r = open_outside(ctx ? ctx->mountpoint : NULL, abs, &fd, why, whylen);
	if (r)
		return r;
	buf_init(&b, max);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		r = why_path(why, whylen, abs, "not a regular file");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = why_path(why, whylen, abs, "read error");
			goto out;
		}
		if (n == 0)
			break;
		r = buf_append(&b, chunk, (size_t)n);
		if (r == -EFBIG) {
			char msg[64];
			fmt_cut(msg, sizeof(msg), "larger than %zu bytes", max);
			r = why_path(why, whylen, abs, msg);
		}
		if (r)
			goto out;
	}
	*data = buf_steal(&b, len);
	if (!*data) {
		*data = xstrdup("");
		*len = 0;
	}
out:
	close(fd);
	buf_free(&b);
	return r;
}
