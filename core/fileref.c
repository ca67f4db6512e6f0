/* fileref: see fileref.h. Shared by bkschema (backend key/credential files) and fleetspec
 * (SSH identity files). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "fileref.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bkschema.h"
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
	(void)fmt(why, whylen, "%s", msg);
	return -EINVAL;
}

int fileref_resolve(const struct bk_ctx *ctx, const char *p, char *abs, size_t abslen, char *why,
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

/* O_NONBLOCK keeps a FIFO from hanging the open; it is not a regular file anyway. */
int fileref_read(const struct bk_ctx *ctx, const char *abs, size_t max, char **data, size_t *len,
		 char *why, size_t whylen)
{
	struct buf b;
	struct stat st;
	char chunk[16384];
	int r = 0;
	*data = NULL;
	*len = 0;
	const char *mnt = ctx ? ctx->mountpoint : NULL;
	size_t ml = mnt ? strlen(mnt) : 0;
	if (ml && !strncmp(abs, mnt, ml) && (abs[ml] == '/' || abs[ml] == '\0')) {
		(void)fmt(why, whylen,
			  "%s: is inside the fleetfs mount; refer to a file outside it", abs);
		return -EINVAL;
	}
	int fd = open(abs, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		(void)fmt(why, whylen, "%s: %s", abs, errno_text(errno));
		return -EINVAL;
	}
	buf_init(&b, max);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		(void)fmt(why, whylen, "%s: not a regular file", abs);
		r = -EINVAL;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			(void)fmt(why, whylen, "%s: read error", abs);
			r = -EINVAL;
			goto out;
		}
		if (n == 0)
			break;
		r = buf_append(&b, chunk, (size_t)n);
		if (r == -EFBIG) {
			(void)fmt(why, whylen, "%s: larger than %zu bytes", abs, max);
			r = -EINVAL;
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
