/* ywalk: see ywalk.h. */
#include "ywalk.h"

#include "util.h"

int ywalk_verr(const struct ydoc *d, int node, const char *path, char *err, size_t errlen,
	       const char *f, va_list ap)
{
	char msg[512];
	vfmt_cut(msg, sizeof(msg), f, ap);
	return ydoc_err(d, node, path, err, errlen, "%s", msg);
}

void ywalk_path(char *dst, size_t n, const char *base, const char *key)
{
	if (base && *base)
		fmt_cut(dst, n, "%s.%s", base, key);
	else
		fmt_cut(dst, n, "%s", key);
}

void ywalk_path_idx(char *dst, size_t n, const char *base, size_t i)
{
	fmt_cut(dst, n, "%s[%zu]", base, i);
}

void ywalk_path_user(char *dst, size_t n, const char *base, const char *rawkey)
{
	char k[STR_REDACT_LEN];
	str_redact(k, sizeof(k), rawkey);
	fmt_cut(dst, n, "%s[%s]", base ? base : "", k);
}

const char *ywalk_kind(enum ykind k)
{
	switch (k) {
	case Y_SEQ:
		return "a list";
	case Y_MAP:
		return "a mapping";
	case Y_SCALAR:
		return "a single value";
	default:
		return "empty";
	}
}
