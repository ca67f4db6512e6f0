/* render: the contents of the generated files of the tree (and of the root config.yml), one
 * function per kind, named in the kinds table (kinds.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fleets.h"
#include "../core/state.h"
#include "internal.h"
#include "offcache.h"

static const char readme[] =
	"fleetfs — GPU fleets on many clouds as a tree of files\n"
	"\n"
	"  config.yml                    every project and backend, in dstack's server\n"
	"                                config.yml format; write one here to apply it\n"
	"  events                        what happened on this mount (tail -f it)\n"
	"  projects/                     mkdir <name> to add a project, rmdir to remove it\n"
	"  projects/<p>/events           what happened in the project: commits, rejected\n"
	"                                writes with file, line, field and reason\n"
	"  projects/<p>/backends/        mkdir <type> (aws, gcp, lambda, ...) or any name\n"
	"  projects/<p>/backends/<b>/config.yml\n"
	"                                the backend's settings and credentials, as in\n"
	"                                dstack's config.yml (a named backend sets type:)\n"
	"  projects/<p>/backends/<b>/status\n"
	"                                state, type, last rejected write\n"
	"\n"
	"Writes are validated when the file is closed (or renamed into place): an invalid\n"
	"file fails with EINVAL, the stored file stays as it was, and the reason is in\n"
	"events and status. Any other name you create is a draft kept in memory until it\n"
	"is renamed onto a real name, so editors, rsync, sed -i and ansible just work.\n"
	"\n"
	"Back up with:  rsync -aF <mount>/ backup/      (the .rsync-filter skips generated files)\n"
	"Restore with:  rsync -a backup/ <mount>/\n"
	"Docs: docs/filesystem.md and docs/backends.md in the fleetfs sources.\n";

static const char rsync_filter[] =
	"# fleetfs: generated files, skipped by `rsync -F` (back up with: rsync -aF MNT/ DIR/)\n"
	"- /README\n"
	"- /events\n"
	"- /config.yml\n"
	"- /.rsync-filter\n"
	"- /projects/*/events\n"
	"- /projects/*/backends/*/status\n"
	"- /projects/*/ssh_config\n"
	"- /projects/*/ssh/\n"
	"- /projects/*/fleets/*/\n"
	"- /projects/*/offers/\n"
	"- /projects/*/offers.tsv\n"
	"- /projects/*/offers.json\n";

/* The state filesystem's problem (a full disk), kept in memory since the journal can't be
 * written: one line at the end of every events file, a `store:` field in every status.
 * Returns its length (0: none). */
static size_t health_line(struct fs *fs, bool yaml, char *line, size_t n)
{
	char msg[256], when[32];
	time_t since = 0;
	line[0] = '\0';
	if (!store_health(fs->store, msg, sizeof(msg), &since))
		return 0;
	time_iso(since, when, sizeof(when));
	if (yaml)
		fmt_cut(line, n, "store: \"%s (since %s)\"\n", msg, when);
	else
		fmt_cut(line, n, "%s %s\n", when, msg);
	return strlen(line);
}

/* ---- the render and size functions of each generated kind (kinds.c) ---- */

int render_readme(struct fs *fs, struct node *n, struct buf *out)
{
	(void)fs;
	(void)n;
	return buf_append(out, readme, sizeof(readme) - 1);
}

int size_readme(struct fs *fs, struct node *n, size_t *size)
{
	(void)fs;
	(void)n;
	*size = sizeof(readme) - 1;
	return 0;
}

int render_rfilter(struct fs *fs, struct node *n, struct buf *out)
{
	(void)fs;
	(void)n;
	return buf_append(out, rsync_filter, sizeof(rsync_filter) - 1);
}

int size_rfilter(struct fs *fs, struct node *n, size_t *size)
{
	(void)fs;
	(void)n;
	*size = sizeof(rsync_filter) - 1;
	return 0;
}

int render_rconfig(struct fs *fs, struct node *n, struct buf *out)
{
	(void)n;
	return state_root_render(fs->store, out);
}

/* rendering opens every sealed config: cache the size per state generation */
int size_rconfig(struct fs *fs, struct node *n, size_t *size)
{
	struct buf b;
	pthread_mutex_lock(&fs->cache_lock);
	if (fs->rcfg_gen == fs->gen && fs->gen) {
		*size = fs->rcfg_size;
		pthread_mutex_unlock(&fs->cache_lock);
		return 0;
	}
	uint64_t gen = fs->gen;
	pthread_mutex_unlock(&fs->cache_lock);
	buf_init(&b, 256 * 1024 * 1024);
	int r = render_file(fs, n, &b);
	*size = b.len;
	buf_free(&b);
	if (!r) {
		pthread_mutex_lock(&fs->cache_lock);
		if (fs->gen == gen) {
			fs->rcfg_gen = gen;
			fs->rcfg_size = *size;
		}
		pthread_mutex_unlock(&fs->cache_lock);
	}
	return r;
}

/* The journal an events file shows: the mount's (""), a project's, or "<project>:<fleet>". */
static const char *journal_of(const struct node *n, char *j, size_t len)
{
	if (n->kind == N_REVENTS)
		return "";
	if (n->kind == N_PEVENTS)
		return n->project;
	fmt_cut(j, len, "%s:%s", n->project, n->backend); /* fits: two names < STORE_NAME_MAX */
	return j;
}

int render_events(struct fs *fs, struct node *n, struct buf *out)
{
	struct stx *tx = NULL;
	char line[512], j[2 * STORE_NAME_MAX + 2];
	int r = store_begin(fs->store, false, &tx);
	if (r)
		return r;
	r = store_events_read(tx, journal_of(n, j, sizeof(j)), out);
	store_abort(tx);
	size_t hl = health_line(fs, false, line, sizeof(line));
	if (!r && hl)
		r = buf_append(out, line, hl);
	return r;
}

int size_events(struct fs *fs, struct node *n, size_t *size)
{
	struct stx *tx = NULL;
	char line[512], j[2 * STORE_NAME_MAX + 2];
	int r = store_begin(fs->store, false, &tx);
	if (r)
		return r;
	*size = store_events_size(tx, journal_of(n, j, sizeof(j)));
	store_abort(tx);
	*size += health_line(fs, false, line, sizeof(line));
	return 0;
}

int render_bstatus(struct fs *fs, struct node *n, struct buf *out)
{
	char line[512];
	int r = state_backend_status(fs->store, n->project, n->backend, out);
	size_t hl = health_line(fs, true, line, sizeof(line));
	if (!r && hl)
		r = buf_append(out, line, hl);
	return r;
}

int render_fstatus(struct fs *fs, struct node *n, struct buf *out)
{
	return fleets_render_status(fs->store, n->project, n->backend, out);
}

int render_fsshcfg(struct fs *fs, struct node *n, struct buf *out)
{
	return fleets_render_ssh_config(fs->store, fs->mountpoint, n->project, n->backend, out);
}

int render_psshcfg(struct fs *fs, struct node *n, struct buf *out)
{
	return fleets_render_ssh_config(fs->store, fs->mountpoint, n->project, NULL, out);
}

int render_known_hosts(struct fs *fs, struct node *n, struct buf *out)
{
	return fleets_render_known_hosts(fs->store, n->project, out);
}

/* an instance's status, ssh and info.yml */
int render_instance(struct fs *fs, struct node *n, struct buf *out)
{
	const char *what = n->kind == N_ISTATUS ? "status" : n->kind == N_ISSH ? "ssh" : "info";
	return fleets_render_instance(fs->store, fs->mountpoint, n->project, n->backend, n->num,
				      what, out);
}

/* ssh/id_rsa and ssh/id_rsa.pub: the project key, made on the first read */
int render_key(struct fs *fs, struct node *n, struct buf *out)
{
	char *priv = NULL, *pub = NULL;
	size_t plen = 0;
	int r = fleets_project_key(fs->store, n->project, true, &priv, &plen, &pub);
	if (!r) {
		if (n->kind == N_PKEY)
			r = buf_append(out, priv, plen);
		else
			r = buf_printf(out, "%s\n", pub);
	}
	seal_free_secret(priv, plen);
	free(pub);
	return r;
}

/* called under fs->lock: never generate here (that commits, and the store hook takes
 * fs->lock); a key not made yet reads as empty until its first open */
int size_key(struct fs *fs, struct node *n, size_t *size)
{
	char *priv = NULL, *pub = NULL;
	size_t plen = 0;
	int r = fleets_project_key(fs->store, n->project, false, &priv, &plen, &pub);
	*size = r ? 0 : n->kind == N_PKEY ? plen : strlen(pub) + 1;
	seal_free_secret(priv, plen);
	free(pub);
	return 0;
}

/* an offer, and offers.tsv / offers.json of the project or of a query directory */
int render_offers(struct fs *fs, struct node *n, struct buf *out)
{
	struct offsnap *snap = NULL;
	struct offer_query *q = NULL;
	char err[256];
	if (n->query && offers_query_parse(n->query, &q, err, sizeof(err)))
		return -ENOENT;
	int r = offcache_get(fs, n->project, &snap);
	if (!r) {
		if (n->kind == N_OFFER) {
			long i = offsnap_find(snap, n->name);
			r = i < 0 ? -ENOENT : offer_yaml(&snap->list.v[i], q, out);
		} else if (n->kind == N_OTSV) {
			r = offers_tsv(&snap->list, q, out);
		} else {
			r = offers_json(&snap->list, q, out);
		}
	}
	offcache_put(fs, snap);
	offers_query_free(q);
	return r;
}

/* rendering the tables walks every offer: stat shows the size of the latest rendering (0
 * before the first read), never renders under the lock */
int size_table(struct fs *fs, struct node *n, size_t *size)
{
	(void)fs;
	*size = n->last_size;
	return 0;
}

/* ---- for the rest of fs/ ---- */

int render_file(struct fs *fs, struct node *n, struct buf *out)
{
	const struct kind_def *d = kind_def(n->kind);
	return d->render ? d->render(fs, n, out) : -EINVAL;
}

int render_size(struct fs *fs, struct node *n, size_t *size)
{
	const struct kind_def *d = kind_def(n->kind);
	if (d->size)
		return d->size(fs, n, size);
	struct buf b;
	buf_init(&b, 16 * 1024 * 1024);
	int r = render_file(fs, n, &b);
	*size = b.len;
	buf_free(&b);
	return r;
}
