/* rootcfg: the root config.yml, i.e. dstack's ~/.dstack/server/config.yml, read and written.
 *
 * Reading renders the current state. Writing applies a whole dstack server config the way
 * dstack's server start does (server/services/config.py), but all or nothing: every project
 * and backend is validated first, then one store transaction makes every change. fleetfs
 * extension: a backend entry may carry `name:` to be a named backend (two AWS accounts in one
 * project); without it the backend's directory is its type, as in dstack.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "state.h"
#include "../lib/ydoc.h"

#define ROOT_MAX_BACKENDS 4096

struct want_backend {
	int node;
	char dir[STORE_NAME_MAX];
	struct schema_result res;
};

struct want_project {
	char name[STORE_NAME_MAX];
	struct want_backend *b;
	size_t nb;
};

struct plan {
	struct want_project *p;
	size_t np;
	bool has_keys;
	struct seal_key keys[SEAL_MAX_KEYS];
	size_t nkeys;
	int perms_node, plugins_node;
};

static void plan_free(struct plan *pl)
{
	for (size_t i = 0; i < pl->np; i++) {
		for (size_t j = 0; j < pl->p[i].nb; j++)
			schema_result_free(&pl->p[i].b[j].res);
		free(pl->p[i].b);
	}
	free(pl->p);
	memset(pl->keys, 0, sizeof(pl->keys));
}

static bool alnum(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* "FIELD: unknown key "abc…" (N chars)": a key is user text (a secret pasted in key position
 * must not reach the 0444 events file); known (our words) only feeds the suggestion. */
static int unknown_key(const struct ydoc *d, int key, const char *field,
		       const char *const *known, char *err, size_t errlen)
{
	char shown[STR_REDACT_KEY_LEN];
	const char *k = ydoc_str(d, key);
	if (!k)
		return ydoc_err(d, key, field, err, errlen, "keys must be strings");
	str_redact_key(shown, sizeof(shown), k, known);
	return ydoc_err(d, key, field, err, errlen, "unknown key %s", shown);
}

static int parse_keys(const struct ydoc *d, int enc, struct plan *pl, char *err, size_t errlen)
{
	if (ydoc_kind(d, enc) != Y_MAP)
		return ydoc_err(d, enc, "encryption", err, errlen, "expected a mapping");
	static const char *const enc_keys[] = {"keys", NULL};
	for (size_t i = 0; i < ydoc_len(d, enc); i++) {
		const char *k = ydoc_str(d, ydoc_map_key(d, enc, i));
		if (!k || strcmp(k, "keys"))
			return unknown_key(d, ydoc_map_key(d, enc, i), "encryption", enc_keys, err,
					   errlen);
	}
	int keys = ydoc_map_get(d, enc, "keys");
	pl->has_keys = true;
	if (ydoc_is_null(d, keys))
		return 0;
	if (ydoc_kind(d, keys) != Y_SEQ)
		return ydoc_err(d, keys, "encryption.keys", err, errlen, "expected a list");
	static const char *const key_keys[] = {"type", "name", "secret", NULL};
	for (size_t i = 0; i < ydoc_len(d, keys); i++) {
		int k = ydoc_seq_at(d, keys, i);
		char field[64];
		fmt_cut(field, sizeof(field), "encryption.keys[%zu]", i);
		if (ydoc_kind(d, k) != Y_MAP)
			return ydoc_err(d, k, field, err, errlen, "expected a mapping");
		const char *type = ydoc_str(d, ydoc_map_get(d, k, "type"));
		if (!type)
			return ydoc_err(d, k, field, err, errlen, "type: required (aes or identity)");
		for (size_t j = 0; j < ydoc_len(d, k); j++) {
			const char *kk = ydoc_str(d, ydoc_map_key(d, k, j));
			bool ok = kk && (!strcmp(kk, "type") ||
					 (!strcmp(type, "aes") &&
					  (!strcmp(kk, "name") || !strcmp(kk, "secret"))));
			if (!ok)
				return unknown_key(d, ydoc_map_key(d, k, j), field, key_keys, err,
						   errlen);
		}
		if (!strcmp(type, "identity"))
			continue; /* accepted; fleetfs always seals (docs/filesystem.md) */
		if (strcmp(type, "aes")) {
			char got[STR_REDACT_LEN];
			str_redact(got, sizeof(got), type);
			return ydoc_err(d, ydoc_map_get(d, k, "type"), field, err, errlen,
					"type must be aes or identity; got %s", got);
		}
		const char *name = ydoc_str(d, ydoc_map_get(d, k, "name"));
		const char *secret = ydoc_str(d, ydoc_map_get(d, k, "secret"));
		if (!name || !alnum(name) || strlen(name) >= SEAL_NAME_MAX)
			return ydoc_err(d, k, field, err, errlen,
					"name: required, letters and digits only");
		if (!secret)
			return ydoc_err(d, k, field, err, errlen, "secret: required");
		if (pl->nkeys >= SEAL_MAX_KEYS - 1)
			return ydoc_err(d, k, field, err, errlen, "at most %d keys",
					SEAL_MAX_KEYS - 1);
		if (seal_key_from_b64(name, secret, &pl->keys[pl->nkeys]) != 0)
			return ydoc_err(d, ydoc_map_get(d, k, "secret"), field, err, errlen,
					"secret must be the base64 of exactly 32 bytes "
					"(head -c 32 /dev/urandom | base64)");
		pl->nkeys++;
	}
	return 0;
}

static int parse_perms(const struct ydoc *d, int n, char *err, size_t errlen)
{
	static const char *const known[] = {"allow_non_admins_create_projects",
					    "allow_non_admins_manage_ssh_fleets",
					    "allow_managers_manage_secrets", NULL};
	if (ydoc_is_null(d, n))
		return 0;
	if (ydoc_kind(d, n) != Y_MAP)
		return ydoc_err(d, n, "default_permissions", err, errlen, "expected a mapping");
	for (size_t i = 0; i < ydoc_len(d, n); i++) {
		const char *k = ydoc_str(d, ydoc_map_key(d, n, i));
		bool ok = false, v;
		for (size_t j = 0; k && j < 3; j++)
			ok |= !strcmp(k, known[j]);
		char field[96];
		if (!ok)
			return unknown_key(d, ydoc_map_key(d, n, i), "default_permissions", known,
					   err, errlen);
		fmt_cut(field, sizeof(field), "default_permissions.%s", k); /* fits: a known key */
		if (ydoc_bool(d, ydoc_map_val(d, n, i), &v))
			return ydoc_err(d, ydoc_map_val(d, n, i), field, err, errlen,
					"expected true or false");
	}
	return 0;
}

static int parse_plugins(const struct ydoc *d, int n, char *err, size_t errlen)
{
	if (ydoc_is_null(d, n))
		return 0;
	if (ydoc_kind(d, n) != Y_SEQ)
		return ydoc_err(d, n, "plugins", err, errlen, "expected a list of names");
	for (size_t i = 0; i < ydoc_len(d, n); i++)
		if (ydoc_kind(d, ydoc_seq_at(d, n, i)) != Y_SCALAR)
			return ydoc_err(d, ydoc_seq_at(d, n, i), "plugins", err, errlen,
					"expected a name");
	return 0;
}

static int parse_project(const struct ydoc *d, int pn, size_t idx, const struct fileref_ctx *ctx,
			 struct plan *pl, char *err, size_t errlen)
{
	char field[96];
	fmt_cut(field, sizeof(field), "projects[%zu]", idx);
	if (ydoc_kind(d, pn) != Y_MAP)
		return ydoc_err(d, pn, field, err, errlen, "expected a mapping with name and backends");
	static const char *const project_keys[] = {"name", "backends", NULL};
	for (size_t i = 0; i < ydoc_len(d, pn); i++) {
		const char *k = ydoc_str(d, ydoc_map_key(d, pn, i));
		if (!k || (strcmp(k, "name") && strcmp(k, "backends")))
			return unknown_key(d, ydoc_map_key(d, pn, i), field, project_keys, err,
					   errlen);
	}
	const char *name = ydoc_str(d, ydoc_map_get(d, pn, "name"));
	if (!name)
		return ydoc_err(d, pn, field, err, errlen, "name: required");
	if (!name_valid(name))
		return ydoc_err(d, ydoc_map_get(d, pn, "name"), field, err, errlen,
				"name must match ^[a-zA-Z0-9_-]{1,50}$");
	for (size_t i = 0; i < pl->np; i++) {
		if (!strcmp(pl->p[i].name, name)) {
			char shown[STR_REDACT_LEN];
			str_redact(shown, sizeof(shown), name);
			return ydoc_err(d, ydoc_map_get(d, pn, "name"), field, err, errlen,
					"project %s is listed twice (also projects[%zu])", shown, i);
		}
	}
	struct want_project *wp = &pl->p[pl->np++];
	memset(wp, 0, sizeof(*wp));
	fmt_cut(wp->name, sizeof(wp->name), "%s", name); /* fits: name_valid, at most 50 */
	int bl = ydoc_map_get(d, pn, "backends");
	if (ydoc_is_null(d, bl))
		return 0;
	fmt_cut(field, sizeof(field), "projects[%zu].backends", idx);
	if (ydoc_kind(d, bl) != Y_SEQ)
		return ydoc_err(d, bl, field, err, errlen, "expected a list");
	size_t n = ydoc_len(d, bl);
	if (n > ROOT_MAX_BACKENDS)
		return ydoc_err(d, bl, field, err, errlen, "too many backends");
	wp->b = xcalloc(n ? n : 1, sizeof(*wp->b));
	for (size_t i = 0; i < n; i++) {
		int bn = ydoc_seq_at(d, bl, i);
		struct want_backend *wb = &wp->b[wp->nb];
		fmt_cut(field, sizeof(field), "projects[%zu].backends[%zu]", idx, i);
		if (ydoc_kind(d, bn) != Y_MAP)
			return ydoc_err(d, bn, field, err, errlen, "expected a backend mapping");
		int r = schema_validate(d, bn, NULL, ctx, &wb->res, err, errlen);
		if (r)
			return r;
		wp->nb++;
		wb->node = bn;
		const char *bname = ydoc_str(d, ydoc_map_get(d, bn, "name"));
		if (fmt(wb->dir, sizeof(wb->dir), "%s", bname ? bname : wb->res.type))
			return ydoc_err(d, bn, field, err, errlen, "name: too long");
		for (size_t j = 0; j + 1 < wp->nb; j++) {
			if (strcmp(wp->b[j].dir, wb->dir))
				continue;
			/* the directory is a type (ours) or a name: the user wrote (redacted) */
			char shown[STR_REDACT_LEN];
			if (bname)
				str_redact(shown, sizeof(shown), wb->dir);
			else
				fmt_cut(shown, sizeof(shown), "%s", wb->dir);
			return ydoc_err(d, bn, field, err, errlen,
					"a second backend named %s in this project (also "
					"backends[%zu]): give one of them a name: (fleetfs named "
					"backends)",
					shown, j);
		}
	}
	return 0;
}

static int parse_root(const struct ydoc *d, const struct fileref_ctx *ctx, struct plan *pl, char *err,
		      size_t errlen)
{
	int root = ydoc_root(d);
	if (!root || ydoc_kind(d, root) != Y_MAP)
		return ydoc_err(d, root, NULL, err, errlen,
				"expected dstack's server config: a mapping with projects:");
	static const char *const root_keys[] = {"projects", "encryption", "default_permissions",
						"plugins", NULL};
	for (size_t i = 0; i < ydoc_len(d, root); i++) {
		const char *k = ydoc_str(d, ydoc_map_key(d, root, i));
		char shown[STR_REDACT_KEY_LEN];
		if (!k || (strcmp(k, "projects") && strcmp(k, "encryption") &&
			   strcmp(k, "default_permissions") && strcmp(k, "plugins"))) {
			str_redact_key(shown, sizeof(shown), k, root_keys);
			return ydoc_err(d, ydoc_map_key(d, root, i), NULL, err, errlen,
					"unknown key %s (expected projects, encryption, "
					"default_permissions, plugins)",
					shown);
		}
	}
	int projects = ydoc_map_get(d, root, "projects");
	if (!projects)
		return ydoc_err(d, root, "projects", err, errlen, "required (it may be an empty list)");
	if (!ydoc_is_null(d, projects) && ydoc_kind(d, projects) != Y_SEQ)
		return ydoc_err(d, projects, "projects", err, errlen, "expected a list");
	size_t n = ydoc_len(d, projects);
	pl->p = xcalloc(n ? n : 1, sizeof(*pl->p));
	for (size_t i = 0; i < n; i++) {
		int r = parse_project(d, ydoc_seq_at(d, projects, i), i, ctx, pl, err, errlen);
		if (r)
			return r;
	}
	int enc = ydoc_map_get(d, root, "encryption");
	if (enc) {
		int r = parse_keys(d, enc, pl, err, errlen);
		if (r)
			return r;
	}
	pl->perms_node = ydoc_map_get(d, root, "default_permissions");
	pl->plugins_node = ydoc_map_get(d, root, "plugins");
	int r = parse_perms(d, pl->perms_node, err, errlen);
	if (!r)
		r = parse_plugins(d, pl->plugins_node, err, errlen);
	return r;
}

/* Does the stored config text describe the same backend as entry node of d? `name` is
 * ignored, and a missing `type` means the directory's type. */
static bool same_backend(struct stx *tx, const char *project, const char *dir, const char *type,
			 const struct ydoc *d, int node)
{
	char *old = NULL;
	size_t len = 0;
	struct ydoc *od = NULL;
	char err[64];
	bool same = false;
	if (store_backend_config(tx, project, dir, &old, &len))
		return false;
	if (ydoc_load(old, len, "old", &od, err, sizeof(err)) == 0 && ydoc_root(od)) {
		int on = ydoc_root(od);
		same = true;
		for (size_t i = 0; same && i < ydoc_len(d, node); i++) {
			const char *k = ydoc_str(d, ydoc_map_key(d, node, i));
			if (!k || !strcmp(k, "name"))
				continue;
			int ov = ydoc_map_get(od, on, k);
			if (!ov && !strcmp(k, "type"))
				continue; /* implied by the directory name */
			same = ov && ydoc_equal(d, ydoc_map_val(d, node, i), od, ov);
		}
		for (size_t i = 0; same && i < ydoc_len(od, on); i++) {
			const char *k = ydoc_str(od, ydoc_map_key(od, on, i));
			same = k && ydoc_map_get(d, node, k);
		}
		(void)type;
	}
	ydoc_free(od);
	seal_free_secret(old, len);
	return same;
}

static int put_meta_node(struct stx *tx, const char *key, const struct ydoc *d, int node)
{
	if (!node)
		return store_meta_del(tx, key);
	char *text = NULL;
	size_t len = 0;
	int r = ydoc_emit(d, node, &text, &len);
	if (!r)
		r = store_meta_put(tx, key, text, len);
	free(text);
	return r;
}

static int apply(struct store *s, const struct ydoc *d, struct plan *pl, char *err, size_t errlen)
{
	struct stx *tx = NULL;
	size_t created = 0, updated = 0, removed = 0, nprojects = 0;
	struct timespec now = time_now();
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	if (pl->has_keys) {
		r = store_set_user_keys(tx, pl->keys, pl->nkeys);
		if (r)
			goto out;
	}
	for (size_t i = 0; i < pl->np; i++) {
		struct want_project *wp = &pl->p[i];
		struct st_project p;
		if (store_project_get(tx, wp->name, &p) != 0) {
			memset(&p, 0, sizeof(p));
			fmt_cut(p.name, sizeof(p.name), "%s", wp->name); /* fits: as large */
			p.mtime = now;
			r = store_project_put(tx, &p);
			if (!r)
				r = store_event(tx, "", "project=%s created from config.yml", wp->name);
			if (r)
				goto out;
			nprojects++;
		}
		for (size_t j = 0; j < wp->nb; j++) {
			struct want_backend *wb = &wp->b[j];
			struct st_backend b;
			bool exists = store_backend_get(tx, wp->name, wb->dir, &b) == 0;
			if (exists && b.has_config && !strcmp(b.type, wb->res.type) &&
			    same_backend(tx, wp->name, wb->dir, wb->res.type, d, wb->node))
				continue;
			char *text = NULL;
			size_t len = 0;
			r = ydoc_emit_skip(d, wb->node, "name", &text, &len);
			if (r)
				goto out;
			if (!exists) {
				memset(&b, 0, sizeof(b));
				/* fits: as large */
				fmt_cut(b.project, sizeof(b.project), "%s", wp->name);
				fmt_cut(b.name, sizeof(b.name), "%s", wb->dir);
				b.dir_mtime = now;
			}
			bool had = exists && b.has_config;
			fmt_cut(b.type, sizeof(b.type), "%s", wb->res.type); /* fits: a known type */
			b.has_config = true;
			b.mtime = now;
			b.committed_at = now.tv_sec;
			b.last_error[0] = '\0';
			r = store_backend_put(tx, &b, text, len, wb->res.att, wb->res.natt);
			seal_free_secret(text, len);
			if (!r)
				r = store_event(tx, wp->name,
						"backend=%s config.yml %s from the root config.yml "
						"(type %s)",
						wb->dir, had ? "updated" : "created", wb->res.type);
			if (r)
				goto out;
			had ? updated++ : created++;
		}
		/* backends of a listed project that the file does not list are removed */
		struct st_backend *arr = NULL;
		size_t n = 0;
		r = store_backend_list(tx, wp->name, &arr, &n);
		if (r)
			goto out;
		for (size_t k = 0; k < n && !r; k++) {
			bool listed = false;
			for (size_t j = 0; j < wp->nb; j++)
				listed |= !strcmp(wp->b[j].dir, arr[k].name);
			if (listed)
				continue;
			r = store_backend_del(tx, wp->name, arr[k].name);
			if (!r)
				r = store_event(tx, wp->name,
						"backend=%s removed: not listed in the root config.yml",
						arr[k].name);
			removed++;
		}
		free(arr);
		if (r)
			goto out;
	}
	r = put_meta_node(tx, "root/default_permissions", d, pl->perms_node);
	if (!r)
		r = put_meta_node(tx, "root/plugins", d, pl->plugins_node);
	if (!r)
		r = store_event(tx, "",
				"config.yml applied: %zu projects listed (%zu new), backends: %zu "
				"created, %zu updated, %zu removed%s",
				pl->np, nprojects, created, updated, removed,
				pl->has_keys ? "; encryption keys set, secrets re-sealed" : "");
out:
	if (r) {
		store_abort(tx);
		if (!err[0])
			fmt_cut(err, errlen, "config.yml: store: %s", strerror(-r));
		return r;
	}
	r = store_commit(tx);
	if (r)
		fmt_cut(err, errlen, "config.yml: store commit failed: %s", strerror(-r));
	return r;
}

int state_root_commit(struct store *s, const char *data, size_t len, const struct fileref_ctx *ctx,
		      char *err, size_t errlen)
{
	struct ydoc *d = NULL;
	struct plan pl;
	memset(&pl, 0, sizeof(pl));
	err[0] = '\0';
	int r = ydoc_load(data, len, "config.yml", &d, err, errlen);
	if (!r)
		r = parse_root(d, ctx, &pl, err, errlen);
	if (!r)
		r = apply(s, d, &pl, err, errlen);
	else if (r != -ENOMEM)
		state_note(s, "", "config.yml rejected: %s", err);
	plan_free(&pl);
	ydoc_free(d);
	return r;
}

/* A name is ^[a-zA-Z0-9_-]+$, but YAML 1.1 readers (dstack's PyYAML) take yes, on, null,
 * 123, 1_000, 0x1f ... as other types: quote those. */
static const char *yaml_name(const char *name, char *tmp, size_t n)
{
	static const char *const words[] = {"y", "n", "yes", "no", "true", "false", "on", "off",
					    "null", "~"};
	bool quote = (name[0] >= '0' && name[0] <= '9') || name[0] == '-' || name[0] == '_';
	for (size_t i = 0; !quote && i < sizeof(words) / sizeof(words[0]); i++)
		quote = !strcasecmp(name, words[i]);
	if (!quote)
		return name;
	fmt_cut(tmp, n, "\"%s\"", name); /* fits: a name < STORE_NAME_MAX, n is 3 more */
	return tmp;
}

/* Append text (a block YAML document) as a list item indented under "  - ". */
static void append_item(struct buf *out, const char *pre, const char *text)
{
	bool first = true;
	const char *p = text;
	if (pre) {
		buf_printf(out, "  - %s\n", pre);
		first = false;
	}
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n == 3 && !strncmp(p, "...", 3))
			break;
		if (first)
			buf_append(out, "  - ", 4);
		else if (n)
			buf_append(out, "    ", 4);
		buf_append(out, p, n);
		buf_append(out, "\n", 1);
		first = false;
		p = nl ? nl + 1 : p + n;
	}
}

static void render_meta(struct stx *tx, struct buf *out, const char *key, const char *name)
{
	char *v = NULL;
	size_t n = 0;
	if (store_meta_get(tx, key, &v, &n))
		return;
	buf_printf(out, "%s:\n", name);
	for (char *p = v; *p;) {
		char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (!(len == 3 && !strncmp(p, "...", 3))) {
			buf_append(out, "  ", 2);
			buf_append(out, p, len);
			buf_append(out, "\n", 1);
		}
		p = nl ? nl + 1 : p + len;
	}
	free(v);
}

int state_root_render(struct store *s, struct buf *out)
{
	struct stx *tx = NULL;
	struct st_project *ps = NULL;
	size_t np = 0;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	r = store_project_list(tx, &ps, &np);
	if (r)
		goto out;
	buf_printf(out, "# fleetfs: every project and backend, in dstack's server config.yml format.\n"
			"# Write a dstack ~/.dstack/server/config.yml here to apply it (all or nothing).\n"
			"projects:\n");
	for (size_t i = 0; i < np; i++) {
		struct st_backend *bs = NULL;
		size_t nb = 0, shown = 0;
		char qn[STORE_NAME_MAX + 3];
		buf_printf(out, "- name: %s\n", yaml_name(ps[i].name, qn, sizeof(qn)));
		r = store_backend_list(tx, ps[i].name, &bs, &nb);
		if (r)
			goto out;
		for (size_t j = 0; j < nb; j++)
			shown += bs[j].has_config;
		buf_printf(out, "  backends:%s\n", shown ? "" : " []");
		for (size_t j = 0; j < nb; j++) {
			char *text = NULL, *em = NULL;
			size_t len = 0, emlen = 0;
			struct ydoc *d = NULL;
			char err[256], pre[128] = "";
			if (!bs[j].has_config)
				continue;
			if (store_backend_config(tx, ps[i].name, bs[j].name, &text, &len))
				continue;
			if (ydoc_load(text, len, "config.yml", &d, err, sizeof(err)) == 0 &&
			    ydoc_root(d) && ydoc_emit(d, ydoc_root(d), &em, &emlen) == 0) {
				bool named = strcmp(bs[j].name, bs[j].type) != 0;
				bool typed = ydoc_map_get(d, ydoc_root(d), "type") != 0;
				const char *bn = yaml_name(bs[j].name, qn, sizeof(qn));
				if (named && typed)
					fmt_cut(pre, sizeof(pre), "name: %s", bn); /* fits: see below */
				else if (named)
					/* fits: a quoted name (< STORE_NAME_MAX + 2), a type (< 32) */
					fmt_cut(pre, sizeof(pre), "name: %s\n    type: %s", bn,
						bs[j].type);
				else if (!typed)
					fmt_cut(pre, sizeof(pre), "type: %s", bs[j].type); /* fits */
				append_item(out, pre[0] ? pre : NULL, em);
			}
			seal_free_secret(em, emlen);
			ydoc_free(d);
			seal_free_secret(text, len);
		}
		free(bs);
	}
	size_t nk = 0;
	struct seal_key keys[SEAL_MAX_KEYS];
	nk = store_user_keys(s, keys, SEAL_MAX_KEYS);
	if (nk) {
		buf_printf(out, "encryption:\n  keys:\n");
		for (size_t k = 0; k < nk; k++) {
			char *b = b64_encode(keys[k].key, SEAL_KEY_LEN);
			buf_printf(out, "  - type: aes\n    name: %s\n    secret: %s\n", keys[k].name,
				   b ? b : "");
			seal_free_secret(b, b ? strlen(b) : 0);
		}
		memset(keys, 0, sizeof(keys));
	}
	render_meta(tx, out, "root/default_permissions", "default_permissions");
	render_meta(tx, out, "root/plugins", "plugins");
out:
	free(ps);
	store_abort(tx);
	return r;
}
