/* schema: validation of one backend config entry.
 *
 * Design: the per-type knowledge is data (backends/schemas.c: one field table per config
 * shape, restating dstack's backends/<type>/models.py, and registry.c: which shape each type
 * has); this file is the one walker that interprets those tables
 * plus the checks of what files and inline blobs contain. The walk is strict where dstack's
 * pydantic models are (extra="forbid", required fields, Literal creds types, str/bool/int) and
 * also runs the offline part of dstack's configurators (mutually exclusive keys, tag rules,
 * VPC coverage, kubeconfig contexts), so a bad config fails at write time, with file, line and
 * a dotted field path, instead of when a backend first talks to its cloud.
 *
 * User text is never echoed: field paths are made of our schema's names; a key of the user's
 * own (a tag, a map of regions) or an unknown key, a wrong enum value and a file's path appear
 * only as str_redact() shows them ("lmb…" (22 chars)).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "schema.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "schemapriv.h"
#include "../lib/fileref.h"
#include "../lib/util.h"
#include "../lib/ydoc.h"
#include "../lib/ywalk.h"

/* ---- walker helpers used by the hooks in schemas.c ---- */

int schw_err(struct schw *w, int node, const char *path, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int r = ywalk_verr(w->d, node, path, w->err, w->errlen, f, ap);
	va_end(ap);
	return r;
}

int schw_get(const struct schw *w, int obj, const char *key)
{
	int v = ydoc_map_get(w->d, obj, key);
	if (!v || ydoc_is_null(w->d, v))
		return 0;
	return v;
}

const char *schw_str(const struct schw *w, int obj, const char *key)
{
	return ydoc_str(w->d, schw_get(w, obj, key));
}

/* ---- scalar kinds ---- */

/* The words PyYAML (YAML 1.1) reads as booleans. Stricter than ydoc_bool on purpose: a plain
 * `y` is a string for dstack, so it must stay a valid string here. */
static bool yaml11_bool_word(const char *s)
{
	static const char *const words[] = {"yes",  "Yes",  "YES",   "no",    "No",    "NO",
					    "true", "True", "TRUE",  "false", "False", "FALSE",
					    "on",   "On",   "ON",    "off",   "Off",   "OFF",
					    NULL};
	return str_in(s, words);
}

/* A string value as dstack's `str` accepts it: any scalar but null and booleans (numbers are
 * coerced to text). */
static int need_str(struct schw *w, int val, const char *path)
{
	enum ykind k = ydoc_kind(w->d, val);
	if (k != Y_SCALAR)
		return schw_err(w, val, path, "must be a string, not %s", ywalk_kind(k));
	if (ydoc_is_null(w->d, val))
		return schw_err(w, val, path, "must be a string, not null");
	if (ydoc_plain(w->d, val) && yaml11_bool_word(ydoc_str(w->d, val)))
		return schw_err(w, val, path,
			       "must be a string, not a boolean (quote it if it is meant as text)");
	return 0;
}

static int need_oneof(struct schw *w, int val, const char *path, const char *const *oneof)
{
	char list[400], got[STR_REDACT_LEN];
	if (!oneof || str_in(ydoc_str(w->d, val), oneof))
		return 0;
	str_join(list, sizeof(list), oneof);
	str_redact(got, sizeof(got), ydoc_str(w->d, val));
	return schw_err(w, val, path, "must be one of: %s; got %s", list, got);
}

/* ---- the walker ---- */

static int walk_obj(struct schw *w, int node, const char *path, const struct sch_obj *o,
		    const char *const *skip);

static int walk_list(struct schw *w, const struct sch_field *f, int val, const char *path)
{
	const struct ydoc *d = w->d;
	char ipath[SCHW_PATH];
	size_t max = f->max ? f->max : SCH_MAX_ITEMS;
	if (ydoc_kind(d, val) != Y_SEQ)
		return schw_err(w, val, path, "must be a list%s",
			       f->obj ? "" : " of strings");
	size_t n = ydoc_len(d, val);
	if (n > max)
		return schw_err(w, val, path, "must have at most %zu item%s", max,
			       max == 1 ? "" : "s");
	for (size_t i = 0; i < n; i++) {
		int it = ydoc_seq_at(d, val, i);
		int r;
		ywalk_path_idx(ipath, sizeof(ipath), path, i);
		if (f->obj && ydoc_kind(d, it) == Y_MAP) {
			r = walk_obj(w, it, ipath, f->obj, NULL);
		} else {
			r = need_str(w, it, ipath);
			if (!r)
				r = need_oneof(w, it, ipath, f->oneof);
		}
		if (r)
			return r;
	}
	return 0;
}

static int walk_map(struct schw *w, const struct sch_field *f, int val, const char *path)
{
	const struct ydoc *d = w->d;
	char kpath[SCHW_PATH];
	size_t max = f->max ? f->max : SCH_MAX_ITEMS;
	if (ydoc_kind(d, val) != Y_MAP)
		return schw_err(w, val, path, "must be a mapping of strings to strings");
	size_t n = ydoc_len(d, val);
	if (n > max)
		return schw_err(w, val, path, "must have at most %zu entries", max);
	for (size_t i = 0; i < n; i++) {
		int k = ydoc_map_key(d, val, i);
		int v = ydoc_map_val(d, val, i);
		int r = need_str(w, k, path);
		if (r)
			return schw_err(w, k, path, "keys must be strings");
		ywalk_path_user(kpath, sizeof(kpath), path, ydoc_str(d, k));
		r = need_str(w, v, kpath);
		if (r)
			return r;
	}
	return 0;
}

static int walk_creds(struct schw *w, int val, const char *path, const struct sch_creds *c)
{
	const struct ydoc *d = w->d;
	static const char *const skip[] = {"type", NULL};
	const char *names[8];
	char list[200];
	char tpath[SCHW_PATH];
	size_t nv = 0;
	const char *type = c->deflt;
	for (; c->variants[nv].type && nv + 1 < sizeof(names) / sizeof(names[0]); nv++)
		names[nv] = c->variants[nv].type;
	names[nv] = NULL;
	str_join(list, sizeof(list), names);
	ywalk_path(tpath, sizeof(tpath), path, "type");

	if (ydoc_kind(d, val) != Y_MAP)
		return schw_err(w, val, path, "must be a mapping with `type` (one of: %s)", list);
	int tn = ydoc_map_get(d, val, "type");
	if (tn) {
		if (ydoc_kind(d, tn) != Y_SCALAR || ydoc_is_null(d, tn))
			return schw_err(w, tn, tpath, "must be one of: %s", list);
		if (!str_in(ydoc_str(d, tn), names)) {
			char got[STR_REDACT_LEN];
			str_redact(got, sizeof(got), ydoc_str(d, tn));
			return schw_err(w, tn, tpath, "must be one of: %s; got %s", list, got);
		}
		type = ydoc_str(d, tn);
	} else if (!type) {
		return schw_err(w, val, tpath, "required field is missing (one of: %s)", list);
	}
	for (size_t i = 0; i < nv; i++)
		if (!strcmp(c->variants[i].type, type))
			return walk_obj(w, val, path, c->variants[i].obj, skip);
	return schw_err(w, val, tpath, "must be one of: %s", list); /* not reached */
}

static int walk_value(struct schw *w, const struct sch_field *f, int val, const char *path)
{
	const struct ydoc *d = w->d;
	int r = 0;
	if (ydoc_is_null(d, val)) {
		/* pydantic: Optional[...] = None accepts null; a required field does not */
		if (f->flags & SCH_REQ)
			return schw_err(w, val, path, "is required and must not be null");
		if (f->flags & SCH_NOTNULL)
			return schw_err(w, val, path, "must not be null (omit it for the default)");
		return 0;
	}
	switch (f->kind) {
	case SCH_STR:
		r = need_str(w, val, path);
		if (!r)
			r = need_oneof(w, val, path, f->oneof);
		break;
	case SCH_BOOL: {
		bool b;
		if (ydoc_bool(d, val, &b))
			r = schw_err(w, val, path, "must be a boolean (true or false)");
		break;
	}
	case SCH_INT: {
		long long v;
		if (ydoc_int(d, val, &v))
			r = schw_err(w, val, path, "must be an integer");
		break;
	}
	case SCH_LIST:
		r = walk_list(w, f, val, path);
		break;
	case SCH_MAP:
		r = walk_map(w, f, val, path);
		break;
	case SCH_OBJ:
		r = walk_obj(w, val, path, f->obj, NULL);
		break;
	case SCH_CREDS:
		r = walk_creds(w, val, path, f->creds);
		break;
	}
	if (!r && f->check)
		r = f->check(w, val, path);
	return r;
}

static const struct sch_field *find_field(const struct sch_obj *o, const char *name)
{
	for (const struct sch_field *f = o->fields; f->name; f++)
		if (!strcmp(f->name, name))
			return f;
	return NULL;
}

/* "PATH: unknown key "reg…" (6 chars) (did you mean regions?)": the key is user text (a
 * secret pasted in key position must not reach events), the suggestion is our field name. */
static int unknown_key(struct schw *w, int k, const char *path, const struct sch_obj *o,
		       const char *const *skip)
{
	const char *known[64];
	char shown[STR_REDACT_KEY_LEN];
	size_t n = 0;
	for (const struct sch_field *f = o->fields; f->name && n + 1 < 64; f++)
		known[n++] = f->name;
	for (size_t i = 0; skip && skip[i] && n + 1 < 64; i++)
		known[n++] = skip[i];
	known[n] = NULL;
	str_redact_key(shown, sizeof(shown), ydoc_str(w->d, k), known);
	return schw_err(w, k, path, "unknown key %s", shown);
}

/* Keys in document order (unknown keys and bad values first), then required keys, then the
 * exclusive pairs, then the object's hook. */
static int walk_obj(struct schw *w, int node, const char *path, const struct sch_obj *o,
		    const char *const *skip)
{
	const struct ydoc *d = w->d;
	char kpath[SCHW_PATH];
	if (ydoc_kind(d, node) != Y_MAP)
		return schw_err(w, node, path, "must be a mapping, not %s",
			       ywalk_kind(ydoc_kind(d, node)));
	size_t n = ydoc_len(d, node);
	for (size_t i = 0; i < n; i++) {
		int k = ydoc_map_key(d, node, i);
		const char *ks = ydoc_str(d, k);
		if (ydoc_kind(d, k) != Y_SCALAR || ydoc_is_null(d, k))
			return schw_err(w, k, path, "keys must be strings");
		if (skip && str_in(ks, skip))
			continue;
		const struct sch_field *f = find_field(o, ks);
		if (!f)
			return unknown_key(w, k, path, o, skip);
		ywalk_path(kpath, sizeof(kpath), path, f->name);
		int r = walk_value(w, f, ydoc_map_val(d, node, i), kpath);
		if (r)
			return r;
	}
	for (const struct sch_field *f = o->fields; f->name; f++) {
		if (!(f->flags & SCH_REQ) || ydoc_map_get(d, node, f->name))
			continue;
		ywalk_path(kpath, sizeof(kpath), path, f->name);
		return schw_err(w, node, kpath, "required field is missing");
	}
	for (const struct sch_excl *x = o->excl; x && x->a; x++) {
		int b = schw_get(w, node, x->b);
		if (!schw_get(w, node, x->a) || !b)
			continue;
		ywalk_path(kpath, sizeof(kpath), path, x->b);
		return schw_err(w, b, kpath, "cannot be set together with `%s`", x->a);
	}
	return o->post ? o->post(w, node, path) : 0;
}

/* ---- files (path rules and reading: lib/fileref.c) ---- */

static int resolve(struct schw *w, int node, const char *path, const char *p, char *out,
		   size_t outlen)
{
	char why[PATH_MAX + 128];
	if (fileref_resolve(w->ctx, p, out, outlen, why, sizeof(why)))
		return schw_err(w, node, path, "%s", why);
	return 0;
}

static int read_file(struct schw *w, int node, const char *path, const char *abs, char **out,
		     size_t *outlen)
{
	char why[PATH_MAX + 128];
	int r = fileref_read(w->ctx, abs, SCHEMA_MAX_FILE, out, outlen, why, sizeof(why));
	if (r == -EINVAL)
		return schw_err(w, node, path, "%s", why);
	return r;
}

static int attach(struct schw *w, int node, const char *path, const char *abs, char *data,
		  size_t len)
{
	struct schema_result *res = w->res;
	if (res->natt >= SCHEMA_MAX_ATTACH) {
		free(data);
		return schw_err(w, node, path, "too many file references (at most %d)",
			       SCHEMA_MAX_ATTACH);
	}
	struct attachment *a = &res->att[res->natt++];
	a->field = xstrdup(path);
	a->path = xstrdup(abs);
	a->data = data;
	a->len = len;
	return 0;
}

/* ---- content checks. `what` is "" for inline content or "PATH: " for a file. ---- */

/* OpenSSL asks for a passphrase through this; never prompt on a terminal. */
static int pem_pass_cb(char *buf, int size, int rwflag, void *u)
{
	const char *pass = u;
	(void)rwflag;
	if (!pass || size <= 0)
		return -1;
	size_t n = strlen(pass);
	if (n > (size_t)size)
		n = (size_t)size;
	memcpy(buf, pass, n);
	return (int)n;
}

static int check_pem_rsa(struct schw *w, int node, const char *path, const char *what,
			 const char *buf, size_t len, const char *pass)
{
	int r = 0;
	if (len > INT_MAX)
		return schw_err(w, node, path, "%skey too large", what);
	BIO *bio = BIO_new_mem_buf(buf, (int)len);
	if (!bio)
		return -ENOMEM;
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, pem_pass_cb, (void *)pass);
	ERR_clear_error();
	if (!pk)
		r = schw_err(w, node, path, "%snot a PEM private key%s", what,
			    pass ? " (or wrong pass_phrase)" : " (or encrypted)");
	else if (EVP_PKEY_base_id(pk) != EVP_PKEY_RSA)
		r = schw_err(w, node, path, "%sthe private key is not an RSA key", what);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return r;
}

static const cJSON *json_str(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(it) ? it : NULL;
}

/* What google-auth's from_service_account_info needs (the key itself is checked by Google). */
static int check_gcp_sa(struct schw *w, int node, const char *path, const char *what,
			const char *buf, size_t len)
{
	static const char *const need[] = {"client_email", "private_key", "token_uri", NULL};
	int r = 0;
	cJSON *j = cJSON_ParseWithLength(buf, len);
	if (!j)
		return schw_err(w, node, path, "%snot valid JSON", what);
	if (!cJSON_IsObject(j)) {
		r = schw_err(w, node, path, "%sthe service account JSON must be an object", what);
		goto out;
	}
	for (size_t i = 0; need[i]; i++) {
		if (!json_str(j, need[i])) {
			r = schw_err(w, node, path,
				    "%snot a service account key: no string \"%s\"", what, need[i]);
			goto out;
		}
	}
out:
	cJSON_Delete(j);
	return r;
}

/* The file `nebius iam auth-public-key generate` writes (nebius pysdk credentials_file.py). */
static int check_nebius_sa(struct schw *w, int node, const char *path, const char *what,
			   const char *buf, size_t len)
{
	static const char *const need[] = {"alg", "private-key", "kid", "iss", "sub", NULL};
	int r = 0;
	cJSON *j = cJSON_ParseWithLength(buf, len);
	if (!j)
		return schw_err(w, node, path, "%snot valid JSON", what);
	const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "subject-credentials");
	if (!cJSON_IsObject(sc)) {
		r = schw_err(w, node, path, "%sno \"subject-credentials\" object", what);
		goto out;
	}
	for (size_t i = 0; need[i]; i++) {
		if (!json_str(sc, need[i])) {
			r = schw_err(w, node, path,
				    "%sno string \"subject-credentials.%s\"", what, need[i]);
			goto out;
		}
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(sc, "type");
	if (t && !(cJSON_IsString(t) && (!strcmp(t->valuestring, "") ||
					 !strcmp(t->valuestring, "JWT")))) {
		r = schw_err(w, node, path, "%s\"subject-credentials.type\" must be JWT", what);
		goto out;
	}
	if (strcmp(json_str(sc, "alg")->valuestring, "RS256")) {
		r = schw_err(w, node, path, "%s\"subject-credentials.alg\" must be RS256", what);
		goto out;
	}
	if (strcmp(json_str(sc, "iss")->valuestring, json_str(sc, "sub")->valuestring)) {
		r = schw_err(w, node, path,
			    "%s\"subject-credentials\": iss and sub must be equal", what);
		goto out;
	}
	const char *pk = json_str(sc, "private-key")->valuestring;
	char sub[PATH_MAX + 64];
	fmt_cut(sub, sizeof(sub), "%ssubject-credentials.private-key: ", what);
	r = check_pem_rsa(w, node, path, sub, pk, strlen(pk), NULL);
out:
	cJSON_Delete(j);
	return r;
}

static bool kube_has_context(const struct ydoc *kd, int contexts, const char *name)
{
	if (ydoc_kind(kd, contexts) != Y_SEQ)
		return false;
	for (size_t i = 0; i < ydoc_len(kd, contexts); i++) {
		int item = ydoc_seq_at(kd, contexts, i);
		const char *n = ydoc_str(kd, ydoc_map_get(kd, item, "name"));
		if (n && !strcmp(n, name))
			return true;
	}
	return false;
}

/* The entry's contexts (or, without them, the kubeconfig's current-context) must name a
 * context of the kubeconfig, as dstack's Kubeconfig.get_context() demands. */
static int check_kube_contexts(struct schw *w, int node, const char *path, const char *what,
			       const struct ydoc *kd, int root)
{
	char ipath[SCHW_PATH];
	int kctx = ydoc_map_get(kd, root, "contexts");
	if (kctx && !ydoc_is_null(kd, kctx) && ydoc_kind(kd, kctx) != Y_SEQ)
		return schw_err(w, node, path, "%skubeconfig `contexts` must be a list", what);
	int want = schw_get(w, w->top, "contexts");
	if (want) {
		for (size_t i = 0; i < ydoc_len(w->d, want); i++) {
			int it = ydoc_seq_at(w->d, want, i);
			const char *name = ydoc_kind(w->d, it) == Y_MAP ? schw_str(w, it, "name")
								       : ydoc_str(w->d, it);
			ywalk_path_idx(ipath, sizeof(ipath), "contexts", i);
			if (name && !kube_has_context(kd, kctx, name))
				return schw_err(w, it, ipath, "no such context in the kubeconfig");
		}
		return 0;
	}
	const char *cur = ydoc_str(kd, ydoc_map_get(kd, root, "current-context"));
	if (!cur || !*cur || ydoc_is_null(kd, ydoc_map_get(kd, root, "current-context")))
		return schw_err(w, node, path,
			       "%skubeconfig has no current-context; set one or list `contexts`",
			       what);
	if (!kube_has_context(kd, kctx, cur))
		return schw_err(w, node, path,
			       "%skubeconfig current-context names no context in the file", what);
	return 0;
}

static int check_kubeconfig(struct schw *w, int node, const char *path, const char *what,
			    const char *buf, size_t len)
{
	struct ydoc *kd = NULL;
	char inner[300];
	int r = ydoc_load(buf, len, "kubeconfig", &kd, inner, sizeof(inner));
	if (r == -ENOMEM)
		return r;
	if (r)
		return schw_err(w, node, path, "%snot a valid kubeconfig: %s", what, inner);
	int root = ydoc_root(kd);
	if (ydoc_kind(kd, root) != Y_MAP) {
		r = schw_err(w, node, path, "%snot a kubeconfig: not a YAML mapping", what);
		goto out;
	}
	int kind = ydoc_map_get(kd, root, "kind");
	const char *ks = ydoc_str(kd, kind);
	if (kind && !ydoc_is_null(kd, kind) && (!ks || strcmp(ks, "Config"))) {
		r = schw_err(w, node, path, "%snot a kubeconfig: `kind` is not Config", what);
		goto out;
	}
	bool parts = ydoc_map_get(kd, root, "clusters") || ydoc_map_get(kd, root, "contexts") ||
		     ydoc_map_get(kd, root, "users");
	if (!parts && !(ks && ydoc_map_get(kd, root, "apiVersion"))) {
		r = schw_err(w, node, path,
			    "%snot a kubeconfig: no clusters, contexts or users", what);
		goto out;
	}
	r = check_kube_contexts(w, node, path, what, kd, root);
out:
	ydoc_free(kd);
	return r;
}

static bool ini_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The OCI CLI config is Python configparser INI: [section] headers, key=value or key: value,
 * comments with # or ;, indented continuation lines. */
static int check_oci_config(struct schw *w, int node, const char *path, const char *what,
			    const char *buf, size_t len, const char *profile)
{
	bool found = false, in_entry = false;
	size_t lineno = 0;
	const char *p = buf, *end = buf + len;
	if (memchr(buf, '\0', len))
		return schw_err(w, node, path, "%snot a text file", what);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *s = p, *e = le;
		bool indented = s < e && ini_is_space(*s);
		lineno++;
		p = nl ? nl + 1 : end;
		while (s < e && ini_is_space(*s))
			s++;
		while (e > s && ini_is_space(e[-1]))
			e--;
		if (s == e || *s == '#' || *s == ';')
			continue;
		if (indented && in_entry)
			continue;
		if (*s == '[') {
			if (e[-1] != ']' || e - s < 3)
				return schw_err(w, node, path, "%sline %zu: bad section header",
					       what, lineno);
			size_t n = (size_t)(e - s - 2);
			if (strlen(profile) == n && !memcmp(s + 1, profile, n))
				found = true;
			in_entry = false;
			continue;
		}
		const char *eq = s;
		while (eq < e && *eq != '=' && *eq != ':')
			eq++;
		if (eq == e || eq == s)
			return schw_err(w, node, path, "%sline %zu: expected key = value", what,
				       lineno);
		in_entry = true;
	}
	if (!found)
		return schw_err(w, node, path, "%sno section for the configured profile", what);
	return 0;
}

static int check_content(struct schw *w, const struct sch_fill *f, int node, const char *path,
			 const char *abs, const char *buf, size_t len)
{
	char what[STR_REDACT_LEN + 4];
	if (abs) {
		str_redact(what, sizeof(what) - 2, abs);
		fmt_cut(what + strlen(what), 3, ": "); /* fits: str_redact left 2 bytes free */
	} else {
		what[0] = '\0';
	}
	switch (f->kind) {
	case SCH_C_GCP_SA:
		return check_gcp_sa(w, node, path, what, buf, len);
	case SCH_C_NEBIUS_SA:
		return check_nebius_sa(w, node, path, what, buf, len);
	case SCH_C_PEM_RSA:
		return check_pem_rsa(w, node, path, what, buf, len, f->pass);
	case SCH_C_KUBECONFIG:
		return check_kubeconfig(w, node, path, what, buf, len);
	case SCH_C_OCI_CONFIG:
		return check_oci_config(w, node, path, what, buf, len,
					f->profile ? f->profile : "DEFAULT");
	}
	return schw_err(w, node, path, "unknown content kind"); /* not reached */
}

int schw_fill(struct schw *w, int obj, const char *path, const struct sch_fill *f)
{
	char fpath[SCHW_PATH], dpath[SCHW_PATH], abs[PATH_MAX];
	char *data = NULL;
	size_t len = 0;
	int fn = schw_get(w, obj, f->file);
	int dn = f->data ? schw_get(w, obj, f->data) : 0;
	const char *fs = ydoc_str(w->d, fn);
	bool fset = fs && *fs;
	ywalk_path(fpath, sizeof(fpath), path, f->file);
	if (f->data)
		ywalk_path(dpath, sizeof(dpath), path, f->data);
	if (f->exclusive && dn) {
		const char *ds = ydoc_str(w->d, dn);
		if (!*ds)
			dn = 0;
		else if (fset)
			return schw_err(w, dn, dpath, "cannot be set together with `%s`", f->file);
	}
	if (dn) {
		const char *ds = ydoc_str(w->d, dn);
		return check_content(w, f, dn, dpath, NULL, ds, strlen(ds));
	}
	if (!fset) {
		if (f->optional)
			return 0;
		if (f->data)
			return schw_err(w, fn ? fn : obj, fn ? fpath : path,
				       "either `%s` or `%s` is required", f->file, f->data);
		return schw_err(w, fn ? fn : obj, fpath, "required field is missing");
	}
	int r = resolve(w, fn, fpath, fs, abs, sizeof(abs));
	if (!r)
		r = read_file(w, fn, fpath, abs, &data, &len);
	if (!r)
		r = check_content(w, f, fn, fpath, abs, data, len);
	if (!r) {
		r = attach(w, fn, fpath, abs, data, len);
		data = NULL;
	}
	free(data);
	return r;
}

/* ---- public API ---- */

void schema_result_free(struct schema_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->natt && i < SCHEMA_MAX_ATTACH; i++) {
		free(res->att[i].field);
		free(res->att[i].path);
		free(res->att[i].data);
	}
	memset(res, 0, sizeof(*res));
}

/* Which type the entry is, from `type:` and the directory name (see schema.h). */
static int entry_type(struct schw *w, int node, const char *dirname, const struct backend_type **out)
{
	const struct ydoc *d = w->d;
	char list[400];
	int tn = ydoc_map_get(d, node, "type");
	const char *ts = NULL;
	str_join(list, sizeof(list), backend_type_names());
	if (tn) {
		if (ydoc_kind(d, tn) != Y_SCALAR || ydoc_is_null(d, tn))
			return schw_err(w, tn, "type", "must be a backend type (one of: %s)", list);
		ts = ydoc_str(d, tn);
		if (!backend_type_known(ts)) {
			char got[STR_REDACT_KEY_LEN];
			str_redact_key(got, sizeof(got), ts, backend_type_names());
			return schw_err(w, tn, "type", "unknown backend type %s (known: %s)", got,
				       list);
		}
	}
	if (!dirname) {
		if (!ts)
			return schw_err(w, node, "type", "required field is missing (one of: %s)",
				       list);
	} else if (backend_type_known(dirname)) {
		if (ts && strcmp(ts, dirname))
			return schw_err(w, tn, "type",
				       "is %s but the backend directory is named %s; a backend "
				       "of another type needs its own directory name",
				       ts, dirname);
		if (!ts)
			ts = dirname;
	} else {
		if (!name_valid(dirname))
			return schw_err(w, node, "",
				       "backend directory name must match ^[a-zA-Z0-9_-]{1,50}$");
		if (!ts)
			return schw_err(w, node, "type",
				       "required field is missing: the directory name is not a "
				       "backend type, so `type:` must say which type (one of: %s)",
				       list);
	}
	*out = backend_type_find(ts);
	return 0;
}

int schema_validate(const struct ydoc *d, int node, const char *dirname, const struct fileref_ctx *ctx,
		struct schema_result *res, char *err, size_t errlen)
{
	static const char *const skip_dir[] = {"type", NULL};
	static const char *const skip_root[] = {"type", "name", NULL};
	struct schw w = {.d = d, .ctx = ctx, .res = res, .err = err, .errlen = errlen, .top = node};
	const struct backend_type *t = NULL;
	int r;
	memset(res, 0, sizeof(*res));
	if (ydoc_kind(d, node) != Y_MAP)
		return ydoc_err(d, node, "", err, errlen,
				"a backend entry must be a mapping, not %s",
				ywalk_kind(ydoc_kind(d, node)));
	r = entry_type(&w, node, dirname, &t);
	if (r)
		goto out;
	if (!dirname) {
		int nn = ydoc_map_get(d, node, "name");
		if (nn && (need_str(&w, nn, "name") || !name_valid(ydoc_str(d, nn)))) {
			r = schw_err(&w, nn, "name", "must match ^[a-zA-Z0-9_-]{1,50}$");
			goto out;
		}
		/* name: is the directory, and a type-named directory holds that type only */
		if (nn && backend_type_known(ydoc_str(d, nn)) && strcmp(ydoc_str(d, nn), t->name)) {
			r = schw_err(&w, nn, "name", "is another backend type; a backend named after "
						    "a type must be of that type");
			goto out;
		}
	}
	res->type = t->name;
	r = walk_obj(&w, node, "", t->schema, dirname ? skip_dir : skip_root);
out:
	if (r) {
		schema_result_free(res);
		if (r != -ENOMEM)
			r = -EINVAL;
	}
	return r;
}
