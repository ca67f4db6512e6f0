/* state: see state.h. */
#include "state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/backend.h"
#include "records.h"
#include "offerd.h"
#include "../lib/ydoc.h"

static const char name_rule[] = "names must match ^[a-zA-Z0-9_-]{1,50}$";

void state_note(struct store *s, const char *project, const char *f, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, f);
	vfmt_cut(msg, sizeof(msg), f, ap);
	va_end(ap);
	struct stx *tx = NULL;
	if (store_begin(s, true, &tx))
		return;
	if (store_event(tx, project, "%s", msg)) {
		store_abort(tx);
		return;
	}
	store_commit(tx);
}

static int finish(struct stx *tx, int r, char *err, size_t errlen)
{
	if (r) {
		store_abort(tx);
		if (!err[0])
			fmt_cut(err, errlen, "store: %s", strerror(-r));
		return r;
	}
	r = store_commit(tx);
	if (r)
		fmt_cut(err, errlen, "store: commit failed: %s", strerror(-r));
	return r;
}

int state_project_create(struct store *s, const char *name, char *err, size_t errlen)
{
	struct stx *tx = NULL;
	struct st_project p;
	char safe[80];
	err[0] = '\0';
	if (!name_valid(name)) {
		/* a refused name never becomes a directory: it is user text, shown redacted */
		str_redact(safe, sizeof(safe), name);
		fmt_cut(err, errlen, "mkdir projects/%s refused: %s", safe, name_rule);
		state_note(s, "", "%s", err);
		return -EINVAL;
	}
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	if (store_project_get(tx, name, &p) == 0) {
		fmt_cut(err, errlen, "project %s exists", name);
		store_abort(tx);
		return -EEXIST;
	}
	memset(&p, 0, sizeof(p));
	fmt_cut(p.name, sizeof(p.name), "%s", name); /* fits: name_valid, at most 50 */
	p.mtime = time_now();
	r = store_project_put(tx, &p);
	if (!r)
		r = store_event(tx, "", "project=%s created", name);
	if (!r)
		r = store_event(tx, name, "project=%s created", name);
	return finish(tx, r, err, errlen);
}

int state_project_delete(struct store *s, const char *name, char *err, size_t errlen)
{
	struct stx *tx = NULL;
	struct st_project p;
	err[0] = '\0';
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	r = store_project_get(tx, name, &p);
	if (r) {
		fmt_cut(err, errlen, "no project %s", name);
		store_abort(tx);
		return r;
	}
	r = store_project_del(tx, name);
	if (r == -ENOTEMPTY) {
		fmt_cut(err, errlen, "rmdir projects/%s refused: the project still has backends",
			name);
		store_abort(tx);
		state_note(s, "", "%s", err);
		return r;
	}
	if (!r)
		r = store_event(tx, "", "project=%s deleted", name);
	return finish(tx, r, err, errlen);
}

int state_backend_create(struct store *s, const char *project, const char *name, char *err,
			 size_t errlen)
{
	struct stx *tx = NULL;
	struct st_project p;
	struct st_backend b;
	char safe[80];
	err[0] = '\0';
	str_redact(safe, sizeof(safe), name);
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	if (store_project_get(tx, project, &p) != 0) {
		store_abort(tx);
		fmt_cut(err, errlen, "no project %s", project);
		return -ENOENT;
	}
	if (!name_valid(name)) {
		store_abort(tx);
		fmt_cut(err, errlen,
			"mkdir backends/%s refused: %s (a backend directory is a type, "
			"e.g. aws, or a name whose config.yml sets type:)",
			safe, name_rule);
		state_note(s, project, "%s", err);
		return -EINVAL;
	}
	if (store_backend_get(tx, project, name, &b) == 0) {
		store_abort(tx);
		fmt_cut(err, errlen, "backend %s exists", name);
		return -EEXIST;
	}
	memset(&b, 0, sizeof(b));
	/* fits: a project that exists, a name checked above (name_valid) */
	fmt_cut(b.project, sizeof(b.project), "%s", project);
	fmt_cut(b.name, sizeof(b.name), "%s", name);
	b.dir_mtime = time_now();
	b.mtime = b.dir_mtime;
	r = store_backend_put(tx, &b, NULL, 0, NULL, 0);
	if (!r)
		r = store_event(tx, project, "backend=%s created%s", name,
				backend_type_known(name) ? ""
						    : " (a named backend: its config.yml must set type:)");
	return finish(tx, r, err, errlen);
}

int state_backend_delete(struct store *s, const char *project, const char *name, char *err,
			 size_t errlen)
{
	struct stx *tx = NULL;
	struct st_backend b;
	err[0] = '\0';
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	r = store_backend_get(tx, project, name, &b);
	if (r) {
		store_abort(tx);
		fmt_cut(err, errlen, "no backend %s", name);
		return r;
	}
	if (b.has_config) {
		store_abort(tx);
		fmt_cut(err, errlen, "rmdir backends/%s refused: remove its config.yml first",
			name);
		state_note(s, project, "%s", err);
		return -ENOTEMPTY;
	}
	r = store_backend_del(tx, project, name);
	if (!r)
		r = store_event(tx, project, "backend=%s deleted", name);
	return finish(tx, r, err, errlen);
}

/* Validate a backend config document. On success res is filled (caller frees). */
static int validate_backend(const char *project, const char *name, const char *data, size_t len,
			    const struct fileref_ctx *ctx, struct schema_result *res, char *err,
			    size_t errlen)
{
	char fname[256];
	struct ydoc *d = NULL;
	/* shown in messages; fits: two names < STORE_NAME_MAX */
	fmt_cut(fname, sizeof(fname), "projects/%s/backends/%s/config.yml", project, name);
	int r = ydoc_load(data, len, fname, &d, err, errlen);
	if (r)
		return r;
	int root = ydoc_root(d);
	if (!root) {
		fmt_cut(err, errlen,
			"%s:1: the file is empty: write the backend's settings (type:, creds: ...)",
			fname);
		r = -EINVAL;
	} else if (ydoc_kind(d, root) != Y_MAP) {
		r = ydoc_err(d, root, NULL, err, errlen, "expected a mapping of backend settings");
	} else {
		r = schema_validate(d, root, name, ctx, res, err, errlen);
	}
	ydoc_free(d);
	return r;
}

void state_backend_reject(struct store *s, const char *project, const char *name,
			  const char *why)
{
	struct stx *tx = NULL;
	struct st_backend b;
	if (store_begin(s, true, &tx))
		return;
	if (store_backend_get(tx, project, name, &b) == 0) {
		fmt_cut(b.last_error, sizeof(b.last_error), "%s", why);
		b.last_error_at = time(NULL);
		if (store_backend_put(tx, &b, NULL, 0, NULL, 0)) {
			store_abort(tx);
			return;
		}
	}
	if (store_event(tx, project, "backend=%s config.yml rejected: %s", name, why)) {
		store_abort(tx);
		return;
	}
	store_commit(tx);
}

int state_backend_commit(struct store *s, const char *project, const char *name,
			 const char *data, size_t len, const struct timespec *mtime,
			 const struct fileref_ctx *ctx, char *err, size_t errlen)
{
	struct schema_result res;
	struct stx *tx = NULL;
	struct st_backend b;
	err[0] = '\0';
	memset(&res, 0, sizeof(res));
	int r = validate_backend(project, name, data, len, ctx, &res, err, errlen);
	if (r) {
		if (r == -ENOMEM)
			return r;
		state_backend_reject(s, project, name, err);
		return r;
	}
	r = store_begin(s, true, &tx);
	if (r)
		goto out;
	r = store_backend_get(tx, project, name, &b);
	if (r) {
		fmt_cut(err, errlen, "backend %s no longer exists", name);
		goto out;
	}
	bool had = b.has_config;
	char digest[65];
	store_digest(s, data, len, digest);
	if (b.digest[0] && !strcmp(b.digest, digest) && !strcmp(b.type, res.type) && had) {
		/* the same bytes again (a repeated cp): not a change; keep the record, including
		 * the last refusal, and only take the new mtime */
		b.mtime = mtime ? *mtime : time_now();
		r = store_backend_put(tx, &b, NULL, 0, NULL, 0);
		r = finish(tx, r, err, errlen);
		tx = NULL;
		goto out;
	}
	/* the bytes removed by the last unlink, put back (vim restoring its backup after a
	 * refused save unlinks config.yml and renames the backup over it): a restore */
	bool restored = !had && b.digest[0] && !strcmp(b.digest, digest);
	fmt_cut(b.type, sizeof(b.type), "%s", res.type); /* fits: a known backend type */
	b.has_config = true;
	b.mtime = mtime ? *mtime : time_now();
	b.committed_at = time(NULL);
	if (!restored) {
		b.last_error[0] = '\0';
		b.last_error_at = 0;
	}
	r = store_backend_put(tx, &b, data, len, res.att, res.natt);
	if (!r)
		r = store_event(tx, project, "backend=%s config.yml %s (type %s, %zu bytes%s)", name,
				restored ? "restored" : had ? "updated" : "created", res.type, len,
				res.natt ? ", referenced files sealed" : "");
	r = finish(tx, r, err, errlen);
	tx = NULL;
out:
	store_abort(tx);
	schema_result_free(&res);
	return r;
}

int state_backend_unlink_config(struct store *s, const char *project, const char *name,
				char *err, size_t errlen)
{
	struct stx *tx = NULL;
	struct st_backend b;
	err[0] = '\0';
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	r = store_backend_get(tx, project, name, &b);
	if (r || !b.has_config) {
		store_abort(tx);
		fmt_cut(err, errlen, "no config.yml");
		return -ENOENT;
	}
	b.has_config = false;
	b.size = 0;
	b.type[0] = '\0';
	b.natt = 0;
	/* last_error and the digest stay: see state_backend_commit's restore */
	r = store_backend_drop_config(tx, project, name);
	if (!r)
		r = store_backend_put(tx, &b, NULL, 0, NULL, 0);
	if (!r)
		r = store_event(tx, project, "backend=%s config.yml removed", name);
	return finish(tx, r, err, errlen);
}

int state_backend_set_mtime(struct store *s, const char *project, const char *name, bool dir,
			    struct timespec mtime)
{
	struct stx *tx = NULL;
	struct st_backend b;
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	r = store_backend_get(tx, project, name, &b);
	if (!r) {
		if (dir)
			b.dir_mtime = mtime;
		else
			b.mtime = mtime;
		r = store_backend_put(tx, &b, NULL, 0, NULL, 0);
	}
	if (r) {
		store_abort(tx);
		return r;
	}
	return store_commit(tx);
}

int state_project_set_mtime(struct store *s, const char *project, struct timespec mtime)
{
	struct stx *tx = NULL;
	struct st_project p;
	int r = store_begin(s, true, &tx);
	if (r)
		return r;
	r = store_project_get(tx, project, &p);
	if (!r) {
		p.mtime = mtime;
		r = store_project_put(tx, &p);
	}
	if (r) {
		store_abort(tx);
		return r;
	}
	return store_commit(tx);
}

static void status_time(struct buf *out, const char *key, double t)
{
	char ts[32];
	if (t <= 0) {
		buf_printf(out, "  %s: null\n", key);
		return;
	}
	time_iso((time_t)t, ts, sizeof(ts));
	buf_printf(out, "  %s: %s\n", key, ts);
}

/* The offers cache of the backend (core/offerd.h). */
static void status_offers(struct buf *out, const struct st_backend *b,
			  const struct offers_meta *m)
{
	const struct backend_ops *ops = b->has_config ? backend_find(b->type) : NULL;
	if (!ops || !ops->offers) {
		buf_printf(out, "offers: null\n");
		return;
	}
	if (strcmp(m->digest, b->digest)) {
		buf_printf(out, "offers:\n  state: fetching\n");
		return;
	}
	const char *err = m->error;
	bool have = m->data_at > 0;
	buf_printf(out, "offers:\n  state: %s\n  count: %.0f\n",
		   err[0] ? (have ? "stale" : "failed") : "fresh", m->count);
	buf_printf(out, "  source: ");
	buf_yaml_str(out, m->source);
	buf_printf(out, "\n  version: ");
	buf_yaml_str(out, m->version);
	buf_printf(out, "\n  skipped_rows: %.0f\n  ttl_seconds: %d\n", m->skipped,
		   backend_type_find(b->type)->offers_ttl);
	status_time(out, "fetched_at", m->data_at);
	status_time(out, "checked_at", m->checked_at);
	if (err[0]) {
		status_time(out, "error_at", m->error_at);
		buf_printf(out, "  error: ");
		buf_yaml_str(out, err);
		buf_printf(out, "\n");
	} else {
		buf_printf(out, "  error: null\n");
	}
}

int state_backend_status(struct store *s, const char *project, const char *name,
			 struct buf *out)
{
	struct stx *tx = NULL;
	struct st_backend b;
	char ts[32];
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	r = store_backend_get(tx, project, name, &b);
	struct offers_meta meta, *m = &meta;
	offers_meta_decode(NULL, m);
	if (!r) {
		offers_meta_free(m);
		(void)offerd_meta(tx, project, name, m);
	}
	store_abort(tx);
	if (r) {
		offers_meta_free(m);
		return r;
	}
	buf_printf(out, "# fleetfs backend status (format: docs/filesystem.md#status)\n");
	if (!b.has_config) {
		buf_printf(out, "state: unconfigured\n");
		buf_printf(out, "type: %s\n", backend_type_known(name) ? name : "null");
		buf_printf(out, "reason: ");
		buf_yaml_str(out, backend_type_known(name)
					  ? "no config.yml yet"
					  : "no config.yml yet; a named backend's config.yml must set type:");
		buf_printf(out, "\n");
	} else {
		/* the credential check runs with each offers refresh (core/offerd.c) */
		const char *cred = !strcmp(m->digest, b.digest) ? m->cred : "";
		const struct backend_ops *ops = backend_find(b.type);
		time_iso((time_t)b.committed_at, ts, sizeof(ts));
		if (!strcmp(cred, "valid") || !strcmp(cred, "invalid")) {
			buf_printf(out, "state: %s\ntype: %s\nreason: ", cred, b.type);
			buf_yaml_str(out, !strcmp(cred, "valid")
						  ? "the provider accepted the credentials"
						  : m->cred_reason);
		} else {
			buf_printf(out, "state: %s\ntype: %s\nreason: ",
				   ops && ops->check ? "checking" : "unchecked", b.type);
			buf_yaml_str(out, ops && ops->check
						  ? (cred[0] ? m->cred_reason
							     : "the credentials are being checked")
						  : "the configuration is valid; fleetfs does not check "
						    "credentials against this provider yet");
		}
		buf_printf(out, "\n");
		buf_printf(out, "config:\n  size: %llu\n  committed_at: %s\n",
			   (unsigned long long)b.size, ts);
		buf_printf(out, "  sealed_files: %u\n", b.natt);
	}
	if (m->cred_at > 0 && !strcmp(m->digest, b.digest)) {
		time_iso((time_t)m->cred_at, ts, sizeof(ts));
		buf_printf(out, "checked_at: %s\nregions: null\n", ts);
	} else {
		buf_printf(out, "checked_at: null\nregions: null\n");
	}
	if (b.last_error[0]) {
		time_iso((time_t)b.last_error_at, ts, sizeof(ts));
		buf_printf(out, "last_error:\n  at: %s\n  message: ", ts);
		buf_yaml_str(out, b.last_error);
		buf_printf(out, "\n");
	} else {
		buf_printf(out, "last_error: null\n");
	}
	status_offers(out, &b, m);
	offers_meta_free(m);
	return 0;
}
