/* store: see store.h for the layout. */
#include "store.h"
#include "../lib/enc.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MAP_SIZE (4ULL << 30)

struct store {
	char *dir;
	int lockfd;
	MDB_env *env;
	MDB_dbi meta, projects, backends, secrets, events, fleets, instances, offers;
	pthread_mutex_t ring_lock;
	struct seal_key local;
	struct seal_ring ring; /* user keys first, then local */
	store_hook_fn hook;
	void *hook_arg;
	/* the state filesystem ran out of space (or the map is full): what to tell the user,
	 * until a write commits again (store_health) */
	pthread_mutex_t health_lock;
	char health[256];
	time_t health_since;     /* when it began */
	long long health_logged; /* CLOCK_MONOTONIC seconds of the last log line */
};

#define STX_TOUCH_MAX 8

struct stx {
	struct store *s;
	MDB_txn *txn;
	bool write;
	bool ring_changed;
	struct seal_ring ring; /* the ring this transaction seals and opens with */
	char touched[STX_TOUCH_MAX][STORE_NAME_MAX]; /* projects whose journal/backends changed */
	size_t ntouched;
	bool touched_all;
	int space_err; /* a write of this transaction failed for want of space */
	bool health_changed; /* store_health changed: every events and status file shows it */
};

static void touch(struct stx *tx, const char *project)
{
	for (size_t i = 0; i < tx->ntouched; i++)
		if (!strcmp(tx->touched[i], project))
			return;
	/* full, or a name too long to keep ("<project>:<fleet>"): say everything changed */
	if (tx->ntouched == STX_TOUCH_MAX ||
	    fmt(tx->touched[tx->ntouched], STORE_NAME_MAX, "%s", project)) {
		tx->touched_all = true;
		return;
	}
	tx->ntouched++;
}

void store_set_hook(struct store *s, store_hook_fn fn, void *arg)
{
	s->hook = fn;
	s->hook_arg = arg;
}

static int mdb_errno(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_KEYEXIST:
		return -EEXIST;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

/* ---- a full state filesystem ----
 *
 * Out of space shows up as MDB_MAP_FULL (the 4 GiB map), ENOSPC or EDQUOT from a write, or
 * later as MDB_BAD_TXN / EIO from a transaction that already failed one. All of them are
 * ENOSPC to the caller, never EIO; the reason is kept in memory (the journal can't be written
 * either) and shown by the FUSE face in events and status, and logged. Reads go on. */

static long long mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Returns whether the message changed (the caller runs the hook once its transaction is
 * over: the hook may take locks that a writer waiting for ours holds). */
static bool health_set(struct store *s, const char *msg)
{
	bool changed, log;
	pthread_mutex_lock(&s->health_lock);
	changed = strcmp(s->health, msg) != 0;
	log = changed || mono_s() - s->health_logged >= 60;
	if (changed) {
		if (!s->health[0])
			s->health_since = time(NULL);
		fmt_cut(s->health, sizeof(s->health), "%s", msg);
	}
	if (log)
		s->health_logged = mono_s();
	pthread_mutex_unlock(&s->health_lock);
	if (log)
		fprintf(stderr, "fleetfs: %s\n", msg);
	return changed;
}

static bool health_clear(struct store *s)
{
	pthread_mutex_lock(&s->health_lock);
	bool was = s->health[0] != '\0';
	s->health[0] = '\0';
	pthread_mutex_unlock(&s->health_lock);
	if (was)
		fprintf(stderr, "fleetfs: %s: writes commit again\n", s->dir);
	return was;
}

/* The errno of a failed write (rc from LMDB) in tx; records a space problem. */
static int write_errno(struct stx *tx, int rc)
{
	int r = mdb_errno(rc);
	struct store *s = tx->s;
	struct statvfs vfs;
	unsigned long long avail = 0;
	bool full = rc == MDB_MAP_FULL || r == -ENOSPC || r == -EDQUOT;
	if (!full && (rc == MDB_BAD_TXN || r == -EIO) && tx->space_err)
		full = true;
	if (statvfs(s->dir, &vfs) == 0) {
		avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
		if (!full && (rc == MDB_BAD_TXN || r == -EIO) && avail < (1ULL << 20))
			full = true; /* a write that failed earlier, for want of space */
	}
	if (!full)
		return r;
	tx->space_err = 1;
	char msg[256];
	if (rc == MDB_MAP_FULL)
		fmt_cut(msg, sizeof(msg),
			"state dir full: the store reached its map size (%llu MiB) in %s; remove "
			"projects or fleets you no longer need",
			MAP_SIZE >> 20, s->dir);
	else
		fmt_cut(msg, sizeof(msg),
			"state dir full: %llu MiB free on %s; writes fail with ENOSPC until space "
			"is "
			"freed there (reads go on)",
			avail >> 20, s->dir);
	if (health_set(s, msg))
		tx->health_changed = true;
	return -ENOSPC;
}

int store_health(struct store *s, char *out, size_t n, time_t *since)
{
	pthread_mutex_lock(&s->health_lock);
	fmt_cut(out, n, "%s", s->health);
	if (since)
		*since = s->health_since;
	pthread_mutex_unlock(&s->health_lock);
	return out[0] != '\0';
}

static MDB_val val_str(const char *s)
{
	return (MDB_val){.mv_size = strlen(s), .mv_data = (void *)s};
}

static int kv_get(struct stx *tx, MDB_dbi dbi, const char *key, MDB_val *v)
{
	MDB_val k = val_str(key);
	return mdb_errno(mdb_get(tx->txn, dbi, &k, v));
}

static int kv_put(struct stx *tx, MDB_dbi dbi, const char *key, const void *p, size_t n)
{
	MDB_val k = val_str(key), v = {.mv_size = n, .mv_data = (void *)p};
	int rc = mdb_put(tx->txn, dbi, &k, &v, 0);
	return rc ? write_errno(tx, rc) : 0;
}

static int kv_del(struct stx *tx, MDB_dbi dbi, const char *key)
{
	MDB_val k = val_str(key);
	int rc = mdb_del(tx->txn, dbi, &k, NULL);
	return rc == MDB_NOTFOUND || !rc ? 0 : write_errno(tx, rc);
}

/* Delete every key starting with prefix. */
static int kv_del_prefix(struct stx *tx, MDB_dbi dbi, const char *prefix)
{
	MDB_cursor *c = NULL;
	size_t pl = strlen(prefix);
	int rc = mdb_cursor_open(tx->txn, dbi, &c);
	if (rc)
		return mdb_errno(rc);
	MDB_val k = val_str(prefix), v;
	/* Re-seek after every delete: simple, and immune to cursor-after-delete subtleties. */
	for (;;) {
		k = val_str(prefix);
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc || k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0)
			break;
		rc = mdb_cursor_del(c, 0);
		if (rc)
			break;
	}
	mdb_cursor_close(c);
	return (rc == 0 || rc == MDB_NOTFOUND) ? 0 : write_errno(tx, rc);
}

/* ---- JSON helpers ---- */

static cJSON *ts_json(struct timespec ts)
{
	cJSON *a = cJSON_CreateArray();
	cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ts.tv_sec));
	cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ts.tv_nsec));
	return a;
}

static struct timespec json_ts(const cJSON *a)
{
	struct timespec ts = {0, 0};
	if (cJSON_IsArray(a) && cJSON_GetArraySize(a) == 2) {
		ts.tv_sec = (time_t)cJSON_GetArrayItem(a, 0)->valuedouble;
		ts.tv_nsec = (long)cJSON_GetArrayItem(a, 1)->valuedouble;
	}
	return ts;
}

static cJSON *parse_val(const MDB_val *v)
{
	return cJSON_ParseWithLength(v->mv_data, v->mv_size);
}

static int put_json(struct stx *tx, MDB_dbi dbi, const char *key, cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	if (!s)
		return -ENOMEM;
	int r = kv_put(tx, dbi, key, s, strlen(s));
	free(s);
	return r;
}

static const char *json_str(const cJSON *o, const char *k)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(x) ? x->valuestring : "";
}

static double json_num(const cJSON *o, const char *k)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

/* ---- sealing inside a transaction ---- */

static int put_sealed(struct stx *tx, const char *key, const void *p, size_t n)
{
	char *sealed = seal_seal(&tx->ring, key, p, n);
	if (!sealed)
		return -ENOMEM;
	int r = kv_put(tx, tx->s->secrets, key, sealed, strlen(sealed));
	free(sealed);
	return r;
}

static int get_sealed(struct stx *tx, const char *key, char **out, size_t *len)
{
	MDB_val v;
	int r = kv_get(tx, tx->s->secrets, key, &v);
	if (r)
		return r;
	char *s = xstrndup(v.mv_data, v.mv_size);
	r = seal_open(&tx->ring, key, s, out, len);
	free(s);
	return r;
}

/* ---- open / close ---- */

static int mkdir_p(const char *dir)
{
	char tmp[4096];
	if (fmt(tmp, sizeof(tmp), "%s", dir))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int load_user_keys(struct store *s, struct stx *tx)
{
	char *plain = NULL;
	size_t len = 0;
	struct seal_ring local = {.n = 1};
	local.keys[0] = s->local;
	MDB_val v;
	int r = kv_get(tx, s->meta, "keys", &v);
	s->ring.n = 0;
	if (r == -ENOENT)
		goto done;
	if (r)
		return r;
	char *sealed = xstrndup(v.mv_data, v.mv_size);
	r = seal_open(&local, "meta/keys", sealed, &plain, &len);
	free(sealed);
	if (r)
		return r;
	cJSON *arr = cJSON_ParseWithLength(plain, len);
	seal_free_secret(plain, len);
	if (!cJSON_IsArray(arr)) {
		cJSON_Delete(arr);
		return -EINVAL;
	}
	const cJSON *it;
	cJSON_ArrayForEach(it, arr)
	{
		if (s->ring.n >= SEAL_MAX_KEYS - 1)
			break;
		if (seal_key_from_b64(json_str(it, "name"), json_str(it, "secret"),
				      &s->ring.keys[s->ring.n]) == 0)
			s->ring.n++;
	}
	cJSON_Delete(arr);
done:
	s->ring.keys[s->ring.n++] = s->local;
	return 0;
}

static int env_open(struct store *s, char *err, size_t errlen)
{
	MDB_txn *txn = NULL;
	int rc = mdb_env_create(&s->env);
	if (rc)
		goto fail;
	mdb_env_set_maxdbs(s->env, 16);
	mdb_env_set_mapsize(s->env, MAP_SIZE);
	rc = mdb_env_open(s->env, s->dir, MDB_NOTLS, 0600);
	if (rc)
		goto fail;
	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc)
		goto fail;
	if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) ||
	    (rc = mdb_dbi_open(txn, "projects", MDB_CREATE, &s->projects)) ||
	    (rc = mdb_dbi_open(txn, "backends", MDB_CREATE, &s->backends)) ||
	    (rc = mdb_dbi_open(txn, "secrets", MDB_CREATE, &s->secrets)) ||
	    (rc = mdb_dbi_open(txn, "events", MDB_CREATE, &s->events)) ||
	    (rc = mdb_dbi_open(txn, "fleets", MDB_CREATE, &s->fleets)) ||
	    (rc = mdb_dbi_open(txn, "instances", MDB_CREATE, &s->instances)) ||
	    (rc = mdb_dbi_open(txn, "offers", MDB_CREATE, &s->offers)))
		goto fail;
	struct stx tx = {.s = s, .txn = txn, .write = true};
	MDB_val v;
	int r = kv_get(&tx, s->meta, "schema", &v);
	if (r == -ENOENT) {
		char one[16];
		fmt_cut(one, sizeof(one), "%d", STORE_SCHEMA); /* fits: an int */
		struct timespec now = time_now();
		r = kv_put(&tx, s->meta, "schema", one, strlen(one));
		if (!r) {
			struct st_project p = {.mtime = now};
			fmt_cut(p.name, sizeof(p.name), "main"); /* fits */
			r = store_project_put(&tx, &p);
		}
		if (r) {
			rc = -r;
			goto fail;
		}
	} else if (r == 0) {
		char tmp[32];
		long long ver = 0;
		fmt_cut(tmp, sizeof(tmp), "%.*s", (int)(v.mv_size < 31 ? v.mv_size : 31),
			(const char *)v.mv_data); /* fits: at most 31 chars */
		if (num_parse_ll(tmp, 1, 1000000, &ver) != 0) {
			fmt_cut(err, errlen, "%s: store has an unreadable schema version", s->dir);
			mdb_txn_abort(txn);
			mdb_env_close(s->env);
			s->env = NULL;
			return -EPROTO;
		}
		if (ver > STORE_SCHEMA) {
			fmt_cut(err, errlen,
				"%s: store schema version %lld is newer than this fleetfs supports "
				"(%d); "
				"refusing to mount it (upgrade fleetfs)",
				s->dir, ver, STORE_SCHEMA);
			mdb_txn_abort(txn);
			mdb_env_close(s->env);
			s->env = NULL;
			return -EPROTO;
		}
	} else {
		rc = -r;
		goto fail;
	}
	r = load_user_keys(s, &tx);
	if (r) {
		fmt_cut(err, errlen, "%s: cannot open the stored encryption keys with %s/key: %s",
			s->dir, s->dir, strerror(-r));
		mdb_txn_abort(txn);
		mdb_env_close(s->env);
		s->env = NULL;
		return r;
	}
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc)
		goto fail;
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	fmt_cut(err, errlen, "%s: store: %s", s->dir, mdb_strerror(rc));
	if (s->env)
		mdb_env_close(s->env);
	s->env = NULL;
	return mdb_errno(rc) ? mdb_errno(rc) : -EIO;
}

/* The files of the state directory must be what they seem: LMDB opens data.mdb and lock.mdb
 * itself (following links), so a link planted there is refused before it does. */
static int state_files_plain(const char *dir, char *err, size_t errlen)
{
	static const char *const names[] = {"data.mdb", "lock.mdb", "key", "lock"};
	char path[4096];
	struct stat st;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (fmt(path, sizeof(path), "%s/%s", dir, names[i]))
			return -ENAMETOOLONG;
		if (lstat(path, &st) != 0) {
			if (errno == ENOENT)
				continue;
			fmt_cut(err, errlen, "%s: %s", path, strerror(errno));
			return -errno;
		}
		if (!S_ISREG(st.st_mode)) {
			fmt_cut(err, errlen,
				"%s: %s; fleetfs only uses regular files here: remove it", path,
				S_ISLNK(st.st_mode) ? "is a symbolic link"
						    : "is not a regular file");
			return -EPERM;
		}
		if (st.st_uid != geteuid()) {
			fmt_cut(err, errlen, "%s: belongs to uid %u, not to you", path,
				(unsigned)st.st_uid);
			return -EPERM;
		}
	}
	return 0;
}

int store_open(const char *dir, struct store **out, char *err, size_t errlen)
{
	struct store *s = xcalloc(1, sizeof(*s));
	char path[4096];
	int r;
	s->lockfd = -1;
	s->dir = xstrdup(dir);
	pthread_mutex_init(&s->ring_lock, NULL);
	pthread_mutex_init(&s->health_lock, NULL);
	*out = NULL;
	r = mkdir_p(dir);
	if (r) {
		fmt_cut(err, errlen, "%s: cannot create the state directory: %s", dir,
			strerror(-r));
		goto fail;
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		r = -ENOTDIR;
		fmt_cut(err, errlen, "%s: not a directory", dir);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		r = -EACCES;
		fmt_cut(err, errlen, "%s: the state directory belongs to uid %u, not to you", dir,
			(unsigned)st.st_uid);
		goto fail;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		/* as ssh with ~/.ssh: whoever can write here can swap our files for links */
		r = -EPERM;
		fmt_cut(err, errlen,
			"%s: the state directory is writable by %s (mode %04o); it holds your "
			"encrypted credentials and their key: chmod 700 it",
			dir, (st.st_mode & S_IWOTH) ? "everyone" : "its group",
			(unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (access(dir, R_OK | W_OK | X_OK) != 0) {
		r = -errno;
		fmt_cut(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	r = state_files_plain(dir, err, errlen);
	if (r)
		goto fail;
	if (fmt(path, sizeof(path), "%s/lock", dir)) {
		r = -ENAMETOOLONG;
		fmt_cut(err, errlen, "%s: path too long", dir);
		goto fail;
	}
	s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (s->lockfd < 0) {
		r = -errno;
		fmt_cut(err, errlen, "%s: %s", path,
			errno == ELOOP ? "is a symbolic link; remove it" : strerror(errno));
		goto fail;
	}
	if (fstat(s->lockfd, &st) != 0 || !S_ISREG(st.st_mode)) {
		r = -EPERM;
		fmt_cut(err, errlen, "%s: not a regular file; remove it", path);
		goto fail;
	}
	/* a daemon that was just unmounted may still be closing its store: wait a little */
	int locked = -1;
	for (int i = 0; i < 30 && (locked = flock(s->lockfd, LOCK_EX | LOCK_NB)) != 0; i++)
		usleep(100 * 1000);
	if (locked != 0) {
		char pid[32] = "";
		ssize_t n = pread(s->lockfd, pid, sizeof(pid) - 1, 0);
		if (n > 0)
			pid[n] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		r = -EBUSY;
		fmt_cut(err, errlen,
			"%s: the state directory is in use by another fleetfs (pid %s)", dir,
			n > 0 ? pid : "?");
		goto fail;
	}
	if (fmt(path, sizeof(path), "%s/key", dir)) {
		r = -ENAMETOOLONG;
		fmt_cut(err, errlen, "%s: path too long", dir);
		goto fail;
	}
	r = seal_keyfile(path, 1, &s->local, err, errlen);
	if (r)
		goto fail;
	r = env_open(s, err, errlen);
	if (r)
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return r;
}

void store_detach(struct store *s)
{
	if (s && s->env) {
		mdb_env_close(s->env);
		s->env = NULL;
	}
}

int store_reopen(struct store *s, char *err, size_t errlen)
{
	char pid[32];
	fmt_cut(pid, sizeof(pid), "%ld\n", (long)getpid()); /* fits: a long */
	if (ftruncate(s->lockfd, 0) == 0 && pwrite(s->lockfd, pid, strlen(pid), 0) < 0)
		(void)0; /* the pid is only informative */
	return env_open(s, err, errlen);
}

void store_close(struct store *s)
{
	if (!s)
		return;
	store_detach(s);
	if (s->lockfd >= 0)
		close(s->lockfd);
	pthread_mutex_destroy(&s->ring_lock);
	pthread_mutex_destroy(&s->health_lock);
	memset(&s->local, 0, sizeof(s->local));
	memset(&s->ring, 0, sizeof(s->ring));
	free(s->dir);
	free(s);
}

const char *store_dir(const struct store *s)
{
	return s->dir;
}

/* ---- transactions ---- */

int store_begin(struct store *s, bool write, struct stx **out)
{
	struct stx *tx = xcalloc(1, sizeof(*tx));
	tx->s = s;
	tx->write = write;
	pthread_mutex_lock(&s->ring_lock);
	tx->ring = s->ring;
	pthread_mutex_unlock(&s->ring_lock);
	int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &tx->txn);
	if (rc) {
		free(tx);
		*out = NULL;
		return mdb_errno(rc);
	}
	*out = tx;
	return 0;
}

int store_commit(struct stx *tx)
{
	int rc = mdb_txn_commit(tx->txn);
	int r = rc ? write_errno(tx, rc) : 0;
	if (r == 0 && tx->write && health_clear(tx->s))
		tx->health_changed = true;
	if (tx->health_changed && tx->s->hook)
		tx->s->hook(tx->s->hook_arg, NULL); /* drop every cached events and status size */
	if (r == 0 && tx->ring_changed) {
		pthread_mutex_lock(&tx->s->ring_lock);
		tx->s->ring = tx->ring;
		pthread_mutex_unlock(&tx->s->ring_lock);
	}
	if (r == 0 && tx->s->hook) {
		if (tx->touched_all)
			tx->s->hook(tx->s->hook_arg, NULL);
		else
			for (size_t i = 0; i < tx->ntouched; i++)
				tx->s->hook(tx->s->hook_arg, tx->touched[i]);
	}
	memset(&tx->ring, 0, sizeof(tx->ring));
	free(tx);
	return r;
}

void store_abort(struct stx *tx)
{
	if (!tx)
		return;
	mdb_txn_abort(tx->txn);
	if (tx->health_changed && tx->s->hook)
		tx->s->hook(tx->s->hook_arg, NULL);
	memset(&tx->ring, 0, sizeof(tx->ring));
	free(tx);
}

/* ---- projects ---- */

static int project_from(const char *name, size_t nlen, const MDB_val *v, struct st_project *out)
{
	cJSON *j = parse_val(v);
	if (!j)
		return -EIO;
	memset(out, 0, sizeof(*out));
	if (fmt(out->name, sizeof(out->name), "%.*s", (int)nlen, name)) {
		cJSON_Delete(j);
		return -ENAMETOOLONG; /* not a name this store writes; listings skip it */
	}
	out->mtime = json_ts(cJSON_GetObjectItemCaseSensitive(j, "mt"));
	cJSON_Delete(j);
	return 0;
}

int store_project_get(struct stx *tx, const char *name, struct st_project *out)
{
	MDB_val v;
	int r = kv_get(tx, tx->s->projects, name, &v);
	if (r)
		return r;
	return project_from(name, strlen(name), &v, out);
}

int store_project_put(struct stx *tx, const struct st_project *p)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddItemToObject(j, "mt", ts_json(p->mtime));
	int r = put_json(tx, tx->s->projects, p->name, j);
	cJSON_Delete(j);
	return r;
}

static int events_clear(struct stx *tx, const char *project);

int store_project_del(struct stx *tx, const char *name)
{
	size_t n = 0;
	struct st_backend *arr = NULL;
	int r = store_backend_list(tx, name, &arr, &n);
	free(arr);
	if (r)
		return r;
	if (n)
		return -ENOTEMPTY;
	char fprefix[STORE_NAME_MAX + 2];
	if (fmt(fprefix, sizeof(fprefix), "%s/", name))
		return -ENAMETOOLONG;
	cJSON *fl = NULL;
	r = store_obj_list(tx, SDB_FLEETS, fprefix, &fl);
	bool has_fleets = cJSON_GetArraySize(fl) > 0;
	cJSON_Delete(fl);
	if (r)
		return r;
	if (has_fleets)
		return -ENOTEMPTY;
	r = kv_del(tx, tx->s->projects, name);
	if (!r) {
		char sk[STORE_NAME_MAX + 4];
		/* fits: name made fprefix, which is 2 shorter */
		fmt_cut(sk, sizeof(sk), "p/%s/", name);
		r = kv_del_prefix(tx, tx->s->secrets, sk);
	}
	if (!r)
		r = events_clear(tx, name);
	return r;
}

int store_project_list(struct stx *tx, struct st_project **arr, size_t *n)
{
	MDB_cursor *c = NULL;
	MDB_val k, v;
	size_t cap = 16, cnt = 0;
	struct st_project *a = xmalloc(cap * sizeof(*a));
	int rc = mdb_cursor_open(tx->txn, tx->s->projects, &c);
	if (rc) {
		free(a);
		return mdb_errno(rc);
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (cnt == cap)
			a = xrealloc(a, (cap *= 2) * sizeof(*a));
		if (project_from(k.mv_data, k.mv_size, &v, &a[cnt]) == 0)
			cnt++;
	}
	mdb_cursor_close(c);
	*arr = a;
	*n = cnt;
	return rc == MDB_NOTFOUND ? 0 : mdb_errno(rc);
}

/* ---- backends ---- */

static int backend_key(char *dst, size_t n, const char *project, const char *name)
{
	return fmt(dst, n, "%s/%s", project, name);
}

static int backend_from(const MDB_val *k, const MDB_val *v, struct st_backend *out)
{
	cJSON *j = parse_val(v);
	if (!j)
		return -EIO;
	memset(out, 0, sizeof(*out));
	const char *key = k->mv_data;
	const char *slash = memchr(key, '/', k->mv_size);
	if (!slash) {
		cJSON_Delete(j);
		return -EIO;
	}
	/* names and a type this store does not write: listings skip the record */
	if (fmt(out->project, sizeof(out->project), "%.*s", (int)(slash - key), key) ||
	    fmt(out->name, sizeof(out->name), "%.*s", (int)(k->mv_size - (size_t)(slash - key) - 1),
		slash + 1) ||
	    fmt(out->type, sizeof(out->type), "%s", json_str(j, "type"))) {
		cJSON_Delete(j);
		return -ENAMETOOLONG;
	}
	out->has_config = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "cfg"));
	out->size = (uint64_t)json_num(j, "size");
	out->mtime = json_ts(cJSON_GetObjectItemCaseSensitive(j, "mt"));
	out->dir_mtime = json_ts(cJSON_GetObjectItemCaseSensitive(j, "dmt"));
	out->committed_at = (int64_t)json_num(j, "cat");
	fmt_cut(out->last_error, sizeof(out->last_error), "%s", json_str(j, "err"));
	out->last_error_at = (int64_t)json_num(j, "errat");
	out->natt = (uint32_t)json_num(j, "natt");
	int r = fmt(out->digest, sizeof(out->digest), "%s", json_str(j, "dg"));
	cJSON_Delete(j);
	return r ? -EIO : 0; /* a digest is 64 hex digits */
}

int store_backend_get(struct stx *tx, const char *project, const char *name,
		      struct st_backend *out)
{
	char key[2 * STORE_NAME_MAX + 2];
	if (backend_key(key, sizeof(key), project, name))
		return -ENAMETOOLONG;
	MDB_val v, k = val_str(key);
	int r = kv_get(tx, tx->s->backends, key, &v);
	if (r)
		return r;
	return backend_from(&k, &v, out);
}

static int put_attach(struct stx *tx, const char *prefix, uint32_t i, const struct attachment *a)
{
	char key[512];
	if (fmt(key, sizeof(key), "%s/att/%u", prefix, i))
		return -ENAMETOOLONG;
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "field", a->field ? a->field : "");
	cJSON_AddStringToObject(j, "path", a->path ? a->path : "");
	cJSON_AddStringToObject(j, "data", a->data ? a->data : "");
	char *s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!s)
		return -ENOMEM;
	int r = put_sealed(tx, key, s, strlen(s));
	seal_free_secret(s, strlen(s));
	return r;
}

int store_backend_put(struct stx *tx, struct st_backend *b, const char *config, size_t len,
		      const struct attachment *att, size_t natt)
{
	char key[2 * STORE_NAME_MAX + 2], prefix[2 * STORE_NAME_MAX + 8];
	int r = 0;
	if (backend_key(key, sizeof(key), b->project, b->name) ||
	    fmt(prefix, sizeof(prefix), "b/%s", key))
		return -ENAMETOOLONG;
	if (config) {
		char ck[sizeof(prefix) + 16], ap[sizeof(prefix) + 8];
		/* fit: prefix fitted, and each has room for what it adds */
		fmt_cut(ap, sizeof(ap), "%s/att/", prefix);
		r = kv_del_prefix(tx, tx->s->secrets, ap);
		if (r)
			return r;
		fmt_cut(ck, sizeof(ck), "%s/config", prefix);
		r = put_sealed(tx, ck, config, len);
		if (r)
			return r;
		for (size_t i = 0; i < natt; i++) {
			r = put_attach(tx, prefix, (uint32_t)i, &att[i]);
			if (r)
				return r;
		}
		b->natt = (uint32_t)natt;
		b->size = len;
		store_digest(tx->s, config, len, b->digest);
	}
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "type", b->type);
	cJSON_AddBoolToObject(j, "cfg", b->has_config);
	cJSON_AddNumberToObject(j, "size", (double)b->size);
	cJSON_AddItemToObject(j, "mt", ts_json(b->mtime));
	cJSON_AddItemToObject(j, "dmt", ts_json(b->dir_mtime));
	cJSON_AddNumberToObject(j, "cat", (double)b->committed_at);
	cJSON_AddStringToObject(j, "err", b->last_error);
	cJSON_AddNumberToObject(j, "errat", (double)b->last_error_at);
	cJSON_AddNumberToObject(j, "natt", b->natt);
	cJSON_AddStringToObject(j, "dg", b->digest);
	r = put_json(tx, tx->s->backends, key, j);
	cJSON_Delete(j);
	touch(tx, b->project);
	return r;
}

void store_digest(struct store *s, const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	out[0] = '\0';
	if (!HMAC(EVP_sha256(), s->local.key, SEAL_KEY_LEN, data, len, md, &mdlen))
		return;
	(void)hex_encode(md, mdlen < 32 ? mdlen : 32, out, 65);
}

int store_backend_drop_config(struct stx *tx, const char *project, const char *name)
{
	char prefix[2 * STORE_NAME_MAX + 8];
	if (fmt(prefix, sizeof(prefix), "b/%s/%s/", project, name))
		return -ENAMETOOLONG;
	touch(tx, project);
	return kv_del_prefix(tx, tx->s->secrets, prefix);
}

int store_backend_del(struct stx *tx, const char *project, const char *name)
{
	char key[2 * STORE_NAME_MAX + 2], prefix[2 * STORE_NAME_MAX + 8];
	if (backend_key(key, sizeof(key), project, name) ||
	    fmt(prefix, sizeof(prefix), "b/%s/", key))
		return -ENAMETOOLONG;
	int r = kv_del_prefix(tx, tx->s->secrets, prefix);
	if (!r)
		r = kv_del(tx, tx->s->backends, key);
	for (const char *k = "md"; !r && *k; k++) { /* its offers cache (store_offers_key) */
		fmt_cut(prefix, sizeof(prefix), "%c/%s", *k, key); /* fits: "b/%s/" did */
		r = kv_del(tx, tx->s->offers, prefix);
		if (r == -ENOENT)
			r = 0;
	}
	touch(tx, project);
	return r;
}

int store_backend_list(struct stx *tx, const char *project, struct st_backend **arr, size_t *n)
{
	MDB_cursor *c = NULL;
	char prefix[STORE_NAME_MAX + 2];
	if (fmt(prefix, sizeof(prefix), "%s/", project))
		return -ENAMETOOLONG;
	size_t pl = strlen(prefix), cap = 8, cnt = 0;
	struct st_backend *a = xmalloc(cap * sizeof(*a));
	int rc = mdb_cursor_open(tx->txn, tx->s->backends, &c);
	if (rc) {
		free(a);
		return mdb_errno(rc);
	}
	MDB_val k = val_str(prefix), v;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	     rc == 0 && k.mv_size >= pl && memcmp(k.mv_data, prefix, pl) == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (cnt == cap)
			a = xrealloc(a, (cap *= 2) * sizeof(*a));
		if (backend_from(&k, &v, &a[cnt]) == 0)
			cnt++;
	}
	mdb_cursor_close(c);
	*arr = a;
	*n = cnt;
	return (rc == 0 || rc == MDB_NOTFOUND) ? 0 : mdb_errno(rc);
}

int store_backend_config(struct stx *tx, const char *project, const char *name, char **out,
			 size_t *len)
{
	char key[3 * STORE_NAME_MAX];
	if (fmt(key, sizeof(key), "b/%s/%s/config", project, name))
		return -ENAMETOOLONG;
	return get_sealed(tx, key, out, len);
}

int store_backend_attach(struct stx *tx, const char *project, const char *name, uint32_t i,
			 struct attachment *a)
{
	char key[3 * STORE_NAME_MAX + 16];
	char *plain = NULL;
	size_t len = 0;
	memset(a, 0, sizeof(*a));
	if (fmt(key, sizeof(key), "b/%s/%s/att/%u", project, name, i))
		return -ENAMETOOLONG;
	int r = get_sealed(tx, key, &plain, &len);
	if (r)
		return r;
	cJSON *j = cJSON_ParseWithLength(plain, len);
	seal_free_secret(plain, len);
	if (!j)
		return -EIO;
	a->field = xstrdup(json_str(j, "field"));
	a->path = xstrdup(json_str(j, "path"));
	a->data = xstrdup(json_str(j, "data"));
	a->len = strlen(a->data);
	/* the parsed copy inside j holds the secret too: wipe it before freeing */
	cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
	if (cJSON_IsString(d))
		memset(d->valuestring, 0, strlen(d->valuestring));
	cJSON_Delete(j);
	return 0;
}

/* ---- events ---- */

struct evmeta {
	unsigned long long first, next, bytes;
};

/* A journal is "" (the mount's), a project, or "<project>:<fleet>": up to two names. */
#define JOURNAL_MAX (2 * STORE_NAME_MAX)

static int evmeta_key(char *dst, size_t n, const char *project)
{
	return fmt(dst, n, "ev/%s", project);
}

static struct evmeta evmeta_get(struct stx *tx, const char *project)
{
	struct evmeta m = {0, 0, 0};
	char key[JOURNAL_MAX + 4], tmp[96];
	MDB_val v;
	if (evmeta_key(key, sizeof(key), project))
		return m; /* no such journal */
	if (kv_get(tx, tx->s->meta, key, &v) == 0 && v.mv_size < sizeof(tmp)) {
		memcpy(tmp, v.mv_data, v.mv_size);
		tmp[v.mv_size] = '\0';
		char *a = tmp, *b = strchr(a, ' '), *c = b ? strchr(b + 1, ' ') : NULL;
		long long x;
		if (b && c) {
			*b = *c = '\0';
			if (!num_parse_ll(a, 0, INT64_MAX, &x))
				m.first = (unsigned long long)x;
			if (!num_parse_ll(b + 1, 0, INT64_MAX, &x))
				m.next = (unsigned long long)x;
			if (!num_parse_ll(c + 1, 0, INT64_MAX, &x))
				m.bytes = (unsigned long long)x;
		}
	}
	return m;
}

static int evmeta_put(struct stx *tx, const char *project, const struct evmeta *m)
{
	char key[JOURNAL_MAX + 4], tmp[96];
	if (evmeta_key(key, sizeof(key), project))
		return -ENAMETOOLONG;
	fmt_cut(tmp, sizeof(tmp), "%llu %llu %llu", m->first, m->next, m->bytes); /* fits: 3x20 */
	return kv_put(tx, tx->s->meta, key, tmp, strlen(tmp));
}

static int event_key(char *dst, size_t n, const char *project, unsigned long long seq)
{
	return fmt(dst, n, "%s/%016llx", project, seq);
}

int store_event(struct stx *tx, const char *project, const char *f, ...)
{
	char text[2048], line[2100], ts[32], key[JOURNAL_MAX + 24];
	if (event_key(key, sizeof(key), project, 0))
		return -ENAMETOOLONG;
	va_list ap;
	va_start(ap, f);
	vfmt_cut(text, sizeof(text), f, ap);
	va_end(ap);
	for (char *p = text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	time_iso(time(NULL), ts, sizeof(ts));
	fmt_cut(line, sizeof(line), "%s %s\n", ts, text);
	struct evmeta m = evmeta_get(tx, project);
	touch(tx, project);
	(void)event_key(key, sizeof(key), project, m.next); /* fits: as with seq 0 above */
	int r = kv_put(tx, tx->s->events, key, line, strlen(line));
	if (r)
		return r;
	m.next++;
	m.bytes += strlen(line);
	while (m.next - m.first > STORE_EVENTS_CAP) {
		MDB_val v;
		(void)event_key(key, sizeof(key), project, m.first); /* fits, as above */
		if (kv_get(tx, tx->s->events, key, &v) == 0) {
			m.bytes -= v.mv_size;
			r = kv_del(tx, tx->s->events, key);
			if (r)
				return r;
		}
		m.first++;
	}
	return evmeta_put(tx, project, &m);
}

int store_events_read(struct stx *tx, const char *project, struct buf *out)
{
	MDB_cursor *c = NULL;
	char prefix[JOURNAL_MAX + 2];
	if (fmt(prefix, sizeof(prefix), "%s/", project))
		return -ENAMETOOLONG;
	size_t pl = strlen(prefix);
	int rc = mdb_cursor_open(tx->txn, tx->s->events, &c), r = 0;
	if (rc)
		return mdb_errno(rc);
	MDB_val k = val_str(prefix), v;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	     rc == 0 && k.mv_size == pl + 16 && memcmp(k.mv_data, prefix, pl) == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		r = buf_append(out, v.mv_data, v.mv_size);
		if (r)
			break;
	}
	mdb_cursor_close(c);
	return r;
}

static int events_clear(struct stx *tx, const char *project)
{
	char key[JOURNAL_MAX + 24];
	if (event_key(key, sizeof(key), project, 0))
		return -ENAMETOOLONG;
	struct evmeta m = evmeta_get(tx, project);
	for (unsigned long long i = m.first; i < m.next; i++) {
		(void)event_key(key, sizeof(key), project, i); /* fits: as with seq 0 */
		int r = kv_del(tx, tx->s->events, key);
		if (r)
			return r;
	}
	(void)evmeta_key(key, sizeof(key), project); /* fits: shorter than an event key */
	return kv_del(tx, tx->s->meta, key);
}

uint64_t store_events_size(struct stx *tx, const char *project)
{
	return evmeta_get(tx, project).bytes;
}

/* ---- generic records and sealed blobs ---- */

static MDB_dbi obj_dbi(struct stx *tx, enum store_db db)
{
	return db == SDB_FLEETS ? tx->s->fleets : db == SDB_INSTANCES ? tx->s->instances : tx->s->offers;
}

int store_blob_get(struct stx *tx, enum store_db db, const char *key, const void **data,
		   size_t *len)
{
	MDB_val v;
	int r = kv_get(tx, obj_dbi(tx, db), key, &v);
	if (r)
		return r;
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int store_blob_put(struct stx *tx, enum store_db db, const char *key, const void *data,
		   size_t len, const char *project)
{
	store_touch(tx, project);
	return kv_put(tx, obj_dbi(tx, db), key, data, len);
}

void store_touch(struct stx *tx, const char *project)
{
	if (project)
		touch(tx, project);
}

int store_obj_get(struct stx *tx, enum store_db db, const char *key, cJSON **out)
{
	MDB_val v;
	*out = NULL;
	int r = kv_get(tx, obj_dbi(tx, db), key, &v);
	if (r)
		return r;
	*out = parse_val(&v);
	return *out ? 0 : -EIO;
}

int store_obj_put(struct stx *tx, enum store_db db, const char *key, const cJSON *obj,
		  const char *project)
{
	store_touch(tx, project);
	return put_json(tx, obj_dbi(tx, db), key, (cJSON *)obj);
}

int store_obj_del(struct stx *tx, enum store_db db, const char *key, const char *project)
{
	store_touch(tx, project);
	return kv_del(tx, obj_dbi(tx, db), key);
}

int store_obj_list(struct stx *tx, enum store_db db, const char *prefix, cJSON **out)
{
	MDB_cursor *c = NULL;
	size_t pl = strlen(prefix);
	cJSON *arr = cJSON_CreateArray();
	*out = NULL;
	int rc = mdb_cursor_open(tx->txn, obj_dbi(tx, db), &c);
	if (rc) {
		cJSON_Delete(arr);
		return mdb_errno(rc);
	}
	MDB_val k = val_str(prefix), v;
	for (rc = mdb_cursor_get(c, &k, &v, pl ? MDB_SET_RANGE : MDB_FIRST);
	     rc == 0 && k.mv_size >= pl && memcmp(k.mv_data, prefix, pl) == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		cJSON *val = parse_val(&v);
		if (!val)
			continue;
		cJSON *item = cJSON_CreateObject();
		char *ks = xstrndup(k.mv_data, k.mv_size);
		cJSON_AddStringToObject(item, "key", ks);
		free(ks);
		cJSON_AddItemToObject(item, "value", val);
		cJSON_AddItemToArray(arr, item);
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		cJSON_Delete(arr);
		return mdb_errno(rc);
	}
	*out = arr;
	return 0;
}

int store_secret_put(struct stx *tx, const char *key, const void *data, size_t len)
{
	return put_sealed(tx, key, data, len);
}

int store_secret_get(struct stx *tx, const char *key, char **out, size_t *len)
{
	return get_sealed(tx, key, out, len);
}

int store_secret_del_prefix(struct stx *tx, const char *prefix)
{
	return kv_del_prefix(tx, tx->s->secrets, prefix);
}

/* ---- meta ---- */

int store_meta_get(struct stx *tx, const char *key, char **val, size_t *len)
{
	MDB_val v;
	int r = kv_get(tx, tx->s->meta, key, &v);
	if (r)
		return r;
	*val = xstrndup(v.mv_data, v.mv_size);
	*len = v.mv_size;
	return 0;
}

int store_meta_put(struct stx *tx, const char *key, const char *val, size_t len)
{
	return kv_put(tx, tx->s->meta, key, val, len);
}

int store_meta_del(struct stx *tx, const char *key)
{
	return kv_del(tx, tx->s->meta, key);
}

/* ---- keys ---- */

static bool ring_same(const struct seal_ring *a, const struct seal_ring *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (memcmp(a->keys[i].key, b->keys[i].key, SEAL_KEY_LEN) ||
		    strcmp(a->keys[i].name, b->keys[i].name))
			return false;
	return true;
}

int store_set_user_keys(struct stx *tx, const struct seal_key *keys, size_t n)
{
	struct seal_ring nr = {.n = 0};
	struct seal_ring local = {.n = 1};
	int r = 0;
	local.keys[0] = tx->s->local;
	if (n > SEAL_MAX_KEYS - 1)
		return -E2BIG;
	for (size_t i = 0; i < n; i++)
		nr.keys[nr.n++] = keys[i];
	nr.keys[nr.n++] = tx->s->local;
	if (ring_same(&nr, &tx->ring))
		return 0;
	/* store the user keys, sealed under the key file's key only */
	if (n == 0) {
		r = kv_del(tx, tx->s->meta, "keys");
	} else {
		cJSON *arr = cJSON_CreateArray();
		for (size_t i = 0; i < n; i++) {
			char *b = b64_encode(keys[i].key, SEAL_KEY_LEN);
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "name", keys[i].name);
			cJSON_AddStringToObject(o, "secret", b ? b : "");
			cJSON_AddItemToArray(arr, o);
			seal_free_secret(b, b ? strlen(b) : 0);
		}
		char *s = cJSON_PrintUnformatted(arr);
		cJSON_Delete(arr); /* holds copies of the secrets; freed below as best effort */
		if (!s)
			return -ENOMEM;
		char *sealed = seal_seal(&local, "meta/keys", s, strlen(s));
		seal_free_secret(s, strlen(s));
		if (!sealed)
			return -ENOMEM;
		r = kv_put(tx, tx->s->meta, "keys", sealed, strlen(sealed));
		free(sealed);
	}
	if (r)
		return r;
	/* re-seal every secret under the new first key: open with old ∪ new ring */
	struct seal_ring both = tx->ring;
	for (size_t i = 0; i < n && both.n < SEAL_MAX_KEYS; i++)
		both.keys[both.n++] = keys[i];
	MDB_cursor *c = NULL;
	int rc = mdb_cursor_open(tx->txn, tx->s->secrets, &c);
	if (rc)
		return mdb_errno(rc);
	MDB_val k, v;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		char *key = xstrndup(k.mv_data, k.mv_size);
		char *sealed = xstrndup(v.mv_data, v.mv_size);
		char *plain = NULL;
		size_t len = 0;
		r = seal_open(&both, key, sealed, &plain, &len);
		free(sealed);
		if (r) {
			free(key);
			break;
		}
		char *resealed = seal_seal(&nr, key, plain, len);
		seal_free_secret(plain, len);
		if (!resealed) {
			free(key);
			r = -ENOMEM;
			break;
		}
		/* k points into the page this put may rewrite (a value of another size is deleted
		 * and re-added): hand LMDB our own copy of the key */
		MDB_val nk = {.mv_size = k.mv_size, .mv_data = key};
		MDB_val nv = {.mv_size = strlen(resealed), .mv_data = resealed};
		rc = mdb_cursor_put(c, &nk, &nv, MDB_CURRENT);
		free(resealed);
		free(key);
		if (rc) {
			r = write_errno(tx, rc);
			break;
		}
	}
	mdb_cursor_close(c);
	if (r)
		return r;
	tx->ring = nr;
	tx->ring_changed = true;
	memset(&both, 0, sizeof(both));
	return 0;
}

size_t store_user_keys(struct store *s, struct seal_key *keys, size_t max)
{
	size_t n = 0;
	pthread_mutex_lock(&s->ring_lock);
	for (size_t i = 0; i + 1 < s->ring.n && n < max; i++)
		keys[n++] = s->ring.keys[i];
	pthread_mutex_unlock(&s->ring_lock);
	return n;
}
